/* AVX2 score kernels: kf_score_gumbel, kf_score_table, kf_score_softmax
 * and the dot products of kf_observe_qk (kf_dot_rows), bit-identical to
 * lib/score_c.c. Each vector op below is one fp32 operation of
 * lib/fastmath.h or lib/rng.h, in the same order: a vfmadd exactly where
 * the C code calls fmaf, and no other fusion (built with
 * -ffp-contract=off). Two
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

/* The math below runs on blocks of U vectors: each element's ln/exp is a
 * long dependent chain (Horner steps), so the CPU only stays busy with
 * several independent chains in flight. The hash runs them in lockstep;
 * ln and exp write each vector's chain whole, which keeps fewer values
 * live (AVX2 has 16 registers; lockstep spilled) and leaves the overlap
 * to the out-of-order core (measured 0.67 -> 0.77-0.99 G logits/s). U is
 * even, so vector k of a block always adds to the half (lanes 0-7 or
 * 8-15) numbered k & 1. */
#define U 8
#define INLINE static inline __attribute__((always_inline))
#define EACH(k) for (int k = 0; k < u; k++)

/* kf_hash32 */
INLINE void hash32(__m256i *x, int u)
{
    EACH(k) x[k] = _mm256_xor_si256(x[k], _mm256_srli_epi32(x[k], 16));
    EACH(k) x[k] = _mm256_mullo_epi32(x[k], isplat(0x21f0aaadu));
    EACH(k) x[k] = _mm256_xor_si256(x[k], _mm256_srli_epi32(x[k], 15));
    EACH(k) x[k] = _mm256_mullo_epi32(x[k], isplat(0x735a2d97u));
    EACH(k) x[k] = _mm256_xor_si256(x[k], _mm256_srli_epi32(x[k], 15));
}

/* A 16-entry table in two ymm registers (optionally negated). */
typedef struct table16 {
    __m256 lo, hi;
} table16;

static table16 load_table16(const float *table, int negate)
{
    __m256 sign = _mm256_castsi256_ps(isplat(negate ? 0x80000000u : 0));
    table16 t = { _mm256_xor_ps(_mm256_loadu_ps(table), sign),
                  _mm256_xor_ps(_mm256_loadu_ps(table + 8), sign) };
    return t;
}

/* table[b & 15]: vpermps reads the low 3 bits of each index, one permute
 * per half of the table, and bit 3 (moved to the sign bit) chooses the
 * half. */
INLINE __m256 lookup16(table16 t, __m256i b, __m256 upper)
{
    return _mm256_blendv_ps(_mm256_permutevar8x32_ps(t.lo, b),
                            _mm256_permutevar8x32_ps(t.hi, b), upper);
}

/* -kf_ln_f32(x * 2^-scale_log2) for positive normal x, in place; scaling
 * by a power of two only moves e. The C code returns fma(e, ln2,
 * -ln f + p) and then negates; rounding is symmetric, so
 * fma(e, -ln2, ln f - p) gives the same bits. */
INLINE void neg_ln_ps(__m256 *x, int u, int scale_log2)
{
    const table16 factor = load_table16(kf_ln_factor, 0);
    const table16 ln_factor = load_table16(kf_ln_neg_ln_factor, 1);
    EACH(k) {
        __m256i bits = _mm256_castps_si256(x[k]);
        __m256 e = _mm256_cvtepi32_ps(_mm256_sub_epi32(
            _mm256_srli_epi32(bits, 23), isplat((uint32_t)(KF_LN_EBIAS + scale_log2))));
        __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
            _mm256_and_si256(bits, isplat(0x007fffffu)), isplat(KF_LN_MBITS)));
        __m256i b = _mm256_srli_epi32(bits, KF_LN_BUCKET_SHIFT);
        __m256 upper = _mm256_castsi256_ps(_mm256_slli_epi32(b, 28));
        __m256 r = _mm256_fmadd_ps(m, lookup16(factor, b, upper), splat(-1.0f));
        __m256 lnf = lookup16(ln_factor, b, upper);
        __m256 q = _mm256_fmadd_ps(splat(KF_LN_Q2), r, splat(KF_LN_Q1));
        q = _mm256_fmadd_ps(q, r, splat(-0.5f));
        __m256 p = _mm256_fmadd_ps(_mm256_mul_ps(r, r), q, r);
        x[k] = _mm256_fmadd_ps(e, splat(-KF_LN2), _mm256_sub_ps(lnf, p));
    }
}

