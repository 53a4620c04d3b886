//! Suite `soak`: the tag-integrity soak over all free memory
//! (mm::tag_soak). One pass runs with the suites; `soak=N` (or
//! `./qemu-run.sh --soak N`) makes a long run of it for a board whose tag
//! storage is in doubt.

use crate::harness::TestResult;
use crate::mm::{frames, tag_soak};
use crate::println;
use crate::testhooks::knobs;
use crate::{ensure, ensure_eq, fail, kernel_test};

fn print_mismatches(r: &tag_soak::Report) {
    for m in &r.first {
        println!("SOAK-MISMATCH: pa={:#x} pass={} expected={:#x} read={:#x}", m.pa, m.pass, m.expected, m.read);
    }
    if r.mismatches > r.first.len() as u64 {
        println!("SOAK-MISMATCH: ... {} more not listed", r.mismatches - r.first.len() as u64);
    }
    for (pa, len) in &r.bad_ranges {
        println!("SOAK-BAD-PAGES: {:#x}..{:#x} ({} KiB)", pa, pa + len, len >> 10);
    }
}

/// Every granule of every free frame holds every tag pattern it is given,
/// for `soak:passes` passes (default 1) and a final zeroing pass; any
/// mismatch is printed by physical address.
fn tag_integrity() -> TestResult {
    let passes = knobs::SOAK_PASSES.get().clamp(1, u32::MAX as u64) as u32;
    let free = frames::free_frames();
    let r = tag_soak::run(passes, |pass, r| {
        if passes > 1 {
            let last = if pass == passes { " (the final pass, tags zeroed)" } else { "" };
            println!(
                "soak: pass {}/{}{}: {} mismatches so far, {} s",
                pass + 1,
                passes + 1,
                last,
                r.mismatches,
                r.nanos / 1_000_000_000
            );
        }
    })
    .map_err(|e| crate::harness::Verdict::Fail(e.into()))?;
    println!(
        "SOAK: passes={} pages={} MiB={} granules={} mismatches={} ms={}",
        r.passes,
        r.pages,
        r.pages >> 8,
        r.granules_checked,
        r.mismatches,
        r.nanos / 1_000_000
    );
    ensure_eq!(r.pages, free, "frames soaked vs the allocator's free count");
    if let Some(m) = r.first.first() {
        print_mismatches(&r);
        fail!(
            "{} tag mismatch(es) in {} page run(s); first at pa {:#x} (pass {}, stored {:#x}, read {:#x})",
            r.mismatches,
            r.bad_ranges.len(),
            m.pa,
            m.pass,
            m.expected,
            m.read
        );
    }
    Ok(())
}
kernel_test!(soak, tag_integrity);

/// A tag changed behind the soak's back (the `soak:flip_pa` knob, as a
/// faulty cell) is reported once, at its granule's physical address, and
/// the run still gives every frame back.
fn a_flipped_tag_is_reported_by_address() -> TestResult {
    let Some(pa) = frames::alloc_uninit(1, 1) else { fail!("no free frame to aim at") };
    ensure!(frames::free(pa, 1).is_ok(), "giving back frame {pa:#x}");
    let target = pa + 0x5a0;
    let _flip = knobs::SOAK_FLIP_PA.set(target + 7);
    let free = frames::free_frames();
    let r = tag_soak::run(1, |_, _| {}).map_err(|e| crate::harness::Verdict::Fail(e.into()))?;
    ensure_eq!(r.mismatches, 1, "mismatches with one flipped tag");
    let m = r.first[0];
    ensure_eq!(m.pa, target, "address of the reported granule");
    ensure_eq!(m.pass, 0, "pass of the report");
    ensure_eq!(m.expected, tag_soak::pattern(target, 0), "stored tag reported");
    ensure_eq!(m.read, tag_soak::pattern(target, 0) ^ 0x5, "read tag reported");
    ensure_eq!(r.bad_ranges.as_slice(), &[(pa, 4096u64)][..], "bad page runs");
    ensure_eq!(frames::free_frames(), free, "free frames after the soak");
    Ok(())
}
kernel_test!(soak, a_flipped_tag_is_reported_by_address, timeout = 300);
