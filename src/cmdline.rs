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
//!   bench=swap|uffd            run a benchmark instead of the tests
//! Unknown words are an error: a typo must not silently run everything.

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
}

pub const DEFAULT_RAMDISK: u64 = 32 << 20;

/// `123`, `64K`, `32M`, `1G`: a size in bytes, a whole number of pages.
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
        match (key, value) {
            ("list", None) => c.list = true,
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
            ("exit", Some("semihosting")) => c.exit = ExitMethod::Semihosting,
            ("exit", Some("psci")) => c.exit = ExitMethod::Psci,
            ("mte", Some("sync")) => c.mte = MteMode::Sync,
            ("mte", Some("async")) => c.mte = MteMode::Async,
            ("mte", Some("asymm")) => c.mte = MteMode::Asymm,
            ("bench", Some("swap")) => c.bench = Some(Bench::Swap),
            ("bench", Some("uffd")) => c.bench = Some(Bench::Uffd),
            ("bench", Some(v)) => {
                return Err(alloc::format!("unknown benchmark '{v}' in '{word}' (known: swap, uffd)"))
            }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(parse("list-nothing").is_err());
    }

    #[test]
    fn bench_word() {
        assert_eq!(parse("bench=swap").unwrap().bench, Some(Bench::Swap));
        assert_eq!(parse("bench=uffd").unwrap().bench, Some(Bench::Uffd));
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
