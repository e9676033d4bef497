#include "run_program.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* The child's side: redirect, then exec; 127 if that fails. */
static void exec_child(const char *const *argv, const char *out_path, int err_fd)
{
    const int in = open("/dev/null", O_RDONLY);
    const int out = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (in < 0 || out < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err_fd, 2) < 0)
        _exit(127);
    execv(argv[0], (char *const *)argv);
    _exit(127);
}

/* Reads what the child writes to stderr until it closes it or the time is
 * up; returns false on timeout. */
static int drain(int fd, char *text, size_t size, time_t deadline)
{
    size_t used = 0;
    char scratch[4096];
    for (;;) {
        if (time(NULL) > deadline)
            return 0;
        const ssize_t got = read(fd, scratch, sizeof scratch);
        if (got == 0)
            return 1;
        if (got < 0) {
            if (errno == EAGAIN || errno == EINTR) {
                struct timespec pause = {0, 20 * 1000 * 1000};
                nanosleep(&pause, NULL);
                continue;
            }
            return 1;
        }
        const size_t keep = (size_t)got < size - 1 - used ? (size_t)got : size - 1 - used;
        memcpy(text + used, scratch, keep);
        used += keep;
        text[used] = '\0';
    }
}

void run_program(const char *const *argv, const char *out_path, int timeout_s,
                 run_result *result)
{
    result->status = RUN_CRASHED;
    result->stderr_text[0] = '\0';
    int fds[2];
    if (pipe(fds) != 0)
        return;
    fflush(stdout);
    fflush(stderr);
    const pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        exec_child(argv, out_path, fds[1]);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return;
    }
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    const int finished = drain(fds[0], result->stderr_text, sizeof result->stderr_text,
                               time(NULL) + timeout_s);
    close(fds[0]);
    if (!finished)
        kill(pid, SIGKILL);
    int status;
    if (waitpid(pid, &status, 0) != pid)
        return;
    if (!finished)
        result->status = RUN_TIMED_OUT;
    else if (WIFEXITED(status))
        result->status = WEXITSTATUS(status);
}

void run_temp_path(char *path, size_t size, const char *suffix)
{
    static int counter;
    const char *dir = getenv("TMPDIR");
    snprintf(path, size, "%s/kf-cli-test-%ld-%d%s", dir && dir[0] ? dir : "/tmp",
             (long)getpid(), counter++, suffix);
}

char *run_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = calloc(1 << 20, 1);
    if (text)
        fread(text, 1, (1 << 20) - 1, f);
    fclose(f);
    return text;
}
