//! The kernel command line (DTB /chosen/bootargs). Pure logic: host unit
//! tests include this file.
//!
//! Words:
//!   test=PATTERN[,PATTERN...]  run only matching tests (repeatable; a suite,
//!                              a `suite::prefix`, or a glob with *)
//!   list                       print the selected test names and stop
//!   list-variants              print the declared known-wrong variants and stop
//!   list-points                print the named schedule points and stop
//!   list-faults                print the fault-injection attributes and stop
//!   list-knobs                 print the test knobs with their defaults and stop
//!   after=SUITE::TEST          run only the selected tests that come after
//!                              this one (the host runner resumes a run with
//!                              it after a panic or a hang)
//!   exit=semihosting|psci      how to end the run (default psci)
//!   mte=sync|async|asymm       EL1 tag-check mode between tests (default sync)
//!   ramdisk=SIZE               RAM-disk (swap device) size: bytes, or with a
//!                              K/M/G suffix; 0 for none (default 32M)
//!   bench=swap|uffd|thp|collapse|fault run a benchmark instead of the tests
//!   transparent_hugepage=always|madvise|never
//!                              THP for PMD-sized anonymous folios (Linux's
//!                              boot parameter; default madvise)
//!   thp_anon=SIZES:POLICY[;SIZES:POLICY...]
//!                              per-size anonymous (m)THP policies as Linux's
//!                              thp_anon: SIZES a comma list of sizes or
//!                              ranges (16K-64K, 2M), POLICY always, inherit,
//!                              madvise or never (default: never below 2M,
//!                              inherit at 2M)
//!   soak=N                     passes of the tag-integrity soak
//!                              (soak::tag_integrity; default 1)
//!   fuzz=SEED:COUNT            the fuzzer's seed and number of programs
//!                              (fuzz::random_programs; default 1:4; the
//!                              seed decimal or 0x hex)
//!   knob=NAME=VALUE            a test knob's value for the whole run
//!                              (list-knobs names them; repeatable)
//! Words a bootloader adds for Linux (console=, earlycon=, root=, rw, quiet,
//! loglevel=, ...; see LINUX_WORDS) are accepted and ignored, and listed
//! in `ignored` so the kernel can say so. Any other unknown word is an
//! error: a typo must not silently run everything.

use alloc::string::String;
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitMethod {
    Psci,
    Semihosting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MteMode {
    Sync,
    Async,
    Asymm,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmdline {
    pub filters: Vec<String>,
    pub list: bool,
    /// `list-variants`, `list-points` or `list-faults`: what to list instead of running.
    pub list_hooks: Option<Hooks>,
    pub exit: ExitMethod,
    pub mte: MteMode,
    /// RAM-disk size in bytes (a multiple of 4 KiB).
    pub ramdisk: u64,
    /// A benchmark to run instead of the tests.
    pub bench: Option<Bench>,
    /// Resume: skip the selected tests up to and including this one.
    pub after: Option<String>,
    /// transparent_hugepage= (the top-level `enabled`).
    pub thp_enabled: ThpEnabled,
    /// The policy of each anonymous folio order 2..=9 (index = order).
    pub thp_anon: [ThpOrderPolicy; 10],
    /// Linux words a bootloader added, accepted and ignored.
    pub ignored: Vec<String>,
    /// `report=lava`: each result also as LAVA-CASE lines for LAVA's test
    /// monitors (boards/lava/).
    pub lava: bool,
    /// `watchdog=S`: the last CPU times every test in-kernel (S seconds for
    /// a test that declares no limit), for runs no host runner watches.
    pub watchdog_s: Option<u32>,
    /// `soak=N`: passes of the tag-integrity soak.
    pub soak_passes: u32,
    /// `fuzz=SEED:COUNT`.
    pub fuzz: Option<(u64, u64)>,
    /// `knob=NAME=VALUE` words, in order (the names are checked at boot).
    pub knobs: Vec<(String, u64)>,
}

/// Linux command-line words that bootloaders and board farms add (with or
/// without a value); they mean nothing to this kernel.
pub const LINUX_WORDS: &[&str] = &[
    "console",
    "earlycon",
    "earlyprintk",
    "root",
    "rootwait",
    "rootfstype",
    "rootdelay",
    "rw",
    "ro",
    "quiet",
    "debug",
    "loglevel",
    "ignore_loglevel",
    "init",
    "rdinit",
    "initrd",
    "panic",
    "nokaslr",
    "kaslr",
    "ip",
    "nfsroot",
    "mem",
    "maxcpus",
    "nr_cpus",
    "printk.devkmsg",
    "systemd.unit",
    "cma",
    "iomem",
    "efi",
    "acpi",
    "no_console_suspend",
    "arm64.nomte",
    "kasan",
    "kasan.mode",
    "splash",
    "net.ifnames",
];

/// /sys/kernel/mm/transparent_hugepage/enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ThpEnabled {
    Always = 0,
    Madvise = 1,
    Never = 2,
}

/// hugepages-<size>kB/enabled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ThpOrderPolicy {
    Always = 0,
    Inherit = 1,
    Madvise = 2,
    Never = 3,
}

