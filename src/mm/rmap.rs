//! Reverse mapping: from a folio to every pte that maps it.
//!
//! An anonymous folio points to its `anon_vma` and a file folio to its file;
//! both keep the list of VMAs (as mm, range and pgoff) that may map their
//! pages, like Linux's anon_vma interval tree and i_mmap. A walk computes the
//! address from the folio's index and checks the pte there.
//!
//! Simplification: a forked child's VMAs join the parent's anon_vma instead
//! of getting an anon_vma of their own chained to it; every pte is still
//! found, a walk may just visit a VMA that cannot map the folio.

use super::folio::{Folio, Mapping};
use super::mm_types::MmStruct;
use super::pte::{pte_pfn, pte_present, pte_special};
use crate::arch::mmu::PAGE_SIZE;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::RwLock;

/// One VMA as the reverse map sees it.
#[derive(Clone)]
pub struct RmapVma {
    pub mm: Weak<MmStruct>,
    pub vma_id: u64,
    pub start: usize,
    pub end: usize,
    pub pgoff: u64,
}

/// The VMAs that may map some set of folios; its lock is the anon_vma lock
/// (or the file's i_mmap lock).
#[derive(Default)]
pub struct RmapAnchor {
    pub vmas: RwLock<Vec<RmapVma>>,
}

impl RmapAnchor {
    pub fn link(&self, v: RmapVma) {
        self.vmas.write().push(v);
    }

    pub fn unlink(&self, mm: &MmStruct, vma_id: u64) {
        self.vmas.write().retain(|v| !(v.vma_id == vma_id && core::ptr::eq(v.mm.as_ptr(), mm)));
    }
}

static NEXT_ANON_VMA: AtomicU64 = AtomicU64::new(1);

pub struct AnonVma {
    pub id: u64,
    pub anchor: RmapAnchor,
}

impl AnonVma {
    pub fn new() -> Arc<AnonVma> {
        Arc::new(AnonVma { id: NEXT_ANON_VMA.fetch_add(1, Ordering::Relaxed), anchor: RmapAnchor::default() })
    }
}

/// One pte found by a walk.
pub struct RmapHit {
    pub mm: Arc<MmStruct>,
    pub addr: usize,
}

/// Every pte mapping a page of `folio` (rmap_walk).
pub fn rmap_walk(folio: &Folio) -> Vec<RmapHit> {
    let (mapping, index) = {
        let inner = folio.page().inner.lock();
        (inner.mapping.clone(), inner.index)
    };
    let file;
    let anchor = match &mapping {
        Mapping::Anon(a) => &a.anchor,
        Mapping::File(f) => match f.upgrade() {
            Some(f) => {
                file = f;
                &file.i_mmap
            }
            None => return Vec::new(),
        },
        Mapping::None => return Vec::new(),
    };
    let mut hits = Vec::new();
    let nr = folio.nr_pages() as u64;
    for v in anchor.vmas.read().iter() {
        let Some(mm) = v.mm.upgrade() else { continue };
        let pages = ((v.end - v.start) / PAGE_SIZE) as u64;
        for i in 0..nr {
            let idx = index + i;
            if idx < v.pgoff || idx >= v.pgoff + pages {
                continue;
            }
            let addr = v.start + ((idx - v.pgoff) as usize) * PAGE_SIZE;
            let pte = mm.pgtables.peek(addr);
            if pte_present(pte) && !pte_special(pte) && pte_pfn(pte) == folio.pfn() + i {
                hits.push(RmapHit { mm: mm.clone(), addr });
            }
        }
    }
    hits
}

/// folio_add_new_anon_rmap: a fresh anonymous folio mapped by `nr` ptes
/// (1, or every page of a large folio), exclusive.
pub fn folio_add_new_anon_rmap(folio: &Folio, anon_vma: &Arc<AnonVma>, index: u64, nr: i32) {
    {
        let mut inner = folio.page().inner.lock();
        inner.mapping = Mapping::Anon(anon_vma.clone());
        inner.index = index;
    }
    folio.set(super::folio::PG_ANON | super::folio::PG_ANON_EXCLUSIVE);
    folio.page().mapcount.store(nr, Ordering::Release);
}

/// One more pte maps the folio (fork, a file fault).
pub fn folio_add_rmap_pte(folio: &Folio) {
    folio.page().mapcount.fetch_add(1, Ordering::AcqRel);
}

/// One pte less maps the folio.
pub fn folio_remove_rmap_pte(folio: &Folio) {
    let old = folio.page().mapcount.fetch_sub(1, Ordering::AcqRel);
    assert!(old > 0, "mapcount underflow on {folio:?}");
}
