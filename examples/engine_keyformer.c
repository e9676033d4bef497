#include "engine_keyformer.h"

#include <stdint.h>

static int fail(engine_keyformer *glue, int status, const char *call, int layer)
{
    glue->failed_status = status;
    glue->failed_call = call;
    glue->failed_layer = layer;
    return -1;
}

/* The engine keeps one slot count per layer, so every KV head of the layer
 * must hold the same number of slots after compaction (true for every
 * policy: each head keeps min(k, slots)). */
static int shared_slot_count(engine_keyformer *glue, const eng_layer_event *e)
{
    uint32_t first = 0;
    for (int g = 0; g < e->n_kv_heads; g++) {
        uint32_t n;
        const int rc = kf_slot_count(glue->cache, e->layer, g, &n);
        if (rc != KF_OK)
            return fail(glue, rc, "kf_slot_count", e->layer);
        if (g == 0)
            first = n;
        else if (n != first)
            return fail(glue, KF_EMISMATCH, "kf_slot_count (KV heads disagree)", e->layer);
    }
    return (int)first;
}

static int compact_layer(engine_keyformer *glue, const eng_layer_event *e,
                         int layer, float *keys, float *values, int n_slots)
{
    const size_t head_stride = (size_t)e->capacity * (size_t)e->head_size;
    const kf_kv_view k = {keys, KF_DTYPE_F32, (uint32_t)n_slots,
                          (size_t)e->head_size, head_stride, 0, 0};
    const kf_kv_view v = {values, KF_DTYPE_F32, (uint32_t)n_slots,
                          (size_t)e->head_size, head_stride, 0, 0};
    const int rc = kf_compact(glue->cache, layer, &k, &v);
    return rc == KF_OK ? 0 : fail(glue, rc, "kf_compact", layer);
}

/* UNIFORM granularity: one model-wide selection once the last layer has
 * seen the block; every layer's buffers then drop the same positions
 * (what an engine with one cache cell per position would do). */
static int select_all_layers(engine_keyformer *glue, const eng_layer_event *e)
{
    int rc = kf_select(glue->cache, KF_ALL_LAYERS);
    if (rc != KF_OK)
        return fail(glue, rc, "kf_select", KF_ALL_LAYERS);
    for (int l = 0; l <= e->layer; l++) {
        float *keys, *values;
        eng_state_layer_kv(e->state, l, &keys, &values);
        if (compact_layer(glue, e, l, keys, values, eng_state_slot_count(e->state, l)))
            return -1;
        uint32_t n;
        kf_slot_count(glue->cache, l, 0, &n);
        if (l < e->layer && eng_state_shrink_layer(e->state, l, (int)n))
            return fail(glue, KF_EMISMATCH, "eng_state_shrink_layer", l);
    }
    return shared_slot_count(glue, e);
}

int engine_keyformer_hook(void *user_data, const eng_layer_event *e)
{
    engine_keyformer *glue = user_data;
    const kf_logits_view logits = {
        .data = e->logits,
        .n_rows = (uint32_t)e->n_rows,
        .n_slots = (uint32_t)e->n_slots,
        .row_stride = (size_t)e->n_slots,
        .head_stride = (size_t)e->n_rows * (size_t)e->n_slots,
        .flags = KF_LOGITS_CAUSAL,
    };
    int rc = kf_observe_logits(glue->cache, e->layer, &logits);
    if (rc != KF_OK)
        return fail(glue, rc, "kf_observe_logits", e->layer);
    /* A prompt split into blocks is selected once, after its last block:
     * the prompt's own attention stays exact. */
    if (e->more_rows_follow)
        return e->n_slots;
    kf_config cfg;
    kf_cache_config(glue->cache, &cfg);
    if (cfg.granularity == KF_GRANULARITY_UNIFORM)
        return e->layer + 1 == (int)cfg.n_layers ? select_all_layers(glue, e)
                                                 : e->n_slots;
    if ((rc = kf_select(glue->cache, e->layer)) != KF_OK)
        return fail(glue, rc, "kf_select", e->layer);
    if (compact_layer(glue, e, e->layer, e->keys, e->values, e->n_slots))
        return -1;
    return shared_slot_count(glue, e);
}
