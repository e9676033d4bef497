/* Logit parity with the training framework on the bundled model: the last 8
 * rows of a 512-token dev sequence, computed (1) by one 512-row prefill and
 * (2) by a 500-row prefill followed by 12 single-token decode steps, must
 * both match reference-logits.bin within 1e-4 and agree with each other.
 *
 * usage: test-engine-logits MODEL_BIN REFERENCE_LOGITS_BIN */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "model.h"
#include "test_args.h"

static const double TOLERANCE = 1e-4;
enum { DECODE_STEPS = 12 };

static const char *model_path;
static const char *reference_path;

typedef struct reference {
    int n_tokens, n_rows, vocab;
    int32_t *tokens;
    float *logits; /* [n_rows][vocab] for the last n_rows positions */
} reference;

typedef struct fixture {
    eng_model model;
    reference ref;
} fixture;

static int read_reference(reference *ref, const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    int32_t header[3];
    int ok = fread(header, sizeof header[0], 3, f) == 3 && header[0] > 0 &&
             header[1] > 0 && header[1] <= header[0] && header[2] > 0;
    if (ok) {
        ref->n_tokens = header[0], ref->n_rows = header[1], ref->vocab = header[2];
        const size_t n_logits = (size_t)ref->n_rows * (size_t)ref->vocab;
        ref->tokens = malloc((size_t)ref->n_tokens * sizeof *ref->tokens);
        ref->logits = malloc(n_logits * sizeof *ref->logits);
        ok = ref->tokens && ref->logits &&
             fread(ref->tokens, sizeof *ref->tokens, (size_t)ref->n_tokens, f) ==
                 (size_t)ref->n_tokens &&
             fread(ref->logits, sizeof *ref->logits, n_logits, f) == n_logits;
    }
    fclose(f);
    return ok ? 0 : -1;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    eng_error err = {{0}};
    if (!fx || eng_model_open(&fx->model, model_path, &err) != ENG_OK) {
        fprintf(stderr, "cannot load %s: %s\n", model_path, err.message);
        free(fx);
        return -1;
    }
    if (read_reference(&fx->ref, reference_path) != 0 ||
        fx->ref.vocab != fx->model.config.vocab_size) {
        fprintf(stderr, "cannot read %s (or it does not fit the model)\n", reference_path);
        return -1;
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    eng_model_close(&fx->model);
    free(fx->ref.tokens);
    free(fx->ref.logits);
    free(fx);
    return 0;
}

static double max_abs_difference(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)a[i] - (double)b[i]);
        worst = d > worst || isnan(d) ? d : worst;
    }
    return worst;
}

static const int *token_ids(const reference *ref)
{
    return (const int *)ref->tokens; /* int32_t and int are the same here */
}

/* All 512 tokens in one block: one sgemm per weight matrix. */
static float *logits_by_single_prefill(fixture *fx)
{
    const reference *ref = &fx->ref;
    const eng_state_options options = {.kv_capacity = ref->n_tokens,
                                       .max_block_rows = ref->n_tokens};
    eng_state *state;
    eng_error err = {{0}};
    assert_int_equal(eng_state_create(&state, &fx->model, &options, &err), ENG_OK);
    assert_int_equal(eng_state_max_block_rows(state), ref->n_tokens);
    float *logits = malloc((size_t)ref->n_rows * (size_t)ref->vocab * sizeof *logits);
    assert_non_null(logits);
    assert_int_equal(eng_forward(state, token_ids(ref), ref->n_tokens, logits, ref->n_rows,
                                 &err), ENG_OK);
    assert_int_equal(eng_state_position(state), ref->n_tokens);
    eng_state_destroy(&state);
    assert_null(state);
    return logits;
}

