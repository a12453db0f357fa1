/* receiver.c - the destination end of a migration, live or cold.
 *
 * One receiver accepts one migration: the sender's description first (we
 * refuse what we cannot hold), then pages straight into the incoming VM's
 * memory (live) or into the partial memory image (cold), the state in
 * pieces, READY (load, hash, answer VERIFIED), and the outcome: committed
 * (start the VM / complete the image, answer RESUMED) or called off (drop
 * the copy). Until the outcome is known nothing runs here. */
#include "migration/migrate.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "common/log.h"
#include "migration/image.h"
#include "migration/migrate_internal.h"

#define POLL_SLICE_MS 100

struct migration_receiver {
    migration_receiver_config_t cfg;
    char *bind_endpoint, *image_dir, *kernel_path, *console_log_path;
    stream_receiver_t *stream;
    atomic_bool cancel;
    bool ran;
    bool described;
    migration_describe_t describe;
    image_manifest_t manifest;         /* cold */
    vm_t *vm;                          /* live: the incoming VM */
    image_writer_t *image;             /* cold */
    uint64_t page_count;
    migration_state_assembly_t state;
    bool verified;                     /* VERIFIED sent: only the outcome is missing */
    migration_result_t *out;
    migration_progress_fn cb;
    void *ctx;
    migration_progress_t progress;
    int64_t start_ns, last_report_ns;
};

static char *copy_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

migration_receiver_t *migration_receiver_new(const migration_receiver_config_t *cfg, char *err,
                                             size_t errlen)
{
    char scratch[1];
    if (!err || !errlen) {
        err = scratch;
        errlen = sizeof scratch;
    }
    if (!cfg || !cfg->bind_endpoint || cfg->accept_timeout_ms <= 0 || cfg->io_timeout_ms <= 0
        || cfg->commit_timeout_ms <= 0 || cfg->progress_interval_ms < 0) {
        snprintf(err, errlen, "migration receiver: config needs a bind endpoint and positive "
                 "timeouts");
        return NULL;
    }
    migration_receiver_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "migration receiver: out of memory");
        return NULL;
    }
    self->cfg = *cfg;
    self->bind_endpoint = strdup(cfg->bind_endpoint);
    self->image_dir = copy_or_null(cfg->image_dir);
    self->kernel_path = copy_or_null(cfg->kernel_path);
    self->console_log_path = copy_or_null(cfg->console_log_path);
    self->state.buf = malloc(VM_STATE_MAX_BYTES);
    if (!self->bind_endpoint || (cfg->image_dir && !self->image_dir)
        || (cfg->kernel_path && !self->kernel_path)
        || (cfg->console_log_path && !self->console_log_path) || !self->state.buf) {
        snprintf(err, errlen, "migration receiver: out of memory");
        migration_receiver_destroy(&self);
        return NULL;
    }
    self->cfg.bind_endpoint = self->bind_endpoint;
    self->cfg.image_dir = self->image_dir;
    self->cfg.kernel_path = self->kernel_path;
    self->cfg.console_log_path = self->console_log_path;

    stream_receiver_config_t scfg;
    stream_receiver_config_defaults(&scfg);
    scfg.bind_endpoint = self->bind_endpoint;
    scfg.identity = cfg->identity;
    memcpy(scfg.peer_public_key, cfg->peer_public_key, STREAM_KEY_BYTES);
    memcpy(scfg.migration_id, cfg->migration_id, STREAM_MIGRATION_ID_BYTES);
    scfg.max_streams = cfg->max_streams;
    scfg.max_chunk_bytes = cfg->max_chunk_bytes;
    scfg.max_window = cfg->max_window;
    scfg.cipher = cfg->cipher;
    /* No memory yet: it comes with the VM the sender describes. */
    self->stream = stream_receiver_new(&scfg);
    if (!self->stream) {
        snprintf(err, errlen, "migration receiver: cannot listen on %s (bad address, port in "
                 "use, or stream limits/keys refused; see the log)", cfg->bind_endpoint);
        migration_receiver_destroy(&self);
        return NULL;
    }
    sodium_memzero(&self->cfg.identity, sizeof self->cfg.identity);
    return self;
}

