/* args.h - the workload kernel's command line, parsed.
 *
 *   profile=web hot=64M rate=200M
 *   profile=db wss=256M rate=100M seed=7
 *   profile=stream rate=500M
 *   profile=test pages=64
 *
 * The same parser runs inside the guest (freestanding: no libc here) and in
 * the VMM, which rejects a bad command line before it boots anything. Sizes
 * take K, M, G suffixes (binary: 1M = 1 MiB); a rate is bytes per second.
 * docs/guest.md lists every parameter. */
#ifndef FERRY_GUEST_ARGS_H
#define FERRY_GUEST_ARGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GUEST_CMDLINE_MAX 1024  /* longest command line accepted, bytes */

typedef struct {
    uint32_t profile;        /* GUEST_PROFILE_* */
    uint64_t hot_bytes;      /* web: the hot set */
    uint64_t wss_bytes;      /* db: working set; stream: region (0 = whole arena) */
    uint64_t rate_bytes;     /* bytes dirtied per second (0 = as fast as possible) */
    uint64_t seed;           /* PRNG seed for page choice */
    uint32_t tsc_khz;        /* 0 = calibrate */
    uint32_t heartbeat_ms;   /* heartbeat period */
    uint32_t print_ms;       /* status line on the console every so often; 0 = never */
    uint32_t verify_rate;    /* sweep speed, units/s: a table entry 1, a written page 16; 0 = no sweeps */
    bool verify_auto;        /* verify= not given: the guest sizes it to ~5% of its vCPU */
    uint32_t test_pages;     /* test: pages per round */
} guest_args_t;

/* Fills *args from the command line (len bytes, need not be NUL-terminated).
 * A first token without '=' is the image path that boot loaders prepend and is
 * skipped. Returns 0, or -1 with a message naming the offending token in err. */
int guest_args_parse(const char *cmdline, size_t len, guest_args_t *args,
                     char *err, size_t errlen);

/* Checks the profile's sizes against the pages the profile may use.
 * Returns 0, or -1 with a message in err. */
int guest_args_check_arena(const guest_args_t *args, uint64_t arena_bytes,
                           char *err, size_t errlen);

/* A lower bound on the arena the guest will find in memory_bytes of RAM:
 * RAM minus the kernel, its tables and the low megabyte. The VMM checks a
 * command line against it before booting. */
uint64_t guest_arena_estimate(uint64_t memory_bytes);

/* "idle", "web", ... or "?" */
const char *guest_profile_name(uint32_t profile);

#endif
