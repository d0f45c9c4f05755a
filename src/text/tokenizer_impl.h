/* tokenizer_impl.h: the vocabulary struct and helpers shared by tokenizer.c (loading,
 * special tokens, SPM, pieces), tokenizer_bpe.c (pre-tokenizers, byte-level BPE) and
 * tokenizer_wpm.c (WordPiece). Private to those files. */
#ifndef EMBER_TOKENIZER_IMPL_H
#define EMBER_TOKENIZER_IMPL_H
#include <stddef.h>
#include <stdint.h>
#include "text/tokenizer.h"

/* Token attributes as llama.cpp's llama_token_attr bits, so the rules that test them
 * ("control or unknown", "user-defined") read the same. */
enum {
    TA_UNKNOWN = 1 << 0, TA_UNUSED = 1 << 1, TA_NORMAL = 1 << 2, TA_CONTROL = 1 << 3,
    TA_USER = 1 << 4, TA_BYTE = 1 << 5, TA_LSTRIP = 1 << 7, TA_RSTRIP = 1 << 8,
};

enum em_vocab_type { VT_SPM = 1, VT_BPE = 2, VT_WPM = 3 };

/* Pre-tokenizer families: each is one list of split stages in tokenizer_bpe.c. */
enum em_pre {
    PRE_DEFAULT, PRE_GPT2, PRE_LLAMA3, PRE_QWEN2, PRE_FALCON, PRE_STARCODER,
    PRE_DEEPSEEK_LLM, PRE_DEEPSEEK_CODER, PRE_CHATGLM4, PRE_QWEN35,
};

typedef struct em_token {
    const char *text;   /* NUL-terminated, inside em_vocab.text_buf */
    uint32_t len;
    float score;
    uint16_t attr;      /* TA_* bits */
} em_token;

typedef struct em_merge {
    uint32_t a_off, a_len, b_off, b_len;  /* into em_vocab.merge_buf */
} em_merge;

struct em_vocab {
    int type;                 /* enum em_vocab_type */
    int pre;                  /* enum em_pre (BPE only) */
    int n;                    /* number of tokens */
    em_token *tok;
    char *text_buf;
    int32_t *hslot;           /* open-addressing table text -> id (-1 empty) */
    uint32_t hmask;
    em_merge *merge;          /* rank = index */
    int n_merge;
    char *merge_buf;
    int32_t *mslot;           /* open-addressing table (left, right) -> rank */
    uint32_t mmask;
    int32_t bos, eos, eot, eom, unk, pad, sep;  /* WPM: bos is [CLS], sep is [SEP] */
    int add_bos, add_eos, add_sep, add_space_prefix, ignore_merges;
    size_t max_tok_len;       /* longest token text in bytes (WPM's match window) */
    int32_t *special;         /* control/user/unknown ids, longest text first */
    int n_special;
    int32_t *eog;             /* sorted */
    int n_eog;
    int32_t byte_tok[256];    /* SPM byte fallback / BPE single-byte-char token, -1 none */
    uint32_t b2u[256];        /* GPT-2 bytes_to_unicode */
    int16_t u2b[512];         /* inverse, -1 where none */
};

/* Growable id list; oom is sticky so callers check once at the end. */
typedef struct em_ids {
    int32_t *v;
    size_t n, cap;
    int oom;
} em_ids;

void em_ids_push(em_ids *o, int32_t id);
uint32_t em_hash_bytes(const char *s, size_t n, uint32_t h);
int32_t em_vocab_lookup(const em_vocab *v, const char *s, size_t n); /* -1 absent */

/* tokenizer_bpe.c */
int em_pre_from_name(const char *name, size_t len, int *pre, int *add_bos, int *ignore_merges);
int em_bpe_build_merges(em_vocab *v, const char *const *s, const size_t *len, int n);
void em_bpe_init_bytes(em_vocab *v);
/* Tokenizes one raw-text fragment, appending ids. 0 ok, -1 out of memory. */
int em_bpe_tokenize(const em_vocab *v, const char *text, size_t len, em_ids *out);
/* tokenizer_wpm.c: tokenizes one raw-text fragment with WordPiece, appending ids. */
int em_wpm_tokenize(const em_vocab *v, const char *text, size_t len, em_ids *out);
/* Byte-level piece decoding (llama.cpp's llama_decode_text) into a malloc'ed buffer. */
char *em_bpe_decode_text(const em_vocab *v, const char *text, size_t len, size_t *out_len);
#endif