/* kf_exp_f32, in place: 0 where !(x >= KF_EXP_MIN), NaN included. Where
 * x is in range, t = x * log2e + 1.5 * 2^23 holds n in its low mantissa
 * bits (n in [-126, 0]), so the bits of t give 2^n without a conversion:
 * (bits(t) - bits(1.5 * 2^23) + 127) << 23. */
#define EXP_BIAS (127u - 0x4b400000u)

INLINE void exp_ps(__m256 *x, int u)
{
    EACH(k) {
        __m256 ok = _mm256_cmp_ps(x[k], splat(KF_EXP_MIN), _CMP_GE_OQ);
        __m256 t = _mm256_fmadd_ps(x[k], splat(KF_LOG2E), splat(KF_ROUND_MAGIC));
        __m256 n = _mm256_sub_ps(t, splat(KF_ROUND_MAGIC));
        __m256 r = _mm256_fnmadd_ps(n, splat(KF_LN2_LO),
                                _mm256_fnmadd_ps(n, splat(KF_LN2_HI), x[k]));
        __m256 q = _mm256_fmadd_ps(splat(KF_EXP_Q4), r, splat(KF_EXP_Q3));
        q = _mm256_fmadd_ps(q, r, splat(KF_EXP_Q2));
        q = _mm256_fmadd_ps(q, r, splat(KF_EXP_Q1));
        q = _mm256_fmadd_ps(q, r, splat(KF_EXP_Q0));
        __m256 er = _mm256_add_ps(
            splat(1.0f), _mm256_fmadd_ps(_mm256_mul_ps(r, r), q, r));
        __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(
            _mm256_add_epi32(_mm256_castps_si256(t), isplat(EXP_BIAS)), 23));
        x[k] = _mm256_and_ps(_mm256_mul_ps(er, scale), ok);
    }
}

/* kf_gumbel_f32 of u vectors of key positions: u = v * 2^-24 with
 * v = (bits >> 8) | 1 exact in fp32, so -ln u is -ln v scaled by 2^-24 */
INLINE void gumbel_ps(__m256 *g, const __m256i *pos, int u, __m256i salt)
{
    __m256i h[U];
    EACH(k) h[k] = _mm256_xor_si256(pos[k], salt);
    hash32(h, u);
    EACH(k) g[k] = _mm256_cvtepi32_ps(
        _mm256_or_si256(_mm256_srli_epi32(h[k], 8), isplat(1)));
    neg_ln_ps(g, u, 24);
    neg_ln_ps(g, u, 0);
}

/* The table's noise (kf_score_table) of u vectors of key positions: the
 * hash, then one vpgatherdd per vector of the entries the top
 * KF_GUMBEL_TABLE_BITS bits pick (a lookup, exact). Masked-off lanes
 * hold position 0, whose index is as valid as any. */
INLINE void table_noise_ps(__m256 *g, const __m256i *pos, int u, __m256i salt,
                           const float *table)
{
    __m256i h[U];
    EACH(k) h[k] = _mm256_xor_si256(pos[k], salt);
    hash32(h, u);
    EACH(k) g[k] = _mm256_i32gather_ps(
        table, _mm256_srli_epi32(h[k], KF_GUMBEL_TABLE_SHIFT), 4);
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
    return _mm256_cmp_ps(x, splat(INFINITY), _CMP_NLT_UQ); /* !(x < inf) */
}

