/* NEON score kernels: kf_score_gumbel, kf_score_table, kf_score_softmax
 * and the dot products of kf_observe_qk (kf_dot_rows), bit-identical to
 * lib/score_c.c. Each vector op below is one fp32 operation of
 * lib/fastmath.h or lib/rng.h, in the same order: a vfma exactly where
 * the C code calls fmaf, and no other fusion (built with
 * -ffp-contract=off). Four
 * q registers hold the 16 partial row sums (lanes 0-3, 4-7, 8-11, 12-15),
 * so element j lands in lane j % 16 exactly as in the C code. A tail
 * shorter than a block goes through a padded copy; its padding lanes are
 * masked off and never touch a sum. */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "dsp.h"
#include "fastmath.h"

#define VL 4

static float32x4_t splat(float x)
{
    return vdupq_n_f32(x);
}

/* The math below runs on U vectors in lockstep: each element's ln/exp is a
 * long dependent chain (Horner steps), so the CPU only stays busy when
 * several independent chains are interleaved in program order. U is a
 * multiple of 4, so vector k of a block always adds to partial sums
 * 4 * (k % 4) .. 4 * (k % 4) + 3. */
#define U 8
#define BLOCK (U * VL)
#define INLINE static inline __attribute__((always_inline))
#define EACH(k) for (int k = 0; k < U; k++)

/* kf_hash32 */
INLINE void hash32(uint32x4_t x[U])
{
    EACH(k) x[k] = veorq_u32(x[k], vshrq_n_u32(x[k], 16));
    EACH(k) x[k] = vmulq_u32(x[k], vdupq_n_u32(0x21f0aaadu));
    EACH(k) x[k] = veorq_u32(x[k], vshrq_n_u32(x[k], 15));
    EACH(k) x[k] = vmulq_u32(x[k], vdupq_n_u32(0x735a2d97u));
    EACH(k) x[k] = veorq_u32(x[k], vshrq_n_u32(x[k], 15));
}

/* A 16-entry float table in four q registers, for vqtbl4q_u8; negated
 * once here when `negate`, not per lookup. */
static uint8x16x4_t table16(const float *table, int negate)
{
    uint8x16x4_t t;
    for (int i = 0; i < 4; i++) {
        float32x4_t v = vld1q_f32(table + 4 * i);
        t.val[i] = vreinterpretq_u8_f32(negate ? vnegq_f32(v) : v);
    }
    return t;
}

/* table[b] per lane: byte 4b + i of the table for byte i of the lane */
INLINE float32x4_t lookup16(uint8x16x4_t table, uint8x16_t byte_index)
{
    return vreinterpretq_f32_u8(vqtbl4q_u8(table, byte_index));
}

/* -kf_ln_f32(x * 2^-scale_log2) for positive normal x, in place; scaling
 * by a power of two only moves e. The C code returns fma(e, ln2,
 * -ln f + p) and then negates; rounding is symmetric, so
 * fma(-e, ln2, ln f - p) gives the same bits. */
INLINE void neg_ln_ps(float32x4_t x[U], int scale_log2)
{
    const uint8x16x4_t factor = table16(kf_ln_factor, 0);
    const uint8x16x4_t ln_factor = table16(kf_ln_neg_ln_factor, 1);
    const int32x4_t e_bias = vdupq_n_s32(KF_LN_EBIAS + scale_log2);
    float32x4_t e[U], r[U], q[U], lnf[U];
    EACH(k) {
        uint32x4_t bits = vreinterpretq_u32_f32(x[k]);
        e[k] = vcvtq_f32_s32(vsubq_s32(vreinterpretq_s32_u32(vshrq_n_u32(bits, 23)),
                                       e_bias));
        float32x4_t m = vreinterpretq_f32_u32(vorrq_u32(
            vandq_u32(bits, vdupq_n_u32(0x007fffffu)), vdupq_n_u32(KF_LN_MBITS)));
        uint32x4_t b = vandq_u32(vshrq_n_u32(bits, KF_LN_BUCKET_SHIFT), vdupq_n_u32(15));
        uint8x16_t bi = vreinterpretq_u8_u32(
            vmlaq_n_u32(vdupq_n_u32(0x03020100u), b, 0x04040404u));
        r[k] = vfmaq_f32(splat(-1.0f), m, lookup16(factor, bi));
        lnf[k] = lookup16(ln_factor, bi);
    }
    EACH(k) q[k] = vfmaq_f32(splat(KF_LN_Q1), splat(KF_LN_Q2), r[k]);
    EACH(k) q[k] = vfmaq_f32(splat(-0.5f), q[k], r[k]);
    EACH(k) {
        float32x4_t p = vfmaq_f32(r[k], vmulq_f32(r[k], r[k]), q[k]);
        x[k] = vfmsq_f32(vsubq_f32(lnf[k], p), e[k], splat(KF_LN2));
    }
}

