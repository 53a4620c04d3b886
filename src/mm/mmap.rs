//! The address-space system calls: mmap, munmap, mprotect, madvise, mlock.
//! Arguments come from EL0 and are checked like Linux checks them; every
//! failure is an errno, never a panic.

use super::fault::{handle_mm_fault, set_pte_at_gathered};
use super::filemap::{self, File};
use super::mm_types::*;
use super::pte::{pfn_pte, pte_mkspecial, pte_modify, pte_present};
use super::vmscan::ReclaimStats;
use super::zap::zap_page_range;
use crate::arch::pgtable_hwdef::{page_align, page_aligned, PAGE_MASK, PAGE_SIZE};
use crate::errno::*;
use alloc::sync::Arc;
use alloc::vec::Vec;

pub const PROT_READ: u64 = 0x1;
pub const PROT_WRITE: u64 = 0x2;
pub const PROT_EXEC: u64 = 0x4;
/// arm64 PROT_MTE.
pub const PROT_MTE: u64 = 0x20;
pub const MAP_SHARED: u64 = 0x01;
pub const MAP_PRIVATE: u64 = 0x02;
pub const MAP_FIXED: u64 = 0x10;
pub const MAP_ANONYMOUS: u64 = 0x20;
pub const PROT_SEM: u64 = 0x8;
/// arm64 PROT_BTI (guarded pages: PTE_GP).
pub const PROT_BTI: u64 = 0x10;
pub const PROT_GROWSDOWN: u64 = 0x0100_0000;
pub const PROT_GROWSUP: u64 = 0x0200_0000;
pub const MAP_SHARED_VALIDATE: u64 = 0x03;
pub const MAP_TYPE: u64 = 0x0f;
pub const MAP_DENYWRITE: u64 = 0x0800;
pub const MAP_EXECUTABLE: u64 = 0x1000;
pub const MAP_LOCKED: u64 = 0x2000;
pub const MAP_NORESERVE: u64 = 0x4000;
pub const MAP_POPULATE: u64 = 0x8000;
pub const MAP_STACK: u64 = 0x20000;
pub const MAP_FIXED_NOREPLACE: u64 = 0x100000;
pub const MADV_NORMAL: u64 = 0;
pub const MADV_RANDOM: u64 = 1;
pub const MADV_SEQUENTIAL: u64 = 2;
pub const MADV_WILLNEED: u64 = 3;
pub const MADV_DONTNEED: u64 = 4;
pub const MADV_FREE: u64 = 8;
pub const MADV_REMOVE: u64 = 9;
pub const MADV_DONTFORK: u64 = 10;
pub const MADV_DOFORK: u64 = 11;
pub const MADV_HUGEPAGE: u64 = 14;
pub const MADV_NOHUGEPAGE: u64 = 15;
pub const MADV_DONTDUMP: u64 = 16;
pub const MADV_DODUMP: u64 = 17;
pub const MADV_WIPEONFORK: u64 = 18;
pub const MADV_KEEPONFORK: u64 = 19;
pub const MADV_COLD: u64 = 20;
pub const MADV_PAGEOUT: u64 = 21;
pub const MADV_POPULATE_READ: u64 = 22;
pub const MADV_POPULATE_WRITE: u64 = 23;
pub const MADV_DONTNEED_LOCKED: u64 = 24;
pub const MADV_COLLAPSE: u64 = 25;

/// Where mmap looks for free space when not told.
pub const MMAP_BASE: usize = 0x10_0000_0000;

/// untagged_addr: arm64 sign-extends from bit 55, so a user pointer loses
/// its tag byte. The address-space calls (munmap, mprotect, madvise, mlock,
/// munlock) accept tagged pointers whatever the thread's tagged-address
/// ABI; mmap, brk and the userfaultfd ranges do not (tagged-address-abi.rst).
pub fn untagged_addr(addr: u64) -> u64 {
    (((addr << 8) as i64) >> 8) as u64
}

