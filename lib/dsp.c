/* Kernel table set-up: C first, then per-ISA overrides (see simd/). */
#include "dsp.h"

void kf_dsp_init(kf_dsp *dsp)
{
    dsp->score_gumbel = kf_score_gumbel_c;
    dsp->score_softmax = kf_score_softmax_c;
    dsp->select_top = kf_select_top_c;
    dsp->compact_rows = kf_compact_rows_c;
}
