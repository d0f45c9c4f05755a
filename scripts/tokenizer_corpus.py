#!/usr/bin/env python3
"""tokenizer_corpus.py: the text the tokenizer goldens are made from (imported by
scripts/make_tokenizer_goldens.py; run alone it prints the corpus size).

build_corpus() assembles a varied text of about 290 KB: source code (Python's standard
library and C headers installed on this machine), prose (the docstrings of Python's
builtins), sentences in many scripts, text made of random assigned codepoints from many
Unicode blocks, emoji (ZWJ sequences, skin tones, flags, keycaps, variation selectors),
whitespace runs (tabs, CR/LF, NBSP, ideographic and other Unicode spaces), numbers in
several digit systems, and English contractions in every case. A seeded PRNG makes it
deterministic for a given Python; the corpus is committed next to its goldens, so tests
never need Python, and regenerating on another Python merely yields a new corpus.

The hostile inputs (1 MB without spaces, random bytes with NULs and invalid UTF-8) are
not stored: hostile(name) builds them with a 32-bit LCG that tests/test_tokenizer.c
reproduces byte for byte (see the HOSTILE table there).
"""
import os
import random
import sys
import sysconfig
import unicodedata

CODE_FILES_PY = ["textwrap.py", "heapq.py", "bisect.py", "colorsys.py", "json/encoder.py"]
CODE_FILES_C = ["/usr/include/string.h"]

SENTENCES = [
    "The quick brown fox jumps over the lazy dog while 3 ducks watch.",
    "Der Fluß fließt schnell; Größe, Übermut und Äpfel sind schön.",
    "L'été dernier, nous étions à Paris — c'était magnifique, n'est-ce pas ?",
    "¿Dónde está la biblioteca? ¡Qué día tan bonito! Año, niño, señor.",
    "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "Türkçe: İstanbul'da ılık bir gün; şu çiçekler güzel, değil mi?",
    "Tiếng Việt: Cửa Việt, người ta nói rằng học hỏi không bao giờ muộn.",
    "Русский: Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Українська: Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!",
    "Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Καλημέρα κόσμε!",
    "עברית: דג סקרן שט בים מאוכזב ולפתע מצא חברה.",
    "العربية: نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر.",
    "فارسی: به نام خداوند جان و خرد، کزین برتر اندیشه برنگذرد.",
    "हिन्दी: ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले।",
    "বাংলা: আমি বাংলায় গান গাই, আমি বাংলার গান গাই।",
    "தமிழ்: யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்.",
    "ไทย: เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    "ភាសាខ្មែរ: កាន់តែពិសេសអាចខលចេញ",
    "ქართული: ვეპხის ტყაოსანი შოთა რუსთაველი",
    "Հայերեն: Բարեւ աշխարհ, ինչպե՞ս ես։",
    "አማርኛ: ሰላም ለዓለም፤ እንዴት ነህ?",
    "中文：我能吞下玻璃而不伤身体。今天天气很好，我们去公园散步吧！",
    "繁體中文：學而時習之，不亦說乎？有朋自遠方來，不亦樂乎？",
    "日本語：いろはにほへと ちりぬるを わかよたれそ つねならむ。カタカナ、ｶﾀｶﾅ、漢字。",
    "한국어: 키스의 고유조건은 입술끼리 만나야 하고 특별한 기술은 필요치 않다.",
    "Monotonic ℌ𝔢𝔩𝔩𝔬 𝐛𝐨𝐥𝐝 𝘪𝘵𝘢𝘭𝘪𝘤 ｆｕｌｌｗｉｄｔｈ Ⓒⓘⓡⓒⓛⓔⓓ ˢᵘᵖᵉʳ",
    "Math: ∀x∈ℝ, ∃y: x² + y² ≤ ∞; ∑ᵢ aᵢ ≈ π·r²; α→β ⇒ γ ≠ δ; ½ ¾ ⅞ √2.",
    "Combining: e\u0301 a\u0308 n\u0303 Z\u0335\u0361a\u0337lg\u0336o\u0338 and \u200bzero\u200dwidth\u2060joiner\ufeffbom.",
]

