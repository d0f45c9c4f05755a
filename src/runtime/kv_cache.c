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
    if (!strcmp(name, "sink")) return EM_KV_SINK;
    if (!strcmp(name, "elastic")) return EM_KV_ELASTIC;
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
    kv->base = calloc((size_t)n_seq, sizeof *kv->base);
    if (!kv->k || !kv->v || !kv->n_cells || !kv->pos || !kv->row || !kv->base) {
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
    free(kv->base);
    free(kv->sink_k);
    free(kv->sink_v);
    free(kv->sink_pos);
    free(kv->sink_ok);
    free(kv->imp);
    free(kv->born);
    free(kv->n_seen);
    free(kv->fix_p);
    free(kv->pending);
    free(kv->acc);
    free(kv->work);
    free(kv->rank);
    memset(kv, 0, sizeof *kv);
}

ember_status em_kv_set_policy(em_kv_cache *kv, int policy, int n_keep, int n_sink, int n_window, float ratio,
                              int n_ctx_train, int *max_chunk) {
    kv->policy = policy;
    kv->n_keep = n_keep;
    if (policy < EM_KV_SINK) return EMBER_OK;
    const int n_ctx = kv->n_ctx, kvdim = kv->n_head_kv * kv->head_dim;
    const size_t ns = (size_t)kv->n_seq;
    kv->n_sink = n_sink ? n_sink : 4;
    if (kv->n_sink < 1 || kv->n_sink > n_ctx / 2)
        return em_fail(EMBER_E_INVALID, "%d sink tokens: a context of %d takes 1 .. %d", kv->n_sink,
                       n_ctx, n_ctx / 2);
    if (policy == EM_KV_SINK) {
        kv->n_window = n_window ? n_window : n_ctx - kv->n_sink - n_ctx / 4;
        if (kv->n_window < 1 || kv->n_sink + kv->n_window > n_ctx)
            return em_fail(EMBER_E_INVALID, "a sink window of %d tokens does not fit: with %d sinks a context of %d "
                           "takes 1 .. %d", kv->n_window, kv->n_sink, n_ctx, n_ctx - kv->n_sink);
        kv->pos_limit = n_ctx_train > n_ctx ? n_ctx_train : n_ctx;
        if (*max_chunk > kv->n_window) *max_chunk = kv->n_window;
        kv->sink_k = malloc(ns * kv->n_layer * kv->n_sink * kvdim * sizeof *kv->sink_k);
        kv->sink_v = malloc(ns * kv->n_layer * kv->n_sink * kv->row_v);
        kv->sink_pos = malloc(ns * kv->n_sink * sizeof *kv->sink_pos);
        kv->sink_ok = calloc(ns, sizeof *kv->sink_ok);
        if (!kv->sink_k || !kv->sink_v || !kv->sink_pos || !kv->sink_ok)
            return em_fail(EMBER_E_NOMEM, "out of memory for the sink rows");
        return EMBER_OK;
    }
    kv->ratio = ratio != 0.0f ? ratio : 0.2f;
    if (!(kv->ratio > 0.0f && kv->ratio < 1.0f))
        return em_fail(EMBER_E_INVALID, "elastic ratio %g: the share of cells merged away must lie in (0, 1)", kv->ratio);
    if (n_ctx < 2 * kv->n_sink + 4)
        return em_fail(EMBER_E_INVALID, "the elastic policy needs a context of at least %d cells (it is %d)",
                       2 * kv->n_sink + 4, n_ctx);
    kv->distance = -25;
    if (*max_chunk > n_ctx / 2) *max_chunk = n_ctx / 2;
    kv->imp = calloc(ns * n_ctx, sizeof *kv->imp);
    kv->born = calloc(ns * n_ctx, sizeof *kv->born);
    kv->n_seen = calloc(ns, sizeof *kv->n_seen);
    kv->fix_p = malloc(ns * sizeof *kv->fix_p);
    kv->pending = calloc(ns, sizeof *kv->pending);
    kv->acc = malloc(((size_t)n_ctx * kv->head_dim + n_ctx + 2 * (size_t)kvdim) * sizeof *kv->acc);
    kv->work = malloc((size_t)n_ctx * sizeof *kv->work);
    kv->rank = malloc((size_t)n_ctx * sizeof *kv->rank);
    if (!kv->imp || !kv->born || !kv->n_seen || !kv->fix_p || !kv->pending || !kv->acc || !kv->work || !kv->rank)
        return em_fail(EMBER_E_NOMEM, "out of memory for the elastic cache's state");
    for (size_t s = 0; s < ns; s++) kv->fix_p[s] = -1;
    return EMBER_OK;
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
    if (kv->imp) {
        float *w = kv->imp + (size_t)s * kv->n_ctx;
        int64_t *b = kv->born + (size_t)s * kv->n_ctx;
        memmove(w + to, w + from, (size_t)n * sizeof *w);
        memmove(b + to, b + from, (size_t)n * sizeof *b);
    }
}

