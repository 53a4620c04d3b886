//! The userfaultfd benchmark: UFFDIO_MOVE against UFFDIO_COPY per page and
//! per 2 MiB, for present pages, swapped-out pages and a THP, with Linux's
//! figures from the same QEMU (platform-notes) beside ours.

use super::{measure, step};
use crate::errno::{Errno, EFAULT};
use crate::mm::mmap::{
    MADV_HUGEPAGE, MADV_PAGEOUT, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_MTE, PROT_READ, PROT_WRITE,
};
use crate::mm::uffd_uapi::{UffdioApi, UffdioCopy, UffdioMove, UffdioRegister, Words};
use crate::mm::userfaultfd::{
    UFFDIO_API, UFFDIO_COPY, UFFDIO_MOVE, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_MISSING, UFFD_API, UFFD_FEATURE_MOVE,
};
use crate::println;
use crate::task::syscall::SYS_IOCTL;
use crate::task::Task;
use alloc::sync::Arc;

const PAGE: usize = crate::arch::mmu::PAGE_SIZE;
const N: usize = 512; // 2 MiB

struct Bench {
    t: Arc<Task>,
    fd: u64,
    arg: usize,
}

impl Bench {
    fn new() -> Result<Bench, Errno> {
        let t = Task::spawn()?;
        let fd = step(t.userfaultfd(0o4000))?;
        let arg = step(t.mmap(0, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))?;
        let b = Bench { t, fd, arg };
        b.ioctl(UFFDIO_API, &UffdioApi { api: UFFD_API, features: UFFD_FEATURE_MOVE, ioctls: 0 })?;
        Ok(b)
    }

    /// The structure at the argument page (written, never read back, so
    /// a measured call costs what a program's would).
    fn set_args(&self, words: &[u64]) {
        for (i, &w) in words.iter().enumerate() {
            let _ = self.t.store(self.arg + 8 * i, w);
        }
    }

    fn ioctl<T: Words>(&self, cmd: u64, v: &T) -> Result<u64, Errno> {
        self.set_args(&v.to_words());
        step(self.t.ioctl(self.fd, cmd, self.arg))
    }

    /// A populated PROT_MTE region of N pages at `at` (MAP_FIXED when not 0).
    fn region(&self, at: usize, huge: bool) -> Result<usize, Errno> {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | if at != 0 { MAP_FIXED } else { 0 };
        let a = step(self.t.mmap(at, N * PAGE, PROT_READ | PROT_WRITE | PROT_MTE, flags, -1, 0))?;
        if huge {
            step(self.t.madvise(a, N * PAGE, MADV_HUGEPAGE))?;
        }
        step(self.t.mlock(a, N * PAGE))?;
        step(self.t.munlock(a, N * PAGE))?;
        Ok(a)
    }

    /// An empty destination of N pages registered for MISSING faults (at
    /// `at` with MAP_FIXED when not 0).
    fn dst_at(&self, at: usize) -> Result<usize, Errno> {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | if at != 0 { MAP_FIXED } else { 0 };
        let a = step(self.t.mmap(at, N * PAGE, PROT_READ | PROT_WRITE | PROT_MTE, flags, -1, 0))?;
        let reg =
            UffdioRegister { start: a as u64, len: (N * PAGE) as u64, mode: UFFDIO_REGISTER_MODE_MISSING, ioctls: 0 };
        self.ioctl(UFFDIO_REGISTER, &reg)?;
        Ok(a)
    }

    fn dst(&self) -> Result<usize, Errno> {
        self.dst_at(0)
    }
}

/// The uffdio_move or uffdio_copy for `len` bytes from `src` to `dst`.
fn range_args(cmd: u64, dst: usize, src: usize, len: usize) -> alloc::vec::Vec<u64> {
    let (dst, src, len) = (dst as u64, src as u64, len as u64);
    if cmd == UFFDIO_MOVE {
        UffdioMove { dst, src, len, mode: 0, moved: 0 }.to_words()
    } else {
        UffdioCopy { dst, src, len, mode: 0, copy: 0 }.to_words()
    }
}

