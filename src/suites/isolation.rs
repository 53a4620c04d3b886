//! Suite `isolation`: what an EL0 task must not reach, each tried from EL0
//! (or, for PAN, by the kernel on a task's behalf) and shown refused.

use super::scenario::*;
use crate::arch::cpu;
use crate::arch::esr::{Event, FaultStatus};
use crate::arch::mte::with_tag;
use crate::arch::trap;
use crate::errno::EBADF;
use crate::harness::TestResult;
use crate::mm::mmap::PROT_MTE;
use crate::mm::userfaultfd::{UFFDIO_REGISTER_MODE_MISSING, UFFD_FEATURE_MOVE};
use crate::task::agent::{Routine, SegvKind, Signal, AGENT_VA};
use crate::{ensure, ensure_eq, fail, kernel_test};
use alloc::format;

static KERNEL_WORD: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0x5EC2_E7ED);

fn expect_any_segv<T: core::fmt::Debug>(r: Result<T, Signal>, what: &str) -> TestResult {
    match r {
        Err(Signal::Segv { .. }) => Ok(()),
        other => fail!("{what}: expected SIGSEGV, got {other:?}"),
    }
}

/// Kernel memory (the image and the linear map, TTBR1 addresses) can be
/// neither read nor written from EL0, and the refused store changes nothing.
fn el0_cannot_reach_kernel_memory() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let word = &KERNEL_WORD as *const _ as usize;
    let linear = crate::arch::mmu::phys_to_virt(crate::arch::mmu::virt_to_phys(word)) as usize;
    for (what, addr) in [("the kernel image", word), ("the linear map", linear)] {
        expect_any_segv(t.load(addr), &format!("an EL0 read of {what}"))?;
        expect_any_segv(t.store(addr, 0xBAD), &format!("an EL0 write to {what}"))?;
    }
    ensure_eq!(KERNEL_WORD.load(core::sync::atomic::Ordering::Acquire), 0x5EC2_E7ED, "the kernel word");
    s.finish()
}
kernel_test!(isolation, el0_cannot_reach_kernel_memory);

/// With PAN on, a kernel load or store through a user address faults
/// even with the task's tables in TTBR0; uaccess (LDTR/STTR) still works.
/// PAN off for a moment shows the same load would have read user memory.
fn pan_stops_kernel_access_to_user_memory() -> TestResult {
    if !cpu::has_pan() {
        crate::skip!("the CPU has no FEAT_PAN");
    }
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    ok(t.store(a, 0x1234), "EL0 write")?;
    ensure!(cpu::pan(), "PSTATE.PAN is off in the kernel");
    t.mm().activate();
    let plain = trap::probe_read_u64(a);
    let plain_write = trap::probe_write_u64(a, 0xBAD);
    let mut w = [0u64; 1];
    let user = trap::probe_read_user_words(a, &mut w);
    cpu::set_pan(false);
    let without = trap::probe_read_u64(a);
    cpu::set_pan(true);
    crate::mm::mmu_context::leave_mm();
    let perm = |r: &Result<u64, Event>| matches!(r, Err(Event::Abort { status: FaultStatus::Permission(_), .. }));
    ensure!(perm(&plain), "a kernel load through a user address with PAN on: {plain:?}");
    ensure!(
        matches!(plain_write, Err(Event::Abort { status: FaultStatus::Permission(_), .. })),
        "a kernel store through a user address with PAN on: {plain_write:?}"
    );
    ensure!(user.is_ok() && w[0] == 0x1234, "uaccess (LDTR) with PAN on: {user:?}, {:#x}", w[0]);
    ensure_eq!(without, Ok(0x1234), "the same kernel load with PAN off");
    ensure_eq!(ok(t.load(a), "EL0 read")?, 0x1234, "the user word after the refused kernel store");
    s.finish()
}
kernel_test!(isolation, pan_stops_kernel_access_to_user_memory);

/// Another task's memory is not there: the same address in another task
/// is unmapped (MAPERR), and where both map it each sees its own page.
fn el0_cannot_reach_another_tasks_memory() -> TestResult {
    let mut s = Scenario::new();
    let a = s.spawn()?;
    let b = s.spawn()?;
    let va = mmap(&a, 0, PAGE, RW, ANON, -1)?;
    ok(a.store(va, 0xA), "A's write")?;
    expect_segv(b.load(va), SegvKind::MapErr, va, "B reading A's address")?;
    let vb = mmap(&b, va, PAGE, RW, ANON | crate::mm::mmap::MAP_FIXED, -1)?;
    ensure_eq!(vb, va, "B's mapping at the same address");
    ok(b.store(va, 0xB), "B's write")?;
    ensure_eq!(ok(a.load(va), "A's read")?, 0xA, "A's word after B wrote at the same address");
    s.finish()
}
kernel_test!(isolation, el0_cannot_reach_another_tasks_memory);

