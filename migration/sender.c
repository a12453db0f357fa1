/* sender.c - live migration, source side: pre-copy driven by the dirty log
 * and the policy, then the switchover, or a rollback that leaves the VM
 * running here. */
#include "migration/migrate_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "vmm/guest_memory.h"

typedef struct {
    migration_session_t s;
    vm_t *vm;
    vm_memory_t memory;
    size_t words;
    uint64_t *dirty;                     /* the dirty bitmap of the current pass */
    uint64_t batch[MIGRATION_BATCH_PAGES];
    size_t batch_len;
    policy_t *policy;
    bool dirty_logging;                  /* we turned it on: turn it off on rollback */
    bool paused_by_us;
    unsigned throttle;                   /* current level we set */
    bool cancellable;                    /* false from the switchover on */
    int64_t pause_ns;
    int64_t step_ns[4];                  /* switchover: paused, pages sent, state sent,
                                            verified (for the debug log) */
} live_t;

/* --- sending pages ------------------------------------------------------------- */

static int flush_batch(live_t *l)
{
    if (l->batch_len == 0)
        return 0;
    int rc = session_send_pages(&l->s, l->memory.base, l->batch, l->batch_len);
    l->s.progress.pass_pages_sent += l->batch_len;
    l->batch_len = 0;
    if (!rc && session_report(&l->s, false) && l->cancellable)
        rc = session_fail(&l->s, MIGRATION_ERR_CANCELLED, "cancelled during pass %u",
                          l->s.progress.pass);
    return rc;
}

static int queue_page(live_t *l, uint64_t page)
{
    l->batch[l->batch_len++] = page;
    return l->batch_len == MIGRATION_BATCH_PAGES ? flush_batch(l) : 0;
}

static int send_dirty_pages(live_t *l)
{
    for (size_t w = 0; w < l->words; w++) {
        for (uint64_t bits = l->dirty[w]; bits; bits &= bits - 1) {
            int rc = queue_page(l, w * 64 + (uint64_t)__builtin_ctzll(bits));
            if (rc)
                return rc;
        }
    }
    return flush_batch(l);
}

static uint64_t count_dirty(const live_t *l)
{
    uint64_t n = 0;
    for (size_t w = 0; w < l->words; w++)
        n += (uint64_t)__builtin_popcountll(l->dirty[w]);
    return n;
}

/* The full pass reads only the parts of the memfd that hold data: a hole
 * is zero at the destination already (its memory starts empty), and
 * reading it here would allocate it. */
static guest_memory_t memfd_view(const live_t *l)
{
    return (guest_memory_t){ .fd = l->memory.memfd, .base = l->memory.base,
                             .size = l->memory.size };
}

static int count_extent(uint64_t offset, uint64_t len, void *arg)
{
    (void)offset;
    *(uint64_t *)arg += len / VM_PAGE_SIZE;
    return 0;
}

static int send_extent(uint64_t offset, uint64_t len, void *arg)
{
    live_t *l = arg;
    for (uint64_t page = offset / VM_PAGE_SIZE; page < (offset + len) / VM_PAGE_SIZE; page++) {
        int rc = queue_page(l, page);
        if (rc)
            return rc;
    }
    return 0;
}

static int full_pass(live_t *l)
{
    guest_memory_t view = memfd_view(l);
    uint64_t data_pages = 0;
    int rc = guest_memory_for_each_extent(&view, count_extent, &data_pages);
    if (rc < 0)
        return session_fail(&l->s, MIGRATION_ERR_VM, "cannot walk guest memory: %s",
                            strerror(-rc));
    l->s.out->zero_pages += vm_page_count(l->vm) - data_pages;   /* holes: never sent */
    l->s.progress.phase = MIGRATION_PHASE_FULL;
    l->s.progress.pass = 1;
    l->s.progress.pass_pages = data_pages;
    l->s.progress.pass_pages_sent = 0;
    session_report(&l->s, true);
    rc = guest_memory_for_each_extent(&view, send_extent, l);
    if (rc < 0 && l->s.out->error == 0)   /* the walk itself failed, not a send */
        return session_fail(&l->s, MIGRATION_ERR_VM, "cannot walk guest memory: %s",
                            strerror(-rc));
    return rc ? rc : flush_batch(l);
}

/* --- pre-copy -------------------------------------------------------------------- */

static uint64_t wire_bytes(const live_t *l)
{
    return stream_sender_stats(l->s.stream).wire_bytes;
}

/* PASS_END, then wait until the receiver has consumed the pass: the pass's
 * time then covers delivery (a fair rate sample), and nothing is left in
 * flight that a switchover would have to wait for with the vCPUs paused. */
