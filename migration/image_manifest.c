/* image_manifest.c - the image manifest and the cold-copy journal: byte
 * layouts (image.h) and their bounded decoders. Pure. */
#include "migration/image.h"

#include <errno.h>
#include <string.h>
#include <sodium.h>

#include "migration/migrate_wire.h"
#include "migration/stream_wire.h"

static const uint8_t manifest_magic[4] = { 'F', 'I', 'M', 'G' };
static const uint8_t journal_magic[4] = { 'F', 'J', 'R', 'N' };
#define IMAGE_FORMAT_VERSION 1

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

static void checksum(const uint8_t *data, size_t len, uint8_t out[IMAGE_HASH_BYTES])
{
    crypto_generichash(out, IMAGE_HASH_BYTES, data, len, NULL, 0);
}

static int check_manifest(const image_manifest_t *m, size_t name_len, size_t cmdline_len,
                          const char **why)
{
    if (m->memory_bytes < VM_MIN_MEMORY || m->memory_bytes > VM_MAX_MEMORY
        || m->memory_bytes % (1u << 20))
        return fail(why, "memory size is not a whole MiB within the VM limits");
    if (m->vcpus < 1 || m->vcpus > VM_MAX_VCPUS)
        return fail(why, "vCPU count out of range");
    if (m->state_bytes == 0 || m->state_bytes > VM_STATE_MAX_BYTES)
        return fail(why, "state size out of range");
    if (!migration_name_ok(m->name, name_len))
        return fail(why, "VM name empty, too long or with characters other than [A-Za-z0-9._-]");
    if (cmdline_len > GUEST_CMDLINE_MAX || !migration_text_ok(m->cmdline, cmdline_len))
        return fail(why, "command line too long or not printable");
    return 0;
}

size_t image_manifest_encode(const image_manifest_t *m, uint8_t *out, size_t cap)
{
    size_t name_len = strnlen(m->name, sizeof m->name);
    size_t cmdline_len = strnlen(m->cmdline, sizeof m->cmdline);
    size_t body = IMAGE_MANIFEST_FIXED + name_len + cmdline_len;
    if (check_manifest(m, name_len, cmdline_len, NULL) != 0 || body + IMAGE_HASH_BYTES > cap)
        return 0;
    memset(out, 0, IMAGE_MANIFEST_FIXED);
    memcpy(out, manifest_magic, 4);
    stream_put_u16(out + 4, IMAGE_FORMAT_VERSION);
    stream_put_u64(out + 8, m->memory_bytes);
    stream_put_u32(out + 16, m->vcpus);
    stream_put_u32(out + 20, m->state_bytes);
    stream_put_u16(out + 24, (uint16_t)name_len);
    stream_put_u16(out + 26, (uint16_t)cmdline_len);
    memcpy(out + 32, m->memory_hash, IMAGE_HASH_BYTES);
    memcpy(out + 64, m->state_hash, IMAGE_HASH_BYTES);
    memcpy(out + IMAGE_MANIFEST_FIXED, m->name, name_len);
    memcpy(out + IMAGE_MANIFEST_FIXED + name_len, m->cmdline, cmdline_len);
    checksum(out, body, out + body);
    return body + IMAGE_HASH_BYTES;
}

int image_manifest_decode(const uint8_t *data, size_t len, image_manifest_t *m, const char **why)
{
    memset(m, 0, sizeof *m);
    if (len < IMAGE_MANIFEST_FIXED + IMAGE_HASH_BYTES)
        return fail(why, "manifest shorter than its fixed part");
    if (memcmp(data, manifest_magic, 4) != 0)
        return fail(why, "not an image manifest (bad magic)");
    if (stream_get_u16(data + 4) != IMAGE_FORMAT_VERSION)
        return fail(why, "unsupported manifest version");
    if (!all_zero(data + 6, 2) || !all_zero(data + 28, 4))
        return fail(why, "reserved manifest bytes are not zero");
    size_t name_len = stream_get_u16(data + 24);
    size_t cmdline_len = stream_get_u16(data + 26);
    if (name_len > VM_NAME_MAX || cmdline_len > GUEST_CMDLINE_MAX)
        return fail(why, "name or command line too long");
    size_t body = IMAGE_MANIFEST_FIXED + name_len + cmdline_len;
    if (len != body + IMAGE_HASH_BYTES)
        return fail(why, "manifest length does not match its name and command line");
    uint8_t sum[IMAGE_HASH_BYTES];
    checksum(data, body, sum);
    if (sodium_memcmp(sum, data + body, IMAGE_HASH_BYTES) != 0)
        return fail(why, "manifest checksum does not match (corrupted file)");
    m->memory_bytes = stream_get_u64(data + 8);
    m->vcpus = stream_get_u32(data + 16);
    m->state_bytes = stream_get_u32(data + 20);
    memcpy(m->memory_hash, data + 32, IMAGE_HASH_BYTES);
    memcpy(m->state_hash, data + 64, IMAGE_HASH_BYTES);
    memcpy(m->name, data + IMAGE_MANIFEST_FIXED, name_len);
    memcpy(m->cmdline, data + IMAGE_MANIFEST_FIXED + name_len, cmdline_len);
    return check_manifest(m, name_len, cmdline_len, why);
}

int image_manifest_id(const image_manifest_t *m, uint8_t id[IMAGE_HASH_BYTES])
{
    uint8_t buf[IMAGE_MANIFEST_MAX];
    size_t len = image_manifest_encode(m, buf, sizeof buf);
    if (len == 0)
        return -EINVAL;
    memcpy(id, buf + len - IMAGE_HASH_BYTES, IMAGE_HASH_BYTES);
    return 0;
}

void image_journal_encode(const image_journal_t *j, uint8_t out[IMAGE_JOURNAL_SIZE])
{
    memset(out, 0, IMAGE_JOURNAL_SIZE);
    memcpy(out, journal_magic, 4);
    stream_put_u16(out + 4, IMAGE_FORMAT_VERSION);
    memcpy(out + 8, j->image_id, IMAGE_HASH_BYTES);
    stream_put_u64(out + 40, j->pages_done);
    checksum(out, 48, out + 48);
}

int image_journal_decode(const uint8_t *data, size_t len, image_journal_t *j, const char **why)
{
    memset(j, 0, sizeof *j);
    if (len != IMAGE_JOURNAL_SIZE)
        return fail(why, "journal of the wrong size");
    if (memcmp(data, journal_magic, 4) != 0)
        return fail(why, "not a journal (bad magic)");
    if (stream_get_u16(data + 4) != IMAGE_FORMAT_VERSION || !all_zero(data + 6, 2))
        return fail(why, "unsupported journal version");
    uint8_t sum[IMAGE_HASH_BYTES];
    checksum(data, 48, sum);
    if (sodium_memcmp(sum, data + 48, IMAGE_HASH_BYTES) != 0)
        return fail(why, "journal checksum does not match (torn or corrupted)");
    memcpy(j->image_id, data + 8, IMAGE_HASH_BYTES);
    j->pages_done = stream_get_u64(data + 40);
    return 0;
}
