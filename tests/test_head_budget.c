/* Adaptive per-KV-head budgets (kf_config::head_budget): a hand-computed
 * split with its holes, decode steps that keep every head's live count,
 * kf_observe_qk masking the holes, configuration errors, and on random
 * inputs the invariants (rows, live total, window) and identical results
 * for any thread count and instruction set. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "testutil.h"

static const float I = -INFINITY;

/* 1 layer, 2 query heads, 2 KV heads, capacity 16, H2O, k = 4, w = 1. */
static kf_config small_config(kf_slot_order order)
{
    kf_config cfg = test_config(1, 2, 2, 4, 16);
    cfg.policy = KF_POLICY_H2O;
    cfg.slot_order = order;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 4;
    cfg.recent_ratio = 0.25; /* w = 1, m = 3 places per head */
    cfg.head_budget = KF_HEAD_BUDGET_ADAPTIVE;
    return cfg;
}

/* 8 prompt rows that see all 8 slots (no causal flag): head 0 puts every
 * row on slot 2 (score 8 there, 0 elsewhere), head 1 spreads evenly
 * (score 1 each). Normalised over the rankable slots 0 .. 6: head 0 has
 * [0 0 1 0 0 0 0], head 1 1/7 each. Of the 2m = 6 places head 0 takes
 * its 1 (also its floor), head 1 the other 5 (of its 7 equal keys: the
 * lower slots 0 .. 4). Head 0 keeps slot 2 and the window (slot 7),
 * padded to R = 6 rows with its lowest evicted slots 0, 1, 3, 4 as
 * holes. */
static void observe_prompt(kf_cache *c)
{
    float x[2 * 8 * 8];
    for (int r = 0; r < 8; r++)
        for (int j = 0; j < 8; j++) {
            x[r * 8 + j] = j == 2 ? 0.0f : I;
            x[64 + r * 8 + j] = 0.0f;
        }
    kf_logits_view v = { x, 8, 8, 8, 64, 0, 0 };
    assert_int_equal(kf_observe_logits(c, 0, &v), KF_OK);
}

static void test_split_known(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        kf_config cfg = small_config((kf_slot_order)order);
        kf_cache *c;
        assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
        observe_prompt(c);
        assert_int_equal(kf_select(c, 0), KF_OK);
        const uint32_t want_keep[6] = { 0, 1, 2, 3, 4, 7 };
        for (int g = 0; g < 2; g++) {
            const uint32_t *keep;
            uint32_t n;
            assert_int_equal(kf_kept_slots(c, 0, g, &keep, &n), KF_OK);
            assert_int_equal(n, 6);
            for (uint32_t i = 0; i < 6; i++)
                assert_int_equal(keep[i], want_keep[i]);
        }
        /* the holes read -1 from the selection on */
        const int32_t *pos;
        uint32_t n;
        assert_int_equal(kf_slot_positions(c, 0, 0, &pos, &n), KF_OK);
        assert_int_equal(pos[0], -1);
        assert_int_equal(pos[2], 2);
        assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
        const int32_t want0[6] = { -1, -1, 2, -1, -1, 7 }, want1[6] = { 0, 1, 2, 3, 4, 7 };
        for (int g = 0; g < 2; g++) {
            assert_int_equal(kf_slot_positions(c, 0, g, &pos, &n), KF_OK);
            assert_int_equal(n, 6);
            for (uint32_t j = 0; j < 6; j++)
                assert_int_equal(pos[j], g ? want1[j] : want0[j]);
        }
        /* the layer's budget is still reported as k = 4, w = 1 */
        uint32_t k, w;
        assert_int_equal(kf_layer_budget(c, 0, &k, &w), KF_OK);
        assert_int_equal(k, 4);
        assert_int_equal(w, 1);

        /* decode steps: 6 + 1 slots, one goes per head; head 0 keeps its
         * 4 holes and 2 live slots, head 1 its 6 live slots */
        for (int step = 0; step < 5; step++) {
            float x[2 * 7];
            for (int g = 0; g < 2; g++) {
                assert_int_equal(kf_slot_positions(c, 0, g, &pos, &n), KF_OK);
                for (uint32_t j = 0; j < 7; j++)
                    x[g * 7 + j] = j < 6 && pos[j] < 0 ? I : (float)((j * 5 + step) % 3);
            }
            kf_logits_view d = { x, 1, 7, 7, 7, 0, 0 };
            assert_int_equal(kf_observe_logits(c, 0, &d), KF_OK);
            assert_int_equal(kf_select(c, 0), KF_OK);
            assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
            for (int g = 0; g < 2; g++) {
                assert_int_equal(kf_slot_positions(c, 0, g, &pos, &n), KF_OK);
                assert_int_equal(n, 6);
                uint32_t holes = 0, newest = 0;
                for (uint32_t j = 0; j < n; j++) {
                    holes += pos[j] < 0;
                    newest |= pos[j] == 8 + step; /* the window */
                }
                assert_int_equal(holes, g ? 0 : 4);
                assert_true(newest);
            }
        }
        kf_cache_destroy(&c);
    }
}

