/* Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING. */
/** @file keyformer.h
 * @brief The whole public API of libkeyformer: KV-cache reduction by
 * key-token selection (Keyformer, Adnan et al., MLSys 2024) for any host
 * inference loop.
 *
 * This overview comes first, then every type, constant and function. The
 * guides (doc/concepts.md, doc/walkthrough.md, doc/recipes.md, ...) are
 * linked from the main page of the API reference.
 *
 * ## What it does
 * The host runs its own transformer. For every layer it hands the library the
 * attention logits it computed anyway; the library accumulates a Gumbel-noised
 * softmax score per cached token, decides which tokens survive (a recent
 * window plus the highest-scoring "key" tokens), and compacts the host's own K
 * and V buffers in place. Retained tokens keep their original positions.
 *
 * ## Words
 * - slot: one cached token of one (layer, KV head). Slots are kept in
 *   ascending original position (or in no particular order with
 *   KF_ORDER_ANY); slot i of a layer is row i of the host's K/V buffers for
 *   that layer and head.
 * - capacity (kf_config): the most slots a (layer, KV head) may hold. The
 *   host's buffers hold `rows` >= capacity rows per KV head, and a
 *   kf_kv_view's strides describe those buffers: for [head][row][dim],
 *   head_stride = rows * head_dim, from the buffer's own row count, never
 *   from capacity unless the two are equal. A head_stride that is too small
 *   for the buffer is a valid view of other memory: every call succeeds and
 *   KV head 1 onwards read and move the wrong rows. Set kf_kv_view::bytes
 *   to the buffer's size so the library rejects views that run past it.
 * - budget k: slots kept per (layer, KV head) after each selection; window
 *   w = floor(recent_ratio * k) most recent slots are always kept.
 * - phase: a layer is in the prompt phase until its first kf_select(); every
 *   row observed after that is one generation step (t = 1, 2, ...).
 *
 * ## One prefill, one decode step (per layer l)
 * @code{.c}
 * // prompt of S tokens: logits [head][row i][slot j], j <= i visible
 * kf_logits_view lv = { .data = logits, .n_rows = S, .n_slots = S,
 *                       .row_stride = S, .head_stride = (size_t)S * S,
 *                       .flags = KF_LOGITS_CAUSAL,
 *                       .bytes = sizeof(float) * n_heads * S * S };
 * kf_observe_logits(cache, l, &lv);   // scores accumulate
 * kf_select(cache, l);                // keep window + top scores
 * kf_compact(cache, l, &k_view, &v_view); // host K/V shrink in place
 * // decode: append one token's K/V at row n (n = kf_slot_count), then
 * // logits of the new query over n + 1 slots:
 * lv = (kf_logits_view){ .data = row, .n_rows = 1, .n_slots = n + 1,
 *                        .row_stride = n + 1, .head_stride = n + 1 };
 * kf_observe_logits(cache, l, &lv); kf_select(cache, l);
 * kf_compact(cache, l, &k_view, &v_view); // evicts back to k slots
 * @endcode
 *
 * ## Threads
 * A kf_cache is used by one thread at a time (the library may run OpenMP
 * threads inside a call), with one exception: the kf_observe_kv_head()
 * calls of one round, for different KV heads, may run concurrently (from
 * the host's own threads). Different caches are independent and may be used
 * concurrently from different threads. The const query functions may run
 * concurrently with each other, not with a mutating call on the same cache.
 * Results depend only on the seed and the inputs, never on the thread count
 * or the instruction set.
 *
 * ## Memory and ownership
 * All memory is allocated in kf_cache_create(); no call after that allocates.
 * Pointers passed in are borrowed for the duration of the call only. Pointers
 * returned by query functions point into the cache and stay valid until the
 * next mutating call on that cache (observe, select, compact, reset, destroy).
 *
 * ## Errors
 * Every function returning int returns KF_OK (0) or a negative KF_E* code;
 * kf_strerror() describes it. A failed call leaves the cache exactly as it
 * was before the call.
 */
#ifndef KEYFORMER_H
#define KEYFORMER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Major version; the shared library's soversion (ABI breaks bump it). */
#define KF_VERSION_MAJOR 0
/** Minor version (additions). */
#define KF_VERSION_MINOR 2
/** Patch version (fixes). */
#define KF_VERSION_PATCH 0
/** Version as one comparable number: major * 10000 + minor * 100 + patch. */
#define KF_VERSION_NUMBER \
    (KF_VERSION_MAJOR * 10000 + KF_VERSION_MINOR * 100 + KF_VERSION_PATCH)

#if defined(_WIN32) && defined(KF_BUILDING_DLL)
#define KF_API __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define KF_API __attribute__((visibility("default")))
#else
#define KF_API
#endif

/** Status codes: 0 success, negative failure. Numbers are fixed forever. */
enum {
    KF_OK = 0,
    KF_EINVAL = -1,    /**< NULL pointer or invalid enum / flag / value */
    KF_ENOMEM = -2,    /**< the allocator failed (kf_cache_create only) */
    KF_ERANGE = -3,    /**< index or size outside its allowed range */
    KF_ESTATE = -4,    /**< call out of order for the layer's state */
    KF_EOVERFLOW = -5, /**< a size computation overflows */
    KF_ENAN = -6,      /**< logits contain NaN or +inf */
    KF_EEMPTYROW = -7, /**< a logits row has no finite visible entry */
    KF_ELAYOUT = -8,   /**< strides make rows overlap, or buffers alias */
    KF_EMISMATCH = -9  /**< a view's slot count disagrees with the cache,
                            or two caches' configurations differ */
};

/** Which tokens survive. */
typedef enum kf_policy {
    KF_POLICY_KEYFORMER = 0, /**< Gumbel-noised scores, window + key tokens */
    KF_POLICY_H2O = 1,       /**< plain softmax scores (heavy hitters) */
    KF_POLICY_WINDOW = 2,    /**< the k most recent slots */
    KF_POLICY_SINKS = 3,     /**< first n_sinks + the most recent (StreamingLLM) */
    KF_POLICY_FULL = 4       /**< never evict (quality reference) */
} kf_policy;

/** Decode-time eviction rule for KEYFORMER and H2O (prompt selection is the
 *  same under both). */
typedef enum kf_rule {
    /** Keep the window plus the top k - w scores of all older slots: a key
     *  token can lose its place to a token leaving the window (the paper). */
    KF_RULE_DYNAMIC = 0,
    /** The slot leaving the window is evicted unconditionally: the key tokens
     *  chosen at the prompt never change and tau has no effect on survival
     *  (the authors' released code). */
    KF_RULE_REFERENCE = 1
} kf_rule;

