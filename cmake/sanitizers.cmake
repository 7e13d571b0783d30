# Applies TETHER_SANITIZE to every target defined after this point.
if(TETHER_SANITIZE)
  message(STATUS "tether: sanitizers ${TETHER_SANITIZE}")
  add_compile_options(-fsanitize=${TETHER_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${TETHER_SANITIZE})
endif()

# Fuzz builds instrument every target for coverage, so libFuzzer sees into the library and not
# only into the fuzz target's own file.
if(TETHER_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
