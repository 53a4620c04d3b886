//! TLB maintenance for EL1&0 translations.
//!
//! Three choices a real kernel makes, made here too:
//! - which CPUs: every ASID records the CPUs that have installed it since it
//!   was allocated; an invalidation for it is skipped when none has, stays
//!   local (`tlbi vae1`, `dsb nsh`) when only this CPU has, and is broadcast
//!   (`tlbi vae1is`, `dsb ish`) otherwise;
//! - how: a range of pages is one or a few range operations (`tlbi rvae1is`)
//!   where ID_AA64ISAR0_EL1.TLB says FEAT_TLBIRANGE is there, otherwise one
//!   operation per page;
//! - when to give up: above `MAX_TLBI_OPS` operations the whole ASID goes.
//!
//! Every operation is counted by kind, so a test or a benchmark can see how
//! many were issued without timing anything.

use super::boot::MAX_CPUS;
use super::tlbi_range;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

const _: () = assert!(MAX_CPUS <= 8, "ASID_CPUS keeps one bit per CPU in a u8");

/// Past this many operations for one range, one ASID-wide invalidation is
/// cheaper (Linux's arm64 MAX_DVM_OPS is the same 512).
pub const MAX_TLBI_OPS: usize = 512;

/// CPUs (bit per CPU) that have had each ASID in TTBR0 since it was
/// allocated. A CPU that switched away may still hold entries, so bits are
/// only cleared when the ASID is recycled (`reset_asid`).
static ASID_CPUS: [AtomicU8; 1 << 16] = [const { AtomicU8::new(0) }; 1 << 16];

/// Who must see an invalidation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// No CPU has used the ASID: nothing can be cached.
    Nobody,
    /// Only this CPU has.
    Local,
    /// Other CPUs may hold entries.
    Broadcast,
}

/// Records that this CPU is about to install `asid` in TTBR0. Called
/// before the TTBR0 write; the full barrier pairs with the one in `scope`
/// (a flusher that misses this bit stored its descriptor before the walks
/// that follow the TTBR0 write can start).
pub fn note_installed(asid: u16) {
    ASID_CPUS[asid as usize].fetch_or(1 << super::cpu::id(), Ordering::SeqCst);
    // SAFETY: a barrier only orders memory accesses.
    unsafe { core::arch::asm!("dsb ish", options(nostack)) };
}

/// A freed ASID starts again with no CPU (its entries were invalidated by
/// whoever freed it).
pub fn reset_asid(asid: u16) {
    ASID_CPUS[asid as usize].store(0, Ordering::SeqCst);
}

/// Who must see an invalidation of `asid`'s entries made now by this CPU
/// (after the descriptors changed: the caller has stored them).
pub fn scope(asid: u16) -> Scope {
    // SAFETY: a barrier only orders memory accesses. It makes the
    // descriptor stores visible before the mask is read (see note_installed).
    unsafe { core::arch::asm!("dsb ish", options(nostack)) };
    let cpus = ASID_CPUS[asid as usize].load(Ordering::SeqCst);
    if asid == 0 || cpus & !(1 << super::cpu::id()) != 0 {
        // ASID 0 is shared by every CPU's empty TTBR0 and the global entries.
        Scope::Broadcast
    } else if cpus == 0 {
        Scope::Nobody
    } else {
        Scope::Local
    }
}

/// How many operations of each kind were issued (since boot).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// One page (`vae1`/`vae1is`).
    pub page: u64,
    /// One range operation (`rvae1`/`rvae1is`).
    pub range: u64,
    /// A whole ASID (`aside1`/`aside1is`).
    pub asid: u64,
    /// Everything (`vmalle1is`).
    pub all: u64,
    /// Of the above, issued to this CPU only.
    pub local: u64,
    /// Invalidations skipped because no CPU had the ASID.
    pub skipped: u64,
}

static PAGE: AtomicU64 = AtomicU64::new(0);
static RANGE: AtomicU64 = AtomicU64::new(0);
static ASID: AtomicU64 = AtomicU64::new(0);
static ALL: AtomicU64 = AtomicU64::new(0);
static LOCAL: AtomicU64 = AtomicU64::new(0);
static SKIPPED: AtomicU64 = AtomicU64::new(0);

pub fn stats() -> Stats {
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Stats { page: r(&PAGE), range: r(&RANGE), asid: r(&ASID), all: r(&ALL), local: r(&LOCAL), skipped: r(&SKIPPED) }
}

fn count(kind: &AtomicU64, scope: Scope) {
    kind.fetch_add(1, Ordering::Relaxed);
    if scope == Scope::Local {
        LOCAL.fetch_add(1, Ordering::Relaxed);
    }
}

