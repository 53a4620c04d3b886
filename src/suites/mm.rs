//! Suite `mm`: address spaces, faults, fork and copy-on-write at EL0, with
//! real tags. Every scenario checks data, tags (LDG of every granule, a
//! tagged access that must work and a wrong-tag access that must fault),
//! counters, refcounts and mapcounts, and ends with the invariant checker.

use crate::arch::mte::with_tag;
use crate::errno::{Errno, EBADF, EEXIST, EFAULT, EINVAL, ENOMEM, ENOSYS, ENOTTY, EOPNOTSUPP};
use crate::harness::{TestResult, Verdict};
use crate::mm::fault::is_zero_pfn;
use crate::mm::filemap::initial_byte;
use crate::mm::folio::{pfn_to_page, Folio, PG_ANON_EXCLUSIVE, PG_MTE_TAGGED};
use crate::mm::mm_types::VM_LOCKED;
use crate::mm::mmap::*;
use crate::mm::pte::*;
use crate::mm::rmap::rmap_walk;
use crate::mm::uffd_uapi::{UffdioApi, Words};
use crate::task::agent::{fill_byte, fnv, SegvKind, Signal};
use crate::task::syscall::*;
use crate::task::usys::SysResult;
use crate::task::Task;
use crate::{ensure, ensure_eq, fail, kernel_test, smp};
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::Ordering;

use super::scenario::*;

// --- anonymous memory --------------------------------------------------------

fn anon_read_maps_zero_page() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 2 * PAGE, RW, ANON, -1)?;
    ensure_eq!(ok(t.load(a + 8), "read")?, 0, "first read of anonymous memory");
    let pte = pte_of(&t, a);
    ensure!(
        pte_special(pte) && is_zero_pfn(pte_pfn(pte)) && !pte_write(pte),
        "a read fault must map the zero page read-only: {pte:?}"
    );
    expect_rss(&t, 0, 0, "after a read fault")?;
    ensure!(pte_none(pte_of(&t, a + PAGE)), "the untouched page was mapped");
    s.finish()
}
kernel_test!(mm, anon_read_maps_zero_page);

fn anon_write_allocates_zeroed_exclusive_page() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    ok(t.store(a + 16, 0xfeed), "write")?;
    ensure_eq!(ok(t.load(a + 16), "read back")?, 0xfeed, "data");
    ensure_eq!(ok(t.load(a + 24), "read")?, 0, "rest of a new page");
    let (pfn, refs, maps) = counts(&t, a)?;
    ensure_eq!((refs, maps), (1, 1), "refcount and mapcount of a new anonymous page");
    let f = Folio::get(pfn);
    ensure!(f.is_anon() && f.test(PG_ANON_EXCLUSIVE), "new anonymous page not AnonExclusive");
    drop(f);
    ensure!(pte_write(pte_of(&t, a)) && pte_dirty(pte_of(&t, a)), "pte after a write fault is not writable and dirty");
    expect_rss(&t, 1, 0, "after a write fault")?;
    s.finish()
}
kernel_test!(mm, anon_write_allocates_zeroed_exclusive_page);

fn write_after_read_replaces_zero_page() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    ok(t.load(a), "read")?;
    ok(t.store(a, 5), "write")?;
    let pte = pte_of(&t, a);
    ensure!(
        !pte_special(pte) && !is_zero_pfn(pte_pfn(pte)) && pte_write(pte),
        "write did not replace the zero page: {pte:?}"
    );
    ensure_eq!(ok(t.load(a), "read")?, 5, "data after the copy from the zero page");
    expect_tags(&t, a, |_| 0, "page copied from the zero page")?;
    expect_rss(&t, 1, 0, "after the copy")?;
    s.finish()
}
kernel_test!(mm, write_after_read_replaces_zero_page);

fn prot_mte_first_touch_clears_tags() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    ok(t.store(a, 1), "write")?;
    ensure!(pte_tagged(pte_of(&t, a)), "PROT_MTE page not mapped Tagged Normal");
    let (pfn, _, _) = counts(&t, a)?;
    ensure!(pfn_to_page(pfn).flags.load(Ordering::Acquire) & PG_MTE_TAGGED != 0, "PG_mte_tagged not set on first map");
    expect_tags(&t, a, |_| 0, "new PROT_MTE page")?;
    s.finish()
}
kernel_test!(mm, prot_mte_first_touch_clears_tags);

fn prot_mte_user_tags_round_trip() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    let tag = |g: usize| ((g * 3 + 1) % 15) as u8 + 1;
    tag_page(&t, a, tag)?;
    ok(t.fill(with_tag(a, tag(0)), 16, 9), "fill granule 0 through its tag")?;
    expect_tags(&t, a, tag, "after STG at EL0")?;
    let wrong = with_tag(a + 16 * 7, tag(7) ^ 0x3);
    expect_segv(t.store(wrong, 1), SegvKind::MteSErr, wrong, "store to granule 7 with a wrong tag")?;
    ok(t.store(with_tag(a + 16 * 7, tag(7)), 77), "store to granule 7 with its tag")?;
    s.finish()
}
kernel_test!(mm, prot_mte_user_tags_round_trip);

fn non_mte_mapping_is_never_checked() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    ok(t.store(with_tag(a, 0x9), 3), "store through a tagged pointer to untagged memory")?;
    ensure_eq!(ok(t.load(with_tag(a, 0x4)), "load with another tag")?, 3, "data");
    ensure_eq!(ok(t.ldg(a), "LDG")?, 0, "LDG on untagged memory");
    ensure!(!pte_tagged(pte_of(&t, a)), "mapping without PROT_MTE is Tagged Normal");
    s.finish()
}
kernel_test!(mm, non_mte_mapping_is_never_checked);

fn mprotect_none_and_back_keeps_data_and_tags() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    tag_page(&t, a, |_| 6)?;
    ok(t.fill(with_tag(a, 6), PAGE, 41), "fill")?;
    must(t.mprotect(a, PAGE, 0), "mprotect(PROT_NONE)")?;
    let pte = pte_of(&t, a);
    ensure!(pte_protnone(pte) && pte_present(pte) && !pte_valid(pte), "PROT_NONE pte is not present-invalid: {pte:?}");
    expect_segv(t.load(with_tag(a, 6)), SegvKind::AccErr, with_tag(a, 6), "read under PROT_NONE")?;
    must(t.mprotect(a, PAGE, RW | PROT_MTE), "mprotect back")?;
    ensure_eq!(page_hash(&t, a, 6)?, fill_hash(41), "data after PROT_NONE and back");
    expect_tags(&t, a, |_| 6, "tags after PROT_NONE and back")?;
    ok(t.store(with_tag(a, 6), 1), "write after mprotect back (exclusive page reused)")?;
    expect_rss(&t, 1, 0, "no copy was made")?;
    s.finish()
}
kernel_test!(mm, mprotect_none_and_back_keeps_data_and_tags);

fn mprotect_read_only_refuses_writes() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 2 * PAGE, RW, ANON, -1)?;
    ok(t.store(a + PAGE, 2), "write")?;
    must(t.mprotect(a + PAGE, PAGE, PROT_READ), "mprotect")?;
    expect_segv(t.store(a + PAGE, 3), SegvKind::AccErr, a + PAGE, "write to a read-only page")?;
    ensure_eq!(ok(t.load(a + PAGE), "read")?, 2, "data after the refused write");
    ok(t.store(a, 4), "write to the other half, still writable")?;
    ensure_eq!(t.mm().mmap_lock.read().vmas.len(), 3, "VMAs (agent, RW, RO) after mprotect split the mapping");
    s.finish()
}
kernel_test!(mm, mprotect_read_only_refuses_writes);

fn munmap_middle_splits_the_vma() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 3 * PAGE, RW | PROT_MTE, ANON, -1)?;
    for i in 0..3 {
        tag_page(&t, a + i * PAGE, |_| i as u8 + 1)?;
        ok(t.store(with_tag(a + i * PAGE, i as u8 + 1), i as u64 + 10), "write")?;
    }
    expect_rss(&t, 3, 0, "three pages written")?;
    must(t.munmap(a + PAGE, PAGE), "munmap")?;
    expect_segv(t.load(a + PAGE), SegvKind::MapErr, a + PAGE, "read of the unmapped middle")?;
    ensure_eq!(ok(t.load(with_tag(a, 1)), "read")?, 10, "first page");
    ensure_eq!(ok(t.load(with_tag(a + 2 * PAGE, 3)), "read")?, 12, "last page");
    expect_tags(&t, a, |_| 1, "first page")?;
    expect_tags(&t, a + 2 * PAGE, |_| 3, "last page")?;
    expect_rss(&t, 2, 0, "after unmapping one page")?;
    ensure_eq!(t.mm().mmap_lock.read().vmas.len(), 3, "VMAs (agent and the two halves)");
    s.finish()
}
kernel_test!(mm, munmap_middle_splits_the_vma);

fn munmap_frees_the_pages() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 8 * PAGE, RW | PROT_MTE, ANON, -1)?;
    for i in 0..8 {
        ok(t.store(a + i * PAGE, 1), "write")?;
    }
    let before = crate::mm::frames::free_frames();
    must(t.munmap(a, 8 * PAGE), "munmap")?;
    ensure_eq!(crate::mm::frames::free_frames(), before + 8, "frames freed by munmap");
    expect_rss(&t, 0, 0, "after munmap")?;
    s.finish()
}
kernel_test!(mm, munmap_frees_the_pages);

fn madvise_dontneed_drops_anon_pages() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 2 * PAGE, RW | PROT_MTE, ANON, -1)?;
    tag_page(&t, a, |_| 3)?;
    ok(t.store(with_tag(a, 3), 99), "write")?;
    must(t.madvise(a, 2 * PAGE, MADV_DONTNEED), "madvise")?;
    expect_rss(&t, 0, 0, "after MADV_DONTNEED")?;
    ensure_eq!(ok(t.load(a), "read")?, 0, "anonymous memory after MADV_DONTNEED reads zero");
    expect_tags(&t, a, |_| 0, "tags after MADV_DONTNEED (the zero page)")?;
    s.finish()
}
kernel_test!(mm, madvise_dontneed_drops_anon_pages);

fn mlock_populates_and_refuses_dontneed() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 4 * PAGE, RW, ANON, -1)?;
    must(t.mlock(a, 4 * PAGE), "mlock")?;
    expect_rss(&t, 4, 0, "mlock populates every page")?;
    expect_errno(t.madvise(a, PAGE, MADV_DONTNEED), EINVAL, "MADV_DONTNEED on locked memory")?;
    must(t.munlock(a, 4 * PAGE), "munlock")?;
    must(t.madvise(a, PAGE, MADV_DONTNEED), "madvise after munlock")?;
    expect_rss(&t, 3, 0, "after munlock and MADV_DONTNEED of one page")?;
    let b = mmap(&t, 0, 2 * PAGE, RW, ANON | MAP_LOCKED, -1)?;
    ensure!(pte_present(pte_of(&t, b + PAGE)), "MAP_LOCKED did not populate");
    s.finish()
}
kernel_test!(mm, mlock_populates_and_refuses_dontneed);

