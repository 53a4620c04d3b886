//! Exception handling: the saved register frame, the dispatcher called by
//! boot/vectors.S, probes (one access that may fault), guards (run code and
//! turn an unexpected fault into an error) and returns from EL0.

use super::context::{self, KContext};
use super::esr::{self, Event};
use spin::Mutex;

/// Registers saved on exception entry; layout shared with boot/vectors.S.
#[repr(C)]
#[derive(Clone, Copy, Default, Debug)]
pub struct TrapFrame {
    pub x: [u64; 31],
    pub sp_el0: u64,
    pub elr: u64,
    pub spsr: u64,
    pub esr: u64,
    pub far: u64,
}

const _: () = assert!(core::mem::size_of::<TrapFrame>() == 36 * 8);
const _: () = assert!(core::mem::size_of::<TrapFrame>().is_multiple_of(16));

/// SPSR for resuming at EL1h with DAIF masked.
const SPSR_EL1H: u64 = 0x3C5;
/// PSTATE.PAN in an SPSR.
const SPSR_PAN: u64 = 1 << 22;
/// SPSR for EL0t with DAIF masked (the kernel takes no interrupts).
pub const SPSR_EL0T: u64 = 0x3C0;

const KIND_CURRENT_SPX_SYNC: u64 = 4;
const KIND_LOWER_SYNC: u64 = 8;

/// What each CPU's handler needs; only that CPU touches its slot.
struct CpuTraps {
    probe_armed: bool,
    probe_event: Option<Event>,
    guard: Option<*mut KContext>,
    guard_event: Option<(Event, u64)>,
    user: Option<(*mut KContext, *mut TrapFrame)>,
    user_event: Option<Event>,
}

// SAFETY: the raw pointers in a slot point to the owning CPU's stack and are
// only dereferenced by that CPU while the frame that set them is live.
unsafe impl Send for CpuTraps {}

static TRAPS: [Mutex<CpuTraps>; super::boot::MAX_CPUS] = [const {
    Mutex::new(CpuTraps {
        probe_armed: false,
        probe_event: None,
        guard: None,
        guard_event: None,
        user: None,
        user_event: None,
    })
}; super::boot::MAX_CPUS];

fn slot() -> &'static Mutex<CpuTraps> {
    &TRAPS[super::cpu::id()]
}

fn resume(frame: &mut TrapFrame, ctx: *mut KContext, value: u64) {
    frame.x[0] = ctx as u64;
    frame.x[1] = value;
    frame.elr = context::resume_address();
    // Back in the kernel with PAN on again, as exception entry left it.
    frame.spsr = SPSR_EL1H | if super::cpu::pan_enabled() { SPSR_PAN } else { 0 };
}

#[no_mangle]
extern "C" fn handle_exception(frame: &mut TrapFrame, kind: u64) {
    let event = match kind {
        KIND_CURRENT_SPX_SYNC | KIND_LOWER_SYNC | 0 => esr::decode(frame.esr, frame.far),
        k => Event::Async { kind: k as u8 },
    };
    let mut t = slot().lock();

    if kind >= KIND_LOWER_SYNC {
        if let Some((ctx, uframe)) = t.user.take() {
            // SAFETY: uframe points to run_user's frame, live until it returns.
            unsafe { *uframe = *frame };
            t.user_event = Some(event);
            resume(frame, ctx, 1);
            return;
        }
    } else if t.probe_armed && matches!(event, Event::Abort { instruction: false, .. }) {
        // Skip the faulting access; the first fault is the probe's answer
        // (a block probe may fault again before it ends).
        if t.probe_event.is_none() {
            t.probe_event = Some(event);
        }
        frame.elr += 4;
        return;
    } else if let Some(ctx) = t.guard {
        t.guard_event = Some((event, frame.elr));
        resume(frame, ctx, 1);
        return;
    }
    drop(t);
    panic!("unhandled exception on CPU {}: {} (ELR {:#x}, ESR {:#x})", super::cpu::id(), event, frame.elr, frame.esr);
}

/// Runs one access that may fault: returns the fault it took, if any.
fn probe(access: impl FnOnce() -> u64) -> Result<u64, Event> {
    {
        let mut t = slot().lock();
        t.probe_armed = true;
        t.probe_event = None;
    }
    let v = access();
    let mut t = slot().lock();
    t.probe_armed = false;
    match t.probe_event.take() {
        Some(e) => Err(e),
        None => Ok(v),
    }
}

macro_rules! probes {
    ($read:ident, $write:ident, $ty:ty, $ld:literal, $st:literal) => {
        /// Loads through `addr` (any tag); a fault is returned, not raised.
        pub fn $read(addr: usize) -> Result<$ty, Event> {
            probe(|| {
                let v: u64;
                // SAFETY: a single load; if it faults the handler skips it.
                unsafe { core::arch::asm!(concat!($ld, " {v:w}, [{a}]"), v = out(reg) v, a = in(reg) addr, options(nostack)) };
                v
            })
            .map(|v| v as $ty)
        }

        /// Stores through `addr` (any tag); a fault is returned, not raised.
        pub fn $write(addr: usize, value: $ty) -> Result<(), Event> {
            probe(|| {
                // SAFETY: a single store to memory the caller owns; if it
                // faults the handler skips it.
                unsafe { core::arch::asm!(concat!($st, " {v:w}, [{a}]"), v = in(reg) value as u64, a = in(reg) addr, options(nostack)) };
                0
            })
            .map(|_| ())
        }
    };
}

