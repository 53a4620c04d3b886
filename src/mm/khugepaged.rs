//! khugepaged and MADV_COLLAPSE: the anonymous part of Linux's
//! mm/khugepaged.c. A 2 MiB range mapped by ptes becomes one PMD-mapped
//! THP, in two rounds:
//!
//! - round 1, `hpage_collapse_scan_pmd`, under the mmap read lock and the
//!   pte lock, looks at every pte and refuses the range with a SCAN_*
//!   reason, or lets `collapse_huge_page` go on;
//! - `collapse_huge_page` drops the mmap lock to allocate the THP, retakes
//!   it and revalidates the VMA, swaps the stragglers in through
//!   do_swap_page (so their tags come back by the same ordering as on any
//!   fault), then under the mmap write lock detaches the page table
//!   (pmdp_collapse_flush) and runs round 2, `__collapse_huge_page_isolate`,
//!   under the detached table's lock: what changed while the lock was
//!   dropped (a uffd-wp bit, a pin, a page swapped out again) refuses the
//!   collapse and the table goes back as it was. Otherwise
//!   `__collapse_huge_page_copy` copies every page's data and tags, the old
//!   pages are unmapped and freed with their swap cache, and the PMD is set.
//!
//! khugepaged itself is `khugepaged_do_scan` over the registered mms, run
//! by a test directly (deterministic) or by the khugepaged thread on a CPU
//! the test chooses; MADV_COLLAPSE is `madvise_collapse`. Both use the
//! same scan and collapse.
//!
//! Differences from Linux: there is no LRU, NUMA, memcg or
//! machine-check-safe copy here, so SCAN_PAGE_LRU, SCAN_DEL_PAGE_LRU,
//! SCAN_SCAN_ABORT, SCAN_CGROUP_CHARGE_FAIL and SCAN_COPY_MC never happen;
//! there is no mm_users count, so an mm that exits under a collapse shows
//! SCAN_VMA_NULL rather than SCAN_ANY_PROCESS; there are no per-VMA locks,
//! so the mmap write lock alone excludes UFFDIO_MOVE; "referenced" is the
//! pte's access flag (MADV_COLD clears it). A uffd-wp marker gives
//! SCAN_PTE_UFFD_WP; every other non-swap entry SCAN_PTE_NON_PRESENT.

use super::folio::{
    copy_frame, copy_frame_tags, folio_head, pfn_to_page, set_frame_tags, zero_frame, Folio, PG_LOCKED, PG_MTE_TAGGED,
    PG_SWAPCACHE,
};
use super::huge_memory::{map_new_thp, thp_vma_allowable};
use super::mm_types::*;
use super::pgtable::{PgTables, PteTable};
use super::pte::*;
use super::rmap::folio_remove_rmap_pte;
use crate::arch::mmu::{PAGE_SIZE, PMD_MASK, PMD_SIZE};
use crate::cmdline::THP_PMD_ORDER;
use crate::errno::{Errno, EAGAIN, EBUSY, EINVAL, ENOMEM};
use crate::testhooks::knobs::{
    KHUGEPAGED_MAX_PTES_NONE, KHUGEPAGED_MAX_PTES_SHARED, KHUGEPAGED_MAX_PTES_SWAP, KHUGEPAGED_PAGES_TO_SCAN,
    KHUGEPAGED_SCAN_SLEEP_MILLISECS,
};
use crate::testhooks::schedpoint::sched_point;
use crate::testhooks::{points, variants};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;

const NR: usize = HPAGE_PMD_NR as usize;

/// Linux's enum scan_result, the codes the anonymous path can give here
/// (see the module comment for the ones it cannot).
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanResult {
    SCAN_FAIL,
    SCAN_SUCCEED,
    SCAN_PMD_NULL,
    SCAN_PMD_NONE,
    SCAN_PMD_MAPPED,
    SCAN_EXCEED_NONE_PTE,
    SCAN_EXCEED_SWAP_PTE,
    SCAN_EXCEED_SHARED_PTE,
    SCAN_PTE_NON_PRESENT,
    SCAN_PTE_UFFD_WP,
    SCAN_PAGE_RO,
    SCAN_LACK_REFERENCED_PAGE,
    SCAN_PAGE_NULL,
    SCAN_PAGE_COUNT,
    SCAN_PAGE_LOCK,
    SCAN_PAGE_ANON,
    SCAN_VMA_NULL,
    SCAN_VMA_CHECK,
    SCAN_ADDRESS_RANGE,
    SCAN_ALLOC_HUGE_PAGE_FAIL,
}
use ScanResult::*;

