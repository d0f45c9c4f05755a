#!/usr/bin/env python3
"""Writes random-weight GGUF models with the exact shapes of real small models, for speed
benchmarks (ember bench, scripts/bench-vs-llamacpp.sh). Random weights should decode as
fast as trained ones (neither engine skips work based on values); their text is noise.

Run from anywhere (needs `pip install gguf numpy`; about 1 minute and 2 GB of disk):
    python3 scripts/make_bench_models.py                 # all models, skip existing files
    python3 scripts/make_bench_models.py --only smollm2-135m --types q8_0 --force

Output (models/bench/, gitignored; regenerate on demand, never commit):
    smollm2-135m-{q4_0,q8_0}.gguf  SmolLM2-135M shapes: llama, dim 576, 30 layers, 9 heads,
                                   3 kv heads (head_dim 64), ffn 1536, vocab 49152, tied
                                   embeddings, rope theta 100000, context 8192
    llama3.2-1b-{q4_0,q8_0}.gguf   Llama-3.2-1B shapes: llama, dim 2048, 16 layers, 32 heads,
                                   8 kv heads (head_dim 64), ffn 8192, vocab 128256, tied
                                   embeddings, rope theta 500000, context 131072 (no llama3
                                   rope-scaling tensor: it does not change the cost)

    llama3.2-1b-f16.gguf           made first when a derived type (q3_K, iq4_xs, tq2_0, ...) is
                                   asked for: `ember quantize --pure` turns it into that type

Every matrix, token_embd included, is stored in the file's type (llama-quantize would keep
token_embd in Q8_0/Q6_K for some ftypes; one type keeps the comparison simple). Norms are
F32. Weights are random normals quantized with gguf.quants.quantize (Q4_0/Q8_0 as
llama.cpp's reference quantizers do), fixed seeds, so reruns give the same bytes.

Tokenizer: a synthetic SPM ("llama") vocabulary of the model's real size: <unk>, <s>, </s>,
the 256 byte tokens <0x00>..<0xFF> (token type 6), then filler tokens "▁w<i>" (type 1,
decreasing scores), so that llama.cpp and ember both load the file.
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, LlamaFileType as FT
from gguf.quants import quantize

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
OUT = os.path.join(ROOT, "models", "bench")

SHAPES = {
    "smollm2-135m": dict(name="SmolLM2-135M (random weights)", n_embd=576, n_layer=30,
                         n_head=9, n_kv=3, n_ff=1536, n_vocab=49152, rope_base=100000.0,
                         n_ctx=8192),
    "llama3.2-1b": dict(name="Llama-3.2-1B (random weights)", n_embd=2048, n_layer=16,
                        n_head=32, n_kv=8, n_ff=8192, n_vocab=128256, rope_base=500000.0,
                        n_ctx=131072),
}
TYPES = {"q4_0": (T.Q4_0, FT.MOSTLY_Q4_0), "q8_0": (T.Q8_0, FT.MOSTLY_Q8_0),
         "q5_0": (T.Q5_0, FT.MOSTLY_Q5_0), "f16": (T.F16, FT.MOSTLY_F16)}
# Types gguf-py cannot quantize: made from the shape's f16 file by `ember quantize --pure`
# (byte-identical to llama-quantize, tests/test_quantize.c), so every matrix, token_embd
# included, is in the ftype's base type. File-name type -> ember quantize's type name.
DERIVED = {"q3_K": "Q3_K_M", "q2_K": "Q2_K", "iq4_xs": "IQ4_XS", "iq4_nl": "IQ4_NL",
           "tq2_0": "TQ2_0", "tq1_0": "TQ1_0", "q4_K": "Q4_K_M", "q5_K": "Q5_K_M", "q6_K": "Q6_K"}


def vocab(n):
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    n_fill = n - len(tokens)
    tokens += [f"\u2581w{i}" for i in range(n_fill)]
    scores = [0.0] * 259 + [-float(i) for i in range(n_fill)]
    types = [2, 3, 3] + [6] * 256 + [1] * n_fill
    return tokens, scores, types


def add_matrix(w, name, rng, rows, cols, qtype, std):
    """A (rows=out, cols=in) matrix in qtype; GGUF ne = {cols, rows}."""
    x = rng.standard_normal((rows, cols), dtype=np.float32)
    x *= np.float32(std)
    if qtype == T.F16:
        w.add_tensor(name, x.astype(np.float16))
    else:
        w.add_tensor(name, quantize(x, qtype), raw_dtype=qtype)


def add_norm(w, name, rng, n):
    w.add_tensor(name, (1.0 + 0.1 * rng.standard_normal(n)).astype(np.float32))


def write_model(path, s, tname, seed):
    qtype, ftype = TYPES[tname]
    rng = np.random.default_rng(seed)
    d, nh, nkv, ff, nv = s["n_embd"], s["n_head"], s["n_kv"], s["n_ff"], s["n_vocab"]
    hd = d // nh
    w = gguf.GGUFWriter(path + ".part", "llama")
    w.add_name(s["name"])
    w.add_file_type(int(ftype))
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(nv)
    w.add_context_length(s["n_ctx"])
    w.add_embedding_length(d)
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(ff)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(s["rope_base"])
    w.add_rope_dimension_count(hd)
    tokens, scores, types = vocab(nv)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    # Tied: token_embd is also the output matrix (no output.weight), as in both real models.
    add_matrix(w, "token_embd.weight", rng, nv, d, qtype, 1.0 / np.sqrt(d))
    out_std = 1.0 / np.sqrt(2.0 * s["n_layer"])  # keeps the residual stream bounded
    for l in range(s["n_layer"]):
        p = f"blk.{l}."
        add_norm(w, p + "attn_norm.weight", rng, d)
        add_matrix(w, p + "attn_q.weight", rng, nh * hd, d, qtype, 1.5 / np.sqrt(d))
        add_matrix(w, p + "attn_k.weight", rng, nkv * hd, d, qtype, 1.5 / np.sqrt(d))
        add_matrix(w, p + "attn_v.weight", rng, nkv * hd, d, qtype, 1.0 / np.sqrt(d))
        add_matrix(w, p + "attn_output.weight", rng, d, nh * hd, qtype, out_std / np.sqrt(nh * hd))
        add_norm(w, p + "ffn_norm.weight", rng, d)
        add_matrix(w, p + "ffn_gate.weight", rng, ff, d, qtype, 1.0 / np.sqrt(d))
        add_matrix(w, p + "ffn_up.weight", rng, ff, d, qtype, 1.0 / np.sqrt(d))
        add_matrix(w, p + "ffn_down.weight", rng, d, ff, qtype, out_std / np.sqrt(ff))
    add_norm(w, "output_norm.weight", rng, d)

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(path + ".part", path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=sorted(SHAPES), action="append",
                    help="model shape to write (repeatable; default: all)")
    ap.add_argument("--types", default="q4_0,q8_0",
                    help="comma list of " + ", ".join(list(TYPES) + list(DERIVED)))
    ap.add_argument("--ember", default=os.path.join(ROOT, "build", "ember"),
                    help="ember binary that quantizes the derived types (default build/ember)")
    ap.add_argument("--out", default=OUT, help="output folder (default models/bench)")
    ap.add_argument("--force", action="store_true", help="rewrite existing files")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    for si, shape in enumerate(sorted(SHAPES)):
        if a.only and shape not in a.only:
            continue
        for tname in a.types.split(","):
            if tname not in TYPES and tname not in DERIVED:
                sys.exit(f"unknown type {tname!r} ({', '.join(list(TYPES) + list(DERIVED))})")
            path = os.path.join(a.out, f"{shape}-{tname}.gguf")
            if os.path.exists(path) and not a.force:
                print(f"exists: {path}")
                continue
            t0 = time.time()
            if tname in DERIVED:
                src = os.path.join(a.out, f"{shape}-f16.gguf")
                if not os.path.exists(src):
                    write_model(src, SHAPES[shape], "f16", seed=1000 + 10 * si + list(TYPES).index("f16"))
                r = subprocess.run([a.ember, "quantize", "--pure", src, path, DERIVED[tname]],
                                   capture_output=True, text=True)
                if r.returncode != 0:
                    sys.exit(f"ember quantize failed for {path}:\n{r.stderr[-2000:]}")
            else:
                # seeds by the type's position in TYPES, so adding types keeps old files' bytes
                write_model(path, SHAPES[shape], tname, seed=1000 + 10 * si + list(TYPES).index(tname))
            print(f"wrote {path} ({os.path.getsize(path) / 2**20:.0f} MiB, {time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
