/* kf-bench-decode: end-to-end cost of libkeyformer next to the attention it
 * shrinks, on synthetic attention-bound shapes.
 *
 * (also `kf-bench decode ...` and `kf-bench prefill ...`, the same code)
 *
 *   kf-bench-decode decode --context N[,N...] [--budgets R[,R...]]
 *                   [--shape bundled|llama3-8b] [--dtype f32|f16]
 *                   [--threads T] [--layers L] [--steps S] [--json]
 *   kf-bench-decode prefill --prompt N[,N...] [--shape ...] [--threads T]
 *                   [--reps R] [--json]
 *
 * decode: for each budget R (and the full cache), a K/V cache of the shape
 * is filled to the context, then S steady-state decode steps run. One step,
 * per layer: append one token's K/V row, the host's attention of every query
 * head over the held slots (timed as attention_s), then kf_observe_logits on
 * the logits the attention computed, kf_select and kf_compact on the real
 * K/V buffers (timed as library_s). A budget R holds k = floor(R * context)
 * slots (absolute budget, KF_POLICY_KEYFORMER unless --policy, dynamic rule,
 * per KV head), so
 * every step attends over k + 1 slots and evicts one. The full cache attends
 * over context + step slots and calls no library. To keep the setup short,
 * the library's cache is prefilled by observing a k-row prompt (not a
 * context-row one, whose selection would end at the same k slots): only
 * the steady state is timed.
 *
 * Host attention, the same for every budget: per KV head, an AVX2+FMA loop
 * computing the G query heads' dot products with each K row (q.K), a
 * softmax, then P.V row by row; f16 caches convert K and V rows on the fly
 * (F16C). `--blas` uses OpenBLAS sgemm (Q[G x d] K^T, P V) for f32 instead,
 * which measured about 2x slower here at these small G. KV heads of a layer
 * are split over the OpenMP threads; OpenBLAS runs single-threaded.
 *
 * `--evict-every B` sets kf_config.evict_interval = B: the cache grows to
 * k + B slots and evicts B at once every B tokens; select and compact are
 * still called (and timed) every token (figures are per token).
 * `--rule reference` uses KF_RULE_REFERENCE; `--order any` KF_ORDER_ANY
 * (evicted slots refilled from the end instead of shifting the rows);
 * `--policy keyformer|h2o|window|sinks` the reduced caches' policy
 * (default keyformer). `--observe kv-head` hands each KV head's logits
 * over inside the attention loop, right after that head's attention, with
 * kf_observe_begin / kf_observe_kv_head / kf_observe_end (default
 * `layer`: one kf_observe_logits after the loop); the time of those calls,
 * divided by the thread count, moves from attention_s to library_s.
 * `--no-attention` skips the host's attention: the library alone runs on
 * logits left in place (hot in the caches, as in a scoring-only
 * microbenchmark such as examples/tools/torch_baseline.py); attention_s is
 * 0 and speedup_vs_full 0 (JSON "host_attention": false). `--kv-heads N` allocates and times N of the
 * shape's KV heads (with their query heads) and scales like --layers.
 *
 * Only `--layers` layers are allocated and timed (default: all for the
 * bundled shape below 16K, else 1) and `--kv-heads` KV heads (default: all
 * below 16K; 2 of llama3-8b's 8 from 16K); every figure is scaled to the
 * shape's full layer and head count (they are identical work). Times are
 * the thread's CPU time with one thread, else wall time (CLOCK_MONOTONIC),
 * each interval less the cost of reading the clock (calibrated at start,
 * JSON clock_cost_s); each figure is the minimum over the
 * S steps (best-of-S), attention and library separately.
 *
 * prefill: a prompt of N tokens per layer (bundled shape unless --shape;
 * --layers L times the first L layers) in blocks of 512 rows: attention =
 * per head Q K^T sgemm + causal mask + softmax + P V sgemm; library =
 * kf_observe_logits of each block, then kf_select and kf_compact (budget
 * 0.5). Best of R repetitions.
 */
#include <cblas.h>
#include <cpuid.h>
#include <errno.h>
#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyformer.h"

extern void openblas_set_num_threads(int);

typedef struct shape {
    const char *name;
    int layers, heads, kv_heads, dim;
} shape;

/* Longest context or prompt the command line takes. */
enum { MAX_TOKENS = 1 << 20 };

static const shape shapes[] = {
    {"bundled", 6, 6, 2, 48},
    {"llama3-8b", 32, 32, 8, 128},
};

/* One thread: CPU time of the thread (other tenants' time slices do not
 * count); more threads: wall time. */
static clockid_t clock_id = CLOCK_MONOTONIC;

static double now(void)
{
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Wall time for the per-KV-head observe calls made inside the parallel
 * attention loop, read twice per call: CLOCK_MONOTONIC goes through the
 * vDSO (26 ns here), where the thread CPU clock is a system call (1.3 us
 * on this VM, as much as 5% of a call). */
static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* What one reading of the clock adds to a measured interval (the thread
 * CPU clock is a system call on this VM: about 1.3 us, several per layer
 * and step): the median of back-to-back readings, subtracted from every
 * interval of the decode step by span(). */
static double clock_cost;

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void calibrate_clock(void)
{
    double d[101];
    for (int i = 0; i < 101; i++) {
        double t0 = now();
        d[i] = now() - t0;
    }
    qsort(d, 101, sizeof *d, by_value);
    clock_cost = d[50];
}

static double span(double from, double to)
{
    double d = to - from - clock_cost;
    return d > 0 ? d : 0;
}

static double load1(void)
{
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &l) != 1)
            l = -1;
        fclose(f);
    }
    return l;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static float rndf(void) /* [-1, 1) */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint32_t r = (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 40);
    return (float)r * 0x1p-23f - 1.0f;
}