static int end_pass(live_t *l, uint32_t pass)
{
    uint8_t record[MIGRATION_PASS_END_SIZE];
    migration_pass_end_encode(pass, l->s.progress.pass_pages_sent, record);
    int rc = session_send_record(&l->s, MIGRATION_RECORD_PASS_END, record, sizeof record,
                                 "end of pass");
    if (!rc && (rc = stream_sender_drain(l->s.stream, l->s.p->io_timeout_ms)))
        rc = session_stream_fail(&l->s, rc, "waiting for the pass to be consumed", false);
    return rc;
}

static void report_decision(live_t *l, const policy_decision_t *d, uint64_t remaining)
{
    migration_progress_t *pr = &l->s.progress;
    pr->pass_done = true;
    pr->remaining_pages = remaining;
    pr->dirty_rate_Bps = d->dirty_rate_Bps;
    pr->predicted_stun_us = d->predicted_stun_us;
    pr->decision = d->action;
    pr->throttle_percent = l->throttle;
}

/* Runs passes until the policy says SWITCHOVER (0) or something fails. */
static int precopy(live_t *l)
{
    const policy_config_t *pc = &l->s.p->policy;
    if (vm_dirty_log_enable(l->vm) != 0)
        return session_fail(&l->s, MIGRATION_ERR_VM, "cannot enable the dirty log");
    l->dirty_logging = true;

    uint32_t pass = 1;
    int64_t pass_start = migration_now_ns();
    uint64_t wire_before = wire_bytes(l);
    int rc = full_pass(l);
    for (;;) {
        if (rc || (rc = end_pass(l, pass)))
            return rc;
        int64_t sent_at = migration_now_ns();
        if (vm_dirty_log_collect(l->vm, l->dirty) != 0)
            return session_fail(&l->s, MIGRATION_ERR_VM, "cannot collect the dirty log");
        int64_t now = migration_now_ns();
        uint64_t remaining = count_dirty(l);
        uint64_t wire_now = wire_bytes(l);
        rate_add(&l->s.rate, wire_now - wire_before, (uint64_t)(sent_at - pass_start) / 1000);
        policy_decision_t d = policy_step(l->policy, &(policy_pass_t){
            .bytes_sent = wire_now - wire_before,
            .elapsed_us = (uint64_t)(now - pass_start) / 1000,
            .pages_dirtied = remaining,
            .remaining_pages = remaining,
            .bandwidth_Bps = rate_Bps(&l->s.rate),
        });
        l->s.out->passes = pass;
        log_debug("migration", "pass %u: %llu pages, %llu bytes in %.1f ms (%llu B/s "
                  "estimated); %llu dirty, %s, stun %llu us", pass,
                  (unsigned long long)l->s.progress.pass_pages_sent,
                  (unsigned long long)(wire_now - wire_before),
                  (double)(sent_at - pass_start) / 1e6, (unsigned long long)rate_Bps(&l->s.rate),
                  (unsigned long long)remaining, policy_action_name(d.action),
                  (unsigned long long)d.predicted_stun_us);
        if (d.action == POLICY_THROTTLE) {
            if (vm_throttle(l->vm, d.throttle_percent) != 0)
                return session_fail(&l->s, MIGRATION_ERR_VM, "cannot throttle the vCPUs to %u%%",
                                    d.throttle_percent);
            l->throttle = d.throttle_percent;
            if (l->throttle > l->s.out->throttle_max)
                l->s.out->throttle_max = l->throttle;
        }
        report_decision(l, &d, remaining);
        bool cancel = session_report(&l->s, true);
        l->s.progress.pass_done = false;
        if (cancel)
            return session_fail(&l->s, MIGRATION_ERR_CANCELLED, "cancelled after pass %u", pass);
        if (d.action == POLICY_SWITCHOVER) {
            l->s.out->predicted_stun_us = d.predicted_stun_us;
            return 0;
        }
        if (d.action == POLICY_ABORT) {
            l->s.out->abort_reason = d.reason;
            return session_fail(&l->s, MIGRATION_ERR_NOT_CONVERGED, "pre-copy gave up (%s) after "
                                "%u passes and %.1f s: %llu pages still dirty, dirty rate %llu "
                                "B/s, send rate %llu B/s, predicted stun %llu us over the limit "
                                "of %llu us, throttle %u%%", policy_abort_reason_name(d.reason),
                                pass, (double)d.total_us / 1e6, (unsigned long long)remaining,
                                (unsigned long long)d.dirty_rate_Bps,
                                (unsigned long long)d.bandwidth_Bps,
                                (unsigned long long)d.predicted_stun_us,
                                (unsigned long long)pc->downtime_limit_us, l->throttle);
        }
        /* CONTINUE or THROTTLE: re-arm the pages we are about to send, then send. */
        if (vm_dirty_log_clear(l->vm, l->dirty) != 0)
            return session_fail(&l->s, MIGRATION_ERR_VM, "cannot clear the dirty log");
        pass++;
        pass_start = now;
        wire_before = wire_now;
        l->s.progress.phase = MIGRATION_PHASE_ITERATE;
        l->s.progress.pass = pass;
        l->s.progress.pass_pages = remaining;
        l->s.progress.pass_pages_sent = 0;
        rc = send_dirty_pages(l);
    }
}

