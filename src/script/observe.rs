//! Differential testing against Linux: a script run that prints what each
//! statement observably did instead of checking it against the model.
//! tools/vs-linux/interp.c prints the same lines for the same script on
//! Linux, and scripts/vs-linux.py compares them. The knob script:observe=1
//! selects this mode.
//!
//! ```text
//! OBS i: line L -> RESULT      ok, an errno name, "ok N"/"ERRNO N" for the
//!                              move/copy/zeropage field, per page of a
//!                              write/check: ok, segv:maperr|accerr|mte,
//!                              wait, or d=HASH,t=TAGS (runs as TOKEN*N)
//! STATE i: A{r=TOKENS anon=N,swap=M} ... vm{pswpin=.. ...}
//! ```
//!
//! A page of STATE is `-` (none), `z` (the zero page), `pN` with `x`
//! (mapped once), `w` (uffd-wp), `h` (part of a large folio), or `sN` (a
//! swap entry, `w`): N numbers the distinct frames (swap entries) of one
//! snapshot in order of appearance, so frame sharing compares across
//! kernels. The model still supplies what the script means (addresses,
//! data seeds, tags); nothing it predicts is used.

use super::lang::{Expect, Kind, Op, Script, Stmt, TagPat};
use super::model::{default_tag, page_seed, Plan, PAGE};
use super::run::{on, prot_bits, sys, write_page, Machine};
use crate::arch::mte::with_tag;
use crate::errno::Errno;
use crate::mm::mmap::*;
use crate::mm::uffd_uapi::{UffdioCopy, UffdioMove, UffdioZeropage, UFFDIO_COPY, UFFDIO_MOVE, UFFDIO_ZEROPAGE};
use crate::mm::userfaultfd::{UFFDIO_REGISTER_MODE_MISSING, UFFDIO_REGISTER_MODE_WP, UFFDIO_WRITEPROTECT_MODE_WP};
use crate::task::agent::{fnv, SegvKind, Signal};
use crate::task::Task;
use crate::testhooks::knobs;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// The counters of Linux's /proc/vmstat that both kernels have, as
/// deltas from the start of the script.
fn vm_counters() -> [(&'static str, u64); 5] {
    let (io, thp, col) = (crate::mm::page_io::stats(), crate::mm::huge_memory::stats(), crate::mm::khugepaged::stats());
    [
        ("pswpin", io.pswpin),
        ("pswpout", io.pswpout),
        ("thp_fault_alloc", thp.thp_fault_alloc),
        ("thp_collapse_alloc", col.thp_collapse_alloc),
        ("thp_split_pmd", thp.thp_split_pmd),
    ]
}

fn errno_text(r: Result<u64, Errno>) -> String {
    match r {
        Ok(_) => String::from("ok"),
        Err(e) => String::from(e.name()),
    }
}

fn signal_text(s: &Signal) -> String {
    match s {
        Signal::Segv { kind: SegvKind::MapErr, .. } => String::from("segv:maperr"),
        Signal::Segv { kind: SegvKind::AccErr, .. } => String::from("segv:accerr"),
        Signal::Segv { kind: SegvKind::MteSErr | SegvKind::MteAErr, .. } => String::from("segv:mte"),
        Signal::UffdWait { .. } => String::from("wait"),
        other => format!("{other:?}").replace(' ', ""),
    }
}

/// Tokens with runs of one written `TOKEN*N`, space-separated.
pub fn runs(tokens: &[String]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        let n = tokens[i..].iter().take_while(|t| **t == tokens[i]).count();
        out.push(if n == 1 { tokens[i].clone() } else { format!("{}*{n}", tokens[i]) });
        i += n;
    }
    out.join(" ")
}

fn zero_page_hash() -> u64 {
    fnv(core::iter::repeat_n(0u8, PAGE as usize))
}

/// One page of a check: the tags read with LDG, the data hashed through
/// pointers carrying them (one hash of the page when its tags are
/// uniform, else a hash of the 256 granule hashes).
fn check_token(t: &Task, addr: usize) -> Result<String, Signal> {
    let tags = t.page_tags(addr)?;
    let uniform = tags.iter().all(|&g| g == tags[0]);
    let ramp = (0..256).all(|g| tags[g] == ((tags[0] as usize + g) % 16) as u8);
    let h = if uniform {
        t.fnv(with_tag(addr, tags[0]), PAGE as usize)?
    } else {
        let mut bytes = Vec::with_capacity(256 * 8);
        for (g, &tag) in tags.iter().enumerate() {
            bytes.extend_from_slice(&t.fnv(with_tag(addr + g * 16, tag), 16)?.to_le_bytes());
        }
        fnv(bytes)
    };
    let d = if h == zero_page_hash() { String::from("0") } else { format!("{h:016x}") };
    let tg = if uniform {
        format!("{}", tags[0])
    } else if ramp {
        format!("{}+", tags[0])
    } else {
        format!("#{:016x}", fnv(tags.iter().copied()))
    };
    Ok(format!("d={d},t={tg}"))
}

