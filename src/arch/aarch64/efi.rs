//! UEFI entry: the Image is also a PE/COFF EFI application (its header is in
//! boot/entry.S). Started by firmware, `efi_main` takes what a booti would
//! have passed (the DTB, from the EFI configuration table, and the command
//! line, from the image's LoadOptions), records the UEFI memory map for
//! `platform`, exits boot services, moves the image to a 2 MiB-aligned
//! address below 4 GiB (the early tables map it with 2 MiB blocks) and
//! enters it as a booti would, MMU off, at `primary_entry`.
//!
//! This code runs before the kernel's own tables exist, at whatever address
//! the firmware loaded the image, under the firmware's identity map. Code
//! and statics are reached PC-relative, so that works; what does not is any
//! pointer stored in data at link time (formatting, panics, trait objects),
//! so none of those appear here: errors are plain strings written to the
//! firmware console, and the firmware gets the status back.

use r_efi::efi;

/// EFI_DTB_TABLE_GUID: the configuration table entry holding the FDT.
const DEVICE_TREE_GUID: efi::Guid =
    efi::Guid::from_fields(0xb1b6_21d5, 0xf19c, 0x41a5, 0x83, 0x0b, &[0xd9, 0x15, 0x2c, 0x69, 0xaa, 0xe0]);

/// Below this the early tables map everything (boot/entry.S).
const LIMIT_4G: u64 = super::mmu::EARLY_LINEAR_LIMIT;
const SZ_2M: u64 = 2 << 20;
const EFI_PAGE: u64 = 4096;

const MAP_BYTES: usize = 24 * 1024;
const CMDLINE_BYTES: usize = 2048;
const MAGIC: u64 = u64::from_le_bytes(*b"mtek-efi");

/// What the stub leaves the kernel, in the image's .data (not .bss, which
/// primary_entry zeroes).
#[repr(C, align(8))]
struct EfiBoot {
    magic: u64,
    map_size: usize,
    desc_size: usize,
    cmdline_len: usize,
    map: [u8; MAP_BYTES],
    cmdline: [u8; CMDLINE_BYTES],
}

#[link_section = ".data.efi_boot"]
static mut EFI_BOOT: EfiBoot =
    EfiBoot { magic: 0, map_size: 0, desc_size: 0, cmdline_len: 0, map: [0; MAP_BYTES], cmdline: [0; CMDLINE_BYTES] };

extern "C" {
    static _start: u8;
    static __data_file_end: u8;
    static __image_end: u8;
    fn efi_enter_kernel(entry: u64, dtb: u64, clean_start: u64, clean_end: u64) -> !;
}

/// One UEFI memory descriptor, as the kernel reads it back.
#[derive(Clone, Copy, Debug)]
pub struct MemoryDesc {
    pub ty: u32,
    pub start: u64,
    pub pages: u64,
}

/// What UEFI handed over, if the kernel was started by UEFI firmware.
pub struct EfiFacts {
    pub cmdline: &'static str,
    map: &'static [u8],
    desc_size: usize,
}

impl EfiFacts {
    pub fn memory_map(&self) -> impl Iterator<Item = MemoryDesc> + '_ {
        self.map.chunks_exact(self.desc_size.max(1)).filter_map(|d| {
            let word = |o: usize| d.get(o..o + 8).and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
            let ty = d.get(0..4).and_then(|b| b.try_into().ok()).map(u32::from_le_bytes)?;
            Some(MemoryDesc { ty, start: word(8)?, pages: word(24)? })
        })
    }
}

/// The facts of a UEFI boot, or None after a booti or an ELF boot.
pub fn facts() -> Option<EfiFacts> {
    // SAFETY: EFI_BOOT is written only by efi_main, before the kernel
    // proper starts; from then on it is read-only.
    let b = unsafe { &*(&raw const EFI_BOOT) };
    if b.magic != MAGIC || b.desc_size < 40 {
        return None;
    }
    let cmdline = core::str::from_utf8(b.cmdline.get(..b.cmdline_len)?).ok()?;
    Some(EfiFacts { cmdline, map: b.map.get(..b.map_size)?, desc_size: b.desc_size })
}

