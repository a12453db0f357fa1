/* vm.c - the backend-neutral VM: config checks, memory, console, guest
 * report registers, run state; everything else goes to the backend. */
#include "vmm/vm_backend.h"
#include "common/log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MIB (1ull << 20)

_Static_assert(sizeof(((vm_status_t *)0)->info) / sizeof(uint64_t) == GUEST_INFO_SLOTS,
               "vm_status_t.info holds every guest info slot");

int64_t vm_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

const char *vm_default_kernel_path(void)
{
    const char *env = getenv("FERRY_GUEST_IMAGE");
    if (env && *env)
        return env;
    /* The image built with this tree, else where install.sh and the
     * container image put it. */
    static const char *const candidates[] = {
#ifdef FERRY_GUEST_IMAGE
        FERRY_GUEST_IMAGE,
#endif
        "/usr/local/lib/ferry/ferry-guest.elf",
        "/usr/lib/ferry/ferry-guest.elf",
    };
    for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]); i++)
        if (access(candidates[i], R_OK) == 0)
            return candidates[i];
    return candidates[0];
}

/* MemAvailable from /proc/meminfo, in bytes; 0 if unknown. */
static uint64_t host_memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "re");
    if (!f)
        return 0;
    char line[128];
    unsigned long long kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1)
            break;
    fclose(f);
    return (uint64_t)kib * 1024;
}

/* /dev/kvm opens and speaks the stable API; why not in why. */
static bool kvm_usable(char *why, size_t whylen)
{
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        snprintf(why, whylen, "/dev/kvm: %s", strerror(errno));
        return false;
    }
    int version = ioctl(fd, KVM_GET_API_VERSION, 0);
    close(fd);
    if (version != KVM_API_VERSION) {
        snprintf(why, whylen, "/dev/kvm does not answer KVM_GET_API_VERSION with %d",
                 KVM_API_VERSION);
        return false;
    }
    return true;
}

const char *vm_default_backend(void)
{
    char why[128];
    return kvm_usable(why, sizeof why) ? "kvm" : "process";
}

static const vm_backend_ops_t *find_backend(const char *name)
{
    if (strcmp(name, "kvm") == 0)
        return &vm_kvm_backend;
    if (strcmp(name, "process") == 0)
        return &vm_proc_backend;
    return NULL;
}

/* The configured backend, or the default (saying so when it is not KVM). */
static const vm_backend_ops_t *pick_backend(const vm_config_t *cfg, const char *vm_name)
{
    if (cfg->backend)
        return find_backend(cfg->backend);
    char why[128];
    if (kvm_usable(why, sizeof why))
        return &vm_kvm_backend;
    log_info("vmm", "%s: %s; using the process backend", vm_name, why);
    return &vm_proc_backend;
}

