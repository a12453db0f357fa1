/* vms_suspend.c - vm stop --suspend: the VM's memory and state go to its
 * image (migration/image.h) on a worker thread, because writing and
 * fsyncing hundreds of megabytes must not stall the loop that carries
 * Raft's heartbeats.
 *
 * Reconciliation hands the stopping VM over (vms_suspend_begin); the
 * record is marked migrating, so nothing else touches it; the worker pauses
 * the VM and saves it; a timer on the loop collects the worker, destroys
 * the VM and reconciles, which answers the waiting vm.stop. A later start
 * resumes from the image (start_local in vms.c), on this host or on the one
 * a cold migration moved the image to. */
#include "agent/vms_internal.h"
#include "agent/vm_spec.h"
#include "migration/image.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define SUSPEND_POLL_MS 20

typedef struct vms_suspend {
    struct vms_suspend *next;
    char name[FSM_NAME_MAX];
    vm_t *vm;
    uint32_t vcpus;
    uint64_t memory_bytes;
    char cmdline[GUEST_CMDLINE_MAX + 1];
    char dir[PATH_MAX];
    pthread_t thread;
    atomic_bool done;
    int rc;
    char err[256];
    int64_t started_ms;
} vms_suspend_t;

static void *suspend_worker(void *arg)
{
    vms_suspend_t *job = arg;
    vm_config_t cfg = { .name = job->name, .memory_bytes = job->memory_bytes, .vcpus = job->vcpus,
                        .cmdline = job->cmdline };
    job->rc = vm_pause(job->vm);
    if (job->rc)
        snprintf(job->err, sizeof(job->err), "cannot pause the VM");
    else
        job->rc = image_save(job->vm, &cfg, job->dir, job->err, sizeof(job->err));
    atomic_store(&job->done, true);
    return NULL;
}

static void finish(vms_t *self, vms_suspend_t *job)
{
    pthread_join(job->thread, NULL);
    vms_record_t *r = vms_record_find(self, job->name);
    if (job->rc == 0)
        vms_event(self, LOG_LEVEL_INFO, job->name, "suspended", "memory and state saved to %s in %lld ms; "
                  "a start resumes it", job->dir, (long long)(zclock_mono() - job->started_ms));
    else
        vms_event(self, LOG_LEVEL_ERROR, job->name, "suspend-failed", "powered off without an image: %s", job->err);
    vm_destroy(&job->vm);
    if (r) {
        r->migrating = r->suspending = false;
        r->suspend_on_stop = false;
    }
    free(job);
}

static int on_poll(zloop_t *loop, int timer_id, void *arg)
{
    vms_t *self = arg;
    vms_suspend_t **link = &self->suspends;
    while (*link) {
        vms_suspend_t *job = *link;
        if (atomic_load(&job->done)) {
            *link = job->next;
            finish(self, job);
        } else {
            link = &job->next;
        }
    }
    if (!self->suspends) {
        zloop_timer_end(self->loop, self->suspend_timer);
        self->suspend_timer = -1;
    }
    vms_on_apply(self);   /* reconcile, and answer the vm.stop */
    return 0;
}

void vms_suspend_begin(vms_t *self, vms_record_t *r, const fsm_vm_t *v)
{
    vms_suspend_t *job = calloc(1, sizeof(*job));
    vm_boot_t boot;
    char err[256];
    if (!job || vms_image_dir(self, v->name, job->dir, sizeof(job->dir)) != 0
        || vm_spec_decode(v->profile, v->memory_bytes, &boot, err, sizeof(err)) != 0) {
        free(job);
        vms_event(self, LOG_LEVEL_ERROR, v->name, "suspend-failed", "cannot set up the image; powering off");
        vm_destroy(&r->vm);
        r->suspend_on_stop = false;
        return;
    }
    snprintf(job->name, sizeof(job->name), "%s", v->name);
    snprintf(job->cmdline, sizeof(job->cmdline), "%s", boot.cmdline);
    job->vcpus = v->vcpus;
    job->memory_bytes = v->memory_bytes;
    job->started_ms = zclock_mono();
    job->vm = r->vm;
    r->vm = NULL;
    r->migrating = r->suspending = true;
    if (pthread_create(&job->thread, NULL, suspend_worker, job) != 0) {
        r->vm = job->vm;
        r->migrating = r->suspending = false;
        free(job);
        vms_event(self, LOG_LEVEL_ERROR, v->name, "suspend-failed", "cannot start a worker; powering off");
        vm_destroy(&r->vm);
        r->suspend_on_stop = false;
        return;
    }
    job->next = self->suspends;
    self->suspends = job;
    if (self->suspend_timer < 0)
        self->suspend_timer = zloop_timer(self->loop, SUSPEND_POLL_MS, 0, on_poll, self);
    vms_event(self, LOG_LEVEL_INFO, v->name, "suspending", "saving memory and state to %s", job->dir);
}

void vms_suspend_join_all(vms_t *self)
{
    while (self->suspends) {
        vms_suspend_t *job = self->suspends;
        self->suspends = job->next;
        finish(self, job);
    }
    if (self->suspend_timer >= 0) {
        zloop_timer_end(self->loop, self->suspend_timer);
        self->suspend_timer = -1;
    }
}
