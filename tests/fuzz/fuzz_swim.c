/* fuzz_swim.c - libFuzzer target for everything SWIM decodes from the network:
 * UDP packets, push-pull payloads and host-state records, both through the
 * bare decoders and through a live core (which must stay consistent).
 *
 *   clang -fsanitize=fuzzer,address,undefined ... fuzz_swim.c -lferry ...
 *   ./fuzz_swim -max_len=4096 corpus/ */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "agent/membership/swim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static swim_packet_t packet;
    swim_decode_error_t err;
    if (swim_packet_decode(data, size, &packet, &err) < 0 && (!err.what || err.at > size))
        __builtin_trap();   /* a failure must say what and where */

    swim_pushpull_reader_t pr;
    swim_pp_member_t m;
    if (swim_pushpull_open(&pr, data, size, NULL) == 0)
        while (swim_pushpull_next(&pr, &m, NULL) == 1)
            if (m.record_len > SWIM_RECORD_MAX || m.state > SWIM_LEFT)
                __builtin_trap();

    swim_record_t rec;
    if (swim_record_decode(data, size, &rec, NULL, NULL) == 0 &&
        (rec.iface_count > SWIM_RECORD_MAX_IFACES || rec.device_count > SWIM_RECORD_MAX_DEVICES))
        __builtin_trap();

    /* A fresh core per input keeps runs independent and reproducible. */
    swim_t *s = swim_new(NULL, "fuzz", "fuzz-addr", NULL, 0, 1);
    if (!s)
        return 0;
    swim_receive(s, 1000, "peer", data, size);
    swim_receive_pushpull(s, 2000, "peer", data, size);
    swim_tick(s, 5000000);
    swim_output_t out;
    while (swim_next_output(s, &out))
        if (out.kind == SWIM_OUT_UDP && out.len > 1360)
            __builtin_trap();
    swim_event_t ev;
    while (swim_next_event(s, &ev))
        ;
    if (swim_live_count(s) > swim_member_count(s))
        __builtin_trap();
    swim_destroy(&s);
    return 0;
}
