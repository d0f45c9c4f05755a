/* quant_seed.c: ember's own weight formats (not ggml's; GGUF ids from EM_GGUF_SEED_BASE,
 * layouts in quant.h), part of the numerical specification described in quant.c:
 *   - INT2..INT8 (docs/techniques.md §7, after Tilus): groups of 64 with an f16 scale d and
 *     an f16 offset m, value = d*q + m for unsigned b-bit codes q. Asymmetric, because at
 *     2-4 bits a group's values are rarely centred and the offset costs 0.25 bit per
 *     weight; bits per weight b + 0.5.
 *   - BFP3..BFP7 (docs/techniques.md §3): blocks of 32 sharing one 8-bit exponent, m-bit
 *     two's-complement mantissas in -2^(m-1)..2^(m-1)-1, stored offset by 2^(m-1) as
 *     unsigned codes; bits per weight m + 0.25.
 *   - OVP4 (docs/techniques.md §2, after OliVe): groups of 64 with an f16 scale; elements j
 *     and j+32 form a pair in one byte. A pair is two 4-bit integers -7..7, or, when one of
 *     them is an outlier, the other (the victim) becomes 0 and its nibble the marker 8, and
 *     the outlier's nibble holds a float-like code of magnitude 12..96 grid steps; 4.25 bits
 *     per weight. Pairs are (j, j+32) rather than adjacent elements, so that decoding is
 *     the nibble split of the 4-bit plane below.
 * INT and BFP store their codes in bit planes (4+2+1 bits) so that a group is one contiguous run
 * and the SIMD kernels unpack 64 (INT) or 32 (BFP) codes with a few whole-vector shifts.
 *
 * Dot products take the activations in Q8_0 (two Q8_0 blocks per INT group, one per BFP
 * block) and keep every integer sum exact:
 *   INT:  per Q8_0 block h of the group, sumf += (d*da_h) * sum(q*a) + (m*da_h) * sum(a)
 *   BFP:  per block, sumf += (2^(e-127) * da) * sum((u - 2^(m-1)) * a)
 * with the float operations in exactly that order (SIMD kernels reorder the float sums and
 * are held to a tolerance).
 *
 * (OVP4: per block h of the group, sumf += (d*da_h) * sum(v*a), v the value in grid units.)
 *
 * Quantizers: INT searches the group's scale and offset with the weighted least-squares
 * search of the k-quants (em_make_qkx3_quants), weights |x| + rms(group) without an
 * importance matrix, imatrix * sqrt(sigma^2 + x^2) with one, then rounds d and m to f16 and
 * re-rounds the codes with the stored values. BFP tries the three exponents around the one
 * that just fits max |x| and keeps the one with the least weighted squared error. OVP4 tries
 * 32 scales between "max |x| on the normal grid" and "max |x| the largest outlier", and
 * per pair takes whichever of (normal, normal), (outlier, victim), (victim, outlier) has
 * the least weighted squared error, where OliVe thresholds at the normal range. */
#include "quant/quant_impl.h"

/* ---------------------------------------------------------------- bit planes */

/* Packs n codes of `bits` bits (2..8) into bit planes (layout in quant.h); returns the
 * bytes written, n * bits / 8. */
static size_t planes_pack(const uint8_t *L, int n, int bits, uint8_t *out) {
    uint8_t *o = out;
    if (bits == 8) {
        memcpy(o, L, (size_t)n);
        return (size_t)n;
    }
    int sh = 0;
    if (bits & 4) {
        const int h = n / 2;
        for (int j = 0; j < h; j++) o[j] = (uint8_t)(((L[j] >> sh) & 15) | ((L[j + h] >> sh) & 15) << 4);
        o += h;
        sh += 4;
    }
    if (bits & 2) {
        const int q = n / 4;
        for (int j = 0; j < q; j++) {
            int v = 0;
            for (int k = 0; k < 4; k++) v |= ((L[j + k * q] >> sh) & 3) << 2 * k;
            o[j] = (uint8_t)v;
        }
        o += q;
        sh += 2;
    }
    if (bits & 1) {
        for (int j = 0; j < n / 8; j++) {
            int v = 0;
            for (int t = 0; t < 8; t++) v |= ((L[8 * j + t] >> sh) & 1) << t;
            o[j] = (uint8_t)v;
        }
        o += n / 8;
    }
    return (size_t)(o - out);
}

