/* Stride validation for host buffers (logits, K, V). */
#include "internal.h"

static int mul_add(size_t a, size_t b, size_t c, size_t *out)
{
    if (b != 0 && a > (SIZE_MAX - c) / b)
        return 0;
    *out = a * b + c;
    return 1;
}

int kf_check_rows(const void *base, size_t elem, size_t len, size_t sa,
                  size_t na, size_t sb, size_t nb, size_t declared,
                  size_t *bytes)
{
    size_t span_a, total;
    if (na == 0 || nb == 0 || len == 0 || elem == 0)
        return KF_EINVAL;
    if ((uintptr_t)base % elem) /* the kernels load whole elements */
        return KF_ELAYOUT;
    if (!mul_add(na - 1, sa, 0, &span_a) || !mul_add(nb - 1, sb, span_a, &total)
        || total > SIZE_MAX - len)
        return KF_EOVERFLOW;
    total += len; /* elements from the first to past the last */
    if (total > SIZE_MAX / elem || (uintptr_t)base > UINTPTR_MAX - total * elem)
        return KF_EOVERFLOW;
    *bytes = total * elem;

    /* order the two dimensions by stride; a single row ignores its stride */
    if (na == 1) {
        sa = sb;
        na = nb;
        nb = 1;
    }
    if (nb > 1 && sb < sa) {
        size_t ts = sa, tn = na;
        sa = sb;
        na = nb;
        sb = ts;
        nb = tn;
    }
    if (na > 1 && sa < len)
        return KF_ELAYOUT;
    if (nb > 1) {
        size_t inner;
        if (!mul_add(na - 1, sa, len, &inner))
            return KF_EOVERFLOW;
        if (sb < inner)
            return KF_ELAYOUT;
    }
    /* the caller's declared buffer size (0: not declared) must hold the
     * farthest byte the call touches */
    if (declared && *bytes > declared)
        return KF_ELAYOUT;
    return KF_OK;
}
