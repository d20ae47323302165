# riscv64 Linux, Debian's riscv64-linux-gnu cross toolchain, run under qemu-riscv64.
set(KVC_CROSS_PROCESSOR riscv64)
set(KVC_CROSS_TRIPLE riscv64-linux-gnu)
set(KVC_CROSS_QEMU qemu-riscv64)
set(KVC_CROSS_SYSROOT /usr/riscv64-linux-gnu)  # no multiarch libc6:riscv64
include(${CMAKE_CURRENT_LIST_DIR}/toolchain.cmake)
