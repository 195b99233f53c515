//! Every public error type, in one place: segments ([`SegmentError`]),
//! queues and byte queues (send and receive errors), locks and the other
//! synchronisation primitives ([`OwnerDied`], [`TryLockError`],
//! [`LockTimeoutError`], [`SemaphoreOverflow`], [`BarrierError`]),
//! transports ([`TransportError`], [`UnknownTransport`]) and, with the
//! `serde` feature, values (`ValueSendError`, `ValueRecvError`). The
//! code that returns them lives in the layers above; this file names
//! nothing but `std`, `thiserror`, postcard's error and the plain
//! descriptions in `types`.
//!
//! Channel errors follow crossbeam-channel's shapes and hand the unsent value
//! back. Each also has a `Corrupted` case: shmring never trusts what it reads
//! from shared memory, and a scribbled segment is reported, never obeyed.

use crate::types::{Flavor, Kind, Role, TypeDesc};
use std::fmt;

/// Why creating, opening or attaching to a segment failed.
///
/// Every variant says what differed, so the message alone is enough to act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    /// No segment of that name or path exists.
    #[error("segment {0:?} not found")]
    NotFound(String),
    /// `create` refuses to reuse an existing name.
    #[error("segment {0:?} already exists")]
    AlreadyExists(String),
    /// The segment holds something else.
    #[error("segment is a {found}, expected a {expected}")]
    WrongKind {
        /// What the caller asked for.
        expected: Kind,
        /// What the header says.
        found: Kind,
    },
    /// The queue was created with another flavor.
    #[error("queue flavor is {found}, expected {expected}")]
    FlavorMismatch {
        /// What the caller asked for.
        expected: Flavor,
        /// What the header says.
        found: Flavor,
    },
    /// The element type differs from the one the segment was created with.
    #[error("element type mismatch: expected {expected}, found {found}")]
    TypeMismatch {
        /// The caller's type.
        expected: TypeDesc,
        /// The type recorded in the header.
        found: TypeDesc,
    },
    /// The segment was made by an incompatible layout version.
    #[error("layout version {found}, this build reads version {expected}")]
    VersionMismatch {
        /// The version this build writes and reads.
        expected: u32,
        /// The version in the header.
        found: u32,
    },
    /// The file is shorter (or longer) than the header says it must be.
    #[error("segment size mismatch: header needs {expected} bytes, file has {found}")]
    SizeMismatch {
        /// Bytes the header's geometry needs.
        expected: u64,
        /// Bytes the file actually has.
        found: u64,
    },
    /// An existing queue has another capacity than the one asked for.
    #[error("queue capacity is {found}, expected {expected}")]
    CapacityMismatch {
        /// What the caller asked for.
        expected: u64,
        /// What the header says.
        found: u64,
    },
    /// The creator has not finished initialising the segment (or died doing so).
    #[error("segment is not initialised (creator still busy, or died while creating it)")]
    NotInitialized,
    /// The header or control block fails validation.
    #[error("segment is corrupted: {0}")]
    Corrupted(&'static str),
    /// The segment may have been made or changed by someone this process
    /// does not trust: owned by another user, writable by group or others,
    /// or reached through a symbolic link. Open it only if that is intended
    /// (`trust_shared` on the builder).
    #[error("untrusted segment {0}")]
    Untrusted(String),
    /// The operating system refused access.
    #[error("permission denied for segment {0:?}")]
    PermissionDenied(String),
    /// A bad argument: empty or invalid name, capacity 0, an element type too large.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The array's length differs from the one asked for.
    #[error("array length mismatch: expected {expected}, found {found}")]
    LengthMismatch {
        /// What the caller asked for.
        expected: u64,
        /// What the segment records.
        found: u64,
    },
    /// The byte queue's maximum message size differs from the one asked for.
    #[error("maximum message size mismatch: expected {expected} bytes, found {found}")]
    MessageSizeMismatch {
        /// What the caller asked for.
        expected: u64,
        /// What the segment records.
        found: u64,
    },
    /// An SPSC queue already has a live endpoint of this role.
    #[error(
        "this SPSC queue already has a live {role}{}",
        holder.map_or(String::new(), |p| format!(" (held by pid {p})"))
    )]
    RoleTaken {
        /// The role asked for.
        role: Role,
        /// The process holding it, if it could be read from the endpoint
        /// table (`None` if it let go meanwhile).
        holder: Option<u32>,
    },
    /// One end of a [`Pipe`](crate::Pipe) is already attached by a live
    /// process (a pipe has one left and one right end, like Python's
    /// `Pipe()`; a second client needs a pipe of its own).
    #[error(
        "the {end} end of this pipe is already attached{}",
        holder.map_or(String::new(), |p| format!(" by pid {p}"))
    )]
    PipeEndTaken {
        /// `"left"` or `"right"`.
        end: &'static str,
        /// The process holding it, if known.
        holder: Option<u32>,
    },
    /// The segment was created in another pid namespace (a container that
    /// shares `/dev/shm` but not pids). Pids recorded there name other
    /// processes, or none, in this one, so a dead peer could not be told
    /// from a live one: shmring refuses instead of guessing. Share the pid
    /// namespace too (Docker `--pid=container:<id>` or `--pid=host`,
    /// Kubernetes `shareProcessNamespace: true`).
    #[error(
        "segment was created in pid namespace {segment}, this process lives in {ours}: \
         peers' liveness cannot be judged across pid namespaces (share the pid namespace)"
    )]
    ForeignPidNamespace {
        /// The creator's pid namespace (inode of `/proc/self/ns/pid`).
        segment: u64,
        /// This process's.
        ours: u64,
    },
    /// A sender asked to join a stream that was closed (see
    /// [`Sender::close`](crate::Sender::close)): the stream has ended, and
    /// nothing more may be sent on it. A new stream needs a new queue
    /// (unlink the name, or wait until the last receiver removed it).
    #[error("the queue's stream is closed: no sender may attach")]
    Closed,
    /// Every entry of the endpoint table is in use by a live process.
    #[error("endpoint table is full ({0} live endpoints)")]
    TooManyEndpoints(usize),
    /// The file system (or memory) had no room for the whole segment when
    /// it was created: every byte is allocated at creation, so a segment
    /// too large for `/dev/shm` (Docker's default is 64 MiB) fails here
    /// instead of killing its users with `SIGBUS` on a later write. Nothing
    /// is left behind.
    #[error("no space for segment {name:?}: {needed} bytes could not be allocated (is /dev/shm too small?)")]
    NoSpace {
        /// The segment's name or path.
        name: String,
        /// Bytes the segment needs.
        needed: u64,
    },
    /// Another I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

