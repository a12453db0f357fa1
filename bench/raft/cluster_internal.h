/* cluster_internal.h - what a system (ferry, etcd) supplies to cluster.c.
 * cluster.c owns the processes; the system owns configs and connections. */
#ifndef BENCH_RAFT_CLUSTER_INTERNAL_H
#define BENCH_RAFT_CLUSTER_INTERNAL_H

#include "cluster.h"

typedef struct {
    const char *system;
    /* The command line of `member` (argv[0] a path) and its log file. */
    char *const *(*command)(void *impl, int member);
    const char *(*log)(void *impl, int member);
    /* The member's process went away: drop connections to it. */
    void (*forget)(void *impl, int member);
    int (*status)(void *impl, int member, member_status_t *st);
    int (*member_of)(void *impl, const char *leader);
    void *(*writer_new)(void *impl, int member);
    int (*put)(void *writer, const char *key, const char *value, char *err, size_t errlen);
    void (*writer_destroy)(void *writer);
    void (*destroy)(void *impl);
} cluster_ops_t;

/* Wraps a prepared system; takes ownership of `impl`. */
cluster_t *cluster_wrap(const cluster_ops_t *ops, void *impl, int size);

#endif
