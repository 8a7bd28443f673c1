/* migflow guest: multiboot (v1) entry point.
 *
 * The bootloader (QEMU -kernel, libvirt <os><kernel>) enters _start in 32-bit
 * protected mode with paging off, EAX = multiboot magic, EBX = multiboot info.
 * Interrupts stay disabled for the guest's whole life: it never needs them.
 */
        .set MB_MAGIC, 0x1BADB002
        .set MB_FLAGS, 0x00000003       /* bit 0: align modules, bit 1: memory info */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .section .bss
        .align 16
stack_bottom:
        .skip 16384
stack_top:

        .section .text
        .global _start
_start:
        cli
        mov $stack_top, %esp
        push %ebx                       /* multiboot info */
        push %eax                       /* magic */
        call kmain
1:      hlt
        jmp 1b
        .section .note.GNU-stack, "", @progbits