/* kf_exp_f32, in place: 0 where !(x >= KF_EXP_MIN), NaN included. Where
 * x is in range, t = x * log2e + 1.5 * 2^23 holds n in its low mantissa
 * bits (n in [-126, 0]), so the bits of t give 2^n without a conversion:
 * (bits(t) - bits(1.5 * 2^23) + 127) << 23. */
#define EXP_BIAS (127u - 0x4b400000u)

INLINE void exp_ps(float32x4_t x[U])
{
    uint32x4_t ok[U];
    float32x4_t n[U], t[U], r[U], q[U];
    EACH(k) {
        ok[k] = vcgeq_f32(x[k], splat(KF_EXP_MIN));
        t[k] = vfmaq_f32(splat(KF_ROUND_MAGIC), x[k], splat(KF_LOG2E));
        n[k] = vsubq_f32(t[k], splat(KF_ROUND_MAGIC));
        r[k] = vfmsq_f32(vfmsq_f32(x[k], n[k], splat(KF_LN2_HI)), n[k], splat(KF_LN2_LO));
    }
    EACH(k) q[k] = vfmaq_f32(splat(KF_EXP_Q3), splat(KF_EXP_Q4), r[k]);
    EACH(k) q[k] = vfmaq_f32(splat(KF_EXP_Q2), q[k], r[k]);
    EACH(k) q[k] = vfmaq_f32(splat(KF_EXP_Q1), q[k], r[k]);
    EACH(k) q[k] = vfmaq_f32(splat(KF_EXP_Q0), q[k], r[k]);
    EACH(k) {
        float32x4_t er = vaddq_f32(splat(1.0f),
                                   vfmaq_f32(r[k], vmulq_f32(r[k], r[k]), q[k]));
        float32x4_t scale = vreinterpretq_f32_u32(vshlq_n_u32(
            vaddq_u32(vreinterpretq_u32_f32(t[k]), vdupq_n_u32(EXP_BIAS)), 23));
        x[k] = vreinterpretq_f32_u32(
            vandq_u32(vreinterpretq_u32_f32(vmulq_f32(er, scale)), ok[k]));
    }
}

/* kf_gumbel_f32 of U vectors of key positions: u = v * 2^-24 with
 * v = (bits >> 8) | 1 exact in fp32, so -ln u is -ln v scaled by 2^-24 */
INLINE void gumbel_ps(float32x4_t g[U], const int32_t *pos, uint32x4_t salt)
{
    uint32x4_t h[U];
    EACH(k) h[k] = veorq_u32(vreinterpretq_u32_s32(vld1q_s32(pos + k * VL)), salt);
    hash32(h);
    EACH(k) g[k] = vcvtq_f32_s32(vreinterpretq_s32_u32(
        vorrq_u32(vshrq_n_u32(h[k], 8), vdupq_n_u32(1))));
    neg_ln_ps(g, 24);
    neg_ln_ps(g, 0);
}

