//! The EL0 agent: small routines that run at EL0 in a task's address space
//! and do one thing each (a load, a store, a tag instruction, a system
//! call), then return to the kernel with `SVC #0x7ff`. Scenarios in Rust
//! drive them, so every access, fault and system call is real.

use crate::arch::esr::{Event, FaultStatus};
use crate::arch::mmu::{PAGE_SHIFT, PAGE_SIZE};
use crate::arch::mte;
use crate::arch::trap::{self, TrapFrame, SPSR_EL0T};
use crate::mm::fault::{do_page_fault, FaultError, SegvCode};
use alloc::format;
use alloc::string::String;

/// Where every task has the agent's code (read-only, executable).
pub const AGENT_VA: usize = 0x0000_7FFF_0000_0000;
/// The SVC immediate that ends an agent routine.
pub const SVC_DONE: u16 = 0x7ff;

core::arch::global_asm!(
    ".section .text.user, \"ax\"",
    ".arch_extension memtag",
    // Global, so Rust code in any codegen unit links to them.
    ".global agent_load, agent_store, agent_ldg, agent_stg_range, agent_tags16, agent_fill, agent_fnv, agent_syscall",
    ".global agent_store_until, agent_irg, agent_call, agent_touch, agent_load_list, agent_syscall_loop",
    // x0 = [x0]
    "agent_load: ldr x0, [x0]",
    "    svc #0x7ff",
    // [x0] = x1
    "agent_store: str x1, [x0]",
    "    svc #0x7ff",
    // x0 = tag of the granule at x0 (in bits 59:56)
    "agent_ldg: ldg x0, [x0]",
    "    svc #0x7ff",
    // tags the x1 bytes at x0 (a multiple of 16) with x0's tag
    "agent_stg_range: cbz x1, 2f",
    "1:  stg x0, [x0], #16",
    "    subs x1, x1, #16",
    "    b.hi 1b",
    "2:  svc #0x7ff",
    // x0 = the tags of the 16 granules from x0, 4 bits each, granule 0 lowest
    "agent_tags16: mov x2, x0",
    "    mov x3, #0",
    "    mov x4, #0",
    "1:  mov x5, x2",
    "    ldg x5, [x2]",
    "    ubfx x5, x5, #56, #4",
    "    lsl x5, x5, x4",
    "    orr x3, x3, x5",
    "    add x2, x2, #16",
    "    add x4, x4, #4",
    "    cmp x4, #64",
    "    b.lo 1b",
    "    mov x0, x3",
    "    svc #0x7ff",
    // writes byte i of [x0, x0 + x1) as (x2 + 7 * i) mod 256
    "agent_fill: mov x4, #0",
    "    mov x5, #7",
    "1:  cmp x4, x1",
    "    b.hs 2f",
    "    madd x3, x4, x5, x2",
    "    strb w3, [x0, x4]",
    "    add x4, x4, #1",
    "    b 1b",
    "2:  svc #0x7ff",
    // x0 = FNV-1a (64-bit) of the x1 bytes at x0
    "agent_fnv: ldr x2, 3f",
    "    ldr x3, 4f",
    "    mov x4, #0",
    "1:  cmp x4, x1",
    "    b.hs 2f",
    "    ldrb w5, [x0, x4]",
    "    eor x2, x2, x5",
    "    mul x2, x2, x3",
    "    add x4, x4, #1",
    "    b 1b",
    "2:  mov x0, x2",
    "    svc #0x7ff",
    ".balign 8",
    "3:  .quad 0xcbf29ce484222325",
    "4:  .quad 0x100000001b3",
    // stores x1, x1 + 1, ... to [x0] in one EL0 entry (the ASID stays live,
    // so the TLB keeps its entry) until the word at x2 is non-zero, then
    // stores once more; x0 = the last value stored
    "agent_store_until: str x1, [x0]",
    "    add x1, x1, #1",
    "    ldr x3, [x2]",
    "    cbz x3, agent_store_until",
    "    str x1, [x0]",
    "    mov x0, x1",
    "    svc #0x7ff",
    // x0 = x0 with a random tag from IRG (GCR_EL1.Exclude applies)
    "agent_irg: irg x0, x0",
    "    svc #0x7ff",
    // branches to x0 (which must end the routine itself): executing from
    // a page, to see that a data page is execute-never
    "agent_call: br x0",
    // every x2 bytes of [x0, x0 + x1): a load (x3 = 0) or a store of x4;
    // x0 = the sum of the words loaded (a loop of faults in one EL0 entry)
    "agent_touch: mov x5, #0",
    "    mov x6, #0",
    "1:  cmp x6, x1",
    "    b.hs 3f",
    "    cbnz x3, 2f",
    "    ldr x7, [x0, x6]",
    "    add x5, x5, x7",
    "    add x6, x6, x2",
    "    b 1b",
    "2:  str x4, [x0, x6]",
    "    add x6, x6, x2",
    "    b 1b",
    "3:  mov x0, x5",
    "    svc #0x7ff",
    // loads the word at each of the x1 (tagged) addresses listed at x0,
    // storing it back (*p = *p) when x2 != 0; x0 = their sum
    "agent_load_list: mov x5, #0",
    "1:  cbz x1, 3f",
    "    ldr x6, [x0], #8",
    "    ldr x7, [x6]",
    "    add x5, x5, x7",
    "    cbz x2, 2f",
    "    str x7, [x6]",
    "2:  sub x1, x1, #1",
    "    b 1b",
    "3:  mov x0, x5",
    "    svc #0x7ff",
    // system call x5 (x0, x1, x2) x4 times, x2 advancing by x3 bytes each
    // time (an ioctl over an array of argument blocks); stops at the first
    // negative return; x0 = 0 or that return
    "agent_syscall_loop: mov x9, x0",
    "    mov x10, x1",
    "    mov x11, x2",
    "1:  cbz x4, 2f",
    "    mov x0, x9",
    "    mov x1, x10",
    "    mov x2, x11",
    "    mov x8, x5",
    "    svc #0",
    "    tbnz x0, #63, 3f",
    "    add x11, x11, x3",
    "    sub x4, x4, #1",
    "    b 1b",
    "2:  mov x0, #0",
    "3:  svc #0x7ff",
    // a system call: x8 = number, x0-x5 = arguments
    "agent_syscall: svc #0",
    "    svc #0x7ff",
    ".section .text",
);

