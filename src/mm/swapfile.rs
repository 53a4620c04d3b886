//! Swap devices: swapon/swapoff, the slot allocator and swap_map counts.
//!
//! swap_map[offset] = the number of swap ptes referring to the slot, plus
//! SWAP_HAS_CACHE while a folio for it is in the swap cache. A slot is free
//! when both are gone (swap_range_free), and its MTE tags go with it.

use super::folio::Folio;
use super::pte::{swp_entry, swp_entry_t, swp_offset, swp_type};
use crate::drivers::ramdisk;
use crate::errno::*;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};
use spin::Mutex;

pub const SWAP_HAS_CACHE: u8 = 0x40;
pub const SWAP_MAP_MAX: u8 = 0x3e;
/// Sectors per 4 KiB slot.
pub const SECTORS_PER_PAGE: u64 = 8;

pub struct SwapMap {
    pub map: Vec<u8>,
    pub inuse: u64,
    /// Where the next allocation starts looking (so filling the device is
    /// linear, not quadratic).
    pub next: u64,
}

pub struct SwapInfo {
    pub ty: u8,
    pub slots: u64,
    pub lock: Mutex<SwapMap>,
    /// Cleared when swapoff starts: no new slots are handed out.
    pub writeok: AtomicBool,
}

static SWAP_INFO: Mutex<Vec<Option<Arc<SwapInfo>>>> = Mutex::new(Vec::new());
/// The device for `entry`'s type, if it is on (get_swap_device).
pub fn get_swap_device(entry: swp_entry_t) -> Option<Arc<SwapInfo>> {
    SWAP_INFO.lock().get(swp_type(entry) as usize).cloned().flatten()
}

/// swapon of the RAM-disk as swap type 0. Slot 0 is never used (Linux keeps
/// its header there).
pub fn swapon() -> Result<u8, Errno> {
    if !ramdisk::present() {
        return Err(EINVAL);
    }
    let mut all = SWAP_INFO.lock();
    if all.first().is_some_and(|s| s.is_some()) {
        return Err(EBUSY);
    }
    let mut slots = ramdisk::sectors() / SECTORS_PER_PAGE;
    let limit = crate::testhooks::knobs::SWAP_SLOT_LIMIT.get();
    if limit > 0 {
        slots = slots.min(limit);
    }
    if slots < 2 {
        return Err(EINVAL);
    }
    let mut map = vec![0u8; slots as usize];
    map[0] = SWAP_MAP_MAX; // the header slot
    let si = Arc::new(SwapInfo {
        ty: 0,
        slots,
        lock: Mutex::new(SwapMap { map, inuse: 0, next: 1 }),
        writeok: AtomicBool::new(true),
    });
    if all.is_empty() {
        all.push(Some(si));
    } else {
        all[0] = Some(si);
    }
    Ok(0)
}

/// Removes the device once swapoff has brought every page back.
pub(super) fn remove(ty: u8) {
    if let Some(slot) = SWAP_INFO.lock().get_mut(ty as usize) {
        *slot = None;
    }
    super::mteswap::arch_swap_invalidate_area(ty);
}

/// The device of swap type `ty` while it is on (Linux's swap_info[type]).
pub fn swap_info(ty: u8) -> Option<Arc<SwapInfo>> {
    SWAP_INFO.lock().get(ty as usize).cloned().flatten()
}

impl SwapInfo {
    pub fn free_slots(&self) -> u64 {
        self.slots - 1 - self.lock.lock().inuse
    }
}

/// Allocates `nr` contiguous slots (aligned to `nr`) for a folio, marked
/// SWAP_HAS_CACHE. ENOSPC is reported as ENOMEM (the device is full).
pub fn folio_alloc_swap(folio: &Folio) -> Result<swp_entry_t, Errno> {
    let si = swap_info(0).ok_or(ENOMEM)?;
    if !si.writeok.load(Ordering::Acquire) {
        return Err(ENOMEM);
    }
    let nr = folio.nr_pages() as u64;
    let mut m = si.lock.lock();
    if m.inuse + nr > si.slots - 1 {
        return Err(ENOMEM);
    }
    // Aligned candidates from the cursor to the end, then from the start.
    let first = nr.max(1);
    let start = (m.next.max(first)).div_ceil(nr) * nr;
    let candidates = (start..si.slots).step_by(nr as usize).chain((first..start).step_by(nr as usize));
    for off in candidates {
        if off + nr <= si.slots && (off..off + nr).all(|o| m.map[o as usize] == 0) {
            for o in off..off + nr {
                m.map[o as usize] = SWAP_HAS_CACHE;
            }
            m.inuse += nr;
            m.next = off + nr;
            return Ok(swp_entry(si.ty, off));
        }
    }
    Err(ENOMEM)
}

