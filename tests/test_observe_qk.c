/* kf_observe_qk against kf_observe_logits: two caches with the same
 * configuration and seed see the same sequence, one through queries and
 * keys, the other through logits this test computes itself in double
 * precision from its own decoding of the keys. Scores must agree within
 * 1e-5 relative, selections and compacted K buffers exactly; for f32, f16
 * and bf16 keys, head-major and token-major K and Q, MHA, GQA and MQA,
 * prefill (causal, chunked, longer than one row block) and decode. Then
 * every error path: the documented status and an unchanged cache. */
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

#define MAX_DIFF_REL 1e-5

/* ---- independent key decoding ---- */

/* binary16 value from its fields, by arithmetic rather than bit moves */
static double decode_f16(uint16_t h)
{
    int sign = h >> 15, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    double v = exp ? ldexp(1.0 + mant / 1024.0, exp - 15)
                   : ldexp(mant / 1024.0, -14);
    return sign ? -v : v;
}

static double decode_bf16(uint16_t b)
{
    int sign = b >> 15, exp = (b >> 7) & 0xff, mant = b & 0x7f;
    double v = exp ? ldexp(1.0 + mant / 128.0, exp - 127)
                   : ldexp(mant / 128.0, -126);
    return sign ? -v : v;
}

/* A random finite key element of the dtype, about [-2, 2]; f16 includes
 * subnormals now and then. */
static void random_elem(void *dst, kf_dtype t, test_rng *r)
{
    uint32_t u = test_rng_u32(r);
    if (t == KF_DTYPE_F32) {
        *(float *)dst = test_rng_float(r, -2.0f, 2.0f);
    } else if (t == KF_DTYPE_F16) {
        uint32_t exp = (u >> 16) % 16 == 0 ? 0 : 10 + (u >> 20) % 6;
        *(uint16_t *)dst = (uint16_t)(((u >> 31) << 15) | (exp << 10)
                                      | (u & 0x3ff));
    } else {
        uint32_t exp = 122 + (u >> 20) % 6;
        *(uint16_t *)dst = (uint16_t)(((u >> 31) << 15) | (exp << 7)
                                      | (u & 0x7f));
    }
}

static double elem_value(const void *base, kf_dtype t, size_t i)
{
    if (t == KF_DTYPE_F32)
        return ((const float *)base)[i];
    uint16_t h = ((const uint16_t *)base)[i];
    return t == KF_DTYPE_F16 ? decode_f16(h) : decode_bf16(h);
}

static size_t elem_size(kf_dtype t)
{
    return t == KF_DTYPE_F32 ? 4 : 2;
}

/* ---- host buffers ---- */

typedef struct shape {
    uint32_t layers, heads, kv_heads, dim, capacity;
    kf_dtype dtype;
    int k_token_major; /* [token][head][dim] instead of [head][token][dim] */
    int q_row_major;   /* [row][head][dim] instead of [head][row][dim] */
    size_t pad;        /* extra elements after each K row */
} shape;

/* One layer's K buffer (capacity slots per KV head). */
typedef struct kbuf {
    uint8_t *data;
    size_t token_stride, head_stride, bytes;
    kf_dtype dtype;
} kbuf;

static kbuf kbuf_new(const shape *s)
{
    kbuf b;
    size_t row = s->dim + s->pad;
    if (s->k_token_major) {
        b.head_stride = row;
        b.token_stride = row * s->kv_heads;
    } else {
        b.token_stride = row;
        b.head_stride = row * s->capacity;
    }
    b.dtype = s->dtype;
    b.bytes = (size_t)s->capacity * s->kv_heads * row * elem_size(s->dtype);
    b.data = calloc(1, b.bytes);
    assert_non_null(b.data);
    return b;
}

static kf_kv_view kbuf_view(const kbuf *b, uint32_t n_slots)
{
    kf_kv_view v = { 0 }; /* bytes 0: not declared */
    v.data = b->data;
    v.dtype = b->dtype;
    v.n_slots = n_slots;
    v.token_stride = b->token_stride;
    v.head_stride = b->head_stride;
    return v;
}

