/* ferryctl.c - the ferry command-line client.
 *
 *   ferryctl [-a HOST:PORT] [--cred FILE] [--json] [--timeout MS] COMMAND ...
 *
 * Exit codes (docs/cli.md): 0 success, 1 the agent refused or failed the
 * command, 2 bad usage or credential, 3 agent unreachable or timed out,
 * 4 this client's key was rejected, 5 invalid reply. */
#include "common/ctl_client.h"
#include "cli/commands.h"
#include "cli/table.h"
#include "common/credential.h"
#include "common/crypto.h"
#include "common/json.h"

#include <czmq.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { EXIT_AGENT = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_REJECTED = 4, EXIT_PROTOCOL = 5 };

#define DEFAULT_TIMEOUT_MS 5000
#define SYSTEM_CREDENTIAL "/var/lib/ferry/admin.cred"

typedef struct {
    const char *agent;        /* -a HOST:PORT */
    const char *cred_path;    /* --cred FILE */
    bool json;
    int timeout_ms;
} global_options_t;

static const cli_command_t *const command_tables[] = { cli_host_commands, cli_cluster_commands, cli_vm_commands,
                                                         cli_migrate_commands };

static void usage(FILE *out)
{
    fprintf(out, "usage: ferryctl [-a HOST:PORT] [--cred FILE] [--json] [--timeout MS] COMMAND [ARGS]\n\n"
                 "commands:\n");
    fprintf(out, "  %-28s %s\n", "version", "show the client's and the agent's versions");
    for (size_t t = 0; t < sizeof(command_tables) / sizeof(command_tables[0]); t++)
        for (const cli_command_t *c = command_tables[t]; c->words; c++) {
            char left[96];
            snprintf(left, sizeof(left), "%s%s%s", c->words, c->usage[0] ? " " : "", c->usage);
            fprintf(out, "  %-28s %s\n", left, c->summary);
        }
    fprintf(out, "\nThe credential is found in this order: --cred, $FERRY_CRED, a local ferryd --dev\n"
                 "agent, %s. Every command takes --json.\n", SYSTEM_CREDENTIAL);
}

/* One clear line on stderr; with --json, also a JSON error object on stdout. */
static int fail(const global_options_t *opts, int code, const char *message)
{
    fprintf(stderr, "ferryctl: %s\n", message);
    if (opts->json) {
        printf("{\"ok\": false, \"exit_code\": %d, \"error\": ", code);
        json_write_string(stdout, message, strlen(message));
        printf("}\n");
    }
    return code;
}

static bool readable(const char *path)
{
    return path && access(path, R_OK) == 0;
}

static const char *find_credential(const global_options_t *opts, char *buf, size_t cap)
{
    if (opts->cred_path)
        return opts->cred_path;
    const char *env = getenv("FERRY_CRED");
    if (env && *env)
        return env;
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    snprintf(buf, cap, "%s/ferry-dev-%d.cred", runtime && *runtime ? runtime : "/tmp", (int)getuid());
    if (readable(buf))
        return buf;
    if (readable(SYSTEM_CREDENTIAL))
        return SYSTEM_CREDENTIAL;
    return NULL;
}

static int exit_code_for(ctl_status_t status)
{
    switch (status) {
    case CTL_OK: return 0;
    case CTL_ERR_AGENT: return EXIT_AGENT;
    case CTL_ERR_REJECTED: return EXIT_REJECTED;
    case CTL_ERR_PROTOCOL: return EXIT_PROTOCOL;
    default: return EXIT_UNREACHABLE;
    }
}

/* Connects per the global options and runs one control command. On success
 * the caller owns `response`. */
