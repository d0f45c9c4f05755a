/* quantize.c: ember_model_quantize, llama-quantize's algorithm over ember's GGUF reader and
 * writer, and the importance-matrix files of llama-imatrix.
 *
 * What llama.cpp does (src/llama-quant.cpp), and so what this file does:
 *   - tensors are visited in the loader's order: by layer number ("blk.N."; others first),
 *     then by name. The per-tensor counters of the mixes (i-th attn_v, i-th ffn_down)
 *     follow that order, and the output file lists tensors in it;
 *   - a tensor is quantized when it has at least 2 dimensions (trailing 1s do not count),
 *     its name ends in "weight", and it is not a norm, an expert router, a positional or
 *     token-type embedding, or one of the small special tensors named below;
 *   - the type: the file type's base type, changed by the _S/_M mix rules (unless pure),
 *     then the fallback for rows that are not a multiple of the block size (Q2_K, Q3_K ->
 *     Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, IQ4_XS -> IQ4_NL, TQ1_0/TQ2_0 -> Q4_0;
 *     ember's own INT2 -> Q4_0, INT3..INT7 -> BFP3..BFP7, INT8 -> Q8_0, OVP4 -> BFP4; F16 when even 32
 *     does not divide the row); Q2_K_S refuses to run without an
 *     importance matrix, as llama-quantize does. F32/F16/BF16
 *     file types take no mix and no fallback;
 *   - the output tensor (and token_embd when there is no output.weight: tied embeddings)
 *     becomes Q8_0 when the row is not a multiple of the base type's block, else Q6_K
 *     unless the base is Q8_0;
 *   - metadata is copied in order, general.quantization_version (2) and general.file_type
 *     moved to the end (then, with an importance matrix, the quantize.imatrix.* keys that
 *     llama-quantize adds), split.* keys dropped; each tensor's data is padded to the
 *     alignment, the last one included. So for the same input the whole file is
 *     byte-identical to llama-quantize's.
 * Quantized inputs are dequantized (only with allow_requantize; F16/BF16 always). Rows are
 * independent, so threads split rows and the bytes do not depend on the thread count.
 * One deliberate difference: an input whose general.alignment is not 32 keeps that key and
 * ember lays the output out with it, where llama.cpp copies the key but pads to 32 (a file
 * its own reader would misplace); for every other input the files are identical. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/internal.h"

#define QUANT_VERSION 2  /* GGML_QNT_VERSION */

/* ---------------------------------------------------------------- file types */

static const struct { int ftype; const char *name; int base; } ftypes[] = {
    { EMBER_FTYPE_MOSTLY_Q4_0, "Q4_0", EM_Q4_0 },     { EMBER_FTYPE_MOSTLY_Q4_1, "Q4_1", EM_Q4_1 },
    { EMBER_FTYPE_MOSTLY_Q5_0, "Q5_0", EM_Q5_0 },     { EMBER_FTYPE_MOSTLY_Q5_1, "Q5_1", EM_Q5_1 },
    { EMBER_FTYPE_MOSTLY_Q8_0, "Q8_0", EM_Q8_0 },
    { EMBER_FTYPE_MOSTLY_Q2_K, "Q2_K", EM_Q2_K },     { EMBER_FTYPE_MOSTLY_Q2_K_S, "Q2_K_S", EM_Q2_K },
    { EMBER_FTYPE_MOSTLY_Q3_K_S, "Q3_K_S", EM_Q3_K }, { EMBER_FTYPE_MOSTLY_Q3_K_M, "Q3_K_M", EM_Q3_K },
    { EMBER_FTYPE_MOSTLY_Q3_K_L, "Q3_K_L", EM_Q3_K },
    { EMBER_FTYPE_MOSTLY_Q4_K_S, "Q4_K_S", EM_Q4_K }, { EMBER_FTYPE_MOSTLY_Q4_K_M, "Q4_K_M", EM_Q4_K },
    { EMBER_FTYPE_MOSTLY_Q5_K_S, "Q5_K_S", EM_Q5_K }, { EMBER_FTYPE_MOSTLY_Q5_K_M, "Q5_K_M", EM_Q5_K },
    { EMBER_FTYPE_MOSTLY_Q6_K, "Q6_K", EM_Q6_K },
    { EMBER_FTYPE_MOSTLY_IQ4_NL, "IQ4_NL", EM_IQ4_NL }, { EMBER_FTYPE_MOSTLY_IQ4_XS, "IQ4_XS", EM_IQ4_XS },
    { EMBER_FTYPE_MOSTLY_TQ1_0, "TQ1_0", EM_TQ1_0 },    { EMBER_FTYPE_MOSTLY_TQ2_0, "TQ2_0", EM_TQ2_0 },
    { EMBER_FTYPE_MOSTLY_F16, "F16", EM_F16 },        { EMBER_FTYPE_MOSTLY_BF16, "BF16", EM_BF16 },
    { EMBER_FTYPE_ALL_F32, "F32", EM_F32 },
    { EMBER_FTYPE_MOSTLY_INT2, "INT2", EM_INT2 },     { EMBER_FTYPE_MOSTLY_INT3, "INT3", EM_INT3 },
    { EMBER_FTYPE_MOSTLY_INT4, "INT4", EM_INT4 },     { EMBER_FTYPE_MOSTLY_INT5, "INT5", EM_INT5 },
    { EMBER_FTYPE_MOSTLY_INT6, "INT6", EM_INT6 },     { EMBER_FTYPE_MOSTLY_INT7, "INT7", EM_INT7 },
    { EMBER_FTYPE_MOSTLY_INT8, "INT8", EM_INT8 },
    { EMBER_FTYPE_MOSTLY_BFP3, "BFP3", EM_BFP3 },     { EMBER_FTYPE_MOSTLY_BFP4, "BFP4", EM_BFP4 },
    { EMBER_FTYPE_MOSTLY_BFP5, "BFP5", EM_BFP5 },     { EMBER_FTYPE_MOSTLY_BFP6, "BFP6", EM_BFP6 },
    { EMBER_FTYPE_MOSTLY_BFP7, "BFP7", EM_BFP7 },    { EMBER_FTYPE_MOSTLY_OVP4, "OVP4", EM_OVP4 },
};
#define N_FTYPES (int)(sizeof ftypes / sizeof *ftypes)

