/* Known answers: hand-computed cases for every policy and both rules, then
 * Keyformer and H2O against the independent double-precision model of the
 * spec for every granularity and rule, with GQA and several layers. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "refmodel.h"
#include "testutil.h"

static void assert_positions(kf_cache *c, int layer, int g,
                             const int32_t *want, uint32_t n_want)
{
    const int32_t *pos;
    uint32_t n;
    assert_int_equal(kf_slot_positions(c, layer, g, &pos, &n), KF_OK);
    assert_int_equal(n, n_want);
    for (uint32_t j = 0; j < n; j++)
        assert_int_equal(pos[j], want[j]);
}

static void step(kf_cache *c, int layer, const float *x, uint32_t rows,
                 uint32_t slots, uint32_t heads, uint32_t flags)
{
    kf_logits_view v = { x, rows, slots, slots, (size_t)rows * slots, flags, 0 };
    (void)heads;
    assert_int_equal(kf_observe_logits(c, layer, &v), KF_OK);
    assert_int_equal(kf_select(c, layer), KF_OK);
    assert_int_equal(kf_compact(c, layer, NULL, NULL), KF_OK);
}

/* Prompt of 5, k = 3, w = 1. Row logits (masked entries NaN: never read):
 *   r0 [0]  r1 [0 -inf]  r2 [0 -inf -inf]  r3 [0 0 -inf -inf]
 *   r4 [0 -inf 0 -inf -inf]
 * H2O scores: 4, .5, .5, 0, 0 -> keep pos 0, pos 1 (tie with pos 2: lower
 * position wins) and the window pos 4. Decode row over [0 1 4 5]:
 * [-inf -inf ln3 0] -> + [0 0 .75 .25]: pos 0 4, pos 1 .5, pos 4 .75,
 * pos 5 .25. Dynamic keeps 0, 4, 5 (pos 1 loses its place to pos 4
 * leaving the window); reference keeps 0, 1, 5. */
static void h2o_case(kf_rule rule, const int32_t *after_decode)
{
    kf_config cfg = test_config(1, 1, 1, 4, 8);
    cfg.policy = KF_POLICY_H2O;
    cfg.rule = rule;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 3;
    cfg.recent_ratio = 0.34;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);

    const float I = -INFINITY, N = NAN;
    const float prompt[25] = { 0, N, N, N, N, 0, I, N, N, N, 0, I, I, N, N,
                               0, 0, I, I, N, 0, I, 0, I, I };
    kf_logits_view v = { prompt, 5, 5, 5, 25, KF_LOGITS_CAUSAL, 0 };
    assert_int_equal(kf_observe_logits(c, 0, &v), KF_OK);
    const float *s;
    uint32_t n;
    assert_int_equal(kf_slot_scores(c, 0, 0, &s, &n), KF_OK);
    const float want[5] = { 4, .5f, .5f, 0, 0 };
    for (int j = 0; j < 5; j++)
        assert_float_equal(s[j], want[j], 1e-6);
    assert_int_equal(kf_select(c, 0), KF_OK);
    uint32_t k, w;
    assert_int_equal(kf_budget(c, &k, &w), KF_OK);
    assert_int_equal(k, 3);
    assert_int_equal(w, 1);
    assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    assert_positions(c, 0, 0, (const int32_t[]){ 0, 1, 4 }, 3);

    const float decode[4] = { I, I, logf(3.0f), 0 };
    kf_logits_view d = { decode, 1, 4, 4, 4, 0, 0 };
    assert_int_equal(kf_observe_logits(c, 0, &d), KF_OK);
    assert_int_equal(kf_slot_scores(c, 0, 0, &s, &n), KF_OK);
    const float want_d[4] = { 4, .5f, .75f, .25f };
    for (int j = 0; j < 4; j++)
        assert_float_equal(s[j], want_d[j], 1e-6);
    assert_int_equal(kf_select(c, 0), KF_OK);
    assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    assert_positions(c, 0, 0, after_decode, 3);
    kf_cache_destroy(&c);
}

static void test_h2o_dynamic(void **state)
{
    (void)state;
    h2o_case(KF_RULE_DYNAMIC, (const int32_t[]){ 0, 4, 5 });
}

