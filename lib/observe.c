/* kf_observe_logits: append a call's rows as new slots and accumulate their
 * scores. Work is split over query heads (several rows) or KV heads (one
 * row), each writing only its own accumulator; the group sums then run in a
 * fixed head order, so the result is the same for any thread count.
 * Nothing is committed before every row has been checked, so a failed call
 * changes nothing. */
#include <string.h>

#include "internal.h"

int kf_check_logits_view(const kf_cache *c, const kf_layer *l,
                         const kf_logits_view *v, uint32_t n_heads)
{
    if (v->flags & ~KF_LOGITS_CAUSAL)
        return KF_EINVAL;
    if (!v->n_rows)
        return KF_EINVAL;
    if (!v->data && kf_policy_scores(c->cfg.policy))
        return KF_EINVAL;
    if (v->n_slots != (uint64_t)l->n_slots + v->n_rows)
        return KF_EMISMATCH;
    if (v->n_slots > c->cfg.capacity
        || (int64_t)l->next_pos + v->n_rows > INT32_MAX)
        return KF_ERANGE;
    if (!v->data)
        return KF_OK;
    size_t bytes;
    return kf_check_rows(v->data, sizeof(float), v->n_slots, v->row_stride,
                         v->n_rows, v->head_stride, n_heads, v->bytes, &bytes);
}

/* Keyformer's kernel for `rows` rows: the exact noise, or the table's
 * (KF_NOISE_TABLE). */
static int score_keyformer(const kf_cache *c, float *acc, const float *x,
                           size_t stride, uint32_t rows, const int32_t *pos,
                           uint32_t n, const kf_noise_key *keys, float inv_tau,
                           float *scratch, uint32_t *failed, const float *next)
{
    if (c->gumbel_table)
        return c->dsp.score_table(acc, x, stride, rows, pos, n, keys, inv_tau,
                                  c->gumbel_table, scratch, failed, next);
    return c->dsp.score_gumbel(acc, x, stride, rows, pos, n, keys, inv_tau,
                               scratch, failed, next);
}

/* One row's scores into acc: the policy's kernel with the row's noise key
 * and temperature. Row i is the i-th new row of the current call. */
int kf_score_row(const kf_cache *c, uint32_t layer, uint32_t h, uint32_t i,
                 const float *x, uint32_t visible, float *acc, float *scratch,
                 const float *next)
{
    const kf_layer *l = &c->layers[layer];
    if (i < c->call_first_row) /* before the observation window */
        return KF_ROW_OK;
    if (c->cfg.policy == KF_POLICY_KEYFORMER) {
        const int32_t *pos = c->positions + kf_lane(c, layer, h / c->group);
        float inv_tau = 1.0f / kf_row_tau(c, l, i);
        kf_noise_key key = kf_noise_row_key(c->cfg.seed, layer, h,
                                            l->next_pos + (int32_t)i);
        uint32_t failed;
        return score_keyformer(c, acc, x, 0, 1, pos, visible, &key, inv_tau,
                               scratch, &failed, next);
    }
    return c->dsp.score_softmax(acc, x, visible, scratch);
}

int kf_score_view_head(kf_cache *c, uint32_t layer, uint32_t h,
                       const kf_logits_view *v, uint32_t vh, float *acc,
                       float *scratch)
{
    uint32_t n_old = v->n_slots - v->n_rows;
    int causal = v->flags & KF_LOGITS_CAUSAL;
    for (uint32_t i = c->call_first_row; i < v->n_rows; i++) {
        const float *x = v->data + vh * v->head_stride + i * v->row_stride;
        uint32_t visible = causal ? n_old + i + 1 : v->n_slots;
        const float *next = i + 1 < v->n_rows ? x + v->row_stride : NULL;
        int status = kf_score_row(c, layer, h, i, x, visible, acc, scratch,
                                  next);
        if (status)
            return status;
    }
    return KF_ROW_OK;
}

/* kf_head_score_fn for host logits: every row of head h added to acc. */
static int score_head(kf_cache *c, uint32_t layer, uint32_t h,
                      const void *ctx, int tid, float *acc, float *scratch)
{
    (void)tid;
    return kf_score_view_head(c, layer, h, ctx, h, acc, scratch);
}

