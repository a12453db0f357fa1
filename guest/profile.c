/* profile.c - the main loop: write pages as the profile says, verify them in
 * sweeps, heartbeat, print status, and sleep until the next of these is due.
 *
 * Pacing is by the TSC: by time t the profile should have written
 * (t - t0) / tsc_per_page pages. Debt is capped at one second, so a guest
 * that was stopped does not burst afterwards. */
#include "kernel.h"
#include "protocol.h"

#define WRITE_BURST 64      /* pages written before looking at the clock again */
#define VERIFY_BURST 1024   /* sweep work units per step (see verify_step) */
#define VERIFY_COST 16      /* units for checking a written page */
#define SWEEP_PERIOD_MS 1000

static uint64_t ms_to_tsc(uint64_t ms) { return cfg.tsc_hz / 1000 * ms; }

static uint64_t per_second_to_tsc(uint64_t per_second)
{
    return per_second ? cfg.tsc_hz / per_second : 0;
}

static uint64_t rng_next(void)
{
    uint64_t x = state.rng;  /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state.rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static uint64_t rng_below(uint64_t n) { return n ? rng_next() % n : 0; }

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

/* Paced work wakes the CPU once a batch is due: 10 ms of it, at least one
 * unit and at most a burst. */
static uint64_t batch_of(uint64_t per_second, uint64_t burst)
{
    uint64_t batch = per_second / 100;
    return batch < 1 ? 1 : batch > burst ? burst : batch;
}

/* --- writing --------------------------------------------------------------- */

static uint64_t profile_pages(void)
{
    const guest_args_t *a = &cfg.args;
    uint64_t arena = cfg.layout.arena_pages;
    switch (a->profile) {
    case GUEST_PROFILE_WEB: return min_u64(a->hot_bytes / PAGE_SIZE, arena);
    case GUEST_PROFILE_DB:
    case GUEST_PROFILE_STREAM:
        return a->wss_bytes ? min_u64(a->wss_bytes / PAGE_SIZE, arena) : arena;
    default: return 0;
    }
}

static uint64_t pick_page(void)
{
    const layout_t *l = &cfg.layout;
    uint64_t pages = profile_pages(), index;
    switch (cfg.args.profile) {
    case GUEST_PROFILE_WEB: {
        /* The rest of memory is read-mostly: one read per write, and one
         * write in 64 lands there too. */
        uint64_t cold = l->arena_pages - pages;
        if (cold) {
            uint64_t gfn = arena_gfn(l, pages + rng_below(cold));
            state.sink += *(volatile uint64_t *)(gfn << PAGE_SHIFT);
        }
        index = cold && rng_below(64) == 0 ? pages + rng_below(cold) : rng_below(pages);
        break;
    }
    case GUEST_PROFILE_DB:
        index = rng_below(pages);
        break;
    default:  /* stream */
        index = state.stream_next;
        state.stream_next = index + 1 < pages ? index + 1 : 0;
        break;
    }
    return arena_gfn(l, index);
}

static bool profile_writes(void)
{
    uint32_t p = cfg.args.profile;
    return p == GUEST_PROFILE_WEB || p == GUEST_PROFILE_DB || p == GUEST_PROFILE_STREAM;
}

/* Returns when the next write is due (0: now). */
static uint64_t write_step(uint64_t now)
{
    if (!profile_writes())
        return UINT64_MAX;
    uint64_t per_page = per_second_to_tsc(cfg.args.rate_bytes / PAGE_SIZE);
    uint64_t due;
    if (per_page == 0) {
        due = state.writes_done + WRITE_BURST;
    } else {
        due = (now - state.t0) / per_page;
        uint64_t one_second = cfg.args.rate_bytes / PAGE_SIZE;
        if (due > state.writes_done + one_second)
            state.writes_done = due - one_second;
    }
    for (unsigned n = 0; state.writes_done < due && n < WRITE_BURST; n++, state.writes_done++)
        page_write(pick_page());
    if (per_page == 0 || state.writes_done < due)
        return 0;
    return state.t0 + (state.writes_done + batch_of(cfg.args.rate_bytes / PAGE_SIZE, WRITE_BURST)) *
                          per_page;
}

/* --- verifying ------------------------------------------------------------- */

#define STACK_CANARY 0x57AC4CA9A12ED00Dull

static void paint_stack_canary(void)
{
    for (uint64_t *p = (uint64_t *)_stack_bottom; p < (uint64_t *)_stack_top_page; p++)
        *p = STACK_CANARY;
}

/* The kernel promises to use only the top stack page (docs/guest.md). */
static void check_stack_canary(void)
{
    for (uint64_t *p = (uint64_t *)_stack_bottom; p < (uint64_t *)_stack_top_page; p++) {
        if (*p != STACK_CANARY) {
            if (state.errors_printed++ < 8)
                kprintf("ferry-guest: self-check: stack grew past its top page\n");
            state.errors++;
            report_status(GUEST_STATUS_CHECK_FAILED);
            paint_stack_canary();
            return;
        }
    }
}

/* Sweeps walk the arena region by region at verify_rate units a second: a
 * never-written frame costs one unit (a table read), a written one
 * VERIFY_COST (its stamps). A new sweep starts at most once a second. */
static uint64_t verify_step(uint64_t now)
{
    uint64_t per_unit = per_second_to_tsc(cfg.args.verify_rate);
    if (per_unit == 0)
        return UINT64_MAX;
    if (now < state.next_sweep)
        return state.next_sweep;
    uint64_t due = (now - state.verify_t0) / per_unit;
    if (due > state.verify_units + cfg.args.verify_rate)
        state.verify_units = due - cfg.args.verify_rate;
    const layout_t *l = &cfg.layout;
    const volatile uint64_t *table = cfg.layout.table;
    for (unsigned burst = 0; state.verify_units < due && burst < VERIFY_BURST;) {
        const region_t *r = &l->arena[state.sweep_region];
        uint64_t gfn = r->start_gfn + state.sweep_offset;
        unsigned cost = 1;
        if (table[gfn]) {
            bool written;
            bool ok = page_verify(gfn, &written);
            cost = VERIFY_COST;
            state.pages_verified++;
            if (!ok) {
                state.errors++;
                report_status(GUEST_STATUS_CHECK_FAILED);
            }
        }
        state.verify_units += cost;
        burst += cost;
        if (++state.sweep_offset < r->pages)
            continue;
        state.sweep_offset = 0;
        if (++state.sweep_region < l->arena_regions)
            continue;
        state.sweep_region = 0;
        state.sweeps++;
        check_stack_canary();
        state.next_sweep = now + ms_to_tsc(SWEEP_PERIOD_MS);
        return state.next_sweep;
    }
    if (state.verify_units < due)
        return 0;
    return state.verify_t0 +
           (state.verify_units + batch_of(cfg.args.verify_rate, VERIFY_BURST)) * per_unit;
}

/* --- the test profile ------------------------------------------------------ */

/* One round: a deterministic arithmetic run of pages in the largest arena
 * region, chosen from (seed, round); published through the info slots. */
static void test_round(uint32_t round)
{
    const layout_t *l = &cfg.layout;
    const region_t *best = &l->arena[0];
    for (unsigned i = 1; i < l->arena_regions; i++)
        if (l->arena[i].pages > best->pages)
            best = &l->arena[i];
    uint64_t count = cfg.args.test_pages;
    uint64_t x = cfg.args.seed ^ ((uint64_t)round * 0x9E3779B97F4A7C15ull);
    x = (x ^ (x >> 31)) * 0xBF58476D1CE4E5B9ull;
    uint64_t stride = 1 + (x >> 7) % (best->pages / count);
    uint64_t span = (count - 1) * stride + 1;
    uint64_t first = best->start_gfn + (x >> 17) % (best->pages - span + 1);
    for (uint64_t i = 0; i < count; i++)
        page_write(first + i * stride);
    state.test_last_round = round;
    report_info(GUEST_INFO_TEST_FIRST_GFN, first);
    report_info(GUEST_INFO_TEST_STRIDE, stride);
    report_info(GUEST_INFO_TEST_COUNT, count);
    report_info(GUEST_INFO_TEST_ROUND, round);
    kprintf("ferry-guest: test round %u: %lu pages from frame 0x%lx, stride %lu\n", round, count,
            first, stride);
}

/* --- the mailbox ----------------------------------------------------------- */

static bool is_notice(uint32_t posted)
{
    uint32_t tag = posted >> GUEST_NOTICE_TAG_SHIFT;
    return tag == GUEST_NOTICE_MIGRATING || tag == GUEST_NOTICE_MIGRATED;
}

/* A workload with state to quiesce would do it here, before the
 * acknowledgement lets the host go ahead; this one has nothing to flush, so
 * it says what it saw and acknowledges at once. The line comes first, so a
 * host that sees the acknowledgement has the line on its console too. */
static void notice_handle(uint32_t posted)
{
    if (posted == state.notice_last)
        return;
    uint32_t seq = posted & GUEST_NOTICE_SEQ_MASK;
    if (posted >> GUEST_NOTICE_TAG_SHIFT == GUEST_NOTICE_MIGRATING)
        kprintf("ferry-guest: migration notice %u: host is about to migrate this VM\n", seq);
    else
        kprintf("ferry-guest: migration %u finished\n", seq);
    state.notice_last = posted;
    outl(GUEST_PORT_NOTICE_ACK, posted);
}

/* Every profile reads the mailbox at its wake-ups, at most once a
 * millisecond (one IN: a VM exit, or a round trip for a process guest).
 * Only the test profile wakes up for it, to start rounds promptly; the
 * others answer a notice within a heartbeat period. */
static uint64_t mailbox_step(uint64_t now)
{
    bool test = cfg.args.profile == GUEST_PROFILE_TEST;
    if (now >= state.next_poll) {
        state.next_poll = now + ms_to_tsc(1);
        uint32_t posted = inl(GUEST_PORT_MAILBOX);
        if (is_notice(posted))
            notice_handle(posted);
        else if (test && posted != 0 && posted != UINT32_MAX && posted != state.test_last_round)
            test_round(posted);
    }
    return test ? state.next_poll : UINT64_MAX;
}

/* --- the loop -------------------------------------------------------------- */

static const char *status_name(uint32_t s)
{
    return s == GUEST_STATUS_RUNNING ? "running" : s == GUEST_STATUS_CHECK_FAILED ? "check-failed" : "?";
}

static uint64_t periodic(uint64_t now, uint64_t *next, uint64_t period)
{
    *next += period;
    if (*next <= now)
        *next = now + period;
    return *next;
}

/* Times a scan of never-written table entries and sizes the default sweep
 * speed to about 5% of this vCPU: a guest under an instruction emulator
 * runs a thousand times slower than on hardware and must not spend all of
 * it sweeping. */
static void size_verify_rate(void)
{
    if (!cfg.args.verify_auto)
        return;
    const volatile uint64_t *table = cfg.layout.table;
    uint64_t gfn = cfg.layout.arena[0].start_gfn, sink = 0;
    for (unsigned i = 0; i < 256; i++)  /* fault the table page in first */
        sink += table[gfn + i] ? 1 : 0;
    uint64_t t0 = rdtsc();
    for (unsigned i = 0; i < 256; i++)
        sink += table[gfn + i] ? 1 : 0;
    uint64_t per_unit = (rdtsc() - t0) / 256 + 1;
    state.sink += sink;
    uint64_t rate = cfg.tsc_hz / per_unit / 20;
    cfg.args.verify_rate = (uint32_t)(rate < 256 ? 256 : rate > (1u << 30) ? (1u << 30) : rate);
    kprintf("ferry-guest: sweeps check %u table entries/s (%lu cycles each)\n", cfg.args.verify_rate,
            per_unit);
}

void profile_start(void)
{
    size_verify_rate();
    uint64_t now = rdtsc();
    state.rng = cfg.args.seed * 0x9E3779B97F4A7C15ull | 1;
    state.t0 = state.verify_t0 = now;
    state.next_heartbeat = state.next_print = state.next_sweep = now;
    paint_stack_canary();
}

/* Everything the loop carries from one turn to the next is in state, so a
 * guest restored from a snapshot (the process guest, vmm/proc_guest.c) can
 * enter here without profile_start. */
void profile_loop(void)
{
    uint64_t hb_period = ms_to_tsc(cfg.args.heartbeat_ms);
    uint64_t print_period = ms_to_tsc(cfg.args.print_ms);
    uint64_t tick = ms_to_tsc(1);

    for (;;) {
        uint64_t now = rdtsc();
        if (now >= state.next_heartbeat) {
            report_heartbeat();
            periodic(now, &state.next_heartbeat, hb_period);
        }
        if (print_period && now >= state.next_print) {
            kprintf("ferry-guest: hb=%u status=%s written=%lu verified=%lu errors=%lu sweeps=%lu\n",
                    state.heartbeat, status_name(state.status), state.pages_written,
                    state.pages_verified, state.errors, state.sweeps);
            periodic(now, &state.next_print, print_period);
        }
        /* Work that is paced (writes, sweeps) waits for at least a tick, so
         * that it runs in batches rather than one page per wake-up. */
        uint64_t work = min_u64(write_step(now), verify_step(now));
        if (work != 0 && work < now + tick)
            work = now + tick;
        uint64_t next = min_u64(state.next_heartbeat, work);
        if (print_period)
            next = min_u64(next, state.next_print);
        next = min_u64(next, mailbox_step(now));
        if (next > rdtsc())
            idle_until(next);
    }
}

void profile_run(void)
{
    profile_start();
    profile_loop();
}
