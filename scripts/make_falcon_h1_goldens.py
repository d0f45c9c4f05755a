#!/usr/bin/env python3
"""make_falcon_h1_goldens.py: random-weight falcon-h1 models and llama.cpp's logits and
greedy tokens for them, for tests/test_falcon_h1.c.

Falcon-H1 is a hybrid: every layer runs attention heads and Mamba-2 SSM heads side by side
on the same RMS-normed input and adds both outputs to the residual stream, then a SwiGLU
FFN. The models are written with the `gguf` package under the keys and tensor names
llama.cpp's converter (conversion/falcon_h1.py, FalconH1Model on Mamba2Model) writes:

- keys: falcon-h1.{context_length, embedding_length, feed_forward_length, block_count,
  attention.head_count, attention.head_count_kv, attention.key_length,
  attention.value_length, attention.layer_norm_rms_epsilon, rope.freq_base,
  ssm.conv_kernel, ssm.inner_size, ssm.state_size, ssm.time_step_rank (the number of SSM
  heads), ssm.group_count, vocab_size};
- tensors per layer: attn_norm, attn_q/k/v/output, ssm_in (z, xBC, dt rows:
  2*d_inner + 2*n_group*d_state + n_ssm_head), ssm_conv1d.weight (d_conv x conv channels)
  and .bias, ssm_dt.bias, ssm_a (-exp(A_log), no .weight suffix), ssm_d, ssm_norm.weight
  (n_group rows of d_inner/n_group: the gated RMSNorm per group), ssm_out, ffn_norm,
  ffn_gate/up/down. The FFN norm is written as `blk.N.ffn_norm`, without the `.weight`
  suffix: llama.cpp 0.3.36 looks it up under that name (load_arch_tensors asks for
  tn(LLM_TENSOR_FFN_NORM, i)) and refuses the file otherwise, while its converter writes
  `blk.N.ffn_norm.weight`; ember accepts both.
- Falcon-H1's multipliers (embedding, lm_head, attention in/out, key, ssm in/out, the five
  ssm_multipliers over the z/x/B/C/dt rows of in_proj, mlp gate/down) are folded into the
  weights as the converter folds them, so the GGUF carries no multiplier keys; the script
  draws HF-style weights and multipliers and folds them the same way.

Shape (small, every feature present): dim 256, 2 layers, 4 attention heads / 2 kv heads,
head_dim 64 (NEOX rope, base 10000), ffn 256, vocab 512 (SentencePiece-style, as the other
synthetic models), rms eps 1e-5; SSM d_inner 256 in 8 heads of 32, d_state 32, 2 groups,
d_conv 4.

Files:
- falcon-h1-f32.gguf, and falcon-h1-q8_0.gguf from llama.cpp's quantizer
  (LLAMA_FTYPE_MOSTLY_Q8_0 = 7; it leaves ssm_conv1d in F32).
- <model>.llamacpp_logits_48x512.f32: logits of tokens 1, 300, ..., 346 as one batch, all
  48 positions (n_ctx 256, one thread, flash attention on, F16 KV cache, no extra buffer
  types: scripts/llamacpp_ref.py).
- <model>.greedy.txt: llama.cpp's greedy run: the same 48 tokens as the prompt (one batch),
  then 32 steps of one token each (argmax of the last logits, fed back), as `key: value`
  lines: prompt, gen_ids, margins (llama.cpp's top-1 minus top-2 logit at each step).

    pip install llama-cpp-python==0.3.36 gguf numpy
    python3 scripts/make_falcon_h1_goldens.py

Made with llama-cpp-python 0.3.36 (CMAKE_ARGS="-DGGML_NATIVE=OFF") and gguf 0.19.0; the
weights are deterministic (fixed seed).
"""
import os
import sys

import numpy as np

try:
    import gguf
except ImportError:
    sys.exit("needs: pip install llama-cpp-python==0.3.36 gguf numpy")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import llama_cpp  # noqa: E402
from llamacpp_ref import (add_byte_vocab, finish, golden_dirs, plain_llama, quantize,  # noqa: E402
                          write_logits_golden)

ARCH = "falcon-h1"
D, N_LAYER, N_HEAD, N_KV, HD, FF, N_VOCAB = 256, 2, 4, 2, 64, 256, 512
D_SSM, SSM_HD, D_STATE, N_GROUP, D_CONV = 256, 32, 32, 2, 4
N_SSM_HEAD = D_SSM // SSM_HD
N_CTX, EPS = 256, 1e-5
TOKENS = [1] + list(range(300, 347))
N_GEN = 32

# Falcon-H1 config multipliers (random-ish values of the magnitudes the real configs use)
MULT = {
    "embedding": 5.6, "lm_head": 0.3, "attention_in": 1.0, "attention_out": 0.9, "key": 0.4,
    "ssm_in": 1.2, "ssm_out": 0.5, "mlp": (0.9, 0.7), "ssm": (0.35, 0.25, 0.5, 0.7, 0.3),
}


