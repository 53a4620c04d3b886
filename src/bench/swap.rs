//! The swap benchmark: swap-out (MADV_PAGEOUT) and swap-in (EL0 faults)
//! of tagged pages at 1K, 16K, 64K and 256K pages, the cost of saving and
//! restoring one page's tags, and tag storage per swapped page, with the
//! Linux figures measured in the same QEMU (shared/spec/platform-notes.md)
//! beside ours.

use super::measure;
use crate::arch::mte::with_tag;
use crate::mm::folio::set_frame_tags;
use crate::mm::mmap::{MADV_PAGEOUT, MAP_ANONYMOUS, MAP_PRIVATE, PROT_MTE, PROT_READ, PROT_WRITE};
use crate::mm::pte::{pte_pfn, pte_present};
use crate::mm::{mteswap, swapfile};
use crate::println;
use crate::task::Task;

const PAGE: usize = crate::arch::mmu::PAGE_SIZE;
const SIZES: [usize; 5] = [1024, 4096, 16 * 1024, 64 * 1024, 256 * 1024];
/// The size ../shared/linux-ref measures (its NPAGES).
const LINUX_PAGES: usize = 4096;

fn tag_pattern(p: usize) -> [u8; 128] {
    core::array::from_fn(|i| (((p + i) % 15 + 1) as u8) | ((((p + 3 * i) % 15 + 1) as u8) << 4))
}

/// A task with `pages` populated PROT_MTE pages at the returned address,
/// page p tagged `layout(p)` from the kernel (setup, not measured); None
/// after saying why.
fn tagged_task(pages: usize, layout: fn(usize) -> [u8; 128]) -> Option<(alloc::sync::Arc<Task>, usize)> {
    let t = match Task::spawn() {
        Ok(t) => t,
        Err(e) => {
            println!("bench: cannot spawn a task: {e}");
            return None;
        }
    };
    let len = pages * PAGE;
    let a = match t.mmap(0, len, PROT_READ | PROT_WRITE | PROT_MTE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0) {
        Ok(Ok(a)) => a,
        other => {
            println!("bench: mmap of {pages} pages failed: {other:?}");
            let _ = t.exit(0);
            return None;
        }
    };
    let populated = t.mlock(a, len);
    if populated != Ok(Ok(())) {
        println!("bench: populating {pages} pages failed ({populated:?}): give QEMU more memory (-m)");
        let _ = t.exit(0);
        return None;
    }
    let mm = t.mm();
    for p in 0..pages {
        let pte = mm.pgtables.peek(a + p * PAGE);
        if pte_present(pte) {
            set_frame_tags(pte_pfn(pte), &layout(p));
        }
    }
    drop(mm);
    let _ = t.munlock(a, len);
    Some((t, a))
}

/// Returns false (after saying why) if the run cannot go on.
fn one_size(pages: usize) -> bool {
    let Some((t, a)) = tagged_task(pages, tag_pattern) else { return false };
    let len = pages * PAGE;
    let free_before = swapfile::swap_info(0).map_or(0, |si| si.free_slots());

    let (out, c_out) = measure(|| t.madvise(a, len, MADV_PAGEOUT));
    let reclaimed = (0..pages).filter(|p| crate::mm::pte::is_swap_pte(t.mm().pgtables.peek(a + p * PAGE))).count();
    let tag_bytes = mteswap::stats().bytes;
    let used = free_before - swapfile::swap_info(0).map_or(0, |si| si.free_slots());

    // The swap-in: one EL0 loop reading each page through its tagged
    // pointer, from a list the kernel wrote beforehand (not measured).
    let Some(list) = super::user_words(&t, (0..pages).map(|p| with_tag(a + p * PAGE, tag_pattern(p)[0] & 0xF) as u64))
    else {
        let _ = t.exit(0);
        return false;
    };
    let (r, c_in) = measure(|| t.load_list(list, pages, false));
    if let Err(e) = r {
        println!("bench: the swap-in loop stopped: {e:?}");
    }
    // The EL0 round trip alone, on a page that stays present.
    let probe = a;
    let tag0 = tag_pattern(0)[0] & 0xF;
    let (_, c_trip) = measure(|| {
        for _ in 0..pages {
            let _ = t.load(with_tag(probe, tag0));
        }
    });
    let _ = t.exit(0);
    if out != Ok(Ok(())) {
        println!("bench: MADV_PAGEOUT failed: {out:?}");
        return false;
    }

    let n = pages as u64;
    if pages == LINUX_PAGES {
        super::row("swap_out_MADV_PAGEOUT", n, c_out);
        super::row("swap_in_fault", n, c_in);
    }
    let (oi, oc, ons) = c_out.per(n);
    let (ii, ic, ins) = c_in.per(n);
    let (ti, _, tns) = c_trip.per(n);
    println!(
        "bench: {:>6} pages | swap-out {:>8} instr {:>9} cyc {:>7}.{:01} us/page | swap-in {:>8} instr {:>9} cyc {:>7}.{:01} us/page (EL0 round trip {} instr, {}.{:01} us) | reclaimed {} | slots {} | tag storage {} B ({} B/page)",
        pages,
        oi,
        oc,
        ons / 1000,
        ons % 1000 / 100,
        ii,
        ic,
        ins / 1000,
        ins % 1000 / 100,
        ti,
        tns / 1000,
        tns % 1000 / 100,
        reclaimed,
        used,
        tag_bytes,
        tag_bytes / reclaimed.max(1)
    );
    true
}

