/* config.h - ferryd's configuration: an INI-style file, then command-line
 * overrides on top.
 *
 *   # ferry.conf
 *   [agent]
 *   cluster = lab
 *   join    = 10.0.0.1:7402, 10.0.0.2
 *
 *   [ports]
 *   control = 7400
 *
 *   [interface eth1]
 *   services = vmotion, provisioning
 *
 * Every key is declared once, in the schema table in config.c: its section,
 * name, type, range, default and a one-line doc. The parser, the defaults,
 * config_write() and the docs test all read that table.
 *
 * Order of precedence: defaults < file < command line. A key set with
 * config_set_option() is pinned: a file loaded afterwards still has its value
 * checked, but does not replace it. So the caller may apply --set flags
 * before or after loading the file and the command line wins either way.
 *
 * Errors name where the bad input came from, the line and the key:
 *
 *   ferry.conf:12: [ports] control: "70000" is out of range (1..65535)
 *   command line: [ports] control: "x" is not a number
 *
 * A failed load or set leaves the config exactly as it was. */
#ifndef FERRY_CONFIG_H
#define FERRY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/log.h"

/* Bounds on untrusted input. */
#define CONFIG_LINE_MAX       4096          /* bytes per line, without the newline */
#define CONFIG_LINES_MAX      10000
#define CONFIG_FILE_MAX       (1024 * 1024) /* bytes per file */

#define CONFIG_NAME_MAX       64    /* agent and cluster names, with the NUL */
#define CONFIG_PATH_MAX       1024
#define CONFIG_ADDRESS_MAX    46    /* INET6_ADDRSTRLEN */
#define CONFIG_HOST_MAX       256   /* a DNS name (253) or an address, with the NUL */
#define CONFIG_JOIN_MAX       16
#define CONFIG_IFNAME_MAX     16    /* IFNAMSIZ */
#define CONFIG_INTERFACES_MAX 32
#define CONFIG_KEYS_MAX       64    /* capacity of the schema table */

/* The network services an interface can carry. A fixed list: an unknown
 * name in a config file is an error, not a silently ignored tag. */
typedef enum {
    SERVICE_MANAGEMENT   = 1u << 0,  /* control API, default for everything */
    SERVICE_VMOTION      = 1u << 1,  /* hot (live) migration data */
    SERVICE_PROVISIONING = 1u << 2,  /* cold migration data */
    SERVICE_RAFT         = 1u << 3,
    SERVICE_GOSSIP       = 1u << 4,
} config_service_t;
#define SERVICE_COUNT 5
#define SERVICE_ALL   ((1u << SERVICE_COUNT) - 1)

/* "management", "vmotion", ... for one bit; NULL for anything else. */
const char *config_service_name(uint32_t service_bit);
/* Parses one service name; returns 0 and sets *bit, or -1 if unknown. */
int config_service_parse(const char *name, uint32_t *bit);

typedef enum { BACKEND_AUTO, BACKEND_KVM, BACKEND_PROCESS } config_backend_t;
typedef enum { CIPHER_AUTO, CIPHER_AES256GCM, CIPHER_XCHACHA20 } config_cipher_t;

/* Where a key's current value came from. */
typedef enum { CONFIG_FROM_DEFAULT, CONFIG_FROM_FILE, CONFIG_FROM_COMMAND_LINE } config_origin_t;

/* host:port. port 0 means "not given": config_finish() fills in ports.gossip. */
typedef struct {
    char host[CONFIG_HOST_MAX];
    uint16_t port;
} config_endpoint_t;

/* One [interface NAME] section. */
typedef struct {
    char name[CONFIG_IFNAME_MAX];
    uint32_t services;            /* SERVICE_* bits */
    uint8_t origin;               /* config_origin_t */
} config_interface_t;

