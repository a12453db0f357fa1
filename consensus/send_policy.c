/* send_policy.c - see send_policy.h. */
#include "consensus/send_policy.h"

static bool carries_config(const raft_msg_t *msg)
{
    for (size_t i = 0; i < msg->n_entries; i++)
        if (msg->entries[i].type == RAFT_ENTRY_CONFIG)
            return true;
    return false;
}

bool send_policy_may_precede_sync(const raft_msg_t *msg, bool term_or_vote_in_flight)
{
    if (term_or_vote_in_flight)
        return false;
    switch (msg->type) {
    case RAFT_MSG_APPEND_RESP:
    case RAFT_MSG_VOTE:
    case RAFT_MSG_VOTE_RESP:
        return false;
    case RAFT_MSG_APPEND:
        return !carries_config(msg);
    default:
        return true;
    }
}

uint64_t send_policy_commit(const raft_msg_t *msg, uint64_t durable_index)
{
    return msg->commit < durable_index ? msg->commit : durable_index;
}