extern "C" {
    fn agent_load();
    fn agent_store();
    fn agent_ldg();
    fn agent_stg_range();
    fn agent_tags16();
    fn agent_fill();
    fn agent_fnv();
    fn agent_syscall();
    fn agent_store_until();
    fn agent_irg();
    fn agent_call();
    fn agent_touch();
    fn agent_load_list();
    fn agent_syscall_loop();
}

#[derive(Clone, Copy, Debug)]
pub enum Routine {
    Load,
    Store,
    Ldg,
    StgRange,
    Tags16,
    Fill,
    Fnv,
    Syscall,
    StoreUntil,
    Irg,
    Call,
    Touch,
    LoadList,
    SyscallLoop,
}

impl Routine {
    /// The routine's address in a task's address space.
    pub fn entry(self) -> u64 {
        let f: unsafe extern "C" fn() = match self {
            Routine::Load => agent_load,
            Routine::Store => agent_store,
            Routine::Ldg => agent_ldg,
            Routine::StgRange => agent_stg_range,
            Routine::Tags16 => agent_tags16,
            Routine::Fill => agent_fill,
            Routine::Fnv => agent_fnv,
            Routine::Syscall => agent_syscall,
            Routine::StoreUntil => agent_store_until,
            Routine::Irg => agent_irg,
            Routine::Call => agent_call,
            Routine::Touch => agent_touch,
            Routine::LoadList => agent_load_list,
            Routine::SyscallLoop => agent_syscall_loop,
        };
        let (start, _) = crate::arch::boot::image_layout().user_text;
        (AGENT_VA + (f as *const () as usize - start)) as u64
    }
}

/// Physical frames of the agent's code (the image's .text.user section).
pub fn code_pfns() -> alloc::vec::Vec<u64> {
    let (start, end) = crate::arch::boot::image_layout().user_text;
    (start..end).step_by(PAGE_SIZE).map(|va| crate::arch::mmu::virt_to_phys(va) >> PAGE_SHIFT).collect()
}

/// The byte `fill` writes at offset `i` with `seed`.
pub fn fill_byte(seed: u64, i: usize) -> u8 {
    (seed as usize).wrapping_add(7 * i) as u8
}

/// FNV-1a over `bytes`, as agent_fnv computes it.
pub fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
}

/// SIGSEGV si_code values (Linux's names: SEGV_MAPERR, ...).
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegvKind {
    MapErr,
    AccErr,
    /// Synchronous tag-check fault (SEGV_MTESERR).
    MteSErr,
    /// Asynchronous tag-check fault (SEGV_MTEAERR): no address.
    MteAErr,
}

/// What stopped an agent routine instead of its SVC #0x7ff.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Signal {
    Segv {
        kind: SegvKind,
        addr: u64,
    },
    Bus {
        addr: u64,
    },
    /// The task called exit.
    Exited(i32),
    /// The access is waiting on a userfaultfd handler (run it again once the
    /// handler resolved the page: that is the thread resuming).
    UffdWait {
        addr: u64,
    },
    /// An EL0 exception the kernel does not turn into a signal, or a task
    /// stuck faulting on the same address.
    Killed(String),
}

