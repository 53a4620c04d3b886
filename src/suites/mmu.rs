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