/* --- switchover -------------------------------------------------------------------- */

/* Stop, send the rest and the state, verify. Everything up to the commit. */
static int stop_and_copy(live_t *l)
{
    const migration_params_t *p = l->s.p;
    l->cancellable = false;
    l->s.progress.phase = MIGRATION_PHASE_SWITCHOVER;
    vm_status_t st;
    vm_status(l->vm, &st);
    l->pause_ns = migration_now_ns();
    if (st.state == VM_RUNNING) {
        if (vm_pause(l->vm) != 0)
            return session_fail(&l->s, MIGRATION_ERR_VM, "cannot pause the vCPUs");
        l->paused_by_us = true;
        l->step_ns[0] = migration_now_ns();
    } else if (st.state != VM_PAUSED) {
        return session_fail(&l->s, MIGRATION_ERR_VM, "the VM stopped during pre-copy: %s",
                            st.stop_reason);
    }
    if (vm_dirty_log_collect(l->vm, l->dirty) != 0 || vm_dirty_log_clear(l->vm, l->dirty) != 0)
        return session_fail(&l->s, MIGRATION_ERR_VM, "cannot read the last dirty pages");
    l->s.out->final_pages = count_dirty(l);
    l->s.progress.pass_pages = l->s.out->final_pages;
    l->s.progress.pass_pages_sent = 0;
    int rc = send_dirty_pages(l);
    if (rc)
        return rc;
    l->step_ns[1] = migration_now_ns();

    uint8_t *state = malloc(VM_STATE_MAX_BYTES);
    size_t state_len = 0;
    if (!state)
        return session_fail(&l->s, MIGRATION_ERR_NOMEM, "no memory for the vCPU state");
    rc = vm_save_state(l->vm, state, VM_STATE_MAX_BYTES, &state_len);
    if (rc)
        rc = session_fail(&l->s, MIGRATION_ERR_VM, "cannot save the vCPU state (%d)", rc);
    else
        rc = session_send_state(&l->s, state, state_len);
    free(state);
    if (rc || (rc = session_send_ready(&l->s)))
        return rc;
    l->step_ns[2] = migration_now_ns();
    l->s.out->stop_copy_ms = migration_ms_between(l->pause_ns, l->step_ns[2]);

    /* The receiver loads the state and hashes while we hash here. */
    uint8_t mine[MIGRATION_HASH_BYTES], theirs[MIGRATION_HASH_BYTES];
    if (p->verify_memory_hash && vm_memory_hash(l->vm, mine) != 0)
        return session_fail(&l->s, MIGRATION_ERR_VM, "cannot hash the source memory");
    bool hashed = false;
    if ((rc = session_wait_verified(&l->s, &hashed, theirs)))
        return rc;
    l->step_ns[3] = migration_now_ns();
    return p->verify_memory_hash ? session_compare_hashes(&l->s, mine, hashed, theirs) : 0;
}

/* Before the commit, any failure lands here: the VM goes on running here. */
static void roll_back(live_t *l)
{
    if (l->throttle && vm_throttle(l->vm, 0) != 0)
        log_error("migration", "%s: rollback: cannot turn the throttle off", vm_name(l->vm));
    if (l->paused_by_us && vm_resume(l->vm) != 0)
        log_error("migration", "%s: rollback: cannot resume the VM", vm_name(l->vm));
    if (l->dirty_logging && vm_dirty_log_disable(l->vm) != 0)
        log_error("migration", "%s: rollback: cannot disable the dirty log", vm_name(l->vm));
    l->throttle = 0;
    l->paused_by_us = l->dirty_logging = false;
    session_call_off(&l->s, l->s.out->error_text);
    log_info("migration", "%s: migration rolled back, the VM runs here: %s", vm_name(l->vm),
             l->s.out->error_text);
}