static size_t kbuf_index(const kbuf *b, uint32_t g, uint32_t j, uint32_t e)
{
    return g * b->head_stride + (size_t)j * b->token_stride + e;
}

/* Random keys for slots [j0, j0 + n) of every KV head, the same in every
 * buffer given. */
static void write_keys(kbuf *bufs, int n_bufs, const shape *s, uint32_t j0,
                       uint32_t n, test_rng *r)
{
    size_t es = elem_size(s->dtype);
    for (uint32_t g = 0; g < s->kv_heads; g++)
        for (uint32_t j = j0; j < j0 + n; j++)
            for (uint32_t e = 0; e < s->dim; e++) {
                uint8_t v[4];
                random_elem(v, s->dtype, r);
                for (int b = 0; b < n_bufs; b++)
                    memcpy(bufs[b].data + kbuf_index(&bufs[b], g, j, e) * es,
                           v, es);
            }
}

/* Queries of one call with their view. */
typedef struct qbuf {
    float *data;
    kf_query_view view;
} qbuf;

static qbuf qbuf_new(const shape *s, uint32_t rows, float scale,
                     uint32_t flags, test_rng *r)
{
    qbuf q;
    size_t n = (size_t)rows * s->heads * s->dim;
    q.data = malloc(n * sizeof *q.data);
    assert_non_null(q.data);
    for (size_t i = 0; i < n; i++)
        q.data[i] = test_rng_float(r, -1.5f, 1.5f);
    q.view.data = q.data;
    q.view.n_rows = rows;
    if (s->q_row_major) {
        q.view.head_stride = s->dim;
        q.view.row_stride = (size_t)s->heads * s->dim;
    } else {
        q.view.row_stride = s->dim;
        q.view.head_stride = (size_t)rows * s->dim;
    }
    q.view.scale = scale;
    q.view.flags = flags;
    q.view.bytes = 0; /* not declared */
    return q;
}

/* The logits kf_observe_qk should see, dense [head][row][slot], -inf where
 * a causal row cannot see. */
static float *reference_logits(const shape *s, const qbuf *q, const kbuf *k,
                               uint32_t n_slots)
{
    uint32_t rows = q->view.n_rows, group = s->heads / s->kv_heads;
    uint32_t n_old = n_slots - rows;
    float scale = q->view.scale != 0.0f
                      ? q->view.scale
                      : (float)(1.0 / sqrt((double)s->dim));
    float *x = malloc((size_t)s->heads * rows * n_slots * sizeof *x);
    assert_non_null(x);
    for (uint32_t h = 0; h < s->heads; h++)
        for (uint32_t i = 0; i < rows; i++) {
            const float *qi = q->data + h * q->view.head_stride
                              + i * q->view.row_stride;
            for (uint32_t j = 0; j < n_slots; j++) {
                float *out = &x[((size_t)h * rows + i) * n_slots + j];
                if ((q->view.flags & KF_LOGITS_CAUSAL) && j > n_old + i) {
                    *out = -INFINITY;
                    continue;
                }
                double dot = 0.0;
                for (uint32_t e = 0; e < s->dim; e++)
                    dot += (double)qi[e]
                           * elem_value(k->data, s->dtype,
                                        kbuf_index(k, h / group, j, e));
                *out = (float)dot * scale;
            }
        }
    return x;
}

/* ---- the two caches side by side ---- */

typedef struct pair {
    shape s;
    kf_config cfg;
    kf_cache *qk, *ref;
    kbuf *kq, *kr; /* [layers]: K buffers of the qk and the ref cache */
    test_rng rng;
} pair;

static void pair_init(pair *p, const shape *s, const kf_config *cfg,
                      uint64_t seed)
{
    p->s = *s;
    p->cfg = *cfg;
    assert_int_equal(kf_cache_create(&p->qk, cfg), KF_OK);
    assert_int_equal(kf_cache_create(&p->ref, cfg), KF_OK);
    p->kq = calloc(s->layers, sizeof *p->kq);
    p->kr = calloc(s->layers, sizeof *p->kr);
    assert_non_null(p->kq);
    assert_non_null(p->kr);
    for (uint32_t l = 0; l < s->layers; l++) {
        p->kq[l] = kbuf_new(s);
        p->kr[l] = kbuf_new(s);
    }
    test_rng_seed(&p->rng, seed);
}

