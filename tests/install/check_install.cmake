# Installs the build into a fresh prefix, checks what landed there, then configures, builds and runs
# tests/install/consumer against it with find_package(dynamicrad), as a user's project would.
# cmake -DSOURCE_DIR=<source tree> -DBUILD_DIR=<build tree> -DWORK_DIR=<scratch>
#       -DGENERATOR=<CMake generator> -DCXX_COMPILER=<path>
#       -DINCLUDEDIR=include -DLIBDIR=lib -DBINDIR=bin -DDATADIR=share
#       [-DCUDA_ROOT=<toolkit root>] -P check_install.cmake
# The *DIR values are the project's GNUInstallDirs, which a script cannot work out itself.
foreach(var SOURCE_DIR BUILD_DIR WORK_DIR GENERATOR CXX_COMPILER INCLUDEDIR LIBDIR BINDIR DATADIR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "check_install.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE result OUTPUT_VARIABLE output ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    message(FATAL_ERROR "${what} failed (${result}):\n${output}")
  endif()
  message(STATUS "${what}: ok")
  set(last_output "${output}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
set(consumer_dir ${SOURCE_DIR}/tests/install/consumer)
file(REMOVE_RECURSE ${WORK_DIR})
run("cmake --install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})

foreach(file
    ${INCLUDEDIR}/dynamicrad/engine.h
    ${INCLUDEDIR}/dynamicrad/c_api.h
    ${LIBDIR}/libdynamicrad.a
    ${LIBDIR}/libdynamicrad_c.so
    ${BINDIR}/dynamicrad
    ${DATADIR}/dynamicrad/lut/default.json
    ${LIBDIR}/cmake/dynamicrad/dynamicradConfig.cmake
    ${LIBDIR}/cmake/dynamicrad/dynamicradConfigVersion.cmake)
  if(NOT EXISTS ${prefix}/${file})
    message(FATAL_ERROR "cmake --install did not install ${file}")
  endif()
endforeach()
# The installed tree must not point back into the source or build tree.
file(GLOB exported ${prefix}/${LIBDIR}/cmake/dynamicrad/*.cmake)
foreach(file ${exported})
  file(READ ${file} text)
  foreach(tree ${SOURCE_DIR} ${BUILD_DIR})
    get_filename_component(tree ${tree} REALPATH)
    string(FIND "${text}" "${tree}/" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "${file} names ${tree}: the installed package must stand alone")
    endif()
  endforeach()
endforeach()

run("installed dynamicrad --version" ${prefix}/${BINDIR}/dynamicrad --version)
run("installed dynamicrad lut" ${prefix}/${BINDIR}/dynamicrad lut
    --lut ${prefix}/${DATADIR}/dynamicrad/lut/default.json)

# Every line of the README's C++ example must be the consumer's, so the example stays compiled and
# checked. Semicolons are swapped out first: CMake lists are split on them.
file(READ ${SOURCE_DIR}/README.md readme)
if(NOT readme MATCHES "```cpp\n([^`]*)```")
  message(FATAL_ERROR "README.md has no ```cpp example")
endif()
string(REGEX REPLACE "[ ]*//[^\n]*" "" example "${CMAKE_MATCH_1}")
string(REPLACE ";" "<semicolon>" example "${example}")
string(REPLACE "\n" ";" example_lines "${example}")
file(READ ${consumer_dir}/consumer.cpp consumer)
string(REPLACE ";" "<semicolon>" consumer "${consumer}")
foreach(line IN LISTS example_lines)
  string(STRIP "${line}" line)
  if(line STREQUAL "")
    continue()
  endif()
  string(FIND "${consumer}" "${line}" at)
  if(at EQUAL -1)
    string(REPLACE "<semicolon>" ";" line "${line}")
    message(FATAL_ERROR "README.md's C++ example has a line that consumer.cpp lacks: ${line}")
  endif()
endforeach()
message(STATUS "README.md's C++ example is in consumer.cpp: ok")

set(configure ${CMAKE_COMMAND} -S ${consumer_dir} -B ${WORK_DIR}/consumer -G ${GENERATOR} -DCMAKE_PREFIX_PATH=${prefix}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} -DCMAKE_BUILD_TYPE=Release)
if(CUDA_ROOT)
  list(APPEND configure -DCUDAToolkit_ROOT=${CUDA_ROOT})
endif()
run("configure the consumer (find_package)" ${configure})
run("build the consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/consumer)
run("consumer_cpp" ${WORK_DIR}/consumer/consumer_cpp)
message(STATUS "${last_output}")
run("consumer_c" ${WORK_DIR}/consumer/consumer_c)
message(STATUS "${last_output}")