static void *xmalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) {
        fprintf(stderr, "kf-bench-decode: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void check(int rc, const char *what)
{
    if (rc != KF_OK) {
        fprintf(stderr, "kf-bench-decode: %s: %s\n", what, kf_strerror(rc));
        exit(1);
    }
}

/* ---- host attention ---- */

static void softmax_rows(const float *x, float *p, int rows, int n,
                         size_t stride)
{
    for (int r = 0; r < rows; r++) {
        const float *xr = x + (size_t)r * stride;
        float *pr = p + (size_t)r * stride;
        float m = -INFINITY;
        for (int j = 0; j < n; j++)
            m = xr[j] > m ? xr[j] : m;
        float s = 0;
        for (int j = 0; j < n; j++) {
            pr[j] = expf(xr[j] - m);
            s += pr[j];
        }
        float inv = 1.0f / s;
        for (int j = 0; j < n; j++)
            pr[j] *= inv;
    }
}

/* --observe kv-head: a KV head's logits go to the library as soon as they
 * exist, before the softmax and the P.V pass stream V through the cache. */
typedef struct kv_hook {
    kf_cache *cache;
    int layer, kv_head;
    double seconds; /* wall time in kf_observe_kv_head */
} kv_hook;

static void observe_hook(kv_hook *hk, const float *logits, int n)
{
    if (!hk)
        return;
    double t0 = wall_now();
    /* one row per query head, G heads n apart */
    kf_logits_view v = {logits, 1, (uint32_t)n, (size_t)n, (size_t)n, 0, 0};
    check(kf_observe_kv_head(hk->cache, hk->layer, hk->kv_head, &v),
          "observe kv head");
    hk->seconds += wall_now() - t0;
}

/* AVX2 attention of G query rows over n slots of one KV head; LOAD8 turns
 * 8 elements of a K or V row into fp32 lanes. */
#define ATTEND_BODY(T, LOAD8)                                                  \
    for (int j = 0; j < n; j++) {                                              \
        const T *kr = K + (size_t)j * d;                                       \
        __m256 acc[8];                                                         \
        for (int h = 0; h < G; h++)                                            \
            acc[h] = _mm256_setzero_ps();                                      \
        for (int c = 0; c < d; c += 8) {                                       \
            __m256 kv = LOAD8(kr + c);                                         \
            for (int h = 0; h < G; h++)                                        \
                acc[h] = _mm256_fmadd_ps(kv, _mm256_loadu_ps(q + (size_t)h * d + c), acc[h]); \
        }                                                                      \
        for (int h = 0; h < G; h++) {                                          \
            __m128 s = _mm_add_ps(_mm256_castps256_ps128(acc[h]),              \
                                  _mm256_extractf128_ps(acc[h], 1));           \
            s = _mm_hadd_ps(s, s);                                             \
            s = _mm_hadd_ps(s, s);                                             \
            logits[(size_t)h * n + j] = scale * _mm_cvtss_f32(s);              \
        }                                                                      \
    }                                                                          \
    observe_hook(hk, logits, n);                                            \
    softmax_rows(logits, p, G, n, (size_t)n);                                  \
    for (int i = 0; i < G * d; i++)                                            \
        out[i] = 0;                                                            \
    for (int j = 0; j < n; j++) {                                              \
        const T *vr = V + (size_t)j * d;                                       \
        for (int c = 0; c < d; c += 8) {                                       \
            __m256 vv = LOAD8(vr + c);                                         \
            for (int h = 0; h < G; h++) {                                      \
                float *o = out + (size_t)h * d + c;                            \
                _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_set1_ps(p[(size_t)h * n + j]), \
                                                    vv, _mm256_loadu_ps(o)));  \
            }                                                                  \
        }                                                                      \
    }

#define LOAD_F16(ptr) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(ptr)))
#define LOAD_F32(ptr) _mm256_loadu_ps(ptr)

__attribute__((target("avx2,fma,f16c"))) static void
attend_f16(const float *q, int G, int d, const uint16_t *K, const uint16_t *V,
           int n, float scale, float *logits, float *p, float *out, kv_hook *hk)
{
    ATTEND_BODY(uint16_t, LOAD_F16)
}

__attribute__((target("avx2,fma"))) static void
attend_f32_simd(const float *q, int G, int d, const float *K, const float *V,
                int n, float scale, float *logits, float *p, float *out,
                kv_hook *hk)
{
    ATTEND_BODY(float, LOAD_F32)
}

static void attend_f32(const float *q, int G, int d, const float *K,
                       const float *V, int n, float scale, float *logits,
                       float *p, float *out, kv_hook *hk)
{
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, G, n, d, scale, q, d,
                K, d, 0.0f, logits, n);
    observe_hook(hk, logits, n);
    softmax_rows(logits, p, G, n, (size_t)n);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, G, d, n, 1.0f, p, n,
                V, d, 0.0f, out, d);
}

/* kf_config_default() for a model shape and a slot capacity. */
static kf_config shape_config(int layers, int heads, int kv_heads, int dim,
                              uint32_t capacity)
{
    kf_config cfg;
    kf_config_default(&cfg);
    cfg.n_layers = (uint32_t)layers;
    cfg.n_heads = (uint32_t)heads;
    cfg.n_kv_heads = (uint32_t)kv_heads;
    cfg.head_dim = (uint32_t)dim;
    cfg.capacity = capacity;
    return cfg;
}

/* ---- decode ---- */

typedef struct dopts {
    const shape *sh;
    int f16, threads, layers, steps, json, blas;
    int kv_timed; /* KV heads allocated and timed (of sh->kv_heads) */
    int every;    /* select + compact once per `every` tokens */
    int reference; /* KF_RULE_REFERENCE */
    int any_order; /* KF_ORDER_ANY */
    int table_noise; /* KF_NOISE_TABLE */
    int policy;    /* kf_policy of the reduced caches */
    int by_kv_head; /* kf_observe_kv_head inside the attention loop */
    int no_attention; /* the library alone, on logits left in place */
} dopts;

