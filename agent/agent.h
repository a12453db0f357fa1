/* agent.h - ferryd's imperative shell: one event loop that wires real I/O
 * (sockets, timers, signals) to the pure cores and the control API.
 *
 *   agent_t *agent = agent_new(&config, &options, err, sizeof err);
 *   agent_run(agent);            // until SIGINT or SIGTERM
 *   agent_destroy(&agent);
 */
#ifndef FERRY_AGENT_H
#define FERRY_AGENT_H

#include <stdbool.h>
#include <stddef.h>

#include "common/config.h"

typedef struct agent agent_t;

typedef struct {
    bool dev;                 /* single-agent dev cluster (ferryd --dev) */
} agent_options_t;

/* Blocks SIGINT and SIGTERM in the calling thread (and so in every thread
 * it creates later); agent_run() then reads them from a signalfd. Call
 * first thing in main(). */
void agent_block_signals(void);

/* Loads the state dir named by the config, collects the inventory and binds
 * every socket. On failure returns NULL with a one-line reason in err. */
agent_t *agent_new(const config_t *config, const agent_options_t *options, char *err, size_t errlen);
void agent_destroy(agent_t **self_p);

/* Runs the event loop until a signal asks it to stop. Returns 0 on a clean stop. */
int agent_run(agent_t *self);

/* The control endpoint actually bound, e.g. "tcp://127.0.0.1:7400". */
const char *agent_control_endpoint(const agent_t *self);
const char *agent_name(const agent_t *self);

#endif
