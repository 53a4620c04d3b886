//! kreport: runs the kernel (or reads a captured serial stream), decodes
//! report lines and defmt log frames with file:line, prints the human
//! report, writes TAP13 and JUnit files and exits with the suite's status.
//!
//! Usage:
//!   kreport [--elf KERNEL] [--reports DIR] [--timeout SECS] [--list] [-v] -- COMMAND [ARGS...]
//!   kreport [--elf KERNEL] [--reports DIR] < capture.bin
//!
//! Without --elf, defmt frames are counted but not decoded.

mod report;
mod stream;

use anyhow::{bail, Context, Result};
use defmt_decoder::{Locations, Table};
use defmt_parser::Level;
use report::Report;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use stream::{Piece, Splitter};

struct Options {
    elf: Option<PathBuf>,
    reports: Option<PathBuf>,
    timeout: Option<u64>,
    list: bool,
    verbose: bool,
    /// A benchmark run: it passes if the guest says BENCH DONE and exits 0.
    bench: bool,
    command: Vec<String>,
}

fn parse_args() -> Result<Options> {
    let mut o = Options {
        elf: None,
        reports: None,
        timeout: None,
        list: false,
        verbose: false,
        bench: false,
        command: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--elf" => o.elf = Some(args.next().context("--elf needs a file")?.into()),
            "--reports" => o.reports = Some(args.next().context("--reports needs a directory")?.into()),
            "--timeout" => {
                let v = args.next().context("--timeout needs seconds")?;
                o.timeout = Some(v.parse().with_context(|| format!("--timeout: '{v}' is not a number of seconds"))?);
            }
            "--list" => o.list = true,
            "-v" | "--verbose" => o.verbose = true,
            "--bench" => o.bench = true,
            "--" => {
                o.command = args.collect();
                break;
            }
            "-h" | "--help" => {
                println!(
                    "usage: kreport [--elf KERNEL] [--reports DIR] [--timeout SECS] [--list] [-v] [-- COMMAND ARGS...]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown option '{other}' (see --help)"),
        }
    }
    Ok(o)
}

/// Decodes defmt frames against the kernel ELF.
struct Defmt {
    table: Table,
    locations: Locations,
}

impl Defmt {
    fn load(elf: &PathBuf) -> Result<Defmt> {
        let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
        let table = Table::parse(&bytes)?.context("the kernel ELF has no defmt table")?;
        let locations = table.get_locations(&bytes)?;
        Ok(Defmt { table, locations })
    }

    /// One decoded frame as a line, or None for a debug/trace frame when not verbose.
    fn show(&self, frame: &[u8], verbose: bool) -> Option<String> {
        let mut dec = self.table.new_stream_decoder();
        dec.received(frame);
        dec.received(&[0]);
        Some(match dec.decode() {
            Ok(f) => {
                if !verbose && matches!(f.level(), Some(Level::Debug | Level::Trace)) {
                    return None;
                }
                let level =
                    f.level().map_or("     ".to_string(), |l| format!("{:<5}", format!("{l:?}").to_uppercase()));
                let ts = f.display_timestamp().map(|t| format!("{t} ")).unwrap_or_default();
                let loc = self
                    .locations
                    .get(&f.index())
                    .map(|l| format!("  ({}:{})", relative(&l.file).display(), l.line))
                    .unwrap_or_default();
                format!("[{level}] {ts}{}{loc}", f.display_message())
            }
            Err(e) => format!("[defmt] undecodable frame ({e:?}, {} bytes)", frame.len()),
        })
    }
}

/// `file` relative to the current directory when it lies below it.
fn relative(file: &std::path::Path) -> &std::path::Path {
    std::env::current_dir().ok().and_then(|d| file.strip_prefix(d).ok()).unwrap_or(file)
}

struct Printer {
    defmt: Option<Defmt>,
    report: Report,
    list: bool,
    verbose: bool,
    frames_undecoded: usize,
}

