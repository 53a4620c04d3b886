//! Scenario helpers shared by the EL0 suites: tasks and files torn down
//! even when a scenario fails, system calls with errno, and checks of data,
//! tags, counts and signals.

use crate::arch::mte::with_tag;
use crate::errno::Errno;
use crate::harness::{TestResult, Verdict};
use crate::mm::filemap::{self, initial_byte, File};
use crate::mm::folio::pfn_to_page;
use crate::mm::mm_types::{MM_ANONPAGES, MM_FILEPAGES};
use crate::mm::pte::*;
use crate::mm::uffd_uapi::*;
use crate::task::agent::{fill_byte, fnv, SegvKind, Signal};
use crate::task::usys::SysResult;
use crate::task::Task;
use crate::{ensure, ensure_eq, fail};
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

pub const PAGE: usize = crate::arch::mmu::PAGE_SIZE;
pub const RW: u64 = crate::mm::mmap::PROT_READ | crate::mm::mmap::PROT_WRITE;
pub const ANON: u64 = crate::mm::mmap::MAP_PRIVATE | crate::mm::mmap::MAP_ANONYMOUS;

pub const O_NONBLOCK: u64 = 0o4000;

/// A task's userfaultfd with an argument page for the ioctl structures.
#[derive(Clone)]
pub struct UffdFd {
    pub t: Arc<Task>,
    pub fd: u64,
    pub arg: usize,
}

impl UffdFd {
    pub fn new(t: &Arc<Task>, features: u64) -> Result<UffdFd, Verdict> {
        let fd = must(t.userfaultfd(O_NONBLOCK), "userfaultfd")?;
        let arg = mmap(t, 0, PAGE, RW, ANON, -1)?;
        let u = UffdFd { t: t.clone(), fd, arg };
        must(u.api(crate::mm::userfaultfd::UFFD_API, features), "UFFDIO_API")?;
        Ok(u)
    }

    /// Writes the uAPI structure `v` at the argument page, issues `cmd`, and
    /// gives the result and the structure as the kernel left it.
    pub fn call<T: Words>(&self, cmd: u64, v: &T) -> Result<(Result<u64, Errno>, T), Signal> {
        self.t.ioctl_struct(self.fd, cmd, self.arg, v)
    }

    pub fn result<T: Words>(&self, cmd: u64, v: &T) -> SysResult<u64> {
        self.call(cmd, v).map(|(r, _)| r)
    }

    pub fn api(&self, api: u64, features: u64) -> SysResult<u64> {
        self.result(UFFDIO_API, &UffdioApi { api, features, ioctls: 0 })
    }

    pub fn try_register(&self, start: usize, len: usize, mode: u64) -> SysResult<u64> {
        self.result(UFFDIO_REGISTER, &UffdioRegister { start: start as u64, len: len as u64, mode, ioctls: 0 })
    }

    pub fn register(&self, start: usize, len: usize, mode: u64) -> TestResult {
        must(self.try_register(start, len, mode), "UFFDIO_REGISTER").map(|_| ())
    }

    pub fn unregister(&self, start: usize, len: usize) -> SysResult<u64> {
        self.result(UFFDIO_UNREGISTER, &UffdioRange { start: start as u64, len: len as u64 })
    }

    pub fn wake(&self, start: usize, len: usize) -> SysResult<u64> {
        self.result(UFFDIO_WAKE, &UffdioRange { start: start as u64, len: len as u64 })
    }

    pub fn copy(&self, dst: usize, src: usize, len: usize, mode: u64) -> SysResult<u64> {
        self.result(UFFDIO_COPY, &UffdioCopy { dst: dst as u64, src: src as u64, len: len as u64, mode, copy: 0 })
    }

    pub fn zeropage(&self, start: usize, len: usize, mode: u64) -> SysResult<u64> {
        self.result(UFFDIO_ZEROPAGE, &UffdioZeropage { start: start as u64, len: len as u64, mode, zeropage: 0 })
    }

    pub fn writeprotect(&self, start: usize, len: usize, mode: u64) -> SysResult<u64> {
        self.result(UFFDIO_WRITEPROTECT, &UffdioWriteprotect { start: start as u64, len: len as u64, mode })
    }

    /// UFFDIO_MOVE: the ioctl's result and the `move` field (0x5a5a if the
    /// kernel left it unwritten).
    pub fn mv(&self, dst: usize, src: usize, len: usize, mode: u64) -> Result<(Result<u64, Errno>, i64), Verdict> {
        let m = UffdioMove { dst: dst as u64, src: src as u64, len: len as u64, mode, moved: 0x5a5a };
        let (r, back) = ok(self.call(UFFDIO_MOVE, &m), "UFFDIO_MOVE")?;
        Ok((r, back.moved))
    }