/// Who started the collapse: the limits and the "referenced" rule bind
/// khugepaged only.
#[derive(Clone, Copy, Debug)]
pub struct CollapseControl {
    pub is_khugepaged: bool,
}

const KHUGEPAGED: CollapseControl = CollapseControl { is_khugepaged: true };
const MADVISE: CollapseControl = CollapseControl { is_khugepaged: false };

/// The khugepaged and collapse events of Linux's /proc/vmstat and
/// khugepaged's sysfs counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CollapseStats {
    pub thp_collapse_alloc: u64,
    pub thp_collapse_alloc_failed: u64,
    /// khugepaged/pages_collapsed (MADV_COLLAPSE's count too, as Linux's).
    pub pages_collapsed: u64,
    /// khugepaged/full_scans.
    pub full_scans: u64,
    /// Pages read back through do_swap_page by collapse's swap-in step.
    pub swapin: u64,
    /// Passes of khugepaged_do_scan, by the thread or a test.
    pub passes: u64,
}

static ALLOC: AtomicU64 = AtomicU64::new(0);
static ALLOC_FAILED: AtomicU64 = AtomicU64::new(0);
static COLLAPSED: AtomicU64 = AtomicU64::new(0);
static FULL_SCANS: AtomicU64 = AtomicU64::new(0);
static SWAPIN: AtomicU64 = AtomicU64::new(0);
static PASSES: AtomicU64 = AtomicU64::new(0);

pub fn stats() -> CollapseStats {
    CollapseStats {
        thp_collapse_alloc: ALLOC.load(Ordering::Acquire),
        thp_collapse_alloc_failed: ALLOC_FAILED.load(Ordering::Acquire),
        pages_collapsed: COLLAPSED.load(Ordering::Acquire),
        full_scans: FULL_SCANS.load(Ordering::Acquire),
        swapin: SWAPIN.load(Ordering::Acquire),
        passes: PASSES.load(Ordering::Acquire),
    }
}

/// thp_vma_allowable_order for a collapse: khugepaged obeys the sysfs
/// policy (TVA_ENFORCE_SYSFS), MADV_COLLAPSE only VM_NOHUGEPAGE and the
/// VMA's kind.
fn collapse_allowable(vma: &Vma, cc: &CollapseControl) -> bool {
    if cc.is_khugepaged {
        thp_vma_allowable(vma, THP_PMD_ORDER)
    } else {
        vma.is_anon() && vma.flags & (VM_NOHUGEPAGE | VM_SHARED) == 0
    }
}

fn userfaultfd_armed(vma: &Vma) -> bool {
    vma.flags & (VM_UFFD_MISSING | VM_UFFD_WP) != 0
}

/// hugepage_vma_revalidate: the VMA at `addr` after the mmap lock was
/// (re)taken, still one a THP may back whole.
fn hugepage_vma_revalidate(
    map: &MmMap,
    addr: usize,
    expect_anon: bool,
    cc: &CollapseControl,
) -> Result<Vma, ScanResult> {
    let vma = map.find(addr).ok_or(SCAN_VMA_NULL)?;
    if addr < vma.start || addr + PMD_SIZE > vma.end {
        return Err(SCAN_ADDRESS_RANGE);
    }
    if !collapse_allowable(vma, cc) {
        return Err(SCAN_VMA_CHECK);
    }
    if expect_anon && (vma.anon_vma().is_none() || !vma.is_anon()) {
        return Err(SCAN_PAGE_ANON);
    }
    Ok(vma.clone())
}

/// find_pmd_or_thp_or_none: Ok when `addr`'s PMD holds a pte table.
fn find_pmd_or_thp_or_none(mm: &MmStruct, addr: usize) -> Result<(), ScanResult> {
    match mm.pgtables.pmd_find(addr) {
        None => Err(SCAN_PMD_NULL),
        Some(p) if pmd_none(p) => Err(SCAN_PMD_NONE),
        Some(p) if pmd_trans_huge(p) => Err(SCAN_PMD_MAPPED),
        Some(p) if !pmd_table(p) => Err(SCAN_PMD_NULL), // a migration entry or bad
        Some(_) => Ok(()),
    }
}

