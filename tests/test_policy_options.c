/* The scoring options beyond the paper (kf_config obs_window, pool_kernel,
 * pool_mode, score_norm, layer_slope, sink_tokens): hand-computed cases, chunked prefill, the three
 * observe paths, configuration errors, and on random inputs the budget,
 * the recent window and identical results for any thread count and
 * instruction set. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "internal.h" /* kf_rank_fill */
#include "testutil.h"

/* The prompt of test_policies' h2o_case: 5 rows, causal, one head.
 *   r0 [0]  r1 [0 -inf]  r2 [0 -inf -inf]  r3 [0 0 -inf -inf]
 *   r4 [0 -inf 0 -inf -inf]
 * Every row's H2O scores (softmax): r0..r2 put 1 on slot 0, r3 .5 on
 * slots 0 and 1, r4 .5 on slots 0 and 2. Masked entries are NaN (never
 * read). */
static const float I = -INFINITY;
#define N NAN
static const float prompt5[25] = { 0, N, N, N, N, 0, I, N, N, N, 0, I, I, N, N,
                                   0, 0, I, I, N, 0, I, 0, I, I };

static kf_cache *h2o_cache(kf_slot_order order, uint32_t obs, uint32_t pool,
                           uint32_t mode, uint32_t norm)
{
    kf_config cfg = test_config(1, 1, 1, 4, 8);
    cfg.policy = KF_POLICY_H2O;
    cfg.slot_order = order;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 3;
    cfg.recent_ratio = 0.34; /* w = 1 */
    cfg.obs_window = obs;
    cfg.pool_kernel = pool;
    cfg.pool_mode = mode;
    cfg.score_norm = norm;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    return c;
}

static void assert_scores(const kf_cache *c, const float *want, uint32_t n_want)
{
    const float *s;
    uint32_t n;
    assert_int_equal(kf_slot_scores(c, 0, 0, &s, &n), KF_OK);
    assert_int_equal(n, n_want);
    for (uint32_t j = 0; j < n; j++)
        assert_float_equal(s[j], want[j], 1e-6);
}

static void assert_kept(const kf_cache *c, const uint32_t *want, uint32_t n_want)
{
    const uint32_t *keep;
    uint32_t n;
    assert_int_equal(kf_kept_slots(c, 0, 0, &keep, &n), KF_OK);
    assert_int_equal(n, n_want);
    for (uint32_t j = 0; j < n; j++)
        assert_int_equal(keep[j], want[j]);
}

static int observe_rows(kf_cache *c, const float *rows, uint32_t first,
                        uint32_t n_rows)
{
    /* rows first .. first + n_rows - 1 of prompt5, slots 0 .. first + n_rows */
    kf_logits_view v = { rows + first * 5, n_rows, first + n_rows, 5,
                         (size_t)n_rows * 5, KF_LOGITS_CAUSAL, 0 };
    return kf_observe_logits(c, 0, &v);
}

/* W = 2: only r3 and r4 score: [1, .5, .5, 0, 0]; rows before the window
 * are not read, so a NaN there is no error (it is without the window). */
static void test_obs_window_known(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        kf_cache *c = h2o_cache((kf_slot_order)order, 2, 0, 0, 0);
        float bad[25];
        memcpy(bad, prompt5, sizeof bad);
        bad[5] = NAN; /* r1's visible slot 0 */
        assert_int_equal(observe_rows(c, bad, 0, 5), KF_OK);
        assert_scores(c, (const float[]){ 1, .5f, .5f, 0, 0 }, 5);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_kept(c, (const uint32_t[]){ 0, 1, 4 }, 3);
        kf_cache_destroy(&c);

        c = h2o_cache((kf_slot_order)order, 0, 0, 0, 0);
        assert_int_equal(observe_rows(c, bad, 0, 5), KF_ENAN);
        kf_cache_destroy(&c);
    }
}

/* Chunks: a chunk of >= W rows replaces the older scores, a shorter one
 * adds to them. */
