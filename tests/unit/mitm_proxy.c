/* mitm_proxy.c - see mitm_proxy.h. */
#include "mitm_proxy.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <zmq.h>

#include "common/rng.h"

static void forward(void *socket, zmq_msg_t *routing_id, const void *data, size_t len)
{
    if (routing_id)
        zmq_send(socket, zmq_msg_data(routing_id), zmq_msg_size(routing_id), ZMQ_SNDMORE);
    zmq_send(socket, data, len, 0);
}

static void *proxy_main(void *arg)
{
    proxy_t *proxy = arg;
    zmq_msg_t routing_id, payload;
    zmq_msg_init(&routing_id);
    zmq_msg_init(&payload);
    uint8_t *held = NULL;
    size_t held_len = 0;
    int count = 0;
    rng_t rng;
    rng_seed(&rng, 99);
    while (!atomic_load(&proxy->stop)) {
        zmq_pollitem_t items[2] = { { .socket = proxy->front, .events = ZMQ_POLLIN },
                                    { .socket = proxy->back, .events = ZMQ_POLLIN } };
        if (zmq_poll(items, 2, 20) <= 0)
            continue;
        if (items[1].revents & ZMQ_POLLIN) {   /* receiver -> sender: pass */
            zmq_msg_recv(&payload, proxy->back, 0);
            forward(proxy->front, &routing_id, zmq_msg_data(&payload), zmq_msg_size(&payload));
        }
        if (!(items[0].revents & ZMQ_POLLIN))
            continue;
        zmq_msg_recv(&routing_id, proxy->front, 0);
        zmq_msg_recv(&payload, proxy->front, 0);
        uint8_t *data = zmq_msg_data(&payload);
        size_t len = zmq_msg_size(&payload);
        int index = count++;
        atomic_store(&proxy->forwarded, count);
        if (index == proxy->target) {
            switch (proxy->mode) {
            case PROXY_TAMPER:
                data[len / 2] ^= 0x01;
                break;
            case PROXY_TRUNCATE:
                len = len / 3;
                break;
            case PROXY_SCRAMBLE:
                for (size_t i = 0; i < len; i++)
                    data[i] = (uint8_t)rng_next(&rng);
                break;
            case PROXY_REPLAY:
            case PROXY_SWAP:
                held = malloc(len);
                memcpy(held, data, len);
                held_len = len;
                if (proxy->mode == PROXY_SWAP)
                    continue;
                break;
            default:
                break;
            }
        }
        forward(proxy->back, NULL, data, len);
        if (held && index == proxy->target + 1) {
            forward(proxy->back, NULL, held, held_len);
            free(held);
            held = NULL;
        }
    }
    free(held);
    zmq_msg_close(&routing_id);
    zmq_msg_close(&payload);
    return NULL;
}

proxy_t *proxy_start(const char *receiver_endpoint, proxy_mode_t mode, int target)
{
    proxy_t *proxy = calloc(1, sizeof *proxy);
    proxy->mode = mode;
    proxy->target = target;
    proxy->ctx = zmq_ctx_new();
    proxy->front = zmq_socket(proxy->ctx, ZMQ_ROUTER);
    proxy->back = zmq_socket(proxy->ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(proxy->front, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(proxy->back, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_bind(proxy->front, "tcp://127.0.0.1:*"), 0);
    size_t size = sizeof proxy->endpoint;
    zmq_getsockopt(proxy->front, ZMQ_LAST_ENDPOINT, proxy->endpoint, &size);
    assert_int_equal(zmq_connect(proxy->back, receiver_endpoint), 0);
    pthread_create(&proxy->thread, NULL, proxy_main, proxy);
    return proxy;
}

void proxy_stop(proxy_t **proxy_p)
{
    proxy_t *proxy = *proxy_p;
    atomic_store(&proxy->stop, true);
    pthread_join(proxy->thread, NULL);
    zmq_close(proxy->front);
    zmq_close(proxy->back);
    zmq_ctx_term(proxy->ctx);
    free(proxy);
    *proxy_p = NULL;
}

