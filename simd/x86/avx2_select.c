/* AVX2 top-k selection: the output of lib/topk_c.c for every input (see
 * simd/select_radix.h for the method). Keys are computed 8 at a time;
 * winners are packed with a permutation from a table indexed by the 8-bit
 * compare mask. */
#include <immintrin.h>

#include "dsp.h"
#include "../select_radix.h"

#define VL 8

/* PACK[m]: the lanes set in m, ascending, one per nibble (lowest first). */
static const uint32_t PACK[256] = {
    0x00000000, 0x00000000, 0x00000001, 0x00000010, 0x00000002, 0x00000020,
    0x00000021, 0x00000210, 0x00000003, 0x00000030, 0x00000031, 0x00000310,
    0x00000032, 0x00000320, 0x00000321, 0x00003210, 0x00000004, 0x00000040,
    0x00000041, 0x00000410, 0x00000042, 0x00000420, 0x00000421, 0x00004210,
    0x00000043, 0x00000430, 0x00000431, 0x00004310, 0x00000432, 0x00004320,
    0x00004321, 0x00043210, 0x00000005, 0x00000050, 0x00000051, 0x00000510,
    0x00000052, 0x00000520, 0x00000521, 0x00005210, 0x00000053, 0x00000530,
    0x00000531, 0x00005310, 0x00000532, 0x00005320, 0x00005321, 0x00053210,
    0x00000054, 0x00000540, 0x00000541, 0x00005410, 0x00000542, 0x00005420,
    0x00005421, 0x00054210, 0x00000543, 0x00005430, 0x00005431, 0x00054310,
    0x00005432, 0x00054320, 0x00054321, 0x00543210, 0x00000006, 0x00000060,
    0x00000061, 0x00000610, 0x00000062, 0x00000620, 0x00000621, 0x00006210,
    0x00000063, 0x00000630, 0x00000631, 0x00006310, 0x00000632, 0x00006320,
    0x00006321, 0x00063210, 0x00000064, 0x00000640, 0x00000641, 0x00006410,
    0x00000642, 0x00006420, 0x00006421, 0x00064210, 0x00000643, 0x00006430,
    0x00006431, 0x00064310, 0x00006432, 0x00064320, 0x00064321, 0x00643210,
    0x00000065, 0x00000650, 0x00000651, 0x00006510, 0x00000652, 0x00006520,
    0x00006521, 0x00065210, 0x00000653, 0x00006530, 0x00006531, 0x00065310,
    0x00006532, 0x00065320, 0x00065321, 0x00653210, 0x00000654, 0x00006540,
    0x00006541, 0x00065410, 0x00006542, 0x00065420, 0x00065421, 0x00654210,
    0x00006543, 0x00065430, 0x00065431, 0x00654310, 0x00065432, 0x00654320,
    0x00654321, 0x06543210, 0x00000007, 0x00000070, 0x00000071, 0x00000710,
    0x00000072, 0x00000720, 0x00000721, 0x00007210, 0x00000073, 0x00000730,
    0x00000731, 0x00007310, 0x00000732, 0x00007320, 0x00007321, 0x00073210,
    0x00000074, 0x00000740, 0x00000741, 0x00007410, 0x00000742, 0x00007420,
    0x00007421, 0x00074210, 0x00000743, 0x00007430, 0x00007431, 0x00074310,
    0x00007432, 0x00074320, 0x00074321, 0x00743210, 0x00000075, 0x00000750,
    0x00000751, 0x00007510, 0x00000752, 0x00007520, 0x00007521, 0x00075210,
    0x00000753, 0x00007530, 0x00007531, 0x00075310, 0x00007532, 0x00075320,
    0x00075321, 0x00753210, 0x00000754, 0x00007540, 0x00007541, 0x00075410,
    0x00007542, 0x00075420, 0x00075421, 0x00754210, 0x00007543, 0x00075430,
    0x00075431, 0x00754310, 0x00075432, 0x00754320, 0x00754321, 0x07543210,
    0x00000076, 0x00000760, 0x00000761, 0x00007610, 0x00000762, 0x00007620,
    0x00007621, 0x00076210, 0x00000763, 0x00007630, 0x00007631, 0x00076310,
    0x00007632, 0x00076320, 0x00076321, 0x00763210, 0x00000764, 0x00007640,
    0x00007641, 0x00076410, 0x00007642, 0x00076420, 0x00076421, 0x00764210,
    0x00007643, 0x00076430, 0x00076431, 0x00764310, 0x00076432, 0x00764320,
    0x00764321, 0x07643210, 0x00000765, 0x00007650, 0x00007651, 0x00076510,
    0x00007652, 0x00076520, 0x00076521, 0x00765210, 0x00007653, 0x00076530,
    0x00076531, 0x00765310, 0x00076532, 0x00765320, 0x00765321, 0x07653210,
    0x00007654, 0x00076540, 0x00076541, 0x00765410, 0x00076542, 0x00765420,
    0x00765421, 0x07654210, 0x00076543, 0x00765430, 0x00765431, 0x07654310,
    0x00765432, 0x07654320, 0x07654321, 0x76543210,
};

