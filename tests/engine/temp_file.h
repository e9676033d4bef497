/* Scratch files for the loader tests. */
#ifndef ENGINE_TEST_TEMP_FILE_H
#define ENGINE_TEST_TEMP_FILE_H

#include <stddef.h>

/* Writes len bytes to a new file under $TMPDIR (or /tmp) and stores its path
 * in path (at least 64 bytes). Returns 0 on success. */
int temp_file_write(char *path, size_t path_size, const void *bytes, size_t len);

/* Reads a whole file into a malloc'd buffer; NULL on failure. */
void *temp_file_read_all(const char *path, size_t *len);

#endif
