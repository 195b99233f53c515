//! [`Shared<T>`]: one value of a [`ShmSafe`] type in its own segment — a
//! [`Lock`](crate::Lock), an [`Event`](crate::Event), or your own
//! `#[repr(C)]` struct holding a table and the lock that guards it.

use crate::error::SegmentError;
use crate::shm::header::{type_desc, HeaderFields, HEADER_LEN};
use crate::shm::segment::{Location, Segment, SegmentOptions};
use crate::types::{Kind, TypeDesc};
use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

/// `kind` header value of a [`Shared`] segment.
pub(crate) const KIND_STRUCT: u32 = Kind::Struct.raw();
/// `kind` header value of an [`Array`](crate::Array) segment.
pub(crate) const KIND_ARRAY: u32 = Kind::Array.raw();

/// Types that may live in shared memory and be used from several processes
/// at once through `&T`.
///
/// # Safety
/// Implement it only for types that are `#[repr(C)]` (or primitive), hold no
/// pointers or references (addresses mean nothing in another process), keep
/// every mutable part in atomics or in shmring's primitives, and for which
/// **every bit pattern is a valid value** (a peer may write anything). The
/// primitives (`Lock`, `RLock`, `Condition`, `Event`, `Semaphore`,
/// `Barrier`), the atomic integers, plain integers and floats, and arrays of
/// them qualify.
///
/// ```
/// use shmring::{Lock, ShmSafe, Shared};
/// use std::sync::atomic::AtomicU64;
///
/// #[repr(C)]
/// struct Table {
///     lock: Lock,
///     rows: [AtomicU64; 16],
/// }
/// // SAFETY: repr(C), no pointers, atomics and a shmring Lock only.
/// unsafe impl ShmSafe for Table {}
///
/// let t = Shared::anonymous(Table { lock: Lock::new(), rows: Default::default() })?;
/// let _held = t.lock.lock();
/// t.rows[3].store(7, std::sync::atomic::Ordering::Relaxed);
/// # Ok::<(), shmring::SegmentError>(())
/// ```
pub unsafe trait ShmSafe: Sync + Send + Sized + 'static {}

macro_rules! shm_safe {
    ($($t:ty),* $(,)?) => { $(
        // SAFETY: a plain value or atomic: no pointers, any bits valid.
        unsafe impl ShmSafe for $t {}
    )* };
}
shm_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
    crate::sync::Lock,
    crate::sync::RLock,
    crate::sync::Condition,
    crate::sync::Event,
    crate::sync::Semaphore,
    crate::sync::Barrier,
);
// SAFETY: an array of ShmSafe values is ShmSafe.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// The layout of a one-region segment: an optional control block of
/// `control_len` bytes at 256, then `count` elements of `elem`.
pub(crate) fn region_layout(
    kind: u32,
    elem: TypeDesc,
    count: u64,
    control_len: u64,
) -> Result<HeaderFields, SegmentError> {
    let too_big = || SegmentError::InvalidArgument("segment size overflows".into());
    let control_offset = if control_len > 0 { HEADER_LEN } else { 0 };
    let after_control = align_up(HEADER_LEN + control_len, 128).ok_or_else(too_big)?;
    let slots_offset = align_up(after_control, elem.align.max(1)).ok_or_else(too_big)?;
    let total_len = count
        .checked_mul(elem.size)
        .and_then(|b| b.checked_add(slots_offset))
        .filter(|&t| t <= isize::MAX as u64)
        .ok_or_else(too_big)?;
    Ok(HeaderFields {
        kind,
        elem_size: elem.size,
        elem_align: elem.align,
        type_fingerprint: elem.fingerprint,
        type_name: elem.name.words(),
        capacity: count,
        slot_count: count,
        slot_stride: elem.size,
        control_offset,
        slots_offset,
        total_len,
        ..HeaderFields::default()
    })
}

/// Checks an opened region segment against what this build derives.
pub(crate) fn check_region(
    fields: &HeaderFields,
    kind: u32,
    elem: TypeDesc,
    control_len: u64,
) -> Result<(), SegmentError> {
    if fields.kind != kind {
        return Err(SegmentError::WrongKind {
            expected: Kind::from_raw(kind),
            found: Kind::from_raw(fields.kind),
        });
    }
    if fields.elem() != elem {
        return Err(SegmentError::TypeMismatch {
            expected: elem,
            found: fields.elem(),
        });
    }
    let derived = region_layout(kind, elem, fields.capacity, control_len)
        .map_err(|_| SegmentError::Corrupted("length out of range"))?;
    let key = |f: &HeaderFields| {
        (
            f.slot_count,
            f.slot_stride,
            f.control_offset,
            f.slots_offset,
            f.total_len,
        )
    };
    if key(&derived) != key(fields) {
        return Err(SegmentError::Corrupted(
            "layout fields disagree with type and length",
        ));
    }
    Ok(())
}

