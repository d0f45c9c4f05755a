#!/bin/sh
# make-requant-models.sh: requantizes the optional real models of fetch-models.sh with
# llama.cpp's own llama-quantize (--allow-requantize), for checking ember's other weight
# types on real weights (scripts/greedy_vs_llamacpp.py). Nothing here is committed.
#
#   scripts/make-requant-models.sh [TYPE...]      (default: Q2_K Q3_K_M)
#
# LLAMA_QUANTIZE: the llama-quantize binary (default /tmp/lcpbuild/bin/llama-quantize;
# build it from the llama-cpp-python 0.3.36 sdist's tools/quantize). MODELS: folder of the
# fetched files (default models/); OUT: where the results go (default $MODELS/requant).
set -eu
Q=${LLAMA_QUANTIZE:-/tmp/lcpbuild/bin/llama-quantize}
MODELS=${MODELS:-models}
OUT=${OUT:-$MODELS/requant}
[ -x "$Q" ] || { echo "make-requant-models.sh: no llama-quantize at $Q (set LLAMA_QUANTIZE)" >&2; exit 1; }
export LD_LIBRARY_PATH="$(dirname "$Q")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ $# -gt 0 ] || set -- Q2_K Q3_K_M
mkdir -p "$OUT"
for base in Qwen2.5-Coder-0.5B-Instruct Qwen2.5-Coder-1.5B-Instruct; do
    src="$MODELS/$base-Q4_K_M.gguf"
    if [ ! -f "$src" ]; then echo "skip $base: $src not fetched (scripts/fetch-models.sh)" >&2; continue; fi
    for t in "$@"; do
        dst="$OUT/$base-$t.gguf"
        [ -f "$dst" ] && { echo "have $dst"; continue; }
        "$Q" --allow-requantize "$src" "$dst.tmp" "$t" "${THREADS:-2}" >"$dst.log" 2>&1 ||
            { echo "llama-quantize failed, see $dst.log" >&2; exit 1; }
        mv "$dst.tmp" "$dst"
        echo "wrote $dst"
    done
done
