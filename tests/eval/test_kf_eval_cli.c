/* kf-eval end to end on one short document: the CSV has exactly the
 * promised columns and rows and sane values, the Markdown summary reaches
 * stdout, the results do not depend on --threads, --text gives the same
 * numbers as --tokens, the recall task runs, and bad command lines fail.
 *
 * usage: test-kf-eval-cli KF_EVAL DATA_DIR */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run_program.h"
#include "test_args.h"

static const char *kf_eval;
static const char *data_dir;
static char tokens_path[4096], text_path[4096];

/* Runs kf-eval with args (NULL-terminated, program name excluded), stdout
 * to out_path (or /dev/null). Returns the exit status, -1 if it crashed. */
static int run(const char *const *args, const char *out_path)
{
    const char *argv[64] = {kf_eval};
    int n = 1;
    while (args[n - 1] && n < 63) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        const int fd = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd < 0 || dup2(fd, 1) < 0)
            _exit(127);
        execv(kf_eval, (char *const *)argv);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void temp_path(char *path, size_t size, const char *suffix)
{
    static int counter;
    snprintf(path, size, "/tmp/kf-eval-cli-%ld-%d%s", (long)getpid(), counter++, suffix);
}

typedef struct row {
    char doc[128], policy[32];
    double budget, nll, full_nll, dnll, top1, rouge;
    unsigned long long seed;
} row;

/* Parses the CSV, checking the header and every row's shape. */
static int read_rows(const char *csv, row *rows, int max_rows)
{
    const char *header = "doc,policy,budget,seed,nll,full_nll,dnll,top1,rougeL\n";
    assert_memory_equal(csv, header, strlen(header));
    const char *p = csv + strlen(header);
    int n = 0;
    while (*p) {
        assert_true(n < max_rows);
        row *r = &rows[n++];
        int used = 0;
        const int got = sscanf(p, "%127[^,],%31[^,],%lf,%llu,%lf,%lf,%lf,%lf,%n", r->doc,
                               r->policy, &r->budget, &r->seed, &r->nll, &r->full_nll, &r->dnll,
                               &r->top1, &used);
        if (got != 8 || used == 0)
            fail_msg("bad CSV row: %.80s", p);
        p += used;
        r->rouge = NAN; /* empty without greedy tokens */
        if (*p != '\n') {
            char *end;
            r->rouge = strtod(p, &end);
            if (end == p)
                fail_msg("bad rougeL: %.80s", p);
            p = end;
        }
        assert_true(*p == '\n');
        p++;
    }
    return n;
}

static const char *const SMALL[] = {
    "--max-docs", "1", "--prompt-tokens", "160", "--gen-tokens", "24", "--rouge-tokens", "12",
    "--budgets", "0.25,0.5", "--seeds", "2", "--seed", "7",
};
enum { N_SMALL = sizeof SMALL / sizeof SMALL[0] };

