//! Suite `mte_hw`: MTE conformance checks of the kind a board bring-up
//! engineer runs, on real tags of the machine (or model) under test.

use crate::arch::esr::{same_fault_address, Event};
use crate::arch::mmu::{MemType, Perm, PAGE_SIZE};
use crate::arch::mte::{self, with_tag, TcfMode, GRANULE};
use crate::arch::trap;
use crate::harness::scratch::Scratch;
use crate::harness::{TestResult, Verdict};
use crate::mm::frames::Frame;
use crate::{ensure, ensure_eq, fail, kernel_test, skip};

const GRANULES: usize = PAGE_SIZE / GRANULE;
/// A low (TTBR0) address for scratch mappings.
const LOW_VA: usize = 0x0020_0000;

/// These tests check the hardware's behaviour in one mode each, whatever
/// mode the command line gave the harness (`mte=`).
fn sync_mode() {
    mte::set_tcf(TcfMode::Sync);
}

fn frame() -> Result<Frame, Verdict> {
    Frame::alloc().ok_or_else(|| Verdict::Fail("out of frames".into()))
}

fn scratch() -> Result<Scratch, Verdict> {
    Scratch::new().map_err(|e| Verdict::Fail(alloc::format!("scratch address space: {e:?}")))
}

fn mapped(s: &mut Scratch, va: usize, pa: u64, mem: MemType, perm: Perm) -> TestResult {
    s.map(va, pa, mem, perm).map_err(|e| Verdict::Fail(alloc::format!("mapping {va:#x}: {e:?}")))
}

/// Checks that `r` is a synchronous tag-check fault of the expected kind at `ptr`.
fn expect_tag_fault<T: core::fmt::Debug>(
    r: Result<T, Event>,
    ptr: usize,
    write: bool,
    el0: bool,
    what: &str,
) -> TestResult {
    match r {
        Ok(v) => {
            fail!("{what}: expected a tag-check fault at {ptr:#x}, the access completed ({v:?})")
        }
        Err(Event::Abort { status, addr, write: w, from_el0, .. }) => {
            ensure!(
                matches!(status, crate::arch::esr::FaultStatus::TagCheck),
                "{what}: expected a tag-check fault, got {status}"
            );
            ensure_eq!(w, write, "{what}: ESR WnR");
            ensure_eq!(from_el0, el0, "{what}: fault taken from EL0 (EC 0x24) rather than EL1 (EC 0x25)");
            match addr {
                Some(a) => ensure!(
                    same_fault_address(a, ptr as u64),
                    "{what}: FAR {a:#x}, expected {ptr:#x} (tag in bits 59:56)"
                ),
                None => fail!("{what}: FAR not valid for a tag-check fault"),
            }
            Ok(())
        }
        Err(e) => fail!("{what}: expected a tag-check fault, got {e}"),
    }
}

fn feature_present() -> TestResult {
    let v = mte::version();
    ensure!(v >= 2, "ID_AA64PFR1_EL1.MTE = {v}: this CPU has no tag checking (need 2 or 3)");
    Ok(())
}
kernel_test!(mte_hw, feature_present);

fn adjacent_granules_distinct() -> TestResult {
    let mut f = frame()?;
    let p = f.page_mut();
    let first = [14u8, 15, 9, 9];
    for (g, &t) in first.iter().enumerate() {
        p.stg(g, t);
    }
    let read: [u8; 4] = core::array::from_fn(|g| p.ldg(g));
    ensure!(
        read == first,
        "defective MTE implementation: adjacent granules do not keep their own tags (tagged {first:?}, read back {read:?}). \
         This is the QEMU < 8 bug (issue 1416): use QEMU >= 8 (Debian bookworm-backports)"
    );
    let tag = |g: usize| ((g * 7 + 3) % 16) as u8;
    for g in 0..GRANULES {
        p.stg(g, tag(g));
    }
    for g in 0..GRANULES {
        ensure_eq!(p.ldg(g), tag(g), "defective MTE implementation: tag of granule {g}");
    }
    Ok(())
}
kernel_test!(mte_hw, adjacent_granules_distinct);

