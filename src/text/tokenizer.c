/* tokenizer.c: vocabularies (GGUF tokenizer.ggml.* and llama2.c tokenizer.bin), special
 * token partitioning, the SentencePiece-style tokenizer, and token -> piece.
 * Byte-level BPE lives in tokenizer_bpe.c and WordPiece in tokenizer_wpm.c.
 *
 * Everything follows llama.cpp's llama-vocab.cpp so ids match it exactly: the same
 * defaults per model type, the same special-token partition (longest token text first,
 * user-defined tokens split out even without parse_special), the same SPM bigram queue
 * (highest score first, leftmost on ties) and the same byte fallback. Nothing here
 * prints or exits; a vocab is read-only after load, so tokenizing from many threads at
 * once is safe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

#define SPM_SPACE "\xE2\x96\x81"  /* U+2581, SentencePiece's visible space */

/* ---- small helpers ---- */

void em_ids_push(em_ids *o, int32_t id) {
    if (o->oom) return;
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *p = realloc(o->v, cap * sizeof *p);
        if (!p) { o->oom = 1; return; }
        o->v = p;
        o->cap = cap;
    }
    o->v[o->n++] = id;
}

uint32_t em_hash_bytes(const char *s, size_t n, uint32_t h) {
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 16777619u;  /* FNV-1a */
    return h;
}

int32_t em_vocab_lookup(const em_vocab *v, const char *s, size_t n) {
    for (uint32_t i = em_hash_bytes(s, n, 2166136261u) & v->hmask;; i = (i + 1) & v->hmask) {
        int32_t id = v->hslot[i];
        if (id < 0) return -1;
        if (v->tok[id].len == n && !memcmp(v->tok[id].text, s, n)) return id;
    }
}

static void set_err(char *err, size_t errsz, const char *fmt, const char *arg) {
    if (err && errsz) snprintf(err, errsz, fmt, arg);
}

static em_vocab *vocab_new(int n) {
    em_vocab *v = calloc(1, sizeof *v);
    if (!v) return NULL;
    v->n = n;
    v->tok = calloc((size_t)(n ? n : 1), sizeof *v->tok);
    if (!v->tok) { free(v); return NULL; }
    v->bos = v->eos = v->eot = v->eom = v->unk = v->pad = v->sep = -1;
    return v;
}

void em_vocab_free(em_vocab *v) {
    if (!v) return;
    free(v->tok); free(v->text_buf); free(v->hslot);
    free(v->merge); free(v->merge_buf); free(v->mslot);
    free(v->special); free(v->eog);
    free(v);
}

/* Copies the token texts into one buffer and builds the text -> id table. Empty texts
 * become "[EMPTY_<id>]" and a repeated text is an error, as in llama.cpp. */
static int build_texts(em_vocab *v, const char *const *s, const size_t *len, char *err, size_t errsz) {
    size_t total = 0;
    for (int i = 0; i < v->n; i++) total += (len[i] ? len[i] : 24) + 1;
    uint32_t cap = 16;
    while (cap < (uint32_t)v->n * 2u && cap < (1u << 30)) cap <<= 1;
    v->text_buf = malloc(total ? total : 1);
    v->hslot = malloc(cap * sizeof *v->hslot);
    if (!v->text_buf || !v->hslot) { set_err(err, errsz, "%s", "out of memory"); return -1; }
    memset(v->hslot, 0xFF, cap * sizeof *v->hslot);
    v->hmask = cap - 1;
    size_t off = 0;
    for (int i = 0; i < v->n; i++) {
        char *t = v->text_buf + off;
        size_t n = len[i];
        if (n) memcpy(t, s[i], n);
        else n = (size_t)sprintf(t, "[EMPTY_%d]", i);
        t[n] = 0;
        v->tok[i].text = t;
        v->tok[i].len = (uint32_t)n;
        if (n > v->max_tok_len) v->max_tok_len = n;
        off += n + 1;
        if (em_vocab_lookup(v, t, n) >= 0) {
            set_err(err, errsz, "duplicate token in vocabulary: '%.64s'", t);
            return -1;
        }
        uint32_t h = em_hash_bytes(t, n, 2166136261u) & v->hmask;
        while (v->hslot[h] >= 0) h = (h + 1) & v->hmask;
        v->hslot[h] = i;
    }
    return 0;
}

static uint16_t attr_from_type(int64_t type) {
    switch (type) {
    case EM_TOK_NORMAL: return TA_NORMAL;
    case EM_TOK_UNKNOWN: return TA_UNKNOWN;
    case EM_TOK_CONTROL: return TA_CONTROL;
    case EM_TOK_USER: return TA_USER;
    case EM_TOK_UNUSED: return TA_UNUSED;
    case EM_TOK_BYTE: return TA_BYTE;
    default: return 0;  /* undefined: renders as nothing, never split out */
    }
}

