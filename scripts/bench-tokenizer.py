#!/usr/bin/env python3
"""bench-tokenizer.py: tokenizer throughput on 1 MiB of text, ember beside Hugging Face
`tokenizers` and llama.cpp (llama-cpp-python), all with SmolLM2's tokenizer.

The text is the committed varied corpus (tests/golden/tokenizer/smollm2_corpus.txt: code,
prose, many scripts, emoji, whitespace runs, numbers) repeated and cut to 1 MiB on a
character boundary. ember is timed as `ember tokenize -f FILE --no-bos --special` (a new
process: load the vocab, tokenize, print the ids) minus the same command on an empty file
(process start and vocab load); HF is `Tokenizer.encode` (one call, no batching) on the
tokenizer scripts/make_tokenizer_goldens.py builds; llama.cpp is `Llama.tokenize` on a
vocab-only load. Best of 5 runs each. Prints a Markdown table for BENCHMARKS.md.

Usage: python3 scripts/bench-tokenizer.py [--ember build/ember] [--model PATH]
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def best(fn, runs=5):
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)


def one_mib_text():
    with open(os.path.join(ROOT, "tests", "golden", "tokenizer", "smollm2_corpus.txt"), "rb") as f:
        corpus = f.read()
    data = (corpus * (1 + (1 << 20) // len(corpus)))[: 1 << 20]
    return data.decode("utf-8", errors="ignore").encode("utf-8")  # whole characters only


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ember", default=os.path.join(ROOT, "build", "ember"))
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    args = ap.parse_args()
    data = one_mib_text()
    mb = len(data) / 1e6
    rows = []
    with tempfile.TemporaryDirectory() as d:
        full, empty = os.path.join(d, "text.txt"), os.path.join(d, "empty.txt")
        open(full, "wb").write(data)
        open(empty, "wb").close()
        cmd = [args.ember, "tokenize", "-m", args.model, "--no-bos", "--special", "-f"]
        n_ids = len(subprocess.run(cmd + [full], capture_output=True, check=True).stdout.split())
        t_full = best(lambda: subprocess.run(cmd + [full], capture_output=True, check=True))
        t_empty = best(lambda: subprocess.run(cmd + [empty], capture_output=True, check=True))
        rows.append(("ember (`ember tokenize -f`, load subtracted)", t_full - t_empty, n_ids))
        rows.append(("ember (`ember tokenize -f`, whole process)", t_full, n_ids))
    import make_tokenizer_goldens as g
    import tokenizers
    hf = g.hf_smollm2(args.model)
    text = data.decode("utf-8")
    ids = hf.encode(text, add_special_tokens=False).ids
    rows.append(("HF tokenizers %s (`Tokenizer.encode`)" % tokenizers.__version__,
                 best(lambda: hf.encode(text, add_special_tokens=False)), len(ids)))
    try:
        import llama_cpp
        llm = g.load_llama(args.model)
        n = len(llm.tokenize(data, add_bos=False, special=True))
        rows.append(("llama.cpp (llama-cpp-python %s `tokenize`)" % llama_cpp.__version__,
                     best(lambda: llm.tokenize(data, add_bos=False, special=True)), n))
    except ImportError:
        pass
    print("Machine: %s, %s; text: %d bytes of the SmolLM2 corpus; best of 5.\n" %
          (platform.processor() or platform.machine(), platform.platform(), len(data)))
    print("| tokenizer | seconds | MB/s | ids |")
    print("|---|---|---|---|")
    for name, t, n in rows:
        print("| %s | %.3f | %.1f | %d |" % (name, t, mb / t, n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
