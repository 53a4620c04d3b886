//! The interpreter: runs a parsed script on EL0 tasks, each operation
//! checked against the shadow model (model.rs). A failure names the file,
//! the line, the operation, what the kernel did and what the model says
//! Linux does.

use super::lang::{Expect, Kind, Op, Prot, Script, SegvWant, Stmt, TagPat, Thp};
use super::model::{Model, PageWant, Plan, Want, PAGE};
use crate::arch::mte::with_tag;
use crate::errno::Errno;
use crate::mm::mmap::*;
use crate::mm::uffd_uapi::{UffdioCopy, UffdioMove, UffdioZeropage, UFFDIO_COPY, UFFDIO_MOVE, UFFDIO_ZEROPAGE};
use crate::mm::userfaultfd::{
    UFFDIO_REGISTER_MODE_MISSING, UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT_MODE_WP, UFFD_FEATURE_MOVE,
};
use crate::suites::scenario::{Scenario, SwapOn, UffdFd};
use crate::task::agent::{fill_byte, fnv, SegvKind, Signal};
use crate::task::usys::SysResult;
use crate::task::Task;
use crate::testhooks::knobs;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

/// Why a statement failed: the script's fault (an unknown name, a
/// selector outside its range) or the kernel's (it did not do what the
/// model says).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    Script(String),
    Kernel(String),
}

impl Failure {
    pub fn text(&self) -> &str {
        match self {
            Failure::Script(s) | Failure::Kernel(s) => s,
        }
    }
}

/// What running a script did, for the caller's report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub ops: usize,
    pub pages_checked: usize,
}

/// The kernel side of a run: the tasks, their userfaultfds, swap and the
/// tunables the script set; all torn down when dropped.
pub struct Machine {
    pub(super) scenario: Scenario,
    pub(super) tasks: BTreeMap<String, Arc<Task>>,
    pub(super) uffds: BTreeMap<String, UffdFd>,
    swap: Option<SwapOn>,
    pub(super) knobs: Vec<knobs::Set>,
    pub model: Model,
    pub stats: Stats,
    /// Invariants checked every this many operations (0: never).
    pub check_every: usize,
    /// Mixed into every data seed: runs of one script with different salts
    /// write different bytes, so stale data a device kept from an earlier
    /// run can never pass for this run's.
    pub salt: u64,
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.tasks.clear();
        self.uffds.clear();
        self.scenario.teardown();
        self.swap = None;
        while let Some(k) = self.knobs.pop() {
            drop(k);
        }
    }
}

pub(super) fn prot_bits(p: Prot) -> u64 {
    (if p.read { PROT_READ } else { 0 }) | (if p.write { PROT_WRITE } else { 0 }) | (if p.mte { PROT_MTE } else { 0 })
}

fn errno_of<T>(r: Result<T, Errno>) -> Result<(), Errno> {
    r.map(|_| ())
}

pub(super) fn sys<T>(r: SysResult<T>) -> Result<Result<T, Errno>, String> {
    r.map_err(|s| format!("the task got {s:?} from a system call"))
}

fn want_matches(want: &Want, got: Result<(), Errno>) -> bool {
    match (want, got) {
        (Want::Ok, Ok(())) => true,
        (Want::Errno(e), Err(g)) => *e == g,
        (Want::OkOr(_), Ok(())) => true,
        (Want::OkOr(set), Err(g)) => set.contains(&g),
        _ => false,
    }
}

fn show(r: Result<(), Errno>) -> String {
    match r {
        Ok(()) => String::from("ok"),
        Err(e) => String::from(e.name()),
    }
}

fn show_want(w: &Want) -> String {
    match w {
        Want::Ok => String::from("ok"),
        Want::Errno(e) => String::from(e.name()),
        Want::OkOr(set) => format!("ok or one of {:?}", set.iter().map(|e| e.name()).collect::<Vec<_>>()),
        Want::Done { pages, errno: None } => format!("ok, {pages} pages done"),
        Want::Done { pages, errno: Some(e) } => format!("{} with {pages} pages done", e.name()),
    }
}

