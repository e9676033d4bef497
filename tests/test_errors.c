/* Every error path of the public API: the exact status documented in
 * keyformer.h, a real message from kf_strerror(), a cache whose observable
 * state (test_cache_digest, kf_cache_memory) did not change, and a next
 * valid call that still succeeds. */
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keyformer.h"
#include "testutil.h"

/* ---- status and state checks ---- */

/* A status code no version will ever use. */
#define UNKNOWN_CODE (-12345)

static void check_status(int got, int want, const char *expr, const char *file,
                         int line)
{
    if (got != want)
        fail_msg("%s:%d: %s returned %d (%s), expected %d (%s)", file, line,
                 expr, got, kf_strerror(got), want, kf_strerror(want));
    if (want == KF_OK)
        return;
    const char *msg = kf_strerror(got);
    const char *unknown = kf_strerror(UNKNOWN_CODE);
    if (!msg || !msg[0] || !strcmp(msg, unknown))
        fail_msg("%s:%d: kf_strerror(%d) is \"%s\", not a real message", file,
                 line, got, msg ? msg : "(null)");
}

/* The call fails with `want` (no cache involved). */
#define EXPECT_STATUS(want, call) \
    check_status((call), (want), #call, __FILE__, __LINE__)

/* What a failed call must leave untouched. */
typedef struct snapshot {
    uint64_t digest;
    size_t bytes;
} snapshot;

static snapshot take_snapshot(const kf_cache *c)
{
    snapshot s;
    s.digest = test_cache_digest(c);
    assert_int_equal(kf_cache_memory(c, &s.bytes), KF_OK);
    return s;
}

static void check_snapshot(const kf_cache *c, const snapshot *before,
                           const char *expr, const char *file, int line)
{
    snapshot after = take_snapshot(c);
    if (after.digest != before->digest || after.bytes != before->bytes)
        fail_msg("%s:%d: %s changed the cache state", file, line, expr);
}

/* The call on cache c fails with `want` and changes nothing observable. */
#define EXPECT_FAIL(c, want, call)                                       \
    do {                                                                 \
        snapshot before_ = take_snapshot(c);                             \
        check_status((call), (want), #call, __FILE__, __LINE__);         \
        check_snapshot((c), &before_, #call, __FILE__, __LINE__);        \
    } while (0)

#define EXPECT_OK(call) check_status((call), KF_OK, #call, __FILE__, __LINE__)

/* ---- counting allocator ---- */

typedef struct alloc_counter {
    int attempts;      /* alloc calls */
    int allocs;        /* alloc calls that returned memory */
    int frees;
    size_t limit;      /* larger requests fail */
    int fail;          /* every request fails */
} alloc_counter;

static void *counting_alloc(void *opaque, size_t size, size_t align)
{
    alloc_counter *a = opaque;
    a->attempts++;
    assert_true(align >= 1 && align <= 64 && (align & (align - 1)) == 0);
    if (a->fail || size > a->limit)
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align,
                       size))
        return NULL;
    a->allocs++;
    return p;
}

static void counting_free(void *opaque, void *ptr)
{
    alloc_counter *a = opaque;
    a->frees++;
    free(ptr);
}

static void use_counter(kf_config *cfg, alloc_counter *a, size_t limit)
{
    memset(a, 0, sizeof *a);
    a->limit = limit;
    cfg->allocator.alloc = counting_alloc;
    cfg->allocator.free = counting_free;
    cfg->allocator.opaque = a;
}

/* kf_cache_create fails with `want`, sets *out to NULL, and (when the
 * configuration brings no allocator of its own) allocates nothing. */
static void expect_create_fails(const kf_config *cfg_in, int want,
                                const char *file, int line)
{
    kf_config cfg = *cfg_in;
    alloc_counter counter;
    int counted = !cfg.allocator.alloc && !cfg.allocator.free;
    if (counted)
        use_counter(&cfg, &counter, SIZE_MAX);
    static int sentinel;
    kf_cache *c = (kf_cache *)(void *)&sentinel;
    int rc = kf_cache_create(&c, &cfg);
    check_status(rc, want, "kf_cache_create", file, line);
    if (c != NULL)
        fail_msg("%s:%d: *out is not NULL after a failed create", file, line);
    if (counted && counter.allocs != counter.frees)
        fail_msg("%s:%d: failed create leaked memory", file, line);
    if (counted && want != KF_ENOMEM && counter.attempts)
        fail_msg("%s:%d: invalid config reached the allocator", file, line);
}

#define EXPECT_CREATE_FAILS(cfg, want) \
    expect_create_fails(&(cfg), (want), __FILE__, __LINE__)

static void expect_create_ok(const kf_config *cfg, const char *file, int line)
{
    kf_cache *c = NULL;
    check_status(kf_cache_create(&c, cfg), KF_OK, "kf_cache_create", file,
                 line);
    assert_non_null(c);
    kf_cache_destroy(&c);
    assert_null(c);
}

#define EXPECT_CREATE_OK(cfg) expect_create_ok(&(cfg), __FILE__, __LINE__)

/* ---- cache fixtures ---- */

/* 2 layers, 4 query heads on 2 KV heads, head_dim 8, capacity 32, Keyformer
 * with a ratio budget 0.5 (a 16-token prompt gives k = 8, w = 2). */
static kf_config base_config(void)
{
    return test_config(2, 4, 2, 8, 32);
}

static kf_cache *new_cache(const kf_config *cfg)
{
    kf_cache *c = NULL;
    assert_int_equal(kf_cache_create(&c, cfg), KF_OK);
    assert_non_null(c);
    return c;
}

static uint32_t n_heads_of(const kf_cache *c)
{
    kf_config cfg;
    assert_int_equal(kf_cache_config(c, &cfg), KF_OK);
    return cfg.n_heads;
}

static uint32_t slots_of(const kf_cache *c, int layer)
{
    uint32_t n = 0;
    assert_int_equal(kf_slot_count(c, layer, 0, &n), KF_OK);
    return n;
}

/* Observes `rows` valid causal rows on `layer`. */
static void observe_rows(kf_cache *c, int layer, uint32_t rows, test_rng *r)
{
    size_t n = (size_t)n_heads_of(c) * rows * (slots_of(c, layer) + rows);
    float *buf = malloc(n * sizeof *buf);
    assert_non_null(buf);
    assert_int_equal(test_observe(c, layer, buf, rows, 1, r), KF_OK);
    free(buf);
}

/* Host logits of one call, dense [head][row][slot], with the view. */
typedef struct logits {
    float *data;
    size_t elems; /* floats at data */
    kf_logits_view view;
} logits;

static logits make_logits(const kf_cache *c, int layer, uint32_t rows,
                          int causal, test_rng *r)
{
    logits l;
    uint32_t heads = n_heads_of(c), slots = slots_of(c, layer) + rows;
    l.elems = (size_t)heads * rows * slots;
    l.data = malloc(l.elems * sizeof *l.data);
    assert_non_null(l.data);
    test_fill_logits(l.data, heads, rows, slots, causal, r);
    l.view = (kf_logits_view){ l.data, rows, slots, slots,
                               (size_t)rows * slots,
                               causal ? KF_LOGITS_CAUSAL : 0u, 0 };
    return l;
}

static float *logit(logits *l, uint32_t head, uint32_t row, uint32_t slot)
{
    return l->data + head * l->view.head_stride + row * l->view.row_stride
           + slot;
}

/* A cache whose every layer observed a prompt of `prompt` tokens. */
static kf_cache *observed_cache(const kf_config *cfg, uint32_t prompt,
                                test_rng *r)
{
    kf_cache *c = new_cache(cfg);
    for (int l = 0; l < (int)cfg->n_layers; l++)
        observe_rows(c, l, prompt, r);
    return c;
}

/* A cache in generation: prompt selected and compacted (library only) on
 * every layer, then one decode row observed, so scores, steps and tau are
 * all non-trivial. */
static kf_cache *generating_cache(const kf_config *cfg, test_rng *r)
{
    kf_cache *c = observed_cache(cfg, 16, r);
    for (int l = 0; l < (int)cfg->n_layers; l++) {
        EXPECT_OK(kf_select(c, l));
        EXPECT_OK(kf_compact(c, l, NULL, NULL));
        observe_rows(c, l, 1, r);
    }
    return c;
}

/* Host K/V buffers of one layer, f32 [head][token][dim] over the capacity. */
typedef struct kv_pair {
    float *k, *v;
    size_t elems;
    kf_kv_view kview, vview;
} kv_pair;

static kv_pair make_kv(const kf_cache *c, int layer, test_rng *r)
{
    kf_config cfg;
    assert_int_equal(kf_cache_config(c, &cfg), KF_OK);
    kv_pair p;
    p.elems = (size_t)cfg.n_kv_heads * cfg.capacity * cfg.head_dim;
    p.k = malloc(p.elems * sizeof(float));
    p.v = malloc(p.elems * sizeof(float));
    assert_non_null(p.k);
    assert_non_null(p.v);
    for (size_t i = 0; i < p.elems; i++) {
        p.k[i] = test_rng_float(r, -1.0f, 1.0f);
        p.v[i] = test_rng_float(r, -1.0f, 1.0f);
    }
    uint32_t n = slots_of(c, layer);
    size_t hs = (size_t)cfg.capacity * cfg.head_dim;
    /* the buffers' sizes are declared: every compaction of these views is
     * bounds-checked too */
    size_t bytes = p.elems * sizeof(float);
    p.kview = (kf_kv_view){ p.k, KF_DTYPE_F32, n, cfg.head_dim, hs, bytes, 0 };
    p.vview = (kf_kv_view){ p.v, KF_DTYPE_F32, n, cfg.head_dim, hs, bytes, 0 };
    return p;
}

static void free_kv(kv_pair *p)
{
    free(p->k);
    free(p->v);
}

/* ---- kf_strerror, kf_config_default ---- */

static void test_strerror_codes(void **state)
{
    (void)state;
    static const int codes[] = { KF_EINVAL,   KF_ENOMEM,   KF_ERANGE,
                                 KF_ESTATE,   KF_EOVERFLOW, KF_ENAN,
                                 KF_EEMPTYROW, KF_ELAYOUT, KF_EMISMATCH };
    const char *unknown = kf_strerror(UNKNOWN_CODE);
    assert_non_null(unknown);
    assert_true(unknown[0] != '\0');
    const size_t n = sizeof codes / sizeof codes[0];
    for (size_t i = 0; i < n; i++) {
        const char *m = kf_strerror(codes[i]);
        assert_non_null(m);
        assert_true(m[0] != '\0');
        assert_string_not_equal(m, unknown);
        assert_string_not_equal(m, kf_strerror(KF_OK));
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(m, kf_strerror(codes[j]));
    }
    /* codes outside the table all get the one "unknown" message */
    static const int unknown_codes[] = { 1, -10, -100, INT_MIN, INT_MAX };
    for (size_t i = 0; i < sizeof unknown_codes / sizeof *unknown_codes; i++)
        assert_string_equal(kf_strerror(unknown_codes[i]), unknown);
}

static void test_config_default_null(void **state)
{
    (void)state;
    EXPECT_STATUS(KF_EINVAL, kf_config_default(NULL));
    kf_config cfg;
    EXPECT_OK(kf_config_default(&cfg));
}

/* ---- kf_cache_create ---- */

static void test_create_null(void **state)
{
    (void)state;
    kf_config cfg = base_config();
    EXPECT_STATUS(KF_EINVAL, kf_cache_create(NULL, &cfg));
    static int sentinel;
    kf_cache *c = (kf_cache *)(void *)&sentinel;
    EXPECT_STATUS(KF_EINVAL, kf_cache_create(&c, NULL));
    assert_null(c);
    EXPECT_CREATE_OK(cfg);
}

static void test_create_zero_shape(void **state)
{
    (void)state;
    for (int field = 0; field < 5; field++) {
        kf_config cfg = base_config();
        uint32_t *shape[] = { &cfg.n_layers, &cfg.n_heads, &cfg.n_kv_heads,
                              &cfg.head_dim, &cfg.capacity };
        *shape[field] = 0;
        EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    }
    kf_config cfg = test_config(1, 1, 1, 1, 1);
    cfg.budget_tokens = 1;
    cfg.budget_ratio = 0.0;
    EXPECT_CREATE_OK(cfg);
}

static void test_create_heads_not_multiple(void **state)
{
    (void)state;
    kf_config cfg = test_config(1, 6, 4, 8, 32);
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg = test_config(1, 2, 4, 8, 32); /* more KV heads than heads */
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg = test_config(1, 7, 3, 8, 32);
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg = test_config(1, 6, 3, 8, 32);
    EXPECT_CREATE_OK(cfg);
}

static void test_create_capacity_limit(void **state)
{
    (void)state;
    kf_config cfg = test_config(1, 1, 1, 1, (uint32_t)INT32_MAX + 1u);
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.capacity = UINT32_MAX;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    /* 2^31 - 1 itself is a valid capacity: it gets as far as the allocator,
     * which refuses the many gigabytes */
    alloc_counter counter;
    cfg.capacity = INT32_MAX;
    use_counter(&cfg, &counter, (size_t)1 << 30);
    EXPECT_CREATE_FAILS(cfg, KF_ENOMEM);
    assert_int_equal(counter.attempts, 1);
    assert_int_equal(counter.allocs, 0);
    assert_int_equal(counter.frees, 0);
}

static void test_create_budget_tokens_above_capacity(void **state)
{
    (void)state;
    kf_config cfg = base_config();
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = cfg.capacity + 1;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.budget_tokens = UINT32_MAX;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.budget_tokens = cfg.capacity;
    EXPECT_CREATE_OK(cfg);
}

static void test_create_budget_both_or_neither(void **state)
{
    (void)state;
    static const kf_policy evicting[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O,
                                          KF_POLICY_WINDOW, KF_POLICY_SINKS };
    for (size_t i = 0; i < sizeof evicting / sizeof *evicting; i++) {
        kf_config cfg = base_config();
        cfg.policy = evicting[i];
        cfg.budget_tokens = 8;
        cfg.budget_ratio = 0.5; /* both */
        EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
        cfg.budget_tokens = 0;
        cfg.budget_ratio = 0.0; /* neither: documented as KF_EINVAL */
        EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    }
    /* FULL never evicts and needs no budget */
    kf_config cfg = base_config();
    cfg.policy = KF_POLICY_FULL;
    cfg.budget_ratio = 0.0;
    EXPECT_CREATE_OK(cfg);
}

static void test_create_non_finite(void **state)
{
    (void)state;
    const double bad[] = { NAN, -NAN, INFINITY, -INFINITY };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kf_config cfg = base_config();
        cfg.budget_ratio = bad[i];
        EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
        cfg = base_config();
        cfg.recent_ratio = bad[i];
        EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
        cfg = base_config();
        cfg.tau_init = (float)bad[i];
        EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
        cfg = base_config();
        cfg.tau_end = (float)bad[i];
        EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
        /* non-finite ratio next to an absolute budget: still invalid */
        cfg = base_config();
        cfg.budget_tokens = 8;
        cfg.budget_ratio = bad[i];
        EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    }
}

