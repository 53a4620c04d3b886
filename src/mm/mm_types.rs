//! mm_struct and vm_area_struct: an address space, its VMAs, its page
//! tables, its ASID and its rss counters.

use super::filemap::File;
use super::pgtable::PgTables;
use super::pte::{pgprot_t, vm_get_page_prot};
use super::rmap::{AnonVma, RmapVma};
use crate::arch::mmu::{self, PAGE_SIZE};
use alloc::collections::BTreeMap;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicIsize, AtomicU16, AtomicU64, Ordering};
use spin::{Mutex, Once, RwLock};

pub const VM_READ: u64 = 1 << 0;
pub const VM_WRITE: u64 = 1 << 1;
pub const VM_EXEC: u64 = 1 << 2;
pub const VM_SHARED: u64 = 1 << 3;
pub const VM_LOCKED: u64 = 1 << 13;
/// MADV_SEQUENTIAL / MADV_RANDOM (read-ahead hints; nothing reads ahead here).
pub const VM_SEQ_READ: u64 = 1 << 15;
pub const VM_RAND_READ: u64 = 1 << 16;
/// MADV_DONTFORK: fork does not copy the VMA.
pub const VM_DONTCOPY: u64 = 1 << 17;
/// PROT_BTI: guarded pages (PTE_GP).
pub const VM_ARM64_BTI: u64 = 1 << 24;
/// MADV_WIPEONFORK: the child gets the VMA empty.
pub const VM_WIPEONFORK: u64 = 1 << 25;
/// MADV_DONTDUMP (no core dumps here: recorded only).
pub const VM_DONTDUMP: u64 = 1 << 26;
/// MADV_NOHUGEPAGE or MAP_STACK: never a THP. (Linux's bit is 30, taken
/// here by VM_SPECIAL.)
pub const VM_NOHUGEPAGE: u64 = 1 << 31;
/// MADV_HUGEPAGE: anonymous faults may map a whole order-9 folio.
pub const VM_HUGEPAGE: u64 = 1 << 29;
/// Registered with a userfaultfd in MISSING / WP mode.
pub const VM_UFFD_MISSING: u64 = 1 << 9;
pub const VM_UFFD_WP: u64 = 1 << 12;
/// The EL0 agent's code: mapped with special ptes, no folio, no rss.
pub const VM_SPECIAL: u64 = 1 << 30;
/// PROT_MTE: Tagged Normal memory (arm64 VM_MTE).
pub const VM_MTE: u64 = 1 << 36;

pub const VM_ACCESS_FLAGS: u64 = VM_READ | VM_WRITE | VM_EXEC;

/// rss counter indices.
pub const MM_FILEPAGES: usize = 0;
pub const MM_ANONPAGES: usize = 1;
pub const MM_SWAPENTS: usize = 2;

/// User addresses are below this (48-bit TTBR0 half).
pub const TASK_SIZE: usize = 1 << 48;

/// vm.mmap_min_addr as Debian's arm64 kernels set it
/// (CONFIG_DEFAULT_MMAP_MIN_ADDR=32768): userfaultfd ranges below it are
/// refused.
pub const MMAP_MIN_ADDR: usize = 32768;

static NEXT_VMA: AtomicU64 = AtomicU64::new(1);

#[derive(Clone)]
pub struct Vma {
    pub id: u64,
    pub start: usize,
    pub end: usize,
    pub flags: u64,
    /// Page offset of `start` in the file, or in the anon_vma's index space.
    pub pgoff: u64,
    /// Set once, under the mmap read lock, by the first anonymous fault
    /// (anon_vma_prepare); shared by the halves of a split VMA.
    pub anon_vma: Arc<Once<Arc<AnonVma>>>,
    pub file: Option<Arc<File>>,
    /// The userfaultfd context this VMA is registered with.
    pub uffd: Option<Arc<super::userfaultfd::Uffd>>,
}

impl Vma {
    pub fn new(start: usize, end: usize, flags: u64, pgoff: u64, file: Option<Arc<File>>) -> Vma {
        Vma {
            id: NEXT_VMA.fetch_add(1, Ordering::Relaxed),
            start,
            end,
            flags,
            pgoff,
            anon_vma: Arc::new(Once::new()),
            file,
            uffd: None,
        }
    }

    pub fn anon_vma(&self) -> Option<&Arc<AnonVma>> {
        self.anon_vma.get()
    }

    pub fn is_anon(&self) -> bool {
        self.file.is_none() && self.flags & VM_SPECIAL == 0
    }

    pub fn page_prot(&self) -> pgprot_t {
        let f = self.flags;
        let p = vm_get_page_prot(
            f & VM_READ != 0,
            f & VM_WRITE != 0,
            f & VM_EXEC != 0,
            f & VM_SHARED != 0,
            f & VM_MTE != 0,
        );
        // arch_vm_get_page_prot: BTI-guarded pages.
        if f & VM_ARM64_BTI != 0 {
            pgprot_t(p.0 | super::pte::PTE_GP)
        } else {
            p
        }
    }

    /// linear_page_index.
    pub fn pgoff_of(&self, addr: usize) -> u64 {
        self.pgoff + ((addr - self.start) / PAGE_SIZE) as u64
    }

    pub fn contains(&self, addr: usize) -> bool {
        self.start <= addr && addr < self.end
    }

    fn rmap_entry(&self, mm: &Arc<MmStruct>) -> RmapVma {
        RmapVma { mm: Arc::downgrade(mm), vma_id: self.id, start: self.start, end: self.end, pgoff: self.pgoff }
    }