/// The page-rounded end of `[addr, addr + len)` inside the user half.
fn range(addr: u64, len: u64) -> Result<(usize, usize), Errno> {
    if !page_aligned(addr) {
        return Err(EINVAL);
    }
    if len == 0 {
        return Err(EINVAL);
    }
    let len = page_align(len).ok_or(EINVAL)?;
    let end = addr.checked_add(len).ok_or(EINVAL)?;
    if end > TASK_SIZE as u64 {
        return Err(EINVAL);
    }
    Ok((addr as usize, end as usize))
}

/// arch_validate_prot (arm64): the prot bits mprotect accepts.
fn arch_validate_prot(prot: u64) -> Result<(), Errno> {
    if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_BTI | PROT_MTE) != 0 {
        return Err(EINVAL);
    }
    Ok(())
}

/// calc_vm_prot_bits: the VMA flags of `prot` (other bits are ignored, as
/// Linux's mmap ignores them; PROT_SEM means nothing on arm64).
fn prot_flags(prot: u64) -> u64 {
    let mut f = 0;
    if prot & PROT_READ != 0 {
        f |= VM_READ;
    }
    if prot & PROT_WRITE != 0 {
        f |= VM_WRITE | VM_READ; // arm64 cannot map write-only
    }
    if prot & PROT_EXEC != 0 {
        f |= VM_EXEC;
    }
    if prot & PROT_MTE != 0 {
        f |= VM_MTE;
    }
    if prot & PROT_BTI != 0 {
        f |= VM_ARM64_BTI;
    }
    f
}

/// Makes VMA boundaries at `start` and `end` (splitting the VMAs across them).
pub fn split_range(mm: &Arc<MmStruct>, map: &mut MmMap, start: usize, end: usize) {
    split_at(mm, map, start);
    split_at(mm, map, end);
}

fn split_at(mm: &Arc<MmStruct>, map: &mut MmMap, at: usize) {
    let Some(v) = map.find(at).filter(|v| v.start < at).cloned() else {
        return;
    };
    mm.vma_unlink(map, v.start);
    mm.vma_link(map, v.split(v.start, at));
    mm.vma_link(map, v.split(at, v.end));
}

/// is_mergeable_vma and its anon_vma check: `a` ends where `b` starts and
/// one VMA could stand for both (same flags, file, userfaultfd context and
/// anon_vma, and the page offsets run on).
fn can_merge(a: &Vma, b: &Vma) -> bool {
    let same_file = match (&a.file, &b.file) {
        (None, None) => true,
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        _ => false,
    };
    let same_uffd = match (&a.uffd, &b.uffd) {
        (None, None) => true,
        (Some(x), Some(y)) => Arc::ptr_eq(x, y),
        _ => false,
    };
    let same_anon = Arc::ptr_eq(&a.anon_vma, &b.anon_vma) || (a.anon_vma().is_none() && b.anon_vma().is_none());
    a.end == b.start
        && a.flags == b.flags
        && a.flags & VM_SPECIAL == 0
        && same_file
        && same_uffd
        && same_anon
        && a.pgoff_of(a.end) == b.pgoff
}

/// vma_merge after a change over `[start, end)`: joins each VMA there with
/// a neighbour it can merge with, as Linux's vma_modify does, so a change
/// undone leaves one VMA again (UFFDIO_MOVE and the mfill ioctls want
/// their range in one VMA).
pub fn merge_range(mm: &Arc<MmStruct>, map: &mut MmMap, start: usize, end: usize) {
    let lo = start.saturating_sub(1);
    let mut at = map.vmas.range(..=lo).next_back().map_or(start, |(s, _)| *s);
    loop {
        let Some(a) = map.vmas.range(at..).next().map(|(_, v)| v.clone()) else { return };
        if a.start > end {
            return;
        }
        let next = map.vmas.range(a.end..).next().map(|(_, v)| v.clone());
        match next {
            Some(b) if can_merge(&a, &b) => {
                mm.vma_unlink(map, a.start);
                mm.vma_unlink(map, b.start);
                let mut joined = a.split(a.start, b.end);
                if a.anon_vma().is_none() {
                    joined.anon_vma = b.anon_vma.clone();
                }
                mm.vma_link(map, joined);
                at = a.start; // it may merge with the next one too
            }
            Some(b) => at = b.start,
            None => return,
        }
    }
}

