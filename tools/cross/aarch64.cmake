# aarch64 Linux, Debian's aarch64-linux-gnu cross toolchain, run under qemu-aarch64.
set(KVC_CROSS_PROCESSOR aarch64)
set(KVC_CROSS_TRIPLE aarch64-linux-gnu)
set(KVC_CROSS_QEMU qemu-aarch64)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain.cmake)
