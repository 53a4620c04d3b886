//! Suite `swap`: swap-out through MADV_PAGEOUT, swap-in through
//! do_swap_page and swapoff, with MTE tags kept in tag storage keyed by
//! swap entry, on the RAM-disk. Every wrong order of do_swap_page is run and
//! shown to be caught; the right one passes.

use super::scenario::*;
use crate::arch::mte::with_tag;
use crate::drivers::ramdisk;
use crate::errno::{EBUSY, EINVAL, EIO};
use crate::harness::{TestResult, Verdict};
use crate::mm::folio::{pfn_to_page, Folio, PG_ANON_EXCLUSIVE, PG_MTE_TAGGED, PG_SWAPCACHE};
use crate::mm::mmap::*;
use crate::mm::pte::*;
use crate::mm::swap::SwapInOrder;
use crate::mm::vmscan::ReclaimStats;
use crate::mm::{mteswap, swap_state, swapfile};
use crate::task::agent::{SegvKind, Signal};
use crate::task::Task;
use crate::testhooks::fault_inject::{Spec, MTESWAP_SAVE, RAMDISK_READ, RAMDISK_WRITE};
use crate::testhooks::knobs::{KEEP_IN_SWAPCACHE, RAMDISK_BAD_SECTOR};
use crate::testhooks::points::{self, Point};
use crate::{ensure, ensure_eq, fail, kernel_test};
use alloc::format;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;

/// A scenario with swap on: its tasks go first, then swap goes off,
/// whatever happens (the fields drop in this order).
struct SwapScenario {
    s: Scenario,
    _swap: SwapOn,
}

impl SwapScenario {
    fn new() -> Result<SwapScenario, Verdict> {
        Self::with_slots(0)
    }

    /// Swap limited to `slots` slots (0: the whole RAM-disk).
    fn with_slots(slots: u64) -> Result<SwapScenario, Verdict> {
        Ok(SwapScenario { _swap: SwapOn::with_slots(slots)?, s: Scenario::new() })
    }

    /// Invariants with tasks alive; then every task exits, swap goes off,
    /// and no slot, tag-storage entry or swap-cache folio may remain.
    fn finish(mut self) -> TestResult {
        crate::mm::invariants::check().map_err(|e| Verdict::Fail(format!("with tasks alive: {e}")))?;
        self.s.teardown();
        crate::mm::invariants::check().map_err(|e| Verdict::Fail(format!("after every task exited: {e}")))?;
        let left = swapfile::slots_in_use();
        ensure!(left.is_empty(), "swap slots still in use after every task exited: {:?}", &left[..left.len().min(4)]);
        ensure_eq!(mteswap::stats().entries, 0, "tag-storage entries after every task exited");
        ensure!(swap_state::cached().is_empty(), "swap cache not empty after every task exited");
        crate::mm::swap::swapoff(0).map_err(|e| verdict("swapoff at the end", e))
    }
}

impl core::ops::Deref for SwapScenario {
    type Target = Scenario;
    fn deref(&self) -> &Scenario {
        &self.s
    }
}

impl core::ops::DerefMut for SwapScenario {
    fn deref_mut(&mut self) -> &mut Scenario {
        &mut self.s
    }
}

/// MADV_PAGEOUT over the range, and what reclaim did (the system call
/// itself has no way to say: this calls its kernel side, do_madvise, on
/// the task's mm).
fn pageout(t: &Task, addr: usize, len: usize) -> Result<ReclaimStats, Verdict> {
    do_madvise(&t.mm(), addr as u64, len as u64, MADV_PAGEOUT).map_err(|e| verdict("MADV_PAGEOUT", e))
}

/// The swap pte at `addr`: its entry, exclusive and uffd-wp bits.
fn swap_pte(t: &Task, addr: usize) -> Result<(swp_entry_t, bool, bool), Verdict> {
    let pte = pte_of(t, addr);
    ensure!(is_swap_pte(pte) && !non_swap_entry(pte_to_swp_entry(pte)), "no swap pte at {addr:#x}: {pte:?}");
    Ok((pte_to_swp_entry(pte), pte_swp_exclusive(pte), pte_swp_uffd_wp(pte)))
}

fn tag_of(g: usize) -> u8 {
    ((g * 5 + 2) % 15) as u8 + 1
}

/// A task with `pages` PROT_MTE pages, every granule tagged and filled.
fn tagged_pages(s: &mut Scenario, pages: usize) -> Result<(Arc<Task>, usize), Verdict> {
    let t = s.spawn()?;
    let a = mmap(&t, 0, pages * PAGE, RW | PROT_MTE, ANON, -1)?;
    for p in 0..pages {
        tag_page(&t, a + p * PAGE, tag_of)?;
        ok(t.store(with_tag(a + p * PAGE, tag_of(0)), 0x1000 + p as u64), "write")?;
    }
    Ok((t, a))
}

/// Data and every tag of page `p` from `tagged_pages`, checked at EL0.
fn expect_page(t: &Task, a: usize, p: usize, what: &str) -> TestResult {
    ensure_eq!(ok(t.load(with_tag(a + p * PAGE, tag_of(0))), what)?, 0x1000 + p as u64, "{what}: data of page {p}");
    expect_tags(t, a + p * PAGE, tag_of, &format!("{what}: page {p}"))
}

// --- devices --------------------------------------------------------------------------

fn swapon_swapoff_syscalls() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    must(t.swapon(0, 0), "swapon")?;
    expect_errno(t.swapon(0, 0), EBUSY, "a second swapon")?;
    expect_errno(t.swapoff(1), EINVAL, "swapoff of a device that does not exist")?;
    must(t.swapoff(0), "swapoff")?;
    expect_errno(t.swapoff(0), EINVAL, "swapoff of a device that is off")?;
    expect_errno(t.swapon(0, 0x8000), EINVAL, "swapon with flags")?;
    expect_errno(t.swapon(3, 0), EINVAL, "swapon of another device")?;
    s.finish()
}
kernel_test!(swap, swapon_swapoff_syscalls, ramdisk);

// --- swap-out ----------------------------------------------------------------------------

fn pageout_installs_exclusive_swap_pte_and_saves_tags() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    let frames = crate::mm::frames::free_frames();
    let st = pageout(&t, a, PAGE)?;
    ensure_eq!(st.reclaimed, 1, "pages reclaimed ({st:?})");
    ensure_eq!(crate::mm::frames::free_frames(), frames + 1, "the folio's frame was freed");
    let (e, excl, wp) = swap_pte(&t, a)?;
    ensure!(excl && !wp, "swap pte bits: exclusive {excl}, uffd-wp {wp}");
    ensure_eq!(swapfile::swap_map(e), 1, "swap_map: one pte, no swap cache");
    ensure!(mteswap::lookup(e).is_some(), "no tag-storage entry for a tagged page");
    ensure_eq!(mteswap::stats().entries, 1, "tag-storage entries");
    expect_rss(&t, 0, 0, "anonymous pages after swap-out")?;
    ensure_eq!(t.mm().rss(crate::mm::mm_types::MM_SWAPENTS), 1, "MM_SWAPENTS");
    s.finish()
}
kernel_test!(swap, pageout_installs_exclusive_swap_pte_and_saves_tags, ramdisk);

