#!/bin/sh
# kv-cache-types.sh: KVCACHE.md's cache-type table. ember's perplexity and KL divergence
# from its own f16 cache for each KV cache type (K = V), bfp4 with K channel sorting and
# Hadamard rotation each on and off, and llama.cpp's llama-perplexity for the types it has
# (f16, q8_0, q4_0; flash attention on, its default rotation), all on the same model, text
# and context.
#   scripts/kv-cache-types.sh [MODEL] [TEXT] [CTX]
# Defaults: the default model, /usr/share/common-licenses/GPL-3 (the text of
# kv-ppl-vs-llamacpp.sh), 2048. Variables: LLAMA_PERPLEXITY (path of llama-perplexity;
# /tmp/lcpbuild/bin/llama-perplexity; LLAMA_PERPLEXITY=none skips llama.cpp), THREADS (2),
# OUT (logs and the f16 base of the KL divergence, about 100 MB per 1000 scored tokens for a
# 49k vocabulary; /tmp/kv-types). Never use a -march=native llama.cpp build where the CPU
# advertises AMX that the VM traps. Each ember row is one pass over the text (the f16 row
# writes the base; the others read its tokens and log-probabilities). Resumable: a run whose
# log in OUT already holds its result is not repeated (delete OUT to start afresh).
set -eu
cd "$(dirname "$0")/.."
MODEL=${1:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
TEXT=${2:-/usr/share/common-licenses/GPL-3}
CTX=${3:-2048}
LP=${LLAMA_PERPLEXITY:-/tmp/lcpbuild/bin/llama-perplexity}
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/kv-types}
mkdir -p "$OUT"
E="build/ember perplexity -m $MODEL -c $CTX -t $THREADS"
ppl() { sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$1"; }
qppl() { sed -n 's/^Mean PPL(Q) *: *\([0-9.]*\).*/\1/p' "$1"; }
kld() { sed -n 's/^Mean *KLD: *\([0-9.]*\) ± *\([0-9.]*\).*/\1 ± \2/p' "$1"; }
top() { sed -n 's/^Same top p: *\([0-9.]*\).*/\1 %/p' "$1"; }
done_log() { [ -s "$1" ] && grep -q 'Final estimate\|^Mean PPL(Q)' "$1"; }

done_log "$OUT/ember_f16.log" && [ -s "$OUT/f16.kld" ] ||
    $E -f "$TEXT" --kl-divergence-base "$OUT/f16.kld" > "$OUT/ember_f16.log" 2>&1
base=$(ppl "$OUT/ember_f16.log")
lbase=
if [ "$LP" != none ]; then
    export LD_LIBRARY_PATH="$(dirname "$LP")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done_log "$OUT/llama_f16.log" ||
        "$LP" -m "$MODEL" -f "$TEXT" -c "$CTX" -b "$CTX" -t "$THREADS" -fa on -ctk f16 -ctv f16 > "$OUT/llama_f16.log" 2>&1
    lbase=$(ppl "$OUT/llama_f16.log")
fi
printf '| K = V cache | bits per value | K sorted | rotated | ember PPL | ember - f16 | mean KLD vs f16 | same top 1 | llama.cpp PPL | llama.cpp - f16 |\n'
printf '|---|---:|---|---|---:|---:|---:|---:|---:|---:|\n'
printf '| f16 | 16 | no | no | %s | 0 | 0 | 100 %% | %s | 0 |\n' "$base" "${lbase:--}"
# type, bits, sort, rotate
while read -r t bits sort rot; do
    tag="${t}_sort-${sort}_rot-${rot}"
    done_log "$OUT/ember_$tag.log" ||
        $E --kl-divergence-base "$OUT/f16.kld" --kl-divergence -ctk "$t" -ctv "$t" --kv-sort "$sort" --kv-rotate "$rot" \
            > "$OUT/ember_$tag.log" 2>&1
    e=$(qppl "$OUT/ember_$tag.log")
    l=- dl=-
    if [ -n "$lbase" ] && [ "$sort" = off ] && [ "$rot" = on ] && [ "$t" != bfp4 ]; then
        done_log "$OUT/llama_$t.log" ||
            "$LP" -m "$MODEL" -f "$TEXT" -c "$CTX" -b "$CTX" -t "$THREADS" -fa on -ctk "$t" -ctv "$t" > "$OUT/llama_$t.log" 2>&1
        l=$(ppl "$OUT/llama_$t.log")
        dl=$(printf '%+.4f' "$(echo "$l - $lbase" | bc -l)")
    fi
    yn() { [ "$1" = on ] && echo yes || echo no; }
    printf '| %s | %s | %s | %s | %s | %+.4f | %s | %s | %s | %s |\n' "$t" "$bits" "$(yn "$sort")" "$(yn "$rot")" "$e" \
        "$(echo "$e - $base" | bc -l)" "$(kld "$OUT/ember_$tag.log")" "$(top "$OUT/ember_$tag.log")" "$l" "$dl"
done <<EOF
q8_0 8.5 off on
q4_0 4.5 off on
bfp4 4.25 on on
bfp4 4.25 off on
bfp4 4.25 on off
bfp4 4.25 off off
q4_0 4.5 off off
EOF
