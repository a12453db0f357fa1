/* test_storage_thread.c - the Raft log's writes on their own thread: nothing
 * is reported durable before its sync returns, writes queued during a sync
 * share the next one, a killed writer keeps every write it reported, and
 * the send policy holds every message that promises unsynced state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "consensus/raft.h"
#include "consensus/raftlog.h"
#include "consensus/send_policy.h"
#include "consensus/storage_thread.h"

#define DEADLINE_MS 20000

static char *make_dir(void)
{
    char *dir = strdup("/tmp/ferry-storage-XXXXXX");
    assert_non_null(dir);
    assert_non_null(mkdtemp(dir));
    return dir;
}

static void remove_dir(char **dir)
{
    fs_remove_tree(*dir);
    free(*dir);
    *dir = NULL;
}

static raftlog_t *open_log(const char *dir)
{
    raftlog_t *log = NULL;
    raftlog_options_t opts = { .segment_bytes = 4096 };
    assert_int_equal(raftlog_open(dir, &opts, &log), 0);
    raftlog_release_boot(log);
    return log;
}

/* Entry i: term 1 + i / 8, payload (i % 5) * 4 bytes of i. */
static raft_entry_t make_entry(uint64_t index, uint8_t *buf)
{
    size_t len = (index % 5) * 4;
    memset(buf, (int)(index & 0xff), len);
    return (raft_entry_t){ .term = 1 + index / 8, .index = index, .type = RAFT_ENTRY_NORMAL,
                           .data = len ? buf : NULL, .len = len };
}

/* Queues entries lo..hi and the hard state (term of hi, vote 1, commit lo - 1). */
static uint64_t submit_range(storage_thread_t *st, uint64_t lo, uint64_t hi)
{
    uint8_t bufs[64][32];
    raft_entry_t ents[64];
    assert_true(hi - lo < 64);
    for (uint64_t i = lo; i <= hi; i++)
        ents[i - lo] = make_entry(i, bufs[i - lo]);
    raft_ready_t rd = { .entries = ents, .n_entries = hi - lo + 1, .has_hard_state = true,
                        .hard_state = { .term = ents[hi - lo].term, .vote = 1, .commit = lo - 1 } };
    uint64_t seq = 0;
    assert_int_equal(storage_thread_submit_ready(st, &rd, &seq), 0);
    return seq;
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits (bounded) for the completion fd until `seq` is durable. */
static void wait_durable(storage_thread_t *st, uint64_t seq)
{
    int64_t deadline = now_ms() + DEADLINE_MS;
    uint64_t durable = 0;
    for (;;) {
        assert_int_equal(storage_thread_collect(st, &durable), 0);
        if (durable >= seq)
            return;
        assert_true(now_ms() < deadline);
        struct pollfd p = { .fd = storage_thread_fd(st), .events = POLLIN };
        poll(&p, 1, 100);
    }
}

static void expect_log(const char *dir, uint64_t last, uint64_t min_term)
{
    raftlog_t *log = NULL;
    raftlog_options_t opts = { .segment_bytes = 4096 };
    assert_int_equal(raftlog_open(dir, &opts, &log), 0);
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    assert_true(boot.n_entries >= last);
    for (size_t k = 0; k < boot.n_entries; k++) {
        uint8_t buf[32];
        raft_entry_t want = make_entry(k + 1, buf);
        assert_int_equal(boot.entries[k].index, want.index);
        assert_int_equal(boot.entries[k].term, want.term);
        assert_int_equal(boot.entries[k].len, want.len);
        if (want.len)
            assert_memory_equal(boot.entries[k].data, want.data, want.len);
    }
    assert_true(boot.hard_state.term >= min_term);
    assert_int_equal(boot.hard_state.vote, 1);
    raftlog_release_boot(log);
    raftlog_destroy(&log);
}

/* --- a sync the test holds shut ------------------------------------------ */

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool open;              /* syncs may proceed */
    int entered;            /* syncs that reached the hook */
    size_t groups[16];      /* size of each group */
} gate_t;

