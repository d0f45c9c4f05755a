/* stream.c: layer weights acquired and released per layer; under a memory budget,
 * streamed from the file through the mapping with madvise, or read into a bounded ring of
 * buffers by a prefetch thread (EMBER_STREAM=pread); see stream.h.
 *
 * A layer's bytes are the union of its tensors' extents in the file, each widened to
 * 4 KiB boundaries and merged where they touch (llama.cpp writes a layer's tensors one
 * after another, so that is usually one read). The buffer holds the extents back to back,
 * and the layer's view is model.c's binding with every pointer moved from the mapping
 * into the buffer, row ranges of fused tensors (phi3) included.
 *
 * The streamed layers are used in a fixed cycle (ascending, once per forward chunk). With
 * madvise, use k asks for uses up to k + prefetch and release drops use k. With pread,
 * use number k of a streamed layer goes to slot k % n_slots. The prefetch thread reads
 * use k as soon as use k - n_slots has been released; the forward pass waits for use k in
 * em_weights_acquire and frees the slot in em_weights_release. Between decode calls the
 * thread has already read the first layers of the next pass. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "runtime/internal.h"
#include "runtime/stream.h"

#define ST_PAGE 4096u

typedef struct st_extent { uint64_t off, len, buf_off; } st_extent;

typedef struct st_layer {
    st_extent *ext;
    int n_ext;
    uint64_t bytes;           /* sum of the extents: the buffer it needs */
} st_layer;

typedef struct st_slot {
    char *buf;
    em_layer view;
    int64_t use;              /* the use it holds (-1: none) */
} st_slot;

struct em_stream {
    const struct ember_model *m;
    em_mem_plan plan;
    int fd;
    st_layer *lay;            /* n_layer */
    char **pin_buf;           /* n_layer: a pinned layer's buffer, else NULL */
    em_layer *pin_view;       /* n_layer */
    int *order, n_order;      /* the streamed layers, ascending */
    int *order_pos;           /* n_layer: index in order, or -1 for a pinned layer */
    st_slot *slot;
    int n_slots;
    int mapped;               /* 1: madvise on the mapping (default); 0 (EMBER_STREAM=pread): buffers */
    /* shared with the prefetch thread, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
    int has_thread, stop;
    int64_t used;             /* uses released (the next use the forward pass asks for) */
    int64_t loaded;           /* the next use the thread reads */
    int64_t base;             /* use number of order[0] in the cycle: use k is order[(k - base) % n] */
    ember_status err;
    char msg[256];
};

/* The weight fields of a layer, for extents and rebasing. */
static const size_t layer_fields[] = {
    offsetof(em_layer, attn_norm), offsetof(em_layer, wq), offsetof(em_layer, wk), offsetof(em_layer, wv),
    offsetof(em_layer, wo), offsetof(em_layer, bq), offsetof(em_layer, bk), offsetof(em_layer, bv),
    offsetof(em_layer, q_norm), offsetof(em_layer, k_norm), offsetof(em_layer, attn_post_norm),
    offsetof(em_layer, ffn_norm), offsetof(em_layer, ffn_post_norm), offsetof(em_layer, w_gate),
    offsetof(em_layer, w_up), offsetof(em_layer, w_down), offsetof(em_layer, wqkv), offsetof(em_layer, w_gate_up),
};
#define N_FIELDS (sizeof layer_fields / sizeof *layer_fields)

static em_weight *field(em_layer *L, size_t i) { return (em_weight *)((char *)L + layer_fields[i]); }
static const em_weight *cfield(const em_layer *L, size_t i) {
    return (const em_weight *)((const char *)L + layer_fields[i]);
}

static uint64_t weight_bytes(const em_weight *w) { return w->data ? (uint64_t)w->rows * w->row_bytes : 0; }

static int cmp_ext(const void *a, const void *b) {
    const st_extent *x = a, *y = b;
    return x->off < y->off ? -1 : x->off > y->off;
}