const char *ember_ftype_name(int ftype) {
    for (int i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == ftype) return ftypes[i].name;
    return NULL;
}

int ember_ftype_from_name(const char *name) {
    if (!name || !*name) return -1;
    for (int i = 0; i < N_FTYPES; i++)
        if (!strcasecmp(ftypes[i].name, name)) return ftypes[i].ftype;
    char *end;
    long v = strtol(name, &end, 10);
    if (*end || v < 0 || v > 1000) return -1;
    return ember_ftype_name((int)v) ? (int)v : -1;
}

static int ftype_base(int ftype) {
    for (int i = 0; i < N_FTYPES; i++)
        if (ftypes[i].ftype == ftype) return ftypes[i].base;
    return -1;
}

ember_quantize_params ember_quantize_default_params(void) {
    ember_quantize_params p;
    memset(&p, 0, sizeof p);
    p.ftype = EMBER_FTYPE_MOSTLY_Q8_0;
    return p;
}

/* ---------------------------------------------------------------- importance matrix */

struct ember_imatrix {
    int n;
    char **names;
    float **data;
    size_t *len;
    int n_chunks;
    char *dataset;
    char *path;  /* as loaded: recorded in quantized files (quantize.imatrix.file) */
};

void ember_imatrix_free(ember_imatrix *im) {
    if (!im) return;
    for (int i = 0; i < im->n; i++) { free(im->names[i]); free(im->data[i]); }
    free(im->names);
    free(im->data);
    free(im->len);
    free(im->dataset);
    free(im->path);
    free(im);
}

int ember_imatrix_n_entries(const ember_imatrix *im) { return im ? im->n : 0; }
int ember_imatrix_n_chunks(const ember_imatrix *im) { return im ? im->n_chunks : 0; }
const char *ember_imatrix_dataset(const ember_imatrix *im) { return im ? im->dataset : NULL; }

/* Appends an entry (takes ownership of data). Duplicates are resolved by im_finish. */
static int im_add(ember_imatrix *im, const char *name, size_t name_len, float *data, size_t n) {
    char **nn = realloc(im->names, (size_t)(im->n + 1) * sizeof *nn);
    if (nn) im->names = nn;
    float **nd = realloc(im->data, (size_t)(im->n + 1) * sizeof *nd);
    if (nd) im->data = nd;
    size_t *nl = realloc(im->len, (size_t)(im->n + 1) * sizeof *nl);
    if (nl) im->len = nl;
    char *copy = malloc(name_len + 1);
    if (!nn || !nd || !nl || !copy) { free(copy); free(data); return -1; }
    memcpy(copy, name, name_len);
    copy[name_len] = 0;
    im->names[im->n] = copy;
    im->data[im->n] = data;
    im->len[im->n] = n;
    im->n++;
    return 0;
}

typedef struct { const char *name; int i; } im_key;

static int cmp_im_key(const void *a, const void *b) {
    const im_key *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->i > y->i) - (x->i < y->i);
}

/* Sorts the entries by name and keeps the last of each name (llama.cpp reads them into a
 * map, where a later entry replaces an earlier one), so lookups are binary searches and a
 * file with many entries costs O(n log n). */
static int im_finish(ember_imatrix *im) {
    if (im->n < 2) return 0;
    im_key *k = malloc((size_t)im->n * sizeof *k);
    char **names = malloc((size_t)im->n * sizeof *names);
    float **data = malloc((size_t)im->n * sizeof *data);
    size_t *len = malloc((size_t)im->n * sizeof *len);
    if (!k || !names || !data || !len) { free(k); free(names); free(data); free(len); return -1; }
    for (int i = 0; i < im->n; i++) k[i] = (im_key){im->names[i], i};
    qsort(k, (size_t)im->n, sizeof *k, cmp_im_key);
    int m = 0;
    for (int i = 0; i < im->n; i++) {
        const int j = k[i].i;
        if (i + 1 < im->n && !strcmp(k[i + 1].name, k[i].name)) {  /* a later one follows */
            free(im->names[j]);
            free(im->data[j]);
            continue;
        }
        names[m] = im->names[j];
        data[m] = im->data[j];
        len[m] = im->len[j];
        m++;
    }
    free(k);
    free(im->names);
    free(im->data);
    free(im->len);
    im->names = names;
    im->data = data;
    im->len = len;
    im->n = m;
    return 0;
}