static void pair_free(pair *p)
{
    for (uint32_t l = 0; l < p->s.layers; l++) {
        free(p->kq[l].data);
        free(p->kr[l].data);
    }
    free(p->kq);
    free(p->kr);
    kf_cache_destroy(&p->qk);
    kf_cache_destroy(&p->ref);
}

static int scores_close(float a, float b)
{
    double diff = fabs((double)a - b);
    double mag = fmax(fabs((double)a), fabs((double)b));
    return diff <= MAX_DIFF_REL * mag || diff < 1e-30;
}

/* Positions and scores of every (layer, KV head) agree. */
static void compare_state(const pair *p, const char *when)
{
    for (int l = 0; l < (int)p->s.layers; l++)
        for (int g = 0; g < (int)p->s.kv_heads; g++) {
            const float *sa, *sb;
            const int32_t *pa, *pb;
            uint32_t na, nb;
            assert_int_equal(kf_slot_scores(p->qk, l, g, &sa, &na), KF_OK);
            assert_int_equal(kf_slot_scores(p->ref, l, g, &sb, &nb), KF_OK);
            assert_int_equal(na, nb);
            for (uint32_t j = 0; j < na; j++)
                if (!scores_close(sa[j], sb[j]))
                    fail_msg("%s: layer %d head %d slot %u: score %.9g via "
                             "q/k, %.9g via logits",
                             when, l, g, j, sa[j], sb[j]);
            assert_int_equal(kf_slot_positions(p->qk, l, g, &pa, &na), KF_OK);
            assert_int_equal(kf_slot_positions(p->ref, l, g, &pb, &nb), KF_OK);
            assert_memory_equal(pa, pb, na * sizeof *pa);
        }
}

static uint32_t slot_count(kf_cache *c, int layer)
{
    uint32_t n = 0;
    assert_int_equal(kf_slot_count(c, layer, 0, &n), KF_OK);
    return n;
}

/* One call of `rows` new tokens on every layer: keys appended to both K
 * buffers, kf_observe_qk on one cache, the test's logits on the other. */
static void pair_observe(pair *p, uint32_t rows, float scale, uint32_t flags)
{
    for (int l = 0; l < (int)p->s.layers; l++) {
        uint32_t n_old = slot_count(p->qk, l);
        kbuf both[2] = { p->kq[l], p->kr[l] };
        write_keys(both, 2, &p->s, n_old, rows, &p->rng);
        qbuf q = qbuf_new(&p->s, rows, scale, flags, &p->rng);
        kf_kv_view kv = kbuf_view(&p->kq[l], n_old + rows);
        assert_int_equal(kf_observe_qk(p->qk, l, &q.view, &kv), KF_OK);

        uint32_t n_slots = n_old + rows;
        float *x = reference_logits(&p->s, &q, &p->kr[l], n_slots);
        kf_logits_view lv = { x, rows, n_slots, n_slots,
                              (size_t)rows * n_slots, flags, 0 };
        assert_int_equal(kf_observe_logits(p->ref, l, &lv), KF_OK);
        free(x);
        free(q.data);
    }
    compare_state(p, "after observe");
}

/* Select and compact both caches; kept lists and K buffers must agree. */
static void pair_select(pair *p)
{
    int uniform = p->cfg.granularity == KF_GRANULARITY_UNIFORM;
    if (uniform) {
        assert_int_equal(kf_select(p->qk, KF_ALL_LAYERS), KF_OK);
        assert_int_equal(kf_select(p->ref, KF_ALL_LAYERS), KF_OK);
    }
    for (int l = 0; l < (int)p->s.layers; l++) {
        if (!uniform) {
            assert_int_equal(kf_select(p->qk, l), KF_OK);
            assert_int_equal(kf_select(p->ref, l), KF_OK);
        }
        for (int g = 0; g < (int)p->s.kv_heads; g++) {
            const uint32_t *ka, *kb;
            uint32_t na, nb;
            assert_int_equal(kf_kept_slots(p->qk, l, g, &ka, &na), KF_OK);
            assert_int_equal(kf_kept_slots(p->ref, l, g, &kb, &nb), KF_OK);
            assert_int_equal(na, nb);
            assert_memory_equal(ka, kb, na * sizeof *ka);
        }
        uint32_t n = slot_count(p->qk, l);
        kf_kv_view a = kbuf_view(&p->kq[l], n), b = kbuf_view(&p->kr[l], n);
        assert_int_equal(kf_compact(p->qk, l, &a, NULL), KF_OK);
        assert_int_equal(kf_compact(p->ref, l, &b, NULL), KF_OK);
        assert_memory_equal(p->kq[l].data, p->kr[l].data, p->kq[l].bytes);
    }
    compare_state(p, "after compact");
}