/* A shorter prompt, then one token at a time (the decode path). */
static float *logits_by_prefill_then_decode(fixture *fx)
{
    const reference *ref = &fx->ref;
    const int n_prompt = ref->n_tokens - DECODE_STEPS;
    assert_true(DECODE_STEPS >= ref->n_rows);
    const eng_state_options options = {.kv_capacity = ref->n_tokens};
    eng_state *state;
    eng_error err = {{0}};
    assert_int_equal(eng_state_create(&state, &fx->model, &options, &err), ENG_OK);
    const int *ids = token_ids(ref);
    assert_int_equal(eng_forward(state, ids, n_prompt, NULL, 0, &err), ENG_OK);
    float *logits = malloc((size_t)ref->n_rows * (size_t)ref->vocab * sizeof *logits);
    assert_non_null(logits);
    const int first_kept = ref->n_tokens - ref->n_rows;
    for (int t = n_prompt; t < ref->n_tokens; t++) {
        float *row = t >= first_kept ? logits + (size_t)(t - first_kept) * ref->vocab : NULL;
        assert_int_equal(eng_forward(state, &ids[t], 1, row, row ? 1 : 0, &err), ENG_OK);
    }
    for (int l = 0; l < fx->model.config.n_layers; l++)
        assert_int_equal(eng_state_slot_count(state, l), ref->n_tokens);
    eng_state_destroy(&state);
    return logits;
}

static void test_prefill_and_decode_match_reference(void **state)
{
    fixture *fx = *state;
    const size_t n = (size_t)fx->ref.n_rows * (size_t)fx->ref.vocab;
    float *prefill = logits_by_single_prefill(fx);
    float *decode = logits_by_prefill_then_decode(fx);
    const double prefill_error = max_abs_difference(prefill, fx->ref.logits, n);
    const double decode_error = max_abs_difference(decode, fx->ref.logits, n);
    const double disagreement = max_abs_difference(prefill, decode, n);
    print_message("max |logit - reference|: prefill %.3g, prefill+decode %.3g; "
                  "prefill vs decode %.3g\n", prefill_error, decode_error, disagreement);
    assert_true(prefill_error <= TOLERANCE);
    assert_true(decode_error <= TOLERANCE);
    assert_true(disagreement <= TOLERANCE);
    free(prefill);
    free(decode);
}

/* The automatic block size splits long prompts; the result must not change. */
static void test_blocked_prefill_matches_reference(void **state)
{
    fixture *fx = *state;
    const reference *ref = &fx->ref;
    const eng_state_options options = {.kv_capacity = ref->n_tokens, .max_block_rows = 100};
    eng_state *s;
    assert_int_equal(eng_state_create(&s, &fx->model, &options, NULL), ENG_OK);
    const size_t n = (size_t)ref->n_rows * (size_t)ref->vocab;
    float *logits = malloc(n * sizeof *logits);
    assert_non_null(logits);
    assert_int_equal(eng_forward(s, token_ids(ref), ref->n_tokens, logits, ref->n_rows, NULL),
                     ENG_OK);
    const double error = max_abs_difference(logits, ref->logits, n);
    print_message("max |logit - reference| with 100-row blocks: %.3g\n", error);
    assert_true(error <= TOLERANCE);
    free(logits);
    eng_state_destroy(&s);
}

static void test_full_cache_refuses_extra_tokens(void **state)
{
    fixture *fx = *state;
    const eng_state_options options = {.kv_capacity = 4};
    eng_state *s;
    assert_int_equal(eng_state_create(&s, &fx->model, &options, NULL), ENG_OK);
    const int ids[5] = {1, 2, 3, 4, 5};
    eng_error err = {{0}};
    assert_int_equal(eng_forward(s, ids, 5, NULL, 0, &err), ENG_EFULL);
    assert_int_equal(eng_state_position(s), 0);
    assert_int_equal(eng_forward(s, ids, 4, NULL, 0, &err), ENG_OK);
    assert_int_equal(eng_forward(s, ids, 1, NULL, 0, &err), ENG_EFULL);
    const int out_of_range = fx->model.config.vocab_size;
    eng_state_reset(s);
    assert_int_equal(eng_forward(s, &out_of_range, 1, NULL, 0, &err), ENG_EINVAL);
    eng_state_destroy(&s);
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "MODEL_BIN REFERENCE_LOGITS_BIN", &model_path, &reference_path))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prefill_and_decode_match_reference),
        cmocka_unit_test(test_blocked_prefill_matches_reference),
        cmocka_unit_test(test_full_cache_refuses_extra_tokens),
    };
    return cmocka_run_group_tests_name("engine logits", tests, setup, teardown);
}