/* Layer l's extents in the file, page-aligned and merged. 0, or -1 out of memory. */
static int layer_extents(const struct ember_model *m, int l, st_layer *out) {
    const char *base = gguf_base(m->gguf);
    const uint64_t fsize = m->file_bytes;
    st_extent e[N_FIELDS];
    int n = 0;
    for (size_t i = 0; i < N_FIELDS; i++) {
        const em_weight *w = cfield(&m->layers[l], i);
        if (!w->data) continue;
        const uint64_t off = (uint64_t)((const char *)w->data - base);
        uint64_t end = (off + weight_bytes(w) + ST_PAGE - 1) / ST_PAGE * ST_PAGE;
        if (end > fsize) end = fsize;
        e[n].off = off / ST_PAGE * ST_PAGE;
        e[n].len = end - e[n].off;
        n++;
    }
    qsort(e, (size_t)n, sizeof *e, cmp_ext);
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (k && e[i].off <= e[k - 1].off + e[k - 1].len) {
            const uint64_t end = e[i].off + e[i].len;
            if (end > e[k - 1].off + e[k - 1].len) e[k - 1].len = end - e[k - 1].off;
        } else e[k++] = e[i];
    }
    out->ext = malloc((size_t)(k ? k : 1) * sizeof *out->ext);
    if (!out->ext) return -1;
    out->n_ext = k;
    out->bytes = 0;
    for (int i = 0; i < k; i++) {
        out->ext[i] = e[i];
        out->ext[i].buf_off = out->bytes;
        out->bytes += e[i].len;
    }
    return 0;
}

/* The bytes that stay resident outside the layers: what precedes the tensor data (header,
 * metadata, the tokenizer's strings) and the global tensors the forward pass reads. */
static uint64_t fixed_bytes(const struct ember_model *m) {
    uint64_t b = gguf_data_offset(m->gguf);
    b += weight_bytes(&m->tok_embd) + weight_bytes(&m->output_norm);
    if (!m->tied_output) b += weight_bytes(&m->output);
    b += weight_bytes(&m->rope_freqs) + weight_bytes(&m->rope_long) + weight_bytes(&m->rope_short);
    return b;
}

/* Pins P of L layers spread evenly (so reading never stalls behind a run of pinned ones). */
static int is_pinned(int l, int P, int L) { return (int64_t)(l + 1) * P / L > (int64_t)l * P / L; }

/* Plans with the layer sizes in bytes[]; pin[] (may be NULL) gets the pinned flags. */
static ember_status plan_make(const struct ember_model *m, const uint64_t *bytes, uint64_t budget, int prefetch,
                              uint64_t ctx_bytes, em_mem_plan *p, unsigned char *pin) {
    const int L = m->hp.n_layer;
    memset(p, 0, sizeof *p);
    p->budget = budget;
    p->n_layer = L;
    p->fixed = fixed_bytes(m);
    p->context = ctx_bytes;
    uint64_t maxl = 0;
    for (int l = 0; l < L; l++) {
        p->layer_bytes += bytes[l];
        if (bytes[l] > maxl) maxl = bytes[l];
    }
    p->min_budget = p->fixed + ctx_bytes + maxl;
    if (p->min_budget > (uint64_t)m->file_bytes + ctx_bytes) p->min_budget = (uint64_t)m->file_bytes + ctx_bytes;
    if (pin) memset(pin, 0, (size_t)L);
    if (budget >= (uint64_t)m->file_bytes + ctx_bytes) {  /* the whole mapping fits */
        p->all_resident = 1;
        p->n_pinned = L;
        p->pinned = p->layer_bytes;
        if (pin) memset(pin, 1, (size_t)L);
        return EMBER_OK;
    }
    if (budget < p->min_budget)
        return em_fail(EMBER_E_INVALID, "memory budget of %llu bytes is below the minimum of %llu bytes "
                       "(%.1f MiB: %.1f MiB embeddings, output and metadata, %.1f MiB KV cache and scratch, "
                       "%.1f MiB for one layer)", (unsigned long long)budget, (unsigned long long)p->min_budget,
                       p->min_budget / 1048576.0, p->fixed / 1048576.0, ctx_bytes / 1048576.0, maxl / 1048576.0);
    const uint64_t avail = budget - p->fixed - ctx_bytes;
    if (prefetch < 0) prefetch = 0;
    for (int S = prefetch + 1; S >= 1; S--)
        for (int P = L; P >= 0; P--) {
            uint64_t pinned = 0, slot = 0;
            for (int l = 0; l < L; l++) {
                if (is_pinned(l, P, L)) pinned += bytes[l];
                else if (bytes[l] > slot) slot = bytes[l];
            }
            const int s = S < L - P ? S : L - P;
            if (pinned + (uint64_t)s * slot > avail) continue;
            p->n_pinned = P;
            p->n_streamed = L - P;
            p->pinned = pinned;
            p->slot_bytes = slot;
            p->n_slots = s;
            p->prefetch = s > 0 ? s - 1 : 0;
            p->streamed = p->layer_bytes - pinned;
            for (int l = 0; pin && l < L; l++) pin[l] = (unsigned char)is_pinned(l, P, L);
            return EMBER_OK;
        }
    return em_fail(EMBER_E_INVALID, "memory budget of %llu bytes: no plan fits", (unsigned long long)budget);
}

