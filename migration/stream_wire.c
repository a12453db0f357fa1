/* stream_wire.c - encode and check the migration stream's messages. */
#include "migration/stream_wire.h"

#include <string.h>

static const uint8_t magic[4] = { 'F', 'M', 'I', 'G' };

void stream_put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

void stream_put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void stream_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

uint16_t stream_get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

uint32_t stream_get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t stream_get_u64(const uint8_t *p)
{
    return (uint64_t)stream_get_u32(p) | (uint64_t)stream_get_u32(p + 4) << 32;
}

static int fail(const char **why, const char *reason)
{
    if (why)
        *why = reason;
    return STREAM_ERR_PROTOCOL;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    uint8_t acc = 0;
    for (size_t i = 0; i < len; i++)
        acc |= p[i];
    return acc == 0;
}

/* The 24-byte preamble HELLO and WELCOME share. */
static void put_preamble(uint8_t *out, uint8_t type, uint16_t streams, uint32_t chunk_bytes,
                         uint32_t window, uint8_t cipher_byte)
{
    memcpy(out, magic, 4);
    out[4] = STREAM_WIRE_VERSION;
    out[5] = type;
    stream_put_u16(out + 6, streams);
    stream_put_u32(out + 8, chunk_bytes);
    stream_put_u32(out + 12, window);
    out[16] = cipher_byte;
    memset(out + 17, 0, 7);
}

static int check_preamble(const uint8_t *data, size_t len, size_t size, uint8_t type,
                          const char **why)
{
    if (len < 6)
        return fail(why, "handshake message shorter than its preamble");
    if (memcmp(data, magic, 4) != 0)
        return fail(why, "not a ferry migration handshake (bad magic)");
    if (data[4] != STREAM_WIRE_VERSION)
        return fail(why, "unsupported protocol version");
    if (data[5] != type)
        return fail(why, "unexpected handshake message type");
    if (len != size)
        return fail(why, "handshake message has the wrong length");
    if (!all_zero(data + 17, 7))
        return fail(why, "reserved handshake bytes are not zero");
    return 0;
}

static int check_parameters(uint16_t streams, uint32_t chunk_bytes, uint32_t window,
                            const char **why)
{
    if (streams < 1 || streams > STREAM_MAX_STREAMS)
        return fail(why, "stream count out of range");
    if (chunk_bytes < STREAM_MIN_CHUNK_BYTES || chunk_bytes > STREAM_MAX_CHUNK_BYTES)
        return fail(why, "chunk size out of range");
    if (window < 1 || window > STREAM_MAX_WINDOW)
        return fail(why, "window out of range");
    return 0;
}

void stream_hello_encode(const stream_hello_t *hello, uint8_t out[STREAM_HELLO_SIZE])
{
    put_preamble(out, STREAM_MSG_HELLO, hello->streams, hello->chunk_bytes, hello->window,
                 hello->ciphers);
    memcpy(out + 24, hello->migration_id, STREAM_MIGRATION_ID_BYTES);
    memcpy(out + 40, hello->identity, STREAM_KEY_BYTES);
    memcpy(out + 72, hello->ephemeral, STREAM_KEY_BYTES);
    memcpy(out + STREAM_HELLO_MAC_AT, hello->mac, STREAM_MAC_BYTES);
}

int stream_hello_decode(const uint8_t *data, size_t len, stream_hello_t *hello, const char **why)
{
    int rc = check_preamble(data, len, STREAM_HELLO_SIZE, STREAM_MSG_HELLO, why);
    if (rc)
        return rc;
    hello->streams = stream_get_u16(data + 6);
    hello->chunk_bytes = stream_get_u32(data + 8);
    hello->window = stream_get_u32(data + 12);
    hello->ciphers = data[16];
    rc = check_parameters(hello->streams, hello->chunk_bytes, hello->window, why);
    if (rc)
        return rc;
    uint8_t known = 1 << STREAM_CIPHER_AES256GCM | 1 << STREAM_CIPHER_XCHACHA20POLY1305;
    if (hello->ciphers == 0 || (hello->ciphers & ~known))
        return fail(why, "offered ciphers are empty or unknown");
    memcpy(hello->migration_id, data + 24, STREAM_MIGRATION_ID_BYTES);
    memcpy(hello->identity, data + 40, STREAM_KEY_BYTES);
    memcpy(hello->ephemeral, data + 72, STREAM_KEY_BYTES);
    memcpy(hello->mac, data + STREAM_HELLO_MAC_AT, STREAM_MAC_BYTES);
    return 0;
}