static void test_h2o_reference(void **state)
{
    (void)state;
    h2o_case(KF_RULE_REFERENCE, (const int32_t[]){ 0, 1, 5 });
}

/* Fixed policies never read logits: NULL data is fine. */
static void fixed_case(kf_policy policy, uint32_t budget, uint32_t prompt,
                       const int32_t *want_prompt, uint32_t n_prompt,
                       const int32_t *want_step, uint32_t n_step)
{
    kf_config cfg = test_config(2, 2, 1, 4, 16);
    cfg.policy = policy;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = policy == KF_POLICY_FULL ? 0 : budget;
    cfg.n_sinks = 2;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    for (int l = 0; l < 2; l++) {
        step(c, l, NULL, prompt, prompt, 2, 0);
        assert_positions(c, l, 0, want_prompt, n_prompt);
        uint32_t n;
        kf_slot_count(c, l, 0, &n);
        step(c, l, NULL, 1, n + 1, 2, 0);
        assert_positions(c, l, 0, want_step, n_step);
    }
    kf_cache_destroy(&c);
}

static void test_window(void **state)
{
    (void)state;
    fixed_case(KF_POLICY_WINDOW, 4, 6, (const int32_t[]){ 2, 3, 4, 5 }, 4,
               (const int32_t[]){ 3, 4, 5, 6 }, 4);
}

static void test_sinks(void **state)
{
    (void)state;
    fixed_case(KF_POLICY_SINKS, 5, 8, (const int32_t[]){ 0, 1, 5, 6, 7 }, 5,
               (const int32_t[]){ 0, 1, 6, 7, 8 }, 5);
}

static void test_full(void **state)
{
    (void)state;
    fixed_case(KF_POLICY_FULL, 0, 5, (const int32_t[]){ 0, 1, 2, 3, 4 }, 5,
               (const int32_t[]){ 0, 1, 2, 3, 4, 5 }, 6);
}

/* A prompt no longer than the budget keeps everything; slots then grow to
 * k and stay there. */
static void test_short_prompt_grows_to_budget(void **state)
{
    (void)state;
    kf_config cfg = test_config(1, 2, 2, 4, 16);
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 6;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    test_rng r;
    test_rng_seed(&r, 7);
    float buf[2 * 16 * 16];
    assert_int_equal(test_observe(c, 0, buf, 4, 1, &r), KF_OK);
    assert_int_equal(kf_select(c, 0), KF_OK);
    assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    for (uint32_t t = 0; t < 8; t++) {
        assert_int_equal(test_observe(c, 0, buf, 1, 0, &r), KF_OK);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
        uint32_t n;
        kf_slot_count(c, 0, 1, &n);
        assert_int_equal(n, t + 5 < 6 ? t + 5 : 6);
    }
    kf_cache_destroy(&c);
}

/* tau: tau_init during the prompt, then tau_init + t (end - init) / T,
 * clamped after T steps. */
static void test_tau_schedule(void **state)
{
    (void)state;
    kf_config cfg = test_config(1, 1, 1, 4, 64);
    cfg.tau_init = 1.0f;
    cfg.tau_end = 2.0f;
    cfg.tau_steps = 4;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    test_rng r;
    test_rng_seed(&r, 3);
    float buf[64 * 64];
    float tau;
    kf_current_tau(c, 0, &tau);
    assert_float_equal(tau, 1.0f, 0);
    assert_int_equal(test_observe(c, 0, buf, 8, 1, &r), KF_OK);
    kf_current_tau(c, 0, &tau);
    assert_float_equal(tau, 1.0f, 0);
    assert_int_equal(kf_select(c, 0), KF_OK);
    assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    const float want[7] = { 1.25f, 1.5f, 1.75f, 2.0f, 2.0f, 2.0f, 2.0f };
    for (int t = 0; t < 6; t++) {
        kf_current_tau(c, 0, &tau);
        assert_float_equal(tau, want[t], 1e-7);
        assert_int_equal(test_observe(c, 0, buf, 1, 0, &r), KF_OK);
        uint32_t steps;
        int32_t next;
        kf_layer_progress(c, 0, &steps, &next);
        assert_int_equal(steps, t + 1);
        assert_int_equal(next, 9 + t);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    }
    kf_cache_destroy(&c);
}

