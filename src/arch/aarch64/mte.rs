//! Memory Tagging Extension: tag-check modes and a small API over the tag
//! instructions (IRG, ADDG, GMI, STG, ST2G, STZG, LDG, LDGM, STGM, STZGM,
//! DC GZVA).
//!
//! Tags belong to 16-byte granules of physical memory mapped Tagged Normal.
//! Kernel pointers carry tag 0xF, which TCR_EL1.TCMA1 makes match-all, so the
//! kernel's own accesses are never checked; tests check by building pointers
//! with other tags (`with_tag`) and accessing through `trap::probe_*`.

use super::mmu::PAGE_SIZE;
use super::sysreg::{
    GCR_EL1, GCR_EL1 as GCR, GMID_EL1, GMID_EL1 as GMID, RGSR_EL1, RGSR_EL1 as RGSR, SCTLR_EL1_MTE, SCTLR_MTE,
    TCR_EL1_MTE, TCR_MTE, TFSR, TFSRE0_EL1, TFSR_EL1,
};
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};

pub const GRANULE: usize = 16;
/// Bytes needed for the tags of one 4 KiB page (4 bits per granule).
pub const PAGE_TAG_BYTES: usize = PAGE_SIZE / GRANULE / 2;

/// Tag-check fault modes (SCTLR_EL1.TCF / TCF0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum TcfMode {
    None,
    Sync,
    Async,
    /// Loads synchronous, stores asynchronous (FEAT_MTE3).
    Asymm,
}

/// ID_AA64PFR1_EL1.MTE: 0 none, 1 instructions only, 2 full MTE, 3 MTE3.
pub fn version() -> u64 {
    use aarch64_cpu::registers::{Readable, ID_AA64PFR1_EL1};
    ID_AA64PFR1_EL1.read(ID_AA64PFR1_EL1::MTE)
}

/// Sets up this CPU's tag generation: IRG excludes the tags in
/// `exclude` (bit n: tag n) and starts from a fixed seed, so runs repeat.
pub fn init_cpu(exclude: u16, seed: u16) {
    GCR_EL1.write(GCR::Exclude.val(exclude as u64) + GCR::RRND::CLEAR);
    RGSR_EL1.write(RGSR::SEED.val(seed as u64) + RGSR::TAG.val(0));
    clear_async_faults();
}

pub fn exclude() -> u16 {
    GCR_EL1.read(GCR::Exclude) as u16
}

pub fn set_exclude(exclude: u16) {
    if GCR_EL1.read(GCR::Exclude) != exclude as u64 {
        GCR_EL1.modify(GCR::Exclude.val(exclude as u64));
    }
}

fn tcf_field(mode: TcfMode) -> u64 {
    match mode {
        TcfMode::None => 0,
        TcfMode::Sync => 1,
        TcfMode::Async => 2,
        TcfMode::Asymm => 3,
    }
}

fn tcf_from(v: u64) -> TcfMode {
    match v {
        0 => TcfMode::None,
        1 => TcfMode::Sync,
        2 => TcfMode::Async,
        _ => TcfMode::Asymm,
    }
}

/// Sets the tag-check mode for EL1 accesses on this CPU.
// Each setter writes only a changed value: a write of SCTLR_EL1 or TCR_EL1
// may be cached in the TLB, so QEMU flushes this CPU's whole TLB on every
// write of SCTLR_EL1 (and the TCR setters below flush on every CPU), which
// made each EL0 entry cost two full flushes.
pub fn set_tcf(mode: TcfMode) {
    if SCTLR_EL1_MTE.read(SCTLR_MTE::TCF) != tcf_field(mode) {
        SCTLR_EL1_MTE.modify(SCTLR_MTE::TCF.val(tcf_field(mode)));
    }
}

/// Sets the tag-check mode for EL0 accesses on this CPU.
pub fn set_tcf0(mode: TcfMode) {
    if SCTLR_EL1_MTE.read(SCTLR_MTE::TCF0) != tcf_field(mode) {
        SCTLR_EL1_MTE.modify(SCTLR_MTE::TCF0.val(tcf_field(mode)));
    }
}

pub fn tcf() -> TcfMode {
    tcf_from(SCTLR_EL1_MTE.read(SCTLR_MTE::TCF))
}

pub fn tcf0() -> TcfMode {
    tcf_from(SCTLR_EL1_MTE.read(SCTLR_MTE::TCF0))
}

/// Turns the match-all tag on or off for the TTBR0 (TCMA0) half.
pub fn set_tcma0(on: bool) {
    if TCR_EL1_MTE.read(TCR_MTE::TCMA0) != on as u64 {
        TCR_EL1_MTE.modify(TCR_MTE::TCMA0.val(on as u64));
        super::mmu::tlb::flush_all(); // TCR fields may be cached in the TLB
    }
}