static void test_create_negative_budget_ratio(void **state)
{
    (void)state;
    /* not listed by name in the header; a value outside its range */
    kf_config cfg = base_config();
    cfg.budget_ratio = -0.5;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.budget_ratio = -1e-300;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.budget_ratio = 1e-300; /* tiny but positive: resolved at select */
    EXPECT_CREATE_OK(cfg);
}

static void test_create_recent_ratio_range(void **state)
{
    (void)state;
    const double bad[] = { -0.01, -1.0, 1.0000001, 2.0, -1e-300 };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kf_config cfg = base_config();
        cfg.recent_ratio = bad[i];
        EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    }
    kf_config cfg = base_config();
    cfg.recent_ratio = 0.0;
    EXPECT_CREATE_OK(cfg);
    cfg.recent_ratio = 1.0;
    EXPECT_CREATE_OK(cfg);
}

static void test_create_tau_range(void **state)
{
    (void)state;
    const float bad[] = { 0.0f, -0.0f, -1.0f, -1e-30f };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kf_config cfg = base_config();
        cfg.tau_init = bad[i];
        EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
        cfg = base_config();
        cfg.tau_end = bad[i];
        EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    }
    kf_config cfg = base_config();
    cfg.tau_steps = 0;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.tau_steps = 1;
    cfg.tau_init = 1e-30f;
    EXPECT_CREATE_OK(cfg);
    /* 1/tau would be +inf and every score NaN */
    cfg.tau_init = 1e-39f;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.tau_init = 1.0f;
    cfg.tau_end = 0x1p-149f;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
}

static void test_create_bad_enums(void **state)
{
    (void)state;
    kf_config cfg = base_config();
    cfg.policy = (kf_policy)5;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    cfg.policy = (kf_policy)-1;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    cfg = base_config();
    cfg.rule = (kf_rule)2;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    cfg.rule = (kf_rule)-1;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    cfg = base_config();
    cfg.granularity = (kf_granularity)3;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    cfg.granularity = (kf_granularity)-1;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    cfg = base_config();
    cfg.noise = (kf_noise)2;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    cfg.noise = (kf_noise)-1;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    /* both values are accepted, with any policy */
    for (int p = 0; p <= KF_POLICY_FULL; p++) {
        cfg = base_config();
        cfg.policy = (kf_policy)p;
        if (p == KF_POLICY_FULL)
            cfg.budget_ratio = 0.0;
        cfg.noise = KF_NOISE_TABLE;
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
        kf_config back;
        assert_int_equal(kf_cache_config(c, &back), KF_OK);
        assert_int_equal(back.noise, KF_NOISE_TABLE);
        kf_cache_destroy(&c);
    }
}

static void test_create_one_allocator_hook(void **state)
{
    (void)state;
    alloc_counter counter;
    kf_config cfg = base_config();
    use_counter(&cfg, &counter, SIZE_MAX);
    cfg.allocator.free = NULL;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    use_counter(&cfg, &counter, SIZE_MAX);
    cfg.allocator.alloc = NULL;
    EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    assert_int_equal(counter.attempts, 0);
    assert_int_equal(counter.frees, 0);
}

static void test_create_reserved_nonzero(void **state)
{
    (void)state;
    kf_config proto = base_config();
    for (size_t i = 0; i < sizeof proto.reserved; i++) {
        kf_config cfg = proto;
        cfg.reserved[i] = (uint8_t)(1u << (i % 8));
        EXPECT_CREATE_FAILS(cfg, KF_EINVAL);
    }
    EXPECT_CREATE_OK(proto);
}

static void test_create_sinks_budget(void **state)
{
    (void)state;
    kf_config cfg = base_config();
    cfg.policy = KF_POLICY_SINKS;
    cfg.n_sinks = 4;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 4;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.budget_tokens = 1;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.n_sinks = 32;
    cfg.budget_tokens = 32; /* == capacity, == n_sinks */
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.n_sinks = 4;
    cfg.budget_tokens = 5;
    EXPECT_CREATE_OK(cfg);
}

static void test_create_threads_limit(void **state)
{
    (void)state;
    /* the header documents no code for it; a value outside its range */
    kf_config cfg = base_config();
    cfg.n_threads = 1025;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.n_threads = UINT32_MAX;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.n_threads = 1024;
    EXPECT_CREATE_OK(cfg);
}

/* evict_interval B > 1 holds up to k + B slots before it evicts: an
 * absolute budget without that room is rejected at creation, instead of
 * every decode observe failing once the layer fills (k = 8, B = 4 and
 * capacity 10 failed from the third step on). */
static void test_create_evict_interval_room(void **state)
{
    (void)state;
    kf_config cfg = test_config(1, 2, 1, 4, 10);
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 8;
    cfg.evict_interval = 4;
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    cfg.evict_interval = 3; /* 8 + 3 > 10 */
    EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
    static const kf_policy evicting[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O,
                                          KF_POLICY_WINDOW, KF_POLICY_SINKS };
    for (size_t i = 0; i < 4; i++) {
        cfg.policy = evicting[i];
        cfg.evict_interval = 4;
        EXPECT_CREATE_FAILS(cfg, KF_ERANGE);
        cfg.evict_interval = 2; /* k + B = 10 = capacity: room enough */
        EXPECT_CREATE_OK(cfg);
    }
    /* B <= 1 evicts every step: k + 1 <= capacity is the host's concern
     * (k == capacity still serves a prompt), as before */
    cfg.policy = KF_POLICY_KEYFORMER;
    cfg.budget_tokens = 10;
    cfg.evict_interval = 1;
    EXPECT_CREATE_OK(cfg);
    cfg.evict_interval = 0;
    EXPECT_CREATE_OK(cfg);
    /* FULL never evicts: B does not matter */
    cfg.policy = KF_POLICY_FULL;
    cfg.budget_tokens = 0;
    cfg.evict_interval = 10;
    EXPECT_CREATE_OK(cfg);
    cfg.budget_tokens = 4;
    cfg.budget_ratio = 0.0;
    EXPECT_CREATE_OK(cfg);

    /* k + B = capacity: every decode step of a long generation works */
    cfg = test_config(1, 2, 1, 4, 12);
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 8;
    cfg.evict_interval = 4;
    kf_cache *c = new_cache(&cfg);
    test_rng r;
    test_rng_seed(&r, 50);
    observe_rows(c, 0, 10, &r);
    for (int t = 0; t < 40; t++) {
        EXPECT_OK(kf_select(c, 0));
        EXPECT_OK(kf_compact(c, 0, NULL, NULL));
        observe_rows(c, 0, 1, &r);
    }
    kf_cache_destroy(&c);
}

