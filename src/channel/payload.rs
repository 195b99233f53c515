//! The payloads of a byte-message queue: one fixed-size payload per ring
//! slot, owned by whoever owns the slot in the ring protocol.
//!
//! The ring slot's value is only a `u64` word (the message length and a
//! pipe's session stamp: see `channel::session`); the bytes live at
//! `base + index * stride`. In a segment, `base` is the first slot's end
//! and `stride` the slots' own, so each payload directly follows its slot's
//! stamp and word and a small message travels in the slot's cache line; on
//! the heap (loom models) the payloads are a separate area. A payload is written only by the
//! producer that claimed its slot and read only by the consumer that claimed
//! the published message, so the ring's stamps (MPMC) or indices (SPSC)
//! order every access, exactly as they order the slot's own value. Under
//! loom each payload is shadowed by a loom `UnsafeCell<()>` touched on every
//! access, so the models check that ownership too.

use std::ptr::NonNull;

/// A process-local view of a payload area.
#[derive(Clone, Debug)]
pub struct Payload {
    base: NonNull<u8>,
    stride: usize,
    max: usize,
    count: u64,
    #[cfg(loom)]
    guards: std::sync::Arc<[crate::loom::UnsafeCell<()>]>,
}

// SAFETY: the area is shared memory whose accesses are ordered by the ring
// protocol (see the module docs); the view holds no thread-affine state.
unsafe impl Send for Payload {}
// SAFETY: as above.
unsafe impl Sync for Payload {}

impl Payload {
    /// A view of `count` payloads of `stride` bytes at `base`, each holding
    /// at most `max` bytes.
    ///
    /// # Safety
    /// `(count - 1) * stride + max` bytes at `base` must stay mapped and
    /// writable while the view (or a clone) is used, and `max <= stride`.
    pub unsafe fn from_raw(base: NonNull<u8>, stride: usize, max: usize, count: u64) -> Self {
        debug_assert!(max <= stride);
        Payload {
            base,
            stride,
            max,
            count,
            #[cfg(loom)]
            guards: (0..count)
                .map(|_| crate::loom::UnsafeCell::new(()))
                .collect(),
        }
    }

    /// The largest message, in bytes.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Payload `index`. The index comes from the ring, which keeps it below
    /// the slot count; a larger one is a bug in shmring, not bad input.
    #[inline(always)]
    fn ptr(&self, index: u64) -> *mut u8 {
        assert!(index < self.count, "payload index out of range");
        // SAFETY: index < count, so the offset stays inside the area
        // (contract of `from_raw`).
        unsafe { self.base.as_ptr().add(index as usize * self.stride) }
    }

    /// Copies `bytes` into payload `index`.
    ///
    /// # Safety
    /// The caller owns slot `index` as its producer (claimed, not yet
    /// committed), and `bytes.len() <= max`.
    #[inline(always)]
    pub unsafe fn write(&self, index: u64, bytes: &[u8]) {
        assert!(bytes.len() <= self.max);
        let dst = self.ptr(index);
        let copy = || {
            let len = bytes.len();
            // The bytes that share a line with the slot's stamp go last: a
            // consumer polling that stamp pulls the line away each time it
            // looks, so it is written once, at the end, just before the word
            // and the stamp (1 KiB streams: 80-96 -> 66-72 ns a message).
            let head = (64 - (dst as usize & 63)).min(len);
            // SAFETY: the payload is ours (contract) and holds `max >= len`
            // bytes; the source is a caller's slice, which cannot overlap
            // shared memory we own exclusively; `head <= len`.
            unsafe {
                copy_bytes(bytes.as_ptr().add(head), dst.add(head), len - head);
                copy_bytes(bytes.as_ptr(), dst, head);
            }
        };
        #[cfg(loom)]
        self.guards[index as usize].with_mut(|_| copy());
        #[cfg(not(loom))]
        copy();
    }

    /// Appends `len` bytes of payload `index` to `out` (reusing its
    /// capacity).
    ///
    /// # Safety
    /// The caller owns slot `index` as its consumer (claimed, published,
    /// not yet released), and `len <= max`.
    #[inline(always)]
    pub unsafe fn read_into(&self, index: u64, len: usize, out: &mut Vec<u8>) {
        assert!(len <= self.max);
        let src = self.ptr(index);
        let mut copy = || {
            out.reserve(len);
            let at = out.len();
            // SAFETY: the payload is ours to read (contract) and holds at
            // least `len` bytes; `out` has room for `len` more (reserved
            // above), which the copy initialises before `set_len`.
            unsafe {
                copy_bytes(src, out.as_mut_ptr().add(at), len);
                out.set_len(at + len);
            }
        };
        #[cfg(loom)]
        self.guards[index as usize].with(|_| copy());
        #[cfg(not(loom))]
        copy();
    }

