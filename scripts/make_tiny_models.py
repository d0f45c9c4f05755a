#!/usr/bin/env python3
"""Writes tiny random-weight GGUF v3 models (tests/models/) and their reference logits
(tests/golden/tiny/), one file per architecture x weight type that ember must support.

Rerun (from the repository root; needs `pip install gguf numpy`, and llama-cpp-python for
--llamacpp):
    python3 scripts/make_tiny_models.py --llamacpp
The output is deterministic (fixed seeds), so rerunning reproduces the same bytes for the
same gguf/numpy versions.

Models (all: vocab 275 = 0 <unk>, 1 <s>, 2 </s>, 3..258 byte tokens <0x00>..<0xFF>, then 16
normal SPM-style tokens; context 128, rms eps 1e-5, norms and biases F32):
  llama-{f32,f16,bf16,q8_0,q4_0,q4_1}  llama, dim 64, 2 layers, 4 heads, 2 kv heads,
                                       head_dim 16, ffn 160, NORM rope theta 1e4, untied
  llama-tied-q8_0                      the same shape with tied embeddings (no output.weight)
  llama-{q4_K,q5_K,q6_K}               llama, dim 256, 1 layer, 4 heads, 2 kv heads,
                                       head_dim 64, ffn 256 (k-quant rows need 256 multiples)
  qwen2-f32                            qwen2, dim 32, 2 layers, 4/2 heads, head_dim 8, ffn 64,
                                       q/k/v biases, NEOX rope theta 1e6
  qwen3-f32                            qwen3, dim 32, 2 layers, 4/2 heads, head_dim 16 (!= 32/4),
                                       ffn 64, per-head q/k RMSNorm, NEOX rope theta 1e6
Every matrix (token_embd, attention, FFN, output) is stored in the file's type.

Weights: F32/F16/BF16/Q8_0/Q4_0/Q4_1 are random normals (std 1/sqrt(row length)) encoded
with gguf.quants.quantize.  gguf cannot quantize k-quants, so Q4_K/Q5_K/Q6_K blocks are random
bytes (quants, packed 6-bit scales/mins, Q6_K int8 scales) with the fp16 d (and dmin) set per
block so that the dequantized matrix has the same std and roughly zero mean.

Reference: for each model, scripts/ref_forward.py (float64, weights dequantized by
gguf.quants.dequantize, exact softmax, no KV rounding) computes the logits of all positions of
a fixed 16-token sequence -> tests/golden/tiny/<model>.logits.f32 (16 x 275 float32 LE,
row-major) and <model>.tokens (space-separated ids, BOS first).

With --llamacpp, llama.cpp (llama-cpp-python) also evaluates each model on the same tokens
(one batch, F32 KV cache, 1 thread, no extra buffer types) -> <model>.llamacpp_logits.f32.
Those include llama.cpp's activation rounding (Q8_0/Q8_1/Q8_K activations for quantized
weights, BF16/F16 activations for BF16/F16 weights), so an engine that quantizes activations
the same way should be much closer to them than to the float64 reference.  The script prints
both differences.
"""
import argparse
import os
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T, LlamaFileType as FT
from gguf.quants import quantize, dequantize

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_forward  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
MODELS = os.path.join(ROOT, "tests", "models")
GOLDEN = os.path.join(ROOT, "tests", "golden", "tiny")

N_CTX = 128
EPS = 1e-5
NORMAL_TOKENS = ["▁", "e", "t", "a", "o", "▁t", "▁a", "he", "▁the", "in", "er", "an",
                 "▁s", "on", "re", "▁w"]
N_VOCAB = 259 + len(NORMAL_TOKENS)  # 275

TYPES = {  # name -> (ggml type, general.file_type)
    "f32": (T.F32, FT.ALL_F32), "f16": (T.F16, FT.MOSTLY_F16), "bf16": (T.BF16, FT.MOSTLY_BF16),
    "q8_0": (T.Q8_0, FT.MOSTLY_Q8_0), "q4_0": (T.Q4_0, FT.MOSTLY_Q4_0),
    "q4_1": (T.Q4_1, FT.MOSTLY_Q4_1), "q4_K": (T.Q4_K, FT.MOSTLY_Q4_K_S),
    "q5_K": (T.Q5_K, FT.MOSTLY_Q5_K_S), "q6_K": (T.Q6_K, FT.MOSTLY_Q6_K),
}