/* kf_group_rows_fn for host logits: KV head g's first query head. */
static const float *group_rows(kf_cache *c, uint32_t g, const void *ctx,
                               int tid, size_t *stride)
{
    const kf_logits_view *v = ctx;
    (void)tid;
    *stride = v->head_stride;
    return v->data + (size_t)g * c->group * v->head_stride;
}

/* Keyformer, one row per head: the rows of KV head g's query heads, the
 * m-th at x + m * stride, through one kernel call per score_rows heads
 * (the same bits as one call per head). Each head's KF_ROW_* goes to
 * head_status, heads after a failure count as KF_ROW_OK. */
static int score_group_rows(kf_cache *c, uint32_t layer, uint32_t g,
                            const float *x, size_t stride, uint32_t n,
                            float *acc, float *scratch)
{
    const kf_layer *l = &c->layers[layer];
    const int32_t *pos = c->positions + kf_lane(c, layer, g);
    float inv_tau = 1.0f / kf_row_tau(c, l, 0);
    uint32_t h0 = g * c->group;
    kf_noise_key keys[KF_SCORE_ROWS_MAX];
    for (uint32_t m = 0; m < c->group; m++)
        c->head_status[h0 + m] = KF_ROW_OK;
    for (uint32_t m0 = 0; m0 < c->group; m0 += c->score_rows) {
        uint32_t rows = c->group - m0 < c->score_rows ? c->group - m0
                                                      : c->score_rows;
        for (uint32_t r = 0; r < rows; r++)
            keys[r] = kf_noise_row_key(c->cfg.seed, layer, h0 + m0 + r,
                                       l->next_pos);
        uint32_t failed;
        int status = score_keyformer(c, acc, x + m0 * stride, stride, rows,
                                     pos, n, keys, inv_tau, scratch, &failed,
                                     NULL);
        if (status) {
            c->head_status[h0 + m0 + failed] = status;
            return 1;
        }
    }
    return 0;
}

/* Grouped (one row per call): a KV head's query heads, in order, add into
 * one accumulator, head_acc[g]. Per head: the accumulators of the general
 * path start at 0 and commit sums them in head order; with one row each
 * holds exactly that row's values (0 + y = y), so both paths perform the
 * same additions and give the same bits, with one clear and one commit
 * pass per KV head instead of one per query head. */
int kf_score_unit(kf_cache *c, uint32_t layer, uint32_t u,
                  kf_head_score_fn score, kf_group_rows_fn group_rows,
                  const void *ctx, int tid, float *scratch, uint32_t n_slots,
                  int grouped)
{
    float *acc = c->head_acc + (size_t)u * c->cfg.capacity;
    memset(acc, 0, n_slots * sizeof *acc);
    if (!grouped)
        return c->head_status[u] = score(c, layer, u, ctx, tid, acc, scratch);
    if (group_rows && c->cfg.policy == KF_POLICY_KEYFORMER) {
        size_t stride;
        const float *x = group_rows(c, u, ctx, tid, &stride);
        if (x)
            return score_group_rows(c, layer, u, x, stride, n_slots, acc,
                                    scratch);
    }
    int failed = 0; /* the call fails: skip the group's later heads */
    for (uint32_t h = u * c->group; h < (u + 1) * c->group; h++) {
        c->head_status[h] = failed ? KF_ROW_OK
                                   : score(c, layer, h, ctx, tid, acc, scratch);
        failed |= c->head_status[h];
    }
    return failed;
}

int kf_heads_status(const kf_cache *c, uint32_t h0, uint32_t h1)
{
    for (uint32_t h = h0; h < h1; h++)
        if (c->head_status[h])
            return kf_row_error(c->head_status[h]);
    return KF_OK;
}