static ember_status layer_sizes(const struct ember_model *m, uint64_t **out) {
    const int L = m->hp.n_layer;
    uint64_t *b = malloc((size_t)L * sizeof *b);
    if (!b) return em_fail(EMBER_E_NOMEM, "out of memory");
    for (int l = 0; l < L; l++) {
        st_layer sl;
        if (layer_extents(m, l, &sl)) { free(b); return em_fail(EMBER_E_NOMEM, "out of memory"); }
        b[l] = sl.bytes;
        free(sl.ext);
    }
    *out = b;
    return EMBER_OK;
}

ember_status em_mem_plan_make(const struct ember_model *m, uint64_t budget, int prefetch, uint64_t ctx_bytes,
                              em_mem_plan *p) {
    memset(p, 0, sizeof *p);
    if (!m->gguf || m->vocab_only)
        return em_fail(EMBER_E_UNSUPPORTED, "a memory budget needs a GGUF model with weights");
    uint64_t *bytes = NULL;
    ember_status st = layer_sizes(m, &bytes);
    if (st) return st;
    st = plan_make(m, bytes, budget, prefetch, ctx_bytes, p, NULL);
    free(bytes);
    return st;
}

/* ---- reading ----------------------------------------------------------------------- */
/* Reads layer l into buf (its extents back to back) and drops those pages from the page
 * cache. 0, or -1 with msg set. */
static int read_layer(const em_stream *s, int l, char *buf, char *msg, size_t msgsz) {
    const st_layer *sl = &s->lay[l];
    for (int i = 0; i < sl->n_ext; i++) {
        const st_extent *e = &sl->ext[i];
        uint64_t done = 0;
        while (done < e->len) {
            ssize_t r = pread(s->fd, buf + e->buf_off + done, (size_t)(e->len - done), (off_t)(e->off + done));
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                snprintf(msg, msgsz, "layer %d: reading %llu bytes at offset %llu of the model file: %s", l,
                         (unsigned long long)(e->len - done), (unsigned long long)(e->off + done),
                         r < 0 ? strerror(errno) : "the file is shorter than when it was loaded");
                return -1;
            }
            done += (uint64_t)r;
        }
        posix_fadvise(s->fd, (off_t)e->off, (off_t)e->len, POSIX_FADV_DONTNEED);
    }
    return 0;
}

/* view = model.c's binding of layer l with its pointers moved into buf. */
static void rebase(const em_stream *s, int l, const char *buf, em_layer *view) {
    const char *base = gguf_base(s->m->gguf);
    const st_layer *sl = &s->lay[l];
    *view = s->m->layers[l];
    for (size_t i = 0; i < N_FIELDS; i++) {
        em_weight *w = field(view, i);
        if (!w->data) continue;
        const uint64_t off = (uint64_t)((const char *)w->data - base);
        for (int j = 0; j < sl->n_ext; j++)
            if (off >= sl->ext[j].off && off < sl->ext[j].off + sl->ext[j].len) {
                w->data = buf + sl->ext[j].buf_off + (off - sl->ext[j].off);
                break;
            }
    }
}

static int layer_of_use(const em_stream *s, int64_t k) {
    return s->order[(k - s->base) % s->n_order];
}

static void *prefetch_main(void *arg) {
    em_stream *s = arg;
    char msg[256];
    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (!s->stop && !s->err && s->loaded >= s->used + s->n_slots) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop || s->err) break;
        const int64_t k = s->loaded;
        st_slot *sl = &s->slot[k % s->n_slots];
        const int l = layer_of_use(s, k);
        pthread_mutex_unlock(&s->mu);
        const int r = read_layer(s, l, sl->buf, msg, sizeof msg);
        if (!r) rebase(s, l, sl->buf, &sl->view);
        pthread_mutex_lock(&s->mu);
        if (r) {
            s->err = EMBER_E_IO;
            memcpy(s->msg, msg, sizeof msg);
        } else {
            sl->use = k;
            s->loaded = k + 1;
        }
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void stop_thread(em_stream *s) {
    if (!s->has_thread) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    s->has_thread = 0;
    s->stop = 0;
}

/* Starts the cycle at streamed layer order[pos] (no thread running). */
static ember_status start(em_stream *s, int pos) {
    s->used = s->loaded = pos;
    s->base = 0;
    s->err = EMBER_OK;
    for (int i = 0; s->slot && i < s->n_slots; i++) s->slot[i].use = -1;
    if (s->plan.prefetch == 0 || s->n_order == 0 || s->mapped) return EMBER_OK;
    if (pthread_create(&s->th, NULL, prefetch_main, s))
        return em_fail(EMBER_E_NOMEM, "cannot start the prefetch thread");
    s->has_thread = 1;
    return EMBER_OK;
}

