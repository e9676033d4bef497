/* Allocation failure in kf_cache_create: for a spread of configurations
 * (every policy, rule and granularity, ratio and absolute budgets, one and
 * several threads, small and large shapes) the allocator hook is made to
 * fail at each allocation the create would make, one at a time. Each must
 * give a clean KF_ENOMEM: *out NULL, every block obtained so far handed
 * back to the hook that gave it, nothing else touched; and the next create
 * with a working hook must succeed. A working create is then driven through
 * observe / select / compact / reset to check that no call after create
 * allocates, and destroy returns exactly what was allocated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keyformer.h"
#include "testutil.h"

#define MAX_LIVE 64

typedef struct hook_state {
    int calls;    /* alloc requests */
    int fail_at;  /* request number that fails (1-based), 0 = none; */
    int fail_all; /* every request from fail_at on fails */
    int frees;
    int bad_free; /* a free of something this hook did not hand out */
    void *live[MAX_LIVE];
    size_t live_size[MAX_LIVE];
    int n_live;
    size_t bytes_live;
} hook_state;

static void *hook_alloc(void *opaque, size_t size, size_t align)
{
    hook_state *h = opaque;
    h->calls++;
    assert_true(align >= 1 && align <= 64 && (align & (align - 1)) == 0);
    assert_true(size > 0);
    if (h->fail_at && (h->calls == h->fail_at
                       || (h->fail_all && h->calls > h->fail_at)))
        return NULL;
    if (h->n_live == MAX_LIVE)
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align,
                       size))
        return NULL;
    assert_true((uintptr_t)p % align == 0);
    memset(p, 0x5a, size); /* the library may not rely on zeroed memory */
    h->live[h->n_live] = p;
    h->live_size[h->n_live] = size;
    h->n_live++;
    h->bytes_live += size;
    return p;
}

static void hook_free(void *opaque, void *ptr)
{
    hook_state *h = opaque;
    h->frees++;
    for (int i = 0; i < h->n_live; i++)
        if (h->live[i] == ptr) {
            h->bytes_live -= h->live_size[i];
            h->n_live--;
            h->live[i] = h->live[h->n_live];
            h->live_size[i] = h->live_size[h->n_live];
            free(ptr);
            return;
        }
    h->bad_free++;
}

static void use_hook(kf_config *cfg, hook_state *h)
{
    memset(h, 0, sizeof *h);
    cfg->allocator.alloc = hook_alloc;
    cfg->allocator.free = hook_free;
    cfg->allocator.opaque = h;
}

/* The configurations every test runs over. */
typedef struct named_config {
    const char *name;
    kf_config cfg;
} named_config;

static size_t make_configs(named_config *out, size_t max)
{
    size_t n = 0;
#define ADD(label, ...)                                                        \
    do {                                                                      \
        assert_true(n < max);                                                 \
        kf_config c_ = test_config(2, 4, 2, 8, 64);                           \
        __VA_ARGS__;                                                          \
        out[n].name = label;                                                  \
        out[n].cfg = c_;                                                      \
        n++;                                                                  \
    } while (0)
    ADD("keyformer ratio", (void)0);
    ADD("keyformer tokens", c_.budget_ratio = 0.0; c_.budget_tokens = 16);
    ADD("keyformer reference rule", c_.rule = KF_RULE_REFERENCE);
    ADD("h2o layer granularity", c_.policy = KF_POLICY_H2O;
        c_.granularity = KF_GRANULARITY_LAYER);
    ADD("h2o uniform", c_.policy = KF_POLICY_H2O;
        c_.granularity = KF_GRANULARITY_UNIFORM);
    ADD("window", c_.policy = KF_POLICY_WINDOW);
    ADD("sinks", c_.policy = KF_POLICY_SINKS; c_.budget_ratio = 0.0;
        c_.budget_tokens = 12);
    ADD("full", c_.policy = KF_POLICY_FULL);
    ADD("4 threads", c_.n_threads = 4);
    ADD("openmp default threads", c_.n_threads = 0);
    ADD("c kernels only", c_.cpu_mask = 0);
    ADD("tiny", c_ = test_config(1, 1, 1, 1, 1); c_.budget_ratio = 0.0;
        c_.budget_tokens = 1);
    ADD("large", c_ = test_config(32, 32, 8, 128, 4096));
    ADD("large uniform 8 threads", c_ = test_config(16, 16, 16, 64, 2048);
        c_.granularity = KF_GRANULARITY_UNIFORM; c_.n_threads = 8);
#undef ADD
    return n;
}

/* Allocations a working create makes for cfg. */
static int count_allocations(const kf_config *base)
{
    kf_config cfg = *base;
    hook_state h;
    use_hook(&cfg, &h);
    kf_cache *c = NULL;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    int calls = h.calls;
    assert_true(calls >= 1);
    kf_cache_destroy(&c);
    assert_null(c);
    assert_int_equal(h.n_live, 0);
    assert_int_equal(h.bad_free, 0);
    return calls;
}

