/* The emulation build's CPU: what this CPU has, plus AVX-512 (its kernels
 * run through SIMDe, see immintrin.h beside this file). lib/cpu.c is
 * compiled with kf_cpu_detect renamed to kf_cpu_detect_real. */
#include <stdint.h>

#include <keyformer.h>

uint32_t kf_cpu_detect_real(void);

uint32_t kf_cpu_detect(void)
{
    return kf_cpu_detect_real() | KF_CPU_AVX512;
}