typedef struct dresult {
    double att, lib, obs, sel, cmp, setup;
    uint32_t k;
} dresult;

/* One budget (ratio <= 0: full cache) at one context: its own K/V buffers
 * (kv[l] holds K then V, each [kv_heads][cap][d]) and library cache. */
typedef struct dstate {
    double ratio;
    uint32_t n0; /* slots held at the start of a round */
    int B;       /* tokens per round */
    void *kv[64];
    int own;     /* kv buffers allocated here */
    kf_cache *cache;
    dresult r;
} dstate;

static void decode_setup(const dopts *o, int ctx, double ratio, void **src,
                         size_t cap, float *logits, dstate *st)
{
    const shape *sh = o->sh;
    const int L = o->layers, Hk = o->kv_timed, d = sh->dim;
    const int G = sh->heads / sh->kv_heads, H = G * Hk;
    const size_t esz = o->f16 ? 2 : 4;
    memset(st, 0, sizeof *st);
    st->ratio = ratio;
    st->B = ratio > 0 ? o->every : 1;
    st->n0 = ratio > 0 ? (uint32_t)floor(ratio * ctx) : (uint32_t)ctx;
    st->r = (dresult){INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, 0,
                      st->n0};
    double t0 = now();
    (void)H;
    for (int l = 0; l < L; l++) {
        if (ratio <= 0) {
            st->kv[l] = src[l];
            continue;
        }
        st->own = 1;
        st->kv[l] = xmalloc(2 * (size_t)Hk * cap * d * esz);
        memcpy(st->kv[l], src[l], 2 * (size_t)Hk * cap * d * esz);
    }
    if (ratio > 0) {
        kf_config cfg = shape_config(L, H, Hk, d, st->n0 + (uint32_t)st->B);
        cfg.evict_interval = (uint32_t)st->B;
        cfg.slot_order = o->any_order ? KF_ORDER_ANY : KF_ORDER_POSITION;
        cfg.noise = o->table_noise ? KF_NOISE_TABLE : KF_NOISE_EXACT;
        cfg.rule = o->reference ? KF_RULE_REFERENCE : KF_RULE_DYNAMIC;
        cfg.policy = (kf_policy)o->policy;
        cfg.budget_tokens = st->n0;
        cfg.budget_ratio = 0;
        cfg.n_threads = (uint32_t)o->threads;
        check(kf_cache_create(&st->cache, &cfg), "kf_cache_create");
        /* prompt of n0 rows in chunks of 32, reusing random logits */
        const uint32_t chunk = 32, n0 = st->n0;
        for (int l = 0; l < L; l++) {
            for (uint32_t s = 0; s < n0; s += chunk) {
                uint32_t rows = n0 - s < chunk ? n0 - s : chunk;
                kf_logits_view lv = {logits, rows, s + rows, cap,
                                     (size_t)chunk * cap, KF_LOGITS_CAUSAL, 0};
                check(kf_observe_logits(st->cache, l, &lv), "prefill observe");
            }
            check(kf_select(st->cache, l), "prefill select");
            check(kf_compact(st->cache, l, NULL, NULL), "prefill compact");
        }
    }
    st->r.setup = now() - t0;
}

/* One round of st->B tokens; after the 2 warm-up rounds, keeps the best
 * per-token figures. */
static void decode_round(const dopts *o, dstate *st, int round, size_t cap,
                         const float *q, float *logits, float *p, float *out)
{
    const shape *sh = o->sh;
    const int L = o->layers, Hk = o->kv_timed, d = sh->dim;
    const int G = sh->heads / sh->kv_heads;
    const int B = st->B;
    const size_t esz = o->f16 ? 2 : 4;
    const float scale = 1.0f / sqrtf((float)d);
    kf_cache *cache = st->cache;
    double att = 0, lib = 0, obs = 0, sel = 0, cmp = 0;
    for (int t = 0; t < B; t++) {
        /* slots before the append */
        int n = cache ? (int)st->n0 + t : (int)st->n0 + round;
        for (int l = 0; l < L; l++) {
            char *K = st->kv[l], *V = (char *)st->kv[l] + (size_t)Hk * cap * d * esz;
            for (int g = 0; g < Hk; g++) { /* append the new token's row */
                size_t at = ((size_t)g * cap + (size_t)n) * d * esz;
                memcpy(K + at, K + (size_t)g * cap * d * esz, d * esz);
                memcpy(V + at, V + (size_t)g * cap * d * esz, d * esz);
            }
            int m = n + 1;
            int rounds = cache && o->by_kv_head;
            double in_rounds = 0; /* time in kf_observe_kv_head */
            double begin = 0;
            if (rounds) {
                double t0 = now();
                check(kf_observe_begin(cache, l, 1), "observe begin");
                begin = span(t0, now());
            }
            double a0 = now();
#pragma omp parallel for num_threads(o->threads) schedule(static) \
    reduction(+ : in_rounds) if (!o->no_attention)
            for (int g = 0; g < (o->no_attention ? 0 : Hk); g++) {
                size_t off = (size_t)g * cap * d;
                float *lg = logits + (size_t)g * G * m;
                float *pg = p + (size_t)g * G * m;
                kv_hook hook = {cache, l, g, 0}, *hk = rounds ? &hook : NULL;
                if (o->f16)
                    attend_f16(q + (size_t)g * G * d, G, d,
                               (const uint16_t *)K + off,
                               (const uint16_t *)V + off, m, scale, lg, pg,
                               out + (size_t)g * G * d, hk);
                else if (o->blas)
                    attend_f32(q + (size_t)g * G * d, G, d,
                               (const float *)K + off, (const float *)V + off,
                               m, scale, lg, pg, out + (size_t)g * G * d, hk);
                else
                    attend_f32_simd(q + (size_t)g * G * d, G, d,
                                    (const float *)K + off,
                                    (const float *)V + off, m, scale, lg, pg,
                                    out + (size_t)g * G * d, hk);
                in_rounds += hook.seconds;
            }
            double a1 = now();
            /* the observe calls ran inside the loop, spread over the
             * threads: their time per thread moves to the library */
            double moved = in_rounds / o->threads;
            if (!o->no_attention)
                att += span(a0, a1) - moved;
            moved += begin; /* kf_observe_begin ran before the loop */
            if (cache) {
                if (rounds) {
                    check(kf_observe_end(cache, l), "observe end");
                } else {
                    kf_logits_view lv = {logits, 1, (uint32_t)m, (size_t)m,
                                         (size_t)m, 0, 0};
                    check(kf_observe_logits(cache, l, &lv), "observe");
                }
                double b1 = now();
                obs += span(a1, b1) + moved;
                lib += span(a1, b1) + moved;
                { /* every token, as a host does; with B > 1 the
                   * library evicts on the last token of the round */
                    check(kf_select(cache, l), "select");
                    double b2 = now();
                    kf_dtype dt = o->f16 ? KF_DTYPE_F16 : KF_DTYPE_F32;
                    kf_kv_view kvw = {K, dt, (uint32_t)m, (size_t)d, cap * d, 0, 0};
                    kf_kv_view vvw = {V, dt, (uint32_t)m, (size_t)d, cap * d, 0, 0};
                    check(kf_compact(cache, l, &kvw, &vvw), "compact");
                    double b3 = now();
                    sel += span(b1, b2);
                    cmp += span(b2, b3);
                    lib += span(b1, b2) + span(b2, b3);
                }
            }
        }
    }
    if (round < 2)
        return; /* warm-up */
    double f = (double)sh->layers / (double)L * (double)sh->kv_heads /
               (double)Hk / (double)B;
    att *= f; lib *= f; obs *= f; sel *= f; cmp *= f;
    dresult *r = &st->r;
    if (att < r->att) r->att = att;
    if (lib < r->lib) r->lib = lib;
    if (obs < r->obs) r->obs = obs;
    if (sel < r->sel) r->sel = sel;
    if (cmp < r->cmp) r->cmp = cmp;
}