macro_rules! value_error {
    (
        $(#[$meta:meta])*
        $name:ident { $( $(#[$vmeta:meta])* $variant:ident => $msg:literal, $is:ident; )* }
    ) => {
        $(#[$meta])*
        #[derive(PartialEq, Eq, Clone, Copy)]
        pub enum $name<T> {
            $( $(#[$vmeta])* $variant(T), )*
        }

        impl<T> $name<T> {
            /// Returns the value that was not sent.
            pub fn into_inner(self) -> T {
                match self { $( $name::$variant(v) => v, )* }
            }
            $(
                #[doc = concat!("Whether this is the `", stringify!($variant), "` case.")]
                pub fn $is(&self) -> bool { matches!(self, $name::$variant(_)) }
            )*
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $( $name::$variant(_) => f.write_str(concat!(stringify!($name), "::", stringify!($variant), "(..)")), )* }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $( $name::$variant(_) => f.write_str($msg), )* }
            }
        }

        impl<T> std::error::Error for $name<T> {}
    };
}

value_error! {
    /// Why [`Sender::try_send`](crate::Sender::try_send) failed; holds the value back.
    TrySendError {
        /// The queue is full.
        Full => "sending on a full queue", is_full;
        /// Every receiver is gone (for now: one may attach again).
        Disconnected => "sending on a queue with no receivers", is_disconnected;
        /// The stream is closed: nothing can be sent on it any more.
        Closed => "sending on a closed queue", is_closed;
        /// The queue's shared state failed a check.
        Corrupted => "sending on a corrupted queue", is_corrupted;
    }
}

value_error! {
    /// Why [`Sender::send`](crate::Sender::send) failed; holds the value back.
    SendError {
        /// Every receiver is gone (for now: one may attach again).
        Disconnected => "sending on a queue with no receivers", is_disconnected;
        /// The stream is closed: nothing can be sent on it any more.
        Closed => "sending on a closed queue", is_closed;
        /// The queue's shared state failed a check.
        Corrupted => "sending on a corrupted queue", is_corrupted;
    }
}

value_error! {
    /// Why [`Sender::send_timeout`](crate::Sender::send_timeout) failed; holds the value back.
    SendTimeoutError {
        /// The queue stayed full until the deadline.
        Timeout => "timed out sending on a full queue", is_timeout;
        /// Every receiver is gone (for now: one may attach again).
        Disconnected => "sending on a queue with no receivers", is_disconnected;
        /// The stream is closed: nothing can be sent on it any more.
        Closed => "sending on a closed queue", is_closed;
        /// The queue's shared state failed a check.
        Corrupted => "sending on a corrupted queue", is_corrupted;
    }
}

/// Why sending a byte message failed. The message stays the caller's (it
/// was passed by reference), and nothing queued was touched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ByteSendError {
    /// The message is larger than the queue's maximum message size.
    #[error("a message of {len} bytes exceeds the queue's maximum of {max} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The queue's maximum message size, fixed at creation.
        max: usize,
    },
    /// The queue is full (`try_` calls only).
    #[error("sending on a full queue")]
    Full,
    /// The queue stayed full until the deadline (timeout calls only).
    #[error("timed out sending on a full queue")]
    Timeout,
    /// Every receiver is gone (for now: one may attach again).
    #[error("sending on a queue with no receivers")]
    Disconnected,
    /// The stream is closed: nothing can be sent on it any more.
    #[error("sending on a closed queue")]
    Closed,
    /// The queue's shared state failed a check.
    #[error("sending on a corrupted queue")]
    Corrupted,
}

/// Why [`Receiver::try_recv`](crate::Receiver::try_recv) returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TryRecvError {
    /// The queue is empty, and a sender is still attached (or none has
    /// attached yet).
    #[error("receiving on an empty queue")]
    Empty,
    /// The queue is empty and no sender is attached now, though one was
    /// (it dropped its end, or its process died). Not permanent: a sender
    /// that attaches later undoes it. Wait for one with `wait_connected`.
    #[error("receiving on an empty queue with no senders")]
    Disconnected,
    /// The stream is closed, every sender has left and every message was
    /// received: the end of the stream, for good. No sender can attach any
    /// more.
    #[error("receiving on a closed queue: end of stream")]
    Closed,
    /// The queue's shared state failed a check.
    #[error("receiving on a corrupted queue")]
    Corrupted,
}

/// Why [`Receiver::recv`](crate::Receiver::recv) returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// The queue is empty and no sender is attached now, though one was
    /// (it dropped its end, or its process died). Not permanent: a sender
    /// that attaches later undoes it. Wait for one with `wait_connected`.
    #[error("receiving on an empty queue with no senders")]
    Disconnected,
    /// The stream is closed, every sender has left and every message was
    /// received: the end of the stream, for good. No sender can attach any
    /// more.
    #[error("receiving on a closed queue: end of stream")]
    Closed,
    /// The queue's shared state failed a check.
    #[error("receiving on a corrupted queue")]
    Corrupted,
}

