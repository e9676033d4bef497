/* Scalar parts of the SIMD top-k selections (simd/x86, simd/arm), included
 * by each instruction set's file; every function is static, so each file
 * gets its own copy compiled with its own flags.
 *
 * The selection is the one of lib/topk_c.c: scores map to order-preserving
 * 32-bit keys, a radix select finds the threshold key T (the need-th
 * largest) and how many keys equal to T are kept (`ties`), and one pass
 * emits, in index order, every key above T and the first `ties` keys equal
 * to T. Any way of finding T gives the same output, so the SIMD versions
 * use wider digits than C (11 + 11 + 10 bits) and, after the first digit,
 * work on a compacted list of candidate keys instead of all n. */
#ifndef KF_SIMD_SELECT_RADIX_H
#define KF_SIMD_SELECT_RADIX_H

#include <stdint.h>
#include <string.h>

#define RADIX_BITS1 11u /* key bits 21..31 */
#define RADIX_BITS2 11u /* key bits 10..20 */
#define RADIX_BITS3 10u /* key bits 0..9 */
#define RADIX_SHIFT1 21u
#define RADIX_SHIFT2 10u
#define RADIX_BINS 2048u
/* Independent copies of the histogram: a run of equal digits then updates
 * four counters in turn instead of waiting on one. Short lists use one
 * copy (clearing four would cost more than it saves). */
#define RADIX_COPIES 4u
#define RADIX_MANY 16384u

typedef struct radix_hist {
    uint32_t h[RADIX_COPIES][RADIX_BINS];
    uint32_t *c[RADIX_COPIES]; /* counter set for item i % 4 */
    uint32_t copies, bins;
} radix_hist;

/* Zeroed counters for `items` digits of `bins` values. */
static void radix_clear(radix_hist *r, uint32_t items, uint32_t bins)
{
    r->copies = items >= RADIX_MANY ? RADIX_COPIES : 1;
    r->bins = bins;
    for (uint32_t k = 0; k < r->copies; k++)
        memset(r->h[k], 0, bins * sizeof r->h[k][0]);
    for (uint32_t k = 0; k < RADIX_COPIES; k++)
        r->c[k] = r->h[k % r->copies];
}

/* Adds the copies into h[0]. */
static const uint32_t *radix_merge(radix_hist *r)
{
    for (uint32_t k = 1; k < r->copies; k++)
        for (uint32_t b = 0; b < r->bins; b++)
            r->h[0][b] += r->h[k][b];
    return r->h[0];
}

/* The digit holding the *remaining-th largest key; *remaining becomes its
 * rank among the keys of that digit (as the C reference counts). */
static uint32_t radix_pick(const uint32_t *hist, uint32_t bins,
                           uint32_t *remaining)
{
    uint32_t digit = bins - 1, rem = *remaining;
    /* skip empty blocks of 16 bins from the top (keys crowd a few bins) */
    while (digit >= 16) {
        uint32_t any = 0;
        for (uint32_t b = digit - 15; b <= digit; b++)
            any |= hist[b];
        if (any)
            break;
        digit -= 16;
    }
    while (hist[digit] < rem) {
        rem -= hist[digit];
        digit--;
    }
    *remaining = rem;
    return digit;
}

/* Histogram of digit (key >> shift) & mask over a candidate list. */
static void radix_count(radix_hist *r, const uint32_t *keys, uint32_t m,
                        uint32_t shift, uint32_t mask)
{
    uint32_t i = 0;
    for (; i + 4 <= m; i += 4) {
        r->c[0][(keys[i] >> shift) & mask]++;
        r->c[1][(keys[i + 1] >> shift) & mask]++;
        r->c[2][(keys[i + 2] >> shift) & mask]++;
        r->c[3][(keys[i + 3] >> shift) & mask]++;
    }
    for (; i < m; i++)
        r->c[0][(keys[i] >> shift) & mask]++;
}

/* Keeps, in order, the candidates whose key >> shift equals prefix; returns
 * their count. Writes never pass the read position, so in place is fine. */
static uint32_t radix_filter(uint32_t *keys, uint32_t m, uint32_t shift,
                             uint32_t prefix)
{
    uint32_t w = 0;
    for (uint32_t i = 0; i < m; i++) {
        uint32_t k = keys[i];
        keys[w] = k;
        w += (k >> shift) == prefix;
    }
    return w;
}

/* Given the candidates (keys whose top digit is the threshold's, `m` of
 * them in keys[]) and `rem`, the rank of the threshold among them, returns
 * the threshold key; *rem becomes the number of its ties to keep. */
static uint32_t radix_finish(radix_hist *r, uint32_t *keys, uint32_t m,
                             uint32_t prefix1, uint32_t *rem)
{
    radix_clear(r, m, RADIX_BINS);
    radix_count(r, keys, m, RADIX_SHIFT2, RADIX_BINS - 1);
    uint32_t d2 = radix_pick(radix_merge(r), RADIX_BINS, rem);
    uint32_t prefix2 = (prefix1 << RADIX_BITS2) | d2;
    m = radix_filter(keys, m, RADIX_SHIFT2, prefix2);
    radix_clear(r, m, 1u << RADIX_BITS3);
    radix_count(r, keys, m, 0, (1u << RADIX_BITS3) - 1);
    uint32_t d3 = radix_pick(radix_merge(r), 1u << RADIX_BITS3, rem);
    return (prefix2 << RADIX_BITS3) | d3;
}

/* The lowest `keep` set bits of mask (keep < popcount(mask)). */
static uint32_t lowest_bits(uint32_t mask, uint32_t keep)
{
    uint32_t out = 0;
    while (keep--) {
        out |= mask & (0u - mask);
        mask &= mask - 1;
    }
    return out;
}

/* order_key of lib/topk_c.c, one score (the tails of the one-pass scans). */
static uint32_t order_key_scalar(float score)
{
    uint32_t u;
    float s = score == 0.0f ? 0.0f : score;
    memcpy(&u, &s, sizeof u);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

/* Continues last_min_fold's scan over scores[from, n). */
static uint32_t last_min_tail(const float *scores, uint32_t from, uint32_t n,
                              uint32_t drop, uint32_t best)
{
    for (uint32_t j = from; j < n; j++) {
        uint32_t k = order_key_scalar(scores[j]);
        if (drop == UINT32_MAX || k <= best) {
            best = k;
            drop = j;
        }
    }
    return drop;
}

/* Folds per-lane (smallest key, last index holding it) pairs and then the
 * scalar tail into the index the radix path would drop: the smallest key,
 * the highest index among equal keys (ties are kept from the lowest index
 * up). `lanes` pairs with index UINT32_MAX are empty. */
static uint32_t last_min_fold(const uint32_t *key, const uint32_t *idx,
                              uint32_t lanes, uint32_t *best_key)
{
    uint32_t best = UINT32_MAX, at = UINT32_MAX;
    for (uint32_t l = 0; l < lanes; l++) {
        if (idx[l] == UINT32_MAX)
            continue;
        if (at == UINT32_MAX || key[l] < best ||
            (key[l] == best && idx[l] > at)) {
            best = key[l];
            at = idx[l];
        }
    }
    *best_key = best;
    return at;
}

#endif