    /// The same descriptor with its ioctl structures at 64-byte slot `slot`
    /// of the argument page, for a call made on another CPU meanwhile.
    pub fn slot(&self, slot: usize) -> UffdFd {
        assert!(slot < 2048 / 64, "argument slot {slot} overlaps the message buffer");
        UffdFd { t: self.t.clone(), fd: self.fd, arg: self.arg + slot * 64 }
    }

    /// UFFDIO_MOVE of `len` bytes from `src` to `dst` started on `cpu`,
    /// its uffdio_move at argument slot `slot`.
    pub fn start_move(&self, cpu: usize, slot: usize, dst: usize, src: usize, len: usize) -> Result<Mover, Verdict> {
        let u = self.slot(slot);
        let m = UffdioMove { dst: dst as u64, src: src as u64, len: len as u64, mode: 0, moved: 0x5a5a };
        on_cpu(cpu, &format!("the mover on CPU {cpu}"), move || u.call(UFFDIO_MOVE, &m))
    }

    /// Reads one message: (event, flags/arg0, address/arg1).
    pub fn read(&self) -> Result<Option<(u8, u64, u64)>, Verdict> {
        let buf = self.arg + 2048;
        match returned(self.t.read(self.fd, buf, 32), "read(uffd)")? {
            Ok(32) => {
                let w0 = ok(self.t.load(buf), "msg")?;
                Ok(Some(((w0 & 0xff) as u8, ok(self.t.load(buf + 8), "msg")?, ok(self.t.load(buf + 16), "msg")?)))
            }
            Err(crate::errno::EAGAIN) => Ok(None),
            other => fail!("read(uffd) returned {other:?}"),
        }
    }

    pub fn ctx(&self) -> Result<Arc<crate::mm::userfaultfd::Uffd>, Verdict> {
        crate::mm::userfaultfd::get(self.fd as i64).ok_or_else(|| verdict("uffd context", "gone"))
    }
}

/// A UFFDIO_MOVE running on another CPU (UffdFd::start_move).
pub type Mover = OnCpu<Result<(Result<u64, Errno>, UffdioMove), Signal>>;

pub fn verdict(what: &str, e: impl core::fmt::Debug) -> Verdict {
    Verdict::Fail(format!("{what}: {e:?}"))
}

/// Tasks and files of one scenario; torn down even when the scenario fails.
pub struct Scenario {
    pub tasks: Vec<Arc<Task>>,
    pub fds: Vec<i32>,
    /// Tunables set for the scenario (put back when it ends).
    knobs: Vec<crate::testhooks::knobs::Set>,
}

impl Scenario {
    pub fn new() -> Scenario {
        Scenario { tasks: Vec::new(), fds: Vec::new(), knobs: Vec::new() }
    }

    pub fn spawn(&mut self) -> Result<Arc<Task>, Verdict> {
        let t = Task::spawn().map_err(|e| verdict("spawning a task", e))?;
        self.tasks.push(t.clone());
        Ok(t)
    }

    pub fn fork(&mut self, parent: &Task) -> Result<Arc<Task>, Verdict> {
        let pid = must(parent.fork(), "fork")?;
        let child = Task::get(pid).ok_or_else(|| verdict("fork returned an unknown pid", pid))?;
        self.tasks.push(child.clone());
        Ok(child)
    }

    /// THP for MADV_HUGEPAGE VMAs (enabled=madvise, 2 MiB inherit) for the
    /// rest of the scenario, whatever the boot tunables say: for scenarios
    /// that need a THP to test what they test.
    pub fn thp(&mut self) {
        use crate::cmdline::{ThpEnabled, ThpOrderPolicy};
        use crate::testhooks::knobs::{THP_ENABLED, THP_ORDER};
        self.knobs.push(THP_ENABLED.set(ThpEnabled::Madvise as u64));
        self.knobs.push(THP_ORDER[9].set(ThpOrderPolicy::Inherit as u64));
    }

    pub fn file(&mut self, pages: u64) -> (i32, Arc<File>) {
        let (fd, f) = filemap::create(pages);
        self.fds.push(fd);
        (fd, f)
    }

    /// Invariants with every task alive, then again once they all exited.
    pub fn finish(mut self) -> TestResult {
        crate::mm::invariants::check().map_err(|e| Verdict::Fail(format!("with tasks alive: {e}")))?;
        self.teardown();
        crate::mm::invariants::check().map_err(|e| Verdict::Fail(format!("after every task exited: {e}")))
    }

