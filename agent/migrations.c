/* migrations.c - see migrations.h. This file is the loop's side: the
 * control handlers, the jobs and their slots, the commit through Raft, and
 * taking back what a finished thread held. The threads are in
 * migration_thread.c. */
#include "agent/migrations_internal.h"
#include "agent/vm_spec.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "common/wire.h"
#include "common/wire_map.h"
#include "migration/image.h"

#include <errno.h>
#include <sodium.h>
#include <stdarg.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define STREAMS_MAX STREAM_MAX_STREAMS
#define DOWNTIME_MS_MAX 60000
#define LEASE_WATCH_MS 100

static int64_t mono_ms(void) { return zclock_mono(); }

/* slots.h's ticket for a migration: the first 8 bytes of its id. */
static uint64_t ticket_of(const uint8_t id[STREAM_MIGRATION_ID_BYTES])
{
    uint64_t ticket;
    memcpy(&ticket, id, sizeof(ticket));
    return ticket;
}

void migrations_wake(migrations_t *self)
{
    uint64_t one = 1;
    ssize_t n = write(self->wake_fd, &one, sizeof(one));
    (void)n;   /* a full counter still wakes the loop */
}

/* --- jobs ------------------------------------------------------------------------ */

static const char *job_state_name(job_state_t state)
{
    switch (state) {
    case JOB_QUEUED: return "queued";
    case JOB_RUNNING: return "running";
    case JOB_SUCCEEDED: return "succeeded";
    case JOB_FAILED: return "failed";
    }
    return "?";
}

static bool job_finished(const job_t *job) { return job->state == JOB_SUCCEEDED || job->state == JOB_FAILED; }

static job_t *job_find(migrations_t *self, const char *id_hex)
{
    for (size_t i = 0; i < self->job_count; i++)
        if (strcmp(self->jobs[i]->id_hex, id_hex) == 0)
            return self->jobs[i];
    return NULL;
}

static job_t *job_find_vm(migrations_t *self, const char *vm)
{
    for (size_t i = 0; i < self->job_count; i++)
        if (!job_finished(self->jobs[i]) && strcmp(self->jobs[i]->vm, vm) == 0)
            return self->jobs[i];
    return NULL;
}

static void job_free(job_t *job)
{
    migration_receiver_destroy(&job->receiver);
    vm_destroy(&job->machine);
    free(job);
}

/* A new job in the table; the oldest finished one makes room if need be. */
static job_t *job_add(migrations_t *self, const uint8_t *id, bool outgoing, bool live, const char *vm,
                      const char *peer, char *err, size_t errlen)
{
    if (self->job_count == MIGRATIONS_JOBS_MAX) {
        for (size_t i = 0; i < self->job_count; i++) {
            job_t *old = self->jobs[i];
            if (job_finished(old) && !old->commit_request) {
                job_free(old);
                memmove(&self->jobs[i], &self->jobs[i + 1], (self->job_count - i - 1) * sizeof(job_t *));
                self->job_count--;
                break;
            }
        }
    }
    job_t *job = self->job_count < MIGRATIONS_JOBS_MAX ? calloc(1, sizeof(*job)) : NULL;
    if (!job) {
        snprintf(err, errlen, "too many migrations in progress on %s", self->name);
        return NULL;
    }
    job->owner = self;
    memcpy(job->id, id, sizeof(job->id));
    sodium_bin2hex(job->id_hex, sizeof(job->id_hex), job->id, sizeof(job->id));
    job->ticket = ticket_of(id);
    job->outgoing = outgoing;
    job->live = live;
    snprintf(job->vm, sizeof(job->vm), "%s", vm);
    snprintf(job->peer, sizeof(job->peer), "%s", peer);
    job->created_wall_ms = (uint64_t)zclock_time();
    job->state = JOB_QUEUED;
    self->jobs[self->job_count++] = job;
    return job;
}

static void job_remove(migrations_t *self, job_t *job)
{
    for (size_t i = 0; i < self->job_count; i++) {
        if (self->jobs[i] == job) {
            memmove(&self->jobs[i], &self->jobs[i + 1], (self->job_count - i - 1) * sizeof(job_t *));
            self->job_count--;
            break;
        }
    }
    job_free(job);
}

