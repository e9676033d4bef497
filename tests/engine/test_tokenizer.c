/* Tokenizer tests: exact agreement with the reference token ids of every
 * document of a dev set, lossless decoding, byte fallback, and clean
 * rejection of damaged tokenizer files. DEV_SET names the files
 * DATA_DIR/DEV_SET.jsonl (texts) and DATA_DIR/DEV_SET.tokens.jsonl
 * (reference ids); VOCAB is the model's vocabulary size.
 *
 * usage: test-engine-tokenizer TOKENIZER_BIN DATA_DIR DEV_SET VOCAB */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "eval/docs.h"
#include "temp_file.h"
#include "test_args.h"
#include "tokenizer.h"

static int VOCAB_SIZE;

static const char *tokenizer_path;
static const char *data_dir;
static const char *dev_set;

static int setup_tokenizer(void **state)
{
    eng_tokenizer *tok = malloc(sizeof *tok);
    eng_error err = {{0}};
    if (!tok || eng_tokenizer_load(tok, tokenizer_path, VOCAB_SIZE, &err) != ENG_OK) {
        fprintf(stderr, "cannot load %s: %s\n", tokenizer_path, err.message);
        free(tok);
        return -1;
    }
    *state = tok;
    return 0;
}

static int teardown_tokenizer(void **state)
{
    eng_tokenizer_free(*state);
    free(*state);
    return 0;
}

static FILE *open_texts(void)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.jsonl", data_dir, dev_set);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s", path);
    return f;
}

/* The reference ids of every dev document, read as kf-eval reads them. */
static void read_reference_ids(eval_corpus *reference)
{
    char path[4096], message[512];
    snprintf(path, sizeof path, "%s/%s.tokens.jsonl", data_dir, dev_set);
    if (eval_corpus_read(reference, path, NULL, message, sizeof message))
        fail_msg("%s", message);
}

static const eval_doc *find_document(const eval_corpus *corpus, const char *name)
{
    for (int i = 0; i < corpus->n_docs; i++)
        if (!strcmp(corpus->docs[i].name, name))
            return &corpus->docs[i];
    return NULL;
}

static int first_difference(const int *a, int n_a, const int *b, int n_b)
{
    const int n = n_a < n_b ? n_a : n_b;
    for (int i = 0; i < n; i++)
        if (a[i] != b[i])
            return i;
    return n_a == n_b ? -1 : n;
}

