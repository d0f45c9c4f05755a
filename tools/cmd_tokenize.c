/* cmd_tokenize.c: `ember tokenize` (text -> ids or pieces) and `ember detokenize`
 * (ids -> text). Both work on vocab-only GGUF files. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "common.h"

int cmd_tokenize(int argc, char **argv) {
    opts o;
    int pr = opts_parse(&o, argc, argv);
    if (pr) return pr == 2 ? 0 : 1;
    size_t len;
    char *text = read_prompt(&o, &len);  /* bytes, NULs included */
    if (!text) {
        if (!o.prompt_file) fprintf(stderr, "error: give the text with -p TEXT or -f FILE\n");
        free(o.rest);
        return 1;
    }
    ember_model *m = load_model(&o, 1);
    int rc = 1;
    if (!m) goto done;
    int cap = (int)(len < 1 << 28 ? len : 1 << 28) + 8;
    ember_token *ids = malloc((size_t)cap * sizeof *ids);
    int n = ids ? ember_tokenize(m, text, len, ids, cap, !o.no_bos, o.special) : -1;
    if (n < 0) { fprintf(stderr, "error: tokenization failed\n"); free(ids); goto done; }
    for (int i = 0; i < n; i++) {
        if (i) putchar(' ');
        if (o.pieces) {
            char piece[512];
            int k = ember_token_to_piece(m, ids[i], piece, sizeof piece, 1);
            printf("'%.*s'", k > 0 ? k : 0, piece);
        } else printf("%d", ids[i]);
    }
    putchar('\n');
    free(ids);
    rc = 0;
done:
    ember_model_free(m);
    free(text);
    free(o.rest);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    opts o;
    int pr = opts_parse(&o, argc, argv);
    if (pr) return pr == 2 ? 0 : 1;
    ember_model *m = load_model(&o, 1);
    int rc = m ? 0 : 1;
    for (int i = 0; m && i < o.n_rest; i++) {
        char *end;
        errno = 0;
        long id = strtol(o.rest[i], &end, 10);
        if (errno || *end || id < 0 || id >= ember_model_n_vocab(m)) {
            fprintf(stderr, "\nerror: '%s' is not a token id of this model\n", o.rest[i]);
            rc = 1;
            break;
        }
        char piece[512];
        int k = ember_token_to_piece(m, (ember_token)id, piece, sizeof piece, o.special);
        if (k > 0) fwrite(piece, 1, (size_t)k, stdout);
    }
    if (m && rc == 0) putchar('\n');
    ember_model_free(m);
    free(o.rest);
    return rc;
}
