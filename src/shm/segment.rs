//! Mapped segments: named in `/dev/shm`, backed by a file path, or anonymous
//! (a memfd that a forked child shares, or that an exec'd child inherits).
//!
//! Creation is exclusive (`O_CREAT | O_EXCL`, mode 0600 unless widened); the
//! creator sizes the file, writes the header and the body, then publishes
//! `init_state = READY` with Release. An opener waits a bounded time for
//! READY, then validates the header snapshot against the file's real size.
//! The mapping is a shared `MmapRaw`: no `&mut [u8]` is ever formed over
//! memory that other processes write.

use super::header::{init, Header, HeaderFields, HEADER_LEN, MAGIC, VERSION};
use crate::error::SegmentError;
use crate::process;
use crate::types::Kind;
use memmap2::{MmapOptions, MmapRaw};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FlockArg, OFlag, SealFlag};
use nix::sys::stat::Mode;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where a segment lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// `/dev/shm/<name>` via `shm_open`.
    Named(String),
    /// Any file path.
    Path(PathBuf),
    /// An anonymous memfd.
    Anonymous,
}

impl Location {
    fn describe(&self) -> String {
        match self {
            Location::Named(n) => n.clone(),
            Location::Path(p) => p.display().to_string(),
            Location::Anonymous => "<anonymous>".to_string(),
        }
    }
}

/// Options for creating and opening segments.
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    /// Permission bits for a new file (default 0o600).
    pub mode: u32,
    /// Keep the name after the creating handle is dropped (default: true:
    /// a name stays until it is removed; false: the creating handle
    /// removes it when dropped).
    pub persist: bool,
    /// How long an opener waits for a creator to finish (default 1 s).
    pub init_timeout: Duration,
    /// Open named and path segments owned by another user, or writable by
    /// group or others (default: refuse them with `Untrusted`).
    pub trust_shared: bool,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            mode: 0o600,
            persist: true,
            init_timeout: Duration::from_secs(1),
            trust_shared: false,
        }
    }
}

/// The four segment options every builder shares (its `opts` field):
/// `mode`, `persist`, `init_timeout`, `trust_shared`. One definition, so
/// that the builders of queues, `Value`, `Array` and `Shared` say the same.
macro_rules! segment_option_setters {
    () => {
        /// Permission bits of a new segment (default 0o600).
        pub fn mode(mut self, mode: u32) -> Self {
            self.opts.mode = mode;
            self
        }

        /// Whether the name outlives the creating handle (default `true`:
        /// names stay until removed; see
        /// [names](crate#names-who-removes-them)). With `false`, dropping
        /// the handle that created it (and everything made from it)
        /// removes the name — only its own segment, never one made at the
        /// name since: for a name private to one program and the children
        /// it forks.
        pub fn persist(mut self, persist: bool) -> Self {
            self.opts.persist = persist;
            self
        }

        /// How long opening waits for a creator to finish (default 1 s),
        /// then fails with `NotInitialized`.
        pub fn init_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.opts.init_timeout = timeout;
            self
        }

        /// Open segments owned by another user or writable by group or
        /// others (default: refused with `Untrusted`; see
        /// `docs/security.md`).
        pub fn trust_shared(mut self, trust: bool) -> Self {
            self.opts.trust_shared = trust;
            self
        }
    };
}
pub(crate) use segment_option_setters;

/// Checks a `/dev/shm` name and returns it with one leading '/'.
pub fn shm_name(name: &str) -> Result<String, SegmentError> {
    let bare = name.strip_prefix('/').unwrap_or(name);
    if bare.is_empty() || bare.len() > 250 || bare == "." || bare == ".." {
        return Err(SegmentError::InvalidArgument(format!(
            "segment name {name:?} must be 1 to 250 bytes and not '.' or '..'"
        )));
    }
    if bare.contains('/') || bare.contains('\0') {
        return Err(SegmentError::InvalidArgument(format!(
            "segment name {name:?} may not contain '/' or NUL"
        )));
    }
    Ok(format!("/{bare}"))
}

fn map_errno(e: Errno, what: &Location) -> SegmentError {
    match e {
        Errno::ENOENT => SegmentError::NotFound(what.describe()),
        Errno::EEXIST => SegmentError::AlreadyExists(what.describe()),
        Errno::EACCES | Errno::EPERM => SegmentError::PermissionDenied(what.describe()),
        Errno::ELOOP => SegmentError::Untrusted(format!(
            "{}: a symbolic link (shmring does not follow links)",
            what.describe()
        )),
        e => SegmentError::Io(std::io::Error::from(e)),
    }
}