static void job_fail_now(migrations_t *self, job_t *job, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void job_fail_now(migrations_t *self, job_t *job, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    pthread_mutex_lock(&self->lock);
    vsnprintf(job->error, sizeof(job->error), fmt, args);
    pthread_mutex_unlock(&self->lock);
    va_end(args);
    job->state = JOB_FAILED;
    job->ended_mono_ms = mono_ms();
    log_warn("migrations", "%s %s: %s", job->vm, job->id_hex, job->error);
}

/* --- starting -------------------------------------------------------------------- */

static int job_start_thread(migrations_t *self, job_t *job)
{
    void *(*body)(void *) = job->outgoing ? migration_thread_send : migration_thread_receive;
    if (self->stopping) {
        job_fail_now(self, job, "the agent is stopping");
        return -1;
    }
    if (job->outgoing) {
        char err[200];
        int rc = job->live ? vms_migration_lend(self->vms, job->vm, &job->machine, err, sizeof(err))
                           : vms_migration_hold(self->vms, job->vm, err, sizeof(err));
        if (rc != 0) {
            job_fail_now(self, job, "%s", err);
            return -1;
        }
    }
    job->state = JOB_RUNNING;
    job->started_mono_ms = mono_ms();
    if (pthread_create(&job->thread, NULL, body, job) != 0) {
        if (job->outgoing) {
            vms_migration_return(self->vms, job->vm, job->machine);
            job->machine = NULL;
        }
        job_fail_now(self, job, "cannot start a thread");
        return -1;
    }
    job->thread_started = true;
    log_info("migrations", "%s %s: %s migration %s %s started (id %s)", job->vm, job->outgoing ? "to" : "from",
             job->live ? "live" : "cold", job->outgoing ? "to" : "from", job->peer, job->id_hex);
    return 0;
}

/* Gives the freed slot to the next queued job, and so on while they fail. */
static void release_slot(migrations_t *self, job_t *job)
{
    uint64_t next_ticket;
    if (slots_release(self->slots, job->ticket, &next_ticket) != 1)
        return;
    for (size_t i = 0; i < self->job_count; i++) {
        job_t *next = self->jobs[i];
        if (next->ticket == next_ticket && next->state == JOB_QUEUED) {
            if (job_start_thread(self, next) != 0)
                release_slot(self, next);
            return;
        }
    }
}

/* --- the commit, on the source: propose, then settle any doubt --------------------- */

/* The commit is a compare-and-set on the VM's generation, so proposing it
 * again is safe: it can apply once at most. A proposal that fails without
 * a verdict (a leader lost or slow, the proposal dropped) may still have
 * committed; a read barrier settles what the state holds, and if the owner
 * has not changed the proposal goes again, up to COMMIT_ATTEMPTS times. */
#define COMMIT_ATTEMPTS 10
#define COMMIT_RETRY_MS 200

struct commit_request {
    job_t *job;                       /* NULL once the manager is gone */
    migrations_t *owner;
    unsigned attempts;
    char last_error[120];             /* why the last attempt had no verdict */
};

static void commit_settle(job_t *job, bool committed, const char *why)
{
    migrations_t *self = job->owner;
    pthread_mutex_lock(&self->lock);
    job->commit = committed ? COMMIT_DONE : COMMIT_REFUSED;
    snprintf(job->commit_why, sizeof(job->commit_why), "%s", why);
    pthread_cond_broadcast(&self->changed);
    pthread_mutex_unlock(&self->lock);
}

static void commit_end(commit_request_t *req, bool committed, const char *why)
{
    if (req->job) {
        req->job->commit_request = NULL;
        commit_settle(req->job, committed, why);
    }
    free(req);
}

/* Did the owner change? Read from the applied state. */
static bool owner_moved(const job_t *job)
{
    const fsm_vm_t *v = fsm_vm_find(cluster_state(job->owner->cluster), job->vm);
    return v && strcmp(v->owner, job->peer) == 0 && v->generation > job->generation;
}

static int on_commit_retry(zloop_t *loop, int timer_id, void *arg);

/* After a proposal without a verdict and a read barrier (passed or not):
 * done if the owner moved, else another attempt while any are left. */
static void commit_after_doubt(commit_request_t *req, const char *barrier_error)
{
    if (!req->job) {
        free(req);
        return;
    }
    if (owner_moved(req->job)) {
        commit_end(req, true, "");
        return;
    }
    if (req->attempts < COMMIT_ATTEMPTS) {
        log_info("migrations", "%s: the ownership change had no verdict (%s); proposing it again (%u of %d)",
                 req->job->vm, req->last_error, req->attempts + 1, COMMIT_ATTEMPTS);
        zloop_timer(req->owner->loop, COMMIT_RETRY_MS, 1, on_commit_retry, req);
        return;
    }
    char why[240];
    snprintf(why, sizeof(why), "the ownership change did not commit after %u attempts (%s%s%s)", req->attempts,
             req->last_error, barrier_error ? "; " : "", barrier_error ? barrier_error : "");
    commit_end(req, false, why);
}

static void on_commit_read(void *ctx, int error, const fsm_result_t *result, uint64_t index)
{
    commit_after_doubt(ctx, error ? cluster_error_text(error) : NULL);
}

/* Runs from a timer: a done callback may not start another request. */
static int on_commit_doubt(zloop_t *loop, int timer_id, void *arg)
{
    commit_request_t *req = arg;
    if (!req->job) {
        free(req);
        return 0;
    }
    int rc = cluster_read(req->owner->cluster, on_commit_read, req);
    if (rc != 0)
        commit_after_doubt(req, cluster_error_text(rc));
    return 0;
}

static void on_commit_applied(void *ctx, int error, const fsm_result_t *result, uint64_t index)
{
    commit_request_t *req = ctx;
    if (!req->job) {
        free(req);
        return;
    }
    if (!error && result) {
        /* A verdict. STALE after an earlier attempt that did apply is a success. */
        if (result->status == FSM_OK || owner_moved(req->job)) {
            commit_end(req, true, "");
        } else {
            char why[240];
            snprintf(why, sizeof(why), "the cluster refused the ownership change: %s", result->message);
            commit_end(req, false, why);
        }
        return;
    }
    snprintf(req->last_error, sizeof(req->last_error), "%s", cluster_error_text(error));
    zloop_timer(req->owner->loop, 1, 1, on_commit_doubt, req);
}

/* One attempt: propose SET_OWNER with the generation taken at the start. */
static void commit_attempt(commit_request_t *req)
{
    job_t *job = req->job;
    req->attempts++;
    msgpack_sbuffer cmd;
    msgpack_sbuffer_init(&cmd);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &cmd, msgpack_sbuffer_write);
    fsm_cmd_vm_set_owner(&pk, job->vm, job->peer, job->generation);
    int rc = cluster_propose(req->owner->cluster, &cmd, on_commit_applied, req);
    msgpack_sbuffer_destroy(&cmd);
    if (rc != 0) {
        snprintf(req->last_error, sizeof(req->last_error), "%s", cluster_error_text(rc));
        commit_after_doubt(req, NULL);
    }
}

