/* test_raftlog.c - the on-disk Raft log: torn tails, corruption, durability. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/fsutil.h"
#include "common/rng.h"
#include "consensus/crc32c.h"
#include "consensus/raft.h"
#include "consensus/raftlog.h"

#define SEG1 "seg-00000000000000000001.log"

static char *make_dir(void)
{
    char *dir = strdup("/tmp/ferry-raftlog-XXXXXX");
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

static void path_of(const char *dir, const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%s", dir, name);
}

/* Entry i has term 1 + i / 4 and a payload of (i % 7) * 3 bytes of i. */
static raft_entry_t make_entry(uint64_t index, uint8_t *buf)
{
    size_t len = (index % 7) * 3;
    memset(buf, (int)(index & 0xff), len);
    return (raft_entry_t){ .term = 1 + index / 4, .index = index, .type = RAFT_ENTRY_NORMAL,
                           .data = len ? buf : NULL, .len = len };
}

static void append_range(raftlog_t *log, uint64_t lo, uint64_t hi)
{
    static uint8_t bufs[64][32];
    for (uint64_t i = lo; i <= hi;) {
        raft_entry_t batch[64];
        size_t n = 0;
        for (; i <= hi && n < 64; i++, n++)
            batch[n] = make_entry(i, bufs[n]);
        assert_int_equal(raftlog_append(log, batch, n), 0);
    }
    assert_int_equal(raftlog_sync(log), 0);
}

/* The boot state holds exactly entries lo..hi, as make_entry made them. */
static void expect_entries(raftlog_t *log, uint64_t lo, uint64_t hi)
{
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    assert_int_equal(boot.n_entries, hi >= lo ? hi - lo + 1 : 0);
    for (size_t k = 0; k < boot.n_entries; k++) {
        uint8_t buf[32];
        raft_entry_t want = make_entry(lo + k, buf);
        const raft_entry_t *got = &boot.entries[k];
        assert_int_equal(got->index, want.index);
        assert_int_equal(got->term, want.term);
        assert_int_equal(got->len, want.len);
        if (want.len)
            assert_memory_equal(got->data, want.data, want.len);
    }
    assert_int_equal(raftlog_last_index(log), hi >= lo ? hi : lo - 1);
}

static raftlog_t *open_log(const char *dir, size_t segment_bytes)
{
    raftlog_t *log = NULL;
    raftlog_options_t opts = { .segment_bytes = segment_bytes };
    assert_int_equal(raftlog_open(dir, &opts, &log), 0);
    return log;
}

static void test_crc32c_check_value(void **state)
{
    assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283u);
    assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xe3069283u);
    assert_int_equal(crc32c(0, "", 0), 0);
}

static void test_entries_and_hard_state_survive_reopen(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir, 0);
    expect_entries(log, 1, 0);
    append_range(log, 1, 300);
    raft_hard_state_t hs = { .term = 7, .vote = 3, .commit = 250 };
    assert_int_equal(raftlog_set_hard_state(log, &hs), 0);
    raftlog_destroy(&log);
    log = open_log(dir, 0);
    expect_entries(log, 1, 300);
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    assert_int_equal(boot.hard_state.term, 7);
    assert_int_equal(boot.hard_state.vote, 3);
    assert_int_equal(boot.hard_state.commit, 250);
    raftlog_destroy(&log);
    remove_dir(&dir);
}

static void test_conflicting_suffix_is_replaced(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir, 512);   /* small segments: the cut spans several */
    append_range(log, 1, 100);
    assert_true(raftlog_segment_count(log) > 3);
    uint8_t data[] = "new";
    raft_entry_t repl[2] = { { .term = 99, .index = 40, .data = data, .len = 3 },
                             { .term = 99, .index = 41, .data = data, .len = 3 } };
    assert_int_equal(raftlog_append(log, repl, 2), 0);
    assert_int_equal(raftlog_sync(log), 0);
    assert_int_equal(raftlog_last_index(log), 41);
    /* A gap is refused. */
    raft_entry_t gap = { .term = 99, .index = 50 };
    assert_int_equal(raftlog_append(log, &gap, 1), -EINVAL);
    raftlog_destroy(&log);
    log = open_log(dir, 512);
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    assert_int_equal(boot.n_entries, 41);
    uint8_t scratch[32];
    assert_int_equal(boot.entries[38].term, make_entry(39, scratch).term);
    assert_int_equal(boot.entries[39].term, 99);
    assert_int_equal(boot.entries[40].term, 99);
    assert_memory_equal(boot.entries[40].data, "new", 3);
    raftlog_destroy(&log);
    remove_dir(&dir);
}

