/* Instruction sets this machine can run, detected once. */
#ifndef KF_CPU_H
#define KF_CPU_H

#include <stdint.h>

/* KF_CPU_* bits (keyformer.h) the CPU and the OS support, whatever the
 * masks say; the first call detects, later calls return the cached answer.
 * Thread-safe. */
uint32_t kf_cpu_detect(void);

/* The KF_CPU_MASK environment variable as a mask: its number (decimal,
 * 0x hex or 0 octal, as strtoul reads it), or all bits when it is unset or
 * not a whole number that fits in 32 bits. Read on every call. */
uint32_t kf_cpu_env_mask(void);

#endif
