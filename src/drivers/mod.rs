//! Device drivers. Each owns its MMIO through one type; addresses come from
//! the DTB.

pub mod pl011;
pub mod ramdisk;
