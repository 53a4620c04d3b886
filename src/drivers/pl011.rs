//! Arm PL011 UART, transmit side (the console and report channel).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_bitfields! {u32,
    FR [
        /// Transmit FIFO full.
        TXFF OFFSET(5) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) []
    ],
    LCR_H [
        WLEN OFFSET(5) NUMBITS(2) [EightBit = 3],
        FEN OFFSET(4) NUMBITS(1) []
    ],
    CR [
        RXE OFFSET(9) NUMBITS(1) [],
        TXE OFFSET(8) NUMBITS(1) [],
        UARTEN OFFSET(0) NUMBITS(1) []
    ]
}

register_structs! {
    Regs {
        (0x00 => dr: WriteOnly<u32>),
        (0x04 => _r0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _r1),
        (0x2c => lcr_h: ReadWrite<u32, LCR_H::Register>),
        (0x30 => cr: ReadWrite<u32, CR::Register>),
        (0x34 => @END),
    }
}

pub struct Pl011 {
    regs: &'static Regs,
}

// SAFETY: the registers are MMIO; concurrent writers are serialised by the
// console's line lock, and a racing write could only interleave bytes.
unsafe impl Sync for Pl011 {}
// SAFETY: as above; the device is not tied to a CPU.
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    /// `base` must be the virtual address of a PL011's registers, mapped as
    /// Device memory for as long as the returned value lives, and no other
    /// Pl011 may drive the same device.
    pub unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller guarantees base maps the device registers.
        Pl011 { regs: unsafe { &*(base as *const Regs) } }
    }

    /// 8N1 with FIFOs, transmit and receive on. The baud rate is left as the
    /// firmware set it (QEMU ignores it).
    pub fn init(&self) {
        self.flush();
        self.regs.cr.set(0);
        self.regs.lcr_h.write(LCR_H::WLEN::EightBit + LCR_H::FEN::SET);
        self.regs.cr.write(CR::UARTEN::SET + CR::TXE::SET + CR::RXE::SET);
    }

    pub fn write_byte(&self, b: u8) {
        while self.regs.fr.is_set(FR::TXFF) {
            core::hint::spin_loop();
        }
        self.regs.dr.set(b as u32);
    }

    pub fn flush(&self) {
        while self.regs.fr.is_set(FR::BUSY) {
            core::hint::spin_loop();
        }
    }
}
