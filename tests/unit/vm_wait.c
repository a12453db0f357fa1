/* vm_wait.c - waiting on a VM's reported status in tests, shared by the
 * KVM and process backend tests; see vm_wait.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "vm_wait.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int64_t vmt_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void vmt_nap_ms(int ms)
{
    struct timespec ts = {0, ms * 1000000L};
    nanosleep(&ts, NULL);
}

/* Polls vm_status until cond holds; fails the test after VMT_WAIT_MS. */
void vmt_wait_for(vm_t *vm, cond_fn cond, void *arg, const char *what, vm_status_t *out)
{
    int64_t deadline = vmt_now_ms() + VMT_WAIT_MS;
    vm_status_t st;
    for (;;) {
        vm_status(vm, &st);
        if (cond(vm, &st, arg))
            break;
        if (st.state == VM_STOPPED)
            fail_msg("%s: VM stopped (%s) while waiting for %s", vm_name(vm), st.stop_reason, what);
        if (vmt_now_ms() > deadline)
            fail_msg("%s: no %s within %d ms (heartbeats %llu, status %u)", vm_name(vm), what,
                     VMT_WAIT_MS, (unsigned long long)st.heartbeats_seen, st.guest_status);
        vmt_nap_ms(5);
    }
    if (out)
        *out = st;
}

bool vmt_heartbeats_at_least(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    return st->heartbeats_seen >= *(uint64_t *)arg;
}

bool vmt_counter_above(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    return st->heartbeat > *(uint32_t *)arg;
}

bool vmt_sweeps_above(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    return st->sweeps > *(uint64_t *)arg;
}

bool vmt_written_above(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    return st->pages_written > *(uint64_t *)arg;
}

bool vmt_errors_above_zero(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)vm;
    (void)arg;
    return st->check_errors > 0;
}

bool vmt_console_has(vm_t *vm, const vm_status_t *st, void *arg)
{
    (void)st;
    vmt_console_t *c = arg;
    return vmt_console_count(vm, c, c->needle) > 0;
}

unsigned vmt_console_count(vm_t *vm, vmt_console_t *c, const char *needle)
{
    size_t room = sizeof c->text - 1 - c->len;
    c->len += vm_console_read(vm, &c->cursor, c->text + c->len, room);
    c->text[c->len] = '\0';
    unsigned n = 0;
    for (const char *at = strstr(c->text, needle); at; at = strstr(at + 1, needle))
        n++;
    return n;
}

void vmt_copy_memory(vm_t *src, vm_t *dst)
{
    vm_memory_t s, d;
    vm_memory(src, &s);
    vm_memory(dst, &d);
    assert_int_equal(s.size, d.size);
    off_t at = 0;
    while (at < (off_t)s.size) {
        off_t data = lseek(s.memfd, at, SEEK_DATA);
        if (data < 0)
            break;
        off_t hole = lseek(s.memfd, data, SEEK_HOLE);
        memcpy(d.base + data, s.base + data, (size_t)(hole - data));
        at = hole;
    }
}

int vmt_list_children(pid_t *out, int cap)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[96];
        snprintf(path, sizeof path, "/proc/self/task/%.32s/children", e->d_name);
        FILE *f = fopen(path, "r");
        int pid;
        while (f && fscanf(f, "%d", &pid) == 1)
            if (n < cap)
                out[n++] = pid;
        if (f)
            fclose(f);
    }
    if (d)
        closedir(d);
    return n;
}
