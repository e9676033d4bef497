/* kf-info: what this build of libkeyformer will run on this machine — the
 * library version, the CPU features it detected, the instruction-set mask
 * in force (cfg.cpu_mask & KF_CPU_MASK) and the variant of each kernel.
 *
 *   kf-info             the defaults, as any cache would get them
 *   kf-info --mask N    a cache created with cfg.cpu_mask = N
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyformer.h"

static void print_isas(const char *label, unsigned flags)
{
    printf("%-18s", label);
    if (flags == KF_CPU_ALL) {
        printf(" all\n");
        return;
    }
    if (!(flags & (KF_CPU_AVX2 | KF_CPU_AVX512 | KF_CPU_NEON)))
        printf(" none (portable C)");
    if (flags & KF_CPU_AVX2)
        printf(" avx2");
    if (flags & KF_CPU_AVX512)
        printf(" avx512");
    if (flags & KF_CPU_NEON)
        printf(" neon");
    printf("  (0x%x)\n", flags);
}

int main(int argc, char **argv)
{
    kf_config cfg;
    kf_config_default(&cfg);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mask") && i + 1 < argc) {
            char *end;
            cfg.cpu_mask = (uint32_t)strtoul(argv[++i], &end, 0);
            if (*end) {
                fprintf(stderr, "kf-info: --mask takes a number\n");
                return 2;
            }
        } else {
            fprintf(stderr, "usage: kf-info [--mask N]\n");
            return !strcmp(argv[i], "--help") ? 0 : 2;
        }
    }
    cfg.n_layers = cfg.n_heads = cfg.n_kv_heads = cfg.head_dim = 1;
    cfg.capacity = 16;
    cfg.n_threads = 1;

    printf("libkeyformer %s (header %d.%d.%d)\n", kf_version(), KF_VERSION_MAJOR,
           KF_VERSION_MINOR, KF_VERSION_PATCH);
    unsigned detected = kf_cpu_flags();
    print_isas("detected:", detected);
    const char *env = getenv("KF_CPU_MASK");
    printf("%-18s %s\n", "KF_CPU_MASK:", env ? env : "(unset)");

    kf_cache *c = NULL;
    int st = kf_cache_create(&c, &cfg);
    if (st) {
        fprintf(stderr, "kf-info: kf_cache_create: %s\n", kf_strerror(st));
        return 1;
    }
    uint32_t mask = 0;
    kf_cache_cpu_mask(c, &mask);
    print_isas("mask in force:", mask);
    print_isas("detected & mask:", detected & mask);
    printf("kernels:\n");
    const char *kernel, *isa;
    for (unsigned k = 0; kf_cache_kernel_isa(c, k, &kernel, &isa) == KF_OK; k++)
        printf("  %-16s %s\n", kernel, isa);
    kf_cache_destroy(&c);
    return 0;
}
