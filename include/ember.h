/* ember.h: the public C API of ember, a small C11 engine that runs language models
 * (GGUF files and llama.cpp/llama2.c checkpoints) on CPUs.
 *
 * Contracts that hold for every function here:
 *  - Functions that can fail return ember_status (EMBER_OK = 0, errors < 0) and write
 *    results through out-parameters; ember_last_error() then describes the failure in the
 *    calling thread ("tensor 'blk.3.attn_q.weight': data ends at 901 MiB, file is 880 MiB").
 *  - The library never prints, exits or aborts because of its input.
 *  - Objects come in pairs: _load/_new with _free; _free(NULL) is a no-op.
 *  - Caller buffers follow snprintf: the return value is the length needed; a negative
 *    return from the tokenizer means "buffer too small, need -n".
 *  - Thread safety: a model is read-only after load and may back many contexts; use each
 *    context and sampler from one thread at a time. Tokenization is thread-safe.
 *  - Same binary, model, inputs, seed and batch give the same tokens for any thread count.
 */
#ifndef EMBER_H
#define EMBER_H
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define EMBER_API __attribute__((visibility("default")))
#else
#define EMBER_API
#endif

#define EMBER_VERSION "0.1.0"
#define EMBER_ABI_VERSION 0

typedef enum ember_status {
    EMBER_OK = 0,
    EMBER_E_INVALID = -1,      /* bad argument from the caller */
    EMBER_E_IO = -2,           /* file cannot be opened or read */
    EMBER_E_FORMAT = -3,       /* file is corrupt or not a model */
    EMBER_E_UNSUPPORTED = -4,  /* valid file, but an architecture/type ember does not run */
    EMBER_E_NOMEM = -5,        /* allocation failed */
    EMBER_E_CONTEXT_FULL = -6, /* the batch does not fit in the remaining context */
} ember_status;

typedef int32_t ember_token;
typedef struct ember_model ember_model;
typedef struct ember_context ember_context;
typedef struct ember_sampler ember_sampler;

/* Description of the last failure in this thread ("" if none). */
EMBER_API const char *ember_last_error(void);
EMBER_API const char *ember_strerror(ember_status s);
EMBER_API const char *ember_version(void);

/* ---- logging ----------------------------------------------------------------------- */
/* Levels as ggml's (llama.h's llama_log_set takes the same kind of callback). */
typedef enum ember_log_level {
    EMBER_LOG_DEBUG = 1,
    EMBER_LOG_INFO = 2,
    EMBER_LOG_WARN = 3,   /* the input was accepted, but read in a way the caller should know */
    EMBER_LOG_ERROR = 4,
} ember_log_level;
/* text is one line without a trailing newline, valid only during the call. */
typedef void (*ember_log_callback)(ember_log_level level, const char *text, void *user_data);
/* Installs the process-wide callback for messages that are not failures, such as load-time
 * warnings about a file the library accepts but has to interpret
 * ("tokenizer.ggml.bos_token_id = 70000 is outside the vocabulary (512 tokens); using the
 * tokenizer's default BOS id 1"). NULL (the default) discards them: the library itself
 * never prints. The callback runs on the thread that called into the library, so it must
 * be thread-safe if several threads load models. */
EMBER_API void ember_log_set(ember_log_callback callback, void *user_data);

/* ---- models ------------------------------------------------------------------------ */
typedef struct ember_model_params {
    int vocab_only;              /* load the tokenizer only (vocab-only GGUF files) */
    const char *tokenizer_path;  /* llama2.c checkpoints: the tokenizer.bin (NULL: none) */
    /* Memory budget in bytes for the model and one context (0: none; GGUF files). It covers
     * the weights resident or being read, the KV cache at the context's n_ctx and the
     * scratch. When the file and the context fit, nothing changes. Otherwise each context
     * keeps the embeddings, output layer, norms, KV cache and scratch resident, keeps as many
     * layers as fit in the rest, and streams the others from the file, asking for them
     * `prefetch` layers ahead of the forward pass (madvise on the mapping; EMBER_STREAM=pread:
     * pread into prefetch + 1 buffers on a thread of its own) and dropping them from memory
     * and the page cache after use; a tight budget gets less prefetch. A prompt chunk reads
     * each layer once. The
     * logits are bit-identical to those without a budget. A budget below the minimum (the
     * resident parts, the context and the largest layer) fails ember_model_load (weights
     * alone) or ember_context_new with EMBER_E_INVALID naming the minimum in bytes.
     * See STREAMING.md; ember_mem_plan_get says what a budget gives. */
    uint64_t mem_budget;
    int prefetch;                /* layers read ahead under a budget (default 1; 0: synchronous) */
} ember_model_params;

EMBER_API ember_model_params ember_model_default_params(void);
/* Loads a GGUF file (v2/v3) or a llama2.c legacy checkpoint (.bin). The model (and the
 * tokenizer_path) must be regular files: a directory, FIFO or device is refused before it
 * is opened (EMBER_E_IO), so a FIFO cannot block the call. Out-of-range special token ids
 * and a missing or zero context length are accepted with a warning to ember_log_set's
 * callback saying what is used instead. */
