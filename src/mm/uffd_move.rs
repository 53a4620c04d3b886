//! UFFDIO_MOVE (move_pages): moves anonymous pages from src to dst inside
//! one mm by moving ptes, not data, so the physical page, and with it its
//! MTE tags, goes along; a swapped-out page moves as its swap pte, and its
//! tags stay stored under the same entry. Follows Linux (shared/spec
//! section 1): the validations and their errnos in order, the per-pte
//! outcomes, EAGAIN retries at the same address, partial progress, the lock
//! order (folio trylock, then both pte locks by address), and the
//! secondary-MMU notifier called before any spinlock is taken.
//!
//! Deliberate differences: THPs are mapped by a pte table, so the PMD-level
//! move moves that table's pmd entry; no per-VMA locks (the mmap lock is
//! taken for read); EAGAIN retries at one address are bounded (see
//! MOVE_RETRY_MIN) where Linux retries until the cause goes away.

use super::fault::set_pte_at;
use super::folio::{Folio, Mapping, PG_ANON_EXCLUSIVE, PG_SWAPCACHE};
use super::mm_types::*;
use super::pgtable::PteTable;
use super::pte::*;
use super::userfaultfd::{validate_range, Uffd};
use super::{swap_state, swapfile};
use crate::arch::mmu::{PAGE_SIZE, PMD_SIZE};
use crate::errno::*;
use crate::testhooks::schedpoint::sched_point;
use crate::testhooks::variants::{self, Variant};
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Mutex;

pub const UFFDIO_MOVE_MODE_DONTWAKE: u64 = 1 << 0;
pub const UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES: u64 = 1 << 1;

/// The known-wrong variants the suite shows are caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MoveVariant {
    Correct,
    /// A swap-cache folio moves without its anon mapping and index being
    /// retargeted (the February 2025 BUG).
    SwapCacheNoRetarget,
    /// The folio's anon mapping changes before the DMA-pin check.
    RmapBeforePinCheck,
    /// The non-blocking notifier, called under the page-table lock.
    NotifierUnderPtl,
    /// A swap pte moves without the exclusive check.
    SwapNoExclusiveCheck,
}

impl MoveVariant {
    /// The declared variant that selects this step order (None: correct).
    pub fn variant(self) -> Option<&'static Variant> {
        match self {
            MoveVariant::Correct => None,
            MoveVariant::SwapCacheNoRetarget => Some(&variants::MOVE_SWAPCACHE_NO_RETARGET),
            MoveVariant::RmapBeforePinCheck => Some(&variants::MOVE_RMAP_BEFORE_PIN_CHECK),
            MoveVariant::NotifierUnderPtl => Some(&variants::MOVE_NOTIFIER_UNDER_PTL),
            MoveVariant::SwapNoExclusiveCheck => Some(&variants::MOVE_SWAP_NO_EXCLUSIVE_CHECK),
        }
    }
}

/// The variant switched on now (Correct when none is).
pub fn variant() -> MoveVariant {
    [
        MoveVariant::SwapCacheNoRetarget,
        MoveVariant::RmapBeforePinCheck,
        MoveVariant::NotifierUnderPtl,
        MoveVariant::SwapNoExclusiveCheck,
    ]
    .into_iter()
    .find(|m| m.variant().is_some_and(|v| v.is_on()))
    .unwrap_or(MoveVariant::Correct)
}

// --- the secondary-MMU observer -----------------------------------------------

/// One recorded notifier call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotifierCall {
    pub start: usize,
    pub end: usize,
    /// invalidate_range_start (true) or _end.
    pub is_start: bool,
    pub blocking: bool,
    /// Page-table locks held by the calling CPU at the call.
    pub ptl_held: usize,
}

static OBSERVER: Mutex<Vec<NotifierCall>> = Mutex::new(Vec::new());
/// Page-table locks each CPU holds inside move_pages (for the observer).
static PTL_HELD: [AtomicUsize; crate::arch::boot::MAX_CPUS] =
    [const { AtomicUsize::new(0) }; crate::arch::boot::MAX_CPUS];

/// Records notifier calls while the guard lives (earlier ones forgotten).
pub fn observe() -> crate::testhooks::knobs::Set {
    OBSERVER.lock().clear();
    crate::testhooks::knobs::OBSERVE_NOTIFIER.set(1)
}

