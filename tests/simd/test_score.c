/* Score kernels: every variant against the C reference, bit for bit (acc
 * compared with memcmp, status equal), with canaries around acc and
 * scratch and unaligned starts: score_gumbel, score_softmax and
 * score_table (the noise of KF_NOISE_TABLE). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

/* Logit patterns. */
enum {
    GEN_RANDOM,      /* uniform [-8, 8) */
    GEN_WIDE,        /* random sign and exponent, huge to denormal */
    GEN_DENORMAL,    /* denormals and zeros of both signs */
    GEN_MASKED,      /* random with -inf entries */
    GEN_CAUSAL,      /* finite prefix, -inf tail */
    GEN_ALL_NEG_INF, /* every entry -inf: KF_ROW_EMPTY */
    GEN_EQUAL,       /* all the same value */
    GEN_NAN,         /* random with one NaN (any payload / sign) */
    GEN_POS_INF,     /* random with one +inf */
    GEN_NAN_MASKED,  /* -inf everywhere but a NaN: NaN wins */
    GEN_EXTREMES,    /* +-FLT_MAX mixed with small values: overflow in t-max */
    GEN_EXP_EDGE,    /* values right at the exp underflow threshold */
    GEN_ZEROS,       /* +0 and -0 only */
    GEN_COUNT
};

static const char *const gen_names[GEN_COUNT] = {
    "random", "wide", "denormal", "masked", "causal", "all-neg-inf", "equal",
    "nan", "pos-inf", "nan-masked", "extremes", "exp-edge", "zeros"
};

static float random_wide(rng *r)
{
    /* any finite float: random sign, exponent, mantissa */
    uint32_t u = rng_u32(r);
    uint32_t exp = (u >> 23) & 0xff;
    if (exp == 0xff)
        u &= ~(1u << 23); /* make it finite */
    return f32_from_bits(u);
}

static void gen_logits(float *x, uint32_t n, int gen, rng *r)
{
    for (uint32_t j = 0; j < n; j++)
        x[j] = rng_float(r, -8.0f, 8.0f);
    switch (gen) {
    case GEN_WIDE:
        for (uint32_t j = 0; j < n; j++)
            x[j] = random_wide(r);
        break;
    case GEN_DENORMAL:
        for (uint32_t j = 0; j < n; j++) {
            uint32_t u = rng_u32(r) & 0x807fffffu; /* exponent 0 */
            if (rng_below(r, 8) == 0)
                u &= 0x80000000u;
            x[j] = f32_from_bits(u);
        }
        break;
    case GEN_MASKED:
        for (uint32_t j = 0; j < n; j++)
            if (rng_below(r, 3) == 0)
                x[j] = -INFINITY;
        break;
    case GEN_CAUSAL:
        for (uint32_t j = n ? 1 + rng_below(r, n) : 0; j < n; j++)
            x[j] = -INFINITY;
        break;
    case GEN_ALL_NEG_INF:
        for (uint32_t j = 0; j < n; j++)
            x[j] = -INFINITY;
        break;
    case GEN_EQUAL: {
        float v = rng_float(r, -100.0f, 100.0f);
        for (uint32_t j = 0; j < n; j++)
            x[j] = v;
        break;
    }
    case GEN_NAN:
    case GEN_POS_INF:
    case GEN_NAN_MASKED:
        if (gen == GEN_NAN_MASKED)
            for (uint32_t j = 0; j < n; j++)
                x[j] = -INFINITY;
        if (n) {
            uint32_t at = rng_below(r, n);
            uint32_t payload = (rng_u32(r) & 0x803fffffu) | 0x7f800001u;
            x[at] = gen == GEN_POS_INF ? INFINITY : f32_from_bits(payload);
        }
        break;
    case GEN_EXTREMES:
        for (uint32_t j = 0; j < n; j++) {
            uint32_t k = rng_below(r, 4);
            x[j] = k == 0 ? 3.4028235e38f : k == 1 ? -3.4028235e38f
                                                   : rng_float(r, -1.0f, 1.0f);
        }
        break;
    case GEN_EXP_EDGE: {
        /* max 0 after noise is impossible to pin, so this matters most for
         * the softmax kernel: x - 0 lands on and around -87.3365479 */
        const float edge = -87.3365479f;
        for (uint32_t j = 0; j < n; j++) {
            int k = (int)rng_below(r, 6);
            float v = edge;
            if (k == 1)
                v = nextafterf(edge, 0.0f);
            else if (k == 2)
                v = nextafterf(edge, -INFINITY);
            else if (k == 3)
                v = rng_float(r, -88.0f, -86.5f);
            else if (k == 4)
                v = -0.5f * (float)rng_below(r, 256); /* half-way roundings */
            x[j] = v;
        }
        if (n)
            x[rng_below(r, n)] = 0.0f;
        break;
    }
    case GEN_ZEROS:
        for (uint32_t j = 0; j < n; j++)
            x[j] = rng_below(r, 2) ? 0.0f : -0.0f;
        break;
    default:
        break;
    }
}

