/* kf-generate's option table and checks for fuzz_cli: the program's own
 * source with main() renamed, so the target runs parse_command_line() in
 * its process, as often as it likes (it must return, never exit). */
#define main kf_generate_main
#include "kf-generate.c"
#undef main

#include "fuzz_check.h"
#include "fuzz_cli.h"

#define check_failed fuzz_cli_check_failed

int fuzz_cli_generate(int argc, char **argv)
{
    generate_options o;
    const int rc = parse_command_line(&o, argc, argv);
    CHECK(rc == 0 || rc == 1 || rc == -1);
    if (rc != 0)
        return rc;
    const kf_config *lib = &o.common.library;
    CHECK(o.common.threads >= 0 && o.common.threads <= CLI_MAX_THREADS);
    CHECK(o.steps >= 0 && o.steps <= CLI_MAX_TOKENS);
    CHECK(o.capacity >= 0 && o.capacity <= CLI_MAX_TOKENS);
    CHECK(o.top_p > 0.0f && o.top_p <= 1.0f);
    CHECK(!(o.prompt && o.prompt_file));
    /* a library option is only accepted with a library policy */
    CHECK(o.use_library || !o.common.library_option);
    /* exactly one budget, in range */
    CHECK((lib->budget_tokens > 0) != (lib->budget_ratio > 0.0));
    CHECK(lib->budget_tokens <= CLI_MAX_TOKENS && lib->budget_ratio <= 1.0);
    CHECK(lib->evict_interval <= CLI_MAX_TOKENS && lib->n_sinks <= CLI_MAX_TOKENS);
    CHECK(!(o.use_library && lib->policy == KF_POLICY_SINKS && lib->budget_tokens > 0 &&
            lib->budget_tokens <= lib->n_sinks));
    return rc;
}