/* The table's noise (kf_score_table) of U vectors of key positions: the
 * hash, then the entries the top KF_GUMBEL_TABLE_BITS bits pick, loaded
 * lane by lane (NEON has no gather; a lookup is exact either way). */
INLINE void table_noise_ps(float32x4_t g[U], const int32_t *pos, uint32x4_t salt,
                           const float *table)
{
    uint32x4_t h[U];
    uint32_t index[BLOCK];
    float noise[BLOCK];
    EACH(k) h[k] = veorq_u32(vreinterpretq_u32_s32(vld1q_s32(pos + k * VL)), salt);
    hash32(h);
    EACH(k) vst1q_u32(index + k * VL, vshrq_n_u32(h[k], KF_GUMBEL_TABLE_SHIFT));
    for (int i = 0; i < BLOCK; i++)
        noise[i] = table[index[i]];
    EACH(k) g[k] = vld1q_f32(noise + k * VL);
}

/* NaN or +inf lanes */
static uint32x4_t bad_lanes(float32x4_t x)
{
    return vmvnq_u32(vcltq_f32(x, splat(INFINITY))); /* !(x < inf) */
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

/* One block of BLOCK elements: e = e^((src - max) * inv_tau) into dst and
 * the partial sums; only the first `valid` elements count. */
/* dst = e (a block) and the partial sums of its first `valid` elements */
INLINE void store_and_sum(float *dst, float32x4_t e[U], uint32_t valid,
                          float32x4_t sum[4])
{
    EACH(k) {
        vst1q_f32(dst + k * VL, e[k]);
        if (valid < BLOCK) {
            uint32_t left = valid > (uint32_t)k * VL ? valid - (uint32_t)k * VL : 0;
            e[k] = vreinterpretq_f32_u32(
                vandq_u32(vreinterpretq_u32_f32(e[k]), lane_mask(left)));
        }
        sum[k % 4] = vaddq_f32(sum[k % 4], e[k]);
    }
}

INLINE void exp_block(const float *src, float *dst, uint32_t valid,
                      float32x4_t vmax, float32x4_t vinv, float32x4_t sum[4])
{
    float32x4_t e[U];
    EACH(k) e[k] = vmulq_f32(vsubq_f32(vld1q_f32(src + k * VL), vmax), vinv);
    exp_ps(e);
    store_and_sum(dst, e, valid, sum);
}

/* acc[j] += e_r[j] * (1 / sum_r) for rows r in order, e_r = scratch +
 * r * n, sum_r the 16 lanes of sum[r]: one fused multiply-add per row, as
 * `rows` one-row updates. */
static void add_normalised(float *acc, const float *scratch, uint32_t n,
                           uint32_t rows, float32x4_t (*sum)[4])
{
    float inv_sum[KF_SCORE_ROWS_MAX];
    for (uint32_t r = 0; r < rows; r++)
        inv_sum[r] = 1.0f / fold16(sum[r]);
    uint32_t j = 0;
    for (; j + VL <= n; j += VL) {
        float32x4_t a = vld1q_f32(acc + j);
        for (uint32_t r = 0; r < rows; r++)
            a = vfmaq_f32(a, vld1q_f32(scratch + r * n + j), splat(inv_sum[r]));
        vst1q_f32(acc + j, a);
    }
    for (; j < n; j++) {
        float a = acc[j];
        for (uint32_t r = 0; r < rows; r++)
            a = fmaf(scratch[r * n + j], inv_sum[r], a);
        acc[j] = a;
    }
}

/* The maximum of x[0..n) into *max, with the NaN / +inf check of x;
 * with noise (not NULL), of t = x + noise, stored back into noise. */
static int row_max(const float *x, float *noise, uint32_t n, float *max)
{
    float32x4_t vmax = splat(-INFINITY);
    uint32x4_t bad = vdupq_n_u32(0);
    uint32_t j = 0;
    for (; j + VL <= n; j += VL) {
        if (j % 16 == 0) /* one prefetch per 64-byte line */
            __builtin_prefetch(x + j + KF_PREFETCH_AHEAD);
        float32x4_t t = vld1q_f32(x + j);
        bad = vorrq_u32(bad, bad_lanes(t));
        if (noise) {
            t = vaddq_f32(t, vld1q_f32(noise + j));
            vst1q_f32(noise + j, t);
        }
        vmax = vbslq_f32(vcgtq_f32(t, vmax), t, vmax);
    }
    float m = max_of(vmax);
    int bad_tail = 0;
    for (; j < n; j++) {
        float t = x[j];
        bad_tail |= (t != t) | (t == INFINITY);
        if (noise)
            t = noise[j] = t + noise[j];
        m = t > m ? t : m;
    }
    if (any(bad) || bad_tail)
        return KF_ROW_NAN;
    *max = m;
    return m == -INFINITY ? KF_ROW_EMPTY : KF_ROW_OK;
}

/* scratch[j] = e^((src[j] - max) * inv_tau) (src may be scratch),
 * summed into sum. A tail shorter than a block goes through a
 * zero-padded copy. */
static void exp_pass(float *scratch, const float *src, uint32_t n, float max,
                     float inv_tau, float32x4_t sum[4])
{
    float32x4_t vmax = splat(max), vinv = splat(inv_tau);
    uint32_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK)
        exp_block(src + j, scratch + j, BLOCK, vmax, vinv, sum);
    if (j < n) {
        float in[BLOCK], out[BLOCK];
        uint32_t left = n - j;
        memcpy(in, src + j, left * sizeof *in);
        memset(in + left, 0, (BLOCK - left) * sizeof *in);
        exp_block(in, out, left, vmax, vinv, sum);
        memcpy(scratch + j, out, left * sizeof *out);
    }
}

