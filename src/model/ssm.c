/* ssm.c: falcon-h1's Mamba-2 mixer, the branch that runs beside attention in every layer
 * on the same normed input (forward.c adds both outputs to the residual stream).
 *
 * For one token of a sequence, with d_inner = n_head * head_dim, conv channels
 * ch = d_inner + 2 * n_group * d_state and g(h) = h / (n_head / n_group):
 *   z, xBC, dt   = rows [0, d_inner), [d_inner, d_inner + ch), the last n_head of ssm_in . x
 *   xBC          = silu(conv1d(xBC) + conv_bias): per channel, the dot product of its
 *                  d_conv taps with its last d_conv - 1 inputs (the conv state) and this one
 *   x, B, C      = xBC's d_inner, n_group * d_state, n_group * d_state values
 *   dt_h         = softplus(dt_h + dt_bias_h),  dA_h = exp(dt_h * A_h)  (A = -exp(A_log))
 *   S_h[i][j]    = S_h[i][j] * dA_h + B_g(h)[j] * (x_h[i] * dt_h)   (the state, per sequence)
 *   y_h[i]       = sum_j S_h[i][j] * C_g(h)[j] + x_h[i] * D_h
 *   y            = rmsnorm_per_group(silu(z) * y) * ssm_norm   (gated RMSNorm, when present)
 *   out          = ssm_out . y
 * The arithmetic is llama.cpp's CPU backend's (ggml_ssm_conv, ggml_ssm_scan and the ops
 * around them, as its x86 AVX2+FMA build runs them): the conv's dot product is a fused
 * multiply-add chain from 0, the bias added after; softplus(x) = x above 20, else
 * log(1 + exp(x)); the scan is the kernel table's ssm_scan (kernels.h spells out its
 * arithmetic, the same bits in every ISA); silu and the gate run through the table's
 * swiglu (ggml's rows: the conv's ch values, the gate one head at a time).
 *
 * Tokens are taken in batch order, so a sequence's tokens advance its state one by one
 * whatever the chunking (a chunked prefill gives decode's numbers exactly). Threads split
 * the conv channels, then the SSM heads; every value is computed by the same code in the
 * same order whatever the thread count. A sequence's first cell starts from the zero
 * state. With checkpoints on (ssm_state.h), each token's state is copied to its slot. */
#include <math.h>
#include <string.h>
#include "runtime/internal.h"

typedef struct {
    struct ember_context *ctx;
    int l, T;
} ssm_task;

static float softplus(float x) { return x > 20.0f ? x : logf(1.0f + expf(x)); }

/* Checkpoint slot of sequence s after `cells` cells (em_ssm_ckpt_slot marked it). */
static float *ckpt_at(const em_ssm_state *st, int s, int cells) {
    return st->ckpt + ((size_t)s * st->n_ckpt + (size_t)(cells % st->n_ckpt)) * st->seq_n;
}

/* Conv channels [c0, c1) for every token: reads the xBC inputs in ctx->ssm_zxbcdt, writes
 * the conv outputs (plus bias, before silu) over them, advances the conv states. */
static void conv_worker(void *arg, int ith, int nth) {
    const ssm_task *a = arg;
    struct ember_context *ctx = a->ctx;
    const em_hparams *hp = &ctx->m->hp;
    const em_layer *L = &ctx->m->layers[a->l];
    em_ssm_state *st = &ctx->kv.ssm;
    const int ch = st->conv_ch, nc = st->d_conv, ns = nc - 1;
    const size_t ld = (size_t)L->ssm_in.rows, off = (size_t)a->l * (st->conv_n + st->ssm_n);
    const int c0 = (int)((int64_t)ch * ith / nth), c1 = (int)((int64_t)ch * (ith + 1) / nth);
    const float *w = L->ssm_conv1d.data, *bias = L->ssm_conv1d_b.data;
    for (int t = 0; t < a->T; t++) {
        const int s = ctx->tok_seq[t];
        float *state = em_ssm_conv(st, a->l, s), *xbc = ctx->ssm_zxbcdt + (size_t)t * ld + hp->ssm_d_inner;
        if (ctx->tok_cell[t] == 0) memset(state + (size_t)c0 * ns, 0, (size_t)(c1 - c0) * ns * sizeof(float));
        for (int c = c0; c < c1; c++) {
            float *sc = state + (size_t)c * ns;
            const float *wc = w + (size_t)c * nc, in = xbc[c];
            float sum = 0.0f;
            for (int i = 0; i < ns; i++) sum = fmaf(sc[i], wc[i], sum);
            sum = fmaf(in, wc[ns], sum);
            xbc[c] = bias ? sum + bias[c] : sum;
            if (ns > 0) {
                memmove(sc, sc + 1, (size_t)(ns - 1) * sizeof(float));
                sc[ns - 1] = in;
            }
        }
        if (st->n_ckpt)
            memcpy(ckpt_at(st, s, ctx->tok_cell[t] + 1) + off + (size_t)c0 * ns, state + (size_t)c0 * ns,
                   (size_t)(c1 - c0) * ns * sizeof(float));
    }
}

