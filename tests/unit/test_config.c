/* test_config.c - the config file parser, overrides, errors and the example file. */
#include <errno.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/rng.h"

/* --- helpers -------------------------------------------------------------------- */

static int load(config_t *cfg, const char *text, char *err, size_t errlen)
{
    return config_load_buffer(cfg, "t.conf", text, strlen(text), err, errlen);
}

/* config_write into a malloc'd string. */
static char *written(const config_t *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    assert_int_equal(config_write(cfg, out), 0);
    fclose(out);
    return text;
}

static void assert_printable(const char *s)
{
    for (; *s; s++)
        assert_true(*s >= 0x20 && *s < 0x7f);
}

static char *read_whole(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = malloc(CONFIG_FILE_MAX + 1);
    size_t n = fread(text, 1, CONFIG_FILE_MAX, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* A file of the source tree: $FERRY_SOURCE_DIR/rel, else relative to this file. */
static void source_path(char *out, size_t outlen, const char *rel)
{
    const char *root = getenv("FERRY_SOURCE_DIR");
    if (root && *root) {
        snprintf(out, outlen, "%s/%s", root, rel);
        return;
    }
    /* __FILE__ is .../tests/unit/test_config.c */
    char here[1024];
    snprintf(here, sizeof(here), "%s", __FILE__);
    char *cut = strstr(here, "tests/unit/test_config.c");
    if (cut)
        *cut = '\0';
    else
        snprintf(here, sizeof(here), "../");   /* relative __FILE__: run from build/ */
    snprintf(out, outlen, "%s%s", here, rel);
}

/* --- defaults ------------------------------------------------------------------- */

static void test_defaults(void **state)
{
    config_t cfg;
    config_defaults(&cfg);
    assert_int_equal(cfg.ports.control, 7400);
    assert_int_equal(cfg.ports.raft, 7401);
    assert_int_equal(cfg.ports.gossip, 7402);
    assert_int_equal(cfg.ports.migration, 7403);
    assert_int_equal(cfg.ports.http, 7480);
    assert_int_equal(cfg.agent.voters, 3);
    assert_int_equal(cfg.agent.backend, BACKEND_AUTO);
    assert_int_equal(cfg.agent.log_level, LOG_LEVEL_INFO);
    assert_string_equal(cfg.agent.cluster, "ferry");
    assert_string_equal(cfg.agent.state_dir, "/var/lib/ferry");
    assert_string_equal(cfg.agent.bind, "");
    assert_string_equal(cfg.agent.http_bind, "127.0.0.1");
    assert_int_equal(cfg.agent.join_count, 0);
    assert_int_equal(cfg.capacity.cpus, 0);
    assert_int_equal(cfg.capacity.memory_bytes, 0);
    assert_int_equal(cfg.migration.max_concurrent, 4);
    assert_int_equal(cfg.migration.downtime_ms, 100);
    assert_int_equal(cfg.migration.streams, 1);
    assert_int_equal(cfg.cluster.probe_interval_ms, 200);
    assert_int_equal(cfg.cluster.probe_timeout_ms, 100);
    assert_int_equal(cfg.cluster.lease_duration_ms, 10000);
    assert_int_equal(cfg.interface_count, 0);
    for (size_t i = 0; i < config_key_count(); i++)
        assert_int_equal(cfg.origin[i], CONFIG_FROM_DEFAULT);

    /* The name defaults to the hostname's first label. */
    char host[256] = "";
    assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
    host[strcspn(host, ".")] = '\0';
    if (*host)
        assert_string_equal(cfg.agent.name, host);

    /* The defaults are consistent across keys. */
    char err[512];
    assert_int_equal(config_finish(&cfg, err, sizeof(err)), 0);
}

/* Every schema default goes through the parser: setting it explicitly
 * changes nothing. */
static void test_every_default_parses(void **state)
{
    config_t defaults, cfg;
    config_defaults(&defaults);
    char *expected = written(&defaults);
    for (size_t i = 0; i < config_key_count(); i++) {
        const config_key_info_t *key = config_key_at(i);
        if (!key->default_text || strcmp(key->section, "interface") == 0)
            continue;
        char path[128], err[512];
        snprintf(path, sizeof(path), "%s.%s", key->section, key->name);
        cfg = defaults;
        assert_int_equal(config_set_option(&cfg, path, key->default_text, err, sizeof(err)), 0);
        char *got = written(&cfg);
        assert_string_equal(got, expected);
        free(got);
        assert_non_null(key->doc);
        assert_true(strlen(key->doc) > 10);
    }
    free(expected);
    assert_null(config_key_at(config_key_count()));
}

/* --- values of every type ----------------------------------------------------------- */

static void test_values_of_every_type(void **state)
{
    const char *text =
        "\xEF\xBB\xBF# a comment\n"
        "\n"
        "[agent]\r\n"
        "name = node-7   # inline comment\n"
        "cluster=\"lab\"\n"
        "state_dir = \"/srv/ferry # not a comment\"\n"
        "log_level = debug\n"
        "bind = 127.0.0.2\n"
        "http_bind = ::1\n"
        "join = 10.0.0.1:7000, seed.example.org, [fd00::1]:7402, fd00::2\n"
        "voters = 5\n"
        "backend = process\n"
        "  [ ports ]  # spaces are fine\n"
        "control = 7500\n"
        "[capacity]\n"
        "cpus = 16\n"
        "memory = 64G\n"
        "[cluster]\n"
        "probe_interval = 2s\n"
        "probe_timeout = 250ms\n"
        "election_timeout = 1m\n"
        "lease_duration = 5m\n"
        "[migration]\n"
        "bandwidth = 512MiB\n"
        "cipher = xchacha20-poly1305\n"
        "[interface eth0.100]\n"
        "services = vmotion , provisioning\n"
        "[interface lo]\n"
        "services = management,raft,gossip\n";
    config_t cfg;
    config_defaults(&cfg);
    char err[512] = "";
    int rc = load(&cfg, text, err, sizeof(err));
    assert_string_equal(err, "");
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.agent.name, "node-7");
    assert_string_equal(cfg.agent.cluster, "lab");
    assert_string_equal(cfg.agent.state_dir, "/srv/ferry # not a comment");
    assert_int_equal(cfg.agent.log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(cfg.agent.bind, "127.0.0.2");
    assert_string_equal(cfg.agent.http_bind, "::1");
    assert_int_equal(cfg.agent.join_count, 4);
    assert_string_equal(cfg.agent.join[0].host, "10.0.0.1");
    assert_int_equal(cfg.agent.join[0].port, 7000);
    assert_string_equal(cfg.agent.join[1].host, "seed.example.org");
    assert_int_equal(cfg.agent.join[1].port, 0);
    assert_string_equal(cfg.agent.join[2].host, "fd00::1");
    assert_int_equal(cfg.agent.join[2].port, 7402);
    assert_string_equal(cfg.agent.join[3].host, "fd00::2");
    assert_int_equal(cfg.agent.join[3].port, 0);
    assert_int_equal(cfg.agent.voters, 5);
    assert_int_equal(cfg.agent.backend, BACKEND_PROCESS);
    assert_int_equal(cfg.ports.control, 7500);
    assert_int_equal(cfg.ports.raft, 7401);
    assert_int_equal(cfg.capacity.cpus, 16);
    assert_int_equal(cfg.capacity.memory_bytes, 64ULL << 30);
    assert_int_equal(cfg.cluster.probe_interval_ms, 2000);
    assert_int_equal(cfg.cluster.probe_timeout_ms, 250);
    assert_int_equal(cfg.cluster.election_timeout_ms, 60000);
    assert_int_equal(cfg.cluster.lease_duration_ms, 300000);
    assert_int_equal(cfg.migration.bandwidth_bytes, 512ULL << 20);
    assert_int_equal(cfg.migration.cipher, CIPHER_XCHACHA20);
    assert_int_equal(cfg.interface_count, 2);
    const config_interface_t *vlan = config_interface(&cfg, "eth0.100");
    assert_non_null(vlan);
    assert_int_equal(vlan->services, SERVICE_VMOTION | SERVICE_PROVISIONING);
    assert_int_equal(vlan->origin, CONFIG_FROM_FILE);
    assert_int_equal(config_interface(&cfg, "lo")->services,
                     SERVICE_MANAGEMENT | SERVICE_RAFT | SERVICE_GOSSIP);
    assert_null(config_interface(&cfg, "eth1"));

    /* Seeds without a port get the gossip port. */
    assert_int_equal(config_finish(&cfg, err, sizeof(err)), 0);
    assert_int_equal(cfg.agent.join[1].port, 7402);
    assert_int_equal(cfg.agent.join[3].port, 7402);
    assert_int_equal(cfg.agent.join[0].port, 7000);
}

static void test_size_and_duration_forms(void **state)
{
    static const struct { const char *key, *value; uint64_t expect; } cases[] = {
        { "capacity.memory", "4096", 4096 },
        { "capacity.memory", "4096B", 4096 },
        { "capacity.memory", "2k", 2048 },
        { "capacity.memory", "2KB", 2048 },
        { "capacity.memory", "3M", 3ULL << 20 },
        { "capacity.memory", "1G", 1ULL << 30 },
        { "capacity.memory", "1GiB", 1ULL << 30 },
        { "capacity.memory", "2T", 2ULL << 40 },
        { "capacity.memory", "0", 0 },
        { "cluster.lease_duration", "250ms", 250 },
        { "cluster.lease_duration", "3s", 3000 },
        { "cluster.lease_duration", "2m", 120000 },
        { "cluster.election_timeout", "0", 0 },   /* in range? no: min is 10ms */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config_t cfg;
        config_defaults(&cfg);
        char err[512] = "";
        int rc = config_set_option(&cfg, cases[i].key, cases[i].value, err, sizeof(err));
        if (strcmp(cases[i].key, "capacity.memory") == 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(cfg.capacity.memory_bytes, cases[i].expect);
        } else if (strcmp(cases[i].key, "cluster.lease_duration") == 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(cfg.cluster.lease_duration_ms, cases[i].expect);
        } else {
            assert_int_equal(rc, -EINVAL);
            assert_string_equal(err, "command line: [cluster] election_timeout: \"0\" is out of "
                                     "range (10ms..1m)");
        }
    }
}

/* --- errors name the file, the line and the key ----------------------------------------- */

typedef struct {
    const char *text;
    const char *expect;    /* the whole message */
} error_case_t;

static void test_error_messages(void **state)
{
    static const error_case_t cases[] = {
        /* value out of range: the format promised to operators */
        { "[agent]\nvoters = 3\n[ports]\ncontrol = 70000\n",
          "t.conf:4: [ports] control: \"70000\" is out of range (1..65535)" },
        { "[ports]\ncontrol = 0\n", "t.conf:2: [ports] control: \"0\" is out of range (1..65535)" },
        { "[ports]\ncontrol = -1\n", "t.conf:2: [ports] control: \"-1\" is not a number" },
        { "[ports]\ncontrol = 99999999999999999999999\n",
          "t.conf:2: [ports] control: \"99999999999999999999999\" is not a number" },
        { "[ports]\ncontrol =\n", "t.conf:2: [ports] control: \"\" is not a number" },
        { "[agent]\nvoters = 10\n", "t.conf:2: [agent] voters: \"10\" is out of range (1..9)" },
        /* wrong type */
        { "[cluster]\nprobe_interval = 5\n",
          "t.conf:2: [cluster] probe_interval: \"5\" is not a duration (write e.g. 500ms, 2s, 5m, 1h)" },
        { "[cluster]\nprobe_interval = 2 s\n",
          "t.conf:2: [cluster] probe_interval: \"2 s\" is not a duration (write e.g. 500ms, 2s, 5m, 1h)" },
        { "[cluster]\nprobe_interval = 2h\n",
          "t.conf:2: [cluster] probe_interval: \"2h\" is out of range (10ms..1m)" },
        { "[capacity]\nmemory = 1X\n",
          "t.conf:2: [capacity] memory: \"1X\" is not a size (write e.g. 4096, 512M, 16G)" },
        { "[capacity]\nmemory = 99999999999T\n",
          "t.conf:2: [capacity] memory: \"99999999999T\" is not a size (write e.g. 4096, 512M, 16G)" },
        { "[capacity]\nmemory = 2048T\n",
          "t.conf:2: [capacity] memory: \"2048T\" is out of range (0..1024T)" },
        { "[agent]\nbackend = xen\n",
          "t.conf:2: [agent] backend: \"xen\" is not one of: auto, kvm, process" },
        { "[agent]\nlog_level = loud\n",
          "t.conf:2: [agent] log_level: \"loud\" is not one of: debug, info, warn, error, off" },
        { "[agent]\nbind = localhost\n",
          "t.conf:2: [agent] bind: \"localhost\" is not an IPv4 or IPv6 address" },
        { "[agent]\njoin = a:1, b:0\n",
          "t.conf:2: [agent] join: seed \"b\": port \"0\" is not in 1..65535" },
        { "[agent]\njoin = a:1,,b\n",
          "t.conf:2: [agent] join: empty item in the list (two commas, or a trailing comma?)" },
        { "[agent]\njoin = -bad-:7\n",
          "t.conf:2: [agent] join: seed \"-bad-:7\" is not host, host:port or [ipv6]:port" },
        { "[agent]\njoin = [10.0.0.1]:7\n",
          "t.conf:2: [agent] join: seed \"[10.0.0.1]:7\" is not host, host:port or [ipv6]:port" },
        { "[agent]\njoin = a,b,c,d,e,f,g,h,i,j,k,l,m,n,o,p,q\n",
          "t.conf:2: [agent] join: more than 16 seeds" },
        { "[agent]\nname = my host\n",
          "t.conf:2: [agent] name: \"my host\": character \" \" is not allowed (use letters, "
          "digits, '.', '_', '-')" },
        { "[agent]\nname =\n", "t.conf:2: [agent] name: must not be empty" },
        { "[agent]\ncluster = \"lab\n", "t.conf:2: [agent] cluster: unbalanced quotes" },
        { "[agent]\nstate_dir = \"/a\" b\n", "t.conf:2: [agent] state_dir: unbalanced quotes" },
        { "[interface eth0]\nservices = management, nfs\n",
          "t.conf:2: [interface eth0] services: unknown service \"nfs\" (known: management, "
          "vmotion, provisioning, raft, gossip)" },
        { "[interface eth0]\nservices = vmotion,\n",
          "t.conf:2: [interface eth0] services: empty item in the list (two commas, or a "
          "trailing comma?)" },
        /* unknown key */
        { "[ports]\ncontrol = 1\ncontol = 2\n",
          "t.conf:3: [ports] \"contol\": unknown key (known: control, raft, gossip, migration, http)" },
        { "[interface eth0]\nmtu = 9000\n",
          "t.conf:2: [interface eth0] \"mtu\": unknown key (known: services)" },
        /* key set twice */
        { "[ports]\ncontrol = 1\n\n[ports]\ncontrol = 2\n",
          "t.conf:5: [ports] control: set twice (first on line 2)" },
        { "[interface eth0]\nservices = vmotion\n[interface eth0]\nservices = raft\n",
          "t.conf:4: [interface eth0] services: set twice (first on line 2)" },
        /* syntax */
        { "[agent]\nname\n", "t.conf:2: \"name\": expected \"key = value\" or \"[section]\"" },
        { "name = x\n", "t.conf:1: \"name\": key outside a section (start with e.g. [agent])" },
        { "[agent\n", "t.conf:1: \"[agent\": section header has no closing ']'" },
        { "[agent] x\n", "t.conf:1: \"x\": unexpected text after the section header" },
        { "[agnet]\n", "t.conf:1: unknown section \"agnet\" (known: agent, ports, capacity, "
                       "cluster, migration, interface NAME)" },
        { "[interface]\n", "t.conf:1: [interface]: name the interface, e.g. [interface eth0]" },
        { "[interface a/b]\n", "t.conf:1: [interface]: \"a/b\" is not an interface name "
                               "(1..15 printable characters, none of / ] \" #)" },
        { "[interface abcdefghijklmnop]\n",
          "t.conf:1: [interface]: \"abcdefghijklmnop\" is not an interface name "
          "(1..15 printable characters, none of / ] \" #)" },
        /* binary bytes are shown escaped */
        { "[agent]\nname = \x01\xff\n",
          "t.conf:2: [agent] name: \"\\x01\\xff\": character \"\\x01\" is not allowed (use "
          "letters, digits, '.', '_', '-')" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config_t cfg, before;
        config_defaults(&cfg);
        before = cfg;
        char err[512] = "";
        int rc = load(&cfg, cases[i].text, err, sizeof(err));
        if (rc != -EINVAL || strcmp(err, cases[i].expect) != 0)
            fail_msg("case %zu:\n  input %s\n  got   %d %s\n  want  %s", i, cases[i].text, rc, err,
                     cases[i].expect);
        /* A failed load leaves the config as it was. */
        assert_memory_equal(&cfg, &before, sizeof(cfg));
    }
}

static void test_bounds(void **state)
{
    config_t cfg;
    config_defaults(&cfg);
    char err[512];

    /* a line one byte over the limit */
    size_t n = CONFIG_LINE_MAX + 1;
    char *text = malloc(n + 32);
    strcpy(text, "[agent]\n# ");
    memset(text + 10, 'x', n - 2);
    text[8 + n] = '\0';
    assert_int_equal(load(&cfg, text, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:2: line is longer than 4096 bytes");
    /* exactly at the limit is fine */
    text[8 + n - 1] = '\0';
    assert_int_equal(load(&cfg, text, err, sizeof(err)), 0);
    free(text);

    /* too many lines */
    size_t lines = CONFIG_LINES_MAX + 1;
    text = malloc(lines + 1);
    memset(text, '\n', lines);
    text[lines] = '\0';
    assert_int_equal(load(&cfg, text, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:10001: more than 10000 lines");
    text[lines - 1] = '\0';
    assert_int_equal(load(&cfg, text, err, sizeof(err)), 0);
    free(text);

    /* a NUL byte */
    static const char nul[] = "[agent]\nname = a\0b\n";
    assert_int_equal(config_load_buffer(&cfg, "t.conf", nul, sizeof(nul) - 1, err, sizeof(err)),
                     -EINVAL);
    assert_string_equal(err, "t.conf:2: line holds a NUL byte (is this a binary file?)");

    /* a buffer over the size limit */
    char *big = calloc(1, CONFIG_FILE_MAX + 1);
    assert_int_equal(config_load_buffer(&cfg, "t.conf", big, CONFIG_FILE_MAX + 1, err, sizeof(err)),
                     -EFBIG);
    assert_string_equal(err, "t.conf: larger than 1048576 bytes");
    free(big);

    /* too many interfaces */
    char *many = malloc(64 * (CONFIG_INTERFACES_MAX + 1));
    many[0] = '\0';
    for (int i = 0; i <= CONFIG_INTERFACES_MAX; i++)
        sprintf(many + strlen(many), "[interface if%d]\n", i);
    assert_int_equal(load(&cfg, many, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:33: [interface if32]: more than 32 interface sections");
    free(many);

    /* err may be NULL */
    assert_int_equal(load(&cfg, "[nope]\n", NULL, 0), -EINVAL);
}

static void test_file_errors(void **state)
{
    config_t cfg;
    config_defaults(&cfg);
    char err[512];
    assert_int_equal(config_load_file(&cfg, "/nonexistent/ferry.conf", err, sizeof(err)), -ENOENT);
    assert_string_equal(err, "/nonexistent/ferry.conf: cannot open: No such file or directory");
    assert_true(config_load_file(&cfg, "/", err, sizeof(err)) < 0);
    assert_string_equal(err, "/: not a regular file");

    char path[] = "/tmp/ferry-test-config-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[ports]\n\nhttp = 8080\nraft = x\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_int_equal(config_load_file(&cfg, path, err, sizeof(err)), -EINVAL);
    char expect[600];
    snprintf(expect, sizeof(expect), "%s:4: [ports] raft: \"x\" is not a number", path);
    assert_string_equal(err, expect);
    assert_int_equal(cfg.ports.http, 7480);   /* untouched */
    unlink(path);
}

/* --- command-line overrides ---------------------------------------------------------------- */

static void test_overrides_win(void **state)
{
    const char *file = "[ports]\ncontrol = 7600\nraft = 7601\n[agent]\nname = fromfile\n"
                       "[interface eth0]\nservices = vmotion\n";
    char err[512];

    /* file first, then the command line */
    config_t a;
    config_defaults(&a);
    assert_int_equal(load(&a, file, err, sizeof(err)), 0);
    assert_int_equal(config_set_option(&a, "ports.control", "7500", err, sizeof(err)), 0);
    assert_int_equal(config_set_assignment(&a, "agent.name=fromflag", err, sizeof(err)), 0);
    assert_int_equal(config_set_option(&a, "interface.eth0.services", "management", err, sizeof(err)), 0);

    /* command line first, then the file */
    config_t b;
    config_defaults(&b);
    assert_int_equal(config_set_option(&b, "ports.control", "7500", err, sizeof(err)), 0);
    assert_int_equal(config_set_assignment(&b, " agent.name = fromflag", err, sizeof(err)), 0);
    assert_int_equal(config_set_option(&b, "interface.eth0.services", "management", err, sizeof(err)), 0);
    assert_int_equal(load(&b, file, err, sizeof(err)), 0);

    config_t *both[] = { &a, &b };
    for (int k = 0; k < 2; k++) {
        config_t *cfg = both[k];
        assert_int_equal(cfg->ports.control, 7500);
        assert_int_equal(cfg->ports.raft, 7601);
        assert_string_equal(cfg->agent.name, "fromflag");
        assert_int_equal(config_interface(cfg, "eth0")->services, SERVICE_MANAGEMENT);
        assert_int_equal(config_interface(cfg, "eth0")->origin, CONFIG_FROM_COMMAND_LINE);
        assert_int_equal(cfg->interface_count, 1);
    }
    char *wa = written(&a), *wb = written(&b);
    assert_string_equal(wa, wb);
    free(wa);
    free(wb);

    /* origins */
    for (size_t i = 0; i < config_key_count(); i++) {
        const config_key_info_t *key = config_key_at(i);
        int expect = CONFIG_FROM_DEFAULT;
        if (strcmp(key->section, "ports") == 0 && strcmp(key->name, "raft") == 0)
            expect = CONFIG_FROM_FILE;
        if ((strcmp(key->section, "ports") == 0 && strcmp(key->name, "control") == 0)
            || (strcmp(key->section, "agent") == 0 && strcmp(key->name, "name") == 0))
            expect = CONFIG_FROM_COMMAND_LINE;
        assert_int_equal(b.origin[i], expect);
    }

    /* A pinned key's value in the file is still checked. */
    config_t c = b;
    assert_int_equal(load(&c, "[ports]\ncontrol = 99999\n", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "t.conf:2: [ports] control: \"99999\" is out of range (1..65535)");
}

static void test_override_errors(void **state)
{
    static const struct { const char *key, *value, *expect; } cases[] = {
        { "ports.control", "70000",
          "command line: [ports] control: \"70000\" is out of range (1..65535)" },
        { "ports.contol", "1",
          "command line: [ports] \"contol\": unknown key (known: control, raft, gossip, migration, http)" },
        { "port.control", "1",
          "command line: unknown section \"port\" (known: agent, ports, capacity, cluster, "
          "migration, interface.NAME)" },
        { "control", "1", "command line: \"control\": expected section.key, e.g. ports.control or "
                          "interface.eth0.services" },
        { ".control", "1", "command line: \".control\": expected section.key, e.g. ports.control or "
                           "interface.eth0.services" },
        { "interface.services", "vmotion",
          "command line: \"interface.services\": expected section.key, e.g. ports.control or "
          "interface.eth0.services" },
        { "a.b.c", "1", "command line: \"a.b.c\": expected section.key, e.g. ports.control or "
                        "interface.eth0.services" },
        { "interface.eth0.speed", "1",
          "command line: [interface eth0] \"speed\": unknown key (known: services)" },
        { "interface.eth0.services", "nfs",
          "command line: [interface eth0] services: unknown service \"nfs\" (known: management, "
          "vmotion, provisioning, raft, gossip)" },
        { "agent.join", "x:y", "command line: [agent] join: seed \"x\": port \"y\" is not in 1..65535" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config_t cfg, before;
        config_defaults(&cfg);
        before = cfg;
        char err[512] = "";
        int rc = config_set_option(&cfg, cases[i].key, cases[i].value, err, sizeof(err));
        if (rc != -EINVAL || strcmp(err, cases[i].expect) != 0)
            fail_msg("case %zu: got %d %s\n  want %s", i, rc, err, cases[i].expect);
        assert_memory_equal(&cfg, &before, sizeof(cfg));
    }
    config_t cfg;
    config_defaults(&cfg);
    char err[512];
    assert_int_equal(config_set_assignment(&cfg, "ports.control", err, sizeof(err)), -EINVAL);
    assert_string_equal(err, "command line: \"ports.control\": expected section.key=value");
    assert_int_equal(config_set_option(&cfg, NULL, "1", err, sizeof(err)), -EINVAL);
    /* A list given on the command line replaces the file's list. */
    assert_int_equal(load(&cfg, "[agent]\njoin = a, b, c\n", err, sizeof(err)), 0);
    assert_int_equal(config_set_option(&cfg, "agent.join", "d:1", err, sizeof(err)), 0);
    assert_int_equal(cfg.agent.join_count, 1);
    assert_string_equal(cfg.agent.join[0].host, "d");
}

/* --- rules across keys ---------------------------------------------------------------------- */

static void test_finish(void **state)
{
    static const struct { const char *assignment, *expect; } cases[] = {
        { "ports.http=7401", "[ports] http: 7401 is also [ports] raft; each port must differ" },
        { "ports.gossip=7400", "[ports] gossip: 7400 is also [ports] control; each port must differ" },
        { "cluster.probe_timeout=200ms", "[cluster] probe_timeout: 200ms must be below probe_interval (200ms)" },
        { "cluster.heartbeat_interval=500ms",
          "[cluster] heartbeat_interval: 500ms must be below half of election_timeout (100ms)" },
        { "cluster.lease_duration=100ms",
          "[cluster] lease_duration: 100ms must be above election_timeout (100ms)" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        config_t cfg;
        config_defaults(&cfg);
        char err[512];
        assert_int_equal(config_set_assignment(&cfg, cases[i].assignment, err, sizeof(err)), 0);
        assert_int_equal(config_finish(&cfg, err, sizeof(err)), -EINVAL);
        assert_string_equal(err, cases[i].expect);
    }
}

/* --- the example file and the docs ------------------------------------------------------------ */

/* True if text has a line "key = ..." or "# key = ..." in section (for the
 * interface key: after a line "[interface ...]", commented or not). */
static bool documents_key(const char *text, const char *section, const char *key)
{
    char current[64] = "";
    for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        const char *p = line;
        while (*p == '#' || *p == ' ')
            p++;
        /* a header is "[word ...]" alone on its line */
        size_t header = *p == '[' ? strcspn(p, "]\n") : 0;
        if (header && p[header] == ']' && (p[header + 1] == '\n' || p[header + 1] == '\0')) {
            size_t n = strcspn(p + 1, " ]");
            snprintf(current, sizeof(current), "%.*s", (int)n, p + 1);
            continue;
        }
        size_t klen = strlen(key);
        if (strcmp(current, section) == 0 && strncmp(p, key, klen) == 0) {
            const char *q = p + klen;
            while (*q == ' ')
                q++;
            if (*q == '=')
                return true;
        }
    }
    return false;
}

static void test_example_file(void **state)
{
    char path[1024];
    source_path(path, sizeof(path), "deploy/ferry.conf.example");
    char *text = read_whole(path);
    if (!text)
        fail_msg("cannot read %s (set FERRY_SOURCE_DIR)", path);

    config_t cfg;
    config_defaults(&cfg);
    char err[512] = "";
    int rc = config_load_file(&cfg, path, err, sizeof(err));
    if (rc != 0)
        fail_msg("the example does not load: %s", err);
    assert_int_equal(config_finish(&cfg, err, sizeof(err)), 0);

    for (size_t i = 0; i < config_key_count(); i++) {
        const config_key_info_t *key = config_key_at(i);
        if (!documents_key(text, key->section, key->name))
            fail_msg("%s does not document [%s] %s", path, key->section, key->name);
    }
    /* The example's uncommented values are the defaults. */
    config_t defaults;
    config_defaults(&defaults);
    char *a = written(&cfg), *b = written(&defaults);
    assert_string_equal(a, b);
    free(a);
    free(b);
    free(text);

    /* Uncommenting the commented-out examples still loads. */
    text = read_whole(path);
    for (char *line = text; line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL)
        if (strncmp(line, "# [interface eth", 16) == 0 || strncmp(line, "# services =", 12) == 0
            || strncmp(line, "# name =", 8) == 0)
            *line = ' ';
    config_defaults(&cfg);
    rc = config_load_buffer(&cfg, "uncommented", text, strlen(text), err, sizeof(err));
    if (rc != 0)
        fail_msg("the uncommented example does not load: %s", err);
    assert_int_equal(cfg.interface_count, 2);
    assert_int_equal(config_interface(&cfg, "eth1")->services, SERVICE_VMOTION | SERVICE_PROVISIONING);
    assert_string_equal(cfg.agent.name, "host1");
    free(text);
}

static void test_docs_cover_every_key(void **state)
{
    char path[1024];
    source_path(path, sizeof(path), "docs/configuration.md");
    char *text = read_whole(path);
    if (!text)
        fail_msg("cannot read %s", path);
    for (size_t i = 0; i < config_key_count(); i++) {
        const config_key_info_t *key = config_key_at(i);
        char ref[128];
        if (strcmp(key->section, "interface") == 0)
            snprintf(ref, sizeof(ref), "`interface.NAME.%s`", key->name);
        else
            snprintf(ref, sizeof(ref), "`%s.%s`", key->section, key->name);
        if (!strstr(text, ref))
            fail_msg("%s does not document %s", path, ref);
    }
    free(text);
}

/* --- round trip and garbage --------------------------------------------------------------------- */

/* A random valid value for key, as text. */
static void random_value(rng_t *rng, const config_key_info_t *key, char *out, size_t outlen)
{
    static const char *const hosts[] = { "10.0.0.1", "seed-1.example", "fd00::7", "h" };
    static const char *const services[] = { "management", "vmotion", "provisioning", "raft", "gossip" };
    uint64_t span = key->max - key->min;
    switch (key->type) {
    case CONFIG_STRING:
        snprintf(out, outlen, "n%" PRIu64 "-x.y", rng_below(rng, 100000));
        break;
    case CONFIG_UINT:
        snprintf(out, outlen, "%" PRIu64, key->min + rng_below(rng, span + 1));
        break;
    case CONFIG_DURATION:
        snprintf(out, outlen, "%" PRIu64 "ms", key->min + rng_below(rng, span + 1));
        break;
    case CONFIG_SIZE:
        snprintf(out, outlen, "%" PRIu64 "%s", rng_below(rng, 1000), rng_below(rng, 2) ? "M" : "K");
        break;
    case CONFIG_BOOL:
        snprintf(out, outlen, "%s", rng_below(rng, 2) ? "yes" : "off");
        break;
    case CONFIG_ADDRESS:
        snprintf(out, outlen, "%s", rng_below(rng, 2) ? "127.0.0.9" : "::1");
        break;
    case CONFIG_CHOICE: {
        size_t n = 0;
        while (key->choices[n])
            n++;
        snprintf(out, outlen, "%s", key->choices[rng_below(rng, n)]);
        break;
    }
    case CONFIG_ENDPOINTS:
    case CONFIG_SERVICES: {
        size_t count = rng_below(rng, 4);
        out[0] = '\0';
        for (size_t i = 0; i < count; i++) {
            char item[64];
            if (key->type == CONFIG_SERVICES)
                snprintf(item, sizeof(item), "%s", services[rng_below(rng, 5)]);
            else if (rng_below(rng, 2))
                snprintf(item, sizeof(item), "%s", hosts[rng_below(rng, 4)]);
            else if (strchr(hosts[i % 4], ':'))
                snprintf(item, sizeof(item), "[%s]:%d", hosts[i % 4], 1 + (int)rng_below(rng, 65535));
            else
                snprintf(item, sizeof(item), "%s:%d", hosts[i % 4], 1 + (int)rng_below(rng, 65535));
            snprintf(out + strlen(out), outlen - strlen(out), "%s%s", i ? "," : "", item);
        }
        break;
    }
    }
}

static void test_write_round_trip(void **state)
{
    for (uint64_t seed = 1; seed <= 200; seed++) {
        rng_t rng;
        rng_seed(&rng, seed);
        config_t cfg;
        config_defaults(&cfg);
        char err[512], value[512], path[128];
        for (size_t i = 0; i < config_key_count(); i++) {
            const config_key_info_t *key = config_key_at(i);
            if (rng_below(&rng, 2))
                continue;
            random_value(&rng, key, value, sizeof(value));
            if (strcmp(key->section, "interface") == 0)
                snprintf(path, sizeof(path), "interface.eth%d.services", (int)rng_below(&rng, 3));
            else
                snprintf(path, sizeof(path), "%s.%s", key->section, key->name);
            if (config_set_option(&cfg, path, value, err, sizeof(err)) != 0)
                fail_msg("seed %" PRIu64 ": %s=%s: %s", seed, path, value, err);
        }
        char *first = written(&cfg);
        config_t again;
        config_defaults(&again);
        if (config_load_buffer(&again, "written", first, strlen(first), err, sizeof(err)) != 0)
            fail_msg("seed %" PRIu64 ": written config does not load: %s\n%s", seed, err, first);
        char *second = written(&again);
        assert_string_equal(first, second);
        free(first);
        free(second);
    }
}

/* Loads bytes; whatever happens, no crash, and an error is one printable
 * line naming the input, with the config left as it was. */
static void load_garbage(const void *bytes, size_t len)
{
    config_t cfg, before;
    config_defaults(&cfg);
    before = cfg;
    char err[512] = "";
    int rc = config_load_buffer(&cfg, "junk", bytes, len, err, sizeof(err));
    if (rc == 0)
        return;
    assert_int_equal(rc, -EINVAL);
    assert_true(strncmp(err, "junk:", 5) == 0);
    assert_printable(err);
    assert_memory_equal(&cfg, &before, sizeof(cfg));
}

static void test_garbage(void **state)
{
    rng_t rng;
    rng_seed(&rng, 42);
    unsigned char buf[2048];
    for (int round = 0; round < 2000; round++) {
        size_t len = rng_below(&rng, sizeof(buf));
        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)rng_next(&rng);
        load_garbage(buf, len);
        /* printable garbage gets further into the parser */
        static const char alphabet[] = "[]=#\" \t\n,:.abcdeinrst0123456789msGK";
        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)alphabet[rng_below(&rng, sizeof(alphabet) - 1)];
        load_garbage(buf, len);
    }

    /* every truncation and random corruptions of the example */
    char path[1024];
    source_path(path, sizeof(path), "deploy/ferry.conf.example");
    char *text = read_whole(path);
    assert_non_null(text);
    size_t n = strlen(text);
    for (size_t cut = 0; cut <= n; cut++)
        load_garbage(text, cut);
    char *copy = malloc(n);
    for (int round = 0; round < 2000; round++) {
        memcpy(copy, text, n);
        for (int flips = 1 + (int)rng_below(&rng, 4); flips > 0; flips--)
            copy[rng_below(&rng, n)] ^= (char)(1u << rng_below(&rng, 8));
        load_garbage(copy, n);
    }
    free(copy);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_every_default_parses),
        cmocka_unit_test(test_values_of_every_type),
        cmocka_unit_test(test_size_and_duration_forms),
        cmocka_unit_test(test_error_messages),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_overrides_win),
        cmocka_unit_test(test_override_errors),
        cmocka_unit_test(test_finish),
        cmocka_unit_test(test_example_file),
        cmocka_unit_test(test_docs_cover_every_key),
        cmocka_unit_test(test_write_round_trip),
        cmocka_unit_test(test_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
