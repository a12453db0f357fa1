/* proc_child.c - the process backend's guest process: what it does after
 * the fork, the commands it takes from the VMM, and the "hardware" the
 * kernel's code runs on (port I/O over the socket, the clock, idling,
 * throttling).
 *
 * It runs only in the forked child. Other threads of the VMM may have held
 * locks at the fork, so this uses no malloc, no stdio streams and no log:
 * system calls, its own buffers and snprintf into them. The child drops
 * everything it inherited that it does not need (descriptors, shared
 * mappings such as other VMs' memory, signal handlers), so that it keeps
 * nothing alive that belongs to the VMM. It exits when the VMM goes away.
 *
 * Commands (proc_protocol.h): MAP maps guest memory and answers READY with a
 * userfaultfd for dirty tracking (or FAILED); GO starts the guest, which
 * never comes back. */
#include "vmm/guest_report.h"
#include "vmm/proc_guest.h"
#include "vmm/proc_protocol.h"
#include "vmm/proc_uapi.h"
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define COM1_FIRST GUEST_PORT_COM1
#define COM1_LAST (GUEST_PORT_COM1 + 7)
#define UART_THR 0
#define UART_LCR 3
#define UART_LSR 5
#define UART_LCR_DLAB 0x80
#define UART_LSR_IDLE 0x60  /* transmitter empty: always ready */

/* The guest process's own state (one guest per process). */
static struct {
    int sock;
    proc_shared_t *shared;
    int64_t clock_offset;
    uint64_t slice_start;                       /* throttle: this slice began */
    uint8_t uart_lcr;
    proc_port_write_t outbox[PROC_MSG_MAX_WRITES];
    unsigned outbox_len;
    char console[256];
    size_t console_len;
} child;

/* --- messages -------------------------------------------------------------------- */

