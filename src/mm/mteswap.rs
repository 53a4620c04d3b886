//! MTE tag storage for swapped-out pages, keyed by swap entry, as arm64's
//! mteswap.c keeps it: the tags of each tagged 4 KiB page saved with LDGM
//! at swap-out, restored with STGM at swap-in, dropped when the slot is
//! freed and for a whole area at swapoff. Untagged pages get no entry.
//!
//! The index is one 64-bit word per swap slot of each swap type, in leaves
//! of 512 slots allocated when a slot in them is first stored (as an
//! xarray's nodes are), so a lookup costs the same at 1K and at 256K
//! entries and an index grows without copying. A page whose tags are a few
//! runs (one tag for the page, a few allocations) is stored inline in its
//! word (tagcodec: bit 0 set); a page of 16 blocks of one tag each (a
//! malloc size class of 256-byte allocations) in one 8-byte cell of a pool
//! the word names; anything else in a buffer the word names, as runs when
//! that is shorter, else the 128 raw bytes.
//!
//! Freed buffers and cells are poisoned and kept in a quarantine instead of being
//! reused at once, so a restore through a stale handle (the T1/T2 race of
//! the May 2023 thread) reads poison and is counted as a use-after-free. An
//! inline entry cannot go stale: a handle to it is a copy of the value.

use super::folio::{Folio, PG_MTE_TAGGED};
use super::pte::{swp_entry, swp_entry_nth, swp_entry_t, swp_offset, swp_type, MAX_SWAPFILES};
use super::tagcodec::{self, Form};
use crate::arch::mte::PAGE_TAG_BYTES;
use crate::errno::{Errno, ENOMEM};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use spin::Mutex;

/// A freed buffer reads as this in every byte (tag 0xE in every granule).
pub const POISON: u8 = 0xEE;
/// Freed buffers kept before one is reused.
const QUARANTINE: usize = 1024;
/// A freed cell: poison in every block. No live cell holds it, since a
/// page of one tag is stored inline, never as a grid.
const FREED_CELL: u64 = u64::from_ne_bytes([POISON; 8]);

struct TagBuf {
    /// A tagcodec Runs body, or the raw 128 bytes.
    body: Box<[u8]>,
    live: bool,
}

impl TagBuf {
    fn bytes(&self) -> usize {
        core::mem::size_of::<TagBuf>() + self.body.len()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub entries: usize,
    /// Entries held inline in their index word.
    pub inline: usize,
    /// Entries held as a grid cell (8 bytes beside the index word).
    pub grid: usize,
    pub saves: u64,
    pub restores: u64,
    pub invalidates: u64,
    /// Restores that read a freed (poisoned) buffer.
    pub use_after_free: u64,
    /// Bytes the index words and the live buffers use.
    pub bytes: usize,
    /// Of those, the index words'.
    pub index_bytes: usize,
    /// Bytes held by freed, poisoned buffers in quarantine.
    pub quarantine_bytes: usize,
}

/// The most one stored page can cost: its index word and a raw buffer
/// (and its share of a leaf's pointer, 16 bytes a 512 slots, not counted).
pub const MAX_BYTES_PER_ENTRY: usize = 8 + core::mem::size_of::<TagBuf>() + PAGE_TAG_BYTES;

/// Slots per index leaf (one 4 KiB page of words).
const LEAF: usize = 512;

struct Leaf {
    /// One word per slot: 0 (no entry), odd (a tagcodec inline value),
    /// (buffer + 1) << 2, or (cell + 1) << 2 | 2.
    words: Box<[u64]>,
    /// Words not 0; the leaf is freed when none is left.
    used: usize,
}

struct Store {
    /// Per swap type, its leaves by slot / LEAF.
    index: [Vec<Option<Leaf>>; MAX_SWAPFILES as usize],
    bufs: Vec<TagBuf>,
    quarantine: VecDeque<usize>,
    live_buf_bytes: usize,
    /// Grid cells (a freed one holds FREED_CELL), and the freed ones in
    /// quarantine.
    cells: Vec<u64>,
    cell_quarantine: VecDeque<usize>,
    stats: Stats,
}

const NO_SLOTS: Vec<Option<Leaf>> = Vec::new();
static STORE: Mutex<Store> = Mutex::new(Store {
    index: [NO_SLOTS; MAX_SWAPFILES as usize],
    bufs: Vec::new(),
    quarantine: VecDeque::new(),
    live_buf_bytes: 0,
    cells: Vec::new(),
    cell_quarantine: VecDeque::new(),
    stats: Stats::zero(),
});

impl Stats {
    const fn zero() -> Stats {
        Stats {
            entries: 0,
            inline: 0,
            grid: 0,
            saves: 0,
            restores: 0,
            invalidates: 0,
            use_after_free: 0,
            bytes: 0,
            index_bytes: 0,
            quarantine_bytes: 0,
        }
    }
}

/// What an index word holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Word {
    None,
    Inline(u64),
    Buf(usize),
    Cell(usize),
}