EMOJI = ["😀", "😂", "🥲", "🤖", "🚀", "🔥", "👍", "👍🏽", "👍🏿", "❤️", "❤", "✅", "⚠️", "🇺🇸", "🇯🇵",
         "🇩🇪", "🏳️‍🌈", "👨‍👩‍👧‍👦", "👩🏾‍💻", "🧑‍🚀", "😶‍🌫️", "1️⃣", "#️⃣", "🦙", "🐍", "🌍", "™", "©️",
         "🫠", "🧬", "🎉🎉🎉", "💯"]

CONTRACTIONS = ["I'm", "you're", "he's", "she'd", "it's", "we've", "they'll", "don't", "can't",
                "won't", "Y'all", "I'M", "YOU'RE", "IT'S", "WE'VE", "THEY'LL", "DON'T", "o'clock",
                "rock'n'roll", "'tis", "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "’s", "they’re",
                "it’s", "''", "'''", "l'homme", "dell'arte"]

SPACES = [" ", "  ", "   ", "    ", "\t", "\t\t", "\n", "\n\n", "\n\n\n", "\r\n", "\r\n\r\n", " \n",
          "\n ", " \t \n", "\u00a0", "\u3000", "\u2003", "\u2009", "\u202f", "\u205f", "\u1680",
          "\u2028", "\u0085", "\x0b", "\x0c", "                "]

DIGIT_ZEROS = [0x30, 0x660, 0x6F0, 0x966, 0x9E6, 0xE50, 0xFF10, 0x1D7CE]

# Blocks to draw random assigned codepoints from (letters, marks, symbols of many kinds).
BLOCKS = [(0x00A0, 0x024F), (0x0370, 0x03FF), (0x0400, 0x04FF), (0x0530, 0x058F),
          (0x0590, 0x05FF), (0x0600, 0x06FF), (0x0900, 0x097F), (0x0E00, 0x0E7F),
          (0x10A0, 0x10FF), (0x1100, 0x11FF), (0x1E00, 0x1EFF), (0x2000, 0x206F),
          (0x2100, 0x214F), (0x2190, 0x21FF), (0x2200, 0x22FF), (0x2500, 0x257F),
          (0x3040, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xFF00, 0xFFEF),
          (0x1D400, 0x1D7FF), (0x1F300, 0x1F5FF), (0x20000, 0x2A6DF)]


def _read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return ""


def _code():
    lib = sysconfig.get_paths()["stdlib"]
    parts = [_read(os.path.join(lib, name)) for name in CODE_FILES_PY]
    parts += [_read(p) for p in CODE_FILES_C]
    return "\n".join(p for p in parts if p)


def _prose():
    import builtins
    docs = []
    for name in sorted(dir(builtins)):
        doc = getattr(getattr(builtins, name), "__doc__", None)
        if isinstance(doc, str) and not name.startswith("_"):
            docs.append(name + ": " + doc)
    return "\n\n".join(docs)


def _random_script_text(rng, n_words):
    words = []
    for _ in range(n_words):
        lo, hi = rng.choice(BLOCKS)
        w = []
        while len(w) < rng.randint(1, 9):
            c = chr(rng.randint(lo, hi))
            if unicodedata.category(c) not in ("Cn", "Cs", "Co"):
                w.append(c)
        words.append("".join(w))
    return " ".join(words)


def _number(rng):
    z = rng.choice(DIGIT_ZEROS)
    digits = "".join(chr(z + rng.randint(0, 9)) for _ in range(rng.randint(1, 14)))
    kind = rng.randint(0, 5)
    if kind == 0:
        return digits + "." + str(rng.randint(0, 99999))
    if kind == 1:
        return "%d-%02d-%02d" % (rng.randint(1900, 2100), rng.randint(1, 12), rng.randint(1, 28))
    if kind == 2:
        return "{:,}".format(rng.randint(0, 10 ** 12))
    if kind == 3:
        return "+1 (%03d) %03d-%04d" % (rng.randint(0, 999), rng.randint(0, 999), rng.randint(0, 9999))
    return digits


