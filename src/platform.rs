//! What the board is, read from the DTB: RAM, the UART, the PSCI conduit, the
//! CPUs and the command line. Nothing here is hard-coded for QEMU.

use crate::arch::psci::Conduit;
use alloc::string::String;
use alloc::vec::Vec;

pub struct Platform {
    /// RAM regions as (physical base, size).
    pub ram: Vec<(u64, u64)>,
    /// Physical address of the PL011 used as the console.
    pub uart: u64,
    pub psci: Conduit,
    /// MPIDR affinity of each CPU, in DTB order.
    pub cpus: Vec<u64>,
    pub bootargs: String,
}

/// The minimal facts needed before the heap exists: where the console is and
/// what RAM there is, read straight from the blob.
pub struct EarlyFacts {
    pub uart: Option<u64>,
    pub ram_base: u64,
    pub ram_size: u64,
    pub dtb_size: u64,
}

pub fn fdt_at(va: usize) -> Result<fdt::Fdt<'static>, &'static str> {
    // SAFETY: va points at a DTB (its magic was checked by the caller) inside
    // the linear map; the blob is reserved and never written.
    unsafe { fdt::Fdt::from_ptr(va as *const u8) }.map_err(|_| "the DTB is malformed")
}

fn uart_of(f: &fdt::Fdt) -> Option<u64> {
    // Prefer the node /chosen/stdout-path names; fall back to the first PL011.
    let node = f.chosen().stdout().filter(|n| n.compatible().is_some_and(|c| c.all().any(|x| x == "arm,pl011")));
    let node = node.or_else(|| f.find_compatible(&["arm,pl011"]))?;
    node.reg()?.next().map(|r| r.starting_address as u64)
}

pub fn early(f: &fdt::Fdt) -> Result<EarlyFacts, &'static str> {
    let mem = f.memory();
    let mut regions = mem.regions();
    let r = regions.next().ok_or("the DTB has no /memory region")?;
    if regions.next().is_some() {
        return Err("more than one RAM region in the DTB: not supported yet");
    }
    Ok(EarlyFacts {
        uart: uart_of(f),
        ram_base: r.starting_address as u64,
        ram_size: r.size.ok_or("the /memory region has no size")? as u64,
        dtb_size: f.total_size() as u64,
    })
}

pub fn read(f: &fdt::Fdt) -> Result<Platform, &'static str> {
    let e = early(f)?;
    let psci = f.find_node("/psci").ok_or("the DTB has no /psci node")?;
    let method = psci.property("method").and_then(|p| p.as_str()).ok_or("/psci has no method")?;
    let psci = match method {
        "hvc" => Conduit::Hvc,
        "smc" => Conduit::Smc,
        _ => return Err("/psci/method is neither hvc nor smc"),
    };
    let mut cpus = Vec::new();
    for c in f.cpus() {
        cpus.push(c.ids().first() as u64);
    }
    if cpus.is_empty() {
        return Err("the DTB lists no CPUs");
    }
    Ok(Platform {
        ram: alloc::vec![(e.ram_base, e.ram_size)],
        uart: e.uart.ok_or("the DTB has no PL011 UART")?,
        psci,
        cpus,
        bootargs: String::from(f.chosen().bootargs().unwrap_or("")),
    })
}
