/* The checkpoint loader accepts any well-formed shape (tied or untied
 * classifier) in llama2.c's formats 0, 1 and 2 and version 0 with fp16
 * weights (the same weights from each, version 2 within its quantization
 * step, fp16 exactly) and rejects truncated, padded and corrupted files with
 * ENG_EFORMAT and a message naming the format, and directories and FIFOs
 * with a message saying so, never a crash or a hang. Every one of the 65536
 * halves converts exactly.
 *
 * usage: test-engine-model-loader BUNDLED_MODEL_BIN PYCODE_MODEL_F16_BIN */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model.h"
#include "synthetic_model.h"
#include "temp_file.h"
#include "test_args.h"
#include "tokenizer.h"

static const char *bundled_model_path;
static const char *pycode_model_path;

/* dim, hidden, layers, heads, kv heads, vocab, seq_len */
static const int32_t TIED[7] = {16, 24, 2, 4, 2, 20, 8};
static const int32_t UNTIED[7] = {16, 24, 2, 4, 2, -20, 8};

/* Loads bytes from a temp file; on success checks and closes the model. */
static int load_bytes(const void *bytes, size_t len, eng_error *err)
{
    char path[256];
    assert_int_equal(temp_file_write(path, sizeof path, bytes, len), 0);
    eng_model model;
    const int rc = eng_model_open(&model, path, err);
    if (rc == ENG_OK)
        eng_model_close(&model);
    else
        assert_null(model.mapping);
    unlink(path);
    return rc;
}

static void test_bundled_model_loads(void **state)
{
    (void)state;
    eng_model model;
    eng_error err = {{0}};
    assert_int_equal(eng_model_open(&model, bundled_model_path, &err), ENG_OK);
    const eng_model_config *c = &model.config;
    assert_int_equal(c->dim, 288);
    assert_int_equal(c->n_layers, 6);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->head_size, 48);
    assert_int_equal(c->vocab_size, 4096);
    assert_true(c->shared_classifier);
    assert_ptr_equal(model.weights.wcls, model.weights.token_embedding);
    size_t expected;
    assert_int_equal(eng_model_expected_file_size(c, &expected, NULL), ENG_OK);
    assert_int_equal(expected, model.mapping_size);
    eng_model_close(&model);
    eng_model_close(&model); /* closing twice is harmless */
}

static void test_untied_classifier_follows_the_rope_tables(void **state)
{
    (void)state;
    size_t len;
    unsigned char *bytes = synthetic_model_bytes(UNTIED, 7, &len);
    assert_non_null(bytes);
    char path[256];
    assert_int_equal(temp_file_write(path, sizeof path, bytes, len), 0);
    eng_model model;
    assert_int_equal(eng_model_open(&model, path, NULL), ENG_OK);
    assert_false(model.config.shared_classifier);
    assert_int_equal(model.config.vocab_size, 20);
    /* wcls is the last vocab * dim floats of the file. */
    const size_t wcls_offset = len - 20 * 16 * sizeof(float);
    assert_ptr_equal(model.weights.wcls,
                     (const float *)((const char *)model.mapping + wcls_offset));
    /* rms_final [16], then two RoPE tables of seq_len 8 x head_size / 2 = 2. */
    assert_ptr_equal(model.weights.rms_final + 16 + 2 * 8 * 2, model.weights.wcls);
    eng_model_close(&model);
    unlink(path);
    free(bytes);
}

static void test_truncated_and_padded_files_are_rejected(void **state)
{
    (void)state;
    size_t len;
    unsigned char *bytes = synthetic_model_bytes(TIED, 1, &len);
    assert_non_null(bytes);
    eng_error err = {{0}};
    assert_int_equal(load_bytes(bytes, len, &err), ENG_OK);
    const size_t cuts[] = {0, 1, 27, 28, 29, len / 2, len - 4, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(load_bytes(bytes, cuts[i], &err), ENG_EFORMAT);
        assert_non_null(strstr(err.message, "truncated"));
    }
    unsigned char *padded = malloc(len + 4);
    assert_non_null(padded);
    memcpy(padded, bytes, len);
    memset(padded + len, 0, 4);
    assert_int_equal(load_bytes(padded, len + 4, &err), ENG_EFORMAT);
    assert_non_null(strstr(err.message, "trailing"));
    free(padded);
    free(bytes);
}

