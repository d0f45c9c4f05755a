/* gguf.c: GGUF v2/v3 reader (validating, mmap-based) and GGUF v3 writer. libc + POSIX only.
 *
 * Reader. The file is mapped read-only (or a caller buffer is used) and parsed once, front
 * to back, by a bounds-checked cursor. Nothing read from the file is trusted: every count,
 * length, offset and size is compared with the bytes actually left before it is used, with
 * overflow-safe arithmetic, and before anything is allocated for it. The parse keeps only
 * small indexes; values stay in the mapping:
 *   - each key/value records its type and the offset of its payload (strings are returned
 *     as pointer+len into the mapping; scalars are decoded on demand, little-endian);
 *   - top-level string arrays get an offset table so gguf_get_arr_str is O(1);
 *   - key and tensor names are NUL-terminated heap copies, found through hash tables (also
 *     used to reject duplicates in O(n));
 *   - tensors carry their shape, byte size and a data pointer that provably lies inside the
 *     mapping (offset aligned, [offset, offset+size) within the file, no overlaps).
 * Choices where the spec leaves room (documented here because callers rely on them):
 *   - general.alignment must be an integer power of two in [8, 2^30]. The spec asks for a
 *     multiple of 8; a power of two makes align-up a mask and, with a page-aligned mmap,
 *     guarantees natural alignment of f32/f64/i64 tensor data. Default 32.
 *   - key names: 1..65535 bytes, no NUL. Tensor names: 1..64 bytes (the spec's limit; ggml
 *     itself stops at 63), no NUL. Duplicates of either are errors.
 *   - arrays may nest at most GGUF_MAX_DEPTH (8) levels; bool values must be 0 or 1.
 *   - tensors whose data ranges overlap are rejected; gaps are allowed.
 *   - a file without tensors may end right after its metadata (no padding required).
 * Work and memory are linear in the file size: every array element consumes at least one
 * byte of input, and allocations are made only after the count is shown to fit the file
 * (and, for keys and tensors, to be at most 2^20 each).
 *
 * Writer. Key/values are serialised as they are set (a later set of the same key replaces
 * the value in place); tensors are copied. gguf_writer_finish lays tensors out in the order
 * added, each aligned, with no padding after the last one. For files too large to build in
 * memory, tensors can be declared by shape only and gguf_writer_header gives everything up
 * to the data section; the caller then streams each tensor, padded to the alignment. */
#include "model/gguf.h"
#include "quant/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u        /* "GGUF" read as a little-endian u32 */
#define GGUF_HEADER_BYTES 24           /* magic, version, n_tensors, n_kv */
#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MIN_ALIGNMENT 8
#define GGUF_MAX_ALIGNMENT (1u << 30)
#define GGUF_MAX_KEY 65535
#define GGUF_MAX_NAME 64
#define GGUF_MAX_DEPTH 8
/* Absolute caps on the header counts, far above real files (tens of keys, at most some
 * thousands of tensors), so a large hostile file cannot make us allocate gigabytes. */
#define GGUF_MAX_KV (1u << 20)
#define GGUF_MAX_TENSORS (1u << 20)
/* Smallest possible encodings, used to reject counts before allocating for them:
 * kv = u64 len + 1-byte key + u32 type + 1-byte value;
 * tensor = u64 len + 1-byte name + u32 n_dims + one u64 ne + u32 type + u64 offset. */
#define GGUF_MIN_KV_BYTES 14
#define GGUF_MIN_TENSOR_BYTES 33

/* ------------------------------------------------------------------------------------ */
/* ggml type table                                                                       */

/* The facts (name, block size, bytes per block) come from the one type table, quant.c,
 * which knows every ggml type id, also those ember does not compute with. */

const char *gguf_type_name(uint32_t type) {
    const em_type_info *ti = em_type_traits(type);
    return ti ? ti->name : NULL;
}

int gguf_type_block(uint32_t type, size_t *blck, size_t *bytes) {
    const em_type_info *ti = em_type_traits(type);
    if (!ti) return -1;
    if (blck) *blck = (size_t)ti->blck;
    if (bytes) *bytes = ti->bytes;
    return 0;
}

/* Byte size of a tensor of `type` and shape ne[0..3] (unused dims 1). Returns 0 and sets
 * *size, or a negative code: -1 unknown type, -2 ne[0] not a block multiple, -3 overflow. */
static int tensor_nbytes(uint32_t type, const int64_t ne[4], size_t *size) {
    size_t blck, bytes;
    if (gguf_type_block(type, &blck, &bytes)) return -1;
    if (ne[0] % (int64_t)blck) return -2;
    int64_t nrows = 1, nel;
    if (__builtin_mul_overflow(ne[1], ne[2], &nrows) ||
        __builtin_mul_overflow(nrows, ne[3], &nrows) ||
        __builtin_mul_overflow(nrows, ne[0], &nel))  /* element count must fit int64 too */
        return -3;
    size_t row, total;
    if ((uint64_t)(ne[0] / (int64_t)blck) > SIZE_MAX ||
        __builtin_mul_overflow((size_t)(ne[0] / (int64_t)blck), bytes, &row) ||
        (uint64_t)nrows > SIZE_MAX || __builtin_mul_overflow(row, (size_t)nrows, &total))
        return -3;
    *size = total;
    return 0;
}

/* Size of a fixed-size value type; 0 for string, array and unknown types. */
static size_t vtype_size(uint32_t t) {
    switch (t) {
    case GGUF_U8: case GGUF_I8: case GGUF_BOOL: return 1;
    case GGUF_U16: case GGUF_I16: return 2;
    case GGUF_U32: case GGUF_I32: case GGUF_F32: return 4;
    case GGUF_U64: case GGUF_I64: case GGUF_F64: return 8;
    default: return 0;
    }
}