void migration_receiver_destroy(migration_receiver_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    migration_receiver_t *self = *self_p;
    stream_receiver_destroy(&self->stream);
    image_writer_destroy(&self->image);
    if (self->vm)
        vm_destroy(&self->vm);
    free(self->state.buf);
    free(self->bind_endpoint);
    free(self->image_dir);
    free(self->kernel_path);
    free(self->console_log_path);
    free(self);
    *self_p = NULL;
}

const char *migration_receiver_endpoint(const migration_receiver_t *self)
{
    return stream_receiver_endpoint(self->stream);
}

void migration_receiver_cancel(migration_receiver_t *self)
{
    atomic_store(&self->cancel, true);
}

vm_t *migration_receiver_take_vm(migration_receiver_t *self)
{
    vm_t *vm = self->vm;
    self->vm = NULL;
    return vm;
}

const migration_describe_t *migration_receiver_description(const migration_receiver_t *self)
{
    return self->described ? &self->describe : NULL;
}

/* --- failures and progress ------------------------------------------------------ */

static int fail(migration_receiver_t *self, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(migration_receiver_t *self, int code, const char *fmt, ...)
{
    migration_result_t *out = self->out;
    if (out->error)
        return out->error;
    va_list args;
    va_start(args, fmt);
    vsnprintf(out->error_text, sizeof out->error_text, fmt, args);
    va_end(args);
    out->error = code;
    log_warn("migration", "receiver: %s: %s", migration_error_name(code), out->error_text);
    return code;
}

static int stream_failed(migration_receiver_t *self, int rc, const char *doing)
{
    if (!self->out->error)
        self->out->stream_error = rc;
    const char *why = stream_receiver_error(self->stream);
    return fail(self, MIGRATION_ERR_STREAM, "%s: %s", doing, *why ? why : stream_error_name(rc));
}

/* Refuse the VM: the sender hears why at once. */
static int refuse(migration_receiver_t *self, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int refuse(migration_receiver_t *self, const char *fmt, ...)
{
    char reason[MIGRATION_REASON_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(reason, sizeof reason, fmt, args);
    va_end(args);
    stream_receiver_abort(self->stream, reason);
    return fail(self, MIGRATION_ERR_REFUSED, "%s", reason);
}

static bool report(migration_receiver_t *self, bool force)
{
    int64_t now = migration_now_ns();
    if (!force && now - self->last_report_ns < (int64_t)self->cfg.progress_interval_ms * 1000000)
        return false;
    self->last_report_ns = now;
    stream_stats_t stats = stream_receiver_stats(self->stream);
    self->progress.bytes_sent = stats.wire_bytes;
    self->progress.elapsed_ms = migration_ms_between(self->start_ns, now);
    return self->cb && self->cb(&self->progress, self->ctx) != 0;
}

/* --- waiting ---------------------------------------------------------------------- */

static int check_cancel(migration_receiver_t *self, const char *during)
{
    if (atomic_load(&self->cancel))
        return fail(self, MIGRATION_ERR_CANCELLED, "cancelled while %s", during);
    return 0;
}

static int accept_sender(migration_receiver_t *self)
{
    int64_t deadline = migration_now_ns() + (int64_t)self->cfg.accept_timeout_ms * 1000000;
    for (;;) {
        int rc = check_cancel(self, "waiting for the sender");
        if (rc)
            return rc;
        rc = stream_receiver_accept(self->stream, POLL_SLICE_MS);
        if (rc == 0) {
            snprintf(self->out->cipher, sizeof self->out->cipher, "%s",
                     stream_receiver_cipher(self->stream));
            return 0;
        }
        if (rc != STREAM_ERR_TIMEOUT)
            return stream_failed(self, rc, "handshake");
        if (migration_now_ns() >= deadline)
            return fail(self, MIGRATION_ERR_STREAM, "no sender within %d ms",
                        self->cfg.accept_timeout_ms);
    }
}

/* The next event, polling in slices so that a cancel is noticed. */
static int next_event(migration_receiver_t *self, int timeout_ms, const char *during,
                      stream_event_t *event)
{
    int64_t deadline = migration_now_ns() + (int64_t)timeout_ms * 1000000;
    for (;;) {
        int rc = check_cancel(self, during);
        if (rc)
            return rc;
        rc = stream_receiver_next(self->stream, POLL_SLICE_MS, event);
        if (rc == 0)
            return 0;
        if (rc != STREAM_ERR_TIMEOUT)
            return stream_failed(self, rc, during);
        if (migration_now_ns() >= deadline)
            return fail(self, MIGRATION_ERR_STREAM, "nothing from the sender for %d ms while %s",
                        timeout_ms, during);
    }
}

static int next_record(migration_receiver_t *self, const char *during, uint8_t want,
                       stream_event_t *event)
{
    int rc = next_event(self, self->cfg.io_timeout_ms, during, event);
    if (!rc && (event->type != STREAM_EVENT_RECORD || event->record_type != want))
        rc = fail(self, MIGRATION_ERR_STREAM, "protocol: expected record %u while %s", want,
                  during);
    return rc;
}

/* --- the description: can we hold it? ------------------------------------------------ */

static int prepare_live(migration_receiver_t *self)
{
    const migration_describe_t *d = &self->describe;
    vm_config_t cfg = {
        .name = d->name,
        .memory_bytes = d->memory_bytes,
        .vcpus = d->vcpus,
        .kernel_path = self->cfg.kernel_path,
        .cmdline = d->cmdline,
        .console_log_path = self->cfg.console_log_path,
        .backend = self->cfg.backend,
        .incoming = true,
    };
    char err[256];
    self->vm = vm_new(&cfg, err, sizeof err);
    if (!self->vm)
        return refuse(self, "cannot create the VM here: %s", err);
    vm_memory_t memory;
    vm_memory(self->vm, &memory);
    /* Scratch: a failed migration destroys this VM, so pages may land before
     * their chunk's tag is checked (stream.h). */
    int rc = stream_receiver_set_memory(self->stream, memory.base, memory.size, true);
    return rc ? stream_failed(self, rc, "attaching the VM's memory") : 0;
}

static int prepare_cold(migration_receiver_t *self, uint64_t *first_page)
{
    const migration_describe_t *d = &self->describe;
    stream_event_t event;
    int rc = next_record(self, "waiting for the image manifest", MIGRATION_RECORD_MANIFEST, &event);
    if (rc)
        return rc;
    const char *why = NULL;
    image_manifest_t *m = &self->manifest;
    uint8_t id[IMAGE_HASH_BYTES];
    if (image_manifest_decode(event.data, event.len, m, &why) != 0)
        return refuse(self, "bad image manifest: %s", why);
    if (image_manifest_id(m, id) != 0 || memcmp(id, d->image_id, IMAGE_HASH_BYTES) != 0
        || m->memory_bytes != d->memory_bytes || m->vcpus != d->vcpus
        || m->state_bytes != d->state_bytes || strcmp(m->name, d->name) != 0
        || strcmp(m->cmdline, d->cmdline) != 0)
        return refuse(self, "the image manifest does not match the description");
    char err[256];
    self->image = image_writer_open(self->cfg.image_dir, m, first_page, err, sizeof err);
    if (!self->image)
        return refuse(self, "cannot receive the image here: %s", err);
    /* Not scratch: the image outlives a failed copy, which resumes from it. */
    rc = stream_receiver_set_memory(self->stream, image_writer_memory(self->image),
                                    m->memory_bytes, false);
    return rc ? stream_failed(self, rc, "attaching the image's memory") : 0;
}

static int receive_description(migration_receiver_t *self)
{
    stream_event_t event;
    int rc = next_record(self, "waiting for the VM description", MIGRATION_RECORD_DESCRIBE, &event);
    if (rc)
        return rc;
    const char *why = NULL;
    migration_describe_t *d = &self->describe;
    if (migration_describe_decode(event.data, event.len, d, &why) != 0)
        return refuse(self, "bad VM description: %s", why);
    self->described = true;
    self->out->kind = d->kind;
    bool cold = self->cfg.image_dir != NULL;
    if (cold != (d->kind == MIGRATION_KIND_COLD))
        return refuse(self, "this receiver expects a %s migration", cold ? "cold" : "live");
    uint64_t max_memory = self->cfg.max_memory_bytes;
    if (max_memory && d->memory_bytes > max_memory)
        return refuse(self, "%s needs %llu MiB of memory; this host accepts at most %llu MiB",
                      d->name, (unsigned long long)(d->memory_bytes >> 20),
                      (unsigned long long)(max_memory >> 20));
    unsigned max_vcpus = self->cfg.max_vcpus ? self->cfg.max_vcpus : VM_MAX_VCPUS;
    if (d->vcpus > max_vcpus)
        return refuse(self, "%s has %u vCPUs; this host accepts at most %u", d->name, d->vcpus,
                      max_vcpus);
    self->page_count = d->memory_bytes / VM_PAGE_SIZE;
    uint64_t first_page = 0;
    rc = cold ? prepare_cold(self, &first_page) : prepare_live(self);
    if (rc)
        return rc;
    self->out->resume_from_page = first_page;
    uint8_t accept[MIGRATION_ACCEPT_SIZE];
    migration_u64_encode(first_page, accept);
    rc = stream_receiver_reply(self->stream, MIGRATION_REPLY_ACCEPT, accept, sizeof accept);
    if (rc)
        return stream_failed(self, rc, "accepting");
    log_info("migration", "receiver: accepted %s migration of %s (%llu MiB, %u vCPUs)%s",
             cold ? "a cold" : "a live", d->name, (unsigned long long)(d->memory_bytes >> 20),
             d->vcpus, first_page ? ", resuming a partial copy" : "");
    return 0;
}

/* --- records -------------------------------------------------------------------------- */

static int on_checkpoint(migration_receiver_t *self, const stream_event_t *event)
{
    uint64_t pages_done;
    const char *why = NULL;
    if (!self->image || migration_u64_decode(event->data, event->len, &pages_done, &why) != 0
        || pages_done > self->page_count)
        return fail(self, MIGRATION_ERR_STREAM, "protocol: bad checkpoint");
    char err[256];
    if (image_writer_checkpoint(self->image, pages_done, err, sizeof err) != 0)
        return fail(self, MIGRATION_ERR_IO, "checkpoint: %s", err);
    return 0;
}

/* READY: all memory and state are here. Load (live) or check (cold), hash
 * if asked, answer VERIFIED. */
static int on_ready(migration_receiver_t *self)
{
    const migration_describe_t *d = &self->describe;
    self->progress.phase = MIGRATION_PHASE_SWITCHOVER;
    if (!migration_state_complete(&self->state))
        return fail(self, MIGRATION_ERR_STREAM, "protocol: READY before the whole state arrived");
    char err[256];
    if (self->vm) {
        if (vm_load_state(self->vm, self->state.buf, self->state.total, err, sizeof err) != 0)
            return fail(self, MIGRATION_ERR_VM, "cannot load the state: %s", err);
    } else {
        uint8_t hash[IMAGE_HASH_BYTES];
        crypto_generichash(hash, sizeof hash, self->state.buf, self->state.total, NULL, 0);
        if (self->state.total != self->manifest.state_bytes
            || memcmp(hash, self->manifest.state_hash, sizeof hash) != 0)
            return fail(self, MIGRATION_ERR_VERIFY, "the state that arrived does not match the "
                        "image manifest");
    }
    bool hashed = d->flags & MIGRATION_FLAG_VERIFY;
    uint8_t hash[MIGRATION_HASH_BYTES] = { 0 };
    if (hashed) {
        int rc = self->vm ? vm_memory_hash(self->vm, hash) : image_writer_hash(self->image, hash);
        if (rc)
            return fail(self, MIGRATION_ERR_VM, "cannot hash the memory that arrived");
        memcpy(self->out->dest_hash, hash, sizeof hash);
        if (self->image && memcmp(hash, self->manifest.memory_hash, sizeof hash) != 0)
            return fail(self, MIGRATION_ERR_VERIFY, "the memory that arrived does not match "
                        "the image manifest");
    }
    uint8_t verified[MIGRATION_VERIFIED_SIZE];
    migration_verified_encode(hashed, hash, verified);
    int rc = stream_receiver_reply(self->stream, MIGRATION_REPLY_VERIFIED, verified,
                                   sizeof verified);
    if (rc)
        return stream_failed(self, rc, "answering READY");
    self->verified = true;
    return 0;
}

/* The commit went through: run the VM here (or complete the image). */
static int on_committed(migration_receiver_t *self)
{
    char err[256];
    if (self->vm) {
        if (vm_start(self->vm) != 0)
            return fail(self, MIGRATION_ERR_VM, "committed, but the VM does not start here");
    } else if (image_writer_commit(self->image, self->state.buf, self->state.total, err,
                                   sizeof err) != 0) {
        return fail(self, MIGRATION_ERR_IO, "committed, but the image cannot be completed: %s",
                    err);
    }
    int rc = stream_receiver_reply(self->stream, MIGRATION_REPLY_RESUMED, NULL, 0);
    if (rc)   /* the VM runs anyway: the sender learns the rest from the cluster */
        log_warn("migration", "receiver: could not confirm the resume: %s",
                 stream_receiver_error(self->stream));
    /* The stream's end is a courtesy: wait for it briefly. */
    stream_event_t event;
    while (stream_receiver_next(self->stream, self->cfg.io_timeout_ms, &event) == 0)
        ;
    return 0;
}

static int on_outcome(migration_receiver_t *self, const stream_event_t *event)
{
    bool committed;
    char reason[MIGRATION_REASON_MAX + 1];
    const char *why = NULL;
    if (migration_outcome_decode(event->data, event->len, &committed, reason, &why) != 0)
        return fail(self, MIGRATION_ERR_STREAM, "protocol: bad outcome: %s", why);
    if (!committed)
        return fail(self, MIGRATION_ERR_ABORTED, "the sender called the migration off: %s",
                    reason[0] ? reason : "no reason given");
    if (!self->verified)
        return fail(self, MIGRATION_ERR_STREAM, "protocol: committed before READY");
    self->out->committed = true;
    return on_committed(self);
}

/* Pages and records until the outcome. 1 when the outcome was handled. */
static int on_event(migration_receiver_t *self, const stream_event_t *event)
{
    if (event->type == STREAM_EVENT_PAGES) {
        self->progress.pass_pages_sent += event->pages;
        return report(self, false)
                   ? fail(self, MIGRATION_ERR_CANCELLED, "cancelled by the progress callback")
                   : 0;
    }
    const char *why = NULL;
    int rc = 0;
    switch (event->record_type) {
    case MIGRATION_RECORD_PASS_END: {
        uint32_t pass;
        uint64_t pages;
        if (migration_pass_end_decode(event->data, event->len, &pass, &pages, &why) != 0)
            return fail(self, MIGRATION_ERR_STREAM, "protocol: bad pass end: %s", why);
        self->out->passes = pass;
        self->progress.pass = pass + 1;
        self->progress.pass_done = true;
        bool cancel = report(self, true);
        self->progress.pass_done = false;
        self->progress.pass_pages_sent = 0;
        self->progress.phase = MIGRATION_PHASE_ITERATE;
        return cancel ? fail(self, MIGRATION_ERR_CANCELLED, "cancelled by the progress callback")
                      : 0;
    }
    case MIGRATION_RECORD_STATE:
        if (self->verified
            || migration_state_piece_apply(&self->state, event->data, event->len, &why) != 0)
            return fail(self, MIGRATION_ERR_STREAM, "protocol: bad state piece: %s",
                        why ? why : "after READY");
        return 0;
    case MIGRATION_RECORD_CHECKPOINT:
        return on_checkpoint(self, event);
    case MIGRATION_RECORD_READY:
        return self->verified ? fail(self, MIGRATION_ERR_STREAM, "protocol: READY twice")
                              : on_ready(self);
    case MIGRATION_RECORD_OUTCOME:
        rc = on_outcome(self, event);
        return rc ? rc : 1;
    case STREAM_RECORD_DONE:
        return fail(self, MIGRATION_ERR_STREAM, "protocol: the stream ended before the outcome");
    default:
        return fail(self, MIGRATION_ERR_STREAM, "protocol: unexpected record type %u",
                    event->record_type);
    }
}

static int receive_until_outcome(migration_receiver_t *self)
{
    self->progress.phase = MIGRATION_PHASE_FULL;
    self->progress.pass = 1;
    for (;;) {
        stream_event_t event;
        int timeout = self->verified ? self->cfg.commit_timeout_ms : self->cfg.io_timeout_ms;
        int rc = next_event(self, timeout, self->verified ? "waiting for the commit outcome"
                                                         : "receiving memory", &event);
        if (rc)
            return rc;
        rc = on_event(self, &event);
        if (rc)
            return rc > 0 ? 0 : rc;
    }
}

/* --- the run ------------------------------------------------------------------------------ */

static void finish(migration_receiver_t *self)
{
    migration_result_t *out = self->out;
    stream_stats_t stats = stream_receiver_stats(self->stream);
    out->bytes_sent = stats.wire_bytes;
    out->pages_sent = stats.pages;
    out->zero_pages = stats.zero_pages;
    out->total_ms = migration_ms_between(self->start_ns, migration_now_ns());
    self->progress.phase = MIGRATION_PHASE_DONE;
    report(self, true);
}

int migration_receiver_run(migration_receiver_t *self, migration_progress_fn cb, void *ctx,
                           migration_result_t *out)
{
    memset(out, 0, sizeof *out);
    snprintf(out->cipher, sizeof out->cipher, "none");
    self->out = out;
    self->cb = cb;
    self->ctx = ctx;
    self->start_ns = migration_now_ns();
    self->progress = (migration_progress_t){ .phase = MIGRATION_PHASE_CONNECT,
                                             .predicted_stun_us = UINT64_MAX };
    if (self->ran)
        return fail(self, MIGRATION_ERR_INVALID, "a receiver takes one migration");
    self->ran = true;
    int rc = accept_sender(self);
    if (!rc)
        rc = receive_description(self);
    if (!rc)
        rc = receive_until_outcome(self);

    if (rc && self->verified && !out->committed && rc != MIGRATION_ERR_ABORTED) {
        /* Everything is here and verified; the commit may or may not have
         * happened. Keep the VM, loaded and stopped, for the caller to
         * settle with the cluster. */
        char was[sizeof out->error_text];
        snprintf(was, sizeof was, "%s", out->error_text);
        out->error = MIGRATION_ERR_IN_DOUBT;
        snprintf(out->error_text, sizeof out->error_text, "the commit outcome never came (%s): "
                 "ask the cluster who owns %s", was, self->describe.name);
        log_error("migration", "receiver: %s", out->error_text);
    } else if (rc && !out->committed) {
        /* Tell the sender, unless it told us. A receiver that failed its own
         * checks says so; one whose stream broke tries anyway. */
        if (rc != MIGRATION_ERR_ABORTED && rc != MIGRATION_ERR_REFUSED)
            stream_receiver_abort(self->stream, out->error_text);
        if (self->vm)
            vm_destroy(&self->vm);
    }
    image_writer_destroy(&self->image);   /* a completed image is already in place */
    finish(self);
    return out->error;
}
