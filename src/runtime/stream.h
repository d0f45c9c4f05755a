/* stream.h: layer weights under a memory budget (ember_model_params.mem_budget).
 *
 * The forward pass asks for a layer's weights with em_weights_acquire and hands them back
 * with em_weights_release. Without a budget (or when the whole file fits in it) the layer
 * is the view into the file's mapping that model.c bound, and both calls cost a pointer
 * test. Under a budget the plan (em_mem_plan_make) keeps the embeddings, output layer,
 * norms, KV cache and scratch resident, pins as many layers as the rest of the budget
 * allows, and streams the other layers in one of two ways:
 *  - mmap (the default; STREAMING.md has the measurements that chose it): acquiring a
 *    layer asks the kernel to read it and the next `prefetch` streamed layers into the
 *    page cache (madvise WILLNEED, asynchronous), and the forward pass reads them through
 *    the mapping; releasing it drops its pages from the process (MADV_DONTNEED) and from
 *    the page cache (posix_fadvise DONTNEED). Pinned layers simply stay mapped.
 *  - pread (EMBER_STREAM=pread): pinned layers are read into buffers of their own, the
 *    others into a ring of prefetch + 1 buffers by a prefetch thread running up to
 *    `prefetch` layers ahead (prefetch 0: read on the decoding thread when needed), each
 *    range dropped from the page cache after it is read.
 * The weights are the file's bytes either way, so logits are bit-identical with and
 * without a budget. The stream belongs to one context; the thread is joined on
 * em_stream_free and restarted after a failed pass. */
#ifndef EMBER_STREAM_H
#define EMBER_STREAM_H
#include <stdint.h>
#include "ember.h"

struct ember_model;
struct ember_context;
struct em_layer;
typedef struct em_stream em_stream;

typedef struct em_mem_plan {
    uint64_t budget;          /* what was asked for */
    uint64_t min_budget;      /* fixed + context + the largest layer: the least that runs */
    uint64_t fixed;           /* resident outside the layers: file header and metadata,
                               * token_embd, output, norms, rope factors */
    uint64_t context;         /* KV cache at n_ctx and the activation scratch */
    uint64_t pinned;          /* layers held resident under the budget */
    uint64_t slot_bytes;      /* one stream buffer (the largest streamed layer) */
    uint64_t layer_bytes;     /* all layers' weights as read (4 KiB-aligned extents) */
    uint64_t streamed;        /* bytes read from the file per forward chunk */
    int n_layer, n_pinned, n_streamed;
    int n_slots;              /* stream buffers: prefetch + 1, fewer when the budget is tight */
    int prefetch;             /* layers read ahead (n_slots - 1); 0: synchronous */
    int all_resident;         /* the whole file fits: plain mapping, nothing streams */
} em_mem_plan;

/* The plan for model m under `budget` bytes with a context needing ctx_bytes, asking for
 * `prefetch` layers of read-ahead. EMBER_E_INVALID naming the minimum in bytes when the
 * budget is below it (p is filled in either way). */
ember_status em_mem_plan_make(const struct ember_model *m, uint64_t budget, int prefetch,
                              uint64_t ctx_bytes, em_mem_plan *p);
/* Sets ctx->stream for a model loaded with a budget (NULL when everything is resident):
 * plans, allocates, reads the pinned layers and starts the prefetch thread. */
ember_status em_stream_new(struct ember_context *ctx, uint64_t ctx_bytes);
void em_stream_free(em_stream *s);  /* stops and joins the thread; NULL is a no-op */
const em_mem_plan *em_stream_plan(const em_stream *s);

/* Layer l's weights for the pass now running (layers are used in order 0..n_layer-1 per
 * chunk); NULL with the error recorded when it cannot be read. */
const struct em_layer *em_weights_acquire(struct ember_context *ctx, int l);
void em_weights_release(struct ember_context *ctx, int l);
/* After a failed pass: drops what was read ahead, so the next pass starts clean. */
void em_weights_reset(struct ember_context *ctx);

/* Sequential read bandwidth of the model's file from disk (its pages evicted from the
 * page cache before and after): up to `bytes` (0: 256 MiB) read in 8 MiB preads, in GB/s. */
ember_status em_file_read_bandwidth(const struct ember_model *m, uint64_t bytes, double *gbps);
#endif
