#include "threads.h"

#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int online_cpus(void)
{
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > ENG_MAX_THREADS ? ENG_MAX_THREADS : (int)n;
}

/* The first entry of OMP_NUM_THREADS (it may list one per nesting level):
 * 1..LONG_MAX, or 0 when it is not a positive whole number. */
static long env_thread_count(const char *value)
{
    while (*value == ' ' || *value == '\t')
        value++;
    char *end;
    errno = 0;
    const long n = strtol(value, &end, 10);
    while (*end == ' ' || *end == '\t')
        end++;
    if (end == value || (*end && *end != ',') || n < 1)
        return 0;
    return errno == ERANGE ? LONG_MAX : n;
}

int eng_thread_count(int requested, char *warning, size_t warning_size)
{
    char unused[1];
    if (!warning || warning_size == 0) {
        warning = unused;
        warning_size = sizeof unused;
    }
    warning[0] = '\0';
    if (requested > 0) {
        if (requested <= ENG_MAX_THREADS)
            return requested;
        snprintf(warning, warning_size, "%d threads asked for; using %d, the most the "
                 "engine runs", requested, ENG_MAX_THREADS);
        return ENG_MAX_THREADS;
    }
    const int cpus = online_cpus();
    const char *env = getenv("OMP_NUM_THREADS");
    if (!env || !env[0]) {
        /* OpenMP's own default: one thread per CPU (or its ICVs) */
        const int n = omp_get_max_threads();
        return n < 1 ? 1 : n > cpus ? cpus : n;
    }
    const long n = env_thread_count(env);
    if (n == 0) {
        snprintf(warning, warning_size, "OMP_NUM_THREADS=%.40s is not a thread count; "
                 "using %d (the CPUs)", env, cpus);
        return cpus;
    }
    if (n > cpus) {
        snprintf(warning, warning_size, "OMP_NUM_THREADS=%.40s is more than the %d "
                 "CPUs; using %d", env, cpus, cpus);
        return cpus;
    }
    return (int)n;
}