typedef struct header_damage {
    int field;
    int32_t value;
    const char *message_part;
} header_damage;

static void test_corrupt_headers_are_rejected(void **state)
{
    (void)state;
    size_t len;
    unsigned char *bytes = synthetic_model_bytes(TIED, 2, &len);
    assert_non_null(bytes);
    const header_damage damages[] = {
        {0, 0, "dim"}, {0, -16, "dim"}, {0, INT32_MAX, "dim"},
        {1, 0, "hidden_dim"}, {1, 1 << 30, "hidden_dim"},
        {2, 0, "n_layers"}, {2, 100000, "n_layers"},
        {3, 0, "n_heads"}, {3, 3, "multiple"},       /* 16 % 3 != 0 */
        {3, 16, "odd"},                              /* head size 1 */
        {4, 0, "n_kv_heads"}, {4, 3, "multiple"},    /* 4 % 3 != 0 */
        {5, 0, "vocab"}, {5, INT32_MIN, "vocab"}, {5, 1 << 30, "vocab"},
        {5, 2, "below 3"}, {5, -1, "below 3"},      /* no room for BOS/EOS */
        {6, 0, "seq_len"}, {6, -1, "seq_len"},
        /* Valid values that only disagree with the file's length. */
        {2, 3, "truncated"}, {5, 21, "truncated"}, {6, 7, "trailing"},
        {5, -20, "truncated"},                      /* untied needs wcls */
    };
    unsigned char *bad = malloc(len);
    assert_non_null(bad);
    for (size_t i = 0; i < sizeof damages / sizeof damages[0]; i++) {
        memcpy(bad, bytes, len);
        memcpy(bad + 4 * damages[i].field, &damages[i].value, 4);
        eng_error err = {{0}};
        assert_int_equal(load_bytes(bad, len, &err), ENG_EFORMAT);
        if (!strstr(err.message, damages[i].message_part))
            fail_msg("field %d = %d: message '%s' lacks '%s'", damages[i].field,
                     (int)damages[i].value, err.message, damages[i].message_part);
    }
    free(bad);
    free(bytes);
}

static void test_non_finite_weights_are_rejected(void **state)
{
    (void)state;
    size_t len;
    unsigned char *bytes = synthetic_model_bytes(TIED, 3, &len);
    assert_non_null(bytes);
    const float poison[2] = {NAN, INFINITY};
    for (int i = 0; i < 2; i++) {
        unsigned char *bad = malloc(len);
        assert_non_null(bad);
        memcpy(bad, bytes, len);
        /* The first element of wq, after the embedding and the RMS weights. */
        const size_t wq_offset = 28 + (20 * 16 + 2 * 16) * sizeof(float);
        memcpy(bad + wq_offset, &poison[i], sizeof(float));
        eng_error err = {{0}};
        assert_int_equal(load_bytes(bad, len, &err), ENG_EFORMAT);
        assert_non_null(strstr(err.message, "non-finite"));
        free(bad);
    }
    free(bytes);
}

static void test_absurd_sizes_do_not_overflow(void **state)
{
    (void)state;
    /* Each value is within its bound, the product is not small. */
    const int header[7] = {1 << 16, 1 << 20, 1024, 1024, 1024, -(1 << 22), 1 << 24};
    eng_model_config config;
    assert_int_equal(eng_model_config_from_header(&config, header, NULL), ENG_OK);
    size_t bytes = 0;
    const int rc = eng_model_expected_file_size(&config, &bytes, NULL);
    if (sizeof(size_t) >= 8)
        assert_true(rc == ENG_OK && bytes > ((size_t)1 << 40));
    else
        assert_int_equal(rc, ENG_EFORMAT);
    unsigned char file[28];
    memcpy(file, header, sizeof file);
    eng_error err = {{0}};
    assert_int_equal(load_bytes(file, sizeof file, &err), ENG_EFORMAT);
}

