/* NEON top-k selection: the output of lib/topk_c.c for every input (see
 * simd/select_radix.h for the method). Keys are computed 4 at a time;
 * winners are packed with a byte shuffle from a table indexed by the 4-bit
 * compare mask. */
#include <arm_neon.h>

#include "dsp.h"
#include "../select_radix.h"

#define VL 4

/* PACK[m]: byte shuffle moving the 32-bit lanes set in m to the front. */
static const uint8_t PACK[16][16] = {
#define L(i) 4 * (i), 4 * (i) + 1, 4 * (i) + 2, 4 * (i) + 3
#define Z 0, 0, 0, 0
    { Z, Z, Z, Z },
    { L(0), Z, Z, Z },
    { L(1), Z, Z, Z },
    { L(0), L(1), Z, Z },
    { L(2), Z, Z, Z },
    { L(0), L(2), Z, Z },
    { L(1), L(2), Z, Z },
    { L(0), L(1), L(2), Z },
    { L(3), Z, Z, Z },
    { L(0), L(3), Z, Z },
    { L(1), L(3), Z, Z },
    { L(0), L(1), L(3), Z },
    { L(2), L(3), Z, Z },
    { L(0), L(2), L(3), Z },
    { L(1), L(2), L(3), Z },
    { L(0), L(1), L(2), L(3) },
#undef L
#undef Z
};

/* order_key of lib/topk_c.c on 4 lanes: -0 joins +0, negative scores flip
 * all bits, others set the sign bit */
static uint32x4_t order_keys(float32x4_t s)
{
    uint32x4_t zero = vceqq_f32(s, vdupq_n_f32(0.0f));
    uint32x4_t u = vbicq_u32(vreinterpretq_u32_f32(s), zero);
    uint32x4_t flip = vorrq_u32(
        vreinterpretq_u32_s32(vshrq_n_s32(vreinterpretq_s32_u32(u), 31)),
        vdupq_n_u32(0x80000000u));
    return veorq_u32(u, flip);
}

/* bit l set when lane l of m is set */
static uint32_t lane_bits(uint32x4_t m)
{
    static const uint32_t weight[4] = { 1, 2, 4, 8 };
    return vaddvq_u32(vandq_u32(m, vld1q_u32(weight)));
}

static uint32_t order_key1(float s)
{
    return vgetq_lane_u32(order_keys(vdupq_n_f32(s)), 0);
}

/* Histogram of the top digits of all keys. */
static void count_top(radix_hist *r, const float *scores, uint32_t n)
{
    uint32_t d[2 * VL];
    uint32_t j = 0;
    for (; j + 2 * VL <= n; j += 2 * VL) {
        uint32x4_t a = order_keys(vld1q_f32(scores + j));
        uint32x4_t b = order_keys(vld1q_f32(scores + j + VL));
        vst1q_u32(d, vshrq_n_u32(a, RADIX_SHIFT1));
        vst1q_u32(d + VL, vshrq_n_u32(b, RADIX_SHIFT1));
        for (int l = 0; l < 2 * VL; l += 4) {
            r->c[0][d[l]]++;
            r->c[1][d[l + 1]]++;
            r->c[2][d[l + 2]]++;
            r->c[3][d[l + 3]]++;
        }
    }
    for (; j < n; j++)
        r->c[0][order_key1(scores[j]) >> RADIX_SHIFT1]++;
}

/* Packs the keys whose top digit is d1 into cand[]; returns their count. */
static uint32_t gather(uint32_t *cand, const float *scores, uint32_t n,
                       uint32_t d1)
{
    uint32x4_t vd = vdupq_n_u32(d1);
    uint32_t count = 0, j = 0;
    for (; j + VL <= n; j += VL) {
        uint32x4_t k = order_keys(vld1q_f32(scores + j));
        uint32_t bits = lane_bits(vceqq_u32(vshrq_n_u32(k, RADIX_SHIFT1), vd));
        uint32x4_t packed = vreinterpretq_u32_u8(
            vqtbl1q_u8(vreinterpretq_u8_u32(k), vld1q_u8(PACK[bits])));
        uint32_t pc = (uint32_t)__builtin_popcount(bits);
        if (count + VL <= n) {
            vst1q_u32(cand + count, packed);
        } else {
            uint32_t tmp[VL];
            vst1q_u32(tmp, packed);
            for (uint32_t l = 0; l < pc; l++)
                cand[count + l] = tmp[l];
        }
        count += pc;
    }
    for (; j < n; j++) {
        uint32_t k = order_key1(scores[j]);
        cand[count] = k;
        count += (k >> RADIX_SHIFT1) == d1;
    }
    return count;
}

