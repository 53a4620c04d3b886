//! Reclaim of anonymous folios to swap, driven from EL0 by
//! madvise(MADV_PAGEOUT): add_to_swap, try_to_unmap through the rmap
//! (installing swap ptes that carry the exclusive and uffd-wp bits),
//! pageout (tags saved, then the data written), and finally the folio freed
//! or, if asked, kept in the swap cache.

use super::folio::{Folio, PG_ANON_EXCLUSIVE, PG_SWAPCACHE};
use super::mm_types::{MmStruct, MM_ANONPAGES, MM_SWAPENTS};
use super::pte::*;
use super::rmap::{folio_remove_rmap_pte, rmap_walk};
use super::{mteswap, page_io, swap_state, swapfile};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// What reclaim did with the folios of a range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReclaimStats {
    pub reclaimed: usize,
    pub kept_in_swapcache: usize,
    /// Locked, pinned or still mapped somewhere: left alone.
    pub skipped: usize,
    /// No free swap slot.
    pub no_swap: usize,
    /// arch_prepare_to_swap failed: the folio stays in the swap cache.
    pub tag_save_failed: usize,
    /// The RAM-disk write failed: the folio stays in the swap cache.
    pub write_failed: usize,
    /// Large folios split because no run of slots fit them whole, their
    /// pages then reclaimed one by one (Linux's THP_SWPOUT_FALLBACK).
    pub split: usize,
}

/// Reclaims the anonymous folios mapped in `[start, end)` of `mm`.
pub fn reclaim_range(mm: &Arc<MmStruct>, start: usize, end: usize) -> ReclaimStats {
    // Only the page tables that exist are walked; each candidate is read
    // again under its pte lock, where the pte's reference keeps the folio
    // alive while we take ours. None and swap ptes name no folio.
    let mut candidates: Vec<usize> = Vec::new();
    mm.pgtables.for_each_pte(start, end, |addr, pte| {
        if pte_present(pte) && !pte_special(pte) {
            candidates.push(addr);
        }
    });
    if !candidates.is_empty() {
        crate::testhooks::schedpoint::sched_point(&crate::testhooks::points::RECLAIM_RANGE_AFTER_LISTING);
    }
    let mut folios: Vec<Folio> = Vec::new();
    let mut seen = alloc::collections::BTreeSet::new();
    for addr in candidates {
        let Ok(Some(pt)) = mm.pgtables.lock(addr, false) else { continue };
        let pte = pt.get(addr);
        if !pte_present(pte) || pte_special(pte) {
            continue;
        }
        let head = super::folio::folio_head(pte_pfn(pte));
        if seen.insert(head) {
            folios.push(Folio::get(head));
        }
    }
    let mut st = ReclaimStats::default();
    let mut queue: alloc::collections::VecDeque<Folio> = folios.into();
    while let Some(folio) = queue.pop_front() {
        if !folio.is_anon() {
            continue;
        }
        match shrink_folio(&folio) {
            Outcome::Split(nr) => {
                // The pages, each a folio now, go back on the list (the
                // ones nothing mapped were freed by the split).
                st.split += 1;
                let head = folio.pfn();
                queue.push_front(folio);
                for i in 1..nr as u64 {
                    if let Some(tail) = Folio::try_get(head + i) {
                        queue.push_back(tail);
                    }
                }
            }
            o => st.count(o),
        }
    }
    st
}

impl ReclaimStats {
    pub fn add(&mut self, o: &ReclaimStats) {
        self.reclaimed += o.reclaimed;
        self.kept_in_swapcache += o.kept_in_swapcache;
        self.skipped += o.skipped;
        self.no_swap += o.no_swap;
        self.tag_save_failed += o.tag_save_failed;
        self.write_failed += o.write_failed;
        self.split += o.split;
    }
}

/// What shrink_folio did with one folio.
enum Outcome {
    Reclaimed,
    KeptInSwapcache,
    Skipped,
    NoSwap,
    TagSaveFailed,
    WriteFailed,
    /// A large folio was split (it had this many pages): reclaim its pages.
    Split(usize),
}

