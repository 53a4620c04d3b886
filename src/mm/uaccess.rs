//! copy_from_user / copy_to_user: kernel access to a task's memory for
//! system-call arguments (the userfaultfd structures). Pages are faulted in
//! like an EL0 access would; each chunk is copied under its pte lock so the
//! page cannot go away meanwhile. A fault that cannot be resolved is EFAULT.
//!
//! As arm64 Linux's uaccess: a pointer with a non-zero top byte is only
//! accepted when the calling thread enabled the tagged-address ABI
//! (PR_TAGGED_ADDR_ENABLE; otherwise access_ok fails: EFAULT), and the
//! copy uses unprivileged loads and stores (LDTR/STTR) through the pointer
//! as given, so they are tag-checked in the thread's TCF0 mode: a
//! mismatching tag is EFAULT in sync mode, and in async mode the access
//! completes and the thread gets SIGSEGV (SEGV_MTEAERR) on its way back to
//! EL0. Access to an address space other than the one in TTBR0 (none of
//! today's callers) is made through the linear map, unchecked.

use super::fault::do_page_fault;
use super::folio::{read_frame, write_frame};
use super::mm_types::{MmStruct, TASK_SIZE};
use super::pgtable::huge_pmd_pte;
use super::pte::{pmd_trans_huge, pte_pfn, pte_present, pte_t, pte_valid, pte_write};
use crate::arch::boot::MAX_CPUS;
use crate::arch::mmu::{PAGE_MASK, PAGE_SIZE};
use crate::arch::trap;
use crate::errno::{Errno, EFAULT};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

/// TIF_TAGGED_ADDR of the thread each CPU runs (set on entry from EL0).
static TAGGED_ADDR_ABI: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// Whether the thread this CPU is running enabled the tagged-address ABI.
pub fn set_tagged_addr_abi(enabled: bool) {
    TAGGED_ADDR_ABI[crate::arch::cpu::id()].store(enabled, Ordering::Release);
}

/// The lock that keeps a user page mapped during a copy (held, not read).
#[allow(dead_code)]
enum Held {
    Pte(super::pgtable::PteTable),
    Pmd(super::pgtable::PmdLocked),
}