/* After an operation from outside the policy: the sink rows are taken again when needed,
 * and an empty sequence starts over at slot 0. */
static void touched(em_kv_cache *kv, int s) {
    if (kv->sink_ok) kv->sink_ok[s] = 0;
    if (kv->n_cells[s]) return;
    kv->base[s] = 0;
    if (kv->n_seen) {  /* elastic: an empty sequence starts a new prompt */
        kv->n_seen[s] = 0;
        kv->fix_p[s] = -1;
        kv->pending[s] = 0;
    }
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
    touched(kv, s);
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
        if (i != s) { kv->n_cells[i] = 0; touched(kv, i); }
}

void em_kv_seq_truncate(em_kv_cache *kv, int s, int n) {
    const int sinks_kept = kv->sink_ok && n >= kv->n_sink && kv->sink_ok[s];  /* cells [0, n_sink) stay as they are */
    kv->n_cells[s] = n;
    touched(kv, s);
    if (sinks_kept) kv->sink_ok[s] = 1;
}

void em_kv_seq_cp(em_kv_cache *kv, int src, int dst, int p0, int p1) {
    if (src == dst) return;
    int c0, c1;
    pos_range(kv, src, p0, p1, &c0, &c1);
    const int n = c1 - c0;
    kv->base[dst] = 0;
    for (int l = 0; l < kv->n_layer && n > 0; l++) {
        memcpy(em_kv_k(kv, l, dst, 0), em_kv_k(kv, l, src, c0), (size_t)n * kv->row_k);
        memcpy(em_kv_v(kv, l, dst, 0), em_kv_v(kv, l, src, c0), (size_t)n * kv->row_v);
    }
    memcpy(kv->pos + (size_t)dst * kv->n_ctx, kv->pos + (size_t)src * kv->n_ctx + c0, (size_t)(n > 0 ? n : 0) * sizeof *kv->pos);
    kv->n_cells[dst] = n > 0 ? n : 0;
    if (n > 0) em_ssm_cp(&kv->ssm, src, dst);  /* em_kv_seq_cp_check: all of src */
    if (kv->imp && n > 0) {
        memcpy(kv->imp + (size_t)dst * kv->n_ctx, kv->imp + (size_t)src * kv->n_ctx + c0, (size_t)n * sizeof *kv->imp);
        memcpy(kv->born + (size_t)dst * kv->n_ctx, kv->born + (size_t)src * kv->n_ctx + c0, (size_t)n * sizeof *kv->born);
    }
    touched(kv, dst);
}

/* Re-rotates the K rows of cell c of sequence s (every layer) by delta positions. */
static void rotate_cell(em_kv_cache *kv, const struct ember_model *m, int s, int c, int delta) {
    const int kvdim = kv->n_head_kv * kv->head_dim;
    float *row = kv->row;
    for (int l = 0; l < kv->n_layer; l++) {
        char *kr = em_kv_k(kv, l, s, c);
        em_dequantize_row(kv->type_k, kr, row, kvdim);
        if (kv->rot_k) em_kv_hadamard(row, kvdim, kv->rot_k);  /* back to the RoPE basis */
        em_rope_shift(m, kv->n_ctx, l, row, delta);
        if (kv->rot_k) em_kv_hadamard(row, kvdim, kv->rot_k);
        store_row(kv->type_k, row, kr, kvdim);
    }
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
    for (int c = c0 + drop; c < c1; c++) {
        rotate_cell(kv, m, s, c, delta);
        p[c] += delta;
    }
    if (drop) {
        move_cells(kv, s, c0, c0 + drop, n - c0 - drop);
        kv->n_cells[s] -= drop;
    }
    touched(kv, s);
    return EMBER_OK;
}

/* The cells a shift of a sequence holding n cells discards: half of those after n_keep,
 * as llama.cpp (n_discard = (n_past - n_keep) / 2); 0 when nothing can go. */
