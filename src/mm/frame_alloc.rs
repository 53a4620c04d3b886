//! The physical frame allocator: one bit per 4 KiB frame of RAM (1 = in use).
//! Pure logic over a caller-provided bitmap: host unit tests include this file.
//! Boot marks RAM free from the DTB, then reserves the image, the DTB and
//! everything else that must never be handed out.

pub const FRAME_SIZE: u64 = crate::arch::pgtable_hwdef::PAGE_SIZE as u64;

#[derive(Debug, PartialEq, Eq)]
pub enum FreeError {
    /// The address is not a frame this allocator manages.
    OutOfRange(u64),
    /// The frame is already free: a double free.
    NotAllocated(u64),
}

pub struct FrameAllocator<'a> {
    base: u64,
    frames: usize,
    bits: &'a mut [u64],
    free: usize,
    /// Where the next single-frame search starts.
    hint: usize,
}

impl<'a> FrameAllocator<'a> {
    /// An allocator for `[base, base + frames * 4 KiB)` with every frame in
    /// use; `bits` must hold at least `frames` bits.
    pub fn new(base: u64, frames: usize, bits: &'a mut [u64]) -> Self {
        assert!(base.is_multiple_of(FRAME_SIZE), "unaligned RAM base {base:#x}");
        assert!(bits.len() * 64 >= frames, "bitmap too small for {frames} frames");
        bits.fill(!0);
        FrameAllocator { base, frames, bits, free: 0, hint: 0 }
    }

