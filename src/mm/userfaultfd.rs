//! userfaultfd: contexts, registration, fault delivery and the resolving
//! ioctls (UFFDIO_API, REGISTER, UNREGISTER, WAKE, COPY, ZEROPAGE,
//! WRITEPROTECT; MOVE is in uffd_move.rs), with Linux's uAPI layouts.
//!
//! A thread blocked in a userfault is modelled by the EL0 access returning
//! to the scenario with `Signal::UffdWait`: the handler task reads the
//! message, resolves the range, and the scenario runs the access again
//! (the thread resuming). Whether a waiter was woken is tracked per page
//! (`is_waiting`), so DONTWAKE and UFFDIO_WAKE are observable.
//!
//! Deliberate differences: one context per registration; the fork event
//! is delivered but the child gets no context (its VMAs are unregistered).

use super::fault::{set_pte_at, zero_pfn, FaultError};
use super::folio::{Folio, PG_MTE_TAGGED};
use super::mm_types::*;
use super::pte::*;
use super::rmap::folio_add_new_anon_rmap;
use super::uaccess::{copy_from_user, get_user, put_user, put_word};
use crate::arch::mmu::{PAGE_MASK, PAGE_SIZE, PMD_MASK};
use crate::errno::*;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicI32, Ordering};
use spin::{Mutex, RwLock};

pub const UFFD_API: u64 = 0xAA;
pub const UFFD_FEATURE_EVENT_FORK: u64 = 1 << 1;
pub const UFFD_FEATURE_EVENT_REMOVE: u64 = 1 << 3;
pub const UFFD_FEATURE_EVENT_UNMAP: u64 = 1 << 6;
pub const UFFD_FEATURE_MOVE: u64 = 1 << 16;
pub const SUPPORTED_FEATURES: u64 =
    UFFD_FEATURE_EVENT_FORK | UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_MOVE;

use super::uffd_uapi::*;
pub use super::uffd_uapi::{
    UFFDIO_API, UFFDIO_COPY, UFFDIO_MOVE, UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_WAKE, UFFDIO_WRITEPROTECT,
    UFFDIO_ZEROPAGE,
};

pub const UFFDIO_REGISTER_MODE_MISSING: u64 = 1 << 0;
pub const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_COPY_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_COPY_MODE_WP: u64 = 1 << 1;
pub const UFFDIO_ZEROPAGE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;
pub const UFFDIO_WRITEPROTECT_MODE_DONTWAKE: u64 = 1 << 1;

pub const UFFD_EVENT_PAGEFAULT: u8 = 0x12;
pub const UFFD_EVENT_FORK: u8 = 0x13;
pub const UFFD_EVENT_REMOVE: u8 = 0x15;
pub const UFFD_EVENT_UNMAP: u8 = 0x16;
pub const UFFD_PAGEFAULT_FLAG_WRITE: u64 = 1 << 0;
pub const UFFD_PAGEFAULT_FLAG_WP: u64 = 1 << 1;

/// _UFFDIO_* bits reported by API and REGISTER.
const IOCTLS_API: u64 = (1 << 0x3f) | (1 << 0x00) | (1 << 0x01);
const IOCTLS_RANGE: u64 = (1 << 0x02) | (1 << 0x03) | (1 << 0x04) | (1 << 0x05) | (1 << 0x06);

/// One queued message (struct uffd_msg, 32 bytes) and whether it is an
/// event that holds mmap_changing up until it is read.
struct Msg {
    bytes: [u8; 32],
    event: bool,
}

struct State {
    api_done: bool,
    /// O_NONBLOCK: read() answers EAGAIN instead of waiting for a message.
    nonblock: bool,
    features: u64,
    msgs: VecDeque<Msg>,
    /// Pages with a thread waiting on a userfault.
    waiting: Vec<usize>,
}

pub struct Uffd {
    pub mm: Weak<MmStruct>,
    state: Mutex<State>,
    /// Non-cooperative events in flight (fork, remove, unmap not yet read).
    pub mmap_changing: AtomicI32,
    pub map_changing_lock: RwLock<()>,
}

static CTXS: Mutex<BTreeMap<i32, Arc<Uffd>>> = Mutex::new(BTreeMap::new());
/// Descriptors for userfaultfds start here (files use small numbers).
const FIRST_FD: i32 = 1000;

