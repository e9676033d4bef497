/* kf_observe_begin / kf_observe_kv_head / kf_observe_end against
 * kf_observe_logits: two caches fed the same logits, one a whole layer per
 * call, the other a KV head at a time in a shuffled order from copies with
 * other strides, agree bit for bit (test_cache_digest) after every call,
 * through chunked prefill, selection, compaction and decode, for MHA, GQA
 * and MQA shapes, KEYFORMER, H2O and WINDOW, both slot orders, batched
 * eviction and every granularity. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keyformer.h"
#include "testutil.h"

typedef struct shape {
    uint32_t heads, kv_heads;
} shape;

static uint32_t slots_of(const kf_cache *c, int layer)
{
    uint32_t n = 0;
    assert_int_equal(kf_slot_count(c, layer, 0, &n), KF_OK);
    return n;
}

/* One KV head's logits copied out of the whole-layer buffer `x` ([head]
 * [row][slot], dense) into `dst` with padded row and head strides (a
 * layout the whole-layer call never sees), and the view of it. */
static kf_logits_view group_view(const float *x, const kf_logits_view *whole,
                                 uint32_t g, uint32_t group, float *dst)
{
    size_t row_stride = whole->n_slots + 3;
    size_t head_stride = row_stride * whole->n_rows + 5;
    for (uint32_t m = 0; m < group; m++)
        for (uint32_t i = 0; i < whole->n_rows; i++)
            memcpy(dst + m * head_stride + i * row_stride,
                   x + (g * group + m) * whole->head_stride
                       + i * whole->row_stride,
                   whole->n_slots * sizeof *dst);
    kf_logits_view v = { dst, whole->n_rows, whole->n_slots, row_stride,
                         head_stride, whole->flags, 0 };
    return v;
}

/* Hands `whole`'s logits to b one KV head at a time, heads in a random
 * order. */
static void observe_by_kv_head(kf_cache *b, int layer, const kf_config *cfg,
                               const kf_logits_view *whole, float *copy,
                               test_rng *r)
{
    uint32_t order[64];
    uint32_t n_kv = cfg->n_kv_heads, group = cfg->n_heads / n_kv;
    for (uint32_t g = 0; g < n_kv; g++)
        order[g] = g;
    for (uint32_t g = n_kv; g > 1; g--) {
        uint32_t j = test_rng_u32(r) % g, t = order[g - 1];
        order[g - 1] = order[j];
        order[j] = t;
    }
    assert_int_equal(kf_observe_begin(b, layer, whole->n_rows), KF_OK);
    for (uint32_t k = 0; k < n_kv; k++) {
        kf_logits_view v = group_view(whole->data, whole, order[k], group, copy);
        assert_int_equal(kf_observe_kv_head(b, layer, (int)order[k], &v), KF_OK);
    }
    assert_int_equal(kf_observe_end(b, layer), KF_OK);
}

/* Observes `rows` rows on every layer of a (whole layer) and b (by KV
 * head) and compares the caches. */
static void observe_both(kf_cache *a, kf_cache *b, const kf_config *cfg,
                         uint32_t rows, int causal, float *x, float *copy,
                         test_rng *r)
{
    for (int l = 0; l < (int)cfg->n_layers; l++) {
        uint32_t slots = slots_of(a, l) + rows;
        test_fill_logits(x, cfg->n_heads, rows, slots, causal, r);
        kf_logits_view v = { x, rows, slots, slots, (size_t)rows * slots,
                             causal ? KF_LOGITS_CAUSAL : 0u, 0 };
        assert_int_equal(kf_observe_logits(a, l, &v), KF_OK);
        observe_by_kv_head(b, l, cfg, &v, copy, r);
        assert_true(test_cache_digest(a) == test_cache_digest(b));
    }
}