/* Prefill of `prompt` tokens in `chunks` causal calls, selection, then
 * `steps` one-token decode steps. */
static void run_sequence(const shape *s, kf_config cfg, uint32_t prompt,
                         uint32_t chunks, uint32_t steps, float scale,
                         uint64_t seed)
{
    pair p;
    pair_init(&p, s, &cfg, seed);
    for (uint32_t c = 0; c < chunks; c++) {
        uint32_t rows = prompt / chunks + (c < prompt % chunks);
        pair_observe(&p, rows, scale, KF_LOGITS_CAUSAL);
    }
    pair_select(&p);
    for (uint32_t t = 0; t < steps; t++) {
        pair_observe(&p, 1, scale, t % 2 ? 0u : KF_LOGITS_CAUSAL);
        pair_select(&p);
    }
    pair_free(&p);
}

static kf_config config_of(const shape *s, uint32_t budget)
{
    kf_config cfg = test_config(s->layers, s->heads, s->kv_heads, s->dim,
                                s->capacity);
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = budget;
    cfg.seed = 0x5eed;
    return cfg;
}

/* ---- equivalence ---- */

static void test_f32_head_major_mha(void **state)
{
    (void)state;
    shape s = { 2, 4, 4, 20, 48, KF_DTYPE_F32, 0, 0, 0 };
    run_sequence(&s, config_of(&s, 16), 40, 1, 6, 0.0f, 1);
}

static void test_f32_token_major_gqa(void **state)
{
    (void)state;
    shape s = { 2, 8, 2, 32, 48, KF_DTYPE_F32, 1, 1, 0 };
    run_sequence(&s, config_of(&s, 20), 36, 1, 6, 0.0f, 2);
}

static void test_f32_padded_rows_mqa(void **state)
{
    (void)state;
    shape s = { 1, 4, 1, 17, 40, KF_DTYPE_F32, 0, 1, 3 };
    run_sequence(&s, config_of(&s, 12), 30, 1, 5, 0.25f, 3);
}

static void test_f16_both_layouts(void **state)
{
    (void)state;
    shape s = { 2, 6, 3, 24, 48, KF_DTYPE_F16, 0, 0, 0 };
    run_sequence(&s, config_of(&s, 16), 40, 1, 5, 0.0f, 4);
    s.k_token_major = 1;
    s.q_row_major = 1;
    run_sequence(&s, config_of(&s, 16), 40, 1, 5, 0.0f, 5);
}

static void test_bf16_both_layouts(void **state)
{
    (void)state;
    shape s = { 2, 4, 2, 16, 48, KF_DTYPE_BF16, 1, 0, 0 };
    run_sequence(&s, config_of(&s, 16), 40, 1, 5, 0.0f, 6);
    s.k_token_major = 0;
    s.q_row_major = 1;
    s.pad = 5;
    run_sequence(&s, config_of(&s, 16), 40, 1, 5, 0.0f, 7);
}

/* prompts longer than one row block (32) and one key tile (64) */
static void test_long_prompt_blocks(void **state)
{
    (void)state;
    shape s = { 1, 4, 2, 40, 160, KF_DTYPE_F32, 0, 0, 0 };
    run_sequence(&s, config_of(&s, 64), 150, 1, 4, 0.0f, 8);
    s.dtype = KF_DTYPE_F16;
    s.k_token_major = 1;
    run_sequence(&s, config_of(&s, 64), 150, 1, 4, 0.0f, 9);
}

