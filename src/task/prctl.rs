//! prctl(PR_SET_TAGGED_ADDR_CTRL / PR_GET_TAGGED_ADDR_CTRL): arm64's
//! per-thread tagged-address ABI and MTE controls, with Linux's values and
//! checks (arch/arm64/kernel/process.c, Documentation/arch/arm64/
//! memory-tagging-extension.rst): whether tagged pointers may be passed to
//! the kernel, the EL0 tag-check mode (SCTLR_EL1.TCF0) and the tags IRG may
//! generate (GCR_EL1.Exclude). The values are applied each time the thread
//! enters EL0 (agent::run).

use crate::arch::mte::TcfMode;
use crate::errno::{Errno, EINVAL};
use core::sync::atomic::{AtomicU8, Ordering};

pub const SYS_PRCTL: u64 = 167;
pub const PR_SET_TAGGED_ADDR_CTRL: u32 = 55;
pub const PR_GET_TAGGED_ADDR_CTRL: u32 = 56;
pub const PR_TAGGED_ADDR_ENABLE: u64 = 1 << 0;
pub const PR_MTE_TCF_SYNC: u64 = 1 << 1;
pub const PR_MTE_TCF_ASYNC: u64 = 1 << 2;
pub const PR_MTE_TAG_SHIFT: u32 = 3;
pub const PR_MTE_TAG_MASK: u64 = 0xffff << PR_MTE_TAG_SHIFT;

/// What a new task starts with here: the ABI enabled, synchronous tag
/// checks, IRG choosing among tags 0-14. (Linux starts a process with all
/// of it off; this kernel's tasks are test programs that all want it, so
/// each starts as if it had made this prctl call. A deliberate difference.)
pub const DEFAULT_CTRL: u64 = PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | (0x7fff << PR_MTE_TAG_SHIFT);

/// mte_tcf_preferred (Linux's per-CPU sysfs file, one value here): the
/// mode a thread asking for both SYNC and ASYNC gets. Linux's default is
/// async.
static TCF_PREFERRED: AtomicU8 = AtomicU8::new(2);

pub fn set_mte_tcf_preferred(mode: TcfMode) {
    TCF_PREFERRED.store(
        match mode {
            TcfMode::Sync => 1,
            TcfMode::Asymm => 3,
            _ => 2,
        },
        Ordering::Release,
    );
}

pub fn mte_tcf_preferred() -> TcfMode {
    match TCF_PREFERRED.load(Ordering::Acquire) {
        1 => TcfMode::Sync,
        3 => TcfMode::Asymm,
        _ => TcfMode::Async,
    }
}

/// set_tagged_addr_ctrl's checks: only known bits; the new value.
pub fn check_set(arg: u64) -> Result<u64, Errno> {
    let valid = PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | PR_MTE_TCF_ASYNC | PR_MTE_TAG_MASK;
    if arg & !valid != 0 {
        return Err(EINVAL);
    }
    Ok(arg)
}

/// The EL0 tag-check mode of a thread with `ctrl`.
pub fn tcf0(ctrl: u64) -> TcfMode {
    match (ctrl & PR_MTE_TCF_SYNC != 0, ctrl & PR_MTE_TCF_ASYNC != 0) {
        (false, false) => TcfMode::None,
        (true, false) => TcfMode::Sync,
        (false, true) => TcfMode::Async,
        (true, true) => mte_tcf_preferred(),
    }
}

/// GCR_EL1.Exclude for a thread with `ctrl`: every tag not included.
pub fn exclude(ctrl: u64) -> u16 {
    !((ctrl & PR_MTE_TAG_MASK) >> PR_MTE_TAG_SHIFT) as u16
}

/// prctl: `option` is an int in Linux's prototype, so only its low 32 bits
/// count; unknown options are EINVAL.
pub fn prctl(ctrl: &core::sync::atomic::AtomicU64, a: [u64; 6]) -> Result<u64, Errno> {
    match a[0] as u32 {
        PR_SET_TAGGED_ADDR_CTRL => {
            if a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(EINVAL);
            }
            ctrl.store(check_set(a[1])?, Ordering::Release);
            Ok(0)
        }
        PR_GET_TAGGED_ADDR_CTRL => {
            if a[1] != 0 || a[2] != 0 || a[3] != 0 || a[4] != 0 {
                return Err(EINVAL);
            }
            Ok(ctrl.load(Ordering::Acquire))
        }
        _ => Err(EINVAL),
    }
}
