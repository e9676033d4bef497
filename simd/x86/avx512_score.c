/* AVX-512 score kernels: kf_score_gumbel, kf_score_table, kf_score_softmax
 * and the dot products of kf_observe_qk (kf_dot_rows), bit-identical to
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

/* The table's noise (kf_score_table) of u vectors of key positions: the
 * hash, then one vgatherdps per vector of the entries the top
 * KF_GUMBEL_TABLE_BITS bits pick (a lookup, exact). Masked-off lanes
 * hold position 0, whose index is as valid as any. */
INLINE void table_noise_ps(__m512 *g, const __m512i *pos, int u, __m512i salt,
                           const float *table)
{
    __m512i h[U];
    EACH(k) h[k] = _mm512_xor_si512(pos[k], salt);
    hash32(h, u);
    EACH(k) g[k] = _mm512_i32gather_ps(
        _mm512_srli_epi32(h[k], KF_GUMBEL_TABLE_SHIFT), table, 4);
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
 * constant at its call (FOR_EACH_BLOCK), so the block's arrays stay in
 * registers (with a run-time count they went to the stack, and a
 * 127-element block cost 2.8 full ones); the extra vectors run fully
 * masked. */
static int block_vectors(uint32_t left)
{
    return left <= VL ? 1 : left <= 2 * VL ? 2 : left <= 4 * VL ? 4 : U;
}

/* Whole blocks of U vectors from 0, then the partial one, through the
 * block function BLOCK(j, u, m) (m NULL for whole blocks; else the masks
 * of the u vectors, in the caller's __mmask16 masks[U]). */
#define FOR_EACH_BLOCK(n, BLOCK)                                              \
    do {                                                                      \
        uint32_t j_ = 0;                                                      \
        for (; j_ + U * VL <= (n); j_ += U * VL)                              \
            BLOCK(j_, U, NULL);                                               \
        uint32_t left_ = (n) - j_;                                            \
        switch (left_ ? block_vectors(left_) : 0) {                           \
        case 0:                                                               \
            break;                                                            \
        case 1:                                                               \
            block_masks(masks, left_, 1);                                     \
            BLOCK(j_, 1, masks);                                              \
            break;                                                            \
        case 2:                                                               \
            block_masks(masks, left_, 2);                                     \
            BLOCK(j_, 2, masks);                                              \
            break;                                                            \
        case 4:                                                               \
            block_masks(masks, left_, 4);                                     \
            BLOCK(j_, 4, masks);                                              \
            break;                                                            \
        default:                                                              \
            block_masks(masks, left_, U);                                     \
            BLOCK(j_, U, masks);                                              \
            break;                                                            \
        }                                                                     \
    } while (0)

INLINE __m512 load_block(const float *p, const __mmask16 *m, int k)
{
    return m ? _mm512_maskz_loadu_ps(m[k], p) : _mm512_loadu_ps(p);
}

INLINE __m512i load_pos(const int32_t *p, const __mmask16 *m, int k)
{
    return m ? _mm512_maskz_loadu_epi32(m[k], p) : _mm512_loadu_si512(p);
}

/* dst[j + k*VL] = e[k] and *sum += e[k], in vector order, lanes outside
 * m[k] skipped. */
INLINE void store_and_sum(float *dst, const __m512 *e, int u,
                          const __mmask16 *m, __m512 *sum)
{
    for (int k = 0; k < u; k++) {
        if (m) {
            _mm512_mask_storeu_ps(dst + k * VL, m[k], e[k]);
            *sum = _mm512_mask_add_ps(*sum, m[k], *sum, e[k]);
        } else {
            _mm512_storeu_ps(dst + k * VL, e[k]);
            *sum = _mm512_add_ps(*sum, e[k]);
        }
    }
}

/* One block of the exp pass: dst = e^((src - max) * inv_tau), summed. */
INLINE void exp_block(float *dst, const float *src, int u, const __mmask16 *m,
                      __m512 vmax, __m512 vinv, __m512 *sum)
{
    __m512 e[U];
    for (int k = 0; k < u; k++)
        e[k] = _mm512_mul_ps(_mm512_sub_ps(load_block(src + k * VL, m, k), vmax),
                             vinv);
    exp_ps(e, u);
    store_and_sum(dst, e, u, m, sum);
}

/* scratch[j] = e^((src[j] - max) * inv_tau) (src may be scratch); returns
 * the 16 lane sums, vectors added in index order. */
INLINE __m512 exp_pass(float *scratch, const float *src, uint32_t n, float max,
                       float inv_tau)
{
    __m512 vmax = splat(max), vinv = splat(inv_tau), sum = _mm512_setzero_ps();
    __mmask16 masks[U];
#define EXP_BLOCK(j, u, m) \
    exp_block(scratch + (j), src + (j), u, m, vmax, vinv, &sum)
    FOR_EACH_BLOCK(n, EXP_BLOCK);
#undef EXP_BLOCK
    return sum;
}

/* One block of the noise pass: t = x + noise into dst, with the NaN
 * checks and the running maximum of t (of_noised) or of x. The noise is
 * the exact Gumbel sample, or the table's when table is not NULL. */
INLINE void noised_block(float *dst, const float *x, const int32_t *pos, int u,
                         const __mmask16 *m, __m512i salt, const float *table,
                         int of_noised, __m512 *vmax, __mmask16 *bad)
{
    __m512i p[U];
    __m512 g[U];
    for (int k = 0; k < u; k++) {
        p[k] = load_pos(pos + k * VL, m, k);
        _mm_prefetch((const char *)(x + KF_PREFETCH_AHEAD + k * VL),
                     _MM_HINT_T0);
    }
    if (table)
        table_noise_ps(g, p, u, salt, table);
    else
        gumbel_ps(g, p, u, salt);
    for (int k = 0; k < u; k++) {
        __mmask16 mk = m ? m[k] : (__mmask16)0xffff;
        __m512 xj = load_block(x + k * VL, m, k);
        *bad |= bad_lanes(mk, xj);
        __m512 t = _mm512_add_ps(xj, g[k]);
        _mm512_mask_storeu_ps(dst + k * VL, mk, t);
        *vmax = _mm512_mask_max_ps(*vmax, mk, of_noised ? t : xj, *vmax);
    }
}

/* scratch[j] = x[j] + noise(salt, pos[j]) and the maximum of those sums
 * (of_noised) or of x: the exact Gumbel sample (table NULL) or the
 * table's. */
INLINE int noised_max(float *scratch, const float *x, const int32_t *pos,
                      uint32_t n, __m512i salt, const float *table,
                      int of_noised, float *max)
{
    __m512 vmax = splat(-INFINITY);
    __mmask16 bad = 0, masks[U];
#define NOISED_BLOCK(j, u, m)                                               \
    noised_block(scratch + (j), x + (j), pos + (j), u, m, salt, table,      \
                 of_noised, &vmax, &bad)
    FOR_EACH_BLOCK(n, NOISED_BLOCK);
#undef NOISED_BLOCK
    if (bad)
        return KF_ROW_NAN;
    *max = max16(vmax);
    return *max == -INFINITY ? KF_ROW_EMPTY : KF_ROW_OK;
}

/* tau = 1 (see lib/score_c.c): one block of dst = e^(x - max) / E,
 * prefetching the same block of the next row (pf, may be NULL). */
INLINE void unit_tau_block(float *dst, const float *x, const int32_t *pos,
                           int u, const __mmask16 *m, __m512i salt,
                           __m512 vmax, __m512 *sum, const float *pf)
{
    __m512i h[U];
    __m512 big_e[U], e[U];
    if (pf)
        for (int k = 0; k < u; k++)
            _mm_prefetch((const char *)(pf + k * VL), _MM_HINT_T0);
    for (int k = 0; k < u; k++)
        h[k] = _mm512_xor_si512(load_pos(pos + k * VL, m, k), salt);
    hash32(h, u);
    for (int k = 0; k < u; k++)
        big_e[k] = _mm512_cvtepi32_ps(
            _mm512_or_si512(_mm512_srli_epi32(h[k], 8), _mm512_set1_epi32(1)));
    neg_ln_ps(big_e, u, 24);
    for (int k = 0; k < u; k++)
        e[k] = _mm512_sub_ps(load_block(x + k * VL, m, k), vmax);
    exp_ps(e, u);
    for (int k = 0; k < u; k++)
        e[k] = _mm512_div_ps(e[k], big_e[k]);
    store_and_sum(dst, e, u, m, sum);
}

INLINE __m512 unit_tau_pass(float *scratch, const float *x, const int32_t *pos,
                            uint32_t n, __m512i salt, float max, const float *pf)
{
    __m512 vmax = splat(max), sum = _mm512_setzero_ps();
    __mmask16 masks[U];
#define UNIT_TAU_BLOCK(j, u, m)                                        \
    unit_tau_block(scratch + (j), x + (j), pos + (j), u, m, salt, vmax, &sum, \
                   pf ? pf + (j) : NULL)
    FOR_EACH_BLOCK(n, UNIT_TAU_BLOCK);
#undef UNIT_TAU_BLOCK
    return sum;
}

INLINE void add_rows(float *acc, const float *scratch, uint32_t n,
                     uint32_t rows, const __m512 *inv_sum)
{
    for (uint32_t j = 0; j < n; j += VL) {
        __mmask16 m = tail_mask(n - j);
        __m512 a = _mm512_maskz_loadu_ps(m, acc + j);
        for (uint32_t r = 0; r < rows; r++)
            a = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, scratch + r * n + j),
                                inv_sum[r], a);
        _mm512_mask_storeu_ps(acc + j, m, a);
    }
}

