//! Transparent huge pages (Linux's mm/huge_memory.c): the tunables, the
//! huge zero page, PMD-mapped anonymous THPs (fault, write fault, split,
//! zap, fork) and the choice of a multi-size THP order for a pte-mapped
//! anonymous fault.
//!
//! Where this kernel counts differently from Linux: a PMD mapping counts
//! as the 512 pages it maps, in the folio's mapcount and its refcount and
//! in rss (Linux counts one entire mapping and one reference), so
//! splitting a PMD changes no count and the invariant checker sees a huge
//! PMD as its 512 ptes.

use super::fault::{mte_sync_tags, FaultError};
use super::folio::{folio_head, Folio, PG_ANON_EXCLUSIVE};
use super::mm_types::*;
use super::pgtable::{huge_pmd_pte, PgTables, PmdLocked};
use super::pte::*;
use super::rmap::{folio_add_new_anon_rmap, folio_remove_rmap_pte, AnonVma};
use crate::arch::mmu::{PAGE_SIZE, PMD_MASK, PMD_SIZE};
use crate::cmdline::{Cmdline, ThpEnabled, ThpOrderPolicy, THP_MIN_ORDER, THP_PMD_ORDER};
use crate::errno::{Errno, ENOMEM};
use crate::testhooks::knobs::{THP_ENABLED, THP_ORDER, THP_USE_ZERO_PAGE};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Once;

const NR: usize = HPAGE_PMD_NR as usize;

/// The boot values of the tunables (transparent_hugepage=, thp_anon=).
pub fn apply_cmdline(c: &Cmdline) {
    THP_ENABLED.set_boot_default(c.thp_enabled as u64);
    for order in THP_MIN_ORDER..=THP_PMD_ORDER {
        THP_ORDER[order].set_boot_default(c.thp_anon[order] as u64);
    }
}

/// The THP events of Linux's /proc/vmstat that this kernel has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThpStats {
    pub thp_fault_alloc: u64,
    pub thp_fault_fallback: u64,
    pub thp_zero_page_alloc: u64,
    pub thp_split_pmd: u64,
    /// mTHP: anonymous faults that mapped a folio of order 2..=8.
    pub mthp_anon_fault_alloc: u64,
}

static FAULT_ALLOC: AtomicU64 = AtomicU64::new(0);
static FAULT_FALLBACK: AtomicU64 = AtomicU64::new(0);
static ZERO_PAGE_ALLOC: AtomicU64 = AtomicU64::new(0);
static SPLIT_PMD: AtomicU64 = AtomicU64::new(0);
static MTHP_FAULT_ALLOC: AtomicU64 = AtomicU64::new(0);

pub fn stats() -> ThpStats {
    ThpStats {
        thp_fault_alloc: FAULT_ALLOC.load(Ordering::Acquire),
        thp_fault_fallback: FAULT_FALLBACK.load(Ordering::Acquire),
        thp_zero_page_alloc: ZERO_PAGE_ALLOC.load(Ordering::Acquire),
        thp_split_pmd: SPLIT_PMD.load(Ordering::Acquire),
        mthp_anon_fault_alloc: MTHP_FAULT_ALLOC.load(Ordering::Acquire),
    }
}

fn policy(order: usize) -> ThpOrderPolicy {
    match THP_ORDER[order].get() {
        0 => ThpOrderPolicy::Always,
        1 => ThpOrderPolicy::Inherit,
        2 => ThpOrderPolicy::Madvise,
        _ => ThpOrderPolicy::Never,
    }
}

fn top_level() -> ThpEnabled {
    match THP_ENABLED.get() {
        0 => ThpEnabled::Always,
        1 => ThpEnabled::Madvise,
        _ => ThpEnabled::Never,
    }
}

/// Whether an anonymous folio of `order` may back `vma` (the per-size
/// policy, `inherit` meaning the top-level one; VM_NOHUGEPAGE refuses all).
pub fn thp_vma_allowable(vma: &Vma, order: usize) -> bool {
    if vma.flags & VM_NOHUGEPAGE != 0 || !vma.is_anon() || vma.flags & VM_SHARED != 0 {
        return false;
    }
    let madvised = vma.flags & VM_HUGEPAGE != 0;
    match policy(order) {
        ThpOrderPolicy::Always => true,
        ThpOrderPolicy::Madvise => madvised,
        ThpOrderPolicy::Never => false,
        ThpOrderPolicy::Inherit => match top_level() {
            ThpEnabled::Always => true,
            ThpEnabled::Madvise => madvised,
            ThpEnabled::Never => false,
        },
    }
}

