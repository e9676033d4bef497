/* Threading rules of keyformer.h, exercised so ThreadSanitizer can see
 * them (scripts/robustness.sh builds this with -fsanitize=thread; in a
 * normal build it is a plain, quick determinism test):
 *   - different caches are independent: several caches created, used and
 *     destroyed concurrently in pthreads give the same results as the same
 *     work run alone;
 *   - const queries may run concurrently with each other on one cache;
 *   - a cache may run OpenMP threads inside a call: one cache large enough
 *     to cross every parallel threshold (observe, select, compact) with
 *     n_threads = 4 matches the same work with n_threads = 1, bit for bit,
 *     host K/V buffers included;
 *   - the kf_observe_kv_head calls of one round may run concurrently: each
 *     KV head handed over from its own pthread gives the same cache as
 *     kf_observe_logits. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "keyformer.h"
#include "testutil.h"

/* ---- one sequence: chunked prefill, then decode steps ---- */

typedef struct workload {
    kf_config cfg;
    uint32_t prompt;  /* prompt tokens */
    uint32_t chunk;   /* rows per prefill call */
    uint32_t steps;   /* decode steps */
    uint64_t seed;    /* logits and K/V contents */
    int by_kv_head;   /* observe in rounds, a pthread per KV head */
} workload;

typedef struct result {
    int status;       /* first failing call's status, or KF_OK */
    uint64_t digest;  /* test_cache_digest at the end */
    uint64_t kv_hash; /* the host's K/V buffers at the end */
} result;

static uint64_t hash_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

/* ---- a round of kf_observe_kv_head calls, one pthread per KV head ---- */

typedef struct kv_head_call {
    kf_cache *cache;
    int layer, kv_head;
    kf_logits_view view;
    int status;
} kv_head_call;

static void *hand_over(void *arg)
{
    kv_head_call *k = arg;
    k->status = kf_observe_kv_head(k->cache, k->layer, k->kv_head, &k->view);
    return NULL;
}

#define MAX_KV_THREADS 8

/* test_observe's logits (the same random draws), handed over in a round. */
static int observe_in_round(kf_cache *c, int layer, float *buf, uint32_t rows,
                            test_rng *r)
{
    kf_config cfg;
    kf_cache_config(c, &cfg);
    uint32_t n = 0, group = cfg.n_heads / cfg.n_kv_heads;
    kf_slot_count(c, layer, 0, &n);
    uint32_t slots = n + rows;
    test_fill_logits(buf, cfg.n_heads, rows, slots, 1, r);
    int status = kf_observe_begin(c, layer, rows);
    if (status)
        return status;
    kv_head_call calls[MAX_KV_THREADS];
    pthread_t threads[MAX_KV_THREADS];
    assert_true(cfg.n_kv_heads <= MAX_KV_THREADS);
    for (uint32_t g = 0; g < cfg.n_kv_heads; g++) {
        size_t head_stride = (size_t)rows * slots;
        calls[g] = (kv_head_call){
            c, layer, (int)g,
            { buf + g * group * head_stride, rows, slots, slots, head_stride,
              KF_LOGITS_CAUSAL, 0 },
            KF_OK };
        assert_int_equal(pthread_create(&threads[g], NULL, hand_over, &calls[g]), 0);
    }
    for (uint32_t g = 0; g < cfg.n_kv_heads; g++) {
        assert_int_equal(pthread_join(threads[g], NULL), 0);
        if (calls[g].status && !status)
            status = calls[g].status;
    }
    int end = kf_observe_end(c, layer);
    return status ? status : end;
}

