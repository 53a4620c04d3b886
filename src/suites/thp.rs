//! Suite `thp`: PMD-mapped transparent huge pages and multi-size THP at
//! EL0: the fault (a 2 MiB block with a deposited table, the huge zero page
//! on a read), the tunables, split where Linux splits (partial munmap and
//! mprotect, a COW write on a shared PMD), zap of a whole PMD without a
//! split, fork sharing the PMD, kernel accesses that do not split, and
//! UFFDIO_MOVE of a real PMD, with data, tags and counts checked.

use super::scenario::*;
use crate::arch::mte::with_tag;
use crate::errno::Errno;
use crate::harness::{TestResult, Verdict};
use crate::mm::folio::{Folio, PG_ANON_EXCLUSIVE, PG_MTE_TAGGED};
use crate::mm::huge_memory::{self, huge_zero_pfn};
use crate::mm::mmap::*;
use crate::mm::pte::*;
use crate::mm::uffd_uapi::*;
use crate::mm::userfaultfd::{UFFDIO_REGISTER_MODE_MISSING, UFFD_API, UFFD_FEATURE_MOVE};
use crate::task::agent::SegvKind;
use crate::task::Task;
use crate::testhooks::knobs::{THP_ENABLED, THP_ORDER, THP_USE_ZERO_PAGE};
use crate::{ensure, ensure_eq, kernel_test};
use alloc::format;
use alloc::sync::Arc;

const HUGE: usize = 2 << 20;
/// 2 MiB-aligned addresses no other mapping uses.
const A: usize = 0x20_0000_0000;
const B: usize = 0x30_0000_0000;

/// `len` bytes of PROT_MTE anonymous memory at `at`, MADV_HUGEPAGE.
fn region(t: &Task, at: usize, len: usize) -> Result<usize, Verdict> {
    ensure_eq!(mmap(t, at, len, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, at, "MAP_FIXED");
    must(t.madvise(at, len, MADV_HUGEPAGE), "MADV_HUGEPAGE")?;
    Ok(at)
}

/// A scenario with THP on for its duration and a task with a 2 MiB
/// PROT_MTE MADV_HUGEPAGE region at A.
fn thp_scenario() -> Result<(Scenario, Arc<Task>, usize), Verdict> {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let a = region(&t, A, HUGE)?;
    Ok((s, t, a))
}

fn huge_pmd(t: &Task, at: usize) -> pmd_t {
    t.mm().pgtables.pmd_peek(at)
}

fn expect_block(t: &Task, at: usize, what: &str) -> Result<u64, Verdict> {
    let pmd = huge_pmd(t, at);
    ensure!(pmd_trans_huge(pmd), "{what}: no huge PMD at {at:#x}: {pmd:?}");
    ensure_eq!(t.mm().pgtables.table_of(at), None, "{what}: a pte table at a huge PMD");
    Ok(pte_pfn(pmd_pte(pmd)))
}

fn tag_of(p: usize) -> u8 {
    (p % 14) as u8 + 1
}

/// Tags page `p` of the THP at `a` with tag_of(p) and writes its number.
fn stamp(t: &Task, a: usize, p: usize) -> TestResult {
    let at = a + p * PAGE;
    tag_page(t, at, |_| tag_of(p))?;
    ok(t.store(with_tag(at, tag_of(p)), 0x7000 + p as u64), "write")
}

fn expect_stamp(t: &Task, a: usize, p: usize, what: &str) -> TestResult {
    let at = a + p * PAGE;
    ensure_eq!(ok(t.load(with_tag(at, tag_of(p))), what)?, 0x7000 + p as u64, "{what}: data of page {p}");
    expect_tags(t, at, |_| tag_of(p), &format!("{what}: page {p}"))
}

fn splits() -> u64 {
    huge_memory::stats().thp_split_pmd
}

fn write_fault_maps_one_pmd_block() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    let before = huge_memory::stats();
    ok(t.store(a + 3 * PAGE, 33), "write")?;
    let head = expect_block(&t, a, "after a write fault")?;
    ensure_eq!(huge_memory::stats().thp_fault_alloc, before.thp_fault_alloc + 1, "thp_fault_alloc");
    let f = Folio::get(head);
    ensure_eq!((f.order(), f.refcount(), f.mapcount()), (9, 513, 512), "order, refcount (ours too), mapcount");
    ensure!(f.test(PG_MTE_TAGGED) && f.test(PG_ANON_EXCLUSIVE), "a new PROT_MTE THP is tagged and exclusive");
    drop(f);
    expect_rss(&t, 512, 0, "one PMD")?;
    expect_tags(&t, a + 511 * PAGE, |_| 0, "the last page of a new PROT_MTE THP")?;
    ensure_eq!(ok(t.load(a + 3 * PAGE), "read")?, 33, "data");
    ensure_eq!(ok(t.load(a + 400 * PAGE), "read")?, 0, "an untouched page of the THP");
    s.finish()
}
kernel_test!(thp, write_fault_maps_one_pmd_block);

fn read_fault_maps_the_huge_zero_page_then_a_write_gets_a_thp() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    ensure_eq!(ok(t.load(a + 9 * PAGE), "read")?, 0, "the huge zero page reads zero");
    let pfn = expect_block(&t, a, "after a read fault")?;
    let zero = huge_zero_pfn().ok_or_else(|| verdict("huge zero page", "none"))?;
    ensure_eq!(pfn, zero, "the read maps the huge zero page");
    ensure!(pte_special(pmd_pte(huge_pmd(&t, a))) && !pte_write(pmd_pte(huge_pmd(&t, a))), "special and read-only");
    ensure!(!Folio::get(zero).test(PG_MTE_TAGGED), "the huge zero page is never PG_mte_tagged");
    expect_rss(&t, 0, 0, "the huge zero page is not counted")?;
    expect_tags(&t, a + 9 * PAGE, |_| 0, "the huge zero page's tags")?;
    ok(t.store(a + 9 * PAGE, 5), "the first write")?;
    let head = expect_block(&t, a, "after the first write")?;
    ensure!(head != zero && !pte_special(pmd_pte(huge_pmd(&t, a))), "the write replaced the huge zero page with a THP");
    expect_rss(&t, 512, 0, "a THP now")?;
    expect_tags(&t, a + 9 * PAGE, |_| 0, "a PROT_MTE THP after the huge zero page")?;
    ensure_eq!(ok(t.load(a + 9 * PAGE), "read")?, 5, "data");
    ensure_eq!(ok(t.load(a + 10 * PAGE), "read")?, 0, "the rest reads zero");
    ensure!(!Folio::get(zero).test(PG_MTE_TAGGED), "the huge zero page stays untagged");
    s.finish()
}
kernel_test!(thp, read_fault_maps_the_huge_zero_page_then_a_write_gets_a_thp);

fn use_zero_page_off_allocates_on_a_read() -> TestResult {
    let _k = THP_USE_ZERO_PAGE.set(0);
    let (s, t, a) = thp_scenario()?;
    ensure_eq!(ok(t.load(a), "read")?, 0, "read");
    let head = expect_block(&t, a, "after a read with use_zero_page 0")?;
    ensure!(Some(head) != huge_zero_pfn() && !pte_special(pmd_pte(huge_pmd(&t, a))), "a THP, not the zero page");
    expect_rss(&t, 512, 0, "a THP on a read")?;
    s.finish()
}
kernel_test!(thp, use_zero_page_off_allocates_on_a_read);

