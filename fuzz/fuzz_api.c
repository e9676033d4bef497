/* fuzz_api: sequences of public API calls decoded from the input bytes.
 *
 * The input first describes a configuration (often valid, sometimes broken
 * in one or more fields), then a program of calls: observe with random
 * shapes, strides, flags and values; select on one layer or all; compact
 * with random K/V views of every dtype; queries; reset; destroy and create
 * again. A failing allocator hook fails the N-th allocation the input asks
 * for. After every call the target checks what keyformer.h promises and
 * abort()s otherwise:
 *   - a failed call returns a code documented for that function and leaves
 *     the cache exactly as it was (test_cache_digest, kf_cache_memory) and
 *     the host's K/V buffers untouched;
 *   - a call the header makes valid succeeds, one it makes invalid fails;
 *   - after observe the slot count and positions advance, scores stay
 *     finite, non-negative and never decrease;
 *   - after select the keep lists ascend, hold min(n, k) slots, keep the
 *     window and the policy's fixed slots, and (scoring policies) every
 *     kept older slot outranks every evicted one;
 *   - after compact the host rows, scores and positions are exactly the
 *     kept ones, positions strictly ascend and slots <= k;
 *   - reset gives back the state of a fresh cache; destroy frees every
 *     block the cache allocated, through the hook that allocated it;
 *   - a state copy (kf_cache_copy_state) into a cache of the same
 *     configuration answers every query as the original, and the program
 *     may go on with the copy; one into another configuration fails with
 *     KF_EMISMATCH, changing neither cache.
 * The target never lets the library touch memory it did not allocate for
 * it: every buffer is sized from the view passed with it. */
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "fuzz_producer.h"
#include "keyformer.h"
#include "testutil.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


/* FUZZ_API_TRACE=1 prints every call and its status: the reproducer of a
 * failure is the input file plus this trace. */
static int tracing(void)
{
    static int on = -1;
    if (on < 0) {
        const char *env = getenv("FUZZ_API_TRACE");
        on = env && env[0] && env[0] != '0';
    }
    return on;
}

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void trace(const char *format, ...)
{
    if (!tracing())
        return;
    va_list args;
    va_start(args, format);
    vfprintf(stderr, format, args);
    va_end(args);
}

static void check_failed(const char *what, int line)
{
    fprintf(stderr, "fuzz_api: line %d: check failed: %s\n", line, what);
    abort();
}

/* Fuzzer-side caps: keep each input fast and every buffer small. */
#define MAX_BUFFER_BYTES ((size_t)1 << 20)
#define MAX_LAYERS 3u
#define MAX_KV_HEADS 3u
#define MAX_GROUP 3u
#define MAX_HEAD_DIM 6u
#define MAX_CAPACITY 48u
#define MAX_STEPS 256

/* ---- allocator hook: fails on request, tracks every block ---- */

#define MAX_BLOCKS 4

typedef struct fz_alloc {
    unsigned calls;   /* allocation requests so far in this input */
    unsigned fail_at; /* request number that fails (1-based), 0 = none */
    size_t limit;     /* larger requests fail: the fuzzer's memory cap */
    void *blocks[MAX_BLOCKS];
    int live;
} fz_alloc;

static void *hook_alloc(void *opaque, size_t size, size_t align)
{
    fz_alloc *a = opaque;
    CHECK(align >= 1 && align <= 64 && (align & (align - 1)) == 0);
    CHECK(size > 0);
    a->calls++;
    if (a->calls == a->fail_at || size > a->limit || a->live == MAX_BLOCKS)
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align,
                       size))
        return NULL;
    memset(p, 0xa5, size); /* the library must not rely on zeroed memory */
    a->blocks[a->live++] = p;
    return p;
}

static void hook_free(void *opaque, void *ptr)
{
    fz_alloc *a = opaque;
    for (int i = 0; i < a->live; i++)
        if (a->blocks[i] == ptr) {
            a->blocks[i] = a->blocks[--a->live];
            free(ptr);
            return;
        }
    check_failed("free of a block the hook did not allocate", __LINE__);
}

/* ---- what the fuzzer knows about the live cache ---- */

typedef struct session {
    fz_input in;
    fz_alloc alloc;
    kf_cache *cache;
    kf_config cfg;
    uint64_t fresh_digest; /* right after create */
    size_t fresh_bytes;
    /* per layer, updated only by successful calls (failed calls change
     * nothing, which is checked) */
    uint8_t observed[MAX_LAYERS];    /* rows wait for a selection */
    uint8_t prompt_done[MAX_LAYERS]; /* a selection happened */
    /* obs_window: the position of the first row the scores hold (a
     * prompt call of >= W rows replaced them), for score_norm's model */
    int32_t score_from[MAX_LAYERS];
    /* head_budget ADAPTIVE: the rows R every KV head keeps since the
     * prompt's split (0: no split, the layer keeps k_l) */
    uint32_t rows[MAX_LAYERS];
    int plan_layer; /* the layer of the logits being planned */
    int removed_valid; /* UNIFORM: a selection, no observe since */
} session;

static int scoring_policy(kf_policy p)
{
    return p == KF_POLICY_KEYFORMER || p == KF_POLICY_H2O;
}

static int scoring(const session *s)
{
    return scoring_policy(s->cfg.policy);
}

/* Codes each entry point may return (keyformer.h). */
#define BIT(code) (1u << (unsigned)-(code))
#define CODES_CREATE                                                          \
    (BIT(KF_EINVAL) | BIT(KF_ERANGE) | BIT(KF_EOVERFLOW) | BIT(KF_ENOMEM))
#define CODES_OBSERVE                                                         \
    (BIT(KF_EINVAL) | BIT(KF_ERANGE) | BIT(KF_EMISMATCH) | BIT(KF_ELAYOUT)    \
     | BIT(KF_EOVERFLOW) | BIT(KF_ESTATE) | BIT(KF_ENAN) | BIT(KF_EEMPTYROW))
#define CODES_SELECT (BIT(KF_EINVAL) | BIT(KF_ERANGE) | BIT(KF_ESTATE))
#define CODES_COMPACT                                                         \
    (BIT(KF_EINVAL) | BIT(KF_ERANGE) | BIT(KF_ESTATE) | BIT(KF_EMISMATCH)     \
     | BIT(KF_ELAYOUT) | BIT(KF_EOVERFLOW))
#define CODES_QUERY (BIT(KF_EINVAL) | BIT(KF_ERANGE))

static void check_code(int status, unsigned allowed)
{
    CHECK(status <= 0 && status >= KF_EMISMATCH);
    if (status)
        CHECK(allowed & BIT(status));
    const char *msg = kf_strerror(status);
    CHECK(msg && msg[0] && strcmp(msg, kf_strerror(-1000)) != 0);
}

typedef struct snapshot {
    uint64_t digest;
    size_t bytes;
} snapshot;

static snapshot snap(const kf_cache *c)
{
    snapshot s = { test_cache_digest(c), 0 };
    CHECK(kf_cache_memory(c, &s.bytes) == KF_OK);
    return s;
}

static void check_unchanged(const kf_cache *c, snapshot before)
{
    snapshot now = snap(c);
    CHECK(now.digest == before.digest);
    CHECK(now.bytes == before.bytes);
}

static int checked_mul(size_t a, size_t b, size_t *out)
{
    if (b && a > SIZE_MAX / b)
        return 0;
    *out = a * b;
    return 1;
}

/* Element extent of na x nb rows of len elements at strides (sa, sb), the
 * way keyformer.h defines the layouts; 0 on overflow. */
static int extent_of(size_t len, size_t sa, size_t na, size_t sb, size_t nb,
                     size_t *ext)
{
    size_t a, b;
    if (!checked_mul(na ? na - 1 : 0, sa, &a)
        || !checked_mul(nb ? nb - 1 : 0, sb, &b) || a > SIZE_MAX - b
        || a + b > SIZE_MAX - len)
        return 0;
    *ext = a + b + len;
    return 1;
}

/* Combines two verdicts: 0 invalid wins, then -1 open, then 1 valid. */
static int verdict_and(int a, int b)
{
    if (a == 0 || b == 0)
        return 0;
    return a < 0 || b < 0 ? -1 : 1;
}

/* A tiny deterministic generator for bulk data, seeded from the input so
 * inputs stay short. */
static uint32_t bulk_next(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return (uint32_t)(*st >> 16);
}

