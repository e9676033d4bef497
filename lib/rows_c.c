/* Reference in-place row compaction. */
#include <string.h>

#include "dsp.h"

KF_COMPACT_ROWS_FN(kf_compact_rows_c)
{
    for (uint32_t i = 0; i < n_keep; i++) {
        uint32_t src = keep[i];
        /* rows never overlap (validated), and src >= i, so a forward copy
         * only reads rows that have not been overwritten */
        if (src != i)
            memcpy(base + (size_t)i * stride, base + (size_t)src * stride,
                   row_bytes);
    }
}
