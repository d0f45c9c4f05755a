#!/usr/bin/env python3
"""make_tokenizer_goldens.py: writes the reference tokenizations in tests/golden/tokenizer/
that tests/test_tokenizer.c checks ember against.

1. smollm2.txt and bert-bge.txt: hand-picked strings (special tokens, odd bytes) and
   token pieces. Reference: llama.cpp itself, through llama-cpp-python, loading
   models/SmolLM2-135M-Instruct.Q4_1.gguf (scripts/fetch-model.sh) and the bert-bge vocab
   fixture (../shared/fixtures/vocab) vocab-only.
2. smollm2_corpus.txt + smollm2_corpus.u16: a ~290 KB varied corpus (see
   scripts/tokenizer_corpus.py) and its ids as little-endian uint16. Reference: Hugging
   Face `tokenizers`, with SmolLM2's tokenizer rebuilt from the GGUF (hf_smollm2 below).
3. smollm2_hostile.txt: ids of the hostile inputs of tokenizer_corpus.hostile() (1 MiB
   without spaces, a 1 MiB single word, NUL bytes, random bytes), stored as count +
   FNV-1a-64 of the ids + the first ids. Reference: HF `tokenizers` where the input is
   valid UTF-8; llama.cpp for the random bytes, because HF only accepts str (invalid UTF-8
   cannot reach it, and no Python decoding reproduces llama.cpp's per-byte U+FFFD).
Every HF reference is cross-checked against llama.cpp; the script reports disagreements.

Why not transformers' GGUF loader (AutoTokenizer.from_pretrained(dir, gguf_file=...)):
it imports torch (not installed here), and it would give SmolLM2 the plain GPT-2 split
because it has no mapping for tokenizer.ggml.pre "smollm". SmolLM2's tokenizer.json is
BPE (no normalizer) with pre-tokenizer Sequence[Digits(individual_digits=True),
ByteLevel(add_prefix_space=False, use_regex=True)] and its control tokens added as
special tokens; hf_smollm2 builds exactly that from the GGUF vocab and merges.

Format of the .txt goldens (one case per line, '#' starts a comment):
  T <add_special> <parse_special> <input as hex> : <ids, space separated>
  P <id> <special> <piece as hex>
  H <name> <n_ids> <fnv1a64 of the ids as int32 LE, hex> : <first ids>
Inputs are hex so any bytes (invalid UTF-8, NUL, newlines) survive.

Usage: python3 scripts/make_tokenizer_goldens.py [--model PATH] [--fixtures DIR]
"""
import argparse
import ctypes
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join(ROOT, "tests", "golden", "tokenizer")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tokenizer_corpus  # noqa: E402

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


BERT_PIECE_IDS = [0, 100, 101, 102, 103, 999, 1012, 2088, 7592, 29991, 30521]


def token_to_piece(llm, tok, special):
    import llama_cpp
    vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
    buf = ctypes.create_string_buffer(256)
    n = llama_cpp.llama_token_to_piece(vocab, tok, buf, 256, 0, special)
    return buf.raw[:n]


def load_llama(path):
    from llama_cpp import Llama
    return Llama(model_path=path, vocab_only=True, verbose=False)


def write_cases(llm, out, title, piece_ids):
    import llama_cpp
    lines = ["# %s tokenizer goldens, made by scripts/make_tokenizer_goldens.py" % title,
             "# reference: llama.cpp via llama-cpp-python %s" % llama_cpp.__version__,
             "# T <add_special> <parse_special> <input hex> : <ids>",
             "# P <id> <special> <piece hex>"]
    inputs = [c.encode("utf-8") for c in CASES] + BYTE_CASES
    for b in inputs:
        for add, special in ((0, 0), (0, 1), (1, 1)):
            ids = llm.tokenize(b, add_bos=bool(add), special=bool(special))
            lines.append("T %d %d %s : %s" % (add, special, b.hex(), " ".join(map(str, ids))))
    for tok in piece_ids:
        for special in (0, 1):
            lines.append("P %d %d %s" % (tok, special, token_to_piece(llm, tok, bool(special)).hex()))
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s (%d lines)" % (out, len(lines)))


