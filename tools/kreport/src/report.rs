//! The test report: parsed from the kernel's plain-text lines, checked for
//! consistency, and written as TAP13 and JUnit XML.
//!
//! The kernel announces its plan (a `PLAN: name` line per selected test)
//! before it runs anything, so every selected test ends up in both files:
//! with its result, or as "not run" with the reason when the boot that
//! should have run it died. Problems of the run itself (no summary line, a
//! panic, the emulator failing) become an error case `harness::run`, so a
//! run that went wrong is never green or empty in either file.

use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
    /// The test took the kernel down (a panic, a hang) or the run broke.
    Error(String),
    /// Planned but never started: why.
    NotRun(String),
}

impl Outcome {
    /// Counted as failed in the summary line (a failure, an error, a test
    /// that never ran).
    pub fn failed(&self) -> bool {
        matches!(self, Outcome::Fail(_) | Outcome::Error(_) | Outcome::NotRun(_))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub name: String,
    pub outcome: Outcome,
    /// Seconds from its RUN line to its result, as the host saw them.
    pub time: Option<f64>,
    /// What the console printed while it ran (text and decoded log lines).
    pub output: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped)
    }
}

#[derive(Debug, Default)]
pub struct Report {
    pub cases: Vec<TestCase>,
    pub summary: Option<Summary>,
    /// The test that started last (from `RUN  name`) and has no result yet.
    pub running: Option<String>,
    /// When it started (seconds on the caller's clock) and its output.
    started: f64,
    output: Vec<String>,
    pub listed: Vec<String>,
    pub panicked: bool,
    /// The test that was running when the kernel panicked or hung: the
    /// runner boots a fresh kernel for the tests after it.
    pub died: Option<String>,
    /// The benchmark's last line was seen.
    pub bench_done: bool,
    /// Problems carried over from earlier boots of the same run.
    pub carried: Vec<String>,
    /// How many tests this boot said it would run.
    pub planned: Option<usize>,
    /// The tests this boot said it would run, each with its own time limit
    /// in seconds when it declared one.
    pub plan: Vec<(String, Option<u64>)>,
    /// The console's `Bail out!` reason.
    pub bail: Option<String>,
    /// Lines of kernel text seen (none: the kernel never spoke).
    pub lines_seen: usize,
}

/// `N passed, N failed` with an optional `, N skipped`, alone on the line.
pub fn parse_summary(line: &str) -> Option<Summary> {
    let mut parts = line.trim_end().split(", ");
    let num = |p: Option<&str>, word: &str| -> Option<usize> { p?.strip_suffix(word)?.strip_suffix(' ')?.parse().ok() };
    let passed = num(parts.next(), "passed")?;
    let failed = num(parts.next(), "failed")?;
    let skipped = match parts.next() {
        None => 0,
        Some(p) => num(Some(p), "skipped")?,
    };
    parts.next().is_none().then_some(Summary { passed, failed, skipped })
}

/// `PLAN: name` or `PLAN: name timeout=S`.
fn parse_plan(rest: &str) -> (String, Option<u64>) {
    match rest.split_once(" timeout=") {
        Some((name, t)) => (name.to_string(), t.trim().parse().ok()),
        None => (rest.trim().to_string(), None),
    }
}

impl Report {
    /// Takes one line of kernel text at time 0.
    #[cfg(test)]
    pub fn line(&mut self, line: &str) {
        self.line_at(line, 0.0)
    }

