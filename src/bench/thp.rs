//! The THP benchmark, per 2 MiB PROT_MTE THP: the write fault that maps it
//! (one PMD), UFFDIO_MOVE of the real PMD, swap-out (MADV_PAGEOUT: the PMD
//! split, the folio written whole with 512 pages' tags saved) and swap-in
//! (page by page: this kernel swaps in PMD-sized folios a page at a time),
//! with Linux's figures from the same QEMU (platform-notes) beside ours.

use super::{measure, step};
use crate::arch::mte::with_tag;
use crate::cmdline::ThpEnabled;
use crate::errno::{Errno, EFAULT};
use crate::mm::mmap::{MADV_PAGEOUT, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_MTE, PROT_READ, PROT_WRITE};
use crate::mm::pte::pmd_trans_huge;
use crate::mm::uffd_uapi::{UffdioApi, UffdioMove, UffdioRegister, Words};
use crate::mm::userfaultfd::{
    UFFDIO_API, UFFDIO_MOVE, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_MISSING, UFFD_API, UFFD_FEATURE_MOVE,
};
use crate::println;
use crate::task::Task;
use crate::testhooks::knobs::THP_ENABLED;

const PAGE: usize = crate::arch::mmu::PAGE_SIZE;
const HUGE: usize = crate::arch::mmu::PMD_SIZE;
const N: usize = 8; // THPs per case
const SRC: usize = 0x40_0000_0000;
const DST: usize = 0x60_0000_0000;

fn show(what: &str, c: super::Cost) {
    let (i, _, ns) = c.per(N as u64);
    println!(
        "bench: {what:<40} {i:>10} instr {:>7}.{:01} us per 2 MiB ({} instr, {}.{:01} us per page)",
        ns / 1000,
        ns % 1000 / 100,
        i / 512,
        ns / 512 / 1000,
        ns / 512 % 1000 / 100
    );
}

fn run_cases(t: &Task) -> Result<(), Errno> {
    let prot = PROT_READ | PROT_WRITE | PROT_MTE;
    let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    step(t.mmap(SRC, N * HUGE, prot, flags, -1, 0))?;
    let (r, c) = measure(|| -> Result<(), crate::task::agent::Signal> {
        for i in 0..N {
            t.store(SRC + i * HUGE, i as u64)?;
        }
        Ok(())
    });
    r.map_err(|_| EFAULT)?;
    if !(0..N).all(|i| pmd_trans_huge(t.mm().pgtables.pmd_peek(SRC + i * HUGE))) {
        println!("bench: the faults did not map PMDs; THP numbers are not measured");
        return Err(EFAULT);
    }
    show("first-touch write fault (one PMD)", c);

    let fd = step(t.userfaultfd(0o4000))?;
    let arg = step(t.mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))?;
    let ioctl = |cmd: u64, words: &[u64]| -> Result<u64, Errno> {
        for (i, &w) in words.iter().enumerate() {
            t.store(arg + 8 * i, w).map_err(|_| EFAULT)?;
        }
        step(t.ioctl(fd, cmd, arg))
    };
    ioctl(UFFDIO_API, &UffdioApi { api: UFFD_API, features: UFFD_FEATURE_MOVE, ioctls: 0 }.to_words())?;
    step(t.mmap(DST, N * HUGE, prot, flags, -1, 0))?;
    let reg =
        UffdioRegister { start: DST as u64, len: (N * HUGE) as u64, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
    ioctl(UFFDIO_REGISTER, &reg.to_words())?;
    let m = UffdioMove { dst: DST as u64, src: SRC as u64, len: (N * HUGE) as u64, mode: 0, moved: 0 };
    let (r, c) = measure(|| ioctl(UFFDIO_MOVE, &m.to_words()));
    r?;
    show("UFFDIO_MOVE of real PMDs (one call)", c);

    let (r, c) = measure(|| step(t.madvise(DST, N * HUGE, MADV_PAGEOUT)));
    let swapped = r.is_ok();
    if swapped {
        show("swap-out (MADV_PAGEOUT; split, whole folio)", c);
        let (r, c) = measure(|| -> Result<(), crate::task::agent::Signal> {
            for i in 0..N * 512 {
                t.load(with_tag(DST + i * PAGE, 0))?;
            }
            Ok(())
        });
        r.map_err(|_| EFAULT)?;
        show("swap-in (page by page)", c);
    } else {
        println!("bench: no swap (ramdisk=0?): swap-out and swap-in not measured");
    }
    Ok(())
}

pub fn run() {
    println!("bench: PROT_MTE THPs, {N} x 2 MiB per case");
    let _thp = THP_ENABLED.set(ThpEnabled::Always as u64);
    let swap = crate::mm::swapfile::swapon().is_ok();
    super::with_task(run_cases);
    if swap {
        let _ = crate::mm::swap::swapoff(0);
    }
    println!("bench: Linux in the same QEMU (platform-notes, wall clock, THP always):");
    println!("bench:   first-touch write fault, PROT_MTE  Linux 6.12: 29.8 us/page");
    println!("bench:   UFFDIO_MOVE of a 2 MiB THP          Linux 6.12: 0.31 ms     Linux 7.2: 0.24 ms");
    println!("bench:   swap-out (MADV_PAGEOUT), tagged     Linux 6.12: 108 us/page Linux 7.2: 81 us/page");
    println!("bench:   swap-in (tagged read fault)         Linux 6.12: 51 us/page  Linux 7.2: 46 us/page");
}