static void gate_before_sync(void *ctx, size_t group_size)
{
    gate_t *g = ctx;
    pthread_mutex_lock(&g->lock);
    if (g->entered < 16)
        g->groups[g->entered] = group_size;
    g->entered++;
    pthread_cond_broadcast(&g->cond);
    while (!g->open)
        pthread_cond_wait(&g->cond, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void gate_wait_entered(gate_t *g, int n)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += DEADLINE_MS / 1000;
    pthread_mutex_lock(&g->lock);
    while (g->entered < n)
        assert_int_equal(pthread_cond_timedwait(&g->cond, &g->lock, &until), 0);
    pthread_mutex_unlock(&g->lock);
}

static void gate_open(gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->open = true;
    pthread_cond_broadcast(&g->cond);
    pthread_mutex_unlock(&g->lock);
}

/* While the sync is held, nothing is reported durable and the completion
 * fd stays quiet; writes queued meanwhile form ONE next group; once the
 * syncs return, everything is durable and on disk. */
static void test_nothing_durable_before_sync_returns(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir);
    gate_t gate = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };
    storage_thread_hooks_t hooks = { .before_sync = gate_before_sync, .ctx = &gate };
    storage_thread_t *st = storage_thread_new(log, &hooks);
    assert_non_null(st);

    uint64_t first = submit_range(st, 1, 10);
    assert_int_equal(first, 1);
    gate_wait_entered(&gate, 1);   /* the thread has written group 1 and waits to sync */
    uint64_t last = first;
    for (uint64_t lo = 11; lo <= 91; lo += 10)
        last = submit_range(st, lo, lo + 9);
    assert_int_equal(last, 10);

    uint64_t durable = 99;
    assert_int_equal(storage_thread_collect(st, &durable), 0);
    assert_int_equal(durable, 0);
    struct pollfd p = { .fd = storage_thread_fd(st), .events = POLLIN };
    assert_int_equal(poll(&p, 1, 0), 0);

    gate_open(&gate);
    wait_durable(st, last);
    assert_int_equal(gate.entered, 2);
    assert_int_equal(gate.groups[0], 1);
    assert_int_equal(gate.groups[1], 9);   /* group commit: nine writes, one sync */

    storage_thread_destroy(&st);
    assert_null(st);
    raftlog_destroy(&log);
    expect_log(dir, 100, 1 + 100 / 8);
    remove_dir(&dir);
}

/* Submitting while the thread writes and frees earlier writes: sequence
 * numbers come back one by one and everything lands. (A submit that read its
 * write after handing it over was a real bug, found by ASan under the raft
 * bench's 16 clients; this test's window for it is too small to catch it.) */
static void test_sequence_numbers_while_the_thread_runs(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir);
    storage_thread_t *st = storage_thread_new(log, NULL);
    assert_non_null(st);
    uint64_t seq = 0;
    for (uint64_t i = 1; i <= 3000; i++)
        assert_int_equal(submit_range(st, i, i), i);
    seq = 3000;
    wait_durable(st, seq);
    storage_thread_destroy(&st);
    raftlog_destroy(&log);
    expect_log(dir, 3000, 1 + 3000 / 8);
    remove_dir(&dir);
}

/* A snapshot the application took is saved and the log compacted, in order
 * with the writes around it. */
static void test_app_snapshot_in_order(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir);
    storage_thread_t *st = storage_thread_new(log, NULL);
    assert_non_null(st);
    uint64_t seq = 0;
    for (uint64_t lo = 1; lo <= 491; lo += 10)
        seq = submit_range(st, lo, lo + 9);
    wait_durable(st, seq);
    size_t segments = raftlog_segment_count(log);
    assert_true(segments > 2);
    static const char state_bytes[] = "state as of 400";
    raft_snapshot_t snap = { .index = 400, .term = 1 + 400 / 8, .conf = { .n_voters = 1, .voters = { 1 } },
                             .data = (const uint8_t *)state_bytes, .len = sizeof(state_bytes) };
    assert_int_equal(storage_thread_submit_snapshot(st, &snap, &seq), 0);
    seq = submit_range(st, 501, 510);
    wait_durable(st, seq);
    storage_thread_destroy(&st);
    assert_true(raftlog_segment_count(log) < segments);
    assert_int_equal(raftlog_last_index(log), 510);
    raftlog_destroy(&log);

    assert_int_equal(raftlog_open(dir, NULL, &log), 0);
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    assert_int_equal(boot.snapshot.index, 400);
    assert_int_equal(boot.snapshot.len, sizeof(state_bytes));
    assert_memory_equal(boot.snapshot.data, state_bytes, sizeof(state_bytes));
    assert_true(boot.n_entries > 0);
    assert_int_equal(boot.entries[boot.n_entries - 1].index, 510);
    raftlog_release_boot(log);
    raftlog_destroy(&log);
    remove_dir(&dir);
}

/* A writer killed (SIGKILL) at an arbitrary point keeps every write the
 * thread had reported durable, intact, with a hard state at least as new. */
