/* vms_control.c - the vm.* control commands (vms.h lists them).
 *
 * Writes are checked here first, so that bad input gets one clear line and
 * nothing reaches the cluster state; then they are proposed through Raft and
 * answered once applied AND reconciled here, so `ferryctl vm start` returns
 * with the VM running when this agent owns it. */
#include "agent/vms_internal.h"
#include "agent/vm_spec.h"
#include "common/fsutil.h"
#include "common/wire.h"
#include "common/wire_map.h"
#include "vmm/multiboot_loader.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONSOLE_TAIL_BYTES (16u << 10)      /* vm console without a cursor */
#define CONSOLE_MAX_BYTES (1u << 20)        /* most bytes one reply carries */
#define KERNEL_CHECK_MAX_BYTES (64u << 20)  /* the VMM loads no larger image */

/* --- reading the state ---------------------------------------------------------- */

static const char *run_state_name(vm_run_state_t state)
{
    switch (state) {
    case VM_CREATED: return "created";
    case VM_RUNNING: return "running";
    case VM_PAUSED: return "paused";
    case VM_STOPPED: return "stopped";
    }
    return "?";
}

static const char *guest_status_name(uint32_t status)
{
    static const char *const names[] = { "booting", "running", "check-failed", "bad-cmdline", "no-memory", "fault" };
    return status < sizeof(names) / sizeof(names[0]) ? names[status] : "?";
}

/* Measurements to a tenth: more digits would be noise. */
static double tenths(double v) { return round(v * 10) / 10; }

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The fields of one VM in vm.list; vm.show adds detail. */
static void pack_vm(vms_t *self, wire_map_t *o, const fsm_vm_t *v, bool detail)
{
    vms_record_t *r = vms_record_find(self, v->name);
    vm_status_t st = { 0 };
    bool here = r && r->vm;
    if (here)
        vm_status(r->vm, &st);
    wire_map_str(o, "name", v->name);
    wire_map_str(o, "owner", v->owner);
    wire_map_str(o, "power_state", v->power == FSM_POWER_ON ? "on" : "off");
    /* A VM on its way out still runs here until the commit: say so. Once
     * the commit names another owner, the copy here is stopped for good
     * (a rollback is only possible before it), so it no longer runs here
     * even though the job has not released it yet. */
    bool leaving = r && r->migrating_out && strcmp(v->owner, self->name) == 0;
    /* Symmetrically, a VM that just arrived runs here before this host's
     * state names it the owner (the source resumed it as soon as the commit
     * applied there): it is claimed once this host's state agrees, so a host
     * claims a VM only while its own state says it may run it. */
    bool arriving = r && r->incoming && strcmp(v->owner, self->name) != 0;
    wire_map_bool(o, "running_here", (here && st.state == VM_RUNNING && !arriving) || leaving);
    wire_map_str(o, "runtime_state", here ? run_state_name(st.state) : r && r->migrating ? "migrating" : "");
    wire_map_bool(o, "migrating", r && r->migrating);
    wire_map_u64(o, "memory_bytes", v->memory_bytes);
    wire_map_u64(o, "vcpus", v->vcpus);
    wire_map_str(o, "profile", v->profile);
    wire_map_u64(o, "generation", v->generation);
    wire_map_u64(o, "heartbeats", here ? r->heartbeats_before + st.heartbeats_seen : 0);
    wire_map_f64(o, "cpu_percent", here ? tenths(r->cpu_percent) : 0);
    wire_map_f64(o, "dirty_pages_per_s", here ? tenths(r->dirty_pages_per_s) : 0);
    wire_map_u64(o, "active_set_bytes", here ? r->active_pages * VM_PAGE_SIZE : 0);
    wire_map_str(o, "start_error", r ? r->start_error : "");
    if (!detail)
        return;

    vm_boot_t boot;
    char err[256];
    bool decoded = vm_spec_decode(v->profile, v->memory_bytes, &boot, err, sizeof(err)) == 0;
    wire_map_str(o, "kernel", decoded && boot.custom_kernel ? boot.kernel_path : vm_default_kernel_path());
    wire_map_str(o, "cmdline", decoded ? boot.cmdline : "");
    wire_map_u64(o, "downtime_ms", v->downtime_ms);
    wire_map_u64(o, "created_index", v->created_index);
    wire_map_bool(o, "owner_lease_valid", v->owner[0] && fsm_lease_valid(cluster_state(self->cluster), v->owner,
                                                                    (uint64_t)zclock_time()));
    wire_map_str(o, "backend", here ? vm_backend_name(r->vm) : "");
    wire_map_u64(o, "uptime_ms", here ? (uint64_t)(zclock_mono() - r->started_ms) : 0);
    wire_map_str(o, "stop_reason", here ? st.stop_reason : "");
    wire_map_u64(o, "heartbeat_counter", here ? st.heartbeat : 0);
    wire_map_i64(o, "last_heartbeat_age_ms", here && st.last_heartbeat_ns ? (mono_ns() - st.last_heartbeat_ns) / 1000000 : -1);
    wire_map_str(o, "guest_status", here ? guest_status_name(st.guest_status) : "");
    wire_map_u64(o, "vcpu_cpu_ns", here ? st.vcpu_cpu_ns : 0);
    wire_map_bool(o, "dirty_tracking", here && r->dirty_tracking && !r->dirty_lent);
    wire_map_f64(o, "dirty_bytes_per_s", here ? round(r->dirty_pages_per_s * VM_PAGE_SIZE) : 0);
    wire_map_bool(o, "active_set_valid", here && r->active_valid);
    wire_map_u64(o, "active_set_window_s", VMS_ACTIVE_WINDOW_S);
    wire_map_u64(o, "pages_written", here ? st.pages_written : 0);
    wire_map_u64(o, "check_errors", here ? st.check_errors : 0);
    wire_map_u64(o, "monitor_resets", r ? r->monitor_resets : 0);
    wire_map_bool(o, "monitor_gave_up", r && r->monitor_gave_up);
    wire_map_u64(o, "heartbeat_timeout_ms", self->heartbeat_timeout_ms);
    char log_path[PATH_MAX];
    wire_map_str(o, "console_log", r && vms_path(self, v->name, "console.log", log_path, sizeof(log_path)) == 0
                                   ? log_path : "");
}