type Failure = (efi::Status, &'static str);

/// Writes an ASCII message and a newline to the firmware console.
///
/// # Safety
/// `st` is the system table the firmware passed, boot services not exited.
unsafe fn say(st: *mut efi::SystemTable, msg: &str) {
    let mut buf = [0u16; 160];
    let mut n = 0;
    for b in "mtekernel: ".bytes().chain(msg.bytes()).chain("\r\n".bytes()) {
        if n + 1 < buf.len() {
            buf[n] = b as u16;
            n += 1;
        }
    }
    // SAFETY: the caller's contract; con_out is the firmware's console.
    unsafe {
        let out = (*st).con_out;
        if !out.is_null() {
            ((*out).output_string)(out, buf.as_mut_ptr());
        }
    }
}

/// The UEFI entry (called from efi_pe_entry in boot/entry.S).
///
/// # Safety
/// Called once, by UEFI firmware through the PE entry point, with the image
/// handle and system table it passed and the address the image was loaded at.
#[no_mangle]
unsafe extern "C" fn efi_main(handle: efi::Handle, st: *mut efi::SystemTable, image: *const u8) -> efi::Status {
    // SAFETY: the caller's contract.
    match unsafe { boot(handle, st, image) } {
        Err((status, msg)) => {
            // SAFETY: boot() fails only before ExitBootServices succeeded.
            unsafe { say(st, msg) };
            status
        }
    }
}

/// # Safety
/// As efi_main.
unsafe fn boot(
    handle: efi::Handle,
    st: *mut efi::SystemTable,
    image: *const u8,
) -> Result<core::convert::Infallible, Failure> {
    // SAFETY: st is the firmware's system table; boot services are live.
    let bs = unsafe { &*(*st).boot_services };
    // SAFETY: as above; the configuration table has the count it says.
    let tables = unsafe { core::slice::from_raw_parts((*st).configuration_table, (*st).number_of_table_entries) };
    let dtb =
        tables.iter().find(|t| t.vendor_guid == DEVICE_TREE_GUID).map(|t| t.vendor_table as *const u8).ok_or((
            efi::Status::UNSUPPORTED,
            "no devicetree in the EFI configuration table (ACPI-only firmware is not supported)",
        ))?;
    // SAFETY: the firmware's devicetree table points at a DTB header.
    let header = unsafe { core::slice::from_raw_parts(dtb, 8) };
    let be32 = |o: usize| u32::from_be_bytes([header[o], header[o + 1], header[o + 2], header[o + 3]]);
    if be32(0) != 0xd00d_feed {
        return Err((efi::Status::LOAD_ERROR, "the EFI devicetree table does not point at a DTB"));
    }
    let dtb_size = be32(4) as u64;

    // Only the addresses of the linker symbols are taken (PC-relative: where
    // the firmware loaded the image).
    let (start, file_end, image_end) =
        (&raw const _start as u64, &raw const __data_file_end as u64, &raw const __image_end as u64);
    let (file_size, image_size) = (file_end - start, image_end - start);
    // SAFETY: EFI_BOOT is ours alone until the kernel proper starts.
    let info = unsafe { &mut *(&raw mut EFI_BOOT) };
    // SAFETY: boot services are live; handle is our image's handle.
    unsafe { save_cmdline(bs, handle, info)? };

    let dtb_off = image_size.next_multiple_of(EFI_PAGE);
    let pages = (dtb_off + dtb_size + SZ_2M).div_ceil(EFI_PAGE) as usize;
    let mut base: efi::PhysicalAddress = LIMIT_4G - 1;
    // SAFETY: a plain boot-services call with valid pointers.
    let s = unsafe { (bs.allocate_pages)(efi::ALLOCATE_MAX_ADDRESS, efi::LOADER_DATA, pages, &mut base) };
    if s.is_error() {
        return Err((s, "no memory below 4 GiB for the kernel image (AllocatePages)"));
    }
    let dest = base.next_multiple_of(SZ_2M);

    // The memory map last: any allocation after it would change its key.
    let mut key = 0usize;
    for attempt in 0..2 {
        let mut size = MAP_BYTES;
        let mut version = 0u32;
        // SAFETY: the buffer is MAP_BYTES long and ours.
        let s = unsafe {
            (bs.get_memory_map)(&mut size, info.map.as_mut_ptr().cast(), &mut key, &mut info.desc_size, &mut version)
        };
        if s.is_error() {
            return Err((s, "GetMemoryMap failed (a map larger than 24 KiB is not supported)"));
        }
        info.map_size = size;
        // SAFETY: the key is the one GetMemoryMap just returned.
        let s = unsafe { (bs.exit_boot_services)(handle, key) };
        if !s.is_error() {
            break;
        }
        // The map changed between the two calls (the spec allows one retry).
        if attempt == 1 {
            return Err((s, "ExitBootServices failed twice"));
        }
    }
    info.magic = MAGIC;

    // Boot services are gone: from here on only memory copies and the jump.
    // SAFETY: dest..dest + pages is ours (allocated above, never freed): the
    // image copy, then the DTB copy. The source image and DTB stay intact
    // until the copies are done; regions do not overlap (fresh allocation).
    unsafe {
        core::ptr::copy_nonoverlapping(image, dest as *mut u8, file_size as usize);
        core::ptr::copy_nonoverlapping(dtb, (dest + dtb_off) as *mut u8, dtb_size as usize);
        efi_enter_kernel(dest, dest + dtb_off, dest, dest + dtb_off + dtb_size)
    }
}

/// Copies the image's LoadOptions (UTF-16) as ASCII into `info.cmdline`,
/// without a leading program name (the EFI shell passes `prog.efi args`).
///
/// # Safety
/// Boot services are live and `handle` is this image's handle.
unsafe fn save_cmdline(bs: &efi::BootServices, handle: efi::Handle, info: &mut EfiBoot) -> Result<(), Failure> {
    let mut guid = r_efi::protocols::loaded_image::PROTOCOL_GUID;
    let mut li: *mut core::ffi::c_void = core::ptr::null_mut();
    // SAFETY: the caller's contract; HandleProtocol writes li.
    let s = unsafe { (bs.handle_protocol)(handle, &mut guid, &mut li) };
    if s.is_error() || li.is_null() {
        return Err((s, "no EFI_LOADED_IMAGE_PROTOCOL on the image handle"));
    }
    // SAFETY: li is the firmware's loaded-image protocol for this image.
    let li = unsafe { &*(li as *const r_efi::protocols::loaded_image::Protocol) };
    let units = li.load_options_size as usize / 2;
    let opts: &[u16] = if li.load_options.is_null() || units == 0 {
        &[]
    } else {
        // SAFETY: LoadOptions holds load_options_size bytes.
        unsafe { core::slice::from_raw_parts(li.load_options as *const u16, units) }
    };
    let mut n = 0;
    for &u in opts.iter().take_while(|&&u| u != 0) {
        if n == info.cmdline.len() {
            return Err((efi::Status::BAD_BUFFER_SIZE, "the EFI load options are longer than 2 KiB"));
        }
        info.cmdline[n] = if u < 0x80 { u as u8 } else { b'?' };
        n += 1;
    }
    // The first word is the program name when it names an .efi file.
    let line = &mut info.cmdline[..n];
    let start = line.iter().position(|&c| c != b' ').unwrap_or(n);
    let end = line[start..].iter().position(|&c| c == b' ').map_or(n, |p| start + p);
    if end - start > 4 && line[end - 4..end].eq_ignore_ascii_case(b".efi") {
        line.copy_within(end.., 0);
        n -= end;
    }
    info.cmdline_len = n;
    Ok(())
}
