//! Swap-in: do_swap_page and swapoff's unuse path, with the step order
//! switchable between the correct one and the known-wrong ones.
//!
//! Correct order (Linux >= 6.5, see shared/spec section 3):
//!   swap-cache lookup or read -> folio lock -> still the swap-cache folio
//!   of this entry? -> pte lock, pte_same -> exclusive? ->
//!   arch_swap_restore -> swap_free (+ folio_free_swap) -> rss ->
//!   build the pte (uffd-wp, write) -> rmap -> set_pte_at -> unlock.

use super::fault::{set_pte_at, FaultError};
use super::folio::{Folio, Mapping, PG_ANON_EXCLUSIVE, PG_SWAPCACHE, PG_UPTODATE};
use super::mm_types::*;
use super::pte::*;
use super::rmap::{folio_add_new_anon_rmap, folio_add_rmap_pte};
use super::{mteswap, page_io, swap_state, swapfile};
use crate::errno::*;
use crate::testhooks::schedpoint::sched_point;
use crate::testhooks::variants::{self, Variant};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// Where do_swap_page restores tags and frees the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SwapInOrder {
    /// Restore under the folio lock after pte_same, before swap_free and
    /// before the pte is set.
    Correct,
    /// swap_free / folio_free_swap first (c145e0b47c77): the slot and its
    /// tags are freed before the restore finds them.
    FreeBeforeRestore,
    /// The pte is set first, tags restored after (the old set_pte_at hook).
    RestoreAfterSetPte,
    /// Tag storage read before the folio lock and the rechecks (the T1/T2
    /// race): a concurrent fault can free the buffer in between.
    RestoreBeforeLock,
}

impl SwapInOrder {
    /// The declared variant that selects this order (None: the correct one).
    pub fn variant(self) -> Option<&'static Variant> {
        match self {
            SwapInOrder::Correct => None,
            SwapInOrder::FreeBeforeRestore => Some(&variants::SWAPIN_FREE_BEFORE_RESTORE),
            SwapInOrder::RestoreAfterSetPte => Some(&variants::SWAPIN_RESTORE_AFTER_SET_PTE),
            SwapInOrder::RestoreBeforeLock => Some(&variants::SWAPIN_RESTORE_BEFORE_LOCK),
        }
    }
}

/// The order do_swap_page runs now: the wrong one whose variant is on.
pub fn swapin_order() -> SwapInOrder {
    [SwapInOrder::FreeBeforeRestore, SwapInOrder::RestoreAfterSetPte, SwapInOrder::RestoreBeforeLock]
        .into_iter()
        .find(|o| o.variant().is_some_and(|v| v.is_on()))
        .unwrap_or(SwapInOrder::Correct)
}

/// vm_swap_full: more than half the swap space is in use.
fn vm_swap_full() -> bool {
    swapfile::swap_info(0).is_some_and(|si| si.free_slots() * 2 < si.slots)
}

pub enum Swapin {
    Folio(Folio),
    /// Someone else is swapping the entry in, or it went away: refault.
    Retry,
}

/// The folio for `entry`: from the swap cache, or read from the slot into
/// a new swap-cache folio. A read error leaves a folio that is not
/// uptodate (the caller reports it).
pub fn swapin_folio(entry: swp_entry_t) -> Result<Swapin, Errno> {
    if let Some(f) = swap_state::lookup(entry) {
        return Ok(Swapin::Folio(f));
    }
    match swapfile::swapcache_prepare(entry) {
        Ok(()) => {}
        Err(e) if e == EEXIST || e == ENOENT => return Ok(Swapin::Retry),
        Err(e) => return Err(e),
    }
    let Some(folio) = Folio::alloc(0) else {
        swapfile::put_swap_cache(entry);
        return Err(ENOMEM);
    };
    folio.clear(PG_UPTODATE);
    {
        let mut locked = folio.try_lock_guard().expect("a new folio is locked by someone");
        swap_state::add_to_swap_cache(&folio, entry);
        if page_io::swap_read_folio(&mut locked, entry).is_ok() {
            folio.set(PG_UPTODATE);
        }
    }
    Ok(Swapin::Folio(folio))
}