/** Which slots share one selection. */
typedef enum kf_granularity {
    KF_GRANULARITY_KV_HEAD = 0, /**< each (layer, KV head) selects alone */
    KF_GRANULARITY_LAYER = 1,   /**< scores summed over a layer's KV heads */
    /** Scores summed over every layer and head; one set of positions for the
     *  whole model (engines that drop whole positions). Select with
     *  KF_ALL_LAYERS after observing every layer. */
    KF_GRANULARITY_UNIFORM = 2
} kf_granularity;

/** Order of a (layer, KV head)'s slots after kf_compact(). */
typedef enum kf_slot_order {
    /** Ascending original position, as doc/algorithm.md states it
     *  (kf_config_spec_exact()). Evicting one slot moves every row after
     *  it: about w rows of K and of V per eviction. */
    KF_ORDER_POSITION = 0,
    /** Any order: each evicted slot below the kept count takes a kept slot
     *  from the end, so an eviction moves one row instead of the rows after
     *  it. The selections are those of KF_ORDER_POSITION (the window is
     *  found by position) except that equal scores go to the lower slot
     *  index rather than the lower position. kf_slot_positions() gives each
     *  slot's position; hosts must compact their K/V with kf_compact() (not
     *  by position on their own), and RoPE or ALiBi already applied to
     *  cached keys makes attention indifferent to the order. The default
     *  of kf_config_default(). */
    KF_ORDER_ANY = 1
} kf_slot_order;

/** Element type of host K/V buffers. */
typedef enum kf_dtype {
    KF_DTYPE_F32 = 0, /**< IEEE binary32 (float) */
    KF_DTYPE_F16 = 1, /**< IEEE binary16, stored as uint16_t */
    KF_DTYPE_BF16 = 2, /**< bfloat16 (upper half of a binary32), uint16_t */
    /** Opaque rows of kf_kv_view::row_bytes bytes each, for quantized
     *  caches (q8_0, q4_0, any block format): kf_compact() moves them as
     *  bytes, and the view's strides count bytes. kf_observe_qk() cannot
     *  read such keys (KF_EINVAL). */
    KF_DTYPE_ROW_BYTES = 3
} kf_dtype;

/** The Gumbel noise of KF_POLICY_KEYFORMER's score (other policies draw
 *  none). Both are keyed by (seed, layer, head, query position, key
 *  position) through the same 32-bit hash h, give the same bits on every
 *  instruction set and thread count, and have the same cost outside the
 *  noise (an exp, a sum and the fused update per logit).
 *
 *  Noise cost per logit: EXACT one hash and two ln (one ln and a
 *  division at tau = 1); TABLE one hash and one table lookup (a gather),
 *  for every tau. On an AVX2 CPU the noise is most of a generation
 *  step's observe: see doc/performance.md for measured rates.
 *
 *  The two agree closely (same u, see TABLE) and KF_NOISE_TABLE's
 *  selections differ from EXACT's far less than two seeds' do. TABLE is
 *  the default (kf_config_default()); EXACT, the spec's continuous
 *  sample, comes with kf_config_spec_exact() for studies of the method
 *  itself. */
typedef enum kf_noise {
    /** g = -ln(-ln u), u = (2m + 1) / 2^24 with m = h >> 9 (the top 23
     *  bits of h): a Gumbel(0, 1) sample in [-2.81, 16.64] (the library's
     *  fp32 ln, within 6e-7 of exact). */
    KF_NOISE_EXACT = 0,
    /** The discretised Gumbel: g = G[h >> 20], where G[i] =
     *  -ln(-ln((i + 1/2) / 4096)) is the Gumbel quantile at the centre of
     *  the i-th of 4096 equiprobable bins of u (computed once per process
     *  in fp32, within 6e-7 of exact): 4096 values, each with probability
     *  1/4096, in [-2.1985, 9.0109]. It is EXACT's sample with u moved to
     *  the centre of its bin (the same hash bits), so its upper tail stops
     *  at the 1 - 1/8192 quantile (P(exact g > 9.01) = 1/8192); mean
     *  0.57714 (Gumbel: 0.57722), variance 1.6432 (1.6449). The softmax
     *  is shifted by max x + 9.01 (known before the noise, so one pass
     *  suffices): a row's terms below e^(-87.3 + 11.2 / tau) of its
     *  largest (e^-76 at tau = 1, e^-42 at tau = 0.25) count as 0, where
     *  EXACT keeps them down to e^-87; below tau = 0.25 the shift is the
     *  exact maximum, as in EXACT. */
    KF_NOISE_TABLE = 1
} kf_noise;

/** kf_config::pool_mode: how neighbouring prompt scores are pooled. */
enum {
    KF_POOL_MAX = 0, /**< maximum over the kernel (SnapKV's default) */
    KF_POOL_AVG = 1  /**< mean over the slots of the kernel that exist */
};

/** kf_config::score_norm: how accumulated scores are ranked. */
enum {
    KF_SCORE_NORM_NONE = 0, /**< by the accumulated score (the paper) */
    /** by the score divided by the query rows that could see the slot */
    KF_SCORE_NORM_SEEN = 1
};

/** kf_config::head_budget: how a layer's budget is split over its KV
 *  heads. */
enum {
    KF_HEAD_BUDGET_EVEN = 0, /**< every KV head keeps k_l slots (the paper) */
    /** heads whose scores are concentrated give places to heads whose
     *  scores are spread (Ada-KV); see kf_config::head_budget */
    KF_HEAD_BUDGET_ADAPTIVE = 1
};

/** Optional allocator. Both functions set, or both NULL (malloc/free).
 *  alloc returns memory aligned to at least `align` bytes (a power of two,
 *  at most 64), or NULL. Used only inside kf_cache_create/destroy. */
typedef struct kf_allocator {
    /** Returns size bytes aligned to align, or NULL. */
    void *(*alloc)(void *opaque, size_t size, size_t align);
    /** Releases a block alloc returned. */
    void (*free)(void *opaque, void *ptr);
    void *opaque; /**< passed to both hooks as is */
} kf_allocator;

/** Cache settings. Always start from kf_config_default(): fields added in
 *  later versions take bytes from `reserved`, which must stay zero. */
