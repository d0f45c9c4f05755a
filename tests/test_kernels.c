/* test_kernels.c: every SIMD kernel table the CPU supports (em_kernels_list), slot by slot,
 * against em_kernels_ref, the scalar specification.
 *
 *   quantize_act  bit-exact (memcmp) for finite inputs, including round-half-even ties, zero
 *                 blocks and q8_K's "first element of largest magnitude" sign rule; the
 *                 byte after the output must stay intact.
 *   matmul        random weights (random quants, sane fp16 scales) and activations quantized
 *                 by ref, sizes at block and tile edges, r0 > 0, ncols 1..8. Tolerance per
 *                 output: 2 * (terms + 16) * 2^-24 * mag, where mag = sum_i |w_i a_i| with
 *                 the scale part and the min part of affine weights counted separately
 *                 (their float sums can cancel), and terms = float additions in the ref's
 *                 chain (n for f32 and f16/bf16, blocks for quants): a worst-case bound on
 *                 the two float summation orders, so only order differences are tolerated.
 *                 Outputs start as NaN; rows outside [r0, r1), the ldy padding and a canary
 *                 after the last column must stay untouched. Each column computed alone,
 *                 and the rows split in two calls, must give the same bits as the batch;
 *                 K-quants also at every ncols against odd row counts and at inner sizes
 *                 around the AVX-512 kernels' chunk and pass edges.
 *   attn          random q/K/V, n_kv 1..300, hd in {5, 8, 12, 16, 64, 80, 100, 128}, K/V rows
 *                 strided. Tolerance 1e-5 * max|v| for f32 (only q.k's double summation
 *                 order differs), 4e-3 * max|v| for f16 (an ulp of s could flip an f16
 *                 rounding of the accumulator); since the kernels repeat ref's steps, at
 *                 least 99% of outputs must also be bit-identical (the count is printed).
 *   attn_kv       (caches of any type: f32, f16, bf16, q8_0, q4_0, bfp4 for K and V) each ISA
 *                 against ref's attn_kv within 1e-5 * max|v| (the same body: only the
 *                 matmul's summation order of the scores differs), and ref's against the
 *                 f32 attention on the unquantized rows within the bound of the pair
 *                 (attn_kv_bound below).
 *   rmsnorm       relative 4 * 2^-24 (double sums of squares in a different order).
 *   ssm_scan      bit-exact (states and outputs), d_state at and off the 32-value blocks;
 *                 ref against its definition (state values exact, y within 64 ulps).
 *   swiglu/softmax relative 8 * 2^-24 + 1e-37 absolute (the AVX2 expf is within ~1 ulp of
 *                 exact, libm's within 1, plus the divide/multiply roundings); the largest
 *                 error seen is printed in ulps. */
#include <stdint.h>
#include "kernels/kernels.h"
#include "test.h"

static const em_kernels *ref, *isa;
static const char *isa_name;

/* ---- random numbers (xorshift64*, fixed seeds) ---- */
static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void) {
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}
static float frand(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }  /* [-1, 1) */
static float grand(void) { float s = 0; for (int i = 0; i < 4; i++) s += frand(); return s; }
static uint16_t h16(float f) { return em_f32_to_f16(f); }
/* a sane block scale: +-[0.001, 0.05) */
static uint16_t rscale(void) { float d = 0.001f + 0.049f * (float)rnd() / 4294967296.0f; return h16(rnd() & 1 ? d : -d); }

static uint32_t fbits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static void rand_bytes(void *p, size_t n) { for (size_t i = 0; i < n; i++) ((uint8_t *)p)[i] = (uint8_t)rnd(); }

