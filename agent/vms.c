/* vms.c - see vms.h. This file is the local runtime: reconciliation (the
 * only code that starts or stops a local VM), measurement, monitoring and
 * the event ring. The vm.* handlers are in vms_control.c. */
#include "agent/vms_internal.h"
#include "agent/vm_policy.h"
#include "agent/vm_spec.h"
#include "common/fsutil.h"
#include "migration/image.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 1000               /* measure, monitor, and reconcile against lease expiry */
#define START_RETRY_MS 10000       /* a VM that failed to start is tried again after this */

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* --- events ------------------------------------------------------------------ */

void vms_event(vms_t *self, log_level_t level, const char *vm, const char *kind, const char *fmt, ...)
{
    vms_event_t *e = &self->events[self->event_seq % VMS_EVENTS_MAX];
    memset(e, 0, sizeof(*e));
    e->seq = ++self->event_seq;
    e->time_ms = (uint64_t)zclock_time();
    snprintf(e->vm, sizeof(e->vm), "%s", vm);
    snprintf(e->kind, sizeof(e->kind), "%s", kind);
    va_list args;
    va_start(args, fmt);
    vsnprintf(e->message, sizeof(e->message), fmt, args);
    va_end(args);
    log_write(level, "vms", "%s: %s: %s", e->vm, e->kind, e->message);
}

/* --- records ------------------------------------------------------------------ */

vms_record_t *vms_record_find(vms_t *self, const char *name)
{
    for (size_t i = 0; i < self->record_count; i++)
        if (strcmp(self->records[i]->name, name) == 0)
            return self->records[i];
    return NULL;
}

static vms_record_t *record_add(vms_t *self, const fsm_vm_t *v)
{
    if (self->record_count == self->record_cap) {
        size_t cap = self->record_cap ? self->record_cap * 2 : 16;
        vms_record_t **grown = realloc(self->records, cap * sizeof(*grown));
        if (!grown)
            return NULL;
        self->records = grown;
        self->record_cap = cap;
    }
    vms_record_t *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    snprintf(r->name, sizeof(r->name), "%s", v->name);
    r->created_index = v->created_index;
    self->records[self->record_count++] = r;
    return r;
}

