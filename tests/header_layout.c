/* The C compiler's view of the public structs, for test_header_cxx: the
 * C++ side compares its own sizeof/offsetof with these numbers. */
#include <stddef.h>

#include "keyformer.h"

#define FIELD(type, member) offsetof(type, member)

/* Sizes and field offsets in a fixed order; *n gets the count. */
const size_t *kf_test_c_layout(size_t *n);

const size_t *kf_test_c_layout(size_t *n)
{
    static const size_t layout[] = {
        sizeof(kf_config),
        FIELD(kf_config, capacity),
        FIELD(kf_config, budget_ratio),
        FIELD(kf_config, recent_ratio),
        FIELD(kf_config, seed),
        FIELD(kf_config, allocator),
        FIELD(kf_config, evict_interval),
        FIELD(kf_config, slot_order),
        FIELD(kf_config, noise),
        FIELD(kf_config, reserved),
        sizeof(kf_allocator),
        sizeof(kf_logits_view),
        FIELD(kf_logits_view, row_stride),
        FIELD(kf_logits_view, flags),
        sizeof(kf_kv_view),
        FIELD(kf_kv_view, dtype),
        FIELD(kf_kv_view, token_stride),
        FIELD(kf_kv_view, bytes),
        FIELD(kf_kv_view, row_bytes),
        sizeof(kf_query_view),
        FIELD(kf_query_view, head_stride),
        FIELD(kf_query_view, scale),
        FIELD(kf_query_view, flags),
        sizeof(kf_policy),
        sizeof(kf_dtype),
        sizeof(kf_noise),
    };
    *n = sizeof layout / sizeof layout[0];
    return layout;
}
