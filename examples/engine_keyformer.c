#include "engine_keyformer.h"

#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

static int fail(engine_keyformer *glue, int status, const char *call, int layer)
{
    glue->failed_status = status;
    glue->failed_call = call;
    glue->failed_layer = layer;
    return -1;
}

/* The engine keeps one slot count per layer, so every KV head of the layer
 * must hold the same number of slots after compaction (true for every
 * policy: each head keeps min(k, slots), or R rows with per-head budgets,
 * holes included). */
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

/* head_budget ADAPTIVE: the layer's holes (position -1), which hold no
 * token, become the engine's attention mask; the slots after the held
 * ones read 0 for the rows appended later. */
static int mask_holes(engine_keyformer *glue, const eng_layer_event *e)
{
    unsigned char *mask = eng_state_layer_mask(e->state, e->layer);
    for (int g = 0; g < e->n_kv_heads; g++) {
        const int32_t *pos;
        uint32_t n;
        const int rc = kf_slot_positions(glue->cache, e->layer, g, &pos, &n);
        if (rc != KF_OK)
            return fail(glue, rc, "kf_slot_positions", e->layer);
        unsigned char *m = mask + (size_t)g * (size_t)e->capacity;
        for (uint32_t j = 0; j < n; j++)
            m[j] = pos[j] < 0;
        memset(m + n, 0, (size_t)e->capacity - n);
    }
    return 0;
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

/* The engine's logits [head][row][slot] of n_rows new rows over n_slots
 * slots, row i seeing slots 0 .. n_slots - n_rows + i. */
static kf_logits_view causal_view(const float *logits, int n_rows, int n_slots)
{
    return (kf_logits_view){
        .data = logits,
        .n_rows = (uint32_t)n_rows,
        .n_slots = (uint32_t)n_slots,
        .row_stride = (size_t)n_slots,
        .head_stride = (size_t)n_rows * (size_t)n_slots,
        .flags = KF_LOGITS_CAUSAL,
    };
}

/* Hands the layer's logits over: the whole layer at once, or closes the
 * round the per-KV-head hooks filled. */
static int observe_layer(engine_keyformer *glue, const eng_layer_event *e)
{
    if (!glue->round_open) {
        const kf_logits_view logits = causal_view(e->logits, e->n_rows, e->n_slots);
        const int rc = kf_observe_logits(glue->cache, e->layer, &logits);
        return rc == KF_OK ? 0 : fail(glue, rc, "kf_observe_logits", e->layer);
    }
    glue->round_open = false;
    /* Closes the round even after a failed KV head: the layer then stays
     * as it was before kf_observe_begin, and the KV head's failure (already
     * recorded) is the one reported. */
    const int rc = kf_observe_end(glue->cache, e->layer);
    if (atomic_load(&glue->kv_head_failures) > 0)
        return -1;
    return rc == KF_OK ? 0 : fail(glue, rc, "kf_observe_end", e->layer);
}

int engine_keyformer_hook(void *user_data, const eng_layer_event *e)
{
    engine_keyformer *glue = user_data;
    if (observe_layer(glue, e))
        return -1;
    /* A prompt split into blocks is selected once, after its last block:
     * the prompt's own attention stays exact. */
    if (e->more_rows_follow)
        return e->n_slots;
    kf_config cfg;
    kf_cache_config(glue->cache, &cfg);
    if (cfg.granularity == KF_GRANULARITY_UNIFORM)
        return e->layer + 1 == (int)cfg.n_layers ? select_all_layers(glue, e)
                                                 : e->n_slots;
    const int rc = kf_select(glue->cache, e->layer);
    if (rc != KF_OK)
        return fail(glue, rc, "kf_select", e->layer);
    if (compact_layer(glue, e, e->layer, e->keys, e->values, e->n_slots))
        return -1;
    if (cfg.head_budget == KF_HEAD_BUDGET_ADAPTIVE && mask_holes(glue, e))
        return -1;
    return shared_slot_count(glue, e);
}

static int begin_layer(void *user_data, const eng_layer_event *e)
{
    engine_keyformer *glue = user_data;
    atomic_store(&glue->kv_head_failures, 0);
    const int rc = kf_observe_begin(glue->cache, e->layer, (uint32_t)e->n_rows);
    if (rc != KF_OK)
        return fail(glue, rc, "kf_observe_begin", e->layer);
    glue->round_open = true;
    return 0;
}

/* On an attention thread: other KV heads of the round may be handed over
 * at the same time, so only the first failure is recorded. */
static int observe_kv_head(void *user_data, const eng_kv_head_event *e)
{
    engine_keyformer *glue = user_data;
    const kf_logits_view logits = causal_view(e->logits, e->n_rows, e->n_slots);
    const int rc = kf_observe_kv_head(glue->cache, e->layer, e->kv_head, &logits);
    if (rc == KF_OK)
        return 0;
    if (atomic_fetch_add(&glue->kv_head_failures, 1) == 0)
        fail(glue, rc, "kf_observe_kv_head", e->layer);
    return -1;
}

eng_kv_head_hooks engine_keyformer_kv_head_hooks(engine_keyformer *glue)
{
    return (eng_kv_head_hooks){.begin = begin_layer, .kv_head = observe_kv_head,
                               .user_data = glue};
}
