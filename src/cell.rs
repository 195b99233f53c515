//! Typed shared cells: [`Value<T>`] and [`Array<T>`], each with its own
//! [`Lock`] (Python's `Value('i', 0)`, `Array('d', n)` and `get_lock()`).
//!
//! # One access width per cell, and no references into shared memory
//!
//! Every access this module makes to a cell's bytes — locked or not, from
//! any handle in any process — is an **atomic access of the cell's unit
//! width**: the largest of 8, 4, 2 and 1 bytes that divides `size_of::<T>()`.
//! A `Value<i32>` is read, written,
//! added to and compared-and-swapped only as one 4-byte atomic, a
//! `Value<i64>` or an `Array<f64>` element only as 8-byte atomics, a
//! `Value<[u64; 3]>` as three 8-byte atomics. Nothing hands out a `&T`,
//! `&mut T` or slice into the shared bytes, so no safe code can make a
//! non-atomic access race with an atomic one, or two atomics of different
//! widths overlap (both undefined behaviour in Rust's memory model). A peer
//! process that writes the bytes some other way — a bug, or a hostile peer —
//! can make the values wrong, never make this process's accesses undefined.
//!
//! Three ways in:
//! - `lock()` gives a guard ([`ValueGuard`], [`ArrayGuard`]) that holds the
//!   cell's lock, across processes, and reads and writes through
//!   `get` / `set` / `update` (Python's `with v.get_lock(): v.value += 1`
//!   is `v.lock()?.update(|x| x + 1)`). The lock makes a guard's sequence
//!   of accesses exclusive with respect to **other lock holders**; the
//!   unlocked operations below do not take it.
//! - On integer `Value`s, atomic read-modify-writes (`fetch_add`,
//!   `compare_exchange`, `swap`, …) without the lock, at the value's own
//!   width.
//! - Unlocked copies (`load` / `store`, `read_into` / `write_from`, …) for
//!   callers who synchronise some other way. A `T` of one unit (every
//!   integer and float) is never torn; a larger `T` is copied unit by unit,
//!   so a racing writer can make a copy mix old and new units (torn), but
//!   never undefined behaviour.
//!
//! **Mixing locked and lock-free updates.** A guard's `update` on a `T` of
//! one unit is a compare-and-swap loop, so it loses no concurrent
//! `fetch_add` (or other atomic read-modify-write) made without the lock:
//! both may be used on one cell at once and every update counts
//! (`tests/cell_soundness.rs`). A guard's `get` then `set` is two accesses:
//! exclusive against other guards, but a lock-free update in between is
//! overwritten, as is any concurrent unlocked `store` (a blind write).

use crate::error::SegmentError;
use crate::error::{LockTimeoutError, OwnerDied, TryLockError};
use crate::shared::{
    check_region, region_layout, Region, Shared, SharedBuilder, ShmSafe, KIND_ARRAY,
};
use crate::shm::header::type_desc;
use crate::shm::segment::{Location, SegmentOptions};
use crate::sync::{Lock, LockGuard};
use bytemuck::Pod;
use std::cell::UnsafeCell;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// The width in bytes of every access to a `T` in a cell: the largest of
/// 8, 4, 2 and 1 that divides `size_of::<T>()` (0 for a zero-sized `T`,
/// which has no bytes to access).
///
/// It depends on the size only, so every handle of a cell (any process,
/// any type of that size) uses the same width. Every cell address is a
/// multiple of it: a `Value`'s `T` sits at an 8-aligned offset of an
/// 8-aligned [`ValueCell`] (a [`Lock`] is 8-aligned and a multiple of 8
/// long), and an `Array`'s element `i` at an 8-aligned base plus
/// `i * size_of::<T>()`, a multiple of the unit.
const fn unit_of<T>() -> usize {
    let size = std::mem::size_of::<T>();
    let lowest = size & size.wrapping_neg();
    if lowest > 8 {
        8
    } else {
        lowest
    }
}

/// Whether a `T` is exactly one unit (1, 2, 4 or 8 bytes): loaded and
/// stored whole, never torn, and updated with one compare-and-swap.
const fn is_one_unit<T>() -> bool {
    std::mem::size_of::<T>() != 0 && std::mem::size_of::<T>() == unit_of::<T>()
}

/// Copies `out.len()` values of `T` from shared memory at `src`, one
/// relaxed atomic load of [`unit_of::<T>`] bytes per unit.
///
/// # Safety
/// `src..src + out.len()` must lie in a live mapping, `src` must be aligned
/// to `unit_of::<T>()`, and every access this process makes to those bytes
/// meanwhile must be atomic of that same width (the invariant of this
/// module: nothing else in it touches a cell's bytes).
unsafe fn load_units<T: Pod>(src: *const T, out: &mut [T]) {
    if std::mem::size_of::<T>() == 0 {
        return;
    }
    let src = src as *const u8;
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(out);
    debug_assert!((src as usize).is_multiple_of(unit_of::<T>()));
    macro_rules! copy {
        ($atomic:ty, $int:ty) => {{
            const W: usize = std::mem::size_of::<$int>();
            for (i, chunk) in bytes.chunks_exact_mut(W).enumerate() {
                // SAFETY: in bounds and aligned to W (contract); $atomic
                // has $int's layout; all accesses to these bytes are W-wide
                // atomics (contract), so this load races with none.
                let a = unsafe { <$atomic>::from_ptr(src.add(i * W) as *mut $int) };
                // Relaxed: a copy; the cell's lock or the caller's own
                // synchronisation orders it (documented as such).
                chunk.copy_from_slice(&a.load(Ordering::Relaxed).to_ne_bytes());
            }
        }};
    }
    match unit_of::<T>() {
        8 => copy!(AtomicU64, u64),
        4 => copy!(AtomicU32, u32),
        2 => copy!(AtomicU16, u16),
        _ => copy!(AtomicU8, u8),
    }
}

