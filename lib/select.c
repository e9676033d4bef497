/* kf_select: which slots survive. Fixes the budget on the first call of a
 * ratio-budget cache, then builds one ascending keep list per (layer, KV
 * head) according to the policy, rule and granularity. Every check runs
 * before anything is written. */
#include <math.h>
#include <string.h>

#include "internal.h"

/* keep[0..] = [lo, hi) appended at *count */
static void keep_range(uint32_t *keep, uint32_t *count, uint32_t lo, uint32_t hi)
{
    for (uint32_t j = lo; j < hi; j++)
        keep[(*count)++] = j;
}

/* Keep list from scores: top (k - w) of the older slots, then the window
 * (k slots). */
static void keep_by_score(const kf_cache *c, uint32_t *keep,
                          const float *scores, uint32_t n, uint32_t k,
                          uint32_t w, uint32_t *keys)
{
    c->dsp.select_top(keep, scores, n - w, k - w, keys);
    uint32_t count = k - w;
    keep_range(keep, &count, n - w, n);
}

/* KF_ORDER_ANY: slots are in no particular order, but every position from
 * next_pos - w on is held (a slot leaves only after its window), so the
 * window and the other position ranges are found by position. Keeps the
 * slots with a position below `below` or from `from` on, ascending. */
static uint32_t keep_by_position(uint32_t *keep, const int32_t *pos,
                                 uint32_t n, int64_t below, int64_t from)
{
    uint32_t count = 0;
    for (uint32_t j = 0; j < n; j++) {
        keep[count] = j;
        count += pos[j] < below || pos[j] >= from;
    }
    return count;
}

/* keep_fixed under KF_ORDER_ANY: the same ranges by position. */
static uint32_t keep_fixed_any(const kf_cache *c, const kf_layer *l,
                               uint32_t *keep, const int32_t *pos, uint32_t n)
{
    int64_t k = l->budget, w = l->window, next = l->next_pos;
    switch (c->cfg.policy) {
    case KF_POLICY_WINDOW:
        return keep_by_position(keep, pos, n, INT64_MIN, next - k);
    case KF_POLICY_SINKS:
        return keep_by_position(keep, pos, n, c->cfg.n_sinks,
                                next - (k - c->cfg.n_sinks));
    default: /* REFERENCE: the n - k positions that just left the window go */
        return keep_by_position(keep, pos, n, next - w - (int64_t)(n - k),
                                next - w);
    }
}

/* Keep list from scores under KF_ORDER_ANY: the window's slots rank as
 * +inf (scores are finite), so the top k of all slots are the window and
 * the k - w best of the others, ascending; ties go to the lower slot
 * index. */
static void keep_by_score_any(const kf_cache *c, const kf_layer *l,
                              uint32_t *keep, const float *scores,
                              const int32_t *pos, uint32_t n, int tid)
{
    size_t at_thread = (size_t)tid * c->cfg.capacity;
    float *ranked = c->row_scratch + (size_t)tid * c->scratch_stride;
    /* next_pos >= 0 and window <= capacity < 2^31: no overflow */
    int32_t recent = l->next_pos - (int32_t)l->window;
    /* score_norm: the keys, written in place, before the window's */
    const float *key = kf_rank_keys(c, l, scores, pos, n, ranked);
    kf_rank_fill(ranked, key, pos, n, INT32_MIN, recent);
    c->dsp.select_top(keep, ranked, n, kf_rows_of(l), c->sel_keys + at_thread);
}

/* How many slots a selection over n keeps: all of them up to the budget
 * (plus the batch slack B - 1 of a generation step), k beyond. */
static uint32_t kept_count(const kf_cache *c, const kf_layer *l, uint32_t n,
                           int in_prompt)
{
    uint32_t k = kf_rows_of(l);
    uint32_t slack = in_prompt || c->cfg.evict_interval <= 1
                         ? 0 : c->cfg.evict_interval - 1;
    return n <= k || n - k <= slack ? n : k;
}

/* Keep lists that do not depend on scores, for a selection that evicts
 * (kept_count < n); returns the count, or 0 when the policy scores (the
 * caller then ranks). pos and next_pos: the
 * positions of the slots and of the next row (KF_ORDER_ANY). */
static uint32_t keep_fixed(const kf_cache *c, const kf_layer *l, uint32_t *keep,
                           const int32_t *pos)
{
    uint32_t k = l->budget, w = l->window, count = 0, n = l->n_slots;
    int in_prompt = l->in_prompt;
    int by_score = kf_policy_scores(c->cfg.policy)
                   && !(c->cfg.rule == KF_RULE_REFERENCE && !in_prompt);
    if (c->cfg.slot_order == KF_ORDER_ANY)
        return by_score ? 0 : keep_fixed_any(c, l, keep, pos, n);
    switch (c->cfg.policy) {
    case KF_POLICY_WINDOW:
        keep_range(keep, &count, n - k, n);
        return count;
    case KF_POLICY_SINKS:
        keep_range(keep, &count, 0, c->cfg.n_sinks);
        keep_range(keep, &count, n - (k - c->cfg.n_sinks), n);
        return count;
    default:
        if (c->cfg.rule == KF_RULE_REFERENCE && !in_prompt) {
            keep_range(keep, &count, 0, k - w);
            keep_range(keep, &count, n - w, n);
            return count;
        }
        return 0;
    }
}