/* Slot j's (position, score), for sorting a KF_ORDER_ANY lane. */
typedef struct slot_pair {
    int32_t pos;
    float score;
} slot_pair;

static int by_position(const void *a, const void *b)
{
    int32_t x = ((const slot_pair *)a)->pos, y = ((const slot_pair *)b)->pos;
    return (x > y) - (x < y);
}

/* KF_ORDER_ANY: the host's logits follow the library's slots; the model
 * holds its slots by position. Reorders the old slots' columns of x
 * (heads x rows x n_slots) into position order, per KV head's lane. */
static void to_position_order(const kf_cache *c, const kf_config *cfg,
                              uint32_t layer, float *x, uint32_t rows,
                              uint32_t n_slots)
{
    uint32_t n_old = n_slots - rows, group = cfg->n_heads / cfg->n_kv_heads;
    slot_pair *order = malloc((n_old + 1) * sizeof *order);
    float *row = malloc((n_slots + 1) * sizeof *row);
    for (uint32_t g = 0; g < cfg->n_kv_heads; g++) {
        const int32_t *pos;
        uint32_t n;
        kf_slot_positions(c, (int)layer, (int)g, &pos, &n);
        assert_int_equal(n, n_slots);
        for (uint32_t j = 0; j < n_old; j++) /* the score field carries j */
            order[j] = (slot_pair){ pos[j], (float)j };
        qsort(order, n_old, sizeof *order, by_position);
        for (uint32_t h = g * group; h < (g + 1) * group; h++)
            for (uint32_t i = 0; i < rows; i++) {
                float *xr = x + ((size_t)h * rows + i) * n_slots;
                memcpy(row, xr, n_slots * sizeof *row);
                for (uint32_t r = 0; r < n_old; r++)
                    xr[r] = row[(uint32_t)order[r].score];
            }
    }
    free(order);
    free(row);
}

/* Library vs the reference model over a prompt and decode steps. Under
 * KF_ORDER_ANY the lanes are compared as sets: sorted by position, they
 * must hold the model's slots (random logits have no ties, so the index
 * tie-break never decides). */
static void compare_run(kf_config cfg, uint32_t prompt, uint32_t steps,
                        uint32_t decode_rows, uint64_t seed)
{
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    ref_model m;
    ref_init(&m, &cfg);
    test_rng r;
    test_rng_seed(&r, seed);
    size_t cap = cfg.capacity;
    float *x = malloc(cfg.n_heads * cap * cap * sizeof *x);
    int uniform = cfg.granularity == KF_GRANULARITY_UNIFORM;

    for (uint32_t t = 0; t <= steps; t++) {
        uint32_t rows = t == 0 ? prompt : decode_rows;
        for (uint32_t l = 0; l < cfg.n_layers; l++) {
            uint32_t n;
            kf_slot_count(c, (int)l, 0, &n);
            test_fill_logits(x, cfg.n_heads, rows, n + rows, t == 0, &r);
            kf_logits_view v = { x, rows, n + rows, n + rows,
                                 (size_t)rows * (n + rows),
                                 t == 0 ? KF_LOGITS_CAUSAL : 0u, 0 };
            assert_int_equal(kf_observe_logits(c, (int)l, &v), KF_OK);
            if (cfg.slot_order == KF_ORDER_ANY)
                to_position_order(c, &cfg, l, x, rows, n + rows);
            ref_observe(&m, l, x, rows, t == 0);
            if (!uniform) {
                assert_int_equal(kf_select(c, (int)l), KF_OK);
                assert_int_equal(kf_compact(c, (int)l, NULL, NULL), KF_OK);
                ref_select_compact(&m, l, l + 1);
            }
        }
        if (uniform) {
            assert_int_equal(kf_select(c, KF_ALL_LAYERS), KF_OK);
            assert_int_equal(kf_compact(c, KF_ALL_LAYERS, NULL, NULL), KF_OK);
            ref_select_compact(&m, 0, cfg.n_layers);
        }
        for (uint32_t l = 0; l < cfg.n_layers; l++)
            for (uint32_t g = 0; g < cfg.n_kv_heads; g++) {
                const ref_lane *want = &m.lanes[l * cfg.n_kv_heads + g];
                const int32_t *pos;
                const float *sc;
                uint32_t n;
                kf_slot_positions(c, (int)l, (int)g, &pos, &n);
                kf_slot_scores(c, (int)l, (int)g, &sc, &n);
                assert_int_equal(n, want->n);
                slot_pair *got = malloc((n + 1) * sizeof *got);
                for (uint32_t j = 0; j < n; j++)
                    got[j] = (slot_pair){ pos[j], sc[j] };
                if (cfg.slot_order == KF_ORDER_ANY)
                    qsort(got, n, sizeof *got, by_position);
                for (uint32_t j = 0; j < n; j++) {
                    assert_int_equal(got[j].pos, want->pos[j]);
                    assert_float_equal(got[j].score, want->score[j],
                                       2e-5 * (1.0 + want->score[j]));
                }
                free(got);
            }
    }
    free(x);
    ref_free(&m);
    kf_cache_destroy(&c);
}

