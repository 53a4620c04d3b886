//! The on-target test harness.
//!
//! Tests are registered with `kernel_test!` into the `.kernel_tests` linker
//! section (no nightly features), named `suite::test`, and each returns
//! pass, fail (with a reason) or skip (with a reason). The serial log is the
//! report: `RUN suite::test` before each test, then one of
//! `PASS: suite::test`, `FAIL: suite::test: reason`, `SKIP: suite::test: reason`,
//! and a last line `N passed, N failed, N skipped`.
//!
//! Each test runs guarded: an unexpected exception fails that test with the
//! decoded syndrome and the run goes on. After each test the harness checks
//! for stray asynchronous tag-check faults and leaked frames, and puts the
//! CPU's MTE state back.

pub mod cleanup;
pub mod filter;
pub mod scratch;
pub mod watchdog;

use crate::arch::{cpu, mte, trap};
use crate::cmdline::{Cmdline, MteMode};
use crate::println;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use spin::Mutex;

/// Why a test did not pass.
#[derive(Debug)]
pub enum Verdict {
    Fail(String),
    Skip(String),
}

pub type TestResult = Result<(), Verdict>;

/// One registered test.
#[repr(C)]
pub struct TestDesc {
    pub suite: &'static str,
    pub name: &'static str,
    /// Source line, to run a suite in the order it is written.
    pub line: u32,
    /// Runs only when named in full (for example a deliberately failing test).
    pub explicit_only: bool,
    /// Runs only when a filter names its suite or itself, not in a run of
    /// everything (a long test with a CI step of its own).
    pub on_request: bool,
    /// CPUs the test needs; with fewer online it is skipped, saying so.
    pub min_cpus: usize,
    /// Needs the swap RAM-disk; without one (ramdisk=0) it is skipped.
    pub needs_ramdisk: bool,
    /// The host runner's time limit for this test in seconds (0: its
    /// default); announced on the PLAN line.
    pub timeout_s: u32,
    pub run: Body,
}

/// What a test runs: a function registered with `kernel_test!`, or one
/// made at run time from loaded data (a script) with its argument.
#[derive(Clone, Copy)]
pub enum Body {
    Fn(fn() -> TestResult),
    With(fn(usize) -> TestResult, usize),
}

/// Tests made at run time (scripts loaded from the initrd), after the
/// registered ones.
static RUNTIME_TESTS: Mutex<Vec<&'static TestDesc>> = Mutex::new(Vec::new());

/// Adds a test made at run time; it is selected and reported like any
/// other. It lives for the rest of the boot.
pub fn register(t: TestDesc) {
    RUNTIME_TESTS.lock().push(alloc::boxed::Box::leak(alloc::boxed::Box::new(t)));
}

