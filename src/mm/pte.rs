//! Page-table entries with the arm64 encodings Linux uses (v6.10+ layout;
//! shared/spec/linux-mm-semantics.md section 6): present ptes with hardware
//! and software bits, present-invalid (PROT_NONE) ptes, swap ptes, the
//! non-swap entry types (migration, hwpoison, pte markers) and PMD blocks.
//!
//! Pure functions over values: host unit tests include this file.
//!
//! Deliberate differences from Linux:
//! - AttrIndx values are this kernel's MAIR order (0 Tagged Normal,
//!   1 Normal, 2 Device), not Linux's.
//! - No device-private/device-exclusive entries, and migration entries carry
//!   no young/dirty bits; soft-dirty is absent, as on arm64 Linux.

#![allow(non_camel_case_types)]
// The whole encoding is here and host-tested; the swap, uffd and collapse
// paths use the parts the fault path does not.
#![allow(dead_code)]

// --- bits of a valid or present-invalid pte -------------------------------
pub const PTE_VALID: u64 = 1 << 0;
/// Bit 1: page (level 3) or table (levels 0-2); clear in a block entry.
pub const PTE_TYPE_PAGE: u64 = 1 << 1;
pub const PTE_ATTRINDX_SHIFT: u32 = 2;
pub const PTE_ATTRINDX_MASK: u64 = 7 << PTE_ATTRINDX_SHIFT;
pub const PTE_USER: u64 = 1 << 6;
pub const PTE_RDONLY: u64 = 1 << 7;
/// Inner shareable.
pub const PTE_SHARED: u64 = 3 << 8;
pub const PTE_AF: u64 = 1 << 10;
pub const PTE_NG: u64 = 1 << 11;
/// Overlays nG when VALID is clear: the pte is present but not accessible.
pub const PTE_PRESENT_INVALID: u64 = PTE_NG;
/// DBM doubles as the software write bit.
pub const PTE_WRITE: u64 = 1 << 51;
pub const PTE_CONT: u64 = 1 << 52;
/// Guarded page (FEAT_BTI): indirect branches must land on BTI instructions.
pub const PTE_GP: u64 = 1 << 50;
pub const PTE_PXN: u64 = 1 << 53;
pub const PTE_UXN: u64 = 1 << 54;
pub const PTE_DIRTY: u64 = 1 << 55;
pub const PTE_SPECIAL: u64 = 1 << 56;
pub const PTE_UFFD_WP: u64 = 1 << 58;
/// Output address bits 47:12.
pub const PTE_ADDR_MASK: u64 = 0x0000_FFFF_FFFF_F000;
pub use crate::arch::pgtable_hwdef::{PAGE_SHIFT, PMD_SHIFT};

/// Memory types (AttrIndx) in this kernel's MAIR.
pub const MT_NORMAL_TAGGED: u64 = 0;
pub const MT_NORMAL: u64 = 1;
pub const MT_DEVICE: u64 = 2;

// --- bits of a swap pte ----------------------------------------------------
pub const PTE_SWP_EXCLUSIVE: u64 = 1 << 2;
pub const PTE_SWP_UFFD_WP: u64 = 1 << 3;
pub const SWP_TYPE_SHIFT: u32 = 6;
pub const SWP_TYPE_BITS: u32 = 5;
pub const SWP_OFFSET_SHIFT: u32 = 12;
pub const SWP_OFFSET_BITS: u32 = 50;
const SWP_TYPE_MASK: u64 = (1 << SWP_TYPE_BITS) - 1;
const SWP_OFFSET_MASK: u64 = (1 << SWP_OFFSET_BITS) - 1;

/// Swap types above MAX_SWAPFILES are not swap devices (swapops.h order,
/// without device-private entries).
pub const MAX_SWAPFILES: u8 = 27;
pub const SWP_MIGRATION_READ: u8 = 27;
pub const SWP_MIGRATION_READ_EXCLUSIVE: u8 = 28;
pub const SWP_MIGRATION_WRITE: u8 = 29;
pub const SWP_HWPOISON: u8 = 30;
pub const SWP_PTE_MARKER: u8 = 31;

pub const PTE_MARKER_UFFD_WP: u64 = 1 << 0;
pub const PTE_MARKER_POISONED: u64 = 1 << 1;
pub const PTE_MARKER_GUARD: u64 = 1 << 2;

