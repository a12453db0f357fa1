/* test_migration_plan.c - the migration preflight, rule by rule, over a
 * real FSM filled through its own commands; and the network choice over a
 * fake host's interfaces. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ifaddrs.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "agent/migration_plan.h"

#define NOW_MS 1000000ull
#define GiB (1024ull * 1024 * 1024)

typedef struct {
    fsm_t *fsm;
    uint64_t index;
} world_t;

static void apply(world_t *w, void (*build)(msgpack_packer *, void *), void *arg)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    build(&pk, arg);
    fsm_result_t result;
    assert_int_equal(fsm_apply(w->fsm, ++w->index, (const uint8_t *)buf.data, buf.size, &result), FSM_OK);
    msgpack_sbuffer_destroy(&buf);
}

typedef struct { const char *name; uint32_t cpus; uint64_t memory; } host_arg_t;
static void build_host(msgpack_packer *pk, void *a)
{
    host_arg_t *h = a;
    fsm_cmd_host_register(pk, h->name, h->cpus, h->memory, true);
}
static void build_lease(msgpack_packer *pk, void *a) { fsm_cmd_lease_renew(pk, a, NOW_MS + 10000); }
static void build_vm(msgpack_packer *pk, void *a) { fsm_cmd_vm_create(pk, a); }
static void build_on(msgpack_packer *pk, void *a) { fsm_cmd_vm_set_power(pk, a, FSM_POWER_ON); }
static void build_rule(msgpack_packer *pk, void *a) { fsm_cmd_rule_set(pk, a); }
static void build_device(msgpack_packer *pk, void *a) { fsm_cmd_device_allocate(pk, "gpu0", "h1", a); }

static void add_host(world_t *w, const char *name, uint32_t cpus, uint64_t memory, bool leased)
{
    host_arg_t h = { name, cpus, memory };
    apply(w, build_host, &h);
    if (leased)
        apply(w, build_lease, (void *)name);
}

static void add_vm(world_t *w, const char *name, const char *owner, uint64_t memory, uint32_t vcpus, bool on)
{
    fsm_vm_t spec = { .memory_bytes = memory, .vcpus = vcpus, .power = FSM_POWER_OFF, .downtime_ms = 100 };
    snprintf(spec.name, sizeof(spec.name), "%s", name);
    snprintf(spec.owner, sizeof(spec.owner), "%s", owner);
    snprintf(spec.profile, sizeof(spec.profile), "idle");
    apply(w, build_vm, &spec);
    if (on)
        apply(w, build_on, (void *)name);
}

static int setup(void **state)
{
    static world_t w;
    w.fsm = fsm_new();
    w.index = 0;
    add_host(&w, "h1", 4, 8 * GiB, true);
    add_host(&w, "h2", 2, 4 * GiB, true);
    add_host(&w, "h3", 4, 8 * GiB, false);   /* never held a lease */
    add_vm(&w, "web1", "h1", 1 * GiB, 1, true);
    *state = &w;
    return 0;
}

static int teardown(void **state)
{
    world_t *w = *state;
    fsm_destroy(&w->fsm);
    return 0;
}

/* Runs the preflight; returns its verdict with why/warning. */
static int check(world_t *w, const char *vm, const char *source, const char *destination, bool live, char *why,
                 char *warning)
{
    migration_plan_input_t in = { .fsm = w->fsm, .vm = vm, .source = source, .destination = destination,
                                  .live = live, .now_ms = NOW_MS };
    why[0] = '\0';
    return migration_preflight(&in, why, 256, warning, 256);
}

static void expect_refused(world_t *w, const char *vm, const char *source, const char *destination, bool live,
                           const char *expected)
{
    char why[256], warning[256];
    assert_int_equal(check(w, vm, source, destination, live, why, warning), -1);
    if (!strstr(why, expected))
        fail_msg("expected '%s' in: %s", expected, why);
}

static void test_allowed_move(void **state)
{
    char why[256], warning[256];
    assert_int_equal(check(*state, "web1", "h1", "h2", true, why, warning), 0);
    assert_string_equal(warning, "");
}

static void test_ownership_and_hosts(void **state)
{
    expect_refused(*state, "ghost", "h1", "h2", true, "no VM named 'ghost'");
    expect_refused(*state, "web1", "h2", "h1", true, "owned by h1, not h2");
    expect_refused(*state, "web1", "h1", "h1", true, "on h1 already");
    expect_refused(*state, "web1", "h1", "h9", true, "no host named 'h9'");
    expect_refused(*state, "web1", "h1", "h3", true, "no valid lease");
}

static void test_power_decides_the_kind(void **state)
{
    world_t *w = *state;
    expect_refused(w, "web1", "h1", "h2", false, "powered on: a cold migration needs it off");
    add_vm(w, "off1", "h1", 1 * GiB, 1, false);
    expect_refused(w, "off1", "h1", "h2", true, "powered off: a live migration needs it running");
    char why[256], warning[256];
    assert_int_equal(check(w, "off1", "h1", "h2", false, why, warning), 0);
}

static void test_capacity(void **state)
{
    world_t *w = *state;
    /* h2 holds 4 GiB; 3.5 GiB of powered-on VMs leave 0.5 GiB. */
    add_vm(w, "fat", "h2", 3 * GiB + GiB / 2, 1, true);
    expect_refused(w, "web1", "h1", "h2", true, "h2 has 512 MiB of memory free, VM web1 needs 1024 MiB");
    add_vm(w, "wide", "h1", GiB / 4, 3, true);
    add_vm(w, "parked", "h2", 2 * GiB, 1, false);   /* powered off: takes nothing */
    expect_refused(w, "wide", "h1", "h2", true, "h2 has 2 CPUs, VM wide has 3 vCPUs");
}

