/* config.c - see config.h.
 *
 * The file is read line by line into a scratch copy of the config; only a
 * load that succeeds is copied back. Every value, the defaults included,
 * goes through set_value(), driven by the schema table below. */
#include "common/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* --- the schema ------------------------------------------------------------ */

enum {
    KEY_NAME_CHARS = 1 << 0,   /* only letters, digits, '.', '_' and '-' */
    KEY_NOT_EMPTY  = 1 << 1,
};

typedef struct {
    config_key_info_t info;
    size_t offset;        /* of the field in config_t */
    size_t size;          /* of the field */
    size_t count_offset;  /* CONFIG_ENDPOINTS: of the size_t item count */
    unsigned flags;
} schema_key_t;

#define FIELD(member) .offset = offsetof(config_t, member), \
                      .size = sizeof(((config_t *)0)->member)

#define MS_SECOND ((uint64_t)1000)
#define MS_MINUTE (60 * MS_SECOND)
#define KIB ((uint64_t)1024)
#define GIB (KIB * KIB * KIB)
#define TIB (1024 * GIB)

static const char *const log_level_choices[] = { "debug", "info", "warn", "error", "off", NULL };
static const char *const backend_choices[] = { "auto", "kvm", "process", NULL };
static const char *const cipher_choices[] = { "auto", "aes-256-gcm", "xchacha20-poly1305", NULL };

#define NO_RANGE 0, 0, NULL   /* min, max, choices: unused by this type */

#define PORT(key, member, dflt, what) \
    { .info = { "ports", key, CONFIG_UINT, dflt, what, 1, 65535, NULL }, FIELD(ports.member) }

static const schema_key_t schema[] = {
    /* [agent] */
    { .info = { "agent", "name", CONFIG_STRING, NULL,
                "This agent's name in the cluster; unique within it. Default: the hostname.", NO_RANGE },
      FIELD(agent.name), .flags = KEY_NAME_CHARS | KEY_NOT_EMPTY },
    { .info = { "agent", "cluster", CONFIG_STRING, "ferry",
                "Name of the cluster; agents of another cluster are refused.", NO_RANGE },
      FIELD(agent.cluster), .flags = KEY_NAME_CHARS | KEY_NOT_EMPTY },
    { .info = { "agent", "state_dir", CONFIG_STRING, "/var/lib/ferry",
                "Directory for the agent's keys, Raft log and snapshots.", NO_RANGE },
      FIELD(agent.state_dir), .flags = KEY_NOT_EMPTY },
    { .info = { "agent", "log_level", CONFIG_CHOICE, "info",
                "Least severe log level written: debug, info, warn, error or off.",
                .choices = log_level_choices },
      FIELD(agent.log_level) },
    { .info = { "agent", "bind", CONFIG_ADDRESS, "",
                "Address the control API, Raft and gossip listen on. Empty: the address of "
                "the management interface (ferryd --dev: 127.0.0.1).", NO_RANGE },
      FIELD(agent.bind) },
    { .info = { "agent", "http_bind", CONFIG_ADDRESS, "127.0.0.1",
                "Address of the HTTP listener (metrics, JSON, UI).", NO_RANGE },
      FIELD(agent.http_bind) },
    { .info = { "agent", "join", CONFIG_ENDPOINTS, "",
                "Agents to join through: comma list of host[:port]; the port defaults to "
                "[ports] gossip. Empty: no seeds.", NO_RANGE },
      FIELD(agent.join), .count_offset = offsetof(config_t, agent.join_count) },
    { .info = { "agent", "voters", CONFIG_UINT, "3",
                "How many agents vote in Raft; the others follow without a vote.", 1, 9, NULL },
      FIELD(agent.voters) },
    { .info = { "agent", "backend", CONFIG_CHOICE, "auto",
                "VM backend: kvm, process (guest processes), or auto (kvm when /dev/kvm works).",
                .choices = backend_choices },
      FIELD(agent.backend) },
    { .info = { "agent", "vm_heartbeat_timeout", CONFIG_DURATION, "10s",
                "VM monitoring: a VM whose guest heartbeated, then fell silent this long, is "
                "reset (at most 3 times per power-on). 0 turns monitoring off.", 0, 60 * MS_MINUTE, NULL },
      FIELD(agent.vm_heartbeat_timeout_ms) },

    /* [ports] */
    PORT("control", control, "7400", "Control API: ZeroMQ + CURVE, tcp."),
    PORT("raft", raft, "7401", "Raft between agents, tcp."),
    PORT("gossip", gossip, "7402", "Gossip (udp) and push-pull (tcp)."),
    PORT("migration", migration, "7403", "Migration data, tcp."),
    PORT("http", http, "7480", "HTTP: metrics, JSON, UI, tcp."),

    /* [capacity] */
    { .info = { "capacity", "cpus", CONFIG_UINT, "0",
                "CPUs this agent offers; 0 = what the host has. Lets several agents on one "
                "machine stand for different hosts.", 0, 65536, NULL },
      FIELD(capacity.cpus) },
    { .info = { "capacity", "memory", CONFIG_SIZE, "0",
                "Memory this agent offers, e.g. 16G; 0 = what the host has.", 0, 1024 * TIB, NULL },
      FIELD(capacity.memory_bytes) },

    /* [cluster] - timings; keep them equal on every agent. */
    { .info = { "cluster", "key_file", CONFIG_STRING, "",
                "File holding the 32-byte cluster key. Empty: <state_dir>/cluster.key.", NO_RANGE },
      FIELD(cluster.key_file) },
    { .info = { "cluster", "probe_interval", CONFIG_DURATION, "200ms",
                "SWIM: how often each agent probes one peer.", 10, MS_MINUTE, NULL },
      FIELD(cluster.probe_interval_ms) },
    { .info = { "cluster", "probe_timeout", CONFIG_DURATION, "100ms",
                "SWIM: how long a probe waits for its ack; below probe_interval.", 1, MS_MINUTE, NULL },
      FIELD(cluster.probe_timeout_ms) },
    { .info = { "cluster", "suspicion_mult", CONFIG_UINT, "3",
                "SWIM: a suspect is declared dead after about suspicion_mult * log(n) "
                "probe intervals.", 1, 32, NULL },
      FIELD(cluster.suspicion_mult) },
    { .info = { "cluster", "heartbeat_interval", CONFIG_DURATION, "20ms",
                "Raft: leader heartbeat period; below half of election_timeout.",
                1, 10 * MS_SECOND, NULL },
      FIELD(cluster.heartbeat_interval_ms) },
    { .info = { "cluster", "election_timeout", CONFIG_DURATION, "100ms",
                "Raft: a follower that hears no leader for this long (plus jitter) runs "
                "for election.", 10, MS_MINUTE, NULL },
      FIELD(cluster.election_timeout_ms) },
    { .info = { "cluster", "lease_duration", CONFIG_DURATION, "10s",
                "Host lease: a host that cannot renew it for this long powers its VMs off; "
                "HA restarts them elsewhere only after it expired. Above election_timeout.",
                100, 10 * MS_MINUTE, NULL },
      FIELD(cluster.lease_duration_ms) },

    /* [migration] */
    { .info = { "migration", "max_concurrent", CONFIG_UINT, "4",
                "Migrations this agent sends or receives at once.", 1, 64, NULL },
      FIELD(migration.max_concurrent) },
    { .info = { "migration", "downtime_ms", CONFIG_UINT, "100",
                "Target stun time of a live migration, in milliseconds.", 1, 60000, NULL },
      FIELD(migration.downtime_ms) },
    { .info = { "migration", "streams", CONFIG_UINT, "1",
                "Parallel TCP streams per live migration.", 1, 8, NULL },
      FIELD(migration.streams) },
    { .info = { "migration", "bandwidth", CONFIG_SIZE, "0",
                "Bandwidth cap per migration in bytes per second, e.g. 500M; 0 = none.",
                0, TIB, NULL },
      FIELD(migration.bandwidth_bytes) },
    { .info = { "migration", "cipher", CONFIG_CHOICE, "auto",
                "Stream cipher: aes-256-gcm, xchacha20-poly1305, or auto (AES-GCM where the "
                "CPU has AES-NI).", .choices = cipher_choices },
      FIELD(migration.cipher) },

    /* [interface NAME] - the field is in config_interface_t, not config_t. */
    { .info = { "interface", "services", CONFIG_SERVICES, "",
                "Services this interface carries: comma list of management, vmotion, "
                "provisioning, raft, gossip.", NO_RANGE },
      .offset = offsetof(config_interface_t, services),
      .size = sizeof(((config_interface_t *)0)->services) },
};

