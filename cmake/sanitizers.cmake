# Applies TETHER_SANITIZE to every target defined after this point.
if(TETHER_SANITIZE)
  message(STATUS "tether: sanitizers ${TETHER_SANITIZE}")
  add_compile_options(-fsanitize=${TETHER_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${TETHER_SANITIZE})
endif()
