/* Copyright (c) 2026 the libkeyformer developers. BSD-2-Clause, see COPYING. */
/* The command line that kf-eval and kf-eval-llama share: the sweep's
 * options (documents, lengths, policies, budgets, seeds), their option-table
 * setters, the checks across options and the list of runs. Each program
 * keeps its own table and the options only it has. */
#ifndef KF_EVAL_OPTIONS_H
#define KF_EVAL_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "eval/docs.h"
#include "eval/runner.h"

enum { EVAL_MAX_BUDGETS = 32, EVAL_MAX_SEEDS = 1000 };

/* --policies full is the full cache, EVAL_FULL in the runner. */
_Static_assert((int)EVAL_FULL == (int)CLI_POLICY_FULL, "EVAL_FULL differs from CLI_POLICY_FULL");

typedef struct eval_options {
    cli_common common; /* first: the option table's setters receive it */
    const char *tokens_path, *text_path;
    const char *csv_path, *plot_path;
    int prompt_tokens, gen_tokens, rouge_tokens;
    bool policy_wanted[5];   /* indexed by policy + 1 (full = 0) */
    int policy_order[5], n_policies;
    double budgets[EVAL_MAX_BUDGETS];
    int n_budgets;
    eval_task task;
    int seeds;
    unsigned long long first_seed;
    int max_docs;
} eval_options;

/* Option-table rows both programs list with the same help, in their order:
 * the sweep (lengths, policies, budgets, task, recent window, rule), and
 * Keyformer's temperature with the runs and documents. */
#define EVAL_OPTIONS_SWEEP                                                                       \
    {"--prompt-tokens", "P", "prompt ids, prefilled with full attention (1024)",                 \
     eval_set_prompt, 0},                                                                        \
    {"--gen-tokens", "M", "teacher-forced predictions per document (256)", eval_set_gen, 0},     \
    {"--rouge-tokens", "G", "greedy tokens compared by ROUGE-L (128; 0 skips)",                  \
     eval_set_rouge, 0},                                                                         \
    {"--policies", "LIST", "of full,keyformer,h2o,window,sinks (all)", eval_set_policies, 0},    \
    {"--budgets", "LIST", "fractions of the prompt in (0, 1] (0.1,0.2,0.3,0.5,0.7,0.9)",         \
     eval_set_budgets, CLI_LIBRARY_ONLY},                                                        \
    {"--task", "NAME", "continue (default) or recall", eval_set_task, 0},                        \
    {"--recent", "R", "recent window as a fraction of the budget (0.3)", eval_set_recent,        \
     CLI_LIBRARY_ONLY},                                                                          \
    {"--rule", "NAME", "decode eviction: dynamic (default) or reference", cli_set_rule,          \
     CLI_LIBRARY_ONLY}
#define EVAL_OPTIONS_TAU_AND_RUNS                                                                \
    {"--tau-init", "T", "Keyformer temperature at the prompt (1)", eval_set_tau_init,            \
     CLI_LIBRARY_ONLY},                                                                          \
    {"--tau-end", "T", "Keyformer temperature after --tau-steps (2)", eval_set_tau_end,          \
     CLI_LIBRARY_ONLY},                                                                          \
    {"--tau-steps", "N", "steps from tau-init to tau-end (default M)", cli_set_tau_steps,        \
     CLI_LIBRARY_ONLY},                                                                          \
    {"--seeds", "N", "Keyformer runs per budget, seeds S .. S+N-1 (1)", eval_set_seeds, 0},      \
    {"--seed", "S", "first Keyformer seed (1)", eval_set_seed, 0},                               \
    {"--max-docs", "N", "evaluate the first N usable documents (all)", eval_set_max_docs, 0}

/* The defaults of both programs, threads on every core. A program's own
 * options struct starts with an eval_options, so that these setters, given
 * its cli_common, reach the fields below. */
void eval_options_init(eval_options *o);

/* Option-table setters (cli_option.set) of the shared options. */
int eval_set_tokens(cli_common *c, const char *v);
int eval_set_text(cli_common *c, const char *v);
int eval_set_csv(cli_common *c, const char *v);
int eval_set_plot(cli_common *c, const char *v);
int eval_set_prompt(cli_common *c, const char *v);
int eval_set_gen(cli_common *c, const char *v);
int eval_set_rouge(cli_common *c, const char *v);
int eval_set_policies(cli_common *c, const char *v);
int eval_set_budgets(cli_common *c, const char *v);
int eval_set_task(cli_common *c, const char *v);
int eval_set_recent(cli_common *c, const char *v);
int eval_set_tau_init(cli_common *c, const char *v);
int eval_set_tau_end(cli_common *c, const char *v);
int eval_set_seeds(cli_common *c, const char *v);
int eval_set_seed(cli_common *c, const char *v);
int eval_set_max_docs(cli_common *c, const char *v);
/* A token count within [min, CLI_MAX_TOKENS] into *out. */
int eval_set_count(cli_common *c, const char *v, int min, int *out);

/* Whether a policy other than full is asked for. */
bool eval_options_wants_library_policy(const eval_options *o);

/* The checks across options both programs make (a library option without a
 * library policy, a recall passage outside the prompt); 0, or -1 after
 * saying why, after "program: ". */
int eval_options_check_combinations(const eval_options *o, const char *program);

/* Every input and output file, before anything loads: an hour of runs must
 * not end on a CSV path that cannot be written. model_path, when not NULL,
 * is checked first as --model. 0, or -1 after saying why. */
int eval_options_check_paths(const eval_options *o, const char *program, const char *model_path);

/* The --text or --tokens file as a stream, refused as cli_open_input()
 * refuses (a FIFO, a device, more than CLI_MAX_DOCUMENT_BYTES); NULL with
 * message filled. */
FILE *eval_options_open_documents(const eval_options *o, char *message, size_t message_size);

/* Run 0 is the full cache (the reference of every metric, always run);
 * then each policy, budget and (Keyformer only) seed. NULL when out of
 * memory; free() the result. */
eval_run *eval_options_make_runs(const eval_options *o, int *n_runs);

/* The documents long enough for the task, at most --max-docs; usable has
 * room for every document. Returns the count, or -1 after saying why. */
int eval_options_select_documents(const eval_options *o, const char *program,
                                  const eval_corpus *corpus, int vocab_size, eval_doc *usable);

/* Positions past the model's trained context (context; 0: unknown) still
 * run, but what the model says there is untested: a warning. */
void eval_options_warn_past_context(const eval_options *o, const char *program, int64_t context);

/* The Markdown summary on stdout (the full cache's rows when --policies
 * names full), then the --csv and --plot files asked for. 0, or 1 when a
 * file could not be written. */
int eval_options_report(const eval_options *o, const eval_sweep *sweep,
                        const eval_results *results);

#endif