/* tau = 1 (see lib/score_c.c): one block of BLOCK elements,
 * dst = e^(x - max) / E and the partial sums; only the first `valid`
 * elements count. */
INLINE void unit_tau_block(const float *x, const int32_t *pos, float *dst,
                           uint32_t valid, float32x4_t vmax, uint32x4_t salt,
                           float32x4_t sum[4])
{
    uint32x4_t h[U];
    float32x4_t big_e[U], e[U];
    EACH(k) h[k] = veorq_u32(vreinterpretq_u32_s32(vld1q_s32(pos + k * VL)), salt);
    hash32(h);
    EACH(k) big_e[k] = vcvtq_f32_s32(vreinterpretq_s32_u32(
        vorrq_u32(vshrq_n_u32(h[k], 8), vdupq_n_u32(1))));
    neg_ln_ps(big_e, 24);
    EACH(k) e[k] = vsubq_f32(vld1q_f32(x + k * VL), vmax);
    exp_ps(e);
    EACH(k) e[k] = vdivq_f32(e[k], big_e[k]);
    store_and_sum(dst, e, valid, sum);
}

static void unit_tau_pass(float *scratch, const float *x, const int32_t *pos,
                          uint32_t n, uint32x4_t salt, float max,
                          float32x4_t sum[4], const float *pf)
{
    float32x4_t vmax = splat(max);
    uint32_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK) {
        if (pf) /* the same block of the next row: two 64-byte lines */
            for (int k = 0; k < BLOCK; k += 16)
                __builtin_prefetch(pf + j + k);
        unit_tau_block(x + j, pos + j, scratch + j, BLOCK, vmax, salt, sum);
    }
    if (j < n) { /* zero-padded copies */
        float in[BLOCK], out[BLOCK];
        int32_t pt[BLOCK];
        uint32_t left = n - j;
        memcpy(in, x + j, left * sizeof *in);
        memset(in + left, 0, (BLOCK - left) * sizeof *in);
        memcpy(pt, pos + j, left * sizeof *pt);
        memset(pt + left, 0, (BLOCK - left) * sizeof *pt);
        unit_tau_block(in, pt, out, left, vmax, salt, sum);
        memcpy(scratch + j, out, left * sizeof *out);
    }
}

