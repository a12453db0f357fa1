/* proc.c - see proc.h. */
#include "proc.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

double proc_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

void proc_sleep(double seconds)
{
    if (seconds <= 0)
        return;
    struct timespec t = { (time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9) };
    while (nanosleep(&t, &t) != 0 && errno == EINTR)
        ;
}

pid_t proc_spawn(char *const argv[], const char *log_path)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    /* Child: die with the benchmark; check the parent did not die before. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent)
        _exit(127);
    int null_fd = open("/dev/null", O_RDONLY);
    int log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (null_fd < 0 || log_fd < 0)
        _exit(127);
    dup2(null_fd, STDIN_FILENO);
    dup2(log_fd, STDOUT_FILENO);
    dup2(log_fd, STDERR_FILENO);
    close(null_fd);
    close(log_fd);
    execv(argv[0], argv);
    fprintf(stderr, "cannot run %s\n", argv[0]);
    _exit(127);
}

int proc_run(char *const argv[], const char *log_path, double timeout_s)
{
    pid_t pid = proc_spawn(argv, log_path);
    if (pid < 0)
        return -1;
    double deadline = proc_now() + timeout_s;
    for (;;) {
        int status;
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        if (got < 0)
            return -1;
        if (proc_now() > deadline) {
            proc_kill(pid);
            return -1;
        }
        proc_sleep(0.01);
    }
}

int proc_kill(pid_t pid)
{
    if (pid <= 0 || kill(pid, SIGKILL) != 0)
        return -1;
    while (waitpid(pid, NULL, 0) < 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

bool proc_alive(pid_t pid)
{
    return pid > 0 && waitpid(pid, NULL, WNOHANG) == 0;
}

static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    bool ok = bind(fd, (struct sockaddr *)&addr, sizeof(addr)) == 0;
    close(fd);
    return ok;
}

int proc_free_port(const int *taken, size_t n_taken, rng_t *rng)
{
    for (int attempt = 0; attempt < 1000; attempt++) {
        int port = 20000 + (int)rng_below(rng, 12000);
        bool used = false;
        for (size_t i = 0; i < n_taken; i++)
            used |= taken[i] == port;
        if (!used && port_free(port))
            return port;
    }
    return 0;
}

int proc_copy_file(const char *from, const char *to)
{
    int in = open(from, O_RDONLY);
    if (in < 0)
        return -1;
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (out < 0) {
        close(in);
        return -1;
    }
    char buf[4096];
    ssize_t n;
    int rc = 0;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            rc = -1;
    if (n < 0)
        rc = -1;
    close(in);
    close(out);
    return rc;
}

void proc_log_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    long ends[256] = { 0 };
    int count = 0;
    int ch;
    long pos = 0;
    if (lines > 255)
        lines = 255;
    while ((ch = fgetc(f)) != EOF) {
        pos++;
        if (ch == '\n')
            ends[count++ % (lines + 1)] = pos;
    }
    long from = count > lines ? ends[(count - lines - 1) % (lines + 1)] : 0;
    fseek(f, from, SEEK_SET);
    fprintf(stderr, "--- last lines of %s\n", path);
    while ((ch = fgetc(f)) != EOF)
        fputc(ch, stderr);
    fclose(f);
}
