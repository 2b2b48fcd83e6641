//! One file's content as 4 KiB pages, current and durable.
//!
//! The current and the durable content are two page maps that share every
//! page nobody changed since the last fsync (`Arc`, copy on write), plus the
//! set of page indices changed since then. So fsync costs O(pages changed),
//! not O(file size): the write-ahead log appends a few KiB and fdatasyncs
//! hundreds of times a second to a file of tens of MiB.
//!
//! Invariant of both snapshots, which makes growing a file show zeros: no
//! page lies wholly at or beyond the size, and the bytes of the last page
//! beyond the size are zero. A missing page reads as zeros (a hole).
//!
//! Memory accounting: the methods that change pages return how many pages
//! they allocated or freed, counting a page shared by both snapshots once;
//! the caller keeps the filesystem-wide total and checks it against the
//! limit *before* a change (with the `*_cost_pages` methods), so a change
//! that does not fit changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Bytes per page: the unit of copy on write, of dirty tracking and of the
/// memory accounting. Also what statfs reports as the block size.
pub const PAGE_BYTES: u64 = 4096;
const PAGE: usize = PAGE_BYTES as usize;

type Page = Arc<[u8; PAGE]>;

/// A file's size and the pages that are not holes.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    size_bytes: u64,
    pages: BTreeMap<u64, Page>,
}

impl Snapshot {
    fn read_into(&self, offset: u64, out: &mut [u8]) {
        let end = offset + out.len() as u64;
        let first = offset / PAGE_BYTES;
        let last = end.div_ceil(PAGE_BYTES);
        for (&index, page) in self.pages.range(first..last) {
            let page_start = index * PAGE_BYTES;
            let from = page_start.max(offset);
            let to = (page_start + PAGE_BYTES).min(end);
            let src = &page[(from - page_start) as usize..(to - page_start) as usize];
            out[(from - offset) as usize..(to - offset) as usize].copy_from_slice(src);
        }
    }
}

/// Net change in allocated pages caused by one operation.
pub type PagesDelta = i64;

/// One regular file's content with durability tracking.
#[derive(Debug, Default)]
pub struct FileData {
    current: Snapshot,
    durable: Snapshot,
    /// Page indices whose current page differs (or may differ) from the
    /// durable one: written, zeroed or removed since the last fsync.
    dirty: BTreeSet<u64>,
}

impl FileData {
    pub fn size_bytes(&self) -> u64 {
        self.current.size_bytes
    }

    /// Pages holding data in the current content (holes excluded).
    pub fn current_pages(&self) -> u64 {
        self.current.pages.len() as u64
    }

    /// Up to `len` bytes from `offset`, fewer at the end of the file.
    pub fn read(&self, offset: u64, len: u64) -> Vec<u8> {
        let end = offset.saturating_add(len).min(self.current.size_bytes);
        if end <= offset {
            return Vec::new();
        }
        let mut out = vec![0; (end - offset) as usize];
        self.current.read_into(offset, &mut out);
        out
    }

    /// Pages a write of `len` bytes at `offset` would allocate: a hole
    /// filled, or a page still shared with the durable content copied.
    pub fn write_cost_pages(&self, offset: u64, len: u64) -> u64 {
        if len == 0 {
            return 0;
        }
        let first = offset / PAGE_BYTES;
        let last = (offset + len).div_ceil(PAGE_BYTES);
        (first..last).filter(|index| self.needs_allocation(*index)).count() as u64
    }

    fn needs_allocation(&self, index: u64) -> bool {
        self.current.pages.get(&index).is_none_or(|page| Arc::strong_count(page) > 1)
    }

    /// Writes `data` at `offset`, extending the file if it ends beyond it
    /// (an empty write changes nothing). The caller has checked
    /// `offset + data.len()` does not overflow.
    pub fn write(&mut self, offset: u64, data: &[u8]) -> PagesDelta {
        if data.is_empty() {
            return 0;
        }
        let mut allocated = 0;
        let mut done = 0usize;
        while done < data.len() {
            let position = offset + done as u64;
            let index = position / PAGE_BYTES;
            let in_page = (position % PAGE_BYTES) as usize;
            let n = (PAGE - in_page).min(data.len() - done);
            allocated += i64::from(self.needs_allocation(index));
            let page = self.current.pages.entry(index).or_insert_with(|| Arc::new([0; PAGE]));
            Arc::make_mut(page)[in_page..in_page + n].copy_from_slice(&data[done..done + n]);
            self.dirty.insert(index);
            done += n;
        }
        let end = offset + data.len() as u64;
        self.current.size_bytes = self.current.size_bytes.max(end);
        allocated
    }