static size_t record_size(uint64_t index)
{
    uint8_t buf[32];
    return 8 + 17 + make_entry(index, buf).len;
}

/* Cut the file at every byte of its last record: the log reopens with the
 * entries before it, logs the repair, and takes appends again. */
static void test_torn_last_entry_at_every_byte(void **state)
{
    const uint64_t n = 6;
    size_t end = 24;
    for (uint64_t i = 1; i <= n; i++)
        end += record_size(i);
    size_t start = end - record_size(n);
    for (size_t cut = start; cut <= end; cut++) {
        char *dir = make_dir();
        raftlog_t *log = open_log(dir, 0);
        append_range(log, 1, n);
        raftlog_destroy(&log);
        char path[512];
        path_of(dir, SEG1, path, sizeof(path));
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal((size_t)st.st_size, end);
        assert_int_equal(truncate(path, (off_t)cut), 0);
        log = open_log(dir, 0);
        uint64_t last = cut == end ? n : n - 1;
        expect_entries(log, 1, last);
        append_range(log, last + 1, last + 2);
        raftlog_destroy(&log);
        log = open_log(dir, 0);
        expect_entries(log, 1, last + 2);
        raftlog_destroy(&log);
        remove_dir(&dir);
    }
}

static void flip_byte(const char *path, off_t at)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, at), 1);
    b ^= 0x40;
    assert_int_equal(pwrite(fd, &b, 1, at), 1);
    close(fd);
}

static void test_corrupt_crc_is_detected(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir, 0);
    append_range(log, 1, 10);
    raftlog_destroy(&log);
    /* Flip one payload byte of entry 6 (which has 18 bytes of payload). */
    size_t at = 24;
    for (uint64_t i = 1; i < 6; i++)
        at += record_size(i);
    char path[512];
    path_of(dir, SEG1, path, sizeof(path));
    flip_byte(path, (off_t)(at + 8 + 17 + 5));
    log = open_log(dir, 0);
    expect_entries(log, 1, 5);
    raftlog_destroy(&log);
    remove_dir(&dir);
}

static void test_damage_before_the_tail_drops_later_segments(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir, 256);
    append_range(log, 1, 60);
    size_t segments = raftlog_segment_count(log);
    assert_true(segments >= 3);
    raftlog_destroy(&log);
    /* Damage the first segment's third record. */
    char path[512];
    path_of(dir, SEG1, path, sizeof(path));
    flip_byte(path, (off_t)(24 + record_size(1) + record_size(2) + 4));
    log = open_log(dir, 256);
    expect_entries(log, 1, 2);
    assert_int_equal(raftlog_segment_count(log), 1);
    raftlog_destroy(&log);
    remove_dir(&dir);
}

static void test_hard_state_torn_slot_falls_back(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir, 0);
    raft_hard_state_t a = { .term = 2, .vote = 1 }, b = { .term = 3, .vote = 2 };
    assert_int_equal(raftlog_set_hard_state(log, &a), 0);   /* seq 1: slot 1 */
    assert_int_equal(raftlog_set_hard_state(log, &b), 0);   /* seq 2: slot 0 */
    raftlog_destroy(&log);
    char path[512];
    path_of(dir, "hardstate", path, sizeof(path));
    flip_byte(path, 20);   /* tear slot 0, the newest */
    log = open_log(dir, 0);
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    assert_int_equal(boot.hard_state.term, 2);
    assert_int_equal(boot.hard_state.vote, 1);
    raftlog_destroy(&log);
    /* Both slots damaged: refuse rather than forget a vote. */
    flip_byte(path, 512 + 20);
    raftlog_t *bad = NULL;
    assert_int_equal(raftlog_open(dir, NULL, &bad), -EIO);
    assert_null(bad);
    remove_dir(&dir);
}