/* ---- special tokens, EOG, byte tokens (common to both loaders) ---- */

static const char *const k_eot_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>",
    "<EOT>", "_<EOT>", "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
    "<end_of_utterance>",
};
/* Texts llama.cpp treats as end-of-generation (and forces to control type). */
static const char *const k_eog_texts[] = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>",
    "<EOT>", "_<EOT>", "<|end_of_text|>", "<end_of_utterance>",
    "<\xEF\xBD\x9C" "end\xE2\x96\x81" "of\xE2\x96\x81" "sentence\xEF\xBD\x9C>",
};

static int find_text(const em_vocab *v, const char *s) { return em_vocab_lookup(v, s, strlen(s)); }

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Sorts the special-token ids by text length, longest first, then by id (llama.cpp's
 * std::sort leaves equal lengths unordered; id order makes ours deterministic). */
static int sort_specials(em_vocab *v) {
    uint64_t *key = malloc((size_t)(v->n_special ? v->n_special : 1) * sizeof *key);
    if (!key) return -1;
    for (int i = 0; i < v->n_special; i++)
        key[i] = (uint64_t)(UINT32_MAX - v->tok[v->special[i]].len) << 32 | (uint32_t)v->special[i];
    qsort(key, (size_t)v->n_special, sizeof *key, cmp_u64);
    for (int i = 0; i < v->n_special; i++) v->special[i] = (int32_t)(key[i] & 0xFFFFFFFFu);
    free(key);
    return 0;
}

/* Auto-detects EOT/EOG tokens by text, builds the special-token cache (longest text
 * first) and the byte-token table. */
static int finish_specials(em_vocab *v, int phi3) {
    if (v->eot < 0) {
        for (size_t i = 0; i < sizeof k_eot_texts / sizeof *k_eot_texts && v->eot < 0; i++)
            v->eot = find_text(v, k_eot_texts[i]);
        if (v->eot >= 0) v->tok[v->eot].attr |= TA_CONTROL;
    }
    if (v->eom < 0 && (v->eom = find_text(v, "<|eom_id|>")) >= 0) v->tok[v->eom].attr |= TA_CONTROL;
    v->eog = malloc((sizeof k_eog_texts / sizeof *k_eog_texts + 3) * sizeof *v->eog);
    if (!v->eog) return -1;
    for (size_t i = 0; i < sizeof k_eog_texts / sizeof *k_eog_texts; i++) {
        int id = find_text(v, k_eog_texts[i]);
        if (id >= 0) {
            v->eog[v->n_eog++] = id;
            v->tok[id].attr |= TA_CONTROL;  /* llama.cpp forces these to control */
        }
    }
    const int32_t extra[3] = {v->eos, v->eot, v->eom};
    for (int i = 0; i < 3; i++)
        if (extra[i] >= 0) v->eog[v->n_eog++] = extra[i];
    qsort(v->eog, (size_t)v->n_eog, sizeof *v->eog, cmp_i32);
    int k = 0;
    for (int i = 0; i < v->n_eog; i++)
        if (!k || v->eog[k - 1] != v->eog[i]) v->eog[k++] = v->eog[i];
    v->n_eog = k;

    v->special = malloc((size_t)(v->n ? v->n : 1) * sizeof *v->special);
    if (!v->special) return -1;
    for (int i = 0; i < v->n; i++)
        if (v->tok[i].attr & (TA_CONTROL | TA_USER | TA_UNKNOWN)) v->special[v->n_special++] = i;
    if (sort_specials(v)) return -1;
    if (phi3) {  /* llama.cpp's per-model attribute override for Phi-3 */
        for (int i = 0; i < v->n_special; i++) v->tok[v->special[i]].attr |= TA_RSTRIP;
        int id = find_text(v, "</s>");
        if (id >= 0) v->tok[id].attr |= TA_RSTRIP;
        const char *const no[] = {"<unk>", "<s>", "<|endoftext|>"};
        for (int i = 0; i < 3; i++)
            if ((id = find_text(v, no[i])) >= 0) v->tok[id].attr &= (uint16_t)~TA_RSTRIP;
    }
    for (int b = 0; b < 256; b++) {
        char buf[8];
        char one = (char)b;
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        if (v->type == VT_SPM) {
            v->byte_tok[b] = find_text(v, buf);
            if (v->byte_tok[b] < 0) v->byte_tok[b] = em_vocab_lookup(v, &one, 1);
        } else {
            char u[4];
            v->byte_tok[b] = em_vocab_lookup(v, u, (size_t)em_utf8_encode(v->b2u[b], u));
        }
    }
    return 0;
}