/// enabled=never and MADV_NOHUGEPAGE give small pages; enabled=always
/// gives a PMD without MADV_HUGEPAGE; madvise gives one only with it.
fn the_enabled_tunable_and_madvise_choose() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let small = |at: usize, what: &str| -> TestResult {
        ok(t.store(at, 1), "write")?;
        ensure!(!pmd_trans_huge(huge_pmd(&t, at)) && pte_present(pte_of(&t, at)), "{what}: expected a small page");
        Ok(())
    };
    {
        let _never = THP_ENABLED.set(crate::cmdline::ThpEnabled::Never as u64);
        small(region(&t, A, HUGE)?, "enabled=never with MADV_HUGEPAGE")?;
    }
    let plain = B;
    ensure_eq!(mmap(&t, plain, HUGE, RW, ANON | MAP_FIXED, -1)?, plain, "MAP_FIXED");
    small(plain, "enabled=madvise without MADV_HUGEPAGE")?;
    let always = THP_ENABLED.set(crate::cmdline::ThpEnabled::Always as u64);
    let c = 0x40_0000_0000usize;
    ensure_eq!(mmap(&t, c, HUGE, RW, ANON | MAP_FIXED, -1)?, c, "MAP_FIXED");
    ok(t.store(c, 1), "write")?;
    expect_block(&t, c, "enabled=always without MADV_HUGEPAGE")?;
    let d = 0x50_0000_0000usize;
    ensure_eq!(mmap(&t, d, HUGE, RW, ANON | MAP_FIXED, -1)?, d, "MAP_FIXED");
    must(t.madvise(d, HUGE, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE")?;
    small(d, "enabled=always with MADV_NOHUGEPAGE")?;
    drop(always); // before the scenario puts back what it set
    s.finish()
}
kernel_test!(thp, the_enabled_tunable_and_madvise_choose);

/// A 64 KiB mTHP (hugepages-64kB=always): a write maps an order-4 folio
/// with the 16 ptes of its aligned range.
fn mthp_64k_fault_maps_sixteen_ptes() -> TestResult {
    let _k = THP_ORDER[4].set(crate::cmdline::ThpOrderPolicy::Always as u64);
    let _never = THP_ENABLED.set(crate::cmdline::ThpEnabled::Never as u64);
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, A, HUGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?;
    let before = huge_memory::stats().mthp_anon_fault_alloc;
    ok(t.store(a + 21 * PAGE, 9), "write")?;
    ensure_eq!(huge_memory::stats().mthp_anon_fault_alloc, before + 1, "mthp faults");
    let (pfn, refs, maps) = counts(&t, a + 16 * PAGE)?;
    let f = Folio::get(pfn);
    ensure_eq!((f.order(), refs, maps), (4, 16, 16), "order, refcount, mapcount of the 64 KiB folio");
    for p in 16..32 {
        ensure_eq!(pte_pfn(pte_of(&t, a + p * PAGE)), f.pfn() + (p - 16) as u64, "pte {p} maps the folio in order");
    }
    ensure!(pte_none(pte_of(&t, a + 15 * PAGE)) && pte_none(pte_of(&t, a + 32 * PAGE)), "only the aligned 64 KiB");
    drop(f);
    expect_rss(&t, 16, 0, "one 64 KiB folio")?;
    expect_tags(&t, a + 31 * PAGE, |_| 0, "the last page of a PROT_MTE mTHP")?;
    s.finish()
}
kernel_test!(thp, mthp_64k_fault_maps_sixteen_ptes);

fn partial_munmap_splits_and_keeps_data_and_tags() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    for p in [0, 100, 255, 256, 511] {
        stamp(&t, a, p)?;
    }
    let head = expect_block(&t, a, "before")?;
    let split = splits();
    must(t.munmap(a + 256 * PAGE, 256 * PAGE), "munmap of the upper half")?;
    ensure_eq!(splits(), split + 1, "thp_split_pmd");
    ensure!(!pmd_trans_huge(huge_pmd(&t, a)) && t.mm().pgtables.table_of(a).is_some(), "a pte table after the split");
    for p in [0, 100, 255] {
        ensure_eq!(pte_pfn(pte_of(&t, a + p * PAGE)), head + p as u64, "page {p} is the same frame");
        expect_stamp(&t, a, p, "after the split")?;
    }
    expect_segv(t.load(a + 300 * PAGE), SegvKind::MapErr, a + 300 * PAGE, "the unmapped half")?;
    expect_rss(&t, 256, 0, "half the THP")?;
    let f = Folio::get(head);
    ensure_eq!((f.refcount(), f.mapcount()), (257, 256), "counts after unmapping half");
    drop(f);
    s.finish()
}
kernel_test!(thp, partial_munmap_splits_and_keeps_data_and_tags);

fn whole_munmap_and_dontneed_zap_without_a_split() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let a = region(&t, A, 2 * HUGE)?;
    let frames = crate::mm::frames::free_frames();
    let tables = t.mm().pgtables.nr_tables.load(core::sync::atomic::Ordering::Acquire);
    ok(t.store(a, 1), "write")?;
    ok(t.store(a + HUGE, 2), "write")?;
    expect_block(&t, a, "first")?;
    expect_block(&t, a + HUGE, "second")?;
    let split = splits();
    must(t.madvise(a, HUGE, MADV_DONTNEED), "MADV_DONTNEED of a whole PMD")?;
    ensure!(pmd_none(huge_pmd(&t, a)), "DONTNEED left the PMD");
    ensure_eq!(ok(t.load(a + 4 * PAGE), "read")?, 0, "zero after DONTNEED");
    must(t.munmap(a, 2 * HUGE), "munmap of both")?;
    ensure_eq!(splits(), split, "no split for whole PMDs");
    expect_rss(&t, 0, 0, "after the zaps")?;
    ensure_eq!(crate::mm::frames::free_frames(), frames - (tables_added(&t, tables)), "frames: only page tables kept");
    s.finish()
}
kernel_test!(thp, whole_munmap_and_dontneed_zap_without_a_split);

fn tables_added(t: &Task, before: usize) -> usize {
    t.mm().pgtables.nr_tables.load(core::sync::atomic::Ordering::Acquire) - before
}

/// fork shares the PMD write-protected in both; the child's write splits
/// its PMD and copies one page with its tags; the parent's page stays.
fn fork_shares_the_pmd_and_a_cow_write_splits() -> TestResult {
    let (mut s, p, a) = thp_scenario()?;
    for pg in [0, 7, 511] {
        stamp(&p, a, pg)?;
    }
    let head = expect_block(&p, a, "parent before fork")?;
    let c = s.fork(&p)?;
    ensure_eq!(expect_block(&c, a, "child")?, head, "the child maps the same THP");
    ensure!(!pte_write(pmd_pte(huge_pmd(&p, a))) && !pte_write(pmd_pte(huge_pmd(&c, a))), "write-protected in both");
    let f = Folio::get(head);
    ensure_eq!((f.mapcount(), f.test(PG_ANON_EXCLUSIVE)), (1024, false), "shared by two PMDs");
    drop(f);
    expect_stamp(&c, a, 7, "the child reads the parent's page")?;
    let split = splits();
    ok(c.store(with_tag(a + 7 * PAGE, tag_of(7)), 0xC7), "the child's write")?;
    ensure_eq!(splits(), split + 1, "the COW write split the child's PMD");
    ensure!(pte_pfn(pte_of(&c, a + 7 * PAGE)) != head + 7, "the child got its own copy of page 7");
    expect_tags(&c, a + 7 * PAGE, |_| tag_of(7), "the child's copy keeps the tags")?;
    ensure_eq!(ok(c.load(with_tag(a + 7 * PAGE, tag_of(7))), "child")?, 0xC7, "the child's data");
    expect_block(&p, a, "the parent's PMD")?;
    expect_stamp(&p, a, 7, "the parent's page after the child's write")?;
    expect_stamp(&c, a, 511, "the child's other pages still shared")?;
    s.finish()
}
kernel_test!(thp, fork_shares_the_pmd_and_a_cow_write_splits);

/// Once the child is gone the parent's write reuses the whole PMD.
fn a_pmd_nobody_else_maps_is_reused_on_write() -> TestResult {
    let (mut s, p, a) = thp_scenario()?;
    stamp(&p, a, 3)?;
    let head = expect_block(&p, a, "before fork")?;
    let c = s.fork(&p)?;
    ensure!(matches!(c.exit(0), Err(crate::task::agent::Signal::Exited(0))), "child exit");
    let split = splits();
    ok(p.store(with_tag(a + 3 * PAGE, tag_of(3)), 0x33), "the parent's write")?;
    ensure_eq!(splits(), split, "no split");
    ensure_eq!(expect_block(&p, a, "after the write")?, head, "the same THP");
    ensure!(pte_write(pmd_pte(huge_pmd(&p, a))) && Folio::get(head).test(PG_ANON_EXCLUSIVE), "writable and exclusive");
    s.finish()
}
kernel_test!(thp, a_pmd_nobody_else_maps_is_reused_on_write);

fn mprotect_of_part_splits() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    stamp(&t, a, 1)?;
    stamp(&t, a, 2)?;
    let split = splits();
    must(t.mprotect(a + PAGE, PAGE, PROT_READ | PROT_MTE), "mprotect of one page")?;
    ensure_eq!(splits(), split + 1, "thp_split_pmd");
    let at = with_tag(a + PAGE, tag_of(1));
    expect_segv(t.store(at, 0), SegvKind::AccErr, at, "a write to the read-only page")?;
    expect_stamp(&t, a, 1, "the read-only page")?;
    ok(t.store(with_tag(a + 2 * PAGE, tag_of(2)), 0x7002), "the next page stays writable")?;
    s.finish()
}
kernel_test!(thp, mprotect_of_part_splits);

/// The kernel's own access to user memory in a THP (an ioctl argument)
/// goes through the PMD, which stays whole.
fn a_kernel_access_through_a_pmd_does_not_split() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    ok(t.store(a, 1), "write")?;
    let fd = must(t.userfaultfd(0), "userfaultfd")?;
    let split = splits();
    let (r, api) = ok(
        t.ioctl_struct(fd, UFFDIO_API, a + 8 * PAGE, &UffdioApi { api: UFFD_API, features: 0, ioctls: 0 }),
        "UFFDIO_API",
    )?;
    r.map_err(|e| verdict("UFFDIO_API", e))?;
    ensure!(api.ioctls != 0, "the kernel wrote the reply into the THP");
    ensure_eq!(splits(), split, "no split");
    expect_block(&t, a, "after the ioctl")?;
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, a_kernel_access_through_a_pmd_does_not_split);

