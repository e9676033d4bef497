/* NEON score kernels: kf_score_gumbel and kf_score_softmax, bit-identical
 * to lib/score_c.c. Each vector op below is one fp32 operation of
 * lib/fastmath.h or lib/rng.h, in the same order, with no fused
 * multiply-add (built with -ffp-contract=off; vfma is never called). Four
 * q registers hold the 16 partial row sums (lanes 0-3, 4-7, 8-11, 12-15),
 * so element j lands in lane j % 16 exactly as in the C code. A tail of
 * fewer than 16 elements goes through a padded copy; its padding lanes are
 * masked off and never touch a sum. */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "dsp.h"
#include "fastmath.h"

#define VL 4
#define BLOCK 16

static float32x4_t splat(float x)
{
    return vdupq_n_f32(x);
}

/* kf_hash32 on 4 lanes */
static uint32x4_t hash32(uint32x4_t x)
{
    x = veorq_u32(x, vshrq_n_u32(x, 16));
    x = vmulq_u32(x, vdupq_n_u32(0x21f0aaadu));
    x = veorq_u32(x, vshrq_n_u32(x, 15));
    x = vmulq_u32(x, vdupq_n_u32(0x735a2d97u));
    x = veorq_u32(x, vshrq_n_u32(x, 15));
    return x;
}

/* kf_ln_f32 on 4 lanes (positive normal inputs) */
static float32x4_t ln_ps(float32x4_t x)
{
    uint32x4_t bits = vreinterpretq_u32_f32(x);
    float32x4_t e = vcvtq_f32_s32(vsubq_s32(
        vreinterpretq_s32_u32(vshrq_n_u32(bits, 23)), vdupq_n_s32(127)));
    float32x4_t m = vreinterpretq_f32_u32(vorrq_u32(
        vandq_u32(bits, vdupq_n_u32(0x007fffffu)), vdupq_n_u32(0x3f800000u)));
    uint32x4_t big = vcgtq_f32(m, splat(KF_LN_SQRT2));
    m = vbslq_f32(big, vmulq_f32(m, splat(0.5f)), m);
    e = vbslq_f32(big, vaddq_f32(e, splat(1.0f)), e);
    float32x4_t f = vsubq_f32(m, splat(1.0f));
    float32x4_t p = splat(KF_LN_P6);
    p = vaddq_f32(vmulq_f32(p, f), splat(KF_LN_P5));
    p = vaddq_f32(vmulq_f32(p, f), splat(KF_LN_P4));
    p = vaddq_f32(vmulq_f32(p, f), splat(KF_LN_P3));
    p = vaddq_f32(vmulq_f32(p, f), splat(KF_LN_P2));
    p = vaddq_f32(vmulq_f32(p, f), splat(KF_LN_P1));
    p = vaddq_f32(vmulq_f32(p, f), splat(KF_LN_P0));
    float32x4_t f2 = vmulq_f32(f, f);
    float32x4_t lnm = vaddq_f32(
        f, vaddq_f32(vmulq_f32(splat(-0.5f), f2), vmulq_f32(vmulq_f32(f2, f), p)));
    return vaddq_f32(vmulq_f32(e, splat(KF_LN2_HI)),
                     vaddq_f32(vmulq_f32(e, splat(KF_LN2_LO)), lnm));
}

/* kf_exp_f32 on 4 lanes: 0 where !(x >= KF_EXP_MIN), NaN included */
static float32x4_t exp_ps(float32x4_t x)
{
    uint32x4_t ok = vcgeq_f32(x, splat(KF_EXP_MIN));
    float32x4_t n = vsubq_f32(
        vaddq_f32(vmulq_f32(x, splat(KF_LOG2E)), splat(KF_ROUND_MAGIC)),
        splat(KF_ROUND_MAGIC));
    float32x4_t r = vsubq_f32(vsubq_f32(x, vmulq_f32(n, splat(KF_LN2_HI))),
                              vmulq_f32(n, splat(KF_LN2_LO)));
    float32x4_t q = splat(KF_EXP_Q4);
    q = vaddq_f32(vmulq_f32(q, r), splat(KF_EXP_Q3));
    q = vaddq_f32(vmulq_f32(q, r), splat(KF_EXP_Q2));
    q = vaddq_f32(vmulq_f32(q, r), splat(KF_EXP_Q1));
    q = vaddq_f32(vmulq_f32(q, r), splat(KF_EXP_Q0));
    float32x4_t er =
        vaddq_f32(splat(1.0f), vaddq_f32(r, vmulq_f32(vmulq_f32(r, r), q)));
    int32x4_t ni = vcvtq_s32_f32(n); /* toward zero, as the C cast */
    float32x4_t scale = vreinterpretq_f32_s32(
        vshlq_n_s32(vaddq_s32(ni, vdupq_n_s32(127)), 23));
    return vreinterpretq_f32_u32(
        vandq_u32(vreinterpretq_u32_f32(vmulq_f32(er, scale)), ok));
}

