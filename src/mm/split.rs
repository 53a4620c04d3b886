//! split_folio: a pte-mapped large anonymous folio becomes order-0 folios,
//! each keeping the anon mapping (at its own index), the flags, and the
//! references and mappings of its own ptes.
//!
//! Like Linux it refuses (EBUSY) a folio with references beyond its
//! mappings and the caller's, a pinned one, or one in the swap cache. It
//! does not freeze the refcount as Linux does: callers hold the folio lock
//! and no lock-free lookup of its pages may run meanwhile (nothing in this
//! kernel looks pages up without a pte lock or the folio lock during a
//! move).

use super::folio::{
    pfn_to_page, Folio, Mapping, PageInner, PG_ANON, PG_ANON_EXCLUSIVE, PG_DIRTY, PG_HEAD, PG_MTE_TAGGED, PG_SWAPCACHE,
    PG_UPTODATE,
};
use super::pte::pte_pfn;
use super::rmap::rmap_walk;
use crate::errno::{Errno, EBUSY};
use alloc::vec;
use core::sync::atomic::Ordering;

/// Splits the locked large `folio` (the caller holds one reference).
pub fn split_folio(folio: &Folio) -> Result<(), Errno> {
    let nr = folio.nr_pages();
    if nr == 1 {
        return Ok(());
    }
    let head = folio.page();
    if folio.test(PG_SWAPCACHE) || head.pincount.load(Ordering::Acquire) > 0 || !folio.is_anon() {
        return Err(EBUSY);
    }
    if folio.refcount() != folio.mapcount() + 1 {
        return Err(EBUSY); // someone else holds a reference
    }
    // Which pages are mapped how often.
    let mut maps = vec![0i32; nr];
    for hit in rmap_walk(folio) {
        let pfn = pte_pfn(hit.mm.pgtables.peek(hit.addr));
        maps[(pfn - folio.pfn()) as usize] += 1;
    }
    let (mapping, index) = {
        let inner = head.inner.lock();
        (inner.mapping.clone(), inner.index)
    };
    let keep =
        head.flags.load(Ordering::Acquire) & (PG_ANON | PG_ANON_EXCLUSIVE | PG_MTE_TAGGED | PG_UPTODATE | PG_DIRTY);
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
        p.refcount.store(maps[i], Ordering::Release);
        p.flags.store(keep | PG_HEAD, Ordering::Release);
        p.head.store(pfn, Ordering::Release);
        if maps[i] == 0 {
            // An unmapped tail page is free once split.
            drop(Folio::from_counted(pfn));
        }
    }
    head.inner.lock().order = 0;
    head.mapcount.store(maps[0], Ordering::Release);
    head.refcount.store(maps[0] + 1, Ordering::Release);
    Ok(())
}
