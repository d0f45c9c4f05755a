/* bench_matmul: one thread's quantized matmul kernel alone, as forward.c calls it (all rows
 * of a matrix, the activation columns in chunks of up to 8), to see where prefill and
 * decode time goes without the rest of the forward pass.
 *   build/bench_matmul [-i ISA] [-t TYPE] [-r ROWS] [-n COLS] [-T TOKENS] [-s SECONDS]
 * Defaults: the ISA table em_kernels_best picks, Q4_K, a 1536 x 1536 matrix, T = 64 and
 * T = 1. Weights are random bytes with sane scales; activations are random floats
 * quantized by the table. Prints, per T, the time per call of the whole matrix, multiply-
 * accumulates per second (2 int8 ops each) and the weight bytes read per second. */
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

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint32_t rnd(void) {
    rng ^= rng >> 12; rng ^= rng << 25; rng ^= rng >> 27;
    return (uint32_t)((rng * 0x2545F4914F6CDD1Dull) >> 32);
}

/* Random bytes, then every fp16 field that is a block scale set to a small value: the
 * kernels' speed does not depend on the values, only NaN/inf scales would be odd. */
static void fill_weights(int t, unsigned char *w, size_t bytes) {
    for (size_t i = 0; i < bytes; i++) w[i] = (unsigned char)rnd();
    const em_type_info *tr = em_type_get(t);
    const uint16_t d = em_f32_to_f16(0.01f);
    for (size_t off = 0; off + tr->bytes <= bytes; off += tr->bytes) {
        unsigned char *b = w + off;
        switch (t) {
        case EM_Q4_K: memcpy(b, &d, 2); memcpy(b + 2, &d, 2); break;
        case EM_Q5_K: memcpy(b, &d, 2); memcpy(b + 2, &d, 2); break;
        case EM_Q6_K: memcpy(b + tr->bytes - 2, &d, 2); break;
        case EM_Q2_K: memcpy(b + tr->bytes - 4, &d, 2); memcpy(b + tr->bytes - 2, &d, 2); break;
        case EM_Q3_K: memcpy(b + tr->bytes - 2, &d, 2); break;
        default: memcpy(b, &d, 2); break;  /* the 32-element types start with d */
        }
    }
}

int main(int argc, char **argv) {
    const char *isa = NULL, *tname = "q4_K";
    int rows = 1536, cols = 1536;
    double secs = 0.5;
    int Ts[8] = { 64, 1 }, nT = 2, userT = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-i") && i + 1 < argc) isa = argv[++i];
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) tname = argv[++i];
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) rows = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-n") && i + 1 < argc) cols = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-s") && i + 1 < argc) secs = atof(argv[++i]);
        else if (!strcmp(argv[i], "-T") && i + 1 < argc) {
            if (!userT) nT = 0;
            userT = 1;
            if (nT < 8) Ts[nT++] = atoi(argv[++i]); else i++;
        } else {
            fprintf(stderr, "usage: %s [-i ISA] [-t TYPE] [-r ROWS] [-n COLS] [-T TOKENS]... [-s SECONDS]\n", argv[0]);
            return 2;
        }
    }
    const em_kernels *k = isa ? em_kernels_by_name(isa) : em_kernels_best();
    if (!k) { fprintf(stderr, "ISA %s not available\n", isa); return 1; }
    int t = -1;
    for (int i = 0; i < EM_TYPE_COUNT; i++)
        if (em_type_get(i) && em_type_get(i)->name && !strcmp(em_type_get(i)->name, tname)) t = i;
    if (t < 0) { fprintf(stderr, "unknown type %s\n", tname); return 1; }
    const int vt = em_type_get(t)->vec_dot_type;
    if (cols % em_type_get(t)->blck) { fprintf(stderr, "COLS must be a multiple of %d\n", em_type_get(t)->blck); return 1; }
    const size_t wrow = em_row_size(t, cols), xcol = em_row_size(vt, cols);
    int maxT = 1;
    for (int i = 0; i < nT; i++) if (Ts[i] > maxT) maxT = Ts[i];
    unsigned char *w = malloc(wrow * rows), *x = malloc(xcol * maxT);
    float *xf = malloc(sizeof(float) * cols), *y = malloc(sizeof(float) * (size_t)rows * maxT);
    if (!w || !x || !xf || !y) { fprintf(stderr, "out of memory\n"); return 1; }
    fill_weights(t, w, wrow * rows);
    for (int c = 0; c < maxT; c++) {
        for (int i = 0; i < cols; i++) xf[i] = (float)rnd() / 4294967296.0f * 2.0f - 1.0f;
        k->quantize_act[vt](xf, x + (size_t)c * xcol, cols);
    }
    printf("%s %s, %d x %d (%.2f MB of weights)\n", k->name, tname, rows, cols, wrow * rows / 1e6);
    for (int i = 0; i < nT; i++) {
        const int T = Ts[i];
        int calls = 0;
        double t0 = now(), el;
        do {
            for (int c = 0; c < T; c += 8)
                k->matmul[t](cols, w, wrow, 0, rows, x + (size_t)c * xcol, xcol, T - c < 8 ? T - c : 8,
                             y + (size_t)c * rows, rows);
            calls++;
            el = now() - t0;
        } while (el < secs);
        const double per = el / calls, macs = (double)rows * cols * T;
        printf("  T=%-4d %9.1f us/call  %7.1f GMAC/s (%6.3f int8 TOP/s)  %6.2f GB/s of weights\n", T, per * 1e6,
               macs / per * 1e-9, 2 * macs / per * 1e-12, wrow * rows / per * 1e-9);
    }
    free(w); free(x); free(xf); free(y);
    return 0;
}