void stream_welcome_encode(const stream_welcome_t *welcome, uint8_t out[STREAM_WELCOME_SIZE])
{
    put_preamble(out, STREAM_MSG_WELCOME, welcome->streams, welcome->chunk_bytes,
                 welcome->window, welcome->cipher);
    memcpy(out + 24, welcome->identity, STREAM_KEY_BYTES);
    memcpy(out + 56, welcome->ephemeral, STREAM_KEY_BYTES);
    memcpy(out + STREAM_WELCOME_MAC_AT, welcome->mac, STREAM_MAC_BYTES);
}

int stream_welcome_decode(const uint8_t *data, size_t len, stream_welcome_t *welcome,
                          const char **why)
{
    int rc = check_preamble(data, len, STREAM_WELCOME_SIZE, STREAM_MSG_WELCOME, why);
    if (rc)
        return rc;
    welcome->streams = stream_get_u16(data + 6);
    welcome->chunk_bytes = stream_get_u32(data + 8);
    welcome->window = stream_get_u32(data + 12);
    welcome->cipher = data[16];
    rc = check_parameters(welcome->streams, welcome->chunk_bytes, welcome->window, why);
    if (rc)
        return rc;
    if (welcome->cipher != STREAM_CIPHER_AES256GCM
        && welcome->cipher != STREAM_CIPHER_XCHACHA20POLY1305)
        return fail(why, "unknown cipher chosen");
    memcpy(welcome->identity, data + 24, STREAM_KEY_BYTES);
    memcpy(welcome->ephemeral, data + 56, STREAM_KEY_BYTES);
    memcpy(welcome->mac, data + STREAM_WELCOME_MAC_AT, STREAM_MAC_BYTES);
    return 0;
}

void stream_reject_encode(uint8_t reason, uint8_t out[STREAM_REJECT_SIZE])
{
    memcpy(out, magic, 4);
    out[4] = STREAM_WIRE_VERSION;
    out[5] = STREAM_MSG_REJECT;
    out[6] = reason;
    out[7] = 0;
}

int stream_reject_decode(const uint8_t *data, size_t len, uint8_t *reason)
{
    if (len != STREAM_REJECT_SIZE || memcmp(data, magic, 4) != 0
        || data[4] != STREAM_WIRE_VERSION || data[5] != STREAM_MSG_REJECT)
        return STREAM_ERR_PROTOCOL;
    *reason = data[6];
    return 0;
}

const char *stream_reject_reason_name(uint8_t reason)
{
    switch (reason) {
    case STREAM_REJECT_MALFORMED:  return "malformed HELLO";
    case STREAM_REJECT_IDENTITY:   return "unexpected sender identity key";
    case STREAM_REJECT_AUTH:       return "HELLO failed authentication (identity keys do not match)";
    case STREAM_REJECT_MIGRATION:  return "unknown migration id";
    case STREAM_REJECT_PARAMETERS: return "no common cipher";
    }
    return "unknown reason";
}

void stream_header_encode(const stream_header_t *header, uint8_t out[STREAM_HEADER_SIZE])
{
    out[0] = STREAM_WIRE_VERSION;
    out[1] = header->type;
    stream_put_u16(out + 2, header->stream);
    stream_put_u32(out + 4, header->body_len);
    stream_put_u64(out + 8, header->seq);
}

int stream_header_decode(const uint8_t *data, size_t len, uint32_t max_body,
                         stream_header_t *header, const char **why)
{
    if (len < STREAM_HEADER_SIZE + STREAM_TAG_SIZE)
        return fail(why, "message shorter than header and tag");
    if (data[0] != STREAM_WIRE_VERSION)
        return fail(why, "unsupported protocol version");
    header->type = data[1];
    if (header->type != STREAM_MSG_JOIN && header->type != STREAM_MSG_DATA
        && header->type != STREAM_MSG_ACK && header->type != STREAM_MSG_REPLY)
        return fail(why, "unknown message type");
    header->stream = stream_get_u16(data + 2);
    header->body_len = stream_get_u32(data + 4);
    header->seq = stream_get_u64(data + 8);
    if (header->body_len > max_body)
        return fail(why, "body longer than the negotiated chunk size");
    if ((uint64_t)len != (uint64_t)header->body_len + STREAM_HEADER_SIZE + STREAM_TAG_SIZE)
        return fail(why, "message length does not match its header");
    return 0;
}

