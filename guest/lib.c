/* lib.c - the little libc the kernel needs: memory helpers the compiler may
 * call, a 16550 serial console and a printf for it. */
#include "kernel.h"
#include "protocol.h"

void *memset(void *d, int c, size_t n)
{
    unsigned char *p = d;
    while (n--)
        *p++ = (unsigned char)c;
    return d;
}

void *memcpy(void *d, const void *s, size_t n)
{
    unsigned char *p = d;
    const unsigned char *q = s;
    while (n--)
        *p++ = *q++;
    return d;
}

size_t strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

/* --- COM1 ------------------------------------------------------------------ */

#define UART_THR 0  /* transmit holding */
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THR_EMPTY 0x20

void serial_init(void)
{
    outb(GUEST_PORT_COM1 + UART_IER, 0x00);  /* no interrupts */
    outb(GUEST_PORT_COM1 + UART_LCR, 0x80);  /* divisor latch */
    outb(GUEST_PORT_COM1 + 0, 0x01);         /* 115200 baud */
    outb(GUEST_PORT_COM1 + 1, 0x00);
    outb(GUEST_PORT_COM1 + UART_LCR, 0x03);  /* 8N1 */
    outb(GUEST_PORT_COM1 + UART_FCR, 0xC7);  /* FIFO on, cleared */
    outb(GUEST_PORT_COM1 + UART_MCR, 0x03);
}

void serial_putc(char c)
{
    /* Bounded wait: a missing UART reads as 0xff, which looks ready. */
    for (int spins = 0; spins < 100000; spins++) {
        if (inb(GUEST_PORT_COM1 + UART_LSR) & UART_LSR_THR_EMPTY)
            break;
        cpu_relax();
    }
    outb(GUEST_PORT_COM1 + UART_THR, (uint8_t)c);
}

static void put_str(const char *s)
{
    while (*s) {
        if (*s == '\n')
            serial_putc('\r');
        serial_putc(*s++);
    }
}

static void put_unsigned(uint64_t v, unsigned base, int width, char pad)
{
    char digits[24];
    int n = 0;
    do {
        unsigned d = (unsigned)(v % base);
        digits[n++] = (char)(d < 10 ? '0' + d : 'a' + d - 10);
        v /= base;
    } while (v);
    while (width-- > n)
        serial_putc(pad);
    while (n)
        serial_putc(digits[--n]);
}

/* %s %c %d %u %x with l/ll modifiers and a zero-padded width: enough for
 * status lines. */
void kvprintf(const char *fmt, va_list ap)
{
    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            if (*fmt == '\n')
                serial_putc('\r');
            serial_putc(*fmt);
            continue;
        }
        fmt++;
        char pad = ' ';
        int width = 0, longs = 0;
        if (*fmt == '0') {
            pad = '0';
            fmt++;
        }
        while (*fmt >= '0' && *fmt <= '9')
            width = width * 10 + (*fmt++ - '0');
        while (*fmt == 'l') {
            longs++;
            fmt++;
        }
        switch (*fmt) {
        case 's': put_str(va_arg(ap, const char *)); break;
        case 'c': serial_putc((char)va_arg(ap, int)); break;
        case 'd': {
            int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
            if (v < 0) {
                serial_putc('-');
                v = -v;
            }
            put_unsigned((uint64_t)v, 10, width, pad);
            break;
        }
        case 'u':
        case 'x': {
            uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned);
            put_unsigned(v, *fmt == 'x' ? 16 : 10, width, pad);
            break;
        }
        case '%': serial_putc('%'); break;
        case '\0': return;
        default: serial_putc('?'); break;
        }
    }
}

void kprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kvprintf(fmt, ap);
    va_end(ap);
}

void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

void panic_status(uint32_t status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    kprintf("ferry-guest: error: ");
    kvprintf(fmt, ap);
    kprintf("\n");
    va_end(ap);
    report_status(status);
    halt_forever();
}
