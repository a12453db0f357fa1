/* test_swim.c - the SWIM core driven by hand: one core, packets written by
 * the test, outputs and events read back. The many-node behaviour lives in
 * tests/sim/sim_swim.c; this file pins down the rules one message at a time. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "agent/membership/swim.h"

#define MS 1000ULL

static swim_t *make(const char *name)
{
    swim_config_t cfg;
    swim_config_default(&cfg);
    swim_record_t rec = { .cpus = 2 };
    swim_t *s = swim_new(&cfg, name, name, &rec, 0, 42);
    assert_non_null(s);
    return s;
}

/* Builds a packet from `sender` holding the given messages. */
static size_t packet(uint8_t *buf, size_t cap, const char *sender, const swim_msg_t *msgs, size_t n)
{
    swim_packet_builder_t b;
    assert_int_equal(swim_packet_begin(&b, buf, cap, sender), 0);
    for (size_t i = 0; i < n; i++) {
        uint8_t m[1400];
        size_t len;
        assert_int_equal(swim_msg_encode(&msgs[i], m, sizeof(m), &len), 0);
        assert_true(swim_packet_add(&b, m, len));
    }
    return swim_packet_len(&b);
}

static void deliver(swim_t *s, uint64_t now, const char *sender, const swim_msg_t *msgs, size_t n)
{
    uint8_t buf[1400];
    size_t len = packet(buf, sizeof(buf), sender, msgs, n);
    assert_int_equal(swim_receive(s, now, sender, buf, len), 0);
}

/* An alive message for a member named `name` carrying a small valid record. */
static swim_msg_t alive(const char *name, uint64_t inc, uint8_t *rec_buf, size_t cap)
{
    swim_record_t rec = { .cpus = 1 };
    size_t len;
    assert_int_equal(swim_record_encode(&rec, rec_buf, cap, &len), 0);
    swim_msg_t m = { .type = SWIM_MSG_ALIVE, .incarnation = inc, .record = rec_buf,
                     .record_len = len };
    snprintf(m.node, sizeof(m.node), "%s", name);
    snprintf(m.addr, sizeof(m.addr), "%s", name);
    return m;
}

/* Pops outputs until one to `dest` of `kind`; decodes UDP ones into p. */
static bool find_output(swim_t *s, const char *dest, swim_out_kind_t kind, swim_packet_t *p)
{
    swim_output_t out;
    while (swim_next_output(s, &out)) {
        assert_true(out.kind != SWIM_OUT_UDP || out.len <= 1360);
        if (strcmp(out.dest, dest) != 0 || out.kind != kind)
            continue;
        if (kind == SWIM_OUT_UDP)
            assert_int_equal(swim_packet_decode(out.bytes, out.len, p, NULL), 0);
        return true;
    }
    return false;
}

static const swim_msg_t *find_msg(const swim_packet_t *p, swim_msg_type_t type)
{
    for (size_t i = 0; i < p->count; i++)
        if (p->msgs[i].type == type)
            return &p->msgs[i];
    return NULL;
}

static void drain_outputs(swim_t *s)
{
    swim_output_t out;
    while (swim_next_output(s, &out))
        ;
}

static void test_new_validates(void **state)
{
    char long_name[80];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_null(swim_new(NULL, "", "a", NULL, 0, 1));
    assert_null(swim_new(NULL, long_name, "a", NULL, 0, 1));
    assert_null(swim_new(NULL, "a", NULL, NULL, 0, 1));
    swim_t *s = swim_new(NULL, "a", "addr-a", NULL, 0, 1);   /* defaults, empty record */
    assert_non_null(s);
    assert_int_equal(swim_member_count(s), 1);
    assert_int_equal(swim_live_count(s), 1);
    swim_member_t me;
    assert_int_equal(swim_member_at(s, 0, &me), 0);
    assert_string_equal(me.name, "a");
    assert_string_equal(me.addr, "addr-a");
    assert_int_equal(swim_member_at(s, 1, &me), -ENOENT);
    swim_destroy(&s);
    assert_null(s);
}

