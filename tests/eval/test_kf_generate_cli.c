/* kf-generate's command line against bad input (doc/robustness.md,
 * "Example programs"): every case must exit non-zero with a message that
 * names the real problem, within a time limit, and never crash.
 *
 * usage: test-kf-generate-cli KF_GENERATE */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keyformer.h>

#include "run_program.h"
#include "test_args.h"

static const char *kf_generate;

enum { TIMEOUT_S = 60 };

/* Runs kf-generate with args (NULL-terminated). */
static void run(const char *const *args, run_result *r)
{
    const char *argv[64] = {kf_generate};
    int n = 1;
    while (n < 63 && args[n - 1]) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    run_program(argv, NULL, TIMEOUT_S, r);
}

/* Runs args, expecting exit status `status` and `message` on stderr. */
static void expect(const char *const *args, int status, const char *message)
{
    run_result r;
    run(args, &r);
    if (r.status != status || (message && !strstr(r.stderr_text, message)))
        fail_msg("kf-generate %s ...: status %d (wanted %d), stderr:\n%s\nwanted: %s", args[0],
                 r.status, status, r.stderr_text, message ? message : "(any)");
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* A1: a budget with --policy full did nothing; now it is an error, and so
 * is every other library option. */
static void test_library_options_need_a_policy(void **state)
{
    (void)state;
    expect(ARGS("--budget-ratio", "0.5"), 2, "--budget-ratio needs a --policy other than full");
    expect(ARGS("--policy", "full", "--sinks", "2"), 2, "--sinks needs a --policy other than full");
    expect(ARGS("--recent", "0.5", "--policy", "full"), 2, "--recent needs a --policy");
}

/* A2: --budget read "1" as one slot and "1.0" as the whole prompt. */
static void test_budget_flags_are_unambiguous(void **state)
{
    (void)state;
    expect(ARGS("--policy", "keyformer", "--budget", "1"), 2, "--budget-ratio");
    expect(ARGS("--policy", "keyformer", "--budget", "1.0"), 2, "--budget-tokens");
    expect(ARGS("--policy", "h2o", "--budget-ratio", "1.5"), 2, "(0, 1]");
    expect(ARGS("--policy", "h2o", "--budget-ratio", "0"), 2, "(0, 1]");
    expect(ARGS("--policy", "h2o", "--budget-tokens", "0.5"), 2, "whole number of slots");
    expect(ARGS("--policy", "h2o", "--budget-tokens", "8", "--budget-ratio", "0.5"), 2,
           "--budget-tokens was given already");
    /* both spellings run */
    expect(ARGS("--prompt", "Fellow citizens of the Senate", "--steps", "4", "--policy",
                "window", "--budget-tokens", "4", "--threads", "1"), 0, NULL);
    expect(ARGS("--prompt", "Fellow citizens of the Senate", "--steps", "4", "--policy",
                "window", "--budget-ratio", "1.0", "--threads", "1"), 0, NULL);
}

/* A3: past the model's trained context, a warning with the numbers. */
static void test_context_warning(void **state)
{
    (void)state;
    run_result r;
    run(ARGS("--prompt", "Fellow citizens", "--steps", "2100", "--temperature", "0",
             "--capacity", "8", "--threads", "1"), &r);
    assert_int_equal(r.status, 0);
    if (!strstr(r.stderr_text, "more than the model's trained context of 2048"))
        fail_msg("no context warning:\n%s", r.stderr_text);
}

/* A4 */
static void test_sinks_budget_message(void **state)
{
    (void)state;
    expect(ARGS("--policy", "sinks", "--budget-tokens", "3"), 2,
           "--budget-tokens 3 must exceed --sinks 4");
    expect(ARGS("--prompt", "Fellow citizens of the Senate", "--policy", "sinks",
                "--budget-ratio", "0.3", "--threads", "1"), 1, "must exceed --sinks 4");
}

/* A7 */
static void test_top_p_range(void **state)
{
    (void)state;
    expect(ARGS("--top-p", "0"), 2, "1 turns top-p sampling off");
    expect(ARGS("--top-p", "1.5"), 2, "(0, 1]");
    expect(ARGS("--top-p", "1", "--steps", "2", "--prompt", "A", "--threads", "1"), 0, NULL);
}

/* A8: "KV cache full: KV cache full (4 slots)" */
static void test_no_doubled_message(void **state)
{
    (void)state;
    run_result r;
    run(ARGS("--prompt", "Fellow citizens of the Senate and House", "--capacity", "4",
             "--threads", "1"), &r);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.stderr_text, "--capacity 4 is smaller than the"));
    assert_null(strstr(r.stderr_text, "KV cache full: KV cache full"));
    /* a full cache during decoding ends the text early, once said */
    run(ARGS("--prompt", "Fellow", "--capacity", "4", "--steps", "8", "--threads", "1"), &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.stderr_text, "kf-generate: stopping early: "));
    assert_null(strstr(r.stderr_text, "KV cache full: KV cache full"));
}

