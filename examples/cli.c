#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data_paths.h"

void cli_common_init(cli_common *c)
{
    *c = (cli_common){
        .model_path = kf_examples_model_path(),
        .tokenizer_path = kf_examples_tokenizer_path(),
        .dev_set = "sotu-dev",
    };
    kf_config_default(&c->library);
}

int cli_reject(cli_common *c, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(c->why, sizeof c->why, format, args);
    va_end(args);
    return -1;
}

/* ---- the table and the loop ---- */

void cli_print_usage(const cli_program *p, FILE *out)
{
    fprintf(out, "usage: %s\n", p->synopsis);
    for (int i = 0; i < p->n_options; i++)
        fprintf(out, "  %-15s %-*s %s\n", p->options[i].name, p->value_width,
                p->options[i].value_name, p->options[i].help);
    fprintf(out, "  %-15s %-*s %s\n  %-15s %-*s %s\n", "--help", p->value_width, "",
            "print this and exit", "--version", p->value_width, "",
            "print the program's and libkeyformer's version and exit");
}

static const cli_option *find_option(const cli_program *p, const char *name)
{
    for (int k = 0; k < p->n_options; k++)
        if (!strcmp(name, p->options[k].name))
            return &p->options[k];
    return NULL;
}

int cli_parse(const cli_program *p, cli_common *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cli_print_usage(p, stdout);
            return 1;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("%s (libkeyformer %s)\n", p->name, kf_version());
            return 1;
        }
        const cli_option *option = find_option(p, argv[i]);
        if (!option) {
            fprintf(stderr, "%s: unknown option %s\n", p->name, argv[i]);
            cli_print_usage(p, stderr);
            return -1;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value (%s)\n", p->name, option->name,
                    option->value_name);
            return -1;
        }
        c->why[0] = '\0';
        if (option->set(c, argv[++i]) != 0) {
            fprintf(stderr, "%s: bad value '%s' for %s%s%s\n", p->name, argv[i], option->name,
                    c->why[0] ? ": " : "", c->why);
            return -1;
        }
        if ((option->flags & CLI_LIBRARY_ONLY) && !c->library_option)
            c->library_option = option->name;
    }
    return 0;
}

/* ---- values ---- */

