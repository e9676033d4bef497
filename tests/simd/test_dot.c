/* dot_rows (kf_observe_qk's logits): every variant against the C
 * reference, bit for bit, for every dim from 1 to a few blocks of 16, the
 * head sizes of real models, 0 to a dozen key rows with strides wider than
 * dim, unaligned starts, and values that include NaN, +-inf, huge (products
 * overflow), denormal and +-0; canaries around the output. A NaN result
 * only has to be a NaN: its sign and payload follow each instruction set's
 * NaN rules (and the C compiler's operand order), and a NaN logit makes
 * kf_observe_qk fail with KF_ENAN whatever its bits. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

enum {
    GEN_RANDOM,   /* uniform [-2, 2) */
    GEN_WIDE,     /* random sign, exponent and mantissa, finite */
    GEN_SPECIAL,  /* random with NaN, +-inf, +-0 and denormals mixed in */
    GEN_OVERFLOW, /* +-1e20..1e30: products and sums overflow to +-inf */
    GEN_CANCEL,   /* pairs that cancel exactly: sums of +0 and -0 products */
    GEN_COUNT
};

static const char *const gen_names[GEN_COUNT] = {
    "random", "wide", "special", "overflow", "cancel"
};

static float gen_value(int gen, uint32_t e, rng *r)
{
    switch (gen) {
    case GEN_WIDE: {
        uint32_t u = rng_u32(r);
        if (((u >> 23) & 0xff) == 0xff)
            u &= ~(1u << 23);
        return f32_from_bits(u);
    }
    case GEN_SPECIAL: {
        static const float special[] = { NAN, INFINITY, -INFINITY, 0.0f, -0.0f,
                                         1e-40f, -1e-42f };
        if (rng_below(r, 6) == 0)
            return special[rng_below(r, sizeof special / sizeof *special)];
        return rng_float(r, -2.0f, 2.0f);
    }
    case GEN_OVERFLOW:
        return (rng_below(r, 2) ? 1.0f : -1.0f) * powf(10.0f, rng_float(r, 20.0f, 30.0f));
    case GEN_CANCEL:
        return (e & 1 ? -1.0f : 1.0f) * (float)(1 + (e >> 1) % 3);
    default:
        return rng_float(r, -2.0f, 2.0f);
    }
}

static void compare_once(const variant *v, uint32_t dim, uint32_t n, int gen,
                         rng *r)
{
    harness_cases++;
    size_t stride = dim + rng_below(r, 3) * (1 + rng_below(r, 17));
    guarded q, k, out_c, out_v;
    guarded_alloc(&q, dim * 4u, 4u * rng_below(r, 16));
    guarded_alloc(&k, (n ? (n - 1) * stride + dim : 0) * 4u, 4u * rng_below(r, 16));
    guarded_alloc(&out_c, n * 4u, 4u * rng_below(r, 16));
    guarded_alloc(&out_v, n * 4u, 4u * rng_below(r, 16));
    float *qf = (float *)q.data, *kf = (float *)k.data;
    for (uint32_t e = 0; e < dim; e++)
        qf[e] = gen_value(gen, e, r);
    for (uint32_t t = 0; t < n; t++)
        for (uint32_t e = 0; e < dim; e++)
            kf[t * stride + e] = gen == GEN_CANCEL ? 1.0f : gen_value(gen, e, r);
    static const float scales[] = { 1.0f, 0.0883883476f, 0.125f, 1e-30f, 3e30f };
    float scale = scales[rng_below(r, sizeof scales / sizeof *scales)];

    kf_dot_rows_c((float *)out_c.data, qf, kf, stride, n, dim, scale);
    v->dsp.dot_rows((float *)out_v.data, qf, kf, stride, n, dim, scale);
    for (uint32_t t = 0; t < n; t++) {
        uint32_t bc = f32_to_bits(((float *)out_c.data)[t]);
        uint32_t bv = f32_to_bits(((float *)out_v.data)[t]);
        int both_nan = isnan(((float *)out_c.data)[t]) && isnan(((float *)out_v.data)[t]);
        if (bc != bv && !both_nan)
            harness_fail("dot_rows/%s dim=%u n=%u gen=%s: out[%u] = %a, C %a",
                         v->name, dim, n, gen_names[gen], t,
                         (double)((float *)out_v.data)[t],
                         (double)((float *)out_c.data)[t]);
    }
    if (!guard_ok(&q) || !guard_ok(&k) || !guard_ok(&out_v))
        harness_fail("dot_rows/%s dim=%u n=%u: write outside a buffer",
                     v->name, dim, n);
    guarded_free(&q);
    guarded_free(&k);
    guarded_free(&out_c);
    guarded_free(&out_v);
}

/* Every dim to 4 blocks, every row count to 9 and every pattern. */
static void dims(const variant *v)
{
    rng r;
    rng_init(&r, harness_seed(), 11);
    for (uint32_t dim = 1; dim <= 64; dim++)
        for (uint32_t n = 0; n <= 9; n++)
            for (int gen = 0; gen < GEN_COUNT; gen++)
                compare_once(v, dim, n, gen, &r);
}

/* Real head sizes and more rows. */
static void head_sizes(const variant *v)
{
    static const uint32_t sizes[] = { 48, 64, 80, 96, 112, 127, 128, 129, 256 };
    rng r;
    rng_init(&r, harness_seed(), 12);
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++)
        for (int gen = 0; gen < GEN_COUNT; gen++)
            for (int trial = 0; trial < 4; trial++)
                compare_once(v, sizes[i], rng_below(&r, 70), gen, &r);
}

int main(void)
{
    static const check checks[] = {
        { "dot_dims_1_64", dims, KF_KERNEL_DOT_ROWS },
        { "dot_head_sizes", head_sizes, KF_KERNEL_DOT_ROWS },
    };
    return run_checks("simd_dot", checks, (int)(sizeof checks / sizeof checks[0]));
}
