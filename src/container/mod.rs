//! Shared containers: [`SharedMap`] (byte keys to byte values) and
//! [`SharedList`] (byte values), with typed faces over serde values
//! ([`TypedMap`], [`TypedList`], feature `serde`): Python's `Manager().dict()`
//! and `Manager().list()` without a server process.
//!
//! # Layout
//! A container is one file: the header, a control block (the writer
//! [`Lock`], the seqlock word, the published root, a redo record), then
//! regions. One region is live at a time: an index (the map's hash table,
//! or the list's two position arrays) followed by an arena of immutable
//! records (`hash`, lengths, key, value, padded to words). The root names
//! the live region and everything needed to read it.
//!
//! # Writers
//! Writers take the lock, write new records above the arena's top (space
//! no root names, so nobody reads it), then publish with one commit: a
//! handful of word stores (the index entry, the top, the count), written
//! first to the redo record, then applied inside the seqlock's odd window.
//! A writer killed at any instruction leaves either no complete record
//! (the container is as before; what it wrote above the top is garbage the
//! next writer overwrites) or a complete one, which the next lock holder
//! applies again (after). The lock is robust (its next taker learns of the
//! death), so the next user always repairs first.
//!
//! # Growth
//! When the table is too full or the arena has no room, the writer builds
//! a new region elsewhere in the file (the file grows if needed), copies
//! the live records into it (compacting the garbage of replaced and
//! removed entries), and publishes the new root in one commit: the
//! generation number goes up, and every process follows on its next
//! operation. The old region's memory is then released. Readers are not
//! blocked meanwhile: the old region stays intact until the commit.
//!
//! # Readers
//! Readers take no lock: they read the root and what it names with atomic
//! word loads, and keep the result only if the seqlock did not move (see
//! `engine::read`); after a few dozen collisions with writers they read
//! under the lock instead, so a stream of writers cannot starve them.

pub mod engine;
mod heap;
mod list;
mod map;
#[cfg(feature = "serde")]
mod typed;

pub use list::{SharedList, SharedListBuilder};
pub use map::{MapEntry, SharedMap, SharedMapBuilder};
#[cfg(feature = "serde")]
pub use typed::{TypedList, TypedListBuilder, TypedMap, TypedMapBuilder};

use crate::error::{ContainerError, OwnerDied, SegmentError};
use crate::shm::header::{Fnv, HeaderFields, HEADER_LEN};
use crate::shm::segment::{Location, Segment, SegmentOptions};
use crate::sync::{owner, Lock, LockGuard};
use crate::types::{Kind, TypeDesc, TypeName};
use engine::{Corrupt, Ctl, Overlay, Root};
use heap::Heap;
use std::ptr::NonNull;
use std::sync::Arc;

impl From<Corrupt> for ContainerError {
    fn from(c: Corrupt) -> Self {
        ContainerError::Corrupted(c.0)
    }
}

/// Pages: regions start on them, so releasing one frees whole pages.
pub(crate) const PAGE: u64 = 4096;

/// The writer lock's offset: the control block's start.
const LOCK_AT: u64 = HEADER_LEN;

/// The control words' offset (after the lock).
const CTL_AT: u64 = LOCK_AT + (std::mem::size_of::<Lock>() as u64).next_multiple_of(8);

/// The first region's offset, and the header's `total_len`.
const DATA_START: u64 = (CTL_AT + Ctl::LEN).next_multiple_of(PAGE);

// The layout docs/design.md draws ("Shared containers").
const _: () = assert!(CTL_AT == 272 && CTL_AT + Ctl::LEN == 624 && DATA_START == 4096);

/// The file offset of the root's entry count (for `inspect`).
pub(crate) const COUNT_AT: u64 = CTL_AT + 8 * (1 + engine::root::LEN as u64);

/// The largest limit a container accepts (addresses reserved per handle).
const MAX_LIMIT: u64 = 1 << 40;

/// The type a byte container records in its header.
pub(crate) fn bytes_desc() -> TypeDesc {
    named_desc("bytes", &["bytes"])
}