static int shift_discard(const em_kv_cache *kv, int n) {
    const int keep = kv->n_keep < n ? kv->n_keep : n;
    return (n - keep) / 2;
}

/* ---- sink: attention sinks + sliding window ----------------------------------------- */
/* Takes the sinks (cells [0, n_sink)) of sequence s as floats, undoing the Hadamard
 * rotation of a quantized cache; their V rows as stored. */
static void sink_take(em_kv_cache *kv, int s) {
    const int S = kv->n_sink, kvdim = kv->n_head_kv * kv->head_dim;
    for (int l = 0; l < kv->n_layer; l++)
        for (int i = 0; i < S; i++) {
            const size_t at = ((size_t)s * kv->n_layer + l) * S + i;
            float *row = kv->sink_k + at * kvdim;
            em_dequantize_row(kv->type_k, em_kv_k(kv, l, s, i), row, kvdim);
            if (kv->rot_k) em_kv_hadamard(row, kvdim, kv->rot_k);
            memcpy(kv->sink_v + at * kv->row_v, em_kv_v(kv, l, s, i), kv->row_v);
        }
    memcpy(kv->sink_pos + (size_t)s * S, kv->pos + (size_t)s * kv->n_ctx, (size_t)S * sizeof *kv->sink_pos);
    kv->sink_ok[s] = 1;
}

/* Writes the sinks into cells [0, n_sink) at the positions just before `first` (the
 * window's first position), each K row rotated from the one taken (never from an earlier
 * re-rotated copy). */
static void sink_place(em_kv_cache *kv, const struct ember_model *m, int s, int first) {
    const int S = kv->n_sink, kvdim = kv->n_head_kv * kv->head_dim;
    int32_t *p = kv->pos + (size_t)s * kv->n_ctx;
    for (int i = 0; i < S; i++) p[i] = first - S + i;
    for (int l = 0; l < kv->n_layer; l++)
        for (int i = 0; i < S; i++) {
            const size_t at = ((size_t)s * kv->n_layer + l) * S + i;
            float *row = kv->row;
            memcpy(row, kv->sink_k + at * kvdim, (size_t)kvdim * sizeof *row);
            em_rope_shift(m, kv->n_ctx, l, row, p[i] - kv->sink_pos[(size_t)s * S + i]);
            if (kv->rot_k) em_kv_hadamard(row, kvdim, kv->rot_k);
            store_row(kv->type_k, row, em_kv_k(kv, l, s, i), kvdim);
            memcpy(em_kv_v(kv, l, s, i), kv->sink_v + at * kv->row_v, kv->row_v);
        }
}

/* Room for T <= n_window tokens in sequence s: the oldest window rows go so that n_sink +
 * n_window cells remain with the chunk; the window stays in its slots (base moves past
 * the freed ones) unless the slots run out, when the cells move to the front once; the
 * sinks are placed before the window. Positions are renumbered to the cell indexes
 * (window keys re-rotated once) when the chunk would reach pos_limit. */
static void sink_room(em_kv_cache *kv, const struct ember_model *m, int s, int T) {
    const int S = kv->n_sink;
    int n = kv->n_cells[s], place = 0;
    int32_t *p = kv->pos + (size_t)s * kv->n_ctx;
    int next = n ? p[n - 1] + 1 : 0;  /* the chunk's first position */
    const int e = n + T - (S + kv->n_window);  /* T <= n_window: e > 0 means n >= S + e */
    if (e > 0) {
        if (!kv->sink_ok[s]) sink_take(kv, s);  /* before their slots are given up */
        memmove(p + S, p + S + e, (size_t)(n - S - e) * sizeof *p);
        kv->base[s] += e;
        kv->n_cells[s] = n -= e;
        place = 1;
    }
    if (kv->base[s] + n + T > kv->n_ctx) {  /* out of slots: all cells to the front */
        const int b = kv->base[s];
        for (int l = 0; l < kv->n_layer; l++) {
            kv->base[s] = b;
            char *k0 = em_kv_k(kv, l, s, 0), *v0 = em_kv_v(kv, l, s, 0);
            kv->base[s] = 0;
            memmove(em_kv_k(kv, l, s, 0), k0, (size_t)n * kv->row_k);
            memmove(em_kv_v(kv, l, s, 0), v0, (size_t)n * kv->row_v);
        }
    }
    if (n >= S && (int64_t)next - 1 + T >= kv->pos_limit) {
        if (!kv->sink_ok[s]) sink_take(kv, s);
        for (int c = S; c < n; c++)
            if (p[c] != c) { rotate_cell(kv, m, s, c, c - p[c]); p[c] = c; }
        next = n;
        place = 1;
    }
    if (place) sink_place(kv, m, s, n > S ? p[S] : next);
}