INLINE void add_rows(float *acc, const float *scratch, uint32_t n,
                     uint32_t rows, const __m256 *inv_sum)
{
    for (uint32_t j = 0; j < n; j += VL) {
        uint32_t left = n - j;
        __m256i m = tail_mask(left);
        __m256 a = loadu_mask(acc + j, m, left);
        for (uint32_t r = 0; r < rows; r++)
            a = _mm256_fmadd_ps(loadu_mask(scratch + r * n + j, m, left),
                                inv_sum[r], a);
        storeu_mask(acc + j, m, left, a);
    }
}

/* acc[j] += e_r[j] * (1 / sum_r) for rows r in order, e_r = scratch +
 * r * n, sum_r the 16 lanes of half[r][0..1]: one fused multiply-add per
 * row, as `rows` one-row updates. */
static void add_normalised(float *acc, const float *scratch, uint32_t n,
                           uint32_t rows, __m256 (*half)[2])
{
    __m256 inv_sum[KF_SCORE_ROWS_MAX];
    for (uint32_t r = 0; r < rows; r++)
        inv_sum[r] = splat(1.0f / fold16(half[r][0], half[r][1]));
    if (rows == 1) /* the row count as a constant: no inner loop */
        add_rows(acc, scratch, n, 1, inv_sum);
    else
        add_rows(acc, scratch, n, rows, inv_sum);
}

/* The maximum of x[0..n) into *max, with the NaN / +inf check. */
static int row_max(const float *x, uint32_t n, float *max)
{
    __m256 vmax = splat(-INFINITY), bad = _mm256_setzero_ps();
    for (uint32_t j = 0; j < n; j += VL) {
        uint32_t left = n - j;
        __m256i m = tail_mask(left);
        _mm_prefetch((const char *)(x + j + KF_PREFETCH_AHEAD), _MM_HINT_T0);
        __m256 xj = loadu_mask(x + j, m, left);
        bad = _mm256_or_ps(bad, bad_lanes(xj));
        xj = _mm256_blendv_ps(splat(-INFINITY), xj, _mm256_castsi256_ps(m));
        vmax = _mm256_max_ps(xj, vmax);
    }
    if (_mm256_movemask_ps(bad))
        return KF_ROW_NAN;
    *max = max8(vmax);
    return *max == -INFINITY ? KF_ROW_EMPTY : KF_ROW_OK;
}

/* Vector k < u of a block `left` elements before the end: its lanes in
 * lane_left[k] and m[k], and its key positions in p[k] (masked lanes 0). */
INLINE void block_lanes(const int32_t *pos, uint32_t left, int u, __m256i *m,
                        uint32_t *lane_left, __m256i *p)
{
    for (int k = 0; k < u; k++) {
        lane_left[k] = left > (uint32_t)k * VL ? left - (uint32_t)k * VL : 0;
        m[k] = tail_mask(lane_left[k]);
        p[k] = lane_left[k] >= VL
                   ? _mm256_loadu_si256((const __m256i *)(pos + k * VL))
                   : _mm256_maskload_epi32(pos + k * VL, m[k]);
    }
}

/* dst[k*VL ..] = e[k] and half[k & 1] += e[k] for k < u, lanes outside
 * m[k] skipped (U is even, so vector k always feeds half k & 1). */
INLINE void store_and_sum(float *dst, const __m256 *e, int u, const __m256i *m,
                          const uint32_t *lane_left, __m256 half[2])
{
    for (int k = 0; k < u; k++) {
        storeu_mask(dst + k * VL, m[k], lane_left[k], e[k]);
        half[k & 1] = _mm256_add_ps(half[k & 1],
                                    _mm256_and_ps(e[k], _mm256_castsi256_ps(m[k])));
    }
}

/* scratch[j] = e^((src[j] - max) * inv_tau) (src may be scratch), summed
 * into half[0..1]. Blocks of U vectors (U/2 rounds of lanes 0-7 then
 * 8-15), the last one masked. */
