/* migrate.h - move a VM to another host: live (vMotion) or cold.
 *
 * The library the agent calls. It owns the data plane of a migration: the
 * encrypted stream (stream.h), the pre-copy loop driven by the dirty log and
 * the pure policy (policy.h), the switchover, verification and rollback.
 * It does not own cluster decisions: the caller runs the preflight
 * (capacity, devices, rules, network selection) before it starts, and
 * commits the ownership change through Raft inside the commit callback.
 *
 * Live migration, source host:
 *
 *   migration_params_t p;
 *   migration_params_defaults(&p);
 *   p.endpoint = "tcp://198.18.0.8:7403";          // the receiver's, from its host
 *   p.identity = my_keys;  memcpy(p.peer_public_key, dest_key, 32);
 *   memcpy(p.migration_id, id, 16);                 // agreed over the control plane
 *   p.vm_config = &spec;                            // the VM's config
 *   p.commit = commit_owner_change;  p.commit_ctx = agent;   // Raft, at switchover
 *   migration_result_t r;
 *   int rc = migration_send(&vm, &p, on_progress, bar, &r);
 *   // rc == 0: the VM runs on the destination and vm == NULL (source released).
 *   // rc < 0 before the commit: the VM runs here as before (r.committed false).
 *
 * Destination host, before the source starts:
 *
 *   migration_receiver_t *rx = migration_receiver_new(&cfg, err, sizeof err);   // binds
 *   ... tell the source migration_receiver_endpoint(rx) ...
 *   rc = migration_receiver_run(rx, on_progress, ctx, &r);   // blocks; a thread of its own
 *   vm_t *vm = migration_receiver_take_vm(rx);               // running, on success
 *   migration_receiver_destroy(&rx);
 *
 * Steps of a live migration (docs/migration.md has the protocol):
 *   1 handshake, then DESCRIBE: the receiver checks that it can hold the VM
 *     (memory and vCPU limits, host memory) and creates an incoming VM;
 *   2 full pass: every page that holds data (holes are never read, zero
 *     pages travel as a flag); dirty logging is on from the start;
 *   3 iterative passes: collect + clear the dirty log, send those pages; the
 *     policy decides after each pass: CONTINUE, THROTTLE (vm_throttle),
 *     SWITCHOVER or ABORT (not converging within its max time);
 *   4 switchover: pause the vCPUs; send the last dirty pages and the vCPU
 *     state; the receiver loads it and, if asked, both sides hash guest
 *     memory and the sender compares; the commit callback; the receiver
 *     resumes the VM once it hears the commit; the source VM is destroyed.
 * Anything that fails before the commit rolls back: the throttle goes off,
 * dirty logging off, the VM resumes if this function paused it, the
 * receiver is told to drop its copy.
 *
 * Cold migration moves a powered-off VM's image (image.h) the same way;
 * an interrupted copy resumes where the receiver's journal says it stopped.
 *
 * Every function returns 0 or a negative migration_error_t; the result
 * says what happened in words. Nothing here is thread-safe except
 * migration_receiver_cancel(); a migration belongs to one thread. */
#ifndef FERRY_MIGRATION_MIGRATE_H
#define FERRY_MIGRATION_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migration/migrate_wire.h"
#include "migration/policy.h"
#include "migration/stream.h"
#include "vmm/vm.h"

typedef enum {
    MIGRATION_OK = 0,
    MIGRATION_ERR_INVALID = -101,      /* bad parameters, or the VM is not in a state to move */
    MIGRATION_ERR_STREAM = -102,       /* network, handshake, authentication, tampering:
                                          result.stream_error has the stream's code */
    MIGRATION_ERR_REFUSED = -103,      /* the receiver refused the VM (its reason in the text) */
    MIGRATION_ERR_NOT_CONVERGED = -104,/* the policy gave up (result.abort_reason) */
    MIGRATION_ERR_CANCELLED = -105,    /* the progress callback or migration_receiver_cancel */
    MIGRATION_ERR_VM = -106,           /* a VM operation failed (pause, dirty log, state) */
    MIGRATION_ERR_VERIFY = -107,       /* the memory hashes differ */
    MIGRATION_ERR_COMMIT = -108,       /* the commit callback failed */
    MIGRATION_ERR_UNCONFIRMED = -109,  /* committed, but the destination never said it resumed */
    MIGRATION_ERR_ABORTED = -110,      /* receiver: the sender called the migration off */
    MIGRATION_ERR_IN_DOUBT = -111,     /* receiver: verified, then the outcome never came */
    MIGRATION_ERR_IO = -112,           /* files (cold migration, images) */
    MIGRATION_ERR_NOMEM = -113,
} migration_error_t;

