/* qemu_peer.h - the same guest image live-migrated by QEMU over loopback,
 * as the side-by-side anchor of bench/migration.
 *
 * Two qemu-system-x86_64 processes: a source booted with -kernel, and a
 * destination started with -incoming tcp:127.0.0.1:PORT. The source is
 * driven through QMP on a unix socket: migrate-set-capabilities
 * (auto-converge, when asked), migrate-set-parameters (max-bandwidth,
 * downtime-limit), migrate, then query-migrate until it completes; the
 * destination's query-status must then say "running". A migration still
 * running after give_up_s is cancelled (migrate_cancel), and the source must
 * then still be running the guest. */
#ifndef FERRY_BENCH_QEMU_PEER_H
#define FERRY_BENCH_QEMU_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t downtime_limit_ms;   /* downtime-limit */
    uint64_t max_bandwidth_Bps;   /* max-bandwidth; 0: 64 GiB/s, no cap in practice */
    bool auto_converge;           /* the "auto-converge" capability (QEMU's throttle) */
    double give_up_s;             /* cancel a migration still running this long after
                                     it started (0: 600 s, then it counts as failed) */
} qemu_options_t;

typedef struct {
    bool completed;            /* false: cancelled at give_up_s, source still running */
    double downtime_ms;        /* QEMU's own figure (completed only) */
    double total_ms;           /* QEMU's total-time */
    uint64_t bytes;            /* ram.transferred */
    uint64_t passes;           /* ram.dirty-sync-count */
    double elapsed_s;          /* from migrate to completed or cancelled */
    double expected_downtime_ms;  /* QEMU's estimate at the last poll, -1 if none */
    double dirty_rate_max_Bps; /* highest ram.dirty-pages-rate seen, in bytes/s */
    unsigned throttle_max;     /* highest cpu-throttle-percentage seen */
} qemu_result_t;

/* "QEMU 7.2.22" or the reason QEMU cannot run here (returns -1). */
int qemu_peer_available(char *name, size_t namelen, char *why, size_t whylen);

/* Boots the image with cmdline, lets it run warmup_s seconds, migrates it.
 * 0 (out->completed says whether it completed or was given up), or -1 with
 * why filled. */
int qemu_peer_migrate(const char *image, uint64_t memory_bytes, const char *cmdline,
                      double warmup_s, const qemu_options_t *options, qemu_result_t *out,
                      char *why, size_t whylen);

#endif