static void test_unreadable_paths_fail_cleanly(void **state)
{
    (void)state;
    eng_model model;
    eng_error err = {{0}};
    assert_int_equal(eng_model_open(&model, "/nonexistent/model.bin", &err), ENG_EIO);
    assert_non_null(strstr(err.message, "/nonexistent/model.bin"));
    assert_int_equal(eng_model_open(&model, "/tmp", &err), ENG_EIO);
    assert_int_equal(eng_model_open(&model, NULL, &err), ENG_EINVAL);
}

/* A GQA shape whose dim (16) takes Q8_0 groups of 16, 8, 4, 2 and 1. */
static const int32_t GQA[7] = {16, 40, 3, 4, 2, 12, 6};

typedef struct tensor_view {
    const char *name;
    const float *data;
    size_t count;
} tensor_view;

static int weight_views(const eng_model *m, tensor_view views[12])
{
    const eng_model_config *c = &m->config;
    const eng_model_weights *w = &m->weights;
    const size_t L = (size_t)c->n_layers, D = (size_t)c->dim, KV = (size_t)c->kv_dim;
    const size_t H = (size_t)c->hidden_dim, V = (size_t)c->vocab_size;
    const tensor_view all[12] = {
        {"token_embedding", w->token_embedding, V * D}, {"rms_att", w->rms_att, L * D},
        {"wq", w->wq, L * D * D}, {"wk", w->wk, L * KV * D}, {"wv", w->wv, L * KV * D},
        {"wo", w->wo, L * D * D}, {"rms_ffn", w->rms_ffn, L * D},
        {"w1", w->w1, L * H * D}, {"w2", w->w2, L * D * H}, {"w3", w->w3, L * H * D},
        {"rms_final", w->rms_final, D}, {"wcls", w->wcls, V * D},
    };
    memcpy(views, all, sizeof all);
    return 12;
}

/* Loads header/seed as version 0 and as `version`, and compares every
 * weight: exactly for fp32, within half a quantization step for Q8_0 (the
 * weights lie in [-0.5, 0.5), so a step is at most 0.5 / 127). */
static void check_same_weights(const int32_t header[7], uint64_t seed, int version,
                               int group)
{
    char path0[256], path[256];
    assert_int_equal(synthetic_model_file(path0, sizeof path0, header, seed), 0);
    size_t len;
    unsigned char *bytes = synthetic_model_versioned(header, seed, version, group, &len);
    assert_non_null(bytes);
    assert_int_equal(temp_file_write(path, sizeof path, bytes, len), 0);
    eng_model m0, m;
    eng_error err = {{0}};
    assert_int_equal(eng_model_open(&m0, path0, &err), ENG_OK);
    if (eng_model_open(&m, path, &err) != ENG_OK)
        fail_msg("version %d, group %d: %s", version, group, err.message);
    assert_int_equal(m.config.version, version);
    assert_int_equal(m.config.group_size, version == 2 ? group : 0);
    assert_int_equal(m.file_size, len);
    eng_model_config c0 = m0.config, c = m.config;
    c.version = c0.version;
    c.group_size = c0.group_size;
    assert_int_equal(c.weight_type, version == 2 ? ENG_WEIGHTS_Q8_0 : ENG_WEIGHTS_F32);
    c.weight_type = c0.weight_type;
    assert_memory_equal(&c0, &c, sizeof c);
    if (c.shared_classifier)
        assert_ptr_equal(m.weights.wcls, m.weights.token_embedding);
    tensor_view a[12], b[12];
    const int n = weight_views(&m0, a);
    weight_views(&m, b);
    const float tolerance = version == 2 ? 0.5f / 127.0f / 2.0f * 1.001f : 0.0f;
    for (int t = 0; t < n; t++) {
        assert_true((const char *)b[t].data >= (const char *)m.mapping &&
                    (const char *)(b[t].data + b[t].count) <=
                        (const char *)m.mapping + m.mapping_size);
        for (size_t i = 0; i < a[t].count; i++)
            if (!(fabsf(a[t].data[i] - b[t].data[i]) <= tolerance))
                fail_msg("version %d group %d: %s[%zu] = %g, version 0 has %g", version,
                         group, b[t].name, i, (double)b[t].data[i], (double)a[t].data[i]);
    }
    eng_model_close(&m0);
    eng_model_close(&m);
    unlink(path0);
    unlink(path);
    free(bytes);
}

