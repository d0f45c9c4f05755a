#!/usr/bin/env python3
"""make_chat_goldens.py: renders conversations with the official chat templates in
tests/golden/chat/templates/ using transformers' own renderer (the function behind
tokenizer.apply_chat_template: a sandboxed Jinja2 environment with trim_blocks,
lstrip_blocks, raise_exception and strftime_now), and writes tests/golden/chat/goldens.txt,
which tests/test_chat.c requires ember to reproduce byte for byte.

Each template is rendered with its model's bos_token/eos_token (BOS_EOS below), for every
conversation in CONVERSATIONS, with add_generation_prompt off and on. A conversation the
template rejects (raise_exception: e.g. a system message for Gemma or Mistral v0.2) is
recorded as a comment and not tested. Llama 3.2 takes today's date from strftime_now; the
goldens fix it with date_string="26 Jul 2024" (the test passes the same date to ember).

Format (hex keeps every byte):
  C <template file> <add_generation_prompt> <number of messages>
  M <role> <content hex>          (that many lines)
  R <rendered text hex>

Usage: python3 scripts/make_chat_goldens.py
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "tests", "golden", "chat")

BOS_EOS = {
    "smollm2.jinja": ("<|im_start|>", "<|im_end|>"),
    "chatml.jinja": ("<s>", "<|im_end|>"),
    "qwen2.5.jinja": ("", "<|im_end|>"),
    "qwen3.jinja": ("", "<|im_end|>"),
    "llama2.jinja": ("<s>", "</s>"),
    "llama3.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.1.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama3.2.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "mistral-v0.2.jinja": ("<s>", "</s>"),
    "mistral-nemo.jinja": ("<s>", "</s>"),
    "zephyr.jinja": ("<s>", "</s>"),
    "phi3-mini.jinja": ("<s>", "<|endoftext|>"),
    "phi3.5.jinja": ("<s>", "<|endoftext|>"),
    "gemma2.jinja": ("<bos>", "<eos>"),
}

SYS = ("system", "You are a helpful assistant")
CONVERSATIONS = [
    [("user", "Hello")],
    [SYS, ("user", "Hello")],
    [SYS, ("user", "Hello"), ("assistant", "Hi there"), ("user", "Who are you"),
     ("assistant", "   I am an assistant   "), ("user", "Another question")],
    [("user", "Hello"), ("assistant", "Hi there"), ("user", "Who are you"), ("assistant", "An assistant.")],
    [("system", "  Be brief.\n"), ("user", "  spaces around \n\n"), ("assistant", "\nMulti\nline\n"),
     ("user", "日本語 😀 <b>&amp;</b> {{ not jinja }} {% raw %}")],
    [("user", "What is 2+2?"), ("assistant", "<think>\nLet me add.\n</think>\n\n4"),
     ("user", "And 3+3?"), ("assistant", "<think>\nsimple\n</think>\n6")],
    [("user", "What is 2+2?"), ("assistant", "<think>\nLet me add.\n</think>\n\n4"), ("user", "And 3+3?")],
    [("system", ""), ("user", "empty system")],
]


def render(template, conv, add_gen, bos, eos):
    from transformers.utils.chat_template_utils import render_jinja_template
    msgs = [{"role": r, "content": c} for r, c in conv]
    out, _ = render_jinja_template(conversations=[msgs], chat_template=template,
                                   add_generation_prompt=add_gen, bos_token=bos, eos_token=eos,
                                   date_string="26 Jul 2024")
    return out[0]


def main():
    import transformers
    lines = ["# Chat template goldens made by scripts/make_chat_goldens.py with transformers %s" %
             transformers.__version__,
             "# C <template> <add_generation_prompt> <n messages> / M <role> <hex> / R <hex>"]
    n = 0
    for name in sorted(BOS_EOS):
        with open(os.path.join(DIR, "templates", name), encoding="utf-8") as f:
            template = f.read()
        bos, eos = BOS_EOS[name]
        for ci, conv in enumerate(CONVERSATIONS):
            for add_gen in (0, 1):
                try:
                    out = render(template, conv, bool(add_gen), bos, eos)
                except Exception as e:  # the template refuses this conversation
                    lines.append("# %s conversation %d: %s" % (name, ci, str(e).splitlines()[0]))
                    continue
                lines.append("C %s %d %d" % (name, add_gen, len(conv)))
                for role, content in conv:
                    lines.append("M %s %s" % (role, content.encode("utf-8").hex()))
                lines.append("R %s" % out.encode("utf-8").hex())
                n += 1
    with open(os.path.join(DIR, "goldens.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d cases)" % (os.path.join(DIR, "goldens.txt"), n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
