//! The serial console: plain-text report lines and defmt log frames share one
//! UART. Every plain-text write ends with a 0x00 byte and every defmt frame
//! starts with 0xFF (never the first byte of ASCII text) and ends with the
//! 0x00 that rzcobs ends it with, so the host splits the stream at 0x00 and
//! tells the two apart by the first byte (tools/kreport).

use crate::drivers::pl011::Pl011;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};
use spin::Once;

pub const FRAME_MARKER: u8 = 0xFF;

static UART: Once<Pl011> = Once::new();
/// Owner of the serial line: 0 when free, else CPU index + 1. A lock of its
/// own (not a spin::Mutex) because defmt acquires and releases it in separate
/// calls, and a panic must be able to take it back from its own CPU.
static OWNER: AtomicUsize = AtomicUsize::new(0);

pub fn init(uart: Pl011) {
    uart.init();
    UART.call_once(|| uart);
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

/// Frees the line if this CPU holds it (a panic in the middle of a write).
pub(crate) fn break_lock_if_mine() {
    let me = crate::arch::cpu::id() + 1;
    let _ = OWNER.compare_exchange(me, 0, Ordering::Release, Ordering::Relaxed);
}

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
    write_bytes(b"\n\0");
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

// SAFETY: acquire/release bracket every frame with the serial lock, so frames
// never interleave with each other or with plain text.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        acquire();
        // rzcobs writes a 0x00 separator before its very first frame; the
        // marker must come after it.
        ENCODER.lock().start_frame(write_bytes);
        write_bytes(&[FRAME_MARKER]);
    }

    unsafe fn flush() {
        if let Some(u) = UART.get() {
            u.flush();
        }
    }

    unsafe fn release() {
        ENCODER.lock().end_frame(write_bytes);
        release();
    }

    unsafe fn write(bytes: &[u8]) {
        ENCODER.lock().write(bytes, write_bytes);
    }
}

defmt::timestamp!("{=u64:us}", {
    let f = crate::arch::cpu::counter_freq().max(1);
    crate::arch::cpu::counter() * 1_000_000 / f
});
