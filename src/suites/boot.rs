//! Suite `boot`: what boot read from firmware, checked against what the
//! kernel then did with memory.

use crate::arch::mmu::{self, linear_mut, phys_to_virt, EARLY_LINEAR_LIMIT, PAGE_SIZE};
use crate::arch::mte::PageData;
use crate::harness::{TestResult, Verdict};
use crate::mm::{frames, kmap::kernel_root};
use crate::platform::{self, MAX_RANGES};
use crate::{ensure, ensure_eq, fail, kernel_test, skip};
use alloc::vec::Vec;

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
fn census(kept: &[(u64, u64)]) -> Result<Census, Verdict> {
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
        if m.reserved.iter().chain(m.test_reserved.iter()).chain(kept.iter().copied()).any(|r| overlaps(pa, r)) {
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
    let c = census(&[])?;
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

/// UEFI memory types firmware keeps after ExitBootServices (reserved,
/// runtime services code and data, unusable, ACPI reclaim and NVS,
/// persistent), listed here apart from platform::uefi's classification.
const EFI_KEPT_TYPES: [u32; 7] = [0, 5, 6, 8, 9, 10, 14];

/// Nothing firmware reserves is handed out: /memreserve/ and
/// /reserved-memory of the DTB, and after a UEFI boot every descriptor of a
/// type firmware keeps; what is no-map is not in the kernel's linear map.
/// The expected ranges come from the test DTB's own /chosen properties and
/// from the raw UEFI map, so a reservation boot failed to read is caught too.
fn firmware_reserved_memory_never_allocated() -> TestResult {
    let m = platform::memory();
    let efi_kept: Vec<(u64, u64)> = crate::arch::efi::facts()
        .map(|e| e.memory_map().filter(|d| EFI_KEPT_TYPES.contains(&d.ty)).map(|d| (d.start, d.pages * PAGE)).collect())
        .unwrap_or_default();
    if m.test_reserved.is_empty() && efi_kept.is_empty() {
        skip!("neither a test DTB (./qemu-run.sh --dtb from scripts/make-test-dtb.sh) nor a UEFI boot with reserved memory");
    }
    let covered =
        |(base, size): (u64, u64), by: &platform::Ranges| by.iter().any(|(b, s)| b <= base && b + s >= base + size);
    for r in m.test_reserved.iter().chain(efi_kept.iter().copied()) {
        ensure!(
            covered(r, &m.reserved),
            "firmware reserves {:#x}+{:#x} but boot did not read it as reserved",
            r.0,
            r.1
        );
    }
    for r in m.test_no_map.iter() {
        ensure!(covered(r, &m.no_map), "the DTB marks {:#x}+{:#x} no-map but boot did not read it so", r.0, r.1);
    }
    let c = census(&efi_kept)?;
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