/* ---- GGUF loader ---- */

static int str_eq(const char *s, size_t n, const char *lit) { return strlen(lit) == n && !memcmp(s, lit, n); }

/* Special ids from the file override the defaults when they are inside the vocab; a bad
 * id keeps the default (llama.cpp warns and does the same). */
static void read_special_ids(em_vocab *v, const gguf_ctx *g) {
    static const char *const keys[] = {
        "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id", "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
        "tokenizer.ggml.seperator_token_id",  /* sic: llama.cpp's key */
    };
    int32_t *dst[] = {&v->bos, &v->eos, &v->eot, &v->eom, &v->unk, &v->pad, &v->sep};
    for (int i = 0; i < 7; i++) {
        int64_t id;
        if (*dst[i] >= v->n) *dst[i] = -1;
        if (gguf_get_int(g, keys[i], &id) == 0 && id >= 0 && id < v->n) *dst[i] = (int32_t)id;
    }
    /* WordPiece prepends [CLS]: BERT conversions store it as cls_token_id, not bos. */
    int64_t bos, cls;
    if (v->type == VT_WPM && gguf_get_int(g, keys[0], &bos) != 0 &&
        gguf_get_int(g, "tokenizer.ggml.cls_token_id", &cls) == 0 && cls >= 0 && cls < v->n)
        v->bos = (int32_t)cls;
}

static int is_phi3(const gguf_ctx *g) {
    const char *s;
    size_t n;
    char low[256];
    if (gguf_get_str(g, "general.name", &s, &n) != 0) return 0;
    if (n >= sizeof low) n = sizeof low - 1;
    for (size_t i = 0; i < n; i++) low[i] = (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    low[n] = 0;
    return strstr(low, "phi-3") || strstr(low, "phi3");
}

/* Reads a string array into parallel (pointer, length) arrays owned by the caller. */
static int read_str_arr(const gguf_ctx *g, const char *key, uint64_t n, const char ***s, size_t **len) {
    *s = malloc((size_t)(n ? n : 1) * sizeof **s);
    *len = malloc((size_t)(n ? n : 1) * sizeof **len);
    if (!*s || !*len) return -1;
    for (uint64_t i = 0; i < n; i++)
        if (gguf_get_arr_str(g, key, i, &(*s)[i], &(*len)[i]) != 0) return -1;
    return 0;
}

/* Model type, pre-tokenizer and the per-type defaults of llama.cpp's llama_vocab::load. */
static int load_type(em_vocab *v, const gguf_ctx *g, char *err, size_t errsz) {
    const char *s;
    size_t n;
    char name[128];
    if (gguf_get_str(g, "tokenizer.ggml.model", &s, &n) != 0) {
        set_err(err, errsz, "%s", "missing tokenizer.ggml.model");
        return -1;
    }
    if (str_eq(s, n, "llama")) {
        v->type = VT_SPM;
        v->bos = 1; v->eos = 2; v->unk = 0;
        v->add_space_prefix = 1;
        v->add_bos = 1;
    } else if (str_eq(s, n, "gpt2")) {
        v->type = VT_BPE;
        v->bos = 11; v->eos = 11;
        v->pre = PRE_DEFAULT;
        if (gguf_get_str(g, "tokenizer.ggml.pre", &s, &n) == 0 &&
            em_pre_from_name(s, n, &v->pre, &v->add_bos, &v->ignore_merges) != 0) {
            snprintf(name, sizeof name, "%.*s", (int)(n < 100 ? n : 100), s);
            set_err(err, errsz, "unknown pre-tokenizer '%s'", name);
            return -1;
        }
        if (v->pre == PRE_CHATGLM4) v->bos = -1;
    } else if (str_eq(s, n, "bert")) {
        /* llama.cpp ignores tokenizer.ggml.pre for WordPiece ("bert-bge", "jina-v2-en"...). */
        v->type = VT_WPM;
        v->bos = 101; v->unk = 100; v->sep = 102; v->pad = 0;
        v->add_bos = 1;
        v->add_sep = 1;
    } else {
        /* Known to llama.cpp but not implemented here, or not known at all. */
        static const char *const known[] = {"t5", "rwkv", "plamo2", "gemma4", "no_vocab", "none"};
        int is_known = 0;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++) is_known |= str_eq(s, n, known[i]);
        snprintf(name, sizeof name, "%.*s", (int)(n < 100 ? n : 100), s);
        set_err(err, errsz, is_known ? "unsupported tokenizer model '%s'" : "unknown tokenizer model '%s'", name);
        return -1;
    }
    int b;
    if (gguf_get_bool(g, "tokenizer.ggml.add_space_prefix", &b) == 0 && v->type != VT_WPM)
        v->add_space_prefix = b;
    return 0;
}

