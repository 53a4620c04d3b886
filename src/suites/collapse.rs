//! Suite `collapse`: khugepaged and MADV_COLLAPSE at EL0: a 2 MiB range
//! mapped by ptes becomes one PMD-mapped THP with every page's data and
//! tags, or is refused with the SCAN_* result (and MADV_COLLAPSE's errno)
//! Linux gives; swapped-out stragglers come back with their tags; a
//! refused round 2 puts the page table back as it was; the uffd-wp bit
//! set while the mmap lock was dropped is seen (seed 002); and collapses
//! race faults, zaps, munmap, fork, UFFDIO_MOVE, reclaim and exit on real
//! vCPUs.

use super::scenario::*;
use crate::arch::mte::with_tag;
use crate::errno::{Errno, EAGAIN, EBUSY, EINVAL, ENOMEM};
use crate::harness::{TestResult, Verdict};
use crate::mm::folio::{frame_tags, read_frame, Folio, PG_ANON_EXCLUSIVE, PG_MTE_TAGGED};
use crate::mm::khugepaged::{self, ScanResult, ScanResult::*};
use crate::mm::mmap::*;
use crate::mm::pte::*;
use crate::mm::userfaultfd::UFFDIO_WRITEPROTECT_MODE_WP;
use crate::mm::userfaultfd::{UFFDIO_REGISTER_MODE_MISSING, UFFDIO_REGISTER_MODE_WP, UFFD_FEATURE_MOVE};
use crate::task::agent::Signal;
use crate::task::Task;
use crate::testhooks::fault_inject::{Spec, FOLIO_ALLOC};
use crate::testhooks::knobs::*;
use crate::testhooks::{points, variants};
use crate::{ensure, ensure_eq, fail, kernel_test};
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;

const HUGE: usize = 2 << 20;
const NR: usize = 512;
/// 2 MiB-aligned addresses no other mapping uses.
const A: usize = 0x40_0000_0000;
const B: usize = 0x50_0000_0000;

fn tag_of(p: usize) -> u8 {
    (p % 13) as u8 + 1
}

fn word(p: usize) -> u64 {
    0xC0_0000 + p as u64
}

/// Page `p` of the range at `at` written at EL0: tagged tag_of(p) whole
/// (PROT_MTE) and word(p) stored at its start.
fn write_page(t: &Task, at: usize, p: usize, mte: bool) -> TestResult {
    let a = at + p * PAGE;
    if mte {
        ok(t.tag_range(with_tag(a, tag_of(p)), PAGE), "STG of a page")?;
        ok(t.store(with_tag(a, tag_of(p)), word(p)), "write")
    } else {
        ok(t.store(a, word(p)), "write")
    }
}

/// A 2 MiB anonymous range at `at` (PROT_MTE if `mte`) whose `pages` are
/// written through ptes (MADV_NOHUGEPAGE while they are), then
/// MADV_HUGEPAGE: what khugepaged finds in a process that grew its heap a
/// page at a time.
fn fill(t: &Task, at: usize, mte: bool, pages: impl IntoIterator<Item = usize>) -> TestResult {
    fill_len(t, at, HUGE, mte, pages)
}

