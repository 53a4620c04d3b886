//! Which address space each CPU has in TTBR0: Linux's switch_mm with the
//! lazy active_mm. A task's tables stay installed after it comes back to
//! the kernel, so its next EL0 entry on the same CPU writes no TTBR0 (on
//! QEMU an ASID change flushes the whole TLB; on hardware the TLB keeps
//! its entries for the next entry).
//!
//! A CPU holds a reference on the mm it has installed, so the tables its
//! walker may read are never freed under it. It lets go when it installs
//! another mm, when it leaves to the empty TTBR0 (`leave_mm`), or when
//! asked to (`release`, called when a task exits and after every test): an
//! idle secondary answers from its wait loop.

use super::mm_types::MmStruct;
use crate::arch::boot::MAX_CPUS;
use crate::arch::{cpu, mmu};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

static ACTIVE: [Mutex<Option<Arc<MmStruct>>>; MAX_CPUS] = [const { Mutex::new(None) }; MAX_CPUS];
/// Set by another CPU: leave your mm at the next chance.
static LEAVE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// This CPU is running a task (its EL0 code or its system calls), not
/// just keeping its tables installed.
static SERVING: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Marks the start and end of a task's run on this CPU.
pub fn set_serving(on: bool) {
    SERVING[cpu::id()].store(on, Ordering::Release);
}

/// Whether this CPU is running a task of `mm` now (uaccess may go through
/// TTBR0 with the task's own tag-check mode): installed lazily is not enough.
pub fn serving(mm: &MmStruct) -> bool {
    SERVING[cpu::id()].load(Ordering::Acquire) && mmu::ttbr0_root() == mm.pgtables.root
}

/// switch_mm: makes `mm` this CPU's EL0 address space; nothing to do when
/// it already is.
pub fn switch_mm(mm: &Arc<MmStruct>) {
    let me = cpu::id();
    let mut slot = ACTIVE[me].lock();
    if slot.as_ref().is_some_and(|m| Arc::ptr_eq(m, mm)) && mmu::ttbr0_root() == mm.pgtables.root {
        return;
    }
    mmu::set_ttbr0(mm.pgtables.root, mm.asid);
    let old = slot.replace(mm.clone());
    drop(slot);
    drop(old); // may be the last reference: frees that mm's tables
}

/// Installs the empty TTBR0 on this CPU and lets go of its mm.
pub fn leave_mm() {
    let me = cpu::id();
    super::kmap::install_empty_ttbr0();
    LEAVE[me].store(false, Ordering::Release);
    let old = ACTIVE[me].lock().take();
    drop(old);
}

/// Whether this CPU holds `mm`.
pub fn is_active(mm: &MmStruct) -> bool {
    ACTIVE[cpu::id()].lock().as_ref().is_some_and(|m| core::ptr::eq(Arc::as_ptr(m), mm))
}

/// For a CPU's wait loop: leaves its mm if another CPU asked.
pub fn service_leave_request() {
    if LEAVE[cpu::id()].load(Ordering::Acquire) {
        leave_mm();
    }
}

/// Makes every CPU let go of `mm` (every mm when None): this one at once,
/// the others through a request that idle CPUs answer; waits up to
/// `timeout_us` for them. Returns how many still hold it (a CPU busy with
/// other work lets go at its next switch, never while its walker may use
/// the tables).
pub fn release(mm: Option<&MmStruct>, timeout_us: u64) -> usize {
    let holds = |c: usize| match (ACTIVE[c].lock().as_ref(), mm) {
        (None, _) => false,
        (Some(_), None) => true,
        (Some(a), Some(m)) => core::ptr::eq(Arc::as_ptr(a), m),
    };
    let me = cpu::id();
    if holds(me) {
        leave_mm();
    }
    let online = crate::smp::online();
    let mut asked = false;
    for c in (0..online).filter(|&c| c != me && holds(c)) {
        LEAVE[c].store(true, Ordering::Release);
        asked = true;
    }
    if !asked {
        return 0;
    }
    cpu::sev();
    let f = cpu::counter_freq().max(1);
    let deadline = cpu::counter() + timeout_us * f / 1_000_000;
    loop {
        let left = (0..online).filter(|&c| c != me && holds(c)).count();
        if left == 0 || cpu::counter() > deadline {
            return left;
        }
        cpu::spin_hint();
    }
}
