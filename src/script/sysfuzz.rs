//! Syscall-argument fuzzing from EL0: every system call and userfaultfd
//! ioctl this kernel implements, called by a real EL0 task (SVC) with
//! random and edge-case arguments: 0, -1, unaligned and huge values,
//! kernel-half, agent and tagged addresses, overlapping ranges, bad
//! pointers inside the ioctl structures, bad descriptors, unknown flags.
//! Every call must succeed or return one of the errnos Linux gives for
//! it, never panic or hang; the invariant checker runs every 64 calls and
//! at the end, and the harness checks nothing leaked.
//!
//! Not called: a blocking read(2) of a userfaultfd with nothing queued
//! (it waits, as in Linux) and exit (it ends the task; called once at the
//! end).

use super::fuzz::Rng;
use crate::errno::Errno;
use crate::harness::{TestResult, Verdict};
use crate::mm::mmap::*;
use crate::mm::uffd_uapi::*;
use crate::suites::scenario::{Scenario, O_NONBLOCK, PAGE};
use crate::task::agent::{Signal, AGENT_VA};
use crate::task::prctl::{PR_GET_TAGGED_ADDR_CTRL, PR_SET_TAGGED_ADDR_CTRL, SYS_PRCTL};
use crate::task::syscall::*;
use crate::task::Task;
use crate::testhooks::knobs;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;

// Linux's errno numbers beyond those errno.rs names.
const EINTR: i32 = 4;
const E2BIG: i32 = 7;
const ENODEV: i32 = 19;
const ENFILE: i32 = 23;
const EMFILE: i32 = 24;
const ETXTBSY: i32 = 26;
const ENOSPC: i32 = 28;
const EHWPOISON: i32 = 133;

/// What Linux may return for each call (from its man pages and sources).
fn allowed(nr: u64) -> &'static [i32] {
    match nr {
        // EOPNOTSUPP: Linux gives it for MAP_SHARED_VALIDATE with flags it does
        // not know; this kernel gives it for every MAP_SHARED_VALIDATE (absent).
        SYS_MMAP => &[13, 9, 17, 22, ENFILE, ENODEV, 12, 75, 1, ETXTBSY, 11, 95],
        SYS_MUNMAP => &[22, 12],
        SYS_MPROTECT => &[13, 22, 12],
        SYS_MADVISE => &[11, 9, 22, 5, 12, 1, 14, 16, EINTR, EHWPOISON, 95],
        SYS_MLOCK | SYS_MUNLOCK => &[11, 12, 1, 22, EINTR],
        SYS_PRCTL => &[22, 14, 1, 13, 16],
        SYS_USERFAULTFD => &[22, EMFILE, ENFILE, 12, 1],
        SYS_IOCTL => &[9, 14, 22, 25, 2, 17, 16, 11, 12, 3, 1, ENOSPC, 95, E2BIG],
        SYS_READ => &[9, 14, 22, 11, EINTR],
        SYS_CLOSE => &[9, EINTR],
        SYS_SWAPON => &[22, 1, 16, 2, 12, 14, 13],
        SYS_SWAPOFF => &[22, 1, 2, 12, 14],
        SYS_CLONE => &[22, 12, 11, 1],
        _ => &[38],
    }
}

const CALLS: &[(u64, &str)] = &[
    (SYS_MMAP, "mmap"),
    (SYS_MUNMAP, "munmap"),
    (SYS_MPROTECT, "mprotect"),
    (SYS_MADVISE, "madvise"),
    (SYS_MLOCK, "mlock"),
    (SYS_MUNLOCK, "munlock"),
    (SYS_PRCTL, "prctl"),
    (SYS_USERFAULTFD, "userfaultfd"),
    (SYS_IOCTL, "ioctl"),
    (SYS_READ, "read"),
    (SYS_CLOSE, "close"),
    (SYS_SWAPON, "swapon"),
    (SYS_SWAPOFF, "swapoff"),
    (SYS_CLONE, "clone"),
    (SYS_GETPID, "getpid"),
    (0x1ff, "an unknown call"),
];

const IOCTLS: &[u64] = &[
    UFFDIO_API,
    UFFDIO_REGISTER,
    UFFDIO_UNREGISTER,
    UFFDIO_WAKE,
    UFFDIO_COPY,
    UFFDIO_ZEROPAGE,
    UFFDIO_MOVE,
    UFFDIO_WRITEPROTECT,
];

/// Lengths above this never go to calls that populate (mlock, MADV_POPULATE_*,
/// MAP_POPULATE): filling gigabytes proves nothing and takes minutes.
const POPULATE_MAX: u64 = 16 << 20;

struct Ctx {
    t: Arc<Task>,
    /// A mapped scratch region of 16 pages, and the ioctl argument page.
    scratch: u64,
    arg: u64,
    uffd: u64,
}