/// One access through an untagged pointer (`=> segv` on a write or check).
fn probe(t: &Task, addr: usize, write: bool) -> String {
    match if write { t.store(addr, 0) } else { t.load(addr).map(|_| ()) } {
        Ok(()) => String::from("ok"),
        Err(s) => signal_text(&s),
    }
}

/// What one statement did, or "ERROR ..." for the script's own fault.
fn observe_step(m: &mut Machine, st: &Stmt) -> String {
    let Kind::Op { task, op, expect } = &st.kind else {
        return match m.step(st) {
            Ok(()) => String::from("ok"),
            Err(f) => format!("ERROR {}", f.text()),
        };
    };
    match observe_op(m, task, op, *expect, st) {
        Ok(s) => s,
        Err(e) => format!("ERROR {e}"),
    }
}

fn observe_op(m: &mut Machine, task: &str, op: &Op, expect: Option<Expect>, st: &Stmt) -> Result<String, String> {
    if let Op::UffdRegister { .. } = op {
        m.model.task(task)?;
        m.open_uffd(task)?;
    }
    // The pages' PROT_MTE before the operation (a write's tags need it).
    let mte_of = |m: &Machine, sel: &super::lang::Sel| -> Vec<bool> {
        let r = &m.model.tasks[task].ranges[&sel.range];
        r.pages.iter().map(|p| p.prot.mte).collect()
    };
    let probe_only = matches!(expect, Some(Expect::Segv(_)));
    let plan_mte = match op {
        Op::Write { sel, .. } => {
            m.model.resolve(task, sel)?;
            mte_of(m, sel)
        }
        _ => Vec::new(),
    };
    let plan = m.model.apply(task, op, st.line)?;
    let cpu = st.cpu;
    match plan {
        Plan::Spawn(_) => unreachable!("task statements are not operations"),
        Plan::Fork(child) => {
            let parent = m.task(task)?;
            let c = m.scenario.fork(&parent).map_err(|v| format!("fork: {v:?}"))?;
            m.tasks.insert(child, c);
            Ok(String::from("ok"))
        }
        Plan::Exit => {
            let t = m.tasks.remove(task).ok_or_else(|| format!("no task '{task}'"))?;
            m.uffds.remove(task);
            match t.exit(0) {
                Ok(()) | Err(Signal::Exited(_)) => Ok(String::from("ok")),
                Err(s) => Err(format!("exit: the task got {s:?}")),
            }
        }
        Plan::Pages(pages) => {
            let t = m.task(task)?;
            let salt = m.salt;
            let work: Vec<(usize, Option<(u64, TagPat, bool)>)> = match op {
                Op::Write { sel, seed, tag } => {
                    let seed = seed.unwrap_or(u64::from(st.line));
                    let tags = tag.unwrap_or(default_tag(seed));
                    pages
                        .iter()
                        .enumerate()
                        .map(|(i, (addr, _))| {
                            let index = sel.first + i as u32;
                            let mte = plan_mte[index as usize];
                            (*addr as usize, Some((page_seed(seed, index) ^ salt, tags, mte)))
                        })
                        .collect()
                }
                _ => pages.iter().map(|(addr, _)| (*addr as usize, None)).collect(),
            };
            on(cpu, move || {
                let toks: Vec<String> = work
                    .into_iter()
                    .map(|(addr, w)| match (w, probe_only) {
                        (_, true) => probe(&t, addr, w.is_some()),
                        (Some((seed, tags, mte)), false) => match write_page(&t, addr, Some(seed), tags, mte) {
                            Ok(()) => String::from("ok"),
                            Err(s) => signal_text(&s),
                        },
                        (None, false) => check_token(&t, addr).unwrap_or_else(|s| signal_text(&s)),
                    })
                    .collect();
                Ok(runs(&toks))
            })
        }
        Plan::Call { addr, pages, src, .. } => {
            let t = m.task(task)?;
            let u = m.uffds.get(task).cloned();
            let op = op.clone();
            let (addr, len) = (addr as usize, pages as usize * PAGE as usize);
            on(cpu, move || {
                let need = || u.as_ref().ok_or_else(|| String::from("the task has no userfaultfd"));
                let text = match &op {
                    Op::Mmap { prot, populate, .. } => {
                        let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | if *populate { MAP_POPULATE } else { 0 };
                        errno_text(sys(t.mmap(addr, len, prot_bits(*prot), flags, -1, 0))?.map(|a| a as u64))
                    }
                    Op::Munmap(_) => errno_text(sys(t.munmap(addr, len))?.map(|_| 0)),
                    Op::Mprotect(_, p) => errno_text(sys(t.mprotect(addr, len, prot_bits(*p)))?.map(|_| 0)),
                    Op::Madvise(_, a) => {
                        use super::lang::Advice::*;
                        let advice = match a {
                            DontNeed => MADV_DONTNEED,
                            PageOut => MADV_PAGEOUT,
                            HugePage => MADV_HUGEPAGE,
                            NoHugePage => MADV_NOHUGEPAGE,
                            Collapse => MADV_COLLAPSE,
                        };
                        errno_text(sys(t.madvise(addr, len, advice))?.map(|_| 0))
                    }
                    Op::UffdRegister { missing, wp, .. } => {
                        let mode = (if *missing { UFFDIO_REGISTER_MODE_MISSING } else { 0 })
                            | (if *wp { UFFDIO_REGISTER_MODE_WP } else { 0 });
                        errno_text(sys(need()?.try_register(addr, len, mode))?)
                    }
                    Op::UffdWp(_, on) => {
                        let mode = if *on { UFFDIO_WRITEPROTECT_MODE_WP } else { 0 };
                        errno_text(sys(need()?.writeprotect(addr, len, mode))?)
                    }
                    Op::UffdZeropage(_) => {
                        let z = UffdioZeropage { start: addr as u64, len: len as u64, mode: 0, zeropage: 0x5a5a };
                        let (r, back) = need()?.call(UFFDIO_ZEROPAGE, &z).map_err(|s| format!("the task got {s:?}"))?;
                        format!("{} {}", errno_text(r), back.zeropage)
                    }
                    Op::UffdCopy { .. } => {
                        // The source pointer carries its first granule's tag
                        // as read with LDG (0 if that faults), as on Linux.
                        let src = src.expect("copy has a source") as usize & ((1 << 56) - 1);
                        let tag = t.ldg(src).unwrap_or(0);
                        let c = UffdioCopy {
                            dst: addr as u64,
                            src: with_tag(src, tag) as u64,
                            len: len as u64,
                            mode: 0,
                            copy: 0x5a5a,
                        };
                        let (r, back) = need()?.call(UFFDIO_COPY, &c).map_err(|s| format!("the task got {s:?}"))?;
                        format!("{} {}", errno_text(r), back.copy)
                    }
                    Op::UffdMove { .. } => {
                        let src = src.expect("move has a source");
                        let mv = UffdioMove { dst: addr as u64, src, len: len as u64, mode: 0, moved: 0x5a5a };
                        let (r, back) = need()?.call(UFFDIO_MOVE, &mv).map_err(|s| format!("the task got {s:?}"))?;
                        format!("{} {}", errno_text(r), back.moved)
                    }
                    Op::Write { .. } | Op::Check(_) | Op::Fork(_) | Op::Exit => {
                        unreachable!("not a system call plan")
                    }
                };
                Ok(text)
            })
        }
    }
}

