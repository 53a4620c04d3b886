//! The known-wrong variants: each a declared switch in one mm path that
//! makes it do what a real Linux bug did, with the tests that must catch
//! it. A test switches one on with a guard that switches it off when
//! dropped; the harness switches every one off after every test; at the
//! end of a full run the harness checks that each variant was switched on
//! by one of its catching tests and that test passed (a variant nobody
//! catches fails the run). `./qemu-run.sh --list-variants` prints them.

use core::sync::atomic::{AtomicBool, Ordering};

pub struct Variant {
    pub name: &'static str,
    /// The path it changes.
    pub path: &'static str,
    /// What goes wrong.
    pub breaks: &'static str,
    /// The Linux commit or thread it reproduces.
    pub reproduces: &'static str,
    /// The tests (suite::name) that must catch it.
    pub caught_by: &'static [&'static str],
    on: AtomicBool,
    /// Switched on during the running test.
    used: AtomicBool,
    /// Switched on by a catching test that passed.
    caught: AtomicBool,
}

/// Switches its variant off when dropped.
#[must_use = "the variant is off again as soon as the guard is dropped"]
pub struct Enabled(&'static Variant);

impl Drop for Enabled {
    fn drop(&mut self) {
        self.0.on.store(false, Ordering::Release);
    }
}

impl Variant {
    const fn new(
        name: &'static str,
        path: &'static str,
        breaks: &'static str,
        reproduces: &'static str,
        caught_by: &'static [&'static str],
    ) -> Variant {
        Variant {
            name,
            path,
            breaks,
            reproduces,
            caught_by,
            on: AtomicBool::new(false),
            used: AtomicBool::new(false),
            caught: AtomicBool::new(false),
        }
    }

    /// Whether the path should take the wrong order now.
    pub fn is_on(&self) -> bool {
        self.on.load(Ordering::Acquire)
    }

    pub fn enable(&'static self) -> Enabled {
        self.used.store(true, Ordering::Release);
        self.on.store(true, Ordering::Release);
        Enabled(self)
    }
}

pub static COW_DATA_ONLY: Variant = Variant::new(
    "cow:data_only",
    "mm::fault::wp_page_copy (copy_highpage)",
    "a COW copy gets the data but not the tags",
    "a copy_user_highpage without arm64's tag copy (what arm64's copy_highpage exists for)",
    &["mm::cow_that_drops_tags_is_caught"],
);

pub static SWAPIN_FREE_BEFORE_RESTORE: Variant = Variant::new(
    "swapin:free_before_restore",
    "mm::swap::do_swap_page",
    "swap_free / folio_free_swap run before arch_swap_restore: the slot's tags are gone when restored",
    "c145e0b47c77 (fixed by 6dca4ac6fc91)",
    &["swap::free_before_restore_is_caught"],
);

pub static SWAPIN_RESTORE_AFTER_SET_PTE: Variant = Variant::new(
    "swapin:restore_after_set_pte",
    "mm::swap::do_swap_page",
    "the pte is set before the tags are restored: EL0 sees the page with wrong tags",
    "the old set_pte_at restore hook (thread of 6dca4ac6fc91, v1)",
    &["swap::restore_after_set_pte_is_caught"],
);

pub static SWAPIN_RESTORE_BEFORE_LOCK: Variant = Variant::new(
    "swapin:restore_before_lock",
    "mm::swap::do_swap_page",
    "tag storage is read before the folio lock and rechecks: a concurrent fault frees the buffer (use-after-free)",
    "the T1/T2 race raised in the 6dca4ac6fc91 thread",
    &["swap::t1_t2_race_restore_before_lock_is_caught"],
);

pub static MOVE_SWAPCACHE_NO_RETARGET: Variant = Variant::new(
    "uffd_move:swapcache_no_retarget",
    "mm::uffd_move::move_swap",
    "a swap-cache folio moves without its anon_vma and index retargeted; the next fault's rmap check fails",
    "\"mm: fix kernel BUG when userfaultfd_move encounters swapcache\" (c50f8e6053b0, Feb 2025)",
    &["uffd::swapcache_move_without_retarget_is_caught"],
);

pub static MOVE_RMAP_BEFORE_PIN_CHECK: Variant = Variant::new(
    "uffd_move:rmap_before_pin_check",
    "mm::uffd_move::move_present_locked",
    "the folio's anon mapping changes before the DMA-pin check refuses the move",
    "\"userfaultfd: change src_folio after ensuring it's unpinned in UFFDIO_MOVE\" (Apr 2024)",
    &["uffd::rmap_change_before_pin_check_is_caught"],
);