/* ---- elastic: merge by importance, evict at a fixed point ----------------------------- */
const float *em_kv_head_rows(const em_kv_cache *kv, int l, int s, int kvh, int c0, int c1) {
    const int hd = kv->head_dim, kvdim = kv->n_head_kv * hd;
    float *ck = kv->acc + 2 * (size_t)kvdim;
    for (int c = c0; c < c1; c++) {
        float *row = ck + (size_t)(c - c0) * hd;
        if (kv->rot_k) {  /* the Hadamard blocks may span heads: the whole row */
            float *full = kv->row;
            em_dequantize_row(kv->type_k, em_kv_k(kv, l, s, c), full, kvdim);
            memcpy(row, full + (size_t)kvh * hd, (size_t)hd * sizeof *row);
        } else {
            em_dequantize_row(kv->type_k, em_kv_k(kv, l, s, c) + (size_t)kvh * kv->head_k, row, hd);
        }
    }
    return ck;
}

void em_kv_colsum(em_kv_cache *kv, int s, const float *q, const float *ck, int c0, int c1, float scale,
                  float softcap) {
    const int hd = kv->head_dim;
    float *sc = kv->acc + 2 * (size_t)kv->n_head_kv * kv->head_dim + (size_t)kv->n_ctx * kv->head_dim;
    float mx = -INFINITY, sum = 0.0f;
    for (int c = c0; c < c1; c++) {
        const float *k = ck + (size_t)(c - c0) * hd;
        float d = 0.0f;
        for (int i = 0; i < hd; i++) d += q[i] * k[i];
        d *= scale;
        if (softcap > 0.0f) d = softcap * tanhf(d / softcap);
        sc[c - c0] = d;
        if (d > mx) mx = d;
    }
    for (int c = c0; c < c1; c++) sum += sc[c - c0] = expf(sc[c - c0] - mx);
    float *w = kv->imp + (size_t)s * kv->n_ctx;
    for (int c = c0; c < c1; c++) w[c] += sc[c - c0] / sum;
}

/* Least important first; ties: the earlier cell first. */
static int by_imp(const void *a, const void *b) {
    const struct em_kv_rank *x = a, *y = b;
    if (x->w != y->w) return x->w < y->w ? -1 : 1;
    return x->c - y->c;
}

/* Removes `forget` cells of sequence s (of those after the first n_sink and before the
 * last, the least important), merging each into the kept cell nearest in position (the
 * earlier one on a tie): the kept cell's K and V rows become the mean of its own and its
 * merged rows, its importance their sum. Importance is the column sum, or with `mean` the
 * column sum over the tokens that have seen the cell (so older cells, which more tokens
 * attended, are not favoured for that alone). */
