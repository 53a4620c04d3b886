//! The kernel's GNU build id (the linker's SHA-1 of the image, from
//! `--build-id`, kept in .rodata by linker.ld). Printed at boot so the host
//! can tell whether a capture came from the ELF it decodes with.

extern "C" {
    static __build_id_start: u8;
    static __build_id_end: u8;
}

/// The note's descriptor bytes (empty if the image was linked without one).
pub fn bytes() -> &'static [u8] {
    let (start, end) = (&raw const __build_id_start, &raw const __build_id_end);
    let len = end as usize - start as usize;
    // SAFETY: the linker script places the note between the two symbols in
    // .rodata, which is mapped read-only for the kernel's whole life.
    let note = unsafe { core::slice::from_raw_parts(start, len) };
    // namesz, descsz, type, then the name padded to 4 bytes and the descriptor.
    let word = |i: usize| note.get(i..i + 4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]) as usize);
    let (Some(namesz), Some(descsz)) = (word(0), word(4)) else { return &[] };
    let desc = 12 + namesz.div_ceil(4) * 4;
    note.get(desc..desc + descsz).unwrap_or(&[])
}

/// The build id as lowercase hex.
pub struct Hex;

impl core::fmt::Display for Hex {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let b = bytes();
        if b.is_empty() {
            return f.write_str("none");
        }
        for x in b {
            write!(f, "{x:02x}")?;
        }
        Ok(())
    }
}