/* One row of n random weights of type t. */
static void rand_row(int t, void *w, int64_t n) {
    const int64_t nb = n / em_type_get(t)->blck;
    for (int64_t i = 0; i < nb; i++) {
        switch (t) {
        case EM_F32: ((float *)w)[i] = grand(); break;
        case EM_F16: ((uint16_t *)w)[i] = h16(grand()); break;
        case EM_BF16: ((uint16_t *)w)[i] = em_f32_to_bf16(grand()); break;
        case EM_Q8_0: { block_q8_0 *b = (block_q8_0 *)w + i; rand_bytes(b->qs, sizeof b->qs); b->d = rscale(); break; }
        case EM_Q4_0: { block_q4_0 *b = (block_q4_0 *)w + i; rand_bytes(b->qs, sizeof b->qs); b->d = rscale(); break; }
        case EM_Q4_1: { block_q4_1 *b = (block_q4_1 *)w + i; rand_bytes(b->qs, sizeof b->qs); b->d = rscale(); b->m = h16(frand() * 0.3f); break; }
        case EM_Q5_0: { block_q5_0 *b = (block_q5_0 *)w + i; rand_bytes(b->qs, sizeof b->qs); rand_bytes(b->qh, sizeof b->qh); b->d = rscale(); break; }
        case EM_Q5_1: { block_q5_1 *b = (block_q5_1 *)w + i; rand_bytes(b->qs, sizeof b->qs); rand_bytes(b->qh, sizeof b->qh); b->d = rscale(); b->m = h16(frand() * 0.3f); break; }
        case EM_Q4_K: case EM_Q5_K: {
            block_q5_K *b5 = (block_q5_K *)w + i;
            block_q4_K *b4 = (block_q4_K *)w + i;
            if (t == EM_Q5_K) { rand_bytes(b5, sizeof *b5); b5->d = rscale(); b5->dmin = h16(0.01f * (float)rnd() / 4294967296.0f); }
            else { rand_bytes(b4, sizeof *b4); b4->d = rscale(); b4->dmin = h16(0.01f * (float)rnd() / 4294967296.0f); }
            break;
        }
        case EM_Q6_K: { block_q6_K *b = (block_q6_K *)w + i; rand_bytes(b, sizeof *b); b->d = rscale(); break; }
        case EM_Q2_K: { block_q2_K *b = (block_q2_K *)w + i; rand_bytes(b, sizeof *b); b->d = rscale(); b->dmin = h16(0.01f * (float)rnd() / 4294967296.0f); break; }
        case EM_Q3_K: { block_q3_K *b = (block_q3_K *)w + i; rand_bytes(b, sizeof *b); b->d = rscale(); break; }
        /* random codes; iq4_xs scales span -32..31; random tq1_0 bytes are valid trits,
         * random tq2_0 bytes include the unused code 3 (value 2), which kernels must
         * treat as ref does */
        case EM_IQ4_NL: { block_iq4_nl *b = (block_iq4_nl *)w + i; rand_bytes(b->qs, sizeof b->qs); b->d = rscale(); break; }
        case EM_IQ4_XS: { block_iq4_xs *b = (block_iq4_xs *)w + i; rand_bytes(b, sizeof *b); b->d = rscale(); break; }
        case EM_TQ1_0: { block_tq1_0 *b = (block_tq1_0 *)w + i; rand_bytes(b, sizeof *b); b->d = rscale(); break; }
        case EM_TQ2_0: { block_tq2_0 *b = (block_tq2_0 *)w + i; rand_bytes(b, sizeof *b); b->d = rscale(); break; }
        /* the KV cache's bfp4: exponents 2^-10 .. 2^-5, with some all-zero (e = 0) blocks */
        case EM_KV_BFP4: { block_bfp4 *b = (block_bfp4 *)w + i; rand_bytes(b->qs, sizeof b->qs); b->e = rnd() % 8 ? (uint8_t)(117 + rnd() % 6) : 0; break; }
        default:
            if (em_int_bits(t)) {  /* ember's INT: random codes, d and m as q4_1's */
                uint8_t *b = (uint8_t *)w + i * em_int_block_bytes(em_int_bits(t));
                rand_bytes(b, em_int_block_bytes(em_int_bits(t)));
                const uint16_t d = rscale(), m = h16(frand() * 0.3f);
                memcpy(b, &d, 2);
                memcpy(b + 2, &m, 2);
            } else if (t == EM_OVP4) {  /* random nibbles: victim markers, outliers, both markers */
                block_ovp4 *b = (block_ovp4 *)w + i;
                rand_bytes(b->qs, sizeof b->qs);
                b->d = rscale();
            } else if (em_bfp_bits(t)) {  /* BFP: random mantissas, exponents 2^-12..2^-3, some zero blocks */
                uint8_t *b = (uint8_t *)w + i * em_bfp_block_bytes(em_bfp_bits(t));
                rand_bytes(b, em_bfp_block_bytes(em_bfp_bits(t)));
                b[0] = rnd() % 16 == 0 ? 0 : (uint8_t)(115 + rnd() % 10);
            }
            break;
        }
    }
}

/* Dequantized "scale part" (part 0) or "min part" (part 1) of a row: the affine types with
 * the other scale zeroed, so their float sums are bounded separately. */
static void dequant_part(int t, const void *w, int64_t n, int part, float *out) {
    const size_t rs = em_row_size(t, n), bs = em_type_get(t)->bytes;
    unsigned char *c = malloc(rs);
    memcpy(c, w, rs);
    for (size_t off = 0; off < rs; off += bs) {
        if (t == EM_Q4_1) { block_q4_1 *b = (block_q4_1 *)(c + off); if (part) b->d = 0; else b->m = 0; }
        if (t == EM_Q5_1) { block_q5_1 *b = (block_q5_1 *)(c + off); if (part) b->d = 0; else b->m = 0; }
        if (t == EM_Q4_K) { block_q4_K *b = (block_q4_K *)(c + off); if (part) b->d = 0; else b->dmin = 0; }
        if (t == EM_Q5_K) { block_q5_K *b = (block_q5_K *)(c + off); if (part) b->d = 0; else b->dmin = 0; }
        if (t == EM_Q2_K) { block_q2_K *b = (block_q2_K *)(c + off); if (part) b->d = 0; else b->dmin = 0; }
        if (em_int_bits(t)) { uint8_t *b = c + off; memset(b + (part ? 0 : 2), 0, 2); }
    }
    em_dequantize_row(t, c, out, n);
    free(c);
}

static int affine(int t) { return t == EM_Q4_1 || t == EM_Q5_1 || t == EM_Q4_K || t == EM_Q5_K || t == EM_Q2_K || em_int_bits(t); }

/* ---- matmul ---- */

typedef struct {
    int t, vt, ncols, rows, r0, r1, ldy;
    int64_t n;
    size_t wrow, xcol;
    unsigned char *w, *x;
    float *tol;  /* [c*ldy + r] */
} mm_case;

static void mm_setup(mm_case *m) {
    m->vt = em_type_get(m->t)->vec_dot_type;
    m->wrow = em_row_size(m->t, m->n);
    m->xcol = em_row_size(m->vt, m->n);
    m->ldy = m->rows + 2;
    /* exact sizes, so ASan sees any read past the last row or column */
    m->w = malloc(m->wrow * m->rows);
    m->x = malloc(m->xcol * m->ncols);
    for (int r = 0; r < m->rows; r++) rand_row(m->t, m->w + r * m->wrow, m->n);
    float *xf = malloc(sizeof(float) * m->n), *a = malloc(sizeof(float) * m->n);
    float *w0 = malloc(sizeof(float) * m->n), *w1 = malloc(sizeof(float) * m->n);
    for (int c = 0; c < m->ncols; c++) {
        const float amp = c == 3 ? 1e-3f : c == 5 ? 50.0f : 1.0f;  /* columns of different scale */
        for (int64_t i = 0; i < m->n; i++) xf[i] = grand() * amp;
        if (m->n >= 64 && c == 2) memset(xf + 32, 0, 32 * sizeof(float));  /* a zero block */
        ref->quantize_act[m->vt](xf, m->x + c * m->xcol, m->n);
    }
    m->tol = malloc(sizeof(float) * m->ldy * m->ncols);
    const int blck = em_type_get(m->t)->blck;
    const double terms = (double)(blck == 1 ? m->n : m->n / blck) + 16;
    for (int r = 0; r < m->rows; r++) {
        dequant_part(m->t, m->w + r * m->wrow, m->n, 0, w0);
        if (affine(m->t)) dequant_part(m->t, m->w + r * m->wrow, m->n, 1, w1);
        for (int c = 0; c < m->ncols; c++) {
            em_dequantize_row(m->vt, m->x + c * m->xcol, a, m->n);
            double mag = 0;
            for (int64_t i = 0; i < m->n; i++) mag += fabs((double)w0[i] * a[i]) + (affine(m->t) ? fabs((double)w1[i] * a[i]) : 0);
            m->tol[c * m->ldy + r] = (float)(2.0 * terms * mag / 16777216.0 + 1e-30);
        }
    }
    free(xf); free(a); free(w0); free(w1);
}