/// The kernel buffer a copy fills (from user memory) or empties (to it).
enum Buf<'a> {
    In(&'a mut [u8]),
    Out(&'a [u8]),
}

fn access(mm: &Arc<MmStruct>, uaddr: u64, mut buf: Buf<'_>) -> Result<(), Errno> {
    let (len, write) = match &buf {
        Buf::In(b) => (b.len(), false),
        Buf::Out(b) => (b.len(), true),
    };
    // access_ok: a tagged pointer only with the tagged-address ABI.
    if uaddr >> 56 != 0 && !TAGGED_ADDR_ABI[crate::arch::cpu::id()].load(Ordering::Acquire) {
        return Err(EFAULT);
    }
    let addr = (uaddr & 0x00FF_FFFF_FFFF_FFFF) as usize; // untagged_addr
    let tag = uaddr & 0xFF00_0000_0000_0000;
    if addr.checked_add(len).is_none_or(|e| e > TASK_SIZE) {
        return Err(EFAULT);
    }
    let current = super::mmu_context::serving(mm);
    let mut done = 0;
    while done < len {
        let a = addr + done;
        let (page, off) = (a & PAGE_MASK, a % PAGE_SIZE);
        let n = (PAGE_SIZE - off).min(len - done);
        let mut tries = 0;
        loop {
            // The page stays mapped while it is copied: the pte lock, or
            // for a huge PMD the PMD lock (no split).
            let held: Option<(pte_t, Held)> = if pmd_trans_huge(mm.pgtables.pmd_peek(page)) {
                match mm.pgtables.pmd_lock(page, false) {
                    Ok(Some(l)) if pmd_trans_huge(l.get()) => Some((huge_pmd_pte(l.get(), page), Held::Pmd(l))),
                    _ => None,
                }
            } else {
                match mm.pgtables.lock(page, false).map_err(|_| EFAULT)? {
                    Some(pt) => Some((pt.get(page), Held::Pte(pt))),
                    None => None,
                }
            };
            if let Some((pte, _held)) = held {
                if pte_present(pte) && pte_valid(pte) && (!write || pte_write(pte)) {
                    let user = (tag | a as u64) as usize;
                    match &mut buf {
                        Buf::In(b) if current => copy_in_unprivileged(user, &mut b[done..done + n])?,
                        Buf::Out(b) if current => copy_out_unprivileged(user, &b[done..done + n])?,
                        Buf::In(b) => read_frame(pte_pfn(pte), off, &mut b[done..done + n]),
                        Buf::Out(b) => write_frame(pte_pfn(pte), off, &b[done..done + n]),
                    }
                    break;
                }
            }
            tries += 1;
            if tries > 4 {
                return Err(EFAULT);
            }
            do_page_fault(mm, page, write, false).map_err(|_| EFAULT)?;
        }
        done += n;
    }
    Ok(())
}

/// LDTR through the user's pointer (with its tag): whole aligned words in
/// one block probe, bytes at the ends; a tag-check or any other fault is
/// EFAULT.
fn copy_in_unprivileged(user: usize, buf: &mut [u8]) -> Result<(), Errno> {
    let head = (user.next_multiple_of(8) - user).min(buf.len());
    let words = (buf.len() - head) / 8;
    let tail = head + 8 * words;
    for (i, b) in buf.iter_mut().enumerate().take(head) {
        *b = trap::probe_read_user_u8(user + i).map_err(|_| EFAULT)?;
    }
    if words > 0 {
        let mut w = alloc::vec![0u64; words];
        trap::probe_read_user_words(user + head, &mut w).map_err(|_| EFAULT)?;
        for (chunk, v) in buf[head..tail].chunks_exact_mut(8).zip(&w) {
            chunk.copy_from_slice(&v.to_le_bytes());
        }
    }
    for (i, b) in buf.iter_mut().enumerate().skip(tail) {
        *b = trap::probe_read_user_u8(user + i).map_err(|_| EFAULT)?;
    }
    Ok(())
}

/// STTR through the user's pointer, as copy_in_unprivileged reads.
fn copy_out_unprivileged(user: usize, buf: &[u8]) -> Result<(), Errno> {
    let head = (user.next_multiple_of(8) - user).min(buf.len());
    let words = (buf.len() - head) / 8;
    let tail = head + 8 * words;
    for (i, &b) in buf.iter().enumerate().take(head) {
        trap::probe_write_user_u8(user + i, b).map_err(|_| EFAULT)?;
    }
    if words > 0 {
        let w: alloc::vec::Vec<u64> =
            buf[head..tail].chunks_exact(8).map(|c| u64::from_le_bytes(core::array::from_fn(|j| c[j]))).collect();
        trap::probe_write_user_words(user + head, &w).map_err(|_| EFAULT)?;
    }
    for (i, &b) in buf.iter().enumerate().skip(tail) {
        trap::probe_write_user_u8(user + i, b).map_err(|_| EFAULT)?;
    }
    Ok(())
}

pub fn copy_from_user(mm: &Arc<MmStruct>, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    access(mm, addr, Buf::In(buf))
}

pub fn copy_to_user(mm: &Arc<MmStruct>, addr: u64, buf: &[u8]) -> Result<(), Errno> {
    access(mm, addr, Buf::Out(buf))
}

/// Reads a uAPI structure at `addr` (copy_from_user of its words).
pub fn get_user<T: super::uffd_uapi::Words>(mm: &Arc<MmStruct>, addr: u64) -> Result<T, Errno> {
    let mut b = alloc::vec![0u8; T::WORDS * 8];
    copy_from_user(mm, addr, &mut b)?;
    let w: alloc::vec::Vec<u64> =
        b.chunks_exact(8).map(|c| u64::from_le_bytes(core::array::from_fn(|i| c[i]))).collect();
    Ok(T::from_words(&w))
}

/// Writes a uAPI structure at `addr`.
pub fn put_user<T: super::uffd_uapi::Words>(mm: &Arc<MmStruct>, addr: u64, v: &T) -> Result<(), Errno> {
    let b: alloc::vec::Vec<u8> = v.to_words().iter().flat_map(|w| w.to_le_bytes()).collect();
    copy_to_user(mm, addr, &b)
}

/// Writes one u64 at `addr`.
pub fn put_word(mm: &Arc<MmStruct>, addr: u64, v: u64) -> Result<(), Errno> {
    copy_to_user(mm, addr, &v.to_le_bytes())
}