/// A registered dst and the ioctl argument page for UFFDIO_MOVE.
fn move_setup(t: &Arc<Task>) -> Result<(u64, usize), Verdict> {
    let fd = must(t.userfaultfd(0o4000), "userfaultfd")?;
    let arg = mmap(t, 0, PAGE, RW, ANON, -1)?;
    let (r, _) = ok(
        t.ioctl_struct(fd, UFFDIO_API, arg, &UffdioApi { api: UFFD_API, features: UFFD_FEATURE_MOVE, ioctls: 0 }),
        "API",
    )?;
    r.map_err(|e| verdict("UFFDIO_API", e))?;
    let dst = region(t, B, HUGE)?;
    let reg = UffdioRegister { start: dst as u64, len: HUGE as u64, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
    ok(t.ioctl_struct(fd, UFFDIO_REGISTER, arg, &reg), "REGISTER")?.0.map_err(|e| verdict("REGISTER", e))?;
    Ok((fd, arg))
}

fn move_2m(t: &Task, fd: u64, arg: usize, dst: usize, src: usize) -> Result<(Result<u64, Errno>, i64), Verdict> {
    let m = UffdioMove { dst: dst as u64, src: src as u64, len: HUGE as u64, mode: 0, moved: 0 };
    let (r, back) = ok(t.ioctl_struct(fd, UFFDIO_MOVE, arg, &m), "UFFDIO_MOVE")?;
    Ok((r, back.moved))
}

fn move_of_a_real_pmd_keeps_tags_and_retargets() -> TestResult {
    let (s, t, src) = thp_scenario()?;
    for p in [0, 200, 511] {
        stamp(&t, src, p)?;
    }
    let head = expect_block(&t, src, "src")?;
    let (fd, arg) = move_setup(&t)?;
    let split = splits();
    let (r, moved) = move_2m(&t, fd, arg, B, src)?;
    ensure!(r == Ok(0) && moved == HUGE as i64, "MOVE of a PMD: {r:?} {moved}");
    ensure_eq!(splits(), split, "no split");
    ensure!(pmd_none(huge_pmd(&t, src)), "src's PMD is none");
    ensure_eq!(expect_block(&t, B, "dst")?, head, "dst maps the THP");
    ensure_eq!(Folio::get(head).page().inner.lock().index, (B / PAGE) as u64, "the folio's index follows the move");
    for p in [0, 200, 511] {
        expect_stamp(&t, B, p, "moved")?;
    }
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, move_of_a_real_pmd_keeps_tags_and_retargets);

fn move_of_the_huge_zero_pmd_stays_special() -> TestResult {
    let (s, t, src) = thp_scenario()?;
    ensure_eq!(ok(t.load(src), "read")?, 0, "read");
    let zero = expect_block(&t, src, "the huge zero PMD")?;
    let (fd, arg) = move_setup(&t)?;
    let (r, moved) = move_2m(&t, fd, arg, B, src)?;
    ensure!(r == Ok(0) && moved == HUGE as i64, "MOVE of the huge zero PMD: {r:?} {moved}");
    ensure_eq!(expect_block(&t, B, "dst")?, zero, "dst maps the huge zero page");
    ensure!(pte_special(pmd_pte(huge_pmd(&t, B))), "the moved huge zero PMD is still special");
    ensure_eq!(ok(t.load(B + 77 * PAGE), "read")?, 0, "dst reads zero");
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, move_of_the_huge_zero_pmd_stays_special);

/// uffd_move:huge_zero_not_special: dst maps the shared huge zero folio
/// as a THP of its own, which the invariant checker reports (the zero
/// folio is not an anonymous folio of that VMA). The PMD is repaired before teardown, as a
/// zap of it would drop references the zero folio never had.
fn move_of_the_huge_zero_pmd_without_special_is_caught() -> TestResult {
    let (s, t, src) = thp_scenario()?;
    ensure_eq!(ok(t.load(src), "read")?, 0, "read");
    let (fd, arg) = move_setup(&t)?;
    let wrong = crate::testhooks::variants::MOVE_HUGE_ZERO_NOT_SPECIAL.enable();
    let (r, _) = move_2m(&t, fd, arg, B, src)?;
    drop(wrong);
    ensure_eq!(r, Ok(0), "the wrong move itself succeeds");
    let corrupt = !pte_special(pmd_pte(huge_pmd(&t, B)));
    let found = crate::mm::invariants::check();
    // Repair: the special bit back, so teardown drops nothing.
    let locked = t.mm().pgtables.pmd_lock(B, false).ok().flatten().ok_or_else(|| verdict("dst PMD", "gone"))?;
    locked.set(pte_pmd(pte_mkspecial(pmd_pte(locked.get()))), t.mm().asid);
    drop(locked);
    ensure!(corrupt, "the variant did not drop the special bit");
    let why = found.err().ok_or_else(|| verdict("the invariant checker", "found nothing wrong"))?;
    ensure!(why.contains("maps non-anonymous pfn"), "the checker should name the foreign mapping: {why}");
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, move_of_the_huge_zero_pmd_without_special_is_caught);

/// split_folio (here called directly, as Linux's debugfs split_huge_pages
/// would) of a PMD-mapped PROT_MTE THP: the PMD becomes ptes, every page
/// becomes an order-0 folio that keeps PG_mte_tagged, and mapping them
/// again (mprotect rewrites every pte) keeps every page's tags.
fn split_with_tag_state(wrong: bool) -> Result<Result<(), Verdict>, Verdict> {
    let (s, t, a) = thp_scenario()?;
    for p in [0, 1, 300, 511] {
        stamp(&t, a, p)?;
    }
    let head = expect_block(&t, a, "before the split")?;
    let v = wrong.then(|| crate::testhooks::variants::SPLIT_TAILS_WITHOUT_MTE_TAGGED.enable());
    {
        let f = Folio::get(head);
        let _locked = f.lock_guard();
        crate::mm::split::split_folio(&f).map_err(|e| verdict("split_folio", e))?;
    }
    drop(v);
    ensure!(!pmd_trans_huge(huge_pmd(&t, a)), "the PMD was not split");
    ensure_eq!(Folio::get(head + 300).nr_pages(), 1, "page 300 is a folio of its own");
    // Read-only and back: every pte is set again (mprotect to the flags a
    // VMA has already changes nothing, as in Linux).
    must(t.mprotect(a, HUGE, PROT_READ | PROT_MTE), "mprotect read-only (every pte set again)")?;
    must(t.mprotect(a, HUGE, RW | PROT_MTE), "mprotect back to read-write")?;
    let kept = (|| {
        for p in [0, 1, 300, 511] {
            expect_stamp(&t, a, p, "after the split and mprotect")?;
        }
        Ok(())
    })();
    s.finish()?;
    Ok(kept)
}

fn split_keeps_every_pages_tags_and_tag_state() -> TestResult {
    split_with_tag_state(false)?
}
kernel_test!(thp, split_keeps_every_pages_tags_and_tag_state);

fn split_without_the_tails_tag_state_is_caught() -> TestResult {
    // Cleared tags: LDG reads 0, or the access through the page's tag faults.
    expect_caught(split_with_tag_state(true), &["tag of granule", "MteSErr"], "the lost tag state")
}
kernel_test!(thp, split_without_the_tails_tag_state_is_caught);

fn dontneed_of_part_splits() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    stamp(&t, a, 0)?;
    stamp(&t, a, 300)?;
    let split = splits();
    must(t.madvise(a + 256 * PAGE, 256 * PAGE, MADV_DONTNEED), "MADV_DONTNEED of the upper half")?;
    ensure_eq!(splits(), split + 1, "thp_split_pmd");
    expect_stamp(&t, a, 0, "the kept half")?;
    ensure!(pte_none(pte_of(&t, a + 300 * PAGE)), "page 300 still mapped");
    ensure_eq!(ok(t.load(a + 300 * PAGE), "read")?, 0, "page 300 reads zero");
    expect_rss(&t, 256, 0, "half the THP")?;
    s.finish()
}
kernel_test!(thp, dontneed_of_part_splits);

fn exit_frees_the_thp_and_its_deposit() -> TestResult {
    let frames = crate::mm::frames::free_frames();
    {
        let mut s = Scenario::new();
        s.thp();
        let t = s.spawn()?;
        let a = region(&t, A, 2 * HUGE)?;
        ok(t.store(a, 1), "write")?;
        ok(t.load(a + HUGE), "read (the huge zero page)")?;
        expect_block(&t, a, "THP")?;
        expect_block(&t, a + HUGE, "huge zero")?;
        s.finish()?;
    }
    ensure_eq!(crate::mm::frames::free_frames(), frames, "free frames once the task exited");
    Ok(())
}
kernel_test!(thp, exit_frees_the_thp_and_its_deposit);

fn fork_shares_the_huge_zero_pmd_and_the_child_gets_its_own_thp() -> TestResult {
    let (mut s, p, a) = thp_scenario()?;
    ensure_eq!(ok(p.load(a), "read")?, 0, "read");
    let zero = expect_block(&p, a, "parent")?;
    let c = s.fork(&p)?;
    ensure_eq!(expect_block(&c, a, "child")?, zero, "the child shares the huge zero page");
    ok(c.store(a + 5 * PAGE, 55), "the child's write")?;
    ensure!(expect_block(&c, a, "child after its write")? != zero, "the child got a THP of its own");
    ensure_eq!(expect_block(&p, a, "parent after the child's write")?, zero, "the parent keeps the zero page");
    ensure_eq!(ok(p.load(a + 5 * PAGE), "parent")?, 0, "the parent reads zero");
    expect_rss(&p, 0, 0, "parent")?;
    expect_rss(&c, 512, 0, "child")?;
    s.finish()
}
kernel_test!(thp, fork_shares_the_huge_zero_pmd_and_the_child_gets_its_own_thp);

/// A pinned THP is not shared at fork (page_needs_cow_for_dma): the parent's
/// PMD is split and every pinned page copied for the child.
fn fork_of_a_pinned_thp_splits_and_copies() -> TestResult {
    let (mut s, p, a) = thp_scenario()?;
    stamp(&p, a, 4)?;
    let head = expect_block(&p, a, "before fork")?;
    let f = Folio::get(head);
    f.pin();
    let split = splits();
    let c = s.fork(&p);
    let check = (|| -> TestResult {
        let c = c?;
        ensure_eq!(splits(), split + 1, "the pinned THP's PMD was split");
        ensure!(pte_pfn(pte_of(&c, a + 4 * PAGE)) != head + 4, "the child maps a copy, not the pinned frame");
        ensure_eq!(pte_pfn(pte_of(&p, a + 4 * PAGE)), head + 4, "the parent keeps the pinned frame");
        ensure!(pte_write(pte_of(&p, a + 4 * PAGE)), "the parent's pinned page stays writable");
        expect_stamp(&c, a, 4, "the child's copy")?;
        Ok(())
    })();
    f.unpin();
    drop(f);
    check?;
    s.finish()
}
kernel_test!(thp, fork_of_a_pinned_thp_splits_and_copies);

