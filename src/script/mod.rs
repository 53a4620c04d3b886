//! Scenario scripts loaded at run time, and the fuzzer that writes them.
//!
//! - `lang`: the operation language (one operation a line) and its parser.
//! - `model`: the shadow model of every page's data and tags and of what
//!   each operation must return.
//! - `run`: the interpreter: each operation on EL0 tasks, checked against
//!   the model.
//! - `observe`: the same statements run for differential testing against
//!   Linux (knob script:observe=1): each one's observable result printed,
//!   for scripts/vs-linux.py to compare with tools/vs-linux's run on Linux.
//! - `cpio`: the initrd's archive format.
//! - `fuzz`: random programs in the language, checked the same way, and
//!   minimised when one fails.
//! - `sweep`: key scenarios rerun with the Nth call of each fault
//!   attribute failing, N = 1, 2, ... (nothing may be lost).
//! - `sysfuzz`: every system call and ioctl with random and edge-case
//!   arguments from EL0, each answer checked against Linux's errnos.
//!
//! Each file of the initrd (`./qemu-run.sh --script FILE...`) becomes a
//! test `script::NAME`, selected and reported like the built-in ones; a
//! script that does not parse fails with its file and line.

pub mod cpio;
pub mod fuzz;
pub mod lang;
pub mod model;
pub mod observe;
pub mod run;
pub mod sweep;
pub mod sysfuzz;

use crate::harness::{Body, TestDesc, TestResult, Verdict};
use alloc::string::String;
use alloc::vec::Vec;

/// The loaded scripts, or the parse error of each one that failed.
static LOADED: spin::Once<Vec<Result<lang::Script, String>>> = spin::Once::new();

/// The test name of a script file: its base name without the extension,
/// with characters a filter would trip on replaced.
fn test_name(file: &str) -> String {
    let base = file.rsplit('/').next().unwrap_or(file);
    let stem = base.split_once('.').map_or(base, |(s, _)| s);
    stem.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

fn needs(s: &lang::Script) -> (usize, bool) {
    let cpus = s.stmts.iter().filter_map(|st| st.cpu).max().map_or(1, |c| c as usize + 1);
    let swap = s.stmts.iter().any(|st| st.kind == lang::Kind::Swapon);
    (cpus, swap)
}

fn run_loaded(i: usize) -> TestResult {
    let Some(Some(entry)) = LOADED.get().map(|l| l.get(i)) else {
        return Err(Verdict::Fail(String::from("the script is not loaded")));
    };
    let s = entry.as_ref().map_err(|e| Verdict::Fail(e.clone()))?;
    if observe::on_request() {
        return observe::run(s).map_err(Verdict::Fail);
    }
    let stats = run::run_script(s, 8).map_err(Verdict::Fail)?;
    crate::println!("script {}: {} operations, {} pages checked", s.file, stats.ops, stats.pages_checked);
    Ok(())
}

/// Reads the scripts from the initrd, if there is one, and registers a
/// test for each. An initrd that is not a cpio newc archive is one failing
/// test, `script::initrd`.
pub fn load() {
    let Some((start, end)) = crate::platform::memory().initrd else { return };
    // SAFETY: the initrd lies in RAM the allocator never hands out (boot
    // reserved it) and nothing writes it; the linear map covers all RAM.
    let bytes = unsafe {
        core::slice::from_raw_parts(crate::arch::mmu::phys_to_virt(start) as *const u8, (end - start) as usize)
    };
    let mut loaded = Vec::new();
    let mut descs = Vec::new();
    match cpio::files(bytes) {
        Err(e) => loaded.push(Err(alloc::format!("initrd: {e}"))),
        Ok(files) if files.is_empty() => loaded.push(Err(String::from("initrd: the archive holds no files"))),
        Ok(files) => {
            for (name, data) in files {
                let parsed = match core::str::from_utf8(data) {
                    Err(_) => Err(alloc::format!("{name}: not UTF-8 text")),
                    Ok(text) => lang::parse(&name, text).map_err(|e| alloc::format!("{e}")),
                };
                descs.push((test_name(&name), parsed.as_ref().map(needs).unwrap_or((1, false))));
                loaded.push(parsed);
            }
        }
    }
    if descs.is_empty() {
        descs.push((String::from("initrd"), (1, false)));
    }
    LOADED.call_once(|| loaded);
    for (i, (name, (cpus, swap))) in descs.into_iter().enumerate() {
        crate::harness::register(TestDesc {
            suite: "script",
            name: String::leak(name),
            line: i as u32,
            explicit_only: false,
            on_request: false,
            min_cpus: cpus,
            needs_ramdisk: swap,
            timeout_s: 0,
            run: Body::With(run_loaded, i),
        });
    }
}
