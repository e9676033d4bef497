/* kf_observe_qk: kf_observe_logits for hosts whose fused attention never
 * materialises the logits. The library computes scale * q.k for the rows of
 * the call from the host's queries and cached keys, a block of rows at a
 * time, and feeds each row to the same scoring as kf_observe_logits.
 *
 * Memory: nothing is allocated here. Each thread owns a block of
 * qk_rows x capacity logits and a tile of KF_QK_TILE keys converted to fp32,
 * both carved at kf_cache_create.
 *
 * Determinism: each query head is computed by one thread from start to end,
 * and every dot product is the dot_rows kernel (lib/dsp.h: element e into
 * lane e % 16, lanes folded by halves), whose SIMD variants match the C
 * reference bit for bit, so the logits depend neither on the thread count
 * nor on the instruction set. */
#include <math.h>
#include <string.h>

#include "internal.h"

typedef struct qk_call {
    const kf_query_view *q;
    const kf_kv_view *k;
    float scale;
    uint32_t n_slots; /* slots of the call, the new rows included */
    uint32_t n_old;   /* slots held before the call */
    uint32_t layer;
    int causal;
} qk_call;

static size_t dtype_size(kf_dtype t)
{
    switch (t) {
    case KF_DTYPE_F32: return 4;
    case KF_DTYPE_F16: return 2;
    case KF_DTYPE_BF16: return 2;
    case KF_DTYPE_ROW_BYTES: return 0; /* quantized keys: not readable */
    }
    return 0;
}

static float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* IEEE binary16 to binary32, exact for every input (NaN stays NaN). */
static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: mant * 2^-24, exact in binary32 */
        float v = (float)mant * 0x1p-24f;
        return sign ? -v : v;
    }
    if (exp == 31)
        return f32_from_bits(sign | 0x7f800000u | (mant << 13));
    return f32_from_bits(sign | ((exp + 112) << 23) | (mant << 13));
}

static float bf16_to_f32(uint16_t b)
{
    return f32_from_bits((uint32_t)b << 16);
}

/* Keys j0 .. j0 + n - 1 of KV head g as fp32 rows: the host's own rows for
 * f32, else converted into tile. Returns the first row; *stride gets the
 * elements between rows. */
static const float *key_rows(const kf_kv_view *k, uint32_t g, uint32_t j0,
                             uint32_t n, uint32_t dim, float *tile,
                             size_t *stride)
{
    size_t first = g * k->head_stride + (size_t)j0 * k->token_stride;
    if (k->dtype == KF_DTYPE_F32) {
        *stride = k->token_stride;
        return (const float *)k->data + first;
    }
    const uint16_t *src = (const uint16_t *)k->data + first;
    for (uint32_t t = 0; t < n; t++) {
        const uint16_t *row = src + t * k->token_stride;
        float *dst = tile + (size_t)t * dim;
        if (k->dtype == KF_DTYPE_F16)
            for (uint32_t e = 0; e < dim; e++)
                dst[e] = f16_to_f32(row[e]);
        else
            for (uint32_t e = 0; e < dim; e++)
                dst[e] = bf16_to_f32(row[e]);
    }
    *stride = dim;
    return tile;
}

/* One-row calls: the logits of query heads h .. h + nh - 1 (of one KV
 * head g) into rows 0 .. nh - 1 of block, a tile of keys at a time, so each
 * key row is read (and converted) once for the group instead of once per
 * query head. The same dot_rows calls as the per-head path: same bits. */
static void group_logits(const kf_cache *c, const qk_call *call, uint32_t g,
                         uint32_t h, uint32_t nh, float *block, float *tile)
{
    const kf_query_view *q = call->q;
    uint32_t dim = c->cfg.head_dim, cap = c->cfg.capacity;
    uint32_t cols = call->n_slots; /* a causal single row sees them all */
    for (uint32_t j0 = 0; j0 < cols; j0 += KF_QK_TILE) {
        uint32_t nt = cols - j0 < KF_QK_TILE ? cols - j0 : KF_QK_TILE;
        size_t k_stride;
        const float *keys = key_rows(call->k, g, j0, nt, dim, tile, &k_stride);
        for (uint32_t i = 0; i < nh; i++)
            c->dsp.dot_rows(block + (size_t)i * cap + j0,
                            q->data + (size_t)(h + i) * q->head_stride, keys,
                            k_stride, nt, dim, call->scale);
    }
    /* head_budget: holes hold no token */
    for (uint32_t i = 0; i < nh; i++)
        kf_mask_holes(c, call->layer, g, block + (size_t)i * cap, call->n_old);
}

/* kf_head_score_fn: every row of query head h, a block of rows at a time.
 * A causal row i sees slots 0 .. n_old + i; only those are computed. One-row
 * calls run grouped (kf_score_heads: a KV head's query heads in order, on
 * one thread), so the first head of each chunk of qk_rows heads computes
 * the chunk's logits for the heads after it. */
