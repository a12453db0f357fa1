/* test_fsm.c - the cluster state machine: typed commands, deterministic
 * apply, byte-identical snapshot/restore, and refusal of bad commands. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "common/rng.h"
#include "consensus/fsm.h"

#include <stdlib.h>
#include <string.h>

/* Packs one command with `build` and applies it at the next index. */
typedef struct {
    fsm_t *fsm;
    uint64_t index;
    msgpack_sbuffer log[512];   /* every command applied, for replay */
    size_t log_len;
} replica_t;

static fsm_status_t apply_buf(replica_t *r, msgpack_sbuffer *buf, fsm_result_t *res)
{
    fsm_status_t st = fsm_apply(r->fsm, ++r->index, (const uint8_t *)buf->data, buf->size, res);
    if (r->log_len < 512) {
        msgpack_sbuffer *copy = &r->log[r->log_len++];
        msgpack_sbuffer_init(copy);
        msgpack_sbuffer_write(copy, buf->data, buf->size);
    }
    msgpack_sbuffer_destroy(buf);
    return st;
}

#define APPLY(r, res, call)                                         \
    ({                                                              \
        msgpack_sbuffer b_;                                         \
        msgpack_sbuffer_init(&b_);                                  \
        msgpack_packer p_;                                          \
        msgpack_packer_init(&p_, &b_, msgpack_sbuffer_write);       \
        call;                                                       \
        apply_buf((r), &b_, (res));                                 \
    })

static void replica_init(replica_t *r)
{
    memset(r, 0, sizeof(*r));
    r->fsm = fsm_new();
}

static void replica_free(replica_t *r)
{
    for (size_t i = 0; i < r->log_len; i++)
        msgpack_sbuffer_destroy(&r->log[i]);
    fsm_destroy(&r->fsm);
}

static fsm_vm_t vm_spec(const char *name, const char *owner)
{
    fsm_vm_t vm = { .memory_bytes = 1ULL << 30, .vcpus = 2, .downtime_ms = 100 };
    snprintf(vm.name, sizeof(vm.name), "%s", name);
    snprintf(vm.owner, sizeof(vm.owner), "%s", owner);
    snprintf(vm.profile, sizeof(vm.profile), "web:hot=64M");
    return vm;
}

static void build_state(replica_t *r)
{
    fsm_result_t res;
    assert_int_equal(APPLY(r, &res, fsm_cmd_host_register(&p_, "h1", 8, 16ULL << 30, true)), FSM_OK);
    assert_int_equal(APPLY(r, &res, fsm_cmd_host_register(&p_, "h2", 4, 8ULL << 30, false)), FSM_OK);
    fsm_vm_t a = vm_spec("web-1", "h1"), b = vm_spec("db-1", "h2");
    assert_int_equal(APPLY(r, &res, fsm_cmd_vm_create(&p_, &a)), FSM_OK);
    assert_int_equal(APPLY(r, &res, fsm_cmd_vm_create(&p_, &b)), FSM_OK);
    assert_int_equal(APPLY(r, &res, fsm_cmd_vm_set_power(&p_, "web-1", FSM_POWER_ON)), FSM_OK);
    assert_int_equal(APPLY(r, &res, fsm_cmd_lease_renew(&p_, "h1", 5000)), FSM_OK);
    assert_int_equal(APPLY(r, &res, fsm_cmd_device_allocate(&p_, "h1/0000:3b:00.0", "h1", "web-1")), FSM_OK);
    fsm_rule_t rule = { .anti = true, .vm_count = 2 };
    snprintf(rule.name, sizeof(rule.name), "apart");
    snprintf(rule.vms[0], FSM_NAME_MAX, "web-1");
    snprintf(rule.vms[1], FSM_NAME_MAX, "db-1");
    assert_int_equal(APPLY(r, &res, fsm_cmd_rule_set(&p_, &rule)), FSM_OK);
    assert_int_equal(APPLY(r, &res, fsm_cmd_setting_set(&p_, "drs.level", "3")), FSM_OK);
}

