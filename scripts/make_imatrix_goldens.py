#!/usr/bin/env python3
"""Goldens for tests/test_imatrix.c: importance matrices that llama.cpp's llama-imatrix
computes on the tiny F32 models of tests/models, which `ember imatrix` must reproduce.

Rerun (from the repository root; needs llama-imatrix built from the llama.cpp vendored in
llama-cpp-python 0.3.36, path in $LLAMA_IMATRIX, default llama-imatrix on PATH):
    LLAMA_IMATRIX=/path/to/llama-imatrix python3 scripts/make_imatrix_goldens.py
Writes tests/golden/imatrix/:
  llama-f32.imatrix.gguf  llama-imatrix -m tests/models/llama-f32.gguf -f TEXT -c 64 -b 256
                          -ub 32 --chunks 7 --process-output --no-ppl -t 1
  qwen2-f32.imatrix.dat   the same on tests/models/qwen2-f32.gguf with --output-format dat
                          (the legacy layout) and without --process-output
TEXT is /usr/share/common-licenses/GPL-3 (Debian's base-files), given by that path: the
files record it. The flags make llama-imatrix run 4 chunks side by side, then 3, in
micro-batches of 32 tokens: 8 tokens of each of 4 sequences, then 10 of each of 3, and a
last micro-batch of 4 x 3 = 12 tokens that it skips (under 16 tokens), so the goldens pin
the order in which the sums add up, the skipped tokens (counts 7*64 - 12 = 436) and
output.weight. (tests/data/quantize/stories260K.imatrix.gguf, made by
scripts/make_quantize_goldens.py with -c 128 --chunks 4, is the third golden.)
"""
import os
import subprocess
import sys

TEXT = "/usr/share/common-licenses/GPL-3"
OUT = "tests/golden/imatrix"
COMMON = ["-f", TEXT, "-c", "64", "-b", "256", "-ub", "32", "--chunks", "7", "--no-ppl", "-t", "1"]
CASES = [
    ("tests/models/llama-f32.gguf", "llama-f32.imatrix.gguf", ["--process-output"]),
    ("tests/models/qwen2-f32.gguf", "qwen2-f32.imatrix.dat", ["--output-format", "dat"]),
]


def main():
    exe = os.environ.get("LLAMA_IMATRIX", "llama-imatrix")
    os.makedirs(OUT, exist_ok=True)
    for model, name, extra in CASES:
        out = os.path.join(OUT, name)
        cmd = [exe, "-m", model, "-o", out] + COMMON + extra
        print(" ".join(cmd), file=sys.stderr)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(out, os.path.getsize(out), "bytes")


if __name__ == "__main__":
    main()
