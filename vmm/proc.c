/* proc.c - the process backend: the VM is a guest process running the
 * workload kernel's own profile code (vmm/proc_guest.c) on guest memory.
 *
 *   - The guest process is forked from the VMM (vmm/proc_child.c). It maps
 *     the VM's memfd at a fixed address and talks to the VMM over a
 *     SOCK_SEQPACKET socketpair: console bytes and report-register writes go
 *     up, mailbox reads are answered. One I/O thread per VM handles them,
 *     as a KVM vCPU thread handles port I/O exits.
 *   - Pause is SIGSTOP: it returns once the kernel says the process stopped
 *     and every message it sent before has been handled. Resume is SIGCONT.
 *   - Dirty pages: the guest creates a userfaultfd with async write-protect
 *     on guest memory and hands it over (SCM_RIGHTS). Enabling the log
 *     write-protects all of memory; collecting runs the PAGEMAP_SCAN ioctl on
 *     /proc/PID/pagemap for written pages, write-protecting them again in the
 *     same walk, and keeps them in a bitmap until cleared.
 *   - State: the guest's registers are its boot and state pages, which are
 *     guest memory; the saved blob (vmm/proc_state.h) holds the rest.
 *   - Throttle: a shared page tells the guest what share of each slice to
 *     sleep.
 * Needs Linux 6.7 for the dirty log; without it the VM runs and
 * vm_dirty_log_enable says why it cannot. */
#include "vmm/proc_protocol.h"
#include "vmm/proc_state.h"
#include "vmm/proc_uapi.h"
#include "vmm/vm_backend.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define SETUP_TIMEOUT_MS 30000  /* the guest answers MAP in well under this, even under valgrind */
#define SCAN_REGIONS 512

typedef struct {
    vm_t *vm;
    pid_t pid;                 /* 0: no guest process */
    int pidfd;                 /* -1 where pidfd_open is missing (valgrind): use pid */
    int sock;                  /* our end of the socketpair */
    proc_shared_t *shared;

    bool mapped;               /* the guest mapped memory at base */
    uint64_t base;
    bool go_sent;
    bool resume;               /* GO enters the loop (state loaded) instead of booting */
    int64_t clock_offset;      /* guest clock = CLOCK_MONOTONIC + this */

    pthread_t io_thread;
    bool io_started;
    pthread_mutex_t io_lock;   /* held while a message is handled */
    atomic_bool quitting;      /* we are ending the guest: its exit is no news */
    char guest_stop[96];       /* what the guest said when it stopped the machine */

    int uffd;                  /* -1: no dirty log, see no_dirty_why */
    int pagemap_fd;
    char no_dirty_why[192];
    bool dirty_on;
    uint64_t *dirty;           /* pages written and not yet cleared */
} proc_machine_t;

static proc_machine_t *machine_of(const vm_t *vm) { return vm->impl; }

static int64_t monotonic_ns(void) { return vm_now_ns(); }

static uint64_t guest_first_addr(const proc_machine_t *m) { return m->base + PROC_LOW_BYTES; }
static uint64_t guest_end_addr(const proc_machine_t *m) { return m->base + m->vm->memory_bytes; }

/* --- messages ------------------------------------------------------------------- */

