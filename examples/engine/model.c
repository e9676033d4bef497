/* MAP_ANONYMOUS (version 2 weights) is not in POSIX.1-2008, which the build
 * asks for. */
#define _DEFAULT_SOURCE
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "file.h"

/* Upper bounds far above any model this engine could run on a CPU; they only
 * exist so that a corrupt header cannot ask for absurd sizes. */
enum {
    MAX_DIM = 1 << 16,
    MAX_HIDDEN_DIM = 1 << 20,
    MAX_LAYERS = 1024,
    MAX_HEADS = 1024,
    MAX_VOCAB = 1 << 22,
    MAX_SEQ_LEN = 1 << 24,
};

static bool host_is_little_endian(void)
{
    const uint16_t probe = 1;
    return *(const uint8_t *)&probe == 1;
}

static int check_range(const char *name, int value, int max, eng_error *err)
{
    if (value < 1 || value > max)
        return eng_fail(err, ENG_EFORMAT,
                        "header field %s = %d is outside 1..%d", name, value, max);
    return ENG_OK;
}

int eng_model_config_from_header(eng_model_config *config, const int header[7],
                                 eng_error *err)
{
    memset(config, 0, sizeof *config);
    const int dim = header[0], hidden_dim = header[1], n_layers = header[2];
    const int n_heads = header[3], n_kv_heads = header[4], seq_len = header[6];
    int vocab = header[5];
    /* A negative vocabulary size is llama2.c's flag for an untied classifier. */
    const bool shared = vocab > 0;
    if (vocab == INT32_MIN)
        return eng_fail(err, ENG_EFORMAT, "header field vocab_size = %d is invalid", vocab);
    if (vocab < 0)
        vocab = -vocab;

    int rc;
    if ((rc = check_range("dim", dim, MAX_DIM, err)) ||
        (rc = check_range("hidden_dim", hidden_dim, MAX_HIDDEN_DIM, err)) ||
        (rc = check_range("n_layers", n_layers, MAX_LAYERS, err)) ||
        (rc = check_range("n_heads", n_heads, MAX_HEADS, err)) ||
        (rc = check_range("n_kv_heads", n_kv_heads, MAX_HEADS, err)) ||
        (rc = check_range("|vocab_size|", vocab, MAX_VOCAB, err)) ||
        (rc = check_range("seq_len", seq_len, MAX_SEQ_LEN, err)))
        return rc;
    /* ids 0, 1 and 2 are unk, BOS and EOS in this format: the engine feeds
     * BOS (1) before any prompt */
    if (vocab < 3)
        return eng_fail(err, ENG_EFORMAT,
                        "header field |vocab_size| = %d is below 3 (unk, BOS, EOS)", vocab);
    if (dim % n_heads != 0)
        return eng_fail(err, ENG_EFORMAT, "dim %d is not a multiple of n_heads %d",
                        dim, n_heads);
    if (n_heads % n_kv_heads != 0)
        return eng_fail(err, ENG_EFORMAT,
                        "n_heads %d is not a multiple of n_kv_heads %d", n_heads,
                        n_kv_heads);
    const int head_size = dim / n_heads;
    /* RoPE rotates dimension pairs, so a head needs an even size. */
    if (head_size % 2 != 0)
        return eng_fail(err, ENG_EFORMAT, "head size %d (dim / n_heads) is odd",
                        head_size);

    *config = (eng_model_config){
        .dim = dim, .hidden_dim = hidden_dim, .n_layers = n_layers,
        .n_heads = n_heads, .n_kv_heads = n_kv_heads, .vocab_size = vocab,
        .seq_len = seq_len, .head_size = head_size,
        .kv_dim = n_kv_heads * head_size, .shared_classifier = shared,
    };
    return ENG_OK;
}

static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

static bool add_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b > UINT64_MAX - a)
        return false;
    *out = a + b;
    return true;
}