/// Copies `values` into shared memory at `dst`, as [`load_units`] in
/// reverse: one relaxed atomic store per unit.
///
/// # Safety
/// As for [`load_units`], for `dst..dst + values.len()`.
unsafe fn store_units<T: Pod>(dst: *mut T, values: &[T]) {
    if std::mem::size_of::<T>() == 0 {
        return;
    }
    let dst = dst as *mut u8;
    let bytes: &[u8] = bytemuck::cast_slice(values);
    debug_assert!((dst as usize).is_multiple_of(unit_of::<T>()));
    macro_rules! copy {
        ($atomic:ty, $int:ty) => {{
            const W: usize = std::mem::size_of::<$int>();
            for (i, chunk) in bytes.chunks_exact(W).enumerate() {
                // SAFETY: as in `load_units`.
                let a = unsafe { <$atomic>::from_ptr(dst.add(i * W) as *mut $int) };
                let v = <$int>::from_ne_bytes(chunk.try_into().expect("one unit"));
                // Relaxed: as in `load_units`.
                a.store(v, Ordering::Relaxed);
            }
        }};
    }
    match unit_of::<T>() {
        8 => copy!(AtomicU64, u64),
        4 => copy!(AtomicU32, u32),
        2 => copy!(AtomicU16, u16),
        _ => copy!(AtomicU8, u8),
    }
}

/// Reads one `T`, as [`load_units`].
///
/// # Safety
/// As for [`load_units`], for one `T`.
unsafe fn load_one<T: Pod>(src: *const T) -> T {
    let mut v = T::zeroed();
    // SAFETY: the caller's contract, for one element.
    unsafe { load_units(src, std::slice::from_mut(&mut v)) };
    v
}

/// Replaces the `T` at `ptr` by `f(old)`; returns the new value.
///
/// A `T` of one unit is replaced by a compare-and-swap loop (`f` may run
/// more than once), so the update is atomic with respect to every other
/// atomic access, locked or not. A larger `T` is loaded, passed to `f` once
/// and stored unit by unit: only the caller's lock makes that exclusive.
///
/// # Safety
/// As for [`load_units`], for one `T`.
unsafe fn update_one<T: Pod>(ptr: *mut T, mut f: impl FnMut(T) -> T) -> T {
    if !is_one_unit::<T>() {
        // SAFETY: the caller's contract.
        let new = f(unsafe { load_one(ptr) });
        // SAFETY: the caller's contract.
        unsafe { store_units(ptr, std::slice::from_ref(&new)) };
        return new;
    }
    macro_rules! cas {
        ($atomic:ty, $int:ty) => {{
            // SAFETY: as in `load_units`: the T is exactly one $int, aligned.
            let a = unsafe { <$atomic>::from_ptr(ptr as *mut $int) };
            // Relaxed: only a first guess; the CAS below checks it.
            let mut cur = a.load(Ordering::Relaxed);
            loop {
                let new = f(bytemuck::pod_read_unaligned(&cur.to_ne_bytes()));
                let bits =
                    <$int>::from_ne_bytes(bytemuck::bytes_of(&new).try_into().expect("one unit"));
                // SeqCst on success: the same order as the lock-free
                // read-modify-writes (`fetch_add`, …), one total order of
                // every update of the cell. Relaxed on failure: the value
                // read is only the next guess.
                match a.compare_exchange_weak(cur, bits, Ordering::SeqCst, Ordering::Relaxed) {
                    Ok(_) => return new,
                    Err(now) => cur = now,
                }
            }
        }};
    }
    match std::mem::size_of::<T>() {
        8 => cas!(AtomicU64, u64),
        4 => cas!(AtomicU32, u32),
        2 => cas!(AtomicU16, u16),
        _ => cas!(AtomicU8, u8),
    }
}

/// The contents of a [`Value`] segment: its lock, then the value.
///
/// The value's bytes are only ever accessed by this module, through atomics
/// of the value's unit width (see [`Value`]); no reference to them is
/// ever made.
#[repr(C)]
pub struct ValueCell<T> {
    lock: Lock,
    value: UnsafeCell<T>,
}

// A `Lock` is 8-aligned and a multiple of 8 long, so the value after it is
// at an offset aligned to any unit (at most 8): see `unit_of`.
const _: () = assert!(std::mem::size_of::<Lock>().is_multiple_of(8));
const _: () = assert!(std::mem::align_of::<Lock>() >= 8);

// SAFETY: the value is only accessed through atomics of its unit width
// (`load_units` / `store_units` / `update_one` and the integer atomics), so
// shared access from many threads races only atomic with atomic of one
// width; T: Pod holds no pointers and any bits are valid.
unsafe impl<T: Pod> Sync for ValueCell<T> {}
// SAFETY: plain data.
unsafe impl<T: Pod> Send for ValueCell<T> {}
// SAFETY: repr(C) of a Lock and a Pod: no pointers, any bits valid.
unsafe impl<T: Pod> ShmSafe for ValueCell<T> {}

