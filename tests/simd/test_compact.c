/* Row compaction: every variant must leave the buffer byte-identical to
 * the C reference: moved rows, untouched gaps between rows, untouched rows
 * past the kept ones, and 64 guard bytes on each side. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

enum { KEEP_RANDOM, KEEP_ALL, KEEP_PREFIX, KEEP_DROP_FIRST, KEEP_LAST,
       KEEP_WINDOW, KEEP_COUNT };

/* keep[] ascending, returns n_keep */
static uint32_t make_keep(uint32_t *keep, uint32_t n, int kind, rng *r)
{
    uint32_t count = 0;
    switch (kind) {
    case KEEP_ALL:
        for (uint32_t j = 0; j < n; j++)
            keep[count++] = j;
        break;
    case KEEP_PREFIX: { /* a kept prefix, then random */
        uint32_t p = rng_below(r, n + 1);
        for (uint32_t j = 0; j < n; j++)
            if (j < p || rng_below(r, 2))
                keep[count++] = j;
        break;
    }
    case KEEP_DROP_FIRST:
        for (uint32_t j = 1; j < n; j++)
            keep[count++] = j;
        break;
    case KEEP_LAST:
        if (n)
            keep[count++] = n - 1;
        break;
    case KEEP_WINDOW: { /* key rows then a recent window, like a selection */
        uint32_t w = n / 3;
        for (uint32_t j = 0; j + w < n; j++)
            if (rng_below(r, 3) == 0)
                keep[count++] = j;
        for (uint32_t j = n - w; j < n; j++)
            keep[count++] = j;
        break;
    }
    default:
        for (uint32_t j = 0; j < n; j++)
            if (rng_below(r, 2))
                keep[count++] = j;
    }
    return count;
}

static void compare_once(const variant *v, uint32_t n_rows, size_t row_bytes,
                         size_t stride, int kind, rng *r)
{
    harness_cases++;
    size_t bytes = n_rows ? (n_rows - 1) * stride + row_bytes : 0;
    size_t misalign = rng_below(r, 64);
    guarded a, b;
    guarded_alloc(&a, bytes, misalign);
    guarded_alloc(&b, bytes, rng_below(r, 64));
    for (size_t i = 0; i < bytes; i++)
        a.data[i] = (uint8_t)rng_u32(r);
    memcpy(b.data, a.data, bytes);
    uint32_t *keep = malloc((n_rows + 1) * sizeof *keep);
    uint32_t n_keep = make_keep(keep, n_rows, kind, r);

    kf_compact_rows_c(a.data, stride, keep, n_keep, row_bytes);
    v->dsp.compact_rows(b.data, stride, keep, n_keep, row_bytes);

    if (memcmp(a.data, b.data, bytes) != 0) {
        size_t i = 0;
        while (a.data[i] == b.data[i])
            i++;
        harness_fail("compact_rows/%s rows=%u row_bytes=%zu stride=%zu keep=%d "
                     "n_keep=%u: byte %zu (row %zu) differs",
                     v->name, n_rows, row_bytes, stride, kind, n_keep, i,
                     i / stride);
    }
    if (!guard_ok(&b))
        harness_fail("compact_rows/%s rows=%u row_bytes=%zu stride=%zu: write "
                     "outside the buffer", v->name, n_rows, row_bytes, stride);
    free(keep);
    guarded_free(&a);
    guarded_free(&b);
}

static void compact_row_sizes(const variant *v)
{
    rng r;
    rng_init(&r, harness_seed(), 21);
    for (size_t rb = 1; rb <= 600; rb += rb < 200 ? 1 : 7)
        for (int kind = 0; kind < KEEP_COUNT; kind++) {
            size_t stride = rb + (rng_below(&r, 2) ? 0 : rng_below(&r, 70));
            compare_once(v, 1 + rng_below(&r, 40), rb, stride, kind, &r);
        }
}

static void compact_common_sizes(const variant *v)
{
    static const size_t sizes[] = { 2, 4, 8, 16, 32, 48, 64, 96, 128, 192,
                                    256, 384, 512, 1024, 4096, 5000 };
    rng r;
    rng_init(&r, harness_seed(), 22);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int kind = 0; kind < KEEP_COUNT; kind++) {
            size_t rb = sizes[i];
            /* packed rows, [token][head][dim] strides, odd strides */
            size_t strides[3] = { rb, rb * 4, rb + 1 + rng_below(&r, 33) };
            for (int s = 0; s < 3; s++)
                compare_once(v, 1 + rng_below(&r, 300), rb, strides[s], kind, &r);
        }
}

static void compact_large(const variant *v)
{
    rng r;
    rng_init(&r, harness_seed(), 23);
    compare_once(v, 65537, 128, 128, KEEP_RANDOM, &r);
    compare_once(v, 20000, 256, 1024, KEEP_WINDOW, &r);
    compare_once(v, 4097, 600, 613, KEEP_PREFIX, &r);
    compare_once(v, 30001, 96, 96, KEEP_RANDOM, &r);
}

