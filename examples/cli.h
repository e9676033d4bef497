/* The command line of kf-generate and kf-eval: one table row per option, the
 * usage text, the parsing loop, the options both programs take (model,
 * tokenizer, threads and the library's eviction settings), the checks on
 * every file a program opens, and loading the model with its tokenizer.
 *
 * A program's options struct begins with a cli_common, so the setters of
 * its table all take a cli_common pointer: the shared ones below use it
 * directly, the program's own ones convert it to the whole struct.
 *
 * Every value here comes from an untrusted command line (doc/robustness.md,
 * "Example programs: threat model"): parsing never exits, never opens a
 * file, and bounds every count so that the programs' size arithmetic
 * cannot overflow; files are checked (cli_open_input) before use. */
#ifndef KF_EXAMPLES_CLI_H
#define KF_EXAMPLES_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <keyformer.h>

#include "model.h"
#include "tokenizer.h"

/* The library refuses more threads per call (kf_config.n_threads). */
enum { CLI_MAX_THREADS = 1024 };
/* Any count of tokens or slots given on the command line (steps, capacity,
 * prompt and generated tokens, budgets, sinks, eviction interval): 2^20,
 * 512 times the bundled model's context, and small enough that sums and
 * products of a few such counts never overflow. */
enum { CLI_MAX_TOKENS = 1 << 20 };
/* The largest document file kf-eval reads (--tokens, --text). */
#define CLI_MAX_DOCUMENT_BYTES ((int64_t)64 << 20)
/* The largest prompt file kf-generate reads: about 250 000 tokens, over a
 * hundred times what the bundled model was trained on. */
#define CLI_MAX_PROMPT_BYTES ((int64_t)1 << 20)

/* The longest path --bundled composes. */
enum { CLI_BUNDLED_PATH_BYTES = 4096 };

typedef struct cli_common {
    const char *model_path;
    const char *tokenizer_path;
    bool model_given, tokenizer_given; /* --model, --tokenizer: --bundled keeps them */
    const char *dev_set;   /* the bundled dev set's stem, "sotu-dev" unless --bundled */
    char bundled_model[CLI_BUNDLED_PATH_BYTES], bundled_tokenizer[CLI_BUNDLED_PATH_BYTES];
    int threads;
    bool tau_steps_given;  /* --tau-steps was given */
    /* The first option given that only a library policy uses (--recent,
     * --sinks, ...), or NULL: with no such policy it would do nothing. */
    const char *library_option;
    const char *budget_flag; /* --budget-ratio or --budget-tokens, if given */
    char why[256];         /* a setter's reason for refusing a value */
    kf_config library;     /* shape fields are filled by the program */
} cli_common;

/* The bundled model and tokenizer and kf_config_default(); threads 0. */
void cli_common_init(cli_common *c);

/* Stores the value of an option; 0, or -1 if the value is bad (after
 * cli_reject() to say why, when the range alone does not). */
typedef int (*cli_setter)(cli_common *c, const char *value);