static float pick_inv_tau(rng *r, int trial)
{
    static const float fixed[] = { 1.0f, 0.5f, 0.75f, 1.0f / 1.5f, 4.0f,
                                   0.01f, 100.0f };
    if (trial < (int)(sizeof fixed / sizeof fixed[0]))
        return fixed[trial];
    /* tau = 1 takes its own path (e^x / E): half the random trials */
    return rng_below(r, 2) ? 1.0f : 1.0f / rng_float(r, 0.25f, 4.0f);
}

/* Which kernel compare_once runs. */
enum { KIND_GUMBEL, KIND_SOFTMAX, KIND_TABLE };

static const char *const kind_names[] = { "score_gumbel", "score_softmax",
                                          "score_table" };

/* kf_score_gumbel_c or kf_score_table_c, or the variant's */
static int call_noised(const kf_dsp *dsp, int kind, float *acc, const float *x,
                       size_t stride, uint32_t rows, const int32_t *pos,
                       uint32_t n, const kf_noise_key *keys, float inv_tau,
                       float *scratch, uint32_t *failed, const float *next)
{
    if (kind == KIND_TABLE)
        return dsp ? dsp->score_table(acc, x, stride, rows, pos, n, keys,
                                      inv_tau, kf_gumbel_table(), scratch,
                                      failed, next)
                   : kf_score_table_c(acc, x, stride, rows, pos, n, keys,
                                      inv_tau, kf_gumbel_table(), scratch,
                                      failed, next);
    return dsp ? dsp->score_gumbel(acc, x, stride, rows, pos, n, keys, inv_tau,
                                   scratch, failed, next)
               : kf_score_gumbel_c(acc, x, stride, rows, pos, n, keys, inv_tau,
                                   scratch, failed, next);
}

typedef struct bufs {
    guarded x, pos, acc, scratch;
} bufs;

static void bufs_alloc(bufs *b, uint32_t n, size_t x_len, uint32_t rows,
                       rng *r)
{
    /* each array starts 0..15 floats past a 64-byte boundary */
    guarded_alloc(&b->x, x_len * 4u, 4u * rng_below(r, 16));
    guarded_alloc(&b->pos, n * 4u, 4u * rng_below(r, 16));
    guarded_alloc(&b->acc, n * 4u, 4u * rng_below(r, 16));
    guarded_alloc(&b->scratch, (size_t)rows * n * 4u, 4u * rng_below(r, 16));
}

static void bufs_free(bufs *b)
{
    guarded_free(&b->x);
    guarded_free(&b->pos);
    guarded_free(&b->acc);
    guarded_free(&b->scratch);
}

/* Patterns that leave a row valid, for the other rows of a group. */
static const int valid_gens[] = { GEN_RANDOM, GEN_WIDE, GEN_MASKED, GEN_CAUSAL,
                                  GEN_EQUAL, GEN_EXTREMES, GEN_ZEROS };

/* One comparison: same x, pos, keys, inv_tau and starting acc. Score
 * rows > 1 (score_gumbel and score_table): the rows sit x_stride apart,
 * one of them (any) has pattern gen, the others a valid one; C must also
 * equal `rows` one-row C calls. kind: KIND_*. */
