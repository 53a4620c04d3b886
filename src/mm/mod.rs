//! Memory management: physical frames, the kernel heap and address space,
//! and the Linux-style mm core: pte encodings, folios and rmap, mm/VMAs,
//! the fault path, fork and unmapping; swap (swapfile, swap_state,
//! page_io, mteswap, vmscan, swap), userfaultfd (userfaultfd, uffd_move,
//! uffd_uapi), split and THP (huge_memory), and collapse (khugepaged).
//! Paths to come (zap_details, migration) get a module each, as in Linux's
//! flat mm/.

pub mod fault;
pub mod filemap;
pub mod folio;
pub mod fork;
pub mod frame_alloc;
pub mod frames;
pub mod heap;
pub mod huge_memory;
pub mod invariants;
pub mod khugepaged;
pub mod kmap;
pub mod mm_types;
pub mod mmap;
pub mod mmu_context;
pub mod mmu_gather;
pub mod mteswap;
pub mod page_io;
pub mod pgtable;
pub mod pte;
pub mod rmap;
pub mod split;
pub mod swap;
pub mod swap_state;
pub mod swapfile;
pub mod tag_soak;
pub mod tagcodec;
pub mod uaccess;
pub mod uffd_move;
pub mod uffd_uapi;
pub mod userfaultfd;
pub mod vmscan;
pub mod zap;