/* The floor: alpha = 1 gives every head its m places: even budgets, no
 * holes. */
static void test_floor_one_is_even(void **state)
{
    (void)state;
    kf_config cfg = small_config(KF_ORDER_POSITION);
    cfg.head_floor = 1.0f;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    observe_prompt(c);
    assert_int_equal(kf_select(c, 0), KF_OK);
    assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    for (int g = 0; g < 2; g++) {
        const int32_t *pos;
        uint32_t n;
        assert_int_equal(kf_slot_positions(c, 0, g, &pos, &n), KF_OK);
        assert_int_equal(n, 4);
        for (uint32_t j = 0; j < n; j++)
            assert_true(pos[j] >= 0);
    }
    kf_cache_destroy(&c);
}

/* kf_observe_qk masks the holes: their scores stay 0 through decode
 * steps whose keys would otherwise draw attention to them. */
static void test_qk_masks_holes(void **state)
{
    (void)state;
    kf_config cfg = small_config(KF_ORDER_ANY);
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    observe_prompt(c);
    assert_int_equal(kf_select(c, 0), KF_OK);
    assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    /* keys all equal: every visible slot gets the same logit */
    float keys[2 * 16 * 4], q[2 * 4];
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        keys[i] = 0.5f;
    for (size_t i = 0; i < 8; i++)
        q[i] = 1.0f;
    for (int step = 0; step < 3; step++) {
        kf_query_view qv = { q, 1, 4, 4, 0.0f, 0, 0 };
        kf_kv_view kv = { keys, KF_DTYPE_F32, 7, 4, 16 * 4, 0, 0 };
        assert_int_equal(kf_observe_qk(c, 0, &qv, &kv), KF_OK);
        const int32_t *pos;
        const float *sc;
        uint32_t n;
        assert_int_equal(kf_slot_positions(c, 0, 0, &pos, &n), KF_OK);
        assert_int_equal(kf_slot_scores(c, 0, 0, &sc, &n), KF_OK);
        uint32_t live = 0;
        for (uint32_t j = 0; j < n; j++) {
            if (pos[j] < 0)
                assert_true(sc[j] == 0.0f);
            else
                live++;
        }
        /* the row's mass went to the 3 live slots only: 1/3 each */
        for (uint32_t j = 0; j < n; j++)
            if (pos[j] == 7 + step + 1)
                assert_float_equal(sc[j], 1.0f / 3.0f, 1e-6);
        assert_int_equal(live, 3);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    }
    kf_cache_destroy(&c);
}

static void test_config_errors(void **state)
{
    (void)state;
    struct {
        uint32_t mode;
        float floor;
        kf_granularity gran;
        kf_rule rule;
        kf_policy policy;
        double recent;
        int want;
    } cases[] = {
        { 2, 0.0f, KF_GRANULARITY_KV_HEAD, KF_RULE_DYNAMIC, KF_POLICY_H2O, 0.25, KF_EINVAL },
        { 1, NAN, KF_GRANULARITY_KV_HEAD, KF_RULE_DYNAMIC, KF_POLICY_H2O, 0.25, KF_EINVAL },
        { 1, 1.5f, KF_GRANULARITY_KV_HEAD, KF_RULE_DYNAMIC, KF_POLICY_H2O, 0.25, KF_ERANGE },
        { 1, -0.1f, KF_GRANULARITY_KV_HEAD, KF_RULE_DYNAMIC, KF_POLICY_H2O, 0.25, KF_ERANGE },
        { 1, 0.2f, KF_GRANULARITY_LAYER, KF_RULE_DYNAMIC, KF_POLICY_H2O, 0.25, KF_EINVAL },
        { 1, 0.2f, KF_GRANULARITY_KV_HEAD, KF_RULE_REFERENCE, KF_POLICY_KEYFORMER, 0.25,
          KF_EINVAL },
        /* recent 1: no place left to rank */
        { 1, 0.2f, KF_GRANULARITY_KV_HEAD, KF_RULE_DYNAMIC, KF_POLICY_H2O, 1.0, KF_ERANGE },
        /* the other policies ignore it */
        { 1, 0.2f, KF_GRANULARITY_KV_HEAD, KF_RULE_DYNAMIC, KF_POLICY_WINDOW, 1.0, KF_OK },
        { 1, 0.2f, KF_GRANULARITY_KV_HEAD, KF_RULE_DYNAMIC, KF_POLICY_KEYFORMER, 0.25, KF_OK },
        { 0, 0.5f, KF_GRANULARITY_UNIFORM, KF_RULE_REFERENCE, KF_POLICY_H2O, 0.25, KF_OK },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kf_config cfg = small_config(KF_ORDER_ANY);
        cfg.head_budget = cases[i].mode;
        cfg.head_floor = cases[i].floor;
        cfg.granularity = cases[i].gran;
        cfg.rule = cases[i].rule;
        cfg.policy = cases[i].policy;
        cfg.recent_ratio = cases[i].recent;
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), cases[i].want);
        if (cases[i].want)
            assert_null(c);
        kf_cache_destroy(&c);
    }
    /* compared by kf_cache_copy_state */
    kf_config a = small_config(KF_ORDER_ANY), b = a;
    b.head_floor = 0.5f;
    assert_int_equal(test_copy_state_status(&a, &b), KF_EMISMATCH);
}