typedef struct kf_config {
    uint32_t n_layers;   /**< transformer layers, >= 1 */
    uint32_t n_heads;    /**< query heads per layer, >= 1 */
    uint32_t n_kv_heads; /**< KV heads per layer, divides n_heads */
    uint32_t head_dim;   /**< elements per K (and V) row, >= 1 */
    /** Most slots one (layer, KV head) may hold at once, including rows
     *  appended before their selection: at least the prompt length for the
     *  prefill, and k + 1 for one-token decode steps (k + B with
     *  evict_interval B). The host's K/V buffers need at least this many
     *  rows per KV head; they may hold more, and then their kf_kv_view
     *  strides come from their own row count, not from capacity. */
    uint32_t capacity;
    kf_policy policy;           /**< default KF_POLICY_KEYFORMER */
    kf_rule rule;               /**< default KF_RULE_DYNAMIC */
    kf_granularity granularity; /**< default KF_GRANULARITY_KV_HEAD */
    /** Budget as an absolute slot count (> 0), or 0 to use budget_ratio. */
    uint32_t budget_tokens;
    /** Budget as a fraction of the real prompt length S: k = floor(ratio*S),
     *  resolved at the first kf_select(). Used when budget_tokens == 0;
     *  must be 0 when budget_tokens > 0. Default 0.5. */
    double budget_ratio;
    /** Window w = floor(recent_ratio * k); [0, 1]; 0.3. 0 means no window
     *  (key tokens only). Ratios are doubles so that floor(ratio * n)
     *  matches the same formula in Python or numpy. */
    double recent_ratio;
    uint32_t n_sinks;   /**< KF_POLICY_SINKS: first slots kept; 4 */
    float tau_init;     /**< temperature at the prompt; > 0; 1 */
    float tau_end;      /**< temperature after tau_steps steps; > 0; 2 */
    uint32_t tau_steps; /**< T, expected generated tokens; >= 1; 128 */
    /** OpenMP threads per call; 0 = OpenMP default (omp_get_max_threads()
     *  at creation); at most 1024. Each thread gets its own scratch,
     *  allocated at creation, so kf_cache_memory() grows with it (the
     *  per-thread bytes are listed there); results never depend on it. */
    uint32_t n_threads;
    uint64_t seed;      /**< Gumbel noise seed; same seed => same choices */
    kf_allocator allocator; /**< optional; zero = malloc/free */
    /** Instruction sets the cache may use (KF_CPU_* bits); default
     *  KF_CPU_ALL, 0 = portable C only. ANDed with the KF_CPU_MASK
     *  environment variable at creation. Results never depend on it. */
    uint32_t cpu_mask;
    /** Decode steps per eviction, B; 0 or 1 (default) = every step, as
     *  in the paper. With B > 1 a generation-phase kf_select() keeps every
     *  slot until a (layer, KV head) holds k + B, then evicts B at once
     *  (the lowest scores under the policy and rule): compaction moves rows
     *  once per B tokens instead of every token, and up to k + B slots are
     *  held, so capacity must be >= k + B: kf_cache_create() checks it for
     *  budget_tokens, the first kf_select() for a ratio budget (both
     *  KF_ERANGE). The prompt selection is unchanged. <= capacity. */
    uint32_t evict_interval;
    /** Slot order after compaction: KF_ORDER_ANY from kf_config_default(),
     *  KF_ORDER_POSITION from kf_config_spec_exact(). */
    kf_slot_order slot_order;
    /** Gumbel noise of KF_POLICY_KEYFORMER: KF_NOISE_TABLE from
     *  kf_config_default() (faster), KF_NOISE_EXACT from
     *  kf_config_spec_exact() (see kf_noise); other values KF_EINVAL. */
    kf_noise noise;
    /** Observation-window scoring (the SnapKV idea; 0 = off, the
     *  default): the prompt's scores come only from its last W query rows,
     *  W = obs_window, instead of from every prompt row. KEYFORMER keeps its
     *  Gumbel noise and tau_init on those rows (the noise is applied on top
     *  of the window), H2O scores them with plain softmax; generation rows
     *  accumulate as usual, on top of the prompt's scores. Only the rows of
     *  a prompt call are restricted: a prompt-phase observe call of n_rows
     *  >= W rows replaces every score accumulated so far by the scores of
     *  its own last W rows; a call of fewer rows adds all of its rows. So
     *  the window is exact for a one-call prefill and for a chunked prefill
     *  whose last chunk holds at least W rows; token-by-token prefill
     *  (calls of one row, W > 1) scores every row, as with 0. Rows before
     *  the window are not read at all: neither scored nor checked for NaN
     *  (kf_observe_qk computes no logits for them). <= capacity
     *  (KF_ERANGE). Read by KEYFORMER and H2O; the other policies ignore
     *  it. See doc/algorithm.md, "Beyond the paper". */
    uint32_t obs_window;
    /** Pooling of the prompt's scores before the prompt selection: 0 or 1 =
     *  off (default); else an odd kernel size K, 3 .. 255 (even values, K
     *  > 255 and K > capacity: KF_ERANGE). At the first kf_select() of a
     *  layer, each lane's score j becomes the maximum (pool_mode
     *  KF_POOL_MAX) or mean (KF_POOL_AVG) of the scores of slots j - K/2 ..
     *  j + K/2 that exist (the mean divides by their count, summing left
     *  to right); the pooled scores replace the stored ones, so generation
     *  rows accumulate on top of them and kf_slot_scores() shows them.
     *  Keeps the neighbours of a high-scoring token together. KEYFORMER
     *  and H2O only. */
    uint32_t pool_kernel;
    /** KF_POOL_MAX (0, default) or KF_POOL_AVG (1); other values
     *  KF_EINVAL. Read only when pool_kernel >= 3. */
    uint32_t pool_mode;
    /** KF_SCORE_NORM_NONE (0, default) or KF_SCORE_NORM_SEEN (1): rank each
     *  slot by its accumulated score divided by the number of scored query
     *  rows that could see it (causal attention: every scored row at or
     *  after its position), which removes accumulation's bias towards early
     *  tokens (they are summed over more rows). The stored scores are not
     *  changed, only the ranking of each selection. Under obs_window the
     *  prompt rows counted are the window's. KEYFORMER and H2O only; other
     *  values KF_EINVAL. */
    uint32_t score_norm;
    /** Per-layer budgets (the PyramidKV idea): 0 (default) gives every
     *  layer the budget k; a slope b in (-1, 1) gives layer l of L
     *  k_l = floor(k * (1 + b * (L - 1 - 2l) / (L - 1))) slots (L = 1: k):
     *  for b > 0 more to the lower layers and fewer to the upper ones (a
     *  pyramid), for b < 0 the reverse, the layers' total staying within
     *  L of L * k; each layer's window is
     *  floor(recent_ratio * k_l). kf_layer_budget() reports k_l and w_l;
     *  kf_budget() the base k. Every k_l must be >= 1, fit capacity (with
     *  evict_interval B: k_l + B) and exceed n_sinks for SINKS: checked by
     *  kf_cache_create() for budget_tokens, the first kf_select() for a
     *  ratio (KF_ERANGE). NaN or infinite: KF_EINVAL; outside (-1, 1):
     *  KF_ERANGE; nonzero with KF_GRANULARITY_UNIFORM (one set of
     *  positions for every layer): KF_EINVAL. Applies to every policy
     *  that evicts. */
    float layer_slope;
    /** Attention sinks under scoring (the StreamingLLM idea on top of
     *  H2O or Keyformer): 0 (default) = off; S >= 1 keeps the tokens at
     *  positions 0 .. S - 1 in every selection of KEYFORMER and H2O, like
     *  the recent window, and ranks only the other slots for the
     *  remaining k_l - w_l - S places. Positions count from the host's
     *  first token, so these are the sequence's first S tokens. Every
     *  layer needs k_l - w_l > S (some place left to rank): checked with
     *  the budget, as for layer_slope (KF_ERANGE); S > capacity:
     *  KF_ERANGE. Ignored by the other policies (SINKS has n_sinks) and by
     *  KF_RULE_REFERENCE's generation steps, which keep the oldest slots
     *  anyway. See doc/algorithm.md, "Beyond the paper". */
    uint32_t sink_tokens;
    /** KF_HEAD_BUDGET_EVEN (0, default) or KF_HEAD_BUDGET_ADAPTIVE (1):
     *  per-KV-head budgets (the Ada-KV idea). At the layer's first
     *  selection that evicts, while in its prompt, the m = k_l - w_l - S
     *  ranked places of every KV head (S = sink_tokens) are pooled: the
     *  layer's n_kv * m places go to the highest scores over all its KV
     *  heads, each head's ranking keys divided by their sum over the
     *  head's rankable slots (fp32, summed in slot order; a sum of 0
     *  leaves them 0), so a concentrated head needs few places,
     *  with at least max(1, ceil(head_floor * m)) and at most min(2m,
     *  capacity - B - w_l - S) places per head (B = evict_interval when
     *  > 1, else 0); ties at the threshold go to the lower KV head. Head
     *  g then holds k_g = w_l + S + m_g live slots, and every head the
     *  same number of rows, R = max_g k_g (kf_slot_count()): a head with
     *  k_g < R also keeps R - k_g hole slots, chosen among its evicted
     *  slots, whose position reads -1 (kf_slot_positions(), from that
     *  selection on) and whose score is 0. Holes stay until
     *  kf_cache_reset(); each later selection keeps them and evicts
     *  back to R rows, so every head keeps its k_g live slots. The host
     *  must mask holes in its attention (a logit of -inf) and pass them
     *  masked to kf_observe_logits (else they collect score, which only
     *  shifts the others'); kf_observe_qk masks them itself. The live
     *  total stays n_kv * k_l, but a [head][row] K/V buffer holds n_kv *
     *  R rows: the memory saving needs per-head (paged) storage. KEYFORMER
     *  and H2O with KF_GRANULARITY_KV_HEAD and KF_RULE_DYNAMIC; the other
     *  policies ignore it; another granularity or rule (whatever the
     *  policy), or a value > 1: KF_EINVAL. Every layer needs m >= 1 (checked with the budget, as
     *  for sink_tokens: KF_ERANGE). A prompt within the budget (no
     *  eviction in the prompt) keeps even budgets. See doc/algorithm.md, "Beyond the paper". */
    uint32_t head_budget;
    /** Ada-KV's floor alpha in [0, 1] (KF_ERANGE outside; NaN:
     *  KF_EINVAL): the least share of the m places each KV head keeps.
     *  Read only with KF_HEAD_BUDGET_ADAPTIVE; 0 = at least 1 place. */
    float head_floor;
    uint8_t reserved[16];   /**< must be zero */
} kf_config;

