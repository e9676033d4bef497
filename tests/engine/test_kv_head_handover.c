/* The engine's per-KV-head hooks and the glue's two ways of handing logits
 * to libkeyformer, on the bundled model:
 * (1) a prompt of 300 ids from reference-logits.bin (in blocks of 128 rows,
 *     so rounds of 128, 128 and 44 rows) and 32 greedy steps give the same
 *     tokens, logits, slot positions and scores, bit for bit, whether the
 *     logits go over one KV head at a time (kf_observe_begin /
 *     kf_observe_kv_head / kf_observe_end, from the attention's threads) or
 *     a whole layer at once (kf_observe_logits), for Keyformer and H2O on
 *     1 and 2 threads;
 * (2) the engine calls the KV-head hook once per KV head of every layer and
 *     block, with the logits the layer hook then sees;
 * (3) a refused KV head, or a round that misses one, stops eng_forward with
 *     ENG_EHOOK, the glue names the library call, and no round stays open.
 *
 * usage: test-engine-kv-head-handover MODEL_BIN REFERENCE_LOGITS_BIN */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <keyformer.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine_keyformer.h"
#include "forward.h"
#include "model.h"
#include "reference_fixture.h"
#include "test_args.h"

enum { PROMPT = 300, STEPS = 32, BLOCK_ROWS = 128 };

static kf_cache *library_cache(const fixture *fx, kf_policy policy, int threads,
                               uint32_t n_kv_heads)
{
    const eng_model_config *c = &fx->model.config;
    kf_config cfg;
    assert_int_equal(kf_config_default(&cfg), KF_OK);
    cfg.n_layers = (uint32_t)c->n_layers;
    cfg.n_heads = (uint32_t)c->n_heads;
    cfg.n_kv_heads = n_kv_heads;
    cfg.head_dim = (uint32_t)c->head_size;
    cfg.capacity = PROMPT + STEPS;
    cfg.policy = policy;
    cfg.budget_ratio = 0.5;
    cfg.tau_steps = STEPS;
    cfg.n_threads = (uint32_t)threads;
    cfg.seed = 11;
    kf_cache *cache = NULL;
    assert_int_equal(kf_cache_create(&cache, &cfg), KF_OK);
    return cache;
}

/* One run's results: the prompt's last logits row and each step's, the
 * greedy tokens, and the library's slot positions and scores at the end. */
typedef struct run_result {
    float *logits;  /* [STEPS + 1][vocab] */
    int tokens[STEPS];
    int32_t *positions; /* [n_layers][n_kv_heads][PROMPT + STEPS] */
    float *scores;      /* same layout */
} run_result;

static void run_result_alloc(const fixture *fx, run_result *r)
{
    const eng_model_config *c = &fx->model.config;
    const size_t slots = (size_t)c->n_layers * c->n_kv_heads * (PROMPT + STEPS);
    r->logits = calloc((size_t)(STEPS + 1) * c->vocab_size, sizeof *r->logits);
    r->positions = calloc(slots, sizeof *r->positions);
    r->scores = calloc(slots, sizeof *r->scores);
    assert_true(r->logits && r->positions && r->scores);
}

static void run_result_free(run_result *r)
{
    free(r->logits);
    free(r->positions);
    free(r->scores);
}

static void save_library_state(const fixture *fx, const kf_cache *cache, run_result *r)
{
    const eng_model_config *c = &fx->model.config;
    for (int l = 0; l < c->n_layers; l++)
        for (int g = 0; g < c->n_kv_heads; g++) {
            const size_t at = ((size_t)l * c->n_kv_heads + g) * (PROMPT + STEPS);
            const int32_t *pos;
            const float *scores;
            uint32_t n, n_scores;
            assert_int_equal(kf_slot_positions(cache, l, g, &pos, &n), KF_OK);
            assert_int_equal(kf_slot_scores(cache, l, g, &scores, &n_scores), KF_OK);
            assert_int_equal(n, n_scores);
            memcpy(r->positions + at, pos, n * sizeof *pos);
            memcpy(r->scores + at, scores, n * sizeof *scores);
        }
}

/* The prompt, then STEPS greedy steps, with the library per layer or per
 * KV head. */