static int check_config(const vm_config_t *cfg, const vm_backend_ops_t **ops, guest_args_t *args,
                        char *err, size_t errlen)
{
    const char *name = cfg->name ? cfg->name : "vm";
    size_t name_len = strlen(name);
    if (name_len == 0 || name_len > VM_NAME_MAX) {
        snprintf(err, errlen, "vm name must be 1..%d bytes", VM_NAME_MAX);
        return -EINVAL;
    }
    for (size_t i = 0; i < name_len; i++) {
        if (!isalnum((unsigned char)name[i]) && !strchr("-_.", name[i])) {
            snprintf(err, errlen, "vm name '%.*s': only letters, digits, '-', '_' and '.'",
                     VM_NAME_MAX, name);
            return -EINVAL;
        }
    }
    if (!(*ops = pick_backend(cfg, name))) {
        snprintf(err, errlen, "%s: unknown backend '%.32s' (known: kvm, process)", name,
                 cfg->backend);
        return -EINVAL;
    }
    uint64_t mem = cfg->memory_bytes;
    if (mem < VM_MIN_MEMORY || mem > VM_MAX_MEMORY || mem % MIB) {
        snprintf(err, errlen,
                 "%s: memory of %llu bytes is not a multiple of 1 MiB in %llu MiB..%llu GiB", name,
                 (unsigned long long)mem, VM_MIN_MEMORY >> 20, VM_MAX_MEMORY >> 30);
        return -EINVAL;
    }
    if (cfg->vcpus < 1 || cfg->vcpus > VM_MAX_VCPUS) {
        snprintf(err, errlen, "%s: %u vCPUs (valid: 1..%d)", name, cfg->vcpus, VM_MAX_VCPUS);
        return -EINVAL;
    }
    uint64_t available = host_memory_available();
    if (available && mem > available) {
        snprintf(err, errlen, "%s: needs %llu MiB of memory but the host has only %llu MiB available",
                 name, (unsigned long long)(mem >> 20), (unsigned long long)(available >> 20));
        return -ENOMEM;
    }
    const char *cmdline = cfg->cmdline ? cfg->cmdline : "";
    char why[192];
    if (guest_args_parse(cmdline, strlen(cmdline), args, why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: %s", name, why);
        return -EINVAL;
    }
    if (guest_args_check_arena(args, guest_arena_estimate(mem), why, sizeof why) < 0) {
        snprintf(err, errlen, "%s: %s", name, why);
        return -EINVAL;
    }
    const char *kernel = cfg->kernel_path ? cfg->kernel_path : vm_default_kernel_path();
    if (*ops == &vm_kvm_backend && access(kernel, R_OK) < 0) {  /* a process guest boots no image */
        snprintf(err, errlen, "%s: kernel image %s: %s", name, kernel, strerror(errno));
        return -ENOENT;
    }
    return 0;
}

vm_t *vm_new(const vm_config_t *cfg, char *err, size_t errlen)
{
    char scratch[1];
    if (!err || errlen == 0) {
        err = scratch;
        errlen = sizeof scratch;
    }
    err[0] = '\0';
    if (!cfg) {
        snprintf(err, errlen, "vm_new: no config");
        return NULL;
    }
    guest_args_t args;
    const vm_backend_ops_t *ops;
    if (check_config(cfg, &ops, &args, err, errlen) < 0) {
        log_warn("vmm", "%s", err);
        return NULL;
    }

    vm_t *vm = calloc(1, sizeof *vm);
    if (!vm) {
        snprintf(err, errlen, "vm_new: out of memory");
        return NULL;
    }
    snprintf(vm->name, sizeof vm->name, "%s", cfg->name ? cfg->name : "vm");
    vm->memory_bytes = cfg->memory_bytes;
    vm->vcpus = cfg->vcpus;
    vm->kernel_path = strdup(cfg->kernel_path ? cfg->kernel_path : vm_default_kernel_path());
    vm->cmdline = strdup(cfg->cmdline ? cfg->cmdline : "");
    vm->incoming = cfg->incoming;
    vm->awaiting_state = cfg->incoming;
    vm->args = args;
    vm->ops = ops;
    vm->state = VM_CREATED;
    vm->memory.fd = -1;
    pthread_mutex_init(&vm->lock, NULL);
    if (!vm->kernel_path || !vm->cmdline) {
        snprintf(err, errlen, "vm_new: out of memory");
        goto fail;
    }
    if (guest_memory_create(&vm->memory, vm->name, vm->memory_bytes, err, errlen) < 0)
        goto fail;
    if (vm->ops->create(vm, err, errlen) < 0)
        goto fail;
    /* Last, so that a failed vm_new never leaves a log file behind. */
    vm->console = console_new(cfg->console_log_path, err, errlen);
    if (!vm->console) {
        vm->ops->destroy(vm);
        goto fail;
    }
    log_info("vmm", "%s: created (%s, %llu MiB, %u vCPUs, \"%s\")", vm->name, vm->ops->name,
             (unsigned long long)(vm->memory_bytes >> 20), vm->vcpus, vm->cmdline);
    return vm;

fail:
    log_warn("vmm", "%s: %s", vm->name, err);
    guest_memory_release(&vm->memory);
    pthread_mutex_destroy(&vm->lock);
    free(vm->kernel_path);
    free(vm->cmdline);
    free(vm);
    return NULL;
}

void vm_destroy(vm_t **self_p)
{
    vm_t *vm = *self_p;
    if (!vm)
        return;
    vm->ops->destroy(vm);
    console_destroy(&vm->console);
    guest_memory_release(&vm->memory);
    pthread_mutex_destroy(&vm->lock);
    log_info("vmm", "%s: destroyed", vm->name);
    free(vm->kernel_path);
    free(vm->cmdline);
    free(vm);
    *self_p = NULL;
}

const char *vm_backend_name(const vm_t *vm) { return vm->ops->name; }
const char *vm_name(const vm_t *vm) { return vm->name; }

/* --- run state ---------------------------------------------------------------- */

static vm_run_state_t get_state(vm_t *vm)
{
    pthread_mutex_lock(&vm->lock);
    vm_run_state_t s = vm->state;
    pthread_mutex_unlock(&vm->lock);
    return s;
}

/* Moves from `from` to `to` unless the guest stopped the machine meanwhile. */
static void set_state(vm_t *vm, vm_run_state_t from, vm_run_state_t to)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->state == from)
        vm->state = to;
    pthread_mutex_unlock(&vm->lock);
}

int vm_start(vm_t *vm)
{
    if (get_state(vm) != VM_CREATED || vm->awaiting_state)
        return -EINVAL;
    set_state(vm, VM_CREATED, VM_RUNNING);
    int rc = vm->ops->start(vm);
    if (rc < 0)
        set_state(vm, VM_RUNNING, VM_CREATED);
    return rc;
}