fn swapin_read_restores_data_and_tags_and_keeps_swapcache() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    pageout(&t, a, PAGE)?;
    let (e, _, _) = swap_pte(&t, a)?;
    expect_page(&t, a, 0, "after swap-in by a read")?;
    let (pfn, refs, maps) = counts(&t, a)?;
    ensure_eq!((refs, maps), (2, 1), "a read swap-in leaves the folio in the swap cache (cache + pte)");
    ensure!(pfn_to_page(pfn).flags.load(Ordering::Acquire) & PG_SWAPCACHE != 0, "folio not in the swap cache");
    ensure_eq!(swapfile::swap_map(e), swapfile::SWAP_HAS_CACHE, "swap_map: count 0, cached");
    ensure!(mteswap::lookup(e).is_some(), "tags dropped while the slot is still in use");
    ensure!(pte_write(pte_of(&t, a)), "an exclusive page should be mapped writable");
    s.finish()
}
kernel_test!(swap, swapin_read_restores_data_and_tags_and_keeps_swapcache, ramdisk);

fn swapin_write_frees_slot_and_tags() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    pageout(&t, a, PAGE)?;
    let (e, _, _) = swap_pte(&t, a)?;
    ok(t.store(with_tag(a + 16, tag_of(1)), 7), "write fault on the swapped page")?;
    ensure_eq!(swapfile::swap_map(e), 0, "swap_map after an exclusive write swap-in");
    ensure!(mteswap::lookup(e).is_none(), "tag entry outlived its slot");
    let (_, refs, maps) = counts(&t, a)?;
    ensure_eq!((refs, maps), (1, 1), "the folio left the swap cache");
    ensure!(pte_write(pte_of(&t, a)) && pte_dirty(pte_of(&t, a)), "pte after a write swap-in");
    expect_page(&t, a, 0, "after swap-in by a write")?;
    s.finish()
}
kernel_test!(swap, swapin_write_frees_slot_and_tags, ramdisk);

fn many_pages_round_trip() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 16)?;
    let st = pageout(&t, a, 16 * PAGE)?;
    ensure_eq!(st.reclaimed, 16, "pages reclaimed");
    ensure_eq!(mteswap::stats().entries, 16, "tag-storage entries");
    for p in (0..16).rev() {
        expect_page(&t, a, p, "after swap-in")?;
    }
    s.finish()
}
kernel_test!(swap, many_pages_round_trip, ramdisk);

fn untagged_page_gets_no_tag_entry() -> TestResult {
    let mut s = SwapScenario::new()?;
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    ok(t.fill(a, PAGE, 77), "fill")?;
    pageout(&t, a, PAGE)?;
    let (e, _, _) = swap_pte(&t, a)?;
    ensure!(mteswap::lookup(e).is_none(), "an untagged page got a tag-storage entry");
    ensure_eq!(mteswap::stats().entries, 0, "tag-storage entries");
    ensure_eq!(page_hash(&t, a, 0)?, fill_hash(77), "data after swap-in");
    let (pfn, _, _) = counts(&t, a)?;
    ensure!(
        pfn_to_page(pfn).flags.load(Ordering::Acquire) & PG_MTE_TAGGED == 0,
        "untagged page came back marked tagged"
    );
    s.finish()
}
kernel_test!(swap, untagged_page_gets_no_tag_entry, ramdisk);

fn untagged_page_swapped_into_prot_mte_gets_zero_tags() -> TestResult {
    let mut s = SwapScenario::new()?;
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    ok(t.store(a, 0x55), "write")?;
    pageout(&t, a, PAGE)?;
    must(t.mprotect(a, PAGE, RW | PROT_MTE), "mprotect(PROT_MTE)")?;
    ensure_eq!(ok(t.load(a), "read with tag 0")?, 0x55, "data");
    expect_tags(&t, a, |_| 0, "an untagged page mapped PROT_MTE at swap-in")?;
    s.finish()
}
kernel_test!(swap, untagged_page_swapped_into_prot_mte_gets_zero_tags, ramdisk);

/// mprotect cannot clear PROT_MTE (arm64 Linux keeps VM_MTE): a tagged
/// page swapped out, then mprotect(RW), comes back Tagged Normal with its
/// tags, and a wrong tag still faults.
fn swapped_page_after_mprotect_without_prot_mte_keeps_its_tags() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    pageout(&t, a, PAGE)?;
    must(t.mprotect(a, PAGE, RW), "mprotect(no PROT_MTE)")?;
    expect_page(&t, a, 0, "swapped in after mprotect without PROT_MTE")?;
    ensure!(pte_tagged(pte_of(&t, a)), "swapped in untagged although VM_MTE cannot be cleared");
    s.finish()
}
kernel_test!(swap, swapped_page_after_mprotect_without_prot_mte_keeps_its_tags, ramdisk);

// --- fork-shared entries -----------------------------------------------------------------------

fn fork_shared_page_swaps_out_with_count_two() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (p, a) = tagged_pages(&mut s, 1)?;
    let c = s.fork(&p)?;
    let st = pageout(&p, a, PAGE)?;
    ensure_eq!(st.reclaimed, 1, "a page mapped by two tasks is reclaimed through the rmap");
    let (e, pex, _) = swap_pte(&p, a)?;
    let (ce, cex, _) = swap_pte(&c, a)?;
    ensure_eq!(e, ce, "both swap ptes name one entry");
    ensure!(!pex && !cex, "a shared page's swap ptes are not exclusive");
    ensure_eq!(swapfile::swap_map(e), 2, "swap_map count");
    expect_page(&c, a, 0, "child swap-in")?;
    ensure_eq!(swapfile::swap_count(e), 1, "count after the first fault");
    ensure!(mteswap::lookup(e).is_some(), "tags freed while the parent still refers to the entry");
    expect_page(&p, a, 0, "parent swap-in")?;
    ensure_eq!(swapfile::swap_count(e), 0, "count after both faults");
    let (pp, refs, maps) = counts(&p, a)?;
    ensure_eq!(pp, counts(&c, a)?.0, "both map the one swap-cache folio");
    ensure_eq!((refs, maps), (3, 2), "refcount (cache + two ptes) and mapcount");
    ensure!(!pte_write(pte_of(&p, a)) && !pte_write(pte_of(&c, a)), "a shared page must come back read-only");
    ok(c.store(with_tag(a, tag_of(0)), 1), "child COW after swap-in")?;
    expect_tags(&c, a, tag_of, "child's COW copy of a swapped-in page")?;
    s.finish()
}
kernel_test!(swap, fork_shared_page_swaps_out_with_count_two, ramdisk);