/// The three limits, or none for MADV_COLLAPSE.
struct Limits {
    none: usize,
    swap: usize,
    shared: usize,
}

impl Limits {
    fn of(cc: &CollapseControl) -> Limits {
        if cc.is_khugepaged {
            Limits {
                none: KHUGEPAGED_MAX_PTES_NONE.get() as usize,
                swap: KHUGEPAGED_MAX_PTES_SWAP.get() as usize,
                shared: KHUGEPAGED_MAX_PTES_SHARED.get() as usize,
            }
        } else {
            Limits { none: usize::MAX, swap: usize::MAX, shared: usize::MAX }
        }
    }
}

/// What both rounds count over the 512 ptes, with the rules they share.
struct Tally<'a> {
    vma: &'a Vma,
    cc: &'a CollapseControl,
    lim: Limits,
    none: usize,
    shared: usize,
    referenced: usize,
    writable: bool,
}

impl<'a> Tally<'a> {
    fn new(vma: &'a Vma, cc: &'a CollapseControl) -> Tally<'a> {
        Tally { vma, cc, lim: Limits::of(cc), none: 0, shared: 0, referenced: 0, writable: false }
    }

    /// A none or zero-page pte: over the limit, or any in a uffd-armed
    /// VMA (its missing faults must still reach the handler), refuses.
    fn none_pte(&mut self) -> Result<(), ScanResult> {
        self.none += 1;
        if userfaultfd_armed(self.vma) || self.none > self.lim.none {
            return Err(SCAN_EXCEED_NONE_PTE);
        }
        Ok(())
    }

    fn folio(&mut self, folio: &Folio) -> Result<(), ScanResult> {
        if folio_likely_mapped_shared(folio) {
            self.shared += 1;
            if self.shared > self.lim.shared {
                return Err(SCAN_EXCEED_SHARED_PTE);
            }
        }
        Ok(())
    }

    fn present(&mut self, pte: pte_t) {
        self.writable |= pte_write(pte);
        if self.cc.is_khugepaged && pte_young(pte) {
            self.referenced += 1;
        }
    }

    /// The end of a round: no writable pte, or (khugepaged only) too few
    /// young ones, refuses.
    fn finish(&self, unmapped: usize) -> Result<(), ScanResult> {
        if !self.writable {
            Err(SCAN_PAGE_RO)
        } else if self.cc.is_khugepaged && (self.referenced == 0 || (unmapped > 0 && self.referenced < NR / 2)) {
            Err(SCAN_LACK_REFERENCED_PAGE)
        } else {
            Ok(())
        }
    }
}

fn none_or_zero(pte: pte_t) -> bool {
    pte_none(pte) || (pte_present(pte) && super::fault::is_zero_pfn(pte_pfn(pte)))
}

/// folio_likely_mapped_shared: more mappings than pages means some page
/// is mapped twice (this kernel has no per-page mapcount).
fn folio_likely_mapped_shared(folio: &Folio) -> bool {
    folio.mapcount() > folio.nr_pages() as i32
}

/// is_refcount_suitable: no reference beyond the mappings, the swap
/// cache's and the `held` ones of the caller (a pin fails it).
fn is_refcount_suitable(folio: &Folio, held: i32) -> bool {
    let cache = if folio.test(PG_SWAPCACHE) { folio.nr_pages() as i32 } else { 0 };
    folio.refcount() == folio.mapcount() + cache + held
}

/// Round 1's finding, for collapse_huge_page.
struct Scanned {
    unmapped: usize,
}

