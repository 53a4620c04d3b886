//! The operation language: one operation a line, parsed into statements.
//! Pure logic (the host unit tests include this file).
//!
//! ```text
//! # a comment
//! task A                          an EL0 task named A
//! A: mmap r 4 prot=rw,mte         4 anonymous private pages, named r
//! A: write r[0..2] seed=7 tag=3   data from seed 7, every granule tag 3
//! A: madvise r pageout            (dontneed, pageout, hugepage, nohugepage, collapse)
//! A: check r                      data and tags as the model says, read at EL0
//! A: fork B                       B shares r copy-on-write
//! A: uffd register r[2..4] missing
//! A: uffd move r[2] r[0]          (copy, zeropage, wp on|off as well)
//! A: munmap r[3] => ok            an expected outcome: ok, an errno name,
//! A: check r[3] => segv:maperr    segv, segv:maperr, segv:accerr, segv:mte
//! swapon / swapoff / thp madvise  (machine-wide)
//! on cpu 1 {                      the operations inside run on CPU 1
//!   A: write r[1]
//! }
//! ```
//!
//! A selector is `r` (the whole range), `r[N]` (page N) or `r[A..B]`
//! (pages A to B-1). Without `=>` an operation must do what the shadow
//! model predicts; with it, what it says (a write or check with `=> segv`
//! accesses each page once through an untagged pointer and must fault so).
//! Errors name the file and the line.

use crate::errno::Errno;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prot {
    pub read: bool,
    pub write: bool,
    pub mte: bool,
}

impl Prot {
    pub fn parse(s: &str) -> Option<Prot> {
        let (base, mte) = match s.split_once(',') {
            Some((b, "mte")) => (b, true),
            Some(_) => return None,
            None => (s, false),
        };
        let (read, write) = match base {
            "none" => (false, false),
            "r" => (true, false),
            "rw" => (true, true),
            _ => return None,
        };
        Some(Prot { read, write, mte })
    }
}

impl core::fmt::Display for Prot {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let base = match (self.read, self.write) {
            (true, true) => "rw",
            (true, false) => "r",
            _ => "none",
        };
        write!(f, "{base}{}", if self.mte { ",mte" } else { "" })
    }
}

/// Pages `first..first + count` of a named range; `count` None: to its end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sel {
    pub range: String,
    pub first: u32,
    pub count: Option<u32>,
}

impl core::fmt::Display for Sel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.count {
            None if self.first == 0 => write!(f, "{}", self.range),
            None => write!(f, "{}[{}..]", self.range, self.first),
            Some(1) => write!(f, "{}[{}]", self.range, self.first),
            Some(n) => write!(f, "{}[{}..{}]", self.range, self.first, self.first + n),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Advice {
    DontNeed,
    PageOut,
    HugePage,
    NoHugePage,
    Collapse,
}

impl Advice {
    pub const ALL: [(&'static str, Advice); 5] = [
        ("dontneed", Advice::DontNeed),
        ("pageout", Advice::PageOut),
        ("hugepage", Advice::HugePage),
        ("nohugepage", Advice::NoHugePage),
        ("collapse", Advice::Collapse),
    ];

    pub fn name(self) -> &'static str {
        Self::ALL.iter().find(|(_, a)| *a == self).map_or("?", |(n, _)| n)
    }
}

/// A tag pattern: every granule `tag`, or with `ramp` granule g gets
/// `(tag + g) % 16`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TagPat {
    pub tag: u8,
    pub ramp: bool,
}

impl TagPat {
    pub fn of_granule(self, g: usize) -> u8 {
        if self.ramp {
            ((self.tag as usize + g) % 16) as u8
        } else {
            self.tag
        }
    }
}

