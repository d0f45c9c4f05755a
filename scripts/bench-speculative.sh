#!/bin/sh
# bench-speculative.sh: SPECULATIVE.md's table. Runs `ember run` at --temp 0 on fixed
# prompts with and without speculative decoding (prompt lookup; a draft model), checks
# that the generated ids are identical, and prints one Markdown row per case: decode
# tokens/s without and with speculation, the speed-up, the acceptance rate and the mean
# tokens per verification step (from -v).
#
#   scripts/bench-speculative.sh            # all cases (the Qwen ones need fetch-models.sh)
#   N=64 THREADS=2 scripts/bench-speculative.sh
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
    spec=$(sed -n 's/^speculative: \([0-9]*\) drafted, \([0-9]*\) accepted ([^)]*), \([0-9]*\) steps, \([0-9.]*\) tokens per step$/\1 \2 \3 \4/p' "$TMP/err")
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

echo "| case | plain tok/s | speculative tok/s | speed-up | accepted | tokens/step | output |"
echo "|---|---|---|---|---|---|---|"
row "SmolLM2-135M, lookup, code edit" "$SMOL" "$TMP/code.txt" --lookup
row "SmolLM2-135M, lookup, summary" "$SMOL" "$TMP/summary.txt" --lookup
row "Qwen2.5-Coder-1.5B, lookup, code edit" "$Q15" "$TMP/code.txt" --lookup
row "Qwen2.5-Coder-1.5B, lookup, summary" "$Q15" "$TMP/summary.txt" --lookup
row "Qwen2.5-Coder-1.5B <- 0.5B draft, code edit" "$Q15" "$TMP/code.txt" -md "$Q05"
row "Qwen2.5-Coder-1.5B <- 0.5B draft, summary" "$Q15" "$TMP/summary.txt" -md "$Q05"