static void test_killed_writer_keeps_what_was_reported(void **state)
{
    for (int round = 0; round < 4; round++) {
        char *dir = make_dir();
        int pipefd[2];
        assert_int_equal(pipe(pipefd), 0);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(pipefd[0]);
            raftlog_t *log = NULL;
            raftlog_options_t opts = { .segment_bytes = 4096 };
            if (raftlog_open(dir, &opts, &log) != 0)
                _exit(1);
            raftlog_release_boot(log);
            storage_thread_t *st = storage_thread_new(log, NULL);
            if (!st)
                _exit(1);
            uint64_t reported = 0;
            for (uint64_t lo = 1; lo < 1000000; lo += 8) {
                uint8_t bufs[8][32];
                raft_entry_t ents[8];
                for (int k = 0; k < 8; k++)
                    ents[k] = make_entry(lo + (uint64_t)k, bufs[k]);
                raft_ready_t rd = { .entries = ents, .n_entries = 8, .has_hard_state = true,
                                    .hard_state = { .term = ents[7].term, .vote = 1 } };
                if (storage_thread_submit_ready(st, &rd, NULL) != 0)
                    _exit(1);
                uint64_t durable;
                if (storage_thread_collect(st, &durable) != 0)
                    _exit(1);
                if (durable > reported) {      /* write k holds entries up to 8k */
                    reported = durable;
                    uint64_t index = 8 * durable;
                    if (write(pipefd[1], &index, sizeof(index)) != sizeof(index))
                        _exit(0);
                }
                if (lo % 64 == 1) {   /* let the thread catch up now and then */
                    struct pollfd p = { .fd = storage_thread_fd(st), .events = POLLIN };
                    poll(&p, 1, 50);
                }
            }
            _exit(0);
        }
        close(pipefd[1]);
        uint64_t acked = 0, got;
        for (int k = 0; k < 10 + 17 * round && read(pipefd[0], &got, sizeof(got)) == sizeof(got); k++)
            acked = got;
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        while (read(pipefd[0], &got, sizeof(got)) == sizeof(got))
            acked = got;
        close(pipefd[0]);
        assert_true(acked >= 8);
        expect_log(dir, acked, 1 + acked / 8);
        remove_dir(&dir);
    }
}

/* --- the send policy, on the core's own output ------------------------------ */

static raft_t *new_core(uint64_t id)
{
    raft_config_t cfg;
    raft_config_defaults(&cfg, id, id);
    raft_t *r = raft_new(&cfg, NULL);
    assert_non_null(r);
    return r;
}

/* A follower's append response and a candidate's vote requests promise what
 * their Ready writes: none may leave before it is durable. */
static void test_promises_wait_for_the_write(void **state)
{
    /* A follower takes its first entries from leader 1 in term 1. */
    raft_t *f = new_core(2);
    uint64_t voters[] = { 1, 2, 3 };
    raft_conf_t conf = { .n_voters = 3, .voters = { 1, 2, 3 } };
    uint8_t conf_bytes[64];
    raft_conf_encode(&conf, conf_bytes);
    raft_entry_t ent = { .term = 1, .index = 1, .type = RAFT_ENTRY_CONFIG, .data = conf_bytes,
                         .len = raft_conf_encoded_len(&conf) };
    raft_msg_t app = { .type = RAFT_MSG_APPEND, .from = 1, .to = 2, .term = 1, .entries = &ent, .n_entries = 1 };
    raft_step(f, &app);
    raft_ready_t rd;
    assert_int_equal(raft_ready(f, &rd), 0);
    assert_int_equal(rd.n_entries, 1);
    assert_true(rd.has_hard_state);
    size_t acks = 0;
    for (size_t i = 0; i < rd.n_messages; i++) {
        acks += rd.messages[i].type == RAFT_MSG_APPEND_RESP;
        assert_false(send_policy_may_precede_sync(&rd.messages[i], true));
        if (rd.messages[i].type == RAFT_MSG_APPEND_RESP)   /* even with no term change in flight */
            assert_false(send_policy_may_precede_sync(&rd.messages[i], false));
    }
    assert_int_equal(acks, 1);
    raft_advance(f);
    raft_destroy(&f);

    /* A candidate: term and self-vote in flight, so its vote requests wait. */
    raft_t *c = new_core(1);
    assert_int_equal(raft_bootstrap(c, voters, 3), 0);
    assert_int_equal(raft_ready(c, &rd), 0);
    raft_advance(c);
    assert_int_equal(raft_campaign(c), 0);
    assert_int_equal(raft_ready(c, &rd), 0);
    /* PreVote first: it changes nothing durable, so it may go at once. */
    assert_false(rd.has_hard_state && rd.hard_state.term != 1);
    assert_true(rd.n_messages > 0);
    for (size_t i = 0; i < rd.n_messages; i++) {
        assert_int_equal(rd.messages[i].type, RAFT_MSG_PRE_VOTE);
        assert_true(send_policy_may_precede_sync(&rd.messages[i], false));
    }
    uint64_t next_term = rd.messages[0].term;
    raft_advance(c);
    raft_msg_t grant = { .type = RAFT_MSG_PRE_VOTE_RESP, .from = 2, .to = 1, .term = next_term };
    raft_step(c, &grant);
    assert_int_equal(raft_ready(c, &rd), 0);
    assert_true(rd.has_hard_state);
    assert_int_equal(rd.hard_state.term, next_term);
    assert_int_equal(rd.hard_state.vote, 1);
    assert_true(rd.n_messages > 0);
    for (size_t i = 0; i < rd.n_messages; i++) {
        assert_int_equal(rd.messages[i].type, RAFT_MSG_VOTE);
        assert_false(send_policy_may_precede_sync(&rd.messages[i], true));
    }
    raft_advance(c);
    raft_destroy(&c);
}