static result run_workload(const workload *w)
{
    result r = { KF_OK, 0, 0 };
    const kf_config *cfg = &w->cfg;
    kf_cache *c = NULL;
    r.status = kf_cache_create(&c, cfg);
    if (r.status)
        return r;
    uint32_t heads = cfg->n_heads, kv = cfg->n_kv_heads, dim = cfg->head_dim;
    uint32_t cap = cfg->capacity;
    size_t kv_elems = (size_t)cfg->n_layers * kv * cap * dim;
    float *k_buf = malloc(kv_elems * sizeof *k_buf);
    float *v_buf = malloc(kv_elems * sizeof *v_buf);
    float *logits = malloc((size_t)heads * w->chunk * cap * sizeof *logits);
    if (!k_buf || !v_buf || !logits) {
        r.status = KF_ENOMEM;
        goto done;
    }
    test_rng rng;
    test_rng_seed(&rng, w->seed);
    for (size_t i = 0; i < kv_elems; i++) {
        k_buf[i] = test_rng_float(&rng, -1.0f, 1.0f);
        v_buf[i] = test_rng_float(&rng, -1.0f, 1.0f);
    }
    int uniform = cfg->granularity == KF_GRANULARITY_UNIFORM;

    uint32_t done_rows = 0;
    for (uint32_t step = 0; step <= w->steps && !r.status; step++) {
        /* the prompt in chunks, then one token per step */
        uint32_t todo = step == 0 ? w->prompt : 1;
        while (todo && !r.status) {
            uint32_t rows = todo < w->chunk ? todo : w->chunk;
            for (uint32_t l = 0; l < cfg->n_layers && !r.status; l++)
                r.status = w->by_kv_head
                               ? observe_in_round(c, (int)l, logits, rows, &rng)
                               : test_observe(c, (int)l, logits, rows, 1, &rng);
            todo -= rows;
            done_rows += rows;
        }
        if (r.status)
            break;
        if (uniform) {
            r.status = kf_select(c, KF_ALL_LAYERS);
        } else {
            for (uint32_t l = 0; l < cfg->n_layers && !r.status; l++)
                r.status = kf_select(c, (int)l);
        }
        for (uint32_t l = 0; l < cfg->n_layers && !r.status; l++) {
            uint32_t n = 0;
            kf_slot_count(c, (int)l, 0, &n);
            size_t layer_off = (size_t)l * kv * cap * dim;
            /* [head][token][dim] for K, [token][head][dim] for V */
            kf_kv_view kvw = { k_buf + layer_off, KF_DTYPE_F32, n, dim,
                               (size_t)cap * dim, 0, 0 };
            kf_kv_view vvw = { v_buf + layer_off, KF_DTYPE_F32, n,
                               (size_t)kv * dim, dim, 0, 0 };
            r.status = kf_compact(c, (int)l, &kvw, &vvw);
        }
    }
    r.digest = test_cache_digest(c);
    r.kv_hash = hash_bytes(hash_bytes(0xcbf29ce484222325ull, k_buf,
                                      kv_elems * sizeof *k_buf),
                           v_buf, kv_elems * sizeof *v_buf);
done:
    free(k_buf);
    free(v_buf);
    free(logits);
    kf_cache_destroy(&c);
    (void)done_rows;
    return r;
}

/* ---- several caches at once ---- */

typedef struct job {
    workload w;
    result r;
} job;

static void *run_job(void *arg)
{
    job *j = arg;
    j->r = run_workload(&j->w);
    return NULL;
}

static workload small_workload(int variant)
{
    workload w;
    memset(&w, 0, sizeof w);
    w.cfg = test_config(3, 4, 2, 16, 96);
    w.cfg.n_threads = 1;
    w.cfg.seed = 1000u + (unsigned)variant;
    switch (variant % 4) {
    case 0: break;
    case 1: w.cfg.policy = KF_POLICY_H2O; w.cfg.granularity = KF_GRANULARITY_LAYER; break;
    case 2: w.cfg.granularity = KF_GRANULARITY_UNIFORM; break;
    default: w.cfg.policy = KF_POLICY_SINKS; w.cfg.budget_ratio = 0.0;
        w.cfg.budget_tokens = 24; break;
    }
    w.prompt = 64;
    w.chunk = 16;
    w.steps = 24;
    w.seed = 77u + (unsigned)variant;
    return w;
}

#define N_JOBS 6

static void test_independent_caches_in_threads(void **state)
{
    (void)state;
    result alone[N_JOBS];
    for (int i = 0; i < N_JOBS; i++) {
        workload w = small_workload(i);
        alone[i] = run_workload(&w);
        assert_int_equal(alone[i].status, KF_OK);
    }
    job jobs[N_JOBS];
    pthread_t threads[N_JOBS];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N_JOBS; i++) {
            jobs[i].w = small_workload(i);
            assert_int_equal(pthread_create(&threads[i], NULL, run_job, &jobs[i]), 0);
        }
        for (int i = 0; i < N_JOBS; i++) {
            assert_int_equal(pthread_join(threads[i], NULL), 0);
            assert_int_equal(jobs[i].r.status, KF_OK);
            assert_true(jobs[i].r.digest == alone[i].digest);
            assert_true(jobs[i].r.kv_hash == alone[i].kv_hash);
        }
    }
}

