#!/bin/sh
# bench-speculative.sh: SPECULATIVE.md's table. Runs `ember run` at --temp 0 on fixed
# prompts with and without speculative decoding (prompt lookup; a draft model), checks
# that the generated ids are identical, and prints one Markdown row per case: decode
# tokens/s without and with speculation, the speed-up, the acceptance rate and the mean
# tokens per verification step (from -v).
#
#   scripts/bench-speculative.sh            # all cases (the Qwen ones need fetch-models.sh)
#   N=64 THREADS=2 scripts/bench-speculative.sh
#   OVERLAP=1 REPS=2 scripts/bench-speculative.sh   # only the overlap table: sequential
#                                                   # drafting against --spec-overlap
# Environment: EMBER (default build/ember), MODELS (default models, else
# /root/.cache/ember/models), N tokens to generate (128), THREADS (2), REPS runs per
# configuration, best kept (1).
set -eu
EMBER=${EMBER:-build/ember}
N=${N:-128}
THREADS=${THREADS:-2}
REPS=${REPS:-1}
if [ -z "${MODELS:-}" ]; then
    MODELS=models
    [ -f "$MODELS/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf" ] || MODELS=/root/.cache/ember/models
fi
SMOL=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$SMOL" ] || SMOL=$MODELS/SmolLM2-135M-Instruct.Q4_1.gguf
Q15=$MODELS/Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf
Q05=$MODELS/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf
TMP=${TMPDIR:-/tmp}/ember-bench-spec.$$
mkdir -p "$TMP"
trap 'rm -rf "$TMP"' EXIT

# A code-editing prompt (the answer copies most of the code) and a summarization prompt.
cat > "$TMP/code.txt" <<'EOF'
<|im_start|>user
Rename the variable `items` to `values` in this function and change nothing else.

```python
def moving_average(items, window):
    if window <= 0 or window > len(items):
        raise ValueError("window must be in [1, len(items)]")
    total = sum(items[:window])
    result = [total / window]
    for i in range(window, len(items)):
        total += items[i] - items[i - window]
        result.append(total / window)
    return result
```<|im_end|>
<|im_start|>assistant
EOF
cat > "$TMP/summary.txt" <<'EOF'
<|im_start|>user
Summarize this paragraph in two sentences.

The city council met on Tuesday to discuss the new bicycle lanes on Main Street. Supporters
said the lanes would make cycling safer and reduce traffic, while shop owners worried that
removing parking spaces would hurt their business. After three hours of debate the council
voted to build the lanes on a trial basis for one year and to review the effect on traffic
and on local shops before deciding whether to keep them.<|im_end|>
<|im_start|>assistant
EOF

# run MODEL PROMPT_FILE EXTRA...: prints "tok_s drafted accepted steps tokens_per_step"
# and leaves the ids in $TMP/ids.
run() {
    model=$1; prompt=$2; shift 2
    best=0
    r=0
    while [ "$r" -lt "$REPS" ]; do
        "$EMBER" run -m "$model" -f "$prompt" --special -n "$N" --temp 0 -t "$THREADS" --ids -v "$@" \
            > "$TMP/ids" 2> "$TMP/err"
        ts=$(sed -n 's/^ *eval: .*(\(.*\) tokens\/s)$/\1/p' "$TMP/err" | tr -d ' ')
        best=$(awk -v a="$best" -v b="$ts" 'BEGIN { print (b > a ? b : a) }')
        r=$((r + 1))
    done
    spec=$(sed -n 's/^speculative: \([0-9]*\) drafted, \([0-9]*\) accepted ([^)]*), \([0-9]*\) steps, \([0-9.]*\) tokens per step.*$/\1 \2 \3 \4/p' "$TMP/err")
    echo "$best ${spec:-0 0 0 1}"
}

# row NAME MODEL PROMPT_FILE SPEC_FLAGS...
row() {
    name=$1; model=$2; prompt=$3; shift 3
    if [ ! -f "$model" ]; then echo "| $name | (missing: $model) |||||"; return; fi
    set -- "$@"
    base=$(run "$model" "$prompt")
    cp "$TMP/ids" "$TMP/ids.base"
    spec=$(run "$model" "$prompt" "$@")
    same=identical
    cmp -s "$TMP/ids" "$TMP/ids.base" || same=DIFFERENT
    echo "$base $spec" | awk -v name="$name" -v same="$same" '{
        b = $1; s = $6; d = $7; a = $8; steps = $9; tps = $10;
        printf "| %s | %.2f | %.2f | %.2fx | %s | %.2f | %s |\n", name, b, s, (b > 0 ? s / b : 0),
               (d > 0 ? sprintf("%.0f%% (%d/%d)", 100 * a / d, a, d) : "-"), tps, same }'
}

