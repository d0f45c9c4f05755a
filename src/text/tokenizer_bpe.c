/* tokenizer_bpe.c: byte-level BPE ("gpt2" vocabularies) as llama.cpp's llm_tokenizer_bpe.
 *
 * Pipeline for one raw-text fragment: UTF-8 -> codepoints (bad bytes become U+FFFD, as
 * llama.cpp does) -> pre-tokenizer split into words -> each word re-encoded to UTF-8 and
 * mapped byte by byte through GPT-2's bytes_to_unicode -> rank-ordered merges -> ids.
 *
 * The pre-tokenizers are llama.cpp's regex lists, written as hand matchers. llama.cpp
 * runs a list of regexes in sequence, each one splitting every piece the previous one
 * produced into matches and the unmatched gaps between them. Some regexes have custom
 * C++ matchers there (gpt2, llama3); the others go through std::regex, either on a
 * "collapsed" text (each non-ASCII codepoint replaced by a byte naming its category) or
 * on wide chars with non-ASCII whitespace replaced by U+000B. Both reduce to: class tests
 * use the codepoint's category for \p{..}, and a non-ASCII whitespace codepoint matches
 * only \s. The stage kinds below reproduce those semantics (leftmost match, ordered
 * alternatives, backtracking only where the regexes can). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

/* ---- pre-tokenizer names ---- */

typedef struct { const char *name; int pre, add_bos, ignore_merges; } pre_name;

/* llama.cpp's tokenizer.ggml.pre names for the families implemented here. */
static const pre_name k_pre_names[] = {
    {"default", PRE_DEFAULT, 0, 0},
    {"llama3", PRE_LLAMA3, 1, 1}, {"llama-v3", PRE_LLAMA3, 1, 1}, {"llama-bpe", PRE_LLAMA3, 1, 1},
    {"falcon3", PRE_LLAMA3, 1, 1}, {"pixtral", PRE_LLAMA3, 1, 1},
    {"dbrx", PRE_LLAMA3, 0, 0}, {"smaug-bpe", PRE_LLAMA3, 0, 0},
    {"deepseek-llm", PRE_DEEPSEEK_LLM, 0, 0}, {"deepseek-coder", PRE_DEEPSEEK_CODER, 0, 0},
    {"falcon", PRE_FALCON, 0, 0},
    {"mpt", PRE_GPT2, 0, 0}, {"gpt-2", PRE_GPT2, 0, 0}, {"phi-2", PRE_GPT2, 0, 0},
    {"jina-es", PRE_GPT2, 0, 0}, {"jina-de", PRE_GPT2, 0, 0}, {"olmo", PRE_GPT2, 0, 0},
    {"jais", PRE_GPT2, 0, 0}, {"exaone4", PRE_GPT2, 0, 0}, {"roberta-bpe", PRE_GPT2, 0, 0},
    {"jina-v1-en", PRE_GPT2, 0, 0}, {"jina-v2-code", PRE_GPT2, 0, 0},
    {"jina-v2-es", PRE_GPT2, 0, 0}, {"jina-v2-de", PRE_GPT2, 0, 0}, {"trillion", PRE_GPT2, 0, 0},
    {"starcoder", PRE_STARCODER, 0, 0}, {"refact", PRE_STARCODER, 0, 0},
    {"command-r", PRE_STARCODER, 0, 0}, {"smollm", PRE_STARCODER, 0, 0},
    {"codeshell", PRE_STARCODER, 0, 0}, {"exaone", PRE_STARCODER, 0, 0},
    {"minerva-7b", PRE_STARCODER, 0, 0},
    {"qwen2", PRE_QWEN2, 0, 0}, {"deepseek-r1-qwen", PRE_QWEN2, 0, 0},
    {"stablelm2", PRE_QWEN2, 0, 0}, {"megrez", PRE_QWEN2, 0, 0}, {"hunyuan", PRE_QWEN2, 0, 0},
    {"qwen35", PRE_QWEN35, 0, 0},
    {"chatglm-bpe", PRE_CHATGLM4, 0, 0}, {"glm4", PRE_CHATGLM4, 0, 0},
};

