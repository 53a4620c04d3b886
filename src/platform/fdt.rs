//! A small reader for flattened device trees (the devicetree specification's
//! DTB format, version 17): the header, the memory reservation block, nodes,
//! properties and `reg` cells. It needs no heap and never panics on a bad
//! blob: anything out of bounds or out of place reads as absent.
//!
//! Hand-written because the fdt crates on offer (fdt 0.1.5 and its fork
//! flat_device_tree 3.1) lose `/chosen` in the tree QEMU passes with `-dtb`:
//! they stop at FDT_NOP tokens between properties, which libfdt leaves behind
//! whenever a property is deleted or shrunk. Firmware edits trees the same way.

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;
const HEADER_SIZE: usize = 40;

/// The header fields this reader checks, in their order in the blob.
const OFF_TOTALSIZE: usize = 4;
const OFF_STRUCT: usize = 8;
const OFF_STRINGS: usize = 12;
const OFF_RSVMAP: usize = 16;
const OFF_LAST_COMP: usize = 24;
const OFF_SIZE_STRINGS: usize = 32;
const OFF_SIZE_STRUCT: usize = 36;

fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off.checked_add(4)?)?.try_into().ok()?))
}

fn be64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_be_bytes(b.get(off..off.checked_add(8)?)?.try_into().ok()?))
}

/// The NUL-terminated string at `off`, if it is UTF-8 and ends inside `b`.
fn cstr(b: &[u8], off: usize) -> Option<&str> {
    let rest = b.get(off..)?;
    let len = rest.iter().position(|&c| c == 0)?;
    core::str::from_utf8(&rest[..len]).ok()
}

const fn align4(x: usize) -> usize {
    (x + 3) & !3
}

/// Whether `b` starts with a DTB header, and its total size if so.
pub fn total_size(header: &[u8]) -> Option<usize> {
    (be32(header, 0)? == FDT_MAGIC).then_some(())?;
    Some(be32(header, OFF_TOTALSIZE)? as usize)
}

#[derive(Clone, Copy)]
pub struct Fdt<'a> {
    blob: &'a [u8],
    structs: &'a [u8],
    strings: &'a [u8],
}

enum Token<'a> {
    BeginNode(&'a str),
    EndNode,
    Prop(&'a str, &'a [u8]),
    Nop,
    End,
}

impl<'a> Fdt<'a> {
    /// Checks the header and that every block lies inside `blob`.
    pub fn new(blob: &'a [u8]) -> Result<Self, &'static str> {
        let size = total_size(blob).ok_or("not a DTB (bad magic)")?;
        if blob.len() < size || size < HEADER_SIZE {
            return Err("the DTB's totalsize does not match the blob");
        }
        let blob = &blob[..size];
        let field = |off| be32(blob, off).map(|v| v as usize).ok_or("truncated DTB header");
        if field(OFF_LAST_COMP)? > 17 {
            return Err("DTB format newer than version 17");
        }
        let block = |off: usize, len: usize| {
            blob.get(off..off.checked_add(len)?).ok_or("a DTB block lies outside the blob").ok()
        };
        let structs =
            block(field(OFF_STRUCT)?, field(OFF_SIZE_STRUCT)?).ok_or("the DTB's structure block is out of bounds")?;
        let strings =
            block(field(OFF_STRINGS)?, field(OFF_SIZE_STRINGS)?).ok_or("the DTB's strings block is out of bounds")?;
        let f = Fdt { blob, structs, strings };
        match f.token(0) {
            Some((Token::BeginNode(_), _)) => Ok(f),
            _ => Err("the DTB's structure block does not start with the root node"),
        }
    }

    pub fn total_size(&self) -> usize {
        self.blob.len()
    }

    /// The /memreserve/ entries as (address, size).
    pub fn mem_reservations(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let blob = self.blob;
        let mut off = be32(blob, OFF_RSVMAP).map_or(usize::MAX, |o| o as usize);
        core::iter::from_fn(move || {
            let (a, s) = (be64(blob, off)?, be64(blob, off.checked_add(8)?)?);
            off += 16;
            (a != 0 || s != 0).then_some((a, s))
        })
    }

    /// The token at `off` in the structure block and the offset after it.
    fn token(&self, off: usize) -> Option<(Token<'a>, usize)> {
        let s = self.structs;
        let next = off.checked_add(4)?;
        match be32(s, off)? {
            FDT_BEGIN_NODE => {
                let name = cstr(s, next)?;
                Some((Token::BeginNode(name), align4(next + name.len() + 1)))
            }
            FDT_END_NODE => Some((Token::EndNode, next)),
            FDT_PROP => {
                let len = be32(s, next)? as usize;
                let name = cstr(self.strings, be32(s, next + 4)? as usize)?;
                let value = s.get(next + 8..(next + 8).checked_add(len)?)?;
                Some((Token::Prop(name, value), align4(next + 8 + len)))
            }
            FDT_NOP => Some((Token::Nop, next)),
            FDT_END => Some((Token::End, next)),
            _ => None,
        }
    }

    pub fn root(&self) -> Node<'a> {
        let (name, body) = match self.token(0) {
            Some((Token::BeginNode(n), b)) => (n, b),
            _ => ("", usize::MAX), // unreachable: new() checked it
        };
        Node { fdt: *self, name, body, cells: (2, 1) }
    }