fn observing() -> bool {
    crate::testhooks::knobs::OBSERVE_NOTIFIER.get() != 0
}

pub fn observed() -> Vec<NotifierCall> {
    OBSERVER.lock().clone()
}

fn notify(start: usize, end: usize, is_start: bool, blocking: bool) {
    if observing() {
        let held = PTL_HELD[crate::arch::cpu::id()].load(Ordering::Acquire);
        OBSERVER.lock().push(NotifierCall { start, end, is_start, blocking, ptl_held: held });
    }
}

/// Counts a page-table lock this CPU holds inside move_pages while it
/// lives (what the notifier observer reports).
struct PtlHeld;

impl PtlHeld {
    fn new() -> PtlHeld {
        PTL_HELD[crate::arch::cpu::id()].fetch_add(1, Ordering::AcqRel);
        PtlHeld
    }
}

impl Drop for PtlHeld {
    fn drop(&mut self) {
        PTL_HELD[crate::arch::cpu::id()].fetch_sub(1, Ordering::AcqRel);
    }
}

/// Both pte locks, lower lock address first, taken once if shared
/// (double_pt_lock).
struct DoublePt {
    // Declared first, so dropped first: uncounted before the unlocks.
    _held: PtlHeld,
    dst: PteTable,
    src: Option<PteTable>,
}

impl DoublePt {
    fn lock(mm: &MmStruct, dst: usize, src: usize) -> Result<DoublePt, Errno> {
        let (d_table, s_table) = (mm.pgtables.table_of(dst), mm.pgtables.table_of(src));
        let (d_table, s_table) = (d_table.ok_or(EAGAIN)?, s_table.ok_or(EAGAIN)?);
        let lock = |a: usize| mm.pgtables.lock(a, false).map_err(|_| ENOMEM)?.ok_or(EAGAIN);
        let (dst, src) = if d_table == s_table {
            (lock(dst)?, None)
        } else if d_table < s_table {
            let d = lock(dst)?;
            (d, Some(lock(src)?))
        } else {
            let s = lock(src)?;
            (lock(dst)?, Some(s))
        };
        Ok(DoublePt { _held: PtlHeld::new(), dst, src })
    }

    fn src(&self) -> &PteTable {
        self.src.as_ref().unwrap_or(&self.dst)
    }
}

/// ioctl(UFFDIO_MOVE): reads struct uffdio_move at `arg`, moves, writes
/// `move` back.
pub fn ioctl_move(ctx: &Arc<Uffd>, mm: &Arc<MmStruct>, arg: u64) -> Result<u64, Errno> {
    use super::uaccess::{get_user, put_word};
    use super::uffd_uapi::UffdioMove;
    let moved_at = arg + core::mem::offset_of!(UffdioMove, moved) as u64;
    if ctx.mmap_changing.load(Ordering::Acquire) != 0 {
        put_word(mm, moved_at, EAGAIN.to_ret())?;
        return Err(EAGAIN);
    }
    let UffdioMove { dst, src, len, mode, .. } = get_user(mm, arg)?;
    let owner = ctx.mm.upgrade().ok_or(EINVAL)?;
    if !Arc::ptr_eq(&owner, mm) {
        return Err(EINVAL);
    }
    validate_range(dst, len)?;
    validate_range(src, len)?;
    if mode & !(UFFDIO_MOVE_MODE_DONTWAKE | UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES) != 0 {
        return Err(EINVAL);
    }
    let r = move_pages(ctx, mm, dst as usize, src as usize, len as usize, mode);
    let (moved, err) = match r {
        Ok(n) => (n, None),
        Err((n, e)) => (n, Some(e)),
    };
    if moved > 0 && mode & UFFDIO_MOVE_MODE_DONTWAKE == 0 {
        ctx.wake(dst as usize, dst as usize + moved);
    }
    match err {
        None => {
            put_word(mm, moved_at, moved as u64)?;
            Ok(0)
        }
        Some(e) if moved == 0 => {
            put_word(mm, moved_at, e.to_ret())?;
            Err(e)
        }
        Some(_) => {
            put_word(mm, moved_at, moved as u64)?;
            Err(EAGAIN)
        }
    }
}