impl Ctx {
    fn new(s: &mut Scenario) -> Result<Ctx, Verdict> {
        let t = s.spawn()?;
        let scratch = crate::suites::scenario::mmap(
            &t,
            0,
            16 * PAGE as usize,
            PROT_READ | PROT_WRITE | PROT_MTE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
        )? as u64;
        let arg = crate::suites::scenario::mmap(
            &t,
            0,
            PAGE as usize,
            PROT_READ | PROT_WRITE,
            MAP_PRIVATE | MAP_ANONYMOUS,
            -1,
        )? as u64;
        let uffd = crate::suites::scenario::must(t.userfaultfd(O_NONBLOCK), "userfaultfd")?;
        Ok(Ctx { t, scratch, arg, uffd })
    }

    fn addr(&self, r: &mut Rng) -> u64 {
        let kernel = &CALLS as *const _ as u64;
        match r.below(14) {
            0 => 0,
            1 => u64::MAX,
            2 => 0xfff,
            3 => 0x1000,
            4 => 1 << 47,
            5 => (1 << 48) - 0x1000,
            6 => 0xffff_0000_0000_0000,
            7 => kernel,
            8 => AGENT_VA as u64 + 0x1000 * r.below(2),
            9 => self.scratch + 8,
            10 => (0x0b << 56) | self.scratch,
            11 => self.arg,
            _ => self.scratch + 0x1000 * r.below(20),
        }
    }

    fn len(&self, r: &mut Rng) -> u64 {
        match r.below(10) {
            0 => 0,
            1 => u64::MAX,
            2 => u64::MAX - 0xfff,
            3 => 1 << 40,
            4 => 1,
            5 => 0x1001,
            _ => 0x1000 * (1 + r.below(24)),
        }
    }

    fn fd(&self, r: &mut Rng) -> u64 {
        match r.below(6) {
            0 => u64::MAX,
            1 => 0,
            2 => self.uffd + 1,
            3 => 1 << 32 | self.uffd,
            _ => self.uffd,
        }
    }

    fn bits(r: &mut Rng) -> u64 {
        match r.below(5) {
            0 => 0,
            1 => u64::MAX,
            2 => 1 << r.below(64),
            _ => r.next() & 0xff,
        }
    }

    /// Random ioctl structure words at the argument page.
    fn fill_arg(&self, r: &mut Rng) -> Result<(), Signal> {
        for w in 0..6u64 {
            let v = match r.below(4) {
                0 => self.addr(r),
                1 => self.len(r),
                2 => Self::bits(r),
                _ => r.next(),
            };
            self.t.store((self.arg + 8 * w) as usize, v)?;
        }
        Ok(())
    }

    fn args(&self, nr: u64, r: &mut Rng) -> Result<[u64; 6], Signal> {
        let mut a = [0u64; 6];
        match nr {
            SYS_MMAP => {
                let len = self.len(r);
                let mut flags = [MAP_PRIVATE, MAP_SHARED, 0, MAP_SHARED_VALIDATE][r.below(4) as usize]
                    | if r.chance(70) { MAP_ANONYMOUS } else { 0 }
                    | if r.chance(30) { MAP_FIXED } else { 0 }
                    | if r.chance(10) { 0x10_0000 } else { 0 } // MAP_FIXED_NOREPLACE
                    | if r.chance(10) { 1 << r.below(32) } else { 0 };
                if len > POPULATE_MAX {
                    flags &= !(MAP_POPULATE | MAP_LOCKED);
                }
                let prot =
                    [PROT_READ | PROT_WRITE, PROT_READ | PROT_WRITE | PROT_MTE, 0, Self::bits(r)][r.below(4) as usize];
                let off = [0, 0x1000, 1, u64::MAX][r.below(4) as usize];
                let fd = [u64::MAX, u64::MAX, 0, self.uffd][r.below(4) as usize];
                a = [self.addr(r), len, prot, flags, fd, off];
            }
            SYS_MUNMAP => a[..2].copy_from_slice(&[self.addr(r), self.len(r)]),
            SYS_MPROTECT => {
                let prot = [PROT_READ, PROT_READ | PROT_WRITE | PROT_MTE, 0, Self::bits(r)][r.below(4) as usize];
                a[..3].copy_from_slice(&[self.addr(r), self.len(r), prot]);
            }
            SYS_MADVISE => {
                let advice = match r.below(4) {
                    0 => r.below(30),
                    1 => Self::bits(r),
                    _ => [
                        MADV_DONTNEED,
                        MADV_PAGEOUT,
                        MADV_COLD,
                        MADV_HUGEPAGE,
                        MADV_COLLAPSE,
                        MADV_FREE,
                        MADV_WIPEONFORK,
                    ][r.below(7) as usize],
                };
                let mut len = self.len(r);
                if matches!(advice, MADV_POPULATE_READ | MADV_POPULATE_WRITE | MADV_WILLNEED) && len > POPULATE_MAX {
                    len = 0x1000;
                }
                a[..3].copy_from_slice(&[self.addr(r), len, advice]);
            }
            SYS_MLOCK | SYS_MUNLOCK => {
                let len = self.len(r).min(POPULATE_MAX);
                a[..2].copy_from_slice(&[self.addr(r), len]);
            }
            SYS_PRCTL => {
                let option = [PR_SET_TAGGED_ADDR_CTRL, PR_GET_TAGGED_ADDR_CTRL, r.below(70) as u32, u32::MAX]
                    [r.below(4) as usize];
                a[..5].copy_from_slice(&[u64::from(option), Self::bits(r), Self::bits(r), 0, 0]);
            }
            SYS_USERFAULTFD => a[0] = [O_NONBLOCK, 0, Self::bits(r), 1][r.below(4) as usize],
            SYS_IOCTL => {
                self.fill_arg(r)?;
                let cmd = if r.chance(80) { IOCTLS[r.below(IOCTLS.len() as u64) as usize] } else { Self::bits(r) };
                let ptr = if r.chance(75) { self.arg } else { self.addr(r) };
                a[..3].copy_from_slice(&[self.fd(r), cmd, ptr]);
            }
            SYS_READ => {
                // Only the non-blocking descriptor (or bad ones).
                let fd = if r.chance(80) { self.uffd } else { u64::MAX };
                a[..3].copy_from_slice(&[fd, self.addr(r), [32, 0, 31, 4096, u64::MAX][r.below(5) as usize]]);
            }
            SYS_CLOSE => a[0] = [u64::MAX, self.uffd + 1, 0][r.below(3) as usize],
            SYS_SWAPON => a[..2].copy_from_slice(&[[0, 1, self.addr(r)][r.below(3) as usize], Self::bits(r) & 3]),
            SYS_SWAPOFF => a[0] = [0, 1, u64::MAX][r.below(3) as usize],
            SYS_CLONE => a[0] = [SIGCHLD, 0, Self::bits(r)][r.below(3) as usize],
            _ => a = [r.next(), r.next(), 0, 0, 0, 0],
        }
        Ok(a)
    }
}

