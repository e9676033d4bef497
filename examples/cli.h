/* The command line of kf-generate and kf-eval: one table row per option, the
 * usage text, the parsing loop, the options both programs take (model,
 * tokenizer, threads and the library's eviction settings) and loading the
 * model with its tokenizer.
 *
 * A program's options struct begins with a cli_common, so the setters of
 * its table all take a cli_common pointer: the shared ones below use it
 * directly, the program's own ones convert it to the whole struct. */
#ifndef KF_EXAMPLES_CLI_H
#define KF_EXAMPLES_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <keyformer.h>

#include "model.h"
#include "tokenizer.h"

typedef struct cli_common {
    const char *model_path;
    const char *tokenizer_path;
    int threads;
    bool tau_steps_given; /* --tau-steps was given */
    kf_config library;    /* shape fields are filled by the program */
} cli_common;

/* The bundled model and tokenizer and kf_config_default(); threads 0. */
void cli_common_init(cli_common *c);

/* Stores the value of an option; 0, or -1 if the value is bad. */
typedef int (*cli_setter)(cli_common *c, const char *value);

typedef struct cli_option {
    const char *name;       /* "--steps" */
    const char *value_name; /* "N" */
    const char *help;
    cli_setter set;
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
 * usage to stdout. Returns 0 to run, 1 when help was printed, -1 after
 * printing why the command line is bad. */
int cli_parse(const cli_program *p, cli_common *c, int argc, char **argv);

/* Number parsers: the whole of value, within [min, max]; 0 or -1. */
int cli_parse_int(const char *value, int min, int *out);
int cli_parse_float(const char *value, float min, float max, float *out);
int cli_parse_double(const char *value, double min, double max, double *out);
/* strtoull's reading, so "-1" wraps around. */
int cli_parse_seed(const char *value, unsigned long long *out);

/* "full" is not a library policy: it means running without the library. */
enum { CLI_POLICY_FULL = -1, CLI_POLICY_UNKNOWN = -2 };

/* The kf_policy (or CLI_POLICY_FULL) spelled by the len bytes at name:
 * full, keyformer, h2o, window or sinks; CLI_POLICY_UNKNOWN otherwise. */
int cli_policy_from_name(const char *name, size_t len);

/* Setters for the options both programs take. */
int cli_set_model(cli_common *c, const char *value);
int cli_set_tokenizer(cli_common *c, const char *value);
int cli_set_threads(cli_common *c, const char *value);      /* >= 1 */
int cli_set_rule(cli_common *c, const char *value);         /* dynamic, reference */
int cli_set_granularity(cli_common *c, const char *value);  /* kv-head, layer, uniform */
int cli_set_sinks(cli_common *c, const char *value);        /* >= 0 */
int cli_set_evict_every(cli_common *c, const char *value);  /* >= 1 */
int cli_set_slot_order(cli_common *c, const char *value);   /* position, any */
int cli_set_tau_steps(cli_common *c, const char *value);    /* >= 1 */

/* Opens c->model_path and, when tokenizer is not NULL, loads
 * c->tokenizer_path for the model's vocabulary. Returns ENG_OK or the
 * engine's status with err filled in. */
int cli_load_model(const cli_common *c, eng_model *model, eng_tokenizer *tokenizer,
                   eng_error *err);

#endif
