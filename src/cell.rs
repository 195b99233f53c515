//! Typed shared cells: [`Value<T>`] and [`Array<T>`], each with its own
//! [`Lock`] (Python's `Value('i', 0)`, `Array('d', n)` and `get_lock()`).
//!
//! Three ways in, from strongest to weakest:
//! - `lock()` gives a guard that derefs to `T` / `[T]`: exclusive access
//!   for read-modify-write sequences, across processes.
//! - On integer `Value`s, atomic operations (`fetch_add`, `compare_exchange`,
//!   `swap`, …) without the lock.
//! - Unlocked copies (`load` / `store`, `read_into` / `write_from`) for
//!   callers who synchronise some other way. They copy word by word with
//!   relaxed atomic accesses, so a racing writer can make a copy mix old and
//!   new words (torn), but never undefined behaviour.

use crate::error::SegmentError;
use crate::shared::{check_region, region_layout, Region, Shared, ShmSafe, KIND_ARRAY};
use crate::shm::header::type_desc;
use crate::shm::segment::{Location, SegmentOptions};
use crate::sync::{Lock, LockGuard, LockTimeoutError, OwnerDied, TryLockError};
use bytemuck::Pod;
use std::cell::UnsafeCell;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::os::fd::{OwnedFd, RawFd};
use std::path::PathBuf;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// Copies `len` bytes from shared memory at `src` into `dst`, word by word
/// with relaxed atomic loads where alignment allows, byte by byte otherwise.
///
/// # Safety
/// `src..src+dst.len()` must be mapped and only accessed atomically or under
/// shmring's locks by others.
unsafe fn racy_read(src: *const u8, dst: &mut [u8]) {
    let words = (src as usize).is_multiple_of(8) && dst.len().is_multiple_of(8);
    if words {
        for (i, chunk) in dst.chunks_exact_mut(8).enumerate() {
            // SAFETY: aligned, in bounds (contract); AtomicU64 has u64's layout.
            let w = unsafe { AtomicU64::from_ptr(src.add(i * 8) as *mut u64) };
            // Relaxed: an unsynchronised copy (documented as such).
            chunk.copy_from_slice(&w.load(Ordering::Relaxed).to_ne_bytes());
        }
    } else {
        for (i, b) in dst.iter_mut().enumerate() {
            // SAFETY: in bounds (contract); any address is aligned for u8.
            let a = unsafe { AtomicU8::from_ptr(src.add(i) as *mut u8) };
            // Relaxed: as above.
            *b = a.load(Ordering::Relaxed);
        }
    }
}

/// Copies `src` into shared memory at `dst`, as [`racy_read`] in reverse.
///
/// # Safety
/// As for [`racy_read`], for `dst..dst+src.len()`.
unsafe fn racy_write(dst: *mut u8, src: &[u8]) {
    let words = (dst as usize).is_multiple_of(8) && src.len().is_multiple_of(8);
    if words {
        for (i, chunk) in src.chunks_exact(8).enumerate() {
            // SAFETY: aligned, in bounds (contract).
            let w = unsafe { AtomicU64::from_ptr(dst.add(i * 8) as *mut u64) };
            let v = u64::from_ne_bytes(chunk.try_into().expect("8-byte chunk"));
            // Relaxed: an unsynchronised copy (documented as such).
            w.store(v, Ordering::Relaxed);
        }
    } else {
        for (i, b) in src.iter().enumerate() {
            // SAFETY: in bounds (contract).
            let a = unsafe { AtomicU8::from_ptr(dst.add(i)) };
            // Relaxed: as above.
            a.store(*b, Ordering::Relaxed);
        }
    }
}

/// The contents of a [`Value`] segment: its lock, then the value.
#[repr(C)]
pub struct ValueCell<T> {
    lock: Lock,
    value: UnsafeCell<T>,
}

