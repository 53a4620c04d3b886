//! Suite `uffd`: userfaultfd from EL0 (API, registration, missing and
//! write-protect faults resolved by COPY, ZEROPAGE, WRITEPROTECT, WAKE, the
//! mmap_changing rule) and UFFDIO_MOVE with Linux's uAPI, errnos and
//! per-pte outcomes, tags kept through every kind of move, the known-wrong
//! variants caught, and moves racing swap-in, reclaim and each other on
//! real vCPUs.

use super::scenario::*;
use crate::arch::mte::with_tag;
use crate::errno::*;
use crate::harness::{TestResult, Verdict};
use crate::mm::folio::{Folio, Mapping};
use crate::mm::mmap::*;
use crate::mm::pte::*;
use crate::mm::uffd_move::{self, MoveVariant, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES, UFFDIO_MOVE_MODE_DONTWAKE};
use crate::mm::uffd_uapi::*;
use crate::mm::userfaultfd::*;
use crate::mm::{mteswap, swap_state, swapfile};
use crate::task::agent::Signal;
use crate::task::usys::SysResult;
use crate::task::Task;
use crate::testhooks::knobs::KEEP_IN_SWAPCACHE;
use crate::{ensure, ensure_eq, fail, kernel_test};
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

fn tag_of(g: usize) -> u8 {
    ((g * 7 + 3) % 15) as u8 + 1
}

/// A task with `pages` tagged, filled PROT_MTE source pages and an
/// equally large destination registered MISSING with a MOVE-capable uffd.
fn setup(s: &mut Scenario, pages: usize) -> Result<(Arc<Task>, UffdFd, usize, usize), Verdict> {
    let t = s.spawn()?;
    let src = mmap(&t, 0, pages * PAGE, RW | PROT_MTE, ANON, -1)?;
    let dst = mmap(&t, 0, pages * PAGE, RW | PROT_MTE, ANON, -1)?;
    for p in 0..pages {
        tag_page(&t, src + p * PAGE, tag_of)?;
        ok(t.store(with_tag(src + p * PAGE, tag_of(0)), 0x5000 + p as u64), "write")?;
    }
    let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
    u.register(dst, pages * PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    Ok((t, u, src, dst))
}

fn expect_moved_page(t: &Task, at: usize, p: usize, what: &str) -> TestResult {
    ensure_eq!(ok(t.load(with_tag(at, tag_of(0))), what)?, 0x5000 + p as u64, "{what}: data");
    expect_tags(t, at, tag_of, what)
}

fn expect_errno_mv(r: (Result<u64, Errno>, i64), want: Errno, what: &str) -> TestResult {
    ensure!(
        r.0 == Err(want) && r.1 == -(want.0 as i64),
        "{what}: expected {want} with move = -{}, got {:?} move = {}",
        want.0,
        r.0,
        r.1
    );
    Ok(())
}

// --- API and registration -------------------------------------------------------------------

fn api_negotiates_move() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let fd = must(t.userfaultfd(O_NONBLOCK), "userfaultfd")?;
    let arg = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    let u = UffdFd { t: t.clone(), fd, arg };
    expect_errno(u.try_register(0, PAGE, 1), EINVAL, "REGISTER before API")?;
    expect_errno(u.api(0xAB, 0), EINVAL, "API with a wrong version")?;
    expect_errno(u.api(UFFD_API, 1 << 40), EINVAL, "API with an unknown feature")?;
    let (r, api) = ok(u.call(UFFDIO_API, &UffdioApi { api: UFFD_API, features: UFFD_FEATURE_MOVE, ioctls: 0 }), "API")?;
    r.map_err(|e| verdict("API", e))?;
    ensure!(api.features & UFFD_FEATURE_MOVE != 0, "UFFD_FEATURE_MOVE not offered: features {:#x}", api.features);
    ensure_eq!(api.ioctls, (1 << 0x3f) | 3, "ioctls of the descriptor");
    expect_errno(u.api(UFFD_API, 0), EINVAL, "a second API")?;
    expect_errno(t.userfaultfd(0x8), EINVAL, "userfaultfd with unknown flags")?;
    expect_errno(t.ioctl(77, UFFDIO_API, arg), EBADF, "ioctl on a descriptor that is not open")?;
    s.finish()
}
kernel_test!(uffd, api_negotiates_move);

fn register_validates_and_reports_ioctls() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 4 * PAGE, RW, ANON, -1)?;
    let u = UffdFd::new(&t, 0)?;
    let m = UFFDIO_REGISTER_MODE_MISSING;
    expect_errno(u.try_register(a + 1, PAGE, m), EINVAL, "misaligned start")?;
    expect_errno(u.try_register(a, 0, m), EINVAL, "length 0")?;
    expect_errno(u.try_register(a, !0xfff, m), EINVAL, "a length past the user half")?;
    expect_errno(u.try_register(a, PAGE, 0), EINVAL, "mode 0")?;
    expect_errno(u.try_register(a, PAGE, 1 << 5), EINVAL, "an unknown mode")?;
    expect_errno(u.try_register(0x30_0000_0000, PAGE, m), EINVAL, "an unmapped range")?;
    let (fd, _) = s.file(1);
    let f = mmap(&t, 0, PAGE, PROT_READ, MAP_PRIVATE, fd as i64)?;
    expect_errno(u.try_register(f, PAGE, m), EINVAL, "a file mapping")?;
    let reg = UffdioRegister { start: a as u64, len: 2 * PAGE as u64, mode: m, ioctls: 0 };
    let (r, reg) = ok(u.call(UFFDIO_REGISTER, &reg), "REGISTER")?;
    r.map_err(|e| verdict("REGISTER", e))?;
    ensure_eq!(reg.ioctls, 0x7c, "ioctls of the range (WAKE, COPY, ZEROPAGE, MOVE, WRITEPROTECT)");
    let other = UffdFd::new(&t, 0)?;
    expect_errno(other.try_register(a, PAGE, m), EBUSY, "a range another context holds")?;
    ensure_eq!(t.mm().mmap_lock.read().vmas.len(), 6, "VMAs: agent, args x2, registered + rest, file");
    s.finish()
}
kernel_test!(uffd, register_validates_and_reports_ioctls);

fn missing_fault_resolved_by_copy() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 2 * PAGE, RW | PROT_MTE, ANON, -1)?;
    let srcbuf = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    ok(t.fill(srcbuf, PAGE, 21), "fill the source buffer")?;
    let u = UffdFd::new(&t, 0)?;
    u.register(a, 2 * PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    match t.store(a + PAGE + 8, 1) {
        Err(Signal::UffdWait { addr }) => ensure_eq!(addr as usize, a + PAGE + 8, "fault address"),
        other => fail!("a missing fault in a registered range should wait for the handler, got {other:?}"),
    }
    ensure_eq!(u.read()?, Some((UFFD_EVENT_PAGEFAULT, UFFD_PAGEFAULT_FLAG_WRITE, (a + PAGE) as u64)), "the message");
    ensure_eq!(u.read()?, None, "a second message");
    ensure!(u.ctx()?.is_waiting(a + PAGE), "the fault is not waiting");
    let cp = UffdioCopy { dst: (a + PAGE) as u64, src: srcbuf as u64, len: PAGE as u64, mode: 0, copy: 0 };
    let (r, cp) = ok(u.call(UFFDIO_COPY, &cp), "COPY")?;
    r.map_err(|e| verdict("COPY", e))?;
    ensure_eq!(cp.copy, PAGE as i64, "copy result");
    ensure!(!u.ctx()?.is_waiting(a + PAGE), "COPY without DONTWAKE did not wake the waiter");
    ok(t.store(a + PAGE + 8, 1), "the access resumes")?;
    ensure_eq!(
        page_hash(&t, a + PAGE, 0)?,
        fnv_with_word(fill_hash_bytes(21), 8, 1),
        "copied data (and the resumed store)"
    );
    expect_tags(&t, a + PAGE, |_| 0, "UFFDIO_COPY copies data, not tags")?;
    expect_rss(&t, 3, 0, "pages after COPY (the ioctl argument page, the source buffer and the copy)")?;
    s.finish()
}
kernel_test!(uffd, missing_fault_resolved_by_copy);

fn fill_hash_bytes(seed: u64) -> Vec<u8> {
    (0..PAGE).map(|i| crate::task::agent::fill_byte(seed, i)).collect()
}

/// The FNV of `bytes` with the u64 at `off` replaced by `v`.
fn fnv_with_word(mut bytes: Vec<u8>, off: usize, v: u64) -> u64 {
    bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    crate::task::agent::fnv(bytes)
}