/* Decoding every id after its predecessor must give back the exact text. */
static int decodes_to(const eng_tokenizer *tok, const int *ids, int n, const char *text,
                      size_t text_len)
{
    size_t at = 0;
    for (int i = 1; i < n; i++) {
        size_t len;
        const char *piece = eng_tokenizer_decode(tok, ids[i - 1], ids[i], &len);
        if (at + len > text_len || memcmp(text + at, piece, len) != 0)
            return 0;
        at += len;
    }
    return at == text_len;
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void test_dev_documents_match_reference_ids(void **state)
{
    const eng_tokenizer *tok = *state;
    eval_corpus reference;
    read_reference_ids(&reference);
    FILE *f = open_texts();
    char *line = NULL;
    size_t line_capacity = 0;
    int n_docs = 0, n_exact = 0, n_lossless = 0;
    long n_tokens = 0;
    double encode_seconds = 0.0;
    ssize_t got;
    while ((got = getline(&line, &line_capacity, f)) > 0) {
        size_t text_len;
        char *name, *text;
        assert_int_equal(eval_json_doc_fields(line, (size_t)got, &name, &text, &text_len, NULL,
                                              NULL), 0);
        assert_non_null(name);
        assert_non_null(text);
        const eval_doc *expected = find_document(&reference, name);
        int *ids, n_ids;
        const double start = seconds_now();
        assert_int_equal(eng_tokenizer_encode(tok, text, text_len, true, false, &ids, &n_ids,
                                              NULL), ENG_OK);
        encode_seconds += seconds_now() - start;
        n_tokens += n_ids;
        const int diff = expected ? first_difference(ids, n_ids, expected->ids, expected->n_ids)
                                  : 0;
        if (!expected)
            print_message("%s: no reference ids\n", name);
        else if (diff >= 0)
            print_message("%s: first difference at id %d (got %d ids, expected %d)\n", name,
                          diff, n_ids, expected->n_ids);
        n_exact += expected && diff < 0;
        n_lossless += decodes_to(tok, ids, n_ids, text, text_len);
        n_docs++;
        free(ids), free(name), free(text);
    }
    free(line);
    fclose(f);
    const int n_reference = reference.n_docs;
    eval_corpus_free(&reference);
    print_message("tokenizer: %d/%d dev documents match exactly, %d decode losslessly "
                  "(%ld tokens, encoded in %.3f s)\n",
                  n_exact, n_docs, n_lossless, n_tokens, encode_seconds);
    assert_true(n_docs > 0);
    assert_int_equal(n_docs, n_reference);
    assert_int_equal(n_exact, n_docs);
    assert_int_equal(n_lossless, n_docs);
}

static void test_empty_text_is_only_bos(void **state)
{
    int *ids, n;
    assert_int_equal(eng_tokenizer_encode(*state, "", 0, true, false, &ids, &n, NULL), ENG_OK);
    assert_int_equal(n, 1);
    assert_int_equal(ids[0], ENG_TOKEN_BOS);
    free(ids);
}

static void test_missing_character_falls_back_to_bytes(void **state)
{
    const eng_tokenizer *tok = *state;
    const char *emoji = "\xF0\x9F\x98\x80"; /* U+1F600, not in this vocabulary */
    assert_int_equal(eng_tokenizer_lookup(tok, emoji, 4), -1);
    int *ids, n;
    assert_int_equal(eng_tokenizer_encode(tok, emoji, 4, true, false, &ids, &n, NULL), ENG_OK);
    assert_true(n >= 5);
    for (int i = 0; i < 4; i++)
        assert_int_equal(ids[n - 4 + i], ENG_TOKEN_FIRST_BYTE + (unsigned char)emoji[i]);
    assert_true(decodes_to(tok, ids, n, emoji, 4));
    free(ids);
}

static void test_decode_drops_space_only_after_bos(void **state)
{
    const eng_tokenizer *tok = *state;
    const int the = eng_tokenizer_lookup(tok, " the", 4);
    assert_true(the > 0);
    size_t len;
    const char *s = eng_tokenizer_decode(tok, ENG_TOKEN_BOS, the, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(s, "the", 3);
    s = eng_tokenizer_decode(tok, the, the, &len);
    assert_int_equal(len, 4);
    assert_memory_equal(s, " the", 4);
    s = eng_tokenizer_decode(tok, the, ENG_TOKEN_FIRST_BYTE + 0x41, &len);
    assert_int_equal(len, 1);
    assert_int_equal(s[0], 'A');
}

static int load_bytes(const void *bytes, size_t len, int vocab_size, eng_error *err)
{
    char path[256];
    assert_int_equal(temp_file_write(path, sizeof path, bytes, len), 0);
    eng_tokenizer tok;
    const int rc = eng_tokenizer_load(&tok, path, vocab_size, err);
    if (rc == ENG_OK)
        eng_tokenizer_free(&tok);
    unlink(path);
    return rc;
}

static void test_damaged_files_are_rejected(void **state)
{
    (void)state;
    size_t size;
    unsigned char *good = temp_file_read_all(tokenizer_path, &size);
    assert_non_null(good);
    eng_error err = {{0}};
    assert_int_equal(load_bytes(good, size, VOCAB_SIZE, &err), ENG_OK);

    const size_t cuts[] = {0, 2, 4, 7, 8, 11, 12, size / 2, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        assert_int_equal(load_bytes(good, cuts[i], VOCAB_SIZE, &err), ENG_EFORMAT);
        assert_non_null(strstr(err.message, "truncated"));
    }
    /* One entry more or fewer than the model's vocabulary. */
    assert_int_equal(load_bytes(good, size, VOCAB_SIZE + 1, &err), ENG_EFORMAT);
    assert_int_equal(load_bytes(good, size, VOCAB_SIZE - 1, &err), ENG_EFORMAT);
    assert_non_null(strstr(err.message, "trailing"));

    unsigned char *bad = malloc(size);
    assert_non_null(bad);
    const int32_t absurd_lengths[] = {0, -1, 1 << 30, INT32_MIN};
    for (size_t i = 0; i < sizeof absurd_lengths / sizeof absurd_lengths[0]; i++) {
        memcpy(bad, good, size);
        memcpy(bad + 8, &absurd_lengths[i], 4); /* length of token 0 */
        assert_int_equal(load_bytes(bad, size, VOCAB_SIZE, &err), ENG_EFORMAT);
        assert_non_null(strstr(err.message, "length"));
    }
    const uint32_t absurd_max[] = {0, 1u << 31};
    for (size_t i = 0; i < 2; i++) {
        memcpy(bad, good, size);
        memcpy(bad, &absurd_max[i], 4);
        assert_int_equal(load_bytes(bad, size, VOCAB_SIZE, &err), ENG_EFORMAT);
    }
    free(bad);
    free(good);

    eng_tokenizer tok;
    assert_int_equal(eng_tokenizer_load(&tok, "/nonexistent/tokenizer.bin", VOCAB_SIZE, &err),
                     ENG_EIO);
    assert_int_equal(eng_tokenizer_load(&tok, tokenizer_path, 0, &err), ENG_EINVAL);
    /* ids 0..2 are unk, BOS, EOS: a smaller vocabulary cannot encode */
    assert_int_equal(eng_tokenizer_load(&tok, tokenizer_path, 2, &err), ENG_EINVAL);
}

int main(int argc, char **argv)
{
    const char *vocab;
    if (!test_args(argc, argv, "TOKENIZER_BIN DATA_DIR DEV_SET VOCAB", &tokenizer_path,
                   &data_dir, &dev_set, &vocab))
        return 2;
    VOCAB_SIZE = atoi(vocab);
    if (VOCAB_SIZE < 3) {
        fprintf(stderr, "VOCAB %s: not a vocabulary size\n", vocab);
        return 2;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dev_documents_match_reference_ids),
        cmocka_unit_test(test_empty_text_is_only_bos),
        cmocka_unit_test(test_missing_character_falls_back_to_bytes),
        cmocka_unit_test(test_decode_drops_space_only_after_bos),
        cmocka_unit_test(test_damaged_files_are_rejected),
    };
    return cmocka_run_group_tests_name("engine tokenizer", tests, setup_tokenizer,
                                       teardown_tokenizer);
}
