/* The forward pass against a naive double-precision transformer on random
 * models of several shapes (MHA, GQA, MQA; tied and untied classifiers):
 * one-block prefill, small blocks, and token-by-token decoding must agree;
 * and with a hook that keeps only the most recent slots, decoding must match
 * a reference whose queries see only those positions, past the model's
 * trained context (slots are not positions).
 *
 * usage: test-engine-forward-reference */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "naive_transformer.h"
#include "synthetic_model.h"

static const double TOLERANCE = 1e-4;

/* dim, hidden, layers, heads, kv heads, vocab (negative: untied), seq_len */
static const int32_t SHAPES[][7] = {
    {16, 24, 2, 4, 2, -20, 8}, /* GQA, untied */
    {12, 20, 1, 3, 3, 20, 8},  /* MHA, head size 4 */
    {32, 40, 3, 4, 1, -30, 8}, /* MQA */
};
enum { N_SHAPES = sizeof SHAPES / sizeof SHAPES[0], N_TOKENS = 24 };

typedef struct fixture {
    char path[256];
    eng_model model;
    int tokens[N_TOKENS];
} fixture;

static int open_shape(fixture *fx, int shape)
{
    if (synthetic_model_file(fx->path, sizeof fx->path, SHAPES[shape], 100 + shape) != 0)
        return -1;
    eng_error err = {{0}};
    if (eng_model_open(&fx->model, fx->path, &err) != ENG_OK) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    for (int i = 0; i < N_TOKENS; i++)
        fx->tokens[i] = (i * 7 + 3) % fx->model.config.vocab_size;
    return 0;
}

static void close_shape(fixture *fx)
{
    eng_model_close(&fx->model);
    unlink(fx->path);
}

/* Reference logits of every position, positions below prompt_len seeing
 * everything before them and later ones only the last `window` positions
 * before them (window < 0: no limit). [N_TOKENS][vocab] */
static double *reference_logits(const fixture *fx, int prompt_len, int window)
{
    const int vocab = fx->model.config.vocab_size;
    naive_transformer nt;
    assert_int_equal(naive_init(&nt, &fx->model, N_TOKENS), 0);
    double *logits = malloc((size_t)N_TOKENS * vocab * sizeof *logits);
    assert_non_null(logits);
    for (int p = 0; p < N_TOKENS; p++) {
        const int first = p < prompt_len || window < 0 || p < window ? 0 : p - window;
        naive_step(&nt, fx->tokens[p], first, logits + (size_t)p * vocab);
    }
    naive_free(&nt);
    return logits;
}

static double max_error(const float *got, const double *expected, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)got[i] - expected[i]);
        worst = d > worst || isnan(d) ? d : worst;
    }
    return worst;
}

/* Runs the tokens in calls of `step` tokens and returns all logits. */
static float *engine_logits(fixture *fx, int block_rows, int step)
{
    const int vocab = fx->model.config.vocab_size;
    const eng_state_options options = {.kv_capacity = N_TOKENS, .max_block_rows = block_rows};
    eng_state *s;
    assert_int_equal(eng_state_create(&s, &fx->model, &options, NULL), ENG_OK);
    float *logits = malloc((size_t)N_TOKENS * vocab * sizeof *logits);
    assert_non_null(logits);
    for (int done = 0; done < N_TOKENS; done += step) {
        const int n = done + step <= N_TOKENS ? step : N_TOKENS - done;
        assert_int_equal(eng_forward(s, fx->tokens + done, n, logits + (size_t)done * vocab, n,
                                     NULL), ENG_OK);
    }
    eng_state_destroy(&s);
    return logits;
}

static void test_full_cache_matches_naive_reference(void **state)
{
    (void)state;
    for (int shape = 0; shape < N_SHAPES; shape++) {
        fixture fx;
        assert_int_equal(open_shape(&fx, shape), 0);
        const size_t n = (size_t)N_TOKENS * fx.model.config.vocab_size;
        double *expected = reference_logits(&fx, N_TOKENS, -1);
        /* (block rows, tokens per call): one block; blocks of 5; decode. */
        const int ways[3][2] = {{N_TOKENS, N_TOKENS}, {5, N_TOKENS}, {N_TOKENS, 1}};
        for (int way = 0; way < 3; way++) {
            float *got = engine_logits(&fx, ways[way][0], ways[way][1]);
            const double error = max_error(got, expected, n);
            if (error > TOLERANCE)
                fail_msg("shape %d, way %d: max error %g", shape, way, error);
            free(got);
        }
        free(expected);
        close_shape(&fx);
    }
}

/* A hook keeping the `window` most recent slots once a call's rows are
 * done, checking on the way what the engine reports. */
typedef struct window_hook {
    int window;
    int calls;
    int bad_events;
} window_hook;