/// Turns the match-all tag on or off for the TTBR1 (TCMA1) half. Off means
/// every kernel access is checked against tag 0xF: only for short tests.
pub fn set_tcma1(on: bool) {
    if TCR_EL1_MTE.read(TCR_MTE::TCMA1) != on as u64 {
        TCR_EL1_MTE.modify(TCR_MTE::TCMA1.val(on as u64));
        super::mmu::tlb::flush_all();
    }
}

/// Asynchronous tag-check faults recorded since the last clear.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AsyncFaults {
    /// EL1 access below / above VA[55] (TFSR_EL1.TF0 / TF1).
    pub el1_low: bool,
    pub el1_high: bool,
    /// EL0 access (TFSRE0_EL1.TF0 | TF1).
    pub el0: bool,
}

impl AsyncFaults {
    pub fn any(&self) -> bool {
        self.el1_low || self.el1_high || self.el0
    }
}

/// Reads the asynchronous fault flags, after a DSB so that every earlier
/// access has been checked.
pub fn async_faults() -> AsyncFaults {
    // SAFETY: a barrier only orders memory accesses.
    unsafe { core::arch::asm!("dsb sy", "isb", options(nostack)) };
    AsyncFaults {
        el1_low: TFSR_EL1.is_set(TFSR::TF0),
        el1_high: TFSR_EL1.is_set(TFSR::TF1),
        el0: TFSRE0_EL1.is_set(TFSR::TF0) || TFSRE0_EL1.is_set(TFSR::TF1),
    }
}

pub fn clear_async_faults() {
    // SAFETY: a barrier only orders memory accesses.
    unsafe { core::arch::asm!("dsb sy", "isb", options(nostack)) };
    TFSR_EL1.set(0);
    TFSRE0_EL1.set(0);
}

/// Bytes covered by one LDGM/STGM (GMID_EL1.BS is log2 of words).
pub fn gm_block_size() -> usize {
    4 << GMID_EL1.read(GMID::BS)
}

/// Bytes covered by one DC ZVA / DC GZVA / STZGM (DCZID_EL0.BS).
pub fn zva_block_size() -> usize {
    let v: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { core::arch::asm!("mrs {}, dczid_el0", out(reg) v, options(nomem, nostack)) };
    4 << (v & 0xF)
}

// --- pointers: no memory access --------------------------------------------

/// `addr` with its logical tag (bits 59:56) set to `tag`.
pub const fn with_tag(addr: usize, tag: u8) -> usize {
    (addr & !(0xF << 56)) | (((tag & 0xF) as usize) << 56)
}

/// The logical tag of a pointer.
pub const fn ptr_tag(addr: usize) -> u8 {
    ((addr >> 56) & 0xF) as u8
}

/// IRG: `addr` with a random tag not in `exclude` (nor in GCR_EL1.Exclude).
pub fn irg(addr: usize, exclude: u16) -> usize {
    let out: usize;
    // SAFETY: IRG computes a pointer; it accesses no memory.
    unsafe {
        core::arch::asm!("irg {}, {}, {}", out(reg) out, in(reg) addr, in(reg) exclude as u64, options(nomem, nostack))
    };
    out
}

/// ADDG: `addr + OFFSET` with the tag advanced by `TAG_OFFSET` (skipping
/// excluded tags).
pub fn addg<const OFFSET: u16, const TAG_OFFSET: u8>(addr: usize) -> usize {
    let out: usize;
    // SAFETY: ADDG computes a pointer; it accesses no memory.
    unsafe {
        core::arch::asm!("addg {}, {}, #{off}, #{tag}", out(reg) out, in(reg) addr,
            off = const OFFSET, tag = const TAG_OFFSET, options(nomem, nostack))
    };
    out
}

/// GMI: `exclude` with the tag of `addr` added.
pub fn gmi(addr: usize, exclude: u16) -> u16 {
    let out: u64;
    // SAFETY: GMI is arithmetic only.
    unsafe {
        core::arch::asm!("gmi {}, {}, {}", out(reg) out, in(reg) addr, in(reg) exclude as u64, options(nomem, nostack))
    };
    out as u16
}

// --- tag memory ------------------------------------------------------------

/// The bytes of a 4 KiB frame of tagged memory owned by the caller (not
/// the mm's `struct page`, which is `mm::folio::Page`). The tag operations
/// take `&mut self` because they change what accesses through tagged
/// pointers may do.
#[repr(C, align(4096))]
pub struct PageData(pub [u8; PAGE_SIZE]);

