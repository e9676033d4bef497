/* Properties on random inputs, for every policy, rule and granularity:
 * budget respected after every step, ascending positions, the recent window
 * always kept, an evicted position never returns; results identical for
 * any thread count, for two caches in two threads, and after a reset; a
 * different seed changes the noise; chunked prefill matches one call. */
#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

#define CAP 160

typedef struct run_result {
    uint64_t digest;
    int status;
} run_result;

/* Every position ever evicted from (layer, head), as a bitmap. */
typedef struct evicted {
    unsigned char gone[4][4][1024];
} evicted;

static void check_invariants(kf_cache *c, const kf_config *cfg, evicted *ev,
                             const int32_t *before, uint32_t n_before,
                             int layer, int g)
{
    const int32_t *pos;
    uint32_t n, k, w;
    kf_slot_positions(c, layer, g, &pos, &n);
    assert_int_equal(kf_budget(c, &k, &w), KF_OK);
    if (cfg->policy != KF_POLICY_FULL)
        assert_true(n <= k || n == n_before);
    for (uint32_t j = 1; j < n; j++)
        assert_true(pos[j - 1] < pos[j]);
    /* the w most recent positions survive (sinks/window: all recent) */
    uint32_t recent = cfg->policy == KF_POLICY_KEYFORMER || cfg->policy == KF_POLICY_H2O
                          ? w
                          : (cfg->policy == KF_POLICY_SINKS ? k - cfg->n_sinks : k);
    if (recent > n_before)
        recent = n_before;
    for (uint32_t j = 0; j < recent; j++)
        assert_int_equal(pos[n - 1 - j], before[n_before - 1 - j]);
    if (cfg->policy == KF_POLICY_SINKS)
        for (uint32_t j = 0; j < cfg->n_sinks && j < n; j++)
            assert_int_equal(pos[j], (int32_t)j);
    /* kept positions come from before; none was evicted earlier */
    uint32_t a = 0;
    for (uint32_t j = 0; j < n_before; j++) {
        int32_t p = before[j];
        if (a < n && pos[a] == p) {
            assert_false(ev->gone[layer][g][p]);
            a++;
        } else {
            ev->gone[layer][g][p] = 1;
        }
    }
    assert_int_equal(a, n);
}

/* One sequence: prompt (optionally in chunks), then decode steps. */
static uint64_t run(kf_config cfg, uint32_t prompt, uint32_t chunk,
                    uint32_t steps, uint64_t data_seed, int check)
{
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    test_rng r;
    test_rng_seed(&r, data_seed);
    float *x = malloc((size_t)cfg.n_heads * CAP * CAP * sizeof *x);
    evicted *ev = calloc(1, sizeof *ev);
    int uniform = cfg.granularity == KF_GRANULARITY_UNIFORM;
    int32_t before[4][4][CAP];
    uint32_t n_before[4];

    for (uint32_t t = 0; t <= steps; t++) {
        for (uint32_t l = 0; l < cfg.n_layers; l++) {
            uint32_t done = 0, rows = t == 0 ? prompt : 1;
            while (done < rows) {
                uint32_t part = t == 0 && chunk ? chunk : rows;
                if (part > rows - done)
                    part = rows - done;
                assert_int_equal(test_observe(c, (int)l, x, part, t == 0, &r), KF_OK);
                done += part;
            }
            for (uint32_t g = 0; g < cfg.n_kv_heads; g++) {
                const int32_t *pos;
                kf_slot_positions(c, (int)l, (int)g, &pos, &n_before[l]);
                memcpy(before[l][g], pos, n_before[l] * sizeof *pos);
            }
            if (!uniform) {
                assert_int_equal(kf_select(c, (int)l), KF_OK);
                assert_int_equal(kf_compact(c, (int)l, NULL, NULL), KF_OK);
            }
        }
        if (uniform) {
            assert_int_equal(kf_select(c, KF_ALL_LAYERS), KF_OK);
            assert_int_equal(kf_compact(c, KF_ALL_LAYERS, NULL, NULL), KF_OK);
        }
        for (uint32_t l = 0; check && l < cfg.n_layers; l++)
            for (uint32_t g = 0; g < cfg.n_kv_heads; g++)
                check_invariants(c, &cfg, ev, before[l][g], n_before[l], (int)l,
                                 (int)g);
    }
    uint64_t digest = test_cache_digest(c);
    free(ev);
    free(x);
    kf_cache_destroy(&c);
    return digest;
}

