/* imatrix.c: collecting an importance matrix (ember_imatrix_collector), as llama.cpp's
 * llama-imatrix does (tools/imatrix/imatrix.cpp), and writing it in that tool's layouts so
 * either quantizer reads either tool's file. (Reading them is ember_imatrix_load, in
 * quantize.c.)
 *
 * The collector hangs on the context's matmul hook (forward.c calls it with each weight and
 * its float input rows before the product). An entry per weight matrix named "blk.*" (and
 * "output.weight" when asked), named as in the GGUF file: the weight is recognised by its
 * data pointer, which points into the mapped tensor. Per entry: a float sum of x[j]^2 per
 * input column j, added row by row in batch order (llama.cpp's accumulation, so only the
 * activations' own rounding differs), and the number of rows seen. Entries appear on first
 * use, as llama.cpp's map does.
 *
 * GGUF layout (llama-imatrix's default): keys general.type = "imatrix", imatrix.datasets
 * (string array), imatrix.chunk_count (u32: the largest count / chunk size),
 * imatrix.chunk_size (u32); then for each entry, by name (strcmp order), <name>.in_sum2
 * (F32, ne = {n_cols}) and <name>.counts (F32, ne = {1}); every tensor, the last one
 * too, padded to 32 bytes.
 * Legacy .dat (--output-format dat), little-endian: i32 n_entries; per entry i32 name
 * length, the name, i32 ncall = ceil(count / chunk size), i32 n_cols, f32 sum/count*ncall
 * per column; then i32 chunk count, i32 dataset length and the dataset. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/internal.h"

typedef struct im_entry {
    const void *data;     /* the weight's tensor data in the mapping (the lookup key) */
    const char *name;     /* the GGUF tensor's name (owned by the model's gguf_ctx) */
    int64_t n_cols;       /* input columns (ne[0]) */
    float *sums;          /* (n_cols) sum of squared inputs; NULL until first seen */
    int64_t count;        /* input rows seen */
} im_entry;

struct ember_imatrix_collector {
    struct ember_context *ctx;
    im_entry *e;          /* eligible matrices, sorted by data pointer */
    int n;
    int paused;
    const char *bad;      /* first entry whose sums became non-finite, or NULL */
};

static int cmp_entry_data(const void *a, const void *b) {
    const char *x = ((const im_entry *)a)->data, *y = ((const im_entry *)b)->data;
    return (x > y) - (x < y);
}

