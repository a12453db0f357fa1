/* send_policy.c - see send_policy.h. */
#include "consensus/send_policy.h"

bool send_policy_may_precede_sync(const raft_msg_t *msg, bool term_or_vote_in_flight)
{
    if (term_or_vote_in_flight)
        return false;
    switch (msg->type) {
    case RAFT_MSG_APPEND_RESP:
    case RAFT_MSG_VOTE:
    case RAFT_MSG_VOTE_RESP:
        return false;
    default:
        return true;
    }
}