/// Why [`Receiver::recv_timeout`](crate::Receiver::recv_timeout) returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecvTimeoutError {
    /// The queue stayed empty until the deadline.
    #[error("timed out receiving on an empty queue")]
    Timeout,
    /// The queue is empty and no sender is attached now, though one was
    /// (it dropped its end, or its process died). Not permanent: a sender
    /// that attaches later undoes it. Wait for one with `wait_connected`.
    #[error("receiving on an empty queue with no senders")]
    Disconnected,
    /// The stream is closed, every sender has left and every message was
    /// received: the end of the stream, for good. No sender can attach any
    /// more.
    #[error("receiving on a closed queue: end of stream")]
    Closed,
    /// The queue's shared state failed a check.
    #[error("receiving on a corrupted queue")]
    Corrupted,
}

impl TryRecvError {
    /// Whether this is the `Empty` case.
    pub fn is_empty(&self) -> bool {
        matches!(self, TryRecvError::Empty)
    }
    /// Whether this is the `Disconnected` case.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TryRecvError::Disconnected)
    }
    /// Whether this is the `Closed` case (end of stream).
    pub fn is_closed(&self) -> bool {
        matches!(self, TryRecvError::Closed)
    }
}

impl RecvError {
    /// Whether this is the `Closed` case (end of stream).
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvError::Closed)
    }
}

impl RecvTimeoutError {
    /// Whether this is the `Timeout` case.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }
    /// Whether this is the `Disconnected` case.
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvTimeoutError::Disconnected)
    }
    /// Whether this is the `Closed` case (end of stream).
    pub fn is_closed(&self) -> bool {
        matches!(self, RecvTimeoutError::Closed)
    }
}

