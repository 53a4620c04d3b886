//! Secondary CPUs: started with PSCI CPU_ON, each then waits for work from
//! the boot CPU. Work runs guarded, so a fault on a secondary fails the test
//! that gave it the work, not the run.

use crate::arch::boot::MAX_CPUS;
use crate::arch::trap::{guarded, Unexpected};
use crate::arch::{cpu, mmu, mte, psci};
use crate::println;
use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use spin::Mutex;

type Work = Box<dyn FnOnce() + Send>;

struct Mailbox {
    work: Mutex<Option<Work>>,
    result: Mutex<Option<Result<(), Unexpected>>>,
    online: AtomicBool,
}

static MAILBOXES: [Mailbox; MAX_CPUS] =
    [const { Mailbox { work: Mutex::new(None), result: Mutex::new(None), online: AtomicBool::new(false) } }; MAX_CPUS];
static ONLINE: AtomicUsize = AtomicUsize::new(1);
static DEDICATED: AtomicUsize = AtomicUsize::new(0);
static DTB_CPUS: AtomicUsize = AtomicUsize::new(1);

/// CPUs the DTB lists.
pub fn dtb_cpus() -> usize {
    DTB_CPUS.load(Ordering::Relaxed)
}

/// Per-CPU set-up done by every CPU once it runs on the final tables.
pub fn init_this_cpu() {
    // Tag 0xF is the kernel's match-all tag: IRG never hands it out.
    mte::init_cpu(1 << 0xF, 0x5EED + cpu::id() as u16);
    mte::set_tcf(mte::TcfMode::Sync);
    mte::set_tcf0(mte::TcfMode::Sync);
    cpu::pmu::enable();
    cpu::enable_pan();
}

/// CPUs running, the boot CPU included.
pub fn online() -> usize {
    ONLINE.load(Ordering::Acquire)
}

/// Starts every CPU in `mpidrs` other than this one; returns how many CPUs
/// are online. CPU indices follow DTB order, skipping the boot CPU.
pub fn start_secondaries(mpidrs: &[u64]) -> usize {
    MAILBOXES[0].online.store(true, Ordering::Release);
    DTB_CPUS.store(mpidrs.len(), Ordering::Relaxed);
    let me = cpu::mpidr();
    let entry = mmu::virt_to_phys(crate::arch::boot::secondary_entry as *const () as usize);
    let mut index = 1;
    for &m in mpidrs.iter().filter(|&&m| m != me) {
        if index >= MAX_CPUS {
            println!("WARN: CPU {m:#x} not started: at most {MAX_CPUS} CPUs are supported");
            continue;
        }
        if let Err(e) = psci::cpu_on(m, entry, index as u64) {
            println!("WARN: PSCI CPU_ON for MPIDR {m:#x} failed with {e}");
            continue;
        }
        let deadline = cpu::counter() + cpu::counter_freq(); // one second
        while !MAILBOXES[index].online.load(Ordering::Acquire) && cpu::counter() < deadline {
            cpu::spin_hint();
        }
        if !MAILBOXES[index].online.load(Ordering::Acquire) {
            println!("WARN: CPU {index} (MPIDR {m:#x}) did not come online within 1 s");
            continue;
        }
        ONLINE.fetch_add(1, Ordering::AcqRel);
        index += 1;
    }
    online()
}

pub fn secondary_loop(cpu: usize) -> ! {
    crate::mm::mmu_context::leave_mm();
    init_this_cpu();
    let mb = &MAILBOXES[cpu];
    mb.online.store(true, Ordering::Release);
    loop {
        let work = mb.work.lock().take();
        match work {
            Some(w) => {
                let mut w = Some(w);
                let r = guarded(&mut || {
                    if let Some(w) = w.take() {
                        w()
                    }
                });
                *mb.result.lock() = Some(r);
                cpu::sev();
            }
            None => {
                crate::mm::mmu_context::service_leave_request();
                cpu::wfe()
            }
        }
    }
}