/* kf_gumbel_f32 on 4 lanes of key positions */
static float32x4_t gumbel_ps(int32x4_t pos, uint32x4_t key_lo, uint32x4_t key_hi)
{
    uint32x4_t h = hash32(veorq_u32(vreinterpretq_u32_s32(pos), key_lo));
    h = hash32(vaddq_u32(h, key_hi));
    uint32x4_t m = vorrq_u32(vshrq_n_u32(h, 8), vdupq_n_u32(1));
    float32x4_t u = vmulq_f32(vcvtq_f32_s32(vreinterpretq_s32_u32(m)),
                              splat(0x1p-24f));
    return vnegq_f32(ln_ps(vnegq_f32(ln_ps(u))));
}

/* NaN or +inf lanes */
static uint32x4_t bad_lanes(float32x4_t x)
{
    return vorrq_u32(vmvnq_u32(vceqq_f32(x, x)), vceqq_f32(x, splat(INFINITY)));
}

/* all-ones in lanes l < left (left may exceed 4) */
static uint32x4_t lane_mask(uint32_t left)
{
    static const uint32_t lane[4] = { 0, 1, 2, 3 };
    return vcltq_u32(vld1q_u32(lane), vdupq_n_u32(left));
}

/* the C fold of 16 partial sums: l < 8 += l + 8, then 4, 2, 1 */
static float fold16(const float32x4_t s[4])
{
    float32x4_t s8a = vaddq_f32(s[0], s[2]);
    float32x4_t s8b = vaddq_f32(s[1], s[3]);
    float32x4_t s4 = vaddq_f32(s8a, s8b);
    float32x2_t s2 = vadd_f32(vget_low_f32(s4), vget_high_f32(s4));
    return vget_lane_f32(s2, 0) + vget_lane_f32(s2, 1);
}

/* Pass 1 over one block of 16: noised t = x + g into dst, NaN/+inf flags
 * and the running maximum; only the first `valid` lanes count. */
static void noise_block(const float *x, const int32_t *pos, float *dst,
                        uint32_t valid, uint32x4_t key_lo, uint32x4_t key_hi,
                        float32x4_t *vmax, uint32x4_t *bad)
{
    for (int q = 0; q < BLOCK / VL; q++) {
        uint32x4_t m = lane_mask(valid > (uint32_t)q * VL ? valid - q * VL : 0);
        float32x4_t xq = vld1q_f32(x + q * VL);
        *bad = vorrq_u32(*bad, vandq_u32(bad_lanes(xq), m));
        float32x4_t t = vaddq_f32(xq, gumbel_ps(vld1q_s32(pos + q * VL), key_lo, key_hi));
        vst1q_f32(dst + q * VL, t);
        t = vbslq_f32(m, t, splat(-INFINITY));
        *vmax = vbslq_f32(vcgtq_f32(t, *vmax), t, *vmax);
    }
}

static void max_block(const float *x, uint32_t valid, float32x4_t *vmax,
                      uint32x4_t *bad)
{
    for (int q = 0; q < BLOCK / VL; q++) {
        uint32x4_t m = lane_mask(valid > (uint32_t)q * VL ? valid - q * VL : 0);
        float32x4_t xq = vld1q_f32(x + q * VL);
        *bad = vorrq_u32(*bad, vandq_u32(bad_lanes(xq), m));
        xq = vbslq_f32(m, xq, splat(-INFINITY));
        *vmax = vbslq_f32(vcgtq_f32(xq, *vmax), xq, *vmax);
    }
}

