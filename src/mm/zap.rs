//! Unmapping: zap_page_range (munmap, MADV_DONTNEED) and exit_mmap.
//! The full zap_pte_range with zap_details comes with its own issue.

use super::folio::{Folio, PG_DIRTY, PG_SWAPCACHE};
use super::mm_types::{MmMap, MmStruct, MM_ANONPAGES, MM_FILEPAGES, MM_SWAPENTS};
use super::mmu_gather::MmuGather;
use super::pte::{is_swap_pte, non_swap_entry, pte_dirty, pte_pfn, pte_present, pte_special, pte_to_swp_entry};
use super::rmap::folio_remove_rmap_pte;
use crate::arch::mmu::PAGE_SIZE;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Clears every pte of `[start, end)` and drops what they held: one TLB
/// invalidation for the whole range, and the pages freed after it.
pub fn zap_page_range(mm: &MmStruct, start: usize, end: usize) {
    super::huge_memory::zap_or_split_huge_pmds(mm, start, end);
    let mut tlb = MmuGather::new(mm.asid);
    // One pte table (up to 2 MiB) at a time, under its lock; ranges with
    // no table are skipped without a look.
    mm.pgtables.for_each_locked_table(start, end, |pt, lo, hi| {
        for a in (lo..hi).step_by(PAGE_SIZE) {
            let pte = pt.get(a);
            if pte_present(pte) {
                pt.clear_gathered(a, &mut tlb);
                if !pte_special(pte) {
                    let folio = Folio::from_counted(pte_pfn(pte)); // the pte's reference
                    if pte_dirty(pte) && !folio.is_anon() {
                        folio.set(PG_DIRTY);
                    }
                    folio_remove_rmap_pte(&folio);
                    mm.add_rss(if folio.is_anon() { MM_ANONPAGES } else { MM_FILEPAGES }, -1);
                    free_swap_cache(&folio);
                    tlb.remove_folio(folio);
                }
            } else if is_swap_pte(pte) {
                pt.clear_gathered(a, &mut tlb);
                // Markers, migration and hwpoison entries hold nothing.
                let entry = pte_to_swp_entry(pte);
                if !non_swap_entry(entry) {
                    super::swap::free_swap_and_cache(entry);
                    mm.add_rss(MM_SWAPENTS, -1);
                }
            }
        }
    });
    tlb.flush();
}

/// free_swap_cache: an unmapped swap-cache folio whose slot no swap pte
/// needs any more leaves the swap cache (and so can be freed).
fn free_swap_cache(folio: &Folio) {
    if folio.test(PG_SWAPCACHE) && folio.mapcount() == 0 {
        if let Some(_locked) = folio.try_lock_guard() {
            super::swap_state::folio_free_swap(folio);
        }
    }
}

/// exit_mmap: unmaps every VMA. The page tables go when the mm is dropped.
pub fn exit_mmap(mm: &Arc<MmStruct>) {
    let mut map: spin::RwLockWriteGuard<'_, MmMap> = mm.mmap_lock.write();
    let starts: Vec<usize> = map.vmas.keys().copied().collect();
    for s in starts {
        let (start, end) = (map.vmas[&s].start, map.vmas[&s].end);
        zap_page_range(mm, start, end);
        mm.vma_unlink(&mut map, s);
    }
}