void em_stream_free(em_stream *s) {
    if (!s) return;
    stop_thread(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    if (s->fd >= 0) close(s->fd);
    for (int l = 0; s->lay && l < s->plan.n_layer; l++) free(s->lay[l].ext);
    for (int l = 0; s->pin_buf && l < s->plan.n_layer; l++) free(s->pin_buf[l]);
    for (int i = 0; s->slot && i < s->n_slots; i++) free(s->slot[i].buf);
    free(s->lay); free(s->pin_buf); free(s->pin_view); free(s->order); free(s->order_pos); free(s->slot);
    free(s);
}

const em_mem_plan *em_stream_plan(const em_stream *s) { return s ? &s->plan : NULL; }

static void *page_alloc(uint64_t bytes) {
    void *p = NULL;
    if (bytes > SIZE_MAX - ST_PAGE || posix_memalign(&p, ST_PAGE, bytes ? (size_t)bytes : ST_PAGE)) return NULL;
    return p;
}

ember_status em_stream_new(struct ember_context *ctx, uint64_t ctx_bytes) {
    const struct ember_model *m = ctx->m;
    ctx->stream = NULL;
    if (!m->mem_budget) return EMBER_OK;
    if (!m->gguf || !m->path) return em_fail(EMBER_E_UNSUPPORTED, "a memory budget needs a GGUF model");
    const int L = m->hp.n_layer;
    em_stream *s = calloc(1, sizeof *s);
    if (!s) return em_fail(EMBER_E_NOMEM, "out of memory");
    s->m = m;
    s->fd = -1;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->lay = calloc((size_t)L, sizeof *s->lay);
    s->pin_buf = calloc((size_t)L, sizeof *s->pin_buf);
    s->pin_view = calloc((size_t)L, sizeof *s->pin_view);
    s->order = calloc((size_t)L, sizeof *s->order);
    s->order_pos = calloc((size_t)L, sizeof *s->order_pos);
    uint64_t *bytes = malloc((size_t)L * sizeof *bytes);
    unsigned char *pin = malloc((size_t)L);
    ember_status st = EMBER_OK;
    if (!s->lay || !s->pin_buf || !s->pin_view || !s->order || !s->order_pos || !bytes || !pin)
        st = em_fail(EMBER_E_NOMEM, "out of memory");
    for (int l = 0; !st && l < L; l++) {
        if (layer_extents(m, l, &s->lay[l])) st = em_fail(EMBER_E_NOMEM, "out of memory");
        else bytes[l] = s->lay[l].bytes;
    }
    if (!st) st = plan_make(m, bytes, m->mem_budget, m->prefetch, ctx_bytes, &s->plan, pin);
    if (!st && s->plan.all_resident) {  /* nothing to stream: the mapping as without a budget */
        free(bytes); free(pin);
        em_stream_free(s);
        return EMBER_OK;
    }
    if (!st && (s->fd = open(m->path, O_RDONLY | O_CLOEXEC)) < 0)
        st = em_fail(EMBER_E_IO, "%s: cannot open for streaming: %s", m->path, strerror(errno));
    const char *mode = getenv("EMBER_STREAM");
    s->mapped = !(mode && !strcmp(mode, "pread"));  /* STREAMING.md: mmap measured faster here */
    if (!st && !s->mapped) {
        s->n_slots = s->plan.n_slots;
        s->slot = calloc((size_t)(s->n_slots ? s->n_slots : 1), sizeof *s->slot);
        if (!s->slot) st = em_fail(EMBER_E_NOMEM, "out of memory");
        for (int i = 0; !st && i < s->n_slots; i++)
            if (!(s->slot[i].buf = page_alloc(s->plan.slot_bytes)))
                st = em_fail(EMBER_E_NOMEM, "out of memory for a %.1f MiB stream buffer", s->plan.slot_bytes / 1048576.0);
    }
    char msg[256];
    for (int l = 0; !st && l < L; l++) {
        s->order_pos[l] = -1;
        if (!pin[l]) { s->order_pos[l] = s->n_order; s->order[s->n_order++] = l; continue; }
        if (s->mapped) { s->pin_view[l] = m->layers[l]; continue; }  /* pinned: stays mapped */
        if (!(s->pin_buf[l] = page_alloc(bytes[l]))) { st = em_fail(EMBER_E_NOMEM, "out of memory for layer %d", l); break; }
        if (read_layer(s, l, s->pin_buf[l], msg, sizeof msg)) { st = em_fail(EMBER_E_IO, "%s", msg); break; }
        rebase(s, l, s->pin_buf[l], &s->pin_view[l]);
    }
    free(bytes);
    free(pin);
    if (!st) st = start(s, 0);
    if (st) { em_stream_free(s); return st; }
    ctx->stream = s;
    return EMBER_OK;
}

/* ---- the forward pass's side ------------------------------------------------------- */
static void restart(em_stream *s, int pos) {
    stop_thread(s);
    start(s, pos);  /* a thread that cannot start now shows as an error on the next acquire */
}

const em_layer *em_weights_acquire(struct ember_context *ctx, int l) {
    em_stream *s = ctx->stream;
    if (!s) return &ctx->m->layers[l];
    const int pos = s->order_pos[l];
    if (pos < 0) return &s->pin_view[l];
    if (layer_of_use(s, s->used) != l) restart(s, pos);  /* out of cycle: start again here */
    if (s->mapped) {  /* ask the kernel to read this layer and the next `prefetch` ones */
        for (; s->loaded <= s->used + s->plan.prefetch; s->loaded++) {
            const st_layer *sl = &s->lay[layer_of_use(s, s->loaded)];
            for (int i = 0; i < sl->n_ext; i++)
                madvise((char *)gguf_base(s->m->gguf) + sl->ext[i].off, (size_t)sl->ext[i].len, MADV_WILLNEED);
        }
        return &ctx->m->layers[l];
    }
    st_slot *sl = &s->slot[s->used % s->n_slots];
    if (!s->has_thread) {  /* prefetch 0: read it now */
        if (sl->use != s->used) {
            char msg[256];
            if (read_layer(s, l, sl->buf, msg, sizeof msg)) {
                sl->use = -1;
                em_fail(EMBER_E_IO, "%s", msg);
                return NULL;
            }
            rebase(s, l, sl->buf, &sl->view);
            sl->use = s->used;
        }
        return &sl->view;
    }
    pthread_mutex_lock(&s->mu);
    while (sl->use != s->used && !s->err) pthread_cond_wait(&s->cv, &s->mu);
    const ember_status err = sl->use == s->used ? EMBER_OK : s->err;
    pthread_mutex_unlock(&s->mu);
    if (err) { em_fail(err, "%s", s->msg); return NULL; }
    return &sl->view;
}

void em_weights_release(struct ember_context *ctx, int l) {
    em_stream *s = ctx->stream;
    if (!s || s->order_pos[l] < 0) return;
    if (s->mapped) {  /* out of this process and out of the page cache */
        const st_layer *sl = &s->lay[l];
        for (int i = 0; i < sl->n_ext; i++) {
            madvise((char *)gguf_base(s->m->gguf) + sl->ext[i].off, (size_t)sl->ext[i].len, MADV_DONTNEED);
            posix_fadvise(s->fd, (off_t)sl->ext[i].off, (off_t)sl->ext[i].len, POSIX_FADV_DONTNEED);
        }
        s->used++;
        return;
    }
    pthread_mutex_lock(&s->mu);
    s->used++;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

void em_weights_reset(struct ember_context *ctx) {
    if (ctx->stream) restart(ctx->stream, 0);
}

/* ---- disk bandwidth ------------------------------------------------------------------ */
ember_status em_file_read_bandwidth(const struct ember_model *m, uint64_t bytes, double *gbps) {
    *gbps = 0;
    if (!m->path) return em_fail(EMBER_E_INVALID, "the model has no file to measure");
    const int fd = open(m->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return em_fail(EMBER_E_IO, "%s: %s", m->path, strerror(errno));
    if (!bytes) bytes = 256u << 20;
    if (bytes > m->file_bytes) bytes = m->file_bytes;
    const size_t chunk = 8u << 20;
    char *buf = page_alloc(chunk);
    if (!buf) { close(fd); return em_fail(EMBER_E_NOMEM, "out of memory"); }
    posix_fadvise(fd, 0, (off_t)bytes, POSIX_FADV_DONTNEED);
    const double t0 = em_time_ms();
    uint64_t done = 0;
    while (done < bytes) {
        const size_t want = bytes - done < chunk ? (size_t)(bytes - done) : chunk;
        const ssize_t r = pread(fd, buf, want, (off_t)done);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        done += (uint64_t)r;
    }
    const double ms = em_time_ms() - t0;
    posix_fadvise(fd, 0, (off_t)bytes, POSIX_FADV_DONTNEED);
    free(buf);
    close(fd);
    if (done < bytes) return em_fail(EMBER_E_IO, "%s: read failed", m->path);
    *gbps = ms > 0 ? (double)done / (ms * 1e6) : 0;
    return EMBER_OK;
}