static void test_ping_is_acked_with_piggyback(void **state)
{
    swim_t *s = make("a");
    uint8_t rec[64];
    swim_msg_t join = alive("b", 0, rec, sizeof(rec));
    deliver(s, 1 * MS, "b", &join, 1);
    swim_event_t ev;
    assert_true(swim_next_event(s, &ev));
    assert_int_equal(ev.type, SWIM_EVENT_JOINED);
    assert_string_equal(ev.name, "b");
    drain_outputs(s);

    swim_msg_t ping = { .type = SWIM_MSG_PING, .seq = 77, .node = "a" };
    deliver(s, 2 * MS, "c", &ping, 1);
    swim_packet_t p;
    assert_true(find_output(s, "c", SWIM_OUT_UDP, &p));
    const swim_msg_t *ack = find_msg(&p, SWIM_MSG_ACK);
    assert_non_null(ack);
    assert_int_equal(ack->seq, 77);
    /* The news about b rides along. */
    const swim_msg_t *news = find_msg(&p, SWIM_MSG_ALIVE);
    assert_non_null(news);
    assert_string_equal(news->node, "b");

    /* A ping meant for someone else gets no answer. */
    swim_msg_t stray = { .type = SWIM_MSG_PING, .seq = 78, .node = "zed" };
    deliver(s, 3 * MS, "c", &stray, 1);
    assert_false(find_output(s, "c", SWIM_OUT_UDP, &p));
    swim_destroy(&s);
}

static void test_refutes_suspicion(void **state)
{
    swim_t *s = make("a");
    uint64_t inc = swim_incarnation(s);
    swim_msg_t accuse = { .type = SWIM_MSG_SUSPECT, .node = "a", .incarnation = inc,
                          .from = "b" };
    deliver(s, 1 * MS, "b", &accuse, 1);
    assert_int_equal(swim_incarnation(s), inc + 1);
    assert_int_equal(swim_stats(s).refutations, 1);
    assert_true(swim_health(s) > 0);   /* Lifeguard: being suspected costs health */
    /* A dead verdict at a higher incarnation is outbid too. */
    swim_msg_t bury = { .type = SWIM_MSG_DEAD, .node = "a", .incarnation = inc + 5, .from = "b" };
    deliver(s, 2 * MS, "b", &bury, 1);
    assert_int_equal(swim_incarnation(s), inc + 6);
    swim_member_t me;
    swim_member_at(s, 0, &me);
    assert_int_equal(me.state, SWIM_ALIVE);
    swim_destroy(&s);
}

static void test_incarnation_rules(void **state)
{
    swim_t *s = make("a");
    uint8_t rec[64];
    swim_msg_t b = alive("b", 3, rec, sizeof(rec));
    deliver(s, 1 * MS, "b", &b, 1);
    swim_member_t m;
    /* suspect at an older incarnation: ignored */
    swim_msg_t old = { .type = SWIM_MSG_SUSPECT, .node = "b", .incarnation = 2, .from = "c" };
    deliver(s, 2 * MS, "c", &old, 1);
    assert_int_equal(swim_member_find(s, "b", &m), 0);
    assert_int_equal(m.state, SWIM_ALIVE);
    /* suspect at the current incarnation: taken */
    swim_msg_t cur = { .type = SWIM_MSG_SUSPECT, .node = "b", .incarnation = 3, .from = "c" };
    deliver(s, 3 * MS, "c", &cur, 1);
    swim_member_find(s, "b", &m);
    assert_int_equal(m.state, SWIM_SUSPECT);
    /* alive at the same incarnation does not clear it; a higher one does */
    deliver(s, 4 * MS, "b", &b, 1);
    swim_member_find(s, "b", &m);
    assert_int_equal(m.state, SWIM_SUSPECT);
    swim_msg_t refuted = alive("b", 4, rec, sizeof(rec));
    deliver(s, 5 * MS, "b", &refuted, 1);
    swim_member_find(s, "b", &m);
    assert_int_equal(m.state, SWIM_ALIVE);
    assert_int_equal(m.incarnation, 4);
    /* dead from itself is a leave */
    swim_msg_t leave = { .type = SWIM_MSG_DEAD, .node = "b", .incarnation = 4, .from = "b" };
    deliver(s, 6 * MS, "b", &leave, 1);
    swim_member_find(s, "b", &m);
    assert_int_equal(m.state, SWIM_LEFT);
    assert_int_equal(swim_live_count(s), 1);
    swim_event_t ev;
    swim_event_type_t seen[8];
    int n = 0;
    while (swim_next_event(s, &ev) && n < 8)
        seen[n++] = ev.type;
    assert_int_equal(n, 4);
    assert_int_equal(seen[0], SWIM_EVENT_JOINED);
    assert_int_equal(seen[1], SWIM_EVENT_SUSPECT);
    assert_int_equal(seen[2], SWIM_EVENT_ALIVE);
    assert_int_equal(seen[3], SWIM_EVENT_LEFT);
    swim_destroy(&s);
}

