/* kf_cache_copy_state: one sequence's selection state onto a second cache
 * of the same configuration, so that beams or parallel samples branch
 * after a shared prefill. Only the state that decides later results moves
 * (layer cycles, scores, positions, keep lists, budget, removed
 * positions); scratch and the kernel table stay the destination's own.
 * Every check runs before the first write. */
#include <string.h>

#include "internal.h"

/* The configuration fields that decide results or buffer shapes. The
 * thread count, instruction-set mask and allocator only change speed or
 * where memory comes from, so branches may differ in them. Floating
 * fields compare by value (a NaN never passes kf_cache_create). */
static int same_config(const kf_config *a, const kf_config *b)
{
    return a->n_layers == b->n_layers && a->n_heads == b->n_heads
           && a->n_kv_heads == b->n_kv_heads && a->head_dim == b->head_dim
           && a->capacity == b->capacity && a->policy == b->policy
           && a->rule == b->rule && a->granularity == b->granularity
           && a->budget_tokens == b->budget_tokens
           && a->budget_ratio == b->budget_ratio
           && a->recent_ratio == b->recent_ratio && a->n_sinks == b->n_sinks
           && a->tau_init == b->tau_init && a->tau_end == b->tau_end
           && a->tau_steps == b->tau_steps && a->seed == b->seed
           && a->evict_interval == b->evict_interval
           && a->slot_order == b->slot_order && a->noise == b->noise
           && a->obs_window == b->obs_window
           && a->pool_kernel == b->pool_kernel
           && a->pool_mode == b->pool_mode && a->score_norm == b->score_norm
           && a->layer_slope == b->layer_slope
           && a->sink_tokens == b->sink_tokens
           && a->head_budget == b->head_budget
           && a->head_floor == b->head_floor;
}

/* The live part of every lane of layer l: scores and positions of the
 * held slots, and the keep list of a selection awaiting compaction (a
 * selection that keeps every slot uses the shared identity list). */
static void copy_layer(kf_cache *dst, const kf_cache *src, uint32_t l)
{
    const kf_layer *layer = &src->layers[l];
    for (uint32_t g = 0; g < src->cfg.n_kv_heads; g++) {
        size_t lane = kf_lane(src, l, g);
        memcpy(dst->scores + lane, src->scores + lane,
               layer->n_slots * sizeof *dst->scores);
        memcpy(dst->positions + lane, src->positions + lane,
               layer->n_slots * sizeof *dst->positions);
        if (layer->state == KF_LAYER_SELECTED
            && layer->n_keep != layer->n_slots)
            memcpy(dst->keep + lane, src->keep + lane,
                   layer->n_keep * sizeof *dst->keep);
    }
    dst->layers[l] = *layer;
}

int kf_cache_copy_state(kf_cache *dst, const kf_cache *src)
{
    if (!dst || !src || dst == src)
        return KF_EINVAL;
    if (!same_config(&dst->cfg, &src->cfg))
        return KF_EMISMATCH;
    if (kf_round_open(src))
        return KF_ESTATE;

    for (uint32_t l = 0; l < src->cfg.n_layers; l++)
        copy_layer(dst, src, l);
    dst->budget_fixed = src->budget_fixed;
    dst->budget = src->budget;
    dst->window = src->window;
    dst->budget_prompt_len = src->budget_prompt_len;
    memcpy(dst->removed, src->removed, src->n_removed * sizeof *dst->removed);
    dst->n_removed = src->n_removed;
    dst->removed_valid = src->removed_valid;
    /* an open round of dst is dropped, as kf_cache_reset drops it */
    dst->round_layer = -1;
    memset(dst->round_done, 0, dst->cfg.n_kv_heads);
    return KF_OK;
}
