# An overlay port of the repository it lives in:
#   vcpkg install kvcodec --overlay-ports=<repository>/packaging/vcpkg
# For a registry, replace SOURCE_PATH with a release download:
#   vcpkg_from_github(OUT_SOURCE_PATH SOURCE_PATH REPO <owner>/kvcodec
#                     REF "v${VERSION}" SHA512 <hash> HEAD_REF main)
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)

vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    tools KVC_BUILD_TOOLS
    zstd  KVC_WITH_ZSTD
)

# BUILD_SHARED_LIBS follows VCPKG_LIBRARY_LINKAGE (vcpkg_cmake_configure sets
# it); kvcodec's CMake finds vcpkg's Highway (hwy::hwy), zstd (zstd::libzstd)
# and xxhash.h through the prefix vcpkg gives it.
vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    -DBUILD_TESTING=OFF
    -DKVC_WARNINGS_AS_ERRORS=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(CONFIG_PATH "lib/cmake/kvcodec")
vcpkg_fixup_pkgconfig()
if("tools" IN_LIST FEATURES)
  vcpkg_copy_tools(TOOL_NAMES kvc AUTO_CLEAN)
endif()

file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug/include" "${CURRENT_PACKAGES_DIR}/debug/share")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