static void test_obs_window_chunks(void **state)
{
    (void)state;
    /* 3 + 2 rows, W = 2: both chunks replace; the last two rows remain */
    kf_cache *c = h2o_cache(KF_ORDER_POSITION, 2, 0, 0, 0);
    assert_int_equal(observe_rows(c, prompt5, 0, 3), KF_OK);
    assert_scores(c, (const float[]){ 2, 0, 0 }, 3); /* r1, r2 */
    assert_int_equal(observe_rows(c, prompt5, 3, 2), KF_OK);
    assert_scores(c, (const float[]){ 1, .5f, .5f, 0, 0 }, 5);
    kf_cache_destroy(&c);
    /* 4 + 1 rows, W = 2: r2, r3 from the first chunk, plus r4 */
    c = h2o_cache(KF_ORDER_POSITION, 2, 0, 0, 0);
    assert_int_equal(observe_rows(c, prompt5, 0, 4), KF_OK);
    assert_scores(c, (const float[]){ 1.5f, .5f, 0, 0 }, 4);
    assert_int_equal(observe_rows(c, prompt5, 4, 1), KF_OK);
    assert_scores(c, (const float[]){ 2, .5f, .5f, 0, 0 }, 5);
    kf_cache_destroy(&c);
    /* token by token with W = 2: every row adds (as without the window) */
    c = h2o_cache(KF_ORDER_POSITION, 2, 0, 0, 0);
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(observe_rows(c, prompt5, i, 1), KF_OK);
    assert_scores(c, (const float[]){ 4, .5f, .5f, 0, 0 }, 5);
    kf_cache_destroy(&c);
    /* W = 1, token by token: each row replaces; r4 alone */
    c = h2o_cache(KF_ORDER_POSITION, 1, 0, 0, 0);
    for (uint32_t i = 0; i < 5; i++)
        assert_int_equal(observe_rows(c, prompt5, i, 1), KF_OK);
    assert_scores(c, (const float[]){ .5f, 0, .5f, 0, 0 }, 5);
    kf_cache_destroy(&c);
}

/* Generation rows accumulate on top of the window's scores. */
static void test_obs_window_decode(void **state)
{
    (void)state;
    kf_cache *c = h2o_cache(KF_ORDER_POSITION, 2, 0, 0, 0);
    assert_int_equal(observe_rows(c, prompt5, 0, 5), KF_OK);
    assert_int_equal(kf_select(c, 0), KF_OK);
    assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    /* slots now positions 0, 1, 4 with scores 1, .5, 0; one more row of
     * 4 slots (a new token at position 5): [-inf, 0, 0, -inf] */
    const float d[4] = { I, 0, 0, I };
    kf_logits_view v = { d, 1, 4, 4, 4, 0, 0 };
    assert_int_equal(kf_observe_logits(c, 0, &v), KF_OK);
    assert_scores(c, (const float[]){ 1, 1, .5f, 0 }, 4);
    kf_cache_destroy(&c);
}

/* Pooling with K = 3 of the scores [4, .5, .5, 0, 0] (all rows). */
static void test_pool_known(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        kf_cache *c = h2o_cache((kf_slot_order)order, 0, 3, KF_POOL_MAX, 0);
        assert_int_equal(observe_rows(c, prompt5, 0, 5), KF_OK);
        assert_scores(c, (const float[]){ 4, .5f, .5f, 0, 0 }, 5);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_scores(c, (const float[]){ 4, 4, .5f, .5f, 0 }, 5);
        assert_kept(c, (const uint32_t[]){ 0, 1, 4 }, 3);
        kf_cache_destroy(&c);

        c = h2o_cache((kf_slot_order)order, 0, 3, KF_POOL_AVG, 0);
        assert_int_equal(observe_rows(c, prompt5, 0, 5), KF_OK);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_scores(c, (const float[]){ 4.5f / 2, 5.0f / 3, 1.0f / 3,
                                          .5f / 3, 0 }, 5);
        assert_kept(c, (const uint32_t[]){ 0, 1, 4 }, 3);
        /* pooled once: the generation step's selection does not pool */
        assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
        const float d[4] = { 0, I, I, I };
        kf_logits_view v = { d, 1, 4, 4, 4, 0, 0 };
        assert_int_equal(kf_observe_logits(c, 0, &v), KF_OK);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_scores(c, (const float[]){ 4.5f / 2 + 1, 5.0f / 3, 0, 0 }, 4);
        kf_cache_destroy(&c);
    }
}

/* score_norm: [4, .5, .5, 0, 0] over 5, 4, 3, 2, 1 rows that saw each
 * slot: .8, .125, .167, 0 -> keep 0, 2 and the window 4 (without it: 0,
 * 1, 4). With W = 2 the rows counted start at position 3: [1, .5, .5, 0]
 * over 2, 2, 2, 2 -> 0, 1 (tie with 2: lower slot). The stored scores do
 * not change. */
