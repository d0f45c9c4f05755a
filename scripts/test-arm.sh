#!/bin/sh
# test-arm.sh: cross-builds ember for aarch64 and runs the whole test suite under qemu-user,
# so the NEON kernels (src/kernels/kern_neon.c) are checked against the reference on an x86 host.
#   scripts/test-arm.sh [extra make arguments, e.g. WERROR=1 -j2]
# Needs gcc-aarch64-linux-gnu and qemu-user, and for the `ember` binary (it links `ember
# serve`) the arm64 libmicrohttpd and cJSON through Debian multiarch:
#   dpkg --add-architecture arm64 && apt-get update
#   apt-get install gcc-aarch64-linux-gnu qemu-user libmicrohttpd-dev:arm64 libcjson-dev:arm64
# Variables:
#   CROSS   cross compiler            (aarch64-linux-gnu-gcc)
#   QEMU    user-mode emulator        (qemu-aarch64)
#   SYSROOT target root for qemu -L   (/ with multiarch arm64 libc, else /usr/aarch64-linux-gnu)
#   O       build directory           (build-arm; kept apart from the native build/)
#   EMBER_GOLDEN_PROMPTS  SmolLM2 golden prompts test_golden runs (default: 3 of the 15,
#           see below; set it empty to run all 15, about 14 minutes more)
#   EMBER_REALMODELS      real models test_realmodels runs (default: none)
# Exit status is make's: nonzero when any test fails.
set -eu
cd "$(dirname "$0")/.."

CROSS=${CROSS:-aarch64-linux-gnu-gcc}
QEMU=${QEMU:-qemu-aarch64}
O=${O:-build-arm}

# The dynamic loader and libc must come from the same glibc build. Multiarch packages
# (libmicrohttpd12:arm64 pulls in libc6:arm64) are found through the host's ld.so.cache, so
# with /usr/aarch64-linux-gnu as the root, qemu would pair the cross toolchain's loader
# (libc6-arm64-cross) with the multiarch libc.so.6 (libc6:arm64, a different Debian
# revision), and the first pthread_create spins forever in the stack-cache list. With a
# multiarch libc installed, the host root holds a matching loader, libc and the libraries.
if [ -z "${SYSROOT:-}" ]; then
    if [ -e /lib/aarch64-linux-gnu/libc.so.6 ] && [ -e /lib/ld-linux-aarch64.so.1 ]; then
        SYSROOT=/
    else
        SYSROOT=/usr/aarch64-linux-gnu
    fi
fi
AR=${AR:-${CROSS%gcc}ar}
command -v "$AR" >/dev/null 2>&1 || AR=ar

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

# Under qemu a SmolLM2 token costs ~0.25 s, and the 15 golden prompts (64 steps each, run
# free and teacher-forced) take ~17 minutes, the rest of the suite ~2. These three keep what
# the full set exercises for about 3 minutes: a plain prompt (identical to llama.cpp), code
# whose greedy ids leave llama.cpp's at near-ties (the margin check), and the longest prompt,
# a 63-token ChatML multi-turn chat with special tokens (127 positions of KV cache, prefill
# in full 8-column tiles). test_kernels still holds every NEON kernel to the reference.
EMBER_GOLDEN_PROMPTS=${EMBER_GOLDEN_PROMPTS-capital,fibonacci,chat_multiturn}
export EMBER_GOLDEN_PROMPTS
# The optional real models (scripts/fetch-models.sh, when fetched into models/) would take
# hours under qemu; test_realmodels skips them here unless EMBER_REALMODELS names some.
EMBER_REALMODELS=${EMBER_REALMODELS:-none}
export EMBER_REALMODELS

start=$(date +%s)
make CC="$CROSS" AR="$AR" O="$O" "$@" all
built=$(date +%s)
make CC="$CROSS" AR="$AR" O="$O" RUN="$QEMU -L $SYSROOT" "$@" test
end=$(date +%s)
echo "test-arm.sh: qemu suite passed in $((end - start))s (build $((built - start))s, tests $((end - built))s)"
