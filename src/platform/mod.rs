//! What the board is, read from the DTB: RAM, the memory firmware keeps, the
//! UART, the PSCI conduit, the CPUs and the command line. Nothing here is
//! hard-coded for QEMU.

pub mod fdt;
mod ranges;
pub mod uefi;

pub use ranges::{Ranges, MAX_RANGES};

use crate::arch::psci::Conduit;
use alloc::string::String;
use alloc::vec::Vec;
use fdt::Fdt;

pub struct Platform {
    /// RAM regions as (physical base, size).
    pub ram: Ranges,
    /// Reserved ranges firmware marked `no-map`: never mapped by the kernel.
    pub no_map: Ranges,
    /// Physical address of the PL011 used as the console.
    pub uart: u64,
    pub psci: Conduit,
    /// MPIDR affinity of each CPU, in DTB order.
    pub cpus: Vec<u64>,
    pub bootargs: String,
}

/// The facts needed before the heap exists, read straight from the blob:
/// where the console is, what RAM there is and what in it firmware keeps.
pub struct EarlyFacts {
    pub uart: Option<u64>,
    pub ram: Ranges,
    /// /memreserve/ entries and /reserved-memory nodes with a `reg`: never
    /// handed out by the frame allocator.
    pub reserved: Ranges,
    /// The subset of `reserved` marked `no-map`.
    pub no_map: Ranges,
    /// What a test DTB (scripts/make-test-dtb.sh) says it reserved, in
    /// /chosen properties of its own, for the boot suite to check against.
    pub test_reserved: Ranges,
    pub test_no_map: Ranges,
    pub dtb_size: u64,
    /// /chosen linux,initrd-start and -end: the initrd (scripts), kept out
    /// of the allocator like a reservation.
    pub initrd: Option<(u64, u64)>,
}

/// A /chosen address property of one or two cells.
fn chosen_addr(chosen: Option<fdt::Node>, prop: &str) -> Option<u64> {
    let v = chosen?.prop(prop)?;
    match v.len() {
        4 => v.try_into().ok().map(u32::from_be_bytes).map(u64::from),
        8 => v.try_into().ok().map(u64::from_be_bytes),
        _ => None,
    }
}

/// A property of (address, size) pairs of two cells each.
fn pairs(node: Option<fdt::Node>, prop: &str) -> Result<Ranges, &'static str> {
    let mut r = Ranges::new();
    let v = node.and_then(|n| n.prop(prop)).unwrap_or(&[]);
    for e in v.chunks_exact(16) {
        let (a, s) = (e[..8].try_into().map(u64::from_be_bytes), e[8..].try_into().map(u64::from_be_bytes));
        if let (Ok(a), Ok(s)) = (a, s) {
            r.push(a, s)?;
        }
    }
    Ok(r)
}

/// The memory facts of boot, kept for tests that check the allocator
/// honoured them.
pub struct MemoryFacts {
    pub ram: Ranges,
    pub reserved: Ranges,
    pub no_map: Ranges,
    pub test_reserved: Ranges,
    pub test_no_map: Ranges,
    pub initrd: Option<(u64, u64)>,
}

static MEMORY: spin::Once<MemoryFacts> = spin::Once::new();

pub fn remember_memory(e: &EarlyFacts) {
    MEMORY.call_once(|| MemoryFacts {
        ram: e.ram,
        reserved: e.reserved,
        no_map: e.no_map,
        test_reserved: e.test_reserved,
        test_no_map: e.test_no_map,
        initrd: e.initrd,
    });
}

pub fn memory() -> &'static MemoryFacts {
    MEMORY.get().expect("platform::memory before boot read the DTB")
}

/// # Safety
/// `va` must point at a readable DTB header in the linear map whose blob
/// (totalsize bytes) is never written while the kernel runs.
pub unsafe fn fdt_at(va: usize) -> Result<Fdt<'static>, &'static str> {
    // SAFETY: the caller guarantees the header is readable.
    let header = unsafe { core::slice::from_raw_parts(va as *const u8, 8) };
    let size = fdt::total_size(header).ok_or("not a DTB (bad magic)")?;
    // SAFETY: the caller guarantees the blob is mapped and stays unchanged.
    Fdt::new(unsafe { core::slice::from_raw_parts(va as *const u8, size) })
}

