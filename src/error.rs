//! Every public error type.
//!
//! Channel errors follow crossbeam-channel's shapes and hand the unsent value
//! back. Each also has a `Corrupted` case: shmring never trusts what it reads
//! from shared memory, and a scribbled segment is reported, never obeyed.

use std::fmt;

/// What a segment holds: the `kind` field of its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kind {
    /// A bounded queue of fixed-size `Pod` values.
    Queue,
    /// A bounded queue of variable-length byte messages.
    ByteQueue,
    /// One value of a `ShmSafe` type ([`Shared`](crate::Shared), `Value`).
    Struct,
    /// An array of `Pod` values with a lock (`Array`).
    Array,
    /// A kind this build of shmring does not know (the raw header value).
    Unknown(u32),
}

impl Kind {
    /// The kinds this build knows, in header order.
    const KNOWN: [Kind; 4] = [Kind::Queue, Kind::ByteQueue, Kind::Struct, Kind::Array];

    /// The value of the header's `kind` field for this kind: the one place
    /// the numbers are defined.
    pub const fn raw(self) -> u32 {
        match self {
            Kind::Queue => 1,
            Kind::ByteQueue => 2,
            Kind::Struct => 3,
            Kind::Array => 4,
            Kind::Unknown(k) => k,
        }
    }

    /// The kind a header's `kind` field names.
    pub fn from_raw(kind: u32) -> Kind {
        Kind::KNOWN
            .into_iter()
            .find(|k| k.raw() == kind)
            .unwrap_or(Kind::Unknown(kind))
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::Queue => f.write_str("queue"),
            Kind::ByteQueue => f.write_str("byte queue"),
            Kind::Struct => f.write_str("shared struct"),
            Kind::Array => f.write_str("shared array"),
            Kind::Unknown(k) => write!(f, "unknown kind {k}"),
        }
    }
}

/// Which ring algorithm a queue uses, fixed at creation and recorded in the header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Flavor {
    /// One sender and one receiver at a time (across all processes).
    Spsc,
    /// Any number of senders and receivers, in any processes.
    Mpmc,
}

impl fmt::Display for Flavor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Flavor::Spsc => "spsc",
            Flavor::Mpmc => "mpmc",
        })
    }
}

/// Bytes of a type's name a header records.
pub const TYPE_NAME_LEN: usize = 32;

/// A type's name as a header records it: the end of `std::any::type_name`
/// (the type's own name, after its path), at most [`TYPE_NAME_LEN`] bytes
/// cut on a character boundary. For messages; the fingerprint, not the
/// name, decides whether two types match.
#[derive(Clone, Copy)]
pub struct TypeName {
    bytes: [u8; TYPE_NAME_LEN],
}

impl TypeName {
    /// The last [`TYPE_NAME_LEN`] bytes of `name` (whole characters).
    pub fn new(name: &str) -> Self {
        let mut start = name.len().saturating_sub(TYPE_NAME_LEN);
        while !name.is_char_boundary(start) {
            start += 1;
        }
        let tail = &name.as_bytes()[start..];
        let mut bytes = [0u8; TYPE_NAME_LEN];
        bytes[..tail.len()].copy_from_slice(tail);
        TypeName { bytes }
    }

    /// From the words a header stores (little-endian), as read.
    pub fn from_words(words: [u64; TYPE_NAME_LEN / 8]) -> Self {
        let mut bytes = [0u8; TYPE_NAME_LEN];
        for (chunk, w) in bytes.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        TypeName { bytes }
    }

    /// The words a header stores.
    pub fn words(&self) -> [u64; TYPE_NAME_LEN / 8] {
        let mut words = [0u64; TYPE_NAME_LEN / 8];
        for (w, chunk) in words.iter_mut().zip(self.bytes.chunks_exact(8)) {
            *w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        }
        words
    }

    /// The name (lossy: a header from shared memory may hold any bytes;
    /// empty if none was recorded).
    pub fn as_string(&self) -> String {
        let len = self
            .bytes
            .iter()
            .position(|&b| b == 0)
            .unwrap_or(TYPE_NAME_LEN);
        String::from_utf8_lossy(&self.bytes[..len]).into_owned()
    }
}

impl fmt::Debug for TypeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_string(), f)
    }
}

/// Size, alignment and fingerprint of an element type, as recorded in a
/// header, with its name for messages. Two descriptions are equal when
/// size, alignment and fingerprint are (the name is not compared: the
/// fingerprint already hashes the whole name).
#[derive(Clone, Copy, Debug)]
pub struct TypeDesc {
    /// `size_of::<T>()`.
    pub size: u64,
    /// `align_of::<T>()`.
    pub align: u64,
    /// A hash of the type's name, size and alignment.
    pub fingerprint: u64,
    /// The type's name, as far as recorded.
    pub name: TypeName,
}

impl PartialEq for TypeDesc {
    fn eq(&self, other: &Self) -> bool {
        (self.size, self.align, self.fingerprint) == (other.size, other.align, other.fingerprint)
    }
}

impl Eq for TypeDesc {}

impl std::hash::Hash for TypeDesc {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.size, self.align, self.fingerprint).hash(state);
    }
}

impl fmt::Display for TypeDesc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.name.as_string();
        if name.is_empty() {
            write!(f, "a type of ")?;
        } else {
            write!(f, "`{name}` (")?;
        }
        write!(
            f,
            "size {} align {} fingerprint {:#018x}",
            self.size, self.align, self.fingerprint
        )?;
        if !name.is_empty() {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Which end of a queue an endpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A sending endpoint.
    Sender,
    /// A receiving endpoint.
    Receiver,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Sender => "sender",
            Role::Receiver => "receiver",
        })
    }
}

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

/// The queue's shared state failed a check; the operation did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupted;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_keep_their_end_whole() {
        let short = TypeName::new("u64");
        assert_eq!(short.as_string(), "u64");
        assert_eq!(TypeName::from_words(short.words()).as_string(), "u64");
        let long = TypeName::new("my_application::protocol::messages::OrderUpdate");
        assert_eq!(long.as_string(), "::protocol::messages::OrderUpdate"[1..]);
        // A multi-byte character at the cut is left out whole.
        let name = format!("{}é{}", "a".repeat(10), "b".repeat(TYPE_NAME_LEN - 1));
        assert_eq!(
            TypeName::new(&name).as_string(),
            "b".repeat(TYPE_NAME_LEN - 1)
        );
        // Bytes from shared memory that are not UTF-8 still print.
        let junk = TypeName::from_words([u64::MAX; TYPE_NAME_LEN / 8]);
        assert!(!junk.as_string().is_empty());
    }
}
