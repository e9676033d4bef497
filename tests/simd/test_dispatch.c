/* Kernel choice: CPU flags, the config mask, KF_CPU_MASK, switching a live
 * cache, reporting the variant per kernel, and whole cache runs that must
 * give identical digests on every path. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static const char *best_name(uint32_t mask)
{
    variant vars[3];
    int n = harness_variants(vars);
    const char *name = "c";
    for (int i = 0; i < n; i++)
        if (mask & vars[i].isa)
            name = vars[i].name; /* AVX-512 comes after AVX2 */
    return name;
}

static kf_config small_config(kf_policy policy, uint32_t cpu_mask)
{
    kf_config cfg;
    kf_config_default(&cfg);
    cfg.n_layers = 2;
    cfg.n_heads = 4;
    cfg.n_kv_heads = 2;
    cfg.head_dim = 24;
    cfg.capacity = 320;
    cfg.policy = policy;
    cfg.n_threads = 1;
    cfg.cpu_mask = cpu_mask;
    cfg.seed = 1234;
    return cfg;
}

static void expect_kernels(const kf_cache *c, const char *isa)
{
    const char *kernel, *got;
    unsigned i = 0;
    while (kf_cache_kernel_isa(c, i, &kernel, &got) == KF_OK) {
        if (strcmp(got, isa) != 0)
            harness_fail("kernel %s runs %s, expected %s", kernel, got, isa);
        i++;
    }
    assert_int_equal(i, KF_KERNEL_COUNT);
}

static void test_flags(void **state)
{
    (void)state;
    unsigned flags = kf_cpu_flags();
    assert_int_equal(flags & ~(KF_CPU_AVX2 | KF_CPU_AVX512 | KF_CPU_NEON), 0);
    if (flags & KF_CPU_AVX512)
        assert_true(flags & KF_CPU_AVX2);
#if defined(__aarch64__)
    assert_int_equal(flags, KF_CPU_NEON);
#elif !defined(__x86_64__) && !defined(__i386__)
    assert_int_equal(flags, 0);
#endif
    printf("[ INFO     ] detected:%s%s%s%s\n", flags ? "" : " none",
           flags & KF_CPU_AVX2 ? " avx2" : "", flags & KF_CPU_AVX512 ? " avx512" : "",
           flags & KF_CPU_NEON ? " neon" : "");
}

static void *flags_thread(void *arg)
{
    *(unsigned *)arg = kf_cpu_flags();
    return NULL;
}