// --- fork and copy-on-write ----------------------------------------------------

/// A parent with one tagged, filled PROT_MTE page, and its child.
fn forked_pair(s: &mut Scenario) -> Result<(Arc<Task>, Arc<Task>, usize), Verdict> {
    let p = s.spawn()?;
    let a = mmap(&p, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    tag_page(&p, a, |g| (g % 14) as u8 + 1)?;
    for g in 0..256 {
        ok(p.fill(with_tag(a + g * 16, (g % 14) as u8 + 1), 16, 5 + 16 * g as u64), "fill")?;
    }
    let c = s.fork(&p)?;
    Ok((p, c, a))
}

fn fork_shares_anon_pages_read_only() -> TestResult {
    let mut s = Scenario::new();
    let (p, c, a) = forked_pair(&mut s)?;
    let (pp, prefs, pmaps) = counts(&p, a)?;
    let (cp, _, _) = counts(&c, a)?;
    ensure_eq!(pp, cp, "parent and child map the same frame");
    ensure_eq!((prefs, pmaps), (2, 2), "refcount and mapcount of a page shared by fork");
    ensure!(!pte_write(pte_of(&p, a)) && !pte_write(pte_of(&c, a)), "shared page writable after fork");
    ensure!(pfn_to_page(pp).flags.load(Ordering::Acquire) & PG_ANON_EXCLUSIVE == 0, "shared page still AnonExclusive");
    expect_tags(&c, a, |g| (g % 14) as u8 + 1, "child sees the parent's tags")?;
    ensure_eq!(ok(c.fnv(with_tag(a, 1), 16), "hash")?, fnv((0..16).map(|i| fill_byte(5, i))), "child's data");
    expect_rss(&c, 1, 0, "child")?;
    s.finish()
}
kernel_test!(mm, fork_shares_anon_pages_read_only);

fn cow(write_in_child: bool) -> TestResult {
    let mut s = Scenario::new();
    let (p, c, a) = forked_pair(&mut s)?;
    let (writer, other) = if write_in_child { (&c, &p) } else { (&p, &c) };
    let (old_pfn, _, _) = counts(&p, a)?;
    ok(writer.store(with_tag(a + 32, 3), 0xC0FFEE), "COW write")?;
    let (new_pfn, nrefs, nmaps) = counts(writer, a)?;
    ensure!(new_pfn != old_pfn, "the write did not copy the page");
    ensure_eq!((nrefs, nmaps), (1, 1), "the writer's new page");
    let (opfn, orefs, omaps) = counts(other, a)?;
    ensure_eq!((opfn, orefs, omaps), (old_pfn, 1, 1), "the other task's page after the copy");
    expect_tags(writer, a, |g| (g % 14) as u8 + 1, "tags of the copied page")?;
    expect_tags(other, a, |g| (g % 14) as u8 + 1, "tags of the original page")?;
    ensure_eq!(
        ok(other.load(with_tag(a + 32, 3)), "read")?,
        u64::from_le_bytes(core::array::from_fn(|i| fill_byte(5 + 32, i))),
        "the other task's data is unchanged"
    );
    ensure_eq!(ok(writer.load(with_tag(a + 32, 3)), "read")?, 0xC0FFEE, "the writer's data");
    ok(writer.store(with_tag(a + 48, 4), 1), "a second write reuses the new page")?;
    ensure_eq!(counts(writer, a)?.0, new_pfn, "no second copy");
    expect_rss(writer, 1, 0, "writer")?;
    s.finish()
}

fn cow_in_child_copies_data_and_tags() -> TestResult {
    cow(true)
}
kernel_test!(mm, cow_in_child_copies_data_and_tags);

fn cow_in_parent_copies_data_and_tags() -> TestResult {
    cow(false)
}
kernel_test!(mm, cow_in_parent_copies_data_and_tags);

fn cow_reuses_page_after_child_exit() -> TestResult {
    let mut s = Scenario::new();
    let (p, c, a) = forked_pair(&mut s)?;
    let (pfn, _, _) = counts(&p, a)?;
    ensure!(matches!(c.exit(0), Err(Signal::Exited(0))), "child exit");
    let (_, refs, maps) = counts(&p, a)?;
    ensure_eq!((refs, maps), (1, 1), "parent's page once the child is gone");
    ok(p.store(with_tag(a, 1), 7), "write")?;
    ensure_eq!(counts(&p, a)?.0, pfn, "the only user reuses its page instead of copying");
    ensure!(
        pfn_to_page(pfn).flags.load(Ordering::Acquire) & PG_ANON_EXCLUSIVE != 0,
        "reused page not AnonExclusive again"
    );
    ensure_eq!(
        page_hash(&p, a, 1).is_err(),
        true,
        "hashing the whole page through granule 0's tag must fault on granule 1"
    );
    s.finish()
}
kernel_test!(mm, cow_reuses_page_after_child_exit);

/// The known-wrong copy (data without tags) must be caught: the child's
/// copy reads back tag 0 and its own tagged pointers fault.
fn cow_that_drops_tags_is_caught() -> TestResult {
    let mut s = Scenario::new();
    let (_p, c, a) = forked_pair(&mut s)?;
    let wrong = crate::testhooks::variants::COW_DATA_ONLY.enable();
    let w = c.store(with_tag(a + 32, 3), 1);
    drop(wrong);
    // Tags are lost at the copy, so the very store that triggered it faults
    // when retried on the new page.
    expect_segv(
        w,
        SegvKind::MteSErr,
        with_tag(a + 32, 3),
        "the COW store retried on a page whose tags were not copied",
    )?;
    let tags = ok(c.page_tags(a), "LDG")?;
    ensure!(tags.iter().all(|&t| t == 0), "the wrong copy kept tags: {:?}", &tags[..8]);
    let good = expect_tags(&c, a, |g| (g % 14) as u8 + 1, "child after a data-only copy");
    ensure!(good.is_err(), "the tag check passed on a copy without tags: the suite cannot see this bug");
    s.finish()
}
kernel_test!(mm, cow_that_drops_tags_is_caught);

fn rmap_walk_finds_every_pte() -> TestResult {
    let mut s = Scenario::new();
    let (p, c, a) = forked_pair(&mut s)?;
    let g = s.fork(&c)?;
    let (pfn, refs, maps) = counts(&p, a)?;
    ensure_eq!((refs, maps), (3, 3), "one page shared by three tasks");
    let f = Folio::get(pfn);
    let mut hits: Vec<(u64, usize)> = rmap_walk(&f).iter().map(|h| (h.mm.id, h.addr)).collect();
    drop(f);
    hits.sort();
    let mut want: Vec<(u64, usize)> = [&p, &c, &g].iter().map(|t| (t.mm().id, a)).collect();
    want.sort();
    ensure_eq!(hits, want, "(mm, address) pairs the rmap walk found");
    s.finish()
}
kernel_test!(mm, rmap_walk_finds_every_pte);

fn exit_frees_everything() -> TestResult {
    let before = crate::mm::frames::free_frames();
    {
        let mut s = Scenario::new();
        let (p, c, a) = forked_pair(&mut s)?;
        ok(c.store(with_tag(a, 1), 1), "COW")?;
        let b = mmap(&p, 0, 16 * PAGE, RW, ANON, -1)?;
        for i in 0..16 {
            ok(p.store(b + i * PAGE, 1), "write")?;
        }
        s.finish()?;
    }
    ensure_eq!(crate::mm::frames::free_frames(), before, "free frames after every task exited (pages and page tables)");
    Ok(())
}
kernel_test!(mm, exit_frees_everything);

// --- files ----------------------------------------------------------------------

fn file_read_fault_through_page_cache() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let (fd, f) = s.file(4);
    let a = mmap(&t, 0, 4 * PAGE, PROT_READ, MAP_PRIVATE, fd as i64)?;
    ensure_eq!(page_hash(&t, a + 2 * PAGE, 0)?, file_hash(&f, 2), "file page 2 read at EL0");
    let (pfn, refs, maps) = counts(&t, a + 2 * PAGE)?;
    ensure_eq!(f.cached(2), Some(pfn), "the pte maps the page-cache folio");
    ensure_eq!((refs, maps), (2, 1), "refcount (cache + pte) and mapcount");
    ensure_eq!(f.cached_pages(), 1, "pages read into the cache");
    expect_rss(&t, 0, 1, "after a file read fault")?;
    s.finish()
}
kernel_test!(mm, file_read_fault_through_page_cache);

fn file_private_write_copies() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let (fd, f) = s.file(2);
    let a = mmap(&t, 0, 2 * PAGE, RW, MAP_PRIVATE, fd as i64)?;
    ok(t.load(a), "read")?; // maps the cache page read-only
    ok(t.store(a + 8, 0xAB), "private write")?;
    let (pfn, refs, maps) = counts(&t, a)?;
    ensure!(f.cached(0) != Some(pfn), "a private write went to the page cache");
    ensure_eq!((refs, maps), (1, 1), "the private copy");
    let cached = Folio::get(f.cached(0).ok_or_else(|| verdict("page 0", "not cached"))?);
    let mut byte = [0u8];
    cached.read(0, 8, &mut byte);
    ensure_eq!(byte[0], initial_byte(f.id, 0, 8), "page cache data after a private write");
    ensure_eq!((cached.refcount(), cached.mapcount()), (2, 0), "cache folio: our handle + the cache, unmapped");
    drop(cached);
    expect_rss(&t, 1, 0, "the file page was replaced by an anonymous copy")?;
    ok(t.store(a + PAGE, 1), "write to an unmapped private file page (do_cow_fault)")?;
    expect_rss(&t, 2, 0, "after do_cow_fault")?;
    ensure_eq!(
        ok(t.load(a + PAGE + 8), "read")?,
        u64::from_le_bytes(core::array::from_fn(|i| initial_byte(f.id, 1, 8 + i))),
        "do_cow_fault copied the file data"
    );
    s.finish()
}
kernel_test!(mm, file_private_write_copies);

