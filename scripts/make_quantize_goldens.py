#!/usr/bin/env python3
"""Goldens for tests/test_quantize.c: what llama.cpp's llama-quantize writes for two small
random-weight F32 models, for every file type ember produces, with and without an
importance matrix.

Rerun (from the repository root; needs `pip install gguf numpy` and llama-quantize built
from the llama.cpp vendored in llama-cpp-python 0.3.36, path in $LLAMA_QUANTIZE):
    LLAMA_QUANTIZE=/path/to/llama-quantize python3 scripts/make_quantize_goldens.py
Writes tests/golden/quantize/llamacpp.txt: one line per case,
    <case> <general.file_type> <sha256> <type of each tensor, in file order, comma-separated>
where <case> is <model>-<TYPE>[-imatrix][-pure][-leave-output] and the sha256 runs over
each tensor in file order: its name, a NUL byte, its data (without padding).

The inputs are not committed: the test writes the same files itself. Every weight is an
exact float32 computed from integers, so C and numpy agree bit for bit:
    h(c) = splitmix64 finaliser of (SEED + (c + 1) * 0x9E3779B97F4A7C15) mod 2^64, c the
           element's index counted across all tensors in file order;
    v    = ((h >> 40) - 2^23) / 2^23                       (in [-1, 1))
    v   *= 8 when (h & 0xff) == 0 (outliers); v = 0 when ((h >> 8) & 0x3ff) == 0
    x    = v * 2^-(2 + row % 4)                             (row = index / ne0)
The importance matrix (llama-imatrix's GGUF layout) holds, for each matrix, in_sum2[k] =
((h >> 40) + 1) / 2^20 over a counter that continues after the weights, and counts = 16*(i+1)
for the i-th matrix (so the sums are divided by a count, as real files are).

With the fixture ../shared/fixtures/models/stories260K.gguf (a trained F32 llama; $EMBER_FIXTURES
overrides the folder), also the cases S-<TYPE>[-imatrix] on it, with the importance matrix
tests/data/quantize/stories260K.imatrix.gguf that llama-imatrix (same llama.cpp) computed:
    llama-imatrix -m stories260K.gguf -f /usr/share/common-licenses/GPL-3 \
        -o stories260K.imatrix.gguf --chunks 4 -c 128 -t 1 --no-ppl
(base-files' GPL-3 text; rerun with LLAMA_IMATRIX=/path/to/llama-imatrix and --imatrix to
remake it). Its rows are 64 and 172 wide, so every k-quant falls back to a 32-block type.

With --smollm2 (needs models/SmolLM2-135M-Instruct.Q4_1.gguf from scripts/fetch-model.sh and
$LLAMA_IMATRIX), also the default model: llama-imatrix computes its importance matrix on the
same GPL-3 text (--chunks 6 -c 512), the entries of blocks 0-3 are kept (so the committed file
stays small, and the other tensors are quantized without one, as llama-quantize does for
tensors the matrix lacks) -> tests/data/quantize/smollm2.imatrix.gguf; then
    llama-quantize --allow-requantize --imatrix tests/data/quantize/smollm2.imatrix.gguf \
        models/SmolLM2-135M-Instruct.Q4_1.gguf OUT Q4_K_M 2
and the sha256 of the whole OUT file -> tests/golden/quantize/smollm2.txt.

Models:
  A (llama, tied):  n_embd 256, 8 layers, 4 heads, 1 kv head, ffn 256, vocab 128; every row
                    a multiple of 256; no output.weight, so token_embd follows the output rule.
                    GQA 4 (Q2_K's attn_v rule picks Q4_K).
  B (qwen2):        n_embd 288, 4 layers, 3 heads, 1 kv head, ffn 200, vocab 96, output.weight;
                    rows of 288 (multiple of 32, not 256: the k-quant fallbacks) and 200 (not a
                    multiple of 32: F16), q/k/v biases. GQA 3 (Q2_K's attn_v is Q3_K).
Q2_K_S has only -imatrix cases: llama-quantize refuses it without one (so does ember).
"""
import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
import gguf

SEED = 0x5EED0F11
M64 = (1 << 64) - 1
TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M",
         "Q6_K", "F16", "BF16", "F32", "Q2_K", "Q2_K_S", "Q3_K_S", "Q3_K_M", "Q3_K_L",
         "IQ4_NL", "IQ4_XS", "TQ1_0", "TQ2_0"]
