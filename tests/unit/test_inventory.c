/* test_inventory.c - the host inventory, on a fake /proc + /sys tree and on
 * this machine. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent/inventory.h"
#include "common/rng.h"

/* --- a fake host ----------------------------------------------------------------- */

typedef struct {
    char root[64];
    char proc[128], sys[128], dev[128];
    /* a fake getifaddrs() list */
    struct ifaddrs nodes[16];
    struct sockaddr_storage addrs[16], masks[16];
    size_t count;
} fake_host_t;

static void write_file(const char *dir, const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    /* make the parent directories */
    for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(path, 0755);
        *slash = '/';
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void make_link(const char *dir, const char *rel, const char *target)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    assert_int_equal(symlink(target, path), 0);
}

static const char cpuinfo[] =
    "processor\t: 0\n"
    "vendor_id\t: FakeIntel\n"
    "model name\t: Fake CPU E-1234 @ 2.40GHz\n"
    "cpu MHz\t\t: 2394.512\n"
    "flags\t\t: fpu vme avx2 aes vmx sse4_2\n"
    "\n"
    "processor\t: 1\n"
    "vendor_id\t: FakeIntel\n"
    "model name\t: Fake CPU E-1234 @ 2.40GHz\n"
    "cpu MHz\t\t: 1200.000\n"
    "flags\t\t: fpu\n"
    "\n"
    "processor\t: 2\n"
    "\n"
    "processor\t: 3\n";

static void add_ifaddr(fake_host_t *h, const char *name, unsigned flags, int family,
                       const char *address, unsigned prefix)
{
    size_t i = h->count++;
    assert_true(i < 16);
    struct ifaddrs *node = &h->nodes[i];
    memset(node, 0, sizeof(*node));
    node->ifa_name = (char *)name;
    node->ifa_flags = flags;
    struct sockaddr_storage *addr = &h->addrs[i], *mask = &h->masks[i];
    memset(addr, 0, sizeof(*addr));
    memset(mask, 0, sizeof(*mask));
    addr->ss_family = (sa_family_t)family;
    if (family == AF_INET) {
        assert_int_equal(inet_pton(AF_INET, address, &((struct sockaddr_in *)addr)->sin_addr), 1);
        mask->ss_family = AF_INET;
        uint32_t bits = prefix ? htonl(~0u << (32 - prefix)) : 0;
        memcpy(&((struct sockaddr_in *)mask)->sin_addr, &bits, 4);
        node->ifa_netmask = (struct sockaddr *)mask;
    } else if (family == AF_INET6) {
        assert_int_equal(inet_pton(AF_INET6, address, &((struct sockaddr_in6 *)addr)->sin6_addr), 1);
        mask->ss_family = AF_INET6;
        unsigned char *m = (unsigned char *)&((struct sockaddr_in6 *)mask)->sin6_addr;
        for (unsigned b = 0; b < prefix; b++)
            m[b / 8] |= (unsigned char)(0x80 >> (b % 8));
        node->ifa_netmask = (struct sockaddr *)mask;
    }
    node->ifa_addr = (struct sockaddr *)addr;
    if (i > 0)
        h->nodes[i - 1].ifa_next = node;
}

/* lo; eth1 (down, listed before eth0); eth0 with an alias label and IPv6. */
static void add_standard_interfaces(fake_host_t *h)
{
    add_ifaddr(h, "lo", IFF_UP | IFF_LOOPBACK, AF_PACKET, NULL, 0);
    add_ifaddr(h, "eth1", 0, AF_PACKET, NULL, 0);
    add_ifaddr(h, "eth0", IFF_UP, AF_PACKET, NULL, 0);
    add_ifaddr(h, "lo", IFF_UP | IFF_LOOPBACK, AF_INET, "127.0.0.1", 8);
    add_ifaddr(h, "eth1", 0, AF_INET, "192.168.7.1", 24);
    add_ifaddr(h, "eth0", IFF_UP, AF_INET6, "fe80::1", 64);
    add_ifaddr(h, "eth0", IFF_UP, AF_INET, "10.1.2.3", 24);
    add_ifaddr(h, "eth0:1", IFF_UP, AF_INET, "10.1.2.4", 16);
    add_ifaddr(h, "eth0", IFF_UP, AF_INET6, "fd00::3", 64);
    add_ifaddr(h, "lo", IFF_UP | IFF_LOOPBACK, AF_INET6, "::1", 128);
}