EMBER_API ember_status ember_model_load(const char *path, const ember_model_params *params,
                                        ember_model **out);
EMBER_API void ember_model_free(ember_model *model);

EMBER_API int ember_model_n_vocab(const ember_model *m);
EMBER_API int ember_model_n_ctx_train(const ember_model *m);
EMBER_API int ember_model_n_embd(const ember_model *m);
EMBER_API int ember_model_n_layer(const ember_model *m);
EMBER_API int64_t ember_model_n_params(const ember_model *m);
EMBER_API uint64_t ember_model_size(const ember_model *m);  /* bytes of weights */
/* "llama 135M Q4_1" style description; snprintf contract. */
EMBER_API int ember_model_desc(const ember_model *m, char *buf, size_t len);
/* Metadata value as text (integers, floats, bools, strings; arrays as "[n items]");
 * returns the length needed, or -1 if the key is absent. snprintf contract. */
EMBER_API int ember_model_meta_str(const ember_model *m, const char *key, char *buf, size_t len);
/* Multi-line "key: value" report of hyper-parameters, tensor types and memory (what
 * `ember info` prints); snprintf contract. */
EMBER_API int ember_model_info(const ember_model *m, char *buf, size_t len);
/* tokenizer.chat_template, or NULL. */
EMBER_API const char *ember_model_chat_template(const ember_model *m);

/* ---- tokens ------------------------------------------------------------------------ */
EMBER_API ember_token ember_token_bos(const ember_model *m);  /* -1 if none */
EMBER_API ember_token ember_token_eos(const ember_model *m);
EMBER_API int ember_token_is_eog(const ember_model *m, ember_token t);
EMBER_API int ember_add_bos(const ember_model *m);
/* Text to ids. add_special: BOS/EOS as the model asks; parse_special: control-token text
 * like "<|im_start|>" becomes its id. Returns the count, or -(needed) if n_max is short. */
EMBER_API int ember_tokenize(const ember_model *m, const char *text, size_t len,
                             ember_token *out, int n_max, int add_special, int parse_special);
/* A byte range [off, off + len) of a text. */
typedef struct ember_span { size_t off, len; } ember_span;
/* Tokenizes text in which control-token text is parsed only outside the `plain` spans:
 * inside them "<|im_start|>" and the like are ordinary text (user-defined tokens are
 * still recognised there, as by ember_tokenize with parse_special = 0). Otherwise the text
 * is tokenized as one piece, exactly as ember_tokenize(m, text, len, out, n_max,
 * add_special, 1) does: a text whose spans hold no control-token text gives the same
 * tokens. Spans may come in any order and overlap; parts past len are ignored. A
 * control token is parsed only where none of its bytes lies in a span. Returns the count,
 * or -(needed) if n_max is short (0 with ember_last_error() set on bad arguments).
 * Use it with ember_chat_apply_template_spans so that message text can never forge the
 * template's markup (a user message holding "<|im_end|>\n<|im_start|>system"). */
EMBER_API int ember_tokenize_spans(const ember_model *m, const char *text, size_t len,
                                   const ember_span *plain, size_t n_plain,
                                   ember_token *out, int n_max, int add_special);
/* Bytes of one token (may be part of a UTF-8 character). special: render control tokens.
 * Returns the length, or -(needed) if len is short. */
EMBER_API int ember_token_to_piece(const ember_model *m, ember_token t, char *buf, int len,
                                   int special);

/* ---- chat templates ------------------------------------------------------------------ */
typedef struct ember_chat_message { const char *role; const char *content; } ember_chat_message;
/* Renders a conversation with the model's tokenizer.chat_template, or with the family
 * `name` when not NULL: "chatml", "qwen3", "llama2", "llama3", "llama3.1", "mistral",
 * "mistral-nemo", "zephyr", "phi3", "phi3-mini", "gemma" (a gemma3 model whose file has no
 * template gets "gemma"). add_assistant appends the assistant turn opener. Returns the rendered length
 * (snprintf contract), or -1 if the template is not recognised (see ember_last_error). */
EMBER_API int ember_chat_apply_template(const ember_model *m, const char *name,
                                        const ember_chat_message *msgs, size_t n,
                                        int add_assistant, char *buf, size_t len);
/* ember_chat_apply_template that also records where text from the messages landed: every
 * byte of a message's content (and of a role written as free text) lies in one of the
 * returned spans, and everything outside them is the template's own markup. Spans are in
 * increasing order, do not overlap, and adjacent ones are merged. *n_spans (if not NULL)
 * gets the total count; the first max_spans are written to spans (may be NULL), so a
 * first call with spans = NULL sizes the array. The rendered text is the same as
 * ember_chat_apply_template's. Tokenize the result with ember_tokenize_spans. */