/// A type description for the header from names (the serde types of a
/// typed face): size 0, a fingerprint of the names without their module
/// paths (see [`bare_type_name`]).
pub(crate) fn named_desc(shown: &str, names: &[&str]) -> TypeDesc {
    let mut h = Fnv::new();
    for n in names {
        h.bytes(bare_type_name(n).as_bytes());
        h.bytes(&[0]);
    }
    TypeDesc {
        size: 0,
        align: 1,
        fingerprint: h.finish(),
        name: TypeName::new(&bare_type_name(shown)),
    }
}

/// A type's name without module paths: `alloc::string::String` is
/// `String`, `core::option::Option<app::Py>` is `Option<Py>`. Separate
/// programs that each declare the same `Py` (a serde type: its encoding is
/// what must agree, not where it is declared) then open each other's typed
/// containers; two types of one name but different encodings would not be
/// told apart, which decoding then reports (`Decode`).
pub(crate) fn bare_type_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut word = 0; // where the current path segment starts in `out`
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(word);
        } else {
            out.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                word = out.len();
            }
        }
    }
    out
}

fn header_fields(kind: Kind, desc: TypeDesc, limit: u64) -> HeaderFields {
    HeaderFields {
        kind: kind.raw(),
        elem_size: desc.size,
        elem_align: desc.align,
        type_fingerprint: desc.fingerprint,
        type_name: desc.name.words(),
        capacity: limit,
        control_offset: LOCK_AT,
        slots_offset: DATA_START,
        total_len: DATA_START,
        ..HeaderFields::default()
    }
}

/// What a container handle holds: its segment, the mapping of its whole
/// file, and where the control words are.
pub(crate) struct Store {
    // This process's mapping of the file (shared by its handles).
    heap: Arc<Heap>,
    seg: Arc<Segment>,
    lock: NonNull<Lock>,
    ctl: Ctl,
    limit: u64,
}

// SAFETY: `lock` points into the segment's mapping, which `seg` keeps alive;
// `Lock` is a shared-memory lock (Sync), and the heap is accessed through
// atomics only.
unsafe impl Send for Store {}
// SAFETY: as above.
unsafe impl Sync for Store {}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", self.seg.location())
            .field("limit", &self.limit)
            .finish()
    }
}

/// Options shared by the container builders.
#[derive(Clone, Debug, Default)]
pub(crate) struct Options {
    pub(crate) opts: SegmentOptions,
    pub(crate) limit: u64,
}

impl Store {
    pub(crate) fn create(
        loc: Location,
        o: &Options,
        kind: Kind,
        desc: TypeDesc,
    ) -> Result<Store, SegmentError> {
        if o.limit != 0 && !(DATA_START..=MAX_LIMIT).contains(&o.limit) {
            return Err(SegmentError::InvalidArgument(format!(
                "a container's limit must lie between {DATA_START} bytes and 1 TiB (or be \
                 none), not {}",
                o.limit
            )));
        }
        let fields = header_fields(kind, desc, o.limit);
        let seg = Segment::create(&loc, fields, &o.opts, |seg| {
            if let Some(p) = seg.at::<Lock>(LOCK_AT, 1) {
                // SAFETY: in bounds and aligned (checked by `at`); nobody
                // else sees the segment before it is published.
                unsafe { p.as_ptr().write(Lock::new()) };
            }
        })?;
        let fields = seg.header().read();
        Store::from_segment(seg, &fields, kind, desc)
    }

    pub(crate) fn open(
        loc: Option<Location>,
        fd: Option<std::os::fd::OwnedFd>,
        o: &Options,
        kind: Kind,
        desc: TypeDesc,
    ) -> Result<Store, SegmentError> {
        let (seg, fields) = match (loc, fd) {
            (Some(loc), _) => Segment::open(&loc, &o.opts)?,
            (None, Some(fd)) => Segment::from_fd(fd, &o.opts)?,
            (None, None) => return Err(SegmentError::InvalidArgument("nothing to open".into())),
        };
        Store::from_segment(seg, &fields, kind, desc)
    }