static int fake_setup(void **state)
{
    fake_host_t *h = calloc(1, sizeof(*h));
    snprintf(h->root, sizeof(h->root), "/tmp/ferry-test-inventory-XXXXXX");
    assert_non_null(mkdtemp(h->root));
    snprintf(h->proc, sizeof(h->proc), "%s/proc", h->root);
    snprintf(h->sys, sizeof(h->sys), "%s/sys", h->root);
    snprintf(h->dev, sizeof(h->dev), "%s/dev", h->root);
    mkdir(h->dev, 0755);

    write_file(h->proc, "cpuinfo", cpuinfo);
    write_file(h->proc, "meminfo",
               "MemTotal:       16384000 kB\n"
               "MemFree:         1000000 kB\n"
               "MemAvailable:    8192000 kB\n"
               "Buffers:          100000 kB\n");
    write_file(h->proc, "loadavg", "0.50 1.25 2.00 1/100 1234\n");

    /* a GPU with a driver, a GPU without, a NIC; sysfs lists them unsorted */
    write_file(h->sys, "bus/pci/devices/0000:01:00.0/vendor", "0x10de\n");
    write_file(h->sys, "bus/pci/devices/0000:01:00.0/device", "0x1eb8\n");
    write_file(h->sys, "bus/pci/devices/0000:01:00.0/subsystem_vendor", "0x10de\n");
    write_file(h->sys, "bus/pci/devices/0000:01:00.0/subsystem_device", "0x12a2\n");
    write_file(h->sys, "bus/pci/devices/0000:01:00.0/class", "0x030200\n");
    write_file(h->sys, "bus/pci/devices/0000:01:00.0/numa_node", "1\n");
    make_link(h->sys, "bus/pci/devices/0000:01:00.0/iommu_group", "../../../../kernel/iommu_groups/15");

    write_file(h->sys, "bus/pci/devices/0000:00:02.0/vendor", "0x8086\n");
    write_file(h->sys, "bus/pci/devices/0000:00:02.0/device", "0x3e92\n");
    write_file(h->sys, "bus/pci/devices/0000:00:02.0/class", "0x030000\n");
    write_file(h->sys, "bus/pci/devices/0000:00:02.0/numa_node", "-1\n");
    make_link(h->sys, "bus/pci/devices/0000:00:02.0/driver", "../../../../bus/pci/drivers/i915");
    make_link(h->sys, "bus/pci/devices/0000:00:02.0/iommu_group", "../../../../kernel/iommu_groups/1");

    write_file(h->sys, "bus/pci/devices/0000:00:1f.6/vendor", "0x8086\n");
    write_file(h->sys, "bus/pci/devices/0000:00:1f.6/device", "0x15bb\n");
    write_file(h->sys, "bus/pci/devices/0000:00:1f.6/class", "0x020000\n");
    make_link(h->sys, "bus/pci/devices/0000:00:1f.6/driver", "../../../../bus/pci/drivers/e1000e");

    write_file(h->sys, "class/net/eth0/mtu", "9000\n");
    write_file(h->sys, "class/net/eth0/address", "52:54:00:12:34:56\n");

    add_standard_interfaces(h);
    *state = h;
    return 0;
}

static int fake_teardown(void **state)
{
    fake_host_t *h = *state;
    char command[256];
    snprintf(command, sizeof(command), "rm -rf '%s'", h->root);
    assert_int_equal(system(command), 0);
    free(h);
    return 0;
}

static inventory_source_t source_of(fake_host_t *h)
{
    return (inventory_source_t){ .proc_root = h->proc, .sys_root = h->sys, .dev_root = h->dev,
                                 .ifaddrs = h->nodes, .hostname = "fakehost" };
}

static inventory_t *fake_inventory(fake_host_t *h, const config_t *cfg)
{
    inventory_source_t source = source_of(h);
    char err[512] = "";
    inventory_t *inv = inventory_new_from(cfg, &source, err, sizeof(err));
    if (!inv)
        fail_msg("inventory_new_from: %s", err);
    return inv;
}

/* --- parsing the fake host ----------------------------------------------------------- */