static void test_flags_threads(void **state)
{
    (void)state;
    pthread_t t[4];
    unsigned got[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, flags_thread, &got[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(got[i], kf_cpu_flags());
    }
}

static void test_config_field(void **state)
{
    (void)state;
    kf_config cfg;
    kf_config_default(&cfg);
    assert_int_equal(cfg.cpu_mask, KF_CPU_ALL);
    /* cpu_mask, evict_interval, slot_order and noise took the first 16
     * bytes of the old 64 reserved ones: the struct keeps its size */
    assert_int_equal(offsetof(kf_config, evict_interval),
                     offsetof(kf_config, cpu_mask) + sizeof cfg.cpu_mask);
    assert_int_equal(offsetof(kf_config, slot_order),
                     offsetof(kf_config, evict_interval) + sizeof cfg.evict_interval);
    assert_int_equal(offsetof(kf_config, noise),
                     offsetof(kf_config, slot_order) + sizeof cfg.slot_order);
    /* then the options beyond the paper, 32 more bytes of them */
    assert_int_equal(offsetof(kf_config, obs_window),
                     offsetof(kf_config, noise) + sizeof cfg.noise);
    assert_int_equal(offsetof(kf_config, sink_tokens),
                     offsetof(kf_config, layer_slope) + sizeof cfg.layer_slope);
    assert_int_equal(offsetof(kf_config, reserved),
                     offsetof(kf_config, head_floor) + sizeof cfg.head_floor);
    assert_int_equal(offsetof(kf_config, reserved) + sizeof cfg.reserved,
                     offsetof(kf_config, cpu_mask) + 64);
    assert_int_equal(sizeof cfg.reserved, 16);
    assert_int_equal(sizeof cfg.cpu_mask, 4);
    /* kf_config_default is the fast path, kf_config_spec_exact the spec */
    assert_int_equal(cfg.evict_interval, 0);
    assert_int_equal(cfg.slot_order, KF_ORDER_ANY);
    assert_int_equal(cfg.noise, KF_NOISE_TABLE);
    kf_config exact;
    assert_int_equal(kf_config_spec_exact(&exact), KF_OK);
    assert_int_equal(exact.slot_order, KF_ORDER_POSITION);
    assert_int_equal(exact.noise, KF_NOISE_EXACT);
    exact.slot_order = cfg.slot_order;
    exact.noise = cfg.noise;
    assert_memory_equal(&exact, &cfg, sizeof cfg);
    assert_int_equal(kf_config_spec_exact(NULL), KF_EINVAL);
}

static void test_masks(void **state)
{
    (void)state;
    unsetenv("KF_CPU_MASK");
    variant vars[3];
    int n = harness_variants(vars);
    kf_cache *c = NULL;
    kf_config cfg = small_config(KF_POLICY_KEYFORMER, KF_CPU_ALL);
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    uint32_t mask = 0;
    assert_int_equal(kf_cache_cpu_mask(c, &mask), KF_OK);
    assert_int_equal(mask, KF_CPU_ALL);
    expect_kernels(c, best_name(KF_CPU_ALL));

    assert_int_equal(kf_cache_set_cpu_mask(c, 0), KF_OK);
    assert_int_equal(kf_cache_cpu_mask(c, &mask), KF_OK);
    assert_int_equal(mask, 0);
    expect_kernels(c, "c");
    for (int i = 0; i < n; i++) {
        assert_int_equal(kf_cache_set_cpu_mask(c, vars[i].isa), KF_OK);
        expect_kernels(c, vars[i].name);
    }
    /* bits of instruction sets this machine lacks are ignored */
    assert_int_equal(kf_cache_set_cpu_mask(c, 0xfffffff8u), KF_OK);
    expect_kernels(c, "c");
    assert_int_equal(kf_cache_set_cpu_mask(c, KF_CPU_ALL), KF_OK);
    expect_kernels(c, best_name(KF_CPU_ALL));

    /* errors */
    const char *a, *b;
    assert_int_equal(kf_cache_set_cpu_mask(NULL, 0), KF_EINVAL);
    assert_int_equal(kf_cache_cpu_mask(NULL, &mask), KF_EINVAL);
    assert_int_equal(kf_cache_cpu_mask(c, NULL), KF_EINVAL);
    assert_int_equal(kf_cache_kernel_isa(NULL, 0, &a, &b), KF_EINVAL);
    assert_int_equal(kf_cache_kernel_isa(c, 0, NULL, &b), KF_EINVAL);
    assert_int_equal(kf_cache_kernel_isa(c, 0, &a, NULL), KF_EINVAL);
    assert_int_equal(kf_cache_kernel_isa(c, KF_KERNEL_COUNT, &a, &b), KF_ERANGE);
    assert_int_equal(kf_cache_kernel_isa(c, 1000, &a, &b), KF_ERANGE);
    kf_cache_destroy(&c);

    /* the config mask at creation */
    for (int i = 0; i < n; i++) {
        cfg.cpu_mask = vars[i].isa;
        assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
        expect_kernels(c, vars[i].name);
        kf_cache_destroy(&c);
    }
    cfg.cpu_mask = 0;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    expect_kernels(c, "c");
    kf_cache_destroy(&c);
}

static void test_env(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint32_t mask; /* what the cache gets with cfg.cpu_mask = ALL */
    } cases[] = {
        { "0", 0 }, { "1", 1 }, { "2", 2 }, { "3", 3 }, { "4", 4 },
        { "0x3", 3 }, { "0X2", 2 }, { "010", 8 }, { " 1", 1 }, { "1\n", 1 },
        { "4294967295", KF_CPU_ALL },
        /* ignored: all bits stay allowed */
        { "", KF_CPU_ALL }, { "abc", KF_CPU_ALL }, { "1x", KF_CPU_ALL },
        { "-1", KF_CPU_ALL }, { "+1", KF_CPU_ALL }, { "4294967296", KF_CPU_ALL },
        { "99999999999999999999999", KF_CPU_ALL }, { "0x", KF_CPU_ALL },
        { "1 2", KF_CPU_ALL }, { "0x1ffffffff", KF_CPU_ALL },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        setenv("KF_CPU_MASK", cases[i].text, 1);
        kf_config cfg = small_config(KF_POLICY_H2O, KF_CPU_ALL);
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
        uint32_t mask = 0;
        kf_cache_cpu_mask(c, &mask);
        if (mask != cases[i].mask)
            harness_fail("KF_CPU_MASK=\"%s\": mask 0x%x, expected 0x%x",
                         cases[i].text, mask, cases[i].mask);
        expect_kernels(c, best_name(mask));
        kf_cache_destroy(&c);
    }
    /* ANDed with the config's mask */
    setenv("KF_CPU_MASK", "1", 1);
    kf_config cfg = small_config(KF_POLICY_H2O, KF_CPU_AVX512);
    kf_cache *c = NULL;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    uint32_t mask = 99;
    kf_cache_cpu_mask(c, &mask);
    assert_int_equal(mask, 0);
    expect_kernels(c, "c");
    /* a live switch replaces the creation mask, environment included */
    kf_cache_set_cpu_mask(c, KF_CPU_ALL);
    expect_kernels(c, best_name(KF_CPU_ALL));
    kf_cache_destroy(&c);
    unsetenv("KF_CPU_MASK");
}