IMATRIX_ONLY = ("Q2_K_S",)  # llama-quantize refuses these without an importance matrix


def splitmix(c0, n):
    c = np.arange(c0, c0 + n, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = np.uint64(SEED) + (c + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def weights(c0, ne0, nrows):
    h = splitmix(c0, ne0 * nrows)
    v = ((h >> np.uint64(40)).astype(np.int64) - (1 << 23)).astype(np.float64) / (1 << 23)
    v[(h & np.uint64(0xff)) == 0] *= 8
    v[((h >> np.uint64(8)) & np.uint64(0x3ff)) == 0] = 0
    rows = np.arange(ne0 * nrows) // ne0
    v = v * np.exp2(-(2 + rows % 4))
    return v.astype(np.float32).reshape(nrows, ne0)


def model_spec(name):
    """(arch, hparams, [(tensor name, ne0, ne1 or None for 1-D)]) in file order."""
    if name == "A":
        arch, d, L, nh, nkv, ff, nv, tied, bias = "llama", 256, 8, 4, 1, 256, 128, True, False
    else:
        arch, d, L, nh, nkv, ff, nv, tied, bias = "qwen2", 288, 4, 3, 1, 200, 96, False, True
    hd = d // nh
    t = [("token_embd.weight", d, nv)]
    for i in range(L):
        p = "blk.%d." % i
        t += [(p + "attn_norm.weight", d, None), (p + "attn_q.weight", d, nh * hd),
              (p + "attn_k.weight", d, nkv * hd), (p + "attn_v.weight", d, nkv * hd)]
        if bias:
            t += [(p + "attn_q.bias", nh * hd, None), (p + "attn_k.bias", nkv * hd, None),
                  (p + "attn_v.bias", nkv * hd, None)]
        t += [(p + "attn_output.weight", nh * hd, d), (p + "ffn_norm.weight", d, None),
              (p + "ffn_gate.weight", d, ff), (p + "ffn_up.weight", d, ff),
              (p + "ffn_down.weight", ff, d)]
    t.append(("output_norm.weight", d, None))
    if not tied:
        t.append(("output.weight", d, nv))
    return arch, dict(d=d, L=L, nh=nh, nkv=nkv, ff=ff, nv=nv, hd=hd), t


def write_model(name, path):
    arch, hp, tensors = model_spec(name)
    w = gguf.GGUFWriter(path, arch)
    w.add_name("quantize-test-" + name)
    w.add_file_type(0)
    w.add_context_length(256)
    w.add_embedding_length(hp["d"])
    w.add_block_count(hp["L"])
    w.add_feed_forward_length(hp["ff"])
    w.add_head_count(hp["nh"])
    w.add_head_count_kv(hp["nkv"])
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(hp["hd"])
    w.add_vocab_size(hp["nv"])
    c = 0
    for tn, ne0, ne1 in tensors:
        x = weights(c, ne0, ne1 or 1)
        c += x.size
        w.add_tensor(tn, x if ne1 else x.reshape(ne0))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return c, tensors


def write_imatrix(path, c0, tensors):
    w = gguf.GGUFWriter(path, "imatrix")  # arch key is ignored by readers
    w.add_array("imatrix.datasets", ["random"])
    w.add_uint32("imatrix.chunk_count", 1)
    w.add_uint32("imatrix.chunk_size", 512)
    c, i = c0, 0
    for tn, ne0, ne1 in tensors:
        if ne1 is None or tn == "output_norm.weight":
            continue
        h = splitmix(c, ne0)
        c += ne0
        s = (((h >> np.uint64(40)).astype(np.float64) + 1) / (1 << 20)).astype(np.float32)
        w.add_tensor(tn + ".in_sum2", s)
        w.add_tensor(tn + ".counts", np.array([16.0 * (i + 1)], dtype=np.float32))
        i += 1
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def cases(models):
    for m in models:
        for t in TYPES:
            if t not in IMATRIX_ONLY:
                yield m, t, False, False, False
            if t not in ("F16", "BF16", "F32", "Q8_0"):
                yield m, t, True, False, False
        if m == "S":
            continue
        for t in ("Q4_K_M", "Q5_0"):
            yield m, t, False, True, False
            yield m, t, False, False, True


STORIES_IMATRIX = "tests/data/quantize/stories260K.imatrix.gguf"


SMOL = "models/SmolLM2-135M-Instruct.Q4_1.gguf"
SMOL_IMATRIX = "tests/data/quantize/smollm2.imatrix.gguf"


def make_smollm2(exe):
    with tempfile.TemporaryDirectory() as tmp:
        full = os.path.join(tmp, "full.imatrix.gguf")
        subprocess.run([os.environ.get("LLAMA_IMATRIX", "llama-imatrix"), "-m", SMOL, "-f",
                        "/usr/share/common-licenses/GPL-3", "-o", full, "--chunks", "6", "-c", "512",
                        "-t", "2", "--no-ppl"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        r = gguf.GGUFReader(full)
        w = gguf.GGUFWriter(SMOL_IMATRIX, "imatrix")
        w.add_type("imatrix")
        f = r.fields["imatrix.datasets"]
        w.add_array("imatrix.datasets", [bytes(f.parts[i]).decode() for i in f.data])
        w.add_uint32("imatrix.chunk_count", int(r.fields["imatrix.chunk_count"].parts[-1][0]))
        w.add_uint32("imatrix.chunk_size", int(r.fields["imatrix.chunk_size"].parts[-1][0]))
        for t in r.tensors:
            if t.name.startswith(("blk.0.", "blk.1.", "blk.2.", "blk.3.")):
                w.add_tensor(t.name, np.array(t.data, dtype=np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        out = os.path.join(tmp, "out.gguf")
        subprocess.run([exe, "--allow-requantize", "--imatrix", SMOL_IMATRIX, SMOL, out, "Q4_K_M", "2"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        with open(out, "rb") as fo:
            digest = hashlib.sha256(fo.read()).hexdigest()
    with open("tests/golden/quantize/smollm2.txt", "w") as f:
        f.write("# whole-file sha256 of llama-quantize's output (scripts/make_quantize_goldens.py --smollm2)\n")
        f.write("Q4_K_M-imatrix %s\n" % digest)


def main():
    exe = os.environ.get("LLAMA_QUANTIZE", "llama-quantize")
    out_dir = "tests/golden/quantize"
    os.makedirs(out_dir, exist_ok=True)
    fixtures = os.environ.get("EMBER_FIXTURES") or "../shared/fixtures"
    stories = os.path.join(fixtures, "models/stories260K.gguf")
    if "--imatrix" in sys.argv:
        subprocess.run([os.environ.get("LLAMA_IMATRIX", "llama-imatrix"), "-m", stories, "-f",
                        "/usr/share/common-licenses/GPL-3", "-o", STORIES_IMATRIX, "--chunks", "4",
                        "-c", "128", "-t", "1", "--no-ppl"], check=True)
    if "--smollm2" in sys.argv:
        make_smollm2(exe)
    lines = []
    with tempfile.TemporaryDirectory() as tmp:
        info = {}
        for m in ("A", "B"):
            p = os.path.join(tmp, m + ".gguf")
            c, tensors = write_model(m, p)
            ip = os.path.join(tmp, m + ".imatrix.gguf")
            write_imatrix(ip, c, tensors)
            info[m] = (p, ip)
        if os.path.exists(stories):
            info["S"] = (stories, STORIES_IMATRIX)
        for m, t, im, pure, leave in cases(sorted(info)):
            case = "%s-%s%s%s%s" % (m, t, "-imatrix" if im else "", "-pure" if pure else "",
                                   "-leave-output" if leave else "")
            out = os.path.join(tmp, case + ".gguf")
            cmd = [exe]
            if im:
                cmd += ["--imatrix", info[m][1]]
            if pure:
                cmd += ["--pure"]
            if leave:
                cmd += ["--leave-output-tensor"]
            cmd += [info[m][0], out, t, "1"]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            r = gguf.GGUFReader(out)
            ft = int(r.fields["general.file_type"].parts[-1][0])
            h = hashlib.sha256()
            types = []
            for ti in r.tensors:
                h.update(ti.name.encode() + b"\0" + bytes(np.asarray(ti.data).tobytes()))
                types.append(ti.tensor_type.name.lower().replace("_k", "_K"))
            lines.append("%s %d %s %s\n" % (case, ft, h.hexdigest(), ",".join(types)))
            print(case, file=sys.stderr)
    with open(os.path.join(out_dir, "llamacpp.txt"), "w") as f:
        f.write("# made by scripts/make_quantize_goldens.py with llama-quantize "
                "(llama.cpp vendored in llama-cpp-python 0.3.36)\n")
        f.writelines(lines)


if __name__ == "__main__":
    main()
