/* cpu.c: picks the kernel table for this CPU. Each ISA file (kern_avx2.c, kern_avx512.c,
 * kern_neon.c) defines a table that fills only the slots it speeds up; here every empty
 * slot is filled from the reference table, so callers never see a NULL kernel. A table is
 * offered only when the CPU and the OS support its instructions (cpuid + XGETBV on x86,
 * HWCAP on arm). EMBER_ISA=ref|avx2|avx512|neon forces one (tests, benchmarks, bug
 * reports). The Makefile compiles the x86 files on x86-64 and the NEON file on aarch64, so
 * the references below match what is built (strong references, so a static library
 * pulls the ISA objects in for any program that links it). */
#include <stdlib.h>
#include <string.h>
#include "kernels/kernels.h"

#if defined(__x86_64__)
#include <cpuid.h>
extern const em_kernels em_kernels_avx2, em_kernels_avx512;
#define AVX2_TABLE (&em_kernels_avx2)
#define AVX512_TABLE (&em_kernels_avx512)
#define NEON_TABLE NULL

static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* AVX2 + FMA + F16C with the OS saving YMM state. */
static int has_avx2(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = c >> 12 & 1, osxsave = c >> 27 & 1, avx = c >> 28 & 1, f16c = c >> 29 & 1;
    if (!(fma && osxsave && avx && f16c) || (xgetbv0() & 6) != 6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return b >> 5 & 1;
}

/* AVX-512 F/BW/VL/DQ + VNNI with the OS saving opmask and ZMM state. */
static int has_avx512(void) {
    unsigned a, b, c, d;
    if (!has_avx2() || (xgetbv0() & 0xE6) != 0xE6) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const int f = b >> 16 & 1, dq = b >> 17 & 1, bw = b >> 30 & 1, vl = b >> 31 & 1, vnni = c >> 11 & 1;
    return f && dq && bw && vl && vnni;
}
static int has_neon(void) { return 0; }
#elif defined(__aarch64__)
#include <sys/auxv.h>
extern const em_kernels em_kernels_neon;
#define AVX2_TABLE NULL
#define AVX512_TABLE NULL
#define NEON_TABLE (&em_kernels_neon)
static int has_avx2(void) { return 0; }
static int has_avx512(void) { return 0; }
static int has_neon(void) { return (getauxval(AT_HWCAP) & (1UL << 1)) != 0; } /* HWCAP_ASIMD */
#else
#define AVX2_TABLE NULL
#define AVX512_TABLE NULL
#define NEON_TABLE NULL
static int has_avx2(void) { return 0; }
static int has_avx512(void) { return 0; }
static int has_neon(void) { return 0; }
#endif

static int always(void) { return 1; }

typedef struct { const em_kernels *table; int (*supported)(void); em_kernels merged; int ready; } isa_entry;

/* Best first. */
static isa_entry isas[] = {
    { AVX512_TABLE, has_avx512, { 0 }, 0 },
    { AVX2_TABLE, has_avx2, { 0 }, 0 },
    { NEON_TABLE, has_neon, { 0 }, 0 },
    { &em_kernels_ref, always, { 0 }, 0 },
};
#define N_ISAS (sizeof isas / sizeof isas[0])

/* Fills the empty slots of an ISA table from ref. Tables are immutable after this, and
 * filling is idempotent, so a race between two first callers writes identical bytes. */
static const em_kernels *merged(isa_entry *e) {
    if (!e->ready) {
        em_kernels k = *e->table;
        const em_kernels *r = &em_kernels_ref;
        for (int t = 0; t < EM_TYPE_COUNT; t++) {
            if (!k.quantize_act[t]) k.quantize_act[t] = r->quantize_act[t];
            if (!k.matmul[t]) k.matmul[t] = r->matmul[t];
            if (!k.attn[t]) k.attn[t] = r->attn[t];
            if (!k.attn_softcap[t]) k.attn_softcap[t] = r->attn_softcap[t];
            if (!k.attn3[t]) k.attn3[t] = r->attn3[t];
        }
        if (!k.rmsnorm) k.rmsnorm = r->rmsnorm;
        if (!k.softmax) k.softmax = r->softmax;
        if (!k.softmax2) k.softmax2 = r->softmax2;
        if (!k.swiglu) k.swiglu = r->swiglu;
        if (!k.geglu) k.geglu = r->geglu;
        if (!k.attn_kv) k.attn_kv = r->attn_kv;
        if (!k.ssm_scan) k.ssm_scan = r->ssm_scan;
        e->merged = k;
        e->ready = 1;
    }
    return &e->merged;
}

const em_kernels *em_kernels_by_name(const char *name) {
    for (size_t i = 0; i < N_ISAS; i++)
        if (isas[i].table && !strcmp(isas[i].table->name, name) && isas[i].supported())
            return merged(&isas[i]);
    return NULL;
}

const em_kernels *em_kernels_best(void) {
    const char *env = getenv("EMBER_ISA");
    if (env && *env) {
        const em_kernels *k = em_kernels_by_name(env);
        if (k) return k;
    }
    for (size_t i = 0; i < N_ISAS; i++)
        if (isas[i].table && isas[i].supported()) return merged(&isas[i]);
    return &em_kernels_ref;
}

/* Names of the ISAs usable here, best first, for tests and `ember info`. */
int em_kernels_list(const char **names, int max) {
    int n = 0;
    for (size_t i = 0; i < N_ISAS && n < max; i++)
        if (isas[i].table && isas[i].supported()) names[n++] = isas[i].table->name;
    return n;
}