pub static MOVE_NOTIFIER_UNDER_PTL: Variant = Variant::new(
    "uffd_move:notifier_under_ptl",
    "mm::uffd_move::move_present_locked",
    "the secondary-MMU notifier is called non-blocking under the pte lock",
    "UFFDIO_MOVE's invalidate_range_start placement (blocking, before any lock; move_pages)",
    &["uffd::notifier_under_ptl_is_caught"],
);

pub static MOVE_SWAP_NO_EXCLUSIVE_CHECK: Variant = Variant::new(
    "uffd_move:swap_no_exclusive_check",
    "mm::uffd_move::move_swap",
    "a swap pte moves without the exclusive check: a page shared after fork changes owner",
    "UFFDIO_MOVE's PTE_SWP_EXCLUSIVE check (move_swap_pte, adef440691ba)",
    &["uffd::swap_move_without_exclusive_check_is_caught"],
);

pub static MOVE_HUGE_ZERO_NOT_SPECIAL: Variant = Variant::new(
    "uffd_move:huge_zero_not_special",
    "mm::uffd_move::move_huge_block",
    "the huge zero page's PMD moves without its special bit: dst maps the shared zero folio as if it were its own THP",
    "the 2026 report of a moved huge-zero PMD turning into a corrupted, non-special PMD (move_pages_huge_pmd)",
    &["thp::move_of_the_huge_zero_pmd_without_special_is_caught"],
);

pub static SPLIT_TAILS_WITHOUT_MTE_TAGGED: Variant = Variant::new(
    "split:tails_without_mte_tagged",
    "mm::split::split_folio",
    "the tail folios keep the head's flags but not PG_mte_tagged: the next mapping clears the tags of every page but the first",
    "a large-folio split that copies the page flags but not the tag state of the tail pages (the PG_mte_tagged split handling)",
    &["thp::split_without_the_tails_tag_state_is_caught"],
);

pub static SWAPIN_MTHP_FAULTING_PAGE_TAGS_ONLY: Variant = Variant::new(
    "swapin:mthp_faulting_page_tags_only",
    "mm::swap::swapin_batch",
    "a large folio swapped in whole gets the tags of the faulting page only; the others come back untagged",
    "the large-folio swap-in series (2024): arch_swap_restore must cover every subpage, not the faulting one",
    &["thp::mthp_swapin_restoring_one_page_is_caught"],
);

pub static SWAPIN_MTHP_MASKED_ENTRY: Variant = Variant::new(
    "swapin:mthp_masked_entry",
    "mm::swap::swapin_mthp",
    "the first entry of a large swap-in is the faulting entry masked to the folio size: with slots not naturally aligned the folio is read from another page's slots",
    "the draft helper of the 2024 large-folio swap-in thread (thp_swap_suitable_orders requires natural alignment instead)",
    &["thp::mthp_swapin_from_a_masked_entry_is_caught"],
);

pub static MOVE_PMD_FOLIO_ON_MIGRATION_ENTRY: Variant = Variant::new(
    "uffd_move:pmd_folio_on_migration_entry",
    "mm::uffd_move::move_pages_huge_pmd",
    "a PMD migration entry in src is taken for a huge PMD and its pfn for a folio (pmd_folio) instead of waiting for the migration",
    "\"mm/huge_memory: fix dereferencing invalid pmd migration entry\" (aba6faec0103)",
    &["thp::move_taking_a_pmd_migration_entry_for_a_folio_is_caught"],
);

pub static COLLAPSE_NO_UFFD_WP_RECHECK: Variant = Variant::new(
    "collapse:no_uffd_wp_recheck",
    "mm::khugepaged::__collapse_huge_page_isolate",
    "round 2 does not recheck uffd-wp: a pte write-protected while the mmap lock was dropped is collapsed into a writable PMD and its protection is lost",
    "\"mm/khugepaged: check again on anon uffd-wp during isolation\" (dd47ac428c3f, v6.3-rc7)",
    &["collapse::the_uffd_wp_window_without_the_recheck_is_caught"],
);