fn a_cow_write_in_the_parent_leaves_the_child_its_pmd() -> TestResult {
    let (mut s, p, a) = thp_scenario()?;
    stamp(&p, a, 9)?;
    let head = expect_block(&p, a, "before fork")?;
    let c = s.fork(&p)?;
    ok(p.store(with_tag(a + 9 * PAGE, tag_of(9)), 0x99), "the parent's write")?;
    ensure!(pte_pfn(pte_of(&p, a + 9 * PAGE)) != head + 9, "the parent got its own copy of page 9");
    ensure_eq!(expect_block(&c, a, "the child")?, head, "the child keeps its PMD");
    expect_stamp(&c, a, 9, "the child's page 9")?;
    ensure_eq!(ok(p.load(with_tag(a + 9 * PAGE, tag_of(9))), "parent")?, 0x99, "the parent's data");
    expect_tags(&p, a + 9 * PAGE, |_| tag_of(9), "the parent's copy keeps the tags")?;
    s.finish()
}
kernel_test!(thp, a_cow_write_in_the_parent_leaves_the_child_its_pmd);

/// Every mTHP size (16 KiB to 1 MiB) alone: a write maps a folio of that
/// order over its aligned range.
fn every_mthp_size_maps_its_order() -> TestResult {
    let _never = THP_ENABLED.set(crate::cmdline::ThpEnabled::Never as u64);
    for order in 2..=8usize {
        let _k = THP_ORDER[order].set(crate::cmdline::ThpOrderPolicy::Always as u64);
        let mut s = Scenario::new();
        let t = s.spawn()?;
        let a = mmap(&t, A, HUGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?;
        let at = a + HUGE / 2 + 3 * PAGE;
        ok(t.store(at, order as u64), "write")?;
        let (pfn, _, _) = counts(&t, at)?;
        let f = Folio::get(pfn);
        ensure_eq!(
            (f.order() as usize, f.mapcount()),
            (order, 1 << order),
            "order {order}: the folio and its mappings"
        );
        let start = at & !((PAGE << order) - 1);
        ensure_eq!(pte_pfn(pte_of(&t, start)), f.pfn(), "order {order}: the aligned range starts the folio");
        drop(f);
        expect_rss(&t, 1 << order, 0, &format!("order {order}"))?;
        s.finish()?;
    }
    Ok(())
}
kernel_test!(thp, every_mthp_size_maps_its_order);

fn an_mthp_fault_on_a_partly_mapped_range_falls_back() -> TestResult {
    let _never = THP_ENABLED.set(crate::cmdline::ThpEnabled::Never as u64);
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, A, HUGE, RW, ANON | MAP_FIXED, -1)?;
    ok(t.store(a + 5 * PAGE, 1), "a small page first")?;
    let _k = THP_ORDER[4].set(crate::cmdline::ThpOrderPolicy::Always as u64);
    ok(t.store(a + 6 * PAGE, 2), "then a write in the same 64 KiB")?;
    let (pfn, _, _) = counts(&t, a + 6 * PAGE)?;
    ensure_eq!(Folio::get(pfn).nr_pages(), 1, "a small page: the 64 KiB range was partly mapped");
    ok(t.store(a + 20 * PAGE, 3), "a write in an empty 64 KiB")?;
    let (pfn, _, _) = counts(&t, a + 20 * PAGE)?;
    ensure_eq!(Folio::get(pfn).nr_pages(), 16, "a 64 KiB folio where the range was empty");
    s.finish()
}
kernel_test!(thp, an_mthp_fault_on_a_partly_mapped_range_falls_back);

fn mprotect_of_a_whole_pmd_changes_it_in_place() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    stamp(&t, a, 2)?;
    let split = splits();
    must(t.mprotect(a, HUGE, PROT_READ | PROT_MTE), "mprotect(PROT_READ) of the whole PMD")?;
    expect_block(&t, a, "read-only")?;
    let at = with_tag(a + 2 * PAGE, tag_of(2));
    expect_segv(t.store(at, 0), SegvKind::AccErr, at, "a write to the read-only THP")?;
    expect_stamp(&t, a, 2, "read-only")?;
    must(t.mprotect(a, HUGE, 0), "PROT_NONE")?;
    expect_segv(t.load(at), SegvKind::AccErr, at, "a read under PROT_NONE")?;
    must(t.mprotect(a, HUGE, RW | PROT_MTE), "back to read-write")?;
    ok(t.store(at, 0x7002), "a write once writable again")?;
    expect_stamp(&t, a, 2, "after PROT_NONE and back")?;
    ensure_eq!(splits(), split, "no split for whole-PMD mprotect");
    expect_block(&t, a, "after")?;
    s.finish()
}
kernel_test!(thp, mprotect_of_a_whole_pmd_changes_it_in_place);

/// Reclaim of a PMD-mapped THP: the PMD is split (Linux's
/// TTU_SPLIT_HUGE_PMD) and the folio written out whole to contiguous
/// slots with every page's tags; the pages come back with their tags.
fn reclaim_swaps_a_pmd_thp_out_whole_and_back() -> TestResult {
    let _swap = SwapOn::new()?;
    let (s, t, a) = thp_scenario()?;
    for p in [0, 128, 511] {
        stamp(&t, a, p)?;
    }
    expect_block(&t, a, "before reclaim")?;
    let st = do_madvise(&t.mm(), a as u64, HUGE as u64, MADV_PAGEOUT).map_err(|e| verdict("MADV_PAGEOUT", e))?;
    ensure_eq!(st.reclaimed, 1, "one folio reclaimed ({st:?})");
    let e0 = pte_to_swp_entry(pte_of(&t, a));
    for p in [1usize, 128, 511] {
        let e = pte_to_swp_entry(pte_of(&t, a + p * PAGE));
        ensure_eq!(swp_offset(e), swp_offset(e0) + p as u64, "page {p}'s slot follows the first");
    }
    expect_rss(&t, 0, 0, "swapped out")?;
    for p in [0, 128, 511] {
        expect_stamp(&t, a, p, "swapped back in")?;
    }
    s.finish()
}
kernel_test!(thp, reclaim_swaps_a_pmd_thp_out_whole_and_back, ramdisk);

fn move_onto_a_thp_is_eexist() -> TestResult {
    let (s, t, src) = thp_scenario()?;
    ok(t.store(src, 1), "src")?;
    let fd = must(t.userfaultfd(0o4000), "userfaultfd")?;
    let arg = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    let api = UffdioApi { api: UFFD_API, features: UFFD_FEATURE_MOVE, ioctls: 0 };
    ok(t.ioctl_struct(fd, UFFDIO_API, arg, &api), "API")?.0.map_err(|e| verdict("API", e))?;
    let dst = region(&t, B, HUGE)?;
    ok(t.store(dst, 2), "a THP at dst before registering")?;
    let reg = UffdioRegister { start: dst as u64, len: HUGE as u64, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
    ok(t.ioctl_struct(fd, UFFDIO_REGISTER, arg, &reg), "REGISTER")?.0.map_err(|e| verdict("REGISTER", e))?;
    let (r, moved) = move_2m(&t, fd, arg, dst, src)?;
    ensure!(r == Err(crate::errno::EEXIST) && moved == -17, "MOVE onto a THP: {r:?} {moved}");
    expect_block(&t, src, "src untouched")?;
    ensure_eq!(ok(t.load(dst), "dst")?, 2, "dst untouched");
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, move_onto_a_thp_is_eexist);

fn move_of_a_shared_thp_is_ebusy_without_a_split() -> TestResult {
    let (mut s, t, src) = thp_scenario()?;
    stamp(&t, src, 3)?;
    let (fd, arg) = move_setup(&t)?;
    let _child = s.fork(&t)?;
    let split = splits();
    let (r, moved) = move_2m(&t, fd, arg, B, src)?;
    ensure!(r == Err(crate::errno::EBUSY) && moved == -16, "MOVE of a shared THP: {r:?} {moved}");
    ensure_eq!(splits(), split, "no split");
    expect_block(&t, src, "src")?;
    expect_stamp(&t, src, 3, "src after the refused move")?;
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, move_of_a_shared_thp_is_ebusy_without_a_split);

/// Two CPUs fault the same empty PMD range: CPU 1 stops with its THP
/// allocated and a table deposited, before the PMD lock; CPU 0's fault
/// maps its THP; CPU 1 then finds the PMD populated, frees what it had
/// and its access goes through CPU 0's THP. One THP, nothing leaked.
fn two_cpus_fault_the_same_pmd() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let a = region(&t, A, 2 * HUGE)?;
    // The tables above the PMD exist already (the huge zero page next door).
    ensure_eq!(ok(t.load(a + HUGE), "read")?, 0, "the second 2 MiB");
    let bp = crate::testhooks::schedpoint::arm(&crate::testhooks::points::DO_HUGE_PMD_ANONYMOUS_PAGE_BEFORE_PMD_LOCK);
    let tt = t.clone();
    let job = on_cpu(1, "CPU 1's fault", move || tt.store(a + 8, 0x11))?;
    bp.wait_reached(5_000_000).map_err(|e| verdict("CPU 1", e))?;
    let frames = crate::mm::frames::free_frames();
    let tables = t.mm().pgtables.nr_tables.load(core::sync::atomic::Ordering::Acquire);
    ok(t.store(a + PAGE, 0x22), "CPU 0's fault")?;
    let head = expect_block(&t, a, "CPU 0's THP")?;
    bp.release();
    ok(job.join()?, "CPU 1's store")?;
    ensure_eq!(expect_block(&t, a, "after both")?, head, "one THP: CPU 0's");
    ensure_eq!(ok(t.load(a + 8), "read")?, 0x11, "CPU 1's store went to CPU 0's THP");
    ensure_eq!(ok(t.load(a + PAGE), "read")?, 0x22, "CPU 0's store");
    // CPU 0's THP and deposit took what CPU 1 gave back when it found the
    // PMD populated.
    ensure_eq!(crate::mm::frames::free_frames(), frames, "free frames: CPU 1's THP and table freed");
    ensure_eq!(t.mm().pgtables.nr_tables.load(core::sync::atomic::Ordering::Acquire), tables, "one deposit");
    expect_rss(&t, 512, 0, "one THP")?;
    s.finish()
}
kernel_test!(thp, two_cpus_fault_the_same_pmd, cpus = 2);

