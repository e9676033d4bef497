/* The example programs' default model and data folders: the source tree
 * while it exists, else the copies `meson install` puts under
 * <prefix>/<datadir>/keyformer (what an installed kf-generate runs on).
 *
 * usage: test-engine-data-paths SOURCE_MODEL_DIR */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data_paths.h"
#include "data_paths_config.h"
#include "test_args.h"

static const char *source_model_dir;

static bool ends_with(const char *s, const char *tail)
{
    const size_t n = strlen(s), t = strlen(tail);
    return n >= t && !strcmp(s + n - t, tail);
}

static void test_build_tree_programs_use_the_source_tree(void **state)
{
    (void)state;
    assert_string_equal(kf_examples_model_dir(), source_model_dir);
    assert_true(ends_with(kf_examples_model_path(), "/sotu-llama-6m/model.bin"));
    assert_true(ends_with(kf_examples_tokenizer_path(), "/sotu-llama-6m/tokenizer.bin"));
    assert_int_equal(access(kf_examples_model_path(), R_OK), 0);
    assert_int_equal(access(kf_examples_tokenizer_path(), R_OK), 0);
    assert_true(ends_with(kf_examples_data_dir(), "/examples/data"));
}

static void test_installed_folders_are_under_the_prefix(void **state)
{
    (void)state;
    assert_true(ends_with(KF_INSTALLED_MODEL_DIR, "/keyformer/models/sotu-llama-6m"));
    assert_true(ends_with(KF_INSTALLED_DATA_DIR, "/keyformer/data"));
    assert_true(KF_INSTALLED_MODEL_DIR[0] == '/' && KF_INSTALLED_DATA_DIR[0] == '/');
}

/* Without the source tree, the installed folder is chosen. */
static void test_first_existing_folder_wins(void **state)
{
    (void)state;
    char dir[256], file[300];
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/kf-paths-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    assert_non_null(mkdtemp(dir));
    snprintf(file, sizeof file, "%s/file", dir);
    FILE *f = fopen(file, "w");
    assert_non_null(f);
    fclose(f);

    const char *gone_source[] = {"/nonexistent/kf-source/models", dir};
    assert_string_equal(kf_examples_first_existing_dir(gone_source, 2), dir);
    const char *both[] = {source_model_dir, dir};
    assert_string_equal(kf_examples_first_existing_dir(both, 2), source_model_dir);
    const char *file_not_dir[] = {file, dir};
    assert_string_equal(kf_examples_first_existing_dir(file_not_dir, 2), dir);
    const char *neither[] = {"/nonexistent/a", "/nonexistent/b"};
    assert_string_equal(kf_examples_first_existing_dir(neither, 2), "/nonexistent/b");
    assert_null(kf_examples_first_existing_dir(neither, 0));
    unlink(file);
    rmdir(dir);
}

int main(int argc, char **argv)
{
    if (!test_args(argc, argv, "SOURCE_MODEL_DIR", &source_model_dir))
        return 2;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_tree_programs_use_the_source_tree),
        cmocka_unit_test(test_installed_folders_are_under_the_prefix),
        cmocka_unit_test(test_first_existing_folder_wins),
    };
    return cmocka_run_group_tests_name("example data paths", tests, NULL, NULL);
}