static void mm_free(mm_case *m) { free(m->w); free(m->x); free(m->tol); }

#define CANARY 0x7f4a3c21u  /* a NaN pattern no kernel computes */

/* Runs kernel table k into a fresh NaN-filled y with a canary after the last column. */
static float *mm_run(const em_kernels *k, const mm_case *m, int r0, int r1, int c0, int nc) {
    float *y = malloc(sizeof(float) * ((size_t)m->ldy * nc + 1));
    for (int i = 0; i < m->ldy * nc; i++) y[i] = NAN;
    const uint32_t can = CANARY;
    memcpy(&y[m->ldy * nc], &can, 4);
    k->matmul[m->t](m->n, m->w, m->wrow, r0, r1, m->x + (size_t)c0 * m->xcol, m->xcol, nc, y, m->ldy);
    return y;
}

/* One case: values vs ref within tolerance, untouched elsewhere, bit-stable under column
 * and row splits. Returns the number of failures (also counted by CHECK). */
static int mm_check(mm_case *m) {
    const int before = t_cur_fail;
    float *yr = mm_run(ref, m, m->r0, m->r1, 0, m->ncols);
    float *y = mm_run(isa, m, m->r0, m->r1, 0, m->ncols);
    const uint32_t qnan = fbits(NAN);
    for (int c = 0; c < m->ncols; c++) {
        for (int r = 0; r < m->ldy; r++) {
            const float v = y[c * m->ldy + r];
            if (r >= m->r0 && r < m->r1) {
                const double diff = fabs((double)v - yr[c * m->ldy + r]);
                CHECKF(diff <= m->tol[c * m->ldy + r], "%s %s n=%lld rows=%d r=%d c=%d/%d: %.9g vs ref %.9g (tol %g)",
                       isa_name, em_type_get(m->t)->name, (long long)m->n, m->rows, r, c, m->ncols, v,
                       yr[c * m->ldy + r], m->tol[c * m->ldy + r]);
            } else {
                CHECKF(fbits(v) == qnan, "%s %s: y[%d] outside rows [%d,%d) written", isa_name,
                       em_type_get(m->t)->name, c * m->ldy + r, m->r0, m->r1);
            }
        }
    }
    CHECK(fbits(y[m->ldy * m->ncols]) == CANARY);
    /* each column alone gives the same bits */
    for (int c = 0; c < m->ncols && m->ncols > 1; c++) {
        float *y1 = mm_run(isa, m, m->r0, m->r1, c, 1);
        CHECKF(!memcmp(y1 + m->r0, y + c * m->ldy + m->r0, sizeof(float) * (m->r1 - m->r0)),
               "%s %s n=%lld: column %d alone differs from the %d-column call", isa_name,
               em_type_get(m->t)->name, (long long)m->n, c, m->ncols);
        CHECK(fbits(y1[m->ldy]) == CANARY);
        free(y1);
    }
    /* rows split in two calls (as two threads would) give the same bits */
    if (m->r1 - m->r0 > 1) {
        const int mid = m->r0 + 1 + (int)(rnd() % (unsigned)(m->r1 - m->r0 - 1));
        float *ys = mm_run(isa, m, m->r0, mid, 0, m->ncols);
        isa->matmul[m->t](m->n, m->w, m->wrow, mid, m->r1, m->x, m->xcol, m->ncols, ys, m->ldy);
        for (int c = 0; c < m->ncols; c++)
            CHECKF(!memcmp(ys + c * m->ldy + m->r0, y + c * m->ldy + m->r0, sizeof(float) * (m->r1 - m->r0)),
                   "%s %s: split at row %d differs", isa_name, em_type_get(m->t)->name, mid);
        free(ys);
    }
    free(yr); free(y);
    return t_cur_fail - before;
}

static const int mm_types[] = { EM_F32, EM_F16, EM_BF16, EM_Q8_0, EM_Q4_0, EM_Q4_1, EM_Q5_0, EM_Q5_1, EM_Q4_K, EM_Q5_K, EM_Q6_K,
                                EM_Q2_K, EM_Q3_K,
                                EM_IQ4_NL, EM_IQ4_XS, EM_TQ1_0, EM_TQ2_0,
                                EM_INT2, EM_INT3, EM_INT4, EM_INT5, EM_INT6, EM_INT7, EM_INT8,
                                EM_BFP3, EM_BFP4, EM_BFP5, EM_BFP6, EM_BFP7, EM_OVP4,
                                EM_KV_BFP4 };

static int mm_one(int t, int64_t n, int rows, int r0, int r1, int ncols) {
    mm_case m = { .t = t, .n = n, .rows = rows, .r0 = r0, .r1 = r1, .ncols = ncols };
    mm_setup(&m);
    int f = mm_check(&m);
    mm_free(&m);
    return f;
}