int vms_image_dir(const vms_t *self, const char *vm, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/images/%s", self->state_dir, vm);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

int vms_path(const vms_t *self, const char *vm, const char *file, char *out, size_t cap)
{
    int n = file ? snprintf(out, cap, "%s/vms/%s/%s", self->state_dir, vm, file)
                 : snprintf(out, cap, "%s/vms/%s", self->state_dir, vm);
    return n < 0 || (size_t)n >= cap ? -1 : 0;
}

/* The VM's folder (its console log) goes with the record: a VM deleted, or
 * moved to another host, leaves nothing here. */
static void record_drop(vms_t *self, size_t i)
{
    vms_record_t *r = self->records[i];
    char dir[PATH_MAX];
    if (vms_path(self, r->name, NULL, dir, sizeof(dir)) == 0)
        fs_remove_tree(dir);
    free(r);
    self->records[i] = self->records[--self->record_count];
}

/* --- measurement --------------------------------------------------------------- */

static void measurement_start(vms_t *self, vms_record_t *r)
{
    r->started_ms = zclock_mono();
    r->sample_ns = 0;
    r->cpu_percent = 0;
    r->dirty_pages_per_s = 0;
    r->active_pages = 0;
    r->active_valid = false;
    r->heartbeats_before = 0;
    r->window_start_ns = mono_ns();
    r->bitmap_words = vm_dirty_bitmap_words(r->vm);
    r->dirty_bits = calloc(r->bitmap_words, sizeof(uint64_t));
    r->window_bits = calloc(r->bitmap_words, sizeof(uint64_t));
    r->dirty_tracking = r->dirty_bits && r->window_bits && !r->dirty_lent && vm_dirty_log_enable(r->vm) == 0;
    if (!r->dirty_tracking && !r->dirty_lent)
        log_warn("vms", "%s: no dirty log: dirty rate and active set are not measured", r->name);
}

static void measurement_stop(vms_record_t *r)
{
    free(r->dirty_bits);
    free(r->window_bits);
    r->dirty_bits = r->window_bits = NULL;
    r->bitmap_words = 0;
    r->dirty_tracking = false;
}

static uint64_t popcount_words(const uint64_t *words, size_t n)
{
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += (uint64_t)__builtin_popcountll(words[i]);
    return total;
}

/* Pages written since the last collect, then re-armed; the window's set
 * gathers them until it closes into the active set. */
static void measure_dirty(vms_record_t *r, int64_t now, double seconds)
{
    if (!r->dirty_tracking || r->dirty_lent)
        return;
    if (vm_dirty_log_collect(r->vm, r->dirty_bits) != 0 || vm_dirty_log_clear(r->vm, r->dirty_bits) != 0) {
        log_warn("vms", "%s: reading the dirty log failed; dirty rate is no longer measured", r->name);
        r->dirty_tracking = false;
        return;
    }
    if (seconds > 0)
        r->dirty_pages_per_s = (double)popcount_words(r->dirty_bits, r->bitmap_words) / seconds;
    for (size_t i = 0; i < r->bitmap_words; i++)
        r->window_bits[i] |= r->dirty_bits[i];
    if (now - r->window_start_ns >= (int64_t)VMS_ACTIVE_WINDOW_S * 1000000000) {
        r->active_pages = popcount_words(r->window_bits, r->bitmap_words);
        r->active_valid = true;
        memset(r->window_bits, 0, r->bitmap_words * sizeof(uint64_t));
        r->window_start_ns = now;
    }
}

static void measure(vms_record_t *r, const vm_status_t *st, int64_t now)
{
    double seconds = r->sample_ns ? (double)(now - r->sample_ns) / 1e9 : 0;
    if (seconds > 0) {
        /* A reset makes new vCPU threads whose clocks start at zero. */
        uint64_t used = st->vcpu_cpu_ns >= r->sample_cpu_ns ? st->vcpu_cpu_ns - r->sample_cpu_ns : st->vcpu_cpu_ns;
        r->cpu_percent = 100.0 * (double)used / 1e9 / seconds;
    }
    r->sample_ns = now;
    r->sample_cpu_ns = st->vcpu_cpu_ns;
    measure_dirty(r, now, seconds);
}

/* --- local start, stop and reset -------------------------------------------------- */

/* A VM suspended here, or cold-migrated here, has an image: power it on from
 * there. An image that does not match the VM or does not load is set aside
 * (renamed) and the VM boots afresh: better a clean boot than none. */
static bool resume_from_image(vms_t *self, const fsm_vm_t *v, const vm_config_t *cfg, char *dir, size_t cap,
                              vm_t **vm_out)
{
    image_manifest_t m;
    char err[256];
    if (vms_image_dir(self, v->name, dir, cap) != 0 || image_read_manifest(dir, &m, err, sizeof(err)) != 0)
        return false;
    if (m.memory_bytes == v->memory_bytes && m.vcpus == v->vcpus)
        *vm_out = image_load(dir, cfg->kernel_path, cfg->console_log_path, err, sizeof(err));
    else
        snprintf(err, sizeof(err), "it holds %llu MiB and %u vCPUs, the VM has %llu MiB and %u",
                 (unsigned long long)(m.memory_bytes >> 20), m.vcpus, (unsigned long long)(v->memory_bytes >> 20),
                 v->vcpus);
    if (*vm_out)
        return true;
    char aside[PATH_MAX + 16];
    snprintf(aside, sizeof(aside), "%s.unusable", dir);
    fs_remove_tree(aside);
    rename(dir, aside);
    vms_event(self, LOG_LEVEL_WARN, v->name, "image-unusable", "booting afresh; the image is kept at %s: %s", aside,
              err);
    return false;
}

static void start_local(vms_t *self, vms_record_t *r, const fsm_vm_t *v)
{
    int64_t now = zclock_mono();
    if (r->retry_at_ms && now < r->retry_at_ms)
        return;
    char err[512] = "";
    char dir[PATH_MAX], log_path[PATH_MAX];
    vm_boot_t boot;
    if (vm_spec_decode(v->profile, v->memory_bytes, &boot, err, sizeof(err)) != 0)
        goto failed;
    if (vms_path(self, v->name, NULL, dir, sizeof(dir)) != 0 ||
        vms_path(self, v->name, "console.log", log_path, sizeof(log_path)) != 0) {
        snprintf(err, sizeof(err), "the state dir path is too long for a console log");
        goto failed;
    }
    int rc = fs_mkdirs(dir, 0700);
    if (rc != 0) {
        snprintf(err, sizeof(err), "cannot create %s: %s", dir, strerror(-rc));
        goto failed;
    }
    vm_config_t cfg = {
        .name = v->name,
        .memory_bytes = v->memory_bytes,
        .vcpus = v->vcpus,
        .kernel_path = boot.custom_kernel ? boot.kernel_path : NULL,
        .cmdline = boot.cmdline,
        .console_log_path = log_path,
        .backend = self->backend,
    };
    char image_dir[PATH_MAX];
    bool resumed = resume_from_image(self, v, &cfg, image_dir, sizeof(image_dir), &r->vm);
    if (!r->vm)
        r->vm = vm_new(&cfg, err, sizeof(err));
    if (!r->vm)
        goto failed;
    measurement_start(self, r);
    if (vm_start(r->vm) != 0) {
        measurement_stop(r);
        vm_destroy(&r->vm);
        snprintf(err, sizeof(err), "the VMM could not start its vCPUs");
        goto failed;
    }
    r->start_error[0] = '\0';
    r->retry_at_ms = 0;
    char mem[32];
    if (resumed) {
        image_remove(image_dir);   /* it lives on in the running VM; never resume it twice */
        vms_event(self, LOG_LEVEL_INFO, v->name, "resumed", "powered on here from its suspended image (%s, %s)",
                  self->backend, vm_spec_bytes(v->memory_bytes, mem, sizeof(mem)));
        return;
    }
    vms_event(self, LOG_LEVEL_INFO, v->name, "started", "powered on here (%s, %s, %u vCPUs, %s)", self->backend,
              vm_spec_bytes(v->memory_bytes, mem, sizeof(mem)), v->vcpus, v->profile);
    return;
failed:
    /* Once per distinct reason, not once per retry. */
    if (strcmp(r->start_error, err) != 0)
        vms_event(self, LOG_LEVEL_WARN, v->name, "start-failed", "cannot power on here: %s", err);
    snprintf(r->start_error, sizeof(r->start_error), "%s", err);
    r->retry_at_ms = now + START_RETRY_MS;
}

static void stop_local(vms_t *self, vms_record_t *r, log_level_t level, const char *kind, const char *reason)
{
    measurement_stop(r);
    vm_destroy(&r->vm);
    r->incoming = false;
    r->monitor_resets = 0;
    r->monitor_gave_up = false;
    vms_event(self, level, r->name, kind, "powered off here: %s", reason);
}

int vms_reset_local(vms_t *self, vms_record_t *r, char *err, size_t errlen)
{
    vm_status_t st;
    vm_status(r->vm, &st);
    r->heartbeats_before += st.heartbeats_seen;
    int rc = vm_reset(r->vm, err, errlen);
    /* The machine is new: its dirty log starts off, its vCPU clocks at zero. */
    if (r->dirty_tracking && !r->dirty_lent && vm_dirty_log_enable(r->vm) != 0)
        r->dirty_tracking = false;
    r->sample_ns = 0;
    return rc;
}

/* --- monitoring ----------------------------------------------------------------------- */

static void monitor(vms_t *self, vms_record_t *r, const vm_status_t *st, int64_t now)
{
    vm_monitor_input_t in = {
        .timeout_ms = self->heartbeat_timeout_ms,
        .max_resets = VMS_MONITOR_MAX_RESETS,
        .executing = st->state == VM_RUNNING || st->state == VM_STOPPED,
        .last_heartbeat_ns = st->last_heartbeat_ns,
        .now_ns = now,
        .resets_done = r->monitor_resets,
        .gave_up = r->monitor_gave_up,
    };
    vm_monitor_action_t action = vm_monitor_decide(&in);
    if (action == VM_MONITOR_OK)
        return;
    double silent_s = (double)(now - st->last_heartbeat_ns) / 1e9;
    if (action == VM_MONITOR_GIVE_UP) {
        r->monitor_gave_up = true;
        vms_event(self, LOG_LEVEL_WARN, r->name, "monitor-gave-up",
                  "no heartbeat for %.1f s; not resetting again after %u resets in this power-on", silent_s,
                  r->monitor_resets);
        return;
    }
    r->monitor_resets++;
    char err[256] = "";
    if (vms_reset_local(self, r, err, sizeof(err)) == 0)
        vms_event(self, LOG_LEVEL_WARN, r->name, "heartbeat-reset", "no heartbeat for %.1f s: reset %u of %u",
                  silent_s, r->monitor_resets, VMS_MONITOR_MAX_RESETS);
    else
        vms_event(self, LOG_LEVEL_ERROR, r->name, "heartbeat-reset",
                  "no heartbeat for %.1f s: reset %u of %u failed: %s", silent_s, r->monitor_resets,
                  VMS_MONITOR_MAX_RESETS, err);
}

/* --- reconciliation --------------------------------------------------------------------- */

void vms_reconcile(vms_t *self)
{
    const fsm_t *fsm = cluster_state(self->cluster);
    bool lease_valid = cluster_lease_valid(self->cluster);
    if (self->lease_was_valid && !lease_valid && vms_running(self) > 0)
        log_warn("vms", "self-fencing: this host's lease is not valid (cut off from the quorum?); "
                        "powering off its %zu VMs", vms_running(self));
    self->lease_was_valid = lease_valid;

    for (size_t i = 0; i < fsm_vm_count(fsm); i++) {
        const fsm_vm_t *v = fsm_vm_at(fsm, i);
        vms_record_t *r = vms_record_find(self, v->name);
        if (r && r->migrating)
            continue;   /* a migration thread holds it; it hands it back when done */
        if (r && r->created_index != v->created_index) {
            /* Deleted and created again under the same name: a new VM. */
            if (r->vm)
                stop_local(self, r, LOG_LEVEL_INFO, "stopped", "the VM was deleted and created again");
            char dir[PATH_MAX];
            if (vms_path(self, r->name, NULL, dir, sizeof(dir)) == 0)
                fs_remove_tree(dir);
            memset(r, 0, sizeof(*r));
            snprintf(r->name, sizeof(r->name), "%s", v->name);
            r->created_index = v->created_index;
        }
        if (r && r->incoming) {
            /* A migration holds it until the commit names this host. */
            if (strcmp(v->owner, self->name) != 0)
                continue;
            r->incoming = false;
        }
        char why[96];
        switch (vm_run_decide(v, self->name, lease_valid, r && r->vm, why, sizeof(why))) {
        case VM_RUN_START:
            if (!r)
                r = record_add(self, v);
            if (r)
                start_local(self, r, v);
            break;
        case VM_RUN_STOP:
            if (r->suspend_on_stop) {
                measurement_stop(r);
                vms_suspend_begin(self, r, v);
            } else {
                stop_local(self, r, LOG_LEVEL_INFO, "stopped", why);
            }
            break;
        case VM_RUN_FENCE:
            stop_local(self, r, LOG_LEVEL_WARN, "self-fenced", why);
            break;
        case VM_RUN_KEEP:
            if (r && !r->vm && v->power != FSM_POWER_ON) {
                r->start_error[0] = '\0';   /* no longer trying */
                r->retry_at_ms = 0;
            }
            break;
        }
    }
    /* Records of VMs that are gone, or that belong to another host now. */
    for (size_t i = self->record_count; i-- > 0;) {
        vms_record_t *r = self->records[i];
        const fsm_vm_t *v = fsm_vm_find(fsm, r->name);
        if (r->migrating)
            continue;
        if (!v) {
            if (r->vm)
                stop_local(self, r, LOG_LEVEL_INFO, "stopped", "the VM was deleted");
            vms_event(self, LOG_LEVEL_INFO, r->name, "deleted", "removed from the cluster");
            char image_dir[PATH_MAX];
            if (vms_image_dir(self, r->name, image_dir, sizeof(image_dir)) == 0)
                fs_remove_tree(image_dir);
            record_drop(self, i);
        } else if (!r->vm && !r->incoming && strcmp(v->owner, self->name) != 0) {
            record_drop(self, i);
        }
    }
}

/* --- timers ------------------------------------------------------------------------------- */

static int on_tick(zloop_t *loop, int timer_id, void *arg)
{
    vms_t *self = arg;
    vms_reconcile(self);
    vms_control_after_reconcile(self);
    int64_t now = mono_ns();
    for (size_t i = 0; i < self->record_count; i++) {
        vms_record_t *r = self->records[i];
        if (!r->vm)
            continue;
        vm_status_t st;
        vm_status(r->vm, &st);
        measure(r, &st, now);
        monitor(self, r, &st, now);
    }
    return 0;
}

static int on_reconcile(zloop_t *loop, int timer_id, void *arg)
{
    vms_t *self = arg;
    self->reconcile_timer = -1;
    vms_reconcile(self);
    vms_control_after_reconcile(self);
    return 0;
}

void vms_on_apply(void *arg)
{
    vms_t *self = arg;
    /* From the loop rather than inside Raft's apply: many batches, one pass. */
    if (self && self->reconcile_timer < 0)
        self->reconcile_timer = zloop_timer(self->loop, 1, 1, on_reconcile, self);
}

/* --- lifecycle ------------------------------------------------------------------------------ */

const char *vms_pick_backend(config_backend_t choice, char *why, size_t whylen)
{
    if (choice == BACKEND_KVM) {
        snprintf(why, whylen, "set in the config");
        return "kvm";
    }
    if (choice == BACKEND_PROCESS) {
        snprintf(why, whylen, "set in the config");
        return "process";
    }
    /* The VMM's own probe decides (it also checks the KVM API version). */
    const char *backend = vm_default_backend();
    snprintf(why, whylen, "%s", strcmp(backend, "kvm") == 0 ? "/dev/kvm works"
                                                          : "/dev/kvm is missing or unusable");
    return backend;
}

vms_t *vms_new(const vms_config_t *cfg, cluster_t *cluster, control_t *control, zloop_t *loop, char *err,
               size_t errlen)
{
    vms_t *self = calloc(1, sizeof(*self));
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(self->name, sizeof(self->name), "%s", cfg->name);
    snprintf(self->backend, sizeof(self->backend), "%s", cfg->backend);
    self->downtime_ms = cfg->downtime_ms;
    self->heartbeat_timeout_ms = cfg->heartbeat_timeout_ms;
    self->cluster = cluster;
    self->control = control;
    self->loop = loop;
    self->reconcile_timer = -1;
    self->suspend_timer = -1;
    if (snprintf(self->state_dir, sizeof(self->state_dir), "%s", cfg->state_dir) >= (int)sizeof(self->state_dir)) {
        snprintf(err, errlen, "state dir path too long");
        free(self);
        return NULL;
    }
    self->tick_timer = zloop_timer(loop, TICK_MS, 0, on_tick, self);
    vms_control_register(self);
    return self;
}

void vms_destroy(vms_t **self_p)
{
    vms_t *self = *self_p;
    if (!self)
        return;
    vms_suspend_join_all(self);
    zloop_timer_end(self->loop, self->tick_timer);
    if (self->reconcile_timer >= 0)
        zloop_timer_end(self->loop, self->reconcile_timer);
    size_t running = vms_running(self);
    if (running)
        log_info("vms", "the agent is stopping: powering off %zu VMs", running);
    for (size_t i = 0; i < self->record_count; i++) {
        vms_record_t *r = self->records[i];
        if (r->vm)
            stop_local(self, r, LOG_LEVEL_INFO, "stopped", "the agent is stopping");
        free(r);
    }
    free(self->records);
    while (self->applied) {
        vms_waiter_t *w = self->applied;
        self->applied = w->next;
        free(w);   /* control_destroy answers its request */
    }
    free(self);
    *self_p = NULL;
}

const char *vms_backend(const vms_t *self) { return self->backend; }

size_t vms_running(const vms_t *self)
{
    size_t n = 0;
    for (size_t i = 0; i < self->record_count; i++)
        n += self->records[i]->vm != NULL;
    return n;
}

/* --- migration hand-over --------------------------------------------------------------- */

bool vms_local_running(vms_t *self, const char *name)
{
    vms_record_t *r = vms_record_find(self, name);
    return r && r->vm;
}

bool vms_migrating(vms_t *self, const char *name)
{
    vms_record_t *r = vms_record_find(self, name);
    return r && r->migrating;
}

int vms_console_path(vms_t *self, const char *name, char *out, size_t cap)
{
    char dir[PATH_MAX];
    if (vms_path(self, name, NULL, dir, sizeof(dir)) != 0 || vms_path(self, name, "console.log", out, cap) != 0)
        return -1;
    return fs_mkdirs(dir, 0700) == 0 ? 0 : -1;
}

int vms_migration_lend(vms_t *self, const char *name, vm_t **vm_out, char *err, size_t errlen)
{
    vms_record_t *r = vms_record_find(self, name);
    if (r && r->migrating) {
        snprintf(err, errlen, "VM %s is being migrated already", name);
        return -EBUSY;
    }
    if (!r || !r->vm) {
        snprintf(err, errlen, "VM %s does not run on %s", name, self->name);
        return -ENOENT;
    }
    measurement_stop(r);
    *vm_out = r->vm;
    r->vm = NULL;
    r->migrating = r->migrating_out = true;
    vms_event(self, LOG_LEVEL_INFO, name, "migrating", "a live migration takes it from %s", self->name);
    return 0;
}

int vms_migration_hold(vms_t *self, const char *name, char *err, size_t errlen)
{
    const fsm_vm_t *v = fsm_vm_find(cluster_state(self->cluster), name);
    vms_record_t *r = vms_record_find(self, name);
    if (!v) {
        snprintf(err, errlen, "no VM named '%s'", name);
        return -ENOENT;
    }
    if (r && (r->vm || r->migrating)) {
        snprintf(err, errlen, "VM %s %s on %s", name, r->vm ? "still runs" : "is being suspended or migrated",
                 self->name);
        return -EBUSY;
    }
    if (!r && !(r = record_add(self, v))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->migrating = true;
    return 0;
}

void vms_migration_paused(vms_t *self, const char *name)
{
    vms_record_t *r = vms_record_find(self, name);
    if (r && r->migrating)
        r->migrating_out = false;
}

void vms_migration_return(vms_t *self, const char *name, vm_t *vm)
{
    vms_record_t *r = vms_record_find(self, name);
    if (!r || !r->migrating) {
        vm_destroy(&vm);   /* cannot happen: the record lives while a migration holds it */
        return;
    }
    r->migrating = r->migrating_out = false;
    if (vm) {
        r->vm = vm;
        measurement_start(self, r);
        vms_event(self, LOG_LEVEL_WARN, name, "migration-failed", "still runs on %s", self->name);
    } else {
        r->incoming = false;
        const fsm_vm_t *v = fsm_vm_find(cluster_state(self->cluster), name);
        if (v && strcmp(v->owner, self->name) != 0)
            vms_event(self, LOG_LEVEL_INFO, name, "migrated", "it belongs to %s now", v->owner);
    }
    vms_on_apply(self);   /* reconcile soon: forget a VM that left */
}

int vms_incoming_expect(vms_t *self, const char *name, char *err, size_t errlen)
{
    const fsm_vm_t *v = fsm_vm_find(cluster_state(self->cluster), name);
    if (!v) {
        snprintf(err, errlen, "no VM named '%s'", name);
        return -ENOENT;
    }
    vms_record_t *r = vms_record_find(self, name);
    if (r && (r->vm || r->migrating)) {
        snprintf(err, errlen, "VM %s %s on %s already", name, r->vm ? "runs" : "is being migrated", self->name);
        return -EEXIST;
    }
    if (!r && !(r = record_add(self, v))) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r->created_index = v->created_index;
    r->migrating = true;
    return 0;
}

void vms_incoming_arrived(vms_t *self, const char *name, vm_t *vm)
{
    vms_record_t *r = vms_record_find(self, name);
    if (!r || !r->migrating) {
        vm_destroy(&vm);
        return;
    }
    r->migrating = false;
    if (vm) {
        r->vm = vm;
        r->incoming = true;
        r->start_error[0] = '\0';
        r->retry_at_ms = 0;
        measurement_start(self, r);
        vms_event(self, LOG_LEVEL_INFO, name, "arrived", "live-migrated to %s; runs here now", self->name);
    }
    vms_on_apply(self);
}