static void test_norm_known(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        kf_cache *c = h2o_cache((kf_slot_order)order, 0, 0, 0, KF_SCORE_NORM_SEEN);
        assert_int_equal(observe_rows(c, prompt5, 0, 5), KF_OK);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_kept(c, (const uint32_t[]){ 0, 2, 4 }, 3);
        assert_scores(c, (const float[]){ 4, .5f, .5f, 0, 0 }, 5);
        kf_cache_destroy(&c);

        c = h2o_cache((kf_slot_order)order, 2, 0, 0, KF_SCORE_NORM_SEEN);
        assert_int_equal(observe_rows(c, prompt5, 0, 5), KF_OK);
        assert_int_equal(kf_select(c, 0), KF_OK);
        assert_kept(c, (const uint32_t[]){ 0, 1, 4 }, 3);
        kf_cache_destroy(&c);
    }
}

/* Generation rows count too: the key of a slot is its score over
 * next_pos - position. */
static void test_norm_decode(void **state)
{
    (void)state;
    kf_cache *c = h2o_cache(KF_ORDER_POSITION, 0, 0, 0, KF_SCORE_NORM_SEEN);
    assert_int_equal(observe_rows(c, prompt5, 0, 5), KF_OK);
    assert_int_equal(kf_select(c, 0), KF_OK);
    assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
    /* kept positions 0, 2, 4 with scores 4, .5, 0. Row at position 5 over
     * [0 2 4 5]: [-inf, -inf, 0, -inf] puts 1 on position 4 -> scores
     * 4, .5, 1, 0; rows that saw them: 6, 4, 2, 1 -> .667, .125, .5, 0:
     * keep 0, 4 and the window 5 */
    const float d[4] = { I, I, 0, I };
    kf_logits_view v = { d, 1, 4, 4, 4, 0, 0 };
    assert_int_equal(kf_observe_logits(c, 0, &v), KF_OK);
    assert_int_equal(kf_select(c, 0), KF_OK);
    assert_kept(c, (const uint32_t[]){ 0, 2, 3 }, 3);
    kf_cache_destroy(&c);
}

static void test_config_errors(void **state)
{
    (void)state;
    kf_config base = test_config(1, 2, 1, 4, 16);
    struct {
        uint32_t obs, pool, mode, norm;
        int want;
    } cases[] = {
        { 0, 0, 2, 0, KF_EINVAL },  { 0, 0, 0, 2, KF_EINVAL },
        { 0, 2, 0, 0, KF_ERANGE },  { 0, 4, 0, 0, KF_ERANGE },
        { 0, 17, 0, 0, KF_ERANGE }, { 17, 0, 0, 0, KF_ERANGE },
        { 16, 15, 1, 1, KF_OK },    { 0, 1, 0, 0, KF_OK },
        { 0, 0, 0, 0, KF_OK },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kf_config cfg = base;
        cfg.obs_window = cases[i].obs;
        cfg.pool_kernel = cases[i].pool;
        cfg.pool_mode = cases[i].mode;
        cfg.score_norm = cases[i].norm;
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), cases[i].want);
        if (cases[i].want)
            assert_null(c);
        kf_cache_destroy(&c);
    }
    kf_config big = test_config(1, 1, 1, 4, 1024);
    big.pool_kernel = 257;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &big), KF_ERANGE);
    /* the options are compared by kf_cache_copy_state */
    kf_config a = base, b = base;
    b.obs_window = 4;
    assert_int_equal(test_copy_state_status(&a, &b), KF_EMISMATCH);
}

/* ---- the three observe paths agree under the window ---- */

enum { H = 4, KVH = 2, D = 8, S = 24, CAPS = 32 };

static kf_config path_config(kf_policy policy, uint32_t obs)
{
    kf_config cfg = test_config(1, H, KVH, D, CAPS);
    cfg.policy = policy;
    cfg.obs_window = obs;
    cfg.pool_kernel = 5;
    cfg.score_norm = KF_SCORE_NORM_SEEN;
    cfg.budget_ratio = 0.5;
    return cfg;
}

/* Round (kf_observe_kv_head) and one kf_observe_logits: bit-identical;
 * kf_observe_qk against logits computed here: within rounding. */
