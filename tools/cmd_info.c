/* cmd_info.c: `ember info -m MODEL`: architecture, hyper-parameters, tensor types,
 * parameter count (with the file's size label), file and memory sizes, and the kernel ISA this CPU would use. */
#include <stdlib.h>
#include <string.h>
#include "common.h"

static void meta(const ember_model *m, const char *label, const char *key) {
    char buf[256];
    if (ember_model_meta_str(m, key, buf, sizeof buf) >= 0) printf("%-22s %s\n", label, buf);
}

int cmd_info(int argc, char **argv) {
    opts o;
    int pr = opts_parse(&o, argc, argv);
    if (pr) return pr == 2 ? 0 : 1;
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
    ember_model_free(m);
    return 0;
}
