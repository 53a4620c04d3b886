//! Compact encodings of one page's allocation tags (256 granules, 4 bits
//! each, 128 bytes as LDGM gives them: granule 2i in the low nibble of byte
//! i) for tag storage. Pages are seldom tagged at random: a whole page with
//! one tag, or a few allocations each with its own IRG tag, are runs of one
//! tag. So a page is stored as its runs when they are few, and as the raw
//! 128 bytes otherwise; every form decodes back to the same bytes.
//!
//! - Inline: up to `MAX_INLINE_RUNS` runs in one 64-bit value with bit 0
//!   set (the way an xarray value entry is told from a pointer): bits 1-3
//!   hold the run count minus one, then 4 bits of tag per run, then 8 bits
//!   of length minus one for every run but the last (the rest of the page).
//! - Grid: the page as 16 blocks of 16 granules (256 bytes, or any
//!   multiple) with one tag each, as a malloc's size class lays out a page
//!   of same-sized allocations with an IRG tag apiece: the 16 block tags in
//!   one 64-bit cell, 4 bits each, block 0 lowest.
//! - Runs: a byte with the run count minus one, then 12 bits a run (tag,
//!   length minus one), packed low bit first; used while shorter than raw.
//! - Raw: the 128 bytes.
//!
//! Pure logic, unit-tested on the host (random and adversarial layouts
//! round-trip through every form).

use alloc::vec::Vec;

pub const GRANULES: usize = 256;
pub const TAG_BYTES: usize = GRANULES / 2;
pub const MAX_INLINE_RUNS: usize = 5;

/// How a page is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// The value itself (bit 0 set).
    Inline(u64),
    /// The 16 block tags packed in a cell.
    Grid(u64),
    /// A Runs body of this many bytes (`write_runs` fills it).
    Runs(usize),
    Raw,
}

impl Form {
    /// Bytes of the out-of-line body (0 for an inline value).
    pub fn body_bytes(self) -> usize {
        match self {
            Form::Inline(_) | Form::Grid(_) => 0,
            Form::Runs(n) => n,
            Form::Raw => TAG_BYTES,
        }
    }
}

fn tag(tags: &[u8; TAG_BYTES], g: usize) -> u8 {
    (tags[g / 2] >> (4 * (g % 2))) & 0xF
}

/// The page's (tag, length) runs in granule order, without allocating.
fn each_run(tags: &[u8; TAG_BYTES], mut f: impl FnMut(u8, usize)) -> usize {
    let (mut count, mut start) = (0, 0);
    for g in 1..=GRANULES {
        if g == GRANULES || tag(tags, g) != tag(tags, start) {
            f(tag(tags, start), g - start);
            count += 1;
            start = g;
        }
    }
    count
}

/// How many runs the page has, a word of 16 granules at a time (the
/// swap-out path asks this of every tagged page; `each_run` walks granule
/// by granule and is used only to encode a page that has few runs).
fn run_count(tags: &[u8; TAG_BYTES]) -> usize {
    let word = |w: usize| u64::from_le_bytes(tags[8 * w..8 * w + 8].try_into().expect("8 bytes"));
    let mut boundaries = 0;
    for w in 0..TAG_BYTES / 8 {
        let x = word(w);
        // Nibble k of d is granule k's tag xor granule k + 1's; the mask
        // keeps one bit per nibble for k < 15 (the 16th pairs across words).
        let d = x ^ (x >> 4);
        boundaries += ((d | d >> 1 | d >> 2 | d >> 3) & 0x0111_1111_1111_1111).count_ones() as usize;
        if w + 1 < TAG_BYTES / 8 && x >> 60 != word(w + 1) & 0xF {
            boundaries += 1;
        }
    }
    boundaries + 1
}

fn runs_len(n: usize) -> usize {
    1 + (12 * n).div_ceil(8)
}

/// The smallest form of `tags`.
pub fn form(tags: &[u8; TAG_BYTES]) -> Form {
    let n = run_count(tags);
    if n <= MAX_INLINE_RUNS {
        let mut v = 1 | ((n as u64 - 1) << 1);
        let mut k = 0;
        each_run(tags, |t, len| {
            v |= u64::from(t) << (4 + 4 * k);
            if k + 1 < n {
                v |= ((len - 1) as u64) << (4 + 4 * n + 8 * k);
            }
            k += 1;
        });
        return Form::Inline(v);
    }
    if let Some(cell) = grid(tags) {
        return Form::Grid(cell);
    }
    if runs_len(n) < TAG_BYTES {
        return Form::Runs(runs_len(n));
    }
    Form::Raw
}

/// Granules a Grid block spans (16 blocks a page).
const GRID_BLOCK: usize = 16;