SMALL = dict(n_embd=64, n_layer=2, n_head=4, n_kv=2, head_dim=16, n_ff=160)
KQUANT = dict(n_embd=256, n_layer=1, n_head=4, n_kv=2, head_dim=64, n_ff=256)
QWEN2 = dict(n_embd=32, n_layer=2, n_head=4, n_kv=2, head_dim=8, n_ff=64)
QWEN3 = dict(n_embd=32, n_layer=2, n_head=4, n_kv=2, head_dim=16, n_ff=64)

# (file name, arch, shape, type name, tied)
MODEL_LIST = (
    [(f"llama-{t}", "llama", SMALL, t, False) for t in ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1")]
    + [("llama-tied-q8_0", "llama", SMALL, "q8_0", True)]
    + [(f"llama-{t}", "llama", KQUANT, t, False) for t in ("q4_K", "q5_K", "q6_K")]
    + [("qwen2-f32", "qwen2", QWEN2, "f32", False), ("qwen3-f32", "qwen3", QWEN3, "f32", False)]
)


def eval_tokens():
    """BOS, then ids spread over the whole vocab (bytes and normal tokens), ending with the last id."""
    return [1] + [(k * 97) % N_VOCAB for k in range(1, 15)] + [N_VOCAB - 1]


def vocab():
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)] + NORMAL_TOKENS
    scores = [0.0] * 259 + [-float(i) for i in range(len(NORMAL_TOKENS))]
    types = [2, 3, 3] + [6] * 256 + [1] * len(NORMAL_TOKENS)
    return tokens, scores, types


# --- k-quant random blocks -------------------------------------------------------------------
# byte offsets of the fp16 super-block scales inside one block
KQ_LAYOUT = {
    T.Q4_K: dict(size=144, d=0, dmin=2),   # d, dmin, scales[12], qs[128]
    T.Q5_K: dict(size=176, d=0, dmin=2),   # d, dmin, scales[12], qh[32], qs[128]
    T.Q6_K: dict(size=210, d=208, dmin=None),  # ql[128], qh[64], scales[16] (int8), d
}
# dmin/d that centres d*sc*q - dmin*m for uniform random q and 6-bit sc, m (mean q = 7.5 / 15.5)
KQ_CENTRE = {T.Q4_K: 7.5, T.Q5_K: 15.5}


def set_f16(blocks, off, values):
    blocks[:, off:off + 2] = np.asarray(values, dtype="<f2").reshape(-1, 1).view(np.uint8)


def random_kquant(rng, rows, cols, qtype, std):
    """Random valid k-quant blocks for a (rows, cols) matrix, dequantizing to ~N(0, std)-ish."""
    lay = KQ_LAYOUT[qtype]
    nb = rows * cols // 256
    blocks = rng.integers(0, 256, size=(nb, lay["size"]), dtype=np.uint8)
    # per-block variation of the scale (factor 0.5..2) so blocks differ in magnitude
    factor = np.exp(rng.uniform(np.log(0.5), np.log(2.0), size=nb))
    set_f16(blocks, lay["d"], factor)
    if lay["dmin"] is not None:
        set_f16(blocks, lay["dmin"], factor * KQ_CENTRE[qtype])
    unit = dequantize(blocks.reshape(rows, -1), qtype)
    k = std / unit.std()
    set_f16(blocks, lay["d"], factor * k)
    if lay["dmin"] is not None:
        set_f16(blocks, lay["dmin"], factor * k * KQ_CENTRE[qtype])
    return blocks.reshape(rows, -1)


