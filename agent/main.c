/* main.c - ferryd: the ferry agent.
 *
 *   ferryd init --cluster NAME --state-dir DIR [--name NAME] [--join-existing]
 *   ferryd run --config FILE [flags]
 *   ferryd --dev [flags]
 *   ferryd version
 *
 * Exit codes: 0 clean stop, 1 runtime failure, 2 bad usage or configuration. */
#include "agent/agent.h"
#include "agent/statedir.h"
#include "common/config.h"
#include "common/crypto.h"
#include "common/fsutil.h"
#include "common/log.h"
#include "migration/stream.h"

#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_RUNTIME 1
#define EXIT_USAGE 2

static void usage(FILE *out)
{
    fprintf(out,
            "usage: ferryd init --cluster NAME --state-dir DIR [--name NAME] [--join-existing]\n"
            "       ferryd run --config FILE [FLAGS]\n"
            "       ferryd --dev [FLAGS]\n"
            "       ferryd version\n"
            "\n"
            "FLAGS override the config file:\n"
            "  --state-dir DIR       [agent] state_dir\n"
            "  --name NAME           [agent] name\n"
            "  --bind ADDRESS        [agent] bind\n"
            "  --join HOST:PORT,...  [agent] join\n"
            "  --log-level LEVEL     debug, info, warn or error\n"
            "  --set SECTION.KEY=VALUE   any config key, e.g. --set ports.control=7500\n"
            "\n"
            "Every key is documented in deploy/ferry.conf.example and docs/configuration.md.\n");
}

/* --- ferryd init -------------------------------------------------------- */

static int cmd_init(int argc, char **argv)
{
    statedir_init_t opts = { 0 };
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            printf("usage: ferryd init --cluster NAME --state-dir DIR [--name NAME] [--join-existing]\n\n"
                   "Makes a state dir: the cluster key (unless --join-existing: copy cluster.key from a\n"
                   "member into DIR first), this agent's identity and an admin credential for ferryctl.\n"
                   "The first host of a cluster founds it; every other host joins with --join-existing.\n");
            return 0;
        }
        if (strcmp(arg, "--join-existing") == 0) {
            opts.join_existing = 1;
            continue;
        }
        if (!value || strncmp(arg, "--", 2) != 0) {
            fprintf(stderr, "ferryd init: %s: %s\n", arg, value ? "unexpected argument" : "needs a value");
            return EXIT_USAGE;
        }
        if (strcmp(arg, "--cluster") == 0)
            opts.cluster = value;
        else if (strcmp(arg, "--state-dir") == 0)
            opts.dir = value;
        else if (strcmp(arg, "--name") == 0)
            opts.name = value;
        else {
            fprintf(stderr, "ferryd init: unknown flag %s\n", arg);
            return EXIT_USAGE;
        }
        i++;
    }
    if (!opts.cluster || !opts.dir) {
        fprintf(stderr, "ferryd init: --cluster NAME and --state-dir DIR are required\n");
        return EXIT_USAGE;
    }
    char err[512];
    int rc = statedir_init(&opts, err, sizeof(err));
    if (rc != 0) {
        fprintf(stderr, "ferryd init: %s\n", err);
        return (rc == -EINVAL || rc == -EEXIST) ? EXIT_USAGE : EXIT_RUNTIME;
    }
    printf("initialised %s for cluster '%s'\n"
           "  cluster key      %s/cluster.key (copy it to every host that joins)\n"
           "  agent identity   %s/identity.key\n"
           "  admin credential %s/admin.cred (for ferryctl --cred)\n",
           opts.dir, opts.cluster, opts.dir, opts.dir, opts.dir);
    return 0;
}

/* --- run and dev ------------------------------------------------------- */

/* Applies the command-line flags shared by `run` and `--dev`. Returns the
 * config file named by --config (or NULL), or sets *bad on a usage error. */
static int apply_flags(config_t *cfg, int argc, char **argv, const char **config_path)
{
    static const struct { const char *flag, *key; } direct[] = {
        { "--state-dir", "agent.state_dir" }, { "--name", "agent.name" },
        { "--bind", "agent.bind" },           { "--join", "agent.join" },
        { "--log-level", "agent.log_level" },
    };
    char err[512];
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        const char *value = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--dev") == 0)
            continue;
        if (!value) {
            fprintf(stderr, "ferryd: %s needs a value\n", arg);
            return EXIT_USAGE;
        }
        int rc = 1;
        if (strcmp(arg, "--config") == 0) {
            *config_path = value;
            rc = 0;
        } else if (strcmp(arg, "--set") == 0) {
            rc = config_set_assignment(cfg, value, err, sizeof(err));
        } else {
            for (size_t d = 0; d < sizeof(direct) / sizeof(direct[0]); d++)
                if (strcmp(arg, direct[d].flag) == 0)
                    rc = config_set_option(cfg, direct[d].key, value, err, sizeof(err));
        }
        if (rc > 0) {
            fprintf(stderr, "ferryd: unknown flag %s (see ferryd --help)\n", arg);
            return EXIT_USAGE;
        }
        if (rc < 0) {
            fprintf(stderr, "ferryd: %s\n", err);
            return EXIT_USAGE;
        }
        i++;
    }
    return 0;
}

