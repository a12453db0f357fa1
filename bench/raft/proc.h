/* proc.h - child processes and ports for the Raft benchmark.
 *
 * Every child is started with PR_SET_PDEATHSIG = SIGKILL, so that it dies
 * with the benchmark even when the benchmark itself is killed: a run never
 * leaves agents or etcd members behind. */
#ifndef BENCH_RAFT_PROC_H
#define BENCH_RAFT_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "common/rng.h"

/* Starts argv[0] (a path) with stdin from /dev/null and stdout and stderr
 * appended to `log_path`. Returns the pid, or -1. Call from the main thread
 * only: the death signal follows the thread that forked. */
pid_t proc_spawn(char *const argv[], const char *log_path);

/* proc_spawn() and wait: the child's exit status, or -1 if it did not exit
 * normally within `timeout_s` (it is then killed). */
int proc_run(char *const argv[], const char *log_path, double timeout_s);

/* SIGKILL and reap. Returns 0, or -1 if `pid` is not a child. */
int proc_kill(pid_t pid);

/* True while `pid` (a child) has not exited; reaps it if it has. */
bool proc_alive(pid_t pid);

/* A TCP port on 127.0.0.1 that nothing listens on and that is not among
 * `taken` (the ports of a member that is down for a moment must stay its
 * own), from 20000-31999: below the kernel's ephemeral range, so that no
 * outgoing connection takes it either. Returns 0 when none was found. */
int proc_free_port(const int *taken, size_t n_taken, rng_t *rng);

/* Copies a small file (a key). Returns 0 or -1. */
int proc_copy_file(const char *from, const char *to);

/* Prints the last `lines` (at most 255) lines of a child's log to stderr,
 * for a failure report: the scratch directory is removed afterwards. */
void proc_log_tail(const char *path, int lines);

/* Monotonic seconds. */
double proc_now(void);
void proc_sleep(double seconds);

#endif
