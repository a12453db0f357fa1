/* qemu_peer.c - see qemu_peer.h. QMP replies are our own QEMU's, read as
 * lines; fields are picked out by exact key. */
#include "qemu_peer.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* QEMU 7.2 aborts on hosts whose KVM refuses IA32_ARCH_CAPABILITIES. */
#define QEMU_CPU "host,-arch-capabilities"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void nap_ms(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int qemu_peer_available(char *name, size_t namelen, char *why, size_t whylen)
{
    if (access("/dev/kvm", R_OK | W_OK) != 0) {
        snprintf(why, whylen, "no /dev/kvm");
        return -1;
    }
    FILE *p = popen("qemu-system-x86_64 --version 2>/dev/null", "r");
    char version[64] = "";
    if (!p || fscanf(p, "QEMU emulator version %63s", version) != 1) {
        if (p)
            pclose(p);
        snprintf(why, whylen, "no qemu-system-x86_64 installed");
        return -1;
    }
    pclose(p);
    snprintf(name, namelen, "QEMU %s, same guest, same run, loopback TCP", version);
    return 0;
}

/* --- processes ------------------------------------------------------------------- */

static pid_t spawn_qemu(const char *image, uint64_t memory_bytes, const char *cmdline,
                        const char *serial_log, const char *qmp_path, const char *incoming)
{
    char mem[32], serial[300], qmp[300];
    snprintf(mem, sizeof mem, "%llu", (unsigned long long)(memory_bytes >> 20));
    snprintf(serial, sizeof serial, "file:%s", serial_log);
    snprintf(qmp, sizeof qmp, "unix:%s,server=on,wait=off", qmp_path);
    unlink(serial_log);
    unlink(qmp_path);
    pid_t pid = fork();
    if (pid != 0)
        return pid;
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    dup2(null, 2);
    const char *argv[32] = { "qemu-system-x86_64", "-enable-kvm", "-cpu", QEMU_CPU, "-m", mem,
                             "-smp", "1", "-no-reboot", "-net", "none", "-display", "none",
                             "-monitor", "none", "-serial", serial, "-qmp", qmp,
                             "-kernel", image, "-append", cmdline };
    int argc = 23;
    if (incoming) {
        argv[argc++] = "-incoming";
        argv[argc++] = incoming;
    }
    argv[argc] = NULL;
    execvp(argv[0], (char *const *)argv);
    _exit(127);
}

