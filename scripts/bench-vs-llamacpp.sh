#!/usr/bin/env bash
# bench-vs-llamacpp.sh: side-by-side benchmark of `ember bench` against llama.cpp's
# `llama-bench` on the same GGUF files, same machine, same run.
#
#   scripts/bench-vs-llamacpp.sh            full run (11 min of runs on the quiet 2-core dev box; 33 while it was
#                                           loaded by other jobs; less on a quiet one)
#   QUICK=1 scripts/bench-vs-llamacpp.sh    smoke run: 1 round, pp128/tg32, 135M models only
#   scripts/bench-vs-llamacpp.sh build      only build (or find) llama-bench
#
# Reference: llama.cpp as vendored in the PyPI source package llama-cpp-python (pip
# download --no-binary :all:), built once with -DGGML_NATIVE=ON into $LLAMACPP_DIR
# (default build/llamacpp) and reused while build/llamacpp/bin/llama-bench exists.
#
# Models: the default model models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh)
# and random-weight files with the shapes of SmolLM2-135M and Llama-3.2-1B in Q4_0 and
# Q8_0 (scripts/make_bench_models.py -> models/bench/). Random weights should run as fast
# as trained ones: neither engine skips work based on values.
#
# Method: ROUNDS rounds; in each round every model runs once in each engine, engines
# alternating which goes first, so slow drift of the machine (thermal, neighbours) hits both
# alike. Each invocation runs pp$P and tg$N at each thread count with REPS repetitions
# after llama-bench's own warmup (ember bench warms up the same way). The summary is the
# median of all samples per (model, threads, test) and the ratio ember/llama.cpp (> 1:
# ember faster). Raw JSON of every invocation lands in $OUT_DIR.
#
# Environment: QUICK=1, ROUNDS (2), REPS (1), P (512), N (128), THREADS (1,2),
# MODELS (space-separated paths), LLAMA_FA (llama-bench -fa value, default 1 = on: fastest
# on this CPU, see BENCHMARKS.md), LLAMACPP_DIR, OUT_DIR, EMBER (build/ember).
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
  ROUNDS=${ROUNDS:-1}; P=${P:-128}; N=${N:-32}
else
  ROUNDS=${ROUNDS:-2}; P=${P:-512}; N=${N:-128}
fi
REPS=${REPS:-1}
THREADS=${THREADS:-1,2}
LLAMA_FA=${LLAMA_FA:-1}
LLAMACPP_DIR=${LLAMACPP_DIR:-build/llamacpp}
EMBER=${EMBER:-build/ember}
OUT_DIR=${OUT_DIR:-build/bench-results/$(date +%Y%m%d-%H%M%S)}
LLAMA_BENCH="$LLAMACPP_DIR/bin/llama-bench"

log() { echo "[bench] $*" >&2; }