EMBER_API int ember_chat_apply_template_spans(const ember_model *m, const char *name,
                                              const ember_chat_message *msgs, size_t n,
                                              int add_assistant, char *buf, size_t len,
                                              ember_span *spans, size_t max_spans, size_t *n_spans);

/* ---- contexts and decoding --------------------------------------------------------- */
typedef struct ember_context_params {
    int n_ctx;         /* 0: the model's training context (capped at 4096) */
    int n_threads;     /* 0: number of physical cores */
    int n_batch;       /* max tokens per forward chunk; 0: 64 */
    const char *isa;   /* NULL: best for this CPU (or $EMBER_ISA); "ref", "avx2", ... */
    const char *kv_type; /* K and V cache type where type_k / type_v are NULL; NULL: "f16" */
    int n_seq;         /* independent sequences, each with n_ctx positions; 0: 1 */
    /* KV cache types, as llama.cpp's -ctk / -ctv: "f32", "f16" (default), "bf16", "q8_0",
     * "q4_0" (llama.cpp's block layouts; the quantized ones need head_dim a multiple of 32).
     * K and V may differ. NULL: kv_type. Attention reads the stored rows directly, also for
     * the tokens of the batch that stored them. */
    const char *type_k, *type_v;
    /* What a decode does when a sequence has no room left: NULL or "full": fail with
     * EMBER_E_CONTEXT_FULL; "shift": llama.cpp's context shift: keep the first n_keep
     * tokens, drop the oldest half of the rest and move the others back, re-rotating their
     * keys (repeated until the batch fits; EMBER_E_CONTEXT_FULL only when it cannot);
     * "sink": attention sinks + sliding window (StreamingLLM): the first n_sink tokens and
     * the last n_window, positions kept within the cache, runs forever; "elastic": Elastic
     * Cache: a prompt is merged by importance (attention received) to a (1 - kv_ratio)
     * share of its cells, generation evicts at a fixed point, and a full cache merges
     * again, so it runs forever too. Both decode at most n_window (sink) or n_ctx / 2
     * (elastic) tokens per chunk (ember_context_n_batch tells). */
    const char *kv_policy;
    int n_keep;
    int n_sink;        /* sink, elastic: tokens always kept at the start; 0: 4 */
    int n_window;      /* sink: recent tokens kept; 0: n_ctx - n_sink - n_ctx / 4 */
    float kv_ratio;    /* elastic: share of the cells merged away, in (0, 1); 0: 0.2 */
} ember_context_params;

EMBER_API ember_context_params ember_context_default_params(void);
EMBER_API ember_status ember_context_new(ember_model *m, const ember_context_params *p,
                                         ember_context **out);
EMBER_API void ember_context_free(ember_context *ctx);
EMBER_API int ember_context_n_ctx(const ember_context *ctx);
/* Tokens per forward chunk. ember_decode of n tokens runs chunks of n_batch from the first
 * token, so feeding a prompt in pieces whose lengths are multiples of n_batch gives logits
 * bit-identical to one call (how a caller can report progress on a long prompt). */
EMBER_API int ember_context_n_batch(const ember_context *ctx);
EMBER_API int ember_context_n_past(const ember_context *ctx);  /* tokens in the KV cache (sequence 0) */
EMBER_API int ember_context_n_seq(const ember_context *ctx);
EMBER_API const char *ember_context_isa(const ember_context *ctx);
/* The KV cache's K and V types ("f16", "q8_0", ...) and its bytes per cached token (K and
 * V of every layer). */
EMBER_API const char *ember_context_type_k(const ember_context *ctx);
EMBER_API const char *ember_context_type_v(const ember_context *ctx);
EMBER_API uint64_t ember_context_kv_bytes_per_token(const ember_context *ctx);
/* Drops cached positions >= n_past of sequence 0 (rewind for chat edits, prompt reuse). */
EMBER_API ember_status ember_context_truncate(ember_context *ctx, int n_past);

/* Feeds n tokens at positions n_past..n_past+n-1. Logits are kept for the last token, or
 * for every token when all_logits is set. EMBER_E_CONTEXT_FULL if they do not fit. */
EMBER_API ember_status ember_decode(ember_context *ctx, const ember_token *tokens, int n,
                                    int all_logits);
/* Logits (n_vocab floats) of the i-th token of the last decode or decode_batch (i = -1:
 * last), or NULL when that token kept none. Valid until the next decode. */
EMBER_API const float *ember_get_logits(ember_context *ctx, int i);

/* Several sequences in one forward pass (a context made with n_seq > 1): token i goes to
 * sequence seq[i] at that sequence's next position, so one call can carry a prompt chunk
 * of one sequence and the next token of others. The weights are read once for the whole
 * batch, and each token's logits are bit-identical to decoding its sequence alone.
 * Tokens of one sequence must appear in order. Nothing changes on error (bad token or
 * sequence: EMBER_E_INVALID; a sequence out of room: EMBER_E_CONTEXT_FULL). */
