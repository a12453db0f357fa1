/* cluster.h - one Raft cluster under test on loopback: ferry agents or etcd
 * members behind one face, so that each measurement is written once.
 *
 *   cluster_t *c = cluster_ferry_new(&opts, err, sizeof err);
 *   cluster_start_all(c);
 *   member_status_t st;
 *   cluster_status(c, 0, &st);              // kept connection to member 0
 *   int leader = cluster_member_of(c, st.leader);
 *   cluster_kill(c, leader);                // SIGKILL
 *   cluster_start(c, leader);               // same state dir, same ports
 *   cluster_destroy(&c);                    // kills what still runs
 *
 * Members are numbered 0..size-1. Status and writes go over connections that
 * stay open between calls, so a measurement is not dominated by set-up. */
#ifndef BENCH_RAFT_CLUSTER_H
#define BENCH_RAFT_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/rng.h"

#define CLUSTER_MAX_MEMBERS 9

typedef struct {
    char leader[64];     /* the leader this member follows, as cluster_member_of() takes it; "" = none */
    uint64_t term;
    uint64_t applied;    /* index of the last entry applied to the state machine */
    int voters;          /* voters this member reports when it leads; -1 when unknown */
} member_status_t;

typedef struct {
    const char *binary;  /* ferryd, or etcd */
    const char *workdir; /* an empty directory for state dirs, configs and logs */
    int size;            /* 1..CLUSTER_MAX_MEMBERS */
    rng_t *rng;          /* picks ports */
    const char *log_level;   /* ferry agents' [agent] log_level; NULL: their default */
} cluster_options_t;

typedef struct cluster cluster_t;
typedef struct cluster_writer cluster_writer_t;

/* Prepares state dirs and configs (ferryd init); starts nothing. */
cluster_t *cluster_ferry_new(const cluster_options_t *opts, char *err, size_t errlen);
cluster_t *cluster_etcd_new(const cluster_options_t *opts, char *err, size_t errlen);
void cluster_destroy(cluster_t **self_p);

const char *cluster_system(const cluster_t *self);   /* "ferry" or "etcd" */
int cluster_size(const cluster_t *self);
const char *cluster_log(const cluster_t *self, int member);

int cluster_start(cluster_t *self, int member);
int cluster_start_all(cluster_t *self);
/* SIGKILL, then reaps it. The status connection to it is dropped. */
int cluster_kill(cluster_t *self, int member);
bool cluster_running(cluster_t *self, int member);

/* Asks `member` for its view over the kept status connection; 0 or -1. */
int cluster_status(cluster_t *self, int member, member_status_t *st);
/* The member a status's `leader` names, or -1. */
int cluster_member_of(cluster_t *self, const char *leader);

/* A connection of its own to `member`, for writes; one thread uses it. */
cluster_writer_t *cluster_writer_new(cluster_t *self, int member);
/* Sets `key` to `value` and waits until it is committed; 0 or -1. */
int cluster_put(cluster_writer_t *writer, const char *key, const char *value, char *err, size_t errlen);
void cluster_writer_destroy(cluster_writer_t **writer_p);

#endif
