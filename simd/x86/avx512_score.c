/* AVX-512 score kernels: kf_score_gumbel and kf_score_softmax, bit-identical
 * to lib/score_c.c. Each vector op below is one fp32 operation of
 * lib/fastmath.h or lib/rng.h, in the same order, with no fused
 * multiply-add (this file is built with -ffp-contract=off). One zmm holds
 * the 16 partial row sums, so element j lands in lane j % 16 exactly as in
 * the C code; tail lanes are masked off and never touch a sum. */
#include <immintrin.h>
#include <math.h>

#include "dsp.h"
#include "fastmath.h"

#define VL 16

static __m512 splat(float x)
{
    return _mm512_set1_ps(x);
}

static __mmask16 tail_mask(uint32_t left)
{
    return left >= VL ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* kf_hash32 on 16 lanes */
static __m512i hash32(__m512i x)
{
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x21f0aaad));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x735a2d97));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
    return x;
}

/* kf_ln_f32 on 16 lanes (positive normal inputs) */
static __m512 ln_ps(__m512 x)
{
    __m512i bits = _mm512_castps_si512(x);
    __m512 e = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(bits, 23),
                                                   _mm512_set1_epi32(127)));
    __m512 m = _mm512_castsi512_ps(
        _mm512_or_si512(_mm512_and_si512(bits, _mm512_set1_epi32(0x007fffff)),
                        _mm512_set1_epi32(0x3f800000)));
    __mmask16 big = _mm512_cmp_ps_mask(m, splat(KF_LN_SQRT2), _CMP_GT_OQ);
    m = _mm512_mask_mul_ps(m, big, m, splat(0.5f));
    e = _mm512_mask_add_ps(e, big, e, splat(1.0f));
    __m512 f = _mm512_sub_ps(m, splat(1.0f));
    __m512 p = splat(KF_LN_P6);
    p = _mm512_add_ps(_mm512_mul_ps(p, f), splat(KF_LN_P5));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), splat(KF_LN_P4));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), splat(KF_LN_P3));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), splat(KF_LN_P2));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), splat(KF_LN_P1));
    p = _mm512_add_ps(_mm512_mul_ps(p, f), splat(KF_LN_P0));
    __m512 f2 = _mm512_mul_ps(f, f);
    __m512 lnm = _mm512_add_ps(
        f, _mm512_add_ps(_mm512_mul_ps(splat(-0.5f), f2),
                         _mm512_mul_ps(_mm512_mul_ps(f2, f), p)));
    return _mm512_add_ps(_mm512_mul_ps(e, splat(KF_LN2_HI)),
                         _mm512_add_ps(_mm512_mul_ps(e, splat(KF_LN2_LO)), lnm));
}

/* kf_exp_f32 on 16 lanes: 0 where !(x >= KF_EXP_MIN), NaN included */
static __m512 exp_ps(__m512 x)
{
    __mmask16 ok = _mm512_cmp_ps_mask(x, splat(KF_EXP_MIN), _CMP_GE_OQ);
    __m512 n = _mm512_sub_ps(
        _mm512_add_ps(_mm512_mul_ps(x, splat(KF_LOG2E)), splat(KF_ROUND_MAGIC)),
        splat(KF_ROUND_MAGIC));
    __m512 r = _mm512_sub_ps(_mm512_sub_ps(x, _mm512_mul_ps(n, splat(KF_LN2_HI))),
                             _mm512_mul_ps(n, splat(KF_LN2_LO)));
    __m512 q = splat(KF_EXP_Q4);
    q = _mm512_add_ps(_mm512_mul_ps(q, r), splat(KF_EXP_Q3));
    q = _mm512_add_ps(_mm512_mul_ps(q, r), splat(KF_EXP_Q2));
    q = _mm512_add_ps(_mm512_mul_ps(q, r), splat(KF_EXP_Q1));
    q = _mm512_add_ps(_mm512_mul_ps(q, r), splat(KF_EXP_Q0));
    __m512 er = _mm512_add_ps(
        splat(1.0f), _mm512_add_ps(r, _mm512_mul_ps(_mm512_mul_ps(r, r), q)));
    __m512i ni = _mm512_cvttps_epi32(n);
    __m512 scale = _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23));
    return _mm512_maskz_mul_ps(ok, er, scale);
}

