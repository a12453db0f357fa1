/* raft_conf.c - membership configurations and their CONFIG-entry encoding. */
#include "consensus/raft_internal.h"

#include <string.h>

static bool contains(const uint64_t *ids, size_t n, uint64_t id)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static void remove_id(uint64_t *ids, size_t *n, uint64_t id)
{
    for (size_t i = 0; i < *n; i++) {
        if (ids[i] == id) {
            memmove(&ids[i], &ids[i + 1], (*n - i - 1) * sizeof(uint64_t));
            (*n)--;
            return;
        }
    }
}

bool raft_conf_is_voter(const raft_conf_t *conf, uint64_t id)
{
    return contains(conf->voters, conf->n_voters, id);
}

bool raft_conf_is_learner(const raft_conf_t *conf, uint64_t id)
{
    return contains(conf->learners, conf->n_learners, id);
}

size_t raft_conf_quorum(const raft_conf_t *conf)
{
    return conf->n_voters / 2 + 1;
}

int raft_conf_apply_op(raft_conf_t *conf, raft_conf_op_t op, uint64_t node)
{
    if (node == RAFT_NONE)
        return RAFT_ERR_INVALID;
    bool voter = raft_conf_is_voter(conf, node);
    bool learner = raft_conf_is_learner(conf, node);
    switch (op) {
    case RAFT_CONF_ADD_LEARNER:
        if (voter || learner || conf->n_learners == RAFT_MAX_MEMBERS)
            return RAFT_ERR_INVALID;
        conf->learners[conf->n_learners++] = node;
        return 0;
    case RAFT_CONF_PROMOTE:
        if (!learner || conf->n_voters == RAFT_MAX_MEMBERS)
            return RAFT_ERR_INVALID;
        remove_id(conf->learners, &conf->n_learners, node);
        conf->voters[conf->n_voters++] = node;
        return 0;
    case RAFT_CONF_REMOVE:
        if (learner) {
            remove_id(conf->learners, &conf->n_learners, node);
            return 0;
        }
        if (!voter || conf->n_voters == 1)   /* a cluster keeps at least one voter */
            return RAFT_ERR_INVALID;
        remove_id(conf->voters, &conf->n_voters, node);
        return 0;
    }
    return RAFT_ERR_INVALID;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

size_t raft_conf_encoded_len(const raft_conf_t *conf)
{
    return 8 + 8 * (conf->n_voters + conf->n_learners);
}

void raft_conf_encode(const raft_conf_t *conf, uint8_t *out)
{
    put_u32(out, (uint32_t)conf->n_voters);
    put_u32(out + 4, (uint32_t)conf->n_learners);
    uint8_t *p = out + 8;
    for (size_t i = 0; i < conf->n_voters; i++, p += 8)
        put_u64(p, conf->voters[i]);
    for (size_t i = 0; i < conf->n_learners; i++, p += 8)
        put_u64(p, conf->learners[i]);
}

int raft_conf_decode(const uint8_t *data, size_t len, raft_conf_t *out)
{
    memset(out, 0, sizeof(*out));
    if (len < 8)
        return RAFT_ERR_DECODE;
    uint32_t n_voters = get_u32(data), n_learners = get_u32(data + 4);
    if (n_voters > RAFT_MAX_MEMBERS || n_learners > RAFT_MAX_MEMBERS ||
        len != 8 + 8 * ((size_t)n_voters + n_learners))
        return RAFT_ERR_DECODE;
    const uint8_t *p = data + 8;
    for (uint32_t i = 0; i < n_voters + n_learners; i++, p += 8) {
        uint64_t id = get_u64(p);
        if (id == RAFT_NONE || raft_conf_is_voter(out, id) || raft_conf_is_learner(out, id))
            return RAFT_ERR_DECODE;
        if (i < n_voters)
            out->voters[out->n_voters++] = id;
        else
            out->learners[out->n_learners++] = id;
    }
    return 0;
}