static void test_chunked_prefill(void **state)
{
    (void)state;
    shape s = { 2, 4, 2, 16, 64, KF_DTYPE_F32, 1, 0, 0 };
    run_sequence(&s, config_of(&s, 20), 50, 3, 4, 0.0f, 10);
}

/* two new rows that see each other (no causal flag) */
static void test_non_causal_rows(void **state)
{
    (void)state;
    shape s = { 1, 4, 4, 16, 40, KF_DTYPE_BF16, 0, 1, 0 };
    kf_config cfg = config_of(&s, 12);
    pair p;
    pair_init(&p, &s, &cfg, 11);
    pair_observe(&p, 24, 0.0f, KF_LOGITS_CAUSAL);
    pair_select(&p);
    pair_observe(&p, 2, 0.0f, 0);
    pair_observe(&p, 3, 0.5f, KF_LOGITS_CAUSAL);
    pair_select(&p);
    pair_free(&p);
}

static void test_h2o_and_granularities(void **state)
{
    (void)state;
    shape s = { 2, 4, 2, 16, 48, KF_DTYPE_F32, 0, 0, 0 };
    kf_config cfg = config_of(&s, 16);
    cfg.policy = KF_POLICY_H2O;
    run_sequence(&s, cfg, 40, 1, 4, 0.0f, 12);
    cfg = config_of(&s, 16);
    cfg.granularity = KF_GRANULARITY_LAYER;
    run_sequence(&s, cfg, 40, 2, 4, 0.0f, 13);
    cfg.granularity = KF_GRANULARITY_UNIFORM;
    cfg.rule = KF_RULE_REFERENCE;
    run_sequence(&s, cfg, 40, 1, 4, 0.0f, 14);
}

/* KF_NOISE_TABLE: the logits computed here and the host's give the same
 * state with the table's noise too (grouped rows of a GQA head). */
static void test_table_noise(void **state)
{
    (void)state;
    shape s = { 2, 8, 2, 16, 48, KF_DTYPE_F32, 0, 0, 0 };
    kf_config cfg = config_of(&s, 16);
    cfg.noise = KF_NOISE_TABLE;
    run_sequence(&s, cfg, 40, 1, 4, 0.0f, 15);
    cfg.granularity = KF_GRANULARITY_LAYER;
    run_sequence(&s, cfg, 40, 2, 4, 0.0f, 16);
}

/* capacity below the row block: the block shrinks to the capacity */
static void test_small_capacity(void **state)
{
    (void)state;
    shape s = { 1, 2, 1, 8, 6, KF_DTYPE_F16, 0, 0, 0 };
    run_sequence(&s, config_of(&s, 5), 6, 1, 6, 0.0f, 15);
}

/* the same call with 1 and 3 threads gives the same state, bit for bit */
static void test_thread_count_invariance(void **state)
{
    (void)state;
    shape s = { 1, 8, 2, 32, 128, KF_DTYPE_F16, 1, 1, 0 };
    kf_config cfg = config_of(&s, 40);
    kf_cache *c[2];
    uint32_t threads[2] = { 1, 3 };
    kbuf k = kbuf_new(&s);
    test_rng r;
    test_rng_seed(&r, 16);
    write_keys(&k, 1, &s, 0, 120, &r);
    qbuf q = qbuf_new(&s, 120, 0.0f, KF_LOGITS_CAUSAL, &r);
    kf_kv_view kv = kbuf_view(&k, 120);
    for (int i = 0; i < 2; i++) {
        cfg.n_threads = threads[i];
        assert_int_equal(kf_cache_create(&c[i], &cfg), KF_OK);
        assert_int_equal(kf_observe_qk(c[i], 0, &q.view, &kv), KF_OK);
        assert_int_equal(kf_select(c[i], 0), KF_OK);
    }
    assert_true(test_cache_digest(c[0]) == test_cache_digest(c[1]));
    for (int i = 0; i < 2; i++)
        kf_cache_destroy(&c[i]);
    free(q.data);
    free(k.data);
}

