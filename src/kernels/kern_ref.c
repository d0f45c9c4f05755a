/* kern_ref.c: the scalar kernel table, the specification every SIMD kernel is tested
 * against, and the fallback for any slot an ISA file leaves empty. Numerics follow
 * llama.cpp's CPU backend where it matters for agreement of logits: activations are
 * quantized to the weight type's vec_dot type, RMSNorm sums squares in double, softmax
 * sums in double. */
#include <math.h>
#include "kernels/kernels.h"
#include "kernels/attn_kv.h"

static void quant_f32(const float *x, void *y, int64_t n) { em_quantize_row(EM_F32, x, y, n); }
static void quant_f16(const float *x, void *y, int64_t n) { em_quantize_row(EM_F16, x, y, n); }
static void quant_bf16(const float *x, void *y, int64_t n) { em_quantize_row(EM_BF16, x, y, n); }
static void quant_q8_0(const float *x, void *y, int64_t n) { em_quantize_row(EM_Q8_0, x, y, n); }
static void quant_q8_1(const float *x, void *y, int64_t n) { em_quantize_row(EM_Q8_1, x, y, n); }
static void quant_q8_K(const float *x, void *y, int64_t n) { em_quantize_row(EM_Q8_K, x, y, n); }

/* One generic matmul per weight type: the row loop is outside so each weight row is read
 * once for all ncols activation columns. */
#define REF_MATMUL(NAME, TYPE)                                                            \
    static void NAME(int64_t n, const void *w, size_t wrow, int r0, int r1,                \
                     const void *x, size_t xcol, int ncols, float *y, int ldy) {           \
        for (int r = r0; r < r1; r++) {                                                    \
            const char *wr = (const char *)w + (size_t)r * wrow;                           \
            for (int c = 0; c < ncols; c++)                                                \
                y[(size_t)c * ldy + r] =                                                   \
                    em_vec_dot(TYPE, n, wr, (const char *)x + (size_t)c * xcol);           \
        }                                                                                  \
    }
REF_MATMUL(mm_f32, EM_F32)
REF_MATMUL(mm_f16, EM_F16)
REF_MATMUL(mm_bf16, EM_BF16)
REF_MATMUL(mm_q8_0, EM_Q8_0)
REF_MATMUL(mm_q4_0, EM_Q4_0)
REF_MATMUL(mm_q4_1, EM_Q4_1)
REF_MATMUL(mm_q5_0, EM_Q5_0)
REF_MATMUL(mm_q5_1, EM_Q5_1)
REF_MATMUL(mm_q2_K, EM_Q2_K)
REF_MATMUL(mm_q3_K, EM_Q3_K)
REF_MATMUL(mm_q4_K, EM_Q4_K)
REF_MATMUL(mm_q5_K, EM_Q5_K)
REF_MATMUL(mm_q6_K, EM_Q6_K)
REF_MATMUL(mm_iq4_nl, EM_IQ4_NL)
REF_MATMUL(mm_iq4_xs, EM_IQ4_XS)
REF_MATMUL(mm_tq1_0, EM_TQ1_0)
REF_MATMUL(mm_tq2_0, EM_TQ2_0)
REF_MATMUL(mm_int2, EM_INT2)
REF_MATMUL(mm_int3, EM_INT3)
REF_MATMUL(mm_int4, EM_INT4)
REF_MATMUL(mm_int5, EM_INT5)
REF_MATMUL(mm_int6, EM_INT6)
REF_MATMUL(mm_int7, EM_INT7)
REF_MATMUL(mm_int8, EM_INT8)
REF_MATMUL(mm_bfp3, EM_BFP3)
REF_MATMUL(mm_bfp4, EM_BFP4)
REF_MATMUL(mm_bfp5, EM_BFP5)
REF_MATMUL(mm_bfp6, EM_BFP6)
REF_MATMUL(mm_bfp7, EM_BFP7)
REF_MATMUL(mm_ovp4, EM_OVP4)

static void rmsnorm_ref(float *o, const float *x, const float *w, int n, float eps) {
    double ss = 0.0;
    for (int i = 0; i < n; i++) ss += (double)(x[i] * x[i]);  /* float product, double sum: as ggml */
    const float scale = 1.0f / sqrtf((float)(ss / n) + eps);
    for (int i = 0; i < n; i++) o[i] = (x[i] * scale) * w[i];
}

static void softmax_ref(float *x, int n) {
    float max = -INFINITY;
    for (int i = 0; i < n; i++) max = x[i] > max ? x[i] : max;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - max);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

