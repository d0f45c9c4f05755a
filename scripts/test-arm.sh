#!/bin/sh
# test-arm.sh: cross-builds ember for aarch64 and runs the whole test suite under qemu-user,
# so the NEON kernels (src/kern_neon.c) are checked against the reference on an x86 host.
#   scripts/test-arm.sh [extra make arguments, e.g. WERROR=1 -j2]
# Needs gcc-aarch64-linux-gnu and qemu-user (Debian/Ubuntu package names). Variables:
#   CROSS   cross compiler            (aarch64-linux-gnu-gcc)
#   QEMU    user-mode emulator        (qemu-aarch64)
#   SYSROOT target libraries for -L   (/usr/aarch64-linux-gnu)
#   O       build directory           (build-arm; kept apart from the native build/)
# Exit status is make's: nonzero when any test fails.
set -eu
cd "$(dirname "$0")/.."

CROSS=${CROSS:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}
SYSROOT=${SYSROOT:-/usr/aarch64-linux-gnu}
O=${O:-build-arm}

for tool in "$CROSS" "$QEMU"; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        echo "test-arm.sh: $tool not found (apt-get install gcc-aarch64-linux-gnu qemu-user)" >&2
        exit 2
    fi
done

# test_cli runs the ember binary itself (through $RUN): point it at the aarch64 one, not
# the native build/ember.
EMBER_BIN=${EMBER_BIN:-$O/ember}
export EMBER_BIN

start=$(date +%s)
make CC="$CROSS" O="$O" "$@" all
make CC="$CROSS" O="$O" RUN="$QEMU -L $SYSROOT" "$@" test
echo "test-arm.sh: qemu suite passed in $(( $(date +%s) - start ))s"
