// Boot code: arm64 Image header, primary and secondary entry, the drop from
// EL2 to EL1, the early page tables and the jump to the kernel's link address.
// Everything before the `br` to the high half runs with the MMU off at the
// physical load address, so it only uses PC-relative addressing.
//
// Constants come from Rust (src/arch/aarch64/boot.rs) as named `const` operands.

.section .text.head, "ax"
.global _start
_start:
    // Linux arm64 Image header (Documentation/arch/arm64/booting.rst layout).
    b       primary_entry           // code0
    .long   0                       // code1
    .quad   {TEXT_OFFSET}           // text_offset: load at RAM base + 2 MiB
    .quad   __image_end - _start    // image_size, including .bss and stacks
    .quad   0x2                     // flags: little-endian, 4 KiB pages
    .quad   0, 0, 0                 // res2..res4
    .ascii  "ARM\x64"               // magic
    .long   0                       // res5 (no PE header)

.section .text.boot, "ax"
primary_entry:
    mov     x19, x0                 // DTB physical address (0 on an ELF boot)
    mov     x22, x1                 // x1-x3: reserved by the boot protocol, must be 0
    mov     x23, x2
    mov     x24, x3
    msr     daifset, #0xf
    mrs     x21, CurrentEL          // the EL we were entered at, for the banner
    lsr     x21, x21, #2
    bl      el2_to_el1
    adrp    x20, _start             // x20 = physical load address of the image

    // Zero .bss, the early tables and the stacks (contiguous, 16-aligned).
    adrp    x0, __bss_start
    add     x0, x0, :lo12:__bss_start
    adrp    x1, __image_end
    add     x1, x1, :lo12:__image_end
1:  stp     xzr, xzr, [x0], #16
    cmp     x0, x1
    b.lo    1b

    bl      build_early_tables
    bl      enable_mmu
    ldr     x0, =primary_high
    br      x0

// Secondary CPUs come here from PSCI CPU_ON with x0 = their CPU index,
// MMU off, at the boot EL.
.global secondary_entry
secondary_entry:
    mov     x19, x0
    msr     daifset, #0xf
    bl      el2_to_el1
    bl      enable_mmu
    ldr     x0, =secondary_high
    br      x0

// If entered at EL2, configure it so EL1 owns the machine and drop to EL1h.
el2_to_el1:
    mrs     x0, CurrentEL
    cmp     x0, #(2 << 2)
    b.ne    2f
    ldr     x0, ={HCR_EL2}          // RW (EL1 is AArch64) | ATA (no MTE traps)
    msr     hcr_el2, x0
    mov     x0, #3                  // EL1 may use the physical timer/counter
    msr     cnthctl_el2, x0
    msr     cntvoff_el2, xzr
    mov     x0, #0x33ff             // CPTR_EL2: RES1 bits, no FP/SIMD trap
    msr     cptr_el2, x0
    msr     hstr_el2, xzr
    mrs     x0, pmcr_el0            // MDCR_EL2.HPMN = PMCR.N: EL1 owns every PMU counter
    ubfx    x0, x0, #11, #5
    msr     mdcr_el2, x0
    mrs     x0, midr_el1
    msr     vpidr_el2, x0
    mrs     x0, mpidr_el1
    msr     vmpidr_el2, x0
    msr     vttbr_el2, xzr
    ldr     x0, ={SCTLR_EL1_MMU_OFF}
    msr     sctlr_el1, x0
    mov     x0, #0x3c5              // EL1h, DAIF masked
    msr     spsr_el2, x0
    msr     elr_el2, x30
    eret
2:  ret

