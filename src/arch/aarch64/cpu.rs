//! This CPU: its index, barriers, events and the PMU cycle/instruction counters.

/// The index of the running CPU (0 = boot CPU), kept in TPIDR_EL1 by boot code.
pub fn id() -> usize {
    let v: u64;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe { core::arch::asm!("mrs {}, tpidr_el1", out(reg) v, options(nomem, nostack)) };
    v as usize
}

pub fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { core::arch::asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack)) };
    v & 0xFF_00FF_FFFF
}

/// The exception level the kernel runs at (always 1 after boot).
pub fn current_el() -> u64 {
    let v: u64;
    // SAFETY: reading CurrentEL has no side effects.
    unsafe { core::arch::asm!("mrs {}, CurrentEL", out(reg) v, options(nomem, nostack)) };
    (v >> 2) & 3
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
    let v: u64;
    // SAFETY: reading the counter has no side effects.
    unsafe { core::arch::asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

pub fn counter_freq() -> u64 {
    let v: u64;
    // SAFETY: reading the frequency register has no side effects.
    unsafe { core::arch::asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}
