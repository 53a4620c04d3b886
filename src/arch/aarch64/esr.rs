//! Decoding of ESR_ELx and FAR_ELx into typed events (Arm ARM D24.2.40).
//! Pure logic: host unit tests include this file (tests/host).

use core::fmt;

/// Exception classes this kernel tells apart (ESR_ELx.EC).
pub mod ec {
    pub const UNKNOWN: u8 = 0x00;
    pub const SVC64: u8 = 0x15;
    pub const IABT_LOWER: u8 = 0x20;
    pub const IABT_SAME: u8 = 0x21;
    pub const PC_ALIGN: u8 = 0x22;
    pub const DABT_LOWER: u8 = 0x24;
    pub const DABT_SAME: u8 = 0x25;
    pub const SP_ALIGN: u8 = 0x26;
    pub const BRK64: u8 = 0x3C;
}

/// The fault status code of an abort (DFSC/IFSC), decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    AddressSize(u8),
    Translation(u8),
    AccessFlag(u8),
    Permission(u8),
    SyncExternal,
    /// Synchronous tag-check fault (DFSC 0x11).
    TagCheck,
    Alignment,
    TlbConflict,
    Other(u8),
}

impl FaultStatus {
    pub fn from_fsc(fsc: u8) -> Self {
        let level = fsc & 3;
        match fsc {
            0x00..=0x03 => FaultStatus::AddressSize(level),
            0x04..=0x07 => FaultStatus::Translation(level),
            0x08..=0x0B => FaultStatus::AccessFlag(level),
            0x0C..=0x0F => FaultStatus::Permission(level),
            0x10 => FaultStatus::SyncExternal,
            0x11 => FaultStatus::TagCheck,
            0x21 => FaultStatus::Alignment,
            0x30 => FaultStatus::TlbConflict,
            other => FaultStatus::Other(other),
        }
    }
}

/// A synchronous exception, decoded from ESR and FAR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// A data or instruction abort.
    Abort {
        status: FaultStatus,
        /// FAR_ELx: the faulting address, with the pointer's tag in bits 59:56
        /// for a tag-check fault (bits 63:60 are UNKNOWN then). None when
        /// ESR.FnV says FAR is not valid.
        addr: Option<u64>,
        write: bool,
        instruction: bool,
        from_el0: bool,
    },
    Svc {
        imm: u16,
    },
    Brk {
        imm: u16,
    },
    Undefined,
    PcAlignment {
        addr: u64,
    },
    SpAlignment,
    /// An asynchronous exception (IRQ, FIQ, SError) nobody asked for.
    Async {
        kind: u8,
    },
    Other {
        ec: u8,
        iss: u32,
    },
}

pub const fn esr_ec(esr: u64) -> u8 {
    ((esr >> 26) & 0x3F) as u8
}

pub const fn esr_iss(esr: u64) -> u32 {
    (esr & 0x1FF_FFFF) as u32
}

/// Decodes a synchronous exception.
pub fn decode(esr: u64, far: u64) -> Event {
    let ec = esr_ec(esr);
    let iss = esr_iss(esr);
    match ec {
        ec::DABT_LOWER | ec::DABT_SAME | ec::IABT_LOWER | ec::IABT_SAME => {
            let instruction = matches!(ec, ec::IABT_LOWER | ec::IABT_SAME);
            let fnv = iss & (1 << 10) != 0;
            Event::Abort {
                status: FaultStatus::from_fsc((iss & 0x3F) as u8),
                addr: if fnv { None } else { Some(far) },
                // WnR is only meaningful for data aborts; CM (cache
                // maintenance) reports as a write, which is what it is for us.
                write: !instruction && iss & (1 << 6) != 0,
                instruction,
                from_el0: matches!(ec, ec::DABT_LOWER | ec::IABT_LOWER),
            }
        }
        ec::SVC64 => Event::Svc { imm: iss as u16 },
        ec::BRK64 => Event::Brk { imm: iss as u16 },
        ec::UNKNOWN => Event::Undefined,
        ec::PC_ALIGN => Event::PcAlignment { addr: far },
        ec::SP_ALIGN => Event::SpAlignment,
        _ => Event::Other { ec, iss },
    }
}

/// Compares a fault address with the pointer that was accessed, ignoring bits
/// 63:60 (UNKNOWN in FAR for tag-check faults) but keeping the tag.
pub fn same_fault_address(far: u64, ptr: u64) -> bool {
    const MASK: u64 = 0x0FFF_FFFF_FFFF_FFFF;
    far & MASK == ptr & MASK
}

impl Event {
    pub fn is_tag_check(&self) -> bool {
        matches!(self, Event::Abort { status: FaultStatus::TagCheck, .. })
    }
}