/// The lowest and highest anonymous THP orders (16 KiB and 2 MiB).
pub const THP_MIN_ORDER: usize = 2;
pub const THP_PMD_ORDER: usize = 9;

/// Linux's defaults: PMD size inherits the top-level setting, the smaller
/// sizes are off until enabled.
pub const fn default_thp_anon() -> [ThpOrderPolicy; 10] {
    let mut p = [ThpOrderPolicy::Never; 10];
    p[THP_PMD_ORDER] = ThpOrderPolicy::Inherit;
    p
}

/// "16K", "2M", "1024K": the folio order of that size.
fn thp_order_of(size: &str) -> Option<usize> {
    let bytes = parse_size(size)?;
    let order = (bytes / 4096).trailing_zeros() as usize;
    (bytes.is_power_of_two() && bytes >= 4096 && (THP_MIN_ORDER..=THP_PMD_ORDER).contains(&order)).then_some(order)
}

/// thp_anon=16K-64K:always;128K,512K:inherit;2M:never
fn parse_thp_anon(v: &str, policies: &mut [ThpOrderPolicy; 10]) -> Result<(), String> {
    let bad = |what: &str| {
        alloc::format!("thp_anon: {what} in '{v}' (sizes 16K to 2M, policies always, inherit, madvise, never)")
    };
    for group in v.split(';') {
        let (sizes, policy) = group.split_once(':').ok_or_else(|| bad("a group without ':POLICY'"))?;
        let policy = match policy {
            "always" => ThpOrderPolicy::Always,
            "inherit" => ThpOrderPolicy::Inherit,
            "madvise" => ThpOrderPolicy::Madvise,
            "never" => ThpOrderPolicy::Never,
            _ => return Err(bad(&alloc::format!("the unknown policy '{policy}'"))),
        };
        for item in sizes.split(',') {
            let (lo, hi) = match item.split_once('-') {
                Some((a, b)) => (a, b),
                None => (item, item),
            };
            let lo = thp_order_of(lo).ok_or_else(|| bad(&alloc::format!("the size '{lo}'")))?;
            let hi = thp_order_of(hi).ok_or_else(|| bad(&alloc::format!("the size '{hi}'")))?;
            if lo > hi {
                return Err(bad(&alloc::format!("the backwards range '{item}'")));
            }
            for p in &mut policies[lo..=hi] {
                *p = policy;
            }
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hooks {
    Variants,
    Points,
    Faults,
    Knobs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bench {
    Swap,
    Uffd,
    Thp,
    Collapse,
    Fault,
}

pub const DEFAULT_RAMDISK: u64 = 32 << 20;

/// `123`, `64K`, `32M`, `1G`: a size in bytes, a whole number of pages.
/// A number in decimal or 0x hex (a seed, a knob's value).
fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse::<u64>().ok(),
    }
}

fn parse_size(v: &str) -> Option<u64> {
    let (num, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let n: u64 = num.parse().ok()?;
    let bytes = n.checked_mul(1 << shift)?;
    (bytes % 4096 == 0).then_some(bytes)
}

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            filters: Vec::new(),
            list: false,
            list_hooks: None,
            exit: ExitMethod::Psci,
            mte: MteMode::Sync,
            ramdisk: DEFAULT_RAMDISK,
            bench: None,
            after: None,
            thp_enabled: ThpEnabled::Madvise,
            thp_anon: default_thp_anon(),
            ignored: Vec::new(),
            lava: false,
            watchdog_s: None,
            soak_passes: 1,
            fuzz: None,
            knobs: Vec::new(),
        }
    }
}

