/* The full-cache NLL kf-eval computes, against the model card: for every dev
 * document (or the first MAX_DOCS), the mean -ln p(ids[i+1] | ids[0..i])
 * over its first 2048 ids (the 2047 predictions inside one 2048-token
 * context) must equal model_card.json's dev_docs.<name>.nll_first2048
 * within TOLERANCE (default 0.002), and so must the card's ref_nll_512, the
 * same over the first 512 ids of the first document. Documents run in
 * parallel, one engine state (single-threaded) per worker.
 *
 * usage: test-eval-model-card-nll MODEL_BIN MODEL_CARD_JSON TOKENS_JSONL
 *            [WORKERS [MAX_DOCS [TOLERANCE]]] */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "docs.h"
#include "forward.h"
#include "metrics.h"
#include "model.h"

enum { CONTEXT = 2048, REF_TOKENS = 512 };

static const char *model_path, *card_path, *tokens_path;
static int workers = 2;
static int max_docs = 0; /* 0: all */
static double tolerance = 0.002;

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (text && fread(text, 1, (size_t)size, f) != (size_t)size) {
        free(text);
        text = NULL;
    }
    if (text)
        text[size] = '\0';
    fclose(f);
    return text;
}

/* The number after "nll_first2048" in the object that follows "name" inside
 * "dev_docs" (other sections may name the documents too): in
 * model_card.json (a fixed, machine-written file). NAN if absent. */
static double card_nll(const char *card, const char *name)
{
    char key[512];
    snprintf(key, sizeof key, "\"%s\"", name);
    const char *docs = strstr(card, "\"dev_docs\"");
    const char *at = strstr(docs ? docs : card, key);
    if (!at)
        return NAN;
    const char *end = strchr(at, '}');
    at = strstr(at, "\"nll_first2048\"");
    if (!at || (end && at > end))
        return NAN;
    at = strchr(at, ':');
    return at ? strtod(at + 1, NULL) : NAN;
}

/* The number after "ref_nll_512" at the top of the card; NAN if absent. */
static double card_ref_nll(const char *card)
{
    const char *at = strstr(card, "\"ref_nll_512\"");
    at = at ? strchr(at, ':') : NULL;
    return at ? strtod(at + 1, NULL) : NAN;
}

/* Mean NLL of ids[1..n-1] from one forward pass over ids[0..n-1]. */
static double document_nll(const eng_model *model, const int *ids, int n, char *why,
                           size_t why_size)
{
    const int vocab = model->config.vocab_size;
    const eng_state_options options = {.kv_capacity = n, .n_threads = 1};
    eng_state *s = NULL;
    eng_error err = {{0}};
    float *logits = malloc((size_t)n * vocab * sizeof *logits);
    double total = NAN;
    if (logits && eng_state_create(&s, model, &options, &err) == ENG_OK &&
        eng_forward(s, ids, n, logits, n, &err) == ENG_OK) {
        total = 0.0;
        for (int i = 0; i + 1 < n; i++)
            total += eval_nll(logits + (size_t)i * vocab, vocab, ids[i + 1]);
        total /= n - 1;
    } else {
        snprintf(why, why_size, "%s", logits ? err.message : "out of memory");
    }
    eng_state_destroy(&s);
    free(logits);
    return total;
}

static void test_full_cache_nll_matches_model_card(void **state)
{
    (void)state;
    struct stat st;
    if (stat(tokens_path, &st) != 0) {
        fail_msg("%s is missing (the dev set ships in examples/data)", tokens_path);
    }
    char *card = read_file(card_path);
    assert_non_null(card);
    eval_corpus corpus;
    char err[512];
    if (eval_corpus_read(&corpus, tokens_path, NULL, err, sizeof err))
        fail_msg("%s", err);
    eng_model model;
    assert_int_equal(eng_model_open(&model, model_path, NULL), ENG_OK);
    const int n_docs = max_docs > 0 && max_docs < corpus.n_docs ? max_docs : corpus.n_docs;
    double *ours = calloc((size_t)n_docs, sizeof *ours), *expected = calloc((size_t)n_docs, sizeof *expected);
    char (*why)[320] = calloc((size_t)n_docs, sizeof *why);
    assert_non_null(ours);
    assert_non_null(expected);
    assert_non_null(why);
    int checked = 0;
#pragma omp parallel for num_threads(workers) schedule(dynamic, 1) reduction(+ : checked)
    for (int d = 0; d < n_docs; d++) {
        const eval_doc *doc = &corpus.docs[d];
        expected[d] = card_nll(card, doc->name);
        ours[d] = NAN;
        if (doc->n_ids >= CONTEXT && !isnan(expected[d])) {
            ours[d] = document_nll(&model, doc->ids, CONTEXT, why[d], sizeof why[d]);
            checked++;
        }
    }
    int failures = 0;
    for (int d = 0; d < n_docs; d++) {
        const eval_doc *doc = &corpus.docs[d];
        if (isnan(expected[d])) {
            print_message("%-30s not in the model card\n", doc->name);
            failures++;
            continue;
        }
        if (doc->n_ids < CONTEXT) {
            print_message("%-30s %d ids: shorter than %d, skipped\n", doc->name, doc->n_ids,
                          CONTEXT);
            continue;
        }
        const double diff = ours[d] - expected[d];
        print_message("%-30s NLL %.6f card %.6f diff %+.2e%s%s\n", doc->name, ours[d],
                      expected[d], diff, why[d][0] ? " " : "", why[d]);
        if (!(fabs(diff) <= tolerance))
            failures++;
    }
    const double ref_expected = card_ref_nll(card);
    if (!isnan(ref_expected) && corpus.docs[0].n_ids >= REF_TOKENS) {
        char why_ref[320] = "";
        const double ref = document_nll(&model, corpus.docs[0].ids, REF_TOKENS, why_ref,
                                        sizeof why_ref);
        print_message("first %d ids of %s: NLL %.6f card ref_nll_512 %.6f diff %+.2e%s%s\n",
                      REF_TOKENS, corpus.docs[0].name, ref, ref_expected, ref - ref_expected,
                      why_ref[0] ? " " : "", why_ref);
        if (!(fabs(ref - ref_expected) <= tolerance))
            failures++;
    }
    print_message("%d documents checked\n", checked);
    assert_true(checked >= (n_docs < 20 ? n_docs : 20));
    assert_int_equal(failures, 0);
    free(ours), free(expected), free(why), free(card);
    eng_model_close(&model);
    eval_corpus_free(&corpus);
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc > 7) {
        fprintf(stderr, "usage: %s MODEL_BIN MODEL_CARD_JSON TOKENS_JSONL "
                        "[WORKERS [MAX_DOCS [TOLERANCE]]]\n", argv[0]);
        return 2;
    }
    model_path = argv[1];
    card_path = argv[2];
    tokens_path = argv[3];
    if (argc >= 5)
        workers = atoi(argv[4]) > 0 ? atoi(argv[4]) : 1;
    if (argc >= 6)
        max_docs = atoi(argv[5]) > 0 ? atoi(argv[5]) : 0;
    if (argc == 7)
        tolerance = strtod(argv[6], NULL);
    print_message("tolerance %.3g nats/token\n", tolerance);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_cache_nll_matches_model_card),
    };
    return cmocka_run_group_tests_name("kf-eval full-cache NLL", tests, NULL, NULL);
}
