//! The page-fault path: do_page_fault checks the VMA, handle_mm_fault
//! dispatches on the pte: do_anonymous_page, the file faults through the
//! page cache (do_read_fault, do_cow_fault, do_shared_fault) and the
//! write-protect fault do_wp_page with its reuse and copy cases.
//!
//! Locks, as in Linux: the mmap lock (read) across the fault, the pte lock
//! around every pte read-check-write, dropped while allocating or copying,
//! with the pte rechecked (pte_same) after it is retaken.

use super::folio::{
    copy_frame, folio_head, pfn_to_page, set_frame_tags, Folio, PG_ANON_EXCLUSIVE, PG_DIRTY, PG_MTE_TAGGED,
    PG_SWAPCACHE,
};
use super::huge_memory;
use super::mm_types::{
    MmMap, MmStruct, Vma, MM_ANONPAGES, MM_FILEPAGES, VM_ACCESS_FLAGS, VM_EXEC, VM_SHARED, VM_SPECIAL, VM_UFFD_MISSING,
    VM_UFFD_WP, VM_WRITE,
};
use super::mmu_gather::MmuGather;
use super::pgtable::PteTable;
use super::pte::*;
use super::rmap::{folio_add_new_anon_rmap, folio_add_rmap_pte, folio_remove_rmap_pte};
use crate::arch::mmu::{PAGE_MASK, PAGE_SIZE};
use crate::arch::mte::PAGE_TAG_BYTES;
use crate::testhooks::schedpoint::sched_point;
use alloc::sync::Arc;
use core::sync::atomic::Ordering;
use spin::Once;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegvCode {
    /// No VMA at the address.
    MapErr,
    /// The VMA forbids the access.
    AccErr,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultError {
    Segv(SegvCode),
    Oom,
    /// The fault cannot be served (a read error, a poisoned entry).
    Sigbus,
    /// Handed to a userfaultfd: the access waits for the handler.
    Userfault,
}

static ZERO_PFN: Once<u64> = Once::new();

/// The shared zero page (data and tags zero, PG_mte_tagged like arm64's).
pub fn zero_pfn() -> u64 {
    *ZERO_PFN.call_once(|| {
        let f = Folio::alloc(0).expect("no memory for the zero page");
        f.set(PG_MTE_TAGGED);
        f.into_counted() // never freed
    })
}

pub fn is_zero_pfn(pfn: u64) -> bool {
    ZERO_PFN.get() == Some(&pfn)
}

/// copy_user_highpage: data, and tags when the source has them (arm64's
/// copy_highpage), unless the known-wrong variant cow:data_only is on.
/// `idx` is the page of `src` (a large folio has many) copied into `dst`.
pub(super) fn copy_highpage(dst: &Folio, src: &Folio, idx: usize) {
    copy_frame(dst.page_pfn(0), src.page_pfn(idx));
    if src.test(PG_MTE_TAGGED) && !crate::testhooks::variants::COW_DATA_ONLY.is_on() {
        super::folio::copy_frame_tags(dst.page_pfn(0), src.page_pfn(idx));
        dst.set(PG_MTE_TAGGED);
    }
}

/// set_pte_at with arm64's mte_sync_tags: a page mapped Tagged Normal for
/// the first time gets its tags cleared and PG_mte_tagged set.
pub fn set_pte_at(mm: &MmStruct, pt: &PteTable, addr: usize, pte: pte_t) {
    sync_before_set(pte);
    pt.set(addr, pte, mm.asid);
}

/// set_pte_at for a change whose TLB invalidation `tlb` batches (see
/// PteTable::set_gathered).
pub fn set_pte_at_gathered(mm: &MmStruct, pt: &PteTable, addr: usize, pte: pte_t, tlb: &mut MmuGather) {
    sync_before_set(pte);
    pt.set_gathered(addr, pte, mm.asid, tlb);
}

fn sync_before_set(pte: pte_t) {
    if pte_valid(pte) && pte_tagged(pte) && !pte_special(pte) {
        mte_sync_tags(pte_pfn(pte));
    }
}

/// arm64's mte_sync_tags: the folio holding page `pfn`, mapped Tagged
/// Normal for the first time, gets every page's tags cleared and
/// PG_mte_tagged (kept on the head for the whole folio). Callers map with
/// a tagged pte or PMD.
pub fn mte_sync_tags(pfn: u64) {
    let head = folio_head(pfn);
    let page = pfn_to_page(head);
    if page.flags.load(Ordering::Acquire) & PG_MTE_TAGGED == 0 {
        let nr = 1u64 << page.inner.lock().order;
        for p in head..head + nr {
            set_frame_tags(p, &[0; PAGE_TAG_BYTES]);
        }
        page.flags.fetch_or(PG_MTE_TAGGED, Ordering::AcqRel);
    }
}

/// The fault path entry: `addr` faulted on `write`/`exec` at EL0.
pub fn do_page_fault(mm: &Arc<MmStruct>, addr: usize, write: bool, exec: bool) -> Result<(), FaultError> {
    let map = mm.mmap_lock.read();
    let vma = map.find(addr).ok_or(FaultError::Segv(SegvCode::MapErr))?;
    let allowed = if write {
        vma.flags & VM_WRITE != 0
    } else if exec {
        vma.flags & VM_EXEC != 0
    } else {
        vma.flags & VM_ACCESS_FLAGS != 0
    };
    if !allowed || vma.flags & VM_SPECIAL != 0 {
        return Err(FaultError::Segv(SegvCode::AccErr));
    }
    handle_mm_fault(mm, &map, vma, addr & PAGE_MASK, write)
}

/// Resolves a fault the VMA allows.
pub fn handle_mm_fault(mm: &Arc<MmStruct>, map: &MmMap, vma: &Vma, addr: usize, write: bool) -> Result<(), FaultError> {
    // __handle_mm_fault's PMD level first.
    let pmd = mm.pgtables.pmd_peek(addr);
    if is_pmd_migration_entry(pmd) {
        // pmd_migration_entry_wait: until the migration is done, then refault.
        while mm.pgtables.pmd_peek(addr) == pmd {
            crate::arch::cpu::wfe();
        }
        return Ok(());
    }
    if pmd_trans_huge(pmd) {
        sched_point(&crate::testhooks::points::HUGE_PMD_FAULT_AFTER_LOCKLESS_READ);
        if let Some(r) = huge_memory::do_huge_pmd_fault(mm, vma, addr, write, || mm.anon_vma_prepare(map, vma)) {
            return r;
        }
    } else if pmd_none(pmd) && vma.is_anon() && vma.flags & VM_UFFD_MISSING == 0 {
        if let Some(r) = huge_memory::do_huge_pmd_anonymous_page(mm, vma, addr, write, || mm.anon_vma_prepare(map, vma))
        {
            return r;
        }
    }
    let pt = mm.pgtables.lock(addr, true).map_err(|_| FaultError::Oom)?.ok_or(FaultError::Sigbus)?;
    let pte = pt.get(addr);
    if pte_none(pte) {
        drop(pt);
        if vma.flags & VM_UFFD_MISSING != 0 {
            return Err(super::userfaultfd::handle_userfault(vma, addr, write, false));
        }
        return if vma.is_anon() {
            do_anonymous_page(mm, map, vma, addr, write)
        } else if !write {
            do_read_fault(mm, vma, addr)
        } else if vma.flags & VM_SHARED == 0 {
            do_cow_fault(mm, map, vma, addr)
        } else {
            do_shared_fault(mm, vma, addr)
        };
    }
    if !pte_present(pte) {
        drop(pt);
        return super::swap::do_swap_page(mm, map, vma, addr, pte, write);
    }
    if write {
        if pte_uffd_wp(pte) && vma.flags & VM_UFFD_WP != 0 {
            drop(pt);
            return Err(super::userfaultfd::handle_userfault(vma, addr, write, true));
        }
        if !pte_write(pte) {
            return do_wp_page(mm, map, vma, addr, pt, pte);
        }
        set_pte_at(mm, &pt, addr, pte_mkyoung(pte_mkdirty(pte)));
    } else if !pte_young(pte) {
        set_pte_at(mm, &pt, addr, pte_mkyoung(pte));
    }
    Ok(())
}

/// First touch of anonymous memory: the zero page on a read, a new zeroed
/// page on a write.
fn do_anonymous_page(mm: &Arc<MmStruct>, map: &MmMap, vma: &Vma, addr: usize, write: bool) -> Result<(), FaultError> {
    if !write {
        let pte = pte_mkspecial(pfn_pte(zero_pfn(), vma.page_prot()));
        let pt = mm.pgtables.lock(addr, true).map_err(|_| FaultError::Oom)?.ok_or(FaultError::Sigbus)?;
        if pte_none(pt.get(addr)) {
            set_pte_at(mm, &pt, addr, pte);
        }
        return Ok(());
    }
    let anon_vma = mm.anon_vma_prepare(map, vma);
    let order = huge_memory::mthp_order(vma, addr);
    if order > 0 {
        if let Some(r) = do_anonymous_mthp(mm, vma, addr, &anon_vma, order) {
            return r;
        }
    }
    let folio = Folio::alloc(0).ok_or(FaultError::Oom)?;
    sched_point(&crate::testhooks::points::DO_ANONYMOUS_PAGE_BEFORE_PTL);
    let pt = mm.pgtables.lock(addr, true).map_err(|_| FaultError::Oom)?.ok_or(FaultError::Sigbus)?;
    if !pte_none(pt.get(addr)) {
        return Ok(()); // raced with another fault: theirs stands, ours is freed
    }
    folio_add_new_anon_rmap(&folio, &anon_vma, vma.pgoff_of(addr), 1);
    mm.add_rss(MM_ANONPAGES, 1);
    let pte = pte_mkdirty(pte_mkwrite(pfn_pte(folio.pfn(), vma.page_prot())));
    set_pte_at(mm, &pt, addr, pte);
    folio.into_counted(); // the pte's reference
    Ok(())
}

/// A write fault where a multi-size THP order is enabled (alloc_anon_folio):
/// a folio of `order` mapped by the ptes of its aligned range, when the
/// whole range is inside the VMA and unmapped. None: fall back to a single
/// page (the range is partly mapped, or no memory for the folio).
fn do_anonymous_mthp(
    mm: &Arc<MmStruct>,
    vma: &Vma,
    addr: usize,
    anon_vma: &Arc<super::rmap::AnonVma>,
    order: usize,
) -> Option<Result<(), FaultError>> {
    let nr = 1usize << order;
    let start = addr & !((PAGE_SIZE << order) - 1);
    let folio = Folio::alloc(order as u8)?;
    let pt = match mm.pgtables.lock(start, true) {
        Ok(Some(pt)) => pt,
        Ok(None) => return None,
        Err(()) => return Some(Err(FaultError::Oom)),
    };
    if (0..nr).any(|i| !pte_none(pt.get(start + i * PAGE_SIZE))) {
        return None; // partly mapped already
    }
    folio_add_new_anon_rmap(&folio, anon_vma, vma.pgoff_of(start), nr as i32);
    mm.add_rss(MM_ANONPAGES, nr as isize);
    for i in 0..nr {
        let pte = pte_mkdirty(pte_mkwrite(pfn_pte(folio.pfn() + i as u64, vma.page_prot())));
        set_pte_at(mm, &pt, start + i * PAGE_SIZE, pte);
    }
    folio.add_refs(nr); // each pte holds a reference
    drop(folio); // ours
    huge_memory::count_mthp_fault();
    Some(Ok(()))
}

fn file_folio(vma: &Vma, addr: usize) -> Result<Folio, FaultError> {
    let file = vma.file.as_ref().ok_or(FaultError::Sigbus)?;
    file.get_folio(vma.pgoff_of(addr)).ok_or(FaultError::Sigbus)
}

/// Maps the page-cache page read-only (shared file or private read).
fn do_read_fault(mm: &Arc<MmStruct>, vma: &Vma, addr: usize) -> Result<(), FaultError> {
    let folio = file_folio(vma, addr)?;
    sched_point(&crate::testhooks::points::DO_READ_FAULT_BEFORE_PTL);
    let pt = mm.pgtables.lock(addr, true).map_err(|_| FaultError::Oom)?.ok_or(FaultError::Sigbus)?;
    if !pte_none(pt.get(addr)) {
        return Ok(());
    }
    folio_add_rmap_pte(&folio);
    mm.add_rss(MM_FILEPAGES, 1);
    // Map read-only even in a shared writable mapping: the first write
    // marks the folio dirty (do_wp_page's shared case).
    set_pte_at(mm, &pt, addr, pte_wrprotect(pfn_pte(folio.pfn(), vma.page_prot())));
    folio.into_counted();
    Ok(())
}

/// Write to a private file mapping with nothing mapped: copy the page-cache
/// page into a new anonymous page.
fn do_cow_fault(mm: &Arc<MmStruct>, map: &MmMap, vma: &Vma, addr: usize) -> Result<(), FaultError> {
    let src = file_folio(vma, addr)?;
    let anon_vma = mm.anon_vma_prepare(map, vma);
    let new = Folio::alloc(0).ok_or(FaultError::Oom)?;
    copy_highpage(&new, &src, 0);
    drop(src);
    let pt = mm.pgtables.lock(addr, true).map_err(|_| FaultError::Oom)?.ok_or(FaultError::Sigbus)?;
    if !pte_none(pt.get(addr)) {
        return Ok(());
    }
    folio_add_new_anon_rmap(&new, &anon_vma, vma.pgoff_of(addr), 1);
    mm.add_rss(MM_ANONPAGES, 1);
    set_pte_at(mm, &pt, addr, pte_mkdirty(pte_mkwrite(pfn_pte(new.pfn(), vma.page_prot()))));
    new.into_counted();
    Ok(())
}

/// Write to a shared file mapping with nothing mapped.
fn do_shared_fault(mm: &Arc<MmStruct>, vma: &Vma, addr: usize) -> Result<(), FaultError> {
    let folio = file_folio(vma, addr)?;
    let pt = mm.pgtables.lock(addr, true).map_err(|_| FaultError::Oom)?.ok_or(FaultError::Sigbus)?;
    if !pte_none(pt.get(addr)) {
        return Ok(());
    }
    folio_add_rmap_pte(&folio);
    folio.set(PG_DIRTY);
    mm.add_rss(MM_FILEPAGES, 1);
    set_pte_at(mm, &pt, addr, pte_mkdirty(pte_mkwrite(pfn_pte(folio.pfn(), vma.page_prot()))));
    folio.into_counted();
    Ok(())
}

/// A write to a present read-only pte in a writable VMA.
fn do_wp_page(
    mm: &Arc<MmStruct>,
    map: &MmMap,
    vma: &Vma,
    addr: usize,
    pt: PteTable,
    orig: pte_t,
) -> Result<(), FaultError> {
    if pte_special(orig) {
        drop(pt);
        return wp_page_copy(mm, map, vma, addr, orig); // the zero page
    }
    let folio = Folio::get(pte_pfn(orig));
    if vma.flags & VM_SHARED != 0 {
        // wp_page_shared: the page-cache page itself becomes writable.
        folio.set(PG_DIRTY);
        set_pte_at(mm, &pt, addr, pte_mkyoung(pte_mkdirty(pte_mkwrite(orig))));
        return Ok(());
    }
    if folio.is_anon() {
        // wp_can_reuse_anon_folio: exclusive, or the only reference left is
        // this pte's (ours is the +1 taken above). A swap-cache folio whose
        // slot no swap pte needs any more leaves the cache first, releasing
        // the slot and its tag-storage entry.
        let reuse = folio.test(PG_ANON_EXCLUSIVE) || {
            // Under the folio lock, so the count cannot grow under us.
            folio.try_lock_guard().is_some_and(|_locked| {
                if folio.test(PG_SWAPCACHE) {
                    super::swap_state::folio_free_swap(&folio);
                }
                let only_us = folio.refcount() == 2 && folio.mapcount() == 1;
                if only_us {
                    folio.set(PG_ANON_EXCLUSIVE);
                }
                only_us
            })
        };
        if reuse {
            set_pte_at(mm, &pt, addr, pte_mkyoung(pte_mkdirty(pte_mkwrite(orig))));
            return Ok(());
        }
    }
    drop(pt);
    drop(folio);
    wp_page_copy(mm, map, vma, addr, orig)
}

/// Copies the page `orig` maps into a new anonymous page and maps it
/// writable, if the pte has not changed meanwhile.
fn wp_page_copy(mm: &Arc<MmStruct>, map: &MmMap, vma: &Vma, addr: usize, orig: pte_t) -> Result<(), FaultError> {
    let anon_vma = mm.anon_vma_prepare(map, vma);
    // A copy overwrites every byte, so only the zero page's copy needs a
    // zeroed frame; tags a data-only copy leaves are cleared by
    // set_pte_at, since such a page is not PG_mte_tagged.
    let new = if pte_special(orig) { Folio::alloc(0) } else { Folio::alloc_for_copy(0) };
    let new = new.ok_or(FaultError::Oom)?;
    let old_pfn = pte_pfn(orig);
    if !pte_special(orig) {
        // Keep it alive while copying unlocked; no pte lock is held, so the
        // folio may be gone or being split: then refault.
        let Some(src) = Folio::try_get(old_pfn) else { return Ok(()) };
        copy_highpage(&new, &src, src.page_index(old_pfn));
    }
    sched_point(&crate::testhooks::points::WP_PAGE_COPY_AFTER_COPY);
    let pt = mm.pgtables.lock(addr, true).map_err(|_| FaultError::Oom)?.ok_or(FaultError::Sigbus)?;
    if pt.get(addr) != orig {
        return Ok(()); // someone else resolved it: retry from EL0
    }
    folio_add_new_anon_rmap(&new, &anon_vma, vma.pgoff_of(addr), 1);
    let pte = pte_mkyoung(pte_mkdirty(pte_mkwrite(pfn_pte(new.pfn(), vma.page_prot()))));
    pt.clear(addr, mm.asid);
    if !pte_special(orig) {
        let old = Folio::from_counted(old_pfn); // the old pte's reference
        folio_remove_rmap_pte(&old);
        if !old.is_anon() {
            mm.add_rss(MM_FILEPAGES, -1);
            mm.add_rss(MM_ANONPAGES, 1);
        }
    } else {
        mm.add_rss(MM_ANONPAGES, 1);
    }
    set_pte_at(mm, &pt, addr, pte);
    new.into_counted();
    Ok(())
}
