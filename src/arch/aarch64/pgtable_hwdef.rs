//! The translation geometry (Linux's asm/pgtable-hwdef.h and page-def.h):
//! a 4 KiB granule, 512 entries per table, 2 MiB per level-2 block. The
//! one definition of each; pure constants, so the host tests include it.

pub const PAGE_SHIFT: u32 = 12;
pub const PAGE_SIZE: usize = 1 << PAGE_SHIFT;
/// Clears the offset within a page: `addr & PAGE_MASK`.
pub const PAGE_MASK: usize = !(PAGE_SIZE - 1);
pub const PTRS_PER_PTE: usize = 1 << (PAGE_SHIFT - 3);
pub const PMD_SHIFT: u32 = PAGE_SHIFT + (PAGE_SHIFT - 3);
pub const PMD_SIZE: usize = 1 << PMD_SHIFT;
pub const PMD_MASK: usize = !(PMD_SIZE - 1);

/// `x` rounded up to a page (Linux's PAGE_ALIGN); None past the top.
pub const fn page_align(x: u64) -> Option<u64> {
    match x.checked_add(PAGE_SIZE as u64 - 1) {
        Some(v) => Some(v & PAGE_MASK as u64),
        None => None,
    }
}

pub const fn page_aligned(x: u64) -> bool {
    x & !(PAGE_MASK as u64) == 0
}
