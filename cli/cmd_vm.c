/* cmd_vm.c - ferryctl vm ... */
#include "cli/commands.h"
#include "cli/table.h"
#include "common/json.h"
#include "common/wire.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FOLLOW_POLL_MS 250
#define FOLLOW_CHUNK_BYTES (64u << 10)

static const msgpack_object *field(const msgpack_object *map, const char *key)
{
    return wire_map_find(map, key);
}

/* A whole number with K, M, G, T or P (binary multiples) and an optional
 * "iB" or "B": 64M, 1G, 2048MiB; plain digits are bytes. */
static int parse_size(const char *text, uint64_t *out, char *err, size_t errlen)
{
    const char *p = text;
    if (!isdigit((unsigned char)*p))
        goto bad;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(p, &end, 10);
    if (errno == ERANGE)
        goto too_large;
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    case 'P': shift = 50; end++; break;
    default: break;
    }
    if (shift && (strcmp(end, "iB") == 0 || strcmp(end, "B") == 0))
        end += strlen(end);
    if (*end)
        goto bad;
    if (shift && v > (UINT64_MAX >> shift))
        goto too_large;
    *out = (uint64_t)v << shift;
    return 0;
bad:
    snprintf(err, errlen, "'%s' is not a size (write e.g. 64M, 1G, 2048M)", text);
    return -1;
too_large:
    snprintf(err, errlen, "size '%s' is too large", text);
    return -1;
}

/* The one positional NAME of a command, anywhere among its flags. */
static int take_name(int argc, char **argv, int i, const char **name, char *err, size_t errlen)
{
    if (*name) {
        snprintf(err, errlen, "unexpected argument '%s' (one NAME only)", argv[i]);
        return -1;
    }
    *name = argv[i];
    return 0;
}

static int need_value(int argc, char **argv, int i, char *err, size_t errlen)
{
    if (i + 1 >= argc) {
        snprintf(err, errlen, "%s needs a value", argv[i]);
        return -1;
    }
    return 0;
}

/* --- vm create --------------------------------------------------------------------- */

static int parse_create(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    const char *name = NULL, *profile = NULL, *kernel = NULL, *cmdline = NULL, *host = NULL;
    uint64_t memory = 0, vcpus = 1;
    bool has_memory = false, start = false;
    char kernel_path[PATH_MAX];
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--start") == 0) {
            start = true;
        } else if (strcmp(a, "--memory") == 0 || strcmp(a, "--vcpus") == 0 || strcmp(a, "--profile") == 0 ||
                   strcmp(a, "--kernel") == 0 || strcmp(a, "--cmdline") == 0 || strcmp(a, "--host") == 0) {
            if (need_value(argc, argv, i, err, errlen) != 0)
                return -1;
            const char *value = argv[++i];
            if (strcmp(a, "--memory") == 0) {
                if (parse_size(value, &memory, err, errlen) != 0)
                    return -1;
                has_memory = true;
            } else if (strcmp(a, "--vcpus") == 0) {
                char *end = NULL;
                errno = 0;
                unsigned long long v = strtoull(value, &end, 10);
                if (!isdigit((unsigned char)value[0]) || *end || errno) {
                    snprintf(err, errlen, "--vcpus wants a whole number, got '%s'", value);
                    return -1;
                }
                vcpus = v;
            } else if (strcmp(a, "--profile") == 0) {
                profile = value;
            } else if (strcmp(a, "--kernel") == 0) {
                kernel = value;
            } else if (strcmp(a, "--cmdline") == 0) {
                cmdline = value;
            } else {
                host = value;
            }
        } else if (a[0] == '-') {
            snprintf(err, errlen, "unknown option '%s'", a);
            return -1;
        } else if (take_name(argc, argv, i, &name, err, errlen) != 0) {
            return -1;
        }
    }
    if (!name) {
        snprintf(err, errlen, "needs a NAME");
        return -1;
    }
    if (!has_memory) {
        snprintf(err, errlen, "needs --memory SIZE");
        return -1;
    }
    if (kernel && kernel[0] != '/') {
        /* The agent opens it: make a local relative path absolute. */
        if (!realpath(kernel, kernel_path)) {
            snprintf(err, errlen, "kernel '%s': %s", kernel, strerror(errno));
            return -1;
        }
        kernel = kernel_path;
    }
    msgpack_pack_map(args, 4 + (profile != NULL) + (kernel != NULL) + (cmdline != NULL) + (host != NULL));
    wire_pack_kv_str(args, "name", name);
    wire_pack_kv_u64(args, "memory_bytes", memory);
    wire_pack_kv_u64(args, "vcpus", vcpus);
    wire_pack_kv_bool(args, "start", start);
    if (profile)
        wire_pack_kv_str(args, "profile", profile);
    if (kernel)
        wire_pack_kv_str(args, "kernel", kernel);
    if (cmdline)
        wire_pack_kv_str(args, "cmdline", cmdline);
    if (host)
        wire_pack_kv_str(args, "host", host);
    return 0;
}