impl<T> ValueCell<T> {
    fn ptr(&self) -> *mut T {
        self.value.get()
    }
}

/// A `T` in shared memory with its own lock: Python's
/// `multiprocessing.Value`.
///
/// # Access paths, and why none hands out `&mut T`
///
/// Every access to the value — locked or not, from any handle in any
/// process — is an **atomic of the value's unit width**: the largest of 8,
/// 4, 2 and 1 bytes that divides `size_of::<T>()`. A `Value<i32>` is only
/// ever read, written, added to and compared-and-swapped as one 4-byte
/// atomic, a `Value<[u64; 3]>` as three 8-byte ones. No `&T` or `&mut T`
/// into the shared bytes is ever made, so no safe code can race a plain
/// access with an atomic one, or overlap atomics of two widths (both
/// undefined behaviour); a peer process writing the bytes some other way
/// can make the value wrong, never this process's accesses undefined.
///
/// - [`lock`](Self::lock) gives a [`ValueGuard`] that holds the value's
///   lock across processes and reads and writes through
///   [`get`](ValueGuard::get), [`set`](ValueGuard::set) and
///   [`update`](ValueGuard::update). Python's `with v.get_lock():
///   v.value += 1` is `v.lock()?.update(|x| x + 1)`. The lock makes a
///   guard's accesses exclusive with respect to other lock holders; the
///   unlocked operations below do not take it.
/// - Integer values have atomic read-modify-writes without the lock
///   ([`fetch_add`](Value::<i64>::fetch_add), `fetch_sub`, `swap`,
///   `compare_exchange`, `fetch_max`, `fetch_min`).
/// - [`load`](Self::load) and [`store`](Self::store) copy without the lock:
///   never torn for a `T` of one unit (every integer and float); a larger
///   `T` is copied unit by unit and may be torn by a racing writer.
///
/// **Mixing them on one value.** A guard's `update` on a one-unit `T` is a
/// compare-and-swap loop, so it and a concurrent lock-free `fetch_add` never
/// lose each other's updates: both may be used at once and every update
/// counts. A guard's `get` then `set` is two accesses: exclusive against
/// other guards, but a lock-free update in between is overwritten, as is
/// (or overwrites) any unlocked `store`, a blind write.
///
/// # Examples
/// ```
/// use shmring::Value;
/// let counter = Value::<i64>::anonymous(0)?; // shared with forked children
/// // Python's `with counter.get_lock(): counter.value += 1`:
/// counter.lock().unwrap_or_else(|died| died.into_inner()).update(|x| x + 1);
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

/// Holds a [`Value`]'s lock; reads and writes the value with
/// [`get`](Self::get), [`set`](Self::set) and [`update`](Self::update).
///
/// The guard gives no `&mut T` into shared memory: the unlocked operations
/// of other handles (`fetch_add`, `store`, `load`) do not wait for the
/// lock, and a reference would let a plain access race with them. Every
/// access goes through atomics of the value's width instead.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T: Pod> {
    _guard: LockGuard<'a>,
    cell: &'a ValueCell<T>,
}

impl<T: Pod> ValueGuard<'_, T> {
    /// The value. Consistent with every other lock holder's writes; a `T`
    /// of one unit (any integer or float) is also never torn by an
    /// unlocked `store`.
    pub fn get(&self) -> T {
        self._guard.assert_same_process();
        // SAFETY: the cell lies in the mapping, aligned to the unit (see
        // `unit_of`), kept alive by the borrowed handle; every access to it
        // is a unit-wide atomic (module invariant).
        unsafe { load_one(self.cell.ptr()) }
    }

    /// Overwrites the value.
    pub fn set(&self, value: T) {
        self._guard.assert_same_process();
        // SAFETY: as in `get`.
        unsafe { store_units(self.cell.ptr(), std::slice::from_ref(&value)) }
    }

    /// Replaces the value by `f(value)` and returns the new value: the
    /// read-modify-write of Python's `with v.get_lock(): v.value += 1`.
    ///
    /// Exclusive with respect to other lock holders. For a `T` of one unit
    /// (every integer and float) it is also one compare-and-swap loop, so a
    /// concurrent lock-free `fetch_add` (or `swap`, `compare_exchange`, …)
    /// from another handle is never lost; `f` may then run more than once,
    /// so it should be a pure function of its argument. The loop is
    /// lock-free, not wait-free: while others keep changing the value
    /// without the lock (`fetch_add` in a tight loop, or a peer writing the
    /// bytes) it retries, and it finishes once they pause.
    pub fn update(&self, f: impl FnMut(T) -> T) -> T {
        self._guard.assert_same_process();
        // SAFETY: as in `get`.
        unsafe { update_one(self.cell.ptr(), f) }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ValueGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ValueGuard").field(&self.get()).finish()
    }
}

impl<T: Pod> Value<T> {
    fn cell(value: T) -> ValueCell<T> {
        ValueCell {
            lock: Lock::new(),
            value: UnsafeCell::new(value),
        }
    }

    /// A builder: permissions, persistence, how long to wait for a
    /// creator, where the segment lives.
    pub fn builder() -> ValueBuilder<T> {
        ValueBuilder {
            opts: SegmentOptions::default(),
            _t: PhantomData,
        }
    }