/// The page as 16 blocks of one tag each, packed; None if a block holds
/// two tags. A block is 8 bytes of LDGM's layout, so a word compare.
fn grid(tags: &[u8; TAG_BYTES]) -> Option<u64> {
    let mut cell = 0u64;
    for (b, block) in tags.chunks_exact(GRID_BLOCK / 2).enumerate() {
        let t = block[0] & 0xF;
        if block.iter().any(|&x| x != t * 0x11) {
            return None;
        }
        cell |= u64::from(t) << (4 * b);
    }
    Some(cell)
}

/// The tags of a Grid cell (every value is one).
pub fn decode_grid(cell: u64) -> [u8; TAG_BYTES] {
    core::array::from_fn(|i| (((cell >> (4 * (2 * i / GRID_BLOCK))) & 0xF) as u8) * 0x11)
}

/// Appends the Runs body of `tags` to `out` (the caller reserved
/// `Form::Runs(n)`'s n bytes, so nothing is allocated here).
pub fn write_runs(tags: &[u8; TAG_BYTES], out: &mut Vec<u8>) {
    let n = run_count(tags);
    out.push((n - 1) as u8);
    let (mut acc, mut bits) = (0u32, 0);
    each_run(tags, |t, len| {
        acc |= (u32::from(t) | (((len - 1) as u32) << 4)) << bits;
        bits += 12;
        while bits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            bits -= 8;
        }
    });
    if bits > 0 {
        out.push(acc as u8);
    }
}

fn fill(out: &mut [u8; TAG_BYTES], from: usize, n: usize, t: u8) {
    for g in from..from + n {
        out[g / 2] |= t << (4 * (g % 2));
    }
}

/// Rebuilds the tags from the run list; None unless the runs cover the
/// page exactly.
fn from_runs(r: impl Iterator<Item = (u8, usize)>) -> Option<[u8; TAG_BYTES]> {
    let mut out = [0u8; TAG_BYTES];
    let mut at = 0;
    for (t, n) in r {
        if n == 0 || at + n > GRANULES {
            return None;
        }
        fill(&mut out, at, n, t);
        at += n;
    }
    (at == GRANULES).then_some(out)
}

/// The tags of an inline value; None if `v` is not one `encode` makes.
pub fn decode_inline(v: u64) -> Option<[u8; TAG_BYTES]> {
    if v & 1 == 0 {
        return None;
    }
    let n = ((v >> 1) & 7) as usize + 1;
    if n > MAX_INLINE_RUNS {
        return None;
    }
    let tag_of = |k: usize| ((v >> (4 + 4 * k)) & 0xF) as u8;
    let len_of = |k: usize| ((v >> (4 + 4 * n + 8 * k)) & 0xFF) as usize + 1;
    let first: usize = (0..n - 1).map(len_of).sum();
    if first >= GRANULES {
        return None;
    }
    from_runs((0..n).map(|k| (tag_of(k), if k + 1 == n { GRANULES - first } else { len_of(k) })))
}

