/* proc_state.c - the process backend's saved state format (proc_state.h). */
#include "vmm/proc_state.h"
#include "vmm/proc_protocol.h"
#include "vmm/vm.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define HEADER_BYTES 16u
#define FLAG_STARTED 1u

static uint8_t *put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); return p + 2; }
static uint8_t *put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); return p + 4; }
static uint8_t *put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); return p + 8; }
static uint16_t get16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

int proc_state_encode(const proc_state_t *s, uint8_t *buf, size_t cap, size_t *len)
{
    if (cap < PROC_STATE_BYTES)
        return -ENOSPC;
    uint8_t *p = buf;
    p = put32(p, PROC_STATE_MAGIC);
    p = put16(p, PROC_STATE_VERSION);
    p = put16(p, 0);
    p = put32(p, PROC_STATE_BYTES);
    p = put32(p, 0);
    p = put64(p, s->memory_bytes);
    p = put32(p, s->vcpus);
    p = put32(p, s->started ? FLAG_STARTED : 0);
    p = put64(p, s->base);
    p = put64(p, s->clock_ns);
    guest_report_encode(&s->report, p);
    *len = PROC_STATE_BYTES;
    return 0;
}

#define BAD(...)                               \
    do {                                       \
        snprintf(err, errlen, __VA_ARGS__);    \
        return -EINVAL;                        \
    } while (0)

int proc_state_decode(const uint8_t *buf, size_t len, proc_state_t *out, char *err, size_t errlen)
{
    if (len < HEADER_BYTES)
        BAD("process vm state: %zu bytes is shorter than the header", len);
    if (get32(buf) != PROC_STATE_MAGIC)
        BAD("process vm state: bad magic (not a ferry process VM state)");
    unsigned version = get16(buf + 4);
    if (version != 1 && version != PROC_STATE_VERSION)
        BAD("process vm state: version %u (this build reads versions 1..%u)", version,
            PROC_STATE_VERSION);
    if (get16(buf + 6) != 0 || get32(buf + 12) != 0)
        BAD("process vm state: nonzero reserved header fields");
    size_t want = version == 1 ? PROC_STATE_V1_BYTES : PROC_STATE_BYTES;
    if (get32(buf + 8) != len || len != want)
        BAD("process vm state: header says %u bytes, got %zu (version %u is %zu)",
            get32(buf + 8), len, version, want);

    proc_state_t s = {0};
    const uint8_t *p = buf + HEADER_BYTES;
    s.memory_bytes = get64(p);
    s.vcpus = get32(p + 8);
    uint32_t flags = get32(p + 12);
    s.base = get64(p + 16);
    s.clock_ns = get64(p + 24);
    if (s.memory_bytes < VM_MIN_MEMORY || s.memory_bytes > VM_MAX_MEMORY ||
        s.memory_bytes % (1u << 20))
        BAD("process vm state: memory of %llu bytes is not a whole MiB count in %llu MiB..%llu GiB",
            (unsigned long long)s.memory_bytes, VM_MIN_MEMORY >> 20, VM_MAX_MEMORY >> 30);
    if (s.vcpus < 1 || s.vcpus > VM_MAX_VCPUS)
        BAD("process vm state: %u vCPUs (valid: 1..%d)", s.vcpus, VM_MAX_VCPUS);
    if (flags & ~FLAG_STARTED)
        BAD("process vm state: unknown flags 0x%x", flags);
    s.started = flags & FLAG_STARTED;
    if (!proc_base_known(s.base))
        BAD("process vm state: guest memory base 0x%llx is not one this build maps",
            (unsigned long long)s.base);
    if (s.clock_ns > INT64_MAX)
        BAD("process vm state: guest clock %llu ns is out of range",
            (unsigned long long)s.clock_ns);
    char why[96];
    if (guest_report_decode(p + 32, len - HEADER_BYTES - 32, &s.report, why, sizeof why) < 0)
        BAD("process vm state: report registers: %s", why);
    *out = s;
    return 0;
}
