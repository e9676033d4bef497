/* Status codes and error messages shared by the example engine.
 *
 * Every fallible engine call returns ENG_OK (0) or a negative code and, when
 * the caller passed an eng_error, a sentence saying what went wrong. Loaders
 * read untrusted files, so they report instead of aborting. */
#ifndef ENG_STATUS_H
#define ENG_STATUS_H

#include <stddef.h>

enum eng_status {
    ENG_OK = 0,
    ENG_EIO = -1,      /* a file could not be opened, read or mapped */
    ENG_EFORMAT = -2,  /* a file is truncated, corrupt or of another format */
    ENG_ENOMEM = -3,   /* an allocation failed */
    ENG_EINVAL = -4,   /* an argument is out of range */
    ENG_EFULL = -5,    /* the KV cache has no free slot for the new tokens */
    ENG_EHOOK = -6,    /* the per-layer hook reported a failure */
};

typedef struct eng_error {
    char message[320];
} eng_error;

/* Formats the message into err (if not NULL) and returns code, so callers can
 * write `return eng_fail(err, ENG_EFORMAT, "...", ...);`. */
int eng_fail(eng_error *err, int code, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* A short fixed name for a status code ("I/O error", ...). */
const char *eng_status_name(int code);

#endif
