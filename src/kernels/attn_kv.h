/* attn_kv.h: the one-pass attention over a cache of any type (kernels.h, attn_kv), as one
 * body that kern_ref.c and each ISA file compile with their own flags and their own
 * AXPY (y += a x over hd floats).
 *
 * K is read in place: q is converted once to K's vec_dot type (Q8_0 for q8_0 and q4_0
 * caches, as llama.cpp's flash attention does) and the scores of EM_ATTN_CHUNK positions
 * for all n_q heads come from one call of the table's own matmul kernel for K's type, with
 * the cached rows as the matrix (bfp4 and q4_0 K: exact integer block sums times the
 * block's scale and q's). V rows are converted one at a time (hd floats, on the stack;
 * bfp4 rows by the ISA's own bfp4_row, exact like em_dequantize_row: a 4-bit integer times
 * a power of two) and added into an F32 accumulator per head. The online softmax update is the
 * one of kernels.h: per position and head, a score above the running max M rescales the
 * accumulator and the sum by e^(M - s); otherwise the V row is weighted by e^(s - M);
 * S = S * ms + vs (unfused). Nothing here depends on how work is split over threads. */
#ifndef EMBER_ATTN_KV_H
#define EMBER_ATTN_KV_H
#include <math.h>
#include <string.h>
#include "kernels/kernels.h"

static inline void attn_kv_body(const em_kernels *self, void (*axpy)(float *y, const float *x, float a, int n),
                                void (*bfp4_row)(const void *x, float *y, int n), float *out, const float *q, int n_q, int tk, const void *k, size_t krow,
                                int tv, const void *v, size_t vrow, int n_kv, int hd, float scale) {
    enum { G = EM_ATTN_MAX_GROUP, C = EM_ATTN_CHUNK };
    const int qt = em_type_get(tk)->vec_dot_type;
    const size_t qcol = (em_row_size(qt, hd) + 63) & ~(size_t)63;
    _Alignas(64) char qq[G * (EM_ATTN_MAX_HD * sizeof(float) + 64)];
    _Alignas(64) float sc[G * C];
    _Alignas(64) float vf[EM_ATTN_MAX_HD];
    float M[G], S[G];
    for (int h = 0; h < n_q; h++) {
        self->quantize_act[qt](q + (size_t)h * hd, qq + (size_t)h * qcol, hd);
        M[h] = -INFINITY;
        S[h] = 0.0f;
        memset(out + (size_t)h * hd, 0, (size_t)hd * sizeof(float));
    }
    for (int j0 = 0; j0 < n_kv; j0 += C) {
        const int nc = n_kv - j0 < C ? n_kv - j0 : C;
        self->matmul[tk](hd, (const char *)k + (size_t)j0 * krow, krow, 0, nc, qq, qcol, n_q, sc, C);
        for (int j = 0; j < nc; j++) {
            const char *vr = (const char *)v + (size_t)(j0 + j) * vrow;
            const float *vx = vf;
            if (tv == EM_F32) vx = (const float *)vr;
            else if (tv == EM_KV_BFP4 && bfp4_row) bfp4_row(vr, vf, hd);
            else em_dequantize_row(tv, vr, vf, hd);
            for (int h = 0; h < n_q; h++) {
                float *o = out + (size_t)h * hd;
                const float s = sc[h * C + j] * scale;
                float ms = 1.0f, vs = 1.0f;
                if (s > M[h]) {  /* new maximum: rescale what was accumulated so far */
                    ms = expf(M[h] - s);
                    M[h] = s;
                    if (ms != 1.0f)
                        for (int i = 0; i < hd; i++) o[i] *= ms;
                } else {
                    vs = expf(s - M[h]);
                }
                axpy(o, vx, vs, hd);
                S[h] = S[h] * ms + vs;
            }
        }
    }
    for (int h = 0; h < n_q; h++) {
        const float inv = S[h] == 0.0f ? 0.0f : 1.0f / S[h];
        for (int i = 0; i < hd; i++) out[(size_t)h * hd + i] *= inv;
    }
}
#endif