/// Strips the pointer tag (TBI) from an EL0 fault address.
fn untagged(addr: u64) -> usize {
    (addr & 0x00FF_FFFF_FFFF_FFFF) as usize
}

/// Runs `routine` with `args` (x0-x5, then x8) in `task` on this CPU.
pub fn run(task: &super::Task, routine: Routine, args: &[u64]) -> Result<u64, Signal> {
    let mut frame = TrapFrame { elr: routine.entry(), spsr: SPSR_EL0T, ..Default::default() };
    for (i, &a) in args.iter().take(6).enumerate() {
        frame.x[i] = a;
    }
    if let Some(&nr) = args.get(6) {
        frame.x[8] = nr;
    }
    let mm = task.mm();
    crate::mm::mmu_context::set_serving(true);
    // The thread's own MTE controls while it runs (and while the kernel
    // serves its system calls: uaccess is checked in its TCF0 mode).
    let ctrl = task.tagged_addr_ctrl.load(core::sync::atomic::Ordering::Acquire);
    let (tcf0, exclude) = (mte::tcf0(), mte::exclude());
    mte::set_tcf0(super::prctl::tcf0(ctrl));
    mte::set_exclude(super::prctl::exclude(ctrl));
    crate::mm::uaccess::set_tagged_addr_abi(ctrl & super::prctl::PR_TAGGED_ADDR_ENABLE != 0);
    mte::clear_async_faults();
    // A routine may fault on many pages in one entry (a fill of a range);
    // only faulting again and again on one page means no progress.
    let (mut last_fault, mut faults) = (usize::MAX, 0);
    let result = loop {
        // Cheap when the tables are in already (the usual case): a system
        // call may have left them, or been asked to.
        mm.activate();
        let ev = trap::run_user(&mut frame);
        match ev {
            Event::Svc { imm: SVC_DONE } => break Ok(frame.x[0]),
            Event::Svc { imm: 0 } => {
                let args = [frame.x[0], frame.x[1], frame.x[2], frame.x[3], frame.x[4], frame.x[5]];
                match super::syscall::dispatch(task, frame.x[8], args) {
                    Some(ret) => frame.x[0] = ret,
                    None => break Err(Signal::Exited(frame.x[0] as i32)),
                }
            }
            Event::Abort { status: FaultStatus::TagCheck, addr, .. } => {
                break Err(Signal::Segv { kind: SegvKind::MteSErr, addr: addr.unwrap_or(0) & 0x0FFF_FFFF_FFFF_FFFF })
            }
            Event::Abort {
                status: FaultStatus::Translation(_) | FaultStatus::Permission(_) | FaultStatus::AccessFlag(_),
                addr: Some(addr),
                write,
                instruction,
                from_el0: true,
            } => {
                let page = untagged(addr) & !(PAGE_SIZE - 1);
                faults = if page == last_fault { faults + 1 } else { 1 };
                last_fault = page;
                if faults > 16 {
                    break Err(Signal::Killed(format!("still faulting at {addr:#x} after 16 resolved faults")));
                }
                match do_page_fault(&task.mm(), untagged(addr), write, instruction) {
                    Ok(()) => continue, // retry the instruction
                    Err(FaultError::Segv(SegvCode::MapErr)) => {
                        break Err(Signal::Segv { kind: SegvKind::MapErr, addr })
                    }
                    Err(FaultError::Segv(SegvCode::AccErr)) => {
                        break Err(Signal::Segv { kind: SegvKind::AccErr, addr })
                    }
                    Err(FaultError::Sigbus) => break Err(Signal::Bus { addr }),
                    Err(FaultError::Userfault) => break Err(Signal::UffdWait { addr }),
                    Err(FaultError::Oom) => break Err(Signal::Killed(String::from("out of memory"))),
                }
            }
            other => break Err(Signal::Killed(format!("unexpected EL0 exception: {other} at ELR {:#x}", frame.elr))),
        }
    };
    let async_fault = mte::async_faults().el0;
    mte::clear_async_faults();
    mte::set_tcf0(tcf0);
    mte::set_exclude(exclude);
    crate::mm::uaccess::set_tagged_addr_abi(false);
    // The tables stay installed for the task's next entry (mmu_context).
    crate::mm::mmu_context::set_serving(false);
    match result {
        Ok(_) if async_fault => Err(Signal::Segv { kind: SegvKind::MteAErr, addr: 0 }),
        r => r,
    }
}
