//! A container's file, mapped once with room to grow: the [`Mem`] of normal
//! builds.
//!
//! The file starts at its header's length and grows (`ftruncate`, then
//! `posix_fallocate`, so a full file system fails the growing call with
//! `NoSpace` instead of faulting later) whenever a writer moves the
//! contents to a larger region. Every process maps the file once over a
//! reserved range of addresses (`MAP_NORESERVE`: no memory is committed)
//! as large as the container may become, so growing never moves a mapping
//! and never invalidates a pointer another thread of this process holds.
//!
//! Every handle of one file in one process shares one mapping
//! ([`Heap::shared`]).
//!
//! Pages past the end of a file fault with `SIGBUS`, so no word is handed
//! out past the length this process has seen: `known`, refreshed with one
//! `fstat` only when a root names an offset beyond it (once per growth, per
//! process).

use super::engine::Mem;
use crate::error::ContainerError;
use crate::loom::{AtomicPtr, AtomicU64, Ordering};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::sync::{Arc, Mutex, Weak};

/// Addresses reserved per handle when the container has no larger limit:
/// the most a container without a limit can grow to.
pub(crate) const DEFAULT_RESERVE: u64 = 64 << 30;

/// The mapped file.
pub(crate) struct Heap {
    base: NonNull<u8>,
    reserve: u64,
    /// Bytes of the file this process has seen exist (it never shrinks:
    /// anonymous files are sealed against it, and named ones are shrunk by
    /// no shmring code).
    known: AtomicU64,
    /// The file: a descriptor of its own (a duplicate of the first
    /// opener's), so the mapping outlives any one handle.
    fd: OwnedFd,
}

// SAFETY: the heap is a mapping of shared memory that every access reaches
// through atomics (`words`); the raw pointer is only an address.
unsafe impl Send for Heap {}
// SAFETY: as above: shared access is atomic.
unsafe impl Sync for Heap {}

impl std::fmt::Debug for Heap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Heap")
            .field("reserve", &self.reserve)
            .field("known", &self.known.load(Ordering::Relaxed))
            .finish()
    }
}

fn file_size(fd: RawFd) -> std::io::Result<u64> {
    // SAFETY: `stat` is plain data, written by fstat before we read it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor (kept by the segment); `st` is a
    // valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(st.st_size as u64)
}

/// The heaps of this process, one per file (device, inode) and reserve:
/// every handle of a container in one process shares one mapping, so a
/// process may hold any number of handles (each mapping reserves 64 GiB of
/// addresses). An entry's heap keeps its file open, so its inode cannot be
/// reused by another file while the entry can be upgraded.
type Registry = Vec<((u64, u64), u64, Weak<Heap>)>;

/// The table, created on first use. A forked child starts a new one: the
/// parent's may be locked by a thread that the child does not have (one
/// that was opening a container at the fork), and would then wait for ever.
/// The old table is left as it is (leaked): the heaps it names stay mapped
/// for the handles the child inherited, and it is never locked again.
static REGISTRY: AtomicPtr<Mutex<Registry>> = AtomicPtr::new(std::ptr::null_mut());

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    // Acquire: pairs with the Release of the CAS that published the table.
    let mut table = REGISTRY.load(Ordering::Acquire);
    if table.is_null() {
        crate::process::watch_fork_for(crate::process::ForkCache::ContainerHeaps, || {
            // Relaxed: the forked child's handler runs before any other
            // thread of the child exists.
            REGISTRY.store(std::ptr::null_mut(), Ordering::Relaxed);
        });
        let fresh = Box::into_raw(Box::new(Mutex::new(Registry::new())));
        // AcqRel: publish ours (Release), or see the winner's (Acquire).
        table = match REGISTRY.compare_exchange(
            std::ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => {
                // SAFETY: `fresh` came from `Box::into_raw` above and was
                // never published.
                drop(unsafe { Box::from_raw(fresh) });
                winner
            }
        };
    }
    // SAFETY: a published table is never freed (a forked child leaks its
    // parent's), so the reference is good for the rest of the process.
    let table: &'static Mutex<Registry> = unsafe { &*table };
    table.lock().unwrap_or_else(|e| e.into_inner())
}

