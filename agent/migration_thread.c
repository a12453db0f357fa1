/* migration_thread.c - the data plane's threads: one per running job.
 *
 * A thread owns what the loop lent it (the VM, the receiver) until it ends;
 * it talks to the loop only through its job, under the manager's lock, and
 * wakes the loop with migrations_wake(). The blocking work is here: the
 * call to the destination's control API, migration_send() and
 * migration_receiver_run(). */
#include "agent/migrations_internal.h"
#include "common/ctl_client.h"
#include "common/log.h"
#include "common/wire.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PEER_CALL_TIMEOUT_MS 10000
#define PREPARE_BUSY_RETRY_MS 1000
#define PREPARE_BUSY_MAX_MS (5 * 60 * 1000)   /* the destination stays busy: give up */
#define COMMIT_WAIT_MS 30000                 /* the loop's proposal must apply by then */

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool cancelled(job_t *job)
{
    pthread_mutex_lock(&job->owner->lock);
    bool cancel = job->cancel || job->owner->stopping;
    pthread_mutex_unlock(&job->owner->lock);
    return cancel;
}

/* Progress from the data plane; a non-zero return cancels the migration. */
static int on_progress(const migration_progress_t *progress, void *ctx)
{
    job_t *job = ctx;
    pthread_mutex_lock(&job->owner->lock);
    job->progress = *progress;
    job->has_progress = true;
    bool cancel = job->cancel || job->owner->stopping;
    pthread_mutex_unlock(&job->owner->lock);
    return cancel ? 1 : 0;
}

static void finish(job_t *job, int rc, const migration_result_t *result, const char *error)
{
    migrations_t *m = job->owner;
    pthread_mutex_lock(&m->lock);
    job->rc = rc;
    if (result)
        job->result = *result;
    const char *what = error && error[0] ? error : migration_error_name(rc);
    /* A cancelled job failed because of whoever called it off: say who and
     * why first, then where it stood. */
    if (rc == MIGRATION_ERR_CANCELLED && job->cancel_why[0])
        snprintf(job->error, sizeof(job->error), "%s (%s)", job->cancel_why, what);
    else if (rc != 0)
        snprintf(job->error, sizeof(job->error), "%s", what);
    job->thread_done = true;
    pthread_mutex_unlock(&m->lock);
    migrations_wake(m);
}

/* --- the destination's control API ------------------------------------------------- */

/* One call to the peer. Returns 0 with the response (release it), or -1
 * with err; *busy says the destination refused for want of a free slot. */
static int peer_call(job_t *job, const char *command, const msgpack_sbuffer *args, ctl_response_t *response,
                     bool *busy, char *err, size_t errlen)
{
    *busy = false;
    ctl_client_t *client = ctl_client_new(job->peer_control, job->peer_key, &job->owner->identity,
                                          PEER_CALL_TIMEOUT_MS);
    if (!client) {
        snprintf(err, errlen, "%s's control address '%s' is not valid", job->peer, job->peer_control);
        return -1;
    }
    char why[600];
    ctl_status_t status = ctl_call(client, command, args, response, why, sizeof(why));
    ctl_client_destroy(&client);
    if (status == CTL_OK)
        return 0;
    if (status == CTL_ERR_AGENT) {
        *busy = response->reply.code == CONTROL_UNAVAILABLE;
        ctl_response_release(response);
    }
    snprintf(err, errlen, "%s refused: %s", job->peer, why);
    return -1;
}

/* migration.prepare: the destination binds a receiver and says where.
 * A destination whose slots are all taken answers "unavailable": wait. */
