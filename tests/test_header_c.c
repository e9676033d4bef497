/* The public header on its own, as strict C11: this file includes nothing
 * before it and is built with -std=c11 -Wall -Wextra -pedantic -Werror.
 * It also uses every type and macro once, so a declaration that only
 * breaks when used (an incomplete type, a bad macro) shows up here. */
#include "keyformer.h"

#include <stdio.h>
#include <string.h>

#if KF_VERSION_NUMBER != \
    KF_VERSION_MAJOR * 10000 + KF_VERSION_MINOR * 100 + KF_VERSION_PATCH
#error "KF_VERSION_NUMBER disagrees with its parts"
#endif

_Static_assert(KF_OK == 0 && KF_EINVAL < 0 && KF_EMISMATCH < 0,
               "status codes: 0 success, negative failure");

int main(void)
{
    kf_config cfg;
    if (kf_config_default(&cfg) != KF_OK)
        return 1;
    cfg.n_layers = 1;
    cfg.n_heads = 2;
    cfg.n_kv_heads = 1;
    cfg.head_dim = 4;
    cfg.capacity = 8;
    kf_cache *cache = NULL;
    if (kf_cache_create(&cache, &cfg) != KF_OK)
        return 1;

    float q[2 * 3 * 4], k[8 * 4];
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++)
        q[i] = (float)(i % 5) * 0.25f;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
        k[i] = (float)(i % 7) * 0.125f;
    kf_query_view qv = { q, 3, 4, 12, 0.0f, KF_LOGITS_CAUSAL, 0 };
    kf_kv_view kv = { k, KF_DTYPE_F32, 3, 4, 32, 0, 0 };
    int rc = kf_observe_qk(cache, 0, &qv, &kv);
    kf_logits_view lv = { NULL, 1, 4, 4, 4, 0u, 0 };
    (void)lv;
    uint32_t n = 0;
    if (rc == KF_OK)
        rc = kf_slot_count(cache, 0, 0, &n);
    kf_policy p = KF_POLICY_FULL;
    kf_rule r = KF_RULE_REFERENCE;
    kf_granularity g = KF_GRANULARITY_UNIFORM;
    kf_dtype t = KF_DTYPE_BF16;
    kf_allocator a;
    memset(&a, 0, sizeof a);
    printf("keyformer %s (%u), %s, %u slots, enums %d %d %d %d, layer %d\n",
           kf_version(), kf_version_number(), kf_strerror(rc), n, (int)p,
           (int)r, (int)g, (int)t, KF_ALL_LAYERS);
    kf_cache_destroy(&cache);
    return rc == KF_OK && n == 3 && cache == NULL
                   && kf_version_number() == KF_VERSION_NUMBER
               ? 0
               : 1;
}