/// Frees slots whose count and cache pin are both gone.
fn swap_range_free(m: &mut SwapMap, ty: u8, off: u64) {
    m.inuse -= 1;
    super::mteswap::arch_swap_invalidate_page(swp_entry(ty, off));
}

fn with_slot<R>(entry: swp_entry_t, f: impl FnOnce(&mut SwapMap, usize) -> R) -> Option<R> {
    let si = get_swap_device(entry)?;
    let off = swp_offset(entry);
    if off == 0 || off >= si.slots {
        return None;
    }
    let mut m = si.lock.lock();
    Some(f(&mut m, off as usize))
}

/// One more swap pte refers to `entry` (fork, try_to_unmap).
pub fn swap_duplicate(entry: swp_entry_t) -> Result<(), Errno> {
    with_slot(entry, |m, o| {
        let c = m.map[o] & !SWAP_HAS_CACHE;
        if m.map[o] == 0 {
            return Err(ENOENT);
        }
        if c >= SWAP_MAP_MAX {
            return Err(ENOMEM);
        }
        m.map[o] += 1;
        Ok(())
    })
    .unwrap_or(Err(EINVAL))
}

/// A swap pte referring to `entry` is gone; frees the slot with its last
/// reference when no folio holds it in the swap cache.
pub fn swap_free(entry: swp_entry_t) {
    let ty = swp_type(entry);
    with_slot(entry, |m, o| {
        assert!(m.map[o] & !SWAP_HAS_CACHE > 0, "swap_free of an entry with no count: {entry:?}");
        m.map[o] -= 1;
        if m.map[o] == 0 {
            swap_range_free(m, ty, o as u64);
        }
    });
}

/// The swap cache let go of `entry` (put_swap_folio).
pub fn put_swap_cache(entry: swp_entry_t) {
    let ty = swp_type(entry);
    with_slot(entry, |m, o| {
        assert!(m.map[o] & SWAP_HAS_CACHE != 0, "swap cache pin missing on {entry:?}");
        m.map[o] &= !SWAP_HAS_CACHE;
        if m.map[o] == 0 {
            swap_range_free(m, ty, o as u64);
        }
    });
}

/// swapcache_prepare: pins the slot for a folio being read in. EEXIST if a
/// folio already has it (someone is swapping it in), ENOENT if it is free.
pub fn swapcache_prepare(entry: swp_entry_t) -> Result<(), Errno> {
    with_slot(entry, |m, o| {
        if m.map[o] & SWAP_HAS_CACHE != 0 {
            Err(EEXIST)
        } else if m.map[o] == 0 {
            Err(ENOENT)
        } else {
            m.map[o] |= SWAP_HAS_CACHE;
            Ok(())
        }
    })
    .unwrap_or(Err(EINVAL))
}

/// The number of swap ptes referring to `entry` (without the cache pin).
pub fn swap_count(entry: swp_entry_t) -> u8 {
    with_slot(entry, |m, o| m.map[o] & !SWAP_HAS_CACHE).unwrap_or(0)
}

/// The raw swap_map byte (for tests and the checker).
pub fn swap_map(entry: swp_entry_t) -> u8 {
    with_slot(entry, |m, o| m.map[o]).unwrap_or(0)
}

/// Every slot in use as (entry, swap_map byte).
pub fn slots_in_use() -> Vec<(swp_entry_t, u8)> {
    let mut out = Vec::new();
    for si in SWAP_INFO.lock().iter().flatten() {
        let m = si.lock.lock();
        for (o, &c) in m.map.iter().enumerate().skip(1) {
            if c != 0 {
                out.push((swp_entry(si.ty, o as u64), c));
            }
        }
    }
    out
}

/// Sector of `entry`'s slot on the RAM-disk.
pub fn slot_sector(entry: swp_entry_t) -> u64 {
    swp_offset(entry) * SECTORS_PER_PAGE
}