/// Drops a folio whose read failed from the swap cache (locked), so the
/// next fault reads the slot again; the slot and its tags are untouched.
fn discard_failed_read(folio: &Folio) {
    if folio.test(PG_SWAPCACHE) {
        swap_state::delete_from_swap_cache(folio);
    }
}

/// If `folio` is still the swap-cache folio holding `entry`: its first
/// entry (folio_swap) and the index of `entry`'s page in it.
fn cached_index(folio: &Folio, entry: swp_entry_t) -> Option<(swp_entry_t, usize)> {
    if !folio.test(PG_SWAPCACHE) {
        return None;
    }
    let first = folio.page().inner.lock().swap?;
    let (lo, off) = (swp_offset(first), swp_offset(entry));
    (swp_type(first) == swp_type(entry) && off >= lo && off < lo + folio.nr_pages() as u64)
        .then(|| (first, (off - lo) as usize))
}

/// __page_check_anon_rmap: a folio that kept its anon mapping (it was in
/// the swap cache) must still belong to this VMA at this index. Checked
/// before anything changes, so a mismatch (the bug UFFDIO_MOVE once had)
/// fails the fault cleanly with SIGBUS and a logged error instead of
/// corrupting the rmap.
fn check_anon_rmap(
    mm: &Arc<MmStruct>,
    map: &MmMap,
    vma: &Vma,
    addr: usize,
    folio: &Folio,
    idx: usize,
) -> Result<(), FaultError> {
    let anon_vma = mm.anon_vma_prepare(map, vma);
    let inner = folio.page().inner.lock();
    let ok = match &inner.mapping {
        Mapping::None => true,
        Mapping::Anon(av) => Arc::ptr_eq(av, &anon_vma) && inner.index + idx as u64 == vma.pgoff_of(addr),
        Mapping::File(_) => false,
    };
    if !ok {
        defmt::error!(
            "do_swap_page: folio {=u64:#x} belongs to another anon_vma/index than the VMA at {=usize:#x} (rmap check)",
            folio.pfn(),
            addr
        );
        return Err(FaultError::Sigbus);
    }
    Ok(())
}

/// Adds the pte's rmap: a fresh folio gets a new anon rmap, one that kept
/// its mapping (checked by check_anon_rmap) one more mapping.
fn swapin_rmap(mm: &Arc<MmStruct>, map: &MmMap, vma: &Vma, addr: usize, folio: &Folio, exclusive: bool) {
    let anon_vma = mm.anon_vma_prepare(map, vma);
    let fresh = matches!(folio.page().inner.lock().mapping, Mapping::None);
    if fresh {
        folio_add_new_anon_rmap(folio, &anon_vma, vma.pgoff_of(addr), 1);
        if !exclusive {
            folio.clear(PG_ANON_EXCLUSIVE);
        }
        return;
    }
    folio_add_rmap_pte(folio);
    if exclusive {
        folio.set(PG_ANON_EXCLUSIVE);
    }
}

/// should_try_to_free_swap: swap is short, the VMA is locked, or a write
/// fault that is likely the folio's only user (our reference and the swap
/// cache's, whatever the swap pte's exclusive bit said: the other sharer
/// may have gone) so that dropping the cache lets the page be reused.
fn should_try_to_free_swap(folio: &Folio, vma: &Vma, write: bool) -> bool {
    folio.test(PG_SWAPCACHE)
        && (vm_swap_full() || vma.flags & VM_LOCKED != 0 || (write && folio.refcount() == 1 + folio.nr_pages() as i32))
}

/// swap_free and, when it is worth it, folio_free_swap.
fn free_swap(entry: swp_entry_t, folio: &Folio, vma: &Vma, write: bool) {
    swapfile::swap_free(entry);
    sched_point(&crate::testhooks::points::DO_SWAP_PAGE_AFTER_SWAP_FREE);
    if should_try_to_free_swap(folio, vma, write) {
        swap_state::folio_free_swap(folio);
    }
}

