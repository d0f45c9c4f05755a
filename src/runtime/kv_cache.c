/* kv_cache.c: the KV cache (see kv_cache.h). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "runtime/internal.h"

static const int kv_types[] = { EM_F32, EM_F16, EM_BF16, EM_Q8_0, EM_Q4_0 };
const char em_kv_type_names[] = "f32, f16, bf16, q8_0, q4_0";

int em_kv_policy_parse(const char *name) {
    if (!name || !strcmp(name, "full")) return EM_KV_FULL;
    if (!strcmp(name, "shift")) return EM_KV_SHIFT;
    return -1;
}

int em_kv_type_parse(const char *name) {
    if (!name) return EM_F16;
    for (size_t i = 0; i < sizeof kv_types / sizeof *kv_types; i++)
        if (!strcmp(name, em_type_get(kv_types[i])->name)) return kv_types[i];
    return -1;
}

const char *em_kv_type_name(int type) {
    const em_type_info *ti = em_type_get(type);
    return ti ? ti->name : "?";
}

uint64_t em_kv_bytes_per_token(const em_hparams *hp, int type_k, int type_v) {
    const int64_t nk = (int64_t)hp->n_head_kv * hp->head_dim, nv = (int64_t)hp->n_head_kv * hp->head_dim_v;
    return (uint64_t)hp->n_layer * (em_row_size(type_k, nk) + em_row_size(type_v, nv));
}

ember_status em_kv_check_type(const em_hparams *hp, int type, const char *which) {
    const em_type_info *ti = em_type_get(type);
    if (hp->head_dim % ti->blck)
        return em_fail(EMBER_E_UNSUPPORTED, "a %s cache of type %s needs head_dim to be a multiple of %d (it is %d)",
                       which, ti->name, ti->blck, hp->head_dim);
    return EMBER_OK;
}

ember_status em_kv_init(em_kv_cache *kv, const em_hparams *hp, int n_seq, int n_ctx, int type_k, int type_v) {
    memset(kv, 0, sizeof *kv);
    ember_status st;
    if ((st = em_kv_check_type(hp, type_k, "K")) || (st = em_kv_check_type(hp, type_v, "V"))) return st;
    if (hp->attn_softcap > 0.0f && !(type_k == type_v && (type_k == EM_F32 || type_k == EM_F16)))
        return em_fail(EMBER_E_UNSUPPORTED, "attention soft-capping (gemma2) runs with an f16 or f32 cache only "
                       "(K and V alike), not K %s / V %s", em_kv_type_name(type_k), em_kv_type_name(type_v));
    kv->type_k = type_k;
    kv->type_v = type_v;
    kv->n_layer = hp->n_layer;
    kv->n_seq = n_seq;
    kv->n_ctx = n_ctx;
    kv->n_head_kv = hp->n_head_kv;
    kv->head_dim = hp->head_dim;
    kv->head_k = em_row_size(type_k, hp->head_dim);
    kv->head_v = em_row_size(type_v, hp->head_dim_v);
    if (em_type_get(type_k)->blck > 1 && hp->head_dim % 64 == 0)
        for (kv->rot_k = 64; hp->head_dim % (2 * kv->rot_k) == 0; kv->rot_k *= 2) {}
    if (em_type_get(type_v)->blck > 1 && hp->head_dim_v % 64 == 0) kv->rot_v = 64;
    kv->row_k = kv->head_k * (size_t)hp->n_head_kv;
    kv->row_v = kv->head_v * (size_t)hp->n_head_kv;
    size_t cells, kb, vb;  /* the row sizes are bounded by load checks */
    if (em_mul_size((size_t)hp->n_layer * (size_t)n_ctx, (size_t)n_seq, &cells) ||
        em_mul_size(cells, kv->row_k, &kb) || em_mul_size(cells, kv->row_v, &vb))
        return em_fail(EMBER_E_NOMEM, "a KV cache of %d sequences x %d positions is too large", n_seq, n_ctx);
    /* calloc: large zeroed blocks come from fresh pages, so unused context costs no RAM. */
    kv->k = calloc(kb, 1);
    kv->v = calloc(vb, 1);
    kv->n_cells = calloc((size_t)n_seq, sizeof *kv->n_cells);
    kv->pos = malloc((size_t)n_seq * (size_t)n_ctx * sizeof *kv->pos);
    kv->row = malloc((size_t)hp->n_head_kv * hp->head_dim * sizeof *kv->row);
    if (!kv->k || !kv->v || !kv->n_cells || !kv->pos || !kv->row) {
        em_kv_free(kv);
        return em_fail(EMBER_E_NOMEM, "out of memory for a KV cache of %d sequences x %d positions", n_seq, n_ctx);
    }
    if ((st = em_ssm_state_init(&kv->ssm, hp, n_seq, 0))) em_kv_free(kv);
    return st;
}

void em_kv_free(em_kv_cache *kv) {
    free(kv->k);
    free(kv->v);
    free(kv->n_cells);
    free(kv->pos);
    free(kv->row);
    em_ssm_state_free(&kv->ssm);
    memset(kv, 0, sizeof *kv);
}