    fn from_segment(
        seg: Segment,
        fields: &HeaderFields,
        kind: Kind,
        desc: TypeDesc,
    ) -> Result<Store, SegmentError> {
        if fields.kind != kind.raw() {
            return Err(SegmentError::WrongKind {
                expected: kind,
                found: Kind::from_raw(fields.kind),
            });
        }
        if fields.elem() != desc {
            return Err(SegmentError::TypeMismatch {
                expected: desc,
                found: fields.elem(),
            });
        }
        let expected = header_fields(kind, desc, fields.capacity);
        let key = |f: &HeaderFields| (f.control_offset, f.slots_offset, f.total_len);
        if key(fields) != key(&expected)
            || (fields.capacity != 0 && !(DATA_START..=MAX_LIMIT).contains(&fields.capacity))
        {
            return Err(SegmentError::Corrupted(
                "container layout fields disagree with this build",
            ));
        }
        let lock = seg.at::<Lock>(LOCK_AT, 1).ok_or(SegmentError::Corrupted(
            "container control block out of range",
        ))?;
        let fd = seg
            .file_fd()
            .ok_or(SegmentError::Corrupted("container without a file"))?;
        let reserve = heap::DEFAULT_RESERVE.max(fields.capacity);
        let heap = Heap::shared(fd, reserve).map_err(|e| match e {
            ContainerError::Io(e) => SegmentError::Io(e),
            other => SegmentError::InvalidArgument(other.to_string()),
        })?;
        Ok(Store {
            heap,
            seg: Arc::new(seg),
            lock,
            ctl: Ctl { at: CTL_AT },
            limit: fields.capacity,
        })
    }

    pub(crate) fn segment(&self) -> &Segment {
        &self.seg
    }

    fn lock_ref(&self) -> &Lock {
        // SAFETY: in bounds and aligned (checked by `at` at open); the
        // mapping lives as long as `seg`, which `self` holds.
        unsafe { self.lock.as_ref() }
    }

    /// Takes the writer lock, finishing first what a dead writer left.
    ///
    /// # Panics
    /// When this thread already holds it: a closure given to `update` (or
    /// `sort_by`) used its own container, which would wait for itself.
    pub(crate) fn write(&self) -> Result<Writer<'_>, ContainerError> {
        self.seg.assert_pid_namespace();
        let lock = self.lock_ref();
        if lock.raw().held_by(owner::current()) {
            reentered();
        }
        let guard = match acquire(lock) {
            Ok(g) => g,
            Err(OwnerDied(g)) => g,
        };
        if engine::pending(&*self.heap, self.ctl) {
            engine::repair(&*self.heap, self.ctl)?;
        }
        let root = engine::load_root(&*self.heap, self.ctl)?;
        root.check(DATA_START)?;
        engine::check_in_file(&*self.heap, &root)?;
        Ok(Writer {
            s: self,
            root,
            _guard: guard,
        })
    }

    /// Runs `f` on a stable snapshot (see `engine::read`), or under the
    /// writer lock if writers keep it moving.
    pub(crate) fn read<R>(
        &self,
        mut f: impl FnMut(&Overlay<'_, Heap>, &Root) -> Result<R, Corrupt>,
    ) -> Result<R, ContainerError> {
        let heap = &*self.heap;
        match engine::read(heap, self.ctl, |view, root| {
            root.check(DATA_START)?;
            engine::check_in_file(view, root)?;
            f(view, root)
        }) {
            engine::Read::Done(r) => Ok(r?),
            engine::Read::Busy => {
                let w = self.write()?;
                Ok(f(&Overlay::none(heap), &w.root)?)
            }
        }
    }

    pub(crate) fn generation(&self) -> u64 {
        self.read(|_, root| Ok(root.get(engine::root::GEN)))
            .unwrap_or(0)
    }

    pub(crate) fn repairs(&self) -> u64 {
        engine::repairs(&*self.heap, self.ctl)
    }

    /// The bytes of memory the live region takes (index and arena).
    pub(crate) fn region_len(&self) -> u64 {
        self.read(|_, root| Ok(root.get(engine::root::REGION_LEN)))
            .unwrap_or(0)
    }
}