fn map_io(e: std::io::Error, what: &Location) -> SegmentError {
    match e.raw_os_error() {
        Some(n) => map_errno(Errno::from_raw(n), what),
        None => SegmentError::Io(e),
    }
}

/// The seals an anonymous segment carries from before anyone else sees it,
/// and that [`Segment::from_fd`] insists on: its size can neither shrink
/// (which would make other mappers' accesses fault with `SIGBUS`) nor grow,
/// and no further seal can be added or removed.
pub const REQUIRED_SEALS: std::ffi::c_int =
    SealFlag::F_SEAL_SHRINK.bits() | SealFlag::F_SEAL_GROW.bits() | SealFlag::F_SEAL_SEAL.bits();

/// The seals of a segment of a kind that grows ([`Kind::grows`]: the
/// containers): it may grow, never shrink, and no seal can change.
pub const GROWING_SEALS: std::ffi::c_int =
    SealFlag::F_SEAL_SHRINK.bits() | SealFlag::F_SEAL_SEAL.bits();

/// `flock(2)` on `fd`, retried on `EINTR`.
///
/// nix's `flock` function is deprecated in favour of its `Flock` guard, which
/// does not fit here: the guard unlocks (`LOCK_UN`) when dropped, and a
/// `flock` belongs to the open file description, which a forked child shares.
/// An explicit unlock in the parent would drop the child's hold as well
/// (and `gc` could then remove a segment the child still uses); closing the
/// file, as dropping a `File` does, leaves the child's hold in place.
#[allow(deprecated)]
fn flock(fd: &impl AsRawFd, arg: FlockArg) -> Result<(), Errno> {
    loop {
        match nix::fcntl::flock(fd.as_raw_fd(), arg) {
            Err(Errno::EINTR) => continue,
            r => return r,
        }
    }
}

/// What [`Segment::recover`] found at an existing name.
enum Recovery {
    /// Abandoned: now ours, locked and empty.
    Claimed(File),
    /// A live creator's, a published segment, or not ours to judge.
    Live,
    /// The name went away meanwhile: try the exclusive create again.
    Vanished,
}

/// Takes the creation lock without blocking: `Ok(false)` if someone holds it.
/// Takes a shared `flock` on a published segment's file, waiting for a
/// `gc` that holds it exclusively for a moment.
fn lock_shared(file: &File) -> std::io::Result<()> {
    flock(file, FlockArg::LockShared).map_err(std::io::Error::from)
}

/// The lock every removal of a name takes: an exclusive `flock` on the
/// directory the name lives in (`/dev/shm`, or a path's parent), held
/// while the name is checked and unlinked, so that "this name still names
/// my segment" and the unlink are one step for every shmring process: no
/// other removal, and so no new segment at the name, comes in between.
/// Released when dropped (or when the process dies).
fn dir_lock(location: &Location) -> Option<File> {
    let dir = match location {
        Location::Named(_) => PathBuf::from("/dev/shm"),
        Location::Path(p) => match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        },
        Location::Anonymous => return None,
    };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_DIRECTORY | OFlag::O_CLOEXEC).bits())
        .open(dir)
        .ok()?;
    // Not lockable (an odd file system): removals go unlocked.
    flock(&dir, FlockArg::LockExclusive).ok()?;
    Some(dir)
}

