#include "status.h"

#include <stdarg.h>
#include <stdio.h>

int eng_fail(eng_error *err, int code, const char *format, ...)
{
    if (err) {
        va_list args;
        va_start(args, format);
        vsnprintf(err->message, sizeof err->message, format, args);
        va_end(args);
    }
    return code;
}

const char *eng_status_name(int code)
{
    switch (code) {
    case ENG_OK: return "success";
    case ENG_EIO: return "I/O error";
    case ENG_EFORMAT: return "bad file format";
    case ENG_ENOMEM: return "out of memory";
    case ENG_EINVAL: return "invalid argument";
    case ENG_EFULL: return "KV cache full";
    case ENG_EHOOK: return "layer hook failed";
    default: return "unknown error";
    }
}