fn file_shared_write_reaches_page_cache_and_other_mappings() -> TestResult {
    let mut s = Scenario::new();
    let t1 = s.spawn()?;
    let t2 = s.spawn()?;
    let (fd, f) = s.file(1);
    let a1 = mmap(&t1, 0, PAGE, RW, MAP_SHARED, fd as i64)?;
    let a2 = mmap(&t2, 0, PAGE, PROT_READ, MAP_SHARED, fd as i64)?;
    ensure_eq!(page_hash(&t2, a2, 0)?, file_hash(&f, 0), "initial contents");
    ok(t1.store(a1 + 64, 0x5555), "shared write")?;
    ensure_eq!(ok(t2.load(a2 + 64), "read in the other task")?, 0x5555, "the other mapping sees the write");
    let (pfn, refs, maps) = counts(&t1, a1)?;
    ensure_eq!(f.cached(0), Some(pfn), "the shared mapping maps the cache page");
    ensure_eq!((refs, maps), (3, 2), "cache + two ptes");
    expect_rss(&t1, 0, 1, "writer")?;
    s.finish()
}
kernel_test!(mm, file_shared_write_reaches_page_cache_and_other_mappings);

fn fork_shares_file_pages() -> TestResult {
    let mut s = Scenario::new();
    let p = s.spawn()?;
    let (fd, f) = s.file(1);
    let a = mmap(&p, 0, PAGE, RW, MAP_PRIVATE, fd as i64)?;
    ok(p.load(a), "read")?;
    let c = s.fork(&p)?;
    let (_, refs, maps) = counts(&c, a)?;
    ensure_eq!((refs, maps), (3, 2), "cache page mapped by parent and child");
    ok(c.store(a, 1), "child's private write")?;
    ensure_eq!(page_hash(&p, a, 0)?, file_hash(&f, 0), "parent still sees the file data");
    expect_rss(&c, 1, 0, "child")?;
    expect_rss(&p, 0, 1, "parent")?;
    s.finish()
}
kernel_test!(mm, fork_shares_file_pages);

// --- bad arguments and signals --------------------------------------------------

fn mmap_bad_arguments_get_errno() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let cases: [(&str, [u64; 6], Errno); 7] = [
        ("length 0", [0, 0, RW, ANON, u64::MAX, 0], EINVAL),
        ("MAP_FIXED at a misaligned address", [0x10_0000_0001, 4096, RW, ANON | MAP_FIXED, u64::MAX, 0], EINVAL),
        ("unknown flags", [0, 4096, RW, ANON | 0x4000_0000, u64::MAX, 0], EINVAL),
        ("neither shared nor private", [0, 4096, RW, MAP_ANONYMOUS, u64::MAX, 0], EINVAL),
        ("a file descriptor that is not open", [0, 4096, PROT_READ, MAP_PRIVATE, 77, 0], EBADF),
        ("a length that overflows", [0, u64::MAX - 100, RW, ANON, u64::MAX, 0], ENOMEM),
        ("MAP_FIXED past the user half", [0xFFFF_FFFF_F000, 0x2000, RW, ANON | MAP_FIXED, u64::MAX, 0], ENOMEM),
    ];
    for (what, args, want) in cases {
        expect_errno(t.sys(SYS_MMAP, &args), want, &format!("mmap with {what}"))?;
    }
    ensure_eq!(t.mm().mmap_lock.read().vmas.len(), 1, "VMAs after refused mmaps (only the agent's)");
    s.finish()
}
kernel_test!(mm, mmap_bad_arguments_get_errno);

fn munmap_mprotect_madvise_bad_arguments() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 2 * PAGE, RW, ANON, -1)?;
    ok(t.store(a, 42), "write")?;
    expect_errno(t.munmap(a + 1, PAGE), EINVAL, "munmap of a misaligned address")?;
    expect_errno(t.munmap(a, 0), EINVAL, "munmap of length 0")?;
    expect_errno(t.sys(SYS_MUNMAP, &[a as u64, u64::MAX]), EINVAL, "munmap with an overflowing length")?;
    expect_errno(t.mprotect(a, 4 * PAGE, PROT_READ), ENOMEM, "mprotect over an unmapped hole")?;
    expect_errno(t.mprotect(a, PAGE, 0x400), EINVAL, "mprotect with unknown bits")?;
    expect_errno(t.madvise(a, PAGE, 12345), EINVAL, "madvise with unknown advice")?;
    expect_errno(t.madvise(0x1000, PAGE, MADV_DONTNEED), ENOMEM, "madvise of unmapped memory")?;
    expect_errno(t.sys(SYS_CLONE, &[0x100, 0]), EINVAL, "clone with thread flags")?;
    expect_errno(t.sys(4000, &[]), ENOSYS, "an unknown system call")?;
    ensure_eq!(ok(t.load(a), "read")?, 42, "data after the refused calls");
    s.finish()
}
kernel_test!(mm, munmap_mprotect_madvise_bad_arguments);

fn segv_is_delivered_and_the_task_goes_on() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let hole = 0x20_0000_0000usize;
    expect_segv(t.load(hole), SegvKind::MapErr, hole, "read of unmapped memory")?;
    expect_segv(
        t.store(crate::task::agent::AGENT_VA, 1),
        SegvKind::AccErr,
        crate::task::agent::AGENT_VA,
        "write to the agent's code",
    )?;
    let a = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    ok(t.store(a, 1), "the task still works after its signals")?;
    s.finish()
}
kernel_test!(mm, segv_is_delivered_and_the_task_goes_on);

// --- concurrency ------------------------------------------------------------------

fn tasks_run_on_every_cpu() -> TestResult {
    let mut s = Scenario::new();
    let (p, _c, a) = forked_pair(&mut s)?;
    for cpu in 1..smp::online() {
        let t = p.clone();
        let job = on_cpu(cpu, &format!("CPU {cpu}"), move || {
            t.store(with_tag(a + 16 * (cpu + 1), ((cpu + 1) % 14) as u8 + 1), cpu as u64)
        })?;
        ok(job.join()?, &format!("store on CPU {cpu}"))?;
        ensure_eq!(
            ok(p.load(with_tag(a + 16 * (cpu + 1), ((cpu + 1) % 14) as u8 + 1)), "read on CPU 0")?,
            cpu as u64,
            "value CPU {cpu} stored"
        );
    }
    expect_tags(&p, a, |g| (g % 14) as u8 + 1, "tags after writes from every CPU")?;
    s.finish()
}
kernel_test!(mm, tasks_run_on_every_cpu, cpus = 2);

/// Parent and child write-fault the same shared page at once: CPU 1 is
/// stopped after copying, before it retakes the pte lock; CPU 0 does its
/// own COW meanwhile. Both must end with private copies holding the tags.
fn concurrent_cow_at_a_schedule_point() -> TestResult {
    let mut s = Scenario::new();
    let (p, c, a) = forked_pair(&mut s)?;
    let bp = crate::testhooks::schedpoint::arm(&crate::testhooks::points::WP_PAGE_COPY_AFTER_COPY);
    let child = c.clone();
    let job = on_cpu(1, "CPU 1", move || child.store(with_tag(a + 16, 2), 0x11))?;
    let stopped = bp.wait_reached(5_000_000).map_err(|e| verdict("schedule point", e))?;
    ensure_eq!(stopped, 1, "CPU stopped at the schedule point");
    ok(p.store(with_tag(a + 16, 2), 0x22), "parent's COW store while the child is stopped")?;
    bp.release();
    ok(job.join()?, "child's COW store on CPU 1")?;
    ensure_eq!(ok(p.load(with_tag(a + 16, 2)), "read")?, 0x22, "parent's data");
    ensure_eq!(ok(c.load(with_tag(a + 16, 2)), "read")?, 0x11, "child's data");
    ensure!(counts(&p, a)?.0 != counts(&c, a)?.0, "parent and child still share the page");
    expect_tags(&p, a, |g| (g % 14) as u8 + 1, "parent's tags")?;
    expect_tags(&c, a, |g| (g % 14) as u8 + 1, "child's tags")?;
    s.finish()
}
kernel_test!(mm, concurrent_cow_at_a_schedule_point, cpus = 2);

// --- folios and the checker itself -------------------------------------------------

fn order9_folio_alloc_and_free() -> TestResult {
    let before = crate::mm::frames::free_frames();
    let f = Folio::alloc(9).ok_or_else(|| verdict("order-9 folio", "out of memory"))?;
    ensure_eq!(f.pfn() % 512, 0, "an order-9 folio is 2 MiB aligned");
    ensure_eq!(f.nr_pages(), 512, "pages in an order-9 folio");
    ensure_eq!((f.refcount(), f.mapcount()), (1, 0), "new folio counts");
    ensure_eq!(crate::mm::frames::free_frames(), before - 512, "frames taken");
    let mut data = alloc::vec![0xAAu8; PAGE];
    f.read(511, 0, &mut data);
    ensure!(data.iter().all(|&b| b == 0), "last frame of the folio not zeroed");
    let locked = f.try_lock_guard();
    ensure!(locked.is_some() && f.try_lock_guard().is_none(), "folio lock: the second trylock must fail");
    drop(locked);
    ensure!(f.try_lock_guard().is_some(), "folio lock: free again once the guard is dropped");
    drop(f);
    ensure_eq!(crate::mm::frames::free_frames(), before, "frames after the last reference went");
    Ok(())
}
kernel_test!(mm, order9_folio_alloc_and_free);

/// The checker must see a reference nobody accounts for and a mapcount
/// that disagrees with the page tables, and name the folio.
fn invariant_checker_catches_bad_counts() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    ok(t.store(a, 1), "write")?;
    let (pfn, _, _) = counts(&t, a)?;
    let extra = Folio::get(pfn);
    let leaked = crate::mm::invariants::check();
    drop(extra);
    let page = pfn_to_page(pfn);
    page.mapcount.fetch_add(1, Ordering::AcqRel);
    let bad_map = crate::mm::invariants::check();
    page.mapcount.fetch_sub(1, Ordering::AcqRel);
    match leaked {
        Err(e) => ensure!(
            e.contains(&format!("pfn {pfn:#x}")) && e.contains("refcount 2 != mapcount 1"),
            "leaked reference reported as: {e}"
        ),
        Ok(()) => fail!("an unaccounted folio reference passed the checker"),
    }
    match bad_map {
        Err(e) => ensure!(e.contains("mapcount 2 but 1 ptes map it"), "bad mapcount reported as: {e}"),
        Ok(()) => fail!("a mapcount that disagrees with the page tables passed the checker"),
    }
    s.finish()
}
kernel_test!(mm, invariant_checker_catches_bad_counts);

// --- large folios (pte-mapped THP) ---------------------------------------------------

/// A 2 MiB-aligned PROT_MTE mapping with MADV_HUGEPAGE.
pub(super) fn thp_mapping(t: &Task) -> Result<usize, Verdict> {
    let a = 0x20_0000_0000usize;
    let got = mmap(t, a, 2 << 20, RW | PROT_MTE, ANON | MAP_FIXED, -1)?;
    ensure_eq!(got, a, "MAP_FIXED address");
    must(t.madvise(a, 2 << 20, MADV_HUGEPAGE), "MADV_HUGEPAGE")?;
    Ok(a)
}