void stream_body_reader_init(stream_body_reader_t *reader, const uint8_t *body, size_t len,
                             uint64_t page_limit)
{
    *reader = (stream_body_reader_t){ .body = body, .len = len, .page_limit = page_limit };
}

int stream_body_next(stream_body_reader_t *reader, stream_entry_t *entry, const char **why)
{
    size_t left = reader->len - reader->offset;
    if (left == 0)
        return 0;
    if (left < STREAM_ENTRY_TAG_SIZE)
        return fail(why, "truncated entry tag");
    const uint8_t *at = reader->body + reader->offset;
    uint64_t tag = stream_get_u64(at);
    left -= STREAM_ENTRY_TAG_SIZE;
    *entry = (stream_entry_t){ .kind = (stream_entry_kind_t)(tag & 0xff) };
    size_t size = STREAM_ENTRY_TAG_SIZE;

    switch (entry->kind) {
    case STREAM_ENTRY_PAGE:
    case STREAM_ENTRY_ZERO:
        entry->page = tag >> 8;
        if (entry->page >= reader->page_limit)
            return fail(why, "page index beyond destination memory");
        if (entry->kind == STREAM_ENTRY_PAGE) {
            if (left < STREAM_PAGE_SIZE)
                return fail(why, "truncated page data");
            entry->data = at + STREAM_ENTRY_TAG_SIZE;
            size += STREAM_PAGE_SIZE;
        }
        break;
    case STREAM_ENTRY_RECORD: {
        entry->record_type = (uint8_t)(tag >> 8);
        entry->len = (uint32_t)(tag >> 32);
        if (entry->record_type == 0)
            return fail(why, "record type 0");
        if ((tag >> 16) & 0xffff)
            return fail(why, "reserved record tag bits are not zero");
        uint64_t padded = ((uint64_t)entry->len + 7) & ~(uint64_t)7;
        if (padded > left)
            return fail(why, "record longer than the rest of the chunk");
        entry->data = at + STREAM_ENTRY_TAG_SIZE;
        size += padded;
        break;
    }
    case STREAM_ENTRY_BARRIER:
        if (tag >> 8)
            return fail(why, "reserved barrier tag bits are not zero");
        break;
    default:
        return fail(why, "unknown entry kind");
    }
    reader->offset += size;
    return 1;
}

size_t stream_put_page_tag(uint8_t *at, uint64_t index)
{
    stream_put_u64(at, STREAM_ENTRY_PAGE | index << 8);
    return STREAM_ENTRY_TAG_SIZE;
}

size_t stream_put_page(uint8_t *at, uint64_t index, const uint8_t *page)
{
    stream_put_page_tag(at, index);
    memcpy(at + STREAM_ENTRY_TAG_SIZE, page, STREAM_PAGE_SIZE);
    return STREAM_PAGE_ENTRY_SIZE;
}

size_t stream_put_zero(uint8_t *at, uint64_t index)
{
    stream_put_u64(at, STREAM_ENTRY_ZERO | index << 8);
    return STREAM_ENTRY_TAG_SIZE;
}

size_t stream_record_entry_size(uint32_t len)
{
    return STREAM_ENTRY_TAG_SIZE + (((size_t)len + 7) & ~(size_t)7);
}

size_t stream_put_record(uint8_t *at, uint8_t type, const void *data, uint32_t len)
{
    size_t size = stream_record_entry_size(len);
    stream_put_u64(at, STREAM_ENTRY_RECORD | (uint64_t)type << 8 | (uint64_t)len << 32);
    if (len)
        memcpy(at + STREAM_ENTRY_TAG_SIZE, data, len);
    memset(at + STREAM_ENTRY_TAG_SIZE + len, 0, size - STREAM_ENTRY_TAG_SIZE - len);
    return size;
}

size_t stream_put_barrier(uint8_t *at)
{
    stream_put_u64(at, STREAM_ENTRY_BARRIER);
    return STREAM_ENTRY_TAG_SIZE;
}

/* Most non-zero pages differ from zero in their first bytes, so check a
 * cache line at a time and leave early; a zero page costs one pass. */
bool stream_page_is_zero(const uint8_t *page)
{
    typedef uint64_t __attribute__((may_alias, aligned(1))) word_t;
    const word_t *w = (const word_t *)page;
    for (size_t i = 0; i < STREAM_PAGE_SIZE / 8; i += 8) {
        if (w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7])
            return false;
    }
    return true;
}