const char *gguf_vtype_name(int type) {
    static const char *const names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                        "bool", "string", "array", "u64", "i64", "f64"};
    return type >= 0 && type <= GGUF_F64 ? names[type] : NULL;
}

/* Little-endian decoding that works on any host and any alignment. */
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

/* ------------------------------------------------------------------------------------ */
/* Context                                                                               */

struct gguf_kv {
    char *key;            /* NUL-terminated copy */
    uint32_t type;        /* enum gguf_vtype */
    uint32_t elem_type;   /* arrays only */
    uint64_t n;           /* string: length in bytes; array: element count */
    size_t off;           /* payload offset: scalar bytes, string bytes, first array element */
    uint64_t *str_off;    /* top-level string arrays: offset of each element's u64 length */
    size_t raw_off, raw_len; /* the encoded value: u32 type + payload (copied by writers) */
};

/* Open-addressing hash table of indices (slot holds index+1, 0 = empty). */
typedef struct { size_t *slot; size_t mask; } htab;

struct gguf_ctx {
    const uint8_t *base;
    size_t size;
    int owns_map;             /* gguf_open: munmap on close */
    uint32_t version;
    size_t alignment;
    size_t data_off;          /* start of the data section */
    int64_t n_kv, n_tensors;
    struct gguf_kv *kv;
    gguf_tensor *tensors;
    htab kv_ht, t_ht;
};

/* Parser state: a cursor over the bytes plus the error buffer. */
typedef struct {
    gguf_ctx *g;
    const uint8_t *b;
    size_t n, pos;
    char *err;
    size_t errsz;
} parser;

