/* Opening the files the engine reads (checkpoints, tokenizers). */
#ifndef ENG_FILE_H
#define ENG_FILE_H

#include "status.h"

/* Opens path read-only and checks that it is a regular file, without ever
 * blocking: a FIFO is opened with O_NONBLOCK, so no writer is waited for,
 * then refused like a directory or a device. On success returns a blocking
 * descriptor (close-on-exec) that the caller closes; on failure returns
 * ENG_EIO with err naming what path is ("is a directory", ...). */
int eng_open_regular_file(const char *path, eng_error *err);

#endif
