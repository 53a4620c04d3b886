//! User page tables seen as Linux pte_t/pmd_t values, with a lock per
//! last-level table (the split pte lock) and break-before-make updates.
//!
//! A level-2 entry is none, a pte table, or a 2 MiB block (a PMD-mapped
//! THP or the huge zero page, see huge_memory). Block entries change under
//! the lock of the table that holds them (the split PMD lock). Pte-level
//! users get the pte table through `lock`, which splits a block first
//! (split_huge_pmd), as Linux's pte-level paths do; the read-only walkers
//! (`peek`, `for_each_pte`) show a block as the 512 ptes it stands for,
//! and the PMD-aware paths (fault, zap, fork, uaccess) use `pmd_lock`.

use super::folio::{pfn_to_page, PG_TABLE};
use super::frames;
use super::mmu_gather::{flush_tlb_page, flush_tlb_range, MmuGather};
use super::pte::{
    pmd_t, pmd_trans_huge, pte_t, pte_valid, PTE_AF, PTE_PXN, PTE_RDONLY, PTE_TYPE_PAGE, PTE_USER, PTE_UXN, PTE_WRITE,
};
use crate::arch::mmu::{PAGE_MASK, PAGE_SIZE, PMD_MASK, PMD_SIZE, PTRS_PER_PTE};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use spin::MutexGuard;

const TABLE: u64 = 3; // valid table descriptor
const ADDR: u64 = 0x0000_FFFF_FFFF_F000;

fn entry(table_pa: u64, i: usize) -> &'static AtomicU64 {
    assert!(i < PTRS_PER_PTE);
    // SAFETY: table_pa is a page-table page owned by an mm (it stays
    // allocated until exit_mmap frees it); entries are 8-byte aligned u64s
    // and only accessed atomically.
    unsafe { crate::arch::mmu::linear_ref(table_pa + 8 * i as u64) }
}

/// The pte a huge PMD stands for at `addr` (its page there, same bits).
pub fn huge_pmd_pte(pmd: pmd_t, addr: usize) -> pte_t {
    let i = (addr & !crate::arch::mmu::PMD_MASK) & PAGE_MASK;
    pte_t((pmd.0 | PTE_TYPE_PAGE) + i as u64)
}

fn index(addr: usize, level: usize) -> usize {
    (addr >> (12 + 9 * (3 - level))) & 511
}

/// A four-level user table tree.
pub struct PgTables {
    pub root: u64,
    /// Table pages in the tree, the root included, and the deposited ones.
    pub nr_tables: AtomicUsize,
    pub asid: u16,
    /// pgtable_trans_huge_deposit: a pte table kept for each huge PMD (by
    /// its 2 MiB address), so that splitting it never allocates.
    deposited: spin::Mutex<alloc::collections::BTreeMap<usize, u64>>,
}

/// The lock of the table page holding the level-2 entry `e` (the split
/// PMD lock).
fn pmd_ptl(e: &AtomicU64) -> &'static spin::Mutex<()> {
    let holder = crate::arch::mmu::virt_to_phys(e as *const AtomicU64 as usize) & !(PAGE_SIZE as u64 - 1);
    &pfn_to_page(holder / PAGE_SIZE as u64).ptl
}