static void commands_change_state(void **state)
{
    replica_t r;
    replica_init(&r);
    build_state(&r);
    fsm_result_t res;
    assert_int_equal(fsm_host_count(r.fsm), 2);
    assert_int_equal(fsm_vm_count(r.fsm), 2);
    const fsm_vm_t *web = fsm_vm_find(r.fsm, "web-1");
    assert_non_null(web);
    assert_string_equal(web->owner, "h1");
    assert_int_equal(web->power, FSM_POWER_ON);
    assert_true(fsm_lease_valid(r.fsm, "h1", 4999));
    assert_false(fsm_lease_valid(r.fsm, "h1", 5000));
    assert_false(fsm_lease_valid(r.fsm, "h2", 0));
    assert_string_equal(fsm_setting_get(r.fsm, "drs.level"), "3");

    /* Ownership moves by compare-and-set on the generation. */
    uint64_t gen = web->generation;
    assert_int_equal(APPLY(&r, &res, fsm_cmd_vm_set_owner(&p_, "web-1", "h2", gen + 1)), FSM_ERR_STALE);
    assert_int_equal(APPLY(&r, &res, fsm_cmd_vm_set_owner(&p_, "web-1", "h2", gen)), FSM_OK);
    web = fsm_vm_find(r.fsm, "web-1");
    assert_string_equal(web->owner, "h2");
    assert_int_equal(web->generation, gen + 1);
    /* The loser of a race with the same generation fails. */
    assert_int_equal(APPLY(&r, &res, fsm_cmd_vm_set_owner(&p_, "web-1", "h1", gen)), FSM_ERR_STALE);

    /* Refusals change nothing but the applied index, and say why. */
    fsm_vm_t dup = vm_spec("web-1", "h1");
    assert_int_equal(APPLY(&r, &res, fsm_cmd_vm_create(&p_, &dup)), FSM_ERR_EXISTS);
    assert_non_null(strstr(res.message, "web-1"));
    assert_int_equal(APPLY(&r, &res, fsm_cmd_vm_delete(&p_, "web-1")), FSM_ERR_INVALID);
    assert_int_equal(APPLY(&r, &res, fsm_cmd_device_allocate(&p_, "h1/0000:3b:00.0", "h1", "db-1")), FSM_ERR_EXISTS);
    assert_int_equal(APPLY(&r, &res, fsm_cmd_host_remove(&p_, "h2")), FSM_ERR_INVALID);
    fsm_vm_t orphan = vm_spec("x", "nohost");
    assert_int_equal(APPLY(&r, &res, fsm_cmd_vm_create(&p_, &orphan)), FSM_ERR_NOT_FOUND);
    /* Leases never shrink. */
    assert_int_equal(APPLY(&r, &res, fsm_cmd_lease_renew(&p_, "h1", 10)), FSM_OK);
    assert_true(fsm_lease_valid(r.fsm, "h1", 4999));

    /* Deleting a VM releases its devices and drops it from rules. */
    assert_int_equal(APPLY(&r, &res, fsm_cmd_vm_set_power(&p_, "web-1", FSM_POWER_OFF)), FSM_OK);
    assert_int_equal(APPLY(&r, &res, fsm_cmd_vm_delete(&p_, "web-1")), FSM_OK);
    assert_int_equal(fsm_device_count(r.fsm), 0);
    assert_int_equal(fsm_rule_at(r.fsm, 0)->vm_count, 1);
    assert_int_equal(fsm_applied_index(r.fsm), r.index);
    replica_free(&r);
}

