/* gossip.c - the membership shell; see gossip.h.
 *
 * Everything here is plumbing: sockets, the clock, sealing, and moving
 * bytes between the network and the SWIM core. Protocol decisions are all
 * made in swim.c. */
#include "agent/membership/gossip.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

#define UDP_MAX            1400        /* sealed datagram ceiling */
#define MAX_CONNS          64          /* push-pull transfers open at once */
#define CONN_TIMEOUT_US    5000000     /* a transfer must finish in this time */
#define READS_PER_CALL     64          /* datagrams read per readable event */
#define FRAME_HEADER       4
#define FRAME_MAX          (SWIM_PUSHPULL_MAX_BYTES + KEYRING_OVERHEAD)
#define AUTH_LOG_EVERY_US  10000000    /* rate limit for "bad packet" warnings */

typedef enum { CONN_CONNECTING, CONN_WRITING, CONN_READING } conn_state_t;

/* A push-pull transfer: outbound ones write one frame, inbound ones read one. */
typedef struct {
    int fd;                      /* -1: slot free */
    conn_state_t state;
    uint64_t deadline_us;
    char peer[SWIM_ADDR_CAP];
    uint8_t *buf;
    size_t len, cap, done;       /* bytes in buf, allocated, moved so far */
} conn_t;

struct gossip {
    swim_t *swim;
    keyring_t *keys;
    int udp_fd, tcp_fd;
    char address[SWIM_ADDR_CAP];
    conn_t conns[MAX_CONNS];
    uint8_t plain[UDP_MAX];
    uint8_t sealed[UDP_MAX];
    uint64_t auth_failures;
    uint64_t auth_failures_logged;
    uint64_t next_auth_log_us;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* --- addresses ---------------------------------------------------------- */

/* Splits "host:port" or "[host]:port" into its parts. */
static int split_hostport(const char *text, char *host, size_t host_cap, char *port,
                          size_t port_cap)
{
    if (!text)
        return -EINVAL;
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || !colon[1] || strlen(colon + 1) >= port_cap)
        return -EINVAL;
    const char *start = text, *end = colon;
    if (text[0] == '[') {
        if (end[-1] != ']')
            return -EINVAL;
        start++;
        end--;
    }
    if ((size_t)(end - start) >= host_cap || end <= start)
        return -EINVAL;
    memcpy(host, start, (size_t)(end - start));
    host[end - start] = '\0';
    strcpy(port, colon + 1);
    for (const char *p = port; *p; p++)
        if (*p < '0' || *p > '9')
            return -EINVAL;
    return atoi(port) <= 65535 ? 0 : -EINVAL;
}

int gossip_parse_addr(const char *text, struct sockaddr_storage *out, unsigned *out_len)
{
    char host[64], port[8];
    if (split_hostport(text, host, sizeof(host), port, sizeof(port)) < 0)
        return -EINVAL;
    memset(out, 0, sizeof(*out));
    struct sockaddr_in *v4 = (struct sockaddr_in *)out;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)out;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)atoi(port));
        *out_len = sizeof(*v4);
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)atoi(port));
        *out_len = sizeof(*v6);
        return 0;
    }
    return -EINVAL;
}

static void format_addr(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &v4->sin_addr, host, sizeof(host));
        snprintf(out, cap, "%s:%u", host, ntohs(v4->sin_port));
    } else {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &v6->sin6_addr, host, sizeof(host));
        snprintf(out, cap, "[%s]:%u", host, ntohs(v6->sin6_port));
    }
}

/* Resolves a seed that may name a host into a numeric "ip:port". */
static int resolve_seed(const char *seed, char *out, size_t cap)
{
    struct sockaddr_storage sa;
    unsigned len;
    if (gossip_parse_addr(seed, &sa, &len) == 0) {
        format_addr(&sa, out, cap);
        return 0;
    }
    char host[64], port[8];
    if (split_hostport(seed, host, sizeof(host), port, sizeof(port)) < 0)
        return -EINVAL;
    struct addrinfo hints = { .ai_socktype = SOCK_DGRAM, .ai_flags = AI_NUMERICSERV };
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, port, &hints, &res) != 0 || !res)
        return -EINVAL;
    memcpy(&sa, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    format_addr(&sa, out, cap);
    return 0;
}

