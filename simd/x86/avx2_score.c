/* AVX2 score kernels: kf_score_gumbel and kf_score_softmax, bit-identical
 * to lib/score_c.c. Each vector op below is one fp32 operation of
 * lib/fastmath.h or lib/rng.h, in the same order, with no fused
 * multiply-add (built with -ffp-contract=off; FMA is never called). Two
 * ymm registers hold the 16 partial row sums (lanes 0-7 and 8-15), so
 * element j lands in lane j % 16 exactly as in the C code; tail lanes are
 * masked off and never touch a sum. */
#include <immintrin.h>
#include <math.h>

#include "dsp.h"
#include "fastmath.h"

#define VL 8

static __m256 splat(float x)
{
    return _mm256_set1_ps(x);
}

static __m256i isplat(uint32_t x)
{
    return _mm256_set1_epi32((int)x);
}

/* all-ones in lanes l < left */
static __m256i tail_mask(uint32_t left)
{
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int k = left >= VL ? VL : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), lane);
}

static __m256 loadu_mask(const float *p, __m256i m, uint32_t left)
{
    return left >= VL ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m);
}

static void storeu_mask(float *p, __m256i m, uint32_t left, __m256 v)
{
    if (left >= VL)
        _mm256_storeu_ps(p, v);
    else
        _mm256_maskstore_ps(p, m, v);
}

/* kf_hash32 on 8 lanes */
static __m256i hash32(__m256i x)
{
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, isplat(0x21f0aaadu));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    x = _mm256_mullo_epi32(x, isplat(0x735a2d97u));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    return x;
}

/* kf_ln_f32 on 8 lanes (positive normal inputs) */
static __m256 ln_ps(__m256 x)
{
    __m256i bits = _mm256_castps_si256(x);
    __m256 e = _mm256_cvtepi32_ps(
        _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), isplat(127)));
    __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
        _mm256_and_si256(bits, isplat(0x007fffffu)), isplat(0x3f800000u)));
    __m256 big = _mm256_cmp_ps(m, splat(KF_LN_SQRT2), _CMP_GT_OQ);
    m = _mm256_blendv_ps(m, _mm256_mul_ps(m, splat(0.5f)), big);
    e = _mm256_blendv_ps(e, _mm256_add_ps(e, splat(1.0f)), big);
    __m256 f = _mm256_sub_ps(m, splat(1.0f));
    __m256 p = splat(KF_LN_P6);
    p = _mm256_add_ps(_mm256_mul_ps(p, f), splat(KF_LN_P5));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), splat(KF_LN_P4));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), splat(KF_LN_P3));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), splat(KF_LN_P2));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), splat(KF_LN_P1));
    p = _mm256_add_ps(_mm256_mul_ps(p, f), splat(KF_LN_P0));
    __m256 f2 = _mm256_mul_ps(f, f);
    __m256 lnm = _mm256_add_ps(
        f, _mm256_add_ps(_mm256_mul_ps(splat(-0.5f), f2),
                         _mm256_mul_ps(_mm256_mul_ps(f2, f), p)));
    return _mm256_add_ps(_mm256_mul_ps(e, splat(KF_LN2_HI)),
                         _mm256_add_ps(_mm256_mul_ps(e, splat(KF_LN2_LO)), lnm));
}

/* kf_exp_f32 on 8 lanes: 0 where !(x >= KF_EXP_MIN), NaN included */
static __m256 exp_ps(__m256 x)
{
    __m256 ok = _mm256_cmp_ps(x, splat(KF_EXP_MIN), _CMP_GE_OQ);
    __m256 n = _mm256_sub_ps(
        _mm256_add_ps(_mm256_mul_ps(x, splat(KF_LOG2E)), splat(KF_ROUND_MAGIC)),
        splat(KF_ROUND_MAGIC));
    __m256 r = _mm256_sub_ps(_mm256_sub_ps(x, _mm256_mul_ps(n, splat(KF_LN2_HI))),
                             _mm256_mul_ps(n, splat(KF_LN2_LO)));
    __m256 q = splat(KF_EXP_Q4);
    q = _mm256_add_ps(_mm256_mul_ps(q, r), splat(KF_EXP_Q3));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), splat(KF_EXP_Q2));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), splat(KF_EXP_Q1));
    q = _mm256_add_ps(_mm256_mul_ps(q, r), splat(KF_EXP_Q0));
    __m256 er = _mm256_add_ps(
        splat(1.0f), _mm256_add_ps(r, _mm256_mul_ps(_mm256_mul_ps(r, r), q)));
    __m256i ni = _mm256_cvttps_epi32(n);
    __m256 scale = _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_add_epi32(ni, isplat(127)), 23));
    return _mm256_and_ps(_mm256_mul_ps(er, scale), ok);
}

/* kf_gumbel_f32 on 8 lanes of key positions */
static __m256 gumbel_ps(__m256i pos, __m256i key_lo, __m256i key_hi)
{
    __m256i h = hash32(_mm256_xor_si256(pos, key_lo));
    h = hash32(_mm256_add_epi32(h, key_hi));
    __m256i m = _mm256_or_si256(_mm256_srli_epi32(h, 8), isplat(1));
    __m256 u = _mm256_mul_ps(_mm256_cvtepi32_ps(m), splat(0x1p-24f));
    __m256 sign = _mm256_castsi256_ps(isplat(0x80000000u));
    __m256 nl = _mm256_xor_ps(ln_ps(u), sign);
    return _mm256_xor_ps(ln_ps(nl), sign);
}

