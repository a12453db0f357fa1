/* stream.c - configuration defaults, names and helpers shared by the
 * stream's sender (stream_sender.c) and receiver (stream_receiver.c). */
#include "migration/stream.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "common/log.h"
#include "migration/stream_internal.h"

void stream_sender_config_defaults(stream_sender_config_t *cfg)
{
    *cfg = (stream_sender_config_t){
        .streams = 1,
        .chunk_bytes = 2 * 1024 * 1024,
        .window = 4,
        .cipher = STREAM_CIPHER_AUTO,
        .timeout_ms = 10000,
    };
}

void stream_receiver_config_defaults(stream_receiver_config_t *cfg)
{
    *cfg = (stream_receiver_config_t){
        .max_streams = STREAM_MAX_STREAMS,
        .max_chunk_bytes = 16 * 1024 * 1024,
        .max_window = 8,
        .cipher = STREAM_CIPHER_AUTO,
    };
}

void stream_tune_malloc(void)
{
    /* 32 MiB is the largest mmap threshold glibc accepts on 64-bit; chunks
     * are 2 MiB by default and at most 16 MiB unless a receiver allows more.
     * Sanitizers bring their own malloc, which refuses: not worth a warning. */
    if (mallopt(M_MMAP_THRESHOLD, 32 << 20) != 1 || mallopt(M_TRIM_THRESHOLD, 64 << 20) != 1)
        log_debug("migration", "cannot tune malloc for stream buffers: receiving will fault "
                 "in every chunk's pages");
}

const char *stream_error_name(int error)
{
    switch (error) {
    case STREAM_OK:            return "ok";
    case STREAM_ERR_TIMEOUT:   return "timeout";
    case STREAM_ERR_AUTH:      return "authentication failed";
    case STREAM_ERR_REJECTED:  return "rejected by peer";
    case STREAM_ERR_TAMPERED:  return "tampered chunk";
    case STREAM_ERR_SEQUENCE:  return "replayed, reordered or lost chunk";
    case STREAM_ERR_PROTOCOL:  return "protocol error";
    case STREAM_ERR_IO:        return "i/o error";
    case STREAM_ERR_INVALID:   return "invalid argument";
    case STREAM_ERR_CLOSED:    return "stream closed";
    case STREAM_ERR_NOMEM:     return "out of memory";
    }
    return "unknown error";
}

const char *stream_cipher_name(stream_cipher_t cipher)
{
    switch (cipher) {
    case STREAM_CIPHER_AES256GCM:          return "aes256gcm";
    case STREAM_CIPHER_XCHACHA20POLY1305:  return "xchacha20poly1305";
    case STREAM_CIPHER_AUTO:               return "none";
    }
    return "none";
}

int stream_fail(stream_failure_t *failure, const char *who, int code, const char *fmt, ...)
{
    char text[sizeof failure->text];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    log_error("migration", "%s: %s", who, text);
    if (failure->code == 0) {
        failure->code = code;
        snprintf(failure->text, sizeof failure->text, "%s", text);
    }
    return failure->code;
}

int64_t stream_now_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

int stream_ms_until(int64_t deadline_ms)
{
    int64_t left = deadline_ms - stream_now_ms();
    if (left < 0)
        return 0;
    return left > 1000000000 ? 1000000000 : (int)left;
}