/* Scores (f32 or i32) and token types, both optional. */
static int load_scores_types(em_vocab *v, const gguf_ctx *g, char *err, size_t errsz) {
    int et;
    uint64_t cnt;
    const void *data;
    if (gguf_get_arr(g, "tokenizer.ggml.scores", &et, &cnt, &data) == 0) {
        if ((et != GGUF_F32 && et != GGUF_I32) || cnt < (uint64_t)v->n || !data) {
            set_err(err, errsz, "%s", "invalid tokenizer.ggml.scores");
            return -1;
        }
        for (int i = 0; i < v->n; i++) {
            uint32_t u;
            memcpy(&u, (const char *)data + 4 * (size_t)i, 4);
            if (et == GGUF_F32) memcpy(&v->tok[i].score, &u, 4);
            else v->tok[i].score = (float)(int32_t)u;
        }
    }
    for (int i = 0; i < v->n; i++) v->tok[i].attr = TA_NORMAL;
    if (gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &cnt, &data) == 0) {
        if (et != GGUF_I32 || cnt < (uint64_t)v->n || !data) {
            set_err(err, errsz, "%s", "invalid tokenizer.ggml.token_type");
            return -1;
        }
        for (int i = 0; i < v->n; i++) {
            int32_t t;
            memcpy(&t, (const char *)data + 4 * (size_t)i, 4);
            v->tok[i].attr = attr_from_type(t);
        }
    }
    return 0;
}

static int load_merges(em_vocab *v, const gguf_ctx *g, char *err, size_t errsz) {
    int et;
    uint64_t cnt;
    const void *data;
    const char **s = NULL;
    size_t *len = NULL;
    if (gguf_get_arr(g, "tokenizer.ggml.merges", &et, &cnt, &data) != 0 || et != GGUF_STRING ||
        cnt > (1u << 28)) {
        set_err(err, errsz, "%s", "missing or invalid tokenizer.ggml.merges");
        return -1;
    }
    int rc = read_str_arr(g, "tokenizer.ggml.merges", cnt, &s, &len);
    if (!rc) rc = em_bpe_build_merges(v, s, len, (int)cnt);
    if (rc) set_err(err, errsz, "%s", "cannot read tokenizer.ggml.merges");
    free(s);
    free(len);
    return rc;
}

int em_vocab_load_gguf(const gguf_ctx *g, em_vocab **out, char *err, size_t errsz) {
    int et;
    uint64_t cnt;
    const void *data;
    const char **s = NULL;
    size_t *len = NULL;
    *out = NULL;
    if (!g) { set_err(err, errsz, "%s", "no file"); return -1; }
    if (gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &cnt, &data) != 0 || et != GGUF_STRING ||
        cnt == 0 || cnt > (1u << 24)) {
        set_err(err, errsz, "%s", "missing or invalid tokenizer.ggml.tokens");
        return -1;
    }
    em_vocab *v = vocab_new((int)cnt);
    if (!v) { set_err(err, errsz, "%s", "out of memory"); return -1; }
    int rc = load_type(v, g, err, errsz);
    em_bpe_init_bytes(v);
    if (!rc && read_str_arr(g, "tokenizer.ggml.tokens", cnt, &s, &len)) {
        set_err(err, errsz, "%s", "cannot read tokenizer.ggml.tokens");
        rc = -1;
    }
    if (!rc) rc = build_texts(v, s, len, err, errsz);
    free(s);
    free(len);
    if (!rc) rc = load_scores_types(v, g, err, errsz);
    if (!rc && v->type == VT_BPE) rc = load_merges(v, g, err, errsz);
    if (!rc) {
        int b;
        read_special_ids(v, g);
        if (gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b) == 0) v->add_bos = b;
        if (gguf_get_bool(g, "tokenizer.ggml.add_eos_token", &b) == 0) v->add_eos = b;
        if ((v->add_bos && v->bos < 0) || (v->add_eos && v->eos < 0)) {
            set_err(err, errsz, "%s", "add_bos/add_eos_token is set but the token id is not");
            rc = -1;
        }
    }
    if (!rc && finish_specials(v, is_phi3(g))) {
        set_err(err, errsz, "%s", "out of memory");
        rc = -1;
    }
    if (rc) { em_vocab_free(v); return -1; }
    *out = v;
    return 0;
}

/* ---- llama2.c tokenizer.bin ---- */

/* The pieces get llama.cpp's SPM conventions (' ' stored as U+2581, typed tokens) so the
 * same SPM path tokenizes them; this reproduces run.c's encode(), whose greedy
 * best-score-first pair merging is the same order as the SPM bigram queue. */