typedef struct ember_batch {
    int n_tokens;
    const ember_token *token;
    const int *seq;          /* sequence of each token; NULL: all 0 */
    const int8_t *logits;    /* nonzero: keep this token's logits; NULL: the last token only */
} ember_batch;
EMBER_API ember_status ember_decode_batch(ember_context *ctx, const ember_batch *batch);
EMBER_API int ember_seq_n_past(const ember_context *ctx, int seq);
/* Drops sequence seq's cached positions >= n_past; other sequences are untouched. */
EMBER_API ember_status ember_seq_truncate(ember_context *ctx, int seq, int n_past);

/* Sequence operations on the KV cache, as llama.h's llama_memory_seq_* (seq_rm, seq_keep,
 * seq_cp, seq_add, seq_pos_min/max). A sequence's cached tokens have strictly increasing
 * positions; a new token goes at the position after the last one (0 when empty). Ranges
 * are [p0, p1) in positions, p0 < 0 meaning 0 and p1 < 0 meaning "to the end". Other
 * sequences are never touched (their logits stay bit-identical), and on error nothing
 * changes. ember_seq_n_past counts a sequence's cached tokens, which equals the next
 * position until positions are removed from the middle without a shift.
 *   ember_seq_rm:   drops the tokens at positions [p0, p1) of seq (seq < 0: of every sequence).
 *   ember_seq_keep: empties every sequence but seq.
 *   ember_seq_cp:   makes dst hold src's tokens at positions [p0, p1), positions and rows as
 *                   they are (dst's previous content is dropped; llama.cpp adds to it).
 *   ember_seq_add:  adds delta to the positions in [p0, p1) of seq and re-rotates their
 *                   keys (RoPE) to the new positions, as llama.cpp's context shift does;
 *                   tokens whose position would fall below 0 are dropped. EMBER_E_INVALID
 *                   if the positions would no longer increase (shift a tail left only
 *                   into room freed by ember_seq_rm).
 * ember_seq_pos_min / pos_max: the first / last cached position of seq, -1 when empty.
 * A model with a recurrent state (falcon-h1's SSM heads) keeps one state per sequence that
 * summarizes all of its tokens: removing tokens that are neither all of the sequence nor
 * an end range back to a state checkpoint (ember_seq_rm, ember_seq_truncate), and copying
 * part of a sequence (ember_seq_cp), fail with EMBER_E_UNSUPPORTED and change nothing;
 * checkpoints are kept while speculative decoding (ember_spec_new) runs on the context. */
EMBER_API ember_status ember_seq_rm(ember_context *ctx, int seq, int p0, int p1);
EMBER_API ember_status ember_seq_keep(ember_context *ctx, int seq);
EMBER_API ember_status ember_seq_cp(ember_context *ctx, int src, int dst, int p0, int p1);
EMBER_API ember_status ember_seq_add(ember_context *ctx, int seq, int p0, int p1, int delta);
EMBER_API int ember_seq_pos_min(const ember_context *ctx, int seq);
EMBER_API int ember_seq_pos_max(const ember_context *ctx, int seq);

/* ---- sampling ---------------------------------------------------------------------- */
typedef struct ember_sampler_params {
    float temp;              /* 0.8; <= 0 means greedy */
    int top_k;               /* 40; <= 0 off */
    float top_p;             /* 0.95; >= 1 off */
    float min_p;             /* 0.05; <= 0 off */
    float repeat_penalty;    /* 1.0 = off */
    int repeat_last_n;       /* 64 */
    float presence_penalty;  /* 0 */
    float frequency_penalty; /* 0 */
    uint64_t seed;           /* 0xFFFFFFFF: random */
} ember_sampler_params;

EMBER_API ember_sampler_params ember_sampler_default_params(void);
/* Checks every field against its allowed range (temp [0, 100], top_k [0, 2^30], top_p and
 * min_p [0, 1], repeat_penalty [1e-6, 100], repeat_last_n [-1, 2^30], presence and
 * frequency penalties [-2, 2]). EMBER_E_INVALID names the first bad field and its range in
 * ember_last_error() ("top_p must be in [0, 1], got 2") and, when bad_field is not NULL,
 * points it at the field's name. ember_sampler_new makes the same check. */
EMBER_API ember_status ember_sampler_params_check(const ember_sampler_params *p, const char **bad_field);
/* The allowed range [*lo, *hi] of the field `name` ("temp", "top_p", ...): 0, or -1 for an
 * unknown name. */
EMBER_API int ember_sampler_param_range(const char *name, double *lo, double *hi);
EMBER_API ember_status ember_sampler_new(const ember_model *m, const ember_sampler_params *p,
                                         ember_sampler **out);
EMBER_API void ember_sampler_free(ember_sampler *s);
/* Samples from the logits of token i of the last decode (-1: last) and records the token
 * for the repetition penalties (ember_sampler_sample_row, then ember_sampler_accept).
 * Returns the token, or -1 with ember_last_error() set. */