uint64_t em_kv_bytes(const em_kv_cache *kv) {
    return (uint64_t)kv->n_layer * kv->n_seq * kv->n_ctx * (kv->row_k + kv->row_v) + em_ssm_state_bytes(&kv->ssm);
}

void em_kv_hadamard(float *x, int n, int b) {
    const float sc = 1.0f / sqrtf((float)b);
    for (int o = 0; o < n; o += b) {
        float *y = x + o;
        for (int h = 1; h < b; h *= 2)
            for (int i = 0; i < b; i += 2 * h)
                for (int j = i; j < i + h; j++) {
                    const float a = y[j], c = y[j + h];
                    y[j] = a + c;
                    y[j + h] = a - c;
                }
        for (int i = 0; i < b; i++) y[i] *= sc;
    }
}

static void store_row(int type, const float *x, char *dst, int n) {
    if (type == EM_F32) { memcpy(dst, x, (size_t)n * sizeof(float)); return; }
    if (type == EM_F16) {
        uint16_t *d = (uint16_t *)dst;
        for (int i = 0; i < n; i++) d[i] = em_f32_to_f16(x[i]);
        return;
    }
    em_quantize_row(type, x, dst, n);
}

void em_kv_store(const em_kv_cache *kv, int l, int s, int cell, const float *k, const float *v) {
    const int n = kv->n_head_kv * kv->head_dim;
    store_row(kv->type_k, k, em_kv_k(kv, l, s, cell), n);
    store_row(kv->type_v, v, em_kv_v(kv, l, s, cell), n);
}

