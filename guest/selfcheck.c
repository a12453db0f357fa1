/* selfcheck.c - every page the profile writes carries stamps derived from
 * its frame number and a sequence number, one in each 512-byte eighth of the
 * page; the table keeps (seq, checksum) per frame. A page whose stamps do not
 * match its entry was lost (older contents), torn (some eighths old) or
 * corrupted: the sweep counts it as an error.
 *
 * Eight stamps, not a full page of pattern: dirtying a page takes one write,
 * and a guest that runs under an instruction emulator (see docs/guest.md)
 * pays per instruction.
 *
 * Table entry: bits 0..31 seq (0 = never written), bits 32..63 checksum.
 * The page is written before its entry, in one 64-bit store, so an entry
 * never describes contents that are not fully there. */
#include "kernel.h"

#define STAMPS 8
#define STAMP_STRIDE (PAGE_SIZE / 8 / STAMPS)  /* in 64-bit words: 512 bytes */
#define WORD_STEP 0xD1B54A32D192ED03ull

static uint64_t pattern_base(uint64_t gfn, uint32_t seq)
{
    /* splitmix64 finalizer over (gfn, seq) */
    uint64_t z = (gfn << 32 ^ seq) + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint32_t fold(uint64_t x) { return (uint32_t)(x ^ (x >> 32)); }

void page_write(uint64_t gfn)
{
    volatile uint64_t *entry = &cfg.layout.table[gfn];
    uint32_t seq = (uint32_t)*entry + 1;
    if (seq == 0)
        seq = 1;
    uint64_t *page = (uint64_t *)(gfn << PAGE_SHIFT);
    uint64_t w = pattern_base(gfn, seq), sum = 0;
    for (unsigned i = 0; i < STAMPS; i++, w += WORD_STEP) {
        page[i * STAMP_STRIDE] = w;
        sum ^= w;
    }
    barrier();
    *entry = (uint64_t)fold(sum) << 32 | seq;
    state.pages_written++;
}

bool page_verify(uint64_t gfn, bool *was_written)
{
    uint64_t entry = ((volatile uint64_t *)cfg.layout.table)[gfn];
    uint32_t seq = (uint32_t)entry;
    *was_written = seq != 0;
    if (seq == 0)
        return true;
    const uint64_t *page = (const uint64_t *)(gfn << PAGE_SHIFT);
    uint64_t w = pattern_base(gfn, seq), sum = 0, bad = 0;
    for (unsigned i = 0; i < STAMPS; i++, w += WORD_STEP) {
        bad |= page[i * STAMP_STRIDE] ^ w;
        sum ^= page[i * STAMP_STRIDE];
    }
    bool ok = bad == 0 && fold(sum) == (uint32_t)(entry >> 32);
    if (!ok && state.errors_printed < 8) {
        state.errors_printed++;
        kprintf("ferry-guest: self-check: frame 0x%lx does not match seq %u (first word %lx)\n",
                gfn, seq, page[0]);
    }
    return ok;
}
