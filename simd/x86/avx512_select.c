/* AVX-512 top-k selection: the output of lib/topk_c.c for every input
 * (see simd/select_radix.h for the method). Keys are computed 16 at a time;
 * candidates and winners are packed with vpcompressd. */
#include <immintrin.h>

#include "dsp.h"
#include "../select_radix.h"

#define VL 16

static __mmask16 tail_mask(uint32_t left)
{
    return left >= VL ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* order_key of lib/topk_c.c on 16 lanes: -0 joins +0, negative scores
 * flip all bits, others set the sign bit */
static __m512i order_keys(__m512 s)
{
    __mmask16 zero = _mm512_cmp_ps_mask(s, _mm512_setzero_ps(), _CMP_EQ_OQ);
    __m512i u = _mm512_maskz_mov_epi32((__mmask16)~zero, _mm512_castps_si512(s));
    __m512i flip = _mm512_or_si512(_mm512_srai_epi32(u, 31),
                                   _mm512_set1_epi32((int)0x80000000u));
    return _mm512_xor_si512(u, flip);
}

static __m512i load_keys(const float *scores, uint32_t j, uint32_t n,
                         __mmask16 *m)
{
    *m = tail_mask(n - j);
    return order_keys(_mm512_maskz_loadu_ps(*m, scores + j));
}

/* Histogram of the top digits of all keys. */
static void count_top(radix_hist *r, const float *scores, uint32_t n)
{
    uint32_t d[VL];
    uint32_t j = 0;
    for (; j + VL <= n; j += VL) {
        __m512i k = order_keys(_mm512_loadu_ps(scores + j));
        _mm512_storeu_si512(d, _mm512_srli_epi32(k, RADIX_SHIFT1));
        for (int l = 0; l < VL; l += 4) {
            r->c[0][d[l]]++;
            r->c[1][d[l + 1]]++;
            r->c[2][d[l + 2]]++;
            r->c[3][d[l + 3]]++;
        }
    }
    if (j < n) {
        __mmask16 m;
        __m512i k = load_keys(scores, j, n, &m);
        _mm512_storeu_si512(d, _mm512_srli_epi32(k, RADIX_SHIFT1));
        for (uint32_t l = 0; l < n - j; l++)
            r->c[0][d[l]]++;
    }
}

/* Packs the keys whose top digit is d1 into cand[]; returns their count. */
static uint32_t gather(uint32_t *cand, const float *scores, uint32_t n,
                       uint32_t d1)
{
    __m512i vd = _mm512_set1_epi32((int)d1);
    uint32_t count = 0;
    for (uint32_t j = 0; j < n; j += VL) {
        __mmask16 m;
        __m512i k = load_keys(scores, j, n, &m);
        __mmask16 hit = _mm512_mask_cmpeq_epi32_mask(
            m, _mm512_srli_epi32(k, RADIX_SHIFT1), vd);
        __m512i packed = _mm512_maskz_compress_epi32(hit, k);
        uint32_t pc = (uint32_t)_mm_popcnt_u32(hit);
        _mm512_mask_storeu_epi32(cand + count, (__mmask16)((1u << pc) - 1), packed);
        count += pc;
    }
    return count;
}

/* Writes, ascending, the indices of keys above t and the first `ties`
 * keys equal to t; stops once `need` are out. */
static void emit(uint32_t *out, const float *scores, uint32_t n, uint32_t need,
                 uint32_t t, uint32_t ties)
{
    __m512i vt = _mm512_set1_epi32((int)t);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                    13, 14, 15);
    __m512i step = _mm512_set1_epi32(VL);
    uint32_t count = 0;
    for (uint32_t j = 0; j < n && count < need; j += VL) {
        __mmask16 m;
        __m512i k = load_keys(scores, j, n, &m);
        uint32_t sel = _mm512_mask_cmpgt_epu32_mask(m, k, vt);
        uint32_t eq = _mm512_mask_cmpeq_epu32_mask(m, k, vt);
        if (eq) {
            uint32_t pc = (uint32_t)_mm_popcnt_u32(eq);
            if (pc > ties)
                eq = lowest_bits(eq, ties);
            ties -= (uint32_t)_mm_popcnt_u32(eq);
            sel |= eq;
        }
        __m512i packed = _mm512_maskz_compress_epi32((__mmask16)sel, idx);
        uint32_t pc = (uint32_t)_mm_popcnt_u32(sel);
        _mm512_mask_storeu_epi32(out + count, (__mmask16)((1u << pc) - 1), packed);
        count += pc;
        idx = _mm512_add_epi32(idx, step);
    }
}

/* out[i] = start + i for i < count */
static void iota_from(uint32_t *out, uint32_t count, uint32_t start)
{
    __m512i idx = _mm512_add_epi32(
        _mm512_set1_epi32((int)start),
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    for (uint32_t j = 0; j < count; j += VL) {
        _mm512_mask_storeu_epi32(out + j, tail_mask(count - j), idx);
        idx = _mm512_add_epi32(idx, _mm512_set1_epi32(VL));
    }
}

/* Every index but `drop`, ascending (one eviction). */
static void emit_all_but(uint32_t *out, uint32_t n, uint32_t drop)
{
    iota_from(out, drop, 0);
    iota_from(out + drop, n - 1 - drop, drop + 1);
}

/* The index the radix path drops when need = n - 1: the smallest key, the
 * last among equal keys. One pass: each lane keeps its smallest key and
 * the last index holding it (a key <= the lane's minimum takes over). */
static uint32_t last_min_index(const float *scores, uint32_t n)
{
    __m512i vmin = _mm512_set1_epi32(-1);
    __m512i vidx = _mm512_set1_epi32(-1);
    __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,
                                    13, 14, 15);
    uint32_t j = 0;
    for (; j + VL <= n; j += VL) {
        __m512i k = order_keys(_mm512_loadu_ps(scores + j));
        __mmask16 take = _mm512_cmple_epu32_mask(k, vmin);
        vidx = _mm512_mask_mov_epi32(vidx, take, idx);
        vmin = _mm512_min_epu32(vmin, k);
        idx = _mm512_add_epi32(idx, _mm512_set1_epi32(VL));
    }
    uint32_t key[VL], at[VL], best;
    _mm512_storeu_si512(key, vmin);
    _mm512_storeu_si512(at, vidx);
    uint32_t drop = last_min_fold(key, at, VL, &best);
    return last_min_tail(scores, j, n, drop, best);
}

KF_SELECT_TOP_FN(kf_select_top_avx512)
{
    if (need == 0)
        return;
    if (need == n) {
        iota_from(out, n, 0);
        return;
    }
    if (need + 1 == n) { /* one eviction (a decode step) */
        emit_all_but(out, n, last_min_index(scores, n));
        return;
    }
    radix_hist r;
    radix_clear(&r, n, RADIX_BINS);
    count_top(&r, scores, n);
    uint32_t rem = need;
    uint32_t d1 = radix_pick(radix_merge(&r), RADIX_BINS, &rem);
    uint32_t m = gather(keys, scores, n, d1);
    uint32_t t = radix_finish(&r, keys, m, d1, &rem);
    emit(out, scores, n, need, t, rem);
}