fn try_lock(file: &File) -> std::io::Result<bool> {
    match flock(file, FlockArg::LockExclusiveNonblock) {
        Ok(()) => Ok(true),
        Err(Errno::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Allocates every byte of the file up to `len` (and sizes it to `len`), so
/// that a later write to the mapping cannot find the file system full: on
/// tmpfs that write would be `SIGBUS`. Costs the time to zero `len` bytes of
/// memory at creation (about a few hundred milliseconds per GiB).
fn preallocate(file: &File, len: u64, location: &Location) -> Result<(), SegmentError> {
    let Ok(off_len) = libc::off_t::try_from(len) else {
        return Err(SegmentError::InvalidArgument(format!(
            "segment of {len} bytes is too large"
        )));
    };
    let r = loop {
        match nix::fcntl::posix_fallocate(file.as_raw_fd(), 0, off_len) {
            Err(Errno::EINTR) => continue,
            r => break r,
        }
    };
    match r {
        Ok(()) => {}
        Err(Errno::ENOSPC | Errno::ENOMEM) => {
            return Err(SegmentError::NoSpace {
                name: location.describe(),
                needed: len,
            })
        }
        // A file system that cannot allocate ahead: size it, as before.
        Err(Errno::EOPNOTSUPP | Errno::EINVAL) => {}
        Err(e) => return Err(SegmentError::Io(e.into())),
    }
    file.set_len(len).map_err(|e| map_io(e, location))
}

#[doc(hidden)]
/// Pauses in the middle of creation, for tests of a creator that dies
/// there. Not part of the API.
pub mod test_hooks {
    use std::sync::OnceLock;

    /// Just after the exclusive create and lock (the file is empty).
    pub const CREATED: u32 = 1;
    /// After the header and body are written, before the publish.
    pub const WRITTEN: u32 = 2;

    /// Called with the stage reached, when set.
    pub static CREATE: OnceLock<fn(u32)> = OnceLock::new();

    pub(super) fn reached(stage: u32) {
        if let Some(hook) = CREATE.get() {
            hook(stage);
        }
    }
}

/// A mapped segment.
#[derive(Debug)]
pub struct Segment {
    map: MmapRaw,
    len: u64,
    location: Location,
    /// Kept for anonymous segments (to hand to children); None otherwise.
    fd: Option<OwnedFd>,
    /// Whether dropping this handle unlinks the name (creator, not persisted).
    unlink_on_drop: AtomicBool,
    /// The pid that created this handle (kept locally: the header's copy is
    /// shared memory and is not trusted for deciding to unlink).
    owner_pid: u32,
    /// The pid namespace the segment's pids belong to (the creator's, as
    /// validated at open; 0: unknown), kept locally.
    pid_ns: u64,
    /// The file's (device, inode), to tell whether the name still names
    /// this segment (`remove_if_same`).
    ident: Option<(u64, u64)>,
    /// Named and path segments: the file, kept open with a shared `flock`
    /// for as long as this handle lives, so that `gc` can tell a segment
    /// some process holds from an unused one without a race (it removes
    /// only what it can lock exclusively).
    held: Option<File>,
}

impl Segment {
    /// Creates a segment exclusively, writes `fields` as its header (sizes
    /// the file to `fields.total_len`, fills in the creator), runs `init` on
    /// the zeroed body, then publishes it.
    ///
    /// Every byte of a named or path segment is allocated before anything
    /// is mapped (`posix_fallocate`), so a file system without room fails
    /// here with `NoSpace` (and the name is removed) rather than with
    /// `SIGBUS` on a later write. An anonymous segment (a memfd, on the
    /// kernel's internal tmpfs, which has no size limit) is sized sparse:
    /// its pages come with first use.
    ///
    /// A named or path segment is created under an exclusive `flock` held
    /// until it is published (or removed after a failure). A name whose
    /// creator died before publishing (`kill -9` between the exclusive
    /// create and the publish) is therefore recognisable: its lock is free
    /// while it is not READY. Such a name is taken over and initialised
    /// again in place, under the lock, so that of several processes
    /// recovering it at once exactly one wins (the others see
    /// `AlreadyExists`).
    pub fn create(
        location: &Location,
        mut fields: HeaderFields,
        opts: &SegmentOptions,
        init: impl FnOnce(&Segment),
    ) -> Result<Segment, SegmentError> {
        if fields.total_len < HEADER_LEN {
            return Err(SegmentError::InvalidArgument(
                "segment smaller than its header".into(),
            ));
        }
        let mode = opts.mode & 0o777;
        let anonymous = matches!(location, Location::Anonymous);
        let file = if anonymous {
            let name = CString::new("shmring").expect("no NUL");
            let fd = nix::sys::memfd::memfd_create(
                &name,
                nix::sys::memfd::MemFdCreateFlag::MFD_CLOEXEC
                    | nix::sys::memfd::MemFdCreateFlag::MFD_ALLOW_SEALING,
            )
            .map_err(|e| map_errno(e, location))?;
            File::from(fd)
        } else {
            Self::claim(location, mode)?
        };
        let built = Self::build(location, &file, &mut fields, mode, !opts.persist, init);
        match built {
            Ok(mut seg) => {
                if anonymous {
                    seg.fd = Some(OwnedFd::from(file));
                } else {
                    // The creation lock (exclusive, until the publish)
                    // becomes the holder's shared lock (see `held`).
                    lock_shared(&file).map_err(|e| map_io(e, location))?;
                    seg.held = Some(file);
                }
                Ok(seg)
            }
            Err(e) => {
                // Still under the lock: the name is ours (created or taken
                // over), so removing it removes nobody else's segment.
                if !anonymous {
                    let _ = Self::remove(location);
                }
                Err(e)
            }
        }
    }

    /// Creates the file of a named or path segment exclusively, or takes
    /// over one whose creator died before publishing it; returns it empty
    /// (length 0 or a zeroed header) and locked (`flock(LOCK_EX)`).
    fn claim(location: &Location, mode: u32) -> Result<File, SegmentError> {
        for _ in 0..8 {
            match Self::open_exclusive(location, mode) {
                Ok(file) => {
                    // Lock first, then look: a recoverer that came between
                    // our create and our lock (it saw an empty, unlocked
                    // file: a creator that looked dead) owns the name now.
                    if !try_lock(&file).map_err(|e| map_io(e, location))? {
                        return Err(SegmentError::AlreadyExists(location.describe()));
                    }
                    let meta = file.metadata().map_err(|e| map_io(e, location))?;
                    if meta.nlink() == 0 {
                        // That recoverer failed and removed it: try again.
                        continue;
                    }
                    if meta.len() != 0 {
                        return Err(SegmentError::AlreadyExists(location.describe()));
                    }
                    test_hooks::reached(test_hooks::CREATED);
                    return Ok(file);
                }
                Err(SegmentError::AlreadyExists(_)) => match Self::recover(location)? {
                    Recovery::Claimed(file) => return Ok(file),
                    Recovery::Live => return Err(SegmentError::AlreadyExists(location.describe())),
                    Recovery::Vanished => continue,
                },
                Err(e) => return Err(e),
            }
        }
        Err(SegmentError::AlreadyExists(location.describe()))
    }

    fn open_exclusive(location: &Location, mode: u32) -> Result<File, SegmentError> {
        Ok(match location {
            Location::Named(name) => File::from(
                nix::sys::mman::shm_open(
                    shm_name(name)?.as_str(),
                    OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_RDWR,
                    Mode::from_bits_truncate(mode),
                )
                .map_err(|e| map_errno(e, location))?,
            ),
            Location::Path(path) => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .mode(mode)
                .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
                .open(path)
                .map_err(|e| map_io(e, location))?,
            Location::Anonymous => unreachable!("anonymous segments have no name"),
        })
    }

    fn open_existing(location: &Location) -> Result<File, SegmentError> {
        Ok(match location {
            Location::Named(name) => File::from(
                nix::sys::mman::shm_open(shm_name(name)?.as_str(), OFlag::O_RDWR, Mode::empty())
                    .map_err(|e| map_errno(e, location))?,
            ),
            Location::Path(path) => std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
                .open(path)
                .map_err(|e| map_io(e, location))?,
            Location::Anonymous => {
                return Err(SegmentError::InvalidArgument(
                    "an anonymous segment is opened from its fd (from_fd), not by name".into(),
                ))
            }
        })
    }

    /// Looks at an existing name for a creator that died before publishing.
    ///
    /// Proof of death is the creation lock: a creator holds it from just
    /// after its exclusive create until its publish, and the kernel drops it
    /// when the creator dies. A file that is not READY and whose lock we can
    /// take without blocking is therefore abandoned (the header may still be
    /// all zeros, even of length 0). We then keep the lock, so no second
    /// recoverer can also win, and reset the file in place: no unlink, so
    /// no other process's file can be removed by mistake.
    fn recover(location: &Location) -> Result<Recovery, SegmentError> {
        let file = match Self::open_existing(location) {
            Ok(f) => f,
            Err(SegmentError::NotFound(_)) => return Ok(Recovery::Vanished),
            // Not ours to look at (permissions, a link, …): it stays taken.
            Err(_) => return Ok(Recovery::Live),
        };
        if !try_lock(&file).map_err(|e| map_io(e, location))? {
            // Its creator (or another recoverer) is at work.
            return Ok(Recovery::Live);
        }
        let meta = file.metadata().map_err(|e| map_io(e, location))?;
        if meta.nlink() == 0 {
            return Ok(Recovery::Vanished);
        }
        if meta.uid() != nix::unistd::geteuid().as_raw() {
            // Another user's file is never taken over.
            return Ok(Recovery::Live);
        }
        let size = meta.len();
        if size == 0 {
            // The creator died before sizing it: nothing to reset.
            return Ok(Recovery::Claimed(file));
        }
        if size < HEADER_LEN {
            // No creator leaves a file this short: not ours.
            return Ok(Recovery::Live);
        }
        // Read with pread, not a mapping: nothing here can fault.
        let mut h = [0u8; HEADER_LEN as usize];
        if nix::sys::uio::pread(&file, &mut h, 0).ok() != Some(h.len()) {
            return Ok(Recovery::Live);
        }
        let word = |at: usize, n: usize| {
            let mut b = [0u8; 8];
            b[..n].copy_from_slice(&h[at..at + n]);
            u64::from_le_bytes(b)
        };
        let magic = word(0, 8);
        if magic != 0 && magic != MAGIC {
            // A foreign file is never touched.
            return Ok(Recovery::Live);
        }
        if word(12, 4) == u64::from(init::READY) {
            return Ok(Recovery::Live);
        }
        // A creator of an older build took no lock: if the header names a
        // creator that is still alive (and not this process, whose own
        // failed attempt would have left it), leave it be.
        let creator = process::ProcId {
            pid: word(112, 4) as u32,
            start: word(120, 8),
        };
        if creator.pid != 0
            && creator.pid != std::process::id()
            && process::liveness(creator) == process::Liveness::Alive
        {
            return Ok(Recovery::Live);
        }
        // Reset in place. Shrink no further than a header: an opener that
        // mapped the old size reads only the header until READY, so it can
        // never touch a page that is gone.
        file.set_len(HEADER_LEN).map_err(|e| map_io(e, location))?;
        nix::sys::uio::pwrite(&file, &[0u8; HEADER_LEN as usize], 0)
            .map_err(|e| map_errno(e, location))?;
        Ok(Recovery::Claimed(file))
    }

    fn build(
        location: &Location,
        file: &File,
        fields: &mut HeaderFields,
        mode: u32,
        unlink: bool,
        init: impl FnOnce(&Segment),
    ) -> Result<Segment, SegmentError> {
        let anonymous = matches!(location, Location::Anonymous);
        if !anonymous {
            // shm_open/open applied the umask (and a recovered file has its
            // dead creator's mode); set exactly what was asked.
            file.set_permissions(std::fs::Permissions::from_mode(mode))
                .map_err(|e| map_io(e, location))?;
        }
        if anonymous {
            // A memfd lives on the kernel's internal tmpfs, which has no size
            // limit: a write to it cannot meet a full file system (no
            // `SIGBUS` to prevent), and allocating ahead would commit every
            // slot of a large queue at once (a 4 GiB byte queue: 4 GiB of
            // memory before the first message). Sized sparse, its pages come
            // with first use, as anonymous memory's do.
            file.set_len(fields.total_len)
                .map_err(|e| map_io(e, location))?;
        } else {
            preallocate(file, fields.total_len, location)?;
        }
        if anonymous {
            // Seal the size: no holder of the fd can shrink it under a mapping.
            let seals = SealFlag::from_bits_retain(if Kind::from_raw(fields.kind).grows() {
                GROWING_SEALS
            } else {
                REQUIRED_SEALS
            });
            nix::fcntl::fcntl(file.as_raw_fd(), FcntlArg::F_ADD_SEALS(seals))
                .map_err(|e| SegmentError::Io(e.into()))?;
        }
        let map = MmapOptions::new()
            .len(fields.total_len as usize)
            .map_raw(file)
            .map_err(|e| map_io(e, location))?;
        let me = process::current();
        fields.magic = MAGIC;
        fields.version = VERSION;
        fields.creator_pid = me.pid;
        fields.creator_start = me.start;
        fields.creator_pid_ns = process::pid_namespace();
        fields.creator_uid = nix::unistd::getuid().as_raw();
        fields.created_unix_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let seg = Segment {
            map,
            len: fields.total_len,
            location: location.clone(),
            fd: None,
            unlink_on_drop: AtomicBool::new(unlink && !anonymous),
            owner_pid: me.pid,
            pid_ns: fields.creator_pid_ns,
            ident: file_ident(file),
            held: None,
        };
        let header = seg.header();
        header.begin_init();
        header.write(fields);
        init(&seg);
        test_hooks::reached(test_hooks::WRITTEN);
        header.publish();
        Ok(seg)
    }

    /// Opens an existing segment and returns it with its validated header
    /// snapshot (magic, version, checksum, size). Kind-specific checks are
    /// the caller's.
    pub fn open(
        location: &Location,
        opts: &SegmentOptions,
    ) -> Result<(Segment, HeaderFields), SegmentError> {
        let fd = OwnedFd::from(Self::open_existing(location)?);
        Self::open_fd(location.clone(), fd, opts)
    }

    /// Opens an anonymous segment from an inherited file descriptor.
    ///
    /// # Errors
    /// `Untrusted` unless `fd` is a memfd carrying [`REQUIRED_SEALS`]: an
    /// unsealed file could be truncated by another holder under our mapping;
    /// otherwise as for [`open`](Self::open).
    pub fn from_fd(
        fd: OwnedFd,
        opts: &SegmentOptions,
    ) -> Result<(Segment, HeaderFields), SegmentError> {
        let seals = match nix::fcntl::fcntl(fd.as_raw_fd(), FcntlArg::F_GET_SEALS) {
            Ok(seals) => seals,
            Err(e) => {
                return Err(SegmentError::Untrusted(format!(
                    "fd {}: not a sealable memfd ({})",
                    fd.as_raw_fd(),
                    std::io::Error::from(e)
                )))
            }
        };
        let unsealed = |required: std::ffi::c_int| {
            SegmentError::Untrusted(format!(
                "fd {}: memfd seals {seals:#x} lack shrink, grow and seal ({required:#x}): \
                 another holder could truncate it",
                fd.as_raw_fd()
            ))
        };
        if seals & GROWING_SEALS != GROWING_SEALS {
            return Err(unsealed(REQUIRED_SEALS));
        }
        let raw = fd.as_raw_fd();
        let (seg, fields) = Self::open_fd(Location::Anonymous, fd, opts)?;
        // Only the containers may grow: every other kind is sealed against
        // it too, and its size must stay the header's.
        if !Kind::from_raw(fields.kind).grows() && seals & REQUIRED_SEALS != REQUIRED_SEALS {
            return Err(SegmentError::Untrusted(format!(
                "fd {raw}: memfd seals {seals:#x} lack shrink, grow and seal \
                 ({REQUIRED_SEALS:#x}): another holder could truncate it"
            )));
        }
        Ok((seg, fields))
    }

    /// Refuses a named or path segment that another user owns, or that
    /// group or others may write, unless the caller trusts shared segments.
    fn check_trusted(
        file: &File,
        location: &Location,
        opts: &SegmentOptions,
    ) -> Result<(), SegmentError> {
        use std::os::unix::fs::MetadataExt;
        if opts.trust_shared || matches!(location, Location::Anonymous) {
            return Ok(());
        }
        let meta = file.metadata().map_err(|e| map_io(e, location))?;
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(SegmentError::Untrusted(format!(
                "{}: owned by uid {}, not by this process's uid {me}",
                location.describe(),
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(SegmentError::Untrusted(format!(
                "{}: mode {:o} lets group or others write it",
                location.describe(),
                meta.mode() & 0o777
            )));
        }
        Ok(())
    }

    fn open_fd(
        location: Location,
        fd: OwnedFd,
        opts: &SegmentOptions,
    ) -> Result<(Segment, HeaderFields), SegmentError> {
        let file = File::from(fd);
        Self::check_trusted(&file, &location, opts)?;
        let started = Instant::now();
        loop {
            let size = file.metadata().map_err(|e| map_io(e, &location))?.len();
            if size > 0 && size < HEADER_LEN {
                // No creator ever leaves a file this short: it is not ours,
                // or it was truncated.
                let mut magic = [0u8; 8];
                let n = nix::sys::uio::pread(&file, &mut magic, 0).unwrap_or(0);
                return Err(if n == 8 && u64::from_le_bytes(magic) == MAGIC {
                    SegmentError::SizeMismatch {
                        expected: HEADER_LEN,
                        found: size,
                    }
                } else {
                    SegmentError::Corrupted("not a shmring segment (shorter than a header)")
                });
            }
            if size >= HEADER_LEN {
                let map = MmapOptions::new()
                    .len(size as usize)
                    .map_raw(&file)
                    .map_err(|e| map_io(e, &location))?;
                let mut seg = Segment {
                    map,
                    len: size,
                    location: location.clone(),
                    fd: None,
                    unlink_on_drop: AtomicBool::new(false),
                    owner_pid: std::process::id(),
                    pid_ns: 0,
                    ident: file_ident(&file),
                    held: None,
                };
                let header = seg.header();
                let magic = header.magic();
                if magic != 0 && magic != MAGIC {
                    return Err(SegmentError::Corrupted("not a shmring segment (bad magic)"));
                }
                if header.init_state() == init::READY {
                    let fields = header.read();
                    fields.check_intact()?;
                    check_pid_namespace(&fields)?;
                    seg.pid_ns = fields.creator_pid_ns;
                    // A container's file grows past its header's length
                    // (its regions follow); every other kind's is exact.
                    let grows = Kind::from_raw(fields.kind).grows();
                    if fields.total_len != size && !(grows && size > fields.total_len) {
                        return Err(SegmentError::SizeMismatch {
                            expected: fields.total_len,
                            found: size,
                        });
                    }
                    if matches!(location, Location::Anonymous) {
                        seg.fd = Some(OwnedFd::from(file));
                    } else {
                        // Hold it (shared) before using it, then check
                        // that the name still names it: a `gc` (or an
                        // ended stream) that removed it between our open
                        // and our lock leaves us a segment nobody else
                        // will find; the caller opens (or creates) again.
                        lock_shared(&file).map_err(|e| map_io(e, &location))?;
                        if !seg.still_named() {
                            return Err(SegmentError::NotFound(location.describe()));
                        }
                        seg.held = Some(file);
                    }
                    return Ok((seg, fields));
                }
            }
            if started.elapsed() >= opts.init_timeout {
                return Err(SegmentError::NotInitialized);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Stops a handle used in another pid namespace than the segment's (a
    /// handle inherited by a child forked into a new pid namespace), where
    /// the owners recorded in its locks name other tasks, or none: a live
    /// owner could be judged dead. One relaxed load of a cached value.
    ///
    /// # Panics
    /// In such a process: the handle must not be used there (a bug, as
    /// using an endpoint in a process that did not attach it).
    #[inline(always)]
    pub fn assert_pid_namespace(&self) {
        let ours = process::pid_namespace();
        if self.pid_ns != 0 && ours != 0 && self.pid_ns != ours {
            foreign_namespace(self.pid_ns, ours);
        }
    }

    /// Whether this process may use pids recorded in the segment: refuses
    /// (`ForeignPidNamespace`) a segment whose creator lived in another pid
    /// namespace, when both are known.
    pub fn check_pid_namespace(fields: &HeaderFields) -> Result<(), SegmentError> {
        check_pid_namespace(fields)
    }

    /// Removes a segment's name (named or path). Mappings stay valid.
    pub fn remove(location: &Location) -> Result<(), SegmentError> {
        let _dir = dir_lock(location);
        Self::remove_unlocked(location)
    }

    fn remove_unlocked(location: &Location) -> Result<(), SegmentError> {
        match location {
            Location::Named(name) => nix::sys::mman::shm_unlink(shm_name(name)?.as_str())
                .map_err(|e| map_errno(e, location)),
            Location::Path(p) => std::fs::remove_file(p).map_err(|e| map_io(e, location)),
            Location::Anonymous => Ok(()),
        }
    }

    /// Removes the name if it still names this segment, not one created at
    /// the same name since (its file's device and inode are compared).
    /// True if it was removed. The caller makes sure that only one process
    /// decides to remove (between the check and the unlink, a new segment
    /// can appear at the name only if someone else removed this one).
    pub fn remove_if_same(&self) -> bool {
        let _dir = dir_lock(&self.location);
        self.still_named() && Self::remove_unlocked(&self.location).is_ok()
    }

    /// For `gc`: removes the segment file at `path` (in `location`'s
    /// directory) if no process holds it — every handle holds its file
    /// with a shared lock, so an exclusive one taken without waiting proves
    /// nobody does — and the name still names the file that was judged.
    /// `Ok(false)`: held (kept).
    pub fn remove_unused(location: &Location, path: &Path) -> std::io::Result<bool> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC).bits())
            .open(path)?;
        if !try_lock(&file)? {
            return Ok(false);
        }
        let ident = file_ident(&file);
        let _dir = dir_lock(location);
        let same = std::fs::symlink_metadata(path).is_ok_and(|m| Some((m.dev(), m.ino())) == ident);
        if !same {
            return Ok(false);
        }
        std::fs::remove_file(path)?;
        Ok(true)
    }

    /// Whether the name (named or path segment) still names this segment.
    /// Anonymous: true.
    pub fn still_named(&self) -> bool {
        let (Some(path), Some(ident)) = (self.path(), self.ident) else {
            return true;
        };
        std::fs::symlink_metadata(&path).is_ok_and(|m| (m.dev(), m.ino()) == ident)
    }

    /// The header at offset 0.
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping is at least HEADER_LEN bytes (checked before
        // every construction) and page-aligned; Header is all atomics, valid
        // for any bit pattern, and lives as long as the mapping (&self).
        unsafe { &*(self.map.as_mut_ptr() as *const Header) }
    }

    /// A pointer to `count` values of `T` at `offset`, if they lie inside
    /// the mapping and `offset` is aligned for `T`.
    pub fn at<T>(&self, offset: u64, count: u64) -> Option<NonNull<T>> {
        let size = (std::mem::size_of::<T>() as u64).checked_mul(count)?;
        let end = offset.checked_add(size)?;
        if end > self.len || !offset.is_multiple_of(std::mem::align_of::<T>() as u64) {
            return None;
        }
        // SAFETY: offset + size <= len: the pointer stays inside the mapping.
        NonNull::new(unsafe { self.map.as_mut_ptr().add(offset as usize) } as *mut T)
    }

    /// The mapped length in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Where the segment lives.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// The memfd of an anonymous segment.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|f| f.as_fd())
    }

    /// The open file behind this handle, named or anonymous (a named
    /// segment's is the one its shared `flock` is held on).
    pub fn file_fd(&self) -> Option<BorrowedFd<'_>> {
        match (&self.held, &self.fd) {
            (Some(f), _) => Some(f.as_fd()),
            (None, Some(fd)) => Some(fd.as_fd()),
            (None, None) => None,
        }
    }

    /// The raw memfd of an anonymous segment.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.fd.as_ref().map(|f| f.as_raw_fd())
    }

    /// Keep (or stop keeping) the name after this handle is dropped.
    pub fn set_persist(&self, persist: bool) {
        // Relaxed: read only by this handle's Drop.
        if persist {
            self.unlink_on_drop.store(false, Ordering::Relaxed);
        }
    }

    /// Whether dropping this handle will unlink the name.
    pub fn unlinks_on_drop(&self) -> bool {
        // Relaxed: process-local flag.
        self.unlink_on_drop.load(Ordering::Relaxed)
    }

    /// Path of a named or file-backed segment.
    pub fn path(&self) -> Option<PathBuf> {
        match &self.location {
            Location::Named(n) => Some(Path::new("/dev/shm").join(n.trim_start_matches('/'))),
            Location::Path(p) => Some(p.clone()),
            Location::Anonymous => None,
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Relaxed: process-local flag. A forked child inherits the handle but
        // must not unlink the creator's name: check that we are the creator.
        if self.unlink_on_drop.load(Ordering::Relaxed) && self.owner_pid == std::process::id() {
            // Only if the name is still ours: an ended stream's name may
            // have gone, and a new segment been made at it, meanwhile.
            self.remove_if_same();
        }
    }
}

/// A file's (device, inode).
fn file_ident(file: &File) -> Option<(u64, u64)> {
    file.metadata().ok().map(|m| (m.dev(), m.ino()))
}

/// Refuses a segment created in another pid namespace (both known and
/// different): its recorded pids cannot be judged here. Unknown on either
/// side (no `/proc`): allowed, since the creator could not tell either.
pub(crate) fn check_pid_namespace(fields: &HeaderFields) -> Result<(), SegmentError> {
    let ours = process::pid_namespace();
    if fields.creator_pid_ns != 0 && ours != 0 && fields.creator_pid_ns != ours {
        return Err(SegmentError::ForeignPidNamespace {
            segment: fields.creator_pid_ns,
            ours,
        });
    }
    Ok(())
}

#[cold]
#[inline(never)]
#[track_caller]
fn foreign_namespace(segment: u64, ours: u64) -> ! {
    panic!(
        "shmring: a segment of pid namespace {segment} used from pid namespace {ours} \
         (a handle inherited across unshare(CLONE_NEWPID)?): its lock owners cannot be \
         judged from here"
    )
}