static void test_fake_cpu_and_memory(void **state)
{
    fake_host_t *h = *state;
    inventory_t *inv = fake_inventory(h, NULL);
    assert_string_equal(inventory_hostname(inv), "fakehost");
    assert_int_equal(inventory_cpus(inv), 4);
    assert_string_equal(inventory_cpu_model(inv), "Fake CPU E-1234 @ 2.40GHz");
    assert_string_equal(inventory_cpu_vendor(inv), "FakeIntel");
    assert_int_equal(inventory_cpu_mhz(inv), 2395);
    assert_true(inventory_cpu_has(inv, "aes"));
    assert_true(inventory_cpu_has(inv, "vmx"));
    assert_true(inventory_cpu_has(inv, "fpu"));
    assert_false(inventory_cpu_has(inv, "avx"));   /* whole words only: avx2 is not avx */
    assert_false(inventory_cpu_has(inv, ""));
    assert_int_equal(inventory_memory_bytes(inv), 16384000ULL * 1024);
    assert_int_equal(inventory_memory_available_bytes(inv), 8192000ULL * 1024);
    double load[3];
    inventory_load(inv, load);
    assert_true(load[0] == 0.5 && load[1] == 1.25 && load[2] == 2.0);
    assert_false(inventory_kvm_available(inv));
    assert_int_equal(inventory_capacity_cpus(inv), 4);
    assert_int_equal(inventory_capacity_memory_bytes(inv), 16384000ULL * 1024);
    assert_false(inventory_capacity_overridden(inv));
    inventory_destroy(&inv);
    assert_null(inv);
    inventory_destroy(&inv);   /* harmless */

    /* /dev/kvm present */
    write_file(h->dev, "kvm", "");
    inv = fake_inventory(h, NULL);
    assert_true(inventory_kvm_available(inv));
    inventory_destroy(&inv);
}

static void test_fake_memory_without_memavailable(void **state)
{
    fake_host_t *h = *state;
    write_file(h->proc, "meminfo", "MemTotal: 2000 kB\nMemFree: 100 kB\nBuffers: 20 kB\n"
                                   "Cached: 300 kB\nSwapCached: 5 kB\n");
    inventory_t *inv = fake_inventory(h, NULL);
    assert_int_equal(inventory_memory_available_bytes(inv), 420 * 1024);
    inventory_destroy(&inv);
}

static void test_fake_pci(void **state)
{
    fake_host_t *h = *state;
    inventory_t *inv = fake_inventory(h, NULL);
    assert_int_equal(inventory_pci_count(inv), 3);
    const inventory_pci_t *igpu = inventory_pci_at(inv, 0);
    const inventory_pci_t *nic = inventory_pci_at(inv, 1);
    const inventory_pci_t *gpu = inventory_pci_at(inv, 2);
    assert_null(inventory_pci_at(inv, 3));

    assert_string_equal(igpu->address, "0000:00:02.0");
    assert_int_equal(igpu->vendor, 0x8086);
    assert_int_equal(igpu->device, 0x3e92);
    assert_int_equal(igpu->class_code, 0x030000);
    assert_string_equal(igpu->driver, "i915");
    assert_int_equal(igpu->numa_node, -1);
    assert_int_equal(igpu->iommu_group, 1);

    assert_string_equal(nic->address, "0000:00:1f.6");
    assert_string_equal(nic->driver, "e1000e");
    assert_int_equal(nic->class_code, 0x020000);
    assert_int_equal(nic->numa_node, -1);      /* no numa_node file */
    assert_int_equal(nic->iommu_group, -1);    /* no IOMMU group */

    assert_string_equal(gpu->address, "0000:01:00.0");
    assert_int_equal(gpu->vendor, 0x10de);
    assert_int_equal(gpu->device, 0x1eb8);
    assert_int_equal(gpu->subsystem_vendor, 0x10de);
    assert_int_equal(gpu->subsystem_device, 0x12a2);
    assert_int_equal(gpu->class_code, 0x030200);
    assert_string_equal(gpu->driver, "");
    assert_int_equal(gpu->numa_node, 1);
    assert_int_equal(gpu->iommu_group, 15);
    inventory_destroy(&inv);
}