fn tag_check_fault_on_load() -> TestResult {
    sync_mode();
    let mut f = frame()?;
    f.page_mut().set_all_tags(3);
    let a = f.addr() + 64;
    ensure!(
        trap::probe_write_u64(with_tag(a, 3), 0x1122_3344_5566_7788).is_ok(),
        "store with the matching tag faulted"
    );
    ensure_eq!(trap::probe_read_u64(with_tag(a, 3)), Ok(0x1122_3344_5566_7788), "load with the matching tag");
    expect_tag_fault(
        trap::probe_read_u64(with_tag(a, 5)),
        with_tag(a, 5),
        false,
        false,
        "load with tag 5 from a granule tagged 3",
    )
}
kernel_test!(mte_hw, tag_check_fault_on_load);

fn tag_check_fault_on_store() -> TestResult {
    sync_mode();
    let mut f = frame()?;
    f.page_mut().set_all_tags(3);
    let a = f.addr() + 128;
    trap::probe_write_u64(with_tag(a, 3), 0xAAAA)
        .map_err(|e| Verdict::Fail(alloc::format!("matching store faulted: {e}")))?;
    expect_tag_fault(trap::probe_write_u64(with_tag(a, 9), 0xBBBB), with_tag(a, 9), true, false, "store with tag 9")?;
    ensure_eq!(trap::probe_read_u64(with_tag(a, 3)), Ok(0xAAAA), "memory after the faulting store (must be unchanged)");
    Ok(())
}
kernel_test!(mte_hw, tag_check_fault_on_store);

fn fault_is_per_granule() -> TestResult {
    sync_mode();
    let mut f = frame()?;
    f.page_mut().set_all_tags(3);
    f.page_mut().stg(10, 7);
    let g9 = f.addr() + 9 * GRANULE + 8;
    let g10 = f.addr() + 10 * GRANULE;
    ensure!(trap::probe_read_u64(with_tag(g9, 3)).is_ok(), "granule 9 (tag 3) faulted with tag 3");
    expect_tag_fault(
        trap::probe_read_u64(with_tag(g10, 3)),
        with_tag(g10, 3),
        false,
        false,
        "granule 10 (tag 7) with tag 3",
    )?;
    ensure!(trap::probe_read_u64(with_tag(g10, 7)).is_ok(), "granule 10 faulted with its own tag 7");
    expect_tag_fault(
        trap::probe_read_u8(with_tag(g10 + 15, 3)),
        with_tag(g10 + 15, 3),
        false,
        false,
        "last byte of granule 10",
    )?;
    ensure!(trap::probe_read_u8(with_tag(g10 + 16, 3)).is_ok(), "first byte of granule 11 (tag 3) faulted");
    let b = with_tag(g10, 3);
    expect_tag_fault(trap::probe_write_u8(b, 1), b, true, false, "byte store to granule 10 with tag 3")?;
    Ok(())
}
kernel_test!(mte_hw, fault_is_per_granule);

fn tcf_none_disables_checks() -> TestResult {
    sync_mode();
    let mut f = frame()?;
    f.page_mut().set_all_tags(3);
    let bad = with_tag(f.addr(), 12);
    mte::set_tcf(TcfMode::None);
    let r = trap::probe_write_u64(bad, 5).and_then(|_| trap::probe_read_u64(bad));
    mte::set_tcf(TcfMode::Sync);
    ensure_eq!(r, Ok(5), "wrong-tag store and load with SCTLR_EL1.TCF = none");
    ensure!(!mte::async_faults().any(), "TCF = none recorded an asynchronous fault");
    Ok(())
}
kernel_test!(mte_hw, tcf_none_disables_checks);

fn match_all_tcma1() -> TestResult {
    sync_mode();
    let mut f = frame()?;
    f.page_mut().set_all_tags(7);
    // Kernel pointers carry 0xF in the TTBR1 half: match-all with TCMA1.
    ensure!(
        trap::probe_read_u64(with_tag(f.addr(), 0xF)).is_ok(),
        "tag 0xF in the TTBR1 half faulted with TCR_EL1.TCMA1 set"
    );
    let p = with_tag(f.addr(), 0xE);
    expect_tag_fault(trap::probe_read_u64(p), p, false, false, "tag 0xE (not match-all) on a granule tagged 7")
}
kernel_test!(mte_hw, match_all_tcma1);

