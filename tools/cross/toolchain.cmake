# Cross-compiling kvcodec for Linux on another architecture with Debian's
# cross toolchains, running its programs under qemu-user: the toolchain files
# next to this one set KVC_CROSS_PROCESSOR, KVC_CROSS_TRIPLE, KVC_CROSS_QEMU
# (and KVC_CROSS_SYSROOT where needed), then include it.
# tools/cross-test ARCH configures with them.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR ${KVC_CROSS_PROCESSOR})
set(CMAKE_C_COMPILER ${KVC_CROSS_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${KVC_CROSS_TRIPLE}-g++)

# ctest (and doctest's test discovery at build time) runs every test program
# through qemu-user: no binfmt_misc registration needed. aarch64 and s390x
# run on Debian's multiarch C library (libc6:ARCH, which libhwy1:ARCH
# depends on), found by its loader like any native library. Not with
# `-L /usr/TRIPLE`: that loader (libc6-ARCH-cross) would read the host's
# /etc/ld.so.cache, load the newer multiarch libc.so.6 beside itself, and
# hang in pthread_create. riscv64 has no multiarch C library in bookworm:
# its toolchain file sets KVC_CROSS_SYSROOT (/usr/TRIPLE) for qemu's -L.
set(CMAKE_CROSSCOMPILING_EMULATOR ${KVC_CROSS_QEMU})
if(KVC_CROSS_SYSROOT)
  list(APPEND CMAKE_CROSSCOMPILING_EMULATOR -L ${KVC_CROSS_SYSROOT})
endif()

# Debian multiarch: the target's libraries and CMake packages live in
# /usr/lib/TRIPLE, which CMake searches by itself (CMAKE_LIBRARY_ARCHITECTURE
# comes from the compiler); a library built from source is given with
# CMAKE_PREFIX_PATH. Host programs (bash, python3) are found on the host.