/// userfaultfd(2): a new context for `mm`.
/// userfaultfd(2); `flags` is an int in Linux's prototype (only its low 32
/// bits count).
pub fn create(mm: &Arc<MmStruct>, flags: u64) -> Result<i32, Errno> {
    const O_NONBLOCK: u64 = 0o4000;
    const O_CLOEXEC: u64 = 0o2000000;
    const UFFD_USER_MODE_ONLY: u64 = 1;
    let flags = flags as u32 as u64;
    if flags & !(O_NONBLOCK | O_CLOEXEC | UFFD_USER_MODE_ONLY) != 0 {
        return Err(EINVAL);
    }
    let mut t = CTXS.lock();
    let fd = (FIRST_FD..).find(|fd| !t.contains_key(fd)).expect("descriptor space");
    t.insert(
        fd,
        Arc::new(Uffd {
            mm: Arc::downgrade(mm),
            state: Mutex::new(State {
                api_done: false,
                nonblock: flags & O_NONBLOCK != 0,
                features: 0,
                msgs: VecDeque::new(),
                waiting: Vec::new(),
            }),
            mmap_changing: AtomicI32::new(0),
            map_changing_lock: RwLock::new(()),
        }),
    );
    Ok(fd)
}

pub fn get(fd: i64) -> Option<Arc<Uffd>> {
    CTXS.lock().get(&i32::try_from(fd).ok()?).cloned()
}

/// close(2): the context goes and every VMA registered with it is
/// unregistered.
pub fn close(fd: i32) -> Result<(), Errno> {
    let ctx = CTXS.lock().remove(&fd).ok_or(EBADF)?;
    if let Some(mm) = ctx.mm.upgrade() {
        let mut map = mm.mmap_lock.write();
        for v in map.vmas.values_mut() {
            if v.uffd.as_ref().is_some_and(|c| Arc::ptr_eq(c, &ctx)) {
                v.uffd = None;
                v.flags &= !(VM_UFFD_MISSING | VM_UFFD_WP);
            }
        }
    }
    Ok(())
}

/// Drops every context (between tests).
/// How many userfaultfd descriptors are open.
pub fn open_count() -> usize {
    CTXS.lock().len()
}

pub fn close_all() {
    let fds: Vec<i32> = CTXS.lock().keys().copied().collect();
    for fd in fds {
        let _ = close(fd);
    }
}

impl Uffd {
    pub fn features(&self) -> u64 {
        self.state.lock().features
    }

    pub fn is_waiting(&self, addr: usize) -> bool {
        self.state.lock().waiting.contains(&(addr & PAGE_MASK))
    }

    fn push(&self, bytes: [u8; 32], event: bool) {
        self.state.lock().msgs.push_back(Msg { bytes, event });
        crate::arch::cpu::sev(); // a blocking reader on another CPU
    }

    /// A non-cooperative event: queued if the handler asked for it, and
    /// mmap_changing stays raised until the handler reads it.
    pub fn event(&self, feature: u64, kind: u8, a: u64, b: u64) {
        if self.features() & feature == 0 {
            return;
        }
        let _w = self.map_changing_lock.write();
        self.mmap_changing.fetch_add(1, Ordering::AcqRel);
        let mut m = [0u8; 32];
        m[0] = kind;
        m[8..16].copy_from_slice(&a.to_le_bytes());
        m[16..24].copy_from_slice(&b.to_le_bytes());
        self.push(m, true);
    }

    /// handle_userfault: queue the message and mark the page as waited on.
    pub fn fault(&self, addr: usize, write: bool, wp: bool) {
        let page = addr & PAGE_MASK;
        let mut st = self.state.lock();
        if !st.waiting.contains(&page) {
            st.waiting.push(page);
            let mut m = [0u8; 32];
            m[0] = UFFD_EVENT_PAGEFAULT;
            let flags = if write { UFFD_PAGEFAULT_FLAG_WRITE } else { 0 } | if wp { UFFD_PAGEFAULT_FLAG_WP } else { 0 };
            m[8..16].copy_from_slice(&flags.to_le_bytes());
            m[16..24].copy_from_slice(&(page as u64).to_le_bytes());
            st.msgs.push_back(Msg { bytes: m, event: false });
        }
    }

    /// Wakes the waiters on `[start, end)`.
    pub fn wake(&self, start: usize, end: usize) {
        self.state.lock().waiting.retain(|&p| p < start || p >= end);
    }