fn match_all_tcma0() -> TestResult {
    sync_mode();
    let mut f = frame()?;
    f.page_mut().set_all_tags(7);
    let mut s = scratch()?;
    mapped(&mut s, LOW_VA, f.pa(), MemType::TaggedNormal, Perm::KernelRw)?;
    let zero = with_tag(LOW_VA, 0);
    mte::set_tcma0(false);
    expect_tag_fault(trap::probe_read_u64(zero), zero, false, false, "tag 0 in the TTBR0 half, TCMA0 clear")?;
    mte::set_tcma0(true);
    let r = trap::probe_read_u64(zero);
    let six = with_tag(LOW_VA, 6);
    let r6 = trap::probe_read_u64(six);
    mte::set_tcma0(false);
    ensure!(r.is_ok(), "tag 0 in the TTBR0 half faulted with TCMA0 set: {r:?}");
    expect_tag_fault(r6, six, false, false, "tag 6 with TCMA0 set (only tag 0 is match-all)")
}
kernel_test!(mte_hw, match_all_tcma0);

fn untagged_normal_never_faults() -> TestResult {
    let mut f = frame()?;
    f.page_mut().set_all_tags(6);
    let mut s = scratch()?;
    mapped(&mut s, LOW_VA, f.pa(), MemType::Normal, Perm::KernelRw)?;
    for tag in [0u8, 3, 9, 15] {
        let p = with_tag(LOW_VA + 32, tag);
        ensure!(
            trap::probe_write_u64(p, tag as u64).is_ok(),
            "store with tag {tag} to Normal (untagged) memory faulted"
        );
        ensure_eq!(trap::probe_read_u64(p), Ok(tag as u64), "load with tag {tag} from Normal memory");
    }
    ensure_eq!(mte::ldg_at(LOW_VA), 0, "LDG through an untagged mapping");
    // SAFETY: the granule belongs to this test's frame.
    unsafe { mte::stg_at(with_tag(LOW_VA, 2)) };
    ensure_eq!(f.page().ldg(0), 6, "tag after STG through the untagged alias (must be ignored)");
    ensure_eq!(
        trap::probe_read_u64(with_tag(f.addr() + 32, 6)),
        Ok(15),
        "data written through the untagged alias, read through the tagged one"
    );
    Ok(())
}
kernel_test!(mte_hw, untagged_normal_never_faults);

fn irg_respects_gcr_exclude() -> TestResult {
    let base = 0xFFFF_0000_1000_0000usize;
    mte::set_exclude(!((1u16 << 3) | (1 << 5)));
    let mut seen = [0usize; 16];
    for _ in 0..256 {
        seen[mte::ptr_tag(mte::irg(base, 0)) as usize] += 1;
    }
    mte::set_exclude(1 << 0xF);
    for (t, &n) in seen.iter().enumerate() {
        ensure!(
            t == 3 || t == 5 || n == 0,
            "IRG produced excluded tag {t} ({n} times) with GCR_EL1.Exclude allowing only 3 and 5"
        );
    }
    ensure!(seen[3] > 0 && seen[5] > 0, "IRG never produced one of the two allowed tags: {seen:?}");

    let only9 = !(1u16 << 9);
    for _ in 0..64 {
        ensure_eq!(mte::ptr_tag(mte::irg(base, only9)), 9, "IRG with every tag but 9 excluded by its register operand");
    }
    let mut distinct = [false; 16];
    for _ in 0..1000 {
        let p = mte::irg(base, 0);
        ensure_eq!(p & !(0xF << 56), base & !(0xF << 56), "IRG changed address bits");
        distinct[mte::ptr_tag(p) as usize] = true;
    }
    ensure!(!distinct[15], "IRG produced tag 15, excluded in GCR_EL1");
    let n = distinct.iter().filter(|&&d| d).count();
    ensure!(n >= 12, "1000 IRGs gave only {n} distinct tags: {distinct:?}");
    Ok(())
}
kernel_test!(mte_hw, irg_respects_gcr_exclude);