    /// Takes one line of kernel text seen at `now` seconds.
    pub fn line_at(&mut self, line: &str, now: f64) {
        let line = line.trim_end_matches(['\r', '\n']);
        self.lines_seen += 1;
        if let Some(name) = line.strip_prefix("RUN  ") {
            self.running = Some(name.to_string());
            self.started = now;
            self.output.clear();
        } else if let Some(name) = line.strip_prefix("PASS: ") {
            self.result(name, Outcome::Pass, now);
        } else if let Some(rest) = line.strip_prefix("FAIL: ") {
            let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
            let died = why.starts_with("kernel panic");
            self.result(name, if died { Outcome::Error(why.to_string()) } else { Outcome::Fail(why.to_string()) }, now);
        } else if let Some(rest) = line.strip_prefix("SKIP: ") {
            let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
            self.result(name, Outcome::Skip(why.to_string()), now);
        } else if let Some(name) = line.strip_prefix("TEST: ") {
            self.listed.push(name.to_string());
        } else if let Some(rest) = line.strip_prefix("PLAN: ") {
            self.plan.push(parse_plan(rest));
        } else if let Some(n) = line.strip_prefix("mtekernel: running ").and_then(|r| r.split(' ').next()) {
            self.planned = n.parse().ok();
        } else if line == "BENCH DONE" {
            self.bench_done = true;
        } else if let Some(why) = line.strip_prefix("FATAL: ") {
            // The kernel stopped before running anything (its summary
            // counts this as the one failure).
            self.result("harness::boot", Outcome::Error(why.to_string()), now);
            self.bail = Some(why.to_string());
        } else if let Some(why) = line.strip_prefix("Bail out!") {
            self.bail = Some(why.trim().to_string());
        } else if line.starts_with("PANIC ") {
            self.panicked = true;
            self.died = self.running.clone();
            self.output.push(line.to_string());
        } else if let Some(s) = parse_summary(line) {
            self.summary = Some(s);
        } else if self.running.is_some() {
            self.output.push(line.to_string());
        }
    }

    /// A decoded log line (a defmt frame) seen while a test runs.
    pub fn log_line(&mut self, line: &str) {
        if self.running.is_some() {
            self.output.push(line.to_string());
        }
    }

    fn result(&mut self, name: &str, outcome: Outcome, now: f64) {
        let (time, output) = if self.running.as_deref() == Some(name) {
            self.running = None;
            (Some((now - self.started).max(0.0)), std::mem::take(&mut self.output))
        } else {
            (None, Vec::new())
        };
        self.cases.push(TestCase { name: name.to_string(), outcome, time, output });
    }

    /// Records that the guest was stopped by a time limit of `secs`
    /// seconds (`what` says which: the test's own or the run's).
    pub fn timed_out(&mut self, secs: u64, what: &str, now: f64) {
        self.died = self.running.clone();
        let name = self.running.clone().unwrap_or_else(|| "harness::run".to_string());
        let why = format!("timed out after {secs} s ({what}): the guest hung and was killed");
        if self.running.is_some() {
            self.result(&name, Outcome::Error(why), now);
        } else {
            self.cases.push(TestCase { name, outcome: Outcome::Error(why), time: None, output: Vec::new() });
        }
    }

    pub fn counted(&self) -> Summary {
        let mut s = Summary { passed: 0, failed: 0, skipped: 0 };
        for c in &self.cases {
            match c.outcome {
                Outcome::Pass => s.passed += 1,
                Outcome::Skip(_) => s.skipped += 1,
                _ => s.failed += 1,
            }
        }
        s
    }

    /// The time limit of test `name`: its own, else `default`.
    pub fn limit_of(&self, name: &str, default: u64) -> u64 {
        self.plan.iter().find(|(n, _)| n == name).and_then(|(_, t)| *t).unwrap_or(default)
    }

    /// The test to resume after: the one that took this boot down, if any
    /// planned test had not run yet.
    pub fn resume_after(&self) -> Option<&str> {
        let more = self.planned.is_some_and(|n| self.cases.len() < n);
        self.died.as_deref().filter(|_| more)
    }

