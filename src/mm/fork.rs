//! fork: dup_mmap copies the VMAs, copy_page_range the ptes. Private
//! anonymous pages become shared copy-on-write: write-protected in both,
//! one more reference and mapping each, no longer AnonExclusive. A pinned
//! exclusive page is copied at once instead (its pin must keep seeing the
//! parent's page).

use super::fault::set_pte_at;
use super::folio::{Folio, PG_ANON_EXCLUSIVE};
use super::mm_types::*;
use super::pte::*;
use super::rmap::{folio_add_new_anon_rmap, folio_add_rmap_pte};
use crate::errno::{Errno, ENOMEM};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use spin::Once;

pub fn dup_mmap(parent: &Arc<MmStruct>) -> Result<Arc<MmStruct>, Errno> {
    let child = MmStruct::new().ok_or(ENOMEM)?;
    let pmap = parent.mmap_lock.write();
    let mut cmap = child.mmap_lock.write();
    let vmas: Vec<Vma> = pmap.vmas.values().cloned().collect();
    let mut result = Ok(());
    let mut forked_ctxs = Vec::new();
    // The parent's write-protections are invalidated once, at the end,
    // under its mmap write lock (Linux's flush_tlb_mm in dup_mmap).
    let mut tlb = super::mmu_gather::MmuGather::new(parent.asid);
    for v in vmas {
        if v.flags & VM_DONTCOPY != 0 {
            continue; // MADV_DONTFORK: the child has nothing there
        }
        // A new VMA id over the same range. The child's anonymous pages stay
        // in the parent's anon_vma (see rmap); it inherits no userfaultfd.
        let mut c = v.split(v.start, v.end);
        if let Some(ctx) = c.uffd.take() {
            if !forked_ctxs.iter().any(|x: &Arc<super::userfaultfd::Uffd>| Arc::ptr_eq(x, &ctx)) {
                forked_ctxs.push(ctx);
            }
            c.flags &= !(VM_UFFD_MISSING | VM_UFFD_WP);
        }
        c.anon_vma = match v.anon_vma() {
            // MADV_WIPEONFORK: the child's VMA starts empty, with its own anon_vma.
            _ if v.flags & VM_WIPEONFORK != 0 => Arc::new(Once::new()),
            Some(av) => {
                let cell = Once::new();
                cell.call_once(|| av.clone());
                Arc::new(cell)
            }
            None => Arc::new(Once::new()),
        };
        child.vma_link(&mut cmap, c.clone());
        // vma_needs_copy: an anonymous VMA without an anon_vma maps nothing
        // but the zero page, which the child may as well refault; Linux
        // copies no ptes then (a difference scripts/vs-linux.py found).
        let needs_copy = !v.is_anon() || v.anon_vma().is_some();
        if result.is_ok() && v.flags & VM_WIPEONFORK == 0 && needs_copy {
            result = copy_page_range(parent, &child, &v, &c, &mut tlb);
        }
    }
    tlb.flush();
    drop(cmap);
    drop(pmap);
    for ctx in forked_ctxs {
        use super::userfaultfd::{UFFD_EVENT_FORK, UFFD_FEATURE_EVENT_FORK};
        ctx.event(UFFD_FEATURE_EVENT_FORK, UFFD_EVENT_FORK, child.id, 0);
    }
    match result {
        Ok(()) => {
            if parent.khugepaged.load(core::sync::atomic::Ordering::Acquire) {
                super::khugepaged::__khugepaged_enter(&child); // khugepaged_fork
            }
            Ok(child)
        }
        Err(e) => {
            super::zap::exit_mmap(&child);
            Err(e)
        }
    }
}

