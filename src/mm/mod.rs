//! Memory management: physical frames, the kernel heap and the kernel's own
//! address space. The Linux-style mm paths (faults, swap, uffd, ...) will
//! live beside these, one module per path.

pub mod frame_alloc;
pub mod frames;
pub mod heap;
pub mod kmap;
pub mod pte;