static void test_fake_interfaces(void **state)
{
    fake_host_t *h = *state;
    inventory_t *inv = fake_inventory(h, NULL);
    assert_int_equal(inventory_interface_count(inv), 3);
    assert_string_equal(inventory_interface_at(inv, 0)->name, "lo");
    assert_string_equal(inventory_interface_at(inv, 1)->name, "eth1");
    assert_string_equal(inventory_interface_at(inv, 2)->name, "eth0");
    assert_null(inventory_interface_at(inv, 3));

    const inventory_interface_t *lo = inventory_interface_find(inv, "lo");
    assert_true(lo->up && lo->loopback);
    assert_int_equal(lo->address_count, 2);

    const inventory_interface_t *eth0 = inventory_interface_find(inv, "eth0");
    assert_true(eth0->up);
    assert_false(eth0->loopback);
    assert_int_equal(eth0->mtu, 9000);
    assert_string_equal(eth0->mac, "52:54:00:12:34:56");
    assert_int_equal(eth0->address_count, 4);   /* the alias eth0:1 is folded in */
    assert_string_equal(eth0->addresses[0].text, "fe80::1");
    assert_int_equal(eth0->addresses[0].family, AF_INET6);
    assert_int_equal(eth0->addresses[0].prefix_len, 64);
    assert_string_equal(eth0->addresses[1].text, "10.1.2.3");
    assert_int_equal(eth0->addresses[1].prefix_len, 24);
    assert_string_equal(eth0->addresses[2].text, "10.1.2.4");
    assert_int_equal(eth0->addresses[2].prefix_len, 16);

    const inventory_interface_t *eth1 = inventory_interface_find(inv, "eth1");
    assert_false(eth1->up);
    assert_int_equal(eth1->mtu, 0);
    assert_string_equal(eth1->mac, "");
    assert_null(inventory_interface_find(inv, "eth2"));
    inventory_destroy(&inv);
}

/* --- which interface carries which service ------------------------------------------- */

static uint32_t services_of(const inventory_t *inv, const char *name)
{
    const inventory_interface_t *ifc = inventory_interface_find(inv, name);
    assert_non_null(ifc);
    return ifc->services;
}

#define IMPLIED (SERVICE_MANAGEMENT | SERVICE_RAFT | SERVICE_GOSSIP)

static void test_management_default_rule(void **state)
{
    fake_host_t *h = *state;
    config_t cfg;
    config_defaults(&cfg);

    /* nothing tagged, no bind: the first non-loopback interface that is up
     * and has an address (eth1 is down) */
    inventory_t *inv = fake_inventory(h, &cfg);
    assert_int_equal(services_of(inv, "eth0"), IMPLIED);
    assert_int_equal(services_of(inv, "eth1"), 0);
    assert_int_equal(services_of(inv, "lo"), 0);
    assert_string_equal(inventory_service_address(inv, SERVICE_MANAGEMENT), "10.1.2.3");
    assert_string_equal(inventory_service_interface(inv, SERVICE_GOSSIP)->name, "eth0");
    assert_null(inventory_service_interface(inv, SERVICE_VMOTION));
    assert_null(inventory_service_address(inv, SERVICE_VMOTION));
    inventory_destroy(&inv);

    /* a wildcard bind does not pick an interface */
    snprintf(cfg.agent.bind, sizeof(cfg.agent.bind), "0.0.0.0");
    inv = fake_inventory(h, &cfg);
    assert_int_equal(services_of(inv, "eth0"), IMPLIED);
    inventory_destroy(&inv);
}

static void test_management_follows_bind(void **state)
{
    fake_host_t *h = *state;
    config_t cfg;
    config_defaults(&cfg);
    char err[512];

    /* dev mode: bind to loopback puts management on lo */
    assert_int_equal(config_set_option(&cfg, "agent.bind", "127.0.0.1", err, sizeof(err)), 0);
    inventory_t *inv = fake_inventory(h, &cfg);
    assert_int_equal(services_of(inv, "lo"), IMPLIED);
    assert_int_equal(services_of(inv, "eth0"), 0);
    assert_string_equal(inventory_service_address(inv, SERVICE_MANAGEMENT), "127.0.0.1");
    inventory_destroy(&inv);

    /* the same address written differently */
    assert_int_equal(config_set_option(&cfg, "agent.bind", "fd00:0::0:3", err, sizeof(err)), 0);
    inv = fake_inventory(h, &cfg);
    assert_int_equal(services_of(inv, "eth0"), IMPLIED);
    inventory_destroy(&inv);

    /* an alias address belongs to its interface */
    assert_int_equal(config_set_option(&cfg, "agent.bind", "10.1.2.4", err, sizeof(err)), 0);
    inv = fake_inventory(h, &cfg);
    assert_int_equal(services_of(inv, "eth0"), IMPLIED);
    inventory_destroy(&inv);

    /* an address this host does not have */
    assert_int_equal(config_set_option(&cfg, "agent.bind", "10.9.9.9", err, sizeof(err)), 0);
    inventory_source_t source = source_of(h);
    assert_null(inventory_new_from(&cfg, &source, err, sizeof(err)));
    assert_string_equal(err, "[agent] bind: 10.9.9.9 is not an address of any interface on this host");
}

