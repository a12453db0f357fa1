/* swim_members.c - the member table; see swim_members.h. */
#include "agent/membership/swim_members.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

uint64_t members_hash(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ULL;   /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    return h;
}

void members_init(member_table_t *t)
{
    memset(t, 0, sizeof(*t));
}

void members_free(member_table_t *t)
{
    for (size_t i = 0; i < t->count; i++)
        free(t->v[i].record);
    free(t->v);
    free(t->slots);
    memset(t, 0, sizeof(*t));
}

static void index_insert(member_table_t *t, size_t index)
{
    size_t mask = t->slot_cap - 1;
    size_t i = (size_t)t->v[index].hash & mask;
    while (t->slots[i] >= 0)
        i = (i + 1) & mask;
    t->slots[i] = (int32_t)index;
}

/* Rebuilds the index with room for at least `want` members. */
static int index_rebuild(member_table_t *t, size_t want)
{
    size_t cap = t->slot_cap ? t->slot_cap : 16;
    while (cap < want * 2)
        cap *= 2;
    if (cap != t->slot_cap) {
        int32_t *slots = malloc(cap * sizeof(*slots));
        if (!slots)
            return -ENOMEM;
        free(t->slots);
        t->slots = slots;
        t->slot_cap = cap;
    }
    memset(t->slots, 0xff, t->slot_cap * sizeof(*t->slots));   /* all -1 */
    for (size_t i = 0; i < t->count; i++)
        index_insert(t, i);
    return 0;
}

int32_t members_find(const member_table_t *t, const char *name)
{
    if (!t->slot_cap)
        return -1;
    uint64_t h = members_hash(name);
    size_t mask = t->slot_cap - 1;
    for (size_t i = (size_t)h & mask; t->slots[i] >= 0; i = (i + 1) & mask) {
        const member_t *m = &t->v[t->slots[i]];
        if (m->hash == h && strcmp(m->name, name) == 0)
            return t->slots[i];
    }
    return -1;
}

int32_t members_add(member_table_t *t, const char *name, const char *addr)
{
    if (t->count == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        member_t *v = realloc(t->v, cap * sizeof(*v));
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    if ((t->count + 1) * 2 > t->slot_cap && index_rebuild(t, t->count + 1) < 0)
        return -ENOMEM;
    member_t *m = &t->v[t->count];
    memset(m, 0, sizeof(*m));
    snprintf(m->name, sizeof(m->name), "%s", name);
    snprintf(m->addr, sizeof(m->addr), "%s", addr);
    m->hash = members_hash(m->name);
    m->state = SWIM_ALIVE;
    index_insert(t, t->count);
    return (int32_t)t->count++;
}

void members_remove(member_table_t *t, size_t index)
{
    if (index >= t->count)
        return;
    free(t->v[index].record);
    t->v[index] = t->v[t->count - 1];
    t->count--;
    index_rebuild(t, t->count);   /* cannot fail: the table only shrank */
}

int members_set_record(member_t *m, const uint8_t *record, size_t len)
{
    uint8_t *copy = NULL;
    if (len) {
        copy = malloc(len);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, record, len);
    }
    free(m->record);
    m->record = copy;
    m->record_len = len;
    return 0;
}
