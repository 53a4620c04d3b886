//! Knobs: settings a test changes for its duration that are not orderings
//! or faults (a small swap device, reclaim keeping folios in the swap
//! cache, the THP tunables that Linux has in sysfs). Each is declared once
//! with its default, which the command line may change at boot; a test
//! sets one through a guard that puts the previous value back when
//! dropped, and the harness puts every knob back to its default after
//! every test.

use core::sync::atomic::{AtomicU64, Ordering};

pub struct Knob {
    pub name: &'static str,
    /// The path that reads it.
    pub path: &'static str,
    /// What a non-default value does.
    pub what: &'static str,
    default: AtomicU64,
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
        Knob { name, path, what, default: AtomicU64::new(default), value: AtomicU64::new(default) }
    }

    /// The value every test starts with.
    pub fn default(&self) -> u64 {
        self.default.load(Ordering::Acquire)
    }

    /// At boot, from the command line: the default (and current) value.
    pub fn set_boot_default(&self, v: u64) {
        self.default.store(v, Ordering::Release);
        self.value.store(v, Ordering::Release);
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

// THP (Linux's /sys/kernel/mm/transparent_hugepage), values as
// cmdline::ThpEnabled and cmdline::ThpOrderPolicy; mm::huge_memory reads
// them.

pub static THP_ENABLED: Knob = Knob::new(
    "thp:enabled",
    "mm::huge_memory (transparent_hugepage/enabled)",
    "0 always, 1 madvise (only VM_HUGEPAGE VMAs), 2 never; transparent_hugepage= at boot",
    1,
);

pub static THP_USE_ZERO_PAGE: Knob = Knob::new(
    "thp:use_zero_page",
    "mm::huge_memory::do_huge_pmd_anonymous_page (transparent_hugepage/use_zero_page)",
    "1: a read fault on a PMD range maps the huge zero page; 0: it allocates a THP",
    1,
);

const fn order_knob(name: &'static str, default: u64) -> Knob {
    Knob::new(
        name,
        "mm::huge_memory (hugepages-<size>kB/enabled)",
        "0 always, 1 inherit (the top-level enabled), 2 madvise, 3 never; thp_anon= at boot",
        default,
    )
}

/// The per-size policies, index = folio order (2: 16 KiB .. 9: 2 MiB).
pub static THP_ORDER: [Knob; 10] = [
    order_knob("thp:unused-order-0", 3),
    order_knob("thp:unused-order-1", 3),
    order_knob("thp:hugepages-16kB", 3),
    order_knob("thp:hugepages-32kB", 3),
    order_knob("thp:hugepages-64kB", 3),
    order_knob("thp:hugepages-128kB", 3),
    order_knob("thp:hugepages-256kB", 3),
    order_knob("thp:hugepages-512kB", 3),
    order_knob("thp:hugepages-1024kB", 3),
    order_knob("thp:hugepages-2048kB", 1),
];

// khugepaged (Linux's /sys/kernel/mm/transparent_hugepage/khugepaged);
// mm::khugepaged reads them, and the three limits bind only a collapse
// that khugepaged starts (MADV_COLLAPSE ignores them, as in Linux).

pub static KHUGEPAGED_MAX_PTES_NONE: Knob = Knob::new(
    "khugepaged:max_ptes_none",
    "mm::khugepaged::hpage_collapse_scan_pmd (khugepaged/max_ptes_none)",
    "how many none or zero-page ptes a PMD range may have and still be collapsed by khugepaged",
    511,
);

pub static KHUGEPAGED_MAX_PTES_SWAP: Knob = Knob::new(
    "khugepaged:max_ptes_swap",
    "mm::khugepaged::hpage_collapse_scan_pmd (khugepaged/max_ptes_swap)",
    "how many swap ptes khugepaged swaps in to collapse a PMD range",
    64,
);

pub static KHUGEPAGED_MAX_PTES_SHARED: Knob = Knob::new(
    "khugepaged:max_ptes_shared",
    "mm::khugepaged::hpage_collapse_scan_pmd (khugepaged/max_ptes_shared)",
    "how many pages mapped by more than one pte khugepaged lets a collapse copy",
    256,
);

pub static KHUGEPAGED_PAGES_TO_SCAN: Knob = Knob::new(
    "khugepaged:pages_to_scan",
    "mm::khugepaged::khugepaged_do_scan (khugepaged/pages_to_scan)",
    "pages (512 per PMD range) khugepaged scans per pass before it sleeps",
    4096,
);

pub static KHUGEPAGED_SCAN_SLEEP_MILLISECS: Knob = Knob::new(
    "khugepaged:scan_sleep_millisecs",
    "mm::khugepaged::khugepaged thread (khugepaged/scan_sleep_millisecs)",
    "how long the khugepaged thread sleeps between passes",
    10_000,
);

pub static SOAK_PASSES: Knob = Knob::new(
    "soak:passes",
    "mm::tag_soak::run from suites::soak (the soak= word sets it at boot)",
    "how many store-then-verify passes the tag-integrity soak makes over all free memory",
    1,
);

pub static SOAK_FLIP_PA: Knob = Knob::new(
    "soak:flip_pa",
    "mm::tag_soak::run, between the first pass's stores and its reads",
    "the tag of the granule at this physical address is changed, as a faulty tag-storage cell would (0: off)",
    0,
);

pub static FUZZ_SEED: Knob = Knob::new(
    "fuzz:seed",
    "script::fuzz::random_programs (the fuzz=SEED:COUNT word sets it at boot)",
    "the seed the fuzzer's programs are made from",
    1,
);

/// For testing the fuzzer's tools (scripts/fuzz-minimise.py) on a failure
/// the kernel cannot report itself: the interpreter panics on purpose.
pub static SCRIPT_FAIL_ON_MPROTECT: Knob = Knob::new(
    "script:fail_on_mprotect",
    "script::run (an mprotect statement)",
    "1: the script interpreter panics when it runs an mprotect statement, 2: it hangs there (deliberate)",
    0,
);

/// Differential testing against Linux (scripts/vs-linux.py): scripts and
/// fuzz programs print what each statement did (script::observe).
pub static SCRIPT_OBSERVE: Knob = Knob::new(
    "script:observe",
    "script::observe (scripts and fuzz::random_programs)",
    "1: each statement's observable result is printed for comparison with Linux instead of checked against the model",
    0,
);

pub static FUZZ_COUNT: Knob = Knob::new(
    "fuzz:count",
    "script::fuzz::random_programs (the fuzz=SEED:COUNT word sets it at boot)",
    "how many programs the fuzzer runs",
    4,
);

pub static ALL: &[&Knob] = &[
    &SWAP_SLOT_LIMIT,
    &KEEP_IN_SWAPCACHE,
    &OBSERVE_NOTIFIER,
    &RAMDISK_BAD_SECTOR,
    &THP_ENABLED,
    &THP_USE_ZERO_PAGE,
    &THP_ORDER[2],
    &THP_ORDER[3],
    &THP_ORDER[4],
    &THP_ORDER[5],
    &THP_ORDER[6],
    &THP_ORDER[7],
    &THP_ORDER[8],
    &THP_ORDER[9],
    &KHUGEPAGED_MAX_PTES_NONE,
    &KHUGEPAGED_MAX_PTES_SWAP,
    &KHUGEPAGED_MAX_PTES_SHARED,
    &KHUGEPAGED_PAGES_TO_SCAN,
    &KHUGEPAGED_SCAN_SLEEP_MILLISECS,
    &SOAK_PASSES,
    &SOAK_FLIP_PA,
    &FUZZ_SEED,
    &FUZZ_COUNT,
    &SCRIPT_FAIL_ON_MPROTECT,
    &SCRIPT_OBSERVE,
];

/// Every knob back to its default; the names of those that were not.
pub fn reset_all() -> alloc::vec::Vec<&'static str> {
    ALL.iter().filter(|k| k.value.swap(k.default(), Ordering::AcqRel) != k.default()).map(|k| k.name).collect()
}
