//! Suites `harness`, `smp` and `selftest`: the harness and SMP checked on
//! the hardware model, plus deliberately failing tests (run only when named)
//! that show a failure, a panic and an unexpected fault are reported.

use crate::arch::esr::{Event, FaultStatus};
use crate::arch::mte::with_tag;
use crate::arch::{cpu, mte, trap};
use crate::harness::TestResult;
use crate::mm::frames::Frame;
use crate::{ensure, ensure_eq, fail, kernel_test, smp};
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;

/// CPU index, SCTLR_EL1, TCF, TCF0 as seen by a secondary.
type CpuState = (usize, u64, mte::TcfMode, mte::TcfMode);
/// A wrong-tag and a right-tag read, done on a secondary.
type ProbePair = (Result<u64, Event>, Result<u64, Event>);

/// An address in the TTBR0 half that nothing maps outside scratch spaces.
const UNMAPPED: usize = 0x1000;

fn guard_catches_unexpected_fault() -> TestResult {
    let r = trap::guarded(&mut || {
        // SAFETY: deliberately reads an unmapped address; the guard turns the
        // translation fault into an error and abandons this closure.
        unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
    });
    match r {
        Err(u) => match u.event {
            Event::Abort {
                status: FaultStatus::Translation(_), addr: Some(a), write: false, from_el0: false, ..
            } => {
                ensure_eq!(a, UNMAPPED as u64, "FAR of the abandoned read");
                Ok(())
            }
            other => fail!("wrong exception decoded: {other}"),
        },
        Ok(()) => fail!("reading an unmapped address did not fault"),
    }
}
kernel_test!(harness, guard_catches_unexpected_fault);

fn probe_reports_translation_fault() -> TestResult {
    match trap::probe_write_u64(UNMAPPED + 8, 1) {
        Err(Event::Abort { status: FaultStatus::Translation(_), addr, write: true, .. }) => {
            ensure_eq!(addr, Some(UNMAPPED as u64 + 8), "FAR");
            Ok(())
        }
        Err(other) => fail!("wrong exception: {other}"),
        Ok(()) => fail!("store to an unmapped address did not fault"),
    }
}
kernel_test!(harness, probe_reports_translation_fault);

fn frame_leak_is_visible() -> TestResult {
    // The harness compares free frames around each test; check the counter
    // it relies on moves with allocation and comes back on drop.
    let before = crate::mm::frames::free_frames();
    let f = Frame::alloc().ok_or_else(|| crate::harness::Verdict::Fail("no frame".into()))?;
    ensure_eq!(crate::mm::frames::free_frames(), before - 1, "free frames while one is held");
    drop(f);
    ensure_eq!(crate::mm::frames::free_frames(), before, "free frames after the drop");
    Ok(())
}
kernel_test!(harness, frame_leak_is_visible);

fn cpus_from_dtb_online() -> TestResult {
    // A CPU the watchdog took counts as online, just not for tests.
    ensure_eq!(smp::online() + smp::dedicated(), smp::dtb_cpus(), "CPUs online vs CPUs in the DTB");
    Ok(())
}
kernel_test!(smp, cpus_from_dtb_online);

fn every_cpu_runs_work_with_mmu_and_mte() -> TestResult {
    let seen: Arc<Mutex<Vec<CpuState>>> = Arc::new(Mutex::new(Vec::new()));
    for c in 1..smp::online() {
        let s = seen.clone();
        let job = smp::start(c, move || {
            let sctlr = cpu::sctlr_el1();
            s.lock().push((cpu::id(), sctlr, mte::tcf(), mte::tcf0()));
        })
        .map_err(|e| crate::harness::Verdict::Fail(alloc::format!("could not start work on CPU {c}: {e}")))?;
        if let Err(u) = job.join() {
            fail!("CPU {c} took an unexpected exception: {}", u.event);
        }
    }
    let seen = seen.lock();
    ensure_eq!(seen.len(), smp::online() - 1, "secondaries that ran the work");
    for (i, &(id, sctlr, tcf, tcf0)) in seen.iter().enumerate() {
        ensure_eq!(id, i + 1, "CPU index the work ran on");
        ensure!(sctlr & 1 == 1, "CPU {id}: MMU off (SCTLR_EL1 {sctlr:#x})");
        ensure!(sctlr & (1 << 43) != 0, "CPU {id}: SCTLR_EL1.ATA clear: no tag access");
        ensure_eq!(tcf, mte::TcfMode::Sync, "CPU {id}: EL1 tag-check mode");
        ensure_eq!(tcf0, mte::TcfMode::Sync, "CPU {id}: EL0 tag-check mode");
    }
    Ok(())
}
kernel_test!(smp, every_cpu_runs_work_with_mmu_and_mte, cpus = 2);

