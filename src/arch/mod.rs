//! The architecture layer. Only AArch64 exists; everything above this module
//! reaches the hardware through the items re-exported here, and nothing in
//! here knows about mm, the harness or the suites.

pub mod aarch64;
pub use aarch64::*;
