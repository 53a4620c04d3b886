//! Runs the unit tests of the kernel's pure modules on the host. Each module
//! is included by path from src/, unchanged, so the code under test is the
//! code the kernel runs.

extern crate alloc;

#[path = "../../src/cmdline.rs"]
pub mod cmdline;

#[path = "../../src/harness/filter.rs"]
pub mod filter;

#[path = "../../src/arch/aarch64/esr.rs"]
pub mod esr;

#[path = "../../src/mm/frame_alloc.rs"]
pub mod frame_alloc;

#[path = "../../src/arch/aarch64/pgtable_hwdef.rs"]
pub mod pgtable_hwdef;

/// The kernel's `crate::arch` path for the modules above.
pub mod arch {
    pub use super::pgtable_hwdef;
}

#[path = "../../src/arch/aarch64/tlbi_range.rs"]
pub mod tlbi_range;

#[path = "../../src/mm/pte.rs"]
pub mod pte;

#[path = "../../src/testhooks/fault_inject.rs"]
pub mod fault_inject;

#[path = "../../src/platform/fdt.rs"]
pub mod fdt;

#[path = "../../src/platform/ranges.rs"]
pub mod ranges;

#[path = "../../src/platform/uefi.rs"]
pub mod uefi;

#[path = "../../src/mm/uffd_uapi.rs"]
pub mod uffd_uapi;

#[path = "../../src/errno.rs"]
pub mod errno;

#[path = "../../src/script/lang.rs"]
pub mod lang;

#[path = "../../src/script/model.rs"]
pub mod model;

#[path = "../../src/script/cpio.rs"]
pub mod cpio;

#[path = "../../src/mm/tagcodec.rs"]
pub mod tagcodec;