    fn used(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, i: usize, used: bool) {
        if used {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Frame indices inside `[start, end)` (clipped to the managed range,
    /// partial frames excluded).
    fn frames_in(&self, start: u64, end: u64) -> core::ops::Range<usize> {
        let top = self.base + self.frames as u64 * FRAME_SIZE;
        let s = start.max(self.base).min(top);
        let e = end.max(self.base).min(top);
        let first = (s - self.base).div_ceil(FRAME_SIZE) as usize;
        let last = ((e - self.base) / FRAME_SIZE) as usize;
        first..last.max(first)
    }

    /// Marks whole frames in `[start, end)` free.
    pub fn add_free(&mut self, start: u64, end: u64) {
        for i in self.frames_in(start, end) {
            if self.used(i) {
                self.set(i, false);
                self.free += 1;
            }
        }
    }

    /// Marks every frame touching `[start, end)` in use.
    pub fn reserve(&mut self, start: u64, end: u64) {
        let start = start & !(FRAME_SIZE - 1);
        let end = end.div_ceil(FRAME_SIZE) * FRAME_SIZE;
        for i in self.frames_in(start, end) {
            if !self.used(i) {
                self.set(i, true);
                self.free -= 1;
            }
        }
    }

    pub fn free_frames(&self) -> usize {
        self.free
    }

    #[cfg(all(test, not(target_os = "none")))]
    fn is_allocated(&self, pa: u64) -> bool {
        pa >= self.base
            && ((pa - self.base) / FRAME_SIZE) < self.frames as u64
            && self.used(((pa - self.base) / FRAME_SIZE) as usize)
    }

    /// One frame, by physical address.
    pub fn alloc(&mut self) -> Option<u64> {
        self.alloc_contig(1, 1)
    }

    /// `count` contiguous frames whose first frame's address is a multiple of
    /// `align` frames (a power of two).
    pub fn alloc_contig(&mut self, count: usize, align: usize) -> Option<u64> {
        assert!(count > 0 && align.is_power_of_two());
        if self.free < count {
            return None;
        }
        let base_frame = (self.base / FRAME_SIZE) as usize;
        // Start indices whose physical frame number is aligned.
        let first_aligned = (base_frame.div_ceil(align) * align) - base_frame;
        let start_at = if count == 1 { self.hint } else { 0 };
        let mut tried_wrap = start_at == 0;
        let mut i = if count == 1 { start_at } else { first_aligned };
        loop {
            if i + count > self.frames {
                if tried_wrap {
                    return None;
                }
                tried_wrap = true;
                i = first_aligned;
                continue;
            }
            // Skip full words quickly for single frames.
            if count == 1 && i % 64 == 0 && self.bits[i / 64] == !0 {
                i += 64;
                continue;
            }
            match (i..i + count).find(|&j| self.used(j)) {
                None => {
                    for j in i..i + count {
                        self.set(j, true);
                    }
                    self.free -= count;
                    if count == 1 {
                        self.hint = i + 1;
                    }
                    return Some(self.base + i as u64 * FRAME_SIZE);
                }
                Some(j) => {
                    i = if count == 1 { j + 1 } else { (j + 1 + base_frame).div_ceil(align) * align - base_frame };
                }
            }
        }
    }

    pub fn free_contig(&mut self, pa: u64, count: usize) -> Result<(), FreeError> {
        if pa < self.base || !pa.is_multiple_of(FRAME_SIZE) {
            return Err(FreeError::OutOfRange(pa));
        }
        let first = ((pa - self.base) / FRAME_SIZE) as usize;
        if first + count > self.frames {
            return Err(FreeError::OutOfRange(pa));
        }
        if let Some(j) = (first..first + count).find(|&j| !self.used(j)) {
            return Err(FreeError::NotAllocated(self.base + j as u64 * FRAME_SIZE));
        }
        for j in first..first + count {
            self.set(j, false);
        }
        self.free += count;
        self.hint = self.hint.min(first);
        Ok(())
    }

    pub fn free(&mut self, pa: u64) -> Result<(), FreeError> {
        self.free_contig(pa, 1)
    }
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    const BASE: u64 = 0x4000_0000;

    fn alloc_with(frames: usize) -> FrameAllocator<'static> {
        let bits = Box::leak(vec![0u64; frames.div_ceil(64)].into_boxed_slice());
        let mut a = FrameAllocator::new(BASE, frames, bits);
        a.add_free(BASE, BASE + frames as u64 * FRAME_SIZE);
        a
    }

    #[test]
    fn starts_used_until_freed() {
        let bits = Box::leak(vec![0u64; 2].into_boxed_slice());
        let mut a = FrameAllocator::new(BASE, 100, bits);
        assert_eq!(a.free_frames(), 0);
        assert_eq!(a.alloc(), None);
    }

    #[test]
    fn reserve_excludes_partial_frames_and_allocation_skips_them() {
        let mut a = alloc_with(16);
        a.reserve(BASE + 0x10, BASE + 0x1001); // touches frames 0 and 1
        assert_eq!(a.free_frames(), 14);
        assert_eq!(a.alloc(), Some(BASE + 2 * FRAME_SIZE));
        assert!(a.is_allocated(BASE));
        assert!(!a.is_allocated(BASE + 3 * FRAME_SIZE));
    }

    #[test]
    fn add_free_ignores_partial_frames_and_out_of_range() {
        let bits = Box::leak(vec![0u64; 1].into_boxed_slice());
        let mut a = FrameAllocator::new(BASE, 8, bits);
        a.add_free(BASE + 1, BASE + 3 * FRAME_SIZE - 1); // only frame 1 is whole
        assert_eq!(a.free_frames(), 1);
        a.add_free(0, BASE); // below the range
        a.add_free(BASE + 100 * FRAME_SIZE, BASE + 200 * FRAME_SIZE);
        assert_eq!(a.free_frames(), 1);
    }

    #[test]
    fn exhaust_and_free() {
        let mut a = alloc_with(130);
        let got: Vec<u64> = core::iter::from_fn(|| a.alloc()).collect();
        assert_eq!(got.len(), 130);
        assert_eq!(a.free_frames(), 0);
        let mut sorted = got.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 130, "a frame was handed out twice");
        a.free(got[77]).unwrap();
        assert_eq!(a.alloc(), Some(got[77]));
    }

    #[test]
    fn double_free_and_foreign_frames_are_errors() {
        let mut a = alloc_with(8);
        let f = a.alloc().unwrap();
        a.free(f).unwrap();
        assert_eq!(a.free(f), Err(FreeError::NotAllocated(f)));
        assert_eq!(a.free(BASE - FRAME_SIZE), Err(FreeError::OutOfRange(BASE - FRAME_SIZE)));
        assert_eq!(a.free(BASE + 1), Err(FreeError::OutOfRange(BASE + 1)));
        assert_eq!(a.free(BASE + 8 * FRAME_SIZE), Err(FreeError::OutOfRange(BASE + 8 * FRAME_SIZE)));
    }

    #[test]
    fn contiguous_aligned_blocks() {
        let mut a = alloc_with(2048);
        a.reserve(BASE + 5 * FRAME_SIZE, BASE + 6 * FRAME_SIZE);
        let b = a.alloc_contig(512, 512).unwrap();
        assert_eq!((b / FRAME_SIZE) % 512, 0);
        assert_eq!(b, BASE + 512 * FRAME_SIZE, "frame 5 is taken, so the first aligned block is skipped");
        let c = a.alloc_contig(3, 1).unwrap();
        assert_eq!(c, BASE, "frames 0..3 are free");
        assert_eq!(a.free_frames(), 2048 - 1 - 512 - 3);
        a.free_contig(b, 512).unwrap();
        assert_eq!(a.free_frames(), 2048 - 1 - 3);
    }

    #[test]
    fn contiguous_fails_when_fragmented() {
        let mut a = alloc_with(64);
        for i in (0..64).step_by(2) {
            a.reserve(BASE + i * FRAME_SIZE, BASE + (i + 1) * FRAME_SIZE);
        }
        assert_eq!(a.free_frames(), 32);
        assert_eq!(a.alloc_contig(2, 1), None);
        assert!(a.alloc().is_some());
    }
}