/* ferryctl finds a dev agent through this per-user link to its credential. */
static void dev_link_path(char *out, size_t cap)
{
    const char *runtime = getenv("XDG_RUNTIME_DIR");
    snprintf(out, cap, "%s/ferry-dev-%d.cred", runtime && *runtime ? runtime : "/tmp", (int)getuid());
}

static int run_agent(config_t *cfg, const agent_options_t *options)
{
    char err[512];
    if (config_finish(cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferryd: %s\n", err);
        return EXIT_USAGE;
    }
    log_set_level(cfg->agent.log_level);
    agent_t *agent = agent_new(cfg, options, err, sizeof(err));
    if (!agent) {
        fprintf(stderr, "ferryd: %s\n", err);
        return EXIT_RUNTIME;
    }
    char link[PATH_MAX] = "";
    if (options->dev) {
        char cred[PATH_MAX];
        statedir_file(cfg->agent.state_dir, "admin.cred", cred, sizeof(cred));
        dev_link_path(link, sizeof(link));
        unlink(link);
        if (symlink(cred, link) != 0) {
            log_warn("agent", "cannot link %s -> %s: %s", link, cred, strerror(errno));
            link[0] = '\0';
        }
        printf("ferry dev agent '%s' is ready\n"
               "  control API  %s\n"
               "  state dir    %s (removed on exit)\n"
               "  credential   %s\n"
               "try: ferryctl host show\n",
               agent_name(agent), agent_control_endpoint(agent), cfg->agent.state_dir, cred);
        fflush(stdout);
    }
    int rc = agent_run(agent);
    agent_destroy(&agent);
    if (link[0])
        unlink(link);
    return rc == 0 ? 0 : EXIT_RUNTIME;
}

static int cmd_run(int argc, char **argv)
{
    config_t cfg;
    config_defaults(&cfg);
    const char *config_path = NULL;
    int rc = apply_flags(&cfg, argc, argv, &config_path);
    if (rc != 0)
        return rc;
    if (!config_path) {
        fprintf(stderr, "ferryd run: --config FILE is required (or use ferryd --dev)\n");
        return EXIT_USAGE;
    }
    char err[512];
    if (config_load_file(&cfg, config_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferryd: %s\n", err);
        return EXIT_USAGE;
    }
    agent_options_t options = { .dev = false };
    return run_agent(&cfg, &options);
}

static int cmd_dev(int argc, char **argv)
{
    config_t cfg;
    config_defaults(&cfg);
    char err[512];
    /* Dev defaults first; flags and --config may override them. */
    config_set_option(&cfg, "agent.cluster", "dev", err, sizeof(err));
    const char *config_path = NULL;
    int rc = apply_flags(&cfg, argc, argv, &config_path);
    if (rc != 0)
        return rc;
    if (config_path && config_load_file(&cfg, config_path, err, sizeof(err)) != 0) {
        fprintf(stderr, "ferryd: %s\n", err);
        return EXIT_USAGE;
    }
    if (cfg.agent.bind[0] == '\0')
        snprintf(cfg.agent.bind, sizeof(cfg.agent.bind), "127.0.0.1");

    char dir[] = "/tmp/ferry-dev.XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "ferryd --dev: cannot make a temporary state dir: %s\n", strerror(errno));
        return EXIT_RUNTIME;
    }
    statedir_init_t init = { .dir = dir, .cluster = cfg.agent.cluster, .name = cfg.agent.name };
    rc = statedir_init(&init, err, sizeof(err));
    if (rc == 0 && config_set_option(&cfg, "agent.state_dir", dir, err, sizeof(err)) != 0)
        rc = -1;
    if (rc != 0) {
        fprintf(stderr, "ferryd --dev: %s\n", err);
        fs_remove_tree(dir);
        return EXIT_RUNTIME;
    }
    agent_options_t options = { .dev = true };
    rc = run_agent(&cfg, &options);
    fs_remove_tree(dir);
    return rc;
}

int main(int argc, char **argv)
{
    agent_block_signals();
    if (crypto_init() != 0) {
        fprintf(stderr, "ferryd: libsodium failed to initialise\n");
        return EXIT_RUNTIME;
    }
    stream_tune_malloc();   /* before any thread: migration chunks stay in the heap */
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *command = argv[1];
    if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 || strcmp(command, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0) {
        printf("ferryd %s (wire protocol %d)\n", FERRY_VERSION, 1);
        return 0;
    }
    if (strcmp(command, "init") == 0)
        return cmd_init(argc - 2, argv + 2);
    if (strcmp(command, "run") == 0)
        return cmd_run(argc - 2, argv + 2);
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--dev") == 0)
            return cmd_dev(argc - 1, argv + 1);
    fprintf(stderr, "ferryd: unknown command '%s'\n", command);
    usage(stderr);
    return EXIT_USAGE;
}