    /// Joins the boots of one run, in order. Each boot's own problems are
    /// checked against its own lines; a boot the runner resumed after (its
    /// panic or hang is already the dying test's FAIL line) does not count
    /// the panic or the missing summary again. The first boot's plan is the
    /// run's: a planned test without a result is added as not run.
    pub fn after_boots(boots: Vec<Report>, not_run_why: &str) -> Report {
        let n = boots.len();
        let mut merged = Report::default();
        for (i, b) in boots.into_iter().enumerate() {
            let last = i + 1 == n;
            for p in b.problems() {
                // The last boot's panic is kept as the flag below.
                let panic = p == "the kernel panicked";
                let resumed = !last && p.contains("no summary line");
                if !panic && !resumed {
                    merged.carried.push(if n > 1 { format!("boot {}: {p}", i + 1) } else { p });
                }
            }
            if i == 0 {
                merged.plan = b.plan.clone();
            }
            if last {
                merged.panicked = b.panicked;
                merged.running = b.running;
                merged.listed = b.listed;
                merged.bench_done = b.bench_done;
                merged.died = b.died;
                merged.bail = b.bail;
            }
            merged.lines_seen += b.lines_seen;
            merged.cases.extend(b.cases);
        }
        let plan = merged.plan.clone();
        for (name, _) in plan {
            if !merged.cases.iter().any(|c| c.name == name) {
                merged.cases.push(TestCase {
                    name,
                    outcome: Outcome::NotRun(not_run_why.to_string()),
                    time: None,
                    output: Vec::new(),
                });
            }
        }
        merged.summary = Some(merged.counted());
        merged
    }

    /// Problems that make the run a failure even if no test said FAIL.
    pub fn problems(&self) -> Vec<String> {
        let mut p = self.carried.clone();
        match self.summary {
            None => p.push("the kernel printed no summary line (it stopped early or hung)".to_string()),
            Some(s) if s != self.counted() => {
                p.push(format!("the summary line ({s}) disagrees with the result lines ({})", self.counted()))
            }
            _ => {}
        }
        if self.panicked {
            p.push("the kernel panicked".to_string());
        }
        p
    }

    /// The run's own problems as one error case `harness::run` (after
    /// after_boots; nothing is added when there are none).
    pub fn add_run_problems(&mut self, problems: &[String]) {
        if !problems.is_empty() {
            self.cases.push(TestCase {
                name: "harness::run".to_string(),
                outcome: Outcome::Error(problems.join("; ")),
                time: None,
                output: Vec::new(),
            });
        }
    }

    pub fn ok(&self) -> bool {
        self.problems().is_empty() && self.counted().failed == 0
    }

    pub fn tap(&self) -> String {
        let mut out = String::from("TAP version 13\n");
        let _ = writeln!(out, "1..{}", self.cases.len());
        for (i, c) in self.cases.iter().enumerate() {
            let n = i + 1;
            match &c.outcome {
                Outcome::Pass => {
                    let _ = writeln!(out, "ok {n} - {}", c.name);
                }
                Outcome::Skip(why) => {
                    let _ = writeln!(out, "ok {n} - {} # SKIP {}", c.name, why.replace('#', "\\#"));
                }
                Outcome::Fail(why) | Outcome::Error(why) | Outcome::NotRun(why) => {
                    let (severity, message) = match &c.outcome {
                        Outcome::Fail(_) => ("fail", why.clone()),
                        Outcome::Error(_) => ("error", why.clone()),
                        _ => ("not run", format!("not run: {why}")),
                    };
                    let _ = writeln!(out, "not ok {n} - {}", c.name);
                    let _ = writeln!(
                        out,
                        "  ---\n  message: {}\n  severity: {}",
                        yaml_quote(&message),
                        yaml_quote(severity)
                    );
                    if let Some(t) = c.time {
                        let _ = writeln!(out, "  duration_ms: {:.0}", t * 1000.0);
                    }
                    if !c.output.is_empty() {
                        out.push_str("  output: |\n");
                        for l in &c.output {
                            let _ = writeln!(out, "    {}", printable(l));
                        }
                    }
                    out.push_str("  ...\n");
                }
            }
        }
        if let Some(why) = &self.bail {
            let _ = writeln!(out, "Bail out! {why}");
        }
        out
    }