fn copy_dontwake_then_wake() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    let srcbuf = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    let u = UffdFd::new(&t, 0)?;
    u.register(a, PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    ensure!(matches!(t.load(a), Err(Signal::UffdWait { .. })), "no userfault");
    must(u.copy(a, srcbuf, PAGE, UFFDIO_COPY_MODE_DONTWAKE), "COPY")?;
    ensure!(u.ctx()?.is_waiting(a), "DONTWAKE woke the waiter");
    let cp = UffdioCopy { dst: a as u64, src: srcbuf as u64, len: PAGE as u64, mode: 0, copy: 0 };
    let (r, cp) = ok(u.call(UFFDIO_COPY, &cp), "COPY")?;
    ensure_eq!(r, Err(EEXIST), "COPY onto a present page");
    ensure_eq!(cp.copy, -17, "copy field after EEXIST");
    must(u.wake(a, PAGE), "WAKE")?;
    ensure!(!u.ctx()?.is_waiting(a), "WAKE did not wake");
    expect_errno(u.wake(a + 5, PAGE), EINVAL, "WAKE of a misaligned range")?;
    expect_errno(u.copy(a, srcbuf, PAGE, 1 << 7), EINVAL, "COPY with an unknown mode")?;
    s.finish()
}
kernel_test!(uffd, copy_dontwake_then_wake);

fn zeropage_resolves_a_missing_fault() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 2 * PAGE, RW, ANON, -1)?;
    let u = UffdFd::new(&t, 0)?;
    u.register(a, 2 * PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    ensure!(matches!(t.load(a), Err(Signal::UffdWait { .. })), "no userfault");
    let zp = UffdioZeropage { start: a as u64, len: 2 * PAGE as u64, mode: 0, zeropage: 0 };
    let (r, zp) = ok(u.call(UFFDIO_ZEROPAGE, &zp), "ZEROPAGE")?;
    r.map_err(|e| verdict("ZEROPAGE", e))?;
    ensure_eq!(zp.zeropage, 2 * PAGE as i64, "zeropage result");
    ensure_eq!(ok(t.load(a + PAGE), "read")?, 0, "zero page");
    ensure!(crate::mm::fault::is_zero_pfn(pte_pfn(pte_of(&t, a))), "not the zero page");
    expect_errno(u.zeropage(a, PAGE, 0), EEXIST, "ZEROPAGE onto a mapped page")?;
    s.finish()
}
kernel_test!(uffd, zeropage_resolves_a_missing_fault);

fn writeprotect_faults_and_release() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    tag_page(&t, a, tag_of)?;
    let u = UffdFd::new(&t, 0)?;
    expect_errno(
        u.writeprotect(a, PAGE, UFFDIO_WRITEPROTECT_MODE_WP),
        ENOENT,
        "WRITEPROTECT of an unregistered range",
    )?;
    u.register(a, PAGE, UFFDIO_REGISTER_MODE_WP)?;
    must(u.writeprotect(a, PAGE, UFFDIO_WRITEPROTECT_MODE_WP), "WP")?;
    ensure!(pte_uffd_wp(pte_of(&t, a)) && !pte_write(pte_of(&t, a)), "pte not uffd-wp");
    match t.store(with_tag(a, tag_of(0)), 9) {
        Err(Signal::UffdWait { .. }) => {}
        other => fail!("a write to a uffd-wp page should wait, got {other:?}"),
    }
    let m = u.read()?;
    ensure_eq!(
        m,
        Some((UFFD_EVENT_PAGEFAULT, UFFD_PAGEFAULT_FLAG_WRITE | UFFD_PAGEFAULT_FLAG_WP, a as u64)),
        "WP message"
    );
    ensure_eq!(ok(t.load(with_tag(a, tag_of(0))), "read")?, 0, "reads go on");
    expect_errno(
        u.writeprotect(a, PAGE, UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE),
        EINVAL,
        "WP together with DONTWAKE",
    )?;
    must(u.writeprotect(a, PAGE, 0), "un-WP")?;
    ensure!(!u.ctx()?.is_waiting(a), "un-write-protect did not wake");
    ok(t.store(with_tag(a, tag_of(0)), 9), "the write resumes")?;
    expect_tags(&t, a, tag_of, "after write-protect and release")?;
    s.finish()
}
kernel_test!(uffd, writeprotect_faults_and_release);

fn mmap_changing_blocks_move_and_copy_until_event_read() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 2)?;
    let u2 = UffdFd::new(&t, UFFD_FEATURE_MOVE | UFFD_FEATURE_EVENT_REMOVE)?;
    let spare = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    u2.register(spare, PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    let _ = u;
    must(t.madvise(spare, PAGE, MADV_DONTNEED), "madvise")?;
    ensure_eq!(u2.ctx()?.mmap_changing.load(Ordering::Acquire), 1, "mmap_changing after a REMOVE event");
    let _ = dst;
    expect_errno_mv(u2.mv(spare, src, PAGE, 0)?, EAGAIN, "MOVE while mmap_changing")?;
    expect_errno(u2.copy(spare, src, PAGE, 0), EAGAIN, "COPY while mmap_changing")?;
    ensure_eq!(u2.read()?, Some((UFFD_EVENT_REMOVE, spare as u64, (spare + PAGE) as u64)), "the REMOVE event");
    ensure_eq!(u2.ctx()?.mmap_changing.load(Ordering::Acquire), 0, "mmap_changing once the event was read");
    let (r, moved) = u2.mv(spare, src, PAGE, 0)?;
    ensure!(r == Ok(0) && moved == PAGE as i64, "MOVE after the event: {r:?} {moved}");
    expect_moved_page(&t, spare, 0, "moved after mmap_changing cleared")?;
    s.finish()
}
kernel_test!(uffd, mmap_changing_blocks_move_and_copy_until_event_read);

fn fork_event_and_unregistered_child() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    let u = UffdFd::new(&t, UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_MOVE)?;
    u.register(a, PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    let c = s.fork(&t)?;
    ensure!(matches!(u.read()?, Some((UFFD_EVENT_FORK, _, _))), "no FORK event");
    ensure_eq!(ok(c.load(a), "the child's read")?, 0, "the child's range is not registered");
    ensure!(matches!(t.load(a), Err(Signal::UffdWait { .. })), "the parent's range is still registered");
    s.finish()
}
kernel_test!(uffd, fork_event_and_unregistered_child);

fn unregister_stops_userfaults() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    let u = UffdFd::new(&t, 0)?;
    u.register(a, PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    ensure!(matches!(t.load(a), Err(Signal::UffdWait { .. })), "no userfault");
    must(u.unregister(a, PAGE), "UNREGISTER")?;
    ensure!(!u.ctx()?.is_waiting(a), "unregister did not wake");
    ensure_eq!(ok(t.load(a), "read")?, 0, "an unregistered range faults normally");
    must(t.close(u.fd), "close")?;
    expect_errno(t.close(u.fd), EBADF, "a second close")?;
    s.finish()
}
kernel_test!(uffd, unregister_stops_userfaults);

// --- UFFDIO_MOVE validation --------------------------------------------------------------------