static void exp_pass(float *scratch, const float *src, uint32_t n, float max,
                     float inv_tau, __m256 half[2])
{
    __m256 vmax = splat(max), vinv = splat(inv_tau);
    uint32_t j = 0;
    for (; j + U * VL <= n; j += U * VL) {
        __m256 e[U];
        for (int k = 0; k < U; k++)
            e[k] = _mm256_mul_ps(
                _mm256_sub_ps(_mm256_loadu_ps(src + j + k * VL), vmax), vinv);
        exp_ps(e, U);
        for (int k = 0; k < U; k++) {
            _mm256_storeu_ps(scratch + j + k * VL, e[k]);
            half[k & 1] = _mm256_add_ps(half[k & 1], e[k]);
        }
    }
    if (j < n) { /* the last, partial block, masked, only its u vectors */
        int u = (int)((n - j + VL - 1) / VL);
        __m256i m[U];
        __m256 e[U];
        uint32_t lane_left[U];
        for (int k = 0; k < u; k++) {
            lane_left[k] = n - j > (uint32_t)k * VL ? n - j - (uint32_t)k * VL : 0;
            m[k] = tail_mask(lane_left[k]);
            e[k] = _mm256_mul_ps(
                _mm256_sub_ps(loadu_mask(src + j + k * VL, m[k], lane_left[k]), vmax),
                vinv);
        }
        exp_ps(e, u);
        store_and_sum(scratch + j, e, u, m, lane_left, half);
    }
}

/* One block of u <= U vectors from j: t = x + noise into scratch, with
 * the NaN checks and the running maximum of t (of_noised) or of x; lanes
 * outside the first `left` (counted from j) are skipped. The noise is the
 * exact Gumbel sample, or the table's when table is not NULL. */
INLINE void noised_block(float *scratch, const float *x, const int32_t *pos,
                         uint32_t j, uint32_t left, int u, __m256i salt,
                         const float *table, int of_noised, __m256 *vmax,
                         __m256 *bad)
{
    __m256i m[U], p[U];
    __m256 g[U];
    uint32_t lane_left[U];
    block_lanes(pos + j, left, u, m, lane_left, p);
    for (int k = 0; k < u; k += 2) /* one prefetch per 64-byte line */
        _mm_prefetch((const char *)(x + j + KF_PREFETCH_AHEAD + k * VL),
                     _MM_HINT_T0);
    if (table)
        table_noise_ps(g, p, u, salt, table);
    else
        gumbel_ps(g, p, u, salt);
    for (int k = 0; k < u; k++) {
        __m256 xj = loadu_mask(x + j + k * VL, m[k], lane_left[k]);
        *bad = _mm256_or_ps(*bad, bad_lanes(xj));
        __m256 t = _mm256_add_ps(xj, g[k]);
        storeu_mask(scratch + j + k * VL, m[k], lane_left[k], t);
        /* masked-off lanes count as -inf */
        __m256 v = _mm256_blendv_ps(splat(-INFINITY), of_noised ? t : xj,
                                    _mm256_castsi256_ps(m[k]));
        *vmax = _mm256_max_ps(v, *vmax);
    }
}

/* tau = 1 (see lib/score_c.c): one block of u <= U vectors from j,
 * scratch[j] = e^(x[j] - max) / E[j] and the two half sums; lanes
 * outside the first `left` (counted from j) are skipped. */
INLINE void unit_tau_block(float *scratch, const float *x, const int32_t *pos,
                           uint32_t j, uint32_t left, int u, __m256i salt,
                           __m256 vmax, __m256 half[2], const float *pf)
{
    __m256i m[U], h[U];
    __m256 big_e[U], e[U];
    uint32_t lane_left[U];
    if (pf) /* the same block of the next row, one prefetch per line */
        for (int k = 0; k < u; k += 2)
            _mm_prefetch((const char *)(pf + j + k * VL), _MM_HINT_T0);
    block_lanes(pos + j, left, u, m, lane_left, h);
    EACH(k) h[k] = _mm256_xor_si256(h[k], salt);
    hash32(h, u);
    EACH(k) big_e[k] = _mm256_cvtepi32_ps(
        _mm256_or_si256(_mm256_srli_epi32(h[k], 8), isplat(1)));
    neg_ln_ps(big_e, u, 24);
    EACH(k) e[k] = _mm256_sub_ps(loadu_mask(x + j + k * VL, m[k], lane_left[k]),
                                 vmax);
    exp_ps(e, u);
    EACH(k) e[k] = _mm256_div_ps(e[k], big_e[k]);
    store_and_sum(scratch + j, e, u, m, lane_left, half);
}