static void test_devices(void **state)
{
    world_t *w = *state;
    apply(w, build_device, "web1");
    expect_refused(w, "web1", "h1", "h2", true, "holds device gpu0 of host h1");
}

static void test_rules(void **state)
{
    world_t *w = *state;
    add_vm(w, "web2", "h2", GiB / 4, 1, true);
    add_vm(w, "db1", "h1", GiB / 4, 1, true);
    fsm_rule_t apart = { .anti = true, .vm_count = 2 };
    snprintf(apart.name, sizeof(apart.name), "spread");
    snprintf(apart.vms[0], sizeof(apart.vms[0]), "web1");
    snprintf(apart.vms[1], sizeof(apart.vms[1]), "web2");
    apply(w, build_rule, &apart);
    expect_refused(w, "web1", "h1", "h2", true, "anti-affinity rule 'spread' keeps web1 apart from web2");
    fsm_rule_t together = { .anti = false, .vm_count = 2 };
    snprintf(together.name, sizeof(together.name), "pair");
    snprintf(together.vms[0], sizeof(together.vms[0]), "db1");
    snprintf(together.vms[1], sizeof(together.vms[1]), "web1");
    apply(w, build_rule, &together);
    char why[256], warning[256];
    assert_int_equal(check(w, "db1", "h1", "h2", true, why, warning), 0);
    if (!strstr(warning, "affinity rule 'pair' keeps db1 with web1, which stays on h1"))
        fail_msg("no affinity warning: '%s'", warning);
}

/* --- the network choice ---------------------------------------------------- */

static struct sockaddr_in addrs[4], masks[4];
static struct ifaddrs entries[4];

static void fake_iface(int i, const char *name, const char *address)
{
    addrs[i] = (struct sockaddr_in){ .sin_family = AF_INET };
    inet_pton(AF_INET, address, &addrs[i].sin_addr);
    masks[i] = (struct sockaddr_in){ .sin_family = AF_INET };
    inet_pton(AF_INET, "255.255.255.0", &masks[i].sin_addr);
    entries[i] = (struct ifaddrs){ .ifa_name = (char *)name, .ifa_flags = 1 /* IFF_UP */,
                                   .ifa_addr = (struct sockaddr *)&addrs[i],
                                   .ifa_netmask = (struct sockaddr *)&masks[i] };
    if (i > 0)
        entries[i - 1].ifa_next = &entries[i];
}

static inventory_t *fake_host(const char *config_text)
{
    fake_iface(0, "lo", "127.0.0.1");
    fake_iface(1, "eth0", "198.18.1.5");
    fake_iface(2, "eth1", "198.18.2.5");
    fake_iface(3, "eth2", "198.18.3.5");
    entries[3].ifa_next = NULL;
    static config_t cfg;
    config_defaults(&cfg);
    char path[] = "/tmp/ferry-plan-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, config_text, strlen(config_text)), (ssize_t)strlen(config_text));
    close(fd);
    char err[256];
    if (config_load_file(&cfg, path, err, sizeof(err)) != 0)
        fail_msg("%s", err);
    unlink(path);
    inventory_source_t src = { .ifaddrs = &entries[0], .hostname = "h1" };
    inventory_t *inv = inventory_new_from(&cfg, &src, err, sizeof(err));
    if (!inv)
        fail_msg("%s", err);
    return inv;
}

static void test_network_tagged(void **state)
{
    inventory_t *inv = fake_host("[interface eth0]\nservices = management\n[interface eth1]\nservices = vmotion\n"
                                 "[interface eth2]\nservices = provisioning\n");
    migration_network_t net;
    char why[128];
    assert_int_equal(migration_network_pick(inv, "", true, &net, why, sizeof(why)), 0);
    assert_string_equal(net.network, "vmotion");
    assert_string_equal(net.interface, "eth1");
    assert_string_equal(net.address, "198.18.2.5");
    assert_false(net.fallback);
    assert_int_equal(migration_network_pick(inv, "", false, &net, why, sizeof(why)), 0);
    assert_string_equal(net.network, "provisioning");
    assert_string_equal(net.interface, "eth2");
    assert_string_equal(net.address, "198.18.3.5");
    inventory_destroy(&inv);
}

static void test_network_fallback(void **state)
{
    inventory_t *inv = fake_host("[interface eth0]\nservices = management\n");
    migration_network_t net;
    char why[128];
    assert_int_equal(migration_network_pick(inv, "", true, &net, why, sizeof(why)), 0);
    assert_string_equal(net.network, "management");
    assert_string_equal(net.interface, "eth0");
    assert_string_equal(net.address, "198.18.1.5");
    assert_true(net.fallback);
    /* The agent's bind address wins for the fallback, on whatever interface holds it. */
    assert_int_equal(migration_network_pick(inv, "198.18.3.5", false, &net, why, sizeof(why)), 0);
    assert_string_equal(net.interface, "eth2");
    assert_string_equal(net.address, "198.18.3.5");
    assert_true(net.fallback);
    inventory_destroy(&inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_allowed_move, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ownership_and_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_power_decides_the_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_capacity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devices, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rules, setup, teardown),
        cmocka_unit_test(test_network_tagged),
        cmocka_unit_test(test_network_fallback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