/// `fill` over one VMA of `len` bytes (pages counted from `at`).
fn fill_len(t: &Task, at: usize, len: usize, mte: bool, pages: impl IntoIterator<Item = usize>) -> TestResult {
    let prot = if mte { RW | PROT_MTE } else { RW };
    ensure_eq!(mmap(t, at, len, prot, ANON | MAP_FIXED, -1)?, at, "MAP_FIXED");
    must(t.madvise(at, len, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE")?;
    for p in pages {
        write_page(t, at, p, mte)?;
    }
    must(t.madvise(at, len, MADV_HUGEPAGE), "MADV_HUGEPAGE")
}

/// A THP scenario with one task whose range at A has `pages` written.
fn filled(mte: bool, pages: impl IntoIterator<Item = usize>) -> Result<(Scenario, Arc<Task>), Verdict> {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    fill(&t, A, mte, pages)?;
    Ok((s, t))
}

/// A 2 MiB folio with every byte and tag set, freed again: the frame
/// allocator hands the same frames to the collapse's new THP next, so a
/// page the collapse leaves unwritten shows stale data or tags instead of
/// zero by luck.
fn dirty_the_next_thp() -> TestResult {
    let f = Folio::alloc(9).ok_or_else(|| verdict("a 2 MiB folio", "no memory"))?;
    for i in 0..NR {
        f.set_tags(i, &[0xA5; crate::arch::mte::PAGE_TAG_BYTES]);
        f.write(i, 0, &[0x5A; PAGE]);
    }
    drop(f);
    Ok(())
}

fn all() -> core::ops::Range<usize> {
    0..NR
}

fn collapse(t: &Task, at: usize) -> Result<Result<(), Errno>, Verdict> {
    returned(t.madvise(at, HUGE, MADV_COLLAPSE), "MADV_COLLAPSE")
}

/// The SCAN_* result of the last scan of the range at `at` in `t`'s mm.
fn last_result(t: &Task, at: usize) -> Option<ScanResult> {
    khugepaged::trace(&t.mm()).iter().rev().find(|s| s.addr == at).map(|s| s.result)
}

fn expect_result(t: &Task, at: usize, want: ScanResult, what: &str) -> TestResult {
    ensure_eq!(last_result(t, at), Some(want), "{what}: the scan result");
    Ok(())
}

/// MADV_COLLAPSE of the range fails with `errno` and the scan says `why`.
fn expect_refused(t: &Task, at: usize, errno: Errno, why: ScanResult, what: &str) -> TestResult {
    ensure_eq!(collapse(t, at)?, Err(errno), "{what}: MADV_COLLAPSE");
    expect_result(t, at, why, what)
}

/// khugepaged's result for the range at `at`, from as many passes as it
/// takes to reach it (the scan goes on from where the last one stopped).
fn khugepaged_scan(t: &Task, at: usize) -> Result<ScanResult, Verdict> {
    let id = t.mm().id;
    match scan_of(id, at) {
        Some(r) => Ok(r),
        None => fail!("khugepaged never scanned the range at {at:#x} of mm {id}"),
    }
}

/// khugepaged passes until one scans mm `id`'s range at `at` (at most 4).
fn scan_of(id: u64, at: usize) -> Option<ScanResult> {
    (0..4)
        .find_map(|_| khugepaged::khugepaged_scan_once().into_iter().find(|s| s.mm == id && s.addr == at))
        .map(|s| s.result)
}

/// A huge PMD at `at` mapping an exclusive order-9 folio, mapped 512
/// times and referenced by those mappings only; its head pfn.
fn expect_thp(t: &Task, at: usize, what: &str) -> Result<u64, Verdict> {
    let pmd = t.mm().pgtables.pmd_peek(at);
    ensure!(pmd_trans_huge(pmd), "{what}: no huge PMD at {at:#x}: {pmd:?}");
    ensure_eq!(t.mm().pgtables.table_of(at), None, "{what}: a pte table beside the huge PMD");
    let f = Folio::get(pte_pfn(pmd_pte(pmd)));
    ensure_eq!((f.order(), f.mapcount(), f.refcount()), (9, 512, 513), "{what}: order, mapcount, refcount (+ ours)");
    ensure!(f.test(PG_ANON_EXCLUSIVE), "{what}: the collapsed THP is exclusive");
    Ok(f.pfn())
}

/// Every page of the range at `at` as the kernel sees it (the page mapped
/// there, read through the linear map): word(p) and tag_of(p) for the
/// pages in `written`, zero data and zero tags for the others; then at
/// EL0, on a sample, the data through a tagged pointer and a wrong tag
/// faulting.
fn expect_pages(t: &Task, at: usize, mte: bool, written: impl Fn(usize) -> bool, what: &str) -> TestResult {
    let mm = t.mm();
    for p in all() {
        let pte = mm.pgtables.peek(at + p * PAGE);
        ensure!(pte_present(pte), "{what}: page {p} is not present: {pte:?}");
        let mut w = [0u8; 8];
        read_frame(pte_pfn(pte), 0, &mut w);
        let (want_word, want_tag) = if written(p) { (word(p), if mte { tag_of(p) } else { 0 }) } else { (0, 0) };
        ensure_eq!(u64::from_le_bytes(w), want_word, "{what}: data of page {p}");
        if mte {
            let tags = frame_tags(pte_pfn(pte));
            let got = (tags[0] & 0xf, tags[0] >> 4, tags[127] >> 4);
            ensure_eq!(got, (want_tag, want_tag, want_tag), "{what}: tags of page {p} (granules 0, 1, 255)");
            ensure!(tags.iter().all(|&b| b == want_tag * 0x11), "{what}: a granule of page {p} lost its tag");
        }
    }
    for p in [0, 1, 7, 255, 256, 510, 511] {
        let a = at + p * PAGE;
        let (want, tag) = if written(p) { (word(p), tag_of(p)) } else { (0, 0) };
        if mte {
            ensure_eq!(ok(t.load(with_tag(a, tag)), what)?, want, "{what}: EL0 read of page {p}");
            expect_tags(t, a, |_| tag, &format!("{what}: page {p} at EL0"))?;
        } else {
            ensure_eq!(ok(t.load(a), what)?, want, "{what}: EL0 read of page {p}");
        }
    }
    Ok(())
}

/// The pte table at `at` and its 512 ptes.
fn table_snapshot(t: &Task, at: usize) -> (Option<u64>, Vec<pte_t>) {
    let mm = t.mm();
    (mm.pgtables.table_of(at), all().map(|p| mm.pgtables.peek(at + p * PAGE)).collect())
}

fn expect_table_kept(t: &Task, at: usize, before: &(Option<u64>, Vec<pte_t>), what: &str) -> TestResult {
    let now = table_snapshot(t, at);
    ensure!(
        before.0.is_some() && now.0 == before.0,
        "{what}: the pte table is not the one that was there: {:?} -> {:?}",
        before.0,
        now.0
    );
    for p in all() {
        ensure_eq!(now.1[p], before.1[p], "{what}: pte {p} changed");
    }
    Ok(())
}

fn pfn_at(t: &Task, a: usize) -> Result<u64, Verdict> {
    let pte = pte_of(t, a);
    ensure!(pte_present(pte), "no page at {a:#x}: {pte:?}");
    Ok(pte_pfn(pte))
}

fn free_frames() -> usize {
    crate::mm::frames::free_frames()
}

// --- MADV_COLLAPSE: a range becomes a THP -------------------------------------------------

fn full_range(mte: bool) -> TestResult {
    let (s, t) = filled(mte, all())?;
    let before = khugepaged::stats();
    let (frames, tables) = (free_frames(), t.mm().pgtables.nr_tables.load(core::sync::atomic::Ordering::Acquire));
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE of a full range");
    expect_result(&t, A, SCAN_SUCCEED, "full range")?;
    let head = expect_thp(&t, A, "after MADV_COLLAPSE")?;
    ensure_eq!(Folio::get(head).test(PG_MTE_TAGGED), mte, "PG_mte_tagged of the THP");
    expect_pages(&t, A, mte, |_| true, "after MADV_COLLAPSE")?;
    expect_rss(&t, 512, 0, "one THP")?;
    let after = khugepaged::stats();
    ensure_eq!(after.pages_collapsed, before.pages_collapsed + 1, "pages_collapsed");
    ensure_eq!(after.thp_collapse_alloc, before.thp_collapse_alloc + 1, "thp_collapse_alloc");
    ensure_eq!(free_frames(), frames, "free frames: 512 pages freed, one THP taken");
    let tables_now = t.mm().pgtables.nr_tables.load(core::sync::atomic::Ordering::Acquire);
    ensure_eq!(tables_now, tables, "page tables: the old one is the THP's deposit");
    ok(t.store(with_tag(A + 5 * PAGE, if mte { tag_of(5) } else { 0 }), 77), "a write to the THP")?;
    ensure!(pmd_trans_huge(t.mm().pgtables.pmd_peek(A)), "a write keeps the PMD (writable, no split)");
    s.finish()
}

fn madv_collapse_maps_a_tagged_range_with_every_page_and_tag() -> TestResult {
    full_range(true)
}
kernel_test!(collapse, madv_collapse_maps_a_tagged_range_with_every_page_and_tag);

fn madv_collapse_maps_an_untagged_range() -> TestResult {
    full_range(false)
}
kernel_test!(collapse, madv_collapse_maps_an_untagged_range);

fn a_copy_without_tags(on: bool) -> TestResult {
    let _v = on.then(|| variants::COLLAPSE_COPY_DATA_ONLY.enable());
    let (s, t) = filled(true, all())?;
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE");
    expect_pages(&t, A, true, |_| true, "after MADV_COLLAPSE")?;
    s.finish()
}

fn a_collapse_copy_without_tags_is_caught() -> TestResult {
    a_copy_without_tags(false)?;
    expect_caught(Ok(a_copy_without_tags(true)), &["tags of page", "lost its tag"], "collapse:copy_data_only")
}
kernel_test!(collapse, a_collapse_copy_without_tags_is_caught);

/// MADV_COLLAPSE ignores max_ptes_none: the holes of a sparse range become
/// zero pages of the THP, with zero tags.
fn a_sparse_range_collapses_with_zeroed_holes() -> TestResult {
    let _k = KHUGEPAGED_MAX_PTES_NONE.set(0);
    let (s, t) = filled(true, (0..NR).step_by(3))?;
    dirty_the_next_thp()?;
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE of a sparse range");
    expect_thp(&t, A, "sparse")?;
    expect_pages(&t, A, true, |p| p % 3 == 0, "sparse range")?;
    expect_rss(&t, 512, 0, "the THP covers the holes")?;
    s.finish()
}
kernel_test!(collapse, a_sparse_range_collapses_with_zeroed_holes);

/// Read faults left zero-page ptes: they count as none and are replaced.
fn zero_page_ptes_count_as_none_and_are_replaced() -> TestResult {
    let (s, t) = filled(true, (0..NR).step_by(2))?;
    for p in (1..NR).step_by(2) {
        ensure_eq!(ok(t.load(A + p * PAGE), "read")?, 0, "a read fault");
    }
    ensure!(crate::mm::fault::is_zero_pfn(pte_pfn(pte_of(&t, A + PAGE))), "the zero page is mapped");
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE");
    expect_thp(&t, A, "with zero-page ptes")?;
    expect_pages(&t, A, true, |p| p % 2 == 0, "zero-page ptes replaced")?;
    expect_rss(&t, 512, 0, "one THP")?;
    s.finish()
}
kernel_test!(collapse, zero_page_ptes_count_as_none_and_are_replaced);

/// A pte-mapped THP (a split PMD) is collapsed into a new THP; the old
/// folio is freed.
fn a_pte_mapped_thp_collapses_into_a_new_one() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    ensure_eq!(mmap(&t, A, HUGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, A, "MAP_FIXED");
    must(t.madvise(A, HUGE, MADV_HUGEPAGE), "MADV_HUGEPAGE")?;
    for p in all() {
        write_page(&t, A, p, true)?;
    }
    let old = pte_pfn(pmd_pte(t.mm().pgtables.pmd_peek(A)));
    crate::mm::huge_memory::split_huge_pmd(&t.mm().pgtables, A);
    ensure!(pte_present(pte_of(&t, A + 3 * PAGE)), "split into ptes");
    let frames = free_frames();
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE of a pte-mapped THP");
    let new = expect_thp(&t, A, "after the collapse")?;
    ensure!(new != old, "a new THP");
    expect_pages(&t, A, true, |_| true, "pte-mapped THP collapsed")?;
    ensure_eq!(free_frames(), frames, "the old THP freed as the new one was taken");
    s.finish()
}
kernel_test!(collapse, a_pte_mapped_thp_collapses_into_a_new_one);

/// MADV_COLLAPSE rounds the range inward and collapses each whole PMD.
fn madv_collapse_rounds_inward_and_collapses_each_pmd() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    for i in 0..3 {
        fill(&t, A + i * HUGE, true, all())?;
    }
    ensure_eq!(
        returned(t.madvise(A + PAGE, 3 * HUGE - PAGE, MADV_COLLAPSE), "MADV_COLLAPSE")?,
        Ok(()),
        "MADV_COLLAPSE of [A + 4K, A + 6M)"
    );
    ensure!(!pmd_trans_huge(t.mm().pgtables.pmd_peek(A)), "the first PMD, covered in part, stays ptes");
    expect_thp(&t, A + HUGE, "second PMD")?;
    expect_thp(&t, A + 2 * HUGE, "third PMD")?;
    expect_pages(&t, A + 2 * HUGE, true, |_| true, "third PMD")?;
    ensure_eq!(
        returned(t.madvise(A, HUGE / 2, MADV_COLLAPSE), "MADV_COLLAPSE")?,
        Ok(()),
        "no whole PMD: nothing to do"
    );
    ensure!(!pmd_trans_huge(t.mm().pgtables.pmd_peek(A)), "still ptes");
    s.finish()
}
kernel_test!(collapse, madv_collapse_rounds_inward_and_collapses_each_pmd);

/// The errno comes from the last failure; the PMDs before it collapsed.
fn one_refused_pmd_gives_its_errno_after_the_others_collapsed() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    fill(&t, A, true, all())?;
    fill(&t, A + HUGE, true, all())?;
    let u = UffdFd::new(&t, 0)?;
    u.register(A + HUGE, HUGE, UFFDIO_REGISTER_MODE_WP)?;
    must(u.writeprotect(A + HUGE + 9 * PAGE, PAGE, UFFDIO_WRITEPROTECT_MODE_WP), "WP")?;
    ensure_eq!(returned(t.madvise(A, 2 * HUGE, MADV_COLLAPSE), "MADV_COLLAPSE")?, Err(EINVAL), "one PMD refused");
    expect_thp(&t, A, "the first PMD")?;
    expect_result(&t, A + HUGE, SCAN_PTE_UFFD_WP, "the second PMD")?;
    s.finish()
}
kernel_test!(collapse, one_refused_pmd_gives_its_errno_after_the_others_collapsed);

