//! The kernel's final address space (TTBR1): the linear map of RAM, the
//! devices it uses and the image with per-section permissions, replacing the
//! 1 GiB / 2 MiB blocks that boot/entry.S set up.

use super::frames::{self, GlobalFrames};
use crate::arch::boot::image_layout;
use crate::arch::mmu::{self, phys_to_virt, Attrs, MapError, MemType, PageTable, Perm, PAGE_MASK, PAGE_SIZE};
use crate::platform::Platform;
use core::sync::atomic::{AtomicU64, Ordering};

/// A TTBR0 root with no entries: what every CPU runs with outside EL0 tests,
/// so a stray low address faults instead of hitting the boot identity map.
static EMPTY_TTBR0: AtomicU64 = AtomicU64::new(0);
/// Root of the final kernel tables (TTBR1).
static KERNEL_ROOT: AtomicU64 = AtomicU64::new(0);

pub fn kernel_root() -> u64 {
    KERNEL_ROOT.load(Ordering::Relaxed)
}

pub fn empty_ttbr0() -> u64 {
    EMPTY_TTBR0.load(Ordering::Relaxed)
}

/// Installs the empty TTBR0 on this CPU (ASID 0).
pub fn install_empty_ttbr0() {
    mmu::set_ttbr0(empty_ttbr0(), 0);
}

fn map_err(step: &'static str) -> impl Fn(MapError) -> &'static str {
    move |e| match e {
        MapError::NoMemory => "out of memory while building the kernel tables",
        _ => step,
    }
}

/// Builds the final kernel tables and switches this CPU to them; returns the
/// TTBR1 value for the secondaries.
pub fn switch_to_final_tables(p: &Platform) -> Result<u64, &'static str> {
    let fs = &mut GlobalFrames;
    let mut t = PageTable::new(fs).map_err(map_err("root table"))?;
    let rw = Attrs::new(MemType::TaggedNormal, Perm::KernelRw);
    // RAM firmware marked no-map stays unmapped, so not even a speculative
    // access reaches it.
    let mut res = Ok(());
    for (base, size) in p.ram.iter() {
        p.no_map.each_gap(base, base + size, |s, e| {
            if res.is_ok() {
                res = t.map_range(phys_to_virt(s), s, (e - s) as usize, rw, true, fs);
            }
        });
    }
    res.map_err(map_err("linear map of RAM"))?;
    let dev = Attrs::new(MemType::Device, Perm::KernelRw);
    let uart = p.uart & PAGE_MASK as u64;
    t.map_range(phys_to_virt(uart), uart, PAGE_SIZE, dev, false, fs).map_err(map_err("UART"))?;

    let l = image_layout();
    let pa = |va: usize| mmu::image_pa() + (va - l.start) as u64;
    let sections = [
        (l.start, l.text_end, Perm::KernelRx),
        (l.text_end, l.rodata_end, Perm::KernelRo),
        (l.rodata_end, l.end, Perm::KernelRw),
    ];
    for (s, e, perm) in sections {
        t.map_range(s, pa(s), e - s, Attrs::new(MemType::TaggedNormal, perm), false, fs)
            .map_err(map_err("kernel image"))?;
    }

    let empty = frames::alloc_zeroed(1, 1).ok_or("out of memory for the empty TTBR0")?;
    EMPTY_TTBR0.store(empty, Ordering::Relaxed);
    let root = t.root_pa();
    KERNEL_ROOT.store(root, Ordering::Relaxed);
    // SAFETY: the new tables map the image, its stacks and the linear map at
    // the addresses the early tables used, and TTBR0 still holds the identity
    // map that replace_ttbr1 runs from.
    unsafe { crate::arch::boot::replace_ttbr1(root, mmu::image_pa(), empty) };
    install_empty_ttbr0();
    mmu::tlb::flush_all();
    Ok(root)
}