probes!(probe_read_u8, probe_write_u8, u8, "ldrb", "strb");
// Unprivileged (LDTR/STTR): checked as EL0 accesses, so with EL0's
// permissions and tag-check mode (SCTLR_EL1.TCF0), as Linux's uaccess is.
probes!(probe_read_user_u8, probe_write_user_u8, u8, "ldtrb", "sttrb");

/// Unprivileged loads (LDTR) of `dst.len()` words from `src` (8-byte
/// aligned) in one probe: EL0 permissions and tag checks (TCF0) apply;
/// the first fault is returned (what was copied is then meaningless).
pub fn probe_read_user_words(src: usize, dst: &mut [u64]) -> Result<(), Event> {
    probe(|| {
        // SAFETY: the loop writes exactly dst.len() words into dst, which
        // this function borrows mutably; a faulting LDTR is skipped by the
        // handler and its register keeps a stale value, reported as a fault.
        unsafe {
            core::arch::asm!(
                "2: cbz {n}, 3f",
                "ldtr {t}, [{s}]",
                "str {t}, [{d}], #8",
                "add {s}, {s}, #8",
                "sub {n}, {n}, #1",
                "b 2b",
                "3:",
                n = inout(reg) dst.len() => _,
                s = inout(reg) src => _,
                d = inout(reg) dst.as_mut_ptr() => _,
                t = out(reg) _,
                options(nostack)
            )
        };
        0
    })
    .map(|_| ())
}

/// Unprivileged stores (STTR) of `src`'s words to `dst` (8-byte aligned)
/// in one probe; the first fault is returned.
pub fn probe_write_user_words(dst: usize, src: &[u64]) -> Result<(), Event> {
    probe(|| {
        // SAFETY: reads exactly src.len() words from src; the stores go to
        // user memory the caller checked is mapped writable under its pte
        // lock, with EL0 permissions; a fault is skipped and reported.
        unsafe {
            core::arch::asm!(
                "2: cbz {n}, 3f",
                "ldr {t}, [{s}], #8",
                "sttr {t}, [{d}]",
                "add {d}, {d}, #8",
                "sub {n}, {n}, #1",
                "b 2b",
                "3:",
                n = inout(reg) src.len() => _,
                s = inout(reg) src.as_ptr() => _,
                d = inout(reg) dst => _,
                t = out(reg) _,
                options(nostack)
            )
        };
        0
    })
    .map(|_| ())
}

/// Loads a 64-bit word through `addr`; a fault is returned, not raised.
pub fn probe_read_u64(addr: usize) -> Result<u64, Event> {
    probe(|| {
        let v: u64;
        // SAFETY: a single load; if it faults the handler skips it.
        unsafe { core::arch::asm!("ldr {v}, [{a}]", v = out(reg) v, a = in(reg) addr, options(nostack)) };
        v
    })
}

/// Stores a 64-bit word through `addr`; a fault is returned, not raised.
pub fn probe_write_u64(addr: usize, value: u64) -> Result<(), Event> {
    probe(|| {
        // SAFETY: a single store to memory the caller owns.
        unsafe { core::arch::asm!("str {v}, [{a}]", v = in(reg) value, a = in(reg) addr, options(nostack)) };
        0
    })
    .map(|_| ())
}

/// An unexpected exception taken inside `guarded`, with its ELR.
#[derive(Clone, Copy, Debug)]
pub struct Unexpected {
    pub event: Event,
    pub elr: u64,
}

/// Runs `f`; an unexpected exception inside it abandons `f` (see
/// `context::call` for what that leaks) and comes back as an error.
pub fn guarded(f: &mut dyn FnMut()) -> Result<(), Unexpected> {
    let mut ctx = KContext::default();
    let outer = {
        let mut t = slot().lock();
        t.guard_event = None;
        t.guard.replace(&mut ctx)
    };
    let r = context::call(&mut ctx, f);
    let mut t = slot().lock();
    t.guard = outer;
    t.probe_armed = false;
    match (r, t.guard_event.take()) {
        (0, _) => Ok(()),
        (_, Some((event, elr))) => Err(Unexpected { event, elr }),
        (_, None) => unreachable!("context resumed without an event"),
    }
}

/// Runs EL0 code from `frame` until it takes an exception; `frame` then
/// holds the EL0 registers at that point and the event is returned.
pub fn run_user(frame: &mut TrapFrame) -> Event {
    let mut ctx = KContext::default();
    let fp: *mut TrapFrame = frame;
    slot().lock().user = Some((&mut ctx, fp));
    // SAFETY: enter_user saves ctx and erets to EL0 with the registers in
    // frame; the handler writes the EL0 state back to frame and resumes ctx,
    // both live on this stack until enter_user returns.
    unsafe { context::enter_user(&mut ctx, fp) };
    slot().lock().user_event.take().expect("returned from EL0 without an event")
}
