//! Benchmarks: they print numbers and assert nothing. Counts come from the
//! PMU (guest instructions are deterministic under `-icount shift=0`, and
//! read 0 without it); wall time comes from the generic timer (virtual
//! time under icount). `./bench.sh` runs both ways.

pub mod collapse;
pub mod swap;
pub mod thp;
pub mod uffd;

use crate::arch::cpu;

/// What one measured piece of work cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cost {
    pub instructions: u64,
    pub cycles: u64,
    pub nanos: u64,
}

impl Cost {
    pub fn per(self, n: u64) -> (u64, u64, u64) {
        let n = n.max(1);
        (self.instructions / n, self.cycles / n, self.nanos / n)
    }
}

pub fn measure<R>(f: impl FnOnce() -> R) -> (R, Cost) {
    let (i0, c0, t0) = (cpu::pmu::instructions(), cpu::pmu::cycles(), cpu::counter());
    let r = f();
    let (i1, c1, t1) = (cpu::pmu::instructions(), cpu::pmu::cycles(), cpu::counter());
    let freq = cpu::counter_freq().max(1);
    (
        r,
        Cost {
            instructions: i1.wrapping_sub(i0),
            cycles: c1.wrapping_sub(c0),
            nanos: (t1 - t0) * 1_000_000_000 / freq,
        },
    )
}

/// Runs `cases` with a fresh EL0 task, reporting a failed step or a task
/// that cannot be spawned, then ends the task.
pub fn with_task(cases: impl FnOnce(&crate::task::Task) -> Result<(), crate::errno::Errno>) {
    match crate::task::Task::spawn() {
        Ok(t) => {
            if let Err(e) = cases(&t) {
                crate::println!("bench: a step failed with {e}");
            }
            let _ = t.exit(0);
        }
        Err(e) => crate::println!("bench: cannot spawn a task: {e}"),
    }
}