/* start, stop, delete, reset, events: NAME (events: optional). */
/* The one NAME (required unless optional) and, if flag is given (e.g.
 * "--suspend"), that switch as the boolean argument key ("suspend"). */
static int parse_name_and_flag(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen, bool optional,
                               const char *flag, const char *key)
{
    const char *name = NULL;
    bool set = false;
    for (int i = 0; i < argc; i++) {
        if (flag && strcmp(argv[i], flag) == 0) {
            set = true;
        } else if (argv[i][0] == '-') {
            snprintf(err, errlen, "unknown option '%s'", argv[i]);
            return -1;
        } else if (take_name(argc, argv, i, &name, err, errlen) != 0) {
            return -1;
        }
    }
    if (!name && !optional) {
        snprintf(err, errlen, "needs a NAME");
        return -1;
    }
    msgpack_pack_map(args, (name ? 1 : 0) + set);
    if (name)
        wire_pack_kv_str(args, "name", name);
    if (set)
        wire_pack_kv_bool(args, key, true);
    return 0;
}

static int parse_name_only(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen, bool optional)
{
    return parse_name_and_flag(argc, argv, args, err, errlen, optional, NULL, NULL);
}

static int parse_name(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    return parse_name_only(argc, argv, args, err, errlen, false);
}

/* stop: NAME [--suspend] */
static int parse_stop(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    return parse_name_and_flag(argc, argv, args, err, errlen, false, "--suspend", "suspend");
}

static int parse_events(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    return parse_name_only(argc, argv, args, err, errlen, true);
}

/* list and show: [NAME] [--linearizable]. */
static int parse_read(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen, bool wants_name)
{
    const char *name = NULL;
    bool linearizable = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--linearizable") == 0) {
            linearizable = true;
        } else if (argv[i][0] == '-' || !wants_name) {
            snprintf(err, errlen, "unexpected argument '%s'", argv[i]);
            return -1;
        } else if (take_name(argc, argv, i, &name, err, errlen) != 0) {
            return -1;
        }
    }
    if (wants_name && !name) {
        snprintf(err, errlen, "needs a NAME");
        return -1;
    }
    msgpack_pack_map(args, 1 + (name != NULL));
    wire_pack_kv_bool(args, "linearizable", linearizable);
    if (name)
        wire_pack_kv_str(args, "name", name);
    return 0;
}

static int parse_list(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    return parse_read(argc, argv, args, err, errlen, false);
}

static int parse_show(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    return parse_read(argc, argv, args, err, errlen, true);
}

/* console: NAME [--bytes N] [--follow]; --follow is run by cli_vm_follow(). */
static int parse_console_args(int argc, char **argv, const char **name, uint64_t *bytes, bool *follow, char *err,
                              size_t errlen)
{
    *name = NULL;
    *bytes = 0;
    *follow = false;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--follow") == 0 || strcmp(argv[i], "-f") == 0) {
            *follow = true;
        } else if (strcmp(argv[i], "--bytes") == 0) {
            if (need_value(argc, argv, i, err, errlen) != 0 || parse_size(argv[++i], bytes, err, errlen) != 0)
                return -1;
        } else if (argv[i][0] == '-') {
            snprintf(err, errlen, "unknown option '%s'", argv[i]);
            return -1;
        } else if (take_name(argc, argv, i, name, err, errlen) != 0) {
            return -1;
        }
    }
    if (!*name) {
        snprintf(err, errlen, "needs a NAME");
        return -1;
    }
    return 0;
}

static void pack_console_args(msgpack_packer *args, const char *name, uint64_t bytes, bool has_cursor,
                              uint64_t cursor)
{
    msgpack_pack_map(args, 1 + (bytes != 0) + has_cursor);
    wire_pack_kv_str(args, "name", name);
    if (bytes)
        wire_pack_kv_u64(args, "max_bytes", bytes);
    if (has_cursor)
        wire_pack_kv_u64(args, "cursor", cursor);
}

static int parse_console(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen)
{
    const char *name;
    uint64_t bytes;
    bool follow;
    if (parse_console_args(argc, argv, &name, &bytes, &follow, err, errlen) != 0)
        return -1;
    pack_console_args(args, name, bytes, false, 0);
    return 0;
}

/* --- rendering ---------------------------------------------------------------------------- */

static const char *bytes_cell(const msgpack_object *map, const char *key, char *buf, size_t cap)
{
    const msgpack_object *v = field(map, key);
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return table_bytes(v->via.u64, buf, cap);
    snprintf(buf, cap, "-");
    return buf;
}

