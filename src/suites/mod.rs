//! On-target test suites. Each file is one suite of scenarios registered
//! with `kernel_test!`; they use mm and the arch layer, never the reverse.

mod boot;
mod collapse;
mod harness_self;
mod isolation;
pub(crate) mod mm;
mod mmu;
mod mte_hw;
pub(crate) mod scenario;
mod soak;
mod swap;
mod thp;
mod uffd;
