/* The library's own ln and exp. Every kernel variant (C, AVX2, AVX-512,
 * NEON) performs exactly these fp32 operations in this order, without
 * fused multiply-adds, so all variants return bit-identical results and
 * selections never depend on the instruction set.
 *
 * Accuracy, from an exhaustive sweep of every fp32 input against libm in
 * double precision (tests/test_gumbel.c checks a sample):
 *   kf_ln_f32:  positive normal x; error <= 2.3e-7 relative where
 *               |ln x| > 1e-3, <= 6e-11 absolute elsewhere. The Gumbel
 *               sample -ln(-ln u) built on it is within 1.1e-6 of the
 *               exact value for every one of the 2^23 possible u.
 *   kf_exp_f32: x <= 0; error <= 8.9e-8 relative, final rounding included,
 *               for results >= FLT_MIN; x < -87.336 and -inf return
 *               exactly 0.
 * Coefficients and tables: near-minimax fits (Lawson iteration) made for
 * this library; ln is table-driven (16 buckets, a degree-4 polynomial)
 * because the Gumbel noise takes two ln per logit, the kernels' main cost.
 */
#ifndef KF_FASTMATH_H
#define KF_FASTMATH_H

#include <stdint.h>
#include <string.h>

#define KF_LN2 0.693147182f           /* ln 2 rounded to fp32 */
#define KF_LN2_HI 0.693145752f      /* 0x3f317200: few bits, n*hi exact */
#define KF_LN2_LO 1.42860677e-06f   /* ln 2 - KF_LN2_HI */
#define KF_LOG2E 1.44269504f
#define KF_ROUND_MAGIC 12582912.0f  /* 1.5 * 2^23: adds round to nearest */
#define KF_EXP_MIN -87.3365479f     /* ln(FLT_MIN) */

/* ln: x = 2^e * m, m in [sqrt(1/2), sqrt(2)). Adding KF_LN_CARRY to the
 * bits carries into the exponent field exactly when the mantissa field is
 * above that of sqrt(2) (0x3504f3), so e and the halved m come out of
 * integer ops. The top 4 bits of the carried mantissa field pick one of 16
 * buckets with a centre c (an fp32 value): ln m = ln c + ln(1 + r),
 * r = (m - c) * (1/c), |r| <= 0.04. m - c is exact (Sterbenz), so r has
 * the relative accuracy of one rounding and ln stays accurate next to 1
 * (the bucket holding 1 has c = 1). */
#define KF_LN_CARRY 0x004afb0cu  /* 0x800000 - 0x3504f4 */
#define KF_LN_MBASE 0x3f3504f4u  /* 0x3f800000 - KF_LN_CARRY */
#define KF_LN_BUCKET_SHIFT 19    /* 23 mantissa bits -> 16 buckets */

/* ln(1 + r) = r + r^2 * (-1/2 + r * (Q1 + r * Q2)), |r| <= 0.04 */
#define KF_LN_Q1 3.335036635e-01f
#define KF_LN_Q2 -2.475478351e-01f

static const float kf_ln_centre[16] = {
    0x1.7209e8p-1f, 0x1.8209e8p-1f, 0x1.9209e8p-1f, 0x1.a209e8p-1f,
    0x1.b209e8p-1f, 0x1.c209e8p-1f, 0x1.d209e8p-1f, 0x1.e209e8p-1f,
    0x1.f209e8p-1f, 0x1.000000p+0f, 0x1.1209e8p+0f, 0x1.2209e8p+0f,
    0x1.3209e8p+0f, 0x1.4209e8p+0f, 0x1.5209e8p+0f, 0x1.6209e8p+0f,
};

/* 1/c rounded to fp32 */
static const float kf_ln_inv_centre[16] = {
    0x1.62362cp+0f, 0x1.5387dep+0f, 0x1.4604b4p+0f, 0x1.398a54p+0f,
    0x1.2dfb78p+0f, 0x1.233efep+0f, 0x1.193f3ep+0f, 0x1.0fe96ap+0f,
    0x1.072d24p+0f, 0x1.000000p+0f, 0x1.de4c24p-1f, 0x1.c3e980p-1f,
    0x1.ac4924p-1f, 0x1.9701cap-1f, 0x1.83be1ap-1f, 0x1.72382cp-1f,
};

/* ln c rounded to fp32 */
static const float kf_ln_ln_centre[16] = {
    -3.247170448e-01f, -2.823870182e-01f, -2.417762876e-01f,
    -2.027506232e-01f, -1.651909351e-01f, -1.289910525e-01f,
    -9.405595809e-02f, -6.030023098e-02f, -2.764684707e-02f,
    0.000000000e+00f, 6.809187680e-02f, 1.248369068e-01f,
    1.785341054e-01f, 2.294942737e-01f, 2.779829204e-01f,
    3.242287636e-01f,
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

static inline float kf_ln_f32(float x)
{
    uint32_t ix = kf_f32_bits(x) + KF_LN_CARRY;
    float e = (float)((int32_t)(ix >> 23) - 127);
    uint32_t field = ix & 0x007fffffu;
    float m = kf_bits_f32(field + KF_LN_MBASE);
    uint32_t b = field >> KF_LN_BUCKET_SHIFT;
    float r = (m - kf_ln_centre[b]) * kf_ln_inv_centre[b];
    float q = KF_LN_Q2 * r + KF_LN_Q1;
    q = q * r + -0.5f;
    float p = r + (r * r) * q;
    return e * KF_LN2 + (kf_ln_ln_centre[b] + p);
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