fn move_validation_errnos() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 4)?;
    let p = PAGE;
    let cases: [(&str, usize, usize, usize, u64, Errno); 9] = [
        ("misaligned dst", dst + 8, src, p, 0, EINVAL),
        ("misaligned src", dst, src + 8, p, 0, EINVAL),
        ("misaligned len", dst, src, p + 1, 0, EINVAL),
        ("len 0", dst, src, 0, 0, EINVAL),
        ("dst past the user half", 1 << 48, src, p, 0, EINVAL),
        ("a range that wraps", dst, usize::MAX & !0xfff, 2 * p, 0, EINVAL),
        ("an unknown mode bit", dst, src, p, 1 << 2, EINVAL),
        ("dst unmapped", 0x30_0000_0000, src, p, 0, ENOENT),
        ("src unmapped", dst, 0x30_0000_0000, p, 0, ENOENT),
    ];
    for (what, d, sr, len, mode, want) in cases {
        let (r, moved) = u.mv(d, sr, len, mode)?;
        if want == EINVAL {
            // Refused by the ioctl's own checks: `move` is not written.
            ensure!(
                r == Err(want) && moved == 0x5a5a,
                "{what}: expected {want} with move untouched, got {r:?} move = {moved:#x}"
            );
        } else {
            expect_errno_mv((r, moved), want, what)?;
        }
    }
    expect_errno_mv(u.mv(dst, src, 8 * p, 0)?, EINVAL, "src range past its VMA")?;
    expect_errno_mv(u.mv(dst + 3 * p, src, 2 * p, 0)?, EINVAL, "dst range past its VMA")?;
    // Protections that differ: PROT_MTE on one side only.
    let plain = mmap(&t, 0, p, RW, ANON, -1)?;
    ok(t.store(plain, 1), "write")?;
    expect_errno_mv(u.mv(dst, plain, p, 0)?, EINVAL, "src without PROT_MTE into a PROT_MTE dst")?;
    // dst not registered with this context.
    let unreg = mmap(&t, 0, p, RW | PROT_MTE, ANON, -1)?;
    expect_errno_mv(u.mv(unreg, src, p, 0)?, EINVAL, "an unregistered dst")?;
    // Read-only on both sides.
    let ro_src = mmap(&t, 0, p, PROT_READ | PROT_MTE, ANON, -1)?;
    let ro_dst = mmap(&t, 0, p, PROT_READ | PROT_MTE, ANON, -1)?;
    u.register(ro_dst, p, UFFDIO_REGISTER_MODE_MISSING)?;
    expect_errno_mv(u.mv(ro_dst, ro_src, p, 0)?, EINVAL, "a read-only src")?;
    // mlock on one side only.
    let locked = mmap(&t, 0, p, RW | PROT_MTE, ANON | MAP_LOCKED, -1)?;
    expect_errno_mv(u.mv(dst, locked, p, 0)?, EINVAL, "VM_LOCKED differs")?;
    // A file mapping as src.
    let (fd, _) = s.file(1);
    let f = mmap(&t, 0, p, RW, MAP_PRIVATE, fd as i64)?;
    expect_errno_mv(u.mv(dst, f, p, 0)?, EINVAL, "a file-backed src")?;
    // Another task's context.
    let other = s.spawn()?;
    let o = UffdFd::new(&other, UFFD_FEATURE_MOVE)?;
    let oa = mmap(&other, 0, p, RW | PROT_MTE, ANON, -1)?;
    o.register(oa, p, UFFDIO_REGISTER_MODE_MISSING)?;
    let fd2 = o.fd;
    // Not in t's descriptor table: EBADF.
    expect_errno(t.ioctl(fd2, UFFDIO_MOVE, u.arg), EBADF, "another task's descriptor")?;
    // Passed to t (SCM_RIGHTS): it is t's descriptor of another mm's context.
    t.install_fd(fd2 as i32);
    let cross = t.ioctl(fd2, UFFDIO_MOVE, u.arg);
    expect_errno(cross, EINVAL, "a context of another mm")?;
    for i in 0..4 {
        expect_moved_page(&t, src + i * p, i, "src untouched by the refused moves")?;
    }
    s.finish()
}
kernel_test!(uffd, move_validation_errnos);

// --- UFFDIO_MOVE outcomes ---------------------------------------------------------------------

fn move_present_pages_keep_tags_and_frames() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 4)?;
    let pfns: Vec<u64> = (0..4).map(|i| pte_pfn(pte_of(&t, src + i * PAGE))).collect();
    let (r, moved) = u.mv(dst, src, 4 * PAGE, 0)?;
    ensure!(r == Ok(0) && moved == 4 * PAGE as i64, "MOVE of 4 pages: {r:?}, move = {moved}");
    for (i, &pfn) in pfns.iter().enumerate() {
        ensure!(pte_none(pte_of(&t, src + i * PAGE)), "src page {i} still mapped");
        ensure_eq!(pte_pfn(pte_of(&t, dst + i * PAGE)), pfn, "dst page {i} maps the same frame");
        expect_moved_page(&t, dst + i * PAGE, i, "moved page")?;
        let f = Folio::get(pfn);
        let (idx, same_av) = {
            let inner = f.page().inner.lock();
            let av = t.mm().mmap_lock.read().find(dst).and_then(|v| v.anon_vma().cloned());
            (inner.index, matches!(&inner.mapping, Mapping::Anon(a) if av.as_ref().is_some_and(|b| Arc::ptr_eq(a, b))))
        };
        ensure!(same_av, "page {i}: folio's anon_vma is not dst's");
        ensure_eq!(idx, ((dst + i * PAGE) / PAGE) as u64, "page {i}: folio index is dst's linear index");
    }
    ensure!(pte_write(pte_of(&t, dst)), "a moved page is mapped writable");
    expect_rss(&t, 5, 0, "rss (4 moved + the argument page) unchanged by MOVE")?;
    ensure_eq!(ok(t.load(src), "src read")?, 0, "src is empty after the move (a fresh zero page)");
    s.finish()
}
kernel_test!(uffd, move_present_pages_keep_tags_and_frames);

fn move_back_and_forth() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    u.register(src, PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    for round in 0..3 {
        let (r, _) = u.mv(dst, src, PAGE, 0)?;
        r.map_err(|e| verdict("move there", e))?;
        expect_moved_page(&t, dst, 0, &format!("round {round}, at dst"))?;
        let (r, _) = u.mv(src, dst, PAGE, 0)?;
        r.map_err(|e| verdict("move back", e))?;
        expect_moved_page(&t, src, 0, &format!("round {round}, back at src"))?;
    }
    s.finish()
}
kernel_test!(uffd, move_back_and_forth);

fn move_into_occupied_dst_is_eexist() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 2)?;
    must(u.zeropage(dst, PAGE, 0), "ZEROPAGE")?;
    expect_errno_mv(u.mv(dst, src, PAGE, 0)?, EEXIST, "dst maps the zero page")?;
    set_pte(&t, dst + PAGE, make_pte_marker(PTE_MARKER_UFFD_WP))?;
    expect_errno_mv(u.mv(dst + PAGE, src + PAGE, PAGE, 0)?, EEXIST, "a uffd-wp marker in dst")?;
    set_pte(&t, dst + PAGE, pte_t(0))?;
    expect_moved_page(&t, src, 0, "src after the refused move")?;
    s.finish()
}
kernel_test!(uffd, move_into_occupied_dst_is_eexist);

fn move_src_holes() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 4)?;
    must(t.madvise(src + 2 * PAGE, PAGE, MADV_DONTNEED), "madvise")?;
    let (r, moved) = u.mv(dst, src, 4 * PAGE, 0)?;
    ensure!(
        r == Err(EAGAIN) && moved == 2 * PAGE as i64,
        "partial progress: expected EAGAIN with 2 pages, got {r:?} {moved}"
    );
    expect_errno_mv(u.mv(dst + 2 * PAGE, src + 2 * PAGE, 2 * PAGE, 0)?, ENOENT, "the retry from the hole")?;
    let (r, moved) = u.mv(dst + 2 * PAGE, src + 2 * PAGE, 2 * PAGE, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES)?;
    ensure!(r == Ok(0) && moved == 2 * PAGE as i64, "with ALLOW_SRC_HOLES the hole counts as moved: {r:?} {moved}");
    ensure!(pte_none(pte_of(&t, dst + 2 * PAGE)), "a hole moved something");
    expect_moved_page(&t, dst + 3 * PAGE, 3, "page after the hole")?;
    let fresh = mmap(&t, 0x30_0000_0000, PAGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?;
    let (r, moved) = u.mv(dst + 2 * PAGE, fresh, PAGE, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES)?;
    ensure!(r == Ok(0) && moved == PAGE as i64, "a src with no page table at all is a hole too: {r:?} {moved}");
    s.finish()
}
kernel_test!(uffd, move_src_holes);

fn move_of_shared_page_is_ebusy() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    let _c = s.fork(&t)?;
    expect_errno_mv(u.mv(dst, src, PAGE, 0)?, EBUSY, "a page shared with a child (not AnonExclusive)")?;
    expect_moved_page(&t, src, 0, "src after EBUSY")?;
    s.finish()
}
kernel_test!(uffd, move_of_shared_page_is_ebusy);

fn move_zero_page() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, _, dst) = setup(&mut s, 1)?;
    let z = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    ok(t.load(z), "read: maps the zero page")?;
    let (r, moved) = u.mv(dst, z, PAGE, 0)?;
    ensure!(r == Ok(0) && moved == PAGE as i64, "zero-page move: {r:?} {moved}");
    ensure!(
        crate::mm::fault::is_zero_pfn(pte_pfn(pte_of(&t, dst))) && pte_special(pte_of(&t, dst)),
        "dst is not the zero page"
    );
    ensure!(pte_none(pte_of(&t, z)), "src still maps the zero page");
    s.finish()
}
kernel_test!(uffd, move_zero_page);

fn move_of_pinned_page_is_ebusy_and_changes_nothing() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    let pfn = pte_pfn(pte_of(&t, src));
    let f = Folio::get(pfn);
    let (av0, idx0) = {
        let i = f.page().inner.lock();
        (
            match &i.mapping {
                Mapping::Anon(a) => a.id,
                _ => 0,
            },
            i.index,
        )
    };
    f.pin();
    drop(f); // only the pin and the pte hold it now
    let r = u.mv(dst, src, PAGE, 0)?;
    let check = crate::mm::invariants::check();
    let f = Folio::get(pfn);
    let (av1, idx1) = {
        let i = f.page().inner.lock();
        (
            match &i.mapping {
                Mapping::Anon(a) => a.id,
                _ => 0,
            },
            i.index,
        )
    };
    f.unpin();
    drop(f);
    expect_errno_mv(r, EBUSY, "a DMA-pinned page")?;
    ensure_eq!((av1, idx1), (av0, idx0), "the pinned folio's anon_vma and index");
    check.map_err(|e| Verdict::Fail(format!("while pinned: {e}")))?;
    ensure_eq!(pte_pfn(pte_of(&t, src)), pfn, "src pte after EBUSY");
    s.finish()
}
kernel_test!(uffd, move_of_pinned_page_is_ebusy_and_changes_nothing);

