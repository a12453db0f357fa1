/* inventory.c - see inventory.h.
 *
 * Everything is read through the roots in inventory_source_t, so a unit test
 * can build a fake /proc and /sys under a temp dir. Files from the kernel are
 * still parsed defensively: a missing or odd field leaves a zero, never a
 * crash. */
#include "agent/inventory.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <ifaddrs.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/utsname.h>
#include <unistd.h>

#define CPU_FLAGS_MAX 8192

struct inventory {
    char roots[3][PATH_MAX];          /* proc, sys, dev */
    char hostname[256];
    char name[CONFIG_NAME_MAX];       /* the agent's name, from the config */
    char kernel[65];
    char arch[65];

    uint32_t cpus;
    char cpu_model[128];
    char cpu_vendor[64];
    uint32_t cpu_mhz;
    char cpu_flags[CPU_FLAGS_MAX];    /* " flag flag ... " for whole-word search */

    uint64_t memory_bytes;
    uint64_t memory_available_bytes;
    double load[3];
    bool kvm;

    uint32_t capacity_cpus;
    uint64_t capacity_memory_bytes;
    bool capacity_overridden;

    inventory_interface_t *interfaces;
    size_t interface_count;
    inventory_pci_t *pci;
    size_t pci_count;
};

enum { ROOT_PROC, ROOT_SYS, ROOT_DEV };

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

/* root/relative, formatted. Returns false if the path does not fit. */
static bool path_of(const inventory_t *inv, int root, char *out, size_t outlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static bool path_of(const inventory_t *inv, int root, char *out, size_t outlen, const char *fmt, ...)
{
    int n = snprintf(out, outlen, "%s/", inv->roots[root]);
    if (n < 0 || (size_t)n >= outlen)
        return false;
    va_list args;
    va_start(args, fmt);
    int m = vsnprintf(out + n, outlen - (size_t)n, fmt, args);
    va_end(args);
    return m >= 0 && (size_t)m < outlen - (size_t)n;
}

/* Copies as much of src as fits, always terminated: truncation is intended. */
static void copy_text(char *out, size_t outlen, const char *src)
{
    size_t n = strnlen(src, outlen - 1);
    memcpy(out, src, n);
    out[n] = '\0';
}

/* The first line of a small file, without its newline; false if unreadable. */
static bool read_line(const char *path, char *out, size_t outlen)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return false;
    bool ok = fgets(out, (int)outlen, f) != NULL;
    fclose(f);
    if (ok)
        out[strcspn(out, "\n")] = '\0';
    return ok;
}

/* The last path component of a symlink's target ("../drivers/e1000e" -> "e1000e"). */
static bool read_link_name(const char *path, char *out, size_t outlen)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof(target) - 1);
    if (n <= 0)
        return false;
    target[n] = '\0';
    const char *slash = strrchr(target, '/');
    copy_text(out, outlen, slash ? slash + 1 : target);
    return true;
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n'))
        s[--n] = '\0';
    return s;
}

/* --- /proc ------------------------------------------------------------------ */

/* Reads /proc/cpuinfo: counts the processors, and takes model, vendor, MHz
 * and flags from the first one that has them. */
