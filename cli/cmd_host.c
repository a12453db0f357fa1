/* cmd_host.c - ferryctl host ... */
#include "cli/commands.h"
#include "cli/table.h"
#include "common/wire.h"

#include <string.h>

static const msgpack_object *field(const msgpack_object *map, const char *key)
{
    return wire_map_find(map, key);
}

static void print_pair(FILE *out, const char *label, const msgpack_object *value)
{
    char buf[512];
    fprintf(out, "%-18s %s\n", label, table_cell(value, buf, sizeof(buf)));
}

static void print_bytes_pair(FILE *out, const char *label, const msgpack_object *value)
{
    char buf[64];
    if (value && value->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        fprintf(out, "%-18s %s\n", label, table_bytes(value->via.u64, buf, sizeof(buf)));
    else
        fprintf(out, "%-18s -\n", label);
}

static void render_host_show(const msgpack_object *result, FILE *out)
{
    const msgpack_object *inv = field(result, "inventory");
    print_pair(out, "name", field(result, "name"));
    print_pair(out, "cluster", field(result, "cluster"));
    print_pair(out, "version", field(result, "version"));
    print_pair(out, "control", field(result, "control_endpoint"));
    print_pair(out, "vm backend", field(result, "vm_backend"));
    print_pair(out, "cpus", field(inv, "cpus"));
    print_pair(out, "cpu model", field(inv, "cpu_model"));
    print_pair(out, "cpu MHz", field(inv, "cpu_mhz"));
    print_bytes_pair(out, "memory", field(inv, "memory_bytes"));
    print_bytes_pair(out, "memory available", field(inv, "memory_available_bytes"));
    const msgpack_object *capacity = field(inv, "capacity");
    if (capacity) {
        char cpus[32], mem[64];
        const msgpack_object *mem_obj = field(capacity, "memory_bytes");
        const msgpack_object *over = field(capacity, "overridden");
        fprintf(out, "%-18s %s cpus, %s%s\n", "capacity", table_cell(field(capacity, "cpus"), cpus, sizeof(cpus)),
                mem_obj && mem_obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                    ? table_bytes(mem_obj->via.u64, mem, sizeof(mem)) : "-",
                over && over->type == MSGPACK_OBJECT_BOOLEAN && over->via.boolean ? " (set in config)" : "");
    }

    const msgpack_object *ifaces = field(inv, "interfaces");
    if (ifaces && ifaces->type == MSGPACK_OBJECT_ARRAY) {
        fprintf(out, "\n");
        table_t *t = table_new(3, "INTERFACE", "ADDRESSES", "SERVICES");
        for (uint32_t i = 0; i < ifaces->via.array.size; i++) {
            const msgpack_object *iface = &ifaces->via.array.ptr[i];
            char name[64], addrs[512], services[256];
            table_add(t, table_cell(field(iface, "name"), name, sizeof(name)),
                      table_cell(field(iface, "addresses"), addrs, sizeof(addrs)),
                      table_cell(field(iface, "services"), services, sizeof(services)));
        }
        table_print(t, out);
        table_destroy(&t);
    }
    const msgpack_object *pci = field(inv, "pci_devices");
    if (pci && pci->type == MSGPACK_OBJECT_ARRAY && pci->via.array.size > 0) {
        fprintf(out, "\n");
        table_t *t = table_new(5, "PCI ADDRESS", "VENDOR", "DEVICE", "CLASS", "DRIVER");
        for (uint32_t i = 0; i < pci->via.array.size; i++) {
            const msgpack_object *dev = &pci->via.array.ptr[i];
            char a[32], v[16], d[16], c[16], drv[64];
            table_add(t, table_cell(field(dev, "address"), a, sizeof(a)), table_cell(field(dev, "vendor"), v, sizeof(v)),
                      table_cell(field(dev, "device"), d, sizeof(d)), table_cell(field(dev, "class"), c, sizeof(c)),
                      table_cell(field(dev, "driver"), drv, sizeof(drv)));
        }
        table_print(t, out);
        table_destroy(&t);
    }
}

static void render_host_list(const msgpack_object *result, FILE *out)
{
    const msgpack_object *members = field(result, "members");
    if (!members || members->type != MSGPACK_OBJECT_ARRAY)
        return;
    table_t *t = table_new(8, "NAME", "ADDRESS", "STATE", "INCARNATION", "CPUS", "MEMORY", "USED", "SERVICES");
    for (uint32_t i = 0; i < members->via.array.size; i++) {
        const msgpack_object *m = &members->via.array.ptr[i];
        char name[80], addr[80], state[16], inc[24], cpus[16], mem[32], used[32], services[256] = "";
        const msgpack_object *mem_obj = field(m, "mem_bytes"), *used_obj = field(m, "used_mem_bytes");
        const msgpack_object *ifaces = field(m, "interfaces");
        if (ifaces && ifaces->type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t j = 0; j < ifaces->via.array.size; j++) {
                char svc[128], ifname[32];
                snprintf(services + strlen(services), sizeof(services) - strlen(services), "%s%s:%s",
                         j ? " " : "", table_cell_or(&ifaces->via.array.ptr[j], "name", ifname, sizeof(ifname)),
                         table_cell_or(&ifaces->via.array.ptr[j], "services", svc, sizeof(svc)));
            }
        table_add(t, table_cell_or(m, "name", name, sizeof(name)), table_cell_or(m, "address", addr, sizeof(addr)),
                  table_cell_or(m, "state", state, sizeof(state)),
                  table_cell_or(m, "incarnation", inc, sizeof(inc)), table_cell_or(m, "cpus", cpus, sizeof(cpus)),
                  mem_obj && mem_obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                      ? table_bytes(mem_obj->via.u64, mem, sizeof(mem)) : "-",
                  used_obj && used_obj->type == MSGPACK_OBJECT_POSITIVE_INTEGER
                      ? table_bytes(used_obj->via.u64, used, sizeof(used)) : "-",
                  services[0] ? services : "-");
    }
    table_print(t, out);
    table_destroy(&t);
}

const cli_command_t cli_host_commands[] = {
    { "host list", "host.list", "", "every member: address, state, incarnation, capacity and usage, services",
      NULL, render_host_list, NULL },
    { "host show", "host.show", "", "show this agent's host: CPUs, memory, interfaces, services, PCI devices",
      NULL, render_host_show, NULL },
    { NULL },
};