static void test_obs_window_paths(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 7);
    float q[H * S * D], k[KVH * S * D], x[H * S * S];
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        q[i] = test_rng_float(&r, -1, 1);
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        k[i] = test_rng_float(&r, -1, 1);
    float scale = 1.0f / sqrtf((float)D);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < S; i++)
            for (int j = 0; j < S; j++) {
                double dot = 0;
                for (int e = 0; e < D; e++)
                    dot += (double)q[(h * S + i) * D + e]
                           * k[((h / (H / KVH)) * S + j) * D + e];
                x[(h * S + i) * S + j] = j <= i ? (float)(scale * dot) : NAN;
            }
    for (int p = 0; p < 2; p++) {
        kf_policy policy = p ? KF_POLICY_H2O : KF_POLICY_KEYFORMER;
        kf_config cfg = path_config(policy, 6);
        kf_cache *a, *b, *cq;
        assert_int_equal(kf_cache_create(&a, &cfg), KF_OK);
        assert_int_equal(kf_cache_create(&b, &cfg), KF_OK);
        assert_int_equal(kf_cache_create(&cq, &cfg), KF_OK);
        kf_logits_view v = { x, S, S, S, (size_t)S * S, KF_LOGITS_CAUSAL, 0 };
        assert_int_equal(kf_observe_logits(a, 0, &v), KF_OK);
        assert_int_equal(kf_observe_begin(b, 0, S), KF_OK);
        for (int g = KVH - 1; g >= 0; g--) {
            kf_logits_view gv = v;
            gv.data = x + (size_t)g * (H / KVH) * S * S;
            assert_int_equal(kf_observe_kv_head(b, 0, g, &gv), KF_OK);
        }
        assert_int_equal(kf_observe_end(b, 0), KF_OK);
        kf_query_view qv = { q, S, D, (size_t)S * D, scale, KF_LOGITS_CAUSAL, 0 };
        kf_kv_view kv = { k, KF_DTYPE_F32, S, D, (size_t)S * D, 0, 0 };
        assert_int_equal(kf_observe_qk(cq, 0, &qv, &kv), KF_OK);
        assert_true(test_cache_digest(a) == test_cache_digest(b));
        for (int g = 0; g < KVH; g++) {
            const float *sa, *sq;
            uint32_t na, nq;
            kf_slot_scores(a, 0, g, &sa, &na);
            kf_slot_scores(cq, 0, g, &sq, &nq);
            assert_int_equal(na, nq);
            for (uint32_t j = 0; j < na; j++) {
                assert_float_equal(sa[j], sq[j], 1e-4);
                /* only the last 6 rows scored: slots before position 18
                 * see 6 rows, and the scores of a KV head sum to 6 rows x
                 * 2 heads */
            }
            double sum = 0;
            for (uint32_t j = 0; j < na; j++)
                sum += sa[j];
            assert_float_equal(sum, 12.0, 1e-4);
        }
        assert_int_equal(kf_select(a, 0), KF_OK);
        assert_int_equal(kf_select(b, 0), KF_OK);
        assert_true(test_same_kept_slots(a, b, 0, KVH));
        kf_cache_destroy(&a);
        kf_cache_destroy(&b);
        kf_cache_destroy(&cq);
    }
}

/* ---- properties on random inputs ---- */

#define PCAP 96

/* Prompt of 64 then 24 steps on 2 layers with GQA; checks the budget and
 * the window after each selection; returns the final digest. */
static uint64_t run_random(kf_config cfg, uint64_t seed, uint32_t threads,
                           uint32_t mask, uint32_t chunk)
{
    cfg.n_threads = threads;
    cfg.cpu_mask = mask;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    test_rng r;
    test_rng_seed(&r, seed);
    float *x = malloc((size_t)cfg.n_heads * PCAP * PCAP * sizeof *x);
    const uint32_t prompt = 64;
    for (uint32_t t = 0; t <= 24; t++) {
        for (int l = 0; l < (int)cfg.n_layers; l++) {
            uint32_t rows = t == 0 ? prompt : 1, done = 0;
            while (done < rows) {
                uint32_t part = t == 0 && chunk ? chunk : rows;
                part = part > rows - done ? rows - done : part;
                assert_int_equal(test_observe(c, l, x, part, t == 0, &r), KF_OK);
                done += part;
            }
            int32_t next;
            uint32_t steps;
            kf_layer_progress(c, l, &steps, &next);
            assert_int_equal(kf_select(c, l), KF_OK);
            assert_int_equal(kf_compact(c, l, NULL, NULL), KF_OK);
            uint32_t k, w;
            assert_int_equal(kf_layer_budget(c, l, &k, &w), KF_OK);
            for (int g = 0; g < (int)cfg.n_kv_heads; g++) {
                const int32_t *pos;
                uint32_t n;
                kf_slot_positions(c, l, g, &pos, &n);
                assert_int_equal(n, k); /* budget: exactly k after each step */
                /* sink_tokens: the first positions are held */
                for (int32_t p = 0; p < (int32_t)cfg.sink_tokens; p++)
                    assert_true(test_holds_position(pos, n, p));
                /* the w newest positions are held */
                for (int32_t p = next - (int32_t)w; p < next; p++)
                    assert_true(test_holds_position(pos, n, p));
            }
        }
    }
    uint64_t d = test_cache_digest(c);
    free(x);
    kf_cache_destroy(&c);
    return d;
}