    /// read(2): the next message, or EAGAIN (the descriptor is non-blocking).
    /// read(2) of one message: EINVAL before UFFDIO_API, EAGAIN with
    /// nothing queued on an O_NONBLOCK descriptor, and otherwise it waits
    /// for a message (a fault or event another CPU raises).
    pub fn read(&self) -> Result<[u8; 32], Errno> {
        let m = loop {
            let mut st = self.state.lock();
            if !st.api_done {
                return Err(EINVAL);
            }
            if let Some(m) = st.msgs.pop_front() {
                break m;
            }
            if st.nonblock {
                return Err(EAGAIN);
            }
            drop(st);
            crate::arch::cpu::wfe();
        };
        if m.event {
            let _w = self.map_changing_lock.write();
            self.mmap_changing.fetch_sub(1, Ordering::AcqRel);
        }
        Ok(m.bytes)
    }
}

/// validate_range: page-aligned, non-empty, not below mmap_min_addr,
/// inside the user half, no wrap.
pub fn validate_range(start: u64, len: u64) -> Result<(usize, usize), Errno> {
    if !start.is_multiple_of(PAGE_SIZE as u64) || !len.is_multiple_of(PAGE_SIZE as u64) || len == 0 {
        return Err(EINVAL);
    }
    if start < MMAP_MIN_ADDR as u64 {
        return Err(EINVAL);
    }
    if start >= TASK_SIZE as u64 || len > TASK_SIZE as u64 - start {
        return Err(EINVAL);
    }
    Ok((start as usize, (start + len) as usize))
}

/// validate_unaligned_range (Linux 6.7 on, for UFFDIO_COPY's src): inside
/// the user half, no wrap, any alignment. The address is not untagged, so
/// a tagged source pointer is EINVAL, as on Linux (found by differential
/// testing: scripts/vs-linux.py).
pub fn validate_unaligned_range(start: u64, len: u64) -> Result<(), Errno> {
    if start >= TASK_SIZE as u64 || len > TASK_SIZE as u64 - start {
        return Err(EINVAL);
    }
    Ok(())
}

/// The address space the context serves (the caller may be a handler in
/// another process, as with Linux's non-cooperative managers).
fn target_mm(ctx: &Uffd) -> Result<Arc<MmStruct>, Errno> {
    ctx.mm.upgrade().ok_or(ESRCH)
}

/// ioctl(2) on a userfaultfd. `arg` points at the structure in the
/// caller's `mm`; the context's own mm is the one acted on.
pub fn ioctl(ctx: &Arc<Uffd>, mm: &Arc<MmStruct>, cmd: u64, arg: u64) -> Result<u64, Errno> {
    if cmd == UFFDIO_API {
        return api(ctx, mm, arg);
    }
    if !ctx.state.lock().api_done {
        return Err(EINVAL);
    }
    match cmd {
        UFFDIO_REGISTER => register(ctx, mm, arg),
        UFFDIO_UNREGISTER => unregister(ctx, mm, arg),
        UFFDIO_WAKE => {
            let r: UffdioRange = get_user(mm, arg)?; // read in the caller's memory
            let (s, e) = validate_range(r.start, r.len)?;
            ctx.wake(s, e);
            Ok(0)
        }
        UFFDIO_COPY => copy(ctx, mm, arg),
        UFFDIO_ZEROPAGE => zeropage(ctx, mm, arg),
        UFFDIO_WRITEPROTECT => writeprotect(ctx, mm, arg),
        UFFDIO_MOVE => super::uffd_move::ioctl_move(ctx, mm, arg),
        _ => Err(EINVAL),
    }
}

/// UFFDIO_API in Linux's order: the reply is written first, and only once
/// it is out does the context take the features (a reply that faults is
/// EFAULT with the context still uninitialised); a second API is EINVAL.
fn api(ctx: &Arc<Uffd>, mm: &Arc<MmStruct>, arg: u64) -> Result<u64, Errno> {
    let UffdioApi { api, features, .. } = get_user(mm, arg)?;
    let refuse = |mm: &Arc<MmStruct>| -> Result<u64, Errno> {
        put_user(mm, arg, &UffdioApi::default())?; // Linux zeroes the whole reply on failure
        Err(EINVAL)
    };
    if api != UFFD_API || features & !SUPPORTED_FEATURES != 0 {
        return refuse(mm);
    }
    put_user(mm, arg, &UffdioApi { api, features: SUPPORTED_FEATURES, ioctls: IOCTLS_API })?;
    let mut st = ctx.state.lock();
    if st.api_done {
        drop(st);
        return refuse(mm);
    }
    st.api_done = true;
    st.features = features;
    Ok(0)
}

