//! Tag-integrity soak: store a tag pattern in every granule of every free
//! frame, then read every tag back, pass after pass. It tells faulty tag
//! storage (a cell that flips, an address line that aliases two pages'
//! tags, tags lost over time) from an ordering bug in the mm paths, which
//! this run never enters: the frames are taken from the allocator and only
//! the tag instructions touch them.
//!
//! All frames are written before any is read, so a store that lands in
//! another page's tags shows as a mismatch there. The pattern depends on
//! the granule's physical address and the pass, and alternates with its
//! complement, so every tag bit is seen at 0 and at 1 in every granule.
//! Mismatches are reported by physical address; a run ends with every
//! frame's tags zeroed (verified too) and every frame given back.

use crate::arch::mmu::{linear_mut, PAGE_SIZE};
use crate::arch::mte::{PageData, GRANULE, PAGE_TAG_BYTES};
use crate::mm::frames;
use crate::testhooks::knobs;
use alloc::vec::Vec;

const PAGE: u64 = PAGE_SIZE as u64;
const GRANULES: usize = PAGE_SIZE / GRANULE;
/// Mismatches kept with their detail; the rest are counted.
pub const KEPT: usize = 32;
/// Distinct runs of bad pages kept.
pub const KEPT_RANGES: usize = 16;
/// The largest run of frames taken at once.
const MAX_RUN: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mismatch {
    /// Physical address of the granule.
    pub pa: u64,
    /// 0-based pass; `passes` is the final zeroing pass.
    pub pass: u32,
    pub expected: u8,
    pub read: u8,
}

#[derive(Debug, Default)]
pub struct Report {
    pub passes: u32,
    pub pages: usize,
    pub granules_checked: u64,
    pub mismatches: u64,
    /// The first `KEPT` mismatches.
    pub first: Vec<Mismatch>,
    /// Bad pages joined into runs `(pa, bytes)`, the first `KEPT_RANGES`.
    pub bad_ranges: Vec<(u64, u64)>,
    pub nanos: u64,
}

impl Report {
    fn record(&mut self, m: Mismatch) {
        self.mismatches += 1;
        if self.first.len() < KEPT {
            self.first.push(m);
        }
        let page = m.pa & !(PAGE - 1);
        let full = self.bad_ranges.len() >= KEPT_RANGES;
        match self.bad_ranges.iter_mut().find(|(b, s)| page >= *b && page <= *b + *s) {
            Some((b, s)) => *s = (*s).max(page + PAGE - *b),
            None if !full => self.bad_ranges.push((page, PAGE)),
            None => {}
        }
    }
}

/// The tag pass `pass` stores in the granule at `pa`: a mix of the
/// address and the pass, complemented on odd passes.
pub fn pattern(pa: u64, pass: u32) -> u8 {
    let mut x = (pa / GRANULE as u64) ^ (u64::from(pass / 2) << 40);
    x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let t = (x >> 60) as u8;
    if pass % 2 == 1 {
        !t & 0xf
    } else {
        t
    }
}

fn page_tags(pa: u64, pass: Option<u32>) -> [u8; PAGE_TAG_BYTES] {
    let mut tags = [0u8; PAGE_TAG_BYTES];
    if let Some(pass) = pass {
        for g in 0..GRANULES {
            tags[g / 2] |= pattern(pa + (g * GRANULE) as u64, pass) << (4 * (g % 2));
        }
    }
    tags
}

/// Every free frame, in runs `(pa, frames)`.
fn take_all() -> Vec<(u64, usize)> {
    let mut runs = Vec::new();
    let mut n = MAX_RUN;
    loop {
        match frames::alloc_uninit(n, 1) {
            Some(pa) => runs.push((pa, n)),
            None if n > 1 => n /= 2,
            None => return runs,
        }
    }
}

fn each_page(runs: &[(u64, usize)], mut f: impl FnMut(u64, &mut PageData)) {
    for &(base, n) in runs {
        for i in 0..n as u64 {
            let pa = base + i * PAGE;
            // SAFETY: the soak took this frame from the allocator and holds
            // it until `run` gives it back; nothing else refers to it.
            f(pa, unsafe { linear_mut::<PageData>(pa) });
        }
    }
}

/// The test hook `soak:flip_pa`: changes one stored tag, as a faulty cell
/// would, so the report's addressing can be checked.
fn flip_for_test(runs: &[(u64, usize)]) {
    let target = knobs::SOAK_FLIP_PA.get() & !(GRANULE as u64 - 1);
    if target == 0 {
        return;
    }
    each_page(runs, |pa, page| {
        if (pa..pa + PAGE).contains(&target) {
            let g = ((target - pa) as usize) / GRANULE;
            let t = page.ldg(g);
            page.stg(g, t ^ 0x5);
        }
    });
}

/// Runs `passes` store-then-verify passes over every free frame and a
/// final pass that zeroes and verifies the tags; `progress` is called
/// after each pass with the report so far.
pub fn run(passes: u32, mut progress: impl FnMut(u32, &Report)) -> Result<Report, &'static str> {
    let t0 = crate::arch::cpu::counter();
    let before = frames::free_frames();
    let runs = take_all();
    let mut r = Report { passes, pages: runs.iter().map(|&(_, n)| n).sum(), ..Report::default() };
    for pass in 0..=passes {
        let stored = (pass < passes).then_some(pass);
        each_page(&runs, |pa, page| page.restore_tags(&page_tags(pa, stored)));
        if pass == 0 {
            flip_for_test(&runs);
        }
        each_page(&runs, |pa, page| {
            let (want, got) = (page_tags(pa, stored), page.save_tags());
            r.granules_checked += GRANULES as u64;
            if want != got {
                for g in 0..GRANULES {
                    let (e, v) = ((want[g / 2] >> (4 * (g % 2))) & 0xf, (got[g / 2] >> (4 * (g % 2))) & 0xf);
                    if e != v {
                        r.record(Mismatch { pa: pa + (g * GRANULE) as u64, pass, expected: e, read: v });
                    }
                }
            }
        });
        r.nanos = elapsed_ns(t0);
        progress(pass, &r);
    }
    let mut lost = false;
    for &(pa, n) in &runs {
        lost |= frames::free(pa, n).is_err();
    }
    if lost || frames::free_frames() != before {
        return Err("the soak could not give every frame back");
    }
    Ok(r)
}

fn elapsed_ns(t0: u64) -> u64 {
    let ticks = crate::arch::cpu::counter() - t0;
    (ticks as u128 * 1_000_000_000 / crate::arch::cpu::counter_freq().max(1) as u128) as u64
}
