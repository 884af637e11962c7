#!/usr/bin/env bash
# Installs the Debian packages bnc's demo and tests need, only when something is missing:
# the host C toolchain, the ARM cross compilers and qemu-user (targets arm64 and armv7),
# clang/llvm-mca (the static NEON benchmark), for the fpga target iverilog (pyverilog's
# preprocessor in the tests; yosys and nextpnr come from PyPI), and for the Cortex-M
# targets arm-none-eabi-gcc with newlib and qemu-system-arm (the mps2 machines), and the
# FashionMNIST files examples/train_fashion.py trains on (dataset-fashion-mnist).
set -euo pipefail
need=()
command -v cc >/dev/null 2>&1 || need+=(gcc libc6-dev)
command -v make >/dev/null 2>&1 || need+=(make)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || need+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross)
command -v arm-linux-gnueabihf-gcc >/dev/null 2>&1 || need+=(gcc-arm-linux-gnueabihf libc6-dev-armhf-cross)
command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
command -v clang >/dev/null 2>&1 || need+=(clang)
command -v llvm-mca >/dev/null 2>&1 || need+=(llvm)
command -v iverilog >/dev/null 2>&1 || need+=(iverilog)
command -v arm-none-eabi-gcc >/dev/null 2>&1 || need+=(gcc-arm-none-eabi)
[ -f /usr/lib/arm-none-eabi/newlib/thumb/v7e-m+fp/hard/libm.a ] || need+=(libnewlib-arm-none-eabi)
command -v qemu-system-arm >/dev/null 2>&1 || need+=(qemu-system-arm)
[ -f /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz ] || need+=(dataset-fashion-mnist)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
