/* cmd_migrate.c - ferryctl vm migrate, vm migrations, vm migration cancel.
 *
 * `vm migrate` starts a job on the VM's owner and follows it: a progress
 * bar on stderr while it runs (one line per pass when stderr is not a
 * terminal), then a summary; --json prints the finished job instead.
 * Ctrl-C asks the agent to cancel (the VM stays on its source). */
#include "cli/commands.h"
#include "cli/table.h"
#include "common/json.h"
#include "common/wire.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define POLL_MS 200
#define BAR_WIDTH 24

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig) { interrupted = 1; }

static int parse_count(const char *flag, const char *text, uint64_t max, uint64_t *out, char *err, size_t errlen)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = text[0] >= '0' && text[0] <= '9' ? strtoull(text, &end, 10) : 0;
    if (!end || *end || errno || v == 0 || v > max) {
        snprintf(err, errlen, "%s wants a whole number from 1 to %llu, not '%s'", flag, (unsigned long long)max, text);
        return -1;
    }
    *out = v;
    return 0;
}

/* NAME --to HOST [--downtime-ms N] [--streams K] [--verify] */
static int parse_migrate(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    const char *name = NULL, *to = NULL;
    uint64_t downtime_ms = 0, streams = 0;
    bool verify = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has_value = i + 1 < argc;
        if (strcmp(a, "--to") == 0 && has_value) {
            to = argv[++i];
        } else if (strcmp(a, "--downtime-ms") == 0 && has_value) {
            if (parse_count(a, argv[++i], 60000, &downtime_ms, err, errlen) != 0)
                return -1;
        } else if (strcmp(a, "--streams") == 0 && has_value) {
            if (parse_count(a, argv[++i], 8, &streams, err, errlen) != 0)
                return -1;
        } else if (strcmp(a, "--verify") == 0) {
            verify = true;
        } else if (a[0] == '-') {
            snprintf(err, errlen, has_value || strncmp(a, "--", 2) != 0 ? "unknown option '%s'"
                                                                          : "%s needs a value", a);
            return -1;
        } else if (name) {
            snprintf(err, errlen, "unexpected argument '%s' (one NAME only)", a);
            return -1;
        } else {
            name = a;
        }
    }
    if (!name || !to) {
        snprintf(err, errlen, "needs a NAME and --to HOST");
        return -1;
    }
    msgpack_pack_map(args, 2 + (downtime_ms != 0) + (streams != 0) + verify);
    wire_pack_kv_str(args, "name", name);
    wire_pack_kv_str(args, "to", to);
    if (downtime_ms)
        wire_pack_kv_u64(args, "downtime_ms", downtime_ms);
    if (streams)
        wire_pack_kv_u64(args, "streams", streams);
    if (verify)
        wire_pack_kv_bool(args, "verify", true);
    return 0;
}

static int parse_id(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    if (argc != 1 || argv[0][0] == '-') {
        snprintf(err, errlen, "needs one migration ID (see vm migrations)");
        return -1;
    }
    msgpack_pack_map(args, 1);
    wire_pack_kv_str(args, "id", argv[0]);
    return 0;
}

/* --- reading a job ------------------------------------------------------------------------ */

static double num(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = wire_map_find(map, key);
    if (!v)
        return 0;
    switch (v->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER: return (double)v->via.u64;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return (double)v->via.i64;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return v->via.f64;
    default: return 0;
    }
}

static const char *text(const msgpack_object *map, const char *key, char *buf, size_t cap)
{
    const msgpack_object *v = wire_map_find(map, key);
    if (v && v->type == MSGPACK_OBJECT_STR) {
        snprintf(buf, cap, "%.*s", (int)v->via.str.size, v->via.str.ptr);
        return buf;
    }
    buf[0] = '\0';
    return buf;
}

static bool finished(const msgpack_object *job, bool *ok)
{
    char state[16];
    text(job, "state", state, sizeof(state));
    *ok = strcmp(state, "succeeded") == 0;
    return *ok || strcmp(state, "failed") == 0;
}

/* "1.9 GB/s": decimal units, as network rates are written. */
static const char *rate(double bytes_per_s, char *buf, size_t cap)
{
    if (bytes_per_s >= 1e9)
        snprintf(buf, cap, "%.2f GB/s", bytes_per_s / 1e9);
    else
        snprintf(buf, cap, "%.0f MB/s", bytes_per_s / 1e6);
    return buf;
}

/* --- following a job ---------------------------------------------------------------------- */

