//! The kernel heap: linked_list_allocator over frames taken at boot.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::NonNull;
use linked_list_allocator::Heap;
use spin::Mutex;

/// The heap's size for `ram` bytes of RAM: a sixteenth, between 8 and 128
/// MiB (tag storage and page-table bookkeeping grow with what is swapped).
pub fn heap_size(ram: u64) -> usize {
    ((ram / 16) as usize).clamp(8 << 20, 128 << 20) & !0xFFF
}

struct KernelHeap(Mutex<Heap>);

#[global_allocator]
static HEAP: KernelHeap = KernelHeap(Mutex::new(Heap::empty()));

// SAFETY: every allocation goes through the locked Heap, which hands out
// disjoint blocks of the region given to init.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0.lock().allocate_first_fit(layout).map_or(core::ptr::null_mut(), |p| p.as_ptr())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from alloc with the same layout (GlobalAlloc contract).
        unsafe { self.0.lock().deallocate(NonNull::new_unchecked(ptr), layout) }
    }
}

/// Gives the heap `[start, start + size)`.
///
/// # Safety
/// The range must be mapped, writable and used by nothing else, forever.
pub unsafe fn init(start: usize, size: usize) {
    // SAFETY: guaranteed by the caller.
    unsafe { HEAP.0.lock().init(start as *mut u8, size) }
}

pub fn used_bytes() -> usize {
    HEAP.0.lock().used()
}
