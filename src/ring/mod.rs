//! Layer 3: the ring algorithms, and nothing else: no system calls, no waiting.
//!
//! Both rings address slots through raw pointers into a segment (or into heap
//! memory under loom and in unit tests). Every index they read from shared
//! memory is reduced into range by a mask or checked against the capacity
//! cached in the process-local view before it addresses a slot, so a scribbled
//! index yields `Corrupted` or wrong data, never an out-of-bounds access.

pub mod mpmc;
pub mod spsc;

use crate::loom::{AtomicU64, UnsafeCell};
use std::ptr::NonNull;

/// One slot of either ring: its stamp (whose turn it is; each ring's
/// module says how it encodes turns) and the value, `repr(C)` so the layout
/// is fixed. The stamp sits in the same cache line as the value's first
/// bytes, so the side that polls it reads the message in the same transfer.
#[repr(C)]
#[derive(Debug)]
pub struct Slot<T> {
    stamp: AtomicU64,
    value: UnsafeCell<T>,
}

impl<T: Copy> Slot<T> {
    /// A slot whose turn is `stamp` (heap-backed rings: loom and unit tests).
    #[cfg_attr(not(any(loom, test)), allow(dead_code))]
    pub fn new(stamp: u64, value: T) -> Self {
        Slot {
            stamp: AtomicU64::new(stamp),
            value: UnsafeCell::new(value),
        }
    }
}

impl<T> Slot<T> {
    /// Slot `index` of an array of slots `stride` bytes apart from `base`.
    ///
    /// # Safety
    /// Slot `index` must lie in memory that is valid (mapped) for `'a`, at
    /// `base + index * stride`, aligned for `Slot<T>`: the contract of the
    /// rings' `from_raw`, with `index` below their slot count.
    #[inline(always)]
    pub(crate) unsafe fn at<'a>(
        base: NonNull<Slot<T>>,
        stride: usize,
        index: usize,
    ) -> &'a Slot<T> {
        // SAFETY: in bounds and aligned (contract).
        unsafe {
            &*base
                .as_ptr()
                .cast::<u8>()
                .add(index * stride)
                .cast::<Slot<T>>()
        }
    }
}

/// Why a push did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// No free slot right now.
    Full,
    /// Shared state failed a check.
    Corrupted,
}

/// Why a pop returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopError {
    /// No published message right now.
    Empty,
    /// Shared state failed a check.
    Corrupted,
}

/// Bound on retries inside one non-blocking call. Under legitimate contention
/// every failed round means another caller made progress; the bound only
/// stops a hostile writer from trapping us. Hitting it reports Full/Empty,
/// which is always a safe answer to a `try_` call.
const MAX_ROUNDS: u32 = 1 << 16;
