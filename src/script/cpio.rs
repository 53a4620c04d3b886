//! The initrd's format: a cpio archive in the "newc" form (the one Linux's
//! initramfs reads: `find . | cpio -o -H newc`). Only regular files are
//! kept. Pure logic (the host unit tests include this file).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

const MAGIC: &[u8] = b"070701";
const HEADER: usize = 110;
const S_IFMT: u32 = 0o170000;
const S_IFREG: u32 = 0o100000;

fn hex(field: &[u8]) -> Option<u32> {
    u32::from_str_radix(core::str::from_utf8(field).ok()?, 16).ok()
}

fn align4(n: usize) -> usize {
    n.div_ceil(4) * 4
}

/// The regular files of the archive, (name, contents), in archive order.
pub fn files(mut a: &[u8]) -> Result<Vec<(String, &[u8])>, String> {
    let mut out = Vec::new();
    let mut offset = 0usize;
    loop {
        if a.len() < HEADER || &a[..6] != MAGIC {
            return Err(format!("not a cpio newc archive at byte {offset} (expected the magic 070701)"));
        }
        let field =
            |i: usize| hex(&a[6 + 8 * i..14 + 8 * i]).ok_or_else(|| format!("bad header field at byte {offset}"));
        let (mode, size, namesize) = (field(1)?, field(6)? as usize, field(11)? as usize);
        let name_end = HEADER + namesize;
        let data = align4(name_end);
        if namesize == 0 || a.len() < data || a.len() < data + size {
            return Err(format!("the archive is cut short at byte {offset}"));
        }
        let name = core::str::from_utf8(&a[HEADER..name_end - 1])
            .map_err(|_| format!("a name at byte {offset} is not UTF-8"))?;
        if name == "TRAILER!!!" {
            return Ok(out);
        }
        if mode & S_IFMT == S_IFREG {
            out.push((String::from(name.trim_start_matches("./")), &a[data..data + size]));
        }
        let next = align4(data + size).min(a.len());
        a = &a[next..];
        offset += next;
    }
}

/// A newc archive of `files` (for the host side and the tests).
#[cfg_attr(target_os = "none", allow(dead_code))]
pub fn archive(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut entry = |ino: usize, name: &str, mode: u32, data: &[u8]| {
        let fields = [ino as u32, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        out.extend_from_slice(MAGIC);
        for f in fields {
            out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.resize(align4(out.len()), 0);
        out.extend_from_slice(data);
        out.resize(align4(out.len()), 0);
    };
    for (i, (name, data)) in files.iter().enumerate() {
        entry(i + 1, name, S_IFREG | 0o644, data);
    }
    entry(0, "TRAILER!!!", 0, &[]);
    out
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let a = archive(&[("a.txt", b"task A\n"), ("dir/b.txt", b"")]);
        let f = files(&a).unwrap();
        assert_eq!(f, [(String::from("a.txt"), &b"task A\n"[..]), (String::from("dir/b.txt"), &b""[..])]);
    }

    #[test]
    fn rejects_what_is_not_newc() {
        assert!(files(b"hello").unwrap_err().contains("not a cpio newc"));
        let mut a = archive(&[("a.txt", b"0123456789")]);
        a.truncate(120);
        assert!(files(&a).unwrap_err().contains("cut short"));
    }
}