/// Inside one VMA too: the PMD before the refused one is collapsed, and
/// the call fails with the refusal's errno (a pin: EAGAIN), since not
/// every PMD of the range ended up huge.
fn a_refused_pmd_inside_one_vma_fails_the_call() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    fill_len(&t, A, 2 * HUGE, true, 0..2 * NR)?;
    let f = Folio::get(pfn_at(&t, A + HUGE + 3 * PAGE)?);
    f.pin();
    let r = returned(t.madvise(A, 2 * HUGE, MADV_COLLAPSE), "MADV_COLLAPSE");
    f.unpin();
    drop(f);
    ensure_eq!(r?, Err(EAGAIN), "MADV_COLLAPSE with the second PMD pinned");
    expect_thp(&t, A, "the first PMD")?;
    expect_result(&t, A + HUGE, SCAN_PAGE_COUNT, "the second PMD")?;
    s.finish()
}
kernel_test!(collapse, a_refused_pmd_inside_one_vma_fails_the_call);

fn madv_collapse_checks_its_arguments_and_the_vma() -> TestResult {
    let (mut s, t) = filled(true, all())?;
    expect_errno(t.madvise(A + 8, HUGE, MADV_COLLAPSE), EINVAL, "an unaligned start")?;
    must(t.munmap(A + HUGE - PAGE, PAGE), "munmap of the last page")?;
    expect_errno(t.madvise(A, HUGE + HUGE, MADV_COLLAPSE), ENOMEM, "a range with a hole")?;
    must(t.madvise(A, HUGE - PAGE, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE")?;
    expect_errno(t.madvise(A, HUGE - PAGE, MADV_COLLAPSE), EINVAL, "a VM_NOHUGEPAGE VMA")?;
    let (fd, _) = s.file(512);
    let f = mmap(&t, B, HUGE, RW, MAP_PRIVATE | MAP_FIXED, fd as i64)?;
    ok(t.store(f, 1), "a COW write to the file mapping")?;
    expect_errno(t.madvise(f, HUGE, MADV_COLLAPSE), EINVAL, "a file mapping (no file collapse here)")?;
    expect_pages_sample(&t)?;
    s.finish()
}
kernel_test!(collapse, madv_collapse_checks_its_arguments_and_the_vma);

fn expect_pages_sample(t: &Task) -> TestResult {
    for p in [0, 100, 510] {
        ensure_eq!(ok(t.load(with_tag(A + p * PAGE, tag_of(p))), "read")?, word(p), "page {p} after the refusals");
    }
    Ok(())
}

/// MADV_COLLAPSE works whatever the sysfs policy says; khugepaged obeys it.
fn madv_collapse_ignores_enabled_never_and_khugepaged_obeys_it() -> TestResult {
    let (s, t) = filled(true, all())?;
    let _k = THP_ENABLED.set(crate::cmdline::ThpEnabled::Never as u64);
    let id = t.mm().id;
    for _ in 0..3 {
        let scans = khugepaged::khugepaged_scan_once();
        ensure!(!scans.iter().any(|s| s.mm == id), "khugepaged scanned a range with THP disabled: {scans:?}");
    }
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE with enabled=never");
    expect_thp(&t, A, "enabled=never")?;
    drop(_k); // before the scenario puts back what it set
    s.finish()
}
kernel_test!(collapse, madv_collapse_ignores_enabled_never_and_khugepaged_obeys_it);

fn an_allocation_failure_is_enomem_and_keeps_the_table() -> TestResult {
    let (s, t) = filled(true, all())?;
    let before = table_snapshot(&t, A);
    let failed = khugepaged::stats().thp_collapse_alloc_failed;
    let _f = FOLIO_ALLOC.arm(Spec::nth(1));
    ensure_eq!(collapse(&t, A)?, Err(ENOMEM), "MADV_COLLAPSE without memory for the THP");
    drop(_f);
    expect_result(&t, A, SCAN_ALLOC_HUGE_PAGE_FAIL, "no memory")?;
    ensure_eq!(khugepaged::stats().thp_collapse_alloc_failed, failed + 1, "thp_collapse_alloc_failed");
    expect_table_kept(&t, A, &before, "after the failed allocation")?;
    s.finish()
}
kernel_test!(collapse, an_allocation_failure_is_enomem_and_keeps_the_table);

// --- round 1's refusals ---------------------------------------------------------------------

fn no_table_is_pmd_null_and_an_empty_pmd_pmd_none() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    ensure_eq!(mmap(&t, A, 2 * HUGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, A, "MAP_FIXED");
    expect_refused(&t, A, EINVAL, SCAN_PMD_NULL, "nothing mapped yet")?;
    must(t.madvise(A, 2 * HUGE, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE")?;
    write_page(&t, A + HUGE, 0, true)?;
    must(t.madvise(A, 2 * HUGE, MADV_HUGEPAGE), "MADV_HUGEPAGE")?;
    expect_refused(&t, A, EINVAL, SCAN_PMD_NONE, "an empty PMD beside a table")?;
    s.finish()
}
kernel_test!(collapse, no_table_is_pmd_null_and_an_empty_pmd_pmd_none);

fn a_huge_pmd_is_pmd_mapped_and_counts_as_done() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    ensure_eq!(mmap(&t, A, HUGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, A, "MAP_FIXED");
    must(t.madvise(A, HUGE, MADV_HUGEPAGE), "MADV_HUGEPAGE")?;
    ok(t.store(A, 1), "a write fault maps a THP")?;
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE of a THP");
    expect_result(&t, A, SCAN_PMD_MAPPED, "already huge")?;
    s.finish()
}
kernel_test!(collapse, a_huge_pmd_is_pmd_mapped_and_counts_as_done);

fn khugepaged_obeys_max_ptes_none() -> TestResult {
    let _k = KHUGEPAGED_MAX_PTES_NONE.set(8);
    let (s, t) = filled(true, 0..500)?;
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_EXCEED_NONE_PTE, "12 none ptes, max_ptes_none 8");
    for p in 500..504 {
        write_page(&t, A, p, true)?;
    }
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_SUCCEED, "8 none ptes, max_ptes_none 8");
    expect_thp(&t, A, "khugepaged")?;
    expect_pages(&t, A, true, |p| p < 504, "collapsed by khugepaged")?;
    s.finish()
}
kernel_test!(collapse, khugepaged_obeys_max_ptes_none);

fn a_uffd_armed_vma_with_a_none_pte_is_exceed_none_ebusy() -> TestResult {
    let (s, t) = filled(true, all().filter(|&p| p != 9))?;
    let u = UffdFd::new(&t, 0)?;
    u.register(A, HUGE, UFFDIO_REGISTER_MODE_MISSING)?;
    expect_refused(&t, A, EBUSY, SCAN_EXCEED_NONE_PTE, "one none pte in a uffd-armed VMA")?;
    expect_pages_sample(&t)?;
    s.finish()
}
kernel_test!(collapse, a_uffd_armed_vma_with_a_none_pte_is_exceed_none_ebusy);

/// A uffd-wp pte: SCAN_PTE_UFFD_WP (EINVAL); after the refused collapse
/// the bit is still set and a write raises the WP fault.
fn a_uffd_wp_pte_is_refused_and_stays_protected() -> TestResult {
    let (s, t) = filled(true, all())?;
    let u = UffdFd::new(&t, 0)?;
    u.register(A, HUGE, UFFDIO_REGISTER_MODE_WP)?;
    must(u.writeprotect(A + 9 * PAGE, PAGE, UFFDIO_WRITEPROTECT_MODE_WP), "WP")?;
    expect_refused(&t, A, EINVAL, SCAN_PTE_UFFD_WP, "a uffd-wp pte")?;
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_PTE_UFFD_WP, "khugepaged on a uffd-wp pte");
    expect_wp_fault(&t, &u, A + 9 * PAGE, tag_of(9))?;
    s.finish()
}
kernel_test!(collapse, a_uffd_wp_pte_is_refused_and_stays_protected);

/// The pte at `a` is still uffd-wp: a write waits for the handler, and
/// the message is a WP fault.
fn expect_wp_fault(t: &Task, u: &UffdFd, a: usize, tag: u8) -> TestResult {
    ensure!(
        pte_uffd_wp(pte_of(t, a)) && !pte_write(pte_of(t, a)),
        "the pte at {a:#x} lost uffd-wp: {:?}",
        pte_of(t, a)
    );
    match t.store(with_tag(a, tag), 9) {
        Err(Signal::UffdWait { .. }) => {}
        other => fail!("a write to the write-protected page should wait for the handler, got {other:?}"),
    }
    ensure!(u.read()?.is_some_and(|m| m.1 & crate::mm::userfaultfd::UFFD_PAGEFAULT_FLAG_WP != 0), "a WP fault message");
    must(u.writeprotect(a, PAGE, 0), "un-WP")?;
    ok(t.store(with_tag(a, tag), 9), "the write goes on")
}

fn a_uffd_wp_swap_pte_is_refused() -> TestResult {
    let _swap = SwapOn::new()?;
    let (s, t) = filled(true, all())?;
    let u = UffdFd::new(&t, 0)?;
    u.register(A, HUGE, UFFDIO_REGISTER_MODE_WP)?;
    must(u.writeprotect(A + 4 * PAGE, PAGE, UFFDIO_WRITEPROTECT_MODE_WP), "WP")?;
    must(t.madvise(A + 4 * PAGE, PAGE, MADV_PAGEOUT), "MADV_PAGEOUT")?;
    let pte = pte_of(&t, A + 4 * PAGE);
    ensure!(is_swap_pte(pte) && pte_swp_uffd_wp(pte), "a uffd-wp swap pte: {pte:?}");
    expect_refused(&t, A, EINVAL, SCAN_PTE_UFFD_WP, "a uffd-wp swap pte")?;
    ensure!(pte_swp_uffd_wp(pte_of(&t, A + 4 * PAGE)), "still a uffd-wp swap pte");
    s.finish()
}
kernel_test!(collapse, a_uffd_wp_swap_pte_is_refused, ramdisk);

fn a_uffd_wp_marker_is_refused() -> TestResult {
    let (s, t) = filled(true, all().filter(|&p| p != 6))?;
    let u = UffdFd::new(&t, 0)?;
    u.register(A, HUGE, UFFDIO_REGISTER_MODE_WP)?;
    set_pte(&t, A + 6 * PAGE, make_pte_marker(PTE_MARKER_UFFD_WP))?;
    expect_refused(&t, A, EINVAL, SCAN_PTE_UFFD_WP, "a uffd-wp marker")?;
    ensure!(pte_marker_uffd_wp(pte_of(&t, A + 6 * PAGE)), "the marker is still there");
    set_pte(&t, A + 6 * PAGE, pte_t(0))?;
    s.finish()
}
kernel_test!(collapse, a_uffd_wp_marker_is_refused);

/// A non-swap entry at page 5 for the length of `f`, then the page back.
fn with_entry(t: &Task, entry: impl Fn(u64) -> pte_t, f: impl FnOnce() -> TestResult) -> TestResult {
    let a = A + 5 * PAGE;
    let orig = pte_of(t, a);
    set_pte(t, a, entry(pte_pfn(orig)))?;
    let r = f();
    set_pte(t, a, orig)?;
    r
}

/// `entry` at page 5 aborts the scan with SCAN_PTE_NON_PRESENT, under
/// khugepaged even with max_ptes_swap 0, and nothing reaches do_swap_page.
fn non_swap_entry_aborts(entry: impl Fn(u64) -> pte_t + Copy) -> TestResult {
    let (s, t) = filled(true, all())?;
    let swapin = khugepaged::stats().swapin;
    with_entry(&t, entry, || {
        expect_refused(&t, A, EINVAL, SCAN_PTE_NON_PRESENT, "MADV_COLLAPSE")?;
        let _k = KHUGEPAGED_MAX_PTES_SWAP.set(0);
        ensure_eq!(khugepaged_scan(&t, A)?, SCAN_PTE_NON_PRESENT, "khugepaged (not SCAN_EXCEED_SWAP_PTE)");
        ensure_eq!(khugepaged::stats().swapin, swapin, "pages handed to do_swap_page");
        Ok(())
    })?;
    expect_pages_sample(&t)?;
    s.finish()
}

fn a_migration_entry_aborts_with_pte_non_present() -> TestResult {
    non_swap_entry_aborts(|pfn| swp_entry_to_pte(make_migration_entry(pfn, true, true)))
}
kernel_test!(collapse, a_migration_entry_aborts_with_pte_non_present);

fn a_hwpoison_entry_aborts_with_pte_non_present() -> TestResult {
    non_swap_entry_aborts(|pfn| swp_entry_to_pte(make_hwpoison_entry(pfn)))
}
kernel_test!(collapse, a_hwpoison_entry_aborts_with_pte_non_present);

fn non_swap_entries_handed_to_do_swap_page_is_caught() -> TestResult {
    let hwpoison = |pfn| swp_entry_to_pte(make_hwpoison_entry(pfn));
    let r = {
        let _v = variants::COLLAPSE_NON_SWAP_AS_SWAP.enable();
        non_swap_entry_aborts(hwpoison)
    };
    expect_caught(Ok(r), &["SCAN_FAIL", "SCAN_SUCCEED", "do_swap_page"], "collapse:non_swap_as_swap")
}
kernel_test!(collapse, non_swap_entries_handed_to_do_swap_page_is_caught);

fn a_special_pte_is_page_null() -> TestResult {
    let (s, t) = filled(true, all())?;
    let code = crate::task::agent::code_pfns()[0];
    with_entry(
        &t,
        |_| pte_mkspecial(pfn_pte(code, vm_get_page_prot(true, false, false, false, false))),
        || expect_refused(&t, A, EINVAL, SCAN_PAGE_NULL, "a special pte (no normal page)"),
    )?;
    s.finish()
}
kernel_test!(collapse, a_special_pte_is_page_null);

fn a_pinned_page_is_page_count_eagain() -> TestResult {
    let (s, t) = filled(true, all())?;
    let f = Folio::get(pfn_at(&t, A + 3 * PAGE)?);
    f.pin();
    let before = table_snapshot(&t, A);
    let r = expect_refused(&t, A, EAGAIN, SCAN_PAGE_COUNT, "a DMA-pinned page");
    let kept = expect_table_kept(&t, A, &before, "after the refusal");
    f.unpin();
    drop(f);
    r?;
    kept?;
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE once unpinned");
    s.finish()
}
kernel_test!(collapse, a_pinned_page_is_page_count_eagain);

fn a_locked_folio_is_page_lock_eagain() -> TestResult {
    let (s, t) = filled(true, all())?;
    let f = Folio::get(pfn_at(&t, A + 3 * PAGE)?);
    let l = f.lock_guard();
    let r = expect_refused(&t, A, EAGAIN, SCAN_PAGE_LOCK, "a locked folio");
    drop(l);
    r?;
    drop(f);
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE once unlocked");
    s.finish()
}
kernel_test!(collapse, a_locked_folio_is_page_lock_eagain);

/// MADV_COLD clears the access flags: khugepaged finds no referenced page
/// (SCAN_LACK_REFERENCED_PAGE); MADV_COLLAPSE needs none.
fn unreferenced_pages_stop_khugepaged_only() -> TestResult {
    let (s, t) = filled(true, all())?;
    must(t.madvise(A, HUGE, MADV_COLD), "MADV_COLD")?;
    ensure!(!pte_young(pte_of(&t, A + 8 * PAGE)), "MADV_COLD made the pte old");
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_LACK_REFERENCED_PAGE, "khugepaged after MADV_COLD");
    ensure_eq!(ok(t.load(with_tag(A + 8 * PAGE, tag_of(8))), "read")?, word(8), "an access");
    ensure!(pte_young(pte_of(&t, A + 8 * PAGE)), "the access-flag fault made it young again");
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE of unreferenced pages");
    s.finish()
}
kernel_test!(collapse, unreferenced_pages_stop_khugepaged_only);