/// Takes the writer lock. Writers hold it for a few hundred nanoseconds,
/// so a contended taker first peeks with a spin hint between peeks, then
/// sleeps a moment between peeks, and only then waits in the lock's own
/// `lock` (which also finds a dead holder). With more writers than CPUs
/// the holder is usually a peer its waiters preempted: a real sleep (a
/// yield is not enough: the scheduler hands the CPU straight back) lets
/// it run and release. The peeks are plain CASes, not `try_lock`, whose
/// look at a holder's liveness reads `/proc`. (`Lock` itself spins longer
/// and then sleeps on its futex: the sections users hold it for can be
/// long.) Measured with 4 writers on 2 CPUs: 1.99 M inserts/s with yields,
/// 4.1 M with these sleeps (`docs/benchmarks.md`).
fn acquire(lock: &Lock) -> Result<LockGuard<'_>, OwnerDied<LockGuard<'_>>> {
    for round in 0..SPINS + NAPS {
        if let Some(g) = lock.try_lock_free() {
            return Ok(g);
        }
        if round < SPINS {
            crate::loom::spin_loop();
        } else {
            std::thread::sleep(std::time::Duration::from_micros(1));
        }
    }
    lock.lock()
}

/// Peeks with a spin hint between them, then with a short sleep between
/// them (1 µs asked; the timer's slack makes it longer).
const SPINS: u32 = 64;
const NAPS: u32 = 16;

#[cold]
#[inline(never)]
#[track_caller]
fn reentered() -> ! {
    panic!(
        "shmring: a container was used from inside its own update (or sort) closure, \
         which holds its writer lock; compute outside the closure instead"
    )
}

/// The writer lock, held, with the root as it was when taken (kept current
/// by [`commit`](Self::commit)).
pub(crate) struct Writer<'a> {
    pub(crate) s: &'a Store,
    pub(crate) root: Root,
    _guard: LockGuard<'a>,
}

impl Writer<'_> {
    pub(crate) fn mem(&self) -> &Heap {
        &self.s.heap
    }

    pub(crate) fn ctl(&self) -> Ctl {
        self.s.ctl
    }

    /// The file offset of root word `i` (a commit's target).
    pub(crate) fn root_at(&self, i: usize) -> u64 {
        self.s.ctl.root(i)
    }

    /// Publishes `stores` in one step (see `engine::commit`) and reloads
    /// the root.
    pub(crate) fn commit(&mut self, stores: &[(u64, u64)]) -> Result<(), ContainerError> {
        engine::commit(&*self.s.heap, self.s.ctl, stores)?;
        self.root = engine::load_root(&*self.s.heap, self.s.ctl)?;
        self.root.check(DATA_START)?;
        engine::check_in_file(&*self.s.heap, &self.root)?;
        Ok(())
    }

    /// Space for a new region of `len` bytes (page-aligned), backed by
    /// memory, where no live root points.
    pub(crate) fn new_region(&self, len: u64) -> Result<(u64, u64), ContainerError> {
        let len = len
            .checked_next_multiple_of(PAGE)
            .ok_or(ContainerError::Full {
                limit: self.s.limit,
            })?;
        let at = engine::place(DATA_START, &self.root, len, PAGE).ok_or(ContainerError::Full {
            limit: self.s.heap.reserve(),
        })?;
        self.s.heap.provide(at, len, self.s.limit)?;
        Ok((at, len))
    }

    /// Publishes a region built at `at` (`len` bytes: an index of `cap`
    /// entries over its first `index_len` bytes, then records up to `top`)
    /// holding `count` entries, in one commit (generation + 1), and gives
    /// the old region's memory back.
    pub(crate) fn publish_move(
        &mut self,
        (at, len): (u64, u64),
        cap: u64,
        index_len: u64,
        top: u64,
        count: u64,
    ) -> Result<(), ContainerError> {
        let old = self.root;
        let mut new = Root::default();
        new.w[engine::root::GEN] = old.get(engine::root::GEN).wrapping_add(1);
        new.w[engine::root::REGION] = at;
        new.w[engine::root::REGION_LEN] = len;
        new.w[engine::root::INDEX] = at;
        new.w[engine::root::INDEX_CAP] = cap;
        new.w[engine::root::ARENA] = at + index_len;
        new.w[engine::root::TOP] = top;
        new.w[engine::root::END] = at + len;
        let mut stores = engine::region_stores(self.ctl(), &new).to_vec();
        stores.push((self.root_at(engine::root::LEN), count));
        stores.push((self.root_at(engine::root::TOMBS), 0));
        stores.push((self.root_at(engine::root::ACTIVE), 0));
        self.commit(&stores)?;
        self.release(&old);
        Ok(())
    }

    /// Gives back the memory of a region that `old` named and the live
    /// root no longer does.
    pub(crate) fn release(&self, old: &Root) {
        if !old.is_bare() {
            self.s.heap.release(
                old.get(engine::root::REGION),
                old.get(engine::root::REGION_LEN),
            );
        }
    }

    /// Publishes the bare root (no region: empty) and releases the region.
    pub(crate) fn clear(&mut self) -> Result<(), ContainerError> {
        if self.root.is_bare() {
            return Ok(());
        }
        let old = self.root;
        let mut stores = [(0u64, 0u64); engine::root::WORDS];
        for (i, s) in stores.iter_mut().enumerate() {
            *s = (self.root_at(i), 0);
        }
        stores[engine::root::GEN].1 = old.get(engine::root::GEN).wrapping_add(1);
        self.commit(&stores)?;
        self.release(&old);
        Ok(())
    }
}

