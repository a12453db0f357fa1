/* mitm_proxy.h - a man in the middle for tests of the migration stream.
 *
 * Sits between a stream sender and its receiver on loopback: the sender
 * connects to proxy->endpoint, the proxy to the receiver. It forwards
 * everything, except that it can tamper with, replay, swap, truncate or
 * scramble one sender->receiver message (0 HELLO, 1 JOIN, 2.. DATA).
 * One sender connection only (streams = 1). Shared by test_stream.c and
 * the migration tests. */
#ifndef FERRY_TESTS_MITM_PROXY_H
#define FERRY_TESTS_MITM_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef enum {
    PROXY_FORWARD,      /* pass everything */
    PROXY_TAMPER,       /* flip a bit in message `target` */
    PROXY_REPLAY,       /* send message `target` again after the next one */
    PROXY_SWAP,         /* send message `target` after the next one */
    PROXY_TRUNCATE,     /* cut message `target` short */
    PROXY_SCRAMBLE,     /* replace message `target` with random bytes */
} proxy_mode_t;

typedef struct {
    void *ctx, *front, *back;
    char endpoint[256];
    proxy_mode_t mode;
    int target;         /* sender->receiver messages: 0 HELLO, 1 JOIN, 2.. DATA */
    atomic_bool stop;
    atomic_int forwarded;   /* sender->receiver messages seen so far */
    pthread_t thread;
} proxy_t;

/* Binds on 127.0.0.1 and connects to the receiver; fails the test on error. */
proxy_t *proxy_start(const char *receiver_endpoint, proxy_mode_t mode, int target);
void proxy_stop(proxy_t **proxy_p);

#endif