fn a_read_only_range_is_page_ro() -> TestResult {
    let (s, t) = filled(true, all())?;
    must(t.mprotect(A, HUGE, PROT_READ | PROT_MTE), "mprotect read-only")?;
    expect_refused(&t, A, EINVAL, SCAN_PAGE_RO, "no writable pte")?;
    s.finish()
}
kernel_test!(collapse, a_read_only_range_is_page_ro);

// --- shared pages after fork ----------------------------------------------------------------

fn after_fork_the_write_protected_range_is_page_ro() -> TestResult {
    let (mut s, t) = filled(true, all())?;
    let child = s.fork(&t)?;
    ensure!(khugepaged::is_registered(&child.mm()), "fork registers the child with khugepaged (khugepaged_fork)");
    expect_refused(&t, A, EINVAL, SCAN_PAGE_RO, "every pte shared and write-protected")?;
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_EXCEED_SHARED_PTE, "khugepaged: more than max_ptes_shared shared pages");
    ensure_eq!(ok(child.load(with_tag(A + 3 * PAGE, tag_of(3))), "child read")?, word(3), "the child's page");
    s.finish()
}
kernel_test!(collapse, after_fork_the_write_protected_range_is_page_ro);

/// After fork and one COW write, MADV_COLLAPSE (which ignores
/// max_ptes_shared) gives the parent a THP of copies; the child keeps the
/// old pages with their data and tags.
fn shared_pages_are_copied_and_the_child_keeps_its_own() -> TestResult {
    let (mut s, t) = filled(true, all())?;
    let child = s.fork(&t)?;
    write_page(&t, A, 0, true)?; // COW: one writable pte
    let old = pfn_at(&child, A + 200 * PAGE)?;
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE of shared pages");
    expect_thp(&t, A, "the parent's THP")?;
    expect_pages(&t, A, true, |_| true, "the parent")?;
    ensure_eq!(Folio::get(old).mapcount(), 1, "the child's old page is the child's alone now");
    expect_pages(&child, A, true, |_| true, "the child")?;
    s.finish()
}
kernel_test!(collapse, shared_pages_are_copied_and_the_child_keeps_its_own);

