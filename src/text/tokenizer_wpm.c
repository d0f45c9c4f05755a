/* tokenizer_wpm.c: WordPiece ("bert" vocabularies) as llama.cpp's llm_tokenizer_wpm.
 *
 * llama.cpp's GGUF converter rewrites a BERT vocab so that word-initial pieces carry a
 * U+2581 prefix and "##" continuation pieces lose their "##". Tokenizing a word is then a
 * greedy longest match over "\u2581" + word, byte offsets, trying lengths up to the
 * longest token text + 1; if any position has no match, the whole word becomes [UNK].
 *
 * Words come from llama.cpp's preprocess, which we follow exactly (it is not HF's
 * BertNormalizer): each codepoint is replaced by the first codepoint of its NFD
 * decomposition (so accents vanish and Hangul syllables become their leading jamo);
 * whitespace ends a word; NUL, U+FFFD and category-C codepoints are dropped; the rest is
 * lowercased (simple mapping); punctuation, ASCII symbols and CJK ideographs are words of
 * their own. Invalid UTF-8 decodes to U+FFFD (and is therefore dropped). */
#include <stdlib.h>
#include <string.h>
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

#define WPM_SPACE "\xE2\x96\x81"  /* U+2581 marks the start of a word in the vocab */

/* The ranges of llama.cpp's is_chinese_char (HF's _is_chinese_char, with its 0x2B920). */
static int is_cjk(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* Greedy longest-match of one word (w[0..n) starts with U+2581). Appends ids, or [UNK]
 * alone when some position matches nothing. */
static void wpm_word(const em_vocab *v, const char *w, size_t n, em_ids *out) {
    const size_t start = out->n;
    for (size_t i = 0; i < n;) {
        size_t j = i + v->max_tok_len + 1 < n ? i + v->max_tok_len + 1 : n;
        int32_t id = -1;
        while (j > i && (id = em_vocab_lookup(v, w + i, j - i)) < 0) j--;
        if (id < 0) {
            out->n = start;  /* discard the word's pieces */
            break;
        }
        em_ids_push(out, id);
        i = j;
    }
    if (out->n == start) em_ids_push(out, v->unk);
}

typedef struct { char *b; size_t n, cap; int oom; } wbuf;

static void wb_put(wbuf *w, const char *s, size_t n) {
    if (w->oom) return;
    if (w->n + n > w->cap) {
        size_t cap = w->cap ? w->cap : 64;
        while (cap < w->n + n) cap *= 2;
        char *p = realloc(w->b, cap);
        if (!p) { w->oom = 1; return; }
        w->b = p;
        w->cap = cap;
    }
    memcpy(w->b + w->n, s, n);
    w->n += n;
}

/* Ends the current word (the buffer holds U+2581 and then its bytes) if it has any. */
static void flush_word(const em_vocab *v, wbuf *w, em_ids *out) {
    if (w->n > 3) wpm_word(v, w->b, w->n, out);
    w->n = 3;
}

int em_wpm_tokenize(const em_vocab *v, const char *text, size_t len, em_ids *out) {
    wbuf w = {0};
    wb_put(&w, WPM_SPACE, 3);
    for (size_t off = 0; off < len && !w.oom;) {
        size_t adv;
        uint32_t cp = em_unfd_first(em_utf8_decode(text + off, len - off, &adv));
        off += adv;
        const unsigned fl = em_uflags(cp);
        if (fl & EM_UF_SPACE) { flush_word(v, &w, out); continue; }
        if (cp == 0 || cp == EM_UNICODE_REPLACEMENT || (fl & EM_UF_CONTROL)) continue;
        char u[4];
        int k = em_utf8_encode(em_utolower(cp), u);
        if ((fl & EM_UF_PUNCT) || (cp < 0x7F && (fl & EM_UF_SYMBOL)) || is_cjk(cp)) {
            flush_word(v, &w, out);
            wb_put(&w, u, (size_t)k);
            flush_word(v, &w, out);
        } else {
            wb_put(&w, u, (size_t)k);
        }
    }
    if (!w.oom) flush_word(v, &w, out);
    free(w.b);
    return w.oom || out->oom ? -1 : 0;
}