/** Opaque cache: the selection state of one sequence. */
typedef struct kf_cache kf_cache;

/** `layer` value meaning every layer (kf_select, and kf_compact without
 *  views). */
#define KF_ALL_LAYERS (-1)

/** kf_logits_view.flags: the library reads only the causal part of each row
 *  (row i of a call sees slots 0 .. n_slots - n_rows + i) and never touches
 *  the rest, which may be uninitialised. */
#define KF_LOGITS_CAUSAL 1u

/** One layer's logits for the rows of one call, fp32, all query heads.
 *  Element (head h, row i, slot j) is at data[h*head_stride + i*row_stride
 *  + j]. Row i is the query of the i-th new token; its slot j is the cached
 *  token in slot j, with the n_rows new tokens in the last n_rows slots.
 *  Masked entries are -INFINITY.
 *
 *  Every view has `bytes`, the size of the caller's buffer (0: not
 *  declared), last but for kf_kv_view::row_bytes. Initialisers written
 *  before these existed, positional or designated, leave them 0 and work
 *  as before, though GCC's and Clang's -Wextra
 *  (-Wmissing-field-initializers) warn about positional ones that stop
 *  short of the last field: add the size, or 0. Code that fills a view member by
 *  member must set it too, or start from a zeroed view (`= { 0 }`): an
 *  uninitialised `bytes` is taken as a declared size. Programs compiled
 *  against a header without it pass shorter views: rebuild them. */
typedef struct kf_logits_view {
    const float *data; /**< aligned to float; may be NULL for WINDOW, SINKS
                            and FULL */
    uint32_t n_rows;   /**< new tokens in this call, >= 1 */
    uint32_t n_slots;  /**< slots held before the call + n_rows */
    size_t row_stride; /**< elements between rows; >= n_slots if n_rows > 1 */
    size_t head_stride; /**< elements between heads; rows must not overlap */
    uint32_t flags;     /**< 0 or KF_LOGITS_CAUSAL */
    /** Bytes of the caller's buffer from data on, or 0 (not declared).
     *  When nonzero, every call that takes the view fails with KF_ELAYOUT,
     *  reading nothing, if the last byte it would read (of the last row of
     *  the last head) lies past data + bytes. */
    size_t bytes;
} kf_logits_view;

/** One layer's K or V buffer of the host. Row (KV head g, slot j) of
 *  head_dim elements starts at element g*head_stride + j*token_stride of
 *  data: [head][token][dim] has token_stride = head_dim, [token][head][dim]
 *  has head_stride = head_dim. Strides are in elements, not bytes.
 *
 *  The strides describe the buffer as allocated, not the cache: a
 *  [head][row][dim] buffer of `rows` rows per KV head (rows >= capacity)
 *  has head_stride = rows * head_dim. A stride computed from capacity
 *  while the buffer holds more rows is still a valid view, of the wrong
 *  rows: no call can tell, and KV heads 1 onwards get other heads' rows.
 *  Declare `bytes` (the buffer's size) so that a view reaching past the
 *  buffer is rejected instead of read or written.
 *
 *  Quantized caches (q8_0: 34 bytes per 32 values, q4_0: 18, or any
 *  other format) use dtype KF_DTYPE_ROW_BYTES: a row is then an opaque
 *  run of row_bytes bytes that kf_compact() moves unchanged, whatever
 *  head_dim says, and the fields mean:
 *  - data: the buffer, any address (no alignment required);
 *  - n_slots: as for the other dtypes;
 *  - token_stride, head_stride: in bytes; row (g, j) starts at byte
 *    g*head_stride + j*token_stride of data, e.g. a q8_0 [head][row] buffer
 *    of head_dim 128 (row_bytes 136) has token_stride 136 and head_stride
 *    rows * 136, a [row][head] one head_stride 136 and token_stride
 *    n_kv_heads * 136. Rows must not overlap (stride >= row_bytes) and may
 *    be unaligned and of odd sizes;
 *  - bytes: as for the other dtypes, in bytes;
 *  - row_bytes: the row size, >= 1 (0 is KF_ERANGE).
 *  K and V are separate views: each has its own dtype and row size (a
 *  q8_0 K beside an f16 V is fine). */
