/* AVX-512 row compaction: the bytes of lib/rows_c.c. Rows move down only
 * and never overlap (src row > dst row, stride >= row_bytes), so each row
 * is copied with full-width loads and stores, the last vector overlapping
 * the previous one when row_bytes is not a multiple of 64; rows shorter
 * than 64 bytes use one masked byte load and store. Common row sizes get
 * loops with the size as a constant, fully unrolled. Large compactions
 * prefetch the source rows ahead. */
#include <immintrin.h>
#include <string.h>

#include "dsp.h"

#define INLINE static inline __attribute__((always_inline))

/* Compactions moving more than this many bytes prefetch the source rows
 * ahead: the rows kept are scattered, which the hardware prefetchers follow
 * poorly once the data comes from memory. */
#define PREFETCH_FROM (1u << 20)
/* how far ahead, in bytes of rows, and how much of each row */
#define PREFETCH_AHEAD 8192u
#define PREFETCH_ROW_MAX 256u

INLINE void copy64(uint8_t *d, const uint8_t *s, size_t at)
{
    _mm512_storeu_si512(d + at, _mm512_loadu_si512(s + at));
}

INLINE void copy_row(uint8_t *d, const uint8_t *s, size_t rb)
{
    if (rb < 64) {
        __mmask64 m = rb ? (~0ull >> (64 - rb)) : 0;
        _mm512_mask_storeu_epi8(d, m, _mm512_maskz_loadu_epi8(m, s));
        return;
    }
    size_t at = 0;
    for (; at + 256 <= rb; at += 256) {
        __m512i a = _mm512_loadu_si512(s + at);
        __m512i b = _mm512_loadu_si512(s + at + 64);
        __m512i c = _mm512_loadu_si512(s + at + 128);
        __m512i e = _mm512_loadu_si512(s + at + 192);
        _mm512_storeu_si512(d + at, a);
        _mm512_storeu_si512(d + at + 64, b);
        _mm512_storeu_si512(d + at + 128, c);
        _mm512_storeu_si512(d + at + 192, e);
    }
    for (; at + 64 <= rb; at += 64)
        copy64(d, s, at);
    if (at < rb)
        copy64(d, s, rb - 64);
}

/* rows first.. of keep; every one of them moves (keep[i] > i) */
INLINE void move_rows(uint8_t *base, size_t stride, const uint32_t *keep,
                      uint32_t first, uint32_t n_keep, size_t rb)
{
    uint32_t i = first;
    if ((uint64_t)(n_keep - first) * rb > PREFETCH_FROM) {
        uint32_t ahead = (uint32_t)(PREFETCH_AHEAD / rb) + 1;
        size_t lines = rb < PREFETCH_ROW_MAX ? rb : PREFETCH_ROW_MAX;
        for (; i + ahead < n_keep; i++) {
            const uint8_t *next = base + (size_t)keep[i + ahead] * stride;
            for (size_t at = 0; at < lines; at += 64)
                _mm_prefetch((const char *)next + at, _MM_HINT_T0);
            copy_row(base + (size_t)i * stride, base + (size_t)keep[i] * stride, rb);
        }
    }
    for (; i < n_keep; i++)
        copy_row(base + (size_t)i * stride, base + (size_t)keep[i] * stride, rb);
}

KF_COMPACT_ROWS_FN(kf_compact_rows_avx512)
{
    /* keep is ascending and distinct, so keep[i] >= i, and once a row
     * moves every later one does */
    uint32_t first = 0;
    while (first < n_keep && keep[first] == first)
        first++;
    if (first == n_keep || row_bytes == 0)
        return;
    switch (row_bytes) {
    case 64: move_rows(base, stride, keep, first, n_keep, 64); break;
    case 96: move_rows(base, stride, keep, first, n_keep, 96); break;
    case 128: move_rows(base, stride, keep, first, n_keep, 128); break;
    case 192: move_rows(base, stride, keep, first, n_keep, 192); break;
    case 256: move_rows(base, stride, keep, first, n_keep, 256); break;
    case 384: move_rows(base, stride, keep, first, n_keep, 384); break;
    case 512: move_rows(base, stride, keep, first, n_keep, 512); break;
    default:
        if (row_bytes > 4096) {
            /* long rows: memcpy's own loop is as good */
            for (uint32_t i = first; i < n_keep; i++)
                memcpy(base + (size_t)i * stride,
                       base + (size_t)keep[i] * stride, row_bytes);
        } else {
            move_rows(base, stride, keep, first, n_keep, row_bytes);
        }
    }
}