fn buf_word(i: usize) -> u64 {
    (i as u64 + 1) << 2
}

fn cell_word(c: usize) -> u64 {
    (c as u64 + 1) << 2 | 2
}

fn kind(w: u64) -> Word {
    match w & 3 {
        _ if w == 0 => Word::None,
        1 | 3 => Word::Inline(w),
        0 => Word::Buf((w >> 2) as usize - 1),
        _ => Word::Cell((w >> 2) as usize - 1),
    }
}

impl Store {
    fn word(&self, key: swp_entry_t) -> u64 {
        let off = swp_offset(key) as usize;
        let leaves = self.index.get(usize::from(swp_type(key)));
        let leaf = leaves.and_then(|l| l.get(off / LEAF)).and_then(Option::as_ref);
        leaf.map_or(0, |l| l.words[off % LEAF])
    }

    /// The leaf of `key` and the word's place in it, allocating the leaf
    /// if there is none.
    fn slot(&mut self, key: swp_entry_t) -> Result<(&mut Leaf, usize), Errno> {
        let leaves = self.index.get_mut(usize::from(swp_type(key))).ok_or(ENOMEM)?;
        let off = swp_offset(key) as usize;
        if off / LEAF >= leaves.len() {
            leaves.try_reserve(off / LEAF + 1 - leaves.len()).map_err(|_| ENOMEM)?;
            leaves.resize_with(off / LEAF + 1, || None);
        }
        let leaf = &mut leaves[off / LEAF];
        if leaf.is_none() {
            let mut words: Vec<u64> = Vec::new();
            words.try_reserve_exact(LEAF).map_err(|_| ENOMEM)?;
            words.resize(LEAF, 0);
            *leaf = Some(Leaf { words: words.into_boxed_slice(), used: 0 });
        }
        Ok((leaf.as_mut().expect("allocated above"), off % LEAF))
    }

    /// A buffer holding `tags` in `form` (Runs or Raw).
    fn alloc(&mut self, tags: &[u8; PAGE_TAG_BYTES], form: Form) -> Result<usize, Errno> {
        let mut body: Vec<u8> = Vec::new();
        body.try_reserve_exact(form.body_bytes()).map_err(|_| ENOMEM)?;
        match form {
            Form::Runs(_) => tagcodec::write_runs(tags, &mut body),
            _ => body.extend_from_slice(tags),
        }
        let buf = TagBuf { body: body.into_boxed_slice(), live: true };
        self.live_buf_bytes += buf.bytes();
        if self.quarantine.len() > QUARANTINE {
            let i = self.quarantine.pop_front().expect("non-empty quarantine");
            self.bufs[i] = buf;
            return Ok(i);
        }
        self.bufs.try_reserve(1).map_err(|_| ENOMEM)?;
        self.bufs.push(buf);
        Ok(self.bufs.len() - 1)
    }