fn khugepaged_obeys_max_ptes_shared() -> TestResult {
    let _k = KHUGEPAGED_MAX_PTES_SHARED.set(NR as u64);
    let (mut s, t) = filled(true, all())?;
    let child = s.fork(&t)?;
    write_page(&t, A, 0, true)?;
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_SUCCEED, "511 shared, max_ptes_shared 512");
    expect_pages(&child, A, true, |_| true, "the child")?;
    s.finish()
}
kernel_test!(collapse, khugepaged_obeys_max_ptes_shared);

// --- swapped-out stragglers -----------------------------------------------------------------

/// Pages `swapped` of a full tagged range swapped out one by one.
fn with_swapped(swapped: core::ops::Range<usize>) -> Result<(Scenario, Arc<Task>), Verdict> {
    let (s, t) = filled(true, all())?;
    for p in swapped {
        must(t.madvise(A + p * PAGE, PAGE, MADV_PAGEOUT), "MADV_PAGEOUT")?;
        ensure!(is_swap_pte(pte_of(&t, A + p * PAGE)), "page {p} swapped out");
    }
    Ok((s, t))
}

fn ten_swapped_tagged_stragglers_come_back_with_their_tags() -> TestResult {
    let swap = SwapOn::new()?;
    let (s, t) = with_swapped(100..110)?;
    let (swapin, tags) = (khugepaged::stats().swapin, crate::mm::mteswap::stats());
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_SUCCEED, "khugepaged with 10 swap ptes");
    ensure_eq!(khugepaged::stats().swapin, swapin + 10, "swapped in through do_swap_page");
    expect_thp(&t, A, "after the swap-in")?;
    expect_pages(&t, A, true, |_| true, "stragglers")?;
    ensure!(
        crate::mm::swapfile::slots_in_use().is_empty(),
        "swap slots left: {:?}",
        crate::mm::swapfile::slots_in_use()
    );
    ensure!(
        crate::mm::mteswap::entries().is_empty(),
        "tag storage left: {:?} (before: {tags:?})",
        crate::mm::mteswap::entries()
    );
    ensure_eq!(t.mm().rss(crate::mm::mm_types::MM_SWAPENTS), 0, "MM_SWAPENTS");
    drop(swap);
    s.finish()
}
kernel_test!(collapse, ten_swapped_tagged_stragglers_come_back_with_their_tags, ramdisk);