/// The sizes of a new region for `count` live entries and `live_bytes` of
/// records, plus `more` and `more_bytes`: index entries (a power of two,
/// at least `min_cap`) and arena bytes (at least `min_arena`) for twice as
/// many, so that moves are rare.
pub(crate) fn move_sizes(
    count: u64,
    more: u64,
    live_bytes: u64,
    more_bytes: u64,
    (min_cap, min_arena): (u64, u64),
) -> Result<(u64, u64), ContainerError> {
    let too_big = ContainerError::Full { limit: 0 };
    let cap = count
        .checked_add(more)
        .and_then(|n| n.checked_mul(2))
        .and_then(u64::checked_next_power_of_two)
        .ok_or(too_big)?
        .max(min_cap);
    let arena = live_bytes
        .checked_add(more_bytes)
        .and_then(|b| b.checked_mul(2))
        .ok_or(ContainerError::Full { limit: 0 })?
        .max(min_arena);
    Ok((cap, arena))
}

/// The largest key or value a container stores (its length is a `u32`).
pub const MAX_ITEM: usize = u32::MAX as usize;

pub(crate) fn check_item(len: usize) -> Result<(), ContainerError> {
    if len > MAX_ITEM {
        Err(ContainerError::TooLarge { len, max: MAX_ITEM })
    } else {
        Ok(())
    }
}