/* A leader's appends and heartbeats may leave during its own sync, not
 * while a change of its term or vote is in flight. */
static void test_leader_appends_go_early(void **state)
{
    raft_entry_t config = { .term = 2, .index = 8, .type = RAFT_ENTRY_CONFIG };
    raft_msg_t append = { .type = RAFT_MSG_APPEND, .term = 2, .index = 7, .commit = 7, .entries = &config,
                          .n_entries = 1 };
    raft_msg_t heartbeat = { .type = RAFT_MSG_HEARTBEAT, .term = 2, .commit = 7 };
    raft_msg_t vote_resp = { .type = RAFT_MSG_VOTE_RESP, .term = 2 };
    assert_true(send_policy_may_precede_sync(&append, false));
    assert_true(send_policy_may_precede_sync(&heartbeat, false));
    assert_false(send_policy_may_precede_sync(&heartbeat, true));
    assert_false(send_policy_may_precede_sync(&append, true));
    assert_false(send_policy_may_precede_sync(&vote_resp, false));
}

/* With async_storage the leader's own unsynced log does not count: with one
 * of two followers acknowledging, nothing commits until raft_log_durable(). */
static void test_leader_counts_only_its_durable_log(void **state)
{
    raft_config_t cfg;
    raft_config_defaults(&cfg, 1, 1);
    cfg.async_storage = true;
    raft_t *r = raft_new(&cfg, NULL);
    uint64_t voters[] = { 1, 2, 3 };
    assert_int_equal(raft_bootstrap(r, voters, 3), 0);
    raft_ready_t rd;
    raft_ready(r, &rd);
    raft_advance(r);
    raft_log_durable(r, 1);
    assert_int_equal(raft_campaign(r), 0);          /* PreVote round */
    raft_ready(r, &rd);
    uint64_t term = rd.messages[0].term;
    raft_advance(r);
    raft_step(r, &(raft_msg_t){ .type = RAFT_MSG_PRE_VOTE_RESP, .from = 2, .to = 1, .term = term });
    raft_ready(r, &rd);
    raft_advance(r);
    raft_step(r, &(raft_msg_t){ .type = RAFT_MSG_VOTE_RESP, .from = 2, .to = 1, .term = term });
    assert_int_equal(raft_role(r), RAFT_LEADER);
    raft_ready(r, &rd);                             /* the NOOP, appends to 2 and 3 */
    uint64_t noop = raft_last_index(r);
    assert_int_equal(noop, 2);
    raft_advance(r);
    raft_step(r, &(raft_msg_t){ .type = RAFT_MSG_APPEND_RESP, .from = 2, .to = 1, .term = term, .index = noop });
    assert_int_equal(raft_commit_index(r), 1);      /* 2 of 3 only counting its own unsynced log */
    raft_log_durable(r, noop);
    assert_int_equal(raft_commit_index(r), noop);
    raft_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nothing_durable_before_sync_returns),
        cmocka_unit_test(test_sequence_numbers_while_the_thread_runs),
        cmocka_unit_test(test_app_snapshot_in_order),
        cmocka_unit_test(test_killed_writer_keeps_what_was_reported),
        cmocka_unit_test(test_promises_wait_for_the_write),
        cmocka_unit_test(test_leader_appends_go_early),
        cmocka_unit_test(test_leader_counts_only_its_durable_log),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
