/* test_gossip_loopback.c - the gossip shell on real sockets on 127.0.0.1:
 * three members join and list each other; one is destroyed without leaving
 * and the others mark it dead within the bound its configuration implies;
 * a member holding another cluster key cannot join; keys rotate.
 *
 * The test runs its own small event loop (poll + tick) and waits for
 * conditions with deadlines; it never sleeps for a fixed time. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "agent/membership/gossip.h"
#include "common/log.h"

#define MAX_MEMBERS 8

typedef struct {
    gossip_t *g[MAX_MEMBERS];
    int count;
} group_t;

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* One turn of the event loop over every live member of the group. */
static void turn(group_t *grp)
{
    struct pollfd pfds[2 * MAX_MEMBERS];
    gossip_t *owner[2 * MAX_MEMBERS];
    int n = 0, timeout = 10;
    for (int i = 0; i < grp->count; i++) {
        if (!grp->g[i])
            continue;
        int fds[2];
        int k = gossip_fds(grp->g[i], fds, 2);
        for (int j = 0; j < k; j++) {
            pfds[n] = (struct pollfd){ .fd = fds[j], .events = POLLIN };
            owner[n++] = grp->g[i];
        }
        int t = gossip_timeout_ms(grp->g[i]);
        if (t < timeout)
            timeout = t;
    }
    if (poll(pfds, (nfds_t)n, timeout) > 0)
        for (int i = 0; i < n; i++)
            if (pfds[i].revents & POLLIN)
                gossip_on_readable(owner[i], pfds[i].fd);
    for (int i = 0; i < grp->count; i++)
        if (grp->g[i])
            gossip_tick(grp->g[i]);
}

static bool run_until(group_t *grp, bool (*pred)(group_t *grp, void *ctx), void *ctx,
                      uint64_t deadline_ms)
{
    uint64_t end = mono_ms() + deadline_ms;
    while (!pred(grp, ctx)) {
        if (mono_ms() >= end)
            return false;
        turn(grp);
    }
    return true;
}

static bool sees(gossip_t *g, const char *name, swim_state_t state)
{
    swim_member_t m;
    return gossip_member_find(g, name, &m) == 0 && m.state == state;
}

/* Every live member sees every other live member alive. */
static bool all_alive(group_t *grp, void *ctx)
{
    for (int i = 0; i < grp->count; i++)
        for (int j = 0; j < grp->count; j++)
            if (i != j && grp->g[i] && grp->g[j] &&
                !sees(grp->g[i], gossip_name(grp->g[j]), SWIM_ALIVE))
                return false;
    return true;
}

static bool all_see_dead(group_t *grp, void *ctx)
{
    for (int i = 0; i < grp->count; i++)
        if (grp->g[i] && !sees(grp->g[i], ctx, SWIM_DEAD))
            return false;
    return true;
}

static void key_of(uint8_t key[KEYRING_KEY_BYTES], uint8_t v)
{
    for (int i = 0; i < KEYRING_KEY_BYTES; i++)
        key[i] = (uint8_t)(v * 7 + i);
}

static gossip_t *start(const char *name, const uint8_t *key, const char *join)
{
    swim_record_t rec = { .cpus = 4, .cpu_mhz = 3000, .mem_bytes = 8ULL << 30 };
    snprintf(rec.agent_version, sizeof(rec.agent_version), "test");
    swim_record_add_iface(&rec, "lo", "127.0.0.1", "management,vmotion");
    return gossip_new(&(gossip_config_t){ .name = name, .bind = "127.0.0.1:0", .key = key,
                                          .join = join, .record = &rec });
}

static void destroy_group(group_t *grp)
{
    for (int i = 0; i < grp->count; i++)
        gossip_destroy(&grp->g[i]);
}

/* An upper bound on failure detection with the default configuration in a
 * cluster of n: a full probe round to reach the dead member, the probe
 * itself, the longest suspicion timeout, and a second for gossip and
 * scheduling slack. */
