# `cmake --install`: the public header, the library (shared or static, as
# BUILD_SHARED_LIBS chose), the kvc tool when built, a CMake package
# (find_package(kvcodec CONFIG) -> kvcodec::kvcodec) and kvcodec.pc.
# Included by the top-level CMakeLists.txt after its targets exist.
include(CMakePackageConfigHelpers)

set(KVC_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/kvcodec")

# A static libkvcodec.a is C++: a C program links it with the C driver,
# which leaves out the C++ runtime. Naming the runtime this compiler links
# implicitly (libstdc++ or libc++, and libm) makes C consumers link, through
# the CMake package and through kvcodec.pc.
set(KVC_CXX_RUNTIME "")
if(NOT BUILD_SHARED_LIBS)
  foreach(runtime stdc++ c++ c++abi m)
    if(runtime IN_LIST CMAKE_CXX_IMPLICIT_LINK_LIBRARIES)
      list(APPEND KVC_CXX_RUNTIME ${runtime})
    endif()
  endforeach()
  target_link_libraries(kvcodec PRIVATE ${KVC_CXX_RUNTIME})
endif()

install(TARGETS kvcodec EXPORT kvcodecTargets
  ARCHIVE DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  LIBRARY DESTINATION "${CMAKE_INSTALL_LIBDIR}"
  RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}"
  INCLUDES DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}")
install(FILES "${PROJECT_SOURCE_DIR}/capi/include/kvcodec/kvcodec.h"
  DESTINATION "${CMAKE_INSTALL_INCLUDEDIR}/kvcodec")
if(TARGET kvc)
  install(TARGETS kvc RUNTIME DESTINATION "${CMAKE_INSTALL_BINDIR}")
endif()

install(EXPORT kvcodecTargets NAMESPACE kvcodec:: FILE kvcodecTargets.cmake
  DESTINATION "${KVC_CMAKE_DIR}")
if(BUILD_SHARED_LIBS)
  set(KVC_PACKAGE_STATIC FALSE)
else()
  set(KVC_PACKAGE_STATIC TRUE)
endif()
# The dependency targets as the exported link interface names them: an ALIAS
# (hwy::hwy over Conan's or pkg-config's target) is exported as its target.
set(KVC_HWY_LINKED hwy::hwy)
set(KVC_ZSTD_LINKED "${KVC_ZSTD_TARGET}")  # empty without zstd
foreach(dep HWY ZSTD)
  if(KVC_${dep}_LINKED)
    get_target_property(aliased ${KVC_${dep}_LINKED} ALIASED_TARGET)
    if(aliased)
      set(KVC_${dep}_LINKED ${aliased})
    endif()
  endif()
endforeach()
configure_package_config_file("${CMAKE_CURRENT_LIST_DIR}/kvcodecConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/kvcodecConfig.cmake" INSTALL_DESTINATION "${KVC_CMAKE_DIR}")
# 0.x: the API may change with the minor version (kvcodec.h), so a request
# for 0.2 accepts 0.2.x only.
write_basic_package_version_file("${PROJECT_BINARY_DIR}/kvcodecConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES "${PROJECT_BINARY_DIR}/kvcodecConfig.cmake"
  "${PROJECT_BINARY_DIR}/kvcodecConfigVersion.cmake" DESTINATION "${KVC_CMAKE_DIR}")

# pkg-config. The prefix is found from the .pc file's own place (pcfiledir,
# known to pkg-config and pkgconf), so that an install moved with
# `cmake --install --prefix` stays right; install directories may be absolute
# (GNUInstallDirs allows it), and are then written as they are.
if(IS_ABSOLUTE "${CMAKE_INSTALL_LIBDIR}")
  set(KVC_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH KVC_PC_UP "/prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig" "/prefix")
  string(REGEX REPLACE "/$" "" KVC_PC_UP "${KVC_PC_UP}")
  set(KVC_PC_PREFIX "\${pcfiledir}/${KVC_PC_UP}")
endif()
foreach(kind LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${kind}}")
    set(KVC_PC_${kind} "${CMAKE_INSTALL_${kind}}")
  else()
    set(KVC_PC_${kind} "\${prefix}/${CMAKE_INSTALL_${kind}}")
  endif()
endforeach()
if(BUILD_SHARED_LIBS)
  # libkvcodec.so records its own dependencies (DT_NEEDED): a consumer needs
  # nothing more, not even Highway's development files.
  set(KVC_PC_PRIVATE "")
  set(KVC_PC_CFLAGS "")
  if(WIN32)
    set(KVC_PC_CFLAGS " -DKVC_SHARED")  # dllimport in kvcodec.h
  endif()
else()
  # libkvcodec.a is C++ over Highway, threads and (optionally) zstd:
  # `pkg-config --static --libs kvcodec` adds them.
  list(TRANSFORM KVC_CXX_RUNTIME PREPEND "-l" OUTPUT_VARIABLE KVC_PC_RUNTIME)
  list(JOIN KVC_PC_RUNTIME " " KVC_PC_RUNTIME)
  set(KVC_PC_REQUIRES "libhwy >= 1.0.3")
  if(KVC_ZSTD_TARGET)
    string(APPEND KVC_PC_REQUIRES ", libzstd")
  endif()
  set(KVC_PC_PRIVATE "Requires.private: ${KVC_PC_REQUIRES}
Libs.private: ${KVC_PC_RUNTIME} ${CMAKE_THREAD_LIBS_INIT}
")
  set(KVC_PC_CFLAGS "")
endif()
configure_file("${CMAKE_CURRENT_LIST_DIR}/kvcodec.pc.in" "${PROJECT_BINARY_DIR}/kvcodec.pc"
  @ONLY)
install(FILES "${PROJECT_BINARY_DIR}/kvcodec.pc"
  DESTINATION "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