    pub fn teardown(&mut self) {
        for t in self.tasks.drain(..) {
            if t.alive() {
                let _ = t.exit(0);
            }
            if t.alive() {
                // It could not run exit (it unmapped its own code): killed.
                t.do_exit();
            }
        }
        for fd in self.fds.drain(..) {
            filemap::close(fd);
        }
        crate::mm::userfaultfd::close_all();
        while let Some(k) = self.knobs.pop() {
            drop(k); // the last set first, so each puts back what it found
        }
    }
}

impl Drop for Scenario {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Swap on the RAM-disk while it lives; off again when dropped, with the
/// slot limit put back. A test using it declares `ramdisk` in its
/// kernel_test! (the harness skips it without one); one that does not
/// fails here, naming the missing declaration.
pub struct SwapOn {
    _slots: Option<crate::testhooks::knobs::Set>,
}

impl SwapOn {
    pub fn new() -> Result<SwapOn, Verdict> {
        Self::with_slots(0)
    }

    /// Swap limited to `slots` slots (0: the whole RAM-disk).
    pub fn with_slots(slots: u64) -> Result<SwapOn, Verdict> {
        if !crate::drivers::ramdisk::present() {
            return Err(Verdict::Fail(alloc::string::String::from(
                "swap needs the RAM-disk: declare `ramdisk` in this test's kernel_test!",
            )));
        }
        let slots = (slots > 0).then(|| crate::testhooks::knobs::SWAP_SLOT_LIMIT.set(slots));
        crate::mm::swapfile::swapon().map_err(|e| verdict("swapon", e))?;
        Ok(SwapOn { _slots: slots })
    }
}

impl Drop for SwapOn {
    fn drop(&mut self) {
        let _ = crate::mm::swap::swapoff(0);
    }
}

/// `f` started on CPU `cpu`; `join` gives its value back (`what` names the
/// work in failure messages).
pub struct OnCpu<T> {
    what: alloc::string::String,
    running: crate::smp::Running<T>,
}

pub fn on_cpu<T: Send + 'static>(
    cpu: usize,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<OnCpu<T>, Verdict> {
    let running = crate::smp::run_on(cpu, f).map_err(|e| verdict(&format!("starting {what} on CPU {cpu}"), e))?;
    Ok(OnCpu { what: alloc::string::String::from(what), running })
}

impl<T> OnCpu<T> {
    pub fn finished(&self) -> bool {
        self.running.finished()
    }

    pub fn join(self) -> Result<T, Verdict> {
        let what = self.what;
        self.running.join().map_err(|u| Verdict::Fail(format!("{what}: unexpected exception: {}", u.event)))
    }
}

/// `work` runs on CPU 1 and stops at `point`; `change` runs on CPU 0; CPU 1
/// goes on; `check` sees CPU 1's result.
pub fn window<T: Send + core::fmt::Debug + 'static>(
    point: &'static crate::testhooks::points::Point,
    work: impl FnOnce() -> T + Send + 'static,
    change: impl FnOnce() -> TestResult,
) -> Result<T, Verdict> {
    let bp = crate::testhooks::schedpoint::arm(point);
    let job = on_cpu(1, point.name, work)?;
    bp.wait_reached(5_000_000).map_err(|e| verdict(point.name, e))?;
    let changed = change();
    bp.release();
    let r = job.join()?;
    changed?;
    Ok(r)
}

/// A scenario run under a known-wrong variant must fail with one of
/// `signs` in its reason (what the variant breaks, seen).
pub fn expect_caught(r: Result<Result<(), Verdict>, Verdict>, signs: &[&str], what: &str) -> TestResult {
    match r? {
        Err(Verdict::Fail(why)) if signs.iter().any(|s| why.contains(s)) => Ok(()),
        other => Err(Verdict::Fail(format!("{what} was not caught: {other:?}"))),
    }
}

/// Writes the pte at `addr` of `t` by hand (a test putting in an entry
/// no path of its own would make there).
pub fn set_pte(t: &Task, addr: usize, pte: pte_t) -> TestResult {
    let mm = t.mm();
    let pt = mm.pgtables.lock(addr, true).map_err(|_| verdict("pte", "oom"))?.ok_or_else(|| verdict("pte", "none"))?;
    pt.set(addr, pte, mm.asid);
    Ok(())
}

/// A signal where a call should have returned fails the test (`?` on a
/// task's call); `ok`, `must` and `returned` also name the call.
impl From<Signal> for Verdict {
    fn from(s: Signal) -> Verdict {
        Verdict::Fail(format!("the task got {s:?}"))
    }
}