/// Registers `fn $name() -> TestResult` as test `$suite::$name`, with
/// options in any order: `cpus = N` (it needs N CPUs) and `ramdisk` (the
/// swap RAM-disk; the harness skips it, saying why, without them),
/// `timeout = S` (the host runner's per-test limit in seconds, instead of
/// its default), `explicit_only` (it runs only when named in full),
/// `on_request` (it runs when its suite or name is given, not in a run of
/// everything).
#[macro_export]
macro_rules! kernel_test {
    ($suite:ident, $name:ident $(, $($opt:tt)+)?) => {
        $crate::kernel_test!(@opt $suite, $name, [false, false, 1, false, 0] $(, $($opt)+)?);
    };
    (@opt $s:ident, $n:ident, [$e:expr, $q:expr, $c:expr, $r:expr, $t:expr], cpus = $v:literal $(, $($rest:tt)+)?) => {
        $crate::kernel_test!(@opt $s, $n, [$e, $q, $v, $r, $t] $(, $($rest)+)?);
    };
    (@opt $s:ident, $n:ident, [$e:expr, $q:expr, $c:expr, $r:expr, $t:expr], ramdisk $(, $($rest:tt)+)?) => {
        $crate::kernel_test!(@opt $s, $n, [$e, $q, $c, true, $t] $(, $($rest)+)?);
    };
    (@opt $s:ident, $n:ident, [$e:expr, $q:expr, $c:expr, $r:expr, $t:expr], explicit_only $(, $($rest:tt)+)?) => {
        $crate::kernel_test!(@opt $s, $n, [true, $q, $c, $r, $t] $(, $($rest)+)?);
    };
    (@opt $s:ident, $n:ident, [$e:expr, $q:expr, $c:expr, $r:expr, $t:expr], on_request $(, $($rest:tt)+)?) => {
        $crate::kernel_test!(@opt $s, $n, [$e, true, $c, $r, $t] $(, $($rest)+)?);
    };
    (@opt $s:ident, $n:ident, [$e:expr, $q:expr, $c:expr, $r:expr, $t:expr], timeout = $v:literal $(, $($rest:tt)+)?) => {
        $crate::kernel_test!(@opt $s, $n, [$e, $q, $c, $r, $v] $(, $($rest)+)?);
    };
    (@opt $suite:ident, $name:ident, [$explicit:expr, $on_request:expr, $cpus:expr, $ramdisk:expr, $timeout:expr]) => {
        const _: () = {
            #[used]
            #[link_section = ".kernel_tests"]
            static TEST: $crate::harness::TestDesc = $crate::harness::TestDesc {
                suite: stringify!($suite),
                name: stringify!($name),
                line: line!(),
                explicit_only: $explicit,
                on_request: $on_request,
                min_cpus: $cpus,
                needs_ramdisk: $ramdisk,
                timeout_s: $timeout,
                run: $crate::harness::Body::Fn($name),
            };
        };
    };
}

/// Fails the test with a formatted reason unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::harness::Verdict::Fail(alloc::format!($($arg)+)));
        }
    };
}

/// Fails the test unless `left == right`, showing both.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($arg:tt)+) => {
        match (&$left, &$right) {
            (l, r) => {
                if l != r {
                    return Err($crate::harness::Verdict::Fail(alloc::format!(
                        "{}: expected {:?}, got {:?}", alloc::format!($($arg)+), r, l)));
                }
            }
        }
    };
}

#[macro_export]
macro_rules! fail {
    ($($arg:tt)+) => { return Err($crate::harness::Verdict::Fail(alloc::format!($($arg)+))) };
}

#[macro_export]
macro_rules! skip {
    ($($arg:tt)+) => { return Err($crate::harness::Verdict::Skip(alloc::format!($($arg)+))) };
}

// Only the addresses of these linker symbols are used.
#[allow(improper_ctypes)]
extern "C" {
    static __kernel_tests_start: TestDesc;
    static __kernel_tests_end: TestDesc;
}

/// Every registered test, by suite and then source order.
pub fn all_tests() -> Vec<&'static TestDesc> {
    // SAFETY: the linker section holds only TestDesc statics placed by
    // kernel_test!, contiguous and aligned (linker.ld aligns the start).
    let tests: &'static [TestDesc] = unsafe {
        let start = &raw const __kernel_tests_start;
        let end = &raw const __kernel_tests_end;
        core::slice::from_raw_parts(start, end.offset_from(start) as usize)
    };
    let mut v: Vec<&TestDesc> = tests.iter().collect();
    v.sort_by(|a, b| (a.suite, a.line).cmp(&(b.suite, b.line)));
    v.extend(RUNTIME_TESTS.lock().iter().copied());
    v
}

pub fn full_name(t: &TestDesc) -> String {
    alloc::format!("{}::{}", t.suite, t.name)
}

static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);
static SKIPPED: AtomicUsize = AtomicUsize::new(0);
static CURRENT: Mutex<Option<&'static TestDesc>> = Mutex::new(None);
static MODE: Mutex<MteMode> = Mutex::new(MteMode::Sync);
/// `report=lava`: results also as LAVA-CASE lines.
static LAVA: AtomicBool = AtomicBool::new(false);