static void test_random_properties(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 99);
    for (int trial = 0; trial < 24; trial++) {
        kf_config cfg = test_config(2, 8, 2, 8, PCAP);
        cfg.policy = trial % 2 ? KF_POLICY_H2O : KF_POLICY_KEYFORMER;
        cfg.slot_order = (trial / 2) % 2 ? KF_ORDER_ANY : KF_ORDER_POSITION;
        cfg.noise = (trial / 4) % 2 ? KF_NOISE_TABLE : KF_NOISE_EXACT;
        cfg.granularity = trial % 3 == 2 ? KF_GRANULARITY_LAYER
                                         : KF_GRANULARITY_KV_HEAD;
        cfg.budget_ratio = 0.25 + 0.05 * (trial % 5);
        cfg.obs_window = test_rng_u32(&r) % 3 ? 1 + test_rng_u32(&r) % 40 : 0;
        cfg.pool_kernel = (test_rng_u32(&r) % 4) * 2 + 1; /* 1, 3, 5, 7 */
        cfg.pool_mode = test_rng_u32(&r) % 2;
        cfg.score_norm = test_rng_u32(&r) % 2;
        cfg.layer_slope = (float)((int)(test_rng_u32(&r) % 7) - 3) * 0.25f; /* -.75 .. .75 */
        /* the smallest layer keeps k_l - w_l >= 3 places: 0 .. 2 sinks fit */
        cfg.sink_tokens = test_rng_u32(&r) % 3;
        uint64_t seed = 1000 + (uint64_t)trial;
        uint64_t base = run_random(cfg, seed, 1, 0, 0);
        /* threads and instruction sets never change results */
        assert_true(run_random(cfg, seed, 4, KF_CPU_ALL, 0) == base);
        assert_true(run_random(cfg, seed, 3, 0, 0) == base);
        /* chunks of at least W rows with the window's rows in the last
         * one: the same selections (scores within rounding) */
        if (cfg.obs_window && cfg.obs_window <= 32)
            (void)run_random(cfg, seed, 1, KF_CPU_ALL, 32);
    }
}

/* layer_slope 0.5 on 3 layers, k = 10, recent 0.3: k_l = 15, 10, 5 and
 * w_l = 4, 3, 1; kf_budget() reports the base k = 10, w = 3. */
static void test_layer_slope_known(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        for (int p = 0; p < 4; p++) {
            kf_config cfg = test_config(3, 2, 1, 4, 20);
            cfg.slot_order = (kf_slot_order)order;
            cfg.policy = (kf_policy)p; /* KEYFORMER, H2O, WINDOW, SINKS */
            cfg.budget_ratio = 0.0;
            cfg.budget_tokens = 10;
            cfg.layer_slope = 0.5f;
            kf_cache *c;
            assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
            uint32_t k, w;
            const uint32_t want_k[3] = { 15, 10, 5 }, want_w[3] = { 4, 3, 1 };
            test_rng r;
            test_rng_seed(&r, 3);
            float x[2 * 20 * 20];
            for (int l = 0; l < 3; l++) {
                assert_int_equal(kf_layer_budget(c, l, &k, &w), KF_OK);
                assert_int_equal(k, want_k[l]);
                assert_int_equal(w, want_w[l]);
                assert_int_equal(test_observe(c, l, x, 20, 1, &r), KF_OK);
                assert_int_equal(kf_select(c, l), KF_OK);
                assert_int_equal(kf_compact(c, l, NULL, NULL), KF_OK);
                uint32_t n;
                kf_slot_count(c, l, 0, &n);
                assert_int_equal(n, want_k[l]);
                /* a decode step evicts back to k_l */
                assert_int_equal(test_observe(c, l, x, 1, 0, &r), KF_OK);
                assert_int_equal(kf_select(c, l), KF_OK);
                assert_int_equal(kf_compact(c, l, NULL, NULL), KF_OK);
                kf_slot_count(c, l, 0, &n);
                assert_int_equal(n, want_k[l]);
            }
            assert_int_equal(kf_budget(c, &k, &w), KF_OK);
            assert_int_equal(k, 10);
            assert_int_equal(w, 3);
            assert_int_equal(kf_layer_budget(c, 3, &k, &w), KF_ERANGE);
            assert_int_equal(kf_layer_budget(NULL, 0, &k, &w), KF_EINVAL);
            assert_int_equal(kf_layer_budget(c, 0, NULL, &w), KF_EINVAL);
            kf_cache_destroy(&c);
        }
    }
}