#define SCHEMA_COUNT (sizeof(schema) / sizeof(schema[0]))
_Static_assert(SCHEMA_COUNT <= CONFIG_KEYS_MAX, "raise CONFIG_KEYS_MAX");

static const char *const section_names[] = {
    "agent", "ports", "capacity", "cluster", "migration", NULL
};

static const char *const service_names[SERVICE_COUNT] = {
    "management", "vmotion", "provisioning", "raft", "gossip"
};

size_t config_key_count(void) { return SCHEMA_COUNT; }

const config_key_info_t *config_key_at(size_t index)
{
    return index < SCHEMA_COUNT ? &schema[index].info : NULL;
}

const char *const *config_sections(void) { return section_names; }

const char *config_type_name(config_type_t type)
{
    switch (type) {
    case CONFIG_STRING: return "string";
    case CONFIG_UINT: return "integer";
    case CONFIG_BOOL: return "bool";
    case CONFIG_DURATION: return "duration";
    case CONFIG_SIZE: return "size";
    case CONFIG_ADDRESS: return "address";
    case CONFIG_ENDPOINTS: return "host:port list";
    case CONFIG_CHOICE: return "choice";
    case CONFIG_SERVICES: return "service list";
    }
    return "?";
}

const char *config_service_name(uint32_t service_bit)
{
    for (int i = 0; i < SERVICE_COUNT; i++)
        if (service_bit == 1u << i)
            return service_names[i];
    return NULL;
}

int config_service_parse(const char *name, uint32_t *bit)
{
    for (int i = 0; i < SERVICE_COUNT; i++) {
        if (strcmp(name, service_names[i]) == 0) {
            *bit = 1u << i;
            return 0;
        }
    }
    return -1;
}

static const schema_key_t *find_key(const char *section, const char *name)
{
    for (size_t i = 0; i < SCHEMA_COUNT; i++)
        if (strcmp(schema[i].info.section, section) == 0 && strcmp(schema[i].info.name, name) == 0)
            return &schema[i];
    return NULL;
}

static bool is_known_section(const char *section)
{
    for (int i = 0; section_names[i]; i++)
        if (strcmp(section, section_names[i]) == 0)
            return true;
    return false;
}

/* --- small text helpers ------------------------------------------------------ */

/* Formats into err; tolerates err == NULL. */
static void say(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list args;
    va_start(args, fmt);
    vsnprintf(err, errlen, fmt, args);
    va_end(args);
}

/* Copies text into out as a printable, bounded, double-quoted string, so
 * that an error message about binary garbage stays one readable line. */
static const char *quoted(char *out, size_t outlen, const char *text)
{
    enum { SHOWN_MAX = 60 };
    size_t o = 0;
    out[o++] = '"';
    size_t i = 0;
    for (; text[i] && i < SHOWN_MAX && o + 6 < outlen; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c >= 0x20 && c < 0x7f) {
            out[o++] = (char)c;
        } else {
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02x", c);
        }
    }
    if (text[i] && o + 5 < outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}