static bool count3(uint64_t a, uint64_t b, uint64_t c, uint64_t *out)
{
    uint64_t ab;
    return mul_u64(a, b, &ab) && mul_u64(ab, c, out);
}

static uint32_t read_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
           (uint32_t)p[3] << 24;
}

static int read_int32(const unsigned char *p)
{
    const uint32_t u = read_le32(p);
    int32_t v;
    memcpy(&v, &u, sizeof v); /* two's complement, as the writer's */
    return (int)v;
}

int eng_model_config_from_file(eng_model_config *config, const void *file, size_t size,
                               eng_error *err)
{
    memset(config, 0, sizeof *config);
    const unsigned char *bytes = file;
    int header[7];
    if (size < 4 || read_le32(bytes) != ENG_MODEL_MAGIC) {
        if (size < ENG_MODEL_HEADER_BYTES)
            return eng_fail(err, ENG_EFORMAT,
                            "truncated: %zu bytes, shorter than the %d-byte header of a "
                            "version 0 checkpoint (and no version 1/2 magic \"ak42\")",
                            size, ENG_MODEL_HEADER_BYTES);
        for (int i = 0; i < 7; i++)
            header[i] = read_int32(bytes + 4 * i);
        return eng_model_config_from_header(config, header, err);
    }
    if (size < 8)
        return eng_fail(err, ENG_EFORMAT,
                        "truncated: %zu bytes, the llama2.c magic \"ak42\" without a version",
                        size);
    const int version = read_int32(bytes + 4);
    if (version != 1 && version != 2)
        return eng_fail(err, ENG_EFORMAT,
                        "llama2.c checkpoint version %d is not supported (this engine "
                        "reads versions 0, 1 and 2)", version);
    if (size < ENG_MODEL_V1_HEADER_BYTES)
        return eng_fail(err, ENG_EFORMAT,
                        "truncated: %zu bytes, shorter than the %d-byte header of a "
                        "version %d checkpoint", size, ENG_MODEL_V1_HEADER_BYTES, version);
    for (int i = 0; i < 7; i++)
        header[i] = read_int32(bytes + 8 + 4 * i);
    /* Versions 1 and 2 flag a tied classifier in a byte of their own. */
    if (header[5] < 0)
        return eng_fail(err, ENG_EFORMAT,
                        "version %d header: vocab_size = %d is negative", version, header[5]);
    int rc = eng_model_config_from_header(config, header, err);
    if (rc) {
        eng_error inner = *err;
        return eng_fail(err, rc, "version %d %s", version, inner.message);
    }
    const unsigned shared = bytes[36];
    if (shared > 1)
        return eng_fail(err, ENG_EFORMAT,
                        "version %d header: shared-classifier flag is %u, not 0 or 1",
                        version, shared);
    config->shared_classifier = shared == 1;
    config->version = version;
    if (version == 2) {
        config->weight_type = ENG_WEIGHTS_Q8_0;
        const int group = read_int32(bytes + 37);
        /* export.py halves the group until it divides dim; every matrix has
         * a dim-long side, so it then divides each matrix and each layer */
        if (group < 1 || config->dim % group != 0) {
            const int dim = config->dim;
            memset(config, 0, sizeof *config);
            return eng_fail(err, ENG_EFORMAT,
                            "version 2 header: Q8_0 group size %d does not divide dim %d",
                            group, dim);
        }
        config->group_size = group;
    }
    return ENG_OK;
}