/// Numbers distinct keys in order of appearance.
#[derive(Default)]
struct Labels(BTreeMap<u64, usize>);

impl Labels {
    fn of(&mut self, key: u64) -> usize {
        let n = self.0.len();
        *self.0.entry(key).or_insert(n)
    }
}

fn page_token(mm: &crate::mm::mm_types::MmStruct, addr: usize, frames: &mut Labels, slots: &mut Labels) -> String {
    use crate::mm::folio::{folio_head, pfn_to_page};
    use crate::mm::pte::*;
    let pte = mm.pgtables.peek(addr);
    if pte_present(pte) {
        let pfn = pte_pfn(pte);
        if crate::mm::fault::is_zero_pfn(pfn) || crate::mm::huge_memory::is_huge_zero_pfn(pfn) {
            return String::from("z");
        }
        let head = pfn_to_page(folio_head(pfn));
        let order = head.inner.lock().order;
        let mapcount = head.mapcount.load(core::sync::atomic::Ordering::Acquire);
        // Linux's PM_MMAP_EXCLUSIVE: this page mapped once. The mapcount
        // here is the folio's, in which a PMD mapping counts as its 512
        // pages (huge_memory.rs) and a pte mapping once, so a large folio
        // counts as mapped once while no page can be mapped twice.
        let once = if order == 0 { mapcount == 1 } else { mapcount <= 1 << order };
        return format!(
            "p{}{}{}{}",
            frames.of(pfn),
            if once { "x" } else { "" },
            if pte_uffd_wp(pte) { "w" } else { "" },
            if order > 0 { "h" } else { "" }
        );
    }
    if is_pte_marker(pte) {
        return String::from(if pte_marker_uffd_wp(pte) { "-w" } else { "-" });
    }
    if is_swap_pte(pte) {
        let e = pte_to_swp_entry(pte);
        if non_swap_entry(e) {
            return String::from("m"); // a migration or hwpoison entry
        }
        return format!("s{}{}", slots.of(e.0), if pte_swp_uffd_wp(pte) { "w" } else { "" });
    }
    String::from("-")
}