/* One ranked keep list (k slots) from a lane's scores (of layer l's
 * n_slots slots), on thread tid. */
static void rank(kf_cache *c, const kf_layer *l, uint32_t *keep,
                 const float *scores, const int32_t *pos, int tid)
{
    uint32_t n = l->n_slots;
    if (c->cfg.slot_order == KF_ORDER_ANY) {
        keep_by_score_any(c, l, keep, scores, pos, n, tid);
        return;
    }
    /* score_norm: ranking keys in the thread's scratch (the window's
     * slots, last in position order, are not ranked) */
    float *keys = c->row_scratch + (size_t)tid * c->scratch_stride;
    scores = kf_rank_keys(c, l, scores, pos, n - l->window, keys);
    keep_by_score(c, keep, scores, n, kf_rows_of(l), l->window,
                  c->sel_keys + (size_t)tid * c->cfg.capacity);
}

/* One keep list of layer l: the policy's fixed slots, or ranked scores.
 * pos: the positions of the slots the list indexes. */
static void keep_list(kf_cache *c, const kf_layer *l, uint32_t *keep,
                      const float *scores, const int32_t *pos, int tid)
{
    if (!keep_fixed(c, l, keep, pos))
        rank(c, l, keep, scores, pos, tid);
}

/* Sum of the score vectors of layers [l0, l1) and all their KV heads, in a
 * fixed order, into sel_sum. */
static const float *summed_scores(kf_cache *c, uint32_t l0, uint32_t l1,
                                  uint32_t n)
{
    float *sum = c->sel_sum;
    memcpy(sum, c->scores + kf_lane(c, l0, 0), n * sizeof *sum);
    for (uint32_t l = l0; l < l1; l++)
        for (uint32_t g = (l == l0); g < c->cfg.n_kv_heads; g++) {
            const float *s = c->scores + kf_lane(c, l, g);
            for (uint32_t j = 0; j < n; j++)
                sum[j] += s[j];
        }
    return sum;
}

static void mark_selected(kf_cache *c, uint32_t layer, uint32_t count)
{
    c->layers[layer].n_keep = count;
    c->layers[layer].state = KF_LAYER_SELECTED;
    c->layers[layer].in_prompt = 0;
}

/* The keep list of (layer l0, KV head g), from its own scores and
 * positions, on thread tid. */
static void lane_keep_list(kf_cache *c, const kf_layer *l, uint32_t l0,
                           uint32_t g, int tid)
{
    size_t lane = kf_lane(c, l0, g);
    keep_list(c, l, c->keep + lane, c->scores + lane, c->positions + lane, tid);
}

/* Builds the keep lists of layers [l0, l1) (one layer unless `shared`):
 * shared lists (LAYER, UNIFORM) are built once, from the summed scores,
 * and copied to every head (their lanes hold one slot order); otherwise
 * each KV head builds its own, from its own scores and positions. */
static void select_layers(kf_cache *c, uint32_t l0, uint32_t l1, int shared)
{
    const kf_layer *l = &c->layers[l0];
    uint32_t n = l->n_slots, n_kv = c->cfg.n_kv_heads;
    uint32_t count = kept_count(c, l, n, l->in_prompt);

    if (count == n) { /* every slot stays: the lists are c->identity */
        for (uint32_t m = l0; m < (shared ? l1 : l0 + 1); m++)
            mark_selected(c, m, count);
        return;
    }
    if (!shared) {
        if (n > 4096 && n_kv > 1 && c->n_threads > 1) {
#pragma omp parallel for num_threads(c->n_threads) schedule(static)
            for (uint32_t g = 0; g < n_kv; g++)
                lane_keep_list(c, l, l0, g, kf_thread_id());
        } else { /* no OpenMP region: see kf_score_heads */
            for (uint32_t g = 0; g < n_kv; g++)
                lane_keep_list(c, l, l0, g, 0);
        }
        mark_selected(c, l0, count);
        return;
    }
    uint32_t *first = c->keep + kf_lane(c, l0, 0);
    const int32_t *pos0 = c->positions + kf_lane(c, l0, 0);
    if (!keep_fixed(c, l, first, pos0))
        rank(c, l, first, summed_scores(c, l0, l1, n), pos0, 0);
    for (uint32_t m = l0; m < l1; m++) {
        for (uint32_t g = 0; g < n_kv; g++) {
            uint32_t *dst = c->keep + kf_lane(c, m, g);
            if (dst != first)
                memcpy(dst, first, count * sizeof *dst);
        }
        mark_selected(c, m, count);
    }
}

