//! Per-frame metadata (`struct page`) and folios.
//!
//! `mem_map` has one `Page` per frame of RAM. A folio is 2^order frames
//! whose metadata lives in the head page. Counting rules (simpler than
//! Linux's, and checked by mm::invariants):
//! - refcount = mapcount + 1 if in the page cache (+ 1 if in the swap cache
//!   later) + pins; the folio is freed when it drops to 0;
//! - mapcount counts page-table entries mapping the folio, from 0 (Linux
//!   starts `_mapcount` at -1; the meaning is the same).
//!
//! Page-table pages also have a `Page`: its `ptl` is the page-table lock.

use super::frames;
use super::pte::swp_entry_t;
use crate::arch::mmu::{linear_mut, linear_ptr, linear_ref, PAGE_SIZE};
use crate::arch::mte::{PageData, PAGE_TAG_BYTES};
use alloc::sync::Arc;
use core::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use spin::{Mutex, Once};

pub const PG_LOCKED: u32 = 1 << 0;
/// The folio is mapped by exactly one process and may be reused on write.
pub const PG_ANON_EXCLUSIVE: u32 = 1 << 1;
pub const PG_SWAPCACHE: u32 = 1 << 2;
/// Its tags are meaningful (arm64 PG_mte_tagged).
pub const PG_MTE_TAGGED: u32 = 1 << 3;
pub const PG_ANON: u32 = 1 << 4;
pub const PG_DIRTY: u32 = 1 << 5;
pub const PG_UPTODATE: u32 = 1 << 6;
/// A live folio head (allocated by folio_alloc and not yet freed).
pub const PG_HEAD: u32 = 1 << 7;
/// A page-table page.
pub const PG_TABLE: u32 = 1 << 8;

/// What a folio is mapped for: the reverse-map anchor and the index in it.
#[derive(Clone, Default)]
pub enum Mapping {
    #[default]
    None,
    Anon(Arc<super::rmap::AnonVma>),
    /// Weak: the file's page cache holds the folio, not the other way round.
    File(alloc::sync::Weak<super::filemap::File>),
}

#[derive(Default)]
pub struct PageInner {
    pub mapping: Mapping,
    /// Page index in the anon_vma's or file's address space.
    pub index: u64,
    /// The swap entry while in the swap cache.
    pub swap: Option<swp_entry_t>,
    pub order: u8,
}

pub struct Page {
    /// The pfn of the folio's head page, for every page of a live folio
    /// (the head included); 0 otherwise.
    pub head: AtomicU64,
    pub refcount: AtomicI32,
    pub mapcount: AtomicI32,
    pub pincount: AtomicI32,
    pub flags: AtomicU32,
    pub inner: Mutex<PageInner>,
    /// Page-table lock, for page-table pages.
    pub ptl: Mutex<()>,
}

struct MemMap {
    base_pfn: u64,
    pages: &'static [Page],
}

static MEM_MAP: Once<MemMap> = Once::new();

/// Builds mem_map for `[base, base + size)` of RAM, in frames taken from the
/// frame allocator (never freed).
pub fn init(base: u64, size: u64) -> Result<(), &'static str> {
    let n = (size / PAGE_SIZE as u64) as usize;
    let bytes = n * core::mem::size_of::<Page>();
    let frames_needed = bytes.div_ceil(PAGE_SIZE);
    let pa = frames::alloc_zeroed(frames_needed, 1).ok_or("no memory for mem_map")?;
    let ptr = linear_ptr::<Page>(pa);
    for i in 0..n {
        // SAFETY: the frames were just allocated for mem_map, are mapped
        // through the linear map and hold room for n Pages.
        unsafe {
            ptr.add(i).write(Page {
                head: AtomicU64::new(0),
                refcount: AtomicI32::new(0),
                mapcount: AtomicI32::new(0),
                pincount: AtomicI32::new(0),
                flags: AtomicU32::new(0),
                inner: Mutex::new(PageInner::default()),
                ptl: Mutex::new(()),
            })
        };
    }
    // SAFETY: initialised above; mem_map lives for the rest of the run.
    let pages = unsafe { core::slice::from_raw_parts(ptr, n) };
    MEM_MAP.call_once(|| MemMap { base_pfn: base / PAGE_SIZE as u64, pages });
    Ok(())
}

