/* bench_kernels: micro-benchmarks of the softmax and attention kernels against their
 * straightforward three-pass versions, in and out of cache (BENCHMARKS.md).
 *   build/bench_kernels [softmax|attn|all] [-i ISA] [-r REPS]
 * Each case runs REPS timed rounds (default 7) of enough calls to last ~0.1 s, after one
 * warm-up call, and prints the median time per call. The ratio is three-pass time over
 * two-pass (softmax) or one-pass (attention) time: above 1 means the fewer-pass kernel wins.
 * Attention runs one query head, and a GQA group of 4 heads sharing the K/V head: the
 * one-pass kernel takes the group in one call, the three-pass baseline one head at a time.
 * Sizes up to 1 GiB, well past this machine's caches; the largest needs ~2 GiB of RAM. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernels/kernels.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_dbl(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*case_fn)(void *arg);

/* Median seconds per call of fn(arg) over reps rounds. */
static double time_call(case_fn fn, void *arg, int reps) {
    fn(arg);  /* warm-up (and first touch of the pages) */
    double t0 = now();
    fn(arg);
    const double one = now() - t0;
    int calls = one > 0.1 ? 1 : (int)(0.1 / (one > 1e-9 ? one : 1e-9)) + 1;
    double med[64];
    if (reps > 64) reps = 64;
    for (int r = 0; r < reps; r++) {
        t0 = now();
        for (int c = 0; c < calls; c++) fn(arg);
        med[r] = (now() - t0) / calls;
    }
    qsort(med, (size_t)reps, sizeof med[0], cmp_dbl);
    return med[reps / 2];
}

/* ---- softmax ---- */
typedef struct { const em_kernels *k; float *x; int n; int two; } sm_arg;

static void sm_run(void *p) {
    sm_arg *a = p;
    if (a->two) a->k->softmax2(a->x, a->n); else a->k->softmax(a->x, a->n);
}

static void bench_softmax(const em_kernels *k, int reps) {
    static const int64_t ns[] = { 1024, 16384, 49152, 151936, 1 << 20, 1 << 23, 1 << 26, 1 << 28 };
    printf("\n### softmax, in place, f32 (%s kernels)\n\n", k->name);
    printf("| n | bytes | three-pass µs | two-pass µs | three-pass GB/s | two-pass GB/s | ratio |\n");
    printf("|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
        const int n = (int)ns[i];
        float *x = malloc(sizeof(float) * (size_t)n);
        if (!x) { printf("| %d | (no memory) |\n", n); continue; }
        uint32_t s = 1;
        for (int j = 0; j < n; j++) { s = s * 1664525u + 1013904223u; x[j] = (float)(s >> 8) / 16777216.0f * 20.0f - 10.0f; }
        sm_arg a3 = { k, x, n, 0 }, a2 = { k, x, n, 1 };
        const double t3 = time_call(sm_run, &a3, reps), t2 = time_call(sm_run, &a2, reps);
        const double bytes = 4.0 * n;
        /* Traffic: three-pass reads 3x and writes 2x, two-pass reads 2x and writes once. */
        printf("| %d | %.1f MiB | %.1f | %.1f | %.1f | %.1f | %.2f |\n", n, bytes / 1048576.0, t3 * 1e6, t2 * 1e6,
               5 * bytes / t3 * 1e-9, 3 * bytes / t2 * 1e-9, t3 / t2);
        fflush(stdout);
        free(x);
    }
}

/* ---- attention ---- */
typedef struct {
    const em_kernels *k;
    int t, n_kv, hd, n_q;
    float *q, *out, *scores;
    void *kc, *vc;
    int three;
} at_arg;

static void at_run(void *p) {
    at_arg *a = p;
    const float scale = 1.0f / sqrtf((float)a->hd);
    if (a->three) {  /* one call per query head: each reads K and V again */
        for (int h = 0; h < a->n_q; h++)
            a->k->attn3[a->t](a->out + h * a->hd, a->q + h * a->hd, a->kc, a->vc, a->n_kv, a->hd, (size_t)a->hd, scale, a->scores);
    } else {
        a->k->attn[a->t](a->out, a->q, a->n_q, a->kc, a->vc, a->n_kv, a->hd, (size_t)a->hd, scale);
    }
}

static void bench_attn(const em_kernels *k, int reps) {
    static const int nkv[] = { 256, 4096, 32768, 262144, 2097152 };
    const int hd = 64;
    for (int t = EM_F32; t <= EM_F16; t++) {
        const char *tn = t == EM_F32 ? "f32" : "f16";
        const size_t esz = t == EM_F32 ? 4 : 2;
        printf("\n### attention, head width %d, %s K/V (%s kernels)\n\n", hd, tn, k->name);
        printf("| n_kv | K+V bytes | query heads per K/V head | three-pass µs | one-pass µs | ratio |\n");
        printf("|---:|---:|---:|---:|---:|---:|\n");
        for (size_t i = 0; i < 2 * sizeof nkv / sizeof nkv[0]; i++) {
            const int n = nkv[i / 2], g = i % 2 ? 4 : 1;
            const size_t nel = (size_t)n * hd;
            at_arg a = { k, t, n, hd, g, malloc(sizeof(float) * hd * g), malloc(sizeof(float) * hd * g),
                         malloc(sizeof(float) * (size_t)n), malloc(esz * nel), malloc(esz * nel), 0 };
            if (!a.q || !a.out || !a.scores || !a.kc || !a.vc) {
                printf("| %d | (no memory) |\n", n);
            } else {
                uint32_t s = 7;
                for (int j = 0; j < hd * g; j++) { s = s * 1664525u + 1013904223u; a.q[j] = (float)(s >> 8) / 16777216.0f - 0.5f; }
                for (size_t j = 0; j < nel; j++) {
                    s = s * 1664525u + 1013904223u;
                    const float kv = (float)(s >> 8) / 16777216.0f - 0.5f;
                    if (t == EM_F32) { ((float *)a.kc)[j] = kv; ((float *)a.vc)[j] = -kv; }
                    else { ((uint16_t *)a.kc)[j] = em_f32_to_f16(kv); ((uint16_t *)a.vc)[j] = em_f32_to_f16(-kv); }
                }
                a.three = 1;
                const double t3 = time_call(at_run, &a, reps);
                a.three = 0;
                const double t1 = time_call(at_run, &a, reps);
                printf("| %d | %.1f MiB | %d | %.1f | %.1f | %.2f |\n", n, 2.0 * esz * nel / 1048576.0, g, t3 * 1e6, t1 * 1e6, t3 / t1);
                fflush(stdout);
            }
            free(a.q); free(a.out); free(a.scores); free(a.kc); free(a.vc);
        }
    }
}

int main(int argc, char **argv) {
    const char *what = "all", *isa = NULL;
    int reps = 7;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-i") && i + 1 < argc) isa = argv[++i];
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (argv[i][0] != '-') what = argv[i];
        else { fprintf(stderr, "usage: bench_kernels [softmax|attn|all] [-i ISA] [-r REPS]\n"); return 1; }
    }
    const em_kernels *k = isa ? em_kernels_by_name(isa) : em_kernels_best();
    if (!k) { fprintf(stderr, "error: ISA '%s' is not available on this CPU\n", isa); return 1; }
    if (reps < 1) reps = 1;
    printf("bench_kernels: %s kernels, median of %d rounds\n", k->name, reps);
    if (!strcmp(what, "softmax") || !strcmp(what, "all")) bench_softmax(k, reps);
    if (!strcmp(what, "attn") || !strcmp(what, "all")) bench_attn(k, reps);
    return 0;
}