def _mixed(rng, n):
    """Words, numbers, emoji, contractions and punctuation joined by random whitespace."""
    vocab_words = ("the of and to in is you that it he was for on are as with his they at be this "
                   "have from or one had by word but not what all were we when your can said there "
                   "use an each which she do how their if will up other about out many then them").split()
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            w = rng.choice(vocab_words)
            w = w.upper() if rng.random() < 0.1 else w.capitalize() if rng.random() < 0.2 else w
        elif r < 0.6:
            w = _number(rng)
        elif r < 0.7:
            w = rng.choice(EMOJI) * rng.randint(1, 3)
        elif r < 0.8:
            w = rng.choice(CONTRACTIONS)
        elif r < 0.9:
            w = "".join(rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~…—–«»“”‘’¿¡§¶•")
                        for _ in range(rng.randint(1, 4)))
        else:
            w = rng.choice(SENTENCES)
        out.append(w)
        out.append(rng.choice(SPACES) if rng.random() < 0.35 else " ")
    return "".join(out)


def build_corpus():
    rng = random.Random(20240601)
    parts = [_code(), _prose(), "\n".join(SENTENCES * 3)]
    for _ in range(3):
        parts.append(_random_script_text(rng, 1500))
        parts.append(_mixed(rng, 2000))
    parts.append("".join(rng.choice(SPACES) for _ in range(3000)))
    return "\n\n".join(parts)


# ---- hostile inputs: a 32-bit LCG shared with tests/test_tokenizer.c ----

NOSPACE_ALPHABET = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789") +
                    list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") +
                    ["é", "ß", "ñ", "ø", "я", "ж", "中", "文", "字", "の", "한", "😀", "🚀", "👍🏽", "€", "½"])


def _lcg(x):
    return (x * 1103515245 + 12345) & 0xFFFFFFFF


def hostile(name):
    """The bytes of one hostile input (names as in tests/test_tokenizer.c)."""
    x = 1
    out = bytearray()
    if name == "nospace_1m":      # 1 MiB of mixed characters, no whitespace at all
        alpha = [c.encode("utf-8") for c in NOSPACE_ALPHABET]
        while True:
            x = _lcg(x)
            c = alpha[(x >> 16) % len(alpha)]
            if len(out) + len(c) > 1 << 20:
                break
            out += c
    elif name == "letters_1m":    # one 1 MiB word of lowercase letters (BPE worst case)
        for _ in range(1 << 20):
            x = _lcg(x)
            out.append(ord("a") + (x >> 16) % 26)
    elif name == "nul_text":      # text with NUL bytes and control characters mixed in
        words = [b"alpha", b"beta", b"\x00", b"\x00\x00", b" ", b"\x01\x02", b"gamma delta", b"\n"]
        for _ in range(20000):
            x = _lcg(x)
            out += words[(x >> 16) % len(words)]
    elif name == "bytes_64k":     # random bytes: NULs, invalid and truncated UTF-8
        # Lead bytes F4..F7 can start a 4-byte form above U+10FFFF, on which llama.cpp (the
        # reference here) throws an uncaught exception; they become FF (also invalid).
        for _ in range(1 << 16):
            x = _lcg(x)
            b = (x >> 16) & 0xFF
            out.append(0xFF if 0xF4 <= b <= 0xF7 else b)
    else:
        raise KeyError(name)
    return bytes(out)


HOSTILE = ["nospace_1m", "letters_1m", "nul_text", "bytes_64k"]

if __name__ == "__main__":
    c = build_corpus()
    print("corpus: %d chars, %d bytes" % (len(c), len(c.encode("utf-8"))))
    for h in HOSTILE:
        print(h, len(hostile(h)))
    sys.exit(0)
