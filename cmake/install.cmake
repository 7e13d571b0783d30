# `cmake --install`: headers, the libraries (one export set per component, so a user who needs
# the resilience layer alone is not asked for libpq or yaml-cpp), the tether binary, a CMake
# package (find_package(tether CONFIG COMPONENTS ...)) and a pkg-config file.
include(CMakePackageConfigHelpers)

# Components in dependency order (each only needs ones before it). tetherConfig.cmake.in lists
# what each one needs, tether's and outside packages: keep the two in step.
set(tether_components
  core resilience metrics pool pool_metrics net tls pg http_codec upstream http chaos_model chaos demo
  proxy)

foreach(component IN LISTS tether_components)
  set_target_properties(tether_${component} PROPERTIES EXPORT_NAME ${component})
  install(TARGETS tether_${component} EXPORT tether-${component}-targets
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(EXPORT tether-${component}-targets NAMESPACE tether::
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tether)
endforeach()

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/tether DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(TARGETS tether RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/tetherConfig.cmake.in
  ${PROJECT_BINARY_DIR}/tetherConfig.cmake
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tether)
# 0.x: a minor version may break what the one before offered.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/tetherConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/tetherConfig.cmake ${PROJECT_BINARY_DIR}/tetherConfigVersion.cmake
  DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/tether)

configure_file(${PROJECT_SOURCE_DIR}/cmake/tether.pc.in ${PROJECT_BINARY_DIR}/tether.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/tether.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