static uint64_t detection_bound_ms(int n)
{
    swim_config_t cfg;
    swim_config_default(&cfg);
    double scale = fmax(1.0, log10((double)n));
    double min_ms = cfg.suspicion_mult * scale * (double)cfg.probe_interval_us / 1000.0;
    double max_ms = min_ms * cfg.suspicion_max_mult;
    return (uint64_t)((double)n * (double)cfg.probe_interval_us / 1000.0 + max_ms) + 1000;
}

static void test_join_list_and_detect_crash(void **state)
{
    uint8_t key[KEYRING_KEY_BYTES];
    key_of(key, 1);
    group_t grp = { .count = 3 };
    grp.g[0] = start("alpha", key, NULL);
    assert_non_null(grp.g[0]);
    grp.g[1] = start("bravo", key, gossip_address(grp.g[0]));
    grp.g[2] = start("charlie", key, gossip_address(grp.g[0]));
    assert_non_null(grp.g[1]);
    assert_non_null(grp.g[2]);
    assert_true(run_until(&grp, all_alive, NULL, 10000));
    for (int i = 0; i < 3; i++)
        assert_int_equal(gossip_member_count(grp.g[i]), 3);
    swim_member_t m;
    assert_int_equal(gossip_member_find(grp.g[1], "charlie", &m), 0);
    assert_string_equal(m.addr, gossip_address(grp.g[2]));

    /* The control API's view: one map per member. */
    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);
    assert_int_equal(gossip_pack_members(grp.g[0], &pk), 0);
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    assert_int_equal(msgpack_unpack_next(&up, sbuf.data, sbuf.size, NULL), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(up.data.type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(up.data.via.array.size, 3);
    const msgpack_object *first = &up.data.via.array.ptr[0];
    assert_int_equal(first->type, MSGPACK_OBJECT_MAP);
    bool found_services = false;
    for (uint32_t i = 0; i < first->via.map.size; i++) {
        const msgpack_object_kv *kv = &first->via.map.ptr[i];
        if (kv->key.via.str.size == 10 && memcmp(kv->key.via.str.ptr, "interfaces", 10) == 0) {
            const msgpack_object *ifc = &kv->val.via.array.ptr[0];
            found_services = kv->val.via.array.size == 1 && ifc->via.map.size == 3;
        }
    }
    assert_true(found_services);
    msgpack_unpacked_destroy(&up);
    msgpack_sbuffer_destroy(&sbuf);

    /* charlie vanishes without a word. */
    gossip_destroy(&grp.g[2]);
    assert_true(run_until(&grp, all_see_dead, "charlie", detection_bound_ms(3)));
    destroy_group(&grp);
}

static bool rejected_twice(group_t *grp, void *ctx)
{
    return gossip_auth_failures(grp->g[0]) >= 2;
}

static void test_wrong_key_cannot_join(void **state)
{
    uint8_t key[KEYRING_KEY_BYTES], wrong[KEYRING_KEY_BYTES];
    key_of(key, 1);
    key_of(wrong, 2);
    group_t grp = { .count = 3 };
    grp.g[0] = start("alpha", key, NULL);
    grp.g[1] = start("bravo", key, gossip_address(grp.g[0]));
    assert_true(run_until(&grp, all_alive, NULL, 10000));
    grp.g[2] = start("mallory", wrong, gossip_address(grp.g[0]));
    assert_non_null(grp.g[2]);
    /* The join and its first retry both fail authentication at alpha. */
    assert_true(run_until(&grp, rejected_twice, NULL, 10000));
    swim_member_t m;
    assert_int_equal(gossip_member_find(grp.g[0], "mallory", &m), -ENOENT);
    assert_int_equal(gossip_member_find(grp.g[1], "mallory", &m), -ENOENT);
    assert_int_equal(gossip_member_count(grp.g[2]), 1);
    destroy_group(&grp);
}

static void test_key_rotation(void **state)
{
    uint8_t old_key[KEYRING_KEY_BYTES], new_key[KEYRING_KEY_BYTES];
    key_of(old_key, 3);
    key_of(new_key, 4);
    group_t grp = { .count = 2 };
    /* alpha still seals with the old key but accepts the new one; bravo
     * has switched already. They understand each other. */
    swim_record_t rec = { 0 };
    const uint8_t (*extra)[KEYRING_KEY_BYTES] = (const uint8_t (*)[KEYRING_KEY_BYTES])new_key;
    grp.g[0] = gossip_new(&(gossip_config_t){ .name = "alpha", .bind = "127.0.0.1:0",
                                              .key = old_key, .extra_keys = extra,
                                              .extra_key_count = 1, .record = &rec });
    assert_non_null(grp.g[0]);
    extra = (const uint8_t (*)[KEYRING_KEY_BYTES])old_key;
    grp.g[1] = gossip_new(&(gossip_config_t){ .name = "bravo", .bind = "127.0.0.1:0",
                                              .key = new_key, .extra_keys = extra,
                                              .extra_key_count = 1,
                                              .join = gossip_address(grp.g[0]) });
    assert_non_null(grp.g[1]);
    assert_true(run_until(&grp, all_alive, NULL, 10000));
    /* Finish the rotation on alpha: new key primary, old key gone. */
    assert_int_equal(keyring_use(gossip_keyring(grp.g[0]), new_key), 0);
    assert_int_equal(keyring_remove(gossip_keyring(grp.g[0]), old_key), 0);
    assert_int_equal(keyring_remove(gossip_keyring(grp.g[1]), old_key), 0);
    assert_int_equal(gossip_set_record(grp.g[0], &(swim_record_t){ .cpus = 2 }), 0);
    uint64_t inc = swim_incarnation(gossip_swim(grp.g[0]));
    swim_member_t m;
    uint64_t end = mono_ms() + 10000;
    while ((gossip_member_find(grp.g[1], "alpha", &m) < 0 || m.incarnation < inc) &&
           mono_ms() < end)
        turn(&grp);
    assert_int_equal(m.incarnation, inc);
    assert_int_equal(gossip_auth_failures(grp.g[0]), 0);
    assert_int_equal(gossip_auth_failures(grp.g[1]), 0);
    destroy_group(&grp);
}

static void test_bad_config(void **state)
{
    uint8_t key[KEYRING_KEY_BYTES];
    key_of(key, 1);
    assert_null(gossip_new(&(gossip_config_t){ .name = "x", .bind = "127.0.0.1:0" }));
    assert_null(gossip_new(&(gossip_config_t){ .name = "", .bind = "127.0.0.1:0", .key = key }));
    assert_null(gossip_new(&(gossip_config_t){ .name = "x", .bind = "localhost", .key = key }));
    assert_null(gossip_new(&(gossip_config_t){ .name = "x", .bind = "0.0.0.0:0", .key = key }));
    assert_null(gossip_new(&(gossip_config_t){ .name = "x", .bind = "127.0.0.1:0", .key = key,
                                               .join = "127.0.0.1:notaport" }));
    struct sockaddr_storage sa;
    unsigned len;
    assert_int_equal(gossip_parse_addr("127.0.0.1:7402", &sa, &len), 0);
    assert_int_equal(gossip_parse_addr("[::1]:7402", &sa, &len), 0);
    assert_int_equal(gossip_parse_addr("127.0.0.1:70000", &sa, &len), -EINVAL);
    assert_int_equal(gossip_parse_addr("127.0.0.1", &sa, &len), -EINVAL);
    assert_int_equal(gossip_parse_addr(":7402", &sa, &len), -EINVAL);
}

int main(void)
{
    log_set_level(LOG_LEVEL_WARN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_list_and_detect_crash),
        cmocka_unit_test(test_wrong_key_cannot_join),
        cmocka_unit_test(test_key_rotation),
        cmocka_unit_test(test_bad_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