static void pack_event(msgpack_packer *pk, const vms_event_t *e)
{
    msgpack_pack_map(pk, 5);
    wire_pack_kv_u64(pk, "seq", e->seq);
    wire_pack_kv_u64(pk, "time_ms", e->time_ms);
    wire_pack_kv_str(pk, "vm", e->vm);
    wire_pack_kv_str(pk, "kind", e->kind);
    wire_pack_kv_str(pk, "message", e->message);
}

/* The events held, oldest first; only those of `vm` unless it is NULL. */
static void pack_events(vms_t *self, msgpack_packer *pk, const char *vm)
{
    uint64_t first = self->event_seq > VMS_EVENTS_MAX ? self->event_seq - VMS_EVENTS_MAX : 0;
    uint32_t n = 0;
    for (uint64_t s = first; s < self->event_seq; s++)
        n += !vm || strcmp(self->events[s % VMS_EVENTS_MAX].vm, vm) == 0;
    msgpack_pack_array(pk, n);
    for (uint64_t s = first; s < self->event_seq; s++)
        if (!vm || strcmp(self->events[s % VMS_EVENTS_MAX].vm, vm) == 0)
            pack_event(pk, &self->events[s % VMS_EVENTS_MAX]);
}

static void pack_list(vms_t *self, msgpack_packer *pk)
{
    const fsm_t *fsm = cluster_state(self->cluster);
    wire_map_t top;
    wire_map_init(&top);
    wire_map_str(&top, "host", self->name);
    wire_map_u64(&top, "applied_index", fsm_applied_index(fsm));
    msgpack_packer *list = wire_map_key(&top, "vms");
    msgpack_pack_array(list, (uint32_t)fsm_vm_count(fsm));
    for (size_t i = 0; i < fsm_vm_count(fsm); i++) {
        wire_map_t o;
        wire_map_init(&o);
        pack_vm(self, &o, fsm_vm_at(fsm, i), false);
        wire_map_end(&o, list);
    }
    wire_map_end(&top, pk);
}

/* Returns 0, or -1 with the call failed when there is no such VM. */
static int pack_show(vms_t *self, msgpack_packer *pk, const char *name, control_call_t *call)
{
    const fsm_vm_t *v = fsm_vm_find(cluster_state(self->cluster), name);
    if (!v)
        return call ? control_fail(call, CONTROL_NOT_FOUND, "no VM named '%s'", name) : -1;
    wire_map_t o;
    wire_map_init(&o);
    wire_map_str(&o, "host", self->name);
    wire_map_u64(&o, "applied_index", fsm_applied_index(cluster_state(self->cluster)));
    pack_vm(self, &o, v, true);
    pack_events(self, wire_map_key(&o, "events"), name);
    wire_map_end(&o, pk);
    return 0;
}

