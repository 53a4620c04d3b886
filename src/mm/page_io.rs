//! Swap I/O: folios to and from their RAM-disk slots.

use super::folio::FolioLock;
use super::pte::{swp_entry_nth, swp_entry_t};
use super::swapfile::slot_sector;
use crate::drivers::ramdisk::{self, IoError, Op, Request, RequestBuf};
use core::sync::atomic::{AtomicU64, Ordering};

/// Linux's pswpin and pswpout of /proc/vmstat: pages read from and written
/// to swap.
#[derive(Clone, Copy, Debug, Default)]
pub struct IoStats {
    pub pswpin: u64,
    pub pswpout: u64,
}

static PSWPIN: AtomicU64 = AtomicU64::new(0);
static PSWPOUT: AtomicU64 = AtomicU64::new(0);

pub fn stats() -> IoStats {
    IoStats { pswpin: PSWPIN.load(Ordering::Acquire), pswpout: PSWPOUT.load(Ordering::Acquire) }
}

/// swap_writepage: the folio's pages to its slots (the tags were saved by
/// the caller through arch_prepare_to_swap).
pub fn swap_writepage(folio: &mut FolioLock, entry: swp_entry_t) -> Result<(), IoError> {
    for i in 0..folio.nr_pages() {
        let e = swp_entry_nth(entry, i as u64);
        let req = Request { op: Op::Write, sector: slot_sector(e), buf: RequestBuf::Write(folio.unmapped_data(i)) };
        ramdisk::submit(req).wait()?;
    }
    PSWPOUT.fetch_add(folio.nr_pages() as u64, Ordering::Relaxed);
    Ok(())
}

/// swap_read_folio: the slots into the folio.
pub fn swap_read_folio(folio: &mut FolioLock, entry: swp_entry_t) -> Result<(), IoError> {
    for i in 0..folio.nr_pages() {
        let e = swp_entry_nth(entry, i as u64);
        let req = Request { op: Op::Read, sector: slot_sector(e), buf: RequestBuf::Read(folio.unmapped_data(i)) };
        ramdisk::submit(req).wait()?;
    }
    PSWPIN.fetch_add(folio.nr_pages() as u64, Ordering::Relaxed);
    Ok(())
}
