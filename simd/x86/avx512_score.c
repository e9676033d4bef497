/* AVX-512 score kernels: kf_score_gumbel, kf_score_softmax and the dot
 * products of kf_observe_qk (kf_dot_rows), bit-identical to
 * lib/score_c.c. Each vector op below is one fp32 operation of
 * lib/fastmath.h or lib/rng.h, in the same order: a vfmadd exactly where
 * the C code calls fmaf, and no other fusion (this file is built with
 * -ffp-contract=off). One zmm holds
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

/* The math below runs on U vectors in lockstep: each element's ln/exp is a
 * long dependent chain (Horner steps), so the CPU only stays busy when
 * several independent chains are interleaved in program order. */
#define U 8
#define INLINE static inline __attribute__((always_inline))
#define EACH(k) for (int k = 0; k < u; k++)

/* kf_hash32 */
INLINE void hash32(__m512i *x, int u)
{
    EACH(k) x[k] = _mm512_xor_si512(x[k], _mm512_srli_epi32(x[k], 16));
    EACH(k) x[k] = _mm512_mullo_epi32(x[k], _mm512_set1_epi32(0x21f0aaad));
    EACH(k) x[k] = _mm512_xor_si512(x[k], _mm512_srli_epi32(x[k], 15));
    EACH(k) x[k] = _mm512_mullo_epi32(x[k], _mm512_set1_epi32(0x735a2d97));
    EACH(k) x[k] = _mm512_xor_si512(x[k], _mm512_srli_epi32(x[k], 15));
}

/* -kf_ln_f32(x * 2^-scale_log2) for positive normal x, in place.
 * vgetmantps gives the C code's m (the mantissa under the exponent of
 * 1/2) and vgetexpps the unbiased exponent, i.e. e - 1; scaling by a power
 * of two only moves e. The 16-entry tables fit one zmm each, and vpermps
 * reads only the low 4 bits of each index, so the bits of m shifted right
 * give the bucket with no masking. The C code returns
 * fma(e, ln2, -ln f + p) and then negates; rounding is symmetric, so
 * fma(e, -ln2, ln f - p) gives the same bits. */
INLINE void neg_ln_ps(__m512 *x, int u, int scale_log2)
{
    const __m512 factor = _mm512_loadu_ps(kf_ln_factor);
    const __m512 ln_factor = _mm512_sub_ps(_mm512_setzero_ps(),
                                           _mm512_loadu_ps(kf_ln_neg_ln_factor));
    const __m512 e_offset = splat((float)(1 - scale_log2));
    __m512 e[U], r[U], q[U], lnf[U];
    EACH(k) {
        __m512 m = _mm512_getmant_ps(x[k], _MM_MANT_NORM_p5_1, _MM_MANT_SIGN_src);
        e[k] = _mm512_add_ps(_mm512_getexp_ps(x[k]), e_offset);
        __m512i b = _mm512_srli_epi32(_mm512_castps_si512(m), KF_LN_BUCKET_SHIFT);
        r[k] = _mm512_fmadd_ps(m, _mm512_permutexvar_ps(b, factor), splat(-1.0f));
        lnf[k] = _mm512_permutexvar_ps(b, ln_factor);
    }
    EACH(k) q[k] = _mm512_fmadd_ps(splat(KF_LN_Q2), r[k], splat(KF_LN_Q1));
    EACH(k) q[k] = _mm512_fmadd_ps(q[k], r[k], splat(-0.5f));
    EACH(k) {
        __m512 p = _mm512_fmadd_ps(_mm512_mul_ps(r[k], r[k]), q[k], r[k]);
        x[k] = _mm512_fmadd_ps(e[k], splat(-KF_LN2), _mm512_sub_ps(lnf[k], p));
    }
}

/* kf_exp_f32, in place: 0 where !(x >= KF_EXP_MIN), NaN included. The
 * C code's er * 2^n is one rounding of an exact product, as is vscalefps
 * (subnormal results included), so the scale needs no bit tricks. */
INLINE void exp_ps(__m512 *x, int u)
{
    __mmask16 ok[U];
    __m512 n[U], r[U], q[U];
    EACH(k) {
        ok[k] = _mm512_cmp_ps_mask(x[k], splat(KF_EXP_MIN), _CMP_GE_OQ);
        n[k] = _mm512_sub_ps(
            _mm512_fmadd_ps(x[k], splat(KF_LOG2E), splat(KF_ROUND_MAGIC)),
            splat(KF_ROUND_MAGIC));
        r[k] = _mm512_fnmadd_ps(n[k], splat(KF_LN2_LO),
                                _mm512_fnmadd_ps(n[k], splat(KF_LN2_HI), x[k]));
    }
    EACH(k) q[k] = _mm512_fmadd_ps(splat(KF_EXP_Q4), r[k], splat(KF_EXP_Q3));
    EACH(k) q[k] = _mm512_fmadd_ps(q[k], r[k], splat(KF_EXP_Q2));
    EACH(k) q[k] = _mm512_fmadd_ps(q[k], r[k], splat(KF_EXP_Q1));
    EACH(k) q[k] = _mm512_fmadd_ps(q[k], r[k], splat(KF_EXP_Q0));
    EACH(k) {
        __m512 er = _mm512_add_ps(
            splat(1.0f), _mm512_fmadd_ps(_mm512_mul_ps(r[k], r[k]), q[k], r[k]));
        x[k] = _mm512_maskz_scalef_ps(ok[k], er, n[k]);
    }
}