// SAFETY: the value is only accessed under `lock`, through atomics, or by
// word-wise atomic copies; T: Pod holds no pointers and any bits are valid.
unsafe impl<T: Pod> Sync for ValueCell<T> {}
// SAFETY: plain data.
unsafe impl<T: Pod> Send for ValueCell<T> {}
// SAFETY: repr(C) of a Lock and a Pod: no pointers, any bits valid.
unsafe impl<T: Pod> ShmSafe for ValueCell<T> {}

/// A `T` in shared memory with its own lock: Python's
/// `multiprocessing.Value`.
///
/// # Examples
/// ```
/// use shmring::Value;
/// let counter = Value::<i64>::anonymous(0)?; // shared with forked children
/// *counter.lock().unwrap_or_else(|died| died.into_inner()) += 1;
/// counter.fetch_add(2); // integer cells: atomics without the lock
/// assert_eq!(counter.load(), 3);
/// # Ok::<(), shmring::SegmentError>(())
/// ```
#[derive(Clone)]
pub struct Value<T: Pod> {
    shared: Shared<ValueCell<T>>,
}

impl<T: Pod> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Value")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

/// Holds a [`Value`]'s lock; derefs to the value.
pub struct ValueGuard<'a, T: Pod> {
    _guard: LockGuard<'a>,
    value: &'a UnsafeCell<T>,
}

impl<T: Pod> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the lock is held: no other locked access; T is Pod.
        unsafe { &*self.value.get() }
    }
}

impl<T: Pod> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as above, and `&mut self` makes this the only view.
        unsafe { &mut *self.value.get() }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod> Value<T> {
    fn cell(value: T) -> ValueCell<T> {
        ValueCell {
            lock: Lock::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// Creates `/dev/shm/<name>` exclusively, holding `value`.
    ///
    /// # Errors
    /// As for [`Shared::create`].
    pub fn create(name: &str, value: T) -> Result<Self, SegmentError> {
        Ok(Value {
            shared: Shared::create(name, Self::cell(value))?,
        })
    }

    /// Creates an anonymous value (a memfd shared across `fork`).
    pub fn anonymous(value: T) -> Result<Self, SegmentError> {
        Ok(Value {
            shared: Shared::anonymous(Self::cell(value))?,
        })
    }

    /// Opens `/dev/shm/<name>`, checking that it holds a `Value<T>`.
    ///
    /// # Errors
    /// As for [`Shared::open`]: `TypeMismatch` names both types' sizes.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Ok(Value {
            shared: Shared::open(name)?,
        })
    }

    /// Opens `/dev/shm/<name>`, or creates it holding `value`.
    pub fn open_or_create(name: &str, value: T) -> Result<Self, SegmentError> {
        Ok(Value {
            shared: Shared::builder().open_or_create(name, || Self::cell(value))?,
        })
    }

    /// Opens an anonymous value from an inherited memfd.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, SegmentError> {
        Ok(Value {
            shared: Shared::builder().from_fd(fd)?,
        })
    }

    /// Removes `/dev/shm/<name>`.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        Shared::<ValueCell<T>>::unlink(name)
    }

    /// Keep the name after the creating handle is dropped.
    pub fn persist(&self) {
        self.shared.persist()
    }

    /// The segment's file path, if named.
    pub fn path(&self) -> Option<PathBuf> {
        self.shared.path()
    }

    /// The raw memfd of an anonymous value.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.shared.raw_fd()
    }

    fn guard<'a>(&'a self, g: LockGuard<'a>) -> ValueGuard<'a, T> {
        ValueGuard {
            _guard: g,
            value: &self.shared.value,
        }
    }

    /// The value's lock (Python's `get_lock()`), to hold across several
    /// operations or to use with a [`Condition`](crate::Condition).
    pub fn get_lock(&self) -> &Lock {
        &self.shared.lock
    }

    /// Takes the value's lock; the guard derefs to the value.
    ///
    /// # Errors
    /// `OwnerDied(guard)`: a process died holding the lock; the value may
    /// be half-updated.
    pub fn lock(&self) -> Result<ValueGuard<'_, T>, OwnerDied<ValueGuard<'_, T>>> {
        match self.shared.lock.lock() {
            Ok(g) => Ok(self.guard(g)),
            Err(OwnerDied(g)) => Err(OwnerDied(self.guard(g))),
        }
    }

    /// Takes the lock without waiting.
    ///
    /// # Errors
    /// `WouldBlock`, `OwnerDied(guard)`.
    pub fn try_lock(&self) -> Result<ValueGuard<'_, T>, TryLockError<ValueGuard<'_, T>>> {
        match self.shared.lock.try_lock() {
            Ok(g) => Ok(self.guard(g)),
            Err(TryLockError::WouldBlock) => Err(TryLockError::WouldBlock),
            Err(TryLockError::OwnerDied(g)) => Err(TryLockError::OwnerDied(self.guard(g))),
        }
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `OwnerDied(guard)`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ValueGuard<'_, T>, LockTimeoutError<ValueGuard<'_, T>>> {
        match self.shared.lock.lock_timeout(timeout) {
            Ok(g) => Ok(self.guard(g)),
            Err(LockTimeoutError::Timeout) => Err(LockTimeoutError::Timeout),
            Err(LockTimeoutError::OwnerDied(g)) => Err(LockTimeoutError::OwnerDied(self.guard(g))),
        }
    }

    /// A copy of the value without the lock (may be torn by a racing
    /// writer; see the module docs).
    pub fn load(&self) -> T {
        let mut v = T::zeroed();
        // SAFETY: the value lies in the mapping; others access it only
        // atomically or under the lock.
        unsafe {
            racy_read(
                self.shared.value.get() as *const u8,
                bytemuck::bytes_of_mut(&mut v),
            )
        };
        v
    }

    /// Overwrites the value without the lock (see the module docs).
    pub fn store(&self, value: T) {
        // SAFETY: as in `load`.
        unsafe {
            racy_write(
                self.shared.value.get() as *mut u8,
                bytemuck::bytes_of(&value),
            )
        };
    }
}

