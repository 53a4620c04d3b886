//! Small in-memory files with a page cache, for file-backed mappings.
//! Every page of a file has known contents (a pattern of the file id and
//! page index) until someone writes it through a shared mapping.

use super::folio::{Folio, Mapping, PG_DIRTY};
use super::rmap::RmapAnchor;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

static NEXT_FILE: AtomicU64 = AtomicU64::new(1);

pub struct File {
    pub id: u64,
    /// Size in pages.
    pub pages: u64,
    /// Page index -> folio pfn; each entry holds one folio reference.
    cache: Mutex<BTreeMap<u64, u64>>,
    /// The VMAs mapping this file (the i_mmap tree).
    pub i_mmap: RmapAnchor,
    /// Closed: the page cache goes once no VMA maps the file.
    closed: core::sync::atomic::AtomicBool,
}

/// The byte at `off` of page `index` of file `id` as first created.
pub fn initial_byte(id: u64, index: u64, off: usize) -> u8 {
    (id as usize * 131 + index as usize * 31 + off * 7 + 1) as u8
}

impl File {
    pub fn new(pages: u64) -> Arc<File> {
        Arc::new(File {
            id: NEXT_FILE.fetch_add(1, Ordering::Relaxed),
            pages,
            cache: Mutex::new(BTreeMap::new()),
            i_mmap: RmapAnchor::default(),
            closed: core::sync::atomic::AtomicBool::new(false),
        })
    }

    /// filemap_get_folio: the cached folio for `index`, read in (created
    /// with the file's contents) on a miss. None past the end of the file
    /// or when out of memory.
    pub fn get_folio(self: &Arc<Self>, index: u64) -> Option<Folio> {
        if index >= self.pages {
            return None;
        }
        let mut cache = self.cache.lock();
        if let Some(&pfn) = cache.get(&index) {
            return Some(Folio::get(pfn));
        }
        let folio = Folio::alloc(0)?;
        let data: alloc::vec::Vec<u8> =
            (0..crate::arch::mmu::PAGE_SIZE).map(|off| initial_byte(self.id, index, off)).collect();
        folio.write(0, 0, &data);
        {
            let mut inner = folio.page().inner.lock();
            inner.mapping = Mapping::File(Arc::downgrade(self));
            inner.index = index;
        }
        let extra = folio.clone(); // the cache's reference
        cache.insert(index, extra.into_counted());
        Some(folio)
    }

    /// The cached folio's pfn, if the page is in the cache.
    pub fn cached(&self, index: u64) -> Option<u64> {
        self.cache.lock().get(&index).copied()
    }

    pub fn cached_pages(&self) -> usize {
        self.cache.lock().len()
    }

    /// Drops every cached page (the file is going away). The pages must not
    /// be mapped any more.
    pub fn truncate(&self) {
        let pages: alloc::vec::Vec<u64> = core::mem::take(&mut *self.cache.lock()).into_values().collect();
        for pfn in pages {
            let f = Folio::from_counted(pfn);
            f.clear(PG_DIRTY);
            f.page().inner.lock().mapping = Mapping::None;
            drop(f);
        }
    }
}

/// The global file table (one for all tasks: a simplification).
static FILES: Mutex<BTreeMap<i32, Arc<File>>> = Mutex::new(BTreeMap::new());

/// Creates a file of `pages` pages and returns its descriptor.
pub fn create(pages: u64) -> (i32, Arc<File>) {
    let f = File::new(pages);
    let mut t = FILES.lock();
    let fd = (3..).find(|fd| !t.contains_key(fd)).expect("descriptor space");
    t.insert(fd, f.clone());
    (fd, f)
}

pub fn lookup(fd: i64) -> Option<Arc<File>> {
    FILES.lock().get(&i32::try_from(fd).ok()?).cloned()
}

/// Closes `fd`; the page cache goes now, or when the last VMA mapping the
/// file goes.
pub fn close(fd: i32) {
    let f = FILES.lock().remove(&fd);
    if let Some(f) = f {
        f.closed.store(true, Ordering::Release);
        f.release_if_unused();
    }
}

impl File {
    /// Drops the page cache of a closed file that no VMA maps any more.
    pub fn release_if_unused(&self) {
        if self.closed.load(Ordering::Acquire) && self.i_mmap.vmas.read().is_empty() {
            self.truncate();
        }
    }
}

/// Every open descriptor.
pub fn open_fds() -> alloc::vec::Vec<i32> {
    FILES.lock().keys().copied().collect()
}

/// Every open file (for the invariant checker).
pub fn open_files() -> alloc::vec::Vec<Arc<File>> {
    FILES.lock().values().cloned().collect()
}
