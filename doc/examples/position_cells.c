/* doc/recipes.md, "Engines with one cell per position": UNIFORM
 * granularity, so every layer keeps the same positions, and the removed
 * positions handed to a position-range removal call, llama.cpp style.
 * The engine here is a stand-in (llama_stub.h) whose memory is a set of
 * positions; the program checks after every step that the engine holds
 * exactly the positions the library kept. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include <keyformer.h>

#include "llama_stub.h"

enum { LAYERS = 3, HEADS = 4, KV_HEADS = 2, DIM = 8, CAPACITY = 32 };
enum { PROMPT = 24, BUDGET = 10, STEPS = 6 };

/* ---- the stand-in engine memory ---- */
struct llama_memory_i {
    bool present[64]; /* position p is in the sequence's memory */
    int range_calls;
};
static struct llama_memory_i engine_memory;

llama_memory_t llama_get_memory(const struct llama_context *ctx)
{
    (void)ctx;
    return &engine_memory;
}

bool llama_memory_seq_rm(llama_memory_t mem, llama_seq_id seq_id,
                         llama_pos p0, llama_pos p1)
{
    (void)seq_id;
    if (p0 < 0)
        p0 = 0;
    if (p1 < 0)
        p1 = 64;
    for (llama_pos p = p0; p < p1 && p < 64; p++)
        mem->present[p] = false;
    mem->range_calls++;
    return true;
}

/* ---- the recipe ---- */

/* Deletes from the engine's memory the positions the last kf_select
 * removed, one call per run of consecutive positions. */
static int drop_removed_positions(const kf_cache *cache, llama_memory_t mem,
                                  llama_seq_id seq)
{
    const int32_t *removed;
    uint32_t n;
    int rc = kf_removed_positions(cache, &removed, &n);
    if (rc != KF_OK)
        return rc;
    for (uint32_t i = 0; i < n;) {
        llama_pos p0 = removed[i], p1 = removed[i] + 1;
        for (i++; i < n && removed[i] == p1; i++)
            p1++;
        if (!llama_memory_seq_rm(mem, seq, p0, p1)) /* removes [p0, p1) */
            return -1;
    }
    return KF_OK;
}

/* One engine call (the prompt, or one token): every layer's logits in slot
 * order, then one selection for the whole model. */
static int observe_all_layers_and_evict(kf_cache *cache, llama_memory_t mem,
                                        const float *const *layer_logits,
                                        uint32_t n_rows)
{
    uint32_t n_old;
    kf_slot_count(cache, 0, 0, &n_old);
    uint32_t n_slots = n_old + n_rows;
    for (int l = 0; l < LAYERS; l++) {
        kf_logits_view lv = { .data = layer_logits[l], .n_rows = n_rows,
                              .n_slots = n_slots, .row_stride = n_slots,
                              .head_stride = (size_t)n_rows * n_slots,
                              .flags = KF_LOGITS_CAUSAL };
        int rc = kf_observe_logits(cache, l, &lv);
        if (rc != KF_OK)
            return rc;
    }
    int rc = kf_select(cache, KF_ALL_LAYERS);
    if (rc == KF_OK)
        rc = drop_removed_positions(cache, mem, 0);
    if (rc == KF_OK) /* the library's own state follows; no K/V views */
        rc = kf_compact(cache, KF_ALL_LAYERS, NULL, NULL);
    return rc;
}

/* ---- driver ---- */

static float logits[LAYERS][HEADS * PROMPT * CAPACITY];
static unsigned rng = 3;

static void fake_logits(uint32_t n_old, uint32_t n_rows)
{
    uint32_t n_slots = n_old + n_rows;
    for (int l = 0; l < LAYERS; l++)
        for (uint32_t e = 0; e < HEADS * n_rows * n_slots; e++) {
            uint32_t j = e % n_slots, i = e / n_slots % n_rows;
            rng = rng * 1103515245u + 12345u;
            logits[l][e] = j > n_old + i ? -INFINITY
                                         : (float)((rng >> 8) & 0xff) / 32.0f;
        }
}

static int engine_matches(const kf_cache *cache)
{
    const int32_t *pos;
    uint32_t n;
    kf_slot_positions(cache, 0, 0, &pos, &n);
    uint32_t j = 0;
    for (int p = 0; p < 64; p++) {
        if (!engine_memory.present[p])
            continue;
        if (j >= n || pos[j] != p)
            return 0;
        j++;
    }
    return j == n;
}

int main(void)
{
    kf_config cfg;
    kf_config_default(&cfg);
    cfg.n_layers = LAYERS;
    cfg.n_heads = HEADS;
    cfg.n_kv_heads = KV_HEADS;
    cfg.head_dim = DIM;
    cfg.capacity = CAPACITY;
    cfg.granularity = KF_GRANULARITY_UNIFORM;
    /* the engine's cells stay where they are, in position order: the
     * library's slots must keep that order (KF_ORDER_ANY would move the
     * last slot into each hole, which only kf_compact's views can follow) */
    cfg.slot_order = KF_ORDER_POSITION;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = BUDGET;
    kf_cache *cache = NULL;
    if (kf_cache_create(&cache, &cfg) != KF_OK)
        return 1;
    llama_memory_t mem = llama_get_memory(NULL);
    const float *layer_logits[LAYERS];
    for (int l = 0; l < LAYERS; l++)
        layer_logits[l] = logits[l];

    int ok = 1;
    uint32_t n_old = 0, rows = PROMPT;
    for (int step = 0; step <= STEPS && ok; step++) {
        int32_t first;
        uint32_t steps;
        kf_layer_progress(cache, 0, &steps, &first);
        for (uint32_t i = 0; i < rows; i++) /* the engine stores the tokens */
            engine_memory.present[first + (int32_t)i] = true;
        fake_logits(n_old, rows);
        int rc = observe_all_layers_and_evict(cache, mem, layer_logits, rows);
        ok = rc == KF_OK && engine_matches(cache);
        kf_slot_count(cache, 0, 0, &n_old);
        printf("step %d: %s, %u positions kept, %d range calls so far\n",
               step, kf_strerror(rc), n_old, engine_memory.range_calls);
        rows = 1;
    }
    kf_cache_destroy(&cache);
    printf("%s\n", ok ? "engine and library agree" : "MISMATCH");
    return ok ? 0 : 1;
}