fn mem_map() -> &'static MemMap {
    MEM_MAP.get().expect("mem_map used before mm::folio::init")
}

/// The `Page` of a physical frame number.
pub fn pfn_to_page(pfn: u64) -> &'static Page {
    let m = mem_map();
    &m.pages[(pfn - m.base_pfn) as usize]
}

/// Every frame's `Page`, with its pfn (for the invariant checker).
pub fn all_pages() -> impl Iterator<Item = (u64, &'static Page)> {
    let m = mem_map();
    m.pages.iter().enumerate().map(move |(i, p)| (m.base_pfn + i as u64, p))
}

/// Whether `pfn` is a frame of RAM (one with a `Page`): pfn_valid.
pub fn pfn_valid(pfn: u64) -> bool {
    let m = mem_map();
    pfn >= m.base_pfn && pfn - m.base_pfn < m.pages.len() as u64
}

/// The head pfn of the folio page `pfn` belongs to (itself for a page that
/// is not part of a live folio).
pub fn folio_head(pfn: u64) -> u64 {
    match pfn_to_page(pfn).head.load(Ordering::Acquire) {
        0 => pfn,
        h => h,
    }
}

// The frames behind folios, through the linear map (Linux's
// kmap_local_page and copy_page). No reference to a frame's bytes leaves
// these functions, so two callers can never hold aliasing references;
// callers hold a reference or lock that keeps the frame theirs (EL0 code
// on another CPU may use the memory meanwhile, as user pages are used
// while the kernel copies them).

fn frame_pa(pfn: u64) -> u64 {
    assert!(
        pfn >= mem_map().base_pfn && pfn - mem_map().base_pfn < mem_map().pages.len() as u64,
        "pfn {pfn:#x} is not RAM"
    );
    pfn * PAGE_SIZE as u64
}

/// Copies `buf.len()` bytes from offset `off` of frame `pfn`.
pub fn read_frame(pfn: u64, off: usize, buf: &mut [u8]) {
    assert!(off + buf.len() <= PAGE_SIZE);
    // SAFETY: a RAM frame, the range inside it; a byte copy through a raw
    // pointer creates no reference to the frame.
    unsafe { core::ptr::copy(linear_ptr::<u8>(frame_pa(pfn)).add(off), buf.as_mut_ptr(), buf.len()) }
}

/// Copies `buf` to offset `off` of frame `pfn`.
pub fn write_frame(pfn: u64, off: usize, buf: &[u8]) {
    assert!(off + buf.len() <= PAGE_SIZE);
    // SAFETY: as read_frame.
    unsafe { core::ptr::copy(buf.as_ptr(), linear_ptr::<u8>(frame_pa(pfn)).add(off), buf.len()) }
}

/// copy_page: the data of frame `src` into frame `dst` (the same frame is
/// a no-op).
pub fn copy_frame(dst: u64, src: u64) {
    if dst == src {
        return;
    }
    let (d, s) = (frame_pa(dst), frame_pa(src));
    // SAFETY: two distinct RAM frames; the references live for the copy
    // only, and the callers own `dst` (a new folio, or one being filled
    // under its lock) while `src` is only read.
    unsafe { linear_mut::<PageData>(d).copy_from(linear_ref::<PageData>(s)) }
}

/// The tags of frame `src` into frame `dst` (copy_highpage's tag half).
pub fn copy_frame_tags(dst: u64, src: u64) {
    if dst == src {
        return;
    }
    let (d, s) = (frame_pa(dst), frame_pa(src));
    // SAFETY: two distinct RAM frames; LDGM/STGM touch tag storage only and
    // no data byte is read or written through the references.
    unsafe { linear_mut::<PageData>(d).copy_tags_from(linear_ref::<PageData>(s)) }
}

/// Zeroes frame `pfn`'s data and tags (DC GZVA).
pub fn zero_frame(pfn: u64) {
    frames::zero_page(frame_pa(pfn))
}

