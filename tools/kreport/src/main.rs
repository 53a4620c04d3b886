//! kreport: runs the kernel (or reads a captured serial stream), decodes
//! report lines and defmt log frames with file:line, prints the human
//! report, writes TAP13 and JUnit files and exits with the suite's status.
//! See `kreport --help`.

extern crate alloc;

// The kernel's own reader and writer; kreport only writes.
#[path = "../../../src/script/cpio.rs"]
#[allow(dead_code)]
mod cpio;
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

const HELP: &str = "\
kreport: runs the kernel under an emulator (or reads a captured serial
stream), decodes its report lines and defmt log frames, prints the report,
writes TAP13 and JUnit files, and exits 0 only if every selected test
passed (1 if not, 2 on a usage or start-up error).

usage:
  kreport [OPTIONS] -- COMMAND [ARGS...]   run COMMAND (QEMU) and read its stdout
  kreport [OPTIONS] decode CAPTURE         read a captured serial log (a board's,
                                           LAVA's) from a file
  kreport [OPTIONS] < CAPTURE              the same from stdin
  kreport pack-initrd OUT FILE...          write FILEs as a cpio newc archive
                                           (the initrd ./qemu-run.sh --script
                                           passes; names are the base names)

A capture is the raw serial output: report lines as text, log frames as
`DEFMT <base64>` lines. Decode it with the ELF of the very build that
printed it: the kernel prints its GNU build id first (`mtekernel: build
id ...`) and kreport refuses to decode frames with another ELF (the run
fails, saying so). Damaged frame lines (a log that lost or replaced bytes)
are skipped and counted; the report lines survive them.

options:
  --elf KERNEL          the kernel ELF, to decode defmt frames with file:line
                        (without it frames are only counted)
  --reports DIR         write DIR/report.tap and DIR/junit.xml
  --timeout SECS        limit for the whole run, every boot included (default: none)
  --test-timeout SECS   limit for one test, for tests that declare none
                        (kernel_test!(.., timeout = S)); default 120
  --save-capture FILE   also write the raw serial stream (every boot) to FILE,
                        for `kreport decode` later
  --list                print the listed test names (TEST: lines) only
  --bench               a benchmark run: it passes if the guest says BENCH DONE
  -v, --verbose         also show debug and trace log frames
  -h, --help            this text

A panic or a hang fails only the test that was running: kreport boots a
fresh kernel (COMMAND with after=NAME added to QEMU's -append) for the
tests after it.";

struct Options {
    elf: Option<PathBuf>,
    reports: Option<PathBuf>,
    /// The whole run's limit.
    timeout: Option<u64>,
    /// One test's limit unless it declares its own.
    test_timeout: u64,
    list: bool,
    verbose: bool,
    /// A benchmark run: it passes if the guest says BENCH DONE and exits 0.
    bench: bool,
    command: Vec<String>,
    /// `kreport decode CAPTURE`: read the capture from this file.
    capture: Option<PathBuf>,
    /// --save-capture: the raw serial bytes of every boot go to this file.
    save: Option<PathBuf>,
}

fn seconds(p: &mut lexopt::Parser, opt: &str) -> Result<u64> {
    let v = p.value().with_context(|| format!("{opt} needs a number of seconds"))?;
    let v = v.to_string_lossy().to_string();
    v.parse().with_context(|| format!("{opt}: '{v}' is not a number of seconds"))
}

fn parse_args() -> Result<Options> {
    use lexopt::prelude::*;
    let mut o = Options {
        elf: None,
        reports: None,
        timeout: None,
        test_timeout: 120,
        list: false,
        verbose: false,
        bench: false,
        command: Vec::new(),
        capture: None,
        save: None,
    };
    let mut p = lexopt::Parser::from_env();
    let mut decode = false;
    while let Some(arg) = p.next()? {
        match arg {
            Long("elf") => o.elf = Some(p.value().context("--elf needs a file")?.into()),
            Long("reports") => o.reports = Some(p.value().context("--reports needs a directory")?.into()),
            Long("timeout") => o.timeout = Some(seconds(&mut p, "--timeout")?),
            Long("test-timeout") => o.test_timeout = seconds(&mut p, "--test-timeout")?,
            Long("save-capture") => o.save = Some(p.value().context("--save-capture needs a file")?.into()),
            Long("list") => o.list = true,
            Short('v') | Long("verbose") => o.verbose = true,
            Long("bench") => o.bench = true,
            Short('h') | Long("help") => {
                println!("{HELP}");
                std::process::exit(0);
            }
            Value(v) if v == "decode" && !decode && o.command.is_empty() && o.capture.is_none() => decode = true,
            Value(v) if decode && o.capture.is_none() => o.capture = Some(v.into()),
            Value(v) if !decode => {
                // The command starts here (after `--`, or at its first word).
                o.command.push(v.to_string_lossy().to_string());
                o.command.extend(p.raw_args()?.map(|a| a.to_string_lossy().to_string()));
            }
            other => bail!("{} (see --help)", other.unexpected()),
        }
    }
    if decode && o.capture.is_none() {
        bail!("decode needs a capture file: kreport decode --elf KERNEL CAPTURE");
    }
    Ok(o)
}

/// Decodes defmt frames against the kernel ELF.
struct Defmt {
    table: Table,
    locations: Locations,
    /// The ELF's GNU build id, as the kernel prints it (hex).
    build_id: Option<String>,
}

impl Defmt {
    fn load(elf: &PathBuf) -> Result<Defmt> {
        let bytes = std::fs::read(elf).with_context(|| format!("reading {}", elf.display()))?;
        let table = Table::parse(&bytes)?.context("the kernel ELF has no defmt table")?;
        let locations = table.get_locations(&bytes)?;
        let build_id = {
            use object::Object;
            object::File::parse(&*bytes)
                .ok()
                .and_then(|f| f.build_id().ok().flatten().map(|b| b.iter().map(|x| format!("{x:02x}")).collect()))
        };
        Ok(Defmt { table, locations, build_id })
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
    /// Items printed by a --list run.
    items_listed: usize,
    /// `DEFMT ` lines whose base64 was damaged.
    frames_damaged: usize,
    /// The ELF is not the capture's build (its frames are left undecoded).
    wrong_elf: bool,
    /// The run's start, the clock of the report's test times.
    t0: Instant,
}

impl Printer {
    fn piece(&mut self, p: Piece) {
        let out = std::io::stdout();
        let mut out = out.lock();
        let now = self.t0.elapsed().as_secs_f64();
        match p {
            Piece::Text(t) => {
                for line in t.lines() {
                    if let (Some(id), Some(d)) = (line.strip_prefix("mtekernel: build id "), &self.defmt) {
                        self.check_build_id(id.trim(), d.build_id.clone());
                    }
                    self.report.line_at(line, now);
                    let hide = line.starts_with("RUN  ")
                        || line.starts_with("PLAN: ")
                        || report::parse_summary(line).is_some()
                        || (self.list && line.starts_with("TEST: "));
                    if self.list {
                        let listed = ["TEST: ", "VARIANT: ", "POINT: ", "FAULT: ", "KNOB: "]
                            .iter()
                            .find_map(|p| line.strip_prefix(p));
                        if let Some(item) = listed {
                            self.items_listed += 1;
                            let _ = writeln!(out, "{item}");
                        } else if line.starts_with("FAIL: ") || line.starts_with("FATAL: ") {
                            eprintln!("{line}");
                        }
                    } else if !hide {
                        let _ = writeln!(out, "{line}");
                    }
                }
            }
            Piece::BadFrame(line) => {
                self.frames_damaged += 1;
                if self.verbose {
                    let _ = writeln!(out, "[defmt] damaged frame line: {line}");
                }
            }
            Piece::Frame(f) => match &self.defmt {
                Some(d) if !self.list => {
                    if let Some(line) = d.show(&f, self.verbose) {
                        self.report.log_line(&line);
                        let _ = writeln!(out, "{line}");
                    }
                }
                Some(_) => {}
                None => self.frames_undecoded += 1,
            },
        }
    }

    /// A capture from another build than the ELF decodes its frames into
    /// wrong messages and file:line: say so loudly, stop decoding, and fail
    /// the run.
    fn check_build_id(&mut self, seen: &str, elf: Option<String>) {
        match elf {
            Some(e) if e == seen => {}
            e => {
                let e = e.unwrap_or_else(|| "none".to_string());
                let why = format!(
                    "the kernel that printed this (build id {seen}) is not the ELF given with --elf (build id {e}): its log frames are not decoded"
                );
                println!("ERROR: {why}");
                self.report.carried.push(why);
                self.defmt = None;
                self.wrong_elf = true;
            }
        }
    }
}

/// Which limit stopped a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stopped {
    /// The emulator exited (or the capture ended).
    Exited,
    /// The running test's own limit (its name's, or --test-timeout).
    TestLimit(u64),
    /// The whole run's limit (--timeout).
    RunLimit(u64),
}

/// Feeds the child's stdout (or our stdin) to the printer until it ends or
/// a limit passes: the whole run's `run_deadline`, or the running test's
/// own limit from its RUN line. Returns the child's exit status (None if
/// killed) and what stopped it.
fn pump(
    o: &Options,
    command: &[String],
    run_deadline: Option<Instant>,
    p: &mut Printer,
) -> Result<(Option<i32>, Stopped)> {
    let mut splitter = Splitter::default();
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let mut child = if command.is_empty() {
        let capture = match &o.capture {
            Some(path) => {
                Some(std::fs::File::open(path).with_context(|| format!("cannot read the capture {}", path.display()))?)
            }
            None => None,
        };
        std::thread::spawn(move || {
            let mut stdin: Box<dyn Read> = match capture {
                Some(f) => Box::new(f),
                None => Box::new(std::io::stdin()),
            };
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
            .with_context(|| format!("cannot start the emulator '{}'", command[0]))?;
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
    let mut save = match &o.save {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot write the capture {}", path.display()))?,
        ),
        None => None,
    };
    let mut stopped = Stopped::Exited;
    // The test being timed: its name, when it started and its limit.
    let mut timing: Option<(String, Instant, u64)> = None;
    loop {
        match (&timing, &p.report.running) {
            (Some((n, _, _)), Some(r)) if n == r => {}
            (_, Some(r)) => timing = Some((r.clone(), Instant::now(), p.report.limit_of(r, o.test_timeout))),
            (_, None) => timing = None,
        }
        let test_deadline = timing.as_ref().map(|(_, t, s)| *t + Duration::from_secs(*s));
        let deadline = match (run_deadline, test_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let msg = match deadline {
            Some(d) => match rx.recv_timeout(d.saturating_duration_since(Instant::now())) {
                Ok(m) => Some(m),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    stopped = match (test_deadline, &timing) {
                        (Some(t), Some((_, _, s))) if Instant::now() >= t && run_deadline.is_none_or(|r| t <= r) => {
                            Stopped::TestLimit(*s)
                        }
                        _ => Stopped::RunLimit(o.timeout.unwrap_or(0)),
                    };
                    None
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => None,
            },
            None => rx.recv().ok(),
        };
        match msg {
            Some(bytes) => {
                if let Some(f) = save.as_mut() {
                    f.write_all(&bytes).context("writing the capture")?;
                }
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
            if stopped != Stopped::Exited {
                let _ = c.kill();
            }
            c.wait()?.code()
        }
        None => Some(0),
    };
    Ok((status, stopped))
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

/// Now as ISO 8601 UTC (JUnit's timestamp), from the system clock.
fn timestamp_now() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string())
}

fn run() -> Result<bool> {
    let o = parse_args()?;
    if let Some(path) = &o.save {
        std::fs::write(path, b"").with_context(|| format!("cannot write the capture {}", path.display()))?;
    }
    if o.command.is_empty() && o.capture.is_none() && std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        // `cargo run` at the workspace root lands here: say what kreport is.
        eprintln!("{HELP}\n\nkreport: no COMMAND and stdin is a terminal: nothing to read");
        std::process::exit(2);
    }
    let defmt = o.elf.as_ref().map(Defmt::load).transpose()?;
    let t0 = Instant::now();
    let timestamp = timestamp_now();
    let mut p = Printer {
        defmt,
        report: Report::default(),
        list: o.list,
        verbose: o.verbose,
        frames_undecoded: 0,
        items_listed: 0,
        frames_damaged: 0,
        wrong_elf: false,
        t0,
    };
    let run_deadline = o.timeout.map(|s| t0 + Duration::from_secs(s));
    let mut command = o.command.clone();
    let mut boots = Vec::new();
    let (status, stopped) = loop {
        let (status, stopped) = pump(&o, &command, run_deadline, &mut p)?;
        let r = &mut p.report;
        let now = t0.elapsed().as_secs_f64();
        match stopped {
            Stopped::TestLimit(s) => r.timed_out(s, "its per-test limit", now),
            Stopped::RunLimit(s) => r.timed_out(s, "the whole run's limit, --timeout", now),
            Stopped::Exited => {}
        }
        if stopped != Stopped::Exited {
            if let Some(c) = r.cases.last() {
                if let report::Outcome::Error(why) = &c.outcome {
                    println!("FAIL: {}: {why}", c.name);
                }
            }
        }
        // A panic or a test's hang fails only the test that was running:
        // the tests after it get a fresh kernel (as kvm-unit-tests runs
        // each test in its own guest). The run's own limit ends the run.
        let next = match (r.resume_after(), o.list || o.bench || matches!(stopped, Stopped::RunLimit(_))) {
            (Some(name), false) if boots.len() + 1 < MAX_BOOTS => {
                with_after_word(&command, name).map(|c| (name.to_string(), c))
            }
            _ => None,
        };
        let Some((name, c)) = next else { break (status, stopped) };
        println!("kreport: {name} took the kernel down; booting a fresh kernel for the tests after it");
        command = c;
        boots.push(std::mem::take(&mut p.report));
    };
    let not_run = match stopped {
        Stopped::RunLimit(s) => format!("the run's time limit of {s} s (--timeout) ran out before it"),
        _ => "the kernel stopped before it (see the errors of this run)".to_string(),
    };
    let mut r = Report::after_boots(boots.into_iter().chain([std::mem::take(&mut p.report)]).collect(), &not_run);
    if p.frames_damaged > 0 {
        eprintln!(
            "kreport: {} damaged defmt frame lines skipped (the capture lost or changed bytes)",
            p.frames_damaged
        );
    }
    if p.frames_undecoded > 0 {
        let why = if p.wrong_elf { "the ELF is not this capture's build" } else { "pass --elf KERNEL to decode them" };
        eprintln!("kreport: {} defmt log frames not shown ({why})", p.frames_undecoded);
    }
    let timed_out = stopped != Stopped::Exited;
    if o.list {
        if p.items_listed == 0 && status == Some(0) {
            eprintln!("kreport: nothing listed: no test matches the selection");
        }
        return Ok(status == Some(0) && !timed_out && !r.panicked && r.counted().failed == 0);
    }
    if o.bench {
        let done = r.bench_done;
        if !done || timed_out || r.panicked || status != Some(0) {
            let status = status.map_or("killed".to_string(), |s| s.to_string());
            println!("ERROR: the benchmark did not finish (emulator exit status {status}, stopped by a time limit: {timed_out})");
            return Ok(false);
        }
        return Ok(true);
    }

    let mut problems = r.problems();
    if timed_out {
        problems.retain(|p| !p.contains("no summary line"));
    }
    if r.lines_seen == 0 && !o.command.is_empty() && status != Some(0) && !timed_out {
        // Not the kernel's fault: QEMU refused its arguments or could not start.
        let st = status.map_or("a signal".to_string(), |s| format!("status {s}"));
        problems =
            vec![format!("the emulator exited with {st} before the kernel printed anything (see its messages above)")];
    }
    match status {
        Some(0) => {}
        Some(_) if r.lines_seen == 0 => {}
        Some(s) if r.ok() => problems.push(format!("the emulator exited with status {s} although every test passed")),
        Some(_) => {}
        None if !timed_out => problems.push("the emulator was killed by a signal".to_string()),
        None => {}
    }
    if r.cases.is_empty() && problems.is_empty() {
        problems.push("no test ran and none was planned".to_string());
    }
    if !problems.is_empty() && r.bail.is_none() && r.summary.is_none_or(|_| r.cases.iter().all(|c| c.time.is_none())) {
        r.bail = Some(problems[0].clone());
    }
    r.add_run_problems(&problems);
    if let Some(dir) = &o.reports {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.tap"), r.tap())?;
        std::fs::write(dir.join("junit.xml"), r.junit(&timestamp, &hostname()))?;
        println!("reports: {} and {}", dir.join("report.tap").display(), dir.join("junit.xml").display());
    }
    for p in &problems {
        println!("ERROR: {p}");
    }
    let failed: Vec<String> = r
        .cases
        .iter()
        .filter(|c| c.outcome.failed())
        .map(|c| match c.outcome {
            report::Outcome::NotRun(_) => format!("{} (not run)", c.name),
            _ => c.name.clone(),
        })
        .collect();
    if !failed.is_empty() {
        println!("failed: {}", failed.join(", "));
    }
    let s = r.counted();
    println!("{s}");
    Ok(s.failed == 0)
}

/// `kreport pack-initrd OUT FILE...`: the scripts as the kernel's initrd.
fn pack_initrd(args: &[String]) -> Result<()> {
    let [out, files @ ..] = args else { bail!("usage: kreport pack-initrd OUT FILE...") };
    if files.is_empty() {
        bail!("usage: kreport pack-initrd OUT FILE...");
    }
    let mut read = Vec::new();
    for f in files {
        let data = std::fs::read(f).with_context(|| format!("cannot read the script {f}"))?;
        let name = std::path::Path::new(f).file_name().and_then(|n| n.to_str()).unwrap_or(f).to_string();
        if read.iter().any(|(n, _): &(String, Vec<u8>)| *n == name) {
            bail!("two scripts are named {name}: the kernel names each test by its file name");
        }
        read.push((name, data));
    }
    let entries: Vec<(&str, &[u8])> = read.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    std::fs::write(out, cpio::archive(&entries)).with_context(|| format!("cannot write {out}"))?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("pack-initrd") {
        if let Err(e) = pack_initrd(&args[2..]) {
            eprintln!("kreport: {e:#}");
            std::process::exit(2);
        }
        return;
    }
    match run() {
        Ok(true) => std::process::exit(0),
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("kreport: {e:#}");
            std::process::exit(2);
        }
    }
}