float eng_model_half_to_float(uint16_t bits)
{
    const uint32_t sign = (uint32_t)(bits & 0x8000u) << 16;
    uint32_t exponent = (bits >> 10) & 0x1fu;
    uint32_t mantissa = bits & 0x3ffu;
    uint32_t out;
    if (exponent == 0x1fu) {
        out = sign | 0x7f800000u | mantissa << 13; /* inf, or NaN with its payload */
    } else if (exponent != 0) {
        out = sign | (exponent + (127 - 15)) << 23 | mantissa << 13;
    } else if (mantissa == 0) {
        out = sign; /* +-0 */
    } else {
        /* Subnormal: mantissa * 2^-24. Shift the leading 1 up to the
         * implicit bit (bit 10); each shift lowers the exponent by one. */
        exponent = 127 - 15 + 1;
        while (!(mantissa & 0x400u)) {
            mantissa <<= 1;
            exponent--;
        }
        out = sign | exponent << 23 | (mantissa & 0x3ffu) << 13;
    }
    float value;
    memcpy(&value, &out, sizeof value);
    return value;
}

/* One tensor of the file in storage order; field is NULL for skipped data.
 * A Q8_0 tensor is stored as `pieces` separately quantized parts (one per
 * layer for the stacked matrices), each its int8 values then its scales. */
typedef struct tensor_spec {
    const char *name;
    const float **field;
    uint64_t count;
    uint64_t pieces;
    eng_weight_type storage;
} tensor_spec;

enum { MAX_TENSORS = 14 };

/* Lists the file's tensors in storage order for config->version. Returns
 * the number of entries, or 0 if an element count overflows. */
static int list_tensors(const eng_model_config *c, eng_model_weights *w,
                        tensor_spec specs[MAX_TENSORS])
{
    const uint64_t L = (uint64_t)c->n_layers, D = (uint64_t)c->dim;
    const uint64_t KV = (uint64_t)c->kv_dim, H = (uint64_t)c->hidden_dim;
    const uint64_t V = (uint64_t)c->vocab_size;
    const uint64_t rope_table = (uint64_t)c->seq_len * (uint64_t)(c->head_size / 2);
    /* version 0: every tensor as the file's size says (fp32 or fp16);
     * version 1: fp32; version 2: Q8_0 matrices, fp32 norms */
    const eng_weight_type q8 = c->version == 2 ? ENG_WEIGHTS_Q8_0 : ENG_WEIGHTS_F32;
    const eng_weight_type v0 = c->weight_type == ENG_WEIGHTS_F16 ? ENG_WEIGHTS_F16
                                                                 : ENG_WEIGHTS_F32;
    const eng_weight_type f32 = ENG_WEIGHTS_F32;
    int n = 0;
    bool ok = true;
#define ADD(NAME, FIELD, A, B, C_, PIECES, STORAGE)                       \
    do {                                                                  \
        specs[n] = (tensor_spec){ NAME, FIELD, 0, PIECES, STORAGE };      \
        ok = ok && count3(A, B, C_, &specs[n].count);                     \
        n++;                                                              \
    } while (0)
#define ADD_MATRICES(STORAGE)                                             \
    do {                                                                  \
        ADD("wq", &w->wq, L, D, D, L, STORAGE);                           \
        ADD("wk", &w->wk, L, KV, D, L, STORAGE);                          \
        ADD("wv", &w->wv, L, KV, D, L, STORAGE);                          \
        ADD("wo", &w->wo, L, D, D, L, STORAGE);                           \
    } while (0)
    if (c->version == 0) {
        ADD("token_embedding", &w->token_embedding, V, D, 1, 1, v0);
        ADD("rms_att", &w->rms_att, L, D, 1, 1, v0);
        ADD_MATRICES(v0);
        ADD("rms_ffn", &w->rms_ffn, L, D, 1, 1, v0);
        ADD("w1", &w->w1, L, H, D, 1, v0);
        ADD("w2", &w->w2, L, D, H, 1, v0);
        ADD("w3", &w->w3, L, H, D, 1, v0);
        ADD("rms_final", &w->rms_final, D, 1, 1, 1, v0);
        /* Legacy RoPE tables: the engine computes rotations itself. */
        ADD("rope_cos", NULL, rope_table, 1, 1, 1, v0);
        ADD("rope_sin", NULL, rope_table, 1, 1, 1, v0);
    } else {
        ADD("rms_att", &w->rms_att, L, D, 1, 1, f32);
        ADD("rms_ffn", &w->rms_ffn, L, D, 1, 1, f32);
        ADD("rms_final", &w->rms_final, D, 1, 1, 1, f32);
        ADD("token_embedding", &w->token_embedding, V, D, 1, 1, q8);
        ADD_MATRICES(q8);
        ADD("w1", &w->w1, L, H, D, L, q8);
        ADD("w2", &w->w2, L, D, H, L, q8);
        ADD("w3", &w->w3, L, H, D, L, q8);
    }
    if (!c->shared_classifier)
        ADD("wcls", &w->wcls, V, D, 1, 1, c->version == 0 ? v0 : q8);
#undef ADD_MATRICES
#undef ADD
    return ok ? n : 0;
}

