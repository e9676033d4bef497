/* The checkpoint loader accepts any well-formed shape (tied or untied
 * classifier) in llama2.c's formats 0, 1 and 2 (the same weights from each,
 * version 2 within its quantization step) and rejects truncated, padded and
 * corrupted files with ENG_EFORMAT and a message naming the format, and
 * directories and FIFOs with a message saying so, never a crash or a hang.
 *
 * usage: test-engine-model-loader BUNDLED_MODEL_BIN */
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
    if (!test_args(argc, argv, "BUNDLED_MODEL_BIN", &bundled_model_path))
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
    };
    return cmocka_run_group_tests_name("engine model loader", tests, NULL, NULL);
}
