//! The address-space system calls: mmap, munmap, mprotect, madvise, mlock.
//! Arguments come from EL0 and are checked like Linux checks them; every
//! failure is an errno, never a panic.

use super::fault::{handle_mm_fault, set_pte_at};
use super::filemap::{self, File};
use super::mm_types::*;
use super::pte::{pfn_pte, pte_mkspecial, pte_modify, pte_present};
use super::zap::zap_page_range;
use crate::arch::mmu::PAGE_SIZE;
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
pub const MAP_LOCKED: u64 = 0x2000;
pub const MAP_POPULATE: u64 = 0x8000;
pub const MADV_DONTNEED: u64 = 4;
pub const MADV_HUGEPAGE: u64 = 14;
pub const MADV_NOHUGEPAGE: u64 = 15;
pub const MADV_PAGEOUT: u64 = 21;

/// Where mmap looks for free space when not told.
pub const MMAP_BASE: usize = 0x10_0000_0000;

/// untagged_addr: arm64 sign-extends from bit 55, so a user pointer loses
/// its tag byte. The address-space calls (munmap, mprotect, madvise, mlock,
/// munlock) accept tagged pointers whatever the thread's tagged-address
/// ABI; mmap, brk and the userfaultfd ranges do not (tagged-address-abi.rst).
pub fn untagged_addr(addr: u64) -> u64 {
    (((addr << 8) as i64) >> 8) as u64
}

fn page_aligned(x: u64) -> bool {
    x.is_multiple_of(PAGE_SIZE as u64)
}

/// The page-rounded end of `[addr, addr + len)` inside the user half.
fn range(addr: u64, len: u64) -> Result<(usize, usize), Errno> {
    if !page_aligned(addr) {
        return Err(EINVAL);
    }
    if len == 0 {
        return Err(EINVAL);
    }
    let len = len.checked_add(PAGE_SIZE as u64 - 1).ok_or(EINVAL)? & !(PAGE_SIZE as u64 - 1);
    let end = addr.checked_add(len).ok_or(EINVAL)?;
    if end > TASK_SIZE as u64 {
        return Err(EINVAL);
    }
    Ok((addr as usize, end as usize))
}

