/* kf_cache_copy_state: a copy continues exactly as the original would,
 * for every policy, granularity and slot order, from any point of the
 * observe -> select -> compact cycle; copies are independent of each
 * other; configuration mismatches, NULL, the same cache and a source with
 * an open round are refused, changing neither cache. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define LAYERS 2
#define HEADS 4
#define KV_HEADS 2
#define CAP 40
#define PROMPT 24
#define STEPS 30

static kf_config fork_config(kf_policy policy, kf_granularity gran,
                             kf_slot_order order, uint32_t every)
{
    kf_config cfg = test_config(LAYERS, HEADS, KV_HEADS, 4, CAP);
    cfg.policy = policy;
    cfg.granularity = gran;
    cfg.slot_order = order;
    cfg.evict_interval = every;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = policy == KF_POLICY_FULL ? 0 : 12;
    cfg.tau_steps = 16;
    cfg.seed = 77;
    return cfg;
}

/* One phase of a sequence, numbered: 2t observes the rows of step t (the
 * prompt at t = 0) on every layer, 2t + 1 selects and compacts them. The
 * fork may fall between the two. */
static void phase(kf_cache *c, int n, float *buf, test_rng *r)
{
    if (n % 2 == 0) {
        uint32_t rows = n == 0 ? PROMPT : 1;
        for (int l = 0; l < LAYERS; l++)
            assert_int_equal(test_observe(c, l, buf, rows, 1, r), KF_OK);
        return;
    }
    assert_int_equal(kf_select(c, KF_ALL_LAYERS), KF_OK);
    assert_int_equal(kf_compact(c, KF_ALL_LAYERS, NULL, NULL), KF_OK);
}

static kf_cache *make(const kf_config *cfg)
{
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, cfg), KF_OK);
    return c;
}

/* Original A and fresh references RX, RY; A is copied into B and C after
 * phase `at`. Then A and B see inputs X, C sees Y; RX saw X and RY the
 * same history as C. After every phase A, B and RX agree, and so do C and
 * RY: the copy continues as the original, and neither copy's steps reach
 * the other. Under the scoring policies X and Y diverge. */
static void fork_run(kf_config cfg, int at)
{
    kf_cache *a = make(&cfg), *rx = make(&cfg), *ry = make(&cfg);
    kf_config other = cfg;
    other.n_threads = 2; /* may differ: it never changes results */
    other.cpu_mask = 0;
    kf_cache *b = make(&other), *c = make(&cfg);
    float *buf = malloc((size_t)HEADS * CAP * CAP * sizeof *buf);
    test_rng ra, rrx, rry, rc;
    test_rng_seed(&ra, 5);
    test_rng_seed(&rrx, 5);
    test_rng_seed(&rry, 5);
    /* B and C hold garbage state first: the copy replaces all of it */
    test_rng junk;
    test_rng_seed(&junk, 99);
    phase(b, 0, buf, &junk);
    phase(c, 0, buf, &junk);
    phase(c, 1, buf, &junk);

    /* FULL never evicts: as many steps as the capacity holds */
    int steps = cfg.policy == KF_POLICY_FULL ? CAP - PROMPT : STEPS;
    const int last = 2 * steps - 1;
    for (int n = 0; n <= last; n++) {
        if (n <= at) {
            phase(a, n, buf, &ra);
            phase(rx, n, buf, &rrx);
            phase(ry, n, buf, &rry);
            if (n == at) {
                assert_int_equal(kf_cache_copy_state(b, a), KF_OK);
                assert_int_equal(kf_cache_copy_state(c, a), KF_OK);
                assert_true(test_cache_digest(b) == test_cache_digest(a));
                assert_true(test_cache_digest(c) == test_cache_digest(a));
                test_rng_seed(&rry, 1234);
                rc = rry;
            }
            continue;
        }
        test_rng rb = ra;
        phase(a, n, buf, &ra);
        phase(b, n, buf, &rb);
        phase(rx, n, buf, &rrx);
        phase(c, n, buf, &rc);
        phase(ry, n, buf, &rry);
        uint64_t da = test_cache_digest(a);
        assert_true(test_cache_digest(b) == da);
        assert_true(test_cache_digest(rx) == da);
        assert_true(test_cache_digest(c) == test_cache_digest(ry));
    }
    if (cfg.policy == KF_POLICY_KEYFORMER || cfg.policy == KF_POLICY_H2O)
        assert_true(test_cache_digest(c) != test_cache_digest(a));
    free(buf);
    kf_cache_destroy(&a);
    kf_cache_destroy(&b);
    kf_cache_destroy(&c);
    kf_cache_destroy(&rx);
    kf_cache_destroy(&ry);
}

