//! Stage-1 translation: 4 KiB granule, four levels, 48-bit VAs.
//!
//! TTBR1 holds the kernel: the linear map of RAM at `PAGE_OFFSET + pa` and the
//! image at its link address. TTBR0 holds EL0 address spaces (and the early
//! identity map during boot). Descriptor fields are declared with
//! tock-registers after Arm ARM D8.3 ("Translation table descriptor formats").

use core::sync::atomic::{AtomicU64, Ordering};
use tock_registers::fields::Field;
use tock_registers::interfaces::{ReadWriteable, Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::registers::InMemoryRegister;

pub use super::pgtable_hwdef::{PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, PMD_MASK, PMD_SIZE, PTRS_PER_PTE};
/// Base of the linear map of physical memory in the TTBR1 half.
pub const PAGE_OFFSET: u64 = 0xFFFF_0000_0000_0000;
/// The early tables (boot/entry.S) map physical [0, 4 GiB) linearly; RAM
/// above it is reachable only once the final tables are in.
pub const EARLY_LINEAR_LIMIT: u64 = 4 << 30;
const ENTRIES: usize = PTRS_PER_PTE;

register_bitfields! {u64,
    /// A stage-1 descriptor at any level (table, block or page).
    pub STAGE1_DESCRIPTOR [
        VALID OFFSET(0) NUMBITS(1) [],
        /// 1: table (levels 0-2) or page (level 3); 0: block (levels 1-2).
        TYPE OFFSET(1) NUMBITS(1) [Block = 0, TableOrPage = 1],
        /// Index into MAIR_EL1 (see `MemType`).
        ATTR_INDX OFFSET(2) NUMBITS(3) [],
        AP OFFSET(6) NUMBITS(2) [RW_EL1 = 0, RW_EL1_EL0 = 1, RO_EL1 = 2, RO_EL1_EL0 = 3],
        SH OFFSET(8) NUMBITS(2) [Non = 0, Outer = 2, Inner = 3],
        AF OFFSET(10) NUMBITS(1) [],
        /// Not global: the entry is tagged with the ASID.
        NG OFFSET(11) NUMBITS(1) [],
        /// Output address (or next-level table address) bits 47:12.
        OUTPUT_ADDR OFFSET(12) NUMBITS(36) [],
        DBM OFFSET(51) NUMBITS(1) [],
        CONT OFFSET(52) NUMBITS(1) [],
        PXN OFFSET(53) NUMBITS(1) [],
        UXN OFFSET(54) NUMBITS(1) [],
        /// Bits reserved for software.
        SW OFFSET(55) NUMBITS(4) []
    ]
}
use STAGE1_DESCRIPTOR as D;

/// Memory types, in MAIR_EL1 attribute-index order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemType {
    /// Normal write-back memory with allocation tags (MAIR 0xF0).
    TaggedNormal = 0,
    /// Normal write-back memory without tags: never tag-checked (MAIR 0xFF).
    Normal = 1,
    /// Device-nGnRE (MAIR 0x04).
    Device = 2,
}

pub const MAIR_VALUE: u64 = 0xF0 | (0xFF << 8) | (0x04 << 16);

/// TCR_EL1 without IPS (boot/entry.S fills it from ID_AA64MMFR0_EL1):
/// T0SZ = T1SZ = 16 (48-bit), 4 KiB granules, inner-shareable write-back
/// walks, 16-bit ASIDs, top-byte-ignore in both halves, and TCMA1 so that
/// kernel pointers (tag 0xF in the TTBR1 half) are never tag-checked.
pub const TCR_VALUE: u64 = 16
    | (1 << 8) | (1 << 10) | (3 << 12)            // IRGN0, ORGN0, SH0
    | (16 << 16)                                  // T1SZ
    | (1 << 24) | (1 << 26) | (3 << 28) | (2 << 30) // IRGN1, ORGN1, SH1, TG1 = 4K
    | (1 << 36)                                   // AS: 16-bit ASID
    | (1 << 37) | (1 << 38)                       // TBI0, TBI1
    | (1 << 58); // TCMA1

const fn bits(f: Field<u64, D::Register>, v: u64) -> u64 {
    (v & f.mask) << f.shift
}

