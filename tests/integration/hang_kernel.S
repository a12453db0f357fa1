/* hang_kernel.S - a Multiboot v1 kernel for test_vm_lifecycle.sh: prints a
 * line, heartbeats HEARTBEATS times through the report port ferry's VMM
 * reads (guest/protocol.h: 0x500), prints another line and hangs with
 * interrupts off. HEARTBEATS=0 makes a guest that never heartbeats.
 *
 *   gcc -m32 -c -DHEARTBEATS=3 hang_kernel.S -o hang.o
 *   ld -m elf_i386 -N -Ttext=0x100000 -e _start -o hang.elf hang.o
 *
 * One loadable segment at 1 MiB, the Multiboot header first in it. */
#ifndef HEARTBEATS
#define HEARTBEATS 3
#endif

    .text
    .code32
    .align 4
multiboot_header:
    .long 0x1BADB002                /* magic */
    .long 0                         /* flags: nothing asked of the loader */
    .long -0x1BADB002               /* checksum */

    .globl _start
_start:
    cli
    mov $stack_top, %esp
    mov $booted, %esi
    call print
    mov $1, %ecx
1:  cmp $HEARTBEATS, %ecx
    ja 2f
    mov $0x500, %dx                 /* GUEST_PORT_HEARTBEAT: every write is one */
    mov %ecx, %eax
    outl %eax, %dx
    inc %ecx
    jmp 1b
2:  mov $silent, %esi
    call print
3:  hlt                             /* interrupts are off: this is a hang */
    jmp 3b

/* Writes the NUL-terminated string at %esi to COM1. */
print:
    mov $0x3f8, %dx
4:  lodsb
    test %al, %al
    jz 5f
    outb %al, %dx
    jmp 4b
5:  ret

    .data
booted: .asciz "hang-kernel: booted\n"
silent: .asciz "hang-kernel: no more heartbeats\n"

    .bss
    .align 16
    .space 4096
stack_top:
