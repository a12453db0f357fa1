/* vms_internal.h - what vms.c (the local runtime: reconcile, measure,
 * monitor, events) and vms_control.c (the vm.* handlers) share. Not a face:
 * nothing outside agent/vms*.c includes it. */
#ifndef FERRY_AGENT_VMS_INTERNAL_H
#define FERRY_AGENT_VMS_INTERNAL_H

#include "agent/vms.h"
#include "common/log.h"
#include "consensus/fsm.h"

#include <limits.h>

#define VMS_ACTIVE_WINDOW_S 10        /* the active set covers this many seconds of writes */

/* What this agent knows about one VM it owns or has run. */
typedef struct {
    char name[FSM_NAME_MAX];
    uint64_t created_index;           /* which incarnation of the name (FSM created_index) */
    vm_t *vm;                         /* NULL: not running here */
    bool migrating;                   /* a migration thread holds it (vms_migration_lend,
                                         vms_incoming_expect): hands off */
    bool migrating_out;               /* ... as the source: the VM still runs here */
    bool suspend_on_stop;             /* vm stop --suspend: save an image when stopping */
    bool suspending;                  /* a worker saves the image now (migrating is set too) */
    bool incoming;                    /* arrived by migration; local until the FSM names
                                         this host its owner */
    char start_error[256];            /* why the last start failed; "" if it did not */
    int64_t retry_at_ms;              /* no new start attempt before this (mono ms) */

    /* measurement, while vm != NULL */
    int64_t started_ms;               /* mono */
    int64_t sample_ns;                /* last sample (mono) */
    uint64_t sample_cpu_ns;
    double cpu_percent;               /* of one host CPU over the last second */
    bool dirty_tracking;              /* the dirty log is on and ours to read */
    bool dirty_lent;                  /* a migration reads the dirty log now */
    uint64_t *dirty_bits;             /* scratch for one collect */
    uint64_t *window_bits;            /* pages written in the current window */
    size_t bitmap_words;
    int64_t window_start_ns;
    double dirty_pages_per_s;
    uint64_t active_pages;            /* pages written in the last full window */
    bool active_valid;                /* a full window has passed */
    uint64_t heartbeats_before;       /* heartbeats of earlier boots in this power-on */

    /* monitoring */
    unsigned monitor_resets;          /* in this power-on */
    bool monitor_gave_up;
} vms_record_t;

typedef struct {
    uint64_t seq;
    uint64_t time_ms;                 /* wall clock, Unix ms */
    char vm[FSM_NAME_MAX];
    char kind[24];
    char message[224];
} vms_event_t;

/* A control request whose reply waits for its command to be applied and
 * reconciled here. */
typedef enum { AFTER_CREATE, AFTER_CREATE_START, AFTER_POWER, AFTER_DELETE } vms_after_t;

typedef struct vms_waiter {
    struct vms_waiter *next;
    vms_t *vms;                       /* only on success: Raft fails pending
                                         requests after vms_destroy() */
    control_t *control;
    control_ticket_t ticket;
    vms_after_t after;
    char name[FSM_NAME_MAX];
    fsm_power_t power;                /* AFTER_POWER: asked for */
    bool created;                     /* AFTER_POWER: this request created the VM too */
    uint64_t index;                   /* the applied entry */
} vms_waiter_t;

struct vms {
    char name[FSM_NAME_MAX];
    char state_dir[PATH_MAX];
    char backend[16];
    uint32_t downtime_ms;
    uint64_t heartbeat_timeout_ms;
    cluster_t *cluster;
    control_t *control;
    zloop_t *loop;
    int tick_timer;
    int reconcile_timer;              /* one-shot; -1 when none is scheduled */
    bool lease_was_valid;

    vms_record_t **records;
    size_t record_count, record_cap;

    vms_event_t events[VMS_EVENTS_MAX];
    uint64_t event_seq;               /* events ever recorded; the ring holds the last ones */

    vms_waiter_t *applied;            /* applied, waiting for the next reconcile */
    struct vms_suspend *suspends;     /* workers saving images (vms_suspend.c) */
    int suspend_timer;                /* polls them while any runs; -1 otherwise */
};

/* vms.c */
vms_record_t *vms_record_find(vms_t *self, const char *name);
/* Records an event in the ring and logs it at `level`. */
void vms_event(vms_t *self, log_level_t level, const char *vm, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* <state_dir>/vms/NAME[/FILE]; returns 0 or -1 if it does not fit. */
int vms_path(const vms_t *self, const char *vm, const char *file, char *out, size_t cap);
/* Power-cycles a local VM and counts its heartbeats on. */
int vms_reset_local(vms_t *self, vms_record_t *r, char *err, size_t errlen);

/* vms_suspend.c: saving a stopping VM's image on a worker thread, so the
 * loop (and Raft's heartbeats) never waits for the disk. */
void vms_suspend_begin(vms_t *self, vms_record_t *r, const fsm_vm_t *v);
/* Waits for every worker (agent stopping). */
void vms_suspend_join_all(vms_t *self);

/* vms_control.c */
void vms_control_register(vms_t *self);
/* Answers the requests whose commands were applied, after a reconcile. */
void vms_control_after_reconcile(vms_t *self);

#endif