def write_f32(path, seed=340):
    rng = np.random.default_rng(seed)
    w = gguf.GGUFWriter(path, ARCH)
    w.add_name("falcon-h1-synthetic")
    w.add_file_type(int(gguf.LlamaFileType.ALL_F32))
    w.add_vocab_size(N_VOCAB)
    w.add_context_length(N_CTX)
    w.add_embedding_length(D)
    w.add_feed_forward_length(FF)
    w.add_block_count(N_LAYER)
    w.add_head_count(N_HEAD)
    w.add_head_count_kv(N_KV)
    w.add_key_length(HD)
    w.add_value_length(HD)
    w.add_layer_norm_rms_eps(EPS)
    w.add_rope_freq_base(10000.0)
    w.add_ssm_conv_kernel(D_CONV)
    w.add_ssm_inner_size(D_SSM)
    w.add_ssm_state_size(D_STATE)
    w.add_ssm_time_step_rank(N_SSM_HEAD)
    w.add_ssm_group_count(N_GROUP)
    add_byte_vocab(w, N_VOCAB, pre="default")

    def rnd(rows, cols):
        return rng.standard_normal((rows, cols)) / np.sqrt(cols)

    def put(name, a):
        w.add_tensor(name, np.ascontiguousarray(a, dtype=np.float32))

    def norm(n):
        return 1.0 + rng.standard_normal(n) * 0.1

    put("token_embd.weight", rnd(N_VOCAB, D) * (MULT["embedding"] / 5.6))
    conv_ch = D_SSM + 2 * N_GROUP * D_STATE
    gs = N_GROUP * D_STATE
    for l in range(N_LAYER):
        p = f"blk.{l}."
        put(p + "attn_norm.weight", norm(D))
        put(p + "attn_q.weight", rnd(N_HEAD * HD, D) * MULT["attention_in"])
        put(p + "attn_k.weight", rnd(N_KV * HD, D) * MULT["key"] * MULT["attention_in"] * 2.5)
        put(p + "attn_v.weight", rnd(N_KV * HD, D) * MULT["attention_in"])
        put(p + "attn_output.weight", rnd(D, N_HEAD * HD) * MULT["attention_out"])
        # Mamba-2 mixer: in_proj rows z (D_SSM), xBC (D_SSM + 2*gs), dt (N_SSM_HEAD)
        inp = rnd(2 * D_SSM + 2 * gs + N_SSM_HEAD, D) * MULT["ssm_in"]
        m = MULT["ssm"]
        inp[:D_SSM] *= m[0]
        inp[D_SSM:2 * D_SSM] *= m[1]
        inp[2 * D_SSM:2 * D_SSM + gs] *= m[2]
        inp[2 * D_SSM + gs:2 * D_SSM + 2 * gs] *= m[3]
        inp[2 * D_SSM + 2 * gs:] *= m[4] * 4.0  # dt rows: a spread of step sizes
        put(p + "ssm_in.weight", inp)
        put(p + "ssm_conv1d.weight", rnd(conv_ch, D_CONV))
        put(p + "ssm_conv1d.bias", rng.standard_normal(conv_ch) * 0.1)
        dt = np.exp(rng.uniform(np.log(1e-3), np.log(0.1), N_SSM_HEAD))
        put(p + "ssm_dt.bias", dt + np.log(-np.expm1(-dt)))  # softplus^-1(dt), as Mamba inits it
        a_log = np.log(rng.uniform(1.0, 16.0, N_SSM_HEAD))
        put(p + "ssm_a", (-np.exp(a_log)).reshape(N_SSM_HEAD, 1))
        put(p + "ssm_d", (1.0 + rng.standard_normal(N_SSM_HEAD) * 0.2).reshape(N_SSM_HEAD, 1))
        put(p + "ssm_norm.weight", norm(D_SSM).reshape(N_GROUP, D_SSM // N_GROUP))
        put(p + "ssm_out.weight", rnd(D, D_SSM) * MULT["ssm_out"] * 2.0)
        put(p + "ffn_norm", norm(D))  # no .weight: see the docstring
        put(p + "ffn_gate.weight", rnd(FF, D) * MULT["mlp"][0])
        put(p + "ffn_up.weight", rnd(FF, D))
        put(p + "ffn_down.weight", rnd(D, FF) * MULT["mlp"][1])
    put("output_norm.weight", norm(D))
    put("output.weight", rnd(N_VOCAB, D) * MULT["lm_head"] * 10.0)
    finish(w)


def greedy(path, prompt, n_gen):
    """llama.cpp's greedy run: prompt as one batch, then one token per decode."""
    llm = plain_llama(path, N_CTX)
    llm.eval(prompt)
    ids, margins = [], []
    for _ in range(n_gen):
        row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        top = np.argsort(row)[::-1]
        ids.append(int(top[0]))
        margins.append(float(row[top[0]] - row[top[1]]))
        llm.eval([int(top[0])])
    llm.close()
    return ids, margins


def main():
    root, models, golden = golden_dirs()
    path = {n: os.path.join(models, f"falcon-h1-{n}.gguf") for n in ("f32", "q8_0")}
    write_f32(path["f32"])
    quantize(path["f32"], path["q8_0"], 7)
    for name, p in path.items():
        out = os.path.join(golden, f"falcon-h1-{name}.llamacpp_logits_{len(TOKENS)}x{N_VOCAB}.f32")
        lg = write_logits_golden(root, p, TOKENS, N_CTX, out)
        assert lg.shape == (len(TOKENS), N_VOCAB)
        ids, margins = greedy(p, TOKENS, N_GEN)
        gout = os.path.join(golden, f"falcon-h1-{name}.greedy.txt")
        with open(gout, "w") as f:
            f.write(f"# llama.cpp {llama_cpp.__version__} greedy run of {os.path.basename(p)}: the prompt as one\n"
                    f"# batch, then {N_GEN} single-token steps (scripts/make_falcon_h1_goldens.py)\n")
            f.write("prompt: " + " ".join(map(str, TOKENS)) + "\n")
            f.write("gen_ids: " + " ".join(map(str, ids)) + "\n")
            f.write("margins: " + " ".join(f"{m:.4f}" for m in margins) + "\n")
        print(f"  greedy {ids[:8]}... min margin {min(margins):.4f} -> {os.path.relpath(gout, root)}")


if __name__ == "__main__":
    main()