static kf_config base_config(void)
{
    kf_config cfg = test_config(3, 8, 4, 16, CAP);
    cfg.budget_ratio = 0.4;
    cfg.tau_steps = 40;
    cfg.seed = 77;
    return cfg;
}

static void test_invariants_all_policies(void **state)
{
    (void)state;
    for (int p = 0; p <= KF_POLICY_FULL; p++)
        for (int rule = 0; rule < 2; rule++)
            for (int gr = 0; gr < 3; gr++) {
                kf_config cfg = base_config();
                cfg.policy = (kf_policy)p;
                cfg.rule = (kf_rule)rule;
                cfg.granularity = (kf_granularity)gr;
                if (p == KF_POLICY_FULL) {
                    cfg.budget_ratio = 0.0;
                    run(cfg, 60, 0, 40, (uint64_t)(p * 7 + rule * 3 + gr), 1);
                } else {
                    run(cfg, 120, 0, 80, (uint64_t)(p * 7 + rule * 3 + gr), 1);
                }
            }
    /* Keyformer with the table's noise */
    for (int rule = 0; rule < 2; rule++)
        for (int gr = 0; gr < 3; gr++) {
            kf_config cfg = base_config();
            cfg.rule = (kf_rule)rule;
            cfg.granularity = (kf_granularity)gr;
            cfg.noise = KF_NOISE_TABLE;
            run(cfg, 120, 0, 80, (uint64_t)(100 + rule * 3 + gr), 1);
        }
}

static void test_recent_ratio_edges(void **state)
{
    (void)state;
    kf_config cfg = base_config();
    cfg.recent_ratio = 0.0;
    run(cfg, 100, 0, 50, 5, 1);
    cfg.recent_ratio = 1.0;
    run(cfg, 100, 0, 50, 6, 1);
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 1;
    cfg.recent_ratio = 0.3;
    run(cfg, 100, 0, 50, 7, 1);
}

static void test_thread_count_invariance(void **state)
{
    (void)state;
    for (int gr = 0; gr < 6; gr++) { /* the table's noise from 3 on */
        kf_config cfg = base_config();
        cfg.granularity = (kf_granularity)(gr % 3);
        cfg.noise = gr < 3 ? KF_NOISE_EXACT : KF_NOISE_TABLE;
        cfg.n_threads = 1;
        uint64_t one = run(cfg, 150, 0, 9, 21, 0);
        cfg.n_threads = 2;
        assert_true(run(cfg, 150, 0, 9, 21, 0) == one);
        cfg.n_threads = 3;
        assert_true(run(cfg, 150, 0, 9, 21, 0) == one);
        cfg.n_threads = 0;
        assert_true(run(cfg, 150, 0, 9, 21, 0) == one);
    }
}

static void test_seed_changes_noise(void **state)
{
    (void)state;
    kf_config cfg = base_config();
    uint64_t a = run(cfg, 100, 0, 5, 3, 0);
    assert_true(run(cfg, 100, 0, 5, 3, 0) == a);
    cfg.seed = 78;
    assert_true(run(cfg, 100, 0, 5, 3, 0) != a);
    /* the table's noise: its own result, and seeded too */
    cfg.noise = KF_NOISE_TABLE;
    uint64_t t = run(cfg, 100, 0, 5, 3, 0);
    assert_true(t != a && run(cfg, 100, 0, 5, 3, 0) == t);
    cfg.seed = 77;
    assert_true(run(cfg, 100, 0, 5, 3, 0) != t);
    cfg.noise = KF_NOISE_EXACT;
    /* H2O has no noise: the seed is irrelevant */
    cfg.policy = KF_POLICY_H2O;
    uint64_t h = run(cfg, 100, 0, 5, 3, 0);
    cfg.seed = 1;
    assert_true(run(cfg, 100, 0, 5, 3, 0) == h);
}