/// FEAT_TLBIRANGE (ID_AA64ISAR0_EL1.TLB >= 2), read once: every flush
/// asks, and under a hypervisor an ID-register read may trap.
pub fn has_range() -> bool {
    static RANGE_OPS: AtomicU8 = AtomicU8::new(0); // 0 unread, 1 no, 2 yes
    match RANGE_OPS.load(Ordering::Relaxed) {
        0 => {
            let isar0: u64;
            // SAFETY: reading an ID register has no side effects.
            unsafe { core::arch::asm!("mrs {v}, id_aa64isar0_el1", v = out(reg) isar0, options(nomem, nostack)) };
            let yes = (isar0 >> 56) & 0xF >= 2;
            RANGE_OPS.store(1 + yes as u8, Ordering::Relaxed);
            yes
        }
        v => v == 2,
    }
}

// The operand of a by-VA operation: VA[55:12] in bits 43:0, ASID above.
fn va_arg(va: usize, asid: u16) -> u64 {
    ((va as u64 >> 12) & ((1 << 44) - 1)) | ((asid as u64) << 48)
}

macro_rules! tlbi {
    ($op:literal, $arg:expr) => {
        // SAFETY: TLB invalidation has no memory effects beyond the TLB.
        unsafe { core::arch::asm!(concat!(".arch_extension tlb-rmi\n", "tlbi ", $op, ", {}"), in(reg) $arg, options(nostack)) }
    };
}

fn sync(scope: Scope) {
    // SAFETY: barriers only order memory accesses and maintenance.
    unsafe {
        if scope == Scope::Local {
            core::arch::asm!("dsb nsh", "isb", options(nostack))
        } else {
            core::arch::asm!("dsb ish", "isb", options(nostack))
        }
    }
}

fn pre(scope: Scope) {
    // SAFETY: as in sync: the descriptor writes complete before the TLBI.
    unsafe {
        if scope == Scope::Local {
            core::arch::asm!("dsb nshst", options(nostack))
        } else {
            core::arch::asm!("dsb ishst", options(nostack))
        }
    }
}

fn page_op(va: usize, asid: u16, scope: Scope) {
    let arg = va_arg(va, asid);
    if scope == Scope::Local {
        tlbi!("vae1", arg);
    } else {
        tlbi!("vae1is", arg);
    }
}

/// Invalidates `asid`'s translations of `[start, end)` (page aligned) for
/// the CPUs `scope` names, in as few operations as the CPU allows.
pub fn flush_range(start: usize, end: usize, asid: u16, scope: Scope) {
    let pages = (end.saturating_sub(start)) >> 12;
    if pages == 0 {
        return;
    }
    if scope == Scope::Nobody {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let range = pages > 1 && has_range();
    if !range && pages > MAX_TLBI_OPS {
        return flush_asid_scoped(asid, scope);
    }
    pre(scope);
    let (mut va, mut left) = (start, pages);
    while left > 0 {
        if !range || left == 1 {
            page_op(va, asid, scope);
            count(&PAGE, scope);
            va += 1 << 12;
            left -= 1;
            continue;
        }
        let (scale, blocks) = tlbi_range::next_op(left);
        let arg = tlbi_range::operand(va, asid, scale, blocks);
        if scope == Scope::Local {
            tlbi!("rvae1", arg);
        } else {
            tlbi!("rvae1is", arg);
        }
        count(&RANGE, scope);
        let done = tlbi_range::op_pages(scale, blocks);
        va += done << 12;
        left -= done;
    }
    sync(scope);
}

/// Invalidates the translations of one page for `asid` on every CPU
/// (kernel: 0, and global entries go too).
pub fn flush_va(va: usize, asid: u16) {
    pre(Scope::Broadcast);
    page_op(va, asid, Scope::Broadcast);
    count(&PAGE, Scope::Broadcast);
    sync(Scope::Broadcast);
}

fn flush_asid_scoped(asid: u16, scope: Scope) {
    if scope == Scope::Nobody {
        SKIPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let arg = (asid as u64) << 48;
    pre(scope);
    if scope == Scope::Local {
        tlbi!("aside1", arg);
    } else {
        tlbi!("aside1is", arg);
    }
    count(&ASID, scope);
    sync(scope);
}

/// Invalidates every translation for `asid` on every CPU.
pub fn flush_asid(asid: u16) {
    flush_asid_scoped(asid, Scope::Broadcast)
}

/// Invalidates every EL1&0 translation on every CPU.
pub fn flush_all() {
    pre(Scope::Broadcast);
    // SAFETY: as in tlbi!.
    unsafe { core::arch::asm!("tlbi vmalle1is", options(nostack)) };
    count(&ALL, Scope::Broadcast);
    sync(Scope::Broadcast);
}