static void planes_unpack(const uint8_t *in, int n, int bits, uint8_t *L) {
    if (bits == 8) {
        memcpy(L, in, (size_t)n);
        return;
    }
    for (int j = 0; j < n; j++) L[j] = 0;
    int sh = 0;
    if (bits & 4) {
        const int h = n / 2;
        for (int j = 0; j < h; j++) {
            L[j] |= (uint8_t)((in[j] & 15) << sh);
            L[j + h] |= (uint8_t)((in[j] >> 4) << sh);
        }
        in += h;
        sh += 4;
    }
    if (bits & 2) {
        const int q = n / 4;
        for (int j = 0; j < q; j++)
            for (int k = 0; k < 4; k++) L[j + k * q] |= (uint8_t)(((in[j] >> 2 * k) & 3) << sh);
        in += q;
        sh += 2;
    }
    if (bits & 1)
        for (int j = 0; j < n; j++) L[j] |= (uint8_t)(((in[j / 8] >> (j % 8)) & 1) << sh);
}

static inline float rd_f16(const uint8_t *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    return em_f16_to_f32(h);
}

static inline void wr_f16(uint8_t *p, float f) {
    const uint16_t h = em_f32_to_f16(f);
    memcpy(p, &h, 2);
}

/* 2^(e-127) for e = 1..254 as the float with exponent field e; e = 0 gives 0, 255 inf. */
static inline float bfp_scale(uint8_t e) {
    const uint32_t u = (uint32_t)e << 23;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---------------------------------------------------------------- INT */

static void int_to_float(int bits, const void *vx, float *y, int64_t nb) {
    const uint8_t *x = vx;
    const size_t bs = em_int_block_bytes(bits);
    uint8_t L[QK_INT];
    for (int64_t i = 0; i < nb; i++, x += bs, y += QK_INT) {
        const float d = rd_f16(x), m = rd_f16(x + 2);
        planes_unpack(x + 4, QK_INT, bits, L);
        for (int j = 0; j < QK_INT; j++) y[j] = d * (float)L[j] + m;
    }
}

/* One group: weighted (d, m) search, f16 rounding, codes re-rounded with the stored values. */
static void int_group(int bits, const float *x, const float *qw, float sigma2, uint8_t *blk) {
    const int nmax = (1 << bits) - 1;
    float w[QK_INT], min = 0.0f;
    uint8_t L[QK_INT], Laux[QK_INT];
    float sumx2 = 0.0f;
    for (int j = 0; j < QK_INT; j++) sumx2 += x[j] * x[j];
    const float av = sqrtf(sumx2 / QK_INT);
    for (int j = 0; j < QK_INT; j++) w[j] = qw ? qw[j] * sqrtf(sigma2 + x[j] * x[j]) : av + fabsf(x[j]);
    const float d = em_make_qkx3_quants(QK_INT, nmax, x, w, L, &min, Laux, -0.9f, 0.05f, 36, 0);
    const uint16_t dh = em_f32_to_f16(d), mh = em_f32_to_f16(-min);
    memcpy(blk, &dh, 2);
    memcpy(blk + 2, &mh, 2);
    const float df = em_f16_to_f32(dh), mf = em_f16_to_f32(mh);
    const float id = df != 0.0f ? 1.0f / df : 0.0f;
    for (int j = 0; j < QK_INT; j++) {
        int l = em_round_even((x[j] - mf) * id);
        L[j] = (uint8_t)(l < 0 ? 0 : l > nmax ? nmax : l);
    }
    planes_pack(L, QK_INT, bits, blk + 4);
}

static float row_sigma2(const float *x, int64_t n) {
    float s = 0.0f;
    for (int64_t j = 0; j < n; j++) s += x[j] * x[j];
    return n ? 2.0f * s / (float)n : 0.0f;
}

static void int_from_float(int bits, const float *x, void *vy, int64_t nb) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < nb; i++) int_group(bits, x + i * QK_INT, NULL, 0.0f, y + i * em_int_block_bytes(bits));
}

static size_t int_quantize(int bits, const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *qw) {
    uint8_t *y = vy;
    const int64_t nb = n_per_row / QK_INT;
    const size_t bs = em_int_block_bytes(bits);
    for (int64_t r = 0; r < nrows; r++) {
        const float *xr = x + r * n_per_row;
        const float sigma2 = qw ? row_sigma2(xr, n_per_row) : 0.0f;
        for (int64_t i = 0; i < nb; i++)
            int_group(bits, xr + i * QK_INT, qw ? qw + i * QK_INT : NULL, sigma2, y + (r * nb + i) * bs);
    }
    return (size_t)(nrows * nb) * bs;
}