/// A 1 GiB / 2 MiB block descriptor without its address, for boot/entry.S.
pub const fn early_block(mem: MemType) -> u64 {
    let xn = match mem {
        MemType::Device => bits(D::PXN, 1) | bits(D::UXN, 1),
        _ => bits(D::UXN, 1),
    };
    bits(D::VALID, 1) | bits(D::ATTR_INDX, mem as u64) | bits(D::SH, 3) | bits(D::AF, 1) | xn
}

/// Who may do what with a mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    KernelRo,
    KernelRw,
    KernelRx,
    UserRo,
    UserRw,
    UserRx,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attrs {
    pub mem: MemType,
    pub perm: Perm,
}

impl Attrs {
    pub const fn new(mem: MemType, perm: Perm) -> Self {
        Attrs { mem, perm }
    }

    /// The descriptor bits (everything but VALID, TYPE and the address).
    fn descriptor_bits(self) -> u64 {
        let r = InMemoryRegister::<u64, D::Register>::new(0);
        r.write(D::ATTR_INDX.val(self.mem as u64) + D::AF::SET);
        r.modify(if self.mem == MemType::Device { D::SH::Non } else { D::SH::Inner });
        let (ap, pxn, uxn, ng) = match self.perm {
            Perm::KernelRo => (D::AP::RO_EL1, true, true, false),
            Perm::KernelRw => (D::AP::RW_EL1, true, true, false),
            Perm::KernelRx => (D::AP::RO_EL1, false, true, false),
            Perm::UserRo => (D::AP::RO_EL1_EL0, true, true, true),
            Perm::UserRw => (D::AP::RW_EL1_EL0, true, true, true),
            Perm::UserRx => (D::AP::RO_EL1_EL0, true, false, true),
        };
        r.modify(ap + D::PXN.val(pxn as u64) + D::UXN.val(uxn as u64) + D::NG.val(ng as u64));
        r.get()
    }
}

/// A page (level 3) or block (levels 1-2) descriptor mapping `pa`.
pub fn leaf_descriptor(pa: u64, attrs: Attrs, level: usize) -> u64 {
    let ty = if level == 3 { D::TYPE::TableOrPage } else { D::TYPE::Block };
    let r = InMemoryRegister::<u64, D::Register>::new(attrs.descriptor_bits());
    r.modify(D::VALID::SET + ty + D::OUTPUT_ADDR.val(pa >> PAGE_SHIFT));
    r.get()
}

fn table_descriptor(pa: u64) -> u64 {
    let r = InMemoryRegister::<u64, D::Register>::new(0);
    r.write(D::VALID::SET + D::TYPE::TableOrPage + D::OUTPUT_ADDR.val(pa >> PAGE_SHIFT));
    r.get()
}

/// What a descriptor says, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leaf {
    pub pa: u64,
    pub level: usize,
    pub mem_index: u64,
    pub user: bool,
    pub writable: bool,
}

fn decode_leaf(desc: u64, level: usize) -> Leaf {
    let r = InMemoryRegister::<u64, D::Register>::new(desc);
    let ap = r.read(D::AP);
    Leaf {
        pa: r.read(D::OUTPUT_ADDR) << PAGE_SHIFT,
        level,
        mem_index: r.read(D::ATTR_INDX),
        user: ap & 1 == 1,
        writable: ap & 2 == 0,
    }
}

// --- physical <-> virtual -------------------------------------------------

static IMAGE_PA: AtomicU64 = AtomicU64::new(0);

/// Records where the image was loaded (from boot/entry.S).
pub fn set_image_pa(pa: u64) {
    IMAGE_PA.store(pa, Ordering::Relaxed);
}

pub fn image_pa() -> u64 {
    IMAGE_PA.load(Ordering::Relaxed)
}

/// The linear-map address of physical address `pa`.
pub const fn phys_to_virt(pa: u64) -> usize {
    (pa + PAGE_OFFSET) as usize
}

/// A pointer to the `T` at physical address `pa` through the linear map
/// (making one is safe; using it is the caller's business).
pub const fn linear_ptr<T>(pa: u64) -> *mut T {
    phys_to_virt(pa) as *mut T
}

/// The `T` at physical address `pa`, shared, through the linear map: the
/// one place where mm and the drivers turn a physical address into a
/// reference.
///
/// # Safety
/// `pa` is memory covered by the linear map (RAM, or the device window
/// `kmap` maps), aligned for `T`, and holds a valid `T` for as long as the
/// reference is used; nothing writes it other than through atomics or
/// interior mutability while the reference lives.
pub unsafe fn linear_ref<T>(pa: u64) -> &'static T {
    // SAFETY: the caller's contract above.
    unsafe { &*linear_ptr::<T>(pa) }
}

