/* raft_lincheck.h - a linearizability checker for key-value histories, in the
 * manner of porcupine (used on etcd): Wing & Gong's search with Lowe's
 * memoisation, run on each key separately (P-compositionality: a history is
 * linearizable iff each key's sub-history is).
 *
 * Each key is a register that starts absent (value 0). An operation is a put
 * of a value or a get that returned a value, with the logical times of its
 * call and its return. A put whose outcome is unknown (the client gave up)
 * has ret = LIN_PENDING: it may take effect at any point after its call, or
 * never. A get without an answer is simply left out.
 */
#ifndef FERRY_RAFT_LINCHECK_H
#define FERRY_RAFT_LINCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LIN_PENDING UINT64_MAX

typedef struct {
    uint64_t key;
    bool put;
    uint64_t value;    /* written, or read (0: absent) */
    uint64_t call, ret;
} lin_op_t;

/* True if the history is linearizable. If not, `why` (may be NULL) names the
 * key whose sub-history has no linearization. `max_states` bounds the search
 * per key (0: no bound); exceeding it counts as success, with *gave_up set. */
bool lin_check(const lin_op_t *ops, size_t n, size_t max_states, bool *gave_up, char *why, size_t whylen);

#endif
