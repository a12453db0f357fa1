/* migrate_wire.c - encode and check the migration protocol's messages. */
#include "migration/migrate_wire.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

#include "migration/stream_wire.h"

static const uint8_t describe_magic[4] = { 'F', 'M', 'V', 'D' };

static int fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return -EINVAL;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= p[i];
    return acc == 0;
}

bool migration_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > VM_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++)   /* (strchr would find the NUL in "-_.") */
        if (name[i] == '\0' || (!isalnum((unsigned char)name[i]) && !strchr("-_.", name[i])))
            return false;
    return true;
}

bool migration_text_ok(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] < 0x20 || (unsigned char)text[i] > 0x7e)
            return false;
    return true;
}

static int check_describe(const migration_describe_t *d, size_t name_len, size_t cmdline_len,
                          const char **why)
{
    if (d->kind != MIGRATION_KIND_LIVE && d->kind != MIGRATION_KIND_COLD)
        return fail(why, "unknown migration kind");
    if (d->flags & ~MIGRATION_FLAG_VERIFY)
        return fail(why, "unknown flags");
    if (d->memory_bytes < VM_MIN_MEMORY || d->memory_bytes > VM_MAX_MEMORY
        || d->memory_bytes % (1u << 20))
        return fail(why, "memory size is not a whole MiB within the VM limits");
    if (d->vcpus < 1 || d->vcpus > VM_MAX_VCPUS)
        return fail(why, "vCPU count out of range");
    if (!migration_name_ok(d->name, name_len))
        return fail(why, "VM name empty, too long or with characters other than [A-Za-z0-9._-]");
    if (cmdline_len > GUEST_CMDLINE_MAX || !migration_text_ok(d->cmdline, cmdline_len))
        return fail(why, "command line too long or not printable");
    if (d->kind == MIGRATION_KIND_LIVE && (d->state_bytes || !all_zero(d->image_id, MIGRATION_HASH_BYTES)))
        return fail(why, "a live migration carries no image id or state size");
    if (d->kind == MIGRATION_KIND_COLD && (d->state_bytes == 0 || d->state_bytes > VM_STATE_MAX_BYTES))
        return fail(why, "state size out of range");
    return 0;
}

size_t migration_describe_encode(const migration_describe_t *d, uint8_t *out, size_t cap)
{
    size_t name_len = strnlen(d->name, sizeof d->name);
    size_t cmdline_len = strnlen(d->cmdline, sizeof d->cmdline);
    size_t size = MIGRATION_DESCRIBE_FIXED + name_len + cmdline_len;
    if (check_describe(d, name_len, cmdline_len, NULL) != 0 || size > cap)
        return 0;
    memcpy(out, describe_magic, 4);
    out[4] = MIGRATION_WIRE_VERSION;
    out[5] = (uint8_t)d->kind;
    stream_put_u16(out + 6, d->flags);
    stream_put_u64(out + 8, d->memory_bytes);
    stream_put_u32(out + 16, d->vcpus);
    stream_put_u16(out + 20, (uint16_t)name_len);
    stream_put_u16(out + 22, (uint16_t)cmdline_len);
    stream_put_u64(out + 24, d->state_bytes);
    memcpy(out + 32, d->image_id, MIGRATION_HASH_BYTES);
    memcpy(out + MIGRATION_DESCRIBE_FIXED, d->name, name_len);
    memcpy(out + MIGRATION_DESCRIBE_FIXED + name_len, d->cmdline, cmdline_len);
    return size;
}

int migration_describe_decode(const uint8_t *data, size_t len, migration_describe_t *d,
                              const char **why)
{
    memset(d, 0, sizeof *d);
    if (len < MIGRATION_DESCRIBE_FIXED)
        return fail(why, "description shorter than its fixed part");
    if (memcmp(data, describe_magic, 4) != 0)
        return fail(why, "not a VM description (bad magic)");
    if (data[4] != MIGRATION_WIRE_VERSION)
        return fail(why, "unsupported description version");
    size_t name_len = stream_get_u16(data + 20);
    size_t cmdline_len = stream_get_u16(data + 22);
    if (name_len > VM_NAME_MAX || cmdline_len > GUEST_CMDLINE_MAX)
        return fail(why, "name or command line too long");
    if (len != MIGRATION_DESCRIBE_FIXED + name_len + cmdline_len)
        return fail(why, "description length does not match its name and command line");
    d->kind = (migration_kind_t)data[5];
    d->flags = stream_get_u16(data + 6);
    d->memory_bytes = stream_get_u64(data + 8);
    d->vcpus = stream_get_u32(data + 16);
    d->state_bytes = stream_get_u64(data + 24);
    memcpy(d->image_id, data + 32, MIGRATION_HASH_BYTES);
    memcpy(d->name, data + MIGRATION_DESCRIBE_FIXED, name_len);
    memcpy(d->cmdline, data + MIGRATION_DESCRIBE_FIXED + name_len, cmdline_len);
    return check_describe(d, name_len, cmdline_len, why);
}

