/* CHECK(cond): a fuzz target's assertion. When cond is false it calls the
 * target's own check_failed(what, line), which reports (with whatever
 * context the target has) and aborts, so libFuzzer saves the input. The
 * including file declares check_failed before using CHECK. */
#ifndef KF_FUZZ_CHECK_H
#define KF_FUZZ_CHECK_H

#define CHECK(cond)                                                           \
    do {                                                                      \
        if (!(cond))                                                          \
            check_failed(#cond, __LINE__);                                    \
    } while (0)

#endif