/// A piece of work running on another CPU. Dropping it without `join`
/// (a test that failed early) releases every schedule point and waits for
/// the work to end, so no test's work outlives the test.
pub struct Job {
    cpu: usize,
    joined: bool,
}

#[derive(Debug)]
pub enum SmpError {
    NoSuchCpu(usize),
    Busy(usize),
}

impl core::fmt::Display for SmpError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SmpError::NoSuchCpu(c) => write!(f, "CPU {c} is not an online secondary"),
            SmpError::Busy(c) => write!(f, "CPU {c} is still running earlier work"),
        }
    }
}

/// Takes the last online CPU out of the tests' reach (`online()` no longer
/// counts it) and runs `f` there for the rest of the run. Returns the CPU,
/// or None with only one CPU online.
pub fn dedicate_last(f: impl FnOnce() + Send + 'static) -> Option<usize> {
    let n = online();
    if n < 2 {
        return None;
    }
    let cpu = n - 1;
    let job = start(cpu, f).ok()?;
    // The work never ends, so the Job is never joined or dropped (dropping
    // would wait for it).
    core::mem::forget(job);
    ONLINE.store(cpu, Ordering::Release);
    DEDICATED.fetch_add(1, Ordering::AcqRel);
    Some(cpu)
}

/// CPUs `dedicate_last` took out of the tests' reach.
pub fn dedicated() -> usize {
    DEDICATED.load(Ordering::Acquire)
}

/// Starts `f` on CPU `cpu` (not the caller's).
pub fn start(cpu: usize, f: impl FnOnce() + Send + 'static) -> Result<Job, SmpError> {
    if cpu == 0 || cpu >= MAX_CPUS || !MAILBOXES[cpu].online.load(Ordering::Acquire) {
        return Err(SmpError::NoSuchCpu(cpu));
    }
    let mb = &MAILBOXES[cpu];
    let mut w = mb.work.lock();
    if w.is_some() || mb.result.lock().is_some() {
        return Err(SmpError::Busy(cpu));
    }
    *w = Some(Box::new(f));
    drop(w);
    cpu::sev();
    Ok(Job { cpu, joined: false })
}

/// Work on another CPU that returns a value: `join` gives it back.
pub struct Running<T> {
    job: Job,
    out: alloc::sync::Arc<spin::Mutex<Option<T>>>,
}

/// Starts `f` on CPU `cpu` and keeps its result for `join`.
pub fn run_on<T: Send + 'static>(cpu: usize, f: impl FnOnce() -> T + Send + 'static) -> Result<Running<T>, SmpError> {
    let out = alloc::sync::Arc::new(spin::Mutex::new(None));
    let o = out.clone();
    let job = start(cpu, move || *o.lock() = Some(f()))?;
    Ok(Running { job, out })
}

impl<T> Running<T> {
    /// Whether the work has finished (its value is ready).
    pub fn finished(&self) -> bool {
        self.out.lock().is_some()
    }

    /// Waits for the work and returns its value; an unexpected exception on
    /// that CPU comes back as an error.
    pub fn join(self) -> Result<T, Unexpected> {
        let out = self.out.clone();
        self.job.join()?;
        let v = out.lock().take();
        Ok(v.expect("work ended without a value"))
    }
}

impl Job {
    /// Waits for the work to finish; an unexpected exception on that CPU
    /// comes back as an error.
    pub fn join(mut self) -> Result<(), Unexpected> {
        self.joined = true;
        self.wait()
    }

    fn wait(&self) -> Result<(), Unexpected> {
        let mb = &MAILBOXES[self.cpu];
        loop {
            if let Some(r) = mb.result.lock().take() {
                return r;
            }
            crate::mm::mmu_context::service_leave_request();
            cpu::wfe();
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        if !self.joined {
            crate::testhooks::schedpoint::release_all();
            let _ = self.wait();
        }
    }
}
