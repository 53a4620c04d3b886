//! The shadow model: what every page of every task must hold (data and
//! tags) and what each operation must return, from Linux's rules. Each
//! operation is applied to the model first; the model says what the
//! kernel must answer, and the interpreter checks that it does. Pure logic
//! (the host unit tests include this file).
//!
//! The rules modelled (Linux's): anonymous private memory reads as zero
//! with tag 0 until written; fork shares every page copy-on-write and
//! clears PageAnonExclusive on both sides until a task writes the page;
//! MADV_DONTNEED empties pages; PAGEOUT, HUGEPAGE and COLLAPSE keep data
//! and tags; madvise over a range with holes advises the mapped parts and
//! returns ENOMEM; mprotect changes the pages before the first hole and
//! returns ENOMEM; UFFDIO_MOVE
//! (shared/spec section 1) needs a registered dst, equal access flags, an
//! empty dst pte (EEXIST), a populated src (ENOENT) that is exclusive
//! (EBUSY), and reports partial progress as EAGAIN; UFFDIO_COPY gives the
//! new page tag 0; a write into a registered hole or a write-protected page
//! waits for the userfaultfd handler.

use super::lang::{Advice, Op, Prot, SegvWant, Sel, TagPat};
use crate::errno::{Errno, EAGAIN, EBUSY, EEXIST, EFAULT, EINVAL, ENOENT, ENOMEM};
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

pub const PAGE: u64 = 4096;
/// Where the first range goes; ranges are 2 MiB-aligned with a 2 MiB gap
/// between them, so they never merge and a THP fits.
pub const FIRST_ADDR: u64 = 0x1000_0000;
const HUGE: u64 = 2 << 20;

/// What a pte holds, as far as the rules above care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pop {
    /// pte none: never touched, emptied or moved away.
    None,
    /// The shared zero page (a read of an untouched page).
    Zero,
    /// A page of its own (present or swapped out).
    Page,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageM {
    pub mapped: bool,
    pub prot: Prot,
    /// The fill seed of the data; None: zeroes.
    pub data: Option<u64>,
    pub tags: TagPat,
    pub pop: Pop,
    pub exclusive: bool,
    pub missing: bool,
    pub wp_reg: bool,
    /// uffd-wp set on the pte.
    pub wp: bool,
    /// VM_HUGEPAGE (Some(true), MADV_HUGEPAGE) or VM_NOHUGEPAGE
    /// (Some(false)): part of what makes a VMA.
    pub huge: Option<bool>,
}

impl PageM {
    fn empty(prot: Prot) -> PageM {
        PageM {
            mapped: true,
            prot,
            data: None,
            tags: TagPat { tag: 0, ramp: false },
            pop: Pop::None,
            exclusive: false,
            missing: false,
            wp_reg: false,
            wp: false,
            huge: None,
        }
    }

    fn clear(&mut self) {
        self.data = None;
        self.tags = TagPat { tag: 0, ramp: false };
        self.pop = Pop::None;
        self.exclusive = false;
        self.wp = false;
    }

    /// The tags an LDG reads: none on a mapping without PROT_MTE.
    pub fn visible_tags(&self) -> TagPat {
        if self.prot.mte {
            self.tags
        } else {
            TagPat { tag: 0, ramp: false }
        }
    }

    /// Same VMA as the next page (what Linux would have merged).
    fn same_vma(&self, o: &PageM) -> bool {
        self.mapped
            && o.mapped
            && self.prot == o.prot
            && self.missing == o.missing
            && self.wp_reg == o.wp_reg
            && self.huge == o.huge
    }
}

#[derive(Clone, Debug)]
pub struct RangeM {
    pub base: u64,
    pub pages: Vec<PageM>,
    /// A page table exists under the range (a range is 2 MiB-aligned and
    /// at most 2 MiB, so it has one PMD entry): the first access that
    /// populated a pte made it, and nothing here takes it away.
    pub table: bool,
    /// The VMA has an anon_vma (anon_vma_prepare ran: a write fault, a
    /// UFFDIO_COPY, ZEROPAGE or MOVE into it). Without one fork copies no
    /// ptes (Linux's vma_needs_copy): the child refaults, so its zero-page
    /// mappings become holes.
    pub anon_vma: bool,
}

