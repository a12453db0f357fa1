/* fuzz_stream.c - libFuzzer target for the migration stream's decoders.
 *
 * The first input byte picks the decoder; the rest is the message. The body
 * walk also applies pages to a small destination memory, as the receiver
 * does, so an index that escapes page_limit shows up under ASan.
 *
 *   clang -g -fsanitize=fuzzer,address -I. tests/fuzz/fuzz_stream.c \
 *         migration/stream_wire.c -o fuzz_stream && ./fuzz_stream */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "migration/stream_wire.h"

#define FUZZ_PAGES 4

static uint8_t memory[FUZZ_PAGES * STREAM_PAGE_SIZE];

static void walk_body(const uint8_t *body, size_t len, uint64_t page_limit)
{
    stream_body_reader_t reader;
    stream_body_reader_init(&reader, body, len, page_limit);
    stream_entry_t entry;
    const char *why = NULL;
    while (stream_body_next(&reader, &entry, &why) == 1) {
        if (entry.kind == STREAM_ENTRY_PAGE)
            memcpy(memory + entry.page * STREAM_PAGE_SIZE, entry.data, STREAM_PAGE_SIZE);
        else if (entry.kind == STREAM_ENTRY_ZERO)
            memset(memory + entry.page * STREAM_PAGE_SIZE, 0, STREAM_PAGE_SIZE);
        else if (entry.kind == STREAM_ENTRY_RECORD && entry.len)
            memory[0] ^= entry.data[entry.len - 1];   /* touch the last payload byte */
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t selector = data[0];
    data++;
    size--;
    const char *why = NULL;
    switch (selector % 5) {
    case 0: {
        stream_hello_t hello;
        stream_hello_decode(data, size, &hello, &why);
        break;
    }
    case 1: {
        stream_welcome_t welcome;
        stream_welcome_decode(data, size, &welcome, &why);
        break;
    }
    case 2: {
        uint8_t reason;
        stream_reject_decode(data, size, &reason);
        break;
    }
    case 3: {
        /* A whole DATA message, as the receiver checks it before decrypting. */
        stream_header_t header;
        if (stream_header_decode(data, size, 1 << 20, &header, &why) == 0)
            walk_body(data + STREAM_HEADER_SIZE, header.body_len, FUZZ_PAGES);
        break;
    }
    default:
        walk_body(data, size, FUZZ_PAGES);
        break;
    }
    return 0;
}
