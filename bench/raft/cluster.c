/* cluster.c - see cluster.h: the processes, and dispatch to the system. */
#include "cluster_internal.h"
#include "proc.h"

#include <stdlib.h>

struct cluster {
    const cluster_ops_t *ops;
    void *impl;
    int size;
    pid_t pids[CLUSTER_MAX_MEMBERS];    /* 0 while not running */
};

struct cluster_writer {
    const cluster_ops_t *ops;
    void *impl;
};

cluster_t *cluster_wrap(const cluster_ops_t *ops, void *impl, int size)
{
    cluster_t *self = calloc(1, sizeof(*self));
    if (!self) {
        ops->destroy(impl);
        return NULL;
    }
    self->ops = ops;
    self->impl = impl;
    self->size = size;
    return self;
}

void cluster_destroy(cluster_t **self_p)
{
    cluster_t *self = *self_p;
    if (!self)
        return;
    for (int i = 0; i < self->size; i++)
        cluster_kill(self, i);
    self->ops->destroy(self->impl);
    free(self);
    *self_p = NULL;
}

const char *cluster_system(const cluster_t *self) { return self->ops->system; }
int cluster_size(const cluster_t *self) { return self->size; }
const char *cluster_log(const cluster_t *self, int member) { return self->ops->log(self->impl, member); }

int cluster_start(cluster_t *self, int member)
{
    if (member < 0 || member >= self->size || self->pids[member])
        return -1;
    self->ops->forget(self->impl, member);
    pid_t pid = proc_spawn(self->ops->command(self->impl, member), self->ops->log(self->impl, member));
    if (pid < 0)
        return -1;
    self->pids[member] = pid;
    return 0;
}

int cluster_start_all(cluster_t *self)
{
    for (int i = 0; i < self->size; i++)
        if (cluster_start(self, i) != 0)
            return -1;
    return 0;
}

int cluster_kill(cluster_t *self, int member)
{
    if (member < 0 || member >= self->size || !self->pids[member])
        return -1;
    int rc = proc_kill(self->pids[member]);
    self->pids[member] = 0;
    self->ops->forget(self->impl, member);
    return rc;
}

bool cluster_running(cluster_t *self, int member)
{
    if (member < 0 || member >= self->size || !self->pids[member])
        return false;
    if (proc_alive(self->pids[member]))
        return true;
    self->pids[member] = 0;    /* exited on its own (and reaped) */
    return false;
}

int cluster_status(cluster_t *self, int member, member_status_t *st)
{
    if (member < 0 || member >= self->size)
        return -1;
    return self->ops->status(self->impl, member, st);
}

int cluster_member_of(cluster_t *self, const char *leader)
{
    return leader[0] ? self->ops->member_of(self->impl, leader) : -1;
}

cluster_writer_t *cluster_writer_new(cluster_t *self, int member)
{
    cluster_writer_t *writer = calloc(1, sizeof(*writer));
    if (!writer)
        return NULL;
    writer->ops = self->ops;
    writer->impl = self->ops->writer_new(self->impl, member);
    if (!writer->impl) {
        free(writer);
        return NULL;
    }
    return writer;
}

int cluster_put(cluster_writer_t *writer, const char *key, const char *value, char *err, size_t errlen)
{
    return writer->ops->put(writer->impl, key, value, err, errlen);
}

void cluster_writer_destroy(cluster_writer_t **writer_p)
{
    cluster_writer_t *writer = *writer_p;
    if (!writer)
        return;
    writer->ops->writer_destroy(writer->impl);
    free(writer);
    *writer_p = NULL;
}
