/* The engine's thread count: --threads and OMP_NUM_THREADS of any size or
 * spelling give a team of 1..ENG_MAX_THREADS (OMP_NUM_THREADS no more than
 * the CPUs) with a warning when clamped, and the engine runs with them
 * instead of overflowing libgomp's stack. meson runs this program with
 * OMP_NUM_THREADS=100000, which libgomp itself accepts.
 *
 * usage: test-engine-threads */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "forward.h"
#include "model.h"
#include "synthetic_model.h"
#include "threads.h"

static int cpus(void)
{
    const long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > ENG_MAX_THREADS ? ENG_MAX_THREADS : (int)n;
}

static void test_explicit_counts(void **state)
{
    (void)state;
    char warning[160];
    assert_int_equal(eng_thread_count(1, warning, sizeof warning), 1);
    assert_string_equal(warning, "");
    assert_int_equal(eng_thread_count(ENG_MAX_THREADS, warning, sizeof warning),
                     ENG_MAX_THREADS);
    assert_string_equal(warning, "");
    assert_int_equal(eng_thread_count(100000, warning, sizeof warning), ENG_MAX_THREADS);
    assert_non_null(strstr(warning, "100000"));
    assert_int_equal(eng_thread_count(2147483647, NULL, 0), ENG_MAX_THREADS);
}

static void test_environment_counts(void **state)
{
    (void)state;
    const char *saved = getenv("OMP_NUM_THREADS");
    char *copy = saved ? strdup(saved) : NULL;
    char warning[160];
    static const char *const bad[] = {"abc", "0", "-3", "", " ", "4x", "1e3", ",2"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("OMP_NUM_THREADS", bad[i], 1);
        const int n = eng_thread_count(0, warning, sizeof warning);
        assert_true(n >= 1 && n <= cpus());
        if (bad[i][0]) /* empty means unset */
            assert_non_null(strstr(warning, "not a thread count"));
    }
    static const char *const huge[] = {"100000", "99999999999999999999999", "100000,2"};
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        setenv("OMP_NUM_THREADS", huge[i], 1);
        assert_int_equal(eng_thread_count(0, warning, sizeof warning), cpus());
        if (cpus() < 100000)
            assert_non_null(strstr(warning, "more than"));
    }
    setenv("OMP_NUM_THREADS", "1", 1);
    assert_int_equal(eng_thread_count(0, warning, sizeof warning), 1);
    assert_string_equal(warning, "");
    setenv("OMP_NUM_THREADS", " 1,1 ", 1);
    assert_int_equal(eng_thread_count(0, warning, sizeof warning), 1);
    if (copy)
        setenv("OMP_NUM_THREADS", copy, 1);
    else
        unsetenv("OMP_NUM_THREADS");
    free(copy);
}

/* A few tokens through a small model with absurd thread requests. */
static void test_engine_runs_with_absurd_requests(void **state)
{
    (void)state;
    static const int32_t header[7] = {32, 48, 2, 4, 2, 40, 16};
    char path[256];
    assert_int_equal(synthetic_model_file(path, sizeof path, header, 3), 0);
    eng_model model;
    eng_error err = {{0}};
    assert_int_equal(eng_model_open(&model, path, &err), ENG_OK);
    const int requests[] = {0, 100000, 2147483647};
    for (size_t i = 0; i < sizeof requests / sizeof requests[0]; i++) {
        eng_state_options options = {.n_threads = requests[i]};
        eng_state *s = NULL;
        assert_int_equal(eng_state_create(&s, &model, &options, &err), ENG_OK);
        const int tokens[5] = {1, 7, 9, 11, 3};
        float logits[40];
        assert_int_equal(eng_forward(s, tokens, 5, logits, 1, &err), ENG_OK);
        assert_int_equal(eng_forward(s, tokens, 1, logits, 1, &err), ENG_OK);
        eng_state_destroy(&s);
    }
    eng_model_close(&model);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_explicit_counts),
        cmocka_unit_test(test_environment_counts),
        cmocka_unit_test(test_engine_runs_with_absurd_requests),
    };
    return cmocka_run_group_tests_name("engine threads", tests, NULL, NULL);
}
