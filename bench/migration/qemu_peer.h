/* qemu_peer.h - the same guest image live-migrated by QEMU over loopback,
 * as the side-by-side anchor of bench/migration.
 *
 * Two qemu-system-x86_64 processes: a source booted with -kernel, and a
 * destination started with -incoming tcp:127.0.0.1:PORT. The source is
 * driven through QMP on a unix socket: migrate-set-parameters
 * (max-bandwidth, downtime-limit), migrate, then query-migrate until it
 * completes; the destination's query-status must then say "running". */
#ifndef FERRY_BENCH_QEMU_PEER_H
#define FERRY_BENCH_QEMU_PEER_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double downtime_ms;        /* QEMU's own figure */
    double total_ms;           /* QEMU's total-time */
    uint64_t bytes;            /* ram.transferred */
    uint64_t passes;           /* ram.dirty-sync-count */
} qemu_result_t;

/* "QEMU 7.2.22" or the reason QEMU cannot run here (returns -1). */
int qemu_peer_available(char *name, size_t namelen, char *why, size_t whylen);

/* Boots the image with cmdline, lets it run warmup_s seconds, migrates it.
 * 0, or -1 with why filled. */
int qemu_peer_migrate(const char *image, uint64_t memory_bytes, const char *cmdline,
                      double warmup_s, uint64_t downtime_limit_ms, qemu_result_t *out,
                      char *why, size_t whylen);

#endif