fn show(what: &str, op: &str, c: super::Cost, pages: u64) {
    super::row(op, pages, c);
    let (i, _, ns) = c.per(pages);
    println!(
        "bench: {what:<34} {i:>8} instr/page {:>5}.{:01} us/page | per 2 MiB {:>10} instr {:>7} us",
        ns / 1000,
        ns % 1000 / 100,
        i * 512,
        ns * 512 / 1000
    );
}

impl Bench {
    /// One ioctl `cmd` over the whole 2 MiB from `src` to `dst`, measured.
    fn whole(&self, cmd: u64, src: usize, dst: usize) -> Result<super::Cost, Errno> {
        self.set_args(&range_args(cmd, dst, src, N * PAGE));
        let (r, c) = measure(|| step(self.t.ioctl(self.fd, cmd, self.arg)));
        r.map(|_| c)
    }
}

fn run_cases() -> Result<(), Errno> {
    let b = Bench::new()?;
    let n = N as u64;
    show("MOVE present, one 2 MiB call", "uffdio_move_bulk", b.whole(UFFDIO_MOVE, b.region(0, false)?, b.dst()?)?, n);
    // One call per page, each with its own argument block (written
    // beforehand, as a program's loop fills one in a few stores).
    let src = b.region(0, false)?;
    let dst = b.dst()?;
    let words: alloc::vec::Vec<u64> =
        (0..N).flat_map(|p| range_args(UFFDIO_MOVE, dst + p * PAGE, src + p * PAGE, PAGE)).collect();
    let per = words.len() / N * 8;
    let args = super::user_words(&b.t, words.into_iter()).ok_or(EFAULT)?;
    // The loop of ioctls runs in EL0, as a program's would.
    let (r, c) = measure(|| step(b.t.syscall_loop(SYS_IOCTL, b.fd, UFFDIO_MOVE, args, per, N)));
    r?;
    show("MOVE present, one call per page", "uffdio_move_perpage_ioctl", c, n);
    show("COPY, one 2 MiB call", "uffdio_copy_bulk", b.whole(UFFDIO_COPY, b.region(0, false)?, b.dst()?)?, n);
    if crate::mm::swapfile::swapon().is_ok() {
        let src = b.region(0, false)?;
        step(b.t.madvise(src, N * PAGE, MADV_PAGEOUT))?;
        show("MOVE swapped-out, one 2 MiB call", "uffdio_move_swapped_bulk", b.whole(UFFDIO_MOVE, src, b.dst()?)?, n);
    } else {
        println!("bench: no swap (ramdisk=0?): swapped-out MOVE not measured");
    }
    // An aligned THP moves in one PMD-level step; to an unaligned dst it
    // is split and moved pte by pte.
    let c = b.whole(UFFDIO_MOVE, b.region(0x50_0000_0000, true)?, b.dst_at(0x60_0000_0000)?)?;
    show("MOVE aligned THP (one PMD)", "uffdio_move_thp_2MiB", c, n);
    let c = b.whole(UFFDIO_MOVE, b.region(0x70_0000_0000, true)?, b.dst_at(0x80_0000_1000)?)?;
    show("MOVE THP, unaligned dst (split)", "uffdio_move_thp_split", c, n);
    let _ = b.t.exit(0);
    let _ = crate::mm::swap::swapoff(0);
    Ok(())
}

pub fn run() {
    println!("bench: userfaultfd MOVE vs COPY of tagged pages (2 MiB = 512 pages per case)");
    if let Err(e) = run_cases() {
        println!("bench: a step failed with {e}");
    }
    println!("bench: Linux in the same QEMU (platform-notes, wall clock):");
    println!("bench:   MOVE, one 16 MiB call           Linux 6.12:  6.8 us/page   Linux 7.2:  1.1 us/page");
    println!("bench:   MOVE, one call per page         Linux 6.12: 21.6 us/page   Linux 7.2: 18.4 us/page");
    println!("bench:   MOVE of swapped-out pages       Linux 6.12:  2.3 us/page   Linux 7.2:  2.7 us/page");
    println!("bench:   MOVE of a 2 MiB THP (one PMD)   Linux 6.12: 0.31 ms        Linux 7.2: 0.24 ms");
    println!("bench:   COPY, one 16 MiB call           Linux 6.12: 26.3 us/page   Linux 7.2: 13.1 us/page");
}