/// A free range of `len` bytes at or after `hint`.
fn get_unmapped_area(map: &MmMap, hint: usize, len: usize) -> Result<usize, Errno> {
    let mut at = if hint == 0 { MMAP_BASE } else { hint };
    for v in map.vmas.values() {
        if v.end <= at {
            continue;
        }
        if v.start >= at + len {
            break;
        }
        at = v.end;
    }
    if at.checked_add(len).is_none_or(|e| e > TASK_SIZE) {
        return Err(ENOMEM);
    }
    Ok(at)
}

/// __mm_populate: faults in every page of `[start, end)` (MAP_POPULATE,
/// mlock, MADV_POPULATE_*), writing if `write` (else as the VMA allows a
/// private write). EFAULT where a page cannot be faulted in (past the end
/// of a file, not mapped), ENOMEM when memory runs out.
fn populate(mm: &Arc<MmStruct>, start: usize, end: usize, write: Option<bool>) -> Result<(), Errno> {
    let map = mm.mmap_lock.read();
    for addr in (start..end).step_by(PAGE_SIZE) {
        let vma = map.find(addr).ok_or(EFAULT)?;
        if vma.flags & VM_ACCESS_FLAGS == 0 {
            continue;
        }
        let w = write.unwrap_or(vma.flags & VM_WRITE != 0 && vma.flags & VM_SHARED == 0);
        if w && vma.flags & VM_WRITE == 0 {
            return Err(EFAULT);
        }
        match handle_mm_fault(mm, &map, vma, addr, w) {
            Ok(()) => {}
            Err(super::fault::FaultError::Oom) => return Err(ENOMEM),
            Err(_) => return Err(EFAULT),
        }
    }
    Ok(())
}

/// mmap, with Linux's checks in Linux's order (arm64's sys_mmap, then
/// ksys_mmap_pgoff, do_mmap and __get_unmapped_area): a misaligned offset,
/// then the descriptor, then the length, the address range, MAP_TYPE.
/// Unknown prot bits are ignored as Linux ignores them. Flags this kernel
/// does not implement are refused with EINVAL (Linux ignores unknown bits;
/// a deliberate difference, so a test never relies on a flag silently
/// doing nothing).
pub fn do_mmap(
    mm: &Arc<MmStruct>,
    addr: u64,
    len: u64,
    prot: u64,
    flags: u64,
    fd: i64,
    off: u64,
) -> Result<usize, Errno> {
    if !page_aligned(off) {
        return Err(EINVAL);
    }
    let file: Option<Arc<File>> =
        if flags & MAP_ANONYMOUS != 0 { None } else { Some(filemap::lookup(fd as u32 as i64).ok_or(EBADF)?) };
    if len == 0 {
        return Err(EINVAL);
    }
    let rounded = page_align(len).ok_or(ENOMEM)?;
    let pages = rounded / PAGE_SIZE as u64;
    if file.is_some() && (off / PAGE_SIZE as u64).checked_add(pages).is_none() {
        return Err(EOVERFLOW);
    }
    if rounded as usize > TASK_SIZE {
        return Err(ENOMEM);
    }
    let fixed = flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0;
    if fixed {
        if addr.checked_add(rounded).is_none_or(|e| e > TASK_SIZE as u64) {
            return Err(ENOMEM); // a tagged address too
        }
        if !page_aligned(addr) {
            return Err(EINVAL);
        }
    }
    let shared = match flags & MAP_TYPE {
        MAP_SHARED => true,
        MAP_PRIVATE => false,
        MAP_SHARED_VALIDATE => return Err(EOPNOTSUPP), // nothing here validates extra flags
        _ => return Err(EINVAL),
    };
    let known = MAP_TYPE
        | MAP_FIXED
        | MAP_ANONYMOUS
        | MAP_DENYWRITE
        | MAP_EXECUTABLE
        | MAP_LOCKED
        | MAP_NORESERVE
        | MAP_POPULATE
        | MAP_STACK
        | MAP_FIXED_NOREPLACE;
    if flags & !known != 0 {
        return Err(EINVAL);
    }
    let mut vm_flags = prot_flags(prot);
    match &file {
        None if shared => return Err(EINVAL), // shared anonymous memory (shmem) is not supported
        Some(_) if vm_flags & VM_MTE != 0 => return Err(EINVAL), // arch_validate_flags: PROT_MTE only on anon here
        _ => {}
    }
    if shared {
        vm_flags |= VM_SHARED;
    }
    if flags & MAP_LOCKED != 0 {
        vm_flags |= VM_LOCKED;
    }
    if flags & MAP_STACK != 0 {
        vm_flags |= VM_NOHUGEPAGE; // as Linux since 6.7
    }
    let start = {
        let mut map = mm.mmap_lock.write();
        let (a, end) = (addr as usize, addr as usize + rounded as usize);
        let start = if flags & MAP_FIXED_NOREPLACE != 0 {
            if map.overlapping(a, end).next().is_some() {
                return Err(EEXIST);
            }
            a
        } else if fixed {
            unmap_locked(mm, &mut map, a, end);
            a
        } else {
            // An unusable hint (past TASK_SIZE, tagged) is ignored.
            let hint = a & PAGE_MASK;
            let hint = if hint.checked_add(rounded as usize).is_none_or(|e| e > TASK_SIZE) { 0 } else { hint };
            get_unmapped_area(&map, hint, rounded as usize)?
        };
        let pgoff = match &file {
            Some(_) => off / PAGE_SIZE as u64,
            None => (start / PAGE_SIZE) as u64,
        };
        let vma = Vma::new(start, start + rounded as usize, vm_flags, pgoff, file);
        super::khugepaged::khugepaged_enter_vma(mm, &vma);
        mm.vma_link(&mut map, vma);
        start
    };
    if flags & (MAP_POPULATE | MAP_LOCKED) != 0 {
        // As Linux's mm_populate: population is best effort and its failure
        // is not mmap's (the mapping stands; a later access faults as usual).
        let _ = populate(mm, start, start + rounded as usize, None);
    }
    Ok(start)
}

