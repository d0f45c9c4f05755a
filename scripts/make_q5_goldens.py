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
import ctypes
import os
import sys

import numpy as np

try:
    import gguf
    import llama_cpp
    import llama_cpp.llama_cpp as llama_c
except ImportError:
    sys.exit("needs: pip install llama-cpp-python==0.3.36 gguf numpy")

FTYPES = {"q5_0": 8, "q5_1": 9}  # LLAMA_FTYPE_MOSTLY_Q5_0 / _Q5_1
TOKENS = [1] + list(range(300, 331))
N_CTX = 256


def quantize(src, dst, ftype):
    p = llama_cpp.llama_model_quantize_default_params()
    p.ftype = ftype
    p.nthread = 1
    rc = llama_cpp.llama_model_quantize(src.encode(), dst.encode(), ctypes.byref(p))
    if rc != 0:
        sys.exit(f"llama_model_quantize({src} -> {dst}, ftype {ftype}) failed: {rc}")


def logits(path):
    default_params = llama_c.llama_model_default_params

    def params():  # plain ggml-cpu kernels: no AMX / repacked weight layouts
        p = default_params()
        p.use_extra_bufts = False
        return p
    llama_c.llama_model_default_params = params
    try:
        llm = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
                              n_threads=1, n_threads_batch=1, logits_all=True,
                              flash_attn=True, verbose=False)
        llm.eval(TOKENS)
        out = np.array(llm.scores[:len(TOKENS)], dtype=np.float32)
        llm.close()
        return out
    finally:
        llama_c.llama_model_default_params = default_params


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
        lg = logits(dst)
        assert lg.shape == (len(TOKENS), 512)
        out = os.path.join(golden, f"llama-{name}.llamacpp_logits_32x512.f32")
        lg.astype("<f4").tofile(out)
        print(f"{os.path.relpath(dst, root)}: {os.path.getsize(dst)} bytes, tensors {types}; "
              f"logit rms {np.sqrt((lg.astype(np.float64) ** 2).mean()):.3f} -> {os.path.relpath(out, root)}")


if __name__ == "__main__":
    main()
