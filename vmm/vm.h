/* vm.h - a virtual machine running the ferry workload kernel.
 *
 * The face the agent and the migration code use, whatever runs the guest.
 * Two backends sit behind the same calls: "kvm" (vmm/kvm*.c: a micro-VMM on
 * /dev/kvm) and "process" (vmm/proc*.c: the same workload in a guest
 * process, for hosts without KVM).
 *
 * Life cycle:
 *
 *     vm_new ──► CREATED ──vm_start──► RUNNING ◄──vm_resume── PAUSED
 *                  │                      │ └──────vm_pause─────►│
 *                  └─vm_load_state        └─► STOPPED (guest halted the
 *                                             machine: shutdown, fault)
 *
 * A restore (or the receiving end of a migration) creates the VM with
 * cfg.incoming = true, fills guest memory (vm_memory), loads the saved
 * vCPU/device state (vm_load_state) and calls vm_start.
 *
 * Guest memory is one memfd of cfg.memory_bytes, mapped shared into this
 * process. "Page i" everywhere in this API means bytes [i*4096, i*4096+4096)
 * of that memfd, whatever guest-physical address the backend gives it.
 *
 * All functions return 0 or a negative errno-style code. Those taking err
 * write a one-line reason there on failure (and log it). Thread safety: one
 * controlling thread calls these; vm_status, vm_console_read,
 * vm_mailbox_post, vm_notify and vm_notify_wait may be called from any
 * thread. */
#ifndef FERRY_VMM_VM_H
#define FERRY_VMM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct vm vm_t;

#define VM_PAGE_SIZE 4096u
#define VM_NAME_MAX 63
#define VM_MIN_MEMORY (32ull << 20)
#define VM_MAX_MEMORY (64ull << 30)  /* the guest maps 64 GiB */
#define VM_MAX_VCPUS 64
#define VM_STATE_MAX_BYTES (2u << 20)  /* bound on a saved state blob */

typedef struct {
    const char *name;              /* for logs; up to VM_NAME_MAX bytes */
    uint64_t memory_bytes;         /* multiple of 1 MiB, VM_MIN_MEMORY..VM_MAX_MEMORY */
    unsigned vcpus;                /* 1..VM_MAX_VCPUS */
    const char *kernel_path;       /* NULL: vm_default_kernel_path() */
    const char *cmdline;           /* workload kernel command line (guest/args.h) */
    const char *console_log_path;  /* NULL: console kept in memory only */
    const char *backend;           /* "kvm", "process", or NULL: vm_default_backend() */
    bool incoming;                 /* memory and state will be loaded: do not boot the kernel */
} vm_config_t;

typedef enum {
    VM_CREATED,
    VM_RUNNING,
    VM_PAUSED,
    VM_STOPPED,  /* the guest stopped the machine; see vm_status_t.stop_reason */
} vm_run_state_t;

/* Notices to the guest about its migration (vm_notify). */
typedef enum {
    VM_NOTICE_NONE,
    VM_NOTICE_MIGRATING,  /* the host is about to migrate this VM */
    VM_NOTICE_MIGRATED,   /* that migration finished */
} vm_notice_t;

#define VM_NOTICE_SEQ_MAX 0xffffffu  /* sequence numbers are 1..this (24 bits) */

typedef struct {
    vm_run_state_t state;
    /* What the guest reported (guest/protocol.h). Cumulative counters are the
     * guest's own, so they carry on across save/restore and migration. */
    uint64_t heartbeats_seen;      /* heartbeats this VM object received */
    uint32_t heartbeat;            /* the guest's heartbeat counter */
    int64_t last_heartbeat_ns;     /* CLOCK_MONOTONIC of the last one; 0 = none yet */
    uint32_t guest_status;         /* GUEST_STATUS_* */
    uint64_t pages_verified;
    uint64_t check_errors;
    uint64_t sweeps;
    uint64_t pages_written;
    uint64_t info[16];             /* GUEST_INFO_* slots (guest/protocol.h) */
    uint32_t info_valid;           /* bit k set: info[k] was reported */
    /* The last notice the guest acknowledged; kind VM_NOTICE_NONE, seq 0
     * if none. Saved with the VM, so it carries across a migration. */
    vm_notice_t notice_acked_kind;
    uint32_t notice_acked;         /* its sequence number */
    /* What the host measured. */
    uint64_t vcpu_cpu_ns;          /* CPU time of all vCPU threads */
    unsigned throttle_percent;
    char stop_reason[96];          /* set in VM_STOPPED */
} vm_status_t;

/* The workload kernel image: $FERRY_GUEST_IMAGE, else the one built with
 * this tree (build/guest/ferry-guest.elf). */
const char *vm_default_kernel_path(void);

/* The backend a VM gets when its config names none: "kvm" if /dev/kvm opens
 * and answers, else "process" (vm_new logs why when it falls back). */
const char *vm_default_backend(void);

/* Checks the config (sizes, host memory, kernel image, command line), then
 * creates the VM in VM_CREATED. On failure nothing is left behind: no
 * threads, no descriptors, no console log file. */
