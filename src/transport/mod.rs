//! Layer 7: one message interface, [`Transport`], over shared memory and
//! the kernel transports the seeds teach — anonymous pipe, FIFO, Unix
//! stream socket, TCP — so benchmarks and programs can swap one for another.
//!
//! Every transport carries messages of bytes of any size up to its maximum,
//! in order, in both directions (each endpoint sends and receives). The
//! kernel transports frame each message with a 4-byte little-endian length;
//! the shared-memory ones use byte queues, whose slots record the length.
//!
//! A [`Link`] is made before `fork` (it holds the pipes, socket pair,
//! listener or shared segments); after `fork` one process takes
//! [`Link::left`] and the other [`Link::right`]. For TCP between two hosts,
//! use [`TcpTransport::connect`] and [`TcpTransport::accept`] directly.

mod shm;
mod stream;

pub use shm::ShmTransport;
pub use stream::{StreamTransport, TcpTransport};

/// The transports' errors, defined with every other public error in
/// [`error`](crate::error).
pub use crate::error::{TransportError, UnknownTransport};

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

/// Default largest message of a link (1 MiB).
pub const DEFAULT_MAX_MESSAGE: usize = 1 << 20;

/// The transports behind the [`Transport`] interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransportKind {
    /// Two SPSC byte queues in shared memory (a [`Pipe`](crate::Pipe)).
    ShmSpsc,
    /// Two MPMC byte queues in shared memory.
    ShmMpmc,
    /// Two anonymous pipes (`pipe(2)`), inherited across `fork`.
    Pipe,
    /// Two FIFOs (`mkfifo(3)`) at paths in a directory.
    Fifo,
    /// A Unix stream socket pair.
    Unix,
    /// A TCP connection over loopback (`TCP_NODELAY`).
    Tcp,
}

impl TransportKind {
    /// Every kind, in the order benchmarks list them.
    pub const ALL: [TransportKind; 6] = [
        TransportKind::ShmSpsc,
        TransportKind::ShmMpmc,
        TransportKind::Pipe,
        TransportKind::Fifo,
        TransportKind::Unix,
        TransportKind::Tcp,
    ];

    /// The name used on the command line and in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::ShmSpsc => "shm-spsc",
            TransportKind::ShmMpmc => "shm-mpmc",
            TransportKind::Pipe => "pipe",
            TransportKind::Fifo => "fifo",
            TransportKind::Unix => "unix",
            TransportKind::Tcp => "tcp",
        }
    }

    /// Whether this is one of the shared-memory transports.
    pub fn is_shm(self) -> bool {
        matches!(self, TransportKind::ShmSpsc | TransportKind::ShmMpmc)
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TransportKind {
    type Err = UnknownTransport;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TransportKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownTransport(s.to_string()))
    }
}

/// One endpoint of a message transport: sends and receives byte messages,
/// in order, blocking or not.
pub trait Transport: Send {
    /// Which transport this is.
    fn kind(&self) -> TransportKind;

    /// The largest message, in bytes.
    fn max_message_size(&self) -> usize;

    /// Sends `msg`, waiting for room.
    ///
    /// # Errors
    /// `TooLarge`, `Disconnected`, `Corrupted`, `Io`.
    fn send(&mut self, msg: &[u8]) -> Result<(), TransportError>;

    /// Sends `msg` if the transport can take it now, else `WouldBlock`
    /// (kernel transports: when the descriptor is not writable; once
    /// writing starts, the whole frame is written).
    ///
    /// # Errors
    /// As for [`send`](Self::send), plus `WouldBlock`.
    fn try_send(&mut self, msg: &[u8]) -> Result<(), TransportError>;

    /// Receives the next message into `buf` (cleared first, capacity
    /// reused), waiting for one; returns its length.
    ///
    /// # Errors
    /// `Disconnected` at the end of the peer's messages, `Truncated`,
    /// `Corrupted`, `Io`.
    fn recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError>;

    /// Receives a message if one is waiting, else `WouldBlock`.
    ///
    /// # Errors
    /// As for [`recv`](Self::recv), plus `WouldBlock`.
    fn try_recv(&mut self, buf: &mut Vec<u8>) -> Result<usize, TransportError>;