fn thp_fault_maps_512_ptes_of_one_folio() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let t = s.spawn()?;
    let a = thp_mapping(&t)?;
    ok(t.store(a + 3 * PAGE, 33), "write")?;
    let head = pte_pfn(pte_of(&t, a));
    ensure_eq!(head % 512, 0, "the folio is 2 MiB aligned");
    for i in 0..512 {
        let pte = pte_of(&t, a + i * PAGE);
        ensure!(pte_present(pte) && pte_pfn(pte) == head + i as u64, "pte {i} of the huge folio: {pte:?}");
    }
    let f = Folio::get(head + 77);
    ensure_eq!((f.pfn(), f.nr_pages()), (head, 512), "page_folio of a tail page");
    ensure_eq!((f.refcount(), f.mapcount()), (513, 512), "refcount (512 ptes + ours) and mapcount");
    drop(f);
    expect_rss(&t, 512, 0, "after one fault")?;
    expect_tags(&t, a + 511 * PAGE, |_| 0, "last page of a new PROT_MTE huge folio")?;
    ensure_eq!(ok(t.load(a + 3 * PAGE), "read")?, 33, "data");
    must(t.munmap(a, 1 << 20), "munmap of half")?;
    let f = Folio::get(head + 300);
    ensure_eq!((f.refcount(), f.mapcount()), (257, 256), "after unmapping half");
    drop(f);
    expect_rss(&t, 256, 0, "after unmapping half")?;
    s.finish()
}
kernel_test!(mm, thp_fault_maps_512_ptes_of_one_folio);

fn thp_cow_copies_one_page_with_its_tags() -> TestResult {
    let mut s = Scenario::new();
    s.thp();
    let p = s.spawn()?;
    let a = thp_mapping(&p)?;
    ok(p.store(a, 1), "write")?;
    let page5 = a + 5 * PAGE;
    tag_page(&p, page5, |g| (g % 13) as u8 + 2)?;
    ok(p.fill(with_tag(page5, 2), 16, 3), "fill granule 0")?;
    let c = s.fork(&p)?;
    let head = pte_pfn(pte_of(&p, a));
    ok(c.store(with_tag(page5 + 16, 3), 0x5555), "child COW write on page 5")?;
    let cp = pte_pfn(pte_of(&c, page5));
    ensure!(cp < head || cp >= head + 512, "the child's page 5 is still in the huge folio");
    expect_tags(&c, page5, |g| (g % 13) as u8 + 2, "child's copy of page 5")?;
    expect_tags(&p, page5, |g| (g % 13) as u8 + 2, "parent's page 5")?;
    ensure_eq!(ok(c.load(with_tag(page5 + 16, 3)), "read")?, 0x5555, "child's data");
    let f = Folio::get(head);
    ensure_eq!((f.refcount(), f.mapcount()), (1024, 1023), "huge folio after one page was copied out");
    drop(f);
    s.finish()
}
kernel_test!(mm, thp_cow_copies_one_page_with_its_tags);

// --- hardening: PROT_MTE, MAP_POPULATE, pinned fork, huge VMAs ------------------------

/// arm64 Linux never clears VM_MTE through mprotect: after
/// mprotect(PROT_READ|PROT_WRITE) a PROT_MTE mapping is still Tagged Normal,
/// keeps its tags and still faults on a wrong tag.
fn mprotect_cannot_clear_prot_mte() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 2 * PAGE, RW | PROT_MTE, ANON, -1)?;
    tag_page(&t, a, |g| (g % 13) as u8 + 2)?;
    ok(t.store(with_tag(a, 2), 77), "write")?;
    must(t.mprotect(a, 2 * PAGE, RW), "mprotect(RW)")?;
    ensure!(pte_tagged(pte_of(&t, a)), "mprotect without PROT_MTE mapped the page untagged: {:?}", pte_of(&t, a));
    expect_tags(&t, a, |g| (g % 13) as u8 + 2, "tags after mprotect without PROT_MTE")?;
    ensure_eq!(ok(t.load(with_tag(a, 2)), "read")?, 77, "data");
    // The untouched page of the same VMA is mapped Tagged Normal on first use too.
    ok(t.store(a + PAGE, 1), "first write to the other page")?;
    ensure!(pte_tagged(pte_of(&t, a + PAGE)), "a new page of the VMA is untagged after mprotect");
    let wrong = with_tag(a + PAGE, 5);
    expect_segv(t.load(wrong), SegvKind::MteSErr, wrong, "wrong-tag load after mprotect")?;
    s.finish()
}
kernel_test!(mm, mprotect_cannot_clear_prot_mte);

/// mmap ignores MAP_POPULATE's failures, as Linux's mm_populate does: a
/// file mapping longer than the file is returned whole; its pages past the
/// end fault with SIGBUS when touched, the ones before it are populated.
fn map_populate_past_eof_returns_the_mapping() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let (fd, f) = s.file(1);
    let a = mmap(&t, 0, 3 * PAGE, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd as i64)?;
    ensure!(t.mm().mmap_lock.read().find(a + 2 * PAGE).is_some(), "the mapping is gone after mmap returned it");
    ensure!(pte_present(pte_of(&t, a)), "the page inside the file was not populated");
    ensure_eq!(page_hash(&t, a, 0)?, file_hash(&f, 0), "populated page");
    match t.load(a + PAGE) {
        Err(Signal::Bus { .. }) => {}
        other => fail!("read past the end of the file: expected SIGBUS, got {other:?}"),
    }
    s.finish()
}
kernel_test!(mm, map_populate_past_eof_returns_the_mapping);

/// page_needs_cow_for_dma: fork copies a pinned exclusive page for the
/// child at once (data and tags), so the pin keeps seeing the parent's page
/// and neither side shares it read-only.
fn fork_with_pinned_page_gives_the_child_a_copy() -> TestResult {
    let mut s = Scenario::new();
    let p = s.spawn()?;
    let a = mmap(&p, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    tag_page(&p, a, |g| (g % 11) as u8 + 3)?;
    ok(p.fill(with_tag(a, 3), 16, 9), "fill")?;
    let pfn = pte_pfn(pte_of(&p, a));
    let f = Folio::get(pfn);
    f.pin();
    let c = s.fork(&p);
    let check = (|| -> TestResult {
        let c = c?;
        let cpfn = pte_pfn(pte_of(&c, a));
        ensure!(cpfn != pfn, "the child maps the pinned frame {pfn:#x} (it must get its own copy)");
        ensure_eq!(pte_pfn(pte_of(&p, a)), pfn, "the parent keeps the pinned frame");
        ensure!(pte_write(pte_of(&p, a)), "the parent's pinned page was write-protected by fork");
        ensure!(f.test(PG_ANON_EXCLUSIVE), "the pinned page stopped being AnonExclusive");
        expect_tags(&c, a, |g| (g % 11) as u8 + 3, "the child's copy has the tags")?;
        ensure_eq!(ok(c.fnv(with_tag(a, 3), 16), "hash")?, fnv((0..16).map(|i| fill_byte(9, i))), "the child's data");
        ok(p.store(with_tag(a, 3), 0xD3A), "the parent writes through its pinned page")?;
        let mut word = [0u8; 8];
        f.read(0, 0, &mut word);
        ensure_eq!(u64::from_le_bytes(word), 0xD3A, "the pin sees the write");
        ensure!(ok(c.load(with_tag(a, 3)), "child read")? != 0xD3A, "the child sees the parent's write");
        Ok(())
    })();
    f.unpin();
    drop(f);
    check?;
    s.finish()
}
kernel_test!(mm, fork_with_pinned_page_gives_the_child_a_copy);

/// mprotect, fork and munmap of a 1 TiB VMA with one page touched walk the
/// page tables that exist, not every page of the range (a per-page loop
/// here is 2^28 steps and hangs the test).
fn huge_untouched_vma_costs_what_is_mapped() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let len = 1usize << 40;
    let a = mmap(&t, 0, len, RW | PROT_MTE, ANON, -1)?;
    let far = a + len - PAGE;
    tag_page(&t, far, |_| 4)?;
    ok(t.store(with_tag(far, 4), 0x7e57), "write at the far end")?;
    must(t.mprotect(a, len, PROT_READ | PROT_MTE), "mprotect")?;
    ensure!(!pte_write(pte_of(&t, far)), "mprotect(PROT_READ) left the far page writable");
    let c = s.fork(&t)?;
    ensure_eq!(ok(c.load(with_tag(far, 4)), "child read")?, 0x7e57, "the child sees the far page");
    expect_tags(&c, far, |_| 4, "the child's far page")?;
    must(t.munmap(a, len), "munmap")?;
    expect_rss(&t, 0, 0, "after munmap of the whole VMA")?;
    s.finish()
}
kernel_test!(mm, huge_untouched_vma_costs_what_is_mapped);

/// CPU 1 storing 1, 2, 3, ... to the page at `a` of `t` in one EL0 entry
/// (its ASID live, the translation in its TLB) until the control word
/// (a page of its own) is set, running when `start` returns.
struct StoreLoop {
    job: OnCpu<Result<u64, Signal>>,
    /// The target page's first word and the control word, read and written
    /// through the linear map.
    target: &'static core::sync::atomic::AtomicU64,
    stop: &'static core::sync::atomic::AtomicU64,
    target_pfn: u64,
}

impl StoreLoop {
    fn start(t: &Arc<Task>, a: usize) -> Result<StoreLoop, Verdict> {
        let control = mmap(t, 0, PAGE, RW, ANON, -1)?;
        ok(t.store(a, 0), "write the target")?;
        ok(t.store(control, 0), "write the control word")?;
        let target_pfn = pte_pfn(pte_of(t, a));
        let target = crate::mm::folio::frame_word(target_pfn, 0);
        let stop = crate::mm::folio::frame_word(pte_pfn(pte_of(t, control)), 0);
        let tt = t.clone();
        let job = on_cpu(1, "CPU 1's store loop", move || tt.store_until(a, control))?;
        let deadline = crate::arch::cpu::counter() + 5 * crate::arch::cpu::counter_freq().max(1);
        while target.load(Ordering::Acquire) < 100 {
            if crate::arch::cpu::counter() > deadline {
                stop.store(1, Ordering::Release);
                let _ = job.join();
                fail!("CPU 1's EL0 store loop did not start");
            }
            core::hint::spin_loop();
        }
        Ok(StoreLoop { job, target, stop, target_pfn })
    }

    /// The value at the target now.
    fn now(&self) -> u64 {
        self.target.load(Ordering::Acquire)
    }

    /// Stops the loop: how CPU 1's last store ended.
    fn stop(self) -> Result<Result<u64, Signal>, Verdict> {
        self.stop.store(1, Ordering::Release);
        self.job.join()
    }
}

/// How a CPU's stores must end once another CPU's operation took its
/// page away.
struct StaleWrite {
    what: &'static str,
    /// Pages mapped; CPU 1 stores to the page at `target`.
    pages: usize,
    target: usize,
    op: fn(&Task, usize, usize) -> SysResult<()>,
    kind: SegvKind,
}