/* A negative slope reverses the pyramid: 5, 10, 15. */
static void test_layer_slope_negative(void **state)
{
    (void)state;
    kf_config cfg = test_config(3, 2, 1, 4, 20);
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 10;
    cfg.layer_slope = -0.5f;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    const uint32_t want[3] = { 5, 10, 15 };
    for (int l = 0; l < 3; l++) {
        uint32_t k, w;
        assert_int_equal(kf_layer_budget(c, l, &k, &w), KF_OK);
        assert_int_equal(k, want[l]);
        assert_int_equal(w, (uint32_t)(0.3 * want[l]));
    }
    kf_cache_destroy(&c);
}

static void test_layer_slope_errors(void **state)
{
    (void)state;
    kf_config base = test_config(3, 2, 1, 4, 20);
    base.budget_ratio = 0.0;
    base.budget_tokens = 10;
    struct {
        float slope;
        kf_granularity gran;
        uint32_t tokens, capacity;
        kf_policy policy;
        int want;
    } cases[] = {
        { NAN, KF_GRANULARITY_KV_HEAD, 10, 20, KF_POLICY_KEYFORMER, KF_EINVAL },
        { INFINITY, KF_GRANULARITY_KV_HEAD, 10, 20, KF_POLICY_KEYFORMER, KF_EINVAL },
        { 1.0f, KF_GRANULARITY_KV_HEAD, 10, 20, KF_POLICY_KEYFORMER, KF_ERANGE },
        { -1.0f, KF_GRANULARITY_KV_HEAD, 10, 20, KF_POLICY_KEYFORMER, KF_ERANGE },
        { -0.5f, KF_GRANULARITY_KV_HEAD, 10, 14, KF_POLICY_KEYFORMER, KF_ERANGE },
        { -0.5f, KF_GRANULARITY_KV_HEAD, 8, 20, KF_POLICY_SINKS, KF_ERANGE },
        { 0.5f, KF_GRANULARITY_UNIFORM, 10, 20, KF_POLICY_KEYFORMER, KF_EINVAL },
        { 0.5f, KF_GRANULARITY_LAYER, 10, 20, KF_POLICY_KEYFORMER, KF_OK },
        { 0.5f, KF_GRANULARITY_KV_HEAD, 10, 14, KF_POLICY_KEYFORMER, KF_ERANGE },
        { 0.5f, KF_GRANULARITY_KV_HEAD, 10, 15, KF_POLICY_KEYFORMER, KF_OK },
        { 0.5f, KF_GRANULARITY_KV_HEAD, 10, 20, KF_POLICY_SINKS, KF_OK },   /* 5 > 4 */
        { 0.5f, KF_GRANULARITY_KV_HEAD, 8, 20, KF_POLICY_SINKS, KF_ERANGE }, /* 4 */
        { 0.9f, KF_GRANULARITY_KV_HEAD, 1, 20, KF_POLICY_H2O, KF_ERANGE },   /* 0 */
        { 0.0f, KF_GRANULARITY_UNIFORM, 10, 20, KF_POLICY_KEYFORMER, KF_OK },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kf_config cfg = base;
        cfg.layer_slope = cases[i].slope;
        cfg.granularity = cases[i].gran;
        cfg.budget_tokens = cases[i].tokens;
        cfg.capacity = cases[i].capacity;
        cfg.policy = cases[i].policy;
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), cases[i].want);
        kf_cache_destroy(&c);
    }
    /* a ratio budget: the first selection checks every layer's share and
     * changes nothing when one does not fit (k = 18: layer 0 wants 27) */
    kf_config cfg = base;
    cfg.budget_tokens = 0;
    cfg.budget_ratio = 0.9;
    cfg.layer_slope = 0.5f;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    test_rng r;
    test_rng_seed(&r, 4);
    float x[2 * 20 * 20];
    assert_int_equal(test_observe(c, 0, x, 20, 1, &r), KF_OK);
    uint64_t before = test_cache_digest(c);
    assert_int_equal(kf_select(c, 0), KF_ERANGE);
    assert_true(test_cache_digest(c) == before);
    uint32_t k, w;
    assert_int_equal(kf_layer_budget(c, 0, &k, &w), KF_ESTATE);
    kf_cache_destroy(&c);
    /* compared by kf_cache_copy_state */
    kf_config a = base, b = base;
    b.layer_slope = 0.25f;
    assert_int_equal(test_copy_state_status(&a, &b), KF_EMISMATCH);
}

/* sink_tokens on a 5-row prompt, one head, k = 3, w = 1:
 *   r0 [0]  r1 [I 0]  r2 [I 0 I]  r3 [I 0 0 I]  r4 [I I 0 I I]
 * H2O scores [1, 2.5, 1.5, 0, 0]: without sinks slots 1, 2 and the window
 * (slot 4) stay; with one sink, slot 0 replaces slot 2. Then a decode
 * step: the sink stays while the ranked place changes hands. */
