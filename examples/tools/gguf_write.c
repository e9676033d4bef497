/* GGUF v3 writer: metadata is serialized into one growing buffer as it is
 * set; tensors are recorded (name, shape, type, source) and their bytes
 * produced only by kf_gguf_write, so a converter never holds a second copy
 * of the weights. Every size is computed in checked 64-bit arithmetic. */
#include "gguf_write.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_TENSOR_DIMS = 4, CHUNK_ELEMENTS = 4096 };

static const char ALIGNMENT_KEY[] = "general.alignment";

typedef struct byte_buffer {
    unsigned char *data;
    size_t len, cap;
} byte_buffer;

typedef struct tensor_info {
    char *name;
    size_t name_len;
    int n_dims;
    uint64_t ne[MAX_TENSOR_DIMS];
    enum kf_ggml_type type;
    const float *data;
    uint64_t n_elements;
    uint64_t n_bytes;
    uint64_t offset; /* into the data blob, aligned */
} tensor_info;

struct kf_gguf_writer {
    uint32_t alignment;
    bool alignment_stored; /* the caller set general.alignment */
    byte_buffer kv;        /* the serialized key-value pairs */
    uint64_t n_kv;
    char **keys;
    size_t n_keys, keys_cap;
    tensor_info *tensors;
    size_t n_tensors, tensors_cap;
    uint64_t blob_size; /* data blob bytes, last tensor padded */
};

/* ---- growing buffers ---- */

static int reserve(byte_buffer *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return KF_GGUF_ENOMEM;
    const size_t need = b->len + extra;
    if (need <= b->cap)
        return KF_GGUF_OK;
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    unsigned char *bigger = realloc(b->data, cap);
    if (!bigger)
        return KF_GGUF_ENOMEM;
    b->data = bigger;
    b->cap = cap;
    return KF_GGUF_OK;
}

static void put_bytes(byte_buffer *b, const void *src, size_t n)
{
    if (n)
        memcpy(b->data + b->len, src, n);
    b->len += n;
}

static void put_u32(byte_buffer *b, uint32_t v)
{
    const unsigned char le[4] = {(unsigned char)v, (unsigned char)(v >> 8),
                                 (unsigned char)(v >> 16), (unsigned char)(v >> 24)};
    put_bytes(b, le, sizeof le);
}

static void put_u64(byte_buffer *b, uint64_t v)
{
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

static void put_f32(byte_buffer *b, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_u32(b, bits);
}

static void put_string(byte_buffer *b, const char *s, size_t len)
{
    put_u64(b, (uint64_t)len);
    put_bytes(b, s, len);
}

/* ---- writer ---- */

int kf_gguf_writer_create(kf_gguf_writer **out, uint32_t alignment)
{
    *out = NULL;
    if (alignment == 0 || alignment > 4096 || (alignment & (alignment - 1)))
        return KF_GGUF_EINVAL;
    kf_gguf_writer *w = calloc(1, sizeof *w);
    if (!w)
        return KF_GGUF_ENOMEM;
    w->alignment = alignment;
    *out = w;
    return KF_GGUF_OK;
}

void kf_gguf_writer_destroy(kf_gguf_writer **pw)
{
    if (!pw || !*pw)
        return;
    kf_gguf_writer *w = *pw;
    for (size_t i = 0; i < w->n_keys; i++)
        free(w->keys[i]);
    free(w->keys);
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->tensors);
    free(w->kv.data);
    free(w);
    *pw = NULL;
}

static char *copy_string(const char *s, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, s, len);
        copy[len] = '\0';
    }
    return copy;
}

/* Records key as used; KF_GGUF_EINVAL when it already is. */
static int claim_key(kf_gguf_writer *w, const char *key)
{
    if (!key || !key[0])
        return KF_GGUF_EINVAL;
    for (size_t i = 0; i < w->n_keys; i++)
        if (!strcmp(w->keys[i], key))
            return KF_GGUF_EINVAL;
    if (w->n_keys == w->keys_cap) {
        const size_t cap = w->keys_cap ? w->keys_cap * 2 : 32;
        char **bigger = realloc(w->keys, cap * sizeof *bigger);
        if (!bigger)
            return KF_GGUF_ENOMEM;
        w->keys = bigger;
        w->keys_cap = cap;
    }
    char *copy = copy_string(key, strlen(key));
    if (!copy)
        return KF_GGUF_ENOMEM;
    w->keys[w->n_keys++] = copy;
    return KF_GGUF_OK;
}