/* Bytes of one tensor in the file: fp32, fp16, or Q8_0 (a byte per value
 * and a 4-byte scale per group). */
static bool stored_bytes(const tensor_spec *t, uint64_t group, uint64_t *out)
{
    static const uint64_t value_bytes[] = {
        [ENG_WEIGHTS_F32] = sizeof(float), [ENG_WEIGHTS_F16] = 2, [ENG_WEIGHTS_Q8_0] = 1,
    };
    uint64_t values;
    if (!mul_u64(t->count, value_bytes[t->storage], &values))
        return false;
    if (t->storage != ENG_WEIGHTS_Q8_0) {
        *out = values;
        return true;
    }
    uint64_t scales;
    return mul_u64(t->count / group, sizeof(float), &scales) &&
           add_u64(values, scales, out);
}

static uint64_t header_bytes(const eng_model_config *c)
{
    return c->version == 0 ? ENG_MODEL_HEADER_BYTES : ENG_MODEL_V1_HEADER_BYTES;
}

/* File bytes and the floats the engine keeps (what an fp16 or version 2
 * file converts to: every tensor but the legacy RoPE tables); false if
 * either overflows. */
static bool model_sizes(const eng_model_config *c, uint64_t *file_bytes,
                        uint64_t *weight_floats)
{
    eng_model_weights unused;
    tensor_spec specs[MAX_TENSORS];
    const int n = list_tensors(c, &unused, specs);
    uint64_t bytes = header_bytes(c), floats = 0;
    bool ok = n > 0;
    for (int i = 0; ok && i < n; i++) {
        uint64_t b;
        ok = stored_bytes(&specs[i], (uint64_t)c->group_size, &b) &&
             add_u64(bytes, b, &bytes) &&
             add_u64(floats, specs[i].field ? specs[i].count : 0, &floats);
    }
    *file_bytes = bytes;
    *weight_floats = floats;
    return ok;
}

int eng_model_expected_file_size(const eng_model_config *config, size_t *bytes,
                                 eng_error *err)
{
    uint64_t total, floats, weight_bytes;
    if (!model_sizes(config, &total, &floats) || total > SIZE_MAX ||
        !mul_u64(floats, sizeof(float), &weight_bytes) || weight_bytes > SIZE_MAX)
        return eng_fail(err, ENG_EFORMAT,
                        "the header describes a model too large for this host");
    *bytes = (size_t)total;
    return ENG_OK;
}

