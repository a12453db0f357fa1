/* kvm.c - the KVM backend: a micro-VMM in the spirit of kvmtool.
 *
 *   - one KVM VM with an in-kernel irqchip (PIC, IOAPIC, LAPICs) so the
 *     guest's LAPIC timer and hlt never leave the kernel;
 *   - guest RAM is vm->memory (a memfd) in one or two memslots (below 3 GiB,
 *     and from 4 GiB), dirty-logged with KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2;
 *   - one thread per vCPU; the BSP boots the Multiboot kernel, APs stay in
 *     wait-for-SIPI (the workload kernel does not start them);
 *   - exits: COM1 -> console, the report block -> vm->report, anything else
 *     is ignored (reads return all ones).
 *
 * vCPU threads park on a condition variable when paused. A pause sets
 * want = WANT_PARK and kicks every thread with a signal whose handler sets
 * run->immediate_exit, so a thread parks whether it was inside KVM_RUN or
 * about to enter it. Work that must run on a vCPU's thread (state save and
 * load, boot registers) is handed to it while it is parked. */
#include "vmm/kvm_machine.h"
#include "vmm/multiboot_loader.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KERNEL_MAX_BYTES (64u << 20)
#define COM1_FIRST 0x3f8
#define COM1_LAST 0x3ff

static kvm_machine_t *machine_of(const vm_t *vm) { return vm->impl; }

/* --- the kick signal ---------------------------------------------------------- */

static __thread struct kvm_run *volatile current_run;

static int kick_signal(void) { return SIGRTMIN + 5; }

static void on_kick(int sig)
{
    (void)sig;
    struct kvm_run *run = current_run;
    if (run)
        run->immediate_exit = 1;
}

static pthread_once_t kick_once = PTHREAD_ONCE_INIT;

static void install_kick_handler(void)
{
    struct sigaction sa = {0};
    sa.sa_handler = on_kick;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  /* no SA_RESTART: interrupted sleeps return EINTR */
    sigaction(kick_signal(), &sa, NULL);
}

static void kick(kvm_vcpu_t *v)
{
    if (v->thread_started)
        pthread_kill(v->thread, kick_signal());
}

/* --- parking -------------------------------------------------------------------- */

static void set_want(kvm_machine_t *m, vcpu_want_t want)
{
    pthread_mutex_lock(&m->lock);
    m->want = want;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    for (unsigned i = 0; i < m->vcpu_count; i++)
        kick(&m->vcpus[i]);
}

static void wait_all_parked(kvm_machine_t *m)
{
    pthread_mutex_lock(&m->lock);
    while (m->parked < m->vcpu_count)
        pthread_cond_wait(&m->cond, &m->lock);
    pthread_mutex_unlock(&m->lock);
}