static void generate(fixture *fx, kf_policy policy, int threads, bool per_kv_head,
                     run_result *r)
{
    const int vocab = fx->model.config.vocab_size;
    engine_keyformer glue = {
        .cache = library_cache(fx, policy, threads, (uint32_t)fx->model.config.n_kv_heads)};
    const eng_state_options options = {
        .kv_capacity = PROMPT + STEPS, .max_block_rows = BLOCK_ROWS, .n_threads = threads,
        .hook = engine_keyformer_hook, .hook_user_data = &glue,
        .kv_head_hooks = per_kv_head ? engine_keyformer_kv_head_hooks(&glue)
                                     : (eng_kv_head_hooks){0}};
    eng_state *s;
    eng_error err = {{0}};
    assert_int_equal(eng_state_create(&s, &fx->model, &options, &err), ENG_OK);
    if (eng_forward(s, fx->ids, PROMPT, r->logits, 1, &err) != ENG_OK)
        fail_msg("prompt: %s", err.message);
    for (int t = 0; t < STEPS; t++) {
        float *logits = r->logits + (size_t)t * vocab;
        r->tokens[t] = reference_argmax(logits, vocab);
        if (eng_forward(s, &r->tokens[t], 1, logits + vocab, 1, &err) != ENG_OK)
            fail_msg("step %d: %s", t, err.message);
    }
    assert_null(glue.failed_call);
    save_library_state(fx, glue.cache, r);
    kf_cache_destroy(&glue.cache);
    eng_state_destroy(&s);
}

static void test_kv_heads_equal_whole_layer(void **state)
{
    fixture *fx = *state;
    const eng_model_config *c = &fx->model.config;
    const size_t n_logits = (size_t)(STEPS + 1) * c->vocab_size;
    const size_t n_slots = (size_t)c->n_layers * c->n_kv_heads * (PROMPT + STEPS);
    const kf_policy policies[] = {KF_POLICY_KEYFORMER, KF_POLICY_H2O};
    for (size_t p = 0; p < sizeof policies / sizeof policies[0]; p++)
        for (int threads = 1; threads <= 2; threads++) {
            run_result layer = {0}, kv_head = {0};
            run_result_alloc(fx, &layer);
            run_result_alloc(fx, &kv_head);
            generate(fx, policies[p], threads, false, &layer);
            generate(fx, policies[p], threads, true, &kv_head);
            print_message("policy %d, %d thread(s): tokens %d %d %d ... %d\n",
                          (int)policies[p], threads, kv_head.tokens[0], kv_head.tokens[1],
                          kv_head.tokens[2], kv_head.tokens[STEPS - 1]);
            assert_memory_equal(layer.tokens, kv_head.tokens, sizeof layer.tokens);
            assert_memory_equal(layer.logits, kv_head.logits, n_logits * sizeof(float));
            assert_memory_equal(layer.positions, kv_head.positions,
                                n_slots * sizeof(int32_t));
            assert_memory_equal(layer.scores, kv_head.scores, n_slots * sizeof(float));
            run_result_free(&layer);
            run_result_free(&kv_head);
        }
}

/* Copies of the logits each KV head was handed, checked by the layer hook. */
typedef struct recorder {
    float *copies;            /* eng_layer_event.logits layout, capacity-sized */
    atomic_int calls[8];      /* per KV head, this layer and block */
    int begins, layers, mismatches, n_kv_heads, group_size;
} recorder;

static int record_begin(void *user_data, const eng_layer_event *e)
{
    recorder *r = user_data;
    assert_null(e->logits);
    for (int g = 0; g < e->n_kv_heads; g++)
        atomic_store(&r->calls[g], 0);
    r->begins++;
    return 0;
}

static int record_kv_head(void *user_data, const eng_kv_head_event *e)
{
    recorder *r = user_data;
    const size_t per_head = (size_t)e->n_rows * e->n_slots;
    const size_t floats = (size_t)e->group_size * per_head;
    memcpy(r->copies + (size_t)e->kv_head * floats, e->logits, floats * sizeof(float));
    atomic_fetch_add(&r->calls[e->kv_head], 1);
    return 0;
}

static int check_layer(void *user_data, const eng_layer_event *e)
{
    recorder *r = user_data;
    const size_t floats = (size_t)e->n_heads * e->n_rows * e->n_slots;
    for (int g = 0; g < e->n_kv_heads; g++)
        r->mismatches += atomic_load(&r->calls[g]) != 1;
    r->mismatches += memcmp(r->copies, e->logits, floats * sizeof(float)) != 0;
    r->layers++;
    return e->n_slots;
}