int vm_pause(vm_t *vm)
{
    if (get_state(vm) != VM_RUNNING)
        return -EINVAL;
    int rc = vm->ops->pause(vm);
    if (rc == 0)
        set_state(vm, VM_RUNNING, VM_PAUSED);
    return rc;
}

int vm_resume(vm_t *vm)
{
    if (get_state(vm) != VM_PAUSED)
        return -EINVAL;
    set_state(vm, VM_PAUSED, VM_RUNNING);
    int rc = vm->ops->resume(vm);
    if (rc < 0)
        set_state(vm, VM_RUNNING, VM_PAUSED);
    return rc;
}

int vm_reset(vm_t *vm, char *err, size_t errlen)
{
    vm_run_state_t before = get_state(vm);
    pthread_mutex_lock(&vm->lock);
    vm->report = (guest_report_t){0};
    vm->stop_reason[0] = '\0';
    vm->state = VM_CREATED;
    pthread_mutex_unlock(&vm->lock);
    vm->incoming = false;
    vm->awaiting_state = false;
    int rc = vm->ops->reset(vm, err, errlen);
    if (rc < 0) {
        pthread_mutex_lock(&vm->lock);
        vm->state = VM_STOPPED;
        snprintf(vm->stop_reason, sizeof vm->stop_reason, "reset failed");
        pthread_mutex_unlock(&vm->lock);
        return rc;
    }
    if (vm->throttle_percent)
        vm->ops->throttle(vm, vm->throttle_percent);  /* the new machine's threads */
    if (before == VM_RUNNING || before == VM_PAUSED)
        return vm_start(vm);
    return 0;
}

void vm_set_stopped(vm_t *vm, const char *reason)
{
    pthread_mutex_lock(&vm->lock);
    if (vm->state != VM_STOPPED) {
        vm->state = VM_STOPPED;
        snprintf(vm->stop_reason, sizeof vm->stop_reason, "%s", reason);
    }
    pthread_mutex_unlock(&vm->lock);
    log_warn("vmm", "%s: stopped: %s", vm->name, reason);
}

/* The kind a notice word (mailbox or NOTICE_ACK value) carries. */
static vm_notice_t notice_kind_of(uint32_t word)
{
    switch (word >> GUEST_NOTICE_TAG_SHIFT) {
    case GUEST_NOTICE_MIGRATING: return VM_NOTICE_MIGRATING;
    case GUEST_NOTICE_MIGRATED: return VM_NOTICE_MIGRATED;
    default: return VM_NOTICE_NONE;
    }
}

int vm_status(vm_t *vm, vm_status_t *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&vm->lock);
    const guest_report_t *r = &vm->report;
    out->state = vm->state;
    out->heartbeats_seen = r->heartbeats_seen;
    out->heartbeat = r->heartbeat;
    out->last_heartbeat_ns = r->last_heartbeat_ns;
    out->guest_status = r->status;
    out->pages_verified = r->verified;
    out->check_errors = r->errors;
    out->sweeps = r->sweeps;
    out->pages_written = r->written;
    memcpy(out->info, r->info, sizeof out->info);
    out->info_valid = r->info_valid;
    out->notice_acked_kind = notice_kind_of(r->notice_ack);
    out->notice_acked = out->notice_acked_kind == VM_NOTICE_NONE ? 0
                                                                   : r->notice_ack & GUEST_NOTICE_SEQ_MASK;
    out->throttle_percent = vm->throttle_percent;
    snprintf(out->stop_reason, sizeof out->stop_reason, "%s", vm->stop_reason);
    pthread_mutex_unlock(&vm->lock);
    out->vcpu_cpu_ns = vm->ops->cpu_ns(vm);
    return 0;
}

void vm_report_out(vm_t *vm, uint16_t port, uint32_t value)
{
    int64_t now = vm_now_ns();
    pthread_mutex_lock(&vm->lock);
    guest_report_out(&vm->report, port, value, now);
    pthread_mutex_unlock(&vm->lock);
}

uint32_t vm_report_in(vm_t *vm, uint16_t port)
{
    pthread_mutex_lock(&vm->lock);
    uint32_t v = guest_report_in(&vm->report, port);
    pthread_mutex_unlock(&vm->lock);
    return v;
}

size_t vm_console_read(vm_t *vm, uint64_t *cursor, char *buf, size_t len)
{
    return console_read(vm->console, cursor, buf, len);
}

int vm_mailbox_post(vm_t *vm, uint32_t value)
{
    pthread_mutex_lock(&vm->lock);
    vm->report.mailbox = value;
    pthread_mutex_unlock(&vm->lock);
    return 0;
}

/* --- migration notices ------------------------------------------------------- */

