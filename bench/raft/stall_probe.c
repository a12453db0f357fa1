/* stall_probe.c - see stall_probe.h. */
#include "stall_probe.h"
#include "proc.h"

#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SYNC_EVERY_S 0.2
#define WAKE_EVERY_S 0.01

struct stall_probe {
    char path[PATH_MAX];
    int fd;
    atomic_bool stop;
    pthread_t syncer, sleeper;
    stall_stats_t stats;    /* each field written by one thread only, read after join */
};

static void *sync_loop(void *arg)
{
    stall_probe_t *self = arg;
    char block[512];
    memset(block, 0x5a, sizeof(block));
    while (!atomic_load(&self->stop)) {
        double t0 = proc_now();
        if (pwrite(self->fd, block, sizeof(block), 0) == (ssize_t)sizeof(block) && fdatasync(self->fd) == 0) {
            double ms = (proc_now() - t0) * 1000.0;
            self->stats.syncs++;
            self->stats.syncs_over_100ms += ms > 100;
            if (ms > self->stats.sync_max_ms)
                self->stats.sync_max_ms = ms;
        }
        proc_sleep(SYNC_EVERY_S);
    }
    return NULL;
}

static void *sleep_loop(void *arg)
{
    stall_probe_t *self = arg;
    while (!atomic_load(&self->stop)) {
        double t0 = proc_now();
        proc_sleep(WAKE_EVERY_S);
        double late_ms = (proc_now() - t0 - WAKE_EVERY_S) * 1000.0;
        self->stats.wakes_late_over_100ms += late_ms > 100;
        if (late_ms > self->stats.wake_late_max_ms)
            self->stats.wake_late_max_ms = late_ms;
    }
    return NULL;
}

stall_probe_t *stall_probe_start(const char *dir)
{
    stall_probe_t *self = calloc(1, sizeof(*self));
    if (!self)
        return NULL;
    snprintf(self->path, sizeof(self->path), "%s/stall-probe.bin", dir);
    self->fd = open(self->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (self->fd < 0) {
        free(self);
        return NULL;
    }
    atomic_init(&self->stop, false);
    if (pthread_create(&self->syncer, NULL, sync_loop, self) != 0) {
        close(self->fd);
        unlink(self->path);
        free(self);
        return NULL;
    }
    if (pthread_create(&self->sleeper, NULL, sleep_loop, self) != 0) {
        atomic_store(&self->stop, true);
        pthread_join(self->syncer, NULL);
        close(self->fd);
        unlink(self->path);
        free(self);
        return NULL;
    }
    return self;
}

void stall_probe_stop(stall_probe_t **self_p, stall_stats_t *out)
{
    stall_probe_t *self = *self_p;
    memset(out, 0, sizeof(*out));
    if (!self)
        return;
    atomic_store(&self->stop, true);
    pthread_join(self->syncer, NULL);
    pthread_join(self->sleeper, NULL);
    *out = self->stats;
    close(self->fd);
    unlink(self->path);
    free(self);
    *self_p = NULL;
}