# --- writing ---------------------------------------------------------------------------------
def add_matrix(w, name, rng, rows, cols, tname, std):
    """Adds a (rows=out, cols=in) matrix of type tname; GGUF ne = {cols, rows}."""
    qtype = TYPES[tname][0]
    if qtype in KQ_LAYOUT:
        assert cols % 256 == 0, (name, cols)
        w.add_tensor(name, random_kquant(rng, rows, cols, qtype, std), raw_dtype=qtype)
        return
    x = (rng.standard_normal((rows, cols)) * std).astype(np.float32)
    if qtype == T.F32:
        w.add_tensor(name, x)
    elif qtype == T.F16:
        w.add_tensor(name, x.astype(np.float16))
    else:
        assert cols % 32 == 0, (name, cols)
        w.add_tensor(name, quantize(x, qtype), raw_dtype=qtype)


def add_vector(w, name, rng, n, mean, std):
    w.add_tensor(name, (mean + rng.standard_normal(n) * std).astype(np.float32))


def write_model(path, arch, s, tname, tied, seed):
    rng = np.random.default_rng(seed)
    qtype, ftype = TYPES[tname]
    d, hd, nh, nkv, ff = s["n_embd"], s["head_dim"], s["n_head"], s["n_kv"], s["n_ff"]
    w = gguf.GGUFWriter(path, arch)
    w.add_custom_alignment(32)
    w.add_name(os.path.basename(path)[:-5])
    w.add_file_type(int(ftype))
    if qtype not in (T.F32, T.F16):
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    w.add_vocab_size(N_VOCAB)
    w.add_context_length(N_CTX)
    w.add_embedding_length(d)
    w.add_block_count(s["n_layer"])
    w.add_feed_forward_length(ff)
    w.add_head_count(nh)
    w.add_head_count_kv(nkv)
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_freq_base(10000.0 if arch == "llama" else 1e6)
    w.add_rope_dimension_count(hd)
    if arch == "qwen3":
        w.add_key_length(hd)
        w.add_value_length(hd)
    tokens, scores, types = vocab()
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)

    # tied: token_embd is also the output matrix, so keep it small enough for O(1) logits
    add_matrix(w, "token_embd.weight", rng, N_VOCAB, d, tname, 2.0 / np.sqrt(d) if tied else 1.0)
    for l in range(s["n_layer"]):
        p = f"blk.{l}."
        add_vector(w, p + "attn_norm.weight", rng, d, 1.0, 0.1)
        # q/k a little larger than 1/sqrt(d) so that attention is not uniform
        add_matrix(w, p + "attn_q.weight", rng, nh * hd, d, tname, 1.5 / np.sqrt(d))
        add_matrix(w, p + "attn_k.weight", rng, nkv * hd, d, tname, 1.5 / np.sqrt(d))
        add_matrix(w, p + "attn_v.weight", rng, nkv * hd, d, tname, 1.0 / np.sqrt(d))
        if arch == "qwen2":
            add_vector(w, p + "attn_q.bias", rng, nh * hd, 0.0, 0.3)
            add_vector(w, p + "attn_k.bias", rng, nkv * hd, 0.0, 0.3)
            add_vector(w, p + "attn_v.bias", rng, nkv * hd, 0.0, 0.3)
        if arch == "qwen3":
            add_vector(w, p + "attn_q_norm.weight", rng, hd, 1.0, 0.2)
            add_vector(w, p + "attn_k_norm.weight", rng, hd, 1.0, 0.2)
        add_matrix(w, p + "attn_output.weight", rng, d, nh * hd, tname, 1.0 / np.sqrt(nh * hd))
        add_vector(w, p + "ffn_norm.weight", rng, d, 1.0, 0.1)
        add_matrix(w, p + "ffn_gate.weight", rng, ff, d, tname, 1.0 / np.sqrt(d))
        add_matrix(w, p + "ffn_up.weight", rng, ff, d, tname, 1.0 / np.sqrt(d))
        add_matrix(w, p + "ffn_down.weight", rng, d, ff, tname, 1.0 / np.sqrt(ff))
    add_vector(w, "output_norm.weight", rng, d, 1.0, 0.1)
    if not tied:
        add_matrix(w, "output.weight", rng, N_VOCAB, d, tname, 1.0 / np.sqrt(d))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def check_readback(path, arch, s, tname, tied):
    """Reads the file back and checks ne order, types and key values."""
    r = gguf.GGUFReader(path)
    t = {x.name: x for x in r.tensors}
    d, hd, nh = s["n_embd"], s["head_dim"], s["n_head"]
    assert [int(v) for v in t["blk.0.attn_q.weight"].shape] == [d, nh * hd]
    assert [int(v) for v in t["blk.0.ffn_down.weight"].shape] == [s["n_ff"], d]
    assert [int(v) for v in t["token_embd.weight"].shape] == [d, N_VOCAB]
    assert t["blk.0.attn_q.weight"].tensor_type == TYPES[tname][0]
    assert t["blk.0.attn_norm.weight"].tensor_type == T.F32
    assert ("output.weight" in t) == (not tied)
    assert ref_forward.field_value(r, "general.alignment") == 32
    assert ref_forward.field_value(r, f"{arch}.rope.dimension_count") == hd
    assert all(x.data_offset % 32 == 0 for x in r.tensors)


