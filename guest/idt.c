/* idt.c - the interrupt table: CPU exceptions report and halt; every other
 * vector is acknowledged and ignored (the timer only wakes the CPU). */
#include "kernel.h"
#include "protocol.h"

typedef struct __attribute__((packed)) {
    uint16_t offset_low, selector;
    uint8_t ist, type;
    uint16_t offset_mid;
    uint32_t offset_high, reserved;
} idt_gate_t;

#define GATE_INTERRUPT_64 0x8E  /* present, ring 0, 64-bit interrupt gate */
#define CODE_SELECTOR 0x08

static idt_gate_t idt[256] __attribute__((aligned(16)));
extern const uint64_t exception_stubs[32];
extern char timer_isr[], spurious_isr[];

static void set_gate(unsigned vector, uint64_t handler)
{
    idt[vector] = (idt_gate_t){
        .offset_low = (uint16_t)handler,
        .selector = CODE_SELECTOR,
        .type = GATE_INTERRUPT_64,
        .offset_mid = (uint16_t)(handler >> 16),
        .offset_high = (uint32_t)(handler >> 32),
    };
}

void idt_init(void)
{
    for (unsigned v = 0; v < 32; v++)
        set_gate(v, exception_stubs[v]);
    for (unsigned v = 32; v < 255; v++)
        set_gate(v, (uint64_t)timer_isr);
    set_gate(255, (uint64_t)spurious_isr);
    struct __attribute__((packed)) {
        uint16_t limit;
        uint64_t base;
    } pointer = {sizeof idt - 1, (uint64_t)idt};
    __asm__ volatile("lidt %0" ::"m"(pointer));
}

static const char *const exception_names[32] = {
    "divide error", "debug", "NMI", "breakpoint", "overflow", "bound range",
    "invalid opcode", "device not available", "double fault", "coprocessor overrun",
    "invalid TSS", "segment not present", "stack fault", "general protection",
    "page fault", "reserved", "x87 error", "alignment check", "machine check",
    "SIMD error", "virtualization", "control protection",
};

/* Called from boot.S with the exception frame's contents. */
__attribute__((noreturn)) void exception_report(uint64_t vector, uint64_t error, uint64_t rip,
                                                uint64_t cr2);
void exception_report(uint64_t vector, uint64_t error, uint64_t rip, uint64_t cr2)
{
    const char *name = vector < 32 && exception_names[vector] ? exception_names[vector] : "?";
    panic_status(GUEST_STATUS_FAULT, "exception %lu (%s) at rip 0x%lx, error 0x%lx, cr2 0x%lx",
                 vector, name, rip, error, cr2);
}