/* Formats why a value is refused into c->why; returns -1. */
int cli_reject(cli_common *c, const char *format, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* cli_option.flags */
enum { CLI_LIBRARY_ONLY = 1 }; /* only a library policy reads it */

typedef struct cli_option {
    const char *name;       /* "--steps" */
    const char *value_name; /* "N" */
    const char *help;
    cli_setter set;
    unsigned flags;
} cli_option;

#define CLI_N_OPTIONS(table) ((int)(sizeof(table) / sizeof((table)[0])))

typedef struct cli_program {
    const char *name;     /* starts every message */
    const char *synopsis; /* the usage line after "usage: " */
    int value_width;      /* column width of the value names in the usage text */
    const cli_option *options;
    int n_options;
} cli_program;

void cli_print_usage(const cli_program *p, FILE *out);

/* Applies every "--name value" of argv in order; --help or -h prints the
 * usage and --version the program's and the library's version to stdout.
 * Returns 0 to run, 1 when help or the version was printed, -1 after
 * printing why the command line is bad. Never exits. */
int cli_parse(const cli_program *p, cli_common *c, int argc, char **argv);

/* Number parsers: the whole of value, within [min, max]; 0 or -1. */
int cli_parse_int(const char *value, int min, int max, int *out);
int cli_parse_float(const char *value, float min, float max, float *out);
int cli_parse_double(const char *value, double min, double max, double *out);
/* strtoull's reading, so "-1" wraps around. */
int cli_parse_seed(const char *value, unsigned long long *out);

/* "full" is not a library policy: it means running without the library. */
enum { CLI_POLICY_FULL = -1, CLI_POLICY_UNKNOWN = -2 };

/* The kf_policy (or CLI_POLICY_FULL) spelled by the len bytes at name:
 * full, keyformer, h2o, window or sinks; CLI_POLICY_UNKNOWN otherwise. */
int cli_policy_from_name(const char *name, size_t len);
#define CLI_POLICY_NAMES "full, keyformer, h2o, window, sinks"

/* Setters for the options both programs take. */
int cli_set_model(cli_common *c, const char *value);
int cli_set_tokenizer(cli_common *c, const char *value);
/* --bundled NAME (sotu, pycode): the bundled model's checkpoint, tokenizer
 * and dev set, except a --model or --tokenizer given before or after. */
int cli_set_bundled(cli_common *c, const char *value);
#define CLI_BUNDLED_HELP "bundled model: sotu (default) or pycode (code, 2048 context)"
int cli_set_threads(cli_common *c, const char *value);      /* 1 .. CLI_MAX_THREADS */
int cli_set_rule(cli_common *c, const char *value);         /* dynamic, reference */
int cli_set_granularity(cli_common *c, const char *value);  /* kv-head (head), layer, uniform */
int cli_set_sinks(cli_common *c, const char *value);        /* 0 .. CLI_MAX_TOKENS */
int cli_set_evict_every(cli_common *c, const char *value);  /* 1 .. CLI_MAX_TOKENS */
int cli_set_slot_order(cli_common *c, const char *value);   /* position, any */
int cli_set_noise(cli_common *c, const char *value);        /* table, exact */
int cli_set_tau_steps(cli_common *c, const char *value);    /* >= 1 */
int cli_set_obs_window(cli_common *c, const char *value);   /* 0 .. CLI_MAX_TOKENS */
int cli_set_pool(cli_common *c, const char *value);         /* K[:max|:avg] */
int cli_set_score_norm(cli_common *c, const char *value);   /* none, seen */
int cli_set_layer_slope(cli_common *c, const char *value);  /* (-1, 1) */
int cli_set_sink_tokens(cli_common *c, const char *value);  /* 0 .. CLI_MAX_TOKENS */
int cli_set_head_budget(cli_common *c, const char *value);  /* even, adaptive[:A] */
/* --budget-ratio R in (0, 1] and --budget-tokens K >= 1 (kf-generate,
 * kf-llama): one budget, either flag, the other one refused. */
int cli_set_budget_ratio(cli_common *c, const char *value);
int cli_set_budget_tokens(cli_common *c, const char *value);

/* Option-table rows of the scoring options, one help text for every
 * program that takes them, in the order their usage lists them. */
#define CLI_OPTIONS_SCORING                                                                      \
    {"--slot-order", "O", "any (default): refill evicted slots from the end; position: keep "  \
     "position order", cli_set_slot_order, CLI_LIBRARY_ONLY},                                   \
    {"--noise", "N", "table (default): Gumbel noise from a 4096-bin table; exact: the "        \
     "continuous sample", cli_set_noise, CLI_LIBRARY_ONLY},                                     \
    {"--obs-window", "W", "score the prompt by its last W query rows only (0: off, all rows)",  \
     cli_set_obs_window, CLI_LIBRARY_ONLY},                                                     \
    {"--pool", "K[:M]", "pool prompt scores over K neighbours, M max (default) or avg (0: off)", \
     cli_set_pool, CLI_LIBRARY_ONLY},                                                           \
    {"--score-norm", "N", "none (default) or seen: rank by score per query row that saw the "  \
     "token", cli_set_score_norm, CLI_LIBRARY_ONLY},                                           \
    {"--sink-tokens", "S", "Keyformer and H2O also keep the first S tokens (0: off)",           \
     cli_set_sink_tokens, CLI_LIBRARY_ONLY}
/* Per-layer and per-KV-head budgets: not for hosts with one cell per
 * position for every layer and head (llama.cpp). */
#define CLI_OPTION_LAYER_SLOPE                                                                   \
    {"--layer-slope", "B", "per-layer budgets k(1 + B(L-1-2l)/(L-1)), B in (-1, 1): B > 0 "    \
     "more to lower layers (0: off)", cli_set_layer_slope, CLI_LIBRARY_ONLY}
#define CLI_OPTION_HEAD_BUDGET                                                                   \
    {"--head-budget", "M", "even (default) or adaptive[:A]: split each layer's budget over its " \
     "KV heads by score concentration, each head >= A of its share (Ada-KV)",                   \
     cli_set_head_budget, CLI_LIBRARY_ONLY}

/* ---- files ---- */

/* Opens path for reading as what it is given for ("--tokens") without
 * blocking on a FIFO that has no writer, and checks that it is a regular
 * file of at most max_bytes (0: any size). Returns a blocking descriptor,
 * or -1 with why filled ("--tokens /tmp: a directory, not a file"). */
int cli_open_input(const char *what, const char *path, int64_t max_bytes, char *why,
                   size_t why_size);

/* The same check for a file that another function opens by path. 0 or -1. */
int cli_check_input(const char *what, const char *path, int64_t max_bytes, char *why,
                    size_t why_size);

/* Checks that an output path can be written without blocking: absent, a
 * regular file, or a character device such as /dev/null. 0 or -1 with why
 * filled; creates nothing. */
int cli_check_output(const char *what, const char *path, char *why, size_t why_size);

/* The --prompt-file of kf-generate and kf-llama, at most CLI_MAX_PROMPT_BYTES
 * (checked before reading, a FIFO or device refused: neither would end or
 * fit), its trailing newlines dropped. Returns a malloc'ed text (*len bytes,
 * not NUL-terminated), or NULL after saying why, after "program: ". */
char *cli_read_prompt_file(const char *program, const char *path, size_t *len);

/* A monotonic clock in milliseconds, for the programs' timings. */
double cli_now_ms(void);

/* Checks the model and tokenizer files (cli_check_input), opens
 * c->model_path and, when tokenizer is not NULL, loads c->tokenizer_path for
 * the model's vocabulary. Returns ENG_OK or the engine's status with err
 * filled in. */
int cli_load_model(const cli_common *c, eng_model *model, eng_tokenizer *tokenizer,
                   eng_error *err);

#endif