int em_pre_from_name(const char *name, size_t len, int *pre, int *add_bos, int *ignore_merges) {
    for (size_t i = 0; i < sizeof k_pre_names / sizeof k_pre_names[0]; i++) {
        const pre_name *p = &k_pre_names[i];
        if (strlen(p->name) == len && memcmp(p->name, name, len) == 0) {
            *pre = p->pre;
            *add_bos = p->add_bos;
            *ignore_merges = p->ignore_merges;
            return 0;
        }
    }
    return -1;
}

/* ---- character classes used by the regexes ---- */

enum cls {
    CL_N, CL_L, CL_P, CL_CRLF, CL_PUNCT_DEFAULT, CL_PUNCT_FALCON, CL_CJK, CL_DS_LETTER,
    CL_DS_PUNCT,
};

typedef struct { uint32_t lo, hi; } cp_range;

/* deepseek-llm's explicit letter class "[A-Za-zµÀ-ÖØ-ö...]" (from llama-vocab.cpp). */
static const cp_range k_ds_letter[] = {
    {0x41, 0x5A}, {0x61, 0x7A}, {0xB5, 0xB5}, {0xC0, 0xD6}, {0xD8, 0xF6}, {0xF8, 0x1BA},
    {0x1BC, 0x1BF}, {0x1C4, 0x293}, {0x295, 0x2AF}, {0x370, 0x373}, {0x376, 0x377},
    {0x37B, 0x37D}, {0x37F, 0x37F}, {0x386, 0x386}, {0x388, 0x38A}, {0x38C, 0x38C},
    {0x38E, 0x3A1}, {0x3A3, 0x3F5}, {0x3F7, 0x481}, {0x48A, 0x52F}, {0x531, 0x556},
    {0x10A0, 0x10C5}, {0x13A0, 0x13F5}, {0x13F8, 0x13FD}, {0x1C90, 0x1CBA}, {0x1CBD, 0x1CBF},
    {0x1D00, 0x1D2B}, {0x1D6B, 0x1D77}, {0x1D79, 0x1D9A}, {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F59}, {0x1F5B, 0x1F5B},
    {0x1F5D, 0x1F5D}, {0x1F5F, 0x1F7D}, {0x1F80, 0x1FB4}, {0x1FB6, 0x1FBC}, {0x1FBE, 0x1FBE},
    {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB}, {0x1FE0, 0x1FEC},
    {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2102, 0x2102}, {0x2107, 0x2107}, {0x210A, 0x2113},
    {0x2115, 0x2115}, {0x2119, 0x211D}, {0x2124, 0x2124}, {0x2126, 0x2126}, {0x2128, 0x2128},
    {0x212A, 0x212D}, {0x212F, 0x2134}, {0x2139, 0x2139}, {0x213C, 0x213F}, {0x2145, 0x2149},
    {0x214E, 0x214E}, {0x2183, 0x2184}, {0x2C00, 0x2C7B}, {0x2C7E, 0x2CE4}, {0x2CEB, 0x2CEE},
    {0x2CF2, 0x2CF3}, {0xA640, 0xA66D}, {0xA680, 0xA69B}, {0xA722, 0xA76F}, {0xA771, 0xA787},
    {0xA78B, 0xA78E}, {0xAB70, 0xABBF}, {0xFB00, 0xFB06}, {0xFB13, 0xFB17}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0x10400, 0x1044F}, {0x104B0, 0x104D3}, {0x104D8, 0x104FB},
    {0x10C80, 0x10CB2}, {0x10CC0, 0x10CF2}, {0x118A0, 0x118DF}, {0x1E900, 0x1E943},
};
/* deepseek-llm "[!-/:-~！-／：-～‘-‟　-。]" */
static const cp_range k_ds_punct[] = {
    {0x21, 0x2F}, {0x3A, 0x7E}, {0xFF01, 0xFF0F}, {0xFF1A, 0xFF5E}, {0x2018, 0x201F},
    {0x3000, 0x3002},
};
/* deepseek "[一-龥ࠀ-一가-퟿]" */
static const cp_range k_cjk[] = {{0x4E00, 0x9FA5}, {0x0800, 0x4E00}, {0xAC00, 0xD7FF}};