/// A page protection: the attribute bits of a pte, without the address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct pgprot_t(pub u64);

/// A level-3 page-table entry.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
#[repr(transparent)]
pub struct pte_t(pub u64);

/// A swap entry: type and offset, as the core sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct swp_entry_t(pub u64);

impl core::fmt::Debug for pte_t {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "pte({:#018x})", self.0)
    }
}

const fn has(p: pte_t, bit: u64) -> bool {
    p.0 & bit != 0
}

const fn set(p: pte_t, bit: u64) -> pte_t {
    pte_t(p.0 | bit)
}

const fn clear(p: pte_t, bit: u64) -> pte_t {
    pte_t(p.0 & !bit)
}

// --- protections -----------------------------------------------------------

/// Bits every user pte has: page, accessed, inner-shareable, not global.
const PROT_DEFAULT: u64 = PTE_TYPE_PAGE | PTE_AF | PTE_SHARED | PTE_NG;

/// The protection for a VMA: readable, writable, executable, shared,
/// tagged. Like Linux, a private writable mapping starts read-only (COW),
/// and a mapping with no access is present-invalid (PROT_NONE).
pub const fn vm_get_page_prot(read: bool, write: bool, exec: bool, shared: bool, tagged: bool) -> pgprot_t {
    let attr = (if tagged { MT_NORMAL_TAGGED } else { MT_NORMAL }) << PTE_ATTRINDX_SHIFT;
    if !read && !write && !exec {
        return pgprot_t(PROT_DEFAULT | attr | PTE_PRESENT_INVALID | PTE_RDONLY | PTE_PXN | PTE_UXN);
    }
    let mut p = PROT_DEFAULT | attr | PTE_VALID | PTE_USER | PTE_PXN;
    if !exec {
        p |= PTE_UXN;
    }
    if write && shared {
        p |= PTE_WRITE;
    } else {
        p |= PTE_RDONLY;
    }
    pgprot_t(p)
}

// --- present ptes -----------------------------------------------------------

pub const fn pfn_pte(pfn: u64, prot: pgprot_t) -> pte_t {
    pte_t(((pfn << PAGE_SHIFT) & PTE_ADDR_MASK) | prot.0)
}

pub const fn pte_pfn(p: pte_t) -> u64 {
    (p.0 & PTE_ADDR_MASK) >> PAGE_SHIFT
}

pub const fn pte_none(p: pte_t) -> bool {
    p.0 == 0
}

pub const fn pte_valid(p: pte_t) -> bool {
    has(p, PTE_VALID)
}

/// Valid, or present-invalid (PROT_NONE, NUMA hinting).
pub const fn pte_present(p: pte_t) -> bool {
    has(p, PTE_VALID) || (p.0 & (PTE_PRESENT_INVALID | PTE_VALID)) == PTE_PRESENT_INVALID
}

pub const fn pte_protnone(p: pte_t) -> bool {
    !has(p, PTE_VALID) && has(p, PTE_PRESENT_INVALID) && !has(p, PTE_USER) && has(p, PTE_UXN)
}

pub const fn pte_write(p: pte_t) -> bool {
    has(p, PTE_WRITE)
}

pub const fn pte_rdonly(p: pte_t) -> bool {
    has(p, PTE_RDONLY)
}

pub const fn pte_user(p: pte_t) -> bool {
    has(p, PTE_USER)
}

pub const fn pte_young(p: pte_t) -> bool {
    has(p, PTE_AF)
}

pub const fn pte_special(p: pte_t) -> bool {
    has(p, PTE_SPECIAL)
}

pub const fn pte_uffd_wp(p: pte_t) -> bool {
    has(p, PTE_UFFD_WP)
}

/// Hardware-dirty: writable and not read-only.
pub const fn pte_hw_dirty(p: pte_t) -> bool {
    has(p, PTE_WRITE) && !has(p, PTE_RDONLY)
}

pub const fn pte_dirty(p: pte_t) -> bool {
    has(p, PTE_DIRTY) || pte_hw_dirty(p)
}

pub const fn pte_tagged(p: pte_t) -> bool {
    (p.0 & PTE_ATTRINDX_MASK) >> PTE_ATTRINDX_SHIFT == MT_NORMAL_TAGGED
}

pub const fn pte_mkyoung(p: pte_t) -> pte_t {
    set(p, PTE_AF)
}