static void test_versions_1_and_2_load_the_same_weights(void **state)
{
    (void)state;
    const int32_t *shapes[] = {TIED, UNTIED, GQA};
    for (int s = 0; s < 3; s++) {
        check_same_weights(shapes[s], 11 + (uint64_t)s, 0, 0);
        check_same_weights(shapes[s], 11 + (uint64_t)s, 1, 0);
        for (int group = 16; group >= 1; group /= 2)
            check_same_weights(shapes[s], 11 + (uint64_t)s, 2, group);
    }
}

/* Writes a version 1/2 image of TIED with bytes [at, at + 4) set to value. */
static int load_patched(int version, size_t at, int32_t value, size_t cut, eng_error *err)
{
    size_t len;
    unsigned char *bytes = synthetic_model_versioned(TIED, 5, version, 8, &len);
    assert_non_null(bytes);
    if (at + 4 <= len)
        memcpy(bytes + at, &value, sizeof value);
    const int rc = load_bytes(bytes, cut ? cut : len, err);
    free(bytes);
    return rc;
}

static void expect_message(int rc, const eng_error *err, const char *part1,
                           const char *part2)
{
    if (rc != ENG_EFORMAT || !strstr(err->message, part1) || !strstr(err->message, part2))
        fail_msg("rc %d, message '%s' lacks '%s' or '%s'", rc, err->message, part1, part2);
}

static void test_bad_versioned_files_name_the_format(void **state)
{
    (void)state;
    eng_error err = {{0}};
    for (int version = 1; version <= 2; version++) {
        char name[32];
        snprintf(name, sizeof name, "version %d", version);
        size_t len;
        unsigned char *bytes = synthetic_model_versioned(TIED, 5, version, 8, &len);
        assert_non_null(bytes);
        const size_t cuts[] = {8, 36, 255, 256, 257, len / 2, len - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
            expect_message(load_bytes(bytes, cuts[i], &err), &err, name, "truncated");
        unsigned char *padded = calloc(1, len + 1);
        assert_non_null(padded);
        memcpy(padded, bytes, len);
        expect_message(load_bytes(padded, len + 1, &err), &err, name, "trailing");
        free(padded);
        free(bytes);
        /* header fields, after the magic and the version */
        expect_message(load_patched(version, 8, 0, 0, &err), &err, name, "dim");
        expect_message(load_patched(version, 8 + 4 * 2, 1 << 20, 0, &err), &err, name,
                       "n_layers");
        expect_message(load_patched(version, 8 + 4 * 5, -20, 0, &err), &err, name,
                       "negative");
        expect_message(load_patched(version, 33, 2 << 24, 0, &err), &err, name,
                       "flag"); /* byte 36 = 2 */
        expect_message(load_patched(version, 8 + 4 * 2, 3, 0, &err), &err, name,
                       "truncated"); /* more layers than the file holds */
    }
    /* the group size of version 2 (byte 37) */
    const int32_t groups[] = {0, -8, 3, 32, INT32_MIN};
    for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
        expect_message(load_patched(2, 37, groups[i], 0, &err), &err, "version 2",
                       "group size");
    /* versions this engine does not read */
    const int32_t versions[] = {0, 3, 4, -1, INT32_MAX};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        expect_message(load_patched(1, 4, versions[i], 0, &err), &err, "version", "not supported");
        assert_non_null(strstr(err.message, "0, 1 and 2"));
    }
    const unsigned char magic_only[6] = {0x32, 0x34, 0x6b, 0x61, 1, 0};
    expect_message(load_bytes(magic_only, sizeof magic_only, &err), &err, "ak42",
                   "truncated");
}

