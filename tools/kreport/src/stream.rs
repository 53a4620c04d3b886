//! Splits the kernel's serial stream into plain-text lines and defmt
//! frames. Both are lines: a frame line is `DEFMT ` and the base64 of the
//! frame's rzcobs bytes (see src/console.rs in the kernel); every other
//! line is text. A line that cannot be decoded as a frame is shown as text
//! and counted, so a damaged capture loses only its damaged lines.

pub const FRAME_PREFIX: &str = "DEFMT ";

#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// One line of text, with its newline when it had one.
    Text(String),
    /// rzcobs bytes of one defmt frame, without the 0x00 that ends it.
    Frame(Vec<u8>),
    /// A `DEFMT ` line whose base64 is damaged.
    BadFrame(String),
}

/// Accumulates bytes and yields complete lines.
#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
}

impl Splitter {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        for &b in bytes {
            self.buf.push(b);
            if b == b'\n' {
                let line = std::mem::take(&mut self.buf);
                out.extend(classify(line));
            }
        }
        out
    }

    /// What is left when the stream ends (output cut off mid-line).
    pub fn finish(&mut self) -> Option<Piece> {
        classify(std::mem::take(&mut self.buf))
    }
}

fn classify(line: Vec<u8>) -> Option<Piece> {
    if line.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&line).into_owned();
    match text.strip_prefix(FRAME_PREFIX) {
        Some(b64) => Some(match base64_decode(b64.trim_end_matches(['\r', '\n'])) {
            Some(bytes) if !bytes.is_empty() => Piece::Frame(bytes),
            _ => Piece::BadFrame(text.trim_end().to_string()),
        }),
        None => Some(Piece::Text(text)),
    }
}

/// Standard base64 with padding; None on any other character.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let s = s.as_bytes();
    if s.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    for chunk in s.chunks(4) {
        let pad = chunk.iter().rev().take_while(|&&c| c == b'=').count();
        if pad > 2 || chunk[..4 - pad].contains(&b'=') {
            return None;
        }
        let mut v = 0u32;
        for &c in &chunk[..4 - pad] {
            v = (v << 6) | val(c)?;
        }
        v <<= 6 * pad as u32;
        let bytes = [(v >> 16) as u8, (v >> 8) as u8, v as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_frames_in_order_across_pushes() {
        let mut s = Splitter::default();
        let mut got = s.push(b"PASS: a::b\nDEFMT AQ");
        got.extend(s.push(b"ID\nhello"));
        got.extend(s.push(b"\n"));
        assert_eq!(
            got,
            vec![Piece::Text("PASS: a::b\n".into()), Piece::Frame(vec![1, 2, 3]), Piece::Text("hello\n".into())]
        );
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn unterminated_tail_is_returned_by_finish() {
        let mut s = Splitter::default();
        assert!(s.push(b"RUN  x::y\nPANIC at").len() == 1);
        assert_eq!(s.finish(), Some(Piece::Text("PANIC at".into())));
    }

    #[test]
    fn a_damaged_frame_loses_only_its_line() {
        let mut s = Splitter::default();
        let got = s.push("DEFMT AQ\u{fffd}D\nPASS: a::b\nDEFMT AQI\n".as_bytes());
        assert!(matches!(&got[0], Piece::BadFrame(_)));
        assert_eq!(got[1], Piece::Text("PASS: a::b\n".into()));
        assert!(matches!(&got[2], Piece::BadFrame(_)), "unpadded base64 is damaged");
    }

    #[test]
    fn base64_round_trips() {
        assert_eq!(base64_decode("AQID"), Some(vec![1, 2, 3]));
        assert_eq!(base64_decode("AQI="), Some(vec![1, 2]));
        assert_eq!(base64_decode("AQ=="), Some(vec![1]));
        assert_eq!(base64_decode("A=QI"), None);
        assert_eq!(base64_decode("AQ"), None);
    }
}