fn copy_page_range(
    src_mm: &Arc<MmStruct>,
    dst_mm: &Arc<MmStruct>,
    vma: &Vma,
    dst_vma: &Vma,
    tlb: &mut super::mmu_gather::MmuGather,
) -> Result<(), Errno> {
    // Only the source's existing ptes are visited (a never-touched VMA
    // costs nothing, as in Linux's copy_pte_range).
    let mut huge: Vec<usize> = Vec::new();
    src_mm.pgtables.for_each_huge_pmd(vma.start, vma.end, |a, _| huge.push(a));
    let mut copied: Vec<usize> = Vec::new();
    if !huge.is_empty() {
        crate::testhooks::schedpoint::sched_point(&crate::testhooks::points::COPY_HUGE_PMD_BEFORE_LOCK);
    }
    for a in huge {
        // A VMA holds whole huge PMDs (a partial munmap or mprotect split them).
        if super::huge_memory::copy_huge_pmd(src_mm, dst_mm, a)? {
            copied.push(a);
        }
    }
    let mut used: Vec<usize> = Vec::new();
    src_mm.pgtables.for_each_pte(vma.start, vma.end, |addr, _| used.push(addr));
    for addr in used {
        if copied.contains(&(addr & crate::arch::mmu::PMD_MASK)) {
            continue;
        }
        copy_one_pte(src_mm, dst_mm, vma, dst_vma, addr, tlb)?;
    }
    Ok(())
}

/// copy_present_pte / copy_nonpresent_pte for the pte at `addr`, read
/// again under the source's pte lock.
fn copy_one_pte(
    src_mm: &Arc<MmStruct>,
    dst_mm: &Arc<MmStruct>,
    vma: &Vma,
    dst_vma: &Vma,
    addr: usize,
    tlb: &mut super::mmu_gather::MmuGather,
) -> Result<(), Errno> {
    let cow = vma.flags & VM_SHARED == 0;
    let Ok(Some(src_pt)) = src_mm.pgtables.lock(addr, false) else {
        return Ok(());
    };
    let pte = src_pt.get(addr);
    if pte_none(pte) {
        return Ok(());
    }
    let dst_pt = dst_mm.pgtables.lock(addr, true).map_err(|_| ENOMEM)?.ok_or(ENOMEM)?;
    if !pte_present(pte) {
        // copy_nonpresent_pte: markers are copied as they are; a swap
        // entry gains a reference and stops being exclusive in both.
        let mut copy = pte;
        let entry = pte_to_swp_entry(pte);
        if !non_swap_entry(entry) {
            super::swapfile::swap_duplicate(entry)?;
            if pte_swp_exclusive(pte) {
                copy = pte_swp_clear_exclusive(pte);
                src_pt.set(addr, copy, src_mm.asid);
            }
            dst_mm.add_rss(MM_SWAPENTS, 1);
        }
        dst_pt.set(addr, copy, dst_mm.asid);
        return Ok(());
    }
    if pte_special(pte) {
        dst_pt.set(addr, pte, dst_mm.asid);
        return Ok(());
    }
    let folio = Folio::get(pte_pfn(pte));
    if folio.is_anon() && folio.test(PG_ANON_EXCLUSIVE) && folio.page().pincount.load(Ordering::Acquire) > 0 {
        // copy_present_page: the child gets its own copy now.
        let new = Folio::alloc(0).ok_or(ENOMEM)?;
        let idx = folio.page_index(pte_pfn(pte));
        super::fault::copy_highpage(&new, &folio, idx);
        let av = dst_vma.anon_vma().expect("an anonymous page in a VMA without anon_vma").clone();
        folio_add_new_anon_rmap(&new, &av, dst_vma.pgoff_of(addr), 1);
        dst_mm.add_rss(MM_ANONPAGES, 1);
        set_pte_at(dst_mm, &dst_pt, addr, pte_mkdirty(pte_mkwrite(pfn_pte(new.pfn(), dst_vma.page_prot()))));
        new.into_counted();
        return Ok(());
    }
    let mut child_pte = pte;
    if cow {
        if pte_write(pte) {
            // A permission change: written in place, invalidated at the end.
            src_pt.set_gathered(addr, pte_wrprotect(pte), src_mm.asid, tlb);
        }
        child_pte = pte_wrprotect(pte);
        folio.clear(PG_ANON_EXCLUSIVE);
    }
    folio_add_rmap_pte(&folio);
    dst_mm.add_rss(if folio.is_anon() { MM_ANONPAGES } else { MM_FILEPAGES }, 1);
    dst_pt.set(addr, child_pte, dst_mm.asid);
    folio.into_counted(); // the child's pte's reference
    Ok(())
}