/// The want an explicit `=> outcome` stands for.
fn want_of(e: Expect, model: &Want) -> Result<Want, String> {
    match (e, model) {
        (Expect::Ok, Want::Done { pages, .. }) => Ok(Want::Done { pages: *pages, errno: None }),
        (Expect::Ok, _) => Ok(Want::Ok),
        (Expect::Errno(e), Want::Done { pages, .. }) => Ok(Want::Done { pages: *pages, errno: Some(e) }),
        (Expect::Errno(e), _) => Ok(Want::Errno(e)),
        (Expect::Segv(_), _) => Err(String::from("a system call does not fault; '=> segv' is for write and check")),
    }
}

fn page_want_of(e: Expect) -> Result<PageWant, String> {
    match e {
        Expect::Segv(w) => Ok(PageWant::Segv(w)),
        _ => Err(String::from("write and check take '=> segv', '=> segv:maperr|accerr|mte' or nothing")),
    }
}

fn segv_matches(w: SegvWant, got: &Signal) -> bool {
    match (w, got) {
        (SegvWant::Any, Signal::Segv { .. }) => true,
        (SegvWant::MapErr, Signal::Segv { kind: SegvKind::MapErr, .. }) => true,
        (SegvWant::AccErr, Signal::Segv { kind: SegvKind::AccErr, .. }) => true,
        (SegvWant::Mte, Signal::Segv { kind: SegvKind::MteSErr | SegvKind::MteAErr, .. }) => true,
        _ => false,
    }
}

fn data_hash(seed: Option<u64>, from: usize, len: usize) -> u64 {
    match seed {
        Some(s) => fnv((from..from + len).map(|i| fill_byte(s, i))),
        None => fnv(core::iter::repeat_n(0u8, len)),
    }
}

/// One page of a write, at EL0.
pub(super) fn write_page(t: &Task, addr: usize, seed: Option<u64>, tags: TagPat, mte: bool) -> Result<(), Signal> {
    let seed = seed.unwrap_or(0);
    if !mte {
        return t.fill(addr, PAGE as usize, seed);
    }
    if !tags.ramp {
        t.tag_range(with_tag(addr, tags.tag), PAGE as usize)?;
        return t.fill(with_tag(addr, tags.tag), PAGE as usize, seed);
    }
    // Data through tag 0 first, then the ramp, granule by granule.
    t.tag_range(with_tag(addr, 0), PAGE as usize)?;
    t.fill(with_tag(addr, 0), PAGE as usize, seed)?;
    for g in 0..256 {
        t.tag_range(with_tag(addr + g * 16, tags.of_granule(g)), 16)?;
    }
    Ok(())
}

/// One page of a check, at EL0: the tags read with LDG, then the data read
/// through pointers carrying those tags (a lost tag is a tag-check fault).
fn check_page(t: &Task, addr: usize, seed: Option<u64>, tags: TagPat) -> Result<Result<(), String>, Signal> {
    let got = t.page_tags(addr)?;
    if let Some(g) = (0..256).find(|&g| got[g] != tags.of_granule(g)) {
        return Ok(Err(format!(
            "tag of granule {g} at {:#x} is {:#x}, the model says {:#x}",
            addr + g * 16,
            got[g],
            tags.of_granule(g)
        )));
    }
    if !tags.ramp {
        let h = t.fnv(with_tag(addr, tags.tag), PAGE as usize)?;
        if h != data_hash(seed, 0, PAGE as usize) {
            return Ok(Err(format!("data at {addr:#x} differs from {}", describe(seed))));
        }
        return Ok(Ok(()));
    }
    for g in 0..256 {
        let h = t.fnv(with_tag(addr + g * 16, tags.of_granule(g)), 16)?;
        if h != data_hash(seed, g * 16, 16) {
            return Ok(Err(format!("data of granule {g} at {:#x} differs from {}", addr + g * 16, describe(seed))));
        }
    }
    Ok(Ok(()))
}

