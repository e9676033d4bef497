/* The command line of the engine and kf-eval test programs: a fixed list of
 * paths (files or folders) that meson passes. */
#ifndef ENGINE_TEST_ARGS_H
#define ENGINE_TEST_ARGS_H

#include <stdbool.h>

/* usage names the arguments, one word each ("MODEL_BIN DATA_DIR"), and a
 * `const char **` follows it for each word. When argv holds exactly that
 * many arguments, stores argv[1], argv[2], ... through those pointers and
 * returns true. Otherwise prints "usage: PROGRAM USAGE" to stderr and
 * returns false; the program then exits with status 2. */
bool test_args(int argc, char **argv, const char *usage, ...);

#endif