    /// JUnit XML as the Jenkins xunit plugin's JUnit schema (junit-10.xsd,
    /// vendored in tools/kreport/schema/junit-10.xsd) allows it: per suite
    /// tests/failures/errors/skipped/time/timestamp/hostname, per test
    /// time, the failure or error message with the test's console output
    /// as its body.
    pub fn junit(&self, timestamp: &str, hostname: &str) -> String {
        let mut suites: Vec<(&str, Vec<&TestCase>)> = Vec::new();
        for c in &self.cases {
            let suite = c.name.split_once("::").map_or("harness", |(s, _)| s);
            match suites.iter_mut().find(|(n, _)| *n == suite) {
                Some((_, v)) => v.push(c),
                None => suites.push((suite, vec![c])),
            }
        }
        let count = |cases: &[&TestCase]| {
            let f = cases.iter().filter(|c| matches!(c.outcome, Outcome::Fail(_))).count();
            let e = cases.iter().filter(|c| matches!(c.outcome, Outcome::Error(_) | Outcome::NotRun(_))).count();
            let k = cases.iter().filter(|c| matches!(c.outcome, Outcome::Skip(_))).count();
            let t = cases.iter().filter_map(|c| c.time).fold(0.0, |a, b| a + b);
            (f, e, k, t)
        };
        let all: Vec<&TestCase> = self.cases.iter().collect();
        let (f, e, _, t) = count(&all);
        let mut w = quick_xml::Writer::new_with_indent(Vec::new(), b' ', 2);
        let ev = |w: &mut quick_xml::Writer<Vec<u8>>, e: Event| w.write_event(e).expect("writing XML to memory");
        ev(&mut w, Event::Decl(quick_xml::events::BytesDecl::new("1.0", Some("UTF-8"), None)));
        let mut top = BytesStart::new("testsuites");
        top.push_attribute(("name", "mtekernel"));
        top.push_attribute(("tests", self.cases.len().to_string().as_str()));
        top.push_attribute(("failures", f.to_string().as_str()));
        top.push_attribute(("errors", e.to_string().as_str()));
        top.push_attribute(("time", format!("{t:.3}").as_str()));
        ev(&mut w, Event::Start(top));
        for (suite, cases) in suites {
            let (f, e, k, t) = count(&cases);
            let mut ts = BytesStart::new("testsuite");
            ts.push_attribute(("name", suite));
            ts.push_attribute(("tests", cases.len().to_string().as_str()));
            ts.push_attribute(("failures", f.to_string().as_str()));
            ts.push_attribute(("errors", e.to_string().as_str()));
            ts.push_attribute(("skipped", k.to_string().as_str()));
            ts.push_attribute(("time", format!("{t:.3}").as_str()));
            ts.push_attribute(("timestamp", timestamp));
            ts.push_attribute(("hostname", hostname));
            ev(&mut w, Event::Start(ts));
            for c in cases {
                let name = c.name.split_once("::").map_or(c.name.as_str(), |(_, n)| n);
                let mut tc = BytesStart::new("testcase");
                tc.push_attribute(("name", name));
                tc.push_attribute(("classname", suite));
                if let Some(t) = c.time {
                    tc.push_attribute(("time", format!("{t:.3}").as_str()));
                }
                let child = match &c.outcome {
                    Outcome::Pass => None,
                    Outcome::Fail(why) => Some(("failure", why.clone())),
                    Outcome::Error(why) => Some(("error", why.clone())),
                    Outcome::NotRun(why) => Some(("error", format!("not run: {why}"))),
                    Outcome::Skip(why) => Some(("skipped", why.clone())),
                };
                if child.is_none() && c.output.is_empty() {
                    ev(&mut w, Event::Empty(tc));
                    continue;
                }
                ev(&mut w, Event::Start(tc));
                let body = c.output.iter().map(|l| printable(l)).collect::<Vec<_>>().join("\n");
                if let Some((tag, why)) = child {
                    let mut el = BytesStart::new(tag);
                    el.push_attribute(("message", printable(&why).as_str()));
                    if tag == "skipped" || body.is_empty() {
                        ev(&mut w, Event::Empty(el));
                    } else {
                        ev(&mut w, Event::Start(el));
                        ev(&mut w, Event::Text(BytesText::new(&body)));
                        ev(&mut w, Event::End(BytesEnd::new(tag)));
                    }
                }
                if !body.is_empty() {
                    ev(&mut w, Event::Start(BytesStart::new("system-out")));
                    ev(&mut w, Event::Text(BytesText::new(&body)));
                    ev(&mut w, Event::End(BytesEnd::new("system-out")));
                }
                ev(&mut w, Event::End(BytesEnd::new("testcase")));
            }
            ev(&mut w, Event::End(BytesEnd::new("testsuite")));
        }
        ev(&mut w, Event::End(BytesEnd::new("testsuites")));
        let mut out = String::from_utf8(w.into_inner()).expect("XML written from strings");
        out.push('\n');
        out
    }
}

