/* log.c - see log.h. One fprintf per line so concurrent threads do not
 * interleave within a line. */
#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static log_level_t current_level = LOG_LEVEL_INFO;

static const char *level_names[] = { "debug", "info", "warn", "error", "off" };

void log_set_level(log_level_t level) { current_level = level; }
log_level_t log_get_level(void) { return current_level; }

int log_level_parse(const char *name, log_level_t *level)
{
    for (int i = LOG_LEVEL_DEBUG; i <= LOG_LEVEL_OFF; i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *level = (log_level_t)i;
            return 0;
        }
    }
    return -1;
}

void log_write(log_level_t level, const char *module, const char *fmt, ...)
{
    if (level < current_level || level >= LOG_LEVEL_OFF)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);

    char message[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    fprintf(stderr, "%s.%03dZ %-5s %s: %s\n", stamp, (int)(tv.tv_usec / 1000),
            level_names[level], module, message);
}
