#!/usr/bin/env python3
"""Records llama.cpp's greedy output for SmolLM2-135M-Instruct (Q4_1) as golden data for ember.

Makes:
  tests/golden/smollm2/greedy.txt            one block per prompt (format below)
  tests/golden/smollm2/<name>.logits.f32     for a few prompts: llama.cpp's logits at the last
                                             prompt position, 49152 float32 little-endian
Rerun (from the repository root; needs `pip install llama-cpp-python jinja2 gguf`, and the
model from scripts/fetch-model.sh):
    python3 scripts/make_smollm2_goldens.py [--model models/SmolLM2-135M-Instruct.Q4_1.gguf]

How: llama-cpp-python's low-level calls, n_ctx 512, one thread, flash attention on (what
llama.cpp's `-fa auto` picks on CPU), default F16 KV cache, logits of the last token only, and no "extra buffer types" (use_extra_bufts =
false: weights are not repacked for AMX/REPACK kernels, so the plain ggml-cpu vec_dot path
with Q8_1 activations is used; the AMX path also dies with SIGILL in this sandbox).  The prompt is tokenized by llama.cpp with
add_special=True (the model says add_bos_token=false, so no BOS is added) and special tokens
parsed only for the chat prompts; it is decoded as one batch, then 64 tokens are chosen by a
plain argmax over the float32 logits (no sampler, no penalties), each fed back one at a time;
EOS does not stop the loop.  Chat prompts are rendered from the GGUF's
tokenizer.chat_template with jinja2 (as Hugging Face renders it: trim_blocks, lstrip_blocks,
add_generation_prompt=True).

greedy.txt format: lines starting with '#' are comments; blocks separated by a blank line;
each line is "key: value".  Keys (readers should ignore keys they do not know):
  name:          short identifier (also the stem of the .logits.f32 file when there is one)
  prompt_b64:    base64 of the UTF-8 prompt text
  parse_special: 1 when special tokens (<|im_start|> ...) in the prompt were parsed, else 0
  prompt_ids:    prompt token ids, space-separated
  gen_ids:       the 64 greedy ids, space-separated
  gen_text_b64:  base64 of llama.cpp's detokenization of gen_ids (special tokens rendered)
  margins:       per generated step, top-1 minus top-2 logit (near 0 = near-tie; compare
                 those steps with a tolerance)
  min_margin:    the smallest of margins
  stable_steps:  how many leading gen_ids llama.cpp itself reproduces under every variant in
                 VARIANTS (f32 KV cache, flash attention off, prompt fed 1 token per ubatch);
                 64 = all.  Past that step the ids depend on rounding details (f16 KV etc.), so
                 an engine with other numerics should match exactly only that far, and
                 teacher-force (feed gen_ids) with a margin tolerance for the rest
  gen_ids_kv_f32, min_margin_kv_f32: the same greedy run with an F32 KV cache
  logits_file, logits_file_kv_f32: present when the last-prompt-position logits were saved
                 (f16 KV cache / F32 KV cache)
"""
import argparse
import base64
import os
import sys

import numpy as np
import jinja2.sandbox
import llama_cpp
import llama_cpp.llama_cpp as llama_c
from gguf import GGUFReader

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llamacpp_ref import last_logits, margin  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
OUT = os.path.join(ROOT, "tests", "golden", "smollm2")
N_GEN = 64
N_CTX = 512

