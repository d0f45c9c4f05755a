/* cpu.c: picks the kernel table for this CPU. ISA tables register here as they are
 * added (kern_avx2.c, kern_avx512.c, kern_neon.c); each is used only when the CPU and OS
 * support it. EMBER_ISA=ref|avx2|avx512|neon forces one (tests, benchmarks, bug reports). */
#include <stdlib.h>
#include <string.h>
#include "kernels.h"

typedef struct { const em_kernels *table; int (*supported)(void); } isa_entry;

static int always(void) { return 1; }

/* Best first. */
static const isa_entry isas[] = {
    { &em_kernels_ref, always },
};

const em_kernels *em_kernels_by_name(const char *name) {
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
        if (!strcmp(isas[i].table->name, name) && isas[i].supported()) return isas[i].table;
    return NULL;
}

const em_kernels *em_kernels_best(void) {
    const char *env = getenv("EMBER_ISA");
    if (env && *env) {
        const em_kernels *k = em_kernels_by_name(env);
        if (k) return k;
    }
    for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++)
        if (isas[i].supported()) return isas[i].table;
    return &em_kernels_ref;
}
