//! The invariant checker, run after every scenario (and wherever a test
//! wants it while tasks are alive). It needs a quiescent system: no fault
//! or syscall in flight on any CPU.
//!
//! - refcount = mapcount + page cache + pins for every live folio;
//! - mapcount = the number of ptes that map the folio;
//! - an anonymous folio's rmap walk finds exactly its mapcount ptes;
//! - every present pte lies inside a VMA and maps a live folio (or is special);
//! - each mm's rss counters equal what its page tables hold;
//! - swap_map counts equal the swap ptes referring to each slot, and
//!   SWAP_HAS_CACHE is set exactly for the slots the swap cache holds;
//! - every MTE tag-storage entry belongs to a slot in use.
//!
//! Frames and page-table pages leaked after every task exited are caught
//! by the harness's free-frame count around each test.

use super::filemap;
use super::folio::{all_pages, Folio, Mapping, PG_ANON, PG_HEAD, PG_SWAPCACHE};
use super::mm_types::{all_mms, MM_ANONPAGES, MM_FILEPAGES, MM_SWAPENTS};
use super::pte::*;
use super::rmap::rmap_walk;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

pub fn check() -> Result<(), String> {
    let mut errors: Vec<String> = Vec::new();
    let mut seen: BTreeMap<u64, i32> = BTreeMap::new();
    let mut swap_refs: BTreeMap<u64, u32> = BTreeMap::new();

    for mm in all_mms() {
        let map = mm.mmap_lock.read();
        let mut rss = [0isize; 3];
        mm.pgtables.for_each_pte(0, super::mm_types::TASK_SIZE, |addr, pte| {
            let Some(vma) = map.find(addr) else {
                errors.push(format!("mm {}: pte {pte:?} at {addr:#x} outside every VMA", mm.id));
                return;
            };
            if pte_present(pte) {
                if pte_special(pte) {
                    return;
                }
                let pfn = super::folio::folio_head(pte_pfn(pte));
                let p = super::folio::pfn_to_page(pfn);
                let flags = p.flags.load(Ordering::Acquire);
                if flags & PG_HEAD == 0 {
                    errors.push(format!("mm {}: pte at {addr:#x} maps pfn {pfn:#x}, which is not a live folio", mm.id));
                    return;
                }
                *seen.entry(pfn).or_default() += 1;
                rss[if flags & PG_ANON != 0 { MM_ANONPAGES } else { MM_FILEPAGES }] += 1;
                if vma.file.is_none() && flags & PG_ANON == 0 {
                    errors.push(format!("mm {}: anonymous VMA maps non-anonymous pfn {pfn:#x} at {addr:#x}", mm.id));
                }
            } else if is_swap_pte(pte) && !non_swap_entry(pte_to_swp_entry(pte)) {
                rss[MM_SWAPENTS] += 1;
                *swap_refs.entry(pte_to_swp_entry(pte).0).or_default() += 1;
            }
        });
        for (kind, name) in
            [(MM_FILEPAGES, "MM_FILEPAGES"), (MM_ANONPAGES, "MM_ANONPAGES"), (MM_SWAPENTS, "MM_SWAPENTS")]
        {
            if mm.rss(kind) != rss[kind] {
                errors.push(format!(
                    "mm {}: rss {name} is {} but the page tables hold {}",
                    mm.id,
                    mm.rss(kind),
                    rss[kind]
                ));
            }
        }
    }

    let files = filemap::open_files();
    let zero = super::fault::zero_pfn();
    for (pfn, p) in all_pages() {
        let flags = p.flags.load(Ordering::Acquire);
        if flags & PG_HEAD == 0 || pfn == zero || super::huge_memory::is_huge_zero_pfn(pfn) {
            continue;
        }
        let refs = p.refcount.load(Ordering::Acquire);
        let maps = p.mapcount.load(Ordering::Acquire);
        let pins = p.pincount.load(Ordering::Acquire);
        let nr = 1i32 << p.inner.lock().order;
        let swapcache = if flags & PG_SWAPCACHE != 0 { nr } else { 0 };
        let (cache, what) = {
            let inner = p.inner.lock();
            match &inner.mapping {
                Mapping::File(f) => match f.upgrade() {
                    Some(f) => {
                        ((f.cached(inner.index) == Some(pfn)) as i32, format!("file {} index {}", f.id, inner.index))
                    }
                    None => (0, format!("file (gone) index {}", inner.index)),
                },
                Mapping::Anon(av) => {
                    let swap = inner.swap.map(|e| format!(", swap entry {:#x}", e.0)).unwrap_or_default();
                    (0, format!("anon, anon_vma {} index {:#x}{swap}", av.id, inner.index))
                }
                Mapping::None => (0, String::from("no mapping")),
            }
        };
        let folio = format!("folio pfn {pfn:#x} ({what})");
        if refs != maps + cache + swapcache + pins {
            errors.push(format!(
                "{folio}: refcount {refs} != mapcount {maps} + page cache {cache} + swap cache {swapcache} + pins {pins}"
            ));
        }
        let ptes = seen.get(&pfn).copied().unwrap_or(0);
        if maps != ptes {
            errors.push(format!("{folio}: mapcount {maps} but {ptes} ptes map it"));
        }
        if flags & PG_ANON != 0 && maps > 0 {
            // Borrow a reference for the walk without changing the count.
            let f = Folio::from_counted(pfn);
            let found = rmap_walk(&f).len() as i32;
            core::mem::forget(f);
            if found != maps {
                errors.push(format!("{folio}: rmap walk finds {found} ptes, mapcount is {maps}"));
            }
        }
    }
    for f in files {
        for idx in 0..f.pages {
            if let Some(pfn) = f.cached(idx) {
                if super::folio::pfn_to_page(pfn).flags.load(Ordering::Acquire) & PG_HEAD == 0 {
                    errors.push(format!("file {} index {idx}: page cache holds pfn {pfn:#x}, not a live folio", f.id));
                }
            }
        }
    }
    check_swap(&swap_refs, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        let n = errors.len();
        errors.truncate(6);
        Err(format!("{n} invariant violation(s): {}", errors.join("; ")))
    }
}