/// The 128 bytes of tags of frame `pfn` (LDGM).
pub fn frame_tags(pfn: u64) -> [u8; PAGE_TAG_BYTES] {
    // SAFETY: a shared reference for this call only; LDGM reads tags and
    // no byte of data is read through it.
    unsafe { linear_ref::<PageData>(frame_pa(pfn)) }.save_tags()
}

/// Sets the tags of frame `pfn` (STGM); the data is untouched.
pub fn set_frame_tags(pfn: u64, tags: &[u8; PAGE_TAG_BYTES]) {
    // SAFETY: the reference lives for this call only and no data byte is
    // read or written through it (STGM writes tag storage).
    unsafe { linear_mut::<PageData>(frame_pa(pfn)) }.restore_tags(tags)
}

/// The 8-byte word at `offset` of frame `pfn`, for reading and writing
/// while another CPU's EL0 code uses the same memory.
pub fn frame_word(pfn: u64, offset: usize) -> &'static core::sync::atomic::AtomicU64 {
    assert!(offset.is_multiple_of(8) && offset < PAGE_SIZE, "frame word offset {offset:#x}");
    // SAFETY: an 8-byte aligned word of a RAM frame; every access through
    // the returned value is atomic, so sharing it is not a data race.
    unsafe { linear_ref(frame_pa(pfn) + offset as u64) }
}

/// A reference-counted handle on a folio: holding one is holding a reference.
pub struct Folio {
    pfn: u64,
}

impl PartialEq for Folio {
    fn eq(&self, other: &Self) -> bool {
        self.pfn == other.pfn
    }
}

impl core::fmt::Debug for Folio {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "folio(pfn {:#x})", self.pfn)
    }
}

impl Folio {
    /// A new folio of 2^order zeroed frames (data and tags), refcount 1.
    pub fn alloc(order: u8) -> Option<Folio> {
        Self::alloc_frames(order, frames::alloc_zeroed)
    }

    /// A new folio whose frames hold whatever their last owner left: the
    /// caller writes every page's data and tags before it is mapped
    /// (collapse copies into it). Anything else takes `alloc`.
    pub fn alloc_for_copy(order: u8) -> Option<Folio> {
        Self::alloc_frames(order, frames::alloc_uninit)
    }

    fn alloc_frames(order: u8, frames_of: fn(usize, usize) -> Option<u64>) -> Option<Folio> {
        if crate::testhooks::fault_inject::FOLIO_ALLOC.should_fail() {
            return None;
        }
        let n = 1usize << order;
        let pa = frames_of(n, n)?;
        let pfn = pa / PAGE_SIZE as u64;
        for i in 0..n as u64 {
            pfn_to_page(pfn + i).head.store(pfn, Ordering::Release);
        }
        let head = pfn_to_page(pfn);
        *head.inner.lock() = PageInner { order, ..Default::default() };
        head.mapcount.store(0, Ordering::Relaxed);
        head.pincount.store(0, Ordering::Relaxed);
        head.flags.store(PG_HEAD | PG_UPTODATE, Ordering::Relaxed);
        head.refcount.store(1, Ordering::Release);
        Some(Folio { pfn })
    }

    /// Takes a new reference on the folio that page `pfn` belongs to
    /// (page_folio + folio_get).
    pub fn get(pfn: u64) -> Folio {
        let pfn = folio_head(pfn);
        let p = pfn_to_page(pfn);
        let old = p.refcount.fetch_add(1, Ordering::AcqRel);
        assert!(old > 0 && p.flags.load(Ordering::Relaxed) & PG_HEAD != 0, "folio_get on a free or tail page {pfn:#x}");
        Folio { pfn }
    }