static kf_config gqa_config(kf_policy p, kf_rule rule, kf_granularity gr)
{
    kf_config cfg = test_config(3, 6, 2, 8, 48);
    cfg.policy = p;
    cfg.rule = rule;
    cfg.granularity = gr;
    cfg.budget_ratio = 0.5;
    cfg.tau_steps = 6;
    cfg.seed = 1234;
    return cfg;
}

/* Every policy, rule and granularity against the model: a 30-token
 * prompt, then `steps` one-row steps, with the given slot order and
 * eviction interval; seeds from seed0. */
static void model_sweep(kf_slot_order order, uint32_t every, uint32_t steps,
                        uint64_t seed0)
{
    const kf_policy pol[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O,
                              KF_POLICY_WINDOW, KF_POLICY_SINKS, KF_POLICY_FULL };
    for (int p = 0; p < 5; p++)
        for (int rule = 0; rule < 2; rule++)
            for (int gr = 0; gr < 3; gr++) {
                kf_config cfg = gqa_config(pol[p], (kf_rule)rule,
                                           (kf_granularity)gr);
                if (pol[p] == KF_POLICY_FULL)
                    cfg.budget_ratio = 0.0;
                cfg.slot_order = order;
                cfg.evict_interval = every;
                compare_run(cfg, 30, steps, 1,
                            seed0 + (uint64_t)(p * 10 + rule * 3 + gr));
            }
}

static void test_against_model(void **state)
{
    (void)state;
    model_sweep(KF_ORDER_POSITION, 0, 12, 100);
}

/* Several rows per generation step (each its own tau step), an absolute
 * budget, no window (recent 0: key tokens only), MHA and MQA shapes. */
static void test_against_model_variants(void **state)
{
    (void)state;
    kf_config cfg = gqa_config(KF_POLICY_KEYFORMER, KF_RULE_DYNAMIC,
                               KF_GRANULARITY_KV_HEAD);
    compare_run(cfg, 20, 6, 3, 1);
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 9;
    cfg.recent_ratio = 0.0;
    compare_run(cfg, 20, 10, 1, 2);
    cfg.rule = KF_RULE_REFERENCE;
    compare_run(cfg, 20, 10, 1, 3);
    cfg.recent_ratio = 1.0;
    compare_run(cfg, 20, 10, 1, 4);
    kf_config mha = test_config(2, 4, 4, 8, 48);
    mha.seed = 99;
    compare_run(mha, 25, 8, 1, 5);
    kf_config mqa = test_config(2, 4, 1, 8, 48);
    mqa.policy = KF_POLICY_H2O;
    compare_run(mqa, 25, 8, 1, 6);
}

/* evict_interval B: decode steps hold k .. k + B - 1 slots and evict B at
 * once, the B lowest under every policy, rule and granularity (the model
 * applies the same rule); the prompt selection is unchanged. */
