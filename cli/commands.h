/* commands.h - the table of ferryctl commands.
 *
 * A command maps words on the command line ("host show") to a control API
 * command ("host.show"), parses its own arguments into a msgpack map, and
 * renders the result as a table. --json output needs nothing per command:
 * the result is printed as JSON as the agent sent it. */
#ifndef FERRY_CLI_COMMANDS_H
#define FERRY_CLI_COMMANDS_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdio.h>

#include "common/ctl_client.h"

struct cli_caller;

typedef struct {
    const char *words;      /* "host show" */
    const char *control;    /* "host.show" */
    const char *usage;      /* arguments after the words, e.g. "NAME [--force]" */
    const char *summary;
    /* Packs exactly one map of arguments. NULL: the command takes none.
     * Returns 0, or -1 with a usage error in err. */
    int (*parse)(int argc, char **argv, msgpack_packer *args, char *err, size_t errlen);
    void (*render)(const msgpack_object *result, FILE *out);
    /* A command that calls the agent more than once (it follows a job to
     * its end) runs this instead of one call + render; returns the exit code. */
    int (*run)(const msgpack_sbuffer *args, bool json, struct cli_caller *caller);
} cli_command_t;

/* Each file cmd_*.c exports its table, ended by an entry with words == NULL. */
extern const cli_command_t cli_host_commands[];
extern const cli_command_t cli_cluster_commands[];
extern const cli_command_t cli_vm_commands[];
extern const cli_command_t cli_migrate_commands[];

/* A command that calls the agent more than once gets this from ferryctl.c:
 * one call, returning an exit code (0: the caller owns and releases response). */
typedef int (cli_call_fn)(void *ctx, const char *command, const msgpack_sbuffer *args, ctl_response_t *response);

/* What a multi-call command gets: calls, and ferryctl's way of failing
 * (one line on stderr; with --json an error object on stdout). */
typedef struct cli_caller {
    cli_call_fn *call;
    int (*fail)(void *ctx, int exit_code, const char *message);
    void *ctx;
} cli_caller_t;

#define CLI_EXIT_AGENT 1      /* as in ferryctl.c: the agent refused or the work failed */

/* vm console NAME --follow: prints new console output until interrupted or
 * an error (returned as an exit code). Returns -1 if argv (after the words
 * "vm console") does not ask to follow. */
int cli_vm_follow(int argc, char **argv, bool json, cli_call_fn *call, void *ctx);

#endif