    /// The node at an absolute path such as `/reserved-memory` or
    /// `/pl011@9000000`; a component without `@` also matches a node name
    /// that has a unit address.
    pub fn find(&self, path: &str) -> Option<Node<'a>> {
        let mut n = self.root();
        for comp in path.split('/').filter(|c| !c.is_empty()) {
            n = n.children().find(|c| c.name == comp || (!comp.contains('@') && c.base_name() == comp))?;
        }
        Some(n)
    }

    /// Every node, parents before children (to a depth of 16, far more
    /// than real trees use).
    pub fn nodes(&self) -> impl Iterator<Item = Node<'a>> + 'a {
        // (node, offset of its next unvisited child) for each open level.
        let mut stack: [(Option<Node<'a>>, usize); 16] = [(None, 0); 16];
        let mut depth = 0usize;
        let mut root = Some(self.root());
        core::iter::from_fn(move || {
            if let Some(r) = root.take() {
                stack[0] = (Some(r), r.children_start());
                return Some(r);
            }
            loop {
                let parent = stack[depth].0?;
                match parent.child_at(stack[depth].1) {
                    Some((child, after)) => {
                        stack[depth].1 = after;
                        if depth + 1 < stack.len() {
                            depth += 1;
                            stack[depth] = (Some(child), child.children_start());
                        }
                        return Some(child);
                    }
                    None => {
                        stack[depth].0 = None;
                        depth = depth.checked_sub(1)?;
                    }
                }
            }
        })
    }

    /// The first node whose `compatible` list holds `compat` and whose
    /// `status` is absent or "okay".
    pub fn find_compatible(&self, compat: &str) -> Option<Node<'a>> {
        self.nodes().find(|n| n.is_compatible(compat) && n.is_enabled())
    }

    /// The node `/chosen/stdout-path` names (an absolute path or an alias,
    /// without the `:options` suffix).
    pub fn stdout(&self) -> Option<Node<'a>> {
        let path = self.find("/chosen")?.prop_str("stdout-path")?;
        let path = path.split(':').next()?;
        if path.starts_with('/') {
            self.find(path)
        } else {
            self.find(self.find("/aliases")?.prop_str(path)?)
        }
    }
}

/// A node: its name and where its properties start.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    pub name: &'a str,
    /// Offset of the first token after the node's name.
    body: usize,
    /// The parent's (#address-cells, #size-cells), which `reg` is read with.
    cells: (u32, u32),
}