impl ReclaimStats {
    fn count(&mut self, o: Outcome) {
        match o {
            Outcome::Reclaimed => self.reclaimed += 1,
            Outcome::KeptInSwapcache => self.kept_in_swapcache += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::NoSwap => self.no_swap += 1,
            Outcome::TagSaveFailed => self.tag_save_failed += 1,
            Outcome::WriteFailed => self.write_failed += 1,
            Outcome::Split(_) => self.split += 1,
        }
    }
}

fn shrink_folio(folio: &Folio) -> Outcome {
    let Some(mut locked) = folio.try_lock_guard() else { return Outcome::Skipped };
    if folio.page().pincount.load(Ordering::Acquire) > 0 {
        return Outcome::Skipped;
    }
    let entry = if folio.test(PG_SWAPCACHE) {
        folio.page().inner.lock().swap.expect("swap-cache folio without an entry")
    } else {
        match swapfile::folio_alloc_swap(folio) {
            Ok(e) => {
                swap_state::add_to_swap_cache(folio, e);
                e
            }
            // No run of slots for the whole folio: split it and swap its
            // pages one by one, as Linux's shrink_folio_list does.
            Err(_) if folio.nr_pages() > 1 => {
                let nr = folio.nr_pages();
                return match super::split::split_folio(folio) {
                    Ok(()) => Outcome::Split(nr),
                    Err(_) => Outcome::NoSwap,
                };
            }
            Err(_) => return Outcome::NoSwap,
        }
    };
    // The swap ptes remember exclusivity; the folio forgets it once unmapped.
    let exclusive = folio.test(PG_ANON_EXCLUSIVE);
    for hit in rmap_walk(folio) {
        try_to_unmap_one(&hit.mm, hit.addr, folio, entry, exclusive);
    }
    folio.clear(PG_ANON_EXCLUSIVE);
    if folio.mapcount() > 0 {
        return Outcome::Skipped;
    }
    crate::testhooks::schedpoint::sched_point(&crate::testhooks::points::SHRINK_FOLIO_BEFORE_PAGEOUT);
    // pageout: arch_prepare_to_swap, then the write. A failure leaves the
    // folio in the swap cache.
    if mteswap::arch_prepare_to_swap(folio, entry).is_err() {
        return Outcome::TagSaveFailed;
    }
    if page_io::swap_writepage(&mut locked, entry).is_err() {
        return Outcome::WriteFailed;
    }
    if crate::testhooks::knobs::KEEP_IN_SWAPCACHE.get() != 0 {
        return Outcome::KeptInSwapcache;
    }
    // __remove_mapping: the folio leaves the swap cache and, with the last
    // reference (ours), memory.
    swap_state::delete_from_swap_cache(folio);
    Outcome::Reclaimed
}

/// Replaces the pte mapping `folio` at `addr` with a swap pte for `entry`.
fn try_to_unmap_one(mm: &Arc<MmStruct>, addr: usize, folio: &Folio, entry: swp_entry_t, exclusive: bool) {
    let Ok(Some(pt)) = mm.pgtables.lock(addr, false) else { return };
    let pte = pt.get(addr);
    let nr = folio.nr_pages() as u64;
    if !pte_present(pte) || pte_special(pte) || pte_pfn(pte) < folio.pfn() || pte_pfn(pte) >= folio.pfn() + nr {
        return;
    }
    // Page i of the folio goes to slot entry + i.
    let entry = swp_entry_nth(entry, pte_pfn(pte) - folio.pfn());
    if swapfile::swap_duplicate(entry).is_err() {
        return;
    }
    let mut swp = swp_entry_to_pte(entry);
    if exclusive {
        swp = pte_swp_mkexclusive(swp);
    }
    if pte_uffd_wp(pte) {
        swp = pte_swp_mkuffd_wp(swp);
    }
    pt.clear(addr, mm.asid);
    pt.set(addr, swp, mm.asid);
    folio_remove_rmap_pte(folio);
    mm.add_rss(MM_ANONPAGES, -1);
    mm.add_rss(MM_SWAPENTS, 1);
    drop(Folio::from_counted(folio.pfn())); // the pte's reference
}