void migration_pass_end_encode(uint32_t pass, uint64_t pages, uint8_t out[MIGRATION_PASS_END_SIZE])
{
    stream_put_u32(out, pass);
    stream_put_u32(out + 4, 0);
    stream_put_u64(out + 8, pages);
}

int migration_pass_end_decode(const uint8_t *data, size_t len, uint32_t *pass, uint64_t *pages,
                              const char **why)
{
    if (len != MIGRATION_PASS_END_SIZE)
        return fail(why, "pass end record of the wrong size");
    if (stream_get_u32(data + 4) != 0)
        return fail(why, "reserved pass end bytes are not zero");
    *pass = stream_get_u32(data);
    *pages = stream_get_u64(data + 8);
    if (*pass == 0)
        return fail(why, "pass 0");
    return 0;
}

size_t migration_state_piece_encode(uint32_t total, uint32_t offset, const uint8_t *piece,
                                    size_t len, uint8_t *out, size_t cap)
{
    if (len == 0 || len > MIGRATION_STATE_PIECE_MAX || total > VM_STATE_MAX_BYTES
        || (uint64_t)offset + len > total || MIGRATION_STATE_PIECE_HEADER + len > cap)
        return 0;
    stream_put_u32(out, total);
    stream_put_u32(out + 4, offset);
    memcpy(out + MIGRATION_STATE_PIECE_HEADER, piece, len);
    return MIGRATION_STATE_PIECE_HEADER + len;
}

int migration_state_piece_apply(migration_state_assembly_t *a, const uint8_t *data, size_t len,
                                const char **why)
{
    if (len <= MIGRATION_STATE_PIECE_HEADER)
        return fail(why, "state piece without data");
    uint32_t total = stream_get_u32(data);
    uint32_t offset = stream_get_u32(data + 4);
    size_t piece = len - MIGRATION_STATE_PIECE_HEADER;
    if (total == 0 || total > VM_STATE_MAX_BYTES)
        return fail(why, "state size out of range");
    if (a->total && total != a->total)
        return fail(why, "state pieces disagree on the total size");
    if (offset != a->have)
        return fail(why, "state piece out of order");
    if ((uint64_t)offset + piece > total)
        return fail(why, "state piece runs past the total size");
    memcpy(a->buf + offset, data + MIGRATION_STATE_PIECE_HEADER, piece);
    a->total = total;
    a->have += (uint32_t)piece;
    return 0;
}

bool migration_state_complete(const migration_state_assembly_t *a)
{
    return a->total && a->have == a->total;
}

size_t migration_outcome_encode(bool committed, const char *reason, uint8_t *out, size_t cap)
{
    size_t reason_len = reason ? strnlen(reason, MIGRATION_REASON_MAX) : 0;
    if (8 + reason_len > cap)
        return 0;
    memset(out, 0, 8);
    out[0] = committed ? 1 : 0;
    if (reason_len)
        memcpy(out + 8, reason, reason_len);
    return 8 + reason_len;
}

int migration_outcome_decode(const uint8_t *data, size_t len, bool *committed,
                             char reason[MIGRATION_REASON_MAX + 1], const char **why)
{
    if (len < 8 || len > MIGRATION_OUTCOME_MAX)
        return fail(why, "outcome record of the wrong size");
    if (data[0] > 1 || !all_zero(data + 1, 7))
        return fail(why, "outcome is neither committed nor aborted");
    *committed = data[0] == 1;
    size_t n = len - 8;
    for (size_t i = 0; i < n; i++)
        reason[i] = data[8 + i] >= 0x20 && data[8 + i] < 0x7f ? (char)data[8 + i] : '?';
    reason[n] = '\0';
    return 0;
}

void migration_u64_encode(uint64_t value, uint8_t out[8])
{
    stream_put_u64(out, value);
}

int migration_u64_decode(const uint8_t *data, size_t len, uint64_t *value, const char **why)
{
    if (len != 8)
        return fail(why, "expected exactly 8 bytes");
    *value = stream_get_u64(data);
    return 0;
}

void migration_verified_encode(bool hashed, const uint8_t hash[MIGRATION_HASH_BYTES],
                               uint8_t out[MIGRATION_VERIFIED_SIZE])
{
    memset(out, 0, 8);
    out[0] = hashed ? 1 : 0;
    if (hashed)
        memcpy(out + 8, hash, MIGRATION_HASH_BYTES);
    else
        memset(out + 8, 0, MIGRATION_HASH_BYTES);
}

int migration_verified_decode(const uint8_t *data, size_t len, bool *hashed,
                              uint8_t hash[MIGRATION_HASH_BYTES], const char **why)
{
    if (len != MIGRATION_VERIFIED_SIZE)
        return fail(why, "verification reply of the wrong size");
    if (data[0] > 1 || !all_zero(data + 1, 7))
        return fail(why, "verification reply with bad flags");
    *hashed = data[0] == 1;
    memcpy(hash, data + 8, MIGRATION_HASH_BYTES);
    if (!*hashed && !all_zero(hash, MIGRATION_HASH_BYTES))
        return fail(why, "a hash where none was computed");
    return 0;
}