static void render_list(const msgpack_object *r, FILE *out)
{
    const msgpack_object *vms = field(r, "vms");
    if (!vms || vms->type != MSGPACK_OBJECT_ARRAY)
        return;
    if (vms->via.array.size == 0) {
        fprintf(out, "no VMs\n");
        return;
    }
    table_t *t = table_new(10, "NAME", "OWNER", "POWER", "HERE", "STATE", "MEMORY", "VCPUS", "PROFILE", "HEARTBEATS",
                           "CPU%");
    for (uint32_t i = 0; i < vms->via.array.size; i++) {
        const msgpack_object *v = &vms->via.array.ptr[i];
        char name[80], owner[80], power[8], here[8], state[16], mem[32], vcpus[8], profile[160], hb[24], cpu[16];
        table_add(t, table_cell_or(v, "name", name, sizeof(name)), table_cell_or(v, "owner", owner, sizeof(owner)),
                  table_cell_or(v, "power_state", power, sizeof(power)),
                  table_cell_or(v, "running_here", here, sizeof(here)),
                  table_cell_or(v, "runtime_state", state, sizeof(state)), bytes_cell(v, "memory_bytes", mem, sizeof(mem)),
                  table_cell_or(v, "vcpus", vcpus, sizeof(vcpus)), table_cell_or(v, "profile", profile, sizeof(profile)),
                  table_cell_or(v, "heartbeats", hb, sizeof(hb)), table_cell_or(v, "cpu_percent", cpu, sizeof(cpu)));
    }
    table_print(t, out);
    table_destroy(&t);
}

static void print_pair(FILE *out, const char *label, const char *value)
{
    fprintf(out, "%-20s %s\n", label, value && value[0] ? value : "-");
}

static void print_field(FILE *out, const char *label, const msgpack_object *map, const char *key)
{
    char buf[512];
    print_pair(out, label, table_cell_or(map, key, buf, sizeof(buf)));
}

static void render_events_table(const msgpack_object *events, FILE *out, bool with_vm)
{
    if (!events || events->type != MSGPACK_OBJECT_ARRAY || events->via.array.size == 0) {
        fprintf(out, "no events\n");
        return;
    }
    table_t *t = with_vm ? table_new(4, "TIME", "VM", "KIND", "MESSAGE") : table_new(3, "TIME", "KIND", "MESSAGE");
    for (uint32_t i = 0; i < events->via.array.size; i++) {
        const msgpack_object *e = &events->via.array.ptr[i];
        const msgpack_object *ms = field(e, "time_ms");
        char when[32] = "-", vm[80], kind[32], message[256];
        if (ms && ms->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            time_t secs = (time_t)(ms->via.u64 / 1000);
            struct tm tm;
            gmtime_r(&secs, &tm);
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        }
        if (with_vm)
            table_add(t, when, table_cell_or(e, "vm", vm, sizeof(vm)), table_cell_or(e, "kind", kind, sizeof(kind)),
                      table_cell_or(e, "message", message, sizeof(message)));
        else
            table_add(t, when, table_cell_or(e, "kind", kind, sizeof(kind)),
                      table_cell_or(e, "message", message, sizeof(message)));
    }
    table_print(t, out);
    table_destroy(&t);
}

static void render_show(const msgpack_object *r, FILE *out)
{
    char buf[64], line[256];
    print_field(out, "name", r, "name");
    print_field(out, "owner", r, "owner");
    print_field(out, "power (desired)", r, "power_state");
    print_field(out, "running here", r, "running_here");
    print_field(out, "runtime state", r, "runtime_state");
    print_pair(out, "memory", bytes_cell(r, "memory_bytes", buf, sizeof(buf)));
    print_field(out, "vcpus", r, "vcpus");
    print_field(out, "profile", r, "profile");
    print_field(out, "kernel", r, "kernel");
    print_field(out, "cmdline", r, "cmdline");
    print_field(out, "generation", r, "generation");
    print_field(out, "backend", r, "backend");
    print_field(out, "start error", r, "start_error");
    print_field(out, "stop reason", r, "stop_reason");
    print_field(out, "guest status", r, "guest_status");
    print_field(out, "heartbeats", r, "heartbeats");
    print_field(out, "last heartbeat (ms)", r, "last_heartbeat_age_ms");
    print_field(out, "cpu %", r, "cpu_percent");
    char rate[32];
    const msgpack_object *dirty = field(r, "dirty_bytes_per_s");
    const msgpack_object *pages = field(r, "dirty_pages_per_s");
    if (dirty && (dirty->type == MSGPACK_OBJECT_FLOAT64 || dirty->type == MSGPACK_OBJECT_FLOAT32) && pages) {
        snprintf(line, sizeof(line), "%.0f pages/s (%s/s)", pages->via.f64,
                 table_bytes((uint64_t)dirty->via.f64, rate, sizeof(rate)));
        print_pair(out, "dirty rate", line);
    }
    const msgpack_object *window = field(r, "active_set_window_s");
    const msgpack_object *valid = field(r, "active_set_valid");
    uint64_t window_s = window && window->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? window->via.u64 : 0;
    if (valid && valid->type == MSGPACK_OBJECT_BOOLEAN && valid->via.boolean)
        snprintf(line, sizeof(line), "%s (pages written in the last %" PRIu64 " s window)",
                 bytes_cell(r, "active_set_bytes", buf, sizeof(buf)), window_s);
    else
        snprintf(line, sizeof(line), "- (measured over %" PRIu64 " s windows; none complete yet)", window_s);
    print_pair(out, "active set", line);
    print_field(out, "monitor resets", r, "monitor_resets");
    print_field(out, "console log", r, "console_log");
    fprintf(out, "\n");
    render_events_table(field(r, "events"), out, false);
}