fn prot_flags(prot: u64) -> Result<u64, Errno> {
    if prot & !(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_MTE) != 0 {
        return Err(EINVAL);
    }
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
    Ok(f)
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

/// Faults in every page of `[start, end)` (MAP_POPULATE, mlock).
fn populate(mm: &Arc<MmStruct>, start: usize, end: usize) -> Result<(), Errno> {
    let map = mm.mmap_lock.read();
    for addr in (start..end).step_by(PAGE_SIZE) {
        let vma = map.find(addr).ok_or(ENOMEM)?;
        let write = vma.flags & VM_WRITE != 0 && vma.flags & VM_SHARED == 0;
        if vma.flags & VM_ACCESS_FLAGS == 0 {
            continue;
        }
        handle_mm_fault(mm, &map, vma, addr, write).map_err(|_| ENOMEM)?;
    }
    Ok(())
}

pub fn do_mmap(
    mm: &Arc<MmStruct>,
    addr: u64,
    len: u64,
    prot: u64,
    flags: u64,
    fd: i64,
    off: u64,
) -> Result<usize, Errno> {
    let known = MAP_SHARED | MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_LOCKED | MAP_POPULATE;
    if flags & !known != 0 {
        return Err(EINVAL);
    }
    let shared = match flags & (MAP_SHARED | MAP_PRIVATE) {
        MAP_SHARED => true,
        MAP_PRIVATE => false,
        _ => return Err(EINVAL),
    };
    let mut vm_flags = prot_flags(prot)?;
    if len == 0 || !page_aligned(off) {
        return Err(EINVAL);
    }
    let file: Option<Arc<File>> = if flags & MAP_ANONYMOUS != 0 {
        if shared {
            return Err(EINVAL); // shared anonymous memory (shmem) is not supported
        }
        None
    } else {
        let f = filemap::lookup(fd).ok_or(EBADF)?;
        if prot & PROT_MTE != 0 {
            return Err(EINVAL); // PROT_MTE only on anonymous memory here
        }
        Some(f)
    };
    if shared {
        vm_flags |= VM_SHARED;
    }
    if flags & MAP_LOCKED != 0 {
        vm_flags |= VM_LOCKED;
    }
    let rounded = len.checked_add(PAGE_SIZE as u64 - 1).ok_or(ENOMEM)? & !(PAGE_SIZE as u64 - 1);
    if rounded as usize > TASK_SIZE {
        return Err(ENOMEM);
    }
    let start = {
        let mut map = mm.mmap_lock.write();
        let start = if flags & MAP_FIXED != 0 {
            // A misaligned address is EINVAL; one the range does not fit
            // below TASK_SIZE from (a tagged one, say) is ENOMEM, as in
            // Linux's get_unmapped_area.
            if !page_aligned(addr) {
                return Err(EINVAL);
            }
            if addr.checked_add(rounded).is_none_or(|e| e > TASK_SIZE as u64) {
                return Err(ENOMEM);
            }
            let (s, e) = range(addr, len)?;
            unmap_locked(mm, &mut map, s, e);
            s
        } else {
            // An unusable hint (past TASK_SIZE, tagged) is ignored.
            let hint = (addr as usize) & !(PAGE_SIZE - 1);
            let hint = if hint.checked_add(rounded as usize).is_none_or(|e| e > TASK_SIZE) { 0 } else { hint };
            get_unmapped_area(&map, hint, rounded as usize)?
        };
        let end = start + rounded as usize;
        let pgoff = match &file {
            Some(_) => off / PAGE_SIZE as u64,
            None => (start / PAGE_SIZE) as u64,
        };
        mm.vma_link(&mut map, Vma::new(start, end, vm_flags, pgoff, file));
        start
    };
    if flags & (MAP_POPULATE | MAP_LOCKED) != 0 {
        // As Linux's mm_populate: population is best effort and its failure
        // is not mmap's (the mapping stands; a later access faults as usual).
        let _ = populate(mm, start, start + rounded as usize);
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

pub fn do_mprotect(mm: &Arc<MmStruct>, addr: u64, len: u64, prot: u64) -> Result<(), Errno> {
    let (start, end) = range(untagged_addr(addr), len)?;
    let new = prot_flags(prot)?;
    let mut map = mm.mmap_lock.write();
    if !map.fully_mapped(start, end) {
        return Err(ENOMEM);
    }
    if map.overlapping(start, end).any(|v| v.flags & VM_SPECIAL != 0 || (new & VM_MTE != 0 && !v.is_anon())) {
        return Err(EINVAL);
    }
    split_at(mm, &mut map, start);
    split_at(mm, &mut map, end);
    let inside: Vec<usize> = map.overlapping(start, end).map(|v| v.start).collect();
    for s in inside {
        let vma = map.vmas.get_mut(&s).expect("VMA vanished under the mmap lock");
        // VM_MTE is sticky: arm64 Linux lets mprotect add PROT_MTE but never
        // clear it (Documentation/arch/arm64/memory-tagging-extension.rst).
        vma.flags = (vma.flags & !VM_ACCESS_FLAGS) | new;
        let (vs, ve, prot) = (vma.start, vma.end, vma.page_prot());
        change_protection(mm, vs, ve, prot);
    }
    Ok(())
}

/// Rewrites every present pte of `[start, end)` with `prot`.
fn change_protection(mm: &MmStruct, start: usize, end: usize, prot: super::pte::pgprot_t) {
    let mut tables: Vec<(usize, usize)> = Vec::new();
    mm.pgtables.for_each_pte_table(start, end, |lo, hi| tables.push((lo, hi)));
    for (lo, hi) in tables {
        let Ok(Some(pt)) = mm.pgtables.lock(lo, false) else { continue };
        for addr in (lo..hi).step_by(PAGE_SIZE) {
            let pte = pt.get(addr);
            if pte_present(pte) {
                set_pte_at(mm, &pt, addr, pte_modify(pte, prot));
            }
        }
    }
}

pub fn do_madvise(mm: &Arc<MmStruct>, addr: u64, len: u64, advice: u64) -> Result<(), Errno> {
    if ![MADV_DONTNEED, MADV_PAGEOUT, MADV_HUGEPAGE, MADV_NOHUGEPAGE].contains(&advice) {
        return Err(EINVAL);
    }
    let (start, end) = range(untagged_addr(addr), len)?;
    if advice == MADV_HUGEPAGE || advice == MADV_NOHUGEPAGE {
        return change_vma_flags(mm, start, end, |f| {
            if advice == MADV_HUGEPAGE {
                f | VM_HUGEPAGE
            } else {
                f & !VM_HUGEPAGE
            }
        });
    }
    let map = mm.mmap_lock.read();
    if !map.fully_mapped(start, end) {
        return Err(ENOMEM);
    }
    if map.overlapping(start, end).any(|v| v.flags & (VM_LOCKED | VM_SPECIAL) != 0) {
        return Err(EINVAL);
    }
    if advice == MADV_PAGEOUT {
        drop(map);
        super::vmscan::reclaim_range(mm, start, end);
    } else {
        let ctxs = uffd_ctxs(&map, start, end);
        drop(map);
        send_uffd_events(
            ctxs,
            super::userfaultfd::UFFD_FEATURE_EVENT_REMOVE,
            super::userfaultfd::UFFD_EVENT_REMOVE,
            start,
            end,
        );
        zap_page_range(mm, start, end);
    }
    Ok(())
}

/// mlock (`on`) or munlock.
pub fn do_mlock(mm: &Arc<MmStruct>, addr: u64, len: u64, on: bool) -> Result<(), Errno> {
    let addr = untagged_addr(addr);
    let start = addr & !(PAGE_SIZE as u64 - 1);
    let (start, end) = range(start, len.checked_add(addr - start).ok_or(EINVAL)?)?;
    change_vma_flags(mm, start, end, |f| if on { f | VM_LOCKED } else { f & !VM_LOCKED })?;
    if on {
        populate(mm, start, end)?;
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
    split_at(mm, &mut map, start);
    split_at(mm, &mut map, end);
    let inside: Vec<usize> = map.overlapping(start, end).map(|v| v.start).collect();
    for s in inside {
        let v = map.vmas.get_mut(&s).expect("VMA vanished under the mmap lock");
        v.flags = f(v.flags);
    }
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