/* SSM heads [h0, h1) for every token: y = scan + x * D (ssm_scan) into ctx->ssm_y. */
static void scan_worker(void *arg, int ith, int nth) {
    const ssm_task *a = arg;
    struct ember_context *ctx = a->ctx;
    const em_hparams *hp = &ctx->m->hp;
    const em_layer *L = &ctx->m->layers[a->l];
    em_ssm_state *st = &ctx->kv.ssm;
    const int nh = st->n_head, hd = st->head_dim, ds = st->d_state, di = hp->ssm_d_inner;
    const int heads_per_group = nh / hp->ssm_n_group, gs = hp->ssm_n_group * ds;
    const size_t ld = (size_t)L->ssm_in.rows, hs = (size_t)hd * ds;
    const size_t off = (size_t)a->l * (st->conv_n + st->ssm_n) + st->conv_n;
    const int h0 = nh * ith / nth, h1 = nh * (ith + 1) / nth;
    const float *A = L->ssm_a.data, *D = L->ssm_d.data, *dtb = L->ssm_dt_b.data;
    for (int t = 0; t < a->T; t++) {
        const int s = ctx->tok_seq[t];
        const float *row = ctx->ssm_zxbcdt + (size_t)t * ld;
        const float *xbc = row + di, *dt = row + di + st->conv_ch;
        float *state = em_ssm_ssm(st, a->l, s), *y = ctx->ssm_y + (size_t)t * di;
        if (ctx->tok_cell[t] == 0) memset(state + (size_t)h0 * hs, 0, (size_t)(h1 - h0) * hs * sizeof(float));
        for (int h = h0; h < h1; h++) {
            const float sp = softplus(dt[h] + dtb[h]), dA = expf(sp * A[h]);
            const int g = h / heads_per_group;
            const float *B = xbc + di + (size_t)g * ds, *C = xbc + di + gs + (size_t)g * ds;
            ctx->kern->ssm_scan(state + (size_t)h * hs, xbc + (size_t)h * hd, B, C, dA, sp, D[h], y + (size_t)h * hd,
                                hd, ds);
        }
        if (st->n_ckpt)
            memcpy(ckpt_at(st, s, ctx->tok_cell[t] + 1) + off + (size_t)h0 * hs, state + (size_t)h0 * hs,
                   (size_t)(h1 - h0) * hs * sizeof(float));
    }
}

void em_ssm_forward(struct ember_context *ctx, int l, int T) {
    const struct ember_model *m = ctx->m;
    const em_hparams *hp = &m->hp;
    const em_layer *L = &m->layers[l];
    const em_kernels *k = ctx->kern;
    em_ssm_state *st = &ctx->kv.ssm;
    const int d = hp->n_embd, di = hp->ssm_d_inner, ch = st->conv_ch, hd = st->head_dim;
    const int ld = (int)L->ssm_in.rows, gw = di / hp->ssm_n_group;
    if (st->n_ckpt && l == 0)
        for (int t = 0; t < T; t++) em_ssm_ckpt_slot(st, ctx->tok_seq[t], ctx->tok_cell[t] + 1);

    em_matmul(ctx, &L->ssm_in, ctx->xb, d, T, ctx->ssm_zxbcdt, ld);
    ssm_task task = { ctx, l, T };
    em_pool_run(ctx->pool, conv_worker, &task);
    for (int t = 0; t < T; t++) {  /* silu, through the table's swiglu with a gate of ones */
        float *xbc = ctx->ssm_zxbcdt + (size_t)t * ld + di;
        k->swiglu(xbc, xbc, ctx->ssm_one, ch);
    }
    em_pool_run(ctx->pool, scan_worker, &task);
    for (int t = 0; t < T; t++) {
        float *y = ctx->ssm_y + (size_t)t * di;
        const float *z = ctx->ssm_zxbcdt + (size_t)t * ld;
        for (int h = 0; h < di; h += hd) k->swiglu(y + h, z + h, y + h, hd);  /* silu(z) * y, per head */
        if (L->ssm_norm.data)
            for (int g = 0; g < di; g += gw)
                k->rmsnorm(y + g, y + g, (const float *)L->ssm_norm.data + g, gw, hp->rms_eps);
    }
    em_matmul(ctx, &L->ssm_out, ctx->ssm_y, di, T, ctx->ssm_o, d);
}