/* Claims key and reserves its serialized bytes plus value_bytes; on success
 * the key and type are already in the buffer. */
static int begin_value(kf_gguf_writer *w, const char *key, enum kf_gguf_type type,
                       size_t value_bytes)
{
    if (!key)
        return KF_GGUF_EINVAL;
    const size_t key_len = strlen(key);
    if (key_len > SIZE_MAX - 12 || value_bytes > SIZE_MAX - 12 - key_len)
        return KF_GGUF_ENOMEM;
    int rc = reserve(&w->kv, 12 + key_len + value_bytes);
    if (rc == KF_GGUF_OK)
        rc = claim_key(w, key);
    if (rc != KF_GGUF_OK)
        return rc;
    put_string(&w->kv, key, key_len);
    put_u32(&w->kv, (uint32_t)type);
    w->n_kv++;
    return KF_GGUF_OK;
}

int kf_gguf_set_u32(kf_gguf_writer *w, const char *key, uint32_t value)
{
    /* The alignment is the writer's: the key may only repeat it. */
    const bool is_alignment = key && !strcmp(key, ALIGNMENT_KEY);
    if (is_alignment && value != w->alignment)
        return KF_GGUF_EINVAL;
    const int rc = begin_value(w, key, KF_GGUF_UINT32, 4);
    if (rc != KF_GGUF_OK)
        return rc;
    put_u32(&w->kv, value);
    if (is_alignment)
        w->alignment_stored = true;
    return KF_GGUF_OK;
}

int kf_gguf_set_f32(kf_gguf_writer *w, const char *key, float value)
{
    const int rc = begin_value(w, key, KF_GGUF_FLOAT32, 4);
    if (rc == KF_GGUF_OK)
        put_f32(&w->kv, value);
    return rc;
}

int kf_gguf_set_bool(kf_gguf_writer *w, const char *key, bool value)
{
    const int rc = begin_value(w, key, KF_GGUF_BOOL, 1);
    if (rc == KF_GGUF_OK) {
        const unsigned char byte = value ? 1 : 0;
        put_bytes(&w->kv, &byte, 1);
    }
    return rc;
}

int kf_gguf_set_string(kf_gguf_writer *w, const char *key, const char *value, size_t len)
{
    if (!value || len > SIZE_MAX - 8)
        return KF_GGUF_EINVAL;
    const int rc = begin_value(w, key, KF_GGUF_STRING, 8 + len);
    if (rc == KF_GGUF_OK)
        put_string(&w->kv, value, len);
    return rc;
}

/* Array header (element type, count) after the key; element_bytes is the
 * total size of the elements. */
static int begin_array(kf_gguf_writer *w, const char *key, enum kf_gguf_type element_type,
                       uint64_t n, size_t element_bytes)
{
    if (element_bytes > SIZE_MAX - 12)
        return KF_GGUF_ENOMEM;
    const int rc = begin_value(w, key, KF_GGUF_ARRAY, 12 + element_bytes);
    if (rc != KF_GGUF_OK)
        return rc;
    put_u32(&w->kv, (uint32_t)element_type);
    put_u64(&w->kv, n);
    return KF_GGUF_OK;
}

int kf_gguf_set_string_array(kf_gguf_writer *w, const char *key, const char *const *strings,
                             const size_t *lengths, uint64_t n)
{
    if (n && (!strings || !lengths))
        return KF_GGUF_EINVAL;
    if (n > SIZE_MAX / 8)
        return KF_GGUF_ENOMEM;
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (!strings[i] || lengths[i] > SIZE_MAX - 8 || total > SIZE_MAX - 8 - lengths[i])
            return strings[i] ? KF_GGUF_ENOMEM : KF_GGUF_EINVAL;
        total += 8 + lengths[i];
    }
    const int rc = begin_array(w, key, KF_GGUF_STRING, n, total);
    if (rc != KF_GGUF_OK)
        return rc;
    for (uint64_t i = 0; i < n; i++)
        put_string(&w->kv, strings[i], lengths[i]);
    return KF_GGUF_OK;
}

int kf_gguf_set_f32_array(kf_gguf_writer *w, const char *key, const float *values, uint64_t n)
{
    if (n && !values)
        return KF_GGUF_EINVAL;
    if (n > SIZE_MAX / 4)
        return KF_GGUF_ENOMEM;
    const int rc = begin_array(w, key, KF_GGUF_FLOAT32, n, (size_t)n * 4);
    if (rc != KF_GGUF_OK)
        return rc;
    for (uint64_t i = 0; i < n; i++)
        put_f32(&w->kv, values[i]);
    return KF_GGUF_OK;
}

