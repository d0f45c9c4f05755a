#!/usr/bin/env python3
"""QUALITY.md's tables: perplexity and KL divergence of requantized models, ember's and
llama.cpp's numbers side by side, with and without an importance matrix.

Rerun (from the repository root, after `make`; needs `pip install gguf`, the Debian package
golang-1.19-src for the texts, and llama-perplexity / llama-imatrix built from the llama.cpp
vendored in llama-cpp-python 0.3.36, folder in $LLAMA_BIN, default /tmp/lcpbuild/bin):
    python3 scripts/quality.py [--models smollm2,qwen-0.5b] [--types Q4_0,Q8_0] [--agreement smollm2]
Every measurement is cached as JSON in $QUALITY_DIR (default /tmp/ember-quality), so an
interrupted run resumes, and a run with more TYPES adds rows; the tables between the
markers in QUALITY.md are rewritten from everything cached for the models and types asked.

For each model (a shipped quantized GGUF; there are no F16 originals here, so every type is
requantized from the shipped weights with --allow-requantize, as the issue asks):
  1. base: `ember perplexity` and `llama-perplexity` on the book (-c CTX --chunks CHUNKS[model]),
     each saving its own --kl-divergence-base file of the shipped model's log-probs;
  2. importance matrix: `ember imatrix` on the code sample (-c CTX --chunks IMATRIX_CHUNKS),
     computed on the shipped model (so it is not fitted to the scored text);
  3. per type, without and with that matrix: `ember quantize --allow-requantize [--imatrix]`
     (byte-identical to llama-quantize, test_quantize), the actual bits per weight of the
     result (all tensor bytes * 8 / all elements, after the fallbacks and mixes), then both
     engines' --kl-divergence runs against their own base: PPL(Q), mean KLD, 99th
     percentile KLD and "Same top p".
With --compare-imatrix also llama-imatrix on the same text and flags, and the tensor-data
bytes that differ between Q4_K_M quantized with ember's matrix and with llama-imatrix's.
Everything runs under `nice -n 10` with THREADS threads.
"""
import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
from gguf import GGUFReader

# Texts, from Debian packages only (Debian 12: golang-1.19-src 1.19.8-2).
BOOK = ("golang-1.19-src", "/usr/share/go-1.19/src/testdata/Isaac.Newton-Opticks.txt",
        "d4a9ac22462b35e7821a4f2706c211093da678620a8f9997989ee7cf8d507bbd")
CODE = ("golang-1.19-src", "/usr/share/go-1.19/src/net/http/server.go",
        "75a0cf6d426ff571d300de6fde0d2f4c24ece8e99b6261e0e862ef95077d6874")