/* SMALL plus source and extra args. */
static int run_small(const char *source_flag, const char *source, const char *csv,
                     const char *out, const char *const *extra)
{
    const char *args[48];
    int n = 0;
    args[n++] = source_flag;
    args[n++] = source;
    for (int i = 0; i < N_SMALL; i++)
        args[n++] = SMALL[i];
    args[n++] = "--csv";
    args[n++] = csv;
    for (int i = 0; extra && extra[i]; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    return run(args, out);
}

static bool have_data(void)
{
    struct stat st;
    return stat(tokens_path, &st) == 0 && stat(text_path, &st) == 0;
}

static void test_csv_and_summary(void **state)
{
    (void)state;
    assert_true(have_data());
    char csv[256], out[256], csv1[256];
    temp_path(csv, sizeof csv, ".csv");
    temp_path(out, sizeof out, ".md");
    temp_path(csv1, sizeof csv1, ".csv");
    const char *two[] = {"--threads", "2", NULL};
    assert_int_equal(run_small("--tokens", tokens_path, csv, out, two), 0);

    char *text = run_read_file(csv);
    assert_non_null(text);
    row rows[64];
    const int n = read_rows(text, rows, 64);
    /* full once; keyformer 2 budgets x 2 seeds; h2o, window, sinks 2 budgets */
    assert_int_equal(n, 1 + 4 + 3 * 2);
    int per_policy[5] = {0};
    const char *names[5] = {"full", "keyformer", "h2o", "window", "sinks"};
    for (int i = 0; i < n; i++) {
        const row *r = &rows[i];
        assert_string_equal(r->doc, "1793_george_washington_n");
        int p = 0;
        while (p < 5 && strcmp(r->policy, names[p]))
            p++;
        assert_true(p < 5);
        per_policy[p]++;
        assert_true(isfinite(r->nll) && r->nll > 0.5 && r->nll < 10.0);
        assert_float_equal(r->full_nll, rows[0].full_nll, 1e-12);
        assert_float_equal(r->dnll, r->nll - r->full_nll, 2e-6);
        assert_true(r->top1 >= 0.0 && r->top1 <= 1.0);
        assert_true(r->rouge >= 0.0 && r->rouge <= 1.0);
        /* top-1 is a multiple of 1/M */
        assert_float_equal(r->top1 * 24, round(r->top1 * 24), 1e-4);
        if (p == 0) {
            assert_float_equal(r->budget, 1.0, 0);
            assert_float_equal(r->dnll, 0.0, 0);
            assert_float_equal(r->top1, 1.0, 0);
            assert_float_equal(r->rouge, 1.0, 0);
        } else {
            assert_true(r->budget == 0.25 || r->budget == 0.5);
            /* a budget below the full cache is not a free lunch here */
            assert_true(fabs(r->dnll) < 1.0);
            assert_true(p == 1 ? (r->seed == 7 || r->seed == 8) : r->seed == 0);
        }
    }
    assert_int_equal(per_policy[0], 1);
    assert_int_equal(per_policy[1], 4);
    assert_int_equal(per_policy[2], 2);
    /* two Keyformer seeds give different draws, so (almost surely) different NLLs */
    assert_true(rows[1].nll != rows[2].nll || rows[3].nll != rows[4].nll);

    char *summary = run_read_file(out);
    assert_non_null(summary);
    assert_non_null(strstr(summary, "| policy | budget | k | NLL | ΔNLL | top-1 | ROUGE-L |"));
    assert_non_null(strstr(summary, "| keyformer | 0.25 | 40 |"));
    assert_non_null(strstr(summary, "| layer | per row | accumulated |"));

    /* the same numbers with one job at a time */
    const char *one[] = {"--threads", "1", NULL};
    assert_int_equal(run_small("--tokens", tokens_path, csv1, NULL, one), 0);
    char *again = run_read_file(csv1);
    assert_non_null(again);
    assert_string_equal(text, again);
    /* and from the text, tokenized by kf-eval */
    assert_int_equal(run_small("--text", text_path, csv1, NULL, two), 0);
    free(again);
    again = run_read_file(csv1);
    assert_string_equal(text, again);

    free(text), free(again), free(summary);
    unlink(csv), unlink(out), unlink(csv1);
}

static void test_recall_and_plot(void **state)
{
    (void)state;
    assert_true(have_data());
    char csv[256], out[256], png[256];
    temp_path(csv, sizeof csv, ".csv");
    temp_path(out, sizeof out, ".md");
    temp_path(png, sizeof png, ".png");
    const char *extra[] = {"--task", "recall", "--policies", "window,h2o", "--plot", png,
                           "--threads", "2", NULL};
    assert_int_equal(run_small("--tokens", tokens_path, csv, out, extra), 0);
    char *text = run_read_file(csv);
    row rows[16];
    /* no full rows when full is not asked for */
    assert_int_equal(read_rows(text, rows, 16), 4);
    for (int i = 0; i < 4; i++)
        assert_true(!strcmp(rows[i].policy, "window") || !strcmp(rows[i].policy, "h2o"));
    char *summary = run_read_file(out);
    assert_non_null(strstr(summary, "| doc | continue | recall | drop | first occurrence | copy gain |"));
    /* a PNG came out of gnuplot, when there is one */
    if (system("command -v gnuplot > /dev/null 2>&1") == 0) {
        char *png_bytes = run_read_file(png);
        assert_non_null(png_bytes);
        assert_memory_equal(png_bytes, "\x89PNG", 4);
        free(png_bytes);
    }
    free(text), free(summary);
    unlink(csv), unlink(out), unlink(png);
}

/* One model-wide selection (the engine glue selects after the last layer):
 * the window keeps the same recent positions in every layer either way, so
 * its rows equal the per-KV-head run's; Keyformer still runs and differs. */
static void test_uniform_granularity(void **state)
{
    (void)state;
    assert_true(have_data());
    char per_head[256], uniform[256];
    temp_path(per_head, sizeof per_head, ".csv");
    temp_path(uniform, sizeof uniform, ".csv");
    const char *head_args[] = {"--policies", "window,keyformer", "--rouge-tokens", "0",
                               "--seeds", "1", NULL};
    const char *uniform_args[] = {"--policies", "window,keyformer", "--rouge-tokens", "0",
                                  "--seeds", "1", "--granularity", "uniform", NULL};
    assert_int_equal(run_small("--tokens", tokens_path, per_head, NULL, head_args), 0);
    assert_int_equal(run_small("--tokens", tokens_path, uniform, NULL, uniform_args), 0);
    char *a = run_read_file(per_head), *b = run_read_file(uniform);
    row ra[16], rb[16];
    const int n = read_rows(a, ra, 16);
    assert_int_equal(read_rows(b, rb, 16), n);
    int windows = 0, keyformer_differs = 0;
    for (int i = 0; i < n; i++) {
        assert_string_equal(ra[i].policy, rb[i].policy);
        if (!strcmp(ra[i].policy, "window")) {
            windows++;
            assert_float_equal(ra[i].nll, rb[i].nll, 0);
            assert_float_equal(ra[i].top1, rb[i].top1, 0);
        }
        keyformer_differs |= !strcmp(ra[i].policy, "keyformer") && ra[i].nll != rb[i].nll;
    }
    assert_int_equal(windows, 2);
    assert_true(keyformer_differs);
    free(a), free(b);
    unlink(per_head), unlink(uniform);
}

/* The scoring options beyond the paper: Keyformer and H2O rows are named
 * after them, the window's are not and do not change; bad values fail. */
static void test_scoring_options(void **state)
{
    (void)state;
    assert_true(have_data());
    char plain[256], options[256];
    temp_path(plain, sizeof plain, ".csv");
    temp_path(options, sizeof options, ".csv");
    const char *plain_args[] = {"--policies", "window,h2o,keyformer", "--rouge-tokens", "0",
                                "--seeds", "1", NULL};
    const char *option_args[] = {"--policies", "window,h2o,keyformer", "--rouge-tokens", "0",
                                 "--seeds", "1", "--obs-window", "8", "--pool", "3:avg",
                                 "--score-norm", "seen", NULL};
    assert_int_equal(run_small("--tokens", tokens_path, plain, NULL, plain_args), 0);
    assert_int_equal(run_small("--tokens", tokens_path, options, NULL, option_args), 0);
    char *a = run_read_file(plain), *b = run_read_file(options);
    row ra[16], rb[16];
    const int n = read_rows(a, ra, 16);
    assert_int_equal(read_rows(b, rb, 16), n);
    int named = 0;
    for (int i = 0; i < n; i++) {
        if (!strcmp(ra[i].policy, "window")) {
            assert_string_equal(rb[i].policy, "window");
            assert_float_equal(ra[i].nll, rb[i].nll, 0);
        } else if (strcmp(ra[i].policy, "full")) {
            char want[64];
            snprintf(want, sizeof want, "%s_obs8_avgpool3_norm", ra[i].policy);
            assert_string_equal(rb[i].policy, want);
            named++;
        }
    }
    assert_int_equal(named, 4); /* h2o and keyformer at two budgets */
    free(a), free(b);
    unlink(plain), unlink(options);
    const char *bad[][3] = {{"--pool", "4", NULL},         {"--pool", "3:min", NULL},
                            {"--pool", "257", NULL},       {"--score-norm", "yes", NULL},
                            {"--obs-window", "-1", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *args[] = {"--tokens", tokens_path, bad[i][0], bad[i][1], NULL};
        assert_int_equal(run(args, NULL), 2);
    }
}

static void test_bad_command_lines(void **state)
{
    (void)state;
    const char *both[] = {"--tokens", tokens_path, "--text", text_path, NULL};
    assert_int_equal(run(both, NULL), 2);
    const char *policy[] = {"--tokens", tokens_path, "--policies", "full,lru", NULL};
    assert_int_equal(run(policy, NULL), 2);
    const char *budget[] = {"--tokens", tokens_path, "--budgets", "0.5,1.5", NULL};
    assert_int_equal(run(budget, NULL), 2);
    const char *recall[] = {"--tokens", tokens_path, "--task", "recall", "--prompt-tokens",
                            "200", NULL};
    assert_int_equal(run(recall, NULL), 2);
    const char *sinks[] = {"--tokens", tokens_path, "--prompt-tokens", "40", "--budgets",
                           "0.1", NULL};
    assert_int_equal(run(sinks, NULL), 2);
    const char *granularity[] = {"--tokens", tokens_path, "--granularity", "heads", NULL};
    assert_int_equal(run(granularity, NULL), 2);
    const char *help[] = {"--help", NULL};
    assert_int_equal(run(help, NULL), 0);
    /* every document too short: an error, not an empty report */
    if (have_data()) {
        const char *too_long[] = {"--tokens", tokens_path, "--prompt-tokens", "100000", NULL};
        assert_int_equal(run(too_long, NULL), 1);
    }
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "KF_EVAL DATA_DIR", &kf_eval, &data_dir))
        return 2;
    snprintf(tokens_path, sizeof tokens_path, "%s/sotu-dev.tokens.jsonl", data_dir);
    snprintf(text_path, sizeof text_path, "%s/sotu-dev.jsonl", data_dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_and_summary),
        cmocka_unit_test(test_recall_and_plot),
        cmocka_unit_test(test_uniform_granularity),
        cmocka_unit_test(test_scoring_options),
        cmocka_unit_test(test_bad_command_lines),
    };
    return cmocka_run_group_tests_name("kf-eval end to end", tests, NULL, NULL);
}
