/* fuzz_wire.c - libFuzzer target for the envelope and control decoders. */
#include "common/wire.h"

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wire_envelope_t env;
    char err[256];
    if (wire_envelope_decode(&env, data, size, err, sizeof(err)) != 0)
        return 0;
    wire_control_request_t req;
    wire_control_reply_t rep;
    if (wire_control_request_decode(&env, &req, err, sizeof(err)) == 0) {
        char name[64];
        uint64_t u;
        (void)wire_get_str(req.args, "name", name, sizeof(name), err, sizeof(err));
        (void)wire_get_u64(req.args, "memory", &u, err, sizeof(err));
    }
    (void)wire_control_reply_decode(&env, &rep, err, sizeof(err));
    wire_envelope_release(&env);
    return 0;
}