static __m256i tail_mask(uint32_t left)
{
    __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int k = left >= VL ? VL : (int)left;
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(k), lane);
}

/* order_key of lib/topk_c.c on 8 lanes, xor 0x80000000 so that signed
 * compares order them: -0 joins +0, negative scores flip the low 31 bits */
static __m256i signed_keys(__m256 s)
{
    __m256 zero = _mm256_cmp_ps(s, _mm256_setzero_ps(), _CMP_EQ_OQ);
    __m256i u = _mm256_castps_si256(_mm256_andnot_ps(zero, s));
    __m256i flip = _mm256_srli_epi32(_mm256_srai_epi32(u, 31), 1);
    return _mm256_xor_si256(u, flip);
}

static __m256i load_signed_keys(const float *scores, uint32_t j, uint32_t n,
                                __m256i *m)
{
    uint32_t left = n - j;
    *m = tail_mask(left);
    __m256 s = left >= VL ? _mm256_loadu_ps(scores + j)
                          : _mm256_maskload_ps(scores + j, *m);
    return signed_keys(s);
}

static __m256i unsigned_keys(__m256i skeys)
{
    return _mm256_xor_si256(skeys, _mm256_set1_epi32((int)0x80000000u));
}

/* Histogram of the top digits of all keys. */
static void count_top(radix_hist *r, const float *scores, uint32_t n)
{
    uint32_t d[VL];
    for (uint32_t j = 0; j < n; j += VL) {
        __m256i m;
        __m256i k = unsigned_keys(load_signed_keys(scores, j, n, &m));
        _mm256_storeu_si256((__m256i *)d, _mm256_srli_epi32(k, RADIX_SHIFT1));
        if (n - j >= VL) {
            for (int l = 0; l < VL; l += 4) {
                r->c[0][d[l]]++;
                r->c[1][d[l + 1]]++;
                r->c[2][d[l + 2]]++;
                r->c[3][d[l + 3]]++;
            }
        } else {
            for (uint32_t l = 0; l < n - j; l++)
                r->c[0][d[l]]++;
        }
    }
}

static __m256i unpack_lanes(uint32_t mask)
{
    __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
    return _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32((int)PACK[mask]), shifts),
        _mm256_set1_epi32(7));
}