/// Control characters (but tabs) shown as \u{..}: XML 1.0 cannot hold
/// them and a TAP/YAML line must stay one line.
fn printable(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\t' { format!("\\u{{{:x}}}", c as u32) } else { c.to_string() })
        .collect()
}

fn yaml_quote(s: &str) -> String {
    format!("\"{}\"", printable(s).replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(lines: &[&str]) -> Report {
        let mut r = Report::default();
        for l in lines {
            r.line(l);
        }
        r
    }

    #[test]
    fn summary_line_forms() {
        assert_eq!(parse_summary("3 passed, 1 failed"), Some(Summary { passed: 3, failed: 1, skipped: 0 }));
        assert_eq!(
            parse_summary("3 passed, 0 failed, 2 skipped\n"),
            Some(Summary { passed: 3, failed: 0, skipped: 2 })
        );
        assert_eq!(parse_summary("3 passed"), None);
        assert_eq!(parse_summary("x passed, 0 failed"), None);
        assert_eq!(parse_summary("1 passed, 0 failed, 0 skipped, 4 others"), None);
        assert_eq!(parse_summary("test result: 1 passed, 0 failed"), None);
    }

    #[test]
    fn results_and_consistent_summary_are_ok() {
        let r =
            report(&["RUN  a::x", "PASS: a::x", "RUN  b::y", "SKIP: b::y: no MTE3", "1 passed, 0 failed, 1 skipped"]);
        assert!(r.ok(), "{:?}", r.problems());
        assert_eq!(r.running, None);
    }

    #[test]
    fn a_failure_fails_the_run_and_keeps_its_reason() {
        let r = report(&["RUN  a::x", "FAIL: a::x: tag of granule 3: expected 5, got 9", "0 passed, 1 failed"]);
        assert!(!r.ok());
        assert_eq!(r.cases[0].outcome, Outcome::Fail("tag of granule 3: expected 5, got 9".into()));
    }

    #[test]
    fn missing_or_inconsistent_summary_is_a_problem() {
        assert!(!report(&["PASS: a::x"]).ok());
        let r = report(&["PASS: a::x", "PASS: a::y", "1 passed, 0 failed"]);
        assert!(!r.ok());
        assert!(r.problems()[0].contains("disagrees"));
    }

    #[test]
    fn timeout_names_the_running_test() {
        let mut r = report(&["RUN  swap::slow"]);
        r.timed_out(30, "its per-test limit", 31.5);
        assert_eq!(r.cases[0].name, "swap::slow");
        assert!(
            matches!(&r.cases[0].outcome, Outcome::Error(w) if w.contains("timed out after 30 s (its per-test limit)"))
        );
        assert_eq!(r.cases[0].time, Some(31.5));
        assert!(!r.ok());
    }

    #[test]
    fn panic_is_a_problem_even_with_a_summary() {
        let r = report(&["PANIC on CPU 0 at src/x.rs:1: boom", "0 passed, 0 failed"]);
        assert!(!r.ok());
    }

    #[test]
    fn tap_agrees_with_results() {
        let r = report(&[
            "PASS: a::x",
            "FAIL: a::y: bad \"tag\"",
            "SKIP: b::z: no # here",
            "1 passed, 1 failed, 1 skipped",
        ]);
        let tap = r.tap();
        assert!(tap.starts_with("TAP version 13\n1..3\n"));
        assert!(tap.contains("ok 1 - a::x\n"));
        assert!(
            tap.contains("not ok 2 - a::y\n  ---\n  message: \"bad \\\"tag\\\"\"\n  severity: \"fail\"\n  ...\n"),
            "{tap}"
        );
        assert!(tap.contains("ok 3 - b::z # SKIP no \\# here\n"));
    }

    #[test]
    fn junit_groups_by_suite_and_escapes() {
        let r = report(&["PASS: a::x", "FAIL: a::y: <&>", "SKIP: b::z: why", "1 passed, 1 failed, 1 skipped"]);
        let j = r.junit("2026-12-02T10:00:00", "host");
        assert!(
            j.contains("<testsuites name=\"mtekernel\" tests=\"3\" failures=\"1\" errors=\"0\" time=\"0.000\">"),
            "{j}"
        );
        assert!(j.contains("<testsuite name=\"a\" tests=\"2\" failures=\"1\" errors=\"0\" skipped=\"0\" time=\"0.000\" timestamp=\"2026-12-02T10:00:00\" hostname=\"host\">"), "{j}");
        assert!(j.contains("<failure message=\"&lt;&amp;&gt;\"/>"), "{j}");
        assert!(j.contains("<testsuite name=\"b\" tests=\"1\" failures=\"0\" errors=\"0\" skipped=\"1\""), "{j}");
    }

    #[test]
    fn a_panic_names_the_test_that_died_and_boots_join() {
        let first = report(&[
            "RUN  a::x",
            "PASS: a::x",
            "RUN  a::boom",
            "PANIC on CPU 1 at src/x.rs:7: index out of bounds",
            "FAIL: a::boom: kernel panic: index out of bounds at src/x.rs:7",
            "Bail out! kernel panic",
            "1 passed, 1 failed",
        ]);
        assert_eq!(first.died.as_deref(), Some("a::boom"));
        assert_eq!(first.resume_after(), None, "no plan seen: nothing known to be left");
        let second = report(&["RUN  b::y", "PASS: b::y", "1 passed, 0 failed"]);
        let all = Report::after_boots(vec![first, second], "why");
        assert_eq!(all.cases.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a::x", "a::boom", "b::y"]);
        assert_eq!(all.problems(), Vec::<String>::new(), "the resumed panic is the FAIL line, not a second problem");
        let alone = Report::after_boots(
            vec![report(&["RUN  a::boom", "PANIC on CPU 0 at x:1: y", "0 passed, 1 failed"])],
            "why",
        );
        assert!(alone.panicked && alone.problems().iter().filter(|p| p.contains("panicked")).count() == 1);
        assert_eq!(all.counted(), Summary { passed: 2, failed: 1, skipped: 0 });
        assert!(!all.ok());
        assert!(all.tap().contains("not ok 2 - a::boom\n  ---\n  message: \"kernel panic: index out of bounds"));
    }

    #[test]
    fn resume_only_while_planned_tests_are_left() {
        let mut r = report(&["mtekernel: running 3 tests on 2 CPUs", "RUN  a::x", "PASS: a::x", "RUN  a::hang"]);
        r.timed_out(5, "its per-test limit", 0.0);
        assert_eq!(r.resume_after(), Some("a::hang"));
        let mut last = report(&["mtekernel: running 1 test on 2 CPUs", "RUN  a::hang"]);
        last.timed_out(5, "its per-test limit", 0.0);
        assert_eq!(last.resume_after(), None);
    }

    #[test]
    fn a_bad_summary_in_an_earlier_boot_stays_a_problem() {
        let first = report(&["PASS: a::x", "RUN  a::hang", "2 passed, 0 failed"]);
        let all = Report::after_boots(vec![first, report(&["PASS: b::y", "1 passed, 0 failed"])], "why");
        assert!(all.problems().iter().any(|p| p.starts_with("boot 1:") && p.contains("disagrees")));
    }

    #[test]
    fn the_plan_accounts_for_tests_that_never_ran() {
        let first = report(&[
            "PLAN: a::x",
            "PLAN: a::boom timeout=7",
            "PLAN: b::y",
            "mtekernel: running 3 tests on 1 CPU",
            "RUN  a::x",
            "PASS: a::x",
            "RUN  a::boom",
            "some output",
            "PANIC on CPU 0 at src/x.rs:7: boom",
            "FAIL: a::boom: kernel panic: boom at src/x.rs:7",
            "Bail out! kernel panic",
            "1 passed, 1 failed",
        ]);
        assert_eq!(first.limit_of("a::boom", 120), 7);
        assert_eq!(first.limit_of("a::x", 120), 120);
        // The fresh boot after the panic died at once, before any line.
        let all = Report::after_boots(vec![first, Report::default()], "the kernel stopped before it");
        let names: Vec<&str> = all.cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["a::x", "a::boom", "b::y"]);
        assert!(matches!(&all.cases[1].outcome, Outcome::Error(w) if w.starts_with("kernel panic")));
        assert_eq!(all.cases[1].output, ["some output", "PANIC on CPU 0 at src/x.rs:7: boom"]);
        assert_eq!(all.cases[2].outcome, Outcome::NotRun("the kernel stopped before it".into()));
        assert_eq!(all.counted(), Summary { passed: 1, failed: 2, skipped: 0 });
        let tap = all.tap();
        assert!(tap.starts_with("TAP version 13\n1..3\n"), "{tap}");
        assert!(
            tap.contains(
                "not ok 3 - b::y\n  ---\n  message: \"not run: the kernel stopped before it\"\n  severity: \"not run\""
            ),
            "{tap}"
        );
        assert!(tap.contains("  output: |\n    some output\n    PANIC on CPU 0"), "{tap}");
        let j = all.junit("t", "h");
        assert!(j.contains("<error message=\"kernel panic: boom at src/x.rs:7\">some output"), "{j}");
        assert!(j.contains("<error message=\"not run: the kernel stopped before it\"/>"), "{j}");
    }

    #[test]
    fn an_early_death_is_red_in_both_files() {
        let mut r = Report::after_boots(vec![Report::default()], "never");
        let problems = r.problems();
        assert!(!problems.is_empty());
        r.bail = Some(problems[0].clone());
        r.add_run_problems(&problems);
        let tap = r.tap();
        assert!(tap.contains("1..1\nnot ok 1 - harness::run\n"), "{tap}");
        assert!(tap.contains("Bail out! the kernel printed no summary line"), "{tap}");
        assert!(r.junit("t", "h").contains("<testsuites name=\"mtekernel\" tests=\"1\" failures=\"0\" errors=\"1\""));
    }

    #[test]
    fn a_fatal_boot_error_is_the_one_failure() {
        let r = report(&["FATAL: bad kernel command line: unknown kernel command-line word 'x'", "0 passed, 1 failed"]);
        assert_eq!(r.problems(), Vec::<String>::new());
        assert_eq!(r.cases[0].name, "harness::boot");
        assert!(r.tap().contains("Bail out! bad kernel command line"));
    }

    #[test]
    fn control_characters_stay_out_of_xml_and_yaml() {
        let r = report(&["RUN  a::x", "\u{1b}[0mcolour", "FAIL: a::x: bad \u{7}bell", "0 passed, 1 failed"]);
        let j = r.junit("t", "h");
        assert!(j.contains("message=\"bad \\u{7}bell\"") && j.contains("\\u{1b}[0mcolour"), "{j}");
        assert!(r.tap().contains("message: \"bad \\\\u{7}bell\""), "{}", r.tap());
    }

    #[test]
    fn listing() {
        let r = report(&["TEST: a::x", "TEST: b::y", "2 tests listed"]);
        assert_eq!(r.listed, ["a::x", "b::y"]);
    }
}