/// The largest enabled order below PMD size whose aligned range around
/// `addr` lies in `vma` (alloc_anon_folio's choice), or 0.
pub fn mthp_order(vma: &Vma, addr: usize) -> usize {
    for order in (THP_MIN_ORDER..THP_PMD_ORDER).rev() {
        let size = PAGE_SIZE << order;
        let start = addr & !(size - 1);
        if start >= vma.start && start + size <= vma.end && thp_vma_allowable(vma, order) {
            return order;
        }
    }
    0
}

/// Counts one anonymous fault mapped with an mTHP folio.
pub fn count_mthp_fault() {
    MTHP_FAULT_ALLOC.fetch_add(1, Ordering::Relaxed);
}

static HUGE_ZERO: Once<Option<u64>> = Once::new();

/// The huge zero page: a 2 MiB zeroed folio with zero tags, allocated at
/// boot (the first call) and kept; mapped special, never PG_mte_tagged.
pub fn huge_zero_pfn() -> Option<u64> {
    *HUGE_ZERO.call_once(|| {
        let f = Folio::alloc(THP_PMD_ORDER as u8)?;
        ZERO_PAGE_ALLOC.fetch_add(1, Ordering::Relaxed);
        Some(f.into_counted()) // kept for good
    })
}

pub fn is_huge_zero_pfn(pfn: u64) -> bool {
    HUGE_ZERO.get().copied().flatten().is_some_and(|z| folio_head(pfn) == z)
}

/// pmd_folio: the folio the PMD's pfn names, with a reference. Only for a
/// present huge PMD (the callers check pmd_trans_huge first); read from
/// anything else (a migration entry) the pfn is garbage, and then this
/// finds no frame or no live folio and gives None instead of a folio.
pub fn pmd_folio(pmd: pmd_t) -> Option<Folio> {
    let pfn = pte_pfn(pmd_pte(pmd));
    if !super::folio::pfn_valid(pfn) {
        return None;
    }
    Folio::try_get(pfn)
}

fn is_huge_zero_pmd(pmd: pmd_t) -> bool {
    pte_special(pmd_pte(pmd)) && is_huge_zero_pfn(pte_pfn(pmd_pte(pmd)))
}

