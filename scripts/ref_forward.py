#!/usr/bin/env python3
"""Independent numpy (float64) reference forward pass for llama / qwen2 / qwen3 GGUF files.

What it does: reads a GGUF with the PyPI `gguf` package (gguf.GGUFReader), dequantizes every
tensor with gguf.quants.dequantize, and runs the plain transformer in float64 for a list of
token ids, returning the logits of every position (n_tokens x n_vocab).  It shares no code
with ember or llama.cpp, so it can serve as an oracle for both.

The model, as llama.cpp reads it:
  x = token_embd[tok]
  per layer:  h = rmsnorm(x) * attn_norm
              q, k, v = h @ Wq^T (+bq), h @ Wk^T (+bk), h @ Wv^T (+bv)      (biases: qwen2)
              q, k = rmsnorm_per_head(q) * attn_q_norm, ... * attn_k_norm  (qwen3)
              rope(q), rope(k) at position p: NORM (llama) rotates (x[2i], x[2i+1]),
                  NEOX (qwen2, qwen3) rotates (x[i], x[i + n_rot/2]); angle p * base^(-2i/n_rot)
              causal softmax(q k^T / sqrt(head_dim)) v, GQA kv head = head // (n_head / n_kv)
              x += attn @ Wo^T
              h = rmsnorm(x) * ffn_norm;  x += (silu(h @ Wg^T) * (h @ Wu^T)) @ Wd^T
  logits = (rmsnorm(x) * output_norm) @ output^T     (token_embd when output.weight is absent)

Usage:
  python3 scripts/ref_forward.py MODEL.gguf [--tokens 1,2,3] [--out logits.f32]
  python3 scripts/ref_forward.py --selfcheck [--fixtures ../shared/fixtures]
The self-check compares against llama.cpp's logits stored in the shared fixtures
(synthetic llama/qwen2/qwen3 F32 files and stories260K) and prints the max abs differences.
"""
import argparse
import os
import sys

import numpy as np
import gguf
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize


def field_value(reader, key, default=None):
    """Value of a metadata key as a python scalar, str or list (default when absent)."""
    f = reader.fields.get(key)
    if f is None:
        return default
    t = f.types[0]
    if t == GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    if t == GGUFValueType.ARRAY:
        if f.types[1] == GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]
        return [f.parts[i][0].item() for i in f.data]
    return f.parts[f.data[0]][0].item()


def tensor_f64(t):
    """Dequantize a ReaderTensor to float64, numpy shape = reversed GGUF ne (so (out, in))."""
    data = dequantize(np.asarray(t.data), t.tensor_type)
    ne = [int(x) for x in t.shape]
    return np.asarray(data, dtype=np.float64).reshape(list(reversed(ne)))


