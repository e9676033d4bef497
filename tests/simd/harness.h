/* Shared pieces of the variant-vs-reference tests (checkasm style): every
 * SIMD variant the CPU supports is called on the same inputs as the C
 * reference and must give the same bits. */
#ifndef KF_SIMD_HARNESS_H
#define KF_SIMD_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>

#include <cmocka.h>

#include "dsp.h"

/* One instruction set under test: its table (C, overridden by the ISA's
 * own kernels only) and its name. */
typedef struct variant {
    uint32_t isa;
    const char *name;
    kf_dsp dsp;
} variant;

/* The built variants the CPU supports; returns how many (at most 3). */
int harness_variants(variant out[3]);

/* Base seed: KF_SIMD_SEED from the environment, else a fixed one. Each
 * check derives its own stream from it, so one seed replays a run. */
uint64_t harness_seed(void);

typedef struct rng {
    uint64_t s;
} rng;

void rng_init(rng *r, uint64_t seed, uint64_t stream);
uint32_t rng_u32(rng *r);
uint32_t rng_below(rng *r, uint32_t n); /* [0, n), n > 0 */
float rng_float(rng *r, float lo, float hi); /* [lo, hi) */

/* Bit copies. */
float f32_from_bits(uint32_t u);
uint32_t f32_to_bits(float x);

/* Comparisons made so far (each check adds its own); run_checks prints
 * the count per variant. */
extern unsigned long harness_cases;

/* Fails the running test with the seed and a message (printf format). */
void harness_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* A check is a function of the variant under test; run_checks builds one
 * cmocka group per variant ("<group>/<isa>") and returns the number of
 * failed tests. */
typedef void (*check_fn)(const variant *v);
typedef struct check {
    const char *name;
    check_fn fn;
    /* only variants that replace this kernel are tested (KF_KERNEL_*) */
    int kernel;
} check;

int run_checks(const char *group, const check *checks, int n_checks);

/* 64-byte canaries before and after a buffer of `bytes` bytes at a chosen
 * misalignment; guard_ok checks both. */
typedef struct guarded {
    uint8_t *raw;
    uint8_t *data; /* the buffer itself */
    size_t bytes;
} guarded;

#define GUARD_BYTES 64

void guarded_alloc(guarded *g, size_t bytes, size_t misalign);
int guard_ok(const guarded *g);
void guarded_free(guarded *g);

#endif