fn move_splits_a_large_folio() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let big = super::mm::thp_mapping(&t)?;
    ok(t.store(big, 0), "fault in the huge folio")?;
    for p in [3usize, 4] {
        tag_page(&t, big + p * PAGE, tag_of)?;
        ok(t.store(with_tag(big + p * PAGE, tag_of(0)), 0x5000 + p as u64), "write")?;
    }
    let head = pte_pfn(pte_of(&t, big));
    let dst = mmap(&t, 0, 2 * PAGE, RW | PROT_MTE, ANON, -1)?;
    let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
    u.register(dst, 2 * PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    let (r, moved) = u.mv(dst, big + 3 * PAGE, 2 * PAGE, 0)?;
    ensure!(r == Ok(0) && moved == 2 * PAGE as i64, "move out of a huge folio: {r:?} {moved}");
    ensure_eq!(pte_pfn(pte_of(&t, dst)), head + 3, "the moved page is the huge folio's page 3");
    expect_moved_page(&t, dst, 3, "page 3 moved out of a huge folio")?;
    expect_moved_page(&t, dst + PAGE, 4, "page 4 moved out of a huge folio")?;
    ensure_eq!(Folio::get(head + 100).nr_pages(), 1, "the huge folio was split");
    ensure_eq!(ok(t.load(big + 100 * PAGE), "read")?, 0, "the rest of the split folio is still mapped");
    s.finish()
}
kernel_test!(uffd, move_splits_a_large_folio);

fn move_of_poison_and_markers_is_efault() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 2)?;
    must(t.madvise(src, 2 * PAGE, MADV_DONTNEED), "madvise")?;
    set_pte(&t, src, swp_entry_to_pte(make_hwpoison_entry(0x1234)))?;
    set_pte(&t, src + PAGE, make_pte_marker(PTE_MARKER_UFFD_WP))?;
    expect_errno_mv(u.mv(dst, src, PAGE, 0)?, EFAULT, "a hwpoison entry")?;
    expect_errno_mv(u.mv(dst + PAGE, src + PAGE, PAGE, 0)?, EFAULT, "a uffd-wp marker")?;
    set_pte(&t, src, pte_t(0))?;
    set_pte(&t, src + PAGE, pte_t(0))?;
    s.finish()
}
kernel_test!(uffd, move_of_poison_and_markers_is_efault);

fn move_waits_for_a_migration_entry() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    let orig = pte_of(&t, src);
    set_pte(&t, src, swp_entry_to_pte(make_migration_entry(pte_pfn(orig), true, true)))?;
    let job = u.start_move(1, 0, dst, src, PAGE)?;
    let until = crate::arch::cpu::counter() + crate::arch::cpu::counter_freq() / 50;
    while crate::arch::cpu::counter() < until {
        core::hint::spin_loop();
    }
    ensure!(!job.finished(), "MOVE did not wait for the migration entry");
    set_pte(&t, src, orig)?; // the migration finishes
    crate::arch::cpu::sev();
    move_done(job, PAGE, "MOVE after the migration")?;
    expect_moved_page(&t, dst, 0, "moved after waiting")?;
    s.finish()
}
kernel_test!(uffd, move_waits_for_a_migration_entry, cpus = 2);

// --- swap entries ---------------------------------------------------------------------------------

fn pageout(t: &Task, a: usize, len: usize) -> TestResult {
    must(t.madvise(a, len, MADV_PAGEOUT), "MADV_PAGEOUT")?;
    ensure!(is_swap_pte(pte_of(t, a)), "not swapped out");
    Ok(())
}

fn move_swap_pte_verbatim_keeps_stored_tags() -> TestResult {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 2)?;
    pageout(&t, src, 2 * PAGE)?;
    let before = pte_of(&t, src);
    let entries = mteswap::stats().entries;
    let (r, moved) = u.mv(dst, src, 2 * PAGE, 0)?;
    ensure!(r == Ok(0) && moved == 2 * PAGE as i64, "swap-pte move: {r:?} {moved}");
    ensure_eq!(pte_of(&t, dst), before, "the swap pte moved verbatim");
    ensure!(pte_none(pte_of(&t, src)), "src still holds the swap pte");
    ensure_eq!(mteswap::stats().entries, entries, "tag-storage entries (neither leaked nor duplicated)");
    ensure_eq!(swapfile::swap_map(pte_to_swp_entry(before)), 1, "swap_map of the moved entry");
    ensure_eq!(t.mm().rss(crate::mm::mm_types::MM_SWAPENTS), 2, "MM_SWAPENTS unchanged");
    expect_moved_page(&t, dst, 0, "a moved swap entry faulted in at dst")?;
    expect_moved_page(&t, dst + PAGE, 1, "the second one")?;
    drop(u);
    s.finish()
}
kernel_test!(uffd, move_swap_pte_verbatim_keeps_stored_tags, ramdisk);

fn move_of_shared_swap_entry_is_ebusy() -> TestResult {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    let _c = s.fork(&t)?;
    pageout(&t, src, PAGE)?;
    expect_errno_mv(u.mv(dst, src, PAGE, 0)?, EBUSY, "a swap pte that is not exclusive")?;
    expect_moved_page(&t, src, 0, "src after EBUSY")?;
    s.finish()
}
kernel_test!(uffd, move_of_shared_swap_entry_is_ebusy, ramdisk);

fn move_retargets_a_swapcache_folio() -> TestResult {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    let _keep = KEEP_IN_SWAPCACHE.set(1);
    pageout(&t, src, PAGE)?;
    let entry = pte_to_swp_entry(pte_of(&t, src));
    let (r, _) = u.mv(dst, src, PAGE, 0)?;
    r.map_err(|e| verdict("MOVE", e))?;
    let f = swap_state::lookup(entry).ok_or_else(|| verdict("swap cache", "empty"))?;
    let idx = f.page().inner.lock().index;
    drop(f);
    ensure_eq!(idx, (dst / PAGE) as u64, "the swap-cache folio's index follows the move");
    expect_moved_page(&t, dst, 0, "the swap-cache folio faulted in at dst")?;
    s.finish()
}
kernel_test!(uffd, move_retargets_a_swapcache_folio, ramdisk);

/// Runs a move under a wrong variant; returns what the later fault at dst
/// gave.
fn swapcache_move_with(v: MoveVariant) -> Result<Result<u64, Signal>, Verdict> {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    let _keep = KEEP_IN_SWAPCACHE.set(1);
    pageout(&t, src, PAGE)?;
    let wrong = v.variant().map(|v| v.enable());
    let (r, _) = u.mv(dst, src, PAGE, 0)?;
    drop(wrong);
    r.map_err(|e| verdict("MOVE", e))?;
    let later = t.load(with_tag(dst, tag_of(0)));
    // Clean up what the wrong variant left behind before the checker runs.
    drop(s);
    Ok(later)
}

fn swapcache_move_without_retarget_is_caught() -> TestResult {
    match swapcache_move_with(MoveVariant::SwapCacheNoRetarget)? {
        Err(Signal::Bus { .. }) => Ok(()),
        other => fail!("the later fault at dst should have tripped the rmap check (SIGBUS), got {other:?}"),
    }
}
kernel_test!(uffd, swapcache_move_without_retarget_is_caught, ramdisk);

fn swap_move_without_exclusive_check_is_caught() -> TestResult {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    let c = s.fork(&t)?;
    pageout(&t, src, PAGE)?;
    let wrong = MoveVariant::SwapNoExclusiveCheck.variant().map(|v| v.enable());
    let (r, _) = u.mv(dst, src, PAGE, 0)?;
    drop(wrong);
    r.map_err(|e| verdict("the wrong MOVE", e))?;
    expect_moved_page(&c, src, 0, "the child swaps the shared page in")?;
    match t.load(with_tag(dst, tag_of(0))) {
        Err(Signal::Bus { .. }) => Ok(()),
        other => {
            fail!("the parent's fault at dst should trip the rmap check on the shared swap-cache folio, got {other:?}")
        }
    }
}
kernel_test!(uffd, swap_move_without_exclusive_check_is_caught, ramdisk);