/* Sizes around block edges, every ncols, random row counts and r0 > 0. */
TEST(matmul_sizes) {
    static const int64_t n32[] = { 32, 64, 96, 160, 512, 1056 }, nk[] = { 256, 512, 768, 1280 };
    static const int64_t n64[] = { 64, 128, 192, 576, 1088 };
    static const int64_t nf[] = { 1, 3, 8, 15, 16, 33, 100, 257 };
    static const int rowsv[] = { 1, 2, 3, 4, 5, 7, 8, 9, 13, 16, 17, 31, 37 };
    for (size_t ti = 0; ti < sizeof mm_types / sizeof mm_types[0]; ti++) {
        const int t = mm_types[ti], blck = em_type_get(t)->blck;
        const int64_t *ns = blck == 1 ? nf : blck == 32 ? n32 : blck == 64 ? n64 : nk;
        const int nn = blck == 1 ? 8 : blck == 32 ? 6 : blck == 64 ? 5 : 4;
        int fails = 0;
        for (int seed = 0; seed < 3; seed++)
            for (int in = 0; in < nn; in++)
                for (int nc = 1; nc <= 8; nc++) {
                    const int rows = rowsv[rnd() % (sizeof rowsv / sizeof rowsv[0])];
                    const int r0 = rows > 2 ? (int)(rnd() % 3) : 0;
                    const int r1 = rows - (rows > 4 ? (int)(rnd() % 2) : 0);
                    fails += mm_one(t, ns[in], rows, r0, r1, nc);
                    if (fails > 4) return;
                }
    }
}

/* Every row count 1..37 (tile remainders) for decode and for full 8-column prefill. */
TEST(matmul_rows) {
    for (size_t ti = 0; ti < sizeof mm_types / sizeof mm_types[0]; ti++) {
        const int t = mm_types[ti], blck = em_type_get(t)->blck;
        const int64_t n = blck == 1 ? 72 : blck == 32 ? 128 : 256;
        for (int rows = 1; rows <= 37; rows++) {
            if (mm_one(t, n, rows, 0, rows, 1) || mm_one(t, n, rows, rows > 1, rows, rows % 8 + 1)) return;
        }
    }
}

/* Rows longer than the kernel's per-call table of activation scales (512 blocks). */
TEST(matmul_long_rows) {
    for (int nc = 1; nc <= 8; nc += 3) {
        mm_one(EM_Q4_0, 32 * 515, 5, 1, 5, nc);
        mm_one(EM_Q4_1, 32 * 515, 3, 0, 3, nc);
        mm_one(EM_Q5_0, 32 * 515, 5, 1, 5, nc);
        mm_one(EM_Q5_1, 32 * 515, 3, 0, 3, nc);
        mm_one(EM_Q8_0, 32 * 1025, 2, 0, 2, nc);
        mm_one(EM_Q6_K, 256 * 70, 2, 0, 2, nc);
        mm_one(EM_Q2_K, 256 * 70, 2, 0, 2, nc);
        mm_one(EM_Q3_K, 256 * 70, 2, 0, 2, nc);
        mm_one(EM_IQ4_NL, 32 * 515, 5, 1, 5, nc);
        mm_one(EM_IQ4_XS, 256 * 70, 2, 0, 2, nc);
        mm_one(EM_INT3, 64 * 259, 3, 0, 3, nc);
        mm_one(EM_BFP5, 32 * 515, 3, 1, 3, nc);
        mm_one(EM_OVP4, 64 * 259, 3, 0, 3, nc);
    }
}

/* K-quant tiles: every ncols 1..8 against odd row counts (some starting past row 0), at
 * inner sizes around the edges of the AVX-512 kernels' 16-block float chunks and their
 * passes of packed columns (128 column-blocks: 128 blocks for one column, 32 for three,
 * 16 for eight). mm_check holds each case to ref and requires every column alone and every
 * row split to give the batch's bits. */
TEST(matmul_kquant_tiles) {
    static const int kt[] = { EM_Q4_K, EM_Q5_K, EM_Q6_K, EM_Q2_K, EM_Q3_K };
    static const int64_t nbs[] = { 1, 2, 15, 16, 17, 33 };
    for (size_t ti = 0; ti < sizeof kt / sizeof kt[0]; ti++) {
        int fails = 0;
        for (size_t in = 0; in < sizeof nbs / sizeof nbs[0]; in++)
            for (int nc = 1; nc <= 8; nc++) {
                const int rows = 1 + 2 * (int)(rnd() % 9);
                const int r0 = rows > 2 ? (int)(rnd() % 2) : 0;
                fails += mm_one(kt[ti], 256 * nbs[in], rows, r0, rows, nc);
                if (fails > 4) return;
            }
        for (int nc = 1; nc <= 8; nc += 2) fails += mm_one(kt[ti], 256 * 130, 3, 1, 3, nc);
        if (fails) return;
    }
}

/* ---- activation quantizers ---- */

/* A row exercising the quantizers' edge cases, by pattern p. */
static void quant_input(float *x, int64_t n, int p) {
    for (int64_t i = 0; i < n; i++) x[i] = grand();
    switch (p) {
    case 1: for (int64_t i = 0; i < n; i++) x[i] *= (float)pow(10.0, (double)(rnd() % 40) - 20.0); break;
    case 2:  /* exact ties: amax 127 gives id 1 (q8_0/q8_1); max -127 gives iscale 1 (q8_K) */
        for (int64_t i = 0; i < n; i++) x[i] = (float)((int)(rnd() % 253) - 126) + (rnd() & 1 ? 0.5f : 0.0f);
        for (int64_t i = 0; i < n; i += 32) x[i] = 127.0f;
        for (int64_t i = 0; i < n; i += 256) x[i] = -127.0f;
        break;
    case 3:  /* zero blocks, and +-amax in both orders */
        for (int64_t i = 0; i < n && i < 256; i++) x[i] = 0.0f;
        if (n >= 512) { x[300] = 5.0f; x[301] = -5.0f; }
        if (n >= 768) { x[600] = -7.0f; x[700] = 7.0f; }
        break;
    case 4:  /* random finite bit patterns (f16/bf16 rounding, overflow, subnormals) */
        for (int64_t i = 0; i < n; i++) {
            uint32_t u;
            do u = rnd(); while ((u & 0x7f800000) == 0x7f800000);
            memcpy(&x[i], &u, 4);
        }
        break;
    }
}

