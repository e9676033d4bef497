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

/* --bundled NAME: every listed name resolves to its files in the source
 * tree (sotu to the default model), the installed folders are under the
 * prefix, and an unknown name is NULL. */
static void test_bundled_models_resolve(void **state)
{
    (void)state;
    char names[128];
    snprintf(names, sizeof names, "%s", kf_examples_bundled_names());
    int n = 0;
    for (char *name = strtok(names, ", "); name; name = strtok(NULL, ", "), n++) {
        const kf_bundled_model *m = kf_examples_bundled_model(name);
        assert_non_null(m);
        assert_string_equal(m->name, name);
        char model[4096], tokenizer[4096], data[4096];
        assert_int_equal(kf_examples_bundled_path(m, m->model_file, model, sizeof model), 0);
        assert_int_equal(kf_examples_bundled_path(m, "tokenizer.bin", tokenizer,
                                                  sizeof tokenizer), 0);
        assert_int_equal(access(model, R_OK), 0);
        assert_int_equal(access(tokenizer, R_OK), 0);
        snprintf(data, sizeof data, "%s/%s.tokens.jsonl", kf_examples_data_dir(), m->dev_set);
        assert_int_equal(access(data, R_OK), 0);
    }
    assert_int_equal(n, 2);
    char path[4096];
    const kf_bundled_model *sotu = kf_examples_bundled_model("sotu");
    assert_int_equal(kf_examples_bundled_path(sotu, sotu->model_file, path, sizeof path), 0);
    assert_string_equal(path, kf_examples_model_path());
    const kf_bundled_model *pycode = kf_examples_bundled_model("pycode");
    assert_int_equal(kf_examples_bundled_path(pycode, pycode->model_file, path, sizeof path), 0);
    assert_true(ends_with(path, "/models/pycode-llama-12m/model-f16.bin"));
    assert_int_equal(kf_examples_bundled_path(pycode, pycode->model_file, path, 8), -1);
    assert_true(ends_with(KF_INSTALLED_MODELS_DIR, "/keyformer/models"));
    assert_null(kf_examples_bundled_model("nonsense"));
    assert_null(kf_examples_bundled_model(NULL));
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
        cmocka_unit_test(test_bundled_models_resolve),
    };
    return cmocka_run_group_tests_name("example data paths", tests, NULL, NULL);
}