pub fn do_swap_page(
    mm: &Arc<MmStruct>,
    map: &MmMap,
    vma: &Vma,
    addr: usize,
    orig: pte_t,
    write: bool,
) -> Result<(), FaultError> {
    let entry = pte_to_swp_entry(orig);
    if non_swap_entry(entry) {
        return handle_non_swap(mm, addr, orig, entry);
    }
    if swapfile::get_swap_device(entry).is_none() {
        return Err(FaultError::Sigbus);
    }
    let order = swapin_order();
    if order == SwapInOrder::Correct && swap_state::lookup(entry).is_none() {
        if let Some(r) = swapin_mthp(mm, map, vma, addr, entry, write) {
            return r;
        }
    }
    let folio = match swapin_folio(entry) {
        Ok(Swapin::Folio(f)) => f,
        Ok(Swapin::Retry) => return Ok(()),
        Err(_) => return Err(FaultError::Oom),
    };
    // The known-wrong order reads tag storage here, unprotected.
    let early = if order == SwapInOrder::RestoreBeforeLock { mteswap::lookup(entry) } else { None };
    sched_point(&crate::testhooks::points::DO_SWAP_PAGE_AFTER_SWAPCACHE_LOOKUP);
    if let Some(h) = early {
        mteswap::restore_from(h, &folio, 0);
    }
    let locked = folio.lock_guard();
    sched_point(&crate::testhooks::points::DO_SWAP_PAGE_AFTER_FOLIO_LOCK);
    let Some((first, idx)) = cached_index(&folio, entry) else {
        return Ok(()); // freed or reused meanwhile: refault
    };
    let Ok(Some(pt)) = mm.pgtables.lock(addr, false) else {
        return Ok(());
    };
    if pt.get(addr) != orig {
        return Ok(()); // someone else handled it
    }
    if !folio.test(PG_UPTODATE) {
        discard_failed_read(&folio);
        return Err(FaultError::Sigbus);
    }
    check_anon_rmap(mm, map, vma, addr, &folio, idx)?;
    let exclusive = pte_swp_exclusive(orig);
    match order {
        SwapInOrder::Correct | SwapInOrder::RestoreBeforeLock => {
            mteswap::arch_swap_restore(first, &folio);
            sched_point(&crate::testhooks::points::DO_SWAP_PAGE_AFTER_RESTORE);
            free_swap(entry, &folio, vma, write);
        }
        SwapInOrder::FreeBeforeRestore => {
            free_swap(entry, &folio, vma, write);
            mteswap::arch_swap_restore(first, &folio);
        }
        SwapInOrder::RestoreAfterSetPte => {}
    }
    mm.add_rss(MM_ANONPAGES, 1);
    mm.add_rss(MM_SWAPENTS, -1);
    let mut pte = pfn_pte(folio.pfn() + idx as u64, vma.page_prot());
    let uffd_wp = pte_swp_uffd_wp(orig);
    if uffd_wp {
        pte = pte_mkuffd_wp(pte);
    }
    // Exclusive if the swap pte said so or nobody else holds the folio
    // (our reference only, the swap cache gone).
    let exclusive = exclusive || (folio.refcount() == 1 && !folio.test(PG_SWAPCACHE));
    if exclusive && vma.flags & VM_WRITE != 0 && !uffd_wp {
        pte = pte_mkwrite(pte);
        if write {
            pte = pte_mkdirty(pte);
        }
    }
    swapin_rmap(mm, map, vma, addr, &folio, exclusive);
    set_pte_at(mm, &pt, addr, pte);
    if order == SwapInOrder::RestoreAfterSetPte {
        sched_point(&crate::testhooks::points::DO_SWAP_PAGE_AFTER_SET_PTE);
        mteswap::arch_swap_restore(first, &folio);
        free_swap(entry, &folio, vma, write);
    }
    drop(pt);
    drop(locked);
    folio.into_counted(); // the pte's reference
    Ok(())
}

