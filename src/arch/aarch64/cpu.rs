//! This CPU: its index, barriers, events and the PMU cycle/instruction counters.
//! Registers aarch64-cpu defines are read through it; the PMU's are not
//! among them.

use aarch64_cpu::registers::{CurrentEL, Readable, Writeable, CNTFRQ_EL0, CNTPCT_EL0, MPIDR_EL1, SCTLR_EL1, TPIDR_EL1};

/// The index of the running CPU (0 = boot CPU), kept in TPIDR_EL1 by boot code.
pub fn id() -> usize {
    TPIDR_EL1.get() as usize
}

pub fn mpidr() -> u64 {
    MPIDR_EL1.get() & 0xFF_00FF_FFFF
}

/// The exception level the kernel runs at (always 1 after boot).
pub fn current_el() -> u64 {
    CurrentEL.read(CurrentEL::EL)
}

/// SCTLR_EL1 of this CPU (as a test checks it on every CPU).
pub fn sctlr_el1() -> u64 {
    SCTLR_EL1.get()
}

/// FEAT_PAN (ID_AA64MMFR1_EL1.PAN): every MTE CPU has it (Armv8.1).
pub fn has_pan() -> bool {
    let mmfr1: u64;
    // SAFETY: reads an ID register; no side effects.
    unsafe { core::arch::asm!("mrs {v}, id_aa64mmfr1_el1", v = out(reg) mmfr1, options(nomem, nostack)) };
    (mmfr1 >> 20) & 0xF != 0
}

/// Privileged Access Never: EL1 loads and stores to EL0-accessible memory
/// fault, so a kernel access to user memory outside uaccess (which uses
/// LDTR/STTR) is caught. SCTLR_EL1.SPAN cleared makes every exception
/// entry to EL1 set PSTATE.PAN again; the MSR sets it for the code running
/// now. Returns whether PAN is on.
pub fn enable_pan() -> bool {
    if !has_pan() {
        return false;
    }
    const SPAN: u64 = 1 << 23;
    SCTLR_EL1.set(SCTLR_EL1.get() & !SPAN);
    set_pan(true);
    PAN_ENABLED.store(true, core::sync::atomic::Ordering::Release);
    true
}

static PAN_ENABLED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Whether boot turned PAN on (the kernel's returns to EL1 keep it on).
pub fn pan_enabled() -> bool {
    PAN_ENABLED.load(core::sync::atomic::Ordering::Acquire)
}

/// PSTATE.PAN of the code running now (tests turn it off for a moment to
/// show what it stops).
pub fn set_pan(on: bool) {
    // SAFETY: MSR PAN, #imm changes only whether EL1 may access EL0 memory;
    // raw encodings so the assembler needs no v8.1 extension flag.
    unsafe {
        if on {
            core::arch::asm!(".inst 0xd500419f", "isb", options(nostack)); // msr pan, #1
        } else {
            core::arch::asm!(".inst 0xd500409f", "isb", options(nostack)); // msr pan, #0
        }
    }
}

/// PSTATE.PAN now.
pub fn pan() -> bool {
    let v: u64;
    // SAFETY: reads PSTATE.PAN (raw encoding of mrs x, pan); no side effects.
    unsafe { core::arch::asm!("mrs {v}, s3_0_c4_c2_3", v = out(reg) v, options(nomem, nostack)) };
    v & (1 << 22) != 0
}

pub fn wfe() {
    // SAFETY: waits for an event; no memory effects.
    unsafe { core::arch::asm!("wfe", options(nomem, nostack)) }
}

pub fn sev() {
    // SAFETY: signals an event; the DSB makes earlier stores visible first.
    unsafe { core::arch::asm!("dsb ish", "sev", options(nostack)) }
}

pub fn spin_hint() {
    core::hint::spin_loop();
}

/// Counters from the PMU: cycles (PMCCNTR_EL0) and retired instructions
/// (event 0x08 on counter 0). Under `-icount shift=0` both are
/// deterministic; without icount QEMU's instruction count reads 0.
pub mod pmu {
    pub fn enable() {
        // SAFETY: programs this CPU's PMU; no memory effects.
        unsafe {
            core::arch::asm!(
                "msr pmselr_el0, xzr",
                "msr pmxevtyper_el0, {ev}",     // counter 0 counts INST_RETIRED
                "msr pmccfiltr_el0, xzr",      // count cycles at EL0 and EL1
                "msr pmcntenset_el0, {en}",    // enable counter 0 and the cycle counter
                "mrs {t}, pmcr_el0",
                "orr {t}, {t}, #7",            // E, reset counters, reset cycle counter
                "msr pmcr_el0, {t}",
                "isb",
                ev = in(reg) 0x08u64,
                en = in(reg) (1u64 << 31) | 1,
                t = out(reg) _,
                options(nostack),
            )
        }
    }

    pub fn cycles() -> u64 {
        let v: u64;
        // SAFETY: reads a counter.
        unsafe { core::arch::asm!("isb", "mrs {}, pmccntr_el0", out(reg) v, options(nomem, nostack)) };
        v
    }

    pub fn instructions() -> u64 {
        let v: u64;
        // SAFETY: reads a counter.
        unsafe {
            core::arch::asm!("isb", "msr pmselr_el0, xzr", "isb", "mrs {}, pmxevcntr_el0", out(reg) v, options(nomem, nostack))
        };
        v
    }
}

/// The generic timer's counter, for wall time.
pub fn counter() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY); // not read early
    CNTPCT_EL0.get()
}

pub fn counter_freq() -> u64 {
    CNTFRQ_EL0.get()
}
