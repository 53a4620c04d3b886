//! The userfaultfd benchmark: UFFDIO_MOVE against UFFDIO_COPY per page and
//! per 2 MiB, for present pages, swapped-out pages and a THP, with Linux's
//! figures from the same QEMU (platform-notes) beside ours.

use super::measure;
use crate::errno::Errno;
use crate::mm::mmap::{
    MADV_HUGEPAGE, MADV_PAGEOUT, MAP_ANONYMOUS, MAP_FIXED, MAP_PRIVATE, PROT_MTE, PROT_READ, PROT_WRITE,
};
use crate::mm::userfaultfd::{
    UFFDIO_API, UFFDIO_COPY, UFFDIO_MOVE, UFFDIO_REGISTER, UFFDIO_REGISTER_MODE_MISSING, UFFD_API, UFFD_FEATURE_MOVE,
};
use crate::println;
use crate::task::syscall::{SYS_EXIT, SYS_IOCTL, SYS_MADVISE, SYS_MLOCK, SYS_MMAP, SYS_MUNLOCK, SYS_USERFAULTFD};
use crate::task::Task;
use alloc::sync::Arc;

const PAGE: usize = 4096;
const N: usize = 512; // 2 MiB

struct Bench {
    t: Arc<Task>,
    fd: u64,
    arg: usize,
}

fn sys(t: &Task, nr: u64, a: &[u64]) -> Result<u64, Errno> {
    match t.syscall(nr, a) {
        Ok(r) => Errno::from_ret(r).map_or(Ok(r), Err),
        Err(_) => Err(crate::errno::EFAULT),
    }
}

impl Bench {
    fn new() -> Result<Bench, Errno> {
        let t = Task::spawn()?;
        let fd = sys(&t, SYS_USERFAULTFD, &[0o4000])?;
        let arg =
            sys(&t, SYS_MMAP, &[0, PAGE as u64, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, u64::MAX, 0])?
                as usize;
        let b = Bench { t, fd, arg };
        b.ioctl(UFFDIO_API, &[UFFD_API, UFFD_FEATURE_MOVE, 0])?;
        Ok(b)
    }

    fn set_args(&self, words: &[u64]) {
        for (i, &w) in words.iter().enumerate() {
            let _ = self.t.store(self.arg + 8 * i, w);
        }
    }

    fn ioctl(&self, cmd: u64, words: &[u64]) -> Result<u64, Errno> {
        self.set_args(words);
        sys(&self.t, SYS_IOCTL, &[self.fd, cmd, self.arg as u64])
    }

    /// A populated PROT_MTE region of N pages at `at` (MAP_FIXED when not 0).
    fn region(&self, at: usize, huge: bool) -> Result<usize, Errno> {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | if at != 0 { MAP_FIXED } else { 0 };
        let a = sys(
            &self.t,
            SYS_MMAP,
            &[at as u64, (N * PAGE) as u64, PROT_READ | PROT_WRITE | PROT_MTE, flags, u64::MAX, 0],
        )? as usize;
        if huge {
            sys(&self.t, SYS_MADVISE, &[a as u64, (N * PAGE) as u64, MADV_HUGEPAGE])?;
        }
        sys(&self.t, SYS_MLOCK, &[a as u64, (N * PAGE) as u64])?;
        sys(&self.t, SYS_MUNLOCK, &[a as u64, (N * PAGE) as u64])?;
        Ok(a)
    }

    /// An empty destination of N pages registered for MISSING faults (at
    /// `at` with MAP_FIXED when not 0).
    fn dst_at(&self, at: usize) -> Result<usize, Errno> {
        let flags = MAP_PRIVATE | MAP_ANONYMOUS | if at != 0 { MAP_FIXED } else { 0 };
        let prot = PROT_READ | PROT_WRITE | PROT_MTE;
        let a = sys(&self.t, SYS_MMAP, &[at as u64, (N * PAGE) as u64, prot, flags, u64::MAX, 0])? as usize;
        self.ioctl(UFFDIO_REGISTER, &[a as u64, (N * PAGE) as u64, UFFDIO_REGISTER_MODE_MISSING, 0])?;
        Ok(a)
    }

    fn dst(&self) -> Result<usize, Errno> {
        self.dst_at(0)
    }
}

fn show(what: &str, c: super::Cost, pages: u64) {
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
        self.set_args(&[dst as u64, src as u64, (N * PAGE) as u64, 0, 0]);
        let (r, c) = measure(|| sys(&self.t, SYS_IOCTL, &[self.fd, cmd, self.arg as u64]));
        r.map(|_| c)
    }
}

fn run_cases() -> Result<(), Errno> {
    let b = Bench::new()?;
    let n = N as u64;
    show("MOVE present, one 2 MiB call", b.whole(UFFDIO_MOVE, b.region(0, false)?, b.dst()?)?, n);
    // One call per page, argument set-up included.
    let src = b.region(0, false)?;
    let dst = b.dst()?;
    let (r, c) = measure(|| -> Result<(), Errno> {
        for p in 0..N {
            b.ioctl(UFFDIO_MOVE, &[(dst + p * PAGE) as u64, (src + p * PAGE) as u64, PAGE as u64, 0, 0])?;
        }
        Ok(())
    });
    r?;
    show("MOVE present, one call per page", c, n);
    show("COPY, one 2 MiB call", b.whole(UFFDIO_COPY, b.region(0, false)?, b.dst()?)?, n);
    if crate::mm::swapfile::swapon().is_ok() {
        let src = b.region(0, false)?;
        sys(&b.t, SYS_MADVISE, &[src as u64, (N * PAGE) as u64, MADV_PAGEOUT])?;
        show("MOVE swapped-out, one 2 MiB call", b.whole(UFFDIO_MOVE, src, b.dst()?)?, n);
    } else {
        println!("bench: no swap (ramdisk=0?): swapped-out MOVE not measured");
    }
    // An aligned THP moves in one PMD-level step; to an unaligned dst it
    // is split and moved pte by pte.
    let c = b.whole(UFFDIO_MOVE, b.region(0x50_0000_0000, true)?, b.dst_at(0x60_0000_0000)?)?;
    show("MOVE aligned THP (one PMD)", c, n);
    let c = b.whole(UFFDIO_MOVE, b.region(0x70_0000_0000, true)?, b.dst_at(0x80_0000_1000)?)?;
    show("MOVE THP, unaligned dst (split)", c, n);
    let _ = b.t.syscall(SYS_EXIT, &[0]);
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