/* Two-pass softmax. Each e^x is held as p * 2^n with n = round(x log2 e) and
 * p = e^(x - n ln2) in [0.7, 1.42]; pass 1 keeps the running sum as (M, E) and rescales M
 * by an exact power of two whenever E grows. The spec computes p with libm in double. */
#define SOFTMAX2_CLAMP 4194304.0  /* 2^22: n stays an exact integer, x - n ln2 stays exact */
static void softmax2_ref(float *x, int n) {
    double M = 0.0, E = -INFINITY;
    int nan = 0;
    for (int i = 0; i < n; i++) {
        if (x[i] != x[i]) { nan = 1; continue; }
        const double xi = fmin(fmax((double)x[i], -SOFTMAX2_CLAMP), SOFTMAX2_CLAMP);
        const double e = nearbyint(xi * 1.4426950408889634), p = exp(xi - e * 0.6931471805599453);
        if (e > E) { M = ldexp(M, (int)fmax(E - e, -2000.0)); E = e; }
        M += ldexp(p, (int)fmax(e - E, -2000.0));
    }
    for (int i = 0; i < n; i++) {
        if (nan) { x[i] = NAN; continue; }
        const double xi = fmin(fmax((double)x[i], -SOFTMAX2_CLAMP), SOFTMAX2_CLAMP);
        const double e = nearbyint(xi * 1.4426950408889634), p = exp(xi - e * 0.6931471805599453);
        x[i] = (float)ldexp(p / M, (int)fmax(e - E, -2000.0));
    }
}

