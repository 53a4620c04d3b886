//! Named schedule points: places in the mm paths (after a lock is dropped,
//! before it is retaken) where a test can stop a CPU, run another CPU's
//! operation, and let the first continue. This forces the interleavings
//! behind ordering bugs deterministically, on real vCPUs.
//!
//!     let bp = schedpoint::arm(&points::WP_PAGE_COPY_AFTER_COPY);
//!     let job = smp::start(1, ...)?;          // CPU 1 runs into the point
//!     bp.wait_reached(deadline)?;             // ... and stops there
//!     /* CPU 0 does its operation */
//!     bp.release();                           // CPU 1 goes on
//!     job.join()?;

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use spin::Mutex;

use super::points::Point;

struct Armed {
    point: &'static Point,
    /// CPU index + 1 of the CPU stopped here, 0 while none is.
    reached: AtomicUsize,
    released: AtomicBool,
}

static ARMED: Mutex<Vec<Arc<Armed>>> = Mutex::new(Vec::new());
static ANY_ARMED: AtomicUsize = AtomicUsize::new(0);

/// Called by the paths at each named point. Costs one load when nothing is armed.
pub fn sched_point(point: &'static Point) {
    if ANY_ARMED.load(Ordering::Acquire) == 0 {
        return;
    }
    let hit =
        ARMED.lock().iter().find(|a| core::ptr::eq(a.point, point) && a.reached.load(Ordering::Acquire) == 0).cloned();
    if let Some(a) = hit {
        a.reached.store(crate::arch::cpu::id() + 1, Ordering::Release);
        crate::arch::cpu::sev();
        while !a.released.load(Ordering::Acquire) {
            crate::arch::cpu::wfe();
        }
    }
}

/// How many points are armed.
pub fn armed() -> usize {
    ANY_ARMED.load(Ordering::Acquire)
}

/// Lets every stopped CPU go and disarms every point (a test that ends
/// early must not leave a CPU parked).
pub fn release_all() {
    let all: Vec<Arc<Armed>> = core::mem::take(&mut *ARMED.lock());
    for a in &all {
        a.released.store(true, Ordering::Release);
    }
    ANY_ARMED.fetch_sub(all.len(), Ordering::AcqRel);
    crate::arch::cpu::sev();
}

/// An armed point: the first CPU to reach it stops until `release`.
pub struct Breakpoint {
    a: Arc<Armed>,
}

pub fn arm(point: &'static Point) -> Breakpoint {
    let a = Arc::new(Armed { point, reached: AtomicUsize::new(0), released: AtomicBool::new(false) });
    ARMED.lock().push(a.clone());
    ANY_ARMED.fetch_add(1, Ordering::AcqRel);
    Breakpoint { a }
}

impl Breakpoint {
    /// Waits up to `timeout_us` for a CPU to stop here; returns its index.
    pub fn wait_reached(&self, timeout_us: u64) -> Result<usize, &'static str> {
        let f = crate::arch::cpu::counter_freq().max(1);
        let deadline = crate::arch::cpu::counter() + timeout_us * f / 1_000_000;
        loop {
            let r = self.a.reached.load(Ordering::Acquire);
            if r != 0 {
                return Ok(r - 1);
            }
            if crate::arch::cpu::counter() > deadline {
                return Err("no CPU reached the schedule point in time");
            }
            core::hint::spin_loop();
        }
    }

    pub fn release(self) {}
}

impl Drop for Breakpoint {
    /// Releasing (or dropping) disarms the point and lets the stopped CPU go.
    fn drop(&mut self) {
        self.a.released.store(true, Ordering::Release);
        let mut armed = ARMED.lock();
        let before = armed.len();
        armed.retain(|x| !Arc::ptr_eq(x, &self.a));
        ANY_ARMED.fetch_sub(before - armed.len(), Ordering::AcqRel);
        crate::arch::cpu::sev();
    }
}
