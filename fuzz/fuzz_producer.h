/* Turns a fuzzer's input bytes into parameters. The targets read every
 * decision (sizes, flags, values, which call comes next) from here, so a
 * mutation of one byte changes one decision and the corpus stays
 * meaningful. Reads past the end return zeros: a short input is a valid,
 * short program, never an error. */
#ifndef KF_FUZZ_PRODUCER_H
#define KF_FUZZ_PRODUCER_H

#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct fz_input {
    const uint8_t *data;
    size_t size, at;
} fz_input;

static inline void fz_init(fz_input *in, const uint8_t *data, size_t size)
{
    in->data = data;
    in->size = size;
    in->at = 0;
}

static inline size_t fz_left(const fz_input *in)
{
    return in->size - in->at;
}

static inline uint8_t fz_u8(fz_input *in)
{
    return in->at < in->size ? in->data[in->at++] : 0;
}

static inline uint32_t fz_u32(fz_input *in)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)fz_u8(in) << (8 * i);
    return v;
}

static inline uint64_t fz_u64(fz_input *in)
{
    uint64_t lo = fz_u32(in);
    return lo | (uint64_t)fz_u32(in) << 32;
}

/* Uniform-ish in [lo, hi] (hi - lo < 2^32), from as few bytes as the range
 * needs. */
static inline uint32_t fz_range(fz_input *in, uint32_t lo, uint32_t hi)
{
    uint32_t span = hi - lo, v;
    if (span == 0)
        return lo;
    if (span < 256u)
        v = fz_u8(in);
    else if (span < 65536u)
        v = fz_u8(in) | (uint32_t)fz_u8(in) << 8;
    else
        v = fz_u32(in);
    return span == UINT32_MAX ? v : lo + v % (span + 1);
}

/* True with probability about num/256. */
static inline int fz_chance(fz_input *in, unsigned num)
{
    return fz_u8(in) < num;
}

/* A float that is usually ordinary ([-8, 8)) and sometimes one of the
 * values hosts get wrong: NaN, +-inf, huge, denormal, -0. */
static inline float fz_float(fz_input *in)
{
    uint8_t kind = fz_u8(in);
    if (kind < 224) {
        uint16_t m = (uint16_t)(fz_u8(in) | fz_u8(in) << 8);
        return ((float)m - 32768.0f) * (8.0f / 32768.0f);
    }
    switch (kind & 15) {
    case 0: return NAN;
    case 1: return -NAN;
    case 2: return INFINITY;
    case 3: return -INFINITY;
    case 4: return FLT_MAX;
    case 5: return -FLT_MAX;
    case 6: return FLT_TRUE_MIN;
    case 7: return -FLT_MIN / 2.0f;
    case 8: return -0.0f;
    case 9: return 0.0f;
    case 10: return 1e30f;
    case 11: return -1e30f;
    case 12: return 88.0f; /* e^x near the fp32 limit */
    case 13: return -104.0f; /* e^x denormal */
    default: {
        uint32_t bits = fz_u32(in); /* any bit pattern */
        float f;
        memcpy(&f, &bits, sizeof f);
        return f;
    }
    }
}

/* A size that is usually small (about [0, small]) and sometimes absurd:
 * zero, near a power of two, or near SIZE_MAX, for overflow checks. */
static inline size_t fz_size(fz_input *in, size_t small)
{
    uint8_t kind = fz_u8(in);
    if (kind < 232)
        return fz_range(in, 0, (uint32_t)small);
    switch (kind & 7) {
    case 0: return 0;
    case 1: return SIZE_MAX;
    case 2: return SIZE_MAX / 2 + 1;
    case 3: return SIZE_MAX / 4 + 1;
    case 4: return (size_t)1 << 31;
    case 5: return (size_t)UINT32_MAX + 1;
    case 6: return SIZE_MAX / 3;
    default: return (size_t)fz_u64(in);
    }
}

#endif