pub const fn pte_mkold(p: pte_t) -> pte_t {
    clear(p, PTE_AF)
}

pub const fn pte_mkspecial(p: pte_t) -> pte_t {
    set(p, PTE_SPECIAL)
}

/// Sets the software dirty bit and, if writable, makes it hardware-writable.
pub const fn pte_mkdirty(p: pte_t) -> pte_t {
    let p = set(p, PTE_DIRTY);
    if pte_write(p) {
        clear(p, PTE_RDONLY)
    } else {
        p
    }
}

/// Clears both dirty states; a writable pte becomes read-only in hardware
/// so the next write is seen.
pub const fn pte_mkclean(p: pte_t) -> pte_t {
    set(clear(p, PTE_DIRTY), PTE_RDONLY)
}

/// Writable; hardware-writable only if already dirty.
pub const fn pte_mkwrite(p: pte_t) -> pte_t {
    let p = set(p, PTE_WRITE);
    if has(p, PTE_DIRTY) {
        clear(p, PTE_RDONLY)
    } else {
        p
    }
}

/// Read-only: moves hardware-dirty into the software dirty bit first.
pub const fn pte_wrprotect(p: pte_t) -> pte_t {
    let p = if pte_hw_dirty(p) { set(p, PTE_DIRTY) } else { p };
    set(clear(p, PTE_WRITE), PTE_RDONLY)
}

/// uffd-wp also write-protects.
pub const fn pte_mkuffd_wp(p: pte_t) -> pte_t {
    set(pte_wrprotect(p), PTE_UFFD_WP)
}

pub const fn pte_clear_uffd_wp(p: pte_t) -> pte_t {
    clear(p, PTE_UFFD_WP)
}

/// Keeps the address and the software state, takes the rest from `prot`.
pub const fn pte_modify(p: pte_t, prot: pgprot_t) -> pte_t {
    const KEEP: u64 = PTE_ADDR_MASK | PTE_DIRTY | PTE_SPECIAL | PTE_UFFD_WP | PTE_AF;
    let dirty = pte_hw_dirty(p);
    let mut n = pte_t((p.0 & KEEP) | (prot.0 & !KEEP) | (prot.0 & PTE_AF));
    if dirty {
        n = set(n, PTE_DIRTY);
    }
    if pte_write(n) && has(n, PTE_DIRTY) {
        n = clear(n, PTE_RDONLY);
    }
    n
}

// --- swap ptes and entries --------------------------------------------------

/// Neither none nor present: a swap pte or one of the non-swap entries.
pub const fn is_swap_pte(p: pte_t) -> bool {
    !pte_none(p) && !pte_present(p)
}

pub const fn swp_entry(ty: u8, offset: u64) -> swp_entry_t {
    swp_entry_t(((ty as u64 & SWP_TYPE_MASK) << SWP_TYPE_SHIFT) | ((offset & SWP_OFFSET_MASK) << SWP_OFFSET_SHIFT))
}

pub const fn swp_type(e: swp_entry_t) -> u8 {
    ((e.0 >> SWP_TYPE_SHIFT) & SWP_TYPE_MASK) as u8
}

pub const fn swp_offset(e: swp_entry_t) -> u64 {
    (e.0 >> SWP_OFFSET_SHIFT) & SWP_OFFSET_MASK
}

/// The entry `i` slots after `e` on the same device: page `i` of a large
/// folio whose first page is in `e` (a folio's slots are contiguous).
pub const fn swp_entry_nth(e: swp_entry_t, i: u64) -> swp_entry_t {
    swp_entry(swp_type(e), swp_offset(e) + i)
}

/// The swap entry a swap pte holds, without the pte-only flags.
pub const fn pte_to_swp_entry(p: pte_t) -> swp_entry_t {
    swp_entry_t(p.0 & !(PTE_SWP_EXCLUSIVE | PTE_SWP_UFFD_WP))
}

pub const fn swp_entry_to_pte(e: swp_entry_t) -> pte_t {
    pte_t(e.0)
}

pub const fn pte_swp_mkexclusive(p: pte_t) -> pte_t {
    set(p, PTE_SWP_EXCLUSIVE)
}

pub const fn pte_swp_exclusive(p: pte_t) -> bool {
    has(p, PTE_SWP_EXCLUSIVE)
}