/// The tag `n` steps after `tag`, skipping excluded tags (the Arm ARM's
/// ChooseNonExcludedTag as used by ADDG), written independently of ADDG.
fn next_tag(mut tag: u8, n: u8, exclude: u16) -> u8 {
    for _ in 0..n {
        loop {
            tag = (tag + 1) % 16;
            if exclude & (1 << tag) == 0 {
                break;
            }
        }
    }
    tag
}

fn addg_and_gmi() -> TestResult {
    let a = 0xFFFF_0000_2000_0000usize;
    let ex = 1u16 << 0xF;
    let p = mte::addg::<32, 2>(with_tag(a, 3));
    ensure_eq!(p, with_tag(a + 32, next_tag(3, 2, ex)), "ADDG #32, #2 from tag 3");
    let p = mte::addg::<16, 13>(with_tag(a, 3));
    ensure_eq!(mte::ptr_tag(p), next_tag(3, 13, ex), "ADDG tag offset 13 from tag 3, skipping the excluded 0xF");
    ensure_eq!(mte::ptr_tag(p), 1, "ADDG wrap-around skipping 0xF");
    ensure_eq!(mte::gmi(with_tag(a, 6), 0b1), 0b100_0001, "GMI adds the pointer's tag to the mask");
    Ok(())
}
kernel_test!(mte_hw, addg_and_gmi);

fn ldgm_stgm_roundtrip() -> TestResult {
    let bs = mte::gm_block_size();
    ensure!(bs.is_power_of_two() && (16..=256).contains(&bs), "GMID_EL1.BS gives an LDGM block of {bs} bytes");
    let mut f = frame()?;
    let p = f.page_mut();
    for (i, b) in p.0.iter_mut().enumerate() {
        *b = (i * 31 + 7) as u8;
    }
    let tag = |g: usize| ((g * 5 + 1) % 16) as u8;
    for g in 0..GRANULES {
        p.stg(g, tag(g));
    }
    let saved = p.save_tags();
    ensure_eq!(saved, p.tags_ldg(), "LDGM ({bs}-byte blocks) vs LDG granule by granule");
    for g in 0..GRANULES {
        ensure_eq!((saved[g / 2] >> (4 * (g % 2))) & 0xF, tag(g), "saved tag of granule {g}");
    }
    p.set_all_tags(0);
    ensure!(p.tags_ldg().iter().all(|&b| b == 0), "tags not cleared before the restore");
    p.restore_tags(&saved);
    ensure_eq!(p.tags_ldg(), saved, "tags after the STGM restore");
    for (i, &b) in p.0.iter().enumerate() {
        ensure_eq!(b, (i * 31 + 7) as u8, "data byte {i} after tag save/restore (tag ops must not touch data)");
    }
    Ok(())
}
kernel_test!(mte_hw, ldgm_stgm_roundtrip);

fn stzgm_zeroes_data_and_tags() -> TestResult {
    let mut f = frame()?;
    let p = f.page_mut();
    p.0.fill(0xAA);
    p.set_all_tags(2);
    p.stzgm(5);
    zeroed_with_tag(p, 5, "STZGM")
}

/// Every byte of `p` is zero and every granule carries `tag`.
fn zeroed_with_tag(p: &mte::PageData, tag: u8, op: &str) -> TestResult {
    let bs = mte::zva_block_size();
    ensure!(p.0.iter().all(|&b| b == 0), "{op} ({bs}-byte blocks) left non-zero data");
    for g in 0..GRANULES {
        ensure_eq!(p.ldg(g), tag, "tag of granule {g} after {op} with tag {tag:#x}");
    }
    Ok(())
}
kernel_test!(mte_hw, stzgm_zeroes_data_and_tags);

fn dc_gzva_zeroes_data_and_tags() -> TestResult {
    let mut f = frame()?;
    let p = f.page_mut();
    p.0.fill(0x55);
    p.dc_gzva(0xB);
    zeroed_with_tag(p, 0xB, "DC GZVA")
}
kernel_test!(mte_hw, dc_gzva_zeroes_data_and_tags);