static const float *im_find(const ember_imatrix *im, const char *name, size_t *n) {
    int lo = 0, hi = im ? im->n - 1 : -1;
    while (lo <= hi) {
        const int mid = lo + (hi - lo) / 2, c = strcmp(im->names[mid], name);
        if (!c) { *n = im->len[mid]; return im->data[mid]; }
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

/* GGUF layout: <name>.in_sum2 (sums of squared activations, F32, ne0 per expert) and
 * <name>.counts (tokens seen per expert, F32). Normalised as llama-quantize does:
 * sums / (float)lround(count), or 1 where the count is 0. */
static ember_status imatrix_load_gguf(const char *path, ember_imatrix *im) {
    char err[512];
    gguf_ctx *g = gguf_open(path, err, sizeof err);
    if (!g) return em_fail(EMBER_E_FORMAT, "%s", err);
    ember_status st = EMBER_OK;
    int64_t v;
    if (gguf_get_int(g, "imatrix.chunk_count", &v) == 0 && v > 0 && v < INT32_MAX) im->n_chunks = (int)v;
    const char *ds;
    size_t dl;
    if (gguf_get_arr_str(g, "imatrix.datasets", 0, &ds, &dl) == 0 && (im->dataset = malloc(dl + 1))) {
        memcpy(im->dataset, ds, dl);
        im->dataset[dl] = 0;
    }
    static const char sfx_sum[] = ".in_sum2", sfx_cnt[] = ".counts";
    for (int64_t i = 0; i < gguf_n_tensors(g) && st == EMBER_OK; i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        size_t nl = strlen(t->name), ls = sizeof sfx_sum - 1;
        if (nl <= ls || strcmp(t->name + nl - ls, sfx_sum)) continue;
        char cname[128];
        snprintf(cname, sizeof cname, "%.*s%s", (int)(nl - ls), t->name, sfx_cnt);
        const gguf_tensor *c = gguf_find_tensor(g, cname);
        if (!c) { st = em_fail(EMBER_E_FORMAT, "%s: '%s' has no '%s'", path, t->name, cname); break; }
        if (t->type != EM_F32 || c->type != EM_F32) {
            st = em_fail(EMBER_E_FORMAT, "%s: sums and counts of '%.*s' must be F32", path, (int)(nl - ls), t->name);
            break;
        }
        size_t nval = t->size / 4, ncnt = c->size / 4;
        if (!ncnt || nval % ncnt) {
            st = em_fail(EMBER_E_FORMAT, "%s: '%s' has %zu values for %zu counts", path, t->name, nval, ncnt);
            break;
        }
        float *e = malloc((nval ? nval : 1) * sizeof *e);
        if (!e) { st = em_fail(EMBER_E_NOMEM, "out of memory reading %s", path); break; }
        const size_t ne0 = nval / ncnt;
        for (size_t j = 0; j < ncnt; j++) {
            float cf, count;
            memcpy(&cf, (const char *)c->data + 4 * j, 4);
            count = (float)lroundf(cf);
            for (size_t k = 0; k < ne0; k++) {
                float s;
                memcpy(&s, (const char *)t->data + 4 * (j * ne0 + k), 4);
                e[j * ne0 + k] = count > 0.0f ? s / count : 1;
            }
        }
        if (im_add(im, t->name, nl - ls, e, nval)) st = em_fail(EMBER_E_NOMEM, "out of memory reading %s", path);
    }
    gguf_close(g);
    return st;
}

/* Legacy .dat layout (little-endian): i32 n_entries, then per entry i32 name length, name,
 * i32 ncall, i32 nval, f32[nval] (sums already divided per call); optionally i32 chunk
 * count, i32 length and the dataset name. Values are divided by ncall (when > 0). */
static ember_status imatrix_load_legacy(const char *path, const unsigned char *b, size_t n,
                                        ember_imatrix *im) {
    size_t pos = 0;
#define RD_I32(v) do { if (n - pos < 4) goto trunc; uint32_t u_ = (uint32_t)b[pos] |      \
        (uint32_t)b[pos + 1] << 8 | (uint32_t)b[pos + 2] << 16 | (uint32_t)b[pos + 3] << 24; \
        (v) = (int32_t)u_; pos += 4; } while (0)
    int32_t n_entries;
    RD_I32(n_entries);
    if (n_entries < 1) return em_fail(EMBER_E_FORMAT, "%s: no imatrix entries", path);
    for (int32_t i = 0; i < n_entries; i++) {
        int32_t len, ncall, nval;
        RD_I32(len);
        if (len < 1 || (size_t)len > n - pos) goto trunc;
        const char *name = (const char *)b + pos;
        pos += (size_t)len;
        RD_I32(ncall);
        RD_I32(nval);
        if (nval < 1 || (size_t)nval > (n - pos) / 4) goto trunc;
        float *e = malloc((size_t)nval * sizeof *e);
        if (!e) return em_fail(EMBER_E_NOMEM, "out of memory reading %s", path);
        for (int32_t k = 0; k < nval; k++) {
            float s;
            memcpy(&s, b + pos + 4 * (size_t)k, 4);
            e[k] = ncall > 0 ? s / ncall : s;
        }
        pos += 4 * (size_t)nval;
        if (im_add(im, name, strnlen(name, (size_t)len), e, (size_t)nval))
            return em_fail(EMBER_E_NOMEM, "out of memory reading %s", path);
    }
    if (n - pos >= 4) {
        int32_t chunks, len;
        RD_I32(chunks);
        im->n_chunks = chunks > 0 ? chunks : 0;
        if (n - pos >= 4) {
            RD_I32(len);
            if (len > 0 && (size_t)len <= n - pos && (im->dataset = malloc((size_t)len + 1))) {
                memcpy(im->dataset, b + pos, (size_t)len);
                im->dataset[len] = 0;
            }
        }
    }
    return EMBER_OK;
trunc:
    return em_fail(EMBER_E_FORMAT, "%s: truncated or corrupt imatrix file (offset %zu)", path, pos);
#undef RD_I32
}

ember_status ember_imatrix_load(const char *path, ember_imatrix **out) {
    if (!path || !out) return em_fail(EMBER_E_INVALID, "ember_imatrix_load: NULL argument");
    *out = NULL;
    ember_status st;
    FILE *f = em_fopen_regular(path, &st);
    if (!f) return st;
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            size_t nc = cap ? cap * 2 : 1 << 20;
            unsigned char *q = realloc(buf, nc);
            if (!q) { free(buf); fclose(f); return em_fail(EMBER_E_NOMEM, "out of memory reading %s", path); }
            buf = q;
            cap = nc;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (!r) break;
    }
    int rerr = ferror(f);
    fclose(f);
    if (rerr) { free(buf); return em_fail(EMBER_E_IO, "%s: read error", path); }
    ember_imatrix *im = calloc(1, sizeof *im);
    if (!im) { free(buf); return em_fail(EMBER_E_NOMEM, "out of memory"); }
    if (!(im->path = strdup(path))) st = em_fail(EMBER_E_NOMEM, "out of memory");
    else if (n >= 4 && !memcmp(buf, "GGUF", 4)) st = imatrix_load_gguf(path, im);
    else st = imatrix_load_legacy(path, buf, n, im);
    free(buf);
    if (st == EMBER_OK && im_finish(im)) st = em_fail(EMBER_E_NOMEM, "out of memory reading %s", path);
    if (st == EMBER_OK && im->n == 0) st = em_fail(EMBER_E_FORMAT, "%s: no imatrix entries", path);
    for (int i = 0; st == EMBER_OK && i < im->n; i++)
        for (size_t k = 0; k < im->len[i]; k++)
            if (!isfinite(im->data[i][k])) {
                st = em_fail(EMBER_E_FORMAT, "%s: imatrix of '%s' contains non-finite value %f", path,
                             im->names[i], (double)im->data[i][k]);
                break;
            }
    if (st != EMBER_OK) { ember_imatrix_free(im); return st; }
    *out = im;
    return EMBER_OK;
}