static raft_snapshot_t snapshot_at(uint64_t index, uint64_t term, const char *data)
{
    raft_snapshot_t s = { .index = index, .term = term, .data = (const uint8_t *)data, .len = strlen(data) };
    s.conf.n_voters = 3;
    s.conf.voters[0] = 10;
    s.conf.voters[1] = 20;
    s.conf.voters[2] = 30;
    s.conf.n_learners = 1;
    s.conf.learners[0] = 40;
    return s;
}

static void test_snapshot_and_compaction(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir, 300);
    append_range(log, 1, 80);
    size_t before = raftlog_segment_count(log);
    uint8_t buf[32];
    raft_snapshot_t snap = snapshot_at(50, make_entry(50, buf).term, "state at 50");
    assert_int_equal(raftlog_compact(log, 50), -EINVAL);   /* no snapshot covers it yet */
    assert_int_equal(raftlog_save_snapshot(log, &snap), 0);
    assert_int_equal(raftlog_compact(log, 50), 0);
    assert_true(raftlog_segment_count(log) < before);
    /* A leftover temp file of an interrupted snapshot write is ignored. */
    char path[512];
    path_of(dir, "snap-00000000000000000070.snap.tmp.1234", path, sizeof(path));
    assert_int_equal(fs_write_atomic(path, "junk", 4, 0600), 0);
    raftlog_destroy(&log);

    log = open_log(dir, 300);
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    assert_int_equal(boot.snapshot.index, 50);
    assert_int_equal(boot.snapshot.term, snap.term);
    assert_int_equal(boot.snapshot.len, strlen("state at 50"));
    assert_memory_equal(boot.snapshot.data, "state at 50", boot.snapshot.len);
    assert_int_equal(boot.snapshot.conf.n_voters, 3);
    assert_int_equal(boot.snapshot.conf.learners[0], 40);
    expect_entries(log, 51, 80);
    assert_int_equal(access(path, F_OK), -1);
    raftlog_destroy(&log);
    remove_dir(&dir);
}

static void test_installed_snapshot_replaces_the_log(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir, 300);
    append_range(log, 1, 40);
    raft_snapshot_t snap = snapshot_at(100, 50, "leader state");
    assert_int_equal(raftlog_install_snapshot(log, &snap), 0);
    assert_int_equal(raftlog_last_index(log), 100);
    uint8_t data[] = "x";
    raft_entry_t next = { .term = 50, .index = 101, .data = data, .len = 1 };
    assert_int_equal(raftlog_append(log, &next, 1), 0);
    assert_int_equal(raftlog_sync(log), 0);
    raftlog_destroy(&log);
    log = open_log(dir, 300);
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    assert_int_equal(boot.snapshot.index, 100);
    assert_int_equal(boot.n_entries, 1);
    assert_int_equal(boot.entries[0].index, 101);
    raftlog_destroy(&log);
    remove_dir(&dir);
}

/* A crash after the snapshot file was written but before the old log was
 * dropped: at open the log disagrees with the snapshot and is discarded. */
static void test_log_superseded_by_snapshot_is_dropped(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir, 0);
    append_range(log, 1, 40);
    raft_snapshot_t snap = snapshot_at(30, 77, "other history");   /* term 77: not this log's */
    assert_int_equal(raftlog_save_snapshot(log, &snap), 0);
    raftlog_destroy(&log);
    log = open_log(dir, 0);
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    assert_int_equal(boot.snapshot.index, 30);
    assert_int_equal(boot.n_entries, 0);
    assert_int_equal(raftlog_last_index(log), 30);
    raftlog_destroy(&log);
    remove_dir(&dir);
}