int cli_parse_int(const char *value, int min, int max, int *out)
{
    char *end;
    errno = 0;
    const long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

int cli_parse_float(const char *value, float min, float max, float *out)
{
    char *end;
    errno = 0;
    const float v = strtof(value, &end);
    if (errno || end == value || *end || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

int cli_parse_double(const char *value, double min, double max, double *out)
{
    char *end;
    errno = 0;
    const double v = strtod(value, &end);
    if (errno || end == value || *end || !(v >= min && v <= max))
        return -1;
    *out = v;
    return 0;
}

int cli_parse_seed(const char *value, unsigned long long *out)
{
    char *end;
    errno = 0;
    *out = strtoull(value, &end, 10);
    return errno || end == value || *end ? -1 : 0;
}

int cli_policy_from_name(const char *name, size_t len)
{
    static const struct {
        const char *name;
        int policy;
    } names[] = {{"full", CLI_POLICY_FULL}, {"keyformer", KF_POLICY_KEYFORMER},
                 {"h2o", KF_POLICY_H2O}, {"window", KF_POLICY_WINDOW},
                 {"sinks", KF_POLICY_SINKS}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strlen(names[i].name) == len && !strncmp(names[i].name, name, len))
            return names[i].policy;
    return CLI_POLICY_UNKNOWN;
}

/* ---- the options both programs take ---- */

int cli_set_model(cli_common *c, const char *value)
{
    c->model_path = value;
    c->model_given = true;
    return 0;
}

int cli_set_tokenizer(cli_common *c, const char *value)
{
    c->tokenizer_path = value;
    c->tokenizer_given = true;
    return 0;
}

int cli_set_bundled(cli_common *c, const char *value)
{
    const kf_bundled_model *m = kf_examples_bundled_model(value);
    if (!m)
        return cli_reject(c, "one of %s", kf_examples_bundled_names());
    if (kf_examples_bundled_path(m, m->model_file, c->bundled_model, sizeof c->bundled_model) ||
        kf_examples_bundled_path(m, "tokenizer.bin", c->bundled_tokenizer,
                                 sizeof c->bundled_tokenizer))
        return cli_reject(c, "the bundled model's path is too long");
    if (!c->model_given)
        c->model_path = c->bundled_model;
    if (!c->tokenizer_given)
        c->tokenizer_path = c->bundled_tokenizer;
    c->dev_set = m->dev_set;
    return 0;
}

int cli_set_threads(cli_common *c, const char *value)
{
    if (cli_parse_int(value, 1, CLI_MAX_THREADS, &c->threads))
        return cli_reject(c, "a thread count from 1 to %d (the library's limit)",
                          CLI_MAX_THREADS);
    return 0;
}

int cli_set_rule(cli_common *c, const char *value)
{
    if (!strcmp(value, "dynamic"))
        c->library.rule = KF_RULE_DYNAMIC;
    else if (!strcmp(value, "reference"))
        c->library.rule = KF_RULE_REFERENCE;
    else
        return cli_reject(c, "dynamic or reference");
    return 0;
}

int cli_set_granularity(cli_common *c, const char *value)
{
    /* uniform: one model-wide selection after the last layer of a step */
    if (!strcmp(value, "kv-head") || !strcmp(value, "head"))
        c->library.granularity = KF_GRANULARITY_KV_HEAD;
    else if (!strcmp(value, "layer"))
        c->library.granularity = KF_GRANULARITY_LAYER;
    else if (!strcmp(value, "uniform"))
        c->library.granularity = KF_GRANULARITY_UNIFORM;
    else
        return cli_reject(c, "kv-head (or head), layer or uniform");
    return 0;
}

int cli_set_slot_order(cli_common *c, const char *value)
{
    if (!strcmp(value, "position"))
        c->library.slot_order = KF_ORDER_POSITION;
    else if (!strcmp(value, "any"))
        c->library.slot_order = KF_ORDER_ANY;
    else
        return cli_reject(c, "position or any");
    return 0;
}

int cli_set_noise(cli_common *c, const char *value)
{
    if (!strcmp(value, "table"))
        c->library.noise = KF_NOISE_TABLE;
    else if (!strcmp(value, "exact"))
        c->library.noise = KF_NOISE_EXACT;
    else
        return cli_reject(c, "table or exact");
    return 0;
}

int cli_set_obs_window(cli_common *c, const char *value)
{
    int n;
    if (cli_parse_int(value, 0, CLI_MAX_TOKENS, &n))
        return cli_reject(c, "a query-row count from 0 (off) to %d", CLI_MAX_TOKENS);
    c->library.obs_window = (uint32_t)n;
    return 0;
}

/* K or K:max / K:avg (max when no mode is given). */
int cli_set_pool(cli_common *c, const char *value)
{
    char digits[16];
    const char *colon = strchr(value, ':');
    const size_t len = colon ? (size_t)(colon - value) : strlen(value);
    uint32_t mode = KF_POOL_MAX;
    if (colon && !strcmp(colon + 1, "avg"))
        mode = KF_POOL_AVG;
    else if (colon && strcmp(colon + 1, "max"))
        return cli_reject(c, "K, K:max or K:avg");
    int k;
    if (len == 0 || len >= sizeof digits)
        return cli_reject(c, "K, K:max or K:avg, K 0, 1 or odd from 3 to 255");
    memcpy(digits, value, len);
    digits[len] = '\0';
    if (cli_parse_int(digits, 0, 255, &k) || (k > 1 && k % 2 == 0))
        return cli_reject(c, "K, K:max or K:avg, K 0, 1 or odd from 3 to 255");
    c->library.pool_kernel = (uint32_t)k;
    c->library.pool_mode = mode;
    return 0;
}

int cli_set_layer_slope(cli_common *c, const char *value)
{
    double b;
    if (cli_parse_double(value, -1.0, 1.0, &b) || b <= -1.0 || b >= 1.0)
        return cli_reject(c, "a slope in (-1, 1)");
    c->library.layer_slope = (float)b;
    return 0;
}

int cli_set_sink_tokens(cli_common *c, const char *value)
{
    int n;
    if (cli_parse_int(value, 0, CLI_MAX_TOKENS, &n))
        return cli_reject(c, "a token count from 0 (off) to %d", CLI_MAX_TOKENS);
    c->library.sink_tokens = (uint32_t)n;
    return 0;
}

int cli_set_head_budget(cli_common *c, const char *value)
{
    static const char why[] = "even, adaptive or adaptive:A with A in [0, 1]";
    double floor = 0.0;
    if (!strcmp(value, "even")) {
        c->library.head_budget = KF_HEAD_BUDGET_EVEN;
        c->library.head_floor = 0.0f;
        return 0;
    }
    if (strncmp(value, "adaptive", 8) || (value[8] && value[8] != ':'))
        return cli_reject(c, why);
    if (value[8] == ':' && cli_parse_double(value + 9, 0.0, 1.0, &floor))
        return cli_reject(c, why);
    c->library.head_budget = KF_HEAD_BUDGET_ADAPTIVE;
    c->library.head_floor = (float)floor;
    return 0;
}

int cli_set_score_norm(cli_common *c, const char *value)
{
    if (!strcmp(value, "none"))
        c->library.score_norm = KF_SCORE_NORM_NONE;
    else if (!strcmp(value, "seen"))
        c->library.score_norm = KF_SCORE_NORM_SEEN;
    else
        return cli_reject(c, "none or seen");
    return 0;
}

int cli_set_evict_every(cli_common *c, const char *value)
{
    int n;
    if (cli_parse_int(value, 1, CLI_MAX_TOKENS, &n))
        return cli_reject(c, "a step count from 1 to %d", CLI_MAX_TOKENS);
    c->library.evict_interval = (uint32_t)n;
    return 0;
}

int cli_set_sinks(cli_common *c, const char *value)
{
    int n;
    if (cli_parse_int(value, 0, CLI_MAX_TOKENS, &n))
        return cli_reject(c, "a token count from 0 to %d", CLI_MAX_TOKENS);
    c->library.n_sinks = (uint32_t)n;
    return 0;
}

int cli_set_tau_steps(cli_common *c, const char *value)
{
    int n;
    if (cli_parse_int(value, 1, INT_MAX, &n))
        return cli_reject(c, "a step count of at least 1");
    c->library.tau_steps = (uint32_t)n;
    c->tau_steps_given = true;
    return 0;
}

/* ---- files ---- */

static const char *file_type_name(mode_t mode)
{
    return S_ISDIR(mode) ? "a directory" : S_ISFIFO(mode) ? "a FIFO" : S_ISCHR(mode) ? "a device"
           : S_ISBLK(mode) ? "a block device" : S_ISSOCK(mode) ? "a socket" : "not a file";
}

int cli_open_input(const char *what, const char *path, int64_t max_bytes, char *why,
                   size_t why_size)
{
    /* O_NONBLOCK: opening a FIFO with no writer would wait forever. */
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, why_size, "%s %s: %s", what, path, strerror(errno));
        return -1;
    }
    struct stat st;
    const char *problem = NULL;
    if (fstat(fd, &st) != 0)
        problem = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        problem = file_type_name(st.st_mode);
    if (problem) {
        snprintf(why, why_size, "%s %s: %s, not a regular file", what, path, problem);
        close(fd);
        return -1;
    }
    if (max_bytes > 0 && (int64_t)st.st_size > max_bytes) {
        snprintf(why, why_size, "%s %s: %lld bytes, more than the %lld (%lld MiB) read at most",
                 what, path, (long long)st.st_size, (long long)max_bytes,
                 (long long)(max_bytes >> 20));
        close(fd);
        return -1;
    }
    const int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        snprintf(why, why_size, "%s %s: %s", what, path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

int cli_check_input(const char *what, const char *path, int64_t max_bytes, char *why,
                    size_t why_size)
{
    const int fd = cli_open_input(what, path, max_bytes, why, why_size);
    if (fd < 0)
        return -1;
    close(fd);
    return 0;
}

int cli_check_output(const char *what, const char *path, char *why, size_t why_size)
{
    struct stat st;
    if (path[0] == '\0') {
        snprintf(why, why_size, "%s: an empty path", what);
        return -1;
    }
    if (stat(path, &st) != 0)
        return 0; /* absent: the writer creates it, or says why it cannot */
    /* A FIFO would block the writer until some reader comes. */
    if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode)) {
        snprintf(why, why_size, "%s %s: %s, not a regular file", what, path,
                 file_type_name(st.st_mode));
        return -1;
    }
    return 0;
}

/* ---- loading ---- */

int cli_load_model(const cli_common *c, eng_model *model, eng_tokenizer *tokenizer,
                   eng_error *err)
{
    char why[sizeof err->message];
    if (cli_check_input("--model", c->model_path, 0, why, sizeof why) ||
        (tokenizer && cli_check_input("--tokenizer", c->tokenizer_path, 0, why, sizeof why)))
        return eng_fail(err, ENG_EIO, "%s", why);
    int rc = eng_model_open(model, c->model_path, err);
    if (rc == ENG_OK && tokenizer)
        rc = eng_tokenizer_load(tokenizer, c->tokenizer_path, model->config.vocab_size, err);
    return rc;
}

/* The two budgets are separate flags: one option that read "1" as one
 * slot and "1.0" as the whole prompt was too easy to misread. */
static int note_budget_flag(cli_common *c, const char *flag)
{
    if (c->budget_flag && strcmp(c->budget_flag, flag))
        return cli_reject(c, "%s was given already: give one budget", c->budget_flag);
    c->budget_flag = flag;
    return 0;
}

int cli_set_budget_ratio(cli_common *c, const char *value)
{
    double ratio;
    if (cli_parse_double(value, 0.0, 1.0, &ratio) || ratio <= 0.0)
        return cli_reject(c, "a fraction of the prompt in (0, 1]");
    if (note_budget_flag(c, "--budget-ratio"))
        return -1;
    c->library.budget_ratio = ratio;
    c->library.budget_tokens = 0;
    return 0;
}

int cli_set_budget_tokens(cli_common *c, const char *value)
{
    int tokens;
    if (cli_parse_int(value, 1, CLI_MAX_TOKENS, &tokens))
        return cli_reject(c, "a whole number of slots from 1 to %d", CLI_MAX_TOKENS);
    if (note_budget_flag(c, "--budget-tokens"))
        return -1;
    c->library.budget_tokens = (uint32_t)tokens;
    c->library.budget_ratio = 0.0;
    return 0;
}

char *cli_read_prompt_file(const char *program, const char *path, size_t *len)
{
    char why[512];
    const int fd = cli_open_input("--prompt-file", path, CLI_MAX_PROMPT_BYTES, why, sizeof why);
    if (fd < 0) {
        fprintf(stderr, "%s: %s\n", program, why);
        return NULL;
    }
    FILE *f = fdopen(fd, "rb");
    const size_t capacity = (size_t)CLI_MAX_PROMPT_BYTES + 1;
    char *text = f ? malloc(capacity) : NULL;
    size_t used = text ? fread(text, 1, capacity, f) : 0;
    const int failed = !f || ferror(f);
    if (f)
        fclose(f);
    else
        close(fd);
    if (!text || failed || used == capacity) {
        fprintf(stderr, "%s: --prompt-file %s: %s\n", program, path,
                !text ? "out of memory" : failed ? "cannot read" : "grew past 1 MiB while read");
        free(text);
        return NULL;
    }
    /* Editors end files with a newline that is not part of the prompt. */
    while (used > 0 && (text[used - 1] == '\n' || text[used - 1] == '\r'))
        used--;
    *len = used;
    return text;
}

double cli_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}