/// The `T` at physical address `pa`, exclusively, through the linear map.
///
/// # Safety
/// As `linear_ref`, and no other reference to any byte of it exists while
/// this one lives (the caller owns the memory: a frame it allocated, or a
/// folio it holds locked for this use).
pub unsafe fn linear_mut<T>(pa: u64) -> &'static mut T {
    // SAFETY: the caller's contract above.
    unsafe { &mut *linear_ptr::<T>(pa) }
}

/// The physical address behind a kernel virtual address (linear map or image).
pub fn virt_to_phys(va: usize) -> u64 {
    let va = va as u64 | (0xFF << 56); // drop any pointer tag
    if va >= crate::arch::boot::image_layout().start as u64 {
        va - crate::arch::boot::image_layout().start as u64 + image_pa()
    } else {
        va - PAGE_OFFSET
    }
}

// --- page tables ----------------------------------------------------------

/// Where page-table pages come from (the frame allocator, in practice).
pub trait FrameSource {
    /// A zeroed 4 KiB frame, by physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    fn free_table(&mut self, pa: u64);
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or size is not page-aligned.
    Misaligned,
    /// Something is already mapped there.
    AlreadyMapped,
    /// No frame for a page-table page.
    NoMemory,
    /// A block mapping sits where a table is needed.
    BlockInTheWay,
}

/// A four-level table tree, identified by the physical address of its root.
pub struct PageTable {
    root: u64,
}

fn entries(table_pa: u64) -> *mut u64 {
    phys_to_virt(table_pa) as *mut u64
}

fn index(va: usize, level: usize) -> usize {
    (va >> (PAGE_SHIFT as usize + 9 * (3 - level))) & (ENTRIES - 1)
}

fn read_entry(table_pa: u64, i: usize) -> u64 {
    // SAFETY: table_pa is a table page owned by this tree, reached through the
    // linear map; i < 512.
    unsafe { entries(table_pa).add(i).read_volatile() }
}

fn write_entry(table_pa: u64, i: usize, v: u64) {
    // SAFETY: as in read_entry.
    unsafe { entries(table_pa).add(i).write_volatile(v) }
}

fn is_table(desc: u64, level: usize) -> bool {
    desc & 3 == 3 && level < 3
}

fn next_table(desc: u64) -> u64 {
    desc & 0x0000_FFFF_FFFF_F000
}

impl PageTable {
    pub fn new(fs: &mut dyn FrameSource) -> Result<Self, MapError> {
        Ok(PageTable { root: fs.alloc_table().ok_or(MapError::NoMemory)? })
    }

    pub fn root_pa(&self) -> u64 {
        self.root
    }

    /// The table at `level` covering `va`, creating tables on the way.
    fn table_for(&mut self, va: usize, level: usize, fs: &mut dyn FrameSource) -> Result<u64, MapError> {
        let mut table = self.root;
        for l in 0..level {
            let i = index(va, l);
            let desc = read_entry(table, i);
            if desc & 1 == 0 {
                let new = fs.alloc_table().ok_or(MapError::NoMemory)?;
                write_entry(table, i, table_descriptor(new));
                barrier_after_table_write();
                table = new;
            } else if is_table(desc, l) {
                table = next_table(desc);
            } else {
                return Err(MapError::BlockInTheWay);
            }
        }
        Ok(table)
    }

    /// Maps `[va, va + size)` to `[pa, pa + size)`, using 2 MiB blocks where
    /// both sides are aligned and `blocks` allows it. Refuses to overwrite a
    /// valid entry (use `replace` for that: it does break-before-make).
    pub fn map_range(
        &mut self,
        va: usize,
        pa: u64,
        size: usize,
        attrs: Attrs,
        blocks: bool,
        fs: &mut dyn FrameSource,
    ) -> Result<(), MapError> {
        if !va.is_multiple_of(PAGE_SIZE) || !pa.is_multiple_of(PAGE_SIZE as u64) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let mut off = 0;
        while off < size {
            let (v, p) = (va + off, pa + off as u64);
            let block = blocks && v % PMD_SIZE == 0 && p % PMD_SIZE as u64 == 0 && size - off >= PMD_SIZE;
            let level = if block { 2 } else { 3 };
            let table = self.table_for(v, level, fs)?;
            let i = index(v, level);
            if read_entry(table, i) & 1 != 0 {
                return Err(MapError::AlreadyMapped);
            }
            write_entry(table, i, leaf_descriptor(p, attrs, level));
            off += if block { PMD_SIZE } else { PAGE_SIZE };
        }
        barrier_after_table_write();
        Ok(())
    }