int kf_gguf_set_i32_array(kf_gguf_writer *w, const char *key, const int32_t *values,
                          uint64_t n)
{
    if (n && !values)
        return KF_GGUF_EINVAL;
    if (n > SIZE_MAX / 4)
        return KF_GGUF_ENOMEM;
    const int rc = begin_array(w, key, KF_GGUF_INT32, n, (size_t)n * 4);
    if (rc != KF_GGUF_OK)
        return rc;
    for (uint64_t i = 0; i < n; i++)
        put_u32(&w->kv, (uint32_t)values[i]);
    return KF_GGUF_OK;
}

/* ---- tensors ---- */

static uint64_t padding(uint64_t offset, uint32_t alignment)
{
    return (alignment - offset % alignment) % alignment;
}

int kf_gguf_add_tensor(kf_gguf_writer *w, const char *name, int n_dims, const uint64_t *ne,
                       enum kf_ggml_type type, const float *data)
{
    if (!name || !name[0] || !ne || !data || n_dims < 1 || n_dims > MAX_TENSOR_DIMS ||
        (type != KF_GGML_F32 && type != KF_GGML_F16))
        return KF_GGUF_EINVAL;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].name, name))
            return KF_GGUF_EINVAL;
    /* Extents are int64 in the format; keep the element count within what
     * a byte count of 64 bits holds. */
    const uint64_t element_bytes = type == KF_GGML_F32 ? 4 : 2;
    uint64_t n_elements = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] == 0 || ne[d] > (uint64_t)INT64_MAX / element_bytes ||
            n_elements > (uint64_t)INT64_MAX / element_bytes / ne[d])
            return KF_GGUF_EINVAL;
        n_elements *= ne[d];
    }
    const uint64_t n_bytes = n_elements * element_bytes;
    const uint64_t offset = w->blob_size;
    const uint64_t padded = n_bytes + padding(n_bytes, w->alignment);
    if (offset > (uint64_t)INT64_MAX - padded)
        return KF_GGUF_EINVAL;
    if (w->n_tensors == w->tensors_cap) {
        const size_t cap = w->tensors_cap ? w->tensors_cap * 2 : 64;
        tensor_info *bigger = realloc(w->tensors, cap * sizeof *bigger);
        if (!bigger)
            return KF_GGUF_ENOMEM;
        w->tensors = bigger;
        w->tensors_cap = cap;
    }
    tensor_info *t = &w->tensors[w->n_tensors];
    *t = (tensor_info){.name_len = strlen(name), .n_dims = n_dims, .type = type,
                       .data = data, .n_elements = n_elements, .n_bytes = n_bytes,
                       .offset = offset};
    t->name = copy_string(name, t->name_len);
    if (!t->name)
        return KF_GGUF_ENOMEM;
    for (int d = 0; d < n_dims; d++)
        t->ne[d] = ne[d];
    w->n_tensors++;
    w->blob_size = offset + padded;
    return KF_GGUF_OK;
}

/* ---- the file ---- */

/* Bytes of the alignment pair that kf_gguf_write appends when the caller
 * did not store it. */
static size_t alignment_pair_bytes(void)
{
    return 8 + (sizeof ALIGNMENT_KEY - 1) + 4 + 4;
}

static uint64_t header_bytes(const kf_gguf_writer *w)
{
    uint64_t n = 4 + 4 + 8 + 8 + (uint64_t)w->kv.len;
    if (!w->alignment_stored)
        n += alignment_pair_bytes();
    for (size_t i = 0; i < w->n_tensors; i++)
        n += 8 + w->tensors[i].name_len + 4 + 8 * (uint64_t)w->tensors[i].n_dims + 4 + 8;
    return n;
}

uint64_t kf_gguf_file_size(const kf_gguf_writer *w)
{
    const uint64_t header = header_bytes(w);
    return header + padding(header, w->alignment) + w->blob_size;
}

static int write_all(FILE *f, const void *data, size_t n)
{
    if (n && fwrite(data, 1, n, f) != n) {
        if (!errno)
            errno = EIO;
        return KF_GGUF_EIO;
    }
    return KF_GGUF_OK;
}

static int write_zeros(FILE *f, uint64_t n)
{
    static const unsigned char zeros[64];
    while (n) {
        const size_t chunk = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (write_all(f, zeros, chunk))
            return KF_GGUF_EIO;
        n -= chunk;
    }
    return KF_GGUF_OK;
}

