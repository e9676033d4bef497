/* Kernel table set-up: C first, then per-ISA overrides (see simd/), and
 * the public calls that choose or report a cache's kernels. The overrides
 * are plain pointer stores compiled with the generic flags, so this file
 * runs on any CPU. */
#include "internal.h"
#include "cpu.h"

void kf_dsp_init(kf_dsp *dsp, uint32_t mask)
{
    uint32_t flags = kf_cpu_detect() & mask;
    (void)flags;

/* every kernel of one instruction set, e.g. kf_score_gumbel_avx2 */
#define KF_DSP_SET_ISA(suffix, bit)                                           \
    do {                                                                      \
        dsp->score_gumbel = kf_score_gumbel_##suffix;                         \
        dsp->score_softmax = kf_score_softmax_##suffix;                       \
        dsp->select_top = kf_select_top_##suffix;                             \
        dsp->compact_rows = kf_compact_rows_##suffix;                         \
        dsp->dot_rows = kf_dot_rows_##suffix;                                 \
        dsp->score_table = kf_score_table_##suffix;                           \
        for (int k = 0; k < KF_KERNEL_COUNT; k++)                             \
            dsp->isa[k] = bit;                                                \
    } while (0)

    KF_DSP_SET_ISA(c, 0);
#ifdef KF_HAVE_AVX2
    if (flags & KF_CPU_AVX2)
        KF_DSP_SET_ISA(avx2, KF_CPU_AVX2);
#endif
#ifdef KF_HAVE_AVX512
    if (flags & KF_CPU_AVX512)
        KF_DSP_SET_ISA(avx512, KF_CPU_AVX512);
#endif
#ifdef KF_HAVE_NEON
    if (flags & KF_CPU_NEON)
        KF_DSP_SET_ISA(neon, KF_CPU_NEON);
#endif
#undef KF_DSP_SET_ISA
}

const char *kf_dsp_kernel_name(unsigned kernel)
{
    static const char *const names[KF_KERNEL_COUNT] = {
        "score_gumbel", "score_softmax", "select_top", "compact_rows",
        "dot_rows", "score_table"
    };
    return kernel < KF_KERNEL_COUNT ? names[kernel] : NULL;
}

const char *kf_dsp_isa_name(uint32_t isa)
{
    switch (isa) {
    case 0: return "c";
    case KF_CPU_AVX2: return "avx2";
    case KF_CPU_AVX512: return "avx512";
    case KF_CPU_NEON: return "neon";
    }
    return "unknown";
}

/* Creation: the config's mask, narrowed by the environment. */
void kf_cache_init_dsp(kf_cache *c)
{
    c->cpu_mask = c->cfg.cpu_mask & kf_cpu_env_mask();
    kf_dsp_init(&c->dsp, c->cpu_mask);
}

int kf_cache_set_cpu_mask(kf_cache *c, uint32_t mask)
{
    if (!c)
        return KF_EINVAL;
    c->cpu_mask = mask;
    kf_dsp_init(&c->dsp, mask);
    return KF_OK;
}

int kf_cache_cpu_mask(const kf_cache *c, uint32_t *mask)
{
    if (!c || !mask)
        return KF_EINVAL;
    *mask = c->cpu_mask;
    return KF_OK;
}

int kf_cache_kernel_isa(const kf_cache *c, unsigned index, const char **kernel,
                        const char **isa)
{
    if (!c || !kernel || !isa)
        return KF_EINVAL;
    if (index >= KF_KERNEL_COUNT)
        return KF_ERANGE;
    *kernel = kf_dsp_kernel_name(index);
    *isa = kf_dsp_isa_name(c->dsp.isa[index]);
    return KF_OK;
}
