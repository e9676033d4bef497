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

/* Writes the image to a temp file; path needs 64 bytes. Returns 0 on success. */
int synthetic_model_file(char *path, size_t path_size, const int32_t header[7],
                         uint64_t seed);

#endif
