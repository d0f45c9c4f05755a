#!/usr/bin/env python3
"""make_q2q3_goldens.py: Q2_K and Q3_K models made by llama.cpp's own quantizer, and
llama.cpp's logits for them, for tests/test_logits.c (the method of make_q5_goldens.py).

The input is the synthetic random-weight F32 model of the shared fixtures
(synthetic/llama-f32.gguf: llama, dim 256, 2 layers, 4 heads, 2 kv heads, ffn 768,
vocab 512; every row a multiple of 256, so nothing falls back). llama.cpp's
`llama_model_quantize` makes two files:
  llama-q2_k.gguf    LLAMA_FTYPE_MOSTLY_Q2_K (10): Q2_K matrices, Q3_K for attn_v (GQA 2),
                     attn_output and ffn_down, Q6_K output;
  llama-q3_k_s.gguf  LLAMA_FTYPE_MOSTLY_Q3_K_S (11): Q3_K matrices, Q6_K output.
llama.cpp then computes the logits of the token ids 1, 300, 301, ..., 330 as one batch,
all 32 positions: flash attention on, F16 KV cache, one thread, no extra buffer types.

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 scripts/make_q2q3_goldens.py [--fixtures ../shared/fixtures]

Writes tests/models/synthetic/llama-{q2_k,q3_k_s}.gguf and
tests/golden/synthetic/llama-{q2_k,q3_k_s}.llamacpp_logits_32x512.f32 (32 x 512 float32,
row-major, little-endian). Made with llama-cpp-python 0.3.36 built from source with
CMAKE_ARGS="-DGGML_NATIVE=OFF" (AVX2, FMA, F16C: the Q2_K/Q3_K dot products are then the
AVX2 ones) and gguf 0.19.0.
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

FTYPES = {"q2_k": 10, "q3_k_s": 11}  # LLAMA_FTYPE_MOSTLY_Q2_K / _Q3_K_S
TOKENS = [1] + list(range(300, 331))
N_CTX = 256


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.normpath(os.path.join(here, ".."))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=os.path.join(root, "..", "shared", "fixtures"))
    a = ap.parse_args()
    src = os.path.join(a.fixtures, "synthetic", "llama-f32.gguf")
    if not os.path.exists(src):
        sys.exit(f"missing {src}")
    models = os.path.join(root, "tests", "models", "synthetic")
    golden = os.path.join(root, "tests", "golden", "synthetic")
    os.makedirs(models, exist_ok=True)
    os.makedirs(golden, exist_ok=True)
    from importlib import metadata
    print(f"llama-cpp-python {llama_cpp.__version__}, gguf {metadata.version('gguf')}")
    for name, ftype in FTYPES.items():
        dst = os.path.join(models, f"llama-{name}.gguf")
        quantize(src, dst, ftype)
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