    /// Creates `/dev/shm/<name>` exclusively, holding `value`.
    ///
    /// The name stays until it is removed ([`unlink`](Self::unlink),
    /// `shmring rm`), after this handle and every process are gone; see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// As for [`Shared::create`].
    pub fn create(name: &str, value: T) -> Result<Self, SegmentError> {
        Self::builder().create(name, value)
    }

    /// Creates an anonymous value (a memfd shared across `fork`): it has
    /// no name, and goes with the last mapping.
    pub fn anonymous(value: T) -> Result<Self, SegmentError> {
        Self::builder().create_anonymous(value)
    }

    /// Opens `/dev/shm/<name>`, checking that it holds a `Value<T>`.
    ///
    /// Opening never removes the name: it stays until it is removed
    /// ([`unlink`](Self::unlink), `shmring rm`); see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// As for [`Shared::open`]: `TypeMismatch` names both types.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::builder().open(name)
    }

    /// Opens `/dev/shm/<name>`, or creates it holding `value`: of several
    /// processes racing here, exactly one creates it and all get the same
    /// value. See [`ValueBuilder::open_or_create`].
    ///
    /// The name stays until it is removed ([`unlink`](Self::unlink),
    /// `shmring rm`), whoever created it; see
    /// [names](crate#names-who-removes-them).
    pub fn open_or_create(name: &str, value: T) -> Result<Self, SegmentError> {
        Self::builder().open_or_create(name, value)
    }

    /// Opens an anonymous value from an inherited memfd.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, SegmentError> {
        Self::builder().from_fd(fd)
    }

    /// Removes `/dev/shm/<name>`. Handles already mapped keep working on
    /// the old value; the next `open` finds nothing (`NotFound`), the next
    /// `open_or_create` a new value.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        Shared::<ValueCell<T>>::unlink(name)
    }

    /// Keeps the name after all when this (creating) handle is dropped:
    /// undoes [`ValueBuilder::persist`]`(false)`. Names stay by default.
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
            cell: &self.shared,
        }
    }

    /// The value's lock (Python's `get_lock()`), to hold across several
    /// operations or to use with a [`Condition`](crate::Condition).
    pub fn get_lock(&self) -> &Lock {
        &self.shared.lock
    }

    /// Takes the value's lock; the guard reads and writes the value.
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

    /// A copy of the value without the lock: never torn for a `T` of one
    /// unit (any integer or float); a larger `T` may be torn by a racing
    /// writer (see [`Value`]).
    pub fn load(&self) -> T {
        // SAFETY: the value lies in the mapping, aligned to its unit, alive
        // while `self` is; every access to it is a unit-wide atomic (module
        // invariant).
        unsafe { load_one(self.shared.ptr()) }
    }

    /// Overwrites the value without the lock (see [`Value`]): a blind
    /// write, which a lock holder's `get` then `set` can overwrite and
    /// which can overwrite theirs.
    pub fn store(&self, value: T) {
        // SAFETY: as in `load`.
        unsafe { store_units(self.shared.ptr(), std::slice::from_ref(&value)) }
    }
}

