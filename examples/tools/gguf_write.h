/* A small writer of GGUF version 3 files, the format llama.cpp loads.
 *
 * Layout written (all integers little-endian): the magic "GGUF", uint32
 * version 3, uint64 tensor count, uint64 key-value count; each key-value
 * pair as a string key, a uint32 value type and the value (an array is its
 * element type, a uint64 count and the elements; a string a uint64 length
 * and its bytes, no NUL); each tensor's info as its name, uint32 n_dims,
 * n_dims uint64 extents ne[0] (innermost, contiguous) first, uint32 ggml
 * type and a uint64 offset into the data blob; zero padding up to the
 * alignment; then the blob, every tensor starting at a multiple of the
 * alignment.
 *
 * Usage: kf_gguf_writer_create, the kf_gguf_set_* metadata (in file order)
 * and kf_gguf_add_tensor calls, then kf_gguf_write once. Metadata values are
 * copied; tensor data is only referenced and read during kf_gguf_write. The
 * writer stores "general.alignment" itself when the alignment is not 32 (the
 * format's default); a caller may store it anyway. Not thread-safe. */
#ifndef KF_GGUF_WRITE_H
#define KF_GGUF_WRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define KF_GGUF_VERSION 3u
#define KF_GGUF_DEFAULT_ALIGNMENT 32u

/* GGUF metadata value types (the numbers are the format's). */
enum kf_gguf_type {
    KF_GGUF_UINT32 = 4,
    KF_GGUF_INT32 = 5,
    KF_GGUF_FLOAT32 = 6,
    KF_GGUF_BOOL = 7,
    KF_GGUF_STRING = 8,
    KF_GGUF_ARRAY = 9,
};

/* Tensor element types this writer produces (ggml's numbers). */
enum kf_ggml_type {
    KF_GGML_F32 = 0,
    KF_GGML_F16 = 1,
};

/* Status codes. */
enum {
    KF_GGUF_OK = 0,
    KF_GGUF_ENOMEM = -1, /* an allocation failed */
    KF_GGUF_EINVAL = -2, /* a bad argument: duplicate key or tensor name, zero extent, ... */
    KF_GGUF_EIO = -3,    /* writing failed; errno says why */
};

typedef struct kf_gguf_writer kf_gguf_writer;

/* alignment: a power of two from 1 to 4096 (GGUF readers expect 32). */
int kf_gguf_writer_create(kf_gguf_writer **out, uint32_t alignment);
/* Accepts NULL and a pointer to NULL; sets *w to NULL. */
void kf_gguf_writer_destroy(kf_gguf_writer **w);

/* Metadata. Keys are NUL-terminated; a key given twice is KF_GGUF_EINVAL. */
int kf_gguf_set_u32(kf_gguf_writer *w, const char *key, uint32_t value);
int kf_gguf_set_f32(kf_gguf_writer *w, const char *key, float value);
int kf_gguf_set_bool(kf_gguf_writer *w, const char *key, bool value);
int kf_gguf_set_string(kf_gguf_writer *w, const char *key, const char *value, size_t len);
/* n strings: strings[i] holds lengths[i] bytes. */
int kf_gguf_set_string_array(kf_gguf_writer *w, const char *key, const char *const *strings,
                             const size_t *lengths, uint64_t n);
int kf_gguf_set_f32_array(kf_gguf_writer *w, const char *key, const float *values, uint64_t n);
int kf_gguf_set_i32_array(kf_gguf_writer *w, const char *key, const int32_t *values,
                          uint64_t n);

/* A tensor of n_dims (1..4) extents ne[0] (innermost) .. ne[n_dims-1], whose
 * ne[0] * ... elements are the fp32 values at data, stored as type (F32
 * unchanged, F16 rounded to nearest even). data must stay valid until
 * kf_gguf_write returns. A name used twice is KF_GGUF_EINVAL. */
int kf_gguf_add_tensor(kf_gguf_writer *w, const char *name, int n_dims, const uint64_t *ne,
                       enum kf_ggml_type type, const float *data);

/* Bytes kf_gguf_write will produce. */
uint64_t kf_gguf_file_size(const kf_gguf_writer *w);

/* Writes the whole file to f (positioned at its start). Returns KF_GGUF_OK,
 * KF_GGUF_ENOMEM or KF_GGUF_EIO (errno set); flushing and closing f is the
 * caller's. */
int kf_gguf_write(const kf_gguf_writer *w, FILE *f);

/* IEEE binary16 bits of x, rounded to nearest even; NaN stays NaN (quiet),
 * values beyond the half range become infinities. */
uint16_t kf_f32_to_f16(float x);

#endif