static void swiglu_ref(float *h, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) h[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void geglu_ref(float *h, const float *g, const float *u, int n) {
    for (int i = 0; i < n; i++) {
        const float x = g[i];
        float y;
        if (x <= -10.0f) y = 0.0f;
        else if (x >= 10.0f) y = x;
        else {
            const float xh = em_f16_to_f32(em_f32_to_f16(x));
            const float t = tanhf(0.79788456080286535587989211986876f * xh * fmaf(0.044715f * xh, xh, 1.0f));
            y = em_f16_to_f32(em_f32_to_f16(0.5f * xh * (1.0f + t)));
        }
        h[i] = y * u[i];
    }
}

/* One-pass attention for a GQA group (the spec of kernels.h): per position and head, the
 * online update of llama.cpp's CPU flash attention. State per head: running max M, sum S
 * and the output accumulator (floats, or halves for F16). */
static float kv_elem(int t, const void *row, int i) {
    return t == EM_F32 ? ((const float *)row)[i] : em_f16_to_f32(((const uint16_t *)row)[i]);
}

/* The F16 score as llama.cpp's x86 (AVX2) build computes it: the first hd & ~31 products
 * are fused-multiply-added into 32 float partial sums (element i into sum i % 32), which
 * are reduced as its 4 x 8-lane registers are: p[l] + p[16+l] and p[8+l] + p[24+l], their
 * sum a[l], then (a0+a4 + a1+a5) + (a2+a6 + a3+a7); the rest is added in double. */
static double dot_f16_ggml(const float *q, const uint16_t *k, int hd) {
    const int n32 = hd & ~31;
    float p[32] = { 0 };
    for (int i = 0; i < n32; i++) p[i % 32] = fmaf(em_f16_to_f32(k[i]), q[i], p[i % 32]);
    float a[8];
    for (int l = 0; l < 8; l++) a[l] = (p[l] + p[16 + l]) + (p[8 + l] + p[24 + l]);
    const float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
    double dot = n32 ? (double)((t0 + t1) + (t2 + t3)) : 0.0;
    for (int i = n32; i < hd; i++) dot += (double)(em_f16_to_f32(k[i]) * q[i]);
    return dot;
}

static void attn_x(int t, float *out, const float *q, int n_q, const void *k, const void *v, int n_kv,
                   int hd, size_t kstride, float scale, float softcap) {
    const float cap_scale = softcap != 0.0f ? scale / softcap : 0.0f;
    enum { G = EM_ATTN_MAX_GROUP };
    float qv[G][EM_ATTN_MAX_HD];
    uint16_t acc16[G][EM_ATTN_MAX_HD];
    const size_t esz = t == EM_F32 ? 4 : 2;
    float M[G], S[G];
    for (int h = 0; h < n_q; h++) {
        M[h] = -INFINITY;
        S[h] = 0.0f;
        for (int i = 0; i < hd; i++) {
            qv[h][i] = t == EM_F32 ? q[h * hd + i] : em_f16_to_f32(em_f32_to_f16(q[h * hd + i]));
            out[h * hd + i] = 0.0f;
            acc16[h][i] = 0;
        }
    }
    for (int j = 0; j < n_kv; j++) {
        const char *kt = (const char *)k + (size_t)j * kstride * esz, *vt = (const char *)v + (size_t)j * kstride * esz;
        for (int h = 0; h < n_q; h++) {
            double dot = 0.0;
            if (t == EM_F16) dot = dot_f16_ggml(qv[h], (const uint16_t *)kt, hd);
            else for (int i = 0; i < hd; i++) dot += (double)qv[h][i] * kv_elem(t, kt, i);
            const float s = softcap != 0.0f ? softcap * tanhf((float)dot * cap_scale) : (float)dot * scale;
            float ms = 1.0f, vs = 1.0f;
            if (s > M[h]) {  /* new maximum: rescale what was accumulated so far */
                ms = expf(M[h] - s);
                M[h] = s;
                for (int i = 0; i < hd; i++) {
                    if (t == EM_F32) out[h * hd + i] *= ms;
                    else acc16[h][i] = em_f32_to_f16(em_f16_to_f32(acc16[h][i]) * ms);
                }
            } else {
                vs = expf(s - M[h]);
            }
            for (int i = 0; i < hd; i++) {  /* F16: fused for the first hd & ~31, as llama.cpp */
                if (t == EM_F32) out[h * hd + i] += kv_elem(t, vt, i) * vs;
                else if (i < (hd & ~31)) acc16[h][i] = em_f32_to_f16(fmaf(kv_elem(t, vt, i), vs, em_f16_to_f32(acc16[h][i])));
                else acc16[h][i] = em_f32_to_f16(em_f16_to_f32(acc16[h][i]) + kv_elem(t, vt, i) * vs);
            }
            S[h] = t == EM_F16 ? fmaf(S[h], ms, vs) : S[h] * ms + vs;  /* F16: fused, as llama.cpp's x86 build */
        }
    }
    for (int h = 0; h < n_q; h++) {
        const float inv = S[h] == 0.0f ? 0.0f : 1.0f / S[h];
        for (int i = 0; i < hd; i++)
            out[h * hd + i] = (t == EM_F32 ? out[h * hd + i] : em_f16_to_f32(acc16[h][i])) * inv;
    }
}

static void attn_f32_ref(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv,
                         int hd, size_t kstride, float scale) {
    attn_x(EM_F32, out, q, n_q, k, v, n_kv, hd, kstride, scale, 0.0f);
}
static void attn_f16_ref(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv,
                         int hd, size_t kstride, float scale) {
    attn_x(EM_F16, out, q, n_q, k, v, n_kv, hd, kstride, scale, 0.0f);
}
static void attn_softcap_f32_ref(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv,
                                 int hd, size_t kstride, float scale, float softcap) {
    attn_x(EM_F32, out, q, n_q, k, v, n_kv, hd, kstride, scale, softcap);
}
static void attn_softcap_f16_ref(float *out, const float *q, int n_q, const void *k, const void *v, int n_kv,
                                 int hd, size_t kstride, float scale, float softcap) {
    attn_x(EM_F16, out, q, n_q, k, v, n_kv, hd, kstride, scale, softcap);
}

static void axpy_ref(float *y, const float *x, float a, int n) {
    for (int i = 0; i < n; i++) y[i] = fmaf(x[i], a, y[i]);
}

static void attn_kv_ref(const em_kernels *self, float *out, const float *q, int n_q, int tk, const void *k,
                        size_t krow, int tv, const void *v, size_t vrow, int n_kv, int hd, float scale) {
    attn_kv_body(self, axpy_ref, out, q, n_q, tk, k, krow, tv, v, vrow, n_kv, hd, scale);
}

/* Three-pass attention (the micro-benchmark's baseline): scores, then e^(s - max) and
 * the sum, then the weighted V rows. K/V rows of type t (F32 or F16). */

static void attn3_x(int t, float *out, const float *q, const void *k, const void *v, int n_kv,
                    int hd, size_t kstride, float scale, float *s) {
    const size_t esz = t == EM_F32 ? 4 : 2;
    float M = -INFINITY;
    for (int j = 0; j < n_kv; j++) {
        const char *kt = (const char *)k + (size_t)j * kstride * esz;
        double dot = 0.0;
        for (int i = 0; i < hd; i++) dot += (double)q[i] * kv_elem(t, kt, i);
        s[j] = (float)dot * scale;
        M = s[j] > M ? s[j] : M;
    }
    double S = 0.0;
    for (int j = 0; j < n_kv; j++) { s[j] = expf(s[j] - M); S += s[j]; }
    for (int i = 0; i < hd; i++) out[i] = 0.0f;
    for (int j = 0; j < n_kv; j++) {
        const char *vt = (const char *)v + (size_t)j * kstride * esz;
        for (int i = 0; i < hd; i++) out[i] += s[j] * kv_elem(t, vt, i);
    }
    const float inv = S == 0.0 ? 0.0f : (float)(1.0 / S);
    for (int i = 0; i < hd; i++) out[i] *= inv;
}

static void attn3_f32_ref(float *out, const float *q, const void *k, const void *v, int n_kv, int hd,
                          size_t kstride, float scale, float *s) {
    attn3_x(EM_F32, out, q, k, v, n_kv, hd, kstride, scale, s);
}
static void attn3_f16_ref(float *out, const float *q, const void *k, const void *v, int n_kv, int hd,
                          size_t kstride, float scale, float *s) {
    attn3_x(EM_F16, out, q, k, v, n_kv, hd, kstride, scale, s);
}

/* The 32 partial sums of ssm_scan reduced as ggml's GGML_F32x8_REDUCE reduces its 4 x 8 lanes. */
static float ssm_reduce32(float *acc) {
    for (int k = 0; k < 8; k++) {
        acc[k] += acc[16 + k];
        acc[8 + k] += acc[24 + k];
        acc[k] += acc[8 + k];
    }
    float h[4];
    for (int k = 0; k < 4; k++) h[k] = acc[k] + acc[4 + k];
    return (h[0] + h[1]) + (h[2] + h[3]);
}

static void ssm_scan_ref(float *S, const float *x, const float *B, const float *C, float dA, float dt, float D,
                         float *y, int hd, int ds) {
    const int np = ds & ~31;
    for (int i = 0; i < hd; i++) {
        float *s = S + (size_t)i * ds;
        const float x_dt = x[i] * dt;
        float acc[32] = { 0 };
        for (int j0 = 0; j0 < np; j0 += 32)
            for (int k = 0; k < 32; k++) {
                const float v = s[j0 + k] * dA + B[j0 + k] * x_dt;
                acc[k] = fmaf(v, C[j0 + k], acc[k]);
                s[j0 + k] = v;
            }
        float sum = ssm_reduce32(acc);
        for (int j = np; j < ds; j++) {
            const float v = s[j] * dA + B[j] * x_dt;
            sum = fmaf(v, C[j], sum);
            s[j] = v;
        }
        y[i] = sum + x[i] * D;
    }
}

const em_kernels em_kernels_ref = {
    .name = "ref",
    .quantize_act = {
        [EM_F32] = quant_f32, [EM_F16] = quant_f16, [EM_BF16] = quant_bf16,
        [EM_Q8_0] = quant_q8_0, [EM_Q8_1] = quant_q8_1, [EM_Q8_K] = quant_q8_K,
    },
    .matmul = {
        [EM_F32] = mm_f32, [EM_F16] = mm_f16, [EM_BF16] = mm_bf16, [EM_Q8_0] = mm_q8_0,
        [EM_Q4_0] = mm_q4_0, [EM_Q4_1] = mm_q4_1, [EM_Q5_0] = mm_q5_0, [EM_Q5_1] = mm_q5_1,
        [EM_Q2_K] = mm_q2_K, [EM_Q3_K] = mm_q3_K,
        [EM_Q4_K] = mm_q4_K, [EM_Q5_K] = mm_q5_K, [EM_Q6_K] = mm_q6_K,
        [EM_IQ4_NL] = mm_iq4_nl, [EM_IQ4_XS] = mm_iq4_xs, [EM_TQ1_0] = mm_tq1_0, [EM_TQ2_0] = mm_tq2_0,
        [EM_INT2] = mm_int2, [EM_INT3] = mm_int3, [EM_INT4] = mm_int4, [EM_INT5] = mm_int5,
        [EM_INT6] = mm_int6, [EM_INT7] = mm_int7, [EM_INT8] = mm_int8,
        [EM_BFP3] = mm_bfp3, [EM_BFP4] = mm_bfp4, [EM_BFP5] = mm_bfp5, [EM_BFP6] = mm_bfp6, [EM_BFP7] = mm_bfp7,
        [EM_OVP4] = mm_ovp4,
    },
    .rmsnorm = rmsnorm_ref,
    .softmax = softmax_ref,
    .softmax2 = softmax2_ref,
    .swiglu = swiglu_ref,
    .geglu = geglu_ref,
    .attn = { [EM_F32] = attn_f32_ref, [EM_F16] = attn_f16_ref },
    .attn_softcap = { [EM_F32] = attn_softcap_f32_ref, [EM_F16] = attn_softcap_f16_ref },
    .attn_kv = attn_kv_ref,
    .attn3 = { [EM_F32] = attn3_f32_ref, [EM_F16] = attn3_f16_ref },
    .ssm_scan = ssm_scan_ref,
};
