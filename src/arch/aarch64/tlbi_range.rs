//! The operands of FEAT_TLBIRANGE operations (TLBI RVAE1, RVAE1IS), kept
//! apart from the instructions so the host tests can check that the
//! operations cover a range exactly (QEMU turns any range wider than its
//! own TLB into a full flush, so on the model a wrong operand would go
//! unseen).
//!
//! Operand (Arm ARM, TLBI RVAE1IS): ASID[63:48], TG[47:46] (1: 4 KiB),
//! SCALE[45:44], NUM[43:39], TTL[38:37] (0: any level), BaseADDR[36:0] in
//! pages; it covers (NUM + 1) << (5 * SCALE + 1) pages from BaseADDR.

/// Pages one operation covers: `blocks` (1..=32) of 2^(5*scale+1).
pub fn op_pages(scale: u64, blocks: u64) -> usize {
    (blocks as usize) << (5 * scale + 1)
}

/// The operand for `blocks` blocks at `scale` from `va`.
pub fn operand(va: usize, asid: u16, scale: u64, blocks: u64) -> u64 {
    debug_assert!(scale <= 3 && (1..=32).contains(&blocks));
    ((asid as u64) << 48) | (1 << 46) | (scale << 44) | ((blocks - 1) << 39) | ((va as u64 >> 12) & ((1 << 37) - 1))
}

/// One step of invalidating `left` pages (at least 2): the largest
/// operation that does not pass the end, as (scale, blocks).
pub fn next_op(left: usize) -> (u64, u64) {
    let scale = (0..=3u64).rev().find(|s| left >> (5 * s + 1) != 0).unwrap_or(0);
    let blocks = ((left >> (5 * scale + 1)) as u64).min(32);
    (scale, blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the architecture says an operand covers: (first page, pages).
    fn decode(arg: u64) -> (u64, u64) {
        assert_eq!((arg >> 46) & 3, 1, "TG must say 4 KiB");
        assert_eq!((arg >> 37) & 3, 0, "TTL 0: entries of any level");
        let (scale, num) = ((arg >> 44) & 3, (arg >> 39) & 0x1f);
        (arg & ((1 << 37) - 1), (num + 1) << (5 * scale + 1))
    }

    /// The operations for [start, start + pages): range ones while two or
    /// more pages are left, then a single page (as tlb::flush_range runs).
    fn cover(start: usize, pages: usize, asid: u16) -> Vec<(u64, u64)> {
        let (mut va, mut left, mut out) = (start, pages, Vec::new());
        while left > 0 {
            if left == 1 {
                out.push(((va >> 12) as u64, 1));
                break;
            }
            let (scale, blocks) = next_op(left);
            let arg = operand(va, asid, scale, blocks);
            assert_eq!(arg >> 48, asid as u64);
            out.push(decode(arg));
            va += op_pages(scale, blocks) << 12;
            left -= op_pages(scale, blocks);
        }
        out
    }

    fn check(start: usize, pages: usize) {
        let ops = cover(start, pages, 0x1234);
        let mut next = (start >> 12) as u64;
        for (first, n) in &ops {
            assert_eq!(*first, next, "a gap or overlap at page {next:#x} ({start:#x}, {pages} pages): {ops:?}");
            next += n;
        }
        assert_eq!(next, ((start >> 12) + pages) as u64, "{pages} pages at {start:#x} covered as {ops:?}");
        // At most a few operations per scale, plus the odd page.
        assert!(ops.len() <= 4 * 2 + 1 + pages / (32 << 16), "{pages} pages took {} operations", ops.len());
    }

    #[test]
    fn ranges_are_covered_exactly() {
        for pages in 1..=2100 {
            check(0x10_0000_0000 + pages * 0x3000, pages);
        }
        for pages in [4095, 4096, 65535, 65536, 1 << 20, (1 << 21) + 1, 3 << 21] {
            check(0x7f_0000_0000, pages);
        }
    }

    #[test]
    fn a_2mib_block_is_one_operation() {
        assert_eq!(cover(0x4000_0000, 512, 1).len(), 1);
        assert_eq!(cover(0x4000_0000, 100, 1).len(), 2); // 64 + 36
    }
}