static void test_evict_interval(void **state)
{
    (void)state;
    model_sweep(KF_ORDER_POSITION, 4, 13, 300);

    kf_config cfg = gqa_config(KF_POLICY_KEYFORMER, KF_RULE_DYNAMIC,
                               KF_GRANULARITY_KV_HEAD);
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 10;
    cfg.evict_interval = 5;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    test_rng r;
    test_rng_seed(&r, 17);
    float *x = malloc(6 * 48 * 48 * sizeof *x);
    for (uint32_t t = 0; t <= 16; t++) {
        uint32_t rows = t == 0 ? 20 : 1, n;
        kf_slot_count(c, 0, 0, &n);
        test_fill_logits(x, 6, rows, n + rows, t == 0, &r);
        kf_logits_view v = { x, rows, n + rows, n + rows,
                             (size_t)rows * (n + rows),
                             t == 0 ? KF_LOGITS_CAUSAL : 0u, 0 };
        assert_int_equal(kf_observe_logits(c, 0, &v), KF_OK);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
        kf_slot_count(c, 0, 1, &n);
        /* prompt: 20 -> 10; then 11, 12, 13, 14, 15 -> 10, ... */
        assert_int_equal(n, t == 0 ? 10 : 10 + t % 5);
    }
    free(x);
    kf_cache_destroy(&c);

    cfg.evict_interval = cfg.capacity + 1;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_ERANGE);
    assert_null(c);
    /* up to k + B slots are held: capacity >= k + B (test_errors.c) */
    cfg.evict_interval = cfg.capacity - cfg.budget_tokens + 1;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_ERANGE);
    assert_null(c);
    cfg.evict_interval = cfg.capacity - cfg.budget_tokens;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    kf_cache_destroy(&c);
}

/* KF_ORDER_ANY keeps the slots KF_ORDER_POSITION keeps (as sets), for
 * every policy, rule and granularity, with one eviction per step, several
 * rows per step, and batched eviction. */
static void test_any_order(void **state)
{
    (void)state;
    model_sweep(KF_ORDER_ANY, 0, 12, 500);
    model_sweep(KF_ORDER_ANY, 3, 13, 600);
    kf_config cfg = gqa_config(KF_POLICY_KEYFORMER, KF_RULE_DYNAMIC,
                               KF_GRANULARITY_KV_HEAD);
    cfg.slot_order = KF_ORDER_ANY;
    compare_run(cfg, 20, 6, 3, 701);
    cfg.recent_ratio = 0.0;
    compare_run(cfg, 20, 10, 1, 702);
    cfg.recent_ratio = 1.0;
    compare_run(cfg, 20, 10, 1, 703);
    cfg.slot_order = (kf_slot_order)2;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_EINVAL);
}

/* UNIFORM: every layer and head holds the same positions, and the removed
 * list is exactly the positions that left. */
static void test_uniform_removed(void **state)
{
    (void)state;
    kf_config cfg = gqa_config(KF_POLICY_KEYFORMER, KF_RULE_DYNAMIC,
                               KF_GRANULARITY_UNIFORM);
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    test_rng r;
    test_rng_seed(&r, 11);
    float *x = malloc(6 * 48 * 48 * sizeof *x);
    for (int t = 0; t < 5; t++) {
        uint32_t rows = t == 0 ? 20 : 1;
        int32_t before[48];
        const int32_t *pos;
        uint32_t n_before, n;
        for (int l = 0; l < 3; l++)
            assert_int_equal(test_observe(c, l, x, rows, t == 0, &r), KF_OK);
        kf_slot_positions(c, 0, 0, &pos, &n_before);
        memcpy(before, pos, n_before * sizeof *pos);
        assert_int_equal(kf_select(c, KF_ALL_LAYERS), KF_OK);
        const int32_t *removed;
        uint32_t n_removed;
        assert_int_equal(kf_removed_positions(c, &removed, &n_removed), KF_OK);
        assert_int_equal(kf_compact(c, KF_ALL_LAYERS, NULL, NULL), KF_OK);
        kf_slot_positions(c, 0, 0, &pos, &n);
        assert_int_equal(n + n_removed, n_before);
        /* merge of kept and removed is the old list */
        uint32_t a = 0, b = 0;
        for (uint32_t j = 0; j < n_before; j++) {
            if (a < n && pos[a] == before[j])
                a++;
            else
                assert_int_equal(removed[b++], before[j]);
        }
        for (int l = 0; l < 3; l++)
            for (int g = 0; g < 2; g++)
                assert_positions(c, l, g, pos, n);
    }
    free(x);
    kf_cache_destroy(&c);
}

