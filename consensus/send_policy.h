/* send_policy.h - which of a Ready's messages may leave before this node's
 * own write of that Ready is durable, when the log is written on another
 * thread (storage_thread.h, raft.h's async_storage; docs/consensus.md).
 *
 * The rule, after etcd raft's asynchronous storage writes:
 *
 *   - A message that promises durable state waits for it: an append
 *     response (acks entries), a vote request (rests on the candidate's own
 *     vote), a vote response (a granted vote).
 *   - While a change of term or vote is in flight, every message waits:
 *     anything carrying the new term rests on it.
 *   - Everything else may go at once: a leader's appends and heartbeats (the
 *     core counts the leader's own log towards the commit index only as far
 *     as raft_log_durable() says, so the commit they carry is real; a
 *     follower storing entries before the leader has them on disk is fine,
 *     they count only once acknowledged), pre-votes and their answers,
 *     heartbeat answers, ReadIndex traffic, TimeoutNow, snapshots of applied
 *     state. */
#ifndef FERRY_SEND_POLICY_H
#define FERRY_SEND_POLICY_H

#include "consensus/raft.h"

#include <stdbool.h>

/* May `msg` leave while its Ready's write is in flight?
 * `term_or_vote_in_flight`: a write not yet durable changes the term or vote. */
bool send_policy_may_precede_sync(const raft_msg_t *msg, bool term_or_vote_in_flight);

#endif