/// move_pages: bytes moved, or (bytes moved, error) when it stopped early.
pub fn move_pages(
    ctx: &Arc<Uffd>,
    mm: &Arc<MmStruct>,
    dst: usize,
    src: usize,
    len: usize,
    mode: u64,
) -> Result<usize, (usize, Errno)> {
    let map = mm.mmap_lock.read();
    let dst_vma = map.find(dst).ok_or((0, ENOENT))?.clone();
    let src_vma = map.find(src).ok_or((0, ENOENT))?.clone();
    let _guard = ctx.map_changing_lock.read();
    if ctx.mmap_changing.load(Ordering::Acquire) != 0 {
        return Err((0, EAGAIN));
    }
    validate_move_areas(ctx, &src_vma, &dst_vma, src, dst, len).map_err(|e| (0, e))?;
    let dst_anon_vma = mm.anon_vma_prepare(&map, &dst_vma);
    let mover = Mover { mm, dst_vma: &dst_vma, dst_anon_vma: &dst_anon_vma, mode };
    let mut moved = 0;
    let mut retries = Retries::new();
    while moved < len {
        let (d, s) = (dst + moved, src + moved);
        if retries.exhausted(moved) {
            return Err((moved, EAGAIN));
        }
        if s % PMD_SIZE == 0 && d % PMD_SIZE == 0 && len - moved >= PMD_SIZE {
            match mover.move_pages_huge_pmd(d, s) {
                Some(Ok(n)) => {
                    moved += n;
                    continue;
                }
                Some(Err(EAGAIN)) => continue,
                Some(Err(e)) => return Err((moved, e)),
                None => {} // not a whole THP there: pte by pte
            }
        }
        let step = mover.move_one(d, s);
        match step {
            Ok(n) => moved += n,
            Err(EAGAIN) => {
                sched_point(&crate::testhooks::points::MOVE_PAGES_RETRY);
                continue; // retry the same address
            }
            Err(e) => return Err((moved, e)),
        }
    }
    Ok(moved)
}

/// The bound on EAGAIN retries at one address without progress. Linux
/// retries inside the ioctl for as long as it takes (a reference held for
/// good makes it spin); here, after MOVE_RETRY_MIN retries and
/// MOVE_RETRY_MS milliseconds both without progress, move_pages stops and
/// answers EAGAIN with the bytes moved so far (a deliberate difference, in
/// README): a transient reference is outlasted, a persistent one is
/// reported instead of hanging the caller.
pub const MOVE_RETRY_MIN: u32 = 1000;
pub const MOVE_RETRY_MS: u64 = 200;

struct Retries {
    at: usize,
    count: u32,
    since: u64,
}

impl Retries {
    fn new() -> Retries {
        Retries { at: usize::MAX, count: 0, since: 0 }
    }

    /// Called before every step with the progress so far.
    fn exhausted(&mut self, moved: usize) -> bool {
        let now = crate::arch::cpu::counter();
        if moved != self.at {
            *self = Retries { at: moved, count: 0, since: now };
            return false;
        }
        self.count += 1;
        let ms = (now - self.since) * 1000 / crate::arch::cpu::counter_freq().max(1);
        self.count > MOVE_RETRY_MIN && ms >= MOVE_RETRY_MS
    }
}

/// validate_move_areas and the range checks of move_pages, in Linux's order.
fn validate_move_areas(ctx: &Arc<Uffd>, src: &Vma, dst: &Vma, s: usize, d: usize, len: usize) -> Result<(), Errno> {
    if src.flags & VM_SHARED != 0 || s + len > src.end {
        return Err(EINVAL);
    }
    if dst.flags & VM_SHARED != 0 || d + len > dst.end {
        return Err(EINVAL);
    }
    if (src.flags ^ dst.flags) & VM_ACCESS_FLAGS != 0 || src.page_prot() != dst.page_prot() {
        return Err(EINVAL); // includes PROT_MTE on one side only
    }
    if (src.flags ^ dst.flags) & VM_LOCKED != 0 {
        return Err(EINVAL);
    }
    if src.flags & VM_WRITE == 0 {
        return Err(EINVAL);
    }
    if src.flags & VM_SPECIAL != 0 || dst.flags & VM_SPECIAL != 0 {
        return Err(EINVAL);
    }
    if !dst.uffd.as_ref().is_some_and(|c| Arc::ptr_eq(c, ctx)) {
        return Err(EINVAL);
    }
    if !src.is_anon() || !dst.is_anon() {
        return Err(EINVAL);
    }
    Ok(())
}