impl From<RecvError> for TryRecvError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => TryRecvError::Disconnected,
            RecvError::Closed => TryRecvError::Closed,
            RecvError::Corrupted => TryRecvError::Corrupted,
        }
    }
}

impl From<RecvError> for RecvTimeoutError {
    fn from(e: RecvError) -> Self {
        match e {
            RecvError::Disconnected => RecvTimeoutError::Disconnected,
            RecvError::Closed => RecvTimeoutError::Closed,
            RecvError::Corrupted => RecvTimeoutError::Corrupted,
        }
    }
}

// Locks (`sync::lock`).

/// The previous owner died holding the lock; the lock is now the caller's,
/// and the guard is inside. The protected state may be inconsistent.
pub struct OwnerDied<G>(pub G);

impl<G> OwnerDied<G> {
    /// The guard: the lock is held.
    pub fn into_inner(self) -> G {
        self.0
    }
}

impl<G> fmt::Debug for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnerDied(..)")
    }
}

impl<G> fmt::Display for OwnerDied<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the previous owner died holding the lock")
    }
}

impl<G> std::error::Error for OwnerDied<G> {}

/// Why `try_lock` did not simply succeed.
pub enum TryLockError<G> {
    /// A live thread holds the lock.
    WouldBlock,
    /// The previous owner died; the lock is now the caller's.
    OwnerDied(G),
}

/// Why a lock with a timeout did not simply succeed.
pub enum LockTimeoutError<G> {
    /// A live thread held the lock until the deadline.
    Timeout,
    /// The previous owner died; the lock is now the caller's.
    OwnerDied(G),
}

macro_rules! lock_error_impls {
    ($name:ident, $other:ident, $msg:literal) => {
        impl<G> $name<G> {
            /// The guard, if the lock was taken (after an owner's death).
            pub fn into_guard(self) -> Option<G> {
                match self {
                    $name::$other => None,
                    $name::OwnerDied(g) => Some(g),
                }
            }
        }
        impl<G> fmt::Debug for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::$other => {
                        f.write_str(concat!(stringify!($name), "::", stringify!($other)))
                    }
                    $name::OwnerDied(_) => {
                        f.write_str(concat!(stringify!($name), "::OwnerDied(..)"))
                    }
                }
            }
        }
        impl<G> fmt::Display for $name<G> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    $name::$other => f.write_str($msg),
                    $name::OwnerDied(_) => f.write_str("the previous owner died holding the lock"),
                }
            }
        }
        impl<G> std::error::Error for $name<G> {}
        impl<G> PartialEq for $name<G> {
            fn eq(&self, other: &Self) -> bool {
                matches!(
                    (self, other),
                    ($name::$other, $name::$other) | ($name::OwnerDied(_), $name::OwnerDied(_))
                )
            }
        }
    };
}
lock_error_impls!(TryLockError, WouldBlock, "the lock is held");
lock_error_impls!(LockTimeoutError, Timeout, "timed out waiting for the lock");

// Semaphores and barriers (`sync::primitives`).

/// A release beyond a bounded semaphore's initial value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("semaphore released beyond its bound of {bound}")]
pub struct SemaphoreOverflow {
    /// The bound (the initial value of a bounded semaphore, or `u32::MAX`).
    pub bound: u32,
}

/// Why a barrier wait failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BarrierError {
    /// The other parties did not all arrive in time; this caller's arrival
    /// was withdrawn, so the barrier stays usable.
    #[error("timed out waiting at the barrier")]
    Timeout,
    /// The barrier's shared state failed a check.
    #[error("the barrier's shared state is corrupted")]
    Corrupted,
}

// Transports (`transport`).

/// An unknown transport name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?} (known: shm-spsc, shm-mpmc, pipe, fifo, unix, tcp)")]
pub struct UnknownTransport(pub String);