/// do_huge_pmd_anonymous_page: the first touch of a 2 MiB-aligned range
/// that lies in `vma`, with THP allowed there and nothing mapped: the huge
/// zero page on a read (use_zero_page), a new PMD-mapped THP on a write.
/// None: fall back to ptes (not allowed, a pte table is there already, or
/// no memory for a huge folio).
pub fn do_huge_pmd_anonymous_page(
    mm: &Arc<MmStruct>,
    vma: &Vma,
    addr: usize,
    write: bool,
    anon_vma: impl FnOnce() -> Arc<AnonVma>,
) -> Option<Result<(), FaultError>> {
    let start = addr & PMD_MASK;
    if start < vma.start || start + PMD_SIZE > vma.end || !thp_vma_allowable(vma, THP_PMD_ORDER) {
        return None;
    }
    if !pmd_none(mm.pgtables.pmd_peek(start)) {
        return None;
    }
    // vmf_anon_prepare comes first, even for the huge zero page, so fork
    // copies this VMA's PMD (vma_needs_copy).
    let anon_vma = anon_vma();
    super::khugepaged::khugepaged_enter_vma(mm, vma);
    if !write && THP_USE_ZERO_PAGE.get() != 0 {
        let zero = huge_zero_pfn()?;
        let pmd = pte_pmd(pte_mkspecial(pte_wrprotect(pmd_pte(pfn_pmd(zero, vma.page_prot())))));
        return Some(install(mm, start, NewPmd::Special(pmd), vma).map(|_| ()));
    }
    let Some(folio) = Folio::alloc(THP_PMD_ORDER as u8) else {
        FAULT_FALLBACK.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let r = install(mm, start, NewPmd::Thp(&folio, anon_vma), vma);
    if r == Ok(true) {
        FAULT_ALLOC.fetch_add(1, Ordering::Relaxed);
    }
    Some(r.map(|_| ()))
}

/// What a first-touch fault puts in an empty PMD.
enum NewPmd<'a> {
    /// A ready entry (the huge zero page).
    Special(pmd_t),
    /// A new THP, mapped exclusive into the anon_vma.
    Thp(&'a Folio, Arc<AnonVma>),
}

/// Sets the PMD, with a deposited table, if it is still none. Ok(false):
/// another fault (or a pte table) got there first; theirs stands and a new
/// folio is freed unmapped.
fn install(mm: &Arc<MmStruct>, start: usize, new: NewPmd, vma: &Vma) -> Result<bool, FaultError> {
    let table = mm.pgtables.alloc_deposit().map_err(|_| FaultError::Oom)?;
    crate::testhooks::schedpoint::sched_point(&crate::testhooks::points::DO_HUGE_PMD_ANONYMOUS_PAGE_BEFORE_PMD_LOCK);
    let locked = match mm.pgtables.pmd_lock(start, true) {
        Ok(Some(l)) if pmd_none(l.get()) => l,
        Ok(Some(_)) => {
            mm.pgtables.free_withdrawn(table);
            return Ok(false);
        }
        _ => {
            mm.pgtables.free_withdrawn(table);
            return Err(FaultError::Oom);
        }
    };
    mm.pgtables.deposit(&locked, table);
    match new {
        NewPmd::Thp(folio, anon_vma) => map_new_thp(mm, &locked, folio, &anon_vma, vma),
        NewPmd::Special(pmd) => locked.set(pmd, mm.asid),
    }
    Ok(true)
}

/// A new THP mapped by the locked, empty or huge-zero PMD (a fault's or a
/// collapse's): exclusive anonymous rmap, tags synced, rss and a
/// reference per page, then the dirty block, writable if the VMA is
/// (maybe_pmd_mkwrite).
pub(super) fn map_new_thp(mm: &MmStruct, locked: &PmdLocked, folio: &Folio, anon_vma: &Arc<AnonVma>, vma: &Vma) {
    folio_add_new_anon_rmap(folio, anon_vma, vma.pgoff_of(locked.addr), NR as i32);
    let mut pte = pte_mkyoung(pte_mkdirty(pmd_pte(pfn_pmd(folio.pfn(), vma.page_prot()))));
    if vma.flags & VM_WRITE != 0 {
        pte = pte_mkwrite(pte);
    }
    let pmd = pte_pmd(pte);
    if pte_tagged(pmd_pte(pmd)) {
        mte_sync_tags(folio.pfn());
    }
    mm.add_rss(MM_ANONPAGES, NR as isize);
    folio.add_refs(NR);
    locked.set(pmd, mm.asid);
}

/// A fault on a huge PMD (huge_pmd_set_accessed, do_huge_pmd_wp_page).
/// None: the PMD was split and the pte path takes over; Some(Ok) after the
/// PMD went away too (the access faults again).
pub fn do_huge_pmd_fault(
    mm: &Arc<MmStruct>,
    vma: &Vma,
    addr: usize,
    write: bool,
    anon_vma: impl FnOnce() -> Arc<AnonVma>,
) -> Option<Result<(), FaultError>> {
    let locked = mm.pgtables.pmd_lock(addr, false).ok()??;
    let pmd = locked.get();
    if pmd_none(pmd) {
        // Zapped since the lockless look: retry the whole fault (Linux
        // returns and the access faults again), so it can map a new THP.
        return Some(Ok(()));
    }
    if !pmd_trans_huge(pmd) || !pte_valid(pmd_pte(pmd)) {
        return None; // a table now, or PROT_NONE: the pte path decides
    }
    let pte = pmd_pte(pmd);
    if !write {
        if !pte_young(pte) {
            locked.set(pte_pmd(pte_mkyoung(pte)), mm.asid);
        }
        return Some(Ok(()));
    }
    if pte_uffd_wp(pte) && vma.flags & VM_UFFD_WP != 0 {
        // userfaultfd_huge_pmd_wp: the handler resolves it; no split.
        drop(locked);
        return Some(Err(super::userfaultfd::handle_userfault(vma, addr, write, true)));
    }
    if pte_write(pte) {
        locked.set(pte_pmd(pte_mkyoung(pte_mkdirty(pte))), mm.asid);
        return Some(Ok(()));
    }
    if is_huge_zero_pmd(pmd) {
        // do_huge_zero_wp_pmd (Linux 6.13): a new THP replaces the huge
        // zero page; without memory for one, split and COW the one page.
        drop(locked);
        return do_huge_zero_wp_pmd(mm, vma, addr, anon_vma());
    }
    let folio = Folio::get(pte_pfn(pte));
    // Reuse when nobody else maps it: exclusive, or every reference is one
    // of our 512 mappings (plus the one just taken).
    let reuse = folio.test(PG_ANON_EXCLUSIVE)
        || folio.try_lock_guard().is_some_and(|_l| {
            let only_us = folio.mapcount() == NR as i32 && folio.refcount() == NR as i32 + 1;
            if only_us {
                folio.set(PG_ANON_EXCLUSIVE);
            }
            only_us
        });
    if reuse && vma.flags & VM_WRITE != 0 {
        locked.set(pte_pmd(pte_mkyoung(pte_mkdirty(pte_mkwrite(pte)))), mm.asid);
        return Some(Ok(()));
    }
    drop(folio);
    drop(locked);
    split_huge_pmd(&mm.pgtables, addr); // then do_wp_page COWs the one page
    None
}

fn do_huge_zero_wp_pmd(
    mm: &Arc<MmStruct>,
    vma: &Vma,
    addr: usize,
    anon_vma: Arc<AnonVma>,
) -> Option<Result<(), FaultError>> {
    let start = addr & PMD_MASK;
    let Some(folio) = Folio::alloc(THP_PMD_ORDER as u8) else {
        FAULT_FALLBACK.fetch_add(1, Ordering::Relaxed);
        split_huge_pmd(&mm.pgtables, addr);
        return None;
    };
    crate::testhooks::schedpoint::sched_point(&crate::testhooks::points::DO_HUGE_ZERO_WP_PMD_BEFORE_PMD_LOCK);
    let locked = mm.pgtables.pmd_lock(start, false).ok()??;
    if !is_huge_zero_pmd(locked.get()) {
        return Some(Ok(())); // changed meanwhile: the access faults again
    }
    map_new_thp(mm, &locked, &folio, &anon_vma, vma);
    FAULT_ALLOC.fetch_add(1, Ordering::Relaxed);
    Some(Ok(()))
}

/// split_huge_pmd: the huge PMD covering `addr` becomes its deposited pte
/// table, filled with the 512 ptes it stood for (each keeping the write,
/// dirty, young and uffd-wp bits; the huge zero page becomes 512 mappings
/// of the small zero page). The folio and every count stay as they are.
pub fn split_huge_pmd(pgt: &PgTables, addr: usize) {
    let Ok(Some(locked)) = pgt.pmd_lock(addr, false) else { return };
    let pmd = locked.get();
    if !pmd_trans_huge(pmd) {
        return; // someone split or zapped it first
    }
    let table = pgt.withdraw(locked.addr);
    let zero = is_huge_zero_pmd(pmd);
    for i in 0..NR {
        let a = locked.addr + i * PAGE_SIZE;
        let pte = if zero {
            let z = super::fault::zero_pfn() << crate::arch::mmu::PAGE_SHIFT;
            pte_t(z | (pmd.0 & !PTE_ADDR_MASK) | PTE_TYPE_PAGE)
        } else {
            huge_pmd_pte(pmd, a)
        };
        PgTables::fill_table(table, i, pte);
    }
    pgt.install_split_table(&locked, table);
    SPLIT_PMD.fetch_add(1, Ordering::Relaxed);
}

/// zap_huge_pmd: a huge PMD that `[start, end)` covers whole is cleared,
/// its deposit freed and what it mapped dropped. False: no huge PMD there.
pub fn zap_huge_pmd(mm: &MmStruct, addr: usize) -> bool {
    let Ok(Some(locked)) = mm.pgtables.pmd_lock(addr, false) else { return false };
    let pmd = locked.get();
    if !pmd_trans_huge(pmd) {
        return false;
    }
    locked.set(pmd_t(0), mm.asid);
    let t = mm.pgtables.withdraw(locked.addr);
    mm.pgtables.free_withdrawn(t);
    drop(locked);
    if is_huge_zero_pmd(pmd) {
        return true;
    }
    let head = pte_pfn(pmd_pte(pmd));
    for _ in 0..NR {
        let folio = Folio::from_counted(head); // one mapped page's reference
        folio_remove_rmap_pte(&folio);
    }
    mm.add_rss(MM_ANONPAGES, -(NR as isize));
    true
}

/// copy_huge_pmd at fork: a huge zero PMD is shared as it is; a THP is
/// shared copy-on-write (write-protected in both, no longer exclusive, 512
/// more mappings and references). A pinned THP is split instead and its
/// ptes copied by the caller (Linux's -EAGAIN path). Ok(false): there was
/// no huge PMD, or it was split.
pub fn copy_huge_pmd(src_mm: &MmStruct, dst_mm: &MmStruct, addr: usize) -> Result<bool, Errno> {
    let table = dst_mm.pgtables.alloc_deposit().map_err(|_| ENOMEM)?;
    let undeposit = || dst_mm.pgtables.free_withdrawn(table);
    let Ok(Some(src)) = src_mm.pgtables.pmd_lock(addr, false) else {
        undeposit();
        return Ok(false);
    };
    let pmd = src.get();
    if !pmd_trans_huge(pmd) {
        undeposit();
        return Ok(false);
    }
    let zero = is_huge_zero_pmd(pmd);
    let folio = (!zero).then(|| Folio::get(pte_pfn(pmd_pte(pmd))));
    if folio.as_ref().is_some_and(|f| f.page().pincount.load(Ordering::Acquire) > 0) {
        drop(src);
        undeposit();
        split_huge_pmd(&src_mm.pgtables, addr);
        return Ok(false);
    }
    let Ok(Some(dst)) = dst_mm.pgtables.pmd_lock(addr, true) else {
        undeposit();
        return Err(ENOMEM);
    };
    dst_mm.pgtables.deposit(&dst, table);
    let shared = pte_pmd(pte_wrprotect(pmd_pte(pmd)));
    if let Some(folio) = folio {
        if pte_write(pmd_pte(pmd)) {
            src.set(shared, src_mm.asid);
        }
        folio.clear(PG_ANON_EXCLUSIVE);
        folio.page().mapcount.fetch_add(NR as i32, Ordering::AcqRel);
        folio.add_refs(NR);
        dst_mm.add_rss(MM_ANONPAGES, NR as isize);
    }
    dst.set(shared, dst_mm.asid);
    Ok(true)
}

/// change_pmd_range's huge-PMD step, shared by the range operations that
/// change entries in place (mprotect, MADV_COLD, UFFDIO_WRITEPROTECT): a
/// huge PMD `[start, end)` covers only in part is split, so the caller's
/// pte walk sees its ptes; one it covers whole gets `f(addr, pmd)` as its
/// new entry, set under its lock. Returns the PMDs changed in place.
pub fn change_whole_huge_pmds(
    mm: &MmStruct,
    start: usize,
    end: usize,
    mut f: impl FnMut(usize, pmd_t) -> pmd_t,
) -> alloc::vec::Vec<usize> {
    let mut huge = alloc::vec::Vec::new();
    mm.pgtables.for_each_huge_pmd(start, end, |a, _| huge.push(a));
    let mut changed = alloc::vec::Vec::new();
    for a in huge {
        if a < start || a + PMD_SIZE > end {
            split_huge_pmd(&mm.pgtables, a);
            continue;
        }
        let Ok(Some(locked)) = mm.pgtables.pmd_lock(a, false) else { continue };
        let pmd = locked.get();
        if !pmd_trans_huge(pmd) {
            continue; // split or zapped since the walk: the pte path's now
        }
        locked.set(f(a, pmd), mm.asid);
        changed.push(a);
    }
    changed
}

/// change_huge_pmd for mprotect: `prot` in place (a PROT_MTE one gets its
/// folio's tags synced first).
pub fn change_huge_pmds(mm: &MmStruct, start: usize, end: usize, prot: pgprot_t) {
    change_whole_huge_pmds(mm, start, end, |_, pmd| {
        let new = pte_modify(pmd_pte(pmd), prot);
        if pte_tagged(new) && !is_huge_zero_pmd(pmd) {
            mte_sync_tags(pte_pfn(new));
        }
        pte_pmd(pte_t(new.0 & !PTE_TYPE_PAGE))
    });
}

/// change_huge_pmd for UFFDIO_WRITEPROTECT (MM_CP_UFFD_WP / _RESOLVE):
/// uffd-wp set and the PMD read-only, or the bit cleared and the PMD
/// writable again when the VMA is writable and the THP exclusive (the huge
/// zero page stays read-only).
pub fn uffd_wp_pmd(vma: &Vma, pmd: pmd_t, wp: bool) -> pmd_t {
    let pte = pmd_pte(pmd);
    if wp {
        return pte_pmd(pte_mkuffd_wp(pte));
    }
    let p = pte_clear_uffd_wp(pte);
    let writable = vma.flags & VM_WRITE != 0
        && !is_huge_zero_pmd(pmd)
        && pmd_folio(pmd).is_some_and(|f| f.test(PG_ANON_EXCLUSIVE));
    pte_pmd(if writable { pte_mkwrite(p) } else { p })
}

/// Splits the huge PMDs that `[start, end)` covers only in part, and zaps
/// the ones it covers whole (zap_pmd_range's choice).
pub fn zap_or_split_huge_pmds(mm: &MmStruct, start: usize, end: usize) {
    let mut huge = alloc::vec::Vec::new();
    mm.pgtables.for_each_huge_pmd(start, end, |a, _| huge.push(a));
    if !huge.is_empty() {
        crate::testhooks::schedpoint::sched_point(&crate::testhooks::points::ZAP_HUGE_PMD_BEFORE_LOCK);
    }
    for a in huge {
        if a >= start && a + PMD_SIZE <= end {
            zap_huge_pmd(mm, a);
        } else {
            split_huge_pmd(&mm.pgtables, a);
        }
    }
}
