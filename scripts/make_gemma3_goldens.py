#!/usr/bin/env python3
"""make_gemma3_goldens.py: a random-weight gemma3 model and llama.cpp's logits for it, for
tests/test_logits.c.

The model is written with the `gguf` package under llama.cpp's key and tensor names
(gemma3: dim 128, 8 layers, 4 heads, 2 kv heads, head_dim 64 from attention.key_length,
ffn 256, vocab 512, tied embeddings, q/k norms and post-attention/post-FFN norms, rms eps
1e-6, rope.freq_base 1e6 and no rope.freq_base_swa, so the local layers use llama.cpp's
default 10000; attention.sliding_window 16 and no pattern key, so llama.cpp's default
period 6 makes layer 5 global and the others local; final_logit_softcapping 8). The 48
tokens evaluated (ids 1, 300, ..., 346) are three times the window, so the window decides
most attention rows. Norm weights are random around 1 (GGUF gemma norms include the +1).

llama.cpp's quantizer turns the F32 file into a Q8_0 one (LLAMA_FTYPE_MOSTLY_Q8_0 = 7) and a
Q5_0 one (LLAMA_FTYPE_MOSTLY_Q5_0 = 8: Q5_0 matrices, the tied embedding Q8_0), and llama.cpp
computes the logits of all 48 positions of one batch for each: flash attention on, F16 KV
cache, n_ctx 256, one thread, no extra buffer types (as make_synthetic_quant_goldens.py).

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 scripts/make_gemma3_goldens.py

Writes tests/models/synthetic/gemma3-{f32,q8_0,q5_0}.gguf and
tests/golden/synthetic/gemma3-{f32,q8_0,q5_0}.llamacpp_logits_48x512.f32 (48 x 512 float32,
row-major, little-endian). The committed files were made with llama-cpp-python 0.3.36
built with CMAKE_ARGS="-DGGML_NATIVE=OFF" (AVX2, FMA, F16C) and gguf 0.19.0; the weights are
deterministic (fixed seed).
"""
import os
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("needs: pip install llama-cpp-python==0.3.36 gguf numpy")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp_ref import add_byte_vocab, finish, golden_dirs, quantize, write_logits_golden  # noqa: E402

ARCH = "gemma3"
D, N_LAYER, N_HEAD, N_KV, HD, FF, N_VOCAB = 128, 8, 4, 2, 64, 256, 512
N_CTX, WINDOW, SOFTCAP, EPS = 256, 16, 8.0, 1e-6
TOKENS = [1] + list(range(300, 347))


def write_f32(path, seed=310):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, ARCH)
    w.add_name("gemma3-synthetic")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_context_length(N_CTX)
    w.add_embedding_length(D)
    w.add_block_count(N_LAYER)
    w.add_feed_forward_length(FF)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_key_length(HD)
    w.add_value_length(HD)
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_freq_base(1e6)
    w.add_sliding_window(WINDOW)
    w.add_final_logit_softcapping(SOFTCAP)
    add_byte_vocab(w, N_VOCAB)

    def mat(name, rows, cols, std):
        w.add_tensor(name, (rng.standard_normal((rows, cols)) * std).astype(np.float32))

    def vec(name, n, std):
        w.add_tensor(name, (1.0 + rng.standard_normal(n) * std).astype(np.float32))

    # the embedding is scaled by sqrt(D) on input and is the (tied) output matrix
    mat("token_embd.weight", N_VOCAB, D, 1.0 / np.sqrt(D))
    for l in range(N_LAYER):
        p = f"blk.{l}."
        vec(p + "attn_norm.weight", D, 0.1)
        mat(p + "attn_q.weight", N_HEAD * HD, D, 1.0 / np.sqrt(D))
        mat(p + "attn_k.weight", N_KV * HD, D, 1.0 / np.sqrt(D))
        mat(p + "attn_v.weight", N_KV * HD, D, 1.0 / np.sqrt(D))
        # q/k norms a little above 1 so that (normed, 1/sqrt(64)-scaled) scores are not flat
        vec(p + "attn_q_norm.weight", HD, 0.3)
        vec(p + "attn_k_norm.weight", HD, 0.3)
        mat(p + "attn_output.weight", D, N_HEAD * HD, 1.0 / np.sqrt(N_HEAD * HD))
        vec(p + "post_attention_norm.weight", D, 0.1)
        vec(p + "ffn_norm.weight", D, 0.1)
        mat(p + "ffn_gate.weight", FF, D, 1.0 / np.sqrt(D))
        mat(p + "ffn_up.weight", FF, D, 1.0 / np.sqrt(D))
        mat(p + "ffn_down.weight", D, FF, 1.0 / np.sqrt(FF))
        vec(p + "post_ffw_norm.weight", D, 0.1)
    vec("output_norm.weight", D, 0.1)
    finish(w)


def main():
    root, models, golden = golden_dirs()
    f32 = os.path.join(models, "gemma3-f32.gguf")
    write_f32(f32)
    q8 = os.path.join(models, "gemma3-q8_0.gguf")
    quantize(f32, q8, 7)
    q5 = os.path.join(models, "gemma3-q5_0.gguf")
    quantize(f32, q5, 8)
    for name, path in (("f32", f32), ("q8_0", q8), ("q5_0", q5)):
        out = os.path.join(golden, f"gemma3-{name}.llamacpp_logits_{len(TOKENS)}x{N_VOCAB}.f32")
        lg = write_logits_golden(root, path, TOKENS, N_CTX, out)
        assert lg.shape == (len(TOKENS), N_VOCAB)


if __name__ == "__main__":
    main()