    fn free(&mut self, i: usize) {
        let b = &mut self.bufs[i];
        b.body.fill(POISON);
        b.live = false;
        self.live_buf_bytes -= b.bytes();
        self.quarantine.push_back(i);
    }

    /// A cell holding a Grid value.
    fn alloc_cell(&mut self, v: u64) -> Result<usize, Errno> {
        assert_ne!(v, FREED_CELL, "a page of one tag as a grid cell");
        let c = if self.cell_quarantine.len() > QUARANTINE {
            self.cell_quarantine.pop_front().expect("non-empty quarantine")
        } else {
            self.cells.try_reserve(1).map_err(|_| ENOMEM)?;
            self.cells.push(FREED_CELL);
            self.cells.len() - 1
        };
        self.cells[c] = v;
        Ok(c)
    }

    fn free_cell(&mut self, c: usize) {
        self.cells[c] = FREED_CELL;
        self.cell_quarantine.push_back(c);
    }

    fn erase(&mut self, key: swp_entry_t) -> bool {
        let w = self.word(key);
        if w == 0 {
            return false;
        }
        // The word is not 0, so its leaf exists: nothing is allocated.
        let off = swp_offset(key) as usize;
        let leaf = &mut self.index[usize::from(swp_type(key))][off / LEAF];
        if let Some(l) = leaf {
            l.words[off % LEAF] = 0;
            l.used -= 1;
            if l.used == 0 {
                *leaf = None;
            }
        }
        match kind(w) {
            Word::Buf(i) => self.free(i),
            Word::Cell(c) => {
                self.free_cell(c);
                self.stats.grid -= 1;
            }
            _ => self.stats.inline -= 1,
        }
        self.stats.entries -= 1;
        self.stats.invalidates += 1;
        true
    }

    fn drop_leaf_if_unused(&mut self, key: swp_entry_t) {
        let off = swp_offset(key) as usize;
        if let Some(leaf) = self.index[usize::from(swp_type(key))].get_mut(off / LEAF) {
            if leaf.as_ref().is_some_and(|l| l.used == 0) {
                *leaf = None;
            }
        }
    }

    /// Stores `tags` under `key`, replacing (and freeing) what was there.
    fn store(&mut self, key: swp_entry_t, tags: &[u8; PAGE_TAG_BYTES]) -> Result<(), Errno> {
        self.erase(key);
        self.slot(key)?; // the leaf first: a failure leaves nothing behind
        let form = tagcodec::form(tags);
        let stored = match form {
            Form::Inline(v) => Ok(v),
            Form::Grid(v) => self.alloc_cell(v).map(cell_word),
            _ => self.alloc(tags, form).map(buf_word),
        };
        let w = match stored {
            Ok(w) => w,
            Err(e) => {
                self.drop_leaf_if_unused(key);
                return Err(e);
            }
        };
        let (leaf, i) = self.slot(key)?;
        leaf.words[i] = w;
        leaf.used += 1;
        self.stats.entries += 1;
        match kind(w) {
            Word::Inline(_) => self.stats.inline += 1,
            Word::Cell(_) => self.stats.grid += 1,
            _ => {}
        }
        self.stats.saves += 1;
        Ok(())
    }
}

/// Every stored key, type by type, slot by slot.
fn keys(s: &Store, only: Option<u8>) -> Vec<swp_entry_t> {
    let mut out = Vec::new();
    for (ty, leaves) in s.index.iter().enumerate() {
        if only.is_some_and(|t| usize::from(t) != ty) {
            continue;
        }
        for (n, leaf) in leaves.iter().enumerate() {
            let Some(leaf) = leaf else { continue };
            let stored = leaf.words.iter().enumerate().filter(|(_, &w)| w != 0);
            out.extend(stored.map(|(i, _)| swp_entry(ty as u8, (n * LEAF + i) as u64)));
        }
    }
    out
}