/* UNIFORM with KF_ORDER_ANY: slots are out of position order after the
 * first compactions, and a selection that removes several positions must
 * still report them ascending (issue 16: call 3 gave 4 2 3, call 6 gave
 * 6 5 7). */
static void test_removed_ascending_any_order(void **state)
{
    (void)state;
    kf_config cfg = test_config(1, 1, 1, 4, 7);
    cfg.policy = KF_POLICY_WINDOW;
    cfg.granularity = KF_GRANULARITY_UNIFORM;
    cfg.slot_order = KF_ORDER_ANY;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 4;
    cfg.evict_interval = 3;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    const int32_t want3[] = { 2, 3, 4 }, want6[] = { 5, 6, 7 };
    for (int call = 0; call <= 12; call++) { /* 0: the prompt */
        uint32_t rows = call == 0 ? 6 : 1, n;
        assert_int_equal(kf_slot_count(c, 0, 0, &n), KF_OK);
        kf_logits_view v = { NULL, rows, n + rows, n + rows, 0,
                             KF_LOGITS_CAUSAL, 0 };
        assert_int_equal(kf_observe_logits(c, 0, &v), KF_OK);
        assert_int_equal(kf_select(c, KF_ALL_LAYERS), KF_OK);
        assert_int_equal(kf_compact(c, KF_ALL_LAYERS, NULL, NULL), KF_OK);
        const int32_t *removed;
        assert_int_equal(kf_removed_positions(c, &removed, &n), KF_OK);
        for (uint32_t i = 1; i < n; i++)
            assert_true(removed[i - 1] < removed[i]);
        if (call == 3 || call == 6) {
            assert_int_equal(n, 3);
            assert_memory_equal(removed, call == 3 ? want3 : want6,
                                sizeof want3);
        }
    }
    kf_cache_destroy(&c);
}

/* A chunked prefill is not bit-identical to one call (one call fuses each
 * row's product into the running sum; a later call adds its rounded
 * product), but each score is a sum of the same m = rows x group terms,
 * so the two differ by at most m * 2^-23 of the score (doc/quality.md),
 * and the selections of typical inputs agree. The smallest case is H2O,
 * one head, a 3-token prompt as 2 + 1 rows. */
static void chunk_case(kf_policy policy, uint32_t heads, uint32_t kv_heads,
                       uint32_t prompt, uint32_t chunk, uint64_t seed)
{
    kf_config cfg = test_config(1, heads, kv_heads, 4, prompt);
    cfg.policy = policy;
    cfg.seed = seed;
    kf_cache *one, *chunked;
    assert_int_equal(kf_cache_create(&one, &cfg), KF_OK);
    assert_int_equal(kf_cache_create(&chunked, &cfg), KF_OK);
    float *x = malloc((size_t)heads * prompt * prompt * sizeof *x);
    test_rng r;
    test_rng_seed(&r, seed);
    test_fill_logits(x, heads, prompt, prompt, 1, &r);
    size_t hs = (size_t)prompt * prompt;
    kf_logits_view v = { x, prompt, prompt, prompt, hs, KF_LOGITS_CAUSAL, 0 };
    assert_int_equal(kf_observe_logits(one, 0, &v), KF_OK);
    for (uint32_t at = 0; at < prompt; at += chunk) {
        uint32_t rows = prompt - at < chunk ? prompt - at : chunk;
        kf_logits_view part = { x + (size_t)at * prompt, rows, at + rows,
                                prompt, hs, KF_LOGITS_CAUSAL, 0 };
        assert_int_equal(kf_observe_logits(chunked, 0, &part), KF_OK);
    }
    double m = (double)prompt * (heads / kv_heads);
    for (int g = 0; g < (int)kv_heads; g++) {
        const float *a, *b;
        uint32_t na, nb;
        kf_slot_scores(one, 0, g, &a, &na);
        kf_slot_scores(chunked, 0, g, &b, &nb);
        assert_int_equal(na, nb);
        for (uint32_t j = 0; j < na; j++) {
            double big = a[j] > b[j] ? a[j] : b[j];
            assert_true(fabs((double)a[j] - b[j]) <= m * 0x1p-23 * big);
        }
    }
    assert_int_equal(kf_select(one, 0), KF_OK);
    assert_int_equal(kf_select(chunked, 0), KF_OK);
    assert_true(test_same_kept_slots(one, chunked, 0, kv_heads));
    free(x);
    kf_cache_destroy(&one);
    kf_cache_destroy(&chunked);
}