/* kf_gumbel_f32 on 16 lanes of key positions */
static __m512 gumbel_ps(__m512i pos, __m512i key_lo, __m512i key_hi)
{
    __m512i h = hash32(_mm512_xor_si512(pos, key_lo));
    h = hash32(_mm512_add_epi32(h, key_hi));
    __m512i m = _mm512_or_si512(_mm512_srli_epi32(h, 8), _mm512_set1_epi32(1));
    __m512 u = _mm512_mul_ps(_mm512_cvtepi32_ps(m), splat(0x1p-24f));
    __m512 sign = _mm512_castsi512_ps(_mm512_set1_epi32((int)0x80000000u));
    __m512 nl = _mm512_xor_ps(ln_ps(u), sign);
    return _mm512_xor_ps(ln_ps(nl), sign);
}

/* lanes[l] += lanes[l + w] for w = 8, 4, 2, 1: the C fold */
static float fold16(__m512 lanes)
{
    __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(lanes),
                              _mm512_extractf32x8_ps(lanes, 1));
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8),
                           _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

static float max16(__m512 v)
{
    __m256 a = _mm256_max_ps(_mm512_castps512_ps256(v),
                             _mm512_extractf32x8_ps(v, 1));
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}

/* NaN or +inf among the lanes of m */
static __mmask16 bad_lanes(__mmask16 m, __m512 x)
{
    return _mm512_mask_cmp_ps_mask(m, x, x, _CMP_UNORD_Q)
           | _mm512_mask_cmp_ps_mask(m, x, splat(INFINITY), _CMP_EQ_OQ);
}

/* t = src[j] (already noised, or the logits); scratch[j] = e^((t - max) *
 * inv_tau); then acc[j] += scratch[j] * (1 / sum). */
static void normalise_into(float *acc, const float *src, float *scratch,
                           uint32_t n, float max, float inv_tau)
{
    __m512 vmax = splat(max), vinv = splat(inv_tau), sum = _mm512_setzero_ps();
    for (uint32_t j = 0; j < n; j += VL) {
        __mmask16 m = tail_mask(n - j);
        __m512 t = _mm512_maskz_loadu_ps(m, src + j);
        __m512 e = exp_ps(_mm512_mul_ps(_mm512_sub_ps(t, vmax), vinv));
        _mm512_mask_storeu_ps(scratch + j, m, e);
        sum = _mm512_mask_add_ps(sum, m, sum, e);
    }
    __m512 inv_sum = splat(1.0f / fold16(sum));
    for (uint32_t j = 0; j < n; j += VL) {
        __mmask16 m = tail_mask(n - j);
        __m512 e = _mm512_maskz_loadu_ps(m, scratch + j);
        __m512 a = _mm512_maskz_loadu_ps(m, acc + j);
        _mm512_mask_storeu_ps(acc + j, m, _mm512_add_ps(a, _mm512_mul_ps(e, inv_sum)));
    }
}

KF_SCORE_GUMBEL_FN(kf_score_gumbel_avx512)
{
    __m512i key_lo = _mm512_set1_epi32((int)key.lo);
    __m512i key_hi = _mm512_set1_epi32((int)key.hi);
    __m512 vmax = splat(-INFINITY);
    __mmask16 bad = 0;
    for (uint32_t j = 0; j < n; j += VL) {
        __mmask16 m = tail_mask(n - j);
        __m512 xj = _mm512_maskz_loadu_ps(m, x + j);
        __m512i pj = _mm512_maskz_loadu_epi32(m, pos + j);
        bad |= bad_lanes(m, xj);
        __m512 t = _mm512_add_ps(xj, gumbel_ps(pj, key_lo, key_hi));
        _mm512_mask_storeu_ps(scratch + j, m, t);
        vmax = _mm512_mask_max_ps(vmax, m, t, vmax);
    }
    if (bad)
        return KF_ROW_NAN;
    float max = max16(vmax);
    if (max == -INFINITY)
        return KF_ROW_EMPTY;
    normalise_into(acc, scratch, scratch, n, max, inv_tau);
    return KF_ROW_OK;
}

KF_SCORE_SOFTMAX_FN(kf_score_softmax_avx512)
{
    __m512 vmax = splat(-INFINITY);
    __mmask16 bad = 0;
    for (uint32_t j = 0; j < n; j += VL) {
        __mmask16 m = tail_mask(n - j);
        __m512 xj = _mm512_maskz_loadu_ps(m, x + j);
        bad |= bad_lanes(m, xj);
        vmax = _mm512_mask_max_ps(vmax, m, xj, vmax);
    }
    if (bad)
        return KF_ROW_NAN;
    float max = max16(vmax);
    if (max == -INFINITY)
        return KF_ROW_EMPTY;
    /* the C code copies x to scratch first; reading x is the same */
    normalise_into(acc, x, scratch, n, max, 1.0f);
    return KF_ROW_OK;
}
