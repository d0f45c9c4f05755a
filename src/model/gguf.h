/* gguf.h: standalone GGUF v2/v3 reader (libc only; fuzzable alone).
 *
 * File layout (little-endian):
 *   u32 magic "GGUF", u32 version (2 or 3), u64 n_tensors, u64 n_kv,
 *   n_kv x { string key, u32 type, value }         string = u64 len + bytes (no NUL)
 *   n_tensors x { string name, u32 n_dims (1..4), u64 ne[n_dims], u32 ggml_type, u64 offset }
 *   zero padding to `general.alignment` (default 32), then the data section; each tensor's
 *   offset is relative to the data section and a multiple of the alignment.
 * Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string, 9 array
 * (u32 elem type, u64 count, elements), 10 u64, 11 i64, 12 f64.
 * Tensor types are ggml's ids, plus ember's own weight formats (INT2..INT8, BFP3..BFP7) at
 * file ids 4096.. (EM_GGUF_SEED_BASE, quant.h): the reader maps those to ember's type ids
 * (64..) and the writer back, so everything above this file sees one numbering.
 *
 * Every count, length, offset and size is checked with overflow-safe arithmetic against
 * the file size before use; a bad file gives NULL and a message, never a crash. After a
 * successful open, every tensor's [data, data+size) lies inside the mapping. */
#ifndef EMBER_GGUF_H
#define EMBER_GGUF_H
#include <stddef.h>
#include <stdint.h>

enum gguf_vtype {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
    GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10,
    GGUF_I64 = 11, GGUF_F64 = 12,
};

typedef struct gguf_tensor {
    const char *name;     /* NUL-terminated copy */
    uint32_t n_dims;      /* 1..4 */
    int64_t ne[4];        /* ne[0] innermost (contiguous); unused dims are 1 */
    uint32_t type;        /* ember type id: ggml's, or a seed type mapped from its file id (quant.h) */
    uint64_t offset;      /* relative to the data section */
    size_t size;          /* bytes: nrows * row bytes for the type */
    const void *data;     /* inside the mapping, aligned as the file says */
} gguf_tensor;

typedef struct gguf_ctx gguf_ctx;

/* Opens and validates a file (mmap, read-only). NULL on failure, with a message in err.
 * Reader policy (details in gguf.c): general.alignment must be an integer power of two in
 * [8, 2^30]; key names 1..65535 bytes, tensor names 1..64 bytes, no duplicates; arrays nest
 * at most 8 deep; at most 2^20 keys and 2^20 tensors; overlapping tensor data is rejected. */
gguf_ctx *gguf_open(const char *path, char *err, size_t errsz);
/* Same over a caller-owned buffer that must outlive the context (fuzzing, tests). */
gguf_ctx *gguf_open_mem(const void *data, size_t size, char *err, size_t errsz);
void gguf_close(gguf_ctx *g);  /* NULL is a no-op */

uint32_t gguf_version(const gguf_ctx *g);
size_t gguf_alignment(const gguf_ctx *g);
size_t gguf_file_size(const gguf_ctx *g);
const void *gguf_base(const gguf_ctx *g);  /* start of the mapping */
size_t gguf_data_offset(const gguf_ctx *g); /* start of the data section, from gguf_base */
const char *gguf_vtype_name(int type);     /* "u32", "string", ... or NULL if unknown */

/* Key/value metadata. Lookups return 0 on success, -1 if the key is absent, -2 if its type
 * does not fit the getter. */
int64_t gguf_n_kv(const gguf_ctx *g);
const char *gguf_kv_key(const gguf_ctx *g, int64_t i);   /* NUL-terminated */
int gguf_kv_type(const gguf_ctx *g, int64_t i);          /* enum gguf_vtype */
/* The i-th value as encoded in the file (u32 type + payload), for copying it verbatim. */
int gguf_kv_raw(const gguf_ctx *g, int64_t i, const void **val, size_t *n);
int64_t gguf_find_key(const gguf_ctx *g, const char *key); /* index or -1 */
int gguf_get_int(const gguf_ctx *g, const char *key, int64_t *out);  /* any integer width or bool; u64 > INT64_MAX is -2 */
int gguf_get_float(const gguf_ctx *g, const char *key, double *out); /* f32, f64, or any integer */
int gguf_get_bool(const gguf_ctx *g, const char *key, int *out);     /* bool or integer */
int gguf_get_str(const gguf_ctx *g, const char *key, const char **s, size_t *len); /* not NUL-terminated */
/* Arrays: element type and count. For fixed-size element types *data points at the packed
 * little-endian elements inside the file (unaligned: read with memcpy). Nested arrays give
 * elem type GGUF_ARRAY and *data NULL. */
int gguf_get_arr(const gguf_ctx *g, const char *key, int *elem_type, uint64_t *n, const void **data);
/* i-th string of a string array (O(1): offsets are indexed at open; not NUL-terminated).
 * Returns -3 if i >= the array's count. For string arrays gguf_get_arr gives *data NULL. */
int gguf_get_arr_str(const gguf_ctx *g, const char *key, uint64_t i, const char **s, size_t *len);

/* Tensors. */
int64_t gguf_n_tensors(const gguf_ctx *g);
const gguf_tensor *gguf_tensor_at(const gguf_ctx *g, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_ctx *g, const char *name); /* NULL if absent */

/* ggml type facts (all ggml types, not only those ember computes with). */
const char *gguf_type_name(uint32_t type);              /* "q4_K", ... or NULL if unknown */
int gguf_type_block(uint32_t type, size_t *blck, size_t *bytes); /* 0 ok, -1 unknown/retired type */

/* Writer (tests, tools): builds a GGUF v3 file in memory. */
typedef struct gguf_writer gguf_writer;
gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
int gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
int gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
/* Any fixed-size scalar type (u8..f64, bool); v points at a value of the matching C type
 * (uint8_t for bool, which must be 0 or 1). Setting an existing key replaces its value;
 * general.alignment must be a u32 power of two in [8, 2^30] and is used for the layout. */
int gguf_writer_set_scalar(gguf_writer *w, const char *key, int type, const void *v);
int gguf_writer_set_arr(gguf_writer *w, const char *key, int elem_type, const void *data, uint64_t n);
int gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
/* A value encoded as gguf_kv_raw gives it (u32 type + payload), copied verbatim. */
int gguf_writer_set_raw(gguf_writer *w, const char *key, const void *val, size_t n);
int gguf_writer_add_tensor(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                           const int64_t *ne, const void *data, size_t size);  /* copies data (NULL = zeros); size must match type and ne */
/* Serialises; *out is malloc'ed (caller frees). 0 ok. Fails if a tensor has no data. */
int gguf_writer_finish(gguf_writer *w, void **out, size_t *size);
/* Streaming: declare tensors by shape, then write gguf_writer_header's bytes followed by
 * each tensor's data in the order added, every tensor zero-padded to a multiple of
 * gguf_writer_alignment (the layout llama.cpp writes). */
int gguf_writer_add_tensor_info(gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                                const int64_t *ne);
int gguf_writer_header(gguf_writer *w, void **out, size_t *size);
size_t gguf_writer_alignment(const gguf_writer *w);
#endif