fn register(ctx: &Arc<Uffd>, caller: &Arc<MmStruct>, arg: u64) -> Result<u64, Errno> {
    let mm = &target_mm(ctx)?;
    let UffdioRegister { start, len, mode, .. } = get_user(caller, arg)?;
    if mode == 0 || mode & !(UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP) != 0 {
        return Err(EINVAL);
    }
    let (s, e) = validate_range(start, len)?;
    let mut vm = 0;
    if mode & UFFDIO_REGISTER_MODE_MISSING != 0 {
        vm |= VM_UFFD_MISSING;
    }
    if mode & UFFDIO_REGISTER_MODE_WP != 0 {
        vm |= VM_UFFD_WP;
    }
    {
        let mut map = mm.mmap_lock.write();
        if !map.fully_mapped(s, e) {
            return Err(EINVAL);
        }
        for v in map.overlapping(s, e) {
            if !v.is_anon() {
                return Err(EINVAL);
            }
            if v.uffd.as_ref().is_some_and(|c| !Arc::ptr_eq(c, ctx)) {
                return Err(EBUSY);
            }
        }
        super::mmap::split_range(mm, &mut map, s, e);
        let inside: Vec<usize> = map.overlapping(s, e).map(|v| v.start).collect();
        for st in inside {
            let v = map.vmas.get_mut(&st).expect("VMA vanished under the mmap lock");
            v.flags = (v.flags & !(VM_UFFD_MISSING | VM_UFFD_WP)) | vm;
            v.uffd = Some(ctx.clone());
        }
        super::mmap::merge_range(mm, &mut map, s, e);
    }
    put_word(caller, arg + core::mem::offset_of!(UffdioRegister, ioctls) as u64, IOCTLS_RANGE)?;
    Ok(0)
}

fn unregister(ctx: &Arc<Uffd>, caller: &Arc<MmStruct>, arg: u64) -> Result<u64, Errno> {
    let mm = &target_mm(ctx)?;
    let UffdioRange { start, len } = get_user(caller, arg)?;
    let (s, e) = validate_range(start, len)?;
    let mut map = mm.mmap_lock.write();
    if !map.fully_mapped(s, e) {
        return Err(EINVAL);
    }
    super::mmap::split_range(mm, &mut map, s, e);
    let inside: Vec<usize> = map.overlapping(s, e).map(|v| v.start).collect();
    for st in inside {
        let v = map.vmas.get_mut(&st).expect("VMA vanished under the mmap lock");
        if v.uffd.as_ref().is_some_and(|c| Arc::ptr_eq(c, ctx)) {
            v.uffd = None;
            v.flags &= !(VM_UFFD_MISSING | VM_UFFD_WP);
        }
    }
    super::mmap::merge_range(mm, &mut map, s, e);
    drop(map);
    ctx.wake(s, e);
    Ok(0)
}

/// The VMA covering all of `[s, e)` registered with `ctx`, for the
/// resolving ioctls (mfill_atomic's checks): ENOENT if there is none.
fn registered_vma(ctx: &Arc<Uffd>, map: &MmMap, s: usize, e: usize) -> Result<Vma, Errno> {
    let v = map.find(s).ok_or(ENOENT)?;
    if e > v.end || !v.uffd.as_ref().is_some_and(|c| Arc::ptr_eq(c, ctx)) || !v.is_anon() {
        return Err(ENOENT);
    }
    Ok(v.clone())
}

/// Fills each page of `[s, e)` with `fill(page addr, offset)` under the
/// mmap lock; returns bytes done, or the error at the first page.
fn mfill(
    ctx: &Arc<Uffd>,
    mm: &Arc<MmStruct>,
    s: usize,
    e: usize,
    mut fill: impl FnMut(&MmMap, &Vma, usize, usize) -> Result<(), Errno>,
) -> Result<usize, (usize, Errno)> {
    let _r = ctx.map_changing_lock.read();
    if ctx.mmap_changing.load(Ordering::Acquire) != 0 {
        return Err((0, EAGAIN));
    }
    let map = mm.mmap_lock.read();
    let vma = registered_vma(ctx, &map, s, e).map_err(|err| (0, err))?;
    let mut done = 0;
    while s + done < e {
        if let Err(err) = fill(&map, &vma, s + done, done) {
            return Err((done, err));
        }
        done += PAGE_SIZE;
    }
    Ok(done)
}

