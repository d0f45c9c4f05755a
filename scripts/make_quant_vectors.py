#!/usr/bin/env python3
"""make_quant_vectors.py: reference vectors for tests/test_quant.c, made with gguf-py.

gguf-py (PyPI `gguf`, its numpy code in gguf.quants) is an implementation of ggml's block
formats that is independent of ember's C code, so ember's dequantizers must reproduce its
floats bit for bit, and its Q8_0/Q4_0/Q4_1 quantizers block for block.

    pip install gguf numpy
    python3 scripts/make_quant_vectors.py [--out tests/data/quant] [--fixtures ../shared/fixtures]

Output files (all little-endian), each a 32-byte header then a payload:
    offset  0  char[4] "EMQV"
            4  u32 version (1)
            8  u32 kind: 1 = dequantize (payload: blocks, then the reference floats)
                         2 = quantize   (payload: input floats, then the reference blocks)
           12  u32 ggml type id (F32 0, F16 1, Q4_0 2, Q4_1 3, Q5_0 6, Q5_1 7, Q8_0 8,
               Q2_K 10, Q3_K 11, Q4_K 12, Q5_K 13, Q6_K 14, IQ4_NL 20, IQ4_XS 23, BF16 30, TQ1_0 34,
               TQ2_0 35)
           16  u32 number of blocks
           20  u32 bytes per block
           24  u32 elements per block
           28  u32 reserved (0)
Files:
    deq_<type>.bin      kind 1, random but valid blocks (random bytes, fp16 scales with
                        magnitude in [1e-3, 1e-1] and random sign, plus a few edge blocks)
    quant_<type>.bin    kind 2 for q8_0, q4_0, q4_1, q5_0, q5_1, tq1_0, tq2_0, f16, bf16
    fixture_<type>.bin  kind 1, the first blocks of one tensor of that type read from the
                        synthetic GGUF fixtures (real quantizer output), if they are present;
                        q2_K/q3_K from tests/models/synthetic/llama-q2_k.gguf

Rounding caveats: gguf-py's Q8_0 rounds half away from zero with multiplier 1/d, while
ember rounds half to even with multiplier 127/amax (llama.cpp's x86 path). The two agree
unless x*id lands within a few ulps of a half-integer, so Q8_0 inputs are drawn to stay
clear of that (see q8_0_inputs); the tie behaviour itself is tested in C.
"""
import argparse
import os
import struct
import sys

import numpy as np

try:
    import gguf
    from gguf import GGMLQuantizationType as T
    from gguf import quants
except ImportError:
    sys.exit("needs the gguf package: pip install gguf numpy")

MAGIC = b"EMQV"
KIND_DEQ, KIND_QUANT = 1, 2
NAMES = {T.F16: "f16", T.BF16: "bf16", T.Q8_0: "q8_0", T.Q4_0: "q4_0", T.Q4_1: "q4_1",
         T.Q5_0: "q5_0", T.Q5_1: "q5_1", T.Q4_K: "q4_K", T.Q5_K: "q5_K", T.Q6_K: "q6_K",
         T.Q2_K: "q2_K", T.Q3_K: "q3_K",
         T.IQ4_NL: "iq4_nl", T.IQ4_XS: "iq4_xs", T.TQ1_0: "tq1_0", T.TQ2_0: "tq2_0"}


def block_info(t):
    blck, nbytes = gguf.GGML_QUANT_SIZES[t]
    return blck, nbytes


def write(path, kind, t, nblocks, first: bytes, second: bytes):
    blck, nbytes = block_info(t)
    hdr = MAGIC + struct.pack("<7I", 1, kind, int(t), nblocks, nbytes, blck, 0)
    with open(path, "wb") as f:
        f.write(hdr + first + second)
    print(f"{os.path.relpath(path)}: {len(hdr) + len(first) + len(second)} bytes")


def fp16_scales(rng, n):
    """fp16 bit patterns of magnitude in [1e-3, 1e-1] (log-uniform), random sign."""
    mag = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), n)).astype(np.float16)
    sign = rng.integers(0, 2, n).astype(np.uint16) << 15
    return mag.view(np.uint16) | sign