/// The result for LAVA's test monitors (boards/lava/): one line per test,
/// its case id the test's name, and for a failure or skip a second case
/// `NAME.reason` whose id carries the reason (LAVA keeps a monitor case's
/// id text, and nothing else of the line, in its result).
fn lava_case(result: &str, name: &str, why: Option<&str>) {
    if !LAVA.load(Ordering::Relaxed) {
        return;
    }
    println!("LAVA-CASE: {result} {name}");
    if let Some(why) = why {
        let why: String = why.chars().take(120).map(|c| if c.is_control() { ' ' } else { c }).collect();
        println!("LAVA-CASE: {result} {name}.reason: {why}");
    }
}

/// Counts a result and prints its line (and, with report=lava, its
/// LAVA-CASE lines). Every result line of a run goes through here, so the
/// summary, the host runner and LAVA see the same results.
fn record(name: &str, result: &TestResult) {
    match result {
        Ok(()) => {
            PASSED.fetch_add(1, Ordering::Relaxed);
            println!("PASS: {name}");
            lava_case("pass", name, None);
        }
        Err(Verdict::Fail(why)) => {
            FAILED.fetch_add(1, Ordering::Relaxed);
            println!("FAIL: {name}: {why}");
            lava_case("fail", name, Some(why));
        }
        Err(Verdict::Skip(why)) => {
            SKIPPED.fetch_add(1, Ordering::Relaxed);
            println!("SKIP: {name}: {why}");
            lava_case("skip", name, Some(why));
        }
    }
}

fn record_fail(name: &str, why: String) {
    record(name, &Err(Verdict::Fail(why)));
}

/// The watchdog's report of a test over its limit; the run ends after it.
fn report_hang(t: &'static TestDesc, limit_s: u64) {
    crate::console::take_over();
    let name = full_name(t);
    record_fail(&name, alloc::format!("timed out after {limit_s} s (in-kernel watchdog)"));
    println!("Bail out! {name} hung");
    summary();
}

fn summary() {
    println!(
        "{} passed, {} failed, {} skipped",
        PASSED.load(Ordering::Relaxed),
        FAILED.load(Ordering::Relaxed),
        SKIPPED.load(Ordering::Relaxed)
    );
}

/// Called by the panic handler with the panic's text: the test whose result
/// is not printed yet failed (or, between tests, the harness did) and this
/// boot is over. The host runner boots a fresh kernel for the tests after
/// it (`after=`).
pub fn report_panic(what: &dyn core::fmt::Display) {
    let current = CURRENT.try_lock().and_then(|c| *c);
    match current {
        Some(t) => record_fail(&full_name(t), alloc::format!("kernel panic: {what}")),
        None => record_fail("harness::run", alloc::format!("kernel panic between tests: {what}")),
    }
    println!("Bail out! kernel panic");
    summary();
}

/// Sets this CPU's MTE state to what every test starts from.
pub fn reset_cpu_state() {
    let tcf = match *MODE.lock() {
        MteMode::Sync => mte::TcfMode::Sync,
        MteMode::Async => mte::TcfMode::Async,
        MteMode::Asymm => mte::TcfMode::Asymm,
    };
    mte::set_tcf(tcf);
    mte::set_tcf0(mte::TcfMode::Sync);
    mte::set_tcma0(false);
    mte::set_tcma1(true);
    mte::set_exclude(1 << 0xF);
    mte::clear_async_faults();
    crate::mm::mmu_context::leave_mm();
}