fn rmap_change_before_pin_check_is_caught() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    let f = Folio::get(pte_pfn(pte_of(&t, src)));
    f.pin();
    let wrong = MoveVariant::RmapBeforePinCheck.variant().map(|v| v.enable());
    let r = u.mv(dst, src, PAGE, 0)?;
    drop(wrong);
    let check = crate::mm::invariants::check();
    // Put the folio back where its pte is, so the scenario can end cleanly.
    {
        let av = t.mm().mmap_lock.read().find(src).and_then(|v| v.anon_vma().cloned());
        let mut i = f.page().inner.lock();
        if let Some(av) = av {
            i.mapping = Mapping::Anon(av);
        }
        i.index = (src / PAGE) as u64;
    }
    f.unpin();
    drop(f);
    expect_errno_mv(r, EBUSY, "the pinned page is still refused")?;
    match check {
        Err(e) => ensure!(e.contains("rmap walk finds 0 ptes"), "caught, but as: {e}"),
        Ok(()) => fail!("an anon mapping changed before the pin check went unnoticed"),
    }
    s.finish()
}
kernel_test!(uffd, rmap_change_before_pin_check_is_caught);

fn notifier_is_called_blocking_before_any_lock() -> TestResult {
    let mut s = Scenario::new();
    let (_t, u, src, dst) = setup(&mut s, 2)?;
    let observing = uffd_move::observe();
    let r = u.mv(dst, src, 2 * PAGE, 0)?;
    let calls = uffd_move::observed();
    drop(observing);
    ensure!(r.0 == Ok(0), "MOVE: {r:?}");
    let starts: Vec<_> = calls.iter().filter(|c| c.is_start).collect();
    ensure_eq!(starts.len(), 2, "invalidate_range_start calls (one per page)");
    ensure_eq!(calls.iter().filter(|c| !c.is_start).count(), 2, "invalidate_range_end calls");
    for c in &calls {
        ensure!(
            c.blocking && c.ptl_held == 0,
            "notifier call {c:?}: must be the blocking one with no page-table lock held"
        );
    }
    ensure_eq!(starts[0].start, src, "first range start");
    s.finish()
}
kernel_test!(uffd, notifier_is_called_blocking_before_any_lock);

fn notifier_under_ptl_is_caught() -> TestResult {
    let mut s = Scenario::new();
    let (_t, u, src, dst) = setup(&mut s, 1)?;
    let observing = uffd_move::observe();
    let wrong = MoveVariant::NotifierUnderPtl.variant().map(|v| v.enable());
    let r = u.mv(dst, src, PAGE, 0)?;
    drop(wrong);
    let calls = uffd_move::observed();
    drop(observing);
    ensure!(r.0 == Ok(0), "MOVE: {r:?}");
    ensure!(
        calls.iter().any(|c| c.is_start && (!c.blocking || c.ptl_held > 0)),
        "the observer did not see the non-blocking call under the page-table lock: {calls:?}"
    );
    s.finish()
}
kernel_test!(uffd, notifier_under_ptl_is_caught);

fn copy_gives_zero_tags_move_keeps_them() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 2)?;
    // The source's granules carry different tags, so the kernel's
    // tag-checked read of it (as Linux's copy_from_user) needs TCF0 off.
    use crate::task::prctl::{DEFAULT_CTRL, PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE};
    let checked = returned(u.copy(dst, src, PAGE, 0), "UFFDIO_COPY")?;
    ensure_eq!(checked, Err(EFAULT), "COPY from a tagged page through an untagged pointer, sync checks");
    let prctl = |ctrl: u64| t.prctl(PR_SET_TAGGED_ADDR_CTRL, ctrl, 0, 0, 0);
    prctl(PR_TAGGED_ADDR_ENABLE)?.map_err(|e| verdict("prctl", e))?;
    let r = returned(u.copy(dst, src, PAGE, 0), "UFFDIO_COPY")?;
    prctl(DEFAULT_CTRL)?.map_err(|e| verdict("prctl", e))?;
    r.map_err(|e| verdict("COPY with TCF0 none", e))?;
    expect_tags(&t, dst, |_| 0, "COPY (data only)")?;
    let (r, _) = u.mv(dst + PAGE, src + PAGE, PAGE, 0)?;
    r.map_err(|e| verdict("MOVE", e))?;
    expect_moved_page(&t, dst + PAGE, 1, "MOVE (the page itself)")?;
    s.finish()
}
kernel_test!(uffd, copy_gives_zero_tags_move_keeps_them);

fn dontwake_leaves_the_waiter_asleep() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    ensure!(matches!(t.load(dst), Err(Signal::UffdWait { .. })), "no userfault at dst");
    let (r, _) = u.mv(dst, src, PAGE, UFFDIO_MOVE_MODE_DONTWAKE)?;
    r.map_err(|e| verdict("MOVE", e))?;
    ensure!(u.ctx()?.is_waiting(dst), "DONTWAKE woke the waiter");
    must(u.wake(dst, PAGE), "WAKE")?;
    ensure!(!u.ctx()?.is_waiting(dst), "WAKE");
    expect_moved_page(&t, dst, 0, "the waiter's page")?;
    s.finish()
}
kernel_test!(uffd, dontwake_leaves_the_waiter_asleep);

// --- races on real vCPUs ---------------------------------------------------------------------

fn opposite_moves_through_the_same_tables_do_not_deadlock() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let n = 16;
    let x = mmap(&t, 0x40_0000_0000, 2 * n * PAGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?;
    let y = mmap(&t, 0x40_0040_0000, 2 * n * PAGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?;
    for p in 0..n {
        tag_page(&t, x + p * PAGE, tag_of)?;
        ok(t.store(with_tag(x + p * PAGE, tag_of(0)), 0x5000 + p as u64), "write")?;
        tag_page(&t, y + (n + p) * PAGE, tag_of)?;
        ok(t.store(with_tag(y + (n + p) * PAGE, tag_of(0)), 0x5000 + p as u64), "write")?;
    }
    let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
    u.register(x, 2 * n * PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    u.register(y, 2 * n * PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    // CPU 1 moves x[0..n] up to y[0..n] page by page while CPU 0 moves
    // y[n..2n] down to x[n..2n]: both take the x and y pte locks each step.
    let u1 = u.slot(1);
    let job = on_cpu(1, "CPU 1's moves", move || {
        (0..n).map(|p| u1.mv(y + p * PAGE, x + p * PAGE, PAGE, 0)).collect::<Vec<_>>()
    })?;
    for p in 0..n {
        let (r, _) = u.mv(x + (n + p) * PAGE, y + (n + p) * PAGE, PAGE, 0)?;
        r.map_err(|e| verdict("CPU 0's move", e))?;
    }
    for (i, r) in job.join()?.into_iter().enumerate() {
        ensure_eq!(r?, (Ok(0), PAGE as i64), "CPU 1's move {i}");
    }
    for p in 0..n {
        expect_moved_page(&t, y + p * PAGE, p, "moved up by CPU 1")?;
        expect_moved_page(&t, x + (n + p) * PAGE, p, "moved down by CPU 0")?;
    }
    s.finish()
}
kernel_test!(uffd, opposite_moves_through_the_same_tables_do_not_deadlock, cpus = 2);

fn move_races_a_swapin_of_the_same_entry() -> TestResult {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    pageout(&t, src, PAGE)?;
    // CPU 1 faults at src and stops with the entry's folio in the swap cache.
    let bp = crate::testhooks::schedpoint::arm(&crate::testhooks::points::DO_SWAP_PAGE_AFTER_SWAPCACHE_LOOKUP);
    let tt = t.clone();
    let job = on_cpu(1, "CPU 1's fault", move || tt.load(src))?;
    bp.wait_reached(5_000_000).map_err(|e| verdict("CPU 1", e))?;
    let (r, moved) = u.mv(dst, src, PAGE, 0)?;
    bp.release();
    let b = job.join()?;
    ensure!(r == Ok(0) && moved == PAGE as i64, "MOVE during the swap-in: {r:?} {moved}");
    ensure_eq!(ok(b, "CPU 1's fault")?, 0, "the fault at src finds src empty");
    expect_moved_page(&t, dst, 0, "the moved entry faulted in at dst")?;
    s.finish()
}
kernel_test!(uffd, move_races_a_swapin_of_the_same_entry, cpus = 2, ramdisk);

fn move_races_reclaim() -> TestResult {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    // CPU 1's move stops holding the folio lock; reclaim on CPU 0 must
    // leave the locked folio alone.
    let bp = crate::testhooks::schedpoint::arm(&crate::testhooks::points::MOVE_PAGES_PTE_AFTER_FOLIO_LOCK);
    let job = u.start_move(1, 0, dst, src, PAGE)?;
    bp.wait_reached(5_000_000).map_err(|e| verdict("CPU 1", e))?;
    let st = do_madvise(&t.mm(), src as u64, PAGE as u64, MADV_PAGEOUT).map_err(|e| verdict("MADV_PAGEOUT", e))?;
    bp.release();
    let r = move_done(job, PAGE, "the move");
    ensure_eq!(st.skipped, 1, "reclaim skips the folio the move holds locked ({st:?})");
    r?;
    expect_moved_page(&t, dst, 0, "moved while reclaim ran")?;
    pageout(&t, dst, PAGE)?;
    expect_moved_page(&t, dst, 0, "swapped out and in after the move")?;
    s.finish()
}
kernel_test!(uffd, move_races_reclaim, cpus = 2, ramdisk);

fn moves_never_leak_or_duplicate_tag_entries() -> TestResult {
    let swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 4)?;
    pageout(&t, src, 4 * PAGE)?;
    ensure_eq!(mteswap::stats().entries, 4, "entries after swap-out");
    for i in 0..4 {
        u.mv(dst + i * PAGE, src + i * PAGE, PAGE, 0)?.0.map_err(|e| verdict("MOVE", e))?;
    }
    ensure_eq!(mteswap::stats().entries, 4, "entries after moving the swap ptes");
    must(t.munmap(dst + 3 * PAGE, PAGE), "munmap")?;
    ensure_eq!(mteswap::stats().entries, 3, "entries after unmapping one moved entry");
    crate::mm::swap::swapoff(0).map_err(|e| verdict("swapoff", e))?;
    ensure_eq!(mteswap::stats().entries, 0, "entries after swapoff");
    for i in 0..3 {
        expect_moved_page(&t, dst + i * PAGE, i, "brought back by swapoff at dst")?;
    }
    drop(swap);
    s.finish()
}
kernel_test!(uffd, moves_never_leak_or_duplicate_tag_entries, ramdisk);

// --- bits after a move ------------------------------------------------------------------------

fn moved_present_pte_is_writable_without_uffd_wp() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    set_pte(&t, src, pte_mkuffd_wp(pte_of(&t, src)))?;
    u.mv(dst, src, PAGE, 0)?.0.map_err(|e| verdict("MOVE", e))?;
    let pte = pte_of(&t, dst);
    ensure!(!pte_uffd_wp(pte) && pte_write(pte), "moved pte: uffd-wp {} write {}", pte_uffd_wp(pte), pte_write(pte));
    ok(t.store(with_tag(dst, tag_of(0)), 0x5000), "write to the moved page")?;
    s.finish()
}
kernel_test!(uffd, moved_present_pte_is_writable_without_uffd_wp);

fn moved_pte_is_dirty_only_if_src_was() -> TestResult {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 2)?;
    pageout(&t, src, PAGE)?;
    expect_moved_page(&t, src, 0, "swapped in by a read: a clean pte")?;
    ensure!(!pte_dirty(pte_of(&t, src)), "a read swap-in left the pte dirty");
    u.mv(dst, src, 2 * PAGE, 0)?.0.map_err(|e| verdict("MOVE", e))?;
    ensure!(!pte_dirty(pte_of(&t, dst)), "a clean src pte arrived dirty");
    ensure!(pte_dirty(pte_of(&t, dst + PAGE)), "a dirty src pte arrived clean");
    s.finish()
}
kernel_test!(uffd, moved_pte_is_dirty_only_if_src_was, ramdisk);

