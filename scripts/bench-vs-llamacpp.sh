#!/usr/bin/env bash
# bench-vs-llamacpp.sh: side-by-side benchmark of `ember bench` against llama.cpp's
# `llama-bench` on the same GGUF files, same machine, same run.
#
#   scripts/bench-vs-llamacpp.sh            full run (about 15-25 min on 2 cores)
#   QUICK=1 scripts/bench-vs-llamacpp.sh    smoke run: 1 round, pp128/tg32, 135M models only
#   scripts/bench-vs-llamacpp.sh build      only build (or find) llama-bench
#
# Reference: llama.cpp as vendored in the PyPI source package llama-cpp-python (pip
# download --no-binary :all:), built once with -DGGML_NATIVE=ON into $LLAMACPP_DIR
# (default build/llamacpp) and reused while build/llamacpp/bin/llama-bench exists.
#
# Models: the default model models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh)
# and random-weight files with the shapes of SmolLM2-135M and Llama-3.2-1B in Q4_0 and
# Q8_0 (scripts/make_bench_models.py -> models/bench/). Random weights run exactly as fast
# as trained ones: no engine skips work based on values.
#
# Method: ROUNDS rounds; in each round every model runs once in each engine, engines
# alternating which goes first, so slow drift of the machine (thermal, neighbours) hits both
# alike. Each invocation runs pp$P and tg$N at each thread count with REPS repetitions
# after llama-bench's own warmup (ember bench warms up the same way). The summary is the
# median of all samples per (model, threads, test) and the ratio ember/llama.cpp (> 1:
# ember faster). Raw JSON of every invocation lands in $OUT_DIR.
#
# Environment: QUICK=1, ROUNDS (3), REPS (1), P (512), N (128), THREADS (1,2),
# MODELS (space-separated paths), LLAMA_FA (llama-bench -fa value, default 1 = on: fastest
# on this CPU, see BENCHMARKS.md), LLAMACPP_DIR, OUT_DIR, EMBER (build/ember).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-1}; P=${P:-128}; N=${N:-32}
else
  ROUNDS=${ROUNDS:-3}; P=${P:-512}; N=${N:-128}
fi
REPS=${REPS:-1}
THREADS=${THREADS:-1,2}
LLAMA_FA=${LLAMA_FA:-1}
LLAMACPP_DIR=${LLAMACPP_DIR:-build/llamacpp}
EMBER=${EMBER:-build/ember}
OUT_DIR=${OUT_DIR:-build/bench-results/$(date +%Y%m%d-%H%M%S)}
LLAMA_BENCH="$LLAMACPP_DIR/bin/llama-bench"

log() { echo "[bench] $*" >&2; }

# Builds llama-bench from the llama-cpp-python sdist's vendored llama.cpp (once).
build_llamacpp() {
  if [ -x "$LLAMA_BENCH" ]; then log "reusing $LLAMA_BENCH"; return; fi
  local src="$LLAMACPP_DIR/src"
  mkdir -p "$src"
  if ! ls "$src"/llama_cpp_python-*.tar.gz >/dev/null 2>&1; then
    log "downloading the llama-cpp-python source package from PyPI"
    python3 -m pip download --quiet --no-binary :all: --no-deps --dest "$src" llama-cpp-python
  fi
  local tarball; tarball=$(ls "$src"/llama_cpp_python-*.tar.gz | sort -V | tail -n 1)
  local tree="${tarball%.tar.gz}"
  [ -d "$tree" ] || tar -xzf "$tarball" -C "$src"
  log "building llama-bench from $tree/vendor/llama.cpp (a few minutes)"
  cmake -S "$tree/vendor/llama.cpp" -B "$LLAMACPP_DIR/cmake" -G Ninja \
    -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_USE_PREBUILT_UI=OFF >&2
  cmake --build "$LLAMACPP_DIR/cmake" --target llama-bench -j "$(nproc)" >&2
  mkdir -p "$LLAMACPP_DIR/bin"
  cp "$LLAMACPP_DIR/cmake/bin/llama-bench" "$LLAMA_BENCH"
}

if [ "${1:-}" = build ]; then build_llamacpp; exit 0; fi

