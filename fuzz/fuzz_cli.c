/* fuzz_cli: the example programs' command lines and kf-eval's JSON-lines
 * document reader on any bytes. Parsing must return (never exit, crash or
 * read past an argument), refuse what the programs cannot run, and a
 * successful parse must keep its promises (fuzz_cli_generate.c,
 * fuzz_cli_eval.c); the reader must fail cleanly with a message and leave
 * nothing to free, or return documents that are whole.
 *
 * Input: byte 0 picks the target (0: kf-generate's options, 1: kf-eval's,
 * 2: the document reader). For the options, the rest is the argument list,
 * one argument per NUL-terminated run of bytes. For the reader, byte 1
 * caps the bytes read (0: no cap, else 64 x byte 1) and the rest is the
 * file. Under libFuzzer, -close_fd_mask=3 silences the programs' messages. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "docs.h"
#include "fuzz_check.h"
#include "fuzz_cli.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define check_failed fuzz_cli_check_failed

void fuzz_cli_check_failed(const char *what, int line)
{
    fprintf(stderr, "fuzz_cli: line %d: check failed: %s\n", line, what);
    abort();
}

enum { MAX_ARGS = 64 };

/* Splits bytes at NULs into argv[1..] (argv[0] = program); each argument
 * is its own exact-size allocation, so a read past one is caught. */
static int split_arguments(const uint8_t *data, size_t size, const char *program,
                           char **argv)
{
    int argc = 0;
    argv[argc++] = strdup(program);
    for (size_t at = 0; at < size && argc < MAX_ARGS;) {
        const uint8_t *nul = memchr(data + at, 0, size - at);
        const size_t len = nul ? (size_t)(nul - (data + at)) : size - at;
        char *arg = malloc(len + 1);
        CHECK(arg != NULL);
        memcpy(arg, data + at, len);
        arg[len] = '\0';
        argv[argc++] = arg;
        at += len + 1;
    }
    argv[argc] = NULL;
    return argc;
}

static void fuzz_options(const uint8_t *data, size_t size, bool eval)
{
    char *argv[MAX_ARGS + 1] = {0}; /* compared whole below */
    const int argc = split_arguments(data, size, eval ? "kf-eval" : "kf-generate", argv);
    /* a copy: parsing may keep pointers into argv, never change it */
    char *kept[MAX_ARGS + 1];
    memcpy(kept, argv, sizeof kept);
    const int rc = eval ? fuzz_cli_eval(argc, argv) : fuzz_cli_generate(argc, argv);
    CHECK(rc == 0 || rc == 1 || rc == -1);
    CHECK(memcmp(kept, argv, sizeof kept) == 0);
    for (int i = 0; i < argc; i++)
        free(argv[i]);
}

static void check_corpus(const eval_corpus *c)
{
    for (int d = 0; d < c->n_docs; d++) {
        CHECK(c->docs[d].name != NULL && c->docs[d].ids != NULL && c->docs[d].n_ids >= 0);
        for (int i = 0; i < c->docs[d].n_ids; i++)
            CHECK(c->docs[d].ids[i] >= 0);
    }
}

static void fuzz_documents(const uint8_t *data, size_t size)
{
    const size_t cap = size > 0 ? (size_t)data[0] * 64 : 0;
    const uint8_t *file = size > 0 ? data + 1 : data;
    const size_t file_size = size > 0 ? size - 1 : 0;

    /* one line's fields, every output wanted */
    char *name, *text;
    size_t text_len = 0;
    int *ids, n_ids = 0;
    if (eval_json_doc_fields((const char *)file, file_size, &name, &text, &text_len, &ids,
                             &n_ids) == 0) {
        CHECK(!text || strlen(text) <= text_len);
        CHECK(!ids || n_ids >= 0);
        free(name), free(text), free(ids);
    } else {
        CHECK(!name && !text && !ids);
    }

    /* the whole file, as kf-eval --tokens reads it */
    FILE *f = file_size > 0 ? fmemopen((void *)file, file_size, "r") : NULL;
    if (!f)
        return;
    eval_corpus corpus;
    char err[256] = "";
    const int rc = eval_corpus_read_stream(&corpus, f, "fuzz", cap, NULL, err, sizeof err);
    fclose(f);
    if (rc == 0) {
        check_corpus(&corpus);
        eval_corpus_free(&corpus);
    } else {
        CHECK(err[0] != '\0');
        CHECK(corpus.n_docs == 0 && corpus.docs == NULL);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    switch (data[0] % 3) {
    case 0: fuzz_options(data + 1, size - 1, false); break;
    case 1: fuzz_options(data + 1, size - 1, true); break;
    default: fuzz_documents(data + 1, size - 1); break;
    }
    return 0;
}