int eng_model_check_file_size(eng_model_config *config, size_t file_size, eng_error *err)
{
    eng_model_config as = *config;
    if (config->version != 0) {
        size_t expected;
        int rc = eng_model_expected_file_size(config, &expected, err);
        if (rc == ENG_OK && file_size != expected)
            rc = eng_fail(err, ENG_EFORMAT,
                          "%s: version %d file has %zu bytes but its header implies %zu",
                          file_size < expected ? "truncated" : "trailing data",
                          config->version, file_size, expected);
        return rc;
    }
    size_t f32_bytes, f16_bytes;
    as.weight_type = ENG_WEIGHTS_F32;
    int rc = eng_model_expected_file_size(&as, &f32_bytes, err);
    as.weight_type = ENG_WEIGHTS_F16;
    if (rc == ENG_OK)
        rc = eng_model_expected_file_size(&as, &f16_bytes, err);
    if (rc)
        return rc;
    /* f16_bytes < f32_bytes: every header implies at least one value */
    if (file_size == f32_bytes || file_size == f16_bytes) {
        config->weight_type = file_size == f32_bytes ? ENG_WEIGHTS_F32 : ENG_WEIGHTS_F16;
        return ENG_OK;
    }
    const char *what = file_size < f16_bytes   ? "truncated"
                       : file_size > f32_bytes ? "trailing data"
                                               : "truncated fp32 weights or fp16 weights "
                                                 "with trailing data";
    return eng_fail(err, ENG_EFORMAT,
                    "%s: version 0 file has %zu bytes but its header implies %zu (fp32 "
                    "weights) or %zu (fp16 weights)",
                    what, file_size, f32_bytes, f16_bytes);
}

/* A NaN or infinity in a weight means a damaged file; finding it here is
 * cheaper than debugging garbage text later. For fp16 it also catches the
 * one damaged file the size check lets through (model.h). */
static int check_finite(const char *path, const tensor_spec *spec, eng_error *err)
{
    const float *data = *spec->field;
    for (uint64_t i = 0; i < spec->count; i++)
        if (!isfinite(data[i]))
            return eng_fail(err, ENG_EFORMAT,
                            "%s: tensor %s has a non-finite value at element %llu%s",
                            path, spec->name, (unsigned long long)i,
                            spec->storage == ENG_WEIGHTS_F16
                                ? " (read as fp16 weights by the file's size: is it an "
                                  "fp32 checkpoint cut short?)"
                                : "");
    return ENG_OK;
}