fn run_one(t: &'static TestDesc) -> TestResult {
    let online = crate::smp::online();
    if online < t.min_cpus {
        return Err(Verdict::Skip(alloc::format!("needs {} CPUs, {online} online", t.min_cpus)));
    }
    if t.needs_ramdisk && !crate::drivers::ramdisk::present() {
        return Err(Verdict::Skip(String::from("needs the swap RAM-disk (ramdisk=0 on the command line)")));
    }
    reset_cpu_state();
    let frames_before = crate::mm::frames::free_frames();
    let mut result = Ok(());
    let (i0, c0, w0) = (cpu::pmu::instructions(), cpu::pmu::cycles(), cpu::counter());
    let outcome = trap::guarded(&mut || {
        result = match t.run {
            Body::Fn(f) => f(),
            Body::With(f, arg) => f(arg),
        }
    });
    let (i1, c1, w1) = (cpu::pmu::instructions(), cpu::pmu::cycles(), cpu::counter());
    // Guest instructions read 0 unless QEMU runs with -icount.
    defmt::debug!(
        "{=str}::{=str}: {=u64} instructions, {=u64} cycles, {=u64} us",
        t.suite,
        t.name,
        i1.wrapping_sub(i0),
        c1.wrapping_sub(c0),
        (w1 - w0) * 1_000_000 / cpu::counter_freq().max(1)
    );
    let result = match outcome {
        Err(u) => Err(Verdict::Fail(alloc::format!("unexpected exception: {} (ELR {:#x})", u.event, u.elr))),
        Ok(()) => result,
    };
    let stray = mte::async_faults();
    reset_cpu_state();
    // Whatever the result, the next test starts from a clean kernel.
    let mut left = cleanup::after_test();
    let holding = crate::mm::mmu_context::release(None, 100_000);
    if holding > 0 {
        left.push(alloc::format!("{holding} CPU(s) busy with the test's mm installed"));
    }
    let left = (!left.is_empty()).then(|| alloc::format!("left behind (and put back): {}", left.join("; ")));
    let checked = crate::mm::invariants::check();
    match (result, left) {
        (Err(Verdict::Fail(why)), Some(l)) => return Err(Verdict::Fail(alloc::format!("{why}; it also {l}"))),
        (Err(v), _) => return Err(v),
        (Ok(()), Some(l)) => return Err(Verdict::Fail(alloc::format!("the test passed but {l}"))),
        (Ok(()), None) => {}
    }
    checked.map_err(|e| Verdict::Fail(alloc::format!("after the test: {e}")))?;
    if stray.any() {
        return Err(Verdict::Fail(alloc::format!("asynchronous tag-check fault left pending: {stray:?}")));
    }
    let leaked = frames_before as isize - crate::mm::frames::free_frames() as isize;
    if leaked != 0 {
        return Err(Verdict::Fail(alloc::format!("{leaked} frames leaked")));
    }
    Ok(())
}

/// Prints the declared test hooks, one grep-able line each.
fn list_hooks(h: crate::cmdline::Hooks) -> usize {
    use crate::cmdline::Hooks;
    use crate::testhooks::{fault_inject, points, variants};
    match h {
        Hooks::Variants => {
            for v in variants::ALL {
                println!(
                    "VARIANT: {} | {} | breaks: {} | reproduces: {} | caught by: {}",
                    v.name,
                    v.path,
                    v.breaks,
                    v.reproduces,
                    v.caught_by.join(", ")
                );
            }
            variants::ALL.len()
        }
        Hooks::Points => {
            for p in points::ALL {
                println!("POINT: {} | {}", p.name, p.path);
            }
            points::ALL.len()
        }
        Hooks::Knobs => {
            use crate::testhooks::knobs;
            for k in knobs::ALL {
                println!("KNOB: {} | {} | default {} | {}", k.name, k.path, k.default(), k.what);
            }
            knobs::ALL.len()
        }
        Hooks::Faults => {
            for f in fault_inject::ALL {
                println!("FAULT: {} | {}", f.name, f.site);
            }
            fault_inject::ALL.len()
        }
    }
}

