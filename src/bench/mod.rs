//! Benchmarks: they print numbers and assert nothing. Counts come from the
//! PMU (guest instructions are deterministic under `-icount shift=0`, and
//! read 0 without it); wall time comes from the generic timer (virtual
//! time under icount). `./bench.sh` runs both ways.

pub mod collapse;
pub mod fault;
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

/// One grep-able line per measured operation, per 4 KiB page, named as
/// ../shared/linux-ref's TIME lines name the same operation, for
/// `./bench.sh --vs-linux` to set beside Linux's.
pub fn row(op: &str, pages: u64, c: Cost) {
    let (i, _, ns) = c.per(pages);
    crate::println!("BENCHROW {op} pages={pages} instr_per_page={i} ns_per_page={ns}");
}

/// `words` written into a fresh, populated mapping of `t` (by the kernel,
/// not measured): where an EL0 loop reads its pointers from. None after
/// saying why.
pub fn user_words(t: &crate::task::Task, words: impl ExactSizeIterator<Item = u64>) -> Option<usize> {
    use crate::mm::mmap::{MAP_ANONYMOUS, MAP_POPULATE, MAP_PRIVATE, PROT_READ, PROT_WRITE};
    let len = (words.len() * 8).next_multiple_of(crate::arch::mmu::PAGE_SIZE).max(crate::arch::mmu::PAGE_SIZE);
    let a = match t.mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0) {
        Ok(Ok(a)) => a,
        other => {
            crate::println!("bench: mmap of {len} bytes for a pointer list failed: {other:?}");
            return None;
        }
    };
    let mm = t.mm();
    for (i, w) in words.enumerate() {
        let at = a + 8 * i;
        let pte = mm.pgtables.peek(at);
        if !crate::mm::pte::pte_present(pte) {
            crate::println!("bench: the pointer list is not populated at {at:#x}");
            return None;
        }
        crate::mm::folio::frame_word(crate::mm::pte::pte_pfn(pte), at % crate::arch::mmu::PAGE_SIZE)
            .store(w, core::sync::atomic::Ordering::Relaxed);
    }
    Some(a)
}

/// A step's errno; a signal (which no step should get) counts as EFAULT.
pub fn step<T>(r: crate::task::usys::SysResult<T>) -> Result<T, crate::errno::Errno> {
    r.unwrap_or(Err(crate::errno::EFAULT))
}
