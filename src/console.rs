//! The serial console: plain-text report lines and defmt log frames share one
//! UART, one line each. A text line is its text and a newline, nothing else,
//! so `grep '^PASS: '` works on a raw capture. A defmt frame is a line of its
//! own: `DEFMT ` and the base64 of the frame's rzcobs bytes. A capture that
//! lost or replaced bytes (a UTF-8 log) loses only the lines they were in,
//! and a terminal shows only text (tools/kreport decodes the frames).

use crate::drivers::pl011::Pl011;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Once;

/// How a defmt frame line starts.
pub const FRAME_PREFIX: &[u8] = b"DEFMT ";

static UART: Once<Pl011> = Once::new();
/// Owner of the serial line: 0 when free, else CPU index + 1. A lock of its
/// own (not a spin::Mutex) because defmt acquires and releases it in separate
/// calls, and a panic must be able to take it back from its own CPU.
static OWNER: AtomicUsize = AtomicUsize::new(0);

pub fn init(uart: Pl011) {
    uart.init();
    UART.call_once(|| uart);
}

/// Whether `init` has run (a panic before it has no console of its own).
pub fn is_ready() -> bool {
    UART.is_completed()
}

pub(crate) fn acquire() {
    let me = crate::arch::cpu::id() + 1;
    while OWNER.compare_exchange_weak(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
        core::hint::spin_loop();
    }
}

pub(crate) fn release() {
    OWNER.store(0, Ordering::Release);
}

/// Takes the line for this CPU even from another that holds it (the
/// watchdog's last words while a hung CPU may be mid-line), after giving
/// that CPU a moment to finish, and starts a fresh line.
pub(crate) fn take_over() {
    let me = crate::arch::cpu::id() + 1;
    let until = crate::arch::cpu::counter() + crate::arch::cpu::counter_freq() / 10;
    while OWNER.compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed).is_err() {
        if crate::arch::cpu::counter() > until {
            OWNER.store(me, Ordering::Release);
            IN_FRAME.store(false, Ordering::Release);
            write_bytes(b"\n");
            break;
        }
        core::hint::spin_loop();
    }
    release();
}

/// Frees the line if this CPU holds it (a panic in the middle of a write),
/// ending a frame line it was in the middle of so the panic's text starts a
/// line of its own.
pub(crate) fn break_lock_if_mine() {
    let me = crate::arch::cpu::id() + 1;
    if OWNER.compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed).is_ok()
        && IN_FRAME.swap(false, Ordering::AcqRel)
    {
        write_bytes(b"\n");
    }
}

/// A frame line is being written (between the logger's acquire and release).
static IN_FRAME: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

pub(crate) fn write_bytes(bytes: &[u8]) {
    if let Some(u) = UART.get() {
        for &b in bytes {
            u.write_byte(b);
        }
    }
}

struct Text;

impl Write for Text {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_bytes(s.as_bytes());
        Ok(())
    }
}

/// Prints one line of plain text (a newline is added).
pub fn print_line(args: fmt::Arguments) {
    acquire();
    let _ = Text.write_fmt(args);
    write_bytes(b"\n");
    release();
}

/// `println!` for report lines: plain text, readable without the decoder.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => { $crate::console::print_line(format_args!($($arg)*)) };
}

/// The defmt transport: frames go to the same UART under the same lock.
#[defmt::global_logger]
struct Logger;

static ENCODER: spin::Mutex<defmt::Encoder> = spin::Mutex::new(defmt::Encoder::new());

/// One frame's line being built: base64 of the encoder's bytes, written out
/// three input bytes at a time (so nothing of a frame is buffered beyond
/// two bytes and the frame can be any length).
struct FrameLine {
    pending: [u8; 3],
    n: usize,
}

static FRAME: spin::Mutex<FrameLine> = spin::Mutex::new(FrameLine { pending: [0; 3], n: 0 });

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

impl FrameLine {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // rzcobs' 0x00 separators are not part of a frame on a line.
            if b == 0 {
                continue;
            }
            self.pending[self.n] = b;
            self.n += 1;
            if self.n == 3 {
                self.emit(3);
            }
        }
    }

    /// Writes the `n` pending bytes as base64 (padded when n < 3).
    fn emit(&mut self, n: usize) {
        let [a, b, c] = self.pending;
        let v = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c);
        let mut out = [b'='; 4];
        for (i, o) in out.iter_mut().enumerate().take(n + 1) {
            *o = B64[((v >> (18 - 6 * i)) & 63) as usize];
        }
        write_bytes(&out);
        self.pending = [0; 3];
        self.n = 0;
    }

    fn finish(&mut self) {
        if self.n > 0 {
            let n = self.n;
            self.emit(n);
        }
        write_bytes(b"\n");
    }
}

fn frame_bytes(bytes: &[u8]) {
    FRAME.lock().push(bytes);
}

// SAFETY: acquire/release bracket every frame with the serial lock, so frames
// never interleave with each other or with plain text.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        acquire();
        IN_FRAME.store(true, Ordering::Release);
        write_bytes(FRAME_PREFIX);
        ENCODER.lock().start_frame(frame_bytes);
    }

    unsafe fn flush() {
        if let Some(u) = UART.get() {
            u.flush();
        }
    }

    unsafe fn release() {
        ENCODER.lock().end_frame(frame_bytes);
        FRAME.lock().finish();
        IN_FRAME.store(false, Ordering::Release);
        release();
    }

    unsafe fn write(bytes: &[u8]) {
        ENCODER.lock().write(bytes, frame_bytes);
    }
}

defmt::timestamp!("{=u64:us}", {
    let f = crate::arch::cpu::counter_freq().max(1);
    crate::arch::cpu::counter() * 1_000_000 / f
});
