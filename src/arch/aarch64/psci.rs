//! PSCI through SMCCC, over HVC or SMC as the DTB's /psci/method says.

use core::sync::atomic::{AtomicU8, Ordering};

pub const CPU_ON: u32 = 0xC400_0003;
pub const SYSTEM_OFF: u32 = 0x8400_0008;
pub const VERSION: u32 = 0x8400_0000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conduit {
    Hvc,
    Smc,
}

static CONDUIT: AtomicU8 = AtomicU8::new(0);

pub fn set_conduit(c: Conduit) {
    CONDUIT.store(if c == Conduit::Smc { 2 } else { 1 }, Ordering::Relaxed);
}

pub fn conduit() -> Option<Conduit> {
    match CONDUIT.load(Ordering::Relaxed) {
        1 => Some(Conduit::Hvc),
        2 => Some(Conduit::Smc),
        _ => None,
    }
}

/// An SMCCC call with three arguments; returns x0.
fn call(func: u32, a1: u64, a2: u64, a3: u64) -> i64 {
    let mut x0 = func as u64;
    // SAFETY: PSCI calls follow SMCCC: x0-x3 are arguments, x0-x3 may be
    // clobbered, nothing else changes.
    unsafe {
        match conduit() {
            Some(Conduit::Smc) => {
                core::arch::asm!("smc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _, options(nostack))
            }
            _ => {
                core::arch::asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _, options(nostack))
            }
        }
    }
    x0 as i64
}

pub fn version() -> (u16, u16) {
    let v = call(VERSION, 0, 0, 0) as u64;
    ((v >> 16) as u16, v as u16)
}

/// Starts the CPU with affinity `mpidr` at physical address `entry` with x0 = `context`.
pub fn cpu_on(mpidr: u64, entry: u64, context: u64) -> Result<(), i64> {
    match call(CPU_ON, mpidr, entry, context) {
        0 => Ok(()),
        e => Err(e),
    }
}

pub fn system_off() -> ! {
    call(SYSTEM_OFF, 0, 0, 0);
    loop {
        super::cpu::wfe();
    }
}