fn moved_swap_pte_keeps_its_uffd_wp_bit() -> TestResult {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    pageout(&t, src, PAGE)?;
    set_pte(&t, src, pte_swp_mkuffd_wp(pte_of(&t, src)))?;
    u.mv(dst, src, PAGE, 0)?.0.map_err(|e| verdict("MOVE", e))?;
    let pte = pte_of(&t, dst);
    ensure!(pte_swp_uffd_wp(pte) && pte_swp_exclusive(pte), "moved swap pte lost a bit: {pte:?}");
    expect_moved_page(&t, dst, 0, "faulted in after the move")?;
    ensure!(pte_uffd_wp(pte_of(&t, dst)), "the uffd-wp bit did not come back with the page");
    s.finish()
}
kernel_test!(uffd, moved_swap_pte_keeps_its_uffd_wp_bit, ramdisk);

// --- THPs at PMD level -------------------------------------------------------------------------

fn aligned_thp_moves_as_one_pmd() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let src = super::mm::thp_mapping(&t)?;
    ok(t.store(src, 0), "fault in the huge folio")?;
    for p in [0usize, 300, 511] {
        tag_page(&t, src + p * PAGE, tag_of)?;
        ok(t.store(with_tag(src + p * PAGE, tag_of(0)), 0x5000 + p as u64), "write")?;
    }
    let head = pte_pfn(pte_of(&t, src));
    let table = t.mm().pgtables.table_of(src);
    let dst = 0x60_0000_0000usize;
    ensure_eq!(mmap(&t, dst, 2 << 20, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, dst, "dst");
    let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
    u.register(dst, 2 << 20, UFFDIO_REGISTER_MODE_MISSING)?;
    let observing = uffd_move::observe();
    let (r, moved) = u.mv(dst, src, 2 << 20, 0)?;
    let calls = uffd_move::observed();
    drop(observing);
    ensure!(r == Ok(0) && moved == 2 << 20, "PMD move: {r:?} {moved}");
    ensure_eq!(t.mm().pgtables.table_of(dst), table, "dst's pmd points at the table that mapped src");
    ensure_eq!(t.mm().pgtables.table_of(src), None, "src's pmd is empty");
    ensure_eq!(calls.iter().filter(|c| c.is_start).count(), 1, "one notifier range for the whole PMD");
    let f = Folio::get(head);
    ensure_eq!(f.nr_pages(), 512, "the THP was not split");
    ensure_eq!(f.page().inner.lock().index, (dst / PAGE) as u64, "folio index follows the move");
    drop(f);
    for p in [0usize, 300, 511] {
        ensure_eq!(pte_pfn(pte_of(&t, dst + p * PAGE)), head + p as u64, "page {p} is the same frame");
        expect_moved_page(&t, dst + p * PAGE, p, "a page of the moved THP")?;
    }
    expect_rss(&t, 513, 0, "rss (the THP and the argument page)")?;
    s.finish()
}
kernel_test!(uffd, aligned_thp_moves_as_one_pmd);

fn shared_thp_pmd_move_is_ebusy_without_split() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let src = super::mm::thp_mapping(&t)?;
    ok(t.store(src, 7), "fault in the huge folio")?;
    let _c = s.fork(&t)?;
    let dst = 0x60_0000_0000usize;
    mmap(&t, dst, 2 << 20, RW | PROT_MTE, ANON | MAP_FIXED, -1)?;
    let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
    u.register(dst, 2 << 20, UFFDIO_REGISTER_MODE_MISSING)?;
    expect_errno_mv(u.mv(dst, src, 2 << 20, 0)?, EBUSY, "a THP shared with a child")?;
    ensure_eq!(Folio::get(pte_pfn(pte_of(&t, src))).nr_pages(), 512, "the shared THP was split");
    s.finish()
}
kernel_test!(uffd, shared_thp_pmd_move_is_ebusy_without_split);

fn bad_argument_pointer_is_efault() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, _, _) = setup(&mut s, 1)?;
    expect_errno(t.ioctl(u.fd, UFFDIO_MOVE, 0x7000_0000_0000), EFAULT, "MOVE with an unmapped argument")?;
    expect_errno(t.read(u.fd, 0x7000_0000_0000, 32), EAGAIN, "read with nothing queued")?;
    ensure!(t.load(u.arg).is_ok(), "the task goes on");
    s.finish()
}
kernel_test!(uffd, bad_argument_pointer_is_efault);