impl core::fmt::Display for TagPat {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}{}", self.tag, if self.ramp { "+" } else { "" })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Thp {
    Always,
    Madvise,
    Never,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Mmap {
        range: String,
        pages: u32,
        prot: Prot,
        /// MAP_POPULATE: every page faulted in at once, as a first write
        /// (or, read-only, a first read) would.
        populate: bool,
    },
    Munmap(Sel),
    Mprotect(Sel, Prot),
    Madvise(Sel, Advice),
    /// Data from `seed` (None: the line number), tags from the pattern
    /// (None: a tag from the seed on an MTE range).
    Write {
        sel: Sel,
        seed: Option<u64>,
        tag: Option<TagPat>,
    },
    Check(Sel),
    Fork(String),
    Exit,
    UffdRegister {
        sel: Sel,
        missing: bool,
        wp: bool,
    },
    UffdMove {
        dst: Sel,
        src: Sel,
    },
    UffdCopy {
        dst: Sel,
        src: Sel,
    },
    UffdZeropage(Sel),
    UffdWp(Sel, bool),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SegvWant {
    Any,
    MapErr,
    AccErr,
    Mte,
}

/// An outcome the script states after `=>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Ok,
    Errno(Errno),
    Segv(SegvWant),
}

impl core::fmt::Display for Expect {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Expect::Ok => write!(f, "ok"),
            Expect::Errno(e) => write!(f, "{}", e.name()),
            Expect::Segv(SegvWant::Any) => write!(f, "segv"),
            Expect::Segv(SegvWant::MapErr) => write!(f, "segv:maperr"),
            Expect::Segv(SegvWant::AccErr) => write!(f, "segv:accerr"),
            Expect::Segv(SegvWant::Mte) => write!(f, "segv:mte"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Task(String),
    Swapon,
    Swapoff,
    /// Reclaim keeps written folios in the swap cache (true) or frees them.
    SwapcacheKeep(bool),
    Thp(Thp),
    Op {
        task: String,
        op: Op,
        expect: Option<Expect>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stmt {
    pub line: u32,
    /// The CPU of an enclosing `on cpu N { }` block.
    pub cpu: Option<u32>,
    pub kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    pub file: String,
    pub stmts: Vec<Stmt>,
}

/// A parse error: `file:line: message`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub file: String,
    pub line: u32,
    pub msg: String,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.msg)
    }
}

fn is_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn name(s: &str, what: &str) -> Result<String, String> {
    if is_name(s) {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}' is not a {what} name (letters, digits, _ and -, starting with a letter)"))
    }
}

fn number(s: &str, what: &str) -> Result<u64, String> {
    let v = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse::<u64>(),
    };
    v.map_err(|_| format!("'{s}' is not a number ({what})"))
}

fn small(s: &str, what: &str) -> Result<u32, String> {
    let v = number(s, what)?;
    u32::try_from(v).map_err(|_| format!("{what} {v} is too large"))
}

pub fn parse_sel(s: &str) -> Result<Sel, String> {
    let Some((range, rest)) = s.split_once('[') else {
        return Ok(Sel { range: name(s, "range")?, first: 0, count: None });
    };
    let inner = rest.strip_suffix(']').ok_or_else(|| format!("'{s}': a selector ends with ']'"))?;
    let range = name(range, "range")?;
    match inner.split_once("..") {
        None => Ok(Sel { range, first: small(inner, "page")?, count: Some(1) }),
        Some((a, "")) => Ok(Sel { range, first: small(a, "page")?, count: None }),
        Some((a, b)) => {
            let (a, b) = (small(a, "first page")?, small(b, "end page")?);
            if b <= a {
                return Err(format!("'{s}': the end page must be above the first"));
            }
            Ok(Sel { range, first: a, count: Some(b - a) })
        }
    }
}

fn parse_expect(s: &str) -> Result<Expect, String> {
    Ok(match s {
        "ok" => Expect::Ok,
        "segv" => Expect::Segv(SegvWant::Any),
        "segv:maperr" => Expect::Segv(SegvWant::MapErr),
        "segv:accerr" => Expect::Segv(SegvWant::AccErr),
        "segv:mte" => Expect::Segv(SegvWant::Mte),
        e => Expect::Errno(Errno::from_name(e).ok_or_else(|| {
            format!(
                "'{e}' is not an outcome (ok, an errno name such as EINVAL, segv, segv:maperr, segv:accerr, segv:mte)"
            )
        })?),
    })
}