/// The builder methods every container builder shares: the segment
/// options, `limit`, and where to create or open (`create`, `create_at`,
/// `create_anonymous`, `open`, `open_at`, `from_fd`, `open_or_create`). The
/// builder has fields `o: Options` and a `fn finish(self, Store) -> $handle`
/// and `fn kind_desc() -> (Kind, TypeDesc)`.
macro_rules! container_builder_methods {
    ($handle:ty) => {
        /// Permission bits of a new segment (default 0o600).
        pub fn mode(mut self, mode: u32) -> Self {
            self.o.opts.mode = mode;
            self
        }

        /// Whether the name outlives the creating handle (default `true`:
        /// names stay until removed; see
        /// [names](crate#names-who-removes-them)). With `false`, dropping
        /// the handle that created it removes the name.
        pub fn persist(mut self, persist: bool) -> Self {
            self.o.opts.persist = persist;
            self
        }

        /// How long opening waits for a creator to finish (default 1 s),
        /// then fails with `NotInitialized`.
        pub fn init_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.o.opts.init_timeout = timeout;
            self
        }

        /// Open segments owned by another user or writable by group or
        /// others (default: refused with `Untrusted`; see
        /// `docs/security.md`).
        pub fn trust_shared(mut self, trust: bool) -> Self {
            self.o.opts.trust_shared = trust;
            self
        }

        /// The most bytes the container's file may grow to (default: no
        /// limit but the 64 GiB of addresses each handle reserves). A write
        /// that would need more fails with
        /// [`ContainerError::Full`](crate::ContainerError::Full) and
        /// changes nothing. While the contents move to a larger region the
        /// file holds both, so a container reaches its limit at about half
        /// of it. At least one page plus the header, at most 1 TiB.
        pub fn limit(mut self, bytes: u64) -> Self {
            self.o.limit = bytes;
            self
        }

        /// Creates `/dev/shm/<name>` exclusively, empty.
        ///
        /// The name stays until it is removed (`unlink`, `shmring rm`), or,
        /// with [`persist(false)`](Self::persist), until the created handle
        /// is dropped; see [names](crate#names-who-removes-them).
        pub fn create(self, name: &str) -> Result<$handle, crate::SegmentError> {
            self.make(crate::shm::segment::Location::Named(name.to_string()))
        }

        /// Creates a container at a file path exclusively, empty.
        pub fn create_at(
            self,
            path: impl AsRef<std::path::Path>,
        ) -> Result<$handle, crate::SegmentError> {
            self.make(crate::shm::segment::Location::Path(
                path.as_ref().to_path_buf(),
            ))
        }

        /// Creates an anonymous container (a memfd): shared with children
        /// forked after this call, or passed to an exec'd one by its fd
        /// (the handle's `raw_fd`, then `from_fd`); it goes with the last
        /// mapping.
        pub fn create_anonymous(self) -> Result<$handle, crate::SegmentError> {
            self.make(crate::shm::segment::Location::Anonymous)
        }

        /// Opens `/dev/shm/<name>`, checking its kind and type.
        pub fn open(self, name: &str) -> Result<$handle, crate::SegmentError> {
            self.attach(
                Some(crate::shm::segment::Location::Named(name.to_string())),
                None,
            )
        }

        /// Opens a container at a file path, as [`open`](Self::open).
        pub fn open_at(
            self,
            path: impl AsRef<std::path::Path>,
        ) -> Result<$handle, crate::SegmentError> {
            self.attach(
                Some(crate::shm::segment::Location::Path(
                    path.as_ref().to_path_buf(),
                )),
                None,
            )
        }

        /// Opens an anonymous container from an inherited memfd.
        pub fn from_fd(self, fd: std::os::fd::OwnedFd) -> Result<$handle, crate::SegmentError> {
            self.attach(None, Some(fd))
        }

        /// Opens `/dev/shm/<name>` if it exists (checking its kind and
        /// type), otherwise creates it empty. Of several processes racing
        /// here, exactly one creates it and every one gets that container.
        pub fn open_or_create(self, name: &str) -> Result<$handle, crate::SegmentError> {
            let loc = crate::shm::segment::Location::Named(name.to_string());
            let mut last = None;
            for _ in 0..8 {
                match self.clone().make(loc.clone()) {
                    Err(crate::SegmentError::AlreadyExists(_)) => {}
                    other => return other,
                }
                match self.clone().attach(Some(loc.clone()), None) {
                    Err(crate::SegmentError::NotFound(n)) => {
                        last = Some(crate::SegmentError::NotFound(n))
                    }
                    other => return other,
                }
            }
            Err(last.unwrap_or(crate::SegmentError::NotInitialized))
        }

        fn make(self, loc: crate::shm::segment::Location) -> Result<$handle, crate::SegmentError> {
            let (kind, desc) = Self::kind_desc();
            let store = crate::container::Store::create(loc, &self.o, kind, desc)?;
            Ok(Self::finish(store))
        }

        fn attach(
            self,
            loc: Option<crate::shm::segment::Location>,
            fd: Option<std::os::fd::OwnedFd>,
        ) -> Result<$handle, crate::SegmentError> {
            let (kind, desc) = Self::kind_desc();
            let store = crate::container::Store::open(loc, fd, &self.o, kind, desc)?;
            Ok(Self::finish(store))
        }
    };
}
pub(crate) use container_builder_methods;