class Model:
    """Hyper-parameters and float64 weights of one GGUF model."""

    def __init__(self, path):
        r = GGUFReader(path)
        arch = field_value(r, "general.architecture")
        if arch not in ("llama", "qwen2", "qwen3"):
            raise ValueError(f"{path}: unsupported architecture {arch!r}")
        self.arch = arch
        self.w = {t.name: tensor_f64(t) for t in r.tensors}
        self.types = {t.name: t.tensor_type.name for t in r.tensors}
        kv = lambda k, d=None: field_value(r, f"{arch}.{k}", d)
        self.n_embd = kv("embedding_length")
        self.n_layer = kv("block_count")
        self.n_head = kv("attention.head_count")
        self.n_kv = kv("attention.head_count_kv", self.n_head)
        self.head_dim_k = kv("attention.key_length", self.n_embd // self.n_head)
        self.head_dim_v = kv("attention.value_length", self.head_dim_k)
        self.n_rot = kv("rope.dimension_count", self.head_dim_k)
        self.rope_base = kv("rope.freq_base", 10000.0)
        self.eps = kv("attention.layer_norm_rms_epsilon")
        self.neox = arch in ("qwen2", "qwen3")
        self.n_vocab = self.w["token_embd.weight"].shape[0]
        self.tied = "output.weight" not in self.w

    def describe(self):
        mats = sorted(set(v for k, v in self.types.items() if self.w[k].ndim == 2))
        return (f"{self.arch}: n_embd {self.n_embd}, n_layer {self.n_layer}, n_head {self.n_head}, "
                f"n_kv {self.n_kv}, head_dim {self.head_dim_k}/{self.head_dim_v}, "
                f"ffn {self.w['blk.0.ffn_up.weight'].shape[0]}, vocab {self.n_vocab}, "
                f"rope {'neox' if self.neox else 'norm'} base {self.rope_base:g}, eps {self.eps:g}, "
                f"{'tied' if self.tied else 'untied'}, matrix types {mats}")


def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def rope(x, pos, n_rot, base, neox):
    """x: (n_tok, n_heads, head_dim); rotates the first n_rot dims of each head."""
    half = n_rot // 2
    freq = base ** (-2.0 * np.arange(half) / n_rot)
    ang = pos[:, None].astype(np.float64) * freq[None, :]
    cos = np.cos(ang)[:, None, :]
    sin = np.sin(ang)[:, None, :]
    out = x.copy()
    if neox:
        a, b = x[..., :half], x[..., half:n_rot]
        out[..., :half] = a * cos - b * sin
        out[..., half:n_rot] = a * sin + b * cos
    else:
        a, b = x[..., 0:n_rot:2], x[..., 1:n_rot:2]
        out[..., 0:n_rot:2] = a * cos - b * sin
        out[..., 1:n_rot:2] = a * sin + b * cos
    return out


def silu(x):
    return x / (1.0 + np.exp(-x))


def f16_round(a):
    return np.asarray(a, dtype=np.float64).astype(np.float16).astype(np.float64)


def attend_exact(q, k, v, scale):
    """Causal softmax attention of one head in float64. q (n, hd), k (n, hd), v (n, hdv)."""
    n = q.shape[0]
    s = q @ k.T * scale + np.triu(np.full((n, n), -np.inf), k=1)
    s = np.exp(s - s.max(axis=1, keepdims=True))
    s /= s.sum(axis=1, keepdims=True)
    return s @ v


def attend_llamacpp_fa16(q, k, v, scale):
    """Emulates llama.cpp's CPU flash attention with its default F16 KV cache: K and V are
    stored as f16, Q is rounded to f16 for the dot products, and the running V sum is kept in
    f16 (online softmax: rescale the sum when a new maximum appears).  Used only by the
    self-check, to show that the remaining difference to llama.cpp is this rounding."""
    n = q.shape[0]
    q, k, v = f16_round(q), f16_round(k), f16_round(v)
    out = np.empty((n, v.shape[1]))
    for i in range(n):
        total, mx, acc = 0.0, -np.inf, np.zeros(v.shape[1])
        for j in range(i + 1):
            s = float(q[i] @ k[j]) * scale
            ms, vs = 1.0, 1.0
            if s > mx:
                ms = np.exp(mx - s) if mx != -np.inf else 0.0
                mx = s
                acc = f16_round(acc * ms)
            else:
                vs = np.exp(s - mx)
            acc = f16_round(acc + v[j] * vs)
            total = total * ms + vs
        out[i] = acc / total
    return out


def forward(m, tokens, attend=attend_exact):
    """Logits (n_tokens, n_vocab) float64 for positions 0..n-1, one causal batch."""
    w = m.w
    tokens = np.asarray(tokens, dtype=np.int64)
    n = len(tokens)
    pos = np.arange(n)
    x = w["token_embd.weight"][tokens].copy()
    group = m.n_head // m.n_kv
    for l in range(m.n_layer):
        p = f"blk.{l}."
        h = rmsnorm(x, w[p + "attn_norm.weight"], m.eps)
        q = h @ w[p + "attn_q.weight"].T
        k = h @ w[p + "attn_k.weight"].T
        v = h @ w[p + "attn_v.weight"].T
        if p + "attn_q.bias" in w:
            q = q + w[p + "attn_q.bias"]
            k = k + w[p + "attn_k.bias"]
            v = v + w[p + "attn_v.bias"]
        q = q.reshape(n, m.n_head, m.head_dim_k)
        k = k.reshape(n, m.n_kv, m.head_dim_k)
        v = v.reshape(n, m.n_kv, m.head_dim_v)
        if p + "attn_q_norm.weight" in w:
            q = rmsnorm(q, w[p + "attn_q_norm.weight"], m.eps)
            k = rmsnorm(k, w[p + "attn_k_norm.weight"], m.eps)
        q = rope(q, pos, m.n_rot, m.rope_base, m.neox)
        k = rope(k, pos, m.n_rot, m.rope_base, m.neox)
        att = np.empty((n, m.n_head, m.head_dim_v))
        scale = 1.0 / np.sqrt(m.head_dim_k)
        for hh in range(m.n_head):
            kh = hh // group
            att[:, hh, :] = attend(q[:, hh, :], k[:, kh, :], v[:, kh, :], scale)
        x = x + att.reshape(n, -1) @ w[p + "attn_output.weight"].T
        h = rmsnorm(x, w[p + "ffn_norm.weight"], m.eps)
        g = h @ w[p + "ffn_gate.weight"].T
        u = h @ w[p + "ffn_up.weight"].T
        x = x + (silu(g) * u) @ w[p + "ffn_down.weight"].T
    x = rmsnorm(x, w["output_norm.weight"], m.eps)
    out = w["output.weight"] if "output.weight" in w else w["token_embd.weight"]
    return x @ out.T


def selfcheck(fix):
    """Compare with llama.cpp logits from the shared fixtures; returns the worst max abs diff."""
    cases = []
    toks32 = [1] + list(range(300, 331))
    for name in ("llama-f32", "qwen2-f32", "qwen3-f32"):
        cases.append((os.path.join(fix, "synthetic", name + ".gguf"), toks32,
                      os.path.join(fix, "golden", "synthetic", name + ".llamacpp_logits_32x512.f32")))
    ids = [int(t) for t in open(os.path.join(fix, "golden", "stories260K_greedy_bos_256.ids")).read().split()]
    cases.append((os.path.join(fix, "models", "stories260K.gguf"), [1] + ids[:63],
                  os.path.join(fix, "golden", "stories260K_llamacpp_logits_64x512.f32")))
    worst = 0.0
    for path, toks, gold in cases:
        m = Model(path)
        ref = np.fromfile(gold, dtype="<f4").reshape(len(toks), m.n_vocab)
        print(f"{os.path.basename(path)}  (logit rms {np.sqrt((ref ** 2).mean()):.3f})")
        for label, attend in (("exact f64", attend_exact), ("f16 KV + FA emulated", attend_llamacpp_fa16)):
            got = forward(m, toks, attend)
            d = np.abs(got - ref)
            agree = int((got.argmax(1) == ref.argmax(1)).sum())
            print(f"  {label:21s} max|diff| {d.max():.3e}  mean {d.mean():.3e}  "
                  f"first 8 positions {d[:8].max():.1e}  argmax agree {agree}/{len(toks)}")
            if attend is attend_exact:
                worst = max(worst, float(d.max()))
    return worst


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", nargs="?")
    ap.add_argument("--tokens", default="1,2,3,4")
    ap.add_argument("--out", help="write logits as float32 little-endian, row-major")
    ap.add_argument("--selfcheck", action="store_true")
    ap.add_argument("--fixtures", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                       "..", "..", "shared", "fixtures"))
    a = ap.parse_args()
    if a.selfcheck:
        worst = selfcheck(a.fixtures)
        print(f"worst max|diff| (exact f64) {worst:.3e}")
        sys.exit(0 if worst < 5e-2 else 1)
    if not a.model:
        ap.error("need MODEL.gguf or --selfcheck")
    m = Model(a.model)
    print(m.describe())
    logits = forward(m, [int(t) for t in a.tokens.split(",")])
    print("argmax per position:", " ".join(str(i) for i in logits.argmax(1)))
    if a.out:
        logits.astype("<f4").tofile(a.out)


if __name__ == "__main__":
    main()