    /// folio_try_get on page `pfn`'s folio: None while the folio is frozen
    /// (refcount 0: being split, or free). After taking the reference it
    /// checks that `pfn` still belongs to that folio (a split may have made
    /// it a folio of its own meanwhile) and tries again if not. For lookups
    /// that hold no pte lock of a pte mapping the page.
    pub fn try_get(pfn: u64) -> Option<Folio> {
        loop {
            let head = folio_head(pfn);
            let p = pfn_to_page(head);
            let mut old = p.refcount.load(Ordering::Acquire);
            loop {
                if old <= 0 {
                    return None;
                }
                match p.refcount.compare_exchange_weak(old, old + 1, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => break,
                    Err(now) => old = now,
                }
            }
            let f = Folio { pfn: head };
            if folio_head(pfn) == head && f.test(PG_HEAD) {
                return Some(f);
            }
            drop(f);
        }
    }

    /// folio_ref_freeze: the refcount goes from exactly `expected` to 0, so
    /// lock-free lookups (try_get) fail until `unfreeze`. False if someone
    /// holds another reference.
    pub fn ref_freeze(&self, expected: i32) -> bool {
        self.page().refcount.compare_exchange(expected, 0, Ordering::AcqRel, Ordering::Acquire).is_ok()
    }

    /// `n` more references, each held by something else from now on (the
    /// ptes of a large folio, the swap cache's entries).
    pub fn add_refs(&self, n: usize) {
        let old = self.page().refcount.fetch_add(n as i32, Ordering::AcqRel);
        assert!(old > 0, "add_refs on a free {self:?}");
    }

    /// Turns a reference counted elsewhere (a mapping, the page cache) into a
    /// handle without changing the count. The caller gives that reference up.
    pub fn from_counted(pfn: u64) -> Folio {
        Folio { pfn: folio_head(pfn) }
    }

    /// The index of page `pfn` inside this folio.
    pub fn page_index(&self, pfn: u64) -> usize {
        assert!(pfn >= self.pfn && pfn < self.pfn + self.nr_pages() as u64, "pfn {pfn:#x} outside {self:?}");
        (pfn - self.pfn) as usize
    }

    /// Gives the handle's reference to the holder (a pte, the page cache).
    pub fn into_counted(self) -> u64 {
        let pfn = self.pfn;
        core::mem::forget(self);
        pfn
    }

    pub fn pfn(&self) -> u64 {
        self.pfn
    }

    pub fn page(&self) -> &'static Page {
        pfn_to_page(self.pfn)
    }

    pub fn order(&self) -> u8 {
        self.page().inner.lock().order
    }

    pub fn nr_pages(&self) -> usize {
        1 << self.order()
    }

    pub fn refcount(&self) -> i32 {
        self.page().refcount.load(Ordering::Acquire)
    }

    pub fn mapcount(&self) -> i32 {
        self.page().mapcount.load(Ordering::Acquire)
    }

    pub fn test(&self, flag: u32) -> bool {
        self.page().flags.load(Ordering::Acquire) & flag != 0
    }

    pub fn set(&self, flag: u32) {
        self.page().flags.fetch_or(flag, Ordering::AcqRel);
    }

    pub fn clear(&self, flag: u32) {
        self.page().flags.fetch_and(!flag, Ordering::AcqRel);
    }

    /// A simulated DMA pin (FOLL_PIN): one reference and one pin.
    pub fn pin(&self) {
        self.page().refcount.fetch_add(1, Ordering::AcqRel);
        self.page().pincount.fetch_add(1, Ordering::AcqRel);
    }

    pub fn unpin(&self) {
        let old = self.page().pincount.fetch_sub(1, Ordering::AcqRel);
        assert!(old > 0, "unpin of an unpinned {self:?}");
        drop(Folio::from_counted(self.pfn)); // the pin's reference
    }

    /// folio_trylock without a guard, for a caller that must decide what
    /// to do under another lock before it holds a reference (move_present);
    /// it then takes the guard with `adopt_lock`.
    pub fn trylock_raw(&self) -> bool {
        self.page().flags.fetch_or(PG_LOCKED, Ordering::Acquire) & PG_LOCKED == 0
    }

    /// folio_lock: waits (WFE; no sleeping here) until the lock is ours.
    fn lock(&self) {
        while !self.trylock_raw() {
            crate::arch::cpu::wfe();
        }
    }

    fn unlock(&self) {
        let old = self.page().flags.fetch_and(!PG_LOCKED, Ordering::Release);
        assert!(old & PG_LOCKED != 0, "folio_unlock of an unlocked {self:?}");
        crate::arch::cpu::sev(); // wake folio_lock waiters
    }

    pub fn is_anon(&self) -> bool {
        self.test(PG_ANON)
    }

    /// The pfn of page `i` of the folio.
    pub fn page_pfn(&self, i: usize) -> u64 {
        assert!(i < self.nr_pages(), "page {i} of {self:?}");
        self.pfn + i as u64
    }

    /// Page `i`'s tags (LDGM).
    pub fn tags(&self, i: usize) -> [u8; PAGE_TAG_BYTES] {
        frame_tags(self.page_pfn(i))
    }

    pub fn set_tags(&self, i: usize, tags: &[u8; PAGE_TAG_BYTES]) {
        set_frame_tags(self.page_pfn(i), tags)
    }

    pub fn read(&self, i: usize, off: usize, buf: &mut [u8]) {
        read_frame(self.page_pfn(i), off, buf)
    }

    pub fn write(&self, i: usize, off: usize, buf: &[u8]) {
        write_frame(self.page_pfn(i), off, buf)
    }
}