/// A byte container's handle and builder types (`SharedMap`, `SharedList`):
/// the struct, its builder, and the methods every container has; the
/// kind's own methods follow in a second `impl`.
macro_rules! byte_container {
    ($(#[$doc:meta])* $name:ident, $builder:ident, $kind:expr, $check:path, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            store: Store,
        }

        #[doc = concat!("Builds or opens a [`", stringify!($name), "`].")]
        #[derive(Clone, Debug, Default)]
        pub struct $builder {
            o: Options,
        }

        impl $builder {
            super::container_builder_methods!($name);

            fn kind_desc() -> (Kind, TypeDesc) {
                ($kind, super::bytes_desc())
            }

            fn finish(store: Store) -> $name {
                $name { store }
            }
        }

        impl $name {
            super::container_constructors!($builder, $builder::default());

            pub(crate) fn store(&self) -> &Store {
                &self.store
            }

            #[cfg(feature = "serde")]
            pub(crate) fn from_store(store: Store) -> $name {
                $name { store }
            }

            super::container_handle_methods!();

            #[doc = concat!(
                "Entries in the ", $what, " (a snapshot; 0 if its shared state fails its ",
                "checks, which every other call reports as `Corrupted`)."
            )]
            pub fn len(&self) -> usize {
                self.store
                    .read(|_, root| {
                        $check(root)?;
                        Ok(root.count())
                    })
                    .unwrap_or(0) as usize
            }

            #[doc = concat!("Whether the ", $what, " is empty (a snapshot).")]
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
        }
    };
}
pub(crate) use byte_container;

/// The constructors every container handle shares (`builder`, `create`,
/// `anonymous`, `open`, `open_or_create`), given its builder type and how
/// to make a default one.
macro_rules! container_constructors {
    ($builder:ty, $make:expr) => {
        /// A builder, for options (mode, persist, limit, …).
        pub fn builder() -> $builder {
            $make
        }

        /// Creates `/dev/shm/<name>` exclusively, empty.
        pub fn create(name: &str) -> Result<Self, crate::SegmentError> {
            Self::builder().create(name)
        }

        /// Creates an anonymous container (a memfd, shared with forked
        /// children, or passed to an exec'd one by its fd).
        pub fn anonymous() -> Result<Self, crate::SegmentError> {
            Self::builder().create_anonymous()
        }

        /// Opens `/dev/shm/<name>`, checking its kind and type.
        pub fn open(name: &str) -> Result<Self, crate::SegmentError> {
            Self::builder().open(name)
        }

        /// Opens `/dev/shm/<name>`, or creates it empty.
        pub fn open_or_create(name: &str) -> Result<Self, crate::SegmentError> {
            Self::builder().open_or_create(name)
        }
    };
}
pub(crate) use container_constructors;

/// The handle methods every container shares: where it lives, its name,
/// and its statistics.
macro_rules! container_handle_methods {
    () => {
        /// Removes `/dev/shm/<name>`; processes that have it open keep
        /// working on it (see [names](crate#names-who-removes-them)).
        pub fn unlink(name: &str) -> Result<(), crate::SegmentError> {
            crate::shm::segment::Segment::remove(&crate::shm::segment::Location::Named(
                name.to_string(),
            ))
        }

        /// Keeps the name after this handle is dropped (undoes
        /// `persist(false)`).
        pub fn persist(&self) {
            self.store().segment().set_persist(true);
        }

        /// The file behind a named or path container.
        pub fn path(&self) -> Option<std::path::PathBuf> {
            self.store().segment().path()
        }

        /// The memfd of an anonymous container, to pass to a child.
        pub fn fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
            self.store().segment().fd()
        }

        /// The raw memfd of an anonymous container.
        pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
            self.store().segment().raw_fd()
        }

        /// How many times the contents moved to a new region (grown,
        /// compacted or cleared): every process follows a move on its next
        /// call.
        pub fn generation(&self) -> u64 {
            self.store().generation()
        }

        /// Operations that a process died in the middle of and that a later
        /// writer finished (a statistic; see `docs/reliability.md`).
        pub fn repairs(&self) -> u64 {
            self.store().repairs()
        }

        /// Bytes of memory the live region holds (index and records).
        pub fn memory(&self) -> u64 {
            self.store().region_len()
        }
    };
}
pub(crate) use container_handle_methods;

#[cfg(test)]
mod tests {
    use super::bare_type_name;

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(bare_type_name("alloc::string::String"), "String");
        assert_eq!(
            bare_type_name("core::option::Option<app::Py>"),
            "Option<Py>"
        );
        assert_eq!(
            bare_type_name("(u32, alloc::vec::Vec<a::b::C<d::E, 3>>)"),
            "(u32, Vec<C<E, 3>>)"
        );
        assert_eq!(bare_type_name("[u8; 4]"), "[u8; 4]");
    }
}
