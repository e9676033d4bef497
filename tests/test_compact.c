/* kf_compact on host K/V buffers: a bit-exact, in-place move of the kept
 * rows, checked against an expectation built independently from
 * kf_kept_slots() and a copy of the buffers taken before the call. Every
 * buffer sits between guard bytes that must survive; rows past the new
 * slot count must stay as they were; the library's positions and scores
 * must move with the rows. */
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

#define GUARD 64 /* bytes before and after every host buffer */

static uint8_t guard_byte(size_t i)
{
    return (uint8_t)(0xA5u ^ (i * 29u));
}

/* Bytes per stride unit: an element, or one byte of an opaque row. */
static size_t elem_size(kf_dtype t)
{
    return t == KF_DTYPE_F32 ? 4 : t == KF_DTYPE_ROW_BYTES ? 1 : 2;
}

static const char *dtype_name(kf_dtype t)
{
    return t == KF_DTYPE_F32   ? "f32"
           : t == KF_DTYPE_F16 ? "f16"
           : t == KF_DTYPE_BF16 ? "bf16"
                                : "row-bytes";
}

/* ---- host buffers ---- */

/* How the host lays out one layer's K or V. */
typedef struct kv_layout {
    kf_dtype dtype;
    int token_major;   /* [token][head][dim], else [head][token][dim] */
    uint32_t pad_row;  /* elements after each head_dim row */
    uint32_t pad_token; /* token-major: elements after a token's heads */
    size_t row_bytes;  /* KF_DTYPE_ROW_BYTES: bytes per row (quantized) */
    uint32_t misalign; /* bytes from a 64-byte boundary to the data */
} kv_layout;

typedef struct host_buf {
    void *raw;         /* the allocation: mem, 64-byte aligned, inside */
    uint8_t *mem;      /* lead + bytes + GUARD */
    size_t lead;       /* guard bytes before the data: GUARD + misalign */
    size_t bytes;      /* of the data between the guards */
    size_t elem;
    size_t row_len;    /* elements per row: head_dim, or row_bytes bytes */
    uint32_t n_kv_heads;
    kf_kv_view view;   /* n_slots filled in at each compaction */
} host_buf;

/* Bit patterns compaction must carry unchanged, most of them values a
 * float load and store could alter: NaN payloads (quiet, signalling,
 * negative), -0, a subnormal, infinity. */
static const uint32_t special_f32[] = { 0x7fc00000u, 0x7f800001u,
                                        0xffc12345u, 0x7fbfffffu,
                                        0x80000000u, 0x00000001u,
                                        0x7f800000u };
static const uint16_t special_f16[] = { 0x7e00u, 0x7c01u, 0xfd55u, 0x7dffu,
                                        0x8000u, 0x0001u, 0x7c00u };
static const uint16_t special_bf16[] = { 0x7fc0u, 0x7f81u, 0xffc5u, 0x7fbfu,
                                         0x8000u, 0x0001u, 0x7f80u };
#define N_SPECIAL 7

/* Random bits for n elements, every fifth one a special pattern (opaque
 * rows: random bytes). */
static void fill_bits(uint8_t *p, size_t n, kf_dtype t, test_rng *r)
{
    size_t elem = elem_size(t);
    for (size_t i = 0; i < n; i++) {
        uint8_t *e = p + i * elem;
        uint32_t bits = test_rng_u32(r);
        if (elem == 1) {
            *e = (uint8_t)(bits >> 13);
            continue;
        }
        if (i % 5 == 0) {
            uint32_t s = test_rng_u32(r) % N_SPECIAL;
            bits = t == KF_DTYPE_F32   ? special_f32[s]
                   : t == KF_DTYPE_F16 ? special_f16[s]
                                       : special_bf16[s];
        }
        if (elem == 4) {
            memcpy(e, &bits, 4);
        } else {
            uint16_t half = (uint16_t)bits;
            memcpy(e, &half, 2);
        }
    }
}