/// One `T` in a segment of its own, shared by every process that maps it:
/// created by name (`/dev/shm/<name>`), at a path, or anonymously (a memfd
/// shared across `fork`), then opened by name elsewhere. Derefs to `&T`.
///
/// The name stays until it is removed ([`Shared::unlink`], `shmring rm`;
/// see [names](crate#names-who-removes-them)); mappings outlive it.
///
/// # Examples
/// ```
/// use shmring::{Event, Shared};
/// let ev = Shared::builder().open_or_create("shmring-doc-shared-event", Event::new)?;
/// let seen = Shared::<Event>::open("shmring-doc-shared-event")?; // another process, usually
/// ev.set();
/// assert!(seen.is_set());
/// Shared::<Event>::unlink("shmring-doc-shared-event")?; // the name goes; the mappings stay
/// # Ok::<(), shmring::SegmentError>(())
/// ```
pub struct Shared<T: ShmSafe> {
    seg: Arc<Segment>,
    ptr: NonNull<T>,
}

// SAFETY: `T: Sync + Send`; the mapping is kept alive by the Arc.
unsafe impl<T: ShmSafe> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: ShmSafe> Sync for Shared<T> {}

impl<T: ShmSafe> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared {
            seg: self.seg.clone(),
            ptr: self.ptr,
        }
    }
}

impl<T: ShmSafe> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("type", &std::any::type_name::<T>())
            .field("location", self.seg.location())
            .finish()
    }
}

impl<T: ShmSafe> Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        // The locks inside judge owners by pid: not from another namespace.
        self.seg.assert_pid_namespace();
        // SAFETY: in bounds and aligned (checked when mapped), alive as long
        // as `seg`; T is Sync and valid for any bits (ShmSafe).
        unsafe { self.ptr.as_ref() }
    }
}

impl<T: ShmSafe> Shared<T> {
    /// A builder: permissions, persistence, where the segment lives.
    pub fn builder() -> SharedBuilder<T> {
        SharedBuilder {
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
    /// `AlreadyExists`, `InvalidArgument`, `PermissionDenied`, `NoSpace`,
    /// `Io`.
    pub fn create(name: &str, value: T) -> Result<Self, SegmentError> {
        Self::builder().create(name, value)
    }

    /// Creates an anonymous segment (a sealed memfd) holding `value`: no
    /// name; it goes with the last mapping.
    pub fn anonymous(value: T) -> Result<Self, SegmentError> {
        Self::builder().create_anonymous(value)
    }

    /// Opens `/dev/shm/<name>`, checking that it holds a `T`.
    ///
    /// Opening never removes the name: it stays until it is removed
    /// ([`unlink`](Self::unlink), `shmring rm`); see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `NotFound`, `WrongKind`, `TypeMismatch`, `VersionMismatch`,
    /// `SizeMismatch`, `NotInitialized`, `Corrupted`, `PermissionDenied`.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::builder().open(name)
    }

    /// Removes `/dev/shm/<name>`. Mapped handles keep working.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        Segment::remove(&Location::Named(name.to_string()))
    }

    fn from_segment(seg: Segment, fields: &HeaderFields) -> Result<Self, SegmentError> {
        check_region(fields, KIND_STRUCT, type_desc::<T>(), 0)?;
        let ptr = seg
            .at::<T>(fields.slots_offset, 1)
            .ok_or(SegmentError::Corrupted("value outside the mapping"))?;
        Ok(Shared {
            seg: Arc::new(seg),
            ptr,
        })
    }

    /// Keeps the name after all when this (creating) handle is dropped:
    /// undoes [`SharedBuilder::persist`]`(false)`. Names stay by default.
    pub fn persist(&self) {
        self.seg.set_persist(true);
    }

    /// The segment's file path, if named.
    pub fn path(&self) -> Option<PathBuf> {
        self.seg.path()
    }

    /// The memfd of an anonymous segment.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.seg.fd()
    }

    /// The raw memfd of an anonymous segment.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.seg.raw_fd()
    }
}

/// Builds or opens a [`Shared`].
#[derive(Debug)]
pub struct SharedBuilder<T> {
    opts: SegmentOptions,
    _t: PhantomData<fn() -> T>,
}

impl<T: ShmSafe> SharedBuilder<T> {
    /// A builder with these options (for the builders of `Value`).
    pub(crate) fn with_options(opts: SegmentOptions) -> Self {
        SharedBuilder {
            opts,
            _t: PhantomData,
        }
    }

    crate::shm::segment::segment_option_setters!();

    fn create_at_location(&self, loc: Location, value: T) -> Result<Shared<T>, SegmentError> {
        let fields = region_layout(KIND_STRUCT, type_desc::<T>(), 1, 0)?;
        let mut value = Some(value);
        let seg = Segment::create(&loc, fields, &self.opts, |seg| {
            if let (Some(p), Some(v)) = (seg.at::<T>(fields.slots_offset, 1), value.take()) {
                // SAFETY: in bounds and aligned (checked by `at`); nobody else
                // sees the segment before it is published.
                unsafe { p.as_ptr().write(v) };
            }
        })?;
        let fields = seg.header().read();
        Shared::from_segment(seg, &fields)
    }

