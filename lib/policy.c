/* The scoring options beyond the paper (doc/algorithm.md, "Beyond the
 * paper"): the observation window of the prompt (obs_window), pooling of
 * the prompt's scores (pool_kernel, pool_mode) and ranking by the score per
 * query row that could see the slot (score_norm). Each is off at zero and
 * then changes nothing: the paper's path runs as before. */
#include <math.h>
#include <string.h>

#include "internal.h"

void kf_policy_stage(kf_cache *c, const kf_layer *l, uint32_t n_rows)
{
    uint32_t w = c->cfg.obs_window;
    int on = w && l->in_prompt && kf_policy_scores(c->cfg.policy)
             && n_rows >= w;
    c->call_first_row = on ? n_rows - w : 0;
    c->call_replaces = (uint8_t)on;
}

void kf_rank_fill(float *out, const float *key, const int32_t *pos,
                  uint32_t n, int32_t lo, int32_t hi)
{
    /* a bit select, not a branch: under KF_ORDER_ANY the positions are in
     * no order, and a branch on them mispredicted often enough to cost
     * more than the rest of a decode step's selection (llama3-8b, 4K) */
    for (uint32_t j = 0; j < n; j++) {
        uint32_t bits, held = 0u - (uint32_t)((pos[j] < lo) | (pos[j] >= hi));
        memcpy(&bits, key + j, sizeof bits);
        bits = (bits & ~held) | (0x7f800000u & held); /* +inf */
        memcpy(out + j, &bits, sizeof bits);
    }
}

/* One lane's n scores pooled in place over a kernel of 2r + 1 slots,
 * clipped at both ends; src (n floats, not s) receives the unpooled
 * copy. The mean sums left to right and divides by the slots in reach. */
static void pool_lane(float *s, float *src, uint32_t n, uint32_t r,
                      uint32_t mode)
{
    memcpy(src, s, (size_t)n * sizeof *s);
    for (uint32_t j = 0; j < n; j++) {
        uint32_t lo = j > r ? j - r : 0;
        uint32_t hi = n - j > r ? j + r + 1 : n; /* j + r + 1 <= n */
        float v = src[lo];
        if (mode == KF_POOL_MAX) {
            for (uint32_t i = lo + 1; i < hi; i++)
                v = src[i] > v ? src[i] : v;
        } else {
            for (uint32_t i = lo + 1; i < hi; i++)
                v += src[i];
            v /= (float)(hi - lo);
        }
        s[j] = v;
    }
}

void kf_pool_layer(kf_cache *c, uint32_t layer)
{
    const kf_layer *l = &c->layers[layer];
    if (c->cfg.pool_kernel < 3 || !l->in_prompt
        || !kf_policy_scores(c->cfg.policy))
        return;
    /* in the prompt no slot has moved yet: slot j is the j-th position,
     * in either slot order, so neighbouring slots are neighbouring
     * tokens */
    for (uint32_t g = 0; g < c->cfg.n_kv_heads; g++)
        pool_lane(c->scores + kf_lane(c, layer, g), c->sel_sum, l->n_slots,
                  c->cfg.pool_kernel / 2, c->cfg.pool_mode);
}

const float *kf_rank_keys(const kf_cache *c, const kf_layer *l,
                          const float *scores, const int32_t *pos,
                          uint32_t n, float *out)
{
    int32_t sinks = (int32_t)c->cfg.sink_tokens; /* <= capacity < 2^31 */
    if (!kf_norm_on(c)) {
        if (!sinks && !l->rows)
            return scores;
        /* sink_tokens and holes (position -1): above every finite score */
        kf_rank_fill(out, scores, pos, n, sinks, INT32_MAX);
        return out;
    }
    /* rows next_pos - 1 down to max(position, score_from) saw the slot:
     * at least one, since every slot's position is below next_pos and
     * score_from is the position of a row already observed */
    int64_t next = l->next_pos, from = l->score_from;
    for (uint32_t j = 0; j < n; j++) {
        int64_t p = pos[j] > from ? pos[j] : from;
        out[j] = pos[j] < sinks ? INFINITY : scores[j] / (float)(next - p);
    }
    return out;
}

uint32_t kf_layer_budget_of(const kf_config *cfg, uint32_t k, uint32_t layer)
{
    if (cfg->layer_slope == 0.0f || cfg->policy == KF_POLICY_FULL
        || cfg->n_layers < 2)
        return k;
    /* k (1 + b (L - 1 - 2l) / (L - 1)) in double, floored as Python's
     * int() would: |b| < 1, so it lies in (0, 2k) */
    double L1 = (double)cfg->n_layers - 1.0;
    double share = 1.0 + (double)cfg->layer_slope
                             * (L1 - 2.0 * (double)layer) / L1;
    return (uint32_t)((double)k * share);
}

int kf_budgets_fit(const kf_config *cfg, uint32_t k)
{
    /* k_l is monotonic in l (falls for b > 0, rises for b < 0): the first
     * and last layers hold the extremes (no loop over n_layers, which
     * kf_cache_create has not yet bounded) */
    uint32_t first = kf_layer_budget_of(cfg, k, 0);
    uint32_t last = kf_layer_budget_of(cfg, k, cfg->n_layers - 1);
    uint32_t most = first > last ? first : last;
    uint32_t fewest = first < last ? first : last;
    if (fewest < 1 || most > cfg->capacity || !kf_budget_fits(cfg, most)
        || (cfg->policy == KF_POLICY_SINKS && fewest <= cfg->n_sinks))
        return KF_ERANGE;
    /* sink_tokens and head_budget: places left to rank, k_l - w_l - S
     * >= 1; k_l - w_l grows with k_l, so the smallest layer is the one
     * to check. kf_cache_create checks the recent ratio only after this:
     * one outside [0, 1] is refused there, never converted here. */
    if ((cfg->sink_tokens || cfg->head_budget == KF_HEAD_BUDGET_ADAPTIVE)
        && kf_policy_scores(cfg->policy) && cfg->recent_ratio >= 0.0
        && cfg->recent_ratio <= 1.0
        && fewest - kf_window_of(cfg->recent_ratio, fewest) <= cfg->sink_tokens)
        return KF_ERANGE;
    return KF_OK;
}

void kf_set_layer_budgets(kf_cache *c)
{
    for (uint32_t l = 0; l < c->cfg.n_layers; l++) {
        kf_layer *layer = &c->layers[l];
        layer->budget = kf_layer_budget_of(&c->cfg, c->budget, l);
        layer->window = c->cfg.policy == KF_POLICY_FULL
                            ? 0
                            : kf_window_of(c->cfg.recent_ratio, layer->budget);
    }
}