/// Tag layouts a swapped page may have, from the commonest to the worst.
const LAYOUTS: [(&str, fn(usize) -> [u8; 128]); 5] = [
    ("one tag for the page", |p| [((p % 15 + 1) * 0x11) as u8; 128]),
    ("4 allocations of 1 KiB", |p| core::array::from_fn(|i| (((i / 32 + p) % 15 + 1) * 0x11) as u8)),
    ("16 allocations of 256 B", |p| core::array::from_fn(|i| (((i / 8 + p) % 15 + 1) * 0x11) as u8)),
    ("64 allocations of 64 B", |p| core::array::from_fn(|i| (((i / 2 + p) % 15 + 1) * 0x11) as u8)),
    ("a tag per granule", tag_pattern),
];

/// Bytes of tag storage per swapped page for each layout, through the real
/// swap-out path (4096 pages each), against the most a page can cost.
fn storage_by_layout() {
    const PAGES: usize = 4096;
    for (name, layout) in LAYOUTS {
        let Some((t, a)) = tagged_task(PAGES, layout) else { return };
        let before = mteswap::stats();
        let _ = t.madvise(a, PAGES * PAGE, MADV_PAGEOUT);
        let after = mteswap::stats();
        let stored = after.entries - before.entries;
        let bytes = after.bytes.saturating_sub(before.bytes);
        println!(
            "bench: tag storage, {name:<24} {:>4} B/page ({} pages stored: {} inline, {} as a grid cell; Linux: 128 B + xarray)",
            bytes / stored.max(1),
            stored,
            after.inline - before.inline,
            after.grid - before.grid
        );
        let _ = t.exit(0);
    }
    println!(
        "bench: tag storage is at most {} B for any swapped tagged page, 0 for an untagged one",
        mteswap::MAX_BYTES_PER_ENTRY
    );
}

fn tag_costs() {
    let Some(mut f) = crate::mm::frames::Frame::alloc() else {
        println!("bench: no frame for the tag-cost measurement");
        return;
    };
    let p = f.page_mut();
    p.restore_tags(&tag_pattern(7));
    const N: u64 = 256;
    let (_, save_bulk) = measure(|| {
        for _ in 0..N {
            core::hint::black_box(p.save_tags());
        }
    });
    let (_, save_ldg) = measure(|| {
        for _ in 0..N {
            core::hint::black_box(p.tags_ldg());
        }
    });
    let saved = p.save_tags();
    let (_, restore_bulk) = measure(|| {
        for _ in 0..N {
            p.restore_tags(&saved);
        }
    });
    let (_, restore_stg) = measure(|| {
        for _ in 0..N {
            for g in 0..256 {
                p.stg(g, (saved[g / 2] >> (4 * (g % 2))) & 0xF);
            }
        }
    });
    let show = |what: &str, c: super::Cost| {
        let (i, cy, ns) = c.per(N);
        println!("bench: tags of one 4 KiB page, {what:<22} {i:>6} instr {cy:>7} cyc {ns:>6} ns");
    };
    show("save (LDGM)", save_bulk);
    show("save (LDG per granule)", save_ldg);
    show("restore (STGM)", restore_bulk);
    show("restore (STG per gran.)", restore_stg);
}

pub fn run() {
    let icount = crate::arch::cpu::pmu::instructions() != 0;
    println!(
        "bench: swap of tagged 4 KiB pages on the RAM-disk; instructions are {}",
        if icount {
            "deterministic (-icount shift=0)"
        } else {
            "0 (run with -icount shift=0 for counts); times are real"
        }
    );
    if crate::mm::swapfile::swapon().is_err() {
        println!("bench: swapon failed (is there a RAM-disk? ramdisk=)");
        return;
    }
    tag_costs();
    storage_by_layout();
    for pages in SIZES {
        if !one_size(pages) {
            break;
        }
    }
    let _ = crate::mm::swap::swapoff(0);
    println!("bench: Linux in the same QEMU (platform-notes, wall clock, shared 2-core host):");
    println!("bench:   swap-out (MADV_PAGEOUT), tagged page   Linux 6.12: 108 us/page   Linux 7.2: 81 us/page");
    println!("bench:   swap-in (fault through tagged pointer) Linux 6.12:  51 us/page   Linux 7.2: 46 us/page");
    println!("bench:   tag save ~60 instr with LDGM vs ~2839 with LDG; restore ~63 with STGM vs ~3089 with STG");
}