/// Every declared variant must have been switched on by one of its
/// catching tests, and that test must have passed. A variant whose
/// catching tests were all skipped here (too few CPUs, no RAM-disk) is
/// not checked in this run; one whose catching tests do not exist fails.
fn every_variant_is_caught(tests: &[&'static TestDesc]) -> Result<(), String> {
    use crate::testhooks::variants;
    let mut problems = Vec::new();
    for v in variants::ALL {
        if variants::caught(v) {
            continue;
        }
        let existing: Vec<&&str> = v.caught_by.iter().filter(|n| tests.iter().any(|t| full_name(t) == **n)).collect();
        if existing.is_empty() {
            problems.push(alloc::format!("{}: no test {:?} exists", v.name, v.caught_by));
        } else if existing.iter().all(|n| SKIPPED_NAMES.lock().iter().any(|s| s == **n)) {
            defmt::info!("variant {=str} not checked in this run: its catching tests were skipped", v.name);
        } else {
            problems.push(alloc::format!("{}: not caught (by {:?})", v.name, v.caught_by));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Tests skipped in this run (for the variant check).
static SKIPPED_NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Runs the selected tests and prints the report; returns the exit status.
pub fn run(cmd: &Cmdline) -> u8 {
    *MODE.lock() = cmd.mte;
    LAVA.store(cmd.lava, Ordering::Relaxed);
    if let Some(s) = cmd.watchdog_s {
        match watchdog::start(s) {
            Some(cpu) => println!("mtekernel: watchdog on CPU {cpu} ({s} s for a test without its own limit)"),
            None => record_fail("harness::watchdog", String::from("watchdog= needs a second CPU to run on")),
        }
    }
    // After the watchdog took its CPU, if it did.
    let cpus_online = crate::smp::online();
    let tests = all_tests();
    for f in &cmd.filters {
        if !tests
            .iter()
            .any(|t| filter::selected(core::slice::from_ref(f), &full_name(t), t.explicit_only, t.on_request))
        {
            record_fail("harness::selection", alloc::format!("no test matches '{f}'"));
        }
    }
    let mut selected: Vec<&'static TestDesc> = tests
        .into_iter()
        .filter(|t| filter::selected(&cmd.filters, &full_name(t), t.explicit_only, t.on_request))
        .collect();
    if let Some(after) = &cmd.after {
        match selected.iter().position(|t| full_name(t) == *after) {
            Some(i) => {
                selected.drain(..=i);
            }
            None => {
                record_fail("harness::selection", alloc::format!("after={after} names no selected test"));
                selected.clear();
            }
        }
    }
    if let Some(h) = cmd.list_hooks {
        let n = list_hooks(h);
        println!("{n} listed");
        return 0;
    }
    if cmd.list {
        for t in &selected {
            println!("TEST: {}", full_name(t));
        }
        println!("{} tests listed", selected.len());
        return (FAILED.load(Ordering::Relaxed) != 0) as u8;
    }
    // The plan first, so the runner can account for every selected test
    // even if this boot dies early.
    let variants_check = cmd.filters.is_empty() && cmd.after.is_none();
    for t in &selected {
        match t.timeout_s {
            0 => println!("PLAN: {}", full_name(t)),
            s => println!("PLAN: {} timeout={s}", full_name(t)),
        }
    }
    if variants_check {
        println!("PLAN: harness::every_variant_is_caught");
    }
    let n = selected.len() + usize::from(variants_check);
    println!("mtekernel: running {n} test{} on {} CPUs", if n == 1 { "" } else { "s" }, cpus_online);
    for t in selected {
        let name = full_name(t);
        println!("RUN  {name}");
        // CURRENT stays set until the result line is out, so a panic on any
        // CPU before then reports this test and nothing twice.
        *CURRENT.lock() = Some(t);
        watchdog::test_started(t);
        let result = run_one(t);
        watchdog::test_ended();
        crate::testhooks::variants::note_result(&name, result.is_ok());
        if matches!(result, Err(Verdict::Skip(_))) {
            SKIPPED_NAMES.lock().push(name.clone());
        }
        record(&name, &result);
        *CURRENT.lock() = None;
    }
    // Only a run of every test in one boot can say every variant is caught.
    if variants_check {
        let r = every_variant_is_caught(&all_tests()).map_err(Verdict::Fail);
        record("harness::every_variant_is_caught", &r);
    }
    defmt::info!("heap in use at the end of the run: {=usize} bytes", crate::mm::heap::used_bytes());
    summary();
    (FAILED.load(Ordering::Relaxed) != 0) as u8
}