static void test_services_from_config(void **state)
{
    fake_host_t *h = *state;
    config_t cfg;
    config_defaults(&cfg);
    char err[512];

    /* tags win over bind and over the default rule; raft and gossip follow management */
    assert_int_equal(config_set_option(&cfg, "agent.bind", "127.0.0.1", err, sizeof(err)), 0);
    assert_int_equal(config_set_option(&cfg, "interface.eth1.services", "management", err, sizeof(err)), 0);
    assert_int_equal(config_set_option(&cfg, "interface.eth0.services", "vmotion,provisioning",
                                       err, sizeof(err)), 0);
    inventory_t *inv = fake_inventory(h, &cfg);
    assert_int_equal(services_of(inv, "eth1"), IMPLIED);
    assert_int_equal(services_of(inv, "eth0"), SERVICE_VMOTION | SERVICE_PROVISIONING);
    assert_int_equal(services_of(inv, "lo"), 0);
    assert_string_equal(inventory_service_address(inv, SERVICE_VMOTION), "10.1.2.3");
    assert_string_equal(inventory_service_address(inv, SERVICE_MANAGEMENT), "192.168.7.1");
    inventory_destroy(&inv);

    /* a tagged raft interface keeps raft off management; gossip still follows it */
    config_defaults(&cfg);
    assert_int_equal(config_set_option(&cfg, "interface.eth1.services", "raft", err, sizeof(err)), 0);
    inv = fake_inventory(h, &cfg);
    assert_int_equal(services_of(inv, "eth1"), SERVICE_RAFT);
    assert_int_equal(services_of(inv, "eth0"), SERVICE_MANAGEMENT | SERVICE_GOSSIP);
    inventory_destroy(&inv);

    /* an interface the host does not have */
    config_defaults(&cfg);
    assert_int_equal(config_set_option(&cfg, "interface.eth7.services", "vmotion", err, sizeof(err)), 0);
    inventory_source_t source = source_of(h);
    assert_null(inventory_new_from(&cfg, &source, err, sizeof(err)));
    assert_string_equal(err, "[interface eth7]: this host has no such interface (it has: lo, eth1, eth0)");
}

static void test_management_on_loopback_only_host(void **state)
{
    fake_host_t *h = *state;
    h->count = 0;
    memset(h->nodes, 0, sizeof(h->nodes));
    add_ifaddr(h, "lo", IFF_UP | IFF_LOOPBACK, AF_PACKET, NULL, 0);
    add_ifaddr(h, "lo", IFF_UP | IFF_LOOPBACK, AF_INET6, "::1", 128);
    add_ifaddr(h, "lo", IFF_UP | IFF_LOOPBACK, AF_INET, "127.0.0.1", 8);
    add_ifaddr(h, "v6only", IFF_UP, AF_INET6, "fe80::9", 64);
    inventory_t *inv = fake_inventory(h, NULL);
    /* v6only is not loopback, up, and has an address: it wins */
    assert_int_equal(services_of(inv, "v6only"), IMPLIED);
    /* only a link-local address: nothing to bind to */
    assert_null(inventory_service_address(inv, SERVICE_MANAGEMENT));
    inventory_destroy(&inv);

    h->count = 3;
    h->nodes[2].ifa_next = NULL;
    inv = fake_inventory(h, NULL);
    assert_int_equal(services_of(inv, "lo"), IMPLIED);
    assert_string_equal(inventory_service_address(inv, SERVICE_MANAGEMENT), "127.0.0.1");
    inventory_destroy(&inv);
}

static void test_capacity_override(void **state)
{
    fake_host_t *h = *state;
    config_t cfg;
    config_defaults(&cfg);
    char err[512];
    assert_int_equal(config_set_option(&cfg, "capacity.cpus", "64", err, sizeof(err)), 0);
    inventory_t *inv = fake_inventory(h, &cfg);
    assert_int_equal(inventory_capacity_cpus(inv), 64);
    assert_int_equal(inventory_capacity_memory_bytes(inv), 16384000ULL * 1024);
    assert_true(inventory_capacity_overridden(inv));
    assert_int_equal(inventory_cpus(inv), 4);   /* what the host has is unchanged */
    inventory_destroy(&inv);

    config_defaults(&cfg);
    assert_int_equal(config_set_option(&cfg, "capacity.memory", "2G", err, sizeof(err)), 0);
    inv = fake_inventory(h, &cfg);
    assert_int_equal(inventory_capacity_cpus(inv), 4);
    assert_int_equal(inventory_capacity_memory_bytes(inv), 2ULL << 30);
    assert_true(inventory_capacity_overridden(inv));
    inventory_destroy(&inv);
}