/// A 64 KiB folio of 16 tagged pages, swapped out to 16 contiguous slots.
fn swapped_mthp(s: &mut Scenario) -> Result<(Arc<Task>, usize), Verdict> {
    let t = s.spawn()?;
    let a = mmap(&t, A, HUGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?;
    ok(t.store(a + 16 * PAGE, 0), "the fault that maps the 64 KiB folio")?;
    let (pfn, _, _) = counts(&t, a + 16 * PAGE)?;
    ensure_eq!(Folio::get(pfn).nr_pages(), 16, "a 64 KiB folio");
    for p in 16..32 {
        stamp(&t, a, p)?;
    }
    let st = do_madvise(&t.mm(), (a + 16 * PAGE) as u64, (16 * PAGE) as u64, MADV_PAGEOUT)
        .map_err(|e| verdict("MADV_PAGEOUT", e))?;
    ensure_eq!(st.reclaimed, 1, "the 64 KiB folio reclaimed whole ({st:?})");
    Ok((t, a))
}

/// mTHP swap-in with every tag, or the known-wrong restore of the faulting
/// page's tags alone.
fn mthp_swapin(wrong: bool) -> Result<Result<(), Verdict>, Verdict> {
    let _swap = SwapOn::new()?;
    let _never = THP_ENABLED.set(crate::cmdline::ThpEnabled::Never as u64);
    let _k = THP_ORDER[4].set(crate::cmdline::ThpOrderPolicy::Always as u64);
    let mut s = Scenario::new();
    let (t, a) = swapped_mthp(&mut s)?;
    let v = wrong.then(|| crate::testhooks::variants::SWAPIN_MTHP_FAULTING_PAGE_TAGS_ONLY.enable());
    let r = t.load(with_tag(a + 21 * PAGE, tag_of(21)));
    drop(v);
    ensure_eq!(ok(r, "the swap-in fault")?, 0x7015, "the faulting page's data");
    let (pfn, _, _) = counts(&t, a + 16 * PAGE)?;
    let f = Folio::get(pfn);
    ensure_eq!((f.nr_pages(), f.mapcount()), (16, 16), "the whole folio came back and is mapped by its 16 ptes");
    drop(f);
    expect_rss(&t, 16, 0, "after the swap-in")?;
    ensure_eq!(t.mm().rss(crate::mm::mm_types::MM_SWAPENTS), 0, "no swap pte left");
    let kept = (|| {
        for p in 16..32 {
            expect_stamp(&t, a, p, "after the mTHP swap-in")?;
        }
        Ok(())
    })();
    s.finish()?;
    Ok(kept)
}

fn mthp_swapin_brings_the_folio_back_with_every_pages_tags() -> TestResult {
    mthp_swapin(false)?
}
kernel_test!(thp, mthp_swapin_brings_the_folio_back_with_every_pages_tags, ramdisk);

fn mthp_swapin_restoring_one_page_is_caught() -> TestResult {
    expect_caught(mthp_swapin(true), &["tag of granule", "MteSErr"], "the untagged pages")
}
kernel_test!(thp, mthp_swapin_restoring_one_page_is_caught, ramdisk);

/// Slots that are contiguous but not naturally aligned: two swapped-out
/// 64 KiB folios (slots S..S+31), and UFFDIO_MOVE of the swap ptes of
/// pages 1..16 to a new range, whose 64 KiB then holds S+1..S+16. The
/// correct swap-in falls back to page by page there; the masked first
/// entry reads the folio from S..S+15, one page off.
fn mthp_swapin_misaligned(wrong: bool) -> Result<Result<(), Verdict>, Verdict> {
    let _swap = SwapOn::new()?;
    let _never = THP_ENABLED.set(crate::cmdline::ThpEnabled::Never as u64);
    let _k = THP_ORDER[4].set(crate::cmdline::ThpOrderPolicy::Always as u64);
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, A, HUGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?;
    ok(t.store(a, 0), "the first 64 KiB")?;
    ok(t.store(a + 16 * PAGE, 0), "the second 64 KiB")?;
    for p in 0..32 {
        stamp(&t, a, p)?;
    }
    let st = do_madvise(&t.mm(), a as u64, (32 * PAGE) as u64, MADV_PAGEOUT).map_err(|e| verdict("MADV_PAGEOUT", e))?;
    ensure_eq!(st.reclaimed, 2, "both folios reclaimed ({st:?})");
    let (fd, arg) = move_setup(&t)?;
    let m = UffdioMove { dst: B as u64, src: (a + PAGE) as u64, len: (16 * PAGE) as u64, mode: 0, moved: 0 };
    let (r, back) = ok(t.ioctl_struct(fd, UFFDIO_MOVE, arg, &m), "UFFDIO_MOVE")?;
    ensure!(r == Ok(0) && back.moved == (16 * PAGE) as i64, "MOVE of 16 swap ptes: {r:?} {}", back.moved);
    let e0 = pte_to_swp_entry(pte_of(&t, B));
    ensure!(swp_offset(e0) % 16 == 1, "dst's first slot is one past an aligned one: {e0:?}");
    let v = wrong.then(|| crate::testhooks::variants::SWAPIN_MTHP_MASKED_ENTRY.enable());
    let r = t.load(with_tag(B + 3 * PAGE, tag_of(4)));
    drop(v);
    let got = (|| {
        // dst page i is src page i + 1.
        ensure_eq!(ok(r, "the swap-in fault")?, 0x7004, "dst page 3 (src page 4): data");
        if !wrong {
            ensure!(is_swap_pte(pte_of(&t, B + 4 * PAGE)), "misaligned slots: swapped in page by page");
        }
        for i in 0..16 {
            let at = B + i * PAGE;
            ensure_eq!(ok(t.load(with_tag(at, tag_of(i + 1))), "read")?, 0x7000 + i as u64 + 1, "dst page {i}: data");
            expect_tags(&t, at, |_| tag_of(i + 1), &format!("dst page {i}"))?;
        }
        Ok(())
    })();
    must(t.close(fd), "close")?;
    s.finish()?;
    Ok(got)
}

fn mthp_swapin_of_misaligned_slots_goes_page_by_page() -> TestResult {
    mthp_swapin_misaligned(false)?
}
kernel_test!(thp, mthp_swapin_of_misaligned_slots_goes_page_by_page, ramdisk);

fn mthp_swapin_from_a_masked_entry_is_caught() -> TestResult {
    expect_caught(mthp_swapin_misaligned(true), &["data", "MteSErr", "tag of"], "the masked entry")
}
kernel_test!(thp, mthp_swapin_from_a_masked_entry_is_caught, ramdisk);

/// A THP write-protected with UFFDIO_WRITEPROTECT (in place: still one
/// huge PMD), then moved whole (the PMD moves in one step): it keeps
/// uffd-wp and stays read-only at dst, as the 2026 fix on the list has it
/// (Linux made it writable and dropped uffd-wp).
fn move_keeps_uffd_wp_and_write_protection() -> TestResult {
    use crate::mm::userfaultfd::{UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT_MODE_WP};
    let (s, t, src) = thp_scenario()?;
    stamp(&t, src, 6)?;
    let (fd, arg) = move_setup(&t)?;
    let reg = UffdioRegister { start: src as u64, len: HUGE as u64, mode: UFFDIO_REGISTER_MODE_WP, ioctls: 0 };
    ok(t.ioctl_struct(fd, UFFDIO_REGISTER, arg, &reg), "REGISTER WP")?.0.map_err(|e| verdict("REGISTER WP", e))?;
    let wp = UffdioWriteprotect { start: src as u64, len: HUGE as u64, mode: UFFDIO_WRITEPROTECT_MODE_WP };
    ok(t.ioctl_struct(fd, UFFDIO_WRITEPROTECT, arg, &wp), "WRITEPROTECT")?.0.map_err(|e| verdict("WRITEPROTECT", e))?;
    ensure!(pte_uffd_wp(pte_of(&t, src + 6 * PAGE)), "src is uffd-wp");
    expect_block(&t, src, "WRITEPROTECT of the whole PMD keeps it")?;
    let (r, moved) = move_2m(&t, fd, arg, B, src)?;
    ensure!(r == Ok(0) && moved == HUGE as i64, "MOVE: {r:?} {moved}");
    for p in [0usize, 6, 511] {
        let pte = pte_of(&t, B + p * PAGE);
        ensure!(pte_uffd_wp(pte) && !pte_write(pte), "dst page {p} lost uffd-wp or became writable: {pte:?}");
    }
    expect_block(&t, B, "the moved PMD")?;
    expect_stamp(&t, B, 6, "moved")?;
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, move_keeps_uffd_wp_and_write_protection);

/// MADV_COLD over a whole THP makes its PMD old in place, with no split;
/// the next access makes it young again (the access-flag fault on the
/// PMD). Over part of it the PMD is split and only those ptes age.
fn madv_cold_ages_a_whole_pmd_in_place() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    stamp(&t, a, 3)?;
    let split = splits();
    must(t.madvise(a, HUGE, MADV_COLD), "MADV_COLD of the whole THP")?;
    expect_block(&t, a, "after MADV_COLD")?;
    ensure!(!pte_young(pmd_pte(huge_pmd(&t, a))), "the PMD is old");
    ensure_eq!(splits(), split, "thp_split_pmd");
    expect_stamp(&t, a, 3, "read after MADV_COLD")?;
    ensure!(pte_young(pmd_pte(huge_pmd(&t, a))), "the access made the PMD young again");
    must(t.madvise(a, PAGE, MADV_COLD), "MADV_COLD of one page")?;
    ensure_eq!(splits(), split + 1, "thp_split_pmd after a partial MADV_COLD");
    ensure!(!pte_young(pte_of(&t, a)) && pte_young(pte_of(&t, a + PAGE)), "only the first page aged");
    s.finish()
}
kernel_test!(thp, madv_cold_ages_a_whole_pmd_in_place);