static int l2c_read(FILE *f, int n_vocab, char ***pieces, size_t **len, float *score) {
    int32_t max_len;
    if (fread(&max_len, 4, 1, f) != 1 || max_len < 0) return -1;
    *pieces = calloc((size_t)n_vocab, sizeof **pieces);
    *len = calloc((size_t)n_vocab, sizeof **len);
    if (!*pieces || !*len) return -1;
    for (int i = 0; i < n_vocab; i++) {
        int32_t n;
        if (fread(&score[i], 4, 1, f) != 1 || fread(&n, 4, 1, f) != 1 || n < 0 || n > (1 << 20))
            return -1;
        /* Each ' ' becomes the 3-byte U+2581. */
        char *p = malloc((size_t)n * 3 + 1), *raw = malloc((size_t)n + 1);
        if (!p || !raw || fread(raw, 1, (size_t)n, f) != (size_t)n) { free(p); free(raw); return -1; }
        size_t k = 0;
        for (int j = 0; j < n; j++) {
            if (raw[j] == ' ') { memcpy(p + k, SPM_SPACE, 3); k += 3; }
            else p[k++] = raw[j];
        }
        free(raw);
        (*pieces)[i] = p;
        (*len)[i] = k;
    }
    return 0;
}

static uint16_t l2c_attr(int id, const char *s, size_t n) {
    if (id == 0) return TA_UNKNOWN;
    if (id == 1 || id == 2) return TA_CONTROL;
    if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>') return TA_BYTE;
    return TA_NORMAL;
}

int em_vocab_load_l2c(const char *path, int n_vocab, em_vocab **out, char *err, size_t errsz) {
    *out = NULL;
    if (n_vocab < 3 || n_vocab > (1 << 24)) { set_err(err, errsz, "%s", "bad vocab size"); return -1; }
    FILE *f = fopen(path, "rb");
    if (!f) { set_err(err, errsz, "cannot open %s", path); return -1; }
    em_vocab *v = vocab_new(n_vocab);
    char **pieces = NULL;
    size_t *len = NULL;
    float *score = malloc((size_t)n_vocab * sizeof *score);
    int rc = !v || !score ? -1 : l2c_read(f, n_vocab, &pieces, &len, score);
    fclose(f);
    if (rc) set_err(err, errsz, "truncated or invalid tokenizer file %s", path);
    if (!rc) rc = build_texts(v, (const char *const *)pieces, len, err, errsz);
    if (!rc) {
        v->type = VT_SPM;
        v->bos = 1; v->eos = 2; v->unk = 0;
        v->add_bos = 1;
        v->add_space_prefix = 1;
        em_bpe_init_bytes(v);
        for (int i = 0; i < n_vocab; i++) {
            v->tok[i].score = score[i];
            v->tok[i].attr = l2c_attr(i, v->tok[i].text, v->tok[i].len);
        }
        if (finish_specials(v, 0)) { set_err(err, errsz, "%s", "out of memory"); rc = -1; }
    }
    for (int i = 0; pieces && i < n_vocab; i++) free(pieces[i]);
    free(pieces); free(len); free(score);
    if (rc) { em_vocab_free(v); return -1; }
    *out = v;
    return 0;
}

/* ---- special-token partition (llama.cpp's tokenizer_st_partition) ---- */

typedef struct { int32_t tok; size_t off, len; } frag;  /* tok < 0: raw text */

typedef struct { frag *v; size_t n, cap; int oom; } fragvec;

static void frag_push(fragvec *f, int32_t tok, size_t off, size_t len) {
    if (f->oom) return;
    if (f->n == f->cap) {
        size_t cap = f->cap ? f->cap * 2 : 16;
        frag *p = realloc(f->v, cap * sizeof *p);
        if (!p) { f->oom = 1; return; }
        f->v = p;
        f->cap = cap;
    }
    f->v[f->n++] = (frag){tok, off, len};
}

static int ascii_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

/* Byte ranges where control tokens must not be parsed: sorted, disjoint, merged. */
typedef struct { const em_span *v; size_t n; } plainset;

/* Does [off, off + len) share a byte with a plain span? */
static int plain_overlaps(const plainset *p, size_t off, size_t len) {
    size_t lo = 0, hi = p->n;  /* first span that ends after off */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->v[mid].off + p->v[mid].len <= off) lo = mid + 1;
        else hi = mid;
    }
    return lo < p->n && p->v[lo].off < off + len;
}

/* Splits one raw fragment on every occurrence of token id (leftmost first); occurrences
 * that touch a plain span (when p is not NULL) stay text. */
