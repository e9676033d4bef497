// The public header from C++11 (-std=c++11 -Wall -Wextra -pedantic
// -Werror): it must compile, link against the C library through its
// extern "C" block, and lay out every public struct exactly as the C
// compiler does (header_layout.c reports the C side).
#include "keyformer.h"

#include <cstddef>
#include <cstdio>

extern "C" const size_t *kf_test_c_layout(size_t *n);

#define FIELD(type, member) offsetof(type, member)

int main()
{
    const size_t cxx[] = {
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
    size_t n = 0;
    const size_t *c = kf_test_c_layout(&n);
    int failed = 0;
    if (n != sizeof cxx / sizeof cxx[0]) {
        std::printf("layout lists differ in length: C %zu, C++ %zu\n", n,
                    sizeof cxx / sizeof cxx[0]);
        return 1;
    }
    for (size_t i = 0; i < n; i++)
        if (c[i] != cxx[i]) {
            std::printf("layout entry %zu: C %zu, C++ %zu\n", i, c[i], cxx[i]);
            failed = 1;
        }

    kf_config cfg;
    if (kf_config_default(&cfg) != KF_OK)
        return 1;
    cfg.n_layers = 1;
    cfg.n_heads = 4;
    cfg.n_kv_heads = 2;
    cfg.head_dim = 8;
    cfg.capacity = 16;
    cfg.budget_ratio = 0.0;
    cfg.budget_tokens = 4;
    kf_cache *cache = NULL;
    if (kf_cache_create(&cache, &cfg) != KF_OK)
        return 1;

    // a 6-token prompt from queries and keys, then the selection
    float q[4 * 6 * 8], k[2 * 16 * 8] = {};
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        q[i] = static_cast<float>((i * 7) % 11) * 0.1f - 0.5f;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        k[i] = static_cast<float>((i * 5) % 13) * 0.1f - 0.6f;
    kf_query_view qv;
    qv.data = q;
    qv.n_rows = 6;
    qv.row_stride = 8;
    qv.head_stride = 6 * 8;
    qv.scale = 0.0f;
    qv.flags = KF_LOGITS_CAUSAL;
    qv.bytes = sizeof q; // checked: the farthest row must lie inside
    kf_kv_view kv;
    kv.data = k;
    kv.dtype = KF_DTYPE_F32;
    kv.n_slots = 6;
    kv.token_stride = 8;
    kv.head_stride = 16 * 8;
    kv.bytes = sizeof k;
    int rc = kf_observe_qk(cache, 0, &qv, &kv);
    if (rc == KF_OK)
        rc = kf_select(cache, 0);
    if (rc == KF_OK)
        rc = kf_compact(cache, 0, &kv, nullptr);
    uint32_t slots = 0;
    if (rc == KF_OK)
        rc = kf_slot_count(cache, 0, 1, &slots);
    std::printf("C++: %s, %u slots kept, library %s\n", kf_strerror(rc),
                slots, kf_version());
    kf_cache_destroy(&cache);
    return failed || rc != KF_OK || slots != 4 || cache != nullptr;
}
