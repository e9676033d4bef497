/* Status messages and version. */
#include "keyformer.h"

const char *kf_strerror(int status)
{
    switch (status) {
    case KF_OK: return "success";
    case KF_EINVAL: return "invalid argument (NULL pointer, unknown enum or flag, bad value)";
    case KF_ENOMEM: return "out of memory";
    case KF_ERANGE: return "index or size out of range (layer, head, budget, capacity; capacity below budget + evict_interval)";
    case KF_ESTATE: return "call out of order for the cache state";
    case KF_EOVERFLOW: return "size computation overflows";
    case KF_ENAN: return "logits contain NaN or +inf";
    case KF_EEMPTYROW: return "a logits row has no finite visible entry";
    case KF_ELAYOUT: return "buffer misaligned, strides make rows overlap or pass the view's bytes, or buffers alias";
    case KF_EMISMATCH: return "view slot count or configuration disagrees with the cache";
    }
    return "unknown error";
}

#define KF_STR2(x) #x
#define KF_STR(x) KF_STR2(x)

const char *kf_version(void)
{
    return KF_STR(KF_VERSION_MAJOR) "." KF_STR(KF_VERSION_MINOR) "." KF_STR(
        KF_VERSION_PATCH);
}

unsigned kf_version_number(void)
{
    return KF_VERSION_NUMBER;
}