/* Positions of layer 0, KV head 0 not in its keep list (UNIFORM), in
 * ascending order. Slots are in position order (KF_ORDER_POSITION, or any
 * order's prompt) or hold few evictions at once (a decode step removes up
 * to evict_interval), so an insertion sort costs little: linear for
 * sorted input, and no allocation. */
static void record_removed(kf_cache *c)
{
    const int32_t *pos = c->positions + kf_lane(c, 0, 0);
    const uint32_t *keep = kf_keep_list(c, 0, 0);
    uint32_t n = c->layers[0].n_slots, n_keep = c->layers[0].n_keep;
    uint32_t next = 0, count = 0;
    int32_t *out = c->removed;
    for (uint32_t j = 0; j < n; j++) {
        if (next < n_keep && keep[next] == j) {
            next++;
            continue;
        }
        uint32_t at = count++;
        for (; at > 0 && out[at - 1] > pos[j]; at--)
            out[at] = out[at - 1];
        out[at] = pos[j];
    }
    c->n_removed = count;
    c->removed_valid = 1;
}

/* The budget a first selection over a prompt of `len` slots would fix. */
static int resolve_budget(const kf_cache *c, uint32_t len, uint32_t *k,
                          uint32_t *w)
{
    if (c->budget_fixed) {
        if (c->cfg.budget_tokens == 0 && c->cfg.policy != KF_POLICY_FULL
            && len != c->budget_prompt_len)
            return KF_ESTATE;
        *k = c->budget;
        *w = c->window;
        return KF_OK;
    }
    double want = c->cfg.budget_ratio * (double)len;
    if (want < 1.0 || want >= (double)c->cfg.capacity + 1.0)
        return KF_ERANGE;
    *k = (uint32_t)want; /* floor, as Python's int(ratio * S) */
    if (c->cfg.policy == KF_POLICY_SINKS && *k <= c->cfg.n_sinks)
        return KF_ERANGE;
    if (!kf_budget_fits(&c->cfg, *k)) /* k + evict_interval > capacity */
        return KF_ERANGE;
    if (kf_budgets_fit(&c->cfg, *k)) /* layer_slope: every layer's share */
        return KF_ERANGE;
    *w = kf_window_of(c->cfg.recent_ratio, *k);
    return KF_OK;
}

int kf_select(kf_cache *c, int layer)
{
    if (!c)
        return KF_EINVAL;
    int uniform = c->cfg.granularity == KF_GRANULARITY_UNIFORM;
    if (layer != KF_ALL_LAYERS && !kf_layer_ok(c, layer))
        return KF_ERANGE;
    if ((uniform && layer != KF_ALL_LAYERS) || kf_round_open(c))
        return KF_ESTATE;
    uint32_t l0 = layer == KF_ALL_LAYERS ? 0 : (uint32_t)layer;
    uint32_t l1 = layer == KF_ALL_LAYERS ? c->cfg.n_layers : l0 + 1;

    const kf_layer *base = &c->layers[l0];
    uint32_t k = 0, w = 0, len = 0;
    for (uint32_t l = l0; l < l1; l++) {
        const kf_layer *cur = &c->layers[l];
        if (cur->state != KF_LAYER_OBSERVED)
            return KF_ESTATE;
        if (uniform && (cur->n_slots != base->n_slots
                        || cur->next_pos != base->next_pos
                        || cur->in_prompt != base->in_prompt))
            return KF_ESTATE;
        if (cur->in_prompt) {
            int status = resolve_budget(c, cur->n_slots, &k, &w);
            if (status)
                return status;
            /* a ratio budget fixed by this call: one prompt length */
            if (!c->budget_fixed && len && len != cur->n_slots)
                return KF_ESTATE;
            len = cur->n_slots;
        }
    }
    if (len && !c->budget_fixed) {
        c->budget = k;
        c->window = w;
        c->budget_prompt_len = len;
        c->budget_fixed = 1;
        kf_set_layer_budgets(c);
    }

    /* pool_kernel: the prompt's scores pooled before its selection */
    for (uint32_t l = l0; l < l1; l++)
        kf_pool_layer(c, l);
    if (uniform) {
        select_layers(c, 0, c->cfg.n_layers, 1);
        record_removed(c);
    } else {
        int shared = c->cfg.granularity == KF_GRANULARITY_LAYER;
        for (uint32_t l = l0; l < l1; l++) {
            const kf_layer *cur = &c->layers[l];
            /* head_budget: the prompt's evicting selection splits */
            if (kf_adaptive_on(c) && cur->in_prompt
                && kept_count(c, cur, cur->n_slots, 1) < cur->n_slots)
                mark_selected(c, l, kf_select_adaptive(c, l));
            else
                select_layers(c, l, l + 1, shared);
        }
    }
    return KF_OK;
}