static int on_commit_retry(zloop_t *loop, int timer_id, void *arg)
{
    commit_request_t *req = arg;
    if (!req->job)
        free(req);
    else
        commit_attempt(req);
    return 0;
}

static void commit_propose(migrations_t *self, job_t *job)
{
    commit_request_t *req = calloc(1, sizeof(*req));
    if (!req) {
        commit_settle(job, false, "out of memory");
        return;
    }
    req->job = job;
    req->owner = self;
    job->commit_request = req;
    commit_attempt(req);
}

/* --- a thread ended: take back what it held ----------------------------------------- */

static void job_collect(migrations_t *self, job_t *job)
{
    pthread_join(job->thread, NULL);
    job->thread_started = false;
    job->ended_mono_ms = mono_ms();
    int rc = job->rc;
    if (job->outgoing) {
        vms_migration_return(self->vms, job->vm, job->machine);   /* NULL: released (or cold) */
        job->machine = NULL;
        /* The image lives on at the destination now. */
        if (!job->live && job->image_dir[0] && job->result.committed)
            image_remove(job->image_dir);
    } else {
        vm_t *vm = job->live ? migration_receiver_take_vm(job->receiver) : NULL;
        if (rc == MIGRATION_ERR_IN_DOUBT && vm) {
            /* Everything arrived; the outcome did not. The cluster knows. */
            const fsm_vm_t *v = fsm_vm_find(cluster_state(self->cluster), job->vm);
            if (v && strcmp(v->owner, self->name) == 0 && vm_start(vm) == 0) {
                rc = 0;
                log_warn("migrations", "%s: the source never said how it ended, but the cluster names this host "
                         "its owner: started the VM that arrived", job->vm);
            } else {
                vm_destroy(&vm);
            }
        }
        if (job->live && rc == 0 && vm)
            vm_notify(vm, VM_NOTICE_MIGRATED, migration_notice_seq(job->id));   /* "you have moved" */
        if (job->live)
            vms_incoming_arrived(self->vms, job->vm, rc == 0 ? vm : NULL);
        if (rc != 0 && vm)
            vm_destroy(&vm);
        migration_receiver_destroy(&job->receiver);
    }
    job->state = rc == 0 ? JOB_SUCCEEDED : JOB_FAILED;
    if (rc == 0)
        log_info("migrations", "%s: %s migration %s %s done in %.0f ms (downtime %.1f ms, %u passes, %s over %s)",
                 job->vm, job->live ? "live" : "cold", job->outgoing ? "to" : "from", job->peer,
                 job->result.total_ms, job->result.downtime_ms, job->result.passes, job->result.cipher,
                 job->network.network);
    else
        log_warn("migrations", "%s: migration %s %s failed: %s", job->vm, job->outgoing ? "to" : "from", job->peer,
                 job->error);
    release_slot(self, job);
}

static int on_wake(zloop_t *loop, zmq_pollitem_t *item, void *arg)
{
    migrations_t *self = arg;
    uint64_t count;
    ssize_t n = read(self->wake_fd, &count, sizeof(count));
    (void)n;
    for (size_t i = 0; i < self->job_count; i++) {
        job_t *job = self->jobs[i];
        pthread_mutex_lock(&self->lock);
        bool commit = job->commit == COMMIT_ASKED;
        if (commit)
            job->commit = COMMIT_RUNNING;
        bool done = job->thread_done && job->thread_started;
        pthread_mutex_unlock(&self->lock);
        if (commit) {
            /* The source's VM is paused now: the destination runs it once
             * this commits, so this host stops saying it runs it first. */
            if (job->outgoing && job->live)
                vms_migration_paused(self->vms, job->vm);
            commit_propose(self, job);
        }
        if (done)
            job_collect(self, job);
    }
    return 0;
}

/* A source whose lease lapses must fence its VMs (vms.c), but a VM lent to a
 * migration is out of reconciliation's reach: call the migration off
 * instead, so the VM comes back and is fenced like any other. After the
 * commit it is too late to cancel, and nothing needs to: the VM is no
 * longer this host's. */
static int on_lease_watch(zloop_t *loop, int timer_id, void *arg)
{
    migrations_t *self = arg;
    if (cluster_lease_valid(self->cluster))
        return 0;
    for (size_t i = 0; i < self->job_count; i++) {
        job_t *job = self->jobs[i];
        if (!job->outgoing || job->state != JOB_RUNNING)
            continue;
        pthread_mutex_lock(&self->lock);
        bool first = !job->cancel;
        job->cancel = true;
        pthread_mutex_unlock(&self->lock);
        if (first)
            log_warn("migrations", "%s: this host's lease is not valid: calling the migration to %s off", job->vm,
                     job->peer);
    }
    return 0;
}

/* --- reporting ---------------------------------------------------------------------- */

