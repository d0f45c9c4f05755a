#!/usr/bin/env python3
"""QUANTIZATION.md's tables: ember's own weight formats (INT2..INT8, BFP3..BFP7, OVP4) next to
llama.cpp's types, measured with ember's quantize / perplexity / KL-divergence tools.

Rerun (from the repository root, after `make`; needs the Debian package golang-1.19-src
for the text, as scripts/quality.py):
    python3 scripts/seed_quality.py [--models stories260k,smollm2] [--types Q8_0,INT4] [--chunks 2]
Measurements are cached as JSON in $SEED_QUALITY_DIR (default /tmp/ember-seed-quality), so
an interrupted run resumes; the tables between the markers in QUANTIZATION.md are rewritten
from everything cached for the models asked.

Per model:
  1. base: a full-precision GGUF. stories260K is F32 already (../shared/fixtures); SmolLM2
     ships as Q4_1, so its base is that file dequantized to F32 by `ember quantize
     --allow-requantize ... F32` (formats that share Q4_1's grid are favoured: say so);
  2. `ember perplexity` of the base on the book (-c CTX[model] --chunks CHUNKS[model]),
     saving the --kl-divergence-base file of its log-probs;
  3. per type: `ember quantize --allow-requantize BASE OUT TYPE`, the actual bits per
     weight of OUT (every tensor's bytes * 8 / its elements, after fallbacks and mixes,
     norms included), its file size, and `ember perplexity --kl-divergence` against the
     base: PPL(Q), mean KLD, 99.9% KLD and "Same top p" (top-1 agreement).
ember computes every row; llama.cpp cannot read the seed formats, and QUALITY.md already
shows that ember's numbers for llama.cpp's types match llama-perplexity's.
Everything runs under `nice -n 10` with THREADS threads.
"""
import argparse
import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import time

BOOK = ("golang-1.19-src", "/usr/share/go-1.19/src/testdata/Isaac.Newton-Opticks.txt",
        "d4a9ac22462b35e7821a4f2706c211093da678620a8f9997989ee7cf8d507bbd")
FIXTURES = os.environ.get("EMBER_FIXTURES", "../shared/fixtures")
MODELS_DIR = os.environ.get("EMBER_MODELS_DIR", "/root/.cache/ember/models")
# key: (title, source file, source is full precision, context, chunks)
MODELS = {
    "stories260k": ("stories260K (F32, dim 64, ffn 172)", os.path.join(FIXTURES, "models/stories260K.gguf"), True, 128, 32),
    "smollm2": ("SmolLM2-135M-Instruct (base: the shipped Q4_1, dequantized)",
                os.path.join(MODELS_DIR, "SmolLM2-135M-Instruct.Q4_1.gguf"), False, 512, 2),
}
LLAMA_TYPES = ["Q8_0", "Q6_K", "Q4_K_M", "Q4_0", "Q3_K_M", "Q2_K"]
SEED_TYPES = ["INT8", "INT7", "INT6", "INT5", "INT4", "INT3", "INT2", "BFP7", "BFP6", "BFP5", "BFP4", "BFP3", "OVP4"]
THREADS = 2

EMBER = os.environ.get("EMBER_BIN", "build/ember")
QDIR = os.environ.get("SEED_QUALITY_DIR", "/tmp/ember-seed-quality")
MD = "QUANTIZATION.md"
BEGIN, END = "<!-- seed_quality.py: begin -->", "<!-- seed_quality.py: end -->"

# (elements per block, bytes per block) of the tensor types these files can hold: ggml's
# ids, and ember's own at 4096.. (src/quant/quant.h).
BLOCKS = {0: (1, 4), 1: (1, 2), 30: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
          10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 20: (32, 18),
          23: (256, 136), 34: (256, 54), 35: (256, 66)}
for _b in range(2, 9):
    BLOCKS[4096 + _b - 2] = (64, 4 + 8 * _b)   # INT2..INT8
for _m in range(3, 8):
    BLOCKS[4103 + _m - 3] = (32, 1 + 4 * _m)   # BFP3..BFP7