static const float prompt_sink[25] = { 0, N, N, N, N, I, 0, N, N, N, I, 0, I, N, N,
                                       I, 0, 0, I, N, I, I, 0, I, I };

static void test_sink_tokens_known(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        for (uint32_t sinks = 0; sinks < 2; sinks++) {
            kf_config cfg = test_config(1, 1, 1, 4, 8);
            cfg.policy = KF_POLICY_H2O;
            cfg.slot_order = (kf_slot_order)order;
            cfg.budget_ratio = 0.0;
            cfg.budget_tokens = 3;
            cfg.recent_ratio = 0.34; /* w = 1 */
            cfg.sink_tokens = sinks;
            kf_cache *c;
            assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
            kf_logits_view v = { prompt_sink, 5, 5, 5, 25, KF_LOGITS_CAUSAL, 0 };
            assert_int_equal(kf_observe_logits(c, 0, &v), KF_OK);
            assert_int_equal(kf_select(c, 0), KF_OK);
            const uint32_t want_plain[3] = { 1, 2, 4 }, want_sink[3] = { 0, 1, 4 };
            assert_kept(c, sinks ? want_sink : want_plain, 3);
            assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
            /* decode: the new row (position 5, the window) puts all its
             * weight on position 4 (score 0 -> 1), wherever its slot is
             * (KF_ORDER_ANY moves slots): 4 slots, one goes */
            const int32_t *pos;
            uint32_t n;
            assert_int_equal(kf_slot_positions(c, 0, 0, &pos, &n), KF_OK);
            float row[4] = { I, I, I, I };
            for (uint32_t j = 0; j < n; j++)
                if (pos[j] == 4)
                    row[j] = 0;
            kf_logits_view d = { row, 1, 4, 4, 4, 0, 0 };
            assert_int_equal(kf_observe_logits(c, 0, &d), KF_OK);
            assert_int_equal(kf_select(c, 0), KF_OK);
            assert_int_equal(kf_compact(c, 0, NULL, NULL), KF_OK);
            assert_int_equal(kf_slot_positions(c, 0, 0, &pos, &n), KF_OK);
            assert_int_equal(n, 3);
            int held[6] = { 0 };
            for (uint32_t j = 0; j < n; j++)
                held[pos[j]] = 1;
            /* plain: 1 (2.5) and 2 (1.5) outrank 4 (1); one sink: 0 stays
             * (score 1) and 1 takes the one ranked place */
            assert_true(held[5] && held[1] && !held[4] && !held[3]);
            assert_int_equal(held[0], (int)sinks);
            assert_int_equal(held[2], (int)!sinks);
            kf_cache_destroy(&c);
        }
    }
}

static void test_sink_tokens_errors(void **state)
{
    (void)state;
    kf_config base = test_config(1, 1, 1, 4, 8);
    base.policy = KF_POLICY_H2O;
    base.budget_ratio = 0.0;
    base.budget_tokens = 3;
    base.recent_ratio = 0.34; /* w = 1: k - w = 2 places */
    struct {
        uint32_t sinks;
        kf_policy policy;
        int want;
    } cases[] = {
        { 1, KF_POLICY_H2O, KF_OK },          { 2, KF_POLICY_H2O, KF_ERANGE },
        { 2, KF_POLICY_KEYFORMER, KF_ERANGE }, { 9, KF_POLICY_WINDOW, KF_ERANGE },
        { 8, KF_POLICY_WINDOW, KF_OK },       { 0, KF_POLICY_H2O, KF_OK },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        kf_config cfg = base;
        cfg.sink_tokens = cases[i].sinks;
        cfg.policy = cases[i].policy;
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), cases[i].want);
        if (cases[i].want)
            assert_null(c);
        kf_cache_destroy(&c);
    }
    /* a recent ratio out of range is refused, before anything converts it
     * (the fuzzer found the conversion under UBSan) */
    for (int i = 0; i < 2; i++) {
        kf_config bad = base;
        bad.sink_tokens = 1;
        bad.head_budget = (uint32_t)i;
        bad.recent_ratio = i ? 2.5 : -2.4;
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &bad), KF_ERANGE);
        assert_null(c);
    }
    /* a ratio budget: the first selection checks it and changes nothing
     * (k = 3 of 5, w = 1, 2 sinks) */
    kf_config cfg = base;
    cfg.budget_tokens = 0;
    cfg.budget_ratio = 0.6;
    cfg.sink_tokens = 2;
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    kf_logits_view v = { prompt_sink, 5, 5, 5, 25, KF_LOGITS_CAUSAL, 0 };
    assert_int_equal(kf_observe_logits(c, 0, &v), KF_OK);
    uint64_t before = test_cache_digest(c);
    assert_int_equal(kf_select(c, 0), KF_ERANGE);
    assert_true(test_cache_digest(c) == before);
    kf_cache_destroy(&c);
    /* compared by kf_cache_copy_state */
    kf_config a = base, b = base;
    b.sink_tokens = 1;
    assert_int_equal(test_copy_state_status(&a, &b), KF_EMISMATCH);
}

