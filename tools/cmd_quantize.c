/* cmd_quantize.c: `ember quantize`, llama-quantize's command line over
 * ember_model_quantize: same positional arguments (IN OUT TYPE [N_THREADS]), same type
 * names, the same flags for the options ember has, and per-tensor progress on stderr. */
#include <stdlib.h>
#include <string.h>
#include "common.h"

static void quantize_usage(FILE *f) {
    fprintf(f,
        "usage: ember quantize [--imatrix FILE] [--pure] [--leave-output-tensor] [--allow-requantize]\n"
        "                      IN.gguf OUT.gguf TYPE [N_THREADS]\n\n"
        "Writes IN quantized to TYPE, byte for byte as llama.cpp's llama-quantize does.\n"
        "TYPE: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q2_K_S Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M\n"
        "      Q6_K IQ4_NL IQ4_XS TQ1_0 TQ2_0 F16 BF16 F32 (Q2_K_S needs --imatrix)\n"
        "      ember's own (llama.cpp cannot read them): INT2 .. INT8, BFP3 .. BFP7, OVP4\n"
        "      (or llama.cpp's file-type number)\n\n"
        "  --imatrix FILE          importance matrix from llama-imatrix (GGUF or legacy .dat)\n"
        "  --pure                  no per-tensor mix: every quantized tensor gets TYPE's base type\n"
        "  --leave-output-tensor   keep output.weight as it is in IN\n"
        "  --allow-requantize      accept quantized tensors in IN (dequantized first)\n"
        "  N_THREADS               threads (default: physical cores)\n");
}

typedef struct { uint64_t elements, old_bytes, new_bytes; } totals;

static void progress(int i, int n, const char *name, uint64_t n_elements, const char *old_type,
                     const char *new_type, uint64_t old_bytes, uint64_t new_bytes, void *ud) {
    totals *t = ud;
    t->elements += n_elements;
    t->old_bytes += old_bytes;
    t->new_bytes += new_bytes;
    if (strcmp(old_type, new_type))
        fprintf(stderr, "[%4d/%4d] %-36s - type = %6s, converting to %6s .. size = %8.2f MiB -> %8.2f MiB\n",
                i + 1, n, name, old_type, new_type, old_bytes / 1048576.0, new_bytes / 1048576.0);
    else
        fprintf(stderr, "[%4d/%4d] %-36s - type = %6s, size = %8.3f MiB\n", i + 1, n, name, old_type,
                old_bytes / 1048576.0);
}

int cmd_quantize(int argc, char **argv) {
    ember_quantize_params p = ember_quantize_default_params();
    const char *imatrix_path = NULL, *pos[4];
    int n_pos = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { quantize_usage(stdout); return 0; }
        else if (!strcmp(a, "--imatrix")) {
            if (i + 1 >= argc) { fprintf(stderr, "error: --imatrix needs a file\n"); return 1; }
            imatrix_path = argv[++i];
        } else if (!strcmp(a, "--pure")) p.pure = 1;
        else if (!strcmp(a, "--leave-output-tensor")) p.leave_output_tensor = 1;
        else if (!strcmp(a, "--allow-requantize")) p.allow_requantize = 1;
        else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "error: unknown option '%s' (see 'ember quantize -h')\n", a);
            return 1;
        } else if (n_pos < 4) pos[n_pos++] = a;
        else { fprintf(stderr, "error: too many arguments (see 'ember quantize -h')\n"); return 1; }
    }
    if (n_pos < 3) { quantize_usage(stderr); return 1; }
    p.ftype = ember_ftype_from_name(pos[2]);
    if (p.ftype < 0) {
        fprintf(stderr, "error: unknown or unsupported type '%s' (see 'ember quantize -h')\n", pos[2]);
        return 1;
    }
    if (n_pos == 4) {
        char *end;
        long t = strtol(pos[3], &end, 10);
        if (*end || t < 1 || t > 1024) { fprintf(stderr, "error: bad thread count '%s'\n", pos[3]); return 1; }
        p.n_threads = (int)t;
        warn_threads("N_THREADS", p.n_threads);
    }
    if (!strcmp(pos[0], pos[1])) { fprintf(stderr, "error: input and output are the same file\n"); return 1; }
    ember_imatrix *im = NULL;
    if (imatrix_path) {
        if (ember_imatrix_load(imatrix_path, &im) != EMBER_OK) {
            fprintf(stderr, "error: %s\n", ember_last_error());
            return 1;
        }
        fprintf(stderr, "imatrix: %d entries from %s", ember_imatrix_n_entries(im), imatrix_path);
        if (ember_imatrix_n_chunks(im)) fprintf(stderr, ", %d chunks", ember_imatrix_n_chunks(im));
        if (ember_imatrix_dataset(im)) fprintf(stderr, ", dataset %s", ember_imatrix_dataset(im));
        fputc('\n', stderr);
        p.imatrix = im;
    }
    totals tot = {0, 0, 0};
    p.progress = progress;
    p.progress_user_data = &tot;
    fprintf(stderr, "quantizing %s to %s as %s\n", pos[0], pos[1], ember_ftype_name(p.ftype));
    ember_status st = ember_model_quantize(pos[0], pos[1], &p);
    ember_imatrix_free(im);
    if (st == EMBER_OK && tot.elements) {  /* llama-quantize's closing lines */
        fprintf(stderr, "model size  = %8.2f MiB (%.2f BPW)\n", tot.old_bytes / 1048576.0,
                tot.old_bytes * 8.0 / (double)tot.elements);
        fprintf(stderr, "quant size  = %8.2f MiB (%.2f BPW)\n", tot.new_bytes / 1048576.0,
                tot.new_bytes * 8.0 / (double)tot.elements);
    }
    if (st != EMBER_OK) {
        const char *e = ember_last_error();
        fprintf(stderr, "error: %s%s\n", e, strstr(e, "requantizing") ? " (see --allow-requantize)" : "");
        return 1;
    }
    return 0;
}