fn st2g_and_stzg() -> TestResult {
    let mut f = frame()?;
    let p = f.page_mut();
    p.0.fill(0x77);
    p.set_all_tags(1);
    p.st2g(4, 0xA);
    let got: [u8; 4] = core::array::from_fn(|i| p.ldg(3 + i));
    ensure_eq!(got, [1, 0xA, 0xA, 1], "tags of granules 3..7 after ST2G at granule 4");
    p.stzg(8, 0xC);
    ensure_eq!(p.ldg(8), 0xC, "tag after STZG");
    ensure!(p.0[128..144].iter().all(|&b| b == 0), "STZG did not zero its granule");
    ensure!(p.0[112..128].iter().chain(&p.0[144..160]).all(|&b| b == 0x77), "STZG zeroed outside its granule");
    Ok(())
}
kernel_test!(mte_hw, st2g_and_stzg);

fn async_mode_records_in_tfsr() -> TestResult {
    let mut f = frame()?;
    f.page_mut().set_all_tags(3);
    let mut s = scratch()?;
    mapped(&mut s, LOW_VA, f.pa(), MemType::TaggedNormal, Perm::KernelRw)?;
    let high = with_tag(f.addr() + 8, 5);
    let low = with_tag(LOW_VA + 16, 5);
    mte::set_tcf(TcfMode::Async);
    mte::clear_async_faults();
    let clean = mte::async_faults();
    let w = trap::probe_write_u64(high, 0x42);
    let after_high = mte::async_faults();
    mte::clear_async_faults();
    let w_low = trap::probe_write_u64(low, 0x43);
    let after_low = mte::async_faults();
    mte::clear_async_faults();
    mte::set_tcf(TcfMode::Sync);
    ensure!(!clean.any(), "TFSR not clear before the test: {clean:?}");
    ensure!(w.is_ok() && w_low.is_ok(), "asynchronous mode raised a synchronous fault: {w:?} {w_low:?}");
    ensure_eq!(
        after_high,
        mte::AsyncFaults { el1_low: false, el1_high: true, el0: false },
        "TFSR_EL1 after a wrong-tag store to a TTBR1 address (TF1 expected)"
    );
    ensure_eq!(
        after_low,
        mte::AsyncFaults { el1_low: true, el1_high: false, el0: false },
        "TFSR_EL1 after a wrong-tag store to a TTBR0 address (TF0 expected)"
    );
    ensure_eq!(
        trap::probe_read_u64(with_tag(f.addr() + 8, 3)),
        Ok(0x42),
        "an asynchronously checked store still completes"
    );
    Ok(())
}
kernel_test!(mte_hw, async_mode_records_in_tfsr);

fn asymmetric_mode() -> TestResult {
    if mte::version() < 3 {
        skip!("ID_AA64PFR1_EL1.MTE = {}: no asymmetric mode (needs MTE3)", mte::version());
    }
    let mut f = frame()?;
    f.page_mut().set_all_tags(3);
    let bad = with_tag(f.addr() + 0x200, 4);
    mte::set_tcf(TcfMode::Asymm);
    mte::clear_async_faults();
    let load = trap::probe_read_u64(bad);
    let after_load = mte::async_faults();
    let store = trap::probe_write_u64(bad, 7);
    let after_store = mte::async_faults();
    mte::clear_async_faults();
    mte::set_tcf(TcfMode::Sync);
    expect_tag_fault(load, bad, false, false, "load in asymmetric mode (synchronous)")?;
    ensure!(!after_load.any(), "the synchronous load fault also set TFSR: {after_load:?}");
    ensure!(store.is_ok(), "store in asymmetric mode faulted synchronously: {store:?}");
    ensure!(after_store.el1_high, "store in asymmetric mode did not set TFSR_EL1.TF1: {after_store:?}");
    Ok(())
}
kernel_test!(mte_hw, asymmetric_mode);

