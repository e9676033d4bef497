/* Small random llama2.c checkpoints for tests that need odd shapes or
 * damaged files without shipping binaries. */
#ifndef ENGINE_TEST_SYNTHETIC_MODEL_H
#define ENGINE_TEST_SYNTHETIC_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* header: dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size
 * (negative = untied classifier), seq_len. Returns a malloc'd file image
 * with weights uniform in [-0.5, 0.5) from seed, or NULL. */
unsigned char *synthetic_model_bytes(const int32_t header[7], uint64_t seed, size_t *len);

/* The same weights (same header and seed) as llama2.c's export.py lays
 * them out in format version 1 (fp32, 256-byte header with the magic
 * "ak42") or 2 (Q8_0 matrices in groups of group_size values, which must
 * divide dim; fp32 norms). version 0 gives synthetic_model_bytes(). The
 * vocabulary size is written positive, the classifier flag byte says
 * whether it is tied. Returns a malloc'd image, or NULL. */
unsigned char *synthetic_model_versioned(const int32_t header[7], uint64_t seed,
                                         int version, int group_size, size_t *len);

/* Writes the image to a temp file; path needs 64 bytes. Returns 0 on success. */
int synthetic_model_file(char *path, size_t path_size, const int32_t header[7],
                         uint64_t seed);

#endif