static int in_ranges(const cp_range *r, size_t n, uint32_t cp) {
    for (size_t i = 0; i < n; i++)
        if (cp >= r[i].lo && cp <= r[i].hi) return 1;
    return 0;
}

#define NRANGE(a) (sizeof(a) / sizeof((a)[0]))

/* Class membership. Explicit codepoint classes never match non-ASCII whitespace,
 * because llama.cpp replaced those codepoints by U+000B before running std::wregex. */
static int cls_match(int cls, uint32_t cp, unsigned fl) {
    const int nonascii_ws = cp > 0x7F && (fl & EM_UF_SPACE);
    switch (cls) {
    case CL_N: return (fl & EM_UF_NUMBER) != 0;
    case CL_L: return (fl & EM_UF_LETTER) != 0;
    case CL_P: return (fl & EM_UF_PUNCT) != 0;
    case CL_CRLF: return cp == '\r' || cp == '\n';
    case CL_PUNCT_FALCON:
        if (cp == '`') return 1;
        /* fall through */
    case CL_PUNCT_DEFAULT:
        return (fl & EM_UF_PUNCT) || (cp < 0x80 && cp && strchr("$+<=>^~|", (int)cp));
    case CL_CJK: return !nonascii_ws && in_ranges(k_cjk, NRANGE(k_cjk), cp);
    case CL_DS_LETTER: return !nonascii_ws && in_ranges(k_ds_letter, NRANGE(k_ds_letter), cp);
    case CL_DS_PUNCT: return !nonascii_ws && in_ranges(k_ds_punct, NRANGE(k_ds_punct), cp);
    }
    return 0;
}

/* ---- split stages ---- */

enum stage_kind {
    ST_GPT2,      /* custom gpt2 matcher */
    ST_LLAMA3,    /* custom llama3 matcher, \p{N}{1,3} */
    ST_QWEN2,     /* llama3 regex with \p{N} (one digit per word) */
    ST_QWEN35,    /* qwen2 with [\p{L}\p{M}] for letters */
    ST_RUN,       /* C+   */
    ST_ONE,       /* C    */
    ST_WS_RUN,    /* \s?C+ */
    ST_TRAIL_WS,  /* \s+$ */
    ST_DIGIT3,    /* [0-9][0-9][0-9] */
};

typedef struct { int kind, cls; } stage;

typedef struct { size_t *v; size_t n, cap; int oom; } szvec;

static void sz_push(szvec *s, size_t x) {
    if (s->oom) return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        size_t *p = realloc(s->v, cap * sizeof *p);
        if (!p) { s->oom = 1; return; }
        s->v = p;
        s->cap = cap;
    }
    s->v[s->n++] = x;
}

/* One range [ini, end) of the text being split, with the word boundary emitter. */
typedef struct {
    const uint32_t *cp;
    const uint16_t *fl;
    size_t ini, end, prev;
    szvec *out;
} span;

static uint32_t sp_cp(const span *s, size_t p) { return p >= s->ini && p < s->end ? s->cp[p] : 0xFFFFFFFFu; }
static unsigned sp_fl(const span *s, size_t p) { return p >= s->ini && p < s->end ? s->fl[p] : 0; }

/* Closes the word ending at `end`; returns its length (0 emits nothing). */
static size_t sp_add(span *s, size_t end) {
    size_t len = end - s->prev;
    if (len) sz_push(s->out, len);
    s->prev = end;
    return len;
}