static void unit_tau_pass(float *scratch, const float *x, const int32_t *pos,
                          uint32_t n, __m256i salt, float max, __m256 half[2],
                          const float *pf)
{
    __m256 vmax = splat(max);
    uint32_t j = 0;
    for (; j + U * VL <= n; j += U * VL)
        unit_tau_block(scratch, x, pos, j, n - j, U, salt, vmax, half, pf);
    if (j < n)
        unit_tau_block(scratch, x, pos, j, n - j, (int)((n - j + VL - 1) / VL),
                       salt, vmax, half, pf);
}

/* scratch[j] = x[j] + noise(salt, pos[j]) and the maximum of those sums
 * (of_noised) or of x: the exact Gumbel sample (table NULL) or the
 * table's. */
INLINE int noised_max(float *scratch, const float *x, const int32_t *pos,
                      uint32_t n, __m256i salt, const float *table,
                      int of_noised, float *max)
{
    __m256 vmax = splat(-INFINITY), bad = _mm256_setzero_ps();
    uint32_t j = 0;
    for (; j + U * VL <= n; j += U * VL)
        noised_block(scratch, x, pos, j, n - j, U, salt, table, of_noised,
                     &vmax, &bad);
    if (j < n) /* the last, partial block: only its u vectors */
        noised_block(scratch, x, pos, j, n - j, (int)((n - j + VL - 1) / VL), salt,
                     table, of_noised, &vmax, &bad);
    if (_mm256_movemask_ps(bad))
        return KF_ROW_NAN;
    *max = max8(vmax);
    return *max == -INFINITY ? KF_ROW_EMPTY : KF_ROW_OK;
}

/* Each pass runs over all rows before the next starts, so one row's
 * pass hides the latency of another's reductions. */
KF_SCORE_GUMBEL_FN(kf_score_gumbel_avx2)
{
    float max[KF_SCORE_ROWS_MAX];
    __m256 half[KF_SCORE_ROWS_MAX][2];
    int unit_tau = inv_tau == 1.0f;
    for (uint32_t r = 0; r < rows; r++) {
        const float *xr = x + r * x_stride;
        int status = unit_tau ? row_max(xr, n, &max[r])
                              : noised_max(scratch + r * n, xr, pos, n,
                                           isplat(keys[r].salt), NULL, 1,
                                           &max[r]);
        if (status) {
            *failed_row = r;
            return status;
        }
    }
    for (uint32_t r = 0; r < rows; r++) {
        half[r][0] = half[r][1] = _mm256_setzero_ps();
        if (unit_tau)
            unit_tau_pass(scratch + r * n, x + r * x_stride, pos, n,
                          isplat(keys[r].salt), max[r], half[r],
                          r + 1 == rows ? next : NULL);
        else
            exp_pass(scratch + r * n, scratch + r * n, n, max[r], inv_tau,
                     half[r]);
    }
    add_normalised(acc, scratch, n, rows, half);
    return KF_ROW_OK;
}

/* kf_score_table (see lib/score_c.c) in two passes per row: the noise
 * pass stores t = x + noise and finds the maximum of x, or of t for
 * inv_tau above KF_TABLE_ONE_PASS_INV_TAU; then the exp pass with the
 * shift, the maximum of x plus the table's largest entry in the first
 * case. The C code reads x once more for its maximum before one fused
 * pass; the maximum is exact, so the shift has the same bits, and x is
 * read once here (on Zen 3 the fused pass ran at 1.43 ns per logit, the
 * split one at 1.29: the gathers limit either, and the fused loop's
 * chains do not fit 16 registers). Then the update. */