/* --- arguments ------------------------------------------------------------------------ */

static int need_name(control_call_t *call, char name[FSM_NAME_MAX])
{
    char err[160];
    int rc = wire_get_str(call->args, "name", name, FSM_NAME_MAX, err, sizeof(err));
    if (rc < 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "%s", err);
    if (rc > 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "needs a VM 'name'");
    return 0;
}

static const fsm_vm_t *need_vm(vms_t *self, control_call_t *call, char name[FSM_NAME_MAX])
{
    if (need_name(call, name) != 0)
        return NULL;
    const fsm_vm_t *v = fsm_vm_find(cluster_state(self->cluster), name);
    if (!v)
        control_fail(call, CONTROL_NOT_FOUND, "no VM named '%s'", name);
    return v;
}

/* An optional boolean argument; false when absent. */
static int opt_bool(control_call_t *call, const char *key, bool *out)
{
    char err[160];
    *out = false;
    if (wire_get_bool(call->args, key, out, err, sizeof(err)) < 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "%s", err);
    return 0;
}

/* --- reads: vm.list, vm.show, vm.events --------------------------------------------------- */

typedef struct {
    control_t *control;
    vms_t *vms;              /* only on success, as for waiters */
    control_ticket_t ticket;
    char name[FSM_NAME_MAX]; /* vm.show; "" for vm.list */
    bool in_handler;         /* the barrier may pass before the handler returns */
    bool passed_inline;
    int inline_error;
} reader_t;

/* Packs the answer of a read into pk; returns a control code, with message. */
static control_code_t answer_read(vms_t *self, const char *name, msgpack_packer *pk, char *message, size_t cap)
{
    if (!name[0]) {
        pack_list(self, pk);
        return CONTROL_OK;
    }
    if (pack_show(self, pk, name, NULL) == 0)
        return CONTROL_OK;
    snprintf(message, cap, "no VM named '%s'", name);
    return CONTROL_NOT_FOUND;
}

static void on_read_barrier(void *ctx, int error, const fsm_result_t *result, uint64_t index)
{
    reader_t *rd = ctx;
    if (rd->in_handler) {
        /* A lone voter confirms at once: the handler answers itself, as
         * the control API cannot complete a request it has not deferred yet. */
        rd->passed_inline = true;
        rd->inline_error = error;
        return;
    }
    if (error) {
        control_complete(rd->control, rd->ticket, NULL, CONTROL_UNAVAILABLE, cluster_error_text(error));
        free(rd);
        return;
    }
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    char message[128] = "";
    control_code_t code = answer_read(rd->vms, rd->name, &pk, message, sizeof(message));
    control_complete(rd->control, rd->ticket, code == CONTROL_OK ? &out : NULL, code, message);
    msgpack_sbuffer_destroy(&out);
    free(rd);
}

/* With "linearizable": true, answers after the Raft read barrier. */
static int read_after_barrier(vms_t *self, control_call_t *call, const char *name)
{
    reader_t *rd = calloc(1, sizeof(*rd));
    if (!rd)
        return control_fail(call, CONTROL_INTERNAL, "out of memory");
    rd->control = self->control;
    rd->vms = self;
    snprintf(rd->name, sizeof(rd->name), "%s", name);
    rd->in_handler = true;
    int rc = cluster_read(self->cluster, on_read_barrier, rd);
    rd->in_handler = false;
    if (rc != 0 || rd->passed_inline) {
        int error = rc != 0 ? rc : rd->inline_error;
        free(rd);
        if (error)
            return control_fail(call, CONTROL_UNAVAILABLE, "%s", cluster_error_text(error));
        char message[128] = "";
        control_code_t code = answer_read(self, name, call->result, message, sizeof(message));
        return code == CONTROL_OK ? 0 : control_fail(call, code, "%s", message);
    }
    rd->ticket = control_defer(call);
    return CONTROL_DEFERRED;
}

static int handle_list(void *ctx, control_call_t *call)
{
    vms_t *self = ctx;
    bool linearizable;
    if (opt_bool(call, "linearizable", &linearizable) != 0)
        return -1;
    if (linearizable)
        return read_after_barrier(self, call, "");
    pack_list(self, call->result);
    return 0;
}

static int handle_show(void *ctx, control_call_t *call)
{
    vms_t *self = ctx;
    char name[FSM_NAME_MAX];
    bool linearizable;
    if (need_name(call, name) != 0 || opt_bool(call, "linearizable", &linearizable) != 0)
        return -1;
    if (linearizable)
        return read_after_barrier(self, call, name);
    return pack_show(self, call->result, name, call);
}