static int fail(parser *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser *p, const char *fmt, ...) {
    if (p->err && p->errsz) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err, p->errsz, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static size_t left(const parser *p) { return p->n - p->pos; }

static int rd_u32(parser *p, uint32_t *v) {
    if (left(p) < 4) return -1;
    *v = le32(p->b + p->pos);
    p->pos += 4;
    return 0;
}

static int rd_u64(parser *p, uint64_t *v) {
    if (left(p) < 8) return -1;
    *v = le64(p->b + p->pos);
    p->pos += 8;
    return 0;
}

/* Copies a name for messages: printable ASCII only, shortened, so hostile names cannot
 * flood or corrupt a terminal. */
static const char *printable(char *buf, size_t bufsz, const uint8_t *s, size_t n) {
    size_t max = bufsz - 4, o = 0;
    for (size_t i = 0; i < n && o < max; i++)
        buf[o++] = (s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'') ? (char)s[i] : '?';
    if (n > max) memcpy(buf + o, "...", 3), o += 3;
    buf[o] = 0;
    return buf;
}

/* "123 bytes", "901.0 MiB (944766976 bytes)" or "2.5 GiB (...)". */
static const char *human(char *buf, size_t bufsz, uint64_t v) {
    if (v < (1u << 20)) snprintf(buf, bufsz, "%" PRIu64 " bytes", v);
    else if (v < (1u << 30)) snprintf(buf, bufsz, "%.1f MiB (%" PRIu64 " bytes)", (double)v / 1048576.0, v);
    else snprintf(buf, bufsz, "%.1f GiB (%" PRIu64 " bytes)", (double)v / 1073741824.0, v);
    return buf;
}

/* Reads a gguf string (u64 length + bytes): sets *len and *off (offset of the bytes).
 * `what` names the owner for messages; max (if nonzero) bounds the length. */
static int rd_str(parser *p, const char *what, const char *noun, uint64_t max,
                  uint64_t *len, size_t *off) {
    size_t at = p->pos;
    if (rd_u64(p, len))
        return fail(p, "%s: file ends inside the length of its %s (offset %zu, file is %zu bytes)",
                    what, noun, at, p->n);
    if (max && *len > max)
        return fail(p, "%s: %s length %" PRIu64 " exceeds the maximum %" PRIu64 " (offset %zu)",
                    what, noun, *len, max, at);
    if (*len > left(p))
        return fail(p, "%s: %s length %" PRIu64 " exceeds file (%zu bytes left at offset %zu)",
                    what, noun, *len, left(p), p->pos);
    *off = p->pos;
    p->pos += (size_t)*len;
    return 0;
}

/* ---- hash tables over key / tensor names ---- */

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;  /* FNV-1a */
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static int ht_init(htab *h, size_t n) {
    size_t cap = 16;
    while (cap / 2 < n) cap <<= 1;  /* n is bounded by the file size, so no overflow */
    h->slot = calloc(cap, sizeof *h->slot);
    h->mask = cap - 1;
    return h->slot ? 0 : -1;
}

static const char *kv_name(const gguf_ctx *g, size_t i) { return g->kv[i].key; }
static const char *t_name(const gguf_ctx *g, size_t i) { return g->tensors[i].name; }

/* Finds `name`; if absent and insert_idx >= 0, inserts it. Returns the index found or -1. */
static int64_t ht_find(const gguf_ctx *g, const htab *h,
                       const char *(*name_of)(const gguf_ctx *, size_t),
                       const char *name, int64_t insert_idx) {
    if (!h->slot) return -1;
    for (size_t i = hash_name(name) & h->mask;; i = (i + 1) & h->mask) {
        if (!h->slot[i]) {
            if (insert_idx >= 0) h->slot[i] = (size_t)insert_idx + 1;
            return -1;
        }
        if (!strcmp(name_of(g, h->slot[i] - 1), name)) return (int64_t)(h->slot[i] - 1);
    }
}

/* ------------------------------------------------------------------------------------ */
/* Reader: metadata                                                                      */

/* Parses an array (after its type tag) at nesting level `depth` (1 = a key's value).
 * kv is non-NULL only at the top level, where the result is recorded. */
static int parse_array(parser *p, const char *what, int depth, struct gguf_kv *kv) {
    uint32_t et;
    uint64_t n;
    size_t at = p->pos;
    if (depth > GGUF_MAX_DEPTH)
        return fail(p, "%s: arrays nested deeper than %d levels (offset %zu)", what,
                    GGUF_MAX_DEPTH, at);
    if (rd_u32(p, &et) || rd_u64(p, &n))
        return fail(p, "%s: file ends inside an array header (offset %zu)", what, at);
    size_t es = vtype_size(et), off = p->pos;
    if (es) {
        if (n > left(p) / es)
            return fail(p, "%s: array of %" PRIu64 " %s elements exceeds file (%zu bytes left at offset %zu)",
                        what, n, gguf_vtype_name((int)et), left(p), p->pos);
        if (et == GGUF_BOOL)
            for (uint64_t i = 0; i < n; i++)
                if (p->b[off + i] > 1)
                    return fail(p, "%s: bool array element %" PRIu64 " is %u (must be 0 or 1)",
                                what, i, p->b[off + i]);
        p->pos += (size_t)(n * es);
    } else if (et == GGUF_STRING) {
        if (n > left(p) / 8)
            return fail(p, "%s: array of %" PRIu64 " strings exceeds file (%zu bytes left at offset %zu)",
                        what, n, left(p), p->pos);
        if (kv && n && !(kv->str_off = malloc((size_t)n * sizeof *kv->str_off)))
            return fail(p, "%s: out of memory indexing %" PRIu64 " strings", what, n);
        for (uint64_t i = 0; i < n; i++) {  /* inline: vocabularies have 10^5 strings */
            uint64_t len;
            if (kv) kv->str_off[i] = p->pos;
            if (rd_u64(p, &len))
                return fail(p, "%s: array element %" PRIu64 ": file ends inside its length (offset %zu)",
                            what, i, p->pos);
            if (len > left(p))
                return fail(p, "%s: array element %" PRIu64 ": string length %" PRIu64
                            " exceeds file (%zu bytes left at offset %zu)", what, i, len, left(p), p->pos);
            p->pos += (size_t)len;
        }
    } else if (et == GGUF_ARRAY) {
        if (n > left(p) / 12)  /* each nested array has at least a u32 type + u64 count */
            return fail(p, "%s: array of %" PRIu64 " arrays exceeds file (%zu bytes left at offset %zu)",
                        what, n, left(p), p->pos);
        for (uint64_t i = 0; i < n; i++)
            if (parse_array(p, what, depth + 1, NULL)) return -1;
    } else {
        return fail(p, "%s: unknown array element type %u (offset %zu)", what, et, at);
    }
    if (kv) {
        kv->elem_type = et;
        kv->n = n;
        kv->off = off;
    }
    return 0;
}

/* Parses the value of kv (its type already read). */
static int parse_value(parser *p, const char *what, struct gguf_kv *kv) {
    size_t es = vtype_size(kv->type);
    if (es) {
        if (left(p) < es)
            return fail(p, "%s: file ends inside its %s value (offset %zu)", what,
                        gguf_vtype_name((int)kv->type), p->pos);
        if (kv->type == GGUF_BOOL && p->b[p->pos] > 1)
            return fail(p, "%s: bool value is %u (must be 0 or 1)", what, p->b[p->pos]);
        kv->off = p->pos;
        kv->n = 1;
        p->pos += es;
        return 0;
    }
    if (kv->type == GGUF_STRING) return rd_str(p, what, "string", 0, &kv->n, &kv->off);
    if (kv->type == GGUF_ARRAY) return parse_array(p, what, 1, kv);
    return fail(p, "%s: unknown value type %u (offset %zu)", what, kv->type, p->pos - 4);
}

static int parse_kv(parser *p, int64_t i) {
    gguf_ctx *g = p->g;
    struct gguf_kv *kv = &g->kv[i];
    char what[200], nm[100];
    uint64_t len;
    size_t off;
    snprintf(what, sizeof what, "key #%" PRId64 " (offset %zu)", i, p->pos);
    if (rd_str(p, what, "name", GGUF_MAX_KEY, &len, &off)) return -1;
    if (len == 0) return fail(p, "%s: empty key name", what);
    if (memchr(p->b + off, 0, (size_t)len)) return fail(p, "%s: key name contains a NUL byte", what);
    if (!(kv->key = malloc((size_t)len + 1))) return fail(p, "%s: out of memory", what);
    memcpy(kv->key, p->b + off, (size_t)len);
    kv->key[len] = 0;
    snprintf(what, sizeof what, "key '%s'", printable(nm, sizeof nm, p->b + off, (size_t)len));
    kv->raw_off = p->pos;
    if (rd_u32(p, &kv->type))
        return fail(p, "%s: file ends before its value type (offset %zu)", what, p->pos);
    int64_t dup = ht_find(g, &g->kv_ht, kv_name, kv->key, i);
    if (dup >= 0) return fail(p, "%s: duplicate key (also key #%" PRId64 ")", what, dup);
    if (parse_value(p, what, kv)) return -1;
    kv->raw_len = p->pos - kv->raw_off;
    return 0;
}

/* general.alignment: any integer type is accepted (the spec says u32); the value must be a
 * power of two in [8, 2^30] (see the top comment). */
static int read_alignment(parser *p) {
    gguf_ctx *g = p->g;
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t i = gguf_find_key(g, "general.alignment"), v;
    if (i < 0) return 0;
    if (gguf_get_int(g, "general.alignment", &v))
        return fail(p, "key 'general.alignment': type %s, expected an integer (u32)",
                    gguf_vtype_name(gguf_kv_type(g, i)));
    if (v < GGUF_MIN_ALIGNMENT || v > GGUF_MAX_ALIGNMENT || (v & (v - 1)))
        return fail(p, "key 'general.alignment': %" PRId64 " is not a power of two in [%d, 2^30]",
                    v, GGUF_MIN_ALIGNMENT);
    g->alignment = (size_t)v;
    return 0;
}

/* ------------------------------------------------------------------------------------ */
/* Reader: tensors                                                                       */

static int parse_tensor(parser *p, int64_t i) {
    gguf_ctx *g = p->g;
    gguf_tensor *t = &g->tensors[i];
    char what[200], nm[100];
    uint64_t len, v;
    size_t off;
    snprintf(what, sizeof what, "tensor #%" PRId64 " (offset %zu)", i, p->pos);
    if (rd_str(p, what, "name", GGUF_MAX_NAME, &len, &off)) return -1;
    if (len == 0) return fail(p, "%s: empty tensor name", what);
    if (memchr(p->b + off, 0, (size_t)len)) return fail(p, "%s: tensor name contains a NUL byte", what);
    char *name = malloc((size_t)len + 1);
    if (!name) return fail(p, "%s: out of memory", what);
    memcpy(name, p->b + off, (size_t)len);
    name[len] = 0;
    t->name = name;
    snprintf(what, sizeof what, "tensor '%s'", printable(nm, sizeof nm, p->b + off, (size_t)len));
    if (rd_u32(p, &t->n_dims))
        return fail(p, "%s: file ends inside its info (offset %zu)", what, p->pos);
    if (t->n_dims < 1 || t->n_dims > 4)
        return fail(p, "%s: n_dims is %u (must be 1..4)", what, t->n_dims);
    for (uint32_t d = 0; d < 4; d++) {
        t->ne[d] = 1;
        if (d >= t->n_dims) continue;
        if (rd_u64(p, &v)) return fail(p, "%s: file ends inside its shape (offset %zu)", what, p->pos);
        if (v > INT64_MAX) return fail(p, "%s: ne[%u] = %" PRIu64 " is negative or too large", what, d, v);
        t->ne[d] = (int64_t)v;
    }
    uint32_t file_type;
    if (rd_u32(p, &file_type) || rd_u64(p, &t->offset))
        return fail(p, "%s: file ends inside its info (offset %zu)", what, p->pos);
    t->type = em_type_from_gguf(file_type);  /* ember's seed types live at 4096.. in files */
    size_t blck = 0;
    switch (tensor_nbytes(t->type, t->ne, &t->size)) {
    case 0: break;
    case -1: return fail(p, "%s: unknown or retired ggml type %u", what, file_type);
    case -2:
        gguf_type_block(t->type, &blck, NULL);
        return fail(p, "%s: ne[0] = %" PRId64 " is not a multiple of the %s block size %zu",
                    what, t->ne[0], gguf_type_name(t->type), blck);
    default:
        return fail(p, "%s: size overflows (ne = %" PRId64 " x %" PRId64 " x %" PRId64 " x %" PRId64 ")",
                    what, t->ne[0], t->ne[1], t->ne[2], t->ne[3]);
    }
    int64_t dup = ht_find(g, &g->t_ht, t_name, t->name, i);
    if (dup >= 0) return fail(p, "%s: duplicate tensor name (also tensor #%" PRId64 ")", what, dup);
    return 0;
}

/* Checks one tensor's offset against the alignment and the file, and sets its data. */
static int place_tensor(parser *p, gguf_tensor *t) {
    gguf_ctx *g = p->g;
    char nm[100], h1[64], h2[64];
    const char *name = printable(nm, sizeof nm, (const uint8_t *)t->name, strlen(t->name));
    if (t->offset % g->alignment)
        return fail(p, "tensor '%s': offset %" PRIu64 " is not a multiple of the alignment %zu",
                    name, t->offset, g->alignment);
    if (t->offset > g->size - g->data_off) {
        if (t->offset > UINT64_MAX - g->data_off)
            return fail(p, "tensor '%s': offset %" PRIu64 " is past the end of the file (%s)",
                        name, t->offset, human(h2, sizeof h2, g->size));
        return fail(p, "tensor '%s': data starts at %s, past the end of the file (%s)", name,
                    human(h1, sizeof h1, g->data_off + t->offset), human(h2, sizeof h2, g->size));
    }
    size_t start = g->data_off + (size_t)t->offset;
    if (t->size > g->size - start) {
        if (t->size > UINT64_MAX - start)
            return fail(p, "tensor '%s': %zu bytes at byte %zu overflow the address range", name,
                        t->size, start);
        return fail(p, "tensor '%s': data ends at %s, file is %s", name,
                    human(h1, sizeof h1, (uint64_t)start + t->size), human(h2, sizeof h2, g->size));
    }
    t->data = g->base + start;
    return 0;
}

typedef struct { uint64_t start, end; int64_t idx; } span;

static int cmp_span(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Rejects tensors whose (non-empty) data ranges overlap: O(n log n). */
static int check_overlap(parser *p) {
    gguf_ctx *g = p->g;
    if (g->n_tensors < 2) return 0;
    span *s = malloc((size_t)g->n_tensors * sizeof *s);
    if (!s) return fail(p, "out of memory checking %" PRId64 " tensors", g->n_tensors);
    size_t n = 0;
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].size)
            s[n++] = (span){g->tensors[i].offset, g->tensors[i].offset + g->tensors[i].size, i};
    qsort(s, n, sizeof *s, cmp_span);
    for (size_t i = 1; i < n; i++) {
        if (s[i].start < s[i - 1].end) {
            char n1[100], n2[100];
            const char *a = g->tensors[s[i - 1].idx].name, *b = g->tensors[s[i].idx].name;
            fail(p, "tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64 ") overlap",
                 printable(n1, sizeof n1, (const uint8_t *)a, strlen(a)), s[i - 1].start,
                 s[i - 1].end, printable(n2, sizeof n2, (const uint8_t *)b, strlen(b)),
                 s[i].start, s[i].end);
            free(s);
            return -1;
        }
    }
    free(s);
    return 0;
}

