//! A task's system calls as typed calls, the way libc offers them to a C
//! program: each one is a real `svc` from the task's EL0 agent, with the
//! arguments in Linux's registers. The outer `Err` is a signal that killed
//! or stopped the task instead of the call returning; the inner one is the
//! errno it returned.

use super::agent::Signal;
use super::prctl::SYS_PRCTL;
use super::syscall::*;
use super::Task;
use crate::errno::Errno;
use crate::mm::uffd_uapi::Words;

pub type SysResult<T> = Result<Result<T, Errno>, Signal>;

impl Task {
    /// Any system call by number, arguments as raw registers (for the tests
    /// of malformed arguments; the typed calls below are for the rest).
    pub fn sys(&self, nr: u64, args: &[u64]) -> SysResult<u64> {
        let r = self.syscall(nr, args)?;
        Ok(match Errno::from_ret(r) {
            Some(e) => Err(e),
            None => Ok(r),
        })
    }

    fn sys0(&self, nr: u64, args: &[u64]) -> SysResult<()> {
        self.sys(nr, args).map(|r| r.map(|_| ()))
    }

    /// In one EL0 entry, `count` calls of system call `nr` with arguments
    /// (a0, a1, arg), `arg` advancing by `stride` bytes each time: a
    /// program's ioctl loop over an array of argument blocks. Stops at the
    /// first error.
    pub fn syscall_loop(&self, nr: u64, a0: u64, a1: u64, arg: usize, stride: usize, count: usize) -> SysResult<()> {
        let r = self.run(super::agent::Routine::SyscallLoop, &[a0, a1, arg as u64, stride as u64, count as u64, nr])?;
        Ok(Errno::from_ret(r).map_or(Ok(()), Err))
    }

    pub fn mmap(&self, addr: usize, len: usize, prot: u64, flags: u64, fd: i64, off: u64) -> SysResult<usize> {
        self.sys(SYS_MMAP, &[addr as u64, len as u64, prot, flags, fd as u64, off]).map(|r| r.map(|a| a as usize))
    }

    pub fn munmap(&self, addr: usize, len: usize) -> SysResult<()> {
        self.sys0(SYS_MUNMAP, &[addr as u64, len as u64])
    }

    pub fn mprotect(&self, addr: usize, len: usize, prot: u64) -> SysResult<()> {
        self.sys0(SYS_MPROTECT, &[addr as u64, len as u64, prot])
    }

    pub fn madvise(&self, addr: usize, len: usize, advice: u64) -> SysResult<()> {
        self.sys0(SYS_MADVISE, &[addr as u64, len as u64, advice])
    }

    pub fn mlock(&self, addr: usize, len: usize) -> SysResult<()> {
        self.sys0(SYS_MLOCK, &[addr as u64, len as u64])
    }

    pub fn munlock(&self, addr: usize, len: usize) -> SysResult<()> {
        self.sys0(SYS_MUNLOCK, &[addr as u64, len as u64])
    }

    /// fork (clone with SIGCHLD): the child's pid.
    pub fn fork(&self) -> SysResult<u32> {
        self.sys(SYS_CLONE, &[SIGCHLD]).map(|r| r.map(|pid| pid as u32))
    }

    /// exit: the task is gone when it returns Ok.
    pub fn exit(&self, code: u64) -> Result<(), Signal> {
        self.syscall(SYS_EXIT, &[code]).map(|_| ())
    }

    pub fn swapon(&self, path: u64, flags: u64) -> SysResult<()> {
        self.sys0(SYS_SWAPON, &[path, flags])
    }

    pub fn swapoff(&self, path: u64) -> SysResult<()> {
        self.sys0(SYS_SWAPOFF, &[path])
    }

    pub fn prctl(&self, option: u32, a2: u64, a3: u64, a4: u64, a5: u64) -> SysResult<u64> {
        self.sys(SYS_PRCTL, &[option as u64, a2, a3, a4, a5])
    }

    pub fn userfaultfd(&self, flags: u64) -> SysResult<u64> {
        self.sys(SYS_USERFAULTFD, &[flags])
    }

    pub fn read(&self, fd: u64, buf: usize, len: usize) -> SysResult<usize> {
        self.sys(SYS_READ, &[fd, buf as u64, len as u64]).map(|r| r.map(|n| n as usize))
    }

    pub fn close(&self, fd: u64) -> SysResult<()> {
        self.sys0(SYS_CLOSE, &[fd])
    }

    pub fn ioctl(&self, fd: u64, cmd: u64, arg: usize) -> SysResult<u64> {
        self.sys(SYS_IOCTL, &[fd, cmd, arg as u64])
    }

    /// ioctl with the uAPI structure `v` written at `arg` in the task's
    /// memory: the result, and the structure as the kernel left it.
    pub fn ioctl_struct<T: Words>(
        &self,
        fd: u64,
        cmd: u64,
        arg: usize,
        v: &T,
    ) -> Result<(Result<u64, Errno>, T), Signal> {
        for (i, w) in v.to_words().into_iter().enumerate() {
            self.store(arg + 8 * i, w)?;
        }
        let r = self.ioctl(fd, cmd, arg)?;
        let back = (0..T::WORDS).map(|i| self.load(arg + 8 * i)).collect::<Result<alloc::vec::Vec<_>, _>>()?;
        Ok((r, T::from_words(&back)))
    }
}
