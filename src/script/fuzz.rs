//! The fuzzer: random programs in the operation language over 2 to 4
//! tasks, run by the interpreter against the shadow model. After every
//! operation the pages it touched are checked (the generated program says
//! so with `check` lines, so a printed program replays exactly), every
//! range of every task at the end, and the invariant checker runs every
//! few operations. A failing program is minimised (statements dropped
//! while it still fails at its last one) and printed as a script.
//!
//! Deterministic: program i of `fuzz=SEED:COUNT` comes from
//! `program_seed(SEED, i)` alone, and `fuzz=S:1` with that seed reruns it.

use super::lang::{Advice, Kind, Op, Prot, Script, Sel, Stmt, TagPat, Thp};
use super::model::Model;
use super::run::{execute, Failure, RunError};
use crate::harness::{TestResult, Verdict};
use crate::testhooks::knobs;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// splitmix64: small, and the same on every machine.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, v: &'a [T]) -> &'a T {
        &v[self.below(v.len() as u64) as usize]
    }
}

/// The seed of program `i` of a run from `seed`: the first is `seed`
/// itself, so `--fuzz P:1` reruns program P.
pub fn program_seed(seed: u64, i: u64) -> u64 {
    match i {
        0 => seed,
        _ => Rng::new(seed ^ i.wrapping_mul(0xA24B_AED4_963E_E407)).next(),
    }
}

/// What the generator may use.
#[derive(Clone, Copy)]
pub struct Options {
    pub swap: bool,
    pub ops: u32,
    /// CPUs online: with more than one, some operations run on another
    /// CPU (`on cpu N` blocks), so the same seed gives the same program
    /// only at the same -smp.
    pub cpus: u32,
}

struct Gen {
    rng: Rng,
    model: Model,
    stmts: Vec<Stmt>,
    names: u32,
    cpus: u32,
}

impl Gen {
    fn push(&mut self, kind: Kind) {
        self.push_on(None, kind);
    }

    fn push_on(&mut self, cpu: Option<u32>, kind: Kind) {
        let line = self.stmts.len() as u32 + 1;
        let st = Stmt { line, cpu, kind };
        // The generation-time model keeps names and sizes current.
        let ok = match &st.kind {
            Kind::Task(n) => self.model.spawn(n).is_ok(),
            Kind::Op { task, op, .. } => self.model.apply(task, op, line).is_ok(),
            _ => true,
        };
        debug_assert!(ok, "the generator made a statement its own model rejects");
        self.stmts.push(st);
    }

    /// One operation, now and then on a CPU other than the boot CPU (the
    /// task's address space then runs there, with its own TLB). Fork and
    /// exit stay on the boot CPU, where the interpreter runs them.
    fn op(&mut self, task: &str, op: Op) {
        let movable = !matches!(op, Op::Fork(_) | Op::Exit);
        let cpu = if self.cpus > 1 && movable && self.rng.chance(20) {
            Some(1 + self.rng.below(u64::from(self.cpus - 1)) as u32)
        } else {
            None
        };
        self.push_on(cpu, Kind::Op { task: task.into(), op, expect: None });
    }

    fn new_task_name(&mut self) -> String {
        self.names += 1;
        format!("T{}", self.names)
    }

    fn live(&self) -> Vec<String> {
        self.model.tasks.keys().cloned().collect()
    }

    fn ranges(&self, t: &str) -> Vec<(String, u32, Prot, bool)> {
        self.model.tasks[t]
            .ranges
            .iter()
            .map(|(n, r)| (n.clone(), r.pages.len() as u32, r.pages[0].prot, r.pages[0].missing || r.pages[0].wp_reg))
            .collect()
    }

    fn sel(&mut self, range: &str, len: u32) -> Sel {
        if self.rng.chance(20) {
            return Sel { range: range.into(), first: 0, count: None };
        }
        let first = self.rng.below(u64::from(len)) as u32;
        let count = 1 + self.rng.below(u64::from((len - first).min(8))) as u32;
        Sel { range: range.into(), first, count: Some(count) }
    }