/* kf_gumbel_f32 of u vectors of key positions: u = v * 2^-24 with
 * v = (bits >> 8) | 1 exact in fp32, so -ln u is -ln v scaled by 2^-24 */
INLINE void gumbel_ps(__m512 *g, const __m512i *pos, int u, __m512i salt)
{
    __m512i h[U];
    EACH(k) h[k] = _mm512_xor_si512(pos[k], salt);
    hash32(h, u);
    EACH(k) g[k] = _mm512_cvtepi32_ps(
        _mm512_or_si512(_mm512_srli_epi32(h[k], 8), _mm512_set1_epi32(1)));
    neg_ln_ps(g, u, 24);
    neg_ln_ps(g, u, 0);
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
    return _mm512_mask_cmp_ps_mask(m, x, splat(INFINITY), _CMP_NLT_UQ); /* !(x < inf) */
}

/* m[k]: the lanes of vector k < u of a block starting `left` elements
 * before the end. */
INLINE void block_masks(__mmask16 *m, uint32_t left, int u)
{
    for (int k = 0; k < u; k++)
        m[k] = left > (uint32_t)k * VL ? tail_mask(left - (uint32_t)k * VL) : 0;
}

/* acc[j] += scratch[j] * (1 / sum of the 16 lanes) */
static void add_normalised(float *acc, const float *scratch, uint32_t n,
                           __m512 sum)
{
    __m512 inv_sum = splat(1.0f / fold16(sum));
    for (uint32_t j = 0; j < n; j += VL) {
        __mmask16 m = tail_mask(n - j);
        __m512 e = _mm512_maskz_loadu_ps(m, scratch + j);
        __m512 a = _mm512_maskz_loadu_ps(m, acc + j);
        _mm512_mask_storeu_ps(acc + j, m, _mm512_fmadd_ps(e, inv_sum, a));
    }
}

/* The maximum of x[0..n) into *max, with the NaN / +inf check. */
static int row_max(const float *x, uint32_t n, float *max)
{
    __m512 vmax = splat(-INFINITY);
    __mmask16 bad = 0;
    for (uint32_t j = 0; j < n; j += VL) {
        __mmask16 m = tail_mask(n - j);
        _mm_prefetch((const char *)(x + j + KF_PREFETCH_AHEAD), _MM_HINT_T0);
        __m512 xj = _mm512_maskz_loadu_ps(m, x + j);
        bad |= bad_lanes(m, xj);
        vmax = _mm512_mask_max_ps(vmax, m, xj, vmax);
    }
    if (bad)
        return KF_ROW_NAN;
    *max = max16(vmax);
    return *max == -INFINITY ? KF_ROW_EMPTY : KF_ROW_OK;
}

/* Vectors the last, partial block of `left` < U * VL elements runs: the
 * fewest of 1, 2, 4 or U that cover it. Each count is a compile-time
 * constant at its call, so the block's arrays stay in registers (with a
 * run-time count they went to the stack, and a 127-element block cost
 * 2.8 full ones); the extra vectors run fully masked. */
static int block_vectors(uint32_t left)
{
    return left <= VL ? 1 : left <= 2 * VL ? 2 : left <= 4 * VL ? 4 : U;
}

/* One block of u <= U vectors from j of the exp pass below; lanes outside
 * m[k] are skipped (m == NULL: a full block, plain loads and stores). */
INLINE void exp_block(float *scratch, const float *src, uint32_t j, int u,
                      const __mmask16 *m, __m512 vmax, __m512 vinv,
                      __m512 *sum)
{
    __m512 e[U];
    for (int k = 0; k < u; k++) {
        const float *s = src + j + k * VL;
        __m512 t = m ? _mm512_maskz_loadu_ps(m[k], s) : _mm512_loadu_ps(s);
        e[k] = _mm512_mul_ps(_mm512_sub_ps(t, vmax), vinv);
    }
    exp_ps(e, u);
    for (int k = 0; k < u; k++) {
        if (m) {
            _mm512_mask_storeu_ps(scratch + j + k * VL, m[k], e[k]);
            *sum = _mm512_mask_add_ps(*sum, m[k], *sum, e[k]);
        } else {
            _mm512_storeu_ps(scratch + j + k * VL, e[k]);
            *sum = _mm512_add_ps(*sum, e[k]);
        }
    }
}