fn unmap_locked(mm: &Arc<MmStruct>, map: &mut MmMap, start: usize, end: usize) {
    split_at(mm, map, start);
    split_at(mm, map, end);
    let inside: Vec<usize> = map.overlapping(start, end).map(|v| v.start).collect();
    for s in inside {
        let e = map.vmas[&s].end;
        zap_page_range(mm, s, e);
        mm.vma_unlink(map, s);
    }
}

pub fn do_munmap(mm: &Arc<MmStruct>, addr: u64, len: u64) -> Result<(), Errno> {
    let (start, end) = range(untagged_addr(addr), len)?;
    let mut map = mm.mmap_lock.write();
    let ctxs = uffd_ctxs(&map, start, end);
    unmap_locked(mm, &mut map, start, end);
    drop(map);
    send_uffd_events(
        ctxs,
        super::userfaultfd::UFFD_FEATURE_EVENT_UNMAP,
        super::userfaultfd::UFFD_EVENT_UNMAP,
        start,
        end,
    );
    Ok(())
}

fn send_uffd_events(ctxs: Vec<Arc<super::userfaultfd::Uffd>>, feature: u64, kind: u8, start: usize, end: usize) {
    for c in ctxs {
        c.event(feature, kind, start as u64, end as u64);
    }
}

/// The userfaultfd contexts registered in `[start, end)` (for the
/// non-cooperative remove and unmap events).
fn uffd_ctxs(map: &MmMap, start: usize, end: usize) -> Vec<Arc<super::userfaultfd::Uffd>> {
    let mut v: Vec<Arc<super::userfaultfd::Uffd>> = Vec::new();
    for c in map.overlapping(start, end).filter_map(|x| x.uffd.clone()) {
        if !v.iter().any(|x| Arc::ptr_eq(x, &c)) {
            v.push(c);
        }
    }
    v
}