    fn check(&mut self, task: &str, sel: &Sel) {
        if self.model.tasks.get(task).is_some_and(|t| t.ranges.contains_key(&sel.range)) {
            self.op(task, Op::Check(sel.clone()));
        }
    }

    fn one(&mut self, task: &str, thp: bool) {
        let ranges = self.ranges(task);
        let roll = self.rng.below(100);
        if ranges.is_empty() || (roll < 12 && ranges.len() < 3) {
            let name = format!("r{}", self.stmts.len());
            let pages = if thp && self.rng.chance(15) { 512 } else { 1 + self.rng.below(8) as u32 };
            let prot = match self.rng.below(10) {
                0..=6 => Prot { read: true, write: true, mte: true },
                7 | 8 => Prot { read: true, write: true, mte: false },
                _ => Prot { read: true, write: false, mte: true },
            };
            let populate = self.rng.chance(20);
            self.op(task, Op::Mmap { range: name, pages, prot, populate });
            return;
        }
        let (range, len, prot, registered) = self.rng.pick(&ranges).clone();
        let sel = self.sel(&range, len);
        match roll {
            0..=34 => {
                let seed = 1 + self.rng.below(1 << 20);
                let tag = match self.rng.below(10) {
                    0..=6 => Some(TagPat { tag: self.rng.below(16) as u8, ramp: false }),
                    7 => Some(TagPat { tag: self.rng.below(16) as u8, ramp: true }),
                    _ => None,
                };
                self.op(task, Op::Write { sel: sel.clone(), seed: Some(seed), tag });
                self.check(task, &sel);
            }
            35..=44 => self.check(task, &sel),
            45..=59 => {
                let a = *self.rng.pick(&[
                    Advice::DontNeed,
                    Advice::PageOut,
                    Advice::PageOut,
                    Advice::HugePage,
                    Advice::Collapse,
                ]);
                self.op(task, Op::Madvise(sel.clone(), a));
                self.check(task, &sel);
            }
            60..=63 => {
                let p = Prot { read: true, write: !self.rng.chance(50), mte: prot.mte };
                self.op(task, Op::Mprotect(sel.clone(), p));
                self.check(task, &sel);
            }
            64..=65 => self.op(task, Op::Munmap(sel)),
            66..=71 if self.model.tasks.len() < 4 => {
                let child = self.new_task_name();
                self.op(task, Op::Fork(child.clone()));
                self.check(&child, &Sel { range, first: 0, count: None });
            }
            72..=73 if self.model.tasks.len() > 1 => self.op(task, Op::Exit),
            74..=79 if !registered => {
                let (missing, wp) = match self.rng.below(6) {
                    0..=3 => (true, false),
                    4 => (false, true),
                    _ => (true, true),
                };
                let whole = Sel { range, first: 0, count: None };
                self.op(task, Op::UffdRegister { sel: whole, missing, wp });
            }
            74..=99 if registered => self.uffd(task, &ranges, &range, len, prot, sel),
            _ => self.check(task, &sel),
        }
    }