/// CPU 1 keeps storing to a page in one EL0 entry (its ASID live, the
/// translation in its TLB) while CPU 0's `op` changes the ptes: the TLB
/// invalidation must reach CPU 1, so its first store after `op` returned
/// faults with `kind`. The outer error is the harness failing; the inner
/// one is the verdict on the kernel.
fn stale_write(w: &StaleWrite) -> Result<TestResult, Verdict> {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let len = w.pages * PAGE;
    let base = mmap(&t, 0, len, RW, ANON, -1)?;
    let a = base + w.target * PAGE;
    // Every page present, so the invalidation covers the whole range.
    ok(t.fill(base, len, 1), "write the pages")?;
    let stores = StoreLoop::start(&t, a)?;
    // Our own reference: even a wrong kernel that frees the page early
    // leaves CPU 1 writing into this frame, not into a reused one.
    let hold = crate::mm::folio::Folio::get(stores.target_pfn);
    let target = stores.target;
    let r = (w.op)(&t, base, len);
    let at_op = stores.now();
    let last = stores.stop()?;
    r?.map_err(|e| verdict(w.what, e))?;
    let verdict = match last {
        Err(Signal::Segv { kind, addr }) if kind == w.kind && addr as usize & !0xfff == a => {
            let after = target.load(Ordering::Acquire);
            if after > at_op {
                Err(Verdict::Fail(format!(
                    "the target changed after {} returned: {at_op} then {after} (a stale translation)",
                    w.what
                )))
            } else {
                Ok(())
            }
        }
        Ok(v) => Err(Verdict::Fail(format!(
            "CPU 1 kept writing through a stale translation after {}: its last store ({v}) succeeded, \
             the target read {at_op} when it returned",
            w.what
        ))),
        other => {
            Err(Verdict::Fail(format!("CPU 1's store loop: expected SIGSEGV {:?} at {a:#x}, got {other:?}", w.kind)))
        }
    };
    drop(hold);
    if verdict.is_ok() {
        s.finish()?;
    }
    Ok(verdict)
}

const MPROTECT_READ_ONLY: StaleWrite = StaleWrite {
    what: "mprotect(PROT_READ)",
    pages: 1,
    target: 0,
    op: |t, a, len| t.mprotect(a, len, PROT_READ),
    kind: SegvKind::AccErr,
};

/// The page CPU 1 writes sits in the second range operation of the
/// invalidation (100 pages: 64, then 36).
const MUNMAP_100_PAGES: StaleWrite = StaleWrite {
    what: "munmap of 100 pages",
    pages: 100,
    target: 77,
    op: |t, a, len| t.munmap(a, len),
    kind: SegvKind::MapErr,
};

/// A store on a running CPU after mprotect(PROT_READ) faults (SEGV_ACCERR)
/// instead of going through a stale writable translation.
fn write_after_mprotect_read_only_faults_on_a_running_cpu() -> TestResult {
    stale_write(&MPROTECT_READ_ONLY)?
}
kernel_test!(mm, write_after_mprotect_read_only_faults_on_a_running_cpu, cpus = 2);

/// A store on a running CPU after munmap faults (SEGV_MAPERR): munmap's
/// one batched invalidation of the range reaches the other CPU.
fn write_after_munmap_faults_on_a_running_cpu() -> TestResult {
    stale_write(&MUNMAP_100_PAGES)?
}
kernel_test!(mm, write_after_munmap_faults_on_a_running_cpu, cpus = 2);

/// The known-wrong local invalidation (this CPU only, although the mm runs
/// on CPU 1 too) is caught by both stale-write scenarios.
fn a_tlb_invalidation_kept_on_one_cpu_is_caught() -> TestResult {
    for w in [&MPROTECT_READ_ONLY, &MUNMAP_100_PAGES] {
        let wrong = crate::testhooks::variants::TLB_FLUSH_THIS_CPU_ONLY.enable();
        let r = stale_write(w);
        drop(wrong);
        expect_caught(r, &["stale translation"], w.what)?;
    }
    Ok(())
}
kernel_test!(mm, a_tlb_invalidation_kept_on_one_cpu_is_caught, cpus = 2);

/// munmap clears the ptes, invalidates the range once, and only then
/// frees the page: stopped just before the invalidation (CPU 2), the page
/// CPU 1 is still writing through its TLB must still be allocated.
fn munmap_after_flush(wrong: bool) -> Result<TestResult, Verdict> {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    let writer = StoreLoop::start(&t, a)?;
    let (target, target_pfn) = (writer.target, writer.target_pfn);
    let f = crate::arch::cpu::counter_freq().max(1);
    let deadline = crate::arch::cpu::counter() + 5 * f;
    let bp = crate::testhooks::schedpoint::arm(&crate::testhooks::points::TLB_FLUSH_MMU_BEFORE_FLUSH);
    let variant = wrong.then(|| crate::testhooks::variants::MMU_GATHER_FREE_BEFORE_FLUSH.enable());
    let tu = t.clone();
    let unmapper = on_cpu(2, "CPU 2's munmap", move || tu.munmap(a, PAGE))?;
    let reached = bp.wait_reached(5_000_000);
    // Stopped before the invalidation: CPU 1 may still write the page, so
    // the page must still be someone's.
    let refs = crate::mm::folio::pfn_to_page(target_pfn).refcount.load(Ordering::Acquire);
    let before = target.load(Ordering::Acquire);
    let mut still_writing = false;
    while !still_writing && crate::arch::cpu::counter() < deadline + 5 * f {
        still_writing = target.load(Ordering::Acquire) != before;
    }
    bp.release();
    drop(variant);
    let unmapped = unmapper.join()?;
    let last = writer.stop()?;
    reached.map_err(|e| verdict("munmap reaching the batched flush", e))?;
    unmapped?.map_err(|e| verdict("munmap", e))?;
    let verdict = if refs <= 0 && still_writing {
        Err(Verdict::Fail(format!(
            "the page was freed (refcount {refs}) before the TLB flush while CPU 1 still wrote into it"
        )))
    } else if !matches!(last, Err(Signal::Segv { kind: SegvKind::MapErr, .. })) {
        Err(Verdict::Fail(format!("CPU 1's store loop after munmap: expected SIGSEGV SEGV_MAPERR, got {last:?}")))
    } else {
        Ok(())
    };
    if verdict.is_ok() {
        ensure!(still_writing, "CPU 1 did not write through its TLB while munmap was stopped before the flush");
        s.finish()?;
    }
    Ok(verdict)
}

fn munmap_frees_the_page_only_after_the_tlb_flush() -> TestResult {
    munmap_after_flush(false)??;
    expect_caught(munmap_after_flush(true), &["freed (refcount"], "freeing before the flush")
}
kernel_test!(mm, munmap_frees_the_page_only_after_the_tlb_flush, cpus = 3);

/// munmap of 512 pages is one batched invalidation: a few range operations
/// (FEAT_TLBIRANGE) or one ASID-wide one, not one per page; the range
/// reads as unmapped afterwards.
fn munmap_of_many_pages_is_one_batched_invalidation() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let pages = 512;
    let a = mmap(&t, 0, pages * PAGE, RW, ANON, -1)?;
    ok(t.fill(a, pages * PAGE, 5), "touch every page")?;
    let before = crate::arch::mmu::tlb::stats();
    must(t.munmap(a, pages * PAGE), "munmap")?;
    let after = crate::arch::mmu::tlb::stats();
    let ops = (after.page - before.page) + (after.range - before.range) + (after.asid - before.asid);
    ensure!(ops <= 4, "munmap of {pages} pages issued {ops} TLB invalidations: {before:?} then {after:?}");
    ensure!(ops >= 1 || after.skipped > before.skipped, "munmap of a used range invalidated nothing");
    for p in [0, 255, 511] {
        expect_segv(t.load(a + p * PAGE), SegvKind::MapErr, a + p * PAGE, "a load after munmap")?;
    }
    expect_rss(&t, 0, 0, "after munmap")?;
    s.finish()
}
kernel_test!(mm, munmap_of_many_pages_is_one_batched_invalidation);

/// mprotect of 512 pages writes the permissions in place and invalidates
/// the range once (a few range operations or one ASID-wide one); the
/// pages are read-only afterwards and keep their data.
fn mprotect_of_many_pages_is_one_batched_invalidation() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let pages = 512;
    let a = mmap(&t, 0, pages * PAGE, RW, ANON, -1)?;
    ok(t.touch(a, pages * PAGE, PAGE, Some(9)), "touch every page")?;
    let before = crate::arch::mmu::tlb::stats();
    must(t.mprotect(a, pages * PAGE, PROT_READ), "mprotect(PROT_READ)")?;
    let after = crate::arch::mmu::tlb::stats();
    let ops = (after.page - before.page) + (after.range - before.range) + (after.asid - before.asid);
    ensure!(ops <= 4, "mprotect of {pages} pages issued {ops} TLB invalidations: {before:?} then {after:?}");
    ensure!(ops >= 1 || after.skipped > before.skipped, "mprotect of a used range invalidated nothing");
    for p in [0, 255, 511] {
        ensure!(!pte_write(pte_of(&t, a + p * PAGE)), "page {p} still writable");
        expect_segv(t.store(a + p * PAGE, 1), SegvKind::AccErr, a + p * PAGE, "a store after mprotect(PROT_READ)")?;
    }
    ensure_eq!(ok(t.touch(a, pages * PAGE, PAGE, None), "read back")?, 9 * pages as u64, "the data");
    s.finish()
}
kernel_test!(mm, mprotect_of_many_pages_is_one_batched_invalidation);

/// fork write-protects the parent's pages in place and invalidates once
/// at the end (Linux's flush_tlb_mm in dup_mmap): 512 pages cost at most a
/// few operations, and a CPU storing to one of them all the while writes
/// to its own copy once fork has returned, never to the child's page.
fn fork_write_protects_in_one_invalidation_even_on_a_running_cpu() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let pages = 512;
    let a = mmap(&t, 0, pages * PAGE, RW, ANON, -1)?;
    ok(t.touch(a, pages * PAGE, PAGE, Some(1)), "touch every page")?;
    let stores = StoreLoop::start(&t, a)?;
    let f = crate::arch::cpu::counter_freq().max(1);
    let before = crate::arch::mmu::tlb::stats();
    let forked = s.fork(&t);
    let after = crate::arch::mmu::tlb::stats();
    // The child's page is the one CPU 1 wrote until fork: it must not
    // change any more.
    let seen = forked.as_ref().ok().map(|c| {
        let child = crate::mm::folio::frame_word(pte_pfn(pte_of(c, a)), 0);
        let first = child.load(Ordering::Acquire);
        let until = crate::arch::cpu::counter() + f / 100;
        while crate::arch::cpu::counter() < until {
            core::hint::spin_loop();
        }
        (first, child.load(Ordering::Acquire))
    });
    let last = stores.stop()?;
    let c = forked?;
    let (first, later) = seen.ok_or_else(|| verdict("fork", "no child"))?;
    ensure_eq!(
        later,
        first,
        "the child's page changed after fork returned (CPU 1 wrote through a stale writable translation)"
    );
    let v = ok(last, "CPU 1's store loop")?;
    ensure!(v > first, "CPU 1's stores after fork ({v}) did not go on in its own copy");
    ensure!(pte_pfn(pte_of(&t, a)) != pte_pfn(pte_of(&c, a)), "the parent's page was not copied on its write");
    let ops = (after.page - before.page) + (after.range - before.range) + (after.asid - before.asid);
    ensure!(ops <= 4, "fork of {pages} pages issued {ops} TLB invalidations: {before:?} then {after:?}");
    s.finish()
}
kernel_test!(mm, fork_write_protects_in_one_invalidation_even_on_a_running_cpu, cpus = 2);

