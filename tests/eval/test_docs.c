/* kf-eval's document reader: JSON lines with escapes, unknown keys and
 * malformed input; and the --text path, whose tokenization must give the
 * reference ids of every dev document.
 *
 * usage: test-eval-docs TOKENIZER_BIN DATA_DIR */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "docs.h"
#include "test_args.h"
#include "tokenizer.h"

static const char *tokenizer_path;
static const char *data_dir;

static int fields(const char *line, char **name, char **text, size_t *text_len, int **ids,
                  int *n_ids)
{
    return eval_json_doc_fields(line, strlen(line), name, text, text_len, ids, n_ids);
}

static void test_fields(void **state)
{
    (void)state;
    char *name, *text;
    size_t len;
    int *ids, n;
    assert_int_equal(fields("{\"name\": \"a\", \"ids\": [1, 2, -3], \"text\": \"x\"}\n", &name,
                            &text, &len, &ids, &n), 0);
    assert_string_equal(name, "a");
    assert_string_equal(text, "x");
    assert_int_equal(n, 3);
    assert_int_equal(ids[0], 1);
    assert_int_equal(ids[2], -3);
    free(name), free(text), free(ids);

    /* escapes: quote, backslash, newline, U+00B0, a surrogate pair (U+1F600) */
    const char *escaped = "{\"text\":\"say \\\"hi\\\"\\\\\\n\\u00b0\\ud83d\\ude00\",\"name\":\"b\"}";
    assert_int_equal(fields(escaped, &name, &text, &len, NULL, NULL), 0);
    assert_string_equal(name, "b");
    assert_string_equal(text, "say \"hi\"\\\n\xc2\xb0\xf0\x9f\x98\x80");
    assert_int_equal(len, strlen(text));
    free(name), free(text);

    /* unknown keys of any type are skipped; empty arrays are arrays */
    assert_int_equal(fields("{\"meta\": {\"x\": [1, {\"y\": null}], \"z\": true}, \"n\": -1.5e3,"
                            " \"name\": \"c\", \"ids\": []}", &name, NULL, NULL, &ids, &n), 0);
    assert_string_equal(name, "c");
    assert_int_equal(n, 0);
    free(name), free(ids);

    /* an absent field stays NULL */
    assert_int_equal(fields("{}", &name, &text, &len, &ids, &n), 0);
    assert_null(name);
    assert_null(text);
    assert_null(ids);

    /* malformed lines fail and leave nothing allocated */
    const char *bad[] = {
        "", "[1, 2]", "{\"name\": \"a\"", "{\"name\": \"a\",}", "{\"name\": \"a\"} x",
        "{\"ids\": [1, 2,]}", "{\"ids\": [1.5]}", "{\"ids\": [\"1\"]}", "{\"name\": 3}",
        "{\"name\": \"\\u12\"}", "{\"name\": \"\\ud83d\"}", "{\"name\": \"\\q\"}",
        "{\"name\": \"a\tb\"}", "{\"ids\": [99999999999]}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        name = text = NULL;
        ids = NULL;
        if (fields(bad[i], &name, &text, &len, &ids, &n) != -1)
            fail_msg("accepted: %s", bad[i]);
        assert_null(name);
        assert_null(text);
        assert_null(ids);
    }
}

static void test_corpus_errors(void **state)
{
    (void)state;
    eval_corpus c;
    char err[256];
    assert_int_equal(eval_corpus_read(&c, "/nonexistent/file.jsonl", NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "/nonexistent/file.jsonl"));
    assert_int_equal(c.n_docs, 0);

    char path[] = "/tmp/kf-eval-docs-XXXXXX";
    const int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "w");
    fputs("{\"name\": \"one\", \"ids\": [1, 5, 6]}\n\n{\"name\": \"two\", \"text\": \"x\"}\n", f);
    fclose(f);
    /* the second document has no ids */
    assert_int_equal(eval_corpus_read(&c, path, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, ":3: no \"ids\""));
    assert_int_equal(c.n_docs, 0);
    unlink(path);
}

/* Reads DATA_DIR/sotu-dev.jsonl through the tokenizer and compares with
 * DATA_DIR/sotu-dev.tokens.jsonl. */
static void test_text_matches_reference_ids(void **state)
{
    (void)state;
    char text_path[4096], tokens_path[4096];
    snprintf(text_path, sizeof text_path, "%s/sotu-dev.jsonl", data_dir);
    snprintf(tokens_path, sizeof tokens_path, "%s/sotu-dev.tokens.jsonl", data_dir);
    struct stat st;
    if (stat(text_path, &st) != 0 || stat(tokens_path, &st) != 0) {
        fail_msg("%s is missing (the dev set ships in examples/data)", text_path);
    }
    eng_tokenizer tok;
    eng_error e = {{0}};
    assert_int_equal(eng_tokenizer_load(&tok, tokenizer_path, 4096, &e), ENG_OK);
    eval_corpus from_text, from_ids;
    char err[256];
    if (eval_corpus_read(&from_text, text_path, &tok, err, sizeof err))
        fail_msg("%s", err);
    if (eval_corpus_read(&from_ids, tokens_path, NULL, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(from_text.n_docs, from_ids.n_docs);
    assert_true(from_ids.n_docs >= 20);
    for (int d = 0; d < from_ids.n_docs; d++) {
        const eval_doc *a = &from_text.docs[d], *b = &from_ids.docs[d];
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->n_ids, b->n_ids);
        assert_int_equal(b->ids[0], ENG_TOKEN_BOS);
        assert_memory_equal(a->ids, b->ids, (size_t)b->n_ids * sizeof *b->ids);
    }
    eval_corpus_free(&from_text);
    eval_corpus_free(&from_ids);
    eng_tokenizer_free(&tok);
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "TOKENIZER_BIN DATA_DIR", &tokenizer_path, &data_dir))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_corpus_errors),
        cmocka_unit_test(test_text_matches_reference_ids),
    };
    return cmocka_run_group_tests_name("kf-eval documents", tests, NULL, NULL);
}
