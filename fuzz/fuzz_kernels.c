/* fuzz_kernels: every SIMD kernel against the C reference (lib/dsp.h).
 *
 * The library's rule is that a variant is bit-identical to C on every
 * input, so each kernel runs on the same bytes through the C table and
 * through each instruction set this CPU can run, and any difference in
 * status, scores, dot products, selected indices or compacted rows
 * abort()s. Inputs cover
 * every length from 0 to a few vector widths (and longer), unaligned
 * starts, NaN / +-inf / huge / denormal / -0 values, heavy ties, and
 * exact-size buffers so the sanitizers see any read or write past the end.
 * The C reference is also checked against its own definition (top-k order,
 * compaction result), so a wrong specification cannot hide.
 *
 * A new instruction set is one line in `variants` below. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsp.h"
#include "fuzz_check.h"
#include "fuzz_producer.h"
#include "keyformer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);


static const char *current_variant = "c";

static void check_failed(const char *what, int line)
{
    fprintf(stderr, "fuzz_kernels: line %d (variant %s): check failed: %s\n",
            line, current_variant, what);
    abort();
}

/* Instruction sets to compare with C: kf_dsp_init() with one bit gives
 * that set's kernels over C; kernels it does not override (or a CPU
 * without the set) report isa 0 and are skipped. The last entry is the
 * table a default cache gets. */
typedef struct variant {
    const char *name;
    uint32_t mask;
} variant;

static const variant variants[] = {
    { "avx2", KF_CPU_AVX2 },
    { "avx512", KF_CPU_AVX512 },
    { "neon", KF_CPU_NEON },
    { "best", KF_CPU_ALL },
};
#define N_VARIANTS (sizeof variants / sizeof variants[0])

static kf_dsp tables[N_VARIANTS];
static kf_dsp reference;

static void init_tables(void)
{
    static int done;
    if (done)
        return;
    kf_dsp_init(&reference, 0);
    for (unsigned k = 0; k < KF_KERNEL_COUNT; k++)
        CHECK(reference.isa[k] == 0);
    for (size_t v = 0; v < N_VARIANTS; v++)
        kf_dsp_init(&tables[v], variants[v].mask);
    done = 1;
}

#define MAX_N 640u

/* Exact-size allocation `off` elements into a fresh block, so both ends
 * are sanitizer red zones and the start is unaligned when off is odd. */
typedef struct region {
    void *block;
    void *at;
} region;

static region region_new(size_t elem, size_t count, size_t off)
{
    region r;
    size_t bytes = elem * (count + off);
    r.block = malloc(bytes ? bytes : 1);
    CHECK(r.block != NULL);
    r.at = (uint8_t *)r.block + elem * off;
    return r;
}

static uint32_t bulk_next(uint64_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 7;
    *st ^= *st << 17;
    return (uint32_t)(*st >> 16);
}

static uint32_t pick_length(fz_input *in)
{
    if (fz_chance(in, 200))
        return fz_range(in, 0, 80);
    return fz_range(in, 0, MAX_N);
}

/* Values of one row: ordinary, tied, mostly masked, or special. */
static void fill_floats(fz_input *in, float *x, uint32_t n, int allow_special)
{
    uint64_t st = (uint64_t)fz_u32(in) << 1 | 1;
    uint32_t mode = fz_range(in, 0, 4);
    for (uint32_t j = 0; j < n; j++) {
        uint32_t r = bulk_next(&st);
        switch (mode) {
        case 0: x[j] = ((float)(r % 20001) - 10000.0f) / 1000.0f; break;
        case 1: x[j] = (float)(r % 3); break; /* ties */
        case 2: x[j] = r % 5 ? -INFINITY : (float)(r % 7); break;
        case 3: x[j] = ((float)(r % 2001) - 1000.0f) * 1e-3f * (float)(1u << (r % 24)); break;
        default: {
            uint32_t bits = r << 16 | (bulk_next(&st) & 0xffffu);
            memcpy(&x[j], &bits, sizeof bits); /* any pattern */
            if (!allow_special && !isfinite(x[j]))
                x[j] = 0.0f;
        }
        }
    }
    int pokes = n ? (int)fz_range(in, 0, 6) : 0;
    for (int k = 0; k < pokes; k++) {
        uint32_t j = fz_range(in, 0, n - 1);
        float f = fz_float(in);
        x[j] = allow_special || isfinite(f) ? f : -0.0f;
    }
}

