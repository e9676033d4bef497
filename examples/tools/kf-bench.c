/* kf-bench: speed of every kernel variant this machine runs, one core.
 *
 *   score      kf_score_gumbel (Keyformer): logits/s on one row of n slots,
 *              tau = 1.25 (the general path, every generation step)
 *   score_prompt  the same at tau = 1 (the prompt's path: e^x / E)
 *   score_table   kf_score_table (Keyformer, KF_NOISE_TABLE): logits/s,
 *              tau = 1.25 (one path for every tau)
 *   score_h2o  kf_score_softmax (H2O): logits/s
 *   dot        kf_dot_rows (kf_observe_qk's logits): 1024 key rows of
 *              head size d (48, 128) against one query: logits/s
 *   select     kf_select_top, the top half of n scores: scores/s
 *   compact    kf_compact_rows, a cache of n rows of 128 bytes keeping a
 *              random half: bytes moved/s, next to memcpy moving the upper
 *              half of the same buffer onto the lower half
 *
 * Each figure is the best of 5 batches (a batch repeats the call for about
 * 40 ms, at least 2 calls), in CPU time of the calling thread. Results are bit-identical across variants (see
 * tests/simd); only time differs.
 *
 *   kf-bench                a table
 *   kf-bench --json         one JSON object per line per kernel x isa x n:
 *                           kernel, isa, n, seconds (per call), items_per_s,
 *                           bytes_per_s, speedup_vs_c (and memcpy_bytes_per_s
 *                           for compact)
 *   kf-bench --quick        smaller sizes and batches (a smoke run)
 *   kf-bench --kernel K     only kernel K (score, score_prompt,
 *                           score_table, score_h2o, dot, select, compact)
 *   kf-bench --isa I        only c and I (c, avx2, avx512, neon); an ISA
 *                           this CPU or this build lacks is an error
 *   kf-bench decode|prefill ...   the end-to-end runs of kf-bench-decode
 *   kf-bench --help | --version
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cpu.h"
#include "dsp.h"
#include "keyformer.h"

#define BATCHES 5

typedef struct options {
    int json, quick;
    const char *kernel, *isa;
} options;

typedef struct variant {
    const char *name;
    kf_dsp dsp;
} variant;

/* CPU time of this thread: on a shared machine, time slices given to other
 * processes do not count (on an idle one it equals wall time). */
static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One timed contender: fn(ctx) per call. */
typedef struct contender {
    void (*fn)(void *);
    void *ctx;
    long calls; /* per batch */
    double best; /* seconds per call */
} contender;

static double time_batch(const contender *c)
{
    double t0 = now();
    for (long i = 0; i < c->calls; i++)
        c->fn(c->ctx);
    return (now() - t0) / (double)c->calls;
}

/* Best seconds per call of each contender over BATCHES rounds; a round
 * times one batch of each in turn, so all of them see the same machine
 * (other load, memory traffic) as far as possible. The clock is read
 * around whole batches only (reading it costs a system call), after a
 * calibration that sizes each batch to about batch_s. */
static void race(contender *c, int n, double batch_s)
{
    for (int i = 0; i < n; i++) {
        c[i].fn(c[i].ctx); /* warm caches and pages */
        c[i].calls = 1;
        while (c[i].calls < (1L << 30)) {
            double t0 = now();
            for (long k = 0; k < c[i].calls; k++)
                c[i].fn(c[i].ctx);
            if (now() - t0 >= batch_s / 4)
                break;
            c[i].calls *= 2;
        }
        c[i].calls = c[i].calls * 4 < 2 ? 2 : c[i].calls * 4;
        c[i].best = INFINITY;
    }
    for (int b = 0; b < BATCHES; b++)
        for (int i = 0; i < n; i++) {
            double t = time_batch(&c[i]);
            if (t < c[i].best)
                c[i].best = t;
        }
}

static uint64_t rng_state = 0x853c49e6748fea9bull;

static uint32_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return (uint32_t)((rng_state * 0x2545f4914f6cdd1dull) >> 32);
}

static float rndf(float lo, float hi)
{
    return lo + (hi - lo) * (float)(rnd() >> 8) * 0x1p-24f;
}