    /// A copy with a new id over `[start, end)` (a split).
    pub fn split(&self, start: usize, end: usize) -> Vma {
        Vma {
            id: NEXT_VMA.fetch_add(1, Ordering::Relaxed),
            start,
            end,
            flags: self.flags,
            pgoff: self.pgoff_of(start),
            anon_vma: self.anon_vma.clone(),
            file: self.file.clone(),
            uffd: self.uffd.clone(),
        }
    }
}

/// What the mmap lock protects.
#[derive(Default)]
pub struct MmMap {
    /// VMAs by start address; never overlapping.
    pub vmas: BTreeMap<usize, Vma>,
}

impl MmMap {
    pub fn find(&self, addr: usize) -> Option<&Vma> {
        self.vmas.range(..=addr).next_back().map(|(_, v)| v).filter(|v| v.contains(addr))
    }

    /// VMAs overlapping `[start, end)`.
    pub fn overlapping(&self, start: usize, end: usize) -> impl Iterator<Item = &Vma> {
        self.vmas.values().filter(move |v| v.start < end && start < v.end)
    }

    /// Whether every byte of `[start, end)` is in some VMA.
    pub fn fully_mapped(&self, start: usize, end: usize) -> bool {
        let mut at = start;
        for v in self.overlapping(start, end) {
            if v.start > at {
                return false;
            }
            at = v.end;
        }
        at >= end
    }
}

static NEXT_ASID: AtomicU16 = AtomicU16::new(16);
static NEXT_MM: AtomicU64 = AtomicU64::new(1);
/// Every live mm, for the invariant checker.
static MMS: Mutex<Vec<Weak<MmStruct>>> = Mutex::new(Vec::new());

pub struct MmStruct {
    pub id: u64,
    pub asid: u16,
    pub pgtables: PgTables,
    pub mmap_lock: RwLock<MmMap>,
    pub rss: [AtomicIsize; 3],
    /// MMF_VM_HUGEPAGE: khugepaged has this mm in its list.
    pub khugepaged: core::sync::atomic::AtomicBool,
}

impl MmStruct {
    pub fn new() -> Option<Arc<MmStruct>> {
        // ASIDs 1..=8 belong to the harness's scratch spaces; wrap-around
        // flushes everything so no stale entry survives.
        let mut asid = NEXT_ASID.fetch_add(1, Ordering::Relaxed);
        if asid == 0 || asid < 16 {
            mmu::tlb::flush_all();
            NEXT_ASID.store(17, Ordering::Relaxed);
            asid = 16;
        }
        let mm = Arc::new(MmStruct {
            id: NEXT_MM.fetch_add(1, Ordering::Relaxed),
            asid,
            pgtables: PgTables::new(asid)?,
            mmap_lock: RwLock::new(MmMap::default()),
            rss: Default::default(),
            khugepaged: core::sync::atomic::AtomicBool::new(false),
        });
        let mut all = MMS.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&mm));
        Some(mm)
    }

    pub fn rss(&self, kind: usize) -> isize {
        self.rss[kind].load(Ordering::Acquire)
    }

    pub fn add_rss(&self, kind: usize, n: isize) {
        self.rss[kind].fetch_add(n, Ordering::AcqRel);
    }

    /// Makes this the current EL0 address space on this CPU.
    pub fn activate(self: &Arc<Self>) {
        super::mmu_context::switch_mm(self);
    }

    /// Adds `vma` to the tree and to its rmap anchor.
    pub fn vma_link(self: &Arc<Self>, map: &mut MmMap, vma: Vma) {
        if let Some(av) = vma.anon_vma() {
            av.anchor.link(vma.rmap_entry(self));
        }
        if let Some(f) = &vma.file {
            f.i_mmap.link(vma.rmap_entry(self));
        }
        map.vmas.insert(vma.start, vma);
    }

    /// Removes the VMA starting at `start` from the tree and its anchor.
    pub fn vma_unlink(&self, map: &mut MmMap, start: usize) -> Option<Vma> {
        let vma = map.vmas.remove(&start)?;
        if let Some(av) = vma.anon_vma() {
            av.anchor.unlink(self, vma.id);
        }
        if let Some(f) = &vma.file {
            f.i_mmap.unlink(self, vma.id);
            f.release_if_unused();
        }
        Some(vma)
    }

    /// anon_vma_prepare: the VMA's anon_vma, created and linked on first
    /// use. Runs under the mmap read lock; the Once makes it race-free.
    pub fn anon_vma_prepare(self: &Arc<Self>, map: &MmMap, vma: &Vma) -> Arc<AnonVma> {
        vma.anon_vma
            .call_once(|| {
                let av = AnonVma::new();
                // Every VMA sharing the cell (split halves) is linked.
                for v in map.vmas.values().filter(|v| Arc::ptr_eq(&v.anon_vma, &vma.anon_vma)) {
                    av.anchor.link(v.rmap_entry(self));
                }
                av
            })
            .clone()
    }
}

impl Drop for MmStruct {
    fn drop(&mut self) {
        // exit_mmap has emptied the tree; the tables go with the mm.
        assert!(self.mmap_lock.get_mut().vmas.is_empty(), "mm {} dropped with VMAs", self.id);
        self.pgtables.free_all();
        mmu::tlb::flush_asid(self.asid);
        mmu::tlb::reset_asid(self.asid);
    }
}

/// Every live mm.
pub fn all_mms() -> Vec<Arc<MmStruct>> {
    MMS.lock().iter().filter_map(|w| w.upgrade()).collect()
}
