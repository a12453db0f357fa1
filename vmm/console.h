/* console.h - a VM's serial console: a ring of the last bytes the guest
 * printed, read by cursors, plus an optional append-only log file.
 * Thread-safe: the vCPU thread writes, anyone reads. */
#ifndef FERRY_VMM_CONSOLE_H
#define FERRY_VMM_CONSOLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct console console_t;

#define CONSOLE_RING_BYTES (64u * 1024)

/* log_path NULL: no file. The file is created (or appended to) here. */
console_t *console_new(const char *log_path, char *err, size_t errlen);
void console_destroy(console_t **self_p);

void console_write(console_t *c, const char *bytes, size_t n);
/* See vm_console_read in vm.h. */
size_t console_read(console_t *c, uint64_t *cursor, char *buf, size_t len);
uint64_t console_total(console_t *c);  /* bytes ever written */

#endif
