//! The in-kernel watchdog (kernel word `watchdog=S`): for runs no host
//! runner watches (a board farm), the last CPU is kept out of the tests and
//! times each one against its limit (its `timeout =`, else S seconds). A
//! test over its limit still gets a FAIL line (and its LAVA-CASE lines), the
//! run ends with a summary, and the board powers off instead of hanging.
//! kreport does the same from the host when it runs the show.

use super::TestDesc;
use crate::arch::cpu;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// The test running now (null between tests) and when its limit runs out.
static RUNNING: AtomicPtr<TestDesc> = AtomicPtr::new(core::ptr::null_mut());
static DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);
static DEFAULT_S: AtomicU64 = AtomicU64::new(0);

/// Starts the watchdog on the last online CPU; returns that CPU.
pub fn start(default_s: u32) -> Option<usize> {
    DEFAULT_S.store(default_s as u64, Ordering::Relaxed);
    crate::smp::dedicate_last(watch)
}

fn limit_s(t: &TestDesc) -> u64 {
    match t.timeout_s {
        0 => DEFAULT_S.load(Ordering::Relaxed),
        s => s as u64,
    }
}

pub fn test_started(t: &'static TestDesc) {
    DEADLINE.store(cpu::counter() + limit_s(t) * cpu::counter_freq(), Ordering::Release);
    RUNNING.store(t as *const TestDesc as *mut TestDesc, Ordering::Release);
}

pub fn test_ended() {
    RUNNING.store(core::ptr::null_mut(), Ordering::Release);
}

fn watch() {
    loop {
        let t = RUNNING.load(Ordering::Acquire);
        if !t.is_null() && cpu::counter() > DEADLINE.load(Ordering::Acquire) {
            // Re-read: the test may have ended between the two loads.
            if RUNNING.load(Ordering::Acquire) == t {
                // SAFETY: RUNNING only ever holds a &'static TestDesc.
                let t: &'static TestDesc = unsafe { &*t };
                super::report_hang(t, limit_s(t));
                crate::exit(1);
            }
        }
        // Poll about every 10 ms; the counter runs on while this CPU spins.
        let until = cpu::counter() + cpu::counter_freq() / 100;
        while cpu::counter() < until {
            cpu::spin_hint();
        }
    }
}