/// A scratch space with the EL0 routines and one user data page (tags 4).
fn el0_setup(f: &mut Frame) -> Result<Scratch, Verdict> {
    f.page_mut().set_all_tags(4);
    let mut s = scratch()?;
    s.map_user_code().map_err(|e| Verdict::Fail(alloc::format!("mapping EL0 code: {e:?}")))?;
    mapped(&mut s, LOW_VA, f.pa(), MemType::TaggedNormal, Perm::UserRw)?;
    Ok(s)
}

fn el0_tag_check_sync() -> TestResult {
    let mut f = frame()?;
    let mut s = el0_setup(&mut f)?;
    let good = with_tag(LOW_VA + 32, 4);
    ensure_eq!(s.el0_store(good, 0xE10), Ok(()), "EL0 store with the matching tag");
    ensure_eq!(s.el0_load(good), Ok(0xE10), "EL0 load with the matching tag");
    let bad = with_tag(LOW_VA + 32, 9);
    expect_tag_fault(s.el0_load(bad), bad, false, true, "EL0 load with tag 9 (TCF0 = sync)")?;
    expect_tag_fault(s.el0_store(bad, 1), bad, true, true, "EL0 store with tag 9")?;
    ensure_eq!(s.el0_load(good), Ok(0xE10), "data after the faulting EL0 store");
    Ok(())
}
kernel_test!(mte_hw, el0_tag_check_sync);

fn el0_tcf0_none_and_async() -> TestResult {
    let mut f = frame()?;
    let mut s = el0_setup(&mut f)?;
    let bad = with_tag(LOW_VA + 64, 11);
    mte::set_tcf0(TcfMode::None);
    let none = s.el0_store(bad, 0x99).and_then(|_| s.el0_load(bad));
    mte::set_tcf0(TcfMode::Async);
    mte::clear_async_faults();
    let a = s.el0_store(bad, 0x98);
    let flags = mte::async_faults();
    mte::clear_async_faults();
    mte::set_tcf0(TcfMode::Sync);
    ensure_eq!(none, Ok(0x99), "wrong-tag EL0 store and load with TCF0 = none");
    ensure_eq!(a, Ok(()), "wrong-tag EL0 store with TCF0 = async (must not fault synchronously)");
    ensure_eq!(
        flags,
        mte::AsyncFaults { el1_low: false, el1_high: false, el0: true },
        "TFSRE0_EL1 after the EL0 store"
    );
    Ok(())
}
kernel_test!(mte_hw, el0_tcf0_none_and_async);

fn tags_stay_with_physical_page() -> TestResult {
    sync_mode();
    let mut a = frame()?;
    let mut b = frame()?;
    a.page_mut().set_all_tags(5);
    a.page_mut().0[..8].copy_from_slice(&0xAu64.to_le_bytes());
    b.page_mut().set_all_tags(0xA);
    b.page_mut().0[..8].copy_from_slice(&0xBu64.to_le_bytes());
    let mut s = scratch()?;
    mapped(&mut s, LOW_VA, a.pa(), MemType::TaggedNormal, Perm::KernelRw)?;
    ensure_eq!(mte::ldg_at(LOW_VA), 5, "tag through the first mapping");
    ensure_eq!(trap::probe_read_u64(with_tag(LOW_VA, 5)), Ok(0xA), "data of frame A");
    s.remap(LOW_VA, Some((b.pa(), MemType::TaggedNormal, Perm::KernelRw)))
        .map_err(|e| Verdict::Fail(alloc::format!("remap: {e:?}")))?;
    ensure_eq!(mte::ldg_at(LOW_VA), 0xA, "tag through the same VA after remapping to frame B");
    let old = with_tag(LOW_VA, 5);
    expect_tag_fault(trap::probe_read_u64(old), old, false, false, "the old pointer tag after the remap")?;
    ensure_eq!(trap::probe_read_u64(with_tag(LOW_VA, 0xA)), Ok(0xB), "data of frame B through its tag");
    ensure_eq!(a.page().ldg(0), 5, "frame A's tag, read through the linear map");
    Ok(())
}
kernel_test!(mte_hw, tags_stay_with_physical_page);