/// A held folio lock, released when dropped: every early return of a path
/// that holds it unlocks.
#[must_use = "the folio is unlocked as soon as the guard is dropped"]
pub struct FolioLock<'a>(&'a Folio);

impl Folio {
    /// folio_lock, as a guard.
    pub fn lock_guard(&self) -> FolioLock<'_> {
        self.lock();
        FolioLock(self)
    }

    /// folio_trylock, as a guard.
    pub fn try_lock_guard(&self) -> Option<FolioLock<'_>> {
        // Lazily: a guard made for a failed trylock would unlock the holder's lock.
        self.trylock_raw().then(|| FolioLock(self))
    }

    /// The guard for a lock this caller took with `trylock_raw`.
    pub fn adopt_lock(&self) -> FolioLock<'_> {
        assert!(self.test(PG_LOCKED), "adopt_lock of an unlocked {self:?}");
        FolioLock(self)
    }
}

impl core::ops::Deref for FolioLock<'_> {
    type Target = Folio;
    fn deref(&self) -> &Folio {
        self.0
    }
}

impl FolioLock<'_> {
    /// The bytes of page `i` of a locked folio that nothing maps (one being
    /// written to swap or read from it): with no pte, no EL0 access and no
    /// kernel path through a page table reaches it, and the lock keeps
    /// every other kernel path out; `&mut self` makes the borrow unique.
    pub fn unmapped_data(&mut self, i: usize) -> &mut [u8; PAGE_SIZE] {
        assert_eq!(self.0.mapcount(), 0, "unmapped_data of a mapped {:?}", self.0);
        let pa = frame_pa(self.0.page_pfn(i));
        // SAFETY: exclusive by the argument above; a RAM frame, page-aligned.
        unsafe { &mut linear_mut::<PageData>(pa).0 }
    }
}

impl Drop for FolioLock<'_> {
    fn drop(&mut self) {
        self.0.unlock();
    }
}

impl Clone for Folio {
    fn clone(&self) -> Folio {
        Folio::get(self.pfn)
    }
}

impl Drop for Folio {
    /// folio_put: frees the folio with its last reference.
    fn drop(&mut self) {
        let p = self.page();
        let old = p.refcount.fetch_sub(1, Ordering::AcqRel);
        assert!(old > 0, "folio_put underflow on {self:?}");
        if old == 1 {
            let order = {
                let mut inner = p.inner.lock();
                let order = inner.order;
                *inner = PageInner::default();
                order
            };
            assert_eq!(p.mapcount.load(Ordering::Relaxed), 0, "freeing mapped {self:?}");
            p.flags.store(0, Ordering::Release);
            // Frames are zeroed (data and tags) when allocated again.
            let n = 1usize << order;
            for i in 0..n as u64 {
                pfn_to_page(self.pfn + i).head.store(0, Ordering::Release);
            }
            frames::free(self.pfn * PAGE_SIZE as u64, n).expect("freeing a folio's frames");
        }
    }
}
