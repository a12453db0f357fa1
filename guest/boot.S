/* boot.S - Multiboot v1 entry: 32-bit protected mode to 64-bit long mode.
 *
 * A Multiboot loader (the ferry VMM, QEMU's -kernel, GRUB) jumps to _start32
 * in 32-bit protected mode, paging off, EAX = 0x2BADB002, EBX = the info block.
 * We identity-map the first 4 GiB with 2 MiB pages (memory.c maps RAM above,
 * up to 64 GiB), enable long mode and call kmain(magic, info) on the boot
 * stack.
 *
 * The header uses the "a.out kludge" (flag bit 16): its address fields tell
 * the loader where the image goes, so the file loads as-is although it is an
 * ELF64 (QEMU refuses ELF64 files without it).
 *
 * The page-table entries carry their Accessed and Dirty bits from the start,
 * and the GDT descriptors their Accessed bit: the CPU never has to write them
 * back, so the page tables and the GDT stay clean in the VMM's dirty log. */

#define MB_MAGIC  0x1BADB002
#define MB_FLAGS  ((1 << 1) | (1 << 16))   /* memory info wanted; address fields valid */

#define PTE_P     0x01
#define PTE_RW    0x02
#define PTE_PWT   0x08
#define PTE_PCD   0x10
#define PTE_A     0x20
#define PTE_D     0x40
#define PTE_PS    0x80

#define GIBS_MAPPED 64                      /* one page directory per GiB, 64 GiB in all */
#define BOOT_GIBS 4                         /* boot.S maps these; memory.c the rest */

    .section .multiboot, "a"
    .align 4
multiboot_header:
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long multiboot_header                  /* header_addr */
    .long _kernel_start                     /* load_addr */
    .long _load_end                         /* load_end_addr */
    .long _bss_end                          /* bss_end_addr */
    .long _start32                          /* entry_addr */

    .section .text.boot, "ax"
    .code32
    .globl _start32
_start32:
    cli
    cld
    mov     %eax, %ebp                      /* multiboot magic; kept in ebp/esi */
    mov     %ebx, %esi                      /* info block */

    /* The loader zeroes .bss (Multiboot says so), but we do not rely on
     * it for what C code reads: zero from the end of the page tables to the
     * stack. The page tables are written whole below. */
    mov     $_bss_zero_start, %edi
    mov     $_stack_bottom, %ecx
    sub     %edi, %ecx
    shr     $2, %ecx
    xor     %eax, %eax
    rep stosl
    mov     $_stack_top, %esp

    /* Long mode available? */
    mov     $0x80000000, %eax
    cpuid
    cmp     $0x80000001, %eax
    jb      no_long_mode
    mov     $0x80000001, %eax
    cpuid
    bt      $29, %edx
    jnc     no_long_mode

    /* PML4[0] -> PDPT, the other 511 entries empty. */
    mov     $pml4, %edi
    mov     $1024, %ecx
    xor     %eax, %eax
    rep stosl
    mov     $pdpt, %eax
    or      $(PTE_P | PTE_RW | PTE_A), %eax
    mov     %eax, pml4
    /* PDPT[i] -> page_dirs[i] for the first 4 GiB; memory.c adds the rest. */
    mov     $pdpt, %edi
    mov     $1024, %ecx
    xor     %eax, %eax
    rep stosl
    xor     %ecx, %ecx
1:  mov     %ecx, %eax
    shl     $12, %eax
    add     $page_dirs, %eax
    or      $(PTE_P | PTE_RW | PTE_A), %eax
    mov     %eax, pdpt(, %ecx, 8)
    inc     %ecx
    cmp     $BOOT_GIBS, %ecx
    jb      1b

    /* page_dirs[i] maps 2 MiB at i << 21; the 4th GiB (APIC, MMIO) uncached. */
    xor     %ecx, %ecx
2:  mov     %ecx, %eax
    shl     $21, %eax
    or      $(PTE_P | PTE_RW | PTE_A | PTE_D | PTE_PS), %eax
    cmp     $(3 * 512), %ecx
    jb      3f
    or      $(PTE_PWT | PTE_PCD), %eax
