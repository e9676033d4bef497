/* Cache lifetime: configuration defaults and checks, the single allocation,
 * reset, and the read-only queries. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "internal.h"

#define KF_MAX_THREADS 1024u
#define KF_ALIGN 64u

int kf_config_default(kf_config *cfg)
{
    if (!cfg)
        return KF_EINVAL;
    memset(cfg, 0, sizeof *cfg);
    cfg->policy = KF_POLICY_KEYFORMER;
    cfg->rule = KF_RULE_DYNAMIC;
    cfg->granularity = KF_GRANULARITY_KV_HEAD;
    cfg->budget_ratio = 0.5;
    cfg->recent_ratio = 0.3;
    cfg->n_sinks = 4;
    cfg->tau_init = 1.0f;
    cfg->tau_end = 2.0f;
    cfg->tau_steps = 128;
    cfg->cpu_mask = KF_CPU_ALL;
    /* the fast path: one row moved per eviction, one lookup per noise */
    cfg->slot_order = KF_ORDER_ANY;
    cfg->noise = KF_NOISE_TABLE;
    return KF_OK;
}

int kf_config_spec_exact(kf_config *cfg)
{
    int status = kf_config_default(cfg);
    if (status == KF_OK) {
        cfg->slot_order = KF_ORDER_POSITION;
        cfg->noise = KF_NOISE_EXACT;
    }
    return status;
}

static int check_config(const kf_config *cfg)
{
    for (size_t i = 0; i < sizeof cfg->reserved; i++)
        if (cfg->reserved[i])
            return KF_EINVAL;
    if ((unsigned)cfg->policy > KF_POLICY_FULL
        || (unsigned)cfg->rule > KF_RULE_REFERENCE
        || (unsigned)cfg->granularity > KF_GRANULARITY_UNIFORM
        || (unsigned)cfg->slot_order > KF_ORDER_ANY
        || (unsigned)cfg->noise > KF_NOISE_TABLE
        || cfg->pool_mode > KF_POOL_AVG
        || cfg->score_norm > KF_SCORE_NORM_SEEN
        || cfg->head_budget > KF_HEAD_BUDGET_ADAPTIVE
        || !isfinite(cfg->head_floor)
        || (cfg->head_budget == KF_HEAD_BUDGET_ADAPTIVE
            && (cfg->granularity != KF_GRANULARITY_KV_HEAD
                || cfg->rule != KF_RULE_DYNAMIC))
        || !isfinite(cfg->layer_slope)
        || (cfg->layer_slope != 0.0f
            && cfg->granularity == KF_GRANULARITY_UNIFORM))
        return KF_EINVAL;
    if (!cfg->allocator.alloc != !cfg->allocator.free)
        return KF_EINVAL;
    if (!isfinite(cfg->budget_ratio) || !isfinite(cfg->recent_ratio)
        || !isfinite(cfg->tau_init) || !isfinite(cfg->tau_end))
        return KF_EINVAL;
    if (!cfg->n_layers || !cfg->n_heads || !cfg->n_kv_heads || !cfg->head_dim
        || !cfg->capacity || cfg->n_heads % cfg->n_kv_heads
        || cfg->capacity > (uint32_t)INT32_MAX
        || cfg->n_threads > KF_MAX_THREADS
        || cfg->evict_interval > cfg->capacity
        || cfg->obs_window > cfg->capacity
        || cfg->sink_tokens > cfg->capacity
        || !(cfg->head_floor >= 0.0f && cfg->head_floor <= 1.0f)
        || !(cfg->layer_slope > -1.0f && cfg->layer_slope < 1.0f)
        || (cfg->pool_kernel > 1
            && (cfg->pool_kernel % 2 == 0 || cfg->pool_kernel > 255
                || cfg->pool_kernel > cfg->capacity)))
        return KF_ERANGE;
    if (cfg->policy != KF_POLICY_FULL) {
        int by_tokens = cfg->budget_tokens > 0, by_ratio = cfg->budget_ratio != 0.0;
        if (by_tokens == by_ratio)
            return KF_EINVAL;
        if (cfg->budget_ratio < 0.0 || cfg->budget_tokens > cfg->capacity)
            return KF_ERANGE;
        if (cfg->policy == KF_POLICY_SINKS && by_tokens
            && cfg->budget_tokens <= cfg->n_sinks)
            return KF_ERANGE;
        /* batched eviction holds up to k + B slots before it evicts: with
         * less room every decode step would fail once the layer fills */
        if (by_tokens && !kf_budget_fits(cfg, cfg->budget_tokens))
            return KF_ERANGE;
        /* layer_slope: every layer's share fits too */
        if (by_tokens && kf_budgets_fit(cfg, cfg->budget_tokens))
            return KF_ERANGE;
    }
    if (cfg->recent_ratio < 0.0 || cfg->recent_ratio > 1.0
        || !(1.0f / cfg->tau_init < INFINITY) || !(1.0f / cfg->tau_end < INFINITY)
        || !(cfg->tau_init > 0.0f) || !(cfg->tau_end > 0.0f) || !cfg->tau_steps)
        return KF_ERANGE;
    return KF_OK;
}