def hf_smollm2(model_path):
    """SmolLM2's HF tokenizer (see the module docstring), built from the GGUF."""
    import gguf
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    r = gguf.GGUFReader(model_path)
    toks = r.fields["tokenizer.ggml.tokens"].contents()
    merges = r.fields["tokenizer.ggml.merges"].contents()
    types = r.fields["tokenizer.ggml.token_type"].contents()
    bpe = models.BPE(vocab={t: i for i, t in enumerate(toks)},
                     merges=[tuple(m.split(" ", 1)) for m in merges])
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(toks, types) if ty == 3])  # 3: control
    return tok


def first_diff(a, b):
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def fnv1a64(ids):
    h = 0xCBF29CE484222325
    for byte in struct.pack("<%di" % len(ids), *ids):
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def cross_check(what, hf_ids, lc_ids):
    d = first_diff(hf_ids, lc_ids)
    if d is None:
        print("  %s: HF tokenizers and llama.cpp agree (%d ids)" % (what, len(hf_ids)))
    else:
        print("  %s: HF and llama.cpp DIFFER at id %d: %s vs %s" %
              (what, d, hf_ids[d:d + 8], lc_ids[d:d + 8]))
    return d is None


def write_corpus(hf, llm):
    import tokenizers
    text = tokenizer_corpus.build_corpus()
    data = text.encode("utf-8")
    ids = hf.encode(text, add_special_tokens=False).ids
    cross_check("corpus", ids, llm.tokenize(data, add_bos=False, special=True))
    assert max(ids) < 65536
    with open(os.path.join(GOLDEN, "smollm2_corpus.txt"), "wb") as f:
        f.write(data)
    with open(os.path.join(GOLDEN, "smollm2_corpus.u16"), "wb") as f:
        f.write(struct.pack("<%dH" % len(ids), *ids))
    print("wrote smollm2_corpus.txt (%d bytes) and .u16 (%d ids, HF tokenizers %s)" %
          (len(data), len(ids), tokenizers.__version__))


def write_hostile(hf, llm):
    import llama_cpp
    import tokenizers
    lines = ["# SmolLM2 ids of the hostile inputs of scripts/tokenizer_corpus.py (add_special 0,",
             "# parse_special 1), made by scripts/make_tokenizer_goldens.py. Reference: HF tokenizers",
             "# %s for valid UTF-8, llama.cpp (llama-cpp-python %s) for invalid UTF-8." %
             (tokenizers.__version__, llama_cpp.__version__),
             "# H <name> <n_ids> <fnv1a64 of ids as int32 LE> : <first 32 ids>"]
    for name in tokenizer_corpus.HOSTILE:
        data = tokenizer_corpus.hostile(name)
        lc = llm.tokenize(data, add_bos=False, special=True)
        try:
            ids = hf.encode(data.decode("utf-8"), add_special_tokens=False).ids
            cross_check(name, ids, lc)
            ref = "HF"
        except UnicodeDecodeError:
            ids, ref = lc, "llama.cpp"
        lines.append("# %s: %d bytes, reference %s" % (name, len(data), ref))
        lines.append("H %s %d %016x : %s" % (name, len(ids), fnv1a64(ids), " ".join(map(str, ids[:32]))))
    out = os.path.join(GOLDEN, "smollm2_hostile.txt")
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("wrote %s" % out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf"))
    ap.add_argument("--fixtures", default=os.path.join(ROOT, "..", "shared", "fixtures"))
    args = ap.parse_args()

    llm = load_llama(args.model)
    write_cases(llm, os.path.join(GOLDEN, "smollm2.txt"), "SmolLM2-135M-Instruct", PIECE_IDS)
    bert = os.path.join(args.fixtures, "vocab", "ggml-vocab-bert-bge.gguf")
    if os.path.exists(bert):
        write_cases(load_llama(bert), os.path.join(GOLDEN, "bert-bge.txt"), "bert-bge (WordPiece)",
                    BERT_PIECE_IDS)
    hf = hf_smollm2(args.model)
    bad = 0
    for c in CASES:
        a = llm.tokenize(c.encode("utf-8"), add_bos=False, special=True)
        h = hf.encode(c, add_special_tokens=False).ids
        if a != h:
            bad += 1
            print("HF differs on %r:\n  llama.cpp %s\n  HF        %s" % (c, a, h))
    print("HF tokenizers cross-check of the hand-picked strings: %d/%d agree" % (len(CASES) - bad, len(CASES)))
    write_corpus(hf, llm)
    write_hostile(hf, llm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