    fn uffd(&mut self, task: &str, ranges: &[(String, u32, Prot, bool)], dst: &str, len: u32, prot: Prot, sel: Sel) {
        let count = sel.count.unwrap_or(len - sel.first);
        let sources: Vec<&(String, u32, Prot, bool)> =
            ranges.iter().filter(|(n, l, p, _)| n != dst && *p == prot && *l >= count).collect();
        match self.rng.below(10) {
            0..=4 if !sources.is_empty() => {
                let (src, slen, _, _) = (*self.rng.pick(&sources)).clone();
                let first = self.rng.below(u64::from(slen - count + 1)) as u32;
                let s = Sel { range: src, first, count: Some(count) };
                let d = Sel { range: dst.into(), first: sel.first, count: Some(count) };
                self.op(task, Op::UffdMove { dst: d.clone(), src: s.clone() });
                self.check(task, &d);
                self.check(task, &s);
            }
            // Not from a registered source: a hole there would wait for
            // a handler inside the ioctl.
            5 | 6 if sources.iter().any(|s| !s.3) => {
                let plain: Vec<&(String, u32, Prot, bool)> = sources.iter().copied().filter(|s| !s.3).collect();
                let (src, slen, _, _) = (*self.rng.pick(&plain)).clone();
                let first = self.rng.below(u64::from(slen - count + 1)) as u32;
                let s = Sel { range: src, first, count: Some(count) };
                let d = Sel { range: dst.into(), first: sel.first, count: Some(count) };
                self.op(task, Op::UffdCopy { dst: d.clone(), src: s });
                self.check(task, &d);
            }
            7 => {
                self.op(task, Op::UffdZeropage(sel.clone()));
                self.check(task, &sel);
            }
            _ => {
                let on = self.rng.chance(60);
                self.op(task, Op::UffdWp(sel.clone(), on));
            }
        }
    }
}

/// Program `seed` as a script.
pub fn generate(seed: u64, o: Options) -> Script {
    let mut g = Gen { rng: Rng::new(seed), model: Model::new(), stmts: Vec::new(), names: 0, cpus: o.cpus };
    let first = g.new_task_name();
    g.push(Kind::Task(first));
    if g.rng.chance(50) {
        let second = g.new_task_name();
        g.push(Kind::Task(second));
    }
    if o.swap && g.rng.chance(60) {
        g.push(Kind::Swapon);
    }
    let thp = g.rng.chance(30);
    if thp {
        g.push(Kind::Thp(Thp::Madvise));
    }
    for _ in 0..o.ops {
        let live = g.live();
        if live.is_empty() {
            break;
        }
        let t = g.rng.pick(&live).clone();
        g.one(&t, thp);
    }
    for t in g.live() {
        for (range, _, _, _) in g.ranges(&t) {
            g.check(&t, &Sel { range, first: 0, count: None });
        }
    }
    Script { file: format!("fuzz-{seed:#x}.txt"), stmts: g.stmts }
}

fn fails_like(s: &Script, at_end: bool) -> bool {
    match execute(s, 8) {
        Err(RunError { at, failure: Failure::Kernel(_) }) => {
            if at_end {
                at == s.stmts.len()
            } else {
                at + 1 == s.stmts.len()
            }
        }
        _ => false,
    }
}

