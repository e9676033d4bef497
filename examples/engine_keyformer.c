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
    if ((rc = kf_select(glue->cache, e->layer)) != KF_OK)
        return fail(glue, rc, "kf_select", e->layer);
    const size_t head_stride = (size_t)e->capacity * (size_t)e->head_size;
    const kf_kv_view keys = {e->keys, KF_DTYPE_F32, (uint32_t)e->n_slots,
                             (size_t)e->head_size, head_stride};
    const kf_kv_view values = {e->values, KF_DTYPE_F32, (uint32_t)e->n_slots,
                               (size_t)e->head_size, head_stride};
    if ((rc = kf_compact(glue->cache, e->layer, &keys, &values)) != KF_OK)
        return fail(glue, rc, "kf_compact", e->layer);
    return shared_slot_count(glue, e);
}