/// `key=value` options after the positional words; unknown keys are errors.
fn options<'a>(words: &[&'a str], known: &[&str]) -> Result<Vec<(&'a str, &'a str)>, String> {
    words
        .iter()
        .map(|w| {
            let (k, v) = w.split_once('=').ok_or_else(|| format!("'{w}': expected key=value"))?;
            if known.contains(&k) {
                Ok((k, v))
            } else {
                Err(format!("unknown option '{k}=' (known: {})", known.join(", ")))
            }
        })
        .collect()
}

fn want(words: &[&str], n: usize, usage: &str) -> Result<(), String> {
    if words.len() < n {
        Err(format!("usage: {usage}"))
    } else {
        Ok(())
    }
}

fn exact(words: &[&str], n: usize, usage: &str) -> Result<(), String> {
    if words.len() != n {
        Err(format!("usage: {usage}"))
    } else {
        Ok(())
    }
}

fn parse_op(w: &[&str]) -> Result<Op, String> {
    let Some(&verb) = w.first() else { return Err(String::from("an operation is missing after ':'")) };
    Ok(match verb {
        "mmap" => {
            const U: &str = "mmap RANGE PAGES [prot=none|r|rw[,mte]] [flags=populate]";
            want(w, 3, U)?;
            let (range, pages) = (name(w[1], "range")?, small(w[2], "pages")?);
            let (mut prot, mut populate) = (Prot { read: true, write: true, mte: true }, false);
            for (k, v) in options(&w[3..], &["prot", "flags"])? {
                match k {
                    "prot" => prot = Prot::parse(v).ok_or_else(|| format!("'{v}' is not a protection ({U})"))?,
                    _ if v == "populate" => populate = true,
                    _ => {
                        return Err(format!(
                            "'{v}' is not a flag here: populate is (MAP_PRIVATE | MAP_ANONYMOUS always)"
                        ))
                    }
                }
            }
            Op::Mmap { range, pages, prot, populate }
        }
        "munmap" => {
            exact(w, 2, "munmap SEL")?;
            Op::Munmap(parse_sel(w[1])?)
        }
        "mprotect" => {
            const U: &str = "mprotect SEL none|r|rw[,mte]";
            exact(w, 3, U)?;
            Op::Mprotect(parse_sel(w[1])?, Prot::parse(w[2]).ok_or_else(|| format!("'{}': {U}", w[2]))?)
        }
        "madvise" => {
            const U: &str = "madvise SEL dontneed|pageout|hugepage|nohugepage|collapse";
            exact(w, 3, U)?;
            let a = Advice::ALL.iter().find(|(n, _)| *n == w[2]).map(|(_, a)| *a);
            Op::Madvise(parse_sel(w[1])?, a.ok_or_else(|| format!("unknown advice '{}' ({U})", w[2]))?)
        }
        "write" => {
            want(w, 2, "write SEL [seed=N] [tag=T|T+]")?;
            let (mut seed, mut tag) = (None, None);
            for (k, v) in options(&w[2..], &["seed", "tag"])? {
                match k {
                    "seed" => seed = Some(number(v, "seed")?),
                    _ => {
                        let (t, ramp) = v.strip_suffix('+').map_or((v, false), |t| (t, true));
                        let t = number(t, "tag")?;
                        if t > 15 {
                            return Err(format!("tag {t} is not 0-15"));
                        }
                        tag = Some(TagPat { tag: t as u8, ramp });
                    }
                }
            }
            Op::Write { sel: parse_sel(w[1])?, seed, tag }
        }
        "check" => {
            exact(w, 2, "check SEL")?;
            Op::Check(parse_sel(w[1])?)
        }
        "fork" => {
            exact(w, 2, "fork CHILD")?;
            Op::Fork(name(w[1], "task")?)
        }
        "exit" => {
            exact(w, 1, "exit")?;
            Op::Exit
        }
        "uffd" => parse_uffd(&w[1..])?,
        v => {
            return Err(format!(
                "unknown operation '{v}' (mmap, munmap, mprotect, madvise, write, check, fork, exit, uffd)"
            ))
        }
    })
}