/* A9 */
static void test_help_and_version(void **state)
{
    (void)state;
    char out[256];
    run_temp_path(out, sizeof out, ".txt");
    const char *argv[] = {kf_generate, "--version", NULL};
    run_result r;
    run_program(argv, out, TIMEOUT_S, &r);
    assert_int_equal(r.status, 0);
    char text[256] = "";
    FILE *f = fopen(out, "r");
    assert_non_null(f);
    assert_non_null(fgets(text, sizeof text, f));
    fclose(f);
    char wanted[128];
    snprintf(wanted, sizeof wanted, "kf-generate (libkeyformer %s)\n", kf_version());
    assert_string_equal(text, wanted);
    const char *help[] = {kf_generate, "--help", NULL};
    run_program(help, out, TIMEOUT_S, &r);
    assert_int_equal(r.status, 0);
    f = fopen(out, "r");
    assert_non_null(fgets(text, sizeof text, f));
    fclose(f);
    assert_non_null(strstr(text, "usage: kf-generate"));
    unlink(out);
}

/* B4: a FIFO with no writer blocked open() forever. */
static void test_fifo_inputs(void **state)
{
    (void)state;
    char fifo[256];
    run_temp_path(fifo, sizeof fifo, ".fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect(ARGS("--model", fifo), 1, "a FIFO, not a regular file");
    expect(ARGS("--tokenizer", fifo), 1, "--tokenizer");
    expect(ARGS("--prompt-file", fifo), 1, "--prompt-file");
    unlink(fifo);
}

/* B5: messages naming the real cause */
static void test_messages_name_the_cause(void **state)
{
    (void)state;
    expect(ARGS("--threads", "2000", "--policy", "keyformer"), 2,
           "a thread count from 1 to 1024");
    expect(ARGS("--threads", "2147483647"), 2, "the library's limit");
    expect(ARGS("--tokenizer", "/tmp"), 1, "--tokenizer /tmp: a directory, not a regular file");
    expect(ARGS("--model", "/tmp"), 1, "--model /tmp: a directory");
    expect(ARGS("--policy", "keyformer", "--evict-every", "2147483647"), 2,
           "a step count from 1 to 1048576");
    expect(ARGS("--steps", "2147483647"), 2, "a token count from 0 to 1048576");
    expect(ARGS("--policy", "lru"), 2, "one of full, keyformer");
    expect(ARGS("--model", "/nonexistent/model.bin"), 1, "No such file");
}

/* B6: --prompt-file read until memory ran out. */
static void test_prompt_file_limit(void **state)
{
    (void)state;
    expect(ARGS("--prompt-file", "/dev/zero"), 1, "a device, not a regular file");
    char big[256];
    run_temp_path(big, sizeof big, ".txt");
    const int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (2 << 20) + 1), 0); /* sparse: no disk used */
    close(fd);
    expect(ARGS("--prompt-file", big), 1, "2097153 bytes, more than the 1048576");
    unlink(big);
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "KF_GENERATE", &kf_generate))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_library_options_need_a_policy),
        cmocka_unit_test(test_budget_flags_are_unambiguous),
        cmocka_unit_test(test_context_warning),
        cmocka_unit_test(test_sinks_budget_message),
        cmocka_unit_test(test_top_p_range),
        cmocka_unit_test(test_no_doubled_message),
        cmocka_unit_test(test_help_and_version),
        cmocka_unit_test(test_fifo_inputs),
        cmocka_unit_test(test_messages_name_the_cause),
        cmocka_unit_test(test_prompt_file_limit),
    };
    return cmocka_run_group_tests_name("kf-generate command line", tests, NULL, NULL);
}
