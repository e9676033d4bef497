/* kf_observe_begin / kf_observe_kv_head / kf_observe_end: one layer's
 * logits handed over a KV head at a time, possibly from the host's own
 * threads. A KV head's call writes only its own accumulators (head_acc,
 * laid out as kf_observe_logits lays them out), its own scratch and its own
 * done flag, so calls for different KV heads never share memory; the end
 * commits exactly what kf_observe_logits commits, bit for bit. */
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

/* The query heads of KV head g, in order: into one accumulator (one-row
 * rounds) or one per head, zeroed first, as kf_score_heads does. */
static int score_kv_head(kf_cache *c, uint32_t layer, uint32_t g,
                         const kf_logits_view *v)
{
    size_t cap = c->cfg.capacity;
    uint32_t group = c->group;
    int grouped = v->n_rows == 1;
    float *scratch = c->kv_scratch + (size_t)g * cap;
    float *acc = c->head_acc + (size_t)g * cap;
    if (grouped)
        memset(acc, 0, v->n_slots * sizeof *acc);
    for (uint32_t m = 0; m < group; m++) {
        uint32_t h = g * group + m;
        if (!grouped) {
            acc = c->head_acc + (size_t)h * cap;
            memset(acc, 0, v->n_slots * sizeof *acc);
        }
        int status = kf_score_view_head(c, layer, h, v, m, acc, scratch);
        if (status)
            return kf_row_error(status);
    }
    return KF_OK;
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
