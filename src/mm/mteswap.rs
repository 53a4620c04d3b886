//! MTE tag storage for swapped-out pages, keyed by swap entry, as arm64's
//! mteswap.c keeps it: 128 bytes of tags per tagged 4 KiB page, saved with
//! LDGM at swap-out, restored with STGM at swap-in, dropped when the slot
//! is freed and for a whole area at swapoff. Untagged pages get no entry.
//!
//! Freed buffers are poisoned and kept in a quarantine instead of being
//! reused at once, so a restore through a stale handle (the T1/T2 race of
//! the May 2023 thread) reads poison and is counted as a use-after-free.

use super::folio::{Folio, PG_MTE_TAGGED};
use super::pte::{swp_entry_nth, swp_entry_t, swp_type};
use crate::arch::mte::PAGE_TAG_BYTES;
use crate::errno::{Errno, ENOMEM};
use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use spin::Mutex;

/// Every freed buffer is filled with this (tag 0xE in every granule).
pub const POISON: u8 = 0xEE;
/// Freed buffers kept before one is reused.
const QUARANTINE: usize = 1024;

struct TagBuf {
    tags: [u8; PAGE_TAG_BYTES],
    live: bool,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    pub saves: u64,
    pub restores: u64,
    pub invalidates: u64,
    /// Restores that read a freed (poisoned) buffer.
    pub use_after_free: u64,
    /// Bytes the live entries use (buffers and index).
    pub bytes: usize,
    /// Bytes held by freed, poisoned buffers in quarantine.
    pub quarantine_bytes: usize,
}

struct Store {
    index: BTreeMap<u64, usize>,
    bufs: Vec<TagBuf>,
    quarantine: VecDeque<usize>,
    stats: Stats,
}

static STORE: Mutex<Store> =
    Mutex::new(Store { index: BTreeMap::new(), bufs: Vec::new(), quarantine: VecDeque::new(), stats: Stats::zero() });

impl Stats {
    const fn zero() -> Stats {
        Stats { entries: 0, saves: 0, restores: 0, invalidates: 0, use_after_free: 0, bytes: 0, quarantine_bytes: 0 }
    }
}

/// Bytes one stored page costs: its buffer plus an index entry (key,
/// value and the B-tree's per-entry share, estimated as two words more).
pub const BYTES_PER_ENTRY: usize = core::mem::size_of::<TagBuf>() + 4 * core::mem::size_of::<u64>();

impl Store {
    fn alloc(&mut self) -> usize {
        if self.quarantine.len() > QUARANTINE {
            let i = self.quarantine.pop_front().expect("non-empty quarantine");
            self.bufs[i].live = true;
            return i;
        }
        self.bufs.push(TagBuf { tags: [0; PAGE_TAG_BYTES], live: true });
        self.bufs.len() - 1
    }

    fn free(&mut self, i: usize) {
        self.bufs[i].tags = [POISON; PAGE_TAG_BYTES];
        self.bufs[i].live = false;
        self.quarantine.push_back(i);
    }

    fn erase(&mut self, key: u64) -> bool {
        match self.index.remove(&key) {
            Some(i) => {
                self.free(i);
                self.stats.invalidates += 1;
                true
            }
            None => false,
        }
    }
}

/// Drops every entry (the harness's cleanup after a test that leaked some).
pub fn invalidate_all() {
    let mut s = STORE.lock();
    let keys: Vec<u64> = s.index.keys().copied().collect();
    for k in keys {
        s.erase(k);
    }
}

/// arch_prepare_to_swap: saves the tags of each tagged page of `folio`
/// under `entry + i`. On a failure the entries saved so far are erased.
pub fn arch_prepare_to_swap(folio: &Folio, entry: swp_entry_t) -> Result<(), Errno> {
    if !folio.test(PG_MTE_TAGGED) {
        return Ok(()); // never an entry for an untagged page
    }
    let n = folio.nr_pages();
    for i in 0..n {
        let key = swp_entry_nth(entry, i as u64).0;
        let tags = folio.tags(i);
        let mut s = STORE.lock();
        if crate::testhooks::fault_inject::MTESWAP_SAVE.should_fail() {
            for j in 0..i {
                s.erase(swp_entry_nth(entry, j as u64).0);
            }
            return Err(ENOMEM);
        }
        s.erase(key); // storing over an entry frees the old buffer
        let b = s.alloc();
        s.bufs[b].tags = tags;
        s.index.insert(key, b);
        s.stats.saves += 1;
    }
    Ok(())
}

/// A stale-able reference to an entry's buffer, as a raw pointer would be.
#[derive(Clone, Copy, Debug)]
pub struct Handle(usize);

/// xa_load: the buffer stored for `entry` now.
pub fn lookup(entry: swp_entry_t) -> Option<Handle> {
    STORE.lock().index.get(&entry.0).map(|&i| Handle(i))
}

/// Copies the tags behind `h` into page `i` of `folio`, whatever state the
/// buffer is in (the step the known-wrong orders do too early). A freed
/// buffer is counted as a use-after-free.
pub fn restore_from(h: Handle, folio: &Folio, i: usize) {
    let tags = {
        let mut s = STORE.lock();
        if !s.bufs[h.0].live {
            s.stats.use_after_free += 1;
            defmt::warn!("mteswap: tag buffer {=usize} read after it was freed (use-after-free)", h.0);
        }
        s.stats.restores += 1;
        s.bufs[h.0].tags
    };
    folio.set_tags(i, &tags);
    folio.set(PG_MTE_TAGGED);
}

/// arch_swap_restore: restores page i of `folio` from `entry + i` unless
/// its tags are already initialised (restore is idempotent). Must be called
/// with the folio locked, after the pte was verified, before the slot can
/// be freed.
pub fn arch_swap_restore(entry: swp_entry_t, folio: &Folio) {
    if folio.test(PG_MTE_TAGGED) {
        return;
    }
    for i in 0..folio.nr_pages() {
        let e = swp_entry_nth(entry, i as u64);
        if let Some(h) = lookup(e) {
            restore_from(h, folio, i);
        }
    }
}

/// arch_swap_invalidate_page: the slot is free; so is its tag buffer.
pub fn arch_swap_invalidate_page(entry: swp_entry_t) {
    STORE.lock().erase(entry.0);
}

/// arch_swap_invalidate_area: every entry of swap type `ty`.
pub fn arch_swap_invalidate_area(ty: u8) {
    let mut s = STORE.lock();
    let keys: Vec<u64> = s.index.keys().copied().filter(|&k| swp_type(swp_entry_t(k)) == ty).collect();
    for k in keys {
        s.erase(k);
    }
}

pub fn stats() -> Stats {
    let s = STORE.lock();
    Stats {
        entries: s.index.len(),
        bytes: s.index.len() * BYTES_PER_ENTRY,
        quarantine_bytes: s.quarantine.len() * core::mem::size_of::<TagBuf>(),
        ..s.stats
    }
}

/// Every stored entry (for the invariant checker).
pub fn entries() -> Vec<swp_entry_t> {
    STORE.lock().index.keys().map(|&k| swp_entry_t(k)).collect()
}