static void select_both(kf_cache *a, kf_cache *b, const kf_config *cfg)
{
    int uniform = cfg->granularity == KF_GRANULARITY_UNIFORM;
    int first = uniform ? KF_ALL_LAYERS : 0;
    int last = uniform ? KF_ALL_LAYERS : (int)cfg->n_layers - 1;
    for (int l = first; l <= last; l++) {
        assert_int_equal(kf_select(a, l), KF_OK);
        assert_int_equal(kf_select(b, l), KF_OK);
        assert_int_equal(kf_compact(a, l, NULL, NULL), KF_OK);
        assert_int_equal(kf_compact(b, l, NULL, NULL), KF_OK);
        if (uniform)
            break;
    }
    assert_true(test_cache_digest(a) == test_cache_digest(b));
}

static void run_case(const shape *s, kf_policy policy, kf_slot_order order,
                     uint32_t evict_interval, kf_granularity gran,
                     uint64_t seed)
{
    test_rng r;
    test_rng_seed(&r, seed);
    const uint32_t prompt = 24, chunk = 10, steps = 14;
    kf_config cfg = test_config(2, s->heads, s->kv_heads, 8, 64);
    cfg.policy = policy;
    cfg.slot_order = order;
    cfg.evict_interval = evict_interval;
    cfg.granularity = gran;
    cfg.seed = seed;
    kf_cache *a = NULL, *b = NULL;
    assert_int_equal(kf_cache_create(&a, &cfg), KF_OK);
    assert_int_equal(kf_cache_create(&b, &cfg), KF_OK);
    size_t n = (size_t)cfg.n_heads * chunk * cfg.capacity;
    float *x = malloc(n * sizeof *x);
    /* the padded copy: group heads x rows x (slots + 3) + 5 per head */
    float *copy = malloc(((size_t)cfg.n_heads * chunk * (cfg.capacity + 3)
                          + 5 * cfg.n_heads) * sizeof *copy);
    assert_non_null(x);
    assert_non_null(copy);

    for (uint32_t done = 0; done < prompt; done += chunk) {
        uint32_t rows = prompt - done < chunk ? prompt - done : chunk;
        observe_both(a, b, &cfg, rows, 1, x, copy, &r);
    }
    select_both(a, b, &cfg);
    for (uint32_t t = 0; t < steps; t++) {
        observe_both(a, b, &cfg, 1, 0, x, copy, &r);
        select_both(a, b, &cfg);
    }
    free(x);
    free(copy);
    kf_cache_destroy(&a);
    kf_cache_destroy(&b);
}

static const shape shapes[] = {
    { 4, 4 }, /* MHA */
    { 4, 2 }, /* GQA */
    { 6, 2 }, /* GQA, group 3 */
    { 4, 1 }, /* MQA */
};

static void test_matches_observe_logits(void **state)
{
    (void)state;
    static const kf_policy policies[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O,
                                          KF_POLICY_WINDOW };
    uint64_t seed = 1;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (size_t p = 0; p < 3; p++)
            run_case(&shapes[s], policies[p], KF_ORDER_POSITION, 1,
                     KF_GRANULARITY_KV_HEAD, seed++);
}

static void test_matches_other_settings(void **state)
{
    (void)state;
    uint64_t seed = 100;
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        run_case(&shapes[s], KF_POLICY_KEYFORMER, KF_ORDER_ANY, 1,
                 KF_GRANULARITY_KV_HEAD, seed++);
        run_case(&shapes[s], KF_POLICY_KEYFORMER, KF_ORDER_POSITION, 4,
                 KF_GRANULARITY_KV_HEAD, seed++);
        run_case(&shapes[s], KF_POLICY_KEYFORMER, KF_ORDER_ANY, 3,
                 KF_GRANULARITY_LAYER, seed++);
        run_case(&shapes[s], KF_POLICY_H2O, KF_ORDER_POSITION, 1,
                 KF_GRANULARITY_UNIFORM, seed++);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matches_observe_logits),
        cmocka_unit_test(test_matches_other_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