    /// Creates `/dev/shm/<name>` exclusively, holding `value`.
    ///
    /// The name stays until it is removed ([`Shared::unlink`], `shmring
    /// rm`), or, with [`persist(false)`](Self::persist), until the created
    /// handle is dropped; see [names](crate#names-who-removes-them).
    pub fn create(self, name: &str, value: T) -> Result<Shared<T>, SegmentError> {
        self.create_at_location(Location::Named(name.to_string()), value)
    }

    /// Creates a segment at a file path exclusively, holding `value`.
    ///
    /// The file stays until it is removed (`std::fs::remove_file`), or,
    /// with [`persist(false)`](Self::persist), until the created handle is
    /// dropped; see [names](crate#names-who-removes-them).
    pub fn create_at(self, path: impl AsRef<Path>, value: T) -> Result<Shared<T>, SegmentError> {
        self.create_at_location(Location::Path(path.as_ref().to_path_buf()), value)
    }

    /// Creates an anonymous segment holding `value`: no name to remove;
    /// it goes with the last mapping.
    pub fn create_anonymous(self, value: T) -> Result<Shared<T>, SegmentError> {
        self.create_at_location(Location::Anonymous, value)
    }

    /// Opens `/dev/shm/<name>`, checking that it holds a `T`.
    ///
    /// Opening never removes the name: it stays until it is removed
    /// ([`Shared::unlink`], `shmring rm`); see
    /// [names](crate#names-who-removes-them).
    pub fn open(self, name: &str) -> Result<Shared<T>, SegmentError> {
        let (seg, fields) = Segment::open(&Location::Named(name.to_string()), &self.opts)?;
        Shared::from_segment(seg, &fields)
    }

    /// Opens a segment at a file path, as [`open`](Self::open).
    ///
    /// Opening never removes the file: it stays until it is removed
    /// (`std::fs::remove_file`); see [names](crate#names-who-removes-them).
    pub fn open_at(self, path: impl AsRef<Path>) -> Result<Shared<T>, SegmentError> {
        let (seg, fields) =
            Segment::open(&Location::Path(path.as_ref().to_path_buf()), &self.opts)?;
        Shared::from_segment(seg, &fields)
    }

    /// Opens an anonymous segment from an inherited memfd.
    pub fn from_fd(self, fd: OwnedFd) -> Result<Shared<T>, SegmentError> {
        let (seg, fields) = Segment::from_fd(fd, &self.opts)?;
        Shared::from_segment(seg, &fields)
    }

    /// Opens `/dev/shm/<name>` if it exists (checking its type), otherwise
    /// creates it with `init()`. Of several processes racing here, exactly
    /// one creates the segment (creation is exclusive) and every one gets
    /// that segment: the others open it, waiting up to
    /// [`init_timeout`](Self::init_timeout) for the creator to finish.
    /// `init` may run in a process that then loses the race (its value is
    /// dropped).
    ///
    /// The name stays until it is removed ([`Shared::unlink`], `shmring
    /// rm`), or, with [`persist(false)`](Self::persist), until the handle
    /// of whichever process created it is dropped; see
    /// [names](crate#names-who-removes-them).
    pub fn open_or_create(
        self,
        name: &str,
        init: impl Fn() -> T,
    ) -> Result<Shared<T>, SegmentError> {
        let mut last = None;
        for _ in 0..8 {
            match self.create_at_location(Location::Named(name.to_string()), init()) {
                Err(SegmentError::AlreadyExists(_)) => {}
                other => return other,
            }
            match Segment::open(&Location::Named(name.to_string()), &self.opts) {
                Ok((seg, fields)) => return Shared::from_segment(seg, &fields),
                Err(SegmentError::NotFound(n)) => last = Some(SegmentError::NotFound(n)),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or(SegmentError::NotInitialized))
    }
}

/// Maps a region segment and checks it; the parts `Array` shares.
pub(crate) struct Region {
    pub(crate) seg: Arc<Segment>,
    pub(crate) fields: HeaderFields,
}

impl Region {
    pub(crate) fn create(
        loc: Location,
        opts: &SegmentOptions,
        fields: HeaderFields,
        init: impl FnOnce(&Segment),
    ) -> Result<Region, SegmentError> {
        let seg = Segment::create(&loc, fields, opts, init)?;
        let fields = seg.header().read();
        Ok(Region {
            seg: Arc::new(seg),
            fields,
        })
    }

    pub(crate) fn open(
        loc: Option<Location>,
        fd: Option<OwnedFd>,
        opts: &SegmentOptions,
    ) -> Result<Region, SegmentError> {
        let (seg, fields) = match (loc, fd) {
            (Some(loc), _) => Segment::open(&loc, opts)?,
            (None, Some(fd)) => Segment::from_fd(fd, opts)?,
            (None, None) => return Err(SegmentError::InvalidArgument("nothing to open".into())),
        };
        Ok(Region {
            seg: Arc::new(seg),
            fields,
        })
    }
}