// --- the tagged-address ABI and per-thread MTE controls ------------------------------

use crate::task::prctl::{
    set_mte_tcf_preferred, DEFAULT_CTRL, PR_GET_TAGGED_ADDR_CTRL, PR_MTE_TAG_SHIFT, PR_MTE_TCF_ASYNC, PR_MTE_TCF_SYNC,
    PR_SET_TAGGED_ADDR_CTRL, PR_TAGGED_ADDR_ENABLE, SYS_PRCTL,
};

fn set_ctrl(t: &Task, ctrl: u64) -> TestResult {
    must(t.prctl(PR_SET_TAGGED_ADDR_CTRL, ctrl, 0, 0, 0), "PR_SET_TAGGED_ADDR_CTRL")?;
    Ok(())
}

/// PR_SET/GET_TAGGED_ADDR_CTRL with Linux's checks; fork inherits the value.
fn prctl_tagged_addr_ctrl_checks_and_is_inherited() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let get = |t: &Task| t.prctl(PR_GET_TAGGED_ADDR_CTRL, 0, 0, 0, 0);
    ensure_eq!(get(&t)?, Ok(DEFAULT_CTRL), "a new task's controls");
    let set = PR_SET_TAGGED_ADDR_CTRL as u64;
    expect_errno(t.sys(SYS_PRCTL, &[set, 1 << 19, 0, 0, 0]), EINVAL, "an unknown control bit")?;
    expect_errno(t.sys(SYS_PRCTL, &[set, PR_TAGGED_ADDR_ENABLE, 1, 0, 0]), EINVAL, "arg3 not 0")?;
    expect_errno(t.prctl(PR_GET_TAGGED_ADDR_CTRL, 1, 0, 0, 0), EINVAL, "GET with arg2")?;
    expect_errno(t.sys(SYS_PRCTL, &[9999, 0, 0, 0, 0]), EINVAL, "an unknown option")?;
    ensure_eq!(get(&t)?, Ok(DEFAULT_CTRL), "the refused calls changed nothing");
    // The option is an int: only its low 32 bits count.
    let ctrl = PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_ASYNC | (0x0f00 << PR_MTE_TAG_SHIFT);
    must(t.sys(SYS_PRCTL, &[(1 << 32) | set, ctrl, 0, 0, 0]), "SET with high option bits")?;
    ensure_eq!(get(&t)?, Ok(ctrl), "the controls just set");
    let c = s.fork(&t)?;
    ensure_eq!(get(&c)?, Ok(ctrl), "a forked child's controls");
    s.finish()
}
kernel_test!(mm, prctl_tagged_addr_ctrl_checks_and_is_inherited);

/// Each thread's TCF0 and IRG mask apply while it runs: no checks, sync,
/// async, the preferred mode for SYNC|ASYNC, and IRG limited to the
/// included tags.
fn tag_check_mode_and_irg_mask_are_per_task() -> TestResult {
    let mut s = Scenario::new();
    let mut tasks = Vec::new();
    for ctrl in [
        DEFAULT_CTRL,
        PR_TAGGED_ADDR_ENABLE,
        PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_ASYNC,
        PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | PR_MTE_TCF_ASYNC,
        PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_SYNC | (1 << (7 + PR_MTE_TAG_SHIFT)),
    ] {
        let t = s.spawn()?;
        let a = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
        tag_page(&t, a, |_| 3)?;
        ok(t.store(with_tag(a, 3), 0x33), "write")?;
        set_ctrl(&t, ctrl)?;
        tasks.push((t, a));
    }
    let wrong = |i: usize| {
        let (t, a) = &tasks[i];
        t.load(with_tag(*a, 9))
    };
    expect_segv(wrong(0), SegvKind::MteSErr, with_tag(tasks[0].1, 9), "sync (the default)")?;
    ensure_eq!(ok(wrong(1), "no tag checks")?, 0x33, "a wrong-tag load with TCF0 none");
    ensure!(matches!(wrong(2), Err(Signal::Segv { kind: SegvKind::MteAErr, .. })), "async: {:?}", wrong(2));
    ensure!(
        matches!(wrong(3), Err(Signal::Segv { kind: SegvKind::MteAErr, .. })),
        "SYNC|ASYNC with mte_tcf_preferred async: {:?}",
        wrong(3)
    );
    set_mte_tcf_preferred(crate::arch::mte::TcfMode::Asymm);
    let asymm = wrong(3);
    set_mte_tcf_preferred(crate::arch::mte::TcfMode::Async);
    expect_segv(asymm, SegvKind::MteSErr, with_tag(tasks[3].1, 9), "SYNC|ASYNC preferring asymm: loads are sync")?;
    expect_segv(wrong(4), SegvKind::MteSErr, with_tag(tasks[4].1, 9), "sync with a tag mask")?;
    let (t, a) = &tasks[4];
    for _ in 0..16 {
        ensure_eq!(ok(t.irg(*a), "IRG")?, 7, "IRG with only tag 7 included");
    }
    let seen: alloc::collections::BTreeSet<u8> =
        (0..64).map(|_| tasks[0].0.irg(tasks[0].1)).collect::<Result<_, _>>().map_err(|e| verdict("IRG", e))?;
    ensure!(seen.len() > 1 && !seen.contains(&15), "IRG with tags 0-14 included gave {seen:?}");
    s.finish()
}
kernel_test!(mm, tag_check_mode_and_irg_mask_are_per_task);

/// munmap, mprotect, madvise, mlock and munlock take tagged pointers (the
/// tag is dropped); mmap does not: a tagged MAP_FIXED address is ENOMEM and
/// a tagged hint is ignored.
fn address_space_calls_take_tagged_pointers() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 3 * PAGE, RW | PROT_MTE, ANON, -1)?;
    ok(t.store(a, 1), "write")?;
    let ta = with_tag(a, 5);
    must(t.mprotect(ta, PAGE, PROT_READ | PROT_MTE), "mprotect(tagged)")?;
    ensure!(!pte_write(pte_of(&t, a)), "mprotect through a tagged pointer did not apply");
    must(t.mlock(ta + PAGE, PAGE), "mlock(tagged)")?;
    ensure!(pte_present(pte_of(&t, a + PAGE)), "mlock through a tagged pointer did not populate");
    must(t.munlock(ta + PAGE, PAGE), "munlock(tagged)")?;
    must(t.madvise(ta + PAGE, PAGE, MADV_DONTNEED), "madvise(tagged)")?;
    ensure!(pte_none(pte_of(&t, a + PAGE)), "MADV_DONTNEED through a tagged pointer did not zap");
    must(t.munmap(ta + 2 * PAGE, PAGE), "munmap(tagged)")?;
    ensure!(t.mm().mmap_lock.read().find(a + 2 * PAGE).is_none(), "munmap through a tagged pointer did not unmap");
    let fixed = with_tag(0x30_0000_0000, 5);
    expect_errno(t.mmap(fixed, PAGE, RW, ANON | MAP_FIXED, -1, 0), ENOMEM, "mmap(MAP_FIXED, tagged)")?;
    let hinted = mmap(&t, with_tag(0x30_0000_0000, 5), PAGE, RW, ANON, -1)?;
    ensure!(hinted >> 56 == 0, "mmap returned a tagged address {hinted:#x}");
    s.finish()
}
kernel_test!(mm, address_space_calls_take_tagged_pointers);

/// The kernel's own accesses to a task's memory (an ioctl argument) are
/// tag-checked like the task's unprivileged accesses: a pointer whose tag
/// does not match its PROT_MTE page is EFAULT under sync checks; with the
/// tagged-address ABI off a tagged pointer is EFAULT whatever its tag; with
/// TCF0 none the mismatch goes unnoticed; under async the call completes
/// and the task gets SIGSEGV (SEGV_MTEAERR).
fn uaccess_is_tag_checked_in_the_tasks_mode() -> TestResult {
    use crate::mm::userfaultfd::{UFFDIO_API, UFFD_API};
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let arg = mmap(&t, 0, PAGE, RW | PROT_MTE, ANON, -1)?;
    tag_page(&t, arg, |_| 3)?;
    let api = |ptr: usize| -> Result<Result<u64, Signal>, Verdict> {
        let fd = must(t.userfaultfd(0), "userfaultfd")?;
        for (i, w) in (UffdioApi { api: UFFD_API, features: 0, ioctls: 0 }).to_words().iter().enumerate() {
            ok(t.store(with_tag(arg + 8 * i, 3), *w), "uffdio_api")?;
        }
        let r = t.syscall(SYS_IOCTL, &[fd, UFFDIO_API, ptr as u64]);
        must(t.close(fd), "close")?;
        Ok(r)
    };
    let efault = EFAULT.to_ret();
    ensure_eq!(api(with_tag(arg, 3))?, Ok(0), "UFFDIO_API through the page's own tag");
    ensure_eq!(api(with_tag(arg, 6))?, Ok(efault), "UFFDIO_API through a wrong tag, sync checks");
    set_ctrl(&t, PR_MTE_TCF_SYNC)?;
    ensure_eq!(api(with_tag(arg, 3))?, Ok(efault), "a tagged pointer with the tagged-address ABI off");
    set_ctrl(&t, PR_TAGGED_ADDR_ENABLE)?;
    ensure_eq!(api(with_tag(arg, 6))?, Ok(0), "a wrong tag with TCF0 none is not checked");
    set_ctrl(&t, PR_TAGGED_ADDR_ENABLE | PR_MTE_TCF_ASYNC)?;
    match api(with_tag(arg, 6))? {
        Err(Signal::Segv { kind: SegvKind::MteAErr, .. }) => {}
        other => fail!("a wrong tag under async checks: expected SIGSEGV SEGV_MTEAERR, got {other:?}"),
    }
    s.finish()
}
kernel_test!(mm, uaccess_is_tag_checked_in_the_tasks_mode);