/* After the tensor infos: the data section starts at the next multiple of the alignment. */
static int layout(parser *p) {
    gguf_ctx *g = p->g;
    size_t pad = (g->alignment - p->pos % g->alignment) % g->alignment;
    g->data_off = p->pos + pad;  /* pos <= size and pad < 2^30: no overflow on 64-bit */
    if (g->data_off < p->pos || g->data_off > g->size) {
        if (g->n_tensors > 0)
            return fail(p, "data section would start at byte %zu (metadata ends at %zu, alignment %zu), "
                        "past the end of the file (%zu bytes)", p->pos + pad, p->pos,
                        g->alignment, g->size);
        g->data_off = g->size;  /* metadata-only file without trailing padding */
    }
    for (int64_t i = 0; i < g->n_tensors; i++)
        if (place_tensor(p, &g->tensors[i])) return -1;
    return check_overlap(p);
}

/* ------------------------------------------------------------------------------------ */
/* Reader: entry points                                                                  */

static int parse_header(parser *p, uint64_t *n_tensors, uint64_t *n_kv) {
    uint32_t magic, version;
    if (p->n < 4) return fail(p, "file is too small to be GGUF (%zu bytes)", p->n);
    rd_u32(p, &magic);
    if (magic != GGUF_MAGIC)
        return fail(p, "not a GGUF file (magic bytes %02x %02x %02x %02x, expected 'GGUF')",
                    p->b[0], p->b[1], p->b[2], p->b[3]);
    if (rd_u32(p, &version)) return fail(p, "file ends inside the GGUF header (%zu bytes)", p->n);
    if (version == 1) return fail(p, "GGUF version 1 is not supported (only versions 2 and 3)");
    if (version == 0x02000000u || version == 0x03000000u)
        return fail(p, "big-endian GGUF files are not supported (version field %08x)", version);
    if (version != 2 && version != 3)
        return fail(p, "unsupported GGUF version %u (only versions 2 and 3)", version);
    p->g->version = version;
    if (rd_u64(p, n_tensors) || rd_u64(p, n_kv))
        return fail(p, "file ends inside the GGUF header (%zu bytes, need %d)", p->n,
                    GGUF_HEADER_BYTES);
    if (*n_kv > GGUF_MAX_KV || *n_tensors > GGUF_MAX_TENSORS)
        return fail(p, "header claims %" PRIu64 " key/value pairs and %" PRIu64 " tensors (limits: %u and %u)",
                    *n_kv, *n_tensors, GGUF_MAX_KV, GGUF_MAX_TENSORS);
    /* Counts that cannot fit in the rest of the file are rejected before allocation. */
    size_t rest = left(p);
    if (*n_kv > rest / GGUF_MIN_KV_BYTES)
        return fail(p, "header claims %" PRIu64 " key/value pairs, which cannot fit in the %zu bytes after the header",
                    *n_kv, rest);
    if (*n_tensors > rest / GGUF_MIN_TENSOR_BYTES)
        return fail(p, "header claims %" PRIu64 " tensors, which cannot fit in the %zu bytes after the header",
                    *n_tensors, rest);
    if (*n_kv * GGUF_MIN_KV_BYTES > rest - *n_tensors * GGUF_MIN_TENSOR_BYTES)
        return fail(p, "header claims %" PRIu64 " key/value pairs and %" PRIu64 " tensors, which cannot fit in the %zu bytes after the header",
                    *n_kv, *n_tensors, rest);
    return 0;
}

