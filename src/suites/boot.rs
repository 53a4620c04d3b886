//! Suite `boot`: what boot read from firmware, checked against what the
//! kernel then did with memory.

use crate::arch::mmu::{self, linear_mut, phys_to_virt, EARLY_LINEAR_LIMIT, PAGE_SIZE};
use crate::arch::mte::PageData;
use crate::harness::{TestResult, Verdict};
use crate::mm::{frames, kmap::kernel_root};
use crate::platform::{self, MAX_RANGES};
use crate::{ensure, ensure_eq, fail, kernel_test, skip};

const PAGE: u64 = PAGE_SIZE as u64;

fn overlaps(pa: u64, (base, size): (u64, u64)) -> bool {
    pa < base.saturating_add(size) && pa + PAGE > base
}

/// What handing out every free frame showed.
struct Census {
    taken: usize,
    in_reserved: Option<u64>,
    outside_ram: Option<u64>,
    per_bank: [usize; MAX_RANGES],
    above_4g: usize,
}

/// Takes every free frame, checks each against the DTB's RAM banks and
/// reserved ranges, and gives them all back. The frames are chained through
/// their first word, so the census needs no memory of its own.
fn census() -> Result<Census, Verdict> {
    let m = platform::memory();
    let before = frames::free_frames();
    let mut c = Census { taken: 0, in_reserved: None, outside_ram: None, per_bank: [0; MAX_RANGES], above_4g: 0 };
    let mut head = 0u64;
    while let Some(pa) = frames::alloc_uninit(1, 1) {
        // SAFETY: the frame was just allocated to this test; STZG gives its
        // first granule tag 0 so the untagged write below is not checked
        // against an earlier owner's tag.
        let page = unsafe { linear_mut::<PageData>(pa) };
        page.stzg(0, 0);
        page.0[..8].copy_from_slice(&head.to_le_bytes());
        head = pa;
        c.taken += 1;
        c.above_4g += (pa >= EARLY_LINEAR_LIMIT) as usize;
        if m.reserved.iter().chain(m.test_reserved.iter()).any(|r| overlaps(pa, r)) {
            c.in_reserved.get_or_insert(pa);
        }
        match m.ram.iter().position(|(b, s)| pa >= b && pa + PAGE <= b + s) {
            Some(i) => c.per_bank[i] += 1,
            None => {
                c.outside_ram.get_or_insert(pa);
            }
        }
    }
    while head != 0 {
        // SAFETY: every frame of the chain is still this test's.
        let page = unsafe { linear_mut::<PageData>(head) };
        let next = u64::from_le_bytes(page.0[..8].try_into().unwrap_or([0; 8]));
        if let Err(e) = frames::free(head, 1) {
            fail!("giving back frame {head:#x}: {e:?}");
        }
        head = next;
    }
    ensure_eq!(c.taken, before, "frames handed out vs the allocator's free count");
    ensure_eq!(frames::free_frames(), before, "free frames after giving every one back");
    if let Some(pa) = c.outside_ram {
        fail!("frame {pa:#x} was handed out outside every /memory bank");
    }
    Ok(c)
}

/// Every /memory bank is used, RAM above the early map's 4 GiB included
/// (run with --numa 2 for two banks, --memory 4G for RAM above 4 GiB).
fn every_ram_bank_is_used() -> TestResult {
    let m = platform::memory();
    let c = census()?;
    for (i, (base, size)) in m.ram.iter().enumerate() {
        let reserved = m.reserved.iter().any(|(b, s)| b <= base && b + s >= base + size);
        ensure!(c.per_bank[i] > 0 || reserved, "RAM bank {base:#x}+{size:#x} was never handed out");
    }
    let (_, end) = m.ram.span();
    ensure!(
        end <= EARLY_LINEAR_LIMIT || c.above_4g > 0,
        "RAM reaches {end:#x} but no frame above 4 GiB was handed out"
    );
    Ok(())
}
kernel_test!(boot, every_ram_bank_is_used, timeout = 300);

/// Nothing the DTB reserves (/memreserve/, /reserved-memory) is handed out,
/// and what it marks no-map is not in the kernel's linear map. The expected
/// ranges come from the test DTB's own /chosen properties, so a reservation
/// the kernel failed to read is caught too.
fn firmware_reserved_memory_never_allocated() -> TestResult {
    let m = platform::memory();
    if m.test_reserved.is_empty() {
        skip!("not a test DTB (run with ./qemu-run.sh --dtb from scripts/make-test-dtb.sh)");
    }
    let covered =
        |(base, size): (u64, u64), by: &platform::Ranges| by.iter().any(|(b, s)| b <= base && b + s >= base + size);
    for r in m.test_reserved.iter() {
        ensure!(covered(r, &m.reserved), "the DTB reserves {:#x}+{:#x} but boot did not read it as reserved", r.0, r.1);
    }
    for r in m.test_no_map.iter() {
        ensure!(covered(r, &m.no_map), "the DTB marks {:#x}+{:#x} no-map but boot did not read it so", r.0, r.1);
    }
    let c = census()?;
    if let Some(pa) = c.in_reserved {
        fail!("frame {pa:#x} was handed out inside a firmware-reserved range");
    }
    for (base, size) in m.test_no_map.iter() {
        for pa in (base & !(PAGE - 1)..base + size).step_by(PAGE_SIZE) {
            ensure!(
                mmu::lookup(kernel_root(), phys_to_virt(pa)).is_none(),
                "no-map range {base:#x}+{size:#x}: {pa:#x} is in the kernel's linear map"
            );
        }
    }
    Ok(())
}
kernel_test!(boot, firmware_reserved_memory_never_allocated, timeout = 300);