static float pick_inv_tau(fz_input *in)
{
    static const float taus[] = { 1.0f, 2.0f, 1.5f, 0.5f, 1e-3f, 1e3f, 1e-30f, 3e38f };
    if (fz_chance(in, 224))
        return 1.0f / taus[fz_range(in, 0, 7)];
    /* any positive finite reciprocal of a valid tau */
    uint32_t bits = fz_u32(in) & 0x7fffffffu;
    float tau;
    memcpy(&tau, &bits, sizeof tau);
    if (!(tau > 0.0f) || !isfinite(tau) || !isfinite(1.0f / tau))
        tau = 1.0f;
    return 1.0f / tau;
}

/* ---- score kernels ---- */

/* One score kernel (KF_KERNEL_SCORE_*) of table t on the inputs. */
static int call_score(const kf_dsp *t, unsigned kernel, float *acc,
                      const float *x, const int32_t *p, uint32_t n,
                      kf_noise_key key, float inv_tau, float *scratch,
                      const float *next)
{
    uint32_t failed;
    if (kernel == KF_KERNEL_SCORE_GUMBEL)
        return t->score_gumbel(acc, x, 0, 1, p, n, &key, inv_tau, scratch,
                               &failed, next);
    if (kernel == KF_KERNEL_SCORE_TABLE)
        return t->score_table(acc, x, 0, 1, p, n, &key, inv_tau,
                              kf_gumbel_table(), scratch, &failed, next);
    return t->score_softmax(acc, x, n, scratch);
}

/* C, then every variant that replaces the kernel: the same status and
 * bits; a failed call leaves acc untouched. */
static void compare_score(unsigned kernel, const float *xf, const int32_t *p,
                          const float *a0, uint32_t n, size_t off,
                          kf_noise_key key, float inv_tau)
{
    region acc_c = region_new(sizeof(float), n, off);
    region scr_c = region_new(sizeof(float), n, off);
    memcpy(acc_c.at, a0, n * sizeof(float));
    current_variant = "c";
    int st_c = call_score(&reference, kernel, acc_c.at, xf, p, n, key, inv_tau,
                          scr_c.at, NULL);
    CHECK(st_c == KF_ROW_OK || st_c == KF_ROW_NAN || st_c == KF_ROW_EMPTY);
    if (st_c != KF_ROW_OK) /* on failure acc is untouched */
        CHECK(memcmp(acc_c.at, a0, n * sizeof(float)) == 0);
    for (size_t v = 0; v < N_VARIANTS; v++) {
        if (!tables[v].isa[kernel])
            continue;
        current_variant = variants[v].name;
        region acc_v = region_new(sizeof(float), n, off);
        region scr_v = region_new(sizeof(float), n, off);
        memcpy(acc_v.at, a0, n * sizeof(float));
        int st_v = call_score(&tables[v], kernel, acc_v.at, xf, p, n, key,
                              inv_tau, scr_v.at, xf);
        CHECK(st_v == st_c);
        CHECK(memcmp(acc_v.at, acc_c.at, n * sizeof(float)) == 0);
        free(acc_v.block);
        free(scr_v.block);
    }
    free(acc_c.block);
    free(scr_c.block);
}