def random_blocks(rng, t, nblocks):
    """Random bytes with every fp16 scale field overwritten by a sane value. The first
    blocks are edge cases: subnormal and zero scales, all-ones bytes."""
    blck, nbytes = block_info(t)
    b = rng.integers(0, 256, (nblocks, nbytes), dtype=np.uint8)
    if t in (T.Q8_0, T.Q4_0, T.Q5_0, T.IQ4_NL, T.IQ4_XS):
        fields = [0]
    elif t in (T.Q4_1, T.Q5_1, T.Q4_K, T.Q5_K):
        fields = [0, 2]  # d, m / d, dmin
    elif t in (T.Q6_K, T.Q3_K, T.TQ1_0, T.TQ2_0):
        fields = [nbytes - 2]  # d is last
    elif t == T.Q2_K:
        fields = [nbytes - 4, nbytes - 2]  # d, dmin at the end
    else:
        raise ValueError(t)
    for off in fields:
        b[:, off:off + 2] = fp16_scales(rng, nblocks).view(np.uint8).reshape(nblocks, 2)
    b[0, :] = 0xFF
    for off in fields:
        b[0, off:off + 2] = np.array([0x2E66], np.uint16).view(np.uint8)  # 0.1
        sub = 0x0001 if off == fields[0] else 0x83FF  # smallest / largest (negative) subnormal
        b[1, off:off + 2] = np.array([sub], np.uint16).view(np.uint8)
        b[2, off:off + 2] = 0  # zero scale
    return b


def deq_vectors(rng, out):
    for t, nblocks in ((T.Q8_0, 128), (T.Q4_0, 128), (T.Q4_1, 128),
                       (T.Q4_K, 24), (T.Q5_K, 24), (T.Q6_K, 24)):
        b = random_blocks(rng, t, nblocks)
        y = quants.dequantize(b, t).astype("<f4").reshape(-1)
        write(os.path.join(out, f"deq_{NAMES[t]}.bin"), KIND_DEQ, t, nblocks, b.tobytes(), y.tobytes())
    # f16/bf16: random bit patterns, NaN and inf included (f16 keeps NaN payloads, as numpy)
    for t in (T.F16, T.BF16):
        h = rng.integers(0, 65536, 4096, dtype=np.uint32).astype(np.uint16)
        h[:8] = [0x0000, 0x8000, 0x0001, 0x83FF, 0x7C00, 0xFC00, 0x7E00, 0x7C01]
        y = quants.dequantize(h.view(np.uint8), t).astype("<f4").reshape(-1)
        write(os.path.join(out, f"deq_{NAMES[t]}.bin"), KIND_DEQ, t, len(h), h.tobytes(), y.tobytes())


def q8_0_inputs(rng, nblocks):
    """Blocks whose x*id is not within 1e-3 of a half-integer under either multiplier
    (1/(amax/127) or 127/amax), so round-half-away vs half-even cannot matter."""
    out = []
    while len(out) < nblocks:
        scale = np.exp(rng.uniform(np.log(1e-3), np.log(1e2)))
        x = (rng.standard_normal(32) * scale).astype(np.float32)
        amax = np.max(np.abs(x))
        d = np.float32(amax / np.float32(127))
        for idv in (np.float32(1) / d, np.float32(127) / amax):
            v = (x * np.float32(idv)).astype(np.float64)
            frac = np.abs(v - np.floor(v) - 0.5)
            if np.any(frac < 1e-3):
                break
        else:
            out.append(x)
    return np.stack(out)