# ---- inputs ------------------------------------------------------------------------------
build_llamacpp
log "building ember"
make -s "$EMBER" >&2
./scripts/fetch-model.sh
if [ -z "${MODELS:-}" ]; then
  if [ "$QUICK" = 1 ]; then
    python3 scripts/make_bench_models.py --only smollm2-135m >&2
    MODELS="models/SmolLM2-135M-Instruct.Q4_1.gguf models/bench/smollm2-135m-q4_0.gguf models/bench/smollm2-135m-q8_0.gguf"
  else
    python3 scripts/make_bench_models.py >&2
    MODELS="models/SmolLM2-135M-Instruct.Q4_1.gguf"
    for f in smollm2-135m-q4_0 smollm2-135m-q8_0 llama3.2-1b-q4_0 llama3.2-1b-q8_0; do
      MODELS="$MODELS models/bench/$f.gguf"
    done
  fi
fi
mkdir -p "$OUT_DIR"
ISA=$("$EMBER" info -m models/SmolLM2-135M-Instruct.Q4_1.gguf | awk '$1 == "kernels" { print $2 }')
log "ember kernels: $ISA; results in $OUT_DIR"

# ---- interleaved runs ---------------------------------------------------------------------
run_llama() {  # model round
  "$LLAMA_BENCH" -m "$1" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" -fa "$LLAMA_FA" -o json \
    > "$OUT_DIR/llama.$(basename "$1" .gguf).r$2.json" 2> "$OUT_DIR/llama.$(basename "$1" .gguf).r$2.log"
}
run_ember() {  # model round
  "$EMBER" bench -m "$1" -p "$P" -n "$N" -t "$THREADS" -r "$REPS" -o json \
    > "$OUT_DIR/ember.$(basename "$1" .gguf).r$2.json" 2> "$OUT_DIR/ember.$(basename "$1" .gguf).r$2.log"
}

start=$(date +%s)
for round in $(seq 1 "$ROUNDS"); do
  for m in $MODELS; do
    if [ $(( round % 2 )) = 1 ]; then order="llama ember"; else order="ember llama"; fi
    for eng in $order; do
      log "round $round/$ROUNDS  $eng  $(basename "$m")"
      "run_$eng" "$m" "$round"
    done
  done
done
log "runs took $(( $(date +%s) - start )) s"

# ---- summary ------------------------------------------------------------------------------
"$LLAMA_BENCH" --help 2>/dev/null | head -0 || true
python3 - "$OUT_DIR" "$ISA" "$LLAMA_FA" "$ROUNDS" "$REPS" <<'PY'
import glob, json, os, statistics, sys
out, isa, fa, rounds, reps = sys.argv[1:6]
samples, meta = {}, {}
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    eng = os.path.basename(path).split(".")[0]
    for r in json.load(open(path)):
        test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
        model = os.path.basename(r["model_filename"])
        key = (model, r["n_threads"], test)
        samples.setdefault((eng,) + key, []).extend(r["samples_ts"])
        if eng == "ember":
            meta[key] = r
        meta.setdefault(("build", eng), r.get("build_commit", "?"))
keys = sorted({k[1:] for k in samples}, key=lambda k: (k[0], k[2][:2] != "pp", k[1]))
print(f"| model | threads | test | llama.cpp t/s | ember t/s | ember/llama.cpp | ember bw% |")
print("|---|--:|---|--:|--:|--:|--:|")
for key in keys:
    lt, et = samples.get(("llama",) + key), samples.get(("ember",) + key)
    lm = statistics.median(lt) if lt else float("nan")
    em = statistics.median(et) if et else float("nan")
    bw = meta.get(key, {}).get("bw_frac")
    bws = f"{100 * bw:.0f}%" if bw else "-"
    print(f"| {key[0]} | {key[1]} | {key[2]} | {lm:.2f} | {em:.2f} | {em / lm:.2f} | {bws} |")
n = len(next(iter(samples.values()))) if samples else 0
print(f"\nmedians of {n} samples per cell ({rounds} interleaved rounds x {reps} reps); "
      f"ember kernels {isa}; llama-bench -fa {fa}; "
      f"builds: llama.cpp {meta.get(('build', 'llama'))}, ember {meta.get(('build', 'ember'))}")
PY