/* 1024 layers of 32 heads and every other field at its bound: the sizes
 * are checked in 64 bits, so the file is only found truncated. */
static void test_crafted_huge_versioned_headers_do_not_overflow(void **state)
{
    (void)state;
    const int32_t fields[7] = {1 << 16, 1 << 20, 1024, 32, 32, 1 << 22, 1 << 24};
    for (int version = 1; version <= 2; version++) {
        unsigned char file[300] = {0};
        const int32_t magic = 0x616b3432;
        memcpy(file, &magic, 4);
        memcpy(file + 4, &version, 4);
        memcpy(file + 8, fields, sizeof fields);
        const int32_t group = 1;
        memcpy(file + 37, &group, 4);
        eng_model_config config;
        eng_error err = {{0}};
        assert_int_equal(eng_model_config_from_file(&config, file, sizeof file, &err), ENG_OK);
        size_t bytes = 0;
        const int rc = eng_model_expected_file_size(&config, &bytes, NULL);
        if (sizeof(size_t) >= 8)
            assert_true(rc == ENG_OK && bytes > ((size_t)1 << 40));
        expect_message(load_bytes(file, sizeof file, &err), &err, "truncated", "version");
    }
}

/* ---- version 0 with fp16 weights ---- */

/* The value of a binary16 from its definition, in double: (-1)^s 2^(e-15)
 * (1 + m/1024) for 0 < e < 31, (-1)^s 2^-14 (m/1024) for e = 0; e = 31 is
 * infinity (m = 0) or NaN. */
static float reference_half(uint16_t bits)
{
    const int sign = bits >> 15, e = (bits >> 10) & 31, m = bits & 1023;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = e ? ldexp(1024.0 + m, e - 25) : ldexp((double)m, -24);
    return (float)(sign ? -v : v);
}

static uint32_t float_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static void test_every_half_converts_exactly(void **state)
{
    (void)state;
    int subnormals = 0, nans = 0;
    for (uint32_t h = 0; h <= 0xffff; h++) {
        const float got = eng_model_half_to_float((uint16_t)h), want = reference_half((uint16_t)h);
        if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
            /* NaN: sign and payload kept, in the top mantissa bits */
            const uint32_t bits = (h & 0x8000u) << 16 | 0x7f800000u | (h & 0x3ffu) << 13;
            if (!isnan(got) || float_bits(got) != bits)
                fail_msg("half 0x%04x: got bits 0x%08x, want NaN 0x%08x", (unsigned)h,
                         (unsigned)float_bits(got), (unsigned)bits);
            nans++;
            continue;
        }
        /* bit for bit, so that -0 and +0 differ */
        if (float_bits(got) != float_bits(want))
            fail_msg("half 0x%04x: got %a (0x%08x), want %a (0x%08x)", (unsigned)h,
                     (double)got, (unsigned)float_bits(got), (double)want,
                     (unsigned)float_bits(want));
        subnormals += (h & 0x7c00) == 0 && (h & 0x3ff) != 0;
#ifdef __FLT16_MAX__
        /* and the compiler's own conversion, where it has _Float16 */
        _Float16 native;
        const uint16_t h16 = (uint16_t)h;
        memcpy(&native, &h16, sizeof native);
        assert_int_equal(float_bits((float)native), float_bits(got));
#endif
    }
    assert_int_equal(subnormals, 2 * 1023);
    assert_int_equal(nans, 2 * 1023);
    assert_true(eng_model_half_to_float(0x3c00) == 1.0f);
    assert_true(eng_model_half_to_float(0x7bff) == 65504.0f);
    assert_true(eng_model_half_to_float(0x0001) == 0x1p-24f);
    assert_true(eng_model_half_to_float(0xfc00) == -INFINITY);
}