/// UFFDIO_WRITEPROTECT of a whole PMD changes it in place (Linux's
/// change_huge_pmd): no split; a write raises the WP userfault on the
/// huge PMD; un-protecting makes the exclusive THP writable again.
fn writeprotect_of_a_whole_pmd_changes_it_in_place() -> TestResult {
    use crate::mm::userfaultfd::{UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT_MODE_WP, UFFD_PAGEFAULT_FLAG_WP};
    let (s, t, a) = thp_scenario()?;
    stamp(&t, a, 6)?;
    let head = expect_block(&t, a, "the THP")?;
    let split = splits();
    let u = UffdFd::new(&t, 0)?;
    u.register(a, HUGE, UFFDIO_REGISTER_MODE_WP)?;
    must(u.writeprotect(a, HUGE, UFFDIO_WRITEPROTECT_MODE_WP), "WP of the whole PMD")?;
    let pmd = pmd_pte(huge_pmd(&t, a));
    ensure!(pte_uffd_wp(pmd) && !pte_write(pmd), "the PMD is uffd-wp and read-only: {pmd:?}");
    match t.store(with_tag(a + 6 * PAGE, tag_of(6)), 1) {
        Err(crate::task::agent::Signal::UffdWait { .. }) => {}
        other => crate::fail!("a write to the write-protected THP should wait for the handler, got {other:?}"),
    }
    ensure!(u.read()?.is_some_and(|m| m.1 & UFFD_PAGEFAULT_FLAG_WP != 0), "a WP fault message");
    ensure_eq!(expect_block(&t, a, "after the WP fault")?, head, "the same THP, still one PMD");
    must(u.writeprotect(a, HUGE, 0), "un-WP of the whole PMD")?;
    let pmd = pmd_pte(huge_pmd(&t, a));
    ensure!(!pte_uffd_wp(pmd) && pte_write(pmd), "the exclusive THP is writable again: {pmd:?}");
    ok(t.store(with_tag(a + 6 * PAGE, tag_of(6)), 0x7006), "the write goes on")?;
    expect_stamp(&t, a, 6, "after WP and un-WP")?;
    ensure_eq!(splits(), split, "thp_split_pmd: nothing was split");
    s.finish()
}
kernel_test!(thp, writeprotect_of_a_whole_pmd_changes_it_in_place);

/// UFFDIO_WRITEPROTECT of part of a PMD splits it (as Linux): only the
/// protected page is uffd-wp, the others stay writable.
fn writeprotect_of_part_of_a_pmd_splits_it() -> TestResult {
    use crate::mm::userfaultfd::{UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT_MODE_WP};
    let (s, t, a) = thp_scenario()?;
    stamp(&t, a, 6)?;
    let u = UffdFd::new(&t, 0)?;
    u.register(a, HUGE, UFFDIO_REGISTER_MODE_WP)?;
    let split = splits();
    must(u.writeprotect(a + 6 * PAGE, PAGE, UFFDIO_WRITEPROTECT_MODE_WP), "WP of one page")?;
    ensure_eq!(splits(), split + 1, "thp_split_pmd");
    ensure!(!pmd_trans_huge(huge_pmd(&t, a)), "split into ptes");
    ensure!(pte_uffd_wp(pte_of(&t, a + 6 * PAGE)) && !pte_write(pte_of(&t, a + 6 * PAGE)), "page 6 protected");
    ensure!(!pte_uffd_wp(pte_of(&t, a + 7 * PAGE)) && pte_write(pte_of(&t, a + 7 * PAGE)), "page 7 not");
    ok(t.store(a + 7 * PAGE, 7), "a write to page 7")?;
    expect_stamp(&t, a, 6, "page 6")?;
    s.finish()
}
kernel_test!(thp, writeprotect_of_part_of_a_pmd_splits_it);

/// A PMD migration entry (set by hand: nothing migrates THPs here), and
/// `what` on CPU 1 at its range must wait until the THP is back.
fn waits_for_a_pmd_migration_entry<T: Send + core::fmt::Debug + 'static>(
    what: &str,
    work: impl FnOnce(Arc<Task>, u64, usize) -> T + Send + 'static,
    check: impl FnOnce(&Task, T) -> TestResult,
) -> TestResult {
    let (s, t, src) = thp_scenario()?;
    stamp(&t, src, 2)?;
    let head = expect_block(&t, src, "src")?;
    let (fd, arg) = move_setup(&t)?;
    let orig = huge_pmd(&t, src);
    let migration = pte_pmd(swp_entry_to_pte(make_migration_entry(head, true, true)));
    ensure!(is_pmd_migration_entry(migration), "the entry made is a PMD migration entry");
    let set = |v: pmd_t| -> TestResult {
        let l = t.mm().pgtables.pmd_lock(src, false).ok().flatten().ok_or_else(|| verdict("PMD", "gone"))?;
        l.set(v, t.mm().asid);
        Ok(())
    };
    set(migration)?;
    let tt = t.clone();
    let job = on_cpu(1, what, move || work(tt, fd, arg))?;
    // Up to 200 ms for CPU 1 to finish while the entry is there (a loaded
    // host may start it late); a correct kernel waits all that time.
    let until = crate::arch::cpu::counter() + crate::arch::cpu::counter_freq() / 5;
    while !job.finished() && crate::arch::cpu::counter() < until {
        core::hint::spin_loop();
    }
    let early = job.finished();
    set(orig)?; // the migration finishes
    crate::arch::cpu::sev();
    let r = job.join()?;
    ensure!(!early, "{what} did not wait for the PMD migration entry");
    check(&t, r)?;
    must(t.close(fd), "close")?;
    s.finish()
}

fn a_fault_waits_for_a_pmd_migration_entry() -> TestResult {
    waits_for_a_pmd_migration_entry(
        "CPU 1's read",
        |t, _, _| t.load(with_tag(A + 2 * PAGE, tag_of(2))),
        |_, r| {
            ensure_eq!(ok(r, "the read")?, 0x7002, "the read after the migration");
            Ok(())
        },
    )
}
kernel_test!(thp, a_fault_waits_for_a_pmd_migration_entry, cpus = 2);

fn move_waits_for_a_pmd_migration_entry() -> TestResult {
    waits_for_a_pmd_migration_entry(
        "CPU 1's MOVE",
        |t, fd, arg| {
            let m = UffdioMove { dst: B as u64, src: A as u64, len: HUGE as u64, mode: 0, moved: 0 };
            t.ioctl_struct(fd, UFFDIO_MOVE, arg, &m).map(|(r, back)| (r, back.moved))
        },
        |t, r| {
            let (r, moved) = ok(r, "the MOVE")?;
            ensure!(r == Ok(0) && moved == HUGE as i64, "MOVE after the migration: {r:?} {moved}");
            expect_block(t, B, "dst")?;
            expect_stamp(t, B, 2, "moved after the migration")
        },
    )
}
kernel_test!(thp, move_waits_for_a_pmd_migration_entry, cpus = 2);

fn move_taking_a_pmd_migration_entry_for_a_folio_is_caught() -> TestResult {
    move_waits_for_a_pmd_migration_entry()?;
    let _v = crate::testhooks::variants::MOVE_PMD_FOLIO_ON_MIGRATION_ENTRY.enable();
    expect_caught(
        Ok(move_waits_for_a_pmd_migration_entry()),
        &["did not wait for the PMD migration entry", "MOVE after the migration"],
        "uffd_move:pmd_folio_on_migration_entry",
    )
}
kernel_test!(thp, move_taking_a_pmd_migration_entry_for_a_folio_is_caught, cpus = 2);

