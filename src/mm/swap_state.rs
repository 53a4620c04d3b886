//! The swap cache: swap entry -> folio, for folios on their way out to swap
//! or back in. A folio in the swap cache has PG_swapcache, its entry in
//! `inner.swap`, one reference per page held by the cache, and the slots'
//! SWAP_HAS_CACHE pins.

use super::folio::{Folio, PG_SWAPCACHE};
use super::pte::{swp_entry_nth, swp_entry_t};
use super::swapfile;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use spin::Mutex;

static CACHE: Mutex<BTreeMap<u64, u64>> = Mutex::new(BTreeMap::new());

/// Adds the (locked) folio under `entry`; the slots must be pinned with
/// SWAP_HAS_CACHE already.
pub fn add_to_swap_cache(folio: &Folio, entry: swp_entry_t) {
    let n = folio.nr_pages();
    let mut c = CACHE.lock();
    for i in 0..n {
        let old = c.insert(swp_entry_nth(entry, i as u64).0, folio.pfn());
        assert!(old.is_none(), "swap cache already holds {:?}", swp_entry_nth(entry, i as u64));
    }
    folio.page().inner.lock().swap = Some(entry);
    folio.set(PG_SWAPCACHE);
    for _ in 0..n {
        folio.clone().into_counted(); // the cache's references
    }
}

/// Removes the (locked) folio from the swap cache and drops the cache's
/// references and pins.
pub fn delete_from_swap_cache(folio: &Folio) {
    let entry = folio.page().inner.lock().swap.take().expect("delete_from_swap_cache of a folio not in it");
    let n = folio.nr_pages();
    {
        let mut c = CACHE.lock();
        for i in 0..n {
            c.remove(&swp_entry_nth(entry, i as u64).0);
        }
    }
    folio.clear(PG_SWAPCACHE);
    for i in 0..n {
        swapfile::put_swap_cache(swp_entry_nth(entry, i as u64));
        drop(Folio::from_counted(folio.pfn())); // the cache's reference
    }
}

/// swap_cache_get_folio: the folio caching `entry`, with a reference.
pub fn lookup(entry: swp_entry_t) -> Option<Folio> {
    let c = CACHE.lock();
    c.get(&entry.0).map(|&pfn| Folio::get(pfn))
}

/// folio_free_swap: drops a (locked) swap-cache folio's entry when no swap
/// pte refers to it any more. Returns whether it did.
pub fn folio_free_swap(folio: &Folio) -> bool {
    let Some(entry) = folio.page().inner.lock().swap else { return false };
    if (0..folio.nr_pages()).any(|i| swapfile::swap_count(swp_entry_nth(entry, i as u64)) > 0) {
        return false;
    }
    delete_from_swap_cache(folio);
    true
}

/// Every cached (entry, pfn) pair, for the invariant checker.
pub fn cached() -> Vec<(swp_entry_t, u64)> {
    CACHE.lock().iter().map(|(&e, &p)| (swp_entry_t(e), p)).collect()
}