/* U vectors of noise: the exact Gumbel sample (table NULL) or the
 * table's. */
INLINE void noise_ps(float32x4_t g[U], const int32_t *pos, uint32x4_t salt,
                     const float *table)
{
    if (table)
        table_noise_ps(g, pos, salt, table);
    else
        gumbel_ps(g, pos, salt);
}

/* scratch[j] = x[j] + noise(salt, pos[j]) and its maximum: the noise
 * alone first (the heavy part), then the sum with the NaN checks. */
static int noised_max(float *scratch, const float *x, const int32_t *pos,
                      uint32_t n, uint32x4_t salt, const float *table,
                      float *max)
{
    uint32_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK) {
        float32x4_t g[U];
        noise_ps(g, pos + j, salt, table);
        EACH(k) vst1q_f32(scratch + j + k * VL, g[k]);
    }
    if (j < n) {
        int32_t pt[BLOCK];
        float gt[BLOCK];
        uint32_t left = n - j;
        memcpy(pt, pos + j, left * sizeof *pt);
        memset(pt + left, 0, (BLOCK - left) * sizeof *pt);
        float32x4_t g[U];
        noise_ps(g, pt, salt, table);
        EACH(k) vst1q_f32(gt + k * VL, g[k]);
        memcpy(scratch + j, gt, left * sizeof *gt);
    }
    return row_max(x, scratch, n, max);
}

/* Each pass runs over all rows before the next starts, so one row's
 * pass hides the latency of another's reductions. */
KF_SCORE_GUMBEL_FN(kf_score_gumbel_neon)
{
    float max[KF_SCORE_ROWS_MAX];
    float32x4_t sum[KF_SCORE_ROWS_MAX][4];
    int unit_tau = inv_tau == 1.0f;
    for (uint32_t r = 0; r < rows; r++) {
        const float *xr = x + r * x_stride;
        int status = unit_tau ? row_max(xr, NULL, n, &max[r])
                              : noised_max(scratch + r * n, xr, pos, n,
                                           vdupq_n_u32(keys[r].salt), NULL,
                                           &max[r]);
        if (status) {
            *failed_row = r;
            return status;
        }
    }
    for (uint32_t r = 0; r < rows; r++) {
        for (int i = 0; i < 4; i++)
            sum[r][i] = splat(0.0f);
        if (unit_tau)
            unit_tau_pass(scratch + r * n, x + r * x_stride, pos, n,
                          vdupq_n_u32(keys[r].salt), max[r], sum[r],
                          r + 1 == rows ? next : NULL);
        else
            exp_pass(scratch + r * n, scratch + r * n, n, max[r], inv_tau,
                     sum[r]);
    }
    add_normalised(acc, scratch, n, rows, sum);
    return KF_ROW_OK;
}

/* kf_score_table's one pass (see lib/score_c.c), split in two as in
 * simd/x86: scratch = x + noise (a tail shorter than a block through a
 * zero-padded copy of the positions, added in scalar: the same IEEE
 * add), then exp_pass with the shift for the maximum, (t - shift) *
 * inv_tau, the same operations. */
static void table_pass(float *scratch, const float *x, const int32_t *pos,
                       uint32_t n, uint32x4_t salt, const float *table,
                       float shift, float inv_tau, float32x4_t sum[4])
{
    uint32_t j = 0;
    for (; j + BLOCK <= n; j += BLOCK) {
        float32x4_t g[U];
        __builtin_prefetch(x + j + KF_PREFETCH_AHEAD);
        __builtin_prefetch(x + j + KF_PREFETCH_AHEAD + 16);
        table_noise_ps(g, pos + j, salt, table);
        EACH(k) vst1q_f32(scratch + j + k * VL,
                          vaddq_f32(vld1q_f32(x + j + k * VL), g[k]));
    }
    if (j < n) {
        int32_t pt[BLOCK];
        float gt[BLOCK];
        uint32_t left = n - j;
        memcpy(pt, pos + j, left * sizeof *pt);
        memset(pt + left, 0, (BLOCK - left) * sizeof *pt);
        float32x4_t g[U];
        table_noise_ps(g, pt, salt, table);
        EACH(k) vst1q_f32(gt + k * VL, g[k]);
        for (uint32_t i = 0; i < left; i++)
            scratch[j + i] = x[j + i] + gt[i];
    }
    exp_pass(scratch, scratch, n, shift, inv_tau, sum);
}

