/* The cache object and what the public entry points share. */
#ifndef KF_INTERNAL_H
#define KF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "keyformer.h"
#include "dsp.h"

/* Where a layer stands in its observe -> select -> compact cycle. */
typedef enum kf_layer_state {
    KF_LAYER_IDLE = 0,     /* nothing pending */
    KF_LAYER_OBSERVED = 1, /* rows appended, no selection yet */
    KF_LAYER_SELECTED = 2  /* keep lists ready, compaction pending */
} kf_layer_state;

typedef struct kf_layer {
    uint32_t n_slots;  /* slots of every KV head of the layer */
    uint32_t n_keep;   /* slots kept by the pending selection */
    int32_t next_pos;  /* original position of the next appended row */
    uint32_t steps;    /* generation rows observed */
    /* position of the first query row whose scores the slots' scores
     * hold: 0, or the first row of the observation window (obs_window) */
    int32_t score_from;
    /* budget k_l and window w_l of the layer (layer_slope), valid once
     * c->budget_fixed */
    uint32_t budget, window;
    /* head_budget ADAPTIVE: rows R every KV head keeps (live slots plus
     * holes at position -1), fixed by the prompt's selection; 0 = none,
     * the layer keeps `budget` rows */
    uint32_t rows;
    uint8_t in_prompt; /* 1 until the first selection */
    uint8_t state;     /* kf_layer_state */
} kf_layer;

struct kf_cache {
    kf_config cfg;
    kf_allocator allocator; /* cfg's, or malloc/free */
    kf_dsp dsp;
    /* KF_NOISE_TABLE's noise (kf_gumbel_table; shared, read-only), NULL
     * with KF_NOISE_EXACT */
    const float *gumbel_table;
    uint32_t cpu_mask; /* KF_CPU_* bits allowed (kf_cache_cpu_mask) */
    uint32_t n_threads;
    uint32_t group; /* query heads per KV head */

    /* budget: fixed at create (absolute) or at the first selection */
    uint8_t budget_fixed;
    uint32_t budget, window;
    uint32_t budget_prompt_len; /* prompt length that fixed a ratio budget */

    kf_layer *layers;  /* [n_layers] */
    float *scores;     /* [n_layers][n_kv_heads][capacity] */
    int32_t *positions; /* [n_layers][n_kv_heads][capacity] */
    uint32_t *keep;    /* [n_layers][n_kv_heads][capacity] */
    /* [capacity]: 0, 1, 2, ...: the keep list of every lane whose
     * selection keeps all its slots (n_keep == n_slots), which kf_select
     * then does not write */
    uint32_t *identity;

    /* scratch, reused by every call */
    float *head_acc;    /* [n_heads][capacity]: one call's scores per head */
    int32_t *head_status; /* [n_heads]: KF_ROW_* of the last call */
    /* query heads scored per kernel call in one-row calls: the group,
     * up to KF_SCORE_ROWS_MAX (scoring policies; else 1) */
    uint32_t score_rows;
    /* [n_threads][score_rows * capacity] (thread t at t * scratch_stride):
     * the score kernels' scratch; KF_ORDER_ANY ranking */
    float *row_scratch;
    size_t scratch_stride;
    uint32_t *sel_keys; /* [n_threads][capacity] */
    float *sel_sum;     /* [capacity]: summed scores (layer, uniform) */
    int32_t *removed;   /* [capacity]: UNIFORM positions just removed */
    uint32_t n_removed;
    uint8_t removed_valid;
    /* kf_observe_qk (scoring policies only; qk_rows 0 otherwise) */
    uint32_t qk_rows;   /* logits rows per block: min(KF_QK_ROWS, capacity) */
    float *qk_logits;   /* [n_threads][qk_rows][capacity] */
    float *qk_keys;     /* [n_threads][KF_QK_TILE][head_dim]: fp32 keys */
    /* a round of kf_observe_kv_head calls (observe_round.c) */
    int32_t round_layer; /* -1: no round open */
    uint32_t round_rows;
    uint8_t *round_done; /* [n_kv_heads]: that KV head's call succeeded */
    /* [n_kv_heads][score_rows * capacity] (KV head g at g *
     * scratch_stride); scoring policies only */
    float *kv_scratch;

    /* the current observe call (kf_observe_stage): rows before
     * call_first_row are not scored (obs_window), and call_replaces says
     * its commit replaces the scores accumulated so far (policy.c) */
    uint32_t call_first_row;
    uint8_t call_replaces;

    size_t bytes;
    void *block;
};

/* Offsets of per-(layer, KV head) arrays. */
static inline size_t kf_lane(const kf_cache *c, uint32_t layer, uint32_t g)
{
    return ((size_t)layer * c->cfg.n_kv_heads + g) * c->cfg.capacity;
}

/* The keep list of (layer, KV head g) from the last selection: the shared
 * identity list when it keeps every slot (kf_select does not write those). */
static inline const uint32_t *kf_keep_list(const kf_cache *c, uint32_t layer,
                                           uint32_t g)
{
    const kf_layer *l = &c->layers[layer];
    return l->n_keep == l->n_slots ? c->identity
                                   : c->keep + kf_lane(c, layer, g);
}

