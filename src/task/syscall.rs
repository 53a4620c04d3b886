//! The system-call ABI, with Linux's arm64 numbers: x8 = number, x0-x5 =
//! arguments, x0 = result or -errno. Unknown numbers get ENOSYS.

use super::Task;
use crate::errno::{Errno, EBADF, EINVAL, ENOSYS, ENOTTY};
use crate::mm::{filemap, fork, mmap, swap, swapfile, uaccess, userfaultfd};

pub const SYS_IOCTL: u64 = 29;
pub const SYS_CLOSE: u64 = 57;
pub const SYS_READ: u64 = 63;
pub const SYS_EXIT: u64 = 93;
pub const SYS_EXIT_GROUP: u64 = 94;
pub const SYS_GETPID: u64 = 172;
pub const SYS_MUNMAP: u64 = 215;
pub const SYS_SWAPON: u64 = 224;
pub const SYS_SWAPOFF: u64 = 225;
pub const SYS_CLONE: u64 = 220;
pub const SYS_MMAP: u64 = 222;
pub const SYS_MPROTECT: u64 = 226;
pub const SYS_MLOCK: u64 = 228;
pub const SYS_MUNLOCK: u64 = 229;
pub const SYS_MADVISE: u64 = 233;
pub const SYS_USERFAULTFD: u64 = 282;

/// clone flags that make it fork.
pub const SIGCHLD: u64 = 17;

fn ret(r: Result<u64, Errno>) -> u64 {
    r.unwrap_or_else(|e| e.to_ret())
}

/// A file-descriptor argument: an unsigned int, so only the low 32 bits.
fn fd(a: u64) -> i64 {
    a as u32 as i64
}

/// Handles a system call; None when the task exited. The number is an int
/// on arm64 (el0_svc_common): only the low 32 bits of x8 count.
/// The userfaultfd context behind descriptor `fd` of this task: a context
/// another task holds is not this task's to use (EBADF, as Linux's per
/// process descriptor tables make it).
fn uffd_of(task: &Task, raw: u64) -> Option<alloc::sync::Arc<userfaultfd::Uffd>> {
    let fd = fd(raw);
    if task.holds_fd(fd) {
        userfaultfd::get(fd)
    } else {
        None
    }
}

pub fn dispatch(task: &Task, nr: u64, a: [u64; 6]) -> Option<u64> {
    let mm = task.mm();
    let nr = nr as u32 as u64;
    Some(match nr {
        SYS_MMAP => ret(mmap::do_mmap(&mm, a[0], a[1], a[2], a[3], a[4] as i64, a[5]).map(|v| v as u64)),
        SYS_MUNMAP => ret(mmap::do_munmap(&mm, a[0], a[1]).map(|_| 0)),
        SYS_MPROTECT => ret(mmap::do_mprotect(&mm, a[0], a[1], a[2]).map(|_| 0)),
        SYS_MADVISE => ret(mmap::do_madvise(&mm, a[0], a[1], a[2]).map(|_| 0)),
        SYS_MLOCK => ret(mmap::do_mlock(&mm, a[0], a[1], true).map(|_| 0)),
        SYS_MUNLOCK => ret(mmap::do_mlock(&mm, a[0], a[1], false).map(|_| 0)),
        SYS_GETPID => task.pid as u64,
        super::prctl::SYS_PRCTL => ret(super::prctl::prctl(&task.tagged_addr_ctrl, a)),
        SYS_USERFAULTFD => ret(userfaultfd::create(&mm, a[0]).map(|fd| {
            task.install_fd(fd);
            fd as u64
        })),
        // fd and cmd are unsigned ints: only their low 32 bits count.
        SYS_IOCTL => ret(match uffd_of(task, a[0]) {
            Some(ctx) => userfaultfd::ioctl(&ctx, &mm, a[1] as u32 as u64, a[2]),
            None if filemap::lookup(fd(a[0])).is_some() => Err(ENOTTY), // a file: no such ioctl
            None => Err(EBADF),
        }),
        SYS_READ => ret(match uffd_of(task, a[0]) {
            Some(_) if a[2] < 32 => Err(EINVAL),
            Some(ctx) => ctx.read().and_then(|m| uaccess::copy_to_user(&mm, a[1], &m).map(|_| 32)),
            None => Err(EBADF),
        }),
        SYS_CLOSE => ret(match uffd_of(task, a[0]) {
            Some(_) => task.close_fd(fd(a[0]) as i32).map(|_| 0),
            None if filemap::lookup(fd(a[0])).is_some() => {
                filemap::close(fd(a[0]) as i32);
                Ok(0)
            }
            None => Err(EBADF),
        }),
        // The only swap device is the RAM-disk: device number 0 stands for
        // swapon's path, and no flags are supported.
        SYS_SWAPON => ret(if a[0] != 0 || a[1] != 0 { Err(EINVAL) } else { swapfile::swapon().map(|_| 0) }),
        SYS_SWAPOFF => ret(if a[0] != 0 { Err(EINVAL) } else { swap::swapoff(0).map(|_| 0) }),
        SYS_CLONE => ret(if a[0] != SIGCHLD {
            Err(EINVAL) // only fork-style clone
        } else {
            fork::dup_mmap(&mm).map(|child| task.register_child(child).pid as u64)
        }),
        SYS_EXIT | SYS_EXIT_GROUP => {
            drop(mm);
            task.do_exit();
            return None;
        }
        _ => ENOSYS.to_ret(),
    })
}