def llamacpp_logits(path, toks):
    """llama.cpp's logits for all positions (F32 KV cache, no repacking), or None if unavailable."""
    import llama_cpp
    import llama_cpp.llama_cpp as llama_c
    default_params = llama_c.llama_model_default_params

    def params():  # plain ggml-cpu kernels: no AMX / repacked weight layouts
        p = default_params()
        p.use_extra_bufts = False
        return p
    llama_c.llama_model_default_params = params
    try:
        llm = llama_cpp.Llama(model_path=path, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX,
                              n_threads=1, n_threads_batch=1, logits_all=True,
                              type_k=0, type_v=0, verbose=False)  # 0 = GGML_TYPE_F32
        llm.eval(toks)
        return np.array(llm.scores[:len(toks)], dtype=np.float64)
    finally:
        llama_c.llama_model_default_params = default_params


def main():
    ap = argparse.ArgumentParser(description="tiny GGUF models and reference logits")
    ap.add_argument("--llamacpp", action="store_true",
                    help="also write llama.cpp's logits (needs llama-cpp-python)")
    a = ap.parse_args()
    os.makedirs(MODELS, exist_ok=True)
    os.makedirs(GOLDEN, exist_ok=True)
    toks = eval_tokens()
    total = 0
    for seed, (name, arch, shape, tname, tied) in enumerate(MODEL_LIST, start=1000):
        path = os.path.join(MODELS, name + ".gguf")
        write_model(path, arch, shape, tname, tied, seed)
        check_readback(path, arch, shape, tname, tied)
        m = ref_forward.Model(path)
        logits = ref_forward.forward(m, toks)
        logits.astype("<f4").tofile(os.path.join(GOLDEN, name + ".logits.f32"))
        with open(os.path.join(GOLDEN, name + ".tokens"), "w") as f:
            f.write(" ".join(str(t) for t in toks) + "\n")
        size = os.path.getsize(path)
        total += size
        top2 = np.sort(logits, axis=1)[:, -2:]
        print(f"{name:16s} {size:8d} B  logit rms {np.sqrt((logits ** 2).mean()):.2f}  "
              f"min top1-top2 {np.min(top2[:, 1] - top2[:, 0]):.3f}  | {m.describe()}")
        if a.llamacpp:
            lc = llamacpp_logits(path, toks)
            lc.astype("<f4").tofile(os.path.join(GOLDEN, name + ".llamacpp_logits.f32"))
            d = np.abs(lc - logits)
            print(f"{'':16s} llama.cpp vs float64 reference: max|diff| {d.max():.2e}, mean {d.mean():.1e}, "
                  f"argmax agree {int((lc.argmax(1) == logits.argmax(1)).sum())}/{len(toks)}")
    print(f"total {total} bytes in {MODELS}")


if __name__ == "__main__":
    main()