typedef struct kf_kv_view {
    void *data;          /**< aligned to the element size (any address for
                              KF_DTYPE_ROW_BYTES) */
    kf_dtype dtype;      /**< element type */
    uint32_t n_slots;    /**< rows per head in use = kf_slot_count() (+ the
                              new rows for kf_observe_qk), not the buffer's */
    size_t token_stride; /**< elements between slots of one head (bytes
                              for KF_DTYPE_ROW_BYTES) */
    size_t head_stride;  /**< elements between KV heads: for [head][row][dim]
                              the buffer's rows per head * head_dim (bytes
                              for KF_DTYPE_ROW_BYTES) */
    /** Bytes of the caller's buffer from data on, or 0 (not declared).
     *  When nonzero, kf_observe_qk() and kf_compact() fail with KF_ELAYOUT,
     *  touching nothing, if the last byte they would touch (of row n_slots
     *  - 1 of the last KV head) lies past data + bytes. */
    size_t bytes;
    /** KF_DTYPE_ROW_BYTES only: bytes per row (KV head, slot), >= 1. Read
     *  for that dtype alone; the other dtypes' rows are head_dim elements
     *  and ignore it (leave it 0). */
    size_t row_bytes;
} kf_kv_view;

/** One layer's query rows for kf_observe_qk(), fp32, all query heads.
 *  Row (head h, row i) of head_dim elements starts at element
 *  h*head_stride + i*row_stride of data: [head][row][dim] has
 *  row_stride = head_dim, [row][head][dim] has head_stride = head_dim and
 *  row_stride = n_heads * head_dim. Row i is the query of the i-th new
 *  token exactly as the host's attention uses it (RoPE already applied). */
typedef struct kf_query_view {
    const float *data;  /**< aligned to float; may be NULL for WINDOW,
                             SINKS and FULL */
    uint32_t n_rows;    /**< new tokens in this call, >= 1 */
    size_t row_stride;  /**< elements between rows of one head */
    size_t head_stride; /**< elements between query heads */
    /** Logit = scale * (q . k): >= 0, finite; 0 means 1/sqrt(head_dim). */
    float scale;
    uint32_t flags;     /**< 0 or KF_LOGITS_CAUSAL */
    /** Bytes of the caller's buffer from data on, or 0 (not declared), as
     *  kf_logits_view::bytes: a call that would read past it fails with
     *  KF_ELAYOUT. */
    size_t bytes;
} kf_query_view;

/** Fill *cfg with the defaults, the fast path: Keyformer, budget 0.5 of
 *  the prompt, recent 0.3, tau 1 -> 2 over 128 steps, 4 sinks, seed 0,
 *  one eviction per generated token (evict_interval 1), KF_ORDER_ANY
 *  (an eviction moves one row, not the rows behind it) and
 *  KF_NOISE_TABLE (one table lookup per logit instead of two ln), every
 *  instruction set allowed (cpu_mask = KF_CPU_ALL). The kept tokens are
 *  the spec's per-step eviction with the discretised Gumbel noise of
 *  KF_NOISE_TABLE; kf_config_spec_exact() gives the spec to the letter.
 *  The shape fields (n_layers .. capacity) are zero and must be set.
 *  Returns KF_OK, or KF_EINVAL if cfg is NULL. Thread-safe. */
KF_API int kf_config_default(kf_config *cfg);

/** Fill *cfg with kf_config_default()'s values except the two that
 *  doc/algorithm.md fixes differently: slot_order = KF_ORDER_POSITION
 *  (slots in ascending position) and noise = KF_NOISE_EXACT (the
 *  continuous Gumbel sample). Slower (doc/performance.md); for checking
 *  the method against its statement. Returns KF_OK, or KF_EINVAL if cfg
 *  is NULL. Thread-safe. */
KF_API int kf_config_spec_exact(kf_config *cfg);

/** Create a cache for one sequence. All memory is allocated here.
 *  @param out  receives the new cache; set to NULL on failure.
 *  @param cfg  borrowed for the call (the cache keeps a copy).
 *  @return KF_OK; KF_EINVAL (NULL, bad enum, one allocator hook missing,
 *  nonzero reserved, non-finite float, both or neither budget given for a
 *  policy that evicts); KF_ERANGE (zero shape, n_heads not a multiple of
 *  n_kv_heads, budget_tokens > capacity, recent_ratio outside [0, 1],
 *  negative budget_ratio, tau <= 0 or so small that 1/tau overflows,
 *  tau_steps 0, SINKS with budget_tokens <= n_sinks, capacity above
 *  2^31 - 1, n_threads above 1024, evict_interval above capacity,
 *  evict_interval B > 1 with budget_tokens + B above capacity);
 *  KF_EOVERFLOW (total size overflows); KF_ENOMEM.
 *  Thread-safe. */
KF_API int kf_cache_create(kf_cache **out, const kf_config *cfg);

/** Free the cache and set *cache to NULL. NULL or *cache NULL is a no-op. */
KF_API void kf_cache_destroy(kf_cache **cache);

/** Forget the sequence (slots, scores, positions, steps, resolved budget)
 *  and start a new one with the same settings, without allocating.
 *  Returns KF_OK or KF_EINVAL (NULL). */
KF_API int kf_cache_reset(kf_cache *cache);