fn show(args: &[u64; 6]) -> String {
    format!("{:#x}, {:#x}, {:#x}, {:#x}, {:#x}, {:#x}", args[0], args[1], args[2], args[3], args[4], args[5])
}

/// `fuzz=SEED:COUNT`: 10 x COUNT calls of each system call, from SEED.
fn syscall_arguments() -> TestResult {
    let per_call = knobs::FUZZ_COUNT.get() * 10;
    let mut r = Rng::new(knobs::FUZZ_SEED.get() ^ 0x5C5C);
    let mut s = Scenario::new();
    let mut c = Ctx::new(&mut s)?;
    let (mut calls, mut failed_ok, mut respawns) = (0u64, 0u64, 0u64);
    for round in 0..per_call {
        for &(nr, name) in CALLS {
            let a = match c.args(nr, &mut r) {
                Ok(a) => a,
                // An earlier call unmapped or protected the argument page.
                Err(Signal::Segv { .. }) => {
                    respawns += 1;
                    c = Ctx::new(&mut s)?;
                    c.args(nr, &mut r).map_err(|sig| Verdict::Fail(format!("writing the ioctl structure: {sig:?}")))?
                }
                Err(sig) => crate::fail!("writing the ioctl structure: the task got {sig:?}"),
            };
            calls += 1;
            match c.t.syscall(nr, &a) {
                Ok(v) => match Errno::from_ret(v) {
                    Some(e) if !allowed(nr).contains(&e.0) => {
                        crate::fail!("{name}({}) returned {e}, which Linux does not return for it", show(&a))
                    }
                    Some(_) => failed_ok += 1,
                    None => {
                        // A descriptor made by a successful userfaultfd() is
                        // closed again; a fork child is left to the teardown.
                        if nr == SYS_USERFAULTFD && v != c.uffd {
                            let _ = c.t.close(v);
                        }
                        if nr == SYS_CLONE {
                            if let Some(child) = Task::get(v as u32) {
                                s.tasks.push(child);
                            }
                        }
                    }
                },
                // The task unmapped or protected its own code (its right);
                // go on with a fresh one.
                Err(sig)
                    if !c.t.mm().mmap_lock.read().fully_mapped(AGENT_VA, AGENT_VA + PAGE as usize)
                        || matches!(sig, Signal::Segv { .. }) =>
                {
                    if respawns < 3 {
                        crate::println!(
                            "fuzz: {name}({}) left the task without its code ({sig:?}); a fresh task goes on",
                            show(&a)
                        );
                    }
                    respawns += 1;
                    c = Ctx::new(&mut s)?;
                }
                Err(sig) => crate::fail!("{name}({}): the task got {sig:?}", show(&a)),
            }
            if calls.is_multiple_of(64) {
                crate::mm::invariants::check().map_err(|e| {
                    Verdict::Fail(format!("invariant checker after {calls} calls (round {round}): {e}"))
                })?;
            }
        }
    }
    crate::println!("SYSFUZZ: calls={calls} errors={failed_ok} ok={} fresh-tasks={respawns}", calls - failed_ok);
    let ended = s.finish();
    // A random swapon that succeeded and was never undone by a random
    // swapoff: the device goes off as the test found it.
    if crate::mm::swapfile::swap_info(0).is_some() {
        crate::mm::swap::swapoff(0).map_err(|e| Verdict::Fail(format!("swapoff after the calls: {e}")))?;
    }
    ended
}
// No limit of its own: the runner's, which qemu-run.sh --fuzz scales with COUNT.
crate::kernel_test!(fuzz, syscall_arguments);
