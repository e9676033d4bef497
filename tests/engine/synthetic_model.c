#include "synthetic_model.h"

#include <math.h>
#include <stdbool.h>
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

/* The tensors of a version 0 image, in its order. */
enum {
    T_EMBEDDING, T_RMS_ATT, T_WQ, T_WK, T_WV, T_WO, T_RMS_FFN, T_W1, T_W2, T_W3,
    T_RMS_FINAL, T_ROPE_COS, T_ROPE_SIN, T_WCLS, T_COUNT
};

typedef struct span {
    size_t first; /* float index in the version 0 image */
    size_t count;
    size_t pieces; /* separately quantized parts (layers) in version 2 */
} span;

static void version0_spans(const int32_t h[7], span spans[T_COUNT])
{
    const size_t dim = (size_t)h[0], hidden = (size_t)h[1], layers = (size_t)h[2];
    const size_t head_size = dim / (size_t)h[3];
    const size_t kv_dim = head_size * (size_t)h[4];
    const size_t vocab = (size_t)(h[5] < 0 ? -h[5] : h[5]);
    const size_t counts[T_COUNT] = {
        vocab * dim, layers * dim, layers * dim * dim, layers * kv_dim * dim,
        layers * kv_dim * dim, layers * dim * dim, layers * dim, layers * hidden * dim,
        layers * dim * hidden, layers * hidden * dim, dim,
        (size_t)h[6] * head_size / 2, (size_t)h[6] * head_size / 2,
        h[5] < 0 ? vocab * dim : 0,
    };
    size_t first = 0;
    for (int t = 0; t < T_COUNT; t++) {
        const bool stacked = t >= T_WQ && t <= T_W3 && t != T_RMS_FFN;
        spans[t] = (span){first, counts[t], stacked ? layers : 1};
        first += counts[t];
    }
}

static void put_i32(unsigned char *p, int32_t v)
{
    memcpy(p, &v, sizeof v);
}

/* export.py's Q8_0: per group, scale = max |w| / 127, q = round(w / scale). */
static size_t quantize(unsigned char *out, const float *w, size_t n, size_t group)
{
    signed char *q = (signed char *)out;
    unsigned char *scales = out + n;
    for (size_t g = 0; g < n / group; g++) {
        float max = 0.0f;
        for (size_t j = g * group; j < (g + 1) * group; j++)
            max = fabsf(w[j]) > max ? fabsf(w[j]) : max;
        const float scale = max / 127.0f;
        for (size_t j = g * group; j < (g + 1) * group; j++)
            q[j] = (signed char)(scale > 0.0f ? lrintf(w[j] / scale) : 0);
        memcpy(scales + g * sizeof scale, &scale, sizeof scale);
    }
    return n + n / group * sizeof(float);
}

unsigned char *synthetic_model_versioned(const int32_t header[7], uint64_t seed,
                                         int version, int group_size, size_t *len)
{
    size_t v0_len;
    unsigned char *v0 = synthetic_model_bytes(header, seed, &v0_len);
    if (!v0 || version == 0) {
        *len = v0_len;
        return v0;
    }
    static const int order[] = {T_RMS_ATT, T_RMS_FFN, T_RMS_FINAL, T_EMBEDDING, T_WQ,
                                T_WK, T_WV, T_WO, T_W1, T_W2, T_W3, T_WCLS};
    span spans[T_COUNT];
    version0_spans(header, spans);
    /* Q8_0 takes at most 5 bytes a value (groups of 1) */
    unsigned char *out = calloc(1, 256 + v0_len / 4 * 5);
    if (!out) {
        free(v0);
        return NULL;
    }
    const float *weights = (const float *)(const void *)(v0 + 28);
    put_i32(out, 0x616b3432);
    put_i32(out + 4, version);
    for (int i = 0; i < 7; i++)
        put_i32(out + 8 + 4 * i, i == 5 && header[5] < 0 ? -header[5] : header[i]);
    out[36] = header[5] > 0;
    if (version == 2)
        put_i32(out + 37, group_size);
    size_t at = 256;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        const span *s = &spans[order[i]];
        const bool norm = order[i] == T_RMS_ATT || order[i] == T_RMS_FFN ||
                          order[i] == T_RMS_FINAL;
        const bool q8 = version == 2 && !norm;
        if (!q8) {
            memcpy(out + at, weights + s->first, s->count * sizeof(float));
            at += s->count * sizeof(float);
            continue;
        }
        const size_t per_piece = s->count / s->pieces;
        for (size_t p = 0; p < s->pieces; p++)
            at += quantize(out + at, weights + s->first + p * per_piece, per_piece,
                           (size_t)group_size);
    }
    free(v0);
    *len = at;
    return out;
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