macro_rules! atomic_value {
    ($($t:ty => $atomic:ty),* $(,)?) => { $(
        impl Value<$t> {
            fn atomic(&self) -> &$atomic {
                // SAFETY: the value is aligned for its type inside the
                // repr(C) cell, mapped while `self` lives, and every other
                // access is atomic or under the lock.
                unsafe { <$atomic>::from_ptr(self.shared.value.get()) }
            }

            /// Adds atomically without the lock; returns the previous value
            /// (wrapping on overflow).
            pub fn fetch_add(&self, v: $t) -> $t {
                // SeqCst: a counter others may read in any order.
                self.atomic().fetch_add(v, Ordering::SeqCst)
            }

            /// Subtracts atomically; returns the previous value (wrapping).
            pub fn fetch_sub(&self, v: $t) -> $t {
                // SeqCst: as for fetch_add.
                self.atomic().fetch_sub(v, Ordering::SeqCst)
            }

            /// Replaces the value atomically; returns the previous one.
            pub fn swap(&self, v: $t) -> $t {
                // SeqCst: as for fetch_add.
                self.atomic().swap(v, Ordering::SeqCst)
            }

            /// Stores `new` if the value is `current`; `Ok(previous)` or
            /// `Err(actual)`.
            pub fn compare_exchange(&self, current: $t, new: $t) -> Result<$t, $t> {
                // SeqCst: as for fetch_add.
                self.atomic()
                    .compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst)
            }

            /// The maximum of the value and `v`, stored atomically; returns
            /// the previous value.
            pub fn fetch_max(&self, v: $t) -> $t {
                // SeqCst: as for fetch_add.
                self.atomic().fetch_max(v, Ordering::SeqCst)
            }

            /// The minimum, as [`fetch_max`](Self::fetch_max).
            pub fn fetch_min(&self, v: $t) -> $t {
                // SeqCst: as for fetch_add.
                self.atomic().fetch_min(v, Ordering::SeqCst)
            }

            /// An atomic read (never torn).
            pub fn load_atomic(&self) -> $t {
                // SeqCst: as for fetch_add.
                self.atomic().load(Ordering::SeqCst)
            }
        }
    )* };
}
atomic_value!(
    i32 => std::sync::atomic::AtomicI32,
    u32 => std::sync::atomic::AtomicU32,
    i64 => std::sync::atomic::AtomicI64,
    u64 => std::sync::atomic::AtomicU64,
    isize => std::sync::atomic::AtomicIsize,
    usize => std::sync::atomic::AtomicUsize,
);