fn describe(seed: Option<u64>) -> String {
    match seed {
        Some(s) => format!("the fill of seed {s}"),
        None => String::from("zeroes"),
    }
}

impl Machine {
    pub fn new() -> Machine {
        Machine {
            scenario: Scenario::new(),
            tasks: BTreeMap::new(),
            uffds: BTreeMap::new(),
            swap: None,
            knobs: Vec::new(),
            model: Model::new(),
            stats: Stats::default(),
            check_every: 0,
            salt: 0,
        }
    }

    /// The task is killed (as the OOM killer would): gone from the machine
    /// and from the model.
    pub fn kill(&mut self, t: &str) {
        if let Some(task) = self.tasks.remove(t) {
            task.do_exit();
        }
        self.uffds.remove(t);
        self.model.tasks.remove(t);
    }

    /// Checks every page of every live task that holds something (data, or
    /// the zero page it was read as) against the model.
    pub fn verify_all(&mut self) -> Result<(), Failure> {
        let mut pages = Vec::new();
        for (t, tm) in &self.model.tasks {
            for (r, rm) in &tm.ranges {
                for (i, p) in rm.pages.iter().enumerate() {
                    if p.mapped && p.pop != super::model::Pop::None {
                        pages.push((t.clone(), r.clone(), i as u32));
                    }
                }
            }
        }
        for (task, range, first) in pages {
            let op = Op::Check(super::lang::Sel { range, first, count: Some(1) });
            self.step(&Stmt { line: 0, cpu: None, kind: Kind::Op { task, op, expect: None } })?;
        }
        Ok(())
    }

    pub(super) fn task(&self, t: &str) -> Result<Arc<Task>, String> {
        self.tasks.get(t).cloned().ok_or_else(|| format!("no task '{t}'"))
    }

    /// Runs one statement; the failure's text is without its place.
    pub fn step(&mut self, st: &Stmt) -> Result<(), Failure> {
        self.stats.ops += 1;
        match &st.kind {
            Kind::Op { task, op, expect } => {
                if let Op::UffdRegister { .. } = op {
                    self.model.task(task).map_err(Failure::Script)?;
                    self.open_uffd(task).map_err(Failure::Kernel)?;
                }
                let plan = self.model.apply(task, op, st.line).map_err(Failure::Script)?;
                if let Some(e) = expect {
                    let misuse = match plan {
                        Plan::Pages(_) => page_want_of(*e).err(),
                        Plan::Call { ref want, .. } => want_of(*e, want).err(),
                        _ => Some(String::from("fork and exit take no '=>'")),
                    };
                    if let Some(m) = misuse {
                        return Err(Failure::Script(m));
                    }
                }
                self.run_plan(task, op, plan, *expect, st.cpu).map_err(Failure::Kernel)?;
                if self.check_every > 0 && self.stats.ops.is_multiple_of(self.check_every) {
                    crate::mm::invariants::check().map_err(|e| Failure::Kernel(format!("invariant checker: {e}")))?;
                }
                Ok(())
            }
            Kind::Task(n) => {
                self.model.spawn(n).map_err(Failure::Script)?;
                self.machine_step(st).map_err(Failure::Kernel)
            }
            _ => self.machine_step(st).map_err(Failure::Kernel),
        }
    }

