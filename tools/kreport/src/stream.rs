//! Splits the kernel's serial stream into plain-text pieces and defmt frames.
//! Every piece ends with 0x00; a defmt frame starts with 0xFF (see
//! src/console.rs in the kernel).

pub const FRAME_MARKER: u8 = 0xFF;

#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    /// rzcobs bytes of one defmt frame, without the marker and the 0x00.
    Frame(Vec<u8>),
}

/// Accumulates bytes and yields complete pieces.
#[derive(Default)]
pub struct Splitter {
    buf: Vec<u8>,
}

impl Splitter {
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Piece> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == 0 {
                let piece = std::mem::take(&mut self.buf);
                if let Some(p) = classify(piece) {
                    out.push(p);
                }
            } else {
                self.buf.push(b);
            }
        }
        out
    }

    /// What is left when the stream ends (output cut off mid-line).
    pub fn finish(&mut self) -> Option<Piece> {
        classify(std::mem::take(&mut self.buf))
    }
}

fn classify(piece: Vec<u8>) -> Option<Piece> {
    match piece.first() {
        None => None,
        Some(&FRAME_MARKER) => Some(Piece::Frame(piece[1..].to_vec())),
        Some(_) => Some(Piece::Text(String::from_utf8_lossy(&piece).into_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_frames_in_order_across_pushes() {
        let mut s = Splitter::default();
        let mut got = s.push(b"PASS: a::b\n\0\xFF\x01\x02");
        got.extend(s.push(b"\x03\0hello"));
        got.extend(s.push(b"\n\0"));
        assert_eq!(
            got,
            vec![Piece::Text("PASS: a::b\n".into()), Piece::Frame(vec![1, 2, 3]), Piece::Text("hello\n".into())]
        );
        assert_eq!(s.finish(), None);
    }

    #[test]
    fn unterminated_tail_is_returned_by_finish() {
        let mut s = Splitter::default();
        assert!(s.push(b"RUN  x::y\n\0PANIC at").len() == 1);
        assert_eq!(s.finish(), Some(Piece::Text("PANIC at".into())));
    }

    #[test]
    fn empty_pieces_are_dropped() {
        let mut s = Splitter::default();
        assert!(s.push(b"\0\0\0").is_empty());
    }
}