/// mprotect in Linux's order (do_mprotect_pkey): a misaligned start is
/// EINVAL, length 0 is success, a wrapping end ENOMEM, unknown prot bits
/// EINVAL; then VMA by VMA from start: no VMA at start, or a hole before
/// the end, is ENOMEM after the VMAs before it were changed, as in Linux.
pub fn do_mprotect(mm: &Arc<MmStruct>, addr: u64, len: u64, prot: u64) -> Result<(), Errno> {
    let start = untagged_addr(addr);
    let grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
    if grows == PROT_GROWSDOWN | PROT_GROWSUP {
        return Err(EINVAL);
    }
    let prot = prot & !grows;
    if !page_aligned(start) {
        return Err(EINVAL);
    }
    if len == 0 {
        return Ok(());
    }
    let len = page_align(len).unwrap_or(0);
    let end = start.wrapping_add(len);
    if end <= start {
        return Err(ENOMEM);
    }
    arch_validate_prot(prot)?;
    let new = prot_flags(prot);
    let (start, end) = (start as usize, end as usize);
    let mut map = mm.mmap_lock.write();
    if map.find(start).is_none() {
        return Err(ENOMEM);
    }
    if grows != 0 {
        return Err(EINVAL); // no VM_GROWSDOWN/UP VMAs here
    }
    let mut at = start;
    while at < end {
        let Some(v) = map.find(at).cloned() else { return Err(ENOMEM) };
        let flags = (v.flags & !VM_ACCESS_FLAGS & !VM_ARM64_BTI) | new;
        // arch_validate_flags: VM_MTE only where it is allowed (anon).
        if v.flags & VM_SPECIAL != 0 || (flags & VM_MTE != 0 && !v.is_anon()) {
            return Err(EINVAL);
        }
        let stop = v.end.min(end);
        if flags == v.flags {
            at = stop; // mprotect_fixup: nothing to change, nothing to split
            continue;
        }
        split_at(mm, &mut map, at);
        split_at(mm, &mut map, stop);
        let vma = map.vmas.get_mut(&at).expect("VMA split at its start");
        // VM_MTE is sticky: arm64 Linux lets mprotect add PROT_MTE but never
        // clear it (Documentation/arch/arm64/memory-tagging-extension.rst).
        vma.flags = flags;
        let prot = vma.page_prot();
        change_protection(mm, at, stop, prot);
        merge_range(mm, &mut map, at, stop);
        at = stop;
    }
    Ok(())
}

/// Rewrites every present pte of `[start, end)` with `prot`.
/// change_protection under the mmap write lock (no fault can run meanwhile):
/// permission changes are written in place and the range is invalidated
/// once at the end, as Linux's change_pte_range and flush_tlb_range do.
fn change_protection(mm: &MmStruct, start: usize, end: usize, prot: super::pte::pgprot_t) {
    super::huge_memory::change_huge_pmds(mm, start, end, prot);
    let mut tlb = super::mmu_gather::MmuGather::new(mm.asid);
    mm.pgtables.for_each_locked_table(start, end, |pt, lo, hi| {
        for addr in (lo..hi).step_by(PAGE_SIZE) {
            let pte = pt.get(addr);
            if pte_present(pte) {
                set_pte_at_gathered(mm, pt, addr, pte_modify(pte, prot), &mut tlb);
            }
        }
    });
    tlb.flush();
}