fn parse_uffd(w: &[&str]) -> Result<Op, String> {
    const U: &str = "uffd register SEL missing|wp|missing,wp | uffd move DST SRC | uffd copy DST SRC | uffd zeropage SEL | uffd wp SEL on|off";
    let Some(&verb) = w.first() else { return Err(format!("usage: {U}")) };
    Ok(match (verb, w.len()) {
        ("register", 3) => {
            let (missing, wp) = match w[2] {
                "missing" => (true, false),
                "wp" => (false, true),
                "missing,wp" | "wp,missing" => (true, true),
                m => return Err(format!("unknown registration mode '{m}' (missing, wp, missing,wp)")),
            };
            Op::UffdRegister { sel: parse_sel(w[1])?, missing, wp }
        }
        ("move", 3) => Op::UffdMove { dst: parse_sel(w[1])?, src: parse_sel(w[2])? },
        ("copy", 3) => Op::UffdCopy { dst: parse_sel(w[1])?, src: parse_sel(w[2])? },
        ("zeropage", 2) => Op::UffdZeropage(parse_sel(w[1])?),
        ("wp", 3) => Op::UffdWp(
            parse_sel(w[1])?,
            match w[2] {
                "on" => true,
                "off" => false,
                m => return Err(format!("'{m}': uffd wp SEL on|off")),
            },
        ),
        _ => return Err(format!("usage: {U}")),
    })
}

fn parse_line(words: &[&str]) -> Result<Kind, String> {
    match words {
        ["task", n] => Ok(Kind::Task(name(n, "task")?)),
        ["task", ..] => Err(String::from("usage: task NAME")),
        ["swapon"] => Ok(Kind::Swapon),
        ["swapoff"] => Ok(Kind::Swapoff),
        ["swapcache", "keep"] => Ok(Kind::SwapcacheKeep(true)),
        ["swapcache", "free"] => Ok(Kind::SwapcacheKeep(false)),
        ["swapcache", ..] => Err(String::from("usage: swapcache keep|free")),
        ["thp", "always"] => Ok(Kind::Thp(Thp::Always)),
        ["thp", "madvise"] => Ok(Kind::Thp(Thp::Madvise)),
        ["thp", "never"] => Ok(Kind::Thp(Thp::Never)),
        ["thp", ..] => Err(String::from("usage: thp always|madvise|never")),
        [first, rest @ ..] if first.ends_with(':') => {
            let task = name(&first[..first.len() - 1], "task")?;
            let (op, expect) = match rest.iter().position(|w| *w == "=>") {
                Some(i) if i + 2 == rest.len() => (&rest[..i], Some(parse_expect(rest[i + 1])?)),
                Some(_) => return Err(String::from("'=>' is followed by exactly one outcome")),
                None => (rest, None),
            };
            Ok(Kind::Op { task, op: parse_op(op)?, expect })
        }
        [w, ..] => Err(format!("'{w}' starts no statement (task, swapon, swapoff, thp, on cpu N {{, TASK: OPERATION)")),
        [] => Err(String::from("empty statement")),
    }
}

