#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

static bool count3(uint64_t a, uint64_t b, uint64_t c, uint64_t *out)
{
    uint64_t ab;
    return mul_u64(a, b, &ab) && mul_u64(ab, c, out);
}

/* One tensor of the file in storage order; field is NULL for skipped data. */
typedef struct tensor_spec {
    const char *name;
    const float **field;
    uint64_t count;
} tensor_spec;

enum { MAX_TENSORS = 14 };

/* Lists the file's tensors in order. Returns the number of entries, or 0 if
 * an element count overflows. */
static int list_tensors(const eng_model_config *c, eng_model_weights *w,
                        tensor_spec specs[MAX_TENSORS])
{
    const uint64_t L = (uint64_t)c->n_layers, D = (uint64_t)c->dim;
    const uint64_t KV = (uint64_t)c->kv_dim, H = (uint64_t)c->hidden_dim;
    const uint64_t V = (uint64_t)c->vocab_size;
    const uint64_t rope_table = (uint64_t)c->seq_len * (uint64_t)(c->head_size / 2);
    int n = 0;
    bool ok = true;
#define ADD(NAME, FIELD, A, B, C_)                                        \
    do {                                                                  \
        specs[n].name = NAME;                                             \
        specs[n].field = FIELD;                                           \
        ok = ok && count3(A, B, C_, &specs[n].count);                     \
        n++;                                                              \
    } while (0)
    ADD("token_embedding", &w->token_embedding, V, D, 1);
    ADD("rms_att", &w->rms_att, L, D, 1);
    ADD("wq", &w->wq, L, D, D);
    ADD("wk", &w->wk, L, KV, D);
    ADD("wv", &w->wv, L, KV, D);
    ADD("wo", &w->wo, L, D, D);
    ADD("rms_ffn", &w->rms_ffn, L, D, 1);
    ADD("w1", &w->w1, L, H, D);
    ADD("w2", &w->w2, L, D, H);
    ADD("w3", &w->w3, L, H, D);
    ADD("rms_final", &w->rms_final, D, 1, 1);
    /* Legacy RoPE tables: the engine computes rotations itself. */
    ADD("rope_cos", NULL, rope_table, 1, 1);
    ADD("rope_sin", NULL, rope_table, 1, 1);
    if (!c->shared_classifier)
        ADD("wcls", &w->wcls, V, D, 1);
#undef ADD
    return ok ? n : 0;
}

int eng_model_expected_file_size(const eng_model_config *config, size_t *bytes,
                                 eng_error *err)
{
    eng_model_weights unused;
    tensor_spec specs[MAX_TENSORS];
    const int n = list_tensors(config, &unused, specs);
    uint64_t floats = 0;
    bool ok = n > 0;
    for (int i = 0; ok && i < n; i++) {
        ok = specs[i].count <= UINT64_MAX - floats;
        floats += ok ? specs[i].count : 0;
    }
    uint64_t total = 0;
    ok = ok && mul_u64(floats, sizeof(float), &total) &&
         total <= UINT64_MAX - ENG_MODEL_HEADER_BYTES;
    total += ENG_MODEL_HEADER_BYTES;
    if (!ok || total > SIZE_MAX)
        return eng_fail(err, ENG_EFORMAT,
                        "the header describes a model too large for this host");
    *bytes = (size_t)total;
    return ENG_OK;
}

/* A NaN or infinity in a weight means a damaged file; finding it here is
 * cheaper than debugging garbage text later. */
static int check_finite(const char *path, const tensor_spec *spec, eng_error *err)
{
    const float *data = *spec->field;
    for (uint64_t i = 0; i < spec->count; i++)
        if (!isfinite(data[i]))
            return eng_fail(err, ENG_EFORMAT,
                            "%s: tensor %s has a non-finite value at element %llu",
                            path, spec->name, (unsigned long long)i);
    return ENG_OK;
}

/* Points the weights into the mapping and checks them. */
static int bind_weights(eng_model *model, const char *path, eng_error *err)
{
    tensor_spec specs[MAX_TENSORS];
    const int n = list_tensors(&model->config, &model->weights, specs);
    const float *cursor =
        (const float *)((const char *)model->mapping + ENG_MODEL_HEADER_BYTES);
    for (int i = 0; i < n; i++) {
        if (specs[i].field)
            *specs[i].field = cursor;
        cursor += specs[i].count;
    }
    if (model->config.shared_classifier)
        model->weights.wcls = model->weights.token_embedding;
    for (int i = 0; i < n; i++) {
        int rc;
        if (specs[i].field && (rc = check_finite(path, &specs[i], err)))
            return rc;
    }
    return ENG_OK;
}

static int map_file(eng_model *model, int fd, const char *path, eng_error *err)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return eng_fail(err, ENG_EIO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return eng_fail(err, ENG_EIO, "%s: not a regular file", path);
    if (st.st_size < ENG_MODEL_HEADER_BYTES)
        return eng_fail(err, ENG_EFORMAT,
                        "%s: truncated: %lld bytes, shorter than the %d-byte header",
                        path, (long long)st.st_size, ENG_MODEL_HEADER_BYTES);
    if ((uint64_t)st.st_size > SIZE_MAX)
        return eng_fail(err, ENG_EFORMAT, "%s: too large to map", path);
    void *mapping = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED)
        return eng_fail(err, ENG_EIO, "%s: cannot map: %s", path, strerror(errno));
    model->mapping = mapping;
    model->mapping_size = (size_t)st.st_size;
    return ENG_OK;
}

static int validate_and_bind(eng_model *model, const char *path, eng_error *err)
{
    int32_t raw[7];
    memcpy(raw, model->mapping, sizeof raw);
    int header[7];
    for (int i = 0; i < 7; i++)
        header[i] = (int)raw[i];
    int rc = eng_model_config_from_header(&model->config, header, err);
    if (rc) {
        /* Prefix the path without losing the specific reason. */
        eng_error inner = *err;
        return eng_fail(err, rc, "%s: %s", path, inner.message);
    }
    size_t expected;
    if ((rc = eng_model_expected_file_size(&model->config, &expected, err)))
        return eng_fail(err, rc, "%s: the header describes a model too large for this host",
                        path);
    if (model->mapping_size != expected)
        return eng_fail(err, ENG_EFORMAT,
                        "%s: %s: file has %zu bytes but its header implies %zu",
                        path, model->mapping_size < expected ? "truncated" : "trailing data",
                        model->mapping_size, expected);
    return bind_weights(model, path, err);
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
    const int fd = open(path, O_RDONLY);
    if (fd < 0)
        return eng_fail(err, ENG_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = map_file(model, fd, path, err);
    close(fd); /* the mapping outlives the descriptor */
    if (rc == ENG_OK)
        rc = validate_and_bind(model, path, err);
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