/* The figures of a finished job, flat in its map (--json wants them at the top). */
static void pack_result(const job_t *job, wire_map_t *m)
{
    const migration_result_t *r = &job->result;
    wire_map_f64(m, "downtime_ms", r->downtime_ms);
    wire_map_f64(m, "stop_copy_ms", r->stop_copy_ms);
    wire_map_f64(m, "commit_ms", r->commit_ms);
    wire_map_f64(m, "total_ms", r->total_ms);
    wire_map_u64(m, "bytes_sent", r->bytes_sent);
    wire_map_u64(m, "pages_sent", r->pages_sent);
    wire_map_u64(m, "zero_pages", r->zero_pages);
    wire_map_u64(m, "final_pages", r->final_pages);
    wire_map_u64(m, "passes", r->passes);
    wire_map_u64(m, "throttle_max_percent", r->throttle_max);
    wire_map_bool(m, "committed", r->committed);
    wire_map_bool(m, "hash_verified", r->hash_verified);
    wire_map_str(m, "cipher", r->cipher);
}

/* Everything a status query returns about one job. Call under the lock. */
static void pack_job(const job_t *job, msgpack_packer *pk)
{
    wire_map_t m;
    wire_map_init(&m);
    wire_map_str(&m, "id", job->id_hex);
    wire_map_str(&m, "vm", job->vm);
    wire_map_str(&m, "kind", job->live ? "live" : "cold");
    wire_map_str(&m, "role", job->outgoing ? "source" : "destination");
    wire_map_str(&m, "from", job->outgoing ? job->owner->name : job->peer);
    wire_map_str(&m, "to", job->outgoing ? job->peer : job->owner->name);
    wire_map_str(&m, "state", job_state_name(job->state));
    wire_map_u64(&m, "created_ms", job->created_wall_ms);
    int64_t end = job_finished(job) ? job->ended_mono_ms : mono_ms();
    wire_map_u64(&m, "elapsed_ms", job->started_mono_ms ? (uint64_t)(end - job->started_mono_ms) : 0);
    if (job->state == JOB_QUEUED)
        wire_map_i64(&m, "queue_position", slots_position(job->owner->slots, job->ticket));
    wire_map_str(&m, "network", job->network.network);
    wire_map_str(&m, "interface", job->network.interface);
    wire_map_str(&m, "address", job->network.address);
    wire_map_bool(&m, "network_fallback", job->network.fallback);
    wire_map_str(&m, "warning", job->warning);
    if (job->outgoing && job->live)
        wire_map_bool(&m, "guest_notified", job->guest_acked);
    wire_map_u64(&m, "downtime_limit_ms", job->downtime_ms);
    wire_map_u64(&m, "streams", job->streams);
    if (job->has_progress) {
        const migration_progress_t *p = &job->progress;
        msgpack_packer *pp = wire_map_key(&m, "progress");
        wire_map_t q;
        wire_map_init(&q);
        wire_map_str(&q, "phase", migration_phase_name(p->phase));
        wire_map_u64(&q, "pass", p->pass);
        wire_map_f64(&q, "percent", p->percent);
        wire_map_u64(&q, "pass_pages", p->pass_pages);
        wire_map_u64(&q, "pass_pages_sent", p->pass_pages_sent);
        wire_map_u64(&q, "bytes_sent", p->bytes_sent);
        wire_map_u64(&q, "rate_Bps", p->rate_Bps);
        wire_map_u64(&q, "dirty_rate_Bps", p->dirty_rate_Bps);
        wire_map_u64(&q, "remaining_pages", p->remaining_pages);
        wire_map_i64(&q, "predicted_stun_us", p->predicted_stun_us == UINT64_MAX ? -1 : (int64_t)p->predicted_stun_us);
        wire_map_u64(&q, "throttle_percent", p->throttle_percent);
        wire_map_end(&q, pp);
    }
    if (job_finished(job)) {
        wire_map_str(&m, "error", job->error);
        pack_result(job, &m);
    }
    wire_map_end(&m, pk);
}

/* --- asking the host that can answer ------------------------------------------------------ */

/* An operator's request about a migration another host runs goes to that
 * host (a peer's request never travels further: no loops). Returns false
 * when the call is this agent's to answer; true when it was forwarded (or
 * failed), with what the handler returns in *rc. */
static bool forward_to(migrations_t *self, control_call_t *call, const char *command, const char *host, int *rc)
{
    if (call->from_peer || !host[0] || strcmp(host, self->name) == 0)
        return false;
    swim_record_t record;
    int found = peers_member_record(self->peers, host, &record);
    if (found != 0 || !record.control_addr[0] || !record.curve_public_key[0]) {
        *rc = control_fail(call, CONTROL_UNAVAILABLE, "%s runs this, and it is %s", host,
                           found == -EHOSTDOWN ? "down (membership says so)" : "not known to membership here");
        return true;
    }
    char endpoint[300];
    snprintf(endpoint, sizeof(endpoint), "tcp://%s", record.control_addr);
    *rc = forward_call(self->forward, call, command, host, endpoint, record.curve_public_key);
    return true;
}

/* --- vm.migrate ---------------------------------------------------------------------- */

typedef struct {
    char vm[FSM_NAME_MAX];
    char to[FSM_NAME_MAX];
    uint64_t downtime_ms;             /* 0: the VM's own limit */
    uint64_t streams;                 /* 0: [migration] streams */
    bool verify;
} migrate_args_t;