TEST(quantize_act_exact) {
    static const int types[] = { EM_F32, EM_F16, EM_BF16, EM_Q8_0, EM_Q8_1, EM_Q8_K, EM_KV_BFP4 };
    for (size_t ti = 0; ti < sizeof types / sizeof types[0]; ti++) {
        const int t = types[ti], blck = em_type_get(t)->blck;
        const int64_t ns[] = { blck, 2 * blck, 3 * blck, blck == 1 ? 1023 : 8 * blck };
        for (int in = 0; in < 4; in++)
            for (int p = 0; p < 5; p++) {
                if (p == 4 && blck != 1) continue;  /* q8 scales of +-1e38 inputs overflow: not an activation */
                const int64_t n = ns[in];
                const size_t rs = em_row_size(t, n);
                float *x = malloc(sizeof(float) * n);
                unsigned char *a = malloc(rs + 1), *b = malloc(rs + 1);
                quant_input(x, n, p);
                memset(a, 0xA5, rs + 1);
                memset(b, 0x5A, rs + 1);
                ref->quantize_act[t](x, a, n);
                isa->quantize_act[t](x, b, n);
                CHECKF(!memcmp(a, b, rs), "%s quantize %s n=%lld pattern %d differs from ref", isa_name,
                       em_type_get(t)->name, (long long)n, p);
                CHECK(b[rs] == 0x5A);
                free(x); free(a); free(b);
            }
    }
}

/* ---- attention ---- */

/* Attention of a GQA group (1..8 query heads over one K/V head) against ref, at head
 * widths and cache lengths around the vector width and the chunk size. The SIMD kernels
 * repeat ref's steps (only the double sums of q.k are in another order), so nearly every
 * output is bit-identical; the bound covers the rare ulp of a score. The three-pass
 * baseline (other float steps) must agree within the same bound. */
TEST(attn_vs_ref) {
    static const int hds[] = { 5, 8, 12, 16, 64, 80, 100, 128 }, nkvs[] = { 1, 2, 3, 8, 15, 16, 17, 31, 100, 300 };
    static const int groups[] = { 1, 3, 4, 8 };
    for (int f16 = 0; f16 < 2; f16++) {
        long same = 0, total = 0;
        double worst = 0;
        for (size_t ih = 0; ih < sizeof hds / sizeof hds[0]; ih++)
            for (size_t ik = 0; ik < sizeof nkvs / sizeof nkvs[0]; ik++) {
                const int hd = hds[ih], nkv = nkvs[ik], g = groups[(ih + ik) % 4];
                const size_t stride = (size_t)hd * 2 + 3, es = f16 ? 2 : 4, nel = stride * (nkv - 1) + hd;
                float *q = malloc(sizeof(float) * hd * g), *o1 = malloc(sizeof(float) * (hd * g + 1)),
                      *o2 = malloc(sizeof(float) * (hd * g + 1));
                void *k = malloc(es * nel), *v = malloc(es * nel);
                float vmax = 0;
                for (int i = 0; i < hd * g; i++) q[i] = grand() * 1.5f;
                for (size_t i = 0; i < nel; i++) {
                    const float kf = grand(), vf = grand();
                    if (f16) { ((uint16_t *)k)[i] = h16(kf); ((uint16_t *)v)[i] = h16(vf); }
                    else { ((float *)k)[i] = kf; ((float *)v)[i] = vf; }
                    vmax = fmaxf(vmax, fabsf(vf));
                }
                o1[hd * g] = o2[hd * g] = 1234.5f;
                const float scale = 1.0f / sqrtf((float)hd);
                ref->attn[f16 ? EM_F16 : EM_F32](o1, q, g, k, v, nkv, hd, stride, scale);
                isa->attn[f16 ? EM_F16 : EM_F32](o2, q, g, k, v, nkv, hd, stride, scale);
                const double tol = (f16 ? 4e-3 : 1e-5) * vmax;
                for (int i = 0; i < hd * g; i++) {
                    const double d = fabs((double)o1[i] - o2[i]);
                    worst = d > worst ? d : worst;
                    same += fbits(o1[i]) == fbits(o2[i]);
                    total++;
                    CHECKF(d <= tol, "%s attn %s hd=%d n_kv=%d group %d i=%d: %.9g vs ref %.9g", isa_name,
                           f16 ? "f16" : "f32", hd, nkv, g, i, o2[i], o1[i]);
                }
                CHECK(o2[hd * g] == 1234.5f);
                /* Each head of the group alone gives what it gave in the group. */
                float one[512];
                isa->attn[f16 ? EM_F16 : EM_F32](one, q + (g - 1) * hd, 1, k, v, nkv, hd, stride, scale);
                CHECK(!memcmp(one, o2 + (g - 1) * hd, sizeof(float) * hd));
                /* The three-pass baseline (F32 accumulator), head 0. */
                float *sc = malloc(sizeof(float) * nkv);
                isa->attn3[f16 ? EM_F16 : EM_F32](o2, q, k, v, nkv, hd, stride, scale, sc);
                for (int i = 0; i < hd; i++)
                    CHECKF(fabs((double)o1[i] - o2[i]) <= tol, "%s attn3 %s hd=%d n_kv=%d i=%d: %.9g vs ref attn %.9g",
                           isa_name, f16 ? "f16" : "f32", hd, nkv, i, o2[i], o1[i]);
                free(sc);
                free(q); free(o1); free(o2); free(k); free(v);
            }
        printf("  %s attn %s: %ld/%ld outputs bit-identical to ref, max |diff| %.3g\n", isa_name,
               f16 ? "f16" : "f32", same, total, worst);
        CHECKF(same >= total - total / 100, "%s attn %s: only %ld of %ld outputs match ref bit for bit",
               isa_name, f16 ? "f16" : "f32", same, total);
    }
}

/* ---- attention over quantized caches ---- */
static const int kv_types[] = { EM_F32, EM_F16, EM_BF16, EM_Q8_0, EM_Q4_0, EM_KV_BFP4 };
#define N_KV_TYPES 6

/* How far attention over rows stored as (tk, tv) may be from the f32 attention over the
 * rows before storing, relative to max|v|. The output is a convex combination of V rows,
 * so V's storage error bounds its share: half a step of the block's scale (q8_0: amax/254;
 * q4_0: amax/16, but up to amax/8 for values clamped at +7 steps opposite the block's
 * extreme; bfp4: half a step of 2^e with amax/2^e in (5, 10], so up to amax/10, and up
 * to 3 steps, 0.3 amax, for the few values saturated at +7 or -8; bf16: 2^-9, f16: 2^-11
 * relative). K's error moves each score
 * by up to scale * sum |q_i dk_i| (plus q's own rounding to Q8_0 for the quantized K
 * types), which reweights the rows by up to e^(2 ds) - 1; with the test's data
 * (|q| ~ 1.5 grand, |k| ~ grand) that stays below the numbers here, which are about 1.5x
 * the largest errors seen over the whole sweep. */