static void *xmalloc(size_t n)
{
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64)) {
        fprintf(stderr, "kf-bench: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

static void report(const options *o, const char *kernel, const char *isa,
                   uint64_t n, double seconds, double items, double bytes,
                   double c_seconds, double memcpy_bps)
{
    double speedup = c_seconds / seconds;
    if (o->json) {
        printf("{\"kernel\":\"%s\",\"isa\":\"%s\",\"n\":%llu,\"seconds\":%.9g,"
               "\"items_per_s\":%.6g,\"bytes_per_s\":%.6g,\"speedup_vs_c\":%.4g",
               kernel, isa, (unsigned long long)n, seconds, items / seconds,
               bytes / seconds, speedup);
        if (memcpy_bps > 0)
            printf(",\"memcpy_bytes_per_s\":%.6g", memcpy_bps);
        printf("}\n");
    } else {
        printf("%-10s %-7s %10llu %12.3f %12.4g %10.2f %9.2fx", kernel, isa,
               (unsigned long long)n, seconds * 1e6, items / seconds,
               bytes / seconds / 1e9, speedup);
        if (memcpy_bps > 0)
            printf("   memcpy %6.2f GB/s (%3.0f%%)", memcpy_bps / 1e9,
                   100.0 * (bytes / seconds) / memcpy_bps);
        printf("\n");
    }
    fflush(stdout);
}

/* ---- score ---- */

enum { SCORE_GUMBEL, SCORE_PROMPT, SCORE_H2O, SCORE_TABLE };

typedef struct score_ctx {
    const kf_dsp *dsp;
    int mode; /* SCORE_* */
    float *acc, *x, *scratch;
    int32_t *pos;
    uint32_t n;
} score_ctx;

static void score_call(void *p)
{
    score_ctx *s = p;
    kf_noise_key key = { 0x12345678u };
    if (s->mode == SCORE_H2O)
        s->dsp->score_softmax(s->acc, s->x, s->n, s->scratch);
    else if (s->mode == SCORE_TABLE) {
        uint32_t failed;
        s->dsp->score_table(s->acc, s->x, 0, 1, s->pos, s->n, &key, 0.8f,
                            kf_gumbel_table(), s->scratch, &failed, NULL);
    } else {
        uint32_t failed;
        s->dsp->score_gumbel(s->acc, s->x, 0, 1, s->pos, s->n, &key,
                             s->mode == SCORE_PROMPT ? 1.0f : 0.8f, s->scratch,
                             &failed, NULL);
    }
}

static void bench_score(const options *o, const variant *v, int nv, int mode)
{
    static const char *const names[] = { "score", "score_prompt", "score_h2o",
                                          "score_table" };
    static const uint32_t full[] = { 256, 4096, 32768 };
    static const uint32_t quick[] = { 4096 };
    const uint32_t *sizes = o->quick ? quick : full;
    int n_sizes = o->quick ? 1 : 3;
    for (int si = 0; si < n_sizes; si++) {
        uint32_t n = sizes[si];
        score_ctx s[4];
        contender c[4];
        for (int i = 0; i < nv; i++) {
            s[i] = (score_ctx){ &v[i].dsp, mode, xmalloc(n * 4u), xmalloc(n * 4u),
                                xmalloc(n * 4u), xmalloc(n * 4u), n };
            for (uint32_t j = 0; j < n; j++) {
                s[i].x[j] = i ? s[0].x[j] : rndf(-8.0f, 8.0f);
                s[i].pos[j] = (int32_t)j;
                s[i].acc[j] = 0.0f;
            }
            c[i] = (contender){ score_call, &s[i], 0, 0 };
        }
        race(c, nv, o->quick ? 0.01 : 0.04);
        for (int i = 0; i < nv; i++)
            report(o, names[mode], v[i].name, n, c[i].best, n,
                   4.0 * n, c[0].best, 0);
        for (int i = 0; i < nv; i++) {
            free(s[i].acc);
            free(s[i].x);
            free(s[i].scratch);
            free(s[i].pos);
        }
    }
}

/* ---- select ---- */

typedef struct select_ctx {
    const kf_dsp *dsp;
    uint32_t *out, *keys;
    float *scores;
    uint32_t n, need;
} select_ctx;

static void select_call(void *p)
{
    select_ctx *s = p;
    s->dsp->select_top(s->out, s->scores, s->n, s->need, s->keys);
}

/* ---- dot ---- */

typedef struct dot_ctx {
    const kf_dsp *dsp;
    float *out, *q, *k;
    uint32_t n, dim;
} dot_ctx;

static void dot_call(void *p)
{
    dot_ctx *d = p;
    d->dsp->dot_rows(d->out, d->q, d->k, d->dim, d->n, d->dim, 0.125f);
}

static void bench_dot(const options *o, const variant *v, int nv)
{
    static const uint32_t dims[] = { 48, 128 };
    const uint32_t n = 1024; /* 16 tiles of the library's 64 keys */
    for (int di = o->quick ? 1 : 0; di < 2; di++) {
        uint32_t dim = dims[di];
        dot_ctx d[4];
        contender c[4];
        for (int i = 0; i < nv; i++) {
            d[i] = (dot_ctx){ &v[i].dsp, xmalloc(n * 4u), xmalloc(dim * 4u),
                              xmalloc((size_t)n * dim * 4u), n, dim };
            for (uint32_t e = 0; e < dim; e++)
                d[i].q[e] = i ? d[0].q[e] : rndf(-1.0f, 1.0f);
            for (size_t e = 0; e < (size_t)n * dim; e++)
                d[i].k[e] = i ? d[0].k[e] : rndf(-1.0f, 1.0f);
            c[i] = (contender){ dot_call, &d[i], 0, 0 };
        }
        race(c, nv, o->quick ? 0.01 : 0.04);
        for (int i = 0; i < nv; i++)
            report(o, dim == 48 ? "dot_d48" : "dot_d128", v[i].name, n,
                   c[i].best, n, 4.0 * n * dim, c[0].best, 0);
        for (int i = 0; i < nv; i++) {
            free(d[i].out);
            free(d[i].q);
            free(d[i].k);
        }
    }
}

static void bench_select(const options *o, const variant *v, int nv)
{
    static const uint32_t full[] = { 4096, 65536, 262144, 1048576 };
    static const uint32_t quick[] = { 4096, 1048576 };
    const uint32_t *sizes = o->quick ? quick : full;
    int n_sizes = o->quick ? 2 : 4;
    for (int si = 0; si < n_sizes; si++) {
        uint32_t n = sizes[si];
        select_ctx s[4];
        contender c[4];
        float *scores = xmalloc(n * 4u);
        /* accumulated attention scores: many small, a few large */
        for (uint32_t j = 0; j < n; j++) {
            float u = rndf(0.0f, 1.0f);
            scores[j] = u * u * u * 8.0f;
        }
        for (int i = 0; i < nv; i++) {
            s[i] = (select_ctx){ &v[i].dsp, xmalloc(n * 4u), xmalloc(n * 4u),
                                 scores, n, n / 2 };
            c[i] = (contender){ select_call, &s[i], 0, 0 };
        }
        race(c, nv, o->quick ? 0.01 : 0.04);
        for (int i = 0; i < nv; i++)
            report(o, "select", v[i].name, n, c[i].best, n, 4.0 * n, c[0].best, 0);
        for (int i = 0; i < nv; i++) {
            free(s[i].out);
            free(s[i].keys);
        }
        free(scores);
    }
}

/* ---- compact ---- */

#define ROW_BYTES 128

typedef struct compact_ctx {
    const kf_dsp *dsp;
    uint8_t *base;
    uint32_t *keep;
    uint32_t n_keep;
    size_t bytes;
} compact_ctx;

static void compact_call(void *p)
{
    compact_ctx *s = p;
    s->dsp->compact_rows(s->base, ROW_BYTES, s->keep, s->n_keep, ROW_BYTES);
}

static void memcpy_call(void *p)
{
    compact_ctx *s = p;
    memcpy(s->base, s->base + s->bytes / 2, s->bytes / 2);
}

static void bench_compact(const options *o, const variant *v, int nv)
{
    static const size_t full[] = { 32u << 10, 1u << 20, 32u << 20, 256u << 20 };
    static const size_t quick[] = { 32u << 10, 64u << 20 };
    const size_t *sizes = o->quick ? quick : full;
    int n_sizes = o->quick ? 2 : 4;
    for (int si = 0; si < n_sizes; si++) {
        size_t bytes = sizes[si];
        uint32_t rows = (uint32_t)(bytes / ROW_BYTES);
        compact_ctx s = { NULL, xmalloc(bytes), xmalloc(rows * 4u), 0, bytes };
        for (size_t i = 0; i < bytes; i += 8) {
            uint64_t w = ((uint64_t)rnd() << 32) | rnd();
            memcpy(s.base + i, &w, 8);
        }
        /* a random half, ascending: n_keep = rows / 2 exactly */
        uint32_t left = rows / 2;
        for (uint32_t j = 0; j < rows && left; j++)
            if ((uint64_t)rnd() * (rows - j) < (uint64_t)left << 32)
                s.keep[s.n_keep++] = j, left--;
        /* every contender works on the same buffer: each call copies the
         * same rows, whatever they hold by then */
        compact_ctx cs[4];
        contender c[5];
        for (int i = 0; i < nv; i++) {
            cs[i] = s;
            cs[i].dsp = &v[i].dsp;
            c[i] = (contender){ compact_call, &cs[i], 0, 0 };
        }
        c[nv] = (contender){ memcpy_call, &s, 0, 0 };
        race(c, nv + 1, o->quick ? 0.01 : 0.04);
        double moved = (double)s.n_keep * ROW_BYTES;
        double memcpy_bps = (double)(bytes / 2) / c[nv].best;
        for (int i = 0; i < nv; i++)
            report(o, "compact", v[i].name, bytes, c[i].best, s.n_keep, moved,
                   c[0].best, memcpy_bps);
        free(s.base);
        free(s.keep);
    }
}

static int want(const char *filter, const char *name)
{
    return !filter || !strcmp(filter, name);
}

/* kf-bench-decode.c, linked in: the end-to-end decode and prefill runs */
int kf_bench_decode_main(int argc, char **argv);

static const char *const kernel_names[] = { "score", "score_prompt", "score_table",
                                            "score_h2o", "dot", "select",
                                            "compact" };
enum { N_KERNELS = sizeof kernel_names / sizeof kernel_names[0] };
static const uint32_t isas[] = { KF_CPU_AVX2, KF_CPU_AVX512, KF_CPU_NEON };
enum { N_ISAS = sizeof isas / sizeof isas[0] };

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kf-bench [--json] [--quick] [--kernel K] [--isa I]\n"
            "       kf-bench decode|prefill ...  (kf-bench-decode; "
            "kf-bench decode --help)\n"
            "Times every kernel variant this machine runs against the portable C\n"
            "one, on one core (best of %d batches, thread CPU time).\n"
            "  --json       one JSON object per line: kernel, isa, n, seconds,\n"
            "               items_per_s, bytes_per_s, speedup_vs_c\n"
            "  --quick      smaller sizes and batches (a smoke run)\n"
            "  --kernel K   only kernel K: score, score_prompt, score_table,\n"
            "               score_h2o, dot, select or compact\n"
            "  --isa I      only c and I: c, avx2, avx512 or neon (I must be built\n"
            "               and supported by this CPU)\n"
            "  --help       this text\n"
            "  --version    the library version\n",
            BATCHES);
}

