/* The engine driven by libkeyformer through its public API, on the bundled
 * model and the first dev speech, under the kf-eval protocol of
 * examples/data/reference-eval-dev.json: a 1024-id prompt (BOS first), then
 * 256 teacher-forced decode steps, recent ratio 0.3, 4 sinks, per-KV-head
 * selection. The mean negative log-likelihood of those 256 tokens must match
 * the independent numpy simulation: within 1e-4 for the deterministic
 * policies, noise level for Keyformer (a different Gumbel draw).
 * Also: the library's WINDOW policy must give bit-identical logits to the
 * engine's own keep-recent hook.
 *
 * usage: test-engine-library MODEL_BIN DATA_DIR */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <keyformer.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine_keyformer.h"
#include "forward.h"
#include "eval/docs.h"
#include "model.h"
#include "test_args.h"

enum { PROMPT = 1024, CONTINUATION = 256 };

static const char *model_path;
static const char *data_dir;

typedef struct fixture {
    eng_model model;
    int *ids; /* the first dev speech */
    int n_ids;
} fixture;

static int read_first_document(fixture *fx)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/sotu-dev.tokens.jsonl", data_dir);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char *line = NULL;
    size_t capacity = 0;
    const ssize_t got = getline(&line, &capacity, f);
    if (got > 0)
        eval_json_doc_fields(line, (size_t)got, NULL, NULL, NULL, &fx->ids, &fx->n_ids);
    free(line);
    fclose(f);
    return fx->ids && fx->n_ids > PROMPT + CONTINUATION ? 0 : -1;
}

static int setup(void **state)
{
    fixture *fx = calloc(1, sizeof *fx);
    if (!fx || eng_model_open(&fx->model, model_path, NULL) != ENG_OK)
        return -1;
    /* the dev set ships in examples/data: missing data is a failure */
    if (read_first_document(fx) != 0)
        return -1;
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fixture *fx = *state;
    eng_model_close(&fx->model);
    free(fx->ids);
    free(fx);
    return 0;
}

static double negative_log_likelihood(const float *logits, int vocab, int target)
{
    double max = logits[0], sum = 0.0;
    for (int i = 1; i < vocab; i++)
        max = logits[i] > max ? logits[i] : max;
    for (int i = 0; i < vocab; i++)
        sum += exp((double)logits[i] - max);
    return log(sum) + max - (double)logits[target];
}

static kf_cache *create_cache_granularity(const fixture *fx, kf_policy policy,
                                          kf_rule rule, double budget_ratio,
                                          kf_granularity granularity)
{
    const eng_model_config *c = &fx->model.config;
    kf_config cfg;
    assert_int_equal(kf_config_spec_exact(&cfg), KF_OK);
    cfg.n_layers = (uint32_t)c->n_layers;
    cfg.n_heads = (uint32_t)c->n_heads;
    cfg.n_kv_heads = (uint32_t)c->n_kv_heads;
    cfg.head_dim = (uint32_t)c->head_size;
    cfg.capacity = PROMPT;
    cfg.policy = policy;
    cfg.rule = rule;
    cfg.budget_ratio = budget_ratio;
    cfg.recent_ratio = 0.3;
    cfg.n_sinks = 4;
    cfg.tau_init = 1.0f;
    cfg.tau_end = 2.0f;
    cfg.tau_steps = CONTINUATION;
    cfg.seed = 12345;
    cfg.granularity = granularity;
    kf_cache *cache;
    assert_int_equal(kf_cache_create(&cache, &cfg), KF_OK);
    return cache;
}

static kf_cache *create_cache(const fixture *fx, kf_policy policy, kf_rule rule,
                              double budget_ratio)
{
    return create_cache_granularity(fx, policy, rule, budget_ratio,
                                    KF_GRANULARITY_KV_HEAD);
}

/* The protocol: prefill the 1024-id prompt, then feed the next 256 ids one
 * at a time, each decode step predicting the id after the one it feeds.
 * Returns the mean NLL of those 256 predictions; their logits are stored in
 * all_logits when it is not NULL. */
