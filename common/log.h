/* log.h - leveled log lines on stderr, with a UTC timestamp.
 *
 *   2026-11-27T05:40:01.123Z info  control: listening on tcp://127.0.0.1:7400
 *
 * (Names carry LOG_LEVEL_ because syslog.h, pulled in by czmq, owns LOG_LEVEL_INFO.)
 * The level is process-wide (set once by main from --log-level): the one
 * piece of global state outside main, as in most daemons. */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

typedef enum { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR, LOG_LEVEL_OFF } log_level_t;

void log_set_level(log_level_t level);
log_level_t log_get_level(void);
/* Parses "debug", "info", "warn", "error" or "off"; returns -1 if unknown. */
int log_level_parse(const char *name, log_level_t *level);

void log_write(log_level_t level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(module, ...) log_write(LOG_LEVEL_DEBUG, module, __VA_ARGS__)
#define log_info(module, ...)  log_write(LOG_LEVEL_INFO, module, __VA_ARGS__)
#define log_warn(module, ...)  log_write(LOG_LEVEL_WARN, module, __VA_ARGS__)
#define log_error(module, ...) log_write(LOG_LEVEL_ERROR, module, __VA_ARGS__)

#endif
