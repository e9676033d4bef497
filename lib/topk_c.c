/* Reference top-k selection: an MSB-first radix select over order-preserving
 * integer keys of the scores finds the threshold key in four linear passes;
 * one more pass emits the winners in ascending index order, taking tied
 * threshold keys from the lowest index up. */
#include "dsp.h"
#include "fastmath.h"

/* Larger score => larger key; -0 and +0 map together. */
static uint32_t order_key(float score)
{
    uint32_t u = kf_f32_bits(score == 0.0f ? 0.0f : score);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

KF_SELECT_TOP_FN(kf_select_top_c)
{
    if (need == 0)
        return;
    for (uint32_t j = 0; j < n; j++)
        keys[j] = order_key(scores[j]);

    uint32_t prefix = 0, prefix_mask = 0, remaining = need;
    for (int shift = 24; shift >= 0; shift -= 8) {
        uint32_t hist[256] = { 0 };
        for (uint32_t j = 0; j < n; j++)
            if ((keys[j] & prefix_mask) == prefix)
                hist[(keys[j] >> shift) & 0xffu]++;
        uint32_t digit = 255;
        while (hist[digit] < remaining) {
            remaining -= hist[digit];
            digit--;
        }
        prefix |= digit << shift;
        prefix_mask |= 0xffu << shift;
    }

    /* prefix is the need-th largest key; `remaining` of its ties are kept */
    uint32_t count = 0;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t key = keys[j];
        if (key > prefix || (key == prefix && remaining > 0)) {
            remaining -= key == prefix;
            out[count++] = j;
        }
    }
}
