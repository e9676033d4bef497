/* kf-info: what this build of libkeyformer will run on this machine — the
 * library version, the CPU features it detected, the instruction-set mask
 * in force (cfg.cpu_mask & KF_CPU_MASK) and the variant of each kernel.
 *
 *   kf-info             the defaults, as any cache would get them
 *   kf-info --mask N    a cache created with cfg.cpu_mask = N
 *   kf-info --help | --version
 */
#include <errno.h>
#include <stdint.h>
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

static void usage(FILE *out)
{
    fprintf(out,
            "usage: kf-info [--mask N]\n"
            "Prints the libkeyformer version, the CPU features it detected, the\n"
            "instruction-set mask in force (cfg.cpu_mask & KF_CPU_MASK) and the\n"
            "variant each kernel runs.\n"
            "  --mask N     create the cache with cfg.cpu_mask = N (decimal or 0x hex,\n"
            "               0 to 0xffffffff; bits: avx2 0x%x, avx512 0x%x, neon 0x%x)\n"
            "  --help       this text\n"
            "  --version    the library version\n",
            (unsigned)KF_CPU_AVX2, (unsigned)KF_CPU_AVX512, (unsigned)KF_CPU_NEON);
}

/* A whole number of 0..UINT32_MAX, decimal, 0x hex or 0 octal. */
static int parse_mask(const char *text, uint32_t *out)
{
    const char *p = text;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '-' || *p == '+' || *p == '\0')
        return -1;
    char *end;
    errno = 0;
    const unsigned long long v = strtoull(p, &end, 0);
    if (errno == ERANGE || end == p || *end || v > UINT32_MAX)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    kf_config cfg;
    kf_config_default(&cfg);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--version")) {
            printf("kf-info (libkeyformer) %s\n", kf_version());
            return 0;
        } else if (!strcmp(argv[i], "--mask")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "kf-info: --mask needs a value (0 to 0xffffffff)\n");
                return 2;
            }
            if (parse_mask(argv[++i], &cfg.cpu_mask)) {
                fprintf(stderr, "kf-info: --mask '%s' is not a whole number from 0 to "
                        "0xffffffff\n", argv[i]);
                return 2;
            }
        } else {
            fprintf(stderr, "kf-info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
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