static uint32_t ascii_lower(uint32_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

/* 's 't 'm 'd 're 've 'll at p; returns the match length or 0. */
static size_t contraction(const span *s, size_t p, int fold) {
    if (sp_cp(s, p) != '\'' || p + 1 >= s->end) return 0;
    uint32_t a = sp_cp(s, p + 1), b = p + 2 < s->end ? sp_cp(s, p + 2) : 0;
    if (fold) { a = ascii_lower(a); b = ascii_lower(b); }
    if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
    if (p + 2 < s->end && ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')))
        return 3;
    return 0;
}

#define F_WLN (EM_UF_SPACE | EM_UF_LETTER | EM_UF_NUMBER)

/* Whitespace tail shared by gpt2 and llama3: \s*[\r\n]+ (llama3 only), \s+(?!\S), \s+. */
static void ws_tail(span *s, size_t *pos, int crlf) {
    size_t p = *pos, nws = 0, last_nl = 0;
    while (sp_fl(s, p + nws) & EM_UF_SPACE) {
        uint32_t c = sp_cp(s, p + nws);
        if (c == '\r' || c == '\n') last_nl = p + nws + 1;
        nws++;
    }
    if (crlf && last_nl) p = last_nl;
    else if (nws > 1 && sp_cp(s, p + nws) != 0xFFFFFFFFu) p += nws - 1;
    else if (nws > 0) p += nws;
    else p += 1;  /* no alternative matched: the character stands alone */
    sp_add(s, p);
    *pos = p;
}

/* 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static void split_gpt2(span *s) {
    for (size_t pos = s->ini; pos < s->end;) {
        const uint32_t c = sp_cp(s, pos);
        size_t k = contraction(s, pos, 0);
        if (k) { pos += sp_add(s, pos + k); continue; }
        unsigned f2 = c == ' ' ? sp_fl(s, pos + 1) : sp_fl(s, pos);
        unsigned want = f2 & EM_UF_LETTER ? EM_UF_LETTER : f2 & EM_UF_NUMBER ? EM_UF_NUMBER : 0;
        if (want) {
            pos += c == ' ';
            while (sp_fl(s, pos) & want) pos++;
            sp_add(s, pos);
            continue;
        }
        if (!(f2 & F_WLN) && f2) {
            pos += c == ' ';
            while (!(f2 & F_WLN) && f2) f2 = sp_fl(s, ++pos);
            sp_add(s, pos);
            continue;
        }
        ws_tail(s, &pos, 0);
    }
}

/* (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,maxd}|
 *  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 * qwen35 writes [\p{L}\p{M}] where this has \p{L}: `lm` is the letter flag set. */
static void split_llama3(span *s, size_t maxd, unsigned lm) {
    const unsigned wln = EM_UF_SPACE | EM_UF_NUMBER | lm;
    for (size_t pos = s->ini; pos < s->end;) {
        const uint32_t c = sp_cp(s, pos);
        const unsigned f = sp_fl(s, pos);
        size_t k = contraction(s, pos, 1);
        if (k) { pos += sp_add(s, pos + k); continue; }
        if (!(c == '\r' || c == '\n' || (f & EM_UF_NUMBER)) &&
            ((f & lm) || (sp_fl(s, pos + 1) & lm))) {
            pos++;
            while (sp_fl(s, pos) & lm) pos++;
            sp_add(s, pos);
            continue;
        }
        if (f & EM_UF_NUMBER) {
            size_t ini = pos;
            while (sp_fl(s, pos) & EM_UF_NUMBER) {
                if (++pos - ini >= maxd) { sp_add(s, pos); ini = pos; }
            }
            sp_add(s, pos);
            continue;
        }
        unsigned f2 = c == ' ' ? sp_fl(s, pos + 1) : f;
        if (!(f2 & wln) && f) {
            pos += c == ' ';
            while (!(f2 & wln) && f2) f2 = sp_fl(s, ++pos);
            uint32_t c2 = sp_cp(s, pos);
            while (c2 == '\r' || c2 == '\n') c2 = sp_cp(s, ++pos);
            sp_add(s, pos);
            continue;
        }
        ws_tail(s, &pos, 1);
    }
}

/* The std::regex-style stages: find each leftmost match; gaps become words too. */
static void split_regex(span *s, const stage *st) {
    size_t pos = s->ini;
    if (st->kind == ST_TRAIL_WS) {
        size_t p = s->end;
        while (p > s->ini && (s->fl[p - 1] & EM_UF_SPACE)) p--;
        sp_add(s, p);
        sp_add(s, s->end);
        return;
    }
    while (pos < s->end) {
        size_t mlen = 0;
        const unsigned f = s->fl[pos];
        const uint32_t c = s->cp[pos];
        switch (st->kind) {
        case ST_ONE:
            mlen = cls_match(st->cls, c, f);
            break;
        case ST_RUN:
        case ST_WS_RUN: {
            size_t p = pos;
            if (st->kind == ST_WS_RUN && (f & EM_UF_SPACE) && p + 1 < s->end &&
                cls_match(st->cls, s->cp[p + 1], s->fl[p + 1]))
                p++;
            size_t q = p;
            while (q < s->end && cls_match(st->cls, s->cp[q], s->fl[q])) q++;
            mlen = q > p ? q - pos : 0;
            break;
        }
        case ST_DIGIT3:
            if (pos + 3 <= s->end && c >= '0' && c <= '9' && s->cp[pos + 1] >= '0' &&
                s->cp[pos + 1] <= '9' && s->cp[pos + 2] >= '0' && s->cp[pos + 2] <= '9')
                mlen = 3;
            break;
        }
        if (mlen) {
            sp_add(s, pos);
            sp_add(s, pos + mlen);
            pos += mlen;
        } else {
            pos++;
        }
    }
    sp_add(s, s->end);
}

static const stage k_st_default[] = {{ST_RUN, CL_PUNCT_DEFAULT}, {ST_GPT2, 0}, {ST_RUN, CL_N}, {ST_DIGIT3, 0}};
static const stage k_st_falcon[] = {{ST_RUN, CL_PUNCT_FALCON}, {ST_GPT2, 0}, {ST_DIGIT3, 0}};
static const stage k_st_gpt2[] = {{ST_GPT2, 0}};
static const stage k_st_starcoder[] = {{ST_ONE, CL_N}, {ST_GPT2, 0}};
static const stage k_st_llama3[] = {{ST_LLAMA3, 0}};
static const stage k_st_qwen2[] = {{ST_QWEN2, 0}};
static const stage k_st_qwen35[] = {{ST_QWEN35, 0}};
static const stage k_st_ds_llm[] = {
    {ST_ONE, CL_CRLF}, {ST_WS_RUN, CL_DS_LETTER}, {ST_WS_RUN, CL_DS_PUNCT}, {ST_TRAIL_WS, 0},
    {ST_RUN, CL_CJK}, {ST_RUN, CL_N}};
static const stage k_st_ds_coder[] = {
    {ST_ONE, CL_CRLF}, {ST_WS_RUN, CL_L}, {ST_WS_RUN, CL_P}, {ST_RUN, CL_CJK}, {ST_ONE, CL_N}};

static const stage *stages_for(int pre, size_t *n) {
#define RET(a) do { *n = NRANGE(a); return a; } while (0)
    switch (pre) {
    case PRE_GPT2: RET(k_st_gpt2);
    case PRE_LLAMA3: case PRE_CHATGLM4: RET(k_st_llama3);
    case PRE_QWEN2: RET(k_st_qwen2);
    case PRE_QWEN35: RET(k_st_qwen35);
    case PRE_FALCON: RET(k_st_falcon);
    case PRE_STARCODER: RET(k_st_starcoder);
    case PRE_DEEPSEEK_LLM: RET(k_st_ds_llm);
    case PRE_DEEPSEEK_CODER: RET(k_st_ds_coder);
    default: RET(k_st_default);
    }
#undef RET
}

/* Splits cp[0..n) into words; *words receives the word lengths (in codepoints). */
static int pre_split(int pre, const uint32_t *cp, const uint16_t *fl, size_t n, szvec *words) {
    size_t nst;
    const stage *st = stages_for(pre, &nst);
    szvec cur = {0}, nxt = {0};
    sz_push(&cur, n);
    for (size_t i = 0; i < nst && !cur.oom; i++) {
        nxt.n = 0;
        size_t start = 0;
        for (size_t r = 0; r < cur.n; r++) {
            span s = {cp, fl, start, start + cur.v[r], start, &nxt};
            if (st[i].kind == ST_GPT2) split_gpt2(&s);
            else if (st[i].kind == ST_LLAMA3) split_llama3(&s, 3, EM_UF_LETTER);
            else if (st[i].kind == ST_QWEN2) split_llama3(&s, 1, EM_UF_LETTER);
            else if (st[i].kind == ST_QWEN35) split_llama3(&s, 1, EM_UF_LETTER | EM_UF_MARK);
            else split_regex(&s, &st[i]);
            start += cur.v[r];
        }
        szvec t = cur; cur = nxt; nxt = t;
        if (nxt.oom) cur.oom = 1;
    }
    free(nxt.v);
    *words = cur;
    return cur.oom ? -1 : 0;
}

/* ---- byte-level mapping ---- */

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68
 * bytes get U+0100.. in byte order. */
void em_bpe_init_bytes(em_vocab *v) {
    int n = 0;
    for (int i = 0; i < 512; i++) v->u2b[i] = -1;
    for (int b = 0; b < 256; b++) {
        int self = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        v->b2u[b] = self ? (uint32_t)b : (uint32_t)(256 + n++);
        v->u2b[v->b2u[b]] = (int16_t)b;
    }
}

/* One pass of llama.cpp's llama_decode_text; writes into out when it is non-NULL and
 * returns the decoded length either way. */
static size_t decode_pass(const em_vocab *v, const char *text, size_t len, char *out) {
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t cp = em_utf8_decode(text + i, len - i, &adv);
        i += adv;
        if (cp < 512 && v->u2b[cp] >= 0) {
            if (out) out[n] = (char)v->u2b[cp];
            n++;
            continue;
        }
        /* A char outside the byte map: llama.cpp writes this marker instead. */
        char u[4], hex[3];
        int k = em_utf8_encode(cp, u);
        if (out) memcpy(out + n, "[UNK_BYTE_0x", 12);
        n += 12;
        for (int j = 0; j < k; j++) {
            snprintf(hex, sizeof hex, "%02x", (unsigned char)u[j]);
            if (out) memcpy(out + n, hex, 2);
            n += 2;
        }
        if (out) { memcpy(out + n, text, len); out[n + len] = ']'; }
        n += len + 1;
    }
    return n;
}

char *em_bpe_decode_text(const em_vocab *v, const char *text, size_t len, size_t *out_len) {
    size_t n = decode_pass(v, text, len, NULL);
    char *out = malloc(n + 1);
    if (!out) return NULL;
    decode_pass(v, text, len, out);
    *out_len = n;
    return out;
}

/* ---- merges ---- */

static uint32_t merge_hash(const char *a, size_t alen, const char *b, size_t blen) {
    uint32_t h = em_hash_bytes(a, alen, 2166136261u);
    h = em_hash_bytes("\x01", 1, h);  /* separator: ("ab","c") and ("a","bc") differ */
    return em_hash_bytes(b, blen, h);
}

static int merge_find(const em_vocab *v, const char *a, size_t alen, const char *b, size_t blen) {
    if (!v->mslot) return -1;
    for (uint32_t i = merge_hash(a, alen, b, blen) & v->mmask;; i = (i + 1) & v->mmask) {
        int32_t r = v->mslot[i];
        if (r < 0) return -1;
        const em_merge *m = &v->merge[r];
        if (m->a_len == alen && m->b_len == blen && !memcmp(v->merge_buf + m->a_off, a, alen) &&
            !memcmp(v->merge_buf + m->b_off, b, blen))
            return r;
    }
}

/* Each merge string is "left right", split at the first space after position 0. As in
 * llama.cpp, a string without such a space records the pair ("", ""), and the first
 * occurrence of a pair keeps its rank. */
int em_bpe_build_merges(em_vocab *v, const char *const *s, const size_t *len, int n) {
    size_t total = 0;
    for (int i = 0; i < n; i++) total += len[i];
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2u && cap < (1u << 30)) cap <<= 1;
    v->merge = malloc((size_t)(n ? n : 1) * sizeof *v->merge);
    v->merge_buf = malloc(total + 1);
    v->mslot = malloc(cap * sizeof *v->mslot);
    if (!v->merge || !v->merge_buf || !v->mslot) return -1;
    v->mmask = cap - 1;
    memset(v->mslot, 0xFF, cap * sizeof *v->mslot);
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        em_merge *m = &v->merge[i];
        memcpy(v->merge_buf + off, s[i], len[i]);
        const char *sp = len[i] > 1 ? memchr(s[i] + 1, ' ', len[i] - 1) : NULL;
        size_t a = sp ? (size_t)(sp - s[i]) : 0;
        m->a_off = (uint32_t)off;
        m->a_len = (uint32_t)a;
        m->b_off = (uint32_t)(off + (sp ? a + 1 : 0));
        m->b_len = (uint32_t)(sp ? len[i] - a - 1 : 0);
        off += len[i];
        const char *mb = v->merge_buf;
        if (merge_find(v, mb + m->a_off, m->a_len, mb + m->b_off, m->b_len) >= 0) continue;
        uint32_t h = merge_hash(mb + m->a_off, m->a_len, mb + m->b_off, m->b_len) & v->mmask;
        while (v->mslot[h] >= 0) h = (h + 1) & v->mmask;
        v->mslot[h] = i;
    }
    v->n_merge = n;
    return 0;
}