static double continuation_nll(fixture *fx, eng_layer_hook hook, void *hook_data,
                               float *all_logits)
{
    const int vocab = fx->model.config.vocab_size;
    const eng_state_options options = {.kv_capacity = PROMPT + CONTINUATION, .hook = hook,
                                       .hook_user_data = hook_data};
    eng_state *s;
    assert_int_equal(eng_state_create(&s, &fx->model, &options, NULL), ENG_OK);
    float *logits = malloc((size_t)vocab * sizeof *logits);
    assert_non_null(logits);
    eng_error err = {{0}};
    if (eng_forward(s, fx->ids, PROMPT, NULL, 0, &err) != ENG_OK)
        fail_msg("prompt: %s", err.message);
    double total = 0.0;
    for (int t = 0; t < CONTINUATION; t++) {
        if (eng_forward(s, &fx->ids[PROMPT + t], 1, logits, 1, &err) != ENG_OK)
            fail_msg("step %d: %s", t, err.message);
        total += negative_log_likelihood(logits, vocab, fx->ids[PROMPT + t + 1]);
        if (all_logits)
            memcpy(all_logits + (size_t)t * vocab, logits, (size_t)vocab * sizeof *logits);
    }
    free(logits);
    eng_state_destroy(&s);
    return total / CONTINUATION;
}

static double library_nll(fixture *fx, kf_policy policy, kf_rule rule, double budget,
                          uint32_t *kept)
{
    engine_keyformer glue = {.cache = create_cache(fx, policy, rule, budget)};
    const double nll = continuation_nll(fx, engine_keyformer_hook, &glue, NULL);
    assert_null(glue.failed_call);
    uint32_t w;
    assert_int_equal(kf_budget(glue.cache, kept, &w), KF_OK);
    /* Every layer and head ends at exactly k slots. */
    for (int l = 0; l < fx->model.config.n_layers; l++)
        for (int g = 0; g < fx->model.config.n_kv_heads; g++) {
            uint32_t n;
            assert_int_equal(kf_slot_count(glue.cache, l, g, &n), KF_OK);
            assert_int_equal(n, *kept);
        }
    kf_cache_destroy(&glue.cache);
    return nll;
}

typedef struct expected_nll {
    const char *name;
    kf_policy policy;
    kf_rule rule;
    double budget;
    double nll;       /* reference-eval-dev.json, doc 1793_george_washington_n */
    double tolerance;
} expected_nll;