#define QUOTE_MAX 320
#define Q(text) quoted((char[QUOTE_MAX]){0}, QUOTE_MAX, (text))

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

/* Reads the leading decimal digits of s; fails on none or on overflow. */
static int read_number(const char **s, uint64_t *value)
{
    const char *p = *s;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    *s = p;
    *value = v;
    return 0;
}

static void format_duration(char *out, size_t outlen, uint64_t ms)
{
    if (ms == 0)
        snprintf(out, outlen, "0");
    else if (ms % (60 * MS_MINUTE) == 0)
        snprintf(out, outlen, "%" PRIu64 "h", ms / (60 * MS_MINUTE));
    else if (ms % MS_MINUTE == 0)
        snprintf(out, outlen, "%" PRIu64 "m", ms / MS_MINUTE);
    else if (ms % MS_SECOND == 0)
        snprintf(out, outlen, "%" PRIu64 "s", ms / MS_SECOND);
    else
        snprintf(out, outlen, "%" PRIu64 "ms", ms);
}

static void format_size(char *out, size_t outlen, uint64_t bytes)
{
    static const char units[] = "KMGT";
    int unit = -1;
    uint64_t v = bytes;
    while (v != 0 && v % KIB == 0 && unit < 3) {
        v /= KIB;
        unit++;
    }
    if (unit < 0)
        snprintf(out, outlen, "%" PRIu64, bytes);
    else
        snprintf(out, outlen, "%" PRIu64 "%c", v, units[unit]);
}

static void format_range(char *out, size_t outlen, const config_key_info_t *info)
{
    char lo[32], hi[32];
    if (info->type == CONFIG_DURATION) {
        format_duration(lo, sizeof(lo), info->min);
        format_duration(hi, sizeof(hi), info->max);
    } else if (info->type == CONFIG_SIZE) {
        format_size(lo, sizeof(lo), info->min);
        format_size(hi, sizeof(hi), info->max);
    } else {
        snprintf(lo, sizeof(lo), "%" PRIu64, info->min);
        snprintf(hi, sizeof(hi), "%" PRIu64, info->max);
    }
    snprintf(out, outlen, "%s..%s", lo, hi);
}

/* --- value parsers: each fills `why` on failure -------------------------------- */

static int parse_uint(const char *text, uint64_t *value, char *why, size_t whylen)
{
    const char *p = text;
    if (read_number(&p, value) < 0 || *p) {
        say(why, whylen, "%s is not a number", Q(text));
        return -1;
    }
    return 0;
}

static int parse_duration(const char *text, uint64_t *ms, char *why, size_t whylen)
{
    static const struct { const char *suffix; uint64_t ms; } units[] = {
        { "ms", 1 }, { "s", MS_SECOND }, { "m", MS_MINUTE }, { "h", 60 * MS_MINUTE },
    };
    const char *p = text;
    uint64_t v;
    if (read_number(&p, &v) == 0) {
        if (*p == '\0' && v == 0) {
            *ms = 0;
            return 0;
        }
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
            if (strcmp(p, units[i].suffix) == 0) {
                if (v > UINT64_MAX / units[i].ms)
                    break;
                *ms = v * units[i].ms;
                return 0;
            }
        }
    }
    say(why, whylen, "%s is not a duration (write e.g. 500ms, 2s, 5m, 1h)", Q(text));
    return -1;
}

static int parse_size(const char *text, uint64_t *bytes, char *why, size_t whylen)
{
    const char *p = text;
    uint64_t v;
    if (read_number(&p, &v) == 0) {
        uint64_t scale = 1;
        const char *units = "KMGT";
        const char *unit = *p ? strchr(units, toupper((unsigned char)*p)) : NULL;
        if (unit) {
            for (const char *u = units; u <= unit; u++)
                scale *= KIB;
            p++;
            if (strcasecmp(p, "iB") == 0 || strcasecmp(p, "B") == 0)
                p += strlen(p);
        } else if (strcasecmp(p, "B") == 0) {
            p++;
        }
        if (*p == '\0' && v <= UINT64_MAX / scale) {
            *bytes = v * scale;
            return 0;
        }
    }
    say(why, whylen, "%s is not a size (write e.g. 4096, 512M, 16G)", Q(text));
    return -1;
}

static int parse_bool(const char *text, bool *value, char *why, size_t whylen)
{
    static const char *const yes[] = { "true", "yes", "on", "1" };
    static const char *const no[] = { "false", "no", "off", "0" };
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(text, yes[i]) == 0) {
            *value = true;
            return 0;
        }
        if (strcasecmp(text, no[i]) == 0) {
            *value = false;
            return 0;
        }
    }
    say(why, whylen, "%s is not true or false", Q(text));
    return -1;
}

static int parse_choice(const char *text, const char *const *choices, int *value,
                        char *why, size_t whylen)
{
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        if (strcmp(text, choices[i]) == 0) {
            *value = i;
            return 0;
        }
        if (i > 0)
            strncat(list, ", ", sizeof(list) - strlen(list) - 1);
        strncat(list, choices[i], sizeof(list) - strlen(list) - 1);
    }
    say(why, whylen, "%s is not one of: %s", Q(text), list);
    return -1;
}

static bool is_ip_literal(const char *text)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, text, addr) == 1 || inet_pton(AF_INET6, text, addr) == 1;
}

/* A DNS name: dot-separated labels of letters, digits and '-', 1..63 long,
 * not starting or ending with '-'. */
static bool is_host_name(const char *text)
{
    size_t total = strlen(text), label = 0;
    if (total == 0 || total > 253)
        return false;
    for (const char *p = text; ; p++) {
        if (*p == '.' || *p == '\0') {
            if (label == 0 || label > 63 || p[-1] == '-')
                return false;
            if (*p == '\0')
                return true;
            label = 0;
        } else if (isalnum((unsigned char)*p) || (*p == '-' && label > 0)) {
            label++;
        } else {
            return false;
        }
    }
}