static int send_msg(proc_machine_t *m, uint32_t kind, const void *payload, size_t bytes)
{
    uint8_t buf[sizeof(proc_msg_header_t) + PROC_MSG_MAX_PAYLOAD];
    proc_msg_header_t h = {kind, (uint32_t)bytes};
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, payload, bytes);
    while (send(m->sock, buf, sizeof h + bytes, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            return -errno;
    return 0;
}

static void copy_text(char *dst, size_t cap, const uint8_t *src, size_t n)
{
    size_t k = n < cap - 1 ? n : cap - 1;
    for (size_t i = 0; i < k; i++)
        dst[i] = src[i] >= 0x20 && src[i] < 0x7f ? (char)src[i] : '?';
    dst[k] = '\0';
}

/* One message from the running guest. The guest runs our code, but on
 * memory that may have come from anywhere: every length is checked. */
static void handle_message(proc_machine_t *m, const uint8_t *buf, size_t n)
{
    proc_msg_header_t h;
    if (n < sizeof h)
        return;
    memcpy(&h, buf, sizeof h);
    const uint8_t *p = buf + sizeof h;
    if (h.bytes != n - sizeof h)
        return;
    switch (h.kind) {
    case PROC_MSG_OUT:
        for (size_t at = 0; at + sizeof(proc_port_write_t) <= h.bytes; at += sizeof(proc_port_write_t)) {
            proc_port_write_t w;
            memcpy(&w, p + at, sizeof w);
            if (w.port <= UINT16_MAX && guest_report_owns((uint16_t)w.port))
                vm_report_out(m->vm, (uint16_t)w.port, w.value);
        }
        break;
    case PROC_MSG_IN: {
        uint32_t port = 0, value = UINT32_MAX;
        if (h.bytes == sizeof port) {
            memcpy(&port, p, sizeof port);
            if (port <= UINT16_MAX && guest_report_owns((uint16_t)port))
                value = vm_report_in(m->vm, (uint16_t)port);
        }
        send_msg(m, PROC_MSG_IN_VALUE, &value, sizeof value);
        break;
    }
    case PROC_MSG_CONSOLE:
        console_write(m->vm->console, (const char *)p, h.bytes);
        break;
    case PROC_MSG_STOPPED:
        copy_text(m->guest_stop, sizeof m->guest_stop, p, h.bytes);
        break;
    default:
        break;
    }
}

/* Handles whatever is queued; returns 0 at end of file. */
static int drain_messages(proc_machine_t *m)
{
    uint8_t buf[sizeof(proc_msg_header_t) + PROC_MSG_MAX_PAYLOAD];
    for (;;) {
        ssize_t n = recv(m->sock, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            handle_message(m, buf, (size_t)n);
            continue;
        }
        if (n == 0)
            return 0;
        if (errno == EINTR)
            continue;
        return errno == EAGAIN ? 1 : -errno;
    }
}

/* waitid on the guest process. Until end_guest reaps it, its pid cannot
 * name another process, so the pid does where there is no pidfd. */
static int wait_guest(proc_machine_t *m, siginfo_t *si, int options)
{
    memset(si, 0, sizeof *si);
    if (m->pid <= 0)
        return -ECHILD;
    int rc;
    do {
        rc = m->pidfd >= 0 ? waitid(P_PIDFD, (id_t)m->pidfd, si, options)
                           : waitid(P_PID, (id_t)m->pid, si, options);
    } while (rc < 0 && errno == EINTR);
    return rc < 0 ? -errno : 0;
}

/* Why the guest process ended (it has, or is about to). */
static void describe_exit(proc_machine_t *m, char *out, size_t cap)
{
    siginfo_t si;
    int rc = wait_guest(m, &si, WEXITED | WNOWAIT);
    if (m->guest_stop[0])
        snprintf(out, cap, "guest: %.80s", m->guest_stop);
    else if (rc < 0)
        snprintf(out, cap, "guest process ended (%s)", strerror(-rc));
    else if (si.si_code == CLD_EXITED)
        snprintf(out, cap, "guest process exited with status %d", si.si_status);
    else
        snprintf(out, cap, "guest process killed by signal %d (%s)", si.si_status,
                 strsignal(si.si_status));
}

/* The guest's "exit handler": runs until the guest process goes away. */
static void *io_thread(void *arg)
{
    proc_machine_t *m = arg;
    for (;;) {
        struct pollfd p = {.fd = m->sock, .events = POLLIN};
        if (poll(&p, 1, -1) < 0 && errno != EINTR)
            break;
        pthread_mutex_lock(&m->io_lock);
        int rc = drain_messages(m);
        pthread_mutex_unlock(&m->io_lock);
        if (rc <= 0)
            break;
    }
    if (!atomic_load(&m->quitting)) {
        char reason[96];
        describe_exit(m, reason, sizeof reason);
        vm_set_stopped(m->vm, reason);
    }
    return NULL;
}

/* --- the guest process ---------------------------------------------------------- */

static int signal_guest(proc_machine_t *m, int sig)
{
    if (m->pid <= 0)
        return -ESRCH;  /* never kill(0, ...): that is our own process group */
    int rc = m->pidfd >= 0 ? (int)syscall(SYS_pidfd_send_signal, m->pidfd, sig, NULL, 0)
                           : kill(m->pid, sig);
    return rc < 0 ? -errno : 0;
}

/* Ends the guest process and everything that talks to it. */
static void end_guest(proc_machine_t *m)
{
    atomic_store(&m->quitting, true);
    if (m->pid > 0)
        signal_guest(m, SIGKILL);
    if (m->sock >= 0)
        shutdown(m->sock, SHUT_RDWR);
    if (m->io_started)
        pthread_join(m->io_thread, NULL);
    m->io_started = false;
    siginfo_t si;
    if (m->pid > 0)
        wait_guest(m, &si, WEXITED);
    if (m->pidfd >= 0)
        close(m->pidfd);
    if (m->sock >= 0)
        close(m->sock);
    if (m->uffd >= 0)
        close(m->uffd);
    if (m->pagemap_fd >= 0)
        close(m->pagemap_fd);
    m->pid = 0;
    m->pidfd = m->sock = m->uffd = m->pagemap_fd = -1;
    m->mapped = m->go_sent = m->dirty_on = false;
    m->guest_stop[0] = '\0';
    atomic_store(&m->quitting, false);
}

/* Forks a guest process that waits for MAP. */
static int spawn_guest(proc_machine_t *m, char *err, size_t errlen)
{
    vm_t *vm = m->vm;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        snprintf(err, errlen, "socketpair: %s", strerror(errno));
        return -errno;
    }
    proc_child_setup_t setup = {.sock = sv[1], .memfd = vm->memory.fd, .shared = m->shared,
                                .memory_bytes = vm->memory_bytes, .args = vm->args};
    snprintf(setup.name, sizeof setup.name, "%s", vm->name);
    pid_t pid = fork();
    if (pid == 0)
        proc_child_main(&setup);
    int e = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        snprintf(err, errlen, "fork: %s", strerror(e));
        return -e;
    }
    m->pid = pid;
    m->sock = sv[0];
    m->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    return 0;
}