static float int_vec_dot(int bits, int64_t nb, const void *vw, const void *va) {
    const uint8_t *w = vw;
    const block_q8_0 *a = va;
    const size_t bs = em_int_block_bytes(bits);
    uint8_t L[QK_INT];
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += bs) {
        const float d = rd_f16(w), m = rd_f16(w + 2);
        planes_unpack(w + 4, QK_INT, bits, L);
        for (int h = 0; h < 2; h++) {
            const block_q8_0 *ab = &a[2 * i + h];
            int isum = 0, asum = 0;
            for (int j = 0; j < QK8_0; j++) {
                isum += L[QK8_0 * h + j] * ab->qs[j];
                asum += ab->qs[j];
            }
            const float da = em_f16_to_f32(ab->d);
            sumf += (d * da) * (float)isum + (m * da) * (float)asum;
        }
    }
    return sumf;
}

/* ---------------------------------------------------------------- BFP */

static void bfp_to_float(int bits, const void *vx, float *y, int64_t nb) {
    const uint8_t *x = vx;
    const size_t bs = em_bfp_block_bytes(bits);
    const int off = 1 << (bits - 1);
    uint8_t L[QK_BFP];
    for (int64_t i = 0; i < nb; i++, x += bs, y += QK_BFP) {
        const float s = bfp_scale(x[0]);
        planes_unpack(x + 1, QK_BFP, bits, L);
        for (int j = 0; j < QK_BFP; j++) y[j] = (float)(L[j] - off) * s;
    }
}

/* Mantissas of x at exponent e (scale 2^(e-127)), and their weighted squared error. */
static float bfp_try(int bits, const float *x, const float *w, int e, uint8_t *L) {
    const int off = 1 << (bits - 1);
    const float s = bfp_scale((uint8_t)e), is = 1.0f / s;
    float err = 0.0f;
    for (int j = 0; j < QK_BFP; j++) {
        int l = em_round_even(x[j] * is);
        l = l < -off ? -off : l > off - 1 ? off - 1 : l;
        L[j] = (uint8_t)(l + off);
        const float diff = x[j] - (float)l * s;
        err += w[j] * diff * diff;
    }
    return err;
}

static void bfp_block(int bits, const float *x, const float *qw, float sigma2, uint8_t *blk) {
    const int off = 1 << (bits - 1);
    const float amax = em_block_amax(x, QK_BFP);
    uint8_t L[QK_BFP], best[QK_BFP];
    if (!(amax >= 1e-30f)) {  /* zero (or NaN) block: exponent 0 */
        blk[0] = 0;
        for (int j = 0; j < QK_BFP; j++) L[j] = (uint8_t)off;
        planes_pack(L, QK_BFP, bits, blk + 1);
        return;
    }
    float w[QK_BFP];
    for (int j = 0; j < QK_BFP; j++) w[j] = qw ? qw[j] * sqrtf(sigma2 + x[j] * x[j]) : 1.0f;
    /* the smallest exponent at which amax rounds into the mantissa range */
    int e0 = 0;
    (void)frexpf(amax / ((float)off - 0.5f), &e0);  /* amax/(off-0.5) in [2^(e0-1), 2^e0) */
    e0 += 127;
    float best_err = INFINITY;
    int best_e = -1;
    for (int e = e0 - 1; e <= e0 + 1; e++) {
        if (e < 1 || e > 254) continue;
        const float err = bfp_try(bits, x, w, e, L);
        if (err < best_err || best_e < 0) {
            best_err = err;
            best_e = e;
            memcpy(best, L, sizeof best);
        }
    }
    if (best_e < 0) {  /* out of the exponent range: the nearest end */
        best_e = e0 < 1 ? 1 : 254;
        bfp_try(bits, x, w, best_e, best);
    }
    blk[0] = (uint8_t)best_e;
    planes_pack(best, QK_BFP, bits, blk + 1);
}

static void bfp_from_float(int bits, const float *x, void *vy, int64_t nb) {
    uint8_t *y = vy;
    for (int64_t i = 0; i < nb; i++) bfp_block(bits, x + i * QK_BFP, NULL, 0.0f, y + i * em_bfp_block_bytes(bits));
}

static size_t bfp_quantize(int bits, const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *qw) {
    uint8_t *y = vy;
    const int64_t nb = n_per_row / QK_BFP;
    const size_t bs = em_bfp_block_bytes(bits);
    for (int64_t r = 0; r < nrows; r++) {
        const float *xr = x + r * n_per_row;
        const float sigma2 = qw ? row_sigma2(xr, n_per_row) : 0.0f;
        for (int64_t i = 0; i < nb; i++)
            bfp_block(bits, xr + i * QK_BFP, qw ? qw + i * QK_BFP : NULL, sigma2, y + (r * nb + i) * bs);
    }
    return (size_t)(nrows * nb) * bs;
}