/* ---- random inputs ---- */

enum { CAP = 160, PROMPT = 96, STEPS = 24 };

static uint64_t holes_seen; /* the trials do make holes */

/* Observes the logits a host would compute, holes masked (-inf), and
 * returns the cache's digest after the prompt and STEPS decode steps;
 * checks the invariants on the way. */
static uint64_t run_random(kf_config cfg, uint64_t seed, uint32_t threads, uint32_t mask)
{
    cfg.n_threads = threads;
    cfg.cpu_mask = mask;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    test_rng r;
    test_rng_seed(&r, seed);
    const uint32_t H = cfg.n_heads, G = cfg.n_kv_heads, group = H / G;
    float *x = malloc((size_t)H * CAP * CAP * sizeof *x);
    uint32_t live0[8] = { 0 };
    for (uint32_t t = 0; t <= STEPS; t++) {
        for (int l = 0; l < (int)cfg.n_layers; l++) {
            uint32_t rows = t == 0 ? PROMPT : 1, held;
            kf_slot_count(c, l, 0, &held);
            uint32_t n = held + rows;
            test_fill_logits(x, H, rows, n, t == 0, &r);
            for (uint32_t h = 0; h < H; h++) {
                const int32_t *pos;
                uint32_t cnt;
                kf_slot_positions(c, l, (int)(h / group), &pos, &cnt);
                for (uint32_t i = 0; i < rows; i++)
                    for (uint32_t j = 0; j < held; j++)
                        if (pos[j] < 0)
                            x[((size_t)h * rows + i) * n + j] = -INFINITY;
            }
            kf_logits_view v = { x, rows, n, n, (size_t)rows * n,
                                 t == 0 ? KF_LOGITS_CAUSAL : 0, 0 };
            assert_int_equal(kf_observe_logits(c, l, &v), KF_OK);
            assert_int_equal(kf_select(c, l), KF_OK);
            assert_int_equal(kf_compact(c, l, NULL, NULL), KF_OK);
            uint32_t k, w, rows_l = 0, live_total = 0;
            int32_t next;
            uint32_t steps;
            kf_layer_budget(c, l, &k, &w);
            kf_layer_progress(c, l, &steps, &next);
            for (uint32_t g = 0; g < G; g++) {
                const int32_t *pos;
                uint32_t cnt, live = 0;
                kf_slot_positions(c, l, (int)g, &pos, &cnt);
                if (g == 0)
                    rows_l = cnt;
                assert_int_equal(cnt, rows_l); /* every head: R rows */
                for (uint32_t j = 0; j < cnt; j++)
                    live += pos[j] >= 0;
                holes_seen += cnt - live;
                /* the window and the sinks are held */
                for (int32_t p = next - (int32_t)w; p < next; p++)
                    assert_true(test_holds_position(pos, cnt, p));
                for (int32_t p = 0; p < (int32_t)cfg.sink_tokens; p++)
                    assert_true(test_holds_position(pos, cnt, p));
                if (l == 0 && t == 0)
                    live0[g] = live;
                else if (l == 0)
                    assert_int_equal(live, live0[g]); /* k_g stays */
                live_total += live;
            }
            assert_int_equal(live_total, G * k); /* the layer's total */
        }
    }
    uint64_t d = test_cache_digest(c);
    free(x);
    kf_cache_destroy(&c);
    return d;
}

static void test_random_invariants(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 7);
    for (int trial = 0; trial < 16; trial++) {
        const uint32_t kv = 2 + trial % 3; /* 2, 3, 4 KV heads */
        kf_config cfg = test_config(2, kv * 2, kv, 8, CAP);
        cfg.policy = trial % 2 ? KF_POLICY_H2O : KF_POLICY_KEYFORMER;
        cfg.slot_order = (trial / 2) % 2 ? KF_ORDER_ANY : KF_ORDER_POSITION;
        cfg.head_budget = KF_HEAD_BUDGET_ADAPTIVE;
        cfg.head_floor = (float)(test_rng_u32(&r) % 5) * 0.25f;
        cfg.budget_ratio = 0.2 + 0.1 * (trial % 5);
        cfg.score_norm = test_rng_u32(&r) % 2;
        cfg.pool_kernel = test_rng_u32(&r) % 2 ? 5 : 0;
        cfg.obs_window = test_rng_u32(&r) % 2 ? 16 : 0;
        cfg.sink_tokens = test_rng_u32(&r) % 3;
        uint64_t seed = 500 + (uint64_t)trial;
        uint64_t base = run_random(cfg, seed, 1, 0);
        /* threads and instruction sets never change results */
        assert_true(run_random(cfg, seed, 3, KF_CPU_ALL) == base);
        assert_true(run_random(cfg, seed, 2, 0) == base);
    }
    assert_true(holes_seen > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_known),
        cmocka_unit_test(test_floor_one_is_even),
        cmocka_unit_test(test_qk_masks_holes),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_random_invariants),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