static void test_create_size_overflow(void **state)
{
    (void)state;
    /* layers * KV heads * capacity * 4 bytes > 2^64 */
    kf_config cfg = test_config(UINT32_MAX, UINT32_MAX, UINT32_MAX, 1,
                                INT32_MAX);
    EXPECT_CREATE_FAILS(cfg, KF_EOVERFLOW);
    cfg = test_config(UINT32_MAX, 1, 1, 1, INT32_MAX);
    cfg.n_kv_heads = 1u << 31; /* layers * kv * cap ~ 2^94 */
    cfg.n_heads = 1u << 31;
    EXPECT_CREATE_FAILS(cfg, KF_EOVERFLOW);
    /* query heads * capacity (the per-head scratch) alone overflows */
    cfg = test_config(1, UINT32_MAX, 1, 1, INT32_MAX);
    EXPECT_CREATE_FAILS(cfg, KF_EOVERFLOW);
}

static void test_create_enomem_no_leak(void **state)
{
    (void)state;
    alloc_counter counter;
    kf_config cfg = base_config();
    use_counter(&cfg, &counter, SIZE_MAX);
    counter.fail = 1;
    EXPECT_CREATE_FAILS(cfg, KF_ENOMEM);
    assert_true(counter.attempts >= 1);
    assert_int_equal(counter.allocs, 0);
    assert_int_equal(counter.frees, 0);

    /* the same hooks, succeeding: every allocation is freed by destroy */
    use_counter(&cfg, &counter, SIZE_MAX);
    kf_cache *c = new_cache(&cfg);
    assert_true(counter.allocs >= 1);
    assert_int_equal(counter.frees, 0);
    size_t bytes = 0;
    EXPECT_OK(kf_cache_memory(c, &bytes));
    assert_true(bytes > 0);
    kf_cache_destroy(&c);
    assert_null(c);
    assert_int_equal(counter.allocs, counter.frees);
}

/* ---- kf_cache_destroy, kf_cache_reset ---- */

static void test_destroy_null(void **state)
{
    (void)state;
    kf_cache_destroy(NULL);
    kf_cache *c = NULL;
    kf_cache_destroy(&c);
    assert_null(c);

    alloc_counter counter;
    kf_config cfg = base_config();
    use_counter(&cfg, &counter, SIZE_MAX);
    c = new_cache(&cfg);
    kf_cache_destroy(&c);
    assert_null(c);
    kf_cache_destroy(&c); /* second destroy: *cache is NULL, a no-op */
    assert_int_equal(counter.frees, counter.allocs);
}

static void test_reset_null(void **state)
{
    (void)state;
    EXPECT_STATUS(KF_EINVAL, kf_cache_reset(NULL));
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    EXPECT_OK(kf_cache_reset(c));
    kf_cache_destroy(&c);
}

/* ---- queries ---- */

static void test_queries_null(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 1);
    kf_config cfg = base_config();
    kf_cache *c = observed_cache(&cfg, 16, &r);
    EXPECT_OK(kf_select(c, 0));

    const uint32_t *slots;
    const int32_t *pos;
    const float *scores;
    uint32_t n, k, w, steps;
    int32_t next;
    float tau;
    size_t bytes;
    kf_config out;

    EXPECT_STATUS(KF_EINVAL, kf_slot_count(NULL, 0, 0, &n));
    EXPECT_FAIL(c, KF_EINVAL, kf_slot_count(c, 0, 0, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_slot_positions(NULL, 0, 0, &pos, &n));
    EXPECT_FAIL(c, KF_EINVAL, kf_slot_positions(c, 0, 0, NULL, &n));
    EXPECT_FAIL(c, KF_EINVAL, kf_slot_positions(c, 0, 0, &pos, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_slot_scores(NULL, 0, 0, &scores, &n));
    EXPECT_FAIL(c, KF_EINVAL, kf_slot_scores(c, 0, 0, NULL, &n));
    EXPECT_FAIL(c, KF_EINVAL, kf_slot_scores(c, 0, 0, &scores, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_kept_slots(NULL, 0, 0, &slots, &n));
    EXPECT_FAIL(c, KF_EINVAL, kf_kept_slots(c, 0, 0, NULL, &n));
    EXPECT_FAIL(c, KF_EINVAL, kf_kept_slots(c, 0, 0, &slots, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_layer_progress(NULL, 0, &steps, &next));
    EXPECT_FAIL(c, KF_EINVAL, kf_layer_progress(c, 0, NULL, &next));
    EXPECT_FAIL(c, KF_EINVAL, kf_layer_progress(c, 0, &steps, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_current_tau(NULL, 0, &tau));
    EXPECT_FAIL(c, KF_EINVAL, kf_current_tau(c, 0, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_budget(NULL, &k, &w));
    EXPECT_FAIL(c, KF_EINVAL, kf_budget(c, NULL, &w));
    EXPECT_FAIL(c, KF_EINVAL, kf_budget(c, &k, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_removed_positions(NULL, &pos, &n));
    EXPECT_FAIL(c, KF_EINVAL, kf_removed_positions(c, NULL, &n));
    EXPECT_FAIL(c, KF_EINVAL, kf_removed_positions(c, &pos, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_cache_memory(NULL, &bytes));
    EXPECT_FAIL(c, KF_EINVAL, kf_cache_memory(c, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_cache_config(NULL, &out));
    EXPECT_FAIL(c, KF_EINVAL, kf_cache_config(c, NULL));

    /* and with valid pointers they all answer */
    EXPECT_OK(kf_slot_count(c, 0, 0, &n));
    EXPECT_OK(kf_slot_positions(c, 0, 0, &pos, &n));
    EXPECT_OK(kf_slot_scores(c, 0, 0, &scores, &n));
    EXPECT_OK(kf_kept_slots(c, 0, 0, &slots, &n));
    assert_int_equal(n, 8);
    EXPECT_OK(kf_layer_progress(c, 0, &steps, &next));
    EXPECT_OK(kf_current_tau(c, 0, &tau));
    EXPECT_OK(kf_budget(c, &k, &w));
    EXPECT_OK(kf_cache_memory(c, &bytes));
    EXPECT_OK(kf_cache_config(c, &out));
    kf_cache_destroy(&c);
}

static void test_queries_out_of_range(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 2);
    kf_config cfg = base_config();
    kf_cache *c = observed_cache(&cfg, 16, &r);
    EXPECT_OK(kf_select(c, 0));
    EXPECT_OK(kf_select(c, 1));

    const int bad_layers[] = { -1, -2, INT_MIN, 2, 3, INT_MAX };
    const int bad_heads[] = { -1, INT_MIN, 2, INT_MAX };
    const uint32_t *slots;
    const int32_t *pos;
    const float *scores;
    uint32_t n, steps;
    int32_t next;
    float tau;
    for (size_t i = 0; i < sizeof bad_layers / sizeof *bad_layers; i++) {
        int l = bad_layers[i];
        EXPECT_FAIL(c, KF_ERANGE, kf_slot_count(c, l, 0, &n));
        EXPECT_FAIL(c, KF_ERANGE, kf_slot_positions(c, l, 0, &pos, &n));
        EXPECT_FAIL(c, KF_ERANGE, kf_slot_scores(c, l, 0, &scores, &n));
        EXPECT_FAIL(c, KF_ERANGE, kf_kept_slots(c, l, 0, &slots, &n));
        EXPECT_FAIL(c, KF_ERANGE, kf_layer_progress(c, l, &steps, &next));
        EXPECT_FAIL(c, KF_ERANGE, kf_current_tau(c, l, &tau));
    }
    for (size_t i = 0; i < sizeof bad_heads / sizeof *bad_heads; i++) {
        int g = bad_heads[i];
        EXPECT_FAIL(c, KF_ERANGE, kf_slot_count(c, 1, g, &n));
        EXPECT_FAIL(c, KF_ERANGE, kf_slot_positions(c, 1, g, &pos, &n));
        EXPECT_FAIL(c, KF_ERANGE, kf_slot_scores(c, 1, g, &scores, &n));
        EXPECT_FAIL(c, KF_ERANGE, kf_kept_slots(c, 1, g, &slots, &n));
    }
    /* the last valid indices */
    EXPECT_OK(kf_slot_count(c, 1, 1, &n));
    EXPECT_OK(kf_slot_positions(c, 1, 1, &pos, &n));
    EXPECT_OK(kf_slot_scores(c, 1, 1, &scores, &n));
    EXPECT_OK(kf_kept_slots(c, 1, 1, &slots, &n));
    EXPECT_OK(kf_layer_progress(c, 1, &steps, &next));
    EXPECT_OK(kf_current_tau(c, 1, &tau));
    kf_cache_destroy(&c);
}

static void test_kept_slots_without_selection(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 3);
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    const uint32_t *slots;
    uint32_t n;
    EXPECT_FAIL(c, KF_ESTATE, kf_kept_slots(c, 0, 0, &slots, &n));
    observe_rows(c, 0, 16, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_kept_slots(c, 0, 0, &slots, &n));
    EXPECT_OK(kf_select(c, 0));
    EXPECT_OK(kf_kept_slots(c, 0, 0, &slots, &n));
    EXPECT_FAIL(c, KF_ESTATE, kf_kept_slots(c, 1, 0, &slots, &n));
    EXPECT_OK(kf_compact(c, 0, NULL, NULL));
    EXPECT_FAIL(c, KF_ESTATE, kf_kept_slots(c, 0, 0, &slots, &n));
    kf_cache_destroy(&c);
}

static void test_removed_positions_state(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 4);
    const int32_t *pos;
    uint32_t n;

    /* not UNIFORM: never available, even after a selection */
    kf_config cfg = base_config();
    kf_cache *c = observed_cache(&cfg, 16, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_removed_positions(c, &pos, &n));
    EXPECT_OK(kf_select(c, KF_ALL_LAYERS));
    EXPECT_FAIL(c, KF_ESTATE, kf_removed_positions(c, &pos, &n));
    kf_cache_destroy(&c);

    /* UNIFORM: not before a selection, nor after the next observe */
    cfg.granularity = KF_GRANULARITY_UNIFORM;
    c = new_cache(&cfg);
    EXPECT_FAIL(c, KF_ESTATE, kf_removed_positions(c, &pos, &n));
    observe_rows(c, 0, 16, &r);
    observe_rows(c, 1, 16, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_removed_positions(c, &pos, &n));
    EXPECT_OK(kf_select(c, KF_ALL_LAYERS));
    EXPECT_OK(kf_removed_positions(c, &pos, &n));
    assert_int_equal(n, 8);
    EXPECT_OK(kf_compact(c, KF_ALL_LAYERS, NULL, NULL));
    EXPECT_OK(kf_removed_positions(c, &pos, &n));
    observe_rows(c, 0, 1, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_removed_positions(c, &pos, &n));
    kf_cache_destroy(&c);
}

static void test_budget_not_fixed(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 5);
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    uint32_t k, w;
    EXPECT_FAIL(c, KF_ESTATE, kf_budget(c, &k, &w));
    observe_rows(c, 0, 16, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_budget(c, &k, &w));
    EXPECT_OK(kf_select(c, 0));
    EXPECT_OK(kf_budget(c, &k, &w));
    assert_int_equal(k, 8);
    assert_int_equal(w, 2);
    /* reset forgets a ratio budget */
    EXPECT_OK(kf_cache_reset(c));
    EXPECT_FAIL(c, KF_ESTATE, kf_budget(c, &k, &w));
    kf_cache_destroy(&c);
}

/* ---- kf_observe_logits ---- */

static void test_observe_null(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 6);
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    logits lg = make_logits(c, 0, 4, 1, &r);
    EXPECT_STATUS(KF_EINVAL, kf_observe_logits(NULL, 0, &lg.view));
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_logits(c, 0, NULL));
    EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
    free(lg.data);
    kf_cache_destroy(&c);
}

static void test_observe_layer_out_of_range(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 7);
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    logits lg = make_logits(c, 0, 4, 1, &r);
    const int bad[] = { -1, KF_ALL_LAYERS, -7, INT_MIN, 2, INT_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        EXPECT_FAIL(c, KF_ERANGE, kf_observe_logits(c, bad[i], &lg.view));
    EXPECT_OK(kf_observe_logits(c, 1, &lg.view));
    free(lg.data);
    kf_cache_destroy(&c);
}

static void test_observe_bad_flags_and_rows(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 8);
    kf_config cfg = base_config();
    kf_cache *c = generating_cache(&cfg, &r);
    EXPECT_OK(kf_select(c, 0));
    EXPECT_OK(kf_compact(c, 0, NULL, NULL));
    logits lg = make_logits(c, 0, 2, 1, &r);
    kf_logits_view v = lg.view;
    const uint32_t bad_flags[] = { 2u, 3u, 0x80000000u, 0x80000001u };
    for (size_t i = 0; i < sizeof bad_flags / sizeof *bad_flags; i++) {
        v.flags = bad_flags[i];
        EXPECT_FAIL(c, KF_EINVAL, kf_observe_logits(c, 0, &v));
    }
    v = lg.view;
    v.n_rows = 0;
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_logits(c, 0, &v));
    v.n_slots -= 2; /* consistent with zero new rows: still invalid */
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_logits(c, 0, &v));
    EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
    free(lg.data);
    kf_cache_destroy(&c);
}

