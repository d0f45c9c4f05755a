/* tokenizer.h: vocabularies and text <-> token ids.
 * Models: "llama" (SentencePiece-style: score-ordered merges, byte fallback, dummy-prefix
 * space as U+2581), "gpt2" (byte-level BPE with a pre-tokenizer chosen by
 * tokenizer.ggml.pre), "bert" (WordPiece, for embedding models) and llama2.c's
 * tokenizer.bin (SPM-style). Behaviour follows
 * llama.cpp's llama-vocab so ids match it exactly. Thread-safe after load (read-only). */
#ifndef EMBER_TOKENIZER_H
#define EMBER_TOKENIZER_H
#include <stddef.h>
#include <stdint.h>
#include "model/gguf.h"

typedef struct em_vocab em_vocab;

enum em_tok_attr {  /* tokenizer.ggml.token_type values */
    EM_TOK_NORMAL = 1, EM_TOK_UNKNOWN = 2, EM_TOK_CONTROL = 3, EM_TOK_USER = 4,
    EM_TOK_UNUSED = 5, EM_TOK_BYTE = 6,
};

/* Builds the vocabulary from tokenizer.ggml.* keys. 0 ok; otherwise -1 with a message in
 * err (missing keys, unknown tokenizer.ggml.model or tokenizer.ggml.pre: the message names
 * the value). */
int em_vocab_load_gguf(const gguf_ctx *g, em_vocab **out, char *err, size_t errsz);
/* llama2.c tokenizer.bin: i32 max_token_length, then per token f32 score, i32 len, bytes.
 * n_vocab is the checkpoint's vocab size. Ids 0,1,2 are <unk>,<s>,</s>; "<0xNN>" pieces
 * are byte tokens. */
int em_vocab_load_l2c(const char *path, int n_vocab, em_vocab **out, char *err, size_t errsz);
void em_vocab_free(em_vocab *v);

int em_vocab_n(const em_vocab *v);
int32_t em_vocab_bos(const em_vocab *v);   /* -1 if none */
int32_t em_vocab_eos(const em_vocab *v);
int32_t em_vocab_eot(const em_vocab *v);   /* -1 if none */
int em_vocab_add_bos(const em_vocab *v);   /* tokenizer.ggml.add_bos_token (default per model type) */
int em_vocab_is_eog(const em_vocab *v, int32_t id); /* eos, eot, eom, or other end-of-generation tokens */
int em_vocab_attr(const em_vocab *v, int32_t id);   /* enum em_tok_attr */
int32_t em_vocab_find(const em_vocab *v, const char *text, size_t len); /* exact piece -> id, -1 */

/* Tokenizes text (len bytes, need not be NUL-terminated or valid UTF-8). add_special:
 * prepend BOS (and append EOS) as the vocab says (WordPiece: [CLS] ... [SEP]); parse_special: text such as
 * "<|im_start|>" becomes its control token. Returns the number of ids written, or -(needed)
 * if n_max is too small; never writes past n_max. */
int em_tokenize(const em_vocab *v, const char *text, size_t len, int add_special,
                int parse_special, int32_t *out, int n_max);
/* em_tokenize, except that with parse_special control tokens are not parsed where any of
 * their bytes lies in one of the n_plain spans of `plain` (any order; overlaps and parts
 * past len allowed). Everything else is as em_tokenize (see ember_tokenize_spans). */
typedef struct { size_t off, len; } em_span;
int em_tokenize_spans(const em_vocab *v, const char *text, size_t len, int add_special,
                      int parse_special, const em_span *plain, size_t n_plain, int32_t *out, int n_max);
/* The bytes a token stands for (byte tokens give their byte, U+2581 becomes a space, BPE
 * byte-level chars are mapped back). Control tokens give "" unless special is set.
 * snprintf contract on buf: returns the piece length, or -(needed) if len is too small.
 * An out-of-range id gives 0 (empty). */
int em_token_to_piece(const em_vocab *v, int32_t id, char *buf, int len, int special);
#endif
