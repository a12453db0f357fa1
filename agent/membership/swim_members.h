/* swim_members.h - the member table of the SWIM core (internal).
 *
 * An array of members, index 0 being the local member, with an
 * open-addressing hash index from name to array slot so that lookups stay
 * O(1) in clusters of thousands. Removal swaps the last member into the
 * hole and rebuilds the index; it only happens when dead members are
 * reaped, which is rare. Adding may move the array: never hold a member
 * pointer across members_add(). */
#ifndef FERRY_SWIM_MEMBERS_H
#define FERRY_SWIM_MEMBERS_H

#include <stddef.h>
#include <stdint.h>

#include "agent/membership/swim_codec.h"

typedef struct {
    char name[SWIM_NAME_CAP];
    char addr[SWIM_ADDR_CAP];
    uint64_t hash;             /* of the name */
    swim_state_t state;
    uint64_t incarnation;
    uint64_t state_since_us;
    uint8_t *record;           /* encoded, owned */
    size_t record_len;
} member_t;

typedef struct {
    member_t *v;
    size_t count, cap;
    int32_t *slots;            /* -1 = empty, else an index into v */
    size_t slot_cap;           /* a power of two, at least twice count */
} member_table_t;

uint64_t members_hash(const char *name);

void members_init(member_table_t *t);
void members_free(member_table_t *t);
/* Returns the index of `name`, or -1. */
int32_t members_find(const member_table_t *t, const char *name);
/* Appends a member with the given name and address (state alive,
 * incarnation 0, no record). Returns its index, or -ENOMEM. */
int32_t members_add(member_table_t *t, const char *name, const char *addr);
/* Removes the member at `index` by moving the last member into its slot. */
void members_remove(member_table_t *t, size_t index);
/* Replaces a member's record with a copy of the given bytes. */
int members_set_record(member_t *m, const uint8_t *record, size_t len);

#endif
