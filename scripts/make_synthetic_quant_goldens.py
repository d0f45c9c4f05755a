#!/usr/bin/env python3
"""make_synthetic_quant_goldens.py: the synthetic random-weight model quantized by llama.cpp's
own quantizer into each weight type below, and llama.cpp's logits for each file, for
tests/test_logits.c, test_quant.c and test_model.c.

The input is the synthetic F32 model of the shared fixtures (synthetic/llama-f32.gguf:
llama, dim 256, 2 layers, 4 heads, 2 kv heads, ffn 768, vocab 512; every row a multiple of
256, so no K-quant falls back). `llama_model_quantize` makes one file per llama_ftype:

  q5_0 (8), q5_1 (9)     every matrix in that type, `output` Q6_K (the mix's rule);
  q2_k (10)              Q2_K matrices, Q3_K for attn_v (GQA 2), attn_output and ffn_down,
                         Q6_K output;
  q3_k_s (11)            Q3_K matrices, Q6_K output;
  iq4_nl (25), iq4_xs (30)
                         every matrix in that type (n_gqa 2 and 2 layers: no attn_v /
                         ffn_down rule applies), `output` Q6_K;
  tq2_0 (37), tq1_0 (36) every matrix ternary except `token_embd` (Q4_K, the mix's rule) and
                         `output` (Q6_K). Random weights are not ternary-trained, so these
                         logits check the arithmetic, not the quality.

llama.cpp then computes the logits of the token ids 1, 300, 301, ..., 330 as one batch, all
32 positions, exactly as for the fixtures' golden/synthetic/*.llamacpp_logits_32x512.f32:
flash attention on, F16 KV cache, one thread, no extra buffer types (no AMX or repacked
weights; scripts/llamacpp_ref.py).

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 scripts/make_synthetic_quant_goldens.py [--types q5_0,iq4_xs] [--fixtures ../shared/fixtures]

Writes tests/models/synthetic/llama-<type>.gguf and
tests/golden/synthetic/llama-<type>.llamacpp_logits_32x512.f32 (32 x 512 float32,
row-major, little-endian). The committed files were made with llama-cpp-python 0.3.36
built from source with CMAKE_ARGS="-DGGML_NATIVE=OFF" (its default x86 set: AVX2, FMA,
F16C, so the x86 dot products are the AVX2 ones) and gguf 0.19.0.
"""
import argparse
import os
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("needs: pip install llama-cpp-python==0.3.36 gguf numpy")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_cpp  # noqa: E402
from llamacpp_ref import quantize, logits as llamacpp_logits  # noqa: E402

FTYPES = {"q5_0": 8, "q5_1": 9, "q2_k": 10, "q3_k_s": 11,  # LLAMA_FTYPE_MOSTLY_*
          "iq4_nl": 25, "iq4_xs": 30, "tq2_0": 37, "tq1_0": 36}
TOKENS = [1] + list(range(300, 331))
N_CTX = 256


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, ".."))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=os.path.join(root, "..", "shared", "fixtures"))
    ap.add_argument("--types", default=",".join(FTYPES), help="comma-separated subset of " + ",".join(FTYPES))
    a = ap.parse_args()
    names = a.types.split(",")
    for n in names:
        if n not in FTYPES:
            sys.exit(f"unknown type {n!r}; one of {','.join(FTYPES)}")
    src = os.path.join(a.fixtures, "synthetic", "llama-f32.gguf")
    if not os.path.exists(src):
        sys.exit(f"missing {src}")
    models = os.path.join(root, "tests", "models", "synthetic")
    golden = os.path.join(root, "tests", "golden", "synthetic")
    os.makedirs(models, exist_ok=True)
    os.makedirs(golden, exist_ok=True)
    from importlib import metadata
    print(f"llama-cpp-python {llama_cpp.__version__}, gguf {metadata.version('gguf')}")
    for name in names:
        dst = os.path.join(models, f"llama-{name}.gguf")
        quantize(src, dst, FTYPES[name])
        types = {}
        for t in gguf.GGUFReader(dst).tensors:
            types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
        lg = llamacpp_logits(dst, TOKENS, N_CTX)
        assert lg.shape == (len(TOKENS), 512)
        out = os.path.join(golden, f"llama-{name}.llamacpp_logits_32x512.f32")
        lg.astype("<f4").tofile(out)
        print(f"{os.path.relpath(dst, root)}: {os.path.getsize(dst)} bytes, tensors {types}; "
              f"logit rms {np.sqrt((lg.astype(np.float64) ** 2).mean()):.3f} -> {os.path.relpath(out, root)}")


if __name__ == "__main__":
    main()