/* 0 when name is a kernel; else says which ones are and returns 2. */
static int check_kernel(const char *name)
{
    for (int k = 0; k < N_KERNELS; k++)
        if (!strcmp(name, kernel_names[k]))
            return 0;
    fprintf(stderr, "kf-bench: unknown kernel '%s' (choose one of:", name);
    for (int k = 0; k < N_KERNELS; k++)
        fprintf(stderr, " %s", kernel_names[k]);
    fprintf(stderr, ")\n");
    return 2;
}

/* 0 when --isa name can run here; 2 for an unknown name, 1 for an ISA this
 * CPU or this build lacks (an error rather than a quiet C-only run). */
static int check_isa(const char *name, uint32_t detected)
{
    if (!strcmp(name, "c"))
        return 0;
    for (int i = 0; i < N_ISAS; i++) {
        if (strcmp(name, kf_dsp_isa_name(isas[i])))
            continue;
        if (!(detected & isas[i])) {
            fprintf(stderr, "kf-bench: --isa %s: this CPU does not support %s "
                    "(it has:", name, name);
            int any = 0;
            for (int j = 0; j < N_ISAS; j++)
                if (detected & isas[j]) {
                    fprintf(stderr, " %s", kf_dsp_isa_name(isas[j]));
                    any = 1;
                }
            fprintf(stderr, "%s)\n", any ? "" : " none but c");
            return 1;
        }
        kf_dsp dsp;
        kf_dsp_init(&dsp, isas[i]);
        if (dsp.isa[KF_KERNEL_SCORE_GUMBEL] != isas[i]) {
            fprintf(stderr, "kf-bench: --isa %s: this build has no %s kernels "
                    "(configured with -Dsimd=none or a compiler without them)\n",
                    name, name);
            return 1;
        }
        return 0;
    }
    fprintf(stderr, "kf-bench: unknown ISA '%s' (choose one of: c", name);
    for (int i = 0; i < N_ISAS; i++)
        fprintf(stderr, " %s", kf_dsp_isa_name(isas[i]));
    fprintf(stderr, ")\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (!strcmp(argv[1], "decode") || !strcmp(argv[1], "prefill")))
        return kf_bench_decode_main(argc, argv);
    options o = { 0, 0, NULL, NULL };
    for (int i = 1; i < argc; i++) {
        const int has_value = i + 1 < argc;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("kf-bench (libkeyformer) %s\n", kf_version());
            return 0;
        } else if (!strcmp(argv[i], "--json")) {
            o.json = 1;
        } else if (!strcmp(argv[i], "--quick")) {
            o.quick = 1;
        } else if ((!strcmp(argv[i], "--kernel") || !strcmp(argv[i], "--isa")) &&
                   !has_value) {
            fprintf(stderr, "kf-bench: %s needs a value\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (!strcmp(argv[i], "--kernel")) {
            o.kernel = argv[++i];
            if (check_kernel(o.kernel))
                return 2;
        } else if (!strcmp(argv[i], "--isa")) {
            o.isa = argv[++i];
        } else {
            fprintf(stderr, "kf-bench: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }

    uint32_t flags = kf_cpu_detect();
    int rc;
    if (o.isa && (rc = check_isa(o.isa, flags)))
        return rc;
    variant v[4];
    int nv = 0;
    v[nv].name = "c";
    kf_dsp_init(&v[nv++].dsp, 0);
    for (int i = 0; i < N_ISAS; i++) {
        if (!(flags & isas[i]) || (o.isa && strcmp(o.isa, kf_dsp_isa_name(isas[i]))))
            continue;
        kf_dsp_init(&v[nv].dsp, isas[i]);
        if (v[nv].dsp.isa[KF_KERNEL_SCORE_GUMBEL] != isas[i])
            continue; /* not built */
        v[nv].name = kf_dsp_isa_name(isas[i]);
        nv++;
    }

    if (!o.json)
        printf("%-10s %-7s %10s %12s %12s %10s %10s\n", "kernel", "isa", "n",
               "us/call", "items/s", "GB/s", "vs C");
    if (want(o.kernel, "score"))
        bench_score(&o, v, nv, SCORE_GUMBEL);
    if (want(o.kernel, "score_prompt"))
        bench_score(&o, v, nv, SCORE_PROMPT);
    if (want(o.kernel, "score_table"))
        bench_score(&o, v, nv, SCORE_TABLE);
    if (want(o.kernel, "score_h2o"))
        bench_score(&o, v, nv, SCORE_H2O);
    if (want(o.kernel, "dot"))
        bench_dot(&o, v, nv);
    if (want(o.kernel, "select"))
        bench_select(&o, v, nv);
    if (want(o.kernel, "compact"))
        bench_compact(&o, v, nv);
    return 0;
}
