#!/usr/bin/env python3
"""make_q5_goldens.py: Q5_0 and Q5_1 models made by llama.cpp's own quantizer, and
llama.cpp's logits for them, for tests/test_logits.c.

The input is the synthetic random-weight F32 model of the shared fixtures
(synthetic/llama-f32.gguf: llama, dim 256, 2 layers, 4 heads, 2 kv heads, ffn 768,
vocab 512). llama.cpp's `llama_model_quantize` turns it into a Q5_0 and a Q5_1 file
(LLAMA_FTYPE_MOSTLY_Q5_0 = 8, MOSTLY_Q5_1 = 9: every matrix in that type except
`output`, which the mix makes Q6_K), and llama.cpp then computes the logits of the token
ids 1, 300, 301, ..., 330 as one batch, all 32 positions, exactly as for the fixtures'
golden/synthetic/*.llamacpp_logits_32x512.f32: flash attention on, F16 KV cache, one
thread, no extra buffer types (no AMX or repacked weights).

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 scripts/make_q5_goldens.py [--fixtures ../shared/fixtures]

Writes tests/models/synthetic/llama-q5_0.gguf, llama-q5_1.gguf and
tests/golden/synthetic/llama-q5_{0,1}.llamacpp_logits_32x512.f32 (32 x 512 float32,
row-major, little-endian). The committed files were made with llama-cpp-python 0.3.36
built from source with CMAKE_ARGS="-DGGML_NATIVE=OFF" (its default x86 set: AVX2, FMA,
F16C; the x86 dot products of Q5_0/Q5_1 are then the AVX2 ones) and gguf 0.19.0.
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

FTYPES = {"q5_0": 8, "q5_1": 9}  # LLAMA_FTYPE_MOSTLY_Q5_0 / _Q5_1
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