/* Packs the keys whose top digit is d1 into cand[]; returns their count. */
static uint32_t gather(uint32_t *cand, const float *scores, uint32_t n,
                       uint32_t d1)
{
    __m256i vd = _mm256_set1_epi32((int)d1);
    uint32_t count = 0;
    for (uint32_t j = 0; j < n; j += VL) {
        __m256i m;
        __m256i k = unsigned_keys(load_signed_keys(scores, j, n, &m));
        __m256i hit = _mm256_and_si256(
            m, _mm256_cmpeq_epi32(_mm256_srli_epi32(k, RADIX_SHIFT1), vd));
        uint32_t bits = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(hit));
        __m256i packed = _mm256_permutevar8x32_epi32(k, unpack_lanes(bits));
        uint32_t pc = (uint32_t)_mm_popcnt_u32(bits);
        /* cand has room for n keys: a full store stays inside while
         * count + 8 <= n */
        if (count + VL <= n)
            _mm256_storeu_si256((__m256i *)(cand + count), packed);
        else
            _mm256_maskstore_epi32((int *)(cand + count), tail_mask(pc), packed);
        count += pc;
    }
    return count;
}

/* Writes, ascending, the indices of keys above t and the first `ties`
 * keys equal to t; stops once `need` are out. */
static void emit(uint32_t *out, const float *scores, uint32_t n, uint32_t need,
                 uint32_t t, uint32_t ties)
{
    __m256i vt = _mm256_set1_epi32((int)(t ^ 0x80000000u));
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    __m256i step = _mm256_set1_epi32(VL);
    uint32_t count = 0;
    for (uint32_t j = 0; j < n && count < need; j += VL) {
        __m256i m;
        __m256i k = load_signed_keys(scores, j, n, &m);
        __m256i gt = _mm256_and_si256(m, _mm256_cmpgt_epi32(k, vt));
        __m256i eqv = _mm256_and_si256(m, _mm256_cmpeq_epi32(k, vt));
        uint32_t sel = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(gt));
        uint32_t eq = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(eqv));
        if (eq) {
            uint32_t pc = (uint32_t)_mm_popcnt_u32(eq);
            if (pc > ties)
                eq = lowest_bits(eq, ties);
            ties -= (uint32_t)_mm_popcnt_u32(eq);
            sel |= eq;
        }
        __m256i packed = _mm256_permutevar8x32_epi32(idx, unpack_lanes(sel));
        uint32_t pc = (uint32_t)_mm_popcnt_u32(sel);
        if (count + VL <= need)
            _mm256_storeu_si256((__m256i *)(out + count), packed);
        else
            _mm256_maskstore_epi32((int *)(out + count), tail_mask(pc), packed);
        count += pc;
        idx = _mm256_add_epi32(idx, step);
    }
}

/* out[i] = start + i for i < count */
static void iota_from(uint32_t *out, uint32_t count, uint32_t start)
{
    __m256i idx = _mm256_add_epi32(_mm256_set1_epi32((int)start),
                                   _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    uint32_t j = 0;
    for (; j + VL <= count; j += VL) {
        _mm256_storeu_si256((__m256i *)(out + j), idx);
        idx = _mm256_add_epi32(idx, _mm256_set1_epi32(VL));
    }
    for (; j < count; j++)
        out[j] = start + j;
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
    __m256i vmin = _mm256_set1_epi32(INT32_MAX);
    __m256i vidx = _mm256_set1_epi32(-1);
    __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    uint32_t j = 0;
    for (; j + VL <= n; j += VL) {
        __m256i k = signed_keys(_mm256_loadu_ps(scores + j));
        __m256i above = _mm256_cmpgt_epi32(k, vmin);
        vidx = _mm256_blendv_epi8(idx, vidx, above);
        vmin = _mm256_min_epi32(vmin, k);
        idx = _mm256_add_epi32(idx, _mm256_set1_epi32(VL));
    }
    uint32_t key[VL], at[VL], best;
    _mm256_storeu_si256((__m256i *)key, unsigned_keys(vmin));
    _mm256_storeu_si256((__m256i *)at, vidx);
    uint32_t drop = last_min_fold(key, at, VL, &best);
    return last_min_tail(scores, j, n, drop, best);
}

KF_SELECT_TOP_FN(kf_select_top_avx2)
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