static void stop_qemu(pid_t *pid)
{
    if (*pid > 0) {
        kill(*pid, SIGKILL);
        waitpid(*pid, NULL, 0);
    }
    *pid = -1;
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    static char buf[1 << 16];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0
        && getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* --- QMP -------------------------------------------------------------------------- */

typedef struct {
    int fd;
    char buf[1 << 16];
    size_t len;
} qmp_t;

/* One line (without the newline) into line; false on timeout or EOF. */
static bool qmp_line(qmp_t *q, char *line, size_t cap, double timeout_s)
{
    double end = now_s() + timeout_s;
    for (;;) {
        char *nl = memchr(q->buf, '\n', q->len);
        if (nl) {
            size_t n = (size_t)(nl - q->buf);
            snprintf(line, cap, "%.*s", (int)n, q->buf);
            memmove(q->buf, nl + 1, q->len - n - 1);
            q->len -= n + 1;
            return true;
        }
        int left = (int)((end - now_s()) * 1000);
        struct pollfd p = { .fd = q->fd, .events = POLLIN };
        if (left <= 0 || poll(&p, 1, left) <= 0 || q->len == sizeof q->buf)
            return false;
        ssize_t r = read(q->fd, q->buf + q->len, sizeof q->buf - q->len);
        if (r <= 0)
            return false;
        q->len += (size_t)r;
    }
}

/* Sends a command; its reply ("return" or "error") in reply. Events are skipped. */
static bool qmp_command(qmp_t *q, const char *command, char *reply, size_t cap)
{
    size_t n = strlen(command);
    if (write(q->fd, command, n) != (ssize_t)n || write(q->fd, "\n", 1) != 1)
        return false;
    while (qmp_line(q, reply, cap, 30)) {
        if (strstr(reply, "\"return\""))
            return true;
        if (strstr(reply, "\"error\""))
            return false;
    }
    return false;
}

static bool qmp_open(qmp_t *q, const char *path, double timeout_s)
{
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    double end = now_s() + timeout_s;
    q->len = 0;
    while (now_s() < end) {
        q->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (connect(q->fd, (struct sockaddr *)&a, sizeof a) == 0) {
            char line[4096];
            return qmp_line(q, line, sizeof line, 10)   /* greeting */
                   && qmp_command(q, "{\"execute\": \"qmp_capabilities\"}", line, sizeof line);
        }
        close(q->fd);
        nap_ms(50);
    }
    q->fd = -1;
    return false;
}

static void qmp_close(qmp_t *q)
{
    if (q->fd >= 0)
        close(q->fd);
    q->fd = -1;
}

/* The number after "key": in a QMP reply; -1 if absent. */
static double field(const char *json, const char *key)
{
    char quoted[64];
    snprintf(quoted, sizeof quoted, "\"%s\"", key);
    const char *at = strstr(json, quoted);
    if (!at)
        return -1;
    at += strlen(quoted);
    while (*at == ' ' || *at == ':')
        at++;
    return strtod(at, NULL);
}

/* True if the reply's "status" is `want`. */
static bool status_is(const char *json, const char *want)
{
    const char *at = strstr(json, "\"status\"");
    if (!at)
        return false;
    at += strlen("\"status\"");
    while (*at == ' ' || *at == ':')
        at++;
    size_t n = strlen(want);
    return *at == '"' && strncmp(at + 1, want, n) == 0 && at[1 + n] == '"';
}

/* --- one migration ------------------------------------------------------------------ */

/* What a query-migrate reply says while the migration runs. */
static void note_progress(const char *reply, qemu_result_t *out)
{
    double throttle = field(reply, "cpu-throttle-percentage");
    if (throttle > out->throttle_max)
        out->throttle_max = (unsigned)throttle;
    double page_size = field(reply, "page-size");
    double dirty_Bps = field(reply, "dirty-pages-rate") * (page_size > 0 ? page_size : 4096);
    if (dirty_Bps > out->dirty_rate_max_Bps)   /* absent: negative */
        out->dirty_rate_max_Bps = dirty_Bps;
    double expected = field(reply, "expected-downtime");
    if (expected >= 0)
        out->expected_downtime_ms = expected;
    double passes = field(reply, "dirty-sync-count"), bytes = field(reply, "transferred");
    if (passes >= 0)
        out->passes = (uint64_t)passes;
    if (bytes >= 0)
        out->bytes = (uint64_t)bytes;
}

/* Calls the migration off; 0 once QEMU says it is cancelled and the source
 * still runs the guest. */
static int cancel_migration(qmp_t *q, char *reply, size_t cap, char *why, size_t whylen)
{
    if (!qmp_command(q, "{\"execute\": \"migrate_cancel\"}", reply, cap)) {
        snprintf(why, whylen, "migrate_cancel failed: %.150s", reply);
        return -1;
    }
    double end = now_s() + 30;
    while (qmp_command(q, "{\"execute\": \"query-migrate\"}", reply, cap)
           && !status_is(reply, "cancelled") && now_s() < end)
        nap_ms(20);
    if (!status_is(reply, "cancelled")) {
        snprintf(why, whylen, "QEMU did not cancel the migration within 30 s: %.150s", reply);
        return -1;
    }
    if (!qmp_command(q, "{\"execute\": \"query-status\"}", reply, cap)
        || !strstr(reply, "\"running\": true")) {
        snprintf(why, whylen, "the QEMU source is not running after the cancel: %.150s", reply);
        return -1;
    }
    return 0;
}

int qemu_peer_migrate(const char *image, uint64_t memory_bytes, const char *cmdline,
                      double warmup_s, const qemu_options_t *options, qemu_result_t *out,
                      char *why, size_t whylen)
{
    char src_log[128], dst_log[128], src_qmp[128], dst_qmp[128], incoming[64];
    int id = (int)getpid();
    snprintf(src_log, sizeof src_log, "/tmp/ferry-bench-qemu-src-%d.log", id);
    snprintf(dst_log, sizeof dst_log, "/tmp/ferry-bench-qemu-dst-%d.log", id);
    snprintf(src_qmp, sizeof src_qmp, "/tmp/ferry-bench-qemu-src-%d.sock", id);
    snprintf(dst_qmp, sizeof dst_qmp, "/tmp/ferry-bench-qemu-dst-%d.sock", id);
    int port = free_port();
    snprintf(incoming, sizeof incoming, "tcp:127.0.0.1:%d", port);
    pid_t src = spawn_qemu(image, memory_bytes, cmdline, src_log, src_qmp, NULL);
    pid_t dst = spawn_qemu(image, memory_bytes, cmdline, dst_log, dst_qmp, incoming);
    qmp_t *q = calloc(1, sizeof *q), *d = calloc(1, sizeof *d);
    q->fd = d->fd = -1;
    char reply[1 << 14];
    int rc = -1;
    *out = (qemu_result_t){ .expected_downtime_ms = -1 };

    double end = now_s() + 120;
    while (now_s() < end && !file_has(src_log, "status=running"))
        nap_ms(50);
    if (!file_has(src_log, "status=running")) {
        snprintf(why, whylen, "the guest did not boot under QEMU within 120 s");
        goto out;
    }
    nap_ms((int)(warmup_s * 1000));
    if (!qmp_open(q, src_qmp, 10)) {
        snprintf(why, whylen, "no QMP on the source QEMU");
        goto out;
    }
    if (options->auto_converge
        && !qmp_command(q, "{\"execute\": \"migrate-set-capabilities\", \"arguments\": "
                        "{\"capabilities\": [{\"capability\": \"auto-converge\", "
                        "\"state\": true}]}}", reply, sizeof reply)) {
        snprintf(why, whylen, "migrate-set-capabilities auto-converge failed: %.150s", reply);
        goto out;
    }
    char command[512];
    uint64_t bandwidth = options->max_bandwidth_Bps ? options->max_bandwidth_Bps : 64ull << 30;
    snprintf(command, sizeof command,
             "{\"execute\": \"migrate-set-parameters\", \"arguments\": {\"max-bandwidth\": %llu, "
             "\"downtime-limit\": %llu}}", (unsigned long long)bandwidth,
             (unsigned long long)options->downtime_limit_ms);
    if (!qmp_command(q, command, reply, sizeof reply)) {
        snprintf(why, whylen, "migrate-set-parameters failed: %.150s", reply);
        goto out;
    }
    snprintf(command, sizeof command,
             "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"%s\"}}", incoming);
    if (!qmp_command(q, command, reply, sizeof reply)) {
        snprintf(why, whylen, "migrate failed: %.150s", reply);
        goto out;
    }
    double started = now_s();
    double give_up_s = options->give_up_s > 0 ? options->give_up_s : 600;
    for (;;) {
        if (!qmp_command(q, "{\"execute\": \"query-migrate\"}", reply, sizeof reply)
            || status_is(reply, "failed")) {
            snprintf(why, whylen, "QEMU migration failed: %.150s", reply);
            goto out;
        }
        note_progress(reply, out);
        out->elapsed_s = now_s() - started;
        if (status_is(reply, "completed"))
            break;
        if (out->elapsed_s > give_up_s) {
            if (options->give_up_s <= 0) {
                snprintf(why, whylen, "QEMU migration still running after %.0f s: %.150s",
                         give_up_s, reply);
                goto out;
            }
            rc = cancel_migration(q, reply, sizeof reply, why, whylen);
            goto out;   /* out->completed stays false */
        }
        nap_ms(20);
    }
    out->completed = true;
    out->downtime_ms = field(reply, "downtime");
    out->total_ms = field(reply, "total-time");
    /* The destination must be running the guest now. */
    if (!qmp_open(d, dst_qmp, 10) || !qmp_command(d, "{\"execute\": \"query-status\"}", reply,
                                                   sizeof reply)
        || !strstr(reply, "\"running\": true")) {
        snprintf(why, whylen, "the QEMU destination is not running after the migration");
        goto out;
    }
    rc = 0;
out:
    qmp_close(q);
    qmp_close(d);
    free(q);
    free(d);
    stop_qemu(&src);
    stop_qemu(&dst);
    unlink(src_log);
    unlink(dst_log);
    unlink(src_qmp);
    unlink(dst_qmp);
    return rc;
}