static void host_init(host_buf *b, const kf_config *cfg, const kv_layout *lay,
                      test_rng *r)
{
    int opaque = lay->dtype == KF_DTYPE_ROW_BYTES;
    size_t len = opaque ? lay->row_bytes : cfg->head_dim;
    size_t row = len + lay->pad_row;
    size_t token_stride, head_stride;
    if (lay->token_major) {
        head_stride = row;
        token_stride = cfg->n_kv_heads * row + lay->pad_token;
    } else {
        token_stride = row;
        head_stride = cfg->capacity * row;
    }
    size_t extent = (cfg->n_kv_heads - 1) * head_stride
                    + (cfg->capacity - 1) * token_stride + len;
    b->elem = elem_size(lay->dtype);
    b->bytes = extent * b->elem;
    b->row_len = len;
    b->n_kv_heads = cfg->n_kv_heads;
    b->lead = GUARD + lay->misalign;
    b->raw = malloc(b->lead + b->bytes + GUARD + 63);
    assert_non_null(b->raw);
    b->mem = (uint8_t *)b->raw + (-(uintptr_t)b->raw & 63);
    for (size_t i = 0; i < b->lead; i++)
        b->mem[i] = guard_byte(i);
    for (size_t i = 0; i < GUARD; i++)
        b->mem[b->lead + b->bytes + i] = guard_byte(b->lead + i);
    fill_bits(b->mem + b->lead, extent, lay->dtype, r);
    /* the buffer's exact size: the last row ends at the last byte */
    b->view = (kf_kv_view){ b->mem + b->lead, lay->dtype, 0, token_stride,
                            head_stride, b->bytes, opaque ? len : 0 };
}

static void host_free(host_buf *b)
{
    free(b->raw);
    b->raw = NULL;
    b->mem = NULL;
}

/* Byte offset of row (g, slot) from the start of mem. */
static size_t row_offset(const host_buf *b, uint32_t g, uint32_t slot)
{
    return b->lead + (g * b->view.head_stride + slot * b->view.token_stride)
                         * b->elem;
}

static size_t row_bytes(const host_buf *b)
{
    return b->row_len * b->elem;
}

static void assert_guards(const host_buf *b)
{
    for (size_t i = 0; i < b->lead; i++)
        if (b->mem[i] != guard_byte(i))
            fail_msg("guard byte %zu before the buffer overwritten", i);
    for (size_t i = 0; i < GUARD; i++)
        if (b->mem[b->lead + b->bytes + i] != guard_byte(b->lead + i))
            fail_msg("guard byte %zu after the buffer overwritten", i);
}

/* The host appends a new token's K/V rows at `slot` of every head. */
static void host_append(host_buf *b, uint32_t slot, test_rng *r)
{
    for (uint32_t g = 0; g < b->n_kv_heads; g++)
        fill_bits(b->mem + row_offset(b, g, slot), b->row_len,
                  b->view.dtype, r);
}

/* ---- library state of a layer ---- */

/* Kept lists, positions and scores of one layer, copied before compaction;
 * src[i]: the slot that slot i holds afterwards. */
typedef struct lane_copy {
    uint32_t n, n_keep;
    uint32_t *keep, *src;
    int32_t *pos;
    float *scores;
} lane_copy;

static void capture_lane(const kf_cache *c, int layer, int g, lane_copy *lc)
{
    const uint32_t *keep;
    const int32_t *pos;
    const float *scores;
    assert_int_equal(kf_kept_slots(c, layer, g, &keep, &lc->n_keep), KF_OK);
    assert_int_equal(kf_slot_positions(c, layer, g, &pos, &lc->n), KF_OK);
    uint32_t n2;
    assert_int_equal(kf_slot_scores(c, layer, g, &scores, &n2), KF_OK);
    assert_int_equal(n2, lc->n);
    assert_true(lc->n_keep >= 1 && lc->n_keep <= lc->n);
    lc->keep = malloc(lc->n_keep * sizeof *lc->keep);
    lc->pos = malloc(lc->n * sizeof *lc->pos);
    lc->scores = malloc(lc->n * sizeof *lc->scores);
    assert_non_null(lc->keep);
    assert_non_null(lc->pos);
    assert_non_null(lc->scores);
    memcpy(lc->keep, keep, lc->n_keep * sizeof *keep);
    memcpy(lc->pos, pos, lc->n * sizeof *pos);
    memcpy(lc->scores, scores, lc->n * sizeof *scores);
    /* a keep list is strictly ascending and inside the layer */
    for (uint32_t i = 0; i < lc->n_keep; i++) {
        assert_true(lc->keep[i] < lc->n);
        if (i)
            assert_true(lc->keep[i] > lc->keep[i - 1]);
    }
    kf_config cfg;
    assert_int_equal(kf_cache_config(c, &cfg), KF_OK);
    lc->src = malloc(lc->n_keep * sizeof *lc->src);
    assert_non_null(lc->src);
    test_compact_sources(lc->keep, lc->n_keep, cfg.slot_order, lc->src);
}