static int prepare(job_t *job, char *endpoint, size_t endpoint_cap, char *err, size_t errlen)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    wire_pack_kv_str(&pk, "id", job->id_hex);
    wire_pack_kv_str(&pk, "vm", job->vm);
    wire_pack_kv_str(&pk, "kind", job->live ? "live" : "cold");
    wire_pack_kv_str(&pk, "source", job->owner->name);
    wire_pack_kv_u64(&pk, "memory_bytes", job->memory_bytes);
    wire_pack_kv_u64(&pk, "vcpus", job->vcpus);
    int64_t give_up = mono_ms() + PREPARE_BUSY_MAX_MS;
    int rc = -1;
    for (;;) {
        ctl_response_t response;
        bool busy;
        if (peer_call(job, "migration.prepare", &args, &response, &busy, err, errlen) == 0) {
            const msgpack_object *r = response.reply.result;
            migration_network_t net = { 0 };
            char why[160];
            if (!r || wire_get_str(r, "endpoint", endpoint, endpoint_cap, why, sizeof(why)) != 0
                || wire_get_str(r, "network", net.network, sizeof(net.network), why, sizeof(why)) != 0
                || wire_get_str(r, "interface", net.interface, sizeof(net.interface), why, sizeof(why)) != 0
                || wire_get_str(r, "address", net.address, sizeof(net.address), why, sizeof(why)) != 0
                || wire_get_bool(r, "fallback", &net.fallback, why, sizeof(why)) != 0) {
                snprintf(err, errlen, "%s answered migration.prepare without endpoint, network, interface, "
                         "address and fallback", job->peer);
            } else {
                pthread_mutex_lock(&job->owner->lock);
                job->network = net;
                pthread_mutex_unlock(&job->owner->lock);
                rc = 0;
            }
            ctl_response_release(&response);
            break;
        }
        if (!busy || mono_ms() >= give_up || cancelled(job))
            break;
        usleep(PREPARE_BUSY_RETRY_MS * 1000);
    }
    msgpack_sbuffer_destroy(&args);
    return rc;
}

/* Best effort: the destination drops its receiver now rather than at its
 * accept timeout, and records our reason as its own failure's. */
static void abort_at_destination(job_t *job, const char *reason)
{
    char shortened[MIGRATION_ABORT_REASON_MAX];
    snprintf(shortened, sizeof(shortened), "%s", reason && reason[0] ? reason : "no reason given");
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    wire_pack_kv_str(&pk, "id", job->id_hex);
    wire_pack_kv_str(&pk, "reason", shortened);
    ctl_response_t response;
    bool busy;
    char err[300];
    if (peer_call(job, "migration.abort", &args, &response, &busy, err, sizeof(err)) == 0)
        ctl_response_release(&response);
    msgpack_sbuffer_destroy(&args);
}

/* --- the commit: the loop proposes, this thread waits ------------------------------- */

static int commit_via_loop(void *ctx, char *why, size_t whylen)
{
    job_t *job = ctx;
    migrations_t *m = job->owner;
    pthread_mutex_lock(&m->lock);
    if (m->stopping) {
        pthread_mutex_unlock(&m->lock);
        snprintf(why, whylen, "the agent is stopping");
        return -1;
    }
    job->commit = COMMIT_ASKED;
    pthread_mutex_unlock(&m->lock);
    migrations_wake(m);

    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += COMMIT_WAIT_MS / 1000;
    pthread_mutex_lock(&m->lock);
    int waited = 0;
    while ((job->commit == COMMIT_ASKED || job->commit == COMMIT_RUNNING) && !m->stopping && waited != ETIMEDOUT)
        waited = pthread_cond_timedwait(&m->changed, &m->lock, &deadline);
    bool ok = job->commit == COMMIT_DONE;
    if (!ok)
        snprintf(why, whylen, "%s", job->commit == COMMIT_REFUSED ? job->commit_why
                                    : m->stopping ? "the agent is stopping"
                                                  : "the ownership change did not apply within 30 s");
    pthread_mutex_unlock(&m->lock);
    return ok ? 0 : -1;
}

/* --- the source ---------------------------------------------------------------------- */

uint32_t migration_notice_seq(const uint8_t id[STREAM_MIGRATION_ID_BYTES])
{
    uint32_t seq = ((uint32_t)id[0] << 16 | (uint32_t)id[1] << 8 | id[2]) & VM_NOTICE_SEQ_MAX;
    return seq ? seq : 1;
}

/* As vSphere 8 does: the guest hears of the migration first and may get
 * ready; it goes ahead either way once the guest acknowledged or the
 * timeout passed. */
