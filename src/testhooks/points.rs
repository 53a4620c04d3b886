//! The named schedule points, one constant each, shared by the paths that
//! stop there and the tests that arm them: a misspelt point does not
//! compile. `./qemu-run.sh --list-points` prints them.

/// A place in an mm path where a test can stop a CPU.
#[derive(Debug, PartialEq, Eq)]
pub struct Point {
    pub name: &'static str,
    /// The function it sits in, and where in it.
    pub path: &'static str,
}

macro_rules! points {
    ($($id:ident = $name:literal in $path:literal;)*) => {
        $(pub static $id: Point = Point { name: $name, path: $path };)*
        /// Every point, for --list-points.
        pub static ALL: &[&Point] = &[$(&$id),*];
    };
}

points! {
    DO_ANONYMOUS_PAGE_BEFORE_PTL = "do_anonymous_page:before_ptl" in "mm::fault::do_anonymous_page, the folio allocated, before the pte lock";
    DO_READ_FAULT_BEFORE_PTL = "do_read_fault:before_ptl" in "mm::fault::do_read_fault, the page-cache folio found, before the pte lock";
    WP_PAGE_COPY_AFTER_COPY = "wp_page_copy:after_copy" in "mm::fault::wp_page_copy, the copy made, before the pte lock and pte_same";
    DO_SWAP_PAGE_AFTER_SWAPCACHE_LOOKUP = "do_swap_page:after_swapcache_lookup" in "mm::swap::do_swap_page, the folio found or read, before the folio lock";
    DO_SWAP_PAGE_AFTER_FOLIO_LOCK = "do_swap_page:after_folio_lock" in "mm::swap::do_swap_page, the folio locked, before the swap-cache and pte rechecks";
    DO_SWAP_PAGE_AFTER_RESTORE = "do_swap_page:after_restore" in "mm::swap::do_swap_page, tags restored, before swap_free (pte lock held)";
    DO_SWAP_PAGE_AFTER_SWAP_FREE = "do_swap_page:after_swap_free" in "mm::swap::free_swap, the slot's count dropped, before folio_free_swap";
    DO_SWAP_PAGE_AFTER_SET_PTE = "do_swap_page:after_set_pte" in "mm::swap::do_swap_page (RestoreAfterSetPte variant), the pte set, before the restore";
    RECLAIM_RANGE_AFTER_LISTING = "reclaim_range:after_listing" in "mm::vmscan::reclaim_range, the mapped pages listed by a lockless walk (a huge PMD as its 512 pages), before each is read again under its lock";
    SHRINK_FOLIO_BEFORE_PAGEOUT = "shrink_folio:before_pageout" in "mm::vmscan::shrink_folio, unmapped, before the tags are saved and written";
    MOVE_PAGES_RETRY = "move_pages:retry" in "mm::uffd_move::move_pages, a step answered EAGAIN, before it is retried";
    MOVE_PAGES_PTE_AFTER_FOLIO_LOCK = "move_pages_pte:after_folio_lock" in "mm::uffd_move::move_present, the folio locked, before a split or the pte move";
    MOVE_PAGES_PTE_LARGE_FOLIO_BUSY = "move_pages_pte:large_folio_busy" in "mm::uffd_move::move_present, a large folio found locked, before EAGAIN";
    MOVE_SWAP_PTE_BEFORE_PTL = "move_swap_pte:before_ptl" in "mm::uffd_move::move_swap, the swap-cache folio locked, before the pte locks";
    SPLIT_FOLIO_BEFORE_FREEZE = "split_folio:before_freeze" in "mm::split::split_folio, the pte tables locked, before folio_ref_freeze";
    DO_HUGE_PMD_ANONYMOUS_PAGE_BEFORE_PMD_LOCK = "do_huge_pmd_anonymous_page:before_pmd_lock" in "mm::huge_memory::install, the THP allocated and a table deposited, before the PMD lock and the pmd_none recheck";
    DO_HUGE_ZERO_WP_PMD_BEFORE_PMD_LOCK = "do_huge_zero_wp_pmd:before_pmd_lock" in "mm::huge_memory::do_huge_zero_wp_pmd, the new THP allocated for a write on the huge zero page, before the PMD lock and the is_huge_zero_pmd recheck";
    HUGE_PMD_FAULT_AFTER_LOCKLESS_READ = "do_huge_pmd_fault:after_lockless_read" in "mm::fault::handle_mm_fault, a huge PMD seen without the lock, before do_huge_pmd_fault takes it";
    MOVE_HUGE_PMD_AFTER_LOCKLESS_READ = "move_pages_huge_pmd:after_lockless_read" in "mm::uffd_move::move_huge_block, the src huge PMD seen without the lock, before the folio and the PMD locks";
    ZAP_HUGE_PMD_BEFORE_LOCK = "zap_huge_pmd:before_lock" in "mm::huge_memory::zap_or_split_huge_pmds, the huge PMDs of the range listed, before each is locked";
    COPY_HUGE_PMD_BEFORE_LOCK = "copy_huge_pmd:before_lock" in "mm::fork::copy_page_range, the parent's huge PMDs listed, before each is locked and copied";
    COLLAPSE_HUGE_PAGE_AFTER_ALLOC = "collapse_huge_page:after_alloc" in "mm::khugepaged::collapse_huge_page, the mmap lock dropped and the THP allocated, before the read lock is retaken and the VMA revalidated";
    COLLAPSE_HUGE_PAGE_BEFORE_WRITE_LOCK = "collapse_huge_page:before_mmap_write_lock" in "mm::khugepaged::collapse_huge_page, the stragglers swapped in and the read lock dropped, before the mmap write lock";
    TLB_FLUSH_MMU_BEFORE_FLUSH = "tlb_flush_mmu:before_flush" in "mm::mmu_gather::MmuGather::flush, the ptes cleared, before the batched TLB invalidation and the freeing of the folios";
    SPLIT_FOLIO_AFTER_FREEZE = "split_folio:after_freeze" in "mm::split::split_folio, the refcount frozen, before the pages are rewritten";
}
