/* fuzz_migrate_wire.c - libFuzzer target for the migration protocol's
 * decoders (migration/migrate_wire.h) and the image manifest decoder
 * (migration/image.h). The first byte picks the decoder.
 *
 *   clang -g -fsanitize=fuzzer,address -I. tests/fuzz/fuzz_migrate_wire.c \
 *         migration/migrate_wire.c migration/stream_wire.c migration/image_manifest.c \
 *         -lsodium -o fuzz_migrate_wire && ./fuzz_migrate_wire */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "migration/image.h"
#include "migration/migrate_wire.h"

static uint8_t state_buffer[VM_STATE_MAX_BYTES];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t selector = data[0];
    data++;
    size--;
    const char *why = NULL;
    switch (selector % 7) {
    case 0: {
        migration_describe_t d;
        if (migration_describe_decode(data, size, &d, &why) == 0) {
            uint8_t again[MIGRATION_DESCRIBE_MAX];
            size_t len = migration_describe_encode(&d, again, sizeof again);
            if (len != size || memcmp(again, data, size) != 0)
                __builtin_trap();   /* what decodes must re-encode identically */
        }
        break;
    }
    case 1: {
        /* Several pieces in one input: split at a length byte each. */
        migration_state_assembly_t a = { .buf = state_buffer };
        while (size > 2) {
            size_t len = data[0] | (size_t)data[1] << 8;
            data += 2;
            size -= 2;
            if (len > size)
                len = size;
            migration_state_piece_apply(&a, data, len, &why);
            data += len;
            size -= len;
        }
        break;
    }
    case 2: {
        bool committed;
        char reason[MIGRATION_REASON_MAX + 1];
        migration_outcome_decode(data, size, &committed, reason, &why);
        break;
    }
    case 3: {
        bool hashed;
        uint8_t hash[MIGRATION_HASH_BYTES];
        migration_verified_decode(data, size, &hashed, hash, &why);
        break;
    }
    case 4: {
        uint32_t pass;
        uint64_t pages;
        migration_pass_end_decode(data, size, &pass, &pages, &why);
        break;
    }
    case 5: {
        image_manifest_t m;
        image_manifest_decode(data, size, &m, &why);
        break;
    }
    case 6: {
        image_journal_t j;
        image_journal_decode(data, size, &j, &why);
        break;
    }
    }
    return 0;
}