static int read_cpuinfo(inventory_t *inv, char *err, size_t errlen)
{
    char path[PATH_MAX];
    bool fits = path_of(inv, ROOT_PROC, path, sizeof(path), "cpuinfo");
    FILE *f = fits ? fopen(path, "re") : NULL;
    if (!f) {
        int e = fits ? errno : ENAMETOOLONG;
        say(err, errlen, "inventory: cannot read %s: %s", path, strerror(e));
        return -e;
    }
    char *line = NULL;
    size_t cap = 0;
    double mhz = 0;
    uint32_t processors = 0;
    while (getline(&line, &cap, f) > 0) {
        char *colon = strchr(line, ':');
        if (!colon)
            continue;
        *colon = '\0';
        char *key = trim(line), *value = trim(colon + 1);
        if (strcmp(key, "processor") == 0)
            processors++;
        else if ((strcmp(key, "model name") == 0 || strcmp(key, "cpu model") == 0)
                 && !inv->cpu_model[0])
            snprintf(inv->cpu_model, sizeof(inv->cpu_model), "%s", value);
        else if (strcmp(key, "vendor_id") == 0 && !inv->cpu_vendor[0])
            snprintf(inv->cpu_vendor, sizeof(inv->cpu_vendor), "%s", value);
        else if (strcmp(key, "cpu MHz") == 0 && mhz == 0)
            mhz = strtod(value, NULL);
        else if ((strcmp(key, "flags") == 0 || strcmp(key, "Features") == 0) && !inv->cpu_flags[0])
            snprintf(inv->cpu_flags, sizeof(inv->cpu_flags), " %s ", value);
    }
    free(line);
    fclose(f);

    /* cpuinfo lists the online CPUs; where it has no "processor" lines, ask libc. */
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    inv->cpus = processors ? processors : (online > 0 ? (uint32_t)online : 1);
    if (!inv->cpu_model[0])
        snprintf(inv->cpu_model, sizeof(inv->cpu_model), "unknown");
    if (mhz > 0 && mhz < 1e6) {
        inv->cpu_mhz = (uint32_t)(mhz + 0.5);
    } else {
        /* Some VMs and ARM hosts leave MHz out of cpuinfo; cpufreq has it in kHz. */
        char text[64];
        if (path_of(inv, ROOT_SYS, path, sizeof(path), "devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
            && read_line(path, text, sizeof(text)))
            inv->cpu_mhz = (uint32_t)(strtoul(text, NULL, 10) / 1000);
    }
    return 0;
}

/* Reads MemTotal and MemAvailable (older kernels: MemFree + Buffers + Cached). */
static int read_meminfo(inventory_t *inv, char *err, size_t errlen)
{
    char path[PATH_MAX];
    bool fits = path_of(inv, ROOT_PROC, path, sizeof(path), "meminfo");
    FILE *f = fits ? fopen(path, "re") : NULL;
    if (!f) {
        int e = fits ? errno : ENAMETOOLONG;
        say(err, errlen, "inventory: cannot read %s: %s", path, strerror(e));
        return -e;
    }
    uint64_t total = 0, available = 0, free_ = 0, buffers = 0, cached = 0;
    bool have_available = false;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        char key[64];
        unsigned long long kib;
        if (sscanf(line, "%63[^:]: %llu", key, &kib) != 2 || kib > UINT64_MAX / 1024)
            continue;
        uint64_t bytes = kib * 1024;
        if (strcmp(key, "MemTotal") == 0)
            total = bytes;
        else if (strcmp(key, "MemAvailable") == 0) {
            available = bytes;
            have_available = true;
        } else if (strcmp(key, "MemFree") == 0)
            free_ = bytes;
        else if (strcmp(key, "Buffers") == 0)
            buffers = bytes;
        else if (strcmp(key, "Cached") == 0)
            cached = bytes;
    }
    fclose(f);
    if (total == 0) {
        say(err, errlen, "inventory: %s has no MemTotal line", path);
        return -EINVAL;
    }
    inv->memory_bytes = total;
    inv->memory_available_bytes = have_available ? available : free_ + buffers + cached;
    return 0;
}

static void read_loadavg(inventory_t *inv)
{
    char path[PATH_MAX], text[128];
    double l[3];
    if (path_of(inv, ROOT_PROC, path, sizeof(path), "loadavg") && read_line(path, text, sizeof(text))
        && sscanf(text, "%lf %lf %lf", &l[0], &l[1], &l[2]) == 3)
        memcpy(inv->load, l, sizeof(l));
}

/* --- network interfaces -------------------------------------------------------- */

static inventory_interface_t *interface_named(inventory_t *inv, const char *name)
{
    for (size_t i = 0; i < inv->interface_count; i++)
        if (strcmp(inv->interfaces[i].name, name) == 0)
            return &inv->interfaces[i];
    return NULL;
}