/* lanes[l] += lanes[l + w] for w = 8, 4, 2, 1: the C fold; lo holds lanes
 * 0-7, hi lanes 8-15 */
static float fold16(__m256 lo, __m256 hi)
{
    __m256 s8 = _mm256_add_ps(lo, hi);
    __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8),
                           _mm256_extractf128_ps(s8, 1));
    __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
    __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
    return _mm_cvtss_f32(s1);
}

static float max8(__m256 v)
{
    __m128 b = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    b = _mm_max_ps(b, _mm_movehl_ps(b, b));
    b = _mm_max_ss(b, _mm_shuffle_ps(b, b, 1));
    return _mm_cvtss_f32(b);
}

/* NaN or +inf lanes (masked-off lanes were loaded as 0) */
static __m256 bad_lanes(__m256 x)
{
    return _mm256_or_ps(_mm256_cmp_ps(x, x, _CMP_UNORD_Q),
                        _mm256_cmp_ps(x, splat(INFINITY), _CMP_EQ_OQ));
}

/* one block of 8: e = e^((t - max) * inv_tau) into scratch, added to the
 * partial sums of its 8 lanes */
static __m256 exp_block(const float *src, float *scratch, uint32_t left,
                        __m256 vmax, __m256 vinv, __m256 sum)
{
    __m256i m = tail_mask(left);
    __m256 t = loadu_mask(src, m, left);
    __m256 e = exp_ps(_mm256_mul_ps(_mm256_sub_ps(t, vmax), vinv));
    storeu_mask(scratch, m, left, e);
    return _mm256_add_ps(sum, _mm256_and_ps(e, _mm256_castsi256_ps(m)));
}

/* scratch[j] = e^((src[j] - max) * inv_tau); acc[j] += scratch[j] / sum */
static void normalise_into(float *acc, const float *src, float *scratch,
                           uint32_t n, float max, float inv_tau)
{
    __m256 vmax = splat(max), vinv = splat(inv_tau);
    __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
    uint32_t j = 0;
    for (; j + 2 * VL <= n; j += 2 * VL) {
        lo = exp_block(src + j, scratch + j, VL, vmax, vinv, lo);
        hi = exp_block(src + j + VL, scratch + j + VL, VL, vmax, vinv, hi);
    }
    if (j < n)
        lo = exp_block(src + j, scratch + j, n - j, vmax, vinv, lo);
    if (j + VL < n)
        hi = exp_block(src + j + VL, scratch + j + VL, n - j - VL, vmax, vinv, hi);

    __m256 inv_sum = splat(1.0f / fold16(lo, hi));
    for (j = 0; j < n; j += VL) {
        uint32_t left = n - j;
        __m256i m = tail_mask(left);
        __m256 e = loadu_mask(scratch + j, m, left);
        __m256 a = loadu_mask(acc + j, m, left);
        storeu_mask(acc + j, m, left, _mm256_add_ps(a, _mm256_mul_ps(e, inv_sum)));
    }
}

KF_SCORE_GUMBEL_FN(kf_score_gumbel_avx2)
{
    __m256i key_lo = isplat(key.lo), key_hi = isplat(key.hi);
    __m256 vmax = splat(-INFINITY), bad = _mm256_setzero_ps();
    for (uint32_t j = 0; j < n; j += VL) {
        uint32_t left = n - j;
        __m256i m = tail_mask(left);
        __m256 xj = loadu_mask(x + j, m, left);
        __m256i pj = left >= VL ? _mm256_loadu_si256((const __m256i *)(pos + j))
                                : _mm256_maskload_epi32(pos + j, m);
        bad = _mm256_or_ps(bad, bad_lanes(xj));
        __m256 t = _mm256_add_ps(xj, gumbel_ps(pj, key_lo, key_hi));
        storeu_mask(scratch + j, m, left, t);
        /* masked-off lanes count as -inf */
        t = _mm256_blendv_ps(splat(-INFINITY), t, _mm256_castsi256_ps(m));
        vmax = _mm256_max_ps(t, vmax);
    }
    if (_mm256_movemask_ps(bad))
        return KF_ROW_NAN;
    float max = max8(vmax);
    if (max == -INFINITY)
        return KF_ROW_EMPTY;
    normalise_into(acc, scratch, scratch, n, max, inv_tau);
    return KF_ROW_OK;
}

KF_SCORE_SOFTMAX_FN(kf_score_softmax_avx2)
{
    __m256 vmax = splat(-INFINITY), bad = _mm256_setzero_ps();
    for (uint32_t j = 0; j < n; j += VL) {
        uint32_t left = n - j;
        __m256i m = tail_mask(left);
        __m256 xj = loadu_mask(x + j, m, left);
        bad = _mm256_or_ps(bad, bad_lanes(xj));
        xj = _mm256_blendv_ps(splat(-INFINITY), xj, _mm256_castsi256_ps(m));
        vmax = _mm256_max_ps(xj, vmax);
    }
    if (_mm256_movemask_ps(bad))
        return KF_ROW_NAN;
    float max = max8(vmax);
    if (max == -INFINITY)
        return KF_ROW_EMPTY;
    /* the C code copies x to scratch first; reading x is the same */
    normalise_into(acc, x, scratch, n, max, 1.0f);
    return KF_ROW_OK;
}