/* Random appends, conflicting rewrites, snapshots, then a torn tail of random
 * junk: every acknowledged (synced) entry is there, nothing else. */
static void test_acknowledged_entries_survive_torn_tails(void **state)
{
    rng_t rng;
    rng_seed(&rng, 99);
    for (int round = 0; round < 40; round++) {
        char *dir = make_dir();
        raftlog_t *log = open_log(dir, 200 + rng_below(&rng, 2000));
        uint64_t last = 0, snap_index = 0;
        uint64_t terms[2000] = { 0 };   /* the model: term of each acknowledged index */
        uint64_t term = 1;
        for (int step = 0; step < 30; step++) {
            uint64_t lo = last + 1;
            if (last > snap_index + 3 && rng_below(&rng, 4) == 0)
                lo = last - rng_below(&rng, 3);   /* a conflicting suffix */
            size_t n = 1 + rng_below(&rng, 20);
            term += rng_below(&rng, 2);
            raft_entry_t batch[20];
            uint8_t payload[20][8];
            for (size_t k = 0; k < n; k++) {
                for (int b = 0; b < 8; b++)
                    payload[k][b] = (uint8_t)((lo + k) * 31 + term + (uint64_t)b);
                batch[k] = (raft_entry_t){ .term = term, .index = lo + k, .data = payload[k],
                                           .len = 1 + rng_below(&rng, 8) };
            }
            assert_int_equal(raftlog_append(log, batch, n), 0);
            assert_int_equal(raftlog_sync(log), 0);
            last = lo + n - 1;
            for (uint64_t i = lo; i <= last; i++)
                terms[i] = term;
            if (rng_below(&rng, 8) == 0 && last > 5) {
                snap_index = last - 2;
                raft_snapshot_t s = snapshot_at(snap_index, terms[snap_index], "s");
                assert_int_equal(raftlog_save_snapshot(log, &s), 0);
                assert_int_equal(raftlog_compact(log, snap_index), 0);
            }
        }
        raftlog_destroy(&log);
        /* Tear the tail: junk after the last record of the newest segment. */
        char name[64], path[512];
        uint64_t newest = 0;
        for (uint64_t i = 1; i <= last; i++) {
            snprintf(name, sizeof(name), "seg-%020llu.log", (unsigned long long)i);
            path_of(dir, name, path, sizeof(path));
            if (access(path, F_OK) == 0)
                newest = i;
        }
        assert_true(newest > 0);
        snprintf(name, sizeof(name), "seg-%020llu.log", (unsigned long long)newest);
        path_of(dir, name, path, sizeof(path));
        int fd = open(path, O_WRONLY | O_APPEND);
        assert_true(fd >= 0);
        uint8_t junk[64];
        size_t junk_len = 1 + rng_below(&rng, sizeof(junk));
        for (size_t k = 0; k < junk_len; k++)
            junk[k] = (uint8_t)rng_next(&rng);
        if (rng_below(&rng, 2)) {   /* or a plausible header announcing more than is there */
            junk[0] = 200;
            junk[1] = junk[2] = junk[3] = 0;
        }
        assert_int_equal(write(fd, junk, junk_len), (ssize_t)junk_len);
        close(fd);
        log = open_log(dir, 1000);
        raft_boot_t boot;
        raftlog_boot(log, &boot);
        assert_int_equal(boot.snapshot.index, snap_index);
        assert_int_equal(raftlog_last_index(log), last);
        assert_int_equal(boot.n_entries, last - snap_index);
        for (size_t k = 0; k < boot.n_entries; k++) {
            assert_int_equal(boot.entries[k].index, snap_index + 1 + k);
            assert_int_equal(boot.entries[k].term, terms[snap_index + 1 + k]);
        }
        raftlog_destroy(&log);
        remove_dir(&dir);
    }
}

/* A writer killed (SIGKILL) at an arbitrary point: every entry it had
 * reported as synced is there after reopening, intact. */
