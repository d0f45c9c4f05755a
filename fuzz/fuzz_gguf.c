/* fuzz/fuzz_gguf.c: libFuzzer target for the GGUF reader.
 * Opens arbitrary bytes with gguf_open_mem and, when that succeeds, walks everything the
 * public API exposes: every key with every getter, every array element (first/last bytes
 * of fixed-size arrays, every string of string arrays), and every tensor's first and last
 * data byte, so ASan sees any pointer the reader hands out that leaves the buffer. A
 * rejected input must come with a nonempty message. Build (clang):
 *   clang -std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=fuzzer,address,undefined -Iinclude -Isrc \
 *         fuzz/fuzz_gguf.c src/model/gguf.c -o /tmp/fuzz_gguf
 * Replayed over fuzz/corpus/gguf by tests/fuzz_replay_main.c in `make test`. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"

static volatile unsigned sink;  /* keeps the reads from being optimised away */

static void touch(const void *p, size_t n) {
    if (!n) return;
    const unsigned char *b = p;
    sink += b[0] + b[n - 1];
}

static void walk_kv(const gguf_ctx *g, int64_t i) {
    const char *key = gguf_kv_key(g, i), *s;
    size_t len;
    int64_t v;
    double d;
    int b, et;
    uint64_t n;
    const void *data;
    if (!key || gguf_find_key(g, key) != i) abort();  /* keys are unique and indexed */
    sink += (unsigned)gguf_kv_type(g, i);
    sink += (unsigned)gguf_get_int(g, key, &v) + (unsigned)gguf_get_float(g, key, &d) +
            (unsigned)gguf_get_bool(g, key, &b);
    if (gguf_get_str(g, key, &s, &len) == 0) touch(s, len);
    if (gguf_get_arr(g, key, &et, &n, &data) != 0) return;
    const char *en = gguf_vtype_name(et);
    if (!en) abort();  /* the reader only accepts known element types */
    if (data) {
        size_t es = et == GGUF_U8 || et == GGUF_I8 || et == GGUF_BOOL ? 1
                  : et == GGUF_U16 || et == GGUF_I16 ? 2
                  : et == GGUF_U32 || et == GGUF_I32 || et == GGUF_F32 ? 4 : 8;
        touch(data, (size_t)n * es);
    } else if (et == GGUF_STRING) {
        for (uint64_t k = 0; k < n; k++) {
            if (gguf_get_arr_str(g, key, k, &s, &len) != 0) abort();
            touch(s, len);
        }
        if (gguf_get_arr_str(g, key, n, &s, &len) != -3) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    err[0] = 0;
    gguf_ctx *g = gguf_open_mem(data, size, err, sizeof err);
    if (!g) {
        if (!err[0]) abort();  /* every rejection must say why */
        return 0;
    }
    sink += gguf_version(g) + (unsigned)gguf_alignment(g) + (unsigned)gguf_data_offset(g);
    for (int64_t i = 0; i < gguf_n_kv(g); i++) walk_kv(g, i);
    const unsigned char *base = gguf_base(g);
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (!t || gguf_find_tensor(g, t->name) != t || !gguf_type_name(t->type)) abort();
        const unsigned char *p = t->data;
        if (p < base || t->size > gguf_file_size(g) || (size_t)(p - base) > gguf_file_size(g) - t->size)
            abort();
        touch(p, t->size);
    }
    gguf_close(g);
    return 0;
}