static void render_events(const msgpack_object *r, FILE *out)
{
    render_events_table(field(r, "events"), out, true);
}

static void render_message(const msgpack_object *r, FILE *out)
{
    char message[600];
    fprintf(out, "%s\n", table_cell_or(r, "message", message, sizeof(message)));
}

static void render_console(const msgpack_object *r, FILE *out)
{
    const msgpack_object *data = field(r, "data");
    if (data && data->type == MSGPACK_OBJECT_STR)
        fwrite(data->via.str.ptr, 1, data->via.str.size, out);
}

/* --- vm console --follow --------------------------------------------------------------------- */

int cli_vm_follow(int argc, char **argv, bool json, cli_call_fn *call, void *ctx)
{
    const char *name;
    uint64_t bytes;
    bool follow;
    char err[256];
    if (parse_console_args(argc, argv, &name, &bytes, &follow, err, sizeof(err)) != 0 || !follow)
        return -1;   /* not ours: the usual path reports usage errors */
    bool has_cursor = false;
    uint64_t cursor = 0;
    for (;;) {
        msgpack_sbuffer args;
        msgpack_sbuffer_init(&args);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
        pack_console_args(&pk, name, has_cursor ? FOLLOW_CHUNK_BYTES : bytes, has_cursor, cursor);
        ctl_response_t response;
        int rc = call(ctx, "vm.console", &args, &response);
        msgpack_sbuffer_destroy(&args);
        if (rc != 0)
            return rc;
        const msgpack_object *result = response.reply.result;
        const msgpack_object *next = result ? field(result, "cursor") : NULL;
        const msgpack_object *data = result ? field(result, "data") : NULL;
        bool more = data && data->type == MSGPACK_OBJECT_STR && data->via.str.size > 0;
        if (json && (more || !has_cursor)) {
            json_write(stdout, result, -1);
            printf("\n");
        } else if (!json && result) {
            render_console(result, stdout);
        }
        fflush(stdout);
        if (next && next->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
            cursor = next->via.u64;
            has_cursor = true;
        }
        ctl_response_release(&response);
        if (!more)
            usleep(FOLLOW_POLL_MS * 1000);
    }
}

const cli_command_t cli_vm_commands[] = {
    { "vm create", "vm.create",
      "NAME --memory SIZE [--vcpus N] [--profile P | --kernel FILE [--cmdline STR]] [--host H] [--start]",
      "create a VM (profile e.g. web:hot=64M,rate=200M; default idle) on H or this host", parse_create,
      render_message, NULL },
    { "vm list", "vm.list", "[--linearizable]", "every VM: owner, desired power, whether it runs here", parse_list,
      render_list, NULL },
    { "vm show", "vm.show", "NAME [--linearizable]", "one VM: spec, runtime measurements, events", parse_show,
      render_show, NULL },
    { "vm start", "vm.start", "NAME", "set desired power on (its owner starts it)", parse_name, render_message, NULL },
    { "vm stop", "vm.stop", "NAME [--suspend]",
      "set desired power off (its owner stops it; --suspend saves memory and state for a later start)", parse_stop,
      render_message, NULL },
    { "vm reset", "vm.reset", "NAME", "power-cycle the VM (on the agent that runs it)", parse_name, render_message, NULL },
    { "vm delete", "vm.delete", "NAME", "delete a powered-off VM", parse_name, render_message, NULL },
    { "vm console", "vm.console", "NAME [--bytes N] [--follow]", "the VM's serial console output on this host",
      parse_console, render_console, NULL },
    { "vm events", "vm.events", "[NAME]", "this agent's VM events (starts, stops, resets, self-fencing)",
      parse_events, render_events, NULL },
    { NULL },
};
