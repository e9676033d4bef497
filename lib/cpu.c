/* CPU feature detection. An instruction set counts only when the CPU has it
 * and the OS saves its registers across context switches (XGETBV), so a
 * kernel never faults on a machine or VM that hides the wide state. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "keyformer.h"
#include "cpu.h"

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#include <cpuid.h>

/* XCR0 bits: SSE and AVX (YMM) state; opmask, ZMM_Hi256 and Hi16_ZMM. */
#define XCR0_YMM 0x06u
#define XCR0_ZMM 0xe6u

static uint64_t read_xcr0(void)
{
    uint32_t lo, hi;
    /* the xgetbv mnemonic needs -mxsave; the bytes do not */
    __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}

static uint32_t detect(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    int popcnt = (c >> 23) & 1;
    if (!osxsave || !avx)
        return 0;
    uint64_t xcr0 = read_xcr0();
    if ((xcr0 & XCR0_YMM) != XCR0_YMM)
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512 = ((b >> 16) & 1)     /* F */
                 && ((b >> 17) & 1)  /* DQ */
                 && ((b >> 30) & 1)  /* BW */
                 && ((b >> 31) & 1); /* VL */

    uint32_t flags = 0;
    /* the x86-64-v3 core (AVX2 + FMA); every such CPU has POPCNT, which
     * the selection kernels use */
    if (avx2 && fma && popcnt)
        flags |= KF_CPU_AVX2;
    if ((flags & KF_CPU_AVX2) && avx512 && (xcr0 & XCR0_ZMM) == XCR0_ZMM)
        flags |= KF_CPU_AVX512;
    return flags;
}

#elif defined(__aarch64__)

/* Advanced SIMD is part of the AArch64 baseline. */
static uint32_t detect(void)
{
    return KF_CPU_NEON;
}

#else

static uint32_t detect(void)
{
    return 0;
}

#endif

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static uint32_t detected;

static void detect_run(void)
{
    detected = detect();
}

uint32_t kf_cpu_detect(void)
{
    pthread_once(&detect_once, detect_run);
    return detected;
}

unsigned kf_cpu_flags(void)
{
    return kf_cpu_detect();
}

uint32_t kf_cpu_env_mask(void)
{
    const char *text = getenv("KF_CPU_MASK");
    if (!text)
        return KF_CPU_ALL;
    /* strtoul accepts a sign and wraps negatives: reject them */
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p < '0' || *p > '9')
        return KF_CPU_ALL;
    char *end;
    errno = 0;
    unsigned long value = strtoul(p, &end, 0);
    while (*end == ' ' || *end == '\t' || *end == '\n')
        end++;
    if (errno || *end || value > 0xffffffffUL)
        return KF_CPU_ALL;
    return (uint32_t)value;
}
