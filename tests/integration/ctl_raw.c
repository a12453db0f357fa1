/* ctl_raw.c - test tool: sends arbitrary bytes to an agent's control API
 * with a valid admin credential, and prints what comes back.
 *
 *   ctl_raw CREDFILE garbage|truncated|badtype|nocommand
 *
 * Exit 0 when the agent answered with an error reply (what a malformed
 * request must get), 1 when it answered "ok", 3 when it did not answer. */
#include "common/ctl_client.h"
#include "common/credential.h"
#include "common/crypto.h"
#include "common/wire.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ctl_raw CREDFILE garbage|truncated|badtype|nocommand\n");
        return 2;
    }
    crypto_init();
    char err[512];
    credential_t cred;
    if (credential_load(&cred, argv[1], err, sizeof(err)) != 0) {
        fprintf(stderr, "ctl_raw: %s\n", err);
        return 2;
    }
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    const char *kind = argv[2];
    if (strcmp(kind, "garbage") == 0) {
        msgpack_sbuffer_write(&buf, "\xc1\xff\x00garbage\x93", 11);
    } else if (strcmp(kind, "truncated") == 0) {
        wire_envelope_begin(&pk, WIRE_CONTROL_REQUEST, "ctl_raw");
        msgpack_pack_map(&pk, 1);
        wire_pack_kv_str(&pk, "command", "host.show");
        buf.size -= 3;
    } else if (strcmp(kind, "badtype") == 0) {
        wire_envelope_begin(&pk, WIRE_CONTROL_REQUEST, "ctl_raw");
        msgpack_pack_map(&pk, 1);
        wire_pack_str(&pk, "command");
        msgpack_pack_uint64(&pk, 42);
    } else {
        wire_envelope_begin(&pk, WIRE_CONTROL_REQUEST, "ctl_raw");
        msgpack_pack_map(&pk, 0);
    }
    ctl_client_t *client = ctl_client_new(cred.endpoint, cred.server_public, &cred.client, 5000);
    ctl_response_t response;
    ctl_status_t status = client ? ctl_send_raw(client, buf.data, buf.size, &response, err, sizeof(err))
                                 : CTL_ERR_UNREACHABLE;
    ctl_client_destroy(&client);
    msgpack_sbuffer_destroy(&buf);
    if (status == CTL_ERR_AGENT) {
        printf("error reply (code %lld): %s\n", (long long)response.reply.code, response.reply.error);
        ctl_response_release(&response);
        return 0;
    }
    if (status == CTL_OK) {
        printf("unexpected ok reply\n");
        ctl_response_release(&response);
        return 1;
    }
    fprintf(stderr, "ctl_raw: %s\n", err);
    return 3;
}
