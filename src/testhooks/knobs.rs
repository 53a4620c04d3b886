//! Knobs: settings a test changes for its duration that are not orderings
//! or faults (a small swap device, reclaim keeping folios in the swap
//! cache). Each is declared once with its default; a test sets one through
//! a guard that puts the previous value back when dropped, and the harness
//! puts every knob back to its default after every test.

use core::sync::atomic::{AtomicU64, Ordering};

pub struct Knob {
    pub name: &'static str,
    /// The path that reads it.
    pub path: &'static str,
    /// What a non-default value does.
    pub what: &'static str,
    pub default: u64,
    value: AtomicU64,
}

/// Puts its knob's previous value back when dropped.
#[must_use = "the knob is back to its previous value as soon as the guard is dropped"]
pub struct Set {
    knob: &'static Knob,
    previous: u64,
}

impl Drop for Set {
    fn drop(&mut self) {
        self.knob.value.store(self.previous, Ordering::Release);
    }
}

impl Knob {
    const fn new(name: &'static str, path: &'static str, what: &'static str, default: u64) -> Knob {
        Knob { name, path, what, default, value: AtomicU64::new(default) }
    }

    pub fn get(&self) -> u64 {
        self.value.load(Ordering::Acquire)
    }

    pub fn set(&'static self, v: u64) -> Set {
        Set { knob: self, previous: self.value.swap(v, Ordering::AcqRel) }
    }
}

pub static SWAP_SLOT_LIMIT: Knob = Knob::new(
    "swap:slot_limit",
    "mm::swapfile::swapon",
    "the next swapon uses at most this many slots (0: the whole RAM-disk), so a test can fill the device",
    0,
);

pub static KEEP_IN_SWAPCACHE: Knob = Knob::new(
    "vmscan:keep_in_swapcache",
    "mm::vmscan::shrink_folio",
    "1: a folio written to swap stays in the swap cache instead of being freed",
    0,
);

pub static OBSERVE_NOTIFIER: Knob = Knob::new(
    "uffd_move:observe_notifier",
    "mm::uffd_move (mmu_notifier calls)",
    "1: every secondary-MMU notifier call of a move is recorded with the locks held at the call",
    0,
);

/// No bad sector.
pub const NO_SECTOR: u64 = u64::MAX;

pub static RAMDISK_BAD_SECTOR: Knob = Knob::new(
    "ramdisk:bad_sector",
    "drivers::ramdisk::submit",
    "every read covering this sector fails, as bad media would (NO_SECTOR: none)",
    NO_SECTOR,
);

pub static ALL: &[&Knob] = &[&SWAP_SLOT_LIMIT, &KEEP_IN_SWAPCACHE, &OBSERVE_NOTIFIER, &RAMDISK_BAD_SECTOR];

/// Every knob back to its default; the names of those that were not.
pub fn reset_all() -> alloc::vec::Vec<&'static str> {
    ALL.iter().filter(|k| k.value.swap(k.default, Ordering::AcqRel) != k.default).map(|k| k.name).collect()
}