MODELS_DIR = os.environ.get("EMBER_MODELS_DIR", "/root/.cache/ember/models")
MODELS = {
    "smollm2": ("SmolLM2-135M-Instruct (shipped Q4_1)", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    "qwen-0.5b": ("Qwen2.5-Coder-0.5B-Instruct (shipped Q4_K_M)", "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf"),
    "qwen-1.5b": ("Qwen2.5-Coder-1.5B-Instruct (shipped Q4_K_M)", "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf"),
}
# Every llama.cpp type ember runs and writes, except the ternary TQ1_0/TQ2_0: they are meant
# for models trained ternary, and requantizing trained weights to them destroys the model.
TYPES = ["Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "IQ4_NL", "IQ4_XS", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
         "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "F16"]
NO_IMATRIX = {"F16", "BF16", "F32", "Q8_0"}  # llama-quantize ignores the matrix for these
CTX = 512
# scored text: CHUNKS[model] * CTX tokens of the book, the second halves scored (the machine
# is slow: llama-perplexity takes about a minute per 2048 tokens of SmolLM2 on 2 loaded cores)
CHUNKS = {"smollm2": 8, "qwen-0.5b": 2, "qwen-1.5b": 2}
# engine agreement: the shipped file alone, both engines, on a longer stretch of the book
AGREE_CHUNKS = {"smollm2": 64, "qwen-0.5b": 32, "qwen-1.5b": 8}
IMATRIX_CHUNKS = 4    # calibration: IMATRIX_CHUNKS * CTX tokens of the code sample
THREADS = 2

EMBER = os.environ.get("EMBER_BIN", "build/ember")
LLAMA_BIN = os.environ.get("LLAMA_BIN", "/tmp/lcpbuild/bin")
QDIR = os.environ.get("QUALITY_DIR", "/tmp/ember-quality")
MD = "QUALITY.md"
BEGIN, END = "<!-- quality.py: begin -->", "<!-- quality.py: end -->"


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def run(cmd, log):
    env = dict(os.environ, LD_LIBRARY_PATH=LLAMA_BIN)
    t = time.time()
    p = subprocess.run(["nice", "-n", "10"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                       errors="replace")
    with open(log, "w") as f:
        f.write(" ".join(cmd) + "\n" + p.stdout)
    if p.returncode:
        sys.exit("failed (%d): %s\n%s" % (p.returncode, " ".join(cmd), p.stdout[-3000:]))
    print("  %.0fs %s" % (time.time() - t, " ".join(os.path.basename(c) if "/" in c else c for c in cmd)), flush=True)
    return p.stdout


def grab(pattern, text):
    m = re.search(pattern, text)
    if not m:
        sys.exit("no match for %r in output:\n%s" % (pattern, text[-2000:]))
    return float(m.group(1))


def kld_numbers(out):
    return {"ppl": grab(r"Mean PPL\(Q\)\s*:\s*([0-9.]+)", out),
            "kld": grab(r"Mean\s+KLD:\s*([0-9.eE+-]+)", out),
            "kld99": grab(r"99\.0%\s+KLD:\s*([0-9.eE+-]+)", out),
            "top": grab(r"Same top p:\s*([0-9.]+)", out)}


def bpw(path):
    r = GGUFReader(path)
    nbytes = sum(int(t.n_bytes) for t in r.tensors)
    nel = sum(int(np.prod(t.shape)) for t in r.tensors)
    return 8.0 * nbytes / nel


def cached(path, fn):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    v = fn()
    with open(path + ".tmp", "w") as f:
        json.dump(v, f)
    os.replace(path + ".tmp", path)
    return v


def llama(tool):
    return os.path.join(LLAMA_BIN, tool)


def ppl_args(model, key):
    return ["-m", model, "-c", str(CTX), "--chunks", str(CHUNKS[key]), "-t", str(THREADS)]


def model_dir(key):
    """The cache of one model at its chunk count (a different count is a different run)."""
    return os.path.join(QDIR, "%s-c%d" % (key, CHUNKS[key]))


def agreement(key):
    """ember perplexity and llama-perplexity on the shipped file over AGREE_CHUNKS[key] chunks."""
    src = os.path.join(MODELS_DIR, MODELS[key][1])
    d = os.path.join(QDIR, "%s-agree-c%d" % (key, AGREE_CHUNKS[key]))
    os.makedirs(d, exist_ok=True)
    args = ["-m", src, "-c", str(CTX), "--chunks", str(AGREE_CHUNKS[key]), "-t", str(THREADS), "-f", BOOK[1]]

    def both():
        pat = r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)"
        r = {}
        for eng, cmd in (("ember", [EMBER, "perplexity"]), ("llama", [llama("llama-perplexity")])):
            out = run(cmd + args, os.path.join(d, "%s.log" % eng))
            m = re.search(pat, out)
            if not m:
                sys.exit("no final estimate in %s output" % eng)
            r[eng] = [float(m.group(1)), float(m.group(2))]
        return r
    return cached(os.path.join(d, "agree.json"), both)


def agreement_table():
    out = ["### Perplexity of the shipped files, ember against llama-perplexity", "",
           "The same file, the same stretch of the book, `-c %d`; the difference relative to llama.cpp's value." % CTX,
           "", "| model | chunks | tokens scored | PPL ember | PPL llama.cpp | difference |", "|---|---:|---:|---:|---:|---:|"]
    for key in MODELS:
        f = os.path.join(QDIR, "%s-agree-c%d" % (key, AGREE_CHUNKS[key]), "agree.json")
        if not os.path.exists(f):
            continue
        with open(f) as fh:
            r = json.load(fh)
        e, lc = r["ember"], r["llama"]
        out.append("| %s | %d | %d | %.4f +/- %.4f | %.4f +/- %.4f | %+.2f%% |" % (
            MODELS[key][0], AGREE_CHUNKS[key], AGREE_CHUNKS[key] * (CTX - 1 - CTX // 2), e[0], e[1], lc[0], lc[1],
            100.0 * (e[0] - lc[0]) / lc[0]))
    return out + [""]


def measure_model(key, types, compare_imatrix):
    name, fname = MODELS[key]
    src = os.path.join(MODELS_DIR, fname)
    d = model_dir(key)
    os.makedirs(d, exist_ok=True)
    print("== %s" % name, flush=True)
    base_e, base_l = os.path.join(d, "base.ember.kld"), os.path.join(d, "base.llama.kld")

    def base():
        oe = run([EMBER, "perplexity"] + ppl_args(src, key) + ["-f", BOOK[1], "--kl-divergence-base", base_e],
                 os.path.join(d, "base.ember.log"))
        ol = run([llama("llama-perplexity")] + ppl_args(src, key) + ["-f", BOOK[1], "--kl-divergence-base", base_l],
                 os.path.join(d, "base.llama.log"))
        pat = r"Final estimate: PPL = ([0-9.]+)"
        return {"ppl_ember": grab(pat, oe), "ppl_llama": grab(pat, ol), "bpw": bpw(src)}
    res = {"base": cached(os.path.join(d, "base.json"), base)}
    imat = os.path.join(d, "imatrix.ember.gguf")
    if not os.path.exists(imat):
        run([EMBER, "imatrix", "-m", src, "-f", CODE[1], "-o", imat, "-c", str(CTX), "--chunks", str(IMATRIX_CHUNKS),
             "-t", str(THREADS), "--no-ppl"], os.path.join(d, "imatrix.ember.log"))
    for t in types:
        for im in ([False] if t in NO_IMATRIX else [False, True]):
            tag = "%s%s" % (t, "-imatrix" if im else "")

            def row():
                q = os.path.join(d, "%s.gguf" % tag)
                run([EMBER, "quantize", "--allow-requantize"] + (["--imatrix", imat] if im else []) +
                    [src, q, t, str(THREADS)], os.path.join(d, "%s.quantize.log" % tag))
                r = {"bpw": bpw(q)}
                oe = run([EMBER, "perplexity"] + ppl_args(q, key) + ["--kl-divergence-base", base_e, "--kl-divergence"],
                         os.path.join(d, "%s.ember.log" % tag))
                ol = run([llama("llama-perplexity")] + ppl_args(q, key) + ["--kl-divergence-base", base_l, "--kl-divergence"],
                         os.path.join(d, "%s.llama.log" % tag))
                r["ember"], r["llama"] = kld_numbers(oe), kld_numbers(ol)
                os.unlink(q)
                return r
            res[tag] = cached(os.path.join(d, "%s.json" % tag), row)
    if compare_imatrix:
        def cmp_imatrix():
            lim = os.path.join(d, "imatrix.llama.gguf")
            run([llama("llama-imatrix"), "-m", src, "-f", CODE[1], "-o", lim, "-c", str(CTX), "--chunks",
                 str(IMATRIX_CHUNKS), "-t", str(THREADS), "--no-ppl"], os.path.join(d, "imatrix.llama.log"))
            qa, qb = os.path.join(d, "cmp.ember.gguf"), os.path.join(d, "cmp.llama.gguf")
            for m, q in ((imat, qa), (lim, qb)):
                run([EMBER, "quantize", "--allow-requantize", "--imatrix", m, src, q, "Q4_K_M", str(THREADS)],
                    os.path.join(d, "cmp.quantize.log"))
            a, b = GGUFReader(qa), GGUFReader(qb)
            diff = total = 0
            for x, y in zip(a.tensors, b.tensors):
                u, v = np.asarray(x.data).view(np.uint8).ravel(), np.asarray(y.data).view(np.uint8).ravel()
                diff += int((u != v).sum())
                total += u.size
            os.unlink(qa)
            os.unlink(qb)
            return {"diff": diff, "total": total}
        res["imatrix_cmp"] = cached(os.path.join(d, "imatrix_cmp.json"), cmp_imatrix)
    return res


def table(key, types, res):
    name = MODELS[key][0]
    b = res["base"]
    out = ["### %s" % name, "",
           "%d chunks of %d tokens of the book (%d scored). Shipped file: %.2f bits per weight; PPL ember %.4f, "
           "llama.cpp %.4f." % (CHUNKS[key], CTX, CHUNKS[key] * (CTX - 1 - CTX // 2), b["bpw"], b["ppl_ember"],
                                b["ppl_llama"]),
           ""]
    if "imatrix_cmp" in res:
        c = res["imatrix_cmp"]
        out += ["Q4_K_M quantized with ember's importance matrix and with llama-imatrix's (same text and flags): "
                "%d of %d tensor-data bytes differ (%.3f%%)." % (c["diff"], c["total"], 100.0 * c["diff"] / c["total"]), ""]
    out += ["| type | imatrix | bits/weight | PPL ember | PPL llama.cpp | KLD ember | KLD llama.cpp "
            "| KLD 99% ember | KLD 99% llama.cpp | same top ember | same top llama.cpp |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for t in types:
        for im in ([False] if t in NO_IMATRIX else [False, True]):
            r = res.get("%s%s" % (t, "-imatrix" if im else ""))
            if not r:
                continue
            e, lc = r["ember"], r["llama"]
            out.append("| %s | %s | %.3f | %.4f | %.4f | %.5f | %.5f | %.4f | %.4f | %.2f%% | %.2f%% |" % (
                t, "yes" if im else "no", r["bpw"], e["ppl"], lc["ppl"], e["kld"], lc["kld"], e["kld99"], lc["kld99"],
                e["top"], lc["top"]))
    return out + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="smollm2,qwen-0.5b,qwen-1.5b")
    ap.add_argument("--types", default=",".join(TYPES))
    ap.add_argument("--types-1.5b", dest="types15", default="Q2_K,Q3_K_M,IQ4_XS,Q4_0,Q4_K_M,Q8_0",
                    help="the (slow) 1.5B model's types")
    ap.add_argument("--compare-imatrix", default="smollm2,qwen-0.5b",
                    help="models on which llama-imatrix runs too")
    ap.add_argument("--table-only", action="store_true", help="rewrite QUALITY.md from the cache only")
    ap.add_argument("--agreement", default="", help="models whose shipped file both engines score on AGREE_CHUNKS")
    ap.add_argument("--no-types", action="store_true", help="skip the per-type rows (e.g. with --agreement)")
    a = ap.parse_args()
    for pkg, path, want in (BOOK, CODE):
        if not os.path.exists(path):
            sys.exit("%s missing: apt-get install %s" % (path, pkg))
        if sha256(path) != want:
            sys.exit("%s: sha256 differs from %s" % (path, want))
    for key in ([] if a.table_only else [k for k in a.agreement.split(",") if k]):
        agreement(key)
    for key in ([] if a.table_only or a.no_types else a.models.split(",")):
        types = (a.types15 if key == "qwen-1.5b" else a.types).split(",")
        measure_model(key, types, key in a.compare_imatrix.split(","))
    lines = agreement_table()
    for key in MODELS:  # every model measured so far, from the cache
        d = model_dir(key)
        if not os.path.exists(os.path.join(d, "base.json")):
            continue
        res = {}
        for f in os.listdir(d):
            if f.endswith(".json"):
                with open(os.path.join(d, f)) as fh:
                    res[f[:-5]] = json.load(fh)
        lines += table(key, TYPES, res)
    with open(MD) as f:
        md = f.read()
    i, j = md.index(BEGIN) + len(BEGIN), md.index(END)
    with open(MD, "w") as f:
        f.write(md[:i] + "\n" + "\n".join(lines) + md[j:])


if __name__ == "__main__":
    main()
