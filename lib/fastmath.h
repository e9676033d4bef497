/* The library's own ln and exp. Every kernel variant (C, AVX2, AVX-512,
 * NEON) performs exactly these fp32 operations in this order, the fused
 * multiply-adds (fmaf) included and no others, so all variants return
 * bit-identical results and selections never depend on the instruction
 * set. (The SIMD files are built with -ffp-contract=off and call their
 * FMA instructions exactly where fmaf stands here.)
 *
 * Accuracy, from an exhaustive sweep of every fp32 input against libm in
 * double precision (tests/test_gumbel.c checks a sample and all of [1, 2)):
 *   kf_ln_f32:  positive normal x; error <= 1.5e-7 relative for x < 1,
 *               <= 6.1e-8 absolute for x in [1, 2), <= 8.4e-8 relative
 *               for x >= 2. The Gumbel sample -ln(-ln u) built on it is
 *               within 6e-7 of the exact value for every one of the 2^23
 *               possible u.
 *   kf_exp_f32: x <= 0; error <= 8.9e-8 relative, final rounding included,
 *               for results >= FLT_MIN; x < -87.336 and -inf return
 *               exactly 0.
 * Coefficients and tables: near-minimax fits (Lawson iteration) made for
 * this library; ln is table-driven (16 buckets, two 16-entry tables, a
 * degree-4 polynomial) because the Gumbel noise takes two ln per logit,
 * the kernels' main cost.
 */
#ifndef KF_FASTMATH_H
#define KF_FASTMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define KF_LN2 0.693147182f           /* ln 2 rounded to fp32 */
#define KF_LN2_HI 0.693145752f      /* 0x3f317200: few bits, n*hi exact */
#define KF_LN2_LO 1.42860677e-06f   /* ln 2 - KF_LN2_HI */
#define KF_LOG2E 1.44269504f
#define KF_ROUND_MAGIC 12582912.0f  /* 1.5 * 2^23: adds round to nearest */
#define KF_EXP_MIN -87.3365479f     /* ln(FLT_MIN) */

/* ln: x = 2^e * m with m in [1/2, 1): m is x's mantissa field under the
 * exponent of 1/2 and e its exponent plus one, from integer ops (AVX-512:
 * vgetmantps and vgetexpps). The top 4 bits of the mantissa field pick one
 * of 16 buckets of width 1/32, each with an fp32 factor f close to 1/c for
 * the bucket's middle c: ln m = -ln f + ln(1 + r), r = m * f - 1, |r| <=
 * 1/32. One fused multiply-add gives r with a single rounding, relative
 * to r itself, and the table holds -ln f of the rounded f, so f's own
 * rounding costs nothing. The last bucket, just below 1, has f = 1 (r =
 * m - 1 exactly), so ln stays relatively accurate as x approaches 1 from
 * below (-ln u for u near 1). Above 1 the error is absolute (the e * ln 2
 * term cancels), which is all the outer ln of the Gumbel sample needs. */
#define KF_LN_MBITS 0x3f000000u  /* exponent field of 1/2 */
#define KF_LN_EBIAS 126          /* e = exponent field - 126 */
#define KF_LN_BUCKET_SHIFT 19    /* 23 mantissa bits -> 16 buckets */

/* ln(1 + r) = r + r^2 * (-1/2 + r * (Q1 + r * Q2)), |r| <= 1/32 */
#define KF_LN_Q1 3.3349463344e-01f
#define KF_LN_Q2 -2.5016286969e-01f

/* f = 1/c rounded to fp32, c = 1/2 + (2b + 1)/64; the last one 1 */
static const float kf_ln_factor[16] = {
    0x1.f07c20p+0f, 0x1.d41d42p+0f, 0x1.bacf92p+0f, 0x1.a41a42p+0f,
    0x1.8f9c18p+0f, 0x1.7d05f4p+0f, 0x1.6c16c2p+0f, 0x1.5c9882p+0f,
    0x1.4e5e0ap+0f, 0x1.414142p+0f, 0x1.3521d0p+0f, 0x1.29e412p+0f,
    0x1.1f7048p+0f, 0x1.15b1e6p+0f, 0x1.0c9714p+0f, 0x1.000000p+0f,
};

/* -ln f of the fp32 f above, rounded to fp32 */
static const float kf_ln_neg_ln_factor[16] = {
    -6.623755693e-01f, -6.035350561e-01f, -5.479651690e-01f,
    -4.953214526e-01f, -4.453109801e-01f, -3.976829648e-01f,
    -3.522206247e-01f, -3.087354600e-01f, -2.670627534e-01f,
    -2.270574868e-01f, -1.885911822e-01f, -1.515498608e-01f,
    -1.158318222e-01f, -8.134564012e-02f, -4.800916463e-02f,
    0.000000000e+00f,
};

/* e^r = 1 + (r + r^2 * Q(r)), r in [-ln2/2, ln2/2] */
#define KF_EXP_Q0 5.000000000e-01f
#define KF_EXP_Q1 1.666657776e-01f
#define KF_EXP_Q2 4.166689888e-02f
#define KF_EXP_Q3 8.363133296e-03f
#define KF_EXP_Q4 1.389755751e-03f

static inline uint32_t kf_f32_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static inline float kf_bits_f32(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* ln x for positive normal x */
static inline float kf_ln_f32(float x)
{
    uint32_t bits = kf_f32_bits(x);
    float e = (float)((int32_t)(bits >> 23) - KF_LN_EBIAS);
    float m = kf_bits_f32((bits & 0x007fffffu) | KF_LN_MBITS);
    uint32_t b = (bits >> KF_LN_BUCKET_SHIFT) & 15u;
    float r = fmaf(m, kf_ln_factor[b], -1.0f);
    float q = fmaf(KF_LN_Q2, r, KF_LN_Q1);
    q = fmaf(q, r, -0.5f);
    float p = fmaf(r * r, q, r);
    return fmaf(e, KF_LN2, kf_ln_neg_ln_factor[b] + p);
}

static inline float kf_exp_f32(float x)
{
    if (!(x >= KF_EXP_MIN))
        return 0.0f;
    float n = fmaf(x, KF_LOG2E, KF_ROUND_MAGIC) - KF_ROUND_MAGIC;
    float r = fmaf(-n, KF_LN2_HI, x);
    r = fmaf(-n, KF_LN2_LO, r);
    float q = fmaf(KF_EXP_Q4, r, KF_EXP_Q3);
    q = fmaf(q, r, KF_EXP_Q2);
    q = fmaf(q, r, KF_EXP_Q1);
    q = fmaf(q, r, KF_EXP_Q0);
    float er = 1.0f + fmaf(r * r, q, r);
    /* n in [-126, 0]: 2^n is a normal float */
    float scale = kf_bits_f32((uint32_t)((int32_t)n + 127) << 23);
    return er * scale;
}

#endif