/* Ranking order of scores as keyformer.h defines it (-0 == +0). */
static uint32_t rank_key(float f)
{
    uint32_t u;
    if (f == 0.0f)
        f = 0.0f;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* ---- configuration ---- */

static const double k_ratios[] = { 0.5, 0.25, 1.0, 0.75, 0.1, 2.0, 1e-300 };
static const double k_recent[] = { 0.3, 0.0, 1.0, 0.5, 0.999 };
static const float k_taus[] = { 1.0f, 2.0f, 0.5f, 1e-3f, 100.0f, 1e-30f, 3e38f };

/* What keyformer.h says kf_cache_create does with cfg: 1 succeeds (unless
 * the allocator fails or the size overflows), 0 fails, -1 left open. */
static int config_verdict(const kf_config *cfg)
{
    int bad = 0, open = 0;
    for (size_t i = 0; i < sizeof cfg->reserved; i++)
        bad |= cfg->reserved[i] != 0;
    bad |= (unsigned)cfg->policy > KF_POLICY_FULL
           || (unsigned)cfg->rule > KF_RULE_REFERENCE
           || (unsigned)cfg->granularity > KF_GRANULARITY_UNIFORM;
    bad |= !cfg->allocator.alloc != !cfg->allocator.free;
    bad |= !isfinite(cfg->budget_ratio) || !isfinite(cfg->recent_ratio)
           || !isfinite(cfg->tau_init) || !isfinite(cfg->tau_end);
    bad |= !cfg->n_layers || !cfg->n_heads || !cfg->n_kv_heads
           || !cfg->head_dim || !cfg->capacity
           || (cfg->n_kv_heads && cfg->n_heads % cfg->n_kv_heads)
           || cfg->capacity > (uint32_t)INT32_MAX
           || cfg->evict_interval > cfg->capacity;
    bad |= (unsigned)cfg->slot_order > KF_ORDER_ANY;
    bad |= (unsigned)cfg->noise > KF_NOISE_TABLE;
    /* the options beyond the paper */
    bad |= cfg->pool_mode > KF_POOL_AVG || cfg->score_norm > KF_SCORE_NORM_SEEN;
    bad |= !isfinite(cfg->layer_slope) || !(cfg->layer_slope > -1.0f)
           || cfg->layer_slope >= 1.0f
           || (cfg->layer_slope != 0.0f && cfg->granularity == KF_GRANULARITY_UNIFORM);
    /* an absolute budget: every layer's share fits (a ratio's: at select) */
    if (cfg->layer_slope != 0.0f && cfg->layer_slope > -1.0f && cfg->layer_slope < 1.0f
        && cfg->n_layers >= 2
        && cfg->budget_tokens && cfg->policy != KF_POLICY_FULL
        && cfg->budget_tokens <= cfg->capacity && cfg->capacity <= (uint32_t)INT32_MAX) {
        /* (k_l < 2k < 2^32: no out-of-range conversion) */
        double L1 = (double)cfg->n_layers - 1.0;
        for (uint32_t l = 0; l < cfg->n_layers && l < 64; l++) {
            uint32_t kl = (uint32_t)((double)cfg->budget_tokens
                                     * (1.0 + (double)cfg->layer_slope * (L1 - 2.0 * l) / L1));
            bad |= kl < 1 || kl > cfg->capacity
                   || (cfg->evict_interval > 1
                       && (uint64_t)kl + cfg->evict_interval > cfg->capacity)
                   || (cfg->policy == KF_POLICY_SINKS && kl <= cfg->n_sinks)
                   || ((cfg->sink_tokens || cfg->head_budget == KF_HEAD_BUDGET_ADAPTIVE)
                       && scoring_policy(cfg->policy) && cfg->recent_ratio >= 0.0
                       && cfg->recent_ratio <= 1.0
                       && kl - (uint32_t)(cfg->recent_ratio * kl) <= cfg->sink_tokens);
        }
        open |= cfg->n_layers > 64;
    }
    /* head_budget: the mode, the floor, and only per-KV-head dynamic */
    bad |= cfg->head_budget > KF_HEAD_BUDGET_ADAPTIVE || !isfinite(cfg->head_floor)
           || !(cfg->head_floor >= 0.0f && cfg->head_floor <= 1.0f)
           || (cfg->head_budget == KF_HEAD_BUDGET_ADAPTIVE
               && (cfg->granularity != KF_GRANULARITY_KV_HEAD
                   || cfg->rule != KF_RULE_DYNAMIC));
    bad |= cfg->obs_window > cfg->capacity || cfg->sink_tokens > cfg->capacity
           || (cfg->pool_kernel > 1
               && (cfg->pool_kernel % 2 == 0 || cfg->pool_kernel > 255
                   || cfg->pool_kernel > cfg->capacity));
    int tokens = cfg->budget_tokens > 0, ratio = cfg->budget_ratio != 0.0;
    if (cfg->policy != KF_POLICY_FULL) {
        bad |= tokens == ratio || cfg->budget_tokens > cfg->capacity;
        bad |= cfg->policy == KF_POLICY_SINKS && tokens
               && cfg->budget_tokens <= cfg->n_sinks;
        /* sink_tokens: an absolute budget leaves k - w > S places (any
         * slope: checked per layer above) */
        if (tokens && (cfg->sink_tokens || cfg->head_budget == KF_HEAD_BUDGET_ADAPTIVE)
            && scoring_policy(cfg->policy)
            && (cfg->layer_slope == 0.0f || cfg->n_layers < 2) && cfg->recent_ratio >= 0.0
            && cfg->recent_ratio <= 1.0)
            bad |= cfg->budget_tokens - (uint32_t)(cfg->recent_ratio * cfg->budget_tokens)
                   <= cfg->sink_tokens;
        /* batched eviction holds k + B slots: capacity >= k + B */
        bad |= tokens && cfg->evict_interval > 1
               && (uint64_t)cfg->budget_tokens + cfg->evict_interval > cfg->capacity;
        /* a negative ratio: "resolved k is 0" at select, or refused here */
        open |= cfg->budget_ratio < 0.0;
    } else {
        /* budget fields of FULL: the header does not say */
        open |= (tokens && ratio) || cfg->budget_tokens > cfg->capacity
                || cfg->budget_ratio < 0.0;
    }
    bad |= cfg->recent_ratio < 0.0 || cfg->recent_ratio > 1.0
           || !(cfg->tau_init > 0.0f) || !(cfg->tau_end > 0.0f) || !cfg->tau_steps
           || !(1.0f / cfg->tau_init <= FLT_MAX) || !(1.0f / cfg->tau_end <= FLT_MAX);
    open |= cfg->n_threads > 1024; /* undocumented limit */
    /* shapes past the fuzzer's caps: EOVERFLOW, or the hook refuses them */
    open |= cfg->n_layers > MAX_LAYERS || cfg->capacity > MAX_CAPACITY;
    return bad ? 0 : open ? -1 : 1;
}

/* Fills cfg from the input: often valid, sometimes broken in a few
 * fields. */
static void gen_config(fz_input *in, kf_config *cfg)
{
    kf_config_default(cfg);
    uint32_t n_kv = fz_range(in, 1, MAX_KV_HEADS);
    cfg->n_layers = fz_range(in, 1, MAX_LAYERS);
    cfg->n_kv_heads = n_kv;
    cfg->n_heads = n_kv * fz_range(in, 1, MAX_GROUP);
    cfg->head_dim = fz_range(in, 1, MAX_HEAD_DIM);
    cfg->capacity = fz_range(in, 1, MAX_CAPACITY);
    cfg->policy = (kf_policy)fz_range(in, 0, 4);
    cfg->rule = (kf_rule)fz_range(in, 0, 1);
    cfg->granularity = (kf_granularity)fz_range(in, 0, 2);
    cfg->n_sinks = fz_range(in, 0, 5);
    if (fz_chance(in, 128)) {
        uint32_t lo = cfg->policy == KF_POLICY_SINKS ? cfg->n_sinks + 1 : 1;
        if (lo > cfg->capacity) {
            cfg->n_sinks = 0;
            lo = 1;
        }
        cfg->budget_ratio = 0.0;
        cfg->budget_tokens = fz_range(in, lo, cfg->capacity);
    } else {
        cfg->budget_ratio = k_ratios[fz_range(in, 0, 6)];
    }
    cfg->recent_ratio = k_recent[fz_range(in, 0, 4)];
    cfg->tau_init = k_taus[fz_range(in, 0, 6)];
    cfg->tau_end = k_taus[fz_range(in, 0, 6)];
    cfg->tau_steps = fz_range(in, 1, 200);
    cfg->n_threads = fz_range(in, 0, 3);
    cfg->seed = fz_u64(in);
    /* batched eviction now and then; above capacity is an error */
    cfg->evict_interval = fz_chance(in, 64) ? fz_range(in, 0, 6) : 0;
    /* slots refilled from the end now and then; 2 is not an order */
    cfg->slot_order = fz_chance(in, 64) ? (kf_slot_order)fz_range(in, 1, 2)
                                        : KF_ORDER_POSITION;
    /* the table's noise half the time; now and then 2, not a kf_noise */
    cfg->noise = fz_chance(in, 128) ? (fz_chance(in, 8) ? (kf_noise)2
                                                        : KF_NOISE_TABLE)
                                    : KF_NOISE_EXACT;

    /* then maybe break it */
    int n_breaks = fz_chance(in, 64) ? (int)fz_range(in, 1, 3) : 0;
    for (int i = 0; i < n_breaks; i++) {
        switch (fz_range(in, 0, 24)) {
        case 0: cfg->n_layers = 0; break;
        case 1: cfg->n_heads = 0; break;
        case 2: cfg->n_kv_heads = 0; break;
        case 3: cfg->head_dim = 0; break;
        case 4: cfg->capacity = 0; break;
        case 5:
            cfg->n_heads = 5;
            cfg->n_kv_heads = 2;
            break;
        case 6:
            cfg->capacity = fz_chance(in, 128) ? UINT32_MAX : (uint32_t)INT32_MAX + 1u;
            break;
        case 7: cfg->policy = (kf_policy)(fz_chance(in, 128) ? 5 : -1); break;
        case 8: cfg->rule = (kf_rule)2; break;
        case 9:
            cfg->granularity = (kf_granularity)(fz_chance(in, 128) ? 3 : 0x7fffffff);
            break;
        case 10: /* both budgets */
            cfg->budget_tokens = 1;
            cfg->budget_ratio = 0.5;
            break;
        case 11: /* neither */
            cfg->budget_tokens = 0;
            cfg->budget_ratio = 0.0;
            break;
        case 12: cfg->budget_ratio = fz_chance(in, 128) ? NAN : -INFINITY; break;
        case 13: /* negative ratio: rejected at create, or k = 0 at select */
            cfg->budget_tokens = 0;
            cfg->budget_ratio = -0.5;
            break;
        case 14: cfg->recent_ratio = fz_chance(in, 128) ? -0.1 : 1.5; break;
        case 15: cfg->recent_ratio = NAN; break;
        case 16: cfg->tau_init = fz_chance(in, 128) ? 0.0f : -1.0f; break;
        case 17: cfg->tau_end = fz_chance(in, 128) ? NAN : INFINITY; break;
        case 18: cfg->tau_steps = 0; break;
        case 19: cfg->reserved[fz_range(in, 0, sizeof cfg->reserved - 1)] = 1; break;
        case 20: /* one allocator hook only */
            if (fz_chance(in, 128))
                cfg->allocator.alloc = hook_alloc;
            else
                cfg->allocator.free = hook_free;
            break;
        case 21: /* budget above capacity */
            cfg->budget_ratio = 0.0;
            cfg->budget_tokens = cfg->capacity + fz_range(in, 1, 3);
            break;
        case 23: /* batched eviction without room for k + B */
            cfg->evict_interval = fz_range(in, 2, 6);
            if (cfg->evict_interval > cfg->capacity)
                cfg->capacity = cfg->evict_interval;
            cfg->budget_ratio = 0.0;
            cfg->budget_tokens = cfg->capacity - cfg->evict_interval
                                 + fz_range(in, 1, cfg->evict_interval);
            break;
        case 22: /* the sinks take the whole budget */
            cfg->budget_ratio = 0.0;
            cfg->budget_tokens = fz_range(in, 1, 4);
            cfg->n_sinks = cfg->budget_tokens + fz_range(in, 0, 2);
            if (cfg->budget_tokens > cfg->capacity)
                cfg->capacity = cfg->budget_tokens;
            break;
        default: /* absurd shapes: overflow or an allocator refusal */
            cfg->n_layers = fz_chance(in, 128) ? UINT32_MAX : 1u << 20;
            cfg->capacity = fz_chance(in, 128) ? (uint32_t)INT32_MAX : 1u << 16;
            break;
        }
    }
    /* the options beyond the paper, last so that older seeds keep their
     * meaning (an exhausted input leaves them off); now and then out of
     * range */
    if (fz_chance(in, 96)) {
        uint32_t cap = cfg->capacity < 64 ? cfg->capacity : 64;
        cfg->obs_window = fz_chance(in, 16) ? cfg->capacity + 1
                                            : fz_range(in, 0, cap);
        cfg->pool_kernel = fz_chance(in, 16) ? fz_range(in, 0, 300)
                                             : 2 * fz_range(in, 0, 4) + 1;
        cfg->pool_mode = fz_chance(in, 16) ? 2 : fz_range(in, 0, 1);
        cfg->score_norm = fz_chance(in, 16) ? 2 : fz_range(in, 0, 1);
    }
    if (fz_chance(in, 64)) {
        static const float slopes[] = { 0.25f, 0.5f, 0.75f, 0.99f, -0.5f, -0.99f,
                                        1.0f, -1.0f, NAN };
        cfg->layer_slope = slopes[fz_range(in, 0, 8)];
    }
    if (fz_chance(in, 64))
        cfg->sink_tokens = fz_chance(in, 16) ? cfg->capacity + 1 : fz_range(in, 1, 8);
    if (fz_chance(in, 64)) {
        static const float floors[] = { 0.0f, 0.2f, 0.5f, 1.0f, 1.5f, -0.25f, NAN };
        cfg->head_budget = fz_chance(in, 16) ? 2 : KF_HEAD_BUDGET_ADAPTIVE;
        cfg->head_floor = floors[fz_range(in, 0, 6)];
        /* usually where it applies */
        if (fz_chance(in, 192)) {
            cfg->granularity = KF_GRANULARITY_KV_HEAD;
            cfg->rule = KF_RULE_DYNAMIC;
        }
    }
}

static void do_create(session *s)
{
    fz_input *in = &s->in;
    kf_config cfg;
    gen_config(in, &cfg);
    int verdict = config_verdict(&cfg);
    /* The hook most of the time (so it can fail and cap sizes); plain
     * malloc/free only for configurations known to be small. */
    int use_hook = verdict != 1 || fz_chance(in, 224);
    if (use_hook && !cfg.allocator.alloc && !cfg.allocator.free) {
        cfg.allocator.alloc = hook_alloc;
        cfg.allocator.free = hook_free;
    }
    if (cfg.allocator.alloc || cfg.allocator.free)
        cfg.allocator.opaque = &s->alloc;
    if (fz_chance(in, 40))
        s->alloc.fail_at = s->alloc.calls + fz_range(in, 1, 2);

    unsigned calls_before = s->alloc.calls;
    int live_before = s->alloc.live;
    kf_cache *c = (kf_cache *)(void *)&s->alloc; /* must be overwritten */
    int status = kf_cache_create(&c, &cfg);
    trace("create layers=%u heads=%u kv=%u dim=%u cap=%u policy=%d rule=%d "
          "gran=%d tokens=%u ratio=%g recent=%g sinks=%u tau=%g->%g/%u "
          "threads=%u every=%u order=%d noise=%d obs=%u pool=%u/%u norm=%u slope=%g "
          "sink_tokens=%u head_budget=%u/%g "
          "hook=%d fail_at=%u -> %d (verdict %d)\n",
          cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.capacity,
          (int)cfg.policy, (int)cfg.rule, (int)cfg.granularity, cfg.budget_tokens,
          cfg.budget_ratio, cfg.recent_ratio, cfg.n_sinks, (double)cfg.tau_init,
          (double)cfg.tau_end, cfg.tau_steps, cfg.n_threads, cfg.evict_interval,
          (int)cfg.slot_order, (int)cfg.noise, cfg.obs_window, cfg.pool_kernel,
          cfg.pool_mode, cfg.score_norm, (double)cfg.layer_slope, cfg.sink_tokens,
          cfg.head_budget, (double)cfg.head_floor,
          cfg.allocator.alloc != NULL,
          s->alloc.fail_at,
          status, verdict);
    check_code(status, CODES_CREATE);
    if (status) {
        CHECK(c == NULL);
        CHECK(s->alloc.live == live_before); /* nothing kept, nothing leaked */
        if (status == KF_ENOMEM)
            CHECK(s->alloc.calls > calls_before);
        if (verdict == 1)
            CHECK(status == KF_ENOMEM);
        return;
    }
    CHECK(c != NULL);
    CHECK(verdict != 0);
    CHECK(s->alloc.live == live_before + (cfg.allocator.alloc ? 1 : 0));
    s->cache = c;
    s->cfg = cfg;
    memset(s->observed, 0, sizeof s->observed);
    memset(s->score_from, 0, sizeof s->score_from);
    memset(s->prompt_done, 0, sizeof s->prompt_done);
    memset(s->rows, 0, sizeof s->rows);
    snapshot fresh = snap(c);
    s->fresh_digest = fresh.digest;
    s->fresh_bytes = fresh.bytes;

    kf_config back;
    CHECK(kf_cache_config(c, &back) == KF_OK);
    CHECK(back.n_layers == cfg.n_layers && back.n_heads == cfg.n_heads
          && back.n_kv_heads == cfg.n_kv_heads && back.head_dim == cfg.head_dim
          && back.capacity == cfg.capacity && back.policy == cfg.policy
          && back.seed == cfg.seed && back.budget_tokens == cfg.budget_tokens);
    uint32_t k = 0, w = 0, n = 1;
    int st = kf_budget(c, &k, &w);
    if (cfg.policy == KF_POLICY_FULL)
        CHECK(st == KF_OK && k == cfg.capacity && w == 0);
    else if (cfg.budget_tokens)
        CHECK(st == KF_OK && k == cfg.budget_tokens && w <= k);
    else
        CHECK(st == KF_ESTATE);
    for (uint32_t l = 0; l < cfg.n_layers && l < MAX_LAYERS; l++) {
        CHECK(kf_slot_count(c, (int)l, 0, &n) == KF_OK && n == 0);
    }
    /* configurations past the fuzzer's caps were refused by the hook; one
     * made with malloc/free is small by construction */
    if (cfg.n_layers > MAX_LAYERS || cfg.capacity > MAX_CAPACITY
        || cfg.n_kv_heads > MAX_KV_HEADS || cfg.n_heads > MAX_KV_HEADS * MAX_GROUP
        || cfg.head_dim > MAX_HEAD_DIM) {
        kf_cache_destroy(&s->cache);
    }
}

static void do_destroy(session *s)
{
    trace("destroy\n");
    kf_cache_destroy(&s->cache);
    CHECK(s->cache == NULL);
    CHECK(s->alloc.live == 0);
    kf_cache_destroy(&s->cache); /* *cache NULL: no-op */
    kf_cache_destroy(NULL);
}

static int pick_layer(fz_input *in, uint32_t n_layers, int allow_all)
{
    uint8_t kind = fz_u8(in);
    if (kind < 200)
        return (int)(kind % n_layers);
    switch (kind & 7) {
    case 0: return KF_ALL_LAYERS;
    case 1: return (int)n_layers;
    case 2: return INT_MIN;
    case 3: return INT_MAX;
    case 4: return -2;
    default: return allow_all ? KF_ALL_LAYERS : (int)(kind % n_layers);
    }
}

static int layer_in_range(const session *s, int layer)
{
    return layer >= 0 && (uint32_t)layer < s->cfg.n_layers;
}

static uint32_t slots_of(const session *s, int layer)
{
    uint32_t n = UINT32_MAX;
    CHECK(kf_slot_count(s->cache, layer, 0, &n) == KF_OK);
    for (uint32_t g = 1; g < s->cfg.n_kv_heads; g++) {
        uint32_t m = 0;
        CHECK(kf_slot_count(s->cache, layer, (int)g, &m) == KF_OK && m == n);
    }
    return n;
}

static int is_selected_layer(const session *s, int layer)
{
    const uint32_t *keep;
    uint32_t n;
    return kf_kept_slots(s->cache, layer, 0, &keep, &n) == KF_OK;
}

/* Copies of one layer's scores and positions, [kv head][slot]. */
typedef struct lane_copy {
    uint32_t n;
    float scores[MAX_KV_HEADS][MAX_CAPACITY];
    int32_t pos[MAX_KV_HEADS][MAX_CAPACITY];
    uint32_t keep[MAX_KV_HEADS][MAX_CAPACITY];
    uint32_t n_keep;
    int selected;
} lane_copy;

static void copy_layer(const session *s, int layer, lane_copy *lc)
{
    memset(lc, 0, sizeof *lc);
    lc->n = slots_of(s, layer);
    CHECK(lc->n <= MAX_CAPACITY);
    for (uint32_t g = 0; g < s->cfg.n_kv_heads; g++) {
        const float *sc;
        const int32_t *pos;
        const uint32_t *keep;
        uint32_t n;
        CHECK(kf_slot_scores(s->cache, layer, (int)g, &sc, &n) == KF_OK && n == lc->n);
        CHECK(kf_slot_positions(s->cache, layer, (int)g, &pos, &n) == KF_OK && n == lc->n);
        memcpy(lc->scores[g], sc, n * sizeof *sc);
        memcpy(lc->pos[g], pos, n * sizeof *pos);
        int st = kf_kept_slots(s->cache, layer, (int)g, &keep, &n);
        CHECK(st == KF_OK || st == KF_ESTATE);
        lc->selected = st == KF_OK;
        if (lc->selected) {
            CHECK(n <= lc->n);
            lc->n_keep = n;
            memcpy(lc->keep[g], keep, n * sizeof *keep);
        }
    }
}

/* ---- observe ---- */

typedef struct logits_plan {
    kf_logits_view v;
    float *buf;
    uint8_t *shifted; /* a misaligned copy of buf (data points into it) */
    size_t ext;  /* elements allocated */
    int verdict; /* 1 valid by the header, 0 invalid, -1 open */
    int filled;  /* values written through the view (defects below known) */
    int n_nan, n_empty;
} logits_plan;

/* Writes logits through the view: visible values from a seeded generator
 * plus a few hand-placed ones from the input (NaN, +-inf, huge, denormal,
 * -0, fully masked rows); masked causal entries and gaps hold NaN, which
 * the library must never read. Then counts the visible defects. */
static void fill_logits(session *s, logits_plan *p)
{
    fz_input *in = &s->in;
    const kf_logits_view *v = &p->v;
    uint64_t st = (uint64_t)fz_u32(in) << 1 | 1;
    int ties = fz_chance(in, 32);
    uint32_t n_old = v->n_slots - v->n_rows;
    int causal = v->flags & KF_LOGITS_CAUSAL;
    for (size_t e = 0; e < p->ext; e++)
        p->buf[e] = NAN;
    for (uint32_t h = 0; h < s->cfg.n_heads; h++)
        for (uint32_t i = 0; i < v->n_rows; i++) {
            float *row = p->buf + h * v->head_stride + i * v->row_stride;
            uint32_t visible = causal ? n_old + i + 1 : v->n_slots;
            for (uint32_t j = 0; j < v->n_slots; j++) {
                uint32_t r = bulk_next(&st);
                float x = ties ? (float)(r % 3) : ((float)(r % 2001) - 1000.0f) / 125.0f;
                row[j] = j < visible ? x : (causal ? NAN : -INFINITY);
            }
        }
    int n_pokes = (int)fz_range(in, 0, 4);
    for (int k = 0; k < n_pokes; k++) {
        uint32_t h = fz_range(in, 0, s->cfg.n_heads - 1);
        uint32_t i = fz_range(in, 0, v->n_rows - 1);
        float *row = p->buf + h * v->head_stride + i * v->row_stride;
        uint32_t visible = causal ? n_old + i + 1 : v->n_slots;
        if (fz_chance(in, 48)) {
            for (uint32_t j = 0; j < visible; j++)
                row[j] = -INFINITY;
        } else {
            row[fz_range(in, 0, visible - 1)] = fz_float(in);
        }
    }
    p->filled = 1;
    p->n_nan = p->n_empty = 0;
    /* obs_window: a prompt call of >= W rows reads only its last W */
    int layer = s->plan_layer;
    uint32_t W = s->cfg.obs_window, first = 0;
    if (scoring(s) && W && layer >= 0 && (uint32_t)layer < s->cfg.n_layers
        && layer < (int)MAX_LAYERS && !s->prompt_done[layer] && v->n_rows >= W)
        first = v->n_rows - W;
    for (uint32_t h = 0; h < s->cfg.n_heads; h++)
        for (uint32_t i = first; i < v->n_rows; i++) {
            const float *row = p->buf + h * v->head_stride + i * v->row_stride;
            uint32_t visible = causal ? n_old + i + 1 : v->n_slots;
            int nan = 0, finite = 0;
            for (uint32_t j = 0; j < visible; j++) {
                nan |= isnan(row[j]) || row[j] == INFINITY;
                finite |= isfinite(row[j]);
            }
            p->n_nan += nan;
            p->n_empty += !nan && !finite;
        }
}

/* Plans a view of `rows` new rows (0: the input chooses) for a layer
 * holding `cur` slots; random_shape also breaks it. Returns 0 when the view
 * would need a buffer the fuzzer will not allocate (the call is skipped). */
static int plan_logits(session *s, uint32_t cur, uint32_t rows,
                       int random_shape, logits_plan *p)
{
    fz_input *in = &s->in;
    kf_logits_view *v = &p->v;
    uint32_t cap = s->cfg.capacity, heads = s->cfg.n_heads;
    uint32_t room = cap > cur ? cap - cur : 0;
    memset(p, 0, sizeof *p);
    int shape = 1, strides = 1, null_data = 0, misalign = 0, short_bytes = 0;

    if (rows)
        v->n_rows = rows;
    else
        v->n_rows = room > 1 ? fz_range(in, 1, room < 4 || fz_chance(in, 48) ? room : 4) : 1;
    v->n_slots = cur + v->n_rows;
    v->flags = fz_chance(in, 128) ? KF_LOGITS_CAUSAL : 0;
    size_t pad_r = fz_range(in, 0, 2), pad_h = fz_range(in, 0, 2);
    if (fz_chance(in, 160)) { /* [head][row][slot] */
        v->row_stride = v->n_slots + pad_r;
        v->head_stride = v->n_rows * v->row_stride + pad_h;
    } else { /* [row][head][slot] */
        v->head_stride = v->n_slots + pad_h;
        v->row_stride = heads * v->head_stride + pad_r;
    }

    int n_breaks = random_shape ? (int)fz_range(in, 1, 2) : 0;
    for (int k = 0; k < n_breaks; k++) {
        switch (fz_range(in, 0, 10)) {
        case 0: v->n_rows = 0; break;
        case 1: v->n_slots += fz_chance(in, 128) ? 1u : UINT32_MAX; break;
        case 2: v->n_slots = fz_chance(in, 128) ? 0 : UINT32_MAX; break;
        case 3: v->flags |= fz_u32(in) | 2u; break;
        case 4: /* any row stride: small ones overlap */
            v->row_stride = fz_size(in, 2u * v->n_slots + 2);
            strides = -1;
            break;
        case 5:
            v->head_stride = fz_size(in, 2u * v->n_rows * v->n_slots + 2);
            strides = -1;
            break;
        case 6: /* more rows than the capacity may have room for */
            v->n_rows = fz_range(in, 1, 2 * MAX_CAPACITY);
            v->n_slots = cur + v->n_rows;
            v->row_stride = v->n_slots;
            v->head_stride = (size_t)v->n_rows * v->n_slots;
            break;
        case 7: null_data = 1; break;
        case 8: misalign = (int)fz_range(in, 1, 3); break;
        case 9: short_bytes = 1; break; /* declared bytes too few */
        default: break;
        }
    }
    /* the header's shape rules, on the final fields */
    shape = v->n_rows >= 1 && v->n_slots >= v->n_rows
            && v->n_slots - v->n_rows == cur && v->n_slots <= cap
            && !(v->flags & ~KF_LOGITS_CAUSAL);

    size_t ext, bytes;
    int fits = extent_of(v->n_slots, v->row_stride, v->n_rows ? v->n_rows : 1,
                         v->head_stride, heads, &ext);
    if (!fits || !checked_mul(ext, sizeof(float), &bytes)) {
        /* the extent overflows size_t, in elements or in bytes:
         * KF_EOVERFLOW (or another argument error) whenever data is given;
         * a token buffer */
        strides = 0;
        ext = 1;
    } else if (bytes > MAX_BUFFER_BYTES) {
        return 0; /* a real but huge buffer */
    }
    if (ext == 0)
        ext = 1;
    p->ext = ext;
    p->buf = malloc(ext * sizeof(float));
    CHECK(p->buf != NULL);
    v->data = p->buf;
    if (shape && strides)
        fill_logits(s, p);
    else
        for (size_t e = 0; e < ext; e++)
            p->buf[e] = (float)(e % 7);

    /* the buffer's size, declared or not: exactly, generously, or (a
     * break) short of the farthest float, which is KF_ELAYOUT */
    size_t have = ext * sizeof(float);
    if (short_bytes && strides && have > 1) {
        v->bytes = fz_range(in, 1, (uint32_t)(have - 1 < UINT32_MAX ? have - 1 : UINT32_MAX));
        strides = 0;
    } else if (strides && fz_chance(in, 128)) {
        v->bytes = have + (fz_chance(in, 128) ? 0 : fz_range(in, 1, 64));
    }
    if (misalign) { /* float data at an odd address: KF_ELAYOUT */
        p->shifted = malloc(have + 3);
        CHECK(p->shifted != NULL);
        memcpy(p->shifted + misalign, p->buf, have);
        v->data = (const float *)(const void *)(p->shifted + misalign);
        strides = 0;
    }

    if (null_data) {
        v->data = NULL;
        p->filled = 0;
        /* no buffer, no stride check (keyformer.h: data may be NULL for
         * WINDOW, SINKS and FULL) */
        p->verdict = scoring(s) ? 0 : shape;
    } else {
        p->verdict = verdict_and(shape, strides);
    }
    return 1;
}

static void free_logits(logits_plan *p)
{
    free(p->buf);
    free(p->shifted);
}

/* What a successful observe (logits or q.k) of `rows` rows promises. */
static void check_observed(session *s, int layer, uint32_t cur, uint32_t rows,
                           const lane_copy *before, uint32_t steps0,
                           int32_t next0)
{
    s->observed[layer] = 1;
    s->removed_valid = 0; /* kf_removed_positions: until the next observe */
    /* obs_window: a prompt call of >= W rows replaces the scores with
     * those of its last W rows */
    uint32_t W = s->cfg.obs_window;
    int replaced = scoring(s) && W && !s->prompt_done[layer] && rows >= W;
    if (replaced)
        s->score_from[layer] = next0 + (int32_t)(rows - W);
    lane_copy now;
    copy_layer(s, layer, &now);
    CHECK(now.n == cur + rows);
    CHECK(!now.selected);
    for (uint32_t g = 0; g < s->cfg.n_kv_heads; g++) {
        for (uint32_t j = 0; j < cur; j++) {
            CHECK(now.pos[g][j] == before->pos[g][j]);
            if (scoring(s) && replaced)
                continue; /* any value: rows of this call only */
            if (scoring(s))
                CHECK(now.scores[g][j] >= before->scores[g][j]);
            else
                CHECK(now.scores[g][j] == 0.0f);
        }
        for (uint32_t j = 0; j < now.n; j++) {
            CHECK(isfinite(now.scores[g][j]) && now.scores[g][j] >= 0.0f);
            if (j >= cur) {
                CHECK(now.pos[g][j] == next0 + (int32_t)(j - cur));
                if (!scoring(s))
                    CHECK(now.scores[g][j] == 0.0f);
            }
        }
    }
    uint32_t steps;
    int32_t next;
    CHECK(kf_layer_progress(s->cache, layer, &steps, &next) == KF_OK);
    CHECK(next == next0 + (int32_t)rows);
    CHECK(steps == steps0 + (s->prompt_done[layer] ? rows : 0));
}

static void op_observe(session *s, int layer, uint32_t rows, int random_shape)
{
    kf_cache *c = s->cache;
    int in_range = layer_in_range(s, layer);
    uint32_t cur = in_range ? slots_of(s, layer) : 0;
    logits_plan p;
    s->plan_layer = layer;
    if (!plan_logits(s, cur, rows, random_shape, &p))
        return;
    lane_copy before_lane;
    uint32_t steps0 = 0;
    int32_t next0 = 0;
    int verdict = p.verdict;
    if (in_range) {
        copy_layer(s, layer, &before_lane);
        CHECK(kf_layer_progress(c, layer, &steps0, &next0) == KF_OK);
        if (before_lane.selected)
            verdict = 0; /* KF_ESTATE: a selection awaits kf_compact */
    } else {
        verdict = 0;
    }
    int defects = scoring(s) && p.filled && (p.n_nan || p.n_empty);

    snapshot before = snap(c);
    int status = kf_observe_logits(c, layer, &p.v);
    trace("observe layer=%d cur=%u rows=%u slots=%u rs=%zu hs=%zu flags=%u "
          "data=%d nan=%d empty=%d -> %d (verdict %d)\n", layer, cur,
          p.v.n_rows, p.v.n_slots, p.v.row_stride, p.v.head_stride, p.v.flags,
          p.v.data != NULL, p.n_nan, p.n_empty, status, verdict);
    check_code(status, CODES_OBSERVE);
    if (status) {
        check_unchanged(c, before);
        if (verdict == 1) {
            CHECK(defects);
            if (p.n_nan && !p.n_empty)
                CHECK(status == KF_ENAN);
            else if (p.n_empty && !p.n_nan)
                CHECK(status == KF_EEMPTYROW);
            else
                CHECK(status == KF_ENAN || status == KF_EEMPTYROW);
        }
        free_logits(&p);
        return;
    }
    CHECK(verdict != 0);
    CHECK(!defects);
    check_observed(s, layer, cur, p.v.n_rows, &before_lane, steps0, next0);
    free_logits(&p);
}

/* ---- observe a KV head at a time: kf_observe_begin / kv_head / end ---- */

/* A KV head's view the open round must refuse with KF_ELAYOUT, changing
 * nothing (the head can be handed over again): its logits at a misaligned
 * address, or declared bytes one short of (or far below) its last float. */
static void refused_kv_head(session *s, int layer, uint32_t g,
                            const kf_logits_view *v, snapshot before)
{
    fz_input *in = &s->in;
    uint32_t group = s->cfg.n_heads / s->cfg.n_kv_heads;
    size_t ext;
    CHECK(extent_of(v->n_slots, v->row_stride, v->n_rows, v->head_stride,
                    group, &ext));
    size_t span = ext * sizeof(float);
    kf_logits_view bad = *v;
    uint8_t *shifted = NULL;
    if (fz_chance(in, 128)) {
        uint32_t off = fz_range(in, 1, 3);
        shifted = malloc(span + 3);
        CHECK(shifted != NULL);
        memcpy(shifted + off, v->data, span);
        bad.data = (const float *)(const void *)(shifted + off);
    } else {
        bad.bytes = fz_chance(in, 128) ? span - 1 : fz_range(in, 1, (uint32_t)(span - 1 < UINT32_MAX ? span - 1 : UINT32_MAX));
    }
    int rc = kf_observe_kv_head(s->cache, layer, (int)g, &bad);
    trace("round kv_head %u (refused view) -> %d\n", g, rc);
    CHECK(rc == KF_ELAYOUT);
    check_unchanged(s->cache, before);
    free(shifted);
}

/* A round over a valid view of the layer: begin (sometimes with a wrong
 * row count), the KV heads in an input-chosen order, sometimes one skipped
 * or handed twice, sometimes a call the open round must refuse, then end.
 * A complete round promises what kf_observe_logits promises; anything else
 * leaves the cache as it was before begin. */
static void op_observe_round(session *s, int layer)
{
    fz_input *in = &s->in;
    kf_cache *c = s->cache;
    uint32_t n_kv = s->cfg.n_kv_heads, group = s->cfg.n_heads / n_kv;
    uint32_t cur = slots_of(s, layer);
    logits_plan p;
    s->plan_layer = layer;
    if (!plan_logits(s, cur, 0, 0, &p))
        return;
    lane_copy before_lane;
    uint32_t steps0 = 0;
    int32_t next0 = 0;
    copy_layer(s, layer, &before_lane);
    CHECK(kf_layer_progress(c, layer, &steps0, &next0) == KF_OK);
    snapshot before = snap(c);

    uint32_t begin_rows = fz_chance(in, 24) ? p.v.n_rows + 1 : p.v.n_rows;
    int status = kf_observe_begin(c, layer, begin_rows);
    trace("round begin layer=%d cur=%u rows=%u -> %d\n", layer, cur,
          begin_rows, status);
    check_code(status, CODES_OBSERVE);
    int begin_ok = p.verdict == 1 && !before_lane.selected
                   && cur + begin_rows <= s->cfg.capacity;
    CHECK((status == KF_OK) == begin_ok);
    if (status) {
        check_unchanged(c, before);
        free_logits(&p);
        return;
    }
    check_unchanged(c, before); /* nothing visible until the end */
    if (fz_chance(in, 24)) /* the round holds the other calls */
        CHECK(kf_select(c, layer) == KF_ESTATE
              && kf_observe_logits(c, layer, &p.v) == KF_ESTATE
              && kf_observe_begin(c, layer, 1) == KF_ESTATE);

    uint32_t order[MAX_KV_HEADS];
    for (uint32_t g = 0; g < n_kv; g++)
        order[g] = g;
    for (uint32_t g = n_kv; g > 1; g--) {
        uint32_t j = fz_range(in, 0, g - 1), t = order[g - 1];
        order[g - 1] = order[j];
        order[j] = t;
    }
    int skip = fz_chance(in, 16) ? (int)fz_range(in, 0, n_kv - 1) : -1;
    int failed = 0;
    for (uint32_t k = 0; k < n_kv; k++) {
        uint32_t g = order[k];
        if ((int)g == skip)
            continue;
        kf_logits_view v = p.v;
        size_t skip_bytes = (size_t)g * group * v.head_stride * sizeof(float);
        if (v.data)
            v.data += (size_t)g * group * v.head_stride;
        if (v.bytes) /* declared from the KV head's own data on */
            v.bytes -= skip_bytes < v.bytes ? skip_bytes : v.bytes - 1;
        if (v.data && begin_rows == p.v.n_rows && fz_chance(in, 24))
            refused_kv_head(s, layer, g, &v, before);
        int rc = kf_observe_kv_head(c, layer, (int)g, &v);
        trace("round kv_head %u -> %d\n", g, rc);
        check_code(rc, CODES_OBSERVE);
        if (begin_rows != p.v.n_rows) {
            CHECK(rc == KF_EMISMATCH);
        } else if (rc) {
            /* only the logits themselves can be refused here */
            CHECK(scoring(s) && p.filled && (p.n_nan || p.n_empty));
            CHECK(rc == KF_ENAN || rc == KF_EEMPTYROW);
        } else if (fz_chance(in, 16)) {
            CHECK(kf_observe_kv_head(c, layer, (int)g, &v) == KF_ESTATE);
        }
        failed |= rc != KF_OK;
    }
    status = kf_observe_end(c, layer);
    trace("round end -> %d\n", status);
    if (failed || skip >= 0) {
        CHECK(status == KF_ESTATE);
        check_unchanged(c, before);
    } else {
        CHECK(status == KF_OK);
        CHECK(!(scoring(s) && p.filled && (p.n_nan || p.n_empty)));
        check_observed(s, layer, cur, p.v.n_rows, &before_lane, steps0, next0);
    }
    CHECK(kf_observe_end(c, layer) == KF_ESTATE); /* closed either way */
    free_logits(&p);
}

/* src[i]: the old slot that slot i of KV head g holds after compaction
 * (test_compact_sources). */
static void sources(const session *s, const lane_copy *lc, uint32_t g,
                    uint32_t *src)
{
    test_compact_sources(lc->keep[g], lc->n_keep, s->cfg.slot_order, src);
}

/* ---- select ---- */

/* Scores a shared selection ranks: the layer's KV heads summed in order
 * (LAYER), or every layer's (UNIFORM), the way kf_select sums them. */
static void ranked_scores(const session *s, const lane_copy *lanes, int layer,
                          uint32_t g, float *out)
{
    uint32_t n = lanes[layer].n;
    if (s->cfg.granularity == KF_GRANULARITY_KV_HEAD) {
        memcpy(out, lanes[layer].scores[g], n * sizeof *out);
        return;
    }
    uint32_t l0 = s->cfg.granularity == KF_GRANULARITY_UNIFORM ? 0 : (uint32_t)layer;
    uint32_t l1 = s->cfg.granularity == KF_GRANULARITY_UNIFORM ? s->cfg.n_layers : l0 + 1;
    memcpy(out, lanes[l0].scores[0], n * sizeof *out);
    for (uint32_t l = l0; l < l1; l++)
        for (uint32_t h = (l == l0); h < s->cfg.n_kv_heads; h++)
            for (uint32_t j = 0; j < n; j++)
                out[j] += lanes[l].scores[h][j];
}

/* layer_slope: k_l = floor(k (1 + b (L - 1 - 2l) / (L - 1))), as the
 * header states it */
static uint32_t layer_budget_model(const session *s, uint32_t k, uint32_t l)
{
    const kf_config *cfg = &s->cfg;
    if (cfg->layer_slope == 0.0f || cfg->policy == KF_POLICY_FULL || cfg->n_layers < 2)
        return k;
    double L1 = (double)cfg->n_layers - 1.0;
    return (uint32_t)((double)k * (1.0 + (double)cfg->layer_slope * (L1 - 2.0 * l) / L1));
}

/* score_norm: the ranking key of each slot of (layer, g) (shared lists:
 * of the first lane the selection ranks by) is its score over the rows
 * that could see it, next - max(position, first scored row). */
static void norm_keys(const session *s, const lane_copy *lanes, int layer,
                      uint32_t g, float *out)
{
    int shared = s->cfg.granularity != KF_GRANULARITY_KV_HEAD;
    int l0 = s->cfg.granularity == KF_GRANULARITY_UNIFORM ? 0 : layer;
    const int32_t *pos = lanes[l0].pos[shared ? 0 : g];
    /* sink_tokens, and holes (position -1): above every score */
    for (uint32_t j = 0; scoring(s) && j < lanes[layer].n; j++)
        if (pos[j] < (int64_t)s->cfg.sink_tokens || pos[j] < 0)
            out[j] = INFINITY;
    if (s->cfg.score_norm != KF_SCORE_NORM_SEEN || !scoring(s))
        return;
    uint32_t steps;
    int32_t next;
    CHECK(kf_layer_progress(s->cache, l0, &steps, &next) == KF_OK);
    int64_t from = s->score_from[l0];
    for (uint32_t j = 0; j < lanes[layer].n; j++) {
        int64_t p = pos[j] > from ? pos[j] : from;
        CHECK(next - p >= 1);
        if (pos[j] >= (int64_t)s->cfg.sink_tokens)
            out[j] = out[j] / (float)(next - p);
    }
}

/* pool_kernel: a prompt selection pools each lane's scores in place
 * before ranking, over the slots j - K/2 .. j + K/2 that exist (max, or
 * the left-to-right sum over their count). */
static void pool_model(const session *s, float *scores, uint32_t n)
{
    static float src[MAX_CAPACITY];
    uint32_t r = s->cfg.pool_kernel / 2;
    memcpy(src, scores, n * sizeof *src);
    for (uint32_t j = 0; j < n; j++) {
        uint32_t lo = j >= r ? j - r : 0, hi = j + r + 1 < n ? j + r + 1 : n;
        float v = src[lo];
        for (uint32_t i = lo + 1; i < hi; i++) {
            if (s->cfg.pool_mode == KF_POOL_AVG)
                v += src[i];
            else if (src[i] > v)
                v = src[i];
        }
        scores[j] = s->cfg.pool_mode == KF_POOL_AVG ? v / (float)(hi - lo) : v;
    }
}

/* Each kept slot among `cand` outranks each evicted one: higher score
 * key, or an equal key and a lower index. */
static void check_ranked(const float *ranked, const uint8_t *cand,
                         const uint8_t *kept, uint32_t n)
{
    int have_kept = 0, have_evicted = 0;
    uint32_t kept_key = 0, kept_idx = 0, ev_key = 0, ev_idx = 0;
    for (uint32_t j = 0; j < n; j++) {
        if (!cand[j])
            continue;
        uint32_t key = rank_key(ranked[j]);
        if (kept[j]) {
            if (!have_kept || key < kept_key || (key == kept_key && j > kept_idx)) {
                kept_key = key;
                kept_idx = j;
            }
            have_kept = 1;
        } else if (!have_evicted || key > ev_key) {
            ev_key = key;
            ev_idx = j;
            have_evicted = 1;
        }
    }
    if (have_kept && have_evicted)
        CHECK(kept_key > ev_key || (kept_key == ev_key && kept_idx < ev_idx));
}

/* A keep list of k slots under KF_ORDER_ANY: the same choices by position
 * (window: positions from next - w on), key tokens ranked among the
 * others in slot order. */
static void check_keep_list_any(const session *s, const lane_copy *lanes,
                                int layer, uint32_t g, const uint32_t *keep,
                                uint32_t k, uint32_t w, int was_prompt)
{
    uint32_t n = lanes[layer].n, steps;
    int32_t next;
    CHECK(kf_layer_progress(s->cache, layer, &steps, &next) == KF_OK);
    const int32_t *pos = lanes[layer].pos[g];
    static uint8_t kept[MAX_CAPACITY], cand[MAX_CAPACITY];
    memset(kept, 0, n);
    for (uint32_t i = 0; i < k; i++)
        kept[keep[i]] = 1;
    int64_t recent = (int64_t)next - w;
    for (uint32_t j = 0; j < n; j++) {
        int64_t p = pos[j];
        switch (s->cfg.policy) {
        case KF_POLICY_WINDOW:
            CHECK(kept[j] == (p >= (int64_t)next - k));
            break;
        case KF_POLICY_SINKS:
            CHECK(kept[j] == (p < s->cfg.n_sinks
                              || p >= (int64_t)next - (k - s->cfg.n_sinks)));
            break;
        default:
            if (p >= recent)
                CHECK(kept[j]); /* the window */
            else if (s->cfg.rule == KF_RULE_REFERENCE && !was_prompt)
                CHECK(kept[j] == (p < recent - (int64_t)(n - k)));
            cand[j] = p < recent;
        }
    }
    if (!scoring(s)
        || (s->cfg.rule == KF_RULE_REFERENCE && !was_prompt))
        return;
    float ranked[MAX_CAPACITY];
    ranked_scores(s, lanes, layer, g, ranked);
    norm_keys(s, lanes, layer, g, ranked);
    check_ranked(ranked, cand, kept, n);
}

/* One keep list against the policy. */
static void check_keep_list(const session *s, const lane_copy *lanes, int layer,
                            uint32_t g, const uint32_t *keep, uint32_t count,
                            uint32_t k, uint32_t w, int was_prompt)
{
    uint32_t n = lanes[layer].n;
    kf_policy pol = s->cfg.policy;
    for (uint32_t i = 0; i < count; i++) {
        CHECK(keep[i] < n);
        if (i)
            CHECK(keep[i] > keep[i - 1]);
    }
    uint32_t every = s->cfg.evict_interval;
    uint32_t slack = !was_prompt && every > 1 ? every - 1 : 0;
    if (pol == KF_POLICY_FULL || n <= k + slack) {
        CHECK(count == n);
        return;
    }
    CHECK(count == k);
    if (s->cfg.slot_order == KF_ORDER_ANY) {
        check_keep_list_any(s, lanes, layer, g, keep, k, w, was_prompt);
        return;
    }
    if (pol == KF_POLICY_WINDOW) {
        for (uint32_t i = 0; i < k; i++)
            CHECK(keep[i] == n - k + i);
        return;
    }
    if (pol == KF_POLICY_SINKS) {
        uint32_t sinks = s->cfg.n_sinks;
        CHECK(sinks < k);
        for (uint32_t i = 0; i < k; i++)
            CHECK(keep[i] == (i < sinks ? i : n - k + i));
        return;
    }
    CHECK(w <= k);
    for (uint32_t i = 0; i < w; i++) /* the window */
        CHECK(keep[k - w + i] == n - w + i);
    if (s->cfg.rule == KF_RULE_REFERENCE && !was_prompt) {
        for (uint32_t i = 0; i < k - w; i++)
            CHECK(keep[i] == i);
        return;
    }
    /* key tokens: each kept older slot outranks each evicted one (higher
     * score, or equal score and lower index) */
    float ranked[MAX_CAPACITY];
    ranked_scores(s, lanes, layer, g, ranked);
    norm_keys(s, lanes, layer, g, ranked);
    uint32_t older = n - w, next = 0;
    int have_kept = 0, have_evicted = 0;
    uint32_t kept_key = 0, kept_idx = 0, ev_key = 0, ev_idx = 0;
    for (uint32_t j = 0; j < older; j++) {
        uint32_t key = rank_key(ranked[j]);
        if (next < k - w && keep[next] == j) {
            next++;
            /* weakest kept: lowest key, then highest index */
            if (!have_kept || key < kept_key || (key == kept_key && j > kept_idx)) {
                kept_key = key;
                kept_idx = j;
            }
            have_kept = 1;
        } else {
            /* strongest evicted: highest key, then lowest index */
            if (!have_evicted || key > ev_key) {
                ev_key = key;
                ev_idx = j;
            }
            have_evicted = 1;
        }
    }
    CHECK(next == k - w);
    if (have_kept && have_evicted)
        CHECK(kept_key > ev_key || (kept_key == ev_key && kept_idx < ev_idx));
}

/* head_budget ADAPTIVE: the prompt's split of layer `layer` (k_l, w_l),
 * against the header: every head keeps the same R rows; its live ones
 * (position unchanged) hold the window, the sinks and its m_g best
 * rankable slots by key over the head's key sum; the rest of its rows
 * are evicted slots now at position -1 (holes); floor <= m_g <= ceiling,
 * the m_g sum to n_kv * m, R = max k_g, and no head below its ceiling
 * has an evicted key above a kept key of a head above its floor. Returns
 * R. */
static uint32_t check_split(const session *s, const lane_copy *lanes, int layer,
                            uint32_t k, uint32_t w)
{
    const lane_copy *old = &lanes[layer];
    uint32_t n = old->n, n_kv = s->cfg.n_kv_heads, S = s->cfg.sink_tokens;
    uint32_t m = k - w - S, rows = 0, total = 0, most = 0;
    uint32_t slack = s->cfg.evict_interval > 1 ? s->cfg.evict_interval : 0;
    uint32_t ceil_m = 2 * m;
    ceil_m = ceil_m < s->cfg.capacity - slack - w - S ? ceil_m : s->cfg.capacity - slack - w - S;
    ceil_m = ceil_m < n - w - S ? ceil_m : n - w - S;
    double f = ceil((double)s->cfg.head_floor * (double)m);
    uint32_t floor_m = f < 1.0 ? 1 : f > (double)m ? m : (uint32_t)f;
    static float keys[MAX_KV_HEADS][MAX_CAPACITY];
    static uint8_t live[MAX_KV_HEADS][MAX_CAPACITY];
    uint32_t places[MAX_KV_HEADS];
    for (uint32_t g = 0; g < n_kv; g++) {
        const uint32_t *keep;
        const int32_t *pos;
        uint32_t count, cnt, next = 0;
        CHECK(kf_kept_slots(s->cache, layer, (int)g, &keep, &count) == KF_OK);
        CHECK(kf_slot_positions(s->cache, layer, (int)g, &pos, &cnt) == KF_OK && cnt == n);
        if (g == 0)
            rows = count;
        CHECK(count == rows);
        /* the head's keys over their sum, in slot order */
        ranked_scores(s, lanes, layer, g, keys[g]);
        norm_keys(s, lanes, layer, g, keys[g]);
        float sum = 0.0f;
        for (uint32_t j = S; j < n - w; j++)
            sum += keys[g][j];
        for (uint32_t j = S; j < n - w && sum > 0.0f; j++)
            keys[g][j] /= sum;
        uint32_t n_live = 0;
        for (uint32_t j = 0; j < n; j++) {
            int kept = next < count && keep[next] == j;
            next += kept;
            int fixed = j < S || j >= n - w; /* prompt: slot j is position j */
            CHECK(old->pos[g][j] == (int32_t)j);
            if (fixed)
                CHECK(kept && pos[j] == (int32_t)j);
            CHECK(pos[j] == (int32_t)j || (kept && pos[j] == -1));
            live[g][j] = kept && pos[j] >= 0;
            n_live += live[g][j];
        }
        CHECK(n_live >= w + S + floor_m && n_live <= w + S + ceil_m);
        places[g] = n_live - w - S;
        total += places[g];
        most = n_live > most ? n_live : most;
        /* within the head: each live rankable slot outranks each other one */
        static uint8_t cand[MAX_CAPACITY];
        for (uint32_t j = 0; j < n; j++)
            cand[j] = j >= S && j < n - w;
        check_ranked(keys[g], cand, live[g], n);
    }
    CHECK(total == n_kv * m);
    CHECK(rows == most);
    /* across heads: the threshold */
    for (uint32_t g = 0; g < n_kv; g++) {
        if (places[g] <= floor_m)
            continue;
        for (uint32_t h = 0; h < n_kv; h++) {
            if (places[h] >= ceil_m)
                continue;
            for (uint32_t i = S; i < n - w; i++) {
                if (!live[g][i])
                    continue;
                for (uint32_t j = S; j < n - w; j++)
                    if (!live[h][j])
                        CHECK(rank_key(keys[g][i]) >= rank_key(keys[h][j]));
            }
        }
    }
    return rows;
}

static void op_select(session *s, int layer)
{
    kf_cache *c = s->cache;
    uint32_t n_layers = s->cfg.n_layers < MAX_LAYERS ? s->cfg.n_layers : MAX_LAYERS;
    int all = layer == KF_ALL_LAYERS;
    int uniform = s->cfg.granularity == KF_GRANULARITY_UNIFORM;
    static lane_copy lanes[MAX_LAYERS];
    for (uint32_t l = 0; l < n_layers; l++)
        copy_layer(s, (int)l, &lanes[l]);

    /* what the header makes invalid */
    int verdict = -1;
    if (!all && !layer_in_range(s, layer))
        verdict = 0; /* KF_ERANGE */
    else if (uniform && !all)
        verdict = 0; /* KF_ESTATE */
    else
        for (uint32_t l = 0; l < n_layers; l++)
            if ((all || (int)l == layer) && (!s->observed[l] || lanes[l].selected))
                verdict = 0; /* KF_ESTATE: nothing observed, or selected */

    snapshot before = snap(c);
    int status = kf_select(c, layer);
    trace("select layer=%d -> %d (verdict %d)\n", layer, status, verdict);
    check_code(status, CODES_SELECT);
    if (status) {
        check_unchanged(c, before);
        return;
    }
    CHECK(verdict != 0);
    uint32_t k, w;
    CHECK(kf_budget(c, &k, &w) == KF_OK);
    if (s->cfg.policy != KF_POLICY_FULL)
        CHECK(k >= 1 && k <= s->cfg.capacity && w <= k);
    /* pool_kernel: a prompt selection pooled the scores it ranked, and
     * they replace the stored ones */
    if (scoring(s) && s->cfg.pool_kernel >= 3)
        for (uint32_t l = 0; l < n_layers; l++) {
            if ((!all && (int)l != layer) || s->prompt_done[l])
                continue;
            for (uint32_t g = 0; g < s->cfg.n_kv_heads; g++) {
                const float *now;
                uint32_t n;
                const int32_t *pos;
                pool_model(s, lanes[l].scores[g], lanes[l].n);
                CHECK(kf_slot_scores(c, (int)l, (int)g, &now, &n) == KF_OK);
                CHECK(n == lanes[l].n);
                CHECK(kf_slot_positions(c, (int)l, (int)g, &pos, &n) == KF_OK);
                /* head_budget: the split's holes read 0 */
                for (uint32_t j = 0; j < n; j++)
                    CHECK(pos[j] < 0 ? now[j] == 0.0f
                                     : memcmp(&now[j], &lanes[l].scores[g][j], sizeof *now) == 0);
            }
        }
    if (s->cfg.policy != KF_POLICY_FULL && s->cfg.evict_interval > 1)
        CHECK((uint64_t)k + s->cfg.evict_interval <= s->cfg.capacity);
    for (uint32_t l = 0; l < n_layers; l++) {
        if (!all && (int)l != layer)
            continue;
        for (uint32_t g = 0; g < s->cfg.n_kv_heads; g++) {
            const uint32_t *keep;
            uint32_t count, n;
            CHECK(kf_kept_slots(c, (int)l, (int)g, &keep, &count) == KF_OK);
            CHECK(kf_slot_count(c, (int)l, (int)g, &n) == KF_OK && n == lanes[l].n);
            /* layer_slope: the layer's own share of the budget */
            uint32_t kl, wl;
            CHECK(kf_layer_budget(c, (int)l, &kl, &wl) == KF_OK);
            CHECK(kl == layer_budget_model(s, k, l));
            if (s->cfg.policy != KF_POLICY_FULL)
                CHECK(kl >= 1 && kl <= s->cfg.capacity && wl <= kl
                      && (s->cfg.evict_interval <= 1
                          || (uint64_t)kl + s->cfg.evict_interval <= s->cfg.capacity));
            /* head_budget: the prompt's split, then R rows */
            if (s->cfg.head_budget == KF_HEAD_BUDGET_ADAPTIVE && scoring(s)
                && !s->prompt_done[l] && lanes[l].n > kl) {
                if (g == 0)
                    s->rows[l] = check_split(s, lanes, (int)l, kl, wl);
                continue;
            }
            check_keep_list(s, lanes, (int)l, g, keep, count,
                            s->rows[l] ? s->rows[l] : kl, wl, !s->prompt_done[l]);
        }
    }
    if (uniform) { /* removed = positions of layer 0, head 0 not kept, ascending */
        const int32_t *removed;
        const uint32_t *keep;
        uint32_t n_removed, count, next = 0;
        CHECK(kf_removed_positions(c, &removed, &n_removed) == KF_OK);
        CHECK(kf_kept_slots(c, 0, 0, &keep, &count) == KF_OK);
        CHECK(n_removed == lanes[0].n - count);
        for (uint32_t r = 1; r < n_removed; r++)
            CHECK(removed[r - 1] < removed[r]);
        for (uint32_t j = 0; j < lanes[0].n; j++) {
            if (next < count && keep[next] == j) {
                next++;
                continue;
            }
            uint32_t r = 0; /* positions are distinct: one match */
            while (r < n_removed && removed[r] != lanes[0].pos[0][j])
                r++;
            CHECK(r < n_removed);
        }
    }
    for (uint32_t l = 0; l < n_layers; l++)
        if (all || (int)l == layer)
            s->prompt_done[l] = 1;
    s->removed_valid = uniform;
}

/* ---- compact ---- */

typedef struct kv_plan {
    kf_kv_view v;
    uint8_t *mem;   /* allocation (data may start 1 byte in) */
    size_t bytes;   /* bytes from data the view covers */
    size_t elem;    /* element size the layout was computed with */
    size_t len;     /* elements per row: head_dim, or row_bytes bytes */
    uint8_t *before; /* copy of the covered bytes */
    int verdict;
    int specials;    /* special values written (values mode) */
} kv_plan;

static const uint16_t k_f16_specials[] = { 0x7c00, 0xfc00, 0x7e00, 0x7bff, 0x0001, 0x8000 };
static const uint16_t k_bf16_specials[] = { 0x7f80, 0xff80, 0x7fc0, 0x7f7f, 0x0001, 0x8000 };

/* Ordinary values of the view's dtype (|x| < 4) in every element from
 * data, then a few special ones (NaN, +-inf, the largest finite, a
 * denormal, -0) at input-chosen elements. */
static void fill_kv_values(fz_input *in, kv_plan *p, uint64_t *st)
{
    uint8_t *d = (uint8_t *)p->v.data;
    size_t n = p->bytes / p->elem;
    for (size_t e = 0; e < n; e++) {
        uint32_t r = bulk_next(st);
        if (p->elem == 4) {
            float x = ((float)(r % 2001) - 1000.0f) / 250.0f;
            memcpy(d + 4 * e, &x, 4);
        } else {
            uint16_t bits;
            if (p->v.dtype == KF_DTYPE_F16) /* exponent 2^-5 .. 2^1 */
                bits = (uint16_t)((r & 0x8000u) | (10u + r % 7u) << 10 | (r >> 16 & 0x3ffu));
            else { /* bf16: the top half of an ordinary float */
                float x = ((float)(r % 2001) - 1000.0f) / 250.0f;
                uint32_t u;
                memcpy(&u, &x, 4);
                bits = (uint16_t)(u >> 16);
            }
            memcpy(d + 2 * e, &bits, 2);
        }
    }
    int pokes = n ? (int)fz_range(in, 0, 3) : 0;
    for (int k = 0; k < pokes; k++) {
        size_t e = fz_range(in, 0, (uint32_t)(n - 1 < UINT32_MAX ? n - 1 : UINT32_MAX));
        if (p->elem == 4) {
            float x = fz_float(in);
            memcpy(d + 4 * e, &x, 4);
        } else {
            uint32_t which = fz_range(in, 0, 5);
            uint16_t bits = p->v.dtype == KF_DTYPE_F16 ? k_f16_specials[which]
                                                       : k_bf16_specials[which];
            memcpy(d + 2 * e, &bits, 2);
        }
        p->specials++;
    }
}

/* A K or V view of `cur` slots per KV head; random also breaks it; values
 * fills it with numbers (for kf_observe_qk) rather than random bytes.
 * Returns 0 when the buffer would be too large to allocate (skip). */
static int plan_kv(session *s, uint32_t cur, int random, int values, kv_plan *p)
{
    fz_input *in = &s->in;
    kf_kv_view *v = &p->v;
    uint32_t hd = s->cfg.head_dim, n_kv = s->cfg.n_kv_heads;
    memset(p, 0, sizeof *p);
    int strides = 1, misalign = 0, null_data = 0, short_bytes = 0;
    v->dtype = (kf_dtype)fz_range(in, 0, 2);
    /* now and then a quantized cache: opaque rows of any byte size, strides
     * in bytes, any alignment */
    if (fz_chance(in, 40)) {
        v->dtype = KF_DTYPE_ROW_BYTES;
        if (fz_chance(in, 128)) { /* odd sizes */
            v->row_bytes = fz_range(in, 1, 70);
        } else { /* about a block format's row: head_dim * (1 .. 4) + 0 .. 3 */
            v->row_bytes = (size_t)hd * fz_range(in, 1, 4);
            v->row_bytes += fz_range(in, 0, 3);
        }
    }
    size_t len = v->dtype == KF_DTYPE_ROW_BYTES ? v->row_bytes : hd;
    v->n_slots = cur;
    size_t pad_t = fz_range(in, 0, 2), pad_h = fz_range(in, 0, 2);
    if (fz_chance(in, 128)) { /* [head][token][dim] */
        v->token_stride = len + pad_t;
        v->head_stride = cur * v->token_stride + pad_h;
    } else { /* [token][head][dim] */
        v->head_stride = len + pad_h;
        v->token_stride = n_kv * v->head_stride + pad_t;
    }
    int n_breaks = random ? (int)fz_range(in, 1, 2) : 0;
    for (int k = 0; k < n_breaks; k++) {
        switch (fz_range(in, 0, 8)) {
        case 0: v->dtype = (kf_dtype)(fz_chance(in, 128) ? 4 : -1); break;
        case 1: v->n_slots += fz_chance(in, 128) ? 1u : UINT32_MAX; break;
        case 2: v->token_stride = fz_size(in, 2u * hd * n_kv); strides = -1; break;
        case 3: v->head_stride = fz_size(in, 2u * hd * (cur + 1)); strides = -1; break;
        case 4: misalign = 1; break;
        case 5: null_data = 1; break;
        case 6: v->n_slots = 0; break;
        case 7: short_bytes = 1; break; /* declared bytes too few */
        case 8: v->row_bytes = 0; break; /* KF_ERANGE for opaque rows */
        default: break;
        }
    }
    /* the header's rules, on the final fields: opaque rows need no
     * alignment, and kf_observe_qk (values) cannot read them */
    int opaque = v->dtype == KF_DTYPE_ROW_BYTES;
    int dtype_ok = v->dtype == KF_DTYPE_F32 || v->dtype == KF_DTYPE_F16
                   || v->dtype == KF_DTYPE_BF16
                   || (opaque && !values && v->row_bytes);
    int verdict = dtype_ok && v->n_slots == cur && (!misalign || opaque)
                      && !null_data ? strides : 0;
    p->elem = v->dtype == KF_DTYPE_F32 ? 4 : v->dtype == KF_DTYPE_F16 || v->dtype == KF_DTYPE_BF16 ? 2 : opaque ? 1 : 4;
    p->len = opaque ? v->row_bytes : hd;
    size_t ext;
    if (!extent_of(p->len ? p->len : 1, v->token_stride, v->n_slots ? v->n_slots : 1,
                   v->head_stride, n_kv, &ext)
        || !checked_mul(ext, p->elem, &p->bytes)) {
        /* the extent overflows: KF_EOVERFLOW (documented); a token buffer */
        verdict = 0;
        p->bytes = p->elem;
    } else if (p->bytes > MAX_BUFFER_BYTES) {
        return 0;
    } else if (short_bytes && p->bytes > 1) { /* KF_ELAYOUT */
        v->bytes = fz_range(in, 1, (uint32_t)(p->bytes - 1));
        verdict = 0;
    } else if (fz_chance(in, 128)) { /* declared: exactly, or generously */
        v->bytes = p->bytes + (fz_chance(in, 128) ? 0 : fz_range(in, 1, 64));
    }
    p->mem = malloc(p->bytes + 1);
    p->before = malloc(p->bytes);
    CHECK(p->mem && p->before);
    uint64_t st = (uint64_t)fz_u32(in) << 1 | 1;
    for (size_t b = 0; b < p->bytes + 1; b++)
        p->mem[b] = (uint8_t)bulk_next(&st);
    v->data = p->mem + misalign;
    if (values && verdict)
        fill_kv_values(in, p, &st);
    memcpy(p->before, p->mem + misalign, p->bytes);
    if (null_data)
        v->data = NULL;
    p->verdict = verdict;
    return 1;
}

static void free_kv(kv_plan *p)
{
    free(p->mem);
    free(p->before);
}

/* The buffer after a correct compaction: row i of head g is old row
 * src[i] (sources()), everything else as it was. */
static void check_compacted(const session *s, const kv_plan *p,
                            const lane_copy *lc)
{
    const kf_kv_view *v = &p->v;
    uint8_t *want = malloc(p->bytes);
    CHECK(want != NULL);
    memcpy(want, p->before, p->bytes);
    size_t row = p->len * p->elem;
    static uint32_t from[MAX_CAPACITY];
    for (uint32_t g = 0; g < s->cfg.n_kv_heads; g++) {
        sources(s, lc, g, from);
        for (uint32_t i = 0; i < lc->n_keep; i++) {
            size_t dst = (g * v->head_stride + i * v->token_stride) * p->elem;
            size_t src = (g * v->head_stride + from[i] * v->token_stride) * p->elem;
            memcpy(want + dst, p->before + src, row);
        }
    }
    CHECK(memcmp(want, v->data, p->bytes) == 0);
    free(want);
}

static void op_compact(session *s, int layer, int random)
{
    kf_cache *c = s->cache;
    fz_input *in = &s->in;
    int all = layer == KF_ALL_LAYERS;
    int in_range = layer_in_range(s, layer);
    uint32_t n_layers = s->cfg.n_layers < MAX_LAYERS ? s->cfg.n_layers : MAX_LAYERS;
    static lane_copy lanes[MAX_LAYERS];
    for (uint32_t l = 0; l < n_layers; l++)
        copy_layer(s, (int)l, &lanes[l]);

    /* views: none, K only, V only, or both */
    unsigned which = random ? fz_range(in, 0, 3) : (all ? 0 : fz_range(in, 0, 3) | (fz_chance(in, 200) ? 3u : 0u));
    kv_plan kp, vp;
    int have_k = 0, have_v = 0;
    /* the layer's copy (in range: layer < n_layers <= MAX_LAYERS) */
    const lane_copy *mine = in_range ? &lanes[(uint32_t)layer % MAX_LAYERS] : NULL;
    uint32_t cur = mine ? mine->n : 0;
    if (which & 1) {
        if (!plan_kv(s, cur, random, 0, &kp))
            return;
        have_k = 1;
    }
    if (which & 2) {
        if (!plan_kv(s, cur, random, 0, &vp)) {
            if (have_k)
                free_kv(&kp);
            return;
        }
        have_v = 1;
    }
    /* V on K's memory: the same start, or starting inside K's range */
    int same = have_k && have_v && random && kp.v.data && vp.v.data
               && fz_chance(in, 24);
    kf_kv_view vv;
    uint8_t *joint = NULL;
    if (have_v) {
        vv = vp.v;
        if (same) {
            size_t at = fz_range(in, 0, (uint32_t)(kp.bytes - 1 < 4096 ? kp.bytes - 1 : 4096));
            at -= at % vp.elem;
            /* one block holding both, so neither view reaches outside it */
            size_t k_off = (size_t)((uint8_t *)kp.v.data - kp.mem);
            size_t total = k_off + (at + vp.bytes > kp.bytes ? at + vp.bytes : kp.bytes);
            joint = malloc(total);
            CHECK(joint != NULL);
            memcpy(joint, kp.mem, k_off + kp.bytes);
            free(kp.mem);
            kp.mem = joint;
            kp.v.data = joint + k_off;
            memcpy(kp.before, kp.v.data, kp.bytes);
            vv.data = (uint8_t *)kp.v.data + at;
        }
    }

    int verdict = 1;
    if (all) {
        if (have_k || have_v)
            verdict = 0; /* KF_EINVAL */
        for (uint32_t l = 0; l < n_layers; l++)
            if (!lanes[l].selected)
                verdict = 0; /* KF_ESTATE */
    } else if (!in_range) {
        verdict = 0;
    } else {
        if (!mine->selected)
            verdict = 0;
        if (have_k)
            verdict = verdict_and(verdict, kp.verdict);
        if (have_v)
            verdict = verdict_and(verdict, vp.verdict);
        if (same)
            verdict = 0; /* KF_ELAYOUT: k and v overlap */
    }

    snapshot before = snap(c);
    int status = kf_compact(c, layer, have_k ? &kp.v : NULL, have_v ? &vv : NULL);
    trace("compact layer=%d k=%d v=%d same=%d -> %d (verdict %d)\n", layer,
          have_k, have_v, same, status, verdict);
    if (have_k)
        trace("  k: dtype=%d slots=%u ts=%zu hs=%zu verdict=%d\n", (int)kp.v.dtype,
              kp.v.n_slots, kp.v.token_stride, kp.v.head_stride, kp.verdict);
    if (have_v)
        trace("  v: dtype=%d slots=%u ts=%zu hs=%zu verdict=%d\n", (int)vv.dtype,
              vv.n_slots, vv.token_stride, vv.head_stride, vp.verdict);
    check_code(status, CODES_COMPACT);
    if (status) {
        check_unchanged(c, before);
        CHECK(verdict != 1);
        if (have_k && kp.v.data)
            CHECK(memcmp(kp.v.data, kp.before, kp.bytes) == 0);
        if (have_v && vp.v.data && !same)
            CHECK(memcmp(vp.v.data, vp.before, vp.bytes) == 0);
    } else {
        CHECK(verdict != 0);
        for (uint32_t l = 0; l < n_layers; l++) {
            if (!all && (int)l != layer)
                continue;
            uint32_t k = 0, w = 0;
            int budget_st = kf_layer_budget(c, (int)l, &k, &w);
            const lane_copy *old = &lanes[l];
            lane_copy now;
            copy_layer(s, (int)l, &now);
            CHECK(!now.selected);
            CHECK(now.n == old->n_keep);
            /* batched eviction holds up to k + B - 1 between evictions */
            uint32_t every = s->cfg.evict_interval;
            k = s->rows[l] ? s->rows[l] : k; /* head_budget: R rows */
            if (budget_st == KF_OK && s->cfg.policy != KF_POLICY_FULL)
                CHECK(now.n <= k || (every > 1 && now.n < k + every));
            /* and room for the next decode row (k + B <= capacity) */
            if (s->cfg.policy != KF_POLICY_FULL && every > 1)
                CHECK(now.n < s->cfg.capacity);
            static uint32_t src[MAX_CAPACITY];
            for (uint32_t g = 0; g < s->cfg.n_kv_heads; g++) {
                sources(s, old, g, src);
                for (uint32_t i = 0; i < now.n; i++) {
                    CHECK(now.pos[g][i] == old->pos[g][src[i]]);
                    CHECK(memcmp(&now.scores[g][i], &old->scores[g][src[i]], sizeof(float)) == 0);
                }
                /* position order: the held positions ascend (holes aside) */
                int32_t last = -1;
                for (uint32_t i = 0; s->cfg.slot_order != KF_ORDER_ANY && i < now.n; i++) {
                    if (now.pos[g][i] < 0)
                        continue;
                    CHECK(now.pos[g][i] > last);
                    last = now.pos[g][i];
                }
            }
            s->observed[l] = 0;
        }
        if (have_k)
            check_compacted(s, &kp, mine);
        if (have_v)
            check_compacted(s, &vp, mine);
        if (s->cfg.granularity == KF_GRANULARITY_UNIFORM) {
            /* compaction keeps the removed positions; an observe since the
             * selection drops them */
            const int32_t *removed;
            uint32_t n_removed;
            CHECK(kf_removed_positions(c, &removed, &n_removed)
                  == (s->removed_valid ? KF_OK : KF_ESTATE));
        }
    }
    if (have_k)
        free_kv(&kp);
    if (have_v)
        free_kv(&vp);
}

/* ---- observe from queries and keys ---- */

static void op_observe_qk(session *s, int layer, uint32_t rows, int random)
{
    kf_cache *c = s->cache;
    fz_input *in = &s->in;
    uint32_t heads = s->cfg.n_heads, hd = s->cfg.head_dim, cap = s->cfg.capacity;
    int in_range = layer_in_range(s, layer);
    uint32_t cur = in_range ? slots_of(s, layer) : 0;
    uint32_t room = cap > cur ? cap - cur : 0;
    kf_query_view q;
    memset(&q, 0, sizeof q);
    q.n_rows = rows ? rows : room > 1 ? fz_range(in, 1, room < 4 ? room : 4) : 1;
    q.flags = fz_chance(in, 128) ? KF_LOGITS_CAUSAL : 0;
    static const float scales[] = { 0.0f, 1.0f, 0.5f, 0.125f, -0.0f, 1e38f,
                                    -1.0f, NAN, INFINITY };
    q.scale = scales[fz_range(in, 0, random ? 8 : 3)];
    size_t pad_r = fz_range(in, 0, 2), pad_h = fz_range(in, 0, 2);
    if (fz_chance(in, 128)) { /* [head][row][dim] */
        q.row_stride = hd + pad_r;
        q.head_stride = q.n_rows * q.row_stride + pad_h;
    } else { /* [row][head][dim] */
        q.head_stride = hd + pad_h;
        q.row_stride = heads * q.head_stride + pad_r;
    }
    int strides = 1, q_null = 0, k_null = 0, misalign = 0;
    int n_breaks = random ? (int)fz_range(in, 1, 2) : 0;
    for (int k = 0; k < n_breaks; k++) {
        switch (fz_range(in, 0, 7)) {
        case 0: q.n_rows = 0; break;
        case 1: q.flags |= fz_u32(in) | 2u; break;
        case 2: q.row_stride = fz_size(in, 2u * hd * heads); strides = -1; break;
        case 3: q.head_stride = fz_size(in, 2u * hd * (q.n_rows + 1)); strides = -1; break;
        case 4: q.n_rows = fz_range(in, 1, 2 * MAX_CAPACITY);
            q.row_stride = hd;
            q.head_stride = (size_t)hd * q.n_rows;
            strides = 1;
            break;
        case 5: q_null = 1; break;
        case 6: k_null = 1; break;
        default: misalign = 1; break;
        }
    }
    int shape = in_range && q.n_rows >= 1 && cur + q.n_rows <= cap
                && !(q.flags & ~KF_LOGITS_CAUSAL) && q.scale >= 0.0f
                && q.scale != INFINITY;
    if (in_range && is_selected_layer(s, layer))
        shape = 0; /* KF_ESTATE */

    /* the query buffer the view describes */
    size_t ext, bytes;
    if (!extent_of(hd, q.row_stride, q.n_rows ? q.n_rows : 1, q.head_stride,
                   heads, &ext)
        || !checked_mul(ext, sizeof(float), &bytes)) {
        /* overflows in elements or bytes: an error; a token buffer */
        strides = 0;
        ext = 1;
    } else if (bytes > MAX_BUFFER_BYTES) {
        return; /* a real but huge buffer */
    }
    uint8_t *q_mem = malloc(ext * sizeof(float) + 1);
    CHECK(q_mem != NULL);
    float *qf = (float *)(void *)q_mem;
    uint64_t st = (uint64_t)fz_u32(in) << 1 | 1;
    for (size_t e = 0; e < ext; e++)
        qf[e] = ((float)(bulk_next(&st) % 2001) - 1000.0f) / 250.0f;
    /* a huge scale overflows ordinary dot products to +-inf: a value
     * error, like a special value */
    int specials = q.scale > 1e30f;
    int pokes = (int)fz_range(in, 0, 2);
    for (int k = 0; k < pokes; k++) {
        qf[fz_range(in, 0, (uint32_t)(ext - 1 < UINT32_MAX ? ext - 1 : UINT32_MAX))] = fz_float(in);
        specials++;
    }
    q.data = misalign ? (const float *)(const void *)(q_mem + 1) : qf;
    if (misalign) {
        memmove(q_mem + 1, q_mem, ext * sizeof(float));
        strides = 0; /* KF_ELAYOUT */
    }
    /* the query buffer's size, declared or not; short of its last float
     * it is KF_ELAYOUT */
    if (strides && fz_chance(in, 128)) {
        size_t have = ext * sizeof(float);
        if (random && have > 1 && fz_chance(in, 96)) {
            q.bytes = fz_range(in, 1, (uint32_t)(have - 1 < UINT32_MAX ? have - 1 : UINT32_MAX));
            strides = 0;
        } else {
            q.bytes = have + (fz_chance(in, 128) ? 0 : fz_range(in, 1, 64));
        }
    }

    kv_plan kp;
    if (!plan_kv(s, cur + q.n_rows, random, 1, &kp)) {
        free(q_mem);
        return;
    }
    specials += kp.specials;
    int q_verdict = q_null ? (scoring(s) ? 0 : 1) : strides;
    int k_verdict = k_null ? (scoring(s) ? 0 : 1) : kp.verdict;
    if (q_null)
        q.data = NULL;
    int verdict = verdict_and(shape, verdict_and(q_verdict, k_verdict));

    lane_copy before_lane;
    uint32_t steps0 = 0;
    int32_t next0 = 0;
    if (in_range) {
        copy_layer(s, layer, &before_lane);
        CHECK(kf_layer_progress(c, layer, &steps0, &next0) == KF_OK);
    }
    snapshot before = snap(c);
    int status = kf_observe_qk(c, layer, &q, k_null ? NULL : &kp.v);
    trace("observe_qk layer=%d cur=%u rows=%u rs=%zu hs=%zu flags=%u scale=%g "
          "q=%d k=%d specials=%d -> %d (verdict %d)\n", layer, cur, q.n_rows,
          q.row_stride, q.head_stride, q.flags, (double)q.scale, !q_null,
          !k_null, specials, status, verdict);
    trace("  k: dtype=%d slots=%u ts=%zu hs=%zu verdict=%d; q shape=%d strides=%d\n",
          (int)kp.v.dtype, kp.v.n_slots, kp.v.token_stride, kp.v.head_stride,
          kp.verdict, shape, strides);
    check_code(status, CODES_OBSERVE);
    if (kp.v.data) /* keys are read, never written */
        CHECK(memcmp(kp.v.data, kp.before, kp.bytes) == 0);
    if (status) {
        check_unchanged(c, before);
        if (verdict == 1) {
            /* only values can make a valid call fail */
            CHECK(scoring(s) && specials);
            CHECK(status == KF_ENAN || status == KF_EEMPTYROW);
        }
    } else {
        CHECK(verdict != 0);
        check_observed(s, layer, cur, q.n_rows, &before_lane, steps0, next0);
    }
    free(q_mem);
    free_kv(&kp);
}

/* ---- queries, reset, misuse without a cache ---- */

static void op_queries(session *s)
{
    kf_cache *c = s->cache;
    fz_input *in = &s->in;
    int layer = pick_layer(in, s->cfg.n_layers, 0);
    int head = fz_chance(in, 220) ? (int)fz_range(in, 0, s->cfg.n_kv_heads - 1)
                                  : (fz_chance(in, 128) ? -1 : (int)s->cfg.n_kv_heads);
    int null_out = fz_chance(in, 24);
    snapshot before = snap(c);
    const int32_t *pos;
    const float *sc;
    const uint32_t *keep;
    uint32_t n, steps, k, w;
    int32_t next;
    float tau;
    size_t bytes;
    kf_config cfg;
    int st;
    st = kf_slot_count(c, layer, head, null_out ? NULL : &n);
    check_code(st, CODES_QUERY);
    st = kf_slot_positions(c, layer, head, &pos, null_out ? NULL : &n);
    check_code(st, CODES_QUERY);
    if (!st)
        CHECK(n <= s->cfg.capacity);
    st = kf_slot_scores(c, layer, head, null_out ? NULL : &sc, &n);
    check_code(st, CODES_QUERY);
    st = kf_kept_slots(c, layer, head, &keep, null_out ? NULL : &n);
    check_code(st, CODES_QUERY | BIT(KF_ESTATE));
    st = kf_layer_progress(c, layer, &steps, null_out ? NULL : &next);
    check_code(st, CODES_QUERY);
    st = kf_current_tau(c, layer, null_out ? NULL : &tau);
    check_code(st, CODES_QUERY);
    if (!st)
        CHECK(isfinite(tau) && tau > 0.0f);
    st = kf_budget(c, null_out ? NULL : &k, &w);
    check_code(st, BIT(KF_EINVAL) | BIT(KF_ESTATE));
    st = kf_layer_budget(c, layer, null_out ? NULL : &k, &w);
    check_code(st, BIT(KF_EINVAL) | BIT(KF_ERANGE) | BIT(KF_ESTATE));
    st = kf_removed_positions(c, &pos, null_out ? NULL : &n);
    check_code(st, BIT(KF_EINVAL) | BIT(KF_ESTATE));
    st = kf_cache_memory(c, null_out ? NULL : &bytes);
    check_code(st, BIT(KF_EINVAL));
    st = kf_cache_config(c, null_out ? NULL : &cfg);
    check_code(st, BIT(KF_EINVAL));
    check_unchanged(c, before);
}

static void op_null_cache(fz_input *in)
{
    uint32_t n;
    const uint32_t *keep;
    size_t bytes;
    float x = 0.0f;
    kf_logits_view lv = { &x, 1, 1, 1, 1, 0, 0 };
    int layer = (int)fz_range(in, 0, 2) - 1;
    CHECK(kf_cache_reset(NULL) == KF_EINVAL);
    CHECK(kf_observe_logits(NULL, layer, &lv) == KF_EINVAL);
    CHECK(kf_select(NULL, layer) == KF_EINVAL);
    CHECK(kf_compact(NULL, layer, NULL, NULL) == KF_EINVAL);
    CHECK(kf_kept_slots(NULL, 0, 0, &keep, &n) == KF_EINVAL);
    CHECK(kf_slot_count(NULL, 0, 0, &n) == KF_EINVAL);
    CHECK(kf_cache_memory(NULL, &bytes) == KF_EINVAL);
    CHECK(kf_cache_create(NULL, NULL) == KF_EINVAL);
    CHECK(kf_config_default(NULL) == KF_EINVAL);
    const char *msg = kf_strerror((int)fz_u32(in));
    CHECK(msg != NULL);
    CHECK(kf_version() != NULL && kf_version_number() == KF_VERSION_NUMBER);
}

static void op_reset(session *s)
{
    trace("reset\n");
    CHECK(kf_cache_reset(s->cache) == KF_OK);
    snapshot now = snap(s->cache);
    CHECK(now.digest == s->fresh_digest);
    CHECK(now.bytes == s->fresh_bytes);
    memset(s->observed, 0, sizeof s->observed);
    memset(s->prompt_done, 0, sizeof s->prompt_done);
    memset(s->score_from, 0, sizeof s->score_from);
    memset(s->rows, 0, sizeof s->rows);
    s->removed_valid = 0;
}

/* kf_cache_copy_state: a second cache of the same configuration receives
 * the live one's state (no open round exists between ops) and must then
 * answer every query as the original does; sometimes the copy replaces
 * the original, so later ops check that it goes on as the original would
 * have. A copy into a cache of another configuration, into itself or
 * with NULL fails and changes neither cache. */
static void op_fork(session *s)
{
    fz_input *in = &s->in;
    kf_cache *src = s->cache;
    snapshot before = snap(src);
    CHECK(kf_cache_copy_state(src, src) == KF_EINVAL);
    CHECK(kf_cache_copy_state(NULL, src) == KF_EINVAL);
    CHECK(kf_cache_copy_state(src, NULL) == KF_EINVAL);
    check_unchanged(src, before);

    kf_config cfg = s->cfg;
    int mismatch = fz_chance(in, 64);
    if (mismatch) {
        switch (fz_range(in, 0, 4)) {
        case 0: cfg.seed++; break;
        case 4: cfg.score_norm = cfg.score_norm ? 0 : 1; break;
        case 1: cfg.tau_steps = cfg.tau_steps == 1 ? 2 : cfg.tau_steps - 1; break;
        case 2: cfg.rule = cfg.rule == KF_RULE_DYNAMIC ? KF_RULE_REFERENCE
                                                       : KF_RULE_DYNAMIC; break;
        default: cfg.slot_order = cfg.slot_order == KF_ORDER_ANY
                                      ? KF_ORDER_POSITION : KF_ORDER_ANY; break;
        }
    }
    kf_cache *dst = NULL;
    int status = kf_cache_create(&dst, &cfg);
    trace("fork mismatch=%d create -> %d\n", mismatch, status);
    if (status) { /* the hook may refuse a second block; a flipped rule
                   * may be invalid (head_budget) */
        CHECK(dst == NULL);
        CHECK(status == KF_ENOMEM || (mismatch && config_verdict(&cfg) == 0));
        return;
    }
    snapshot fresh = snap(dst);
    status = kf_cache_copy_state(dst, src);
    trace("fork -> %d\n", status);
    check_unchanged(src, before);
    if (mismatch) {
        CHECK(status == KF_EMISMATCH);
        check_unchanged(dst, fresh);
        kf_cache_destroy(&dst);
        return;
    }
    CHECK(status == KF_OK);
    check_unchanged(dst, before);
    if (fz_chance(in, 128)) { /* go on with the copy */
        kf_cache_destroy(&s->cache);
        s->cache = dst;
    } else {
        kf_cache_destroy(&dst);
    }
}

/* One generation step (or the prompt) for the whole model: the same rows
 * on every layer, select, compact. Reaches the deep states that random
 * single calls rarely do (UNIFORM needs layers in step). */
static void op_step(session *s)
{
    fz_input *in = &s->in;
    uint32_t cur = slots_of(s, 0);
    uint32_t room = s->cfg.capacity > cur ? s->cfg.capacity - cur : 1;
    uint32_t rows = fz_chance(in, 128) ? 1 : fz_range(in, 1, room);
    int qk = fz_chance(in, 64);
    for (uint32_t l = 0; l < s->cfg.n_layers; l++) {
        if (qk)
            op_observe_qk(s, (int)l, rows, 0);
        else
            op_observe(s, (int)l, rows, 0);
    }
    if (s->cfg.granularity == KF_GRANULARITY_UNIFORM || fz_chance(in, 128)) {
        op_select(s, KF_ALL_LAYERS);
    } else {
        for (uint32_t l = 0; l < s->cfg.n_layers; l++)
            op_select(s, (int)l);
    }
    if (fz_chance(in, 64)) {
        op_compact(s, KF_ALL_LAYERS, 0);
    } else {
        for (uint32_t l = 0; l < s->cfg.n_layers; l++)
            op_compact(s, (int)l, 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static session s;
    memset(&s, 0, sizeof s);
    fz_init(&s.in, data, size);
    s.alloc.limit = (size_t)64 << 20;

    for (int step = 0; step < MAX_STEPS && fz_left(&s.in); step++) {
        if (!s.cache) {
            do_create(&s);
            continue;
        }
        fz_input *in = &s.in;
        uint32_t nl = s.cfg.n_layers;
        switch (fz_range(in, 0, 18)) {
        case 0:
        case 1: op_observe(&s, pick_layer(in, nl, 0), 0, 1); break;
        case 2:
        case 3: op_observe(&s, (int)fz_range(in, 0, nl - 1), 0, 0); break;
        case 4:
        case 5: op_select(&s, pick_layer(in, nl, 1)); break;
        case 6: op_compact(&s, pick_layer(in, nl, 1), 1); break;
        case 7:
        case 8: op_compact(&s, (int)fz_range(in, 0, nl - 1), 0); break;
        case 9: op_queries(&s); break;
        case 10: op_reset(&s); break;
        case 11: do_destroy(&s); break;
        case 12: op_null_cache(in); break;
        case 13: op_fork(&s); break;
        case 14: op_observe_qk(&s, pick_layer(in, nl, 0), 0, 1); break;
        case 15: op_observe_qk(&s, (int)fz_range(in, 0, nl - 1), 0, 0); break;
        case 16: op_observe_round(&s, (int)fz_range(in, 0, nl - 1)); break;
        default: op_step(&s); break;
        }
    }
    do_destroy(&s);
    return 0;
}
