/* Runs an example program as a child process for the command-line tests:
 * stdin from /dev/null, stdout to a file (or /dev/null), stderr captured,
 * and a time limit, so that a program that would hang (a FIFO with no
 * writer) fails the test instead of stalling it. */
#ifndef KF_TESTS_RUN_PROGRAM_H
#define KF_TESTS_RUN_PROGRAM_H

#include <stddef.h>

enum { RUN_CRASHED = -1, RUN_TIMED_OUT = -2 };

typedef struct run_result {
    int status;       /* exit status, RUN_CRASHED (a signal) or RUN_TIMED_OUT */
    char stderr_text[16384]; /* the first bytes the program wrote to stderr */
} run_result;

/* argv[0] is the program's path; argv ends with NULL. out_path NULL sends
 * stdout to /dev/null. Kills the program after timeout_s seconds. */
void run_program(const char *const *argv, const char *out_path, int timeout_s,
                 run_result *result);

/* A fresh path under $TMPDIR (or /tmp) ending in suffix; nothing is made. */
void run_temp_path(char *path, size_t size, const char *suffix);

/* The first MiB of a file, NUL-terminated (free() it); NULL if it cannot
 * be opened or memory runs out. */
char *run_read_file(const char *path);

#endif