    /// Receives, waiting at most `timeout` for a message to start arriving.
    ///
    /// # Errors
    /// As for [`recv`](Self::recv), plus `Timeout`.
    fn recv_timeout(
        &mut self,
        buf: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, TransportError>;

    /// How long a blocked shared-memory call spins before sleeping (zero:
    /// sleep at once; the kernel transports always sleep in the kernel).
    fn set_spin(&mut self, _spin: Duration) {}
}

/// A transport endpoint of any kind.
pub type BoxedTransport = Box<dyn Transport>;

/// How a [`Link`] is made.
#[derive(Clone, Debug)]
pub struct LinkOptions {
    /// The largest message (default [`DEFAULT_MAX_MESSAGE`]).
    pub max_message_size: usize,
    /// Messages buffered per direction by the shared-memory transports
    /// (default 64; the kernel's buffers are the kernel's).
    pub capacity: u64,
    /// Where FIFOs are made (default: the temporary directory).
    pub fifo_dir: Option<PathBuf>,
    /// The shared-memory transports' wake protocol (default
    /// [`WakeMode::Strict`](crate::WakeMode::Strict); [`WakeMode::Fast`](crate::WakeMode::Fast)
    /// is opt-in, see its docs).
    pub wake_mode: crate::WakeMode,
}

impl Default for LinkOptions {
    fn default() -> Self {
        LinkOptions {
            max_message_size: DEFAULT_MAX_MESSAGE,
            capacity: 64,
            fifo_dir: None,
            wake_mode: crate::WakeMode::Strict,
        }
    }
}

/// A two-ended transport made before `fork`: one process takes
/// [`left`](Self::left), the other [`right`](Self::right). Taking an end
/// consumes the link and closes this process's copies of the other end's
/// descriptors, so that end-of-stream works.
#[derive(Debug)]
pub struct Link {
    inner: LinkInner,
    max: usize,
}

#[derive(Debug)]
enum LinkInner {
    Shm(shm::ShmLink),
    Stream(stream::StreamLink),
}

impl Link {
    /// Makes a link of `kind`.
    ///
    /// # Errors
    /// `Segment` (shared memory), `Io` (pipes, FIFOs, sockets).
    pub fn new(kind: TransportKind, opts: &LinkOptions) -> Result<Link, TransportError> {
        let inner = if kind.is_shm() {
            LinkInner::Shm(shm::ShmLink::new(kind, opts)?)
        } else {
            LinkInner::Stream(stream::StreamLink::new(kind, opts)?)
        };
        Ok(Link {
            inner,
            max: opts.max_message_size,
        })
    }

    /// The transport's kind.
    pub fn kind(&self) -> TransportKind {
        match &self.inner {
            LinkInner::Shm(l) => l.kind(),
            LinkInner::Stream(l) => l.kind(),
        }
    }

    /// Both ends in this process (for threads, or to hand one to a child
    /// by other means): `(left, right)`.
    ///
    /// # Errors
    /// As for [`new`](Self::new).
    pub fn pair(self) -> Result<(BoxedTransport, BoxedTransport), TransportError> {
        match self.inner {
            LinkInner::Shm(l) => {
                let (a, b) = l.pair()?;
                Ok((Box::new(a), Box::new(b)))
            }
            LinkInner::Stream(l) => {
                let (a, b) = l.pair(self.max)?;
                Ok((Box::new(a), Box::new(b)))
            }
        }
    }

    /// Takes the left end of a shared-memory link as its concrete type
    /// (for loans and in-place reads through
    /// [`ShmTransport::sender`] / [`ShmTransport::receiver`]).
    ///
    /// # Errors
    /// `Io(InvalidInput)` if this is not a shared-memory link; as for
    /// [`new`](Self::new).
    pub fn left_shm(self) -> Result<ShmTransport, TransportError> {
        self.shm_end(true)
    }

    /// The right end of a shared-memory link as its concrete type (see
    /// [`left_shm`](Self::left_shm)).
    ///
    /// # Errors
    /// As for [`left_shm`](Self::left_shm).
    pub fn right_shm(self) -> Result<ShmTransport, TransportError> {
        self.shm_end(false)
    }

    fn shm_end(self, left: bool) -> Result<ShmTransport, TransportError> {
        match self.inner {
            LinkInner::Shm(l) => l.end(left),
            LinkInner::Stream(l) => Err(TransportError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("{} is not a shared-memory transport", l.kind()),
            ))),
        }
    }

    /// Takes the left end in this process.
    ///
    /// # Errors
    /// As for [`new`](Self::new).
    pub fn left(self) -> Result<Box<dyn Transport>, TransportError> {
        match self.inner {
            LinkInner::Shm(l) => Ok(Box::new(l.end(true)?)),
            LinkInner::Stream(l) => Ok(Box::new(l.end(true, self.max)?)),
        }
    }

    /// Takes the right end in this process.
    ///
    /// # Errors
    /// As for [`new`](Self::new).
    pub fn right(self) -> Result<Box<dyn Transport>, TransportError> {
        match self.inner {
            LinkInner::Shm(l) => Ok(Box::new(l.end(false)?)),
            LinkInner::Stream(l) => Ok(Box::new(l.end(false, self.max)?)),
        }
    }
}
