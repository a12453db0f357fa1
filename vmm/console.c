/* console.c - ring buffer of guest console output, and its log file. */
#include "vmm/console.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct console {
    pthread_mutex_t lock;
    char ring[CONSOLE_RING_BYTES];
    uint64_t total;       /* bytes ever written; ring holds the last min(total, size) */
    int log_fd;           /* -1: none */
    char line[256];       /* the log file gets whole lines (or full buffers) */
    size_t line_len;
};

console_t *console_new(const char *log_path, char *err, size_t errlen)
{
    console_t *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, errlen, "console: out of memory");
        return NULL;
    }
    c->log_fd = -1;
    if (log_path) {
        c->log_fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (c->log_fd < 0) {
            snprintf(err, errlen, "console log %s: %s", log_path, strerror(errno));
            free(c);
            return NULL;
        }
    }
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static void flush_line(console_t *c)
{
    size_t done = 0;
    while (c->log_fd >= 0 && done < c->line_len) {
        ssize_t n = write(c->log_fd, c->line + done, c->line_len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            log_warn("vmm", "console log write failed (%s); closing it", strerror(errno));
            close(c->log_fd);
            c->log_fd = -1;
            break;
        }
        done += (size_t)n;
    }
    c->line_len = 0;
}

void console_destroy(console_t **self_p)
{
    console_t *c = *self_p;
    if (!c)
        return;
    flush_line(c);
    if (c->log_fd >= 0)
        close(c->log_fd);
    pthread_mutex_destroy(&c->lock);
    free(c);
    *self_p = NULL;
}

void console_write(console_t *c, const char *bytes, size_t n)
{
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < n; i++) {
        c->ring[c->total % CONSOLE_RING_BYTES] = bytes[i];
        c->total++;
        if (c->log_fd >= 0) {
            if (bytes[i] != '\r')
                c->line[c->line_len++] = bytes[i];
            if (bytes[i] == '\n' || c->line_len == sizeof c->line)
                flush_line(c);
        }
    }
    pthread_mutex_unlock(&c->lock);
}

size_t console_read(console_t *c, uint64_t *cursor, char *buf, size_t len)
{
    pthread_mutex_lock(&c->lock);
    uint64_t oldest = c->total > CONSOLE_RING_BYTES ? c->total - CONSOLE_RING_BYTES : 0;
    if (*cursor > c->total)
        *cursor = c->total;
    if (*cursor < oldest)
        *cursor = oldest;
    size_t n = 0;
    while (n < len && *cursor < c->total) {
        buf[n++] = c->ring[*cursor % CONSOLE_RING_BYTES];
        (*cursor)++;
    }
    pthread_mutex_unlock(&c->lock);
    return n;
}

uint64_t console_total(console_t *c)
{
    pthread_mutex_lock(&c->lock);
    uint64_t t = c->total;
    pthread_mutex_unlock(&c->lock);
    return t;
}
