/* inventory.h - what this host has: CPUs, memory, network interfaces with
 * the services the config puts on them, and PCI devices.
 *
 * inventory_new() collects everything once; inventory_refresh() re-reads
 * what changes while the agent runs (available memory, load). The agent
 * gossips the result and the control API returns inventory_pack()'s map,
 * which ferryctl prints as JSON or a table.
 *
 * Sources: /proc/cpuinfo, /proc/meminfo, /proc/loadavg, sysconf, uname,
 * getifaddrs, /sys/class/net/NAME/{mtu,address}, /sys/bus/pci/devices/ *,
 * /dev/kvm. Tests and the simulator point these at a fake tree with
 * inventory_new_from().
 *
 * Which interface carries management:
 *   1. the interfaces the config tags with management, if any;
 *   2. else the interface holding [agent] bind (127.0.0.1 puts it on lo);
 *   3. else the first non-loopback interface that is up and has an address;
 *   4. else the first interface that is up and has an address (lo).
 * Raft and gossip go on the (first) management interface unless the config
 * tags an interface with them. vmotion and provisioning are never implied:
 * the migration code falls back to management itself and says so. */
#ifndef FERRY_INVENTORY_H
#define FERRY_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "common/config.h"

#define INVENTORY_ADDRESSES_MAX 16   /* per interface; more are ignored */

typedef struct inventory inventory_t;

typedef struct {
    int family;              /* AF_INET or AF_INET6 */
    char text[46];           /* "10.0.0.5", "fd00::5" */
    unsigned prefix_len;
} inventory_address_t;

typedef struct {
    char name[CONFIG_IFNAME_MAX];
    bool up;
    bool loopback;
    unsigned mtu;            /* 0 if unknown */
    char mac[18];            /* "52:54:00:12:34:56", "" if none */
    inventory_address_t addresses[INVENTORY_ADDRESSES_MAX];
    size_t address_count;
    uint32_t services;       /* SERVICE_* bits, tagged by the config or implied */
} inventory_interface_t;

typedef struct {
    char address[32];        /* "0000:00:1f.2" */
    uint16_t vendor, device;
    uint16_t subsystem_vendor, subsystem_device;
    uint32_t class_code;     /* 0x020000 = Ethernet controller */
    char driver[64];         /* "" if no driver is bound */
    int numa_node;           /* -1 if unknown */
    int iommu_group;         /* -1 if none */
} inventory_pci_t;

/* Collects the inventory of this host. cfg may be NULL (no tags, no
 * overrides). Fails with a message when /proc cannot be read, or when the
 * config names an interface or a bind address this host does not have. */
inventory_t *inventory_new(const config_t *cfg, char *err, size_t errlen);
void inventory_destroy(inventory_t **self_p);

/* Re-reads available memory and load. Returns 0 or a negative errno. */
int inventory_refresh(inventory_t *inv);

const char *inventory_hostname(const inventory_t *inv);
const char *inventory_kernel(const inventory_t *inv);      /* uname -r */
const char *inventory_arch(const inventory_t *inv);        /* uname -m */

/* What the host has. */
uint32_t inventory_cpus(const inventory_t *inv);
const char *inventory_cpu_model(const inventory_t *inv);
const char *inventory_cpu_vendor(const inventory_t *inv);
uint32_t inventory_cpu_mhz(const inventory_t *inv);       /* 0 if unknown */
/* Has the CPU this /proc/cpuinfo flag ("aes", "vmx", "avx2")? */
bool inventory_cpu_has(const inventory_t *inv, const char *flag);
uint64_t inventory_memory_bytes(const inventory_t *inv);
uint64_t inventory_memory_available_bytes(const inventory_t *inv);
void inventory_load(const inventory_t *inv, double load[3]);   /* 1, 5, 15 minutes */
bool inventory_kvm_available(const inventory_t *inv);

/* What the agent offers: what the host has, unless [capacity] overrides it. */
uint32_t inventory_capacity_cpus(const inventory_t *inv);
uint64_t inventory_capacity_memory_bytes(const inventory_t *inv);
bool inventory_capacity_overridden(const inventory_t *inv);

size_t inventory_interface_count(const inventory_t *inv);
const inventory_interface_t *inventory_interface_at(const inventory_t *inv, size_t index);
const inventory_interface_t *inventory_interface_find(const inventory_t *inv, const char *name);
/* The first interface carrying service (a SERVICE_* bit), or NULL. */
const inventory_interface_t *inventory_service_interface(const inventory_t *inv, uint32_t service);
/* An address to bind for service: on the first interface carrying it, the
 * first IPv4 address, else the first IPv6 that is not link-local. NULL if
 * none. ferryd uses this for [agent] bind = "" with SERVICE_MANAGEMENT. */
const char *inventory_service_address(const inventory_t *inv, uint32_t service);

size_t inventory_pci_count(const inventory_t *inv);
const inventory_pci_t *inventory_pci_at(const inventory_t *inv, size_t index);

/* Packs the inventory as one msgpack map. Field names are stable:
 *   hostname, name, kernel, arch, cpus, cpu_model, cpu_vendor, cpu_mhz,
 *   cpu_features [str], memory_bytes, memory_available_bytes, load [3 floats],
 *   kvm, capacity {cpus, memory_bytes, overridden},
 *   interfaces [{name, up, loopback, mtu, mac, addresses ["10.0.0.5/24"],
 *                services [str]}],
 *   pci_devices [{address, vendor, device, subsystem_vendor, subsystem_device,
 *                 class, class_name, driver, numa_node, iommu_group}]
 * vendor, device and class are hex strings as sysfs writes them ("0x8086");
 * numa_node and iommu_group are integers, -1 when unknown or none. */
void inventory_pack(const inventory_t *inv, msgpack_packer *pk);

/* --- for tests and the simulator: collect from a fake host -------------------- */

struct ifaddrs;

typedef struct {
    const char *proc_root;          /* instead of "/proc" */
    const char *sys_root;           /* instead of "/sys" */
    const char *dev_root;           /* instead of "/dev" */
    const struct ifaddrs *ifaddrs;  /* instead of getifaddrs(); NULL = real */
    const char *hostname;           /* instead of gethostname(); NULL = real */
} inventory_source_t;

inventory_t *inventory_new_from(const config_t *cfg, const inventory_source_t *source,
                                char *err, size_t errlen);

#endif