// --- system-call arguments checked as Linux checks them -------------------------------

/// One call and what Linux answers (the return value or the errno).
struct Case {
    what: &'static str,
    nr: u64,
    args: [u64; 6],
    want: Result<u64, Errno>,
}

fn case(what: &'static str, nr: u64, args: &[u64], want: Result<u64, Errno>) -> Case {
    let mut a = [0u64; 6];
    a[..args.len()].copy_from_slice(args);
    Case { what, nr, args: a, want }
}

/// A table of calls with arguments Linux checks in a particular order or
/// answers in a particular way (len 0, wrapping ends, holes, tagged or
/// 32-bit arguments, advice and flags it accepts), each against Linux's
/// answer; then the effects Linux leaves behind for the calls that fail
/// part-way (a hole: the mapped part changed, ENOMEM).
fn syscall_arguments_are_checked_as_linux_checks_them() -> TestResult {
    use crate::mm::userfaultfd::{UFFDIO_API, UFFD_API};
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let p = PAGE as u64;
    let free = 0x70_0000_0000u64;
    let (fd, _) = s.file(1);
    let fd = fd as u64;
    let ro = mmap(&t, 0, PAGE, PROT_READ, ANON, -1)? as u64;
    let uffd = |flags: u64| t.userfaultfd(flags);
    let u = uffd(1 << 32)?.map_err(|e| verdict("userfaultfd with high flag bits", e))?;
    let argp = mmap(&t, 0, PAGE, RW, ANON, -1)? as u64;
    // Pages 0, 1 and 3 mapped, page 2 a hole (made last, so nothing else
    // is placed in it).
    let a = mmap(&t, 0, 4 * PAGE, RW, ANON, -1)? as u64;
    must(t.sys(SYS_MUNMAP, &[a + 2 * p, p]), "munmap")?;
    for (i, w) in (UffdioApi { api: UFFD_API, features: 0, ioctls: 0 }).to_words().iter().enumerate() {
        ok(t.store(argp as usize + 8 * i, *w), "uffdio_api")?;
    }
    let pid = t.pid as u64;
    let rw = RW;
    let cases = [
        // mprotect (do_mprotect_pkey)
        case("mprotect len 0", SYS_MPROTECT, &[a, 0, PROT_READ], Ok(0)),
        case("mprotect len 0 misaligned", SYS_MPROTECT, &[a + 1, 0, PROT_READ], Err(EINVAL)),
        case("mprotect wrapping end", SYS_MPROTECT, &[a, u64::MAX, rw], Err(ENOMEM)),
        case("mprotect past TASK_SIZE", SYS_MPROTECT, &[1 << 48, p, rw], Err(ENOMEM)),
        case("mprotect with no VMA", SYS_MPROTECT, &[free, p, rw], Err(ENOMEM)),
        case("mprotect PROT_SEM", SYS_MPROTECT, &[a, p, rw | PROT_SEM], Ok(0)),
        case("mprotect PROT_BTI", SYS_MPROTECT, &[a, p, rw | PROT_BTI], Ok(0)),
        case("mprotect unknown prot", SYS_MPROTECT, &[a, p, rw | 0x400], Err(EINVAL)),
        case("mprotect GROWSDOWN|GROWSUP", SYS_MPROTECT, &[a, p, rw | PROT_GROWSDOWN | PROT_GROWSUP], Err(EINVAL)),
        case("mprotect GROWSDOWN, no stack", SYS_MPROTECT, &[a, p, rw | PROT_GROWSDOWN], Err(EINVAL)),
        // madvise (do_madvise)
        case("madvise unknown advice first", SYS_MADVISE, &[a + 1, p, 12345], Err(EINVAL)),
        case("madvise advice is an int", SYS_MADVISE, &[a + 3 * p, p, (1 << 32) | MADV_DONTNEED], Ok(0)),
        case("madvise len 0", SYS_MADVISE, &[a, 0, MADV_DONTNEED], Ok(0)),
        case("madvise misaligned", SYS_MADVISE, &[a + 1, p, MADV_DONTNEED], Err(EINVAL)),
        case("madvise overflowing len", SYS_MADVISE, &[a, u64::MAX, MADV_DONTNEED], Err(EINVAL)),
        case("madvise wrapping end", SYS_MADVISE, &[a, !0xfff, MADV_DONTNEED], Err(EINVAL)),
        case("madvise with no VMA", SYS_MADVISE, &[free, p, MADV_DONTNEED], Err(ENOMEM)),
        case("MADV_NORMAL", SYS_MADVISE, &[a, p, MADV_NORMAL], Ok(0)),
        case("MADV_RANDOM", SYS_MADVISE, &[a, p, MADV_RANDOM], Ok(0)),
        case("MADV_SEQUENTIAL", SYS_MADVISE, &[a, p, MADV_SEQUENTIAL], Ok(0)),
        case("MADV_WILLNEED", SYS_MADVISE, &[a, p, MADV_WILLNEED], Ok(0)),
        case("MADV_FREE", SYS_MADVISE, &[a + 3 * p, p, MADV_FREE], Ok(0)),
        case("MADV_DONTFORK", SYS_MADVISE, &[a, p, MADV_DONTFORK], Ok(0)),
        case("MADV_DOFORK", SYS_MADVISE, &[a, p, MADV_DOFORK], Ok(0)),
        case("MADV_DONTDUMP", SYS_MADVISE, &[a, p, MADV_DONTDUMP], Ok(0)),
        case("MADV_DODUMP", SYS_MADVISE, &[a, p, MADV_DODUMP], Ok(0)),
        case("MADV_WIPEONFORK", SYS_MADVISE, &[a, p, MADV_WIPEONFORK], Ok(0)),
        case("MADV_KEEPONFORK", SYS_MADVISE, &[a, p, MADV_KEEPONFORK], Ok(0)),
        case("MADV_COLD", SYS_MADVISE, &[a, p, MADV_COLD], Ok(0)),
        case("MADV_POPULATE_READ", SYS_MADVISE, &[a + 3 * p, p, MADV_POPULATE_READ], Ok(0)),
        case("MADV_POPULATE_WRITE on read-only", SYS_MADVISE, &[ro, p, MADV_POPULATE_WRITE], Err(EFAULT)),
        case("MADV_DONTNEED_LOCKED", SYS_MADVISE, &[a + 3 * p, p, MADV_DONTNEED_LOCKED], Ok(0)),
        case("MADV_REMOVE on anonymous memory", SYS_MADVISE, &[a, p, MADV_REMOVE], Err(EINVAL)),
        // mlock / munlock (do_mlock, apply_vma_lock_flags)
        case("mlock len 0", SYS_MLOCK, &[a, 0], Ok(0)),
        case("munlock len 0", SYS_MUNLOCK, &[a, 0], Ok(0)),
        case("mlock with no VMA", SYS_MLOCK, &[free, p], Err(ENOMEM)),
        case("munmap len 0", SYS_MUNMAP, &[a, 0], Err(EINVAL)),
        // mmap (sys_mmap, ksys_mmap_pgoff, do_mmap, __get_unmapped_area)
        case("mmap misaligned offset before a bad fd", SYS_MMAP, &[0, p, rw, MAP_PRIVATE, 77, 1], Err(EINVAL)),
        case("mmap bad fd before len 0", SYS_MMAP, &[0, 0, rw, MAP_PRIVATE, 77, 0], Err(EBADF)),
        case("mmap len past TASK_SIZE", SYS_MMAP, &[0, 1 << 49, rw, ANON, u64::MAX, 0], Err(ENOMEM)),
        case(
            "MAP_FIXED past TASK_SIZE",
            SYS_MMAP,
            &[(1 << 48) - p, 2 * p, rw, ANON | MAP_FIXED, u64::MAX, 0],
            Err(ENOMEM),
        ),
        case(
            "MAP_FIXED_NOREPLACE over a mapping",
            SYS_MMAP,
            &[a, p, rw, ANON | MAP_FIXED_NOREPLACE, u64::MAX, 0],
            Err(EEXIST),
        ),
        case("MAP_FIXED_NOREPLACE free", SYS_MMAP, &[free, p, rw, ANON | MAP_FIXED_NOREPLACE, u64::MAX, 0], Ok(free)),
        case("MAP_SHARED_VALIDATE", SYS_MMAP, &[0, p, PROT_READ, MAP_SHARED_VALIDATE, fd, 0], Err(EOPNOTSUPP)),
        case(
            "mmap fd is an unsigned int",
            SYS_MMAP,
            &[free + p, p, PROT_READ, MAP_PRIVATE | MAP_FIXED, (1 << 32) | fd, 0],
            Ok(free + p),
        ),
        case(
            "mmap ignores unknown prot",
            SYS_MMAP,
            &[free + 2 * p, p, rw | 0x100, ANON | MAP_FIXED, u64::MAX, 0],
            Ok(free + 2 * p),
        ),
        // system-call number, descriptors, ioctl cmd: 32-bit ints
        case("the syscall number is an int", (1 << 32) | SYS_GETPID, &[], Ok(pid)),
        case("ioctl on a file", SYS_IOCTL, &[fd, UFFDIO_API, argp], Err(ENOTTY)),
        case("ioctl on no descriptor", SYS_IOCTL, &[999, UFFDIO_API, argp], Err(EBADF)),
        case("read of a userfaultfd before UFFDIO_API", SYS_READ, &[u, argp + 64, 32], Err(EINVAL)),
        case("UFFDIO_API with its reply faulting", SYS_IOCTL, &[u, UFFDIO_API, ro], Err(EFAULT)),
        case(
            "UFFDIO_API after the faulted one, cmd an int",
            SYS_IOCTL,
            &[(1 << 32) | u, (1 << 32) | UFFDIO_API, argp],
            Ok(0),
        ),
        case("close of a file", SYS_CLOSE, &[fd], Ok(0)),
        case("close of it again", SYS_CLOSE, &[fd], Err(EBADF)),
    ];
    let mut wrong = Vec::new();
    for c in &cases {
        let got = returned(t.sys(c.nr, &c.args), "system call")?;
        if got != c.want {
            wrong.push(format!("{}: expected {:?}, got {:?}", c.what, c.want, got));
        }
    }
    ensure!(wrong.is_empty(), "{} of {} calls answered unlike Linux: {}", wrong.len(), cases.len(), wrong.join("; "));
    s.fds.retain(|&f| f as u64 != fd);
    // Holes: the mapped part changes, then ENOMEM.
    ok(t.store(a as usize, 1), "write page 0")?;
    ok(t.store(a as usize + 3 * PAGE, 3), "write page 3")?;
    expect_errno(t.sys(SYS_MPROTECT, &[a, 4 * p, PROT_READ]), ENOMEM, "mprotect over a hole")?;
    ensure!(!pte_write(pte_of(&t, a as usize)), "mprotect over a hole did not change the part before it");
    must(t.sys(SYS_MPROTECT, &[a, 2 * p, rw]), "mprotect back")?;
    expect_errno(t.sys(SYS_MADVISE, &[a, 4 * p, MADV_DONTNEED]), ENOMEM, "MADV_DONTNEED over a hole")?;
    ensure!(pte_none(pte_of(&t, a as usize)), "MADV_DONTNEED over a hole left the part before it");
    ensure!(pte_none(pte_of(&t, a as usize + 3 * PAGE)), "MADV_DONTNEED over a hole left the part after it");
    expect_errno(t.sys(SYS_MLOCK, &[a, 4 * p]), ENOMEM, "mlock over a hole")?;
    ensure!(
        t.mm().mmap_lock.read().find(a as usize).is_some_and(|v| v.flags & VM_LOCKED != 0),
        "mlock over a hole did not lock the part before it"
    );
    must(t.sys(SYS_MUNLOCK, &[a, 2 * p]), "munlock")?;
    must(t.close(u), "close")?;
    s.finish()
}
kernel_test!(mm, syscall_arguments_are_checked_as_linux_checks_them);

