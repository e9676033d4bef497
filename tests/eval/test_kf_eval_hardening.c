/* kf-eval against bad input (doc/robustness.md, "Example programs"): every
 * case exits non-zero with a message naming the real problem, within a
 * time limit, never crashes, and leaves no output file behind; output
 * paths and document names with any bytes in them come out intact.
 *
 * usage: test-kf-eval-hardening KF_EVAL DATA_DIR SCRIPTS_DIR */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keyformer.h>

#include "run_program.h"
#include "synthetic_model.h"
#include "test_args.h"

static const char *kf_eval, *data_dir, *scripts_dir;
static char tokens_path[4096];

enum { TIMEOUT_S = 120 };

/* A sweep of a few seconds: one document, one policy, one budget. */
#define TINY "--max-docs", "1", "--prompt-tokens", "80", "--gen-tokens", "8", \
             "--rouge-tokens", "4", "--policies", "window", "--budgets", "0.5", \
             "--mass-share", "0", "--threads", "2"

static void run(const char *const *args, const char *out, run_result *r)
{
    const char *argv[64] = {kf_eval};
    int n = 1;
    while (n < 63 && args[n - 1]) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    run_program(argv, out, TIMEOUT_S, r);
}

static void expect(const char *const *args, int status, const char *message)
{
    run_result r;
    run(args, NULL, &r);
    if (r.status != status || (message && !strstr(r.stderr_text, message)))
        fail_msg("kf-eval %s ...: status %d (wanted %d), stderr:\n%s\nwanted: %s", args[0],
                 r.status, status, r.stderr_text, message ? message : "(any)");
}

#define ARGS(...) ((const char *const[]){__VA_ARGS__, NULL})

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* A5, A6, A9 and the options a full-cache-only sweep would ignore. */
static void test_lists_name_the_bad_item(void **state)
{
    (void)state;
    expect(ARGS("--budgets", "0.5,abc"), 2, "item 2 'abc' is not a fraction");
    expect(ARGS("--budgets", "0.1,,0.5"), 2, "item 2 '' is not a fraction");
    expect(ARGS("--policies", "full,lru"), 2, "item 2 'lru' is not one of full");
    expect(ARGS("--policies", "full", "--recent", "0.5"), 2,
           "--recent needs a policy other than full");
    expect(ARGS("--prompt-tokens", "40", "--budgets", "0.1"), 2,
           "the sinks policy needs a budget above --sinks 4");
    /* kf-generate's spelling is accepted too (shared code) */
    expect(ARGS("--granularity", "head", "--help"), 0, NULL);
    char out[256];
    run_temp_path(out, sizeof out, ".txt");
    run_result r;
    run(ARGS("--version"), out, &r);
    assert_int_equal(r.status, 0);
    char *text = run_read_file(out), wanted[128];
    snprintf(wanted, sizeof wanted, "kf-eval (libkeyformer %s)\n", kf_version());
    assert_string_equal(text, wanted);
    free(text);
    unlink(out);
}

/* B1: P + M + 1 overflowed an int, so a 41-id document passed the length
 * check and a 1024-layer x 32-head model's prompt record got malloc(0). */
static void test_overflowing_counts(void **state)
{
    (void)state;
    char model[256], doc[256];
    const int32_t header[7] = {64, 2, 1024, 32, 1, 64, 64};
    assert_int_equal(synthetic_model_file(model, sizeof model, header, 1), 0);
    run_temp_path(doc, sizeof doc, ".tokens.jsonl");
    char line[512] = "{\"name\": \"short\", \"ids\": [1";
    for (int i = 1; i < 41; i++)
        snprintf(line + strlen(line), sizeof line - strlen(line), ", %d", 3 + i);
    strcat(line, "]}\n");
    write_text(doc, line);
    expect(ARGS("--model", model, "--tokens", doc, "--prompt-tokens", "2147483647"), 2,
           "a token count from 2 to 1048576");
    expect(ARGS("--model", model, "--tokens", doc, "--gen-tokens", "2147483647"), 2,
           "a token count from 1 to 1048576");
    expect(ARGS("--model", model, "--tokens", doc, "--prompt-tokens", "1048576",
                "--gen-tokens", "1048576", "--policies", "window"), 1,
           "no document has the 2097153 ids");
    /* the same model and document at a size that fits: it runs */
    expect(ARGS("--model", model, "--tokens", doc, "--prompt-tokens", "20", "--gen-tokens",
                "20", "--rouge-tokens", "0", "--policies", "window", "--budgets", "0.5",
                "--mass-share", "0", "--threads", "1"), 0, NULL);
    unlink(model), unlink(doc);
}

/* The directory's entries other than . and .. */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return n;
}

/* B2: the plot path was pasted into gnuplot's script. */
static void test_plot_path_is_data(void **state)
{
    (void)state;
    if (system("command -v gnuplot > /dev/null 2>&1") != 0)
        skip();
    char dir[256], png[1024], csv[1024];
    run_temp_path(dir, sizeof dir, ".d");
    assert_int_equal(mkdir(dir, 0700), 0);
    snprintf(png, sizeof png, "%s/it's\n\\ $(touch pwned) 'x' \"y\" ü.png", dir);
    snprintf(csv, sizeof csv, "%s/a'b\nc.csv", dir);
    run_result r;
    run(ARGS("--tokens", tokens_path, TINY, "--plot", png, "--csv", csv), NULL, &r);
    if (r.status != 0)
        fail_msg("status %d:\n%s", r.status, r.stderr_text);
    char *bytes = run_read_file(png);
    assert_non_null(bytes);
    assert_memory_equal(bytes, "\x89PNG", 4);
    free(bytes);
    assert_true(exists(csv));
    assert_int_equal(count_entries(dir), 2); /* nothing else, no "pwned" */
    assert_false(exists("pwned"));
    unlink(png), unlink(csv), rmdir(dir);
}