    fn machine_step(&mut self, st: &Stmt) -> Result<(), String> {
        match &st.kind {
            Kind::Task(n) => {
                let t = self.scenario.spawn().map_err(|v| format!("{v:?}"))?;
                self.tasks.insert(n.clone(), t);
                Ok(())
            }
            Kind::Swapon => {
                if self.swap.is_none() {
                    self.swap = Some(SwapOn::new().map_err(|v| format!("swapon: {v:?}"))?);
                }
                Ok(())
            }
            Kind::Swapoff => {
                if self.swap.is_some() {
                    crate::mm::swap::swapoff(0).map_err(|e| format!("swapoff returned {}", e.name()))?;
                    self.swap = None;
                }
                Ok(())
            }
            Kind::SwapcacheKeep(keep) => {
                self.knobs.push(knobs::KEEP_IN_SWAPCACHE.set(u64::from(*keep)));
                Ok(())
            }
            Kind::Thp(mode) => {
                use crate::cmdline::{ThpEnabled, ThpOrderPolicy};
                let e = match mode {
                    Thp::Always => ThpEnabled::Always,
                    Thp::Madvise => ThpEnabled::Madvise,
                    Thp::Never => ThpEnabled::Never,
                };
                self.knobs.push(knobs::THP_ENABLED.set(e as u64));
                self.knobs.push(knobs::THP_ORDER[9].set(ThpOrderPolicy::Inherit as u64));
                Ok(())
            }
            Kind::Op { .. } => unreachable!("operations are handled in step"),
        }
    }

    pub(super) fn open_uffd(&mut self, task: &str) -> Result<(), String> {
        if !self.uffds.contains_key(task) {
            let t = self.task(task)?;
            let u = UffdFd::new(&t, UFFD_FEATURE_MOVE).map_err(|v| format!("opening a userfaultfd: {v:?}"))?;
            self.uffds.insert(task.into(), u);
        }
        Ok(())
    }

    fn run_plan(
        &mut self,
        task: &str,
        op: &Op,
        plan: Plan,
        expect: Option<Expect>,
        cpu: Option<u32>,
    ) -> Result<(), String> {
        match plan {
            Plan::Spawn(_) => unreachable!("task statements are handled in step"),
            Plan::Fork(child) => {
                let parent = self.task(task)?;
                let c = self.scenario.fork(&parent).map_err(|v| format!("fork: {v:?}"))?;
                self.tasks.insert(child, c);
                Ok(())
            }
            Plan::Exit => {
                let t = self.tasks.remove(task).ok_or_else(|| format!("no task '{task}'"))?;
                self.uffds.remove(task);
                match t.exit(0) {
                    Ok(()) | Err(Signal::Exited(_)) => Ok(()),
                    Err(s) => Err(format!("exit: the task got {s:?}")),
                }
            }
            Plan::Pages(pages) => {
                let t = self.task(task)?;
                let forced = expect.map(page_want_of).transpose()?;
                let is_write = matches!(op, Op::Write { .. });
                self.stats.pages_checked += if is_write { 0 } else { pages.len() };
                let salt = self.salt;
                on(cpu, move || {
                    for (addr, want) in pages {
                        let mut want = forced.unwrap_or(want);
                        if let PageWant::Access { data: Some(seed), .. } = &mut want {
                            *seed ^= salt;
                        }
                        page_op(&t, addr as usize, want, is_write)?;
                    }
                    Ok(())
                })
            }
            Plan::Call { addr, pages, src, want } => {
                let want = match expect {
                    Some(e) => want_of(e, &want)?,
                    None => want,
                };
                let t = self.task(task)?;
                let u = self.uffds.get(task).cloned();
                let op = op.clone();
                on(cpu, move || call(&t, u.as_ref(), &op, addr as usize, pages as usize, src, &want))
            }
        }
    }
}

/// Runs `f` here, or on CPU `cpu` and waits for it.
pub(super) fn on<T: Send + 'static>(
    cpu: Option<u32>,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    match cpu {
        None => f(),
        Some(c) => {
            let job = crate::suites::scenario::on_cpu(c as usize, "a script operation", f)
                .map_err(|v| format!("on cpu {c}: {v:?}"))?;
            job.join().map_err(|v| format!("on cpu {c}: {v:?}"))?
        }
    }
}