static void test_killed_writer_loses_nothing_acknowledged(void **state)
{
    for (int round = 0; round < 5; round++) {
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
            for (uint64_t i = 1; i < 1000000; i += 16) {
                uint8_t bufs[16][32];
                raft_entry_t batch[16];
                for (int k = 0; k < 16; k++)
                    batch[k] = make_entry(i + (uint64_t)k, bufs[k]);
                if (raftlog_append(log, batch, 16) != 0 || raftlog_sync(log) != 0)
                    _exit(1);
                uint64_t acked = i + 15;
                if (write(pipefd[1], &acked, sizeof(acked)) != sizeof(acked))
                    _exit(0);
            }
            _exit(0);
        }
        close(pipefd[1]);
        uint64_t acked = 0, got;
        /* Kill it after a number of acknowledgements that varies by round. */
        for (int k = 0; k < 20 + 37 * round && read(pipefd[0], &got, sizeof(got)) == sizeof(got); k++)
            acked = got;
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        while (read(pipefd[0], &got, sizeof(got)) == sizeof(got))
            acked = got;
        close(pipefd[0]);
        assert_true(acked >= 16);
        raftlog_t *log = open_log(dir, 4096);
        raft_boot_t boot;
        raftlog_boot(log, &boot);
        assert_true(boot.n_entries >= acked);
        expect_entries(log, 1, boot.n_entries);
        raftlog_destroy(&log);
        remove_dir(&dir);
    }
}

/* The whole path: a core persisting through raftlog, restarted from it. */
static void test_core_restarts_from_raftlog(void **state)
{
    char *dir = make_dir();
    raftlog_t *log = open_log(dir, 1024);
    raft_config_t cfg;
    raft_config_defaults(&cfg, 1, 5);
    raft_t *r = raft_new(&cfg, NULL);
    uint64_t voters[] = { 1 };
    assert_int_equal(raft_bootstrap(r, voters, 1), 0);
    assert_int_equal(raft_campaign(r), 0);
    for (int i = 0; i < 50; i++) {
        char cmd[16];
        snprintf(cmd, sizeof(cmd), "cmd %d", i);
        assert_int_equal(raft_propose(r, cmd, strlen(cmd), NULL, NULL), 0);
        while (raft_has_ready(r)) {
            raft_ready_t rd;
            raft_ready(r, &rd);
            assert_int_equal(raftlog_persist_ready(log, &rd), 0);
            raft_advance(r);
        }
    }
    uint64_t last = raft_last_index(r), term = raft_term(r);
    raft_destroy(&r);
    raftlog_destroy(&log);

    log = open_log(dir, 1024);
    raft_boot_t boot;
    raftlog_boot(log, &boot);
    r = raft_new(&cfg, &boot);
    raftlog_release_boot(log);
    assert_non_null(r);
    assert_int_equal(raft_last_index(r), last);
    assert_int_equal(raft_term(r), term);
    assert_int_equal(raft_commit_index(r), last);   /* written at the clean close */
    assert_memory_equal(raft_entry_at(r, last)->data, "cmd 49", 6);
    raft_destroy(&r);
    raftlog_destroy(&log);
    remove_dir(&dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c_check_value),
        cmocka_unit_test(test_entries_and_hard_state_survive_reopen),
        cmocka_unit_test(test_conflicting_suffix_is_replaced),
        cmocka_unit_test(test_torn_last_entry_at_every_byte),
        cmocka_unit_test(test_corrupt_crc_is_detected),
        cmocka_unit_test(test_damage_before_the_tail_drops_later_segments),
        cmocka_unit_test(test_hard_state_torn_slot_falls_back),
        cmocka_unit_test(test_snapshot_and_compaction),
        cmocka_unit_test(test_installed_snapshot_replaces_the_log),
        cmocka_unit_test(test_log_superseded_by_snapshot_is_dropped),
        cmocka_unit_test(test_acknowledged_entries_survive_torn_tails),
        cmocka_unit_test(test_killed_writer_loses_nothing_acknowledged),
        cmocka_unit_test(test_core_restarts_from_raftlog),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