/* After compaction the lane holds exactly the kept slots, in order, with
 * their positions and (bit-identical) scores. */
static void check_lane_moved(const kf_cache *c, int layer, int g,
                             const lane_copy *lc)
{
    const int32_t *pos;
    const float *scores;
    uint32_t n;
    assert_int_equal(kf_slot_count(c, layer, g, &n), KF_OK);
    assert_int_equal(n, lc->n_keep);
    assert_int_equal(kf_slot_positions(c, layer, g, &pos, &n), KF_OK);
    assert_int_equal(kf_slot_scores(c, layer, g, &scores, &n), KF_OK);
    for (uint32_t i = 0; i < n; i++) {
        assert_int_equal(pos[i], lc->pos[lc->src[i]]);
        if (memcmp(&scores[i], &lc->scores[lc->src[i]], sizeof(float)))
            fail_msg("layer %d head %d: score of slot %u did not move with "
                     "it", layer, g, i);
    }
    const uint32_t *keep;
    uint32_t nk;
    assert_int_equal(kf_kept_slots(c, layer, g, &keep, &nk), KF_ESTATE);
}

static void free_lane(lane_copy *lc)
{
    free(lc->keep);
    free(lc->src);
    free(lc->pos);
    free(lc->scores);
}

/* ---- one checked compaction ---- */

enum { PASS_K = 1, PASS_V = 2 };

/* Expected buffer: the copy taken before, with row i of head g replaced by
 * row src[i] of head g of that copy. Everything else, padding, rows past
 * the new count and guards included, stays. */
static void check_buffer(const host_buf *b, const uint8_t *before,
                         const lane_copy *lanes, int moved)
{
    size_t total = b->lead + b->bytes + GUARD;
    uint8_t *expect = malloc(total);
    assert_non_null(expect);
    memcpy(expect, before, total);
    if (moved)
        for (uint32_t g = 0; g < b->n_kv_heads; g++)
            for (uint32_t i = 0; i < lanes[g].n_keep; i++)
                memcpy(expect + row_offset(b, g, i),
                       before + row_offset(b, g, lanes[g].src[i]),
                       row_bytes(b));
    assert_guards(b);
    if (memcmp(expect, b->mem, total)) {
        size_t at = 0;
        while (expect[at] == b->mem[at])
            at++;
        fail_msg("%s buffer (rows of %zu bytes) differs from the "
                 "expectation at byte %zu of the data (%s)",
                 dtype_name(b->view.dtype), row_bytes(b), at - b->lead,
                 moved ? "compacted" : "not passed");
    }
    free(expect);
}

/* Compacts `layer` with the views in `pass` and checks buffers and
 * library state against copies taken before. Buffers not passed must not
 * change at all. Returns the new slot count. */
static uint32_t compact_checked(kf_cache *c, int layer, host_buf *k,
                                host_buf *v, unsigned pass)
{
    kf_config cfg;
    assert_int_equal(kf_cache_config(c, &cfg), KF_OK);
    lane_copy *lanes = calloc(cfg.n_kv_heads, sizeof *lanes);
    assert_non_null(lanes);
    for (uint32_t g = 0; g < cfg.n_kv_heads; g++) {
        capture_lane(c, layer, (int)g, &lanes[g]);
        assert_int_equal(lanes[g].n_keep, lanes[0].n_keep);
        assert_int_equal(lanes[g].n, lanes[0].n);
    }
    host_buf *bufs[2] = { k, v };
    uint8_t *before[2] = { NULL, NULL };
    for (int i = 0; i < 2; i++) {
        if (!bufs[i])
            continue;
        bufs[i]->view.n_slots = lanes[0].n;
        size_t total = bufs[i]->lead + bufs[i]->bytes + GUARD;
        before[i] = malloc(total);
        assert_non_null(before[i]);
        memcpy(before[i], bufs[i]->mem, total);
    }
    const kf_kv_view *kv = k && (pass & PASS_K) ? &k->view : NULL;
    const kf_kv_view *vv = v && (pass & PASS_V) ? &v->view : NULL;
    assert_int_equal(kf_compact(c, layer, kv, vv), KF_OK);

    for (int i = 0; i < 2; i++) {
        if (!bufs[i])
            continue;
        int moved = (pass & (i == 0 ? PASS_K : PASS_V)) != 0;
        check_buffer(bufs[i], before[i], lanes, moved);
        free(before[i]);
    }
    uint32_t n_keep = lanes[0].n_keep;
    for (uint32_t g = 0; g < cfg.n_kv_heads; g++) {
        check_lane_moved(c, layer, (int)g, &lanes[g]);
        free_lane(&lanes[g]);
    }
    free(lanes);
    return n_keep;
}