static int handle_events(void *ctx, control_call_t *call)
{
    vms_t *self = ctx;
    char name[FSM_NAME_MAX], err[160];
    int rc = wire_get_str(call->args, "name", name, sizeof(name), err, sizeof(err));
    if (rc < 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "%s", err);
    msgpack_pack_map(call->result, 2);
    wire_pack_kv_str(call->result, "host", self->name);
    wire_pack_str(call->result, "events");
    pack_events(self, call->result, rc == 0 ? name : NULL);
    return 0;
}

/* --- writes: proposals answered after reconcile ----------------------------------------------- */

static void push_applied(vms_t *self, vms_waiter_t *w)
{
    /* Appended, so requests are answered in the order they were applied. */
    vms_waiter_t **tail = &self->applied;
    while (*tail)
        tail = &(*tail)->next;
    w->next = NULL;
    *tail = w;
}

static void on_proposal_done(void *ctx, int error, const fsm_result_t *result, uint64_t index)
{
    vms_waiter_t *w = ctx;
    if (error) {
        char message[300];
        snprintf(message, sizeof(message), "%s%s", w->created ? "the VM was created, but starting it failed: " : "",
                 cluster_error_text(error));
        control_complete(w->control, w->ticket, NULL, CONTROL_UNAVAILABLE, message);
        free(w);
        return;
    }
    if (!result || result->status != FSM_OK) {
        control_complete(w->control, w->ticket, NULL, result ? cluster_control_code(result->status) : CONTROL_INTERNAL,
                         result ? result->message : "the command's outcome is unknown");
        free(w);
        return;
    }
    w->index = index;
    push_applied(w->vms, w);
    vms_on_apply(w->vms);
}

/* Proposes cmd for the request w; on failure answers it and frees w. */
static void propose(vms_t *self, vms_waiter_t *w, const msgpack_sbuffer *cmd)
{
    int rc = cluster_propose(self->cluster, cmd, on_proposal_done, w);
    if (rc != 0) {
        control_complete(self->control, w->ticket, NULL, CONTROL_UNAVAILABLE, cluster_error_text(rc));
        free(w);
    }
}

static vms_waiter_t *waiter_new(vms_t *self, control_call_t *call, vms_after_t after, const char *name)
{
    vms_waiter_t *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->vms = self;
    w->control = self->control;
    w->after = after;
    snprintf(w->name, sizeof(w->name), "%s", name);
    w->ticket = control_defer(call);
    return w;
}

static int propose_power(vms_t *self, control_call_t *call, const char *name, fsm_power_t power)
{
    vms_waiter_t *w = waiter_new(self, call, AFTER_POWER, name);
    if (!w)
        return control_fail(call, CONTROL_INTERNAL, "out of memory");
    w->power = power;
    msgpack_sbuffer cmd;
    msgpack_sbuffer_init(&cmd);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &cmd, msgpack_sbuffer_write);
    fsm_cmd_vm_set_power(&pk, name, power);
    propose(self, w, &cmd);
    msgpack_sbuffer_destroy(&cmd);
    return CONTROL_DEFERRED;
}

/* The answer to a write: where the VM stands now, as this agent sees it. */
/* One sentence on where the VM stands after the request. Returns false,
 * with the sentence in message, when the request did not achieve its aim:
 * a VM this host owns that was set to power on but cannot start here. */
static bool describe_outcome(vms_t *self, const vms_waiter_t *w, const fsm_vm_t *v, const vms_record_t *r,
                             char *message, size_t cap)
{
    bool here = r && r->vm;
    bool mine = v && strcmp(v->owner, self->name) == 0;
    const char *created = w->created ? "created and " : "";
    if (w->after == AFTER_DELETE || !v) {
        snprintf(message, cap, "VM %s deleted", w->name);
    } else if (w->after == AFTER_CREATE) {
        snprintf(message, cap, "VM %s created on %s, powered off (ferryctl vm start %s)", w->name, v->owner, w->name);
    } else if (w->power == FSM_POWER_OFF) {
        snprintf(message, cap, mine ? "VM %s powered off" : "VM %s set to power off; its owner %s stops it", w->name,
                 v->owner);
    } else if (here) {
        snprintf(message, cap, "VM %s %srunning on %s", w->name, created, self->name);
    } else if (!mine) {
        snprintf(message, cap, "VM %s %sset to power on; its owner %s starts it", w->name, created, v->owner);
    } else if (r && r->start_error[0]) {
        snprintf(message, cap, "VM %s is %sset to power on, but it cannot start on %s: %s (retried every few "
                 "seconds; 'ferryctl vm stop %s' gives up)", w->name, created, self->name, r->start_error, w->name);
        return false;
    } else {
        snprintf(message, cap, "VM %s %sset to power on; it starts once this host's lease is valid", w->name, created);
    }
    return true;
}

