/* swim_record.c - encoding of the host-state record; see swim_record.h.
 *
 * Wire shape (a msgpack array, fields by position; a decoder ignores
 * trailing fields it does not know, so later versions may append):
 *
 *   [cpus, cpu_mhz, mem_bytes, used_cpu_mhz, used_mem_bytes,
 *    agent_version, raft_addr, control_addr, migration_addr, curve_public_key,
 *    [[iface_name, address, [service, ...]], ...],
 *    [[device_id, class, attrs], ...]]
 */
#include "agent/membership/swim_record.h"
#include "agent/membership/swim_wire.h"

#include <errno.h>
#include <string.h>

#define RECORD_FIELDS 12

static bool fits(const char *s, size_t cap)
{
    return strnlen(s, cap) < cap;
}

int swim_record_encode(const swim_record_t *rec, uint8_t *buf, size_t cap, size_t *len)
{
    if (rec->iface_count > SWIM_RECORD_MAX_IFACES || rec->device_count > SWIM_RECORD_MAX_DEVICES)
        return -EINVAL;
    for (int i = 0; i < rec->iface_count; i++)
        if (rec->ifaces[i].service_count > SWIM_RECORD_MAX_SERVICES)
            return -EINVAL;
    if (cap > SWIM_RECORD_MAX)
        cap = SWIM_RECORD_MAX;

    wire_writer_t w;
    wire_writer_init(&w, buf, cap);
    msgpack_packer *pk = &w.pk;
    msgpack_pack_array(pk, RECORD_FIELDS);
    msgpack_pack_uint32(pk, rec->cpus);
    msgpack_pack_uint32(pk, rec->cpu_mhz);
    msgpack_pack_uint64(pk, rec->mem_bytes);
    msgpack_pack_uint64(pk, rec->used_cpu_mhz);
    msgpack_pack_uint64(pk, rec->used_mem_bytes);
    /* Fixed-size fields may lack a NUL only through a caller bug; strnlen in
     * fits() keeps even that from reading past the field. */
    const char *strings[] = { rec->agent_version, rec->raft_addr, rec->control_addr,
                              rec->migration_addr, rec->curve_public_key };
    const size_t caps[] = { SWIM_VERSION_CAP, SWIM_HOSTPORT_CAP, SWIM_HOSTPORT_CAP,
                            SWIM_HOSTPORT_CAP, SWIM_CURVE_KEY_CAP };
    for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
        if (!fits(strings[i], caps[i]))
            return -EINVAL;
        wire_write_str(&w, strings[i]);
    }
    msgpack_pack_array(pk, rec->iface_count);
    for (int i = 0; i < rec->iface_count; i++) {
        const swim_iface_t *ifc = &rec->ifaces[i];
        if (!fits(ifc->name, sizeof(ifc->name)) || !fits(ifc->address, sizeof(ifc->address)))
            return -EINVAL;
        msgpack_pack_array(pk, 3);
        wire_write_str(&w, ifc->name);
        wire_write_str(&w, ifc->address);
        msgpack_pack_array(pk, ifc->service_count);
        for (int s = 0; s < ifc->service_count; s++) {
            if (!fits(ifc->services[s], SWIM_SERVICE_CAP))
                return -EINVAL;
            wire_write_str(&w, ifc->services[s]);
        }
    }
    msgpack_pack_array(pk, rec->device_count);
    for (int i = 0; i < rec->device_count; i++) {
        const swim_device_t *dev = &rec->devices[i];
        if (!fits(dev->id, sizeof(dev->id)) || !fits(dev->class_name, sizeof(dev->class_name)) ||
            !fits(dev->attrs, sizeof(dev->attrs)))
            return -EINVAL;
        msgpack_pack_array(pk, 3);
        wire_write_str(&w, dev->id);
        wire_write_str(&w, dev->class_name);
        wire_write_str(&w, dev->attrs);
    }
    if (w.overflow)
        return -EMSGSIZE;
    *len = w.len;
    return 0;
}

static int decode_iface(wire_reader_t *r, swim_iface_t *ifc)
{
    uint32_t fields, services;
    if (wire_read_array(r, &fields, 3, 64, "record.iface") < 0 ||
        wire_read_str(r, ifc->name, sizeof(ifc->name), "record.iface.name") < 0 ||
        wire_read_str(r, ifc->address, sizeof(ifc->address), "record.iface.address") < 0 ||
        wire_read_array(r, &services, 0, SWIM_RECORD_MAX_SERVICES, "record.iface.services") < 0)
        return -EBADMSG;
    ifc->service_count = (uint8_t)services;
    for (uint32_t s = 0; s < services; s++)
        if (wire_read_str(r, ifc->services[s], SWIM_SERVICE_CAP, "record.iface.service") < 0)
            return -EBADMSG;
    return wire_skip_n(r, fields - 3, "record.iface.extra");
}

static int decode_device(wire_reader_t *r, swim_device_t *dev)
{
    uint32_t fields;
    if (wire_read_array(r, &fields, 3, 64, "record.device") < 0 ||
        wire_read_str(r, dev->id, sizeof(dev->id), "record.device.id") < 0 ||
        wire_read_str(r, dev->class_name, sizeof(dev->class_name), "record.device.class") < 0 ||
        wire_read_str(r, dev->attrs, sizeof(dev->attrs), "record.device.attrs") < 0)
        return -EBADMSG;
    return wire_skip_n(r, fields - 3, "record.device.extra");
}

