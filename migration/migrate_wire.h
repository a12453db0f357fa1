/* migrate_wire.h - the migration protocol's messages (pure codec).
 *
 * The migration sender and receiver talk over the encrypted stream
 * (stream.h): the sender's control messages are stream records, the
 * receiver's answers are stream replies. This file lays out their payloads.
 * Every integer is little-endian. Decoders take untrusted bytes, check every
 * length and field, and on failure return -EINVAL with *why naming the
 * problem (a static string).
 *
 * Records, sender -> receiver:
 *
 *   DESCRIBE (first)  what moves: the VM's config, live or cold
 *     0 "FMVD"  4 u8 version 1  5 u8 kind (1 live, 2 cold)  6 u16 flags
 *     8 u64 memory bytes  16 u32 vCPUs  20 u16 name length  22 u16 cmdline length
 *     24 u64 state bytes (cold: the saved state's size; live: 0)
 *     32 image id [32] (cold: which image, for resuming; live: zeros)
 *     64 name, then cmdline (no terminators)
 *   MANIFEST          cold only, right after DESCRIBE: the image's manifest
 *                     (image.h), whose id DESCRIBE named
 *   PASS_END          u32 pass  u32 0  u64 pages sent in the pass
 *   STATE             one piece of the saved vCPU/device state:
 *                     u32 total bytes  u32 offset  then the piece's bytes
 *   READY             empty: all memory and state are sent; load and verify
 *   OUTCOME           u8 committed (0 or 1)  7 zero bytes  reason text
 *                     (up to 200 bytes; for an abort)
 *   CHECKPOINT        cold only: u64 n = every page below n has been sent
 *
 * Replies, receiver -> sender:
 *
 *   ACCEPT            u64 first page to send (cold resume; live: 0)
 *   VERIFIED          u8 hashed (0 or 1)  7 zero bytes  memory hash [32]
 *   RESUMED           empty: live: the VM runs here; cold: the image is in place
 *
 * A refusal travels as the stream's abort (stream_receiver_abort), with
 * the reason as text. */
#ifndef FERRY_MIGRATION_MIGRATE_WIRE_H
#define FERRY_MIGRATION_MIGRATE_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "guest/args.h"
#include "migration/stream.h"
#include "vmm/vm.h"

#define MIGRATION_WIRE_VERSION 1
#define MIGRATION_HASH_BYTES 32
#define MIGRATION_DESCRIBE_FIXED 64
#define MIGRATION_DESCRIBE_MAX (MIGRATION_DESCRIBE_FIXED + VM_NAME_MAX + GUEST_CMDLINE_MAX)
#define MIGRATION_PASS_END_SIZE 16
#define MIGRATION_STATE_PIECE_HEADER 8
#define MIGRATION_STATE_PIECE_MAX (60 * 1024)   /* fits any chunk with room to spare */
#define MIGRATION_REASON_MAX 200
#define MIGRATION_OUTCOME_MAX (8 + MIGRATION_REASON_MAX)
#define MIGRATION_CHECKPOINT_SIZE 8
#define MIGRATION_ACCEPT_SIZE 8
#define MIGRATION_VERIFIED_SIZE (8 + MIGRATION_HASH_BYTES)

typedef enum {
    MIGRATION_RECORD_PASS_END = STREAM_RECORD_END_OF_PASS,
    MIGRATION_RECORD_STATE = STREAM_RECORD_VCPU_STATE,
    MIGRATION_RECORD_DESCRIBE = STREAM_RECORD_USER,
    MIGRATION_RECORD_READY,
    MIGRATION_RECORD_OUTCOME,
    MIGRATION_RECORD_CHECKPOINT,
    MIGRATION_RECORD_MANIFEST,
} migration_record_t;

typedef enum {
    MIGRATION_REPLY_ACCEPT = 1,
    MIGRATION_REPLY_VERIFIED = 2,
    MIGRATION_REPLY_RESUMED = 3,
} migration_reply_t;

typedef enum {
    MIGRATION_KIND_LIVE = 1,
    MIGRATION_KIND_COLD = 2,
} migration_kind_t;

#define MIGRATION_FLAG_VERIFY 0x0001u   /* the receiver hashes what it got */

typedef struct {
    migration_kind_t kind;
    uint16_t flags;
    uint64_t memory_bytes;
    uint32_t vcpus;
    char name[VM_NAME_MAX + 1];
    char cmdline[GUEST_CMDLINE_MAX + 1];
    uint64_t state_bytes;
    uint8_t image_id[MIGRATION_HASH_BYTES];
} migration_describe_t;

/* The rules vm_new applies to VM names ([A-Za-z0-9._-], 1..VM_NAME_MAX), so
 * a name that passes is one a receiver can create a VM with. */
bool migration_name_ok(const char *name, size_t len);
/* Printable ASCII only (command lines, reasons). */
bool migration_text_ok(const char *text, size_t len);

/* Returns the bytes written (at most MIGRATION_DESCRIBE_MAX), or 0 if the
 * description itself is out of bounds. */
size_t migration_describe_encode(const migration_describe_t *d, uint8_t *out, size_t cap);
int migration_describe_decode(const uint8_t *data, size_t len, migration_describe_t *d,
                              const char **why);

void migration_pass_end_encode(uint32_t pass, uint64_t pages, uint8_t out[MIGRATION_PASS_END_SIZE]);
int migration_pass_end_decode(const uint8_t *data, size_t len, uint32_t *pass, uint64_t *pages,
                              const char **why);

/* The saved state travels in pieces; the receiver puts them together in
 * order into a buffer of VM_STATE_MAX_BYTES. */
typedef struct {
    uint8_t *buf;          /* VM_STATE_MAX_BYTES, the caller's */
    uint32_t total;        /* 0 until the first piece */
    uint32_t have;
} migration_state_assembly_t;

size_t migration_state_piece_encode(uint32_t total, uint32_t offset, const uint8_t *piece,
                                    size_t len, uint8_t *out, size_t cap);
/* Adds one piece: 0, or -EINVAL when it is malformed, out of order or
 * inconsistent with earlier pieces. */
int migration_state_piece_apply(migration_state_assembly_t *a, const uint8_t *data, size_t len,
                                const char **why);
bool migration_state_complete(const migration_state_assembly_t *a);

size_t migration_outcome_encode(bool committed, const char *reason, uint8_t *out, size_t cap);
/* reason gets a printable, NUL-terminated copy (non-printable bytes as '?'). */
int migration_outcome_decode(const uint8_t *data, size_t len, bool *committed,
                             char reason[MIGRATION_REASON_MAX + 1], const char **why);

void migration_u64_encode(uint64_t value, uint8_t out[8]);   /* CHECKPOINT, ACCEPT */
int migration_u64_decode(const uint8_t *data, size_t len, uint64_t *value, const char **why);

void migration_verified_encode(bool hashed, const uint8_t hash[MIGRATION_HASH_BYTES],
                               uint8_t out[MIGRATION_VERIFIED_SIZE]);
int migration_verified_decode(const uint8_t *data, size_t len, bool *hashed,
                              uint8_t hash[MIGRATION_HASH_BYTES], const char **why);

#endif