/* t = src[j] (already noised, or the logits); scratch[j] = e^((t - max) *
 * inv_tau); then acc[j] += scratch[j] * (1 / sum). Blocks of U vectors,
 * the last one masked; the sum takes the vectors in index order. */
static void normalise_into(float *acc, const float *src, float *scratch,
                           uint32_t n, float max, float inv_tau)
{
    __m512 vmax = splat(max), vinv = splat(inv_tau), sum = _mm512_setzero_ps();
    __mmask16 m[U];
    uint32_t j = 0;
    for (; j + U * VL <= n; j += U * VL)
        exp_block(scratch, src, j, U, NULL, vmax, vinv, &sum);
    switch (j < n ? block_vectors(n - j) : 0) {
    case 0:
        break;
    case 1:
        block_masks(m, n - j, 1);
        exp_block(scratch, src, j, 1, m, vmax, vinv, &sum);
        break;
    case 2:
        block_masks(m, n - j, 2);
        exp_block(scratch, src, j, 2, m, vmax, vinv, &sum);
        break;
    case 4:
        block_masks(m, n - j, 4);
        exp_block(scratch, src, j, 4, m, vmax, vinv, &sum);
        break;
    default:
        block_masks(m, n - j, U);
        exp_block(scratch, src, j, U, m, vmax, vinv, &sum);
        break;
    }
    add_normalised(acc, scratch, n, sum);
}

/* One block of u <= U vectors from j: t = x + noise into scratch, with
 * the NaN checks and the running maximum; lanes outside m[k] are
 * skipped. */
INLINE void noised_block(float *scratch, const float *x, const int32_t *pos,
                         uint32_t j, int u, const __mmask16 *m, __m512i salt,
                         __m512 *vmax, __mmask16 *bad)
{
    __m512i p[U];
    __m512 g[U];
    for (int k = 0; k < u; k++) {
        p[k] = _mm512_maskz_loadu_epi32(m[k], pos + j + k * VL);
        _mm_prefetch((const char *)(x + j + KF_PREFETCH_AHEAD + k * VL),
                     _MM_HINT_T0);
    }
    gumbel_ps(g, p, u, salt);
    for (int k = 0; k < u; k++) {
        __m512 xj = _mm512_maskz_loadu_ps(m[k], x + j + k * VL);
        *bad |= bad_lanes(m[k], xj);
        __m512 t = _mm512_add_ps(xj, g[k]);
        _mm512_mask_storeu_ps(scratch + j + k * VL, m[k], t);
        *vmax = _mm512_mask_max_ps(*vmax, m[k], t, *vmax);
    }
}

/* tau = 1 (see lib/score_c.c): one block of u <= U vectors from j,
 * scratch[j] = e^(x[j] - max) / E[j] and the sum; lanes outside m[k]
 * (m == NULL: none) are skipped. */
INLINE void unit_tau_block(float *scratch, const float *x, const int32_t *pos,
                           uint32_t j, int u, const __mmask16 *m, __m512i salt,
                           __m512 vmax, __m512 *sum)
{
    __m512i h[U];
    __m512 big_e[U], e[U];
    for (int k = 0; k < u; k++) {
        const int32_t *p = pos + j + k * VL;
        h[k] = _mm512_xor_si512(m ? _mm512_maskz_loadu_epi32(m[k], p)
                                  : _mm512_loadu_si512(p),
                                salt);
    }
    hash32(h, u);
    for (int k = 0; k < u; k++)
        big_e[k] = _mm512_cvtepi32_ps(
            _mm512_or_si512(_mm512_srli_epi32(h[k], 8), _mm512_set1_epi32(1)));
    neg_ln_ps(big_e, u, 24);
    for (int k = 0; k < u; k++) {
        const float *s = x + j + k * VL;
        e[k] = _mm512_sub_ps(m ? _mm512_maskz_loadu_ps(m[k], s) : _mm512_loadu_ps(s),
                             vmax);
    }
    exp_ps(e, u);
    for (int k = 0; k < u; k++) {
        e[k] = _mm512_div_ps(e[k], big_e[k]);
        if (m) {
            _mm512_mask_storeu_ps(scratch + j + k * VL, m[k], e[k]);
            *sum = _mm512_mask_add_ps(*sum, m[k], *sum, e[k]);
        } else {
            _mm512_storeu_ps(scratch + j + k * VL, e[k]);
            *sum = _mm512_add_ps(*sum, e[k]);
        }
    }
}