fn fork_of_swapped_page_duplicates_the_entry() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (p, a) = tagged_pages(&mut s, 1)?;
    pageout(&p, a, PAGE)?;
    let (e, excl, _) = swap_pte(&p, a)?;
    ensure!(excl, "exclusive before the fork");
    let c = s.fork(&p)?;
    ensure_eq!(swapfile::swap_map(e), 2, "swap_map after fork");
    ensure!(!swap_pte(&p, a)?.1 && !swap_pte(&c, a)?.1, "fork must clear the exclusive bit in both swap ptes");
    ensure_eq!(c.mm().rss(crate::mm::mm_types::MM_SWAPENTS), 1, "child's MM_SWAPENTS");
    ok(p.store(with_tag(a, tag_of(0)), 5), "parent write")?;
    expect_page(&c, a, 0, "child still sees the original")?;
    s.finish()
}
kernel_test!(swap, fork_of_swapped_page_duplicates_the_entry, ramdisk);

fn exit_with_swapped_pages_frees_slots_and_tags() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (p, a) = tagged_pages(&mut s, 4)?;
    let _c = s.fork(&p)?;
    pageout(&p, a, 4 * PAGE)?;
    ensure_eq!(swapfile::slots_in_use().len(), 4, "slots in use");
    s.finish()
}
kernel_test!(swap, exit_with_swapped_pages_frees_slots_and_tags, ramdisk);

fn munmap_of_swapped_page_frees_slot_and_tags() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 2)?;
    pageout(&t, a, 2 * PAGE)?;
    let (e, _, _) = swap_pte(&t, a)?;
    must(t.munmap(a, PAGE), "munmap")?;
    ensure_eq!(swapfile::swap_map(e), 0, "slot after munmap");
    ensure!(mteswap::lookup(e).is_none(), "tags after munmap");
    ensure_eq!(t.mm().rss(crate::mm::mm_types::MM_SWAPENTS), 1, "MM_SWAPENTS");
    must(t.madvise(a + PAGE, PAGE, MADV_DONTNEED), "MADV_DONTNEED")?;
    ensure_eq!(t.mm().rss(crate::mm::mm_types::MM_SWAPENTS), 0, "MM_SWAPENTS after MADV_DONTNEED");
    ensure_eq!(ok(t.load(a + PAGE), "read")?, 0, "MADV_DONTNEED dropped the swapped page");
    s.finish()
}
kernel_test!(swap, munmap_of_swapped_page_frees_slot_and_tags, ramdisk);

fn prot_none_while_swapped_out() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    pageout(&t, a, PAGE)?;
    must(t.mprotect(a, PAGE, 0), "mprotect")?;
    expect_segv(t.load(a), SegvKind::AccErr, a, "access under PROT_NONE")?;
    ensure!(swap_pte(&t, a).is_ok(), "the refused access swapped the page in");
    must(t.mprotect(a, PAGE, RW | PROT_MTE), "mprotect back")?;
    expect_page(&t, a, 0, "after PROT_NONE")?;
    s.finish()
}
kernel_test!(swap, prot_none_while_swapped_out, ramdisk);

// --- swap cache ------------------------------------------------------------------------------

fn kept_in_swapcache_then_hit_without_io() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    let _keep = KEEP_IN_SWAPCACHE.set(1);
    let st = pageout(&t, a, PAGE)?;
    ensure_eq!(st.kept_in_swapcache, 1, "kept ({st:?})");
    let (e, _, _) = swap_pte(&t, a)?;
    let f = swap_state::lookup(e).ok_or_else(|| verdict("swap cache", "empty"))?;
    ensure_eq!((f.refcount(), f.mapcount()), (2, 0), "cached folio: the cache's reference and ours, unmapped");
    drop(f);
    let reads = ramdisk::stats().reads;
    expect_page(&t, a, 0, "swap-cache hit")?;
    ensure_eq!(ramdisk::stats().reads, reads, "a swap-cache hit read the disk");
    s.finish()
}
kernel_test!(swap, kept_in_swapcache_then_hit_without_io, ramdisk);

fn swapcache_folio_keeps_its_anon_rmap() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (p, a) = tagged_pages(&mut s, 1)?;
    let c = s.fork(&p)?;
    let _keep = KEEP_IN_SWAPCACHE.set(1);
    pageout(&p, a, PAGE)?;
    expect_page(&c, a, 0, "child from the swap cache")?;
    let (pfn, _, _) = counts(&c, a)?;
    let f = Folio::get(pfn);
    let hits = crate::mm::rmap::rmap_walk(&f).len();
    drop(f);
    ensure_eq!(hits, 1, "rmap walk of the swap-cache folio (only the child maps it)");
    expect_page(&p, a, 0, "parent from the swap cache")?;
    s.finish()
}
kernel_test!(swap, swapcache_folio_keeps_its_anon_rmap, ramdisk);

// --- swapoff -------------------------------------------------------------------------------

fn swapoff_brings_tagged_pages_back() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (p, a) = tagged_pages(&mut s, 6)?;
    let c = s.fork(&p)?;
    pageout(&p, a, 6 * PAGE)?;
    ensure_eq!(mteswap::stats().entries, 6, "tag-storage entries before swapoff");
    must(p.swapoff(0), "swapoff")?;
    ensure_eq!(mteswap::stats().entries, 0, "tag storage after swapoff (area invalidated)");
    for t in [&p, &c] {
        for i in 0..6 {
            let pte = pte_of(t, a + i * PAGE);
            ensure!(pte_present(pte), "page {i} not present after swapoff: {pte:?}");
            expect_page(t, a, i, "after swapoff")?;
        }
        ensure_eq!(t.mm().rss(crate::mm::mm_types::MM_SWAPENTS), 0, "MM_SWAPENTS after swapoff");
    }
    swapfile::swapon().map_err(|e| verdict("swapon again", e))?;
    s.finish()
}
kernel_test!(swap, swapoff_brings_tagged_pages_back, ramdisk);

fn swapoff_with_read_error_fails_and_keeps_everything() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 2)?;
    pageout(&t, a, 2 * PAGE)?;
    let (e, _, _) = swap_pte(&t, a + PAGE)?;
    let bad = RAMDISK_BAD_SECTOR.set(swapfile::slot_sector(e));
    expect_errno(t.swapoff(0), EIO, "swapoff with an unreadable slot")?;
    ensure!(swapfile::swap_info(0).is_some(), "the device went away after a failed swapoff");
    ensure!(mteswap::lookup(e).is_some(), "tags of the unreadable page were dropped");
    drop(bad);
    expect_page(&t, a, 1, "after the failed swapoff")?;
    expect_page(&t, a, 0, "the page swapoff had brought back")?;
    s.finish()
}
kernel_test!(swap, swapoff_with_read_error_fails_and_keeps_everything, ramdisk);