static void show_progress(const msgpack_object *job, bool tty, uint64_t *last_pass)
{
    const msgpack_object *p = wire_map_find(job, "progress");
    char state[16], phase[16], r1[24], r2[24];
    text(job, "state", state, sizeof(state));
    if (strcmp(state, "queued") == 0) {
        if (*last_pass == 0) {
            fprintf(stderr, "queued (position %.0f): %s runs as many migrations as it may\n",
                    num(job, "queue_position"), "the source");
            *last_pass = UINT64_MAX;
        }
        return;
    }
    if (!p)
        return;
    uint64_t pass = (uint64_t)num(p, "pass");
    double percent = num(p, "percent");
    double stun_us = num(p, "predicted_stun_us");
    char stun[32];
    if (stun_us < 0)
        snprintf(stun, sizeof(stun), "-");
    else
        snprintf(stun, sizeof(stun), "~%.1f ms", stun_us / 1000);
    text(p, "phase", phase, sizeof(phase));
    if (tty) {
        char bar[BAR_WIDTH + 1];
        int filled = (int)(percent / 100 * BAR_WIDTH + 0.5);
        for (int i = 0; i < BAR_WIDTH; i++)
            bar[i] = i < filled ? '#' : '-';
        bar[BAR_WIDTH] = '\0';
        fprintf(stderr, "\r%-10s pass %-3llu [%s] %5.1f%%  %-10s dirty %-10s stun %-9s throttle %.0f%%\033[K",
                phase, (unsigned long long)pass, bar, percent, rate(num(p, "rate_Bps"), r1, sizeof(r1)),
                rate(num(p, "dirty_rate_Bps"), r2, sizeof(r2)), stun, num(p, "throttle_percent"));
        fflush(stderr);
    } else if (pass != *last_pass) {
        fprintf(stderr, "%s pass %llu: %s, dirty %s, predicted stun %s, throttle %.0f%%\n", phase,
                (unsigned long long)pass, rate(num(p, "rate_Bps"), r1, sizeof(r1)),
                rate(num(p, "dirty_rate_Bps"), r2, sizeof(r2)), stun, num(p, "throttle_percent"));
        *last_pass = pass;
    }
}

static void print_summary(const msgpack_object *job, FILE *out)
{
    char vm[64], from[64], to[64], network[16], iface[32], address[64], cipher[24], warning[200], size[32];
    text(job, "vm", vm, sizeof(vm));
    text(job, "from", from, sizeof(from));
    text(job, "to", to, sizeof(to));
    text(job, "network", network, sizeof(network));
    text(job, "interface", iface, sizeof(iface));
    text(job, "address", address, sizeof(address));
    text(job, "cipher", cipher, sizeof(cipher));
    text(job, "warning", warning, sizeof(warning));
    char kind[8];
    bool live = strcmp(text(job, "kind", kind, sizeof(kind)), "live") == 0;
    double total_ms = num(job, "total_ms");
    double bytes = num(job, "bytes_sent");
    fprintf(out, "migrated %s from %s to %s in %.2f s (%s)\n", vm, from, to, total_ms / 1000,
            live ? "live" : "cold: powered off");
    if (live)
        fprintf(out, "  downtime     %.1f ms (stop-and-copy %.1f ms, commit %.1f ms; limit %.0f ms)\n",
                num(job, "downtime_ms"), num(job, "stop_copy_ms"), num(job, "commit_ms"),
                num(job, "downtime_limit_ms"));
    char r[24];
    fprintf(out, "  sent         %s in %.0f passes, %s average; %.0f zero pages elided\n",
            table_bytes((uint64_t)bytes, size, sizeof(size)), num(job, "passes"),
            rate(total_ms > 0 ? bytes / (total_ms / 1000) : 0, r, sizeof(r)), num(job, "zero_pages"));
    if (num(job, "throttle_max_percent") > 0)
        fprintf(out, "  throttled    up to %.0f%% of vCPU time\n", num(job, "throttle_max_percent"));
    const msgpack_object *verified = wire_map_find(job, "hash_verified");
    if (verified && verified->type == MSGPACK_OBJECT_BOOLEAN && verified->via.boolean)
        fprintf(out, "  memory hash  verified at switchover\n");
    const msgpack_object *fallback = wire_map_find(job, "network_fallback");
    if (network[0])
        fprintf(out, "  network      %s (%s, %s), %s%s\n", network, iface, address, cipher,
                fallback && fallback->type == MSGPACK_OBJECT_BOOLEAN && fallback->via.boolean
                    ? live ? "; no vmotion network is configured: fell back to management"
                           : "; no provisioning network is configured: fell back to management"
                    : "");
    if (warning[0])
        fprintf(out, "  warning      %s\n", warning);
}

/* {id, from}: `from` lets an agent other than the source pass the call on. */
static int call_with_id(cli_caller_t *caller, const char *command, const char *id, const char *from,
                        ctl_response_t *response)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    wire_pack_kv_str(&pk, "id", id);
    wire_pack_kv_str(&pk, "from", from);
    int rc = caller->call(caller->ctx, command, &args, response);
    msgpack_sbuffer_destroy(&args);
    return rc;
}