static int parse_migrate_args(control_call_t *call, migrate_args_t *a)
{
    memset(a, 0, sizeof(*a));
    char err[160];
    if (!call->args)
        return control_fail(call, CONTROL_BAD_REQUEST, "vm.migrate needs {name, to}");
    if (wire_get_str(call->args, "name", a->vm, sizeof(a->vm), err, sizeof(err)) != 0
        || wire_get_str(call->args, "to", a->to, sizeof(a->to), err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "vm.migrate needs name and to (host names of at most %d "
                            "characters)", FSM_NAME_MAX - 1);
    if (wire_get_u64(call->args, "downtime_ms", &a->downtime_ms, err, sizeof(err)) < 0
        || wire_get_u64(call->args, "streams", &a->streams, err, sizeof(err)) < 0
        || wire_get_bool(call->args, "verify", &a->verify, err, sizeof(err)) < 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "%s", err);
    if (a->downtime_ms > DOWNTIME_MS_MAX)
        return control_fail(call, CONTROL_BAD_REQUEST, "downtime_ms %llu is above the most allowed (%d)",
                            (unsigned long long)a->downtime_ms, DOWNTIME_MS_MAX);
    if (a->streams > STREAMS_MAX)
        return control_fail(call, CONTROL_BAD_REQUEST, "streams %llu is above the most allowed (%d)",
                            (unsigned long long)a->streams, STREAMS_MAX);
    return 0;
}

/* Fills the job's inputs from the state, the destination's record and the
 * config. Returns 0, or fails the call. */
static int job_prepare_outgoing(migrations_t *self, job_t *job, const fsm_vm_t *v, const migrate_args_t *a,
                                const swim_record_t *dest, control_call_t *call)
{
    job->downtime_ms = a->downtime_ms ? (uint32_t)a->downtime_ms : v->downtime_ms ? v->downtime_ms
                                                                  : self->config->migration.downtime_ms;
    job->streams = a->streams ? (uint32_t)a->streams : self->config->migration.streams;
    job->verify = a->verify;
    job->memory_bytes = v->memory_bytes;
    job->vcpus = v->vcpus;
    job->generation = v->generation;
    vm_boot_t boot;
    char err[300];
    if (vm_spec_decode(v->profile, v->memory_bytes, &boot, err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_CONFLICT, "%s", err);
    snprintf(job->cmdline, sizeof(job->cmdline), "%s", boot.cmdline);
    snprintf(job->peer_control, sizeof(job->peer_control), "tcp://%s", dest->control_addr);
    snprintf(job->peer_key, sizeof(job->peer_key), "%s", dest->curve_public_key);
    /* Leave from our own address on the network the move wants, if tagged. */
    migration_network_t ours;
    if (migration_network_pick(self->inventory, self->config->agent.bind, job->live, &ours, err, sizeof(err)) == 0
        && !ours.fallback)
        snprintf(job->source_address, sizeof(job->source_address), "%s", ours.address);
    return 0;
}

/* Cold: the VM's image, if it was suspended; without one only the
 * ownership moves (a powered-off VM that never ran has nothing to copy). */
static int cold_image(migrations_t *self, job_t *job)
{
    char dir[PATH_MAX], err[256];
    image_manifest_t manifest;
    if (vms_image_dir(self->vms, job->vm, dir, sizeof(dir)) != 0)
        return -1;
    if (image_read_manifest(dir, &manifest, err, sizeof(err)) == 0)
        snprintf(job->image_dir, sizeof(job->image_dir), "%s", dir);
    else if (job->warning[0] == '\0')
        snprintf(job->warning, sizeof(job->warning), "VM %s has no suspended image: only its ownership moves",
                 job->vm);
    return 0;
}

static int handle_migrate(void *ctx, control_call_t *call)
{
    migrations_t *self = ctx;
    migrate_args_t a;
    if (parse_migrate_args(call, &a) != 0)
        return -1;
    const fsm_t *fsm = cluster_state(self->cluster);
    const fsm_vm_t *v = fsm_vm_find(fsm, a.vm);
    /* Any agent takes the request; the VM's owner runs the migration. */
    int rc;
    if (v && forward_to(self, call, "vm.migrate", v->owner, &rc))
        return rc;
    bool live = !v || v->power == FSM_POWER_ON;
    migration_plan_input_t in = {
        .fsm = fsm, .vm = a.vm, .source = self->name, .destination = a.to, .live = live,
        .now_ms = (uint64_t)zclock_time(),
    };
    char why[400], warning[200];
    if (migration_preflight(&in, why, sizeof(why), warning, sizeof(warning)) != 0)
        return control_fail(call, v ? CONTROL_CONFLICT : CONTROL_NOT_FOUND, "cannot migrate: %s", why);
    if (job_find_vm(self, a.vm) || vms_migrating(self->vms, a.vm))
        return control_fail(call, CONTROL_CONFLICT, "VM %s is being migrated already", a.vm);
    if (live && !vms_local_running(self->vms, a.vm))
        return control_fail(call, CONTROL_CONFLICT, "VM %s does not run on %s yet (it is starting, or failed to "
                            "start: see vm show)", a.vm, self->name);
    swim_record_t dest;
    rc = peers_member_record(self->peers, a.to, &dest);
    if (rc != 0 || !dest.control_addr[0] || !dest.curve_public_key[0])
        return control_fail(call, CONTROL_UNAVAILABLE, "cannot migrate: host %s is %s", a.to,
                            rc == -EHOSTDOWN ? "down (membership says so)" : "not known to membership here");

    uint8_t id[STREAM_MIGRATION_ID_BYTES];
    randombytes_buf(id, sizeof(id));
    job_t *job = job_add(self, id, true, live, a.vm, a.to, why, sizeof(why));
    if (!job)
        return control_fail(call, CONTROL_UNAVAILABLE, "%s", why);
    snprintf(job->warning, sizeof(job->warning), "%s", warning);
    if (!live && cold_image(self, job) != 0) {
        job_remove(self, job);
        return control_fail(call, CONTROL_INTERNAL, "the image path of %s is too long", a.vm);
    }
    if (job_prepare_outgoing(self, job, v, &a, &dest, call) != 0) {
        job_remove(self, job);
        return -1;
    }
    rc = slots_acquire(self->slots, job->ticket);
    if (rc == -ENOSPC) {
        job_remove(self, job);
        return control_fail(call, CONTROL_UNAVAILABLE, "%s has %u migrations running and %u waiting: retry later",
                            self->name, slots_running(self->slots), slots_waiting(self->slots));
    }
    if (rc == SLOTS_RUNNING && job_start_thread(self, job) != 0) {
        release_slot(self, job);
        return control_fail(call, CONTROL_INTERNAL, "%s", job->error);
    }
    if (warning[0])
        log_warn("migrations", "%s: %s", a.vm, warning);
    pthread_mutex_lock(&self->lock);
    pack_job(job, call->result);
    pthread_mutex_unlock(&self->lock);
    return 0;
}

/* --- vm.migration, vm.migration.cancel ---------------------------------------------------- */

/* {id, from?}: a job this agent does not know is asked of `from`, the
 * source that vm.migrate's answer named. As forward_to. */
static bool forward_unknown(migrations_t *self, control_call_t *call, const char *command, const char *id, int *rc)
{
    char from[FSM_NAME_MAX] = "", err[160];
    if (job_find(self, id) || wire_get_str(call->args, "from", from, sizeof(from), err, sizeof(err)) != 0)
        return false;
    return forward_to(self, call, command, from, rc);
}

static int handle_status(void *ctx, control_call_t *call)
{
    migrations_t *self = ctx;
    char id[MIGRATION_ID_HEX] = "", err[160];
    int has = call->args ? wire_get_str(call->args, "id", id, sizeof(id), err, sizeof(err)) : 1;
    if (has < 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "id: %s", err);
    int rc;
    if (has == 0 && forward_unknown(self, call, "vm.migration", id, &rc))
        return rc;
    pthread_mutex_lock(&self->lock);
    if (has == 0) {
        job_t *job = job_find(self, id);
        if (job)
            pack_job(job, call->result);
        pthread_mutex_unlock(&self->lock);
        return job ? 0 : control_fail(call, CONTROL_NOT_FOUND, "no migration %s on %s", id, self->name);
    }
    msgpack_pack_map(call->result, 1);
    wire_pack_str(call->result, "migrations");
    msgpack_pack_array(call->result, (uint32_t)self->job_count);
    for (size_t i = 0; i < self->job_count; i++)
        pack_job(self->jobs[i], call->result);
    pthread_mutex_unlock(&self->lock);
    return 0;
}

/* Stops a job: a queued one at once, a running one at its next progress
 * report (before the commit; after it, too late). */
static int cancel_job(migrations_t *self, job_t *job, const char *why)
{
    if (job_finished(job))
        return -1;
    if (job->state == JOB_QUEUED) {
        job_fail_now(self, job, "%s", why);
        release_slot(self, job);
        if (!job->outgoing)
            vms_incoming_arrived(self->vms, job->vm, NULL);
        return 0;
    }
    pthread_mutex_lock(&self->lock);
    job->cancel = true;
    snprintf(job->cancel_why, sizeof(job->cancel_why), "%s", why);
    pthread_mutex_unlock(&self->lock);
    if (job->receiver)
        migration_receiver_cancel(job->receiver);
    return 0;
}

static int handle_cancel(void *ctx, control_call_t *call)
{
    migrations_t *self = ctx;
    char id[MIGRATION_ID_HEX], err[160];
    if (!call->args || wire_get_str(call->args, "id", id, sizeof(id), err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "needs the migration's id");
    int rc;
    if (forward_unknown(self, call, "vm.migration.cancel", id, &rc))
        return rc;
    job_t *job = job_find(self, id);
    if (!job)
        return control_fail(call, CONTROL_NOT_FOUND, "no migration %s on %s", id, self->name);
    if (cancel_job(self, job, "cancelled by the operator") != 0)
        return control_fail(call, CONTROL_CONFLICT, "migration %s has ended already", id);
    pthread_mutex_lock(&self->lock);
    pack_job(job, call->result);
    pthread_mutex_unlock(&self->lock);
    return 0;
}

/* --- migration.prepare, migration.abort: the destination's half ---------------------------- */

static int parse_id(const char *hex, uint8_t id[STREAM_MIGRATION_ID_BYTES])
{
    size_t len = 0;
    return strlen(hex) == STREAM_MIGRATION_ID_BYTES * 2
                   && sodium_hex2bin(id, STREAM_MIGRATION_ID_BYTES, hex, strlen(hex), NULL, &len, NULL) == 0
                   && len == STREAM_MIGRATION_ID_BYTES
               ? 0
               : -1;
}

/* Binds a receiver on the chosen address: [ports] migration, or the next
 * free port above it (several migrations may arrive at once). */
static migration_receiver_t *bind_receiver(migrations_t *self, job_t *job, migration_receiver_config_t *rc,
                                           char *err, size_t errlen)
{
    unsigned tries = self->config->migration.max_concurrent * 2 + 1;
    for (unsigned i = 0; i < tries; i++) {
        char endpoint[128];
        unsigned port = self->config->ports.migration + i;
        if (port > 65535)
            break;
        snprintf(endpoint, sizeof(endpoint), "tcp://%s:%u", job->network.address, port);
        rc->bind_endpoint = endpoint;
        migration_receiver_t *receiver = migration_receiver_new(rc, err, errlen);
        if (receiver)
            return receiver;
    }
    return NULL;
}

static int handle_prepare(void *ctx, control_call_t *call)
{
    migrations_t *self = ctx;
    char id_hex[MIGRATION_ID_HEX], vm[FSM_NAME_MAX], kind[8], source[FSM_NAME_MAX], err[300];
    uint64_t memory_bytes = 0, vcpus = 0;
    uint8_t id[STREAM_MIGRATION_ID_BYTES];
    if (!call->args || wire_get_str(call->args, "id", id_hex, sizeof(id_hex), err, sizeof(err)) != 0
        || parse_id(id_hex, id) != 0 || wire_get_str(call->args, "vm", vm, sizeof(vm), err, sizeof(err)) != 0
        || wire_get_str(call->args, "kind", kind, sizeof(kind), err, sizeof(err)) != 0
        || wire_get_str(call->args, "source", source, sizeof(source), err, sizeof(err)) != 0
        || wire_get_u64(call->args, "memory_bytes", &memory_bytes, err, sizeof(err)) != 0
        || wire_get_u64(call->args, "vcpus", &vcpus, err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "migration.prepare needs id (32 hex digits), vm, kind, "
                            "source, memory_bytes and vcpus");
    bool live = strcmp(kind, "live") == 0;
    if (!live && strcmp(kind, "cold") != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "migration kind '%s' is neither live nor cold", kind);
    if (job_find(self, id_hex))
        return control_fail(call, CONTROL_CONFLICT, "migration %s is known here already", id_hex);
    const fsm_vm_t *v = fsm_vm_find(cluster_state(self->cluster), vm);
    if (!v || strcmp(v->owner, source) != 0)
        return control_fail(call, CONTROL_CONFLICT, "%s does not own VM %s in the cluster state here", source, vm);
    if (v->memory_bytes != memory_bytes || v->vcpus != vcpus)
        return control_fail(call, CONTROL_CONFLICT, "VM %s's size differs from the cluster state here", vm);
    uint64_t available = inventory_memory_available_bytes(self->inventory);
    if (live && available && memory_bytes > available)
        return control_fail(call, CONTROL_CONFLICT, "%s has %llu MiB of memory available, VM %s needs %llu MiB",
                            self->name, (unsigned long long)(available >> 20), vm,
                            (unsigned long long)(memory_bytes >> 20));
    swim_record_t src;
    if (peers_member_record(self->peers, source, &src) != 0 || !src.curve_public_key[0])
        return control_fail(call, CONTROL_UNAVAILABLE, "%s is not a live member here", source);
    uint8_t source_key[STREAM_KEY_BYTES];
    if (!zmq_z85_decode(source_key, src.curve_public_key))
        return control_fail(call, CONTROL_INTERNAL, "%s's key does not decode", source);

    /* A receiver never waits in the queue: the source retries instead. */
    int slot = slots_acquire(self->slots, ticket_of(id));
    if (slot != SLOTS_RUNNING) {
        uint64_t ignored;
        if (slot == SLOTS_WAITING)
            slots_release(self->slots, ticket_of(id), &ignored);
        return control_fail(call, CONTROL_UNAVAILABLE, "%s runs %u migrations already: busy", self->name,
                            slots_running(self->slots));
    }
    job_t *job = job_add(self, id, false, live, vm, source, err, sizeof(err));
    if (!job) {
        uint64_t ignored;
        slots_release(self->slots, ticket_of(id), &ignored);
        return control_fail(call, CONTROL_UNAVAILABLE, "%s", err);
    }
    job->memory_bytes = memory_bytes;
    job->vcpus = (uint32_t)vcpus;
    char console[PATH_MAX];
    migration_receiver_config_t rcfg;
    migration_receiver_config_defaults(&rcfg);
    memcpy(rcfg.peer_public_key, source_key, sizeof(source_key));
    memcpy(rcfg.migration_id, id, sizeof(rcfg.migration_id));
    rcfg.backend = vms_backend(self->vms);
    rcfg.console_log_path = vms_console_path(self->vms, vm, console, sizeof(console)) == 0 ? console : NULL;
    if (!live) {
        /* The image lands where a start resumes from; a partial copy there
         * (and its journal) lets an interrupted copy resume. */
        if (vms_image_dir(self->vms, vm, job->image_dir, sizeof(job->image_dir)) != 0) {
            job_fail_now(self, job, "the image path is too long");
            release_slot(self, job);
            return control_fail(call, CONTROL_INTERNAL, "%s", job->error);
        }
        rcfg.image_dir = job->image_dir;
    }
    if (crypto_identity_raw(&self->identity, rcfg.identity.public_key, rcfg.identity.secret_key) != 0
        || migration_network_pick(self->inventory, self->config->agent.bind, live, &job->network, err,
                                  sizeof(err)) != 0
        || (live && vms_incoming_expect(self->vms, vm, err, sizeof(err)) != 0)) {
        job_fail_now(self, job, "%s", err);
        release_slot(self, job);
        return control_fail(call, CONTROL_CONFLICT, "%s", err);
    }
    job->receiver = bind_receiver(self, job, &rcfg, err, sizeof(err));
    if (!job->receiver || job_start_thread(self, job) != 0) {
        if (!job_finished(job))
            job_fail_now(self, job, "%s", err);
        if (live)
            vms_incoming_arrived(self->vms, vm, NULL);
        release_slot(self, job);
        return control_fail(call, CONTROL_UNAVAILABLE, "cannot receive: %s", job->error);
    }
    if (job->network.fallback)
        log_warn("migrations", "%s: no interface carries %s here: receiving over management (%s)", vm,
                 live ? "vmotion" : "provisioning", job->network.address);
    msgpack_pack_map(call->result, 5);
    wire_pack_kv_str(call->result, "endpoint", migration_receiver_endpoint(job->receiver));
    wire_pack_kv_str(call->result, "network", job->network.network);
    wire_pack_kv_str(call->result, "interface", job->network.interface);
    wire_pack_kv_str(call->result, "address", job->network.address);
    wire_pack_kv_bool(call->result, "fallback", job->network.fallback);
    return 0;
}

static int handle_abort(void *ctx, control_call_t *call)
{
    migrations_t *self = ctx;
    char id[MIGRATION_ID_HEX], err[160];
    if (!call->args || wire_get_str(call->args, "id", id, sizeof(id), err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "needs the migration's id");
    job_t *job = job_find(self, id);
    if (!job || job->outgoing)
        return control_fail(call, CONTROL_NOT_FOUND, "no incoming migration %s on %s", id, self->name);
    /* The source's reason is for the record only: one that cannot be read
     * must not keep the receiver waiting. */
    char reason[MIGRATION_ABORT_REASON_MAX], why[sizeof(job->cancel_why)];
    int has_reason = wire_get_str(call->args, "reason", reason, sizeof(reason), err, sizeof(err));
    if (has_reason < 0)
        log_warn("migrations", "%s: migration.abort with an unreadable reason: %s", job->vm, err);
    snprintf(why, sizeof(why), "the source called it off%s%s", has_reason == 0 ? ": " : "",
             has_reason == 0 ? reason : "");
    cancel_job(self, job, why);
    msgpack_pack_map(call->result, 1);
    wire_pack_kv_str(call->result, "state", job_state_name(job->state));
    return 0;
}

/* --- lifecycle ---------------------------------------------------------------------------------- */

migrations_t *migrations_new(const migrations_config_t *cfg, control_t *control, zloop_t *loop, char *err,
                             size_t errlen)
{
    migrations_t *self = calloc(1, sizeof(*self));
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(self->name, sizeof(self->name), "%s", cfg->name);
    self->config = cfg->config;
    self->identity = *cfg->identity;
    self->inventory = cfg->inventory;
    self->cluster = cfg->cluster;
    self->peers = cfg->peers;
    self->vms = cfg->vms;
    self->control = control;
    self->loop = loop;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->changed, NULL);
    self->lease_timer = -1;
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    unsigned max = cfg->config->migration.max_concurrent ? cfg->config->migration.max_concurrent
                                                         : SLOTS_DEFAULT_MAX;
    self->slots = slots_new(max, SLOTS_DEFAULT_WAITING);
    if (self->wake_fd < 0 || !self->slots) {
        snprintf(err, errlen, "cannot set up migrations: %s", self->wake_fd < 0 ? strerror(errno) : "bad slots");
        migrations_destroy(&self);
        return NULL;
    }
    zmq_pollitem_t item = { .fd = self->wake_fd, .events = ZMQ_POLLIN };
    zloop_poller(loop, &item, on_wake, self);
    self->lease_timer = zloop_timer(loop, LEASE_WATCH_MS, 0, on_lease_watch, self);
    self->forward = forward_new(control, loop, cfg->identity, err, errlen);
    if (!self->forward) {
        migrations_destroy(&self);
        return NULL;
    }
    /* Peers too: an agent forwards an operator's request to the VM's owner. */
    control_register_for_peers(control, "vm.migrate", handle_migrate, self);
    control_register_for_peers(control, "vm.migration", handle_status, self);
    control_register_for_peers(control, "vm.migration.cancel", handle_cancel, self);
    control_register_for_peers(control, "migration.prepare", handle_prepare, self);
    control_register_for_peers(control, "migration.abort", handle_abort, self);
    return self;
}

void migrations_destroy(migrations_t **self_p)
{
    migrations_t *self = *self_p;
    if (!self)
        return;
    forward_destroy(&self->forward);
    /* Stop every thread: progress callbacks cancel, a waiting commit gives
     * up, receivers stop polling; then take back what they held. */
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pthread_cond_broadcast(&self->changed);
    pthread_mutex_unlock(&self->lock);
    for (size_t i = 0; i < self->job_count; i++)
        if (self->jobs[i]->receiver)
            migration_receiver_cancel(self->jobs[i]->receiver);
    for (size_t i = 0; i < self->job_count; i++) {
        job_t *job = self->jobs[i];
        if (job->thread_started)
            job_collect(self, job);
        if (job->commit_request)
            job->commit_request->job = NULL;   /* Raft answers it later, to nobody */
        job_free(job);
    }
    if (self->loop && self->lease_timer >= 0)
        zloop_timer_end(self->loop, self->lease_timer);
    if (self->loop && self->wake_fd >= 0) {
        zmq_pollitem_t item = { .fd = self->wake_fd, .events = ZMQ_POLLIN };
        zloop_poller_end(self->loop, &item);
    }
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    slots_destroy(&self->slots);
    pthread_cond_destroy(&self->changed);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}
