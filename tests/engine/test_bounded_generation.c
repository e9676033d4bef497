/* Long generation with libkeyformer managing the engine's KV cache:
 * (1) a budget no smaller than everything the run will hold evicts nothing,
 *     so the greedy output and its logits equal the full-cache run's;
 * (2) with a budget of 256 slots, 1,500 generated tokens never hold more
 *     than 257 slots per KV head, and the process's memory does not grow
 *     with the number of tokens generated;
 * (3) evicting every 16 tokens (evict_interval) holds 256 .. 271 slots in
 *     the library and the engine alike;
 * (4) KF_ORDER_ANY gives the logits of KF_ORDER_POSITION to rounding.
 * The prompt is the 512-token sequence of reference-logits.bin (a dev
 * speech, BOS first), so no external data is needed.
 *
 * usage: test-engine-bounded MODEL_BIN REFERENCE_LOGITS_BIN */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <keyformer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "engine_keyformer.h"
#include "forward.h"
#include "model.h"
#include "reference_fixture.h"
#include "test_args.h"

enum { PROMPT = 300 };

/* AddressSanitizer's shadow memory and quarantine make the resident size
 * say nothing about the program's own allocations (leaks are its job). */
#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Keyformer defaults for the bundled model, an absolute budget, seed 7. */
static kf_config keyformer_config(const fixture *fx, uint32_t budget,
                                  uint32_t capacity)
{
    const eng_model_config *c = &fx->model.config;
    kf_config cfg;
    kf_config_spec_exact(&cfg); /* checks ascending positions */
    cfg.n_layers = (uint32_t)c->n_layers;
    cfg.n_heads = (uint32_t)c->n_heads;
    cfg.n_kv_heads = (uint32_t)c->n_kv_heads;
    cfg.head_dim = (uint32_t)c->head_size;
    cfg.capacity = capacity;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = budget;
    cfg.seed = 7;
    return cfg;
}

static kf_cache *keyformer_cache(const fixture *fx, uint32_t budget,
                                 uint32_t capacity)
{
    kf_config cfg = keyformer_config(fx, budget, capacity);
    kf_cache *cache = NULL;
    assert_int_equal(kf_cache_create(&cache, &cfg), KF_OK);
    return cache;
}

/* Greedy generation of `steps` tokens after the prompt; every step's
 * logits go to all_logits, and check(state, step) runs after each step. */
static void generate(fixture *fx, int capacity, engine_keyformer *glue, int steps,
                     float *all_logits, void (*check)(const eng_state *, int))
{
    const int vocab = fx->model.config.vocab_size;
    const eng_state_options options = {
        .kv_capacity = capacity, .n_threads = 1,
        .hook = glue ? engine_keyformer_hook : NULL, .hook_user_data = glue};
    eng_state *s;
    eng_error err = {{0}};
    assert_int_equal(eng_state_create(&s, &fx->model, &options, &err), ENG_OK);
    float *logits = malloc((size_t)vocab * sizeof *logits);
    assert_non_null(logits);
    if (eng_forward(s, fx->ids, PROMPT, logits, 1, &err) != ENG_OK)
        fail_msg("prompt: %s", err.message);
    for (int t = 0; t < steps; t++) {
        const int token = reference_argmax(logits, vocab);
        if (all_logits)
            memcpy(all_logits + (size_t)t * vocab, logits, (size_t)vocab * sizeof *logits);
        if (eng_forward(s, &token, 1, logits, 1, &err) != ENG_OK)
            fail_msg("step %d: %s", t, err.message);
        if (check)
            check(s, t);
    }
    if (glue)
        assert_null(glue->failed_call);
    free(logits);
    eng_state_destroy(&s);
}

