/* kv_cache.h: the KV cache, the one owner of its cells, types, positions and sizes.
 *
 * Each sequence has its own store of n_ctx cells per layer. Cell c of sequence s holds
 * the K and V rows (all KV heads of one layer, converted to type_k / type_v) of one token
 * and that token's position pos[s][c]. A sequence's cells are always 0..n_cells-1 and
 * their positions strictly increase, so "the cells before this one" are exactly the
 * positions a token attends to (a causal mask), and a window of positions is a range of
 * cells. A new token goes to the next cell at the position after the last one (0 in an
 * empty sequence). Sequence operations (remove a range of positions, keep one sequence,
 * copy, shift) keep that order; shifting positions re-rotates the kept K rows.
 *
 * K rows are stored after RoPE, as llama.cpp stores them. Rows are whole blocks of the
 * cache type: a head's slice starts on a block boundary (head_dim a multiple of the block
 * size), so attention reads one head's quantized K/V directly. Memory is calloc'ed: the
 * cells a sequence never reaches cost no RAM.
 *
 * Cells are logical: cell c of sequence s lives in the physical slot base[s] + c of its
 * n_ctx slots (base is 0 except under the sink policy, which slides its window forward
 * through the slots instead of moving rows; see em_kv_make_room). */
#ifndef EMBER_KV_CACHE_H
#define EMBER_KV_CACHE_H
#include <stddef.h>
#include <stdint.h>
#include "ember.h"
#include "runtime/ssm_state.h"

struct ember_model;
struct em_hparams;

typedef struct em_kv_cache {
    int type_k, type_v;         /* enum em_type: F32, F16, BF16, Q8_0, Q4_0 */
    int n_layer, n_seq, n_ctx;  /* n_ctx cells per sequence and layer */
    int n_head_kv, head_dim;
    size_t head_k, head_v;      /* bytes of one KV head's slice of a row */
    size_t row_k, row_v;        /* bytes of one cell's row (n_head_kv heads) */
    char *k, *v;                /* (n_layer, n_seq, n_ctx) rows */
    int *n_cells;               /* (n_seq) cells in use */
    int32_t *pos;               /* (n_seq, n_ctx) position of each cell */
    /* Hadamard rotation, as llama.cpp does by default for quantized caches (head_dim a
     * multiple of 64): K rows (and q) are rotated after RoPE in blocks of rot_k values (the
     * largest power of two dividing head_dim), V rows in blocks of rot_v = 64 and the
     * attention output rotated back, which spreads outliers over the block before
     * quantizing and changes no exact dot product (the rotation is orthonormal and its own
     * inverse). 0: off (f32, f16, bf16). */
    int rot_k, rot_v;
    int policy;                 /* enum em_kv_policy: what happens when a sequence is full */
    int n_keep;                 /* shift: cells kept at the start of a sequence */
    float *row;                 /* scratch: one K row as floats (shifts) */
    em_ssm_state ssm;           /* falcon-h1's recurrent state per sequence (ssm_state.h); the
                                 * sequence operations below apply to it too */
    int *base;                  /* (n_seq) physical slot of cell 0 */
    /* sink: cells [0, n_sink) are the first tokens (attention sinks), the rest a window of
     * at most n_window recent tokens; positions are renumbered to the cell indexes
     * whenever the next one would reach pos_limit. The sinks' K rows as floats (post-RoPE,
     * without the Hadamard rotation) at the positions sink_pos, and their V rows as
     * stored, are taken once (sink_ok) and placed again before the window after each
     * eviction: only these rows are re-rotated and re-stored per step. */
    int n_sink, n_window, pos_limit;
    float *sink_k;              /* (n_seq, n_layer, n_sink, n_head_kv * head_dim) */
    char *sink_v;               /* (n_seq, n_layer, n_sink) rows of row_v bytes */
    int32_t *sink_pos;          /* (n_seq, n_sink) */
    int *sink_ok;               /* (n_seq) sink_k / sink_v hold the current sinks */
    /* elastic: importance of each cell (attention it received, summed over heads and
     * layers), tokens seen, the fixed eviction index (-1 before the first merge) and
     * whether a prompt of more than one token waits to be merged */
    float ratio;
    int distance;
    float *imp;                 /* (n_seq, n_ctx) by logical cell */
    int64_t *born;              /* (n_seq, n_ctx) tokens the sequence had seen before the cell's */
    int64_t *n_seen;            /* (n_seq) */
    int *fix_p, *pending;       /* (n_seq) */
    float *acc;                 /* scratch: 2 rows (K, V) as floats (merges), then n_ctx *
                                 * head_dim floats + n_ctx scores (column sums) */
    int *work;                  /* scratch: n_ctx ints (merges) */
    struct em_kv_rank { float w; int c; } *rank;  /* scratch: n_ctx (merges) */
} em_kv_cache;

