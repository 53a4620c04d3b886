//! Test selection by name. Pure logic: host unit tests include this file.
//!
//! A pattern without `*` is a suite name (`mm` selects `mm::*`, not `mmu::*`)
//! or, with `::`, a prefix of full names (`mte_hw::ldgm` selects the tests of
//! mte_hw whose names start so); with `*` it must match the whole name, `*`
//! standing for any run of characters. Tests marked explicit-only run only when a pattern
//! equals their full name.

/// Glob match of `pat` (with `*`) against the whole of `name`.
fn glob(pat: &[u8], name: &[u8]) -> bool {
    match pat.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|i| glob(rest, &name[i..])),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    if pattern.contains('*') {
        glob(pattern.as_bytes(), name.as_bytes())
    } else if pattern.contains("::") {
        name.starts_with(pattern)
    } else {
        name.split_once("::").map_or(name, |(suite, _)| suite) == pattern
    }
}

/// Whether a test named `name` runs under `patterns`. An on-request test
/// needs a pattern without `*` that matches it (its suite, a prefix, its
/// name): it is not in a run of everything nor picked by a glob.
pub fn selected<S: AsRef<str>>(patterns: &[S], name: &str, explicit_only: bool, on_request: bool) -> bool {
    if explicit_only {
        return patterns.iter().any(|p| p.as_ref() == name);
    }
    if on_request {
        return patterns.iter().any(|p| !p.as_ref().contains('*') && pattern_matches(p.as_ref(), name));
    }
    patterns.is_empty() || patterns.iter().any(|p| pattern_matches(p.as_ref(), name))
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    #[test]
    fn on_request_needs_its_suite_or_name() {
        let none: [&str; 0] = [];
        assert!(!selected(&none, "sweep::swapoff", false, true));
        assert!(!selected(&["*"], "sweep::swapoff", false, true));
        assert!(selected(&["sweep"], "sweep::swapoff", false, true));
        assert!(selected(&["sweep::swapoff"], "sweep::swapoff", false, true));
        assert!(!selected(&["mm"], "sweep::swapoff", false, true));
    }

    #[test]
    fn suites_prefixes_and_globs() {
        assert!(pattern_matches("mte_hw", "mte_hw::ldgm_roundtrip"));
        assert!(pattern_matches("mte_hw::ldgm", "mte_hw::ldgm_roundtrip"));
        assert!(!pattern_matches("ldgm", "mte_hw::ldgm_roundtrip"), "a prefix, not a substring");
        assert!(!pattern_matches("mmu", "smp::every_cpu_runs_work_with_mmu_and_mte"));
        assert!(pattern_matches("*ldgm*", "mte_hw::ldgm_roundtrip"));
        assert!(pattern_matches("mm", "mm::cow_in_child"));
        assert!(!pattern_matches("mm", "mmu::el0_permissions"), "a suite name is not a prefix");
        assert!(!pattern_matches("mte", "mte_hw::feature_present"));
        assert!(!pattern_matches("swap", "mte_hw::ldgm_roundtrip"));
        assert!(pattern_matches("mte_hw::*trip", "mte_hw::ldgm_roundtrip"));
        assert!(!pattern_matches("mte_hw::*", "mm::cow"));
        assert!(pattern_matches("*", "a::b"));
        assert!(!pattern_matches("*x", "a::b"));
    }

    #[test]
    fn empty_filter_selects_all_but_explicit() {
        let none: [&str; 0] = [];
        assert!(selected(&none, "mte_hw::a", false, false));
        assert!(!selected(&none, "selftest::deliberate_failure", true, false));
    }

    #[test]
    fn explicit_only_needs_the_full_name() {
        assert!(!selected(&["selftest"], "selftest::deliberate_failure", true, false));
        assert!(!selected(&["*"], "selftest::deliberate_failure", true, false));
        assert!(selected(&["selftest::deliberate_failure"], "selftest::deliberate_failure", true, false));
    }
}
