/* slow_sync.c - an LD_PRELOAD shim for bench/raft/disk_stall_repro.sh: makes
 * every Nth fdatasync() of a process take M ms longer (after the real one),
 * as a busy disk does now and then. Not linked into anything; the script
 * compiles it with cc.
 *
 *   FERRY_SLOW_SYNC_MS=150 FERRY_SLOW_SYNC_EVERY=3 LD_PRELOAD=./slow_sync.so ferryd ...
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static unsigned long calls;

int fdatasync(int fd)
{
    static int (*real_fdatasync)(int);
    if (!real_fdatasync)
        real_fdatasync = (int (*)(int))dlsym(RTLD_NEXT, "fdatasync");
    int rc = real_fdatasync(fd);
    const char *ms = getenv("FERRY_SLOW_SYNC_MS"), *every = getenv("FERRY_SLOW_SYNC_EVERY");
    unsigned long n = every ? strtoul(every, NULL, 10) : 1;
    if (ms && n && __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED) % n == 0) {
        long delay = strtol(ms, NULL, 10);
        struct timespec ts = { delay / 1000, (delay % 1000) * 1000000L };
        nanosleep(&ts, NULL);
    }
    return rc;
}