int kvm_vcpu_run_on(kvm_vcpu_t *v, vcpu_work_fn fn, void *arg)
{
    kvm_machine_t *m = v->m;
    pthread_mutex_lock(&m->lock);
    v->work = fn;
    v->work_arg = arg;
    v->work_done = false;
    pthread_cond_broadcast(&m->cond);
    while (!v->work_done)
        pthread_cond_wait(&m->cond, &m->lock);
    int rc = v->work_rc;
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* Parks while the machine wants it; runs handed-over work meanwhile.
 * Returns what the machine wants when the thread may go on. */
static vcpu_want_t park_if_asked(kvm_vcpu_t *v)
{
    kvm_machine_t *m = v->m;
    pthread_mutex_lock(&m->lock);
    if (m->want == WANT_PARK && v->io_pending) {
        /* Finish the last I/O instruction so the saved state is consistent;
         * immediate_exit makes KVM return right after. */
        pthread_mutex_unlock(&m->lock);
        v->run->immediate_exit = 1;
        ioctl(v->fd, KVM_RUN, 0);
        v->io_pending = false;
        pthread_mutex_lock(&m->lock);
    }
    while (m->want == WANT_PARK) {
        if (!v->parked) {
            v->parked = true;
            m->parked++;
            pthread_cond_broadcast(&m->cond);
        }
        if (v->work && !v->work_done) {
            vcpu_work_fn fn = v->work;
            pthread_mutex_unlock(&m->lock);
            int rc = fn(v, v->work_arg);
            pthread_mutex_lock(&m->lock);
            v->work = NULL;
            v->work_rc = rc;
            v->work_done = true;
            pthread_cond_broadcast(&m->cond);
            continue;
        }
        pthread_cond_wait(&m->cond, &m->lock);
    }
    if (v->parked) {
        v->parked = false;
        m->parked--;
    }
    vcpu_want_t want = m->want;
    pthread_mutex_unlock(&m->lock);
    return want;
}

/* The guest stopped the machine: everyone parks, the VM says why. */
static void machine_stop(kvm_vcpu_t *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void machine_stop(kvm_vcpu_t *v, const char *fmt, ...)
{
    char reason[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    vm_set_stopped(v->m->vm, reason);
    pthread_mutex_lock(&v->m->lock);
    if (v->m->want == WANT_RUN)
        v->m->want = WANT_PARK;
    pthread_mutex_unlock(&v->m->lock);
    for (unsigned i = 0; i < v->m->vcpu_count; i++)
        if (&v->m->vcpus[i] != v)
            kick(&v->m->vcpus[i]);
}

/* --- port I/O -------------------------------------------------------------------- */

static void uart_access(kvm_machine_t *m, uint16_t port, bool out, uint8_t *data)
{
    uart_regs_t *u = &m->uart;
    unsigned reg = port - COM1_FIRST;
    pthread_mutex_lock(&m->lock);
    bool dlab = u->lcr & 0x80;
    if (out) {
        uint8_t v = *data;
        switch (reg) {
        case 0:
            if (dlab) {
                u->dll = v;
            } else {
                pthread_mutex_unlock(&m->lock);
                console_write(m->vm->console, (const char *)&v, 1);
                return;
            }
            break;
        case 1: if (dlab) u->dlm = v; else u->ier = v; break;
        case 3: u->lcr = v; break;
        case 4: u->mcr = v; break;
        case 7: u->scr = v; break;
        default: break;  /* FCR: FIFOs are always "on" */
        }
    } else {
        uint8_t v = 0;
        switch (reg) {
        case 0: v = dlab ? u->dll : 0; break;
        case 1: v = dlab ? u->dlm : u->ier; break;
        case 2: v = 0xc1; break;          /* FIFOs enabled, no interrupt pending */
        case 3: v = u->lcr; break;
        case 4: v = u->mcr; break;
        case 5: v = 0x60; break;          /* transmitter empty: always ready */
        case 6: v = 0xb0; break;          /* DCD, DSR, CTS */
        case 7: v = u->scr; break;
        }
        *data = v;
    }
    pthread_mutex_unlock(&m->lock);
}

static void port_access(kvm_vcpu_t *v, uint16_t port, unsigned size, bool out, uint8_t *data)
{
    vm_t *vm = v->m->vm;
    if (port >= COM1_FIRST && port <= COM1_LAST && size == 1) {
        uart_access(v->m, port, out, data);
    } else if (guest_report_owns(port) && size == 4) {
        uint32_t value;
        if (out) {
            memcpy(&value, data, 4);
            vm_report_out(vm, port, value);
        } else {
            value = vm_report_in(vm, port);
            memcpy(data, &value, 4);
        }
    } else if (!out) {
        memset(data, 0xff, size);  /* nothing there */
    }
}

static void handle_io(kvm_vcpu_t *v)
{
    struct kvm_run *run = v->run;
    uint64_t bytes = (uint64_t)run->io.size * run->io.count;
    if (run->io.size == 0 || run->io.data_offset > v->m->run_size ||
        bytes > v->m->run_size - run->io.data_offset)
        return;
    uint8_t *data = (uint8_t *)run + run->io.data_offset;
    for (uint32_t i = 0; i < run->io.count; i++)
        port_access(v, run->io.port, run->io.size, run->io.direction == KVM_EXIT_IO_OUT,
                    data + (size_t)i * run->io.size);
}

/* --- the vCPU thread ---------------------------------------------------------------- */

static void throttle_nap(kvm_vcpu_t *v)
{
    unsigned pct = __atomic_load_n(&v->m->throttle_percent, __ATOMIC_RELAXED);
    if (pct == 0)
        return;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    uint64_t ns = (uint64_t)VM_THROTTLE_SLICE_MS * 1000000 * pct / 100;
    until.tv_nsec += (long)ns;
    while (until.tv_nsec >= 1000000000) {
        until.tv_nsec -= 1000000000;
        until.tv_sec++;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
        if (__atomic_load_n(&v->m->want, __ATOMIC_RELAXED) != WANT_RUN)
            break;  /* a pause does not wait for the nap */
}

static void handle_exit(kvm_vcpu_t *v)
{
    struct kvm_run *run = v->run;
    switch (run->exit_reason) {
    case KVM_EXIT_IO:
        handle_io(v);
        v->io_pending = true;
        break;
    case KVM_EXIT_MMIO:
        if (!run->mmio.is_write)
            memset(run->mmio.data, 0xff, sizeof run->mmio.data);
        v->io_pending = true;
        break;
    case KVM_EXIT_INTR:
        break;
    case KVM_EXIT_SHUTDOWN:
        machine_stop(v, "guest shut down (triple fault) on vCPU %u", v->index);
        break;
    case KVM_EXIT_HLT:
        machine_stop(v, "vCPU %u halted", v->index);
        break;
    case KVM_EXIT_FAIL_ENTRY:
        machine_stop(v, "vCPU %u: VM entry failed (hardware reason 0x%llx)", v->index,
                     (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
        break;
    case KVM_EXIT_INTERNAL_ERROR:
        machine_stop(v, "vCPU %u: KVM internal error (suberror %u)", v->index,
                     run->internal.suberror);
        break;
    case KVM_EXIT_SYSTEM_EVENT:
        machine_stop(v, "vCPU %u: system event %u", v->index, run->system_event.type);
        break;
    default:
        machine_stop(v, "vCPU %u: unhandled exit %u", v->index, run->exit_reason);
        break;
    }
}

static void *vcpu_thread(void *arg)
{
    kvm_vcpu_t *v = arg;
    v->tid = gettid();
    current_run = v->run;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, kick_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);

    for (;;) {
        /* Clear before looking at want: a kick from here on re-arms it. */
        v->run->immediate_exit = 0;
        __atomic_signal_fence(__ATOMIC_SEQ_CST);
        if (park_if_asked(v) == WANT_QUIT)
            break;
        if (ioctl(v->fd, KVM_RUN, 0) < 0) {
            if (errno == EINTR || errno == EAGAIN) {
                throttle_nap(v);
                continue;
            }
            machine_stop(v, "vCPU %u: KVM_RUN: %s", v->index, strerror(errno));
            continue;
        }
        handle_exit(v);
    }
    current_run = NULL;
    return NULL;
}

/* --- machine life cycle ------------------------------------------------------------------ */

static int set_memslots(kvm_machine_t *m, bool log_dirty)
{
    uint32_t flags = log_dirty ? KVM_MEM_LOG_DIRTY_PAGES : 0;
    struct kvm_userspace_memory_region low = {
        .slot = 0, .flags = flags, .guest_phys_addr = 0, .memory_size = m->low_bytes,
        .userspace_addr = (uint64_t)(uintptr_t)m->vm->memory.base,
    };
    if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &low) < 0)
        return -errno;
    if (m->high_bytes) {
        struct kvm_userspace_memory_region high = {
            .slot = 1, .flags = flags, .guest_phys_addr = KVM_HIGH_RAM_BASE,
            .memory_size = m->high_bytes,
            .userspace_addr = (uint64_t)(uintptr_t)(m->vm->memory.base + m->low_bytes),
        };
        if (ioctl(m->vm_fd, KVM_SET_USER_MEMORY_REGION, &high) < 0)
            return -errno;
    }
    return 0;
}

static struct kvm_cpuid2 *supported_cpuid(int kvm_fd)
{
    for (uint32_t n = 128; n <= 4096; n *= 2) {
        struct kvm_cpuid2 *c = calloc(1, sizeof *c + n * sizeof c->entries[0]);
        if (!c)
            return NULL;
        c->nent = n;
        if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
            return c;
        free(c);
        if (errno != E2BIG)
            return NULL;
    }
    return NULL;
}

/* Keeps the MSRs of kvm_state_msr_indices that this host's KVM knows. */
static int supported_msrs(kvm_machine_t *m)
{
    struct kvm_msr_list probe = {.nmsrs = 0};
    if (ioctl(m->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
        return -errno;
    struct kvm_msr_list *list = calloc(1, sizeof *list + probe.nmsrs * sizeof list->indices[0]);
    if (!list)
        return -ENOMEM;
    list->nmsrs = probe.nmsrs;
    if (ioctl(m->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
        free(list);
        return -errno;
    }
    m->msr_count = 0;
    for (unsigned i = 0; i < kvm_state_msr_index_count; i++)
        for (uint32_t j = 0; j < list->nmsrs; j++)
            if (list->indices[j] == kvm_state_msr_indices[i]) {
                m->msr_indices[m->msr_count++] = kvm_state_msr_indices[i];
                break;
            }
    free(list);
    return 0;
}

static void machine_free(kvm_machine_t *m)
{
    if (!m)
        return;
    if (m->vcpus) {
        set_want(m, WANT_QUIT);
        for (unsigned i = 0; i < m->vcpu_count; i++) {
            kvm_vcpu_t *v = &m->vcpus[i];
            if (v->thread_started)
                pthread_join(v->thread, NULL);
            if (v->has_throttle_timer)
                timer_delete(v->throttle_timer);
            if (v->run)
                munmap(v->run, m->run_size);
            if (v->fd >= 0)
                close(v->fd);
        }
        free(m->vcpus);
    }
    free(m->cpuid);
    if (m->vm_fd >= 0)
        close(m->vm_fd);
    if (m->kvm_fd >= 0)
        close(m->kvm_fd);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

#define FAIL(code, ...)                          \
    do {                                         \
        snprintf(err, errlen, __VA_ARGS__);      \
        rc = (code);                             \
        goto fail;                               \
    } while (0)

static int check(int fd, long cap) { return ioctl(fd, KVM_CHECK_EXTENSION, cap); }

static int make_vcpus(kvm_machine_t *m, char *err, size_t errlen)
{
    m->vcpus = calloc(m->vcpu_count, sizeof *m->vcpus);
    if (!m->vcpus) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    for (unsigned i = 0; i < m->vcpu_count; i++)
        m->vcpus[i].fd = -1;
    for (unsigned i = 0; i < m->vcpu_count; i++) {
        kvm_vcpu_t *v = &m->vcpus[i];
        v->m = m;
        v->index = i;
        v->fd = ioctl(m->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
        if (v->fd < 0) {
            snprintf(err, errlen, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
            return -errno;
        }
        v->run = mmap(NULL, m->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
        if (v->run == MAP_FAILED) {
            v->run = NULL;
            snprintf(err, errlen, "mmap of vCPU %u run area: %s", i, strerror(errno));
            return -errno;
        }
        int rc = kvm_vcpu_setup_cpuid(v, err, errlen);
        if (rc < 0)
            return rc;
    }
    int khz = ioctl(m->vcpus[0].fd, KVM_GET_TSC_KHZ, 0);
    if (khz <= 0) {
        snprintf(err, errlen, "KVM_GET_TSC_KHZ: %s", strerror(errno));
        return -EIO;
    }
    m->tsc_khz = (uint32_t)khz;

    m->want = WANT_PARK;
    for (unsigned i = 0; i < m->vcpu_count; i++) {
        kvm_vcpu_t *v = &m->vcpus[i];
        int rc = pthread_create(&v->thread, NULL, vcpu_thread, v);
        if (rc) {
            snprintf(err, errlen, "vCPU %u thread: %s", i, strerror(rc));
            return -rc;
        }
        v->thread_started = true;
    }
    wait_all_parked(m);
    return 0;
}

static kvm_machine_t *machine_new(vm_t *vm, char *err, size_t errlen)
{
    int rc = 0;
    pthread_once(&kick_once, install_kick_handler);
    kvm_machine_t *m = calloc(1, sizeof *m);
    if (!m) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    m->vm = vm;
    m->kvm_fd = m->vm_fd = -1;
    m->vcpu_count = vm->vcpus;
    pthread_mutex_init(&m->lock, NULL);
    pthread_cond_init(&m->cond, NULL);
    m->low_bytes = vm->memory_bytes < KVM_LOW_RAM_LIMIT ? vm->memory_bytes : KVM_LOW_RAM_LIMIT;
    m->high_bytes = vm->memory_bytes - m->low_bytes;

    m->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (m->kvm_fd < 0) {
        if (errno == ENOENT)
            FAIL(-ENODEV, "no /dev/kvm: KVM is not available on this host (kvm backend)");
        FAIL(-errno, "cannot open /dev/kvm: %s", strerror(errno));
    }
    if (ioctl(m->kvm_fd, KVM_GET_API_VERSION, 0) != KVM_API_VERSION)
        FAIL(-ENOTSUP, "/dev/kvm speaks an API version other than %d", KVM_API_VERSION);
    m->vm_fd = ioctl(m->kvm_fd, KVM_CREATE_VM, 0);
    if (m->vm_fd < 0)
        FAIL(-errno, "KVM_CREATE_VM: %s", strerror(errno));

    static const struct { long cap; const char *name; } required[] = {
        {KVM_CAP_IRQCHIP, "IRQCHIP"}, {KVM_CAP_USER_MEMORY, "USER_MEMORY"},
        {KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"}, {KVM_CAP_XSAVE, "XSAVE"},
        {KVM_CAP_XCRS, "XCRS"}, {KVM_CAP_VCPU_EVENTS, "VCPU_EVENTS"},
        {KVM_CAP_DEBUGREGS, "DEBUGREGS"}, {KVM_CAP_GET_TSC_KHZ, "GET_TSC_KHZ"},
        {KVM_CAP_MP_STATE, "MP_STATE"}, {KVM_CAP_ADJUST_CLOCK, "ADJUST_CLOCK"},
    };
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (check(m->vm_fd, required[i].cap) <= 0)
            FAIL(-ENOTSUP, "KVM lacks KVM_CAP_%s", required[i].name);
    if ((unsigned)m->vcpu_count > (unsigned)check(m->vm_fd, KVM_CAP_MAX_VCPUS))
        FAIL(-EINVAL, "KVM allows at most %d vCPUs", check(m->vm_fd, KVM_CAP_MAX_VCPUS));
    int xsave2 = check(m->vm_fd, KVM_CAP_XSAVE2);
    m->xsave_bytes = xsave2 > (int)sizeof(struct kvm_xsave) ? (uint32_t)xsave2
                                                             : (uint32_t)sizeof(struct kvm_xsave);
    if (m->xsave_bytes > KVM_STATE_MAX_XSAVE)
        FAIL(-ENOTSUP, "this CPU's XSAVE area (%u bytes) exceeds %u", m->xsave_bytes,
             KVM_STATE_MAX_XSAVE);
    m->have_deadline_timer = check(m->vm_fd, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
    if (check(m->vm_fd, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) {
        struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
                                     .args = {KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE}};
        if (ioctl(m->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
            FAIL(-errno, "enabling manual dirty-log protection: %s", strerror(errno));
    } else {
        FAIL(-ENOTSUP, "KVM lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2");
    }
    int run_size = ioctl(m->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (run_size <= 0)
        FAIL(-EIO, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
    m->run_size = (size_t)run_size;

    if (ioctl(m->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0)
        FAIL(-errno, "KVM_SET_TSS_ADDR: %s", strerror(errno));
    uint64_t identity = KVM_IDENTITY_MAP_ADDR;
    if (ioctl(m->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity) < 0)
        FAIL(-errno, "KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
    if (ioctl(m->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
        FAIL(-errno, "KVM_CREATE_IRQCHIP: %s", strerror(errno));
    if ((rc = set_memslots(m, false)) < 0)
        FAIL(rc, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-rc));
    m->cpuid = supported_cpuid(m->kvm_fd);
    if (!m->cpuid)
        FAIL(-EIO, "KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
    if ((rc = supported_msrs(m)) < 0)
        FAIL(rc, "KVM_GET_MSR_INDEX_LIST: %s", strerror(-rc));
    if ((rc = make_vcpus(m, err, errlen)) < 0)
        goto fail;
    return m;

fail:
    machine_free(m);
    return NULL;
}

/* --- booting ------------------------------------------------------------------------ */

static int read_kernel(const char *path, uint8_t **out, size_t *len, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "kernel image %s: %s", path, strerror(errno));
        return -errno;
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        st.st_size > KERNEL_MAX_BYTES) {
        snprintf(err, errlen, "kernel image %s: not a regular file of 1..%u bytes", path,
                 KERNEL_MAX_BYTES);
        close(fd);
        return -EINVAL;
    }
    uint8_t *buf = malloc((size_t)st.st_size);
    size_t got = 0;
    while (buf && got < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (!buf || got != (size_t)st.st_size) {
        snprintf(err, errlen, "kernel image %s: read failed", path);
        free(buf);
        return -EIO;
    }
    *out = buf;
    *len = got;
    return 0;
}

typedef struct {
    uint32_t entry, info_gpa;
} boot_regs_t;

static int boot_regs_work(kvm_vcpu_t *v, void *arg)
{
    const boot_regs_t *b = arg;
    return kvm_vcpu_set_boot_state(v, b->entry, b->info_gpa);
}

/* Loads the kernel into RAM, writes the info block, points the BSP at it. */
static int boot(kvm_machine_t *m, char *err, size_t errlen)
{
    vm_t *vm = m->vm;
    uint8_t *file = NULL;
    size_t len = 0;
    int rc = read_kernel(vm->kernel_path, &file, &len, err, errlen);
    if (rc < 0)
        return rc;
    mb_image_t img;
    rc = mb_image_parse(file, len, m->low_bytes, &img, err, errlen);
    if (rc == 0 && img.load_end > m->low_bytes / 2) {
        snprintf(err, errlen, "kernel image %s: %llu bytes leave too little of %llu MiB RAM",
                 vm->kernel_path, (unsigned long long)img.load_end,
                 (unsigned long long)(m->low_bytes >> 20));
        rc = -EINVAL;
    }
    if (rc == 0)
        mb_image_load(&img, file, vm->memory.base);
    free(file);
    if (rc < 0)
        return rc;

    char cmdline[GUEST_CMDLINE_MAX + 64];
    if (vm->args.tsc_khz)
        snprintf(cmdline, sizeof cmdline, "%s", vm->cmdline);
    else
        snprintf(cmdline, sizeof cmdline, "%s tsc_khz=%u", vm->cmdline, m->tsc_khz);
    if (strlen(cmdline) > GUEST_CMDLINE_MAX) {
        snprintf(err, errlen, "command line plus tsc_khz exceeds %d bytes", GUEST_CMDLINE_MAX);
        return -EINVAL;
    }
    mb_ram_range_t ranges[2] = {{0, m->low_bytes}, {KVM_HIGH_RAM_BASE, m->high_bytes}};
    boot_regs_t regs = {.entry = img.entry};
    rc = mb_write_info(vm->memory.base, ranges, m->high_bytes ? 2 : 1, cmdline, &regs.info_gpa,
                       err, errlen);
    if (rc < 0)
        return rc;
    rc = kvm_vcpu_run_on(&m->vcpus[0], boot_regs_work, &regs);
    if (rc < 0)
        snprintf(err, errlen, "setting boot registers: %s", strerror(-rc));
    return rc;
}

/* --- backend ops ------------------------------------------------------------------------ */

static int kvm_create(vm_t *vm, char *err, size_t errlen)
{
    kvm_machine_t *m = machine_new(vm, err, errlen);
    if (!m)
        return -EINVAL;
    vm->impl = m;
    if (!vm->incoming) {
        int rc = boot(m, err, errlen);
        if (rc < 0) {
            machine_free(m);
            vm->impl = NULL;
            return rc;
        }
    }
    return 0;
}

static void kvm_destroy(vm_t *vm)
{
    machine_free(machine_of(vm));
    vm->impl = NULL;
}

static int kvm_start(vm_t *vm)
{
    set_want(machine_of(vm), WANT_RUN);
    return 0;
}

static int kvm_pause(vm_t *vm)
{
    kvm_machine_t *m = machine_of(vm);
    set_want(m, WANT_PARK);
    wait_all_parked(m);
    return 0;
}

static int kvm_resume(vm_t *vm) { return kvm_start(vm); }

static int kvm_reset(vm_t *vm, char *err, size_t errlen)
{
    kvm_destroy(vm);
    int rc = guest_memory_wipe(&vm->memory);
    if (rc < 0) {
        snprintf(err, errlen, "wiping guest memory: %s", strerror(-rc));
        return rc;
    }
    return kvm_create(vm, err, errlen);
}

static uint64_t kvm_cpu_ns(vm_t *vm)
{
    kvm_machine_t *m = machine_of(vm);
    uint64_t total = 0;
    for (unsigned i = 0; m && i < m->vcpu_count; i++) {
        clockid_t clock;
        struct timespec ts;
        if (pthread_getcpuclockid(m->vcpus[i].thread, &clock) == 0 &&
            clock_gettime(clock, &ts) == 0)
            total += (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
    }
    return total;
}

static int kvm_gpa_to_page(const vm_t *vm, uint64_t gpa, uint64_t *page)
{
    const kvm_machine_t *m = machine_of(vm);
    if (gpa < m->low_bytes)
        *page = gpa / VM_PAGE_SIZE;
    else if (gpa >= KVM_HIGH_RAM_BASE && gpa - KVM_HIGH_RAM_BASE < m->high_bytes)
        *page = (m->low_bytes + (gpa - KVM_HIGH_RAM_BASE)) / VM_PAGE_SIZE;
    else
        return -ERANGE;
    return 0;
}

/* --- dirty log ----------------------------------------------------------------------------
 * Slot 0 covers pages [0, low), slot 1 the pages after it; both start on a
 * 64-page boundary, so each slot's bitmap is a run of whole words. */

static int kvm_dirty_enable(vm_t *vm, bool on)
{
    kvm_machine_t *m = machine_of(vm);
    int rc = set_memslots(m, on);
    if (rc == 0)
        m->dirty_on = on;
    return rc;
}

static int kvm_dirty_collect(vm_t *vm, uint64_t *bitmap)
{
    kvm_machine_t *m = machine_of(vm);
    if (!m->dirty_on)
        return -EINVAL;
    struct kvm_dirty_log low = {.slot = 0, .dirty_bitmap = bitmap};
    if (ioctl(m->vm_fd, KVM_GET_DIRTY_LOG, &low) < 0)
        return -errno;
    if (m->high_bytes) {
        struct kvm_dirty_log high = {.slot = 1,
                                     .dirty_bitmap = bitmap + m->low_bytes / VM_PAGE_SIZE / 64};
        if (ioctl(m->vm_fd, KVM_GET_DIRTY_LOG, &high) < 0)
            return -errno;
    }
    return 0;
}

static int kvm_dirty_clear(vm_t *vm, const uint64_t *bitmap)
{
    kvm_machine_t *m = machine_of(vm);
    if (!m->dirty_on)
        return -EINVAL;
    struct kvm_clear_dirty_log low = {.slot = 0, .first_page = 0,
                                      .num_pages = (uint32_t)(m->low_bytes / VM_PAGE_SIZE),
                                      .dirty_bitmap = (void *)bitmap};
    if (ioctl(m->vm_fd, KVM_CLEAR_DIRTY_LOG, &low) < 0)
        return -errno;
    if (m->high_bytes) {
        struct kvm_clear_dirty_log high = {
            .slot = 1, .first_page = 0, .num_pages = (uint32_t)(m->high_bytes / VM_PAGE_SIZE),
            .dirty_bitmap = (void *)(bitmap + m->low_bytes / VM_PAGE_SIZE / 64)};
        if (ioctl(m->vm_fd, KVM_CLEAR_DIRTY_LOG, &high) < 0)
            return -errno;
    }
    return 0;
}

/* --- state ----------------------------------------------------------------------------------- */

static int save_work(kvm_vcpu_t *v, void *arg) { return kvm_vcpu_save(v, arg); }

static int kvm_save_state(vm_t *vm, uint8_t *buf, size_t cap, size_t *len)
{
    kvm_machine_t *m = machine_of(vm);
    kvm_state_t s = {.memory_bytes = vm->memory_bytes};
    if (kvm_state_alloc(&s, m->vcpu_count) < 0)
        return -ENOMEM;
    int rc = 0;
    s.pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
    s.pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
    s.ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
    if (ioctl(m->vm_fd, KVM_GET_IRQCHIP, &s.pic_master) < 0 ||
        ioctl(m->vm_fd, KVM_GET_IRQCHIP, &s.pic_slave) < 0 ||
        ioctl(m->vm_fd, KVM_GET_IRQCHIP, &s.ioapic) < 0 ||
        ioctl(m->vm_fd, KVM_GET_CLOCK, &s.clock) < 0) {
        rc = -errno;
        goto out;
    }
    s.clock.flags &= KVM_CLOCK_TSC_STABLE;  /* realtime/host_tsc mean nothing elsewhere */
    s.clock.realtime = s.clock.host_tsc = 0;
    for (unsigned i = 0; i < m->vcpu_count && rc == 0; i++)
        rc = kvm_vcpu_run_on(&m->vcpus[i], save_work, &s.vcpus[i]);
    if (rc < 0)
        goto out;
    pthread_mutex_lock(&m->lock);
    s.uart = m->uart;
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_lock(&vm->lock);
    s.report = vm->report;
    pthread_mutex_unlock(&vm->lock);
    rc = kvm_state_encode(&s, buf, cap, len);
out:
    kvm_state_free(&s);
    return rc;
}

typedef struct {
    const kvm_vcpu_state_t *state;
    char *err;
    size_t errlen;
} load_job_t;

static int load_work(kvm_vcpu_t *v, void *arg)
{
    load_job_t *job = arg;
    return kvm_vcpu_load(v, job->state, job->err, job->errlen);
}

static int kvm_load_state(vm_t *vm, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    kvm_machine_t *m = machine_of(vm);
    kvm_state_t s;
    int rc = kvm_state_decode(buf, len, &s, err, errlen);
    if (rc < 0)
        return rc;
    if (s.memory_bytes != vm->memory_bytes || s.vcpu_count != m->vcpu_count) {
        snprintf(err, errlen, "vm state is for %llu MiB and %u vCPUs, this VM has %llu MiB and %u",
                 (unsigned long long)(s.memory_bytes >> 20), s.vcpu_count,
                 (unsigned long long)(vm->memory_bytes >> 20), m->vcpu_count);
        rc = -EINVAL;
        goto out;
    }
    if (ioctl(m->vm_fd, KVM_SET_IRQCHIP, &s.pic_master) < 0 ||
        ioctl(m->vm_fd, KVM_SET_IRQCHIP, &s.pic_slave) < 0 ||
        ioctl(m->vm_fd, KVM_SET_IRQCHIP, &s.ioapic) < 0) {
        rc = -errno;
        snprintf(err, errlen, "KVM_SET_IRQCHIP: %s", strerror(errno));
        goto out;
    }
    struct kvm_clock_data clock = {.clock = s.clock.clock};
    if (ioctl(m->vm_fd, KVM_SET_CLOCK, &clock) < 0) {
        rc = -errno;
        snprintf(err, errlen, "KVM_SET_CLOCK: %s", strerror(errno));
        goto out;
    }
    for (unsigned i = 0; i < m->vcpu_count && rc == 0; i++) {
        load_job_t job = {&s.vcpus[i], err, errlen};
        rc = kvm_vcpu_run_on(&m->vcpus[i], load_work, &job);
    }
    if (rc < 0)
        goto out;
    pthread_mutex_lock(&m->lock);
    m->uart = s.uart;
    pthread_mutex_unlock(&m->lock);
    pthread_mutex_lock(&vm->lock);
    vm->report = s.report;
    vm->report.heartbeats_seen = 0;
    vm->report.last_heartbeat_ns = 0;
    pthread_mutex_unlock(&vm->lock);
out:
    kvm_state_free(&s);
    return rc;
}

/* --- throttle ---------------------------------------------------------------------------------- */

static int kvm_throttle(vm_t *vm, unsigned percent)
{
    kvm_machine_t *m = machine_of(vm);
    __atomic_store_n(&m->throttle_percent, percent, __ATOMIC_RELAXED);
    struct itimerspec every = {{0, 0}, {0, 0}};
    if (percent) {
        every.it_interval.tv_nsec = VM_THROTTLE_SLICE_MS * 1000000L;
        every.it_value = every.it_interval;
    }
    for (unsigned i = 0; i < m->vcpu_count; i++) {
        kvm_vcpu_t *v = &m->vcpus[i];
        if (!v->has_throttle_timer) {
            if (!percent)
                continue;
            struct sigevent sev = {0};
            sev.sigev_notify = SIGEV_THREAD_ID;
            sev.sigev_signo = kick_signal();
            sev._sigev_un._tid = v->tid;
            if (timer_create(CLOCK_MONOTONIC, &sev, &v->throttle_timer) < 0)
                return -errno;
            v->has_throttle_timer = true;
        }
        if (timer_settime(v->throttle_timer, 0, &every, NULL) < 0)
            return -errno;
    }
    return 0;
}

const vm_backend_ops_t vm_kvm_backend = {
    .name = "kvm",
    .create = kvm_create,
    .destroy = kvm_destroy,
    .start = kvm_start,
    .pause = kvm_pause,
    .resume = kvm_resume,
    .reset = kvm_reset,
    .cpu_ns = kvm_cpu_ns,
    .gpa_to_page = kvm_gpa_to_page,
    .dirty_enable = kvm_dirty_enable,
    .dirty_collect = kvm_dirty_collect,
    .dirty_clear = kvm_dirty_clear,
    .save_state = kvm_save_state,
    .load_state = kvm_load_state,
    .throttle = kvm_throttle,
};