/// Drops every entry (the harness's cleanup after a test that leaked some).
pub fn invalidate_all() {
    let mut s = STORE.lock();
    for k in keys(&s, None) {
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
        let key = swp_entry_nth(entry, i as u64);
        let tags = folio.tags(i);
        let mut s = STORE.lock();
        let injected = crate::testhooks::fault_inject::MTESWAP_SAVE.should_fail();
        if injected || s.store(key, &tags).is_err() {
            for j in 0..i {
                s.erase(swp_entry_nth(entry, j as u64));
            }
            return Err(ENOMEM);
        }
    }
    Ok(())
}

/// What `lookup` found: an inline value (a copy, never stale) or a buffer
/// that may be freed behind the holder's back, as a raw pointer would be.
#[derive(Clone, Copy, Debug)]
pub struct Handle(u64);

/// xa_load: the entry stored for `entry` now.
pub fn lookup(entry: swp_entry_t) -> Option<Handle> {
    let w = STORE.lock().word(entry);
    (w != 0).then_some(Handle(w))
}

/// Copies the tags behind `h` into page `i` of `folio`, whatever state the
/// buffer is in (the step the known-wrong orders do too early). A freed
/// buffer reads as poison and is counted as a use-after-free.
pub fn restore_from(h: Handle, folio: &Folio, i: usize) {
    let tags = {
        let mut s = STORE.lock();
        s.stats.restores += 1;
        let decoded = match kind(h.0) {
            Word::None => None,
            Word::Inline(v) => tagcodec::decode_inline(v),
            Word::Buf(b) if !s.bufs[b].live => {
                s.stats.use_after_free += 1;
                defmt::warn!("mteswap: tag buffer {=usize} read after it was freed (use-after-free)", b);
                Some([POISON; PAGE_TAG_BYTES])
            }
            Word::Cell(c) if s.cells[c] == FREED_CELL => {
                s.stats.use_after_free += 1;
                defmt::warn!("mteswap: tag cell {=usize} read after it was freed (use-after-free)", c);
                Some([POISON; PAGE_TAG_BYTES])
            }
            Word::Buf(b) => match s.bufs[b].body.len() {
                PAGE_TAG_BYTES => s.bufs[b].body.as_ref().try_into().ok(),
                _ => tagcodec::decode_runs(&s.bufs[b].body),
            },
            Word::Cell(c) => Some(tagcodec::decode_grid(s.cells[c])),
        };
        // Only this file writes the words and bodies, so a failed decode
        // is a bug here; the page then shows poison rather than made-up tags.
        decoded.unwrap_or_else(|| {
            defmt::error!("mteswap: an entry did not decode");
            [POISON; PAGE_TAG_BYTES]
        })
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

/// arch_swap_invalidate_page: the slot is free; so is its tag entry.
pub fn arch_swap_invalidate_page(entry: swp_entry_t) {
    STORE.lock().erase(entry);
}

/// arch_swap_invalidate_area: every entry of swap type `ty`; the type's
/// index goes too.
pub fn arch_swap_invalidate_area(ty: u8) {
    let mut s = STORE.lock();
    for k in keys(&s, Some(ty)) {
        s.erase(k);
    }
    if let Some(v) = s.index.get_mut(usize::from(ty)) {
        *v = Vec::new();
    }
}

pub fn stats() -> Stats {
    let s = STORE.lock();
    let leaf_bytes = LEAF * core::mem::size_of::<u64>();
    let index: usize = s.index.iter().flatten().filter(|l| l.is_some()).count() * leaf_bytes;
    // A live cell costs its 8 bytes; the pool's other cells are the
    // quarantine's.
    let cell_bytes = s.stats.grid * 8;
    Stats {
        bytes: index + s.live_buf_bytes + cell_bytes,
        index_bytes: index,
        quarantine_bytes: s.quarantine.iter().map(|&i| s.bufs[i].bytes()).sum::<usize>() + s.cell_quarantine.len() * 8,
        ..s.stats
    }
}

/// Every stored entry (for the invariant checker).
pub fn entries() -> Vec<swp_entry_t> {
    keys(&STORE.lock(), None)
}