/* ---- scenarios: prefill, then decode steps, every compaction checked ---- */

typedef struct scenario {
    uint32_t layers, heads, kv_heads, head_dim, capacity;
    kf_policy policy;
    kf_rule rule;
    kf_granularity granularity;
    uint32_t budget_tokens; /* 0: the default ratio budget 0.5 */
    uint32_t threads;       /* 0: one */
    uint32_t prompt;
    uint32_t decode_steps;
    kv_layout layout;
    kv_layout v_layout;     /* V's, when v_own_layout (else layout) */
    int v_own_layout;
    unsigned pass;          /* PASS_K | PASS_V */
    uint64_t seed;
    kf_slot_order order;
    uint32_t evict_interval;
} scenario;

/* A GQA model (4 heads on 2 KV heads), per-KV-head selection, f32
 * [head][token][dim], 32-token prompt (k = 16, w = 4), 3 decode steps. */
static scenario base_scenario(void)
{
    scenario s;
    memset(&s, 0, sizeof s);
    s.layers = 2;
    s.heads = 4;
    s.kv_heads = 2;
    s.head_dim = 8;
    s.capacity = 40;
    s.policy = KF_POLICY_KEYFORMER;
    s.rule = KF_RULE_DYNAMIC;
    s.granularity = KF_GRANULARITY_KV_HEAD;
    s.prompt = 32;
    s.decode_steps = 3;
    s.layout.dtype = KF_DTYPE_F32;
    s.pass = PASS_K | PASS_V;
    s.seed = 1;
    return s;
}

static kf_config scenario_config(const scenario *s)
{
    kf_config cfg = test_config(s->layers, s->heads, s->kv_heads, s->head_dim,
                                s->capacity);
    cfg.policy = s->policy;
    cfg.rule = s->rule;
    cfg.granularity = s->granularity;
    cfg.n_threads = s->threads ? s->threads : 1;
    cfg.seed = s->seed;
    cfg.slot_order = s->order;
    cfg.evict_interval = s->evict_interval;
    if (s->budget_tokens) {
        cfg.budget_tokens = s->budget_tokens;
        cfg.budget_ratio = 0.0;
    }
    return cfg;
}

static float *logits_buffer(const scenario *s)
{
    float *buf = malloc((size_t)s->heads * s->capacity * s->capacity
                        * sizeof *buf);
    assert_non_null(buf);
    return buf;
}

static void select_all(kf_cache *c, const scenario *s)
{
    if (s->granularity == KF_GRANULARITY_UNIFORM) {
        assert_int_equal(kf_select(c, KF_ALL_LAYERS), KF_OK);
        return;
    }
    for (int l = 0; l < (int)s->layers; l++)
        assert_int_equal(kf_select(c, l), KF_OK);
}

static void run_scenario(const scenario *s)
{
    test_rng r;
    test_rng_seed(&r, s->seed);
    kf_config cfg = scenario_config(s);
    kf_cache *c = NULL;
    assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
    host_buf *k = calloc(s->layers, sizeof *k);
    host_buf *v = calloc(s->layers, sizeof *v);
    assert_non_null(k);
    assert_non_null(v);
    for (uint32_t l = 0; l < s->layers; l++) {
        host_init(&k[l], &cfg, &s->layout, &r);
        host_init(&v[l], &cfg, s->v_own_layout ? &s->v_layout : &s->layout,
                  &r);
    }
    float *logits = logits_buffer(s);

    /* prefill: the host wrote the prompt's K/V rows already (random) */
    for (int l = 0; l < (int)s->layers; l++)
        assert_int_equal(test_observe(c, l, logits, s->prompt, 1, &r),
                         KF_OK);
    select_all(c, s);
    for (int l = 0; l < (int)s->layers; l++)
        compact_checked(c, l, &k[l], &v[l], s->pass);

    /* decode: append a row, observe it, select, compact */
    for (uint32_t step = 0; step < s->decode_steps; step++) {
        for (int l = 0; l < (int)s->layers; l++) {
            uint32_t n;
            assert_int_equal(kf_slot_count(c, l, 0, &n), KF_OK);
            assert_true(n < s->capacity);
            host_append(&k[l], n, &r);
            host_append(&v[l], n, &r);
            assert_int_equal(test_observe(c, l, logits, 1, 1, &r), KF_OK);
        }
        select_all(c, s);
        for (int l = 0; l < (int)s->layers; l++)
            compact_checked(c, l, &k[l], &v[l], s->pass);
    }

    free(logits);
    for (uint32_t l = 0; l < s->layers; l++) {
        host_free(&k[l]);
        host_free(&v[l]);
    }
    free(k);
    free(v);
    kf_cache_destroy(&c);
}