static void test_observe_beyond_capacity(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 9);
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    /* a prompt longer than the capacity */
    logits lg = make_logits(c, 0, cfg.capacity + 1, 1, &r);
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_logits(c, 0, &lg.view));
    free(lg.data);
    /* a chunk that would overflow what the layer already holds */
    observe_rows(c, 0, 20, &r);
    lg = make_logits(c, 0, cfg.capacity - 20 + 1, 1, &r);
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_logits(c, 0, &lg.view));
    free(lg.data);
    lg = make_logits(c, 0, cfg.capacity - 20, 1, &r); /* exactly full */
    EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
    free(lg.data);
    kf_cache_destroy(&c);
}

static void test_observe_slot_mismatch(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 10);
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    observe_rows(c, 0, 6, &r);
    logits lg = make_logits(c, 0, 4, 0, &r); /* n_slots = 10 */
    kf_logits_view v = lg.view;
    const uint32_t bad[] = { 9, 11, 4, 6, 0, 32, UINT32_MAX };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v.n_slots = bad[i];
        EXPECT_FAIL(c, KF_EMISMATCH, kf_observe_logits(c, 0, &v));
    }
    EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
    free(lg.data);
    kf_cache_destroy(&c);
}

static void test_observe_null_data(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 11);
    static const kf_policy scoring[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O };
    for (size_t i = 0; i < 2; i++) {
        kf_config cfg = base_config();
        cfg.policy = scoring[i];
        kf_cache *c = new_cache(&cfg);
        logits lg = make_logits(c, 0, 16, 1, &r);
        kf_logits_view v = lg.view;
        v.data = NULL;
        EXPECT_FAIL(c, KF_EINVAL, kf_observe_logits(c, 0, &v));
        EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
        free(lg.data);
        kf_cache_destroy(&c);
    }
    /* the policies that do not score never read logits */
    static const kf_policy blind[] = { KF_POLICY_WINDOW, KF_POLICY_SINKS,
                                       KF_POLICY_FULL };
    for (size_t i = 0; i < 3; i++) {
        kf_config cfg = base_config();
        cfg.policy = blind[i];
        kf_cache *c = new_cache(&cfg);
        kf_logits_view v = { NULL, 16, 16, 0, 0, KF_LOGITS_CAUSAL, 0 };
        EXPECT_OK(kf_observe_logits(c, 0, &v));
        EXPECT_OK(kf_select(c, 0));
        EXPECT_OK(kf_compact(c, 0, NULL, NULL));
        uint32_t n = slots_of(c, 0);
        v = (kf_logits_view){ NULL, 1, n + 1, 0, 0, 0, 0 };
        EXPECT_OK(kf_observe_logits(c, 0, &v));
        kf_cache_destroy(&c);
    }
}

static void test_observe_bad_strides(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 12);
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    observe_rows(c, 0, 12, &r);
    logits lg = make_logits(c, 0, 4, 1, &r); /* 4 heads x 4 rows x 16 */
    kf_logits_view v = lg.view;

    v.row_stride = 15; /* rows of one head overlap */
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
    v.row_stride = 0;
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
    v = lg.view;
    v.head_stride = 3 * 16 + 15; /* last row of a head hits the next head */
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
    v.head_stride = 0;
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
    v.head_stride = 16; /* == row_stride: heads share rows */
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
    v = lg.view;
    v.head_stride = SIZE_MAX / 2; /* 3 * head_stride overflows */
    EXPECT_FAIL(c, KF_EOVERFLOW, kf_observe_logits(c, 0, &v));
    v = lg.view;
    v.row_stride = SIZE_MAX / 2;
    EXPECT_FAIL(c, KF_EOVERFLOW, kf_observe_logits(c, 0, &v));
    /* fits in elements, not in bytes: must not be dereferenced */
    v = lg.view;
    v.head_stride = ((size_t)1 << 62) + ((size_t)1 << 40);
    EXPECT_FAIL(c, KF_EOVERFLOW, kf_observe_logits(c, 0, &v));
    EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
    free(lg.data);

    /* one row per call: its row stride is never used, only the heads' */
    EXPECT_OK(kf_select(c, 0));
    EXPECT_OK(kf_compact(c, 0, NULL, NULL));
    lg = make_logits(c, 0, 1, 1, &r);
    v = lg.view;
    v.head_stride = v.n_slots - 1;
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
    v = lg.view;
    v.row_stride = 0;
    EXPECT_OK(kf_observe_logits(c, 0, &v));
    free(lg.data);
    kf_cache_destroy(&c);
}

static void test_observe_nan_and_inf(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 13);
    static const kf_policy scoring[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O };
    const float bad[] = { NAN, -NAN, INFINITY };
    for (size_t p = 0; p < 2; p++) {
        kf_config cfg = base_config();
        cfg.policy = scoring[p];
        kf_cache *c = generating_cache(&cfg, &r);
        EXPECT_OK(kf_select(c, 1));
        EXPECT_OK(kf_compact(c, 1, NULL, NULL));
        /* a 3-row chunk so that the bad entry sits mid-call */
        logits lg = make_logits(c, 1, 3, 1, &r);
        uint32_t last = lg.view.n_slots - 1;
        for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
            const uint32_t where[][3] = { { 0, 0, 0 }, { 3, 2, last },
                                          { 1, 1, last - 1 } };
            for (size_t i = 0; i < 3; i++) {
                float *x = logit(&lg, where[i][0], where[i][1], where[i][2]);
                float keep = *x;
                *x = bad[b];
                EXPECT_FAIL(c, KF_ENAN, kf_observe_logits(c, 1, &lg.view));
                *x = keep;
            }
        }
        /* a row that is all -inf apart from one NaN is NaN, not empty */
        for (uint32_t j = 0; j <= last - 2; j++)
            *logit(&lg, 2, 0, j) = -INFINITY;
        *logit(&lg, 2, 0, 3) = NAN;
        EXPECT_FAIL(c, KF_ENAN, kf_observe_logits(c, 1, &lg.view));
        *logit(&lg, 2, 0, 3) = 0.5f;
        EXPECT_OK(kf_observe_logits(c, 1, &lg.view));
        free(lg.data);
        kf_cache_destroy(&c);
    }
}

static void test_observe_empty_row(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 14);
    static const kf_policy scoring[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O };
    for (size_t p = 0; p < 2; p++) {
        kf_config cfg = base_config();
        cfg.policy = scoring[p];
        kf_cache *c = new_cache(&cfg);
        observe_rows(c, 0, 8, &r);

        /* non-causal: one row of head 1 entirely -inf */
        logits lg = make_logits(c, 0, 4, 0, &r);
        for (uint32_t j = 0; j < lg.view.n_slots; j++)
            *logit(&lg, 1, 2, j) = -INFINITY;
        EXPECT_FAIL(c, KF_EEMPTYROW, kf_observe_logits(c, 0, &lg.view));
        free(lg.data);

        /* causal: row 0 sees slots 0..8 only; those are -inf, the masked
         * slots 9..11 are finite (and must not count) */
        lg = make_logits(c, 0, 4, 1, &r);
        for (uint32_t j = 0; j < lg.view.n_slots; j++)
            *logit(&lg, 3, 0, j) = j <= 8 ? -INFINITY : 1.0f;
        EXPECT_FAIL(c, KF_EEMPTYROW, kf_observe_logits(c, 0, &lg.view));
        *logit(&lg, 3, 0, 8) = -3.0f; /* one visible finite entry suffices */
        EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
        free(lg.data);
        kf_cache_destroy(&c);
    }
}

static void test_observe_nan_in_masked_part(void **state)
{
    (void)state;
    static const kf_policy scoring[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O };
    for (size_t p = 0; p < 2; p++) {
        kf_config cfg = base_config();
        cfg.policy = scoring[p];
        kf_cache *a = new_cache(&cfg), *b = new_cache(&cfg);
        test_rng ra, rb;
        test_rng_seed(&ra, 15);
        test_rng_seed(&rb, 15);
        observe_rows(a, 0, 8, &ra);
        observe_rows(b, 0, 8, &rb);
        logits la = make_logits(a, 0, 4, 1, &ra);
        logits lb = make_logits(b, 0, 4, 1, &rb);
        /* the invisible part of a causal row is never read: NaN, +inf
         * there is not an error and changes nothing */
        for (uint32_t h = 0; h < cfg.n_heads; h++)
            for (uint32_t i = 0; i < 4; i++)
                for (uint32_t j = 8 + i + 1; j < la.view.n_slots; j++)
                    *logit(&la, h, i, j) = (j & 1) ? NAN : INFINITY;
        EXPECT_OK(kf_observe_logits(a, 0, &la.view));
        EXPECT_OK(kf_observe_logits(b, 0, &lb.view));
        assert_true(test_cache_digest(a) == test_cache_digest(b));
        free(la.data);
        free(lb.data);
        kf_cache_destroy(&a);
        kf_cache_destroy(&b);
    }
}