static int notice_word(vm_notice_t kind, uint32_t seq, uint32_t *word)
{
    uint32_t tag = kind == VM_NOTICE_MIGRATING  ? GUEST_NOTICE_MIGRATING
                   : kind == VM_NOTICE_MIGRATED ? GUEST_NOTICE_MIGRATED
                                                : 0;
    if (tag == 0 || seq == 0 || seq > VM_NOTICE_SEQ_MAX)
        return -EINVAL;
    *word = tag << GUEST_NOTICE_TAG_SHIFT | seq;
    return 0;
}

int vm_notify(vm_t *vm, vm_notice_t kind, uint32_t seq)
{
    uint32_t word;
    int rc = notice_word(kind, seq, &word);
    if (rc < 0)
        return rc;
    log_info("vmm", "%s: notice %s %u posted to the guest", vm->name,
             kind == VM_NOTICE_MIGRATING ? "migrating" : "migrated", seq);
    return vm_mailbox_post(vm, word);
}

#define NOTIFY_POLL_MS 2

int vm_notify_wait(vm_t *vm, vm_notice_t kind, uint32_t seq, int timeout_ms, bool *acked)
{
    *acked = false;
    if (timeout_ms < 0)
        return -EINVAL;
    int rc = vm_notify(vm, kind, seq);
    if (rc < 0)
        return rc;
    int64_t deadline = vm_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        pthread_mutex_lock(&vm->lock);
        uint32_t ack = vm->report.notice_ack;
        vm_run_state_t state = vm->state;
        pthread_mutex_unlock(&vm->lock);
        if (notice_kind_of(ack) == kind && (ack & GUEST_NOTICE_SEQ_MASK) == seq) {
            *acked = true;
            return 0;
        }
        if (state == VM_STOPPED)
            return -ESRCH;
        int64_t left = deadline - vm_now_ns();
        if (left <= 0)
            return 0;
        struct timespec nap = {0, left < NOTIFY_POLL_MS * 1000000 ? left : NOTIFY_POLL_MS * 1000000};
        nanosleep(&nap, NULL);
    }
}

/* --- memory ------------------------------------------------------------------- */

int vm_memory(vm_t *vm, vm_memory_t *out)
{
    out->base = vm->memory.base;
    out->size = vm->memory.size;
    out->memfd = vm->memory.fd;
    return 0;
}

uint64_t vm_page_count(const vm_t *vm) { return vm->memory_bytes / VM_PAGE_SIZE; }

int vm_gpa_to_page(const vm_t *vm, uint64_t gpa, uint64_t *page)
{
    return vm->ops->gpa_to_page(vm, gpa, page);
}

int vm_memory_hash(vm_t *vm, uint8_t out[32])
{
    if (get_state(vm) == VM_RUNNING)
        return -EBUSY;
    return guest_memory_hash(&vm->memory, out);
}

/* --- dirty tracking, state, throttle ------------------------------------------- */

size_t vm_dirty_bitmap_words(const vm_t *vm) { return (vm_page_count(vm) + 63) / 64; }

int vm_dirty_log_enable(vm_t *vm) { return vm->ops->dirty_enable(vm, true); }
int vm_dirty_log_disable(vm_t *vm) { return vm->ops->dirty_enable(vm, false); }
int vm_dirty_log_collect(vm_t *vm, uint64_t *bitmap) { return vm->ops->dirty_collect(vm, bitmap); }
int vm_dirty_log_clear(vm_t *vm, const uint64_t *bitmap) { return vm->ops->dirty_clear(vm, bitmap); }

int vm_save_state(vm_t *vm, uint8_t *buf, size_t cap, size_t *len)
{
    vm_run_state_t s = get_state(vm);
    if (s == VM_RUNNING)
        return -EBUSY;
    return vm->ops->save_state(vm, buf, cap, len);
}

int vm_load_state(vm_t *vm, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
    vm_run_state_t s = get_state(vm);
    if (s != VM_CREATED && s != VM_PAUSED) {
        snprintf(err, errlen, "%s: load state needs a created or paused VM", vm->name);
        return -EBUSY;
    }
    if (len > VM_STATE_MAX_BYTES) {
        snprintf(err, errlen, "%s: state of %zu bytes exceeds the %u-byte bound", vm->name, len,
                 VM_STATE_MAX_BYTES);
        return -EINVAL;
    }
    int rc = vm->ops->load_state(vm, buf, len, err, errlen);
    if (rc < 0)
        log_warn("vmm", "%s: %s", vm->name, err);
    else
        vm->awaiting_state = false;
    return rc;
}

int vm_throttle(vm_t *vm, unsigned percent)
{
    if (percent > 99)
        return -EINVAL;
    int rc = vm->ops->throttle(vm, percent);
    if (rc == 0) {
        pthread_mutex_lock(&vm->lock);
        vm->throttle_percent = percent;
        pthread_mutex_unlock(&vm->lock);
    }
    return rc;
}
