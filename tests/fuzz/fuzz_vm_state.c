/* fuzz_vm_state.c - libFuzzer target for the saved VM state decoder
 * (vmm/kvm_state.c), which reads state received from other hosts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "vmm/kvm_state.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kvm_state_t s;
    char err[256];
    if (kvm_state_decode(data, size, &s, err, sizeof err) == 0) {
        /* Whatever decodes must encode and decode again. */
        size_t need = kvm_state_encoded_size(&s), len = 0;
        uint8_t *again = malloc(need);
        kvm_state_t t;
        if (!again || kvm_state_encode(&s, again, need, &len) != 0 || len != need ||
            kvm_state_decode(again, len, &t, err, sizeof err) != 0)
            abort();
        kvm_state_free(&t);
        free(again);
        kvm_state_free(&s);
    }
    return 0;
}