/* ---- whole cache runs ---- */

typedef struct run_result {
    uint64_t digest;
    int status;
} run_result;

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* Prefill of 200 tokens in two chunks, then 40 decode steps, K and V
 * compacted on every layer; the digest covers scores, positions, kept
 * lists, slot counts and the K/V bytes. */
static run_result run_cache(kf_cache *c, uint64_t seed)
{
    kf_config cfg;
    kf_cache_config(c, &cfg);
    const uint32_t heads = cfg.n_heads, kv = cfg.n_kv_heads, dim = cfg.head_dim;
    const uint32_t cap = cfg.capacity, prompt = 200, steps = 40;
    float *k = malloc((size_t)cfg.n_layers * kv * cap * dim * sizeof *k);
    float *v = malloc((size_t)cfg.n_layers * kv * cap * dim * sizeof *v);
    float *logits = malloc((size_t)heads * prompt * cap * sizeof *logits);
    rng r;
    rng_init(&r, seed, 99);
    uint64_t h = 0xcbf29ce484222325ull;
    run_result res = { 0, KF_OK };

    for (uint32_t step = 0; step <= steps && res.status == KF_OK; step++) {
        for (uint32_t l = 0; l < cfg.n_layers && res.status == KF_OK; l++) {
            uint32_t n_old = 0;
            kf_slot_count(c, (int)l, 0, &n_old);
            uint32_t chunks = step == 0 ? 2 : 1;
            for (uint32_t ch = 0; ch < chunks && res.status == KF_OK; ch++) {
                uint32_t rows = step == 0 ? prompt / 2 : 1;
                kf_slot_count(c, (int)l, 0, &n_old);
                uint32_t n = n_old + rows;
                /* new K/V rows at slots n_old.. */
                for (uint32_t g = 0; g < kv; g++)
                    for (uint32_t i = n_old; i < n; i++)
                        for (uint32_t d = 0; d < dim; d++) {
                            size_t at = (((size_t)l * kv + g) * cap + i) * dim + d;
                            k[at] = rng_float(&r, -1.0f, 1.0f);
                            v[at] = rng_float(&r, -1.0f, 1.0f);
                        }
                for (uint32_t hh = 0; hh < heads; hh++)
                    for (uint32_t i = 0; i < rows; i++)
                        for (uint32_t j = 0; j < n; j++)
                            logits[((size_t)hh * rows + i) * n + j] =
                                j > n_old + i ? -INFINITY
                                : rng_below(&r, 50) == 0 ? -INFINITY
                                                         : rng_float(&r, -6.0f, 6.0f);
                /* the diagonal stays finite: no empty rows */
                for (uint32_t hh = 0; hh < heads; hh++)
                    for (uint32_t i = 0; i < rows; i++)
                        logits[((size_t)hh * rows + i) * n + n_old + i] = 0.5f;
                kf_logits_view lv = { logits, rows, n, n, (size_t)rows * n,
                                      KF_LOGITS_CAUSAL, 0 };
                res.status = kf_observe_logits(c, (int)l, &lv);
            }
            if (res.status)
                break;
            if (step == 0 || step % 3 != 1) { /* some steps grow unselected */
                uint32_t n = 0;
                kf_slot_count(c, (int)l, 0, &n);
                res.status = kf_select(c, (int)l);
                if (res.status)
                    break;
                for (uint32_t g = 0; g < kv; g++) {
                    const uint32_t *kept;
                    uint32_t nk;
                    kf_kept_slots(c, (int)l, (int)g, &kept, &nk);
                    h = mix(h, kept, nk * sizeof *kept);
                }
                kf_kv_view kvw = { k + (size_t)l * kv * cap * dim, KF_DTYPE_F32, n,
                                   dim, (size_t)cap * dim, 0, 0 };
                kf_kv_view vvw = kvw;
                vvw.data = v + (size_t)l * kv * cap * dim;
                res.status = kf_compact(c, (int)l, &kvw, &vvw);
            }
        }
    }
    for (uint32_t l = 0; l < cfg.n_layers; l++)
        for (uint32_t g = 0; g < kv; g++) {
            const float *s;
            const int32_t *p;
            uint32_t n;
            kf_slot_scores(c, (int)l, (int)g, &s, &n);
            h = mix(h, s, n * sizeof *s);
            kf_slot_positions(c, (int)l, (int)g, &p, &n);
            h = mix(h, p, n * sizeof *p);
            h = mix(h, &n, sizeof n);
            h = mix(h, k + ((size_t)l * kv + g) * cap * dim, (size_t)n * dim * 4);
            h = mix(h, v + ((size_t)l * kv + g) * cap * dim, (size_t)n * dim * 4);
        }
    free(k);
    free(v);
    free(logits);
    res.digest = h;
    return res;
}