/* NaN in the 3rd of 6 heads: heads 0 and 1 were already scored when the
 * error shows, yet nothing may change. Also with several threads and a
 * prompt large enough for the library to split heads across them. */
static void test_observe_nan_after_heads_scored(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 16);
    const uint32_t threads[] = { 1, 4 };
    for (size_t t = 0; t < 2; t++) {
        kf_config cfg = test_config(1, 6, 3, 4, 128);
        cfg.n_threads = threads[t];
        kf_cache *c = generating_cache(&cfg, &r);
        EXPECT_OK(kf_select(c, 0));
        EXPECT_OK(kf_compact(c, 0, NULL, NULL));

        logits lg = make_logits(c, 0, 1, 1, &r); /* decode step */
        *logit(&lg, 2, 0, 3) = NAN;
        EXPECT_FAIL(c, KF_ENAN, kf_observe_logits(c, 0, &lg.view));
        for (uint32_t j = 0; j < lg.view.n_slots; j++)
            *logit(&lg, 2, 0, j) = -INFINITY;
        EXPECT_FAIL(c, KF_EEMPTYROW, kf_observe_logits(c, 0, &lg.view));
        *logit(&lg, 2, 0, 0) = 0.0f;
        EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
        free(lg.data);
        EXPECT_OK(kf_select(c, 0));
        EXPECT_OK(kf_compact(c, 0, NULL, NULL));

        /* a large chunked prefill on a fresh sequence */
        EXPECT_OK(kf_cache_reset(c));
        observe_rows(c, 0, 20, &r);
        lg = make_logits(c, 0, 100, 1, &r);
        *logit(&lg, 2, 60, 70) = NAN;
        *logit(&lg, 5, 99, 5) = INFINITY;
        EXPECT_FAIL(c, KF_ENAN, kf_observe_logits(c, 0, &lg.view));
        *logit(&lg, 2, 60, 70) = 0.0f;
        *logit(&lg, 5, 99, 5) = 0.0f;
        EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
        free(lg.data);
        kf_cache_destroy(&c);
    }
}

static void test_observe_while_selection_waits(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 17);
    kf_config cfg = base_config();
    kf_cache *c = observed_cache(&cfg, 16, &r);
    EXPECT_OK(kf_select(c, 0));
    logits lg = make_logits(c, 0, 1, 1, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_logits(c, 0, &lg.view));
    /* another layer is not blocked */
    observe_rows(c, 1, 1, &r);
    EXPECT_OK(kf_compact(c, 0, NULL, NULL));
    free(lg.data);
    lg = make_logits(c, 0, 1, 1, &r);
    EXPECT_OK(kf_observe_logits(c, 0, &lg.view));
    free(lg.data);
    kf_cache_destroy(&c);
}

/* ---- kf_observe_begin, kf_observe_kv_head, kf_observe_end ---- */

/* KV head g's part of a whole-layer call: its query heads, same strides. */
static kf_logits_view kv_head_view(const logits *lg, uint32_t g, uint32_t group)
{
    kf_logits_view v = lg->view;
    v.data = lg->data + (size_t)g * group * lg->view.head_stride;
    return v;
}

static void test_round_begin(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 41);
    kf_config cfg = base_config();
    EXPECT_STATUS(KF_EINVAL, kf_observe_begin(NULL, 0, 1));
    kf_cache *c = generating_cache(&cfg, &r);
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_begin(c, 0, 0));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_begin(c, -1, 1));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_begin(c, 2, 1));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_begin(c, 0, 32));
    EXPECT_OK(kf_select(c, 1));
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_begin(c, 1, 1));
    EXPECT_OK(kf_compact(c, 1, NULL, NULL));
    /* an open round holds every other call that changes the cache; a
     * round left incomplete commits nothing */
    snapshot before = take_snapshot(c);
    EXPECT_OK(kf_observe_begin(c, 1, 1));
    check_snapshot(c, &before, "kf_observe_begin", __FILE__, __LINE__);
    logits lg = make_logits(c, 1, 1, 0, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_begin(c, 1, 1));
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_begin(c, 0, 1));
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_logits(c, 1, &lg.view));
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, 0));
    EXPECT_FAIL(c, KF_ESTATE, kf_compact(c, KF_ALL_LAYERS, NULL, NULL));
    kf_logits_view g0 = kv_head_view(&lg, 0, 2);
    EXPECT_OK(kf_observe_kv_head(c, 1, 0, &g0));
    EXPECT_STATUS(KF_ESTATE, kf_observe_end(c, 1)); /* KV head 1 missing */
    check_snapshot(c, &before, "kf_observe_end", __FILE__, __LINE__);
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_end(c, 1)); /* closed */
    EXPECT_OK(kf_observe_logits(c, 1, &lg.view));
    /* kf_cache_reset drops a round */
    EXPECT_OK(kf_select(c, 1));
    EXPECT_OK(kf_compact(c, 1, NULL, NULL));
    EXPECT_OK(kf_observe_begin(c, 0, 1));
    EXPECT_OK(kf_cache_reset(c));
    observe_rows(c, 0, 4, &r);
    free(lg.data);
    kf_cache_destroy(&c);
}

static void test_round_kv_head(void **state)
{
    (void)state;
    test_rng r, r_twin;
    test_rng_seed(&r, 43);
    test_rng_seed(&r_twin, 43);
    kf_config cfg = base_config();
    kf_cache *c = generating_cache(&cfg, &r);
    kf_cache *twin = generating_cache(&cfg, &r_twin); /* the same logits */
    assert_true(test_cache_digest(c) == test_cache_digest(twin));
    for (int l = 0; l < 2; l++) {
        EXPECT_OK(kf_select(c, l));
        EXPECT_OK(kf_compact(c, l, NULL, NULL));
        EXPECT_OK(kf_select(twin, l));
        EXPECT_OK(kf_compact(twin, l, NULL, NULL));
    }
    logits lg = make_logits(c, 0, 2, 1, &r);
    kf_logits_view g0 = kv_head_view(&lg, 0, 2), g1 = kv_head_view(&lg, 1, 2);

    EXPECT_FAIL(c, KF_ESTATE, kf_observe_kv_head(c, 0, 0, &g0)); /* no round */
    EXPECT_OK(kf_observe_begin(c, 0, 2));
    EXPECT_STATUS(KF_EINVAL, kf_observe_kv_head(NULL, 0, 0, &g0));
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_kv_head(c, 0, 0, NULL));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_kv_head(c, 0, -1, &g0));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_kv_head(c, 0, 2, &g0));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_kv_head(c, 5, 0, &g0));
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_kv_head(c, 1, 0, &g0)); /* layer */
    kf_logits_view bad = g0;
    bad.n_rows = 1;
    bad.n_slots--;
    EXPECT_FAIL(c, KF_EMISMATCH, kf_observe_kv_head(c, 0, 0, &bad));
    bad = g0;
    bad.n_slots++;
    EXPECT_FAIL(c, KF_EMISMATCH, kf_observe_kv_head(c, 0, 0, &bad));
    bad = g0;
    bad.data = NULL;
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_kv_head(c, 0, 0, &bad));
    bad = g0;
    bad.flags = 2;
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_kv_head(c, 0, 0, &bad));
    bad = g0;
    bad.head_stride = bad.n_slots; /* the two heads' rows overlap */
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_kv_head(c, 0, 0, &bad));
    /* rejected logits: the KV head can be handed over again */
    float *x = logit(&lg, 1, 1, 0), keep = *x;
    *x = NAN;
    EXPECT_FAIL(c, KF_ENAN, kf_observe_kv_head(c, 0, 0, &g0));
    *x = keep;
    float row[64];
    memcpy(row, logit(&lg, 3, 0, 0), lg.view.n_slots * sizeof *row);
    for (uint32_t j = 0; j < lg.view.n_slots; j++)
        *logit(&lg, 3, 0, j) = -INFINITY;
    EXPECT_FAIL(c, KF_EEMPTYROW, kf_observe_kv_head(c, 0, 1, &g1));
    memcpy(logit(&lg, 3, 0, 0), row, lg.view.n_slots * sizeof *row);
    EXPECT_OK(kf_observe_kv_head(c, 0, 1, &g1));
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_kv_head(c, 0, 1, &g1)); /* twice */
    EXPECT_OK(kf_observe_kv_head(c, 0, 0, &g0));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_end(c, 2));
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_end(c, 1));
    EXPECT_STATUS(KF_EINVAL, kf_observe_end(NULL, 0));
    EXPECT_OK(kf_observe_end(c, 0));
    /* the same as one whole-layer call */
    EXPECT_OK(kf_observe_logits(twin, 0, &lg.view));
    assert_true(test_cache_digest(c) == test_cache_digest(twin));
    free(lg.data);
    kf_cache_destroy(&c);
    kf_cache_destroy(&twin);
}

/* A copy of lg's logits `offset` bytes into a fresh block (misaligned for
 * offset % 4 != 0); *mem gets the block to free. */
static const float *shifted_logits(const logits *lg, size_t offset,
                                   uint8_t **mem)
{
    size_t bytes = lg->elems * sizeof(float);
    *mem = malloc(bytes + offset);
    assert_non_null(*mem);
    memcpy(*mem + offset, lg->data, bytes);
    return (const float *)(const void *)(*mem + offset);
}

/* Logits must be aligned to float like every other view's data: a
 * misaligned pointer is KF_ELAYOUT, nothing read, the cache unchanged, from
 * kf_observe_logits and kf_observe_kv_head alike (the score kernels load
 * whole floats). */
static void test_observe_misaligned(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 52);
    static const kf_policy policies[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O,
                                          KF_POLICY_WINDOW };
    for (size_t p = 0; p < 3; p++) {
        kf_config cfg = base_config();
        cfg.policy = policies[p];
        if (cfg.policy == KF_POLICY_WINDOW) {
            cfg.budget_ratio = 0.0;
            cfg.budget_tokens = 8;
        }
        kf_cache *c = generating_cache(&cfg, &r);
        for (int l = 0; l < 2; l++) {
            EXPECT_OK(kf_select(c, l));
            EXPECT_OK(kf_compact(c, l, NULL, NULL));
        }
        for (uint32_t rows = 1; rows <= 3; rows += 2) {
            logits lg = make_logits(c, 0, rows, 1, &r);
            for (size_t off = 1; off < sizeof(float); off++) {
                uint8_t *mem;
                kf_logits_view v = lg.view;
                v.data = shifted_logits(&lg, off, &mem);
                EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
                /* the same, one KV head at a time */
                EXPECT_OK(kf_observe_begin(c, 0, rows));
                kf_logits_view g1 = v;
                g1.data = v.data + 2 * v.head_stride;
                EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_kv_head(c, 0, 0, &v));
                EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_kv_head(c, 0, 1, &g1));
                EXPECT_FAIL(c, KF_ESTATE, kf_observe_end(c, 0));
                free(mem);
            }
            /* aligned, shifted by a whole float: accepted */
            uint8_t *mem;
            kf_logits_view v = lg.view;
            v.data = shifted_logits(&lg, sizeof(float), &mem);
            EXPECT_OK(kf_observe_logits(c, 0, &v));
            EXPECT_OK(kf_select(c, 0));
            EXPECT_OK(kf_compact(c, 0, NULL, NULL));
            free(mem);
            free(lg.data);
        }
        kf_cache_destroy(&c);
    }
}