static void exp_block(const float *src, float *dst, uint32_t valid,
                      float32x4_t vmax, float32x4_t vinv, float32x4_t sum[4])
{
    for (int q = 0; q < BLOCK / VL; q++) {
        uint32x4_t m = lane_mask(valid > (uint32_t)q * VL ? valid - q * VL : 0);
        float32x4_t t = vld1q_f32(src + q * VL);
        float32x4_t e = exp_ps(vmulq_f32(vsubq_f32(t, vmax), vinv));
        vst1q_f32(dst + q * VL, e);
        e = vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(e), m));
        sum[q] = vaddq_f32(sum[q], e);
    }
}

static float max_of(float32x4_t v)
{
    float l[4];
    vst1q_f32(l, v);
    float m = l[0];
    for (int i = 1; i < 4; i++)
        m = l[i] > m ? l[i] : m;
    return m;
}

static int any(uint32x4_t m)
{
    return vmaxvq_u32(m) != 0;
}

/* scratch[j] = e^((src[j] - max) * inv_tau); acc[j] += scratch[j] / sum */
static void normalise_into(float *acc, const float *src, float *scratch,
                           uint32_t n, float max, float inv_tau)
{
    float32x4_t vmax = splat(max), vinv = splat(inv_tau);
    float32x4_t sum[4] = { splat(0.0f), splat(0.0f), splat(0.0f), splat(0.0f) };
    uint32_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK)
        exp_block(src + j, scratch + j, BLOCK, vmax, vinv, sum);
    if (j < n) {
        float in[BLOCK], out[BLOCK];
        uint32_t left = n - j;
        memcpy(in, src + j, left * sizeof *in);
        for (uint32_t l = left; l < BLOCK; l++)
            in[l] = 0.0f;
        exp_block(in, out, left, vmax, vinv, sum);
        memcpy(scratch + j, out, left * sizeof *out);
    }
    float32x4_t inv_sum = splat(1.0f / fold16(sum));
    for (j = 0; j + VL <= n; j += VL)
        vst1q_f32(acc + j, vaddq_f32(vld1q_f32(acc + j),
                                     vmulq_f32(vld1q_f32(scratch + j), inv_sum)));
    float s = vgetq_lane_f32(inv_sum, 0);
    for (; j < n; j++)
        acc[j] = acc[j] + scratch[j] * s;
}

KF_SCORE_GUMBEL_FN(kf_score_gumbel_neon)
{
    uint32x4_t key_lo = vdupq_n_u32(key.lo), key_hi = vdupq_n_u32(key.hi);
    float32x4_t vmax = splat(-INFINITY);
    uint32x4_t bad = vdupq_n_u32(0);
    uint32_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK)
        noise_block(x + j, pos + j, scratch + j, BLOCK, key_lo, key_hi, &vmax, &bad);
    if (j < n) {
        float xt[BLOCK], tt[BLOCK];
        int32_t pt[BLOCK];
        uint32_t left = n - j;
        memcpy(xt, x + j, left * sizeof *xt);
        memcpy(pt, pos + j, left * sizeof *pt);
        for (uint32_t l = left; l < BLOCK; l++) {
            xt[l] = 0.0f;
            pt[l] = 0;
        }
        noise_block(xt, pt, tt, left, key_lo, key_hi, &vmax, &bad);
        memcpy(scratch + j, tt, left * sizeof *tt);
    }
    if (any(bad))
        return KF_ROW_NAN;
    float max = max_of(vmax);
    if (max == -INFINITY)
        return KF_ROW_EMPTY;
    normalise_into(acc, scratch, scratch, n, max, inv_tau);
    return KF_ROW_OK;
}

KF_SCORE_SOFTMAX_FN(kf_score_softmax_neon)
{
    float32x4_t vmax = splat(-INFINITY);
    uint32x4_t bad = vdupq_n_u32(0);
    uint32_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK)
        max_block(x + j, BLOCK, &vmax, &bad);
    if (j < n) {
        float xt[BLOCK];
        uint32_t left = n - j;
        memcpy(xt, x + j, left * sizeof *xt);
        for (uint32_t l = left; l < BLOCK; l++)
            xt[l] = 0.0f;
        max_block(xt, left, &vmax, &bad);
    }
    if (any(bad))
        return KF_ROW_NAN;
    float max = max_of(vmax);
    if (max == -INFINITY)
        return KF_ROW_EMPTY;
    /* the C code copies x to scratch first; reading x is the same */
    normalise_into(acc, x, scratch, n, max, 1.0f);
    return KF_ROW_OK;
}
