//! Fixed-capacity lists of physical ranges, for the memory facts boot reads
//! before the heap exists. Pure logic: host unit tests include this file.

/// Regions of one kind a board may list (RAM banks, carve-outs).
pub const MAX_RANGES: usize = 128;

/// A fixed-capacity list of physical ranges as (base, size), usable before
/// the heap exists.
#[derive(Clone, Copy)]
pub struct Ranges {
    n: usize,
    r: [(u64, u64); MAX_RANGES],
}

impl Ranges {
    pub const fn new() -> Self {
        Ranges { n: 0, r: [(0, 0); MAX_RANGES] }
    }

    pub fn push(&mut self, base: u64, size: u64) -> Result<(), &'static str> {
        if size == 0 {
            return Ok(());
        }
        let slot = self.r.get_mut(self.n).ok_or("more memory ranges in the DTB than the kernel keeps (128)")?;
        *slot = (base, size);
        self.n += 1;
        Ok(())
    }

    /// As `push`, but extends the last range instead when this one starts
    /// where it ends (a sorted firmware map then takes few slots).
    pub fn push_joined(&mut self, base: u64, size: u64) -> Result<(), &'static str> {
        if let Some(last) = self.n.checked_sub(1).map(|i| &mut self.r[i]) {
            if last.0.checked_add(last.1) == Some(base) {
                last.1 += size;
                return Ok(());
            }
        }
        self.push(base, size)
    }

    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.r[..self.n].iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The smallest [start, end) holding every range.
    pub fn span(&self) -> (u64, u64) {
        let start = self.iter().map(|r| r.0).min().unwrap_or(0);
        let end = self.iter().map(|r| r.0.saturating_add(r.1)).max().unwrap_or(0);
        (start, end)
    }

    /// Calls `f` with each piece of [start, end) that no range of `self`
    /// overlaps, the ranges widened to whole 4 KiB frames.
    pub fn each_gap(&self, start: u64, end: u64, mut f: impl FnMut(u64, u64)) {
        let frame = |a: u64| a & !0xfff;
        let mut cur = start;
        while cur < end {
            let hole = self
                .iter()
                .map(|(b, s)| (frame(b), frame(b.saturating_add(s).saturating_add(0xfff))))
                .filter(|&(b, e)| b < end && e > cur)
                .min_by_key(|h| h.0);
            match hole {
                None => {
                    f(cur, end);
                    return;
                }
                Some((b, e)) => {
                    if b > cur {
                        f(cur, b);
                    }
                    cur = e;
                }
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.iter().map(|r| r.1).sum()
    }
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    fn gaps(holes: &[(u64, u64)], start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut r = Ranges::new();
        for &(b, s) in holes {
            r.push(b, s).unwrap();
        }
        let mut out = Vec::new();
        r.each_gap(start, end, |s, e| out.push((s, e)));
        out
    }

    #[test]
    fn gaps_around_holes_in_any_order() {
        assert_eq!(gaps(&[], 0x1000, 0x9000), [(0x1000, 0x9000)]);
        assert_eq!(
            gaps(&[(0x6000, 0x1000), (0x2000, 0x1000)], 0x1000, 0x9000),
            [(0x1000, 0x2000), (0x3000, 0x6000), (0x7000, 0x9000)]
        );
    }

    #[test]
    fn holes_widen_to_whole_frames_and_clip_to_the_range() {
        // 0x2800+0x100 touches the frame at 0x2000 only; a hole covering the
        // start and one past the end leave just the middle.
        assert_eq!(gaps(&[(0x2800, 0x100)], 0x1000, 0x4000), [(0x1000, 0x2000), (0x3000, 0x4000)]);
        assert_eq!(gaps(&[(0x0, 0x2000), (0x3000, 0x10000)], 0x1000, 0x4000), [(0x2000, 0x3000)]);
        assert_eq!(gaps(&[(0x0, 0x10000)], 0x1000, 0x4000), []);
    }

    #[test]
    fn overlapping_holes_and_capacity() {
        assert_eq!(gaps(&[(0x2000, 0x3000), (0x3000, 0x1000)], 0x1000, 0x8000), [(0x1000, 0x2000), (0x5000, 0x8000)]);
        let mut r = Ranges::new();
        for i in 0..MAX_RANGES as u64 {
            r.push(i << 12, 0x1000).unwrap();
        }
        assert!(r.push(1 << 40, 0x1000).is_err(), "a 33rd range must be refused, not dropped");
        r.push(1 << 40, 0).unwrap(); // empty ranges take no slot
        assert_eq!(r.span(), (0, (MAX_RANGES as u64) << 12));
        assert_eq!(r.total(), (MAX_RANGES as u64) << 12);
    }
}