/// Moves the page at `s` to `d`: PAGE_SIZE, or an error (EAGAIN: retry).
/// What every step of one UFFDIO_MOVE shares: the mm, the destination
/// VMA and its anon_vma (which moved folios join), and the mode.
#[derive(Clone, Copy)]
struct Mover<'a> {
    mm: &'a Arc<MmStruct>,
    dst_vma: &'a Vma,
    dst_anon_vma: &'a Arc<super::rmap::AnonVma>,
    mode: u64,
}

impl Mover<'_> {
    fn move_one(&self, d: usize, s: usize) -> Result<usize, Errno> {
        // The blocking notifier, before any spinlock (the correct place).
        if variant() != MoveVariant::NotifierUnderPtl {
            notify(s, s + PAGE_SIZE, true, true);
        }
        let r = self.move_one_locked(d, s);
        notify(s, s + PAGE_SIZE, false, true);
        r
    }

    fn move_one_locked(&self, d: usize, s: usize) -> Result<usize, Errno> {
        let (mm, mode) = (self.mm, self.mode);
        // Part of a huge PMD moves page by page: split it first.
        if pmd_trans_huge(mm.pgtables.pmd_peek(s)) {
            super::huge_memory::split_huge_pmd(&mm.pgtables, s);
        }
        // Page tables: src missing is a hole; dst is allocated.
        if mm.pgtables.lock(d, true).map_err(|_| ENOMEM)?.is_none() {
            return Err(ENOMEM);
        }
        let holes = mode & UFFDIO_MOVE_MODE_ALLOW_SRC_HOLES != 0;
        if mm.pgtables.table_of(s).is_none() {
            if !holes {
                return Err(ENOENT);
            }
            mm.pgtables.lock(s, true).map_err(|_| ENOMEM)?;
        }
        let (dst_pte, src_pte) = {
            let pts = DoublePt::lock(mm, d, s)?;
            (pts.dst.get(d), pts.src().get(s))
        };
        if !pte_none(dst_pte) {
            return Err(EEXIST); // markers count as occupied
        }
        if pte_none(src_pte) {
            return if holes { Ok(PAGE_SIZE) } else { Err(ENOENT) };
        }
        if pte_present(src_pte) {
            if pte_special(src_pte) && super::fault::is_zero_pfn(pte_pfn(src_pte)) {
                return self.move_zeropage_pte(d, s, src_pte);
            }
            return self.move_present(d, s, src_pte);
        }
        let entry = pte_to_swp_entry(src_pte);
        if is_migration_entry(entry) {
            // migration_entry_wait: until the pte changes, then retry.
            while mm.pgtables.peek(s) == src_pte {
                crate::arch::cpu::wfe();
            }
            return Err(EAGAIN);
        }
        if non_swap_entry(entry) {
            return Err(EFAULT); // hwpoison, pte markers
        }
        self.move_swap(d, s, src_pte)
    }

    /// The PMD-level move of an aligned THP: the whole pte table mapping the
    /// order-9 folio moves to dst's empty pmd in one step, and the folio is
    /// retargeted once, never split: a real huge PMD (move_huge_block), or
    /// a pte table whose 512 ptes map one THP in order (the table itself
    /// moves, with the same checks).
    /// None: src is not one whole exclusive-candidate THP, or dst's pmd is
    /// populated; the caller moves pte by pte.
    fn move_pages_huge_pmd(&self, d: usize, s: usize) -> Option<Result<usize, Errno>> {
        let (mm, dst_vma, dst_anon_vma) = (self.mm, self.dst_vma, self.dst_anon_vma);
        let src_pmd = mm.pgtables.pmd_peek(s);
        if is_pmd_migration_entry(src_pmd) {
            if variants::MOVE_PMD_FOLIO_ON_MIGRATION_ENTRY.is_on() {
                // aba6faec0103's bug: the entry taken for a THP's PMD. In
                // Linux the garbage folio pointer crashed; here the pfn
                // check finds no folio and the move fails.
                return Some(Err(super::huge_memory::pmd_folio(src_pmd).map_or(EFAULT, |_| EBUSY)));
            }
            // Wait for the migration and retry; never a folio (aba6faec0103).
            while mm.pgtables.pmd_peek(s) == src_pmd {
                crate::arch::cpu::wfe();
            }
            return Some(Err(EAGAIN));
        }
        if pmd_trans_huge(src_pmd) {
            return self.move_huge_block(d, s, src_pmd);
        }
        if mm.pgtables.table_of(d).is_some() {
            return None;
        }
        // Under the src pte lock: one order-9 anonymous folio mapped in order
        // by all 512 ptes of this table, or the pte path (a zapped pte, a
        // split or partly moved folio) does the work.
        let folio = {
            let pt = mm.pgtables.lock(s, false).ok()??;
            let first = pt.get(s);
            if !pte_present(first) || pte_special(first) {
                return None;
            }
            let folio = Folio::get(pte_pfn(first)); // safe under the pte lock
            if folio.nr_pages() != HPAGE_PMD_NR as usize || pte_pfn(first) != folio.pfn() || !folio.is_anon() {
                return None;
            }
            if !maps_whole_folio(&pt, s, &folio) {
                return None;
            }
            folio
        };
        if !folio.test(PG_ANON_EXCLUSIVE) {
            return Some(Err(EBUSY)); // no split for a shared THP
        }
        notify(s, s + PMD_SIZE, true, true); // blocking, before any lock
        let r = (|| {
            let Some(_locked) = folio.try_lock_guard() else {
                return Err(EAGAIN); // never block on a large folio
            };
            let pt = mm.pgtables.lock(s, false).map_err(|_| ENOMEM)?.ok_or(EAGAIN)?;
            let _held = PtlHeld::new();
            if !maps_whole_folio(&pt, s, &folio) {
                return Err(EAGAIN); // changed since we looked: look again
            }
            if folio.page().pincount.load(Ordering::Acquire) > 0 || !folio.test(PG_ANON_EXCLUSIVE) {
                return Err(EBUSY);
            }
            // The dirty and uffd-wp bits survive (the 2026 fix: a move
            // must not make a write-protected page writable).
            for i in 0..HPAGE_PMD_NR as usize {
                let a = s + i * PAGE_SIZE;
                pt.set(a, moved_pte(pt.get(a)), mm.asid);
            }
            match mm.pgtables.move_pte_table(&pt, s, d, mm.asid) {
                Ok(true) => {
                    retarget(&folio, dst_anon_vma, dst_vma.pgoff_of(d));
                    Ok(PMD_SIZE)
                }
                Ok(false) => Err(EAGAIN),
                Err(()) => Err(ENOMEM),
            }
        })();
        notify(s, s + PMD_SIZE, false, true);
        Some(r)
    }

    /// A real huge PMD (a 2 MiB block) moves with one entry: the huge zero
    /// page stays special; a THP must be exclusive and unpinned (EBUSY, no
    /// split), is locked without waiting (EAGAIN), and is retargeted to
    /// dst's anon_vma and index under the PMD locks. A dst PMD that is
    /// populated gives EEXIST for a THP there, the pte path otherwise.
    fn move_huge_block(&self, d: usize, s: usize, src_pmd: pmd_t) -> Option<Result<usize, Errno>> {
        let (mm, dst_vma, dst_anon_vma) = (self.mm, self.dst_vma, self.dst_anon_vma);
        let dst_pmd = mm.pgtables.pmd_peek(d);
        if pmd_trans_huge(dst_pmd) {
            return Some(Err(EEXIST));
        }
        if !pmd_none(dst_pmd) {
            return None; // a pte table at dst: page by page
        }
        let pte = pmd_pte(src_pmd);
        sched_point(&crate::testhooks::points::MOVE_HUGE_PMD_AFTER_LOCKLESS_READ);
        notify(s, s + PMD_SIZE, true, true); // blocking, before any lock
        let r = (|| {
            if pte_special(pte) {
                // The huge zero page: verbatim, special bit and all.
                let wrong = crate::testhooks::variants::MOVE_HUGE_ZERO_NOT_SPECIAL.is_on();
                let new = if wrong { pte_pmd(pte_t(pte.0 & !PTE_SPECIAL)) } else { src_pmd };
                return mm.pgtables.move_huge_pmd(s, d, src_pmd, || Ok(new)).map(|_| PMD_SIZE);
            }
            let folio = super::huge_memory::pmd_folio(src_pmd).ok_or(EAGAIN)?;
            if !folio.test(PG_ANON_EXCLUSIVE) || folio.page().pincount.load(Ordering::Acquire) > 0 {
                return Err(EBUSY);
            }
            let Some(_locked) = folio.try_lock_guard() else { return Err(EAGAIN) };
            mm.pgtables
                .move_huge_pmd(s, d, src_pmd, || {
                    retarget(&folio, dst_anon_vma, dst_vma.pgoff_of(d));
                    Ok(pte_pmd(moved_pte(pte)))
                })
                .map(|_| PMD_SIZE)
        })();
        notify(s, s + PMD_SIZE, false, true);
        Some(r)
    }

    fn move_zeropage_pte(&self, d: usize, s: usize, orig: pte_t) -> Result<usize, Errno> {
        let (mm, dst_vma) = (self.mm, self.dst_vma);
        let pts = DoublePt::lock(mm, d, s)?;
        if pts.src().get(s) != orig || !pte_none(pts.dst.get(d)) {
            return Err(EAGAIN);
        }
        pts.src().clear(s, mm.asid);
        pts.dst.set(d, pte_mkspecial(pfn_pte(super::fault::zero_pfn(), dst_vma.page_prot())), mm.asid);
        Ok(PAGE_SIZE)
    }
}

