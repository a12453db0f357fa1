/* send_policy.h - which of a Ready's messages may leave before this node's
 * own writes are durable (the storage thread syncs the log in parallel with
 * the event loop; see storage_thread.h and docs/consensus.md).
 *
 * The rule, after etcd raft's asynchronous storage writes:
 *
 *   - A message that promises durable state waits for it: an append
 *     response (acks entries), a vote response (a granted vote). So does
 *     every message while a change of term or vote is in flight, because a
 *     candidate's vote requests and anything carrying a new term rest on it.
 *   - A leader's appends and heartbeats may go at once. Our core counts the
 *     leader's own log towards the commit index as soon as it appends, so
 *     the commit index they carry is clamped to what is durable locally: a
 *     follower never learns a commit that rests on the leader's unsynced log.
 *     The node applies entries only after they are durable locally.
 *   - An append that carries a CONFIG entry waits too: the core admits a
 *     membership change once the previous one is committed, and that
 *     "committed" may rest on the leader's unsynced log; holding the next
 *     change until the leader's log is durable keeps changes one at a time
 *     on every disk.
 *   - Everything else (pre-votes and their answers, heartbeat answers,
 *     ReadIndex traffic, TimeoutNow, snapshots of applied state) promises
 *     nothing the local disk must hold. */
#ifndef FERRY_SEND_POLICY_H
#define FERRY_SEND_POLICY_H

#include "consensus/raft.h"

#include <stdbool.h>
#include <stdint.h>

/* May `msg` leave while writes are in flight? `term_or_vote_in_flight`: a
 * write not yet durable changes the term or the vote. */
bool send_policy_may_precede_sync(const raft_msg_t *msg, bool term_or_vote_in_flight);

/* The commit index `msg` may carry when sent early: no more than the local
 * log's durable prefix. */
uint64_t send_policy_commit(const raft_msg_t *msg, uint64_t durable_index);

#endif