BLOCKS[4108] = (64, 34)                         # OVP4


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for b in iter(lambda: f.read(1 << 20), b""):
            h.update(b)
    return h.hexdigest()


def run(cmd, log):
    t = time.time()
    p = subprocess.run(["nice", "-n", "10"] + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
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


def gguf_bits(path):
    """Bits per weight over every tensor (bytes * 8 / elements), from the GGUF header."""
    with open(path, "rb") as f:
        b = f.read(16 << 20)
    pos = 0

    def rd(fmt):
        nonlocal pos
        v = struct.unpack_from("<" + fmt, b, pos)
        pos += struct.calcsize("<" + fmt)
        return v[0]

    def rd_str():
        nonlocal pos
        n = rd("Q")
        pos += n
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def skip(vt):
        nonlocal pos
        if vt == 8:
            rd_str()
        elif vt == 9:
            et, n = rd("I"), rd("Q")
            for _ in range(n):
                skip(et)
        else:
            pos += sizes[vt]
    assert b[:4] == b"GGUF", path
    pos = 8
    nt, nkv = rd("Q"), rd("Q")
    for _ in range(nkv):
        rd_str()
        skip(rd("I"))
    nbytes = nel = 0
    for _ in range(nt):
        rd_str()
        nd = rd("I")
        ne = [rd("Q") for _ in range(nd)]
        t = rd("I")
        rd("Q")
        n = 1
        for x in ne:
            n *= x
        blk, bs = BLOCKS[t]
        nel += n
        nbytes += n // blk * bs
    return 8.0 * nbytes / nel


def kld_numbers(out):
    return {"ppl": grab(r"Mean PPL\(Q\)\s*:\s*([0-9.]+)", out),
            "kld": grab(r"Mean\s+KLD:\s*([0-9.eE+-]+)", out),
            "kld999": grab(r"99\.9%\s+KLD:\s*([0-9.eE+-]+)", out),
            "top": grab(r"Same top p:\s*([0-9.]+)", out)}


def cached(path, fn):
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    v = fn()
    with open(path + ".tmp", "w") as f:
        json.dump(v, f)
    os.replace(path + ".tmp", path)
    return v


def measure(key, types):
    title, src, full, ctx, chunks = MODELS[key]
    d = os.path.join(QDIR, key)
    os.makedirs(d, exist_ok=True)
    print("== %s" % title, flush=True)
    base = src
    if not full:
        base = os.path.join(d, "base-f32.gguf")
        if not os.path.exists(base):
            run([EMBER, "quantize", "--allow-requantize", src, base, "F32", str(THREADS)], os.path.join(d, "base.quantize.log"))
    pargs = ["-c", str(ctx), "--chunks", str(chunks), "-t", str(THREADS)]
    base_kld = os.path.join(d, "base.kld")

    def base_row():
        o = run([EMBER, "perplexity", "-m", base, "-f", BOOK[1], "--kl-divergence-base", base_kld] + pargs,
                os.path.join(d, "base.log"))
        return {"ppl": grab(r"Final estimate: PPL = ([0-9.]+)", o), "bpw": gguf_bits(base),
                "size": os.path.getsize(base), "src_bpw": gguf_bits(src)}
    res = {"base": cached(os.path.join(d, "base.json"), base_row)}
    for t in types:
        def row():
            q = os.path.join(d, "%s.gguf" % t)
            o = run([EMBER, "quantize", "--allow-requantize", base, q, t, str(THREADS)], os.path.join(d, "%s.quantize.log" % t))
            r = {"bpw": gguf_bits(q), "size": os.path.getsize(q),
                 "fallbacks": int(m.group(1)) if (m := re.search(r"(\d+) of \d+ tensor\(s\) required fallback", o)) else 0}
            o = run([EMBER, "perplexity", "-m", q, "--kl-divergence-base", base_kld, "--kl-divergence"] + pargs,
                    os.path.join(d, "%s.ppl.log" % t))
            r.update(kld_numbers(o))
            os.unlink(q)
            return r
        res[t] = cached(os.path.join(d, "%s.json" % t), row)
    return res


NOTES = {
    "stories260k": "Its rows are 64 or 172 wide, not multiples of 256, so llama.cpp's K-quant types fall back "
                   "to legacy ones there (Q2_K to Q4_0, Q3_K_M to Q4_0/Q5_0/Q5_1, Q4_K_M to Q5_0/Q8_0, Q6_K to "
                   "Q8_0: hence the rows with equal sizes and numbers); the 172-wide ffn_down rows are F16 in every "
                   "file (32 does not divide them) and the tied embedding Q8_0, which is why even INT2 lands near "
                   "6 bits per weight. The text (an English book) is not the model's domain (TinyStories), hence "
                   "the high PPL; the KLD still measures how far each file is from the F32 model.",
    "smollm2": "The output (tied token_embd, 576 wide) is Q8_0 in every file, as llama.cpp's mixes make it. Every "
               "matrix that reads the 576-wide residual stream has rows that are not a multiple of 256, so llama.cpp's "
               "K-quant types fall back there (180 tensors): Q3_K_M is mostly Q4_0 and Q5_0, Q4_K_M mostly Q5_0, "
               "Q6_K mostly Q8_0; only the 1536-wide ffn_down rows get K-quants. ember's formats need 64 (INT, OVP4) "
               "or 32 (BFP) and apply everywhere.",
}


def table(key, res):
    title, _, full, ctx, chunks = MODELS[key]
    b = res["base"]
    scored = chunks * (ctx - 1 - ctx // 2)
    out = ["### %s" % title, "",
           "%d chunks of %d tokens of the book, %d tokens scored (few: the machine is shared; the uncertainty of "
           "each mean is in the logs). Base: %.2f bits per weight, %.1f MiB, PPL %.4f." % (
               chunks, ctx, scored, b["bpw"], b["size"] / 1048576.0, b["ppl"]), ""]
    if key in NOTES:
        out += [NOTES[key], ""]
    if not full:
        out += ["The base is the shipped Q4_1 file dequantized (%.2f bits per weight as shipped): every block of 32 "
                "weights holds at most 16 distinct values on an affine grid, so this base is easier to represent than "
                "trained full-precision weights, and formats with blocks of 32 and an offset (Q4_1's own layout) are "
                "favoured; the stories260K table has real F32 weights." % b["src_bpw"], ""]
    out += ["| format | bits/weight | file MiB | PPL | mean KLD | 99.9% KLD | same top-1 | fallback tensors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    rows = sorted(((t, r) for t, r in res.items() if t != "base"), key=lambda x: (x[1]["bpw"], x[0]))
    for t, r in rows:
        seed = t in SEED_TYPES
        out.append("| %s%s%s | %.3f | %.2f | %.4f | %.5f | %.4f | %.2f%% | %d |" % (
            "**" if seed else "", t, "**" if seed else "", r["bpw"], r["size"] / 1048576.0, r["ppl"], r["kld"],
            r["kld999"], r["top"], r["fallbacks"]))
    return out + [""]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--types", default=",".join(LLAMA_TYPES + SEED_TYPES))
    ap.add_argument("--table-only", action="store_true", help="rewrite QUANTIZATION.md from the cache only")
    a = ap.parse_args()
    if not os.path.exists(BOOK[1]):
        sys.exit("%s missing: apt-get install %s" % (BOOK[1], BOOK[0]))
    if sha256(BOOK[1]) != BOOK[2]:
        sys.exit("%s: sha256 differs from %s" % (BOOK[1], BOOK[2]))
    for key in ([] if a.table_only else a.models.split(",")):
        measure(key, a.types.split(","))
    lines = []
    for key in MODELS:
        d = os.path.join(QDIR, key)
        if not os.path.exists(os.path.join(d, "base.json")):
            continue
        res = {}
        for f in sorted(os.listdir(d)):
            if f.endswith(".json"):
                with open(os.path.join(d, f)) as fh:
                    res[f[:-5]] = json.load(fh)
        lines += table(key, res)
    with open(MD) as f:
        md = f.read()
    i, j = md.index(BEGIN) + len(BEGIN), md.index(END)
    with open(MD, "w") as f:
        f.write(md[:i] + "\n" + "\n".join(lines) + md[j:])


if __name__ == "__main__":
    main()