static double attn_kv_bound(int tk, int tv) {
    const double kb = tk == EM_KV_BFP4 ? 0.3 : tk == EM_Q4_0 ? 0.45 : tk == EM_Q8_0 ? 0.03 : tk == EM_BF16 ? 0.015 : tk == EM_F16 ? 0.002 : 1e-5;
    const double vb = tv == EM_KV_BFP4 ? 0.25 : tv == EM_Q4_0 ? 0.14 : tv == EM_Q8_0 ? 0.008 : tv == EM_BF16 ? 0.004 : tv == EM_F16 ? 0.001 : 1e-5;
    return kb + vb;
}

static void store_rows(int t, const float *x, char *dst, int n_rows, int hd, size_t row) {
    for (int r = 0; r < n_rows; r++) em_quantize_row(t, x + (size_t)r * hd, dst + (size_t)r * row, hd);
}

/* One case: group g over n_kv rows of width hd, stored as (tk, tv) rows `stride` blocks
 * of padding apart. Returns the largest |diff| of ref's attn_kv from the f32 attention,
 * relative to max|v|; with an ISA, also checks it against ref. */
static double attn_kv_case(int tk, int tv, int hd, int nkv, int g, long *same, long *total) {
    const size_t krow = em_row_size(tk, hd) + em_row_size(tk, 32), vrow = em_row_size(tv, hd) + em_row_size(tv, 64);
    float *q = malloc(sizeof(float) * hd * g), *kf = malloc(sizeof(float) * hd * nkv), *vf = malloc(sizeof(float) * hd * nkv);
    float *o0 = malloc(sizeof(float) * hd * g), *o1 = malloc(sizeof(float) * (hd * g + 1)), *o2 = malloc(sizeof(float) * (hd * g + 1));
    char *k = calloc(nkv, krow), *v = calloc(nkv, vrow);
    float vmax = 0;
    for (int i = 0; i < hd * g; i++) q[i] = grand() * 1.5f;
    for (int i = 0; i < hd * nkv; i++) { kf[i] = grand(); vf[i] = grand(); vmax = fmaxf(vmax, fabsf(vf[i])); }
    store_rows(tk, kf, k, nkv, hd, krow);
    store_rows(tv, vf, v, nkv, hd, vrow);
    const float scale = 1.0f / sqrtf((float)hd);
    ref->attn[EM_F32](o0, q, g, kf, vf, nkv, hd, hd, scale);
    o1[hd * g] = o2[hd * g] = 1234.5f;
    ref->attn_kv(ref, o1, q, g, tk, k, krow, tv, v, vrow, nkv, hd, scale);
    double worst = 0;
    for (int i = 0; i < hd * g; i++) worst = fmax(worst, fabs((double)o1[i] - o0[i]) / vmax);
    if (isa) {
        isa->attn_kv(isa, o2, q, g, tk, k, krow, tv, v, vrow, nkv, hd, scale);
        for (int i = 0; i < hd * g; i++) {
            CHECKF(fabs((double)o1[i] - o2[i]) <= 1e-5 * vmax, "%s attn_kv %s/%s hd=%d n_kv=%d g=%d i=%d: %.9g vs ref %.9g",
                   isa_name, em_type_get(tk)->name, em_type_get(tv)->name, hd, nkv, g, i, o2[i], o1[i]);
            *same += fbits(o1[i]) == fbits(o2[i]);
            (*total)++;
        }
        CHECK(o2[hd * g] == 1234.5f);
        /* each head alone gives what it gave in the group */
        float one[512];
        isa->attn_kv(isa, one, q + (g - 1) * hd, 1, tk, k, krow, tv, v, vrow, nkv, hd, scale);
        CHECK(!memcmp(one, o2 + (g - 1) * hd, sizeof(float) * hd));
    }
    CHECK(o1[hd * g] == 1234.5f);
    free(q); free(kf); free(vf); free(o0); free(o1); free(o2); free(k); free(v);
    return worst;
}

static void attn_kv_sweep(void) {
    static const int hds[] = { 32, 64, 128 }, nkvs[] = { 1, 15, 16, 17, 100, 300 }, groups[] = { 1, 3, 8 };
    for (int a = 0; a < N_KV_TYPES; a++)
        for (int b = 0; b < N_KV_TYPES; b++) {
            const int tk = kv_types[a], tv = kv_types[b];
            double worst = 0;
            long same = 0, total = 0;
            for (size_t ih = 0; ih < 3; ih++)
                for (size_t ik = 0; ik < 6; ik++)
                    worst = fmax(worst, attn_kv_case(tk, tv, hds[ih], nkvs[ik], groups[(ih + ik) % 3], &same, &total));
            const double bound = attn_kv_bound(tk, tv);
            if (isa)
                printf("  %s attn_kv K %s V %s: %ld/%ld outputs bit-identical to ref\n", isa_name,
                       em_type_get(tk)->name, em_type_get(tv)->name, same, total);
            else
                printf("  ref attn_kv K %-4s V %-4s: max |diff| from f32 attention %.2e * max|v| (bound %.2e)\n",
                       em_type_get(tk)->name, em_type_get(tv)->name, worst, bound);
            CHECKF(isa || worst <= bound, "attn_kv K %s V %s: %.3g * max|v| from the f32 attention, bound %.3g",
                   em_type_get(tk)->name, em_type_get(tv)->name, worst, bound);
        }
}

TEST(attn_kv_ref_vs_f32) { attn_kv_sweep(); }
TEST(attn_kv_vs_ref) { attn_kv_sweep(); }

/* ---- norms and activations ---- */

static const int vec_ns[] = { 1, 7, 8, 9, 64, 576, 1000 };