static const kf_dtype all_dtypes[] = { KF_DTYPE_F32, KF_DTYPE_F16,
                                       KF_DTYPE_BF16 };

/* ---- tests ---- */

static void test_dtypes_head_major(void **state)
{
    (void)state;
    for (int d = 0; d < 3; d++) {
        scenario s = base_scenario();
        s.layout.dtype = all_dtypes[d];
        s.seed = 10 + (uint64_t)d;
        run_scenario(&s);
    }
}

static void test_dtypes_token_major(void **state)
{
    (void)state;
    for (int d = 0; d < 3; d++) {
        scenario s = base_scenario();
        s.layout.dtype = all_dtypes[d];
        s.layout.token_major = 1;
        s.seed = 20 + (uint64_t)d;
        run_scenario(&s);
    }
}

static void test_padded_strides(void **state)
{
    (void)state;
    for (int d = 0; d < 3; d++)
        for (int major = 0; major < 2; major++) {
            scenario s = base_scenario();
            s.layout.dtype = all_dtypes[d];
            s.layout.token_major = major;
            s.layout.pad_row = 3;              /* token_stride > head_dim */
            s.layout.pad_token = major ? 5 : 0;
            s.seed = 30 + (uint64_t)(d * 2 + major);
            run_scenario(&s);
        }
}

/* Per-KV-head selection lets the two KV heads of a GQA layer keep
 * different slots, and each head's rows move by its own list; per-layer
 * selection gives both heads one list. */
static void test_gqa_heads_keep_different_slots(void **state)
{
    (void)state;
    const kf_granularity grans[] = { KF_GRANULARITY_KV_HEAD,
                                     KF_GRANULARITY_LAYER };
    for (int gi = 0; gi < 2; gi++)
        for (int major = 0; major < 2; major++) {
            scenario s = base_scenario();
            s.granularity = grans[gi];
            s.layout.token_major = major;
            s.layout.dtype = KF_DTYPE_BF16;
            kf_config cfg = scenario_config(&s);
            test_rng r;
            test_rng_seed(&r, 40);
            kf_cache *c = NULL;
            assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
            host_buf k, v;
            host_init(&k, &cfg, &s.layout, &r);
            host_init(&v, &cfg, &s.layout, &r);
            float *logits = logits_buffer(&s);
            assert_int_equal(test_observe(c, 0, logits, s.prompt, 1, &r),
                             KF_OK);
            assert_int_equal(kf_select(c, 0), KF_OK);

            const uint32_t *k0, *k1;
            uint32_t n0, n1;
            assert_int_equal(kf_kept_slots(c, 0, 0, &k0, &n0), KF_OK);
            assert_int_equal(kf_kept_slots(c, 0, 1, &k1, &n1), KF_OK);
            assert_int_equal(n0, 16);
            assert_int_equal(n1, 16);
            int same = !memcmp(k0, k1, n0 * sizeof *k0);
            if (grans[gi] == KF_GRANULARITY_KV_HEAD)
                assert_false(same);
            else
                assert_true(same);
            compact_checked(c, 0, &k, &v, PASS_K | PASS_V);

            free(logits);
            host_free(&k);
            host_free(&v);
            kf_cache_destroy(&c);
        }
}

/* K only, V only, or neither: a buffer not passed is not touched, and the
 * library's state moves the same way in all three cases. */
static void test_partial_views(void **state)
{
    (void)state;
    const unsigned passes[] = { PASS_K, PASS_V, 0 };
    for (int p = 0; p < 3; p++)
        for (int major = 0; major < 2; major++) {
            scenario s = base_scenario();
            s.pass = passes[p];
            s.layout.token_major = major;
            s.layout.dtype = all_dtypes[(p + major) % 3];
            s.seed = 50;
            run_scenario(&s);
        }
}

/* KF_ALL_LAYERS compaction without views moves every layer's positions and
 * scores; host buffers are the host's business and stay as they are. */