/* policies that do not score accept NULL queries and keys */
static void test_non_scoring_policies(void **state)
{
    (void)state;
    kf_policy policies[3] = { KF_POLICY_WINDOW, KF_POLICY_SINKS,
                              KF_POLICY_FULL };
    for (int i = 0; i < 3; i++) {
        kf_config cfg = test_config(1, 4, 2, 8, 32);
        cfg.policy = policies[i];
        if (policies[i] == KF_POLICY_FULL)
            cfg.budget_ratio = 0.0;
        kf_cache *a, *b;
        assert_int_equal(kf_cache_create(&a, &cfg), KF_OK);
        assert_int_equal(kf_cache_create(&b, &cfg), KF_OK);
        kf_query_view q = { NULL, 12, 8, 96, 0.0f, KF_LOGITS_CAUSAL, 0 };
        kf_logits_view lv = { NULL, 12, 12, 12, 144, KF_LOGITS_CAUSAL, 0 };
        assert_int_equal(kf_observe_qk(a, 0, &q, NULL), KF_OK);
        assert_int_equal(kf_observe_logits(b, 0, &lv), KF_OK);
        assert_true(test_cache_digest(a) == test_cache_digest(b));
        kf_cache_destroy(&a);
        kf_cache_destroy(&b);
    }
}

/* ---- error paths ---- */