/* ---- merging one word ---- */

typedef struct { int prev, next; uint32_t off, n; } sym;
typedef struct { int left, right, rank; uint32_t ln, rn; } bigram;

typedef struct {
    sym *sy; size_t sy_cap;
    bigram *hp; size_t hp_n, hp_cap;
    char *buf; size_t buf_cap;
    int oom;
} bpe_work;

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return -1;
    *p = q;
    *cap = c;
    return 0;
}

/* Min-heap on (rank, left): llama.cpp's llm_bigram_bpe::comparator. */
static int bg_less(const bigram *a, const bigram *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_work *w, bigram b) {
    if (grow((void **)&w->hp, &w->hp_cap, w->hp_n + 1, sizeof b)) { w->oom = 1; return; }
    size_t i = w->hp_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!bg_less(&b, &w->hp[p])) break;
        w->hp[i] = w->hp[p];
        i = p;
    }
    w->hp[i] = b;
}

static bigram heap_pop(bpe_work *w) {
    bigram top = w->hp[0], last = w->hp[--w->hp_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->hp_n) break;
        if (c + 1 < w->hp_n && bg_less(&w->hp[c + 1], &w->hp[c])) c++;
        if (!bg_less(&w->hp[c], &last)) break;
        w->hp[i] = w->hp[c];
        i = c;
    }
    if (w->hp_n) w->hp[i] = last;
    return top;
}

