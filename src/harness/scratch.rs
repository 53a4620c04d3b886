//! A scratch TTBR0 address space for the hardware-level suites: map frames
//! at low addresses with any memory type and permission, remap them with
//! break-before-make, and run the EL0 agent's load and store in it, without
//! an mm. Torn down (tables freed, ASID flushed, the empty TTBR0 back) when
//! dropped.

use crate::arch::esr::Event;
use crate::arch::mmu::{self, tlb, Attrs, MapError, MemType, PageTable, Perm, PAGE_SIZE};
use crate::arch::trap::{self, TrapFrame, SPSR_EL0T};
use crate::mm::frames::GlobalFrames;
use crate::task::agent::{Routine, SVC_DONE};

/// Where `map_user_code` puts the EL0 agent's routines (the address every
/// task has them at).
pub const USER_CODE_VA: usize = crate::task::agent::AGENT_VA;

pub struct Scratch {
    table: Option<PageTable>,
    asid: u16,
}

impl Scratch {
    pub fn new() -> Result<Scratch, MapError> {
        let table = PageTable::new(&mut GlobalFrames)?;
        // One ASID per CPU; flushed whenever a scratch space goes away.
        Ok(Scratch { table: Some(table), asid: 1 + crate::arch::cpu::id() as u16 })
    }

    fn table(&mut self) -> &mut PageTable {
        self.table.as_mut().expect("scratch table")
    }

    /// Maps one page and makes the space current on this CPU.
    pub fn map(&mut self, va: usize, pa: u64, mem: MemType, perm: Perm) -> Result<(), MapError> {
        self.table().map_range(va, pa, PAGE_SIZE, Attrs::new(mem, perm), false, &mut GlobalFrames)?;
        self.activate();
        Ok(())
    }

    /// Points `va` at another frame (or unmaps it), break-before-make.
    pub fn remap(&mut self, va: usize, new: Option<(u64, MemType, Perm)>) -> Result<(), MapError> {
        let asid = self.asid;
        self.table().replace(va, new.map(|(pa, m, p)| (pa, Attrs::new(m, p))), asid, &mut GlobalFrames)
    }

    pub fn activate(&mut self) {
        let root = self.table().root_pa();
        mmu::set_ttbr0(root, self.asid);
    }

    /// Maps the EL0 routines at USER_CODE_VA (read-only, EL0-executable).
    pub fn map_user_code(&mut self) -> Result<(), MapError> {
        let (start, end) = crate::arch::boot::image_layout().user_text;
        for off in (0..end - start).step_by(PAGE_SIZE) {
            let pa = mmu::virt_to_phys(start + off);
            self.table().map_range(
                USER_CODE_VA + off,
                pa,
                PAGE_SIZE,
                Attrs::new(MemType::Normal, Perm::UserRx),
                false,
                &mut GlobalFrames,
            )?;
        }
        self.activate();
        Ok(())
    }

    fn run(&mut self, entry: u64, x0: u64, x1: u64) -> (Event, TrapFrame) {
        self.activate();
        let mut frame = TrapFrame { elr: entry, spsr: SPSR_EL0T, ..Default::default() };
        frame.x[0] = x0;
        frame.x[1] = x1;
        let ev = trap::run_user(&mut frame);
        (ev, frame)
    }

    /// Loads a word at EL0 through `addr`: Ok(value) if the EL0 code reached
    /// its SVC, Err(event) for the exception it took instead.
    pub fn el0_load(&mut self, addr: usize) -> Result<u64, Event> {
        match self.run(Routine::Load.entry(), addr as u64, 0) {
            (Event::Svc { imm: SVC_DONE }, f) => Ok(f.x[0]),
            (ev, _) => Err(ev),
        }
    }

    /// Stores a word at EL0 through `addr`.
    pub fn el0_store(&mut self, addr: usize, value: u64) -> Result<(), Event> {
        match self.run(Routine::Store.entry(), addr as u64, value) {
            (Event::Svc { imm: SVC_DONE }, _) => Ok(()),
            (ev, _) => Err(ev),
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        crate::mm::kmap::install_empty_ttbr0();
        tlb::flush_asid(self.asid);
        if let Some(t) = self.table.take() {
            t.free(&mut GlobalFrames);
        }
    }
}