static void answer_applied(vms_t *self, vms_waiter_t *w)
{
    const fsm_vm_t *v = fsm_vm_find(cluster_state(self->cluster), w->name);
    vms_record_t *r = vms_record_find(self, w->name);
    bool here = r && r->vm;
    char message[700];
    if (!describe_outcome(self, w, v, r, message, sizeof(message))) {
        control_complete(self->control, w->ticket, NULL, CONTROL_UNAVAILABLE, message);
        return;
    }
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    wire_pack_kv_str(&pk, "name", w->name);
    wire_pack_kv_str(&pk, "owner", v ? v->owner : "");
    wire_pack_kv_str(&pk, "power_state", v ? (v->power == FSM_POWER_ON ? "on" : "off") : "deleted");
    wire_pack_kv_bool(&pk, "running_here", here);
    wire_pack_kv_u64(&pk, "index", w->index);
    wire_pack_kv_str(&pk, "message", message);
    control_complete(self->control, w->ticket, &out, CONTROL_OK, NULL);
    msgpack_sbuffer_destroy(&out);
}

void vms_control_after_reconcile(vms_t *self)
{
    vms_waiter_t *list = self->applied;
    self->applied = NULL;
    while (list) {
        vms_waiter_t *w = list;
        list = w->next;
        if (w->after == AFTER_CREATE_START) {
            /* Created; now the second step. Not from inside Raft's callback:
             * proposing there would re-enter the node. */
            msgpack_sbuffer cmd;
            msgpack_sbuffer_init(&cmd);
            msgpack_packer pk;
            msgpack_packer_init(&pk, &cmd, msgpack_sbuffer_write);
            fsm_cmd_vm_set_power(&pk, w->name, FSM_POWER_ON);
            w->after = AFTER_POWER;
            w->power = FSM_POWER_ON;
            w->created = true;
            propose(self, w, &cmd);
            msgpack_sbuffer_destroy(&cmd);
            continue;
        }
        vms_record_t *r = vms_record_find(self, w->name);
        if (r && r->suspending) {
            /* Answer once the image is saved: a reconcile follows. */
            w->next = self->applied;
            self->applied = w;
            continue;
        }
        answer_applied(self, w);
        free(w);
    }
}

/* --- vm.create ------------------------------------------------------------------------------- */

/* Host memory the FSM has not placed yet. */
static uint64_t host_free_memory(const fsm_t *fsm, const fsm_host_t *host, uint64_t *placed, size_t *count)
{
    *placed = 0;
    *count = 0;
    for (size_t i = 0; i < fsm_vm_count(fsm); i++) {
        const fsm_vm_t *v = fsm_vm_at(fsm, i);
        if (strcmp(v->owner, host->name) == 0) {
            *placed += v->memory_bytes;
            (*count)++;
        }
    }
    return host->memory_bytes > *placed ? host->memory_bytes - *placed : 0;
}

/* The owner loads the image; when that is us, check it now. */
static int check_kernel_image(const char *path, uint64_t memory_bytes, char *err, size_t errlen)
{
    char *data = NULL;
    size_t len = 0;
    int rc = fs_read_small(path, KERNEL_CHECK_MAX_BYTES, &data, &len);
    if (rc != 0) {
        snprintf(err, errlen, "kernel %s: %s", path, rc == -EFBIG ? "larger than 64 MiB" : strerror(-rc));
        return -1;
    }
    mb_image_t img;
    char why[256];
    uint64_t low_ram = memory_bytes < (3ull << 30) ? memory_bytes : (3ull << 30);
    rc = mb_image_parse((const uint8_t *)data, len, low_ram, &img, why, sizeof(why));
    free(data);
    if (rc != 0) {
        snprintf(err, errlen, "kernel %s is not a bootable Multiboot v1 image: %s", path, why);
        return -1;
    }
    return 0;
}