static void compare_once(const variant *v, int kind, uint32_t n,
                         uint32_t rows, int gen, int trial, rng *r)
{
    int softmax = kind == KIND_SOFTMAX;
    harness_cases++;
    bufs c, s;
    rng layout = *r;
    size_t stride = rows > 1 ? n + rng_below(r, 17) : n;
    size_t x_len = (rows - 1) * stride + n;
    bufs_alloc(&c, n, x_len, rows, &layout);
    bufs_alloc(&s, n, x_len, rows, &layout);
    float *x = (float *)c.x.data;
    int32_t *pos = (int32_t *)c.pos.data;
    float *acc0 = (float *)c.acc.data;
    uint32_t gen_row = rng_below(r, rows);
    for (size_t j = 0; j < x_len; j++)
        x[j] = NAN; /* the gaps between rows: never read */
    for (uint32_t m = 0; m < rows; m++)
        gen_logits(x + m * stride, n,
                   m == gen_row ? gen
                                : valid_gens[rng_below(r, sizeof valid_gens
                                                              / sizeof *valid_gens)],
                   r);
    int pos_kind = (int)rng_below(r, 3);
    int32_t p0 = (int32_t)rng_u32(r);
    for (uint32_t j = 0; j < n; j++)
        pos[j] = pos_kind == 0   ? (int32_t)j
                 : pos_kind == 1 ? (int32_t)rng_u32(r)
                                 : (int32_t)((uint32_t)p0 + 3u * j);
    for (uint32_t j = 0; j < n; j++)
        acc0[j] = trial % 3 == 0 ? 0.0f : rng_float(r, 0.0f, 16.0f);
    memcpy(s.x.data, x, x_len * 4u);
    if (n)
        memcpy(s.pos.data, pos, n * 4u);
    if (n)
        memcpy(s.acc.data, acc0, n * 4u);
    float *acc_start = malloc(n * 4u + 4u); /* acc0 is C's acc: changes */
    if (!acc_start)
        harness_fail("out of memory");
    memcpy(acc_start, acc0, n * 4u);
    kf_noise_key keys[KF_SCORE_ROWS_MAX];
    for (uint32_t m = 0; m < rows; m++)
        keys[m].salt = rng_u32(r);
    float inv_tau = pick_inv_tau(r, trial);
    /* the prefetch hint: none, or a row that must not change anything */
    const float *next = rng_below(r, 2) ? x : NULL;

    int st_c, st_v;
    uint32_t failed_c = 0, failed_v = 0;
    if (softmax) {
        st_c = kf_score_softmax_c((float *)c.acc.data, x, n, (float *)c.scratch.data);
        st_v = v->dsp.score_softmax((float *)s.acc.data, (const float *)s.x.data,
                                    n, (float *)s.scratch.data);
    } else {
        st_c = call_noised(NULL, kind, (float *)c.acc.data, x, stride, rows,
                           pos, n, keys, inv_tau, (float *)c.scratch.data,
                           &failed_c, NULL);
        st_v = call_noised(&v->dsp, kind, (float *)s.acc.data,
                           (const float *)s.x.data, stride, rows,
                           (const int32_t *)s.pos.data, n, keys, inv_tau,
                           (float *)s.scratch.data, &failed_v, next);
    }
    const char *what = kind_names[kind];
    if (st_c != st_v || (st_c && failed_c != failed_v))
        harness_fail("%s/%s n=%u rows=%u gen=%s trial=%d: status %d row %u, "
                     "C %d row %u", what, v->name, n, rows, gen_names[gen],
                     trial, st_v, failed_v, st_c, failed_c);
    if (n && memcmp(c.acc.data, s.acc.data, n * 4u) != 0) {
        uint32_t j = 0;
        while (f32_to_bits(((float *)c.acc.data)[j])
               == f32_to_bits(((float *)s.acc.data)[j]))
            j++;
        harness_fail("%s/%s n=%u rows=%u gen=%s trial=%d: acc[%u] = %a, C %a "
                     "(x %a, inv_tau %a)",
                     what, v->name, n, rows, gen_names[gen], trial, j,
                     (double)((float *)s.acc.data)[j],
                     (double)((float *)c.acc.data)[j], (double)x[j],
                     (double)inv_tau);
    }
    if (!guard_ok(&s.x) || !guard_ok(&s.pos) || !guard_ok(&s.acc)
        || !guard_ok(&s.scratch))
        harness_fail("%s/%s n=%u: write outside a buffer", what, v->name, n);
    if (memcmp(s.x.data, x, x_len * 4u) || (n && memcmp(s.pos.data, pos, n * 4u)))
        harness_fail("%s/%s n=%u: inputs modified", what, v->name, n);
    if (st_c && n && memcmp(c.acc.data, acc_start, n * 4u))
        harness_fail("%s/C n=%u rows=%u: acc changed by a failed call", what,
                     n, rows);
    if (!softmax && rows > 1) { /* C, grouped == one row at a time */
        uint32_t failed;
        int st_one = KF_ROW_OK;
        memcpy(s.acc.data, acc_start, n * 4u);
        for (uint32_t m = 0; m < rows && !st_one; m++) {
            st_one = call_noised(NULL, kind, (float *)s.acc.data,
                                 x + m * stride, 0, 1, pos, n, &keys[m],
                                 inv_tau, (float *)s.scratch.data, &failed,
                                 NULL);
            failed = m;
        }
        if (st_one != st_c || (st_c && failed != failed_c)
            || (!st_c && n && memcmp(c.acc.data, s.acc.data, n * 4u)))
            harness_fail("%s/C n=%u rows=%u gen=%s: grouped != one "
                         "row at a time (status %d row %u, one row: %d row %u)",
                         what, n, rows, gen_names[gen], st_c, failed_c, st_one,
                         failed);
    }
    free(acc_start);
    bufs_free(&c);
    bufs_free(&s);
}