/* --- progress ------------------------------------------------------------------ */

typedef enum {
    MIGRATION_PHASE_CONNECT,      /* handshake, description, acceptance */
    MIGRATION_PHASE_FULL,         /* the first pass: all memory */
    MIGRATION_PHASE_ITERATE,      /* a pass of dirty pages */
    MIGRATION_PHASE_SWITCHOVER,   /* paused: last pages, state, verify, commit */
    MIGRATION_PHASE_DONE,
} migration_phase_t;

typedef struct {
    migration_phase_t phase;
    uint32_t pass;                /* 1 = the full pass */
    bool pass_done;               /* a pass ended: the policy fields below are fresh */
    uint64_t pass_pages;          /* pages this pass has to send */
    uint64_t pass_pages_sent;
    double percent;               /* of this pass, 0..100 */
    uint64_t bytes_sent;          /* on the wire, whole migration so far */
    uint64_t rate_Bps;            /* send rate estimate */
    uint64_t dirty_rate_Bps;      /* last pass end */
    uint64_t remaining_pages;     /* dirty at the last pass end */
    uint64_t predicted_stun_us;   /* last prediction; UINT64_MAX until the first pass ends */
    policy_action_t decision;     /* last pass end's decision */
    unsigned throttle_percent;
    double elapsed_ms;
} migration_progress_t;

/* Called at every pass end and about every 100 ms within a pass, on the
 * migration's thread. A non-zero return cancels the migration (before the
 * switchover; later it is too late and the return is ignored). The
 * receiver calls one too (pass numbers from the sender's pass ends; it
 * does not know a pass's size, so percent stays 0). */
typedef int (*migration_progress_fn)(const migration_progress_t *progress, void *ctx);

/* The commit point. Called at switchover with the VM paused here and loaded
 * (and verified) at the destination. Return 0 once the ownership change is
 * committed; anything else rolls the migration back (write why into `why`). */
typedef int (*migration_commit_fn)(void *ctx, char *why, size_t whylen);

/* --- the sender ----------------------------------------------------------------- */

typedef struct {
    const char *endpoint;                 /* the receiver's "tcp://ADDRESS:PORT" */
    stream_identity_t identity;           /* ours (raw CURVE keypair) */
    uint8_t peer_public_key[STREAM_KEY_BYTES];
    uint8_t migration_id[STREAM_MIGRATION_ID_BYTES];
    const vm_config_t *vm_config;         /* live: the VM's config (name, memory, vCPUs, cmdline) */
    uint32_t streams;                     /* parallel connections (default 1) */
    uint32_t chunk_bytes;                 /* default 2 MiB */
    uint32_t window;                      /* default 4 */
    stream_cipher_t cipher;               /* default AUTO */
    int io_timeout_ms;                    /* longest wait for the receiver (default 10 s) */
    int switchover_timeout_ms;            /* longest wait for load + verify and for the
                                             resume confirmation (default 60 s) */
    policy_config_t policy;               /* pre-copy policy; defaults from policy_config_defaults */
    uint64_t max_bandwidth_Bps;           /* pre-copy send rate cap, wire bytes/s (0: none).
                                             The switchover is never paced: it would
                                             only lengthen the stun. */
    bool verify_memory_hash;              /* hash memory on both sides at switchover */
    uint64_t checkpoint_bytes;            /* cold: receiver journals every this many (64 MiB) */
    int progress_interval_ms;             /* least time between progress calls within a
                                             pass (default 100; 0: every batch of pages) */
    migration_commit_fn commit;           /* required */
    void *commit_ctx;
} migration_params_t;

typedef struct {
    int error;                            /* what the call returned */
    int stream_error;                     /* the stream's code for MIGRATION_ERR_STREAM */
    char error_text[320];                 /* "" on success */
    migration_kind_t kind;
    bool committed;                       /* the commit callback succeeded */
    bool source_released;                 /* live sender: the source VM was destroyed */
    bool hash_verified;                   /* both hashes computed, and equal */
    uint8_t source_hash[MIGRATION_HASH_BYTES];
    uint8_t dest_hash[MIGRATION_HASH_BYTES];
    double downtime_ms;                   /* live: vCPUs paused -> destination resumed,
                                             commit callback included */
    double stop_copy_ms;                  /* live: vCPUs paused -> last pages and state
                                             handed to the network (what QEMU calls
                                             downtime: no load, verify, commit, resume) */
    double commit_ms;                     /* inside the commit callback */
    double total_ms;                      /* the whole call */
    uint64_t bytes_sent;                  /* wire bytes (receiver: received) */
    uint64_t pages_sent;                  /* pages carried, zero pages included */
    uint64_t zero_pages;                  /* pages that cost no data: zero flags, and
                                             holes the full pass never had to send */
    uint64_t final_pages;                 /* pages sent with the vCPUs paused */
    uint32_t passes;                      /* pre-copy passes, the full one included */
    unsigned throttle_max;                /* highest throttle applied, percent */
    uint64_t predicted_stun_us;           /* the policy's prediction at switchover */
    policy_abort_reason_t abort_reason;   /* for MIGRATION_ERR_NOT_CONVERGED */
    uint64_t resume_from_page;            /* cold: where the copy started (0 = beginning) */
    char cipher[24];                      /* "aes256gcm", "xchacha20poly1305", "none" */
} migration_result_t;