fn file_id(fd: RawFd) -> std::io::Result<(u64, u64)> {
    // SAFETY: `stat` is plain data, written by fstat before we read it.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor; `st` is a valid out-pointer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

impl Heap {
    /// This process's heap of the file `fd` names, with at least `reserve`
    /// bytes of addresses: the one already mapped, or a new one.
    pub(crate) fn shared(fd: BorrowedFd<'_>, reserve: u64) -> Result<Arc<Heap>, ContainerError> {
        let id = file_id(fd.as_raw_fd()).map_err(ContainerError::Io)?;
        let mut heaps = registry();
        heaps.retain(|(_, _, w)| w.strong_count() > 0);
        let found = heaps
            .iter()
            .filter(|(i, r, _)| *i == id && *r >= reserve)
            .find_map(|(_, _, w)| w.upgrade());
        if let Some(h) = found {
            return Ok(h);
        }
        let own = fd.try_clone_to_owned().map_err(ContainerError::Io)?;
        let heap = Arc::new(Heap::map(own, reserve)?);
        heaps.push((id, heap.reserve, Arc::downgrade(&heap)));
        Ok(heap)
    }

    /// Maps `fd` over `reserve` bytes of addresses.
    fn map(fd: OwnedFd, reserve: u64) -> Result<Heap, ContainerError> {
        let size = file_size(fd.as_raw_fd()).map_err(ContainerError::Io)?;
        let reserve = reserve.max(size);
        let len = usize::try_from(reserve).map_err(|_| ContainerError::Full { limit: reserve })?;
        // SAFETY: a fresh shared mapping of a file we keep open; no
        // existing memory is affected. Pages past the file's end are never
        // touched (see `words`).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(ContainerError::Io(std::io::Error::last_os_error()));
        }
        Ok(Heap {
            base: NonNull::new(p.cast::<u8>()).expect("mmap returned null"),
            reserve,
            known: AtomicU64::new(size),
            fd,
        })
    }

    /// The most the file can grow to in this mapping.
    pub(crate) fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Whether `end` bytes of the file exist (an `fstat` when beyond what
    /// this process has seen).
    fn covers(&self, end: u64) -> bool {
        // Relaxed: a cache of the file's size; the file itself is the truth.
        if end <= self.known.load(Ordering::Relaxed) {
            return true;
        }
        if end > self.reserve {
            return false;
        }
        match file_size(self.fd.as_raw_fd()) {
            Ok(size) => {
                let size = size.min(self.reserve);
                // Relaxed: as above.
                self.known.fetch_max(size, Ordering::Relaxed);
                end <= size
            }
            Err(_) => false,
        }
    }

    /// Makes `[off, off + len)` exist and be backed by memory: grows the
    /// file if it is shorter, then allocates the range (a region that was
    /// released before has no pages).
    pub(crate) fn provide(&self, off: u64, len: u64, limit: u64) -> Result<(), ContainerError> {
        let end = off.checked_add(len).ok_or(ContainerError::Full {
            limit: self.reserve,
        })?;
        let cap = if limit == 0 {
            self.reserve
        } else {
            limit.min(self.reserve)
        };
        if end > cap {
            return Err(ContainerError::Full { limit: cap });
        }
        let size = file_size(self.fd.as_raw_fd()).map_err(ContainerError::Io)?;
        if end > size {
            // SAFETY: plain syscall on our descriptor; growing only.
            if unsafe { libc::ftruncate(self.fd.as_raw_fd(), end as libc::off_t) } != 0 {
                let e = std::io::Error::last_os_error();
                return Err(match e.raw_os_error() {
                    Some(libc::ENOSPC) | Some(libc::EFBIG) => {
                        ContainerError::NoSpace { needed: end - size }
                    }
                    _ => ContainerError::Io(e),
                });
            }
        }
        let r = loop {
            // SAFETY: plain syscall on our descriptor.
            let r = unsafe {
                libc::posix_fallocate(self.fd.as_raw_fd(), off as libc::off_t, len as libc::off_t)
            };
            if r != libc::EINTR {
                break r;
            }
        };
        match r {
            0 | libc::EOPNOTSUPP | libc::EINVAL => {}
            libc::ENOSPC | libc::ENOMEM => return Err(ContainerError::NoSpace { needed: len }),
            e => return Err(ContainerError::Io(std::io::Error::from_raw_os_error(e))),
        }
        // Relaxed: a cache of the file's size.
        self.known.fetch_max(end.max(size), Ordering::Relaxed);
        Ok(())
    }

    /// Gives the memory of `[off, off + len)` back (a region nobody's root
    /// names any more). Best effort: a file system that cannot punch holes
    /// keeps the pages until the region is reused.
    pub(crate) fn release(&self, off: u64, len: u64) {
        // SAFETY: plain syscall on our descriptor; the size is kept, so no
        // mapping of any process loses pages it may touch (they read as
        // zeros, which every reader checks like any other bytes).
        unsafe {
            libc::fallocate(
                self.fd.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off as libc::off_t,
                len as libc::off_t,
            )
        };
    }
}

impl Mem for Heap {
    #[inline]
    fn words(&self, off: u64, n: u64) -> Option<&[AtomicU64]> {
        let end = off.checked_add(n.checked_mul(8)?)?;
        if !off.is_multiple_of(8) || !self.covers(end) {
            return None;
        }
        // SAFETY: `[off, end)` lies inside the reservation and inside the
        // file (checked above), 8-aligned (a page-aligned base plus an
        // offset that is a multiple of 8); shared memory is only ever
        // accessed as atomics, so aliasing it as `AtomicU64`s is sound.
        Some(unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(off as usize).cast::<AtomicU64>(),
                n as usize,
            )
        })
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, with its length; nothing
        // borrowed from it outlives `&self`.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.reserve as usize) };
    }
}