static void test_kv_head_hook_sees_each_kv_head_once(void **state)
{
    fixture *fx = *state;
    const eng_model_config *c = &fx->model.config;
    assert_true(c->n_kv_heads <= 8);
    recorder rec = {.copies = malloc((size_t)c->n_heads * BLOCK_ROWS * (PROMPT + 4) *
                                     sizeof(float))};
    assert_non_null(rec.copies);
    const eng_state_options options = {
        .kv_capacity = PROMPT + 4, .max_block_rows = BLOCK_ROWS, .n_threads = 2,
        .hook = check_layer, .hook_user_data = &rec,
        .kv_head_hooks = {record_begin, record_kv_head, &rec}};
    eng_state *s;
    eng_error err = {{0}};
    assert_int_equal(eng_state_create(&s, &fx->model, &options, &err), ENG_OK);
    assert_int_equal(eng_forward(s, fx->ids, PROMPT, NULL, 0, &err), ENG_OK);
    for (int t = 0; t < 4; t++)
        assert_int_equal(eng_forward(s, &fx->ids[PROMPT + t], 1, NULL, 0, &err), ENG_OK);
    const int blocks = (PROMPT + BLOCK_ROWS - 1) / BLOCK_ROWS + 4;
    assert_int_equal(rec.begins, blocks * c->n_layers);
    assert_int_equal(rec.layers, blocks * c->n_layers);
    assert_int_equal(rec.mismatches, 0);
    eng_state_destroy(&s);
    free(rec.copies);
}

/* The glue with a library cache of n_kv_heads KV heads on the engine's two:
 * eng_forward must stop at layer 0 with ENG_EHOOK, the glue must name
 * `call` and `status`, and the round must be closed afterwards. */
static void expect_failure(fixture *fx, uint32_t n_kv_heads, const char *call, int status,
                           const char *message)
{
    engine_keyformer glue = {.cache = library_cache(fx, KF_POLICY_H2O, 2, n_kv_heads)};
    const eng_state_options options = {
        .kv_capacity = PROMPT + STEPS, .n_threads = 2,
        .hook = engine_keyformer_hook, .hook_user_data = &glue,
        .kv_head_hooks = engine_keyformer_kv_head_hooks(&glue)};
    eng_state *s;
    eng_error err = {{0}};
    assert_int_equal(eng_state_create(&s, &fx->model, &options, &err), ENG_OK);
    assert_int_equal(eng_forward(s, fx->ids, 16, NULL, 0, &err), ENG_EHOOK);
    if (!strstr(err.message, message))
        fail_msg("message \"%s\" lacks \"%s\"", err.message, message);
    assert_string_equal(glue.failed_call, call);
    assert_int_equal(glue.failed_status, status);
    assert_int_equal(glue.failed_layer, 0);
    /* no round left open: a new one may start */
    assert_int_equal(kf_observe_begin(glue.cache, 0, 1), KF_OK);
    assert_int_equal(kf_observe_end(glue.cache, 0), KF_ESTATE);
    kf_cache_destroy(&glue.cache);
    eng_state_destroy(&s);
}

static void test_failures_stop_the_forward_pass(void **state)
{
    fixture *fx = *state;
    assert_int_equal(fx->model.config.n_kv_heads, 2);
    /* one KV head: the engine's KV head 1 is refused (KF_ERANGE) */
    expect_failure(fx, 1, "kf_observe_kv_head", KF_ERANGE, "a KV head hook returned");
    /* three KV heads: KV head 2 never comes, so the round is dropped */
    expect_failure(fx, 3, "kf_observe_end", KF_ESTATE, "layer 0 hook returned -1");
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "MODEL_BIN REFERENCE_LOGITS_BIN", &model_path,
                   &reference_path))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_heads_equal_whole_layer),
        cmocka_unit_test(test_kv_head_hook_sees_each_kv_head_once),
        cmocka_unit_test(test_failures_stop_the_forward_pass),
    };
    return cmocka_run_group_tests_name("engine: logits per KV head", tests, reference_fixture_setup,
                                       reference_fixture_teardown);
}