/* A logits view's declared `bytes` bounds the farthest float any call
 * reads: exactly enough is accepted, one byte less is KF_ELAYOUT with the
 * cache unchanged; 0 means not declared. */
static void test_observe_view_bytes(void **state)
{
    (void)state;
    test_rng r, r_twin;
    test_rng_seed(&r, 53);
    test_rng_seed(&r_twin, 53);
    kf_config cfg = base_config();
    kf_cache *c = generating_cache(&cfg, &r);
    kf_cache *twin = generating_cache(&cfg, &r_twin);
    for (int l = 0; l < 2; l++) {
        EXPECT_OK(kf_select(c, l));
        EXPECT_OK(kf_compact(c, l, NULL, NULL));
        EXPECT_OK(kf_select(twin, l));
        EXPECT_OK(kf_compact(twin, l, NULL, NULL));
    }
    logits lg = make_logits(c, 0, 3, 1, &r); /* 4 heads x 3 rows x n */
    size_t exact = lg.elems * sizeof(float);
    kf_logits_view v = lg.view;
    v.bytes = exact - 1;
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
    v.bytes = sizeof(float);
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
    /* rows further apart than the buffer has room for */
    v.bytes = exact;
    v.row_stride = v.n_slots + 1;
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 0, &v));
    /* one KV head's view: two query heads from its own data on */
    EXPECT_OK(kf_observe_begin(c, 0, 3));
    kf_logits_view g0 = kv_head_view(&lg, 0, 2), g1 = kv_head_view(&lg, 1, 2);
    g0.bytes = g1.bytes = exact / 2 - 1;
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_kv_head(c, 0, 0, &g0));
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_kv_head(c, 0, 1, &g1));
    g0.bytes = g1.bytes = exact / 2;
    EXPECT_OK(kf_observe_kv_head(c, 0, 0, &g0));
    EXPECT_OK(kf_observe_kv_head(c, 0, 1, &g1));
    EXPECT_OK(kf_observe_end(c, 0));
    /* exact, and undeclared: the same result */
    v = lg.view;
    v.bytes = exact;
    EXPECT_OK(kf_observe_logits(twin, 0, &v));
    assert_true(test_cache_digest(c) == test_cache_digest(twin));
    free(lg.data);

    /* a causal prompt reads the last row in full: its end bounds it too */
    kf_cache_reset(c);
    lg = make_logits(c, 1, 16, 1, &r);
    v = lg.view;
    v.bytes = lg.elems * sizeof(float) - 1;
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_logits(c, 1, &v));
    v.bytes++;
    EXPECT_OK(kf_observe_logits(c, 1, &v));
    free(lg.data);
    kf_cache_destroy(&c);
    kf_cache_destroy(&twin);
}

/* Positions are int32: the layer stops before its next position would pass
 * 2^31 - 1. WINDOW with NULL logits keeps the walk there cheap. */
static void test_observe_position_limit(void **state)
{
    (void)state;
    const uint32_t cap = 1u << 20;
    kf_config cfg = test_config(1, 1, 1, 1, cap);
    cfg.policy = KF_POLICY_WINDOW;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 1;
    kf_cache *c = new_cache(&cfg);
    uint32_t steps;
    int32_t next = 0;
    for (;;) {
        uint32_t n = slots_of(c, 0);
        uint32_t rows = cap - n;
        if ((int64_t)next + rows > INT32_MAX)
            break;
        kf_logits_view v = { NULL, rows, n + rows, 0, 0, 0, 0 };
        EXPECT_OK(kf_observe_logits(c, 0, &v));
        EXPECT_OK(kf_select(c, 0));
        EXPECT_OK(kf_compact(c, 0, NULL, NULL));
        EXPECT_OK(kf_layer_progress(c, 0, &steps, &next));
    }
    uint32_t n = slots_of(c, 0);
    uint32_t fits = (uint32_t)(INT32_MAX - next);
    kf_logits_view v = { NULL, fits + 1, n + fits + 1, 0, 0, 0, 0 };
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_logits(c, 0, &v));
    v = (kf_logits_view){ NULL, fits, n + fits, 0, 0, 0, 0 };
    EXPECT_OK(kf_observe_logits(c, 0, &v));
    EXPECT_OK(kf_layer_progress(c, 0, &steps, &next));
    assert_int_equal(next, INT32_MAX);
    const int32_t *pos;
    EXPECT_OK(kf_slot_positions(c, 0, 0, &pos, &n));
    assert_int_equal(pos[n - 1], INT32_MAX - 1);
    EXPECT_OK(kf_select(c, 0));
    EXPECT_OK(kf_compact(c, 0, NULL, NULL));
    v = (kf_logits_view){ NULL, 1, 2, 0, 0, 0, 0 };
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_logits(c, 0, &v));
    EXPECT_OK(kf_cache_reset(c));
    EXPECT_OK(kf_observe_logits(c, 0, &(kf_logits_view){ NULL, 1, 1, 0, 0, 0, 0 }));
    kf_cache_destroy(&c);
}

/* ---- kf_select ---- */

static void test_select_null_and_range(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 18);
    kf_config cfg = base_config();
    kf_cache *c = observed_cache(&cfg, 16, &r);
    EXPECT_STATUS(KF_EINVAL, kf_select(NULL, 0));
    EXPECT_STATUS(KF_EINVAL, kf_select(NULL, KF_ALL_LAYERS));
    const int bad[] = { 2, 3, INT_MAX, -2, INT_MIN };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        EXPECT_FAIL(c, KF_ERANGE, kf_select(c, bad[i]));
    EXPECT_OK(kf_select(c, 1));
    kf_cache_destroy(&c);
}

static void test_select_nothing_observed(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 19);
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, 0));
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, KF_ALL_LAYERS));
    observe_rows(c, 0, 16, &r);
    /* layer 1 has nothing: alone, or as part of every layer */
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, 1));
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, KF_ALL_LAYERS));
    EXPECT_OK(kf_select(c, 0));
    EXPECT_OK(kf_compact(c, 0, NULL, NULL));
    /* nothing observed since the compaction */
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, 0));
    observe_rows(c, 0, 1, &r);
    EXPECT_OK(kf_select(c, 0));
    kf_cache_destroy(&c);
}

static void test_select_twice(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 20);
    kf_config cfg = base_config();
    kf_cache *c = observed_cache(&cfg, 16, &r);
    EXPECT_OK(kf_select(c, 0));
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, 0));
    /* every layer: layer 0 already waits, layer 1 would be fine */
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, KF_ALL_LAYERS));
    EXPECT_OK(kf_select(c, 1));
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, KF_ALL_LAYERS));
    EXPECT_OK(kf_compact(c, KF_ALL_LAYERS, NULL, NULL));
    kf_cache_destroy(&c);
}

static void test_select_uniform_rules(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 21);
    kf_config cfg = base_config();
    cfg.granularity = KF_GRANULARITY_UNIFORM;
    kf_cache *c = observed_cache(&cfg, 16, &r);
    /* a single layer under UNIFORM */
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, 0));
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, 1));
    EXPECT_OK(kf_select(c, KF_ALL_LAYERS));
    EXPECT_OK(kf_compact(c, KF_ALL_LAYERS, NULL, NULL));

    /* out of step: layer 1 is one row behind, then not observed at all */
    observe_rows(c, 0, 2, &r);
    observe_rows(c, 1, 1, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, KF_ALL_LAYERS));
    observe_rows(c, 1, 1, &r);
    EXPECT_OK(kf_select(c, KF_ALL_LAYERS));
    EXPECT_OK(kf_compact(c, KF_ALL_LAYERS, NULL, NULL));
    observe_rows(c, 0, 1, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, KF_ALL_LAYERS));
    observe_rows(c, 1, 1, &r);
    EXPECT_OK(kf_select(c, KF_ALL_LAYERS));
    kf_cache_destroy(&c);

    /* prompts of different lengths */
    c = new_cache(&cfg);
    observe_rows(c, 0, 16, &r);
    observe_rows(c, 1, 12, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, KF_ALL_LAYERS));
    observe_rows(c, 1, 4, &r);
    EXPECT_OK(kf_select(c, KF_ALL_LAYERS));
    kf_cache_destroy(&c);
}

static void test_select_ratio_budget_zero(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 22);
    kf_config cfg = base_config(); /* ratio 0.5 */
    kf_cache *c = new_cache(&cfg);
    observe_rows(c, 0, 1, &r); /* floor(0.5 * 1) = 0 */
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, 0));
    observe_rows(c, 0, 1, &r); /* the prompt continues: k = 1 */
    EXPECT_OK(kf_select(c, 0));
    uint32_t k, w;
    EXPECT_OK(kf_budget(c, &k, &w));
    assert_int_equal(k, 1);
    assert_int_equal(w, 0);
    kf_cache_destroy(&c);

    cfg.budget_ratio = 0.01; /* floor(0.01 * 32) = 0 even when full */
    c = observed_cache(&cfg, 32, &r);
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, 0));
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, KF_ALL_LAYERS));
    EXPECT_OK(kf_cache_reset(c));
    kf_cache_destroy(&c);
}

static void test_select_ratio_budget_above_capacity(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 23);
    kf_config cfg = base_config(); /* capacity 32 */
    cfg.budget_ratio = 1.5;
    kf_cache *c = observed_cache(&cfg, 32, &r); /* k = 48 > 32 */
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, 0));
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, KF_ALL_LAYERS));
    EXPECT_OK(kf_cache_reset(c));
    observe_rows(c, 0, 21, &r); /* k = floor(31.5) = 31 fits */
    EXPECT_OK(kf_select(c, 0));
    kf_cache_destroy(&c);
}

/* A ratio budget with evict_interval B > 1: k + B must fit the capacity,
 * checked when the first selection fixes k, before anything changes. */