/** Copy the whole selection state of `src` onto `dst`, so that beam search
 *  or parallel sampling can branch after one shared prefill: afterwards
 *  every query on dst answers as on src, and the same calls on both give
 *  the same results, bit for bit (the noise is keyed by seed and
 *  position). Copied: every layer's slots, positions, scores and pending
 *  keep lists, phase (prompt or generation), steps and next position,
 *  the budget k and window w fixed at the prompt, and the removed
 *  positions of UNIFORM. dst's own state, and an open
 *  kf_observe_begin() round of dst, are replaced (as by kf_cache_reset()).
 *  The two caches are independent afterwards: later calls on either
 *  never affect the other.
 *
 *  dst must have been created with the same configuration: every field
 *  that decides results or buffer sizes is compared (n_layers, n_heads,
 *  n_kv_heads, head_dim, capacity, policy, rule, granularity,
 *  budget_tokens, budget_ratio, recent_ratio, n_sinks, tau_init, tau_end,
 *  tau_steps, seed, evict_interval, slot_order, noise, obs_window,
 *  pool_kernel, pool_mode, score_norm, layer_slope). n_threads,
 *  cpu_mask and allocator may differ (they change speed and where memory
 *  comes from, never results), and each cache keeps its own. Nothing is
 *  allocated.
 *
 *  The library holds no K/V: the host copies its own K and V buffers (the
 *  first kf_slot_count() rows of every KV head of every layer, in the
 *  same slot order) from src's sequence to dst's along with this call.
 *  @param dst  the cache that receives the state; not used by any other
 *              thread during the call.
 *  @param src  the cache copied; only read, so other threads may run the
 *              const query functions on it meanwhile (no mutating call).
 *  @return KF_OK; KF_EINVAL (NULL, or dst and src the same cache);
 *  KF_EMISMATCH (a compared configuration field differs); KF_ESTATE (src
 *  has a kf_observe_begin() round open: end it first). A failed call
 *  changes neither cache. */
KF_API int kf_cache_copy_state(kf_cache *dst, const kf_cache *src);

/** Hand over the logits of layer `layer` for n_rows new tokens, which
 *  become the last n_rows slots of every KV head of the layer, at original
 *  positions following the layer's previous ones. KEYFORMER accumulates
 *  softmax((x + Gumbel noise) / tau) and H2O softmax(x) into each slot's
 *  score, summed over the query heads of each KV head; the other policies
 *  only record the new slots. Prompt rows use tau_init; generation row t
 *  (t = 1, 2, ... counted per layer) uses the tau schedule.
 *  May be called several times before kf_select (chunked prefill). A
 *  prompt in chunks adds the same terms to each score as one call, but
 *  rounds differently (one call fuses each row into the running sum,
 *  a later call adds its own rounded sum): each score differs from the
 *  one-call score by at most m * 2^-23 of it, m = prompt rows x query
 *  heads per KV head, and the selections differ only where scores lie
 *  that close.
 *  @return KF_OK; KF_EINVAL (NULL cache/view, NULL data for a scoring
 *  policy, unknown flags, n_rows 0); KF_ERANGE (layer out of range, slots
 *  would exceed capacity, or positions 2^31); KF_EMISMATCH (n_slots is not
 *  the layer's slot count + n_rows); KF_ELAYOUT (data not aligned to
 *  float, row_stride or head_stride too small, or the rows reach past a
 *  declared view->bytes); KF_EOVERFLOW; KF_ESTATE (a selection awaits
 *  kf_compact, or
 *  a kf_observe_begin round is open); KF_ENAN (a visible logit is NaN or
 *  +inf); KF_EEMPTYROW (a row of some head has no visible finite logit).
 *  NaN is rejected, never treated as -inf: it signals a host bug. A failed
 *  call leaves the cache unchanged. */
KF_API int kf_observe_logits(kf_cache *cache, int layer,
                             const kf_logits_view *view);

/** Start a round that hands over the logits of `layer` one KV head at a
 *  time, for hosts that compute attention head by head (often on their own
 *  threads) and would rather not keep every head's logits until the layer
 *  is done: the library scores a KV head's rows while they are still in
 *  the CPU cache, before the host's softmax overwrites them.
 *
 *      kf_observe_begin(cache, l, n_rows);
 *      for each KV head g (any order, on any thread):
 *          kf_observe_kv_head(cache, l, g, &group_view);
 *      kf_observe_end(cache, l);   // the rows become slots here
 *
 *  The round gives the same slots, positions and scores, bit for bit, as
 *  one kf_observe_logits() call with the same rows. Until kf_observe_end()
 *  the layer's slots do not change, and every other call that changes the
 *  cache (observe, select, compact of any layer) returns KF_ESTATE; queries
 *  work, and kf_cache_reset() drops the round.
 *  @param cache   the sequence's cache.
 *  @param layer   0 .. n_layers - 1.
 *  @param n_rows  new tokens in this round, >= 1.
 *  @return KF_OK; KF_EINVAL (NULL, n_rows 0); KF_ERANGE (layer out of
 *  range, slots would exceed capacity, or positions 2^31); KF_ESTATE (a
 *  round is already open, or a selection of `layer` awaits kf_compact).
 *  A failed call changes nothing. Not thread-safe. */
KF_API int kf_observe_begin(kf_cache *cache, int layer, uint32_t n_rows);

/** The logits of KV head `kv_head` in the open round of `layer`: the
 *  view holds that head's G = n_heads / n_kv_heads query heads, view head
 *  m being query head kv_head * G + m, with exactly the layout, flags and
 *  meaning of kf_logits_view (n_rows = the round's, n_slots = the layer's
 *  slot count + n_rows). Scores it on the calling thread (no OpenMP).
 *  Calls for different KV heads of the round may run concurrently; each KV
 *  head is handed over once.
 *  @param cache    the sequence's cache, with a round open.
 *  @param layer    the round's layer.
 *  @param kv_head  0 .. n_kv_heads - 1.
 *  @param view     that KV head's logits; borrowed for the call.
 *  @return KF_OK; KF_EINVAL (NULL cache/view, NULL data for a scoring
 *  policy, unknown flags, n_rows 0); KF_ERANGE (layer or kv_head out of
 *  range); KF_ESTATE (no round open for `layer`, or this KV head already
 *  handed over); KF_EMISMATCH (n_rows differs from the round's, or n_slots
 *  from the slot count + n_rows); KF_ELAYOUT (as kf_observe_logits:
 *  misaligned data, overlapping rows, past view->bytes); KF_EOVERFLOW;
 *  KF_ENAN;
 *  KF_EEMPTYROW (as kf_observe_logits). A failed call changes nothing: the
 *  KV head can be handed over again. */
KF_API int kf_observe_kv_head(kf_cache *cache, int layer, int kv_head,
                              const kf_logits_view *view);

/** Close the round of `layer`: when every KV head was handed over, the
 *  round's rows become the layer's last slots, as after kf_observe_logits.
 *  Otherwise nothing is committed and the layer stays as it was before
 *  kf_observe_begin. Either way the round is closed.
 *  @param cache  the sequence's cache.
 *  @param layer  the round's layer.
 *  @return KF_OK; KF_EINVAL (NULL); KF_ERANGE (layer); KF_ESTATE (no round
 *  open for `layer`, or some KV head missing: the round was dropped). Not
 *  thread-safe: call it after the KV heads' calls have returned. */
