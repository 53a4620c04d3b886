//! The collapse benchmark: MADV_COLLAPSE of 2 MiB ranges of 4 KiB pages,
//! PROT_MTE (every page tagged) and untagged, and khugepaged's scan rate
//! (one pass collapsing the ranges, one pass refusing them after reading
//! every pte), per 2 MiB, with Linux's figures beside ours.

use super::{measure, step};
use crate::arch::mte::with_tag;
use crate::errno::{Errno, EFAULT};
use crate::mm::khugepaged::{self, ScanResult};
use crate::mm::mmap::*;
use crate::mm::pte::pmd_trans_huge;
use crate::println;
use crate::task::Task;
use crate::testhooks::knobs::KHUGEPAGED_MAX_PTES_NONE;

const PAGE: usize = crate::arch::mmu::PAGE_SIZE;
const HUGE: usize = crate::arch::mmu::PMD_SIZE;
const N: usize = 8; // 2 MiB ranges per case
const AT: usize = 0x40_0000_0000;

fn show(what: &str, c: super::Cost, n: usize) {
    let (i, _, ns) = c.per(n as u64);
    println!(
        "bench: {what:<44} {i:>10} instr {:>6}.{:02} ms per 2 MiB ({} instr per page)",
        ns / 1_000_000,
        ns % 1_000_000 / 10_000,
        i / 512
    );
}

/// N ranges at AT + i * stride of `pages` written by ptes (a tag per
/// page when `mte`), MADV_HUGEPAGE afterwards.
fn fill(t: &Task, base: usize, mte: bool, pages: usize) -> Result<(), Errno> {
    let prot = PROT_READ | PROT_WRITE | if mte { PROT_MTE } else { 0 };
    step(t.mmap(base, N * HUGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0))?;
    step(t.madvise(base, N * HUGE, MADV_NOHUGEPAGE))?;
    for p in 0..N * 512 {
        let a = base + p * PAGE;
        let tag = (p % 15) as u8 + 1;
        if p % 512 >= pages {
            continue;
        }
        if mte {
            t.tag_range(with_tag(a, tag), PAGE).map_err(|_| EFAULT)?;
            t.store(with_tag(a, tag), p as u64).map_err(|_| EFAULT)?;
        } else {
            t.store(a, p as u64).map_err(|_| EFAULT)?;
        }
    }
    step(t.madvise(base, N * HUGE, MADV_HUGEPAGE))
}

fn huge(t: &Task, base: usize) -> usize {
    (0..N).filter(|i| pmd_trans_huge(t.mm().pgtables.pmd_peek(base + i * HUGE))).count()
}

fn run_cases(t: &Task) -> Result<(), Errno> {
    for (i, mte) in [(0, true), (1, false)] {
        let base = AT + i * 2 * N * HUGE;
        fill(t, base, mte, 512)?;
        let (r, c) = measure(|| step(t.madvise(base, N * HUGE, MADV_COLLAPSE)));
        r?;
        if huge(t, base) != N {
            println!("bench: MADV_COLLAPSE left {} of {N} ranges unmapped by a PMD", N - huge(t, base));
            return Err(EFAULT);
        }
        show(if mte { "MADV_COLLAPSE, tagged 2 MiB" } else { "MADV_COLLAPSE, untagged 2 MiB" }, c, N);
        let op = if mte { "collapse_MADV_COLLAPSE_2MiB" } else { "collapse_nomte_MADV_COLLAPSE_2MiB" };
        super::row(op, (N * 512) as u64, c);
    }
    // khugepaged: one pass over N registered ranges that it collapses, and
    // one over N it refuses at their last pte (max_ptes_none 0, the last
    // page never written), so every pte is read.
    let base = AT + 4 * N * HUGE;
    fill(t, base, true, 512)?;
    let (scans, c) = measure(|| khugepaged::khugepaged_do_scan(usize::MAX));
    let done = scans.iter().filter(|s| s.mm == t.mm().id && s.result == ScanResult::SCAN_SUCCEED).count();
    show(&alloc::format!("khugepaged pass collapsing ({done} of {N})"), c, N.max(1));
    let base = AT + 6 * N * HUGE;
    fill(t, base, true, 511)?;
    let _k = KHUGEPAGED_MAX_PTES_NONE.set(0);
    let (scans, c) = measure(|| khugepaged::khugepaged_do_scan(usize::MAX));
    let refused = scans.iter().filter(|s| s.result == ScanResult::SCAN_EXCEED_NONE_PTE).count();
    // The pass also looks at the ranges collapsed above (SCAN_PMD_MAPPED,
    // a few hundred instructions each): charged to the refused ones.
    let (i, _, ns) = c.per(refused.max(1) as u64);
    println!(
        "bench: khugepaged scan, a range refused at pte 511 {i:>10} instr {:>6}.{:02} ms per 2 MiB ({} ranges in the pass, {refused} refused)",
        ns / 1_000_000,
        ns % 1_000_000 / 10_000,
        scans.len()
    );
    Ok(())
}

pub fn run() {
    println!("bench: MADV_COLLAPSE and khugepaged, {N} x 2 MiB of 4 KiB pages per case");
    super::with_task(run_cases);
    println!("bench: Linux in the same QEMU (platform-notes; ../shared/linux-ref ONLY=collapse runs it):");
    println!("bench:   MADV_COLLAPSE, tagged 2 MiB   Linux 6.12: 8.2 ms, 1.75M instr   Linux 7.2: 6.1 ms");
}