impl Printer {
    fn piece(&mut self, p: Piece) {
        let out = std::io::stdout();
        let mut out = out.lock();
        match p {
            Piece::Text(t) => {
                for line in t.lines() {
                    self.report.line(line);
                    let hide = line.starts_with("RUN  ")
                        || report::parse_summary(line).is_some()
                        || (self.list && line.starts_with("TEST: "));
                    if self.list {
                        let listed = ["TEST: ", "VARIANT: ", "POINT: ", "FAULT: ", "KNOB: "]
                            .iter()
                            .find_map(|p| line.strip_prefix(p));
                        if let Some(item) = listed {
                            let _ = writeln!(out, "{item}");
                        }
                    } else if !hide {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
            Piece::Frame(f) => match &self.defmt {
                Some(d) if !self.list => {
                    if let Some(line) = d.show(&f, self.verbose) {
                        let _ = writeln!(out, "{line}");
                    }
                }
                Some(_) => {}
                None => self.frames_undecoded += 1,
            },
        }
    }
}

/// Feeds the child's stdout (or our stdin) to the printer; returns the
/// child's exit status and whether the timeout killed it.
fn pump(o: &Options, command: &[String], p: &mut Printer) -> Result<(Option<i32>, bool)> {
    let mut splitter = Splitter::default();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut child = if command.is_empty() {
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdin.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        None
    } else {
        let mut c = Command::new(&command[0])
            .args(&command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", command[0]))?;
        let mut stdout = c.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Some(c)
    };
    let deadline = o.timeout.map(|s| Instant::now() + Duration::from_secs(s));
    let mut timed_out = false;
    loop {
        let msg = match deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    None
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
            None => rx.recv().ok(),
        };
        match msg {
            Some(bytes) => {
                for piece in splitter.push(&bytes) {
                    p.piece(piece);
                }
            }
            None => break,
        }
    }
    if let Some(piece) = splitter.finish() {
        p.piece(piece);
    }
    let status = match child.as_mut() {
        Some(c) => {
            if timed_out {
                let _ = c.kill();
            }
            c.wait()?.code()
        }
        None => Some(0),
    };
    Ok((status, timed_out))
}

/// The command with `after=NAME` added to the kernel command line (QEMU's
/// -append), to boot a fresh kernel for the tests after NAME. None if the
/// command has no -append to extend.
fn with_after_word(command: &[String], name: &str) -> Option<Vec<String>> {
    let i = command.iter().position(|a| a == "-append")?;
    let mut c = command.to_vec();
    let words = c.get_mut(i + 1)?;
    // A resumed command line already has an after= word: replace it.
    let mut kept: Vec<&str> = words.split_ascii_whitespace().filter(|w| !w.starts_with("after=")).collect();
    let after = format!("after={name}");
    kept.push(&after);
    *words = kept.join(" ");
    Some(c)
}

/// At most this many fresh boots after panics and hangs in one run.
const MAX_BOOTS: usize = 64;

fn run() -> Result<bool> {
    let o = parse_args()?;
    let defmt = o.elf.as_ref().map(Defmt::load).transpose()?;
    let mut p = Printer { defmt, report: Report::default(), list: o.list, verbose: o.verbose, frames_undecoded: 0 };
    let mut command = o.command.clone();
    let mut boots = Vec::new();
    let (status, timed_out) = loop {
        let (status, timed_out) = pump(&o, &command, &mut p)?;
        let r = &mut p.report;
        if timed_out {
            r.timed_out(o.timeout.unwrap_or(0));
            if let Some(c) = r.cases.last() {
                if let report::Outcome::Fail(why) = &c.outcome {
                    println!("FAIL: {}: {why}", c.name);
                }
            }
        }
        // A panic or a hang fails only the test that was running: the
        // tests after it get a fresh kernel (as kvm-unit-tests runs each
        // test in its own guest).
        let next = match (r.resume_after(), o.list || o.bench) {
            (Some(name), false) if boots.len() + 1 < MAX_BOOTS => {
                with_after_word(&command, name).map(|c| (name.to_string(), c))
            }
            _ => None,
        };
        let Some((name, c)) = next else { break (status, timed_out) };
        println!("kreport: {name} took the kernel down; booting a fresh kernel for the tests after it");
        command = c;
        boots.push(std::mem::take(&mut p.report));
    };
    let r = Report::after_boots(boots.into_iter().chain([std::mem::take(&mut p.report)]).collect());
    if p.frames_undecoded > 0 {
        eprintln!("kreport: {} defmt log frames not shown (pass --elf KERNEL to decode them)", p.frames_undecoded);
    }
    if o.list {
        return Ok(status == Some(0) && !timed_out && !r.panicked && r.counted().failed == 0);
    }
    if o.bench {
        let done = r.bench_done;
        if !done || timed_out || r.panicked || status != Some(0) {
            println!("ERROR: the benchmark did not finish (exit status {status:?}, timed out: {timed_out})");
            return Ok(false);
        }
        return Ok(true);
    }

    let mut problems = r.problems();
    if timed_out {
        problems.retain(|p| !p.contains("no summary line"));
    }
    match status {
        Some(0) => {}
        Some(s) if r.ok() => problems.push(format!("the emulator exited with status {s} although every test passed")),
        Some(_) => {}
        None if !timed_out => problems.push("the emulator was killed by a signal".to_string()),
        None => {}
    }
    if let Some(dir) = &o.reports {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.tap"), r.tap())?;
        std::fs::write(dir.join("junit.xml"), r.junit())?;
        println!("reports: {} and {}", dir.join("report.tap").display(), dir.join("junit.xml").display());
    }
    for p in &problems {
        println!("ERROR: {p}");
    }
    let failed: Vec<&str> =
        r.cases.iter().filter(|c| matches!(c.outcome, report::Outcome::Fail(_))).map(|c| c.name.as_str()).collect();
    if !failed.is_empty() {
        println!("failed: {}", failed.join(", "));
    }
    let s = r.counted();
    let extra = usize::from(!problems.is_empty() && s.failed == 0);
    println!("{} passed, {} failed, {} skipped", s.passed, s.failed + extra, s.skipped);
    Ok(problems.is_empty() && s.failed == 0)
}

fn main() {
    match run() {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("kreport: {e:#}");
            std::process::exit(2);
        }
    }
}
