#!/bin/sh
# kv-policies.sh: KVCACHE.md's "Policies" numbers. (1) Perplexity of the same chunks and
# scored positions with the full cache and through bounded caches kept by the sink and the
# elastic policies (ember perplexity --kv-policy ... --kv-size N: each chunk of CTX tokens
# streams through N cells). (2) Endurance: `ember run --ignore-eos` generating N_GEN tokens
# through a 256-cell cache with each bounded policy, the resident memory (ps) sampled every
# 10 s; prints the first and last samples, the largest, and the decode speed.
#   scripts/kv-policies.sh [ppl|endurance|all]
# Variables: MODEL (the default model), TEXT (Isaac Newton's Opticks from Debian's
# golang-1.19-src), CTX (2048), CHUNKS (4), SIZES ("256 512 1024": cells of the bounded
# caches), SINK (4), RATIO (0.2), BATCH (32), N_GEN (20000), POLICIES ("sink elastic": the
# endurance runs), THREADS (2), OUT (/tmp/kv-pol, the logs). For the sink policy the window is N - SINK - BATCH (the cells the chunks
# stream through leave room for one batch), so every scored token sees the sinks and at
# least N - SINK - 2 BATCH recent tokens.
set -eu
cd "$(dirname "$0")/.."
WHAT=${1:-all}
MODEL=${MODEL:-models/SmolLM2-135M-Instruct.Q4_1.gguf}
TEXT=${TEXT:-/usr/share/go-1.19/src/testdata/Isaac.Newton-Opticks.txt}
CTX=${CTX:-2048}
CHUNKS=${CHUNKS:-4}
SIZES=${SIZES:-256 512 1024}
SINK=${SINK:-4}
RATIO=${RATIO:-0.2}
BATCH=${BATCH:-32}
N_GEN=${N_GEN:-20000}
THREADS=${THREADS:-2}
OUT=${OUT:-/tmp/kv-pol}
mkdir -p "$OUT"
E=build/ember
ppl() { sed -n 's/.*Final estimate: PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' "$1"; }

if [ "$WHAT" = ppl ] || [ "$WHAT" = all ]; then
    common="-m $MODEL -f $TEXT -c $CTX --chunks $CHUNKS -t $THREADS -b $BATCH"
    printf '| cache | cells | PPL (%s chunks of %s, second halves scored) |\n|---|---:|---:|\n' "$CHUNKS" "$CTX"
    $E perplexity $common > "$OUT/ppl_full.log" 2>&1
    printf '| full | %s | %s |\n' "$CTX" "$(ppl "$OUT/ppl_full.log")"
    for n in $SIZES; do
        w=$((n - SINK - BATCH))
        $E perplexity $common --kv-policy sink --kv-size "$n" --kv-sink "$SINK" --kv-window "$w" \
            > "$OUT/ppl_sink_$n.log" 2>&1
        printf '| sink (S %s, W %s) | %s | %s |\n' "$SINK" "$w" "$n" "$(ppl "$OUT/ppl_sink_$n.log")"
    done
    for n in $SIZES; do
        $E perplexity $common --kv-policy elastic --kv-size "$n" --kv-sink "$SINK" --kv-ratio "$RATIO" \
            > "$OUT/ppl_elastic_$n.log" 2>&1
        printf '| elastic (S %s, r %s) | %s | %s |\n' "$SINK" "$RATIO" "$n" "$(ppl "$OUT/ppl_elastic_$n.log")"
    done
fi

if [ "$WHAT" = endurance ] || [ "$WHAT" = all ]; then
    printf '\n| policy | tokens | RSS first sample (KiB) | RSS last sample (KiB) | RSS max (KiB) | samples | decode tok/s |\n'
    printf '|---|---:|---:|---:|---:|---:|---:|\n'
    for pol in ${POLICIES:-sink elastic}; do
        log="$OUT/endurance_$pol"
        $E run -v -m "$MODEL" -c 256 -n "$N_GEN" --ignore-eos --temp 0 -t "$THREADS" --kv-policy "$pol" \
            -p "The history of optics begins" > "$log.out" 2> "$log.err" &
        pid=$!
        : > "$log.rss"
        sleep 2
        while kill -0 "$pid" 2>/dev/null; do
            ps -o rss= -p "$pid" >> "$log.rss" 2>/dev/null || true
            sleep 10
        done
        wait "$pid"
        rate=$(sed -n 's/.*eval: .*(\s*\([0-9.]*\) tokens\/s).*/\1/p' "$log.err" | tail -1)
        awk -v p="$pol" -v n="$N_GEN" -v r="$rate" 'NF { if (!c++) f = $1; l = $1; if ($1 > m) m = $1 }
            END { printf "| %s | %s | %s | %s | %s | %d | %s |\n", p, n, f, l, m, c, r }' "$log.rss"
    done
fi