static void test_all_layers_library_only(void **state)
{
    (void)state;
    const kf_granularity grans[] = { KF_GRANULARITY_KV_HEAD,
                                     KF_GRANULARITY_LAYER,
                                     KF_GRANULARITY_UNIFORM };
    for (int gi = 0; gi < 3; gi++) {
        scenario s = base_scenario();
        s.layers = 3;
        s.granularity = grans[gi];
        kf_config cfg = scenario_config(&s);
        test_rng r;
        test_rng_seed(&r, 60 + (uint64_t)gi);
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
        float *logits = logits_buffer(&s);

        for (uint32_t step = 0; step < 4; step++) {
            uint32_t rows = step ? 1 : s.prompt;
            for (int l = 0; l < (int)s.layers; l++)
                assert_int_equal(test_observe(c, l, logits, rows, 1, &r),
                                 KF_OK);
            assert_int_equal(kf_select(c, KF_ALL_LAYERS), KF_OK);
            lane_copy lanes[3][2];
            for (int l = 0; l < 3; l++)
                for (int g = 0; g < 2; g++)
                    capture_lane(c, l, g, &lanes[l][g]);
            assert_int_equal(kf_compact(c, KF_ALL_LAYERS, NULL, NULL), KF_OK);
            for (int l = 0; l < 3; l++)
                for (int g = 0; g < 2; g++) {
                    check_lane_moved(c, l, g, &lanes[l][g]);
                    free_lane(&lanes[l][g]);
                }
        }
        free(logits);
        kf_cache_destroy(&c);
    }
}

/* Many decode steps in a row under both eviction rules and both layouts. */
static void test_decode_steps(void **state)
{
    (void)state;
    const kf_rule rules[] = { KF_RULE_DYNAMIC, KF_RULE_REFERENCE };
    for (int ri = 0; ri < 2; ri++)
        for (int major = 0; major < 2; major++) {
            scenario s = base_scenario();
            s.rule = rules[ri];
            s.layout.token_major = major;
            s.layout.dtype = all_dtypes[(ri + major) % 3];
            s.decode_steps = 24;
            s.seed = 70 + (uint64_t)(ri * 2 + major);
            run_scenario(&s);
        }
}

/* Rows of 1, 3 and 5 elements: 2-, 6- and 10-byte rows for 16-bit types. */
static void test_small_and_odd_head_dims(void **state)
{
    (void)state;
    const uint32_t dims[] = { 1, 3, 5 };
    for (int di = 0; di < 3; di++)
        for (int d = 0; d < 3; d++)
            for (int major = 0; major < 2; major++) {
                scenario s = base_scenario();
                s.head_dim = dims[di];
                s.layout.dtype = all_dtypes[d];
                s.layout.token_major = major;
                s.layout.pad_row = (uint32_t)(di & 1);
                s.seed = 80 + (uint64_t)(di * 6 + d * 2 + major);
                run_scenario(&s);
            }
}

/* One step on layer 0: the host writes rows n .. n + rows - 1, the library
 * observes and selects them, and the checked compaction runs. Returns the
 * slot count before the compaction. */
static uint32_t layer0_step(kf_cache *c, host_buf *k, host_buf *v,
                            float *logits, uint32_t rows, test_rng *r)
{
    uint32_t n;
    assert_int_equal(kf_slot_count(c, 0, 0, &n), KF_OK);
    for (uint32_t i = 0; i < rows; i++) {
        host_append(k, n + i, r);
        host_append(v, n + i, r);
    }
    assert_int_equal(test_observe(c, 0, logits, rows, 1, r), KF_OK);
    assert_int_equal(kf_select(c, 0), KF_OK);
    compact_checked(c, 0, k, v, PASS_K | PASS_V);
    return n + rows;
}

/* Nothing evicted: the keep list is the identity and the buffers come out
 * byte for byte as they went in; after the budget fills, eviction starts. */