/// Builds or opens a [`Value`]: permissions, persistence, how long to
/// wait for a creator, and where the segment lives (a name, a file path,
/// or an anonymous memfd).
///
/// # Examples
/// ```
/// use shmring::Value;
/// // Every process runs this line, in any order: one creates, all share.
/// let hits = Value::<u64>::builder()
///     .mode(0o600)
///     .open_or_create("shmring-doc-value-builder", 0)?;
/// hits.fetch_add(1);
/// Value::<u64>::unlink("shmring-doc-value-builder")?; // names stay until removed
/// # Ok::<(), shmring::SegmentError>(())
/// ```
#[derive(Debug)]
pub struct ValueBuilder<T> {
    opts: SegmentOptions,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> ValueBuilder<T> {
    fn shared_builder(&self) -> SharedBuilder<ValueCell<T>> {
        SharedBuilder::with_options(self.opts.clone())
    }

    crate::shm::segment::segment_option_setters!();

    /// Creates `/dev/shm/<name>` exclusively, holding `value`.
    ///
    /// The name stays until it is removed ([`Value::unlink`], `shmring
    /// rm`), or, with [`persist(false)`](Self::persist), until the created
    /// handle is dropped; see [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `AlreadyExists`, `InvalidArgument` (a bad name), `PermissionDenied`,
    /// `NoSpace`, `Io`.
    pub fn create(self, name: &str, value: T) -> Result<Value<T>, SegmentError> {
        Ok(Value {
            shared: self.shared_builder().create(name, Value::cell(value))?,
        })
    }

    /// Creates a segment at a file path exclusively (symlinks refused),
    /// holding `value`.
    ///
    /// The file stays until it is removed (`std::fs::remove_file`), or,
    /// with [`persist(false)`](Self::persist), until the created handle is
    /// dropped; see [names](crate#names-who-removes-them).
    pub fn create_at(self, path: impl AsRef<Path>, value: T) -> Result<Value<T>, SegmentError> {
        Ok(Value {
            shared: self.shared_builder().create_at(path, Value::cell(value))?,
        })
    }

    /// Creates an anonymous value (a sealed memfd shared across `fork`):
    /// no name to remove; it goes with the last mapping.
    pub fn create_anonymous(self, value: T) -> Result<Value<T>, SegmentError> {
        Ok(Value {
            shared: self.shared_builder().create_anonymous(Value::cell(value))?,
        })
    }

    /// Opens `/dev/shm/<name>`, checking that it holds a `Value<T>`.
    ///
    /// Opening never removes the name: it stays until it is removed
    /// ([`Value::unlink`], `shmring rm`); see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `NotFound`, `WrongKind`, `TypeMismatch` (naming both types),
    /// `VersionMismatch`, `SizeMismatch`, `NotInitialized`, `Corrupted`,
    /// `PermissionDenied`, `Untrusted`.
    pub fn open(self, name: &str) -> Result<Value<T>, SegmentError> {
        Ok(Value {
            shared: self.shared_builder().open(name)?,
        })
    }

    /// Opens a segment at a file path, as [`open`](Self::open).
    ///
    /// Opening never removes the file: it stays until it is removed
    /// (`std::fs::remove_file`); see [names](crate#names-who-removes-them).
    pub fn open_at(self, path: impl AsRef<Path>) -> Result<Value<T>, SegmentError> {
        Ok(Value {
            shared: self.shared_builder().open_at(path)?,
        })
    }

    /// Opens an anonymous value from an inherited memfd.
    pub fn from_fd(self, fd: OwnedFd) -> Result<Value<T>, SegmentError> {
        Ok(Value {
            shared: self.shared_builder().from_fd(fd)?,
        })
    }

    /// Opens `/dev/shm/<name>` if it exists (checking its type), otherwise
    /// creates it holding `value`. Of several processes racing here,
    /// exactly one creates the segment (creation is exclusive) and every
    /// one gets that segment: the others open it, waiting up to
    /// [`init_timeout`](Self::init_timeout) for the creator to finish.
    ///
    /// The name stays until it is removed ([`Value::unlink`], `shmring
    /// rm`), or, with [`persist(false)`](Self::persist), until the handle
    /// of whichever process created it is dropped; see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// As for [`create`](Self::create) and [`open`](Self::open) (an
    /// existing segment of another type is `TypeMismatch`, never replaced).
    pub fn open_or_create(self, name: &str, value: T) -> Result<Value<T>, SegmentError> {
        Ok(Value {
            shared: self
                .shared_builder()
                .open_or_create(name, || Value::cell(value))?,
        })
    }
}

macro_rules! atomic_value {
    ($($t:ty => $atomic:ty),* $(,)?) => { $(
        impl Value<$t> {
            fn atomic(&self) -> &$atomic {
                // SAFETY: the value is one unit (its size is 1, 2, 4 or 8)
                // and so aligned to it inside the repr(C) cell (see
                // `unit_of`), mapped while `self` lives, and every other
                // access to it is an atomic of this same width (module
                // invariant): `load_units`/`store_units`/`update_one` use
                // the unsigned atomic of `size_of::<$t>()` bytes.
                unsafe { <$atomic>::from_ptr(self.shared.ptr()) }
            }

            /// Adds atomically without the lock; returns the previous value
            /// (wrapping on overflow). Never lost against a lock holder's
            /// [`update`](ValueGuard::update).
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
                // SeqCst (both): as for fetch_add; the failure load is the
                // value the caller retries from.
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

            /// An atomic read in the total order of the read-modify-writes
            /// ([`load`](Self::load) is never torn either, but relaxed).
            pub fn load_atomic(&self) -> $t {
                // SeqCst: as for fetch_add.
                self.atomic().load(Ordering::SeqCst)
            }
        }
    )* };
}
atomic_value!(
    i8 => std::sync::atomic::AtomicI8,
    u8 => std::sync::atomic::AtomicU8,
    i16 => std::sync::atomic::AtomicI16,
    u16 => std::sync::atomic::AtomicU16,
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
/// Every access to an element is an atomic of the element's unit width, as
/// for a [`Value`] (see there: the same access paths, less the integer
/// read-modify-writes); neither the array nor its [`ArrayGuard`] hands out
/// a slice of the shared bytes. Read the whole with
/// [`to_vec`](Self::to_vec) or [`read_into`](Self::read_into), which copy;
/// a one-unit element (any integer or float) is never torn. Workers filling
/// disjoint parts need no lock; a read-modify-write of an element needs the
/// guard's [`update`](ArrayGuard::update).
///
/// # Examples
/// ```
/// use shmring::Array;
/// let a = Array::<f64>::anonymous_from(&[1.0, 2.0, 3.0])?;
/// a.lock().unwrap_or_else(|died| died.into_inner()).set(1, 5.0);
/// assert_eq!(a.to_vec(), vec![1.0, 5.0, 3.0]);
/// # Ok::<(), shmring::SegmentError>(())
/// ```
pub struct Array<T: Pod> {
    region: std::sync::Arc<Region>,
    lock: NonNull<Lock>,
    /// `len` elements in the mapping, aligned to `unit_of::<T>()` (checked
    /// when mapped); only ever accessed through unit-wide atomics.
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
// is only accessed through unit-wide atomics; T: Pod is plain data.
unsafe impl<T: Pod> Send for Array<T> {}
// SAFETY: as above: shared access races only atomic with atomic of one
// width.
unsafe impl<T: Pod> Sync for Array<T> {}

impl<T: Pod> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Array")
            .field("type", &std::any::type_name::<T>())
            .field("len", &self.len)
            .finish()
    }
}

/// Builds or opens an [`Array`]: permissions, persistence, how long to
/// wait for a creator, and where the segment lives (a name, a file path,
/// or an anonymous memfd). The length is given when creating, and checked
/// when asked (`open_len`, `open_or_create`).
///
/// # Examples
/// ```
/// use shmring::Array;
/// // Every process runs this line, in any order: one creates, all share.
/// let bins = Array::<u64>::builder().open_or_create("shmring-doc-array-builder", 16)?;
/// bins.lock().unwrap_or_else(|died| died.into_inner()).update(3, |n| n + 1);
/// assert_eq!(bins.len(), 16);
/// Array::<u64>::unlink("shmring-doc-array-builder")?; // names stay until removed
/// # Ok::<(), shmring::SegmentError>(())
/// ```
#[derive(Debug)]
pub struct ArrayBuilder<T> {
    opts: SegmentOptions,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> ArrayBuilder<T> {
    crate::shm::segment::segment_option_setters!();

    /// Creates `/dev/shm/<name>` exclusively: `len` zeroed elements.
    ///
    /// The name stays until it is removed ([`Array::unlink`], `shmring
    /// rm`), or, with [`persist(false)`](Self::persist), until the created
    /// handle is dropped; see [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `AlreadyExists`, `InvalidArgument` (a bad name, a length whose size
    /// overflows), `PermissionDenied`, `NoSpace`, `Io`.
    pub fn create(self, name: &str, len: usize) -> Result<Array<T>, SegmentError> {
        Array::create_in(Location::Named(name.to_string()), &self.opts, &[], len)
    }

    /// Creates `/dev/shm/<name>` exclusively, holding a copy of `values`.
    ///
    /// The name stays until it is removed ([`Array::unlink`], `shmring
    /// rm`), or, with [`persist(false)`](Self::persist), until the created
    /// handle is dropped; see [names](crate#names-who-removes-them).
    pub fn create_from(self, name: &str, values: &[T]) -> Result<Array<T>, SegmentError> {
        Array::create_in(
            Location::Named(name.to_string()),
            &self.opts,
            values,
            values.len(),
        )
    }

    /// Creates a segment at a file path exclusively (symlinks refused):
    /// `len` zeroed elements.
    ///
    /// The file stays until it is removed (`std::fs::remove_file`), or,
    /// with [`persist(false)`](Self::persist), until the created handle is
    /// dropped; see [names](crate#names-who-removes-them).
    pub fn create_at(self, path: impl AsRef<Path>, len: usize) -> Result<Array<T>, SegmentError> {
        Array::create_in(
            Location::Path(path.as_ref().to_path_buf()),
            &self.opts,
            &[],
            len,
        )
    }

    /// Creates an anonymous array of `len` zeroed elements (a sealed memfd
    /// shared across `fork`): no name to remove; it goes with the last
    /// mapping.
    pub fn create_anonymous(self, len: usize) -> Result<Array<T>, SegmentError> {
        Array::create_in(Location::Anonymous, &self.opts, &[], len)
    }

    /// Creates an anonymous array holding a copy of `values`.
    pub fn create_anonymous_from(self, values: &[T]) -> Result<Array<T>, SegmentError> {
        Array::create_in(Location::Anonymous, &self.opts, values, values.len())
    }

    fn open_location(&self, loc: Location, len: Option<usize>) -> Result<Array<T>, SegmentError> {
        let region = Region::open(Some(loc), None, &self.opts)?;
        Array::from_region(region, len)
    }

    /// Opens `/dev/shm/<name>`, of any length.
    ///
    /// Opening never removes the name: it stays until it is removed
    /// ([`Array::unlink`], `shmring rm`); see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `NotFound`, `WrongKind`, `TypeMismatch` (naming both types),
    /// `VersionMismatch`, `SizeMismatch`, `NotInitialized`, `Corrupted`,
    /// `PermissionDenied`, `Untrusted`.
    pub fn open(self, name: &str) -> Result<Array<T>, SegmentError> {
        self.open_location(Location::Named(name.to_string()), None)
    }

    /// Opens `/dev/shm/<name>`, checking that it has `len` elements, as
    /// [`open`](Self::open).
    ///
    /// Opening never removes the name: it stays until it is removed
    /// ([`Array::unlink`], `shmring rm`); see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// As for [`open`](Self::open), plus `LengthMismatch`.
    pub fn open_len(self, name: &str, len: usize) -> Result<Array<T>, SegmentError> {
        self.open_location(Location::Named(name.to_string()), Some(len))
    }

    /// Opens a segment at a file path, of any length, as
    /// [`open`](Self::open).
    ///
    /// Opening never removes the file: it stays until it is removed
    /// (`std::fs::remove_file`); see [names](crate#names-who-removes-them).
    pub fn open_at(self, path: impl AsRef<Path>) -> Result<Array<T>, SegmentError> {
        self.open_location(Location::Path(path.as_ref().to_path_buf()), None)
    }

    /// Opens an anonymous array from an inherited memfd.
    pub fn from_fd(self, fd: OwnedFd) -> Result<Array<T>, SegmentError> {
        let region = Region::open(None, Some(fd), &self.opts)?;
        Array::from_region(region, None)
    }

    /// Opens `/dev/shm/<name>` if it exists, checking its type and that it
    /// has `len` elements, otherwise creates it with `len` zeroed elements.
    /// Of several processes racing here, exactly one creates the segment
    /// (creation is exclusive) and every one gets that segment: the others
    /// open it, waiting up to [`init_timeout`](Self::init_timeout) for the
    /// creator to finish.
    ///
    /// The name stays until it is removed ([`Array::unlink`], `shmring
    /// rm`), or, with [`persist(false)`](Self::persist), until the handle
    /// of whichever process created it is dropped; see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `LengthMismatch { expected: len, found }` for an existing array of
    /// another length (never resized or replaced), and as for
    /// [`create`](Self::create) and [`open`](Self::open).
    pub fn open_or_create(self, name: &str, len: usize) -> Result<Array<T>, SegmentError> {
        let loc = || Location::Named(name.to_string());
        let mut last = None;
        // A name removed between our failed create and our open (unlinked
        // by someone else) is created again: a bounded number of times.
        for _ in 0..8 {
            match Array::create_in(loc(), &self.opts, &[], len) {
                Err(SegmentError::AlreadyExists(_)) => {}
                other => return other,
            }
            match self.open_location(loc(), Some(len)) {
                Err(SegmentError::NotFound(n)) => last = Some(SegmentError::NotFound(n)),
                other => return other,
            }
        }
        Err(last.unwrap_or(SegmentError::NotInitialized))
    }
}

/// Holds an [`Array`]'s lock; reads and writes elements with
/// [`get`](Self::get), [`set`](Self::set), [`update`](Self::update) and the
/// slice copies.
///
/// The guard gives no slice of the shared bytes: the array's unlocked
/// operations (`store`, `write_at`, …, from any handle) do not wait for the
/// lock, and a reference would let a plain access race with them.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ArrayGuard<'a, T: Pod> {
    _guard: LockGuard<'a>,
    array: &'a Array<T>,
}

impl<T: Pod> ArrayGuard<'_, T> {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.array.len
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.array.len == 0
    }

    /// Element `i`.
    ///
    /// # Panics
    /// If `i >= len()`, like slice indexing.
    pub fn get(&self, i: usize) -> T {
        self._guard.assert_same_process();
        self.array.load(i)
    }

    /// Overwrites element `i`.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn set(&self, i: usize, value: T) {
        self._guard.assert_same_process();
        self.array.store(i, value)
    }

    /// Replaces element `i` by `f(element)` and returns the new value, as
    /// [`ValueGuard::update`] (a compare-and-swap loop for a `T` of one
    /// unit).
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn update(&self, i: usize, f: impl FnMut(T) -> T) -> T {
        self._guard.assert_same_process();
        let p = self.array.elem_ptr(i);
        // SAFETY: element i lies in the mapping, aligned to its unit; every
        // access to it is a unit-wide atomic (module invariant).
        unsafe { update_one(p, f) }
    }

    /// Copies `out.len()` elements starting at `offset`.
    ///
    /// # Panics
    /// If `offset + out.len()` is beyond the array.
    pub fn read_at(&self, offset: usize, out: &mut [T]) {
        self._guard.assert_same_process();
        self.array.read_at(offset, out)
    }

    /// Overwrites `values.len()` elements starting at `offset`.
    ///
    /// # Panics
    /// If `offset + values.len()` is beyond the array.
    pub fn write_at(&self, offset: usize, values: &[T]) {
        self._guard.assert_same_process();
        self.array.write_at(offset, values)
    }

    /// A copy of every element, consistent with every other lock holder's
    /// writes.
    pub fn to_vec(&self) -> Vec<T> {
        self._guard.assert_same_process();
        self.array.to_vec()
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for ArrayGuard<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ArrayGuard").field(&self.to_vec()).finish()
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
        // Every element's address is then a multiple of the unit too
        // (`unit_of` divides the element size); the offset is this build's
        // own derivation, so this never fails, but the atomics need it.
        if !(data.as_ptr() as usize).is_multiple_of(unit_of::<T>().max(1)) {
            return Err(SegmentError::Corrupted("array elements misaligned"));
        }
        Ok(Array {
            region: std::sync::Arc::new(region),
            lock,
            data,
            len: usize::try_from(len).map_err(|_| bad())?,
        })
    }

    fn create_in(
        loc: Location,
        opts: &SegmentOptions,
        values: &[T],
        len: usize,
    ) -> Result<Self, SegmentError> {
        let fields = region_layout(KIND_ARRAY, type_desc::<T>(), len as u64, LOCK_LEN)?;
        let region = Region::create(loc, opts, fields, |seg| {
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

    /// A builder: permissions, persistence, how long to wait for a
    /// creator, where the segment lives.
    pub fn builder() -> ArrayBuilder<T> {
        ArrayBuilder {
            opts: SegmentOptions::default(),
            _t: PhantomData,
        }
    }

    /// Creates `/dev/shm/<name>` exclusively: `len` zeroed elements.
    ///
    /// The name stays until it is removed ([`unlink`](Self::unlink),
    /// `shmring rm`), after this handle and every process are gone; see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// As for [`ArrayBuilder::create`].
    pub fn create(name: &str, len: usize) -> Result<Self, SegmentError> {
        Self::builder().create(name, len)
    }

    /// Creates `/dev/shm/<name>` exclusively, holding a copy of `values`.
    ///
    /// The name stays until it is removed ([`unlink`](Self::unlink),
    /// `shmring rm`); see [names](crate#names-who-removes-them).
    pub fn create_from(name: &str, values: &[T]) -> Result<Self, SegmentError> {
        Self::builder().create_from(name, values)
    }

    /// Creates an anonymous array of `len` zeroed elements (shared across
    /// `fork`): no name; it goes with the last mapping.
    pub fn anonymous(len: usize) -> Result<Self, SegmentError> {
        Self::builder().create_anonymous(len)
    }

    /// Creates an anonymous array holding a copy of `values`.
    pub fn anonymous_from(values: &[T]) -> Result<Self, SegmentError> {
        Self::builder().create_anonymous_from(values)
    }

    /// Opens `/dev/shm/<name>`, of any length.
    ///
    /// Opening never removes the name: it stays until it is removed
    /// ([`unlink`](Self::unlink), `shmring rm`); see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `NotFound`, `WrongKind`, `TypeMismatch`, `Corrupted`, ….
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::builder().open(name)
    }

    /// Opens `/dev/shm/<name>`, checking its length, as [`open`](Self::open).
    ///
    /// Opening never removes the name: it stays until it is removed
    /// ([`unlink`](Self::unlink), `shmring rm`); see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// As for [`open`](Self::open), plus `LengthMismatch`.
    pub fn open_len(name: &str, len: usize) -> Result<Self, SegmentError> {
        Self::builder().open_len(name, len)
    }

    /// Opens `/dev/shm/<name>` (checking that it has `len` elements), or
    /// creates it with `len` zeroed elements: of several processes racing
    /// here, exactly one creates it and all get the same array. See
    /// [`ArrayBuilder::open_or_create`].
    ///
    /// The name stays until it is removed ([`unlink`](Self::unlink),
    /// `shmring rm`), whoever created it; see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `LengthMismatch` for an existing array of another length, and as
    /// for [`create`](Self::create) and [`open`](Self::open).
    pub fn open_or_create(name: &str, len: usize) -> Result<Self, SegmentError> {
        Self::builder().open_or_create(name, len)
    }

    /// Opens an anonymous array from an inherited memfd.
    pub fn from_fd(fd: OwnedFd) -> Result<Self, SegmentError> {
        Self::builder().from_fd(fd)
    }

    /// Removes `/dev/shm/<name>`. Handles already mapped keep working on
    /// the old array; the next `open` finds nothing (`NotFound`), the next
    /// `open_or_create` a new array.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        crate::shm::segment::Segment::remove(&Location::Named(name.to_string()))
    }

    /// Keeps the name after all when this (creating) handle is dropped:
    /// undoes [`ArrayBuilder::persist`]`(false)`. Names stay by default.
    pub fn persist(&self) {
        self.region.seg.set_persist(true);
    }

    /// The segment's file path, if named.
    pub fn path(&self) -> Option<PathBuf> {
        self.region.seg.path()
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
        // The lock judges owners by pid: not from another pid namespace.
        self.region.seg.assert_pid_namespace();
        // SAFETY: in bounds and aligned (checked when mapped); a Lock is
        // valid for any bits and alive as long as `region`.
        unsafe { self.lock.as_ref() }
    }

    fn guard<'a>(&'a self, g: LockGuard<'a>) -> ArrayGuard<'a, T> {
        ArrayGuard {
            _guard: g,
            array: self,
        }
    }

    /// Takes the array's lock; the guard reads and writes the elements.
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

    fn elem_ptr(&self, i: usize) -> *mut T {
        assert!(
            i < self.len,
            "index {i} out of bounds for an array of {}",
            self.len
        );
        // SAFETY: i < len, inside the mapping.
        unsafe { self.data.as_ptr().add(i) }
    }

    /// Element `i` without the lock: never torn for a `T` of one unit (any
    /// integer or float); see [`Array`].
    ///
    /// # Panics
    /// If `i >= len()`, like slice indexing.
    pub fn load(&self, i: usize) -> T {
        let p = self.elem_ptr(i);
        // SAFETY: element i lies in the mapping (kept alive by `region`),
        // aligned to its unit; every access to it is a unit-wide atomic
        // (module invariant).
        unsafe { load_one(p) }
    }

    /// Overwrites element `i` without the lock.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn store(&self, i: usize, value: T) {
        let p = self.elem_ptr(i);
        // SAFETY: as in `load`.
        unsafe { store_units(p, std::slice::from_ref(&value)) };
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
        // SAFETY: out.len() elements from the start lie in the mapping,
        // aligned to their unit; every access to them is a unit-wide atomic
        // (module invariant).
        unsafe { load_units(self.data.as_ptr(), out) };
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
        unsafe { store_units(self.data.as_ptr(), values) };
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
        // SAFETY: elements offset..offset+out.len() lie in the mapping,
        // aligned to their unit; every access to them is a unit-wide atomic
        // (module invariant).
        unsafe { load_units(self.data.as_ptr().add(offset), out) };
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
        unsafe { store_units(self.data.as_ptr().add(offset), values) };
    }

    /// A copy of every element without the lock.
    pub fn to_vec(&self) -> Vec<T> {
        let mut v = vec![T::zeroed(); self.len];
        self.read_into(&mut v);
        v
    }
}