static void test_large_budget_equals_full_cache(void **state)
{
    fixture *fx = *state;
    enum { STEPS = 64, BUDGET = PROMPT + STEPS };
    const size_t n = (size_t)STEPS * fx->model.config.vocab_size;
    float *full = malloc(n * sizeof(float)), *managed = malloc(n * sizeof(float));
    assert_non_null(full);
    assert_non_null(managed);
    generate(fx, BUDGET + 1, NULL, STEPS, full, NULL);
    engine_keyformer glue = {.cache = keyformer_cache(fx, BUDGET, BUDGET + 1)};
    generate(fx, BUDGET + 1, &glue, STEPS, managed, NULL);
    assert_memory_equal(full, managed, n * sizeof(float));
    kf_cache_destroy(&glue.cache);
    free(full);
    free(managed);
}

static int most_slots;

static void track_slots(const eng_state *s, int step)
{
    (void)step;
    /* after a step the layer holds k; during it the glue saw k + 1 */
    for (int l = 0; l < 64; l++) {
        const int n = eng_state_slot_count(s, l);
        most_slots = n > most_slots ? n : most_slots;
    }
}

static long max_rss_kib(void)
{
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_maxrss;
}

static void rss_after_warmup(const eng_state *s, int step)
{
    static long warm;
    track_slots(s, step);
    if (step == 100)
        warm = max_rss_kib();
    if (step == 1499 && !SANITIZED)
        /* nothing in the library or the engine grows per token */
        assert_true(max_rss_kib() - warm < 512);
}

static void test_budget_bounds_slots_and_memory(void **state)
{
    fixture *fx = *state;
    enum { BUDGET = 256, STEPS = 1500 };
    engine_keyformer glue = {.cache = keyformer_cache(fx, BUDGET, PROMPT)};
    most_slots = 0;
    generate(fx, PROMPT, &glue, STEPS, NULL, rss_after_warmup);
    assert_true(most_slots <= BUDGET + 1);
    for (int l = 0; l < fx->model.config.n_layers; l++)
        for (int g = 0; g < fx->model.config.n_kv_heads; g++) {
            uint32_t n;
            assert_int_equal(kf_slot_count(glue.cache, l, g, &n), KF_OK);
            assert_int_equal(n, BUDGET);
        }
    uint32_t steps;
    int32_t next;
    assert_int_equal(kf_layer_progress(glue.cache, 0, &steps, &next), KF_OK);
    assert_int_equal(steps, STEPS);
    assert_int_equal(next, PROMPT + STEPS);
    kf_cache_destroy(&glue.cache);
}

static int slot_pattern_ok;

/* evict_interval 16, budget 256: after decode step t (0-based) every layer
 * holds 256 + (t + 1) % 16 slots: 16 tokens arrive, then 16 leave at once */
static void track_batched(const eng_state *s, int step)
{
    for (int l = 0; l < 64; l++) {
        const int n = eng_state_slot_count(s, l);
        if (n > 0 && n != 256 + (step + 1) % 16)
            slot_pattern_ok = 0;
    }
}

static void test_batched_eviction(void **state)
{
    fixture *fx = *state;
    enum { BUDGET = 256, EVERY = 16, STEPS = 200 };
    const eng_model_config *c = &fx->model.config;
    kf_config cfg = keyformer_config(fx, BUDGET, PROMPT);
    cfg.evict_interval = EVERY;
    engine_keyformer glue = {0};
    assert_int_equal(kf_cache_create(&glue.cache, &cfg), KF_OK);
    slot_pattern_ok = 1;
    generate(fx, PROMPT, &glue, STEPS, NULL, track_batched);
    assert_true(slot_pattern_ok);
    for (int l = 0; l < c->n_layers; l++)
        for (int g = 0; g < c->n_kv_heads; g++) {
            const int32_t *pos;
            uint32_t n;
            assert_int_equal(kf_slot_positions(glue.cache, l, g, &pos, &n), KF_OK);
            assert_int_equal(n, BUDGET + STEPS % EVERY);
            for (uint32_t j = 1; j < n; j++)
                assert_true(pos[j] > pos[j - 1]);
            /* the window: the newest positions are all held */
            assert_int_equal(pos[n - 1], PROMPT + STEPS - 1);
        }
    kf_cache_destroy(&glue.cache);
}