static void split_frag(const em_vocab *v, const char *text, const frag *fr, int32_t id,
                       const plainset *p, fragvec *out) {
    const em_token *t = &v->tok[id];
    size_t off = fr->off, len = fr->len, from = off;
    for (;;) {
        const char *m = memmem(text + from, off + len - from, t->text, t->len);
        if (!m) { frag_push(out, -1, off, len); return; }
        size_t pos = (size_t)(m - text), left = pos - off;
        if (p && plain_overlaps(p, pos, t->len)) { from = pos + 1; continue; }
        if (t->attr & TA_LSTRIP)
            while (left > 0 && ascii_space(text[off + left - 1])) left--;
        if (left) frag_push(out, -1, off, left);
        frag_push(out, id, 0, 0);
        size_t roff = pos + t->len, rlen = off + len - roff;
        if (t->attr & TA_RSTRIP)
            while (rlen > 0 && ascii_space(text[roff])) { roff++; rlen--; }
        if (!rlen) return;
        off = from = roff;
        len = rlen;
    }
}

/* Partitions text into raw fragments and special tokens. Control and unknown tokens are
 * only recognised with parse_special, and then (p not NULL) only outside plain spans;
 * user-defined tokens always are. */
static int partition(const em_vocab *v, const char *text, size_t len, int parse_special,
                     const plainset *p, fragvec *fv) {
    fragvec tmp = {0};
    if (len) frag_push(fv, -1, 0, len);
    for (int s = 0; s < v->n_special && !fv->oom; s++) {
        const int32_t id = v->special[s];
        const em_token *t = &v->tok[id];
        const int control = (t->attr & (TA_CONTROL | TA_UNKNOWN)) != 0;
        if (!parse_special && control) continue;
        int found = 0;
        for (size_t i = 0; i < fv->n && !found; i++)
            found = fv->v[i].tok < 0 && memmem(text + fv->v[i].off, fv->v[i].len, t->text, t->len);
        if (!found) continue;
        tmp.n = 0;
        for (size_t i = 0; i < fv->n; i++) {
            if (fv->v[i].tok >= 0) frag_push(&tmp, fv->v[i].tok, 0, 0);
            else split_frag(v, text, &fv->v[i], id, control ? p : NULL, &tmp);
        }
        fragvec x = *fv; *fv = tmp; tmp = x;
        if (tmp.oom) fv->oom = 1;
    }
    free(tmp.v);
    return fv->oom ? -1 : 0;
}

/* ---- SPM (llama.cpp's llm_tokenizer_spm) ---- */

typedef struct { int prev, next; size_t off, n; } spm_sym;
typedef struct { int left, right; float score; size_t size; } spm_bigram;

typedef struct {
    const em_vocab *v;
    const char *text;
    spm_sym *sym;
    spm_bigram *hp;
    size_t hp_n, hp_cap;
    int oom;
} spm_work;

