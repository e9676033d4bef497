#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"
#include "harness.h"

#define GUARD_FILL 0xa5

unsigned long harness_cases;

int harness_variants(variant out[3])
{
    static const uint32_t isas[3] = { KF_CPU_AVX2, KF_CPU_AVX512, KF_CPU_NEON };
    uint32_t flags = kf_cpu_detect();
    int count = 0;
    for (int i = 0; i < 3; i++) {
        if (!(flags & isas[i]))
            continue;
        variant *v = &out[count];
        v->isa = isas[i];
        v->name = kf_dsp_isa_name(isas[i]);
        kf_dsp_init(&v->dsp, isas[i]);
        /* built for this ISA at all? */
        int any = 0;
        for (int k = 0; k < KF_KERNEL_COUNT; k++)
            any |= v->dsp.isa[k] == isas[i];
        if (any)
            count++;
    }
    return count;
}

uint64_t harness_seed(void)
{
    const char *s = getenv("KF_SIMD_SEED");
    if (s && *s)
        return strtoull(s, NULL, 0);
    return 0x6b66u; /* fixed: runs are reproducible by default */
}

void rng_init(rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1b54a32d192ed03ull);
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    r->s = (x ^ (x >> 31)) | 1;
}

uint32_t rng_u32(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return (uint32_t)((r->s * 0x2545f4914f6cdd1dull) >> 32);
}

uint32_t rng_below(rng *r, uint32_t n)
{
    return (uint32_t)(((uint64_t)rng_u32(r) * n) >> 32);
}

float rng_float(rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)(rng_u32(r) >> 8) * 0x1p-24f;
}

float f32_from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

uint32_t f32_to_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

void harness_fail(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fail_msg("%s [replay: KF_SIMD_SEED=0x%" PRIx64 "]", msg, harness_seed());
}

/* cmocka passes the variant through the test's state */
typedef struct bound_check {
    const check *c;
    const variant *v;
} bound_check;

static void run_bound(void **state)
{
    const bound_check *b = *state;
    b->c->fn(b->v);
}

int run_checks(const char *group, const check *checks, int n_checks)
{
    variant vars[3];
    int n_vars = harness_variants(vars);
    int failed = 0;
    if (!n_vars)
        printf("[ INFO     ] %s: no SIMD variant built for this CPU; "
               "nothing to compare\n", group);
    for (int vi = 0; vi < n_vars; vi++) {
        struct CMUnitTest tests[32];
        bound_check bound[32];
        char names[32][96];
        int n = 0;
        for (int i = 0; i < n_checks && n < 32; i++) {
            if (vars[vi].dsp.isa[checks[i].kernel] != vars[vi].isa)
                continue;
            bound[n] = (bound_check){ &checks[i], &vars[vi] };
            snprintf(names[n], sizeof names[n], "%s/%s", checks[i].name,
                     vars[vi].name);
            tests[n] = (struct CMUnitTest){ names[n], run_bound, NULL, NULL,
                                            &bound[n] };
            n++;
        }
        char gname[96];
        snprintf(gname, sizeof gname, "%s/%s", group, vars[vi].name);
        harness_cases = 0;
        fflush(stdout);
        failed += _cmocka_run_group_tests(gname, tests, (size_t)n, NULL, NULL);
        printf("[ INFO     ] %s: %lu cases compared with C\n", gname, harness_cases);
        fflush(stdout);
    }
    if (failed)
        printf("[ SEED     ] KF_SIMD_SEED=0x%" PRIx64 "\n", harness_seed());
    return failed;
}

void guarded_alloc(guarded *g, size_t bytes, size_t misalign)
{
    g->bytes = bytes;
    g->raw = malloc(bytes + 2 * GUARD_BYTES + 128);
    assert_non_null(g->raw);
    /* a 64-byte aligned point, then the chosen misalignment */
    uintptr_t at = ((uintptr_t)g->raw + GUARD_BYTES + 63) & ~(uintptr_t)63;
    g->data = (uint8_t *)at + misalign;
    memset(g->data - GUARD_BYTES, GUARD_FILL, GUARD_BYTES);
    memset(g->data + bytes, GUARD_FILL, GUARD_BYTES);
}

int guard_ok(const guarded *g)
{
    for (size_t i = 0; i < GUARD_BYTES; i++)
        if (g->data[-1 - (ptrdiff_t)i] != GUARD_FILL
            || g->data[g->bytes + i] != GUARD_FILL)
            return 0;
    return 1;
}

void guarded_free(guarded *g)
{
    free(g->raw);
    g->raw = g->data = NULL;
}