static int write_tensor_data(FILE *f, const tensor_info *t, unsigned char *chunk)
{
    for (uint64_t done = 0; done < t->n_elements;) {
        const uint64_t left = t->n_elements - done;
        const size_t n = left < CHUNK_ELEMENTS ? (size_t)left : CHUNK_ELEMENTS;
        byte_buffer b = {chunk, 0, (size_t)CHUNK_ELEMENTS * 4};
        for (size_t i = 0; i < n; i++) {
            const float v = t->data[done + i];
            if (t->type == KF_GGML_F32) {
                put_f32(&b, v);
            } else {
                const uint16_t h = kf_f32_to_f16(v);
                const unsigned char le[2] = {(unsigned char)h, (unsigned char)(h >> 8)};
                put_bytes(&b, le, 2);
            }
        }
        if (write_all(f, b.data, b.len))
            return KF_GGUF_EIO;
        done += n;
    }
    return KF_GGUF_OK;
}

int kf_gguf_write(const kf_gguf_writer *w, FILE *f)
{
    byte_buffer head = {0};
    const uint64_t n_kv = w->n_kv + (w->alignment_stored ? 0 : 1);
    size_t infos = 0;
    for (size_t i = 0; i < w->n_tensors; i++)
        infos += 8 + w->tensors[i].name_len + 4 + 8 * (size_t)w->tensors[i].n_dims + 4 + 8;
    if (reserve(&head, 24 + alignment_pair_bytes() + infos))
        return KF_GGUF_ENOMEM;
    put_bytes(&head, "GGUF", 4);
    put_u32(&head, KF_GGUF_VERSION);
    put_u64(&head, (uint64_t)w->n_tensors);
    put_u64(&head, n_kv);
    errno = 0;
    int rc = write_all(f, head.data, head.len);
    if (rc == KF_GGUF_OK)
        rc = write_all(f, w->kv.data, w->kv.len);

    head.len = 0;
    if (!w->alignment_stored) {
        put_string(&head, ALIGNMENT_KEY, sizeof ALIGNMENT_KEY - 1);
        put_u32(&head, KF_GGUF_UINT32);
        put_u32(&head, w->alignment);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const tensor_info *t = &w->tensors[i];
        put_string(&head, t->name, t->name_len);
        put_u32(&head, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++)
            put_u64(&head, t->ne[d]);
        put_u32(&head, (uint32_t)t->type);
        put_u64(&head, t->offset);
    }
    if (rc == KF_GGUF_OK)
        rc = write_all(f, head.data, head.len);
    free(head.data);
    const uint64_t header = header_bytes(w);
    if (rc == KF_GGUF_OK)
        rc = write_zeros(f, padding(header, w->alignment));

    unsigned char *chunk = rc == KF_GGUF_OK ? malloc((size_t)CHUNK_ELEMENTS * 4) : NULL;
    if (rc == KF_GGUF_OK && !chunk)
        rc = KF_GGUF_ENOMEM;
    for (size_t i = 0; rc == KF_GGUF_OK && i < w->n_tensors; i++) {
        rc = write_tensor_data(f, &w->tensors[i], chunk);
        if (rc == KF_GGUF_OK)
            rc = write_zeros(f, padding(w->tensors[i].n_bytes, w->alignment));
    }
    free(chunk);
    return rc;
}

/* ---- fp16 ---- */

uint16_t kf_f32_to_f16(float x)
{
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    const uint16_t sign = (uint16_t)((bits >> 16) & 0x8000u);
    const uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) /* NaN: keep it quiet and the payload's top bits */
        return (uint16_t)(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu));
    /* 65520 and above round to infinity (65504 is the largest half). */
    if (magnitude >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    if (magnitude >= 0x38800000u) { /* a normal half: 2^-14 and above */
        /* Round the 13 dropped bits to nearest even; a carry moves into the
         * exponent, which is right. Rebias 127 -> 15. */
        const uint32_t rounded = magnitude + 0xfffu + ((magnitude >> 13) & 1u);
        return (uint16_t)(sign | ((rounded - (112u << 23)) >> 13));
    }
    /* Subnormal or zero: adding 0.5 puts the value's bits at a unit of
     * 2^-24, the half subnormal step, and the FPU rounds to nearest even. */
    float small;
    memcpy(&small, &magnitude, sizeof small);
    small += 0.5f;
    uint32_t small_bits;
    memcpy(&small_bits, &small, sizeof small_bits);
    return (uint16_t)(sign | (small_bits - 0x3f000000u));
}
