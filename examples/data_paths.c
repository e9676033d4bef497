#include "data_paths.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "data_paths_config.h"

const char *kf_examples_first_existing_dir(const char *const *candidates, size_t n)
{
    if (n == 0)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        struct stat st;
        if (candidates[i] && stat(candidates[i], &st) == 0 && S_ISDIR(st.st_mode))
            return candidates[i];
    }
    return candidates[n - 1];
}

const char *kf_examples_model_dir(void)
{
    static const char *const dirs[] = {KF_SOURCE_MODEL_DIR, KF_INSTALLED_MODEL_DIR};
    return kf_examples_first_existing_dir(dirs, sizeof dirs / sizeof dirs[0]);
}

const char *kf_examples_data_dir(void)
{
    static const char *const dirs[] = {KF_SOURCE_DATA_DIR, KF_INSTALLED_DATA_DIR};
    return kf_examples_first_existing_dir(dirs, sizeof dirs / sizeof dirs[0]);
}

/* Both folders come from meson as absolute paths well under PATH_MAX; the
 * buffers are sized for them at compile time. */
enum { PATH_BYTES = sizeof KF_SOURCE_MODEL_DIR + sizeof KF_INSTALLED_MODEL_DIR + 32 };

const char *kf_examples_model_path(void)
{
    static char path[PATH_BYTES];
    if (!path[0])
        snprintf(path, sizeof path, "%s/model.bin", kf_examples_model_dir());
    return path;
}

const char *kf_examples_tokenizer_path(void)
{
    static char path[PATH_BYTES];
    if (!path[0])
        snprintf(path, sizeof path, "%s/tokenizer.bin", kf_examples_model_dir());
    return path;
}

static const kf_bundled_model BUNDLED[] = {
    {"sotu", "sotu-llama-6m", "model.bin", "sotu-dev",
     "6.5 M-parameter English model, fp32 (the default)"},
    {"pycode", "pycode-llama-12m", "model-f16.bin", "pycode-dev",
     "11.7 M-parameter code model, fp16 weights, 2048-token context"},
};

const kf_bundled_model *kf_examples_bundled_model(const char *name)
{
    for (size_t i = 0; name && i < sizeof BUNDLED / sizeof BUNDLED[0]; i++)
        if (!strcmp(name, BUNDLED[i].name))
            return &BUNDLED[i];
    return NULL;
}

const char *kf_examples_bundled_names(void)
{
    return "sotu, pycode";
}

int kf_examples_bundled_path(const kf_bundled_model *m, const char *file, char *out,
                             size_t size)
{
    char source[4096], installed[4096];
    const int a = snprintf(source, sizeof source, "%s/%s", KF_SOURCE_MODELS_DIR, m->folder);
    const int b = snprintf(installed, sizeof installed, "%s/%s", KF_INSTALLED_MODELS_DIR,
                           m->folder);
    if (a < 0 || b < 0 || (size_t)a >= sizeof source || (size_t)b >= sizeof installed)
        return -1;
    const char *const dirs[] = {source, installed};
    const int n = snprintf(out, size, "%s/%s", kf_examples_first_existing_dir(dirs, 2), file);
    return n >= 0 && (size_t)n < size ? 0 : -1;
}