/// The tags of a Runs body; None if it is malformed.
pub fn decode_runs(b: &[u8]) -> Option<[u8; TAG_BYTES]> {
    let n = usize::from(*b.first()?) + 1;
    if b.len() != runs_len(n) {
        return None;
    }
    let field = |k: usize| {
        let bit = 12 * k;
        let lo = usize::from(b[1 + bit / 8]);
        let hi = b.get(2 + bit / 8).map_or(0, |&x| usize::from(x));
        ((lo | (hi << 8)) >> (bit % 8)) & 0xFFF
    };
    from_runs((0..n).map(|k| ((field(k) & 0xF) as u8, (field(k) >> 4) + 1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Packs granule tags into LDGM's 128-byte layout.
    fn page(g: impl Fn(usize) -> u8) -> [u8; TAG_BYTES] {
        core::array::from_fn(|i| (g(2 * i) & 0xF) | ((g(2 * i + 1) & 0xF) << 4))
    }

    /// Encodes, decodes through the form chosen, and checks the bytes and
    /// the size; returns the form.
    fn round_trip(tags: &[u8; TAG_BYTES]) -> Form {
        assert_eq!(run_count(tags), each_run(tags, |_, _| ()), "the word-wise count against the granule walk");
        let f = form(tags);
        let back = match f {
            Form::Inline(v) => {
                assert_eq!(v & 1, 1, "an inline value has bit 0 set");
                decode_inline(v)
            }
            Form::Runs(n) => {
                let mut b = Vec::with_capacity(n);
                write_runs(tags, &mut b);
                assert_eq!(b.len(), n, "the body is the size form() said");
                assert_eq!(b.capacity(), n, "write_runs stays within what was reserved");
                assert!(n < TAG_BYTES);
                decode_runs(&b)
            }
            Form::Grid(cell) => Some(decode_grid(cell)),
            Form::Raw => Some(*tags),
        };
        assert_eq!(back.as_ref(), Some(tags), "{f:?} did not round-trip");
        f
    }

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn typical_layouts_are_inline() {
        for t in 0..16 {
            assert!(matches!(round_trip(&page(|_| t)), Form::Inline(_)), "one tag {t}");
        }
        // Allocations of 1 KiB, 512 B + 1 KiB + 2.5 KiB, and 5 of uneven
        // sizes (the last one running to the end), each with its own tag.
        assert!(matches!(round_trip(&page(|g| (g / 64) as u8 + 1)), Form::Inline(_)));
        assert!(matches!(
            round_trip(&page(|g| if g < 32 {
                3
            } else if g < 96 {
                9
            } else {
                14
            })),
            Form::Inline(_)
        ));
        let bounds = [1, 2, 200, 255];
        let t = page(|g| bounds.iter().filter(|&&b| g >= b).count() as u8 * 3);
        assert!(matches!(round_trip(&t), Form::Inline(_)));
    }

    #[test]
    fn a_size_class_of_tagged_allocations_is_a_grid() {
        // 16 allocations of 256 bytes with IRG tags (neighbours may repeat).
        let irg = [3u8, 3, 9, 1, 15, 2, 2, 2, 7, 11, 4, 6, 13, 8, 5, 10];
        let f = round_trip(&page(|g| irg[g / 16]));
        assert!(matches!(f, Form::Grid(_)), "{f:?}");
        // 8 allocations of 512 bytes are a grid too.
        assert!(matches!(round_trip(&page(|g| (g / 32) as u8 * 2 + 1)), Form::Grid(_)));
        // Runs that miss the block boundaries by one granule are not a grid.
        assert!(matches!(round_trip(&page(|g| ((g + 1) / 16 % 16) as u8)), Form::Runs(_)));
        // A block size that needs more than one cell (64-byte allocations).
        assert!(matches!(round_trip(&page(|g| (g / 4 % 15) as u8 + 1)), Form::Runs(_)));
    }

    #[test]
    fn six_runs_and_more_go_out_of_line_smaller_than_raw() {
        // 16 allocations of 256 bytes starting 32 bytes in: 17 runs, 27 bytes.
        let f = round_trip(&page(|g| ((g + 2) / 16) as u8));
        assert_eq!(f, Form::Runs(27));
        assert_eq!(round_trip(&page(|g| (g / 43 % 2) as u8 + 1)), Form::Runs(10), "6 runs");
        // 84 runs still fit in 127 bytes; 85 do not.
        assert_eq!(round_trip(&page(|g| if g < 84 { (g % 2) as u8 } else { 1 })), Form::Runs(127));
        assert_eq!(round_trip(&page(|g| if g < 85 { (g % 2) as u8 } else { 0 })), Form::Raw);
    }

    #[test]
    fn adversarial_layouts_are_raw_and_lossless() {
        assert_eq!(round_trip(&page(|g| (g % 2) as u8 * 15)), Form::Raw, "every granule differs from the next");
        assert_eq!(round_trip(&page(|g| (g % 15) as u8 + 1)), Form::Raw, "a ramp");
        // One odd granule at each end and in the middle.
        for at in [0, 1, 127, 128, 254, 255] {
            assert!(matches!(round_trip(&page(|g| if g == at { 7 } else { 2 })), Form::Inline(_)), "{at}");
        }
    }

    #[test]
    fn random_layouts_round_trip() {
        let mut r = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            // Random runs: from a few long ones to many short ones.
            let max = 1 + (r.next() % 64) as usize;
            let mut tags = [0u8; TAG_BYTES];
            let mut g = 0;
            while g < GRANULES {
                let n = (1 + (r.next() as usize % max)).min(GRANULES - g);
                let t = (r.next() % 16) as u8;
                fill(&mut tags, g, n, t);
                g += n;
            }
            round_trip(&tags);
            let random: [u8; TAG_BYTES] = core::array::from_fn(|_| r.next() as u8);
            round_trip(&random);
            let blocks = r.next();
            let f = round_trip(&page(|g| (blocks >> (4 * (g / 16))) as u8 & 0xF));
            assert!(matches!(f, Form::Grid(_) | Form::Inline(_)), "16 blocks of one tag each: {f:?}");
        }
    }

    #[test]
    fn malformed_values_are_refused_not_misread() {
        assert_eq!(decode_inline(0), None, "bit 0 clear: not an inline value");
        assert_eq!(decode_inline(1 | (7 << 1)), None, "8 runs do not fit inline");
        // Two runs whose first one is the whole page leave none for the second.
        assert_eq!(decode_inline(1 | (1 << 1) | (255 << 12)), None);
        assert_eq!(decode_runs(&[]), None);
        assert_eq!(decode_runs(&[5, 0, 0]), None, "too short for 6 runs");
        // Six runs of one granule do not cover the page.
        assert_eq!(decode_runs(&[5, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
