//! The test report: parsed from the kernel's plain-text lines, checked for
//! consistency, and written as TAP13 and JUnit XML.

use std::fmt::Write;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Skip(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestCase {
    pub name: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

#[derive(Debug, Default)]
pub struct Report {
    pub cases: Vec<TestCase>,
    pub summary: Option<Summary>,
    /// The test that started last (from `RUN  name`) and has no result yet.
    pub running: Option<String>,
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

impl Report {
    /// Takes one line of kernel text.
    pub fn line(&mut self, line: &str) {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(name) = line.strip_prefix("RUN  ") {
            self.running = Some(name.to_string());
        } else if let Some(name) = line.strip_prefix("PASS: ") {
            self.result(name, Outcome::Pass);
        } else if let Some(rest) = line.strip_prefix("FAIL: ") {
            let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
            self.result(name, Outcome::Fail(why.to_string()));
        } else if let Some(rest) = line.strip_prefix("SKIP: ") {
            let (name, why) = rest.split_once(": ").unwrap_or((rest, ""));
            self.result(name, Outcome::Skip(why.to_string()));
        } else if let Some(name) = line.strip_prefix("TEST: ") {
            self.listed.push(name.to_string());
        } else if let Some(n) = line.strip_prefix("mtekernel: running ").and_then(|r| r.split(' ').next()) {
            self.planned = n.parse().ok();
        } else if line == "BENCH DONE" {
            self.bench_done = true;
        } else if line.starts_with("PANIC ") {
            self.panicked = true;
            self.died = self.running.clone();
        } else if let Some(s) = parse_summary(line) {
            self.summary = Some(s);
        }
    }

    fn result(&mut self, name: &str, outcome: Outcome) {
        if self.running.as_deref() == Some(name) {
            self.running = None;
        }
        self.cases.push(TestCase { name: name.to_string(), outcome });
    }

    /// Records that the guest was stopped by the timeout.
    pub fn timed_out(&mut self, secs: u64) {
        self.died = self.running.clone();
        let name = self.running.take().unwrap_or_else(|| "harness::run".to_string());
        self.cases.push(TestCase {
            name,
            outcome: Outcome::Fail(format!("timed out after {secs} s: the guest hung and was killed")),
        });
    }

    pub fn counted(&self) -> Summary {
        let mut s = Summary { passed: 0, failed: 0, skipped: 0 };
        for c in &self.cases {
            match c.outcome {
                Outcome::Pass => s.passed += 1,
                Outcome::Fail(_) => s.failed += 1,
                Outcome::Skip(_) => s.skipped += 1,
            }
        }
        s
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
    /// the panic or the missing summary again.
    pub fn after_boots(boots: Vec<Report>) -> Report {
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
            if last {
                merged.panicked = b.panicked;
                merged.running = b.running;
                merged.listed = b.listed;
                merged.bench_done = b.bench_done;
                merged.died = b.died;
            }
            merged.cases.extend(b.cases);
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
                p.push(format!("the summary line ({s:?}) disagrees with the result lines ({:?})", self.counted()))
            }
            _ => {}
        }
        if self.panicked {
            p.push("the kernel panicked".to_string());
        }
        p
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
                Outcome::Fail(why) => {
                    let _ = writeln!(out, "not ok {n} - {}", c.name);
                    let _ = writeln!(out, "  ---\n  message: {}\n  ...", yaml_quote(why));
                }
            }
        }
        for p in self.problems() {
            let _ = writeln!(out, "# {p}");
        }
        out
    }

    pub fn junit(&self) -> String {
        let s = self.counted();
        let mut suites: Vec<(&str, Vec<&TestCase>)> = Vec::new();
        for c in &self.cases {
            let suite = c.name.split_once("::").map_or("harness", |(s, _)| s);
            match suites.iter_mut().find(|(n, _)| *n == suite) {
                Some((_, v)) => v.push(c),
                None => suites.push((suite, vec![c])),
            }
        }
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"mtekernel\" tests=\"{}\" failures=\"{}\" skipped=\"{}\">",
            self.cases.len(),
            s.failed,
            s.skipped
        );
        for (suite, cases) in suites {
            let f = cases.iter().filter(|c| matches!(c.outcome, Outcome::Fail(_))).count();
            let k = cases.iter().filter(|c| matches!(c.outcome, Outcome::Skip(_))).count();
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" skipped=\"{k}\">",
                xml(suite),
                cases.len()
            );
            for c in cases {
                let name = c.name.split_once("::").map_or(c.name.as_str(), |(_, n)| n);
                let head = format!("    <testcase classname=\"{}\" name=\"{}\"", xml(suite), xml(name));
                match &c.outcome {
                    Outcome::Pass => {
                        let _ = writeln!(out, "{head}/>");
                    }
                    Outcome::Fail(why) => {
                        let _ = writeln!(out, "{head}>\n      <failure message=\"{}\"/>\n    </testcase>", xml(why));
                    }
                    Outcome::Skip(why) => {
                        let _ = writeln!(out, "{head}>\n      <skipped message=\"{}\"/>\n    </testcase>", xml(why));
                    }
                }
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }
}

