/* The library's own ln and exp. Every kernel variant (C, AVX2, AVX-512,
 * NEON) performs exactly these fp32 operations in this order, without
 * fused multiply-adds, so all variants return bit-identical results and
 * selections never depend on the instruction set.
 *
 * Accuracy, from an exhaustive sweep of every fp32 input against libm in
 * double precision (tests/test_gumbel.c checks a sample):
 *   kf_ln_f32:  positive normal x; error <= 1.9e-7 relative where
 *               |ln x| > 1e-3, <= 1e-10 absolute elsewhere.
 *   kf_exp_f32: x <= 0; error <= 8.9e-8 relative, final rounding included,
 *               for results >= FLT_MIN; x < -87.336 and -inf return
 *               exactly 0.
 * Coefficients: near-minimax fits (Lawson iteration) made for this library.
 */
#ifndef KF_FASTMATH_H
#define KF_FASTMATH_H

#include <stdint.h>
#include <string.h>

#define KF_LN_SQRT2 1.41421356f
#define KF_LN2_HI 0.693145752f      /* 0x3f317200: few bits, n*hi exact */
#define KF_LN2_LO 1.42860677e-06f   /* ln 2 - KF_LN2_HI */
#define KF_LOG2E 1.44269504f
#define KF_ROUND_MAGIC 12582912.0f  /* 1.5 * 2^23: adds round to nearest */
#define KF_EXP_MIN -87.3365479f     /* ln(FLT_MIN) */

/* ln(1 + f) = f - f^2/2 + f^3 * P(f), f in [sqrt(1/2) - 1, sqrt(2) - 1] */
#define KF_LN_P0 3.333341479e-01f
#define KF_LN_P1 -2.500067055e-01f
#define KF_LN_P2 1.998409480e-01f
#define KF_LN_P3 -1.660420597e-01f
#define KF_LN_P4 1.470793486e-01f
#define KF_LN_P5 -1.401769668e-01f
#define KF_LN_P6 9.015525132e-02f

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

static inline float kf_ln_f32(float x)
{
    uint32_t bits = kf_f32_bits(x);
    float e = (float)((int32_t)(bits >> 23) - 127);
    float m = kf_bits_f32((bits & 0x007fffffu) | 0x3f800000u); /* [1, 2) */
    if (m > KF_LN_SQRT2) {
        m = m * 0.5f;
        e = e + 1.0f;
    }
    float f = m - 1.0f; /* exact (Sterbenz) */
    float p = KF_LN_P6;
    p = p * f + KF_LN_P5;
    p = p * f + KF_LN_P4;
    p = p * f + KF_LN_P3;
    p = p * f + KF_LN_P2;
    p = p * f + KF_LN_P1;
    p = p * f + KF_LN_P0;
    float f2 = f * f;
    float lnm = f + (-0.5f * f2 + (f2 * f) * p);
    return e * KF_LN2_HI + (e * KF_LN2_LO + lnm);
}

static inline float kf_exp_f32(float x)
{
    if (!(x >= KF_EXP_MIN))
        return 0.0f;
    float n = (x * KF_LOG2E + KF_ROUND_MAGIC) - KF_ROUND_MAGIC;
    float r = (x - n * KF_LN2_HI) - n * KF_LN2_LO;
    float q = KF_EXP_Q4;
    q = q * r + KF_EXP_Q3;
    q = q * r + KF_EXP_Q2;
    q = q * r + KF_EXP_Q1;
    q = q * r + KF_EXP_Q0;
    float er = 1.0f + (r + (r * r) * q);
    /* n in [-126, 0]: 2^n is a normal float */
    float scale = kf_bits_f32((uint32_t)((int32_t)n + 127) << 23);
    return er * scale;
}

#endif