fn sixty_five_swap_ptes_exceed_khugepaged_but_not_madv_collapse() -> TestResult {
    let _swap = SwapOn::new()?;
    let (s, t) = with_swapped(0..65)?;
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_EXCEED_SWAP_PTE, "khugepaged with 65 swap ptes");
    ensure!(is_swap_pte(pte_of(&t, A)), "nothing swapped in");
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE with 65 swap ptes");
    expect_pages(&t, A, true, |_| true, "65 swapped in and collapsed")?;
    ensure!(crate::mm::mteswap::entries().is_empty(), "tag storage left");
    s.finish()
}
kernel_test!(collapse, sixty_five_swap_ptes_exceed_khugepaged_but_not_madv_collapse, ramdisk);

/// With swap ptes, khugepaged also wants half the pages referenced.
fn swap_ptes_need_half_the_pages_referenced() -> TestResult {
    let _swap = SwapOn::new()?;
    let (s, t) = with_swapped(0..4)?;
    must(t.madvise(A, HUGE, MADV_COLD), "MADV_COLD")?;
    for p in 4..200 {
        ok(t.load(with_tag(A + p * PAGE, tag_of(p))), "touch")?;
    }
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_LACK_REFERENCED_PAGE, "196 referenced with swap ptes");
    for p in 200..300 {
        ok(t.load(with_tag(A + p * PAGE, tag_of(p))), "touch")?;
    }
    ensure_eq!(khugepaged_scan(&t, A)?, SCAN_SUCCEED, "296 referenced");
    expect_pages(&t, A, true, |_| true, "collapsed")?;
    s.finish()
}
kernel_test!(collapse, swap_ptes_need_half_the_pages_referenced, ramdisk);

// --- khugepaged: registration, scanning, the thread ----------------------------------------

fn khugepaged_scans_registered_mms_in_turn() -> TestResult {
    let _k = KHUGEPAGED_PAGES_TO_SCAN.set(NR as u64);
    let mut s = Scenario::new();
    s.thp();
    let t1 = s.spawn()?;
    let t2 = s.spawn()?;
    let t3 = s.spawn()?;
    fill(&t1, A, true, all())?;
    fill(&t2, A, false, all())?;
    // t3's range never had MADV_HUGEPAGE: enabled=madvise leaves it alone.
    ensure_eq!(mmap(&t3, A, HUGE, RW, ANON | MAP_FIXED, -1)?, A, "MAP_FIXED");
    must(t3.madvise(A, HUGE, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE")?;
    for p in all() {
        write_page(&t3, A, p, false)?;
    }
    ensure!(!khugepaged::is_registered(&t3.mm()), "a VMA without MADV_HUGEPAGE does not register");
    ensure!(khugepaged::is_registered(&t1.mm()) && khugepaged::is_registered(&t2.mm()), "MADV_HUGEPAGE registers");
    let full = khugepaged::stats().full_scans;
    let mut done = Vec::new();
    for _ in 0..6 {
        for sc in khugepaged::khugepaged_scan_once() {
            ensure!(sc.mm != t3.mm().id, "khugepaged scanned t3's VM_NOHUGEPAGE range");
            if sc.result == SCAN_SUCCEED {
                done.push(sc.mm);
            }
        }
    }
    ensure!(done.contains(&t1.mm().id) && done.contains(&t2.mm().id), "both registered mms collapsed: {done:?}");
    ensure!(khugepaged::stats().full_scans > full, "a full scan was counted");
    expect_thp(&t1, A, "t1")?;
    expect_thp(&t2, A, "t2")?;
    expect_pages(&t2, A, false, |_| true, "t2")?;
    s.finish()
}
kernel_test!(collapse, khugepaged_scans_registered_mms_in_turn);

/// The khugepaged thread on CPU 1 collapses a registered range while the
/// task runs on CPU 0.
fn the_khugepaged_thread_collapses_on_its_cpu() -> TestResult {
    let _k = KHUGEPAGED_SCAN_SLEEP_MILLISECS.set(1);
    let (s, t) = filled(true, all())?;
    let thread = khugepaged::start_khugepaged(1).map_err(|e| verdict("starting khugepaged on CPU 1", e))?;
    let f = crate::arch::cpu::counter_freq().max(1);
    let deadline = crate::arch::cpu::counter() + 10 * f;
    while !pmd_trans_huge(t.mm().pgtables.pmd_peek(A)) && crate::arch::cpu::counter() < deadline {
        ok(t.load(with_tag(A + 77 * PAGE, tag_of(77))), "CPU 0 reads meanwhile")?;
    }
    thread.stop().map_err(|u| verdict("khugepaged thread", u.event))?;
    let trace = khugepaged::trace(&t.mm());
    ensure!(
        trace.iter().any(|l| l.addr == A && l.by_khugepaged && l.result == SCAN_SUCCEED),
        "no collapse by khugepaged in the trace: {trace:?}"
    );
    expect_thp(&t, A, "collapsed by the thread")?;
    expect_pages(&t, A, true, |_| true, "collapsed by the thread")?;
    s.finish()
}
kernel_test!(collapse, the_khugepaged_thread_collapses_on_its_cpu, cpus = 2);

// --- round 2 and the lock-drop windows ------------------------------------------------------

/// MADV_COLLAPSE of the range at `at`, for CPU 1.
fn collapse_at(t: &Arc<Task>, at: usize) -> impl FnOnce() -> Result<Result<(), Errno>, Signal> + Send + 'static {
    let tt = t.clone();
    move || tt.madvise(at, HUGE, MADV_COLLAPSE)
}

fn collapse_on_cpu1(t: &Arc<Task>) -> impl FnOnce() -> Result<Result<(), Errno>, Signal> + Send + 'static {
    collapse_at(t, A)
}

/// A pin taken while the mmap lock was dropped: round 2 refuses
/// (SCAN_PAGE_COUNT, EAGAIN) and puts the detached table back exactly.
fn lost_table(variant: bool) -> TestResult {
    let _v = variant.then(|| variants::COLLAPSE_TABLE_NOT_RESTORED.enable());
    let (s, t) = filled(true, all())?;
    let before = table_snapshot(&t, A);
    let pfn = pfn_at(&t, A + 3 * PAGE)?;
    let mut pinned = None;
    let r = window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_on_cpu1(&t), || {
        let f = Folio::get(pfn);
        f.pin();
        pinned = Some(f);
        Ok(())
    })?;
    let f = pinned.ok_or_else(|| verdict("the pin", "not taken"))?;
    let check = (|| {
        ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EAGAIN), "MADV_COLLAPSE with a pin taken in the window");
        expect_result(&t, A, SCAN_PAGE_COUNT, "round 2")?;
        expect_table_kept(&t, A, &before, "after round 2 refused")
    })();
    khugepaged::restore_lost_table(); // only the variant leaves one
    f.unpin();
    drop(f);
    check?;
    expect_pages(&t, A, true, |_| true, "after the refused collapse")?;
    s.finish()
}

