//! The fault benchmark: first-touch write faults on fresh anonymous pages,
//! with and without PROT_MTE, and COW write faults in a forked child on
//! tagged pages, 4096 pages each, every page touched by one loop in one EL0
//! entry (as ../shared/linux-ref's mtetest does it).

use super::{measure, row, step, with_task};
use crate::arch::mte::with_tag;
use crate::errno::{Errno, EFAULT};
use crate::mm::mmap::{MAP_ANONYMOUS, MAP_PRIVATE, PROT_MTE, PROT_READ, PROT_WRITE};
use crate::println;
use crate::task::Task;

const PAGE: usize = crate::arch::mmu::PAGE_SIZE;
const N: usize = 4096;

fn map(t: &Task, mte: bool) -> Result<usize, Errno> {
    let prot = PROT_READ | PROT_WRITE | if mte { PROT_MTE } else { 0 };
    step(t.mmap(0, N * PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0))
}

fn show(what: &str, op: &str, c: super::Cost) {
    let (i, _, ns) = c.per(N as u64);
    println!("bench: {what:<40} {i:>8} instr/page {:>5}.{:01} us/page", ns / 1000, ns % 1000 / 100);
    row(op, N as u64, c);
}

fn first_touch(t: &Task) -> Result<(), Errno> {
    for mte in [true, false] {
        let a = map(t, mte)?;
        // Fresh pages have tag 0, so the untagged pointer is right.
        let (r, c) = measure(|| t.touch(a + 64, N * PAGE, PAGE, Some(1)));
        r.map_err(|_| EFAULT)?;
        let (what, op) = if mte {
            ("first-touch write fault, PROT_MTE", "first_touch_write_fault_mte")
        } else {
            ("first-touch write fault, no PROT_MTE", "first_touch_write_fault_nomte")
        };
        show(what, op, c);
        step(t.munmap(a, N * PAGE))?;
    }
    Ok(())
}

fn cow(t: &Task) -> Result<(), Errno> {
    let a = map(t, true)?;
    // Every page tagged (tag 1 + page % 15 over the page) and written.
    for p in 0..N {
        let at = with_tag(a + p * PAGE, (1 + p % 15) as u8);
        t.tag_range(at, PAGE).map_err(|_| EFAULT)?;
        t.store(at, p as u64).map_err(|_| EFAULT)?;
    }
    let pid = step(t.fork())?;
    let child = Task::get(pid).ok_or(EFAULT)?;
    // The child writes each page through its tagged pointer.
    let Some(list) = super::user_words(&child, (0..N).map(|p| with_tag(a + p * PAGE, (1 + p % 15) as u8) as u64))
    else {
        let _ = child.exit(0);
        return Err(EFAULT);
    };
    // *p = *p through each page's tagged pointer, in one EL0 entry.
    let (r, c) = measure(|| child.load_list(list, N, true));
    let sum = r.map_err(|_| EFAULT);
    let _ = child.exit(0);
    if sum? != (0..N as u64).sum::<u64>() {
        println!("bench: the child did not read back what the parent wrote");
    }
    show("COW write fault in the child, PROT_MTE", "cow_write_fault_child", c);
    Ok(())
}

pub fn run() {
    println!("bench: faults, {N} pages per case, each loop in one EL0 entry");
    with_task(first_touch);
    with_task(cow);
}
