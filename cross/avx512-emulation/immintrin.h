/* AVX-512 (and everything below it) through SIMDe's portable code, plus
 * the few AVX-512 pieces this SIMDe lacks, written from Intel's
 * definitions for the cases the kernels use (finite normal inputs, NaN,
 * infinities, zero). Test-only. */
#pragma once
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <math.h>
#include <string.h>
#include <stdint.h>
typedef simde__mmask8 __mmask8;
typedef simde__mmask16 __mmask16;
typedef simde__mmask32 __mmask32;
typedef simde__mmask64 __mmask64;
#define _MM_MANT_NORM_p5_1 1
#define _MM_MANT_SIGN_src 0
static inline uint32_t emu_bits(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float emu_float(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
/* getexp: floor(log2 |x|) exactly, from the bits (denormals normalised) */
static inline float emu_getexp(float x)
{
    if (isnan(x)) return x;
    if (isinf(x)) return INFINITY;
    if (x == 0.0f) return -INFINITY;
    uint32_t u = emu_bits(x) & 0x7fffffffu;
    int e = (int)(u >> 23);
    if (e == 0) { /* denormal */
        uint32_t m = u & 0x7fffffu; int s = 0;
        while (!(m & 0x800000u)) { m <<= 1; s++; }
        return (float)(-126 - s);
    }
    return (float)(e - 127);
}
/* getmant, interval [0.5, 1), sign from the source */
static inline float emu_getmant_p5(float x)
{
    if (isnan(x)) return emu_float(emu_bits(x) | 0x400000u);
    uint32_t u = emu_bits(x), sign = u & 0x80000000u;
    if (isinf(x)) return emu_float(sign | 0x3f000000u); /* +-0.5 */
    if (x == 0.0f) return emu_float(sign | 0x3f000000u);
    uint32_t a = u & 0x7fffffffu;
    if ((a >> 23) == 0) { /* denormal: normalise */
        uint32_t m = a; while (!(m & 0x800000u)) m <<= 1;
        a = (m & 0x7fffffu) | (127u << 23);
    }
    return emu_float(sign | (a & 0x7fffffu) | (126u << 23));
}
static inline simde__m512 _mm512_getexp_ps(simde__m512 v)
{
    simde__m512_private p = simde__m512_to_private(v);
    for (int i = 0; i < 16; i++) p.f32[i] = emu_getexp(p.f32[i]);
    return simde__m512_from_private(p);
}
#define _mm512_getmant_ps(v, norm, sign) emu_getmant512(v)
static inline simde__m512 emu_getmant512(simde__m512 v)
{
    simde__m512_private p = simde__m512_to_private(v);
    for (int i = 0; i < 16; i++) p.f32[i] = emu_getmant_p5(p.f32[i]);
    return simde__m512_from_private(p);
}
/* lane-wise fill-ins for what this SIMDe lacks */
#define EMU_F(v) simde__m512_to_private(v).f32
#define EMU_I(v) simde__m512i_to_private(v)
static inline simde__m512 _mm512_cvtepi32_ps(simde__m512i a)
{ simde__m512i_private p = EMU_I(a); simde__m512_private r; for (int i = 0; i < 16; i++) r.f32[i] = (float)p.i32[i]; return simde__m512_from_private(r); }
static inline simde__m256 _mm512_extractf32x8_ps(simde__m512 a, int hi)
{ simde__m512_private p = simde__m512_to_private(a); simde__m256_private r; for (int i = 0; i < 8; i++) r.f32[i] = p.f32[i + 8 * hi]; return simde__m256_from_private(r); }
static inline simde__m512 _mm512_i32gather_ps(simde__m512i idx, const void *base, int scale)
{ simde__m512i_private p = EMU_I(idx); simde__m512_private r; for (int i = 0; i < 16; i++) memcpy(&r.f32[i], (const char *)base + (int64_t)p.i32[i] * scale, 4); return simde__m512_from_private(r); }
static inline simde__mmask16 _mm512_mask_cmp_ps_mask(simde__mmask16 k, simde__m512 a, simde__m512 b, const int imm)
{ return (simde__mmask16)(k & simde_mm512_cmp_ps_mask(a, b, imm)); }
static inline simde__mmask16 _mm512_mask_cmpeq_epu32_mask(simde__mmask16 k, simde__m512i a, simde__m512i b)
{ simde__m512i_private p = EMU_I(a), q = EMU_I(b); simde__mmask16 r = 0; for (int i = 0; i < 16; i++) r |= (simde__mmask16)((p.u32[i] == q.u32[i]) << i); return (simde__mmask16)(r & k); }
static inline simde__mmask16 _mm512_mask_cmpgt_epu32_mask(simde__mmask16 k, simde__m512i a, simde__m512i b)
{ simde__m512i_private p = EMU_I(a), q = EMU_I(b); simde__mmask16 r = 0; for (int i = 0; i < 16; i++) r |= (simde__mmask16)((p.u32[i] > q.u32[i]) << i); return (simde__mmask16)(r & k); }
static inline void _mm512_mask_storeu_epi32(void *dst, simde__mmask16 k, simde__m512i a)
{ simde__m512i_private p = EMU_I(a); for (int i = 0; i < 16; i++) if (k >> i & 1) memcpy((char *)dst + 4 * i, &p.i32[i], 4); }
static inline void _mm512_mask_storeu_ps(void *dst, simde__mmask16 k, simde__m512 a)
{ simde__m512_private p = simde__m512_to_private(a); for (int i = 0; i < 16; i++) if (k >> i & 1) memcpy((char *)dst + 4 * i, &p.f32[i], 4); }
static inline simde__m512i _mm512_maskz_loadu_epi32(simde__mmask16 k, const void *src)
{ simde__m512i_private r; for (int i = 0; i < 16; i++) { r.i32[i] = 0; if (k >> i & 1) memcpy(&r.i32[i], (const char *)src + 4 * i, 4); } return simde__m512i_from_private(r); }
static inline simde__m512 _mm512_maskz_loadu_ps(simde__mmask16 k, const void *src)
{ simde__m512_private r; for (int i = 0; i < 16; i++) { r.f32[i] = 0.0f; if (k >> i & 1) memcpy(&r.f32[i], (const char *)src + 4 * i, 4); } return simde__m512_from_private(r); }
static inline uint32_t _mm512_reduce_min_epu32(simde__m512i a)
{ simde__m512i_private p = EMU_I(a); uint32_t m = p.u32[0]; for (int i = 1; i < 16; i++) m = p.u32[i] < m ? p.u32[i] : m; return m; }
static inline simde__m512i _mm512_srai_epi32(simde__m512i a, unsigned n)
{ simde__m512i_private p = EMU_I(a); for (int i = 0; i < 16; i++) p.i32[i] = n > 31 ? (p.i32[i] < 0 ? -1 : 0) : p.i32[i] >> n; return simde__m512i_from_private(p); }
static inline int _mm_popcnt_u32(uint32_t x) { return __builtin_popcount(x); }
static inline void _mm512_mask_storeu_epi8(void *dst, simde__mmask64 k, simde__m512i a)
{ simde__m512i_private p = EMU_I(a); for (int i = 0; i < 64; i++) if (k >> i & 1) ((char *)dst)[i] = (char)p.i8[i]; }
static inline simde__m512i _mm512_maskz_loadu_epi8(simde__mmask64 k, const void *src)
{ simde__m512i_private r; for (int i = 0; i < 64; i++) r.i8[i] = (k >> i & 1) ? ((const int8_t *)src)[i] : 0; return simde__m512i_from_private(r); }
/* exact semantics where SIMDe approximates: fused multiply-adds, and
 * vscalefps as a * 2^floor(b) rounded once */
#undef _mm512_fmadd_ps
#undef _mm512_fnmadd_ps
#undef _mm512_scalef_ps
static inline simde__m512 emu_fma(simde__m512 a, simde__m512 b, simde__m512 c, int neg)
{ simde__m512_private p = simde__m512_to_private(a), q = simde__m512_to_private(b), s = simde__m512_to_private(c), r;
  for (int i = 0; i < 16; i++) r.f32[i] = fmaf(neg ? -p.f32[i] : p.f32[i], q.f32[i], s.f32[i]); return simde__m512_from_private(r); }
#define _mm512_fmadd_ps(a, b, c) emu_fma(a, b, c, 0)
#define _mm512_fnmadd_ps(a, b, c) emu_fma(a, b, c, 1)
static inline simde__m512 _mm512_scalef_ps(simde__m512 a, simde__m512 b)
{ simde__m512_private p = simde__m512_to_private(a), q = simde__m512_to_private(b), r;
  for (int i = 0; i < 16; i++) { float e = floorf(q.f32[i]); r.f32[i] = isnan(p.f32[i]) || isnan(e) ? NAN : e > 300.0f ? p.f32[i] * INFINITY : e < -300.0f ? p.f32[i] * 0.0f : ldexpf(p.f32[i], (int)e); }
  return simde__m512_from_private(r); }