/* Max-heap on score; equal scores pop the leftmost pair first. */
static int spm_before(const spm_bigram *a, const spm_bigram *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static void spm_push(spm_work *w, spm_bigram b) {
    if (w->hp_n == w->hp_cap) {
        size_t cap = w->hp_cap ? w->hp_cap * 2 : 64;
        spm_bigram *p = realloc(w->hp, cap * sizeof *p);
        if (!p) { w->oom = 1; return; }
        w->hp = p;
        w->hp_cap = cap;
    }
    size_t i = w->hp_n++;
    while (i > 0 && spm_before(&b, &w->hp[(i - 1) / 2])) {
        w->hp[i] = w->hp[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    w->hp[i] = b;
}

static spm_bigram spm_pop(spm_work *w) {
    spm_bigram top = w->hp[0], last = w->hp[--w->hp_n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= w->hp_n) break;
        if (c + 1 < w->hp_n && spm_before(&w->hp[c + 1], &w->hp[c])) c++;
        if (!spm_before(&w->hp[c], &last)) break;
        w->hp[i] = w->hp[c];
        i = c;
    }
    if (w->hp_n) w->hp[i] = last;
    return top;
}

static void spm_try(spm_work *w, int l, int r) {
    if (l < 0 || r < 0) return;
    size_t n = w->sym[l].n + w->sym[r].n;
    int32_t id = em_vocab_lookup(w->v, w->text + w->sym[l].off, n);
    if (id < 0) return;
    spm_bigram b = {l, r, w->v->tok[id].score, n};
    spm_push(w, b);
}

/* Emits a final symbol: its token, or its bytes as byte tokens (unk if a byte has no
 * token; llama.cpp would throw there). */
static void spm_emit(const em_vocab *v, const char *s, size_t n, em_ids *out) {
    int32_t id = em_vocab_lookup(v, s, n);
    if (id >= 0) { em_ids_push(out, id); return; }
    for (size_t j = 0; j < n; j++) {
        int32_t b = v->byte_tok[(unsigned char)s[j]];
        if (b < 0) b = v->unk;
        if (b >= 0) em_ids_push(out, b);
    }
}

static int spm_tokenize(const em_vocab *v, const char *text, size_t len, em_ids *out) {
    spm_work w = {v, text, malloc((len ? len : 1) * sizeof(spm_sym)), NULL, 0, 0, 0};
    if (!w.sym) return -1;
    int ns = 0;
    for (size_t off = 0; off < len; ns++) {
        size_t n = em_utf8_len((unsigned char)text[off]);
        if (n > len - off) n = len - off;
        w.sym[ns] = (spm_sym){ns - 1, off + n == len ? -1 : ns + 1, off, n};
        off += n;
    }
    for (int i = 1; i < ns; i++) spm_try(&w, i - 1, i);
    while (w.hp_n && !w.oom) {
        spm_bigram b = spm_pop(&w);
        spm_sym *l = &w.sym[b.left], *r = &w.sym[b.right];
        if (l->n == 0 || r->n == 0 || l->n + r->n != b.size) continue;  /* stale */
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0) w.sym[r->next].prev = b.left;
        spm_try(&w, l->prev, b.left);
        spm_try(&w, b.left, l->next);
    }
    for (int i = 0; ns > 0 && i != -1; i = w.sym[i].next) spm_emit(v, text + w.sym[i].off, w.sym[i].n, out);
    free(w.sym);
    free(w.hp);
    return w.oom ? -1 : 0;
}

/* Escapes spaces as U+2581, with the dummy prefix, and runs the SPM merge. */
static int spm_fragment(const em_vocab *v, const char *text, size_t len, int prefix, em_ids *out) {
    size_t spaces = prefix ? 1 : 0;
    for (size_t i = 0; i < len; i++) spaces += text[i] == ' ';
    char *buf = malloc(len + 2 * spaces + 1);
    if (!buf) return -1;
    size_t n = 0;
    if (prefix) { memcpy(buf, SPM_SPACE, 3); n = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(buf + n, SPM_SPACE, 3); n += 3; }
        else buf[n++] = text[i];
    }
    int rc = spm_tokenize(v, buf, n, out);
    free(buf);
    return rc;
}

/* ---- public API ---- */

