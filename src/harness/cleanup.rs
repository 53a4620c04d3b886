//! What every test leaves behind is put back after it, whatever happened
//! (a pass, a failure part-way, an early `?` return): one failure stays one
//! failure instead of failing every later test through leaked state. What
//! had to be put back is reported as the test's own failure, naming it.

use crate::mm::{filemap, mteswap, swap, swap_state, swapfile, userfaultfd};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Puts everything back; returns what had been left behind, in words.
pub fn after_test() -> Vec<String> {
    let mut left = Vec::new();
    // Test hooks first (CPUs parked at a schedule point may hold locks):
    // every variant off, every fault attribute disarmed.
    left.extend(crate::testhooks::reset_all());
    reset_knobs(&mut left);
    let alive = crate::task::all();
    if !alive.is_empty() {
        left.push(format!("{} task(s) still alive", alive.len()));
        for t in &alive {
            t.do_exit();
        }
    }
    if userfaultfd::open_count() > 0 {
        left.push(format!("{} userfaultfd descriptor(s) open", userfaultfd::open_count()));
        userfaultfd::close_all();
    }
    let fds = filemap::open_fds();
    if !fds.is_empty() {
        left.push(format!("{} file descriptor(s) open", fds.len()));
        for fd in fds {
            filemap::close(fd);
        }
    }
    release_swap(&mut left);
    left
}

/// The other settings tests change, back to their defaults.
fn reset_knobs(left: &mut Vec<String>) {
    if crate::task::prctl::mte_tcf_preferred() != crate::arch::mte::TcfMode::Async {
        left.push(format!("mte_tcf_preferred {:?}", crate::task::prctl::mte_tcf_preferred()));
        crate::task::prctl::set_mte_tcf_preferred(crate::arch::mte::TcfMode::Async);
    }
}

/// With every task gone no swap pte is left: a device still on, a slot in
/// use, a tag-storage entry or a swap-cache folio is a leak. Swap goes off
/// cleanly if it can, or is discarded.
fn release_swap(left: &mut Vec<String>) {
    if swapfile::swap_info(0).is_some() {
        left.push(String::from("swap on"));
        if let Err(e) = swap::swapoff(0) {
            left.push(format!("swapoff failing with {e}"));
        }
    }
    let slots = swapfile::slots_in_use();
    let entries = mteswap::stats().entries;
    let cached = swap_state::cached().len();
    if !slots.is_empty() || entries > 0 || cached > 0 {
        left.push(format!(
            "{} swap slot(s) in use (first {:?}), {entries} tag-storage entr(ies), {cached} swap-cache page(s)",
            slots.len(),
            slots.first()
        ));
    }
    if swapfile::swap_info(0).is_some() || !slots.is_empty() || entries > 0 || cached > 0 {
        swap::discard_all();
    }
}