static void add_bigram(const em_vocab *v, bpe_work *w, int l, int r) {
    if (l < 0 || r < 0) return;
    const sym *a = &w->sy[l], *b = &w->sy[r];
    int rank = merge_find(v, w->buf + a->off, a->n, w->buf + b->off, b->n);
    if (rank < 0) return;
    bigram bg = {l, r, rank, a->n, b->n};
    heap_push(w, bg);
}

/* Merges the byte-level word in w->buf[0..len) and appends its ids. */
static void bpe_word(const em_vocab *v, bpe_work *w, size_t len, em_ids *out) {
    if (v->ignore_merges) {
        int32_t id = em_vocab_lookup(v, w->buf, len);
        if (id >= 0) { em_ids_push(out, id); return; }
    }
    int ns = 0;
    if (grow((void **)&w->sy, &w->sy_cap, len, sizeof *w->sy)) { w->oom = 1; return; }
    for (size_t off = 0; off < len; ns++) {
        size_t n = em_utf8_len((unsigned char)w->buf[off]);
        if (n > len - off) n = len - off;
        w->sy[ns] = (sym){ns - 1, off + n == len ? -1 : ns + 1, (uint32_t)off, (uint32_t)n};
        off += n;
    }
    w->hp_n = 0;
    for (int i = 1; i < ns; i++) add_bigram(v, w, i - 1, i);
    while (w->hp_n && !w->oom) {
        bigram bg = heap_pop(w);
        sym *l = &w->sy[bg.left], *r = &w->sy[bg.right];
        /* Stale entry: either side changed since it was queued (llama.cpp compares the
         * texts; the spans are fixed, so comparing lengths is the same test). */
        if (l->n == 0 || r->n == 0 || l->n != bg.ln || r->n != bg.rn) continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w->sy[r->next].prev = bg.left;
        add_bigram(v, w, l->prev, bg.left);
        add_bigram(v, w, bg.left, l->next);
    }
    for (int i = 0; i != -1 && ns > 0; i = w->sy[i].next) {
        const sym *s = &w->sy[i];
        if (!s->n) continue;
        int32_t id = em_vocab_lookup(v, w->buf + s->off, s->n);
        if (id >= 0) { em_ids_push(out, id); continue; }
        /* llama.cpp then looks up each byte of the (byte-level) text as a one-char
         * string and drops the bytes that are not tokens. */
        for (uint32_t j = 0; j < s->n; j++) {
            int32_t b = em_vocab_lookup(v, w->buf + s->off + j, 1);
            if (b >= 0) em_ids_push(out, b);
        }
    }
}

