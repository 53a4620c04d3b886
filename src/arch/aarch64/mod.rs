//! AArch64: boot glue (booti and UEFI entry), system registers, the MMU, MTE instructions,
//! exceptions, PSCI and semihosting.

pub mod boot;
pub mod context;
pub mod cpu;
pub mod efi;
pub mod esr;
pub mod mmu;
pub mod mte;
pub mod pgtable_hwdef;
pub mod psci;
pub mod semihosting;
pub mod sysreg;
pub mod tlb;
pub mod tlbi_range;
pub mod trap;