static void test_chunked_prefill_bound(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        chunk_case(KF_POLICY_H2O, 1, 1, 3, 2, seed);
        chunk_case(KF_POLICY_KEYFORMER, 1, 1, 3, 2, seed);
    }
    chunk_case(KF_POLICY_H2O, 4, 2, 90, 7, 31);
    chunk_case(KF_POLICY_KEYFORMER, 4, 2, 90, 1, 32);
    chunk_case(KF_POLICY_KEYFORMER, 8, 1, 64, 20, 33);
}

/* tau only matters under Keyformer: every other policy reports 1 however
 * the schedule is set, in the prompt and during generation. */
static void test_tau_other_policies(void **state)
{
    (void)state;
    for (int p = KF_POLICY_H2O; p <= KF_POLICY_FULL; p++) {
        kf_config cfg = test_config(1, 2, 1, 4, 32);
        cfg.policy = (kf_policy)p;
        cfg.tau_init = 3.0f;
        cfg.tau_end = 5.0f;
        cfg.tau_steps = 2;
        if (p == KF_POLICY_FULL)
            cfg.budget_ratio = 0.0;
        kf_cache *c;
        assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
        test_rng r;
        test_rng_seed(&r, 6);
        float buf[2 * 32 * 32], tau = 0.0f;
        for (int t = 0; t < 5; t++) {
            assert_int_equal(kf_current_tau(c, 0, &tau), KF_OK);
            assert_true(tau == 1.0f);
            assert_int_equal(test_observe(c, 0, buf, t ? 1 : 10, 1, &r), KF_OK);
            assert_int_equal(kf_select(c, 0), KF_OK);
            assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
        }
        kf_cache_destroy(&c);
    }
}

/* kf_cache_memory grows with n_threads by the per-thread scratch the
 * header lists, give or take the 64-byte rounding of its 4 arrays. */
static void test_memory_per_thread(void **state)
{
    (void)state;
    const kf_policy policies[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O,
                                   KF_POLICY_WINDOW };
    const uint32_t groups[] = { 1, 4, 20 };
    for (size_t p = 0; p < 3; p++)
        for (size_t i = 0; i < 3; i++) {
            uint32_t cap = 100, dim = 12, g = groups[i];
            int scoring = policies[p] != KF_POLICY_WINDOW;
            size_t rows = !scoring ? 1 : g < 16 ? g : 16;
            size_t per_thread = cap * (4 * rows + 4);
            if (scoring)
                per_thread += 32 * cap * 4 + 64 * dim * 4;
            size_t prev = 0;
            for (uint32_t t = 1; t <= 4; t++) {
                kf_config cfg = test_config(2, 2 * g, 2, dim, cap);
                cfg.policy = policies[p];
                cfg.n_threads = t;
                kf_cache *c;
                size_t bytes;
                assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
                assert_int_equal(kf_cache_memory(c, &bytes), KF_OK);
                kf_cache_destroy(&c);
                if (t > 1) {
                    assert_true(bytes + 4 * 64 >= prev + per_thread);
                    assert_true(bytes <= prev + per_thread + 4 * 64);
                }
                prev = bytes;
            }
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_h2o_dynamic),
        cmocka_unit_test(test_h2o_reference),
        cmocka_unit_test(test_window),
        cmocka_unit_test(test_sinks),
        cmocka_unit_test(test_full),
        cmocka_unit_test(test_short_prompt_grows_to_budget),
        cmocka_unit_test(test_tau_schedule),
        cmocka_unit_test(test_against_model),
        cmocka_unit_test(test_against_model_variants),
        cmocka_unit_test(test_evict_interval),
        cmocka_unit_test(test_any_order),
        cmocka_unit_test(test_uniform_removed),
        cmocka_unit_test(test_removed_ascending_any_order),
        cmocka_unit_test(test_chunked_prefill_bound),
        cmocka_unit_test(test_tau_other_policies),
        cmocka_unit_test(test_memory_per_thread),
    };
    return cmocka_run_group_tests_name("policies", tests, NULL, NULL);
}