3:  mov     %eax, page_dirs(, %ecx, 8)
    movl    $0, page_dirs + 4(, %ecx, 8)
    inc     %ecx
    cmp     $(BOOT_GIBS * 512), %ecx
    jb      2b

    /* CR4: PAE. The kernel is built without SSE: instruction emulators
     * (KVM's, when the host cannot run the guest natively) lack most of it. */
    mov     %cr4, %eax
    or      $(1 << 5), %eax
    mov     %eax, %cr4
    mov     $pml4, %eax
    mov     %eax, %cr3
    /* EFER.LME */
    mov     $0xC0000080, %ecx
    rdmsr
    or      $(1 << 8), %eax
    wrmsr
    /* CR0: paging, protection. */
    mov     %cr0, %eax
    and     $~(1 << 2), %eax
    or      $((1 << 31) | (1 << 1) | (1 << 0)), %eax
    mov     %eax, %cr0

    lgdt    gdt_pointer
    ljmp    $0x08, $long_mode_entry

no_long_mode:
    mov     $no_long_mode_msg, %ebx
4:  movb    (%ebx), %al
    test    %al, %al
    jz      5f
    mov     $0x3f8, %dx
    outb    %al, %dx
    inc     %ebx
    jmp     4b
5:  hlt
    jmp     5b

    .code64
long_mode_entry:
    mov     $0x10, %ax
    mov     %ax, %ds
    mov     %ax, %es
    mov     %ax, %ss
    xor     %eax, %eax
    mov     %ax, %fs
    mov     %ax, %gs
    mov     $_stack_top, %rsp
    mov     %ebp, %edi                      /* zero-extends: upper halves are undefined */
    mov     %esi, %esi
    xor     %ebp, %ebp
    call    kmain
6:  cli
    hlt
    jmp     6b

/* --- interrupts ----------------------------------------------------------- */

/* CPU exceptions: push a uniform frame and report. Vectors 8, 10-14, 17, 21,
 * 29 and 30 push an error code; the rest get a zero in its place. */
.macro EXCEPTION n
    .align 16
exception_\n:
    .if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
    .else
    push    $0
    .endif
    push    $\n
    jmp     exception_common
.endm

    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    EXCEPTION \n
    .endr

exception_common:
    mov     0(%rsp), %rdi                   /* vector */
    mov     8(%rsp), %rsi                   /* error code */
    mov     16(%rsp), %rdx                  /* faulting RIP */
    mov     %cr2, %rcx
    and     $-16, %rsp
    call    exception_report                /* does not return */
    jmp     6b

    .section .rodata
    .align 8
    .globl exception_stubs
exception_stubs:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad exception_\n
    .endr

    .section .text
/* The LAPIC timer only wakes the CPU from hlt: acknowledge and return.
 * It touches no memory but the stack and the APIC's EOI register. */
    .globl timer_isr
    .align 16
timer_isr:
    push    %rax
    mov     lapic_eoi(%rip), %rax
    movl    $0, (%rax)
    pop     %rax
    iretq

    .globl spurious_isr
    .align 16
spurious_isr:
    iretq

/* --- data ------------------------------------------------------------------ */

    .section .rodata
    .align 16
gdt:
    .quad 0
    .quad 0x00AF9B000000FFFF                /* 0x08: 64-bit code, accessed */
    .quad 0x00CF93000000FFFF                /* 0x10: data, accessed */
gdt_end:
gdt_pointer:
    .word gdt_end - gdt - 1
    .long gdt
no_long_mode_msg:
    .asciz "ferry-guest: this CPU has no long mode\r\n"

    .section .bss.pagetables, "aw", @nobits
    .align 4096
    .globl pml4, pdpt, page_dirs
pml4:
    .skip 4096
pdpt:
    .skip 4096
page_dirs:
    .skip 4096 * GIBS_MAPPED
