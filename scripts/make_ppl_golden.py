#!/usr/bin/env python3
"""Perplexity goldens for `ember perplexity`, computed independently of ember and llama.cpp.

Tokenizes tests/data/ppl/story.txt with SentencePiece (tok512.model, the fixture tokenizer of
stories260K, BOS prepended as the model asks) and runs scripts/ref_forward.py's float64
forward pass on stories260K.gguf, applying llama.cpp's perplexity method: chunks of n_ctx
tokens, each decoded alone with its first token replaced by BOS, the logits at positions
n_ctx/2 .. n_ctx-2 scoring the next token; PPL = exp(mean NLL), +/- = PPL * standard error
of the mean NLL.

Writes tests/golden/ppl/stories260K_c<N>.txt with lines "tokens T", "chunks C",
"ppl X", "unc Y" for each n_ctx in --ctx.

Usage: python3 scripts/make_ppl_golden.py [--fixtures ../shared/fixtures] [--ctx 128,256]
Needs: numpy, gguf, sentencepiece.
"""
import argparse
import os
import sys

import numpy as np
import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ref_forward  # noqa: E402


def log_softmax(row):
    m = row.max()
    return row - m - np.log(np.exp(row - m).sum())


def perplexity(model, tokens, n_ctx, bos):
    n_chunk = len(tokens) // n_ctx
    first = n_ctx // 2
    nll = []
    for c in range(n_chunk):
        chunk = list(tokens[c * n_ctx:(c + 1) * n_ctx])
        chunk[0] = bos
        logits = ref_forward.forward(model, chunk)
        for j in range(first, n_ctx - 1):
            nll.append(-log_softmax(logits[j])[tokens[c * n_ctx + j + 1]])
    nll = np.array(nll)
    mean = nll.mean()
    var = (nll ** 2).mean() - mean * mean
    return n_chunk, float(np.exp(mean)), float(np.exp(mean) * np.sqrt(var / (len(nll) - 1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default=os.path.join(HERE, "..", "..", "shared", "fixtures"))
    ap.add_argument("--ctx", default="128,256")
    a = ap.parse_args()
    root = os.path.join(HERE, "..")
    text = open(os.path.join(root, "tests", "data", "ppl", "story.txt"), encoding="utf-8").read()
    sp = spm.SentencePieceProcessor(model_file=os.path.join(a.fixtures, "models", "tok512.model"))
    tokens = [sp.bos_id()] + sp.encode(text)
    model = ref_forward.Model(os.path.join(a.fixtures, "models", "stories260K.gguf"))
    for n_ctx in (int(c) for c in a.ctx.split(",")):
        n_chunk, ppl, unc = perplexity(model, tokens, n_ctx, sp.bos_id())
        out = os.path.join(root, "tests", "golden", "ppl", f"stories260K_c{n_ctx}.txt")
        with open(out, "w") as f:
            f.write(f"tokens {len(tokens)}\nchunks {n_chunk}\nppl {ppl:.6f}\nunc {unc:.6f}\n")
        print(f"{out}: {len(tokens)} tokens, {n_chunk} chunks, PPL {ppl:.4f} +/- {unc:.5f}")


if __name__ == "__main__":
    main()