/// A level-2 entry whose lock the caller holds, for the 2 MiB at `.1`.
struct PmdEntry(&'static AtomicU64, usize);

impl PmdEntry {
    fn get(&self) -> pmd_t {
        pmd_t(self.0.load(Ordering::Acquire))
    }

    /// set_pmd_at: break-before-make over a valid entry (a block or a
    /// table: the range invalidation takes the walk caches too), then `new`.
    fn set(&self, new: pmd_t, asid: u16) {
        if self.get().0 & 1 != 0 {
            self.0.store(0, Ordering::Release);
            crate::arch::mmu::publish_descriptors();
            let start = self.1 & PMD_MASK;
            flush_tlb_range(asid, start, start + PMD_SIZE);
        }
        self.0.store(new.0, Ordering::Release);
        crate::arch::mmu::publish_descriptors();
    }
}

/// A level-2 entry, locked (pmd_lock).
pub struct PmdLocked {
    entry: &'static AtomicU64,
    pub addr: usize,
    _ptl: MutexGuard<'static, ()>,
}

impl PmdLocked {
    pub fn get(&self) -> pmd_t {
        PmdEntry(self.entry, self.addr).get()
    }

    /// set_pmd_at: break-before-make over a valid entry, then `new`.
    pub fn set(&self, new: pmd_t, asid: u16) {
        PmdEntry(self.entry, self.addr).set(new, asid)
    }
}

fn alloc_table() -> Option<u64> {
    if crate::testhooks::fault_inject::PTE_ALLOC.should_fail() {
        return None;
    }
    let pa = frames::alloc_zeroed(1, 1)?;
    pfn_to_page(pa / PAGE_SIZE as u64).flags.store(PG_TABLE, Ordering::Release);
    Some(pa)
}

fn free_table(pa: u64) {
    pfn_to_page(pa / PAGE_SIZE as u64).flags.store(0, Ordering::Release);
    frames::free(pa, 1).expect("freeing a page-table page");
}

/// The locked last-level table covering an address.
pub struct PteTable {
    table: u64,
    _ptl: MutexGuard<'static, ()>,
}

impl PteTable {
    pub fn get(&self, addr: usize) -> pte_t {
        pte_t(entry(self.table, index(addr, 3)).load(Ordering::Acquire))
    }

    /// Writes a pte. Replacing a valid pte goes through an invalid one and a
    /// TLB flush on every CPU that ran the mm first (break-before-make).
    pub fn set(&self, addr: usize, new: pte_t, asid: u16) {
        let e = entry(self.table, index(addr, 3));
        let old = pte_t(e.load(Ordering::Acquire));
        if pte_valid(old) {
            e.store(0, Ordering::Release);
            flush_tlb_page(asid, addr);
        }
        e.store(new.0, Ordering::Release);
        crate::arch::mmu::publish_descriptors();
    }

    /// ptep_get_and_clear + flush.
    pub fn clear(&self, addr: usize, asid: u16) -> pte_t {
        let old = self.get(addr);
        self.set(addr, pte_t(0), asid);
        old
    }

    /// A pte change whose TLB invalidation `tlb` batches, where the
    /// architecture needs no break-before-make: from or to an invalid pte,
    /// or between valid ones differing only in permissions (AP, PXN/UXN,
    /// DBM), the access flag or software bits. Any other change of a valid
    /// pte goes through `set` (invalidated at once).
    pub fn set_gathered(&self, addr: usize, new: pte_t, asid: u16, tlb: &mut MmuGather) {
        const NO_BBM: u64 = PTE_USER | PTE_RDONLY | PTE_WRITE | PTE_PXN | PTE_UXN | PTE_AF | (0xF << 55);
        let e = entry(self.table, index(addr, 3));
        let old = pte_t(e.load(Ordering::Acquire));
        if pte_valid(old) && pte_valid(new) && (old.0 ^ new.0) & !NO_BBM != 0 {
            return self.set(addr, new, asid);
        }
        e.store(new.0, Ordering::Release);
        crate::arch::mmu::publish_descriptors();
        if pte_valid(old) {
            tlb.add_range(addr, PAGE_SIZE);
        }
    }

    /// ptep_get_and_clear with the flush left to `tlb` (zap's batching):
    /// until `tlb` flushes, other CPUs may still reach the old page.
    pub fn clear_gathered(&self, addr: usize, tlb: &mut MmuGather) -> pte_t {
        let e = entry(self.table, index(addr, 3));
        let old = pte_t(e.swap(0, Ordering::AcqRel));
        if pte_valid(old) {
            tlb.add_range(addr, PAGE_SIZE);
        }
        old
    }
}

impl PgTables {
    pub fn new(asid: u16) -> Option<PgTables> {
        Some(PgTables {
            root: alloc_table()?,
            nr_tables: AtomicUsize::new(1),
            asid,
            deposited: spin::Mutex::new(alloc::collections::BTreeMap::new()),
        })
    }

    /// pmd_lock: the level-2 entry covering `addr`, under the lock of the
    /// table holding it (allocating the tables above if `alloc`).
    pub fn pmd_lock(&self, addr: usize, alloc: bool) -> Result<Option<PmdLocked>, ()> {
        let Some(e) = self.entry_at_level(addr, 2, alloc)? else { return Ok(None) };
        Ok(Some(PmdLocked { entry: e, addr: addr & crate::arch::mmu::PMD_MASK, _ptl: pmd_ptl(e).lock() }))
    }

    /// The level-2 entry at `addr` without the lock (a lockless look).
    pub fn pmd_peek(&self, addr: usize) -> pmd_t {
        match self.entry_at_level(addr, 2, false) {
            Ok(Some(e)) => pmd_t(e.load(Ordering::Acquire)),
            _ => pmd_t(0),
        }
    }

    /// The level-2 entry at `addr`, or None when the tables above it do
    /// not exist (find_pmd_or_thp_or_none tells "no pmd" from "pmd none").
    pub fn pmd_find(&self, addr: usize) -> Option<pmd_t> {
        match self.entry_at_level(addr, 2, false) {
            Ok(Some(e)) => Some(pmd_t(e.load(Ordering::Acquire))),
            _ => None,
        }
    }

    /// pmdp_collapse_flush: under the PMD lock, the pte table at `addr`'s
    /// PMD is taken out of the tree (the entry cleared, every TLB flushed)
    /// and returned, its ptes untouched. None if the PMD no longer holds a
    /// table. The caller holds the mmap write lock, so no fault can put a
    /// new table there before `pmd_populate` or a huge PMD replaces it.
    pub fn collapse_detach(&self, addr: usize) -> Option<u64> {
        let e = self.entry_at_level(addr, 2, false).ok()??;
        let locked = PmdEntry(e, addr);
        let _ptl = pmd_ptl(e).lock();
        let d = locked.get().0;
        if d & TABLE != TABLE {
            return None;
        }
        locked.set(pmd_t(0), self.asid);
        Some(d & ADDR)
    }

    /// pmd_populate: a detached table goes back into its PMD, which must
    /// still be none.
    pub fn pmd_populate(&self, addr: usize, table: u64) {
        let e = self.entry_at_level(addr, 2, false).ok().flatten().expect("pmd_populate without a pmd");
        let _ptl = pmd_ptl(e).lock();
        assert_eq!(e.load(Ordering::Acquire), 0, "pmd_populate over a live entry at {addr:#x}");
        e.store(table | TABLE, Ordering::Release);
        crate::arch::mmu::publish_descriptors();
    }

    /// The lock of a detached pte table (collapse's round 2 runs under it).
    pub fn lock_detached(table: u64) -> PteTable {
        PteTable { table, _ptl: pfn_to_page(table / PAGE_SIZE as u64).ptl.lock() }
    }

    /// move_pages_huge_pmd's page-table step: under both PMD locks (one if
    /// the entries share a table), `check` sees the src huge PMD (it must
    /// still be `expect`) and gives the dst entry; src is cleared
    /// break-before-make, dst set, and the deposit moves with it.
    /// Err(EEXIST) if dst is no longer none, EAGAIN if src changed.
    pub fn move_huge_pmd(
        &self,
        s: usize,
        d: usize,
        expect: pmd_t,
        check: impl FnOnce() -> Result<pmd_t, crate::errno::Errno>,
    ) -> Result<(), crate::errno::Errno> {
        use crate::errno::{EAGAIN, EEXIST, ENOMEM};
        let de = self.entry_at_level(d, 2, true).map_err(|_| ENOMEM)?.ok_or(ENOMEM)?;
        let se = self.entry_at_level(s, 2, false).map_err(|_| ENOMEM)?.ok_or(EAGAIN)?;
        // Both locks, the lower address first (double_pt_lock), one if shared.
        let (sp, dp) = (pmd_ptl(se), pmd_ptl(de));
        let (_first, _second) = match (sp as *const _ as usize).cmp(&(dp as *const _ as usize)) {
            core::cmp::Ordering::Equal => (sp.lock(), None),
            core::cmp::Ordering::Less => (sp.lock(), Some(dp.lock())),
            core::cmp::Ordering::Greater => {
                let d = dp.lock();
                (sp.lock(), Some(d))
            }
        };
        let sl = PmdEntry(se, s);
        if sl.get() != expect {
            return Err(EAGAIN);
        }
        if de.load(Ordering::Acquire) != 0 {
            return Err(EEXIST);
        }
        let new = check()?;
        sl.set(pmd_t(0), self.asid);
        PmdEntry(de, d).set(new, self.asid);
        let mut dep = self.deposited.lock();
        let t = dep.remove(&(s & crate::arch::mmu::PMD_MASK)).expect("a huge PMD without a deposit");
        dep.insert(d & crate::arch::mmu::PMD_MASK, t);
        Ok(())
    }

    /// A new pte table to deposit with a huge PMD (allocated before the
    /// PMD lock is taken; `free_withdrawn` if it is not used).
    pub fn alloc_deposit(&self) -> Result<u64, ()> {
        let t = alloc_table().ok_or(())?;
        self.nr_tables.fetch_add(1, Ordering::Relaxed);
        Ok(t)
    }

    /// pgtable_trans_huge_deposit: `table` kept for the huge PMD being
    /// installed under `pmd`'s lock.
    pub fn deposit(&self, pmd: &PmdLocked, table: u64) {
        let old = self.deposited.lock().insert(pmd.addr, table);
        assert!(old.is_none(), "a second deposit for the PMD at {:#x}", pmd.addr);
    }

    /// pgtable_trans_huge_withdraw: the table deposited for `addr` (empty).
    pub fn withdraw(&self, addr: usize) -> u64 {
        self.deposited.lock().remove(&(addr & crate::arch::mmu::PMD_MASK)).expect("a huge PMD without a deposit")
    }

    /// Frees a withdrawn table that will not be used (zap_huge_pmd).
    pub fn free_withdrawn(&self, table: u64) {
        free_table(table);
        self.nr_tables.fetch_sub(1, Ordering::Relaxed);
    }

    /// Points the locked level-2 entry at `table` (filled by the caller):
    /// the block it held is replaced break-before-make.
    pub fn install_split_table(&self, pmd: &PmdLocked, table: u64) {
        pmd.set(pmd_t(table | TABLE), self.asid);
    }

    /// Writes pte `i` of a table not yet in the tree (a withdrawn one).
    pub fn fill_table(table: u64, i: usize, pte: pte_t) {
        entry(table, i).store(pte.0, Ordering::Release);
    }

    fn last_level(&self, addr: usize, alloc: bool) -> Result<Option<u64>, ()> {
        match self.entry_at_level(addr, 2, alloc)? {
            Some(e) => self.descend(e, alloc),
            None => Ok(None),
        }
    }

    /// The table entry `e` points to, installing one if it is empty and
    /// `alloc`; None if it is empty (and not `alloc`) or a block.
    fn descend(&self, e: &AtomicU64, alloc: bool) -> Result<Option<u64>, ()> {
        let mut d = e.load(Ordering::Acquire);
        if d & 1 == 0 {
            if !alloc {
                return Ok(None);
            }
            d = self.install_table(e)?;
        }
        Ok((d & TABLE == TABLE).then_some(d & ADDR))
    }

    /// Puts a new table into the empty entry `e` (or finds the one another
    /// CPU put there first); returns the entry's descriptor.
    fn install_table(&self, e: &AtomicU64) -> Result<u64, ()> {
        let new = alloc_table().ok_or(())?;
        match e.compare_exchange(0, new | TABLE, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                self.nr_tables.fetch_add(1, Ordering::Relaxed);
                Ok(new | TABLE)
            }
            Err(other) => {
                free_table(new);
                Ok(other)
            }
        }
    }

    /// The entry of level `level` covering `addr`, allocating the tables
    /// above it if `alloc`.
    fn entry_at_level(&self, addr: usize, level: usize, alloc: bool) -> Result<Option<&'static AtomicU64>, ()> {
        let mut table = self.root;
        for l in 0..level {
            match self.descend(entry(table, index(addr, l)), alloc)? {
                Some(next) => table = next,
                None => return Ok(None),
            }
        }
        Ok(Some(entry(table, index(addr, level))))
    }

    /// pte_offset_map_lock: the locked pte table for `addr`, allocating the
    /// tables on the way if `alloc`. Err(()) means out of memory.
    ///
    /// After taking the lock the table must still be the one at `addr`'s
    /// pmd (pmd_same): a PMD-level move may have taken it elsewhere.
    pub fn lock(&self, addr: usize, alloc: bool) -> Result<Option<PteTable>, ()> {
        // One walk to the pmd: the tables above it stay until free_all.
        let Some(e) = self.entry_at_level(addr, 2, alloc)? else { return Ok(None) };
        loop {
            if pmd_trans_huge(pmd_t(e.load(Ordering::Acquire))) {
                super::huge_memory::split_huge_pmd(self, addr);
                continue;
            }
            let Some(table) = self.descend(e, alloc)? else { return Ok(None) };
            let ptl = pfn_to_page(table / PAGE_SIZE as u64).ptl.lock();
            if e.load(Ordering::Acquire) == table | TABLE {
                return Ok(Some(PteTable { table, _ptl: ptl }));
            }
        }
    }

    /// Moves the pte table mapping the 2 MiB at `src` to the empty pmd of
    /// `dst` (both 2 MiB aligned), with the table's lock held by the caller
    /// through `locked`. Fails (false) if dst's pmd is no longer empty.
    pub fn move_pte_table(&self, locked: &PteTable, src: usize, dst: usize, asid: u16) -> Result<bool, ()> {
        let s = self.entry_at_level(src, 2, false)?.ok_or(())?;
        let d = self.entry_at_level(dst, 2, true)?;
        let Some(d) = d else { return Err(()) };
        let desc = locked.table | TABLE;
        if d.compare_exchange(0, desc, Ordering::AcqRel, Ordering::Acquire).is_err() {
            return Ok(false);
        }
        s.store(0, Ordering::Release);
        crate::arch::mmu::publish_descriptors();
        flush_tlb_range(asid, src, src + PMD_SIZE);
        Ok(true)
    }

    /// The physical address of the pte table covering `addr`, if any.
    pub fn table_of(&self, addr: usize) -> Option<u64> {
        self.last_level(addr, false).ok().flatten()
    }

    /// The pte at `addr` without taking the lock (for checkers and lookups
    /// that tolerate a stale value).
    pub fn peek(&self, addr: usize) -> pte_t {
        let pmd = self.pmd_peek(addr);
        if pmd_trans_huge(pmd) {
            return huge_pmd_pte(pmd, addr);
        }
        match self.last_level(addr, false) {
            Ok(Some(t)) => pte_t(entry(t, index(addr, 3)).load(Ordering::Acquire)),
            _ => pte_t(0),
        }
    }

    /// Calls `f(lo, hi)` for each part `[lo, hi)` of `[start, end)` that a
    /// pte table covers, in address order. Absent tables at every level are
    /// skipped whole, so a walk costs what is mapped, not the range's size
    /// (as Linux's pmd_none / pud_none skips).
    pub fn for_each_pte_table(&self, start: usize, end: usize, mut f: impl FnMut(usize, usize)) {
        self.walk_tables(start, end, &mut |_, lo, hi| f(lo, hi));
    }

    /// Calls `f(table, lo, hi)` with each existing pte table that covers
    /// part `[lo, hi)` of `[start, end)`, locked, in address order.
    pub fn for_each_locked_table(&self, start: usize, end: usize, mut f: impl FnMut(&PteTable, usize, usize)) {
        let mut tables: alloc::vec::Vec<(usize, usize)> = alloc::vec::Vec::new();
        self.for_each_pte_table(start, end, |lo, hi| tables.push((lo, hi)));
        for (lo, hi) in tables {
            if let Ok(Some(pt)) = self.lock(lo, false) {
                f(&pt, lo, hi);
            }
        }
    }

    /// Calls `f(addr, pte)` for every non-none pte in `[start, end)`; a
    /// huge PMD counts as the 512 ptes it stands for.
    pub fn for_each_pte(&self, start: usize, end: usize, mut f: impl FnMut(usize, pte_t)) {
        self.walk_tables(start, end, &mut |table, lo, hi| {
            for a in (lo..hi).step_by(PAGE_SIZE) {
                let d = entry(table, index(a, 3)).load(Ordering::Acquire);
                if d != 0 {
                    f(a, pte_t(d));
                }
            }
        });
        self.for_each_huge_pmd(start, end, |lo, pmd| {
            for a in (lo.max(start)..(lo + crate::arch::mmu::PMD_SIZE).min(end)).step_by(PAGE_SIZE) {
                f(a, huge_pmd_pte(pmd, a));
            }
        });
    }

    /// Calls `f(pmd_addr, pmd)` for every huge PMD overlapping `[start, end)`.
    pub fn for_each_huge_pmd(&self, start: usize, end: usize, mut f: impl FnMut(usize, pmd_t)) {
        self.walk_pmds(start, end, &mut |lo, d| {
            if pmd_trans_huge(pmd_t(d)) {
                f(lo, pmd_t(d));
            }
        });
    }

    /// `f(table, lo, hi)` for every last-level table and the part of
    /// `[start, end)` it covers (page aligned).
    fn walk_tables(&self, start: usize, end: usize, f: &mut dyn FnMut(u64, usize, usize)) {
        self.walk_pmds(start, end, &mut |lo, d| {
            if d & TABLE == TABLE {
                f(d & ADDR, lo.max(start) & PAGE_MASK, (lo + crate::arch::mmu::PMD_SIZE).min(end));
            }
        });
    }

    /// `f(lo, descriptor)` for every non-empty level-2 entry whose 2 MiB at
    /// `lo` overlaps `[start, end)`, in address order; absent tables above
    /// are skipped whole.
    fn walk_pmds(&self, start: usize, end: usize, f: &mut dyn FnMut(usize, u64)) {
        fn walk(table: u64, level: usize, base: usize, start: usize, end: usize, f: &mut dyn FnMut(usize, u64)) {
            let span = 1usize << (12 + 9 * (3 - level));
            for i in 0..PTRS_PER_PTE {
                let lo = base + i * span;
                if lo >= end || lo + span <= start {
                    continue;
                }
                let d = entry(table, i).load(Ordering::Acquire);
                if level == 2 {
                    if d != 0 {
                        f(lo, d);
                    }
                } else if d & TABLE == TABLE {
                    walk(d & ADDR, level + 1, lo, start, end, f);
                }
            }
        }
        walk(self.root, 0, 0, start, end, f);
    }

    /// Frees every table page (free_pgtables at exit). The ptes must be none.
    pub fn free_all(&self) {
        fn walk(table: u64, level: usize) -> usize {
            let mut n = 1;
            if level < 3 {
                for i in 0..PTRS_PER_PTE {
                    let d = entry(table, i).load(Ordering::Acquire);
                    if d & TABLE == TABLE {
                        n += walk(d & ADDR, level + 1);
                    }
                }
            } else {
                assert!(
                    (0..PTRS_PER_PTE).all(|i| entry(table, i).load(Ordering::Acquire) == 0),
                    "freeing a pte table that still maps something"
                );
            }
            free_table(table);
            n
        }
        let n = walk(self.root, 0);
        self.nr_tables.fetch_sub(n, Ordering::Relaxed);
        let left = core::mem::take(&mut *self.deposited.lock());
        assert!(
            left.is_empty(),
            "freeing page tables with {} deposited table(s) left: a huge PMD was not zapped",
            left.len()
        );
    }
}
