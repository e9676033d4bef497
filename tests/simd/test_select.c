/* Top-k selection: every variant must write exactly the indices the C
 * reference writes (same order), never outside out[0, need) or keys[0, n),
 * and never modify the scores. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum {
    SGEN_UNIFORM,   /* [0, 1) like accumulated softmax scores */
    SGEN_TIES,      /* a handful of distinct values */
    SGEN_EQUAL,     /* all equal */
    SGEN_ZEROS,     /* +0 and -0 mixed (equal keys) with some positives */
    SGEN_SIGNED,    /* negative and positive, wide range */
    SGEN_SPECIAL,   /* NaN (any payload and sign), +-inf, denormals */
    SGEN_ASCENDING, /* sorted up: winners at the end */
    SGEN_DESCENDING,
    SGEN_BITS,      /* any 32-bit pattern */
    SGEN_CLUSTER,   /* values one ulp apart around 0.5: deep radix digits */
    SGEN_ONE_LOW,   /* one smallest value at a random index (drop one) */
    SGEN_TWO_LOW,   /* two equal smallest values: the later one goes */
    SGEN_COUNT
};

static const char *const sgen_names[SGEN_COUNT] = {
    "uniform", "ties", "equal", "zeros", "signed", "special",
    "ascending", "descending", "bits", "cluster", "one-low", "two-low"
};

static void gen_scores(float *s, uint32_t n, int gen, rng *r)
{
    float base = rng_float(r, -2.0f, 2.0f);
    for (uint32_t j = 0; j < n; j++) {
        float v = rng_float(r, 0.0f, 1.0f);
        switch (gen) {
        case SGEN_TIES: v = (float)rng_below(r, 5) * 0.25f; break;
        case SGEN_EQUAL: v = base; break;
        case SGEN_ZEROS: {
            uint32_t k = rng_below(r, 4);
            v = k == 0 ? 0.0f : k == 1 ? -0.0f : k == 2 ? 1.0f : v;
            break;
        }
        case SGEN_SIGNED: v = rng_float(r, -1e6f, 1e6f) * rng_float(r, 0.0f, 1.0f); break;
        case SGEN_SPECIAL: {
            uint32_t k = rng_below(r, 8);
            if (k == 0)
                v = f32_from_bits((rng_u32(r) & 0x803fffffu) | 0x7fc00000u);
            else if (k == 1)
                v = INFINITY;
            else if (k == 2)
                v = -INFINITY;
            else if (k == 3)
                v = f32_from_bits(rng_u32(r) & 0x807fffffu);
            else if (k == 4)
                v = f32_from_bits((rng_u32(r) & 0x803fffffu) | 0x7f800001u);
            break;
        }
        case SGEN_ASCENDING: v = (float)j * 0.5f; break;
        case SGEN_DESCENDING: v = (float)(n - j) * 0.5f; break;
        case SGEN_BITS: v = f32_from_bits(rng_u32(r)); break;
        case SGEN_CLUSTER:
            v = f32_from_bits(0x3f000000u + rng_below(r, 3000));
            break;
        default: break;
        }
        s[j] = v;
    }
    if ((gen == SGEN_ONE_LOW || gen == SGEN_TWO_LOW) && n > 0) {
        for (uint32_t j = 0; j < n; j++)
            s[j] = rng_float(r, 0.0f, 1.0f) + 1.0f;
        s[rng_below(r, n)] = 0.5f;
        if (gen == SGEN_TWO_LOW)
            s[rng_below(r, n)] = 0.5f;
    }
}

static uint32_t pick_need(uint32_t n, int k, rng *r)
{
    switch (k) {
    case 0: return 0;
    case 1: return n ? 1 : 0;
    case 2: return n / 2;
    case 3: return n ? n - 1 : 0;
    case 4: return n;
    default: return n ? rng_below(r, n + 1) : 0;
    }
}

static void compare_once(const variant *v, uint32_t n, uint32_t need, int gen,
                         rng *r)
{
    harness_cases++;
    guarded scores, out_c, out_v, keys_c, keys_v;
    guarded_alloc(&scores, n * 4u, 4u * rng_below(r, 16));
    guarded_alloc(&out_c, need * 4u, 0);
    guarded_alloc(&out_v, need * 4u, 4u * rng_below(r, 16));
    guarded_alloc(&keys_c, n * 4u, 0);
    guarded_alloc(&keys_v, n * 4u, 4u * rng_below(r, 16));
    float *s = (float *)scores.data;
    gen_scores(s, n, gen, r);
    float *copy = malloc(n * 4u + 4u);
    memcpy(copy, s, n * 4u);
    memset(out_c.data, 0xee, need * 4u);
    memset(out_v.data, 0xee, need * 4u);

    kf_select_top_c((uint32_t *)out_c.data, s, n, need, (uint32_t *)keys_c.data);
    v->dsp.select_top((uint32_t *)out_v.data, s, n, need, (uint32_t *)keys_v.data);

    if (memcmp(out_c.data, out_v.data, need * 4u) != 0) {
        const uint32_t *a = (const uint32_t *)out_c.data;
        const uint32_t *b = (const uint32_t *)out_v.data;
        uint32_t i = 0;
        while (a[i] == b[i])
            i++;
        harness_fail("select_top/%s n=%u need=%u gen=%s: out[%u] = %u, C %u",
                     v->name, n, need, sgen_names[gen], i, b[i], a[i]);
    }
    if (!guard_ok(&out_v) || !guard_ok(&keys_v) || !guard_ok(&scores))
        harness_fail("select_top/%s n=%u need=%u gen=%s: write outside a buffer",
                     v->name, n, need, sgen_names[gen]);
    if (memcmp(copy, s, n * 4u) != 0)
        harness_fail("select_top/%s n=%u: scores modified", v->name, n);
    free(copy);
    guarded_free(&scores);
    guarded_free(&out_c);
    guarded_free(&out_v);
    guarded_free(&keys_c);
    guarded_free(&keys_v);
}

static void select_lengths(const variant *v)
{
    rng r;
    rng_init(&r, harness_seed(), 11);
    for (uint32_t n = 0; n <= 64; n++)
        for (int gen = 0; gen < SGEN_COUNT; gen++)
            for (int k = 0; k < 7; k++)
                compare_once(v, n, pick_need(n, k, &r), gen, &r);
}

static void select_large(const variant *v)
{
    static const uint32_t sizes[] = { 100, 1000, 2047, 2048, 2049, 4097,
                                      65537, 300000 };
    rng r;
    rng_init(&r, harness_seed(), 12);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int gen = 0; gen < SGEN_COUNT; gen++)
            for (int k = 1; k < 7; k++)
                compare_once(v, sizes[i], pick_need(sizes[i], k, &r), gen, &r);
}

static void select_random(const variant *v)
{
    rng r;
    rng_init(&r, harness_seed(), 13);
    for (int trial = 0; trial < 3000; trial++) {
        uint32_t n = 1 + rng_below(&r, 700);
        compare_once(v, n, rng_below(&r, n + 1), (int)rng_below(&r, SGEN_COUNT), &r);
    }
}

int main(void)
{
    static const check checks[] = {
        { "select_lengths_0_64", select_lengths, KF_KERNEL_SELECT_TOP },
        { "select_large", select_large, KF_KERNEL_SELECT_TOP },
        { "select_random", select_random, KF_KERNEL_SELECT_TOP },
    };
    return run_checks("simd_select", checks, (int)(sizeof checks / sizeof checks[0]));
}