TEST(rmsnorm_vs_ref) {
    for (size_t in = 0; in < sizeof vec_ns / sizeof vec_ns[0]; in++) {
        const int n = vec_ns[in];
        float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
        float *o1 = malloc(sizeof(float) * n), *o2 = malloc(sizeof(float) * n);
        for (int i = 0; i < n; i++) { x[i] = grand() * 3; w[i] = grand(); }
        ref->rmsnorm(o1, x, w, n, 1e-5f);
        isa->rmsnorm(o2, x, w, n, 1e-5f);
        for (int i = 0; i < n; i++) CHECK_NEAR(o2[i], o1[i], 4.0 / 16777216.0 * fabs(o1[i]) + 1e-37);
        isa->rmsnorm(x, x, w, n, 1e-5f);  /* in place */
        CHECK(!memcmp(x, o2, sizeof(float) * n));
        free(x); free(w); free(o1); free(o2);
    }
}

/* Largest error in units of 2^-24 relative to the reference value. */
static double rel_ulps(float a, float r) {
    if (fbits(a) == fbits(r)) return 0;
    return fabs((double)a - r) / (fabs((double)r) / 16777216.0 + 1e-45);
}

/* ssm_scan: random states and inputs, d_state at and off the 32-value blocks, hd 1..5. The
 * ref against its definition (new state values exact, y within 64 ulps of the sum's
 * magnitude of a double computation); each ISA against ref bit for bit (same lanes, same
 * order). */
static const int ssm_ds[] = { 1, 16, 31, 32, 40, 64, 100, 128 };
static void ssm_inputs(int hd, int ds, float *S, float *x, float *B, float *C) {
    for (int i = 0; i < hd * ds; i++) S[i] = grand();
    for (int i = 0; i < hd; i++) x[i] = grand();
    for (int j = 0; j < ds; j++) { B[j] = grand(); C[j] = grand(); }
}

TEST(ssm_scan_ref) {
    for (size_t k = 0; k < sizeof ssm_ds / sizeof ssm_ds[0]; k++)
        for (int hd = 1; hd <= 5; hd += 2) {
            const int ds = ssm_ds[k];
            float S[5 * 128], S0[5 * 128], x[5], B[128], C[128], y[6];
            ssm_inputs(hd, ds, S, x, B, C);
            memcpy(S0, S, sizeof S);
            const float dA = 0.5f + 0.5f * frand() * frand(), dt = 0.01f + fabsf(frand()), D = frand();
            y[hd] = 42.0f;
            ref->ssm_scan(S, x, B, C, dA, dt, D, y, hd, ds);
            for (int i = 0; i < hd; i++) {
                double sum = 0, mag = 0;
                const float x_dt = x[i] * dt;
                for (int j = 0; j < ds; j++) {
                    const float v = S0[i * ds + j] * dA + B[j] * x_dt;
                    CHECK(fbits(S[i * ds + j]) == fbits(v));
                    sum += (double)v * C[j];
                    mag += fabs((double)v * C[j]);
                }
                const float want = (float)sum + x[i] * D;
                CHECKF(fabs((double)y[i] - want) <= 64.0 / 16777216.0 * (mag + fabs(x[i] * D)),
                       "ds %d hd %d: y %.9g vs %.9g", ds, hd, y[i], want);
            }
            CHECK(y[hd] == 42.0f);
        }
}

TEST(ssm_scan_vs_ref) {
    for (size_t k = 0; k < sizeof ssm_ds / sizeof ssm_ds[0]; k++)
        for (int hd = 1; hd <= 5; hd++) {
            const int ds = ssm_ds[k];
            float S1[5 * 128], S2[5 * 128], x[5], B[128], C[128], y1[6], y2[6];
            ssm_inputs(hd, ds, S1, x, B, C);
            memcpy(S2, S1, sizeof S1);
            const float dA = 0.5f + 0.5f * frand() * frand(), dt = 0.01f + fabsf(frand()), D = frand();
            y2[hd] = 42.0f;
            ref->ssm_scan(S1, x, B, C, dA, dt, D, y1, hd, ds);
            isa->ssm_scan(S2, x, B, C, dA, dt, D, y2, hd, ds);
            CHECKF(!memcmp(S1, S2, sizeof(float) * hd * ds) && !memcmp(y1, y2, sizeof(float) * hd),
                   "%s ssm_scan ds %d hd %d differs from ref", isa_name, ds, hd);
            CHECK(y2[hd] == 42.0f);
        }
}

TEST(swiglu_vs_ref) {
    double worst = 0;
    for (size_t in = 0; in < sizeof vec_ns / sizeof vec_ns[0]; in++) {
        const int n = vec_ns[in] * 4;
        float *g = malloc(sizeof(float) * n), *u = malloc(sizeof(float) * n);
        float *h1 = malloc(sizeof(float) * (n + 1)), *h2 = malloc(sizeof(float) * (n + 1));
        for (int i = 0; i < n; i++) {
            g[i] = i % 3 == 0 ? grand() * 40 : i % 3 == 1 ? grand() * 3 : frand() * 110;
            u[i] = grand();
        }
        if (n > 8) { g[0] = 0.0f; g[1] = -0.0f; g[2] = 1e-30f; g[3] = -95.0f; g[4] = 100.0f; g[5] = -87.5f; }
        h1[n] = h2[n] = 42.0f;
        ref->swiglu(h1, g, u, n);
        isa->swiglu(h2, g, u, n);
        for (int i = 0; i < n; i++) {
            const double e = fabs((double)h2[i] - h1[i]);
            CHECKF(e <= 8.0 / 16777216.0 * fabs(h1[i]) + 1e-37, "%s swiglu g=%g u=%g: %.9g vs ref %.9g",
                   isa_name, g[i], u[i], h2[i], h1[i]);
            if (fabs(h1[i]) > 1e-30) worst = fmax(worst, rel_ulps(h2[i], h1[i]));
        }
        CHECK(h2[n] == 42.0f);
        free(g); free(u); free(h1); free(h2);
    }
    printf("  %s swiglu: max error %.2f ulp (exp, divide and multiply together)\n", isa_name, worst);
}