/* Re-encodes cp[a..b) as UTF-8 and maps each byte through bytes_to_unicode into w->buf. */
static size_t encode_word(const em_vocab *v, bpe_work *w, const uint32_t *cp, size_t a, size_t b) {
    if (grow((void **)&w->buf, &w->buf_cap, (b - a) * 8 + 1, 1)) { w->oom = 1; return 0; }
    size_t n = 0;
    for (size_t i = a; i < b; i++) {
        char u[4];
        int k = em_utf8_encode(cp[i], u);
        for (int j = 0; j < k; j++) n += (size_t)em_utf8_encode(v->b2u[(unsigned char)u[j]], w->buf + n);
    }
    return n;
}

int em_bpe_tokenize(const em_vocab *v, const char *text, size_t len, em_ids *out) {
    uint32_t *cp = malloc((len ? len : 1) * sizeof *cp);
    uint16_t *fl = malloc((len ? len : 1) * sizeof *fl);
    szvec words = {0};
    bpe_work w = {0};
    int rc = -1;
    if (!cp || !fl) goto done;
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        size_t adv;
        cp[n] = em_utf8_decode(text + i, len - i, &adv);
        fl[n] = (uint16_t)em_uflags(cp[n]);
        n++;
        i += adv;
    }
    if (pre_split(v->pre, cp, fl, n, &words)) goto done;
    size_t start = 0;
    for (size_t i = 0; i < words.n && !w.oom; i++) {
        size_t wl = encode_word(v, &w, cp, start, start + words.v[i]);
        if (!w.oom) bpe_word(v, &w, wl, out);
        start += words.v[i];
    }
    rc = w.oom ? -1 : 0;
done:
    free(cp); free(fl); free(words.v);
    free(w.sy); free(w.hp); free(w.buf);
    return rc;
}