static void fuzz_score(fz_input *in, int gumbel)
{
    uint32_t n = pick_length(in);
    size_t off = fz_range(in, 0, 15);
    region x = region_new(sizeof(float), n, off);
    region pos = region_new(sizeof(int32_t), n, off);
    region acc0 = region_new(sizeof(float), n, 0);
    float *xf = x.at, *a0 = acc0.at;
    int32_t *p = pos.at;
    fill_floats(in, xf, n, 1);
    /* positions: ascending from any start (the library's case), or any */
    int32_t start = (int32_t)(fz_u32(in) & 0x7fffffffu);
    int any_pos = fz_chance(in, 48);
    uint64_t st = (uint64_t)fz_u32(in) << 1 | 1;
    for (uint32_t j = 0; j < n; j++) {
        if (any_pos) {
            p[j] = (int32_t)bulk_next(&st);
        } else {
            p[j] = start;
            int64_t next = (int64_t)start + 1 + (bulk_next(&st) % 3 == 0);
            start = next <= INT32_MAX ? (int32_t)next : INT32_MAX;
        }
    }
    for (uint32_t j = 0; j < n; j++)
        a0[j] = (float)(bulk_next(&st) % 1000) / 100.0f;
    kf_noise_key key = { fz_u32(in) };
    float inv_tau = pick_inv_tau(in);

    /* the Gumbel inputs run through score_table (KF_NOISE_TABLE) too */
    for (int table = 0; table <= gumbel; table++)
        compare_score(gumbel ? table ? KF_KERNEL_SCORE_TABLE
                                     : KF_KERNEL_SCORE_GUMBEL
                             : KF_KERNEL_SCORE_SOFTMAX,
                      xf, p, a0, n, off, key, inv_tau);
    free(x.block);
    free(pos.block);
    free(acc0.block);
}

/* ---- dot products (kf_observe_qk's logits) ---- */

/* Bit-equal, or both NaN (a NaN's sign and payload may differ by
 * instruction set; a NaN logit fails the call whatever its bits). */
static int same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0 || (isnan(a) && isnan(b));
}

static void fuzz_dot(fz_input *in)
{
    uint32_t dim = fz_chance(in, 160) ? fz_range(in, 1, 70) : fz_range(in, 1, 300);
    uint32_t n = fz_range(in, 0, 40);
    size_t stride = dim + (fz_chance(in, 128) ? 0 : fz_range(in, 1, 20));
    size_t off = fz_range(in, 0, 15);
    size_t k_count = n ? (n - 1) * stride + dim : 0;
    region q = region_new(sizeof(float), dim, off);
    region k = region_new(sizeof(float), k_count, off);
    fill_floats(in, q.at, dim, 1);
    fill_floats(in, k.at, (uint32_t)k_count, 1);
    static const float scales[] = { 1.0f, 0.0883883476f, 0.125f, 1e-30f, 3e30f, 0.0f };
    float scale = scales[fz_range(in, 0, 5)];

    region out_c = region_new(sizeof(float), n, off);
    current_variant = "c";
    reference.dot_rows(out_c.at, q.at, k.at, stride, n, dim, scale);
    for (size_t v = 0; v < N_VARIANTS; v++) {
        if (!tables[v].isa[KF_KERNEL_DOT_ROWS])
            continue;
        current_variant = variants[v].name;
        region out_v = region_new(sizeof(float), n, off);
        tables[v].dot_rows(out_v.at, q.at, k.at, stride, n, dim, scale);
        for (uint32_t t = 0; t < n; t++)
            CHECK(same_float(((float *)out_v.at)[t], ((float *)out_c.at)[t]));
        free(out_v.block);
    }
    free(q.block);
    free(k.block);
    free(out_c.block);
}

/* ---- top-k selection ---- */

