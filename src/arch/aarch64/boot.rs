//! Boot glue: assembles boot/entry.S and boot/vectors.S with constants that
//! are computed and checked here, and publishes the final kernel tables to
//! secondary CPUs.

use super::mmu::{self, MAIR_VALUE};
use super::trap::TrapFrame;

/// Physical offset of the image from the start of RAM (arm64 Image text_offset).
pub const TEXT_OFFSET: u64 = 0x20_0000;
/// The image's link address (linker.ld): the top 2 GiB.
pub const KERNEL_VA: u64 = 0xFFFF_FFFF_8000_0000;
const _: () = assert!((KERNEL_VA >> 39) & 511 == 511 && (KERNEL_VA >> 21) & 511 == 0);

/// Per-CPU boot stack size; must match the `.stacks` size in linker.ld.
pub const STACK_SIZE: usize = 64 * 1024;
/// CPUs with a boot stack (linker.ld reserves 8 stacks).
pub const MAX_CPUS: usize = 8;

const HCR_EL2_RW: u64 = 1 << 31;
const HCR_EL2_ATA: u64 = 1 << 56;
const HCR_EL2_API_APK: u64 = (1 << 41) | (1 << 40);

/// SCTLR_EL1 RES1 bits plus EIS/EOS/SPAN, with the MMU and caches off.
const SCTLR_RES1: u64 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);
/// MMU, caches, alignment-check off, DC ZVA and CTR at EL0, MTE tag access at
/// EL0 and EL1 (ATA0, ATA), synchronous tag checks at EL1 and EL0.
const SCTLR_ON: u64 = SCTLR_RES1
    | (1 << 0)        // M
    | (1 << 2)        // C
    | (1 << 12)       // I
    | (1 << 14)       // DZE
    | (1 << 15)       // UCT
    | (1 << 42)       // ATA0
    | (1 << 43)       // ATA
    | (1 << 40)       // TCF = sync
    | (1 << 38); // TCF0 = sync

core::arch::global_asm!(
    include_str!("../../../boot/entry.S"),
    TEXT_OFFSET = const TEXT_OFFSET,
    HCR_EL2 = const HCR_EL2_RW | HCR_EL2_ATA | HCR_EL2_API_APK,
    SCTLR_EL1_MMU_OFF = const SCTLR_RES1,
    SCTLR_EL1_MMU_ON = const SCTLR_ON,
    BLOCK_DEVICE = const mmu::early_block(mmu::MemType::Device),
    BLOCK_NORMAL = const mmu::early_block(mmu::MemType::TaggedNormal),
    MAIR = const MAIR_VALUE,
    TCR = const mmu::TCR_VALUE,
    STACK_SIZE = const STACK_SIZE,
    KERNEL_L1_INDEX = const (KERNEL_VA >> 30) & 511,
);

core::arch::global_asm!(
    include_str!("../../../boot/vectors.S"),
    FRAME_SIZE = const core::mem::size_of::<TrapFrame>(),
);

extern "C" {
    static mut boot_ttbr1: u64;
    static __image_start: u8;
    static __image_end: u8;
    static __text_end: u8;
    static __rodata_end: u8;
    static __user_text_start: u8;
    static __user_text_end: u8;
    fn replace_ttbr1_idmap(ttbr1: u64, zero_page_pa: u64);
    pub fn secondary_entry();
}

/// Virtual address ranges of the image, for building the final tables.
pub struct ImageLayout {
    pub start: usize,
    pub text_end: usize,
    pub rodata_end: usize,
    pub end: usize,
    pub user_text: (usize, usize),
}

pub fn image_layout() -> ImageLayout {
    // Only the addresses of the linker symbols are taken, never their contents.
    ImageLayout {
        start: &raw const __image_start as usize,
        text_end: &raw const __text_end as usize,
        rodata_end: &raw const __rodata_end as usize,
        end: &raw const __image_end as usize,
        user_text: (&raw const __user_text_start as usize, &raw const __user_text_end as usize),
    }
}

/// Publishes the final TTBR1 value for secondary CPUs, which read it with the
/// MMU off, so it is cleaned to the point of coherency.
pub fn publish_ttbr1(ttbr1: u64) {
    // SAFETY: boot_ttbr1 is only written here, by the primary, before any
    // secondary is started.
    unsafe {
        let p = &raw mut boot_ttbr1;
        p.write_volatile(ttbr1);
        core::arch::asm!("dc civac, {}", "dsb sy", in(reg) p, options(nostack));
    }
}

/// Switches this CPU's TTBR1 to `ttbr1` through the identity map, so no TLB
/// ever holds entries of both the early block mappings and the final ones.
///
/// # Safety
/// `ttbr1` must map the whole kernel image, its stacks and the linear map at
/// the same addresses as the current tables; `image_pa` is the image's load
/// address and the early identity map must still be in TTBR0.
pub unsafe fn replace_ttbr1(ttbr1: u64, image_pa: u64, zero_page_pa: u64) {
    let va = replace_ttbr1_idmap as *const () as usize as u64;
    let pa = va - image_layout().start as u64 + image_pa;
    // SAFETY: the function at `pa` is the identity-mapped copy of
    // replace_ttbr1_idmap, which touches neither memory nor the stack.
    unsafe {
        let f: extern "C" fn(u64, u64) = core::mem::transmute(pa as usize);
        f(ttbr1, zero_page_pa);
    }
}