/* Teacher-forced steps over ids[PROMPT ..], every step's logits kept. */
static void forced(fixture *fx, engine_keyformer *glue, int steps, float *all_logits)
{
    const int vocab = fx->model.config.vocab_size;
    const eng_state_options options = {
        .kv_capacity = PROMPT, .n_threads = 1,
        .hook = engine_keyformer_hook, .hook_user_data = glue};
    eng_state *s;
    eng_error err = {{0}};
    assert_int_equal(eng_state_create(&s, &fx->model, &options, &err), ENG_OK);
    if (eng_forward(s, fx->ids, PROMPT, all_logits, 1, &err) != ENG_OK)
        fail_msg("prompt: %s", err.message);
    for (int t = 1; t <= steps; t++)
        if (eng_forward(s, &fx->ids[PROMPT + t - 1], 1, all_logits + (size_t)t * vocab, 1,
                        &err) != ENG_OK)
            fail_msg("step %d: %s", t, err.message);
    assert_null(glue->failed_call);
    eng_state_destroy(&s);
}

/* KF_ORDER_ANY refills evicted slots from the end instead of shifting:
 * the engine's attention sees the same tokens in another order, so its
 * logits agree with KF_ORDER_POSITION's to rounding, and every lane
 * holds the same positions. */
static void test_any_order_matches_position(void **state)
{
    fixture *fx = *state;
    enum { BUDGET = 128, STEPS = 150 };
    const eng_model_config *c = &fx->model.config;
    const size_t n = (size_t)(STEPS + 1) * c->vocab_size;
    float *ordered = malloc(n * sizeof(float)), *any = malloc(n * sizeof(float));
    assert_non_null(ordered);
    assert_non_null(any);
    engine_keyformer a = {.cache = keyformer_cache(fx, BUDGET, PROMPT)};
    forced(fx, &a, STEPS, ordered);
    kf_config cfg = keyformer_config(fx, BUDGET, PROMPT);
    cfg.slot_order = KF_ORDER_ANY;
    engine_keyformer b = {0};
    assert_int_equal(kf_cache_create(&b.cache, &cfg), KF_OK);
    forced(fx, &b, STEPS, any);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double d = ordered[i] - any[i];
        worst = d > worst ? d : -d > worst ? -d : worst;
    }
    print_message("KF_ORDER_ANY vs POSITION: largest logit difference %.3g "
                  "over %d steps\n", worst, STEPS + 1);
    assert_true(worst < 1e-3);
    for (int l = 0; l < c->n_layers; l++)
        for (int g = 0; g < c->n_kv_heads; g++) {
            const int32_t *pa, *pb;
            uint32_t na, nb;
            assert_int_equal(kf_slot_positions(a.cache, l, g, &pa, &na), KF_OK);
            assert_int_equal(kf_slot_positions(b.cache, l, g, &pb, &nb), KF_OK);
            assert_int_equal(na, nb);
            /* the same set: every position of a appears in b */
            for (uint32_t i = 0; i < na; i++) {
                uint32_t j = 0;
                while (j < nb && pb[j] != pa[i])
                    j++;
                assert_true(j < nb);
            }
        }
    kf_cache_destroy(&a.cache);
    kf_cache_destroy(&b.cache);
    free(ordered);
    free(any);
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "MODEL_BIN REFERENCE_LOGITS_BIN", &model_path, &reference_path))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_large_budget_equals_full_cache),
        cmocka_unit_test(test_budget_bounds_slots_and_memory),
        cmocka_unit_test(test_batched_eviction),
        cmocka_unit_test(test_any_order_matches_position),
    };
    return cmocka_run_group_tests_name("bounded generation", tests, reference_fixture_setup,
                                       reference_fixture_teardown);
}
