//! Fault-injection sweeps (suite `sweep`, run on request: `./qemu-run.sh
//! sweep`, a CI step of its own): each key scenario (tests/scripts/sweep/) runs
//! again and again with the 1st, 2nd, ... Nth call of one fault attribute
//! failing (page allocation, page-table allocation, RAM-disk read, RAM-disk
//! write, tag save), until a run completes without reaching the Nth call
//! (every N up to 64, then every 8th).
//!
//! A run may show the failure only where Linux shows it: a failed swap-in
//! read is SIGBUS on the access (or EIO/ENOMEM from swapoff), a failed
//! allocation is the task killed for lack of memory or ENOMEM from the
//! call; a failed write or tag save must not be visible at all. After a
//! visible failure the operation is taken as not done, the injection is
//! disarmed and every page of every task must still hold its data and
//! tags. At the end no swap slot and no tag-storage entry may be left (the
//! harness checks the frames).

use super::lang::{self, Kind};
use super::run::{Failure, Machine};
use crate::harness::{TestResult, Verdict};
use crate::testhooks::fault_inject::{self as fi, FaultAttr, Spec};
use alloc::format;
use alloc::string::String;

/// The injected failures a sweep goes through, and what each may look like
/// to the task when it is visible (texts of the interpreter's failures).
const ATTRS: &[(&FaultAttr, &[&str])] = &[
    (
        &fi::FOLIO_ALLOC,
        &["out of memory", "returned ENOMEM", "swapoff returned ENOMEM", "spawning a task: Errno(12)", "fork: "],
    ),
    (
        &fi::PTE_ALLOC,
        &["out of memory", "returned ENOMEM", "swapoff returned ENOMEM", "spawning a task: Errno(12)", "fork: "],
    ),
    (&fi::RAMDISK_READ, &["Bus {", "swapoff returned EIO", "swapoff returned ENOMEM"]),
    (&fi::RAMDISK_WRITE, &[]),
    (&fi::MTESWAP_SAVE, &[]),
];

/// Runs more than this many times per attribute are a runaway scenario.
const MAX_RUNS: u64 = 400;

/// Every call up to the 64th fails in turn; past it every 8th (a 2 MiB
/// folio is 512 writes, and the 300th is no different from the 301st),
/// so a sweep of a large folio stays within a CI minute.
fn next_call(n: u64) -> u64 {
    if n < 64 {
        n + 1
    } else {
        n + 8
    }
}

/// One run of `s` with `attr` failing its `n`th call: Ok(true) if the
/// failure was injected (and lost nothing), Ok(false) if the scenario never
/// reached the `n`th call.
fn one_run(s: &lang::Script, attr: &'static FaultAttr, visible: &[&str], n: u64) -> Result<bool, String> {
    let mut m = Machine::new();
    // Each run writes bytes of its own, so a write the kernel lost cannot
    // be covered up by what an earlier run left in the same swap slot.
    let of_attr = attr.name.bytes().fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    m.salt = n.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ of_attr;
    let armed = attr.arm(Spec::nth(n));
    for st in &s.stmts {
        let before = m.model.clone();
        match m.step(st) {
            Ok(()) => {}
            Err(Failure::Script(e)) => return Err(format!("{}:{}: {e}", s.file, st.line)),
            Err(Failure::Kernel(e)) => {
                let here = format!("{}:{}: {}: {e}", s.file, st.line, lang::unparse(st));
                if attr.failures() == 0 {
                    return Err(format!("with {} armed but not yet failed: {here}", attr.name));
                }
                if !visible.iter().any(|v| e.contains(v)) {
                    return Err(format!("{} failing its call {n} showed as: {here}", attr.name));
                }
                // The operation did not happen; a task the kernel killed
                // for lack of memory is gone.
                m.model = before;
                if e.contains("out of memory") {
                    if let Kind::Op { task, .. } = &st.kind {
                        m.kill(task);
                    }
                }
                break;
            }
        }
    }
    let injected = attr.failures() > 0;
    drop(armed);
    m.verify_all()
        .map_err(|e| format!("after {} failed its call {n}, data or tags were lost: {}", attr.name, e.text()))?;
    drop(m);
    crate::mm::invariants::check().map_err(|e| format!("after {} failed its call {n}: {e}", attr.name))?;
    let slots = crate::mm::swapfile::slots_in_use();
    if !slots.is_empty() {
        return Err(format!("after {} failed its call {n}: {} swap slot(s) leaked", attr.name, slots.len()));
    }
    let tags = crate::mm::mteswap::entries();
    if !tags.is_empty() {
        return Err(format!("after {} failed its call {n}: {} tag-storage entr(ies) leaked", attr.name, tags.len()));
    }
    Ok(injected)
}

fn sweep(file: &str, text: &str) -> TestResult {
    let s = lang::parse(file, text).map_err(|e| Verdict::Fail(format!("{e}")))?;
    let mut report = String::new();
    for &(attr, visible) in ATTRS {
        let (mut n, mut runs) = (1, 0);
        while one_run(&s, attr, visible, n).map_err(Verdict::Fail)? {
            runs += 1;
            n = next_call(n);
            if runs >= MAX_RUNS {
                crate::fail!("{} still reached its call {n} after {MAX_RUNS} runs", attr.name);
            }
        }
        report += &format!(" {}={runs}/{}", attr.name, n - 1);
    }
    crate::println!("SWEEP: {file}: runs with a failure injected / calls the scenario makes:{report}");
    Ok(())
}

macro_rules! sweep_test {
    ($name:ident, $file:literal) => {
        fn $name() -> TestResult {
            sweep($file, include_str!(concat!("../../tests/scripts/sweep/", $file)))
        }
        crate::kernel_test!(sweep, $name, ramdisk, on_request, timeout = 600);
    };
}

sweep_test!(swap_of_a_tagged_page, "swap-tagged-page.txt");
sweep_test!(swap_of_a_large_folio, "swap-large-folio.txt");
sweep_test!(move_of_swapped_pages, "move-swapped.txt");
sweep_test!(move_of_swap_cache_pages, "move-swapcache.txt");
sweep_test!(collapse, "collapse.txt");
sweep_test!(swapoff, "swapoff.txt");