impl PageData {
    pub fn addr(&self) -> usize {
        self as *const PageData as usize
    }

    /// The address of granule `g` carrying `tag`.
    pub fn granule_ptr(&self, g: usize, tag: u8) -> usize {
        assert!(g < PAGE_SIZE / GRANULE, "granule {g} outside the page");
        with_tag(self.addr() + g * GRANULE, tag)
    }

    /// STG: sets the tag of granule `g`.
    pub fn stg(&mut self, g: usize, tag: u8) {
        let p = self.granule_ptr(g, tag);
        // SAFETY: p is inside this page, which we own mutably.
        unsafe { core::arch::asm!("stg {p}, [{p}]", p = in(reg) p, options(nostack)) };
    }

    /// ST2G: sets the tags of granules `g` and `g + 1`.
    pub fn st2g(&mut self, g: usize, tag: u8) {
        assert!(g + 1 < PAGE_SIZE / GRANULE);
        let p = self.granule_ptr(g, tag);
        // SAFETY: both granules are inside this page.
        unsafe { core::arch::asm!("st2g {p}, [{p}]", p = in(reg) p, options(nostack)) };
    }

    /// STZG: sets the tag of granule `g` and zeroes its data.
    pub fn stzg(&mut self, g: usize, tag: u8) {
        let p = self.granule_ptr(g, tag);
        // SAFETY: the granule is inside this page.
        unsafe { core::arch::asm!("stzg {p}, [{p}]", p = in(reg) p, options(nostack)) };
    }

    /// LDG: the tag of granule `g`.
    pub fn ldg(&self, g: usize) -> u8 {
        let mut p = self.granule_ptr(g, 0);
        // SAFETY: reads the tag of a granule inside this page.
        unsafe { core::arch::asm!("ldg {p}, [{p}]", p = inout(reg) p, options(nostack, readonly)) };
        ptr_tag(p)
    }

    /// Sets every granule's tag to `tag` (STG loop).
    pub fn set_all_tags(&mut self, tag: u8) {
        for g in (0..PAGE_SIZE / GRANULE).step_by(2) {
            self.st2g(g, tag);
        }
    }

    /// The page's tags read with LDG, one granule at a time (the slow path
    /// that the bulk save is checked against).
    pub fn tags_ldg(&self) -> [u8; PAGE_TAG_BYTES] {
        let mut out = [0u8; PAGE_TAG_BYTES];
        for g in 0..PAGE_SIZE / GRANULE {
            out[g / 2] |= self.ldg(g) << (4 * (g % 2));
        }
        out
    }

    /// The page's 128 bytes of tags read with LDGM (granule 2i in the low
    /// nibble of byte i, 2i + 1 in the high nibble).
    pub fn save_tags(&self) -> [u8; PAGE_TAG_BYTES] {
        let bs = gm_block_size();
        let mut words = [0u64; PAGE_TAG_BYTES / 8];
        if bs == 256 {
            // One LDGM a 256-byte chunk (QEMU and most cores): a straight loop.
            for (chunk, word) in words.iter_mut().enumerate() {
                let a = self.addr() + chunk * 256;
                // SAFETY: LDGM reads the tags of one aligned block of this page.
                unsafe {
                    core::arch::asm!("ldgm {v}, [{a}]", v = out(reg) *word, a = in(reg) a, options(nostack, readonly))
                };
            }
        } else {
            for (chunk, word) in words.iter_mut().enumerate() {
                for sub in (0..256).step_by(bs) {
                    let a = self.addr() + chunk * 256 + sub;
                    let v: u64;
                    // SAFETY: as above.
                    unsafe {
                        core::arch::asm!("ldgm {v}, [{a}]", v = out(reg) v, a = in(reg) a, options(nostack, readonly))
                    };
                    *word |= v;
                }
            }
        }
        // SAFETY: 16 words are 128 bytes and any byte pattern is a valid
        // [u8; 128]; little-endian, so byte i holds granules 2i and 2i + 1
        // as LDGM's word has them.
        unsafe { core::mem::transmute::<[u64; PAGE_TAG_BYTES / 8], [u8; PAGE_TAG_BYTES]>(words) }
    }

