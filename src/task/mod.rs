//! EL0 tasks: an address space plus the agent that acts in it. A task's
//! operations run on whichever CPU calls them, so any CPU can run tasks.

pub mod agent;
pub mod prctl;
pub mod syscall;
pub mod usys;

use crate::errno::{Errno, ENOMEM};
use crate::mm::mm_types::MmStruct;
use agent::{Routine, Signal};
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use spin::Mutex;

pub struct Task {
    pub pid: u32,
    /// None once the task has exited.
    mm: Mutex<Option<Arc<MmStruct>>>,
    /// PR_SET_TAGGED_ADDR_CTRL's value (inherited by fork).
    pub tagged_addr_ctrl: AtomicU64,
    /// The userfaultfd descriptors this task holds (its fd table: fork
    /// copies it; another task gets one only if it is passed, install_fd).
    fds: Mutex<BTreeSet<i32>>,
}

static NEXT_PID: AtomicU32 = AtomicU32::new(1);
static TASKS: Mutex<BTreeMap<u32, Arc<Task>>> = Mutex::new(BTreeMap::new());

impl Task {
    /// A new task with an empty address space and the agent mapped.
    pub fn spawn() -> Result<Arc<Task>, Errno> {
        let mm = MmStruct::new().ok_or(ENOMEM)?;
        if let Err(e) = crate::mm::mmap::map_special(&mm, agent::AGENT_VA, &agent::code_pfns()) {
            // A page table for the agent could not be allocated: the half
            // built address space goes as an exiting one would.
            crate::mm::zap::exit_mmap(&mm);
            return Err(e);
        }
        Ok(Self::register(mm, prctl::DEFAULT_CTRL, BTreeSet::new()))
    }

    /// The child of a fork: its address space, and the parent's tagged
    /// address control and descriptors.
    pub fn register_child(&self, mm: Arc<MmStruct>) -> Arc<Task> {
        let ctrl = self.tagged_addr_ctrl.load(Ordering::Acquire);
        Self::register(mm, ctrl, self.fds.lock().clone())
    }

    fn register(mm: Arc<MmStruct>, tagged_addr_ctrl: u64, fds: BTreeSet<i32>) -> Arc<Task> {
        let t = Arc::new(Task {
            pid: NEXT_PID.fetch_add(1, Ordering::Relaxed),
            mm: Mutex::new(Some(mm)),
            tagged_addr_ctrl: AtomicU64::new(tagged_addr_ctrl),
            fds: Mutex::new(fds),
        });
        TASKS.lock().insert(t.pid, t.clone());
        t
    }

    pub fn get(pid: u32) -> Option<Arc<Task>> {
        TASKS.lock().get(&pid).cloned()
    }

    /// The task's address space (panics after exit: scenarios must not use
    /// an exited task, and the agent never runs one).
    pub fn mm(&self) -> Arc<MmStruct> {
        self.mm.lock().clone().expect("task used after exit")
    }

    pub fn alive(&self) -> bool {
        self.mm.lock().is_some()
    }

    /// Whether descriptor `fd` is in this task's table.
    pub fn holds_fd(&self, fd: i64) -> bool {
        i32::try_from(fd).is_ok_and(|fd| self.fds.lock().contains(&fd))
    }

    pub fn install_fd(&self, fd: i32) {
        self.fds.lock().insert(fd);
    }

    /// close(2) of a userfaultfd in this task: the context goes once no
    /// task holds it any more. EBADF if this task does not hold it.
    pub fn close_fd(&self, fd: i32) -> Result<(), Errno> {
        if !self.fds.lock().remove(&fd) {
            return Err(crate::errno::EBADF);
        }
        release(fd);
        Ok(())
    }

    /// Tears the address space down (exit_mmap), closes the task's
    /// descriptors and forgets the task.
    pub fn do_exit(&self) {
        let mm = self.mm.lock().take();
        if let Some(mm) = mm {
            crate::mm::zap::exit_mmap(&mm);
            // The tables go with the last reference: CPUs keeping them
            // installed let go now if they can.
            crate::mm::mmu_context::release(Some(&mm), 20_000);
        }
        TASKS.lock().remove(&self.pid);
        let fds = core::mem::take(&mut *self.fds.lock());
        for fd in fds {
            release(fd);
        }
    }