static void test_identity_keep(void **state)
{
    (void)state;
    for (int major = 0; major < 2; major++) {
        scenario s = base_scenario();
        s.layout.token_major = major;
        s.layout.dtype = all_dtypes[major];
        s.budget_tokens = 16;
        kf_config cfg = scenario_config(&s);
        test_rng r;
        test_rng_seed(&r, 90);
        kf_cache *c = NULL;
        assert_int_equal(kf_cache_create(&c, &cfg), KF_OK);
        host_buf k, v;
        host_init(&k, &cfg, &s.layout, &r);
        host_init(&v, &cfg, &s.layout, &r);
        float *logits = logits_buffer(&s);

        /* a 12-token prompt, then 4 steps up to k = 16: nothing moves */
        for (uint32_t step = 0; step < 5; step++) {
            uint32_t n = layer0_step(c, &k, &v, logits, step ? 1 : 12, &r);
            assert_int_equal(n, 12 + step);
            for (int g = 0; g < 2; g++) {
                const int32_t *pos;
                assert_int_equal(kf_slot_positions(c, 0, g, &pos, &n), KF_OK);
                assert_int_equal(n, 12 + step);
                for (uint32_t i = 0; i < n; i++)
                    assert_int_equal(pos[i], (int32_t)i);
            }
        }
        /* 17 slots: now one is evicted */
        assert_int_equal(layer0_step(c, &k, &v, logits, 1, &r), 17);
        uint32_t n;
        assert_int_equal(kf_slot_count(c, 0, 1, &n), KF_OK);
        assert_int_equal(n, 16);

        free(logits);
        host_free(&k);
        host_free(&v);
        kf_cache_destroy(&c);
    }
}

/* The other policies and granularities drive the same move. */
static void test_policies_and_granularities(void **state)
{
    (void)state;
    const kf_policy policies[] = { KF_POLICY_H2O, KF_POLICY_WINDOW,
                                   KF_POLICY_SINKS, KF_POLICY_FULL };
    for (int p = 0; p < 4; p++) {
        scenario s = base_scenario();
        s.policy = policies[p];
        s.layout.dtype = all_dtypes[p % 3];
        s.layout.token_major = p & 1;
        s.decode_steps = policies[p] == KF_POLICY_FULL ? 6 : 5;
        s.seed = 100 + (uint64_t)p;
        run_scenario(&s);
    }
    for (int major = 0; major < 2; major++) {
        scenario s = base_scenario();
        s.granularity = KF_GRANULARITY_UNIFORM;
        s.layout.token_major = major;
        s.layout.dtype = KF_DTYPE_F16;
        s.seed = 110 + (uint64_t)major;
        run_scenario(&s);
        s.granularity = KF_GRANULARITY_LAYER;
        run_scenario(&s);
    }
    /* MHA and MQA shapes */
    scenario s = base_scenario();
    s.kv_heads = 4;
    run_scenario(&s);
    s.kv_heads = 1;
    s.layout.token_major = 1;
    run_scenario(&s);
}

/* KF_ORDER_ANY: every evicted slot below the kept count is refilled from
 * the end, every dtype and layout, every policy, per-step and batched
 * eviction, several threads. */
static void test_any_order(void **state)
{
    (void)state;
    const kf_policy policies[] = { KF_POLICY_KEYFORMER, KF_POLICY_H2O,
                                   KF_POLICY_WINDOW, KF_POLICY_SINKS };
    for (int d = 0; d < 3; d++)
        for (int major = 0; major < 2; major++) {
            scenario s = base_scenario();
            s.order = KF_ORDER_ANY;
            s.layout.dtype = all_dtypes[d];
            s.layout.token_major = major;
            s.layout.pad_row = major ? 0 : 2;
            s.decode_steps = 6;
            s.seed = 130 + (uint64_t)(d * 2 + major);
            run_scenario(&s);
        }
    for (int p = 0; p < 4; p++)
        for (int rule = 0; rule < 2; rule++) {
            scenario s = base_scenario();
            s.order = KF_ORDER_ANY;
            s.policy = policies[p];
            s.rule = (kf_rule)rule;
            s.granularity = (kf_granularity)((p + rule) % 3);
            s.evict_interval = p % 2 ? 3 : 0;
            s.decode_steps = 7;
            s.seed = 140 + (uint64_t)(p * 2 + rule);
            run_scenario(&s);
        }
    scenario s = base_scenario();
    s.order = KF_ORDER_ANY;
    s.layers = 1;
    s.heads = 8;
    s.kv_heads = 4;
    s.head_dim = 128;
    s.capacity = 520;
    s.prompt = 512;
    s.threads = 4;
    s.decode_steps = 3;
    run_scenario(&s);
}

/* Sizes large enough for the library to split heads over threads. */
static void test_threaded_compaction(void **state)
{
    (void)state;
    for (int major = 0; major < 2; major++) {
        scenario s = base_scenario();
        s.layers = 1;
        s.heads = 8;
        s.kv_heads = 4;
        s.head_dim = 128;
        s.capacity = 520;
        s.prompt = 512; /* k = 256: 256 * 128 * 4 > 65536 */
        s.threads = 4;
        s.decode_steps = 2;
        s.layout.token_major = major;
        s.layout.dtype = all_dtypes[major];
        s.seed = 120 + (uint64_t)major;
        run_scenario(&s);
    }
}