#define EXPECT_FAIL(c, want, call)                                         \
    do {                                                                   \
        uint64_t before_ = test_cache_digest(c);                           \
        int got_ = (call);                                                 \
        if (got_ != (want))                                                \
            fail_msg("%s returned %d (%s), expected %d (%s)", #call, got_, \
                     kf_strerror(got_), (want), kf_strerror(want));        \
        if (test_cache_digest(c) != before_)                               \
            fail_msg("%s changed the cache", #call);                       \
    } while (0)

typedef struct err_fixture {
    shape s;
    kf_cache *c;
    kbuf k;
    qbuf q;
    kf_kv_view kv;
    test_rng r;
} err_fixture;

/* A cache whose layer 0 holds 8 slots (10 observed, budget 8, compacted)
 * and a valid decode call: 1 query row, keys of 9 slots. */
static void err_setup(err_fixture *f, kf_dtype dtype)
{
    shape s = { 2, 4, 2, 16, 24, dtype, 0, 0, 0 };
    f->s = s;
    kf_config cfg = config_of(&s, 8);
    assert_int_equal(kf_cache_create(&f->c, &cfg), KF_OK);
    f->k = kbuf_new(&s);
    test_rng_seed(&f->r, 99);
    write_keys(&f->k, 1, &s, 0, 24, &f->r);
    qbuf q0 = qbuf_new(&s, 10, 0.0f, KF_LOGITS_CAUSAL, &f->r);
    kf_kv_view kv0 = kbuf_view(&f->k, 10);
    assert_int_equal(kf_observe_qk(f->c, 0, &q0.view, &kv0), KF_OK);
    assert_int_equal(kf_select(f->c, 0), KF_OK);
    assert_int_equal(kf_compact(f->c, 0, &kv0, NULL), KF_OK);
    free(q0.data);
    f->q = qbuf_new(&s, 1, 0.0f, KF_LOGITS_CAUSAL, &f->r);
    f->kv = kbuf_view(&f->k, 9);
}

static void err_teardown(err_fixture *f)
{
    free(f->q.data);
    free(f->k.data);
    kf_cache_destroy(&f->c);
}

static void test_errors_arguments(void **state)
{
    (void)state;
    err_fixture f;
    err_setup(&f, KF_DTYPE_F32);
    kf_cache *c = f.c;
    kf_query_view q = f.q.view;
    kf_kv_view k = f.kv;

    assert_int_equal(kf_observe_qk(NULL, 0, &q, &k), KF_EINVAL);
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_qk(c, 0, NULL, &k));
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_qk(c, 0, &q, NULL));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_qk(c, -1, &q, &k));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_qk(c, 2, &q, &k));
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_qk(c, KF_ALL_LAYERS, &q, &k));

    kf_query_view bq = q;
    bq.data = NULL;
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_qk(c, 0, &bq, &k));
    bq = q;
    bq.flags = 2;
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_qk(c, 0, &bq, &k));
    bq = q;
    bq.n_rows = 0;
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_qk(c, 0, &bq, &k));
    float bad_scales[3] = { -1.0f, NAN, INFINITY };
    for (int i = 0; i < 3; i++) {
        bq = q;
        bq.scale = bad_scales[i];
        EXPECT_FAIL(c, KF_EINVAL, kf_observe_qk(c, 0, &bq, &k));
    }
    kf_kv_view bk = k;
    bk.data = NULL;
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_qk(c, 0, &q, &bk));
    bk = k;
    bk.dtype = (kf_dtype)4;
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_qk(c, 0, &q, &bk));
    /* quantized keys are opaque: the library cannot read them */
    bk.dtype = KF_DTYPE_ROW_BYTES;
    bk.row_bytes = 16 * sizeof(float);
    EXPECT_FAIL(c, KF_EINVAL, kf_observe_qk(c, 0, &q, &bk));

    /* the keys must hold the old slots plus the new row */
    bk = k;
    bk.n_slots = 8;
    EXPECT_FAIL(c, KF_EMISMATCH, kf_observe_qk(c, 0, &q, &bk));
    bk.n_slots = 10;
    EXPECT_FAIL(c, KF_EMISMATCH, kf_observe_qk(c, 0, &q, &bk));

    /* 8 slots + 17 rows > capacity 24 (a consistent view) */
    qbuf big = qbuf_new(&f.s, 17, 0.0f, KF_LOGITS_CAUSAL, &f.r);
    kbuf kbig = kbuf_new(&(shape){ 2, 4, 2, 16, 25, KF_DTYPE_F32, 0, 0, 0 });
    kf_kv_view kvbig = kbuf_view(&kbig, 25);
    EXPECT_FAIL(c, KF_ERANGE, kf_observe_qk(c, 0, &big.view, &kvbig));
    free(big.data);
    free(kbig.data);

    /* overlapping rows, misaligned data, overflowing strides */
    bq = q;
    bq.head_stride = 8; /* heads overlap (rows are 16 long) */
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_qk(c, 0, &bq, &k));
    bq = q;
    bq.data = (const float *)(const void *)((const char *)q.data + 2);
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_qk(c, 0, &bq, &k));
    bq = q;
    bq.head_stride = SIZE_MAX / 2;
    EXPECT_FAIL(c, KF_EOVERFLOW, kf_observe_qk(c, 0, &bq, &k));
    bk = k;
    bk.token_stride = 15;
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_qk(c, 0, &q, &bk));
    bk = k;
    bk.head_stride = 16 * 8; /* the second head overlaps the first */
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_qk(c, 0, &q, &bk));
    bk = k;
    bk.data = (char *)k.data + 2;
    EXPECT_FAIL(c, KF_ELAYOUT, kf_observe_qk(c, 0, &q, &bk));
    bk = k;
    bk.token_stride = SIZE_MAX / 4;
    EXPECT_FAIL(c, KF_EOVERFLOW, kf_observe_qk(c, 0, &q, &bk));

    /* the valid call still works after every failure */
    assert_int_equal(kf_observe_qk(c, 0, &q, &k), KF_OK);
    /* a selection waits for its compaction */
    assert_int_equal(kf_select(c, 0), KF_OK);
    kf_kv_view k2 = kbuf_view(&f.k, 10);
    EXPECT_FAIL(c, KF_ESTATE, kf_observe_qk(c, 0, &q, &k2));
    err_teardown(&f);
}