static inventory_interface_t *interface_add(inventory_t *inv, const char *name)
{
    inventory_interface_t *found = interface_named(inv, name);
    if (found)
        return found;
    inventory_interface_t *grown = realloc(inv->interfaces,
                                           (inv->interface_count + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    inv->interfaces = grown;
    inventory_interface_t *ifc = &grown[inv->interface_count++];
    memset(ifc, 0, sizeof(*ifc));
    snprintf(ifc->name, sizeof(ifc->name), "%s", name);
    return ifc;
}

static unsigned prefix_length(const struct sockaddr *netmask)
{
    if (!netmask)
        return 0;
    const unsigned char *bytes;
    size_t n;
    if (netmask->sa_family == AF_INET) {
        bytes = (const unsigned char *)&((const struct sockaddr_in *)netmask)->sin_addr;
        n = 4;
    } else if (netmask->sa_family == AF_INET6) {
        bytes = (const unsigned char *)&((const struct sockaddr_in6 *)netmask)->sin6_addr;
        n = 16;
    } else {
        return 0;
    }
    unsigned bits = 0;
    for (size_t i = 0; i < n; i++)
        bits += (unsigned)__builtin_popcount(bytes[i]);
    return bits;
}

static int collect_interfaces(inventory_t *inv, const struct ifaddrs *list)
{
    for (const struct ifaddrs *ifa = list; ifa; ifa = ifa->ifa_next) {
        if (!ifa->ifa_name)
            continue;
        /* An IPv4 alias label "eth0:1" belongs to eth0. */
        char name[CONFIG_IFNAME_MAX];
        snprintf(name, sizeof(name), "%.*s", (int)strcspn(ifa->ifa_name, ":"), ifa->ifa_name);
        inventory_interface_t *ifc = interface_add(inv, name);
        if (!ifc)
            return -ENOMEM;
        ifc->up |= (ifa->ifa_flags & IFF_UP) != 0;
        ifc->loopback |= (ifa->ifa_flags & IFF_LOOPBACK) != 0;

        const struct sockaddr *sa = ifa->ifa_addr;
        if (!sa || (sa->sa_family != AF_INET && sa->sa_family != AF_INET6))
            continue;
        if (ifc->address_count >= INVENTORY_ADDRESSES_MAX)
            continue;
        inventory_address_t *addr = &ifc->addresses[ifc->address_count];
        const void *raw = sa->sa_family == AF_INET
                              ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                              : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (!inet_ntop(sa->sa_family, raw, addr->text, sizeof(addr->text)))
            continue;
        addr->family = sa->sa_family;
        addr->prefix_len = prefix_length(ifa->ifa_netmask);
        ifc->address_count++;
    }
    /* MTU and MAC come from sysfs; a fake or missing tree leaves them unknown. */
    for (size_t i = 0; i < inv->interface_count; i++) {
        inventory_interface_t *ifc = &inv->interfaces[i];
        char path[PATH_MAX], text[64];
        if (path_of(inv, ROOT_SYS, path, sizeof(path), "class/net/%s/mtu", ifc->name)
            && read_line(path, text, sizeof(text)))
            ifc->mtu = (unsigned)strtoul(text, NULL, 10);
        if (path_of(inv, ROOT_SYS, path, sizeof(path), "class/net/%s/address", ifc->name)
            && read_line(path, text, sizeof(text)) && strlen(text) < sizeof(ifc->mac))
            snprintf(ifc->mac, sizeof(ifc->mac), "%s", text);
    }
    return 0;
}

static bool is_wildcard(const char *address)
{
    return strcmp(address, "0.0.0.0") == 0 || strcmp(address, "::") == 0;
}

/* Does the interface hold this address? Compares binary forms, so that
 * "fd00::0:1" matches "fd00::1". */
static bool holds_address(const inventory_interface_t *ifc, const char *address)
{
    unsigned char want[16], have[16];
    int family = strchr(address, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(family, address, want) != 1)
        return false;
    for (size_t i = 0; i < ifc->address_count; i++)
        if (ifc->addresses[i].family == family
            && inet_pton(family, ifc->addresses[i].text, have) == 1
            && memcmp(want, have, family == AF_INET ? 4 : 16) == 0)
            return true;
    return false;
}

static void list_interface_names(const inventory_t *inv, char *out, size_t outlen)
{
    out[0] = '\0';
    for (size_t i = 0; i < inv->interface_count; i++) {
        size_t used = strlen(out);
        snprintf(out + used, outlen - used, "%s%s", i ? ", " : "", inv->interfaces[i].name);
    }
}

/* Applies the config's service tags and the rules in inventory.h. */
static int assign_services(inventory_t *inv, const config_t *cfg, char *err, size_t errlen)
{
    char names[512];
    uint32_t tagged = 0;
    for (size_t i = 0; cfg && i < cfg->interface_count; i++) {
        inventory_interface_t *ifc = interface_named(inv, cfg->interfaces[i].name);
        if (!ifc) {
            list_interface_names(inv, names, sizeof(names));
            say(err, errlen, "[interface %s]: this host has no such interface (it has: %s)",
                cfg->interfaces[i].name, names);
            return -ENODEV;
        }
        ifc->services |= cfg->interfaces[i].services;
        tagged |= cfg->interfaces[i].services;
    }

    inventory_interface_t *management = NULL;
    if (tagged & SERVICE_MANAGEMENT) {
        for (size_t i = 0; i < inv->interface_count && !management; i++)
            if (inv->interfaces[i].services & SERVICE_MANAGEMENT)
                management = &inv->interfaces[i];
    } else if (cfg && cfg->agent.bind[0] && !is_wildcard(cfg->agent.bind)) {
        for (size_t i = 0; i < inv->interface_count && !management; i++)
            if (holds_address(&inv->interfaces[i], cfg->agent.bind))
                management = &inv->interfaces[i];
        if (!management) {
            say(err, errlen, "[agent] bind: %s is not an address of any interface on this host",
                cfg->agent.bind);
            return -EADDRNOTAVAIL;
        }
    } else {
        for (int pass = 0; pass < 2 && !management; pass++)
            for (size_t i = 0; i < inv->interface_count && !management; i++) {
                const inventory_interface_t *ifc = &inv->interfaces[i];
                if (ifc->up && ifc->address_count > 0 && (pass == 1 || !ifc->loopback))
                    management = &inv->interfaces[i];
            }
    }
    if (!management)
        return 0;   /* a host with no usable interface: nothing to tag */
    management->services |= SERVICE_MANAGEMENT;
    if (!(tagged & SERVICE_RAFT))
        management->services |= SERVICE_RAFT;
    if (!(tagged & SERVICE_GOSSIP))
        management->services |= SERVICE_GOSSIP;
    return 0;
}

/* --- PCI devices ----------------------------------------------------------------- */

static unsigned long read_hex(const inventory_t *inv, const char *device, const char *file)
{
    char path[PATH_MAX], text[32];
    if (!path_of(inv, ROOT_SYS, path, sizeof(path), "bus/pci/devices/%s/%s", device, file)
        || !read_line(path, text, sizeof(text)))
        return 0;
    return strtoul(text, NULL, 16);
}

static int compare_pci(const void *a, const void *b)
{
    return strcmp(((const inventory_pci_t *)a)->address, ((const inventory_pci_t *)b)->address);
}

static int collect_pci(inventory_t *inv)
{
    char path[PATH_MAX];
    if (!path_of(inv, ROOT_SYS, path, sizeof(path), "bus/pci/devices"))
        return 0;
    DIR *dir = opendir(path);
    if (!dir)
        return 0;   /* no PCI bus here (a container, a fake tree): no devices */
    struct dirent *entry;
    int rc = 0;
    while ((entry = readdir(dir))) {
        const char *name = entry->d_name;
        if (name[0] == '.' || strlen(name) >= sizeof(inv->pci[0].address))
            continue;
        inventory_pci_t *grown = realloc(inv->pci, (inv->pci_count + 1) * sizeof(*grown));
        if (!grown) {
            rc = -ENOMEM;
            break;
        }
        inv->pci = grown;
        inventory_pci_t *dev = &grown[inv->pci_count++];
        memset(dev, 0, sizeof(*dev));
        snprintf(dev->address, sizeof(dev->address), "%s", name);
        dev->vendor = (uint16_t)read_hex(inv, name, "vendor");
        dev->device = (uint16_t)read_hex(inv, name, "device");
        dev->subsystem_vendor = (uint16_t)read_hex(inv, name, "subsystem_vendor");
        dev->subsystem_device = (uint16_t)read_hex(inv, name, "subsystem_device");
        dev->class_code = (uint32_t)read_hex(inv, name, "class") & 0xffffff;

        char text[32];
        dev->numa_node = -1;
        if (path_of(inv, ROOT_SYS, path, sizeof(path), "bus/pci/devices/%s/numa_node", name)
            && read_line(path, text, sizeof(text)))
            dev->numa_node = atoi(text) < 0 ? -1 : atoi(text);
        dev->iommu_group = -1;
        if (path_of(inv, ROOT_SYS, path, sizeof(path), "bus/pci/devices/%s/iommu_group", name)
            && read_link_name(path, text, sizeof(text)))
            dev->iommu_group = atoi(text);
        if (path_of(inv, ROOT_SYS, path, sizeof(path), "bus/pci/devices/%s/driver", name))
            read_link_name(path, dev->driver, sizeof(dev->driver));
    }
    closedir(dir);
    qsort(inv->pci, inv->pci_count, sizeof(*inv->pci), compare_pci);
    return rc;
}

/* The PCI base class as a word, for tables and selectors. */
static const char *pci_class_name(uint32_t class_code)
{
    static const char *const names[] = {
        "unclassified", "storage", "network", "display", "multimedia", "memory", "bridge",
        "communication", "system", "input", "docking", "processor", "serial-bus", "wireless",
        "intelligent-io", "satellite", "crypto", "signal-processing", "accelerator",
        "instrumentation",
    };
    uint32_t base = class_code >> 16;
    return base < sizeof(names) / sizeof(names[0]) ? names[base] : "other";
}

/* --- construction -------------------------------------------------------------------- */

inventory_t *inventory_new_from(const config_t *cfg, const inventory_source_t *source,
                                char *err, size_t errlen)
{
    inventory_t *inv = calloc(1, sizeof(*inv));
    if (!inv) {
        say(err, errlen, "inventory: out of memory");
        return NULL;
    }
    const char *roots[3] = { source->proc_root ? source->proc_root : "/proc",
                             source->sys_root ? source->sys_root : "/sys",
                             source->dev_root ? source->dev_root : "/dev" };
    for (int i = 0; i < 3; i++)
        snprintf(inv->roots[i], sizeof(inv->roots[i]), "%s", roots[i]);

    if (source->hostname)
        snprintf(inv->hostname, sizeof(inv->hostname), "%s", source->hostname);
    else if (gethostname(inv->hostname, sizeof(inv->hostname) - 1) < 0)
        snprintf(inv->hostname, sizeof(inv->hostname), "localhost");
    copy_text(inv->name, sizeof(inv->name), cfg ? cfg->agent.name : inv->hostname);
    struct utsname uts;
    if (uname(&uts) == 0) {
        snprintf(inv->kernel, sizeof(inv->kernel), "%s", uts.release);
        snprintf(inv->arch, sizeof(inv->arch), "%s", uts.machine);
    }

    if (read_cpuinfo(inv, err, errlen) < 0 || read_meminfo(inv, err, errlen) < 0)
        goto fail;
    read_loadavg(inv);
    char path[PATH_MAX];
    inv->kvm = path_of(inv, ROOT_DEV, path, sizeof(path), "kvm") && access(path, R_OK | W_OK) == 0;

    inv->capacity_cpus = inv->cpus;
    inv->capacity_memory_bytes = inv->memory_bytes;
    if (cfg && cfg->capacity.cpus) {
        inv->capacity_cpus = cfg->capacity.cpus;
        inv->capacity_overridden = true;
    }
    if (cfg && cfg->capacity.memory_bytes) {
        inv->capacity_memory_bytes = cfg->capacity.memory_bytes;
        inv->capacity_overridden = true;
    }

    struct ifaddrs *own = NULL;
    const struct ifaddrs *list = source->ifaddrs;
    if (!list) {
        if (getifaddrs(&own) < 0) {
            say(err, errlen, "inventory: getifaddrs: %s", strerror(errno));
            goto fail;
        }
        list = own;
    }
    int rc = collect_interfaces(inv, list);
    if (own)
        freeifaddrs(own);
    if (rc < 0) {
        say(err, errlen, "inventory: out of memory");
        goto fail;
    }
    if (assign_services(inv, cfg, err, errlen) < 0)
        goto fail;
    if (collect_pci(inv) < 0) {
        say(err, errlen, "inventory: out of memory");
        goto fail;
    }
    return inv;
fail:
    inventory_destroy(&inv);
    return NULL;
}

inventory_t *inventory_new(const config_t *cfg, char *err, size_t errlen)
{
    inventory_source_t real = { 0 };
    return inventory_new_from(cfg, &real, err, errlen);
}

void inventory_destroy(inventory_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    inventory_t *inv = *self_p;
    free(inv->interfaces);
    free(inv->pci);
    free(inv);
    *self_p = NULL;
}

int inventory_refresh(inventory_t *inv)
{
    int rc = read_meminfo(inv, NULL, 0);
    read_loadavg(inv);
    return rc;
}

/* --- accessors ---------------------------------------------------------------------- */

const char *inventory_hostname(const inventory_t *inv) { return inv->hostname; }
const char *inventory_kernel(const inventory_t *inv) { return inv->kernel; }
const char *inventory_arch(const inventory_t *inv) { return inv->arch; }
uint32_t inventory_cpus(const inventory_t *inv) { return inv->cpus; }
const char *inventory_cpu_model(const inventory_t *inv) { return inv->cpu_model; }
const char *inventory_cpu_vendor(const inventory_t *inv) { return inv->cpu_vendor; }
uint32_t inventory_cpu_mhz(const inventory_t *inv) { return inv->cpu_mhz; }
uint64_t inventory_memory_bytes(const inventory_t *inv) { return inv->memory_bytes; }
uint64_t inventory_memory_available_bytes(const inventory_t *inv) { return inv->memory_available_bytes; }
bool inventory_kvm_available(const inventory_t *inv) { return inv->kvm; }
uint32_t inventory_capacity_cpus(const inventory_t *inv) { return inv->capacity_cpus; }
uint64_t inventory_capacity_memory_bytes(const inventory_t *inv) { return inv->capacity_memory_bytes; }
bool inventory_capacity_overridden(const inventory_t *inv) { return inv->capacity_overridden; }
size_t inventory_interface_count(const inventory_t *inv) { return inv->interface_count; }
size_t inventory_pci_count(const inventory_t *inv) { return inv->pci_count; }

void inventory_load(const inventory_t *inv, double load[3])
{
    memcpy(load, inv->load, sizeof(inv->load));
}

bool inventory_cpu_has(const inventory_t *inv, const char *flag)
{
    char word[64];
    if (!*flag || snprintf(word, sizeof(word), " %s ", flag) >= (int)sizeof(word))
        return false;
    return strstr(inv->cpu_flags, word) != NULL;
}

const inventory_interface_t *inventory_interface_at(const inventory_t *inv, size_t index)
{
    return index < inv->interface_count ? &inv->interfaces[index] : NULL;
}

const inventory_interface_t *inventory_interface_find(const inventory_t *inv, const char *name)
{
    return interface_named((inventory_t *)inv, name);
}

const inventory_pci_t *inventory_pci_at(const inventory_t *inv, size_t index)
{
    return index < inv->pci_count ? &inv->pci[index] : NULL;
}

const inventory_interface_t *inventory_service_interface(const inventory_t *inv, uint32_t service)
{
    for (size_t i = 0; i < inv->interface_count; i++)
        if (inv->interfaces[i].services & service)
            return &inv->interfaces[i];
    return NULL;
}

const char *inventory_service_address(const inventory_t *inv, uint32_t service)
{
    const inventory_interface_t *ifc = inventory_service_interface(inv, service);
    if (!ifc)
        return NULL;
    for (size_t i = 0; i < ifc->address_count; i++)
        if (ifc->addresses[i].family == AF_INET)
            return ifc->addresses[i].text;
    for (size_t i = 0; i < ifc->address_count; i++)
        if (strncasecmp(ifc->addresses[i].text, "fe80:", 5) != 0)
            return ifc->addresses[i].text;
    return NULL;
}

/* --- msgpack ------------------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_bool(msgpack_packer *pk, bool value)
{
    if (value)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
}

static void pack_hex(msgpack_packer *pk, unsigned long value, int digits)
{
    char text[16];
    snprintf(text, sizeof(text), "0x%0*lx", digits, value);
    pack_str(pk, text);
}

/* CPU flags worth a glance: migration compatibility, the cipher choice, KVM. */
static const char *const notable_cpu_flags[] = {
    "aes", "avx", "avx2", "avx512f", "sse4_2", "pdpe1gb", "vmx", "svm", "hypervisor",
};
#define NOTABLE_FLAGS (sizeof(notable_cpu_flags) / sizeof(notable_cpu_flags[0]))

static void pack_interface(msgpack_packer *pk, const inventory_interface_t *ifc)
{
    msgpack_pack_map(pk, 7);
    pack_str(pk, "name");
    pack_str(pk, ifc->name);
    pack_str(pk, "up");
    pack_bool(pk, ifc->up);
    pack_str(pk, "loopback");
    pack_bool(pk, ifc->loopback);
    pack_str(pk, "mtu");
    msgpack_pack_uint32(pk, ifc->mtu);
    pack_str(pk, "mac");
    pack_str(pk, ifc->mac);
    pack_str(pk, "addresses");
    msgpack_pack_array(pk, ifc->address_count);
    for (size_t i = 0; i < ifc->address_count; i++) {
        char cidr[64];
        snprintf(cidr, sizeof(cidr), "%s/%u", ifc->addresses[i].text, ifc->addresses[i].prefix_len);
        pack_str(pk, cidr);
    }
    pack_str(pk, "services");
    msgpack_pack_array(pk, (size_t)__builtin_popcount(ifc->services & SERVICE_ALL));
    for (int bit = 0; bit < SERVICE_COUNT; bit++)
        if (ifc->services & (1u << bit))
            pack_str(pk, config_service_name(1u << bit));
}

static void pack_pci(msgpack_packer *pk, const inventory_pci_t *dev)
{
    msgpack_pack_map(pk, 10);
    pack_str(pk, "address");
    pack_str(pk, dev->address);
    pack_str(pk, "vendor");
    pack_hex(pk, dev->vendor, 4);
    pack_str(pk, "device");
    pack_hex(pk, dev->device, 4);
    pack_str(pk, "subsystem_vendor");
    pack_hex(pk, dev->subsystem_vendor, 4);
    pack_str(pk, "subsystem_device");
    pack_hex(pk, dev->subsystem_device, 4);
    pack_str(pk, "class");
    pack_hex(pk, dev->class_code, 6);
    pack_str(pk, "class_name");
    pack_str(pk, pci_class_name(dev->class_code));
    pack_str(pk, "driver");
    pack_str(pk, dev->driver);
    pack_str(pk, "numa_node");
    msgpack_pack_int(pk, dev->numa_node);
    pack_str(pk, "iommu_group");
    msgpack_pack_int(pk, dev->iommu_group);
}

void inventory_pack(const inventory_t *inv, msgpack_packer *pk)
{
    msgpack_pack_map(pk, 16);
    pack_str(pk, "hostname");
    pack_str(pk, inv->hostname);
    pack_str(pk, "name");
    pack_str(pk, inv->name);
    pack_str(pk, "kernel");
    pack_str(pk, inv->kernel);
    pack_str(pk, "arch");
    pack_str(pk, inv->arch);
    pack_str(pk, "cpus");
    msgpack_pack_uint32(pk, inv->cpus);
    pack_str(pk, "cpu_model");
    pack_str(pk, inv->cpu_model);
    pack_str(pk, "cpu_vendor");
    pack_str(pk, inv->cpu_vendor);
    pack_str(pk, "cpu_mhz");
    msgpack_pack_uint32(pk, inv->cpu_mhz);

    pack_str(pk, "cpu_features");
    size_t features = 0;
    for (size_t i = 0; i < NOTABLE_FLAGS; i++)
        features += inventory_cpu_has(inv, notable_cpu_flags[i]);
    msgpack_pack_array(pk, features);
    for (size_t i = 0; i < NOTABLE_FLAGS; i++)
        if (inventory_cpu_has(inv, notable_cpu_flags[i]))
            pack_str(pk, notable_cpu_flags[i]);

    pack_str(pk, "memory_bytes");
    msgpack_pack_uint64(pk, inv->memory_bytes);
    pack_str(pk, "memory_available_bytes");
    msgpack_pack_uint64(pk, inv->memory_available_bytes);
    pack_str(pk, "load");
    msgpack_pack_array(pk, 3);
    for (int i = 0; i < 3; i++)
        msgpack_pack_double(pk, inv->load[i]);
    pack_str(pk, "kvm");
    pack_bool(pk, inv->kvm);

    pack_str(pk, "capacity");
    msgpack_pack_map(pk, 3);
    pack_str(pk, "cpus");
    msgpack_pack_uint32(pk, inv->capacity_cpus);
    pack_str(pk, "memory_bytes");
    msgpack_pack_uint64(pk, inv->capacity_memory_bytes);
    pack_str(pk, "overridden");
    pack_bool(pk, inv->capacity_overridden);

    pack_str(pk, "interfaces");
    msgpack_pack_array(pk, inv->interface_count);
    for (size_t i = 0; i < inv->interface_count; i++)
        pack_interface(pk, &inv->interfaces[i]);

    pack_str(pk, "pci_devices");
    msgpack_pack_array(pk, inv->pci_count);
    for (size_t i = 0; i < inv->pci_count; i++)
        pack_pci(pk, &inv->pci[i]);
}