// Early tables (4 pages at __boot_tables_start, already zeroed):
//   page 0: L0, shared by TTBR0 and TTBR1
//   page 1: L1 for VA 0..512 GiB: 1 GiB blocks, identity in TTBR0 and the
//           linear map (PA + PAGE_OFFSET) in TTBR1. The first GiB is Device
//           (UART, GIC on virt), the next three Tagged Normal.
//   page 2: L1 for the kernel image at L0 index 511
//   page 3: L2 with 2 MiB blocks mapping KERNEL_VA (L2 index 0) -> load PA
// Assumes the image, the DTB and the UART sit below 4 GiB (true on QEMU virt).
build_early_tables:
    adrp    x0, __boot_tables_start
    add     x1, x0, #0x1000
    add     x2, x0, #0x2000
    add     x3, x0, #0x3000
    orr     x4, x1, #3
    str     x4, [x0]                // L0[0] -> linear/identity L1
    orr     x4, x2, #3
    str     x4, [x0, #(511 * 8)]    // L0[511] -> image L1
    orr     x4, x3, #3
    str     x4, [x2, #({KERNEL_L1_INDEX} * 8)] // image L1 -> image L2

    ldr     x4, ={BLOCK_DEVICE}
    str     x4, [x1]                // [0, 1 GiB): Device
    ldr     x4, ={BLOCK_NORMAL}
    mov     x5, #1
3:  orr     x6, x4, x5, lsl #30
    str     x6, [x1, x5, lsl #3]
    add     x5, x5, #1
    cmp     x5, #4
    b.lo    3b

    mov     x5, #0                  // 8 x 2 MiB = 16 MiB of image
4:  add     x6, x20, x5, lsl #21
    orr     x6, x6, x4
    str     x6, [x3, x5, lsl #3]
    add     x5, x5, #1
    cmp     x5, #8
    b.lo    4b
    dsb     ishst
    ret

// Loads MAIR/TCR, TTBR0 = early L0 (identity), TTBR1 = early L0 or, for a
// secondary, the kernel's final tables published in boot_ttbr1; then turns
// the MMU, caches and MTE tag access on.
enable_mmu:
    ldr     x0, ={MAIR}
    msr     mair_el1, x0
    ldr     x0, ={TCR}
    mrs     x1, id_aa64mmfr0_el1    // IPS = PARange
    ubfx    x1, x1, #0, #3
    bfi     x0, x1, #32, #3
    msr     tcr_el1, x0
    adrp    x0, __boot_tables_start
    msr     ttbr0_el1, x0
    adrp    x1, boot_ttbr1
    ldr     x1, [x1, :lo12:boot_ttbr1]
    cbnz    x1, 5f
    mov     x1, x0
5:  msr     ttbr1_el1, x1
    mov     x0, #(3 << 20)          // CPACR_EL1.FPEN: no FP traps (softfloat kernel, but be safe)
    msr     cpacr_el1, x0
    msr     S3_0_C1_C0_6, xzr       // GCR_EL1: reset value is UNKNOWN
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ldr     x0, ={SCTLR_EL1_MMU_ON}
    msr     sctlr_el1, x0
    isb
    ret

// Runs at its identity-mapped physical address: the window between the two
// TTBR1 writes leaves TTBR1 without a valid table, so nothing here may touch
// a high-half address (no stack, no literal pool).
// x0 = new TTBR1, x1 = physical address of an all-zero page.
.global replace_ttbr1_idmap
replace_ttbr1_idmap:
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     ttbr1_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ret

.section .text, "ax"
primary_high:
    ldr     x0, =__stacks_start
    add     x0, x0, #{STACK_SIZE}
    mov     sp, x0
    msr     tpidr_el1, xzr          // CPU index 0
    ldr     x0, =exception_vectors
    msr     vbar_el1, x0
    isb
    mov     x0, x19                 // DTB PA
    mov     x1, x20                 // image PA
    mov     x2, x21                 // entry EL
    mov     x3, x22                 // x1-x3 as the loader left them
    mov     x4, x23
    mov     x5, x24
    bl      kernel_main
6:  wfe
    b       6b

secondary_high:
    ldr     x0, =__stacks_start
    mov     x1, #{STACK_SIZE}
    add     x2, x19, #1
    madd    x0, x1, x2, x0
    mov     sp, x0
    msr     tpidr_el1, x19
    ldr     x0, =exception_vectors
    msr     vbar_el1, x0
    isb
    mov     x0, x19
    bl      secondary_main
7:  wfe
    b       7b

.ltorg

.section .data
.balign 8
.global boot_ttbr1
boot_ttbr1:
    .quad 0