pub fn parse(file: &str, text: &str) -> Result<Script, Error> {
    let err = |line: u32, msg: String| Error { file: file.to_string(), line, msg };
    let mut stmts = Vec::new();
    let mut block: Option<(u32, u32)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line = i as u32 + 1;
        let text = raw.split('#').next().unwrap_or("");
        let words: Vec<&str> = text.split_whitespace().collect();
        match words.as_slice() {
            [] => continue,
            ["on", "cpu", n, "{"] => {
                if let Some((_, open)) = block {
                    return Err(err(line, format!("'on cpu' blocks do not nest (one is open since line {open})")));
                }
                block = Some((small(n, "CPU").map_err(|m| err(line, m))?, line));
            }
            ["on", ..] => return Err(err(line, String::from("usage: on cpu N {"))),
            ["}"] => {
                if block.take().is_none() {
                    return Err(err(line, String::from("'}' closes no block")));
                }
            }
            ["race", ..] => {
                return Err(err(
                    line,
                    String::from("race blocks need the interleaving explorer, which this kernel does not have yet"),
                ))
            }
            w => {
                let kind = parse_line(w).map_err(|m| err(line, m))?;
                stmts.push(Stmt { line, cpu: block.map(|(c, _)| c), kind });
            }
        }
    }
    if let Some((_, open)) = block {
        return Err(err(open, String::from("this 'on cpu' block is never closed")));
    }
    Ok(Script { file: file.to_string(), stmts })
}

/// The statements as script lines, those of one CPU in a row inside an
/// `on cpu N { }` block (parse gives the same statements back).
pub fn unparse_all(stmts: &[Stmt]) -> Vec<String> {
    let mut out = Vec::new();
    let mut open: Option<u32> = None;
    for st in stmts {
        if st.cpu != open {
            if open.is_some() {
                out.push(String::from("}"));
            }
            if let Some(c) = st.cpu {
                out.push(format!("on cpu {c} {{"));
            }
            open = st.cpu;
        }
        let line = unparse(st);
        out.push(if open.is_some() { format!("  {line}") } else { line });
    }
    if open.is_some() {
        out.push(String::from("}"));
    }
    out
}