def quant_vectors(rng, out):
    n = 128
    x = q8_0_inputs(rng, n)
    q = quants.quantize(x, T.Q8_0)
    write(os.path.join(out, "quant_q8_0.bin"), KIND_QUANT, T.Q8_0, n, x.astype("<f4").tobytes(), q.tobytes())
    for t in (T.Q4_0, T.Q4_1):
        scale = np.exp(rng.uniform(np.log(1e-3), np.log(1e2), (n, 1)))
        x = (rng.standard_normal((n, 32)) * scale).astype(np.float32)
        x[0, :] = 0.0                     # all-zero block: d = 0
        x[1, :] = np.float32(0.25)        # constant block (q4_1: d = 0, m = value)
        x[2, :] = -np.linspace(0, 1, 32, dtype=np.float32)  # negative max
        q = quants.quantize(x, t)
        write(os.path.join(out, f"quant_{NAMES[t]}.bin"), KIND_QUANT, t, n, x.astype("<f4").tobytes(), q.tobytes())
    # float -> f16 / bf16: random bit patterns (all classes) plus exact ties, near-ties,
    # subnormal and overflow edges; numpy's float16 cast is the f16 reference.
    bits = rng.integers(0, 2**32, 16384, dtype=np.uint64).astype(np.uint32)
    k = 0
    halves = rng.integers(0, 0x7C00, 2048, dtype=np.uint32).astype(np.uint16)
    lo = halves.view(np.float16).astype(np.float32)
    hi = (halves + 1).view(np.float16).astype(np.float32)
    mid = ((lo.astype(np.float64) + hi.astype(np.float64)) / 2).astype(np.float32)  # exact
    for arr in (mid, np.nextafter(mid, np.float32(np.inf)), np.nextafter(mid, np.float32(-np.inf))):
        bits[k:k + len(arr)] = arr.view(np.uint32)
        k += len(arr)
    edges = np.array([65504, 65519.99, 65520, 65536, 2**-24, 2**-25, 2**-25 * 1.0000001, 2**-14,
                      1e-45, 3.4e38, np.inf, -np.inf, np.nan, -0.0], dtype=np.float32)
    bits[k:k + len(edges)] = edges.view(np.uint32)
    bits[k + len(edges):k + 2 * len(edges)] = (-edges).view(np.uint32)
    x = bits.view(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        h = x.astype(np.float16).view(np.uint16)
    write(os.path.join(out, "quant_f16.bin"), KIND_QUANT, T.F16, len(x), x.astype("<f4").tobytes(), h.astype("<u2").tobytes())
    # bf16 ties: the midpoint between two adjacent bf16 values has bit 15 set, rest zero
    bits2 = bits.copy()
    bits2[:4096] = (bits2[:4096] & 0xFFFF0000) | 0x8000
    x2 = bits2.view(np.float32)
    h2 = quants.quantize(x2, T.BF16).view(np.uint16)
    write(os.path.join(out, "quant_bf16.bin"), KIND_QUANT, T.BF16, len(x2), x2.astype("<f4").tobytes(), h2.astype("<u2").tobytes())


def small_block_inputs(rng, n):
    """n blocks of 32 floats at scales 1e-3..1e2, with the edge blocks first: all zero
    (d = 0), constant (q*_1: d = 0, m = value), and a negative max."""
    scale = np.exp(rng.uniform(np.log(1e-3), np.log(1e2), (n, 1)))
    x = (rng.standard_normal((n, 32)) * scale).astype(np.float32)
    x[0, :] = 0.0
    x[1, :] = np.float32(0.25)
    x[2, :] = -np.linspace(0, 1, 32, dtype=np.float32)
    return x


def q5_vectors(out, seed):
    """Q5_0 / Q5_1, added later than the other types: their own random stream, so the
    files above stay as they were."""
    rng = np.random.default_rng(seed)
    for t in (T.Q5_0, T.Q5_1):
        b = random_blocks(rng, t, 128)
        y = quants.dequantize(b, t).astype("<f4").reshape(-1)
        write(os.path.join(out, f"deq_{NAMES[t]}.bin"), KIND_DEQ, t, 128, b.tobytes(), y.tobytes())
        x = small_block_inputs(rng, 128)
        q = quants.quantize(x, t)
        write(os.path.join(out, f"quant_{NAMES[t]}.bin"), KIND_QUANT, t, 128, x.astype("<f4").tobytes(), q.tobytes())


def q2q3_vectors(out, seed, root):
    """Q2_K / Q3_K, added later still: their own random stream; and, as fixture_*.bin, the
    first 8 blocks of the first tensor of each type in tests/models/synthetic/llama-q2_k.gguf
    (llama.cpp's quantizer output, scripts/make_synthetic_quant_goldens.py)."""
    rng = np.random.default_rng(seed)
    for t in (T.Q2_K, T.Q3_K):
        b = random_blocks(rng, t, 24)
        y = quants.dequantize(b, t).astype("<f4").reshape(-1)
        write(os.path.join(out, f"deq_{NAMES[t]}.bin"), KIND_DEQ, t, 24, b.tobytes(), y.tobytes())
    path = os.path.join(root, "tests", "models", "synthetic", "llama-q2_k.gguf")
    if not os.path.exists(path):
        print(f"skip {path}: absent")
        return
    done = set()
    for tensor in gguf.GGUFReader(path).tensors:
        t = tensor.tensor_type
        if t not in (T.Q2_K, T.Q3_K) or t in done:
            continue
        blck, nbytes = block_info(t)
        b = np.asarray(tensor.data).view(np.uint8).reshape(-1)[:8 * nbytes].reshape(8, nbytes)
        y = quants.dequantize(b, t).astype("<f4").reshape(-1)
        print(f"  llama-q2_k.gguf: {tensor.name} {NAMES[t]}")
        write(os.path.join(out, f"fixture_{NAMES[t]}.bin"), KIND_DEQ, t, 8, b.tobytes(), y.tobytes())
        done.add(t)


def iq_tq_vectors(out, seed):
    """IQ4_NL, IQ4_XS, TQ1_0, TQ2_0 (dequantization; TQ1_0/TQ2_0 also quantization, which
    gguf-py implements), added later: their own random stream. Random tq2_0 bytes include
    the unused code 3, which gguf-py and ggml both read as value 2."""
    rng = np.random.default_rng(seed)
    for t, nblocks in ((T.IQ4_NL, 128), (T.IQ4_XS, 24), (T.TQ1_0, 24), (T.TQ2_0, 24)):
        b = random_blocks(rng, t, nblocks)
        y = quants.dequantize(b, t).astype("<f4").reshape(-1)
        write(os.path.join(out, f"deq_{NAMES[t]}.bin"), KIND_DEQ, t, nblocks, b.tobytes(), y.tobytes())
    for t in (T.TQ1_0, T.TQ2_0):
        n = 32
        scale = np.exp(rng.uniform(np.log(1e-3), np.log(1e2), (n, 1)))
        x = (rng.standard_normal((n, 256)) * scale).astype(np.float32)
        x[0, :] = 0.0                                         # d = 0
        x[1, :] = np.float32(0.25)                            # every code +1
        x[2, :] = -np.linspace(0, 1, 256, dtype=np.float32)   # negative max, both thresholds
        x[3, :] = np.where(np.arange(256) % 2, np.float32(0.5), np.float32(-0.5))
        x[3, 0] = 1.0                                         # exact halves: round away from 0
        q = quants.quantize(x, t)
        write(os.path.join(out, f"quant_{NAMES[t]}.bin"), KIND_QUANT, t, n, x.astype("<f4").tobytes(), q.tobytes())


def fixture_vectors(fixtures, out):
    """The first blocks (8 k-quant, 64 small, 2048 f16/bf16 values) of the first tensor of each type found in the synthetic GGUFs."""
    files = ["llama-q4_k_m.gguf", "llama-q5_k_m.gguf", "llama-q6_k.gguf", "llama-q4_0.gguf",
             "llama-q4_1.gguf", "llama-q8_0.gguf", "llama-f16.gguf", "llama-bf16.gguf"]
    done = set()
    for fn in files:
        path = os.path.join(fixtures, "synthetic", fn)
        if not os.path.exists(path):
            print(f"skip {path}: absent")
            continue
        r = gguf.GGUFReader(path)
        for tensor in r.tensors:
            t = tensor.tensor_type
            if t not in NAMES or t in done:
                continue
            blck, nbytes = block_info(t)
            raw = np.asarray(tensor.data).view(np.uint8).reshape(-1)
            nblocks = min({1: 2048, 32: 64}.get(blck, 8), raw.size // nbytes)
            b = raw[:nblocks * nbytes].reshape(nblocks, nbytes)
            y = quants.dequantize(b if blck > 1 else b.reshape(-1), t).astype("<f4").reshape(-1)
            print(f"  {fn}: {tensor.name} {NAMES[t]}")
            write(os.path.join(out, f"fixture_{NAMES[t]}.bin"), KIND_DEQ, t, nblocks, b.tobytes(), y.tobytes())
            done.add(t)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(here, "..", "tests", "data", "quant"))
    ap.add_argument("--fixtures", default=os.path.join(here, "..", "..", "shared", "fixtures"))
    ap.add_argument("--seed", type=int, default=20240611)
    a = ap.parse_args()
    a.out, a.fixtures = os.path.normpath(a.out), os.path.normpath(a.fixtures)
    os.makedirs(a.out, exist_ok=True)
    rng = np.random.default_rng(a.seed)
    from importlib import metadata
    print(f"gguf {metadata.version('gguf')}, numpy {np.__version__}")
    deq_vectors(rng, a.out)
    quant_vectors(rng, a.out)
    fixture_vectors(a.fixtures, a.out)
    q5_vectors(a.out, a.seed + 5)
    q2q3_vectors(a.out, a.seed + 23, os.path.normpath(os.path.join(here, "..")))
    iq_tq_vectors(a.out, a.seed + 20)


if __name__ == "__main__":
    main()