// --- I/O errors and a full device ---------------------------------------------------------------

fn read_error_gives_sigbus_and_loses_nothing() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    pageout(&t, a, PAGE)?;
    let (e, _, _) = swap_pte(&t, a)?;
    let _fail = RAMDISK_READ.arm(Spec::nth(1));
    match t.load(with_tag(a, tag_of(0))) {
        Err(Signal::Bus { .. }) => {}
        other => fail!("a failed swap read should give SIGBUS, got {other:?}"),
    }
    ensure_eq!(swap_pte(&t, a)?.0, e, "the swap pte after the failed read");
    ensure_eq!(swapfile::swap_map(e), 1, "swap_map after the failed read (no cache left behind)");
    ensure!(mteswap::lookup(e).is_some(), "tags after the failed read");
    expect_page(&t, a, 0, "the retry after the read error")?;
    s.finish()
}
kernel_test!(swap, read_error_gives_sigbus_and_loses_nothing, ramdisk);

fn write_error_keeps_the_folio_in_swapcache() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 2)?;
    let _fail = RAMDISK_WRITE.arm(Spec::nth(2));
    let st = pageout(&t, a, 2 * PAGE)?;
    ensure_eq!((st.reclaimed, st.write_failed), (1, 1), "reclaim outcome ({st:?})");
    let (e, _, _) = swap_pte(&t, a + PAGE)?;
    ensure!(swap_state::lookup(e).is_some(), "the folio whose write failed left the swap cache");
    expect_page(&t, a, 1, "the page whose write failed")?;
    expect_page(&t, a, 0, "the page written")?;
    s.finish()
}
kernel_test!(swap, write_error_keeps_the_folio_in_swapcache, ramdisk);

fn tag_save_failure_keeps_the_folio() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    let fail = MTESWAP_SAVE.arm(Spec::nth(1));
    let st = pageout(&t, a, PAGE)?;
    ensure_eq!(MTESWAP_SAVE.failures(), 1, "failures injected");
    drop(fail);
    ensure_eq!(st.tag_save_failed, 1, "reclaim outcome ({st:?})");
    ensure_eq!(mteswap::stats().entries, 0, "entries after a failed save");
    expect_page(&t, a, 0, "after a failed tag save")?;
    s.finish()
}
kernel_test!(swap, tag_save_failure_keeps_the_folio, ramdisk);

/// An order-9 folio whose save fails at page 200: the 200 entries saved
/// before are erased. Then a full save and restore into another folio.
fn large_folio_tag_save_rolls_back() -> TestResult {
    let f = Folio::alloc(9).ok_or_else(|| verdict("order-9 folio", "out of memory"))?;
    let tag = |i: usize, g: usize| ((i + g) % 15) as u8 + 1;
    for i in 0..512 {
        f.set_tags(i, &core::array::from_fn(|b| tag(i, 2 * b) | tag(i, 2 * b + 1) << 4));
    }
    f.set(PG_MTE_TAGGED);
    let entry = swp_entry(5, 1024); // a type no device uses: storage only
    let fail = MTESWAP_SAVE.arm(Spec::nth(201));
    let r = mteswap::arch_prepare_to_swap(&f, entry);
    drop(fail);
    ensure!(r.is_err(), "the injected failure was not reported");
    ensure_eq!(mteswap::stats().entries, 0, "entries after the rollback");
    mteswap::arch_prepare_to_swap(&f, entry).map_err(|e| verdict("save", e))?;
    ensure_eq!(mteswap::stats().entries, 512, "entries after a full save");
    let g = Folio::alloc(9).ok_or_else(|| verdict("order-9 folio", "out of memory"))?;
    mteswap::arch_swap_restore(entry, &g);
    for i in [0usize, 1, 200, 511] {
        ensure_eq!(g.tags(i), f.tags(i), "restored tags of page {i}");
        ensure_eq!(f.tags(i)[0], tag(i, 0) | tag(i, 1) << 4, "saved tags of page {i} as set");
    }
    mteswap::arch_swap_invalidate_area(5);
    ensure_eq!(mteswap::stats().entries, 0, "entries after invalidating the area");
    for i in 0..512 {
        f.set_tags(i, &[0; 128]);
        g.set_tags(i, &[0; 128]);
    }
    Ok(())
}
kernel_test!(swap, large_folio_tag_save_rolls_back);

fn full_swap_device() -> TestResult {
    let mut s = SwapScenario::with_slots(9)?; // slot 0 is the header: 8 usable
    let (t, a) = tagged_pages(&mut s, 12)?;
    let st = pageout(&t, a, 12 * PAGE)?;
    ensure_eq!((st.reclaimed, st.no_swap), (8, 4), "reclaim on a device with 8 slots ({st:?})");
    ensure_eq!(swapfile::swap_info(0).map(|si| si.free_slots()), Some(0), "free slots");
    for p in 0..12 {
        expect_page(&t, a, p, "with the device full")?;
    }
    s.finish()
}
kernel_test!(swap, full_swap_device, ramdisk);

// --- pte bits carried through swap -----------------------------------------------------------------

fn uffd_wp_bit_survives_swap() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    {
        // No userfaultfd yet: set the bit the way uffd-wp would.
        let mm = t.mm();
        let pt =
            mm.pgtables.lock(a, false).map_err(|_| verdict("pte", "oom"))?.ok_or_else(|| verdict("pte", "none"))?;
        let pte = pt.get(a);
        pt.set(a, pte_mkuffd_wp(pte), mm.asid);
    }
    pageout(&t, a, PAGE)?;
    let (_, _, wp) = swap_pte(&t, a)?;
    ensure!(wp, "the swap pte lost the uffd-wp bit");
    expect_page(&t, a, 0, "after swap-in")?;
    let pte = pte_of(&t, a);
    ensure!(pte_uffd_wp(pte) && !pte_write(pte), "swap-in lost uffd-wp or mapped writable: {pte:?}");
    s.finish()
}
kernel_test!(swap, uffd_wp_bit_survives_swap, ramdisk);

fn exclusive_bit_decides_writability() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    pageout(&t, a, PAGE)?;
    ok(t.load(with_tag(a, tag_of(0))), "read")?;
    let (pfn, _, _) = counts(&t, a)?;
    ensure!(
        pfn_to_page(pfn).flags.load(Ordering::Acquire) & PG_ANON_EXCLUSIVE != 0,
        "exclusive swap pte did not give AnonExclusive"
    );
    ok(t.store(with_tag(a, tag_of(0)), 9), "write")?;
    ensure_eq!(counts(&t, a)?.0, pfn, "an exclusive page is written in place, not copied");
    s.finish()
}
kernel_test!(swap, exclusive_bit_decides_writability, ramdisk);