/* Runs the cache on every mask, three ways each: every digest must be
 * the same; returns it. */
static uint64_t same_everywhere(kf_policy policy, kf_granularity gran,
                                uint32_t threads, kf_noise noise)
{
    unsetenv("KF_CPU_MASK");
    static const uint32_t masks[] = { 0, KF_CPU_AVX2, KF_CPU_AVX512,
                                      KF_CPU_AVX2 | KF_CPU_AVX512, KF_CPU_NEON,
                                      KF_CPU_ALL };
    run_result ref = { 0, 0 };
    int have_ref = 0;
    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++)
        for (int how = 0; how < 3; how++) {
            kf_config cfg = small_config(policy, KF_CPU_ALL);
            cfg.granularity = gran;
            cfg.n_threads = threads;
            cfg.noise = noise;
            if (how == 0) /* the config field */
                cfg.cpu_mask = masks[i];
            char text[32];
            if (how == 1) { /* the environment */
                snprintf(text, sizeof text, "%u", masks[i]);
                setenv("KF_CPU_MASK", text, 1);
            }
            kf_cache *c = NULL;
            assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
            unsetenv("KF_CPU_MASK");
            if (how == 2) /* a live switch */
                assert_int_equal(kf_cache_set_cpu_mask(c, masks[i]), KF_OK);
            expect_kernels(c, best_name(masks[i]));
            run_result got = run_cache(c, harness_seed());
            kf_cache_destroy(&c);
            if (!have_ref) {
                ref = got;
                have_ref = 1;
                assert_int_equal(ref.status, KF_OK);
            } else if (got.digest != ref.digest || got.status != ref.status) {
                harness_fail("policy %d granularity %d threads %u noise %d mask "
                             "0x%x (via %s): digest %016llx status %d, C path "
                             "%016llx status %d",
                             (int)policy, (int)gran, threads, (int)noise, masks[i],
                             how == 0 ? "cfg" : how == 1 ? "env" : "set",
                             (unsigned long long)got.digest, got.status,
                             (unsigned long long)ref.digest, ref.status);
            }
        }
    return ref.digest;
}