/// madvise in Linux's order (do_madvise): an unknown advice is EINVAL
/// (the advice is an int), then a misaligned start, an overflowing length
/// and a wrapping end are EINVAL, length 0 is success; then VMA by VMA
/// (madvise_walk_vmas): the advice applies to every mapped part, and a
/// hole in the range makes the call ENOMEM after it has.
///
/// Returns what reclaim did when the advice is MADV_PAGEOUT (all zero for
/// any other advice): the system call drops it, a test reads it.
pub fn do_madvise(mm: &Arc<MmStruct>, addr: u64, len: u64, advice: u64) -> Result<ReclaimStats, Errno> {
    let advice = advice as u32 as u64;
    const VALID: [u64; 21] = [
        MADV_NORMAL,
        MADV_RANDOM,
        MADV_SEQUENTIAL,
        MADV_WILLNEED,
        MADV_DONTNEED,
        MADV_FREE,
        MADV_REMOVE,
        MADV_DONTFORK,
        MADV_DOFORK,
        MADV_HUGEPAGE,
        MADV_NOHUGEPAGE,
        MADV_DONTDUMP,
        MADV_DODUMP,
        MADV_WIPEONFORK,
        MADV_KEEPONFORK,
        MADV_COLD,
        MADV_PAGEOUT,
        MADV_POPULATE_READ,
        MADV_POPULATE_WRITE,
        MADV_DONTNEED_LOCKED,
        MADV_COLLAPSE,
    ];
    if !VALID.contains(&advice) {
        return Err(EINVAL);
    }
    let start = untagged_addr(addr);
    if !page_aligned(start) {
        return Err(EINVAL);
    }
    let rounded = page_align(len).unwrap_or(0);
    if len != 0 && rounded == 0 {
        return Err(EINVAL);
    }
    let end = start.wrapping_add(rounded);
    if end < start {
        return Err(EINVAL);
    }
    let mut reclaim = ReclaimStats::default();
    if end == start {
        return Ok(reclaim);
    }
    let (start, end) = (start as usize, end as usize);
    // The mapped parts of [start, end) in order, and whether any of the
    // range is unmapped.
    let (parts, hole) = {
        let map = mm.mmap_lock.read();
        let parts: Vec<(usize, usize)> =
            map.overlapping(start, end).map(|v| (v.start.max(start), v.end.min(end))).collect();
        (parts, !map.fully_mapped(start, end))
    };
    for (s, e) in parts {
        madvise_vma(mm, s, e, advice, &mut reclaim)?;
    }
    if hole {
        return Err(ENOMEM);
    }
    Ok(reclaim)
}

/// One advice over `[start, end)` inside one VMA.
fn madvise_vma(
    mm: &Arc<MmStruct>,
    start: usize,
    end: usize,
    advice: u64,
    reclaim: &mut ReclaimStats,
) -> Result<(), Errno> {
    let v = mm.mmap_lock.read().find(start).cloned().ok_or(ENOMEM)?;
    if v.flags & VM_SPECIAL != 0 {
        return Err(EINVAL); // the EL0 agent's code
    }
    let set = |on: u64, off: u64| change_vma_flags(mm, start, end, |f| (f & !off) | on);
    match advice {
        MADV_NORMAL => set(0, VM_RAND_READ | VM_SEQ_READ),
        MADV_RANDOM => set(VM_RAND_READ, VM_SEQ_READ),
        MADV_SEQUENTIAL => set(VM_SEQ_READ, VM_RAND_READ),
        MADV_DONTFORK => set(VM_DONTCOPY, 0),
        MADV_DOFORK => set(0, VM_DONTCOPY),
        MADV_DONTDUMP => set(VM_DONTDUMP, 0),
        MADV_DODUMP => set(0, VM_DONTDUMP),
        MADV_WIPEONFORK if v.file.is_some() || v.flags & VM_SHARED != 0 => Err(EINVAL),
        MADV_WIPEONFORK => set(VM_WIPEONFORK, 0),
        MADV_KEEPONFORK => set(0, VM_WIPEONFORK),
        MADV_HUGEPAGE => {
            set(VM_HUGEPAGE, VM_NOHUGEPAGE)?;
            let vma = mm.mmap_lock.read().find(start).cloned();
            if let Some(vma) = vma {
                super::khugepaged::khugepaged_enter_vma(mm, &vma);
            }
            Ok(())
        }
        MADV_COLLAPSE => super::khugepaged::madvise_collapse(mm, start, end),
        MADV_NOHUGEPAGE => set(VM_NOHUGEPAGE, VM_HUGEPAGE),
        MADV_COLD if v.flags & VM_LOCKED != 0 => Err(EINVAL),
        MADV_COLD => {
            madvise_cold(mm, start, end);
            Ok(())
        }
        MADV_WILLNEED => {
            willneed(mm, start, end);
            Ok(())
        }
        // EFAULT where a page cannot be populated, ENOMEM out of memory.
        MADV_POPULATE_READ => populate(mm, start, end, Some(false)),
        MADV_POPULATE_WRITE => populate(mm, start, end, Some(true)),
        MADV_REMOVE if v.flags & VM_LOCKED != 0 || v.file.is_none() => Err(EINVAL),
        MADV_REMOVE if v.flags & VM_SHARED == 0 || v.flags & VM_WRITE == 0 => Err(EACCES),
        MADV_REMOVE => Err(EOPNOTSUPP), // the file has no hole punching (fallocate) here
        MADV_PAGEOUT if v.flags & VM_LOCKED != 0 => Err(EINVAL),
        MADV_PAGEOUT => {
            reclaim.add(&super::vmscan::reclaim_range(mm, start, end));
            Ok(())
        }
        MADV_FREE if v.file.is_some() || v.flags & VM_SHARED != 0 => Err(EINVAL),
        MADV_DONTNEED | MADV_FREE if v.flags & VM_LOCKED != 0 => Err(EINVAL),
        MADV_FREE => {
            madvise_free(mm, start, end);
            Ok(())
        }
        MADV_DONTNEED | MADV_DONTNEED_LOCKED => {
            let ctxs = {
                let map = mm.mmap_lock.read();
                uffd_ctxs(&map, start, end)
            };
            send_uffd_events(
                ctxs,
                super::userfaultfd::UFFD_FEATURE_EVENT_REMOVE,
                super::userfaultfd::UFFD_EVENT_REMOVE,
                start,
                end,
            );
            zap_page_range(mm, start, end);
            Ok(())
        }
        _ => Err(EINVAL),
    }
}