/* ---------------------------------------------------------------- tensor type choice */

enum cat { CAT_TOKEN_EMBD, CAT_ATTN_Q, CAT_ATTN_V, CAT_ATTN_K, CAT_ATTN_QKV, CAT_ATTN_KV_B,
           CAT_ATTN_OUTPUT, CAT_FFN_UP, CAT_FFN_GATE, CAT_FFN_DOWN, CAT_OUTPUT, CAT_OTHER };

static int has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static int is_token_embd(const char *n) {
    return !strcmp(n, "token_embd.weight") || !strcmp(n, "per_layer_token_embd.weight");
}

static enum cat category(const char *n) {
    if (!strcmp(n, "output.weight")) return CAT_OUTPUT;
    if (is_token_embd(n)) return CAT_TOKEN_EMBD;
    if (has(n, "attn_qkv.weight")) return CAT_ATTN_QKV;
    if (has(n, "attn_kv_b.weight")) return CAT_ATTN_KV_B;
    if (has(n, "attn_v.weight")) return CAT_ATTN_V;
    if (has(n, "attn_k.weight")) return CAT_ATTN_K;
    if (has(n, "attn_q.weight")) return CAT_ATTN_Q;
    if (has(n, "attn_output.weight")) return CAT_ATTN_OUTPUT;
    if (has(n, "ffn_up")) return CAT_FFN_UP;
    if (has(n, "ffn_gate")) return CAT_FFN_GATE;
    if (has(n, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

static int is_attn_v(enum cat c) { return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B; }

/* ggml_n_dims: dimensions up to the last one larger than 1 (at least 1). */
static int n_dims(const gguf_tensor *t) {
    for (int d = 3; d >= 1; d--)
        if (t->ne[d] > 1) return d + 1;
    return 1;
}

static int allows_quantization(const gguf_tensor *t, int leave_output) {
    if (n_dims(t) < 2) return 0;
    const char *n = t->name;
    size_t len = strlen(n);
    if (len < 6 || strcmp(n + len - 6, "weight")) return 0;
    if (has(n, "_norm.weight")) return 0;
    if (leave_output && !strcmp(n, "output.weight")) return 0;
    static const char *const never[] = {
        "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel", "per_layer_model_proj",
        "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight", "indexer.q_proj.weight",
        "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight", "time_mix_w2.weight",
        "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight", "time_mix_a0.weight",
        "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight", "time_mix_g2.weight",
        "time_mix_decay_w1.weight", "time_mix_decay_w2.weight", "time_mix_lerp_fused.weight",
        "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.", "sam.net_", ".rel_pos",
        ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    };
    for (size_t i = 0; i < sizeof never / sizeof *never; i++)
        if (has(n, never[i])) return 0;
    if (!strcmp(n, "position_embd.weight") || !strcmp(n, "token_types.weight")) return 0;
    return 1;
}

typedef struct qstate {
    int ftype, has_imatrix, falcon, is_70b, n_expert;
    int n_gqa;                 /* n_head / n_head_kv (0 when unknown), as llama.cpp's n_gqa() */
    int has_tied;              /* no output.weight: token_embd doubles as the output */
    int n_attention_wv, i_attention_wv;
    int n_layer, i_ffn_down, i_ffn_gate, i_ffn_up;
    int n_fallback;
} qstate;

static int use_more_bits(int i_layer, int n_layers) {
    return i_layer < n_layers / 8 || i_layer >= 7 * n_layers / 8 || (i_layer - n_layers / 8) % 3 == 2;
}

/* The layer of an expert tensor comes from its name (experts are not consecutive). */
static int layer_of(const qstate *qs, int counter, const char *name, int *i_layer) {
    *i_layer = counter;
    if (qs->n_expert > 1) {
        if (sscanf(name, "blk.%d.", i_layer) != 1 || *i_layer < 0 || *i_layer >= qs->n_layer)
            return em_fail(EMBER_E_FORMAT, "cannot determine the layer of tensor '%s'", name);
    }
    return 0;
}

static int is_iq4(int ft) { return ft == EMBER_FTYPE_MOSTLY_IQ4_NL || ft == EMBER_FTYPE_MOSTLY_IQ4_XS; }

/* llama_tensor_get_type_impl, restricted to the file types ember produces. */
static int mix_type(qstate *qs, int new_type, const gguf_tensor *t, enum cat c, int *type_out) {
    const int ft = qs->ftype;
    const char *name = t->name;
    int i_layer;
    if (c == CAT_OUTPUT || (qs->has_tied && c == CAT_TOKEN_EMBD)) {
        const int64_t blck = em_type_traits((uint32_t)new_type)->blck;
        if (qs->falcon || t->ne[0] % blck) new_type = EM_Q8_0;
        else if (new_type != EM_Q8_0) new_type = EM_Q6_K;
    } else if (c == CAT_TOKEN_EMBD) {
        if (ft == EMBER_FTYPE_MOSTLY_TQ1_0 || ft == EMBER_FTYPE_MOSTLY_TQ2_0) new_type = EM_Q4_K;
    } else if (is_attn_v(c)) {
        if (ft == EMBER_FTYPE_MOSTLY_Q2_K)
            new_type = qs->n_gqa >= 4 ? EM_Q4_K : EM_Q3_K;
        else if (ft == EMBER_FTYPE_MOSTLY_Q2_K_S && qs->n_gqa >= 4)
            new_type = EM_Q4_K;
        else if (ft == EMBER_FTYPE_MOSTLY_Q3_K_M)
            new_type = qs->i_attention_wv < 2 ? EM_Q5_K : EM_Q4_K;
        else if (ft == EMBER_FTYPE_MOSTLY_Q3_K_L)
            new_type = EM_Q5_K;
        else if (is_iq4(ft) && qs->n_gqa >= 4)
            new_type = EM_Q5_K;
        else if ((ft == EMBER_FTYPE_MOSTLY_Q4_K_M || ft == EMBER_FTYPE_MOSTLY_Q5_K_M) &&
            use_more_bits(qs->i_attention_wv, qs->n_attention_wv))
            new_type = EM_Q6_K;
        else if (ft == EMBER_FTYPE_MOSTLY_Q4_K_S && qs->i_attention_wv < 4)
            new_type = EM_Q5_K;
        if (qs->is_70b && (new_type == EM_Q3_K || new_type == EM_Q4_K)) new_type = EM_Q5_K;
        if (qs->n_expert == 8) new_type = EM_Q8_0;
        qs->i_attention_wv++;
    } else if (c == CAT_ATTN_K) {
        if (qs->n_expert == 8) new_type = EM_Q8_0;
    } else if (c == CAT_FFN_DOWN) {
        if (layer_of(qs, qs->i_ffn_down, name, &i_layer)) return -1;
        const int n_layer = qs->n_layer;
        if (ft == EMBER_FTYPE_MOSTLY_Q2_K) {
            new_type = EM_Q3_K;
        } else if (ft == EMBER_FTYPE_MOSTLY_Q2_K_S) {
            if (i_layer < n_layer / 8) new_type = EM_Q4_K;
        } else if (ft == EMBER_FTYPE_MOSTLY_Q3_K_M) {
            new_type = i_layer < n_layer / 16 ? EM_Q5_K
                     : !qs->falcon || use_more_bits(i_layer, n_layer) ? EM_Q4_K : EM_Q3_K;
        } else if (ft == EMBER_FTYPE_MOSTLY_Q3_K_L) {
            new_type = qs->falcon ? EM_Q4_K : EM_Q5_K;
        } else if (ft == EMBER_FTYPE_MOSTLY_Q4_K_M) {
            if (qs->falcon)
                new_type = i_layer < n_layer / 16 ? EM_Q6_K : use_more_bits(i_layer, n_layer) ? EM_Q5_K : EM_Q4_K;
            else if (use_more_bits(i_layer, n_layer))
                new_type = EM_Q6_K;
        } else if (is_iq4(ft) && !qs->has_imatrix && i_layer < n_layer / 8) {
            new_type = EM_Q5_K;
        } else if (ft == EMBER_FTYPE_MOSTLY_Q5_K_M && use_more_bits(i_layer, n_layer)) {
            new_type = EM_Q6_K;
        } else if (ft == EMBER_FTYPE_MOSTLY_Q4_K_S && !qs->falcon && i_layer < n_layer / 8) {
            new_type = EM_Q5_K;
        } else if ((ft == EMBER_FTYPE_MOSTLY_Q4_0 || ft == EMBER_FTYPE_MOSTLY_Q5_0) && qs->has_imatrix &&
                   i_layer < n_layer / 8) {
            new_type = ft == EMBER_FTYPE_MOSTLY_Q4_0 ? EM_Q4_1 : EM_Q5_1;
        }
        qs->i_ffn_down++;
    } else if (c == CAT_ATTN_OUTPUT) {
        if (!qs->falcon && qs->n_expert == 8) {
            if (ft == EMBER_FTYPE_MOSTLY_Q2_K || ft == EMBER_FTYPE_MOSTLY_Q3_K_S || ft == EMBER_FTYPE_MOSTLY_Q3_K_M ||
                ft == EMBER_FTYPE_MOSTLY_Q4_K_S || ft == EMBER_FTYPE_MOSTLY_Q4_K_M || is_iq4(ft))
                new_type = EM_Q5_K;
        } else if (!qs->falcon) {
            if (ft == EMBER_FTYPE_MOSTLY_Q2_K) new_type = EM_Q3_K;
            else if (ft == EMBER_FTYPE_MOSTLY_Q3_K_M) new_type = EM_Q4_K;
            else if (ft == EMBER_FTYPE_MOSTLY_Q3_K_L) new_type = EM_Q5_K;
        } else if (ft == EMBER_FTYPE_MOSTLY_Q3_K_L) {
            new_type = EM_Q4_K;
        }
    } else if (c == CAT_FFN_GATE) {
        if (layer_of(qs, qs->i_ffn_gate, name, &i_layer)) return -1;
        qs->i_ffn_gate++;
    } else if (c == CAT_FFN_UP) {
        if (layer_of(qs, qs->i_ffn_up, name, &i_layer)) return -1;
        qs->i_ffn_up++;
    }
    *type_out = new_type;
    return 0;
}

/* Rows that are not whole blocks of the chosen type: a smaller block type, else F16. */
static int fallback_type(qstate *qs, const gguf_tensor *t, int type) {
    const int64_t ncols = t->ne[0];
    const int64_t blck = em_type_traits((uint32_t)type)->blck;
    if (ncols % blck == 0) return type;
    qs->n_fallback++;
    int r = type;
    switch (type) {
    case EM_Q2_K: case EM_Q3_K: r = EM_Q4_0; break;
    case EM_Q4_K: r = EM_Q5_0; break;
    case EM_Q5_K: r = EM_Q5_1; break;
    case EM_Q6_K: r = EM_Q8_0; break;
    case EM_IQ4_XS: r = EM_IQ4_NL; break;
    case EM_TQ1_0: case EM_TQ2_0: r = EM_Q4_0; break;
    case EM_INT2: r = EM_Q4_0; break;  /* ember's INT (64-groups): the BFP of the same width */
    case EM_INT3: case EM_INT4: case EM_INT5: case EM_INT6: case EM_INT7: r = EM_BFP3 + (type - EM_INT3); break;
    case EM_INT8: r = EM_Q8_0; break;
    case EM_OVP4: r = EM_BFP4; break;
    default: break;  /* a 32-block type has nothing smaller: F16 below */
    }
    if (ncols % em_type_traits((uint32_t)r)->blck) r = EM_F16;
    em_log(EMBER_LOG_WARN, "%s: %lld columns are not a multiple of %lld (required for %s): falling back to %s",
           t->name, (long long)ncols, (long long)blck, em_type_traits((uint32_t)type)->name,
           em_type_traits((uint32_t)r)->name);
    return r;
}

/* llama.cpp's tensor_requires_imatrix for the types ember writes: Q2_K_S's Q2_K tensors
 * (other than token_embd and output). */
static int requires_imatrix(const char *name, int type, int ftype) {
    return type == EM_Q2_K && ftype == EMBER_FTYPE_MOSTLY_Q2_K_S && !is_token_embd(name) &&
           strcmp(name, "output.weight");
}

static int is_float_type(int type) { return type == EM_F32 || type == EM_F16 || type == EM_BF16; }

/* ---------------------------------------------------------------- the driver */

static int layer_number(const char *name) {
    int l = -1;
    if (sscanf(name, "blk.%d.", &l) != 1) l = -1;
    return l;
}

static int cmp_tensors(const void *a, const void *b) {
    const gguf_tensor *ta = *(const gguf_tensor *const *)a, *tb = *(const gguf_tensor *const *)b;
    int la = layer_number(ta->name), lb = layer_number(tb->name);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(ta->name, tb->name);
}

typedef struct qjob {
    const gguf_tensor *t;
    int new_type;
    const float *imatrix;     /* one row of weights per expert (ne[2]), or NULL */
    int64_t n_per_row, nrows, rows_per_expert;
    size_t row_out;
    unsigned char *out;
    int bad;                  /* a row could not be converted */
    int invalid;              /* a row holds inf or NaN after conversion */
} qjob;

static void quantize_task(void *arg, int ith, int nth) {
    qjob *j = arg;
    const int64_t r0 = j->nrows * ith / nth, r1 = j->nrows * (ith + 1) / nth;
    const int src = (int)j->t->type;
    const size_t row_in = em_row_size(src, j->n_per_row);
    float *buf = src == EM_F32 ? NULL : malloc((size_t)j->n_per_row * sizeof *buf);
    float *check = malloc((size_t)j->n_per_row * sizeof *check);
    if ((src != EM_F32 && !buf) || !check) { free(buf); free(check); j->bad = 1; return; }
    for (int64_t r = r0; r < r1; r++) {
        const unsigned char *in = (const unsigned char *)j->t->data + (size_t)r * row_in;
        const float *x = (const float *)in;
        if (buf) {
            if (em_dequantize_row(src, in, buf, j->n_per_row)) { j->bad = 1; break; }
            x = buf;
        }
        const float *qw = j->imatrix ? j->imatrix + (r / j->rows_per_expert) * j->n_per_row : NULL;
        unsigned char *y = j->out + (size_t)r * j->row_out;
        if (!em_quantize_weights(j->new_type, x, y, 1, j->n_per_row, qw)) {
            j->bad = 1;
            break;
        }
        /* ggml_validate_row_data: no inf/NaN in the result (an f16 overflow, a NaN input) */
        em_dequantize_row(j->new_type, y, check, j->n_per_row);
        for (int64_t k = 0; k < j->n_per_row; k++)
            if (!isfinite(check[k])) { j->invalid = 1; break; }
        if (j->invalid) break;
    }
    free(buf);
    free(check);
}

/* Makes the rename durable: fsync of the directory holding path (best effort). */
static void sync_parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else if ((size_t)(slash - path) < sizeof dir) snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    else return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

static int write_all(int fd, const void *p, size_t n) {
    const unsigned char *b = p;
    while (n) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Chooses every tensor's type (in the loader's order); fills types[]. */
static ember_status choose_types(gguf_ctx *g, const gguf_tensor **order, int64_t nt,
                                 const ember_quantize_params *p, int *types) {
    qstate qs;
    memset(&qs, 0, sizeof qs);
    qs.ftype = p->ftype;
    qs.has_imatrix = p->imatrix != NULL;
    qs.has_tied = 1;
    const char *arch = "";
    size_t arch_len = 0;
    if (gguf_get_str(g, "general.architecture", &arch, &arch_len)) arch_len = 0;
    char key[160], archs[64];
    snprintf(archs, sizeof archs, "%.*s", (int)(arch_len < 63 ? arch_len : 63), arch);
    int64_t v;
    snprintf(key, sizeof key, "%s.block_count", archs);
    if (gguf_get_int(g, key, &v) == 0 && v > 0 && v < 100000) qs.n_layer = (int)v;
    snprintf(key, sizeof key, "%s.expert_count", archs);
    if (gguf_get_int(g, key, &v) == 0 && v > 0 && v < 100000) qs.n_expert = (int)v;
    int64_t n_head = 0, n_head_kv = -1;
    snprintf(key, sizeof key, "%s.attention.head_count", archs);
    if (gguf_get_int(g, key, &v) == 0) n_head = v;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", archs);
    n_head_kv = gguf_get_int(g, key, &v) == 0 ? v : n_head;
    if (n_head_kv > 0 && n_head > 0 && n_head / n_head_kv < 100000) qs.n_gqa = (int)(n_head / n_head_kv);
    qs.falcon = !strcmp(archs, "falcon");
    /* llama.cpp's model size class matters for one rule (70B attn_v) */
    if (qs.n_layer == 80 && ((!strcmp(archs, "llama") && qs.n_expert != 8 && n_head != n_head_kv) ||
                             !strcmp(archs, "qwen2")))
        qs.is_70b = 1;
    for (int64_t i = 0; i < nt; i++) {
        enum cat c = category(order[i]->name);
        if (is_attn_v(c)) qs.n_attention_wv++;
        if (c == CAT_OUTPUT) qs.has_tied = 0;
    }
    const int base = ftype_base(p->ftype);
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = order[i];
        int type = (int)t->type;
        if (allows_quantization(t, p->leave_output_tensor)) {
            type = base;
            if (!is_float_type(base)) {
                if (!p->pure && mix_type(&qs, type, t, category(t->name), &type)) return EMBER_E_FORMAT;
                type = fallback_type(&qs, t, type);
            }
            if (!p->imatrix && requires_imatrix(t->name, type, p->ftype))
                return em_fail(EMBER_E_INVALID, "tensor '%s': file type Q2_K_S requires an importance matrix "
                               "(--imatrix)", t->name);
        }
        types[i] = type;
    }
    if (qs.n_fallback)
        em_log(EMBER_LOG_WARN, "%d of %lld tensor(s) required fallback quantization", qs.n_fallback, (long long)nt);
    return EMBER_OK;
}

/* What llama-quantize records about its importance matrix (strings cut to 127 bytes). */
static int set_imatrix_keys(gguf_writer *w, const ember_imatrix *im) {
    char v[128];
    snprintf(v, sizeof v, "%s", im->path);
    if (gguf_writer_set_str(w, "quantize.imatrix.file", v)) return -1;
    if (im->dataset) {
        snprintf(v, sizeof v, "%s", im->dataset);
        if (gguf_writer_set_str(w, "quantize.imatrix.dataset", v)) return -1;
    }
    if (gguf_writer_set_u32(w, "quantize.imatrix.entries_count", (uint32_t)im->n)) return -1;
    if (im->n_chunks > 0 && gguf_writer_set_u32(w, "quantize.imatrix.chunks_count", (uint32_t)im->n_chunks)) return -1;
    return 0;
}

static int is_skipped_key(const char *k) {
    return !strcmp(k, "general.quantization_version") || !strcmp(k, "general.file_type") ||
           !strcmp(k, "split.no") || !strcmp(k, "split.count") || !strcmp(k, "split.tensors.count");
}

ember_status ember_model_quantize(const char *in_path, const char *out_path, const ember_quantize_params *p) {
    em_clear_error();
    if (!in_path || !out_path || !p) return em_fail(EMBER_E_INVALID, "ember_model_quantize: NULL argument");
    if (ftype_base(p->ftype) < 0) return em_fail(EMBER_E_INVALID, "file type %d is not one ember produces", p->ftype);
    ember_status st = em_check_regular(in_path);
    if (st != EMBER_OK) return st;
    char err[512];
    gguf_ctx *g = gguf_open(in_path, err, sizeof err);
    if (!g) return em_fail(EMBER_E_FORMAT, "%s", err);

    const int64_t nt = gguf_n_tensors(g);
    const gguf_tensor **order = malloc((size_t)(nt ? nt : 1) * sizeof *order);
    int *types = malloc((size_t)(nt ? nt : 1) * sizeof *types);
    gguf_writer *w = gguf_writer_new();
    em_pool *pool = NULL;
    void *header = NULL;
    size_t header_len = 0;
    unsigned char *out = NULL;
    char *tmp = NULL;
    int fd = -1;
    if (!order || !types || !w) { st = em_fail(EMBER_E_NOMEM, "out of memory"); goto done; }
    for (int64_t i = 0; i < nt; i++) order[i] = gguf_tensor_at(g, i);
    qsort(order, (size_t)nt, sizeof *order, cmp_tensors);
    if ((st = choose_types(g, order, nt, p, types)) != EMBER_OK) goto done;

    /* metadata, in the input's order; the two quantization keys last, as llama.cpp */
    for (int64_t i = 0; i < gguf_n_kv(g); i++) {
        const char *k = gguf_kv_key(g, i);
        const void *val;
        size_t n;
        if (is_skipped_key(k)) continue;
        if (gguf_kv_raw(g, i, &val, &n) || gguf_writer_set_raw(w, k, val, n)) {
            st = em_fail(EMBER_E_FORMAT, "cannot copy key '%s'", k);
            goto done;
        }
    }
    if (gguf_writer_set_u32(w, "general.quantization_version", QUANT_VERSION) ||
        gguf_writer_set_u32(w, "general.file_type", (uint32_t)p->ftype) ||
        (p->imatrix && set_imatrix_keys(w, p->imatrix))) {
        st = em_fail(EMBER_E_NOMEM, "out of memory");
        goto done;
    }
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = order[i];
        const int src = (int)t->type;
        if (types[i] != src) {
            if (!em_type_get(types[i]) || !em_type_get(types[i])->quantize) {
                st = em_fail(EMBER_E_UNSUPPORTED, "tensor '%s': ember cannot write type %s", t->name,
                             gguf_type_name((uint32_t)types[i]));
                goto done;
            }
            if (!em_type_get(src)) {
                st = em_fail(EMBER_E_UNSUPPORTED, "tensor '%s': ember cannot read type %s", t->name,
                             gguf_type_name((uint32_t)src));
                goto done;
            }
            if (!is_float_type(src) && !p->allow_requantize) {
                st = em_fail(EMBER_E_INVALID, "tensor '%s': requantizing from type %s is disabled "
                             "(allow_requantize is off)", t->name, gguf_type_name((uint32_t)src));
                goto done;
            }
        }
        if (gguf_writer_add_tensor_info(w, t->name, (uint32_t)types[i], (uint32_t)n_dims(t), t->ne)) {
            st = em_fail(EMBER_E_FORMAT, "tensor '%s': cannot lay out as %s", t->name,
                         gguf_type_name((uint32_t)types[i]));
            goto done;
        }
    }
    if (gguf_writer_header(w, &header, &header_len)) { st = em_fail(EMBER_E_NOMEM, "out of memory"); goto done; }

    size_t plen = strlen(out_path);
    if (!(tmp = malloc(plen + 5))) { st = em_fail(EMBER_E_NOMEM, "out of memory"); goto done; }
    memcpy(tmp, out_path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { st = em_fail(EMBER_E_IO, "cannot create %s: %s", tmp, strerror(errno)); goto done; }
    if (write_all(fd, header, header_len)) goto write_error;

    const int n_threads = p->n_threads > 0 ? p->n_threads : ember_cpu_cores();
    if (n_threads > 1 && !(pool = em_pool_new(n_threads))) { st = em_fail(EMBER_E_NOMEM, "cannot start threads"); goto done; }
    const size_t align = gguf_writer_alignment(w);
    static const unsigned char zeros[64];
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = order[i];
        const void *data = t->data;
        size_t size = t->size;
        if (types[i] != (int)t->type) {
            qjob j;
            memset(&j, 0, sizeof j);
            j.t = t;
            j.new_type = types[i];
            j.n_per_row = t->ne[0];
            j.rows_per_expert = t->ne[1] > 0 ? t->ne[1] : 1;
            j.nrows = t->ne[1] * t->ne[2] * t->ne[3];
            j.row_out = em_row_size(types[i], t->ne[0]);
            size_t n_im = 0;
            const float *im = p->imatrix ? im_find(p->imatrix, t->name, &n_im) : NULL;
            if (im) {
                if (n_im == (size_t)(t->ne[0] * t->ne[2])) j.imatrix = im;
                else if (!is_token_embd(t->name)) {
                    st = em_fail(EMBER_E_INVALID, "imatrix size %zu is different from tensor size %lld for %s",
                                 n_im, (long long)(t->ne[0] * t->ne[2]), t->name);
                    goto done;
                }
            } else if (p->imatrix) {
                em_log(EMBER_LOG_INFO, "imatrix has no weights for %s", t->name);
            }
            if (!j.imatrix && requires_imatrix(t->name, types[i], p->ftype)) {
                st = em_fail(EMBER_E_INVALID, "missing importance matrix for tensor %s in a very low-bit "
                             "quantization (%s)", t->name, gguf_type_name((uint32_t)types[i]));
                goto done;
            }
            size = j.row_out * (size_t)j.nrows;
            free(out);
            if (!(out = malloc(size ? size : 1))) { st = em_fail(EMBER_E_NOMEM, "out of memory for %s", t->name); goto done; }
            j.out = out;
            if (pool) em_pool_run(pool, quantize_task, &j);
            else quantize_task(&j, 0, 1);
            if (j.bad) { st = em_fail(EMBER_E_NOMEM, "tensor '%s': conversion failed", t->name); goto done; }
            if (j.invalid) {
                st = em_fail(EMBER_E_FORMAT, "tensor '%s': quantized data validation failed (inf or NaN as %s)",
                             t->name, gguf_type_name((uint32_t)types[i]));
                goto done;
            }
            data = out;
        }
        if (write_all(fd, data, size)) goto write_error;
        for (size_t pad = (align - size % align) % align; pad;) {
            size_t k = pad < sizeof zeros ? pad : sizeof zeros;
            if (write_all(fd, zeros, k)) goto write_error;
            pad -= k;
        }
        if (p->progress)
            p->progress((int)i, (int)nt, t->name, (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]),
                        gguf_type_name(t->type), gguf_type_name((uint32_t)types[i]), t->size, size,
                        p->progress_user_data);
    }
    if (fsync(fd)) goto write_error;
    if (close(fd)) { fd = -1; goto write_error; }
    fd = -1;
    if (rename(tmp, out_path)) { st = em_fail(EMBER_E_IO, "cannot rename %s to %s: %s", tmp, out_path, strerror(errno)); goto done; }
    sync_parent_dir(out_path);
    free(tmp);
    tmp = NULL;
    goto done;
write_error:
    st = em_fail(EMBER_E_IO, "cannot write %s: %s", tmp, strerror(errno));
done:
    if (fd >= 0) close(fd);
    if (tmp) unlink(tmp);  /* never leave a partial file behind */
    free(tmp);
    free(out);
    free(header);
    em_pool_free(pool);
    gguf_writer_free(w);
    free(types);
    free(order);
    gguf_close(g);
    return st;
}
