//! mtekernel: a bare-metal arm64 kernel-lite for checking, on a hardware model
//! with real MTE tags, whether memory-management paths keep tags intact.
//!
//! Layout (dependencies point down the list):
//! - `suites/`: the on-target test suites (`mte_hw`, `mm`, `swap`, `uffd`,
//!   `mmu`, `smp`, `harness`, `selftest`), scenarios only; `bench/`;
//!   `script/`: scenario scripts loaded at run time and the fuzzer (beside
//!   the suites, using their scenario helpers).
//! - `harness/`: test registration, selection, running, cleanup, reporting.
//! - `task/`: EL0 tasks, the EL0 agent, the system calls, prctl.
//! - `mm/`: frames, heap, the kernel address space; the mm core and paths
//!   (faults, fork, swap, mteswap, userfaultfd and UFFDIO_MOVE, split).
//! - `testhooks/`: what tests switch inside the paths (known-wrong
//!   variants, fault attributes, schedule points); depends on nothing.
//! - `drivers/`, `console`: the PL011, the RAM-disk, the serial channel.
//! - `platform`, `smp`: board facts from the DTB; secondary CPUs.
//! - `arch/`: AArch64 only: boot glue, registers, MMU, MTE, exceptions.
//! - `boot/` (top level): the assembly those modules assemble.
//!
//! Boot: boot/entry.S drops to EL1, maps the image at its link address and
//! the first 4 GiB linearly with blocks, and calls `kernel_main` with the DTB
//! and load addresses. `kernel_main` reads the DTB, starts the console, the
//! frame allocator and the heap, switches to the final page tables, brings up
//! the other CPUs with PSCI and runs the tests the command line selects.

#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod bench;
mod build_id;
mod cmdline;
mod console;
mod drivers;
mod errno;
mod harness;
mod mm;
mod platform;
mod script;
mod smp;
mod suites;
mod task;
mod testhooks;

use arch::mmu::{self, phys_to_virt};
use cmdline::ExitMethod;
use core::sync::atomic::{AtomicU8, Ordering};

/// The fall-back console when there is no usable DTB, only to say so: the
/// PL011 of QEMU virt. On another board that message is lost, and the run
/// stops either way.
const FALLBACK_UART_PA: u64 = 0x0900_0000;

const FDT_MAGIC: u32 = 0xd00d_feed;

/// How the run ends (from the command line; PSCI until it is parsed).
static EXIT: AtomicU8 = AtomicU8::new(0);

fn dtb_at(pa: u64) -> bool {
    pa != 0 && pa < mmu::EARLY_LINEAR_LIMIT && pa.is_multiple_of(8) && {
        // SAFETY: the address is inside the early linear map, which maps all
        // of it as either RAM or device memory.
        let magic = unsafe { arch::mmu::linear_ptr::<u32>(pa).read_volatile() };
        u32::from_be(magic) == FDT_MAGIC
    }
}

/// What boot never hands out besides the firmware's reservations.
struct Kept {
    image: (u64, u64),
    dtb: (u64, u64),
}

impl Kept {
    /// Frees the RAM of `early` that lies in [lo, hi), then takes back the
    /// image (with .bss, the early tables and the stacks), the DTB and every
    /// range firmware reserved.
    fn give(&self, fa: &mut mm::frame_alloc::FrameAllocator, early: &platform::EarlyFacts, lo: u64, hi: u64) {
        for (base, size) in early.ram.iter() {
            let (s, e) = (base.max(lo), base.saturating_add(size).min(hi));
            if s < e {
                fa.add_free(s, e);
            }
        }
        fa.reserve(self.image.0, self.image.1);
        fa.reserve(self.dtb.0, self.dtb.1);
        for (base, size) in early.reserved.iter() {
            fa.reserve(base, base.saturating_add(size));
        }
    }
}

/// Ends the run with `status` as the command line asked.
pub fn exit(status: u8) -> ! {
    if EXIT.load(Ordering::Relaxed) == 1 {
        arch::semihosting::exit(status);
    }
    arch::psci::system_off();
}