/* --- sockets ------------------------------------------------------------ */

static int open_socket(int family, int type)
{
    return socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/* Binds UDP, then TCP to the same port (the kernel's choice if port 0). */
static int bind_sockets(gossip_t *g, const char *bind_text)
{
    struct sockaddr_storage sa;
    unsigned len;
    if (gossip_parse_addr(bind_text, &sa, &len) < 0) {
        log_error("gossip", "bind address '%s' is not numeric host:port", bind_text);
        return -EINVAL;
    }
    bool any_port = (sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
                                             : ((struct sockaddr_in6 *)&sa)->sin6_port) == 0;
    for (int attempt = 0; attempt < (any_port ? 20 : 1); attempt++) {
        struct sockaddr_storage try = sa;
        g->udp_fd = open_socket(sa.ss_family, SOCK_DGRAM);
        g->tcp_fd = open_socket(sa.ss_family, SOCK_STREAM);
        if (g->udp_fd < 0 || g->tcp_fd < 0)
            break;
        int one = 1;
        setsockopt(g->tcp_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        socklen_t slen = len;
        if (bind(g->udp_fd, (struct sockaddr *)&try, len) == 0 &&
            getsockname(g->udp_fd, (struct sockaddr *)&try, &slen) == 0 &&
            bind(g->tcp_fd, (struct sockaddr *)&try, len) == 0 && listen(g->tcp_fd, SOMAXCONN) == 0) {
            format_addr(&try, g->address, sizeof(g->address));
            return 0;
        }
        close(g->udp_fd);
        close(g->tcp_fd);
        g->udp_fd = g->tcp_fd = -1;
    }
    log_error("gossip", "cannot bind %s: %s", bind_text, strerror(errno));
    return -EADDRINUSE;
}

static void conn_close(conn_t *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    memset(c, 0, sizeof(*c));
    c->fd = -1;
}

static conn_t *conn_slot(gossip_t *g)
{
    for (int i = 0; i < MAX_CONNS; i++)
        if (g->conns[i].fd < 0)
            return &g->conns[i];
    return NULL;
}

/* --- outputs ------------------------------------------------------------ */

static void send_udp(gossip_t *g, const swim_output_t *out)
{
    struct sockaddr_storage sa;
    unsigned len;
    size_t sealed_len;
    if (gossip_parse_addr(out->dest, &sa, &len) < 0 ||
        keyring_seal(g->keys, KEYRING_UDP, out->bytes, out->len, g->sealed, sizeof(g->sealed),
                     &sealed_len) < 0)
        return;
    /* A full socket buffer drops the datagram, as the network might. */
    sendto(g->udp_fd, g->sealed, sealed_len, MSG_DONTWAIT, (struct sockaddr *)&sa, len);
}

static bool progress_write(conn_t *c);

static void start_pushpull(gossip_t *g, const swim_output_t *out, uint64_t now)
{
    struct sockaddr_storage sa;
    unsigned len;
    conn_t *c = conn_slot(g);
    if (!c || gossip_parse_addr(out->dest, &sa, &len) < 0)
        return;   /* too busy: anti-entropy will come round again */
    size_t cap = FRAME_HEADER + out->len + KEYRING_OVERHEAD;
    c->buf = malloc(cap);
    if (!c->buf)
        return;
    size_t sealed_len;
    if (keyring_seal(g->keys, KEYRING_STREAM, out->bytes, out->len, c->buf + FRAME_HEADER,
                     cap - FRAME_HEADER, &sealed_len) < 0) {
        conn_close(c);
        return;
    }
    c->buf[0] = (uint8_t)(sealed_len >> 24);
    c->buf[1] = (uint8_t)(sealed_len >> 16);
    c->buf[2] = (uint8_t)(sealed_len >> 8);
    c->buf[3] = (uint8_t)sealed_len;
    c->len = c->cap = FRAME_HEADER + sealed_len;
    c->fd = open_socket(sa.ss_family, SOCK_STREAM);
    if (c->fd < 0 || (connect(c->fd, (struct sockaddr *)&sa, len) < 0 && errno != EINPROGRESS)) {
        conn_close(c);
        return;
    }
    c->state = CONN_CONNECTING;
    c->deadline_us = now + CONN_TIMEOUT_US;
    snprintf(c->peer, sizeof(c->peer), "%s", out->dest);
    if (progress_write(c))   /* on a LAN the whole frame usually goes at once */
        conn_close(c);
}

/* Hands everything the core produced to the network. */
static void flush(gossip_t *g)
{
    uint64_t now = now_us();
    swim_output_t out;
    while (swim_next_output(g->swim, &out)) {
        if (out.kind == SWIM_OUT_UDP)
            send_udp(g, &out);
        else
            start_pushpull(g, &out, now);
    }
}

/* --- push-pull transfers ------------------------------------------------ */

static void count_auth_failure(gossip_t *g, const char *what, const char *peer)
{
    g->auth_failures++;
    uint64_t now = now_us();
    if (now >= g->next_auth_log_us) {
        log_warn("gossip", "dropped %s from %s: authentication failed (wrong cluster key?); "
                 "%llu such drops so far", what, peer, (unsigned long long)g->auth_failures);
        g->next_auth_log_us = now + AUTH_LOG_EVERY_US;
    }
}

static void finish_read(gossip_t *g, conn_t *c)
{
    size_t sealed_len = c->len - FRAME_HEADER;
    uint8_t *plain = malloc(sealed_len);
    size_t plain_len;
    if (!plain)
        return;
    if (keyring_open(g->keys, KEYRING_STREAM, c->buf + FRAME_HEADER, sealed_len, plain,
                     sealed_len, &plain_len) < 0)
        count_auth_failure(g, "push-pull", c->peer);
    else if (swim_receive_pushpull(g->swim, now_us(), c->peer, plain, plain_len) < 0)
        log_warn("gossip", "dropped malformed push-pull from %s", c->peer);
    free(plain);
}

/* Reads what is available; returns true when the connection is finished.
 * c->len is 0 until the 4-byte header has told the frame size. */
static bool progress_read(gossip_t *g, conn_t *c)
{
    for (;;) {
        if (c->len == 0 && c->done == FRAME_HEADER) {
            size_t frame = ((size_t)c->buf[0] << 24) | ((size_t)c->buf[1] << 16) |
                           ((size_t)c->buf[2] << 8) | c->buf[3];
            if (frame < KEYRING_OVERHEAD || frame > FRAME_MAX) {
                log_warn("gossip", "push-pull from %s announces %zu bytes; dropped", c->peer,
                         frame);
                return true;
            }
            c->len = FRAME_HEADER + frame;
        }
        if (c->len && c->done == c->len) {
            finish_read(g, c);
            return true;
        }
        size_t want = c->len ? c->len : FRAME_HEADER;
        if (c->cap < want) {
            /* Grow with the data that actually arrives, not with the size
             * the (not yet authenticated) header claims. */
            size_t cap = c->done + 65536;
            if (cap > want)
                cap = want;
            uint8_t *buf = realloc(c->buf, cap);
            if (!buf)
                return true;
            c->buf = buf;
            c->cap = cap;
        }
        ssize_t n = read(c->fd, c->buf + c->done, c->cap - c->done);
        if (n > 0) {
            c->done += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return false;
        return true;   /* closed early or failed */
    }
}

static bool progress_write(conn_t *c)
{
    if (c->state == CONN_CONNECTING) {
        struct pollfd p = { .fd = c->fd, .events = POLLOUT };
        if (poll(&p, 1, 0) <= 0)
            return false;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err)
            return true;
        c->state = CONN_WRITING;
    }
    while (c->done < c->len) {
        ssize_t n = send(c->fd, c->buf + c->done, c->len - c->done, MSG_NOSIGNAL);
        if (n > 0)
            c->done += (size_t)n;
        else if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return false;
        else
            return true;
    }
    return true;
}

static void progress_conns(gossip_t *g)
{
    uint64_t now = now_us();
    for (int i = 0; i < MAX_CONNS; i++) {
        conn_t *c = &g->conns[i];
        if (c->fd < 0)
            continue;
        bool finished = c->state == CONN_READING ? progress_read(g, c) : progress_write(c);
        if (finished || now >= c->deadline_us)
            conn_close(c);
    }
}

static void accept_conns(gossip_t *g)
{
    for (int i = 0; i < 4 * MAX_CONNS; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        int fd = accept4(g->tcp_fd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        conn_t *c = conn_slot(g);
        if (!c) {
            close(fd);   /* busy: the peer retries at its next round */
            continue;
        }
        c->fd = fd;
        c->state = CONN_READING;
        c->deadline_us = now_us() + CONN_TIMEOUT_US;
        format_addr(&sa, c->peer, sizeof(c->peer));
        if (progress_read(g, c))   /* often the whole frame is already there */
            conn_close(c);
    }
}

/* --- the public face ---------------------------------------------------- */

static int start_join(gossip_t *g, const char *join)
{
    char seeds[16][SWIM_ADDR_CAP];
    const char *ptrs[16];
    size_t count = 0;
    const char *p = join ? join : "";
    while (*p) {
        size_t len = strcspn(p, ",");
        char item[256];
        const char *start = p;
        p += len;
        if (*p == ',')
            p++;
        while (len && (*start == ' ' || *start == '\t'))
            start++, len--;
        while (len && (start[len - 1] == ' ' || start[len - 1] == '\t'))
            len--;
        if (!len)
            continue;
        if (len >= sizeof(item) || count == 16) {
            log_error("gossip", "join list: too long (at most 16 seeds)");
            return -EINVAL;
        }
        memcpy(item, start, len);
        item[len] = '\0';
        if (resolve_seed(item, seeds[count], sizeof(seeds[count])) < 0) {
            log_error("gossip", "join list: cannot resolve seed '%s' (want host:port)", item);
            return -EINVAL;
        }
        ptrs[count] = seeds[count];
        count++;
    }
    if (count == 0)
        return 0;
    return swim_join(g->swim, now_us(), ptrs, count);
}

gossip_t *gossip_new(const gossip_config_t *cfg)
{
    if (!cfg->name || !cfg->name[0] || strlen(cfg->name) >= SWIM_NAME_CAP) {
        log_error("gossip", "member name must be 1..%d bytes", SWIM_NAME_CAP - 1);
        return NULL;
    }
    if (!cfg->key) {
        log_error("gossip", "no cluster key: gossip has no plaintext mode");
        return NULL;
    }
    gossip_t *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->udp_fd = g->tcp_fd = -1;
    for (int i = 0; i < MAX_CONNS; i++)
        g->conns[i].fd = -1;
    g->keys = keyring_new(cfg->key);
    if (!g->keys)
        goto fail;
    for (size_t i = 0; i < cfg->extra_key_count; i++)
        if (keyring_add(g->keys, cfg->extra_keys[i]) < 0) {
            log_error("gossip", "too many cluster keys (at most %d)", KEYRING_MAX_KEYS);
            goto fail;
        }
    if (bind_sockets(g, cfg->bind ? cfg->bind : "127.0.0.1:7402") < 0)
        goto fail;
    if (cfg->advertise) {
        struct sockaddr_storage sa;
        unsigned len;
        if (gossip_parse_addr(cfg->advertise, &sa, &len) < 0) {
            log_error("gossip", "advertise address '%s' is not numeric host:port", cfg->advertise);
            goto fail;
        }
        format_addr(&sa, g->address, sizeof(g->address));
    } else if (strncmp(g->address, "0.0.0.0:", 8) == 0 || strncmp(g->address, "[::]:", 5) == 0) {
        log_error("gossip", "bound to the wildcard %s: set an advertise address", g->address);
        goto fail;
    }
    swim_config_t swim_cfg;
    if (cfg->swim)
        swim_cfg = *cfg->swim;
    else
        swim_config_default(&swim_cfg);
    swim_cfg.packet_max = UDP_MAX - KEYRING_OVERHEAD;
    uint64_t seed;
    randombytes_buf(&seed, sizeof(seed));
    g->swim = swim_new(&swim_cfg, cfg->name, g->address, cfg->record, now_us(), seed);
    if (!g->swim) {
        log_error("gossip", "cannot start membership for '%s' (record too large?)", cfg->name);
        goto fail;
    }
    if (start_join(g, cfg->join) < 0)
        goto fail;
    flush(g);
    log_info("gossip", "%s listening on %s (udp+tcp)", cfg->name, g->address);
    return g;
fail:
    gossip_destroy(&g);
    return NULL;
}

void gossip_destroy(gossip_t **self_p)
{
    gossip_t *g = *self_p;
    if (!g)
        return;
    for (int i = 0; i < MAX_CONNS; i++)
        if (g->conns[i].fd >= 0 || g->conns[i].buf)
            conn_close(&g->conns[i]);
    if (g->udp_fd >= 0)
        close(g->udp_fd);
    if (g->tcp_fd >= 0)
        close(g->tcp_fd);
    swim_destroy(&g->swim);
    keyring_destroy(&g->keys);
    free(g);
    *self_p = NULL;
}

int gossip_udp_fd(const gossip_t *g) { return g->udp_fd; }
int gossip_tcp_fd(const gossip_t *g) { return g->tcp_fd; }
const char *gossip_address(const gossip_t *g) { return g->address; }
const char *gossip_name(const gossip_t *g) { return swim_name(g->swim); }
uint64_t gossip_auth_failures(const gossip_t *g) { return g->auth_failures; }
keyring_t *gossip_keyring(gossip_t *g) { return g->keys; }
const swim_t *gossip_swim(const gossip_t *g) { return g->swim; }
size_t gossip_member_count(const gossip_t *g) { return swim_member_count(g->swim); }

int gossip_fds(const gossip_t *g, int *fds, int max)
{
    int n = 0;
    if (n < max)
        fds[n++] = g->udp_fd;
    if (n < max)
        fds[n++] = g->tcp_fd;
    return n;
}

static void read_datagrams(gossip_t *g)
{
    for (int i = 0; i < READS_PER_CALL; i++) {
        struct sockaddr_storage sa;
        socklen_t len = sizeof(sa);
        ssize_t n = recvfrom(g->udp_fd, g->sealed, sizeof(g->sealed), MSG_DONTWAIT | MSG_TRUNC,
                             (struct sockaddr *)&sa, &len);
        if (n < 0)
            return;
        char from[SWIM_ADDR_CAP];
        format_addr(&sa, from, sizeof(from));
        size_t plain_len;
        if ((size_t)n > sizeof(g->sealed) ||
            keyring_open(g->keys, KEYRING_UDP, g->sealed, (size_t)n, g->plain, sizeof(g->plain),
                         &plain_len) < 0) {
            count_auth_failure(g, "datagram", from);
            continue;
        }
        swim_receive(g->swim, now_us(), from, g->plain, plain_len);
    }
}

int gossip_on_readable(gossip_t *g, int fd)
{
    if (fd == g->udp_fd)
        read_datagrams(g);
    else if (fd == g->tcp_fd)
        accept_conns(g);
    else
        return -EINVAL;
    progress_conns(g);   /* read what was accepted ... */
    flush(g);
    progress_conns(g);   /* ... and start sending what that produced */
    return 0;
}

void gossip_tick(gossip_t *g)
{
    swim_tick(g->swim, now_us());
    flush(g);
    progress_conns(g);
}

int gossip_timeout_ms(const gossip_t *g)
{
    for (int i = 0; i < MAX_CONNS; i++)
        if (g->conns[i].fd >= 0)
            return 10;   /* transfers advance on ticks */
    uint64_t next = swim_next_deadline(g->swim), now = now_us();
    if (next <= now)
        return 0;
    uint64_t ms = (next - now + 999) / 1000;
    return ms > 1000 ? 1000 : (int)ms;
}

int gossip_set_record(gossip_t *g, const swim_record_t *record)
{
    int rc = swim_update_record(g->swim, now_us(), record);
    flush(g);
    return rc;
}

int gossip_leave(gossip_t *g)
{
    int rc = swim_leave(g->swim, now_us());
    flush(g);
    return rc;
}

bool gossip_leave_done(const gossip_t *g)
{
    return swim_leave_sent(g->swim);
}

bool gossip_next_event(gossip_t *g, swim_event_t *ev)
{
    return swim_next_event(g->swim, ev);
}

int gossip_member_at(const gossip_t *g, size_t index, swim_member_t *out)
{
    return swim_member_at(g->swim, index, out);
}

int gossip_member_find(const gossip_t *g, const char *name, swim_member_t *out)
{
    return swim_member_find(g->swim, name, out);
}

/* --- the member list for the control API -------------------------------- */

static void pack_kv_str(msgpack_packer *pk, const char *key, const char *value)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_str_with_body(pk, value, strlen(value));
}

static void pack_kv_u64(msgpack_packer *pk, const char *key, uint64_t value)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_uint64(pk, value);
}

static void pack_member(msgpack_packer *pk, const swim_member_t *m, const swim_record_t *r)
{
    msgpack_pack_map(pk, 17);
    pack_kv_str(pk, "name", m->name);
    pack_kv_str(pk, "address", m->addr);
    pack_kv_str(pk, "state", swim_state_name(m->state));
    pack_kv_u64(pk, "incarnation", m->incarnation);
    pack_kv_u64(pk, "cpus", r->cpus);
    pack_kv_u64(pk, "cpu_mhz", r->cpu_mhz);
    pack_kv_u64(pk, "mem_bytes", r->mem_bytes);
    pack_kv_u64(pk, "used_cpu_mhz", r->used_cpu_mhz);
    pack_kv_u64(pk, "used_mem_bytes", r->used_mem_bytes);
    pack_kv_str(pk, "agent_version", r->agent_version);
    pack_kv_str(pk, "raft_addr", r->raft_addr);
    pack_kv_str(pk, "control_addr", r->control_addr);
    pack_kv_str(pk, "migration_addr", r->migration_addr);
    pack_kv_str(pk, "curve_public_key", r->curve_public_key);
    msgpack_pack_str_with_body(pk, "interfaces", 10);
    msgpack_pack_array(pk, r->iface_count);
    for (int i = 0; i < r->iface_count; i++) {
        const swim_iface_t *ifc = &r->ifaces[i];
        msgpack_pack_map(pk, 3);
        pack_kv_str(pk, "name", ifc->name);
        pack_kv_str(pk, "address", ifc->address);
        msgpack_pack_str_with_body(pk, "services", 8);
        msgpack_pack_array(pk, ifc->service_count);
        for (int s = 0; s < ifc->service_count; s++)
            msgpack_pack_str_with_body(pk, ifc->services[s], strlen(ifc->services[s]));
    }
    msgpack_pack_str_with_body(pk, "devices", 7);
    msgpack_pack_array(pk, r->device_count);
    for (int i = 0; i < r->device_count; i++) {
        msgpack_pack_map(pk, 3);
        pack_kv_str(pk, "id", r->devices[i].id);
        pack_kv_str(pk, "class", r->devices[i].class_name);
        pack_kv_str(pk, "attrs", r->devices[i].attrs);
    }
    pack_kv_u64(pk, "state_since_ms", m->state_since_us / 1000);
}

int gossip_pack_members(const gossip_t *g, msgpack_packer *pk)
{
    size_t count = swim_member_count(g->swim);
    swim_record_t *rec = malloc(sizeof(*rec));   /* a few KiB: keep it off the stack */
    if (!rec)
        return -ENOMEM;
    msgpack_pack_array(pk, count);
    for (size_t i = 0; i < count; i++) {
        swim_member_t m;
        swim_member_at(g->swim, i, &m);
        /* The core only accepts records that decode; a failure would leave
         * the fields empty rather than break the list. */
        if (swim_record_decode(m.record, m.record_len, rec, NULL, NULL) < 0)
            memset(rec, 0, sizeof(*rec));
        pack_member(pk, &m, rec);
    }
    free(rec);
    return 0;
}