static int score_head_qk(kf_cache *c, uint32_t layer, uint32_t h,
                         const void *ctx, int tid, float *acc, float *scratch)
{
    const qk_call *call = ctx;
    const kf_query_view *q = call->q;
    uint32_t dim = c->cfg.head_dim, cap = c->cfg.capacity;
    uint32_t g = h / c->group, n_rows = q->n_rows, n_slots = call->n_slots;
    float *block = c->qk_logits + (size_t)tid * c->qk_rows * cap;
    float *tile = c->qk_keys + (size_t)tid * KF_QK_TILE * dim;

    if (n_rows == 1) {
        uint32_t m = h % c->group, first = m - m % c->qk_rows;
        uint32_t nh = c->group - first < c->qk_rows ? c->group - first
                                                    : c->qk_rows;
        if (m == first)
            group_logits(c, call, g, h, nh, block, tile);
        return kf_score_row(c, layer, h, 0, block + (size_t)(m - first) * cap,
                            n_slots, acc, scratch, NULL);
    }

    /* rows before the observation window are not computed */
    for (uint32_t r0 = c->call_first_row; r0 < n_rows; r0 += c->qk_rows) {
        uint32_t nr = n_rows - r0 < c->qk_rows ? n_rows - r0 : c->qk_rows;
        uint32_t cols = call->causal ? call->n_old + r0 + nr : n_slots;
        for (uint32_t j0 = 0; j0 < cols; j0 += KF_QK_TILE) {
            uint32_t nt = cols - j0 < KF_QK_TILE ? cols - j0 : KF_QK_TILE;
            size_t k_stride;
            const float *keys = key_rows(call->k, g, j0, nt, dim, tile,
                                         &k_stride);
            for (uint32_t i = 0; i < nr; i++) {
                uint32_t visible = call->causal ? call->n_old + r0 + i + 1
                                                : n_slots;
                if (visible <= j0)
                    continue;
                uint32_t n = visible - j0 < nt ? visible - j0 : nt;
                const float *qrow =
                    q->data + h * q->head_stride + (size_t)(r0 + i) * q->row_stride;
                c->dsp.dot_rows(block + (size_t)i * cap + j0, qrow, keys,
                                k_stride, n, dim, call->scale);
            }
        }
        for (uint32_t i = 0; i < nr; i++) {
            uint32_t visible = call->causal ? call->n_old + r0 + i + 1 : n_slots;
            kf_mask_holes(c, layer, g, block + (size_t)i * cap, call->n_old);
            int status = kf_score_row(c, layer, h, r0 + i,
                                      block + (size_t)i * cap, visible, acc,
                                      scratch, NULL);
            if (status)
                return status;
        }
    }
    return KF_ROW_OK;
}

/* kf_group_rows_fn: the logits of KV head g's query heads, computed into
 * the thread's block (one-row calls; the group must fit the block). */
static const float *group_rows_qk(kf_cache *c, uint32_t g, const void *ctx,
                                  int tid, size_t *stride)
{
    if (c->group > c->qk_rows)
        return NULL;
    float *block = c->qk_logits + (size_t)tid * c->qk_rows * c->cfg.capacity;
    float *tile = c->qk_keys + (size_t)tid * KF_QK_TILE * c->cfg.head_dim;
    group_logits(c, ctx, g, g * c->group, c->group, block, tile);
    *stride = c->cfg.capacity;
    return block;
}

/* The checks of kf_observe_logits, in the same order, plus the key view's. */
static int check_call(const kf_cache *c, const kf_layer *l,
                      const kf_query_view *q, const kf_kv_view *k)
{
    int scoring = kf_policy_scores(c->cfg.policy);
    if (q->flags & ~KF_LOGITS_CAUSAL)
        return KF_EINVAL;
    if (!q->n_rows)
        return KF_EINVAL;
    if (scoring && (!q->data || !k))
        return KF_EINVAL;
    if (!(q->scale >= 0.0f) || q->scale == INFINITY)
        return KF_EINVAL;
    if (k && (!k->data || !dtype_size(k->dtype)))
        return KF_EINVAL;
    uint64_t n_slots = (uint64_t)l->n_slots + q->n_rows;
    if (k && k->n_slots != n_slots)
        return KF_EMISMATCH;
    if (n_slots > c->cfg.capacity
        || (int64_t)l->next_pos + q->n_rows > INT32_MAX)
        return KF_ERANGE;
    size_t bytes;
    int status;
    if (q->data) {
        status = kf_check_rows(q->data, sizeof(float), c->cfg.head_dim,
                               q->row_stride, q->n_rows, q->head_stride,
                               c->cfg.n_heads, q->bytes, &bytes);
        if (status)
            return status;
    }
    if (k) {
        status = kf_check_rows(k->data, dtype_size(k->dtype), c->cfg.head_dim,
                               k->token_stride, k->n_slots, k->head_stride,
                               c->cfg.n_kv_heads, k->bytes, &bytes);
        if (status)
            return status;
    }
    return KF_OK;
}

int kf_observe_qk(kf_cache *c, int layer, const kf_query_view *q,
                  const kf_kv_view *k)
{
    if (!c || !q)
        return KF_EINVAL;
    if (!kf_layer_ok(c, layer))
        return KF_ERANGE;
    kf_layer *l = &c->layers[layer];
    if (l->state == KF_LAYER_SELECTED || kf_round_open(c))
        return KF_ESTATE;
    int status = check_call(c, l, q, k);
    if (status)
        return status;

    int grouped = q->n_rows == 1;
    kf_observe_stage(c, (uint32_t)layer, q->n_rows);
    if (kf_policy_scores(c->cfg.policy)) {
        qk_call call;
        call.q = q;
        call.k = k;
        call.scale = q->scale != 0.0f
                         ? q->scale
                         : (float)(1.0 / sqrt((double)c->cfg.head_dim));
        call.n_old = l->n_slots;
        call.n_slots = l->n_slots + q->n_rows;
        call.layer = (uint32_t)layer;
        call.causal = (q->flags & KF_LOGITS_CAUSAL) != 0;
        double work = (double)q->n_rows * call.n_slots * c->cfg.n_heads
                      * c->cfg.head_dim;
        status = kf_score_heads(c, (uint32_t)layer, score_head_qk, group_rows_qk,
                                &call, call.n_slots, grouped, work > 262144.0);
        if (status)
            return status;
    }
    kf_observe_commit(c, (uint32_t)layer, q->n_rows, grouped);
    return KF_OK;
}