/// The statement as a script line (for printing generated programs).
pub fn unparse(s: &Stmt) -> String {
    let op = match &s.kind {
        Kind::Task(n) => return format!("task {n}"),
        Kind::Swapon => return String::from("swapon"),
        Kind::Swapoff => return String::from("swapoff"),
        Kind::SwapcacheKeep(k) => return String::from(if *k { "swapcache keep" } else { "swapcache free" }),
        Kind::Thp(t) => return format!("thp {}", format!("{t:?}").to_lowercase()),
        Kind::Op { op, .. } => op,
    };
    let body = match op {
        Op::Mmap { range, pages, prot, populate } => {
            format!("mmap {range} {pages} prot={prot}{}", if *populate { " flags=populate" } else { "" })
        }
        Op::Munmap(s) => format!("munmap {s}"),
        Op::Mprotect(s, p) => format!("mprotect {s} {p}"),
        Op::Madvise(s, a) => format!("madvise {s} {}", a.name()),
        Op::Write { sel, seed, tag } => {
            let mut w = format!("write {sel}");
            if let Some(v) = seed {
                w += &format!(" seed={v}");
            }
            if let Some(t) = tag {
                w += &format!(" tag={t}");
            }
            w
        }
        Op::Check(s) => format!("check {s}"),
        Op::Fork(c) => format!("fork {c}"),
        Op::Exit => String::from("exit"),
        Op::UffdRegister { sel, missing, wp } => {
            let m = match (missing, wp) {
                (true, true) => "missing,wp",
                (false, true) => "wp",
                _ => "missing",
            };
            format!("uffd register {sel} {m}")
        }
        Op::UffdMove { dst, src } => format!("uffd move {dst} {src}"),
        Op::UffdCopy { dst, src } => format!("uffd copy {dst} {src}"),
        Op::UffdZeropage(s) => format!("uffd zeropage {s}"),
        Op::UffdWp(s, on) => format!("uffd wp {s} {}", if *on { "on" } else { "off" }),
    };
    let Kind::Op { task, expect, .. } = &s.kind else { unreachable!() };
    match expect {
        Some(e) => format!("{task}: {body} => {e}"),
        None => format!("{task}: {body}"),
    }
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    #[test]
    fn a_script_parses() {
        let s = parse(
            "t.txt",
            "# comment\ntask A\nA: mmap r 4 prot=rw,mte\nA: write r[0..2] seed=7 tag=3+\n\
             on cpu 1 {\n  A: check r[1]\n}\nA: munmap r[3] => EINVAL\nswapon\n",
        )
        .unwrap();
        assert_eq!(s.stmts.len(), 6);
        assert_eq!(s.stmts[0].kind, Kind::Task("A".into()));
        assert_eq!(s.stmts[1].line, 3);
        assert_eq!(
            s.stmts[2].kind,
            Kind::Op {
                task: "A".into(),
                op: Op::Write {
                    sel: Sel { range: "r".into(), first: 0, count: Some(2) },
                    seed: Some(7),
                    tag: Some(TagPat { tag: 3, ramp: true })
                },
                expect: None
            }
        );
        assert_eq!(s.stmts[3].cpu, Some(1));
        assert_eq!(s.stmts[4].cpu, None);
        assert!(matches!(s.stmts[4].kind, Kind::Op { expect: Some(Expect::Errno(Errno(22))), .. }));
    }

    #[test]
    fn errors_name_file_and_line() {
        let e = parse("bad.txt", "task A\n\nA: mmap r four\n").unwrap_err();
        assert_eq!((e.file.as_str(), e.line), ("bad.txt", 3));
        assert!(e.msg.contains("'four' is not a number"), "{e}");
        assert_eq!(e.to_string(), format!("bad.txt:3: {}", e.msg));
        let e = parse("b", "A: frob r").unwrap_err();
        assert!(e.msg.contains("unknown operation 'frob'"), "{e}");
        let e = parse("b", "A: check r => EWHAT").unwrap_err();
        assert!(e.msg.contains("'EWHAT' is not an outcome"), "{e}");
        let e = parse("b", "on cpu 1 {\nA: exit\n").unwrap_err();
        assert_eq!(e.line, 1);
        let e = parse("b", "race {\n").unwrap_err();
        assert!(e.msg.contains("explorer"), "{e}");
        assert!(parse("b", "A: check r[3..3]").unwrap_err().msg.contains("above the first"));
        assert!(parse("b", "A: write r tag=16").unwrap_err().msg.contains("0-15"));
        assert!(parse("b", "A: mmap r 1 prot=rwx").is_err());
        assert!(parse("b", "A: mmap r 1 size=2").unwrap_err().msg.contains("unknown option"));
        assert!(parse("b", "A: mmap r 1 flags=shared").unwrap_err().msg.contains("populate is"));
        assert!(parse("b", "}").is_err());
    }

    #[test]
    fn unparse_round_trips() {
        let text = "task A\nA: mmap r 4 prot=r,mte\nA: mmap p 2 prot=rw flags=populate\nA: write r[1..3] seed=9 tag=2+\nA: madvise r pageout\n\
                    A: check r[2]\nA: fork B\nB: uffd register r[2..] missing,wp\nB: uffd move r[3] r[0] => EEXIST\n\
                    B: uffd wp r off\nB: exit\nswapoff\nthp madvise";
        let s = parse("f", text).unwrap();
        let back: Vec<String> = s.stmts.iter().map(unparse).collect();
        assert_eq!(back.join("\n"), text);
    }

    #[test]
    fn on_cpu_blocks_round_trip() {
        let text = "task A\non cpu 1 {\n  A: mmap r 2 prot=rw,mte\n  A: check r\n}\nswapcache keep\non cpu 2 {\n  \
                    A: madvise r pageout\n}\non cpu 1 {\n  A: check r[1]\n}\nA: exit";
        let s = parse("f", text).unwrap();
        assert_eq!(s.stmts[1].cpu, Some(1));
        assert_eq!(unparse_all(&s.stmts).join("\n"), text);
        assert_eq!(parse("f", &unparse_all(&s.stmts).join("\n")).unwrap().stmts, s.stmts);
    }
}
