// Exception vectors. Every entry saves a TrapFrame (src/arch/aarch64/trap.rs)
// on the current stack and calls handle_exception(frame, kind); on return the
// (possibly modified) frame is restored and the exception returns. A handler
// resumes elsewhere by editing ELR/SPSR/x0/x1 in the frame.

.equ FRAME_SIZE, {FRAME_SIZE}

// Loads x2-x29 of the TrapFrame at \base (x0/x1 and x30 are the caller's).
.macro LOAD_GPRS base
    ldp     x28, x29, [\base, #(28 * 8)]
    ldp     x26, x27, [\base, #(26 * 8)]
    ldp     x24, x25, [\base, #(24 * 8)]
    ldp     x22, x23, [\base, #(22 * 8)]
    ldp     x20, x21, [\base, #(20 * 8)]
    ldp     x18, x19, [\base, #(18 * 8)]
    ldp     x16, x17, [\base, #(16 * 8)]
    ldp     x14, x15, [\base, #(14 * 8)]
    ldp     x12, x13, [\base, #(12 * 8)]
    ldp     x10, x11, [\base, #(10 * 8)]
    ldp     x8, x9, [\base, #(8 * 8)]
    ldp     x6, x7, [\base, #(6 * 8)]
    ldp     x4, x5, [\base, #(4 * 8)]
    ldp     x2, x3, [\base, #(2 * 8)]
.endm

.macro VECTOR kind
    .balign 0x80
    sub     sp, sp, #FRAME_SIZE
    stp     x0, x1, [sp, #(0 * 8)]
    mov     x1, #\kind
    b       exception_common
.endm

.section .text.vectors, "ax"
.balign 0x800
.global exception_vectors
exception_vectors:
    VECTOR 0    // current EL, SP_EL0: sync
    VECTOR 1    //                     irq
    VECTOR 2    //                     fiq
    VECTOR 3    //                     serror
    VECTOR 4    // current EL, SP_ELx: sync
    VECTOR 5    //                     irq
    VECTOR 6    //                     fiq
    VECTOR 7    //                     serror
    VECTOR 8    // lower EL, AArch64:  sync
    VECTOR 9    //                     irq
    VECTOR 10   //                     fiq
    VECTOR 11   //                     serror
    VECTOR 12   // lower EL, AArch32 (never used)
    VECTOR 13
    VECTOR 14
    VECTOR 15

exception_common:
    stp     x2, x3, [sp, #(2 * 8)]
    stp     x4, x5, [sp, #(4 * 8)]
    stp     x6, x7, [sp, #(6 * 8)]
    stp     x8, x9, [sp, #(8 * 8)]
    stp     x10, x11, [sp, #(10 * 8)]
    stp     x12, x13, [sp, #(12 * 8)]
    stp     x14, x15, [sp, #(14 * 8)]
    stp     x16, x17, [sp, #(16 * 8)]
    stp     x18, x19, [sp, #(18 * 8)]
    stp     x20, x21, [sp, #(20 * 8)]
    stp     x22, x23, [sp, #(22 * 8)]
    stp     x24, x25, [sp, #(24 * 8)]
    stp     x26, x27, [sp, #(26 * 8)]
    stp     x28, x29, [sp, #(28 * 8)]
    mrs     x2, sp_el0
    stp     x30, x2, [sp, #(30 * 8)]
    mrs     x2, elr_el1
    mrs     x3, spsr_el1
    stp     x2, x3, [sp, #(32 * 8)]
    mrs     x2, esr_el1
    mrs     x3, far_el1
    stp     x2, x3, [sp, #(34 * 8)]
    mov     x0, sp
    bl      handle_exception

    ldp     x2, x3, [sp, #(32 * 8)]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldp     x30, x2, [sp, #(30 * 8)]
    msr     sp_el0, x2
    LOAD_GPRS sp
    ldp     x0, x1, [sp, #(0 * 8)]
    add     sp, sp, #FRAME_SIZE
    eret

// ---------------------------------------------------------------------------
// Kernel contexts: callee-saved registers, SP and LR (KContext in
// src/arch/aarch64/context.rs). A context is resumed by an exception handler
// that points ELR at context_resume with x0 = context, x1 = value.

// Saves callee-saved registers, LR and SP into the KContext at \ctx.
.macro SAVE_KCONTEXT ctx
    mov     x9, sp
    stp     x19, x20, [\ctx, #0]
    stp     x21, x22, [\ctx, #16]
    stp     x23, x24, [\ctx, #32]
    stp     x25, x26, [\ctx, #48]
    stp     x27, x28, [\ctx, #64]
    stp     x29, x30, [\ctx, #80]
    str     x9, [\ctx, #96]
.endm

// u64 call_with_context(KContext *ctx, extern "C" fn(usize), usize arg)
// Calls f(arg) and returns 0, or returns the value given to context_resume
// if the call was abandoned.
.global call_with_context
call_with_context:
    SAVE_KCONTEXT x0
    stp     x29, x30, [sp, #-16]!
    mov     x29, sp
    mov     x9, x1
    mov     x0, x2
    blr     x9
    ldp     x29, x30, [sp], #16
    mov     x0, #0
    ret

// Never returns to its caller: restores ctx and returns x1 from the
// call_with_context / enter_user that saved it.
.global context_resume
context_resume:
    ldp     x19, x20, [x0, #0]
    ldp     x21, x22, [x0, #16]
    ldp     x23, x24, [x0, #32]
    ldp     x25, x26, [x0, #48]
    ldp     x27, x28, [x0, #64]
    ldp     x29, x30, [x0, #80]
    ldr     x9, [x0, #96]
    mov     sp, x9
    mov     x0, x1
    ret

// u64 enter_user(KContext *ctx, const TrapFrame *user)
// Saves the kernel context, loads every register of the user frame and
// returns to EL0. Comes back (through context_resume) when EL0 traps.
.global enter_user
enter_user:
    SAVE_KCONTEXT x0
    mov     x0, x1
    ldp     x2, x3, [x0, #(32 * 8)]
    msr     elr_el1, x2
    msr     spsr_el1, x3
    ldr     x2, [x0, #(31 * 8)]
    msr     sp_el0, x2
    ldp     x30, x2, [x0, #(30 * 8)]
    LOAD_GPRS x0
    ldp     x0, x1, [x0, #(0 * 8)]
    eret