KF_SCORE_TABLE_FN(kf_score_table_avx2)
{
    (void)next; /* each pass prefetches ahead within the row */
    float max[KF_SCORE_ROWS_MAX];
    __m256 half[KF_SCORE_ROWS_MAX][2];
    int one_pass = inv_tau <= KF_TABLE_ONE_PASS_INV_TAU;
    for (uint32_t r = 0; r < rows; r++) {
        int status = noised_max(scratch + r * n, x + r * x_stride, pos, n,
                                isplat(keys[r].salt), table, !one_pass,
                                &max[r]);
        if (status) {
            *failed_row = r;
            return status;
        }
    }
    for (uint32_t r = 0; r < rows; r++) {
        float shift = one_pass ? max[r] + table[KF_GUMBEL_TABLE_SIZE - 1]
                               : max[r];
        half[r][0] = half[r][1] = _mm256_setzero_ps();
        exp_pass(scratch + r * n, scratch + r * n, n, shift, inv_tau, half[r]);
    }
    add_normalised(acc, scratch, n, rows, half);
    return KF_ROW_OK;
}

KF_SCORE_SOFTMAX_FN(kf_score_softmax_avx2)
{
    float max;
    int status = row_max(x, n, &max);
    if (status)
        return status;
    /* the C code copies x to scratch first; reading x is the same */
    __m256 half[1][2] = { { _mm256_setzero_ps(), _mm256_setzero_ps() } };
    exp_pass(scratch, x, n, max, 1.0f, half[0]);
    add_normalised(acc, scratch, n, 1, half);
    return KF_ROW_OK;
}

/* kf_dot_rows: two ymm per key row hold the 16 partial sums (lanes 0-7 of
 * a block of 16 elements, then 8-15); a short last block is loaded with
 * maskload (zeros: +0 added to a lane that is never -0 changes nothing).
 * Two rows at a time share the loads of q. */
#define DOT_KEYS 2

KF_DOT_ROWS_FN(kf_dot_rows_avx2)
{
    uint32_t full = dim - dim % 16, rem = dim - full;
    __m256i m_lo = tail_mask(rem), m_hi = tail_mask(rem > VL ? rem - VL : 0);
    for (uint32_t t = 0; t < n; t += DOT_KEYS) {
        int keys = n - t < DOT_KEYS ? (int)(n - t) : DOT_KEYS;
        const float *row[DOT_KEYS];
        __m256 lo[DOT_KEYS], hi[DOT_KEYS];
        for (int r = 0; r < DOT_KEYS; r++) {
            /* rows past n repeat the last one; their sums are dropped */
            row[r] = k + (size_t)(t + (r < keys ? r : keys - 1)) * k_stride;
            lo[r] = _mm256_setzero_ps();
            hi[r] = _mm256_setzero_ps();
        }
        for (uint32_t e = 0; e < full; e += 16) {
            __m256 q_lo = _mm256_loadu_ps(q + e), q_hi = _mm256_loadu_ps(q + e + VL);
            for (int r = 0; r < DOT_KEYS; r++) {
                lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(q_lo, _mm256_loadu_ps(row[r] + e)));
                hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(q_hi, _mm256_loadu_ps(row[r] + e + VL)));
            }
        }
        if (rem) {
            __m256 q_lo = _mm256_maskload_ps(q + full, m_lo);
            __m256 q_hi = _mm256_maskload_ps(q + full + VL, m_hi);
            for (int r = 0; r < DOT_KEYS; r++) {
                lo[r] = _mm256_add_ps(lo[r], _mm256_mul_ps(q_lo, _mm256_maskload_ps(row[r] + full, m_lo)));
                hi[r] = _mm256_add_ps(hi[r], _mm256_mul_ps(q_hi, _mm256_maskload_ps(row[r] + full + VL, m_hi)));
            }
        }
        for (int r = 0; r < keys; r++)
            out[t + (uint32_t)r] = fold16(lo[r], hi[r]) * scale;
    }
}
