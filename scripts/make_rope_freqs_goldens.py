#!/usr/bin/env python3
"""make_rope_freqs_goldens.py: a random-weight llama model with Llama 3.1's rope scaling (the
`rope_freqs.weight` tensor) and llama.cpp's logits for it, for tests/test_logits.c.

The model is written with the `gguf` package under llama.cpp's names: llama, dim 128, 2
layers, 2 heads, 1 kv head, head_dim 64, ffn 256, vocab 512 (SentencePiece-style), rope
base 500000, context 131072, untied output. `rope_freqs.weight` holds 32 factors computed
as llama.cpp's converter computes them for rope_type "llama3" (conversion/llama.py):
factor 8, low_freq_factor 1, high_freq_factor 4, original_max_position_embeddings 8192, so
pairs whose wavelength is under 2048 keep factor 1, those over 8192 get 8 and those between
a smooth mix. llama.cpp divides each pair's angle by its factor. The matrices are F16
(llama.cpp's quantizer, LLAMA_FTYPE_MOSTLY_F16 = 1, from an F32 file that is not kept):
without Q8 activation rounding the two engines agree to well under 1% of the logit rms
even 2300 positions in, where leaving the factors out moves them by about 3x the rms.

The factors move the angles of the slow pairs, which matters once positions reach the
thousands, so the run is long: 2304 tokens (1, then 3 + (i * 7919) % 509 for i >= 1) at
n_ctx 2304, and the golden keeps the logits of the last 64 positions (2240..2303), beyond
the 2048 of the short wavelengths (the model is small so that this stays quick under
qemu). llama.cpp evaluates them in ubatches of 32: for 64 or more query rows its CPU flash
attention takes a tiled path that rounds differently from the row-by-row path ember
follows (on a larger variant of this model with Q8_0 weights and 3x larger q/k weights,
0.035 of the logit rms apart already at position 1), so one 2304-token ubatch would
measure that.

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 scripts/make_rope_freqs_goldens.py

Writes tests/models/synthetic/llama31-f16.gguf and
tests/golden/synthetic/llama31-f16.llamacpp_logits_last64x512.f32 (64 x 512 float32,
row-major, little-endian). Made with llama-cpp-python 0.3.36 (CMAKE_ARGS="-DGGML_NATIVE=OFF")
and gguf 0.19.0; the weights are deterministic.
"""
import math
import os
import sys
import tempfile

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("needs: pip install llama-cpp-python==0.3.36 gguf numpy")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp_ref import add_byte_vocab, finish, golden_dirs, quantize, logits as llamacpp_logits  # noqa: E402

D, N_LAYER, N_HEAD, N_KV, FF, N_VOCAB = 128, 2, 2, 1, 256, 512
HD = D // N_HEAD
BASE = 500000.0
N_TOK, N_KEEP = 2304, 64
TOKENS = [1] + [3 + (i * 7919) % 509 for i in range(1, N_TOK)]


def llama3_factors(base, dim, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, old_context_len=8192):
    """The converter's rope_freqs for rope_type "llama3" (float32 frequencies, as it uses)."""
    freqs = 1.0 / (base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    low_freq_wavelen = old_context_len / low_freq_factor
    high_freq_wavelen = old_context_len / high_freq_factor
    out = []
    for freq in freqs:
        wavelen = 2 * math.pi / float(freq)
        if wavelen < high_freq_wavelen:
            out.append(1.0)
        elif wavelen > low_freq_wavelen:
            out.append(factor)
        else:
            smooth = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
            out.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(out, dtype=np.float32)


def write_f32(path, seed=340):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("llama31-synthetic")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_context_length(131072)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_block_count(N_LAYER)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(HD)
    w.add_rope_freq_base(BASE)
    add_byte_vocab(w, N_VOCAB)

    def mat(name, rows, cols):
        w.add_tensor(name, (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32))

    def vec(name, n):
        w.add_tensor(name, (1.0 + rng.standard_normal(n) * 0.1).astype(np.float32))

    mat("token_embd.weight", N_VOCAB, D)
    w.add_tensor("rope_freqs.weight", llama3_factors(BASE, HD))
    for l in range(N_LAYER):
        p = f"blk.{l}."
        vec(p + "attn_norm.weight", D)
        mat(p + "attn_q.weight", N_HEAD * HD, D)
        mat(p + "attn_k.weight", N_KV * HD, D)
        mat(p + "attn_v.weight", N_KV * HD, D)
        mat(p + "attn_output.weight", D, N_HEAD * HD)
        vec(p + "ffn_norm.weight", D)
        mat(p + "ffn_gate.weight", FF, D)
        mat(p + "ffn_up.weight", FF, D)
        mat(p + "ffn_down.weight", D, FF)
    vec("output_norm.weight", D)
    mat("output.weight", N_VOCAB, D)
    finish(w)


def main():
    root, models, golden = golden_dirs()
    print("rope_freqs:", " ".join(f"{f:.3g}" for f in llama3_factors(BASE, HD)))
    f16 = os.path.join(models, "llama31-f16.gguf")
    with tempfile.TemporaryDirectory() as tmp:
        f32 = os.path.join(tmp, "llama31-f32.gguf")
        write_f32(f32)
        quantize(f32, f16, 1)
    lg = llamacpp_logits(f16, TOKENS, N_TOK, n_ubatch=32)
    assert lg.shape == (N_TOK, N_VOCAB)
    last = lg[N_TOK - N_KEEP:]
    out = os.path.join(golden, f"llama31-f16.llamacpp_logits_last{N_KEEP}x{N_VOCAB}.f32")
    last.astype("<f4").tofile(out)
    print(f"{os.path.relpath(f16, root)}: {os.path.getsize(f16)} bytes; logit rms of the last {N_KEEP} "
          f"{np.sqrt((last.astype(np.float64) ** 2).mean()):.3f} -> {os.path.relpath(out, root)}")


if __name__ == "__main__":
    main()