static gguf_ctx *open_common(const uint8_t *b, size_t n, char *err, size_t errsz) {
    if (err && errsz) err[0] = 0;
    gguf_ctx *g = calloc(1, sizeof *g);
    parser p = {g, b, n, 0, err, errsz};
    if (!g) { fail(&p, "out of memory"); return NULL; }
    g->base = b;
    g->size = n;
    uint64_t nt, nkv;
    if (parse_header(&p, &nt, &nkv)) goto bad;
    /* Counts are bounded by the file size here, so these products cannot overflow. */
    if ((nkv && !(g->kv = calloc((size_t)nkv, sizeof *g->kv))) ||
        (nt && !(g->tensors = calloc((size_t)nt, sizeof *g->tensors))) ||
        ht_init(&g->kv_ht, (size_t)nkv) || ht_init(&g->t_ht, (size_t)nt)) {
        fail(&p, "out of memory for %" PRIu64 " keys and %" PRIu64 " tensors", nkv, nt);
        goto bad;
    }
    /* n_kv / n_tensors grow as entries are parsed, so close() frees exactly those. */
    for (uint64_t i = 0; i < nkv; i++) {
        g->n_kv = (int64_t)i + 1;
        if (parse_kv(&p, (int64_t)i)) goto bad;
    }
    if (read_alignment(&p)) goto bad;
    for (uint64_t i = 0; i < nt; i++) {
        g->n_tensors = (int64_t)i + 1;
        if (parse_tensor(&p, (int64_t)i)) goto bad;
    }
    if (layout(&p)) goto bad;
    return g;
bad:
    if (err && errsz && !err[0]) snprintf(err, errsz, "invalid GGUF file");
    gguf_close(g);
    return NULL;
}

gguf_ctx *gguf_open_mem(const void *data, size_t size, char *err, size_t errsz) {
    if (!data && size) {
        if (err && errsz) snprintf(err, errsz, "NULL buffer");
        return NULL;
    }
    static const uint8_t empty[1];
    return open_common(data ? data : empty, size, err, errsz);
}