EMBER_API ember_token ember_sampler_sample(ember_sampler *s, ember_context *ctx, int i);
/* Samples from a row of n_vocab logits (from ember_get_logits of any context whose model
 * has the sampler's vocabulary) WITHOUT recording the token: the caller decides with
 * ember_sampler_accept what enters the history, e.g. only the drafted tokens a target
 * model accepted. A non-greedy call makes one random draw. Returns the token, or -1 with
 * ember_last_error() set. */
EMBER_API ember_token ember_sampler_sample_row(ember_sampler *s, const float *logits);
EMBER_API void ember_sampler_accept(ember_sampler *s, ember_token t); /* e.g. prompt tokens */
EMBER_API void ember_sampler_reset(ember_sampler *s);
EMBER_API uint64_t ember_sampler_seed(const ember_sampler *s);
/* The distribution ember_sampler_sample_row draws from for this row of logits and the
 * current history, after every transform (penalties, top-k, top-p, min-p, temperature):
 * probs[n_vocab] gets each token's probability, 0 for those filtered out (greedy: 1 at
 * the argmax). Makes no random draw and changes nothing in the sampler. This is the p (or
 * q) of the speculative-sampling acceptance rule. */
EMBER_API ember_status ember_sampler_probs(ember_sampler *s, const float *logits, float *probs);

/* A checkpoint of a sampler's penalty history and random state, to roll back tokens that
 * were accepted for a speculative draft and then rejected. A state made for one sampler
 * fits every sampler with the same vocabulary and repeat_last_n (else EMBER_E_INVALID).
 * Saving and restoring cost O(repeat_last_n), independent of the vocabulary. */
typedef struct ember_sampler_state ember_sampler_state;
#define EMBER_SAMPLER_HISTORY 1  /* the tokens the penalties look at */
#define EMBER_SAMPLER_RNG     2  /* the random generator */
/* A new state holding s's current one. */
EMBER_API ember_status ember_sampler_state_new(const ember_sampler *s, ember_sampler_state **out);
EMBER_API void ember_sampler_state_free(ember_sampler_state *st);
EMBER_API ember_status ember_sampler_save(const ember_sampler *s, ember_sampler_state *st);
/* parts: EMBER_SAMPLER_HISTORY, EMBER_SAMPLER_RNG, or both OR-ed. */
EMBER_API ember_status ember_sampler_restore(ember_sampler *s, const ember_sampler_state *st, int parts);

/* ---- speculative decoding (src/runtime/speculative.c) ------------------------------ */
/* Drafts a few tokens cheaply, by prompt lookup (the tokens that followed the latest
 * earlier occurrence of the last n-gram) or with a small draft model of the same
 * vocabulary, and verifies them with the target in one ember_decode_batch; rejected
 * tokens are rolled back with ember_seq_truncate. Greedy output is token for token the
 * output of plain decoding (batched logits are bit-identical to single-token ones).
 * Sampling uses the speculative-sampling rule (accept a draft x with probability
 * min(1, p(x)/q(x)), on rejection draw from the normalized max(0, p - q)), with p and q
 * from ember_sampler_probs after all transforms and with the history extended by the
 * drafts before x, so the output distribution is the target sampler's; the random stream
 * differs from plain decoding, so the tokens do too. */
typedef struct ember_spec ember_spec;
typedef struct ember_spec_params {
    ember_context *draft;  /* a draft model's context (same vocabulary), or NULL */
    int lookup_ngram;      /* prompt lookup: longest n-gram to match (then shorter ones, down
                              to 1); 0: off. Used when draft is NULL. Default 3 */
    int draft_max;         /* most tokens drafted per step, 1..64. Default 8 */
    int draft_min;         /* a shorter draft is not verified (plain step). Default 0 */
    float draft_p_min;     /* draft model: stop drafting when its most likely token's
                              probability is below this. Default 0 (never) */
    int adaptive;          /* draft length follows the acceptance: +2 after a fully accepted
                              draft, -1 otherwise, within [max(1, draft_min), draft_max]. 1 */
    int seq;               /* the sequence used in both contexts. Default 0 */
    int overlap;           /* draft model at temperature 0, in ember_spec_step: while the
                              target verifies a block, the draft model drafts the next one on
                              a thread of its own, assuming the block is accepted and the
                              target's next token is the draft's; used when that comes true
                              (docs/techniques.md §9). The draft context's threads run beside
                              the target's. Output unchanged. Default 0 */
} ember_spec_params;
typedef struct ember_spec_stats {
    int64_t n_steps;       /* verification batches */
    int64_t n_drafted;     /* drafted tokens sent to the target */
    int64_t n_accepted;    /* of those, accepted */
    int64_t n_tokens;      /* tokens produced by ember_spec_step */
    int64_t n_overlapped;  /* steps whose drafts the overlap had ready */
} ember_spec_stats;

EMBER_API ember_spec_params ember_spec_default_params(void);
/* target: the context that generates. A draft context must have the target's vocabulary
 * size. The contexts must outlive the ember_spec. */