static void test_policies_match_independent_simulation(void **state)
{
    fixture *fx = *state;
    const double full = continuation_nll(fx, NULL, NULL, NULL);
    print_message("full: NLL %.6f (reference 3.319461)\n", full);
    assert_true(fabs(full - 3.319461) < 1e-3);
    const expected_nll cases[] = {
        {"window", KF_POLICY_WINDOW, KF_RULE_DYNAMIC, 0.1, 3.316949, 1e-4},
        {"sinks", KF_POLICY_SINKS, KF_RULE_DYNAMIC, 0.1, 3.324252, 1e-4},
        {"h2o", KF_POLICY_H2O, KF_RULE_DYNAMIC, 0.1, 3.380531, 1e-4},
        {"h2o-frozen", KF_POLICY_H2O, KF_RULE_REFERENCE, 0.1, 3.381224, 1e-4},
        {"keyformer", KF_POLICY_KEYFORMER, KF_RULE_DYNAMIC, 0.1, 3.383124, 4e-2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint32_t k;
        const double nll = library_nll(fx, cases[i].policy, cases[i].rule, cases[i].budget, &k);
        print_message("%s (budget %.1f, k=%u): NLL %.6f (reference %.6f, diff %+.2e)\n",
                      cases[i].name, cases[i].budget, k, nll, cases[i].nll, nll - cases[i].nll);
        assert_int_equal(k, (uint32_t)floor(cases[i].budget * PROMPT));
        if (fabs(nll - cases[i].nll) > cases[i].tolerance)
            fail_msg("%s: NLL %.6f, reference %.6f", cases[i].name, nll, cases[i].nll);
    }
}

/* The engine's own answer to "keep the last k slots". */
typedef struct recent_hook {
    int keep;
} recent_hook;

static int keep_recent(void *user, const eng_layer_event *e)
{
    const int keep = ((const recent_hook *)user)->keep;
    if (e->more_rows_follow || e->n_slots <= keep)
        return e->n_slots;
    const size_t hs = (size_t)e->head_size, drop = (size_t)(e->n_slots - keep);
    for (int g = 0; g < e->n_kv_heads; g++) {
        float *k = e->keys + (size_t)g * e->capacity * hs;
        float *v = e->values + (size_t)g * e->capacity * hs;
        memmove(k, k + drop * hs, (size_t)keep * hs * sizeof *k);
        memmove(v, v + drop * hs, (size_t)keep * hs * sizeof *v);
    }
    return keep;
}

static void test_library_window_equals_engine_window(void **state)
{
    fixture *fx = *state;
    const size_t n = (size_t)CONTINUATION * fx->model.config.vocab_size;
    float *by_library = malloc(n * sizeof(float)), *by_engine = malloc(n * sizeof(float));
    assert_non_null(by_library);
    assert_non_null(by_engine);
    engine_keyformer glue = {.cache = create_cache(fx, KF_POLICY_WINDOW, KF_RULE_DYNAMIC, 0.25)};
    continuation_nll(fx, engine_keyformer_hook, &glue, by_library);
    kf_cache_destroy(&glue.cache);
    recent_hook recent = {.keep = PROMPT / 4};
    continuation_nll(fx, keep_recent, &recent, by_engine);
    assert_memory_equal(by_library, by_engine, n * sizeof(float));
    free(by_library);
    free(by_engine);
}

/* UNIFORM: the glue selects once per step over every layer, after the last
 * layer's attention. The window policy keeps the same positions whatever
 * the granularity, so the logits must equal the per-head run bit for bit;
 * Keyformer must leave every layer and head with the same k positions. */
static void test_uniform_granularity(void **state)
{
    fixture *fx = *state;
    const size_t n = (size_t)CONTINUATION * fx->model.config.vocab_size;
    float *uniform = malloc(n * sizeof(float)), *per_head = malloc(n * sizeof(float));
    assert_non_null(uniform);
    assert_non_null(per_head);
    engine_keyformer glue = {.cache = create_cache_granularity(
                                 fx, KF_POLICY_WINDOW, KF_RULE_DYNAMIC, 0.25,
                                 KF_GRANULARITY_UNIFORM)};
    continuation_nll(fx, engine_keyformer_hook, &glue, uniform);
    assert_null(glue.failed_call);
    kf_cache_destroy(&glue.cache);
    glue.cache = create_cache(fx, KF_POLICY_WINDOW, KF_RULE_DYNAMIC, 0.25);
    continuation_nll(fx, engine_keyformer_hook, &glue, per_head);
    kf_cache_destroy(&glue.cache);
    assert_memory_equal(uniform, per_head, n * sizeof(float));

    glue.cache = create_cache_granularity(fx, KF_POLICY_KEYFORMER, KF_RULE_DYNAMIC,
                                          0.25, KF_GRANULARITY_UNIFORM);
    const double nll = continuation_nll(fx, engine_keyformer_hook, &glue, NULL);
    assert_null(glue.failed_call);
    assert_true(isfinite(nll));
    uint32_t k, w, n0;
    const int32_t *first;
    assert_int_equal(kf_budget(glue.cache, &k, &w), KF_OK);
    assert_int_equal(kf_slot_positions(glue.cache, 0, 0, &first, &n0), KF_OK);
    assert_int_equal(n0, k);
    for (int l = 0; l < fx->model.config.n_layers; l++)
        for (int g = 0; g < fx->model.config.n_kv_heads; g++) {
            const int32_t *pos;
            uint32_t np;
            assert_int_equal(kf_slot_positions(glue.cache, l, g, &pos, &np), KF_OK);
            assert_int_equal(np, k);
            assert_memory_equal(pos, first, k * sizeof *pos);
        }
    kf_cache_destroy(&glue.cache);
    free(uniform);
    free(per_head);
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "MODEL_BIN DATA_DIR", &model_path, &data_dir))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policies_match_independent_simulation),
        cmocka_unit_test(test_library_window_equals_engine_window),
        cmocka_unit_test(test_uniform_granularity),
    };
    return cmocka_run_group_tests_name("engine with libkeyformer", tests, setup, teardown);
}