static int call_agent(const global_options_t *opts, const char *command, const msgpack_sbuffer *args,
                      ctl_response_t *response)
{
    char path_buf[PATH_MAX], err[700];
    const char *path = find_credential(opts, path_buf, sizeof(path_buf));
    if (!path)
        return fail(opts, EXIT_USAGE, "no credential found: start an agent with 'ferryd --dev', or pass --cred FILE "
                                      "(ferryd init writes STATE_DIR/admin.cred)");
    credential_t cred;
    if (credential_load(&cred, path, err, sizeof(err)) != 0)
        return fail(opts, EXIT_USAGE, err);
    char endpoint[300];
    if (opts->agent)
        snprintf(endpoint, sizeof(endpoint), "%s%s", strstr(opts->agent, "://") ? "" : "tcp://", opts->agent);
    else
        snprintf(endpoint, sizeof(endpoint), "%s", cred.endpoint);

    ctl_client_t *client = ctl_client_new(endpoint, cred.server_public, &cred.client, opts->timeout_ms);
    if (!client) {
        snprintf(err, sizeof(err), "cannot set up a connection to '%s' (not a HOST:PORT address, or out of sockets)", endpoint);
        return fail(opts, EXIT_USAGE, err);
    }
    ctl_status_t status = ctl_call(client, command, args, response, err, sizeof(err));
    ctl_client_destroy(&client);
    if (status == CTL_ERR_AGENT) {
        int code = exit_code_for(status);
        ctl_response_release(response);
        return fail(opts, code, err);
    }
    if (status != CTL_OK)
        return fail(opts, exit_code_for(status), err);
    return 0;
}

static int call_agent_for(void *ctx, const char *command, const msgpack_sbuffer *args, ctl_response_t *response)
{
    return call_agent(ctx, command, args, response);
}

static int fail_for(void *ctx, int code, const char *message)
{
    return fail(ctx, code, message);
}

static int run_command(const global_options_t *opts, const cli_command_t *command, int argc, char **argv)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    char err[512];
    if (command->parse) {
        if (command->parse(argc, argv, &pk, err, sizeof(err)) != 0) {
            msgpack_sbuffer_destroy(&args);
            char message[700];
            snprintf(message, sizeof(message), "%s: %s (usage: ferryctl %s %s)", command->words, err,
                     command->words, command->usage);
            return fail(opts, EXIT_USAGE, message);
        }
    } else if (argc > 0) {
        msgpack_sbuffer_destroy(&args);
        snprintf(err, sizeof(err), "%s takes no arguments, got '%s'", command->words, argv[0]);
        return fail(opts, EXIT_USAGE, err);
    }
    if (command->run) {
        cli_caller_t caller = { .call = call_agent_for, .fail = fail_for, .ctx = (void *)opts };
        int rc = command->run(&args, opts->json, &caller);
        msgpack_sbuffer_destroy(&args);
        return rc;
    }
    ctl_response_t response;
    int rc = call_agent(opts, command->control, &args, &response);
    msgpack_sbuffer_destroy(&args);
    if (rc != 0)
        return rc;
    const msgpack_object *result = response.reply.result;
    if (opts->json) {
        if (result)
            json_write(stdout, result, 2);
        else
            printf("{}");
        printf("\n");
    } else if (result && command->render) {
        command->render(result, stdout);
    }
    ctl_response_release(&response);
    return 0;
}

static int cmd_version(const global_options_t *opts, int argc, char **argv)
{
    bool client_only = argc > 0 && strcmp(argv[0], "--client") == 0;
    if (client_only) {
        if (opts->json)
            printf("{\"client\": {\"version\": \"%s\"}}\n", FERRY_VERSION);
        else
            printf("ferryctl %s\n", FERRY_VERSION);
        return 0;
    }
    ctl_response_t response;
    int rc = call_agent(opts, "version", NULL, &response);
    if (rc != 0)
        return rc;
    const msgpack_object *result = response.reply.result;
    if (opts->json) {
        printf("{\"client\": {\"version\": \"%s\"}, \"agent\": ", FERRY_VERSION);
        json_write(stdout, result, -1);
        printf("}\n");
    } else {
        char version[64], name[64], cluster[64];
        printf("ferryctl %s\nagent    %s (%s, cluster %s)\n", FERRY_VERSION,
               table_cell_or(result, "version", version, sizeof(version)),
               table_cell_or(result, "name", name, sizeof(name)),
               table_cell_or(result, "cluster", cluster, sizeof(cluster)));
    }
    ctl_response_release(&response);
    return 0;
}