    /// Pages `set_size(size_bytes)` would allocate: at most the partial
    /// last page, when shrinking into a page still shared with the durable
    /// content (its tail must be zeroed in a copy).
    pub fn set_size_cost_pages(&self, size_bytes: u64) -> u64 {
        let partial = !size_bytes.is_multiple_of(PAGE_BYTES);
        let shrinks = size_bytes < self.current.size_bytes;
        let index = size_bytes / PAGE_BYTES;
        let shared = self.current.pages.get(&index).is_some_and(|page| Arc::strong_count(page) > 1);
        u64::from(shrinks && partial && shared)
    }

    /// Truncates or extends the file. Extension adds a hole: no pages.
    pub fn set_size(&mut self, size_bytes: u64) -> PagesDelta {
        let mut delta = 0;
        if size_bytes < self.current.size_bytes {
            let keep = size_bytes.div_ceil(PAGE_BYTES);
            let removed = self.current.pages.split_off(&keep);
            for (index, page) in removed {
                self.dirty.insert(index);
                delta -= i64::from(Arc::strong_count(&page) == 1);
            }
            delta += self.zero_tail(size_bytes);
        }
        self.current.size_bytes = size_bytes;
        delta
    }

    /// Zeroes the bytes of the page holding `size_bytes` from there on, so
    /// a later extension reads zeros there.
    fn zero_tail(&mut self, size_bytes: u64) -> PagesDelta {
        let in_page = (size_bytes % PAGE_BYTES) as usize;
        let index = size_bytes / PAGE_BYTES;
        if in_page == 0 {
            return 0;
        }
        let allocated = i64::from(self.needs_allocation(index));
        let Some(page) = self.current.pages.get_mut(&index) else {
            return 0;
        };
        Arc::make_mut(page)[in_page..].fill(0);
        self.dirty.insert(index);
        allocated
    }

    /// Makes the current content durable (fsync, fdatasync).
    pub fn sync(&mut self) -> PagesDelta {
        let mut freed = 0;
        for index in std::mem::take(&mut self.dirty) {
            let old = match self.current.pages.get(&index) {
                Some(page) => self.durable.pages.insert(index, Arc::clone(page)),
                None => self.durable.pages.remove(&index),
            };
            // The old durable page is freed unless the current content
            // still holds it.
            if let Some(old) = old {
                freed += i64::from(Arc::strong_count(&old) == 1);
            }
        }
        self.durable.size_bytes = self.current.size_bytes;
        -freed
    }

    /// True when the current content differs from the durable one.
    pub fn is_unsynced(&self) -> bool {
        !self.dirty.is_empty() || self.current.size_bytes != self.durable.size_bytes
    }

    /// Bytes of the pages changed since the last sync (page granularity).
    pub fn unsynced_bytes(&self) -> u64 {
        self.dirty.len() as u64 * PAGE_BYTES
    }

    /// Power loss: the current content becomes the durable one.
    pub fn revert(&mut self) -> PagesDelta {
        let freed = self
            .dirty
            .iter()
            .filter_map(|index| self.current.pages.get(index))
            .filter(|page| Arc::strong_count(page) == 1)
            .count();
        self.current = self.durable.clone();
        self.dirty.clear();
        -(freed as i64)
    }

    /// Pages this file holds in memory, a page shared by both snapshots
    /// counted once. O(pages): for dropping a file and for checks.
    pub fn pages_in_memory(&self) -> u64 {
        let durable_only = self
            .durable
            .pages
            .iter()
            .filter(|(index, page)| self.current.pages.get(index).is_none_or(|c| !Arc::ptr_eq(c, page)))
            .count();
        self.current.pages.len() as u64 + durable_only as u64
    }