static float bfp_vec_dot(int bits, int64_t nb, const void *vw, const void *va) {
    const uint8_t *w = vw;
    const block_q8_0 *a = va;
    const size_t bs = em_bfp_block_bytes(bits);
    const int off = 1 << (bits - 1);
    uint8_t L[QK_BFP];
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++, w += bs) {
        planes_unpack(w + 1, QK_BFP, bits, L);
        int isum = 0;
        for (int j = 0; j < QK_BFP; j++) isum += (L[j] - off) * a[i].qs[j];
        sumf += (bfp_scale(w[0]) * em_f16_to_f32(a[i].d)) * (float)isum;
    }
    return sumf;
}

/* ---------------------------------------------------------------- OVP4 */

/* Outlier magnitudes in the units of the normal grid (-7..7): 2^e (1 + k/2) for e = 5..8
 * divided by 4 (OliVe's abfloat with 2 exponent bits and 1 mantissa bit, in units where
 * its normal grid steps by 4), the code of 32 (k = 0, e = 5) unused as in OliVe: 12, 16,
 * 24, 32, 48, 64, 96. Every value then fits an int8. */
const int8_t em_ovp_outlier[8] = { 0, 12, 16, 24, 32, 48, 64, 96 };

static inline int ovp_normal(int c) { return c == 8 ? 0 : c < 8 ? c : c - 16; }
static inline int ovp_outlier(int c) { return c & 8 ? -em_ovp_outlier[c & 7] : em_ovp_outlier[c & 7]; }

/* The 64 values of a group in grid units (element order). */
static void ovp_values(const block_ovp4 *b, int8_t *v) {
    for (int j = 0; j < QK_OVP / 2; j++) {
        const int lo = b->qs[j] & 15, hi = b->qs[j] >> 4;
        v[j] = (int8_t)(hi == 8 ? ovp_outlier(lo) : ovp_normal(lo));
        v[j + QK_OVP / 2] = (int8_t)(lo == 8 ? ovp_outlier(hi) : ovp_normal(hi));
    }
}

void em_to_float_ovp4(const void *vx, float *y, int64_t nb) {
    const block_ovp4 *x = vx;
    int8_t v[QK_OVP];
    for (int64_t i = 0; i < nb; i++, y += QK_OVP) {
        const float d = em_f16_to_f32(x[i].d);
        ovp_values(&x[i], v);
        for (int j = 0; j < QK_OVP; j++) y[j] = d * (float)v[j];
    }
}

/* Nearest normal code of x/s and its squared error. */
static inline int ovp_fit_normal(float x, float is, float s, float *err) {
    int l = em_round_even(x * is);
    l = l < -7 ? -7 : l > 7 ? 7 : l;
    const float e = x - s * (float)l;
    *err = e * e;
    return l & 15;
}

/* Nearest outlier code of x/s (magnitudes 12..96) and its squared error. */
static inline int ovp_fit_outlier(float x, float s, float *err) {
    const float a = fabsf(x);
    int best = 1;
    float be = INFINITY;
    for (int k = 1; k < 8; k++) {
        const float e = a - s * (float)em_ovp_outlier[k];
        if (e * e < be) { be = e * e; best = k; }
    }
    *err = be;
    return (x < 0 ? 8 : 0) | best;
}

/* Encodes a group at scale s: per pair the cheapest of (normal, normal), (outlier, victim)
 * and (victim, outlier) by weighted squared error. Returns the group's error. */
static float ovp_encode(const float *x, const float *w, float s, uint8_t *qs) {
    const float is = s != 0.0f ? 1.0f / s : 0.0f;
    float total = 0.0f;
    for (int j = 0; j < QK_OVP / 2; j++) {
        const float x0 = x[j], x1 = x[j + QK_OVP / 2], w0 = w[j], w1 = w[j + QK_OVP / 2];
        float e0, e1, o0, o1;
        const int n0 = ovp_fit_normal(x0, is, s, &e0), n1 = ovp_fit_normal(x1, is, s, &e1);
        float best = w0 * e0 + w1 * e1;
        int code = n0 | n1 << 4;
        if (s != 0.0f) {
            const int c0 = ovp_fit_outlier(x0, s, &o0), c1 = ovp_fit_outlier(x1, s, &o1);
            const float eb = w0 * o0 + w1 * x1 * x1, ec = w0 * x0 * x0 + w1 * o1;
            if (eb < best) { best = eb; code = c0 | 8 << 4; }
            if (ec < best) { best = ec; code = 8 | c1 << 4; }
        }
        qs[j] = (uint8_t)code;
        total += best;
    }
    return total;
}

