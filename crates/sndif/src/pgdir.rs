//! The page directory (`struct xensnd_page_directory`) that tells the backend which grant
//! references make up a stream's shared buffer.
//!
//! Each directory page holds `gref_dir_next_page` (0 ends the chain) and up to 1023 data grant
//! references, in buffer order. The number of data references is not transmitted: both sides
//! derive it from OPEN's `buffer_sz` ([`data_pages`]). Unused tail entries are written as 0 so a
//! reused page carries no stale references (sndif.md pitfall 8).

use crate::layout::{GREF_SIZE, PGDIR_NEXT, PGDIR_REFS, PGDIR_REFS_PER_PAGE, XEN_PAGE_SIZE};
use crate::shm::{SharedMem, ShmError};

/// Errors writing or reading a page directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PgdirError {
    /// The number of directory pages does not match the data references.
    #[error("page directory needs {need} pages for {data_refs} data refs, got {pages} pages")]
    WrongPageCount {
        /// Directory pages needed.
        need: usize,
        /// Directory pages supplied.
        pages: usize,
        /// Data references to describe.
        data_refs: usize,
    },
    /// `dir` and `dir_grefs` have different lengths.
    #[error("{pages} directory pages but {grefs} directory grant refs")]
    GrefCountMismatch {
        /// Directory pages supplied.
        pages: usize,
        /// Directory grant refs supplied.
        grefs: usize,
    },
    /// A directory page's grant reference is 0, which would end the chain.
    #[error("directory page {index} has grant ref 0 (the chain terminator)")]
    ZeroDirGref {
        /// Index of the directory page.
        index: usize,
    },
    /// A directory page view is shorter than a page.
    #[error("directory page {index} is {len} bytes, need {need}")]
    PageTooSmall {
        /// Index of the directory page.
        index: usize,
        /// View length.
        len: usize,
        /// Bytes needed.
        need: usize,
    },
    /// The chain ended (next = 0) before all data references were read.
    #[error("page directory chain ends after {read} of {expected} data refs")]
    ChainTooShort {
        /// References read so far.
        read: usize,
        /// References expected from `buffer_sz`.
        expected: usize,
    },
    /// Mapping a directory page failed.
    #[error("cannot map page-directory page with grant ref {gref}")]
    MapFailed {
        /// The grant reference.
        gref: u32,
    },
    /// A shared-memory access failed.
    #[error(transparent)]
    Shm(#[from] ShmError),
}

/// Data pages a buffer of `buffer_sz` octets spans: `ceil(buffer_sz / 4096)`.
pub fn data_pages(buffer_sz: u32) -> usize {
    let bytes = usize::try_from(buffer_sz).unwrap_or(usize::MAX);
    bytes.div_ceil(XEN_PAGE_SIZE)
}

/// Directory pages needed for `data_pages` references: `ceil(n / 1023)`, at least 1 (the OPEN
/// request always names a directory page).
pub fn dir_pages(data_pages: usize) -> usize {
    data_pages.div_ceil(PGDIR_REFS_PER_PAGE).max(1)
}

/// Write a directory describing `data_grefs` into the pages `dir` (granted as `dir_grefs`):
/// page `i` links to `dir_grefs[i + 1]`, the last one to 0; unused tail entries are zeroed.
/// `dir.len()` must equal [`dir_pages`]`(data_grefs.len())`.
pub fn write_directory(
    dir: &[SharedMem],
    dir_grefs: &[u32],
    data_grefs: &[u32],
) -> Result<(), PgdirError> {
    let need = dir_pages(data_grefs.len());
    if dir.len() != need {
        return Err(PgdirError::WrongPageCount {
            need,
            pages: dir.len(),
            data_refs: data_grefs.len(),
        });
    }
    if dir_grefs.len() != dir.len() {
        return Err(PgdirError::GrefCountMismatch {
            pages: dir.len(),
            grefs: dir_grefs.len(),
        });
    }
    if let Some(index) = dir_grefs.iter().position(|g| *g == 0) {
        return Err(PgdirError::ZeroDirGref { index });
    }
    if let Some((index, page)) = dir
        .iter()
        .enumerate()
        .find(|(_, p)| p.len() < XEN_PAGE_SIZE)
    {
        return Err(PgdirError::PageTooSmall {
            index,
            len: page.len(),
            need: XEN_PAGE_SIZE,
        });
    }
    let mut chunks = data_grefs.chunks(PGDIR_REFS_PER_PAGE);
    let mut buf = [0u8; XEN_PAGE_SIZE];
    for (i, page) in dir.iter().enumerate() {
        buf.fill(0);
        let next = dir_grefs.get(i + 1).copied().unwrap_or(0);
        put_gref(&mut buf, PGDIR_NEXT, next);
        for (k, gref) in chunks.next().unwrap_or(&[]).iter().enumerate() {
            put_gref(&mut buf, PGDIR_REFS + k * GREF_SIZE, *gref);
        }
        page.write_bytes(0, &buf)?;
    }
    Ok(())
}