/* Waits up to SETUP_TIMEOUT_MS for the guest's answer to MAP. */
static int recv_setup_reply(proc_machine_t *m, proc_ready_t *ready, int *fd, char *err,
                            size_t errlen)
{
    *fd = -1;
    struct pollfd p = {.fd = m->sock, .events = POLLIN};
    int rc;
    while ((rc = poll(&p, 1, SETUP_TIMEOUT_MS)) < 0 && errno == EINTR)
        ;
    if (rc == 0) {
        snprintf(err, errlen, "guest process did not answer within %d ms", SETUP_TIMEOUT_MS);
        return -ETIMEDOUT;
    }
    uint8_t buf[sizeof(proc_msg_header_t) + PROC_MSG_MAX_PAYLOAD];
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int))];
    } control;
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.bytes,
                         .msg_controllen = sizeof control.bytes};
    ssize_t n;
    while ((n = recvmsg(m->sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
        ;
    for (struct cmsghdr *c = n > 0 ? CMSG_FIRSTHDR(&msg) : NULL; c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
            c->cmsg_len == CMSG_LEN(sizeof(int))) {
            if (*fd >= 0)
                close(*fd);
            memcpy(fd, CMSG_DATA(c), sizeof(int));
        }
    }
    proc_msg_header_t h = {0};
    if (n >= (ssize_t)sizeof h)
        memcpy(&h, buf, sizeof h);
    if (n < (ssize_t)sizeof h || h.bytes != (size_t)n - sizeof h) {
        char why[96];
        describe_exit(m, why, sizeof why);
        snprintf(err, errlen, "%.96s while setting up", why);
        rc = -EIO;
    } else if (h.kind == PROC_MSG_FAILED) {
        char why[PROC_MSG_MAX_PAYLOAD];
        copy_text(why, sizeof why, buf + sizeof h, h.bytes);
        snprintf(err, errlen, "%s", why);
        rc = -ENOMEM;
    } else if (h.kind != PROC_MSG_READY || h.bytes != sizeof *ready) {
        snprintf(err, errlen, "guest process sent message %u while setting up", h.kind);
        rc = -EIO;
    } else {
        memcpy(ready, buf + sizeof h, sizeof *ready);
        ready->no_uffd_why[sizeof ready->no_uffd_why - 1] = '\0';
        return 0;
    }
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
    return rc;
}

/* PAGEMAP_SCAN answers on this kernel, for memory with async write-protect. */
static int probe_pagemap_scan(proc_machine_t *m)
{
    struct page_region r;
    struct pm_scan_arg a = {.size = sizeof a, .flags = PM_SCAN_CHECK_WPASYNC,
                            .start = guest_first_addr(m), .end = guest_first_addr(m) + VM_PAGE_SIZE,
                            .vec = (uint64_t)(uintptr_t)&r, .vec_len = 1,
                            .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN};
    if (ioctl(m->pagemap_fd, PAGEMAP_SCAN, &a) >= 0)
        return 0;
    if (errno == ENOTTY || errno == EINVAL)
        snprintf(m->no_dirty_why, sizeof m->no_dirty_why,
                 "the kernel lacks the PAGEMAP_SCAN ioctl (Linux 6.7 or later)");
    else
        snprintf(m->no_dirty_why, sizeof m->no_dirty_why, "PAGEMAP_SCAN: %s", strerror(errno));
    return -1;
}

/* Has the guest map memory (at base, or the first free candidate) and sets
 * up dirty tracking if the kernel can. */
static int map_guest(proc_machine_t *m, bool any_base, uint64_t base, bool boot, char *err,
                     size_t errlen)
{
    proc_map_t req = {.base = base, .any_base = any_base, .boot = boot};
    int rc = send_msg(m, PROC_MSG_MAP, &req, sizeof req);
    if (rc < 0) {
        snprintf(err, errlen, "guest process: %s", strerror(-rc));
        return rc;
    }
    proc_ready_t ready;
    int uffd;
    if ((rc = recv_setup_reply(m, &ready, &uffd, err, errlen)) < 0)
        return rc;
    if (!proc_base_known(ready.base)) {
        if (uffd >= 0)
            close(uffd);
        snprintf(err, errlen, "guest process mapped memory at an unknown base");
        return -EIO;
    }
    m->base = ready.base;
    m->mapped = true;
    m->uffd = ready.has_uffd ? uffd : -1;
    if (!ready.has_uffd || uffd < 0) {
        if (uffd >= 0)
            close(uffd);
        snprintf(m->no_dirty_why, sizeof m->no_dirty_why, "%s",
                 ready.has_uffd ? "no userfaultfd came with READY" : ready.no_uffd_why);
        return 0;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/pagemap", (int)m->pid);
    m->pagemap_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (m->pagemap_fd < 0)
        snprintf(m->no_dirty_why, sizeof m->no_dirty_why, "%s: %s", path, strerror(errno));
    if (m->pagemap_fd < 0 || probe_pagemap_scan(m) < 0) {
        close(m->uffd);
        m->uffd = -1;
    }
    return 0;
}

static void machine_free(proc_machine_t *m)
{
    if (!m)
        return;
    end_guest(m);
    if (m->shared)
        munmap(m->shared, VM_PAGE_SIZE);
    pthread_mutex_destroy(&m->io_lock);
    free(m->dirty);
    free(m);
}

/* --- backend ops --------------------------------------------------------------------- */

static int proc_create(vm_t *vm, char *err, size_t errlen)
{
    proc_machine_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    m->vm = vm;
    m->pidfd = m->sock = m->uffd = m->pagemap_fd = -1;
    pthread_mutex_init(&m->io_lock, NULL);
    atomic_init(&m->quitting, false);
    m->dirty = calloc(vm_dirty_bitmap_words(vm), sizeof(uint64_t));
    m->shared = mmap(NULL, VM_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m->shared == MAP_FAILED)
        m->shared = NULL;
    if (!m->dirty || !m->shared) {
        snprintf(err, errlen, "out of memory");
        machine_free(m);
        return -ENOMEM;
    }
    /* A fresh guest starts its clock at zero, as a KVM guest's TSC does. */
    m->clock_offset = -monotonic_ns();
    int rc = spawn_guest(m, err, errlen);
    if (rc == 0 && !vm->incoming)
        rc = map_guest(m, true, 0, true, err, errlen);
    if (rc < 0) {
        machine_free(m);
        return rc;
    }
    vm->impl = m;
    if (m->mapped)
        log_info("vmm", "%s: guest process %d, memory at 0x%llx%s%s", vm->name, (int)m->pid,
                 (unsigned long long)m->base, m->uffd < 0 ? "; no dirty log: " : "",
                 m->uffd < 0 ? m->no_dirty_why : "");
    return 0;
}

static void proc_destroy(vm_t *vm)
{
    machine_free(machine_of(vm));
    vm->impl = NULL;
}

static int proc_start(vm_t *vm)
{
    proc_machine_t *m = machine_of(vm);
    if (!m->mapped || m->go_sent) {
        log_warn("vmm", "%s: cannot start: %s", vm->name,
                 m->mapped ? "already started" : "an incoming VM needs its state loaded first");
        return -EINVAL;
    }
    if (!m->io_started) {
        if (pthread_create(&m->io_thread, NULL, io_thread, m) != 0)
            return -EAGAIN;
        m->io_started = true;
    }
    proc_go_t go = {.clock_offset = m->clock_offset, .resume = m->resume};
    int rc = send_msg(m, PROC_MSG_GO, &go, sizeof go);
    if (rc < 0)
        return rc;
    m->go_sent = true;
    m->resume = true;  /* from now on the state page holds a running profile */
    return 0;
}

/* Returns when the guest process is stopped (or gone) and every message it
 * sent before has been handled: nothing it did can show up later. */
static int proc_pause(vm_t *vm)
{
    proc_machine_t *m = machine_of(vm);
    int rc = signal_guest(m, SIGSTOP);
    if (rc < 0 && rc != -ESRCH)
        return rc;
    siginfo_t si;
    if ((rc = wait_guest(m, &si, WSTOPPED | WEXITED | WNOWAIT)) < 0)
        return rc;
    pthread_mutex_lock(&m->io_lock);
    drain_messages(m);
    pthread_mutex_unlock(&m->io_lock);
    return 0;
}

static int proc_resume(vm_t *vm) { return signal_guest(machine_of(vm), SIGCONT); }

static int proc_reset(vm_t *vm, char *err, size_t errlen)
{
    proc_machine_t *m = machine_of(vm);
    end_guest(m);
    int rc = guest_memory_wipe(&vm->memory);
    if (rc < 0) {
        snprintf(err, errlen, "wiping guest memory: %s", strerror(-rc));
        return rc;
    }
    m->resume = false;
    m->clock_offset = -monotonic_ns();
    if ((rc = spawn_guest(m, err, errlen)) < 0)
        return rc;
    return map_guest(m, true, 0, true, err, errlen);
}

static uint64_t proc_cpu_ns(vm_t *vm)
{
    proc_machine_t *m = machine_of(vm);
    clockid_t clock;
    struct timespec ts;
    if (!m || m->pid <= 0 || clock_getcpuclockid(m->pid, &clock) != 0 ||
        clock_gettime(clock, &ts) != 0)
        return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int proc_gpa_to_page(const vm_t *vm, uint64_t gpa, uint64_t *page)
{
    const proc_machine_t *m = machine_of(vm);
    if (!m->mapped || gpa < m->base || gpa - m->base >= vm->memory_bytes)
        return -ERANGE;
    *page = (gpa - m->base) / VM_PAGE_SIZE;
    return 0;
}

/* --- dirty log --------------------------------------------------------------------------- */

static int proc_dirty_enable(vm_t *vm, bool on)
{
    proc_machine_t *m = machine_of(vm);
    if (!m->mapped) {
        log_warn("vmm", "%s: no dirty log before the VM's state is loaded", vm->name);
        return -EINVAL;
    }
    if (m->uffd < 0) {
        log_warn("vmm", "%s: no dirty log: %s", vm->name, m->no_dirty_why);
        return -EOPNOTSUPP;
    }
    /* Protecting every page, present or not, leaves a written page as the
     * only kind PAGEMAP_SCAN calls written. */
    struct uffdio_writeprotect wp = {
        .range = {guest_first_addr(m), guest_end_addr(m) - guest_first_addr(m)},
        .mode = on ? UFFDIO_WRITEPROTECT_MODE_WP : 0};
    if (ioctl(m->uffd, UFFDIO_WRITEPROTECT, &wp) < 0) {
        int e = errno;
        log_warn("vmm", "%s: UFFDIO_WRITEPROTECT: %s", vm->name, strerror(e));
        return -e;
    }
    memset(m->dirty, 0, vm_dirty_bitmap_words(vm) * sizeof(uint64_t));
    m->dirty_on = on;
    return 0;
}

static void mark_pages(uint64_t *bitmap, uint64_t first, uint64_t end)
{
    for (uint64_t p = first; p < end;) {
        if (p % 64 == 0 && end - p >= 64) {
            bitmap[p / 64] = ~0ull;
            p += 64;
        } else {
            bitmap[p / 64] |= 1ull << (p % 64);
            p++;
        }
    }
}

/* Moves the pages written since the last scan into m->dirty and protects
 * them again, in one walk per batch of regions. */
static int scan_written(proc_machine_t *m)
{
    struct page_region regions[SCAN_REGIONS];
    uint64_t at = guest_first_addr(m), end = guest_end_addr(m);
    while (at < end) {
        struct pm_scan_arg a = {.size = sizeof a,
                                .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                                .start = at, .end = end,
                                .vec = (uint64_t)(uintptr_t)regions, .vec_len = SCAN_REGIONS,
                                .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN};
        int n = ioctl(m->pagemap_fd, PAGEMAP_SCAN, &a);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        for (int i = 0; i < n; i++) {
            uint64_t s = regions[i].start, e = regions[i].end;
            if (s < at || e > end || s >= e)
                return -EIO;
            mark_pages(m->dirty, (s - m->base) / VM_PAGE_SIZE, (e - m->base) / VM_PAGE_SIZE);
        }
        if (a.walk_end <= at || a.walk_end > end)
            return -EIO;
        at = a.walk_end;
    }
    return 0;
}

static int proc_dirty_collect(vm_t *vm, uint64_t *bitmap)
{
    proc_machine_t *m = machine_of(vm);
    if (!m->dirty_on)
        return -EINVAL;
    int rc = scan_written(m);
    if (rc < 0) {
        log_warn("vmm", "%s: PAGEMAP_SCAN: %s", vm->name, strerror(-rc));
        return rc;
    }
    memcpy(bitmap, m->dirty, vm_dirty_bitmap_words(vm) * sizeof(uint64_t));
    return 0;
}

static int proc_dirty_clear(vm_t *vm, const uint64_t *bitmap)
{
    proc_machine_t *m = machine_of(vm);
    if (!m->dirty_on)
        return -EINVAL;
    for (size_t w = 0; w < vm_dirty_bitmap_words(vm); w++)
        m->dirty[w] &= ~bitmap[w];
    return 0;
}

/* --- state ------------------------------------------------------------------------------------ */

static int proc_save_state(vm_t *vm, uint8_t *buf, size_t cap, size_t *len)
{
    proc_machine_t *m = machine_of(vm);
    if (!m->mapped)
        return -EINVAL;
    proc_state_t s = {.memory_bytes = vm->memory_bytes, .vcpus = vm->vcpus, .started = m->resume,
                      .base = m->base, .clock_ns = (uint64_t)(monotonic_ns() + m->clock_offset)};
    pthread_mutex_lock(&vm->lock);
    s.report = vm->report;
    pthread_mutex_unlock(&vm->lock);
    return proc_state_encode(&s, buf, cap, len);
}

static int proc_load_state(vm_t *vm, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    proc_machine_t *m = machine_of(vm);
    if (m->go_sent) {
        snprintf(err, errlen, "the process backend loads state only into a VM not yet started");
        return -EBUSY;
    }
    proc_state_t s;
    int rc = proc_state_decode(buf, len, &s, err, errlen);
    if (rc < 0)
        return rc;
    if (s.memory_bytes != vm->memory_bytes || s.vcpus != vm->vcpus) {
        snprintf(err, errlen, "vm state is for %llu MiB and %u vCPUs, this VM has %llu MiB and %u",
                 (unsigned long long)(s.memory_bytes >> 20), s.vcpus,
                 (unsigned long long)(vm->memory_bytes >> 20), vm->vcpus);
        return -EINVAL;
    }
    if (m->mapped && m->base != s.base) {
        /* Memory must sit where the saved guest had it: start over. */
        end_guest(m);
        if ((rc = spawn_guest(m, err, errlen)) < 0)
            return rc;
    }
    if (!m->mapped && (rc = map_guest(m, false, s.base, false, err, errlen)) < 0) {
        /* The guest process gave up; a fresh one can take the next state. */
        char again[96];
        end_guest(m);
        spawn_guest(m, again, sizeof again);
        return rc;
    }
    m->resume = s.started;
    m->clock_offset = (int64_t)s.clock_ns - monotonic_ns();
    pthread_mutex_lock(&vm->lock);
    vm->report = s.report;
    vm->report.heartbeats_seen = 0;
    vm->report.last_heartbeat_ns = 0;
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

/* --- throttle ----------------------------------------------------------------------------------- */

static int proc_throttle(vm_t *vm, unsigned percent)
{
    __atomic_store_n(&machine_of(vm)->shared->throttle_percent, percent, __ATOMIC_RELAXED);
    return 0;
}

const vm_backend_ops_t vm_proc_backend = {
    .name = "process",
    .create = proc_create,
    .destroy = proc_destroy,
    .start = proc_start,
    .pause = proc_pause,
    .resume = proc_resume,
    .reset = proc_reset,
    .cpu_ns = proc_cpu_ns,
    .gpa_to_page = proc_gpa_to_page,
    .dirty_enable = proc_dirty_enable,
    .dirty_collect = proc_dirty_collect,
    .dirty_clear = proc_dirty_clear,
    .save_state = proc_save_state,
    .load_state = proc_load_state,
    .throttle = proc_throttle,
};