// --- orderings ----------------------------------------------------------------------------------

/// Swap out one tagged page, set `order`, fault it back in with a write
/// (which frees the slot), and report what the task sees.
/// What a task saw after a swap-in: the faulting store, the page's tags and data.
type SwapinOutcome = (Result<(), Signal>, [u8; 256], u64);

fn swapin_with(order: SwapInOrder) -> Result<SwapinOutcome, Verdict> {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    pageout(&t, a, PAGE)?;
    let wrong = order.variant().map(|v| v.enable());
    let w = t.store(with_tag(a + 32, tag_of(2)), 0xAB);
    drop(wrong);
    let tags = ok(t.page_tags(a), "LDG")?;
    let data = ok(t.load(with_tag(a, tags[0])), "read")?;
    s.finish()?;
    Ok((w, tags, data))
}

fn correct_order_keeps_tags() -> TestResult {
    let (w, tags, data) = swapin_with(SwapInOrder::Correct)?;
    ok(w, "write swap-in in the correct order")?;
    for (g, &t) in tags.iter().enumerate() {
        ensure_eq!(t, tag_of(g), "tag of granule {g}");
    }
    ensure_eq!(data, 0x1000, "data");
    Ok(())
}
kernel_test!(swap, correct_order_keeps_tags, ramdisk);

/// A wrong order loses the tags: the faulting store itself is retried on a
/// page with zero tags and takes a tag-check fault.
fn expect_caught(order: SwapInOrder) -> TestResult {
    let (w, tags, data) = swapin_with(order)?;
    ensure!(
        matches!(w, Err(Signal::Segv { kind: SegvKind::MteSErr, .. })),
        "{order:?} was not caught: the store through the page's tag gave {w:?}"
    );
    ensure!(tags.iter().all(|&t| t == 0), "{order:?}: expected the lost tags to read 0, got {:?}", &tags[..8]);
    ensure_eq!(data, 0x1000, "{order:?}: data survives");
    Ok(())
}

fn free_before_restore_is_caught() -> TestResult {
    expect_caught(SwapInOrder::FreeBeforeRestore)
}
kernel_test!(swap, free_before_restore_is_caught, ramdisk);

fn restore_after_set_pte_is_caught() -> TestResult {
    expect_caught(SwapInOrder::RestoreAfterSetPte)
}
kernel_test!(swap, restore_after_set_pte_is_caught, ramdisk);

/// Two threads fault on one swap entry: B stops right after its swap-cache
/// lookup; A completes a write fault, which frees the slot and its tag
/// buffer; B goes on. With the tags read before the folio lock, B copies
/// the freed (poisoned) buffer into the page A mapped.
/// A frees the slot although B holds a reference because swap is full (one
/// usable slot, in use): should_try_to_free_swap then frees whatever the
/// refcount, as Linux's does when vm_swap_full().
/// The use-after-free count, the page's tags and thread B's read.
type RaceOutcome = (u64, [u8; 256], Option<Result<u64, Signal>>);

/// Returns the use-after-free count, the page's tags and thread B's read.
fn race_t1_t2(order: SwapInOrder) -> Result<RaceOutcome, Verdict> {
    let mut s = SwapScenario::with_slots(2)?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    pageout(&t, a, PAGE)?;
    let wrong = order.variant().map(|v| v.enable());
    let uaf_before = mteswap::stats().use_after_free;
    let bp = crate::testhooks::schedpoint::arm(&crate::testhooks::points::DO_SWAP_PAGE_AFTER_SWAPCACHE_LOOKUP);
    let tb = t.clone();
    let job = on_cpu(1, "thread B", move || tb.load(with_tag(a, tag_of(0))))?;
    bp.wait_reached(5_000_000).map_err(|e| verdict("thread B", e))?;
    let wa = t.store(with_tag(a + 16, tag_of(1)), 0x77);
    bp.release();
    let b = Some(job.join()?);
    drop(wrong);
    ok(wa, "thread A's write fault")?;
    let uaf = mteswap::stats().use_after_free - uaf_before;
    let tags = ok(t.page_tags(a), "LDG")?;
    s.finish()?;
    Ok((uaf, tags, b))
}

fn t1_t2_race_correct_order_is_safe() -> TestResult {
    let (uaf, tags, b) = race_t1_t2(SwapInOrder::Correct)?;
    ensure_eq!(uaf, 0, "tag-buffer reads after free");
    ensure_eq!(b, Some(Ok(0x1000)), "thread B's read, after refaulting on the page A mapped");
    for (g, &t) in tags.iter().enumerate() {
        ensure_eq!(t, tag_of(g), "tag of granule {g} after the race");
    }
    Ok(())
}
kernel_test!(swap, t1_t2_race_correct_order_is_safe, cpus = 2, ramdisk);

fn t1_t2_race_restore_before_lock_is_caught() -> TestResult {
    let (uaf, tags, _) = race_t1_t2(SwapInOrder::RestoreBeforeLock)?;
    ensure!(uaf >= 1, "the stale tag-buffer read was not detected");
    ensure!(
        tags.iter().all(|&t| t == mteswap::POISON & 0xF),
        "thread B's stale restore should have left the poison tags on the mapped page: {:?}",
        &tags[..8]
    );
    Ok(())
}
kernel_test!(swap, t1_t2_race_restore_before_lock_is_caught, cpus = 2, ramdisk);

// --- two CPUs on one entry, interleaved at each schedule point ------------------------------------------

/// The points of do_swap_page where a second CPU's fault can come in.
/// Points inside the folio or pte lock need a third CPU to run A while B
/// holds the lock there.
static UNLOCKED_POINTS: [&Point; 1] = [&points::DO_SWAP_PAGE_AFTER_SWAPCACHE_LOOKUP];
static LOCKED_POINTS: [&Point; 3] = [
    &points::DO_SWAP_PAGE_AFTER_FOLIO_LOCK,
    &points::DO_SWAP_PAGE_AFTER_RESTORE,
    &points::DO_SWAP_PAGE_AFTER_SWAP_FREE,
];

