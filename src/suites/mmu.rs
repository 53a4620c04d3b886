//! Suite `mmu`: the kernel's own tables and the page-table API, checked
//! through real translations and faults.

use crate::arch::esr::{Event, FaultStatus};
use crate::arch::mmu::{self, phys_to_virt, MemType, Perm};
use crate::arch::trap;
use crate::harness::scratch::Scratch;
use crate::harness::{TestResult, Verdict};
use crate::mm::frames::Frame;
use crate::mm::kmap::kernel_root;
use crate::{ensure, ensure_eq, fail, kernel_test};

const LOW_VA: usize = 0x0030_0000;

/// Read-only data for the permission checks.
static RODATA_WORD: u64 = 0x600D_F00D;

fn frame() -> Result<Frame, Verdict> {
    Frame::alloc().ok_or_else(|| Verdict::Fail("out of frames".into()))
}

fn leaf(va: usize) -> Result<mmu::Leaf, Verdict> {
    mmu::lookup(kernel_root(), va)
        .ok_or_else(|| Verdict::Fail(alloc::format!("{va:#x} is not mapped in the kernel tables")))
}

fn expect_abort<T: core::fmt::Debug>(
    r: Result<T, Event>,
    want: fn(FaultStatus) -> bool,
    write: bool,
    el0: bool,
    what: &str,
) -> TestResult {
    match r {
        Err(Event::Abort { status, write: w, from_el0, .. }) if want(status) && w == write && from_el0 == el0 => Ok(()),
        other => fail!("{what}: got {other:?}"),
    }
}

fn kernel_sections_have_their_permissions() -> TestResult {
    let text = kernel_sections_have_their_permissions as *const () as usize;
    let t = leaf(text)?;
    ensure!(!t.writable && !t.user, "kernel text mapped writable or user-accessible: {t:?}");
    ensure_eq!(t.pa, mmu::virt_to_phys(text) & !0xFFF, "physical address of the text page");
    let r = leaf(&RODATA_WORD as *const u64 as usize)?;
    ensure!(!r.writable, "read-only data mapped writable: {r:?}");
    let local = 0u64;
    let s = leaf(&local as *const u64 as usize)?;
    ensure!(s.writable && !s.user, "the stack is not kernel read-write: {s:?}");
    expect_abort(
        trap::probe_write_u8(text, 0),
        |s| matches!(s, FaultStatus::Permission(_)),
        true,
        false,
        "store to kernel text",
    )?;
    expect_abort(
        trap::probe_write_u64(&RODATA_WORD as *const u64 as usize, 0),
        |s| matches!(s, FaultStatus::Permission(_)),
        true,
        false,
        "store to read-only data",
    )?;
    ensure_eq!(RODATA_WORD, 0x600D_F00D, "read-only data after the refused store");
    Ok(())
}
kernel_test!(mmu, kernel_sections_have_their_permissions);

fn linear_map_is_tagged_normal() -> TestResult {
    let f = frame()?;
    let l = leaf(phys_to_virt(f.pa()))?;
    ensure_eq!(l.pa, f.pa(), "linear map translation");
    ensure_eq!(l.mem_index, MemType::TaggedNormal as u64, "memory type of the linear map (MAIR index)");
    ensure!(l.writable && !l.user, "linear map permissions: {l:?}");
    Ok(())
}
kernel_test!(mmu, linear_map_is_tagged_normal);

fn unmap_then_access_faults() -> TestResult {
    let mut f = frame()?;
    f.page_mut().0[0] = 0x5A;
    let mut s = Scratch::new().map_err(|e| Verdict::Fail(alloc::format!("{e:?}")))?;
    s.map(LOW_VA, f.pa(), MemType::TaggedNormal, Perm::KernelRw).map_err(|e| Verdict::Fail(alloc::format!("{e:?}")))?;
    ensure_eq!(trap::probe_read_u8(LOW_VA), Ok(0x5A), "read through the new mapping");
    ensure!(
        s.map(LOW_VA, f.pa(), MemType::TaggedNormal, Perm::KernelRw) == Err(mmu::MapError::AlreadyMapped),
        "mapping over a valid entry was not refused"
    );
    ensure!(
        s.map(LOW_VA + 1, f.pa(), MemType::TaggedNormal, Perm::KernelRw) == Err(mmu::MapError::Misaligned),
        "a misaligned VA was accepted"
    );
    s.remap(LOW_VA, None).map_err(|e| Verdict::Fail(alloc::format!("{e:?}")))?;
    expect_abort(
        trap::probe_read_u8(LOW_VA),
        |s| s == FaultStatus::Translation(3),
        false,
        false,
        "read after the unmap (stale TLB?)",
    )
}
kernel_test!(mmu, unmap_then_access_faults);

