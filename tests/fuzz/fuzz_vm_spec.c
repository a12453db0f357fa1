/* fuzz_vm_spec.c - libFuzzer target for the VM spec decoder (agent/vm_spec.c):
 * the profile string or "kernel:PATH CMDLINE" a user gives, and the string
 * the cluster state stores. The first byte picks the VM's memory size. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent/vm_spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint64_t memory = (uint64_t)(data[0] + 1) << 20;
    char *text = malloc(size);
    if (!text)
        return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    vm_boot_t boot;
    char err[256], spec[FSM_PROFILE_MAX];
    vm_spec_decode(text, memory, &boot, err, sizeof err);
    vm_spec_check_name(text, err, sizeof err);
    vm_spec_encode_kernel(text, text, spec, err, sizeof err);
    free(text);
    return 0;
}