/// A present THP entry as it lands at dst: dirty and uffd-wp kept, and
/// writable unless uffd-wp (Linux made it writable and dropped uffd-wp
/// until the 2026 fix on the list).
fn moved_pte(p: pte_t) -> pte_t {
    if pte_uffd_wp(p) {
        pte_wrprotect(p)
    } else {
        pte_mkwrite(p)
    }
}

/// Whether the 512 ptes from `s` in the locked table map `folio`'s pages
/// in order.
fn maps_whole_folio(pt: &PteTable, s: usize, folio: &Folio) -> bool {
    (0..HPAGE_PMD_NR as usize).all(|i| {
        let p = pt.get(s + i * PAGE_SIZE);
        pte_present(p) && !pte_special(p) && pte_pfn(p) == folio.pfn() + i as u64
    })
}

/// folio_move_anon_rmap + the new index: the folio now belongs to dst
/// (an anonymous mapping, as Linux's mapping pointer says, even for a
/// swap-cache folio that was never mapped).
fn retarget(folio: &Folio, dst_anon_vma: &Arc<super::rmap::AnonVma>, index: u64) {
    {
        let mut inner = folio.page().inner.lock();
        inner.mapping = Mapping::Anon(dst_anon_vma.clone());
        inner.index = index;
    }
    folio.set(super::folio::PG_ANON);
}

