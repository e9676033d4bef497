/* NEON row compaction: the bytes of lib/rows_c.c. Rows move down only and
 * never overlap (src row > dst row, stride >= row_bytes), so each row is
 * copied with 16-byte loads and stores (paired into 64-byte steps), the
 * last one overlapping the previous when row_bytes is not a multiple of
 * 16; short rows use two overlapping narrower copies. Common row sizes get
 * loops with the size as a constant, fully unrolled. Large compactions
 * prefetch the source rows ahead. */
#include <arm_neon.h>
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

INLINE void copy16(uint8_t *d, const uint8_t *s, size_t at)
{
    vst1q_u8(d + at, vld1q_u8(s + at));
}

/* 1..15 bytes: two copies of the widest power of two <= rb, overlapping */
INLINE void copy_short(uint8_t *d, const uint8_t *s, size_t rb)
{
    if (rb >= 8) {
        uint64_t a, b;
        memcpy(&a, s, 8);
        memcpy(&b, s + rb - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + rb - 8, &b, 8);
    } else if (rb >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + rb - 4, 4);
        memcpy(d, &a, 4);
        memcpy(d + rb - 4, &b, 4);
    } else if (rb >= 2) {
        uint16_t a, b;
        memcpy(&a, s, 2);
        memcpy(&b, s + rb - 2, 2);
        memcpy(d, &a, 2);
        memcpy(d + rb - 2, &b, 2);
    } else {
        *d = *s;
    }
}

INLINE void copy_row(uint8_t *d, const uint8_t *s, size_t rb)
{
    if (rb < 16) {
        copy_short(d, s, rb);
        return;
    }
    size_t at = 0;
    for (; at + 64 <= rb; at += 64) {
        uint8x16x4_t v = vld1q_u8_x4(s + at);
        vst1q_u8_x4(d + at, v);
    }
    for (; at + 16 <= rb; at += 16)
        copy16(d, s, at);
    if (at < rb)
        copy16(d, s, rb - 16);
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
                __builtin_prefetch(next + at, 0, 3);
            copy_row(base + (size_t)i * stride, base + (size_t)keep[i] * stride, rb);
        }
    }
    for (; i < n_keep; i++)
        copy_row(base + (size_t)i * stride, base + (size_t)keep[i] * stride, rb);
}

KF_COMPACT_ROWS_FN(kf_compact_rows_neon)
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
