/* fuzz_config.c - libFuzzer target for the config parser.
 *
 * The first byte picks the mode: load the rest as a config file, or use it as
 * "section.key=value" command-line overrides, one per line. Either way the
 * parser must return 0 or an error, and what it accepted must write back out
 * as a file that loads again. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"

static void check_round_trip(const config_t *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    if (!out)
        return;
    config_write(cfg, out);
    fclose(out);
    config_t again;
    config_defaults(&again);
    char err[512];
    if (config_load_buffer(&again, "written", text, len, err, sizeof(err)) != 0) {
        fprintf(stderr, "written config does not load: %s\n%s\n", err, text);
        abort();
    }
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    config_t cfg;
    config_defaults(&cfg);
    char err[512];
    if (data[0] & 1) {
        if (config_load_buffer(&cfg, "fuzz", data + 1, size - 1, err, sizeof(err)) == 0)
            check_round_trip(&cfg);
        return 0;
    }
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        config_set_assignment(&cfg, line, err, sizeof(err));
    config_finish(&cfg, err, sizeof(err));
    check_round_trip(&cfg);
    free(text);
    return 0;
}
