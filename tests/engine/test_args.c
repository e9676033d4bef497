#include "test_args.h"

#include <stdarg.h>
#include <stdio.h>

bool test_args(int argc, char **argv, const char *usage, ...)
{
    int words = 0;
    for (const char *p = usage; *p; p++)
        words += *p != ' ' && (p == usage || p[-1] == ' ');
    if (argc != words + 1) {
        fprintf(stderr, "usage: %s %s\n", argv[0], usage);
        return false;
    }
    va_list values;
    va_start(values, usage);
    for (int i = 1; i < argc; i++)
        *va_arg(values, const char **) = argv[i];
    va_end(values);
    return true;
}