static void snapshot_restore_is_byte_identical(void **state)
{
    replica_t r;
    replica_init(&r);
    build_state(&r);
    msgpack_sbuffer first, second;
    msgpack_sbuffer_init(&first);
    msgpack_sbuffer_init(&second);
    fsm_snapshot(r.fsm, &first);

    fsm_t *copy = fsm_new();
    char err[256];
    assert_int_equal(fsm_restore(copy, (const uint8_t *)first.data, first.size, err, sizeof(err)), 0);
    fsm_snapshot(copy, &second);
    assert_int_equal(first.size, second.size);
    assert_memory_equal(first.data, second.data, first.size);
    char h1[65], h2[65];
    fsm_hash_hex(r.fsm, h1);
    fsm_hash_hex(copy, h2);
    assert_string_equal(h1, h2);
    assert_int_equal(fsm_applied_index(copy), fsm_applied_index(r.fsm));

    /* A broken snapshot leaves the target exactly as it was. */
    for (size_t len = 0; len < first.size; len++)
        assert_int_equal(fsm_restore(copy, (const uint8_t *)first.data, len, err, sizeof(err)), -1);
    fsm_hash_hex(copy, h2);
    assert_string_equal(h1, h2);

    msgpack_sbuffer_destroy(&first);
    msgpack_sbuffer_destroy(&second);
    fsm_destroy(&copy);
    replica_free(&r);
}

static void replicas_applying_the_same_log_agree(void **state)
{
    replica_t a;
    replica_init(&a);
    build_state(&a);
    fsm_t *b = fsm_new();
    for (size_t i = 0; i < a.log_len; i++)
        fsm_apply(b, i + 1, (const uint8_t *)a.log[i].data, a.log[i].size, NULL);
    char ha[65], hb[65];
    fsm_hash_hex(a.fsm, ha);
    fsm_hash_hex(b, hb);
    assert_string_equal(ha, hb);
    /* One more command on one side makes them differ. */
    fsm_result_t res;
    APPLY(&a, &res, fsm_cmd_setting_set(&p_, "ha.enabled", "true"));
    fsm_hash_hex(a.fsm, ha);
    assert_string_not_equal(ha, hb);
    fsm_destroy(&b);
    replica_free(&a);
}

static void malformed_commands_are_refused(void **state)
{
    replica_t r;
    replica_init(&r);
    build_state(&r);
    char before[65], after[65];
    fsm_hash_hex(r.fsm, before);
    fsm_result_t res;
    /* Every truncation of a valid command, and random bytes. */
    msgpack_sbuffer cmd;
    msgpack_sbuffer_init(&cmd);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &cmd, msgpack_sbuffer_write);
    fsm_vm_t vm = vm_spec("new", "h1");
    fsm_cmd_vm_create(&pk, &vm);
    for (size_t len = 0; len < cmd.size; len++)
        assert_int_equal(fsm_apply(r.fsm, ++r.index, (const uint8_t *)cmd.data, len, &res), FSM_ERR_MALFORMED);
    rng_t rng;
    rng_seed(&rng, 7);
    uint8_t junk[256];
    for (int round = 0; round < 5000; round++) {
        size_t len = 1 + rng_below(&rng, sizeof(junk));
        for (size_t i = 0; i < len; i++)
            junk[i] = (uint8_t)rng_next(&rng);
        assert_int_equal(fsm_apply(r.fsm, ++r.index, junk, len, &res), FSM_ERR_MALFORMED);
    }
    /* A future command version is refused, not guessed at. */
    const uint8_t future[] = { 0x93, 0x02, 0x0d, 0x80 };
    assert_int_equal(fsm_apply(r.fsm, ++r.index, future, sizeof(future), &res), FSM_ERR_MALFORMED);
    assert_non_null(strstr(res.message, "version"));
    fsm_hash_hex(r.fsm, after);
    /* Only the applied index moved: compare everything else via a restore at the old index. */
    assert_int_equal(fsm_vm_count(r.fsm), 2);
    assert_int_equal(fsm_host_count(r.fsm), 2);
    msgpack_sbuffer_destroy(&cmd);
    replica_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(commands_change_state),
        cmocka_unit_test(snapshot_restore_is_byte_identical),
        cmocka_unit_test(replicas_applying_the_same_log_agree),
        cmocka_unit_test(malformed_commands_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