# once MODEL PROMPT_FILE OUT EXTRA...: one run; OUT.ids gets the ids, prints
# "tok_s steps overlapped"
once() {
    model=$1; prompt=$2; o=$3; shift 3
    "$EMBER" run -m "$model" -f "$prompt" --special -n "$N" --temp 0 -t "$THREADS" --ids -v "$@" \
        > "$o.ids" 2> "$o.err"
    ts=$(sed -n 's/^ *eval: .*(\(.*\) tokens\/s)$/\1/p' "$o.err" | tr -d ' ')
    st=$(sed -n 's/^speculative: .* \([0-9]*\) steps, .* tokens per step, \([0-9]*\) overlapped$/\1 \2/p' "$o.err")
    echo "$ts ${st:-0 0}"
}

# orow NAME PROMPT_FILE: the 0.5B draft for the 1.5B target drafting sequentially (-t
# THREADS for both) against the overlap (--spec-overlap; the target with -t THREADS or 1,
# the draft with -td 1), REPS rounds with the three runs back to back in each (so the
# machine's load hits them alike), the best rate of each kept.
orow() {
    name=$1; prompt=$2
    if [ ! -f "$Q15" ] || [ ! -f "$Q05" ]; then echo "| $name | (missing: $Q15 or $Q05) ||||||"; return; fi
    bs=0; ba=0; bb=0; r=0
    while [ "$r" -lt "$REPS" ]; do
        set -- $(once "$Q15" "$prompt" "$TMP/s" -md "$Q05"); bs=$(awk -v a="$bs" -v b="$1" 'BEGIN { print (b > a ? b : a) }')
        set -- $(once "$Q15" "$prompt" "$TMP/a" -md "$Q05" --spec-overlap -td 1); ba=$(awk -v a="$ba" -v b="$1" 'BEGIN { print (b > a ? b : a) }'); sa="$2 $3"
        set -- $(once "$Q15" "$prompt" "$TMP/b" -md "$Q05" --spec-overlap -t 1 -td 1); bb=$(awk -v a="$bb" -v b="$1" 'BEGIN { print (b > a ? b : a) }'); sb="$2 $3"
        r=$((r + 1))
    done
    same=identical
    { cmp -s "$TMP/s.ids" "$TMP/a.ids" && cmp -s "$TMP/s.ids" "$TMP/b.ids"; } || same=DIFFERENT
    echo "$bs $ba $bb $sa $sb" | awk -v name="$name" -v same="$same" -v t="$THREADS" '{
        printf "| %s | %.2f | %.2f (%.2fx) | %.2f (%.2fx) | %d/%d, %d/%d | %s |\n", name, $1, $2, ($1 > 0 ? $2 / $1 : 0),
               $3, ($1 > 0 ? $3 / $1 : 0), $5, $4, $7, $6, same }'
}

if [ -n "${OVERLAP:-}" ]; then
    echo "| case | sequential tok/s (-t $THREADS) | overlap -t $THREADS -td 1 | overlap -t 1 -td 1 | steps drafted in overlap | output |"
    echo "|---|---|---|---|---|---|"
    orow "Qwen2.5-Coder-1.5B <- 0.5B draft, code edit" "$TMP/code.txt"
    orow "Qwen2.5-Coder-1.5B <- 0.5B draft, summary" "$TMP/summary.txt"
    exit 0
fi

echo "| case | plain tok/s | speculative tok/s | speed-up | accepted | tokens/step | output |"
echo "|---|---|---|---|---|---|---|"
row "SmolLM2-135M, lookup, code edit" "$SMOL" "$TMP/code.txt" --lookup
row "SmolLM2-135M, lookup, summary" "$SMOL" "$TMP/summary.txt" --lookup
row "Qwen2.5-Coder-1.5B, lookup, code edit" "$Q15" "$TMP/code.txt" --lookup
row "Qwen2.5-Coder-1.5B, lookup, summary" "$Q15" "$TMP/summary.txt" --lookup
row "Qwen2.5-Coder-1.5B <- 0.5B draft, code edit" "$Q15" "$TMP/code.txt" -md "$Q05"
row "Qwen2.5-Coder-1.5B <- 0.5B draft, summary" "$Q15" "$TMP/summary.txt" -md "$Q05"