/* acc[j] += e_r[j] * (1 / sum_r) for rows r in order, e_r = scratch +
 * r * n: one fused multiply-add per row, as `rows` one-row updates. One
 * row gets a copy of the loop with the count constant (no inner loop:
 * n = 513, 0.569 -> 0.535 ns per logit). */
static void add_normalised(float *acc, const float *scratch, uint32_t n,
                           uint32_t rows, const __m512 *sum)
{
    __m512 inv_sum[KF_SCORE_ROWS_MAX];
    for (uint32_t r = 0; r < rows; r++)
        inv_sum[r] = splat(1.0f / fold16(sum[r]));
    if (rows == 1)
        add_rows(acc, scratch, n, 1, inv_sum);
    else
        add_rows(acc, scratch, n, rows, inv_sum);
}

/* Each pass runs over all rows before the next starts, so one row's
 * pass hides the latency of another's reductions. */
KF_SCORE_GUMBEL_FN(kf_score_gumbel_avx512)
{
    float max[KF_SCORE_ROWS_MAX];
    __m512 sum[KF_SCORE_ROWS_MAX];
    int unit_tau = inv_tau == 1.0f;
    for (uint32_t r = 0; r < rows; r++) {
        const float *xr = x + r * x_stride;
        int status = unit_tau ? row_max(xr, n, &max[r])
                              : noised_max(scratch + r * n, xr, pos, n,
                                           _mm512_set1_epi32((int)keys[r].salt),
                                           NULL, 1, &max[r]);
        if (status) {
            *failed_row = r;
            return status;
        }
    }
    for (uint32_t r = 0; r < rows; r++)
        sum[r] = unit_tau
                     ? unit_tau_pass(scratch + r * n, x + r * x_stride, pos, n,
                                     _mm512_set1_epi32((int)keys[r].salt), max[r],
                                     r + 1 == rows ? next : NULL)
                     : exp_pass(scratch + r * n, scratch + r * n, n, max[r],
                                inv_tau);
    add_normalised(acc, scratch, n, rows, sum);
    return KF_ROW_OK;
}