/* Sends one message; a VMM that is gone ends the guest. */
static void send_msg(uint32_t kind, const void *payload, size_t bytes)
{
    uint8_t buf[sizeof(proc_msg_header_t) + PROC_MSG_MAX_PAYLOAD];
    proc_msg_header_t h = {kind, (uint32_t)bytes};
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, payload, bytes);
    while (send(child.sock, buf, sizeof h + bytes, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            _exit(0);
}

/* Receives one message from the VMM; returns the payload bytes. */
static size_t recv_msg(uint32_t *kind, void *payload, size_t cap)
{
    uint8_t buf[sizeof(proc_msg_header_t) + PROC_MSG_MAX_PAYLOAD];
    ssize_t n;
    while ((n = recv(child.sock, buf, sizeof buf, 0)) < 0)
        if (errno != EINTR)
            _exit(0);
    proc_msg_header_t h;
    if ((size_t)n < sizeof h)
        _exit(0);  /* end of file: the VMM is gone */
    memcpy(&h, buf, sizeof h);
    if (h.bytes != (size_t)n - sizeof h || h.bytes > cap)
        _exit(2);
    memcpy(payload, buf + sizeof h, h.bytes);
    *kind = h.kind;
    return h.bytes;
}

static void send_text(uint32_t kind, const char *text)
{
    send_msg(kind, text, strnlen(text, PROC_MSG_MAX_PAYLOAD));
}

static void flush_outbox(void)
{
    if (child.outbox_len)
        send_msg(PROC_MSG_OUT, child.outbox, child.outbox_len * sizeof child.outbox[0]);
    child.outbox_len = 0;
}

static void flush_console(void)
{
    if (child.console_len)
        send_msg(PROC_MSG_CONSOLE, child.console, child.console_len);
    child.console_len = 0;
}

/* Before the guest waits for anything, the VMM sees all it has said. */
static void flush_all(void)
{
    flush_console();
    flush_outbox();
}

/* --- the guest's hardware ----------------------------------------------------------- */

static uint64_t guest_clock(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    return (uint64_t)(ns + child.clock_offset);
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* The throttle, like the KVM backend's: after running (100 - p)% of a
 * VM_THROTTLE_SLICE_MS slice the guest sleeps p% of one. The profile loop
 * reads the clock every turn, so this is where it gets stopped. */
uint64_t proc_child_clock(void)
{
    uint64_t now = guest_clock();
    unsigned pct = __atomic_load_n(&child.shared->throttle_percent, __ATOMIC_RELAXED);
    if (pct == 0 || pct > 99) {
        child.slice_start = now;
        return now;
    }
    uint64_t slice = (uint64_t)VM_THROTTLE_SLICE_MS * 1000000u;
    if (now - child.slice_start < slice * (100 - pct) / 100)
        return now;
    flush_all();
    sleep_ns(slice * pct / 100);
    now = guest_clock();
    child.slice_start = now;
    return now;
}

/* Sleeps until the guest clock reaches deadline, or exits if the VMM hangs
 * up meanwhile. */
void proc_child_idle_until(uint64_t deadline)
{
    flush_all();
    for (;;) {
        uint64_t now = guest_clock();
        if (now >= deadline)
            return;
        uint64_t ns = deadline - now;
        struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
        struct pollfd p = {.fd = child.sock, .events = 0};
        if (ppoll(&p, 1, &ts, NULL) > 0 && (p.revents & (POLLHUP | POLLERR)))
            _exit(0);
    }
}

static void uart_out(unsigned reg, uint8_t value)
{
    if (reg == UART_LCR) {
        child.uart_lcr = value;
    } else if (reg == UART_THR && !(child.uart_lcr & UART_LCR_DLAB)) {
        child.console[child.console_len++] = (char)value;
        if (value == '\n' || child.console_len == sizeof child.console)
            flush_console();
    }
}

void proc_child_out(uint16_t port, uint32_t value, unsigned size)
{
    if (port >= COM1_FIRST && port <= COM1_LAST && size == 1) {
        uart_out(port - COM1_FIRST, (uint8_t)value);
    } else if (guest_report_owns(port) && size == 4) {
        child.outbox[child.outbox_len++] = (proc_port_write_t){port, value};
        /* A heartbeat is the guest's commit point (guest/report.c); a
         * notice acknowledgement is awaited by the host, so it goes at once. */
        if (port == GUEST_PORT_HEARTBEAT || port == GUEST_PORT_NOTICE_ACK ||
            child.outbox_len == PROC_MSG_MAX_WRITES)
            flush_outbox();
    }
}

uint32_t proc_child_in(uint16_t port, unsigned size)
{
    if (port >= COM1_FIRST && port <= COM1_LAST && size == 1) {
        unsigned reg = port - COM1_FIRST;
        return reg == UART_LSR ? UART_LSR_IDLE : reg == UART_LCR ? child.uart_lcr : 0;
    }
    if (!guest_report_owns(port) || size != 4)
        return size == 4 ? UINT32_MAX : (1u << (8 * size)) - 1;  /* nothing there */
    flush_all();
    uint32_t p = port, kind, value = UINT32_MAX;
    send_msg(PROC_MSG_IN, &p, sizeof p);
    if (recv_msg(&kind, &value, sizeof value) != sizeof value || kind != PROC_MSG_IN_VALUE)
        _exit(2);
    return value;
}

/* --- after the fork ------------------------------------------------------------------- */

static void reset_signals(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            sigaction(sig, &dfl, NULL);  /* fails harmlessly for reserved ones */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Keeps descriptors 0-2, the socket and the memfd. */
static void close_inherited_fds(int a, int b)
{
    unsigned keep[2] = {(unsigned)(a < b ? a : b), (unsigned)(a < b ? b : a)};
    unsigned next = 3;
    for (unsigned i = 0; i < 2; i++) {
        if (keep[i] < next)
            continue;
        if (keep[i] > next)
            syscall(SYS_close_range, next, keep[i] - 1, 0);
        next = keep[i] + 1;
    }
    syscall(SYS_close_range, next, ~0u, 0);
}

static uint64_t parse_hex(const char **p)
{
    uint64_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        unsigned d = c >= '0' && c <= '9' ? (unsigned)(c - '0')
                     : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10) : 16;
        if (d == 16)
            return v;
        v = v << 4 | d;
    }
}

/* What a VMM maps shared: guest memory (memfds), KVM's vCPU areas (anon
 * inodes), shared anonymous pages (such as other VMs' shared pages). */
static bool vmm_resource(const char *path)
{
    return strncmp(path, "/memfd:", 7) == 0 || strncmp(path, "anon_inode:", 11) == 0 ||
           strncmp(path, "/dev/zero", 9) == 0 || strncmp(path, "/SYSV", 5) == 0;
}

/* The path column of a /proc/self/maps line, or "". */
static const char *maps_path(const char *line, const char *end)
{
    for (int field = 0; field < 5 && line < end; field++) {
        while (line < end && *line != ' ')
            line++;
        while (line < end && *line == ' ')
            line++;
    }
    return line;
}

/* Unmaps the VMM's shared mappings inherited with the fork, except keep:
 * other VMs' memory and KVM's vCPU areas must not outlive their owners
 * because a guest process still maps them. A few passes, in case a pass
 * fills up. */
static void drop_shared_mappings(const void *keep)
{
    static char buf[8192];
    enum { MAX_RANGES = 128 };
    static uint64_t ranges[MAX_RANGES][2];
    for (int pass = 0; pass < 8; pass++) {
        int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return;
        unsigned count = 0;
        size_t have = 0;
        for (;;) {
            ssize_t n = read(fd, buf + have, sizeof buf - 1 - have);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            have += (size_t)n;
            buf[have] = '\0';
            char *line = buf, *nl;
            while ((nl = strchr(line, '\n'))) {
                /* "start-end perms offset dev inode path" */
                const char *p = line;
                uint64_t start = parse_hex(&p), end = 0;
                if (*p == '-') {
                    p++;
                    end = parse_hex(&p);
                }
                bool shared = p[0] == ' ' && p[1] && p[2] && p[3] && p[4] == 's';
                if (shared && vmm_resource(maps_path(line, nl)) &&
                    start != (uint64_t)(uintptr_t)keep && end > start && count < MAX_RANGES) {
                    ranges[count][0] = start;
                    ranges[count][1] = end;
                    count++;
                }
                line = nl + 1;
            }
            have = strlen(line);
            memmove(buf, line, have);
            if (have == sizeof buf - 1)
                have = 0;  /* a line longer than the buffer: skip it */
        }
        close(fd);
        for (unsigned i = 0; i < count; i++)
            munmap((void *)(uintptr_t)ranges[i][0], ranges[i][1] - ranges[i][0]);
        if (count < MAX_RANGES)
            return;
    }
}

/* --- MAP ------------------------------------------------------------------------------- */

static int map_at(int memfd, uint64_t base, uint64_t memory_bytes)
{
    void *want = (void *)(uintptr_t)(base + PROC_LOW_BYTES);
    size_t len = memory_bytes - PROC_LOW_BYTES;
    void *got = mmap(want, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED_NOREPLACE, memfd,
                     (off_t)PROC_LOW_BYTES);
    if (got == want)
        return 0;
    if (got != MAP_FAILED) {  /* a kernel that took the address as a hint */
        munmap(got, len);
        return -EEXIST;
    }
    return -errno;
}

static int map_memory(int memfd, uint64_t memory_bytes, const proc_map_t *req, uint64_t *base,
                      char *why, size_t whylen)
{
    int rc = -EINVAL;
    for (unsigned i = 0; i < PROC_BASE_COUNT; i++) {
        uint64_t b = proc_base_candidate(i);
        if (!req->any_base && b != req->base)
            continue;
        if ((rc = map_at(memfd, b, memory_bytes)) == 0) {
            *base = b;
            return 0;
        }
    }
    if (req->any_base)
        snprintf(why, whylen,
                 "no room for %llu MiB of guest memory at 0x0, 64 GiB or 32 TiB in the guest "
                 "process (%s)", (unsigned long long)(memory_bytes >> 20), strerror(-rc));
    else
        snprintf(why, whylen, "cannot map guest memory at 0x%llx in the guest process (%s)",
                 (unsigned long long)req->base, strerror(-rc));
    return -1;
}

static int new_userfaultfd(void)
{
    /* User-mode faults are all a guest process takes; asking for only those
     * works without privilege where vm.unprivileged_userfaultfd is 0. */
    int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
    if (fd < 0 && errno == EINVAL)
        fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    return fd;
}

/* A userfaultfd with async write-protect on [start, start + len), or -1 and
 * why not. Created here because a userfaultfd works on its creator's memory. */
static int open_dirty_tracking(uint64_t start, uint64_t len, char *why, size_t whylen)
{
    int fd = new_userfaultfd();
    if (fd < 0) {
        snprintf(why, whylen, "userfaultfd: %s", strerror(errno));
        return -1;
    }
    /* The API handshake happens once per descriptor: probe, then open again. */
    struct uffdio_api api = {.api = UFFD_API, .features = 0};
    int rc = ioctl(fd, UFFDIO_API, &api);
    close(fd);
    if (rc < 0) {
        snprintf(why, whylen, "UFFDIO_API: %s", strerror(errno));
        return -1;
    }
    if (!(api.features & UFFD_FEATURE_WP_ASYNC)) {
        snprintf(why, whylen, "the kernel lacks userfaultfd async write-protect "
                              "(UFFD_FEATURE_WP_ASYNC, Linux 6.7 or later)");
        return -1;
    }
    uint64_t want = UFFD_FEATURE_WP_ASYNC |
                    (api.features & (UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_WP_UNPOPULATED));
    fd = new_userfaultfd();
    api = (struct uffdio_api){.api = UFFD_API, .features = want};
    if (fd < 0 || ioctl(fd, UFFDIO_API, &api) < 0) {
        snprintf(why, whylen, "UFFDIO_API with async write-protect: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct uffdio_register reg = {.range = {start, len}, .mode = UFFDIO_REGISTER_MODE_WP};
    if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
        snprintf(why, whylen, "UFFDIO_REGISTER (write-protect) of guest memory: %s",
                 strerror(errno));
        close(fd);
        return -1;
    }
    if (!(reg.ioctls & (1ull << _UFFDIO_WRITEPROTECT))) {
        snprintf(why, whylen, "the kernel cannot write-protect this memory (no UFFDIO_WRITEPROTECT)");
        close(fd);
        return -1;
    }
    return fd;
}

/* READY, with the userfaultfd passed along as SCM_RIGHTS. */
static void send_ready(const proc_ready_t *ready, int uffd)
{
    uint8_t buf[sizeof(proc_msg_header_t) + sizeof *ready];
    proc_msg_header_t h = {PROC_MSG_READY, sizeof *ready};
    memcpy(buf, &h, sizeof h);
    memcpy(buf + sizeof h, ready, sizeof *ready);
    struct iovec iov = {buf, sizeof buf};
    union {
        struct cmsghdr align;
        char bytes[CMSG_SPACE(sizeof(int))];
    } control;
    memset(&control, 0, sizeof control);
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    if (uffd >= 0) {
        msg.msg_control = control.bytes;
        msg.msg_controllen = sizeof control.bytes;
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &uffd, sizeof uffd);
    }
    while (sendmsg(child.sock, &msg, MSG_NOSIGNAL) < 0)
        if (errno != EINTR)
            _exit(0);
}

/* --- main ------------------------------------------------------------------------------- */

static __attribute__((noreturn)) void fail_exit(uint32_t kind, const char *why)
{
    send_text(kind, why);
    _exit(1);
}

void proc_child_main(const proc_child_setup_t *setup)
{
    reset_signals();
    close_inherited_fds(setup->sock, setup->memfd);
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);  /* stderr stays, for crash reports */
    if (null >= 0) {
        dup2(null, STDIN_FILENO);
        dup2(null, STDOUT_FILENO);
        if (null > STDERR_FILENO)
            close(null);
    }
    drop_shared_mappings(setup->shared);
    setpgid(0, 0);  /* orphaned and stopped, the kernel sends it SIGHUP: no guest outlives the VMM */
    char title[16];
    snprintf(title, sizeof title, "vm:%.12s", setup->name);
    prctl(PR_SET_NAME, title);

    child.sock = setup->sock;
    child.shared = setup->shared;
    int memfd = setup->memfd;
    uint64_t base = 0;
    bool mapped = false;
    char why[PROC_MSG_MAX_PAYLOAD];
    for (;;) {
        union {
            proc_map_t map;
            proc_go_t go;
            uint8_t bytes[PROC_MSG_MAX_PAYLOAD];
        } m;
        uint32_t kind;
        size_t n = recv_msg(&kind, &m, sizeof m);
        if (kind == PROC_MSG_MAP && n == sizeof m.map && !mapped) {
            if (map_memory(memfd, setup->memory_bytes, &m.map, &base, why, sizeof why) < 0)
                fail_exit(PROC_MSG_FAILED, why);
            close(memfd);  /* the mapping keeps it */
            mapped = true;
            if (m.map.boot)
                proc_guest_layout(base, setup->memory_bytes, &setup->args);
            proc_ready_t ready = {.base = base};
            int uffd = open_dirty_tracking(base + PROC_LOW_BYTES,
                                           setup->memory_bytes - PROC_LOW_BYTES,
                                           ready.no_uffd_why, sizeof ready.no_uffd_why);
            ready.has_uffd = uffd >= 0;
            send_ready(&ready, uffd);
            if (uffd >= 0)
                close(uffd);  /* the VMM holds it now */
        } else if (kind == PROC_MSG_GO && n == sizeof m.go && mapped) {
            child.clock_offset = m.go.clock_offset;
            child.slice_start = guest_clock();
            if (proc_guest_check(base, setup->memory_bytes, m.go.resume, why, sizeof why) < 0)
                fail_exit(PROC_MSG_STOPPED, why);
            proc_guest_run(base, m.go.resume);
        } else {
            snprintf(why, sizeof why, "guest process: unexpected command %u (%zu bytes)", kind, n);
            fail_exit(PROC_MSG_FAILED, why);
        }
    }
}
