/* The checkpoint loader accepts any well-formed shape (tied or untied
 * classifier) and rejects truncated, padded and corrupted files with
 * ENG_EFORMAT and a message, never a crash.
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
#include <unistd.h>

#include "model.h"
#include "synthetic_model.h"
#include "temp_file.h"
#include "test_args.h"

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
    };
    return cmocka_run_group_tests_name("engine model loader", tests, NULL, NULL);
}