static im_entry *find_entry(ember_imatrix_collector *c, const void *data) {
    int lo = 0, hi = c->n - 1;
    while (lo <= hi) {
        const int mid = lo + (hi - lo) / 2;
        const char *d = c->e[mid].data;
        if (d == data) return &c->e[mid];
        if (d < (const char *)data) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

static void collect(void *user, const em_weight *w, const float *x, int ldx, int T) {
    ember_imatrix_collector *c = user;
    if (c->paused || T <= 0) return;
    im_entry *e = find_entry(c, w->data);
    if (!e || e->n_cols != w->cols) return;
    if (!e->sums && !(e->sums = calloc((size_t)e->n_cols, sizeof *e->sums))) {
        if (!c->bad) c->bad = "";  /* out of memory: save reports it */
        return;
    }
    float *acc = e->sums;
    for (int t = 0; t < T; t++) {
        const float *r = x + (size_t)t * ldx;
        for (int64_t j = 0; j < e->n_cols; j++) acc[j] += r[j] * r[j];
    }
    e->count += T;
    if (!c->bad)
        for (int64_t j = 0; j < e->n_cols; j++)
            if (!isfinite(acc[j])) { c->bad = e->name; break; }
}

ember_status ember_imatrix_collector_new(ember_context *ctx, int process_output, ember_imatrix_collector **out) {
    em_clear_error();
    if (!out) return em_fail(EMBER_E_INVALID, "ember_imatrix_collector_new: out is NULL");
    *out = NULL;
    if (!ctx) return em_fail(EMBER_E_INVALID, "ember_imatrix_collector_new: context is NULL");
    if (ctx->mm_hook) return em_fail(EMBER_E_INVALID, "ember_imatrix_collector_new: the context already has a collector");
    const gguf_ctx *g = ctx->m->gguf;
    if (!g) return em_fail(EMBER_E_UNSUPPORTED, "importance matrices need a GGUF model (its tensor names)");
    if (ctx->stream)  /* streamed weights live in buffers, not at the mapped addresses the entries use */
        return em_fail(EMBER_E_UNSUPPORTED, "importance matrices cannot be collected under a memory budget");
    ember_imatrix_collector *c = calloc(1, sizeof *c);
    const int64_t nt = gguf_n_tensors(g);
    if (!c || !(c->e = calloc((size_t)(nt ? nt : 1), sizeof *c->e))) {
        free(c);
        return em_fail(EMBER_E_NOMEM, "out of memory");
    }
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        if (strncmp(t->name, "blk.", 4) && !(process_output && !strcmp(t->name, "output.weight"))) continue;
        if (t->n_dims < 2) continue;  /* norms and biases never enter a matmul */
        c->e[c->n++] = (im_entry){ .data = t->data, .name = t->name, .n_cols = t->ne[0] };
    }
    qsort(c->e, (size_t)c->n, sizeof *c->e, cmp_entry_data);
    c->ctx = ctx;
    ctx->mm_hook_user = c;
    ctx->mm_hook = collect;
    *out = c;
    return EMBER_OK;
}

void ember_imatrix_collector_free(ember_imatrix_collector *c) {
    if (!c) return;
    if (c->ctx && c->ctx->mm_hook_user == c) {
        c->ctx->mm_hook = NULL;
        c->ctx->mm_hook_user = NULL;
    }
    for (int i = 0; i < c->n; i++) free(c->e[i].sums);
    free(c->e);
    free(c);
}

void ember_imatrix_collector_pause(ember_imatrix_collector *c, int paused) {
    if (c) c->paused = paused != 0;
}

/* The entries seen so far, sorted by name (caller frees). */
static const im_entry **seen_by_name(const ember_imatrix_collector *c, int *n) {
    const im_entry **v = malloc((size_t)(c->n ? c->n : 1) * sizeof *v);
    *n = 0;
    if (!v) return NULL;
    for (int i = 0; i < c->n; i++)
        if (c->e[i].sums) v[(*n)++] = &c->e[i];
    for (int i = 1; i < *n; i++)  /* insertion sort: a few hundred names */
        for (int j = i; j > 0 && strcmp(v[j - 1]->name, v[j]->name) > 0; j--) {
            const im_entry *t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return v;
}

int ember_imatrix_collector_n_entries(const ember_imatrix_collector *c) {
    int n = 0;
    for (int i = 0; c && i < c->n; i++) n += c->e[i].sums != NULL;
    return n;
}

ember_status ember_imatrix_collector_entry(const ember_imatrix_collector *c, int i, const char **name,
                                           int64_t *n_cols, const float **sums, int64_t *count) {
    if (!c) return em_fail(EMBER_E_INVALID, "ember_imatrix_collector_entry: collector is NULL");
    int n;
    const im_entry **v = seen_by_name(c, &n);
    if (!v) return em_fail(EMBER_E_NOMEM, "out of memory");
    if (i < 0 || i >= n) {
        free(v);
        return em_fail(EMBER_E_INVALID, "imatrix entry %d is out of range [0, %d)", i, n);
    }
    if (name) *name = v[i]->name;
    if (n_cols) *n_cols = v[i]->n_cols;
    if (sums) *sums = v[i]->sums;
    if (count) *count = v[i]->count;
    free(v);
    return EMBER_OK;
}

/* ---- writing ------------------------------------------------------------------------ */
typedef struct { unsigned char *p; size_t n, cap; int oom; } bytes;

static void put(bytes *b, const void *p, size_t n) {
    if (b->oom) return;
    if (b->cap - b->n < n) {
        size_t nc = b->cap ? b->cap : 4096;
        while (nc - b->n < n) nc *= 2;
        unsigned char *q = realloc(b->p, nc);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = nc;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_i32(bytes *b, int32_t v) {
    unsigned char le[4] = { (unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16), (unsigned char)(v >> 24) };
    put(b, le, 4);
}

static void put_f32(bytes *b, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    put_i32(b, (int32_t)u);
}

static ember_status build_legacy(const im_entry **v, int n, int chunk_size, int64_t n_chunk, const char *dataset,
                                 bytes *b) {
    put_i32(b, n);
    for (int i = 0; i < n; i++) {
        const im_entry *e = v[i];
        const size_t len = strlen(e->name);
        const int64_t ncall = (e->count + chunk_size - 1) / chunk_size;
        put_i32(b, (int32_t)len);
        put(b, e->name, len);
        put_i32(b, (int32_t)ncall);
        put_i32(b, (int32_t)e->n_cols);
        const float count = (float)e->count;
        for (int64_t j = 0; j < e->n_cols; j++) put_f32(b, e->sums[j] / count * (float)ncall);
    }
    put_i32(b, (int32_t)n_chunk);
    const size_t dl = dataset ? strlen(dataset) : 0;
    put_i32(b, (int32_t)dl);
    if (dl) put(b, dataset, dl);
    return b->oom ? em_fail(EMBER_E_NOMEM, "out of memory") : EMBER_OK;
}

static ember_status build_gguf(const im_entry **v, int n, int chunk_size, int64_t n_chunk, const char *dataset,
                               bytes *b) {
    gguf_writer *w = gguf_writer_new();
    int bad = !w;
    bad = bad || gguf_writer_set_str(w, "general.type", "imatrix");
    bad = bad || gguf_writer_set_arr_str(w, "imatrix.datasets", &dataset, dataset ? 1 : 0);
    bad = bad || gguf_writer_set_u32(w, "imatrix.chunk_count", (uint32_t)n_chunk);
    bad = bad || gguf_writer_set_u32(w, "imatrix.chunk_size", (uint32_t)chunk_size);
    char name[256];
    for (int i = 0; i < n && !bad; i++) {
        const int64_t ne_sum[1] = { v[i]->n_cols }, ne_cnt[1] = { 1 };
        const float count = (float)v[i]->count;
        snprintf(name, sizeof name, "%s.in_sum2", v[i]->name);
        bad = gguf_writer_add_tensor(w, name, EM_F32, 1, ne_sum, v[i]->sums, (size_t)v[i]->n_cols * sizeof(float));
        snprintf(name, sizeof name, "%s.counts", v[i]->name);
        bad = bad || gguf_writer_add_tensor(w, name, EM_F32, 1, ne_cnt, &count, sizeof count);
    }
    void *out = NULL;
    size_t len = 0;
    bad = bad || gguf_writer_finish(w, &out, &len);
    const size_t align = w ? gguf_writer_alignment(w) : 32;
    gguf_writer_free(w);
    if (bad) { free(out); return em_fail(EMBER_E_NOMEM, "cannot build the imatrix GGUF (out of memory)"); }
    b->p = out;
    b->n = b->cap = len;
    /* ggml's gguf_write_to_file pads the last tensor too */
    static const unsigned char zeros[64];
    while (!b->oom && b->n % align) {
        const size_t k = align - b->n % align;
        put(b, zeros, k < sizeof zeros ? k : sizeof zeros);
    }
    return b->oom ? em_fail(EMBER_E_NOMEM, "out of memory") : EMBER_OK;
}

/* Writes b to path through path.tmp: write, fsync, rename, so path is never partial. */
static ember_status write_atomic(const char *path, const bytes *b) {
    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 5);
    if (!tmp) return em_fail(EMBER_E_NOMEM, "out of memory");
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    ember_status st = EMBER_OK;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = em_fail(EMBER_E_IO, "cannot create %s: %s", tmp, strerror(errno));
        free(tmp);
        return st;
    }
    for (size_t off = 0; off < b->n;) {
        ssize_t r = write(fd, b->p + off, b->n - off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) { st = em_fail(EMBER_E_IO, "cannot write %s: %s", tmp, strerror(errno)); break; }
        off += (size_t)r;
    }
    if (st == EMBER_OK && fsync(fd)) st = em_fail(EMBER_E_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (close(fd) && st == EMBER_OK) st = em_fail(EMBER_E_IO, "cannot write %s: %s", tmp, strerror(errno));
    if (st == EMBER_OK && rename(tmp, path)) st = em_fail(EMBER_E_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    if (st != EMBER_OK) unlink(tmp);
    free(tmp);
    return st;
}

ember_status ember_imatrix_collector_save(const ember_imatrix_collector *c, const char *path,
                                          const ember_imatrix_save_params *p) {
    em_clear_error();
    if (!c || !path || !p) return em_fail(EMBER_E_INVALID, "ember_imatrix_collector_save: NULL argument");
    if (p->chunk_size <= 0) return em_fail(EMBER_E_INVALID, "imatrix chunk size must be positive, got %d", p->chunk_size);
    if (c->bad && !*c->bad) return em_fail(EMBER_E_NOMEM, "out of memory while collecting the imatrix");
    if (c->bad) return em_fail(EMBER_E_FORMAT, "non-finite activations in %s: no imatrix written", c->bad);
    int n;
    const im_entry **v = seen_by_name(c, &n);
    if (!v) return em_fail(EMBER_E_NOMEM, "out of memory");
    if (n == 0) { free(v); return em_fail(EMBER_E_INVALID, "the imatrix is empty: nothing was decoded"); }
    int64_t max_count = 0;
    for (int i = 0; i < n; i++)
        if (v[i]->count > max_count) max_count = v[i]->count;
    const int64_t n_chunk = max_count / p->chunk_size;
    if (n_chunk > INT32_MAX) { free(v); return em_fail(EMBER_E_INVALID, "imatrix chunk count overflows"); }
    bytes b = { 0 };
    ember_status st = p->legacy ? build_legacy(v, n, p->chunk_size, n_chunk, p->dataset, &b)
                                : build_gguf(v, n, p->chunk_size, n_chunk, p->dataset, &b);
    free(v);
    if (st == EMBER_OK) st = write_atomic(path, &b);
    free(b.p);
    return st;
}
