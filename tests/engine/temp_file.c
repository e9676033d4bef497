#include "temp_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int temp_file_write(char *path, size_t path_size, const void *bytes, size_t len)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, path_size, "%s/engine-test-XXXXXX", dir && *dir ? dir : "/tmp");
    const int fd = mkstemp(path);
    if (fd < 0)
        return -1;
    const char *p = bytes;
    size_t left = len;
    while (left > 0) {
        const ssize_t n = write(fd, p, left);
        if (n <= 0) {
            close(fd);
            unlink(path);
            return -1;
        }
        p += n;
        left -= (size_t)n;
    }
    return close(fd);
}

void *temp_file_read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *data = NULL;
    long size = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
        data = malloc((size_t)size + 1);
    if (data && fread(data, 1, (size_t)size, f) != (size_t)size) {
        free(data);
        data = NULL;
    }
    fclose(f);
    if (data)
        *len = (size_t)size;
    return data;
}