/* The calling thread's number in an OpenMP team (0 outside one): the
 * index of its per-thread scratch. */
static inline int kf_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* Layer index checks shared by the entry points. */
static inline int kf_layer_ok(const kf_cache *c, int layer)
{
    return layer >= 0 && (uint32_t)layer < c->cfg.n_layers;
}

static inline int kf_policy_scores(kf_policy p)
{
    return p == KF_POLICY_KEYFORMER || p == KF_POLICY_H2O;
}

/* Rows of len elements of elem bytes at element offsets sa*i + sb*j from
 * base (i < na, j < nb) are pairwise disjoint, for the nested layouts hosts
 * use, and the whole span, in bytes, neither overflows size_t nor wraps the
 * address space; *bytes receives it. base must be aligned to elem, and
 * the span fit in `declared` bytes unless that is 0 (a view's `bytes`:
 * not declared). Returns KF_OK, KF_EINVAL (empty), KF_ELAYOUT or
 * KF_EOVERFLOW. */
int kf_check_rows(const void *base, size_t elem, size_t len, size_t sa,
                  size_t na, size_t sb, size_t nb, size_t declared,
                  size_t *bytes);

/* Picks the cache's kernels from cfg.cpu_mask & KF_CPU_MASK (dsp.c). */
void kf_cache_init_dsp(kf_cache *c);

/* Temperature of row i of the layer's next call: step 0 while the layer
 * is in its prompt, else generation step steps + 1 + i. */
float kf_row_tau(const kf_cache *c, const kf_layer *l, uint32_t i);

/* w = floor(recent_ratio * k), as Python's int(r * k) computes it. */
static inline uint32_t kf_window_of(double recent_ratio, uint32_t k)
{
    return (uint32_t)(recent_ratio * (double)k);
}

/* Room for budget k: a generation step with evict_interval B > 1 evicts
 * only once a (layer, KV head) holds k + B slots, so capacity >= k + B
 * (64-bit sum: no wrap). */
static inline int kf_budget_fits(const kf_config *cfg, uint32_t k)
{
    uint64_t held = (uint64_t)k + (cfg->evict_interval > 1
                                       ? cfg->evict_interval : 0);
    return held <= cfg->capacity;
}

/* kf_observe_qk blocks: query rows per block, keys per converted tile. */
#define KF_QK_ROWS 32u
#define KF_QK_TILE 64u

/* ---- shared by kf_observe_logits and kf_observe_qk (observe.c) ---- */

/* Adds the scores of row i of the current call (query head h, logits x of
 * the first `visible` slots) to acc: the policy's kernel with the row's noise
 * key and temperature. scratch holds capacity floats; next (may be NULL)
 * is the row scored after this one, a prefetch hint. Returns KF_ROW_*. */
int kf_score_row(const kf_cache *c, uint32_t layer, uint32_t h, uint32_t i,
                 const float *x, uint32_t visible, float *acc, float *scratch,
                 const float *next);

/* Adds the scores of every row of query head h to acc; tid numbers the
 * calling thread's per-thread buffers, scratch holds capacity floats.
 * Returns KF_ROW_*. */
typedef int (*kf_head_score_fn)(kf_cache *c, uint32_t layer, uint32_t h,
                                const void *ctx, int tid, float *acc,
                                float *scratch);

/* Grouped one-row calls: the row of KV head g's first query head, and in
 * *stride the distance to the next head's, for the calling thread tid;
 * NULL when the rows cannot be had at once (then each head goes through
 * the kf_head_score_fn). */
typedef const float *(*kf_group_rows_fn)(kf_cache *c, uint32_t g,
                                         const void *ctx, int tid,
                                         size_t *stride);

/* KF_ESTATE while a round of kf_observe_kv_head calls is open: every call
 * that changes the cache, other than the round's own, waits for its end. */
static inline int kf_round_open(const kf_cache *c)
{
    return c->round_layer >= 0;
}

/* Checks a logits view of n_heads query heads against the layer (the
 * checks of kf_observe_logits, in order). */
int kf_check_logits_view(const kf_cache *c, const kf_layer *l,
                         const kf_logits_view *v, uint32_t n_heads);

/* Every row of query head h of the call: view head `vh` of v (h itself for
 * a whole-layer view) into acc. Returns KF_ROW_*. */
int kf_score_view_head(kf_cache *c, uint32_t layer, uint32_t h,
                       const kf_logits_view *v, uint32_t vh, float *acc,
                       float *scratch);

/* KF_ENAN or KF_EEMPTYROW for a failed kernel status (KF_ROW_*). */
static inline int kf_row_error(int row_status)
{
    return row_status == KF_ROW_NAN ? KF_ENAN : KF_EEMPTYROW;
}

/* One unit of kf_score_heads, on the calling thread: query head u into
 * head_acc[u] (not grouped), or the query heads of KV head u, in order,
 * into head_acc[u] (grouped). The accumulator is zeroed over n_slots
 * first; each head's KF_ROW_* goes to head_status[h], and a group's heads
 * after a failure are skipped (KF_ROW_OK). Grouped Keyformer units with
 * group_rows (may be NULL) score the group's rows in one kernel call.
 * Units of one mode share no memory but scratch (score_rows * capacity
 * floats). Returns nonzero when a head failed. */