/* When a sequence has no room for a batch's tokens:
 *   FULL   the decode fails with EMBER_E_CONTEXT_FULL (nothing changes);
 *   SHIFT  llama.cpp's context shift: keep the first n_keep cells, remove half of the rest
 *          (the oldest), move the others back into the freed positions re-rotating their
 *          keys; repeated until the batch fits. */
enum em_kv_policy { EM_KV_FULL, EM_KV_SHIFT, EM_KV_SINK, EM_KV_ELASTIC };
/*   SINK   attention sinks + sliding window (StreamingLLM; AccLLM's Lambda shape): before
 *          each chunk of T tokens the oldest window rows go so that at most n_sink +
 *          n_window cells remain after it; the sinks move to the positions just before the
 *          window's first, so every token sees the sinks and the window at the distances
 *          StreamingLLM's in-cache positions give; window keys are never re-rotated except
 *          when the positions are renumbered (once every pos_limit tokens or so).
 *   ELASTIC Elastic Cache: each cell's importance is the attention it receives (column
 *          sums of the attention probabilities, summed over heads and layers). When a
 *          prompt of more than one token is followed by a single token, the cache is merged
 *          to floor(n (1 - ratio)) cells: the first n_sink cells and the last are kept, of
 *          the rest the least important go, each merged (K and V averaged) into the kept
 *          cell nearest in position; the fixed eviction index P is then n + distance (at
 *          least n_sink). During generation, each token beyond floor(N (1 - ratio)) cells
 *          (N tokens seen) removes the cell at P. A chunk that does not fit merges first
 *          (at least ratio of the cells, or as many as it needs), ranking cells by their
 *          column sum over the number of tokens that have seen them. The same cells are
 *          kept in every layer. */
/* The policy named by name ("full", "shift", "sink", "elastic"; NULL: full), or -1. */
int em_kv_policy_parse(const char *name);
/* Sets the policy and its parameters (0: defaults: n_sink 4, n_window n_ctx - n_sink -
 * n_ctx / 4, ratio 0.2), allocating what it needs; EMBER_E_INVALID or EMBER_E_NOMEM
 * (recorded). *max_chunk gets the most tokens per sequence a chunk may hold (n_window
 * for sink, n_ctx / 2 for elastic, otherwise unchanged). */
ember_status em_kv_set_policy(em_kv_cache *kv, int policy, int n_keep, int n_sink, int n_window, float ratio,
                              int n_ctx_train, int *max_chunk);
/* Whether the policy makes room per chunk (sink, elastic) rather than per batch. */
static inline int em_kv_per_chunk(const em_kv_cache *kv) { return kv->policy >= EM_KV_SINK; }

/* The cache type named by name ("f32", "f16", "bf16", "q8_0", "q4_0"; NULL: f16), or -1.
 * em_kv_type_names lists them for messages. */
int em_kv_type_parse(const char *name);
extern const char em_kv_type_names[];
const char *em_kv_type_name(int type);
/* Bytes of K and V for one token, over all layers, with these types. */
uint64_t em_kv_bytes_per_token(const struct em_hparams *hp, int type_k, int type_v);
/* EMBER_E_UNSUPPORTED when the model's head_dim cannot be stored in the type. */
ember_status em_kv_check_type(const struct em_hparams *hp, int type, const char *which);

/* Allocates an empty cache; EMBER_E_NOMEM (recorded) when it does not fit. */
ember_status em_kv_init(em_kv_cache *kv, const struct em_hparams *hp, int n_seq, int n_ctx,
                        int type_k, int type_v);
void em_kv_free(em_kv_cache *kv);
uint64_t em_kv_bytes(const em_kv_cache *kv);  /* the whole allocation */