static void test_suspicion_timeout_formula(void **state)
{
    uint64_t min = 1000, max = 6000;
    assert_int_equal(swim_suspicion_timeout(min, max, 0, 0), min);   /* nobody to confirm */
    assert_int_equal(swim_suspicion_timeout(min, max, 3, 0), max);
    assert_int_equal(swim_suspicion_timeout(min, max, 3, 3), min);
    assert_int_equal(swim_suspicion_timeout(min, max, 3, 9), min);
    uint64_t one = swim_suspicion_timeout(min, max, 3, 1);
    uint64_t two = swim_suspicion_timeout(min, max, 3, 2);
    assert_true(max > one && one > two && two > min);
    /* log(2)/log(4) = 1/2 of the way down */
    assert_int_equal(one, 3500);
}

/* Ticks every 10 ms from `from` to `to`, answering every ping as the
 * pinged member would: everyone the core knows looks healthy to its probes. */
static void run_answering_pings(swim_t *s, uint64_t from, uint64_t to)
{
    for (uint64_t t = from; t < to; t += 10 * MS) {
        swim_tick(s, t);
        swim_output_t out;
        swim_msg_t acks[16];
        char dests[16][SWIM_ADDR_CAP];
        int n = 0;
        while (swim_next_output(s, &out)) {
            static swim_packet_t p;
            if (out.kind != SWIM_OUT_UDP || swim_packet_decode(out.bytes, out.len, &p, NULL) < 0)
                continue;
            const swim_msg_t *ping = find_msg(&p, SWIM_MSG_PING);
            if (ping && n < 16) {
                acks[n] = (swim_msg_t){ .type = SWIM_MSG_ACK, .seq = ping->seq };
                snprintf(dests[n++], SWIM_ADDR_CAP, "%s", out.dest);
            }
        }
        for (int i = 0; i < n; i++)
            deliver(s, t, dests[i], &acks[i], 1);
    }
}

static void test_suspect_declared_dead_after_timeout(void **state)
{
    swim_t *s = make("a");
    uint8_t rec[64];
    const char *names[] = { "b", "c", "d", "e" };
    for (int i = 0; i < 4; i++) {
        swim_msg_t m = alive(names[i], 1, rec, sizeof(rec));
        deliver(s, 1 * MS, names[i], &m, 1);
    }
    swim_msg_t accuse = { .type = SWIM_MSG_SUSPECT, .node = "b", .incarnation = 1, .from = "c" };
    deliver(s, 10 * MS, "c", &accuse, 1);
    /* n = 5, mult 3: min = 3 * 1 * 200 ms = 600 ms, max = 3.6 s, K = 1.
     * Without a confirmation b outlives min... */
    run_answering_pings(s, 10 * MS, 1000 * MS);
    swim_member_t m;
    swim_member_find(s, "b", &m);
    assert_int_equal(m.state, SWIM_SUSPECT);
    /* ...and one from another member brings the deadline down to min, which
     * has passed already. */
    swim_msg_t confirm = { .type = SWIM_MSG_SUSPECT, .node = "b", .incarnation = 1, .from = "d" };
    deliver(s, 1000 * MS, "d", &confirm, 1);
    swim_tick(s, 1001 * MS);
    swim_member_find(s, "b", &m);
    assert_int_equal(m.state, SWIM_DEAD);
    assert_int_equal(swim_stats(s).deaths_declared, 1);
    swim_destroy(&s);
}

static void test_unconfirmed_suspect_dies_at_max(void **state)
{
    swim_t *s = make("a");
    uint8_t rec[64];
    const char *names[] = { "b", "c", "d", "e" };
    for (int i = 0; i < 4; i++) {
        swim_msg_t m = alive(names[i], 1, rec, sizeof(rec));
        deliver(s, 1 * MS, names[i], &m, 1);
    }
    swim_msg_t accuse = { .type = SWIM_MSG_SUSPECT, .node = "b", .incarnation = 1, .from = "c" };
    deliver(s, 10 * MS, "c", &accuse, 1);
    run_answering_pings(s, 10 * MS, 3600 * MS);
    swim_member_t m;
    swim_member_find(s, "b", &m);
    assert_int_equal(m.state, SWIM_SUSPECT);
    run_answering_pings(s, 3600 * MS, 3700 * MS);
    swim_member_find(s, "b", &m);
    assert_int_equal(m.state, SWIM_DEAD);
    swim_destroy(&s);
}