static int parse_port(const char *text, uint16_t *port)
{
    uint64_t v;
    const char *p = text;
    if (read_number(&p, &v) < 0 || *p || v < 1 || v > 65535)
        return -1;
    *port = (uint16_t)v;
    return 0;
}

/* One seed: host, host:port, [v6], [v6]:port or a bare IPv6 literal. */
static int parse_endpoint(char *item, config_endpoint_t *out, char *why, size_t whylen)
{
    char shown[80];   /* the item as written, for the message; parsing cuts it up */
    snprintf(shown, sizeof(shown), "%s", item);
    char *host = item, *port = NULL;
    bool bracketed = false;
    if (*item == '[') {
        char *close = strchr(item, ']');
        if (!close || (close[1] != '\0' && close[1] != ':'))
            goto bad;
        *close = '\0';
        host = item + 1;
        port = close[1] == ':' ? close + 2 : NULL;
        bracketed = true;
    } else {
        char *colon = strchr(item, ':');
        if (colon && !strchr(colon + 1, ':')) {   /* exactly one ':' */
            *colon = '\0';
            port = colon + 1;
        }
    }
    unsigned char addr[16];
    bool host_ok = bracketed ? inet_pton(AF_INET6, host, addr) == 1
                             : (is_ip_literal(host) || is_host_name(host));
    if (!host_ok || strlen(host) >= sizeof(out->host))
        goto bad;
    out->port = 0;
    if (port && parse_port(port, &out->port) < 0) {
        say(why, whylen, "seed %s: port %s is not in 1..65535", Q(host), Q(port));
        return -1;
    }
    snprintf(out->host, sizeof(out->host), "%s", host);
    return 0;
bad:
    say(why, whylen, "seed %s is not host, host:port or [ipv6]:port", Q(shown));
    return -1;
}

/* Splits a comma list in place and calls one(item) for every trimmed item.
 * An empty text is an empty list; an empty item is an error. */
typedef int (*list_item_fn)(char *item, size_t index, void *ctx, char *why, size_t whylen);
static int split_list(char *text, list_item_fn one, void *ctx, char *why, size_t whylen)
{
    if (*trim(text) == '\0')
        return 0;
    size_t index = 0;
    for (char *item = text, *next; item; item = next, index++) {
        next = strchr(item, ',');
        if (next)
            *next++ = '\0';
        item = trim(item);
        if (*item == '\0') {
            say(why, whylen, "empty item in the list (two commas, or a trailing comma?)");
            return -1;
        }
        if (one(item, index, ctx, why, whylen) < 0)
            return -1;
    }
    return 0;
}

typedef struct {
    config_endpoint_t *items;
    size_t count;
} endpoint_list_t;

static int add_endpoint(char *item, size_t index, void *ctx, char *why, size_t whylen)
{
    endpoint_list_t *list = ctx;
    if (index >= CONFIG_JOIN_MAX) {
        say(why, whylen, "more than %d seeds", CONFIG_JOIN_MAX);
        return -1;
    }
    if (parse_endpoint(item, &list->items[index], why, whylen) < 0)
        return -1;
    list->count = index + 1;
    return 0;
}

static int add_service(char *item, size_t index, void *ctx, char *why, size_t whylen)
{
    uint32_t bit;
    if (config_service_parse(item, &bit) < 0) {
        say(why, whylen, "unknown service %s (known: management, vmotion, provisioning, "
            "raft, gossip)", Q(item));
        return -1;
    }
    *(uint32_t *)ctx |= bit;
    return 0;
}

static int parse_string(const schema_key_t *key, const char *text, char *out,
                        char *why, size_t whylen)
{
    size_t n = strlen(text);
    if (n == 0 && (key->flags & KEY_NOT_EMPTY)) {
        say(why, whylen, "must not be empty");
        return -1;
    }
    if (n >= key->size) {
        say(why, whylen, "%s is longer than %zu bytes", Q(text), key->size - 1);
        return -1;
    }
    for (const char *p = text; *p; p++) {
        unsigned char c = (unsigned char)*p;
        bool ok = (key->flags & KEY_NAME_CHARS)
                      ? (isalnum(c) || c == '.' || c == '_' || c == '-')
                      : (c >= 0x20 && c != 0x7f && c != '"');
        if (!ok) {
            say(why, whylen, "%s: character %s is not allowed%s", Q(text), Q(((char[2]){ (char)c })),
                (key->flags & KEY_NAME_CHARS) ? " (use letters, digits, '.', '_', '-')" : "");
            return -1;
        }
    }
    memcpy(out, text, n + 1);
    return 0;
}

static void store_uint(void *field, size_t size, uint64_t value)
{
    switch (size) {
    case sizeof(uint16_t): *(uint16_t *)field = (uint16_t)value; break;
    case sizeof(uint32_t): *(uint32_t *)field = (uint32_t)value; break;
    default: *(uint64_t *)field = value; break;
    }
}

/* Parses text as key's value and stores it in the struct at base (a
 * config_t, or a config_interface_t for interface keys). text may be
 * modified. Nothing is stored on failure. */