gguf_ctx *gguf_open(const char *path, char *err, size_t errsz) {
    char msg[1024];
    struct stat st;
    if (err && errsz) err[0] = 0;
    if (!path) {
        if (err && errsz) snprintf(err, errsz, "NULL path");
        return NULL;
    }
    /* Only regular files: look before opening (open() blocks on a FIFO, and opening a device
     * can have effects), and open without blocking in case the file changed since. */
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode)) {
        if (err && errsz) snprintf(err, errsz, "%s: not a regular file", path);
        return NULL;
    }
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (err && errsz) snprintf(err, errsz, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    const char *why = NULL;
    if (fstat(fd, &st)) why = strerror(errno);
    else if (!S_ISREG(st.st_mode)) why = "not a regular file";
    else if (st.st_size == 0) why = "file is empty";
    else if ((uint64_t)st.st_size > SIZE_MAX) why = "file is too large to map";
    if (why) {
        if (err && errsz) snprintf(err, errsz, "%s: %s", path, why);
        close(fd);
        return NULL;
    }
    size_t size = (size_t)st.st_size;
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int mmap_errno = errno;
    close(fd);  /* the mapping keeps the file alive */
    if (m == MAP_FAILED) {
        if (err && errsz) snprintf(err, errsz, "%s: mmap failed: %s", path, strerror(mmap_errno));
        return NULL;
    }
    gguf_ctx *g = open_common(m, size, msg, sizeof msg);
    if (!g) {
        if (err && errsz) snprintf(err, errsz, "%s: %s", path, msg);
        munmap(m, size);
        return NULL;
    }
    g->owns_map = 1;
    return g;
}

void gguf_close(gguf_ctx *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_kv; i++) {
        free(g->kv[i].key);
        free(g->kv[i].str_off);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) free((void *)g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    free(g->kv_ht.slot);
    free(g->t_ht.slot);
    if (g->owns_map) munmap((void *)g->base, g->size);
    free(g);
}

/* ------------------------------------------------------------------------------------ */
/* Reader: getters                                                                       */

uint32_t gguf_version(const gguf_ctx *g) { return g ? g->version : 0; }
size_t gguf_alignment(const gguf_ctx *g) { return g ? g->alignment : 0; }
size_t gguf_file_size(const gguf_ctx *g) { return g ? g->size : 0; }
size_t gguf_data_offset(const gguf_ctx *g) { return g ? g->data_off : 0; }
const void *gguf_base(const gguf_ctx *g) { return g ? g->base : NULL; }
int64_t gguf_n_kv(const gguf_ctx *g) { return g ? g->n_kv : 0; }

const char *gguf_kv_key(const gguf_ctx *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? g->kv[i].key : NULL;
}

int gguf_kv_raw(const gguf_ctx *g, int64_t i, const void **val, size_t *n) {
    if (!g || i < 0 || i >= g->n_kv) return -1;
    *val = g->base + g->kv[i].raw_off;
    *n = g->kv[i].raw_len;
    return 0;
}

int gguf_kv_type(const gguf_ctx *g, int64_t i) {
    return g && i >= 0 && i < g->n_kv ? (int)g->kv[i].type : -1;
}

int64_t gguf_find_key(const gguf_ctx *g, const char *key) {
    if (!g || !key) return -1;
    return ht_find(g, &g->kv_ht, kv_name, key, -1);
}

static const struct gguf_kv *lookup(const gguf_ctx *g, const char *key) {
    int64_t i = gguf_find_key(g, key);
    return i < 0 ? NULL : &g->kv[i];
}

/* Decodes an integer or bool scalar; -2 for other types. u64 values above INT64_MAX are
 * reported through *big (so get_bool/get_float can still use them). */
static int scalar_int(const gguf_ctx *g, const struct gguf_kv *kv, int64_t *out, uint64_t *big) {
    const uint8_t *q = g->base + kv->off;
    *big = 0;
    switch (kv->type) {
    case GGUF_U8: case GGUF_BOOL: *out = q[0]; return 0;
    case GGUF_I8: *out = (int8_t)q[0]; return 0;
    case GGUF_U16: *out = le16(q); return 0;
    case GGUF_I16: *out = (int16_t)le16(q); return 0;
    case GGUF_U32: *out = le32(q); return 0;
    case GGUF_I32: *out = (int32_t)le32(q); return 0;
    case GGUF_I64: *out = (int64_t)le64(q); return 0;
    case GGUF_U64:
        if (le64(q) > INT64_MAX) { *big = le64(q); return -2; }
        *out = (int64_t)le64(q);
        return 0;
    default: return -2;
    }
}

int gguf_get_int(const gguf_ctx *g, const char *key, int64_t *out) {
    const struct gguf_kv *kv = lookup(g, key);
    int64_t v;
    uint64_t big;
    if (!kv) return -1;
    if (scalar_int(g, kv, &v, &big)) return -2;
    if (out) *out = v;
    return 0;
}

int gguf_get_float(const gguf_ctx *g, const char *key, double *out) {
    const struct gguf_kv *kv = lookup(g, key);
    int64_t v;
    uint64_t big;
    double d;
    if (!kv) return -1;
    if (kv->type == GGUF_F32) {
        uint32_t bits = le32(g->base + kv->off);
        float f;
        memcpy(&f, &bits, 4);
        d = f;
    } else if (kv->type == GGUF_F64) {
        uint64_t bits = le64(g->base + kv->off);
        memcpy(&d, &bits, 8);
    } else if (!scalar_int(g, kv, &v, &big)) {
        d = (double)v;
    } else if (big) {
        d = (double)big;
    } else {
        return -2;
    }
    if (out) *out = d;
    return 0;
}

int gguf_get_bool(const gguf_ctx *g, const char *key, int *out) {
    const struct gguf_kv *kv = lookup(g, key);
    int64_t v;
    uint64_t big;
    if (!kv) return -1;
    if (scalar_int(g, kv, &v, &big) && !big) return -2;
    if (out) *out = big || v != 0;
    return 0;
}