fn put_gref(buf: &mut [u8; XEN_PAGE_SIZE], off: usize, gref: u32) {
    if let Some(dst) = buf.get_mut(off..off + GREF_SIZE) {
        dst.copy_from_slice(&gref.to_le_bytes());
    }
}

fn get_gref(buf: &[u8; XEN_PAGE_SIZE], off: usize) -> u32 {
    let mut b = [0u8; GREF_SIZE];
    if let Some(src) = buf.get(off..off + GREF_SIZE) {
        b.copy_from_slice(src);
    }
    u32::from_le_bytes(b)
}

/// Read one directory page (backend side): returns `gref_dir_next_page` and the first
/// `min(remaining, 1023)` data references. The page is copied out before it is parsed.
pub fn read_directory_page(
    page: &SharedMem,
    remaining: usize,
) -> Result<(u32, Vec<u32>), PgdirError> {
    if page.len() < XEN_PAGE_SIZE {
        return Err(PgdirError::PageTooSmall {
            index: 0,
            len: page.len(),
            need: XEN_PAGE_SIZE,
        });
    }
    let mut buf = [0u8; XEN_PAGE_SIZE];
    page.read_bytes(0, &mut buf)?;
    let next = get_gref(&buf, PGDIR_NEXT);
    let refs = (0..remaining.min(PGDIR_REFS_PER_PAGE))
        .map(|k| get_gref(&buf, PGDIR_REFS + k * GREF_SIZE))
        .collect();
    Ok((next, refs))
}