static void test_refresh(void **state)
{
    fake_host_t *h = *state;
    inventory_t *inv = fake_inventory(h, NULL);
    write_file(h->proc, "meminfo", "MemTotal: 16384000 kB\nMemAvailable: 1000 kB\n");
    write_file(h->proc, "loadavg", "3.00 2.00 1.00 2/200 999\n");
    assert_int_equal(inventory_refresh(inv), 0);
    assert_int_equal(inventory_memory_available_bytes(inv), 1000 * 1024);
    double load[3];
    inventory_load(inv, load);
    assert_true(load[0] == 3.0 && load[2] == 1.0);

    write_file(h->proc, "meminfo", "garbage\n");
    assert_int_equal(inventory_refresh(inv), -EINVAL);
    assert_int_equal(inventory_memory_available_bytes(inv), 1000 * 1024);   /* kept */
    inventory_destroy(&inv);
}

static void test_errors(void **state)
{
    fake_host_t *h = *state;
    inventory_source_t source = source_of(h);
    char err[512], expect[512];

    unlink(strcat(strcpy(expect, h->proc), "/cpuinfo"));
    assert_null(inventory_new_from(NULL, &source, err, sizeof(err)));
    snprintf(expect, sizeof(expect), "inventory: cannot read %s/cpuinfo: No such file or directory", h->proc);
    assert_string_equal(err, expect);

    write_file(h->proc, "cpuinfo", cpuinfo);
    write_file(h->proc, "meminfo", "MemFree: 10 kB\n");
    assert_null(inventory_new_from(NULL, &source, err, sizeof(err)));
    snprintf(expect, sizeof(expect), "inventory: %s/meminfo has no MemTotal line", h->proc);
    assert_string_equal(err, expect);

    /* no /sys at all: no PCI devices, no MTU, but no failure */
    write_file(h->proc, "meminfo", "MemTotal: 10 kB\n");
    source.sys_root = "/nonexistent";
    inventory_t *inv = inventory_new_from(NULL, &source, err, sizeof(err));
    assert_non_null(inv);
    assert_int_equal(inventory_pci_count(inv), 0);
    inventory_destroy(&inv);
}

/* Random bytes in every /proc file: no crash, sane values or an error. */
static void test_garbage_proc(void **state)
{
    fake_host_t *h = *state;
    inventory_source_t source = source_of(h);
    rng_t rng;
    rng_seed(&rng, 7);
    static const char alphabet[] = "processor: \t\nMemTotalAvailablkB0123456789.modelnamecpuMHzflags";
    for (int round = 0; round < 300; round++) {
        char text[3][1024];
        for (int f = 0; f < 3; f++) {
            size_t len = rng_below(&rng, sizeof(text[f]));
            bool printable = rng_below(&rng, 2);
            for (size_t i = 0; i < len; i++)
                text[f][i] = printable ? alphabet[rng_below(&rng, sizeof(alphabet) - 1)]
                                       : (char)(1 + rng_below(&rng, 255));
            text[f][len] = '\0';
        }
        write_file(h->proc, "cpuinfo", text[0]);
        write_file(h->proc, "meminfo", text[1]);
        write_file(h->proc, "loadavg", text[2]);
        char err[512];
        inventory_t *inv = inventory_new_from(NULL, &source, err, sizeof(err));
        if (!inv)
            continue;
        assert_true(inventory_cpus(inv) >= 1);
        assert_true(inventory_memory_bytes(inv) > 0);
        msgpack_sbuffer sbuf;
        msgpack_sbuffer_init(&sbuf);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
        inventory_pack(inv, &pk);
        msgpack_sbuffer_destroy(&sbuf);
        inventory_destroy(&inv);
    }
}

/* --- the packed map ----------------------------------------------------------------- */

static const msgpack_object *map_get(const msgpack_object *map, const char *key)
{
    assert_int_equal(map->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object_kv *kv = &map->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key)
            && memcmp(kv->key.via.str.ptr, key, kv->key.via.str.size) == 0)
            return &kv->val;
    }
    fail_msg("no key %s in the map", key);
    return NULL;
}