/* Writes, ascending, the indices of keys above t and the first `ties`
 * keys equal to t; stops once `need` are out. */
static void emit(uint32_t *out, const float *scores, uint32_t n, uint32_t need,
                 uint32_t t, uint32_t ties)
{
    static const uint32_t first[4] = { 0, 1, 2, 3 };
    uint32x4_t vt = vdupq_n_u32(t), idx = vld1q_u32(first);
    uint32_t count = 0, j = 0;
    for (; j + VL <= n && count < need; j += VL) {
        uint32x4_t k = order_keys(vld1q_f32(scores + j));
        uint32_t sel = lane_bits(vcgtq_u32(k, vt));
        uint32_t eq = lane_bits(vceqq_u32(k, vt));
        if (eq) {
            uint32_t pc = (uint32_t)__builtin_popcount(eq);
            if (pc > ties)
                eq = lowest_bits(eq, ties);
            ties -= (uint32_t)__builtin_popcount(eq);
            sel |= eq;
        }
        uint32x4_t packed = vreinterpretq_u32_u8(
            vqtbl1q_u8(vreinterpretq_u8_u32(idx), vld1q_u8(PACK[sel])));
        uint32_t pc = (uint32_t)__builtin_popcount(sel);
        if (count + VL <= need) {
            vst1q_u32(out + count, packed);
        } else {
            uint32_t tmp[VL];
            vst1q_u32(tmp, packed);
            for (uint32_t l = 0; l < pc; l++)
                out[count + l] = tmp[l];
        }
        count += pc;
        idx = vaddq_u32(idx, vdupq_n_u32(VL));
    }
    for (; j < n && count < need; j++) {
        uint32_t k = order_key1(scores[j]);
        if (k > t || (k == t && ties > 0)) {
            ties -= k == t;
            out[count++] = j;
        }
    }
}

/* out[i] = start + i for i < count */
static void iota_from(uint32_t *out, uint32_t count, uint32_t start)
{
    static const uint32_t first[VL] = { 0, 1, 2, 3 };
    uint32x4_t idx = vaddq_u32(vdupq_n_u32(start), vld1q_u32(first));
    uint32_t j = 0;
    for (; j + VL <= count; j += VL) {
        vst1q_u32(out + j, idx);
        idx = vaddq_u32(idx, vdupq_n_u32(VL));
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
    static const uint32_t first[VL] = { 0, 1, 2, 3 };
    uint32x4_t vmin = vdupq_n_u32(UINT32_MAX);
    uint32x4_t vidx = vdupq_n_u32(UINT32_MAX);
    uint32x4_t idx = vld1q_u32(first);
    uint32_t j = 0;
    for (; j + VL <= n; j += VL) {
        uint32x4_t k = order_keys(vld1q_f32(scores + j));
        vidx = vbslq_u32(vcleq_u32(k, vmin), idx, vidx);
        vmin = vminq_u32(vmin, k);
        idx = vaddq_u32(idx, vdupq_n_u32(VL));
    }
    uint32_t key[VL], at[VL], best;
    vst1q_u32(key, vmin);
    vst1q_u32(at, vidx);
    uint32_t drop = last_min_fold(key, at, VL, &best);
    return last_min_tail(scores, j, n, drop, best);
}

KF_SELECT_TOP_FN(kf_select_top_neon)
{
    if (need == 0)
        return;
    if (need == n) {
        for (uint32_t j = 0; j < n; j++)
            out[j] = j;
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
