# Warnings every tether target builds with. Kept as an interface library so a target opts in by
# linking it, and third-party code is not held to our flags.
add_library(tether_warnings INTERFACE)
target_compile_options(tether_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Woverloaded-virtual -Wimplicit-fallthrough)
if(CMAKE_COMPILE_WARNING_AS_ERROR)
  message(STATUS "tether: warnings are errors")
endif()
