/* migrate_fixture.h - what the migration tests share (test_migrate_live.c,
 * test_migrate_faults.c, test_migrate_cold.c): keys, booting a guest and
 * waiting on it, the receiver on a thread, the commit and progress
 * callbacks, and the check that a VM still runs where it was.
 *
 * Waits are bounded polls on conditions, never fixed sleeps. */
#ifndef FERRY_TESTS_MIGRATE_FIXTURE_H
#define FERRY_TESTS_MIGRATE_FIXTURE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "migration/migrate.h"
#include "vmm/vm.h"

#define MF_MIB (1ull << 20)
#define MF_WAIT_MS 60000   /* generous: guests may run in an instruction emulator here */

/* Without /dev/kvm: prints "SKIPPED: no /dev/kvm" and skips the test. */
bool mf_have_kvm(void);
#define MF_REQUIRE_KVM()     \
    do {                     \
        if (!mf_have_kvm())  \
            skip();          \
    } while (0)

int64_t mf_now_ms(void);

/* What a guest must have reached. Heartbeat and sweeps are "strictly
 * above", so even a zero goal asks for a first heartbeat and sweep. */
typedef struct {
    uint32_t heartbeat;      /* the guest's counter above this */
    uint64_t sweeps;         /* completed sweeps above this */
    uint64_t written;        /* pages written at least this */
    uint64_t round;          /* test profile: last round == this (0: ignore) */
} mf_goal_t;

/* Polls until the goal holds; false (and a message) after timeout_ms or if
 * the VM stops. */
bool mf_wait(vm_t *vm, mf_goal_t goal, int timeout_ms, vm_status_t *out);

typedef struct {
    stream_identity_t source, destination, stranger;
    uint8_t migration_id[STREAM_MIGRATION_ID_BYTES];
    vm_config_t config;      /* of the last VM booted */
    char cmdline[256];
    char name[32];
} mf_fixture_t;

/* cmocka setup/teardown: three CURVE identities, a migration id. */
int mf_setup(void **state);
int mf_teardown(void **state);

/* Boots a 1-vCPU guest and waits until it ran a first sweep. */
vm_t *mf_boot(mf_fixture_t *f, const char *name, uint64_t memory, const char *cmdline);

/* Loopback receiver config expecting f->source; generous timeouts. */
migration_receiver_config_t mf_receiver_config(mf_fixture_t *f);

/* The commit callback: counts calls, notes whether the source was paused,
 * answers `answer` (non-zero: "no quorum"). */
typedef struct {
    int calls;
    int answer;
    bool source_paused;
    vm_t *source;
} mf_commit_t;

int mf_commit_cb(void *ctx, char *why, size_t whylen);

/* Sender parameters toward endpoint, verifying memory, committing through c. */
migration_params_t mf_sender_params(mf_fixture_t *f, const char *endpoint, mf_commit_t *c);

/* The receiver on a thread of its own. */
typedef struct {
    migration_receiver_t *rx;
    migration_result_t result;
    int rc;
    vm_t *vm;                /* taken from the receiver when run() returned */
    migration_progress_fn progress;
    void *progress_ctx;
    pthread_t thread;
} mf_rx_t;

mf_rx_t *mf_rx_start(const migration_receiver_config_t *cfg, migration_progress_fn progress,
                     void *progress_ctx);
void mf_rx_join(mf_rx_t *r);   /* waits for run() and destroys the receiver */
void mf_rx_free(mf_rx_t **r_p);   /* destroys a VM it still holds */

/* Progress as the CLI would draw it. */
typedef struct {
    int calls, pass_ends;
    uint32_t last_pass;
    migration_phase_t last_phase;
    bool percent_out_of_range;
    int cancel_at_pass;      /* answer 1 at this pass end (0: never) */
} mf_progress_t;

int mf_progress_cb(const migration_progress_t *pr, void *ctx);

/* After a failed migration: the VM is where it was, running, heartbeats
 * rising, no throttle, no dirty logging, self-check clean. */
void mf_assert_runs_here(vm_t *vm);

bool mf_all_zero(const uint8_t *p, size_t n);

#endif