TEST(softmax_vs_ref) {
    double worst = 0;
    for (size_t in = 0; in < sizeof vec_ns / sizeof vec_ns[0]; in++) {
        const int n = vec_ns[in];
        float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n);
        for (int i = 0; i < n; i++) a[i] = b[i] = grand() * 10;
        ref->softmax(a, n);
        isa->softmax(b, n);
        for (int i = 0; i < n; i++) {
            CHECK_NEAR(b[i], a[i], 8.0 / 16777216.0 * fabs(a[i]) + 1e-37);
            if (a[i] > 1e-30f) worst = fmax(worst, rel_ulps(b[i], a[i]));
        }
        free(a); free(b);
    }
    printf("  %s softmax: max error %.2f ulp\n", isa_name, worst);
}

/* Softmax in double from the same inputs: the yardstick for both softmax variants. */
static void softmax_exact(const float *x, double *y, int n) {
    double max = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
    for (int i = 0; i < n; i++) sum += y[i] = exp((double)x[i] - max);
    for (int i = 0; i < n; i++) y[i] /= sum;
}

/* Two-pass softmax (docs/techniques.md §1) against softmax in double: a worst relative
 * error of 2^-17 covers the float (M, E) accumulators over up to 2^18 values (the
 * three-pass kernels lose up to ~40 ulp on small outputs already, by rounding x - max
 * to float); outputs below 1e-37 may be flushed. Also sums to 1, no overflow where
 * e^x would overflow, masked (-inf) entries give 0, and a NaN poisons every output. */
static void check_softmax2(const em_kernels *kt, const char *name, double *worst) {
    static const int ns[] = { 1, 2, 15, 16, 17, 63, 64, 65, 1000, 49152, 262147 };
    for (size_t in = 0; in < sizeof ns / sizeof ns[0]; in++) {
        const int n = ns[in];
        for (int mode = 0; mode < 3; mode++) {
            float *a = malloc(sizeof(float) * (n + 1)), *b = malloc(sizeof(float) * (n + 1));
            for (int i = 0; i < n; i++) {
                a[i] = grand() * 10;
                if (mode == 1) a[i] += 1000.0f;                   /* e^x overflows float */
                if (mode == 2 && i % 3 == 1) a[i] = -INFINITY;    /* masked logits */
            }
            if (mode == 2) a[0] = 0.0f;
            memcpy(b, a, sizeof(float) * n);
            b[n] = 42.0f;
            double *y = malloc(sizeof(double) * n);
            softmax_exact(a, y, n);
            kt->softmax2(b, n);
            double sum = 0;
            for (int i = 0; i < n; i++) {
                CHECKF(fabs(b[i] - y[i]) <= y[i] / 131072.0 + 1e-37, "%s softmax2 n=%d mode %d i=%d: %.9g vs %.9g",
                       name, n, mode, i, b[i], y[i]);
                if (y[i] > 1e-30) *worst = fmax(*worst, fabs(b[i] - y[i]) / y[i] * 16777216.0);
                if (mode == 2 && i % 3 == 1) CHECK(b[i] == 0.0f);
                sum += b[i];
            }
            CHECKF(fabs(sum - 1.0) < 1e-4, "%s softmax2 n=%d: sum %.9g", name, n, sum);
            CHECK(b[n] == 42.0f);
            free(a); free(b); free(y);
        }
    }
    float x[40];
    for (int i = 0; i < 40; i++) x[i] = (float)i;
    x[37] = NAN;
    kt->softmax2(x, 40);
    int nans = 0;
    for (int i = 0; i < 40; i++) nans += x[i] != x[i];
    CHECKF(nans == 40, "%s softmax2: a NaN input gave %d NaN outputs of 40", name, nans);
}

TEST(softmax2_ref) {
    double worst = 0;
    check_softmax2(ref, "ref", &worst);
    printf("  ref softmax2: max error %.2f ulp of the double-precision softmax\n", worst);
}

TEST(softmax2_vs_ref) {
    double worst = 0;
    check_softmax2(isa, isa_name, &worst);
    printf("  %s softmax2: max error %.2f ulp of the double-precision softmax\n", isa_name, worst);
}

/* The ref three-pass attention baseline against the ref one-pass kernel (f32). */
TEST(attn3_ref) {
    const int hd = 64, nkv = 257;
    float q[64], o1[64], o2[64], *k = malloc(sizeof(float) * hd * nkv), *v = malloc(sizeof(float) * hd * nkv), sc[257];
    for (int i = 0; i < hd; i++) q[i] = grand();
    for (int i = 0; i < hd * nkv; i++) { k[i] = grand(); v[i] = grand(); }
    ref->attn[EM_F32](o1, q, 1, k, v, nkv, hd, hd, 0.125f);
    ref->attn3[EM_F32](o2, q, k, v, nkv, hd, hd, 0.125f, sc);
    for (int i = 0; i < hd; i++) CHECK_NEAR(o2[i], o1[i], 1e-5);
    free(k); free(v);
}

int main(void) {
    ref = em_kernels_by_name("ref");
    RUN(softmax2_ref);
    RUN(attn3_ref);
    RUN(attn_kv_ref_vs_f32);
    RUN(ssm_scan_ref);
    const char *names[8];
    const int n = em_kernels_list(names, 8);
    int tested = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(names[i], "ref")) continue;
        isa = em_kernels_by_name(names[i]);
        isa_name = names[i];
        if (!isa) continue;
        printf("isa %s: testing against ref\n", isa_name);
        tested++;
        RUN(quantize_act_exact);
        RUN(matmul_sizes);
        RUN(matmul_rows);
        RUN(matmul_long_rows);
        RUN(matmul_kquant_tiles);
        RUN(attn_vs_ref);
        RUN(attn_kv_vs_ref);
        RUN(rmsnorm_vs_ref);
        RUN(swiglu_vs_ref);
        RUN(ssm_scan_vs_ref);
        RUN(softmax_vs_ref);
        RUN(softmax2_vs_ref);
    }
    if (!tested) printf("no SIMD kernel table on this CPU: nothing to compare with ref\n");
    return test_done();
}