/// Walk a whole directory (backend side): starting at `first` (OPEN's `gref_directory`), map
/// each directory page with `map` and collect the [`data_pages`]`(buffer_sz)` data references.
/// The walk reads at most [`dir_pages`] pages, so a cyclic chain cannot loop; a chain that ends
/// early is [`PgdirError::ChainTooShort`]; a non-zero link after the last needed page is ignored.
pub fn read_directory<E, F>(first: u32, buffer_sz: u32, mut map: F) -> Result<Vec<u32>, E>
where
    E: From<PgdirError>,
    F: FnMut(u32) -> Result<SharedMem, E>,
{
    let expected = data_pages(buffer_sz);
    let mut refs = Vec::with_capacity(expected);
    let mut gref = first;
    for _ in 0..dir_pages(expected) {
        if refs.len() == expected {
            break;
        }
        if gref == 0 {
            return Err(PgdirError::ChainTooShort {
                read: refs.len(),
                expected,
            }
            .into());
        }
        let page = map(gref)?;
        let (next, mut chunk) = read_directory_page(&page, expected - refs.len())?;
        refs.append(&mut chunk);
        gref = next;
    }
    Ok(refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// `n` directory pages in one heap allocation, keyed by fake grant refs 1000, 1001, ...
    fn dir(n: usize) -> (Vec<SharedMem>, Vec<u32>) {
        let mem = SharedMem::heap_pages(n).expect("pages");
        let pages = (0..n).map(|i| mem.page(i).expect("page")).collect();
        let grefs = (0..n)
            .map(|i| 1000 + u32::try_from(i).expect("small"))
            .collect();
        (pages, grefs)
    }

    fn data(n: usize) -> Vec<u32> {
        (0..n)
            .map(|i| 5000 + u32::try_from(i).expect("small"))
            .collect()
    }

    fn round_trip(buffer_sz: u32) -> Vec<u32> {
        let n = data_pages(buffer_sz);
        let (pages, grefs) = dir(dir_pages(n));
        let refs = data(n);
        write_directory(&pages, &grefs, &refs).expect("write");
        let by_gref: HashMap<u32, SharedMem> = grefs.iter().copied().zip(pages).collect();
        let got: Vec<u32> = read_directory(grefs[0], buffer_sz, |g| {
            by_gref
                .get(&g)
                .cloned()
                .ok_or(PgdirError::MapFailed { gref: g })
        })
        .expect("read");
        assert_eq!(got, refs, "buffer_sz {buffer_sz}");
        got
    }

    #[test]
    fn page_counts() {
        assert_eq!(data_pages(0), 0);
        assert_eq!(data_pages(1), 1);
        assert_eq!(data_pages(4096), 1);
        assert_eq!(data_pages(4097), 2);
        assert_eq!(data_pages(u32::MAX), 1 << 20);
        assert_eq!(dir_pages(0), 1);
        assert_eq!(dir_pages(1), 1);
        assert_eq!(dir_pages(1023), 1);
        assert_eq!(dir_pages(1024), 2);
        assert_eq!(dir_pages(2046), 2);
        assert_eq!(dir_pages(2047), 3);
    }

    #[test]
    fn single_page_directory() {
        let (pages, grefs) = dir(1);
        pages[0].fill(0, XEN_PAGE_SIZE, 0xff).expect("dirty");
        write_directory(&pages, &grefs, &[11, 12, 13]).expect("write");
        let (next, refs) = read_directory_page(&pages[0], 3).expect("read");
        assert_eq!(next, 0);
        assert_eq!(refs, vec![11, 12, 13]);
        // Stale tail entries were zeroed.
        let (_, all) = read_directory_page(&pages[0], PGDIR_REFS_PER_PAGE).expect("read");
        assert!(all[3..].iter().all(|g| *g == 0));
        assert_eq!(pages[0].load_u32(PGDIR_REFS), Ok(11));
        assert_eq!(round_trip(3 * 4096 - 100).len(), 3);
    }

    #[test]
    fn exactly_1023_refs_fit_one_page() {
        let got = round_trip(1023 * 4096);
        assert_eq!(got.len(), 1023);
        let (pages, grefs) = dir(1);
        write_directory(&pages, &grefs, &data(1023)).expect("write");
        assert_eq!(pages[0].load_u32(PGDIR_NEXT), Ok(0));
        assert_eq!(pages[0].load_u32(XEN_PAGE_SIZE - 4), Ok(5000 + 1022));
    }

    #[test]
    fn ref_1024_chains_a_second_page() {
        let (pages, grefs) = dir(2);
        write_directory(&pages, &grefs, &data(1024)).expect("write");
        assert_eq!(pages[0].load_u32(PGDIR_NEXT), Ok(1001));
        assert_eq!(pages[1].load_u32(PGDIR_NEXT), Ok(0));
        let (next, refs) = read_directory_page(&pages[1], 1).expect("read");
        assert_eq!((next, refs), (0, vec![5000 + 1023]));
        assert_eq!(pages[1].load_u32(PGDIR_REFS + 4), Ok(0));
        round_trip(1024 * 4096);
        round_trip(1023 * 4096 + 1);
    }

    #[test]
    fn large_buffer_over_4_mib() {
        let got = round_trip(5 * 1024 * 1024 + 1);
        assert_eq!(got.len(), 1281);
        assert_eq!(dir_pages(1281), 2);
        let got = round_trip(16 * 1024 * 1024);
        assert_eq!(got.len(), 4096);
        assert_eq!(dir_pages(4096), 5);
    }

    #[test]
    fn zero_length_buffer_still_writes_one_terminated_page() {
        let (pages, grefs) = dir(1);
        pages[0].fill(0, XEN_PAGE_SIZE, 0xff).expect("dirty");
        write_directory(&pages, &grefs, &[]).expect("write");
        assert_eq!(pages[0].load_u32(PGDIR_NEXT), Ok(0));
        assert_eq!(pages[0].load_u32(PGDIR_REFS), Ok(0));
        assert_eq!(round_trip(0), Vec::<u32>::new());
    }

    #[test]
    fn argument_errors() {
        let (pages, grefs) = dir(2);
        assert_eq!(
            write_directory(&pages, &grefs, &data(5)),
            Err(PgdirError::WrongPageCount {
                need: 1,
                pages: 2,
                data_refs: 5
            })
        );
        assert_eq!(
            write_directory(&pages[..1], &grefs, &data(5)),
            Err(PgdirError::GrefCountMismatch { pages: 1, grefs: 2 })
        );
        assert_eq!(
            write_directory(&pages, &[1000, 0], &data(1500)),
            Err(PgdirError::ZeroDirGref { index: 1 })
        );
        let short = pages[0].sub(0, 100).expect("sub");
        assert!(matches!(
            write_directory(std::slice::from_ref(&short), &[1], &[]),
            Err(PgdirError::PageTooSmall { index: 0, .. })
        ));
        assert!(matches!(
            read_directory_page(&short, 1),
            Err(PgdirError::PageTooSmall { .. })
        ));
    }

    #[test]
    fn broken_chains_are_detected_and_bounded() {
        let (pages, grefs) = dir(2);
        write_directory(&pages, &grefs, &data(1500)).expect("write");
        // Terminate after the first page: chain too short.
        pages[0].store_u32(PGDIR_NEXT, 0).expect("store");
        let map = |g: u32| -> Result<SharedMem, PgdirError> {
            match g {
                1000 => Ok(pages[0].clone()),
                1001 => Ok(pages[1].clone()),
                _ => Err(PgdirError::MapFailed { gref: g }),
            }
        };
        assert_eq!(
            read_directory(1000, 1500 * 4096, map),
            Err(PgdirError::ChainTooShort {
                read: 1023,
                expected: 1500
            })
        );
        // A self-loop is cut off after dir_pages() pages and yields the expected count.
        pages[0].store_u32(PGDIR_NEXT, 1000).expect("store");
        let got = read_directory(1000, 1500 * 4096, map).expect("bounded");
        assert_eq!(got.len(), 1500);
        // Unknown gref: the mapper's error is returned.
        assert_eq!(
            read_directory(7, 4096, map),
            Err(PgdirError::MapFailed { gref: 7 })
        );
        assert!(matches!(
            read_directory(0, 4096, map),
            Err(PgdirError::ChainTooShort { read: 0, .. })
        ));
    }
}
