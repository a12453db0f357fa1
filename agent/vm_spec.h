/* vm_spec.h - what a VM boots, as the cluster stores it, and the checks on
 * the shape a user asks for. Pure: strings and numbers in, verdicts out.
 *
 * The FSM keeps one string per VM, its "profile" field, that says what it
 * boots. Two forms:
 *
 *   web:hot=64M,rate=200M        a workload profile of the bundled kernel
 *                                (guest/): NAME[:KEY=VALUE[,KEY=VALUE]...]
 *   kernel:/boot/x.elf a=1 b     any Multiboot v1 image, then its command line
 *
 * vm_spec_decode() turns either into a kernel path and command line for
 * vm_new(). The profile form becomes "profile=web hot=64M rate=200M" and is
 * checked with the guest's own parser (guest/args.h), so a bad profile is
 * refused before anything is proposed, in the words the guest would use. */
#ifndef FERRY_AGENT_VM_SPEC_H
#define FERRY_AGENT_VM_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/fsm.h"
#include "guest/args.h"

#define VM_SPEC_KERNEL_PREFIX "kernel:"

typedef struct {
    bool custom_kernel;                    /* false: the bundled workload kernel */
    char kernel_path[FSM_PROFILE_MAX];     /* custom kernel only */
    char cmdline[GUEST_CMDLINE_MAX + 1];
} vm_boot_t;

/* Decodes a stored spec for a VM of memory_bytes of RAM. Checks the command
 * line as vm_new() will (every command line goes through guest/args.h, and a
 * profile's sizes must fit the guest's memory). Returns 0, or -1 with one
 * line in err that quotes the spec. */
int vm_spec_decode(const char *spec, uint64_t memory_bytes, vm_boot_t *out, char *err, size_t errlen);

/* Builds the stored spec of a custom kernel ("kernel:PATH CMDLINE") into
 * out (FSM_PROFILE_MAX bytes). The path must be absolute and free of spaces;
 * the whole must fit the FSM's field. Returns 0 or -1 with err. */
int vm_spec_encode_kernel(const char *path, const char *cmdline, char out[FSM_PROFILE_MAX], char *err,
                          size_t errlen);

/* A VM name: 1..63 letters, digits, '-', '_' or '.' (what vm_new accepts,
 * and safe as a folder name). Returns 0 or -1 with err. */
int vm_spec_check_name(const char *name, char *err, size_t errlen);

/* Memory in whole MiB within what the VMM runs (vm.h: VM_MIN_MEMORY..
 * VM_MAX_MEMORY) and 1..VM_MAX_VCPUS vCPUs. Returns 0 or -1 with err. */
int vm_spec_check_shape(uint64_t memory_bytes, uint64_t vcpus, char *err, size_t errlen);

/* "64 MiB", "1.5 GiB", "100 TiB": for messages. Returns buf. */
const char *vm_spec_bytes(uint64_t bytes, char *buf, size_t cap);

#endif