static void test_updates_retransmit_bounded_and_packets_fit(void **state)
{
    swim_t *s = make("a");
    uint8_t rec[64];
    char name[16];
    /* 200 members: far more news than one packet holds. */
    for (int i = 0; i < 200; i++) {
        snprintf(name, sizeof(name), "m%d", i);
        swim_msg_t m = alive(name, 1, rec, sizeof(rec));
        deliver(s, 1 * MS, name, &m, 1);
    }
    /* limit = 4 * ceil(log10(201 + 1)) = 12 per update */
    int alive_sent[200] = { 0 };
    for (uint64_t t = 2 * MS; t < 60000 * MS; t += 10 * MS) {
        swim_tick(s, t);
        swim_output_t out;
        while (swim_next_output(s, &out)) {
            if (out.kind != SWIM_OUT_UDP)
                continue;
            assert_true(out.len <= 1360);
            static swim_packet_t p;
            assert_int_equal(swim_packet_decode(out.bytes, out.len, &p, NULL), 0);
            for (size_t i = 0; i < p.count; i++) {
                int idx;
                if (p.msgs[i].type == SWIM_MSG_ALIVE && sscanf(p.msgs[i].node, "m%d", &idx) == 1)
                    alive_sent[idx]++;
            }
        }
    }
    for (int i = 0; i < 200; i++) {
        assert_true(alive_sent[i] >= 1);
        assert_true(alive_sent[i] <= 12);
    }
    swim_destroy(&s);
}

static void test_record_update_bumps_incarnation(void **state)
{
    swim_t *s = make("a");
    uint64_t inc = swim_incarnation(s);
    swim_record_t rec = { .cpus = 2 };
    assert_int_equal(swim_update_record(s, 1 * MS, &rec), 0);   /* unchanged */
    assert_int_equal(swim_incarnation(s), inc);
    rec.used_mem_bytes = 1 << 20;
    assert_int_equal(swim_update_record(s, 2 * MS, &rec), 0);
    assert_int_equal(swim_incarnation(s), inc + 1);
    swim_member_t me;
    swim_member_at(s, 0, &me);
    swim_record_t got;
    assert_int_equal(swim_record_decode(me.record, me.record_len, &got, NULL, NULL), 0);
    assert_int_equal(got.used_mem_bytes, 1 << 20);
    swim_record_t bad = { .device_count = SWIM_RECORD_MAX_DEVICES + 1 };
    assert_int_equal(swim_update_record(s, 3 * MS, &bad), -EINVAL);
    swim_destroy(&s);
}

static void test_join_retries_with_backoff(void **state)
{
    swim_t *s = make("a");
    const char *seeds[] = { "seed-1", "seed-2", "a" };   /* our own address is skipped */
    assert_int_equal(swim_join(s, 0, seeds, 3), 0);
    swim_packet_t p;
    assert_true(find_output(s, "seed-1", SWIM_OUT_PUSHPULL, &p));
    assert_true(find_output(s, "seed-2", SWIM_OUT_PUSHPULL, &p));
    assert_false(swim_ready(s));
    /* Retries at 1 s, then 2 s later, then 4 s later. */
    uint64_t retries[8];
    int n = 0;
    for (uint64_t t = 10 * MS; t <= 7100 * MS && n < 8; t += 10 * MS) {
        swim_tick(s, t);
        swim_output_t out;
        bool retried = false;
        while (swim_next_output(s, &out))
            retried |= out.kind == SWIM_OUT_PUSHPULL && strcmp(out.dest, "seed-1") == 0;
        if (retried)
            retries[n++] = t;
    }
    assert_int_equal(n, 3);
    assert_int_equal(retries[0], 1000 * MS);
    assert_int_equal(retries[1], 3000 * MS);
    assert_int_equal(retries[2], 7000 * MS);
    const char *bad[] = { "" };
    assert_int_equal(swim_join(s, 8000 * MS, bad, 1), -EINVAL);
    swim_destroy(&s);
}

