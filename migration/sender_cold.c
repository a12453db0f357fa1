/* sender_cold.c - cold migration, source side: a powered-off VM's image
 * (image.h) goes over the same encrypted stream in one pass, with
 * checkpoints the receiver journals, so that an interrupted copy resumes
 * where the receiver says it stopped. */
#include "migration/migrate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "migration/image.h"
#include "vmm/guest_memory.h"

typedef struct {
    migration_session_t s;
    image_t *image;
    uint64_t first_page;            /* the receiver has everything below */
    uint64_t checkpoint_pages;      /* pages between checkpoints */
    uint64_t since_checkpoint;
    uint64_t batch[MIGRATION_BATCH_PAGES];
    size_t batch_len;
} cold_t;

static int flush_batch(cold_t *c)
{
    if (c->batch_len == 0)
        return 0;
    int rc = session_send_pages(&c->s, c->image->memory, c->batch, c->batch_len);
    c->s.progress.pass_pages_sent += c->batch_len;
    c->batch_len = 0;
    if (!rc && session_report(&c->s, false))
        rc = session_fail(&c->s, MIGRATION_ERR_CANCELLED, "cancelled by the progress callback");
    return rc;
}

/* Every page below `pages_done` has been sent: the receiver may journal it. */
static int checkpoint(cold_t *c, uint64_t pages_done)
{
    int rc = flush_batch(c);
    if (rc)
        return rc;
    uint8_t record[MIGRATION_CHECKPOINT_SIZE];
    migration_u64_encode(pages_done, record);
    c->since_checkpoint = 0;
    return session_send_record(&c->s, MIGRATION_RECORD_CHECKPOINT, record, sizeof record,
                               "checkpoint");
}

typedef struct {
    cold_t *c;
    uint64_t pages;                 /* data pages at or above first_page */
} count_t;

static int count_extent(uint64_t offset, uint64_t len, void *arg)
{
    count_t *n = arg;
    uint64_t from = offset / VM_PAGE_SIZE, to = (offset + len) / VM_PAGE_SIZE;
    if (to > n->c->first_page)
        n->pages += to - (from > n->c->first_page ? from : n->c->first_page);
    return 0;
}

static int send_extent(uint64_t offset, uint64_t len, void *arg)
{
    cold_t *c = arg;
    uint64_t from = offset / VM_PAGE_SIZE, to = (offset + len) / VM_PAGE_SIZE;
    for (uint64_t page = from > c->first_page ? from : c->first_page; page < to; page++) {
        c->batch[c->batch_len++] = page;
        int rc = c->batch_len == MIGRATION_BATCH_PAGES ? flush_batch(c) : 0;
        if (!rc && ++c->since_checkpoint >= c->checkpoint_pages)
            rc = checkpoint(c, page + 1);
        if (rc)
            return rc;
    }
    return 0;
}

static int send_memory(cold_t *c)
{
    guest_memory_t view = { .fd = c->image->memory_fd, .base = (uint8_t *)c->image->memory,
                            .size = c->image->manifest.memory_bytes };
    count_t count = { .c = c };
    int rc = guest_memory_for_each_extent(&view, count_extent, &count);
    if (rc)
        return session_fail(&c->s, MIGRATION_ERR_IO, "cannot walk the memory image: %s",
                            strerror(-rc));
    uint64_t pages = c->image->manifest.memory_bytes / VM_PAGE_SIZE;
    c->s.out->zero_pages += pages - c->first_page - count.pages;   /* holes: never sent */
    c->s.progress.phase = MIGRATION_PHASE_FULL;
    c->s.progress.pass = 1;
    c->s.progress.pass_pages = count.pages;
    session_report(&c->s, true);
    rc = guest_memory_for_each_extent(&view, send_extent, c);
    if (rc < 0 && c->s.out->error == 0)
        return session_fail(&c->s, MIGRATION_ERR_IO, "cannot walk the memory image: %s",
                            strerror(-rc));
    if (rc || (rc = checkpoint(c, pages)))
        return rc;
    uint8_t record[MIGRATION_PASS_END_SIZE];
    migration_pass_end_encode(1, c->s.progress.pass_pages_sent, record);
    c->s.out->passes = 1;
    return session_send_record(&c->s, MIGRATION_RECORD_PASS_END, record, sizeof record,
                               "end of pass");
}