pub const fn pte_swp_clear_exclusive(p: pte_t) -> pte_t {
    clear(p, PTE_SWP_EXCLUSIVE)
}

pub const fn pte_swp_mkuffd_wp(p: pte_t) -> pte_t {
    set(p, PTE_SWP_UFFD_WP)
}

pub const fn pte_swp_uffd_wp(p: pte_t) -> bool {
    has(p, PTE_SWP_UFFD_WP)
}

pub const fn pte_swp_clear_uffd_wp(p: pte_t) -> pte_t {
    clear(p, PTE_SWP_UFFD_WP)
}

/// pte_swp_uffd_wp_any: a swap pte with uffd-wp, or a uffd-wp marker.
pub const fn pte_swp_uffd_wp_any(p: pte_t) -> bool {
    (is_swap_pte(p) && pte_swp_uffd_wp(p)) || pte_marker_uffd_wp(p)
}

/// A real swap device entry (not migration, hwpoison or a marker).
pub const fn non_swap_entry(e: swp_entry_t) -> bool {
    swp_type(e) >= MAX_SWAPFILES
}

pub const fn make_migration_entry(pfn: u64, write: bool, exclusive: bool) -> swp_entry_t {
    let ty = if write {
        SWP_MIGRATION_WRITE
    } else if exclusive {
        SWP_MIGRATION_READ_EXCLUSIVE
    } else {
        SWP_MIGRATION_READ
    };
    swp_entry(ty, pfn)
}

pub const fn is_migration_entry(e: swp_entry_t) -> bool {
    matches!(swp_type(e), SWP_MIGRATION_READ | SWP_MIGRATION_READ_EXCLUSIVE | SWP_MIGRATION_WRITE)
}

pub const fn is_writable_migration_entry(e: swp_entry_t) -> bool {
    swp_type(e) == SWP_MIGRATION_WRITE
}

pub const fn is_readable_exclusive_migration_entry(e: swp_entry_t) -> bool {
    swp_type(e) == SWP_MIGRATION_READ_EXCLUSIVE
}

pub const fn make_hwpoison_entry(pfn: u64) -> swp_entry_t {
    swp_entry(SWP_HWPOISON, pfn)
}

pub const fn is_hwpoison_entry(e: swp_entry_t) -> bool {
    swp_type(e) == SWP_HWPOISON
}

/// The pfn held by a migration or hwpoison entry.
pub const fn swp_offset_pfn(e: swp_entry_t) -> u64 {
    swp_offset(e)
}

pub const fn make_pte_marker_entry(marker: u64) -> swp_entry_t {
    swp_entry(SWP_PTE_MARKER, marker)
}

pub const fn is_pte_marker_entry(e: swp_entry_t) -> bool {
    swp_type(e) == SWP_PTE_MARKER
}

pub const fn pte_marker_get(e: swp_entry_t) -> u64 {
    swp_offset(e)
}

pub const fn make_pte_marker(marker: u64) -> pte_t {
    swp_entry_to_pte(make_pte_marker_entry(marker))
}

pub const fn is_pte_marker(p: pte_t) -> bool {
    is_swap_pte(p) && is_pte_marker_entry(pte_to_swp_entry(p))
}

pub const fn pte_marker_uffd_wp(p: pte_t) -> bool {
    is_pte_marker(p) && pte_marker_get(pte_to_swp_entry(p)) & PTE_MARKER_UFFD_WP != 0
}

// --- PMD entries --------------------------------------------------------------

/// A level-2 entry: a table pointer or a 2 MiB block.
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
#[repr(transparent)]
pub struct pmd_t(pub u64);

pub const HPAGE_PMD_NR: u64 = 1 << (PMD_SHIFT - PAGE_SHIFT);

/// Arm64 Linux implements pmd helpers through the pte ones.
pub const fn pmd_pte(p: pmd_t) -> pte_t {
    pte_t(p.0)
}

pub const fn pte_pmd(p: pte_t) -> pmd_t {
    pmd_t(p.0)
}

/// A 2 MiB block mapping of `pfn` (which must be 512-aligned).
pub const fn pfn_pmd(pfn: u64, prot: pgprot_t) -> pmd_t {
    pmd_t(((pfn << PAGE_SHIFT) & PTE_ADDR_MASK) | (prot.0 & !PTE_TYPE_PAGE))
}

