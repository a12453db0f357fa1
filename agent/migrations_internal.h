/* migrations_internal.h - what migrations.c (the loop side: control
 * handlers, jobs, the commit) and migration_thread.c (the data plane's
 * threads) share. Not a face: nothing else includes it. */
#ifndef FERRY_AGENT_MIGRATIONS_INTERNAL_H
#define FERRY_AGENT_MIGRATIONS_INTERNAL_H

#include "agent/forward.h"
#include "agent/migration_plan.h"
#include "agent/migrations.h"
#include "migration/migrate.h"
#include "migration/slots.h"

#include <limits.h>
#include <pthread.h>

#define MIGRATIONS_JOBS_MAX 64          /* jobs remembered: running, queued and finished */
#define MIGRATION_NOTICE_TIMEOUT_MS 1000  /* how long the guest may take to acknowledge
                                             "about to migrate" (vSphere's is configurable) */
#define MIGRATION_ID_HEX (STREAM_MIGRATION_ID_BYTES * 2 + 1)
#define MIGRATION_ABORT_REASON_MAX 320  /* migration.abort's reason, with its NUL */

typedef enum { JOB_QUEUED, JOB_RUNNING, JOB_SUCCEEDED, JOB_FAILED } job_state_t;

/* The commit, asked for by the source's thread and run by the loop. */
typedef enum { COMMIT_NONE, COMMIT_ASKED, COMMIT_RUNNING, COMMIT_DONE, COMMIT_REFUSED } commit_state_t;

typedef struct commit_request commit_request_t;

typedef struct job {
    migrations_t *owner;
    uint8_t id[STREAM_MIGRATION_ID_BYTES];
    char id_hex[MIGRATION_ID_HEX];
    uint64_t ticket;                  /* for slots.h: the first 8 bytes of the id */
    bool outgoing;                    /* this host is the source */
    bool live;
    char vm[FSM_NAME_MAX];
    char peer[FSM_NAME_MAX];          /* the destination (outgoing) or the source */
    job_state_t state;                /* loop only */
    uint64_t created_wall_ms;
    int64_t started_mono_ms, ended_mono_ms;

    /* Set by the loop before the thread starts; read-only afterwards. */
    char peer_control[300];           /* tcp://HOST:PORT of the peer's control API */
    char peer_key[CRYPTO_Z85_LEN + 1];
    char source_address[64];          /* outgoing: bind the data plane's connection here ("" any) */
    uint32_t downtime_ms, streams;
    bool verify;
    uint64_t memory_bytes;
    uint32_t vcpus;
    char cmdline[GUEST_CMDLINE_MAX + 1];
    uint64_t generation;              /* the VM's at the start: the commit's compare-and-set */
    char image_dir[PATH_MAX];         /* cold: the image (source) or where it lands */
    char warning[200];
    vm_t *machine;                    /* outgoing live: lent by vms, the thread's until it ends */
    migration_receiver_t *receiver;   /* incoming */
    pthread_t thread;
    bool thread_started;

    /* Shared with the thread: under owner->lock. */
    migration_progress_t progress;
    bool has_progress;
    migration_network_t network;      /* the destination's choice */
    bool cancel;
    char cancel_why[360];             /* who called it off and why: the job's error then */
    bool guest_acked;                 /* the guest acknowledged the migration notice */
    bool thread_done;
    int rc;
    migration_result_t result;
    char error[400];                  /* why it failed, in words */
    commit_state_t commit;
    char commit_why[240];
    commit_request_t *commit_request; /* loop only: a proposal in flight */
} job_t;

struct migrations {
    char name[FSM_NAME_MAX];
    const config_t *config;
    crypto_identity_t identity;
    const inventory_t *inventory;
    cluster_t *cluster;
    peers_t *peers;
    vms_t *vms;
    control_t *control;
    zloop_t *loop;
    slots_t *slots;
    forward_t *forward;               /* asks the VM's owner when the request came here */
    job_t *jobs[MIGRATIONS_JOBS_MAX];
    size_t job_count;
    int wake_fd;                      /* eventfd: a thread has news for the loop */
    int lease_timer;                  /* calls outgoing migrations off when the lease lapses */
    bool stopping;
    pthread_mutex_t lock;
    pthread_cond_t changed;           /* a commit finished, or the agent is stopping */
};

/* migration_thread.c: the bodies of the jobs' threads. */
void *migration_thread_send(void *job);
void *migration_thread_receive(void *job);

/* The sequence number of a migration's guest notices (vm_notify): both
 * hosts derive it from the id, 1..VM_NOTICE_SEQ_MAX. */
uint32_t migration_notice_seq(const uint8_t id[STREAM_MIGRATION_ID_BYTES]);

/* migrations.c, for the threads: wakes the loop. */
void migrations_wake(migrations_t *self);

#endif