/// MADV_DONTFORK and MADV_WIPEONFORK as fork sees them: the child has no
/// VMA at all, or the VMA empty (fresh zero-filled memory).
fn dontfork_and_wipeonfork() -> TestResult {
    let mut s = Scenario::new();
    let p = s.spawn()?;
    let a = mmap(&p, 0, 2 * PAGE, RW, ANON, -1)?;
    ok(p.store(a, 0xA), "write")?;
    ok(p.store(a + PAGE, 0xB), "write")?;
    must(p.madvise(a, PAGE, MADV_DONTFORK), "MADV_DONTFORK")?;
    must(p.madvise(a + PAGE, PAGE, MADV_WIPEONFORK), "MADV_WIPEONFORK")?;
    let c = s.fork(&p)?;
    expect_segv(c.load(a), SegvKind::MapErr, a, "the child's MADV_DONTFORK page")?;
    ensure_eq!(ok(c.load(a + PAGE), "child read")?, 0, "the child's MADV_WIPEONFORK page reads zero");
    ensure_eq!(ok(p.load(a + PAGE), "parent read")?, 0xB, "the parent keeps its data");
    let (fd, _) = s.file(1);
    let f = mmap(&p, 0, PAGE, RW, MAP_PRIVATE, fd as i64)?;
    expect_errno(p.madvise(f, PAGE, MADV_WIPEONFORK), EINVAL, "MADV_WIPEONFORK on a file")?;
    s.finish()
}
kernel_test!(mm, dontfork_and_wipeonfork);

/// A page allocation that fails in a fault (the folio_alloc fault
/// attribute): the access is killed for lack of memory, nothing is mapped
/// or leaked, and the next access succeeds.
fn failed_page_allocation_in_a_fault_loses_nothing() -> TestResult {
    use crate::testhooks::fault_inject::{Spec, FOLIO_ALLOC};
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 2 * PAGE, RW | PROT_MTE, ANON, -1)?;
    ok(t.store(a + PAGE, 1), "a write that makes the page tables")?;
    let frames = crate::mm::frames::free_frames();
    let fail = FOLIO_ALLOC.arm(Spec::nth(1));
    let r = t.store(a, 5);
    ensure_eq!(FOLIO_ALLOC.failures(), 1, "allocation failures injected");
    drop(fail);
    ensure!(matches!(&r, Err(Signal::Killed(why)) if why.contains("out of memory")), "the write with no memory: {r:?}");
    ensure!(pte_none(pte_of(&t, a)), "a pte was left after the failed fault");
    ensure_eq!(crate::mm::frames::free_frames(), frames, "free frames after the failed fault");
    ok(t.store(a, 6), "the write once memory is back")?;
    ensure_eq!(ok(t.load(a), "read")?, 6, "data");
    s.finish()
}
kernel_test!(mm, failed_page_allocation_in_a_fault_loses_nothing);

/// A page-table page that cannot be allocated (the pte_alloc fault
/// attribute): a fault that needs one is killed for lack of memory and
/// MADV_POPULATE_WRITE gives ENOMEM (as Linux's VM_FAULT_OOM); nothing is
/// mapped or leaked, and the same accesses succeed once memory is back.
fn failed_page_table_allocation_loses_nothing() -> TestResult {
    use crate::testhooks::fault_inject::{Spec, PTE_ALLOC};
    let mut s = Scenario::new();
    let t = s.spawn()?;
    // 2 MiB-aligned and untouched: the first access needs a new pte table.
    let a = 0x40_0000_0000usize;
    ensure_eq!(mmap(&t, a, 4 << 20, RW | PROT_MTE, ANON | MAP_FIXED, -1)?, a, "MAP_FIXED");
    let frames = crate::mm::frames::free_frames();
    let tables = t.mm().pgtables.nr_tables.load(Ordering::Acquire);
    let fail = PTE_ALLOC.arm(Spec::always());
    let r = t.store(a, 5);
    let populate = t.madvise(a + (2 << 20), PAGE, MADV_POPULATE_WRITE);
    let failures = PTE_ALLOC.failures();
    drop(fail);
    ensure!(failures >= 2, "page-table allocation failures injected: {failures}");
    ensure!(
        matches!(&r, Err(Signal::Killed(why)) if why.contains("out of memory")),
        "the write with no page table: {r:?}"
    );
    expect_errno(populate, ENOMEM, "MADV_POPULATE_WRITE with no page table")?;
    ensure!(pte_none(pte_of(&t, a)) && pte_none(pte_of(&t, a + (2 << 20))), "a pte was left after the failed faults");
    ensure_eq!(t.mm().pgtables.nr_tables.load(Ordering::Acquire), tables, "page-table pages after the failed faults");
    ensure_eq!(crate::mm::frames::free_frames(), frames, "free frames after the failed faults");
    ok(t.store(with_tag(a, 0), 6), "the write once memory is back")?;
    must(t.madvise(a + (2 << 20), PAGE, MADV_POPULATE_WRITE), "MADV_POPULATE_WRITE once memory is back")?;
    ensure_eq!(ok(t.load(a), "read")?, 6, "data");
    s.finish()
}
kernel_test!(mm, failed_page_table_allocation_loses_nothing);

/// How many VMAs cover `[a, a + len)`.
fn vmas_over(t: &Task, a: usize, len: usize) -> usize {
    t.mm().mmap_lock.read().overlapping(a, a + len).count()
}

/// mprotect of part of a VMA and back leaves one VMA (vma_merge), an
/// mprotect to the flags a VMA has splits nothing (mprotect_fixup), and a
/// UFFDIO_MOVE over the whole range then works as in Linux, where a move
/// or an mfill ioctl must find its range in one VMA.
fn mprotect_and_back_merges_the_vmas() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let a = mmap(&t, 0, 4 * PAGE, RW | PROT_MTE, ANON, -1)?;
    must(t.mprotect(a + PAGE, PAGE, RW | PROT_MTE), "mprotect to the same flags")?;
    ensure_eq!(vmas_over(&t, a, 4 * PAGE), 1, "VMAs after an mprotect that changes nothing");
    must(t.mprotect(a + PAGE, 2 * PAGE, PROT_READ | PROT_MTE), "mprotect read-only")?;
    ensure_eq!(vmas_over(&t, a, 4 * PAGE), 3, "VMAs with the middle read-only");
    must(t.mprotect(a + PAGE, 2 * PAGE, RW | PROT_MTE), "mprotect back")?;
    ensure_eq!(vmas_over(&t, a, 4 * PAGE), 1, "VMAs once the middle is read-write again");
    must(t.madvise(a, PAGE, MADV_HUGEPAGE), "MADV_HUGEPAGE of the first page")?;
    ensure_eq!(vmas_over(&t, a, 4 * PAGE), 2, "VMAs with VM_HUGEPAGE on the first page");
    must(t.madvise(a, PAGE, MADV_NOHUGEPAGE), "MADV_NOHUGEPAGE of the first page")?;
    // VM_NOHUGEPAGE now differs from the rest: still two VMAs, as in Linux.
    ensure_eq!(vmas_over(&t, a, 4 * PAGE), 2, "VMAs with VM_NOHUGEPAGE on the first page");
    let u = UffdFd::new(&t, crate::mm::userfaultfd::UFFD_FEATURE_MOVE)?;
    u.register(a + PAGE, 3 * PAGE, crate::mm::userfaultfd::UFFDIO_REGISTER_MODE_MISSING)?;
    must(u.unregister(a + PAGE, 3 * PAGE), "UFFDIO_UNREGISTER")?;
    ensure_eq!(vmas_over(&t, a + PAGE, 3 * PAGE), 1, "VMAs after register and unregister");
    s.finish()
}
kernel_test!(mm, mprotect_and_back_merges_the_vmas);

/// The agent's loops fault a whole range in one EL0 entry, as a program's
/// loop does: a store to every page maps each (64 faults), loads read back
/// the sum, and a list of tagged pointers is read through each one's tag,
/// one wrong tag in it stopping the loop with SEGV_MTESERR at that pointer.
fn one_el0_entry_faults_a_whole_range() -> TestResult {
    let mut s = Scenario::new();
    let t = s.spawn()?;
    let pages = 64;
    let a = mmap(&t, 0, pages * PAGE, RW, ANON, -1)?;
    ok(t.touch(a + 8, pages * PAGE, PAGE, Some(3)), "the store loop")?;
    expect_rss(&t, pages as isize, 0, "after one loop of first-touch stores")?;
    ensure_eq!(ok(t.touch(a + 8, pages * PAGE, PAGE, None), "the load loop")?, 3 * pages as u64, "the sum read back");
    let m = mmap(&t, 0, 8 * PAGE, RW | PROT_MTE, ANON, -1)?;
    for p in 0..8 {
        tag_page(&t, m + p * PAGE, |_| p as u8 + 1)?;
        ok(t.store(with_tag(m + p * PAGE, p as u8 + 1), 10 + p as u64), "write through the tag")?;
    }
    let list = mmap(&t, 0, PAGE, RW, ANON, -1)?;
    for p in 0..8 {
        ok(t.store(list + 8 * p, with_tag(m + p * PAGE, p as u8 + 1) as u64), "write the list")?;
    }
    ensure_eq!(ok(t.load_list(list, 8, true), "the list loop")?, (10..18).sum::<u64>(), "the sum through the tags");
    let wrong = with_tag(m + 5 * PAGE, 0xE);
    ok(t.store(list + 8 * 5, wrong as u64), "put a wrong tag in the list")?;
    expect_segv(t.load_list(list, 8, false), SegvKind::MteSErr, wrong, "the list loop at the wrong tag")?;
    s.finish()
}
kernel_test!(mm, one_el0_entry_faults_a_whole_range);
