//! Semihosting SYS_EXIT, the only way to give QEMU an exit status. On a board
//! without a debugger the HLT is an undefined instruction, so it is only used
//! when the kernel command line asks for it.

const SYS_EXIT: u64 = 0x18;
const ADP_STOPPED_APPLICATION_EXIT: u64 = 0x20026;

pub fn exit(code: u8) -> ! {
    let block = [ADP_STOPPED_APPLICATION_EXIT, code as u64];
    // SAFETY: the semihosting call reads the two-word block and ends the run.
    unsafe { core::arch::asm!("hlt #0xf000", in("x0") SYS_EXIT, in("x1") block.as_ptr(), options(nostack)) };
    loop {
        super::cpu::wfe();
    }
}
