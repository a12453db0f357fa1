/* fuzz_raft_codec.c - libFuzzer target for the Raft wire decoder.
 *
 * Anything may come in; the decoder must refuse it or decode it. What it
 * decodes must encode again and decode to the same message (a round trip),
 * and feeding it to a Raft core must not crash either. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "consensus/raft.h"
#include "consensus/raft_codec.h"

static void same_or_abort(const raft_msg_t *a, const raft_msg_t *b)
{
    if (a->type != b->type || a->from != b->from || a->to != b->to || a->term != b->term ||
        a->log_term != b->log_term || a->index != b->index || a->commit != b->commit ||
        a->reject != b->reject || a->force != b->force || a->hint_index != b->hint_index ||
        a->hint_term != b->hint_term || a->context != b->context || a->n_entries != b->n_entries ||
        (a->snapshot == NULL) != (b->snapshot == NULL))
        abort();
    for (size_t i = 0; i < a->n_entries; i++) {
        const raft_entry_t *x = &a->entries[i], *y = &b->entries[i];
        if (x->term != y->term || x->index != y->index || x->type != y->type || x->len != y->len ||
            (x->len && memcmp(x->data, y->data, x->len) != 0))
            abort();
    }
    if (a->snapshot && (a->snapshot->index != b->snapshot->index || a->snapshot->len != b->snapshot->len ||
                        memcmp(&a->snapshot->conf, &b->snapshot->conf, sizeof(raft_conf_t)) != 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    log_set_level(LOG_LEVEL_OFF);
    raft_msg_t msg;
    if (raft_msg_decode(data, size, &msg, NULL) != 0)
        return 0;
    uint8_t *buf;
    size_t len;
    if (raft_msg_encode(&msg, &buf, &len) != 0)
        abort();   /* whatever decodes must encode */
    raft_msg_t back;
    if (raft_msg_decode(buf, len, &back, NULL) != 0)
        abort();
    same_or_abort(&msg, &back);
    raft_msg_release(&back);
    free(buf);

    /* The core must take it (or refuse it) without harm. */
    raft_config_t cfg;
    raft_config_defaults(&cfg, msg.to ? msg.to : 1, 1);
    raft_t *r = raft_new(&cfg, NULL);
    uint64_t voters[] = { cfg.id, msg.from ? msg.from : 2 };
    if (r && raft_bootstrap(r, voters, voters[0] == voters[1] ? 1 : 2) == 0) {
        raft_step(r, &msg);
        while (raft_has_ready(r)) {
            raft_ready_t rd;
            raft_ready(r, &rd);
            raft_advance(r);
        }
    }
    raft_destroy(&r);
    raft_msg_release(&msg);
    return 0;
}