#[derive(Clone, Debug, Default)]
pub struct TaskM {
    pub ranges: BTreeMap<String, RangeM>,
    pub uffd: bool,
}

/// What one page of a write or a check must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageWant {
    /// The access works; for a write, what to store; for a check, what
    /// must be there (data seed, visible tags) and whether the mapping is
    /// tagged.
    Access {
        data: Option<u64>,
        tags: TagPat,
        mte: bool,
    },
    Segv(SegvWant),
    /// It waits for a userfaultfd handler (a missing or write-protect fault).
    Wait,
}

/// What a system call must return.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Want {
    Ok,
    Errno(Errno),
    /// Success or one of these errnos; data and tags stay as they were.
    OkOr(&'static [Errno]),
    /// UFFDIO_MOVE/COPY/ZEROPAGE: pages done and the errno (None: all done).
    Done {
        pages: u32,
        errno: Option<Errno>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    Spawn(String),
    Fork(String),
    Exit,
    /// A system call over `[addr, addr + pages * PAGE)` (a second range for
    /// move and copy).
    Call {
        addr: u64,
        pages: u32,
        src: Option<u64>,
        want: Want,
    },
    /// A write or a check, page by page.
    Pages(Vec<(u64, PageWant)>),
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub tasks: BTreeMap<String, TaskM>,
    next: u64,
}

/// The data seed a write gives page `index` of a range.
pub fn page_seed(seed: u64, index: u32) -> u64 {
    seed.wrapping_mul(1_000_003).wrapping_add(u64::from(index) + 1)
}

/// The tag a write without `tag=` uses on an MTE mapping (never 0, so a
/// lost tag shows).
pub fn default_tag(seed: u64) -> TagPat {
    TagPat { tag: (seed % 15) as u8 + 1, ramp: false }
}

impl Model {
    pub fn new() -> Model {
        Model { tasks: BTreeMap::new(), next: FIRST_ADDR }
    }

    pub fn task(&self, t: &str) -> Result<&TaskM, String> {
        self.tasks.get(t).ok_or_else(|| format!("no task '{t}' (declare it with 'task {t}' or fork it)"))
    }

    fn task_mut(&mut self, t: &str) -> Result<&mut TaskM, String> {
        self.tasks.get_mut(t).ok_or_else(|| format!("no task '{t}' (declare it with 'task {t}' or fork it)"))
    }

    /// The pages a selector names: (range base, first page, count).
    pub fn resolve(&self, t: &str, s: &Sel) -> Result<(u64, u32, u32), String> {
        let r = self.task(t)?.ranges.get(&s.range).ok_or_else(|| format!("task {t} has no range '{}'", s.range))?;
        let len = r.pages.len() as u32;
        let count = s.count.unwrap_or(len.saturating_sub(s.first));
        if s.first >= len || s.first + count > len || count == 0 {
            return Err(format!("{s} is outside range '{}' of {len} pages", s.range));
        }
        Ok((r.base, s.first, count))
    }

    fn pages_mut(&mut self, t: &str, s: &Sel) -> Result<&mut [PageM], String> {
        let (_, first, count) = self.resolve(t, s)?;
        let r = self.task_mut(t)?.ranges.get_mut(&s.range).expect("resolved above");
        Ok(&mut r.pages[first as usize..(first + count) as usize])
    }

    fn pages(&self, t: &str, s: &Sel) -> Result<&[PageM], String> {
        let (_, first, count) = self.resolve(t, s)?;
        let r = &self.task(t)?.ranges[&s.range];
        Ok(&r.pages[first as usize..(first + count) as usize])
    }

    pub fn spawn(&mut self, t: &str) -> Result<Plan, String> {
        if self.tasks.contains_key(t) {
            return Err(format!("task '{t}' exists already"));
        }
        self.tasks.insert(t.into(), TaskM::default());
        Ok(Plan::Spawn(t.into()))
    }

    /// Applies `op` of task `t` to the model; what the kernel must do.
    /// `line` seeds a write without `seed=`. An error is the script's
    /// (an unknown task or range), not the kernel's.
    pub fn apply(&mut self, t: &str, op: &Op, line: u32) -> Result<Plan, String> {
        self.task(t)?;
        match op {
            Op::Mmap { range, pages, prot, populate } => {
                if self.task(t)?.ranges.contains_key(range) {
                    return Err(format!("task {t} has a range '{range}' already"));
                }
                if *pages == 0 {
                    return Ok(Plan::Call { addr: self.next, pages: 0, src: None, want: Want::Errno(EINVAL) });
                }
                let base = self.next;
                let len = u64::from(*pages) * PAGE;
                self.next = (base + len).div_ceil(HUGE) * HUGE + HUGE;
                if *pages > 512 {
                    return Err(format!("a range is at most 512 pages (one PMD), not {pages}"));
                }
                let mut r = RangeM {
                    base,
                    pages: alloc::vec![PageM::empty(*prot); *pages as usize],
                    table: false,
                    anon_vma: false,
                };
                // __mm_populate: a write fault per page of a writable private
                // mapping (a zeroed page of its own, tags 0), else a read
                // fault (the zero page); nothing without access.
                if *populate && (prot.read || prot.write) {
                    for p in &mut r.pages {
                        p.pop = if prot.write { Pop::Page } else { Pop::Zero };
                        p.exclusive = prot.write;
                    }
                    r.table = true;
                    r.anon_vma = prot.write;
                }
                self.task_mut(t)?.ranges.insert(range.clone(), r);
                Ok(Plan::Call { addr: base, pages: *pages, src: None, want: Want::Ok })
            }
            Op::Munmap(s) => {
                let (base, first, count) = self.resolve(t, s)?;
                for p in self.pages_mut(t, s)? {
                    p.clear();
                    p.mapped = false;
                    p.missing = false;
                    p.wp_reg = false;
                    p.huge = None;
                }
                Ok(call(base, first, count, Want::Ok))
            }
            Op::Mprotect(s, prot) => {
                let (base, first, count) = self.resolve(t, s)?;
                // Linux changes the VMAs up to the first hole, then stops
                // with ENOMEM.
                let pages = self.pages_mut(t, s)?;
                let hole = pages.iter().position(|p| !p.mapped);
                let upto = hole.unwrap_or(pages.len());
                for p in &mut pages[..upto] {
                    // VM_MTE is sticky: mprotect may add PROT_MTE, never clear it.
                    p.prot = Prot { mte: prot.mte || p.prot.mte, ..*prot };
                }
                let want = if hole.is_some() { Want::Errno(ENOMEM) } else { Want::Ok };
                Ok(call(base, first, count, want))
            }
            Op::Madvise(s, a) => {
                let (base, first, count) = self.resolve(t, s)?;
                // Linux advises the mapped parts and returns ENOMEM at the
                // end if the range had holes.
                let pages = self.pages_mut(t, s)?;
                let holes = pages.iter().any(|p| !p.mapped);
                for p in pages.iter_mut().filter(|p| p.mapped) {
                    match a {
                        Advice::DontNeed => p.clear(),
                        Advice::HugePage => p.huge = Some(true),
                        Advice::NoHugePage => p.huge = Some(false),
                        Advice::PageOut | Advice::Collapse => {}
                    }
                }
                let want = match a {
                    // Whether a collapse happens depends on what khugepaged
                    // finds; the data and tags may not change either way.
                    Advice::Collapse => Want::OkOr(&[EINVAL, EAGAIN, ENOMEM, EBUSY]),
                    _ if holes => Want::Errno(ENOMEM),
                    _ => Want::Ok,
                };
                Ok(call(base, first, count, want))
            }
            Op::Write { sel, seed, tag } => {
                let (base, first, _) = self.resolve(t, sel)?;
                let seed = seed.unwrap_or(u64::from(line));
                let tags = tag.unwrap_or(default_tag(seed));
                let mut out = Vec::new();
                for (i, p) in self.pages_mut(t, sel)?.iter_mut().enumerate() {
                    let index = first + i as u32;
                    let addr = base + u64::from(index) * PAGE;
                    let want = if !p.mapped {
                        PageWant::Segv(SegvWant::MapErr)
                    } else if !p.prot.write {
                        PageWant::Segv(SegvWant::AccErr)
                    } else if (p.pop == Pop::None && p.missing) || (p.pop != Pop::None && p.wp) {
                        PageWant::Wait
                    } else {
                        let data = Some(page_seed(seed, index));
                        p.data = data;
                        p.tags = if p.prot.mte { tags } else { TagPat { tag: 0, ramp: false } };
                        p.pop = Pop::Page;
                        p.exclusive = true;
                        PageWant::Access { data, tags: p.tags, mte: p.prot.mte }
                    };
                    out.push((addr, want));
                }
                self.note_table(t, sel, &out);
                if out.iter().any(|(_, w)| matches!(w, PageWant::Access { .. })) {
                    self.set_anon_vma(t, &sel.range);
                }
                Ok(Plan::Pages(out))
            }
            Op::Check(sel) => {
                let (base, first, _) = self.resolve(t, sel)?;
                let mut out = Vec::new();
                for (i, p) in self.pages_mut(t, sel)?.iter_mut().enumerate() {
                    let addr = base + u64::from(first + i as u32) * PAGE;
                    let want = if !p.mapped {
                        PageWant::Segv(SegvWant::MapErr)
                    } else if !p.prot.read {
                        PageWant::Segv(SegvWant::AccErr)
                    } else if p.pop == Pop::None && p.missing {
                        PageWant::Wait
                    } else {
                        if p.pop == Pop::None {
                            p.pop = Pop::Zero;
                        }
                        PageWant::Access { data: p.data, tags: p.visible_tags(), mte: p.prot.mte }
                    };
                    out.push((addr, want));
                }
                self.note_table(t, sel, &out);
                Ok(Plan::Pages(out))
            }
            Op::Fork(child) => {
                if self.tasks.contains_key(child) {
                    return Err(format!("task '{child}' exists already"));
                }
                let parent = self.task_mut(t)?;
                for r in parent.ranges.values_mut() {
                    for p in r.pages.iter_mut() {
                        p.exclusive = false;
                    }
                }
                let mut c = parent.clone();
                c.uffd = false;
                for r in c.ranges.values_mut().filter(|r| !r.anon_vma) {
                    r.table = false;
                    for p in r.pages.iter_mut() {
                        p.clear();
                    }
                }
                for r in c.ranges.values_mut() {
                    for p in r.pages.iter_mut() {
                        // Without UFFD_FEATURE_EVENT_FORK the child's VMAs
                        // and ptes lose their userfaultfd state.
                        p.missing = false;
                        p.wp_reg = false;
                        p.wp = false;
                    }
                }
                self.tasks.insert(child.clone(), c);
                Ok(Plan::Fork(child.clone()))
            }
            Op::Exit => {
                self.tasks.remove(t);
                Ok(Plan::Exit)
            }
            Op::UffdRegister { sel, missing, wp } => {
                let (base, first, count) = self.resolve(t, sel)?;
                self.task_mut(t)?.uffd = true;
                let pages = self.pages_mut(t, sel)?;
                if pages.iter().any(|p| !p.mapped) {
                    return Ok(call(base, first, count, Want::Errno(EINVAL)));
                }
                for p in pages {
                    p.missing = *missing;
                    p.wp_reg = *wp;
                }
                Ok(call(base, first, count, Want::Ok))
            }
            Op::UffdWp(sel, on) => {
                let (base, first, count) = self.resolve(t, sel)?;
                self.need_uffd(t)?;
                let pages = self.pages_mut(t, sel)?;
                if pages.iter().any(|p| !p.mapped || !p.wp_reg) {
                    return Ok(call(base, first, count, Want::Errno(ENOENT)));
                }
                for p in pages {
                    p.wp = *on && p.pop != Pop::None;
                }
                Ok(call(base, first, count, Want::Ok))
            }
            Op::UffdZeropage(sel) => {
                let (base, first, count) = self.resolve(t, sel)?;
                self.need_uffd(t)?;
                let pages = self.pages_mut(t, sel)?;
                let want = fill_rule(pages, |p| {
                    p.pop = Pop::Zero;
                    Ok(())
                });
                if matches!(want, Want::Done { .. }) {
                    self.set_anon_vma(t, &sel.range); // mfill_atomic prepares it first
                }
                if matches!(want, Want::Done { pages: 1.., .. }) {
                    self.set_table(t, &sel.range);
                }
                Ok(call(base, first, count, want))
            }
            Op::UffdCopy { dst, src } => self.copy(t, dst, src),
            Op::UffdMove { dst, src } => self.mv(t, dst, src),
        }
    }

    /// An access that reached the fault handler made the page table (as
    /// do_anonymous_page allocates it before handing a missing fault to
    /// the userfaultfd handler), so the range has one.
    fn note_table(&mut self, t: &str, sel: &Sel, out: &[(u64, PageWant)]) {
        if out.iter().any(|(_, w)| matches!(w, PageWant::Access { .. } | PageWant::Wait)) {
            self.set_table(t, &sel.range);
        }
    }

    fn set_anon_vma(&mut self, t: &str, range: &str) {
        if let Some(r) = self.tasks.get_mut(t).and_then(|t| t.ranges.get_mut(range)) {
            r.anon_vma = true;
        }
    }

    fn set_table(&mut self, t: &str, range: &str) {
        if let Some(r) = self.tasks.get_mut(t).and_then(|t| t.ranges.get_mut(range)) {
            r.table = true;
        }
    }

    fn need_uffd(&self, t: &str) -> Result<(), String> {
        if self.task(t)?.uffd {
            Ok(())
        } else {
            Err(format!("task {t} has no userfaultfd yet ('uffd register' opens it)"))
        }
    }

    fn two(&self, t: &str, dst: &Sel, src: &Sel) -> Result<((u64, u32), (u64, u32), u32), String> {
        self.need_uffd(t)?;
        let (db, df, dc) = self.resolve(t, dst)?;
        let (sb, sf, sc) = self.resolve(t, src)?;
        if dc != sc {
            return Err(format!("{dst} has {dc} pages but {src} has {sc}"));
        }
        Ok(((db, df), (sb, sf), dc))
    }

    /// UFFDIO_COPY (mfill_atomic_pte_copy): per page the source is read
    /// first (which faults it in: a hole gets the zero page), then a
    /// populated dst pte is EEXIST; the new page has the data and tag 0.
    fn copy(&mut self, t: &str, dst: &Sel, src: &Sel) -> Result<Plan, String> {
        let ((db, df), (sb, sf), n) = self.two(t, dst, src)?;
        let from: Vec<PageM> = self.pages(t, src)?.to_vec();
        // The source pointer carries the first granule's tag, as a program
        // would pass it (tagged-address ABI); a later page whose tags differ
        // is a tag-check fault in copy_from_user: EFAULT.
        let ptr_tag = from[0].visible_tags().of_granule(0);
        let src_addr = (sb + u64::from(sf) * PAGE) | (u64::from(ptr_tag) << 56);
        let plan = |want| Plan::Call { addr: db + u64::from(df) * PAGE, pages: n, src: Some(src_addr), want };
        // Linux validates src without untagging it (validate_unaligned_range):
        // a tagged pointer is outside the user half, EINVAL before the dst is
        // looked at. Only a source with tag 0 can be copied from.
        if ptr_tag != 0 {
            return Ok(plan(Want::Errno(EINVAL)));
        }
        let readable = |s: &PageM| {
            let tags = s.visible_tags();
            s.mapped
                && s.prot.read
                && !(s.pop == Pop::None && s.missing)
                && (!s.prot.mte || (!tags.ramp && tags.tag == ptr_tag))
        };
        let dpages = self.pages(t, dst)?;
        let reg = |p: &PageM| p.mapped && (p.missing || p.wp_reg);
        if !dpages.iter().all(reg) || !dpages.windows(2).all(|w| w[0].same_vma(&w[1])) {
            return Ok(plan(Want::Errno(ENOENT)));
        }
        let dpop: Vec<Pop> = dpages.iter().map(|p| p.pop).collect();
        self.set_anon_vma(t, &dst.range);
        let (mut done, mut read, mut err) = (0u32, 0usize, None);
        for i in 0..n as usize {
            if !readable(&from[i]) {
                err = Some(EFAULT);
                break;
            }
            read += 1;
            if dpop[i] != Pop::None {
                err = Some(EEXIST);
                break;
            }
            done += 1;
        }
        for i in 0..read {
            let sp = &mut self.task_mut(t)?.ranges.get_mut(&src.range).expect("resolved").pages[sf as usize + i];
            if sp.pop == Pop::None {
                sp.pop = Pop::Zero;
            }
        }
        if read > 0 {
            self.set_table(t, &src.range);
        }
        for i in 0..done as usize {
            let s = from[i];
            let dp = &mut self.task_mut(t)?.ranges.get_mut(&dst.range).expect("resolved").pages[df as usize + i];
            dp.data = s.data;
            dp.tags = TagPat { tag: 0, ramp: false };
            dp.pop = Pop::Page;
            dp.exclusive = true;
        }
        if done > 0 {
            self.set_table(t, &dst.range);
        }
        Ok(plan(match err {
            None => Want::Done { pages: done, errno: None },
            Some(e) => partial(done, e),
        }))
    }

    fn mv(&mut self, t: &str, dst: &Sel, src: &Sel) -> Result<Plan, String> {
        let ((db, df), (sb, sf), n) = self.two(t, dst, src)?;
        let plan =
            |want| Plan::Call { addr: db + u64::from(df) * PAGE, pages: n, src: Some(sb + u64::from(sf) * PAGE), want };
        let (d, s) = (self.pages(t, dst)?.to_vec(), self.pages(t, src)?.to_vec());
        // VMA-level checks, each EINVAL: the whole of each range in one
        // VMA, dst registered, equal protections, src writable.
        if !d[0].mapped {
            return Ok(plan(Want::Errno(ENOENT)));
        }
        if !s[0].mapped {
            return Ok(plan(Want::Errno(ENOENT)));
        }
        let one_vma = |v: &[PageM]| v.windows(2).all(|w| w[0].same_vma(&w[1]));
        if !one_vma(&d) || !one_vma(&s) {
            return Ok(plan(Want::Errno(EINVAL)));
        }
        if !(d[0].missing || d[0].wp_reg) || d[0].prot != s[0].prot || !s[0].prot.write {
            return Ok(plan(Want::Errno(EINVAL)));
        }
        self.set_anon_vma(t, &dst.range);
        let src_table = self.task(t)?.ranges[&src.range].table;
        let mut done = 0u32;
        let mut err = None;
        for i in 0..n as usize {
            let (dp, sp) = (d[i], s[i]);
            // No page table under src at all: ENOENT before dst is looked at.
            let e = if !src_table {
                Some(ENOENT)
            } else if dp.pop != Pop::None {
                Some(EEXIST)
            } else {
                match sp.pop {
                    Pop::None => Some(ENOENT),
                    Pop::Page if !sp.exclusive => Some(EBUSY),
                    _ => None,
                }
            };
            if let Some(e) = e {
                err = Some(e);
                break;
            }
            done += 1;
        }
        let (dr, sr) = (dst.range.clone(), src.range.clone());
        if done > 0 {
            self.set_table(t, &dr);
        }
        for i in 0..done as usize {
            let sp = s[i];
            let task = self.task_mut(t)?;
            let dpage = &mut task.ranges.get_mut(&dr).expect("resolved").pages[df as usize + i];
            dpage.data = sp.data;
            dpage.tags = sp.tags;
            dpage.pop = sp.pop;
            dpage.exclusive = true;
            dpage.wp = false;
            let spage = &mut task.ranges.get_mut(&sr).expect("resolved").pages[sf as usize + i];
            spage.clear();
        }
        let want = match (done, err) {
            (_, None) => Want::Done { pages: done, errno: None },
            (0, Some(e)) => Want::Done { pages: 0, errno: Some(e) },
            (k, Some(_)) => Want::Done { pages: k, errno: Some(EAGAIN) },
        };
        Ok(plan(want))
    }
}

fn call(base: u64, first: u32, count: u32, want: Want) -> Plan {
    Plan::Call { addr: base + u64::from(first) * PAGE, pages: count, src: None, want }
}

/// mfill's rules (UFFDIO_COPY, UFFDIO_ZEROPAGE): the dst in one VMA
/// registered with this context (else ENOENT), then page by page: a
/// populated pte is EEXIST; progress before an error is EAGAIN.
fn fill_rule(pages: &mut [PageM], mut fill: impl FnMut(&mut PageM) -> Result<(), Errno>) -> Want {
    let reg = |p: &PageM| p.mapped && (p.missing || p.wp_reg);
    if !pages.iter().all(reg) || !pages.windows(2).all(|w| w[0].same_vma(&w[1])) {
        return Want::Errno(ENOENT);
    }
    let mut done = 0;
    for p in pages.iter_mut() {
        if p.pop != Pop::None {
            return partial(done, EEXIST);
        }
        if let Err(e) = fill(p) {
            return partial(done, e);
        }
        done += 1;
    }
    Want::Done { pages: done, errno: None }
}

fn partial(done: u32, e: Errno) -> Want {
    Want::Done { pages: done, errno: Some(if done == 0 { e } else { EAGAIN }) }
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::super::lang::parse;
    use super::*;

    fn run(text: &str) -> (Model, Vec<Plan>) {
        let s = parse("t", text).unwrap();
        let mut m = Model::new();
        let mut plans = Vec::new();
        for st in &s.stmts {
            plans.push(match &st.kind {
                super::super::lang::Kind::Task(n) => m.spawn(n).unwrap(),
                super::super::lang::Kind::Op { task, op, .. } => m.apply(task, op, st.line).unwrap(),
                _ => continue,
            });
        }
        (m, plans)
    }

    #[test]
    fn writes_then_reads_and_dontneed_zeroes() {
        let (m, p) =
            run("task A\nA: mmap r 2\nA: write r[0] seed=5 tag=3\nA: check r\nA: madvise r dontneed\nA: check r[0]");
        let tags = TagPat { tag: 3, ramp: false };
        assert_eq!(
            p[3],
            Plan::Pages(alloc::vec![
                (FIRST_ADDR, PageWant::Access { data: Some(page_seed(5, 0)), tags, mte: true }),
                (FIRST_ADDR + PAGE, PageWant::Access { data: None, tags: TagPat { tag: 0, ramp: false }, mte: true }),
            ])
        );
        assert!(
            matches!(p[5], Plan::Pages(ref v) if v[0].1 == PageWant::Access { data: None, tags: TagPat { tag: 0, ramp: false }, mte: true })
        );
        assert_eq!(m.tasks["A"].ranges["r"].pages[0].pop, Pop::Zero, "a read maps the zero page");
        assert_eq!(m.tasks["A"].ranges["r"].pages[1].pop, Pop::None, "emptied by DONTNEED");
    }

    #[test]
    fn fork_makes_move_ebusy_until_written() {
        let (_, p) = run("task A\nA: mmap r 4\nA: write r[0..2]\nA: fork B\nA: uffd register r[2..4] missing\n\
             A: uffd move r[2] r[0]\nA: write r[0]\nA: uffd move r[2..4] r[0..2]");
        let want = |i: usize| match &p[i] {
            Plan::Call { want, .. } => want.clone(),
            o => panic!("{o:?}"),
        };
        assert_eq!(want(5), Want::Done { pages: 0, errno: Some(EBUSY) });
        // r[0] was rewritten (exclusive) and moves; r[1] is still shared
        // with B: EBUSY after one page, so EAGAIN with one page done.
        assert_eq!(want(7), Want::Done { pages: 1, errno: Some(EAGAIN) });
    }

    #[test]
    fn holes_and_protections() {
        let (_, p) = run("task A\nA: mmap r 3 prot=r\nA: write r[0]\nA: munmap r[1]\nA: check r[1]\nA: mprotect r rw");
        assert_eq!(p[2], Plan::Pages(alloc::vec![(FIRST_ADDR, PageWant::Segv(SegvWant::AccErr))]));
        assert_eq!(p[4], Plan::Pages(alloc::vec![(FIRST_ADDR + PAGE, PageWant::Segv(SegvWant::MapErr))]));
        assert!(matches!(p[5], Plan::Call { want: Want::Errno(e), .. } if e == ENOMEM));
    }

    #[test]
    fn script_errors() {
        let s = parse("t", "task A\nA: check q").unwrap();
        let mut m = Model::new();
        m.spawn("A").unwrap();
        let super::super::lang::Kind::Op { op, .. } = &s.stmts[1].kind else { panic!() };
        assert!(m.apply("A", op, 2).unwrap_err().contains("no range 'q'"));
        assert!(m.apply("Z", op, 2).unwrap_err().contains("no task 'Z'"));
    }
}