/// A system call that must come back (not kill the task): what it returned.
pub fn returned<T>(r: SysResult<T>, what: &str) -> Result<Result<T, Errno>, Verdict> {
    r.map_err(|s| Verdict::Fail(format!("{what}: the task got {s:?}")))
}

/// A system call that must succeed.
pub fn must<T>(r: SysResult<T>, what: &str) -> Result<T, Verdict> {
    returned(r, what)?.map_err(|e| verdict(what, e))
}

pub fn mmap(t: &Task, addr: usize, len: usize, prot: u64, flags: u64, fd: i64) -> Result<usize, Verdict> {
    must(t.mmap(addr, len, prot, flags, fd, 0), "mmap")
}

pub fn ok<T>(r: Result<T, Signal>, what: &str) -> Result<T, Verdict> {
    r.map_err(|s| Verdict::Fail(format!("{what}: the task got {s:?}")))
}

pub fn expect_segv<T: core::fmt::Debug>(r: Result<T, Signal>, kind: SegvKind, addr: usize, what: &str) -> TestResult {
    match r {
        Err(Signal::Segv { kind: k, addr: a }) if k == kind => {
            ensure_eq!(a & 0x0FFF_FFFF_FFFF_FFFF, addr as u64 & 0x0FFF_FFFF_FFFF_FFFF, "{what}: si_addr");
            Ok(())
        }
        other => fail!("{what}: expected SIGSEGV {kind:?} at {addr:#x}, got {other:?}"),
    }
}

pub fn expect_errno<T: core::fmt::Debug>(r: SysResult<T>, want: Errno, what: &str) -> TestResult {
    match returned(r, what)? {
        Err(e) if e == want => Ok(()),
        other => fail!("{what}: expected {want}, got {other:?}"),
    }
}

/// The pte at `addr` in `t`.
pub fn pte_of(t: &Task, addr: usize) -> pte_t {
    t.mm().pgtables.peek(addr)
}

/// (refcount, mapcount) of the folio mapped at `addr`.
pub fn counts(t: &Task, addr: usize) -> Result<(u64, i32, i32), Verdict> {
    let pte = pte_of(t, addr);
    ensure!(pte_present(pte) && !pte_special(pte), "no folio mapped at {addr:#x} ({pte:?})");
    let p = pfn_to_page(pte_pfn(pte));
    Ok((pte_pfn(pte), p.refcount.load(Ordering::Acquire), p.mapcount.load(Ordering::Acquire)))
}

pub fn expect_rss(t: &Task, anon: isize, file: isize, what: &str) -> TestResult {
    let mm = t.mm();
    ensure_eq!((mm.rss(MM_ANONPAGES), mm.rss(MM_FILEPAGES)), (anon, file), "{what}: rss (MM_ANONPAGES, MM_FILEPAGES)");
    Ok(())
}

/// The page's data, hashed at EL0 through a pointer with `tag`.
pub fn page_hash(t: &Task, addr: usize, tag: u8) -> Result<u64, Verdict> {
    ok(t.fnv(with_tag(addr, tag), PAGE), "hashing a page at EL0")
}

pub fn fill_hash(seed: u64) -> u64 {
    fnv((0..PAGE).map(|i| fill_byte(seed, i)))
}

pub fn file_hash(f: &File, index: u64) -> u64 {
    fnv((0..PAGE).map(|off| initial_byte(f.id, index, off)))
}

/// Tags the page at `addr` granule by granule with `tag_of(g)` at EL0.
pub fn tag_page(t: &Task, addr: usize, tag_of: impl Fn(usize) -> u8) -> TestResult {
    for g in 0..256 {
        ok(t.tag_range(with_tag(addr + g * 16, tag_of(g)), 16), "STG at EL0")?;
    }
    Ok(())
}

/// LDG of every granule at EL0 equals `tag_of(g)`, a tagged access with
/// granule 0's tag works and one with another tag faults.
pub fn expect_tags(t: &Task, addr: usize, tag_of: impl Fn(usize) -> u8, what: &str) -> TestResult {
    let tags = ok(t.page_tags(addr), "LDG at EL0")?;
    for (g, &tag) in tags.iter().enumerate() {
        ensure_eq!(tag, tag_of(g), "{what}: tag of granule {g}");
    }
    ok(t.load(with_tag(addr, tag_of(0))), &format!("{what}: load with the granule's own tag"))?;
    let wrong = with_tag(addr, (tag_of(0) + 1) % 16);
    expect_segv(t.load(wrong), SegvKind::MteSErr, wrong, &format!("{what}: load with a wrong tag"))
}