    /// Panics if the invariants of the module docs do not hold.
    #[cfg(test)]
    pub fn check_invariants(&self) {
        for (name, snapshot) in [("current", &self.current), ("durable", &self.durable)] {
            let size = snapshot.size_bytes;
            if let Some((&index, page)) = snapshot.pages.last_key_value() {
                assert!(index * PAGE_BYTES < size, "{name} page {index} lies beyond size {size}");
                if index == size / PAGE_BYTES {
                    let tail = &page[(size % PAGE_BYTES) as usize..];
                    assert!(tail == &[0; PAGE][..tail.len()], "{name} tail beyond size {size} not zero");
                }
            }
        }
        for (index, page) in &self.current.pages {
            let shared = self.durable.pages.get(index).is_some_and(|d| Arc::ptr_eq(d, page));
            assert!(shared || self.dirty.contains(index), "page {index} differs but is not dirty");
        }
        for index in self.durable.pages.keys() {
            let kept = self.current.pages.contains_key(index);
            assert!(kept || self.dirty.contains(index), "durable page {index} removed but not dirty");
        }
    }

    #[cfg(test)]
    pub fn dirty_pages(&self) -> usize {
        self.dirty.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(file: &FileData) -> Vec<u8> {
        file.read(0, file.size_bytes())
    }

    #[test]
    fn data_is_durable_only_after_sync() {
        let mut file = FileData::default();
        assert_eq!(file.write(10, b"hello"), 1);
        assert_eq!(content(&file), b"\0\0\0\0\0\0\0\0\0\0hello");
        assert!(file.is_unsynced());
        file.revert();
        assert_eq!(file.size_bytes(), 0);
        file.write(0, b"abc");
        assert_eq!(file.sync(), 0);
        assert!(!file.is_unsynced());
        file.write(1, b"X");
        file.revert();
        assert_eq!(content(&file), b"abc");
        file.check_invariants();
    }

    #[test]
    fn writes_across_pages_and_holes_read_back() {
        let mut file = FileData::default();
        let data: Vec<u8> = (0..10_000u32).map(|i| i as u8).collect();
        assert_eq!(file.write(3 * PAGE_BYTES - 7, &data), 4);
        assert_eq!(file.read(3 * PAGE_BYTES - 7, 10_000), data);
        assert_eq!(file.read(0, 5), vec![0; 5]);
        assert_eq!(file.current_pages(), 4);
        assert_eq!(file.write(1 << 20, b""), 0);
        assert_eq!(file.size_bytes(), 3 * PAGE_BYTES - 7 + 10_000, "an empty write extends nothing");
        file.check_invariants();
    }

    #[test]
    fn shrink_then_grow_reads_zeros_before_and_after_sync() {
        let mut file = FileData::default();
        file.write(0, &[7; 6000]);
        file.sync();
        file.set_size(100);
        file.set_size(6000);
        let mut expected = vec![7; 100];
        expected.resize(6000, 0);
        assert_eq!(content(&file), expected);
        file.check_invariants();
        // Not synced: the durable 6000 sevens come back.
        file.revert();
        assert_eq!(content(&file), vec![7; 6000]);
        // Synced: the zeros are durable, also once grown again.
        file.set_size(100);
        file.sync();
        file.revert();
        file.set_size(6000);
        assert_eq!(content(&file), expected);
        file.check_invariants();
    }

    #[test]
    fn sync_touches_only_dirty_pages() {
        let mut file = FileData::default();
        file.write(0, &vec![1; 1024 * PAGE]);
        file.sync();
        file.write(500 * PAGE_BYTES + 10, b"x");
        assert_eq!(file.dirty_pages(), 1);
        // Copy on write: the durable page stays, one page more in memory.
        assert_eq!(file.pages_in_memory(), 1025);
        assert_eq!(file.sync(), -1);
        assert_eq!(file.pages_in_memory(), 1024);
        file.check_invariants();
    }

    #[test]
    fn costs_predict_allocations() {
        let mut file = FileData::default();
        file.write(0, &[1; 3 * PAGE]);
        file.sync();
        // Page 0 shared (copy), pages 3 and 4 holes.
        assert_eq!(file.write_cost_pages(10, 4 * PAGE_BYTES + 10), 5);
        assert_eq!(file.write(10, &vec![2; 4 * PAGE + 10]), 5);
        file.sync();
        assert_eq!(file.set_size_cost_pages(PAGE_BYTES + 1), 1);
        // Pages 2..=4 are still held by the durable content: not freed yet.
        assert_eq!(file.set_size(PAGE_BYTES + 1), 1);
        assert_eq!(file.set_size_cost_pages(PAGE_BYTES + 1), 0);
        assert_eq!(file.sync(), -4);
        assert_eq!(file.pages_in_memory(), 2);
        file.check_invariants();
    }
}