/// The kernel writing user memory in a huge zero PMD (an ioctl's reply)
/// takes the write fault that replaces it with a THP.
fn a_kernel_write_into_the_huge_zero_page_gets_a_thp() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    ensure_eq!(ok(t.load(a), "read")?, 0, "read");
    let zero = expect_block(&t, a, "the huge zero page")?;
    let fd = must(t.userfaultfd(0), "userfaultfd")?;
    let (r, api) = ok(
        t.ioctl_struct(fd, UFFDIO_API, a + 8 * PAGE, &UffdioApi { api: UFFD_API, features: 0, ioctls: 0 }),
        "UFFDIO_API",
    )?;
    r.map_err(|e| verdict("UFFDIO_API", e))?;
    ensure!(api.ioctls != 0, "the reply");
    ensure!(expect_block(&t, a, "after the kernel's write")? != zero, "a THP replaced the huge zero page");
    ensure_eq!(huge_zero_pfn(), Some(zero), "the huge zero page itself is unchanged");
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, a_kernel_write_into_the_huge_zero_page_gets_a_thp);

fn nohugepage_refuses_mthp_too() -> TestResult {
    let _k = THP_ORDER[4].set(crate::cmdline::ThpOrderPolicy::Always as u64);
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, A, HUGE, RW, ANON | MAP_FIXED, -1)?;
    must(t.madvise(a, HUGE, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE")?;
    ok(t.store(a + 20 * PAGE, 1), "write")?;
    let (pfn, _, _) = counts(&t, a + 20 * PAGE)?;
    ensure_eq!(Folio::get(pfn).nr_pages(), 1, "a small page under MADV_NOHUGEPAGE");
    s.finish()
}
kernel_test!(thp, nohugepage_refuses_mthp_too);

// --- the PMD windows: a huge PMD seen without the lock changes before the
// lock is taken, and each path must notice -------------------------------------

use crate::testhooks::points;

fn split_on(t: &Task, a: usize) -> TestResult {
    huge_memory::split_huge_pmd(&t.mm().pgtables, a);
    ensure!(!pmd_trans_huge(huge_pmd(t, a)), "the split");
    Ok(())
}

/// MOVE saw a THP; it is split before the PMD lock: the move notices
/// (pmd_same fails), retries and moves the pte table instead.
fn move_of_a_pmd_split_under_it_moves_the_ptes() -> TestResult {
    let (s, t, src) = thp_scenario()?;
    stamp(&t, src, 8)?;
    let (fd, arg) = move_setup(&t)?;
    let tt = t.clone();
    let r = window(
        &points::MOVE_HUGE_PMD_AFTER_LOCKLESS_READ,
        move || {
            let m = UffdioMove { dst: B as u64, src: A as u64, len: HUGE as u64, mode: 0, moved: 0 };
            tt.ioctl_struct(fd, UFFDIO_MOVE, arg, &m).map(|(r, b)| (r, b.moved))
        },
        || split_on(&t, src),
    )?;
    let (r, moved) = ok(r, "MOVE")?;
    ensure!(r == Ok(0) && moved == HUGE as i64, "MOVE after the split: {r:?} {moved}");
    ensure!(!pmd_trans_huge(huge_pmd(&t, B)) && pte_present(pte_of(&t, B + 8 * PAGE)), "dst is mapped by ptes");
    expect_stamp(&t, B, 8, "moved after the split")?;
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, move_of_a_pmd_split_under_it_moves_the_ptes, cpus = 2);

/// MOVE saw a THP; MADV_DONTNEED zaps it before the PMD lock: the source
/// is a hole now, ENOENT, nothing moved and nothing leaked.
fn move_of_a_pmd_zapped_under_it_is_enoent() -> TestResult {
    let (s, t, src) = thp_scenario()?;
    stamp(&t, src, 8)?;
    let (fd, arg) = move_setup(&t)?;
    let tt = t.clone();
    let r = window(
        &points::MOVE_HUGE_PMD_AFTER_LOCKLESS_READ,
        move || {
            let m = UffdioMove { dst: B as u64, src: A as u64, len: HUGE as u64, mode: 0, moved: 0 };
            tt.ioctl_struct(fd, UFFDIO_MOVE, arg, &m).map(|(r, b)| (r, b.moved))
        },
        || must(t.madvise(src, HUGE, MADV_DONTNEED), "MADV_DONTNEED"),
    )?;
    let (r, moved) = ok(r, "MOVE")?;
    ensure!(r == Err(crate::errno::ENOENT) && moved == -2, "MOVE of a zapped source: {r:?} {moved}");
    ensure!(!pmd_trans_huge(huge_pmd(&t, B)) && pte_none(pte_of(&t, B + 8 * PAGE)), "nothing arrived at dst");
    expect_rss(&t, 1, 0, "only the argument page")?;
    must(t.close(fd), "close")?;
    s.finish()
}
kernel_test!(thp, move_of_a_pmd_zapped_under_it_is_enoent, cpus = 2);

/// The child's COW write saw its shared PMD; MADV_DONTNEED zaps it first:
/// the write lands in a fresh page, the parent keeps its THP.
fn a_cow_fault_on_a_pmd_zapped_under_it_gets_a_fresh_page() -> TestResult {
    let (mut s, p, a) = thp_scenario()?;
    stamp(&p, a, 1)?;
    let c = s.fork(&p)?;
    let cc = c.clone();
    let r = window(
        &points::HUGE_PMD_FAULT_AFTER_LOCKLESS_READ,
        move || cc.store(a + 3 * PAGE, 0x33),
        || must(c.madvise(a, HUGE, MADV_DONTNEED), "the child's MADV_DONTNEED"),
    )?;
    ok(r, "the child's write")?;
    ensure_eq!(ok(c.load(a + 3 * PAGE), "child")?, 0x33, "the child's write");
    ensure_eq!(ok(c.load(with_tag(a + PAGE, 0)), "child")?, 0, "the child's zapped page reads zero");
    expect_block(&p, a, "the parent's THP")?;
    expect_stamp(&p, a, 1, "the parent")?;
    s.finish()
}
kernel_test!(thp, a_cow_fault_on_a_pmd_zapped_under_it_gets_a_fresh_page, cpus = 2);

/// MADV_DONTNEED listed a huge PMD; it is split before the lock: the zap
/// notices and clears the ptes instead. Nothing stays mapped or counted.
fn a_zap_of_a_pmd_split_under_it_clears_the_ptes() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    stamp(&t, a, 5)?;
    let tt = t.clone();
    let r = window(&points::ZAP_HUGE_PMD_BEFORE_LOCK, move || tt.madvise(A, HUGE, MADV_DONTNEED), || split_on(&t, a))?;
    must(r, "MADV_DONTNEED")?;
    for p in [0usize, 5, 511] {
        ensure!(pte_none(pte_of(&t, a + p * PAGE)), "page {p} still mapped");
    }
    expect_rss(&t, 0, 0, "after the zap")?;
    s.finish()
}
kernel_test!(thp, a_zap_of_a_pmd_split_under_it_clears_the_ptes, cpus = 2);

/// fork listed a huge PMD; reclaim-like splitting turns it into ptes
/// before fork copies it: the child gets the ptes, shared COW, with the
/// data and tags.
fn fork_of_a_pmd_split_under_it_copies_the_ptes() -> TestResult {
    let (mut s, p, a) = thp_scenario()?;
    stamp(&p, a, 7)?;
    let pp = p.clone();
    let r = window(&points::COPY_HUGE_PMD_BEFORE_LOCK, move || pp.fork(), || split_on(&p, a))?;
    let pid = must(r, "fork")?;
    let c = Task::get(pid).ok_or_else(|| verdict("fork", "no child"))?;
    s.tasks.push(c.clone());
    ensure!(!pmd_trans_huge(huge_pmd(&c, a)), "the child has ptes");
    expect_stamp(&c, a, 7, "the child")?;
    ensure!(!pte_write(pte_of(&p, a + 7 * PAGE)), "the parent's pte is shared read-only");
    ok(p.store(with_tag(a + 7 * PAGE, tag_of(7)), 0x77), "the parent's COW write")?;
    expect_stamp(&c, a, 7, "the child after the parent's write")?;
    s.finish()
}
kernel_test!(thp, fork_of_a_pmd_split_under_it_copies_the_ptes, cpus = 2);

// The huge-zero state in the PMD windows: a path read the huge zero PMD
// without the lock and it became a THP (or went away) before the lock.
// (fork holds the mmap write lock across copy_huge_pmd, so no fault can
// change a PMD in its window; only lockless changers such as a split can,
// as fork_of_a_pmd_split_under_it_copies_the_ptes tests.)

/// `point` is in the write fault on a huge zero PMD: another write
/// replaces it with a THP first, and the fault ends up writing into that
/// THP (re-reading the PMD under its lock, or refaulting): one THP, both
/// writes, no split, nothing leaked.
fn zero_pmd_replaced_under_a_write(point: &'static crate::testhooks::points::Point) -> TestResult {
    let (s, t, a) = thp_scenario()?;
    ensure_eq!(ok(t.load(a), "read")?, 0, "the huge zero page");
    let zero = expect_block(&t, a, "the huge zero page")?;
    let (frames, split) = (crate::mm::frames::free_frames(), splits());
    let tt = t.clone();
    let r = window(point, move || tt.store(a + 8 * PAGE, 0x88), || ok(t.store(a + 9 * PAGE, 0x99), "CPU 0's write"))?;
    ok(r, "CPU 1's write")?;
    let head = expect_block(&t, a, "after both writes")?;
    ensure!(head != zero, "a THP replaced the huge zero page");
    ensure_eq!((ok(t.load(a + 8 * PAGE), "read")?, ok(t.load(a + 9 * PAGE), "read")?), (0x88, 0x99), "both writes");
    ensure_eq!(splits(), split, "thp_split_pmd: the fault did not split the new THP");
    ensure_eq!(crate::mm::frames::free_frames() + 512, frames, "free frames: one THP taken, the other given back");
    expect_rss(&t, 512, 0, "one THP")?;
    ensure!(!Folio::get(zero).test(PG_MTE_TAGGED), "the huge zero page stays untagged");
    s.finish()
}

