#!/usr/bin/env python3
"""bfp4_block_error.py: the block-error figures of docs/techniques.md §3, in numpy.

Mean squared error per value of 32-value blocks of N(0, 1) (and Laplace) samples stored as
  - q4_0 (ggml's quantize_row_q4_0_ref: d = max / -8 with max's sign, d in f16,
    q = trunc(x / d + 8.5) clamped to 0..15),
  - bfp4 with the scale that never clamps (amax in (4, 8] steps),
  - bfp4 as ember stores it (amax in (5, 10] steps, values beyond -8..7 saturate),
all with mantissas rounded half to even. Prints the errors and the ratios quoted in
docs/techniques.md. No arguments; seeds fixed; about a second.
"""
import numpy as np


def q4_0(x):
    i = np.argmax(np.abs(x), axis=1)
    mx = x[np.arange(len(x)), i]
    d = (mx / -8).astype(np.float16).astype(np.float32)
    inv = np.where(d != 0, 1 / np.where(d != 0, d, 1), 0).astype(np.float32)
    q = np.clip(np.trunc(x * inv[:, None] + 8.5), 0, 15)
    return (q - 8) * d[:, None]


def bfp4(x, top):
    """Scale 2^e with amax / 2^e in (top / 2, top]."""
    amax = np.abs(x).max(axis=1).astype(np.float64)
    e = np.ceil(np.log2(amax / top))
    s = 2.0 ** e
    m = np.clip(np.rint(x / s[:, None]), -8, 7)
    return m * s[:, None]


def main():
    rng = np.random.default_rng(1)
    for name, x in (("gaussian", rng.standard_normal((50000, 32))),
                    ("laplace", rng.laplace(size=(50000, 32)))):
        x = x.astype(np.float32)
        mse = {k: float(((f(x) - x) ** 2).mean()) for k, f in (
            ("q4_0", q4_0), ("bfp4 (4, 8]", lambda v: bfp4(v, 8.0)), ("bfp4 (5, 10]", lambda v: bfp4(v, 10.0)))}
        print(f"{name}: " + ", ".join(f"{k} {v:.5f}" for k, v in mse.items()))
        print(f"  bfp4 (5, 10] / (4, 8]: {mse['bfp4 (5, 10]'] / mse['bfp4 (4, 8]']:.2f}x;"
              f" bfp4 (5, 10] / q4_0: {mse['bfp4 (5, 10]'] / mse['q4_0']:.2f}x")


if __name__ == "__main__":
    main()