typedef struct {
    struct {
        char name[CONFIG_NAME_MAX];         /* default: the hostname */
        char cluster[CONFIG_NAME_MAX];
        char state_dir[CONFIG_PATH_MAX];
        log_level_t log_level;
        char bind[CONFIG_ADDRESS_MAX];      /* "" = address of the management interface */
        char http_bind[CONFIG_ADDRESS_MAX];
        config_endpoint_t join[CONFIG_JOIN_MAX];
        size_t join_count;
        uint32_t voters;
        config_backend_t backend;
        uint64_t vm_heartbeat_timeout_ms;   /* VM monitoring; 0 = off */
    } agent;
    struct {
        uint16_t control, raft, gossip, migration, http;
    } ports;
    struct {
        uint32_t cpus;                      /* 0 = what the inventory finds */
        uint64_t memory_bytes;              /* 0 = what the inventory finds */
    } capacity;
    struct {
        char key_file[CONFIG_PATH_MAX];     /* "" = <state_dir>/cluster.key */
        uint64_t probe_interval_ms;
        uint64_t probe_timeout_ms;
        uint32_t suspicion_mult;
        uint64_t heartbeat_interval_ms;
        uint64_t election_timeout_ms;
        uint64_t lease_duration_ms;
    } cluster;
    struct {
        uint32_t max_concurrent;
        uint32_t downtime_ms;
        uint32_t streams;
        uint64_t bandwidth_bytes;           /* per second; 0 = unlimited */
        config_cipher_t cipher;
    } migration;
    config_interface_t interfaces[CONFIG_INTERFACES_MAX];
    size_t interface_count;

    /* Where each schema key's value came from, indexed like the schema. */
    uint8_t origin[CONFIG_KEYS_MAX];
} config_t;

/* Fills every key with its default. The agent name defaults to the hostname. */
void config_defaults(config_t *cfg);

/* Reads a config file on top of cfg. Returns 0, or a negative errno with a
 * message in err: -ENOENT etc. if the file cannot be read, -EFBIG if it is
 * larger than CONFIG_FILE_MAX, -EINVAL for bad content. */
int config_load_file(config_t *cfg, const char *path, char *err, size_t errlen);

/* The same, from memory. name is what error messages call the input. buf
 * need not be NUL-terminated and may hold any bytes. */
int config_load_buffer(config_t *cfg, const char *name, const void *buf, size_t len,
                       char *err, size_t errlen);

/* A command-line override. key is "section.key" ("ports.control",
 * "agent.name") or "interface.NAME.services"; value is parsed exactly as in
 * a file. Returns 0 or -EINVAL with a message. */
int config_set_option(config_t *cfg, const char *key, const char *value, char *err, size_t errlen);

/* Parses "section.key=value" (the form of --set) and calls config_set_option. */
int config_set_assignment(config_t *cfg, const char *assignment, char *err, size_t errlen);

/* Call once after the file and all overrides. Checks rules that span keys
 * (the five ports differ, timeouts are ordered sensibly) and fills in derived
 * values (join seeds without a port get ports.gossip). Returns 0 or -EINVAL. */
int config_finish(config_t *cfg, char *err, size_t errlen);

/* Writes the effective config as a file that loads back to the same values. */
int config_write(const config_t *cfg, FILE *out);

/* The interface section named name, or NULL. */
const config_interface_t *config_interface(const config_t *cfg, const char *name);

/* Nothing in config_t is allocated; this exists so callers need not know. */
static inline void config_free(config_t *cfg) { (void)cfg; }

/* --- the schema, read-only, for docs, tests and `ferryd --help-config` --- */

typedef enum {
    CONFIG_STRING,      /* text; some keys only allow name characters */
    CONFIG_UINT,        /* decimal, with a range */
    CONFIG_BOOL,        /* true/false, yes/no, on/off, 1/0 */
    CONFIG_DURATION,    /* 500ms, 2s, 5m, 1h; stored in milliseconds */
    CONFIG_SIZE,        /* 512M, 1G, 4096 (bytes); K/M/G/T are powers of 1024 */
    CONFIG_ADDRESS,     /* an IPv4 or IPv6 literal */
    CONFIG_ENDPOINTS,   /* comma list of host[:port], [v6]:port */
    CONFIG_CHOICE,      /* one word from a fixed list (log level, backend, ...) */
    CONFIG_SERVICES,    /* comma list of service names */
} config_type_t;

typedef struct {
    const char *section;
    const char *name;
    config_type_t type;
    const char *default_text;   /* as written in a file; "" for empty; NULL when
                                   computed at start (agent.name: the hostname) */
    const char *doc;
    uint64_t min, max;          /* CONFIG_UINT, _DURATION (ms), _SIZE (bytes) */
    const char *const *choices; /* CONFIG_CHOICE, NULL-terminated */
} config_key_info_t;

size_t config_key_count(void);
const config_key_info_t *config_key_at(size_t index);
/* The sections in file order ("agent", "ports", ...), NULL-terminated;
 * interface sections come after them. */
const char *const *config_sections(void);
const char *config_type_name(config_type_t type);

#endif
