//! copy_from_user / copy_to_user: kernel access to a task's memory for
//! system-call arguments (the userfaultfd structures). Pages are faulted in
//! like an EL0 access would; each chunk is copied under its pte lock so the
//! page cannot go away meanwhile. A fault that cannot be resolved is EFAULT.

use super::fault::do_page_fault;
use super::folio::pfn_frame;
use super::mm_types::{MmStruct, TASK_SIZE};
use super::pte::{pte_pfn, pte_present, pte_valid, pte_write};
use crate::arch::mmu::PAGE_SIZE;
use crate::errno::{Errno, EFAULT};
use alloc::sync::Arc;

fn access(
    mm: &Arc<MmStruct>,
    addr: u64,
    len: usize,
    write: bool,
    mut f: impl FnMut(&mut [u8], usize),
) -> Result<(), Errno> {
    let addr = (addr & 0x00FF_FFFF_FFFF_FFFF) as usize; // drop the pointer tag
    if addr.checked_add(len).is_none_or(|e| e > TASK_SIZE) {
        return Err(EFAULT);
    }
    let mut done = 0;
    while done < len {
        let a = addr + done;
        let (page, off) = (a & !(PAGE_SIZE - 1), a % PAGE_SIZE);
        let n = (PAGE_SIZE - off).min(len - done);
        let mut tries = 0;
        loop {
            {
                let pt = mm.pgtables.lock(page, false).map_err(|_| EFAULT)?;
                if let Some(pt) = pt {
                    let pte = pt.get(page);
                    if pte_present(pte) && pte_valid(pte) && (!write || pte_write(pte)) {
                        f(&mut pfn_frame(pte_pfn(pte)).0[off..off + n], done);
                        break;
                    }
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

pub fn copy_from_user(mm: &Arc<MmStruct>, addr: u64, buf: &mut [u8]) -> Result<(), Errno> {
    let len = buf.len();
    access(mm, addr, len, false, |page, at| buf[at..at + page.len()].copy_from_slice(page))
}

pub fn copy_to_user(mm: &Arc<MmStruct>, addr: u64, buf: &[u8]) -> Result<(), Errno> {
    access(mm, addr, buf.len(), true, |page, at| page.copy_from_slice(&buf[at..at + page.len()]))
}

/// Reads `N` little-endian u64 words at `addr`.
pub fn get_words<const N: usize>(mm: &Arc<MmStruct>, addr: u64) -> Result<[u64; N], Errno> {
    let mut b = [0u8; 64];
    copy_from_user(mm, addr, &mut b[..N * 8])?;
    Ok(core::array::from_fn(|i| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"))))
}

/// Writes one u64 at `addr`.
pub fn put_word(mm: &Arc<MmStruct>, addr: u64, v: u64) -> Result<(), Errno> {
    copy_to_user(mm, addr, &v.to_le_bytes())
}
