/* cmd_info.c: `ember info -m MODEL`: architecture, hyper-parameters, tensor types,
 * parameter count (with the file's size label), file and memory sizes, and the kernel ISA this CPU would use.
 * With --mem-budget SIZE [--prefetch N] [-c N]: the streaming plan (STREAMING.md): resident
 * bytes, bytes read from the file per token, and a predicted decode speed from the file's
 * measured disk read bandwidth (its pages evicted first) and the memory read bandwidth:
 * per token, reading the streamed layers takes streamed / disk, computing takes weights /
 * memory; with prefetch the two overlap (the slower decides), without they add up. */
#include <stdlib.h>
#include <string.h>
#include "common.h"

static void meta(const ember_model *m, const char *label, const char *key) {
    char buf[256];
    if (ember_model_meta_str(m, key, buf, sizeof buf) >= 0) printf("%-22s %s\n", label, buf);
}

static double mib(uint64_t b) { return b / 1048576.0; }

static int print_plan(ember_model *m, const opts *o, uint64_t budget) {
    ember_context_params cp = ember_context_default_params();
    cp.n_ctx = o->n_ctx;
    cp.n_batch = o->n_batch;
    cp.type_k = o->cache_k;
    cp.type_v = o->cache_v;
    ember_mem_plan p;
    ember_status st = ember_mem_plan_get(m, &cp, budget, o->prefetch, &p);
    printf("%-22s %llu bytes (%.1f MiB); minimum %llu bytes (%.1f MiB)\n", "memory budget",
           (unsigned long long)budget, mib(budget), (unsigned long long)p.min_budget, mib(p.min_budget));
    fflush(stdout);  /* the plan's numbers before the error that names the minimum */
    if (st) { fprintf(stderr, "error: %s\n", ember_last_error()); return 1; }
    if (p.all_resident) {
        printf("%-22s the file and the context fit: mapped as without a budget, nothing streams\n", "plan");
    } else {
        printf("%-22s %d of %d layers resident, %d streamed through %d buffer%s (prefetch %d)\n", "plan",
               p.n_pinned, p.n_layer, p.n_streamed, p.n_buffers, p.n_buffers > 1 ? "s" : "", p.prefetch);
        printf("%-22s %.1f MiB: %.1f MiB embeddings/output/metadata, %.1f MiB layers, %.1f MiB buffers, "
               "%.1f MiB KV cache and scratch\n", "resident", mib(p.resident), mib(p.fixed), mib(p.pinned),
               mib(p.buffers), mib(p.context));
        printf("%-22s %.1f MiB per token (per prompt chunk)\n", "streamed", mib(p.streamed));
    }
    double disk = 0, mem = 0;
    if (ember_model_disk_bandwidth(m, 0, &disk)) { fprintf(stderr, "error: %s\n", ember_last_error()); return 1; }
    if (ember_read_bandwidth(o->n_threads, 256u << 20, 3, &mem)) mem = 0;
    printf("%-22s disk %.2f GB/s (256 MiB of the file, evicted first), memory %.1f GB/s\n", "measured", disk, mem);
    const double t_disk = p.all_resident || disk <= 0 ? 0 : p.streamed / (disk * 1e9);
    const double t_mem = mem > 0 ? ember_model_size(m) / (mem * 1e9) : 0;
    const double t = p.all_resident ? t_mem : p.prefetch ? (t_disk > t_mem ? t_disk : t_mem) : t_disk + t_mem;
    if (t > 0)
        printf("%-22s %.2f tokens/s decode (disk %.1f ms + memory %.1f ms per token, %s)\n", "predicted", 1.0 / t,
               t_disk * 1e3, t_mem * 1e3, p.all_resident ? "no streaming" : p.prefetch ? "overlapped" : "one after the other");
    return 0;
}

int cmd_info(int argc, char **argv) {
    opts o;
    int pr = opts_parse(&o, argc, argv);
    if (pr) return pr == 2 ? 0 : 1;
    const uint64_t budget = o.mem_budget;
    o.mem_budget = 0;  /* load as usual: the plan is printed, whatever the budget */
    ember_model *m = load_model(&o, 0);
    free(o.rest);
    if (!m) return 1;
    char desc[128];
    ember_model_desc(m, desc, sizeof desc);
    printf("%-22s %s\n", "model", opts_model_path(&o));
    printf("%-22s %s\n", "description", desc);
    meta(m, "name", "general.name");
    meta(m, "architecture", "general.architecture");
    if (ember_model_n_layer(m) > 0) {
        printf("%-22s %d\n", "n_vocab", ember_model_n_vocab(m));
        printf("%-22s %d\n", "n_embd", ember_model_n_embd(m));
        printf("%-22s %d\n", "n_layer", ember_model_n_layer(m));
        printf("%-22s %d\n", "n_ctx_train", ember_model_n_ctx_train(m));
        int n = ember_model_info(m, NULL, 0);
        char *info = malloc((size_t)n + 1);
        if (info) { ember_model_info(m, info, (size_t)n + 1); fputs(info, stdout); free(info); }
    }
    meta(m, "tokenizer", "tokenizer.ggml.model");
    meta(m, "pre-tokenizer", "tokenizer.ggml.pre");
    /* the file's own size label (general.size_label, e.g. "1.5B") beside the count */
    char label[64];
    printf("%-22s %lld (%.2f M", "parameters", (long long)ember_model_n_params(m), ember_model_n_params(m) / 1e6);
    if (ember_model_meta_str(m, "general.size_label", label, sizeof label) > 0) {
        for (char *c = label; *c; c++)
            if ((unsigned char)*c < 0x20 || *c == 0x7f) *c = '?';  /* a hostile label stays one line */
        printf(", size label %s", label);
    }
    printf(")\n");
    printf("%-22s %.2f MiB\n", "weights", ember_model_size(m) / 1048576.0);
    const char *t = ember_model_chat_template(m);
    printf("%-22s %s\n", "chat template", t ? "yes" : "none");
    int rc = budget ? print_plan(m, &o, budget) : 0;
    ember_model_free(m);
    return rc;
}