/// B (CPU 1) stops at `point`, A runs its fault to the end on `a_cpu`, B
/// goes on. `shared`: A and B are parent and child (swap count 2), else two
/// threads of one task. A writes, B reads.
fn interleave(point: &'static Point, a_cpu: usize, shared: bool) -> TestResult {
    let name = format!(
        "[B stopped at {}, A ran on CPU {a_cpu}, {}]",
        point.name,
        if shared { "fork-shared entry" } else { "one task" }
    );
    let mut s = SwapScenario::new()?;
    let (p, a) = tagged_pages(&mut s, 1)?;
    let b_task = if shared { s.fork(&p)? } else { p.clone() };
    pageout(&p, a, PAGE)?;
    let bp = crate::testhooks::schedpoint::arm(point);
    let bt = b_task.clone();
    let job_b = on_cpu(1, &format!("{name}: B"), move || bt.load(with_tag(a, tag_of(0))))?;
    bp.wait_reached(5_000_000).map_err(|e| Verdict::Fail(format!("{name}: B never reached the point: {e}")))?;
    let ra = if a_cpu == 0 {
        let r = p.store(with_tag(a + 16, tag_of(1)), 0xA);
        bp.release();
        r
    } else {
        let pa = p.clone();
        let job_a = on_cpu(a_cpu, &format!("{name}: A"), move || pa.store(with_tag(a + 16, tag_of(1)), 0xA))?;
        // Give A time to run into B's lock, then let B go.
        let f = crate::arch::cpu::counter_freq();
        let until = crate::arch::cpu::counter() + f / 50;
        while crate::arch::cpu::counter() < until {
            core::hint::spin_loop();
        }
        bp.release();
        job_a.join()?
    };
    let rb = job_b.join()?;
    ok(ra, &format!("{name}: A's write"))?;
    ensure_eq!(ok(rb, &format!("{name}: B's read"))?, 0x1000, "{name}: B's data");
    expect_tags(&p, a, tag_of, &format!("{name}: A's page"))?;
    expect_tags(&b_task, a, tag_of, &format!("{name}: B's page"))?;
    s.finish().map_err(|v| match v {
        Verdict::Fail(w) => Verdict::Fail(format!("{name}: {w}")),
        other => other,
    })
}

fn race_on_one_entry_unlocked_points() -> TestResult {
    for point in UNLOCKED_POINTS.iter().copied() {
        for shared in [false, true] {
            interleave(point, 0, shared)?;
        }
    }
    Ok(())
}
kernel_test!(swap, race_on_one_entry_unlocked_points, cpus = 2, ramdisk);

fn race_on_one_entry_locked_points() -> TestResult {
    for point in LOCKED_POINTS.iter().chain(UNLOCKED_POINTS.iter()).copied() {
        for shared in [false, true] {
            interleave(point, 2, shared)?;
        }
    }
    Ok(())
}
kernel_test!(swap, race_on_one_entry_locked_points, cpus = 3, ramdisk);

// --- the tag storage's cost -----------------------------------------------------------------------

/// Pages of one tag, or of a few runs, are stored inline in the index;
/// a tag per granule takes a raw buffer; untagged pages take nothing. All
/// come back intact.
fn tag_storage_memory_use() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 8)?;
    let u = s.spawn()?;
    let b = mmap(&u, 0, 8 * PAGE, RW, ANON, -1)?;
    for i in 0..8 {
        ok(u.store(b + i * PAGE, 1), "write")?;
    }
    let w = s.spawn()?;
    let c = mmap(&w, 0, 8 * PAGE, RW | PROT_MTE, ANON, -1)?;
    let runs = |p: usize| move |g: usize| if p % 2 == 0 { p as u8 + 1 } else { (g / 64 + p) as u8 % 15 + 1 };
    for p in 0..8 {
        tag_page(&w, c + p * PAGE, runs(p))?;
    }
    pageout(&t, a, 8 * PAGE)?;
    let raw = mteswap::stats();
    pageout(&u, b, 8 * PAGE)?;
    ensure_eq!(mteswap::stats().entries, 8, "entries: one per tagged page, none for untagged ones");
    pageout(&w, c, 8 * PAGE)?;
    let st = mteswap::stats();
    ensure_eq!(raw.inline, 0, "a tag per granule is not inline");
    ensure_eq!(raw.bytes - raw.index_bytes, 8 * (mteswap::MAX_BYTES_PER_ENTRY - 8), "buffers of 8 raw pages");
    ensure_eq!(st.entries, 16, "entries");
    ensure_eq!(st.inline, 8, "pages of one tag and of 4 runs are inline");
    ensure_eq!(st.bytes - st.index_bytes, raw.bytes - raw.index_bytes, "inline pages take no buffer");
    ensure!(st.index_bytes >= 16 * 8, "an index word per stored slot");
    defmt::info!(
        "tag storage: {=usize} bytes of index and buffers for 8 raw and 8 inline pages (at most {=usize} a page)",
        st.bytes,
        mteswap::MAX_BYTES_PER_ENTRY
    );
    for p in 0..8 {
        expect_page(&t, a, p, "raw page after swap-in")?;
        expect_tags(&w, c + p * PAGE, runs(p), &format!("inline page {p} after swap-in"))?;
    }
    for (x, at) in [(&t, a), (&u, b), (&w, c)] {
        must(x.munmap(at, 8 * PAGE), "munmap")?;
    }
    let end = mteswap::stats();
    ensure_eq!((end.entries, end.bytes), (0, 0), "entries and bytes once every page is unmapped (empty leaves freed)");
    s.finish()
}
kernel_test!(swap, tag_storage_memory_use, ramdisk);

/// Pages of 16 tagged 256-byte allocations (a malloc size class, neighbours
/// sometimes drawing the same IRG tag) are stored in one 8-byte cell each
/// beside the index word, and come back exactly.
fn a_page_of_tagged_allocations_is_one_cell() -> TestResult {
    let mut s = SwapScenario::new()?;
    let t = s.spawn()?;
    let a = mmap(&t, 0, 8 * PAGE, RW | PROT_MTE, ANON, -1)?;
    let irg = [3u8, 3, 9, 1, 15, 2, 2, 2, 7, 11, 4, 6, 13, 8, 5, 10];
    let layout = |p: usize| move |g: usize| irg[(g / 16 + p) % 16];
    for p in 0..8 {
        tag_page(&t, a + p * PAGE, layout(p))?;
    }
    let before = mteswap::stats();
    pageout(&t, a, 8 * PAGE)?;
    let st = mteswap::stats();
    ensure_eq!(st.entries - before.entries, 8, "entries");
    ensure_eq!(st.grid - before.grid, 8, "pages stored as a grid cell");
    let cells = (st.bytes - st.index_bytes) - (before.bytes - before.index_bytes);
    ensure!(cells <= 8 * 8, "8 pages took {cells} bytes beside the index: more than a cell each");
    for p in 0..8 {
        expect_tags(&t, a + p * PAGE, layout(p), &format!("page {p} after swap-in"))?;
    }
    must(t.munmap(a, 8 * PAGE), "munmap")?;
    ensure_eq!(mteswap::stats().grid, before.grid, "cells once the pages and their slots are gone");
    s.finish()
}
kernel_test!(swap, a_page_of_tagged_allocations_is_one_cell, ramdisk);