fn tag_check_fault_on_every_cpu() -> TestResult {
    for c in 1..smp::online() {
        let mut f = Frame::alloc().ok_or_else(|| crate::harness::Verdict::Fail("no frame".into()))?;
        f.page_mut().set_all_tags(0x6);
        let bad = with_tag(f.addr() + 0x100, 0x2);
        let good = with_tag(f.addr() + 0x100, 0x6);
        let out: Arc<Mutex<Option<ProbePair>>> = Arc::new(Mutex::new(None));
        let o = out.clone();
        let job = smp::start(c, move || {
            *o.lock() = Some((trap::probe_read_u64(bad), trap::probe_read_u64(good)));
        })
        .map_err(|e| crate::harness::Verdict::Fail(alloc::format!("could not start work on CPU {c}: {e}")))?;
        if let Err(u) = job.join() {
            fail!("CPU {c}: unexpected exception {}", u.event);
        }
        let r = out.lock().take();
        match r {
            Some((Err(e), Ok(_))) if e.is_tag_check() => {}
            Some((b, g)) => fail!("CPU {c}: wrong-tag read gave {b:?}, right-tag read gave {g:?}"),
            None => fail!("CPU {c} did not record a result"),
        }
    }
    Ok(())
}
kernel_test!(smp, tag_check_fault_on_every_cpu, cpus = 2);

fn deliberate_failure() -> TestResult {
    fail!("deliberate failure (selftest::deliberate_failure was asked for by name)")
}
kernel_test!(selftest, deliberate_failure, explicit_only);

fn deliberate_unexpected_fault() -> TestResult {
    let mut f = Frame::alloc().ok_or_else(|| crate::harness::Verdict::Fail("no frame".into()))?;
    f.page_mut().set_all_tags(0x3);
    let p = with_tag(f.addr(), 0x4) as *const u64;
    // SAFETY: p points into a frame this test owns; the wrong tag makes the
    // read take a tag-check fault, which the harness reports.
    let v = unsafe { core::ptr::read_volatile(p) };
    fail!("a wrong-tag read returned {v:#x} instead of faulting")
}
kernel_test!(selftest, deliberate_unexpected_fault, explicit_only);

fn deliberate_panic() -> TestResult {
    panic!("deliberate panic (selftest::deliberate_panic was asked for by name)")
}
kernel_test!(selftest, deliberate_panic, explicit_only);

fn deliberate_hang() -> TestResult {
    // Spins until the host's timeout kills the guest.
    loop {
        cpu::wfe();
    }
}
kernel_test!(selftest, deliberate_hang, explicit_only, timeout = 5);

/// Fails part-way the way a real test can: swap on, a page swapped out with
/// its tags saved, a known-wrong order and a fault injection switched on, a
/// schedule point armed, a task alive, and no guard to undo any of it. The
/// harness must put it all back and report it as this test's failure, so
/// the tests after it pass.
fn deliberate_leak() -> TestResult {
    use crate::mm::mmap::{MADV_PAGEOUT, PROT_MTE};
    use crate::suites::scenario::{mmap, must, tag_page, verdict, ANON, PAGE, RW};
    crate::mm::swapfile::swapon().map_err(|e| verdict("swapon", e))?;
    let t = crate::task::Task::spawn().map_err(|e| verdict("spawn", e))?;
    let a = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    tag_page(&t, a, |g| (g % 15) as u8 + 1)?;
    must(t.madvise(a, PAGE, MADV_PAGEOUT), "MADV_PAGEOUT")?;
    core::mem::forget(crate::testhooks::variants::SWAPIN_FREE_BEFORE_RESTORE.enable());
    core::mem::forget(crate::testhooks::fault_inject::MTESWAP_SAVE.arm(crate::testhooks::fault_inject::Spec::nth(3)));
    core::mem::forget(crate::testhooks::schedpoint::arm(&crate::testhooks::points::DO_SWAP_PAGE_AFTER_FOLIO_LOCK));
    core::mem::forget(crate::testhooks::knobs::KEEP_IN_SWAPCACHE.set(1));
    core::mem::forget(t);
    fail!("deliberate failure part-way, leaving state behind (selftest::deliberate_leak was asked for by name)")
}
kernel_test!(selftest, deliberate_leak, ramdisk, explicit_only);