static void notify_guest(job_t *job)
{
    bool acked = false;
    int rc = vm_notify_wait(job->machine, VM_NOTICE_MIGRATING, migration_notice_seq(job->id),
                            MIGRATION_NOTICE_TIMEOUT_MS, &acked);
    if (rc == 0 && !acked)
        log_info("migrations", "%s: the guest did not acknowledge the migration notice within %d ms; going ahead",
                 job->vm, MIGRATION_NOTICE_TIMEOUT_MS);
    pthread_mutex_lock(&job->owner->lock);
    job->guest_acked = rc == 0 && acked;
    pthread_mutex_unlock(&job->owner->lock);
}

void *migration_thread_send(void *arg)
{
    job_t *job = arg;
    migrations_t *m = job->owner;
    migration_result_t result;
    memset(&result, 0, sizeof(result));
    char err[400] = "", endpoint[160];

    if (job->live)
        notify_guest(job);
    if (!job->live && !job->image_dir[0]) {
        /* Nothing on disk to copy: the move is the commit alone. */
        char why[240] = "";
        int64_t start = mono_ms();
        result.kind = MIGRATION_KIND_COLD;
        result.committed = commit_via_loop(job, why, sizeof(why)) == 0;
        result.total_ms = result.commit_ms = (double)(mono_ms() - start);
        snprintf(result.cipher, sizeof(result.cipher), "none");
        finish(job, result.committed ? 0 : MIGRATION_ERR_COMMIT, &result, why);
        return NULL;
    }
    if (prepare(job, endpoint, sizeof(endpoint), err, sizeof(err)) != 0) {
        finish(job, MIGRATION_ERR_REFUSED, NULL, err);
        return NULL;
    }

    migration_params_t p;
    migration_params_defaults(&p);
    /* Leave from our own address on the same network, when we have one. */
    char via[260];
    const char *data_endpoint = endpoint;
    if (job->source_address[0] && strncmp(endpoint, "tcp://", 6) == 0) {
        snprintf(via, sizeof(via), "tcp://%s:0;%s", job->source_address, endpoint + 6);
        data_endpoint = via;
    }
    p.endpoint = data_endpoint;
    if (crypto_identity_raw(&m->identity, p.identity.public_key, p.identity.secret_key) != 0
        || !zmq_z85_decode(p.peer_public_key, job->peer_key)) {
        finish(job, MIGRATION_ERR_INVALID, NULL, "cannot read the agents' keys");
        return NULL;
    }
    memcpy(p.migration_id, job->id, sizeof(p.migration_id));
    vm_config_t vm_config = {
        .name = job->vm,
        .memory_bytes = job->memory_bytes,
        .vcpus = job->vcpus,
        .cmdline = job->cmdline,
    };
    p.vm_config = &vm_config;
    p.streams = job->streams;
    p.cipher = m->config->migration.cipher == CIPHER_AES256GCM   ? STREAM_CIPHER_AES256GCM
               : m->config->migration.cipher == CIPHER_XCHACHA20 ? STREAM_CIPHER_XCHACHA20POLY1305
                                                                  : STREAM_CIPHER_AUTO;
    p.policy.downtime_limit_us = (uint64_t)job->downtime_ms * 1000;
    /* The fixed part of the stun (state, Raft commit) must leave room for
     * pages, even under a tiny limit. */
    if (p.policy.switchover_cost_us * 2 > p.policy.downtime_limit_us)
        p.policy.switchover_cost_us = p.policy.downtime_limit_us / 2;
    p.max_bandwidth_Bps = m->config->migration.bandwidth_bytes;
    p.verify_memory_hash = job->verify;
    p.commit = commit_via_loop;
    p.commit_ctx = job;

    int rc = job->live ? migration_send(&job->machine, &p, on_progress, job, &result)
                       : migration_send_image(job->image_dir, &p, on_progress, job, &result);
    if (rc != 0 && !result.committed)
        abort_at_destination(job, result.error_text);
    finish(job, rc, &result, result.error_text);
    return NULL;
}

/* --- the destination ------------------------------------------------------------------ */

void *migration_thread_receive(void *arg)
{
    job_t *job = arg;
    migration_result_t result;
    memset(&result, 0, sizeof(result));
    int rc = migration_receiver_run(job->receiver, on_progress, job, &result);
    finish(job, rc, &result, result.error_text);
    return NULL;
}