int kf_score_unit(kf_cache *c, uint32_t layer, uint32_t u,
                  kf_head_score_fn score, kf_group_rows_fn group_rows,
                  const void *ctx, int tid, float *scratch, uint32_t n_slots,
                  int grouped);

/* KF_ENAN / KF_EEMPTYROW of the lowest failing head in [h0, h1) of
 * head_status, KF_OK if none. */
int kf_heads_status(const kf_cache *c, uint32_t h0, uint32_t h1);

/* Runs score for every query head, over OpenMP threads when parallel. Not
 * grouped: head h into head_acc[h]; grouped (calls of one row): the query
 * heads of KV head g, in order, into head_acc[g], bit-identical after
 * kf_observe_commit. Accumulators are zeroed over n_slots first; each is
 * written by one thread only. Returns KF_OK, or KF_ENAN / KF_EEMPTYROW of
 * the lowest failing head (the same for any thread count). */
int kf_score_heads(kf_cache *c, uint32_t layer, kf_head_score_fn score,
                   kf_group_rows_fn group_rows, const void *ctx,
                   uint32_t n_slots, int grouped, int parallel);

/* Writes the positions of n_rows new slots past the layer's live slots:
 * invisible until kf_observe_commit, and read by the noise of the call. */
void kf_observe_stage(kf_cache *c, uint32_t layer, uint32_t n_rows);

/* Appends the n_rows staged slots: scores (+= group sums of head_acc for
 * the scoring policies, 0 for the new slots otherwise), slot count, next
 * position, steps, state. Cannot fail. */
void kf_observe_commit(kf_cache *c, uint32_t layer, uint32_t n_rows,
                       int grouped);

/* ---- the policies beyond the paper (policy.c) ---- */

/* obs_window: the first scored row of a prompt call of n_rows rows, and
 * whether its commit replaces the older scores; sets c->call_first_row
 * and c->call_replaces (kf_observe_stage). */
void kf_policy_stage(kf_cache *c, const kf_layer *l, uint32_t n_rows);

/* pool_kernel: pools every lane of a layer in its prompt (kf_select). */
void kf_pool_layer(kf_cache *c, uint32_t layer);

/* out[j] = +inf where pos[j] < lo or pos[j] >= hi (sinks, holes, the
 * window), key[j] elsewhere; out may be key. */
void kf_rank_fill(float *out, const float *key, const int32_t *pos,
                  uint32_t n, int32_t lo, int32_t hi);

/* score_norm and sink_tokens: the ranking key of n slots into out (+inf
 * for a sink; scores itself only when neither applies: then out is not
 * written and scores is returned); returns the array to rank. */
const float *kf_rank_keys(const kf_cache *c, const kf_layer *l,
                          const float *scores, const int32_t *pos,
                          uint32_t n, float *out);

/* layer_slope: the budget of layer `layer` for base budget k (k itself
 * when the slope is 0 or the policy is FULL). */
uint32_t kf_layer_budget_of(const kf_config *cfg, uint32_t k, uint32_t layer);

/* KF_OK when every layer's budget for base k is at least 1, fits
 * capacity (with evict_interval B: k_l + B) and exceeds n_sinks for
 * SINKS, and leaves k_l - w_l > sink_tokens for the scoring policies;
 * else KF_ERANGE. */
int kf_budgets_fit(const kf_config *cfg, uint32_t k);

/* Copies c->budget and c->window's per-layer shares into every layer
 * (after the budget is fixed). */
void kf_set_layer_budgets(kf_cache *c);

/* Rows a selection of layer l keeps: R once the adaptive split made
 * holes, else the budget k_l. */
static inline uint32_t kf_rows_of(const kf_layer *l)
{
    return l->rows ? l->rows : l->budget;
}

/* head_budget: splits the prompt selection of `layer` (in its prompt,
 * evicting, KV_HEAD granularity) over the KV heads and builds its keep
 * lists, holes included; sets and returns the layer's rows R (the caller
 * marks the layer selected, as for every selection; head_budget.c). */
uint32_t kf_select_adaptive(kf_cache *c, uint32_t layer);

/* head_budget ADAPTIVE applies (a scoring policy). */
static inline int kf_adaptive_on(const kf_cache *c)
{
    return c->cfg.head_budget == KF_HEAD_BUDGET_ADAPTIVE
           && kf_policy_scores(c->cfg.policy);
}

/* Sets the logits of the layer's holes (position -1) among the first n
 * slots of KV head g's row to -inf (kf_observe_qk). */
void kf_mask_holes(const kf_cache *c, uint32_t layer, uint32_t g, float *row,
                   uint32_t n);

/* score_norm is on and the policy scores. */
static inline int kf_norm_on(const kf_cache *c)
{
    return c->cfg.score_norm == KF_SCORE_NORM_SEEN
           && kf_policy_scores(c->cfg.policy);
}

#endif