/// mTHP swap-in (Linux's alloc_swap_folio and do_swap_page's batch): the
/// largest enabled order whose aligned range around `addr` lies in the VMA
/// and whose ptes hold the swap entries first + i of one device, with
/// `first` naturally aligned (thp_swap_suitable_orders), each exclusive,
/// used by that pte alone and not in the swap cache. The folio is read
/// whole, every page's tags restored before the slots are freed, and all
/// its ptes mapped. None: no such order, or no memory for the folio; the
/// page-by-page path runs.
fn swapin_mthp(
    mm: &Arc<MmStruct>,
    map: &MmMap,
    vma: &Vma,
    addr: usize,
    entry: swp_entry_t,
    write: bool,
) -> Option<Result<(), FaultError>> {
    use super::huge_memory::thp_vma_allowable;
    use crate::cmdline::{THP_MIN_ORDER, THP_PMD_ORDER};
    let masked = variants::SWAPIN_MTHP_MASKED_ENTRY.is_on();
    for order in (THP_MIN_ORDER..THP_PMD_ORDER).rev() {
        let (nr, size) = (1usize << order, crate::arch::mmu::PAGE_SIZE << order);
        let start = addr & !(size - 1);
        if !thp_vma_allowable(vma, order) || start < vma.start || start + size > vma.end {
            continue;
        }
        let idx = (addr - start) / crate::arch::mmu::PAGE_SIZE;
        let Some(off) = swp_offset(entry).checked_sub(idx as u64) else { continue };
        let first = swp_entry(swp_type(entry), off);
        // The draft helper of the 2024 large-folio swap-in thread took the
        // entry masked to the folio size instead of requiring alignment.
        if !masked && off % nr as u64 != 0 {
            continue;
        }
        let Some(origs) = swap_batch(mm, start, first, nr) else { continue };
        let read_from = if masked { swp_entry(swp_type(entry), off & !(nr as u64 - 1)) } else { first };
        let folio = Folio::alloc(order as u8)?;
        let batch = SwapBatch { start, idx, first, read_from, origs };
        return Some(swapin_batch(mm, map, vma, &batch, folio, write));
    }
    None
}

/// The `nr` ptes from `start` if they are the exclusive, unshared,
/// uncached swap entries first + i (swap_pte_batch and its checks).
fn swap_batch(mm: &MmStruct, start: usize, first: swp_entry_t, nr: usize) -> Option<Vec<pte_t>> {
    let pt = mm.pgtables.lock(start, false).ok()??;
    let mut origs = Vec::with_capacity(nr);
    for i in 0..nr {
        let pte = pt.get(start + i * crate::arch::mmu::PAGE_SIZE);
        let e = swp_entry_nth(first, i as u64);
        let ok = is_swap_pte(pte)
            && pte_to_swp_entry(pte) == e
            && pte_swp_exclusive(pte)
            && !pte_swp_uffd_wp(pte)
            && swapfile::swap_count(e) == 1
            && swap_state::lookup(e).is_none();
        if !ok {
            return None;
        }
        origs.push(pte);
    }
    Some(origs)
}

/// The ptes an mTHP swap-in replaces.
struct SwapBatch {
    /// The aligned range's start and the faulting page's index in it.
    start: usize,
    idx: usize,
    /// The first pte's entry, and where the folio is read from (the same
    /// but under the masked-entry variant).
    first: swp_entry_t,
    read_from: swp_entry_t,
    /// The ptes as found, for the recheck under the lock.
    origs: Vec<pte_t>,
}