static void decode_free(const dopts *o, dstate *st)
{
    if (st->own)
        for (int l = 0; l < o->layers; l++)
            free(st->kv[l]);
    kf_cache_destroy(&st->cache);
}

/* ---- the command line: every value checked, every error named ---- */

static void usage_decode(FILE *out)
{
    fprintf(out,
            "usage: kf-bench-decode decode --context N[,N...] [options]\n"
            "Per decode step: the host's attention next to libkeyformer's observe,\n"
            "select and compact, for each budget and the full cache.\n"
            "  --context N[,N...]   context lengths, 1..%d (required, at most 16)\n"
            "  --budgets R[,R...]   budget ratios, each > 0 and < 1 (0.3,0.5,0.7);\n"
            "                       floor(R * N) must keep at least one slot\n"
            "  --shape S            bundled or llama3-8b (bundled)\n"
            "  --dtype T            f32 or f16 (f32; f16 needs F16C)\n"
            "  --threads T          OpenMP threads, 1..1024 (1)\n"
            "  --layers L           layers timed, 1..1024 (all, or 1 from 16K)\n"
            "  --kv-heads N         KV heads timed, 1..1024 (all, or 2 from 16K)\n"
            "  --steps S            decode steps, best of S, 1..1048576 (16)\n"
            "  --evict-every B      evict B slots every B tokens, 1..65536\n"
            "                       (the library's default: 1)\n"
            "  --policy P           keyformer, h2o, window or sinks (keyformer)\n"
            "  --rule R             dynamic or reference (dynamic)\n"
            "  --order O            position or any (the library's default: any)\n"
            "  --noise N            table or exact Keyformer noise (default: table)\n"
            "                       --order position --noise exact: the spec exactly\n"
            "  --observe W          layer or kv-head (layer)\n"
            "  --blas               OpenBLAS sgemm attention (f32)\n"
            "  --no-attention       the library alone, no host attention\n"
            "  --json               one JSON object per line\n",
            MAX_TOKENS);
}

static void usage_prefill(FILE *out)
{
    fprintf(out,
            "usage: kf-bench-decode prefill --prompt N[,N...] [options]\n"
            "Per prompt: the host's attention (sgemm) next to libkeyformer's\n"
            "observe, select and compact over the whole prompt.\n"
            "  --prompt N[,N...]    prompt lengths, 1..%d (required, at most 16)\n"
            "  --shape S            bundled or llama3-8b (bundled)\n"
            "  --threads T          OpenMP threads, 1..1024 (1)\n"
            "  --reps R             repetitions, best of R, 1..1000 (3)\n"
            "  --budget R           budget ratio, > 0 and < 1 (0.5)\n"
            "  --noise N            table or exact Keyformer noise (default: table)\n"
            "  --layers L           first L layers timed, 1..1024 (all)\n"
            "  --json               one JSON object per line\n",
            MAX_TOKENS);
}

static void usage_main(FILE *out)
{
    fprintf(out,
            "usage: kf-bench-decode decode --context N[,N...] [options]\n"
            "       kf-bench-decode prefill --prompt N[,N...] [options]\n"
            "       kf-bench-decode decode|prefill --help\n"
            "       kf-bench-decode --help | --version\n"
            "End-to-end cost of libkeyformer next to the attention it shrinks, on\n"
            "synthetic attention-bound shapes (doc/performance.md, \"End to end\").\n"
            "Also reached as `kf-bench decode|prefill ...`.\n");
}