fn a_handler_task_resolves_another_tasks_fault() -> TestResult {
    let mut s = Scenario::new();
    let f = s.spawn()?;
    let a = mmap(&f, 0, PAGE, RW, ANON, -1)?;
    let u = UffdFd::new(&f, 0)?;
    u.register(a, PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    // The handler is another process holding the same descriptor (passed
    // to it as over a unix socket, SCM_RIGHTS).
    let h = s.spawn()?;
    h.install_fd(u.fd as i32);
    let hbuf = mmap(&h, 0, PAGE, RW, ANON, -1)?;
    let hsrc = mmap(&h, 0, PAGE, RW, ANON, -1)?;
    ok(h.fill(hsrc, PAGE, 99), "handler's source page")?;
    let handler = UffdFd { t: h.clone(), fd: u.fd, arg: hbuf };
    ensure!(matches!(f.load(a + 16), Err(Signal::UffdWait { .. })), "no userfault");
    ensure_eq!(handler.read()?, Some((UFFD_EVENT_PAGEFAULT, 0, a as u64)), "the handler reads the fault");
    must(handler.copy(a, hsrc, PAGE, 0), "handler's COPY")?;
    ensure!(!u.ctx()?.is_waiting(a), "the faulting task was not woken");
    ensure_eq!(page_hash(&f, a, 0)?, fill_hash(99), "the faulting task sees the handler's data");
    expect_rss(&h, 2, 0, "the handler's own pages (its argument page and its source page) stay its own")?;
    s.finish()
}
kernel_test!(uffd, a_handler_task_resolves_another_tasks_fault);

// --- hardening: mmap_min_addr, a real swap pte at dst ------------------------------------------

/// Linux's validate_range refuses ranges starting below mmap_min_addr with
/// EINVAL before looking for a VMA, in every userfaultfd ioctl; MOVE leaves
/// `move` unwritten. A page really mapped there (MAP_FIXED) must not make
/// any of them succeed.
fn ranges_below_mmap_min_addr_are_einval() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    let low = 0x4000usize;
    ensure_eq!(mmap(&t, low, PAGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, low, "MAP_FIXED below mmap_min_addr");
    for at in [0usize, low] {
        let cases: [(&str, SysResult<u64>); 6] = [
            ("REGISTER", u.try_register(at, PAGE, UFFDIO_REGISTER_MODE_MISSING)),
            ("UNREGISTER", u.unregister(at, PAGE)),
            ("WAKE", u.wake(at, PAGE)),
            ("COPY", u.copy(at, src, PAGE, 0)),
            ("ZEROPAGE", u.zeropage(at, PAGE, 0)),
            ("WRITEPROTECT", u.writeprotect(at, PAGE, UFFDIO_WRITEPROTECT_MODE_WP)),
        ];
        for (what, r) in cases {
            expect_errno(r, EINVAL, &format!("{what} at {at:#x}"))?;
        }
        for (what, d, sr) in [("dst", at, src), ("src", dst, at)] {
            let (r, moved) = u.mv(d, sr, PAGE, 0)?;
            ensure!(
                r == Err(EINVAL) && moved == 0x5a5a,
                "MOVE with {what} at {at:#x}: expected EINVAL with move untouched, got {r:?} move = {moved:#x}"
            );
        }
    }
    expect_moved_page(&t, src, 0, "src after the refused calls")?;
    s.finish()
}
kernel_test!(uffd, ranges_below_mmap_min_addr_are_einval);

/// A dst page that was itself swapped out holds a real swap pte: MOVE onto
/// it is EEXIST and neither pte changes (nor the entry's count or tags).
fn move_onto_a_swapped_out_dst_is_eexist() -> TestResult {
    let _swap = SwapOn::new()?;
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 1)?;
    must(u.unregister(dst, PAGE), "UNREGISTER")?;
    tag_page(&t, dst, |g| tag_of(g + 1))?;
    ok(t.store(with_tag(dst, tag_of(1)), 0xD57), "write dst")?;
    pageout(&t, dst, PAGE)?;
    u.register(dst, PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    let (src_pte, dst_pte) = (pte_of(&t, src), pte_of(&t, dst));
    let e = pte_to_swp_entry(dst_pte);
    let entries = mteswap::stats().entries;
    expect_errno_mv(u.mv(dst, src, PAGE, 0)?, EEXIST, "dst holds a swap pte")?;
    ensure_eq!(pte_of(&t, src), src_pte, "src pte after EEXIST");
    ensure_eq!(pte_of(&t, dst), dst_pte, "dst swap pte after EEXIST");
    ensure_eq!(swapfile::swap_map(e), 1, "swap_map of dst's entry");
    ensure_eq!(mteswap::stats().entries, entries, "tag-storage entries");
    expect_moved_page(&t, src, 0, "src after EEXIST")?;
    ensure_eq!(ok(t.load(with_tag(dst, tag_of(1))), "dst read")?, 0xD57, "dst's own data after EEXIST");
    expect_tags(&t, dst, |g| tag_of(g + 1), "dst's own tags after EEXIST")?;
    drop(u);
    s.finish()
}
kernel_test!(uffd, move_onto_a_swapped_out_dst_is_eexist, ramdisk);

// --- hardening: movers on one large folio, references held across a split --------------------

/// A THP at a fresh aligned address, with pages `pages` tagged and filled,
/// and a registered dst of the same size. Returns (src, dst, head pfn).
fn thp_with_dst(t: &Arc<Task>, u: &UffdFd, round: usize, pages: &[usize]) -> Result<(usize, usize, u64), Verdict> {
    let src = 0x40_0000_0000usize + round * (4 << 20);
    let dst = 0x50_0000_0000usize + round * (4 << 20);
    ensure_eq!(mmap(t, src, 2 << 20, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, src, "src");
    must(t.madvise(src, 2 << 20, MADV_HUGEPAGE), "MADV_HUGEPAGE")?;
    ok(t.store(src, 0), "fault in the huge folio")?;
    for &p in pages {
        tag_page(t, src + p * PAGE, tag_of)?;
        ok(t.store(with_tag(src + p * PAGE, tag_of(0)), 0x5000 + p as u64), "write")?;
    }
    let head = pte_pfn(pte_of(t, src));
    ensure_eq!(Folio::get(head).nr_pages(), 512, "an order-9 folio at src");
    ensure_eq!(mmap(t, dst, 2 << 20, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, dst, "dst");
    u.register(dst, 2 << 20, UFFDIO_REGISTER_MODE_MISSING)?;
    Ok((src, dst, head))
}

/// A UFFDIO_MOVE running on another CPU: the ioctl's result and the
/// uffdio_move as the kernel left it.

/// A finished mover moved `len` bytes: 0 and `move` = len.
fn move_done(mover: Mover, len: usize, what: &str) -> TestResult {
    let (r, m) = ok(mover.join()?, what)?;
    ensure!(
        r == Ok(0) && m.moved == len as i64,
        "{what}: expected 0 with move = {len}, got {r:?} move = {:#x}",
        m.moved
    );
    Ok(())
}

/// Two or three CPUs move different pages of one order-9 folio (Linux
/// succeeds for all). `window` 0: mover 1 stops holding the folio lock
/// before its split while the others stop where they found it locked, and
/// mover 1 must finish while they wait; 1: mover 1 stops just before
/// the refcount freeze while someone holds a transient reference, so the
/// freeze fails and mover 1 retries while the others split and move.
fn movers_on_one_large_folio(movers: usize) -> TestResult {
    let pages = [5usize, 100, 300];
    for round in 0..8 {
        let window = round % 2;
        let mut s = Scenario::new();
        s.thp();
        let t = s.spawn()?;
        let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
        let (src, dst, head) = thp_with_dst(&t, &u, round, &pages[..movers])?;
        let what = |m: usize| format!("round {round} (window {window}), mover {m} (page {})", pages[m]);
        let first = if window == 0 {
            &crate::testhooks::points::MOVE_PAGES_PTE_AFTER_FOLIO_LOCK
        } else {
            &crate::testhooks::points::SPLIT_FOLIO_BEFORE_FREEZE
        };
        let bp = crate::testhooks::schedpoint::arm(first);
        let first_mover = u.start_move(1, 0, dst + pages[0] * PAGE, src + pages[0] * PAGE, PAGE)?;
        bp.wait_reached(5_000_000).map_err(|e| verdict(&what(0), e))?;
        let mut others = Vec::new();
        if window == 0 {
            // The others find the folio locked and stop there, holding no
            // reference: mover 1's split must succeed while they wait.
            let busy: Vec<_> = (1..movers)
                .map(|_| crate::testhooks::schedpoint::arm(&crate::testhooks::points::MOVE_PAGES_PTE_LARGE_FOLIO_BUSY))
                .collect();
            for (m, &p) in pages.iter().enumerate().take(movers).skip(1) {
                others.push(u.start_move(m + 1, m, dst + p * PAGE, src + p * PAGE, PAGE)?);
            }
            for b in &busy {
                b.wait_reached(5_000_000).map_err(|e| verdict("a second mover finding the folio locked", e))?;
            }
            bp.release();
            move_done(first_mover, PAGE, &what(0))?;
            drop(busy);
            for (m, mover) in others.into_iter().enumerate() {
                move_done(mover, PAGE, &what(m + 1))?;
            }
        } else {
            // A transient reference (a lock-free lookup) when mover 1 freezes.
            let transient = Folio::try_get(head).ok_or_else(|| verdict("try_get", "frozen"))?;
            let retry = crate::testhooks::schedpoint::arm(&crate::testhooks::points::MOVE_PAGES_RETRY);
            bp.release();
            retry.wait_reached(5_000_000).map_err(|e| verdict("mover 1's retry after a failed freeze", e))?;
            ensure_eq!(Folio::get(head).nr_pages(), 512, "mover 1 split a folio someone held a reference on");
            drop(transient);
            for (m, &p) in pages.iter().enumerate().take(movers).skip(1) {
                others.push(u.start_move(m + 1, m, dst + p * PAGE, src + p * PAGE, PAGE)?);
            }
            for (m, mover) in others.into_iter().enumerate() {
                move_done(mover, PAGE, &what(m + 1))?;
            }
            retry.release();
            move_done(first_mover, PAGE, &what(0))?;
        }
        for (m, &p) in pages[..movers].iter().enumerate() {
            ensure_eq!(pte_pfn(pte_of(&t, dst + p * PAGE)), head + p as u64, "{}: the moved frame", what(m));
            ensure!(pte_none(pte_of(&t, src + p * PAGE)), "{}: src still mapped", what(m));
            expect_moved_page(&t, dst + p * PAGE, p, &what(m))?;
        }
        ensure_eq!(ok(t.load(src + 200 * PAGE), "read")?, 0, "the rest of the split folio is still mapped");
        drop(u);
        s.finish().map_err(|v| match v {
            Verdict::Fail(m) => Verdict::Fail(format!("round {round} (window {window}): {m}")),
            other => other,
        })?;
    }
    Ok(())
}

fn two_movers_on_one_large_folio_both_succeed() -> TestResult {
    movers_on_one_large_folio(2)
}
kernel_test!(uffd, two_movers_on_one_large_folio_both_succeed, cpus = 3);

fn three_movers_on_one_large_folio_all_succeed() -> TestResult {
    movers_on_one_large_folio(3)
}
kernel_test!(uffd, three_movers_on_one_large_folio_all_succeed, cpus = 4);

/// A reference on a large folio held for good (not a mapping, not a pin):
/// MOVE must split it and cannot. Linux retries inside the ioctl until the
/// reference goes; here the retries are bounded and the answer is EAGAIN
/// with nothing changed; once the reference is dropped the move succeeds.
fn persistent_reference_gives_bounded_eagain() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
    let (src, dst, head) = thp_with_dst(&t, &u, 0, &[5])?;
    let held = Folio::get(head);
    let before = pte_of(&t, src + 5 * PAGE);
    let r = u.mv(dst + 5 * PAGE, src + 5 * PAGE, PAGE, 0)?;
    let unchanged = pte_of(&t, src + 5 * PAGE) == before && pte_none(pte_of(&t, dst + 5 * PAGE));
    let still_large = held.nr_pages() == 512;
    drop(held);
    expect_errno_mv(r, EAGAIN, "MOVE while a reference is held for good")?;
    ensure!(unchanged, "the refused move changed a pte");
    ensure!(still_large, "the folio was split although a reference was held");
    let (r, moved) = u.mv(dst + 5 * PAGE, src + 5 * PAGE, PAGE, 0)?;
    ensure!(r == Ok(0) && moved == PAGE as i64, "MOVE after the reference went: {r:?} {moved}");
    expect_moved_page(&t, dst + 5 * PAGE, 5, "moved after the reference went")?;
    drop(u);
    s.finish()
}
kernel_test!(uffd, persistent_reference_gives_bounded_eagain);

/// An aligned THP range with one pte zapped (MADV_DONTNEED of one page),
/// moved to an untouched aligned dst: the PMD-level step does not apply
/// (not every pte maps the folio), the pte path splits and moves the rest,
/// and the call returns.
fn thp_with_a_zapped_pte_moves_by_ptes() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
    let (src, dst, head) = thp_with_dst(&t, &u, 0, &[0, 6, 8, 511])?;
    must(t.madvise(src + 7 * PAGE, PAGE, MADV_DONTNEED), "MADV_DONTNEED")?;
    let (r, moved) = u.mv(dst, src, 2 << 20, UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES)?;
    ensure!(r == Ok(0) && moved == 2 << 20, "MOVE of a THP range with a hole: {r:?} {moved}");
    ensure!(pte_none(pte_of(&t, dst + 7 * PAGE)), "the hole was filled at dst");
    for p in [0usize, 6, 8, 511] {
        ensure_eq!(pte_pfn(pte_of(&t, dst + p * PAGE)), head + p as u64, "page {p}: the moved frame");
        expect_moved_page(&t, dst + p * PAGE, p, "a page of the THP with a hole")?;
    }
    drop(u);
    s.finish()
}
kernel_test!(uffd, thp_with_a_zapped_pte_moves_by_ptes);

/// While a mover's split has the refcount frozen, a lock-free lookup of any
/// page of the folio fails (and would retry) instead of taking a reference
/// on a folio whose pages are being rewritten.
fn lookup_during_a_split_finds_the_folio_frozen() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
    let (src, dst, head) = thp_with_dst(&t, &u, 0, &[5])?;
    let bp = crate::testhooks::schedpoint::arm(&crate::testhooks::points::SPLIT_FOLIO_AFTER_FREEZE);
    let mover = u.start_move(1, 0, dst + 5 * PAGE, src + 5 * PAGE, PAGE)?;
    bp.wait_reached(5_000_000).map_err(|e| verdict("the mover's split", e))?;
    let during: Vec<bool> = [0u64, 5, 300].iter().map(|&p| Folio::try_get(head + p).is_some()).collect();
    bp.release();
    move_done(mover, PAGE, "the mover")?;
    ensure!(during.iter().all(|&got| !got), "a lookup got a reference during the split: {during:?}");
    ensure!(Folio::try_get(head + 300).is_some_and(|f| f.nr_pages() == 1), "after the split: an order-0 folio");
    expect_moved_page(&t, dst + 5 * PAGE, 5, "moved after the split")?;
    drop(u);
    s.finish()
}
kernel_test!(uffd, lookup_during_a_split_finds_the_folio_frozen, cpus = 2);