static void lengths(const variant *v, int kind, uint64_t stream)
{
    rng r;
    rng_init(&r, harness_seed(), stream);
    /* every length to 3 vector widths with every pattern, then every
     * length over a few unrolled blocks (128 elements for AVX-512) */
    for (uint32_t n = 0; n <= 64; n++)
        for (int gen = 0; gen < GEN_COUNT; gen++)
            for (int trial = 0; trial < 3; trial++)
                compare_once(v, kind, n, 1, gen, trial, &r);
    for (uint32_t n = 65; n <= 400; n++)
        compare_once(v, kind, n, 1, (int)(n % GEN_COUNT), (int)n, &r);
}

static void large(const variant *v, int kind, uint64_t stream)
{
    static const uint32_t sizes[] = { 100, 255, 256, 257, 1000, 4095, 4096,
                                      4097, 65537 };
    rng r;
    rng_init(&r, harness_seed(), stream);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int gen = 0; gen < GEN_COUNT; gen++)
            compare_once(v, kind, sizes[i], 1, gen, (int)rng_below(&r, 9), &r);
}

/* Many short random rows with every temperature; where most bugs of a
 * vector exp or ln would show as a one-ulp difference. */
static void random_rows(const variant *v, int kind, uint64_t stream)
{
    rng r;
    rng_init(&r, harness_seed(), stream);
    for (int trial = 0; trial < 3000; trial++) {
        uint32_t n = 1 + rng_below(&r, 200);
        int gen = rng_below(&r, 4) ? GEN_RANDOM : (int)rng_below(&r, GEN_COUNT);
        compare_once(v, kind, n, 1, gen, trial, &r);
    }
}

/* Rows of a KV head's query heads in one call: 1 to KF_SCORE_ROWS_MAX
 * rows, any pattern in any one of them (the first failing row and its
 * status must match), short and long rows. */
static void group_rows(const variant *v, int kind, uint64_t stream)
{
    rng r;
    rng_init(&r, harness_seed(), stream);
    for (int trial = 0; trial < 1500; trial++) {
        uint32_t rows = 1 + rng_below(&r, KF_SCORE_ROWS_MAX);
        uint32_t n = trial % 50 == 0 ? 1000 + rng_below(&r, 5000)
                                     : rng_below(&r, 300);
        int gen = rng_below(&r, 3) ? GEN_RANDOM : (int)rng_below(&r, GEN_COUNT);
        compare_once(v, kind, n, rows, gen, trial, &r);
    }
}

static void gumbel_group_rows(const variant *v) { group_rows(v, KIND_GUMBEL, 7); }
static void table_group_rows(const variant *v) { group_rows(v, KIND_TABLE, 11); }
static void table_lengths(const variant *v) { lengths(v, KIND_TABLE, 8); }
static void table_large(const variant *v) { large(v, KIND_TABLE, 9); }
static void table_random(const variant *v) { random_rows(v, KIND_TABLE, 10); }
static void gumbel_lengths(const variant *v) { lengths(v, KIND_GUMBEL, 1); }
static void gumbel_large(const variant *v) { large(v, KIND_GUMBEL, 2); }
static void gumbel_random(const variant *v) { random_rows(v, KIND_GUMBEL, 3); }
static void softmax_lengths(const variant *v) { lengths(v, KIND_SOFTMAX, 4); }
static void softmax_large(const variant *v) { large(v, KIND_SOFTMAX, 5); }
static void softmax_random(const variant *v) { random_rows(v, KIND_SOFTMAX, 6); }

int main(void)
{
    static const check checks[] = {
        { "gumbel_lengths_0_400", gumbel_lengths, KF_KERNEL_SCORE_GUMBEL },
        { "gumbel_large", gumbel_large, KF_KERNEL_SCORE_GUMBEL },
        { "gumbel_random_rows", gumbel_random, KF_KERNEL_SCORE_GUMBEL },
        { "gumbel_group_rows", gumbel_group_rows, KF_KERNEL_SCORE_GUMBEL },
        { "softmax_lengths_0_400", softmax_lengths, KF_KERNEL_SCORE_SOFTMAX },
        { "softmax_large", softmax_large, KF_KERNEL_SCORE_SOFTMAX },
        { "softmax_random_rows", softmax_random, KF_KERNEL_SCORE_SOFTMAX },
        { "table_lengths_0_400", table_lengths, KF_KERNEL_SCORE_TABLE },
        { "table_large", table_large, KF_KERNEL_SCORE_TABLE },
        { "table_random_rows", table_random, KF_KERNEL_SCORE_TABLE },
        { "table_group_rows", table_group_rows, KF_KERNEL_SCORE_TABLE },
    };
    return run_checks("simd_score", checks, (int)(sizeof checks / sizeof checks[0]));
}