# True if this CPU and OS run an AMX tile instruction (x86 only; false elsewhere).
amx_usable() {
  local d; d=$(mktemp -d)
  cat > "$d/amx.c" <<'C'
#include <immintrin.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>
int main(void) {
    if (syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XTILEDATA */)) return 1;
    unsigned char cfg[64];
    memset(cfg, 0, sizeof cfg);
    cfg[0] = 1; cfg[16] = 64; cfg[48] = 16;   /* palette 1; tile 0: 16 rows of 64 bytes */
    _tile_loadconfig(cfg);
    _tile_zero(0);
    _tile_release();
    return 0;
}
C
  local ok=1
  # run it in a shell that is not the last command, so its "Illegal instruction" is muted
  if cc -O1 -mamx-tile "$d/amx.c" -o "$d/amx" 2>/dev/null &&
     sh -c '"$1"; r=$?; exit $r' _ "$d/amx" 2>/dev/null; then ok=0; fi
  rm -rf "$d"
  return $ok
}

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
  # -march=native turns AMX on where the CPU lists it, but some VMs (this one) trap AMX
  # instructions, and llama-bench then dies with SIGILL. Keep AMX only if a tile op runs.
  local noamx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  if amx_usable; then noamx=""; log "AMX usable: llama.cpp keeps it"; else log "AMX not usable here: building llama.cpp without AMX"; fi
  log "building llama-bench from $tree/vendor/llama.cpp (a few minutes)"
  cmake -S "$tree/vendor/llama.cpp" -B "$LLAMACPP_DIR/cmake" -G Ninja \
    -DCMAKE_C_FLAGS="$noamx" -DCMAKE_CXX_FLAGS="$noamx" \
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
if [ "$EMBER" = build/ember ]; then log "building ember"; make -s build/ember >&2; fi
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
python3 - "$OUT_DIR" "$ISA" "$LLAMA_FA" "$ROUNDS" "$REPS" <<'PY' | tee "$OUT_DIR/summary.md"
import glob, json, os, statistics, sys
out, isa, fa, rounds, reps = sys.argv[1:6]
ts, frac, bw, pk, ttft, rss, build, mtype = {}, {}, {}, {}, {}, {}, {}, {}
for path in sorted(glob.glob(os.path.join(out, "*.json"))):
    eng = os.path.basename(path).split(".")[0]
    for r in json.load(open(path)):
        test = f"pp{r['n_prompt']}" if r["n_gen"] == 0 else f"tg{r['n_gen']}"
        key = (os.path.basename(r["model_filename"]), r["n_threads"], test)
        ts.setdefault((eng,) + key, []).extend(r["samples_ts"])
        build[eng] = r.get("build_commit", "?")
        if eng == "ember":
            mtype[key[0]] = r["model_type"]
            bw.setdefault(r["n_threads"], []).append(r["read_bw_gbps"])
            rss.setdefault(key[0], []).append(r["peak_rss_bytes"] / 2**20)
            # roof%: tg against the bandwidth bound, pp against the multiply-add peak
            f = r["bw_frac"] if r["n_gen"] else r.get("peak_frac", 0)
            if f > 0:
                frac.setdefault(key, []).append(f)
            if r.get("peak_int8_gops", 0) > 0:
                pk.setdefault(r["n_threads"], []).append((r["peak_int8_gops"], r["peak_f32_gops"]))
            if r["ttft_ms"] > 0:
                ttft.setdefault(key, []).append(r["ttft_ms"])
med = lambda xs: statistics.median(xs) if xs else float("nan")
keys = sorted({k[1:] for k in ts}, key=lambda k: (k[0], k[2][:2] != "pp", k[1]))
print("| model | file | threads | test | llama.cpp t/s | ember t/s | ember/llama.cpp | ember roof% |")
print("|---|---|--:|---|--:|--:|--:|--:|")
for key in keys:
    lm, em = med(ts.get(("llama",) + key)), med(ts.get(("ember",) + key))
    f = med(frac.get(key))
    fs = f"{100 * f:.0f}%" if f == f else "-"
    print(f"| {mtype.get(key[0], '?')} | {key[0]} | {key[1]} | {key[2]} | {lm:.2f} | {em:.2f} | {em / lm:.2f} | {fs} |")
n = min(len(v) for v in ts.values()) if ts else 0
print(f"\nt/s: medians of {n} samples per cell ({rounds} interleaved rounds x {reps} reps); "
      f"ratio > 1 means ember is faster. ember kernels: {isa}; llama-bench -fa {fa}.")
print("ember time to first token (pp + 1 token), median ms: " + "; ".join(
    f"{mtype.get(k[0], k[0])} t{k[1]} {k[2]} {med(v):.0f}" for k, v in sorted(ttft.items())))
print("ember peak RSS, MiB: " + "; ".join(f"{mtype.get(m, m)} {med(v):.0f}" for m, v in sorted(rss.items())))
print("memory read bandwidth (ember's probe, median GB/s): " +
      ", ".join(f"{t} thread{'s' if t > 1 else ''} {med(v):.1f}" for t, v in sorted(bw.items())))
print("multiply-add peak (ember's probe, median int8 / f32 GOP/s): " + ", ".join(
    f"{t} thread{'s' if t > 1 else ''} {med([a for a, _ in v]):.0f} / {med([b for _, b in v]):.0f}"
    for t, v in sorted(pk.items())))
print("roof%: tg t/s over the bandwidth bound (bytes per token / read bandwidth); pp t/s over the "
      "compute bound (2 ops per weight multiply-add at the int8 or f32 peak; attention not counted).")
print(f"builds: llama.cpp {build.get('llama')}, ember {build.get('ember')}")
PY