fn page_op(t: &Task, addr: usize, want: PageWant, is_write: bool) -> Result<(), String> {
    let what = if is_write { "write" } else { "check" };
    match want {
        PageWant::Access { data, tags, mte } => {
            if is_write {
                write_page(t, addr, data, tags, mte).map_err(|s| format!("{what} of {addr:#x}: the task got {s:?}"))
            } else {
                match check_page(t, addr, data, tags) {
                    Ok(r) => r,
                    Err(s) => Err(format!(
                        "{what} of {addr:#x}: the task got {s:?}; the model says it holds {} with tags {tags}",
                        describe(data)
                    )),
                }
            }
        }
        PageWant::Segv(w) => {
            let r = if is_write { t.store(addr, 0) } else { t.load(addr).map(|_| ()) };
            match r {
                Err(s) if segv_matches(w, &s) => Ok(()),
                other => Err(format!("{what} of {addr:#x}: {other:?}, the model says {}", Expect::Segv(w))),
            }
        }
        PageWant::Wait => {
            let r = if is_write { t.store(addr, 0) } else { t.load(addr).map(|_| ()) };
            match r {
                Err(Signal::UffdWait { .. }) => Ok(()),
                other => {
                    Err(format!("{what} of {addr:#x}: {other:?}, the model says it waits for the userfaultfd handler"))
                }
            }
        }
    }
}

fn need<'a>(u: Option<&'a UffdFd>) -> Result<&'a UffdFd, String> {
    u.ok_or_else(|| String::from("the task has no userfaultfd"))
}

/// A `move`/`copy`/`zeropage` field against `Want::Done`.
fn done_matches(want: &Want, r: Result<u64, Errno>, field: i64) -> Result<(), String> {
    let Want::Done { pages, errno } = want else {
        return if want_matches(want, errno_of(r)) {
            Ok(())
        } else {
            Err(format!("returned {}, the model says {}", show(errno_of(r)), show_want(want)))
        };
    };
    let bytes = i64::from(*pages) * PAGE as i64;
    let field_want = match errno {
        Some(e) if *pages == 0 => -i64::from(e.0),
        _ => bytes,
    };
    let ok = match errno {
        None => r.is_ok(),
        Some(e) => r == Err(*e),
    };
    if ok && field == field_want {
        Ok(())
    } else {
        Err(format!(
            "returned {} with the result field {field}, the model says {} (field {field_want})",
            show(errno_of(r)),
            show_want(want)
        ))
    }
}