/* ---- concurrent const queries on one cache ---- */

typedef struct reader {
    const kf_cache *cache;
    uint64_t digests[8];
} reader;

static void *read_cache(void *arg)
{
    reader *rd = arg;
    for (int i = 0; i < 8; i++) {
        size_t bytes;
        kf_config cfg;
        kf_cache_memory(rd->cache, &bytes);
        kf_cache_config(rd->cache, &cfg);
        rd->digests[i] = test_cache_digest(rd->cache);
    }
    return NULL;
}

static void test_concurrent_queries(void **state)
{
    (void)state;
    kf_config cfg = test_config(2, 4, 2, 8, 64);
    cfg.granularity = KF_GRANULARITY_UNIFORM;
    kf_cache *c = NULL;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    test_rng rng;
    test_rng_seed(&rng, 5);
    float *logits = malloc((size_t)cfg.n_heads * 32 * 32 * sizeof *logits);
    assert_non_null(logits);
    for (int l = 0; l < 2; l++)
        assert_int_equal(test_observe(c, l, logits, 32, 1, &rng), KF_OK);
    assert_int_equal(kf_select(c, KF_ALL_LAYERS), KF_OK); /* keep lists live */
    uint64_t want = test_cache_digest(c);

    reader readers[4];
    pthread_t threads[4];
    for (int i = 0; i < 4; i++) {
        readers[i].cache = c;
        assert_int_equal(pthread_create(&threads[i], NULL, read_cache, &readers[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        for (int k = 0; k < 8; k++)
            assert_true(readers[i].digests[k] == want);
    }
    free(logits);
    kf_cache_destroy(&c);
}

/* ---- OpenMP inside one cache ---- */

static workload large_workload(uint32_t n_threads, kf_granularity gran)
{
    workload w;
    memset(&w, 0, sizeof w);
    /* more than 4096 slots (parallel select), about 2100 moved rows x 64
     * dims x 4 bytes x (K, V) x 2 KV heads > 1 MiB at the prompt's
     * compaction (parallel compact), chunks of 64 rows x 4200 slots x 4
     * heads > 32768 (parallel observe) */
    w.cfg = test_config(1, 4, 2, 64, 4300);
    w.cfg.n_threads = n_threads;
    w.cfg.granularity = gran;
    w.cfg.seed = 99;
    w.prompt = 4200;
    w.chunk = 64;
    w.steps = 3;
    w.seed = 4242;
    return w;
}

static void test_openmp_inside_one_cache(void **state)
{
    (void)state;
    static const kf_granularity grans[] = { KF_GRANULARITY_KV_HEAD,
                                            KF_GRANULARITY_LAYER };
    for (size_t g = 0; g < sizeof grans / sizeof grans[0]; g++) {
        workload serial = large_workload(1, grans[g]);
        workload parallel = large_workload(4, grans[g]);
        result a = run_workload(&serial);
        result b = run_workload(&parallel);
        assert_int_equal(a.status, KF_OK);
        assert_int_equal(b.status, KF_OK);
        assert_true(a.digest == b.digest);
        assert_true(a.kv_hash == b.kv_hash);
    }
}

static void test_kv_heads_in_threads(void **state)
{
    (void)state;
    for (int variant = 0; variant < 4; variant++) {
        workload w = small_workload(variant);
        w.cfg = test_config(3, 8, 4, 16, 96); /* 4 KV heads, 4 threads */
        w.cfg.n_threads = 1;
        w.cfg.policy = variant == 1 ? KF_POLICY_H2O : KF_POLICY_KEYFORMER;
        w.cfg.slot_order = variant == 2 ? KF_ORDER_ANY : KF_ORDER_POSITION;
        w.cfg.noise = variant == 3 ? KF_NOISE_TABLE : KF_NOISE_EXACT;
        result whole = run_workload(&w);
        assert_int_equal(whole.status, KF_OK);
        w.by_kv_head = 1;
        result rounds = run_workload(&w);
        assert_int_equal(rounds.status, KF_OK);
        assert_true(rounds.digest == whole.digest);
        assert_true(rounds.kv_hash == whole.kv_hash);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_independent_caches_in_threads),
        cmocka_unit_test(test_concurrent_queries),
        cmocka_unit_test(test_openmp_inside_one_cache),
        cmocka_unit_test(test_kv_heads_in_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