int kf_score_heads(kf_cache *c, uint32_t layer, kf_head_score_fn score,
                   kf_group_rows_fn group_rows, const void *ctx,
                   uint32_t n_slots, int grouped, int parallel)
{
    uint32_t units = grouped ? c->cfg.n_kv_heads : c->cfg.n_heads;

    /* Serial work runs outside OpenMP: a region whose if clause is false
     * still costs libgomp about 1.3 us (a team of one), and a decode step
     * of a 32-layer model opens up to 96 regions (observe, select,
     * compact). dynamic: a thread that starts late (woken from a passive
     * wait, or on a busy core) takes fewer units; each unit writes only
     * its own accumulator, so the bits do not depend on who ran what
     * (observe on 2 threads, llama3-8b 4K step: 1.81-1.92 -> 1.54-1.62 ms
     * with OMP_WAIT_POLICY=passive) */
    if (parallel && c->n_threads > 1) {
#pragma omp parallel for num_threads(c->n_threads) schedule(dynamic, 1)
        for (uint32_t u = 0; u < units; u++) {
            int tid = kf_thread_id();
            kf_score_unit(c, layer, u, score, group_rows, ctx, tid,
                          c->row_scratch + (size_t)tid * c->scratch_stride,
                          n_slots, grouped);
        }
    } else {
        for (uint32_t u = 0; u < units; u++)
            kf_score_unit(c, layer, u, score, group_rows, ctx, 0,
                          c->row_scratch, n_slots, grouped);
    }
    /* the lowest failing head decides the status: the same for any
     * thread count and either path */
    return kf_heads_status(c, 0, c->cfg.n_heads);
}

void kf_observe_stage(kf_cache *c, uint32_t layer, uint32_t n_rows)
{
    const kf_layer *l = &c->layers[layer];
    for (uint32_t g = 0; g < c->cfg.n_kv_heads; g++) {
        int32_t *pos = c->positions + kf_lane(c, layer, g);
        for (uint32_t i = 0; i < n_rows; i++)
            pos[l->n_slots + i] = l->next_pos + (int32_t)i;
    }
    kf_policy_stage(c, l, n_rows);
}

/* dst[j] += src[j]; the arrays do not overlap */
static void add_into(float *restrict dst, const float *restrict src,
                     uint32_t n)
{
    for (uint32_t j = 0; j < n; j++)
        dst[j] += src[j];
}

void kf_observe_commit(kf_cache *c, uint32_t layer, uint32_t n_rows,
                       int grouped)
{
    kf_layer *l = &c->layers[layer];
    uint32_t n_old = l->n_slots, n_slots = n_old + n_rows;
    uint32_t accs = grouped ? 1 : c->group; /* accumulators per KV head */
    /* obs_window: a prompt call of at least W rows replaces the scores */
    uint32_t from = c->call_replaces ? 0 : n_old;
    if (c->call_replaces)
        l->score_from = l->next_pos + (int32_t)c->call_first_row;
    for (uint32_t g = 0; g < c->cfg.n_kv_heads; g++) {
        float *s = c->scores + kf_lane(c, layer, g);
        memset(s + from, 0, (n_slots - from) * sizeof *s);
        if (!kf_policy_scores(c->cfg.policy))
            continue;
        /* slot scores += the group's head sums, heads in order: the sums
         * gather in the first accumulator, ((a0 + a1) + a2) + ..., then
         * one add per slot (simple loops over disjoint arrays, which the
         * compiler vectorises) */
        float *acc = c->head_acc + (size_t)g * accs * c->cfg.capacity;
        for (uint32_t m = 1; m < accs; m++)
            add_into(acc, acc + (size_t)m * c->cfg.capacity, n_slots);
        add_into(s, acc, n_slots);
    }
    l->n_slots = n_slots;
    l->next_pos += (int32_t)n_rows;
    if (!l->in_prompt)
        l->steps += n_rows;
    l->state = KF_LAYER_OBSERVED;
    c->removed_valid = 0;
}

int kf_observe_logits(kf_cache *c, int layer, const kf_logits_view *v)
{
    if (!c || !v)
        return KF_EINVAL;
    if (!kf_layer_ok(c, layer))
        return KF_ERANGE;
    kf_layer *l = &c->layers[layer];
    if (l->state == KF_LAYER_SELECTED || kf_round_open(c))
        return KF_ESTATE;
    int status = kf_check_logits_view(c, l, v, c->cfg.n_heads);
    if (status)
        return status;

    int grouped = v->n_rows == 1;
    kf_observe_stage(c, (uint32_t)layer, v->n_rows);
    if (kf_policy_scores(c->cfg.policy)) {
        long work = (long)v->n_rows * v->n_slots * c->cfg.n_heads;
        status = kf_score_heads(c, (uint32_t)layer, score_head, group_rows, v,
                                v->n_slots, grouped, work > 32768);
        if (status)
            return status;
    }
    kf_observe_commit(c, (uint32_t)layer, v->n_rows, grouped);
    return KF_OK;
}