EMBER_API ember_status ember_spec_new(ember_context *target, const ember_spec_params *p, ember_spec **out);
EMBER_API void ember_spec_free(ember_spec *sp);
/* Starts a generation: the target context holds exactly these n tokens in params.seq
 * (the caller decoded them). Feeds them to the draft context (keeping what it already
 * holds of them) and resets the adaptive length, not the statistics. */
EMBER_API ember_status ember_spec_begin(ember_spec *sp, const ember_token *tokens, int n);
/* One step. last: the token sampled last (accepted into s, as ember_sampler_sample does,
 * and not decoded yet). Decodes last and up to draft_max drafts in one batch, then writes
 * to out the 1..max tokens that follow last (accepted drafts, then one token sampled by
 * the target), each accepted into s; the last of them is again sampled and not decoded.
 * The output stops after an end-of-generation token. EMBER_E_CONTEXT_FULL when last does
 * not fit in the target context. */
EMBER_API ember_status ember_spec_step(ember_spec *sp, ember_sampler *s, ember_token last,
                                       ember_token *out, int max, int *n_out);
/* ember_spec_step in two halves, for a caller that verifies in a batch of its own (a server
 * decoding several sequences in one ember_decode_batch):
 * ember_spec_draft drafts after last and points *tokens at the n_tokens = 1 + drafts
 * tokens to verify (last first; valid until the next call on sp), at most max - 1 drafts.
 * The caller decodes them in params.seq, in order, keeping the logits of every one, at
 * batch indices row .. row + n_tokens - 1 (other sequences' tokens may come before, after
 * or between them), then calls ember_spec_accept, which writes the 1..n_tokens output
 * tokens to out exactly as ember_spec_step does (and rolls the sequence back). */
EMBER_API ember_status ember_spec_draft(ember_spec *sp, ember_sampler *s, ember_token last, int max,
                                        const ember_token **tokens, int *n_tokens);
EMBER_API ember_status ember_spec_accept(ember_spec *sp, ember_sampler *s, int row, ember_token *out,
                                         int *n_out);
EMBER_API ember_spec_stats ember_spec_get_stats(const ember_spec *sp);

/* ---- quantization (src/quant/quantize.c; used by `ember quantize`) ----------------------- */
/* llama.cpp's file types (llama_ftype values, written to general.file_type) that ember
 * can produce; the _S/_M mixes pick per-tensor types exactly as llama-quantize does. */
typedef enum ember_ftype {
    EMBER_FTYPE_ALL_F32 = 0, EMBER_FTYPE_MOSTLY_F16 = 1, EMBER_FTYPE_MOSTLY_Q4_0 = 2,
    EMBER_FTYPE_MOSTLY_Q4_1 = 3, EMBER_FTYPE_MOSTLY_Q8_0 = 7, EMBER_FTYPE_MOSTLY_Q5_0 = 8,
    EMBER_FTYPE_MOSTLY_Q5_1 = 9, EMBER_FTYPE_MOSTLY_Q2_K = 10, EMBER_FTYPE_MOSTLY_Q3_K_S = 11,
    EMBER_FTYPE_MOSTLY_Q3_K_M = 12, EMBER_FTYPE_MOSTLY_Q3_K_L = 13, EMBER_FTYPE_MOSTLY_Q4_K_S = 14, EMBER_FTYPE_MOSTLY_Q4_K_M = 15,
    EMBER_FTYPE_MOSTLY_Q5_K_S = 16, EMBER_FTYPE_MOSTLY_Q5_K_M = 17, EMBER_FTYPE_MOSTLY_Q6_K = 18,
    EMBER_FTYPE_MOSTLY_Q2_K_S = 21, EMBER_FTYPE_MOSTLY_IQ4_NL = 25, EMBER_FTYPE_MOSTLY_IQ4_XS = 30,
    EMBER_FTYPE_MOSTLY_BF16 = 32, EMBER_FTYPE_MOSTLY_TQ1_0 = 36, EMBER_FTYPE_MOSTLY_TQ2_0 = 37,
    /* ember's own formats (docs/techniques.md §2, §3, §7; llama.cpp cannot read them): every
     * quantizable matrix in the format, except output (and a tied token_embd), which are
     * Q6_K (Q8_0 when the rows are not a multiple of 256) as in llama.cpp's mixes. */
    EMBER_FTYPE_MOSTLY_INT2 = 4096, EMBER_FTYPE_MOSTLY_INT3 = 4097, EMBER_FTYPE_MOSTLY_INT4 = 4098,
    EMBER_FTYPE_MOSTLY_INT5 = 4099, EMBER_FTYPE_MOSTLY_INT6 = 4100, EMBER_FTYPE_MOSTLY_INT7 = 4101,
    EMBER_FTYPE_MOSTLY_INT8 = 4102, EMBER_FTYPE_MOSTLY_BFP3 = 4103, EMBER_FTYPE_MOSTLY_BFP4 = 4104,
    EMBER_FTYPE_MOSTLY_BFP5 = 4105, EMBER_FTYPE_MOSTLY_BFP6 = 4106, EMBER_FTYPE_MOSTLY_BFP7 = 4107,
    EMBER_FTYPE_MOSTLY_OVP4 = 4108,
} ember_ftype;