pub static COLLAPSE_COPY_DATA_ONLY: Variant = Variant::new(
    "collapse:copy_data_only",
    "mm::khugepaged::__collapse_huge_page_copy",
    "the copy into the new THP moves the data but not the tags: after the collapse every tagged page has zero tags",
    "a __collapse_huge_page_copy with a copy that is not arm64's tag-copying copy_highpage (copy_mc_user_highpage)",
    &["collapse::a_collapse_copy_without_tags_is_caught"],
);

pub static COLLAPSE_NON_SWAP_AS_SWAP: Variant = Variant::new(
    "collapse:non_swap_as_swap",
    "mm::khugepaged::hpage_collapse_scan_pmd",
    "migration, hwpoison and marker entries count as swap ptes and are handed to do_swap_page by the swap-in step",
    "\"mm/khugepaged: abort collapse scan on non-swap entries\" (2025)",
    &["collapse::non_swap_entries_handed_to_do_swap_page_is_caught"],
);

pub static COLLAPSE_TABLE_NOT_RESTORED: Variant = Variant::new(
    "collapse:table_not_restored",
    "mm::khugepaged::collapse_huge_page",
    "when round 2 fails the detached page table is not put back: the range reads as empty and its pages are lost",
    "collapse_huge_page's pmd_populate on the isolate failure path",
    &["collapse::a_failed_collapse_that_loses_the_table_is_caught"],
);

pub static TLB_FLUSH_THIS_CPU_ONLY: Variant = Variant::new(
    "tlb:this_cpu_only",
    "mm::mmu_gather::scope (every user TLB invalidation)",
    "an invalidation stays on the CPU that issued it although the mm has run on others: they keep writing through a stale translation",
    "a local TLBI (tlbi vae1, dsb nsh) where the inner-shareable one is needed",
    &["mm::a_tlb_invalidation_kept_on_one_cpu_is_caught"],
);

pub static MMU_GATHER_FREE_BEFORE_FLUSH: Variant = Variant::new(
    "mmu_gather:free_before_flush",
    "mm::mmu_gather::MmuGather::flush",
    "the unmapped folios are freed before the batched TLB invalidation: another CPU still writes into a free frame",
    "tlb_flush_mmu's order (tlb_flush_mmu_tlbonly before tlb_batch_pages_flush)",
    &["mm::munmap_frees_the_page_only_after_the_tlb_flush"],
);

/// Every variant, for listing, resets and the caught check.
pub static ALL: &[&Variant] = &[
    &COW_DATA_ONLY,
    &SWAPIN_FREE_BEFORE_RESTORE,
    &SWAPIN_RESTORE_AFTER_SET_PTE,
    &SWAPIN_RESTORE_BEFORE_LOCK,
    &MOVE_SWAPCACHE_NO_RETARGET,
    &MOVE_RMAP_BEFORE_PIN_CHECK,
    &MOVE_NOTIFIER_UNDER_PTL,
    &MOVE_SWAP_NO_EXCLUSIVE_CHECK,
    &MOVE_HUGE_ZERO_NOT_SPECIAL,
    &SPLIT_TAILS_WITHOUT_MTE_TAGGED,
    &SWAPIN_MTHP_FAULTING_PAGE_TAGS_ONLY,
    &SWAPIN_MTHP_MASKED_ENTRY,
    &MOVE_PMD_FOLIO_ON_MIGRATION_ENTRY,
    &COLLAPSE_NO_UFFD_WP_RECHECK,
    &COLLAPSE_COPY_DATA_ONLY,
    &COLLAPSE_NON_SWAP_AS_SWAP,
    &COLLAPSE_TABLE_NOT_RESTORED,
    &TLB_FLUSH_THIS_CPU_ONLY,
    &MMU_GATHER_FREE_BEFORE_FLUSH,
];

/// Switches every variant off; the names of those that were on.
pub fn reset_all() -> alloc::vec::Vec<&'static str> {
    ALL.iter().filter(|v| v.on.swap(false, Ordering::AcqRel)).map(|v| v.name).collect()
}

/// After test `name` ended (`passed` or not): the variants it switched on
/// are caught if it is one of their catching tests and it passed.
pub fn note_result(name: &str, passed: bool) {
    for v in ALL {
        if v.used.swap(false, Ordering::AcqRel) && passed && v.caught_by.contains(&name) {
            v.caught.store(true, Ordering::Release);
        }
    }
}

/// Whether the variant was caught in this run.
pub fn caught(v: &Variant) -> bool {
    v.caught.load(Ordering::Acquire)
}