/// Installs a new page at `addr` unless something is mapped there (a
/// marker may be overwritten).
fn install_new(mm: &Arc<MmStruct>, map: &MmMap, vma: &Vma, addr: usize, folio: Folio, wp: bool) -> Result<(), Errno> {
    let anon_vma = mm.anon_vma_prepare(map, vma);
    let pt = mm.pgtables.lock(addr, true).map_err(|_| ENOMEM)?.ok_or(ENOMEM)?;
    let old = pt.get(addr);
    if !pte_none(old) && !is_pte_marker(old) {
        return Err(EEXIST);
    }
    folio_add_new_anon_rmap(&folio, &anon_vma, vma.pgoff_of(addr), 1);
    mm.add_rss(MM_ANONPAGES, 1);
    let mut pte = pte_mkdirty(pfn_pte(folio.pfn(), vma.page_prot()));
    pte = if wp {
        pte_mkuffd_wp(pte)
    } else if vma.flags & VM_WRITE != 0 {
        pte_mkwrite(pte)
    } else {
        pte
    };
    set_pte_at(mm, &pt, addr, pte);
    folio.into_counted();
    Ok(())
}

/// Writes the s64 result field and turns a partial result into EAGAIN.
fn finish(mm: &Arc<MmStruct>, field: u64, r: Result<usize, (usize, Errno)>) -> Result<u64, Errno> {
    match r {
        Ok(n) => {
            put_word(mm, field, n as u64)?;
            Ok(0)
        }
        Err((0, e)) => {
            put_word(mm, field, e.to_ret())?;
            Err(e)
        }
        Err((n, _)) => {
            put_word(mm, field, n as u64)?;
            Err(EAGAIN)
        }
    }
}

fn copy(ctx: &Arc<Uffd>, caller: &Arc<MmStruct>, arg: u64) -> Result<u64, Errno> {
    let mm = &target_mm(ctx)?;
    let UffdioCopy { dst, src, len, mode, .. } = get_user(caller, arg)?;
    if mode & !(UFFDIO_COPY_MODE_DONTWAKE | UFFDIO_COPY_MODE_WP) != 0 {
        return Err(EINVAL);
    }
    let (s, e) = validate_range(dst, len)?;
    validate_unaligned_range(src, len)?;
    let mut buf = alloc::vec![0u8; PAGE_SIZE];
    let r = mfill(ctx, mm, s, e, |map, vma, addr, off| {
        if vma.flags & VM_UFFD_WP == 0 && mode & UFFDIO_COPY_MODE_WP != 0 {
            return Err(EINVAL);
        }
        mm.anon_vma_prepare(map, vma); // as mfill_atomic, before the first page
        copy_from_user(caller, src + off as u64, &mut buf).map_err(|_| EFAULT)?;
        let f = Folio::alloc(0).ok_or(ENOMEM)?;
        f.write(0, 0, &buf); // data only: the new page's tags stay 0
        if vma.flags & VM_MTE != 0 {
            f.set(PG_MTE_TAGGED);
        }
        install_new(mm, map, vma, addr, f, mode & UFFDIO_COPY_MODE_WP != 0)
    });
    let (Ok(n) | Err((n, _))) = r;
    if mode & UFFDIO_COPY_MODE_DONTWAKE == 0 && n > 0 {
        ctx.wake(s, s + n);
    }
    finish(caller, arg + core::mem::offset_of!(UffdioCopy, copy) as u64, r)
}

