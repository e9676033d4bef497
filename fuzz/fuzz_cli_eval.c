/* kf-eval's option table and checks for fuzz_cli: the program's own source
 * with main() renamed, so the target runs parse_command_line() in its
 * process, as often as it likes (it must return, never exit). */
#define main kf_eval_main
#include "kf-eval.c"
#undef main

#include "fuzz_check.h"
#include "fuzz_cli.h"

#define check_failed fuzz_cli_check_failed

int fuzz_cli_eval(int argc, char **argv)
{
    options opt;
    const int rc = parse_command_line(&opt, argc, argv);
    CHECK(rc == 0 || rc == 1 || rc == -1);
    if (rc != 0)
        return rc;
    const eval_options o = opt.eval;
    CHECK(o.common.threads >= 1 && o.common.threads <= CLI_MAX_THREADS);
    CHECK(o.prompt_tokens >= 2 && o.prompt_tokens <= CLI_MAX_TOKENS);
    CHECK(o.gen_tokens >= 1 && o.gen_tokens <= CLI_MAX_TOKENS);
    CHECK(o.rouge_tokens >= 0 && o.rouge_tokens <= CLI_MAX_TOKENS);
    CHECK(o.seeds >= 1 && o.seeds <= EVAL_MAX_SEEDS);
    CHECK(o.n_policies >= 1 && o.n_policies <= 5);
    CHECK(o.n_budgets >= 1 && o.n_budgets <= EVAL_MAX_BUDGETS);
    CHECK((o.tokens_path != NULL) != (o.text_path != NULL));
    /* the runner's sizes: P + M + 1 and the engine capacity fit an int */
    CHECK((int64_t)o.prompt_tokens + o.gen_tokens + o.rouge_tokens +
              o.common.library.evict_interval < INT_MAX);
    for (int b = 0; b < o.n_budgets; b++) {
        CHECK(o.budgets[b] > 0.0 && o.budgets[b] <= 1.0);
        const int64_t k = (int64_t)floor(o.budgets[b] * o.prompt_tokens);
        CHECK(k >= 1);
        CHECK(!o.policy_wanted[KF_POLICY_SINKS + 1] || k > (int64_t)o.common.library.n_sinks);
    }
    if (o.task == EVAL_TASK_RECALL)
        CHECK(o.prompt_tokens >= EVAL_RECALL_OFFSET + o.gen_tokens + 1);
    return rc;
}