impl<'a> Node<'a> {
    /// The name without its unit address.
    pub fn base_name(&self) -> &'a str {
        self.name.split('@').next().unwrap_or(self.name)
    }

    pub fn props(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + 'a {
        let fdt = self.fdt;
        let mut off = self.body;
        core::iter::from_fn(move || loop {
            match fdt.token(off)? {
                (Token::Prop(n, v), next) => {
                    off = next;
                    return Some((n, v));
                }
                (Token::Nop, next) => off = next,
                _ => return None,
            }
        })
    }

    pub fn prop(&self, name: &str) -> Option<&'a [u8]> {
        self.props().find(|p| p.0 == name).map(|p| p.1)
    }

    /// A string property (its first string if it is a list).
    pub fn prop_str(&self, name: &str) -> Option<&'a str> {
        let v = self.prop(name)?;
        let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
        core::str::from_utf8(&v[..end]).ok()
    }

    pub fn prop_u32(&self, name: &str) -> Option<u32> {
        let v = self.prop(name)?;
        (v.len() == 4).then(|| be32(v, 0))?
    }

    pub fn is_compatible(&self, compat: &str) -> bool {
        self.prop("compatible").is_some_and(|v| v.split(|&c| c == 0).any(|s| s == compat.as_bytes()))
    }

    pub fn is_enabled(&self) -> bool {
        matches!(self.prop_str("status"), None | Some("okay") | Some("ok"))
    }

    /// The (#address-cells, #size-cells) this node gives its children.
    fn child_cells(&self) -> (u32, u32) {
        (self.prop_u32("#address-cells").unwrap_or(2), self.prop_u32("#size-cells").unwrap_or(1))
    }

    /// The `reg` entries as (address, size); empty if there is no `reg` or
    /// its cells do not fit in 64 bits.
    pub fn reg(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        let (ac, sc) = (self.cells.0 as usize, self.cells.1 as usize);
        let ok = (1..=2).contains(&ac) && sc <= 2;
        let v = if ok { self.prop("reg").unwrap_or(&[]) } else { &[] };
        let entry = (ac + sc) * 4;
        let read = |b: &[u8], cells: usize| -> Option<u64> {
            match cells {
                0 => Some(0),
                1 => be32(b, 0).map(u64::from),
                _ => be64(b, 0),
            }
        };
        v.chunks_exact(entry.max(4)).filter_map(move |e| Some((read(e, ac)?, read(&e[ac * 4..], sc)?)))
    }

    /// Offset of the first child (after the properties and NOPs).
    fn children_start(&self) -> usize {
        let mut off = self.body;
        while let Some((Token::Prop(..) | Token::Nop, next)) = self.fdt.token(off) {
            off = next;
        }
        off
    }

    /// The child whose BEGIN_NODE is at or after `off` (past NOPs), and the
    /// offset after that child's END_NODE.
    fn child_at(&self, mut off: usize) -> Option<(Node<'a>, usize)> {
        loop {
            match self.fdt.token(off)? {
                (Token::Nop, next) => off = next,
                (Token::BeginNode(name), body) => {
                    let child = Node { fdt: self.fdt, name, body, cells: self.child_cells() };
                    return Some((child, self.fdt.skip_subtree(body)?));
                }
                _ => return None,
            }
        }
    }

    pub fn children(&self) -> impl Iterator<Item = Node<'a>> + 'a {
        let me = *self;
        let mut off = self.children_start();
        core::iter::from_fn(move || {
            let (child, after) = me.child_at(off)?;
            off = after;
            Some(child)
        })
    }
}