fn fatal(msg: &str) -> ! {
    println!("FATAL: {msg}");
    println!("0 passed, 1 failed");
    exit(1);
}

#[no_mangle]
extern "C" fn kernel_main(dtb_pa: u64, image_pa: u64, entry_el: u64, x1: u64, x2: u64, x3: u64) -> ! {
    mmu::set_image_pa(image_pa);
    // An Image boot passes the DTB in x0; an ELF boot passes 0 and QEMU puts
    // the DTB at the start of RAM, text_offset below the image.
    let dtb_pa = if dtb_pa != 0 { dtb_pa } else { image_pa - arch::boot::TEXT_OFFSET };
    if !dtb_at(dtb_pa) {
        // SAFETY: only to report the failure, on QEMU virt's UART address.
        console::init(unsafe { drivers::pl011::Pl011::new(phys_to_virt(FALLBACK_UART_PA)) });
        fatal("no DTB found (not in x0, not at RAM base); cannot continue");
    }
    // SAFETY: dtb_at checked the magic; the blob is reserved below and never written.
    let fdt = unsafe { platform::fdt_at(phys_to_virt(dtb_pa)) }.unwrap_or_else(|e| {
        // SAFETY: as above.
        console::init(unsafe { drivers::pl011::Pl011::new(phys_to_virt(FALLBACK_UART_PA)) });
        fatal(e)
    });
    let early = platform::early(&fdt);
    let uart = early.as_ref().ok().and_then(|e| e.uart).unwrap_or(FALLBACK_UART_PA);
    // SAFETY: the UART address comes from the DTB and lies in the early
    // linear map's device GiB; nothing else drives it.
    console::init(unsafe { drivers::pl011::Pl011::new(phys_to_virt(uart)) });
    let early = early.unwrap_or_else(|e| fatal(e));

    platform::remember_memory(&early);
    let l = arch::boot::image_layout();
    let kept = Kept { image: (image_pa, image_pa + (l.end - l.start) as u64), dtb: (dtb_pa, dtb_pa + early.dtb_size) };
    let (ram_start, ram_end) = early.ram.span();
    // Until the final tables exist only the early linear map's first 4 GiB
    // can be written, so RAM above it is added after the switch.
    mm::frames::init(ram_start, ram_end - ram_start, |fa| kept.give(fa, &early, 0, mmu::EARLY_LINEAR_LIMIT))
        .unwrap_or_else(|e| fatal(e));
    let heap_size = mm::heap::heap_size(early.ram.total());
    let heap =
        mm::frames::alloc_zeroed(heap_size / mmu::PAGE_SIZE, 1).unwrap_or_else(|| fatal("no memory for the heap"));
    // SAFETY: the frames were just allocated for the heap and are never freed.
    unsafe { mm::heap::init(phys_to_virt(heap), heap_size) };
    mm::folio::init(ram_start, ram_end - ram_start).unwrap_or_else(|e| fatal(e));
    mm::fault::zero_pfn();
    // At boot, so no test's frame count sees it appear (Linux allocates it
    // on first use and may free it under a shrinker; here it stays).
    mm::huge_memory::huge_zero_pfn();

    let p = platform::read(&fdt).unwrap_or_else(|e| fatal(e));
    arch::psci::set_conduit(p.psci);
    let cmd = cmdline::parse(&p.bootargs);
    if let Ok(c) = &cmd {
        EXIT.store((c.exit == ExitMethod::Semihosting) as u8, Ordering::Relaxed);
    }

    let ttbr1 = mm::kmap::switch_to_final_tables(&p).unwrap_or_else(|e| fatal(e));
    arch::boot::publish_ttbr1(ttbr1);
    mm::frames::extend(|fa| kept.give(fa, &early, mmu::EARLY_LINEAR_LIMIT, u64::MAX));
    smp::init_this_cpu();

    let (psci_major, psci_minor) = arch::psci::version();
    // Plain text, before any log frame: frames decode only with this ELF.
    println!("mtekernel: build id {}", build_id::Hex);
    defmt::info!(
        "mtekernel: entered at EL{=u64}{=str}, running at EL{=u64}, PSCI {=u16}.{=u16}, {=usize} CPUs in DTB, RAM {=u64:#x}..{=u64:#x} in {=usize} banks, {=usize} reserved ranges, image at {=u64:#x}, DTB at {=u64:#x}",
        entry_el,
        if arch::efi::facts().is_some() { " through UEFI" } else { "" },
        arch::cpu::current_el(),
        psci_major,
        psci_minor,
        p.cpus.len(),
        ram_start,
        ram_end,
        early.ram.iter().count(),
        early.reserved.iter().count(),
        image_pa,
        dtb_pa
    );
    defmt::info!(
        "cpu: MTE level {=u64}, TLB range invalidation (FEAT_TLBIRANGE) {=str}",
        arch::mte::version(),
        if arch::mmu::tlb::has_range() { "yes" } else { "no" }
    );

    if (x1, x2, x3) != (0, 0, 0) {
        // booting.rst reserves them for future use; a loader that sets them
        // follows another protocol, so say so and carry on as Linux does.
        defmt::warn!(
            "boot protocol: x1-x3 must be zero at entry (Documentation/arch/arm64/booting.rst), found {=u64:#x} {=u64:#x} {=u64:#x}",
            x1,
            x2,
            x3
        );
    }
    let cmd = match cmd {
        Ok(c) => c,
        Err(e) => fatal(&alloc::format!("bad kernel command line: {e}")),
    };
    for w in &cmd.ignored {
        defmt::info!("command line: '{=str}' is a Linux word; ignored", w.as_str());
    }
    mm::huge_memory::apply_cmdline(&cmd);
    testhooks::knobs::SOAK_PASSES.set_boot_default(u64::from(cmd.soak_passes));
    if let Some((seed, count)) = cmd.fuzz {
        testhooks::knobs::FUZZ_SEED.set_boot_default(seed);
        testhooks::knobs::FUZZ_COUNT.set_boot_default(count);
    }
    for (name, v) in &cmd.knobs {
        match testhooks::knobs::ALL.iter().find(|k| k.name == name.as_str()) {
            Some(k) => k.set_boot_default(*v),
            None => fatal(&alloc::format!("knob={name}=...: no such knob (list-knobs names them)")),
        }
    }
    if cmd.ramdisk > 0 {
        let frames = (cmd.ramdisk / mmu::PAGE_SIZE as u64) as usize;
        match mm::frames::alloc_zeroed(frames, 1) {
            Some(pa) => drivers::ramdisk::init(pa, cmd.ramdisk),
            None => fatal(&alloc::format!("no memory for a {} KiB RAM-disk (ramdisk=)", cmd.ramdisk >> 10)),
        }
    }
    smp::start_secondaries(&p.cpus);
    if let Some(b) = cmd.bench {
        match b {
            cmdline::Bench::Swap => bench::swap::run(),
            cmdline::Bench::Uffd => bench::uffd::run(),
            cmdline::Bench::Thp => bench::thp::run(),
            cmdline::Bench::Collapse => bench::collapse::run(),
            cmdline::Bench::Fault => bench::fault::run(),
        }
        println!("BENCH DONE");
        exit(0);
    }
    script::load();
    let status = harness::run(&cmd);
    exit(status);
}

#[no_mangle]
extern "C" fn secondary_main(cpu: usize) -> ! {
    smp::secondary_loop(cpu)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    if !console::is_ready() {
        // A panic while reading the DTB: say so where a QEMU virt console is.
        // SAFETY: as in kernel_main's fall-back, only to report the failure.
        console::init(unsafe { drivers::pl011::Pl011::new(phys_to_virt(FALLBACK_UART_PA)) });
    }
    console::break_lock_if_mine();
    let (file, line) = info.location().map_or(("?", 0), |l| (l.file(), l.line()));
    println!("PANIC on CPU {} at {}:{}: {}", arch::cpu::id(), file, line, info.message());
    script::fuzz::note_panic();
    harness::report_panic(&format_args!("{} at {}:{}", info.message(), file, line));
    exit(1);
}