static int set_value(const schema_key_t *key, void *base, char *text, char *why, size_t whylen)
{
    const config_key_info_t *info = &key->info;
    void *field = (char *)base + key->offset;
    uint64_t number = 0;
    switch (info->type) {
    case CONFIG_STRING:
        return parse_string(key, text, field, why, whylen);
    case CONFIG_UINT:
    case CONFIG_DURATION:
    case CONFIG_SIZE: {
        int rc = info->type == CONFIG_UINT     ? parse_uint(text, &number, why, whylen)
                 : info->type == CONFIG_DURATION ? parse_duration(text, &number, why, whylen)
                                                 : parse_size(text, &number, why, whylen);
        if (rc < 0)
            return -1;
        if (number < info->min || number > info->max) {
            char range[80];
            format_range(range, sizeof(range), info);
            say(why, whylen, "%s is out of range (%s)", Q(text), range);
            return -1;
        }
        store_uint(field, key->size, number);
        return 0;
    }
    case CONFIG_BOOL:
        return parse_bool(text, field, why, whylen);
    case CONFIG_CHOICE: {
        int choice;
        if (parse_choice(text, info->choices, &choice, why, whylen) < 0)
            return -1;
        _Static_assert(sizeof(log_level_t) == sizeof(int) && sizeof(config_backend_t) == sizeof(int)
                       && sizeof(config_cipher_t) == sizeof(int), "choice fields are int-sized");
        *(int *)field = choice;
        return 0;
    }
    case CONFIG_ADDRESS:
        if (*text && !is_ip_literal(text)) {
            say(why, whylen, "%s is not an IPv4 or IPv6 address", Q(text));
            return -1;
        }
        if (strlen(text) >= key->size)
            return -1;   /* cannot happen for a valid literal */
        strcpy(field, text);
        return 0;
    case CONFIG_ENDPOINTS: {
        config_endpoint_t parsed[CONFIG_JOIN_MAX];
        endpoint_list_t list = { parsed, 0 };
        if (split_list(text, add_endpoint, &list, why, whylen) < 0)
            return -1;
        memcpy(field, parsed, list.count * sizeof(parsed[0]));
        *(size_t *)((char *)base + key->count_offset) = list.count;
        return 0;
    }
    case CONFIG_SERVICES: {
        uint32_t services = 0;
        if (split_list(text, add_service, &services, why, whylen) < 0)
            return -1;
        *(uint32_t *)field = services;
        return 0;
    }
    }
    return -1;
}

/* --- interfaces ---------------------------------------------------------------- */

const config_interface_t *config_interface(const config_t *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->interface_count; i++)
        if (strcmp(cfg->interfaces[i].name, name) == 0)
            return &cfg->interfaces[i];
    return NULL;
}

static int check_interface_name(const char *name, char *why, size_t whylen)
{
    size_t n = strlen(name);
    bool ok = n > 0 && n < CONFIG_IFNAME_MAX;
    for (const char *p = name; ok && *p; p++)
        ok = *p > 0x20 && *p < 0x7f && !strchr("/]\"#", *p);
    if (!ok)
        say(why, whylen, "%s is not an interface name (1..%d printable characters, none of / ] \" #)",
            Q(name), CONFIG_IFNAME_MAX - 1);
    return ok ? 0 : -1;
}

/* Finds or adds the interface entry called name; NULL if the table is full. */
static config_interface_t *interface_slot(config_t *cfg, const char *name)
{
    config_interface_t *existing = (config_interface_t *)config_interface(cfg, name);
    if (existing)
        return existing;
    if (cfg->interface_count >= CONFIG_INTERFACES_MAX)
        return NULL;
    config_interface_t *slot = &cfg->interfaces[cfg->interface_count++];
    memset(slot, 0, sizeof(*slot));
    snprintf(slot->name, sizeof(slot->name), "%s", name);
    return slot;
}

/* --- defaults -------------------------------------------------------------------- */