/// hpage_collapse_scan_pmd: round 1, under the mmap read lock (held by
/// the caller) and the pte lock.
fn hpage_collapse_scan_pmd(mm: &MmStruct, vma: &Vma, addr: usize, cc: &CollapseControl) -> Result<Scanned, ScanResult> {
    find_pmd_or_thp_or_none(mm, addr)?;
    let pt = mm.pgtables.lock(addr, false).ok().flatten().ok_or(SCAN_PMD_NULL)?;
    let mut t = Tally::new(vma, cc);
    let mut unmapped = 0;
    for i in 0..NR {
        let pte = pt.get(addr + i * PAGE_SIZE);
        if is_swap_pte(pte) {
            let entry = pte_to_swp_entry(pte);
            // Migration, hwpoison and markers are no swap the fault path
            // could read back (uffd-wp markers are refused as uffd-wp).
            if non_swap_entry(entry) && !pte_marker_uffd_wp(pte) && !variants::COLLAPSE_NON_SWAP_AS_SWAP.is_on() {
                return Err(SCAN_PTE_NON_PRESENT);
            }
            unmapped += 1;
            if unmapped > t.lim.swap {
                return Err(SCAN_EXCEED_SWAP_PTE);
            }
            if pte_swp_uffd_wp_any(pte) {
                return Err(SCAN_PTE_UFFD_WP);
            }
            continue;
        }
        if none_or_zero(pte) {
            t.none_pte()?;
            continue;
        }
        if pte_uffd_wp(pte) {
            return Err(SCAN_PTE_UFFD_WP);
        }
        if pte_special(pte) {
            return Err(SCAN_PAGE_NULL); // vm_normal_page finds none
        }
        // The pte's reference keeps the folio alive under the pte lock.
        let folio = Folio::get(pte_pfn(pte));
        if !folio.is_anon() {
            return Err(SCAN_PAGE_ANON);
        }
        t.folio(&folio)?;
        if folio.test(PG_LOCKED) {
            return Err(SCAN_PAGE_LOCK);
        }
        if !is_refcount_suitable(&folio, 1) {
            return Err(SCAN_PAGE_COUNT);
        }
        t.present(pte);
    }
    t.finish(unmapped)?;
    Ok(Scanned { unmapped })
}

