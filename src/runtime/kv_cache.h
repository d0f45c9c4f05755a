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
 * cells a sequence never reaches cost no RAM. */
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
} em_kv_cache;

/* When a sequence has no room for a batch's tokens:
 *   FULL   the decode fails with EMBER_E_CONTEXT_FULL (nothing changes);
 *   SHIFT  llama.cpp's context shift: keep the first n_keep cells, remove half of the rest
 *          (the oldest), move the others back into the freed positions re-rotating their
 *          keys; repeated until the batch fits. */
enum em_kv_policy { EM_KV_FULL, EM_KV_SHIFT };
/* The policy named by name ("full", "shift"; NULL: full), or -1. */
int em_kv_policy_parse(const char *name);

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
    return kv->k + (((size_t)l * kv->n_seq + (size_t)s) * kv->n_ctx + (size_t)cell) * kv->row_k;
}
static inline char *em_kv_v(const em_kv_cache *kv, int l, int s, int cell) {
    return kv->v + (((size_t)l * kv->n_seq + (size_t)s) * kv->n_ctx + (size_t)cell) * kv->row_v;
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
/* Adds delta to the positions in [p0, p1) of sequence s and re-rotates their K rows by
 * delta (m's RoPE, per layer); cells whose position would fall below 0 are removed.
 * EMBER_E_INVALID (nothing changed) when the positions would no longer increase. */
ember_status em_kv_seq_add(em_kv_cache *kv, const struct ember_model *m, int s, int p0, int p1, int delta);

/* Room for cnt[s] more tokens in each sequence s as the policy says: SHIFT shifts the
 * sequences that lack room. EMBER_E_CONTEXT_FULL (recorded, nothing changed) when a
 * sequence cannot get it. apply = 0 only checks; a call with apply = 1 after a successful
 * check cannot fail. */
ember_status em_kv_make_room(em_kv_cache *kv, const struct ember_model *m, const int *cnt, int apply);
#endif
