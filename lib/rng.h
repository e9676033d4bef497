/* Counter-based noise: u(seed, layer, head, query position, key position)
 * is a pure function of its key, so results do not depend on thread count,
 * call order or instruction set. The row's coordinates are mixed once per
 * row (scalar, 64-bit) into a 32-bit salt; each element then costs one
 * round of a 32-bit integer hash of (key position XOR salt), which
 * vectorises with plain 32-bit multiplies. */
#ifndef KF_RNG_H
#define KF_RNG_H

#include <stdint.h>

#include "fastmath.h"

typedef struct kf_noise_key {
    uint32_t salt;
} kf_noise_key;

static inline uint64_t kf_splitmix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* One key per (seed, layer, query head, query position). */
static inline kf_noise_key kf_noise_row_key(uint64_t seed, uint32_t layer,
                                            uint32_t head, int32_t qpos)
{
    uint64_t k = kf_splitmix64(seed);
    k = kf_splitmix64(k ^ (((uint64_t)layer << 32) | head));
    k = kf_splitmix64(k ^ (uint64_t)(uint32_t)qpos);
    kf_noise_key key = { (uint32_t)(k >> 32) };
    return key;
}

/* 32-bit avalanche (xorshift-multiply, constants from Wellons' hash
 * prospector "lowbias32"): a bijection with low bias. */
static inline uint32_t kf_hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x21f0aaadu;
    x ^= x >> 15;
    x *= 0x735a2d97u;
    x ^= x >> 15;
    return x;
}

/* Random bits of element (row key, key position). The salt enters by XOR,
 * not by addition, so two rows are not shifted copies of each other. */
static inline uint32_t kf_noise_bits(kf_noise_key key, int32_t kpos)
{
    return kf_hash32((uint32_t)kpos ^ key.salt);
}

/* Uniform in (0, 1), exclusive: (2m + 1) / 2^24 with m the top 23 bits;
 * exact in fp32, never 0 or 1. */
static inline float kf_bits_to_unit(uint32_t bits)
{
    return (float)((bits >> 8) | 1u) * 0x1p-24f;
}

/* Exp(1) sample E = -ln u of element (row key, key position): in
 * [5.9e-8, 16.7], so 1 / E <= 1.7e7. */
static inline float kf_exponential_f32(kf_noise_key key, int32_t kpos)
{
    return -kf_ln_f32(kf_bits_to_unit(kf_noise_bits(key, kpos)));
}

/* Gumbel(0, 1) sample -ln(-ln u) = -ln E of element (row key, key
 * position). */
static inline float kf_gumbel_f32(kf_noise_key key, int32_t kpos)
{
    return -kf_ln_f32(kf_exponential_f32(key, kpos));
}

#endif