fn check_swap(swap_refs: &BTreeMap<u64, u32>, errors: &mut Vec<String>) {
    let cached: BTreeMap<u64, u64> = super::swap_state::cached().into_iter().map(|(e, p)| (e.0, p)).collect();
    let in_use = super::swapfile::slots_in_use();
    for &(entry, byte) in &in_use {
        let count = (byte & !super::swapfile::SWAP_HAS_CACHE) as u32;
        let has_cache = byte & super::swapfile::SWAP_HAS_CACHE != 0;
        let ptes = swap_refs.get(&entry.0).copied().unwrap_or(0);
        if count != ptes {
            errors.push(format!("swap entry {:#x}: swap_map count {count} but {ptes} swap ptes refer to it", entry.0));
        }
        if has_cache != cached.contains_key(&entry.0) {
            errors.push(format!(
                "swap entry {:#x}: SWAP_HAS_CACHE is {has_cache} but the swap cache {} it",
                entry.0,
                if cached.contains_key(&entry.0) { "holds" } else { "does not hold" }
            ));
        }
    }
    for (&e, &n) in swap_refs {
        if !in_use.iter().any(|(x, _)| x.0 == e) {
            errors.push(format!("swap entry {e:#x}: {n} swap ptes refer to a free slot"));
        }
    }
    for e in super::mteswap::entries() {
        if !in_use.iter().any(|(x, _)| *x == e) {
            errors.push(format!("MTE tag storage holds entry {:#x}, whose slot is free (leaked tags)", e.0));
        }
    }
    for (&e, &pfn) in &cached {
        let p = super::folio::pfn_to_page(pfn);
        let inner = p.inner.lock();
        let holds = inner.swap.is_some_and(|first| {
            let (lo, off) = (super::pte::swp_offset(first), super::pte::swp_offset(swp_entry_t(e)));
            super::pte::swp_type(first) == super::pte::swp_type(swp_entry_t(e))
                && off >= lo
                && off < lo + (1u64 << inner.order)
        });
        if p.flags.load(Ordering::Acquire) & PG_SWAPCACHE == 0 || !holds {
            errors.push(format!("swap cache maps entry {e:#x} to pfn {pfn:#x}, which does not have that entry"));
        }
    }
}