static uint32_t rank_key(float f)
{
    uint32_t u;
    if (f == 0.0f)
        f = 0.0f;
    memcpy(&u, &f, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static const float *sort_scores;

/* Better first: larger key, then lower index. */
static int by_rank(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    uint32_t ka = rank_key(sort_scores[a]), kb = rank_key(sort_scores[b]);
    if (ka != kb)
        return ka > kb ? -1 : 1;
    return (a > b) - (a < b);
}

static int by_index(const void *pa, const void *pb)
{
    uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;
    return (a > b) - (a < b);
}

static void fuzz_select(fz_input *in)
{
    uint32_t n = pick_length(in);
    uint32_t need = n ? fz_range(in, 0, n) : 0;
    if (n && fz_chance(in, 64))
        need = fz_chance(in, 128) ? n : 1;
    size_t off = fz_range(in, 0, 15);
    region sc = region_new(sizeof(float), n, off);
    float *s = sc.at;
    fill_floats(in, s, n, fz_chance(in, 64));

    region out_c = region_new(sizeof(uint32_t), need, off);
    region keys_c = region_new(sizeof(uint32_t), n, off);
    current_variant = "c";
    reference.select_top(out_c.at, s, n, need, keys_c.at);

    /* the reference against its definition */
    uint32_t *order = malloc((n ? n : 1) * sizeof *order);
    CHECK(order != NULL);
    for (uint32_t j = 0; j < n; j++)
        order[j] = j;
    sort_scores = s;
    qsort(order, n, sizeof *order, by_rank);
    qsort(order, need, sizeof *order, by_index);
    CHECK(memcmp(order, out_c.at, need * sizeof *order) == 0);
    free(order);

    for (size_t v = 0; v < N_VARIANTS; v++) {
        if (!tables[v].isa[KF_KERNEL_SELECT_TOP])
            continue;
        current_variant = variants[v].name;
        region out_v = region_new(sizeof(uint32_t), need, off);
        region keys_v = region_new(sizeof(uint32_t), n, off);
        tables[v].select_top(out_v.at, s, n, need, keys_v.at);
        CHECK(memcmp(out_v.at, out_c.at, need * sizeof(uint32_t)) == 0);
        free(out_v.block);
        free(keys_v.block);
    }
    free(sc.block);
    free(out_c.block);
    free(keys_c.block);
}

/* ---- row compaction ---- */

static void fuzz_compact(fz_input *in)
{
    uint32_t n = fz_range(in, 1, fz_chance(in, 200) ? 40 : 300);
    size_t row_bytes = fz_range(in, 1, fz_chance(in, 200) ? 64 : 1100);
    size_t stride = row_bytes + (fz_chance(in, 96) ? 0 : fz_range(in, 1, 70));
    size_t bytes = (size_t)(n - 1) * stride + row_bytes;
    size_t off = fz_range(in, 0, 63);

    /* an ascending keep list, density from the input */
    uint32_t *keep = malloc(n * sizeof *keep);
    CHECK(keep != NULL);
    uint32_t density = fz_range(in, 0, 255), n_keep = 0;
    uint64_t st = (uint64_t)fz_u32(in) << 1 | 1;
    for (uint32_t j = 0; j < n; j++)
        if ((bulk_next(&st) & 255u) <= density)
            keep[n_keep++] = j;

    uint8_t *orig = malloc(bytes);
    CHECK(orig != NULL);
    for (size_t b = 0; b < bytes; b++)
        orig[b] = (uint8_t)bulk_next(&st);

    region buf_c = region_new(1, bytes, off);
    memcpy(buf_c.at, orig, bytes);
    current_variant = "c";
    reference.compact_rows(buf_c.at, stride, keep, n_keep, row_bytes);

    /* the reference against its definition */
    uint8_t *want = malloc(bytes);
    CHECK(want != NULL);
    memcpy(want, orig, bytes);
    for (uint32_t i = 0; i < n_keep; i++)
        memcpy(want + i * stride, orig + keep[i] * stride, row_bytes);
    CHECK(memcmp(want, buf_c.at, bytes) == 0);

    for (size_t v = 0; v < N_VARIANTS; v++) {
        if (!tables[v].isa[KF_KERNEL_COMPACT_ROWS])
            continue;
        current_variant = variants[v].name;
        region buf_v = region_new(1, bytes, off);
        memcpy(buf_v.at, orig, bytes);
        tables[v].compact_rows(buf_v.at, stride, keep, n_keep, row_bytes);
        CHECK(memcmp(buf_v.at, buf_c.at, bytes) == 0);
        free(buf_v.block);
    }
    free(keep);
    free(orig);
    free(want);
    free(buf_c.block);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    init_tables();
    fz_input in;
    fz_init(&in, data, size);
    for (int round = 0; round < 8 && fz_left(&in); round++) {
        switch (fz_range(&in, 0, 4)) {
        case 0: fuzz_score(&in, 1); break;
        case 1: fuzz_score(&in, 0); break;
        case 2: fuzz_select(&in); break;
        case 3: fuzz_dot(&in); break;
        default: fuzz_compact(&in); break;
        }
    }
    return 0;
}