    /// Writes the tags saved by `save_tags` back with STGM.
    pub fn restore_tags(&mut self, tags: &[u8; PAGE_TAG_BYTES]) {
        let bs = gm_block_size();
        let words = tags.chunks_exact(8).map(|b| u64::from_le_bytes(b.try_into().expect("chunks of 8")));
        if bs == 256 {
            for (chunk, word) in words.enumerate() {
                let a = self.addr() + chunk * 256;
                // SAFETY: STGM writes the tags of one aligned block of this page.
                unsafe { core::arch::asm!("stgm {v}, [{a}]", v = in(reg) word, a = in(reg) a, options(nostack)) };
            }
            return;
        }
        for (chunk, word) in words.enumerate() {
            for sub in (0..256).step_by(bs) {
                let a = self.addr() + chunk * 256 + sub;
                // SAFETY: as above.
                unsafe { core::arch::asm!("stgm {v}, [{a}]", v = in(reg) word, a = in(reg) a, options(nostack)) };
            }
        }
    }

    /// STZGM over the page: zeroes the data and sets every tag to `tag`.
    pub fn stzgm(&mut self, tag: u8) {
        let bs = zva_block_size();
        for off in (0..PAGE_SIZE).step_by(bs) {
            let a = self.addr() + off;
            // SAFETY: one aligned block inside this page.
            unsafe { core::arch::asm!("stzgm {t}, [{a}]", t = in(reg) tag as u64, a = in(reg) a, options(nostack)) };
        }
    }

    /// copy_page: the data of `src` into this page, 64 bytes per step with
    /// LDP/STP (what arm64's copy_page does; a generic memmove moves a word
    /// at a time). Tags are not touched. Kernel accesses through the linear
    /// map use the match-all tag, so tag checks never fire here.
    pub fn copy_from(&mut self, src: &PageData) {
        let (d, s) = (self.addr(), src.addr());
        // SAFETY: two distinct, page-aligned 4 KiB frames (the borrows say
        // so); the loop reads and writes exactly PAGE_SIZE bytes of each.
        unsafe {
            core::arch::asm!(
                "2:",
                "ldp {a}, {b}, [{s}]",
                "ldp {c}, {e}, [{s}, #16]",
                "stp {a}, {b}, [{d}]",
                "stp {c}, {e}, [{d}, #16]",
                "ldp {a}, {b}, [{s}, #32]",
                "ldp {c}, {e}, [{s}, #48]",
                "stp {a}, {b}, [{d}, #32]",
                "stp {c}, {e}, [{d}, #48]",
                "add {s}, {s}, #64",
                "add {d}, {d}, #64",
                "subs {n}, {n}, #1",
                "b.ne 2b",
                s = inout(reg) s => _,
                d = inout(reg) d => _,
                n = inout(reg) PAGE_SIZE / 64 => _,
                a = out(reg) _, b = out(reg) _, c = out(reg) _, e = out(reg) _,
                options(nostack)
            )
        }
    }

    /// The tags of `src` into this page, block by block (LDGM then STGM,
    /// with no buffer in between); the data is untouched.
    pub fn copy_tags_from(&mut self, src: &PageData) {
        let bs = gm_block_size();
        for off in (0..PAGE_SIZE).step_by(bs) {
            let (s, d) = (src.addr() + off, self.addr() + off);
            // SAFETY: LDGM reads the tags of one aligned block of `src`,
            // STGM writes them to the same block of this page.
            unsafe {
                core::arch::asm!(
                    "ldgm {v}, [{s}]",
                    "stgm {v}, [{d}]",
                    v = out(reg) _, s = in(reg) s, d = in(reg) d,
                    options(nostack)
                )
            };
        }
    }

    /// DC GZVA over the page: zeroes the data and sets every tag to `tag`.
    pub fn dc_gzva(&mut self, tag: u8) {
        let bs = zva_block_size();
        for off in (0..PAGE_SIZE).step_by(bs) {
            let a = with_tag(self.addr() + off, tag);
            // SAFETY: one aligned block inside this page.
            unsafe { core::arch::asm!("dc gzva, {a}", a = in(reg) a, options(nostack)) };
        }
    }
}

/// LDG at any mapped address (a TTBR0 alias in a test, say). On memory
/// that is not Tagged Normal it reads 0.
pub fn ldg_at(addr: usize) -> u8 {
    let mut p = addr;
    // SAFETY: LDG reads a tag and changes no memory; an unmapped address
    // faults like any load.
    unsafe { core::arch::asm!("ldg {p}, [{p}]", p = inout(reg) p, options(nostack, readonly)) };
    ptr_tag(p)
}

/// STG at any mapped address: sets the granule's tag to the tag of `addr`.
///
/// # Safety
/// The granule must belong to the caller: accesses by others through their
/// own tagged pointers may start to fault.
pub unsafe fn stg_at(addr: usize) {
    // SAFETY: the caller owns the granule.
    unsafe { core::arch::asm!("stg {p}, [{p}]", p = in(reg) addr, options(nostack)) };
}
