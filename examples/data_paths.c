#include "data_paths.h"

#include <stdio.h>
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
