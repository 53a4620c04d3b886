//! Fault injection in the shape of Linux's fault attributes (struct
//! fault_attr, should_fail(); Documentation/fault-injection): a named
//! attribute per injection site, armed with an interval (fail every Nth
//! call), a number of times (how many failures at most, -1 for no limit)
//! and a probability (percent). The site asks `should_fail()` once per
//! operation. The harness disarms every attribute after every test.
//! `./qemu-run.sh --list-faults` prints them.

use core::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};

const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

pub struct FaultAttr {
    pub name: &'static str,
    /// Where `should_fail()` is asked, and what a failure does there.
    pub site: &'static str,
    interval: AtomicU64,
    times: AtomicI64,
    probability: AtomicU32,
    /// Calls since armed.
    calls: AtomicU64,
    /// Failures injected since armed.
    failed: AtomicU64,
    seed: AtomicU64,
}

/// How an attribute fails: `interval` 1 and `probability` 100 fail every
/// call; `times` -1 keeps failing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Spec {
    pub interval: u64,
    pub times: i64,
    pub probability: u32,
}

impl Spec {
    /// Fails the `n`th call from now (1 = the next one), once.
    pub const fn nth(n: u64) -> Spec {
        Spec { interval: n, times: 1, probability: 100 }
    }

    /// Fails every call while armed.
    pub const fn always() -> Spec {
        Spec { interval: 1, times: -1, probability: 100 }
    }
}

/// Disarms its attribute when dropped.
#[must_use = "the injection is disarmed as soon as the guard is dropped"]
pub struct Armed(&'static FaultAttr);

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.disarm();
    }
}

impl FaultAttr {
    const fn new(name: &'static str, site: &'static str) -> FaultAttr {
        FaultAttr {
            name,
            site,
            interval: AtomicU64::new(0),
            times: AtomicI64::new(0),
            probability: AtomicU32::new(0),
            calls: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            seed: AtomicU64::new(SEED),
        }
    }

    /// Arms the attribute; every arming starts the same pseudo-random
    /// sequence, so a run with a probability replays exactly.
    pub fn arm(&'static self, s: Spec) -> Armed {
        self.seed.store(SEED, Ordering::Release);
        self.calls.store(0, Ordering::Release);
        self.failed.store(0, Ordering::Release);
        self.probability.store(s.probability.min(100), Ordering::Release);
        self.interval.store(s.interval.max(1), Ordering::Release);
        self.times.store(s.times, Ordering::Release);
        Armed(self)
    }

    fn disarm(&self) -> bool {
        self.interval.swap(0, Ordering::AcqRel) != 0
    }

    /// Failures injected since the attribute was last armed.
    pub fn failures(&self) -> u64 {
        self.failed.load(Ordering::Acquire)
    }

    /// should_fail(): asked once per operation at the site.
    pub fn should_fail(&self) -> bool {
        let interval = self.interval.load(Ordering::Acquire);
        if interval == 0 {
            return false;
        }
        let times = self.times.load(Ordering::Acquire);
        if times == 0 {
            return false;
        }
        let n = self.calls.fetch_add(1, Ordering::AcqRel) + 1;
        if !n.is_multiple_of(interval) {
            return false;
        }
        let p = self.probability.load(Ordering::Acquire);
        if p < 100 {
            // xorshift64: deterministic from arming, so a run can be replayed.
            let mut x = self.seed.load(Ordering::Acquire);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            self.seed.store(x, Ordering::Release);
            if (x % 100) as u32 >= p {
                return false;
            }
        }
        if times > 0 {
            self.times.fetch_sub(1, Ordering::AcqRel);
        }
        self.failed.fetch_add(1, Ordering::AcqRel);
        true
    }
}

pub static RAMDISK_READ: FaultAttr =
    FaultAttr::new("ramdisk_read", "drivers::ramdisk::submit: a read request completes with an I/O error");
pub static RAMDISK_WRITE: FaultAttr =
    FaultAttr::new("ramdisk_write", "drivers::ramdisk::submit: a write request completes with an I/O error");
pub static MTESWAP_SAVE: FaultAttr =
    FaultAttr::new("mteswap_save", "mm::mteswap::arch_prepare_to_swap: saving one page's tags fails with ENOMEM");
pub static FOLIO_ALLOC: FaultAttr =
    FaultAttr::new("folio_alloc", "mm::folio::Folio::alloc: the page allocation fails (out of memory)");

pub static PTE_ALLOC: FaultAttr = FaultAttr::new(
    "pte_alloc",
    "mm::pgtable::alloc_table: a page-table page for a user address space cannot be allocated (out of memory)",
);

pub static ALL: &[&FaultAttr] = &[&RAMDISK_READ, &RAMDISK_WRITE, &MTESWAP_SAVE, &FOLIO_ALLOC, &PTE_ALLOC];

/// Disarms every attribute; the names of those that were armed.
pub fn reset_all() -> alloc::vec::Vec<&'static str> {
    ALL.iter().filter(|f| f.disarm()).map(|f| f.name).collect()
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    static A: FaultAttr = FaultAttr::new("a", "a test site");

    #[test]
    fn unarmed_never_fails() {
        assert!((0..100).all(|_| !A.should_fail()));
    }

    #[test]
    fn interval_and_times() {
        static B: FaultAttr = FaultAttr::new("b", "a test site");
        let g = B.arm(Spec { interval: 3, times: 2, probability: 100 });
        let fails: Vec<usize> = (1..=12).filter(|_| B.should_fail()).collect();
        assert_eq!(fails.len(), 2);
        assert_eq!(B.failures(), 2);
        drop(g);
        assert!(!B.should_fail(), "disarmed by the guard");
        let _g = B.arm(Spec::nth(4));
        let calls: Vec<bool> = (0..8).map(|_| B.should_fail()).collect();
        assert_eq!(calls, [false, false, false, true, false, false, false, false], "the 4th call fails, once");
    }

    #[test]
    fn which_calls_fail_with_an_interval() {
        static C: FaultAttr = FaultAttr::new("c", "a test site");
        let _g = C.arm(Spec { interval: 3, times: -1, probability: 100 });
        let calls: Vec<bool> = (0..9).map(|_| C.should_fail()).collect();
        assert_eq!(calls, [false, false, true, false, false, true, false, false, true]);
    }

    #[test]
    fn probability_fails_some_and_replays() {
        static D: FaultAttr = FaultAttr::new("d", "a test site");
        let run = || {
            let _g = D.arm(Spec { interval: 1, times: -1, probability: 30 });
            (0..1000).map(|_| D.should_fail()).collect::<Vec<bool>>()
        };
        let first = run();
        let n = first.iter().filter(|&&f| f).count();
        assert!((200..400).contains(&n), "30% of 1000 calls failed {n} times");
        assert_eq!(run(), first, "every arming fails the same calls");
    }

    #[test]
    fn reset_names_the_armed() {
        static E: FaultAttr = FaultAttr::new("e", "a test site");
        core::mem::forget(E.arm(Spec::nth(1)));
        assert!(E.disarm());
        assert!(!E.disarm());
    }
}