fn call(
    t: &Task,
    u: Option<&UffdFd>,
    op: &Op,
    addr: usize,
    pages: usize,
    src: Option<u64>,
    want: &Want,
) -> Result<(), String> {
    let len = pages * PAGE as usize;
    let plain = |r: Result<(), Errno>| {
        if want_matches(want, r) {
            Ok(())
        } else {
            Err(format!("returned {}, the model says {}", show(r), show_want(want)))
        }
    };
    match op {
        Op::Mmap { prot, populate, .. } => {
            let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | if *populate { MAP_POPULATE } else { 0 };
            let r = sys(t.mmap(addr, len, prot_bits(*prot), flags, -1, 0))?;
            if let Ok(a) = r {
                if a != addr {
                    return Err(format!("mmap placed the range at {a:#x}, not at {addr:#x}"));
                }
            }
            plain(errno_of(r))
        }
        Op::Munmap(_) => plain(sys(t.munmap(addr, len))?),
        Op::Mprotect(_, p) => {
            match knobs::SCRIPT_FAIL_ON_MPROTECT.get() {
                0 => {}
                1 => panic!("script:fail_on_mprotect=1: a deliberate panic"),
                _ => loop {
                    crate::arch::cpu::spin_hint(); // script:fail_on_mprotect=2: a deliberate hang
                },
            }
            plain(sys(t.mprotect(addr, len, prot_bits(*p)))?)
        }
        Op::Madvise(_, a) => {
            use super::lang::Advice::*;
            let advice = match a {
                DontNeed => MADV_DONTNEED,
                PageOut => MADV_PAGEOUT,
                HugePage => MADV_HUGEPAGE,
                NoHugePage => MADV_NOHUGEPAGE,
                Collapse => MADV_COLLAPSE,
            };
            plain(sys(t.madvise(addr, len, advice))?)
        }
        Op::UffdRegister { missing, wp, .. } => {
            let mode = (if *missing { UFFDIO_REGISTER_MODE_MISSING } else { 0 })
                | (if *wp { UFFDIO_REGISTER_MODE_WP } else { 0 });
            plain(errno_of(sys(need(u)?.try_register(addr, len, mode))?))
        }
        Op::UffdWp(_, on) => {
            let mode = if *on { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 };
            plain(errno_of(sys(need(u)?.writeprotect(addr, len, mode))?))
        }
        Op::UffdZeropage(_) => {
            let z = UffdioZeropage { start: addr as u64, len: len as u64, mode: 0, zeropage: 0x5a5a };
            let (r, back) = need(u)?.call(UFFDIO_ZEROPAGE, &z).map_err(|s| format!("the task got {s:?}"))?;
            done_matches(want, r, back.zeropage)
        }
        Op::UffdCopy { .. } => {
            // The model tagged the source pointer with the source's tag.
            let src = src.expect("copy has a source");
            let c = UffdioCopy { dst: addr as u64, src, len: len as u64, mode: 0, copy: 0x5a5a };
            let (r, back) = need(u)?.call(UFFDIO_COPY, &c).map_err(|s| format!("the task got {s:?}"))?;
            done_matches(want, r, back.copy)
        }
        Op::UffdMove { .. } => {
            let src = src.expect("move has a source");
            let m = UffdioMove { dst: addr as u64, src, len: len as u64, mode: 0, moved: 0x5a5a };
            let (r, back) = need(u)?.call(UFFDIO_MOVE, &m).map_err(|s| format!("the task got {s:?}"))?;
            done_matches(want, r, back.moved)
        }
        Op::Write { .. } | Op::Check(_) | Op::Fork(_) | Op::Exit => unreachable!("not a system call plan"),
    }
}

/// A failed run: the index of the statement that failed (the number of
/// statements for a failure after the last) and why.
#[derive(Clone, Debug)]
pub struct RunError {
    pub at: usize,
    pub failure: Failure,
}

/// Runs a whole script from a fresh machine; every task is gone after.
pub fn execute(s: &Script, check_every: usize) -> Result<Stats, RunError> {
    let mut m = Machine::new();
    m.check_every = check_every;
    for (i, st) in s.stmts.iter().enumerate() {
        m.step(st).map_err(|failure| RunError { at: i, failure })?;
    }
    let stats = m.stats;
    let end = |what: &str, e: &str| RunError { at: s.stmts.len(), failure: Failure::Kernel(format!("{what}: {e}")) };
    crate::mm::invariants::check().map_err(|e| end("at the end, with every task alive", &e))?;
    drop(m);
    crate::mm::invariants::check().map_err(|e| end("after every task exited", &e))?;
    Ok(stats)
}

/// `file:line: statement: what went wrong` for a failed run.
pub fn describe_error(s: &Script, e: &RunError) -> String {
    match s.stmts.get(e.at) {
        Some(st) => format!("{}:{}: {}: {}", s.file, st.line, super::lang::unparse(st), e.failure.text()),
        None => format!("{}: {}", s.file, e.failure.text()),
    }
}

/// Runs a whole script; Err is `file:line: statement: what went wrong`.
pub fn run_script(s: &Script, check_every: usize) -> Result<Stats, String> {
    execute(s, check_every).map_err(|e| describe_error(s, &e))
}