    pub fn run(&self, r: Routine, args: &[u64]) -> Result<u64, Signal> {
        agent::run(self, r, args)
    }

    pub fn load(&self, addr: usize) -> Result<u64, Signal> {
        self.run(Routine::Load, &[addr as u64])
    }

    pub fn store(&self, addr: usize, v: u64) -> Result<(), Signal> {
        self.run(Routine::Store, &[addr as u64, v]).map(|_| ())
    }

    /// Stores 1, 2, 3, ... to `addr` in one EL0 entry until the word at
    /// `until` is non-zero, then stores once more: a CPU that keeps running
    /// EL0 code with its translation cached, for observing a missing TLB
    /// invalidation. Returns the last value stored.
    pub fn store_until(&self, addr: usize, until: usize) -> Result<u64, Signal> {
        self.run(Routine::StoreUntil, &[addr as u64, 1, until as u64])
    }

    /// IRG at EL0: a random tag for `addr`, from the tags the thread's
    /// PR_MTE_TAG_MASK includes.
    pub fn irg(&self, addr: usize) -> Result<u8, Signal> {
        self.run(Routine::Irg, &[addr as u64]).map(|v| ((v >> 56) & 0xF) as u8)
    }

    /// LDG: the allocation tag of the granule at `addr`.
    pub fn ldg(&self, addr: usize) -> Result<u8, Signal> {
        self.run(Routine::Ldg, &[addr as u64]).map(|v| ((v >> 56) & 0xF) as u8)
    }

    /// STG over `[addr, addr + len)` with the tag in `addr`.
    pub fn tag_range(&self, addr: usize, len: usize) -> Result<(), Signal> {
        self.run(Routine::StgRange, &[addr as u64, len as u64]).map(|_| ())
    }

    /// The tags of every granule of the page at `addr`, read with LDG at EL0.
    pub fn page_tags(&self, addr: usize) -> Result<[u8; 256], Signal> {
        let mut out = [0u8; 256];
        for block in 0..16 {
            let packed = self.run(Routine::Tags16, &[(addr + block * 256) as u64])?;
            for g in 0..16 {
                out[block * 16 + g] = ((packed >> (4 * g)) & 0xF) as u8;
            }
        }
        Ok(out)
    }

    /// In one EL0 entry, a load from (`store` None) or a store of the value
    /// to every `stride` bytes of `[addr, addr + len)`, as a Linux test
    /// program's loop; returns the sum of the words loaded.
    pub fn touch(&self, addr: usize, len: usize, stride: usize, store: Option<u64>) -> Result<u64, Signal> {
        assert!(stride > 0, "touch with stride 0 never ends");
        let (write, v) = store.map_or((0, 0), |v| (1, v));
        self.run(Routine::Touch, &[addr as u64, len as u64, stride as u64, write, v])
    }

    /// In one EL0 entry, a load through each of the `n` pointers (tags
    /// included) stored as u64s at `list` in the task's memory, and with
    /// `store_back` the word stored again (`*p = *p`: a write fault where
    /// the page is not writable); returns the sum of the words loaded.
    pub fn load_list(&self, list: usize, n: usize, store_back: bool) -> Result<u64, Signal> {
        self.run(Routine::LoadList, &[list as u64, n as u64, store_back as u64])
    }

    pub fn fill(&self, addr: usize, len: usize, seed: u64) -> Result<(), Signal> {
        self.run(Routine::Fill, &[addr as u64, len as u64, seed]).map(|_| ())
    }

    pub fn fnv(&self, addr: usize, len: usize) -> Result<u64, Signal> {
        self.run(Routine::Fnv, &[addr as u64, len as u64])
    }

    /// A raw system call: the value EL0 gets back in x0.
    pub fn syscall(&self, nr: u64, args: &[u64]) -> Result<u64, Signal> {
        let mut a = [0u64; 7];
        a[..args.len()].copy_from_slice(args);
        a[6] = nr;
        self.run(Routine::Syscall, &a)
    }
}

/// Closes the context of `fd` unless a live task still holds it.
fn release(fd: i32) {
    let held = TASKS.lock().values().any(|t| t.fds.lock().contains(&fd));
    if !held {
        let _ = crate::mm::userfaultfd::close(fd);
    }
}

/// Every live task.
pub fn all() -> Vec<Arc<Task>> {
    TASKS.lock().values().cloned().collect()
}