/* Writes the fp32 values of count little-endian fp16 values at src. */
static void convert_f16(float *dst, const unsigned char *src, uint64_t count)
{
    for (uint64_t i = 0; i < count; i++)
        dst[i] = eng_model_half_to_float((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
}

/* Writes the fp32 values of one Q8_0 tensor read from src. */
static void dequantize(float *dst, const unsigned char *src, const tensor_spec *t,
                       size_t group)
{
    const size_t per_piece = (size_t)(t->count / t->pieces);
    for (uint64_t p = 0; p < t->pieces; p++) {
        const signed char *q = (const signed char *)src;
        const unsigned char *scales = src + per_piece;
        for (size_t g = 0; g < per_piece / group; g++) {
            float scale;
            memcpy(&scale, scales + g * sizeof scale, sizeof scale);
            for (size_t j = g * group; j < (g + 1) * group; j++)
                dst[j] = (float)q[j] * scale;
        }
        dst += per_piece;
        src += per_piece + per_piece / group * sizeof(float);
    }
}

/* Points the weights at their data: into the file mapping (fp32), or into
 * anonymous memory that replaces the mapping (fp16, version 2). Then checks
 * them. */
static int bind_weights(eng_model *model, const char *path, eng_error *err)
{
    const eng_model_config *c = &model->config;
    tensor_spec specs[MAX_TENSORS];
    const int n = list_tensors(c, &model->weights, specs);
    const unsigned char *cursor =
        (const unsigned char *)model->mapping + header_bytes(c);
    if (c->weight_type != ENG_WEIGHTS_F32) {
        uint64_t file_bytes, floats;
        model_sizes(c, &file_bytes, &floats); /* checked by the caller */
        const size_t size = (size_t)floats * sizeof(float);
        void *weights = mmap(NULL, size, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (weights == MAP_FAILED)
            return eng_fail(err, ENG_ENOMEM,
                            "%s: out of memory for %zu bytes of converted weights", path,
                            size);
        float *out = weights;
        for (int i = 0; i < n; i++) {
            uint64_t bytes = 0;
            stored_bytes(&specs[i], (uint64_t)c->group_size, &bytes);
            if (specs[i].field) {
                if (specs[i].storage == ENG_WEIGHTS_Q8_0)
                    dequantize(out, cursor, &specs[i], (size_t)c->group_size);
                else if (specs[i].storage == ENG_WEIGHTS_F16)
                    convert_f16(out, cursor, specs[i].count);
                else
                    memcpy(out, cursor, (size_t)bytes);
                *specs[i].field = out;
                out += specs[i].count;
            }
            cursor += bytes;
        }
        mprotect(weights, size, PROT_READ);
        munmap(model->mapping, model->mapping_size);
        model->mapping = weights;
        model->mapping_size = size;
    } else {
        for (int i = 0; i < n; i++) {
            if (specs[i].field)
                *specs[i].field = (const float *)(const void *)cursor;
            cursor += specs[i].count * sizeof(float);
        }
    }
    if (c->shared_classifier)
        model->weights.wcls = model->weights.token_embedding;
    for (int i = 0; i < n; i++) {
        int rc;
        if (specs[i].field && (rc = check_finite(path, &specs[i], err)))
            return rc;
    }
    return ENG_OK;
}

/* Reads the header from fd and checks the file's size against it. */
static int read_header(eng_model *model, int fd, const char *path, eng_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return eng_fail(err, ENG_EIO, "%s: cannot stat: %s", path, strerror(errno));
    if ((uint64_t)st.st_size > SIZE_MAX)
        return eng_fail(err, ENG_EFORMAT, "%s: too large to map", path);
    model->file_size = (size_t)st.st_size;
    unsigned char header[ENG_MODEL_V1_HEADER_BYTES];
    const size_t want = model->file_size < sizeof header ? model->file_size : sizeof header;
    size_t got = 0;
    while (got < want) {
        const ssize_t r = pread(fd, header + got, want - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return eng_fail(err, ENG_EIO, "%s: read error: %s", path, strerror(errno));
        if (r == 0)
            return eng_fail(err, ENG_EIO, "%s: file shrank while being read", path);
        got += (size_t)r;
    }
    int rc = eng_model_config_from_file(&model->config, header, want, err);
    if (rc) {
        /* Prefix the path without losing the specific reason. */
        eng_error inner = *err;
        return eng_fail(err, rc, "%s: %s", path, inner.message);
    }
    if ((rc = eng_model_check_file_size(&model->config, model->file_size, err))) {
        eng_error inner = *err;
        return eng_fail(err, rc, "%s: %s", path, inner.message);
    }
    return ENG_OK;
}

static int map_file(eng_model *model, int fd, const char *path, eng_error *err)
{
    void *mapping = mmap(NULL, model->file_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED)
        return eng_fail(err, ENG_EIO, "%s: cannot map: %s", path, strerror(errno));
    model->mapping = mapping;
    model->mapping_size = model->file_size;
    return ENG_OK;
}

int eng_model_open(eng_model *model, const char *path, eng_error *err)
{
    eng_error local;
    if (!err)
        err = &local;
    memset(model, 0, sizeof *model);
    if (!path)
        return eng_fail(err, ENG_EINVAL, "no model path given");
    if (!host_is_little_endian())
        return eng_fail(err, ENG_EINVAL, "checkpoints are little-endian; this host is not");
    const int fd = eng_open_regular_file(path, err);
    if (fd < 0)
        return fd;
    int rc = read_header(model, fd, path, err);
    if (rc == ENG_OK)
        rc = map_file(model, fd, path, err);
    close(fd); /* the mapping outlives the descriptor */
    if (rc == ENG_OK)
        rc = bind_weights(model, path, err);
    if (rc != ENG_OK)
        eng_model_close(model);
    return rc;
}

void eng_model_close(eng_model *model)
{
    if (model->mapping)
        munmap(model->mapping, model->mapping_size);
    memset(model, 0, sizeof *model);
}
