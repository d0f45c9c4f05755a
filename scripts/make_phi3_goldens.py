#!/usr/bin/env python3
"""make_phi3_goldens.py: random-weight phi3 models and llama.cpp's logits for them, for
tests/test_logits.c.

The models are written with the `gguf` package under the keys and tensor names llama.cpp's
converter (conversion/phi.py, Phi3MiniModel) writes: fused `blk.N.attn_qkv.weight` (q, k, v
rows) and `blk.N.ffn_up.weight` (gate rows, then up rows: SwiGLU of one 2*ffn-wide output),
no ffn_gate; untied `output.weight`. Shape: dim 256, 2 layers, 4 heads, 2 kv heads (head_dim
64, all of it rotated, NEOX), ffn 256, vocab 512 (SentencePiece-style), rms eps 1e-5, rope
base 10000.

- phi3-f32.gguf: Phi-3-mini-4k style, no LongRoPE; context 4096 and
  attention.sliding_window 16, which llama.cpp ignores for phi3 (the 48 tokens evaluated are
  three windows long, so an engine that applied it would differ).
- phi3-longrope-f32.gguf: Phi-3.5-mini style LongRoPE: context 8192, rope.scaling.type
  "longrope", rope.scaling.original_context_length 256, rope_factors_long/short.weight (32
  floats each: long 1..~40, short 1..~1.6, random increasing) and rope.scaling.attn_factor
  sqrt(1 + ln(8192/256) / ln(256)) as the converter computes it. llama.cpp takes the short
  factors when its context (rounded up to 256) is at most 256 and the long ones above, so
  the logits are recorded at n_ctx 256 (short) and n_ctx 512 (long).
- phi3-q4_0.gguf (LLAMA_FTYPE_MOSTLY_Q4_0 = 2) and phi3-longrope-q8_0.gguf
  (LLAMA_FTYPE_MOSTLY_Q8_0 = 7): the F32 files through llama.cpp's quantizer.

Logits: tokens 1, 300, ..., 346 as one batch, all 48 positions, flash attention on, F16 KV
cache, one thread, no extra buffer types (scripts/llamacpp_ref.py).

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 scripts/make_phi3_goldens.py

Writes tests/models/synthetic/phi3-*.gguf and
tests/golden/synthetic/<model>[.ctx512].llamacpp_logits_48x512.f32 (48 x 512 float32,
row-major, little-endian). The committed files were made with llama-cpp-python 0.3.36
built with CMAKE_ARGS="-DGGML_NATIVE=OFF" and gguf 0.19.0; the weights are deterministic.
"""
import math
import os
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("needs: pip install llama-cpp-python==0.3.36 gguf numpy")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp_ref import add_byte_vocab, finish, golden_dirs, quantize, write_logits_golden  # noqa: E402

ARCH = "phi3"
D, N_LAYER, N_HEAD, N_KV, FF, N_VOCAB = 256, 2, 4, 2, 256, 512
HD = D // N_HEAD
EPS = 1e-5
TOKENS = [1] + list(range(300, 347))


def write_f32(path, longrope, seed):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, ARCH)
    w.add_name("synthetic")  # a name with "phi3" in it makes llama.cpp look up <|endoftext|>
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    n_ctx_train = 8192 if longrope else 4096
    orig = 256 if longrope else 4096
    w.add_context_length(n_ctx_train)
    w.add_rope_scaling_orig_ctx_len(orig)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_block_count(N_LAYER)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_dimension_count(HD)
    w.add_rope_freq_base(10000.0)
    w.add_sliding_window(0 if longrope else 16)
    if longrope:
        w.add_rope_scaling_type(gguf.RopeScalingType.LONGROPE)
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(n_ctx_train / orig) / math.log(orig)))
    add_byte_vocab(w, N_VOCAB, pre="default")

    def mat(name, rows, cols):
        w.add_tensor(name, (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32))

    def vec(name, n):
        w.add_tensor(name, (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32))

    mat("token_embd.weight", N_VOCAB, D)
    if longrope:
        # increasing factors like Phi-3.5-mini's (long: 1 .. ~40, short: 1 .. ~1.6)
        n = HD // 2
        long_f = np.sort(np.exp(rng.uniform(0.0, math.log(40.0), n)))
        short_f = np.sort(1.0 + rng.uniform(0.0, 0.6, n))
        w.add_tensor("rope_factors_long.weight", long_f.astype(np.float32))
        w.add_tensor("rope_factors_short.weight", short_f.astype(np.float32))
    for l in range(N_LAYER):
        p = f"blk.{l}."
        vec(p + "attn_norm.weight", D)
        mat(p + "attn_qkv.weight", (N_HEAD + 2 * N_KV) * HD, D)
        mat(p + "attn_output.weight", D, N_HEAD * HD)
        vec(p + "ffn_norm.weight", D)
        mat(p + "ffn_up.weight", 2 * FF, D)
        mat(p + "ffn_down.weight", D, FF)
    vec("output_norm.weight", D)
    mat("output.weight", N_VOCAB, D)
    finish(w)


def main():
    root, models, golden = golden_dirs()
    path = {n: os.path.join(models, f"phi3-{n}.gguf") for n in ("f32", "q4_0", "longrope-f32", "longrope-q8_0")}
    write_f32(path["f32"], False, 330)
    write_f32(path["longrope-f32"], True, 331)
    quantize(path["f32"], path["q4_0"], 2)
    quantize(path["longrope-f32"], path["longrope-q8_0"], 7)
    runs = [("f32", 256), ("q4_0", 256), ("longrope-f32", 256), ("longrope-f32", 512),
            ("longrope-q8_0", 256), ("longrope-q8_0", 512)]
    for name, n_ctx in runs:
        p = path[name]
        ctx = "" if n_ctx == 256 else f".ctx{n_ctx}"
        out = os.path.join(golden, f"phi3-{name}{ctx}.llamacpp_logits_{len(TOKENS)}x{N_VOCAB}.f32")
        lg = write_logits_golden(root, p, TOKENS, n_ctx, out, f" n_ctx {n_ctx}")
        assert lg.shape == (len(TOKENS), N_VOCAB)


if __name__ == "__main__":
    main()