void config_defaults(config_t *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    char why[256];
    for (size_t i = 0; i < SCHEMA_COUNT; i++) {
        const schema_key_t *key = &schema[i];
        if (!key->info.default_text || strcmp(key->info.section, "interface") == 0)
            continue;
        char text[64];
        snprintf(text, sizeof(text), "%s", key->info.default_text);
        /* Cannot fail: tests/unit/test_config.c checks every default parses. */
        (void)set_value(key, cfg, text, why, sizeof(why));
    }
    char host[256] = "";
    if (gethostname(host, sizeof(host) - 1) < 0 || !*host)
        strcpy(host, "localhost");
    /* A hostname may hold characters a name may not; keep the first label. */
    size_t n = strspn(host, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
    if (n == 0)
        snprintf(cfg->agent.name, sizeof(cfg->agent.name), "localhost");
    else
        snprintf(cfg->agent.name, sizeof(cfg->agent.name), "%.*s", (int)n, host);
}

/* --- loading a file ---------------------------------------------------------- */

typedef struct {
    const char *name;          /* of the input, for messages */
    unsigned line;
    char section[32];          /* "" before the first header; "interface" in one */
    config_interface_t *interface;  /* in an [interface NAME] section */
    config_t *cfg;             /* the scratch copy being filled */
    config_t *discard;         /* receives values of keys pinned by the command line */
    unsigned set_on_line[CONFIG_KEYS_MAX];
    unsigned services_on_line[CONFIG_INTERFACES_MAX];
    char *err;
    size_t errlen;
} loader_t;

static void list_keys(char *out, size_t outlen, const char *section)
{
    out[0] = '\0';
    for (size_t i = 0; i < SCHEMA_COUNT; i++) {
        if (strcmp(schema[i].info.section, section) != 0)
            continue;
        if (out[0])
            strncat(out, ", ", outlen - strlen(out) - 1);
        strncat(out, schema[i].info.name, outlen - strlen(out) - 1);
    }
}

/* Cuts an unquoted value at a '#' that follows whitespace; unwraps a value
 * in double quotes. Returns NULL if the quotes are unbalanced. */
static char *clean_value(char *value)
{
    value = trim(value);
    if (*value == '"') {
        char *close = strchr(value + 1, '"');
        if (!close)
            return NULL;
        char *rest = trim(close + 1);
        if (*rest && *rest != '#')
            return NULL;
        *close = '\0';
        return value + 1;
    }
    for (char *p = value; *p; p++) {
        if (*p == '#' && (p == value || p[-1] == ' ' || p[-1] == '\t')) {
            *p = '\0';
            break;
        }
    }
    return trim(value);
}

static int load_section_header(loader_t *ld, char *text)
{
    char *close = strchr(text, ']');
    if (!close) {
        say(ld->err, ld->errlen, "%s:%u: %s: section header has no closing ']'",
            ld->name, ld->line, Q(text));
        return -1;
    }
    char *rest = trim(close + 1);
    if (*rest && *rest != '#') {
        say(ld->err, ld->errlen, "%s:%u: %s: unexpected text after the section header",
            ld->name, ld->line, Q(rest));
        return -1;
    }
    *close = '\0';
    char *inside = trim(text + 1);
    char why[512];

    if (strncmp(inside, "interface", 9) == 0 && (inside[9] == ' ' || inside[9] == '\t')) {
        char *ifname = trim(inside + 10);
        if (check_interface_name(ifname, why, sizeof(why)) < 0) {
            say(ld->err, ld->errlen, "%s:%u: [interface]: %s", ld->name, ld->line, why);
            return -1;
        }
        ld->interface = interface_slot(ld->cfg, ifname);
        if (!ld->interface) {
            say(ld->err, ld->errlen, "%s:%u: [interface %s]: more than %d interface sections",
                ld->name, ld->line, ifname, CONFIG_INTERFACES_MAX);
            return -1;
        }
        if (ld->interface->origin == CONFIG_FROM_DEFAULT)
            ld->interface->origin = CONFIG_FROM_FILE;
        snprintf(ld->section, sizeof(ld->section), "interface");
        return 0;
    }
    if (strcmp(inside, "interface") == 0) {
        say(ld->err, ld->errlen, "%s:%u: [interface]: name the interface, e.g. [interface eth0]",
            ld->name, ld->line);
        return -1;
    }
    if (!is_known_section(inside)) {
        say(ld->err, ld->errlen, "%s:%u: unknown section %s (known: agent, ports, capacity, "
            "cluster, migration, interface NAME)", ld->name, ld->line, Q(inside));
        return -1;
    }
    snprintf(ld->section, sizeof(ld->section), "%s", inside);
    ld->interface = NULL;
    return 0;
}

static int load_assignment(loader_t *ld, char *text)
{
    char *eq = strchr(text, '=');
    if (!eq) {
        say(ld->err, ld->errlen, "%s:%u: %s: expected \"key = value\" or \"[section]\"",
            ld->name, ld->line, Q(text));
        return -1;
    }
    *eq = '\0';
    char *name = trim(text);
    char *value = clean_value(eq + 1);
    if (!ld->section[0]) {
        say(ld->err, ld->errlen, "%s:%u: %s: key outside a section (start with e.g. [agent])",
            ld->name, ld->line, Q(name));
        return -1;
    }
    char where[64];
    if (ld->interface)
        snprintf(where, sizeof(where), "[interface %s]", ld->interface->name);
    else
        snprintf(where, sizeof(where), "[%s]", ld->section);

    const schema_key_t *key = find_key(ld->section, name);
    if (!key) {
        char known[512];
        list_keys(known, sizeof(known), ld->section);
        say(ld->err, ld->errlen, "%s:%u: %s %s: unknown key (known: %s)",
            ld->name, ld->line, where, Q(name), known);
        return -1;
    }
    if (!value) {
        say(ld->err, ld->errlen, "%s:%u: %s %s: unbalanced quotes", ld->name, ld->line, where, name);
        return -1;
    }

    /* Which struct receives the value, and was it set before in this file? */
    void *base;
    uint8_t *origin;
    unsigned *set_on;
    if (ld->interface) {
        size_t index = (size_t)(ld->interface - ld->cfg->interfaces);
        base = ld->interface;
        origin = &ld->interface->origin;
        set_on = &ld->services_on_line[index];
    } else {
        size_t index = (size_t)(key - schema);
        base = ld->cfg;
        origin = &ld->cfg->origin[index];
        set_on = &ld->set_on_line[index];
    }
    if (*set_on) {
        say(ld->err, ld->errlen, "%s:%u: %s %s: set twice (first on line %u)",
            ld->name, ld->line, where, name, *set_on);
        return -1;
    }
    *set_on = ld->line;

    /* A key pinned by the command line is still checked, but not replaced. */
    bool pinned = *origin == CONFIG_FROM_COMMAND_LINE;
    if (pinned) {
        *ld->discard = *ld->cfg;
        base = ld->interface ? (void *)&ld->discard->interfaces[ld->interface - ld->cfg->interfaces]
                             : (void *)ld->discard;
    }
    char why[512];
    if (set_value(key, base, value, why, sizeof(why)) < 0) {
        say(ld->err, ld->errlen, "%s:%u: %s %s: %s", ld->name, ld->line, where, name, why);
        return -1;
    }
    if (!pinned)
        *origin = CONFIG_FROM_FILE;
    return 0;
}

static int load_line(loader_t *ld, char *line)
{
    char *text = trim(line);
    if (*text == '\0' || *text == '#')
        return 0;
    if (*text == '[')
        return load_section_header(ld, text);
    return load_assignment(ld, text);
}

int config_load_buffer(config_t *cfg, const char *name, const void *buf, size_t len,
                       char *err, size_t errlen)
{
    if (len > CONFIG_FILE_MAX) {
        say(err, errlen, "%s: larger than %d bytes", name, CONFIG_FILE_MAX);
        return -EFBIG;
    }
    /* Two config_t and the line buffer are too big for a comfortable stack frame. */
    loader_t *ld = calloc(1, sizeof(*ld));
    config_t *copies = malloc(2 * sizeof(config_t));
    char *line = malloc(CONFIG_LINE_MAX + 1);
    int rc = -ENOMEM;
    if (!ld || !copies || !line) {
        say(err, errlen, "%s: out of memory", name);
        goto done;
    }
    copies[0] = *cfg;
    ld->name = name;
    ld->cfg = &copies[0];
    ld->discard = &copies[1];
    ld->err = err;
    ld->errlen = errlen;

    const char *p = buf, *end = p + len;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)   /* a UTF-8 byte order mark */
        p += 3;
    rc = -EINVAL;
    while (p < end) {
        const char *newline = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((newline ? newline : end) - p);
        ld->line++;
        if (ld->line > CONFIG_LINES_MAX) {
            say(err, errlen, "%s:%u: more than %d lines", name, ld->line, CONFIG_LINES_MAX);
            goto done;
        }
        if (n > CONFIG_LINE_MAX) {
            say(err, errlen, "%s:%u: line is longer than %d bytes", name, ld->line, CONFIG_LINE_MAX);
            goto done;
        }
        if (memchr(p, '\0', n)) {
            say(err, errlen, "%s:%u: line holds a NUL byte (is this a binary file?)", name, ld->line);
            goto done;
        }
        memcpy(line, p, n);
        line[n] = '\0';
        if (load_line(ld, line) < 0)
            goto done;
        p += n + (newline ? 1 : 0);
    }
    *cfg = copies[0];
    rc = 0;
done:
    free(line);
    free(copies);
    free(ld);
    return rc;
}