/* Matches the longest command whose words open argv; sets *consumed. */
static const cli_command_t *match_command(int argc, char **argv, int *consumed)
{
    const cli_command_t *best = NULL;
    int best_words = 0;
    for (size_t t = 0; t < sizeof(command_tables) / sizeof(command_tables[0]); t++)
        for (const cli_command_t *c = command_tables[t]; c->words; c++) {
            char words[96];
            snprintf(words, sizeof(words), "%s", c->words);
            int n = 0;
            bool match = true;
            char *save = NULL;
            for (char *w = strtok_r(words, " ", &save); w; w = strtok_r(NULL, " ", &save), n++)
                if (n >= argc || strcmp(argv[n], w) != 0) {
                    match = false;
                    break;
                }
            if (match && n > best_words) {
                best = c;
                best_words = n;
            }
        }
    *consumed = best_words;
    return best;
}

int main(int argc, char **argv)
{
    global_options_t opts = { .timeout_ms = DEFAULT_TIMEOUT_MS };
    /* Global flags may appear anywhere; collect the rest in order. */
    char **rest = calloc((size_t)argc + 1, sizeof(char *));
    int rest_count = 0;
    if (!rest)
        return EXIT_AGENT;
    int rc = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--json") == 0) {
            opts.json = true;
        } else if (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0 || strcmp(arg, "help") == 0) {
            usage(stdout);
            goto out;
        } else if (strcmp(arg, "-a") == 0 || strcmp(arg, "--agent") == 0 || strcmp(arg, "--cred") == 0 ||
                   strcmp(arg, "--timeout") == 0) {
            if (i + 1 >= argc) {
                char message[96];
                snprintf(message, sizeof(message), "%s needs a value", arg);
                rc = fail(&opts, EXIT_USAGE, message);
                goto out;
            }
            const char *value = argv[++i];
            if (strcmp(arg, "--cred") == 0) {
                opts.cred_path = value;
            } else if (strcmp(arg, "--timeout") == 0) {
                char *end = NULL;
                long ms = strtol(value, &end, 10);
                if (!end || *end || ms < 1 || ms > 3600000) {
                    rc = fail(&opts, EXIT_USAGE, "--timeout wants milliseconds between 1 and 3600000");
                    goto out;
                }
                opts.timeout_ms = (int)ms;
            } else {
                opts.agent = value;
            }
        } else {
            rest[rest_count++] = argv[i];
        }
    }
    if (rest_count == 0) {
        usage(stderr);
        rc = EXIT_USAGE;
        goto out;
    }
    zsys_set_logstream(NULL);
    zsys_handler_set(NULL);
    if (strcmp(rest[0], "version") == 0) {
        rc = cmd_version(&opts, rest_count - 1, rest + 1);
        goto out;
    }
    if (rest_count >= 2 && strcmp(rest[0], "vm") == 0 && strcmp(rest[1], "console") == 0) {
        rc = cli_vm_follow(rest_count - 2, rest + 2, opts.json, call_agent_for, &opts);
        if (rc >= 0)
            goto out;
    }
    int consumed = 0;
    const cli_command_t *command = match_command(rest_count, rest, &consumed);
    if (!command) {
        char message[160];
        snprintf(message, sizeof(message), "unknown command '%s' (see ferryctl --help)", rest[0]);
        rc = fail(&opts, EXIT_USAGE, message);
        goto out;
    }
    rc = run_command(&opts, command, rest_count - consumed, rest + consumed);
out:
    free(rest);
    return rc;
}