/* kf_score_table: the maximum of x, then the noise and the exp pass
 * shifted by max x + the largest noise; or, for inv_tau above
 * KF_TABLE_ONE_PASS_INV_TAU, the noise pass with the table's maximum and
 * the general path's exp pass. Then the update. */
KF_SCORE_TABLE_FN(kf_score_table_neon)
{
    (void)next; /* a prefetch hint */
    float max[KF_SCORE_ROWS_MAX];
    float32x4_t sum[KF_SCORE_ROWS_MAX][4];
    int one_pass = inv_tau <= KF_TABLE_ONE_PASS_INV_TAU;
    for (uint32_t r = 0; r < rows; r++) {
        const float *xr = x + r * x_stride;
        int status = one_pass ? row_max(xr, NULL, n, &max[r])
                              : noised_max(scratch + r * n, xr, pos, n,
                                           vdupq_n_u32(keys[r].salt), table,
                                           &max[r]);
        if (status) {
            *failed_row = r;
            return status;
        }
    }
    for (uint32_t r = 0; r < rows; r++) {
        for (int i = 0; i < 4; i++)
            sum[r][i] = splat(0.0f);
        if (one_pass)
            table_pass(scratch + r * n, x + r * x_stride, pos, n,
                       vdupq_n_u32(keys[r].salt), table,
                       max[r] + table[KF_GUMBEL_TABLE_SIZE - 1], inv_tau, sum[r]);
        else
            exp_pass(scratch + r * n, scratch + r * n, n, max[r], inv_tau,
                     sum[r]);
    }
    add_normalised(acc, scratch, n, rows, sum);
    return KF_ROW_OK;
}

KF_SCORE_SOFTMAX_FN(kf_score_softmax_neon)
{
    float max;
    int status = row_max(x, NULL, n, &max);
    if (status)
        return status;
    /* the C code copies x to scratch first; reading x is the same */
    float32x4_t sum[1][4] = { { splat(0.0f), splat(0.0f), splat(0.0f),
                                splat(0.0f) } };
    exp_pass(scratch, x, n, max, 1.0f, sum[0]);
    add_normalised(acc, scratch, n, 1, sum);
    return KF_ROW_OK;
}

/* kf_dot_rows: four q registers per key row hold the 16 partial sums
 * (lanes 0-3, 4-7, 8-11, 12-15 of each block of 16 elements); a short last
 * block goes through zero-padded copies (+0 added to a lane that is never
 * -0 changes nothing). */
static void dot_block(float32x4_t s[4], const float *q, const float *k)
{
    for (int i = 0; i < 4; i++)
        s[i] = vaddq_f32(s[i], vmulq_f32(vld1q_f32(q + 4 * i), vld1q_f32(k + 4 * i)));
}

KF_DOT_ROWS_FN(kf_dot_rows_neon)
{
    uint32_t full = dim - dim % 16, rem = dim - full;
    float q_tail[16] = { 0 }, k_tail[16] = { 0 };
    memcpy(q_tail, q + full, rem * sizeof *q_tail);
    for (uint32_t t = 0; t < n; t++) {
        const float *row = k + t * k_stride;
        float32x4_t s[4] = { splat(0.0f), splat(0.0f), splat(0.0f), splat(0.0f) };
        for (uint32_t e = 0; e < full; e += 16)
            dot_block(s, q + e, row + e);
        if (rem) {
            memcpy(k_tail, row + full, rem * sizeof *k_tail);
            dot_block(s, q_tail, k_tail);
        }
        out[t] = fold16(s) * scale;
    }
}
