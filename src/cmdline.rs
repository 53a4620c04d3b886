//! The kernel command line (DTB /chosen/bootargs). Pure logic: host unit
//! tests include this file.
//!
//! Words:
//!   test=PATTERN[,PATTERN...]  run only matching tests (repeatable; a suite,
//!                              a `suite::prefix`, or a glob with *)
//!   list                       print the selected test names and stop
//!   exit=semihosting|psci      how to end the run (default psci)
//!   mte=sync|async|asymm       EL1 tag-check mode between tests (default sync)
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
    pub exit: ExitMethod,
    pub mte: MteMode,
}

impl Default for Cmdline {
    fn default() -> Self {
        Cmdline {
            filters: Vec::new(),
            list: false,
            exit: ExitMethod::Psci,
            mte: MteMode::Sync,
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
            ("test", Some(v)) => {
                for p in v.split(',') {
                    if p.is_empty() {
                        return Err(alloc::format!("empty test pattern in '{word}'"));
                    }
                    c.filters.push(String::from(p));
                }
            }
            ("exit", Some("semihosting")) => c.exit = ExitMethod::Semihosting,
            ("exit", Some("psci")) => c.exit = ExitMethod::Psci,
            ("mte", Some("sync")) => c.mte = MteMode::Sync,
            ("mte", Some("async")) => c.mte = MteMode::Async,
            ("mte", Some("asymm")) => c.mte = MteMode::Asymm,
            ("exit" | "mte", Some(v)) => {
                return Err(alloc::format!(
                    "'{v}' is not a valid value for {key}= in '{word}'"
                ))
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
    fn bad_values_are_errors() {
        assert!(parse("exit=reboot").unwrap_err().contains("reboot"));
        assert!(parse("mte=none").is_err());
        assert!(parse("test=").is_err());
        assert!(parse("test=a,,b").is_err());
        assert!(parse("list=1").is_err());
    }
}