/// __collapse_huge_page_swapin: every swap pte of the range read back by
/// do_swap_page under the mmap read lock, as a read fault would.
fn __collapse_huge_page_swapin(mm: &Arc<MmStruct>, map: &MmMap, vma: &Vma, addr: usize) -> Result<(), ScanResult> {
    for i in 0..NR {
        let a = addr + i * PAGE_SIZE;
        let pte = mm.pgtables.peek(a);
        if !is_swap_pte(pte) {
            continue;
        }
        if non_swap_entry(pte_to_swp_entry(pte)) && !variants::COLLAPSE_NON_SWAP_AS_SWAP.is_on() {
            return Err(SCAN_PTE_NON_PRESENT); // appeared since round 1
        }
        super::swap::do_swap_page(mm, map, vma, a, pte, false).map_err(|_| SCAN_FAIL)?;
        SWAPIN.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// The folios round 2 took, each locked and with one reference of ours.
struct Isolated(Vec<Folio>);

impl Isolated {
    /// Whether `folio` was taken already: only a large folio can be mapped
    /// by more than one pte of the range (an anonymous small folio has one
    /// address in an mm), so only large ones are looked for.
    fn contains(&self, folio: &Folio) -> bool {
        folio.order() > 0 && self.0.iter().rev().any(|f| f.pfn() == folio.pfn())
    }
}

impl Drop for Isolated {
    /// release_pte_folio: unlocked and our reference dropped (the last one
    /// for a folio the collapse unmapped, which frees it).
    fn drop(&mut self) {
        for f in self.0.drain(..) {
            drop(f.adopt_lock());
        }
    }
}

/// __collapse_huge_page_isolate: round 2, every pte of the detached table
/// checked again under its lock, each folio locked.
fn __collapse_huge_page_isolate(
    pt: &PteTable,
    vma: &Vma,
    addr: usize,
    cc: &CollapseControl,
) -> Result<Isolated, ScanResult> {
    let mut t = Tally::new(vma, cc);
    let mut isolated = Isolated(Vec::new());
    for i in 0..NR {
        let pte = pt.get(addr + i * PAGE_SIZE);
        if none_or_zero(pte) {
            t.none_pte()?;
            continue;
        }
        if !pte_present(pte) {
            return Err(SCAN_PTE_NON_PRESENT);
        }
        // The seed fix: UFFDIO_WRITEPROTECT needs only the mmap read lock,
        // so a pte may have been write-protected since round 1.
        if pte_uffd_wp(pte) && !variants::COLLAPSE_NO_UFFD_WP_RECHECK.is_on() {
            return Err(SCAN_PTE_UFFD_WP);
        }
        if pte_special(pte) {
            return Err(SCAN_PAGE_NULL);
        }
        let folio = Folio::get(pte_pfn(pte));
        t.folio(&folio)?;
        if !isolated.contains(&folio) {
            // A large folio is locked and counted once.
            if !folio.trylock_raw() {
                return Err(SCAN_PAGE_LOCK);
            }
            let ok = is_refcount_suitable(&folio, 1);
            isolated.0.push(folio);
            if !ok {
                return Err(SCAN_PAGE_COUNT);
            }
        }
        t.present(pte);
    }
    t.finish(0)?; // every swap pte was swapped in before this round
    Ok(isolated)
}

/// __collapse_huge_page_copy: each page's data, and its tags when its
/// folio has them (arm64's copy_highpage); none and zero-page ptes become
/// zero pages, tags included (clear_user_highpage). The new folio was not
/// zeroed, so every page is written here: the tags of a page copied from
/// an untagged one are cleared when any page of the THP is tagged (it is
/// then PG_mte_tagged as a whole), and otherwise left to mte_sync_tags,
/// which clears them all the first time the THP is mapped tagged. (With
/// VM_MTE sticky and UFFDIO_MOVE refusing PROT_MTE on one side only, a
/// range mixes tagged and untagged pages only if that ever changes; the
/// clearing keeps the THP right then too.)
fn __collapse_huge_page_copy(pt: &PteTable, folio: &Folio, addr: usize) {
    let mut untagged = Vec::new();
    for i in 0..NR {
        let pte = pt.get(addr + i * PAGE_SIZE);
        let dst = folio.page_pfn(i);
        if none_or_zero(pte) {
            zero_frame(dst);
            continue;
        }
        let src = pte_pfn(pte);
        copy_frame(dst, src);
        let src_tagged = pfn_to_page(folio_head(src)).flags.load(Ordering::Acquire) & PG_MTE_TAGGED != 0;
        if src_tagged && !variants::COLLAPSE_COPY_DATA_ONLY.is_on() {
            copy_frame_tags(dst, src);
        } else {
            untagged.push(dst);
        }
    }
    if untagged.len() < NR {
        for dst in untagged {
            set_frame_tags(dst, &[0; crate::arch::mte::PAGE_TAG_BYTES]);
        }
        folio.set(PG_MTE_TAGGED);
    }
}

/// __collapse_huge_page_copy_succeeded: the old ptes cleared and their
/// pages unmapped (the isolation references keep them until `Isolated`
/// drops); swap-cache folios nothing maps any more leave the swap cache,
/// freeing their slots and tag storage. Returns the pages the old ptes
/// counted in rss.
fn release_old_ptes(table: u64, pt: &PteTable, addr: usize, isolated: &Isolated) -> isize {
    let mut counted = 0;
    for i in 0..NR {
        let pte = pt.get(addr + i * PAGE_SIZE);
        if pte_none(pte) {
            continue;
        }
        // The table is out of the tree and its TLB entries gone.
        PgTables::fill_table(table, i, pte_t(0));
        if super::fault::is_zero_pfn(pte_pfn(pte)) {
            continue;
        }
        let folio = Folio::from_counted(pte_pfn(pte)); // the pte's reference
        folio_remove_rmap_pte(&folio);
        counted += 1;
    }
    for f in &isolated.0 {
        if f.mapcount() == 0 && f.test(PG_SWAPCACHE) {
            super::swap_state::folio_free_swap(f);
        }
    }
    counted
}

/// A detached table the known-wrong variant collapse:table_not_restored
/// failed to put back, kept so the test that proves the loss can repair it.
static LOST_TABLE: Mutex<Option<(Weak<MmStruct>, usize, u64)>> = Mutex::new(None);

/// Puts back a table the table_not_restored variant left out (its test
/// does, after seeing the range lose its pages). True if there was one.
pub fn restore_lost_table() -> bool {
    let Some((mm, addr, table)) = LOST_TABLE.lock().take() else { return false };
    if let Some(mm) = mm.upgrade() {
        mm.pgtables.pmd_populate(addr, table);
    }
    true
}

/// collapse_huge_page: called after a successful round 1, with the mmap
/// lock dropped.
fn collapse_huge_page(
    mm: &Arc<MmStruct>,
    addr: usize,
    scanned: Scanned,
    cc: &CollapseControl,
) -> Result<(), ScanResult> {
    let Some(folio) = Folio::alloc_for_copy(THP_PMD_ORDER as u8) else {
        ALLOC_FAILED.fetch_add(1, Ordering::Relaxed);
        return Err(SCAN_ALLOC_HUGE_PAGE_FAIL);
    };
    ALLOC.fetch_add(1, Ordering::Relaxed);
    sched_point(&points::COLLAPSE_HUGE_PAGE_AFTER_ALLOC);
    {
        let map = mm.mmap_lock.read();
        let vma = hugepage_vma_revalidate(&map, addr, true, cc)?;
        find_pmd_or_thp_or_none(mm, addr)?;
        if scanned.unmapped > 0 {
            __collapse_huge_page_swapin(mm, &map, &vma, addr)?;
        }
    }
    sched_point(&points::COLLAPSE_HUGE_PAGE_BEFORE_WRITE_LOCK);
    let map = mm.mmap_lock.write();
    let vma = hugepage_vma_revalidate(&map, addr, true, cc)?;
    find_pmd_or_thp_or_none(mm, addr)?;
    let anon_vma = vma.anon_vma().expect("revalidated with an anon_vma").clone();
    let rmap_lock = anon_vma.anchor.vmas.write(); // anon_vma_lock_write: no rmap walk now
    let table = mm.pgtables.collapse_detach(addr).ok_or(SCAN_PMD_NULL)?;
    let pt = PgTables::lock_detached(table);
    let isolated = match __collapse_huge_page_isolate(&pt, &vma, addr, cc) {
        Ok(i) => i,
        Err(r) => {
            drop(pt);
            if variants::COLLAPSE_TABLE_NOT_RESTORED.is_on() {
                *LOST_TABLE.lock() = Some((Arc::downgrade(mm), addr, table));
            } else {
                mm.pgtables.pmd_populate(addr, table);
            }
            return Err(r);
        }
    };
    // Every folio is locked now: rmap walkers give up on them.
    drop(rmap_lock);
    __collapse_huge_page_copy(&pt, &folio, addr);
    let counted = release_old_ptes(table, &pt, addr, &isolated);
    drop(pt);
    let locked = mm.pgtables.pmd_lock(addr, false).ok().flatten().expect("the detached PMD is still there");
    assert!(pmd_none(locked.get()), "a PMD refilled under the mmap write lock at {addr:#x}");
    mm.pgtables.deposit(&locked, table);
    mm.add_rss(MM_ANONPAGES, -counted);
    map_new_thp(mm, &locked, &folio, &anon_vma, &vma);
    drop(locked);
    drop(isolated);
    drop(map);
    COLLAPSED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// One PMD range scanned, and how it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scan {
    pub mm: u64,
    pub addr: usize,
    pub result: ScanResult,
    pub by_khugepaged: bool,
}

const TRACE_LEN: usize = 64;

/// The last TRACE_LEN ranges scanned (Linux's mm_khugepaged_scan_pmd and
/// mm_collapse_huge_page tracepoints), oldest first.
static TRACE: Mutex<alloc::collections::VecDeque<Scan>> = Mutex::new(alloc::collections::VecDeque::new());

/// The recorded scans of `mm`, oldest first.
pub fn trace(mm: &MmStruct) -> Vec<Scan> {
    TRACE.lock().iter().filter(|s| s.mm == mm.id).copied().collect()
}

/// Round 1 and, if it finds the range worth it, the collapse: the result
/// of one PMD range (hpage_collapse_scan_pmd with its collapse_huge_page).
pub fn collapse_pmd(mm: &Arc<MmStruct>, addr: usize, cc: &CollapseControl) -> ScanResult {
    let r = (|| {
        let scanned = {
            let map = mm.mmap_lock.read();
            let vma = hugepage_vma_revalidate(&map, addr, false, cc)?;
            hpage_collapse_scan_pmd(mm, &vma, addr, cc)?
        };
        collapse_huge_page(mm, addr, scanned, cc)
    })();
    let result = r.err().unwrap_or(SCAN_SUCCEED);
    let mut t = TRACE.lock();
    if t.len() == TRACE_LEN {
        t.pop_front();
    }
    t.push_back(Scan { mm: mm.id, addr, result, by_khugepaged: cc.is_khugepaged });
    result
}

/// madvise_collapse_errno.
fn madvise_collapse_errno(r: ScanResult) -> Errno {
    match r {
        SCAN_ALLOC_HUGE_PAGE_FAIL => ENOMEM,
        SCAN_EXCEED_NONE_PTE => EBUSY,
        SCAN_PAGE_COUNT | SCAN_PAGE_LOCK => EAGAIN,
        _ => EINVAL,
    }
}

/// MADV_COLLAPSE over `[start, end)` inside one VMA: each whole 2 MiB
/// range collapsed in turn, ignoring the khugepaged limits and the sysfs
/// policy. The failures Linux lets pass go on to the next range; any
/// other stops. Ok only if every range ended up PMD-mapped; otherwise the
/// errno of the last failure (each range's SCAN_* result is in `trace`).
pub fn madvise_collapse(mm: &Arc<MmStruct>, start: usize, end: usize) -> Result<(), Errno> {
    {
        let map = mm.mmap_lock.read();
        let vma = map.find(start).ok_or(ENOMEM)?;
        if !collapse_allowable(vma, &MADVISE) {
            return Err(EINVAL);
        }
    }
    let hstart = (start + PMD_SIZE - 1) & PMD_MASK;
    let hend = end & PMD_MASK;
    let (mut thps, mut last_fail) = (0, SCAN_SUCCEED);
    let mut addr = hstart;
    while addr < hend {
        let r = collapse_pmd(mm, addr, &MADVISE);
        match r {
            SCAN_SUCCEED | SCAN_PMD_MAPPED => thps += 1,
            SCAN_PMD_NULL
            | SCAN_PTE_NON_PRESENT
            | SCAN_PTE_UFFD_WP
            | SCAN_PAGE_RO
            | SCAN_LACK_REFERENCED_PAGE
            | SCAN_PAGE_NULL
            | SCAN_PAGE_COUNT
            | SCAN_PAGE_LOCK => last_fail = r,
            _ => {
                last_fail = r;
                break;
            }
        }
        addr += PMD_SIZE;
    }
    if hend <= hstart || thps == (hend - hstart) / PMD_SIZE {
        Ok(())
    } else {
        Err(madvise_collapse_errno(last_fail))
    }
}

// --- khugepaged ---------------------------------------------------------------------------

/// khugepaged's mm slots, in the order they were entered, and where the
/// scan stands (khugepaged_scan: the mm and the address in it).
struct Registry {
    slots: Vec<Weak<MmStruct>>,
    cursor_mm: usize,
    cursor_addr: usize,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { slots: Vec::new(), cursor_mm: 0, cursor_addr: 0 });

impl Registry {
    /// Drops the slots of mms that are gone, keeping the cursor on the mm
    /// it was on.
    fn prune(&mut self) {
        let mut i = 0;
        while i < self.slots.len() {
            if self.slots[i].strong_count() > 0 {
                i += 1;
                continue;
            }
            self.slots.remove(i);
            if i < self.cursor_mm {
                self.cursor_mm -= 1;
            } else if i == self.cursor_mm {
                self.cursor_addr = 0;
            }
        }
    }
}

/// khugepaged_enter_vma: the mm is scanned from now on if this VMA may get
/// a THP under the sysfs policy (MADV_HUGEPAGE, or enabled=always). Once
/// per mm: the flag makes every later call (each mmap, each PMD fault) a
/// load.
pub fn khugepaged_enter_vma(mm: &Arc<MmStruct>, vma: &Vma) {
    if !mm.khugepaged.load(Ordering::Acquire) && thp_vma_allowable(vma, THP_PMD_ORDER) {
        __khugepaged_enter(mm);
    }
}

/// __khugepaged_enter: `mm` joins the list (fork calls it for the child of
/// a registered mm, as khugepaged_fork does).
pub fn __khugepaged_enter(mm: &Arc<MmStruct>) {
    if mm.khugepaged.swap(true, Ordering::AcqRel) {
        return;
    }
    let mut reg = REGISTRY.lock();
    reg.prune();
    reg.slots.push(Arc::downgrade(mm));
}

/// Whether khugepaged scans `mm`.
pub fn is_registered(mm: &MmStruct) -> bool {
    mm.khugepaged.load(Ordering::Acquire)
}

/// The next PMD range to scan at or after the cursor, moving the cursor
/// past it; None when the list is done (the cursor back at its head, one
/// more full scan). Exited mms leave the list. The registry lock is never
/// held while an mmap lock is taken (mmap and faults take them the other
/// way round).
fn next_range() -> Option<(Arc<MmStruct>, usize)> {
    loop {
        let (mm, from) = {
            let mut reg = REGISTRY.lock();
            reg.prune();
            if reg.cursor_mm >= reg.slots.len() {
                reg.cursor_mm = 0;
                reg.cursor_addr = 0;
                return None;
            }
            // Pruned just now under the same lock: the slot is alive.
            match reg.slots[reg.cursor_mm].upgrade() {
                Some(mm) => (mm, reg.cursor_addr),
                None => continue,
            }
        };
        let next = {
            let map = mm.mmap_lock.read();
            map.vmas.values().filter(|v| thp_vma_allowable(v, THP_PMD_ORDER)).find_map(|v| {
                let lo = (v.start.max(from) + PMD_SIZE - 1) & PMD_MASK;
                (lo + PMD_SIZE <= v.end).then_some(lo)
            })
        };
        let mut reg = REGISTRY.lock();
        // The slot may have moved (an exited mm before it left the list).
        let Some(i) = reg.slots.iter().position(|w| core::ptr::eq(w.as_ptr(), Arc::as_ptr(&mm))) else { continue };
        reg.cursor_mm = i;
        match next {
            Some(a) => {
                reg.cursor_addr = a + PMD_SIZE;
                return Some((mm, a));
            }
            None => {
                reg.cursor_mm = i + 1;
                reg.cursor_addr = 0;
            }
        }
    }
}

/// khugepaged_do_scan: up to `pages` pages (512 a PMD range) of the
/// registered mms from where the last pass stopped, each range scanned
/// and collapsed as khugepaged does; a pass ends early at the end of the
/// list (a full scan). Both the thread and the tests run it.
pub fn khugepaged_do_scan(pages: usize) -> Vec<Scan> {
    PASSES.fetch_add(1, Ordering::Relaxed);
    let mut done = Vec::new();
    let mut progress = 0;
    while progress < pages {
        let Some((mm, addr)) = next_range() else {
            FULL_SCANS.fetch_add(1, Ordering::Relaxed);
            break;
        };
        let result = collapse_pmd(&mm, addr, &KHUGEPAGED);
        done.push(Scan { mm: mm.id, addr, result, by_khugepaged: true });
        progress += NR;
    }
    done
}

/// khugepaged_scan_once: one pass of pages_to_scan pages.
pub fn khugepaged_scan_once() -> Vec<Scan> {
    khugepaged_do_scan(KHUGEPAGED_PAGES_TO_SCAN.get() as usize)
}

/// The khugepaged kernel thread, running on one CPU until stopped (when
/// dropped): a pass, then scan_sleep_millisecs of sleep, again.
pub struct KhugepagedThread {
    stop: Arc<AtomicBool>,
    running: Option<crate::smp::Running<()>>,
}

/// Starts khugepaged on `cpu` (a secondary).
pub fn start_khugepaged(cpu: usize) -> Result<KhugepagedThread, crate::smp::SmpError> {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let running = crate::smp::run_on(cpu, move || {
        while !s.load(Ordering::Acquire) {
            khugepaged_scan_once();
            let f = crate::arch::cpu::counter_freq().max(1);
            let until = crate::arch::cpu::counter() + KHUGEPAGED_SCAN_SLEEP_MILLISECS.get() * f / 1000;
            while !s.load(Ordering::Acquire) && crate::arch::cpu::counter() < until {
                crate::arch::cpu::wfe();
            }
        }
    })?;
    Ok(KhugepagedThread { stop, running: Some(running) })
}

impl KhugepagedThread {
    /// Stops the thread after its current pass; an exception on its CPU
    /// comes back as an error.
    pub fn stop(mut self) -> Result<(), crate::arch::trap::Unexpected> {
        self.stop.store(true, Ordering::Release);
        crate::arch::cpu::sev();
        self.running.take().map_or(Ok(()), |r| r.join())
    }
}

impl Drop for KhugepagedThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        crate::arch::cpu::sev();
        if let Some(r) = self.running.take() {
            let _ = r.join();
        }
    }
}
