//! split_folio: a pte-mapped large anonymous folio becomes order-0 folios,
//! each keeping the anon mapping (at its own index), the flags, and the
//! references and mappings of its own ptes.
//!
//! As in Linux the refcount is frozen (folio_ref_freeze) at exactly "one
//! per mapping plus the caller's" while the pages are rewritten, so a
//! lock-free lookup (Folio::try_get, as a concurrent UFFDIO_MOVE does)
//! fails and retries instead of taking a reference on a half-split folio;
//! a reference held by anyone else makes the split fail with EAGAIN, for
//! the caller to retry. Linux first replaces the ptes with migration
//! entries; here the ptes stay, and instead every pte table mapping the
//! folio is locked across the split, so no fault, zap or reclaim touches
//! them meanwhile.

use super::folio::{
    pfn_to_page, Folio, Mapping, PageInner, PG_ANON, PG_ANON_EXCLUSIVE, PG_DIRTY, PG_HEAD, PG_MTE_TAGGED, PG_SWAPCACHE,
    PG_UPTODATE,
};
use super::mm_types::MmStruct;
use super::pgtable::PteTable;
use super::pte::pte_pfn;
use super::rmap::rmap_walk;
use crate::errno::{Errno, EAGAIN, EBUSY};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

/// Splits the locked large `folio` (the caller holds one reference).
/// EBUSY: pinned, in the swap cache, or not anonymous; EAGAIN: another
/// reference is held, or the folio's mappings changed under us.
pub fn split_folio(folio: &Folio) -> Result<(), Errno> {
    let nr = folio.nr_pages();
    if nr == 1 {
        return Ok(());
    }
    let head = folio.page();
    if folio.test(PG_SWAPCACHE) || head.pincount.load(Ordering::Acquire) > 0 || !folio.is_anon() {
        return Err(EBUSY);
    }
    // A PMD mapping becomes its ptes first (TTU_SPLIT_HUGE_PMD).
    for hit in rmap_walk(folio) {
        if super::pte::pmd_trans_huge(hit.mm.pgtables.pmd_peek(hit.addr)) {
            super::huge_memory::split_huge_pmd(&hit.mm.pgtables, hit.addr);
        }
    }
    let _tables = lock_mapping_tables(folio).ok_or(EAGAIN)?;
    // Which pages are mapped how often (the tables are locked: exact).
    let mut maps = vec![0i32; nr];
    for hit in rmap_walk(folio) {
        let pfn = pte_pfn(hit.mm.pgtables.peek(hit.addr));
        maps[(pfn - folio.pfn()) as usize] += 1;
    }
    let mapped: i32 = maps.iter().sum();
    if mapped != folio.mapcount() {
        return Err(EAGAIN);
    }
    crate::testhooks::schedpoint::sched_point(&crate::testhooks::points::SPLIT_FOLIO_BEFORE_FREEZE);
    if !folio.ref_freeze(mapped + 1) {
        return Err(EAGAIN); // someone else holds a reference
    }
    crate::testhooks::schedpoint::sched_point(&crate::testhooks::points::SPLIT_FOLIO_AFTER_FREEZE);
    let (mapping, index) = {
        let inner = head.inner.lock();
        (inner.mapping.clone(), inner.index)
    };
    let keep =
        head.flags.load(Ordering::Acquire) & (PG_ANON | PG_ANON_EXCLUSIVE | PG_MTE_TAGGED | PG_UPTODATE | PG_DIRTY);
    // The known-wrong split: tails without PG_mte_tagged, so the next
    // set_pte_at treats them as never tagged and clears their tags.
    let tail_keep =
        if crate::testhooks::variants::SPLIT_TAILS_WITHOUT_MTE_TAGGED.is_on() { keep & !PG_MTE_TAGGED } else { keep };
    for i in (1..nr).rev() {
        let pfn = folio.pfn() + i as u64;
        let p = pfn_to_page(pfn);
        *p.inner.lock() = PageInner {
            mapping: match &mapping {
                Mapping::Anon(a) => Mapping::Anon(a.clone()),
                _ => Mapping::None,
            },
            index: index + i as u64,
            swap: None,
            order: 0,
        };
        p.mapcount.store(maps[i], Ordering::Release);
        p.pincount.store(0, Ordering::Release);
        // An unmapped tail page gets one reference, dropped below: it is
        // free once split.
        p.refcount.store(maps[i].max(1), Ordering::Release);
        p.flags.store(tail_keep | PG_HEAD, Ordering::Release);
        p.head.store(pfn, Ordering::Release);
        if maps[i] == 0 {
            p.mapcount.store(0, Ordering::Release);
            drop(Folio::from_counted(pfn));
        }
    }
    head.inner.lock().order = 0;
    head.mapcount.store(maps[0], Ordering::Release);
    // Unfreeze last: lookups of the head page see an order-0 folio.
    head.refcount.store(maps[0] + 1, Ordering::Release);
    Ok(())
}

/// Locks every pte table that maps a page of `folio`, in table-address
/// order (so two splitters cannot deadlock), and checks, with the locks
/// held, that no pte of the folio sits in a table outside the set. None:
/// the folio's mappings changed while the set was being gathered.
fn lock_mapping_tables(folio: &Folio) -> Option<Vec<PteTable>> {
    let mut tables: Vec<(u64, Arc<MmStruct>, usize)> = rmap_walk(folio)
        .into_iter()
        .filter_map(|h| h.mm.pgtables.table_of(h.addr).map(|t| (t, h.mm.clone(), h.addr)))
        .collect();
    tables.sort_by_key(|t| t.0);
    tables.dedup_by_key(|t| t.0);
    let mut locked = Vec::new();
    for (_, mm, addr) in &tables {
        locked.push(mm.pgtables.lock(*addr, false).ok()??);
    }
    let covered = rmap_walk(folio)
        .iter()
        .all(|h| h.mm.pgtables.table_of(h.addr).is_some_and(|t| tables.iter().any(|x| x.0 == t)));
    covered.then_some(locked)
}
