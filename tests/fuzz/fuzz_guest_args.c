/* fuzz_guest_args.c - libFuzzer target for the workload kernel's command
 * line parser (guest/args.c), shared by the guest and the VMM. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "guest/args.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    guest_args_t args;
    char err[64];
    if (guest_args_parse((const char *)data, size, &args, err, sizeof err) == 0)
        guest_args_check_arena(&args, 64u << 20, err, sizeof err);
    return 0;
}
