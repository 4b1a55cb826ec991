# What `cmake --install` puts under the prefix (not used by pip install, which installs only the C
# library into the Python package):
#   include/dynamicrad/           the public headers
#   lib/libdynamicrad.a           the engine (CPU, and CUDA when built with it)
#   lib/libdynamicrad_c.so        the C ABI (c_api.h)
#   bin/dynamicrad                the command
#   share/dynamicrad/lut/         the shipped LUT
#   lib/cmake/dynamicrad/         the CMake package: targets dynamicrad::dynamicrad, dynamicrad::dynamicrad_c
include(CMakePackageConfigHelpers)

set(DYNAMICRAD_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/dynamicrad)

install(TARGETS dynamicrad dynamicrad_c dynamicrad_cli
  EXPORT dynamicradTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/dynamicrad DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(FILES ${PROJECT_SOURCE_DIR}/data/lut/default.json DESTINATION ${CMAKE_INSTALL_DATADIR}/dynamicrad/lut)

install(EXPORT dynamicradTargets NAMESPACE dynamicrad:: DESTINATION ${DYNAMICRAD_CMAKE_DIR})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/dynamicradConfig.cmake.in
  ${PROJECT_BINARY_DIR}/dynamicradConfig.cmake
  INSTALL_DESTINATION ${DYNAMICRAD_CMAKE_DIR})
# 0.x releases may change the API between minor versions, so only the same minor version matches.
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dynamicradConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/dynamicradConfig.cmake ${PROJECT_BINARY_DIR}/dynamicradConfigVersion.cmake
  DESTINATION ${DYNAMICRAD_CMAKE_DIR})