/* The fp16 image of the version 0 shape header (values: random finite
 * halves, subnormals included) and the fp32 image of the same values. */
static void f16_images(const int32_t header[7], uint64_t seed, unsigned char **f16,
                       size_t *f16_len, unsigned char **f32, size_t *f32_len)
{
    *f32 = synthetic_model_bytes(header, seed, f32_len); /* for its size and header */
    assert_non_null(*f32);
    const size_t n = (*f32_len - ENG_MODEL_HEADER_BYTES) / sizeof(float);
    *f16_len = ENG_MODEL_HEADER_BYTES + 2 * n;
    *f16 = malloc(*f16_len);
    assert_non_null(*f16);
    memcpy(*f16, *f32, ENG_MODEL_HEADER_BYTES);
    uint64_t state = seed;
    for (size_t i = 0; i < n; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        uint16_t h = (uint16_t)(state >> 48);
        if ((h & 0x7c00) == 0x7c00)
            h &= 0x83ff; /* inf/NaN exponent: make it a subnormal */
        (*f16)[ENG_MODEL_HEADER_BYTES + 2 * i] = (unsigned char)(h & 0xff);
        (*f16)[ENG_MODEL_HEADER_BYTES + 2 * i + 1] = (unsigned char)(h >> 8);
        const float v = reference_half(h);
        memcpy(*f32 + ENG_MODEL_HEADER_BYTES + i * sizeof v, &v, sizeof v);
    }
}

static void test_f16_files_load_the_same_weights_as_fp32(void **state)
{
    (void)state;
    const int32_t *shapes[] = {TIED, UNTIED, GQA};
    for (int s = 0; s < 3; s++) {
        unsigned char *f16, *f32;
        size_t f16_len, f32_len;
        f16_images(shapes[s], 21 + (uint64_t)s, &f16, &f16_len, &f32, &f32_len);
        char path16[256], path32[256];
        assert_int_equal(temp_file_write(path16, sizeof path16, f16, f16_len), 0);
        assert_int_equal(temp_file_write(path32, sizeof path32, f32, f32_len), 0);
        eng_model m16, m32;
        eng_error err = {{0}};
        if (eng_model_open(&m16, path16, &err) != ENG_OK)
            fail_msg("shape %d: %s", s, err.message);
        assert_int_equal(eng_model_open(&m32, path32, &err), ENG_OK);
        assert_int_equal(m16.config.version, 0);
        assert_int_equal(m16.config.weight_type, ENG_WEIGHTS_F16);
        assert_int_equal(m32.config.weight_type, ENG_WEIGHTS_F32);
        assert_int_equal(m16.file_size, f16_len);
        size_t expected;
        assert_int_equal(eng_model_expected_file_size(&m16.config, &expected, NULL), ENG_OK);
        assert_int_equal(expected, f16_len);
        eng_model_config c = m16.config;
        c.weight_type = ENG_WEIGHTS_F32;
        assert_memory_equal(&c, &m32.config, sizeof c);
        if (c.shared_classifier)
            assert_ptr_equal(m16.weights.wcls, m16.weights.token_embedding);
        tensor_view a[12], b[12];
        const int n = weight_views(&m32, a);
        weight_views(&m16, b);
        for (int t = 0; t < n; t++) {
            assert_true((const char *)b[t].data >= (const char *)m16.mapping &&
                        (const char *)(b[t].data + b[t].count) <=
                            (const char *)m16.mapping + m16.mapping_size);
            if (memcmp(a[t].data, b[t].data, a[t].count * sizeof(float)) != 0)
                fail_msg("shape %d: tensor %s differs from the fp32 file", s, a[t].name);
        }
        eng_model_close(&m16);
        eng_model_close(&m32);
        unlink(path16);
        unlink(path32);
        free(f16);
        free(f32);
    }
}