/// An array of `T` in shared memory with its own lock: Python's
/// `multiprocessing.Array`.
///
/// # Examples
/// ```
/// use shmring::Array;
/// let a = Array::<f64>::anonymous_from(&[1.0, 2.0, 3.0])?;
/// a.lock().unwrap_or_else(|died| died.into_inner())[1] = 5.0;
/// assert_eq!(a.to_vec(), vec![1.0, 5.0, 3.0]);
/// # Ok::<(), shmring::SegmentError>(())
/// ```
pub struct Array<T: Pod> {
    region: std::sync::Arc<Region>,
    lock: NonNull<Lock>,
    data: NonNull<T>,
    len: usize,
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        Array {
            region: self.region.clone(),
            lock: self.lock,
            data: self.data,
            len: self.len,
        }
    }
}

// SAFETY: the pointers address the mapping kept alive by `region`; the data
// is accessed under the lock or by atomic copies; T: Pod is plain data.
unsafe impl<T: Pod> Send for Array<T> {}
// SAFETY: as above.
unsafe impl<T: Pod> Sync for Array<T> {}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

/// Holds an [`Array`]'s lock; derefs to the slice.
pub struct ArrayGuard<'a, T: Pod> {
    _guard: LockGuard<'a>,
    data: NonNull<T>,
    len: usize,
}

impl<T: Pod> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `len` elements in the mapping (checked when opened); the
        // lock is held.
        unsafe { std::slice::from_raw_parts(self.data.as_ptr(), self.len) }
    }
}

impl<T: Pod> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as above, and `&mut self` makes this the only view.
        unsafe { std::slice::from_raw_parts_mut(self.data.as_ptr(), self.len) }
    }
}

const LOCK_LEN: u64 = std::mem::size_of::<Lock>() as u64;

impl<T: Pod> Array<T> {
    fn from_region(region: Region, want_len: Option<usize>) -> Result<Self, SegmentError> {
        check_region(&region.fields, KIND_ARRAY, type_desc::<T>(), LOCK_LEN)?;
        let len = region.fields.capacity;
        if let Some(want) = want_len {
            if want as u64 != len {
                return Err(SegmentError::LengthMismatch {
                    expected: want as u64,
                    found: len,
                });
            }
        }
        let bad = || SegmentError::Corrupted("array outside the mapping");
        let lock = region
            .seg
            .at::<Lock>(region.fields.control_offset, 1)
            .ok_or_else(bad)?;
        let data = region
            .seg
            .at::<T>(region.fields.slots_offset, len)
            .ok_or_else(bad)?;
        Ok(Array {
            region: std::sync::Arc::new(region),
            lock,
            data,
            len: usize::try_from(len).map_err(|_| bad())?,
        })
    }