/* Carves the block: each array starts on a KF_ALIGN boundary. */
typedef struct layout {
    size_t at;
    int overflow;
} layout;

static size_t take(layout *l, size_t count, size_t size)
{
    size_t start = (l->at + KF_ALIGN - 1) & ~(size_t)(KF_ALIGN - 1);
    if (start < l->at || (size && count > (SIZE_MAX - start) / size))
        l->overflow = 1;
    else
        l->at = start + count * size;
    return start;
}

static void *default_alloc(void *opaque, size_t size, size_t align)
{
    (void)opaque;
    void *p = NULL;
    return posix_memalign(&p, align, size) ? NULL : p;
}

static void default_free(void *opaque, void *ptr)
{
    (void)opaque;
    free(ptr);
}

int kf_cache_create(kf_cache **out, const kf_config *cfg)
{
    if (!out)
        return KF_EINVAL;
    *out = NULL;
    if (!cfg)
        return KF_EINVAL;
    int status = check_config(cfg);
    if (status)
        return status;

    uint32_t n_threads = cfg->n_threads;
#ifdef _OPENMP
    if (!n_threads)
        n_threads = (uint32_t)omp_get_max_threads();
#endif
    if (n_threads < 1)
        n_threads = 1;
    if (n_threads > KF_MAX_THREADS)
        n_threads = KF_MAX_THREADS;

    size_t cap = cfg->capacity, lanes = (size_t)cfg->n_layers * cfg->n_kv_heads;
    layout l = { 0, 0 };
    size_t o_cache = take(&l, 1, sizeof(kf_cache));
    size_t o_layers = take(&l, cfg->n_layers, sizeof(kf_layer));
    size_t o_scores = take(&l, lanes, cap * sizeof(float));
    size_t o_pos = take(&l, lanes, cap * sizeof(int32_t));
    size_t o_keep = take(&l, lanes, cap * sizeof(uint32_t));
    size_t o_identity = take(&l, cap, sizeof(uint32_t));
    size_t o_acc = take(&l, cfg->n_heads, cap * sizeof(float));
    size_t o_status = take(&l, cfg->n_heads, sizeof(int32_t));
    uint32_t group = cfg->n_heads / cfg->n_kv_heads;
    uint32_t score_rows = !kf_policy_scores(cfg->policy) ? 1
                          : group < KF_SCORE_ROWS_MAX    ? group
                                                         : KF_SCORE_ROWS_MAX;
    size_t o_rows = take(&l, (size_t)n_threads * score_rows, cap * sizeof(float));
    size_t o_keys = take(&l, n_threads, cap * sizeof(uint32_t));
    size_t o_sum = take(&l, cap, sizeof(float));
    size_t o_removed = take(&l, cap, sizeof(int32_t));
    /* kf_observe_qk: per thread, a block of logits rows and a tile of keys
     * converted to fp32 (only the scoring policies compute logits) */
    uint32_t qk_rows = !kf_policy_scores(cfg->policy) ? 0
                       : cfg->capacity < KF_QK_ROWS  ? cfg->capacity
                                                     : KF_QK_ROWS;
    size_t o_qk_logits = take(&l, (size_t)n_threads * qk_rows,
                              cap * sizeof(float));
    size_t o_qk_keys = take(&l, qk_rows ? (size_t)n_threads * KF_QK_TILE : 0,
                            (size_t)cfg->head_dim * sizeof(float));
    /* kf_observe_kv_head: a done flag and (scoring policies) a row of
     * scratch per KV head, so calls from different threads share nothing */
    size_t o_done = take(&l, cfg->n_kv_heads, 1);
    size_t o_kv_scratch = take(&l, kf_policy_scores(cfg->policy)
                                       ? (size_t)cfg->n_kv_heads * score_rows : 0,
                               cap * sizeof(float));
    if (l.overflow || lanes / cfg->n_layers != cfg->n_kv_heads)
        return KF_EOVERFLOW;

    kf_allocator al = cfg->allocator;
    if (!al.alloc) {
        al.alloc = default_alloc;
        al.free = default_free;
        al.opaque = NULL;
    }
    uint8_t *block = al.alloc(al.opaque, l.at, KF_ALIGN);
    if (!block)
        return KF_ENOMEM;
    memset(block, 0, l.at);

    kf_cache *c = (kf_cache *)(block + o_cache);
    c->cfg = *cfg;
    c->allocator = al;
    c->n_threads = n_threads;
    c->group = cfg->n_heads / cfg->n_kv_heads;
    c->layers = (kf_layer *)(block + o_layers);
    c->scores = (float *)(block + o_scores);
    c->positions = (int32_t *)(block + o_pos);
    c->keep = (uint32_t *)(block + o_keep);
    c->identity = (uint32_t *)(block + o_identity);
    for (uint32_t j = 0; j < cfg->capacity; j++)
        c->identity[j] = j;
    c->head_acc = (float *)(block + o_acc);
    c->head_status = (int32_t *)(block + o_status);
    c->score_rows = score_rows;
    c->scratch_stride = score_rows * cap;
    c->row_scratch = (float *)(block + o_rows);
    c->sel_keys = (uint32_t *)(block + o_keys);
    c->sel_sum = (float *)(block + o_sum);
    c->removed = (int32_t *)(block + o_removed);
    c->qk_rows = qk_rows;
    c->qk_logits = (float *)(block + o_qk_logits);
    c->qk_keys = (float *)(block + o_qk_keys);
    c->round_done = block + o_done;
    c->kv_scratch = (float *)(block + o_kv_scratch);
    c->bytes = l.at;
    c->block = block;
    /* built once per process, before any observe can run in parallel */
    c->gumbel_table = cfg->noise == KF_NOISE_TABLE ? kf_gumbel_table() : NULL;
    kf_cache_init_dsp(c);
    kf_cache_reset(c);
    *out = c;
    return KF_OK;
}