/* After the prompt's compaction (the beam-search case), for every policy,
 * granularity and slot order, both rules and batched eviction. */
static void test_fork_after_prompt(void **state)
{
    (void)state;
    for (int p = KF_POLICY_KEYFORMER; p <= KF_POLICY_FULL; p++)
        for (int g = KF_GRANULARITY_KV_HEAD; g <= KF_GRANULARITY_UNIFORM; g++)
            for (int o = KF_ORDER_POSITION; o <= KF_ORDER_ANY; o++)
                for (uint32_t every = 1; every <= 3; every += 2) {
                    kf_config cfg = fork_config((kf_policy)p,
                                                (kf_granularity)g,
                                                (kf_slot_order)o, every);
                    fork_run(cfg, 1);
                    if (p <= KF_POLICY_H2O) {
                        cfg.rule = KF_RULE_REFERENCE;
                        fork_run(cfg, 1);
                    }
                }
}

/* At other points: before any selection (mid-prefill), with a selection
 * awaiting compaction, and deep into generation (tau schedule, removed
 * positions, batched evictions half done). */
static void test_fork_any_phase(void **state)
{
    (void)state;
    const int points[] = { 0, 2, 3, 8, 17, 30 };
    for (size_t i = 0; i < sizeof points / sizeof *points; i++)
        for (int p = KF_POLICY_KEYFORMER; p <= KF_POLICY_SINKS; p++)
            for (int g = KF_GRANULARITY_KV_HEAD; g <= KF_GRANULARITY_UNIFORM;
                 g += 2) {
                kf_config cfg = fork_config((kf_policy)p, (kf_granularity)g,
                                            KF_ORDER_ANY, 3);
                fork_run(cfg, points[i]);
            }
}

/* A ratio budget is fixed by the original's prompt: the copy has it and
 * never fixes another. */
static void test_fork_ratio_budget(void **state)
{
    (void)state;
    kf_config cfg = fork_config(KF_POLICY_KEYFORMER, KF_GRANULARITY_LAYER,
                                KF_ORDER_POSITION, 1);
    cfg.budget_tokens = 0;
    cfg.budget_ratio = 0.5;
    kf_cache *a = make(&cfg), *b = make(&cfg);
    uint32_t k, w;
    assert_int_equal(kf_budget(b, &k, &w), KF_ESTATE);
    float *buf = malloc((size_t)HEADS * CAP * CAP * sizeof *buf);
    test_rng r;
    test_rng_seed(&r, 8);
    phase(a, 0, buf, &r);
    phase(a, 1, buf, &r);
    assert_int_equal(kf_cache_copy_state(b, a), KF_OK);
    assert_int_equal(kf_budget(b, &k, &w), KF_OK);
    assert_int_equal(k, PROMPT / 2);
    assert_int_equal(w, (uint32_t)(0.3 * (PROMPT / 2)));
    free(buf);
    kf_cache_destroy(&a);
    kf_cache_destroy(&b);
}

/* Each field that decides results: a cache created with it changed is
 * refused (KF_EMISMATCH) in both directions, and neither cache changes. */