impl<'a> Fdt<'a> {
    /// The offset after the END_NODE matching a node whose body starts at `off`.
    fn skip_subtree(&self, mut off: usize) -> Option<usize> {
        let mut depth = 1usize;
        loop {
            let (t, next) = self.token(off)?;
            off = next;
            match t {
                Token::BeginNode(_) => depth += 1,
                Token::EndNode => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(off);
                    }
                }
                Token::End => return None,
                Token::Prop(..) | Token::Nop => {}
            }
        }
    }
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    /// Builds blobs token by token, so a test can put NOPs where libfdt
    /// leaves them.
    #[derive(Default)]
    struct Blob {
        structs: Vec<u8>,
        strings: Vec<u8>,
        rsv: Vec<(u64, u64)>,
    }

    impl Blob {
        fn word(&mut self, w: u32) -> &mut Self {
            self.structs.extend_from_slice(&w.to_be_bytes());
            self
        }
        fn pad(&mut self) {
            while self.structs.len() % 4 != 0 {
                self.structs.push(0);
            }
        }
        fn begin(&mut self, name: &str) -> &mut Self {
            self.word(FDT_BEGIN_NODE);
            self.structs.extend_from_slice(name.as_bytes());
            self.structs.push(0);
            self.pad();
            self
        }
        fn end(&mut self) -> &mut Self {
            self.word(FDT_END_NODE)
        }
        fn nop(&mut self) -> &mut Self {
            self.word(FDT_NOP)
        }
        fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
            let off = self.strings.len() as u32;
            self.strings.extend_from_slice(name.as_bytes());
            self.strings.push(0);
            self.word(FDT_PROP).word(value.len() as u32).word(off);
            self.structs.extend_from_slice(value);
            self.pad();
            self
        }
        fn cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
            let v: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
            self.prop(name, &v)
        }
        fn finish(&mut self) -> Vec<u8> {
            self.word(FDT_END);
            let rsv_off = HEADER_SIZE;
            let struct_off = rsv_off + 16 * (self.rsv.len() + 1);
            let strings_off = struct_off + self.structs.len();
            let total = strings_off + self.strings.len();
            let mut b = Vec::new();
            for w in [
                FDT_MAGIC,
                total as u32,
                struct_off as u32,
                strings_off as u32,
                rsv_off as u32,
                17,
                16,
                0,
                self.strings.len() as u32,
                self.structs.len() as u32,
            ] {
                b.extend_from_slice(&w.to_be_bytes());
            }
            for &(a, s) in self.rsv.iter().chain([(0, 0)].iter()) {
                b.extend_from_slice(&a.to_be_bytes());
                b.extend_from_slice(&s.to_be_bytes());
            }
            b.extend_from_slice(&self.structs);
            b.extend_from_slice(&self.strings);
            b
        }
    }

    /// A board tree as firmware hands it over after editing it: NOPs where
    /// properties and a node were deleted, two memory banks (one above
    /// 4 GiB), /memreserve/ entries, a reserved-memory node and an alias.
    fn board() -> Vec<u8> {
        let mut b = Blob { rsv: vec![(0x4000_0000, 0x1000), (0x8000_0000, 0x20_0000)], ..Default::default() };
        b.begin("").cells("#address-cells", &[2]).nop().cells("#size-cells", &[2]);
        b.begin("aliases").prop("serial0", b"/soc/serial@9000000\0").end();
        b.begin("chosen").nop().nop().prop("bootargs", b"test=mm\0").prop("stdout-path", b"serial0:115200n8\0").end();
        b.nop().nop();
        b.begin("memory@40000000")
            .prop("device_type", b"memory\0")
            .cells("reg", &[0, 0x4000_0000, 0, 0x2000_0000])
            .end();
        b.begin("memory@100000000").nop().prop("device_type", b"memory\0").cells("reg", &[1, 0, 0, 0x4000_0000]).end();
        b.begin("reserved-memory").cells("#address-cells", &[2]).cells("#size-cells", &[2]);
        b.begin("tfa@4e000000").cells("reg", &[0, 0x4e00_0000, 0, 0x20_0000]).prop("no-map", b"").end();
        b.begin("off@4f000000").cells("reg", &[0, 0x4f00_0000, 0, 0x1000]).prop("status", b"disabled\0").end();
        b.end();
        b.begin("soc").cells("#address-cells", &[1]).cells("#size-cells", &[1]);
        b.begin("serial@9000000").prop("compatible", b"arm,pl011\0arm,primecell\0").cells("reg", &[0x900_0000, 0x1000]);
        b.end().end();
        b.begin("cpus").cells("#address-cells", &[1]).cells("#size-cells", &[0]);
        b.begin("cpu@0").prop("device_type", b"cpu\0").cells("reg", &[0]).end();
        b.begin("cpu@1").prop("device_type", b"cpu\0").nop().cells("reg", &[0x100]).end();
        b.end();
        b.end();
        b.finish()
    }

    #[test]
    fn finds_nodes_and_properties_across_nops() {
        let blob = board();
        let f = Fdt::new(&blob).unwrap();
        assert_eq!(f.find("/chosen").unwrap().prop_str("bootargs"), Some("test=mm"));
        assert_eq!(f.find("/memory").unwrap().name, "memory@40000000", "a name without @ matches the first unit");
        assert_eq!(f.find("/memory@100000000").unwrap().reg().collect::<Vec<_>>(), [(1 << 32, 0x4000_0000)]);
        assert!(f.find("/memory@1").is_none(), "a unit address matches whole");
        assert!(f.find("/nosuch").is_none());
        let banks: Vec<_> =
            f.root().children().filter(|n| n.prop_str("device_type") == Some("memory")).flat_map(|n| n.reg()).collect();
        assert_eq!(banks, [(0x4000_0000, 0x2000_0000), (1 << 32, 0x4000_0000)]);
    }

    #[test]
    fn reads_reservations_reg_cells_and_status() {
        let blob = board();
        let f = Fdt::new(&blob).unwrap();
        assert_eq!(f.mem_reservations().collect::<Vec<_>>(), [(0x4000_0000, 0x1000), (0x8000_0000, 0x20_0000)]);
        let rm: Vec<_> = f.find("/reserved-memory").unwrap().children().collect();
        assert_eq!(rm.len(), 2);
        assert!(rm[0].prop("no-map").is_some() && rm[0].is_enabled());
        assert!(!rm[1].is_enabled());
        // One address cell and one size cell under /soc, two of each at the root.
        assert_eq!(f.find("/soc/serial@9000000").unwrap().reg().collect::<Vec<_>>(), [(0x900_0000, 0x1000)]);
        let cpus: Vec<_> = f.find("/cpus").unwrap().children().map(|c| c.reg().next().unwrap().0).collect();
        assert_eq!(cpus, [0, 0x100]);
    }

    #[test]
    fn stdout_path_through_an_alias_and_compatible_lists() {
        let blob = board();
        let f = Fdt::new(&blob).unwrap();
        assert_eq!(f.stdout().unwrap().name, "serial@9000000");
        let n = f.find_compatible("arm,primecell").unwrap();
        assert!(n.is_compatible("arm,pl011") && !n.is_compatible("arm,pl01"));
        let names: Vec<_> = f.nodes().map(|n| n.name).collect();
        assert_eq!(names.len(), 13, "{names:?}");
        assert_eq!(names[..3], ["", "aliases", "chosen"]);
        assert_eq!(names.last(), Some(&"cpu@1"));
    }

    #[test]
    fn bad_blobs_are_errors_not_panics() {
        let blob = board();
        assert!(Fdt::new(&blob[..blob.len() - 1]).is_err(), "truncated");
        let mut bad = blob.clone();
        bad[0] = 0;
        assert!(Fdt::new(&bad).is_err(), "magic");
        let mut bad = blob.clone();
        bad[OFF_SIZE_STRUCT..OFF_SIZE_STRUCT + 4].copy_from_slice(&0xffff_fff0u32.to_be_bytes());
        assert!(Fdt::new(&bad).is_err(), "structure block past the end");
        // A structure block cut short mid-tree reads as absent nodes.
        let mut b = Blob::default();
        b.begin("").begin("chosen").prop("bootargs", b"x\0");
        let cut = b.finish();
        let f = Fdt::new(&cut).unwrap();
        assert!(f.find("/chosen").is_none(), "a node without END_NODE is not found");
        assert_eq!(f.nodes().count(), 1);
    }
}