fn el0_permissions() -> TestResult {
    let ro = frame()?;
    let kernel_only = frame()?;
    let mut s = Scratch::new().map_err(|e| Verdict::Fail(alloc::format!("{e:?}")))?;
    s.map_user_code().map_err(|e| Verdict::Fail(alloc::format!("{e:?}")))?;
    s.map(LOW_VA, ro.pa(), MemType::TaggedNormal, Perm::UserRo).map_err(|e| Verdict::Fail(alloc::format!("{e:?}")))?;
    s.map(LOW_VA + 0x1000, kernel_only.pa(), MemType::TaggedNormal, Perm::KernelRw)
        .map_err(|e| Verdict::Fail(alloc::format!("{e:?}")))?;
    ensure_eq!(s.el0_load(LOW_VA), Ok(0), "EL0 read of a user read-only page");
    expect_abort(
        s.el0_store(LOW_VA, 1),
        |s| matches!(s, FaultStatus::Permission(_)),
        true,
        true,
        "EL0 store to a read-only page",
    )?;
    expect_abort(
        s.el0_load(LOW_VA + 0x1000),
        |s| matches!(s, FaultStatus::Permission(_)),
        false,
        true,
        "EL0 read of a kernel-only page",
    )?;
    expect_abort(
        s.el0_load(kernel_only.addr()),
        |s| matches!(s, FaultStatus::Permission(_) | FaultStatus::Translation(_)),
        false,
        true,
        "EL0 read of a kernel linear-map address",
    )?;
    ensure_eq!(kernel_only.page().0[0], 0, "kernel page after the refused EL0 accesses");
    Ok(())
}
kernel_test!(mmu, el0_permissions);

// --- address-space switches (mm::mmu_context) ------------------------------

use super::scenario::{mmap, ok, on_cpu, Scenario, ANON, RW};

/// A task's consecutive EL0 entries on one CPU keep its tables in TTBR0
/// (no switch between them); alternating two tasks switches at every
/// entry, and each still reads its own page at the same address.
fn consecutive_entries_of_a_task_write_ttbr0_once() -> TestResult {
    let mut s = Scenario::new();
    let (t, u) = (s.spawn()?, s.spawn()?);
    let a = mmap(&t, 0, 4096, RW, ANON, -1)?;
    ensure_eq!(mmap(&u, a, 4096, RW, ANON, -1)?, a, "u's page at the same address");
    ok(t.store(a, 1), "t's write")?;
    ok(u.store(a, 2), "u's write")?;
    ok(t.load(a), "t's read")?;
    let w0 = mmu::ttbr0_writes();
    for _ in 0..50 {
        ensure_eq!(ok(t.load(a), "t's read")?, 1, "t's page");
    }
    let same = mmu::ttbr0_writes() - w0;
    ensure_eq!(same, 0, "TTBR0 writes over 50 entries of the task already installed");
    ensure!(crate::mm::mmu_context::is_active(&t.mm()), "t's tables are not this CPU's after its run");
    let w1 = mmu::ttbr0_writes();
    for _ in 0..10 {
        ensure_eq!(ok(u.load(a), "u's read")?, 2, "u's page after a switch from t");
        ensure_eq!(ok(t.load(a), "t's read")?, 1, "t's page after a switch from u");
    }
    ensure_eq!(mmu::ttbr0_writes() - w1, 20, "TTBR0 writes over 20 alternating entries");
    s.finish()
}
kernel_test!(mmu, consecutive_entries_of_a_task_write_ttbr0_once);

/// A task that last ran on CPU 1 (which keeps its tables installed) exits
/// on CPU 0: CPU 1 lets go when asked, so the mm and its page tables are
/// freed at exit, not at CPU 1's next switch.
fn an_exited_task_frees_its_tables_though_another_cpu_kept_them() -> TestResult {
    let frames = crate::mm::frames::free_frames();
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 4096, RW, ANON, -1)?;
    ok(t.store(a, 7), "write on CPU 0")?;
    let tt = t.clone();
    let read = on_cpu(1, "CPU 1's read", move || tt.load(a))?.join()?;
    ensure_eq!(ok(read, "CPU 1's read")?, 7, "CPU 1 reads the page");
    let mm = alloc::sync::Arc::downgrade(&t.mm());
    s.finish()?;
    // CPU 1 answers from its wait loop; on a loaded host its vCPU may run
    // late, so give it a second.
    let f = crate::arch::cpu::counter_freq().max(1);
    let deadline = crate::arch::cpu::counter() + f;
    while mm.strong_count() != 0 && crate::arch::cpu::counter() < deadline {
        core::hint::spin_loop();
    }
    ensure!(mm.strong_count() == 0, "the mm outlived its task's exit by a second ({} references)", mm.strong_count());
    ensure_eq!(crate::mm::frames::free_frames(), frames, "free frames after the exit");
    Ok(())
}
kernel_test!(mmu, an_exited_task_frees_its_tables_though_another_cpu_kept_them, cpus = 2);