static void expect_clean_enomem(const named_config *nc, int fail_at,
                                int fail_all)
{
    kf_config cfg = nc->cfg;
    hook_state h;
    use_hook(&cfg, &h);
    h.fail_at = fail_at;
    h.fail_all = fail_all;
    static int sentinel;
    kf_cache *c = (kf_cache *)(void *)&sentinel;
    int rc = kf_cache_create(&c, &cfg);
    if (rc != KF_ENOMEM)
        fail_msg("%s: allocation %d failing: create returned %d (%s), "
                 "expected KF_ENOMEM", nc->name, fail_at, rc, kf_strerror(rc));
    if (c != NULL)
        fail_msg("%s: allocation %d failing: *out not NULL", nc->name, fail_at);
    if (h.n_live != 0 || h.bytes_live != 0)
        fail_msg("%s: allocation %d failing: %d blocks (%zu bytes) leaked",
                 nc->name, fail_at, h.n_live, h.bytes_live);
    if (h.bad_free)
        fail_msg("%s: allocation %d failing: freed a pointer the hook did "
                 "not return", nc->name, fail_at);
    /* the failure left nothing behind: the same config now works */
    h.fail_at = 0;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    assert_non_null(c);
    kf_cache_destroy(&c);
    assert_int_equal(h.n_live, 0);
}

static void test_fail_each_allocation(void **state)
{
    (void)state;
    named_config configs[32];
    size_t n = make_configs(configs, 32);
    for (size_t i = 0; i < n; i++) {
        int total = count_allocations(&configs[i].cfg);
        for (int k = 1; k <= total; k++) {
            expect_clean_enomem(&configs[i], k, 0); /* only the k-th */
            expect_clean_enomem(&configs[i], k, 1); /* the k-th and after */
        }
    }
}

static void test_every_allocation_fails(void **state)
{
    (void)state;
    named_config configs[32];
    size_t n = make_configs(configs, 32);
    for (size_t i = 0; i < n; i++) {
        kf_config cfg = configs[i].cfg;
        hook_state h;
        use_hook(&cfg, &h);
        h.fail_at = 1;
        h.fail_all = 1;
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), KF_ENOMEM);
        assert_null(c);
        assert_int_equal(h.n_live, 0);
        assert_int_equal(h.bad_free, 0);
        assert_true(h.calls >= 1);
    }
}

/* Invalid configurations never reach the allocator. */
static void test_invalid_config_allocates_nothing(void **state)
{
    (void)state;
    kf_config cfg = test_config(2, 4, 2, 8, 64);
    hook_state h;
    use_hook(&cfg, &h);
    cfg.n_heads = 3; /* not a multiple of n_kv_heads */
    kf_cache *c = NULL;
    assert_int_not_equal(kf_cache_create(&c, &cfg), KF_OK);
    assert_null(c);
    assert_int_equal(h.calls, 0);
}

/* After create, nothing allocates: a full prefill / decode / reset cycle
 * leaves the hook's counters where create left them, and destroy returns
 * every block. */
static void test_no_allocation_after_create(void **state)
{
    (void)state;
    named_config configs[32];
    size_t n = make_configs(configs, 32);
    for (size_t i = 0; i < n; i++) {
        kf_config cfg = configs[i].cfg;
        if (cfg.capacity > 256 || cfg.n_layers > 4)
            continue; /* keep the cycle quick */
        hook_state h;
        use_hook(&cfg, &h);
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
        int calls = h.calls, live = h.n_live;
        size_t bytes = 0;
        assert_int_equal(kf_cache_memory(c, &bytes), KF_OK);
        assert_true(bytes > 0);

        test_rng rng;
        test_rng_seed(&rng, 7 + i);
        uint32_t prompt = cfg.capacity < 24 ? cfg.capacity : 24;
        float *logits = malloc((size_t)cfg.n_heads * cfg.capacity * cfg.capacity
                               * sizeof *logits);
        assert_non_null(logits);
        int uniform = cfg.granularity == KF_GRANULARITY_UNIFORM;
        for (int round = 0; round < 2; round++) {
            for (int step = 0; step < 6; step++) {
                uint32_t rows = step == 0 ? prompt : 1;
                int ok = 1;
                for (uint32_t l = 0; l < cfg.n_layers; l++) {
                    uint32_t have = 0;
                    assert_int_equal(kf_slot_count(c, (int)l, 0, &have), KF_OK);
                    if (have + rows > cfg.capacity) {
                        ok = 0;
                        break;
                    }
                    assert_int_equal(test_observe(c, (int)l, logits, rows, 1, &rng),
                                     KF_OK);
                }
                if (!ok)
                    break;
                if (uniform) {
                    assert_int_equal(kf_select(c, KF_ALL_LAYERS), KF_OK);
                } else {
                    for (uint32_t l = 0; l < cfg.n_layers; l++)
                        assert_int_equal(kf_select(c, (int)l), KF_OK);
                }
                assert_int_equal(kf_compact(c, KF_ALL_LAYERS, NULL, NULL), KF_OK);
            }
            assert_int_equal(kf_cache_reset(c), KF_OK);
        }
        free(logits);
        assert_int_equal(h.calls, calls);
        assert_int_equal(h.n_live, live);
        assert_int_equal(h.frees, 0);
        kf_cache_destroy(&c);
        assert_null(c);
        assert_int_equal(h.n_live, 0);
        assert_int_equal(h.bad_free, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fail_each_allocation),
        cmocka_unit_test(test_every_allocation_fails),
        cmocka_unit_test(test_invalid_config_allocates_nothing),
        cmocka_unit_test(test_no_allocation_after_create),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