static void assert_str(const msgpack_object *o, const char *expect)
{
    assert_int_equal(o->type, MSGPACK_OBJECT_STR);
    assert_int_equal(o->via.str.size, strlen(expect));
    assert_memory_equal(o->via.str.ptr, expect, o->via.str.size);
}

static void assert_keys(const msgpack_object *map, const char *const *keys)
{
    size_t n = 0;
    for (; keys[n]; n++)
        map_get(map, keys[n]);
    assert_int_equal(map->via.map.size, n);
}

static void test_pack(void **state)
{
    fake_host_t *h = *state;
    config_t cfg;
    config_defaults(&cfg);
    char err[512];
    assert_int_equal(config_set_option(&cfg, "agent.name", "agent-a", err, sizeof(err)), 0);
    assert_int_equal(config_set_option(&cfg, "capacity.cpus", "8", err, sizeof(err)), 0);
    assert_int_equal(config_set_option(&cfg, "interface.eth1.services", "vmotion", err, sizeof(err)), 0);
    inventory_t *inv = fake_inventory(h, &cfg);

    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    inventory_pack(inv, &pk);

    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    size_t offset = 0;
    assert_int_equal(msgpack_unpack_next(&msg, sbuf.data, sbuf.size, &offset), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(offset, sbuf.size);   /* exactly one object: the counts were right */
    const msgpack_object *root = &msg.data;

    static const char *const top[] = {
        "hostname", "name", "kernel", "arch", "cpus", "cpu_model", "cpu_vendor", "cpu_mhz",
        "cpu_features", "memory_bytes", "memory_available_bytes", "load", "kvm", "capacity",
        "interfaces", "pci_devices", NULL,
    };
    assert_keys(root, top);
    assert_str(map_get(root, "hostname"), "fakehost");
    assert_str(map_get(root, "name"), "agent-a");
    assert_int_equal(map_get(root, "cpus")->via.u64, 4);
    assert_str(map_get(root, "cpu_model"), "Fake CPU E-1234 @ 2.40GHz");
    assert_int_equal(map_get(root, "cpu_mhz")->via.u64, 2395);
    const msgpack_object *features = map_get(root, "cpu_features");
    assert_int_equal(features->via.array.size, 4);   /* the notable ones, in a fixed order */
    assert_str(&features->via.array.ptr[0], "aes");
    assert_str(&features->via.array.ptr[1], "avx2");
    assert_str(&features->via.array.ptr[2], "sse4_2");
    assert_str(&features->via.array.ptr[3], "vmx");
    assert_int_equal(map_get(root, "memory_bytes")->via.u64, 16384000ULL * 1024);
    assert_int_equal(map_get(root, "memory_available_bytes")->via.u64, 8192000ULL * 1024);
    const msgpack_object *load = map_get(root, "load");
    assert_int_equal(load->via.array.size, 3);
    assert_true(load->via.array.ptr[1].via.f64 == 1.25);
    assert_int_equal(map_get(root, "kvm")->type, MSGPACK_OBJECT_BOOLEAN);

    const msgpack_object *capacity = map_get(root, "capacity");
    static const char *const capacity_keys[] = { "cpus", "memory_bytes", "overridden", NULL };
    assert_keys(capacity, capacity_keys);
    assert_int_equal(map_get(capacity, "cpus")->via.u64, 8);
    assert_true(map_get(capacity, "overridden")->via.boolean);

    const msgpack_object *interfaces = map_get(root, "interfaces");
    assert_int_equal(interfaces->via.array.size, 3);
    const msgpack_object *eth0 = &interfaces->via.array.ptr[2];
    static const char *const interface_keys[] = {
        "name", "up", "loopback", "mtu", "mac", "addresses", "services", NULL,
    };
    assert_keys(eth0, interface_keys);
    assert_str(map_get(eth0, "name"), "eth0");
    assert_int_equal(map_get(eth0, "mtu")->via.u64, 9000);
    const msgpack_object *addresses = map_get(eth0, "addresses");
    assert_int_equal(addresses->via.array.size, 4);
    assert_str(&addresses->via.array.ptr[1], "10.1.2.3/24");
    assert_str(&addresses->via.array.ptr[3], "fd00::3/64");
    const msgpack_object *services = map_get(eth0, "services");
    assert_int_equal(services->via.array.size, 3);
    assert_str(&services->via.array.ptr[0], "management");
    assert_str(&services->via.array.ptr[1], "raft");
    assert_str(&services->via.array.ptr[2], "gossip");
    const msgpack_object *eth1_services = map_get(&interfaces->via.array.ptr[1], "services");
    assert_int_equal(eth1_services->via.array.size, 1);
    assert_str(&eth1_services->via.array.ptr[0], "vmotion");

    const msgpack_object *pci = map_get(root, "pci_devices");
    assert_int_equal(pci->via.array.size, 3);
    const msgpack_object *gpu = &pci->via.array.ptr[2];
    static const char *const pci_keys[] = {
        "address", "vendor", "device", "subsystem_vendor", "subsystem_device", "class",
        "class_name", "driver", "numa_node", "iommu_group", NULL,
    };
    assert_keys(gpu, pci_keys);
    assert_str(map_get(gpu, "address"), "0000:01:00.0");
    assert_str(map_get(gpu, "vendor"), "0x10de");
    assert_str(map_get(gpu, "device"), "0x1eb8");
    assert_str(map_get(gpu, "class"), "0x030200");
    assert_str(map_get(gpu, "class_name"), "display");
    assert_str(map_get(gpu, "driver"), "");
    assert_int_equal(map_get(gpu, "numa_node")->via.i64, 1);
    assert_int_equal(map_get(gpu, "iommu_group")->via.i64, 15);
    const msgpack_object *igpu = &pci->via.array.ptr[0];
    assert_int_equal(map_get(igpu, "numa_node")->via.i64, -1);
    assert_str(map_get(&pci->via.array.ptr[1], "class_name"), "network");

    msgpack_unpacked_destroy(&msg);
    msgpack_sbuffer_destroy(&sbuf);
    inventory_destroy(&inv);
}

/* --- this machine ------------------------------------------------------------------- */

static void test_real_machine(void **state)
{
    char err[512] = "";
    inventory_t *inv = inventory_new(NULL, err, sizeof(err));
    if (!inv)
        fail_msg("inventory_new: %s", err);
    assert_int_equal(inventory_cpus(inv), sysconf(_SC_NPROCESSORS_ONLN));
    assert_int_equal(inventory_memory_bytes(inv),
                     (uint64_t)sysconf(_SC_PHYS_PAGES) * (uint64_t)sysconf(_SC_PAGESIZE));
    assert_true(inventory_memory_available_bytes(inv) > 0);
    assert_true(inventory_memory_available_bytes(inv) <= inventory_memory_bytes(inv));
    assert_int_equal(inventory_capacity_cpus(inv), inventory_cpus(inv));
    assert_false(inventory_capacity_overridden(inv));
    assert_true(strlen(inventory_cpu_model(inv)) > 0);
    assert_int_equal(inventory_kvm_available(inv), access("/dev/kvm", R_OK | W_OK) == 0);

    char host[256] = "";
    gethostname(host, sizeof(host) - 1);
    assert_string_equal(inventory_hostname(inv), host);

    /* getifaddrs and the inventory agree on the interface names */
    struct ifaddrs *list;
    assert_int_equal(getifaddrs(&list), 0);
    for (struct ifaddrs *ifa = list; ifa; ifa = ifa->ifa_next) {
        char name[IFNAMSIZ];
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(ifa->ifa_name, ":"), ifa->ifa_name);
        if (!inventory_interface_find(inv, name))
            fail_msg("interface %s is missing", name);
    }
    freeifaddrs(list);
    /* exactly one interface carries management, if any is usable */
    size_t management = 0;
    for (size_t i = 0; i < inventory_interface_count(inv); i++)
        management += (inventory_interface_at(inv, i)->services & SERVICE_MANAGEMENT) != 0;
    assert_true(management <= 1);

    /* one PCI device per entry in sysfs */
    size_t entries = 0;
    DIR *dir = opendir("/sys/bus/pci/devices");
    if (dir) {
        struct dirent *e;
        while ((e = readdir(dir)))
            entries += e->d_name[0] != '.';
        closedir(dir);
    }
    assert_int_equal(inventory_pci_count(inv), entries);

    assert_int_equal(inventory_refresh(inv), 0);
    inventory_destroy(&inv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fake_cpu_and_memory, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_fake_memory_without_memavailable, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_fake_pci, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_fake_interfaces, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_management_default_rule, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_management_follows_bind, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_services_from_config, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_management_on_loopback_only_host, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_capacity_override, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_refresh, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_errors, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_garbage_proc, fake_setup, fake_teardown),
        cmocka_unit_test_setup_teardown(test_pack, fake_setup, fake_teardown),
        cmocka_unit_test(test_real_machine),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