impl fmt::Display for FaultStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultStatus::AddressSize(l) => write!(f, "address-size fault, level {l}"),
            FaultStatus::Translation(l) => write!(f, "translation fault, level {l}"),
            FaultStatus::AccessFlag(l) => write!(f, "access-flag fault, level {l}"),
            FaultStatus::Permission(l) => write!(f, "permission fault, level {l}"),
            FaultStatus::SyncExternal => f.write_str("synchronous external abort"),
            FaultStatus::TagCheck => f.write_str("tag-check fault"),
            FaultStatus::Alignment => f.write_str("alignment fault"),
            FaultStatus::TlbConflict => f.write_str("TLB conflict abort"),
            FaultStatus::Other(c) => write!(f, "fault status {c:#04x}"),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::Abort { status, addr, write, instruction, from_el0 } => {
                let what = if *instruction {
                    "fetch"
                } else if *write {
                    "write"
                } else {
                    "read"
                };
                let el = if *from_el0 { "EL0" } else { "EL1" };
                write!(f, "{status} on {el} {what}")?;
                match addr {
                    Some(a) => write!(f, " at {a:#018x}"),
                    None => f.write_str(" (FAR not valid)"),
                }
            }
            Event::Svc { imm } => write!(f, "SVC #{imm}"),
            Event::Brk { imm } => write!(f, "BRK #{imm}"),
            Event::Undefined => f.write_str("undefined instruction"),
            Event::PcAlignment { addr } => write!(f, "PC alignment fault at {addr:#x}"),
            Event::SpAlignment => f.write_str("SP alignment fault"),
            Event::Async { kind } => write!(f, "unexpected asynchronous exception (vector {kind})"),
            Event::Other { ec, iss } => write!(f, "exception class {ec:#04x}, ISS {iss:#x}"),
        }
    }
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    fn esr(ec: u8, iss: u32) -> u64 {
        ((ec as u64) << 26) | (1 << 25) | iss as u64
    }

    #[test]
    fn tag_check_load_at_el1() {
        let e = decode(esr(ec::DABT_SAME, 0x11), 0x0500_0000_4000_1010);
        assert!(e.is_tag_check());
        assert_eq!(
            e,
            Event::Abort {
                status: FaultStatus::TagCheck,
                addr: Some(0x0500_0000_4000_1010),
                write: false,
                instruction: false,
                from_el0: false
            }
        );
    }

    #[test]
    fn tag_check_store_at_el0_sets_write() {
        match decode(esr(ec::DABT_LOWER, 0x11 | (1 << 6)), 0x1234) {
            Event::Abort { status: FaultStatus::TagCheck, write: true, from_el0: true, .. } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn fault_status_levels() {
        assert_eq!(FaultStatus::from_fsc(0x07), FaultStatus::Translation(3));
        assert_eq!(FaultStatus::from_fsc(0x0D), FaultStatus::Permission(1));
        assert_eq!(FaultStatus::from_fsc(0x0A), FaultStatus::AccessFlag(2));
        assert_eq!(FaultStatus::from_fsc(0x21), FaultStatus::Alignment);
        assert_eq!(FaultStatus::from_fsc(0x3F), FaultStatus::Other(0x3F));
    }

    #[test]
    fn far_not_valid() {
        assert!(matches!(decode(esr(ec::DABT_SAME, 0x04 | (1 << 10)), 0xdead), Event::Abort { addr: None, .. }));
    }

    #[test]
    fn instruction_abort_is_not_a_write() {
        match decode(esr(ec::IABT_LOWER, 0x0F | (1 << 6)), 0x400000) {
            Event::Abort {
                instruction: true,
                write: false,
                from_el0: true,
                status: FaultStatus::Permission(3),
                ..
            } => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn svc_brk_undefined() {
        assert_eq!(decode(esr(ec::SVC64, 0x42), 0), Event::Svc { imm: 0x42 });
        assert_eq!(decode(esr(ec::BRK64, 7), 0), Event::Brk { imm: 7 });
        assert_eq!(decode(esr(ec::UNKNOWN, 0), 0), Event::Undefined);
        assert_eq!(decode(esr(0x07, 5), 0), Event::Other { ec: 0x07, iss: 5 });
    }

    #[test]
    fn fault_address_ignores_top_nibble_keeps_tag() {
        assert!(same_fault_address(0xF300_0000_4000_0000, 0x0300_0000_4000_0000));
        assert!(!same_fault_address(0x0400_0000_4000_0000, 0x0300_0000_4000_0000));
        assert!(!same_fault_address(0x0300_0000_4000_0010, 0x0300_0000_4000_0000));
    }

    #[test]
    fn display_names_the_syndrome() {
        let e = decode(esr(ec::DABT_SAME, 0x11 | (1 << 6)), 0x0300_0000_4000_0000);
        let s = format!("{e}");
        assert_eq!(s, "tag-check fault on EL1 write at 0x0300000040000000");
    }
}
