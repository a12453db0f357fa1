/* timer.c - time for the profile's pacing: the TSC, its frequency, and the
 * LAPIC TSC-deadline timer that lets an idle guest hlt instead of spinning.
 *
 * The frequency comes, in order, from the command line (the ferry VMM passes
 * tsc_khz=), the hypervisor's TSC leaf 0x40000010, CPUID 0x15, or the PIT
 * (QEMU has one). */
#include "kernel.h"

#define MSR_APIC_BASE      0x1B
#define MSR_TSC_DEADLINE   0x6E0
#define APIC_BASE_ENABLE   (1ull << 11)
#define APIC_TPR           0x080
#define APIC_SVR           0x0F0
#define APIC_LVT_TIMER     0x320
#define APIC_LVT_LINT0     0x350
#define APIC_LVT_LINT1     0x360
#define APIC_LVT_MASKED    (1u << 16)
#define APIC_TIMER_TSC_DEADLINE (2u << 17)

#define TIMER_VECTOR       0x40
#define SPURIOUS_VECTOR    0xFF

uint64_t lapic_eoi;  /* EOI register address, read by timer_isr (boot.S) */

static bool plausible_khz(uint64_t khz) { return khz >= 100000 && khz <= 20000000; }

/* Counts TSC cycles over 50 ms of PIT channel 2. Returns 0 without a PIT. */
static uint32_t pit_calibrate_khz(void)
{
    const uint32_t latch = 1193182 / 20;
    uint8_t gate = inb(0x61);
    outb(0x61, (uint8_t)((gate & ~0x02) | 0x01));  /* gate on, speaker off */
    outb(0x43, 0xB0);                               /* channel 2, lo/hi, mode 0 */
    outb(0x42, latch & 0xff);
    outb(0x42, (uint8_t)(latch >> 8));
    uint64_t t0 = rdtsc();
    while (!(inb(0x61) & 0x20))
        if (rdtsc() - t0 > (1ull << 36))
            return 0;
    uint64_t khz = (rdtsc() - t0) * 20 / 1000;
    return plausible_khz(khz) ? (uint32_t)khz : 0;
}

uint32_t tsc_calibrate_khz(uint32_t from_cmdline, const char **how)
{
    uint32_t r[4];
    if (from_cmdline) {
        *how = "command line";
        return from_cmdline;
    }
    cpuid(1, 0, r);
    if (r[2] & (1u << 31)) {  /* running under a hypervisor */
        cpuid(0x40000000, 0, r);
        if (r[0] >= 0x40000010) {
            cpuid(0x40000010, 0, r);
            if (plausible_khz(r[0])) {
                *how = "cpuid 0x40000010";
                return r[0];
            }
        }
    }
    cpuid(0, 0, r);
    if (r[0] >= 0x15) {
        cpuid(0x15, 0, r);
        if (r[0] && r[1] && r[2]) {
            uint64_t khz = (uint64_t)r[2] / 1000 * r[1] / r[0];
            if (plausible_khz(khz)) {
                *how = "cpuid 0x15";
                return (uint32_t)khz;
            }
        }
    }
    uint32_t khz = pit_calibrate_khz();
    if (khz) {
        *how = "PIT";
        return khz;
    }
    *how = "guessed (no source)";
    return 2000000;
}

void timer_init(void)
{
    /* Mask the legacy PIC: under QEMU its timer would otherwise arrive as
     * vector 0 the first time interrupts are enabled. */
    outb(0x21, 0xff);
    outb(0xA1, 0xff);

    uint32_t r[4];
    cpuid(1, 0, r);
    bool apic = r[3] & (1u << 9), deadline = r[2] & (1u << 24);
    if (!apic || !deadline) {
        cfg.have_deadline_timer = false;
        return;
    }
    uint64_t base_msr = rdmsr(MSR_APIC_BASE);
    if (!(base_msr & APIC_BASE_ENABLE))
        wrmsr(MSR_APIC_BASE, base_msr | APIC_BASE_ENABLE);
    cfg.lapic_base = base_msr & 0x000ffffffffff000ull;
    lapic_eoi = cfg.lapic_base + 0xB0;

    volatile uint32_t *apic_regs = (volatile uint32_t *)cfg.lapic_base;
    apic_regs[APIC_SVR / 4] = 0x100 | SPURIOUS_VECTOR;
    apic_regs[APIC_TPR / 4] = 0;
    apic_regs[APIC_LVT_LINT0 / 4] = APIC_LVT_MASKED;
    apic_regs[APIC_LVT_LINT1 / 4] = APIC_LVT_MASKED;
    apic_regs[APIC_LVT_TIMER / 4] = TIMER_VECTOR | APIC_TIMER_TSC_DEADLINE;
    cfg.have_deadline_timer = true;
}

/* Interrupts stay off except inside "sti; hlt": the timer only wakes us. */
void idle_until(uint64_t tsc)
{
    if (!cfg.have_deadline_timer) {
        while (rdtsc() < tsc)
            cpu_relax();
        return;
    }
    wrmsr(MSR_TSC_DEADLINE, tsc);
    while (rdtsc() < tsc)
        __asm__ volatile("sti; hlt; cli" ::: "memory");
}
