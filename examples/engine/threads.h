/* How many OpenMP threads the engine runs with.
 *
 * libgomp starts a parallel region by reserving per-thread bookkeeping on
 * the calling thread's stack, so an absurd team size (--threads 100000, or
 * OMP_NUM_THREADS=100000) overflows it and crashes. The engine therefore
 * never asks for more than ENG_MAX_THREADS threads (the library's own
 * limit), and its default never exceeds the CPUs. */
#ifndef ENG_THREADS_H
#define ENG_THREADS_H

#include <stddef.h>

#define ENG_MAX_THREADS 1024

/* The team size for a request of `requested` threads (> 0), or for the
 * default (0): OMP_NUM_THREADS when it is a valid count no larger than the
 * online CPUs, else the CPUs. Values clamped this way, and an
 * OMP_NUM_THREADS that is not a count, are explained in warning (when not
 * NULL; empty otherwise). Always returns 1..ENG_MAX_THREADS. */
int eng_thread_count(int requested, char *warning, size_t warning_size);

#endif