void migration_params_defaults(migration_params_t *p);

/* Live-migrates the running (or paused) VM *vm_p. On success the VM runs on
 * the destination, the source VM is destroyed and *vm_p is NULL. On failure
 * before the commit the VM is where it was, in the run state it had. After
 * a successful commit the source is always released, even if the
 * destination fails to confirm (MIGRATION_ERR_UNCONFIRMED): ownership has
 * moved, and running here would run the VM twice. */
int migration_send(vm_t **vm_p, const migration_params_t *p, migration_progress_fn cb,
                   void *ctx, migration_result_t *out);

/* Cold-migrates the powered-off VM image in image_dir (image.h). Resumes
 * where an earlier, interrupted copy to the same receiver directory stopped.
 * The source image is left in place: remove it (image_remove) once the
 * caller no longer needs it. */
int migration_send_image(const char *image_dir, const migration_params_t *p,
                         migration_progress_fn cb, void *ctx, migration_result_t *out);

/* --- the receiver --------------------------------------------------------------- */

typedef struct {
    const char *bind_endpoint;            /* "tcp://ADDRESS:PORT" on the selected network;
                                             port * picks one */
    stream_identity_t identity;
    uint8_t peer_public_key[STREAM_KEY_BYTES];         /* the sender's */
    uint8_t migration_id[STREAM_MIGRATION_ID_BYTES];
    const char *image_dir;                /* cold: where the image lands (with its partial
                                             file and journal); NULL: live */
    uint64_t max_memory_bytes;            /* refuse a bigger VM; 0: host memory decides */
    unsigned max_vcpus;                   /* refuse more vCPUs; 0: VM_MAX_VCPUS */
    const char *kernel_path;              /* live: for the incoming VM (NULL: default) */
    const char *console_log_path;         /* live: for the incoming VM (NULL: none) */
    const char *backend;                  /* live: "kvm", "process" (NULL: vm_default_backend);
                                             not copied: must outlive the receiver */
    int accept_timeout_ms;                /* wait for the sender (default 30 s) */
    int io_timeout_ms;                    /* longest silence from the sender (default 10 s) */
    int commit_timeout_ms;                /* after verifying, wait this long for the outcome
                                             (default 60 s), then MIGRATION_ERR_IN_DOUBT */
    int progress_interval_ms;             /* as in migration_params_t (default 100) */
    uint32_t max_streams, max_chunk_bytes, max_window;   /* stream limits (stream.h defaults) */
    stream_cipher_t cipher;
} migration_receiver_config_t;

typedef struct migration_receiver migration_receiver_t;

void migration_receiver_config_defaults(migration_receiver_config_t *cfg);

/* Binds at once. NULL with err filled on a bad config or a failed bind. */
migration_receiver_t *migration_receiver_new(const migration_receiver_config_t *cfg, char *err,
                                             size_t errlen);
void migration_receiver_destroy(migration_receiver_t **self_p);

const char *migration_receiver_endpoint(const migration_receiver_t *self);

/* Accepts one migration and runs it to its end. 0: live, the VM runs here
 * (take it); cold, the image is complete in image_dir. On failure before the
 * commit the incoming VM is destroyed (a cold copy keeps its partial file and
 * journal for a later resume). MIGRATION_ERR_IN_DOUBT: everything arrived
 * and verified but the outcome did not: the VM is loaded, not started; ask
 * the cluster who owns it, then vm_start it or destroy it. */
int migration_receiver_run(migration_receiver_t *self, migration_progress_fn cb, void *ctx,
                           migration_result_t *out);

/* From any thread: make run() give up at its next poll (within ~100 ms). */
void migration_receiver_cancel(migration_receiver_t *self);

/* The incoming VM, handed over to the caller (NULL if none). */
vm_t *migration_receiver_take_vm(migration_receiver_t *self);

/* What the sender described (valid once run() got that far, else NULL). */
const migration_describe_t *migration_receiver_description(const migration_receiver_t *self);

const char *migration_error_name(int error);
const char *migration_phase_name(migration_phase_t phase);

#endif