fn uart_of(f: &Fdt) -> Option<u64> {
    // Prefer the node /chosen/stdout-path names; fall back to the first PL011.
    let node = f.stdout().filter(|n| n.is_compatible("arm,pl011"));
    let node = node.or_else(|| f.find_compatible("arm,pl011"))?;
    node.reg().next().map(|r| r.0)
}

pub fn early(f: &Fdt) -> Result<EarlyFacts, &'static str> {
    let mut ram = Ranges::new();
    let mut reserved = Ranges::new();
    let mut no_map = Ranges::new();
    if let Some(efi) = crate::arch::efi::facts() {
        // After a UEFI boot the memory map is the authority (the DTB's
        // /memory nodes may not say what firmware kept).
        let descs = efi.memory_map().map(|d| (d.ty, d.start, d.pages));
        uefi::apply(descs, &mut ram, &mut reserved, &mut no_map)?;
        if ram.is_empty() {
            return Err("the UEFI memory map lists no RAM");
        }
    } else {
        for n in f.root().children().filter(|n| n.prop_str("device_type") == Some("memory") && n.is_enabled()) {
            for (base, size) in n.reg() {
                ram.push(base, size)?;
            }
        }
        if ram.is_empty() {
            return Err("the DTB has no /memory region with a reg");
        }
    }
    for (base, size) in f.mem_reservations() {
        reserved.push(base, size)?;
    }
    if let Some(rm) = f.find("/reserved-memory") {
        // Nodes with only `size` (and `alloc-ranges`) ask the OS to allocate
        // a pool; this kernel has no such pools, so they need nothing here.
        for n in rm.children().filter(|n| n.is_enabled()) {
            let nomap = n.prop("no-map").is_some();
            for (base, size) in n.reg() {
                reserved.push(base, size)?;
                if nomap {
                    no_map.push(base, size)?;
                }
            }
        }
    }
    let chosen = f.find("/chosen");
    let initrd = match (chosen_addr(chosen, "linux,initrd-start"), chosen_addr(chosen, "linux,initrd-end")) {
        (Some(s), Some(e)) if e > s => Some((s, e)),
        _ => None,
    };
    if let Some((s, e)) = initrd {
        let page = crate::arch::mmu::PAGE_SIZE as u64;
        let base = s & !(page - 1);
        reserved.push(base, (e - base).div_ceil(page) * page)?;
    }
    Ok(EarlyFacts {
        uart: uart_of(f),
        ram,
        reserved,
        no_map,
        test_reserved: pairs(chosen, "mtekernel,test-reserved")?,
        test_no_map: pairs(chosen, "mtekernel,test-no-map")?,
        dtb_size: f.total_size() as u64,
        initrd,
    })
}

pub fn read(f: &Fdt) -> Result<Platform, &'static str> {
    let e = early(f)?;
    let psci = f.find("/psci").ok_or("the DTB has no /psci node")?;
    let psci = match psci.prop_str("method").ok_or("/psci has no method")? {
        "hvc" => Conduit::Hvc,
        "smc" => Conduit::Smc,
        _ => return Err("/psci/method is neither hvc nor smc"),
    };
    let mut cpus = Vec::new();
    for c in f.find("/cpus").ok_or("the DTB has no /cpus node")?.children() {
        if c.prop_str("device_type") == Some("cpu") && c.is_enabled() {
            cpus.push(c.reg().next().ok_or("a /cpus/cpu node has no reg")?.0);
        }
    }
    if cpus.is_empty() {
        return Err("the DTB lists no CPUs");
    }
    // UEFI's LoadOptions, when there are any, replace /chosen/bootargs (the
    // EFI stub's rule).
    let efi_args = crate::arch::efi::facts().map(|e| e.cmdline).filter(|c| !c.trim().is_empty());
    let bootargs = efi_args.or_else(|| f.find("/chosen").and_then(|c| c.prop_str("bootargs"))).unwrap_or("");
    Ok(Platform {
        ram: e.ram,
        no_map: e.no_map,
        uart: e.uart.ok_or("the DTB has no PL011 UART")?,
        psci,
        cpus,
        bootargs: String::from(bootargs),
    })
}