static void test_bad_f16_files_are_rejected(void **state)
{
    (void)state;
    unsigned char *f16, *f32;
    size_t f16_len, f32_len;
    f16_images(TIED, 31, &f16, &f16_len, &f32, &f32_len);
    eng_error err = {{0}};
    assert_int_equal(load_bytes(f16, f16_len, &err), ENG_OK);
    char sizes[64];
    snprintf(sizes, sizeof sizes, "%zu (fp32 weights) or %zu (fp16 weights)", f32_len, f16_len);
    const size_t cuts[] = {29, f16_len / 2, f16_len - 2, f16_len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++)
        expect_message(load_bytes(f16, cuts[i], &err), &err, "truncated", sizes);
    /* between the two sizes: either damage, and the message says both */
    unsigned char *longer = calloc(1, f32_len + 2);
    assert_non_null(longer);
    memcpy(longer, f16, f16_len);
    const size_t between[] = {f16_len + 1, f16_len + 2, (f16_len + f32_len) / 2, f32_len - 1};
    for (size_t i = 0; i < sizeof between / sizeof between[0]; i++) {
        expect_message(load_bytes(longer, between[i], &err), &err, "truncated", "trailing");
        assert_non_null(strstr(err.message, sizes));
    }
    assert_int_equal(load_bytes(f32, f32_len, &err), ENG_OK); /* the fp32 image is fine */
    memcpy(longer, f32, f32_len);
    expect_message(load_bytes(longer, f32_len + 2, &err), &err, "trailing", sizes);
    free(longer);
    /* inf and NaN halves: the first element of wq */
    const size_t wq_offset = ENG_MODEL_HEADER_BYTES + (20 * 16 + 2 * 16) * 2;
    const uint16_t poison[] = {0x7c00, 0xfc00, 0x7e00, 0x7c01};
    for (size_t i = 0; i < sizeof poison / sizeof poison[0]; i++) {
        unsigned char *bad = malloc(f16_len);
        assert_non_null(bad);
        memcpy(bad, f16, f16_len);
        bad[wq_offset] = (unsigned char)(poison[i] & 0xff);
        bad[wq_offset + 1] = (unsigned char)(poison[i] >> 8);
        expect_message(load_bytes(bad, f16_len, &err), &err, "non-finite", "tensor wq");
        free(bad);
    }
    /* an fp32 file of random weights (not these halves, whose low 13 bits
     * are 0) cut to exactly the fp16 size: low halves of fp32 values read
     * as fp16 weights hit inf or NaN */
    free(f32);
    f32 = synthetic_model_bytes(TIED, 31, &f32_len);
    assert_non_null(f32);
    expect_message(load_bytes(f32, f16_len, &err), &err, "non-finite", "cut short");
    free(f16);
    free(f32);
}

/* The same with the bundled fp32 model: a download cut at the one size
 * that reads as fp16 weights is still refused. */
static void test_bundled_fp32_model_cut_to_f16_size_is_rejected(void **state)
{
    (void)state;
    size_t len;
    unsigned char *bytes = temp_file_read_all(bundled_model_path, &len);
    assert_non_null(bytes);
    const size_t f16_len = ENG_MODEL_HEADER_BYTES + (len - ENG_MODEL_HEADER_BYTES) / 2;
    eng_error err = {{0}};
    expect_message(load_bytes(bytes, f16_len, &err), &err, "non-finite", "cut short");
    free(bytes);
}