void kf_cache_destroy(kf_cache **cache)
{
    if (!cache || !*cache)
        return;
    kf_allocator al = (*cache)->allocator;
    al.free(al.opaque, (*cache)->block);
    *cache = NULL;
}

int kf_cache_reset(kf_cache *c)
{
    if (!c)
        return KF_EINVAL;
    for (uint32_t i = 0; i < c->cfg.n_layers; i++) {
        kf_layer *layer = &c->layers[i];
        memset(layer, 0, sizeof *layer);
        layer->in_prompt = 1;
    }
    c->removed_valid = 0;
    c->n_removed = 0;
    c->round_layer = -1;
    memset(c->round_done, 0, c->cfg.n_kv_heads);
    c->budget_prompt_len = 0;
    c->budget_fixed = c->cfg.policy == KF_POLICY_FULL || c->cfg.budget_tokens > 0;
    c->budget = c->cfg.policy == KF_POLICY_FULL ? c->cfg.capacity
                                                : c->cfg.budget_tokens;
    c->window = c->cfg.policy == KF_POLICY_FULL
                    ? 0
                    : kf_window_of(c->cfg.recent_ratio, c->budget);
    kf_set_layer_budgets(c); /* zeros until a ratio budget is fixed */
    return KF_OK;
}

/* Temperature of generation step `step` (0 = prompt). */
static float kf_tau_at(const kf_config *cfg, uint32_t step)
{
    if (step >= cfg->tau_steps)
        return cfg->tau_end;
    return (float)(cfg->tau_init
                   + (double)step * ((double)cfg->tau_end - cfg->tau_init)
                         / cfg->tau_steps);
}

float kf_row_tau(const kf_cache *c, const kf_layer *l, uint32_t i)
{
    return kf_tau_at(&c->cfg, l->in_prompt ? 0 : l->steps + 1 + i);
}

/* ---- queries ---- */

