/* The engine's attention mask (eng_state_layer_mask), which hides the
 * holes of per-KV-head budgets: on the bundled model, masking three
 * prompt slots in every layer and KV head gives the logits of a cache
 * that removed them (within float rounding: the products run over rows
 * in another order); an all-zero mask changes nothing, bit for bit; and
 * libkeyformer's adaptive per-head budgets run end to end through
 * engine_keyformer with every head holding R rows and the layer's live
 * total n_kv * k.
 *
 * usage: test-engine-attention-mask MODEL_BIN */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <keyformer.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine_keyformer.h"
#include "forward.h"
#include "model.h"
#include "test_args.h"

enum { PROMPT = 96, STEPS = 8, CAPACITY = 128 };
static const int hidden[3] = { 5, 17, 30 }; /* prompt slots to hide */

static const char *model_path;

typedef enum hide_mode { HIDE_NONE, HIDE_MASK, HIDE_REMOVE, HIDE_ZERO_MASK } hide_mode;

/* At the end of the prompt, hides the slots by mask or by removal. */
static int hide_hook(void *user_data, const eng_layer_event *e)
{
    const hide_mode mode = *(const hide_mode *)user_data;
    /* the prompt's last block (the prompt may come in several) */
    if (e->n_rows == 1 || e->more_rows_follow || mode == HIDE_NONE)
        return e->n_slots;
    if (mode == HIDE_MASK || mode == HIDE_ZERO_MASK) {
        unsigned char *mask = eng_state_layer_mask(e->state, e->layer);
        memset(mask, 0, (size_t)e->n_kv_heads * (size_t)e->capacity);
        for (int g = 0; g < e->n_kv_heads && mode == HIDE_MASK; g++)
            for (int i = 0; i < 3; i++)
                mask[(size_t)g * (size_t)e->capacity + (size_t)hidden[i]] = 1;
        return e->n_slots;
    }
    const size_t hs = (size_t)e->head_size;
    for (int g = 0; g < e->n_kv_heads; g++) {
        float *k = e->keys + (size_t)g * (size_t)e->capacity * hs;
        float *v = e->values + (size_t)g * (size_t)e->capacity * hs;
        int to = 0;
        for (int j = 0; j < e->n_slots; j++) {
            if (j == hidden[0] || j == hidden[1] || j == hidden[2])
                continue;
            memmove(k + (size_t)to * hs, k + (size_t)j * hs, hs * sizeof *k);
            memmove(v + (size_t)to * hs, v + (size_t)j * hs, hs * sizeof *v);
            to++;
        }
    }
    return e->n_slots - 3;
}

static int *prompt_ids(const eng_model *m)
{
    int *ids = malloc((PROMPT + STEPS) * sizeof *ids);
    assert_non_null(ids);
    for (int i = 0; i < PROMPT + STEPS; i++)
        ids[i] = 1 + (i * 37 + 11) % (m->config.vocab_size - 1);
    return ids;
}

/* The logits of STEPS decode steps after the prompt. */
static void run(const eng_model *m, eng_layer_hook hook, void *data, float *out)
{
    const eng_state_options o = {.kv_capacity = CAPACITY, .n_threads = 1, .hook = hook,
                                 .hook_user_data = data};
    eng_state *s;
    assert_int_equal(eng_state_create(&s, m, &o, NULL), ENG_OK);
    int *ids = prompt_ids(m);
    eng_error err = {{0}};
    assert_int_equal(eng_forward(s, ids, PROMPT, NULL, 0, &err), ENG_OK);
    const size_t vocab = (size_t)m->config.vocab_size;
    for (int t = 0; t < STEPS; t++)
        assert_int_equal(eng_forward(s, &ids[PROMPT + t], 1, out + t * vocab, 1, &err),
                         ENG_OK);
    free(ids);
    eng_state_destroy(&s);
}

static void test_mask_equals_removal(void **state)
{
    const eng_model *m = *state;
    const size_t n = (size_t)STEPS * (size_t)m->config.vocab_size;
    float *masked = malloc(n * sizeof *masked), *removed = malloc(n * sizeof *removed);
    float *plain = malloc(n * sizeof *plain), *zero = malloc(n * sizeof *zero);
    assert_true(masked && removed && plain && zero);
    hide_mode mode = HIDE_MASK;
    run(m, hide_hook, &mode, masked);
    mode = HIDE_REMOVE;
    run(m, hide_hook, &mode, removed);
    mode = HIDE_NONE;
    run(m, hide_hook, &mode, plain);
    mode = HIDE_ZERO_MASK;
    run(m, hide_hook, &mode, zero);
    double worst = 0.0, moved = 0.0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)masked[i] - removed[i]));
        moved = fmax(moved, fabs((double)masked[i] - plain[i]));
    }
    assert_true(worst < 1e-4);
    assert_true(moved > 1e-3); /* hiding the slots does change the output */
    assert_memory_equal(zero, plain, n * sizeof *plain);
    free(masked), free(removed), free(plain), free(zero);
}

/* libkeyformer's adaptive budgets through the glue: R rows per head, the
 * live ones adding up to n_kv * k per layer, after every step. */
static void test_adaptive_budgets_end_to_end(void **state)
{
    const eng_model *m = *state;
    const eng_model_config *c = &m->config;
    kf_config cfg;
    assert_int_equal(kf_config_default(&cfg), KF_OK);
    cfg.n_layers = (uint32_t)c->n_layers;
    cfg.n_heads = (uint32_t)c->n_heads;
    cfg.n_kv_heads = (uint32_t)c->n_kv_heads;
    cfg.head_dim = (uint32_t)c->head_size;
    cfg.capacity = CAPACITY;
    cfg.policy = KF_POLICY_H2O;
    cfg.budget_ratio = 0.25;
    cfg.head_budget = KF_HEAD_BUDGET_ADAPTIVE;
    engine_keyformer glue = {0};
    assert_int_equal(kf_cache_create(&glue.cache, &cfg), KF_OK);
    float *logits = malloc((size_t)STEPS * (size_t)c->vocab_size * sizeof *logits);
    assert_non_null(logits);
    run(m, engine_keyformer_hook, &glue, logits);
    assert_null(glue.failed_call);
    uint32_t k, w;
    assert_int_equal(kf_budget(glue.cache, &k, &w), KF_OK);
    for (int l = 0; l < c->n_layers; l++) {
        uint32_t live = 0, rows = 0;
        for (int g = 0; g < c->n_kv_heads; g++) {
            const int32_t *pos;
            uint32_t n;
            assert_int_equal(kf_slot_positions(glue.cache, l, g, &pos, &n), KF_OK);
            if (g == 0)
                rows = n;
            assert_int_equal(n, rows);
            for (uint32_t j = 0; j < n; j++)
                live += pos[j] >= 0;
        }
        assert_int_equal(live, (uint32_t)c->n_kv_heads * k);
    }
    for (size_t i = 0; i < (size_t)STEPS * (size_t)c->vocab_size; i++)
        assert_true(isfinite(logits[i]));
    free(logits);
    kf_cache_destroy(&glue.cache);
}

static int setup(void **state)
{
    eng_model *m = calloc(1, sizeof *m);
    if (!m || eng_model_open(m, model_path, NULL) != ENG_OK)
        return -1;
    *state = m;
    return 0;
}

static int teardown(void **state)
{
    eng_model *m = *state;
    eng_model_close(m);
    free(m);
    return 0;
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "MODEL_BIN", &model_path))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mask_equals_removal),
        cmocka_unit_test(test_adaptive_budgets_end_to_end),
    };
    return cmocka_run_group_tests_name("engine attention mask", tests, setup, teardown);
}