/// A userfaultfd opened without O_NONBLOCK: read() waits until a fault on
/// another CPU queues a message, then returns it.
fn blocking_read_waits_for_a_fault() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let fd = must(t.userfaultfd(0), "userfaultfd")?;
    let arg = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    let u = UffdFd { t: t.clone(), fd, arg };
    must(u.api(UFFD_API, 0), "UFFDIO_API")?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    u.register(a, PAGE, UFFDIO_REGISTER_MODE_MISSING)?;
    let (tt, buf) = (t.clone(), arg + 1024);
    let job = on_cpu(1, "the reader", move || tt.read(fd, buf, 32))?;
    // Give the reader time to block; it must still be waiting.
    let f = crate::arch::cpu::counter_freq().max(1);
    let until = crate::arch::cpu::counter() + f / 20;
    while crate::arch::cpu::counter() < until {
        core::hint::spin_loop();
    }
    let early = job.finished();
    ensure!(matches!(t.load(a), Err(Signal::UffdWait { .. })), "the access did not wait on the userfault");
    let read = job.join()?;
    ensure!(!early, "read() of a blocking userfaultfd returned before any message");
    ensure_eq!(read, Ok(Ok(32)), "the blocking read's result");
    ensure_eq!(ok(t.load(buf + 16), "msg")?, a as u64, "the message's fault address");
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(uffd, blocking_read_waits_for_a_fault, cpus = 2);

/// A program's ioctl loop in one EL0 entry (the agent's syscall_loop): one
/// UFFDIO_MOVE per page from an array of argument blocks; the loop stops
/// at the first error (a block with an unaligned length: EINVAL), the
/// pages before it moved, those from it on untouched.
fn an_el0_loop_of_moves_stops_at_the_first_error() -> TestResult {
    let mut s = Scenario::new();
    let (t, u, src, dst) = setup(&mut s, 4)?;
    let block = |p: usize, len: usize| {
        crate::mm::uffd_uapi::UffdioMove {
            dst: (dst + p * PAGE) as u64,
            src: (src + p * PAGE) as u64,
            len: len as u64,
            mode: 0,
            moved: 0,
        }
        .to_words()
    };
    let words: Vec<u64> = (0..4).flat_map(|p| block(p, if p == 2 { PAGE - 8 } else { PAGE })).collect();
    let per = words.len() / 4 * 8;
    let args = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    for (i, w) in words.iter().enumerate() {
        ok(t.store(args + 8 * i, *w), "write an argument block")?;
    }
    let r = t.syscall_loop(crate::task::syscall::SYS_IOCTL, u.fd, UFFDIO_MOVE, args, per, 4);
    ensure_eq!(r.map_err(|e| verdict("the ioctl loop", e))?, Err(EINVAL), "the loop's result");
    for p in 0..2 {
        expect_moved_page(&t, dst + p * PAGE, p, "a page moved by the loop")?;
    }
    for p in 2..4 {
        ensure!(pte_none(pte_of(&t, dst + p * PAGE)), "dst page {p} was filled after the failing block");
        expect_moved_page(&t, src + p * PAGE, p, "a source page the loop did not reach")?;
    }
    s.finish()
}
kernel_test!(uffd, an_el0_loop_of_moves_stops_at_the_first_error);