int config_load_file(config_t *cfg, const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        say(err, errlen, "%s: cannot open: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        int e = S_ISDIR(st.st_mode) ? EISDIR : EINVAL;
        say(err, errlen, "%s: not a regular file", path);
        close(fd);
        return -e;
    }
    /* Read one byte past the limit to tell "exactly at" from "over". */
    char *buf = malloc(CONFIG_FILE_MAX + 1);
    if (!buf) {
        close(fd);
        say(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    size_t len = 0;
    while (len < CONFIG_FILE_MAX + 1) {
        ssize_t got = read(fd, buf + len, CONFIG_FILE_MAX + 1 - len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int e = errno;
            say(err, errlen, "%s: cannot read: %s", path, strerror(e));
            free(buf);
            close(fd);
            return -e;
        }
        if (got == 0)
            break;
        len += (size_t)got;
    }
    close(fd);
    int rc = config_load_buffer(cfg, path, buf, len, err, errlen);
    free(buf);
    return rc;
}

/* --- command-line overrides ------------------------------------------------------ */

int config_set_option(config_t *cfg, const char *key_path, const char *value, char *err, size_t errlen)
{
    static const char where[] = "command line";
    char path[128];
    if (!key_path || !value || strlen(key_path) >= sizeof(path)) {
        say(err, errlen, "%s: %s: unknown option", where, Q(key_path ? key_path : ""));
        return -EINVAL;
    }
    snprintf(path, sizeof(path), "%s", key_path);

    /* "section.key", or "interface.NAME.services" where NAME may hold dots (eth0.100). */
    char *section = path, *name = strrchr(path, '.'), *ifname = NULL;
    if (!name || name == path) {
        goto bad_path;
    }
    *name++ = '\0';
    if (strncmp(section, "interface.", 10) == 0) {
        ifname = section + 10;
        section = "interface";
    } else if (strchr(section, '.') || strcmp(section, "interface") == 0) {
        goto bad_path;
    }
    char why[512];
    if (ifname && check_interface_name(ifname, why, sizeof(why)) < 0) {
        say(err, errlen, "%s: [interface]: %s", where, why);
        return -EINVAL;
    }
    char label[64];
    if (ifname)
        snprintf(label, sizeof(label), "[interface %.15s]", ifname);
    else
        snprintf(label, sizeof(label), "[%.40s]", section);

    const schema_key_t *key = find_key(section, name);
    if (!key) {
        char known[512];
        if (strcmp(section, "interface") == 0 || is_known_section(section)) {
            list_keys(known, sizeof(known), section);
            say(err, errlen, "%s: %s %s: unknown key (known: %s)", where, label, Q(name), known);
        } else {
            say(err, errlen, "%s: unknown section %s (known: agent, ports, capacity, cluster, "
                "migration, interface.NAME)", where, Q(section));
        }
        return -EINVAL;
    }

    size_t vlen = strlen(value);
    if (vlen > CONFIG_LINE_MAX) {
        say(err, errlen, "%s: %s %s: value is longer than %d bytes", where, label, name, CONFIG_LINE_MAX);
        return -EINVAL;
    }
    char *text = malloc(vlen + 1);
    config_t *scratch = malloc(sizeof(*scratch));
    int rc = -ENOMEM;
    if (!text || !scratch) {
        say(err, errlen, "%s: out of memory", where);
        goto done;
    }
    memcpy(text, value, vlen + 1);
    *scratch = *cfg;
    rc = -EINVAL;
    void *base = scratch;
    uint8_t *origin = &scratch->origin[key - schema];
    if (ifname) {
        config_interface_t *slot = interface_slot(scratch, ifname);
        if (!slot) {
            say(err, errlen, "%s: %s: more than %d interfaces", where, label, CONFIG_INTERFACES_MAX);
            goto done;
        }
        base = slot;
        origin = &slot->origin;
    }
    if (set_value(key, base, trim(text), why, sizeof(why)) < 0) {
        say(err, errlen, "%s: %s %s: %s", where, label, name, why);
        goto done;
    }
    *origin = CONFIG_FROM_COMMAND_LINE;
    *cfg = *scratch;
    rc = 0;
done:
    free(text);
    free(scratch);
    return rc;
bad_path:
    say(err, errlen, "%s: %s: expected section.key, e.g. ports.control or "
        "interface.eth0.services", where, Q(key_path));
    return -EINVAL;
}

int config_set_assignment(config_t *cfg, const char *assignment, char *err, size_t errlen)
{
    const char *eq = assignment ? strchr(assignment, '=') : NULL;
    if (!eq) {
        say(err, errlen, "command line: %s: expected section.key=value",
            Q(assignment ? assignment : ""));
        return -EINVAL;
    }
    char key[128];
    size_t n = (size_t)(eq - assignment);
    if (n >= sizeof(key)) {
        say(err, errlen, "command line: %s: key is too long", Q(assignment));
        return -EINVAL;
    }
    memcpy(key, assignment, n);
    key[n] = '\0';
    return config_set_option(cfg, trim(key), eq + 1, err, errlen);
}

/* --- rules across keys ----------------------------------------------------------- */

int config_finish(config_t *cfg, char *err, size_t errlen)
{
    const struct { const char *name; uint16_t port; } ports[] = {
        { "control", cfg->ports.control }, { "raft", cfg->ports.raft },
        { "gossip", cfg->ports.gossip }, { "migration", cfg->ports.migration },
        { "http", cfg->ports.http },
    };
    const size_t nports = sizeof(ports) / sizeof(ports[0]);
    for (size_t i = 0; i < nports; i++) {
        for (size_t j = 0; j < i; j++) {
            if (ports[i].port == ports[j].port) {
                say(err, errlen, "[ports] %s: %u is also [ports] %s; each port must differ",
                    ports[i].name, ports[i].port, ports[j].name);
                return -EINVAL;
            }
        }
    }
    char a[32], b[32];
    const typeof(cfg->cluster) *c = &cfg->cluster;
    if (c->probe_timeout_ms >= c->probe_interval_ms) {
        format_duration(a, sizeof(a), c->probe_timeout_ms);
        format_duration(b, sizeof(b), c->probe_interval_ms);
        say(err, errlen, "[cluster] probe_timeout: %s must be below probe_interval (%s)", a, b);
        return -EINVAL;
    }
    if (c->heartbeat_interval_ms * 2 >= c->election_timeout_ms) {
        format_duration(a, sizeof(a), c->heartbeat_interval_ms);
        format_duration(b, sizeof(b), c->election_timeout_ms);
        say(err, errlen, "[cluster] heartbeat_interval: %s must be below half of "
            "election_timeout (%s)", a, b);
        return -EINVAL;
    }
    if (c->lease_duration_ms <= c->election_timeout_ms) {
        format_duration(a, sizeof(a), c->lease_duration_ms);
        format_duration(b, sizeof(b), c->election_timeout_ms);
        say(err, errlen, "[cluster] lease_duration: %s must be above election_timeout (%s)", a, b);
        return -EINVAL;
    }
    for (size_t i = 0; i < cfg->agent.join_count; i++)
        if (cfg->agent.join[i].port == 0)
            cfg->agent.join[i].port = cfg->ports.gossip;
    return 0;
}

/* --- writing ------------------------------------------------------------------------ */

static void write_value(FILE *out, const schema_key_t *key, const void *base)
{
    const void *field = (const char *)base + key->offset;
    char text[64];
    uint64_t number = 0;
    switch (key->size) {
    case sizeof(uint16_t): number = *(const uint16_t *)field; break;
    case sizeof(uint32_t): number = *(const uint32_t *)field; break;
    case sizeof(uint64_t): number = *(const uint64_t *)field; break;
    }
    switch (key->info.type) {
    case CONFIG_STRING:
    case CONFIG_ADDRESS: {
        const char *s = field;
        /* Quote what a reader would otherwise trim or cut as a comment. */
        bool quote = !*s || strchr(s, '#') || s[0] == ' ' || s[0] == '\t'
                     || s[strlen(s) - 1] == ' ' || s[strlen(s) - 1] == '\t';
        fprintf(out, quote ? "\"%s\"" : "%s", s);
        break;
    }
    case CONFIG_UINT:
        fprintf(out, "%" PRIu64, number);
        break;
    case CONFIG_DURATION:
        format_duration(text, sizeof(text), number);
        fputs(text, out);
        break;
    case CONFIG_SIZE:
        format_size(text, sizeof(text), number);
        fputs(text, out);
        break;
    case CONFIG_BOOL:
        fputs(*(const bool *)field ? "true" : "false", out);
        break;
    case CONFIG_CHOICE:
        fputs(key->info.choices[*(const int *)field], out);
        break;
    case CONFIG_ENDPOINTS: {
        const config_endpoint_t *items = field;
        size_t count = *(const size_t *)((const char *)base + key->count_offset);
        for (size_t i = 0; i < count; i++) {
            bool v6 = strchr(items[i].host, ':') != NULL;
            fputs(i ? ", " : "", out);
            if (items[i].port)
                fprintf(out, v6 ? "[%s]:%u" : "%s:%u", items[i].host, items[i].port);
            else
                fputs(items[i].host, out);
        }
        break;
    }
    case CONFIG_SERVICES: {
        uint32_t services = (uint32_t)number;
        bool first = true;
        for (int i = 0; i < SERVICE_COUNT; i++) {
            if (services & (1u << i)) {
                fprintf(out, "%s%s", first ? "" : ", ", service_names[i]);
                first = false;
            }
        }
        break;
    }
    }
}

int config_write(const config_t *cfg, FILE *out)
{
    fputs("# ferry configuration (effective values)\n", out);
    for (int s = 0; section_names[s]; s++) {
        fprintf(out, "\n[%s]\n", section_names[s]);
        for (size_t i = 0; i < SCHEMA_COUNT; i++) {
            if (strcmp(schema[i].info.section, section_names[s]) != 0)
                continue;
            fprintf(out, "%s = ", schema[i].info.name);
            write_value(out, &schema[i], cfg);
            fputc('\n', out);
        }
    }
    const schema_key_t *services = find_key("interface", "services");
    for (size_t i = 0; i < cfg->interface_count; i++) {
        fprintf(out, "\n[interface %s]\nservices = ", cfg->interfaces[i].name);
        write_value(out, services, &cfg->interfaces[i]);
        fputc('\n', out);
    }
    return ferror(out) ? -EIO : 0;
}
