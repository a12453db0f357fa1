/* stall_probe.h - what the machine does to a 100 ms timer while we watch.
 *
 * Two threads: one writes 512 bytes to a file in `dir` and fdatasync()s it
 * every 200 ms (the same filesystem the Raft logs sync to); the other
 * sleeps 10 ms at a time and notes how late it wakes (CPU starvation on a
 * shared machine). A stall longer than an election timeout explains an
 * election that no fault caused. */
#ifndef BENCH_RAFT_STALL_PROBE_H
#define BENCH_RAFT_STALL_PROBE_H

typedef struct {
    int syncs;
    double sync_max_ms;
    int syncs_over_100ms;
    double wake_late_max_ms;
    int wakes_late_over_100ms;
} stall_stats_t;

typedef struct stall_probe stall_probe_t;

/* NULL if the file or the threads cannot be made. */
stall_probe_t *stall_probe_start(const char *dir);
/* Stops the threads, removes the file and hands back what was seen. */
void stall_probe_stop(stall_probe_t **self_p, stall_stats_t *out);

#endif