static void test_errors_values(void **state)
{
    (void)state;
    kf_dtype types[3] = { KF_DTYPE_F32, KF_DTYPE_F16, KF_DTYPE_BF16 };
    for (int t = 0; t < 3; t++) {
        err_fixture f;
        err_setup(&f, types[t]);
        kf_cache *c = f.c;
        size_t es = elem_size(types[t]);
        /* NaN and +inf in a query */
        float saved = f.q.data[5];
        f.q.data[5] = NAN;
        EXPECT_FAIL(c, KF_ENAN, kf_observe_qk(c, 0, &f.q.view, &f.kv));
        /* +inf times a positive key element: a +inf logit */
        uint8_t *k5 = f.k.data + kbuf_index(&f.k, 0, 0, 5) * es;
        uint8_t k5_saved[4];
        memcpy(k5_saved, k5, es);
        if (types[t] == KF_DTYPE_F32) {
            float one = 1.0f;
            memcpy(k5, &one, 4);
        } else {
            uint16_t one = types[t] == KF_DTYPE_F16 ? 0x3c00 : 0x3f80;
            memcpy(k5, &one, 2);
        }
        f.q.data[5] = INFINITY;
        EXPECT_FAIL(c, KF_ENAN, kf_observe_qk(c, 0, &f.q.view, &f.kv));
        f.q.data[5] = saved;
        memcpy(k5, k5_saved, es);

        /* NaN in a visible key (slot 3 of KV head 1) */
        uint8_t *elem = f.k.data + kbuf_index(&f.k, 1, 3, 2) * es;
        uint8_t keep[4];
        memcpy(keep, elem, es);
        if (types[t] == KF_DTYPE_F32) {
            float v = NAN;
            memcpy(elem, &v, 4);
        } else {
            uint16_t v = types[t] == KF_DTYPE_F16 ? 0x7e00 : 0x7fc0;
            memcpy(elem, &v, 2);
        }
        EXPECT_FAIL(c, KF_ENAN, kf_observe_qk(c, 0, &f.q.view, &f.kv));
        memcpy(elem, keep, es);

        /* every visible key of head 0 is -inf in element 0 and the query
         * of head 0 positive there: a row with no finite logit */
        for (uint32_t j = 0; j < 9; j++) {
            uint8_t *e0 = f.k.data + kbuf_index(&f.k, 0, j, 0) * es;
            if (types[t] == KF_DTYPE_F32) {
                float v = -INFINITY;
                memcpy(e0, &v, 4);
            } else {
                uint16_t v = types[t] == KF_DTYPE_F16 ? 0xfc00 : 0xff80;
                memcpy(e0, &v, 2);
            }
        }
        f.q.data[0] = 1.0f;  /* query head 0 */
        f.q.data[16] = 1.0f; /* query head 1, the same KV head */
        EXPECT_FAIL(c, KF_EEMPTYROW, kf_observe_qk(c, 0, &f.q.view, &f.kv));
        err_teardown(&f);
    }
}

/* Elements outside the view are never read: NaN in the padding after each
 * key row and in the slots past n_slots. */
static void test_unread_elements(void **state)
{
    (void)state;
    shape s = { 1, 2, 1, 8, 16, KF_DTYPE_F32, 0, 0, 3 };
    kf_config cfg = config_of(&s, 8);
    kf_cache *c;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    kbuf k = kbuf_new(&s);
    float *kd = (float *)(void *)k.data;
    for (size_t i = 0; i < k.bytes / sizeof(float); i++)
        kd[i] = NAN;
    test_rng r;
    test_rng_seed(&r, 17);
    write_keys(&k, 1, &s, 0, 10, &r);
    qbuf q = qbuf_new(&s, 10, 0.0f, KF_LOGITS_CAUSAL, &r);
    kf_kv_view kv = kbuf_view(&k, 10);
    assert_int_equal(kf_observe_qk(c, 0, &q.view, &kv), KF_OK);
    free(q.data);
    free(k.data);
    kf_cache_destroy(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32_head_major_mha),
        cmocka_unit_test(test_f32_token_major_gqa),
        cmocka_unit_test(test_f32_padded_rows_mqa),
        cmocka_unit_test(test_f16_both_layouts),
        cmocka_unit_test(test_bf16_both_layouts),
        cmocka_unit_test(test_long_prompt_blocks),
        cmocka_unit_test(test_chunked_prefill),
        cmocka_unit_test(test_non_causal_rows),
        cmocka_unit_test(test_h2o_and_granularities),
        cmocka_unit_test(test_table_noise),
        cmocka_unit_test(test_small_capacity),
        cmocka_unit_test(test_thread_count_invariance),
        cmocka_unit_test(test_non_scoring_policies),
        cmocka_unit_test(test_errors_arguments),
        cmocka_unit_test(test_errors_values),
        cmocka_unit_test(test_unread_elements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