fn zeropage(ctx: &Arc<Uffd>, caller: &Arc<MmStruct>, arg: u64) -> Result<u64, Errno> {
    let mm = &target_mm(ctx)?;
    let UffdioZeropage { start, len, mode, .. } = get_user(caller, arg)?;
    if mode & !UFFDIO_ZEROPAGE_MODE_DONTWAKE != 0 {
        return Err(EINVAL);
    }
    let (s, e) = validate_range(start, len)?;
    let r = mfill(ctx, mm, s, e, |map, vma, addr, _| {
        // mfill_atomic prepares the anon_vma of a private VMA before any
        // page (fork copies the ptes of a VMA that has one).
        mm.anon_vma_prepare(map, vma);
        let pt = mm.pgtables.lock(addr, true).map_err(|_| ENOMEM)?.ok_or(ENOMEM)?;
        let old = pt.get(addr);
        if !pte_none(old) && !is_pte_marker(old) {
            return Err(EEXIST);
        }
        set_pte_at(mm, &pt, addr, pte_mkspecial(pfn_pte(zero_pfn(), vma.page_prot())));
        Ok(())
    });
    let (Ok(n) | Err((n, _))) = r;
    if mode & UFFDIO_ZEROPAGE_MODE_DONTWAKE == 0 && n > 0 {
        ctx.wake(s, s + n);
    }
    finish(caller, arg + core::mem::offset_of!(UffdioZeropage, zeropage) as u64, r)
}

fn writeprotect(ctx: &Arc<Uffd>, caller: &Arc<MmStruct>, arg: u64) -> Result<u64, Errno> {
    let mm = &target_mm(ctx)?;
    let UffdioWriteprotect { start, len, mode } = get_user(caller, arg)?;
    if mode & !(UFFDIO_WRITEPROTECT_MODE_WP | UFFDIO_WRITEPROTECT_MODE_DONTWAKE) != 0 {
        return Err(EINVAL);
    }
    let wp = mode & UFFDIO_WRITEPROTECT_MODE_WP != 0;
    if wp && mode & UFFDIO_WRITEPROTECT_MODE_DONTWAKE != 0 {
        return Err(EINVAL);
    }
    let (s, e) = validate_range(start, len)?;
    let _r = ctx.map_changing_lock.read();
    if ctx.mmap_changing.load(Ordering::Acquire) != 0 {
        return Err(EAGAIN);
    }
    let map = mm.mmap_lock.read();
    for v in map.overlapping(s, e) {
        if v.flags & VM_UFFD_WP == 0 || !v.uffd.as_ref().is_some_and(|c| Arc::ptr_eq(c, ctx)) {
            return Err(ENOENT);
        }
    }
    if !map.fully_mapped(s, e) {
        return Err(ENOENT);
    }
    // A huge PMD the range covers whole changes in place, one covered in
    // part is split for the pte walk below.
    let whole = super::huge_memory::change_whole_huge_pmds(mm, s, e, |a, pmd| {
        super::huge_memory::uffd_wp_pmd(map.find(a).expect("checked above"), pmd, wp)
    });
    for addr in (s..e).step_by(PAGE_SIZE) {
        if whole.contains(&(addr & PMD_MASK)) {
            continue;
        }
        let Ok(Some(pt)) = mm.pgtables.lock(addr, false) else { continue };
        let pte = pt.get(addr);
        let vma = map.find(addr).expect("checked above");
        let new = if pte_present(pte) {
            if wp {
                pte_mkuffd_wp(pte)
            } else {
                // Exclusive anonymous pages in a writable VMA become
                // writable again; the rest stay read-only (COW).
                let p = pte_clear_uffd_wp(pte);
                let writable = vma.flags & VM_WRITE != 0
                    && !pte_special(p)
                    && Folio::get(pte_pfn(p)).test(super::folio::PG_ANON_EXCLUSIVE);
                if writable {
                    pte_mkwrite(p)
                } else {
                    p
                }
            }
        } else if is_swap_pte(pte) && !non_swap_entry(pte_to_swp_entry(pte)) {
            if wp {
                pte_swp_mkuffd_wp(pte)
            } else {
                pte_swp_clear_uffd_wp(pte)
            }
        } else {
            continue;
        };
        pt.set(addr, new, mm.asid);
    }
    drop(map);
    if !wp && mode & UFFDIO_WRITEPROTECT_MODE_DONTWAKE == 0 {
        ctx.wake(s, e);
    }
    Ok(0)
}

/// Called by the fault path for a VMA registered with a userfaultfd: a
/// missing page, or a write to a uffd-wp pte. Returns the fault error that
/// sends the access back to the scenario.
pub fn handle_userfault(vma: &Vma, addr: usize, write: bool, wp: bool) -> FaultError {
    match &vma.uffd {
        Some(ctx) => {
            ctx.fault(addr, write, wp);
            FaultError::Userfault
        }
        None => FaultError::Sigbus,
    }
}