/// Why a transport call failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The message is larger than the transport's maximum; nothing was sent.
    #[error("a message of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The transport's maximum message size.
        max: usize,
    },
    /// A non-blocking call could not proceed now (full, or nothing to read).
    #[error("the operation would block")]
    WouldBlock,
    /// A timed call's deadline passed.
    #[error("timed out")]
    Timeout,
    /// The peer is gone (closed, dropped, or its process died); for a
    /// receive, everything it sent has been received.
    #[error("the peer is gone")]
    Disconnected,
    /// The peer's stream ended in the middle of a message (it died while
    /// sending): the partial message is dropped.
    #[error("the peer's stream ended {got} bytes into a {expected}-byte message")]
    Truncated {
        /// The message's announced length.
        expected: usize,
        /// The bytes that arrived.
        got: usize,
    },
    /// Shared state or a frame header failed a check (e.g. a length beyond
    /// the maximum).
    #[error("corrupted: {0}")]
    Corrupted(&'static str),
    /// Setting the transport up failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// Another I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

// Shared containers (`container`).

/// Why an operation on a [`SharedMap`](crate::SharedMap) or
/// [`SharedList`](crate::SharedList) (or their typed faces) failed. Nothing
/// changed: every operation is all-or-nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ContainerError {
    /// The container's shared state failed a check (a scribbled segment).
    #[error("the container's shared state is corrupted: {0}")]
    Corrupted(&'static str),
    /// The container would outgrow its limit (the builder's `limit`, or the
    /// addresses each handle reserves).
    #[error("the container would outgrow its limit of {limit} bytes")]
    Full {
        /// The limit, in bytes of file (0: a size that overflows).
        limit: u64,
    },
    /// The file system has no room for the container to grow.
    #[error("no space left to grow the container ({needed} bytes needed)")]
    NoSpace {
        /// Bytes that could not be allocated.
        needed: u64,
    },
    /// A list position past the end.
    #[error("index {index} out of range for a list of {len}")]
    OutOfRange {
        /// The position asked for.
        index: usize,
        /// The list's length then.
        len: usize,
    },
    /// A key or value longer than a container stores.
    #[error("an item of {len} bytes is larger than the {max} a container stores")]
    TooLarge {
        /// The item's length.
        len: usize,
        /// The most a container stores.
        max: usize,
    },
    /// A value could not be encoded (typed faces).
    #[cfg(feature = "serde")]
    #[error("encoding failed: {0}")]
    Encode(postcard::Error),
    /// A stored value is not a valid encoding of the requested type (typed
    /// faces).
    #[cfg(feature = "serde")]
    #[error("decoding failed: {0}")]
    Decode(postcard::Error),
    /// A system call failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

// Values over byte queues (`channel::value`, feature `serde`).

/// Why sending a value failed; nothing was sent.
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
pub enum ValueSendError {
    /// The value's encoding does not fit the queue's maximum message size.
    #[error("the encoded value does not fit the maximum message size of {max} bytes")]
    TooLarge {
        /// The queue's maximum message size.
        max: usize,
    },
    /// The queue refused the message (full, timed out, disconnected,
    /// corrupted).
    #[error(transparent)]
    Send(#[from] ByteSendError),
    /// The value could not be encoded.
    #[error("encoding failed: {0}")]
    Encode(postcard::Error),
}

/// Why receiving a value failed.
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
pub enum ValueRecvError {
    /// The queue stayed empty (`try_` and timeout calls only).
    #[error("no message before the deadline")]
    Empty,
    /// The queue is drained and no sender is attached now (see
    /// [`RecvError::Disconnected`]).
    #[error("receiving on an empty queue with no senders")]
    Disconnected,
    /// The stream is closed and drained: the end, for good.
    #[error("receiving on a closed queue: end of stream")]
    Closed,
    /// The queue's shared state failed a check.
    #[error("receiving on a corrupted queue")]
    Corrupted,
    /// The message is not a valid encoding of the requested type; it was
    /// consumed.
    #[error("decoding failed: {0}")]
    Decode(postcard::Error),
}

#[cfg(feature = "serde")]
impl From<TryRecvError> for ValueRecvError {
    fn from(e: TryRecvError) -> Self {
        match e {
            TryRecvError::Empty => ValueRecvError::Empty,
            TryRecvError::Disconnected => ValueRecvError::Disconnected,
            TryRecvError::Closed => ValueRecvError::Closed,
            TryRecvError::Corrupted => ValueRecvError::Corrupted,
        }
    }
}

#[cfg(feature = "serde")]
impl From<RecvError> for ValueRecvError {
    fn from(e: RecvError) -> Self {
        TryRecvError::from(e).into()
    }
}

#[cfg(feature = "serde")]
impl From<RecvTimeoutError> for ValueRecvError {
    fn from(e: RecvTimeoutError) -> Self {
        match e {
            RecvTimeoutError::Timeout => ValueRecvError::Empty,
            RecvTimeoutError::Disconnected => ValueRecvError::Disconnected,
            RecvTimeoutError::Closed => ValueRecvError::Closed,
            RecvTimeoutError::Corrupted => ValueRecvError::Corrupted,
        }
    }
}

// The process pool (`pool`, feature `serde`).

/// Why a [`Pool`](crate::Pool) call, or one of its tasks, failed.
///
/// Configuration errors (`NoWorkers`, `NotInitialized`, `Unregistered`,
/// `WorkerStart`) come from the call that was misused; the task errors
/// (`Panicked`, `WorkerDied`, `Cancelled`, `Worker`) come from the task's
/// handle, from [`Pool::map`](crate::Pool::map) or from
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered).
#[cfg(feature = "serde")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// A pool of 0 workers was asked for.
    #[error("a pool needs at least one worker (0 were asked for)")]
    NoWorkers,
    /// `shmring::pool::init` was not called at the top of `main` before the
    /// pool was made (or this process is a worker whose `main` did not call
    /// it): workers re-execute this program and need that call to run.
    #[error(
        "shmring::pool::init(&[...]) must be called at the top of main before a Pool is made \
         (workers re-execute this program and start there)"
    )]
    NotInitialized,
    /// The task was not registered in `shmring::pool::init`, or another task
    /// of that name (with other input or output types) was.
    #[error(
        "task {name:?} is not registered in shmring::pool::init (or another task of that name is)"
    )]
    Unregistered {
        /// The task's name.
        name: String,
    },
    /// A worker process could not be started, or exited before it was ready.
    #[error("a worker could not start: {0}")]
    WorkerStart(String),
    /// Making the pool's shared segments failed.
    #[error(transparent)]
    Segment(#[from] SegmentError),
    /// The input could not be encoded.
    #[error("encoding the input failed: {0}")]
    Encode(postcard::Error),
    /// The result could not be decoded as the task's output type.
    #[error("decoding the result failed: {0}")]
    Decode(postcard::Error),
    /// The encoded input is larger than the pool's maximum payload.
    #[error("an encoded input of {len} bytes exceeds the pool's maximum payload of {max} bytes")]
    TooLarge {
        /// The encoded input's length.
        len: usize,
        /// The pool's maximum payload (`PoolBuilder::max_payload`).
        max: usize,
    },
    /// The task's function panicked; the panic's message. The worker survives.
    #[error("the task panicked: {0}")]
    Panicked(String),
    /// The worker running the task died (killed, crashed, exited) before it
    /// returned a result; a replacement worker was started.
    #[error("the worker (pid {pid}) running the task died: {status}")]
    WorkerDied {
        /// The dead worker's process id.
        pid: u32,
        /// How it ended (e.g. `signal: 9 (SIGKILL)`).
        status: String,
    },
    /// The worker could not run the task: its input did not decode as the
    /// task's input type, or its result did not encode (or exceeded the
    /// maximum payload). The worker survives.
    #[error("the worker could not run the task: {0}")]
    Worker(String),
    /// The task was cancelled before it finished (`shutdown(false)`).
    #[error("the task was cancelled (the pool was shut down without waiting)")]
    Cancelled,
    /// No result before the deadline (`wait_timeout`); the task goes on, and
    /// the handle can be waited on again.
    #[error("timed out waiting for the task's result")]
    Timeout,
    /// The pool is shut down: it takes no new tasks.
    #[error("the pool is shut down")]
    ShutDown,
    /// The handle's result was already taken (by `try_result` or
    /// `wait_timeout`).
    #[error("the task's result was already taken")]
    ResultTaken,
    /// The pool stopped working (its supervising thread failed, or
    /// replacement workers keep failing to start); the reason.
    #[error("the pool is broken: {0}")]
    Broken(String),
}

#[cfg(feature = "serde")]
impl PoolError {
    /// Whether this is `Panicked`.
    pub fn is_panicked(&self) -> bool {
        matches!(self, PoolError::Panicked(_))
    }
    /// Whether this is `WorkerDied`.
    pub fn is_worker_died(&self) -> bool {
        matches!(self, PoolError::WorkerDied { .. })
    }
    /// Whether this is `Cancelled`.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, PoolError::Cancelled)
    }
    /// Whether this is `Timeout`.
    pub fn is_timeout(&self) -> bool {
        matches!(self, PoolError::Timeout)
    }
}