    fn create_in(loc: Location, values: &[T], len: usize) -> Result<Self, SegmentError> {
        let fields = region_layout(KIND_ARRAY, type_desc::<T>(), len as u64, LOCK_LEN)?;
        let region = Region::create(loc, &SegmentOptions::default(), fields, |seg| {
            if let Some(l) = seg.at::<Lock>(fields.control_offset, 1) {
                // SAFETY: in bounds and aligned; unpublished segment.
                unsafe { l.as_ptr().write(Lock::new()) };
            }
            if let Some(d) = seg.at::<T>(fields.slots_offset, len as u64) {
                // SAFETY: `len >= values.len()` elements in bounds and
                // aligned; unpublished segment (zeroed: the rest stays 0).
                unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), d.as_ptr(), values.len()) };
            }
        })?;
        Self::from_region(region, Some(len))
    }

    /// Creates `/dev/shm/<name>` exclusively: `len` zeroed elements.
    pub fn create(name: &str, len: usize) -> Result<Self, SegmentError> {
        Self::create_in(Location::Named(name.to_string()), &[], len)
    }

    /// Creates `/dev/shm/<name>` exclusively, holding a copy of `values`.
    pub fn create_from(name: &str, values: &[T]) -> Result<Self, SegmentError> {
        Self::create_in(Location::Named(name.to_string()), values, values.len())
    }

    /// Creates an anonymous array of `len` zeroed elements (shared across `fork`).
    pub fn anonymous(len: usize) -> Result<Self, SegmentError> {
        Self::create_in(Location::Anonymous, &[], len)
    }

    /// Creates an anonymous array holding a copy of `values`.
    pub fn anonymous_from(values: &[T]) -> Result<Self, SegmentError> {
        Self::create_in(Location::Anonymous, values, values.len())
    }

    /// Opens `/dev/shm/<name>`, of any length.
    ///
    /// # Errors
    /// `NotFound`, `WrongKind`, `TypeMismatch`, `Corrupted`, ….
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        let region = Region::open(
            Some(Location::Named(name.to_string())),
            None,
            &SegmentOptions::default(),
        )?;
        Self::from_region(region, None)
    }

    /// Opens `/dev/shm/<name>`, checking its length.
    ///
    /// # Errors
    /// As for [`open`](Self::open), plus `LengthMismatch`.
    pub fn open_len(name: &str, len: usize) -> Result<Self, SegmentError> {
        let region = Region::open(
            Some(Location::Named(name.to_string())),
            None,
            &SegmentOptions::default(),
        )?;
        Self::from_region(region, Some(len))
    }

    /// Opens an anonymous array from an inherited memfd.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, SegmentError> {
        let region = Region::open(None, Some(fd), &SegmentOptions::default())?;
        Self::from_region(region, None)
    }

    /// Removes `/dev/shm/<name>`.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        crate::shm::segment::Segment::remove(&Location::Named(name.to_string()))
    }

    /// Keep the name after the creating handle is dropped.
    pub fn persist(&self) {
        self.region.seg.set_persist(true);
    }

    /// The raw memfd of an anonymous array.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.region.seg.raw_fd()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The array's lock (Python's `get_lock()`).
    pub fn get_lock(&self) -> &Lock {
        // SAFETY: in bounds and aligned (checked when mapped); a Lock is
        // valid for any bits and alive as long as `region`.
        unsafe { self.lock.as_ref() }
    }

    fn guard<'a>(&'a self, g: LockGuard<'a>) -> ArrayGuard<'a, T> {
        ArrayGuard {
            _guard: g,
            data: self.data,
            len: self.len,
        }
    }

    /// Takes the array's lock; the guard derefs to the slice.
    ///
    /// # Errors
    /// `OwnerDied(guard)`: a process died holding the lock.
    pub fn lock(&self) -> Result<ArrayGuard<'_, T>, OwnerDied<ArrayGuard<'_, T>>> {
        match self.get_lock().lock() {
            Ok(g) => Ok(self.guard(g)),
            Err(OwnerDied(g)) => Err(OwnerDied(self.guard(g))),
        }
    }

    /// Takes the lock without waiting.
    ///
    /// # Errors
    /// `WouldBlock`, `OwnerDied(guard)`.
    pub fn try_lock(&self) -> Result<ArrayGuard<'_, T>, TryLockError<ArrayGuard<'_, T>>> {
        match self.get_lock().try_lock() {
            Ok(g) => Ok(self.guard(g)),
            Err(TryLockError::WouldBlock) => Err(TryLockError::WouldBlock),
            Err(TryLockError::OwnerDied(g)) => Err(TryLockError::OwnerDied(self.guard(g))),
        }
    }

    /// Takes the lock, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `OwnerDied(guard)`.
    pub fn lock_timeout(
        &self,
        timeout: Duration,
    ) -> Result<ArrayGuard<'_, T>, LockTimeoutError<ArrayGuard<'_, T>>> {
        match self.get_lock().lock_timeout(timeout) {
            Ok(g) => Ok(self.guard(g)),
            Err(LockTimeoutError::Timeout) => Err(LockTimeoutError::Timeout),
            Err(LockTimeoutError::OwnerDied(g)) => Err(LockTimeoutError::OwnerDied(self.guard(g))),
        }
    }

    fn elem_ptr(&self, i: usize) -> *mut u8 {
        assert!(
            i < self.len,
            "index {i} out of bounds for an array of {}",
            self.len
        );
        // SAFETY: i < len, inside the mapping.
        unsafe { self.data.as_ptr().add(i) as *mut u8 }
    }

    /// Element `i` without the lock (see the module docs).
    ///
    /// # Panics
    /// If `i >= len()`, like slice indexing.
    pub fn load(&self, i: usize) -> T {
        let mut v = T::zeroed();
        // SAFETY: element i is in the mapping; others access it atomically
        // or under the lock.
        unsafe { racy_read(self.elem_ptr(i), bytemuck::bytes_of_mut(&mut v)) };
        v
    }

    /// Overwrites element `i` without the lock.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn store(&self, i: usize, value: T) {
        // SAFETY: as in `load`.
        unsafe { racy_write(self.elem_ptr(i), bytemuck::bytes_of(&value)) };
    }

    /// Copies the first `out.len()` elements without the lock.
    ///
    /// # Panics
    /// If `out` is longer than the array.
    pub fn read_into(&self, out: &mut [T]) {
        assert!(
            out.len() <= self.len,
            "read_into: {} > len {}",
            out.len(),
            self.len
        );
        // SAFETY: out.len() elements from the start lie in the mapping.
        unsafe {
            racy_read(
                self.data.as_ptr() as *const u8,
                bytemuck::cast_slice_mut(out),
            )
        };
    }

    /// Overwrites the first `values.len()` elements without the lock.
    ///
    /// # Panics
    /// If `values` is longer than the array.
    pub fn write_from(&self, values: &[T]) {
        assert!(
            values.len() <= self.len,
            "write_from: {} > len {}",
            values.len(),
            self.len
        );
        // SAFETY: as in `read_into`.
        unsafe { racy_write(self.data.as_ptr() as *mut u8, bytemuck::cast_slice(values)) };
    }

    /// Copies `out.len()` elements starting at `offset`, without the lock.
    ///
    /// # Panics
    /// If `offset + out.len()` is beyond the array.
    pub fn read_at(&self, offset: usize, out: &mut [T]) {
        let end = offset.checked_add(out.len());
        assert!(
            end.is_some_and(|e| e <= self.len),
            "read_at: {offset}+{} > len {}",
            out.len(),
            self.len
        );
        // SAFETY: elements offset..offset+out.len() lie in the mapping.
        unsafe {
            racy_read(
                self.data.as_ptr().add(offset) as *const u8,
                bytemuck::cast_slice_mut(out),
            )
        };
    }

    /// Overwrites `values.len()` elements starting at `offset`, without the
    /// lock (workers filling disjoint slices need no lock).
    ///
    /// # Panics
    /// If `offset + values.len()` is beyond the array.
    pub fn write_at(&self, offset: usize, values: &[T]) {
        let end = offset.checked_add(values.len());
        assert!(
            end.is_some_and(|e| e <= self.len),
            "write_at: {offset}+{} > len {}",
            values.len(),
            self.len
        );
        // SAFETY: as in `read_at`.
        unsafe {
            racy_write(
                self.data.as_ptr().add(offset) as *mut u8,
                bytemuck::cast_slice(values),
            )
        };
    }

    /// A copy of every element without the lock.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.read_into(&mut v);
        v
    }
}
