#!/bin/sh
# make-requant-models.sh: requantizes the optional real models of fetch-models.sh
# (--allow-requantize), for checking ember's other weight types on real weights
# (test_realmodels, scripts/greedy_vs_llamacpp.py). Nothing here is committed.
#
#   scripts/make-requant-models.sh [TYPE...]      (default: Q2_K Q3_K_M)
#
# The quantizer: LLAMA_QUANTIZE=/path/to/llama-quantize (build it from the llama-cpp-python
# 0.3.36 sdist's tools/quantize) if set, else build/ember quantize (its output is
# byte-identical to llama-quantize's; test_quantize, and the sha256 check below).
# MODELS: folder of the fetched files (default models/); OUT: where the results go
# (default $MODELS/requant). The sha256 of each result must equal what llama-quantize of
# llama-cpp-python 0.3.36 wrote (tests/golden/<name>/greedy.txt were made from those files).
set -eu
MODELS=${MODELS:-models}
OUT=${OUT:-$MODELS/requant}
if [ -n "${LLAMA_QUANTIZE:-}" ]; then
    [ -x "$LLAMA_QUANTIZE" ] || { echo "make-requant-models.sh: no llama-quantize at $LLAMA_QUANTIZE" >&2; exit 1; }
    export LD_LIBRARY_PATH="$(dirname "$LLAMA_QUANTIZE")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    quantize() { "$LLAMA_QUANTIZE" "$@"; }
else
    [ -x build/ember ] || { echo "make-requant-models.sh: no build/ember (run make, or set LLAMA_QUANTIZE)" >&2; exit 1; }
    quantize() { build/ember quantize "$@"; }
fi
[ $# -gt 0 ] || set -- Q2_K Q3_K_M
expected_sha() {
    case "$1" in
    Qwen2.5-Coder-0.5B-Instruct-Q2_K.gguf) echo a545def2e749dcd13c0308cce30b09d06c972803005354b1f1d1a334b156db84 ;;
    Qwen2.5-Coder-0.5B-Instruct-Q3_K_M.gguf) echo 5085c93a88883b707c589c4afb84701e848d9d96dbe672a7b1feb57b217b1ed3 ;;
    Qwen2.5-Coder-1.5B-Instruct-Q2_K.gguf) echo ae78b12904a5d5e1524c261c529253e3717eeef660eba942042fae75fc767cd3 ;;
    Qwen2.5-Coder-1.5B-Instruct-Q3_K_M.gguf) echo b32ae6f04ee3f6f337a7f50ba354500085ab47cca18a72bc3e16cc57e4d7739e ;;
    esac
}
mkdir -p "$OUT"
for base in Qwen2.5-Coder-0.5B-Instruct Qwen2.5-Coder-1.5B-Instruct; do
    src="$MODELS/$base-Q4_K_M.gguf"
    if [ ! -f "$src" ]; then echo "skip $base: $src not fetched (scripts/fetch-models.sh)" >&2; continue; fi
    for t in "$@"; do
        dst="$OUT/$base-$t.gguf"
        [ -f "$dst" ] && { echo "have $dst"; continue; }
        quantize --allow-requantize "$src" "$dst.tmp" "$t" "${THREADS:-2}" >"$dst.log" 2>&1 ||
            { echo "quantizing $src to $t failed, see $dst.log" >&2; exit 1; }
        mv "$dst.tmp" "$dst"
        echo "wrote $dst"
    done
done
bad=0
for f in "$OUT"/*.gguf; do
    [ -f "$f" ] || continue
    want=$(expected_sha "$(basename "$f")")
    [ -n "$want" ] || continue
    got=$(sha256sum "$f" | cut -c1-64)
    if [ "$got" = "$want" ]; then echo "sha256 ok: $f"
    else echo "error: $f has sha256 $got, the goldens were made from $want" >&2; bad=1; fi
done
exit $bad