fn swapin_batch(
    mm: &Arc<MmStruct>,
    map: &MmMap,
    vma: &Vma,
    b: &SwapBatch,
    folio: Folio,
    write: bool,
) -> Result<(), FaultError> {
    let SwapBatch { start, idx, first, read_from, ref origs } = *b;
    let nr = origs.len();
    for i in 0..nr {
        if swapfile::swapcache_prepare(swp_entry_nth(first, i as u64)).is_err() {
            for j in 0..i {
                swapfile::put_swap_cache(swp_entry_nth(first, j as u64));
            }
            return Ok(()); // someone else is swapping one in: refault
        }
    }
    folio.clear(PG_UPTODATE);
    let mut locked = folio.try_lock_guard().expect("a new folio is locked by someone");
    swap_state::add_to_swap_cache(&folio, first);
    if page_io::swap_read_folio(&mut locked, read_from).is_err() {
        discard_failed_read(&folio);
        return Err(FaultError::Sigbus);
    }
    folio.set(PG_UPTODATE);
    let Ok(Some(pt)) = mm.pgtables.lock(start, false) else { return Ok(()) };
    let page = crate::arch::mmu::PAGE_SIZE;
    if (0..nr).any(|i| pt.get(start + i * page) != origs[i]) {
        return Ok(()); // changed meanwhile: the folio stays cached, refault
    }
    // Every page's tags, before any slot is freed.
    if variants::SWAPIN_MTHP_FAULTING_PAGE_TAGS_ONLY.is_on() {
        if let Some(h) = mteswap::lookup(swp_entry_nth(read_from, idx as u64)) {
            mteswap::restore_from(h, &folio, idx);
        }
    } else {
        mteswap::arch_swap_restore(read_from, &folio);
    }
    for i in 0..nr {
        swapfile::swap_free(swp_entry_nth(first, i as u64));
    }
    if should_try_to_free_swap(&folio, vma, write) {
        swap_state::folio_free_swap(&folio);
    }
    let anon_vma = mm.anon_vma_prepare(map, vma);
    folio_add_new_anon_rmap(&folio, &anon_vma, vma.pgoff_of(start), nr as i32);
    mm.add_rss(MM_ANONPAGES, nr as isize);
    mm.add_rss(MM_SWAPENTS, -(nr as isize));
    for i in 0..nr {
        let mut pte = pfn_pte(folio.pfn() + i as u64, vma.page_prot());
        if vma.flags & VM_WRITE != 0 {
            pte = pte_mkwrite(pte);
            if write {
                pte = pte_mkdirty(pte);
            }
        }
        set_pte_at(mm, &pt, start + i * page, pte);
    }
    folio.add_refs(nr); // each pte's reference
    drop(pt);
    drop(locked);
    Ok(())
}

/// Markers, migration and hwpoison entries.
fn handle_non_swap(mm: &MmStruct, addr: usize, orig: pte_t, entry: swp_entry_t) -> Result<(), FaultError> {
    if is_pte_marker_entry(entry) {
        if pte_marker_get(entry) & PTE_MARKER_POISONED != 0 {
            return Err(FaultError::Sigbus);
        }
        // A uffd-wp marker in a VMA no longer registered: clear it and let
        // the refault allocate (pte_marker_clear).
        if let Ok(Some(pt)) = mm.pgtables.lock(addr, false) {
            if pt.get(addr) == orig {
                pt.clear(addr, mm.asid);
            }
        }
        return Ok(());
    }
    // hwpoison: SIGBUS. Migration entries: nothing creates them yet.
    Err(FaultError::Sigbus)
}

/// zap: a swap pte is gone; free the slot's count and, if that was the
/// last one, the swap-cache folio with it (free_swap_and_cache).
pub fn free_swap_and_cache(entry: swp_entry_t) {
    swapfile::swap_free(entry);
    if swapfile::swap_count(entry) == 0 {
        if let Some(f) = swap_state::lookup(entry) {
            if let Some(_locked) = f.try_lock_guard() {
                swap_state::folio_free_swap(&f);
            }
        }
    }
}