static void test_select_ratio_budget_evict_interval(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 51);
    kf_config cfg = base_config(); /* ratio 0.5, capacity 32 */
    cfg.evict_interval = 18;
    kf_cache *c = observed_cache(&cfg, 30, &r); /* k = 15, 15 + 18 > 32 */
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, 0));
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, KF_ALL_LAYERS));
    uint32_t k, w;
    EXPECT_FAIL(c, KF_ESTATE, kf_budget(c, &k, &w)); /* still not fixed */
    EXPECT_OK(kf_cache_reset(c));
    observe_rows(c, 0, 28, &r); /* k = 14, 14 + 18 = 32 fits */
    EXPECT_OK(kf_select(c, 0));
    EXPECT_OK(kf_budget(c, &k, &w));
    assert_int_equal(k, 14);
    /* and the layer then decodes until it holds k + B = capacity */
    EXPECT_OK(kf_compact(c, 0, NULL, NULL));
    for (int t = 0; t < 40; t++) {
        observe_rows(c, 0, 1, &r);
        EXPECT_OK(kf_select(c, 0));
        EXPECT_OK(kf_compact(c, 0, NULL, NULL));
    }
    kf_cache_destroy(&c);
}

/* k = floor(ratio * S) is what must fit the capacity, not ratio * S:
 * ratio 1.04 and a 32-token prompt give k = floor(33.28) = 33 > 32 (an
 * error), but a 31-token prompt gives floor(32.24) = 32, which fits. */
static void test_select_ratio_budget_floor_fits(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 24);
    kf_config cfg = base_config();
    cfg.budget_ratio = 1.04;
    kf_cache *c = new_cache(&cfg);
    observe_rows(c, 0, 32, &r);
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, 0));
    EXPECT_OK(kf_cache_reset(c));
    observe_rows(c, 0, 31, &r);
    EXPECT_OK(kf_select(c, 0));
    uint32_t k, w;
    EXPECT_OK(kf_budget(c, &k, &w));
    assert_int_equal(k, 32);
    kf_cache_destroy(&c);
}

static void test_select_sinks_ratio_budget(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 25);
    kf_config cfg = base_config();
    cfg.policy = KF_POLICY_SINKS;
    cfg.n_sinks = 4;
    cfg.budget_ratio = 0.25;
    kf_cache *c = new_cache(&cfg);
    observe_rows(c, 0, 16, &r); /* k = 4 == n_sinks */
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, 0));
    observe_rows(c, 0, 3, &r); /* k = floor(4.75) = 4 */
    EXPECT_FAIL(c, KF_ERANGE, kf_select(c, 0));
    observe_rows(c, 0, 1, &r); /* k = 5 */
    EXPECT_OK(kf_select(c, 0));
    kf_cache_destroy(&c);
}

static void test_select_prompt_length_differs(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 26);
    kf_config cfg = base_config(); /* ratio budget, per KV head */
    kf_cache *c = new_cache(&cfg);
    observe_rows(c, 0, 16, &r);
    observe_rows(c, 1, 12, &r);
    /* one call over both layers: two prompt lengths */
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, KF_ALL_LAYERS));
    EXPECT_OK(kf_select(c, 0)); /* fixes k from 16 */
    EXPECT_FAIL(c, KF_ESTATE, kf_select(c, 1));
    observe_rows(c, 1, 4, &r);
    EXPECT_OK(kf_select(c, 1));
    kf_cache_destroy(&c);

    /* an absolute budget is fixed at creation, by no prompt: layers with
     * prompts of different lengths select one by one, and so they must
     * all at once */
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 8;
    c = new_cache(&cfg);
    observe_rows(c, 0, 16, &r);
    observe_rows(c, 1, 12, &r);
    EXPECT_OK(kf_select(c, 0));
    EXPECT_OK(kf_select(c, 1));
    EXPECT_OK(kf_compact(c, KF_ALL_LAYERS, NULL, NULL));
    EXPECT_OK(kf_cache_reset(c));
    observe_rows(c, 0, 16, &r);
    observe_rows(c, 1, 12, &r);
    EXPECT_OK(kf_select(c, KF_ALL_LAYERS));
    kf_cache_destroy(&c);
}

/* ---- kf_compact ---- */

static void test_compact_null_range_state(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 27);
    kf_config cfg = base_config();
    kf_cache *c = new_cache(&cfg);
    EXPECT_STATUS(KF_EINVAL, kf_compact(NULL, 0, NULL, NULL));
    EXPECT_STATUS(KF_EINVAL, kf_compact(NULL, KF_ALL_LAYERS, NULL, NULL));
    /* before anything, before select */
    EXPECT_FAIL(c, KF_ESTATE, kf_compact(c, 0, NULL, NULL));
    EXPECT_FAIL(c, KF_ESTATE, kf_compact(c, KF_ALL_LAYERS, NULL, NULL));
    observe_rows(c, 0, 16, &r);
    observe_rows(c, 1, 16, &r);
    kv_pair kv = make_kv(c, 0, &r);
    EXPECT_FAIL(c, KF_ESTATE, kf_compact(c, 0, NULL, NULL));
    EXPECT_FAIL(c, KF_ESTATE, kf_compact(c, 0, &kv.kview, &kv.vview));
    EXPECT_OK(kf_select(c, 0));
    const int bad[] = { 2, INT_MAX, -2, INT_MIN };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        EXPECT_FAIL(c, KF_ERANGE, kf_compact(c, bad[i], NULL, NULL));
        EXPECT_FAIL(c, KF_ERANGE,
                    kf_compact(c, bad[i], &kv.kview, &kv.vview));
    }
    /* layer 1 has no selection: neither alone nor in KF_ALL_LAYERS */
    EXPECT_FAIL(c, KF_ESTATE, kf_compact(c, 1, NULL, NULL));
    EXPECT_FAIL(c, KF_ESTATE, kf_compact(c, KF_ALL_LAYERS, NULL, NULL));
    EXPECT_OK(kf_compact(c, 0, &kv.kview, &kv.vview));
    /* compacted: a second compaction has nothing to apply */
    EXPECT_FAIL(c, KF_ESTATE, kf_compact(c, 0, NULL, NULL));
    EXPECT_OK(kf_select(c, 1));
    EXPECT_OK(kf_compact(c, 1, NULL, NULL));
    free_kv(&kv);
    kf_cache_destroy(&c);
}

/* Runs a compaction that must fail with `want` and leave both the cache
 * and the host buffers untouched. */
static void expect_compact_fails(kf_cache *c, kv_pair *kv,
                                 const kf_kv_view *k, const kf_kv_view *v,
                                 int want, const char *file, int line)
{
    size_t bytes = kv->elems * sizeof(float);
    float *k0 = malloc(bytes), *v0 = malloc(bytes);
    assert_non_null(k0);
    assert_non_null(v0);
    memcpy(k0, kv->k, bytes);
    memcpy(v0, kv->v, bytes);
    snapshot before = take_snapshot(c);
    check_status(kf_compact(c, 0, k, v), want, "kf_compact", file, line);
    check_snapshot(c, &before, "kf_compact", file, line);
    if (memcmp(k0, kv->k, bytes) || memcmp(v0, kv->v, bytes))
        fail_msg("%s:%d: failed kf_compact touched the host buffers", file,
                 line);
    free(k0);
    free(v0);
}

/* The K view is `bad`, then the V view is; the other view is valid. */
#define EXPECT_VIEW_FAILS(c, kv, bad, want)                                \
    do {                                                                   \
        expect_compact_fails((c), (kv), &(bad), &(kv)->vview, (want),      \
                             __FILE__, __LINE__);                          \
        kf_kv_view bad_v_ = (bad);                                         \
        bad_v_.data = bad_v_.data == (kv)->k ? (void *)(kv)->v             \
                                             : bad_v_.data;                \
        expect_compact_fails((c), (kv), &(kv)->kview, &bad_v_, (want),     \
                             __FILE__, __LINE__);                          \
        expect_compact_fails((c), (kv), &(bad), NULL, (want), __FILE__,    \
                             __LINE__);                                    \
    } while (0)

/* A selected layer 0 (16 slots, keeps 8) and host buffers for it. */
static kf_cache *selected_layer0(test_rng *r, kv_pair *kv)
{
    kf_config cfg = base_config();
    kf_cache *c = observed_cache(&cfg, 16, r);
    EXPECT_OK(kf_select(c, 0));
    *kv = make_kv(c, 0, r);
    return c;
}

static void test_compact_view_invalid(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 28);
    kv_pair kv;
    kf_cache *c = selected_layer0(&r, &kv);
    kf_kv_view bad = kv.kview;
    bad.data = NULL;
    expect_compact_fails(c, &kv, &bad, &kv.vview, KF_EINVAL, __FILE__,
                         __LINE__);
    expect_compact_fails(c, &kv, &kv.kview, &bad, KF_EINVAL, __FILE__,
                         __LINE__);
    expect_compact_fails(c, &kv, NULL, &bad, KF_EINVAL, __FILE__, __LINE__);
    const kf_dtype bad_types[] = { (kf_dtype)4, (kf_dtype)-1,
                                   (kf_dtype)100 };
    for (size_t i = 0; i < sizeof bad_types / sizeof *bad_types; i++) {
        bad = kv.kview;
        bad.dtype = bad_types[i];
        EXPECT_VIEW_FAILS(c, &kv, bad, KF_EINVAL);
    }
    EXPECT_OK(kf_compact(c, 0, &kv.kview, &kv.vview));
    free_kv(&kv);
    kf_cache_destroy(&c);
}

static void test_compact_view_mismatch(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 29);
    kv_pair kv;
    kf_cache *c = selected_layer0(&r, &kv);
    const uint32_t bad_counts[] = { 15, 17, 8, 32, 0 };
    for (size_t i = 0; i < sizeof bad_counts / sizeof *bad_counts; i++) {
        kf_kv_view bad = kv.kview;
        bad.n_slots = bad_counts[i];
        EXPECT_VIEW_FAILS(c, &kv, bad, KF_EMISMATCH);
    }
    EXPECT_OK(kf_compact(c, 0, &kv.kview, &kv.vview));
    free_kv(&kv);
    kf_cache_destroy(&c);
}

static void test_compact_view_layout(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 30);
    kv_pair kv;
    kf_cache *c = selected_layer0(&r, &kv); /* 2 KV heads, dim 8, 16 slots */
    kf_kv_view bad = kv.kview;

    bad.token_stride = 7; /* rows of one head overlap */
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.token_stride = 0;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);

    /* [head][token][dim]: head 1 starts inside head 0's rows */
    bad = kv.kview;
    bad.head_stride = 15 * 8;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.head_stride = 0;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);

    /* [token][head][dim]: a token's two heads need 16 elements */
    bad = kv.kview;
    bad.head_stride = 8;
    bad.token_stride = 15;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.head_stride = 4; /* heads overlap inside a token */
    bad.token_stride = 16;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);

    /* misaligned element pointers */
    bad = kv.kview;
    bad.data = (char *)kv.k + 2;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.data = (char *)kv.k + 1;
    bad.dtype = KF_DTYPE_F16;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.dtype = KF_DTYPE_BF16;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);

    /* strides whose extent overflows */
    bad = kv.kview;
    bad.head_stride = SIZE_MAX / 2;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_EOVERFLOW);
    bad.head_stride = SIZE_MAX;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_EOVERFLOW);

    /* K and V on the same data */
    expect_compact_fails(c, &kv, &kv.kview, &kv.kview, KF_ELAYOUT, __FILE__,
                         __LINE__);
    kf_kv_view same = kv.vview;
    same.data = kv.k;
    same.dtype = KF_DTYPE_F16;
    same.head_stride *= 2;
    same.token_stride *= 2;
    expect_compact_fails(c, &kv, &kv.kview, &same, KF_ELAYOUT, __FILE__,
                         __LINE__);
    /* V starting one row into K: different pointers, shared rows */
    kf_kv_view shifted = kv.kview;
    shifted.data = (float *)kv.k + 8;
    expect_compact_fails(c, &kv, &kv.kview, &shifted, KF_ELAYOUT, __FILE__,
                         __LINE__);

    /* the tightest valid layouts are accepted */
    kf_kv_view k = kv.kview, v = kv.vview;
    k.head_stride = v.head_stride = 16 * 8;
    EXPECT_OK(kf_compact(c, 0, &k, &v));
    free_kv(&kv);
    kf_cache_destroy(&c);
}