    /// Payload `index` as a mutable slice of `max` bytes, to write in place.
    ///
    /// # Safety
    /// The caller owns slot `index` as its producer while the slice lives.
    #[allow(clippy::mut_from_ref)]
    #[inline]
    pub unsafe fn slice_mut(&self, index: u64) -> &mut [u8] {
        let p = self.ptr(index);
        #[cfg(loom)]
        self.guards[index as usize].with_mut(|_| ());
        // SAFETY: in bounds, and exclusively ours while borrowed (contract).
        unsafe { std::slice::from_raw_parts_mut(p, self.max) }
    }

    /// The first `len` bytes of payload `index`, to read in place.
    ///
    /// # Safety
    /// The caller owns slot `index` as its consumer while the slice lives, and
    /// `len <= max`.
    #[inline]
    pub unsafe fn slice(&self, index: u64, len: usize) -> &[u8] {
        assert!(len <= self.max);
        let p = self.ptr(index);
        #[cfg(loom)]
        self.guards[index as usize].with(|_| ());
        // SAFETY: in bounds, and not written by anyone while borrowed (contract).
        unsafe { std::slice::from_raw_parts(p, len) }
    }
}

/// Copies `len` bytes from `src` to `dst`: small messages (up to 32 bytes,
/// the common case of a one-line message) by a pair of overlapping word
/// moves inline, larger ones by `memcpy`. A library call for a few bytes
/// costs more than the copy.
///
/// # Safety
/// `src` is readable and `dst` writable for `len` bytes, and they do not
/// overlap.
#[inline(always)]
unsafe fn copy_bytes(src: *const u8, dst: *mut u8, len: usize) {
    use std::ptr::{copy_nonoverlapping, read_unaligned as rd, write_unaligned as wr};
    // SAFETY: in every branch each access lies in `0..len` of its buffer
    // (contract), unaligned accesses are allowed by `read_unaligned` /
    // `write_unaligned`, and the head and tail moves may overlap each
    // other only within `dst`, writing the same bytes.
    unsafe {
        match len {
            0 => {}
            1..=3 => {
                *dst = *src;
                *dst.add(len / 2) = *src.add(len / 2);
                *dst.add(len - 1) = *src.add(len - 1);
            }
            4..=7 => {
                let (a, b) = (rd(src.cast::<u32>()), rd(src.add(len - 4).cast::<u32>()));
                wr(dst.cast::<u32>(), a);
                wr(dst.add(len - 4).cast::<u32>(), b);
            }
            8..=16 => {
                let (a, b) = (rd(src.cast::<u64>()), rd(src.add(len - 8).cast::<u64>()));
                wr(dst.cast::<u64>(), a);
                wr(dst.add(len - 8).cast::<u64>(), b);
            }
            17..=32 => {
                let (a, b) = (
                    rd(src.cast::<[u64; 2]>()),
                    rd(src.add(len - 16).cast::<[u64; 2]>()),
                );
                wr(dst.cast::<[u64; 2]>(), a);
                wr(dst.add(len - 16).cast::<[u64; 2]>(), b);
            }
            _ => copy_nonoverlapping(src, dst, len),
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::copy_bytes;

    /// Every length of every branch (and the `memcpy` one past them):
    /// exactly `len` bytes arrive, in order, and nothing beyond is touched.
    #[test]
    fn copy_bytes_copies_exactly_len_bytes() {
        for len in 0..=80usize {
            let src: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(7) ^ 0x5a).collect();
            let mut dst = vec![0xeeu8; len + 16];
            // SAFETY: `src` holds `len` bytes, `dst` more; distinct buffers.
            unsafe { copy_bytes(src.as_ptr(), dst.as_mut_ptr(), len) };
            assert_eq!(&dst[..len], &src[..], "len {len}");
            assert!(
                dst[len..].iter().all(|&b| b == 0xee),
                "len {len}: wrote past the end"
            );
        }
    }
}
