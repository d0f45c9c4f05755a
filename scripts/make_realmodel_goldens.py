#!/usr/bin/env python3
"""Records llama.cpp's greedy output on the optional real models (scripts/fetch-models.sh)
as golden data for tests/test_realmodels.c.

Makes tests/golden/<name>/greedy.txt for each model named (default: the two Qwen2.5-Coder
files; `gemma3-270m` for the Gemma 3 file; `qwen2.5-coder-{0.5b,1.5b}-{q2_k,q3_k_m}` for the
requantized files of scripts/make-requant-models.sh, in models/requant/):
    python3 scripts/make_realmodel_goldens.py [NAME ...] [--model-dir models]
Needs `pip install llama-cpp-python==0.3.36 jinja2 gguf numpy` and the models from
scripts/fetch-models.sh. About 2 minutes for the 0.5B model and 5 for the 1.5B one.

How: the settings of make_smollm2_goldens.py (llama-cpp-python's low-level calls, one
thread, flash attention on, F16 KV cache, logits of the last token only, no extra buffer
types, so the plain ggml-cpu vec_dot path is used), except n_ctx 1024 so that one prompt
can be longer than Gemma 3's 512-token sliding window. Each prompt is tokenized by
llama.cpp with add_special=True (BOS only where the model asks for it) and special tokens
parsed only for the chat prompts; it is decoded as one batch, then 64 tokens are chosen by a
plain argmax over the float32 logits, each fed back one at a time; EOS does not stop the
loop. Chat prompts are rendered from the GGUF's tokenizer.chat_template with jinja2 (trim_blocks,
lstrip_blocks, add_generation_prompt=True; Gemma 3's published template where a gemma3 file has
none); a BOS the template writes itself is dropped from the text when the tokenizer adds one.

greedy.txt: the format of tests/golden/smollm2/greedy.txt ('#' comments, blocks separated
by a blank line, "key: value" lines): name, prompt_b64, parse_special, prompt_ids, gen_ids,
gen_text_b64, margins (per step, llama.cpp's top-1 minus top-2 logit), min_margin.
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
N_GEN = 64
N_CTX = 1024

# name -> file in models/ (the names and files of scripts/fetch-models.sh)
MODELS = {
    "qwen2.5-coder-1.5b": "Qwen2.5-Coder-1.5B-Instruct-Q4_K_M.gguf",
    "qwen2.5-coder-0.5b": "Qwen2.5-Coder-0.5B-Instruct-Q4_K_M.gguf",
    "gemma3-270m": "gemma-3-270m-Q4_K_M.gguf",
    # llama-quantize's requantizations of the Qwen files (scripts/make-requant-models.sh)
    "qwen2.5-coder-0.5b-q2_k": "requant/Qwen2.5-Coder-0.5B-Instruct-Q2_K.gguf",
    "qwen2.5-coder-0.5b-q3_k_m": "requant/Qwen2.5-Coder-0.5B-Instruct-Q3_K_M.gguf",
    "qwen2.5-coder-1.5b-q2_k": "requant/Qwen2.5-Coder-1.5B-Instruct-Q2_K.gguf",
    "qwen2.5-coder-1.5b-q3_k_m": "requant/Qwen2.5-Coder-1.5B-Instruct-Q3_K_M.gguf",
}
DEFAULT = ["qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b"]


def long_prompt():
    """A plain prompt of about 700 tokens (longer than Gemma 3's 512-token window)."""
    rows = [f"{i} squared is {i * i}." for i in range(1, 81)]
    return "A table of squares, one per line:\n" + "\n".join(rows) + "\n81 squared is"


# (name, text or chat messages)
PROMPTS = [
    ("capital", "The capital of France is"),
    ("fibonacci", "def fibonacci(n):"),
    ("c_strlen", "// C function to compute the length of a string\nsize_t my_strlen(const char *s) {"),
    ("sql", "SELECT name, email FROM users WHERE"),
    ("french", "Il était une fois, dans un petit village près de la mer, une fille qui"),
    ("japanese", "日本の首都は東京です。東京は"),
    ("whitespace", "  Hello   world!\n\n\tTabs,  spaces and\nnewlines:"),
    ("digits", "1, 2, 3, 4, 5, 6, 7, 8,"),
    ("long_squares", long_prompt()),
    ("chat_capital", [{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": "What is the capital of France?"}]),
    ("chat_reverse", [{"role": "user", "content": "Write a function that reverses a string in Python."}]),
    ("chat_linked_list", [{"role": "user", "content": "What is a linked list?"}]),
    ("chat_multiturn", [{"role": "user", "content": "Hi! What is 2+2?"},
                        {"role": "assistant", "content": "2+2 is 4."},
                        {"role": "user", "content": "And 3+5?"}]),
    ("chat_haiku", [{"role": "user", "content": "Write a haiku about the ocean."}]),
]


def no_extra_bufts():
    """Makes Llama() load weights without extra buffer types (AMX, repacked layouts)."""
    default_params = llama_c.llama_model_default_params

    def params():
        p = default_params()
        p.use_extra_bufts = False
        return p
    llama_c.llama_model_default_params = params


# Gemma 3's published chat template (its text-only part: a system message becomes the
# first user turn's prefix), for Gemma 3 files that carry none, such as the 270M one here.
GEMMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}"
    "{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{%- endif -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}"
)


def chat_template(model_path):
    r = GGUFReader(model_path)
    f = r.fields.get("tokenizer.chat_template")
    if f is not None:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    arch = r.fields["general.architecture"]
    if bytes(arch.parts[arch.data[0]]).decode() == "gemma3":
        return GEMMA3_TEMPLATE
    sys.exit(f"{model_path} has no tokenizer.chat_template")


def render_chat(template, messages, bos_text):
    def raise_exception(msg):
        raise jinja2.exceptions.TemplateError(msg)
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = raise_exception
    return env.from_string(template).render(messages=messages, add_generation_prompt=True,
                                            bos_token=bos_text)


def greedy(llm, prompt_ids):
    """Decodes the prompt as one batch, then N_GEN argmax steps; returns (ids, margins)."""
    llm.reset()
    llm.eval(prompt_ids)
    logits = last_logits(llm)
    ids, margins = [], []
    for _ in range(N_GEN):
        tok = int(np.argmax(logits))
        ids.append(tok)
        margins.append(margin(logits))
        llm.eval([tok])
        logits = last_logits(llm)
    return ids, margins


def make(name, model):
    out = os.path.join(ROOT, "tests", "golden", name)
    os.makedirs(out, exist_ok=True)
    template = chat_template(model)
    llm = llama_cpp.Llama(model_path=model, n_ctx=N_CTX, n_batch=N_CTX, n_ubatch=N_CTX, n_threads=1,
                          n_threads_batch=1, logits_all=False, flash_attn=True, seed=0, verbose=False)
    vocab = llama_c.llama_model_get_vocab(llm.model)
    adds_bos = bool(llama_c.llama_vocab_get_add_bos(vocab))
    bos = llama_c.llama_vocab_bos(vocab)
    bos_text = llm.detokenize([bos], special=True).decode("utf-8") if bos >= 0 else ""
    lines = [
        f"# {os.path.basename(model)} greedy goldens made by scripts/make_realmodel_goldens.py",
        f"# llama-cpp-python {llama_cpp.__version__} (bundled llama.cpp), n_ctx {N_CTX}, 1 thread, "
        "flash_attn on, KV cache f16, use_extra_bufts off, prompt as one batch then 1 token per step, "
        f"pure argmax, {N_GEN} tokens, no EOS stop",
        f"# system_info: {llama_cpp.llama_print_system_info().decode().strip()}",
        "",
    ]
    for pname, prompt in PROMPTS:
        special = not isinstance(prompt, str)
        text = render_chat(template, prompt, bos_text) if special else prompt
        if special and adds_bos and bos_text and text.startswith(bos_text):
            text = text[len(bos_text):]
        prompt_ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=special)
        ids, margins = greedy(llm, prompt_ids)
        gen_text = llm.detokenize(ids, special=True)
        print(f"{name} {pname}: {len(prompt_ids)} prompt ids, min margin {min(margins):.4f} "
              f"at step {int(np.argmin(margins))}: {gen_text.decode('utf-8', 'replace')[:60]!r}", flush=True)
        lines += [
            f"name: {pname}",
            f"prompt_b64: {base64.b64encode(text.encode('utf-8')).decode()}",
            f"parse_special: {int(special)}",
            f"prompt_ids: {' '.join(map(str, prompt_ids))}",
            f"gen_ids: {' '.join(map(str, ids))}",
            f"gen_text_b64: {base64.b64encode(gen_text).decode()}",
            f"margins: {' '.join(f'{m:.4f}' for m in margins)}",
            f"min_margin: {min(margins):.6f}",
            "",
        ]
    llm.close()
    with open(os.path.join(out, "greedy.txt"), "w") as f:
        f.write("\n".join(lines))


def main():
    ap = argparse.ArgumentParser(description="llama.cpp greedy goldens for the optional real models")
    ap.add_argument("names", nargs="*", default=DEFAULT, help=f"models ({', '.join(MODELS)})")
    ap.add_argument("--model-dir", default=os.path.join(ROOT, "models"))
    a = ap.parse_args()
    for n in a.names:
        if n not in MODELS:
            sys.exit(f"unknown model {n!r} (known: {', '.join(MODELS)})")
        if not os.path.exists(os.path.join(a.model_dir, MODELS[n])):
            how = "scripts/make-requant-models.sh" if MODELS[n].startswith("requant/") else f"scripts/fetch-models.sh {n}"
            sys.exit(f"{MODELS[n]} missing in {a.model_dir}: run {how}")
    no_extra_bufts()
    for n in a.names:
        make(n, os.path.join(a.model_dir, MODELS[n]))


if __name__ == "__main__":
    main()