/// The shortest program found that still fails the way `s` fails at
/// statement `at` (its last statement, or after it).
pub fn minimise(s: &Script, at: usize) -> Script {
    let at_end = at >= s.stmts.len();
    let mut cur = Script { file: s.file.clone(), stmts: s.stmts[..at.min(s.stmts.len() - 1) + 1].to_vec() };
    loop {
        let mut changed = false;
        let mut i = cur.stmts.len().saturating_sub(1);
        while i > 0 {
            i -= 1;
            let mut cand = cur.clone();
            cand.stmts.remove(i);
            if fails_like(&cand, at_end) {
                cur = cand;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    for (i, st) in cur.stmts.iter_mut().enumerate() {
        st.line = i as u32 + 1;
    }
    cur
}

/// The program running now, for the panic handler's note.
static RUNNING: AtomicU64 = AtomicU64::new(0);

/// Called on a panic: which program (if any) was running.
pub fn note_panic() {
    let seed = RUNNING.load(Ordering::Acquire);
    if seed != 0 {
        crate::println!(
            "fuzz: the panic came in program seed {seed:#x}; `./qemu-run.sh --fuzz {seed:#x}:1 fuzz::random_programs` reruns it, `scripts/fuzz-minimise.py {seed:#x}` minimises it"
        );
    }
}

/// Runs program `seed`; a failure is minimised and printed. With `show`,
/// the program is printed first: a panic or a hang, which the kernel
/// cannot minimise, then still leaves it behind for
/// scripts/fuzz-minimise.py.
pub fn run_one(seed: u64, o: Options, show: bool) -> Result<usize, String> {
    let mut s = generate(seed, o);
    if super::observe::on_request() {
        return observe_one(seed, &mut s);
    }
    if show {
        crate::println!("fuzz: program seed {seed:#x}:");
        crate::println!("--- program.txt");
        for line in super::lang::unparse_all(&s.stmts) {
            crate::println!("{line}");
        }
        crate::println!("--- end");
    }
    RUNNING.store(seed, Ordering::Release);
    let r = execute(&s, 8);
    RUNNING.store(0, Ordering::Release);
    let e = match r {
        Ok(stats) => return Ok(stats.ops),
        Err(e) => e,
    };
    let first = super::run::describe_error(&s, &e);
    if let Failure::Script(m) = &e.failure {
        return Err(format!("the generator wrote a bad program (seed {seed:#x}): {m}"));
    }
    let small = minimise(&s, e.at);
    crate::println!("fuzz: program seed {seed:#x} failed: {first}");
    crate::println!(
        "fuzz: minimised from {} to {} statements; save the lines between the markers as repro.txt and run ./qemu-run.sh --script repro.txt",
        s.stmts.len(),
        small.stmts.len()
    );
    crate::println!("--- repro.txt");
    for line in super::lang::unparse_all(&small.stmts) {
        crate::println!("{line}");
    }
    crate::println!("--- end");
    let again = execute(&small, 8).err().map(|e| super::run::describe_error(&small, &e));
    Err(format!("program seed {seed:#x}: {}", again.unwrap_or(first)))
}

/// The differential mode (script:observe=1): the program printed as a
/// script named after its seed, then what each statement did, for
/// scripts/vs-linux.py to run the same program on Linux and compare.
fn observe_one(seed: u64, s: &mut Script) -> Result<usize, String> {
    s.file = format!("fuzz-{seed:x}.txt");
    // Printed with the line numbers the file will have, which a write
    // without seed= takes its data from.
    let lines = super::lang::unparse_all(&s.stmts);
    let reparsed = super::lang::parse(&s.file, &lines.join("\n")).map_err(|e| format!("{e}"))?;
    crate::println!("--- {}", s.file);
    for line in &lines {
        crate::println!("{line}");
    }
    crate::println!("--- end");
    RUNNING.store(seed, Ordering::Release);
    let r = super::observe::run(&reparsed);
    RUNNING.store(0, Ordering::Release);
    r.map(|()| reparsed.stmts.len())
}

/// `fuzz=SEED:COUNT` (knobs fuzz:seed, fuzz:count): COUNT programs.
fn random_programs() -> TestResult {
    let (seed, count) = (knobs::FUZZ_SEED.get(), knobs::FUZZ_COUNT.get());
    let o = Options { swap: crate::drivers::ramdisk::present(), ops: 24, cpus: crate::smp::online() as u32 };
    let t0 = crate::arch::cpu::counter();
    let mut ops = 0;
    for i in 0..count {
        let s = program_seed(seed, i);
        // A rerun of one program shows it; in a longer run one short line
        // a program names the one a hang stopped in.
        if count > 1 {
            crate::println!("fuzz: program {i} seed {s:#x}");
        }
        ops += run_one(s, o, count == 1).map_err(Verdict::Fail)?;
        if (i + 1) % 50 == 0 {
            crate::println!("fuzz: {} programs, {ops} operations", i + 1);
        }
    }
    let ms = (crate::arch::cpu::counter() - t0) * 1000 / crate::arch::cpu::counter_freq().max(1);
    crate::println!("FUZZ: seed={seed} programs={count} operations={ops} failures=0 ms={ms}");
    Ok(())
}
// No limit of its own: the runner's, which qemu-run.sh --fuzz scales with COUNT.
crate::kernel_test!(fuzz, random_programs);
