//! Test hooks: what a test may switch inside the kernel's paths, declared
//! as data so a reader sees it whole and the harness can list it, reset it
//! after every test and check it is used.
//!
//! - `variants`: the known-wrong orders and steps (one declaration each:
//!   the path, what breaks, the Linux commit or thread it reproduces, the
//!   tests that must catch it), switched on through scoped guards.
//! - `fault_inject`: Linux-style fault attributes (interval, times,
//!   probability) with one `should_fail()` at each injection site.
//! - `knobs`: settings a test changes for its duration (a small swap
//!   device, a bad sector), set through guards.
//! - `schedpoint`: named points in the paths where a test stops a CPU to
//!   force an interleaving; the names are constants (`points`).
//!
//! The mm paths and drivers call into here; nothing here calls them.

pub mod fault_inject;
pub mod knobs;
pub mod points;
pub mod schedpoint;
pub mod variants;

/// Everything back to the default after a test; the names of what was
/// left on (for the test's failure message).
pub fn reset_all() -> alloc::vec::Vec<alloc::string::String> {
    let mut left = alloc::vec::Vec::new();
    if schedpoint::armed() > 0 {
        left.push(alloc::format!("{} schedule point(s) still armed", schedpoint::armed()));
        schedpoint::release_all();
    }
    for v in variants::reset_all() {
        left.push(alloc::format!("variant {v} on"));
    }
    for f in fault_inject::reset_all() {
        left.push(alloc::format!("fault injection {f} armed"));
    }
    for k in knobs::reset_all() {
        left.push(alloc::format!("knob {k} set"));
    }
    left
}