static int cmp_span(const void *a, const void *b) {
    const em_span *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Clips spans to [0, len), sorts and merges them into a new array (*out, count in *n). */
static int plain_prepare(const em_span *spans, size_t n_spans, size_t len, em_span **out, size_t *n) {
    *n = 0;
    *out = malloc((n_spans ? n_spans : 1) * sizeof **out);
    if (!*out) return -1;
    for (size_t i = 0; i < n_spans; i++) {
        size_t off = spans[i].off, l = spans[i].len;
        if (off >= len || !l) continue;
        if (l > len - off) l = len - off;
        (*out)[(*n)++] = (em_span){off, l};
    }
    qsort(*out, *n, sizeof **out, cmp_span);
    size_t k = 0;
    for (size_t i = 0; i < *n; i++) {
        em_span *sp = &(*out)[i];
        if (k && sp->off <= (*out)[k - 1].off + (*out)[k - 1].len) {
            size_t end = sp->off + sp->len, prev = (*out)[k - 1].off + (*out)[k - 1].len;
            if (end > prev) (*out)[k - 1].len = end - (*out)[k - 1].off;
        } else {
            (*out)[k++] = *sp;
        }
    }
    *n = k;
    return 0;
}

int em_tokenize(const em_vocab *v, const char *text, size_t len, int add_special,
                int parse_special, int32_t *out, int n_max) {
    return em_tokenize_spans(v, text, len, add_special, parse_special, NULL, 0, out, n_max);
}

int em_tokenize_spans(const em_vocab *v, const char *text, size_t len, int add_special,
                      int parse_special, const em_span *plain, size_t n_plain, int32_t *out, int n_max) {
    fragvec fv = {0};
    em_ids ids = {0};
    if (!v || (!text && len)) return 0;
    em_span *ps = NULL;
    plainset pset = {NULL, 0};
    if (plain && n_plain && parse_special) {
        if (plain_prepare(plain, n_plain, len, &ps, &pset.n)) return 0;
        pset.v = ps;
    }
    int rc = partition(v, text, len, parse_special, pset.n ? &pset : NULL, &fv);
    free(ps);
    if (add_special && v->add_bos && v->bos >= 0) em_ids_push(&ids, v->bos);
    int prev_special = 1;  /* SPM: the first raw fragment gets the dummy prefix */
    for (size_t i = 0; i < fv.n && !rc; i++) {
        const frag *f = &fv.v[i];
        if (f->tok >= 0) {
            em_ids_push(&ids, f->tok);
            prev_special = 1;
        } else if (v->type == VT_SPM) {
            rc = spm_fragment(v, text + f->off, f->len, v->add_space_prefix && prev_special, &ids);
            prev_special = 0;
        } else if (v->type == VT_WPM) {
            rc = em_wpm_tokenize(v, text + f->off, f->len, &ids);
        } else {
            rc = em_bpe_tokenize(v, text + f->off, f->len, &ids);
        }
    }
    if (add_special && v->add_eos && v->eos >= 0) em_ids_push(&ids, v->eos);
    if (add_special && v->add_sep && v->sep >= 0) em_ids_push(&ids, v->sep);
    free(fv.v);
    if (rc || ids.oom || ids.n > (size_t)INT32_MAX) {
        free(ids.v);
        return 0;  /* out of memory: nothing written (no better signal in this contract) */
    }
    int n = (int)ids.n;
    if (n > n_max) {
        free(ids.v);
        return -n;
    }
    if (n) memcpy(out, ids.v, (size_t)n * sizeof *out);
    free(ids.v);
    return n;
}

static int copy_piece(const char *s, size_t n, char *buf, int len) {
    if (n > (size_t)INT32_MAX) return 0;
    if (len < 0 || (size_t)len < n) return -(int)n;
    if (n) memcpy(buf, s, n);
    return (int)n;
}

/* Byte token "<0xNN>" -> NN, reading the hex like llama.cpp's strtol(substr(3, 2)). */
static int byte_of(const em_token *t) {
    char hex[3] = {0};
    if (t->len > 3) memcpy(hex, t->text + 3, t->len - 3 >= 2 ? 2 : 1);
    return (int)strtol(hex, NULL, 16) & 0xFF;
}

int em_token_to_piece(const em_vocab *v, int32_t id, char *buf, int len, int special) {
    if (!v || id < 0 || id >= v->n) return 0;
    const em_token *t = &v->tok[id];
    if (!special && (t->attr & (TA_UNKNOWN | TA_CONTROL))) return 0;
    if (t->attr & (TA_UNKNOWN | TA_CONTROL | TA_USER)) return copy_piece(t->text, t->len, buf, len);
    if (t->attr & TA_BYTE) {
        char b = (char)byte_of(t);
        return copy_piece(&b, 1, buf, len);
    }
    if (!(t->attr & TA_NORMAL)) return 0;
    char *tmp;
    size_t n = 0;
    if (v->type != VT_BPE) {  /* SPM and WPM: U+2581 stands for a space */
        tmp = malloc(t->len + 1);
        if (!tmp) return 0;
        for (size_t i = 0; i < t->len;) {
            if (t->len - i >= 3 && !memcmp(t->text + i, SPM_SPACE, 3)) { tmp[n++] = ' '; i += 3; }
            else tmp[n++] = t->text[i++];
        }
    } else {
        tmp = em_bpe_decode_text(v, t->text, t->len, &n);
        if (!tmp) return 0;
    }
    int r = copy_piece(tmp, n, buf, len);
    free(tmp);
    return r;
}

int em_vocab_n(const em_vocab *v) { return v ? v->n : 0; }
int32_t em_vocab_bos(const em_vocab *v) { return v ? v->bos : -1; }
int32_t em_vocab_eos(const em_vocab *v) { return v ? v->eos : -1; }
int32_t em_vocab_eot(const em_vocab *v) { return v ? v->eot : -1; }
int em_vocab_add_bos(const em_vocab *v) { return v ? v->add_bos : 0; }

int em_vocab_is_eog(const em_vocab *v, int32_t id) {
    if (!v || id < 0) return 0;
    return bsearch(&id, v->eog, (size_t)v->n_eog, sizeof *v->eog, cmp_i32) != NULL;
}

int em_vocab_attr(const em_vocab *v, int32_t id) {
    if (!v || id < 0 || id >= v->n) return 0;
    const uint16_t a = v->tok[id].attr;
    if (a & TA_CONTROL) return EM_TOK_CONTROL;
    if (a & TA_USER) return EM_TOK_USER;
    if (a & TA_UNKNOWN) return EM_TOK_UNKNOWN;
    if (a & TA_BYTE) return EM_TOK_BYTE;
    if (a & TA_UNUSED) return EM_TOK_UNUSED;
    if (a & TA_NORMAL) return EM_TOK_NORMAL;
    return 0;
}

int32_t em_vocab_find(const em_vocab *v, const char *text, size_t len) {
    if (!v || (!text && len)) return -1;
    return em_vocab_lookup(v, text ? text : "", len);
}