/* Prints "kf-bench-decode: OPTION: ..." and returns -1. */
static int bad_value(const char *option, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

static int bad_value(const char *option, const char *format, ...)
{
    va_list ap;
    va_start(ap, format);
    fprintf(stderr, "kf-bench-decode: %s: ", option);
    vfprintf(stderr, format, ap);
    fputc('\n', stderr);
    va_end(ap);
    return -1;
}

/* A whole number in min..max, all of text. */
static int parse_int(const char *option, const char *text, long min, long max, int *out)
{
    char *end;
    errno = 0;
    const long v = strtol(text, &end, 10);
    if (end == text || *end || errno == ERANGE || v < min || v > max)
        return bad_value(option, "'%s' is not a whole number from %ld to %ld", text,
                         min, max);
    *out = (int)v;
    return 0;
}

/* One of n names; its index in *out. */
static int parse_choice(const char *option, const char *text, const char *const *names,
                        int n, int *out)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(text, names[i])) {
            *out = i;
            return 0;
        }
    fprintf(stderr, "kf-bench-decode: %s: unknown value '%s' (choose one of:", option, text);
    for (int i = 0; i < n; i++)
        fprintf(stderr, " %s", names[i]);
    fprintf(stderr, ")\n");
    return -1;
}

/* This file builds with -ffast-math, under which isfinite() may be folded
 * to true: look at the exponent bits instead. */
static int is_finite_bits(double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return (bits >> 52 & 0x7ff) != 0x7ff;
}

/* A budget ratio: finite, strictly between 0 and 1 (1 would be labelled
 * like the full cache, 0 keeps nothing). */
static int parse_ratio(const char *option, const char *text, double *out)
{
    char *end;
    errno = 0;
    const double v = strtod(text, &end);
    if (end == text || *end || errno == ERANGE || !is_finite_bits(v))
        return bad_value(option, "'%s' is not a finite number", text);
    if (!(v > 0 && v < 1))
        return bad_value(option, "%s is outside (0, 1): a ratio of the context", text);
    *out = v;
    return 0;
}

/* A comma-separated list of at most max items, each a ratio (ratios) or a
 * whole number of tokens in 1..MAX_TOKENS; returns the count, or -1 after
 * naming the bad item. */
static int parse_list(const char *option, const char *text, int ratios, double *out,
                      int max)
{
    int n = 0;
    const char *item = text;
    for (;;) {
        const char *comma = strchr(item, ',');
        const size_t len = comma ? (size_t)(comma - item) : strlen(item);
        char buf[64];
        if (len == 0)
            return bad_value(option, "empty item in '%s'", text);
        if (len >= sizeof buf)
            return bad_value(option, "item '%.*s...' is too long", 20, item);
        if (n == max)
            return bad_value(option, "more than %d items in '%s'", max, text);
        memcpy(buf, item, len);
        buf[len] = '\0';
        if (ratios) {
            if (parse_ratio(option, buf, &out[n]))
                return -1;
        } else {
            int v = 0;
            if (parse_int(option, buf, 1, MAX_TOKENS, &v))
                return -1;
            out[n] = v;
        }
        n++;
        if (!comma)
            return n;
        item = comma + 1;
    }
}

static const char *const shape_names[] = {"bundled", "llama3-8b"};

/* Is argv[i] option `name` with a value after it? Reports a missing one
 * through *missing. */
static int takes(int argc, char **argv, int i, const char *name, int *missing)
{
    if (strcmp(argv[i], name))
        return 0;
    if (i + 1 >= argc) {
        fprintf(stderr, "kf-bench-decode: %s needs a value\n", name);
        *missing = 1;
        return 0;
    }
    return 1;
}

/* CPUID.1:ECX bit 29; clang 14's __builtin_cpu_supports does not know
 * "f16c" */
static int have_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}

__attribute__((target("f16c"))) static uint16_t f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, 0);
}

static const char *const policy_names[] = {"keyformer", "h2o", "window", "sinks"};