/* Row views: cell `cell` of sequence s in layer l. Consecutive cells are row_k / row_v
 * bytes apart. */
static inline char *em_kv_k(const em_kv_cache *kv, int l, int s, int cell) {
    return kv->k + (((size_t)l * kv->n_seq + (size_t)s) * kv->n_ctx + (size_t)(kv->base[s] + cell)) * kv->row_k;
}
static inline char *em_kv_v(const em_kv_cache *kv, int l, int s, int cell) {
    return kv->v + (((size_t)l * kv->n_seq + (size_t)s) * kv->n_ctx + (size_t)(kv->base[s] + cell)) * kv->row_v;
}
/* The orthonormal Walsh-Hadamard transform (Sylvester order, scaled by 1/sqrt(b)) of each
 * block of b values of x[0..n), in place; b a power of two dividing n. */
void em_kv_hadamard(float *x, int n, int b);
/* Converts one token's K and V rows (n_head_kv * head_dim floats each) into the cell. */
void em_kv_store(const em_kv_cache *kv, int l, int s, int cell, const float *k, const float *v);

/* The position the next token of sequence s gets. */
static inline int em_kv_next_pos(const em_kv_cache *kv, int s) {
    const int n = kv->n_cells[s];
    return n ? kv->pos[(size_t)s * kv->n_ctx + n - 1] + 1 : 0;
}
/* The first cell in [0, end) of sequence s whose position is >= min_pos (end if none). */
int em_kv_find(const em_kv_cache *kv, int s, int end, int min_pos);

/* Sequence operations (llama.h's seq_rm / seq_keep / seq_cp / seq_add). Positions
 * p0 < 0 mean 0 and p1 < 0 mean "to the end". Other sequences are never touched.
 * With a recurrent state (kv->ssm): seq_rm and truncation need em_kv_seq_rm_check first
 * (em_ssm_check_rm's rules); seq_cp copies the state when it copies all of src and is
 * refused by em_kv_seq_cp_check otherwise; seq_keep and seq_add leave states as they are;
 * the SHIFT policy cannot drop a recurrent state's oldest tokens (make_room refuses). */
ember_status em_kv_seq_rm_check(const em_kv_cache *kv, int s, int p0, int p1);
ember_status em_kv_seq_cp_check(const em_kv_cache *kv, int src, int p0, int p1);
void em_kv_seq_rm(em_kv_cache *kv, int s, int p0, int p1);
void em_kv_seq_keep(em_kv_cache *kv, int s);
void em_kv_seq_cp(em_kv_cache *kv, int src, int dst, int p0, int p1);
/* Keeps the first n cells of sequence s (n <= n_cells). */
void em_kv_seq_truncate(em_kv_cache *kv, int s, int n);
/* Adds delta to the positions in [p0, p1) of sequence s and re-rotates their K rows by
 * delta (m's RoPE, per layer); cells whose position would fall below 0 are removed.
 * EMBER_E_INVALID (nothing changed) when the positions would no longer increase. */
ember_status em_kv_seq_add(em_kv_cache *kv, const struct ember_model *m, int s, int p0, int p1, int delta);

/* Room for cnt[s] more tokens in each sequence s as the policy says: SHIFT shifts the
 * sequences that lack room. EMBER_E_CONTEXT_FULL (recorded, nothing changed) when a
 * sequence cannot get it. apply = 0 only checks; a call with apply = 1 after a successful
 * check cannot fail. */
ember_status em_kv_make_room(em_kv_cache *kv, const struct ember_model *m, const int *cnt, int apply);
/* elastic: em_kv_head_rows gives KV head kvh's K rows of cells [c0, c1) of sequence s in
 * layer l as floats (head_dim apart, in the cache's scratch); em_kv_colsum adds to the
 * importance of each of those cells the attention probability it gets from one query
 * head q (as the attention kernel sees it: score = scale * q.k, soft-capped if softcap). */
const float *em_kv_head_rows(const em_kv_cache *kv, int l, int s, int kvh, int c0, int c1);
void em_kv_colsum(em_kv_cache *kv, int s, const float *q, const float *ck, int c0, int c1, float scale,
                  float softcap);
#endif
