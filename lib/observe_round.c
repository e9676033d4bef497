/* kf_observe_begin / kf_observe_kv_head / kf_observe_end: one layer's
 * logits handed over a KV head at a time, possibly from the host's own
 * threads. A KV head's call writes only its own accumulators (head_acc,
 * laid out as kf_observe_logits lays them out), its heads' statuses, its
 * own scratch and its own done flag, so calls for different KV heads never
 * share memory; the end commits exactly what kf_observe_logits commits, bit
 * for bit. */
#include <string.h>

#include "internal.h"

int kf_observe_begin(kf_cache *c, int layer, uint32_t n_rows)
{
    if (!c || !n_rows)
        return KF_EINVAL;
    if (!kf_layer_ok(c, layer))
        return KF_ERANGE;
    const kf_layer *l = &c->layers[layer];
    if (l->state == KF_LAYER_SELECTED || kf_round_open(c))
        return KF_ESTATE;
    if ((uint64_t)l->n_slots + n_rows > c->cfg.capacity
        || (int64_t)l->next_pos + n_rows > INT32_MAX)
        return KF_ERANGE;
    /* the new positions, invisible until the end commits them: the noise
     * of every KV head's call reads them */
    kf_observe_stage(c, (uint32_t)layer, n_rows);
    memset(c->round_done, 0, c->cfg.n_kv_heads);
    c->round_rows = n_rows;
    c->round_layer = layer;
    return KF_OK;
}

/* kf_head_score_fn for a KV head's view: view head h % group. */
static int score_group_head(kf_cache *c, uint32_t layer, uint32_t h,
                            const void *ctx, int tid, float *acc,
                            float *scratch)
{
    (void)tid;
    return kf_score_view_head(c, layer, h, ctx, h % c->group, acc, scratch);
}

/* kf_group_rows_fn for a KV head's view: its first head. */
static const float *group_rows(kf_cache *c, uint32_t g, const void *ctx,
                               int tid, size_t *stride)
{
    const kf_logits_view *v = ctx;
    (void)c;
    (void)g;
    (void)tid;
    *stride = v->head_stride;
    return v->data;
}

/* The query heads of KV head g, as kf_score_heads scores them (its units:
 * the KV head for one-row rounds, else each query head), with g's own
 * scratch. */
static int score_kv_head(kf_cache *c, uint32_t layer, uint32_t g,
                         const kf_logits_view *v)
{
    float *scratch = c->kv_scratch + (size_t)g * c->scratch_stride;
    uint32_t h0 = g * c->group, h1 = h0 + c->group;
    if (v->n_rows == 1)
        kf_score_unit(c, layer, g, score_group_head, group_rows, v, 0,
                      scratch, v->n_slots, 1);
    else
        for (uint32_t h = h0; h < h1; h++)
            if (kf_score_unit(c, layer, h, score_group_head, NULL, v, 0,
                              scratch, v->n_slots, 0))
                break; /* later heads keep old statuses; none is read */
    return kf_heads_status(c, h0, h1);
}

int kf_observe_kv_head(kf_cache *c, int layer, int kv_head,
                       const kf_logits_view *v)
{
    if (!c || !v)
        return KF_EINVAL;
    if (!kf_layer_ok(c, layer) || kv_head < 0
        || (uint32_t)kv_head >= c->cfg.n_kv_heads)
        return KF_ERANGE;
    if (c->round_layer != layer || c->round_done[kv_head])
        return KF_ESTATE;
    const kf_layer *l = &c->layers[layer];
    int status = kf_check_logits_view(c, l, v, c->group);
    if (status)
        return status;
    if (v->n_rows != c->round_rows)
        return KF_EMISMATCH;
    if (kf_policy_scores(c->cfg.policy)) {
        status = score_kv_head(c, (uint32_t)layer, (uint32_t)kv_head, v);
        if (status)
            return status;
    }
    c->round_done[kv_head] = 1;
    return KF_OK;
}

int kf_observe_end(kf_cache *c, int layer)
{
    if (!c)
        return KF_EINVAL;
    if (!kf_layer_ok(c, layer))
        return KF_ERANGE;
    if (c->round_layer != layer)
        return KF_ESTATE;
    c->round_layer = -1;
    for (uint32_t g = 0; g < c->cfg.n_kv_heads; g++)
        if (!c->round_done[g])
            return KF_ESTATE; /* discarded: the layer stays as it was */
    kf_observe_commit(c, (uint32_t)layer, c->round_rows, c->round_rows == 1);
    return KF_OK;
}