    /// Points the 4 KiB page at `va` to `pa` (or unmaps it when `new` is
    /// None), with break-before-make: the old entry is invalidated and its
    /// TLB entries flushed on every CPU before the new one is written.
    pub fn replace(
        &mut self,
        va: usize,
        new: Option<(u64, Attrs)>,
        asid: u16,
        fs: &mut dyn FrameSource,
    ) -> Result<(), MapError> {
        if !va.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        let table = self.table_for(va, 3, fs)?;
        let i = index(va, 3);
        if read_entry(table, i) & 1 != 0 {
            write_entry(table, i, 0);
            barrier_after_table_write();
            tlb::flush_va(va, asid);
        }
        if let Some((pa, attrs)) = new {
            write_entry(table, i, leaf_descriptor(pa, attrs, 3));
            barrier_after_table_write();
        }
        Ok(())
    }

    /// Frees every table page of the tree (not the frames it maps).
    pub fn free(self, fs: &mut dyn FrameSource) {
        fn walk(table: u64, level: usize, fs: &mut dyn FrameSource) {
            if level < 3 {
                for i in 0..ENTRIES {
                    let d = read_entry(table, i);
                    if is_table(d, level) {
                        walk(next_table(d), level + 1, fs);
                    }
                }
            }
            fs.free_table(table);
        }
        walk(self.root, 0, fs);
    }
}

/// The leaf descriptor that translates `va` in the tree rooted at `root`.
pub fn lookup(root: u64, va: usize) -> Option<Leaf> {
    let mut table = root;
    for level in 0..4 {
        let desc = read_entry(table, index(va, level));
        if desc & 1 == 0 {
            return None;
        }
        if is_table(desc, level) {
            table = next_table(desc);
        } else {
            let mut leaf = decode_leaf(desc, level);
            let span = 1u64 << (12 + 9 * (3 - level));
            leaf.pa += va as u64 & (span - 1) & PAGE_MASK as u64;
            return Some(leaf);
        }
    }
    None
}

fn barrier_after_table_write() {
    // SAFETY: barriers only order memory accesses.
    unsafe { core::arch::asm!("dsb ishst", "isb", options(nostack)) }
}

pub use super::tlb;

static TTBR0_WRITES: AtomicU64 = AtomicU64::new(0);

/// TTBR0 writes since boot, on every CPU (each one an address-space switch).
pub fn ttbr0_writes() -> u64 {
    TTBR0_WRITES.load(Ordering::Relaxed)
}

/// The table TTBR0_EL1 points at (the EL0 address space in use).
pub fn ttbr0_root() -> u64 {
    use aarch64_cpu::registers::{Readable, TTBR0_EL1};
    TTBR0_EL1.get() & 0x0000_FFFF_FFFF_FFFE
}

/// Installs `table` with `asid` as this CPU's EL0 address space (TTBR0),
/// recording the CPU in the ASID's mask first (see tlb::scope).
pub fn set_ttbr0(table_pa: u64, asid: u16) {
    use aarch64_cpu::asm::barrier;
    use aarch64_cpu::registers::{Writeable, TTBR0_EL1};
    TTBR0_WRITES.fetch_add(1, Ordering::Relaxed);
    if asid != 0 {
        tlb::note_installed(asid);
    }
    // TTBR0 only translates EL0/low addresses; the kernel runs in TTBR1.
    TTBR0_EL1.set(table_pa | ((asid as u64) << 48));
    barrier::isb(barrier::SY);
}

/// dsb ishst; isb: a descriptor just stored is visible to the table walker
/// before anything after this (the barriers of Linux's arm64 __set_pte).
pub fn publish_descriptors() {
    use aarch64_cpu::asm::barrier;
    barrier::dsb(barrier::ISHST);
    barrier::isb(barrier::SY);
}