static int decode_fields(wire_reader_t *r, swim_record_t *rec)
{
    uint32_t fields, n;
    if (wire_read_array(r, &fields, RECORD_FIELDS, 64, "record") < 0)
        return -EBADMSG;
    if (wire_read_u32(r, &rec->cpus, "record.cpus") < 0 ||
        wire_read_u32(r, &rec->cpu_mhz, "record.cpu_mhz") < 0 ||
        wire_read_uint(r, &rec->mem_bytes, "record.mem_bytes") < 0 ||
        wire_read_uint(r, &rec->used_cpu_mhz, "record.used_cpu_mhz") < 0 ||
        wire_read_uint(r, &rec->used_mem_bytes, "record.used_mem_bytes") < 0 ||
        wire_read_str(r, rec->agent_version, sizeof(rec->agent_version), "record.agent_version") < 0 ||
        wire_read_str(r, rec->raft_addr, sizeof(rec->raft_addr), "record.raft_addr") < 0 ||
        wire_read_str(r, rec->control_addr, sizeof(rec->control_addr), "record.control_addr") < 0 ||
        wire_read_str(r, rec->migration_addr, sizeof(rec->migration_addr), "record.migration_addr") < 0 ||
        wire_read_str(r, rec->curve_public_key, sizeof(rec->curve_public_key),
                      "record.curve_public_key") < 0)
        return -EBADMSG;
    if (wire_read_array(r, &n, 0, SWIM_RECORD_MAX_IFACES, "record.ifaces") < 0)
        return -EBADMSG;
    rec->iface_count = (uint8_t)n;
    for (uint32_t i = 0; i < n; i++)
        if (decode_iface(r, &rec->ifaces[i]) < 0)
            return -EBADMSG;
    if (wire_read_array(r, &n, 0, SWIM_RECORD_MAX_DEVICES, "record.devices") < 0)
        return -EBADMSG;
    rec->device_count = (uint8_t)n;
    for (uint32_t i = 0; i < n; i++)
        if (decode_device(r, &rec->devices[i]) < 0)
            return -EBADMSG;
    return wire_skip_n(r, fields - RECORD_FIELDS, "record.extra");
}

int swim_record_decode(const uint8_t *buf, size_t len, swim_record_t *rec,
                       const char **why, size_t *at)
{
    memset(rec, 0, sizeof(*rec));
    wire_reader_t r;
    wire_reader_init(&r, buf, len);
    int rc = decode_fields(&r, rec);
    if (rc == 0 && !wire_reader_done(&r))
        rc = wire_fail(&r, "record: trailing bytes");
    if (rc < 0) {
        if (why)
            *why = r.error;
        if (at)
            *at = r.error_at;
        memset(rec, 0, sizeof(*rec));
        return -EBADMSG;
    }
    return 0;
}

static int copy_field(char *dst, size_t cap, const char *src)
{
    size_t len = src ? strlen(src) : 0;
    if (len >= cap)
        return -EINVAL;
    memcpy(dst, src ? src : "", len);
    dst[len] = '\0';
    return 0;
}

int swim_record_add_iface(swim_record_t *rec, const char *name, const char *address,
                          const char *services)
{
    if (rec->iface_count >= SWIM_RECORD_MAX_IFACES)
        return -ENOSPC;
    swim_iface_t ifc = { 0 };
    if (copy_field(ifc.name, sizeof(ifc.name), name) < 0 ||
        copy_field(ifc.address, sizeof(ifc.address), address) < 0)
        return -EINVAL;
    const char *p = services ? services : "";
    while (*p) {
        size_t len = strcspn(p, ",");
        if (len > 0) {
            if (ifc.service_count >= SWIM_RECORD_MAX_SERVICES)
                return -ENOSPC;
            if (len >= SWIM_SERVICE_CAP)
                return -EINVAL;
            memcpy(ifc.services[ifc.service_count], p, len);
            ifc.services[ifc.service_count][len] = '\0';
            ifc.service_count++;
        }
        p += len;
        if (*p == ',')
            p++;
    }
    rec->ifaces[rec->iface_count++] = ifc;
    return 0;
}

int swim_record_add_device(swim_record_t *rec, const char *id, const char *class_name,
                           const char *attrs)
{
    if (rec->device_count >= SWIM_RECORD_MAX_DEVICES)
        return -ENOSPC;
    swim_device_t dev = { 0 };
    if (copy_field(dev.id, sizeof(dev.id), id) < 0 ||
        copy_field(dev.class_name, sizeof(dev.class_name), class_name) < 0 ||
        copy_field(dev.attrs, sizeof(dev.attrs), attrs) < 0)
        return -EINVAL;
    rec->devices[rec->device_count++] = dev;
    return 0;
}

bool swim_iface_has_service(const swim_iface_t *ifc, const char *service)
{
    for (int i = 0; i < ifc->service_count && i < SWIM_RECORD_MAX_SERVICES; i++)
        if (strcmp(ifc->services[i], service) == 0)
            return true;
    return false;
}