int gguf_get_str(const gguf_ctx *g, const char *key, const char **s, size_t *len) {
    const struct gguf_kv *kv = lookup(g, key);
    if (!kv) return -1;
    if (kv->type != GGUF_STRING) return -2;
    if (s) *s = (const char *)g->base + kv->off;
    if (len) *len = (size_t)kv->n;
    return 0;
}

int gguf_get_arr(const gguf_ctx *g, const char *key, int *elem_type, uint64_t *n, const void **data) {
    const struct gguf_kv *kv = lookup(g, key);
    if (!kv) return -1;
    if (kv->type != GGUF_ARRAY) return -2;
    if (elem_type) *elem_type = (int)kv->elem_type;
    if (n) *n = kv->n;
    if (data) *data = vtype_size(kv->elem_type) ? g->base + kv->off : NULL;
    return 0;
}

int gguf_get_arr_str(const gguf_ctx *g, const char *key, uint64_t i, const char **s, size_t *len) {
    const struct gguf_kv *kv = lookup(g, key);
    if (!kv) return -1;
    if (kv->type != GGUF_ARRAY || kv->elem_type != GGUF_STRING) return -2;
    if (i >= kv->n) return -3;
    const uint8_t *q = g->base + kv->str_off[i];
    if (s) *s = (const char *)q + 8;
    if (len) *len = (size_t)le64(q);
    return 0;
}

int64_t gguf_n_tensors(const gguf_ctx *g) { return g ? g->n_tensors : 0; }

const gguf_tensor *gguf_tensor_at(const gguf_ctx *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name) {
    if (!g || !name) return NULL;
    int64_t i = ht_find(g, &g->t_ht, t_name, name, -1);
    return i < 0 ? NULL : &g->tensors[i];
}

/* ------------------------------------------------------------------------------------ */
/* Writer                                                                                */

/* Growable byte buffer; an allocation failure sets `bad` and later writes are dropped. */
typedef struct { uint8_t *p; size_t n, cap; int bad; } wbuf;

static void wb_put(wbuf *b, const void *src, size_t n) {
    if (b->bad || !n) return;
    if (n > b->cap - b->n) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->n < n) {
            if (cap > SIZE_MAX / 2) { b->bad = 1; return; }
            cap *= 2;
        }
        uint8_t *q = realloc(b->p, cap);
        if (!q) { b->bad = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    if (src) memcpy(b->p + b->n, src, n);
    else memset(b->p + b->n, 0, n);  /* NULL source = zero fill (padding) */
    b->n += n;
}

static void wb_le(wbuf *b, uint64_t v, size_t bytes) {
    uint8_t q[8];
    for (size_t i = 0; i < bytes; i++) q[i] = (uint8_t)(v >> (8 * i));
    wb_put(b, q, bytes);
}

static void wb_str(wbuf *b, const char *s, size_t len) {
    wb_le(b, len, 8);
    wb_put(b, s, len);
}

struct wkv { char *key; wbuf val; };  /* val = u32 type + encoded value */
struct wtensor { char *name; uint32_t type, n_dims; int64_t ne[4]; void *data; size_t size; };

struct gguf_writer {
    struct wkv *kv;
    size_t n_kv, cap_kv;
    struct wtensor *t;
    size_t n_t, cap_t;
    size_t alignment;
};

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) { free(w->kv[i].key); free(w->kv[i].val.p); }
    for (size_t i = 0; i < w->n_t; i++) { free(w->t[i].name); free(w->t[i].data); }
    free(w->kv);
    free(w->t);
    free(w);
}

/* Grows an array of `elem` bytes so one more item fits. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    if (nc > SIZE_MAX / elem) return -1;
    void *q = realloc(*arr, nc * elem);
    if (!q) return -1;
    *arr = q;
    *cap = nc;
    return 0;
}

/* Stores an encoded value under key (replacing an earlier one); takes ownership of val. */
static int set_val(gguf_writer *w, const char *key, wbuf *val) {
    size_t klen = key ? strlen(key) : 0;
    if (!w || val->bad || klen == 0 || klen > GGUF_MAX_KEY) { free(val->p); return -1; }
    if (!strcmp(key, "general.alignment")) {
        /* The writer lays the file out with this value, so it must be a valid u32. */
        uint32_t a = val->n == 8 && le32(val->p) == GGUF_U32 ? le32(val->p + 4) : 0;
        if (a < GGUF_MIN_ALIGNMENT || a > GGUF_MAX_ALIGNMENT || (a & (a - 1))) {
            free(val->p);
            return -1;
        }
        w->alignment = a;
    }
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) {
            free(w->kv[i].val.p);
            w->kv[i].val = *val;
            return 0;
        }
    char *k = strdup(key);
    if (!k || grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof *w->kv)) {
        free(k);
        free(val->p);
        return -1;
    }
    w->kv[w->n_kv++] = (struct wkv){k, *val};
    return 0;
}

int gguf_writer_set_scalar(gguf_writer *w, const char *key, int type, const void *v) {
    size_t es = type >= 0 ? vtype_size((uint32_t)type) : 0;
    if (!es || !v) return -1;
    uint64_t x = 0;
    switch (es) {  /* host value of the matching C type -> little-endian bytes */
    case 1: { uint8_t t; memcpy(&t, v, 1); x = t; break; }
    case 2: { uint16_t t; memcpy(&t, v, 2); x = t; break; }
    case 4: { uint32_t t; memcpy(&t, v, 4); x = t; break; }
    default: memcpy(&x, v, 8); break;
    }
    if (type == GGUF_BOOL && x > 1) return -1;
    wbuf b = {0};
    wb_le(&b, (uint32_t)type, 4);
    wb_le(&b, x, es);
    return set_val(w, key, &b);
}

int gguf_writer_set_raw(gguf_writer *w, const char *key, const void *val, size_t n) {
    if (!val || n < 4) return -1;
    wbuf b = {0};
    wb_put(&b, val, n);
    return set_val(w, key, &b);
}