vm_t *vm_new(const vm_config_t *cfg, char *err, size_t errlen);
void vm_destroy(vm_t **self_p);

const char *vm_backend_name(const vm_t *vm);  /* "kvm" or "process" */
const char *vm_name(const vm_t *vm);

int vm_start(vm_t *vm);    /* CREATED -> RUNNING; an incoming VM needs vm_load_state first */
int vm_pause(vm_t *vm);    /* RUNNING -> PAUSED; returns when no vCPU runs guest code */
int vm_resume(vm_t *vm);   /* PAUSED -> RUNNING */
/* Power cycle: memory is wiped, the kernel reloaded; the VM ends up RUNNING
 * if it was running or paused, else CREATED. */
int vm_reset(vm_t *vm, char *err, size_t errlen);

int vm_status(vm_t *vm, vm_status_t *out);

/* Console bytes from *cursor on (an offset in everything the guest ever
 * printed). Copies at most len bytes, advances *cursor and returns the count.
 * If the ring already dropped bytes at *cursor, skips ahead to the oldest
 * byte still held. */
size_t vm_console_read(vm_t *vm, uint64_t *cursor, char *buf, size_t len);

/* Posts a value the guest reads from GUEST_PORT_MAILBOX (test profile). */
int vm_mailbox_post(vm_t *vm, uint32_t value);

/* --- migration notices ----------------------------------------------------------
 * vSphere-8 style: before a migration the host tells the guest and waits (up
 * to a timeout) for its acknowledgement; afterwards it tells it the move is
 * done. The notice goes through the mailbox (replacing what it held); the
 * guest polls it at its wake-ups (every heartbeat period at least), prints a
 * console line and acknowledges; vm_status shows the acknowledgement. A
 * paused guest acknowledges after vm_resume. docs/guest.md has the protocol.
 *
 * vm_notify: posts the notice and returns; -EINVAL for an unknown kind or a
 * seq outside 1..VM_NOTICE_SEQ_MAX. A repeated (kind, seq) is acknowledged
 * once, so re-posting after a timeout is harmless.
 *
 * vm_notify_wait: vm_notify, then polls every few milliseconds (sleeping in
 * between) until the guest acknowledged (kind, seq) or timeout_ms passed.
 * Returns 0 with *acked telling which; -EINVAL as vm_notify or for a
 * negative timeout; -ESRCH if the VM is or becomes stopped (no guest is
 * left to answer). */
int vm_notify(vm_t *vm, vm_notice_t kind, uint32_t seq);
int vm_notify_wait(vm_t *vm, vm_notice_t kind, uint32_t seq, int timeout_ms, bool *acked);

/* --- memory ------------------------------------------------------------------ */

typedef struct {
    uint8_t *base;   /* mapped shared, read-write */
    uint64_t size;
    int memfd;       /* owned by the VM */
} vm_memory_t;

int vm_memory(vm_t *vm, vm_memory_t *out);
uint64_t vm_page_count(const vm_t *vm);
/* The memory page that holds guest-physical address gpa; -ERANGE if none. */
int vm_gpa_to_page(const vm_t *vm, uint64_t gpa, uint64_t *page);

/* BLAKE2b-256 of memory contents: over each page that is not all zeros, its
 * little-endian page index then its 4096 bytes. Holes in the memfd are
 * skipped without being touched. Pause the VM first. */
int vm_memory_hash(vm_t *vm, uint8_t out[32]);

/* --- dirty page tracking -------------------------------------------------------
 * enable: from now on every page the guest writes gets its bit set.
 * collect: ORs nothing, writes the current bits into bitmap (vm_dirty_bitmap_words
 *          uint64_t words, bit i of word i/64 = page i); bits stay set.
 * clear: clears the given bits and re-arms tracking of those pages.
 * The usual pass: collect, clear the same bitmap, then copy those pages. */
size_t vm_dirty_bitmap_words(const vm_t *vm);
int vm_dirty_log_enable(vm_t *vm);
int vm_dirty_log_disable(vm_t *vm);
int vm_dirty_log_collect(vm_t *vm, uint64_t *bitmap);
int vm_dirty_log_clear(vm_t *vm, const uint64_t *bitmap);

/* --- vCPU and device state ------------------------------------------------------
 * A versioned, bounded byte blob (at most VM_STATE_MAX_BYTES). Save needs the
 * VM paused (or created); load needs it created or paused and checks every
 * length, count and field before touching a vCPU. */
int vm_save_state(vm_t *vm, uint8_t *buf, size_t cap, size_t *len);
int vm_load_state(vm_t *vm, const uint8_t *buf, size_t len, char *err, size_t errlen);

/* --- throttling -------------------------------------------------------------------
 * Each vCPU sleeps percent% of every 10 ms slice (0 = off, at most 99). */
#define VM_THROTTLE_SLICE_MS 10
int vm_throttle(vm_t *vm, unsigned percent);

#endif