static int lane_args(const kf_cache *c, int layer, int kv_head, const void *a,
                     const void *b)
{
    if (!c || !a || !b)
        return KF_EINVAL;
    if (!kf_layer_ok(c, layer) || kv_head < 0
        || (uint32_t)kv_head >= c->cfg.n_kv_heads)
        return KF_ERANGE;
    return KF_OK;
}

int kf_slot_count(const kf_cache *c, int layer, int kv_head, uint32_t *n)
{
    int status = lane_args(c, layer, kv_head, n, n);
    if (status)
        return status;
    *n = c->layers[layer].n_slots;
    return KF_OK;
}

int kf_slot_positions(const kf_cache *c, int layer, int kv_head,
                      const int32_t **positions, uint32_t *n)
{
    int status = lane_args(c, layer, kv_head, positions, n);
    if (status)
        return status;
    *positions = c->positions + kf_lane(c, (uint32_t)layer, (uint32_t)kv_head);
    *n = c->layers[layer].n_slots;
    return KF_OK;
}

int kf_slot_scores(const kf_cache *c, int layer, int kv_head,
                   const float **scores, uint32_t *n)
{
    int status = lane_args(c, layer, kv_head, scores, n);
    if (status)
        return status;
    *scores = c->scores + kf_lane(c, (uint32_t)layer, (uint32_t)kv_head);
    *n = c->layers[layer].n_slots;
    return KF_OK;
}

int kf_kept_slots(const kf_cache *c, int layer, int kv_head,
                  const uint32_t **slots, uint32_t *n)
{
    int status = lane_args(c, layer, kv_head, slots, n);
    if (status)
        return status;
    if (c->layers[layer].state != KF_LAYER_SELECTED)
        return KF_ESTATE;
    *slots = kf_keep_list(c, (uint32_t)layer, (uint32_t)kv_head);
    *n = c->layers[layer].n_keep;
    return KF_OK;
}

int kf_layer_progress(const kf_cache *c, int layer, uint32_t *steps,
                      int32_t *next_position)
{
    if (!c || !steps || !next_position)
        return KF_EINVAL;
    if (!kf_layer_ok(c, layer))
        return KF_ERANGE;
    *steps = c->layers[layer].steps;
    *next_position = c->layers[layer].next_pos;
    return KF_OK;
}

int kf_current_tau(const kf_cache *c, int layer, float *tau)
{
    if (!c || !tau)
        return KF_EINVAL;
    if (!kf_layer_ok(c, layer))
        return KF_ERANGE;
    /* only Keyformer divides by a temperature: H2O scores plain softmax
     * (tau 1 by definition), the other policies score nothing */
    const kf_layer *l = &c->layers[layer];
    *tau = c->cfg.policy == KF_POLICY_KEYFORMER ? kf_row_tau(c, l, 0) : 1.0f;
    return KF_OK;
}

int kf_budget(const kf_cache *c, uint32_t *k, uint32_t *w)
{
    if (!c || !k || !w)
        return KF_EINVAL;
    if (!c->budget_fixed)
        return KF_ESTATE;
    *k = c->budget;
    *w = c->window;
    return KF_OK;
}

int kf_layer_budget(const kf_cache *c, int layer, uint32_t *k, uint32_t *w)
{
    if (!c || !k || !w)
        return KF_EINVAL;
    if (!kf_layer_ok(c, layer))
        return KF_ERANGE;
    if (!c->budget_fixed)
        return KF_ESTATE;
    *k = c->layers[layer].budget;
    *w = c->layers[layer].window;
    return KF_OK;
}

int kf_removed_positions(const kf_cache *c, const int32_t **positions,
                         uint32_t *n)
{
    if (!c || !positions || !n)
        return KF_EINVAL;
    if (c->cfg.granularity != KF_GRANULARITY_UNIFORM || !c->removed_valid)
        return KF_ESTATE;
    *positions = c->removed;
    *n = c->n_removed;
    return KF_OK;
}

int kf_cache_memory(const kf_cache *c, size_t *bytes)
{
    if (!c || !bytes)
        return KF_EINVAL;
    *bytes = c->bytes;
    return KF_OK;
}

int kf_cache_config(const kf_cache *c, kf_config *cfg)
{
    if (!c || !cfg)
        return KF_EINVAL;
    *cfg = c->cfg;
    return KF_OK;
}