fn xml(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => format!("&#{};", c as u32),
            c => c.to_string(),
        })
        .collect()
}

fn yaml_quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
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
        r.timed_out(30);
        assert_eq!(r.cases[0].name, "swap::slow");
        assert!(matches!(&r.cases[0].outcome, Outcome::Fail(w) if w.contains("timed out after 30 s")));
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
        assert!(tap.contains("not ok 2 - a::y\n  ---\n  message: \"bad \\\"tag\\\"\"\n  ...\n"));
        assert!(tap.contains("ok 3 - b::z # SKIP no \\# here\n"));
    }

    #[test]
    fn junit_groups_by_suite_and_escapes() {
        let r = report(&["PASS: a::x", "FAIL: a::y: <&>", "SKIP: b::z: why", "1 passed, 1 failed, 1 skipped"]);
        let j = r.junit();
        assert!(j.contains("<testsuites name=\"mtekernel\" tests=\"3\" failures=\"1\" skipped=\"1\">"));
        assert!(j.contains("<testsuite name=\"a\" tests=\"2\" failures=\"1\" skipped=\"0\">"));
        assert!(j.contains("<failure message=\"&lt;&amp;&gt;\"/>"));
        assert!(j.contains("<testsuite name=\"b\" tests=\"1\" failures=\"0\" skipped=\"1\">"));
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
        let all = Report::after_boots(vec![first, second]);
        assert_eq!(all.cases.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["a::x", "a::boom", "b::y"]);
        assert_eq!(all.problems(), Vec::<String>::new(), "the resumed panic is the FAIL line, not a second problem");
        let alone =
            Report::after_boots(vec![report(&["RUN  a::boom", "PANIC on CPU 0 at x:1: y", "0 passed, 1 failed"])]);
        assert!(alone.panicked && alone.problems().iter().filter(|p| p.contains("panicked")).count() == 1);
        assert_eq!(all.counted(), Summary { passed: 2, failed: 1, skipped: 0 });
        assert!(!all.ok());
        assert!(all.tap().contains("not ok 2 - a::boom\n  ---\n  message: \"kernel panic: index out of bounds"));
    }

    #[test]
    fn resume_only_while_planned_tests_are_left() {
        let mut r = report(&["mtekernel: running 3 tests on 2 CPUs", "RUN  a::x", "PASS: a::x", "RUN  a::hang"]);
        r.timed_out(5);
        assert_eq!(r.resume_after(), Some("a::hang"));
        let mut last = report(&["mtekernel: running 1 tests on 2 CPUs", "RUN  a::hang"]);
        last.timed_out(5);
        assert_eq!(last.resume_after(), None);
    }

    #[test]
    fn a_bad_summary_in_an_earlier_boot_stays_a_problem() {
        let first = report(&["PASS: a::x", "RUN  a::hang", "2 passed, 0 failed"]);
        let all = Report::after_boots(vec![first, report(&["PASS: b::y", "1 passed, 0 failed"])]);
        assert!(all.problems().iter().any(|p| p.starts_with("boot 1:") && p.contains("disagrees")));
    }

    #[test]
    fn listing() {
        let r = report(&["TEST: a::x", "TEST: b::y", "2 tests listed"]);
        assert_eq!(r.listed, ["a::x", "b::y"]);
    }
}