/// The EL0 agent's code is readable and executable, not writable; a
/// task's data page is not executable (the branch faults, and the
/// instruction placed there, which would end the routine, never runs).
fn agent_code_is_read_only_and_data_is_execute_never() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let code = Routine::Load.entry() as usize;
    let before = ok(t.load(code), "reading the agent's code")?;
    expect_segv(t.store(code, 0), SegvKind::AccErr, code, "writing the agent's code")?;
    ensure_eq!(ok(t.load(code), "reading it again")?, before, "the agent's code after the refused write");
    ensure!(code >= AGENT_VA, "the agent's code is not at AGENT_VA");
    let d = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    // svc #0x7ff: the end of an agent routine, so a data page that did run
    // would return normally.
    ok(t.store(d, 0xD400_FFE1), "writing an instruction into a data page")?;
    match t.run(Routine::Call, &[d as u64]) {
        Err(Signal::Segv { kind: SegvKind::AccErr | SegvKind::MapErr, .. }) => {}
        other => fail!("executing a data page: expected SIGSEGV, got {other:?}"),
    }
    s.finish()
}
kernel_test!(isolation, agent_code_is_read_only_and_data_is_execute_never);

/// A page retagged is not reachable through its old tag.
fn a_stale_tag_does_not_reach_the_page() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    ok(t.tag_range(with_tag(a, 3), PAGE), "tag 3")?;
    ok(t.store(with_tag(a, 3), 7), "write through tag 3")?;
    ok(t.tag_range(with_tag(a, 9), PAGE), "retag with 9")?;
    let stale = with_tag(a, 3);
    expect_segv(t.load(stale), SegvKind::MteSErr, stale, "a read through the old tag")?;
    expect_segv(t.store(stale, 8), SegvKind::MteSErr, stale, "a write through the old tag")?;
    ensure_eq!(ok(t.load(with_tag(a, 9)), "a read through the new tag")?, 7, "the data");
    s.finish()
}
kernel_test!(isolation, a_stale_tag_does_not_reach_the_page);

/// A userfaultfd descriptor is its task's (and its fork children's): one
/// another task made is EBADF here, for every call on it.
fn another_tasks_userfaultfd_is_ebadf() -> TestResult {
    let mut s = Scenario::new();
    let owner = s.spawn()?;
    let other = s.spawn()?;
    let u = UffdFd::new(&owner, UFFD_FEATURE_MOVE)?;
    let a = mmap(&owner, 0, PAGE, RW, ANON, -1)?;
    u.register(a, PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    let buf = mmap(&other, 0, PAGE, RW, ANON, -1)?;
    let theirs = UffdFd { t: other.clone(), fd: u.fd, arg: buf };
    expect_errno(theirs.try_register(buf, PAGE, UFFDIO_REGISTER_MODE_MISSING), EBADF, "UFFDIO_REGISTER")?;
    expect_errno(theirs.copy(a, buf, PAGE, 0), EBADF, "UFFDIO_COPY into the owner's memory")?;
    expect_errno(theirs.zeropage(a, PAGE, 0), EBADF, "UFFDIO_ZEROPAGE")?;
    expect_errno(other.read(u.fd, buf, 32), EBADF, "read(2)")?;
    expect_errno(other.close(u.fd), EBADF, "close(2)")?;
    ensure!(u.ctx().is_ok(), "the owner's context survived the other task's close");
    // A fork child holds its parent's descriptors, as in Linux.
    let child = s.fork(&owner)?;
    let cbuf = mmap(&child, 0, PAGE, RW, ANON, -1)?;
    let inherited = UffdFd { t: child.clone(), fd: u.fd, arg: cbuf };
    ensure!(
        returned(inherited.wake(a, PAGE), "UFFDIO_WAKE from the child")?.is_ok(),
        "the child's inherited descriptor"
    );
    s.finish()
}
kernel_test!(isolation, another_tasks_userfaultfd_is_ebadf);