/* B3: document names went into the CSV unquoted. The Python scripts read
 * it back with the csv module. */
static void test_csv_quotes_names(void **state)
{
    (void)state;
    char doc[256], csv[256], script[8192];
    run_temp_path(doc, sizeof doc, ".tokens.jsonl");
    run_temp_path(csv, sizeof csv, ".csv");
    /* the dev set's first document under an awkward name */
    FILE *in = fopen(tokens_path, "r");
    assert_non_null(in);
    char *line = NULL;
    size_t cap = 0;
    assert_true(getline(&line, &cap, in) > 0);
    fclose(in);
    const char *ids = strstr(line, "\"ids\"");
    assert_non_null(ids);
    FILE *out = fopen(doc, "w");
    fprintf(out, "{\"name\": \"a,\\\"b\\\"\\nc\", %s", ids);
    fclose(out);
    free(line);
    run_result r;
    run(ARGS("--tokens", doc, TINY, "--policies", "full,window", "--csv", csv), NULL, &r);
    if (r.status != 0)
        fail_msg("status %d:\n%s", r.status, r.stderr_text);
    char *text = run_read_file(csv);
    assert_non_null(strstr(text, "\n\"a,\"\"b\"\"\nc\",full,"));
    free(text);
    snprintf(script, sizeof script,
             "python3 -c 'import csv,sys; rows=list(csv.DictReader(open(sys.argv[1], "
             "newline=\"\"))); assert len(rows) == 2, rows; "
             "assert all(r[\"doc\"] == \"a,\\\"b\\\"\\nc\" for r in rows), rows' %s && "
             "python3 %s/ablation_table.py --policy window x=%s > /dev/null && "
             "python3 %s/paired_difference.py %s window window > /dev/null",
             csv, scripts_dir, csv, scripts_dir, csv);
    if (system("command -v python3 > /dev/null 2>&1") == 0)
        assert_int_equal(system(script), 0);
    unlink(doc), unlink(csv);
}

/* B4: a FIFO with no writer blocked open() forever; outputs too. */
static void test_fifos(void **state)
{
    (void)state;
    char fifo[256];
    run_temp_path(fifo, sizeof fifo, ".fifo");
    assert_int_equal(mkfifo(fifo, 0600), 0);
    expect(ARGS("--tokens", fifo), 2, "--tokens");
    expect(ARGS("--text", fifo), 2, "a FIFO, not a regular file");
    expect(ARGS("--tokens", tokens_path, "--model", fifo), 1, "--model");
    expect(ARGS("--text", tokens_path, "--tokenizer", fifo), 1, "--tokenizer");
    expect(ARGS("--tokens", tokens_path, "--csv", fifo), 2, "--csv");
    expect(ARGS("--tokens", tokens_path, "--plot", fifo), 2, "--plot");
    unlink(fifo);
}

/* B5, B6: messages naming the real cause, and the input size limit. */
static void test_messages_name_the_cause(void **state)
{
    (void)state;
    expect(ARGS("--threads", "2000"), 2, "a thread count from 1 to 1024");
    expect(ARGS("--rouge-tokens", "2147483647"), 2, "a token count from 0 to 1048576");
    expect(ARGS("--evict-every", "2147483647"), 2, "a step count from 1 to 1048576");
    expect(ARGS("--tokens", "/dev/zero"), 2, "a device, not a regular file");
    expect(ARGS("--text", tokens_path, "--tokenizer", "/tmp"), 1,
           "--tokenizer /tmp: a directory");
    char big[256];
    run_temp_path(big, sizeof big, ".jsonl");
    const int fd = open(big, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (65 << 20)), 0); /* sparse */
    close(fd);
    expect(ARGS("--tokens", big), 2, "68157440 bytes, more than the 67108864 (64 MiB)");
    unlink(big);
    /* a bad output path fails before the sweep and creates nothing */
    char csv[256];
    run_temp_path(csv, sizeof csv, ".d");
    assert_int_equal(mkdir(csv, 0700), 0);
    expect(ARGS("--tokens", tokens_path, "--csv", csv), 2, "a directory, not a regular file");
    assert_int_equal(count_entries(csv), 0);
    rmdir(csv);
}

/* B7: a plain kf-eval reads the bundled dev set; too-short documents say
 * which option to change. */
static void test_defaults(void **state)
{
    (void)state;
    char csv[256];
    run_temp_path(csv, sizeof csv, ".csv");
    run_result r;
    run(ARGS(TINY, "--csv", csv), NULL, &r);
    if (r.status != 0)
        fail_msg("status %d:\n%s", r.status, r.stderr_text);
    char *text = run_read_file(csv);
    assert_non_null(strstr(text, "1793_george_washington_n,window,0.5,"));
    free(text);
    unlink(csv);
    expect(ARGS("--prompt-tokens", "100000", "--policies", "window", "--csv", csv), 1,
           "lower --prompt-tokens or --gen-tokens");
    assert_false(exists(csv));
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "KF_EVAL DATA_DIR SCRIPTS_DIR", &kf_eval, &data_dir,
                   &scripts_dir))
        return 2;
    snprintf(tokens_path, sizeof tokens_path, "%s/sotu-dev.tokens.jsonl", data_dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lists_name_the_bad_item),
        cmocka_unit_test(test_overflowing_counts),
        cmocka_unit_test(test_plot_path_is_data),
        cmocka_unit_test(test_csv_quotes_names),
        cmocka_unit_test(test_fifos),
        cmocka_unit_test(test_messages_name_the_cause),
        cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests_name("kf-eval against bad input", tests, NULL, NULL);
}
