//! What every test leaves behind is put back after it, whatever happened
//! (a pass, a failure part-way, an early `?` return): one failure stays one
//! failure instead of failing every later test through leaked state. What
//! had to be put back is reported as the test's own failure, naming it.

use crate::mm::fault::{cow_copy, set_cow_copy, CowCopy};
use crate::mm::swap::{set_swapin_order, swapin_order, SwapInOrder};
use crate::mm::uffd_move::{self, MoveVariant};
use crate::mm::{filemap, mteswap, swap, swap_state, swapfile, userfaultfd, vmscan};
use crate::drivers::ramdisk::{self, Injection};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// Puts everything back; returns what had been left behind, in words.
pub fn after_test() -> Vec<String> {
    let mut left = Vec::new();
    // CPUs parked at a schedule point go first: they may hold locks.
    if crate::schedpoint::armed() > 0 {
        left.push(format!("{} schedule point(s) still armed", crate::schedpoint::armed()));
        crate::schedpoint::release_all();
    }
    reset_switches(&mut left);
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

/// Every known-wrong order and fault injection back to the default.
fn reset_switches(left: &mut Vec<String>) {
    if cow_copy() != CowCopy::DataAndTags {
        left.push(format!("COW variant {:?} on", cow_copy()));
        set_cow_copy(CowCopy::DataAndTags);
    }
    if swapin_order() != SwapInOrder::Correct {
        left.push(format!("swap-in order {:?} on", swapin_order()));
        set_swapin_order(SwapInOrder::Correct);
    }
    if uffd_move::variant() != MoveVariant::Correct {
        left.push(format!("UFFDIO_MOVE variant {:?} on", uffd_move::variant()));
        uffd_move::set_variant(MoveVariant::Correct);
    }
    if uffd_move::observing() {
        left.push(String::from("the notifier observer on"));
        uffd_move::observe(false);
    }
    if vmscan::keep_in_swapcache() {
        left.push(String::from("reclaim keeping folios in the swap cache"));
        vmscan::set_keep_in_swapcache(false);
    }
    if ramdisk::injection() != Injection::default() {
        left.push(format!("RAM-disk injection {:?}", ramdisk::injection()));
        ramdisk::inject(Injection::default());
    }
    if let Some(n) = mteswap::save_failure_injected() {
        left.push(format!("tag-save failure injected (in {n})"));
        mteswap::inject_save_failure(None);
    }
    if crate::task::prctl::mte_tcf_preferred() != crate::arch::mte::TcfMode::Async {
        left.push(format!("mte_tcf_preferred {:?}", crate::task::prctl::mte_tcf_preferred()));
        crate::task::prctl::set_mte_tcf_preferred(crate::arch::mte::TcfMode::Async);
    }
    if swapfile::slot_limit() != 0 {
        left.push(format!("swap slot limit {}", swapfile::slot_limit()));
        swapfile::set_slot_limit(0);
    }
}

/// With every task gone no swap pte is left: a device still on, a slot in
/// use, a tag-storage entry or a swap-cache folio is a leak. Swap goes off
/// cleanly if it can, or is discarded.
fn release_swap(left: &mut Vec<String>) {
    if swapfile::swap_on(0).is_some() {
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
    if swapfile::swap_on(0).is_some() || !slots.is_empty() || entries > 0 || cached > 0 {
        swap::discard_all();
    }
}