static int run_migrate(const msgpack_sbuffer *args, bool json, cli_caller_t *caller)
{
    ctl_response_t response;
    int rc = caller->call(caller->ctx, "vm.migrate", args, &response);
    if (rc != 0)
        return rc;
    char id[64], source[64];
    text(response.reply.result, "id", id, sizeof(id));
    text(response.reply.result, "from", source, sizeof(source));
    ctl_response_release(&response);
    if (!id[0])
        return caller->fail(caller->ctx, 5, "the agent started a migration but named no id");

    struct sigaction sa = { .sa_handler = on_interrupt }, old_int, old_term;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    bool tty = !json && isatty(STDERR_FILENO);
    bool cancel_sent = false, ok = false;
    uint64_t last_pass = 0;
    for (;;) {
        if (interrupted && !cancel_sent) {
            cancel_sent = true;
            fprintf(stderr, "%scancelling migration %s (the VM stays where it is unless it has committed)\n",
                    tty ? "\n" : "", id);
            if (call_with_id(caller, "vm.migration.cancel", id, source, &response) == 0)
                ctl_response_release(&response);
        }
        rc = call_with_id(caller, "vm.migration", id, source, &response);
        if (rc != 0)
            break;
        const msgpack_object *job = response.reply.result;
        if (finished(job, &ok)) {
            if (tty)
                fprintf(stderr, "\r\033[K");
            char vm[64], from[64], to[64], error[400];
            if (json) {
                json_write(stdout, job, 2);
                printf("\n");
            } else if (ok) {
                print_summary(job, stdout);
            }
            if (!ok) {
                char message[700];
                const msgpack_object *committed = wire_map_find(job, "committed");
                bool moved = committed && committed->type == MSGPACK_OBJECT_BOOLEAN && committed->via.boolean;
                text(job, "vm", vm, sizeof(vm));
                text(job, "from", from, sizeof(from));
                text(job, "to", to, sizeof(to));
                snprintf(message, sizeof(message), "migration of %s to %s failed: %s; %s %s", vm, to,
                         text(job, "error", error, sizeof(error)),
                         moved ? "the cluster names its new owner, which starts it:" : "it keeps running on",
                         moved ? to : from);
                fprintf(stderr, "ferryctl: %s\n", message);
                rc = CLI_EXIT_AGENT;
            }
            ctl_response_release(&response);
            break;
        }
        if (!json)
            show_progress(job, tty, &last_pass);
        ctl_response_release(&response);
        usleep(POLL_MS * 1000);
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    return rc;
}

/* --- vm migrations ------------------------------------------------------------------------ */

static void render_list(const msgpack_object *r, FILE *out)
{
    const msgpack_object *jobs = wire_map_find(r, "migrations");
    if (!jobs || jobs->type != MSGPACK_OBJECT_ARRAY || jobs->via.array.size == 0) {
        fprintf(out, "no migrations\n");
        return;
    }
    table_t *t = table_new(9, "ID", "VM", "KIND", "FROM", "TO", "STATE", "NETWORK", "DOWNTIME", "TOTAL");
    for (uint32_t i = 0; i < jobs->via.array.size; i++) {
        const msgpack_object *j = &jobs->via.array.ptr[i];
        char id[40], vm[64], kind[8], from[64], to[64], state[16], network[16], downtime[24] = "-", total[24] = "-";
        text(j, "id", id, sizeof(id));
        id[12] = '\0';   /* enough to tell them apart; --json has it whole */
        bool ok;
        char role[16];
        text(j, "role", role, sizeof(role));
        if (finished(j, &ok) && ok) {
            /* Downtime is the source's figure, and only a live move has one. */
            if (strcmp(role, "source") == 0 && strcmp(text(j, "kind", kind, sizeof(kind)), "live") == 0)
                snprintf(downtime, sizeof(downtime), "%.1f ms", num(j, "downtime_ms"));
            snprintf(total, sizeof(total), "%.2f s", num(j, "total_ms") / 1000);
        }
        table_add(t, id, text(j, "vm", vm, sizeof(vm)), text(j, "kind", kind, sizeof(kind)),
                  text(j, "from", from, sizeof(from)), text(j, "to", to, sizeof(to)),
                  text(j, "state", state, sizeof(state)), text(j, "network", network, sizeof(network)), downtime,
                  total);
    }
    table_print(t, out);
    table_destroy(&t);
}

static void render_job(const msgpack_object *r, FILE *out)
{
    char id[40], state[16];
    fprintf(out, "migration %s: %s\n", text(r, "id", id, sizeof(id)), text(r, "state", state, sizeof(state)));
}

const cli_command_t cli_migrate_commands[] = {
    { "vm migrate", "vm.migrate", "NAME --to HOST [--downtime-ms N] [--streams K] [--verify]",
      "move a VM to HOST, live if it runs, cold (its suspended image) if it is off; any agent takes it", parse_migrate,
      NULL, run_migrate },
    { "vm migrations", "vm.migration", "", "the migrations this agent ran or runs", NULL, render_list, NULL },
    { "vm migration cancel", "vm.migration.cancel", "ID", "stop a migration before its commit", parse_id,
      render_job, NULL },
    { NULL },
};