/* Everything about a new VM that can be wrong, checked before proposing. */
static int check_create(vms_t *self, control_call_t *call, fsm_vm_t *spec, bool *start)
{
    const fsm_t *fsm = cluster_state(self->cluster);
    char err[512], kernel[PATH_MAX] = "", cmdline[GUEST_CMDLINE_MAX + 1] = "";
    uint64_t vcpus = 1;
    if (need_name(call, spec->name) != 0)
        return -1;
    if (vm_spec_check_name(spec->name, err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "%s", err);
    int rc = wire_get_u64(call->args, "memory_bytes", &spec->memory_bytes, err, sizeof(err));
    if (rc != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "%s", rc > 0 ? "needs 'memory_bytes'" : err);
    /* wire_get_*: 0 found, 1 absent, -1 wrong type or too long. */
    int profile_rc = 0, kernel_rc = 0, cmdline_rc = 0, host_rc = 0;
    if (wire_get_u64(call->args, "vcpus", &vcpus, err, sizeof(err)) < 0 ||
        (profile_rc = wire_get_str(call->args, "profile", spec->profile, sizeof(spec->profile), err, sizeof(err))) < 0 ||
        (kernel_rc = wire_get_str(call->args, "kernel", kernel, sizeof(kernel), err, sizeof(err))) < 0 ||
        (cmdline_rc = wire_get_str(call->args, "cmdline", cmdline, sizeof(cmdline), err, sizeof(err))) < 0 ||
        (host_rc = wire_get_str(call->args, "host", spec->owner, sizeof(spec->owner), err, sizeof(err))) < 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "%s", err);
    if (opt_bool(call, "start", start) != 0)
        return -1;
    bool has_profile = profile_rc == 0, has_kernel = kernel_rc == 0, has_host = host_rc == 0;
    if (vm_spec_check_shape(spec->memory_bytes, vcpus, err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "VM %s: %s", spec->name, err);
    spec->vcpus = (uint32_t)vcpus;
    spec->downtime_ms = self->downtime_ms;

    /* What it boots: a profile of the bundled kernel (idle by default) or a
     * kernel of the user's. */
    if (has_kernel && has_profile)
        return control_fail(call, CONTROL_BAD_REQUEST, "give a profile or a kernel, not both");
    if (cmdline_rc == 0 && !has_kernel)
        return control_fail(call, CONTROL_BAD_REQUEST, "a command line goes with a custom kernel (--kernel)");
    if (has_kernel && vm_spec_encode_kernel(kernel, cmdline, spec->profile, err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "VM %s: %s", spec->name, err);
    if (!has_kernel && !spec->profile[0])
        snprintf(spec->profile, sizeof(spec->profile), "idle");
    vm_boot_t boot;
    if (vm_spec_decode(spec->profile, spec->memory_bytes, &boot, err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "VM %s: %s", spec->name, err);

    const fsm_vm_t *existing = fsm_vm_find(fsm, spec->name);
    if (existing)
        return control_fail(call, CONTROL_CONFLICT, "a VM named '%s' exists already (owner %s)", spec->name,
                            existing->owner[0] ? existing->owner : "none");

    /* Where it goes: --host, or this agent. */
    if (!has_host)
        snprintf(spec->owner, sizeof(spec->owner), "%s", self->name);
    const fsm_host_t *host = fsm_host_find(fsm, spec->owner);
    if (!host) {
        if (strcmp(spec->owner, self->name) == 0)
            return control_fail(call, CONTROL_UNAVAILABLE, "this agent (%s) is not registered in the cluster yet; "
                                "retry in a moment", self->name);
        char known[256] = "";
        for (size_t i = 0; i < fsm_host_count(fsm); i++) {
            size_t used = strlen(known);
            snprintf(known + used, sizeof(known) - used, "%s%s", i ? ", " : "", fsm_host_at(fsm, i)->name);
        }
        return control_fail(call, CONTROL_NOT_FOUND, "no host named '%s' in the cluster (hosts: %s)", spec->owner,
                            known);
    }
    uint64_t placed;
    size_t count;
    uint64_t free_bytes = host_free_memory(fsm, host, &placed, &count);
    if (spec->memory_bytes > free_bytes) {
        char need[32], avail[32], total[32], used[32];
        return control_fail(call, CONTROL_CONFLICT,
                            "host %s has too little memory for VM %s: it needs %s, %s of the host's %s are free "
                            "(%zu VM%s placed there use%s %s)", host->name, spec->name,
                            vm_spec_bytes(spec->memory_bytes, need, sizeof(need)),
                            vm_spec_bytes(free_bytes, avail, sizeof(avail)),
                            vm_spec_bytes(host->memory_bytes, total, sizeof(total)), count, count == 1 ? "" : "s",
                            count == 1 ? "s" : "",
                            vm_spec_bytes(placed, used, sizeof(used)));
    }
    if (boot.custom_kernel && strcmp(spec->owner, self->name) == 0 &&
        check_kernel_image(boot.kernel_path, spec->memory_bytes, err, sizeof(err)) != 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "VM %s: %s", spec->name, err);
    return 0;
}

static int handle_create(void *ctx, control_call_t *call)
{
    vms_t *self = ctx;
    fsm_vm_t spec = { 0 };
    bool start = false;
    if (check_create(self, call, &spec, &start) != 0)
        return -1;
    vms_waiter_t *w = waiter_new(self, call, start ? AFTER_CREATE_START : AFTER_CREATE, spec.name);
    if (!w)
        return control_fail(call, CONTROL_INTERNAL, "out of memory");
    msgpack_sbuffer cmd;
    msgpack_sbuffer_init(&cmd);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &cmd, msgpack_sbuffer_write);
    fsm_cmd_vm_create(&pk, &spec);
    propose(self, w, &cmd);
    msgpack_sbuffer_destroy(&cmd);
    return CONTROL_DEFERRED;
}

/* --- vm.start, vm.stop, vm.delete, vm.reset ----------------------------------------------------- */

static int handle_start(void *ctx, control_call_t *call)
{
    vms_t *self = ctx;
    char name[FSM_NAME_MAX];
    const fsm_vm_t *v = need_vm(self, call, name);
    if (!v)
        return -1;
    if (!v->owner[0])
        return control_fail(call, CONTROL_CONFLICT, "VM %s has no host to run on", name);
    return propose_power(self, call, name, FSM_POWER_ON);
}

/* vm.stop {name, suspend?}: with suspend, the owner saves the VM's memory
 * and state to its image first (vms_suspend.c); a later start resumes it,
 * here or wherever a cold migration took the image. */
static int handle_stop(void *ctx, control_call_t *call)
{
    vms_t *self = ctx;
    char name[FSM_NAME_MAX];
    bool suspend;
    const fsm_vm_t *v = need_vm(self, call, name);
    if (!v || opt_bool(call, "suspend", &suspend) != 0)
        return -1;
    if (suspend) {
        vms_record_t *r = vms_record_find(self, name);
        if (!r || !r->vm)
            return control_fail(call, CONTROL_CONFLICT, "VM %s does not run on %s: suspend it on its owner (%s)",
                                name, self->name, v->owner[0] ? v->owner : "none");
        r->suspend_on_stop = true;
    }
    return propose_power(self, call, name, FSM_POWER_OFF);
}

static int handle_delete(void *ctx, control_call_t *call)
{
    vms_t *self = ctx;
    char name[FSM_NAME_MAX];
    const fsm_vm_t *v = need_vm(self, call, name);
    if (!v)
        return -1;
    if (v->power == FSM_POWER_ON)
        return control_fail(call, CONTROL_CONFLICT, "VM %s is powered on: stop it first (ferryctl vm stop %s)", name,
                            name);
    vms_waiter_t *w = waiter_new(self, call, AFTER_DELETE, name);
    if (!w)
        return control_fail(call, CONTROL_INTERNAL, "out of memory");
    msgpack_sbuffer cmd;
    msgpack_sbuffer_init(&cmd);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &cmd, msgpack_sbuffer_write);
    fsm_cmd_vm_delete(&pk, name);
    propose(self, w, &cmd);
    msgpack_sbuffer_destroy(&cmd);
    return CONTROL_DEFERRED;
}

/* Fails the call with where the VM is instead, when it does not run here. */
static vms_record_t *need_local(vms_t *self, control_call_t *call, const fsm_vm_t *v, const char *what)
{
    vms_record_t *r = vms_record_find(self, v->name);
    if (r && r->vm)
        return r;
    if (strcmp(v->owner, self->name) != 0)
        control_fail(call, CONTROL_CONFLICT, "VM %s runs on host %s, not on %s: %s it through that host's agent",
                     v->name, v->owner[0] ? v->owner : "(none)", self->name, what);
    else if (v->power != FSM_POWER_ON)
        control_fail(call, CONTROL_CONFLICT, "VM %s is powered off", v->name);
    else
        control_fail(call, CONTROL_CONFLICT, "VM %s is not running on %s: %s", v->name, self->name,
                     r && r->start_error[0] ? r->start_error : "this host's lease is not valid");
    return NULL;
}

static int handle_reset(void *ctx, control_call_t *call)
{
    vms_t *self = ctx;
    char name[FSM_NAME_MAX], err[256] = "";
    const fsm_vm_t *v = need_vm(self, call, name);
    if (!v)
        return -1;
    vms_record_t *r = need_local(self, call, v, "reset");
    if (!r)
        return -1;
    if (vms_reset_local(self, r, err, sizeof(err)) != 0) {
        vms_event(self, LOG_LEVEL_ERROR, name, "reset", "reset by an administrator failed: %s", err);
        return control_fail(call, CONTROL_INTERNAL, "VM %s: reset failed: %s", name, err);
    }
    vms_event(self, LOG_LEVEL_INFO, name, "reset", "reset by an administrator");
    msgpack_pack_map(call->result, 2);
    wire_pack_kv_str(call->result, "name", name);
    wire_pack_kv_str(call->result, "message", "reset: the guest reboots");
    return 0;
}

/* --- vm.console ------------------------------------------------------------------------------------ */

/* Console text for a terminal and for JSON: printable ASCII, newlines, tabs. */
static void sanitize(char *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)bytes[i];
        if (c == '\r')
            bytes[i] = ' ';
        else if ((c < 0x20 && c != '\n' && c != '\t') || c >= 0x7f)
            bytes[i] = '?';
    }
}

