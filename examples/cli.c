#include "cli.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#ifndef KF_MODEL_DIR
#define KF_MODEL_DIR "examples/models/sotu-llama-6m"
#endif

void cli_common_init(cli_common *c)
{
    *c = (cli_common){
        .model_path = KF_MODEL_DIR "/model.bin",
        .tokenizer_path = KF_MODEL_DIR "/tokenizer.bin",
    };
    kf_config_default(&c->library);
}

/* ---- the table and the loop ---- */

void cli_print_usage(const cli_program *p, FILE *out)
{
    fprintf(out, "usage: %s\n", p->synopsis);
    for (int i = 0; i < p->n_options; i++)
        fprintf(out, "  %-15s %-*s %s\n", p->options[i].name, p->value_width,
                p->options[i].value_name, p->options[i].help);
}

int cli_parse(const cli_program *p, cli_common *c, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            cli_print_usage(p, stdout);
            return 1;
        }
        const cli_option *option = NULL;
        for (int k = 0; k < p->n_options && !option; k++)
            if (!strcmp(argv[i], p->options[k].name))
                option = &p->options[k];
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
        if (option->set(c, argv[++i]) != 0) {
            fprintf(stderr, "%s: bad value '%s' for %s\n", p->name, argv[i], option->name);
            return -1;
        }
    }
    return 0;
}

/* ---- values ---- */

int cli_parse_int(const char *value, int min, int *out)
{
    char *end;
    errno = 0;
    const long v = strtol(value, &end, 10);
    if (errno || end == value || *end || v < min || v > INT_MAX)
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
    return 0;
}

int cli_set_tokenizer(cli_common *c, const char *value)
{
    c->tokenizer_path = value;
    return 0;
}

int cli_set_threads(cli_common *c, const char *value)
{
    return cli_parse_int(value, 1, &c->threads);
}

int cli_set_rule(cli_common *c, const char *value)
{
    if (!strcmp(value, "dynamic"))
        c->library.rule = KF_RULE_DYNAMIC;
    else if (!strcmp(value, "reference"))
        c->library.rule = KF_RULE_REFERENCE;
    else
        return -1;
    return 0;
}

int cli_set_granularity(cli_common *c, const char *value)
{
    /* uniform: one model-wide selection after the last layer of a step */
    if (!strcmp(value, "kv-head"))
        c->library.granularity = KF_GRANULARITY_KV_HEAD;
    else if (!strcmp(value, "layer"))
        c->library.granularity = KF_GRANULARITY_LAYER;
    else if (!strcmp(value, "uniform"))
        c->library.granularity = KF_GRANULARITY_UNIFORM;
    else
        return -1;
    return 0;
}

int cli_set_slot_order(cli_common *c, const char *value)
{
    if (!strcmp(value, "position"))
        c->library.slot_order = KF_ORDER_POSITION;
    else if (!strcmp(value, "any"))
        c->library.slot_order = KF_ORDER_ANY;
    else
        return -1;
    return 0;
}

int cli_set_evict_every(cli_common *c, const char *value)
{
    int n;
    if (cli_parse_int(value, 1, &n))
        return -1;
    c->library.evict_interval = (uint32_t)n;
    return 0;
}

int cli_set_sinks(cli_common *c, const char *value)
{
    int n;
    if (cli_parse_int(value, 0, &n))
        return -1;
    c->library.n_sinks = (uint32_t)n;
    return 0;
}

int cli_set_tau_steps(cli_common *c, const char *value)
{
    int n;
    if (cli_parse_int(value, 1, &n))
        return -1;
    c->library.tau_steps = (uint32_t)n;
    c->tau_steps_given = true;
    return 0;
}

/* ---- loading ---- */

int cli_load_model(const cli_common *c, eng_model *model, eng_tokenizer *tokenizer,
                   eng_error *err)
{
    int rc = eng_model_open(model, c->model_path, err);
    if (rc == ENG_OK && tokenizer)
        rc = eng_tokenizer_load(tokenizer, c->tokenizer_path, model->config.vocab_size, err);
    return rc;
}