static void test_bundled_f16_model_loads(void **state)
{
    (void)state;
    eng_model model;
    eng_error err = {{0}};
    if (eng_model_open(&model, pycode_model_path, &err) != ENG_OK)
        fail_msg("%s", err.message);
    const eng_model_config *c = &model.config;
    assert_int_equal(c->version, 0);
    assert_int_equal(c->weight_type, ENG_WEIGHTS_F16);
    assert_int_equal(c->dim, 384);
    assert_int_equal(c->hidden_dim, 896);
    assert_int_equal(c->n_layers, 6);
    assert_int_equal(c->n_heads, 6);
    assert_int_equal(c->n_kv_heads, 2);
    assert_int_equal(c->head_size, 64);
    assert_int_equal(c->vocab_size, 8192);
    assert_int_equal(c->seq_len, 2048);
    assert_true(c->shared_classifier);
    assert_ptr_equal(model.weights.wcls, model.weights.token_embedding);
    assert_int_equal(model.file_size, 23668508);
    /* 11 703 168 weights, converted (the RoPE tables are skipped) */
    assert_int_equal(model.mapping_size, (size_t)11703168 * sizeof(float));
    /* the first weight, from the file's own bytes */
    size_t len;
    unsigned char *bytes = temp_file_read_all(pycode_model_path, &len);
    assert_non_null(bytes);
    const uint16_t first = (uint16_t)(bytes[28] | bytes[29] << 8);
    assert_int_equal(float_bits(model.weights.token_embedding[0]),
                     float_bits(reference_half(first)));
    free(bytes);
    eng_model_close(&model);
}

/* Runs with an alarm: a loader that waited on the FIFO would fail the test
 * instead of hanging it. */
static void test_directories_and_fifos_are_refused(void **state)
{
    (void)state;
    char dir[256];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kf-loader-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    char fifo[300];
    snprintf(fifo, sizeof fifo, "%s/fifo", dir);
    assert_int_equal(mkfifo(fifo, 0600), 0);
    alarm(20);
    eng_model model;
    eng_tokenizer tok;
    eng_error err = {{0}};
    assert_int_equal(eng_model_open(&model, dir, &err), ENG_EIO);
    assert_non_null(strstr(err.message, "is a directory"));
    assert_null(strstr(err.message, "truncated"));
    assert_int_equal(eng_tokenizer_load(&tok, dir, 32, &err), ENG_EIO);
    assert_non_null(strstr(err.message, "is a directory"));
    assert_int_equal(eng_model_open(&model, fifo, &err), ENG_EIO);
    assert_non_null(strstr(err.message, "FIFO"));
    assert_int_equal(eng_tokenizer_load(&tok, fifo, 32, &err), ENG_EIO);
    assert_non_null(strstr(err.message, "FIFO"));
    assert_int_equal(eng_model_open(&model, "/dev/null", &err), ENG_EIO);
    assert_non_null(strstr(err.message, "device"));
    alarm(0);
    unlink(fifo);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "BUNDLED_MODEL_BIN PYCODE_MODEL_F16_BIN", &bundled_model_path,
                   &pycode_model_path))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bundled_model_loads),
        cmocka_unit_test(test_untied_classifier_follows_the_rope_tables),
        cmocka_unit_test(test_truncated_and_padded_files_are_rejected),
        cmocka_unit_test(test_corrupt_headers_are_rejected),
        cmocka_unit_test(test_non_finite_weights_are_rejected),
        cmocka_unit_test(test_absurd_sizes_do_not_overflow),
        cmocka_unit_test(test_unreadable_paths_fail_cleanly),
        cmocka_unit_test(test_versions_1_and_2_load_the_same_weights),
        cmocka_unit_test(test_bad_versioned_files_name_the_format),
        cmocka_unit_test(test_crafted_huge_versioned_headers_do_not_overflow),
        cmocka_unit_test(test_directories_and_fifos_are_refused),
        cmocka_unit_test(test_every_half_converts_exactly),
        cmocka_unit_test(test_f16_files_load_the_same_weights_as_fp32),
        cmocka_unit_test(test_bad_f16_files_are_rejected),
        cmocka_unit_test(test_bundled_fp32_model_cut_to_f16_size_is_rejected),
        cmocka_unit_test(test_bundled_f16_model_loads),
    };
    return cmocka_run_group_tests_name("engine model loader", tests, NULL, NULL);
}