KF_API int kf_observe_end(kf_cache *cache, int layer);

/** kf_observe_logits() for hosts whose attention never materialises the
 *  logits (fused or flash attention): the library computes them itself as
 *  x[h][i][j] = scale * (q[h][i] . k[g][j]), g = h / (n_heads / n_kv_heads),
 *  and observes them with exactly the semantics of kf_observe_logits: the
 *  n_rows new tokens become the last n_rows slots of every KV head, and with
 *  KF_LOGITS_CAUSAL row i sees slots 0 .. n_slots - n_rows + i only.
 *  @param cache  the sequence's cache.
 *  @param layer  0 .. n_layers - 1.
 *  @param q  the new tokens' queries, see kf_query_view.
 *  @param k  the layer's K buffer, already holding the new tokens' keys in
 *            its last n_rows slots: k->n_slots = kf_slot_count() + n_rows
 *            (the same view kf_compact() takes after the selection). f32,
 *            f16 or bf16 (not KF_DTYPE_ROW_BYTES: KF_EINVAL), any
 *            strides. May be NULL for WINDOW, SINKS, FULL.
 *  Keys are converted to fp32 and each product is summed in a fixed order,
 *  so results do not depend on the thread count. Nothing is allocated: the
 *  scratch (per thread, min(32, capacity) x capacity logits and 64 x
 *  head_dim keys, scoring policies only) is part of kf_cache_create() and
 *  counted by kf_cache_memory(). An additive bias (ALiBi) is not supported
 *  here: such hosts pass their biased logits to kf_observe_logits().
 *  @return KF_OK; KF_EINVAL (NULL cache or q; NULL q->data, k or k->data
 *  for a scoring policy; k->data NULL; unknown flags; n_rows 0; bad dtype;
 *  scale negative, NaN or infinite); KF_ERANGE (layer out of range, slots
 *  would exceed capacity, or positions 2^31); KF_EMISMATCH (k->n_slots is
 *  not the layer's slot count + n_rows); KF_ELAYOUT (rows of q or k
 *  overlap, data misaligned, or rows past a declared q->bytes or
 *  k->bytes); KF_EOVERFLOW; KF_ESTATE (a selection
 *  awaits kf_compact); KF_ENAN (a visible logit is NaN or +inf, from NaN or
 *  infinite q or k values); KF_EEMPTYROW (a row of some head has no visible
 *  finite logit). A failed call leaves the cache unchanged. */
KF_API int kf_observe_qk(kf_cache *cache, int layer, const kf_query_view *q,
                         const kf_kv_view *k);

/** Decide which slots of `layer` survive (or of every layer with
 *  KF_ALL_LAYERS, which UNIFORM granularity requires). The first call per
 *  layer ends its prompt phase and, for a ratio budget, fixes k from the
 *  prompt length. When the layer holds more than k slots (in the
 *  generation phase with evict_interval B > 1: k + B or more; fewer are all
 *  kept): KEYFORMER and H2O
 *  keep the last w slots plus the k - w highest scores among the others
 *  (lower position wins ties; under KF_RULE_REFERENCE a generation step
 *  keeps the first k - w and the last w slots instead); WINDOW keeps the
 *  last k; SINKS the first n_sinks and the last k - n_sinks; FULL keeps all.
 *  Options beyond the paper change the scores ranked: pool_kernel pools a
 *  prompt selection's scores first (and stores them), score_norm ranks by
 *  score per query row that could see the slot (kf_config).
 *  The choice is visible through kf_kept_slots() and applied by kf_compact().
 *  @return KF_OK; KF_EINVAL (NULL); KF_ERANGE (layer out of range, resolved
 *  k is 0, above capacity, not above n_sinks for SINKS, or, with
 *  evict_interval B > 1, k + B above capacity); KF_ESTATE
 *  (nothing observed since the last compaction, a selection already waits,
 *  a single layer asked under UNIFORM, layers out of step under UNIFORM, or
 *  a layer's prompt length differs from the one that fixed k). */
KF_API int kf_select(kf_cache *cache, int layer);

/** Apply the last selection of `layer`: move the kept rows of the host's K
 *  and V buffers to the front of each head, in place, in ascending order
 *  (KF_ORDER_ANY: kept rows below the new count stay, and each evicted one
 *  there takes a kept row from above it, in ascending order of both),
 *  bit-exact; the library's own scores and positions move with them.
 *  k_view and v_view may each be NULL (library state only, for hosts that
 *  drop positions themselves); with both NULL, layer may be KF_ALL_LAYERS.
 *  Rows past the new slot count are left as they were.
 *  K and V must occupy disjoint address ranges. Each view has its own
 *  dtype: quantized rows (KF_DTYPE_ROW_BYTES) move as opaque bytes, of
 *  any size and alignment, as exactly as the other dtypes.
 *  @return KF_OK; KF_EINVAL (NULL cache, NULL data, bad dtype, views with
 *  KF_ALL_LAYERS); KF_ERANGE (layer, or row_bytes 0 for
 *  KF_DTYPE_ROW_BYTES); KF_ESTATE (no selection waits:
 *  compact before select); KF_EMISMATCH (view n_slots differs from
 *  kf_slot_count); KF_ELAYOUT (rows overlap, data misaligned, rows past
 *  a declared view bytes, K and V ranges overlap); KF_EOVERFLOW. */
KF_API int kf_compact(kf_cache *cache, int layer, const kf_kv_view *k_view,
                      const kf_kv_view *v_view);

/** Kept source slots of (layer, kv_head) from the last kf_select, in
 *  ascending order, valid until kf_compact. *n receives the count.
 *  @return KF_OK; KF_EINVAL (NULL); KF_ERANGE; KF_ESTATE (no selection). */
KF_API int kf_kept_slots(const kf_cache *cache, int layer, int kv_head,
                         const uint32_t **slots, uint32_t *n);

/** Slots currently held by (layer, kv_head), including observed rows not
 *  yet selected. @return KF_OK, KF_EINVAL, KF_ERANGE. */
KF_API int kf_slot_count(const kf_cache *cache, int layer, int kv_head,
                         uint32_t *n);

/** Original positions of the slots of (layer, kv_head), ascending (in slot
 *  order with KF_ORDER_ANY); *n gets the slot count.
 *  @return KF_OK, KF_EINVAL, KF_ERANGE. */
KF_API int kf_slot_positions(const kf_cache *cache, int layer, int kv_head,
                             const int32_t **positions, uint32_t *n);

/** Accumulated scores of the slots of (layer, kv_head) (all zero for
 *  WINDOW, SINKS, FULL). @return KF_OK, KF_EINVAL, KF_ERANGE. */