int em_kv_find(const em_kv_cache *kv, int s, int end, int min_pos) {
    const int32_t *p = kv->pos + (size_t)s * kv->n_ctx;
    int lo = 0, hi = end;
    while (lo < hi) {
        const int mid = lo + (hi - lo) / 2;
        if (p[mid] < min_pos) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* Moves n cells of sequence s from cell `from` to cell `to` (rows of every layer and the
 * positions); the ranges may overlap. */
static void move_cells(em_kv_cache *kv, int s, int to, int from, int n) {
    if (n <= 0 || to == from) return;
    for (int l = 0; l < kv->n_layer; l++) {
        memmove(em_kv_k(kv, l, s, to), em_kv_k(kv, l, s, from), (size_t)n * kv->row_k);
        memmove(em_kv_v(kv, l, s, to), em_kv_v(kv, l, s, from), (size_t)n * kv->row_v);
    }
    int32_t *p = kv->pos + (size_t)s * kv->n_ctx;
    memmove(p + to, p + from, (size_t)n * sizeof *p);
}

/* The cells [c0, c1) of sequence s whose positions lie in [p0, p1) (p0 < 0: 0; p1 < 0: no
 * end). */
static void pos_range(const em_kv_cache *kv, int s, int p0, int p1, int *c0, int *c1) {
    const int n = kv->n_cells[s];
    *c0 = p0 <= 0 ? 0 : em_kv_find(kv, s, n, p0);
    *c1 = p1 < 0 ? n : em_kv_find(kv, s, n, p1);
    if (*c1 < *c0) *c1 = *c0;
}

void em_kv_seq_rm(em_kv_cache *kv, int s, int p0, int p1) {
    int c0, c1;
    pos_range(kv, s, p0, p1, &c0, &c1);
    move_cells(kv, s, c0, c1, kv->n_cells[s] - c1);
    kv->n_cells[s] -= c1 - c0;
    if (c1 > c0) em_ssm_rm(&kv->ssm, s, kv->n_cells[s]);
}

ember_status em_kv_seq_rm_check(const em_kv_cache *kv, int s, int p0, int p1) {
    int c0, c1;
    pos_range(kv, s, p0, p1, &c0, &c1);
    return em_ssm_check_rm(&kv->ssm, s, kv->n_cells[s], c0, c1);
}

ember_status em_kv_seq_cp_check(const em_kv_cache *kv, int src, int p0, int p1) {
    int c0, c1;
    pos_range(kv, src, p0, p1, &c0, &c1);
    if (!kv->ssm.n_layer || c0 >= c1 || (c0 == 0 && c1 == kv->n_cells[src])) return EMBER_OK;
    return em_fail(EMBER_E_UNSUPPORTED, "sequence %d: the model's recurrent (SSM) state covers all of its tokens, "
                   "so only the whole sequence can be copied (not cells %d..%d of %d)", src, c0, c1, kv->n_cells[src]);
}

void em_kv_seq_keep(em_kv_cache *kv, int s) {
    for (int i = 0; i < kv->n_seq; i++)
        if (i != s) kv->n_cells[i] = 0;
}

void em_kv_seq_cp(em_kv_cache *kv, int src, int dst, int p0, int p1) {
    if (src == dst) return;
    int c0, c1;
    pos_range(kv, src, p0, p1, &c0, &c1);
    const int n = c1 - c0;
    for (int l = 0; l < kv->n_layer && n > 0; l++) {
        memcpy(em_kv_k(kv, l, dst, 0), em_kv_k(kv, l, src, c0), (size_t)n * kv->row_k);
        memcpy(em_kv_v(kv, l, dst, 0), em_kv_v(kv, l, src, c0), (size_t)n * kv->row_v);
    }
    memcpy(kv->pos + (size_t)dst * kv->n_ctx, kv->pos + (size_t)src * kv->n_ctx + c0, (size_t)(n > 0 ? n : 0) * sizeof *kv->pos);
    kv->n_cells[dst] = n > 0 ? n : 0;
    if (n > 0) em_ssm_cp(&kv->ssm, src, dst);  /* em_kv_seq_cp_check: all of src */
}

ember_status em_kv_seq_add(em_kv_cache *kv, const struct ember_model *m, int s, int p0, int p1, int delta) {
    int c0, c1;
    pos_range(kv, s, p0, p1, &c0, &c1);
    if (delta == 0 || c0 == c1) return EMBER_OK;
    int32_t *p = kv->pos + (size_t)s * kv->n_ctx;
    const int n = kv->n_cells[s];
    /* Cells falling below position 0 go; the rest must stay in increasing order. */
    int drop = 0;
    while (c0 + drop < c1 && (int64_t)p[c0 + drop] + delta < 0) drop++;
    const int64_t lo = c0 + drop < c1 ? (int64_t)p[c0 + drop] + delta : 0;
    const int64_t hi = (int64_t)p[c1 - 1] + delta;
    if (c0 + drop < c1 && ((c0 > 0 && lo <= p[c0 - 1]) || (c1 < n && hi >= p[c1]) || hi > INT32_MAX - 1))
        return em_fail(EMBER_E_INVALID, "shifting positions [%d, %d) by %d would reorder the sequence", p0, p1, delta);
    const int kvdim = kv->n_head_kv * kv->head_dim;
    float *row = kv->row;
    for (int c = c0 + drop; c < c1; c++) {
        for (int l = 0; l < kv->n_layer; l++) {
            char *kr = em_kv_k(kv, l, s, c);
            em_dequantize_row(kv->type_k, kr, row, kvdim);
            if (kv->rot_k) em_kv_hadamard(row, kvdim, kv->rot_k);  /* back to the RoPE basis */
            em_rope_shift(m, kv->n_ctx, l, row, delta);
            if (kv->rot_k) em_kv_hadamard(row, kvdim, kv->rot_k);
            store_row(kv->type_k, row, kr, kvdim);
        }
        p[c] += delta;
    }
    if (drop) {
        move_cells(kv, s, c0, c0 + drop, n - c0 - drop);
        kv->n_cells[s] -= drop;
    }
    return EMBER_OK;
}

/* The cells a shift of a sequence holding n cells discards: half of those after n_keep,
 * as llama.cpp (n_discard = (n_past - n_keep) / 2); 0 when nothing can go. */
static int shift_discard(const em_kv_cache *kv, int n) {
    const int keep = kv->n_keep < n ? kv->n_keep : n;
    return (n - keep) / 2;
}

ember_status em_kv_make_room(em_kv_cache *kv, const struct ember_model *m, const int *cnt, int apply) {
    for (int pass = 0; pass < 1 + (apply != 0); pass++)  /* check every sequence, then shift */
        for (int s = 0; s < kv->n_seq; s++) {
            int n = kv->n_cells[s];
            if (cnt[s] <= kv->n_ctx - n) continue;
            if (kv->policy == EM_KV_FULL)
                return em_fail(EMBER_E_CONTEXT_FULL, "decode: %d tokens do not fit: %d of %d positions used%s",
                               cnt[s], n, kv->n_ctx, kv->n_seq > 1 ? " in that sequence" : "");
            while (cnt[s] > kv->n_ctx - n) {
                const int d = shift_discard(kv, n);
                if (kv->ssm.n_layer)
                    return em_fail(EMBER_E_CONTEXT_FULL, "decode: %d tokens do not fit: %d of %d positions used, and "
                                   "the context cannot shift: the model's recurrent (SSM) state cannot drop its "
                                   "oldest tokens", cnt[s], n, kv->n_ctx);
                if (d == 0)
                    return em_fail(EMBER_E_CONTEXT_FULL, "decode: %d tokens do not fit in %d positions after "
                                   "keeping %d and shifting out the rest", cnt[s], kv->n_ctx, kv->n_keep);
                if (pass == 1) {
                    /* cells [keep, keep + d) go; the rest move back to the first freed position */
                    const int keep = kv->n_keep < n ? kv->n_keep : n;
                    const int32_t *p = kv->pos + (size_t)s * kv->n_ctx;
                    const int p_from = p[keep], p_rest = p[keep + d];  /* keep + d < n */
                    em_kv_seq_rm(kv, s, p_from, p_rest);
                    em_kv_seq_add(kv, m, s, p_rest, -1, p_from - p_rest);  /* order kept: cannot fail */
                }
                n -= d;
            }
        }
    return EMBER_OK;
}