/* kf_score_table in two passes per row, as in avx2_score.c: the noise
 * pass stores t = x + noise and finds the maximum of x (of t above
 * KF_TABLE_ONE_PASS_INV_TAU), then the exp pass with the shift, max x +
 * the table's largest entry in the first case. Then the update. */
KF_SCORE_TABLE_FN(kf_score_table_avx512)
{
    (void)next; /* each pass prefetches ahead within the row */
    float max[KF_SCORE_ROWS_MAX];
    __m512 sum[KF_SCORE_ROWS_MAX];
    int one_pass = inv_tau <= KF_TABLE_ONE_PASS_INV_TAU;
    for (uint32_t r = 0; r < rows; r++) {
        int status = noised_max(scratch + r * n, x + r * x_stride, pos, n,
                                _mm512_set1_epi32((int)keys[r].salt), table,
                                !one_pass, &max[r]);
        if (status) {
            *failed_row = r;
            return status;
        }
    }
    for (uint32_t r = 0; r < rows; r++) {
        float shift = one_pass ? max[r] + table[KF_GUMBEL_TABLE_SIZE - 1]
                               : max[r];
        sum[r] = exp_pass(scratch + r * n, scratch + r * n, n, shift, inv_tau);
    }
    add_normalised(acc, scratch, n, rows, sum);
    return KF_ROW_OK;
}

KF_SCORE_SOFTMAX_FN(kf_score_softmax_avx512)
{
    float max;
    int status = row_max(x, n, &max);
    if (status)
        return status;
    /* the C code copies x to scratch first; reading x is the same */
    __m512 sum = exp_pass(scratch, x, n, max, 1.0f);
    add_normalised(acc, scratch, n, 1, &sum);
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