fn a_write_on_a_huge_zero_pmd_replaced_before_the_fault_locks_it() -> TestResult {
    zero_pmd_replaced_under_a_write(&points::HUGE_PMD_FAULT_AFTER_LOCKLESS_READ)
}
kernel_test!(thp, a_write_on_a_huge_zero_pmd_replaced_before_the_fault_locks_it, cpus = 2);

fn a_write_on_a_huge_zero_pmd_replaced_while_its_thp_is_allocated() -> TestResult {
    zero_pmd_replaced_under_a_write(&points::DO_HUGE_ZERO_WP_PMD_BEFORE_PMD_LOCK)
}
kernel_test!(thp, a_write_on_a_huge_zero_pmd_replaced_while_its_thp_is_allocated, cpus = 2);

/// A write fault saw the huge zero PMD; MADV_DONTNEED zapped it first: the
/// fault finds the PMD empty and refaults, which maps a new THP (as Linux
/// retries the fault), with the write in it.
fn a_write_on_a_huge_zero_pmd_zapped_under_it_refaults_a_thp() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    ensure_eq!(ok(t.load(a), "read")?, 0, "the huge zero page");
    let tt = t.clone();
    let r = window(
        &points::HUGE_PMD_FAULT_AFTER_LOCKLESS_READ,
        move || tt.store(a + 8 * PAGE, 0x88),
        || must(t.madvise(a, HUGE, MADV_DONTNEED), "MADV_DONTNEED"),
    )?;
    ok(r, "CPU 1's write")?;
    expect_block(&t, a, "the refault")?;
    ensure_eq!(ok(t.load(a + 8 * PAGE), "read")?, 0x88, "the write");
    expect_tags(&t, a + 8 * PAGE, |_| 0, "a new PROT_MTE THP")?;
    expect_rss(&t, 512, 0, "one THP")?;
    s.finish()
}
kernel_test!(thp, a_write_on_a_huge_zero_pmd_zapped_under_it_refaults_a_thp, cpus = 2);

/// MADV_DONTNEED listed a huge zero PMD; a write replaced it with a THP
/// before the zap took the lock: the zap frees the THP, nothing leaks.
fn a_zap_of_a_huge_zero_pmd_replaced_under_it_frees_the_thp() -> TestResult {
    let (s, t, a) = thp_scenario()?;
    ensure_eq!(ok(t.load(a), "read")?, 0, "the huge zero page");
    let frames = crate::mm::frames::free_frames();
    let tt = t.clone();
    let r = window(
        &points::ZAP_HUGE_PMD_BEFORE_LOCK,
        move || tt.madvise(A, HUGE, MADV_DONTNEED),
        || {
            ok(t.store(a + 3 * PAGE, 0x33), "CPU 0's write")?;
            expect_block(&t, a, "the THP").map(|_| ())
        },
    )?;
    must(r, "MADV_DONTNEED")?;
    ensure!(pmd_none(huge_pmd(&t, a)), "the THP was zapped: {:?}", huge_pmd(&t, a));
    expect_rss(&t, 0, 0, "after the zap")?;
    // The huge zero PMD's deposit was there before; the THP's replaced it.
    ensure_eq!(crate::mm::frames::free_frames(), frames + 1, "free frames: the THP and the deposit freed");
    ensure_eq!(ok(t.load(a + 3 * PAGE), "read")?, 0, "the range reads zero again");
    s.finish()
}
kernel_test!(thp, a_zap_of_a_huge_zero_pmd_replaced_under_it_frees_the_thp, cpus = 2);

/// MADV_PAGEOUT of the THP at A on CPU 1, with `change` made on CPU 0
/// between reclaim's lockless listing and its locked look at each page.
fn reclaim_with_a_change(
    t: &Task,
    change: impl FnOnce() -> TestResult,
) -> Result<crate::mm::vmscan::ReclaimStats, Verdict> {
    let mm = t.mm();
    let r = window(
        &points::RECLAIM_RANGE_AFTER_LISTING,
        move || do_madvise(&mm, A as u64, HUGE as u64, MADV_PAGEOUT),
        change,
    )?;
    r.map_err(|e| verdict("MADV_PAGEOUT", e))
}

/// MADV_PAGEOUT listed a THP's pages; MADV_DONTNEED zapped the PMD before
/// reclaim read them under their locks: nothing is reclaimed, no slot is
/// taken, nothing leaks.
fn reclaim_of_a_pmd_zapped_under_it_finds_nothing() -> TestResult {
    let _swap = SwapOn::new()?;
    let (s, t, a) = thp_scenario()?;
    stamp(&t, a, 6)?;
    let st = reclaim_with_a_change(&t, || must(t.madvise(a, HUGE, MADV_DONTNEED), "MADV_DONTNEED"))?;
    ensure_eq!((st.reclaimed, st.split), (0, 0), "reclaim of a zapped THP ({st:?})");
    ensure!(
        crate::mm::swapfile::slots_in_use().is_empty(),
        "swap slots taken: {:?}",
        crate::mm::swapfile::slots_in_use()
    );
    expect_rss(&t, 0, 0, "after the zap")?;
    s.finish()
}
kernel_test!(thp, reclaim_of_a_pmd_zapped_under_it_finds_nothing, cpus = 2, ramdisk);

/// Reclaim listed a THP; it was zapped and another THP faulted in at the
/// same place before reclaim took the locks: reclaim swaps out what is
/// mapped now, and that is what comes back, with its tags.
fn reclaim_of_a_pmd_replaced_under_it_swaps_the_new_thp() -> TestResult {
    let _swap = SwapOn::new()?;
    let (s, t, a) = thp_scenario()?;
    stamp(&t, a, 6)?;
    let st = reclaim_with_a_change(&t, || {
        must(t.madvise(a, HUGE, MADV_DONTNEED), "MADV_DONTNEED")?;
        stamp(&t, a, 7)?;
        expect_block(&t, a, "the new THP").map(|_| ())
    })?;
    ensure_eq!(st.reclaimed, 1, "the new THP reclaimed ({st:?})");
    ensure!(is_swap_pte(pte_of(&t, a + 7 * PAGE)), "the new THP's page is swapped out");
    expect_stamp(&t, a, 7, "the new THP's page back from swap")?;
    ensure_eq!(ok(t.load(a + 6 * PAGE), "read")?, 0, "the zapped page stays zero");
    s.finish()
}
kernel_test!(thp, reclaim_of_a_pmd_replaced_under_it_swaps_the_new_thp, cpus = 2, ramdisk);

/// Reclaim of a PMD THP when no aligned run of 512 slots is free (a 600-slot
/// device): the folio is split and its pages swapped out one by one, each
/// with its own tags, and they come back with them.
fn reclaim_without_a_run_of_slots_splits_the_thp() -> TestResult {
    let _swap = SwapOn::with_slots(600)?;
    let (s, t, a) = thp_scenario()?;
    for p in [0, 1, 300, 511] {
        stamp(&t, a, p)?;
    }
    expect_block(&t, a, "before reclaim")?;
    let st = do_madvise(&t.mm(), a as u64, HUGE as u64, MADV_PAGEOUT).map_err(|e| verdict("MADV_PAGEOUT", e))?;
    ensure_eq!((st.split, st.reclaimed), (1, 512), "one THP split, its 512 pages reclaimed ({st:?})");
    expect_rss(&t, 0, 0, "swapped out")?;
    for p in [0, 1, 300, 511] {
        ensure!(is_swap_pte(pte_of(&t, a + p * PAGE)), "page {p} is not swapped out");
        expect_stamp(&t, a, p, "swapped back in")?;
    }
    s.finish()
}
kernel_test!(thp, reclaim_without_a_run_of_slots_splits_the_thp, ramdisk);

/// A THP whose pages are tagged unevenly (only some granules of some pages
/// carry tags): every page's tags, zero or not, come back after swap.
fn mixed_tags_in_a_thp_survive_swap() -> TestResult {
    let _swap = SwapOn::new()?;
    let (s, t, a) = thp_scenario()?;
    ok(t.store(a, 0), "fault")?;
    // Page 10: granules alternate 0 and 9; page 11 left at 0; page 12 all 4.
    tag_page(&t, a + 10 * PAGE, |g| if g % 2 == 0 { 0 } else { 9 })?;
    tag_page(&t, a + 12 * PAGE, |_| 4)?;
    let st = do_madvise(&t.mm(), a as u64, HUGE as u64, MADV_PAGEOUT).map_err(|e| verdict("MADV_PAGEOUT", e))?;
    ensure_eq!(st.reclaimed, 1, "the THP reclaimed whole ({st:?})");
    expect_tags(&t, a + 10 * PAGE, |g| if g % 2 == 0 { 0 } else { 9 }, "page 10")?;
    expect_tags(&t, a + 11 * PAGE, |_| 0, "page 11")?;
    expect_tags(&t, a + 12 * PAGE, |_| 4, "page 12")?;
    s.finish()
}
kernel_test!(thp, mixed_tags_in_a_thp_survive_swap, ramdisk);