// --- large folios ----------------------------------------------------------------------------

/// A task with one huge (order-9) PROT_MTE folio; pages 0, 100 and 511
/// tagged and filled.
fn huge_folio(s: &mut Scenario) -> Result<(Arc<Task>, usize, u64), Verdict> {
    s.thp();
    let t = s.spawn()?;
    let a = super::mm::thp_mapping(&t)?;
    ok(t.store(a, 0), "write")?;
    for p in [0usize, 100, 511] {
        tag_page(&t, a + p * PAGE, tag_of)?;
        ok(t.store(with_tag(a + p * PAGE, tag_of(0)), 0x1000 + p as u64), "write")?;
    }
    let head = pte_pfn(pte_of(&t, a));
    ensure_eq!(Folio::get(head).nr_pages(), 512, "a huge folio was mapped");
    Ok((t, a, head))
}

fn large_folio_swaps_out_whole() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a, _) = huge_folio(&mut s)?;
    let st = pageout(&t, a, 2 << 20)?;
    ensure_eq!(st.reclaimed, 1, "one large folio reclaimed ({st:?})");
    let (e0, ex, _) = swap_pte(&t, a)?;
    ensure!(ex, "exclusive bit");
    ensure_eq!(swp_offset(e0) % 512, 0, "the 512 slots are aligned");
    for i in [1usize, 100, 511] {
        let (e, _, _) = swap_pte(&t, a + i * PAGE)?;
        ensure_eq!(swp_offset(e), swp_offset(e0) + i as u64, "slot of page {i}");
        ensure_eq!(swapfile::swap_map(e), 1, "swap_map of page {i}");
    }
    ensure_eq!(mteswap::stats().entries, 512, "every page of a tagged folio has a tag entry");
    expect_rss(&t, 0, 0, "after swap-out")?;
    for p in [511usize, 0, 100] {
        expect_page(&t, a, p, "swapped-in page of the large folio")?;
    }
    expect_tags(&t, a + 7 * PAGE, |_| 0, "an untouched page of the large folio")?;
    s.finish()
}
kernel_test!(swap, large_folio_swaps_out_whole, ramdisk);

fn large_folio_in_swapcache_maps_its_pages() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a, head) = huge_folio(&mut s)?;
    let _keep = KEEP_IN_SWAPCACHE.set(1);
    pageout(&t, a, 2 << 20)?;
    expect_page(&t, a, 100, "page 100 from the swap cache")?;
    ensure_eq!(pte_pfn(pte_of(&t, a + 100 * PAGE)), head + 100, "page 100 maps the folio's page 100");
    let f = Folio::get(head);
    ensure_eq!((f.refcount(), f.mapcount()), (512 + 1 + 1, 1), "refcount (cache 512 + pte + ours) and mapcount");
    drop(f);
    expect_page(&t, a, 511, "page 511 from the swap cache")?;
    s.finish()
}
kernel_test!(swap, large_folio_in_swapcache_maps_its_pages, ramdisk);

fn large_folio_tag_save_failure_in_reclaim_rolls_back() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a, _) = huge_folio(&mut s)?;
    let _fail = MTESWAP_SAVE.arm(Spec::nth(300));
    let st = pageout(&t, a, 2 << 20)?;
    ensure_eq!(st.tag_save_failed, 1, "reclaim outcome ({st:?})");
    ensure_eq!(mteswap::stats().entries, 0, "the 299 entries saved before the failure were erased");
    for p in [0usize, 100, 511] {
        expect_page(&t, a, p, "after the failed save")?;
    }
    s.finish()
}
kernel_test!(swap, large_folio_tag_save_failure_in_reclaim_rolls_back, ramdisk);

// --- hardening: reclaim over holes, reuse after the sharer left, swapoff ------------------

/// MADV_PAGEOUT over a range holding a never-touched page (a none pte), an
/// already swapped-out page and a present one reclaims the present one and
/// skips the others (a none or swap pte names no folio).
fn pageout_skips_none_and_swap_ptes() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 3)?;
    let b = mmap(&t, a + 3 * PAGE, PAGE, RW | PROT_MTE, ANON | MAP_FIXED, -1)?; // never touched
    ensure_eq!(b, a + 3 * PAGE, "MAP_FIXED");
    pageout(&t, a + PAGE, PAGE)?;
    let st = pageout(&t, a, 4 * PAGE)?;
    ensure_eq!(st.reclaimed, 2, "present pages reclaimed over a range with a swap pte and a none pte ({st:?})");
    ensure!(pte_none(pte_of(&t, b)), "the untouched page got a pte");
    for p in 0..3 {
        swap_pte(&t, a + p * PAGE)?;
        expect_page(&t, a, p, "after pageout over holes")?;
    }
    s.finish()
}
kernel_test!(swap, pageout_skips_none_and_swap_ptes, ramdisk);

/// A tagged page a parent and child shared, swapped out (one entry, count
/// 2, not exclusive), then the child exits: the parent, the page's address
/// and the entry, now with count 1.
fn swapped_after_the_sharer_left(s: &mut Scenario) -> Result<(Arc<Task>, usize, swp_entry_t), Verdict> {
    let (p, a) = tagged_pages(s, 1)?;
    let c = s.fork(&p)?;
    pageout(&p, a, PAGE)?;
    let (e, excl, _) = swap_pte(&p, a)?;
    ensure!(!excl, "a fork-shared swap pte is not exclusive");
    let _ = c.exit(0);
    ensure!(!c.alive(), "the child did not exit");
    ensure_eq!(swapfile::swap_count(e), 1, "swap count once the child has gone");
    Ok((p, a, e))
}

/// The page a parent and child shared through swap, read back by the parent
/// after the child exited, then written: the write reuses the page and the
/// swap cache lets go of the slot and its tag-storage entry
/// (wp_can_reuse_anon_folio freeing the swap cache under the folio lock).
fn write_after_the_sharer_left_reuses_and_frees_the_slot() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (p, a, e) = swapped_after_the_sharer_left(&mut s)?;
    expect_page(&p, a, 0, "read back by the parent")?;
    let (pfn, _, _) = counts(&p, a)?;
    ok(p.store(with_tag(a, tag_of(0)), 0xAB), "write")?;
    let (npfn, refs, maps) = counts(&p, a)?;
    ensure_eq!(npfn, pfn, "the write copied a page it is the only user of");
    ensure_eq!((refs, maps), (1, 1), "refcount and mapcount: the swap cache let go");
    ensure_eq!(swapfile::swap_map(e), 0, "the slot is still held after the reuse");
    ensure!(mteswap::lookup(e).is_none(), "the tag-storage entry outlived the slot");
    ensure!(swap_state::cached().is_empty(), "the old folio stays in the swap cache");
    expect_tags(&p, a, tag_of, "tags after the reuse")?;
    s.finish()
}
kernel_test!(swap, write_after_the_sharer_left_reuses_and_frees_the_slot, ramdisk);

