#!/usr/bin/env python3
"""make_iq_tq_goldens.py: IQ4_NL, IQ4_XS, TQ2_0 and TQ1_0 models made by llama.cpp's own
quantizer, and llama.cpp's logits for them, for tests/test_logits.c (a sibling of
make_q5_goldens.py, same input, tokens and settings).

The input is the synthetic random-weight F32 model of the shared fixtures
(synthetic/llama-f32.gguf: llama, dim 256, 2 layers, 4 heads, 2 kv heads, ffn 768,
vocab 512). llama.cpp's `llama_model_quantize` makes (llama_ftype values in FTYPES):
  IQ4_NL (25), IQ4_XS (30): every matrix in that type (n_gqa is 2 and there are only 2
      layers, so no attn_v / ffn_down rule applies), `output` Q6_K;
  TQ2_0 (37), TQ1_0 (36): every matrix ternary except `token_embd` (Q4_K, the mix's rule)
      and `output` (Q6_K). Random weights are not ternary-trained, so these logits only
      check the arithmetic, not the quality.
llama.cpp then computes the logits of the token ids 1, 300, 301, ..., 330 as one batch,
all 32 positions: flash attention on, F16 KV cache, one thread, no extra buffer types.

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 scripts/make_iq_tq_goldens.py [--fixtures ../shared/fixtures]

Writes tests/models/synthetic/llama-{iq4_nl,iq4_xs,tq2_0,tq1_0}.gguf and
tests/golden/synthetic/llama-<type>.llamacpp_logits_32x512.f32 (32 x 512 float32,
row-major, little-endian). The committed files were made with llama-cpp-python 0.3.36
built from source with CMAKE_ARGS="-DGGML_NATIVE=OFF" (AVX2, FMA, F16C) and gguf 0.19.0.
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

FTYPES = {"iq4_nl": 25, "iq4_xs": 30, "tq2_0": 37, "tq1_0": 36}  # LLAMA_FTYPE_MOSTLY_*
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