static void test_pushpull_merge_and_reply(void **state)
{
    swim_t *s = make("a");
    uint8_t rec[64], buf[1024];
    swim_msg_t r = alive("x", 0, rec, sizeof(rec));
    wire_writer_t w;
    wire_writer_init(&w, buf, sizeof(buf));
    swim_pushpull_write_header(&w, "b", "addr-b", true, 3);
    swim_pp_member_t ms[] = {
        { .name = "b", .addr = "addr-b", .state = SWIM_ALIVE, .incarnation = 1,
          .record = r.record, .record_len = r.record_len },
        { .name = "c", .addr = "addr-c", .state = SWIM_ALIVE, .incarnation = 7,
          .record = r.record, .record_len = r.record_len },
        { .name = "a", .addr = "a", .state = SWIM_DEAD, .incarnation = 0 },
    };
    for (int i = 0; i < 3; i++)
        swim_pushpull_write_member(&w, &ms[i]);
    assert_int_equal(swim_receive_pushpull(s, 1 * MS, "somewhere", buf, w.len), 0);
    assert_int_equal(swim_live_count(s), 3);
    swim_member_t m;
    assert_int_equal(swim_member_find(s, "c", &m), 0);
    assert_int_equal(m.incarnation, 7);
    /* b's view that we are dead became a suspicion, which we refuted. */
    assert_int_equal(swim_incarnation(s), 1);
    swim_packet_t p;
    assert_true(find_output(s, "addr-b", SWIM_OUT_PUSHPULL, &p));

    /* A damaged payload changes nothing. */
    buf[w.len - 3] ^= 0xff;
    swim_pushpull_write_header(&w, "b", "addr-b", true, 3);
    assert_int_equal(swim_receive_pushpull(s, 2 * MS, "somewhere", buf, 10), -EBADMSG);
    assert_int_equal(swim_live_count(s), 3);
    swim_destroy(&s);
}

static void test_garbage_is_counted_not_fatal(void **state)
{
    swim_t *s = make("a");
    const uint8_t junk[] = { 0x01, 0xa1, 'b', 0xdd, 0xff, 0xff, 0xff, 0xff };
    assert_int_equal(swim_receive(s, 1, "b", junk, sizeof(junk)), -EBADMSG);
    assert_int_equal(swim_receive(s, 1, "b", junk, 0), -EBADMSG);
    assert_int_equal(swim_receive(s, 1, "", junk, sizeof(junk)), -EBADMSG);
    assert_int_equal(swim_stats(s).packets_bad, 3);
    /* An alive whose record does not decode is refused. */
    const uint8_t bad_rec[] = { 0xc1 };
    swim_msg_t m = { .type = SWIM_MSG_ALIVE, .node = "b", .addr = "b", .incarnation = 1,
                     .record = bad_rec, .record_len = 1 };
    deliver(s, 2, "b", &m, 1);
    assert_int_equal(swim_member_count(s), 1);
    swim_destroy(&s);
}

static void test_leave(void **state)
{
    swim_t *s = make("a");
    uint8_t rec[64];
    swim_msg_t b = alive("b", 0, rec, sizeof(rec));
    deliver(s, 1 * MS, "b", &b, 1);
    drain_outputs(s);
    assert_false(swim_leave_sent(s));
    assert_int_equal(swim_leave(s, 2 * MS), 0);
    swim_member_t me;
    swim_member_at(s, 0, &me);
    assert_int_equal(me.state, SWIM_LEFT);
    bool told = false;
    for (uint64_t t = 3 * MS; t < 1000 * MS && !swim_leave_sent(s); t += 10 * MS) {
        swim_tick(s, t);
        swim_packet_t p;
        if (find_output(s, "b", SWIM_OUT_UDP, &p)) {
            const swim_msg_t *d = find_msg(&p, SWIM_MSG_DEAD);
            told |= d && strcmp(d->node, "a") == 0 && strcmp(d->from, "a") == 0;
        }
    }
    assert_true(told);
    assert_true(swim_leave_sent(s));
    swim_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_validates),
        cmocka_unit_test(test_ping_is_acked_with_piggyback),
        cmocka_unit_test(test_refutes_suspicion),
        cmocka_unit_test(test_incarnation_rules),
        cmocka_unit_test(test_suspicion_timeout_formula),
        cmocka_unit_test(test_suspect_declared_dead_after_timeout),
        cmocka_unit_test(test_unconfirmed_suspect_dies_at_max),
        cmocka_unit_test(test_updates_retransmit_bounded_and_packets_fit),
        cmocka_unit_test(test_record_update_bumps_incarnation),
        cmocka_unit_test(test_join_retries_with_backoff),
        cmocka_unit_test(test_pushpull_merge_and_reply),
        cmocka_unit_test(test_garbage_is_counted_not_fatal),
        cmocka_unit_test(test_leave),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
