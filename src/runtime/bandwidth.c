/* bandwidth.c: what `ember bench` needs to place a run on the roofline: for decoding, a
 * STREAM-like read-bandwidth probe and the bytes one decoded token reads; for prompt
 * processing, the multiply-add peak (kernels/peak.c runs the instructions) and the
 * multiply-adds one token costs; and the default thread count.
 *
 * The probe allocates a buffer much larger than the last-level cache, writes it from the
 * threads that will read it (first touch places the pages near them), then each thread
 * sums its contiguous slice with independent accumulators, several passes; the best pass
 * counts (like STREAM's "best rate"). Only reads are timed, so the figure is the read
 * bandwidth a bandwidth-bound decode can hope for. Plain C on purpose: no ISA flags here,
 * and eight independent 64-bit add chains per thread already outrun one core's share of
 * DRAM bandwidth on every machine we know. */
#include <stdlib.h>
#include <string.h>
#include "runtime/internal.h"
#include "kernels/kernels.h"

#define BW_ACC 8                      /* independent accumulators per thread */

typedef struct bw_job {
    uint64_t *buf;
    size_t n_words;                   /* multiple of BW_ACC */
    uint64_t sums[256][BW_ACC];       /* one cache line per thread: no false sharing */
} bw_job;

/* Static slice [*w0, *w1) of the words for thread ith of nth, in whole accumulator groups. */
static void bw_slice(const bw_job *j, int ith, int nth, size_t *w0, size_t *w1) {
    const size_t groups = j->n_words / BW_ACC;
    *w0 = groups * (size_t)ith / (size_t)nth * BW_ACC;
    *w1 = groups * (size_t)(ith + 1) / (size_t)nth * BW_ACC;
}

static void bw_touch(void *arg, int ith, int nth) {
    bw_job *j = arg;
    size_t w0, w1;
    bw_slice(j, ith, nth, &w0, &w1);
    for (size_t i = w0; i < w1; i++) j->buf[i] = i * 0x9E3779B97F4A7C15ull;
}

static void bw_read(void *arg, int ith, int nth) {
    bw_job *j = arg;
    size_t w0, w1;
    bw_slice(j, ith, nth, &w0, &w1);
    /* Written out so the accumulators stay in registers. */
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    const uint64_t *p = j->buf;
    for (size_t i = w0; i < w1; i += BW_ACC) {
        a0 += p[i]; a1 += p[i + 1]; a2 += p[i + 2]; a3 += p[i + 3];
        a4 += p[i + 4]; a5 += p[i + 5]; a6 += p[i + 6]; a7 += p[i + 7];
    }
    /* Stored so the compiler cannot drop the loads. */
    uint64_t *out = j->sums[ith];
    out[0] = a0; out[1] = a1; out[2] = a2; out[3] = a3;
    out[4] = a4; out[5] = a5; out[6] = a6; out[7] = a7;
}

ember_status ember_read_bandwidth(int n_threads, size_t bytes, int passes, double *gbps) {
    if (!gbps) return em_fail(EMBER_E_INVALID, "ember_read_bandwidth: gbps is NULL");
    *gbps = 0;
    if (n_threads < 0 || passes < 0) return em_fail(EMBER_E_INVALID, "ember_read_bandwidth: negative argument");
    if (n_threads == 0) n_threads = em_physical_cores();
    if (n_threads > 256) n_threads = 256;
    if (bytes == 0) bytes = (size_t)1 << 30;
    if (passes == 0) passes = 5;
    bw_job *j = calloc(1, sizeof *j);
    if (!j) return em_fail(EMBER_E_NOMEM, "out of memory");
    j->n_words = bytes / sizeof(uint64_t) / BW_ACC * BW_ACC;
    if (j->n_words == 0) { free(j); return em_fail(EMBER_E_INVALID, "ember_read_bandwidth: buffer too small"); }
    /* 2 MiB alignment lets the kernel back the buffer with transparent huge pages, so TLB
     * misses do not lower the figure. */
    void *buf = NULL;
    if (posix_memalign(&buf, (size_t)2 << 20, j->n_words * sizeof(uint64_t))) {
        free(j);
        return em_fail(EMBER_E_NOMEM, "ember_read_bandwidth: cannot allocate %zu MiB", bytes >> 20);
    }
    j->buf = buf;
    em_pool *pool = em_pool_new(n_threads);
    if (!pool) { free(buf); free(j); return em_fail(EMBER_E_NOMEM, "ember_read_bandwidth: no thread pool"); }
    em_pool_run(pool, bw_touch, j);
    double best_ms = 0;
    for (int pass = 0; pass < passes; pass++) {
        const double t0 = em_time_ms();
        em_pool_run(pool, bw_read, j);
        const double ms = em_time_ms() - t0;
        if (pass == 0 || ms < best_ms) best_ms = ms;
    }
    const double read = (double)(j->n_words * sizeof(uint64_t));
    *gbps = best_ms > 0 ? read / (best_ms * 1e6) : 0;
    em_pool_free(pool);
    free(buf);
    free(j);
    return EMBER_OK;
}