/* llama-quantize's name of a file type ("Q4_K_M", "F16", ...), NULL if ember lacks it. */
EMBER_API const char *ember_ftype_name(int ftype);
/* Parses a name as llama-quantize does (case-insensitive "q4_k_m", or the number); -1 if
 * ember cannot produce that type. */
EMBER_API int ember_ftype_from_name(const char *name);

/* An importance matrix: per weight tensor, the mean squared activation of each input
 * column (llama-imatrix's output). */
typedef struct ember_imatrix ember_imatrix;
/* Reads llama-imatrix's file: the GGUF layout (<name>.in_sum2 / <name>.counts tensors, what
 * llama-imatrix writes by default) or the legacy .dat layout, normalised as llama-quantize
 * does (sums / counts). */
EMBER_API ember_status ember_imatrix_load(const char *path, ember_imatrix **out);
EMBER_API void ember_imatrix_free(ember_imatrix *im);
EMBER_API int ember_imatrix_n_entries(const ember_imatrix *im);
EMBER_API int ember_imatrix_n_chunks(const ember_imatrix *im);       /* 0 if unknown */
EMBER_API const char *ember_imatrix_dataset(const ember_imatrix *im); /* first dataset, or NULL */

/* Collecting an importance matrix (src/quant/imatrix.c; used by `ember imatrix`), as
 * llama-imatrix does: while a collector is attached to a context, every decode adds, for
 * each weight matrix named blk.* (and output.weight with process_output; a tied output is
 * token_embd.weight and, as in llama.cpp, never collected), the squares of its float input
 * column by column to a float sum, token by token in batch order, and counts the input rows.
 * GGUF models only (the names are the file's). One collector per context; free it before
 * the context. Decoding costs nothing extra without one. */
typedef struct ember_imatrix_collector ember_imatrix_collector;
EMBER_API ember_status ember_imatrix_collector_new(ember_context *ctx, int process_output,
                                                   ember_imatrix_collector **out);
EMBER_API void ember_imatrix_collector_free(ember_imatrix_collector *c);  /* detaches it */
/* While paused, decodes add nothing (llama-imatrix skips micro-batches under 16 tokens). */
EMBER_API void ember_imatrix_collector_pause(ember_imatrix_collector *c, int paused);
EMBER_API int ember_imatrix_collector_n_entries(const ember_imatrix_collector *c);
/* Entry i (0 <= i < n_entries, in name order): name, input columns, the sums (valid until
 * the next decode) and the rows counted. EMBER_E_INVALID if i is out of range. */
EMBER_API ember_status ember_imatrix_collector_entry(const ember_imatrix_collector *c, int i,
                                                     const char **name, int64_t *n_cols,
                                                     const float **sums, int64_t *count);
typedef struct ember_imatrix_save_params {
    int legacy;           /* 0: GGUF (what llama-imatrix writes by default); 1: legacy .dat */
    int chunk_size;       /* tokens per chunk (> 0): imatrix.chunk_size; the chunk count is the
                           * largest row count / chunk_size; the .dat's per-entry call count
                           * is that count / chunk_size rounded up */
    const char *dataset;  /* the text's path as given, recorded in the file; NULL: none */
} ember_imatrix_save_params;
/* Writes llama-imatrix's file layout: GGUF with general.type "imatrix", imatrix.datasets,
 * imatrix.chunk_count, imatrix.chunk_size and per entry (sorted by name) <name>.in_sum2 (the
 * sums) and <name>.counts (F32); or the legacy .dat (sums / count * calls). Written to
 * path.tmp, synced and renamed. EMBER_E_FORMAT if an activation sum is not finite. */
EMBER_API ember_status ember_imatrix_collector_save(const ember_imatrix_collector *c, const char *path,
                                                    const ember_imatrix_save_params *p);

/* Called once per tensor as it is written: index i of n (from 0), its name, its number of
 * elements, the types (ggml names, "q6_K") and sizes before and after (so the caller can
 * report bits per weight after the fallbacks). */
typedef void (*ember_quantize_progress)(int i, int n, const char *name, uint64_t n_elements,
                                        const char *old_type, const char *new_type,
                                        uint64_t old_bytes, uint64_t new_bytes, void *user_data);

typedef struct ember_quantize_params {
    int ftype;                    /* ember_ftype */
    int n_threads;                /* 0: ember_cpu_cores() */
    int pure;                     /* every quantizable tensor gets the ftype's base type */
    int leave_output_tensor;      /* keep output.weight as it is */
    int allow_requantize;         /* allow quantized inputs (dequantized first) */
    const ember_imatrix *imatrix; /* NULL: none */
    ember_quantize_progress progress;
    void *progress_user_data;
} ember_quantize_params;

