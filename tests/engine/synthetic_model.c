#include "synthetic_model.h"

#include <stdlib.h>
#include <string.h>

#include "temp_file.h"

static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Float count of a well-formed header (see the model README for the order). */
static size_t float_count(const int32_t h[7])
{
    const size_t dim = (size_t)h[0], hidden = (size_t)h[1], layers = (size_t)h[2];
    const size_t head_size = dim / (size_t)h[3];
    const size_t kv_dim = head_size * (size_t)h[4];
    const size_t vocab = (size_t)(h[5] < 0 ? -h[5] : h[5]);
    size_t n = vocab * dim                       /* embedding */
               + layers * dim * 2                /* rms_att, rms_ffn */
               + layers * dim * dim * 2          /* wq, wo */
               + layers * kv_dim * dim * 2       /* wk, wv */
               + layers * hidden * dim * 3       /* w1, w2, w3 */
               + dim                             /* rms_final */
               + (size_t)h[6] * head_size;       /* two legacy RoPE tables */
    if (h[5] < 0)
        n += vocab * dim; /* untied classifier */
    return n;
}

unsigned char *synthetic_model_bytes(const int32_t header[7], uint64_t seed, size_t *len)
{
    const size_t n = float_count(header);
    *len = 28 + n * sizeof(float);
    unsigned char *bytes = malloc(*len);
    if (!bytes)
        return NULL;
    memcpy(bytes, header, 28);
    for (size_t i = 0; i < n; i++) {
        const float v = (float)(next_random(&seed) >> 40) / 16777216.0f - 0.5f;
        memcpy(bytes + 28 + i * sizeof v, &v, sizeof v);
    }
    return bytes;
}

int synthetic_model_file(char *path, size_t path_size, const int32_t header[7],
                         uint64_t seed)
{
    size_t len;
    unsigned char *bytes = synthetic_model_bytes(header, seed, &len);
    const int rc = bytes ? temp_file_write(path, path_size, bytes, len) : -1;
    free(bytes);
    return rc;
}