static void test_compact_token_major_tight(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 31);
    kv_pair kv;
    kf_cache *c = selected_layer0(&r, &kv);
    kf_kv_view k = kv.kview, v = kv.vview;
    k.head_stride = v.head_stride = 8;
    k.token_stride = v.token_stride = 16;
    EXPECT_OK(kf_compact(c, 0, &k, &v));
    free_kv(&kv);
    kf_cache_destroy(&c);
}

/* A K/V view's declared `bytes` bounds the farthest row kf_compact
 * touches: a view that claims more rows per KV head than its buffer holds
 * (head_stride from a larger row count), so that slots in use lie past
 * the buffer, is KF_ELAYOUT, buffers and cache untouched, instead of
 * moving memory past the buffer. */
static void test_compact_view_bytes(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 54);
    kv_pair kv;
    kf_cache *c = selected_layer0(&r, &kv); /* capacity 32, 16 slots */
    size_t exact = kv.elems * sizeof(float); /* 2 heads x 32 rows x 8 */
    kf_kv_view bad = kv.kview;
    bad.head_stride = 50 * 8; /* 50 rows per head, 32 allocated: head 1's
                               * 16 slots run past the buffer */
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    /* the farthest byte is row 15 of head 1: (32 + 15) * 8 + 8 floats */
    bad = kv.kview;
    size_t span = ((size_t)32 * 8 + 15 * 8 + 8) * sizeof(float);
    bad.bytes = span - 1;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.bytes = 1;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    /* f16 elements: half the bytes */
    bad = kv.kview;
    bad.dtype = KF_DTYPE_F16;
    bad.bytes = span / 2 - 1;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    /* rows twice as far apart as the buffer's: past it */
    bad = kv.kview;
    bad.token_stride = 16;
    bad.head_stride = (size_t)32 * 16;
    assert_true(bad.bytes == exact);
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    /* exactly the span, and 0 (not declared), are accepted */
    kf_kv_view k = kv.kview, v = kv.vview;
    k.bytes = span;
    v.bytes = 0;
    EXPECT_OK(kf_compact(c, 0, &k, &v));
    free_kv(&kv);
    kf_cache_destroy(&c);
}

/* Quantized rows (KF_DTYPE_ROW_BYTES): the layer's f32 buffers seen as
 * opaque rows of 32 bytes (2 KV heads x 32 rows). Strides and sizes are in
 * bytes, any address is fine, and the checks are those of the other
 * dtypes: row_bytes 0 is KF_ERANGE, overlapping rows and a declared size
 * too small KF_ELAYOUT, overflowing extents KF_EOVERFLOW, a wrong slot
 * count KF_EMISMATCH; nothing moves on failure. */
static void test_compact_row_bytes(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 57);
    kv_pair kv;
    kf_cache *c = selected_layer0(&r, &kv); /* capacity 32, 16 slots */
    kf_kv_view q = kv.kview;
    q.dtype = KF_DTYPE_ROW_BYTES;
    q.row_bytes = 32;
    q.token_stride = 32;
    q.head_stride = 32 * 32;
    kf_kv_view bad = q;

    bad.row_bytes = 0;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ERANGE);
    bad.data = NULL; /* NULL data first */
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_EINVAL);

    bad = q;
    bad.n_slots = 17;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_EMISMATCH);

    /* rows of one head overlap; heads overlap, head-major or interleaved */
    bad = q;
    bad.token_stride = 31;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.token_stride = 0;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad = q;
    bad.head_stride = 15 * 32 + 31;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.head_stride = 31; /* [row][head]: heads overlap inside a row */
    bad.token_stride = 64;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.head_stride = 32;
    bad.token_stride = 63;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);

    /* the declared size bounds the last byte: row 15 of head 1 */
    size_t span = (size_t)32 * 32 + 15 * 32 + 32;
    bad = q;
    bad.bytes = span - 1;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);
    bad.row_bytes = 33; /* the span counts bytes of rows, not elements */
    bad.token_stride = 33;
    bad.head_stride = 32 * 33;
    bad.bytes = 32 * 33 + 15 * 33 + 33 - 1;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_ELAYOUT);

    /* extents past the address space (strides count bytes here) */
    bad = q;
    bad.head_stride = SIZE_MAX - 100;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_EOVERFLOW);
    bad.head_stride = SIZE_MAX;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_EOVERFLOW);
    bad = q;
    bad.token_stride = SIZE_MAX / 15 + 1;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_EOVERFLOW);
    bad = q;
    bad.row_bytes = SIZE_MAX;
    bad.bytes = 0;
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_EOVERFLOW);
    bad.row_bytes = SIZE_MAX - 32 * 32 - 15 * 32; /* fits, but not at data */
    EXPECT_VIEW_FAILS(c, &kv, bad, KF_EOVERFLOW);

    /* quantized K on V's bytes */
    kf_kv_view on_v = q;
    on_v.data = (char *)kv.v + 3;
    expect_compact_fails(c, &kv, &on_v, &kv.vview, KF_ELAYOUT, __FILE__,
                         __LINE__);

    /* an odd address and an odd row size, beside an f32 V: accepted */
    kf_kv_view k = q;
    k.data = (char *)kv.k + 1;
    k.row_bytes = 31;
    k.bytes = kv.elems * sizeof(float) - 1;
    EXPECT_OK(kf_compact(c, 0, &k, &kv.vview));
    free_kv(&kv);
    kf_cache_destroy(&c);
}

static void test_compact_all_layers_with_views(void **state)
{
    (void)state;
    test_rng r;
    test_rng_seed(&r, 32);
    kf_config cfg = base_config();
    kf_cache *c = observed_cache(&cfg, 16, &r);
    EXPECT_OK(kf_select(c, KF_ALL_LAYERS));
    kv_pair kv = make_kv(c, 0, &r);
    EXPECT_FAIL(c, KF_EINVAL,
                kf_compact(c, KF_ALL_LAYERS, &kv.kview, &kv.vview));
    EXPECT_FAIL(c, KF_EINVAL, kf_compact(c, KF_ALL_LAYERS, &kv.kview, NULL));
    EXPECT_FAIL(c, KF_EINVAL, kf_compact(c, KF_ALL_LAYERS, NULL, &kv.vview));
    EXPECT_OK(kf_compact(c, KF_ALL_LAYERS, NULL, NULL));
    free_kv(&kv);
    kf_cache_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_codes),
        cmocka_unit_test(test_config_default_null),
        cmocka_unit_test(test_create_null),
        cmocka_unit_test(test_create_zero_shape),
        cmocka_unit_test(test_create_heads_not_multiple),
        cmocka_unit_test(test_create_capacity_limit),
        cmocka_unit_test(test_create_budget_tokens_above_capacity),
        cmocka_unit_test(test_create_budget_both_or_neither),
        cmocka_unit_test(test_create_non_finite),
        cmocka_unit_test(test_create_negative_budget_ratio),
        cmocka_unit_test(test_create_recent_ratio_range),
        cmocka_unit_test(test_create_tau_range),
        cmocka_unit_test(test_create_bad_enums),
        cmocka_unit_test(test_create_one_allocator_hook),
        cmocka_unit_test(test_create_reserved_nonzero),
        cmocka_unit_test(test_create_sinks_budget),
        cmocka_unit_test(test_create_threads_limit),
        cmocka_unit_test(test_create_evict_interval_room),
        cmocka_unit_test(test_create_size_overflow),
        cmocka_unit_test(test_create_enomem_no_leak),
        cmocka_unit_test(test_destroy_null),
        cmocka_unit_test(test_reset_null),
        cmocka_unit_test(test_queries_null),
        cmocka_unit_test(test_queries_out_of_range),
        cmocka_unit_test(test_kept_slots_without_selection),
        cmocka_unit_test(test_removed_positions_state),
        cmocka_unit_test(test_budget_not_fixed),
        cmocka_unit_test(test_observe_null),
        cmocka_unit_test(test_observe_layer_out_of_range),
        cmocka_unit_test(test_observe_bad_flags_and_rows),
        cmocka_unit_test(test_observe_beyond_capacity),
        cmocka_unit_test(test_observe_slot_mismatch),
        cmocka_unit_test(test_observe_null_data),
        cmocka_unit_test(test_observe_bad_strides),
        cmocka_unit_test(test_observe_nan_and_inf),
        cmocka_unit_test(test_observe_empty_row),
        cmocka_unit_test(test_observe_nan_in_masked_part),
        cmocka_unit_test(test_observe_nan_after_heads_scored),
        cmocka_unit_test(test_observe_while_selection_waits),
        cmocka_unit_test(test_observe_position_limit),
        cmocka_unit_test(test_observe_misaligned),
        cmocka_unit_test(test_observe_view_bytes),
        cmocka_unit_test(test_round_begin),
        cmocka_unit_test(test_round_kv_head),
        cmocka_unit_test(test_select_null_and_range),
        cmocka_unit_test(test_select_nothing_observed),
        cmocka_unit_test(test_select_twice),
        cmocka_unit_test(test_select_uniform_rules),
        cmocka_unit_test(test_select_ratio_budget_zero),
        cmocka_unit_test(test_select_ratio_budget_above_capacity),
        cmocka_unit_test(test_select_ratio_budget_floor_fits),
        cmocka_unit_test(test_select_ratio_budget_evict_interval),
        cmocka_unit_test(test_select_sinks_ratio_budget),
        cmocka_unit_test(test_select_prompt_length_differs),
        cmocka_unit_test(test_compact_null_range_state),
        cmocka_unit_test(test_compact_view_invalid),
        cmocka_unit_test(test_compact_view_mismatch),
        cmocka_unit_test(test_compact_view_layout),
        cmocka_unit_test(test_compact_token_major_tight),
        cmocka_unit_test(test_compact_view_bytes),
        cmocka_unit_test(test_compact_row_bytes),
        cmocka_unit_test(test_compact_all_layers_with_views),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