fn a_refused_round_2_puts_the_table_back() -> TestResult {
    lost_table(false)
}
kernel_test!(collapse, a_refused_round_2_puts_the_table_back, cpus = 2);

fn a_failed_collapse_that_loses_the_table_is_caught() -> TestResult {
    lost_table(false)?;
    expect_caught(Ok(lost_table(true)), &["pte table is not the one", "pte 0 changed"], "collapse:table_not_restored")
}
kernel_test!(collapse, a_failed_collapse_that_loses_the_table_is_caught, cpus = 2);

/// Seed 002: while khugepaged (here MADV_COLLAPSE, the same code) has
/// dropped the mmap lock, UFFDIO_WRITEPROTECT (read lock only) protects a
/// pte; round 2 must see it: no collapse, the bit kept, a write faults.
fn uffd_wp_window(variant: bool) -> TestResult {
    let _v = variant.then(|| variants::COLLAPSE_NO_UFFD_WP_RECHECK.enable());
    let (s, t) = filled(true, all())?;
    let u = UffdFd::new(&t, 0)?;
    u.register(A, HUGE, UFFDIO_REGISTER_MODE_WP)?;
    let r = window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_on_cpu1(&t), || {
        must(u.writeprotect(A + 42 * PAGE, PAGE, UFFDIO_WRITEPROTECT_MODE_WP), "WP in the window").map(|_| ())
    })?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EINVAL), "MADV_COLLAPSE after a pte was write-protected in the window");
    expect_result(&t, A, SCAN_PTE_UFFD_WP, "round 2")?;
    expect_wp_fault(&t, &u, A + 42 * PAGE, tag_of(42))?;
    s.finish()
}

fn the_uffd_wp_window_is_seen_by_round_2() -> TestResult {
    uffd_wp_window(false)
}
kernel_test!(collapse, the_uffd_wp_window_is_seen_by_round_2, cpus = 2);

fn the_uffd_wp_window_without_the_recheck_is_caught() -> TestResult {
    uffd_wp_window(false)?;
    expect_caught(Ok(uffd_wp_window(true)), &["lost uffd-wp", "MADV_COLLAPSE after"], "collapse:no_uffd_wp_recheck")
}
kernel_test!(collapse, the_uffd_wp_window_without_the_recheck_is_caught, cpus = 2);

/// khugepaged itself in the window (the seed's own path).
fn khugepaged_sees_the_uffd_wp_window() -> TestResult {
    let (s, t) = filled(true, all())?;
    let u = UffdFd::new(&t, 0)?;
    u.register(A, HUGE, UFFDIO_REGISTER_MODE_WP)?;
    let id = t.mm().id;
    let r = window(
        &points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC,
        move || scan_of(id, A),
        || must(u.writeprotect(A + 300 * PAGE, PAGE, UFFDIO_WRITEPROTECT_MODE_WP), "WP in the window").map(|_| ()),
    )?;
    ensure_eq!(r, Some(SCAN_PTE_UFFD_WP), "khugepaged's round 2");
    expect_wp_fault(&t, &u, A + 300 * PAGE, tag_of(300))?;
    s.finish()
}
kernel_test!(collapse, khugepaged_sees_the_uffd_wp_window, cpus = 2);

/// A fault fills a hole while the lock is dropped: the THP has its data.
fn a_fault_in_the_window_is_collapsed_too() -> TestResult {
    let (s, t) = filled(true, all().filter(|&p| p != 3))?;
    let r = window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_on_cpu1(&t), || write_page(&t, A, 3, true))?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Ok(()), "MADV_COLLAPSE");
    expect_thp(&t, A, "after the racing fault")?;
    expect_pages(&t, A, true, |_| true, "the racing fault's page is in the THP")?;
    s.finish()
}
kernel_test!(collapse, a_fault_in_the_window_is_collapsed_too, cpus = 2);

fn dontneed_in_the_window_leaves_zeroed_pages() -> TestResult {
    let (s, t) = filled(true, all())?;
    let r = window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_on_cpu1(&t), || {
        must(t.madvise(A + 10 * PAGE, 10 * PAGE, MADV_DONTNEED), "MADV_DONTNEED")
    })?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Ok(()), "MADV_COLLAPSE");
    expect_thp(&t, A, "after DONTNEED in the window")?;
    expect_pages(&t, A, true, |p| !(10..20).contains(&p), "the zapped pages read zero")?;
    expect_rss(&t, 512, 0, "one THP")?;
    s.finish()
}
kernel_test!(collapse, dontneed_in_the_window_leaves_zeroed_pages, cpus = 2);

fn munmap_in_the_window_is_vma_null_and_frees_everything() -> TestResult {
    let (s, t) = filled(true, all())?;
    let frames = free_frames();
    let r =
        window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_on_cpu1(&t), || must(t.munmap(A, HUGE), "munmap"))?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EINVAL), "MADV_COLLAPSE of an unmapped range");
    expect_result(&t, A, SCAN_VMA_NULL, "revalidate")?;
    ensure!(free_frames() >= frames + 512, "the pages and the unused THP freed: {} -> {}", frames, free_frames());
    s.finish()
}
kernel_test!(collapse, munmap_in_the_window_is_vma_null_and_frees_everything, cpus = 2);

fn a_shrunk_vma_is_address_range_and_a_new_one_page_anon() -> TestResult {
    let (s, t) = filled(true, all())?;
    let r = window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_on_cpu1(&t), || {
        must(t.munmap(A + HUGE - PAGE, PAGE), "munmap of the last page")
    })?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EINVAL), "the VMA shrank");
    expect_result(&t, A, SCAN_ADDRESS_RANGE, "revalidate")?;
    fill(&t, B, true, all())?;
    let r = window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_at(&t, B), || {
        must(t.munmap(B, HUGE), "munmap")?;
        ensure_eq!(mmap(&t, B, HUGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, B, "a fresh VMA");
        must(t.madvise(B, HUGE, MADV_HUGEPAGE), "MADV_HUGEPAGE")
    })?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EINVAL), "the VMA was replaced");
    expect_result(&t, B, SCAN_PAGE_ANON, "revalidate of a VMA without anon_vma")?;
    s.finish()
}
kernel_test!(collapse, a_shrunk_vma_is_address_range_and_a_new_one_page_anon, cpus = 2);

fn fork_in_the_window_is_page_ro_and_the_child_keeps_its_pages() -> TestResult {
    let (mut s, t) = filled(true, all())?;
    let before = table_snapshot(&t, A);
    let mut child = None;
    let r = window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_on_cpu1(&t), || {
        child = Some(s.fork(&t)?);
        Ok(())
    })?;
    let child = child.ok_or_else(|| verdict("fork", "no child"))?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EINVAL), "MADV_COLLAPSE after a fork in the window");
    expect_result(&t, A, SCAN_PAGE_RO, "round 2 after fork")?;
    ensure_eq!(table_snapshot(&t, A).0, before.0, "the table is back");
    expect_pages(&child, A, true, |_| true, "the child")?;
    expect_pages(&t, A, true, |_| true, "the parent")?;
    s.finish()
}
kernel_test!(collapse, fork_in_the_window_is_page_ro_and_the_child_keeps_its_pages, cpus = 2);