EMBER_API ember_quantize_params ember_quantize_default_params(void); /* Q8_0, as llama.cpp */
/* Quantizes the GGUF file in_path into out_path as llama-quantize does: same tensor types,
 * byte-identical tensor data, metadata copied with general.file_type and
 * general.quantization_version set. The result is written to out_path.tmp, synced and
 * renamed, so out_path is never a partial file. */
EMBER_API ember_status ember_model_quantize(const char *in_path, const char *out_path,
                                            const ember_quantize_params *params);

/* ---- benchmarking support (src/runtime/bandwidth.c; used by `ember bench`) ------------------- */
/* Memory read bandwidth, STREAM-style: n_threads threads (0: ember_cpu_cores()) write a
 * buffer of `bytes` (0: 1 GiB; make it much larger than the last-level cache), then sum
 * their slices of it `passes` times (0: 5); the best pass goes to *gbps in GB/s (1e9 B/s). */
EMBER_API ember_status ember_read_bandwidth(int n_threads, size_t bytes, int passes, double *gbps);
/* Bytes one decoded token reads at position n_past: every weight tensor (token_embd as one
 * row unless it is tied to the output) plus K and V of positions 0..n_past in the context's
 * cache type. Activations and logits are not counted. 0 for a NULL context. */
EMBER_API uint64_t ember_context_bytes_per_token(const ember_context *ctx, int n_past);
/* Multiply-add peak, the compute roofline: n_threads threads (0: ember_cpu_cores()) each run
 * independent chains of the multiply-add instructions ember's kernels use, int8 products
 * (kind EMBER_PEAK_INT8: AVX-512 VNNI vpdpbusd, AVX2 vpmaddubsw/vpmaddwd, NEON
 * vmull_s8/vpadal) or f32 FMAs (EMBER_PEAK_F32), of the kernel table `isa` names (NULL:
 * the one contexts pick, see ember_context_params.isa); best of 5 passes of about 20 ms.
 * *gops = 2 * multiply-adds per second / 1e9 (a multiply-add counts as two operations). */
typedef enum { EMBER_PEAK_INT8 = 0, EMBER_PEAK_F32 = 1 } ember_peak_kind;
EMBER_API ember_status ember_compute_peak(int n_threads, ember_peak_kind kind, const char *isa, double *gops);
/* Multiply-adds of the weight matrices one token costs: every 2-D weight (token_embd only
 * when it is tied to the output), split into those the kernels run as int8 products
 * (quantized weights) into *int8 and float ones into *flt (either may be NULL). Attention's
 * products, which grow with the context, are not counted. 0 for a NULL context. */
EMBER_API uint64_t ember_context_macs_per_token(const ember_context *ctx, uint64_t *int8, uint64_t *flt);
/* What a memory budget gives (ember_model_params.mem_budget), for a model and the
 * context ember_context_new would make with params cp (NULL: defaults). */
typedef struct ember_mem_plan {
    uint64_t budget;          /* the budget planned for */
    uint64_t min_budget;      /* the least that runs: resident parts + context + one layer */
    uint64_t resident;        /* resident bytes: fixed + pinned layers + stream buffers + context */
    uint64_t fixed;           /* header and metadata, embeddings, output layer, norms */
    uint64_t context;         /* KV cache at n_ctx plus scratch */
    uint64_t pinned;          /* layers kept resident */
    uint64_t buffers;         /* room for the layers in flight (n_buffers of the largest
                               * streamed layer: pages mapped or buffers) */
    uint64_t streamed;        /* bytes read from the file per decoded token (per chunk) */
    uint64_t file;            /* the model file's size */
    int n_layer, n_pinned, n_streamed, n_buffers, prefetch;
    int all_resident;         /* the file fits: mapped as without a budget, nothing streams */
} ember_mem_plan;
/* Fills *out for `budget` bytes and `prefetch` layers of read-ahead; a budget below the
 * minimum gives EMBER_E_INVALID naming it (*out is filled in either way). */
EMBER_API ember_status ember_mem_plan_get(const ember_model *m, const ember_context_params *cp,
                                          uint64_t budget, int prefetch, ember_mem_plan *out);
/* The plan a context runs under (all zero without a budget). */
EMBER_API ember_status ember_context_mem_plan(const ember_context *ctx, ember_mem_plan *out);
/* Sequential read bandwidth of the model's file from disk: up to `bytes` (0: 256 MiB) read
 * with pread after its pages are dropped from the page cache (posix_fadvise DONTNEED), in
 * GB/s (1e9 B/s); the pages are dropped again afterwards. */
EMBER_API ember_status ember_model_disk_bandwidth(const ember_model *m, uint64_t bytes, double *gbps);

/* Physical CPU cores: the thread count contexts use when n_threads is 0. */
EMBER_API int ember_cpu_cores(void);

#ifdef __cplusplus
}
#endif
#endif