/// MADV_COLD: the ptes (and the huge PMDs covered whole) of the range are
/// made old, so the pages count as unreferenced (khugepaged's "referenced"
/// rule sees it); a huge PMD covered in part is split first, as Linux's
/// madvise_cold_or_pageout_pte_range does. There is no LRU to deactivate.
fn madvise_cold(mm: &Arc<MmStruct>, start: usize, end: usize) {
    use super::pte::{pmd_pte, pte_mkold, pte_pmd, pte_present, pte_young};
    super::huge_memory::change_whole_huge_pmds(mm, start, end, |_, pmd| pte_pmd(pte_mkold(pmd_pte(pmd))));
    mm.pgtables.for_each_locked_table(start, end, |pt, lo, hi| {
        for addr in (lo..hi).step_by(PAGE_SIZE) {
            let pte = pt.get(addr);
            if pte_present(pte) && pte_young(pte) {
                pt.set(addr, pte_mkold(pte), mm.asid);
            }
        }
    });
}

/// MADV_WILLNEED on anonymous memory: swap-in read-ahead, every swapped-out
/// page of the range read into the swap cache (not mapped).
fn willneed(mm: &Arc<MmStruct>, start: usize, end: usize) {
    let mut entries = Vec::new();
    mm.pgtables.for_each_pte(start, end, |_, pte| {
        if super::pte::is_swap_pte(pte) && !super::pte::non_swap_entry(super::pte::pte_to_swp_entry(pte)) {
            entries.push(super::pte::pte_to_swp_entry(pte));
        }
    });
    for e in entries {
        if super::swapfile::get_swap_device(e).is_some() {
            let _ = super::swap::swapin_folio(e);
        }
    }
}

/// MADV_FREE: swapped-out pages of the range are dropped (their slots and
/// tags freed, the ptes cleared), as Linux's madvise_free_pte_range does.
/// Present pages stay mapped: Linux would only discard them, clean, under
/// memory pressure, which this kernel does not have (a difference: a later
/// MADV_PAGEOUT swaps them out instead of discarding them).
fn madvise_free(mm: &Arc<MmStruct>, start: usize, end: usize) {
    use super::pte::{is_swap_pte, non_swap_entry, pte_to_swp_entry};
    mm.pgtables.for_each_locked_table(start, end, |pt, lo, hi| {
        for addr in (lo..hi).step_by(PAGE_SIZE) {
            let pte = pt.get(addr);
            if is_swap_pte(pte) && !non_swap_entry(pte_to_swp_entry(pte)) {
                pt.clear(addr, mm.asid);
                super::swap::free_swap_and_cache(pte_to_swp_entry(pte));
                mm.add_rss(MM_SWAPENTS, -1);
            }
        }
    });
}

