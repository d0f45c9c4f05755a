#!/bin/sh
# kv-ppl-vs-llamacpp.sh: perplexity of ember and llama.cpp's llama-perplexity with the same
# KV cache types on the same model, text and context, and each one's increase over its own
# f16 cache. llama.cpp runs with flash attention on (it needs it for a quantized V cache)
# and its default Hadamard rotation of quantized caches (ember does the same). The first
# type is the base of the increase columns.
#   scripts/kv-ppl-vs-llamacpp.sh [MODEL] [TEXT] [CTX] [TYPES...]
# Defaults: the default model, /usr/share/common-licenses/GPL-3, 512, f16 q8_0 q4_0.
# Variables: LLAMA_PERPLEXITY (path of llama-perplexity; /tmp/lcpbuild/bin/llama-perplexity),
# THREADS (2), OUT (directory for the logs; /tmp/kv-ppl). Never use a -march=native llama.cpp
# build where the CPU advertises AMX that the VM traps.
set -eu
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
TEXT=${2:-/usr/share/common-licenses/GPL-3}
CTX=${3:-512}
[ $# -gt 3 ] && shift 3 || set --
TYPES=${*:-f16 q8_0 q4_0}
LP=${LLAMA_PERPLEXITY:-/tmp/lcpbuild/bin/llama-perplexity}
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/kv-ppl}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$(dirname "$LP")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
ppl() { sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$1"; }
printf '| cache (K=V) | ember PPL | llama.cpp PPL | ember - f16 | llama.cpp - f16 |\n|---|---:|---:|---:|---:|\n'
base_e= base_l=
for t in $TYPES; do
    build/ember perplexity -m "$MODEL" -f "$TEXT" -c "$CTX" -t "$THREADS" -ctk "$t" -ctv "$t" > "$OUT/ember_$t.log" 2>&1
    "$LP" -m "$MODEL" -f "$TEXT" -c "$CTX" -b "$CTX" -t "$THREADS" -fa on -ctk "$t" -ctv "$t" > "$OUT/llama_$t.log" 2>&1
    e=$(ppl "$OUT/ember_$t.log"); l=$(ppl "$OUT/llama_$t.log")
    [ -z "$base_e" ] && base_e=$e && base_l=$l
    printf '| %s | %s | %s | %+.4f | %+.4f |\n' "$t" "$e" "$l" "$(echo "$e - $base_e" | bc -l)" "$(echo "$l - $base_l" | bc -l)"
done