/* Serves the VM's console log file on this host: every byte the guest
 * printed here, across resets and power cycles. A cursor is a file offset. */
static int handle_console(void *ctx, control_call_t *call)
{
    vms_t *self = ctx;
    char name[FSM_NAME_MAX], err[160], path[PATH_MAX];
    const fsm_vm_t *v = need_vm(self, call, name);
    if (!v)
        return -1;
    uint64_t cursor = 0, max_bytes = CONSOLE_TAIL_BYTES;
    int has_cursor = wire_get_u64(call->args, "cursor", &cursor, err, sizeof(err));
    if (has_cursor < 0 || wire_get_u64(call->args, "max_bytes", &max_bytes, err, sizeof(err)) < 0)
        return control_fail(call, CONTROL_BAD_REQUEST, "%s", err);
    if (max_bytes == 0 || max_bytes > CONSOLE_MAX_BYTES)
        max_bytes = CONSOLE_MAX_BYTES;
    vms_record_t *r = vms_record_find(self, name);
    if (!r && strcmp(v->owner, self->name) != 0)
        return control_fail(call, CONTROL_CONFLICT, "VM %s runs on host %s: its console is on that host's agent",
                            name, v->owner[0] ? v->owner : "(none)");
    if (vms_path(self, name, "console.log", path, sizeof(path)) != 0)
        return control_fail(call, CONTROL_INTERNAL, "console log path too long");

    uint64_t size = 0, start = 0;
    char *data = NULL;
    size_t got = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        struct stat sb;
        if (fstat(fd, &sb) == 0)
            size = (uint64_t)sb.st_size;
        if (has_cursor == 0)
            start = cursor <= size ? cursor : 0;   /* beyond the end: a new log */
        else
            start = size > max_bytes ? size - max_bytes : 0;
        size_t want = (size_t)(size - start < max_bytes ? size - start : max_bytes);
        data = malloc(want + 1);
        if (data) {
            ssize_t n = pread(fd, data, want, (off_t)start);
            got = n > 0 ? (size_t)n : 0;
            sanitize(data, got);
        }
        close(fd);
    }
    msgpack_packer *pk = call->result;
    msgpack_pack_map(pk, 6);
    wire_pack_kv_str(pk, "name", name);
    wire_pack_kv_str(pk, "host", self->name);
    wire_pack_kv_bool(pk, "running_here", r && (r->vm || r->migrating_out));
    wire_pack_kv_u64(pk, "start", start);
    wire_pack_kv_u64(pk, "cursor", start + got);
    wire_pack_str(pk, "data");
    msgpack_pack_str(pk, got);
    msgpack_pack_str_body(pk, data ? data : "", got);
    free(data);
    return 0;
}

/* --- registration ------------------------------------------------------------------------------------ */

void vms_control_register(vms_t *self)
{
    control_register(self->control, "vm.create", handle_create, self);
    control_register(self->control, "vm.delete", handle_delete, self);
    control_register(self->control, "vm.start", handle_start, self);
    control_register(self->control, "vm.stop", handle_stop, self);
    control_register(self->control, "vm.reset", handle_reset, self);
    control_register(self->control, "vm.list", handle_list, self);
    control_register(self->control, "vm.show", handle_show, self);
    control_register(self->control, "vm.events", handle_events, self);
    control_register(self->control, "vm.console", handle_console, self);
}
