//! RAM and reservations from the UEFI memory map (EFI_MEMORY_TYPE values of
//! the UEFI specification), used instead of the DTB's /memory nodes after a
//! UEFI boot, as Linux's EFI stub does. Pure logic: host unit tests include
//! this file.

use super::ranges::Ranges;

/// What the kernel may do with memory of one EFI type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Free for the kernel once boot services are gone.
    Free,
    /// RAM the firmware keeps (runtime services, ACPI tables): mapped, never handed out.
    Reserved,
    /// RAM nobody may touch (reserved, unusable): neither mapped nor handed out.
    NoMap,
    /// Not RAM (MMIO, port space, PAL code).
    NotRam,
}

pub fn classify(ty: u32) -> Use {
    match ty {
        // LoaderCode, LoaderData, BootServicesCode, BootServicesData, ConventionalMemory
        1..=4 | 7 => Use::Free,
        // RuntimeServicesCode/Data, ACPIReclaimMemory, ACPIMemoryNVS, PersistentMemory
        5 | 6 | 9 | 10 | 14 => Use::Reserved,
        // ReservedMemoryType, UnusableMemory, and types this kernel does not know
        0 | 8 => Use::NoMap,
        11..=13 => Use::NotRam,
        _ => Use::NoMap,
    }
}

/// Adds each descriptor (type, physical start, number of 4 KiB pages) to
/// the lists its type puts it in, joining neighbours.
pub fn apply(
    descs: impl Iterator<Item = (u32, u64, u64)>,
    ram: &mut Ranges,
    reserved: &mut Ranges,
    no_map: &mut Ranges,
) -> Result<(), &'static str> {
    for (ty, start, pages) in descs {
        let size = pages.checked_mul(4096).ok_or("a UEFI memory descriptor is larger than the address space")?;
        match classify(ty) {
            Use::NotRam => continue,
            Use::Free => {}
            Use::Reserved => reserved.push_joined(start, size)?,
            Use::NoMap => {
                reserved.push_joined(start, size)?;
                no_map.push_joined(start, size)?;
            }
        }
        ram.push_joined(start, size)?;
    }
    Ok(())
}

#[cfg(all(test, not(target_os = "none")))]
mod tests {
    use super::*;

    #[test]
    fn a_firmware_map_becomes_banks_and_reservations() {
        // As EDK2 leaves it on QEMU virt: free RAM split by runtime data and
        // a reserved page, MMIO (the flash) outside RAM.
        let map = [
            (11, 0x0400_0000, 0x4000), // MMIO: not RAM
            (7, 0x4000_0000, 0x100),   // conventional
            (2, 0x4010_0000, 0x10),    // loader data
            (4, 0x4011_0000, 0x20),    // boot services data
            (6, 0x4013_0000, 0x4),     // runtime data
            (5, 0x4013_4000, 0x2),     // runtime code
            (7, 0x4013_6000, 0x1000),  // conventional
            (0, 0x4113_6000, 0x1),     // reserved
            (3, 0x4113_7000, 0x10),    // boot services code
            (7, 0x1_0000_0000, 0x100), // RAM above 4 GiB
        ];
        let (mut ram, mut res, mut nomap) = (Ranges::new(), Ranges::new(), Ranges::new());
        apply(map.iter().copied(), &mut ram, &mut res, &mut nomap).unwrap();
        assert_eq!(ram.iter().collect::<Vec<_>>(), [(0x4000_0000, 0x0114_7000), (0x1_0000_0000, 0x10_0000)]);
        assert_eq!(res.iter().collect::<Vec<_>>(), [(0x4013_0000, 0x6000), (0x4113_6000, 0x1000)]);
        assert_eq!(nomap.iter().collect::<Vec<_>>(), [(0x4113_6000, 0x1000)]);
    }

    #[test]
    fn unknown_types_are_kept_away_and_overflow_is_an_error() {
        assert_eq!(classify(0x7000_0000), Use::NoMap, "OEM types are not free RAM");
        assert_eq!(classify(15), Use::NoMap);
        let (mut ram, mut res, mut nomap) = (Ranges::new(), Ranges::new(), Ranges::new());
        assert!(apply([(7, 0, u64::MAX)].into_iter(), &mut ram, &mut res, &mut nomap).is_err());
    }
}
