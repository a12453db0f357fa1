/* image.h - a powered-off VM on disk, and the receiving end of a cold copy.
 *
 * An image is a directory:
 *
 *   memory.img   guest memory byte for byte, sparse: holes are zero pages
 *   state.bin    the saved vCPU and device state (vm_save_state)
 *   manifest     what the other two hold, written last: a directory
 *                without a valid manifest holds no complete image
 *
 * While a cold migration fills a directory, two more files exist:
 *
 *   memory.partial  the memory image being filled
 *   journal         how much of it is durable, for resuming the copy
 *
 * Every file is written to a temporary name, fsync'd and renamed, and the
 * directory fsync'd after each rename; memory is fsync'd before any file
 * that vouches for it (journal, manifest).
 *
 * manifest (little-endian):
 *   0  "FIMG"  4 u16 version 1  6 u16 0
 *   8  u64 memory bytes  16 u32 vCPUs  20 u32 state bytes
 *   24 u16 name length  26 u16 cmdline length  28 u32 0
 *   32 memory hash [32]   vm_memory_hash of the memory (BLAKE2b-256 over
 *                         each non-zero page: index, then contents)
 *   64 state hash [32]    BLAKE2b-256 of state.bin
 *   96 name, then cmdline
 *   then checksum [32]    BLAKE2b-256 of everything before it; it is also
 *                         the image's id
 *
 * journal (80 bytes):
 *   0 "FJRN"  4 u16 version 1  6 u16 0  8 image id [32]
 *   40 u64 pages done: every page below this index is in memory.partial
 *          and fsync'd
 *   48 checksum [32]  BLAKE2b-256 of bytes 0..47
 */
#ifndef FERRY_MIGRATION_IMAGE_H
#define FERRY_MIGRATION_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "guest/args.h"
#include "vmm/vm.h"

#define IMAGE_MEMORY_FILE   "memory.img"
#define IMAGE_STATE_FILE    "state.bin"
#define IMAGE_MANIFEST_FILE "manifest"
#define IMAGE_PARTIAL_FILE  "memory.partial"
#define IMAGE_JOURNAL_FILE  "journal"
#define IMAGE_HASH_BYTES    32
#define IMAGE_MANIFEST_FIXED 96
#define IMAGE_MANIFEST_MAX  (IMAGE_MANIFEST_FIXED + VM_NAME_MAX + GUEST_CMDLINE_MAX + IMAGE_HASH_BYTES)
#define IMAGE_JOURNAL_SIZE  80

typedef struct {
    char name[VM_NAME_MAX + 1];
    uint64_t memory_bytes;
    uint32_t vcpus;
    char cmdline[GUEST_CMDLINE_MAX + 1];
    uint32_t state_bytes;
    uint8_t memory_hash[IMAGE_HASH_BYTES];
    uint8_t state_hash[IMAGE_HASH_BYTES];
} image_manifest_t;

typedef struct {
    uint8_t image_id[IMAGE_HASH_BYTES];
    uint64_t pages_done;
} image_journal_t;

/* --- formats (pure, bounded decoders) --------------------------------------------- */

/* Bytes written (at most IMAGE_MANIFEST_MAX), or 0 if a field is out of bounds. */
size_t image_manifest_encode(const image_manifest_t *m, uint8_t *out, size_t cap);
int image_manifest_decode(const uint8_t *data, size_t len, image_manifest_t *m, const char **why);
/* The image id: the checksum at the end of the manifest's encoding. */
int image_manifest_id(const image_manifest_t *m, uint8_t id[IMAGE_HASH_BYTES]);

void image_journal_encode(const image_journal_t *j, uint8_t out[IMAGE_JOURNAL_SIZE]);
int image_journal_decode(const uint8_t *data, size_t len, image_journal_t *j, const char **why);

/* --- whole images ---------------------------------------------------------------------- */

/* Saves a VM that is not running (paused or created) into dir (created if
 * needed; an image already there is replaced). The VM's config gives what
 * the VM object cannot tell (vCPUs, command line). */
int image_save(vm_t *vm, const vm_config_t *cfg, const char *dir, char *err, size_t errlen);

int image_read_manifest(const char *dir, image_manifest_t *m, char *err, size_t errlen);

/* Recomputes both hashes and compares them with the manifest. */
int image_verify(const char *dir, char *err, size_t errlen);

/* Creates an incoming VM from the image: memory filled (holes stay holes),
 * state loaded. vm_start it to power it on. kernel_path and
 * console_log_path as in vm_config_t (NULL for defaults). */
vm_t *image_load(const char *dir, const char *kernel_path, const char *console_log_path,
                 char *err, size_t errlen);

/* Removes the image's files (and partial files) and the directory if empty. */
int image_remove(const char *dir);

/* --- an image opened for sending --------------------------------------------------------- */

typedef struct {
    image_manifest_t manifest;
    uint8_t id[IMAGE_HASH_BYTES];
    int memory_fd;
    const uint8_t *memory;   /* mapped read-only, manifest.memory_bytes */
    uint8_t *state;          /* manifest.state_bytes, checked against its hash */
} image_t;

image_t *image_open(const char *dir, char *err, size_t errlen);
void image_close(image_t **self_p);

/* --- the receiving end of a cold copy ---------------------------------------------------- */

typedef struct image_writer image_writer_t;

/* Opens dir for receiving the image the manifest describes. If the journal
 * there belongs to the same image, *first_page says where to resume;
 * otherwise any partial copy is discarded and *first_page is 0. */
image_writer_t *image_writer_open(const char *dir, const image_manifest_t *m,
                                  uint64_t *first_page, char *err, size_t errlen);
/* Destination memory for the stream: memory.partial, mapped shared. */
uint8_t *image_writer_memory(image_writer_t *w);
/* Makes every page below pages_done durable and records it in the journal. */
int image_writer_checkpoint(image_writer_t *w, uint64_t pages_done, char *err, size_t errlen);
/* vm_memory_hash's hash of what memory.partial holds now. */
int image_writer_hash(image_writer_t *w, uint8_t out[IMAGE_HASH_BYTES]);
/* Checks the state against the manifest, then makes the image complete:
 * state.bin, memory.img, manifest; the journal goes. */
int image_writer_commit(image_writer_t *w, const uint8_t *state, size_t len, char *err,
                        size_t errlen);
/* Closes; an uncommitted copy keeps its partial file and journal. */
void image_writer_destroy(image_writer_t **self_p);

#endif