fn a_move_in_the_window_takes_its_pages_with_their_tags() -> TestResult {
    let (s, t) = filled(true, all())?;
    let u = UffdFd::new(&t, UFFD_FEATURE_MOVE)?;
    ensure_eq!(mmap(&t, B, HUGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, B, "dst");
    must(t.madvise(B, HUGE, MADV_NOHUGEPAGE), "dst NOHUGEPAGE")?;
    u.register(B, HUGE, UFFDIO_REGISTER_MODE_MISSING)?;
    let r = window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_on_cpu1(&t), || {
        let (r, moved) = u.mv(B, A, 4 * PAGE, 0)?;
        ensure!(r == Ok(0) && moved == 4 * PAGE as i64, "MOVE in the window: {r:?} {moved}");
        Ok(())
    })?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Ok(()), "MADV_COLLAPSE after the move");
    expect_thp(&t, A, "after the move")?;
    expect_pages(&t, A, true, |p| p >= 4, "the moved pages left holes")?;
    for p in 0..4 {
        ensure_eq!(ok(t.load(with_tag(B + p * PAGE, tag_of(p))), "read")?, word(p), "moved page {p}");
        expect_tags(&t, B + p * PAGE, |_| tag_of(p), &format!("moved page {p}"))?;
    }
    s.finish()
}
kernel_test!(collapse, a_move_in_the_window_takes_its_pages_with_their_tags, cpus = 2);

/// Reclaim after the swap-in step, before the write lock: round 2 finds
/// swap ptes (SCAN_PTE_NON_PRESENT), puts the table back; the pages come
/// back with their tags on the next access.
fn reclaim_before_the_write_lock_is_pte_non_present() -> TestResult {
    let _swap = SwapOn::new()?;
    let (s, t) = filled(true, all())?;
    let r = window(&points::COLLAPSE_HUGE_PAGE_BEFORE_WRITE_LOCK, collapse_on_cpu1(&t), || {
        must(t.madvise(A + 30 * PAGE, 4 * PAGE, MADV_PAGEOUT), "MADV_PAGEOUT")?;
        ensure!(is_swap_pte(pte_of(&t, A + 31 * PAGE)), "swapped out");
        Ok(())
    })?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EINVAL), "MADV_COLLAPSE");
    expect_result(&t, A, SCAN_PTE_NON_PRESENT, "round 2 after reclaim")?;
    ensure!(is_swap_pte(pte_of(&t, A + 31 * PAGE)), "the swap pte is back in the restored table");
    for p in 30..34 {
        ensure_eq!(ok(t.load(with_tag(A + p * PAGE, tag_of(p))), "read")?, word(p), "page {p} swapped back in");
        expect_tags(&t, A + p * PAGE, |_| tag_of(p), &format!("page {p}"))?;
    }
    ensure_eq!(collapse(&t, A)?, Ok(()), "a second MADV_COLLAPSE");
    expect_pages(&t, A, true, |_| true, "collapsed")?;
    s.finish()
}
kernel_test!(collapse, reclaim_before_the_write_lock_is_pte_non_present, cpus = 2, ramdisk);

fn exit_in_the_window_leaves_nothing_behind() -> TestResult {
    let (mut s, t) = filled(true, all())?;
    let frames = free_frames();
    let id = t.mm().id;
    let mm = t.mm();
    let r = window(
        &points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC,
        move || scan_of(id, A),
        || {
            let _ = t.exit(0);
            Ok(())
        },
    )?;
    ensure_eq!(r, Some(SCAN_VMA_NULL), "khugepaged after the exit");
    drop(mm);
    s.teardown();
    ensure!(free_frames() >= frames + 512, "the exited task's pages and the THP freed");
    crate::mm::invariants::check().map_err(Verdict::Fail)
}
kernel_test!(collapse, exit_in_the_window_leaves_nothing_behind, cpus = 2);

/// MADV_NOHUGEPAGE while the lock is dropped: the revalidation refuses
/// (SCAN_VMA_CHECK) and nothing changed.
fn nohugepage_in_the_window_is_vma_check() -> TestResult {
    let (s, t) = filled(true, all())?;
    let before = table_snapshot(&t, A);
    let r = window(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC, collapse_on_cpu1(&t), || {
        must(t.madvise(A, HUGE, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE")
    })?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EINVAL), "MADV_COLLAPSE");
    expect_result(&t, A, SCAN_VMA_CHECK, "revalidate")?;
    expect_table_kept(&t, A, &before, "after the refusal")?;
    s.finish()
}
kernel_test!(collapse, nohugepage_in_the_window_is_vma_check, cpus = 2);

/// A read error while a straggler is swapped in: SCAN_FAIL (EINVAL); the
/// swap pte stays, and the page comes back with its tags once the device
/// reads again.
fn a_swap_in_read_error_is_scan_fail_and_loses_nothing() -> TestResult {
    let _swap = SwapOn::new()?;
    let (s, t) = with_swapped(40..41)?;
    {
        let _f = crate::testhooks::fault_inject::RAMDISK_READ.arm(Spec::nth(1));
        ensure_eq!(collapse(&t, A)?, Err(EINVAL), "MADV_COLLAPSE with a failing swap-in");
    }
    expect_result(&t, A, SCAN_FAIL, "the swap-in step")?;
    ensure!(is_swap_pte(pte_of(&t, A + 40 * PAGE)), "the swap pte stays");
    ensure_eq!(ok(t.load(with_tag(A + 40 * PAGE, tag_of(40))), "read")?, word(40), "the page swapped in later");
    expect_tags(&t, A + 40 * PAGE, |_| tag_of(40), "page 40")?;
    ensure_eq!(collapse(&t, A)?, Ok(()), "MADV_COLLAPSE once the device reads");
    expect_pages(&t, A, true, |_| true, "collapsed")?;
    s.finish()
}
kernel_test!(collapse, a_swap_in_read_error_is_scan_fail_and_loses_nothing, ramdisk);

/// The second revalidation, under the write lock: a VMA shrunk after the
/// swap-in step is SCAN_ADDRESS_RANGE, an unmapped one SCAN_VMA_NULL.
fn the_write_lock_revalidates_again() -> TestResult {
    let (s, t) = filled(true, all())?;
    let r = window(&points::COLLAPSE_HUGE_PAGE_BEFORE_WRITE_LOCK, collapse_on_cpu1(&t), || {
        must(t.munmap(A + HUGE - PAGE, PAGE), "munmap of the last page")
    })?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EINVAL), "MADV_COLLAPSE of a shrunk VMA");
    expect_result(&t, A, SCAN_ADDRESS_RANGE, "the second revalidation")?;
    fill(&t, B, true, all())?;
    let r = window(&points::COLLAPSE_HUGE_PAGE_BEFORE_WRITE_LOCK, collapse_at(&t, B), || {
        must(t.munmap(B, HUGE), "munmap")
    })?;
    ensure_eq!(ok(r, "MADV_COLLAPSE")?, Err(EINVAL), "MADV_COLLAPSE of an unmapped range");
    expect_result(&t, B, SCAN_VMA_NULL, "the second revalidation")?;
    s.finish()
}
kernel_test!(collapse, the_write_lock_revalidates_again, cpus = 2);

/// With enabled=always an anonymous mmap registers its mm with khugepaged
/// (no MADV_HUGEPAGE needed); with madvise it does not.
fn enabled_always_registers_at_mmap() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    mmap(&t, A, HUGE, RW, ANON | MAP_FIXED, -1)?;
    ensure!(!khugepaged::is_registered(&t.mm()), "enabled=madvise: an mmap without MADV_HUGEPAGE registered");
    let k = THP_ENABLED.set(crate::cmdline::ThpEnabled::Always as u64);
    mmap(&t, B, HUGE, RW, ANON | MAP_FIXED, -1)?;
    ensure!(khugepaged::is_registered(&t.mm()), "enabled=always: the mmap did not register the mm");
    drop(k);
    s.finish()
}
kernel_test!(collapse, enabled_always_registers_at_mmap);