/// The same, with the write as the swap-in itself: do_swap_page's
/// should_try_to_free_swap frees the cache when our reference and the
/// cache's are the only ones, whatever the swap pte's exclusive bit said.
fn write_swapin_after_the_sharer_left_frees_the_slot() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (p, a, e) = swapped_after_the_sharer_left(&mut s)?;
    ok(p.store(with_tag(a + 16, tag_of(1)), 0xCD), "write fault on the swapped page")?;
    let (_, refs, maps) = counts(&p, a)?;
    ensure_eq!((refs, maps), (1, 1), "the folio left the swap cache");
    ensure!(pte_write(pte_of(&p, a)), "mapped read-only although no one else holds the page");
    ensure_eq!(swapfile::swap_map(e), 0, "the slot is still held");
    ensure!(mteswap::lookup(e).is_none(), "the tag-storage entry outlived the slot");
    expect_tags(&p, a, tag_of, "tags after the write swap-in")?;
    s.finish()
}
kernel_test!(swap, write_swapin_after_the_sharer_left_frees_the_slot, ramdisk);

/// swapoff walks every VMA with an anon_vma, so a COWed page of a private
/// file mapping that was swapped out comes back (not EBUSY).
fn swapoff_brings_back_a_cowed_page_of_a_private_file_mapping() -> TestResult {
    let mut s = SwapScenario::new()?;
    let t = s.spawn()?;
    let (fd, _) = s.file(2);
    let a = mmap(&t, 0, 2 * PAGE, RW, MAP_PRIVATE, fd as i64)?;
    ok(t.store(a + 8, 0xF11E), "private write (COW into an anonymous page)")?;
    let st = pageout(&t, a, PAGE)?;
    ensure_eq!(st.reclaimed, 1, "the COWed page was reclaimed ({st:?})");
    swap_pte(&t, a)?;
    must(t.swapoff(0), "swapoff")?;
    ensure!(pte_present(pte_of(&t, a)), "the COWed page is not present after swapoff");
    ensure_eq!(ok(t.load(a + 8), "read")?, 0xF11E, "the COWed data after swapoff");
    swapfile::swapon().map_err(|e| verdict("swapon again", e))?;
    s.finish()
}
kernel_test!(swap, swapoff_brings_back_a_cowed_page_of_a_private_file_mapping, ramdisk);

/// swapoff keeps the uffd-wp bit of the swap pte it brings back: the page
/// comes back write-protected.
fn swapoff_keeps_the_uffd_wp_bit() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (t, a) = tagged_pages(&mut s, 1)?;
    pageout(&t, a, PAGE)?;
    {
        let mm = t.mm();
        let pt =
            mm.pgtables.lock(a, false).map_err(|_| verdict("pte", "oom"))?.ok_or_else(|| verdict("pte", "none"))?;
        let pte = pt.get(a);
        pt.set(a, pte_swp_mkuffd_wp(pte), mm.asid);
    }
    must(t.swapoff(0), "swapoff")?;
    let pte = pte_of(&t, a);
    ensure!(pte_present(pte), "not present after swapoff: {pte:?}");
    ensure!(pte_uffd_wp(pte) && !pte_write(pte), "swapoff dropped the uffd-wp bit or mapped writable: {pte:?}");
    expect_page(&t, a, 0, "after swapoff")?;
    swapfile::swapon().map_err(|e| verdict("swapon again", e))?;
    s.finish()
}
kernel_test!(swap, swapoff_keeps_the_uffd_wp_bit, ramdisk);

/// swapoff of a 64 TiB VMA with one swapped page walks only the page tables
/// that exist (a per-page walk is 2^34 steps and hangs the test).
fn swapoff_of_a_huge_vma_walks_only_its_tables() -> TestResult {
    let mut s = SwapScenario::new()?;
    let t = s.spawn()?;
    let len = 1usize << 46;
    let a = mmap(&t, 0, len, RW | PROT_MTE, ANON, -1)?;
    let far = a + len - PAGE;
    tag_page(&t, far, tag_of)?;
    ok(t.store(with_tag(far, tag_of(0)), 0x1000), "write")?;
    pageout(&t, far, PAGE)?;
    must(t.swapoff(0), "swapoff")?;
    expect_page(&t, far, 0, "the far page after swapoff")?;
    swapfile::swapon().map_err(|e| verdict("swapon again", e))?;
    s.finish()
}
kernel_test!(swap, swapoff_of_a_huge_vma_walks_only_its_tables, ramdisk);

/// do_swap_page holds the folio lock from the swap-cache hit to the pte:
/// while a child's swap-in of the page its parent already swapped back in
/// (a shared swap-cache folio) is parked after taking the lock, reclaim on
/// another CPU must skip that folio rather than unmap the parent's pte and
/// take the folio out of the swap cache under the child's feet.
fn swapin_holds_the_folio_lock_against_reclaim() -> TestResult {
    let mut s = SwapScenario::new()?;
    let (p, a) = tagged_pages(&mut s, 1)?;
    let c = s.fork(&p)?;
    pageout(&p, a, PAGE)?;
    expect_page(&p, a, 0, "the parent's swap-in")?;
    let (pfn, _, _) = counts(&p, a)?;
    ensure!(pfn_to_page(pfn).flags.load(Ordering::Acquire) & PG_SWAPCACHE != 0, "not in the swap cache");
    let bp = crate::testhooks::schedpoint::arm(&crate::testhooks::points::DO_SWAP_PAGE_AFTER_FOLIO_LOCK);
    let cc = c.clone();
    let job = on_cpu(1, "the child", move || cc.load(with_tag(a, tag_of(0))))?;
    bp.wait_reached(5_000_000).map_err(|e| verdict("the child's swap-in", e))?;
    let st = pageout(&p, a, PAGE);
    bp.release();
    let read = job.join()?;
    let st = st?;
    ensure_eq!((st.reclaimed, st.skipped), (0, 1), "reclaim of the folio a swap-in holds locked ({st:?})");
    ensure_eq!(read, Ok(0x1000), "the child's read");
    ensure_eq!(pte_pfn(pte_of(&c, a)), pfn, "the child maps the parent's swap-cache folio");
    ensure!(pte_present(pte_of(&p, a)), "the parent's pte was unmapped");
    expect_page(&c, a, 0, "the child after the swap-in")?;
    s.finish()
}
kernel_test!(swap, swapin_holds_the_folio_lock_against_reclaim, cpus = 2, ramdisk);