/// swapoff: brings every page of swap type `ty` back (unuse), then drops
/// the device and its tag storage. A read error stops it with EIO and
/// leaves the device on.
pub fn swapoff(ty: u8) -> Result<(), Errno> {
    let si = swapfile::swap_info(ty).ok_or(EINVAL)?;
    si.writeok.store(false, Ordering::Release);
    let r = unuse_all(ty);
    if r.is_err() {
        si.writeok.store(true, Ordering::Release);
        return r;
    }
    // Folios left in the swap cache with no swap pte.
    for (entry, _) in swap_state::cached() {
        if swp_type(entry) != ty {
            continue;
        }
        if let Some(f) = swap_state::lookup(entry) {
            let _locked = f.lock_guard();
            swap_state::folio_free_swap(&f);
        }
    }
    if si.lock.lock().inuse != 0 {
        si.writeok.store(true, Ordering::Release);
        return Err(EBUSY);
    }
    swapfile::remove(ty);
    Ok(())
}

/// unuse_mm for every mm: every VMA with an anon_vma (anonymous ones, and
/// private file mappings holding COWed pages) is walked, and only over the
/// page tables that exist.
/// After a test that leaked swap state with no task left to own it: every
/// swap-cache folio leaves the cache, every device goes, and every
/// tag-storage entry with it. Only the harness calls this, between tests.
pub fn discard_all() {
    for (entry, _) in swap_state::cached() {
        if let Some(f) = swap_state::lookup(entry) {
            if let Some(_locked) = f.try_lock_guard() {
                if f.test(PG_SWAPCACHE) {
                    swap_state::delete_from_swap_cache(&f);
                }
            }
        }
    }
    for ty in 0..MAX_SWAPFILES {
        if swapfile::swap_info(ty).is_some() {
            swapfile::remove(ty);
        }
    }
    mteswap::invalidate_all();
}

fn unuse_all(ty: u8) -> Result<(), Errno> {
    for mm in all_mms() {
        let map = mm.mmap_lock.read();
        for vma in map.vmas.values().filter(|v| v.anon_vma().is_some()) {
            let mut found: Vec<(usize, pte_t)> = Vec::new();
            mm.pgtables.for_each_pte(vma.start, vma.end, |addr, pte| {
                if is_swap_pte(pte) && !non_swap_entry(pte_to_swp_entry(pte)) && swp_type(pte_to_swp_entry(pte)) == ty {
                    found.push((addr, pte));
                }
            });
            for (addr, pte) in found {
                unuse_pte(&mm, &map, vma, addr, pte)?;
            }
        }
    }
    Ok(())
}

/// Maps the page behind one swap pte again, read-only, restoring its tags
/// before the slot is freed.
fn unuse_pte(mm: &Arc<MmStruct>, map: &MmMap, vma: &Vma, addr: usize, orig: pte_t) -> Result<(), Errno> {
    let entry = pte_to_swp_entry(orig);
    let folio = loop {
        match swapin_folio(entry)? {
            Swapin::Folio(f) => break f,
            Swapin::Retry => core::hint::spin_loop(),
        }
    };
    let locked = folio.lock_guard();
    if !folio.test(PG_UPTODATE) {
        discard_failed_read(&folio);
        return Err(EIO);
    }
    let Ok(Some(pt)) = mm.pgtables.lock(addr, false) else {
        return Ok(());
    };
    let Some((first, idx)) = cached_index(&folio, entry).filter(|_| pt.get(addr) == orig) else {
        return Ok(());
    };
    if check_anon_rmap(mm, map, vma, addr, &folio, idx).is_err() {
        return Err(EFAULT);
    }
    mteswap::arch_swap_restore(first, &folio);
    let exclusive = pte_swp_exclusive(orig);
    swapin_rmap(mm, map, vma, addr, &folio, exclusive);
    mm.add_rss(MM_ANONPAGES, 1);
    mm.add_rss(MM_SWAPENTS, -1);
    let mut pte = pte_mkold(pfn_pte(folio.pfn() + idx as u64, vma.page_prot()));
    if pte_swp_uffd_wp(orig) {
        pte = pte_mkuffd_wp(pte);
    }
    set_pte_at(mm, &pt, addr, pte);
    swapfile::swap_free(entry);
    drop(pt);
    swap_state::folio_free_swap(&folio);
    drop(locked);
    folio.into_counted();
    Ok(())
}