# (name, text or chat messages, save logits)
PROMPTS = [
    ("capital", "The capital of France is", True),
    ("fibonacci", "def fibonacci(n):", True),
    ("primes", "Here is a list of the first prime numbers: 2, 3, 5, 7,", False),
    ("french", "Il était une fois, dans un petit village près de la mer, une fille qui", False),
    ("japanese", "日本の首都は東京です。東京は", False),
    ("whitespace", "  Hello   world!\n\n\tTabs,  spaces and\nnewlines:", False),
    ("chat_capital", [{"role": "system", "content": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"},
                      {"role": "user", "content": "What is the capital of France?"}], True),
    ("chat_haiku", [{"role": "user", "content": "Write a haiku about the ocean."}], False),
    ("chat_multiturn", [{"role": "user", "content": "Hi! What is 2+2?"},
                        {"role": "assistant", "content": "2+2 is 4."},
                        {"role": "user", "content": "And 3+5?"}], False),
    ("story", "Once upon a time, there was a little robot who", False),
    ("recipe", "To make a simple tomato soup, you will need:", False),
    ("python_loop", "for i in range(10):\n    print(", False),
    ("chat_sky", [{"role": "user", "content": "Why is the sky blue?"}], False),
    ("chat_list", [{"role": "system", "content": "You are a concise assistant."},
                   {"role": "user", "content": "List three fruits."}], False),
    ("digits", "1, 2, 3, 4, 5, 6, 7, 8,", False),
]


def no_extra_bufts():
    """Makes Llama() load weights without extra buffer types (AMX, repacked layouts)."""
    default_params = llama_c.llama_model_default_params

    def params():
        p = default_params()
        p.use_extra_bufts = False
        return p
    llama_c.llama_model_default_params = params


# settings under which llama.cpp is re-run to find how far each golden is robust to rounding
VARIANTS = {
    "kv_f32": dict(type_k=0, type_v=0),          # GGML_TYPE_F32 K and V cache
    "no_flash_attn": dict(flash_attn=False),
    "ubatch1": dict(n_batch=1, n_ubatch=1),      # prompt decoded one token at a time
}


def load(model, **overrides):
    kw = dict(n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX, n_threads=1, n_threads_batch=1,
              logits_all=False, flash_attn=True, seed=0, verbose=False)
    kw.update(overrides)
    return llama_cpp.Llama(model_path=model, **kw)


def chat_template(model_path):
    r = GGUFReader(model_path)
    f = r.fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def render_chat(template, messages):
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(template).render(messages=messages, add_generation_prompt=True)


def greedy(llm, prompt_ids):
    """Decodes the prompt as one batch, then N_GEN argmax steps; returns (ids, margins, prompt logits)."""
    llm.reset()
    llm.eval(prompt_ids)
    logits = last_logits(llm)
    prompt_logits = logits
    ids, margins = [], []
    for _ in range(N_GEN):
        tok = int(np.argmax(logits))
        ids.append(tok)
        margins.append(margin(logits))
        llm.eval([tok])
        logits = last_logits(llm)
    return ids, margins, prompt_logits


def main():
    ap = argparse.ArgumentParser(description="llama.cpp greedy goldens for SmolLM2")
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    template = chat_template(a.model)
    no_extra_bufts()

    # the reference run: tokenize, then greedy-decode every prompt
    llm = load(a.model)
    runs = []  # (name, text, special, save, prompt_ids, ids, margins, prompt logits, gen text)
    for name, prompt, save in PROMPTS:
        special = not isinstance(prompt, str)
        text = render_chat(template, prompt) if special else prompt
        prompt_ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)
        ids, margins, plogits = greedy(llm, prompt_ids)
        gen_text = llm.detokenize(ids, special=True)
        runs.append((name, text, special, save, prompt_ids, ids, margins, plogits, gen_text))
        print(f"{name}: {len(prompt_ids)} prompt ids, min margin {min(margins):.4f} "
              f"at step {int(np.argmin(margins))}: {gen_text.decode('utf-8', 'replace')!r}")
    del llm

    # the same prompts under other numerics: how far is each golden robust?
    stable = {r[0]: N_GEN for r in runs}
    kv_f32 = {}
    for vname, overrides in VARIANTS.items():
        vllm = load(a.model, **overrides)
        for name, _, _, _, prompt_ids, ids, *_ in runs:
            vids, vmargins, vplogits = greedy(vllm, prompt_ids)
            if vname == "kv_f32":
                kv_f32[name] = (vids, vmargins, vplogits)
            first = next((i for i in range(N_GEN) if vids[i] != ids[i]), N_GEN)
            stable[name] = min(stable[name], first)
            print(f"  {vname:10s} {name}: {'same' if first == N_GEN else f'diverges at step {first}'}")
        del vllm

    lines = [
        "# SmolLM2-135M-Instruct.Q4_1.gguf greedy goldens made by scripts/make_smollm2_goldens.py",
        f"# llama-cpp-python {llama_cpp.__version__} (bundled llama.cpp), n_ctx {N_CTX}, 1 thread, "
        "flash_attn on, KV cache f16, use_extra_bufts off, prompt as one batch then 1 token per step, "
        f"pure argmax, {N_GEN} tokens, no EOS stop",
        f"# system_info: {llama_cpp.llama_print_system_info().decode().strip()}",
        f"# stable_steps variants: {', '.join(f'{k} {v}' for k, v in VARIANTS.items())}",
        "# *_kv_f32 keys: the same run with an F32 KV cache (attention without f16 rounding)",
        "",
    ]
    for name, text, special, save, prompt_ids, ids, margins, plogits, gen_text in runs:
        vids, vmargins, vplogits = kv_f32[name]
        lines += [
            f"name: {name}",
            f"prompt_b64: {base64.b64encode(text.encode('utf-8')).decode()}",
            f"parse_special: {int(special)}",
            f"prompt_ids: {' '.join(map(str, prompt_ids))}",
            f"gen_ids: {' '.join(map(str, ids))}",
            f"gen_text_b64: {base64.b64encode(gen_text).decode()}",
            f"margins: {' '.join(f'{m:.4f}' for m in margins)}",
            f"min_margin: {min(margins):.6f}",
            f"stable_steps: {stable[name]}",
            f"gen_ids_kv_f32: {' '.join(map(str, vids))}",
            f"min_margin_kv_f32: {min(vmargins):.6f}",
        ]
        if save:
            plogits.astype("<f4").tofile(os.path.join(OUT, f"{name}.logits.f32"))
            vplogits.astype("<f4").tofile(os.path.join(OUT, f"{name}.kv_f32.logits.f32"))
            lines += [f"logits_file: {name}.logits.f32", f"logits_file_kv_f32: {name}.kv_f32.logits.f32"]
        lines.append("")
    with open(os.path.join(OUT, "greedy.txt"), "w") as f:
        f.write("\n".join(lines))


if __name__ == "__main__":
    main()