static int cmd_decode(int argc, char **argv)
{
    double ctxs[16], budgets[16] = {0.3, 0.5, 0.7};
    int nctx = 0, nb = 3;
    dopts o = {&shapes[0], 0, 1, 0, 16, 0, 0, 0, 1, 0, 0, 0,
               KF_POLICY_KEYFORMER, 0, 0};
    { /* the library's defaults unless an option says otherwise */
        kf_config lib;
        kf_config_default(&lib);
        o.every = lib.evict_interval > 1 ? (int)lib.evict_interval : 1;
        o.any_order = lib.slot_order == KF_ORDER_ANY;
        o.table_noise = lib.noise == KF_NOISE_TABLE;
    }
    static const char *const dtypes[] = {"f32", "f16"};
    static const char *const rules[] = {"dynamic", "reference"};
    static const char *const orders[] = {"position", "any"};
    static const char *const noises[] = {"exact", "table"};
    static const char *const observes[] = {"layer", "kv-head"};
    for (int i = 2; i < argc; i++) {
        int bad = 0, missing = 0, choice = 0;
        const char *opt = argv[i];
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            usage_decode(stdout);
            return 0;
        } else if (takes(argc, argv, i, "--context", &missing)) {
            bad = (nctx = parse_list(opt, argv[++i], 0, ctxs, 16)) < 0;
        } else if (takes(argc, argv, i, "--budgets", &missing)) {
            bad = (nb = parse_list(opt, argv[++i], 1, budgets, 16)) < 0;
        } else if (takes(argc, argv, i, "--shape", &missing)) {
            bad = parse_choice(opt, argv[++i], shape_names, 2, &choice);
            o.sh = &shapes[choice];
        } else if (takes(argc, argv, i, "--dtype", &missing)) {
            bad = parse_choice(opt, argv[++i], dtypes, 2, &o.f16);
        } else if (takes(argc, argv, i, "--threads", &missing)) {
            bad = parse_int(opt, argv[++i], 1, 1024, &o.threads);
        } else if (takes(argc, argv, i, "--layers", &missing)) {
            bad = parse_int(opt, argv[++i], 1, 1024, &o.layers);
        } else if (takes(argc, argv, i, "--steps", &missing)) {
            bad = parse_int(opt, argv[++i], 1, 1 << 20, &o.steps);
        } else if (!strcmp(opt, "--json")) {
            o.json = 1;
        } else if (!strcmp(opt, "--blas")) {
            o.blas = 1;
        } else if (takes(argc, argv, i, "--kv-heads", &missing)) {
            bad = parse_int(opt, argv[++i], 1, 1024, &o.kv_timed);
        } else if (takes(argc, argv, i, "--evict-every", &missing)) {
            bad = parse_int(opt, argv[++i], 1, 1 << 16, &o.every);
        } else if (takes(argc, argv, i, "--rule", &missing)) {
            bad = parse_choice(opt, argv[++i], rules, 2, &o.reference);
        } else if (takes(argc, argv, i, "--order", &missing)) {
            bad = parse_choice(opt, argv[++i], orders, 2, &o.any_order);
        } else if (takes(argc, argv, i, "--noise", &missing)) {
            bad = parse_choice(opt, argv[++i], noises, 2, &o.table_noise);
        } else if (takes(argc, argv, i, "--observe", &missing)) {
            bad = parse_choice(opt, argv[++i], observes, 2, &o.by_kv_head);
        } else if (!strcmp(opt, "--no-attention")) {
            o.no_attention = 1;
        } else if (takes(argc, argv, i, "--policy", &missing)) {
            bad = parse_choice(opt, argv[++i], policy_names, 4, &o.policy);
        } else if (!missing) {
            fprintf(stderr, "kf-bench-decode: decode: unknown option '%s'\n", opt);
            usage_decode(stderr);
            return 2;
        }
        if (bad || missing)
            return 2;
    }
    if (o.no_attention && o.by_kv_head) {
        fprintf(stderr, "kf-bench-decode: --observe kv-head needs the attention\n");
        return 2;
    }
    if (nctx <= 0) {
        fprintf(stderr, "kf-bench-decode: decode needs --context N[,N...]\n");
        usage_decode(stderr);
        return 2;
    }
    for (int c = 0; c < nctx; c++)
        for (int b = 0; b < nb; b++)
            if (floor(budgets[b] * ctxs[c]) < 1) {
                fprintf(stderr, "kf-bench-decode: --budgets: %g of context %g keeps "
                        "no slot\n", budgets[b], ctxs[c]);
                return 2;
            }
    const int layers_opt = o.layers, kv_opt = o.kv_timed;
    if (o.f16 && !have_f16c()) {
        fprintf(stderr, "kf-bench-decode: f16 needs F16C\n");
        return 1;
    }
    const shape *sh = o.sh;
    if (o.threads == 1)
        clock_id = CLOCK_THREAD_CPUTIME_ID;
    calibrate_clock();
    if (!o.json)
        printf("%-10s %6s %4s %3s %6s %7s %11s %11s %11s %7s %6s\n", "shape",
               "ctx", "dt", "thr", "budget", "k", "attention", "library",
               "step", "speedup", "share");
    for (int c = 0; c < nctx; c++) {
        int ctx = (int)ctxs[c];
        /* defaults keep one context under about 50 s: from 16K on, one
         * layer of the bundled shape, 2 KV heads of one llama3-8b layer */
        o.layers = layers_opt;
        o.kv_timed = kv_opt;
        if (o.layers <= 0 || o.layers > sh->layers)
            o.layers = sh->layers > 8 || ctx >= 16384 ? 1 : sh->layers;
        if (o.kv_timed <= 0 || o.kv_timed > sh->kv_heads)
            o.kv_timed = sh->kv_heads > 2 && ctx >= 16384 ? 2 : sh->kv_heads;
        const int Hk = o.kv_timed, d = sh->dim;
        const int H = sh->heads / sh->kv_heads * Hk;
        size_t cap = (size_t)ctx + (size_t)o.steps + (size_t)o.every + 4;
        size_t esz = o.f16 ? 2 : 4;
        void *kv[64];
        for (int l = 0; l < o.layers; l++) {
            size_t cnt = 2 * (size_t)Hk * cap * d;
            kv[l] = xmalloc(cnt * esz);
            if (o.f16) {
                uint16_t *b = kv[l];
                for (size_t i = 0; i < cnt; i++)
                    b[i] = f32_to_f16(rndf());
            } else {
                float *b = kv[l];
                for (size_t i = 0; i < cnt; i++)
                    b[i] = rndf();
            }
        }
        float *q = xmalloc((size_t)H * d * 4);
        for (int i = 0; i < H * d; i++)
            q[i] = rndf();
        /* logits: decode H x cap; prefill setup H x 32 x cap (shared) */
        size_t lsz = (size_t)H * 32 * cap;
        float *logits = xmalloc(lsz * 4), *p = xmalloc(lsz * 4);
        for (size_t i = 0; i < lsz; i++)
            logits[i] = 4.0f * rndf();
        float *out = xmalloc((size_t)H * d * 4);
        /* every budget set up, then their rounds interleaved so that all
         * see the same machine (other tenants' load comes and goes) */
        dstate *st = xmalloc(sizeof(dstate) * (size_t)(nb + 1));
        double ld = load1();
        for (int b = -1; b < nb; b++) {
            for (size_t i = 0; i < lsz; i++)
                logits[i] = 4.0f * rndf();
            decode_setup(&o, ctx, b < 0 ? 0 : budgets[b], kv, cap, logits,
                         &st[b + 1]);
        }
        int rounds = (o.steps + o.every - 1) / o.every;
        for (int round = 0; round < rounds + 2; round++)
            for (int b = 0; b <= nb; b++)
                decode_round(&o, &st[b], round, cap, q, logits, p, out);
        double full_step = 0;
        for (int b = -1; b < nb; b++) {
            double ratio = b < 0 ? 0 : budgets[b];
            dresult r = st[b + 1].r;
            if (b < 0)
                r.lib = r.obs = r.sel = r.cmp = 0;
            decode_free(&o, &st[b + 1]);
            double step = r.att + r.lib;
            if (b < 0)
                full_step = step;
            /* --no-attention: the full cache's step is empty */
            double speedup = step > 0 && full_step > 0 ? full_step / step : 0;
            double share = step > 0 ? r.lib / step : 0;
            if (o.json)
                printf("{\"mode\":\"decode\",\"shape\":\"%s\",\"context\":%d,"
                       "\"budget\":%g,\"dtype\":\"%s\",\"threads\":%d,"
                       "\"k\":%u,\"layers\":%d,\"layers_timed\":%d,"
                       "\"kv_heads\":%d,\"kv_heads_timed\":%d,"
                       "\"evict_every\":%d,\"rule\":\"%s\",\"order\":\"%s\","
                       "\"noise\":\"%s\","
                       "\"policy\":\"%s\",\"observe\":\"%s\","
                       "\"attention_s\":%.6e,\"library_s\":%.6e,"
                       "\"observe_s\":%.6e,\"select_s\":%.6e,"
                       "\"compact_s\":%.6e,\"step_s\":%.6e,"
                       "\"speedup_vs_full\":%.4f,\"overhead_share\":%.4f,"
                       "\"setup_s\":%.2f,\"steps\":%d,\"attention_impl\":\"%s\","
                       "\"clock\":\"%s\",\"clock_cost_s\":%.3e,"
                       "\"host_attention\":%s,"
                       "\"load1\":%.2f}\n",
                       sh->name, ctx, b < 0 ? 1.0 : ratio,
                       o.f16 ? "f16" : "f32", o.threads, r.k, sh->layers,
                       o.layers, sh->kv_heads, Hk, o.every,
                       o.reference ? "reference" : "dynamic",
                       o.any_order ? "any" : "position",
                       o.table_noise ? "table" : "exact",
                       b < 0 ? "full" : policy_names[o.policy],
                       o.by_kv_head ? "kv-head" : "layer", r.att, r.lib, r.obs,
                       r.sel, r.cmp, step,
                       speedup, share, r.setup, o.steps,
                       o.f16 ? "avx2-f16c" : o.blas ? "openblas-sgemm" : "avx2",
                       o.threads == 1 ? "thread-cpu" : "wall", clock_cost,
                       o.no_attention ? "false" : "true", ld);
            else {
                char blabel[16];
                if (b < 0)
                    snprintf(blabel, sizeof blabel, "full");
                else
                    snprintf(blabel, sizeof blabel, "%g", ratio);
                printf("%-10s %6d %4s %3d %6s %7u %9.3fms %9.3fms %9.3fms "
                       "%6.2fx %5.1f%%  (obs %.3f sel %.3f cmp %.3f ms)\n",
                       sh->name, ctx, o.f16 ? "f16" : "f32", o.threads,
                       blabel, r.k,
                       1e3 * r.att, 1e3 * r.lib, 1e3 * step, speedup,
                       100 * share, 1e3 * r.obs, 1e3 * r.sel, 1e3 * r.cmp);
            }
            fflush(stdout);
        }
        free(st);
        for (int l = 0; l < o.layers; l++)
            free(kv[l]);
        free(q);
        free(logits);
        free(p);
        free(out);
    }
    return 0;
}