/* ---- quantized caches: opaque rows of any byte size ---- */

/* Odd row sizes: 1 and 3 bytes, one q8_0 block (34 = 2 + 32), 66 bytes
 * and 4098 (past the 4 KiB the SIMD kernels hand to memcpy), in both
 * layouts, padded or not, at odd addresses, in both slot orders. */
static void test_row_bytes_sizes(void **state)
{
    (void)state;
    const size_t sizes[] = { 1, 3, 34, 66, 4098 };
    for (int si = 0; si < 5; si++)
        for (int major = 0; major < 2; major++)
            for (int order = 0; order < 2; order++) {
                scenario s = base_scenario();
                s.layout.dtype = KF_DTYPE_ROW_BYTES;
                s.layout.row_bytes = sizes[si];
                s.layout.token_major = major;
                s.layout.pad_row = (uint32_t)(si & 1) * 5;
                s.layout.pad_token = major ? 3 : 0;
                s.layout.misalign = (uint32_t)(2 * si + major + 1) % 64;
                s.order = (kf_slot_order)order;
                s.evict_interval = order ? 3 : 0;
                s.decode_steps = 5;
                s.seed = 200 + (uint64_t)(si * 4 + major * 2 + order);
                run_scenario(&s);
            }
}

/* K and V are separate views, each with its own dtype and row size: q8_0
 * keys (head_dim 128: 4 blocks, 136 bytes) beside q4_0 values (72 bytes)
 * or f16 values, in different layouts; K or V alone. */
static void test_row_bytes_mixed_views(void **state)
{
    (void)state;
    for (int variant = 0; variant < 4; variant++)
        for (int order = 0; order < 2; order++) {
            scenario s = base_scenario();
            s.head_dim = 128;
            s.layout.dtype = KF_DTYPE_ROW_BYTES;
            s.layout.row_bytes = 136;
            s.layout.misalign = 1;
            s.v_own_layout = 1;
            s.v_layout.token_major = 1;
            if (variant == 1) {
                s.v_layout.dtype = KF_DTYPE_F16;
            } else {
                s.v_layout.dtype = KF_DTYPE_ROW_BYTES;
                s.v_layout.row_bytes = 72;
                s.v_layout.misalign = 3;
            }
            s.pass = variant == 2 ? PASS_K : variant == 3 ? PASS_V
                                                          : PASS_K | PASS_V;
            s.order = (kf_slot_order)order;
            s.decode_steps = 4;
            s.seed = 240 + (uint64_t)(variant * 2 + order);
            run_scenario(&s);
        }
}

/* Enough bytes moved for the library to split heads over threads. */
static void test_row_bytes_threaded(void **state)
{
    (void)state;
    for (int order = 0; order < 2; order++) {
        scenario s = base_scenario();
        s.layers = 1;
        s.heads = 8;
        s.kv_heads = 4;
        s.head_dim = 128;
        s.capacity = 520;
        s.prompt = 512; /* k = 256: 256 rows * 4098 bytes * 4 heads * 2 */
        s.threads = 4;
        s.decode_steps = 2;
        s.layout.dtype = KF_DTYPE_ROW_BYTES;
        s.layout.row_bytes = 4098;
        s.layout.token_major = order;
        s.layout.misalign = 7;
        s.order = (kf_slot_order)order;
        s.seed = 260 + (uint64_t)order;
        run_scenario(&s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dtypes_head_major),
        cmocka_unit_test(test_dtypes_token_major),
        cmocka_unit_test(test_padded_strides),
        cmocka_unit_test(test_gqa_heads_keep_different_slots),
        cmocka_unit_test(test_partial_views),
        cmocka_unit_test(test_all_layers_library_only),
        cmocka_unit_test(test_decode_steps),
        cmocka_unit_test(test_small_and_odd_head_dims),
        cmocka_unit_test(test_identity_keep),
        cmocka_unit_test(test_policies_and_granularities),
        cmocka_unit_test(test_threaded_compaction),
        cmocka_unit_test(test_any_order),
        cmocka_unit_test(test_row_bytes_sizes),
        cmocka_unit_test(test_row_bytes_mixed_views),
        cmocka_unit_test(test_row_bytes_threaded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