impl Mover<'_> {
    /// A present anonymous page. As Linux since 37b338eed105: under the src
    /// pte lock, the pte is rechecked and the folio trylocked before any
    /// reference is taken, and a large folio that cannot be locked gets no
    /// reference (a raised refcount would make its owner's split fail and
    /// two movers livelock); a large folio is split (refcount frozen) and
    /// the step retried on the small one.
    fn move_present(&self, d: usize, s: usize, orig: pte_t) -> Result<usize, Errno> {
        let mm = self.mm;
        let folio_locked = {
            let pt = mm.pgtables.lock(s, false).map_err(|_| ENOMEM)?.ok_or(EAGAIN)?;
            if pt.get(s) != orig {
                return Err(EAGAIN);
            }
            // The pte's reference keeps the folio, and its lock keeps it
            // from being split, while we look.
            let view = core::mem::ManuallyDrop::new(Folio::from_counted(pte_pfn(orig)));
            if !view.is_anon() || !view.test(PG_ANON_EXCLUSIVE) {
                return Err(EBUSY);
            }
            let locked = view.trylock_raw();
            if !locked && view.nr_pages() > 1 {
                None
            } else {
                Some((Folio::get(view.pfn()), locked))
            }
        };
        let Some((folio, locked)) = folio_locked else {
            // Another mover holds it (about to split it): no reference
            // taken, nothing held, retry.
            sched_point(&crate::testhooks::points::MOVE_PAGES_PTE_LARGE_FOLIO_BUSY);
            return Err(EAGAIN);
        };
        if !locked {
            drop(folio.lock_guard()); // a small folio: wait for it, then start again
            return Err(EAGAIN);
        }
        let _locked = folio.adopt_lock();
        sched_point(&crate::testhooks::points::MOVE_PAGES_PTE_AFTER_FOLIO_LOCK);
        if folio.nr_pages() > 1 {
            return match super::split::split_folio(&folio) {
                Ok(()) => Err(EAGAIN), // split: retry on a small folio
                Err(e) => Err(e),      // EAGAIN (a reference is held): retried too
            };
        }
        self.move_present_locked(d, s, orig, &folio)
    }

    fn move_present_locked(&self, d: usize, s: usize, orig: pte_t, folio: &Folio) -> Result<usize, Errno> {
        let (mm, dst_vma, dst_anon_vma) = (self.mm, self.dst_vma, self.dst_anon_vma);
        let wrong = variant();
        let pts = DoublePt::lock(mm, d, s)?;
        if wrong == MoveVariant::NotifierUnderPtl {
            notify(s, s + PAGE_SIZE, true, false); // the non-blocking variant, under the lock
        }
        if pts.src().get(s) != orig || !pte_none(pts.dst.get(d)) {
            return Err(EAGAIN);
        }
        let pinned = || folio.page().pincount.load(Ordering::Acquire) > 0;
        if wrong == MoveVariant::RmapBeforePinCheck {
            retarget(folio, dst_anon_vma, dst_vma.pgoff_of(d));
        }
        if pinned() || !folio.test(PG_ANON_EXCLUSIVE) {
            return Err(EBUSY);
        }
        let old = pts.src().clear(s, mm.asid);
        if pinned() {
            pts.src().set(s, old, mm.asid); // pinned meanwhile: put it back
            return Err(EBUSY);
        }
        retarget(folio, dst_anon_vma, dst_vma.pgoff_of(d));
        let mut pte = pte_mkwrite(pfn_pte(pte_pfn(old), dst_vma.page_prot()));
        if pte_dirty(old) {
            pte = pte_mkdirty(pte);
        }
        set_pte_at(mm, &pts.dst, d, pte);
        Ok(PAGE_SIZE)
    }

    fn move_swap(&self, d: usize, s: usize, orig: pte_t) -> Result<usize, Errno> {
        let (mm, dst_vma, dst_anon_vma) = (self.mm, self.dst_vma, self.dst_anon_vma);
        let wrong = variant();
        if !pte_swp_exclusive(orig) && wrong != MoveVariant::SwapNoExclusiveCheck {
            return Err(EBUSY);
        }
        let entry = pte_to_swp_entry(orig);
        if swapfile::get_swap_device(entry).is_none() {
            return Err(EAGAIN);
        }
        let folio = swap_state::lookup(entry);
        let _locked = match &folio {
            Some(f) if f.nr_pages() > 1 => return Err(EBUSY), // moving a large swap-cache folio is unsupported
            Some(f) => match f.try_lock_guard() {
                Some(g) => Some(g),
                None => {
                    drop(f.lock_guard()); // wait for it, then start again
                    return Err(EAGAIN);
                }
            },
            None => None,
        };
        sched_point(&crate::testhooks::points::MOVE_SWAP_PTE_BEFORE_PTL);
        if let Some(f) = &folio {
            // Race 1: freed and reused while we were not holding it.
            let still = f.test(PG_SWAPCACHE) && f.page().inner.lock().swap == Some(entry);
            if !still {
                return Err(EAGAIN);
            }
        }
        let pts = DoublePt::lock(mm, d, s)?;
        if pts.src().get(s) != orig || !pte_none(pts.dst.get(d)) {
            return Err(EAGAIN);
        }
        match &folio {
            Some(f) => {
                if wrong != MoveVariant::SwapCacheNoRetarget {
                    retarget(f, dst_anon_vma, dst_vma.pgoff_of(d));
                }
            }
            // Race 2: a swap-cache folio appeared after our lookup.
            None => {
                if swap_state::lookup(entry).is_some() {
                    return Err(EAGAIN);
                }
            }
        }
        pts.src().clear(s, mm.asid);
        pts.dst.set(d, orig, mm.asid); // verbatim: exclusive and uffd-wp bits kept
        Ok(PAGE_SIZE)
    }
}
