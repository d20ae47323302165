# s390x Linux, Debian's s390x-linux-gnu cross toolchain, run under qemu-s390x.
set(KVC_CROSS_PROCESSOR s390x)
set(KVC_CROSS_TRIPLE s390x-linux-gnu)
set(KVC_CROSS_QEMU qemu-s390x)
include(${CMAKE_CURRENT_LIST_DIR}/toolchain.cmake)
