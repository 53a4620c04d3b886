//! A RAM-disk block device over a reserved physical region: 512-byte
//! sectors, requests that complete with a status, and fault injection.
//!
//! Requests complete synchronously (the copy is the "DMA"), but callers go
//! through submit/complete like a real driver so a failure is reported per
//! request. Fault injection: fail the Nth read or write from now on, or
//! every read of one sector.

use crate::testhooks::fault_inject;
use spin::Mutex;

pub const SECTOR_SIZE: usize = 512;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    Read,
    Write,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// The request reaches past the end of the disk.
    OutOfRange,
    /// An injected medium error.
    Injected { op: Op, sector: u64 },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub reads: u64,
    pub writes: u64,
    pub sectors_read: u64,
    pub sectors_written: u64,
    pub errors: u64,
}

struct Disk {
    base_pa: u64,
    sectors: u64,
    stats: Stats,
}

static DISK: Mutex<Option<Disk>> = Mutex::new(None);

/// Takes over `[base_pa, base_pa + bytes)`, reserved by the caller for good.
pub fn init(base_pa: u64, bytes: u64) {
    *DISK.lock() = Some(Disk { base_pa, sectors: bytes / SECTOR_SIZE as u64, stats: Stats::default() });
}

pub fn sectors() -> u64 {
    DISK.lock().as_ref().map_or(0, |d| d.sectors)
}

pub fn present() -> bool {
    DISK.lock().is_some()
}

pub fn stats() -> Stats {
    DISK.lock().as_ref().map_or(Stats::default(), |d| d.stats)
}

/// One request: `buf.len()` bytes (a multiple of the sector size) at `sector`.
pub struct Request<'a> {
    pub op: Op,
    pub sector: u64,
    pub buf: RequestBuf<'a>,
}

pub enum RequestBuf<'a> {
    Read(&'a mut [u8]),
    Write(&'a [u8]),
}

/// A submitted request's completion.
#[must_use]
pub struct Completion {
    status: Result<(), IoError>,
}

impl Completion {
    /// Waits for the request (already complete here) and returns its status.
    pub fn wait(self) -> Result<(), IoError> {
        self.status
    }
}

pub fn submit(req: Request) -> Completion {
    let mut guard = DISK.lock();
    let Some(d) = guard.as_mut() else {
        return Completion { status: Err(IoError::OutOfRange) };
    };
    let len = match &req.buf {
        RequestBuf::Read(b) => b.len(),
        RequestBuf::Write(b) => b.len(),
    };
    let count = (len / SECTOR_SIZE) as u64;
    if len % SECTOR_SIZE != 0 || req.sector.checked_add(count).is_none_or(|e| e > d.sectors) {
        d.stats.errors += 1;
        return Completion { status: Err(IoError::OutOfRange) };
    }
    let fail = match req.op {
        Op::Read => {
            let bad = crate::testhooks::knobs::RAMDISK_BAD_SECTOR.get();
            let bad = bad >= req.sector && bad < req.sector + count;
            fault_inject::RAMDISK_READ.should_fail() || bad
        }
        Op::Write => fault_inject::RAMDISK_WRITE.should_fail(),
    };
    if fail {
        d.stats.errors += 1;
        return Completion { status: Err(IoError::Injected { op: req.op, sector: req.sector }) };
    }
    let at = crate::arch::mmu::linear_ptr::<u8>(d.base_pa + req.sector * SECTOR_SIZE as u64);
    match req.buf {
        RequestBuf::Read(b) => {
            // SAFETY: the range is inside the disk's reserved region (checked
            // above), which only this driver touches, under DISK's lock.
            unsafe { core::ptr::copy_nonoverlapping(at, b.as_mut_ptr(), len) };
            d.stats.reads += 1;
            d.stats.sectors_read += count;
        }
        RequestBuf::Write(b) => {
            // SAFETY: as above.
            unsafe { core::ptr::copy_nonoverlapping(b.as_ptr(), at, len) };
            d.stats.writes += 1;
            d.stats.sectors_written += count;
        }
    }
    Completion { status: Ok(()) }
}
