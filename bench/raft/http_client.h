/* http_client.h - a minimal HTTP/1.1 client over one kept-alive TCP
 * connection, for etcd's JSON gateway (POST /v3/...).
 *
 * Bounded: headers at most 16 KiB, body at most 1 MiB, every wait within
 * the timeout. After any error the connection is closed, and the next
 * request opens a new one. Understands Content-Length and chunked bodies.
 *
 *   http_conn_t *c = http_conn_new("127.0.0.1", 2379, 1000);
 *   char body[4096]; int status;
 *   if (http_post(c, "/v3/maintenance/status", "{}", body, sizeof body, &status) == 0) ...
 *   http_conn_destroy(&c);
 */
#ifndef BENCH_RAFT_HTTP_CLIENT_H
#define BENCH_RAFT_HTTP_CLIENT_H

#include <stddef.h>

typedef struct http_conn http_conn_t;

http_conn_t *http_conn_new(const char *ipv4, int port, int timeout_ms);
void http_conn_destroy(http_conn_t **self_p);

/* Sends one POST with a JSON body and reads the whole response. Returns 0
 * with the HTTP status in *status and the body (truncated to fit,
 * NUL-terminated) in `out`; -1 on a connection, timeout or framing error. */
int http_post(http_conn_t *self, const char *path, const char *json, char *out, size_t cap, int *status);

#endif
