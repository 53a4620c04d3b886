//! Linux errno values returned to EL0 (as -errno) and used inside the kernel.

// The values the mm paths (present and to come) return.
#![allow(dead_code)]

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

pub const EPERM: Errno = Errno(1);
pub const ENOENT: Errno = Errno(2);
pub const ESRCH: Errno = Errno(3);
pub const EIO: Errno = Errno(5);
pub const EBADF: Errno = Errno(9);
pub const EAGAIN: Errno = Errno(11);
pub const ENOMEM: Errno = Errno(12);
pub const EACCES: Errno = Errno(13);
pub const EFAULT: Errno = Errno(14);
pub const EBUSY: Errno = Errno(16);
pub const EEXIST: Errno = Errno(17);
pub const EINVAL: Errno = Errno(22);
pub const ENOTTY: Errno = Errno(25);
pub const EOVERFLOW: Errno = Errno(75);
pub const EOPNOTSUPP: Errno = Errno(95);
pub const ENOSYS: Errno = Errno(38);

impl Errno {
    pub fn name(self) -> &'static str {
        match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            5 => "EIO",
            9 => "EBADF",
            11 => "EAGAIN",
            12 => "ENOMEM",
            13 => "EACCES",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            25 => "ENOTTY",
            75 => "EOVERFLOW",
            95 => "EOPNOTSUPP",
            38 => "ENOSYS",
            _ => "E?",
        }
    }

    /// The errno a name such as "EINVAL" stands for (the names above).
    pub fn from_name(name: &str) -> Option<Errno> {
        (1..=133).map(Errno).find(|e| e.name() == name)
    }

    /// The value a syscall returns for it.
    pub fn to_ret(self) -> u64 {
        (-(self.0 as i64)) as u64
    }

    /// The errno in a syscall return value, if it is one (-4095..-1).
    pub fn from_ret(ret: u64) -> Option<Errno> {
        let v = ret as i64;
        (-4095..0).contains(&v).then(|| Errno(-v as i32))
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}