/* ---- prefill ---- */

static int cmd_prefill(int argc, char **argv)
{
    double prompts[16];
    int np = 0, threads = 1, reps = 3, json = 0, layers = 0, choice = 0;
    int table_noise;
    {
        kf_config lib;
        kf_config_default(&lib);
        table_noise = lib.noise == KF_NOISE_TABLE;
    }
    static const char *const noises[] = {"exact", "table"};
    const shape *sh = &shapes[0];
    double ratio = 0.5;
    for (int i = 2; i < argc; i++) {
        int bad = 0, missing = 0;
        const char *opt = argv[i];
        if (!strcmp(opt, "--help") || !strcmp(opt, "-h")) {
            usage_prefill(stdout);
            return 0;
        } else if (takes(argc, argv, i, "--prompt", &missing)) {
            bad = (np = parse_list(opt, argv[++i], 0, prompts, 16)) < 0;
        } else if (takes(argc, argv, i, "--shape", &missing)) {
            bad = parse_choice(opt, argv[++i], shape_names, 2, &choice);
            sh = &shapes[choice];
        } else if (takes(argc, argv, i, "--threads", &missing)) {
            bad = parse_int(opt, argv[++i], 1, 1024, &threads);
        } else if (takes(argc, argv, i, "--reps", &missing)) {
            bad = parse_int(opt, argv[++i], 1, 1000, &reps);
        } else if (takes(argc, argv, i, "--budget", &missing)) {
            bad = parse_ratio(opt, argv[++i], &ratio);
        } else if (takes(argc, argv, i, "--layers", &missing)) {
            bad = parse_int(opt, argv[++i], 1, 1024, &layers);
        } else if (takes(argc, argv, i, "--noise", &missing)) {
            bad = parse_choice(opt, argv[++i], noises, 2, &table_noise);
        } else if (!strcmp(opt, "--json")) {
            json = 1;
        } else if (!missing) {
            fprintf(stderr, "kf-bench-decode: prefill: unknown option '%s'\n", opt);
            usage_prefill(stderr);
            return 2;
        }
        if (bad || missing)
            return 2;
    }
    if (np <= 0) {
        fprintf(stderr, "kf-bench-decode: prefill needs --prompt N[,N...]\n");
        usage_prefill(stderr);
        return 2;
    }
    if (threads == 1)
        clock_id = CLOCK_THREAD_CPUTIME_ID;
    /* --layers times the first L layers only: every layer does the same
     * work, so the library / attention ratio does not depend on L */
    const int L = layers > 0 && layers < sh->layers ? layers : sh->layers;
    const int H = sh->heads, Hk = sh->kv_heads, d = sh->dim;
    const int G = H / Hk, B = 512;
    const float scale = 1.0f / sqrtf((float)d);
    for (int pi = 0; pi < np; pi++) {
        int S = (int)prompts[pi];
        float *Q = xmalloc((size_t)H * S * d * 4);
        float *K = xmalloc((size_t)Hk * S * d * 4);
        float *V = xmalloc((size_t)Hk * S * d * 4);
        float *out = xmalloc((size_t)H * B * d * 4);
        float *lg = xmalloc((size_t)H * B * S * 4);
        float *pr = xmalloc((size_t)H * B * S * 4);
        for (size_t i = 0; i < (size_t)H * S * d; i++)
            Q[i] = rndf();
        for (size_t i = 0; i < (size_t)Hk * S * d; i++) {
            K[i] = rndf();
            V[i] = rndf();
        }
        kf_config cfg = shape_config(L, H, Hk, d, (uint32_t)S);
        cfg.budget_ratio = ratio;
        cfg.noise = table_noise ? KF_NOISE_TABLE : KF_NOISE_EXACT;
        cfg.n_threads = (uint32_t)threads;
        kf_cache *cache = NULL;
        check(kf_cache_create(&cache, &cfg), "kf_cache_create");
        double best_att = INFINITY, best_lib = INFINITY, ld = load1();
        for (int rep = 0; rep < reps; rep++) {
            double att = 0, lib = 0;
            check(kf_cache_reset(cache), "reset");
            for (int l = 0; l < L; l++) {
                for (int r0 = 0; r0 < S; r0 += B) {
                    int rows = S - r0 < B ? S - r0 : B, seen = r0 + rows;
                    double a0 = now();
#pragma omp parallel for num_threads(threads) schedule(static)
                    for (int h = 0; h < H; h++) {
                        float *x = lg + (size_t)h * B * S;
                        float *pp = pr + (size_t)h * B * S;
                        const float *kh = K + (size_t)(h / G) * S * d;
                        const float *vh = V + (size_t)(h / G) * S * d;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans,
                                    rows, seen, d, scale,
                                    Q + ((size_t)h * S + r0) * d, d, kh, d,
                                    0.0f, x, S);
                        for (int i = 0; i < rows; i++) /* causal mask */
                            for (int j = r0 + i + 1; j < seen; j++)
                                x[(size_t)i * S + j] = -INFINITY;
                        for (int i = 0; i < rows; i++)
                            softmax_rows(x + (size_t)i * S, pp + (size_t)i * S,
                                         1, r0 + i + 1, S);
                        for (int i = 0; i < rows; i++)
                            for (int j = r0 + i + 1; j < seen; j++)
                                pp[(size_t)i * S + j] = 0;
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans,
                                    rows, d, seen, 1.0f, pp, S, vh, d, 0.0f,
                                    out + (size_t)h * B * d, d);
                    }
                    double a1 = now();
                    kf_logits_view lv = {lg, (uint32_t)rows, (uint32_t)seen,
                                         (size_t)S, (size_t)B * S,
                                         KF_LOGITS_CAUSAL, 0};
                    check(kf_observe_logits(cache, l, &lv), "observe");
                    double a2 = now();
                    att += a1 - a0;
                    lib += a2 - a1;
                }
                double c0 = now();
                check(kf_select(cache, l), "select");
                kf_kv_view kvw = {K, KF_DTYPE_F32, (uint32_t)S, (size_t)d,
                                  (size_t)S * d, 0, 0};
                kf_kv_view vvw = {V, KF_DTYPE_F32, (uint32_t)S, (size_t)d,
                                  (size_t)S * d, 0, 0};
                check(kf_compact(cache, l, &kvw, &vvw), "compact");
                lib += now() - c0;
            }
            if (att < best_att) best_att = att;
            if (lib < best_lib) best_lib = lib;
        }
        double share = best_lib / best_att;
        if (json)
            printf("{\"mode\":\"prefill\",\"shape\":\"%s\",\"prompt\":%d,"
                   "\"budget\":%g,\"threads\":%d,\"attention_s\":%.6e,"
                   "\"library_s\":%.6e,\"library_vs_attention\":%.4f,"
                   "\"reps\":%d,\"layers_timed\":%d,\"noise\":\"%s\","
                   "\"load1\":%.2f}\n",
                   sh->name, S, ratio, threads, best_att, best_lib, share,
                   reps, L, table_noise ? "table" : "exact", ld);
        else
            printf("%-10s prompt %6d threads %d: attention %8.2f ms, library "
                   "%8.2f ms (%.1f%% of attention)\n",
                   sh->name, S, threads, 1e3 * best_att, 1e3 * best_lib,
                   100 * share);
        fflush(stdout);
        kf_cache_destroy(&cache);
        free(Q); free(K); free(V); free(out); free(lg); free(pr);
    }
    return 0;
}

/* Also reached as `kf-bench decode|prefill ...` (kf-bench.c). */
int kf_bench_decode_main(int argc, char **argv);

int kf_bench_decode_main(int argc, char **argv)
{
    openblas_set_num_threads(1);
    if (argc >= 2 && !strcmp(argv[1], "decode"))
        return cmd_decode(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "prefill"))
        return cmd_prefill(argc, argv);
    if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage_main(stdout);
        return 0;
    }
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("kf-bench-decode (libkeyformer) %s\n", kf_version());
        return 0;
    }
    if (argc < 2)
        fprintf(stderr, "kf-bench-decode: which run? decode or prefill\n");
    else
        fprintf(stderr, "kf-bench-decode: unknown command '%s'\n", argv[1]);
    usage_main(stderr);
    return 2;
}

#ifndef KF_BENCH_DECODE_NO_MAIN
int main(int argc, char **argv)
{
    return kf_bench_decode_main(argc, argv);
}
#endif