int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) {
    return gguf_writer_set_scalar(w, key, GGUF_U32, &v);
}

int gguf_writer_set_f32(gguf_writer *w, const char *key, float v) {
    return gguf_writer_set_scalar(w, key, GGUF_F32, &v);
}

int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    if (!v) return -1;
    wbuf b = {0};
    wb_le(&b, GGUF_STRING, 4);
    wb_str(&b, v, strlen(v));
    return set_val(w, key, &b);
}

/* data: n packed little-endian elements of a fixed-size type. */
int gguf_writer_set_arr(gguf_writer *w, const char *key, int elem_type, const void *data, uint64_t n) {
    size_t es = elem_type >= 0 ? vtype_size((uint32_t)elem_type) : 0;
    if (!es || (n && !data) || n > SIZE_MAX / es) return -1;
    if (elem_type == GGUF_BOOL)
        for (uint64_t i = 0; i < n; i++)
            if (((const uint8_t *)data)[i] > 1) return -1;
    wbuf b = {0};
    wb_le(&b, GGUF_ARRAY, 4);
    wb_le(&b, (uint32_t)elem_type, 4);
    wb_le(&b, n, 8);
    wb_put(&b, data, (size_t)(n * es));
    return set_val(w, key, &b);
}

int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    if (n && !v) return -1;
    wbuf b = {0};
    wb_le(&b, GGUF_ARRAY, 4);
    wb_le(&b, GGUF_STRING, 4);
    wb_le(&b, n, 8);
    for (uint64_t i = 0; i < n; i++) {
        if (!v[i]) { free(b.p); return -1; }
        wb_str(&b, v[i], strlen(v[i]));
    }
    return set_val(w, key, &b);
}

/* Copies the tensor (copy set; data NULL means zeros) or records its shape only. size must
 * equal the size implied by type/ne. */
static int add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                      const int64_t *ne, const void *data, size_t size, int copy) {
    size_t nlen = name ? strlen(name) : 0, want;
    if (!w || nlen == 0 || nlen > GGUF_MAX_NAME || n_dims < 1 || n_dims > 4 || !ne) return -1;
    struct wtensor t = {0};
    t.type = type;
    t.n_dims = n_dims;
    for (uint32_t d = 0; d < 4; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 0) return -1;
    }
    if (tensor_nbytes(type, t.ne, &want) || want != size) return -1;
    for (size_t i = 0; i < w->n_t; i++)
        if (!strcmp(w->t[i].name, name)) return -1;
    t.size = size;
    t.name = strdup(name);
    t.data = size && copy ? malloc(size) : NULL;
    if (!t.name || (size && copy && !t.data) || grow((void **)&w->t, &w->cap_t, w->n_t, sizeof *w->t)) {
        free(t.name);
        free(t.data);
        return -1;
    }
    if (size && copy) {
        if (data) memcpy(t.data, data, size);
        else memset(t.data, 0, size);
    }
    w->t[w->n_t++] = t;
    return 0;
}

int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const int64_t *ne, const void *data, size_t size) {
    return add_tensor(w, name, type, n_dims, ne, data, size, 1);
}

int gguf_writer_add_tensor_info(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                const int64_t *ne) {
    size_t size;
    int64_t full[4] = {1, 1, 1, 1};
    if (!ne || n_dims < 1 || n_dims > 4) return -1;
    for (uint32_t d = 0; d < n_dims; d++) full[d] = ne[d];
    if (tensor_nbytes(type, full, &size)) return -1;
    return add_tensor(w, name, type, n_dims, ne, NULL, size, 0);
}

size_t gguf_writer_alignment(const gguf_writer *w) { return w ? w->alignment : 0; }

/* Everything before the data section: header, key/values, tensor infos, padding. */
static void write_header(const gguf_writer *w, wbuf *b) {
    size_t a = w->alignment;
    wb_le(b, GGUF_MAGIC, 4);
    wb_le(b, 3, 4);
    wb_le(b, w->n_t, 8);
    wb_le(b, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        wb_str(b, w->kv[i].key, strlen(w->kv[i].key));
        wb_put(b, w->kv[i].val.p, w->kv[i].val.n);
    }
    uint64_t off = 0;  /* next tensor's offset in the data section */
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        wb_str(b, t->name, strlen(t->name));
        wb_le(b, t->n_dims, 4);
        for (uint32_t d = 0; d < t->n_dims; d++) wb_le(b, (uint64_t)t->ne[d], 8);
        wb_le(b, em_type_to_gguf(t->type), 4);
        wb_le(b, off, 8);
        if (t->size > UINT64_MAX - a || off > UINT64_MAX - a - t->size) { b->bad = 1; break; }
        off = (off + t->size + a - 1) / a * a;
    }
    wb_put(b, NULL, (a - b->n % a) % a);
}

int gguf_writer_header(gguf_writer *w, void **out, size_t *size) {
    if (!w || !out || !size) return -1;
    wbuf b = {0};
    write_header(w, &b);
    if (b.bad) { free(b.p); return -1; }
    *out = b.p;
    *size = b.n;
    return 0;
}

int gguf_writer_finish(gguf_writer *w, void **out, size_t *size) {
    if (!w || !out || !size) return -1;
    for (size_t i = 0; i < w->n_t; i++)
        if (w->t[i].size && !w->t[i].data) return -1;  /* shape-only tensors: use _header */
    wbuf b = {0};
    size_t a = w->alignment;
    write_header(w, &b);
    size_t data_start = b.n;
    for (size_t i = 0; i < w->n_t; i++) {
        wb_put(&b, NULL, (a - (b.n - data_start) % a) % a);
        wb_put(&b, w->t[i].data, w->t[i].size);
    }
    if (b.bad) { free(b.p); return -1; }
    *out = b.p;
    *size = b.n;
    return 0;
}
