// Boot code: arm64 Image header, primary and secondary entry, the drop from
// EL2 to EL1, the early page tables and the jump to the kernel's link address.
// Everything before the `br` to the high half runs with the MMU off at the
// physical load address, so it only uses PC-relative addressing.
//
// Constants come from Rust (src/arch/aarch64/boot.rs) as named `const` operands.

.section .text.head, "ax"
.global _start
_start:
    // Linux arm64 Image header (Documentation/arch/arm64/booting.rst layout),
    // which is also the DOS stub of a PE/COFF image so UEFI firmware can
    // start the same file as an EFI application (efi_pe_entry below).
    .inst   0xfa405a4d              // code0: "MZ", and as code ccmp x18, #0, #0xd, pl (no effect)
    b       primary_entry           // code1
    .quad   {TEXT_OFFSET}           // text_offset: load at RAM base + 2 MiB
    .quad   __image_end - _start    // image_size, including .bss and stacks
    .quad   0x2                     // flags: little-endian, 4 KiB pages
    .quad   0, 0, 0                 // res2..res4
    .ascii  "ARM\x64"               // magic
    .long   pe_header - _start      // res5: offset of the PE header

// PE32+ headers (the PE format specification, "Optional Header" and
// "Section Table"). The file is laid out so each section's file offset is
// its RVA: the headers take the first page, .text the code, .data the rest
// of the file and, in memory only, .bss, the early tables and the stacks.
// The sizes are absolute symbols from linker.ld.
.balign 8
pe_header:
    .ascii  "PE\0\0"
    .short  0xaa64                  // Machine: ARM64
    .short  2                       // NumberOfSections
    .long   0, 0, 0                 // TimeDateStamp, symbol table, symbols
    .short  section_table - optional_header // SizeOfOptionalHeader
    .short  0x0206                  // EXECUTABLE_IMAGE | LINE_NUMS_STRIPPED | DEBUG_STRIPPED
optional_header:
    .short  0x20b                   // PE32+
    .byte   0, 0                    // linker version
    .long   __pe_text_size          // SizeOfCode
    .long   __pe_data_file_size     // SizeOfInitializedData
    .long   __pe_data_bss_size      // SizeOfUninitializedData
    .long   efi_pe_entry - _start   // AddressOfEntryPoint
    .long   pe_text_start - _start  // BaseOfCode
    .quad   0                       // ImageBase: position-independent, loaded anywhere
    .long   0x1000                  // SectionAlignment
    .long   0x1000                  // FileAlignment
    .short  0, 0, 0, 0, 0, 0        // OS, image and subsystem versions
    .long   0                       // Win32VersionValue
    .long   __image_end - _start    // SizeOfImage
    .long   pe_text_start - _start  // SizeOfHeaders
    .long   0                       // CheckSum
    .short  10                      // Subsystem: EFI application
    .short  0                       // DllCharacteristics
    .quad   0, 0, 0, 0              // stack and heap reserve and commit
    .long   0                       // LoaderFlags
    .long   6                       // NumberOfRvaAndSizes
    .quad   0, 0, 0, 0, 0, 0        // no exports, imports, resources, exceptions, certificates, relocations
section_table:
    .ascii  ".text\0\0\0"
    .long   __pe_text_size          // VirtualSize
    .long   pe_text_start - _start  // VirtualAddress
    .long   __pe_text_size          // SizeOfRawData
    .long   pe_text_start - _start  // PointerToRawData
    .long   0, 0                    // relocations, line numbers
    .short  0, 0
    .long   0x60000020              // CNT_CODE | MEM_EXECUTE | MEM_READ
    .ascii  ".data\0\0\0"
    .long   __pe_data_mem_size      // VirtualSize: through the stacks
    .long   __pe_data_rva           // VirtualAddress
    .long   __pe_data_file_size     // SizeOfRawData
    .long   __pe_data_rva           // PointerToRawData
    .long   0, 0
    .short  0, 0
    .long   0xc0000040              // CNT_INITIALIZED_DATA | MEM_READ | MEM_WRITE
.balign 4096
pe_text_start:

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

// UEFI enters here (the PE entry point) with the MMU on, identity-mapped,
// x0 = ImageHandle, x1 = SystemTable. efi_main (src/arch/aarch64/efi.rs)
// returns only if it failed before ExitBootServices, with the EFI_STATUS.
efi_pe_entry:
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    adrp    x2, _start              // where the firmware put the image
    bl      efi_main
    ldp     x29, x30, [sp], #16
    ret

// efi_enter_kernel(entry PA, DTB PA, start, end): after ExitBootServices.
// Cleans [start, end) (the relocated image and DTB) to the point of
// coherency, turns the MMU and caches off at the current EL and jumps to
// the relocated primary_entry as a booti would: x0 = DTB, x1-x3 = 0.
// Runs from the firmware's identity map, so turning the MMU off leaves the
// next instruction where it is.
.global efi_enter_kernel
efi_enter_kernel:
    mov     x9, x0
    mrs     x4, ctr_el0             // DminLine: log2 of the line size in words
    ubfx    x4, x4, #16, #4
    mov     x5, #4
    lsl     x5, x5, x4
    sub     x6, x5, #1
    bic     x2, x2, x6
1:  dc      civac, x2
    add     x2, x2, x5
    cmp     x2, x3
    b.lo    1b
    dsb     sy
    ic      iallu
    dsb     sy
    isb
    mov     x0, x1
    mov     x1, xzr
    mov     x2, xzr
    mov     x3, xzr
    mrs     x4, CurrentEL
    cmp     x4, #(2 << 2)
    b.ne    2f
    mrs     x4, sctlr_el2
    bic     x4, x4, #1              // M
    bic     x4, x4, #(1 << 2)       // C
    bic     x4, x4, #(1 << 12)      // I
    msr     sctlr_el2, x4
    isb
    br      x9
2:  mrs     x4, sctlr_el1
    bic     x4, x4, #1
    bic     x4, x4, #(1 << 2)
    bic     x4, x4, #(1 << 12)
    msr     sctlr_el1, x4
    isb
    br      x9

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
