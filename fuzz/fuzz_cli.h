/* fuzz_cli's entry points into each program's own command line (the
 * program sources are compiled in with their main() renamed; see
 * fuzz_cli_generate.c and fuzz_cli_eval.c). Each parses argv as the program
 * would, checks what a successful parse promises, and returns what
 * parse_command_line returned: 0, 1 (help or version) or -1. */
#ifndef KF_FUZZ_CLI_H
#define KF_FUZZ_CLI_H

int fuzz_cli_generate(int argc, char **argv);
int fuzz_cli_eval(int argc, char **argv);

/* Reports a failed CHECK with the line and aborts. */
void fuzz_cli_check_failed(const char *what, int line);

#endif