/* kf_rank_fill, the branch-free window / sink / hole mark, against its
 * definition (+inf outside [lo, hi), the key inside), bit for bit: out
 * of place and in place, every length up to 70 (vector bodies and
 * tails), positions from INT32_MIN to INT32_MAX with holes (-1), keys of
 * either sign, zeros of both signs and infinities, and the ranges the
 * library uses ([INT32_MIN, recent), [sinks, INT32_MAX)) and empty ones. */
static void test_rank_fill(void **state)
{
    (void)state;
    enum { LEN = 70 };
    static const int32_t edge_pos[] = { INT32_MIN, INT32_MIN + 1, -2, -1, 0,
                                        1, 2, 3, INT32_MAX - 1, INT32_MAX };
    static const float edge_key[] = { 0.0f, -0.0f, 1.0f, -1.0f, 1e-38f,
                                      3e38f, -3e38f, INFINITY, -INFINITY };
    test_rng r;
    test_rng_seed(&r, 0x5eed);
    for (int round = 0; round < 400; round++) {
        uint32_t n = (uint32_t)round % (LEN + 1);
        int32_t pos[LEN];
        float key[LEN], out[LEN], io[LEN], want[LEN];
        for (uint32_t j = 0; j < n; j++) {
            uint32_t pick = test_rng_u32(&r);
            pos[j] = pick % 4 == 0 ? edge_pos[pick / 4 % 10]
                                   : (int32_t)(test_rng_u32(&r) % 64) - 4;
            pick = test_rng_u32(&r);
            key[j] = pick % 4 == 0 ? edge_key[pick / 4 % 9]
                                   : test_rng_float(&r, -8.0f, 8.0f);
        }
        int32_t lo, hi;
        switch (round % 4) {
        case 0: lo = INT32_MIN; hi = (int32_t)(test_rng_u32(&r) % 64) - 4; break;
        case 1: lo = (int32_t)(test_rng_u32(&r) % 8); hi = INT32_MAX; break;
        case 2: lo = (int32_t)(test_rng_u32(&r) % 64) - 4; hi = lo; break;
        default:
            lo = (int32_t)(test_rng_u32(&r) % 32) - 4;
            hi = lo + (int32_t)(test_rng_u32(&r) % 40);
        }
        for (uint32_t j = 0; j < n; j++)
            want[j] = pos[j] < lo || pos[j] >= hi ? INFINITY : key[j];
        kf_rank_fill(out, key, pos, n, lo, hi);
        memcpy(io, key, n * sizeof *io);
        kf_rank_fill(io, io, pos, n, lo, hi);
        assert_memory_equal(out, want, n * sizeof *out);
        assert_memory_equal(io, want, n * sizeof *io);
    }
}

/* All options off is the paper's path, bit for bit. */
static void test_off_is_default(void **state)
{
    (void)state;
    kf_config d;
    kf_config_default(&d);
    assert_int_equal(d.obs_window, 0);
    assert_int_equal(d.pool_kernel, 0);
    assert_int_equal(d.pool_mode, KF_POOL_MAX);
    assert_int_equal(d.score_norm, KF_SCORE_NORM_NONE);
    assert_int_equal(d.sink_tokens, 0);
    kf_config a = test_config(2, 8, 2, 8, PCAP), b = a;
    b.pool_kernel = 1; /* 1 is off too */
    b.pool_mode = KF_POOL_AVG;
    assert_true(run_random(a, 5, 1, 0, 0) == run_random(b, 5, 1, 0, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_obs_window_known),
        cmocka_unit_test(test_obs_window_chunks),
        cmocka_unit_test(test_obs_window_decode),
        cmocka_unit_test(test_pool_known),
        cmocka_unit_test(test_norm_known),
        cmocka_unit_test(test_norm_decode),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_obs_window_paths),
        cmocka_unit_test(test_random_properties),
        cmocka_unit_test(test_layer_slope_known),
        cmocka_unit_test(test_layer_slope_negative),
        cmocka_unit_test(test_layer_slope_errors),
        cmocka_unit_test(test_sink_tokens_known),
        cmocka_unit_test(test_sink_tokens_errors),
        cmocka_unit_test(test_off_is_default),
        cmocka_unit_test(test_rank_fill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