static void test_fork_config_mismatch(void **state)
{
    (void)state;
    kf_config base = fork_config(KF_POLICY_KEYFORMER, KF_GRANULARITY_KV_HEAD,
                                 KF_ORDER_POSITION, 0);
    base.budget_tokens = 0;
    base.budget_ratio = 0.5;
    kf_config changed[20];
    int n = 0;
    for (int i = 0; i < 20; i++)
        changed[i] = base;
    changed[n++].n_layers = LAYERS + 1;
    changed[n++].n_heads = HEADS * 2;
    changed[n++].n_kv_heads = KV_HEADS * 2;
    changed[n++].head_dim = 8;
    changed[n++].capacity = CAP + 1;
    changed[n++].policy = KF_POLICY_H2O;
    changed[n++].rule = KF_RULE_REFERENCE;
    changed[n++].granularity = KF_GRANULARITY_LAYER;
    changed[n].budget_ratio = 0.0;
    changed[n++].budget_tokens = 12;
    changed[n++].budget_ratio = 0.25;
    changed[n++].recent_ratio = 0.5;
    changed[n++].n_sinks = 5;
    changed[n++].tau_init = 1.5f;
    changed[n++].tau_end = 3.0f;
    changed[n++].tau_steps = 17;
    changed[n++].seed = 78;
    changed[n++].evict_interval = 2;
    changed[n++].slot_order = KF_ORDER_ANY;
    changed[n++].noise = KF_NOISE_TABLE;

    kf_cache *a = make(&base);
    float *buf = malloc((size_t)HEADS * CAP * CAP * sizeof *buf);
    test_rng r;
    test_rng_seed(&r, 3);
    phase(a, 0, buf, &r);
    phase(a, 1, buf, &r);
    for (int i = 0; i < n; i++) {
        kf_cache *b = make(&changed[i]);
        uint64_t da = test_cache_digest(a), db = test_cache_digest(b);
        assert_int_equal(kf_cache_copy_state(b, a), KF_EMISMATCH);
        assert_int_equal(kf_cache_copy_state(a, b), KF_EMISMATCH);
        assert_true(test_cache_digest(a) == da);
        assert_true(test_cache_digest(b) == db);
        kf_cache_destroy(&b);
    }
    /* fields that never change results may differ */
    kf_config same = base;
    same.n_threads = 3;
    same.cpu_mask = KF_CPU_AVX2;
    kf_cache *b = make(&same);
    assert_int_equal(kf_cache_copy_state(b, a), KF_OK);
    assert_true(test_cache_digest(b) == test_cache_digest(a));
    kf_cache_destroy(&b);
    free(buf);
    kf_cache_destroy(&a);
}

static void test_fork_bad_arguments(void **state)
{
    (void)state;
    kf_config cfg = fork_config(KF_POLICY_H2O, KF_GRANULARITY_KV_HEAD,
                                KF_ORDER_POSITION, 1);
    kf_cache *a = make(&cfg), *b = make(&cfg);
    float *buf = malloc((size_t)HEADS * CAP * CAP * sizeof *buf);
    test_rng r;
    test_rng_seed(&r, 4);
    phase(a, 0, buf, &r);
    uint64_t da = test_cache_digest(a), db = test_cache_digest(b);
    assert_int_equal(kf_cache_copy_state(NULL, a), KF_EINVAL);
    assert_int_equal(kf_cache_copy_state(b, NULL), KF_EINVAL);
    assert_int_equal(kf_cache_copy_state(NULL, NULL), KF_EINVAL);
    assert_int_equal(kf_cache_copy_state(a, a), KF_EINVAL); /* itself */
    assert_true(test_cache_digest(a) == da);
    assert_true(test_cache_digest(b) == db);

    /* a source in the middle of a kf_observe_begin round: refused */
    phase(a, 1, buf, &r);
    assert_int_equal(kf_observe_begin(a, 0, 1), KF_OK);
    da = test_cache_digest(a);
    assert_int_equal(kf_cache_copy_state(b, a), KF_ESTATE);
    assert_true(test_cache_digest(a) == da);
    assert_true(test_cache_digest(b) == db);
    assert_int_equal(kf_observe_end(a, 0), KF_ESTATE); /* dropped: no heads */

    /* a destination's open round is dropped with the rest of its state */
    assert_int_equal(kf_observe_begin(b, 1, 2), KF_OK);
    assert_int_equal(kf_cache_copy_state(b, a), KF_OK);
    assert_int_equal(kf_observe_end(b, 1), KF_ESTATE);
    assert_true(test_cache_digest(b) == test_cache_digest(a));
    free(buf);
    kf_cache_destroy(&a);
    kf_cache_destroy(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fork_after_prompt),
        cmocka_unit_test(test_fork_any_phase),
        cmocka_unit_test(test_fork_ratio_budget),
        cmocka_unit_test(test_fork_config_mismatch),
        cmocka_unit_test(test_fork_bad_arguments),
    };
    return cmocka_run_group_tests_name("fork", tests, NULL, NULL);
}
