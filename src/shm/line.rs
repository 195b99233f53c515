//! `Line<T>`: one value alone on a 128-byte line (two 64-byte lines, because
//! the adjacent-line prefetcher pulls pairs), with a guaranteed `repr(C)`
//! layout so that offsets in the segment are fixed.

/// `T` padded and aligned to 128 bytes.
#[repr(C, align(128))]
#[derive(Debug, Default)]
pub struct Line<T>(pub T);

impl<T> std::ops::Deref for Line<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        &self.0
    }
}

#[cfg(not(loom))]
const _: () = {
    assert!(std::mem::size_of::<Line<u64>>() == 128);
    assert!(std::mem::align_of::<Line<u64>>() == 128);
};