static int check_vm(live_t *l, vm_t **vm_p)
{
    const migration_params_t *p = l->s.p;
    if (!vm_p || !*vm_p)
        return session_fail(&l->s, MIGRATION_ERR_INVALID, "no VM to migrate");
    l->vm = *vm_p;
    if (!p->vm_config)
        return session_fail(&l->s, MIGRATION_ERR_INVALID, "no VM config to describe the VM");
    vm_status_t st;
    vm_status(l->vm, &st);
    if (st.state != VM_RUNNING && st.state != VM_PAUSED)
        return session_fail(&l->s, MIGRATION_ERR_INVALID, "%s is not running (state %d)",
                            vm_name(l->vm), st.state);
    if (p->vm_config->memory_bytes != vm_page_count(l->vm) * VM_PAGE_SIZE)
        return session_fail(&l->s, MIGRATION_ERR_INVALID, "the config says %llu bytes of memory "
                            "but the VM has %llu", (unsigned long long)p->vm_config->memory_bytes,
                            (unsigned long long)(vm_page_count(l->vm) * VM_PAGE_SIZE));
    vm_memory(l->vm, &l->memory);
    l->words = vm_dirty_bitmap_words(l->vm);
    l->dirty = calloc(l->words, sizeof *l->dirty);
    l->policy = policy_new(&p->policy);
    if (!l->dirty)
        return session_fail(&l->s, MIGRATION_ERR_NOMEM, "no memory for the dirty bitmap");
    if (!l->policy)
        return session_fail(&l->s, MIGRATION_ERR_INVALID, "the policy config is invalid");
    return 0;
}

static migration_describe_t describe_vm(const live_t *l)
{
    const vm_config_t *cfg = l->s.p->vm_config;
    migration_describe_t d = {
        .kind = MIGRATION_KIND_LIVE,
        .flags = l->s.p->verify_memory_hash ? MIGRATION_FLAG_VERIFY : 0,
        .memory_bytes = cfg->memory_bytes,
        .vcpus = cfg->vcpus,
    };
    snprintf(d.name, sizeof d.name, "%s", vm_name(l->vm));
    snprintf(d.cmdline, sizeof d.cmdline, "%s", cfg->cmdline ? cfg->cmdline : "");
    return d;
}

int migration_send(vm_t **vm_p, const migration_params_t *p, migration_progress_fn cb,
                   void *ctx, migration_result_t *out)
{
    live_t *l = calloc(1, sizeof *l);
    if (!l) {
        memset(out, 0, sizeof *out);
        return out->error = MIGRATION_ERR_NOMEM;
    }
    l->cancellable = true;
    int rc = session_init(&l->s, p, cb, ctx, out, MIGRATION_KIND_LIVE);
    if (!rc)
        rc = check_vm(l, vm_p);
    uint64_t first_page = 0;
    if (!rc) {
        migration_describe_t d = describe_vm(l);
        rc = session_open(&l->s, &d, NULL, 0, &first_page);
    }
    if (!rc && first_page != 0)
        rc = session_fail(&l->s, MIGRATION_ERR_STREAM, "the receiver wants a live migration to "
                          "start at page %llu", (unsigned long long)first_page);
    if (!rc)
        rc = precopy(l);
    if (!rc)
        rc = stop_and_copy(l);
    if (!rc)
        rc = session_commit(&l->s);
    if (rc && l->vm && !out->committed) {
        roll_back(l);
    } else if (out->committed) {
        /* Ownership has moved: from here on the source never runs again. */
        if (session_confirm(&l->s) == 0) {
            out->downtime_ms = migration_ms_between(l->pause_ns, migration_now_ns());
            log_debug("migration", "switchover: pause %.1f ms, %llu pages %.1f ms, state %.1f ms, "
                      "load and verify %.1f ms, commit %.1f ms, resume confirmed after %.1f ms",
                      migration_ms_between(l->pause_ns, l->step_ns[0]),
                      (unsigned long long)out->final_pages,
                      migration_ms_between(l->step_ns[0], l->step_ns[1]),
                      migration_ms_between(l->step_ns[1], l->step_ns[2]),
                      migration_ms_between(l->step_ns[2], l->step_ns[3]), out->commit_ms,
                      out->downtime_ms);
        } else {
            out->error = MIGRATION_ERR_UNCONFIRMED;
            log_error("migration", "%s: committed to the destination, which did not confirm "
                      "that it resumed: %s", vm_name(l->vm), out->error_text);
        }
        vm_destroy(vm_p);
        out->source_released = true;
    }
    l->s.progress.phase = MIGRATION_PHASE_DONE;
    session_report(&l->s, true);
    session_close(&l->s);
    policy_destroy(&l->policy);
    free(l->dirty);
    free(l);
    if (out->error == 0)
        log_info("migration", "live migration done: %u passes, %llu pages (%llu elided), "
                 "%llu bytes, downtime %.1f ms, total %.0f ms, %s", out->passes,
                 (unsigned long long)out->pages_sent, (unsigned long long)out->zero_pages,
                 (unsigned long long)out->bytes_sent, out->downtime_ms, out->total_ms,
                 out->cipher);
    return out->error;
}
