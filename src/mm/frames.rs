//! The global frame allocator and owned frames.

use super::frame_alloc::{FrameAllocator, FreeError};
use crate::arch::mmu::{phys_to_virt, FrameSource, PAGE_SIZE};
use crate::arch::mte::PageData;
use spin::Mutex;

/// Bitmap storage for up to 4 GiB of RAM (in .bss).
const MAX_FRAMES: usize = 1 << 20;
static mut BITMAP: [u64; MAX_FRAMES / 64] = [0; MAX_FRAMES / 64];

static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

/// Installs the allocator for `[base, base + size)`, all frames in use.
/// Returns an error if the RAM is larger than the bitmap.
pub fn init(base: u64, size: u64, setup: impl FnOnce(&mut FrameAllocator<'static>)) -> Result<(), &'static str> {
    let frames = (size / PAGE_SIZE as u64) as usize;
    if frames > MAX_FRAMES {
        return Err("RAM spans more than the frame bitmap covers (4 GiB from the lowest bank)");
    }
    // SAFETY: init runs once, on the boot CPU, before anything else can see
    // BITMAP; afterwards only the allocator (behind FRAMES) touches it.
    #[allow(clippy::deref_addrof)] // a place expression, not a reference to the static
    let bits = unsafe { &mut *(&raw mut BITMAP) };
    let mut fa = FrameAllocator::new(base, frames, bits);
    setup(&mut fa);
    *FRAMES.lock() = Some(fa);
    Ok(())
}

/// Runs more of boot's setup on the installed allocator: RAM that could not
/// be handed out before the final tables mapped it.
pub fn extend(setup: impl FnOnce(&mut FrameAllocator<'static>)) {
    with(setup)
}

fn with<R>(f: impl FnOnce(&mut FrameAllocator<'static>) -> R) -> R {
    f(FRAMES.lock().as_mut().expect("frame allocator used before mm::frames::init"))
}

pub fn free_frames() -> usize {
    with(|fa| fa.free_frames())
}

/// Allocates `count` contiguous frames aligned to `align` frames, zeroed
/// (data and tags).
pub fn alloc_zeroed(count: usize, align: usize) -> Option<u64> {
    let pa = alloc_uninit(count, align)?;
    for i in 0..count {
        zero_page(pa + (i * PAGE_SIZE) as u64);
    }
    Some(pa)
}

/// Allocates as `alloc_zeroed` but leaves the frames as their last owner
/// left them: for a caller that writes every page (data and tags) before
/// anything can read it (collapse's copy).
pub fn alloc_uninit(count: usize, align: usize) -> Option<u64> {
    with(|fa| if count == 1 { fa.alloc() } else { fa.alloc_contig(count, align) })
}

pub fn free(pa: u64, count: usize) -> Result<(), FreeError> {
    with(|fa| if count == 1 { fa.free(pa) } else { fa.free_contig(pa, count) })
}

/// # Safety
/// `pa` is a frame the caller owns, with no other reference to it live.
unsafe fn page_at(pa: u64) -> &'static mut PageData {
    // SAFETY: the caller's contract; the linear map covers all RAM.
    unsafe { crate::arch::mmu::linear_mut(pa) }
}

/// Zeroes a frame's data and its tags (DC GZVA with tag 0).
pub fn zero_page(pa: u64) {
    // SAFETY: called on a frame just allocated or being freed by its owner.
    unsafe { page_at(pa) }.dc_gzva(0);
}

/// Page-table pages come from the global allocator.
pub struct GlobalFrames;

impl FrameSource for GlobalFrames {
    fn alloc_table(&mut self) -> Option<u64> {
        alloc_zeroed(1, 1)
    }

    fn free_table(&mut self, pa: u64) {
        free(pa, 1).expect("freeing a page-table page that was not allocated");
    }
}

/// One 4 KiB frame owned by its holder; zeroed (data and tags) when
/// allocated and again when dropped, so no tags leak from one user to the
/// next.
pub struct Frame {
    pa: u64,
}

impl Frame {
    pub fn alloc() -> Option<Frame> {
        alloc_zeroed(1, 1).map(|pa| Frame { pa })
    }

    pub fn pa(&self) -> u64 {
        self.pa
    }

    pub fn page(&self) -> &PageData {
        // SAFETY: the Frame owns the frame; the borrow is tied to &self.
        unsafe { page_at(self.pa) }
    }

    pub fn page_mut(&mut self) -> &mut PageData {
        // SAFETY: the Frame owns the frame; the borrow is tied to &mut self.
        unsafe { page_at(self.pa) }
    }

    /// The linear-map address (kernel pointer, tag 0xF).
    pub fn addr(&self) -> usize {
        phys_to_virt(self.pa)
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        zero_page(self.pa);
        free(self.pa, 1).expect("Frame freed twice");
    }
}
