//! System registers that aarch64-cpu does not define: the MTE registers and
//! the MTE fields of SCTLR_EL1 and TCR_EL1. Encodings from the Arm ARM
//! (cross-checked with Linux arch/arm64/tools/sysreg).

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;

register_bitfields! {u64,
    /// Tag Control Register: which tags IRG may generate.
    pub GCR_EL1 [
        /// Bit n set: IRG never generates tag n.
        Exclude OFFSET(0) NUMBITS(16) [],
        /// 1: IRG uses an implementation-defined generator instead of RGSR_EL1.
        RRND OFFSET(16) NUMBITS(1) []
    ],
    /// Random Allocation Tag Seed Register.
    pub RGSR_EL1 [
        TAG OFFSET(0) NUMBITS(4) [],
        SEED OFFSET(8) NUMBITS(16) []
    ],
    /// Multiple tag transfer ID: LDGM/STGM/STZGM cover 4 << BS bytes.
    pub GMID_EL1 [
        BS OFFSET(0) NUMBITS(4) []
    ],
    /// Tag Fault Status: asynchronous tag-check faults at EL1 (TF0: VA[55] = 0,
    /// TF1: VA[55] = 1). TFSRE0_EL1 has the same layout for EL0.
    pub TFSR [
        TF0 OFFSET(0) NUMBITS(1) [],
        TF1 OFFSET(1) NUMBITS(1) []
    ],
    /// The MTE fields of SCTLR_EL1; the other fields are aarch64-cpu's.
    pub SCTLR_MTE [
        /// Tag-check fault mode for EL0.
        TCF0 OFFSET(38) NUMBITS(2) [None = 0, Sync = 1, Async = 2, Asymm = 3],
        /// Tag-check fault mode for EL1.
        TCF OFFSET(40) NUMBITS(2) [None = 0, Sync = 1, Async = 2, Asymm = 3],
        /// Allocation-tag access at EL0 / EL1 (LDG, STG, ...; tagged memory).
        ATA0 OFFSET(42) NUMBITS(1) [],
        ATA OFFSET(43) NUMBITS(1) [],
        /// Tag-check faults are synchronised on exception entry.
        ITFSB OFFSET(37) NUMBITS(1) []
    ],
    /// The MTE fields of TCR_EL1: match-all tag (0b0000 below VA[55],
    /// 0b1111 above) makes an access unchecked.
    pub TCR_MTE [
        TCMA0 OFFSET(57) NUMBITS(1) [],
        TCMA1 OFFSET(58) NUMBITS(1) []
    ]
}

macro_rules! sysreg {
    ($(#[$m:meta])* $name:ident, $enc:literal, $bits:path, rw) => {
        sysreg!($(#[$m])* $name, $enc, $bits, ro);
        impl Writeable for $name {
            type T = u64;
            type R = $bits;
            #[inline]
            fn set(&self, value: u64) {
                // SAFETY: writing this register only changes MTE behaviour of
                // this CPU, which every caller asked for; it touches no memory.
                unsafe { core::arch::asm!(concat!("msr ", $enc, ", {}"), "isb", in(reg) value, options(nostack)) }
            }
        }
    };
    ($(#[$m:meta])* $name:ident, $enc:literal, $bits:path, ro) => {
        $(#[$m])*
        pub struct $name;
        impl Readable for $name {
            type T = u64;
            type R = $bits;
            #[inline]
            fn get(&self) -> u64 {
                let v;
                // SAFETY: reading a system register has no side effects.
                unsafe { core::arch::asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nomem, nostack)) }
                v
            }
        }
    };
}

sysreg!(
    /// GCR_EL1 (S3_0_C1_C0_6).
    Gcr, "S3_0_C1_C0_6", GCR_EL1::Register, rw);
sysreg!(
    /// RGSR_EL1 (S3_0_C1_C0_5).
    Rgsr, "S3_0_C1_C0_5", RGSR_EL1::Register, rw);
sysreg!(
    /// GMID_EL1 (S3_1_C0_C0_4), read-only.
    Gmid, "S3_1_C0_C0_4", GMID_EL1::Register, ro);
sysreg!(
    /// TFSR_EL1 (S3_0_C5_C6_0).
    TfsrEl1, "S3_0_C5_C6_0", TFSR::Register, rw);
sysreg!(
    /// TFSRE0_EL1 (S3_0_C5_C6_1).
    TfsrE0El1, "S3_0_C5_C6_1", TFSR::Register, rw);
sysreg!(
    /// SCTLR_EL1 seen through its MTE fields.
    SctlrMte, "sctlr_el1", SCTLR_MTE::Register, rw);
sysreg!(
    /// TCR_EL1 seen through its MTE fields.
    TcrMte, "tcr_el1", TCR_MTE::Register, rw);

pub const GCR_EL1: Gcr = Gcr;
pub const RGSR_EL1: Rgsr = Rgsr;
pub const GMID_EL1: Gmid = Gmid;
pub const TFSR_EL1: TfsrEl1 = TfsrEl1;
pub const TFSRE0_EL1: TfsrE0El1 = TfsrE0El1;
pub const SCTLR_EL1_MTE: SctlrMte = SctlrMte;
pub const TCR_EL1_MTE: TcrMte = TcrMte;