static int open_image(cold_t *c, const char *image_dir)
{
    char err[256];
    c->image = image_open(image_dir, err, sizeof err);
    if (!c->image)
        return session_fail(&c->s, MIGRATION_ERR_IO, "%s", err);
    const image_manifest_t *m = &c->image->manifest;
    migration_describe_t d = {
        .kind = MIGRATION_KIND_COLD,
        .flags = c->s.p->verify_memory_hash ? MIGRATION_FLAG_VERIFY : 0,
        .memory_bytes = m->memory_bytes,
        .vcpus = m->vcpus,
        .state_bytes = m->state_bytes,
    };
    snprintf(d.name, sizeof d.name, "%s", m->name);
    snprintf(d.cmdline, sizeof d.cmdline, "%s", m->cmdline);
    memcpy(d.image_id, c->image->id, MIGRATION_HASH_BYTES);
    uint8_t manifest[IMAGE_MANIFEST_MAX];
    size_t manifest_len = image_manifest_encode(m, manifest, sizeof manifest);
    int rc = session_open(&c->s, &d, manifest, manifest_len, &c->first_page);
    if (rc)
        return rc;
    if (c->first_page > m->memory_bytes / VM_PAGE_SIZE)
        return session_fail(&c->s, MIGRATION_ERR_STREAM, "the receiver wants to resume at page "
                            "%llu, beyond the image", (unsigned long long)c->first_page);
    c->s.out->resume_from_page = c->first_page;
    if (c->first_page)
        log_info("migration", "cold copy of %s resumes at page %llu of %llu", m->name,
                 (unsigned long long)c->first_page,
                 (unsigned long long)(m->memory_bytes / VM_PAGE_SIZE));
    return 0;
}

int migration_send_image(const char *image_dir, const migration_params_t *p,
                         migration_progress_fn cb, void *ctx, migration_result_t *out)
{
    cold_t *c = calloc(1, sizeof *c);
    if (!c) {
        memset(out, 0, sizeof *out);
        return out->error = MIGRATION_ERR_NOMEM;
    }
    int rc = session_init(&c->s, p, cb, ctx, out, MIGRATION_KIND_COLD);
    c->checkpoint_pages = p->checkpoint_bytes / VM_PAGE_SIZE;
    if (!rc && c->checkpoint_pages == 0)
        rc = session_fail(&c->s, MIGRATION_ERR_INVALID, "checkpoint_bytes below one page");
    if (!rc)
        rc = open_image(c, image_dir);
    if (!rc)
        rc = send_memory(c);
    if (!rc) {
        c->s.progress.phase = MIGRATION_PHASE_SWITCHOVER;
        rc = session_send_state(&c->s, c->image->state, c->image->manifest.state_bytes);
    }
    bool hashed = false;
    uint8_t theirs[MIGRATION_HASH_BYTES];
    if (!rc && !(rc = session_send_ready(&c->s)))
        rc = session_wait_verified(&c->s, &hashed, theirs);
    /* The manifest already holds the source's hash: nothing to compute here. */
    if (!rc && p->verify_memory_hash)
        rc = session_compare_hashes(&c->s, c->image->manifest.memory_hash, hashed, theirs);
    if (!rc)
        rc = session_commit(&c->s);
    if (!rc && session_confirm(&c->s) != 0) {
        out->error = MIGRATION_ERR_UNCONFIRMED;
    } else if (rc && !out->committed) {
        session_call_off(&c->s, out->error_text);
    }
    c->s.progress.phase = MIGRATION_PHASE_DONE;
    session_report(&c->s, true);
    session_close(&c->s);
    image_close(&c->image);
    free(c);
    return out->error;
}