/// Anonymous pages and swap entries mapped outside the script's ranges
/// (the agent's own memory), which the rss counters include and Linux's
/// per-VMA figures for the ranges do not.
fn outside_ranges(mm: &crate::mm::mm_types::MmStruct, tm: &super::model::TaskM) -> (isize, isize) {
    use crate::mm::pte::*;
    let inside =
        |a: usize| tm.ranges.values().any(|r| a as u64 >= r.base && (a as u64) < r.base + r.pages.len() as u64 * PAGE);
    let (mut anon, mut swap) = (0, 0);
    mm.pgtables.for_each_pte(0, crate::mm::mm_types::TASK_SIZE, |a, pte| {
        if inside(a) {
            return;
        }
        if pte_present(pte) && !pte_special(pte) {
            let pfn = pte_pfn(pte);
            if crate::mm::folio::Folio::try_get(pfn).is_some_and(|f| f.is_anon()) {
                anon += 1;
            }
        } else if is_swap_pte(pte) && !non_swap_entry(pte_to_swp_entry(pte)) {
            swap += 1;
        }
    });
    (anon, swap)
}

fn state_line(m: &Machine, i: usize, vm0: &[(&'static str, u64); 5]) -> String {
    use crate::mm::mm_types::{MM_ANONPAGES, MM_SWAPENTS};
    let (mut frames, mut slots) = (Labels::default(), Labels::default());
    let mut out = format!("STATE {i}:");
    for (name, tm) in &m.model.tasks {
        let Some(t) = m.tasks.get(name) else { continue };
        let mm = t.mm();
        let mut parts: Vec<String> = Vec::new();
        for (rname, r) in &tm.ranges {
            let toks: Vec<String> = (0..r.pages.len())
                .map(|p| page_token(&mm, (r.base + p as u64 * PAGE) as usize, &mut frames, &mut slots))
                .collect();
            parts.push(format!("{rname}={}", runs(&toks)));
        }
        let (anon, swap) = outside_ranges(&mm, tm);
        parts.push(format!("anon={},swap={}", mm.rss(MM_ANONPAGES) - anon, mm.rss(MM_SWAPENTS) - swap));
        out += &format!(" {name}{{{}}}", parts.join(" "));
    }
    let vm: Vec<String> =
        vm_counters().iter().zip(vm0.iter()).map(|((n, v), (_, v0))| format!("{n}={}", v - v0)).collect();
    out += &format!(" vm{{{}}}", vm.join(" "));
    out
}

/// Runs `s` printing an OBS and a STATE line per statement between
/// DIFF-BEGIN and DIFF-END; stops after a statement that is the script's
/// fault (its OBS line says ERROR, as Linux's side does). Err: the
/// invariant checker's complaint once every task is gone.
pub fn run(s: &Script) -> Result<(), String> {
    let name = s.file.rsplit('/').next().unwrap_or(&s.file).to_string();
    crate::println!("DIFF-BEGIN {name}");
    let mut m = Machine::new();
    // khugepaged would collapse whenever its timer says: never, in a diff run.
    m.knobs.push(knobs::KHUGEPAGED_SCAN_SLEEP_MILLISECS.set(3_600_000));
    let vm0 = vm_counters();
    for (i, st) in s.stmts.iter().enumerate() {
        let r = observe_step(&mut m, st);
        crate::println!("OBS {i}: line {} -> {r}", st.line);
        if r.starts_with("ERROR") {
            break;
        }
        crate::println!("{}", state_line(&m, i, &vm0));
    }
    drop(m);
    crate::println!("DIFF-END {name}");
    crate::mm::invariants::check().map_err(|e| format!("after every task exited: {e}"))
}

/// The observe knob: scripts and fuzz programs are observed, not checked.
pub fn on_request() -> bool {
    knobs::SCRIPT_OBSERVE.get() != 0
}