static int score_unit_tau(float *acc, const float *x, const int32_t *pos,
                          uint32_t n, __m512i salt, float *scratch)
{
    float max;
    int status = row_max(x, n, &max);
    if (status)
        return status;
    __m512 vmax = splat(max), sum = _mm512_setzero_ps();
    __mmask16 m[U];
    uint32_t j = 0;
    for (; j + U * VL <= n; j += U * VL)
        unit_tau_block(scratch, x, pos, j, U, NULL, salt, vmax, &sum);
    switch (j < n ? block_vectors(n - j) : 0) {
    case 0:
        break;
    case 1:
        block_masks(m, n - j, 1);
        unit_tau_block(scratch, x, pos, j, 1, m, salt, vmax, &sum);
        break;
    case 2:
        block_masks(m, n - j, 2);
        unit_tau_block(scratch, x, pos, j, 2, m, salt, vmax, &sum);
        break;
    case 4:
        block_masks(m, n - j, 4);
        unit_tau_block(scratch, x, pos, j, 4, m, salt, vmax, &sum);
        break;
    default:
        block_masks(m, n - j, U);
        unit_tau_block(scratch, x, pos, j, U, m, salt, vmax, &sum);
        break;
    }
    add_normalised(acc, scratch, n, sum);
    return KF_ROW_OK;
}

KF_SCORE_GUMBEL_FN(kf_score_gumbel_avx512)
{
    __m512i salt = _mm512_set1_epi32((int)key.salt);
    if (inv_tau == 1.0f)
        return score_unit_tau(acc, x, pos, n, salt, scratch);
    __m512 vmax = splat(-INFINITY);
    __mmask16 bad = 0, full[U], m[U];
    for (int k = 0; k < U; k++)
        full[k] = 0xffff;
    uint32_t j = 0;
    for (; j + U * VL <= n; j += U * VL)
        noised_block(scratch, x, pos, j, U, full, salt, &vmax, &bad);
    switch (j < n ? block_vectors(n - j) : 0) {
    case 0:
        break;
    case 1:
        block_masks(m, n - j, 1);
        noised_block(scratch, x, pos, j, 1, m, salt, &vmax, &bad);
        break;
    case 2:
        block_masks(m, n - j, 2);
        noised_block(scratch, x, pos, j, 2, m, salt, &vmax, &bad);
        break;
    case 4:
        block_masks(m, n - j, 4);
        noised_block(scratch, x, pos, j, 4, m, salt, &vmax, &bad);
        break;
    default:
        block_masks(m, n - j, U);
        noised_block(scratch, x, pos, j, U, m, salt, &vmax, &bad);
        break;
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
    float max;
    int status = row_max(x, n, &max);
    if (status)
        return status;
    /* the C code copies x to scratch first; reading x is the same */
    normalise_into(acc, x, scratch, n, max, 1.0f);
    return KF_ROW_OK;
}

/* kf_dot_rows: one zmm of 16 partial sums per key row, element e in lane
 * e % 16; a short last block is loaded masked (zeros, whose products add
 * +0 to a lane that is never -0, so nothing changes). Four rows at a time
 * share the loads of q. */
#define DOT_KEYS 4

KF_DOT_ROWS_FN(kf_dot_rows_avx512)
{
    uint32_t full = dim - dim % VL;
    __mmask16 tail = (__mmask16)((1u << (dim - full)) - 1);
    uint32_t t = 0;
    for (; t < n; t += DOT_KEYS) {
        int keys = n - t < DOT_KEYS ? (int)(n - t) : DOT_KEYS;
        const float *row[DOT_KEYS];
        __m512 lanes[DOT_KEYS];
        for (int r = 0; r < DOT_KEYS; r++) {
            /* rows past n repeat the last one; their sums are dropped */
            row[r] = k + (size_t)(t + (r < keys ? r : keys - 1)) * k_stride;
            lanes[r] = _mm512_setzero_ps();
        }
        for (uint32_t e = 0; e < full; e += VL) {
            __m512 qv = _mm512_loadu_ps(q + e);
            for (int r = 0; r < DOT_KEYS; r++)
                lanes[r] = _mm512_add_ps(
                    lanes[r], _mm512_mul_ps(qv, _mm512_loadu_ps(row[r] + e)));
        }
        if (tail) {
            __m512 qv = _mm512_maskz_loadu_ps(tail, q + full);
            for (int r = 0; r < DOT_KEYS; r++)
                lanes[r] = _mm512_add_ps(
                    lanes[r],
                    _mm512_mul_ps(qv, _mm512_maskz_loadu_ps(tail, row[r] + full)));
        }
        for (int r = 0; r < keys; r++)
            out[t + (uint32_t)r] = fold16(lanes[r]) * scale;
    }
}