static void compact_edge(const variant *v)
{
    rng r;
    rng_init(&r, harness_seed(), 24);
    /* no rows kept, a single row, nothing moves */
    for (size_t rb = 1; rb <= 130; rb++) {
        compare_once(v, 0, rb, rb, KEEP_RANDOM, &r);
        compare_once(v, 1, rb, rb, KEEP_ALL, &r);
        compare_once(v, 2, rb, rb, KEEP_LAST, &r);
    }
}

/* A quantized cache (KF_DTYPE_ROW_BYTES): n_heads heads of opaque rows in
 * one buffer, head-major ([head][row], stride >= row_bytes) or
 * interleaved ([row][head], stride n_heads * row_bytes), each head
 * compacted with its own keep list as kf_compact does; the whole buffer
 * and its guards must come out as C leaves them. */
static void compare_heads(const variant *v, uint32_t n_rows, size_t rb,
                          uint32_t n_heads, int interleaved, size_t pad,
                          int kind, rng *r)
{
    harness_cases++;
    size_t stride = interleaved ? n_heads * rb + pad : rb + pad;
    size_t head_stride = interleaved ? rb : n_rows * stride;
    size_t bytes = (n_heads - 1) * head_stride + (n_rows - 1) * stride + rb;
    guarded a, b;
    guarded_alloc(&a, bytes, rng_below(r, 64));
    guarded_alloc(&b, bytes, rng_below(r, 64));
    for (size_t i = 0; i < bytes; i++)
        a.data[i] = (uint8_t)rng_u32(r);
    memcpy(b.data, a.data, bytes);
    uint32_t *keep = malloc((n_rows + 1) * sizeof *keep);
    for (uint32_t g = 0; g < n_heads; g++) {
        uint32_t n_keep = make_keep(keep, n_rows, kind, r);
        kf_compact_rows_c(a.data + g * head_stride, stride, keep, n_keep, rb);
        v->dsp.compact_rows(b.data + g * head_stride, stride, keep, n_keep, rb);
    }
    if (memcmp(a.data, b.data, bytes) != 0) {
        size_t i = 0;
        while (a.data[i] == b.data[i])
            i++;
        harness_fail("compact_rows/%s quantized rows=%u row_bytes=%zu "
                     "heads=%u %s pad=%zu keep=%d: byte %zu differs",
                     v->name, n_rows, rb, n_heads,
                     interleaved ? "interleaved" : "head-major", pad, kind, i);
    }
    if (!guard_ok(&b))
        harness_fail("compact_rows/%s quantized rows=%u row_bytes=%zu: write "
                     "outside the buffer", v->name, n_rows, rb);
    free(keep);
    guarded_free(&a);
    guarded_free(&b);
}

/* Row sizes of quantized caches: odd ones (1, 3, 66, 4098 past the 4 KiB
 * the variants hand to memcpy), q4_0 and q8_0 blocks of 32 values (18 and
 * 34 bytes) and head_dim 64 / 128 rows of them (36, 68, 72, 136), and
 * sizes around the vector widths. */
static void compact_quantized(const variant *v)
{
    static const size_t sizes[] = { 1, 2, 3, 5, 15, 17, 18, 31, 33, 34, 36,
                                    63, 65, 66, 68, 72, 127, 129, 136, 4095,
                                    4097, 4098, 8194 };
    rng r;
    rng_init(&r, harness_seed(), 25);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        for (int kind = 0; kind < KEEP_COUNT; kind++)
            for (int inter = 0; inter < 2; inter++) {
                size_t rb = sizes[i];
                uint32_t rows = 1 + rng_below(&r, rb > 1000 ? 24 : 120);
                compare_heads(v, rows, rb, 1 + rng_below(&r, 4), inter,
                              rng_below(&r, 2) ? 0 : rng_below(&r, 9), kind,
                              &r);
            }
    /* more than 1 MiB moved: the prefetching path, with odd rows */
    compare_heads(v, 40000, 34, 1, 0, 0, KEEP_RANDOM, &r);
    compare_heads(v, 20000, 66, 2, 1, 0, KEEP_WINDOW, &r);
    compare_heads(v, 9000, 137, 1, 0, 3, KEEP_PREFIX, &r);
}

int main(void)
{
    static const check checks[] = {
        { "compact_row_sizes_1_600", compact_row_sizes, KF_KERNEL_COMPACT_ROWS },
        { "compact_common_sizes", compact_common_sizes, KF_KERNEL_COMPACT_ROWS },
        { "compact_large", compact_large, KF_KERNEL_COMPACT_ROWS },
        { "compact_edge", compact_edge, KF_KERNEL_COMPACT_ROWS },
        { "compact_quantized", compact_quantized, KF_KERNEL_COMPACT_ROWS },
    };
    return run_checks("simd_compact", checks, (int)(sizeof checks / sizeof checks[0]));
}