/* Scale search: 32 candidates d = amax / g, g from 7 (no outliers needed) to 96 (the
 * largest value an outlier), geometric; the best is rounded to f16 and encoded again. */
static void ovp_group(const float *x, const float *qw, float sigma2, block_ovp4 *b) {
    float w[QK_OVP];
    for (int j = 0; j < QK_OVP; j++) w[j] = qw ? qw[j] * sqrtf(sigma2 + x[j] * x[j]) : 1.0f;
    const float amax = em_block_amax(x, QK_OVP);
    uint8_t qs[QK_OVP / 2];
    float best_s = 0.0f, best_e = INFINITY;
    if (amax >= EM_GROUP_MAX_EPS) {
        for (int k = 0; k < 32; k++) {
            const float g = 7.0f * powf(96.0f / 7.0f, (float)k / 31.0f), s = amax / g;
            const float e = ovp_encode(x, w, s, qs);
            if (e < best_e) { best_e = e; best_s = s; }
        }
    }
    b->d = em_f32_to_f16(best_s);
    ovp_encode(x, w, em_f16_to_f32(b->d), b->qs);
}

void em_from_float_ovp4(const float *x, void *vy, int64_t nb) {
    block_ovp4 *y = vy;
    for (int64_t i = 0; i < nb; i++) ovp_group(x + i * QK_OVP, NULL, 0.0f, &y[i]);
}

size_t em_quantize_ovp4(const float *x, void *vy, int64_t nrows, int64_t n_per_row, const float *qw) {
    block_ovp4 *y = vy;
    const int64_t nb = n_per_row / QK_OVP;
    for (int64_t r = 0; r < nrows; r++) {
        const float *xr = x + r * n_per_row;
        const float sigma2 = qw ? row_sigma2(xr, n_per_row) : 0.0f;
        for (int64_t i = 0; i < nb; i++) ovp_group(xr + i * QK_OVP, qw ? qw + i * QK_OVP : NULL, sigma2, &y[r * nb + i]);
    }
    return (size_t)(nrows * nb) * sizeof(block_ovp4);
}

/* Per q8_0 block h (elements 32h..32h+31): sumf += (d * da_h) * sum(v * a). */
float em_vec_dot_ovp4(int64_t nb, const void *vw, const void *va) {
    const block_ovp4 *w = vw;
    const block_q8_0 *a = va;
    int8_t v[QK_OVP];
    float sumf = 0.0f;
    for (int64_t i = 0; i < nb; i++) {
        ovp_values(&w[i], v);
        const float d = em_f16_to_f32(w[i].d);
        for (int h = 0; h < 2; h++) {
            int isum = 0;
            for (int j = 0; j < QK8_0; j++) isum += v[QK8_0 * h + j] * a[2 * i + h].qs[j];
            sumf += (d * em_f16_to_f32(a[2 * i + h].d)) * (float)isum;
        }
    }
    return sumf;
}

/* ---------------------------------------------------------------- per-type entry points */

#define SEED_FNS(T, FAM, BITS)                                                                          \
    void em_to_float_##T(const void *x, float *y, int64_t nb) { FAM##_to_float(BITS, x, y, nb); }        \
    void em_from_float_##T(const float *x, void *y, int64_t nb) { FAM##_from_float(BITS, x, y, nb); }    \
    float em_vec_dot_##T(int64_t nb, const void *w, const void *a) { return FAM##_vec_dot(BITS, nb, w, a); } \
    size_t em_quantize_##T(const float *x, void *y, int64_t nrows, int64_t n_per_row, const float *imatrix) { \
        return FAM##_quantize(BITS, x, y, nrows, n_per_row, imatrix);                                    \
    }
SEED_FNS(int2, int, 2)
SEED_FNS(int3, int, 3)
SEED_FNS(int4, int, 4)
SEED_FNS(int5, int, 5)
SEED_FNS(int6, int, 6)
SEED_FNS(int7, int, 7)
SEED_FNS(int8, int, 8)
SEED_FNS(bfp3, bfp, 3)
SEED_FNS(bfp4, bfp, 4)
SEED_FNS(bfp5, bfp, 5)
SEED_FNS(bfp6, bfp, 6)
SEED_FNS(bfp7, bfp, 7)
#undef SEED_FNS
