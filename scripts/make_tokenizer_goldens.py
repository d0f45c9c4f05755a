#!/usr/bin/env python3
"""make_tokenizer_goldens.py: writes tests/golden/tokenizer/smollm2.txt, the reference
tokenizations that tests/test_tokenizer.c checks ember against.

Reference: llama.cpp itself, through llama-cpp-python (`pip install llama-cpp-python`),
loading models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh) vocab-only.
With --hf it also cross-checks the plain-text cases against Hugging Face `transformers`
loading the same GGUF (AutoTokenizer.from_pretrained(dir, gguf_file=name)) and reports
disagreements (it does not write them; llama.cpp is the spec).

Format (one case per line, '#' starts a comment):
  T <add_special> <parse_special> <input as hex> : <ids, space separated>
  P <id> <special> <piece as hex>
Inputs are hex so any bytes (invalid UTF-8, NUL, newlines) survive.

Usage: python3 scripts/make_tokenizer_goldens.py [--model PATH] [--out PATH] [--hf]
"""
import argparse
import ctypes
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CASES = [
    "Hello world",
    "Hello, world! How are you today?",
    " Hello world",
    "  leading spaces and trailing   ",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure you've heard they'll say it's fine, we'd've done THAT'S IT'S",
    "numbers: 0 1 12 123 1234 12345 3.14159 1,000,000 2024-01-01",
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "for (int i = 0; i < n; i++) { x[i] += y[i] * 2; }",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    "tabs\tand\ttabs\t\tdouble\n\n\nnewlines\r\nCRLF",
    "     five spaces then text",
    "\n",
    " ",
    "   ",
    "\t\t",
    "emoji: 😀 🚀🔥 👍🏽 👨‍👩‍👧‍👦 ❤️",
    "中文分词测试：今天天气很好。",
    "日本語のテキスト、カタカナとひらがな。",
    "한국어 텍스트입니다.",
    "Ελληνικά και Русский текст",
    "مرحبا بالعالم",
    "naïve café résumé façade Zürich",
    "math: ∑ x² ≤ ∞, α→β, ½ ¾",
    "URL https://example.com/path?q=1&r=two#frag",
    "email someone@example.org, @mention #hashtag",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n",
    "text <|endoftext|> more text",
    "<|im_start|><|im_end|><|im_start|>",
    "not special: <|im_start and im_end|> <| |>",
    "Mixed123Numbers456 and under_score_names camelCaseWords",
    "ALL CAPS SENTENCE WITH 'QUOTES' AND \"DOUBLE QUOTES\"",
    "...!!!???---___***",
    "a\u00a0non-breaking\u2003em-space\u3000ideographic",
    "zero\u200bwidth\u200djoiner",
    "",
]

# Raw byte cases (invalid UTF-8, NUL): llama.cpp turns bad bytes into U+FFFD.
BYTE_CASES = [
    b"bad \xff byte",
    b"\xc3\x28 invalid pair",
    b"trunc \xe2\x82",
    b"nul \x00 inside",
    b"\xed\xa0\x80 surrogate",
    b"\xc0\xaf overlong",
]

PIECE_IDS = [0, 1, 2, 3, 17, 198, 216, 260, 905, 19556, 2683, 30, 4093, 49151]


def token_to_piece(llm, tok, special):
    import llama_cpp
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, 256, 0, special)
    return buf.raw[:n]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "golden", "tokenizer", "smollm2.txt"))
    ap.add_argument("--hf", action="store_true", help="cross-check with transformers")
    args = ap.parse_args()

    import llama_cpp
    from llama_cpp import Llama
    llm = Llama(model_path=args.model, vocab_only=True, verbose=False)

    lines = ["# SmolLM2-135M-Instruct tokenizer goldens, made by scripts/make_tokenizer_goldens.py",
             "# reference: llama.cpp via llama-cpp-python %s" % llama_cpp.__version__,
             "# T <add_special> <parse_special> <input hex> : <ids>",
             "# P <id> <special> <piece hex>"]
    inputs = [c.encode("utf-8") for c in CASES] + BYTE_CASES
    for b in inputs:
        for add, special in ((0, 0), (0, 1), (1, 1)):
            ids = llm.tokenize(b, add_bos=bool(add), special=bool(special))
            lines.append("T %d %d %s : %s" % (add, special, b.hex(), " ".join(map(str, ids))))
    for tok in PIECE_IDS:
        for special in (0, 1):
            lines.append("P %d %d %s" % (tok, special, token_to_piece(llm, tok, bool(special)).hex()))
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d lines)" % (args.out, len(lines)))

    if args.hf:
        from transformers import AutoTokenizer
        d, name = os.path.split(args.model)
        hf = AutoTokenizer.from_pretrained(d, gguf_file=name)
        bad = 0
        for c in CASES:
            a = llm.tokenize(c.encode("utf-8"), add_bos=False, special=True)
            h = hf.encode(c, add_special_tokens=False)
            if a != h:
                bad += 1
                print("HF differs on %r:\n  llama.cpp %s\n  HF        %s" % (c, a, h))
        print("transformers cross-check: %d/%d agree" % (len(CASES) - bad, len(CASES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
