//! The userfaultfd uAPI structures (include/uapi/linux/userfaultfd.h) with
//! Linux's layout, and the ioctl numbers derived from their sizes as
//! Linux's _IOR/_IOWR do. The kernel reads and writes them in a task's
//! memory; the suites build them. Pure data: the host tests include it.

/// A structure made of 64-bit fields, copied as little-endian words.
pub trait Words: Sized {
    const WORDS: usize;
    fn from_words(w: &[u64]) -> Self;
    fn to_words(&self) -> alloc::vec::Vec<u64>;
}

macro_rules! uapi_struct {
    ($(#[$m:meta])* $name:ident { $($field:ident: $ty:ty),* $(,)? }) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct $name {
            $(pub $field: $ty),*
        }

        impl Words for $name {
            const WORDS: usize = core::mem::size_of::<$name>() / 8;
            fn from_words(w: &[u64]) -> Self {
                let mut it = w.iter().copied();
                $name { $($field: it.next().unwrap_or(0) as $ty),* }
            }
            fn to_words(&self) -> alloc::vec::Vec<u64> {
                alloc::vec![$(self.$field as u64),*]
            }
        }
    };
}

uapi_struct!(
    /// struct uffdio_api
    UffdioApi { api: u64, features: u64, ioctls: u64 }
);
uapi_struct!(
    /// struct uffdio_range
    UffdioRange { start: u64, len: u64 }
);
uapi_struct!(
    /// struct uffdio_register (its range flattened: start, len)
    UffdioRegister { start: u64, len: u64, mode: u64, ioctls: u64 }
);
uapi_struct!(
    /// struct uffdio_copy
    UffdioCopy { dst: u64, src: u64, len: u64, mode: u64, copy: i64 }
);
uapi_struct!(
    /// struct uffdio_zeropage (its range flattened)
    UffdioZeropage { start: u64, len: u64, mode: u64, zeropage: i64 }
);
uapi_struct!(
    /// struct uffdio_writeprotect (its range flattened)
    UffdioWriteprotect { start: u64, len: u64, mode: u64 }
);
uapi_struct!(
    /// struct uffdio_move (`move` is a Rust keyword: `moved`)
    UffdioMove { dst: u64, src: u64, len: u64, mode: u64, moved: i64 }
);

const UFFDIO: u64 = 0xAA;
const fn ioc(dir: u64, nr: u64, size: usize) -> u64 {
    (dir << 30) | ((size as u64) << 16) | (UFFDIO << 8) | nr
}
const fn ior(nr: u64, size: usize) -> u64 {
    ioc(2, nr, size)
}
const fn iowr(nr: u64, size: usize) -> u64 {
    ioc(3, nr, size)
}

pub const UFFDIO_API: u64 = iowr(0x3f, core::mem::size_of::<UffdioApi>());
pub const UFFDIO_REGISTER: u64 = iowr(0x00, core::mem::size_of::<UffdioRegister>());
pub const UFFDIO_UNREGISTER: u64 = ior(0x01, core::mem::size_of::<UffdioRange>());
pub const UFFDIO_WAKE: u64 = ior(0x02, core::mem::size_of::<UffdioRange>());
pub const UFFDIO_COPY: u64 = iowr(0x03, core::mem::size_of::<UffdioCopy>());
pub const UFFDIO_ZEROPAGE: u64 = iowr(0x04, core::mem::size_of::<UffdioZeropage>());
pub const UFFDIO_MOVE: u64 = iowr(0x05, core::mem::size_of::<UffdioMove>());
pub const UFFDIO_WRITEPROTECT: u64 = iowr(0x06, core::mem::size_of::<UffdioWriteprotect>());

// Linux's numbers, as its headers expand them on arm64.
const _: () = {
    assert!(UFFDIO_API == 0xc018_aa3f);
    assert!(UFFDIO_REGISTER == 0xc020_aa00);
    assert!(UFFDIO_UNREGISTER == 0x8010_aa01);
    assert!(UFFDIO_WAKE == 0x8010_aa02);
    assert!(UFFDIO_COPY == 0xc028_aa03);
    assert!(UFFDIO_ZEROPAGE == 0xc020_aa04);
    assert!(UFFDIO_MOVE == 0xc028_aa05);
    assert!(UFFDIO_WRITEPROTECT == 0xc018_aa06);
    assert!(core::mem::offset_of!(UffdioMove, moved) == 32);
    assert!(core::mem::offset_of!(UffdioCopy, copy) == 32);
    assert!(core::mem::offset_of!(UffdioZeropage, zeropage) == 24);
    assert!(core::mem::offset_of!(UffdioRegister, ioctls) == 24);
};

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_in_field_order() {
        let m = UffdioMove { dst: 1, src: 2, len: 3, mode: 4, moved: -11 };
        assert_eq!(m.to_words(), [1, 2, 3, 4, (-11i64) as u64]);
        assert_eq!(UffdioMove::from_words(&m.to_words()), m);
        assert_eq!(UffdioMove::WORDS, 5);
        assert_eq!(UffdioRange::WORDS, 2);
    }
}