static void elastic_merge(em_kv_cache *kv, int s, int forget, int mean) {
    const int n = kv->n_cells[s], S = kv->n_sink < n ? kv->n_sink : n, kvdim = kv->n_head_kv * kv->head_dim;
    const int cand = n - 1 - S;
    if (forget > cand) forget = cand;
    if (forget <= 0) return;
    int32_t *p = kv->pos + (size_t)s * kv->n_ctx;
    float *w = kv->imp + (size_t)s * kv->n_ctx;
    struct em_kv_rank *rank = kv->rank;
    int *to = kv->work;  /* to[c]: -1 kept, else the cell c merges into */
    const int64_t *born = kv->born + (size_t)s * kv->n_ctx;
    for (int i = 0; i < cand; i++)
        rank[i] = (struct em_kv_rank){ mean ? w[S + i] / (float)(kv->n_seen[s] - born[S + i]) : w[S + i], S + i };
    qsort(rank, (size_t)cand, sizeof *rank, by_imp);
    for (int c = 0; c < n; c++) to[c] = -1;
    for (int i = 0; i < forget; i++) to[rank[i].c] = -2;
#define gone(c) (to[c] != -1)
    for (int c = 0, prev = -1; c < n; c++) {
        if (!gone(c)) { prev = c; continue; }
        int next = c + 1;
        while (gone(next)) next++;  /* the last cell is kept */
        to[c] = prev >= 0 && p[c] - p[prev] <= p[next] - p[c] ? prev : next;
    }
    float *ak = kv->acc, *av = kv->acc + kvdim, *row = kv->row;
    for (int a = 0; a < n; a++) {
        if (gone(a)) continue;
        int lo = a, hi = a;  /* the cells merged into a lie next to it */
        while (lo > 0 && gone(lo - 1) && to[lo - 1] == a) lo--;
        while (hi + 1 < n && gone(hi + 1) && to[hi + 1] == a) hi++;
        if (lo == hi) continue;
        const float inv = 1.0f / (float)(hi - lo + 1);
        for (int l = 0; l < kv->n_layer; l++) {
            memset(ak, 0, 2 * (size_t)kvdim * sizeof *ak);
            for (int c = lo; c <= hi; c++) {
                em_dequantize_row(kv->type_k, em_kv_k(kv, l, s, c), row, kvdim);
                for (int i = 0; i < kvdim; i++) ak[i] += row[i];
                em_dequantize_row(kv->type_v, em_kv_v(kv, l, s, c), row, kvdim);
                for (int i = 0; i < kvdim; i++) av[i] += row[i];
            }
            for (int i = 0; i < kvdim; i++) { ak[i] *= inv; av[i] *= inv; }
            store_row(kv->type_k, ak, em_kv_k(kv, l, s, a), kvdim);
            store_row(kv->type_v, av, em_kv_v(kv, l, s, a), kvdim);
        }
        for (int c = lo; c <= hi; c++)
            if (c != a) w[a] += w[c];
    }
    /* close the gaps: runs of kept cells move down */
    int out = 0;
    for (int c = 0; c < n;) {
        if (gone(c)) { c++; continue; }
        int e = c;
        while (e < n && !gone(e)) e++;
        move_cells(kv, s, out, c, e - c);
        out += e - c;
        c = e;
    }
    kv->n_cells[s] = out;
#undef gone
}

/* Removes cell c of sequence s. */
static void remove_cell(em_kv_cache *kv, int s, int c) {
    move_cells(kv, s, c, c + 1, kv->n_cells[s] - c - 1);
    kv->n_cells[s]--;
}

static void elastic_room(em_kv_cache *kv, int s, int T) {
    const double keep = 1.0 - kv->ratio;
    int n = kv->n_cells[s];
    if (T == 1 && kv->pending[s]) {  /* the prompt is in: merge it */
        elastic_merge(kv, s, n - (int)floor(n * keep), 0);
        n = kv->n_cells[s];
        kv->fix_p[s] = n + kv->distance > kv->n_sink ? n + kv->distance : kv->n_sink;
        kv->pending[s] = 0;
    } else if (T == 1 && kv->fix_p[s] >= 0) {  /* generation: evict at the fixed point */
        const int64_t budget = (int64_t)floor((double)(kv->n_seen[s] + 1) * keep);
        if (n + 1 > budget && kv->fix_p[s] < n - 1) remove_cell(kv, s, kv->fix_p[s]);
        n = kv->n_cells[s];
    }
    if (n + T > kv->n_ctx) {  /* full: merge whenever it is */
        int f = n - (int)floor(n * keep);
        if (f < n + T - kv->n_ctx) f = n + T - kv->n_ctx;
        elastic_merge(kv, s, f, 1);
        n = kv->n_cells[s];
        if (kv->fix_p[s] >= 0) kv->fix_p[s] = n + kv->distance > kv->n_sink ? n + kv->distance : kv->n_sink;
    }
    if (T > 1) kv->pending[s] = 1;
    memset(kv->imp + (size_t)s * kv->n_ctx + n, 0, (size_t)T * sizeof *kv->imp);  /* the chunk's cells */
    for (int j = 0; j < T; j++) kv->born[(size_t)s * kv->n_ctx + n + j] = kv->n_seen[s] + j;
    kv->n_seen[s] += T;
}

ember_status em_kv_make_room(em_kv_cache *kv, const struct ember_model *m, const int *cnt, int apply) {
    if (em_kv_per_chunk(kv)) {  /* the context keeps chunks within what these can always make room for */
        for (int s = 0; apply && s < kv->n_seq; s++)
            if (cnt[s] > 0) {
                if (kv->policy == EM_KV_SINK) sink_room(kv, m, s, cnt[s]);
                else elastic_room(kv, s, cnt[s]);
            }
        return EMBER_OK;
    }
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
