//! TLB invalidation for user address spaces: the flush_tlb_* calls of
//! Linux's asm/tlbflush.h, scoped to the CPUs that ran the mm, and
//! mmu_gather, which batches an operation's invalidations into one and
//! frees what it unmapped only after it.
//!
//! The order that matters: a page taken out of the page tables may still
//! be reachable through another CPU's TLB until the invalidation has
//! completed, so it must not be freed (or reused) before. The known-wrong
//! variant `mmu_gather:free_before_flush` frees first.

use super::folio::Folio;
use crate::arch::mmu::{tlb, PAGE_SIZE};
use crate::testhooks::{points, schedpoint::sched_point, variants};
use alloc::vec::Vec;

/// Folios a gather holds before it flushes to free them (Linux's batch of
/// pages, bounded so a huge unmap never needs a large allocation).
const MAX_GATHER_FOLIOS: usize = 512;

fn scope(asid: u16) -> tlb::Scope {
    match tlb::scope(asid) {
        tlb::Scope::Broadcast if variants::TLB_FLUSH_THIS_CPU_ONLY.is_on() => tlb::Scope::Local,
        s => s,
    }
}

/// flush_tlb_range: `asid`'s translations of `[start, end)`.
pub fn flush_tlb_range(asid: u16, start: usize, end: usize) {
    tlb::flush_range(start, end, asid, scope(asid));
}

/// flush_tlb_page: one page of `asid`.
pub fn flush_tlb_page(asid: u16, addr: usize) {
    flush_tlb_range(asid, addr, addr + PAGE_SIZE);
}

/// One operation's unmapping (tlb_gather_mmu .. tlb_finish_mmu): the range
/// whose ptes were cleared without invalidation, and the folios whose
/// references the cleared ptes held.
pub struct MmuGather {
    asid: u16,
    start: usize,
    end: usize,
    folios: Vec<Folio>,
}

impl MmuGather {
    pub fn new(asid: u16) -> MmuGather {
        MmuGather { asid, start: usize::MAX, end: 0, folios: Vec::new() }
    }

    /// tlb_flush_pte_range: `[addr, addr + size)` needs invalidating.
    pub fn add_range(&mut self, addr: usize, size: usize) {
        self.start = self.start.min(addr);
        self.end = self.end.max(addr + size);
    }

    /// __tlb_remove_folio: `folio`'s reference (the cleared pte's) is put
    /// after the invalidation. A full batch is flushed first.
    pub fn remove_folio(&mut self, folio: Folio) {
        if self.folios.len() >= MAX_GATHER_FOLIOS {
            self.flush();
        }
        if self.folios.capacity() == 0 {
            self.folios.reserve_exact(MAX_GATHER_FOLIOS);
        }
        self.folios.push(folio);
    }

    /// tlb_flush_mmu: invalidates the range, then frees the folios.
    pub fn flush(&mut self) {
        let wrong = variants::MMU_GATHER_FREE_BEFORE_FLUSH.is_on();
        if wrong {
            self.folios.clear();
        }
        if self.start < self.end {
            sched_point(&points::TLB_FLUSH_MMU_BEFORE_FLUSH);
            flush_tlb_range(self.asid, self.start, self.end);
        }
        (self.start, self.end) = (usize::MAX, 0);
        // The references go only now: no CPU can reach the pages any more.
        self.folios.clear();
    }
}

impl Drop for MmuGather {
    /// tlb_finish_mmu.
    fn drop(&mut self) {
        self.flush();
    }
}