uint64_t ember_context_bytes_per_token(const ember_context *ctx, int n_past) {
    if (!ctx || n_past < 0) return 0;
    const struct ember_model *m = ctx->m;
    const em_hparams *hp = &m->hp;
    uint64_t bytes = m->weight_bytes;
    /* An untied token_embd is looked up, one row per token; tied, the output matmul reads
     * all of it. */
    if (!m->tied_output && m->tok_embd.rows > 1)
        bytes -= (uint64_t)(m->tok_embd.rows - 1) * m->tok_embd.row_bytes;
    const uint64_t per_pos = em_kv_bytes_per_token(hp, ctx->kv.type_k, ctx->kv.type_v);
    return bytes + per_pos * ((uint64_t)n_past + 1);
}

uint64_t ember_context_macs_per_token(const ember_context *ctx, uint64_t *int8, uint64_t *flt) {
    if (int8) *int8 = 0;
    if (flt) *flt = 0;
    if (!ctx) return 0;
    const struct ember_model *m = ctx->m;
    int64_t i8 = m->int8_elems, fl = m->float_elems;
    /* An untied token_embd is a lookup, not a product. */
    if (!m->tied_output && m->tok_embd.rows > 1) {
        const em_type_info *ti = em_type_get(m->tok_embd.type);
        const int vt = ti ? ti->vec_dot_type : -1;
        int64_t *cls = (vt == EM_Q8_0 || vt == EM_Q8_1 || vt == EM_Q8_K) ? &i8 : &fl;
        const int64_t n = m->tok_embd.rows * m->tok_embd.cols;
        *cls = *cls > n ? *cls - n : 0;
    }
    if (int8) *int8 = (uint64_t)i8;
    if (flt) *flt = (uint64_t)fl;
    return (uint64_t)(i8 + fl);
}

typedef struct peak_job {
    const char *isa;
    int f32;
    int64_t iters;
    int64_t macs[256];
} peak_job;

static void peak_run(void *arg, int ith, int nth) {
    (void)nth;
    peak_job *j = arg;
    j->macs[ith] = em_peak_probe(j->isa, j->f32, j->iters);
}

ember_status ember_compute_peak(int n_threads, ember_peak_kind kind, const char *isa, double *gops) {
    if (!gops) return em_fail(EMBER_E_INVALID, "ember_compute_peak: gops is NULL");
    *gops = 0;
    if (n_threads < 0) return em_fail(EMBER_E_INVALID, "ember_compute_peak: negative thread count");
    if (kind != EMBER_PEAK_INT8 && kind != EMBER_PEAK_F32)
        return em_fail(EMBER_E_INVALID, "ember_compute_peak: unknown kind %d", (int)kind);
    const em_kernels *k = isa ? em_kernels_by_name(isa) : em_kernels_best();
    if (!k) return em_fail(EMBER_E_INVALID, "ember_compute_peak: ISA '%s' is not available on this CPU", isa);
    if (n_threads == 0) n_threads = em_physical_cores();
    if (n_threads > 256) n_threads = 256;
    peak_job *j = calloc(1, sizeof *j);
    if (!j) return em_fail(EMBER_E_NOMEM, "out of memory");
    j->isa = k->name;
    j->f32 = kind == EMBER_PEAK_F32;
    /* Calibrate on one thread: a pass should take about 20 ms. */
    j->iters = 1 << 12;
    for (;;) {
        const double t0 = em_time_ms();
        em_peak_probe(j->isa, j->f32, j->iters);
        const double ms = em_time_ms() - t0;
        if (ms >= 2 || j->iters >= (int64_t)1 << 34) {
            const double scale = ms > 0 ? 20.0 / ms : 1;
            j->iters = (int64_t)((double)j->iters * (scale < 1 ? 1 : scale));
            break;
        }
        j->iters *= 4;
    }
    em_pool *pool = em_pool_new(n_threads);
    if (!pool) { free(j); return em_fail(EMBER_E_NOMEM, "ember_compute_peak: no thread pool"); }
    double best = 0;
    for (int pass = 0; pass < 5; pass++) {
        const double t0 = em_time_ms();
        em_pool_run(pool, peak_run, j);
        const double ms = em_time_ms() - t0;
        double macs = 0;
        for (int t = 0; t < n_threads; t++) macs += (double)j->macs[t];
        const double g = ms > 0 ? 2 * macs / (ms * 1e6) : 0;
        if (g > best) best = g;
    }
    em_pool_free(pool);
    free(j);
    *gops = best;
    return EMBER_OK;
}

int ember_cpu_cores(void) { return em_physical_cores(); }
