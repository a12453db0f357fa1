/* http_client.c - see http_client.h. */
#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_HEADER (16 << 10)
#define MAX_BODY (1 << 20)
#define BUF_CAP (MAX_HEADER + MAX_BODY + 64)

struct http_conn {
    char host[64];
    int port;
    int timeout_ms;
    int fd;
    char *buf;          /* bytes received and not yet consumed */
    size_t len;
};

static long long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

http_conn_t *http_conn_new(const char *ipv4, int port, int timeout_ms)
{
    http_conn_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    self->buf = malloc(BUF_CAP);
    if (!self->buf) {
        free(self);
        return NULL;
    }
    snprintf(self->host, sizeof(self->host), "%s", ipv4);
    self->port = port;
    self->timeout_ms = timeout_ms;
    self->fd = -1;
    return self;
}

static void disconnect(http_conn_t *self)
{
    if (self->fd >= 0)
        close(self->fd);
    self->fd = -1;
    self->len = 0;
}

void http_conn_destroy(http_conn_t **self_p)
{
    http_conn_t *self = *self_p;
    if (!self)
        return;
    disconnect(self);
    free(self->buf);
    free(self);
    *self_p = NULL;
}

/* Waits for `events` on the socket until `deadline`; 0 when ready. */
static int wait_fd(http_conn_t *self, short events, long long deadline)
{
    for (;;) {
        long long left = deadline - now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = self->fd, .events = events };
        int n = poll(&p, 1, (int)left);
        if (n > 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

static int connect_to(http_conn_t *self, long long deadline)
{
    self->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (self->fd < 0)
        return -1;
    int one = 1;
    setsockopt(self->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)self->port) };
    if (inet_pton(AF_INET, self->host, &addr.sin_addr) != 1)
        return -1;
    if (connect(self->fd, (struct sockaddr *)&addr, sizeof(addr)) == 0)
        return 0;
    if (errno != EINPROGRESS || wait_fd(self, POLLOUT, deadline) != 0)
        return -1;
    int error = 0;
    socklen_t len = sizeof(error);
    if (getsockopt(self->fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0)
        return -1;
    return 0;
}

static int send_all(http_conn_t *self, const char *data, size_t len, long long deadline)
{
    while (len > 0) {
        ssize_t n = send(self->fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(self, POLLOUT, deadline) != 0)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* Receives more bytes into the buffer; -1 on close, error or timeout. */
static int receive_more(http_conn_t *self, long long deadline)
{
    if (self->len >= BUF_CAP)
        return -1;
    for (;;) {
        ssize_t n = recv(self->fd, self->buf + self->len, BUF_CAP - self->len, 0);
        if (n > 0) {
            self->len += (size_t)n;
            return 0;
        }
        if (n == 0 || (errno != EAGAIN && errno != EINTR))
            return -1;
        if (wait_fd(self, POLLIN, deadline) != 0)
            return -1;
    }
}

/* Ensures `need` bytes are buffered. */
static int have(http_conn_t *self, size_t need, long long deadline)
{
    if (need > BUF_CAP)
        return -1;
    while (self->len < need)
        if (receive_more(self, deadline) != 0)
            return -1;
    return 0;
}

/* Finds "\r\n" at or after `from`, receiving more as needed; returns its
 * offset or -1. */
static long find_crlf(http_conn_t *self, size_t from, size_t limit, long long deadline)
{
    for (;;) {
        for (size_t i = from; i + 1 < self->len; i++)
            if (self->buf[i] == '\r' && self->buf[i + 1] == '\n')
                return (long)i;
        if (self->len - from > limit || receive_more(self, deadline) != 0)
            return -1;
    }
}

static void copy_out(char *out, size_t cap, size_t *used, const char *data, size_t len)
{
    size_t room = *used + 1 < cap ? cap - 1 - *used : 0;
    size_t n = len < room ? len : room;
    memcpy(out + *used, data, n);
    *used += n;
    out[*used] = '\0';
}

/* Drops the first `n` buffered bytes. */
static void consume(http_conn_t *self, size_t n)
{
    memmove(self->buf, self->buf + n, self->len - n);
    self->len -= n;
}

static int read_chunked(http_conn_t *self, char *out, size_t cap, size_t *used, long long deadline)
{
    size_t total = 0;
    for (;;) {
        long eol = find_crlf(self, 0, 64, deadline);
        if (eol < 0)
            return -1;
        char *end;
        unsigned long size = strtoul(self->buf, &end, 16);
        if (end == self->buf || size > MAX_BODY || (total += size) > MAX_BODY)
            return -1;
        consume(self, (size_t)eol + 2);
        if (have(self, size + 2, deadline) != 0)
            return -1;
        copy_out(out, cap, used, self->buf, size);
        consume(self, size + 2);
        if (size == 0)
            return 0;   /* no trailers from etcd's gateway */
    }
}

static int exchange(http_conn_t *self, const char *path, const char *json, char *out, size_t cap, int *status)
{
    long long deadline = now_ms() + self->timeout_ms;
    if (self->fd < 0 && connect_to(self, deadline) != 0)
        return -1;
    char head[512];
    size_t body_len = strlen(json);
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n", path, self->host, self->port, body_len);
    if (n <= 0 || (size_t)n >= sizeof(head) || send_all(self, head, (size_t)n, deadline) != 0 ||
        send_all(self, json, body_len, deadline) != 0)
        return -1;

    /* Status line and headers, up to the empty line. */
    size_t header_end = 0;
    for (;;) {
        char *blank = memmem(self->buf, self->len, "\r\n\r\n", 4);
        if (blank) {
            header_end = (size_t)(blank - self->buf) + 4;
            break;
        }
        if (self->len > MAX_HEADER || receive_more(self, deadline) != 0)
            return -1;
    }
    self->buf[header_end - 2] = '\0';
    if (sscanf(self->buf, "HTTP/1.%*d %d", status) != 1)
        return -1;
    long long content_length = -1;
    int chunked = 0, closes = 0;
    for (char *line = strstr(self->buf, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, "Content-Length:", 15) == 0)
            content_length = strtoll(h + 15, NULL, 10);
        else if (strncasecmp(h, "Transfer-Encoding:", 18) == 0 && strcasestr(h, "chunked"))
            chunked = 1;
        else if (strncasecmp(h, "Connection:", 11) == 0 && strcasestr(h, "close"))
            closes = 1;
    }
    consume(self, header_end);
    size_t used = 0;
    if (cap)
        out[0] = '\0';
    if (chunked) {
        if (read_chunked(self, out, cap, &used, deadline) != 0)
            return -1;
    } else {
        if (content_length < 0 || content_length > MAX_BODY || have(self, (size_t)content_length, deadline) != 0)
            return -1;
        copy_out(out, cap, &used, self->buf, (size_t)content_length);
        consume(self, (size_t)content_length);
    }
    if (closes)
        disconnect(self);
    return 0;
}

int http_post(http_conn_t *self, const char *path, const char *json, char *out, size_t cap, int *status)
{
    /* A kept-alive connection may have been closed by the server while it
     * sat idle: then try once more on a fresh one. */
    bool reused = self->fd >= 0;
    if (exchange(self, path, json, out, cap, status) == 0)
        return 0;
    disconnect(self);
    if (reused && exchange(self, path, json, out, cap, status) == 0)
        return 0;
    disconnect(self);
    return -1;
}