static void test_runs_keyformer(void **state)
{
    (void)state;
    same_everywhere(KF_POLICY_KEYFORMER, KF_GRANULARITY_KV_HEAD, 1,
                    KF_NOISE_EXACT);
    same_everywhere(KF_POLICY_KEYFORMER, KF_GRANULARITY_LAYER, 2,
                    KF_NOISE_EXACT);
}

/* KF_NOISE_TABLE (kf_score_table): the same on every mask, and not the
 * exact noise's result. */
static void test_runs_keyformer_table(void **state)
{
    (void)state;
    uint64_t table = same_everywhere(KF_POLICY_KEYFORMER, KF_GRANULARITY_KV_HEAD,
                                     1, KF_NOISE_TABLE);
    same_everywhere(KF_POLICY_KEYFORMER, KF_GRANULARITY_LAYER, 2, KF_NOISE_TABLE);
    assert_true(table != same_everywhere(KF_POLICY_KEYFORMER,
                                         KF_GRANULARITY_KV_HEAD, 1,
                                         KF_NOISE_EXACT));
}

static void test_runs_h2o(void **state)
{
    (void)state;
    uint64_t h2o = same_everywhere(KF_POLICY_H2O, KF_GRANULARITY_KV_HEAD, 2,
                                   KF_NOISE_EXACT);
    /* H2O draws no noise: the field changes nothing */
    assert_true(h2o == same_everywhere(KF_POLICY_H2O, KF_GRANULARITY_KV_HEAD, 2,
                                       KF_NOISE_TABLE));
}

/* Switching a cache's kernels between sequences (after a reset) changes
 * nothing either. */
static void test_switch_after_reset(void **state)
{
    (void)state;
    unsetenv("KF_CPU_MASK");
    kf_config cfg = small_config(KF_POLICY_KEYFORMER, 0);
    kf_cache *a = NULL, *b = NULL;
    assert_int_equal(kf_cache_create(&a, &cfg), KF_OK);
    assert_int_equal(kf_cache_create(&b, &cfg), KF_OK);
    run_result ra = run_cache(a, 7);
    kf_cache_set_cpu_mask(b, KF_CPU_ALL);
    run_result rb = run_cache(b, 7);
    assert_int_equal(ra.status, KF_OK);
    assert_true(ra.digest == rb.digest);
    kf_cache_reset(b);
    kf_cache_set_cpu_mask(b, 0);
    rb = run_cache(b, 7);
    assert_true(ra.digest == rb.digest);
    kf_cache_destroy(&a);
    kf_cache_destroy(&b);
}

int main(void)
{
    const char *env = getenv("KF_CPU_MASK");
    if (env)
        printf("[ INFO     ] KF_CPU_MASK=%s is set; this test sets its own\n", env);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_flags_threads),
        cmocka_unit_test(test_config_field),
        cmocka_unit_test(test_masks),
        cmocka_unit_test(test_env),
        cmocka_unit_test(test_runs_keyformer),
        cmocka_unit_test(test_runs_keyformer_table),
        cmocka_unit_test(test_runs_h2o),
        cmocka_unit_test(test_switch_after_reset),
    };
    int failed = cmocka_run_group_tests_name("simd_dispatch", tests, NULL, NULL);
    if (failed)
        printf("[ SEED     ] KF_SIMD_SEED=0x%llx\n",
               (unsigned long long)harness_seed());
    return failed;
}