/// mlock (`on`) or munlock in Linux's order (do_mlock,
/// apply_vma_lock_flags): the length is widened to whole pages, length 0
/// is success, a wrapping end EINVAL; VMA by VMA from start, a hole is
/// ENOMEM after the VMAs before it changed. mlock then populates: a page
/// that cannot be faulted in is ENOMEM, memory running out EAGAIN
/// (__mlock_posix_error_return).
pub fn do_mlock(mm: &Arc<MmStruct>, addr: u64, len: u64, on: bool) -> Result<(), Errno> {
    let addr = untagged_addr(addr);
    let len = page_align(len.wrapping_add(addr % PAGE_SIZE as u64)).unwrap_or(0);
    let start = addr & PAGE_MASK as u64;
    let end = start.wrapping_add(len);
    if end < start {
        return Err(EINVAL);
    }
    if end == start {
        return Ok(());
    }
    let (start, end) = (start as usize, end as usize);
    {
        let mut map = mm.mmap_lock.write();
        if map.find(start).is_none() {
            return Err(ENOMEM);
        }
        let mut at = start;
        while at < end {
            let Some(v) = map.find(at).cloned() else { return Err(ENOMEM) };
            let stop = v.end.min(end);
            split_at(mm, &mut map, at);
            split_at(mm, &mut map, stop);
            let vma = map.vmas.get_mut(&at).expect("VMA split at its start");
            vma.flags = if on { vma.flags | VM_LOCKED } else { vma.flags & !VM_LOCKED };
            at = stop;
        }
    }
    if on {
        populate(mm, start, end, None).map_err(|e| if e == ENOMEM { EAGAIN } else { ENOMEM })?;
    }
    Ok(())
}

/// Rewrites the flags of every VMA in `[start, end)`, splitting at the
/// edges; ENOMEM if part of the range is unmapped.
fn change_vma_flags(mm: &Arc<MmStruct>, start: usize, end: usize, f: impl Fn(u64) -> u64) -> Result<(), Errno> {
    let mut map = mm.mmap_lock.write();
    if !map.fully_mapped(start, end) {
        return Err(ENOMEM);
    }
    if map.overlapping(start, end).all(|v| f(v.flags) == v.flags) {
        return Ok(());
    }
    split_at(mm, &mut map, start);
    split_at(mm, &mut map, end);
    let inside: Vec<usize> = map.overlapping(start, end).map(|v| v.start).collect();
    for s in inside {
        let v = map.vmas.get_mut(&s).expect("VMA vanished under the mmap lock");
        v.flags = f(v.flags);
    }
    merge_range(mm, &mut map, start, end);
    Ok(())
}

/// Maps `pfns` (kernel frames, not folios) read-only and executable at
/// `addr` with special ptes: the EL0 agent's code.
pub fn map_special(mm: &Arc<MmStruct>, addr: usize, pfns: &[u64]) -> Result<(), Errno> {
    let end = addr + pfns.len() * PAGE_SIZE;
    let mut map = mm.mmap_lock.write();
    if map.overlapping(addr, end).next().is_some() {
        return Err(EEXIST);
    }
    let vma = Vma::new(addr, end, VM_READ | VM_EXEC | VM_SPECIAL, 0, None);
    let prot = vma.page_prot();
    // The agent's code is untagged Normal memory.
    let prot = super::pte::pgprot_t(
        (prot.0 & !super::pte::PTE_ATTRINDX_MASK) | (super::pte::MT_NORMAL << super::pte::PTE_ATTRINDX_SHIFT),
    );
    mm.vma_link(&mut map, vma);
    for (i, &pfn) in pfns.iter().enumerate() {
        let a = addr + i * PAGE_SIZE;
        let pt = mm.pgtables.lock(a, true).map_err(|_| ENOMEM)?.ok_or(ENOMEM)?;
        pt.set(a, pte_mkspecial(pfn_pte(pfn, prot)), mm.asid);
    }
    Ok(())
}