pub const fn pmd_table(p: pmd_t) -> bool {
    p.0 & (PTE_VALID | PTE_TYPE_PAGE) == (PTE_VALID | PTE_TYPE_PAGE)
}

/// A valid or present-invalid block (a transparent huge page mapping).
pub const fn pmd_trans_huge(p: pmd_t) -> bool {
    pte_present(pmd_pte(p)) && p.0 & PTE_TYPE_PAGE == 0
}

/// A PMD migration entry (a THP being migrated): not present, a swap-format
/// migration entry in the PMD.
pub const fn is_pmd_migration_entry(p: pmd_t) -> bool {
    is_swap_pte(pmd_pte(p)) && is_migration_entry(pte_to_swp_entry(pmd_pte(p)))
}

pub const fn pmd_none(p: pmd_t) -> bool {
    p.0 == 0
}

pub const fn pmd_present(p: pmd_t) -> bool {
    pte_present(pmd_pte(p))
}

pub const fn pmd_pfn(p: pmd_t) -> u64 {
    pte_pfn(pmd_pte(p))
}

pub const fn pmd_mkinvalid(p: pmd_t) -> pmd_t {
    pmd_t((p.0 & !PTE_VALID) | PTE_PRESENT_INVALID)
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    const PAGE_RW_SHARED_TAGGED: pgprot_t = vm_get_page_prot(true, true, false, true, true);
    const PAGE_RO: pgprot_t = vm_get_page_prot(true, false, false, false, false);
    const PAGE_NONE: pgprot_t = vm_get_page_prot(false, false, false, false, true);

    #[test]
    fn present_pte_round_trips_pfn_and_bits() {
        for pfn in [0u64, 1, 0x40000, (1 << 36) - 1] {
            let p = pfn_pte(pfn, PAGE_RW_SHARED_TAGGED);
            assert_eq!(pte_pfn(p), pfn);
            assert!(pte_present(p) && pte_valid(p) && pte_user(p) && pte_write(p) && pte_tagged(p));
            assert!(!is_swap_pte(p));
            assert_eq!(p.0 & 0xFFF0_0000_0000_0000 & !(PTE_PXN | PTE_UXN | PTE_WRITE | PTE_CONT), 0, "stray high bits");
        }
        assert!(!pte_tagged(pfn_pte(5, PAGE_RO)));
    }

    #[test]
    fn private_writable_starts_read_only_and_shared_is_writable() {
        let private = vm_get_page_prot(true, true, false, false, false);
        assert_eq!(private.0 & (PTE_WRITE | PTE_RDONLY), PTE_RDONLY);
        assert_eq!(PAGE_RW_SHARED_TAGGED.0 & PTE_RDONLY, 0);
        assert!(vm_get_page_prot(true, false, true, false, false).0 & PTE_UXN == 0);
        const { assert!(PAGE_RO.0 & PTE_UXN != 0 && PAGE_RO.0 & PTE_PXN != 0) };
    }

    #[test]
    fn prot_none_is_present_invalid() {
        let p = pfn_pte(0x1234, PAGE_NONE);
        assert!(!pte_valid(p));
        assert!(pte_present(p));
        assert!(pte_protnone(p));
        assert!(!is_swap_pte(p));
        assert_eq!(pte_pfn(p), 0x1234);
    }

    #[test]
    fn dirty_write_and_wrprotect() {
        let p = pfn_pte(7, vm_get_page_prot(true, true, false, false, false));
        assert!(!pte_write(p) && !pte_dirty(p));
        let w = pte_mkwrite(p);
        assert!(pte_write(w) && pte_rdonly(w), "clean writable pte stays read-only in hardware");
        let d = pte_mkdirty(w);
        assert!(pte_dirty(d) && pte_hw_dirty(d) && !pte_rdonly(d));
        let r = pte_wrprotect(clear(d, PTE_DIRTY));
        assert!(!pte_write(r) && pte_rdonly(r) && pte_dirty(r), "hardware dirty moves to the sw bit");
        let c = pte_mkclean(d);
        assert!(!pte_dirty(c) && pte_rdonly(c) && pte_write(c));
    }

    #[test]
    fn uffd_wp_write_protects() {
        let p = pte_mkdirty(pte_mkwrite(pfn_pte(9, PAGE_RW_SHARED_TAGGED)));
        let w = pte_mkuffd_wp(p);
        assert!(pte_uffd_wp(w) && !pte_write(w) && pte_rdonly(w) && pte_dirty(w));
        assert!(!pte_uffd_wp(pte_clear_uffd_wp(w)));
        assert_eq!(PTE_UFFD_WP, 1 << 58);
    }

    #[test]
    fn pte_modify_keeps_address_dirty_and_uffd_wp() {
        let p = pte_mkuffd_wp(pte_mkdirty(pte_mkwrite(pfn_pte(0x42, PAGE_RW_SHARED_TAGGED))));
        let n = pte_modify(p, PAGE_NONE);
        assert!(pte_protnone(n) && pte_pfn(n) == 0x42 && pte_dirty(n) && pte_uffd_wp(n));
        let back = pte_modify(n, PAGE_RW_SHARED_TAGGED);
        assert!(pte_valid(back) && pte_write(back) && pte_tagged(back) && pte_pfn(back) == 0x42);
    }

    #[test]
    fn swap_entries_every_type_and_edge_offsets() {
        for ty in 0..32u8 {
            for off in [0u64, 1, 0xFFFF, SWP_OFFSET_MASK - 1, SWP_OFFSET_MASK] {
                let e = swp_entry(ty, off);
                assert_eq!(swp_type(e), ty);
                assert_eq!(swp_offset(e), off);
                let p = swp_entry_to_pte(e);
                assert_eq!(p.0 & 0b11, 0, "bits 0-1 must be zero in a swap pte");
                assert_eq!(p.0 & PTE_PRESENT_INVALID, 0, "bit 11 must be zero in a swap pte");
                assert_eq!(p.0 & (0b11 << 4), 0, "bits 4-5 are unused");
                assert_eq!(p.0 >> 62, 0, "bits 62-63 are outside the offset");
                assert!(!pte_present(p), "pte_present must be false for swap pte {p:?}");
                if ty != 0 || off != 0 {
                    assert!(is_swap_pte(p));
                }
                for flags in [0, PTE_SWP_EXCLUSIVE, PTE_SWP_UFFD_WP, PTE_SWP_EXCLUSIVE | PTE_SWP_UFFD_WP] {
                    let q = pte_t(p.0 | flags);
                    assert!(!pte_present(q));
                    assert_eq!(pte_to_swp_entry(q), e, "flags must not leak into the entry");
                    assert_eq!(pte_swp_exclusive(q), flags & PTE_SWP_EXCLUSIVE != 0);
                    assert_eq!(pte_swp_uffd_wp(q), flags & PTE_SWP_UFFD_WP != 0);
                }
            }
        }
    }

    /// Linux's arm64 layout written out as literal values (shared/spec 6.2),
    /// not derived from this file's own shifts and masks, so a consistent
    /// but wrong layout fails here.
    #[test]
    fn swap_pte_layout_is_linux_arm64_literally() {
        assert_eq!(swp_entry_to_pte(swp_entry(0, 1)).0, 0x1000, "(type 0, offset 1): offset starts at bit 12");
        assert_eq!(swp_entry_to_pte(swp_entry(1, 0)).0, 0x40, "(type 1, offset 0): type starts at bit 6");
        assert_eq!(swp_entry_to_pte(swp_entry(31, 0)).0, 0x7c0, "type 31 fills bits 6-10");
        assert_eq!(swp_entry_to_pte(swp_entry(3, 0x1234)).0, 0x0123_40c0);
        assert_eq!(
            swp_entry_to_pte(swp_entry(0, (1 << 50) - 1)).0,
            0x3fff_ffff_ffff_f000,
            "the largest offset fills bits 12-61"
        );
        assert_eq!(swp_entry_to_pte(swp_entry(31, (1 << 50) - 1)).0, 0x3fff_ffff_ffff_f7c0);
        assert_eq!(PTE_SWP_EXCLUSIVE, 0x4, "exclusive is bit 2");
        assert_eq!(PTE_SWP_UFFD_WP, 0x8, "uffd-wp is bit 3");
        assert_eq!(pte_swp_mkexclusive(pte_swp_mkuffd_wp(swp_entry_to_pte(swp_entry(0, 1)))).0, 0x100c);
        assert_eq!(pte_to_swp_entry(pte_t(0x0123_40cc)), swp_entry(3, 0x1234), "bits 2 and 3 are not the entry");
        assert_eq!((swp_type(swp_entry_t(0x7c0)), swp_offset(swp_entry_t(0x7c0))), (31, 0));
        assert_eq!((swp_type(swp_entry_t(0x5000)), swp_offset(swp_entry_t(0x5000))), (0, 5));
        // The marker type is the top one in every Linux configuration (the
        // others depend on CONFIG_DEVICE_PRIVATE and are not pinned here).
        assert_eq!(swp_entry_to_pte(swp_entry(SWP_PTE_MARKER, 0)).0, 0x7c0);
    }

    #[test]
    fn swap_offset_too_large_is_truncated_not_spilled() {
        let e = swp_entry(3, u64::MAX);
        assert_eq!(swp_type(e), 3);
        assert_eq!(swp_offset(e), SWP_OFFSET_MASK);
    }

    #[test]
    fn exclusive_and_uffd_wp_bits_set_and_clear() {
        let p = swp_entry_to_pte(swp_entry(1, 77));
        let x = pte_swp_mkexclusive(pte_swp_mkuffd_wp(p));
        assert!(pte_swp_exclusive(x) && pte_swp_uffd_wp(x));
        assert_eq!(x.0, p.0 | (1 << 2) | (1 << 3));
        assert!(!pte_swp_exclusive(pte_swp_clear_exclusive(x)));
        assert!(!pte_swp_uffd_wp(pte_swp_clear_uffd_wp(x)));
    }

    #[test]
    fn migration_entries() {
        let pfn = 0x4_0123;
        let r = make_migration_entry(pfn, false, false);
        let rx = make_migration_entry(pfn, false, true);
        let w = make_migration_entry(pfn, true, false);
        for e in [r, rx, w] {
            assert!(is_migration_entry(e) && non_swap_entry(e));
            assert_eq!(swp_offset_pfn(e), pfn);
            assert!(!pte_present(swp_entry_to_pte(e)));
            assert!(!is_hwpoison_entry(e) && !is_pte_marker_entry(e));
        }
        assert!(is_writable_migration_entry(w) && !is_writable_migration_entry(r));
        assert!(is_readable_exclusive_migration_entry(rx) && !is_readable_exclusive_migration_entry(r));
        assert!(!is_migration_entry(swp_entry(0, 5)) && !non_swap_entry(swp_entry(MAX_SWAPFILES - 1, 5)));
    }

    #[test]
    fn hwpoison_and_markers() {
        let h = make_hwpoison_entry(0x99);
        assert!(is_hwpoison_entry(h) && swp_offset_pfn(h) == 0x99 && !is_migration_entry(h));
        let m = make_pte_marker(PTE_MARKER_UFFD_WP);
        assert!(is_pte_marker(m) && pte_marker_uffd_wp(m) && !pte_present(m));
        let pm = make_pte_marker(PTE_MARKER_POISONED);
        assert!(is_pte_marker(pm) && !pte_marker_uffd_wp(pm));
        assert_eq!(pte_marker_get(pte_to_swp_entry(pm)), PTE_MARKER_POISONED);
        assert!(!is_pte_marker(pfn_pte(1, PAGE_RO)));
        assert!(!is_pte_marker(swp_entry_to_pte(swp_entry(2, 1))));
        assert_eq!(PTE_MARKER_GUARD, 4);
    }

    #[test]
    fn pmd_blocks() {
        let pfn = 0x40200;
        let b = pfn_pmd(pfn, PAGE_RW_SHARED_TAGGED);
        assert!(pmd_trans_huge(b) && pmd_present(b) && !pmd_table(b));
        assert_eq!(pmd_pfn(b), pfn);
        assert_eq!(b.0 & PTE_TYPE_PAGE, 0, "a block has bit 1 clear");
        let inv = pmd_mkinvalid(b);
        assert!(pmd_present(inv) && pmd_trans_huge(inv) && !pte_valid(pmd_pte(inv)));
        let t = pmd_t(0x4000_1000 | PTE_VALID | PTE_TYPE_PAGE);
        assert!(pmd_table(t) && !pmd_trans_huge(t));
        assert_eq!(HPAGE_PMD_NR, 512);
        let swp = pte_pmd(pte_swp_mkuffd_wp(swp_entry_to_pte(swp_entry(2, 1000))));
        assert!(!pmd_present(swp) && pte_swp_uffd_wp(pmd_pte(swp)));
    }
}
