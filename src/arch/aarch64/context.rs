//! Kernel contexts: a saved set of callee-saved registers, SP and LR that an
//! exception handler can return to. Used to abandon a test that took an
//! unexpected fault and to come back from EL0.

/// Must match the offsets in boot/vectors.S.
#[repr(C)]
#[derive(Default)]
pub struct KContext {
    pub x19_to_x30: [u64; 12],
    pub sp: u64,
}

const _: () = assert!(core::mem::size_of::<KContext>() == 13 * 8);

extern "C" {
    fn call_with_context(ctx: *mut KContext, f: extern "C" fn(usize), arg: usize) -> u64;
    pub(super) fn enter_user(ctx: *mut KContext, frame: *const super::trap::TrapFrame) -> u64;
    pub(super) fn context_resume();
}

extern "C" fn trampoline(arg: usize) {
    // SAFETY: arg is the address of the `&mut dyn FnMut()` on call()'s stack,
    // which outlives this call.
    let f = unsafe { &mut *(arg as *mut &mut dyn FnMut()) };
    f();
}

/// Runs `f` with `ctx` saved. Returns 0 if `f` returned, or the value an
/// exception handler passed when it resumed `ctx` instead.
///
/// If `f` is abandoned, its stack frames are dropped without running
/// destructors: whatever it owned (heap memory, frames) leaks, and it must
/// not have been holding a lock that the caller needs.
pub fn call(ctx: &mut KContext, mut f: &mut dyn FnMut()) -> u64 {
    let fp: *mut &mut dyn FnMut() = &mut f;
    // SAFETY: call_with_context saves ctx, calls trampoline(fp) on this stack
    // and returns once, either normally or through context_resume.
    unsafe { call_with_context(ctx, trampoline, fp as usize) }
}

/// The address an exception handler puts in ELR to resume a context.
pub fn resume_address() -> u64 {
    context_resume as *const () as usize as u64
}