/* Noise is keyed by positions, so a prompt observed in chunks selects the
 * same slots as one call (scores agree to rounding). */
static void test_chunked_prefill(void **state)
{
    (void)state;
    kf_config cfg = test_config(1, 4, 2, 8, CAP);
    cfg.seed = 5;
    kf_cache *one, *chunked;
    assert_int_equal(kf_cache_create(&one, &cfg), KF_OK);
    assert_int_equal(kf_cache_create(&chunked, &cfg), KF_OK);
    uint32_t S = 120, slots = S;
    float *x = malloc(4 * (size_t)S * S * sizeof *x);
    test_rng r;
    test_rng_seed(&r, 9);
    test_fill_logits(x, 4, S, S, 1, &r);
    kf_logits_view v = { x, S, S, S, (size_t)S * S, KF_LOGITS_CAUSAL, 0 };
    assert_int_equal(kf_observe_logits(one, 0, &v), KF_OK);
    for (uint32_t at = 0; at < S; at += 50) {
        uint32_t rows = S - at < 50 ? S - at : 50;
        kf_logits_view part = { x + (size_t)at * slots, rows, at + rows, slots,
                                (size_t)S * S, KF_LOGITS_CAUSAL, 0 };
        assert_int_equal(kf_observe_logits(chunked, 0, &part), KF_OK);
    }
    for (int g = 0; g < 2; g++) {
        const float *a, *b;
        uint32_t na, nb;
        kf_slot_scores(one, 0, g, &a, &na);
        kf_slot_scores(chunked, 0, g, &b, &nb);
        assert_int_equal(na, nb);
        for (uint32_t j = 0; j < na; j++)
            assert_float_equal(a[j], b[j], 1e-5 * (1 + a[j]));
    }
    assert_int_equal(kf_select(one, 0), KF_OK);
    assert_int_equal(kf_select(chunked, 0), KF_OK);
    assert_true(test_same_kept_slots(one, chunked, 0, 2));
    free(x);
    kf_cache_destroy(&one);
    kf_cache_destroy(&chunked);
}

static void test_reset_reproduces(void **state)
{
    (void)state;
    kf_config cfg = base_config();
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    uint64_t fresh = test_cache_digest(c);
    test_rng r;
    test_rng_seed(&r, 4);
    float *x = malloc((size_t)cfg.n_heads * CAP * CAP * sizeof *x);
    assert_int_equal(test_observe(c, 0, x, 50, 1, &r), KF_OK);
    assert_int_equal(kf_select(c, 0), KF_OK);
    assert_true(test_cache_digest(c) != fresh);
    assert_int_equal(kf_cache_reset(c), KF_OK);
    assert_true(test_cache_digest(c) == fresh);
    free(x);
    kf_cache_destroy(&c);
}

static void *thread_run(void *arg)
{
    run_result *res = arg;
    kf_config cfg = base_config();
    cfg.n_threads = 1;
    res->digest = run(cfg, 120, 0, 20, 31, 0);
    return NULL;
}

static void test_two_caches_two_threads(void **state)
{
    (void)state;
    run_result a, b;
    pthread_t ta, tb;
    pthread_create(&ta, NULL, thread_run, &a);
    pthread_create(&tb, NULL, thread_run, &b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    kf_config cfg = base_config();
    cfg.n_threads = 1;
    uint64_t alone = run(cfg, 120, 0, 20, 31, 0);
    assert_true(a.digest == alone);
    assert_true(b.digest == alone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invariants_all_policies),
        cmocka_unit_test(test_recent_ratio_edges),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_seed_changes_noise),
        cmocka_unit_test(test_chunked_prefill),
        cmocka_unit_test(test_reset_reproduces),
        cmocka_unit_test(test_two_caches_two_threads),
    };
    return cmocka_run_group_tests_name("properties", tests, NULL, NULL);
}
