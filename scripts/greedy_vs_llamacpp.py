#!/usr/bin/env python3
"""greedy_vs_llamacpp.py: ember's greedy tokens against llama.cpp's on any GGUF file.

For each prompt, llama.cpp (llama-cpp-python) decodes the prompt as one batch and then
takes N argmax steps, one token at a time, with the settings of make_smollm2_goldens.py:
n_ctx 512 (or -c), one thread, flash attention on, F16 KV cache, no extra buffer types.
ember runs `ember run --temp 0 -n N --ids --special -c N_CTX` on the same prompt. A divergence is a
near-tie when llama.cpp's own top-2 logit margin at that step is at most 0.5; the exit
status is 1 if any divergence is not a near-tie (or the prompt tokens differ). Both stop at
an end-of-generation token (llama.cpp's list ends with it; `ember run` does not print it).

    pip install llama-cpp-python==0.3.36 numpy
    python3 scripts/greedy_vs_llamacpp.py -m MODEL.gguf [--ember build/ember] [--isa avx2]
        [-n 64] [-c 512] [--prompts prompts.json]

The built-in prompts are code and text completions plus two ChatML conversations (for
models with ChatML templates, e.g. Qwen2.5); --prompts takes a JSON list of strings, in
which control tokens are written out (they are parsed as special tokens on both sides).
Use -c 1024 for prompts longer than Gemma 3's 512-position sliding window.

--golden FILE also writes llama.cpp's results in the block format of
tests/golden/smollm2/greedy.txt (name, prompt_b64, parse_special, prompt_ids, gen_ids,
margins, min_margin). The goldens that tests/test_realmodels.c checks come from
scripts/make_realmodel_goldens.py.
"""
import argparse
import base64
import ctypes
import json
import os
import subprocess
import sys

import numpy as np

try:
    import llama_cpp
    import llama_cpp.llama_cpp as llama_c
except ImportError:
    sys.exit("needs: pip install llama-cpp-python==0.3.36 numpy")

PROMPTS = [
    "def fib(n):",
    "The capital of France is",
    "# Python function to check if a number is prime\n",
    "import numpy as np\n\ndef softmax(x):",
    "SELECT name FROM users WHERE",
    "// C function to compute the length of a string\nsize_t my_strlen(const char *s) {",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Write a function that reverses a string in Python.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nWhat is a linked list?<|im_end|>\n<|im_start|>assistant\n",
]
NEAR_TIE = 0.5


def llama_greedy(model, prompts, n_gen, n_ctx):
    default_params = llama_c.llama_model_default_params

    def params():  # plain ggml-cpu kernels: no AMX / repacked weight layouts
        p = default_params()
        p.use_extra_bufts = False
        return p
    llama_c.llama_model_default_params = params
    llm = llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_batch=n_ctx, n_ubatch=n_ctx, n_threads=1,
                          n_threads_batch=1, logits_all=False, flash_attn=True, seed=0, verbose=False)
    llama_c.llama_model_default_params = default_params
    nv = llm.n_vocab()
    eog = {t for t in range(nv) if llama_c.llama_vocab_is_eog(llama_c.llama_model_get_vocab(llm.model), t)}

    def last():
        ptr = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
        return np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_float)), shape=(nv,)).copy()
    out = []
    for p in prompts:
        ids = llm.tokenize(p.encode(), add_bos=True, special=True)
        llm.reset()
        llm.eval(ids)
        lg = last()
        gen, margins = [], []
        for _ in range(n_gen):
            t = int(np.argmax(lg))
            top2 = np.partition(lg, -2)[-2:]
            gen.append(t)
            margins.append(float(top2.max() - top2.min()))
            if t in eog:
                break
            llm.eval([t])
            lg = last()
        out.append(dict(prompt_ids=ids, ids=gen, margins=margins, eog=bool(gen) and gen[-1] in eog))
    llm.close()
    return out


def ember_ids(ember, args, cmd, prompt, extra):
    r = subprocess.run([ember, cmd, "-m", args.model, "-p", prompt, "--special"] + extra,
                       capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"ember {cmd} failed: {r.stderr.strip()}")
    return [int(t) for t in r.stdout.split()]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--ember", default=os.path.join(here, "..", "build", "ember"))
    ap.add_argument("--isa", help="ember kernel set (ref, avx2, avx512, neon)")
    ap.add_argument("-n", type=int, default=64)
    ap.add_argument("-c", "--ctx", type=int, default=512, help="context size of both engines")
    ap.add_argument("--prompts", help="JSON list of prompt strings")
    ap.add_argument("--golden", help="also write llama.cpp's tokens and margins to this file")
    a = ap.parse_args()
    prompts = json.load(open(a.prompts)) if a.prompts else PROMPTS
    isa = ["--isa", a.isa] if a.isa else []
    ref = llama_greedy(a.model, prompts, a.n, a.ctx)
    if a.golden:
        with open(a.golden, "w") as f:
            f.write(f"# llama.cpp (llama-cpp-python {llama_cpp.__version__}) greedy tokens for "
                    f"{os.path.basename(a.model)}: scripts/greedy_vs_llamacpp.py -c {a.ctx} -n {a.n}\n")
            for i, (p, r) in enumerate(zip(prompts, ref)):
                f.write(f"\nname: p{i}\nprompt_b64: {base64.b64encode(p.encode()).decode()}\nparse_special: 1\n"
                        f"prompt_ids: {' '.join(map(str, r['prompt_ids']))}\ngen_ids: {' '.join(map(str, r['ids']))}\n"
                        f"margins: {' '.join('%.4f' % m for m in r['margins'])}\nmin_margin: {min(r['margins']):.4f}\n")
    identical = bad = 0
    for p, r in zip(prompts, ref):
        toks = ember_ids(a.ember, a, "tokenize", p, [])
        ids = ember_ids(a.ember, a, "run", p, ["--temp", "0", "-n", str(a.n), "--ids", "-c", str(a.ctx)] + isa)
        want = r["ids"]
        if r["eog"] and ids == want[:-1]:
            ids = want  # `ember run` stops at an end-of-generation token without printing it
        n = min(len(ids), len(want))
        div = next((i for i in range(n) if ids[i] != want[i]), None)
        if div is None and len(ids) < len(want):
            div = len(ids)  # ember ended there (an end-of-generation token), llama.cpp went on
        if toks != r["prompt_ids"]:
            bad += 1
            what = f"prompt tokens differ: ember {toks[:10]} llama.cpp {r['prompt_ids'][:10]}"
        elif div is None and len(ids) == len(want):
            identical += 1
            what = "identical"
        elif div is None:
            bad += 1
            what = f"lengths differ: ember {len(ids)}, llama.cpp {len(want)}"
        else:
            m = r["margins"][div]
            tie = m <= NEAR_TIE
            bad += not tie
            what = (f"diverges at step {div} (ember {ids[div] if div < len(ids) else 'EOG'}, llama.cpp {want[div]}), llama.cpp margin "
                    f"{m:.3f}: {'near-tie' if tie else 'NOT a near-tie'}")
        print(f"{p[:44]!r:48} {len(r['prompt_ids']):4d}+{len(want):2d} tokens  {what}")
    print(f"{os.path.basename(a.model)}{' --isa ' + a.isa if a.isa else ''}: {identical}/{len(prompts)} identical, "
          f"{len(prompts) - identical - bad} near-tie divergences, {bad} failures")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