pub fn parse(s: &str) -> Result<Cmdline, String> {
    let mut c = Cmdline::default();
    for word in s.split_ascii_whitespace() {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        if LINUX_WORDS.contains(&key) {
            c.ignored.push(String::from(word));
            continue;
        }
        match (key, value) {
            ("list", None) => c.list = true,
            ("transparent_hugepage", Some("always")) => c.thp_enabled = ThpEnabled::Always,
            ("transparent_hugepage", Some("madvise")) => c.thp_enabled = ThpEnabled::Madvise,
            ("transparent_hugepage", Some("never")) => c.thp_enabled = ThpEnabled::Never,
            ("transparent_hugepage", Some(v)) => {
                return Err(alloc::format!("transparent_hugepage= wants always, madvise or never, not '{v}'"))
            }
            ("thp_anon", Some(v)) => parse_thp_anon(v, &mut c.thp_anon)?,
            ("list-variants", None) => c.list_hooks = Some(Hooks::Variants),
            ("list-points", None) => c.list_hooks = Some(Hooks::Points),
            ("list-faults", None) => c.list_hooks = Some(Hooks::Faults),
            ("list-knobs", None) => c.list_hooks = Some(Hooks::Knobs),
            ("test", Some(v)) => {
                for p in v.split(',') {
                    if p.is_empty() {
                        return Err(alloc::format!("empty test pattern in '{word}'"));
                    }
                    c.filters.push(String::from(p));
                }
            }
            ("after", Some(v)) if v.contains("::") => c.after = Some(String::from(v)),
            ("after", Some(v)) => return Err(alloc::format!("after= wants a full test name (suite::test), not '{v}'")),
            ("report", Some("lava")) => c.lava = true,
            ("report", Some(v)) => return Err(alloc::format!("report= wants lava, not '{v}'")),
            ("watchdog", Some(v)) => match v.parse::<u32>() {
                Ok(s) if s > 0 => c.watchdog_s = Some(s),
                _ => return Err(alloc::format!("watchdog= wants a number of seconds above 0, not '{v}'")),
            },
            ("exit", Some("semihosting")) => c.exit = ExitMethod::Semihosting,
            ("exit", Some("psci")) => c.exit = ExitMethod::Psci,
            ("mte", Some("sync")) => c.mte = MteMode::Sync,
            ("mte", Some("async")) => c.mte = MteMode::Async,
            ("mte", Some("asymm")) => c.mte = MteMode::Asymm,
            ("bench", Some("swap")) => c.bench = Some(Bench::Swap),
            ("bench", Some("uffd")) => c.bench = Some(Bench::Uffd),
            ("bench", Some("thp")) => c.bench = Some(Bench::Thp),
            ("bench", Some("collapse")) => c.bench = Some(Bench::Collapse),
            ("bench", Some("fault")) => c.bench = Some(Bench::Fault),
            ("bench", Some(v)) => {
                return Err(alloc::format!("unknown benchmark '{v}' in '{word}' (known: swap, uffd, thp, collapse)"))
            }
            ("fuzz", Some(v)) => match v.split_once(':').map(|(a, b)| (parse_number(a), parse_number(b))) {
                Some((Some(seed), Some(count))) if count > 0 => c.fuzz = Some((seed, count)),
                _ => return Err(alloc::format!("fuzz= wants SEED:COUNT with COUNT above 0, not '{v}'")),
            },
            ("knob", Some(v)) => match v.split_once('=').map(|(n, x)| (n, parse_number(x))) {
                Some((name, Some(x))) if !name.is_empty() => c.knobs.push((String::from(name), x)),
                _ => return Err(alloc::format!("knob= wants NAME=VALUE with a number, not '{v}'")),
            },
            ("soak", Some(v)) => match v.parse::<u32>() {
                Ok(n) if n > 0 => c.soak_passes = n,
                _ => return Err(alloc::format!("soak= wants a number of passes above 0, not '{v}'")),
            },
            ("ramdisk", Some(v)) => {
                c.ramdisk = parse_size(v)
                    .ok_or_else(|| alloc::format!("'{v}' is not a size in whole 4 KiB pages in '{word}'"))?
            }
            ("exit" | "mte", Some(v)) => {
                return Err(alloc::format!("'{v}' is not a valid value for {key}= in '{word}'"))
            }
            _ => return Err(alloc::format!("unknown kernel command-line word '{word}'")),
        }
    }
    Ok(c)
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    #[test]
    fn lava_report_and_watchdog() {
        let c = parse("report=lava watchdog=300").unwrap();
        assert!(c.lava);
        assert_eq!(c.watchdog_s, Some(300));
        assert!(parse("report=junit").unwrap_err().contains("report= wants lava"));
        assert!(parse("watchdog=0").unwrap_err().contains("above 0"));
        assert!(parse("watchdog=soon").unwrap_err().contains("'soon'"));
    }

    #[test]
    fn knob_words() {
        let c = parse("knob=script:fail_on_mprotect=1 knob=swap:slot_limit=0x10").unwrap();
        assert_eq!(c.knobs, [(String::from("script:fail_on_mprotect"), 1), (String::from("swap:slot_limit"), 16)]);
        assert!(parse("knob=x").unwrap_err().contains("NAME=VALUE"));
        assert!(parse("knob==1").is_err());
        assert!(parse("knob=a=b").is_err());
    }

    #[test]
    fn fuzz_seed_and_count() {
        assert_eq!(Cmdline::default().fuzz, None);
        assert_eq!(parse("fuzz=7:100").unwrap().fuzz, Some((7, 100)));
        assert_eq!(parse("fuzz=0x1f:1").unwrap().fuzz, Some((31, 1)));
        assert!(parse("fuzz=7").unwrap_err().contains("SEED:COUNT"));
        assert!(parse("fuzz=7:0").unwrap_err().contains("above 0"));
        assert!(parse("fuzz=x:1").is_err());
    }

    #[test]
    fn soak_passes() {
        assert_eq!(Cmdline::default().soak_passes, 1);
        assert_eq!(parse("soak=40").unwrap().soak_passes, 40);
        assert!(parse("soak=0").unwrap_err().contains("above 0"));
        assert!(parse("soak=-1").unwrap_err().contains("'-1'"));
    }

    #[test]
    fn empty_is_default() {
        assert_eq!(parse("").unwrap(), Cmdline::default());
        assert_eq!(parse("   ").unwrap(), Cmdline::default());
    }

    #[test]
    fn filters_accumulate_and_split_on_commas() {
        let c = parse("test=mte_hw::ldg test=a,b list exit=semihosting mte=async").unwrap();
        assert_eq!(c.filters, ["mte_hw::ldg", "a", "b"]);
        assert!(c.list);
        assert_eq!(c.exit, ExitMethod::Semihosting);
        assert_eq!(c.mte, MteMode::Async);
    }

    #[test]
    fn unknown_word_is_an_error_naming_it() {
        let e = parse("test=x frobnicate").unwrap_err();
        assert!(e.contains("frobnicate"), "{e}");
    }

    #[test]
    fn after_names_one_full_test() {
        assert_eq!(parse("after=swap::x test=swap").unwrap().after.as_deref(), Some("swap::x"));
        assert_eq!(parse("").unwrap().after, None);
        assert!(parse("after=swap").unwrap_err().contains("suite::test"));
    }

    #[test]
    fn hook_listing_words() {
        assert_eq!(parse("list-variants").unwrap().list_hooks, Some(Hooks::Variants));
        assert_eq!(parse("list-points").unwrap().list_hooks, Some(Hooks::Points));
        assert_eq!(parse("list-faults").unwrap().list_hooks, Some(Hooks::Faults));
        assert_eq!(parse("list-knobs").unwrap().list_hooks, Some(Hooks::Knobs));
    }

    #[test]
    fn linux_words_a_bootloader_adds_are_ignored_and_listed() {
        let c = parse("console=ttyAMA0,115200 root=/dev/ram0 rw quiet loglevel=8 earlycon test=mm").unwrap();
        assert_eq!(c.filters, ["mm"]);
        assert_eq!(c.ignored, ["console=ttyAMA0,115200", "root=/dev/ram0", "rw", "quiet", "loglevel=8", "earlycon"]);
        // Our own words keep their strict checks; unknown ones still fail.
        assert!(parse("console=ttyAMA0 ramdisk=lots").is_err());
        assert!(parse("consol=ttyAMA0").unwrap_err().contains("consol"));
    }

    #[test]
    fn thp_settings_parse_as_linux_spells_them() {
        let c = parse("").unwrap();
        assert_eq!(c.thp_enabled, ThpEnabled::Madvise);
        assert_eq!(c.thp_anon[9], ThpOrderPolicy::Inherit);
        assert_eq!(c.thp_anon[4], ThpOrderPolicy::Never);
        assert_eq!(parse("transparent_hugepage=never").unwrap().thp_enabled, ThpEnabled::Never);
        let c = parse("thp_anon=16K-64K:always;128K,512K:inherit;256K:madvise;1M-2M:never").unwrap();
        use ThpOrderPolicy::*;
        assert_eq!(c.thp_anon[2..=9], [Always, Always, Always, Inherit, Madvise, Inherit, Never, Never]);
        assert!(parse("transparent_hugepage=sometimes").unwrap_err().contains("sometimes"));
        assert!(parse("thp_anon=8K:always").unwrap_err().contains("'8K'"));
        assert!(parse("thp_anon=4M:always").unwrap_err().contains("'4M'"));
        assert!(parse("thp_anon=48K:always").unwrap_err().contains("'48K'"));
        assert!(parse("thp_anon=64K-16K:always").unwrap_err().contains("backwards"));
        assert!(parse("thp_anon=64K:often").unwrap_err().contains("often"));
        assert!(parse("thp_anon=64K").unwrap_err().contains(":POLICY"));
        assert!(parse("list-nothing").is_err());
    }

    #[test]
    fn bench_word() {
        assert_eq!(parse("bench=swap").unwrap().bench, Some(Bench::Swap));
        assert_eq!(parse("bench=uffd").unwrap().bench, Some(Bench::Uffd));
        assert_eq!(parse("bench=thp").unwrap().bench, Some(Bench::Thp));
        assert_eq!(parse("bench=collapse").unwrap().bench, Some(Bench::Collapse));
        assert_eq!(parse("bench=fault").unwrap().bench, Some(Bench::Fault));
        assert_eq!(parse("").unwrap().bench, None);
        assert!(parse("bench=zap").unwrap_err().contains("zap"));
    }

    #[test]
    fn ramdisk_sizes() {
        assert_eq!(parse("").unwrap().ramdisk, DEFAULT_RAMDISK);
        assert_eq!(parse("ramdisk=64M").unwrap().ramdisk, 64 << 20);
        assert_eq!(parse("ramdisk=8192").unwrap().ramdisk, 8192);
        assert_eq!(parse("ramdisk=1G").unwrap().ramdisk, 1 << 30);
        assert_eq!(parse("ramdisk=0").unwrap().ramdisk, 0);
        for bad in ["ramdisk=", "ramdisk=12", "ramdisk=3X", "ramdisk=M", "ramdisk=-4K", "ramdisk=99999999999999G"] {
            assert!(parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn bad_values_are_errors() {
        assert!(parse("exit=reboot").unwrap_err().contains("reboot"));
        assert!(parse("mte=none").is_err());
        assert!(parse("test=").is_err());
        assert!(parse("test=a,,b").is_err());
        assert!(parse("list=1").is_err());
    }
}