static int keep_recent_slots(void *user, const eng_layer_event *e)
{
    window_hook *hook = user;
    hook->calls++;
    const int n_old = e->n_slots - e->n_rows;
    for (int h = 0; h < e->n_heads; h++)
        for (int i = 0; i < e->n_rows; i++)
            for (int j = 0; j < e->n_slots; j++) {
                const float x = e->logits[((size_t)h * e->n_rows + i) * e->n_slots + j];
                const int masked = j > n_old + i;
                hook->bad_events += masked ? !(isinf(x) && x < 0) : !isfinite(x);
            }
    if (e->more_rows_follow || e->n_slots <= hook->window)
        return e->n_slots;
    const size_t hs = (size_t)e->head_size;
    const size_t dropped = (size_t)(e->n_slots - hook->window);
    for (int g = 0; g < e->n_kv_heads; g++) {
        float *k = e->keys + (size_t)g * e->capacity * hs;
        float *v = e->values + (size_t)g * e->capacity * hs;
        memmove(k, k + dropped * hs, (size_t)hook->window * hs * sizeof *k);
        memmove(v, v + dropped * hs, (size_t)hook->window * hs * sizeof *v);
    }
    return hook->window;
}

static void test_compacted_cache_keeps_true_positions(void **state)
{
    (void)state;
    enum { PROMPT = 8, WINDOW = 5 };
    for (int shape = 0; shape < N_SHAPES; shape++) {
        fixture fx;
        assert_int_equal(open_shape(&fx, shape), 0);
        const eng_model_config *c = &fx.model.config;
        const int vocab = c->vocab_size;
        double *expected = reference_logits(&fx, PROMPT, WINDOW);
        window_hook hook = {.window = WINDOW};
        /* Just enough slots for the prompt, then window + 1 while decoding. */
        const eng_state_options options = {.kv_capacity = PROMPT, .max_block_rows = 3,
                                           .hook = keep_recent_slots, .hook_user_data = &hook};
        eng_state *s;
        assert_int_equal(eng_state_create(&s, &fx.model, &options, NULL), ENG_OK);
        float *logits = malloc((size_t)vocab * sizeof *logits);
        assert_non_null(logits);
        assert_int_equal(eng_forward(s, fx.tokens, PROMPT, logits, 1, NULL), ENG_OK);
        double error = max_error(logits, expected + (size_t)(PROMPT - 1) * vocab, (size_t)vocab);
        for (int p = PROMPT; p < N_TOKENS; p++) {
            assert_int_equal(eng_forward(s, &fx.tokens[p], 1, logits, 1, NULL), ENG_OK);
            const double e = max_error(logits, expected + (size_t)p * vocab, (size_t)vocab);
            error = e > error ? e : error;
            for (int l = 0; l < c->n_layers; l++)
                assert_int_equal(eng_state_slot_count(s, l), WINDOW);
        }
        assert_int_equal(eng_state_position(s), N_TOKENS); /* beyond seq_len 8 */
        assert_int_equal(hook.bad_events, 0);
        /* Three prompt blocks (3 + 3 + 2 rows), then one call per token. */
        assert_int_equal(hook.calls, c->n_layers * (3 + N_TOKENS - PROMPT));
        if (error > TOLERANCE)
            fail_msg("shape %d: max error %g with a %d-slot window", shape, error, WINDOW);
        free(logits);
        free(expected);
        eng_state_destroy(&s);
        close_shape(&fx);
    }
}

static int claim_too_many_slots(void *user, const eng_layer_event *e)
{
    (void)user;
    return e->n_slots + 1;
}

static void test_hook_errors_are_reported(void **state)
{
    (void)state;
    fixture fx;
    assert_int_equal(open_shape(&fx, 0), 0);
    const eng_state_options options = {.kv_capacity = 8, .hook = claim_too_many_slots};
    eng_state *s;
    assert_int_equal(eng_state_create(&s, &fx.model, &options, NULL), ENG_OK);
    eng_error err = {{0}};
    assert_int_equal(eng_forward(s, fx.tokens, 4, NULL, 0, &err), ENG_EHOOK);
    assert_non_null(strstr(err.message, "hook"));
    /* With no hook and no room, the call is refused before any work. */
    eng_state_set_hook(s, NULL, NULL);
    eng_state_reset(s);
    assert_int_equal(eng_forward(s, fx.tokens, 8, NULL, 0, NULL), ENG_OK);
    assert_int_equal(eng_forward(s, fx.tokens, 1, NULL, 0, &err), ENG_EFULL);
    assert_int_equal(eng_state_position(s), 8);
    eng_state_destroy(&s);
    close_shape(&fx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_full_cache_matches_naive_reference),
        cmocka_unit_test(test_compacted_cache_keeps_true_positions),
        cmocka_unit_test(test_hook_errors_are_reported),
    };
    return cmocka_run_group_tests_name("engine forward vs naive reference", tests, NULL, NULL);
}