KF_API int kf_slot_scores(const kf_cache *cache, int layer, int kv_head,
                          const float **scores, uint32_t *n);

/** Generation steps (rows observed after the prompt) of `layer`, and the
 *  position the next token of that layer will get.
 *  @return KF_OK, KF_EINVAL, KF_ERANGE. */
KF_API int kf_layer_progress(const kf_cache *cache, int layer,
                             uint32_t *steps, int32_t *next_position);

/** Temperature of the next row observed for `layer`: under
 *  KF_POLICY_KEYFORMER tau_init during the prompt, then the schedule;
 *  under every other policy 1, whatever tau_init, tau_end and tau_steps
 *  say (H2O scores plain softmax(x), WINDOW, SINKS and FULL score
 *  nothing, so the schedule has no effect there).
 *  @return KF_OK, KF_EINVAL, KF_ERANGE. */
KF_API int kf_current_tau(const kf_cache *cache, int layer, float *tau);

/** Budget k and window w once fixed (absolute budget: from creation; ratio:
 *  from the first kf_select). FULL reports capacity and 0.
 *  @return KF_OK, KF_EINVAL, KF_ESTATE (not fixed yet). */
KF_API int kf_budget(const kf_cache *cache, uint32_t *k, uint32_t *w);

/** Budget k_l and window w_l of `layer` once fixed: k and w, or with
 *  kf_config::layer_slope the layer's own share. FULL reports capacity
 *  and 0.
 *  @return KF_OK, KF_EINVAL (NULL), KF_ERANGE (layer), KF_ESTATE (not
 *  fixed yet). */
KF_API int kf_layer_budget(const kf_cache *cache, int layer, uint32_t *k,
                           uint32_t *w);

/** UNIFORM granularity: original positions removed by the last selection,
 *  ascending (what a position-cell engine must delete). Available from
 *  kf_select until the next observe or reset (compaction keeps it).
 *  @return KF_OK; KF_EINVAL; KF_ESTATE (not UNIFORM, or no selection since
 *  the last observe). */
KF_API int kf_removed_positions(const kf_cache *cache,
                                const int32_t **positions, uint32_t *n);

/** Bytes the cache allocated: the state (per (layer, KV head) lane,
 *  capacity x 12 bytes of scores, positions and keep lists) plus scratch,
 *  part of it per thread. With T threads (n_threads, or the OpenMP
 *  default when 0, resolved at creation) each thread adds capacity x
 *  (4 x min(G, 16) + 4) bytes (score rows and selection keys, G =
 *  n_heads / n_kv_heads; G counts as 1 for WINDOW, SINKS and FULL), and
 *  under KEYFORMER and H2O also min(32, capacity) x capacity x 4 + 64 x
 *  head_dim x 4 bytes (kf_observe_qk's logits and keys), each array
 *  rounded up to 64 bytes. So the same configuration reports more bytes
 *  with more threads. @return KF_OK, KF_EINVAL. */
KF_API int kf_cache_memory(const kf_cache *cache, size_t *bytes);

/** Copy of the configuration the cache was created with.
 *  @return KF_OK, KF_EINVAL. */
KF_API int kf_cache_config(const kf_cache *cache, kf_config *cfg);

/* ---- Instruction sets ----
 * Every kernel has a portable C version (the specification) and, where it
 * pays, AVX2, AVX-512 and NEON versions that return bit-identical results:
 * the same scores, selections and bytes on every machine. The masks below
 * only change speed. A cache picks its kernels at creation from
 * kf_cpu_flags() & cfg.cpu_mask & KF_CPU_MASK, where KF_CPU_MASK is an
 * environment variable holding a number as C's strtoul reads it (decimal,
 * 0x... hex or 0... octal): KF_CPU_MASK=0 forces the C kernels,
 * KF_CPU_MASK=1 allows AVX2 only. Unset, empty, negative, out-of-range or
 * non-numeric text is ignored (all bits allowed). */

#define KF_CPU_AVX2 0x1u   /**< x86-64 AVX2 + FMA, OS saves YMM state */
#define KF_CPU_AVX512 0x2u /**< x86-64 AVX-512 F+BW+DQ+VL, OS saves ZMM */
#define KF_CPU_NEON 0x4u   /**< AArch64 Advanced SIMD */
#define KF_CPU_ALL 0xffffffffu /**< every instruction set, now and later */

/** Instruction sets this CPU and OS support (KF_CPU_* bits), regardless of
 *  any mask. Detected on the first call. Thread-safe. */
KF_API unsigned kf_cpu_flags(void);

/** Re-pick the kernels of a live cache from kf_cpu_flags() & mask. The
 *  mask replaces the creation-time one (cfg.cpu_mask & KF_CPU_MASK); the
 *  environment is not read again. Unknown bits are allowed and ignored, so
 *  KF_CPU_ALL restores the fastest kernels and 0 forces portable C.
 *  Results never change, only speed. Mutates the cache: not concurrently
 *  with other calls on the same cache.
 *  @return KF_OK, or KF_EINVAL (NULL cache). */
KF_API int kf_cache_set_cpu_mask(kf_cache *cache, uint32_t mask);

/** The mask in force (creation: cfg.cpu_mask & KF_CPU_MASK; or the last
 *  kf_cache_set_cpu_mask) into *mask; what runs is this & kf_cpu_flags().
 *  @return KF_OK, or KF_EINVAL (NULL). */
KF_API int kf_cache_cpu_mask(const kf_cache *cache, uint32_t *mask);

/** Which variant the cache runs for kernel number `index` (0, 1, ... in a
 *  fixed order): *kernel receives its name ("score_gumbel",
 *  "score_softmax", "select_top", "compact_rows", "dot_rows" (the logits
 *  of kf_observe_qk), "score_table" (KF_NOISE_TABLE)), *isa the instruction
 *  set ("c", "avx2", "avx512", "neon"). Both are static strings. Iterate
 *  from 0 until KF_ERANGE to list every kernel.
 *  @return KF_OK; KF_EINVAL (NULL pointer); KF_ERANGE (index past the
 *  last kernel). */
KF_API int kf_cache_kernel_isa(const kf_cache *cache, unsigned index,
                               const char **kernel, const char **isa);

/** Static English message for a status code ("unknown error" otherwise).
 *  Thread-safe. */
KF_API const char *kf_strerror(int status);

/** Runtime version string "MAJOR.MINOR.PATCH". Thread-safe. */
KF_API const char *kf_version(void);

/** Runtime version number as KF_VERSION_NUMBER. Thread-safe. */
KF_API unsigned kf_version_number(void);

#ifdef __cplusplus
}
#endif

#endif /* KEYFORMER_H */
