//! [`Pipe`] and [`Connection`]: Python's `multiprocessing.Pipe` over SPSC
//! byte queues in shared memory.
//!
//! A pipe is one SPSC byte queue per direction: right → left always, and
//! left → right when duplex. Named pipes live in `/dev/shm/<name>.0` (right
//! → left) and `/dev/shm/<name>.1` (left → right, duplex only); anonymous
//! ones in memfds shared across `fork`.
//!
//! Ends are attached in the process that uses them: create (or open) the
//! [`Pipe`], `fork`, then call [`Pipe::left`] in one process and
//! [`Pipe::right`] in the other. An end attached before `fork` belongs to
//! the process that attached it (shmring tracks endpoints by process), so
//! its copy in the child neither counts as a peer nor closes anything when
//! dropped. [`Pipe::pair`] attaches both ends at once, for threads of one
//! process.

use super::bytes::{ByteQueue, ByteQueueBuilder, ByteReceiver, ByteSender};
use super::session::Session;
use crate::error::{ByteSendError, RecvError, RecvTimeoutError, SegmentError, TryRecvError};
use crate::types::{Flavor, Role};
use crate::wait::WakeMode;
use std::sync::Arc;
use std::time::Duration;

/// Default messages buffered per direction.
pub const PIPE_CAPACITY: u64 = 64;
/// Default largest message (64 KiB).
pub const PIPE_MAX_MESSAGE: u64 = 64 * 1024;

/// A pipe between two processes: the shared queues, from which each process
/// attaches its [`Connection`].
///
/// Each attach of an end is a new session of that end: what was addressed
/// to an earlier session (a client or server that was killed and restarted)
/// never reaches a later one. See [`Connection`], "Sessions".
///
/// # Examples
/// ```
/// use shmring::Pipe;
/// let (left, right) = Pipe::pair(true)?; // duplex; usually one end per process
/// right.send(b"ping")?;
/// assert_eq!(left.recv()?, b"ping");
/// left.send(b"pong")?;
/// assert_eq!(right.recv()?, b"pong");
/// drop(left);
/// assert!(right.recv().is_err()); // the other end is closed: EOF
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct Pipe {
    /// Right → left.
    to_left: ByteQueue,
    /// Left → right, duplex pipes only.
    to_right: Option<ByteQueue>,
    /// Connections deliver messages addressed to their predecessors.
    keep_stale: bool,
}

impl Pipe {
    /// A builder for named and anonymous pipes.
    pub fn builder() -> PipeBuilder {
        PipeBuilder {
            duplex: true,
            capacity: PIPE_CAPACITY,
            max_message_size: PIPE_MAX_MESSAGE,
            mode: 0o600,
            persist: true,
            wake_mode: WakeMode::Strict,
            keep_stale: false,
        }
    }

    /// An anonymous pipe to share with children through `fork`: duplex (each
    /// end sends and receives) or one-way (the left end receives, the right
    /// end sends, as Python's `Pipe(duplex=False)` returns `(reader,
    /// writer)`). Default capacity and maximum message size.
    pub fn anonymous(duplex: bool) -> Result<Pipe, SegmentError> {
        Self::builder().duplex(duplex).create_anonymous()
    }

    /// Both ends attached in this process (for threads), like Python's
    /// `Pipe(duplex)`: `(left, right)`.
    pub fn pair(duplex: bool) -> Result<(Connection, Connection), SegmentError> {
        let p = Self::anonymous(duplex)?;
        Ok((p.left()?, p.right()?))
    }

    /// Opens the named pipe `name` (one-way or duplex, as created). The
    /// names stay until [`Pipe::unlink`] (or `shmring rm`): see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// As for [`ByteQueue::open`].
    pub fn open(name: &str) -> Result<Pipe, SegmentError> {
        Self::builder().open(name)
    }

    /// Removes the names of pipe `name`.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        let r = ByteQueue::unlink(&format!("{name}.0"));
        match ByteQueue::unlink(&format!("{name}.1")) {
            Err(SegmentError::NotFound(_)) | Ok(()) => r,
            Err(e) => Err(e),
        }
    }

    /// Whether each end both sends and receives.
    pub fn is_duplex(&self) -> bool {
        self.to_right.is_some()
    }

    /// Attaches the left end in this process: it receives what the right end
    /// sends and, if duplex, sends to the right end.
    ///
    /// # Errors
    /// `PipeEndTaken { end: "left", holder }` if a live process already
    /// holds the left end.
    pub fn left(&self) -> Result<Connection, SegmentError> {
        let taken = |e| end_taken("left", e);
        let rx = self.to_left.receiver().map_err(taken)?;
        let tx = self
            .to_right
            .as_ref()
            .map(|q| q.sender())
            .transpose()
            .map_err(taken)?;
        // The left end's generation: the right → left queue's receiver's.
        let session = self
            .to_left
            .session(Role::Sender, rx.generation(), self.keep_stale);
        Ok(Connection::new(Some(rx), tx, session))
    }

    /// Attaches the right end in this process: it sends to the left end and,
    /// if duplex, receives what the left end sends.
    ///
    /// # Errors
    /// `PipeEndTaken { end: "right", holder }` if a live process already
    /// holds the right end.
    pub fn right(&self) -> Result<Connection, SegmentError> {
        let taken = |e| end_taken("right", e);
        let tx = self.to_left.sender().map_err(taken)?;
        let rx = self
            .to_right
            .as_ref()
            .map(|q| q.receiver())
            .transpose()
            .map_err(taken)?;
        // The right end's generation: the right → left queue's sender's.
        let session = self
            .to_left
            .session(Role::Receiver, tx.generation(), self.keep_stale);
        Ok(Connection::new(rx, Some(tx), session))
    }

    /// Messages that ends of this pipe found addressed to their
    /// predecessors, in both directions, since it was created (each
    /// [`Connection::stale`] counts its own).
    pub fn stale(&self) -> u64 {
        self.to_left.stale() + self.to_right.as_ref().map_or(0, |q| q.stale())
    }
}

/// A half of the pipe refused an endpoint: the end is taken.
fn end_taken(end: &'static str, e: SegmentError) -> SegmentError {
    match e {
        SegmentError::RoleTaken { holder, .. } => SegmentError::PipeEndTaken { end, holder },
        other => other,
    }
}

/// Builds or opens a [`Pipe`].
#[derive(Clone, Debug)]
pub struct PipeBuilder {
    duplex: bool,
    capacity: u64,
    max_message_size: u64,
    mode: u32,
    persist: bool,
    wake_mode: WakeMode,
    keep_stale: bool,
}

impl PipeBuilder {
    /// Duplex (default) or one-way.
    pub fn duplex(mut self, duplex: bool) -> Self {
        self.duplex = duplex;
        self
    }

    /// Messages buffered per direction (default [`PIPE_CAPACITY`]).
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// The largest message (default [`PIPE_MAX_MESSAGE`]).
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Permission bits of named segments (default 0o600).
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Keep the names when the creating handle is dropped (default: true:
    /// they stay until [`Pipe::unlink`] or `shmring rm`; false: the creating
    /// handle removes them when it and everything made from it are gone, for
    /// a pipe private to one program and the children it forks).
    pub fn persist(mut self, persist: bool) -> Self {
        self.persist = persist;
        self
    }

    /// The wake protocol (default [`WakeMode::Strict`]; `Fast` interrupts other CPUs when a waiter sleeps: see [`WakeMode::Fast`]).
    pub fn wake_mode(mut self, mode: WakeMode) -> Self {
        self.wake_mode = mode;
        self
    }

    /// Whether the connections attached from this pipe handle deliver
    /// messages addressed to a predecessor of their end (default: false:
    /// they drop them; either way [`Connection::stale`] counts them).
    /// For a pipe whose messages belong to whichever process holds an end,
    /// such as a work queue a restarted worker should finish. Not recorded
    /// in the segment: each process chooses for its own ends.
    pub fn keep_stale(mut self, keep: bool) -> Self {
        self.keep_stale = keep;
        self
    }

    fn queue(&self) -> ByteQueueBuilder {
        ByteQueue::builder()
            .flavor(Flavor::Spsc)
            .capacity(self.capacity)
            .max_message_size(self.max_message_size)
            .mode(self.mode)
            .persist(self.persist)
            .wake_mode(self.wake_mode)
    }

    /// Creates an anonymous pipe.
    pub fn create_anonymous(self) -> Result<Pipe, SegmentError> {
        let to_right = if self.duplex {
            Some(self.queue().create_anonymous()?)
        } else {
            None
        };
        Ok(Pipe {
            to_left: self.queue().create_anonymous()?,
            to_right,
            keep_stale: self.keep_stale,
        })
    }

    /// Creates the named pipe `name` exclusively (`/dev/shm/<name>.0` and,
    /// if duplex, `.1`; the `.1` half first, so that whoever finds `.0`
    /// finds the whole pipe). The names stay until [`Pipe::unlink`] (or
    /// `shmring rm`): see [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// As for [`ByteQueue::create`].
    pub fn create(self, name: &str) -> Result<Pipe, SegmentError> {
        let to_right = if self.duplex {
            Some(self.queue().create(&format!("{name}.1"))?)
        } else {
            None
        };
        let to_left = match self.queue().create(&format!("{name}.0")) {
            Ok(q) => q,
            Err(e) => {
                // No half-made pipe stays behind: remove the `.1` we made.
                if to_right.is_some() {
                    let _ = ByteQueue::unlink(&format!("{name}.1"));
                }
                return Err(e);
            }
        };
        Ok(Pipe {
            to_left,
            to_right,
            keep_stale: self.keep_stale,
        })
    }

    /// Opens the named pipe `name`; the maximum size and capacity are
    /// those it was created with (this builder's are not checked).
    ///
    /// # Errors
    /// As for [`ByteQueue::open`]; `FlavorMismatch` if a half is not SPSC.
    pub fn open(self, name: &str) -> Result<Pipe, SegmentError> {
        let open = |n: String| {
            ByteQueue::builder()
                .flavor(Flavor::Spsc)
                .init_timeout(Duration::from_secs(1))
                .open(&n)
        };
        let to_left = open(format!("{name}.0"))?;
        let to_right = match open(format!("{name}.1")) {
            Ok(q) => Some(q),
            Err(SegmentError::NotFound(_)) => None,
            Err(e) => return Err(e),
        };
        Ok(Pipe {
            to_left,
            to_right,
            keep_stale: self.keep_stale,
        })
    }
}

impl PipeBuilder {
    /// Opens the named pipe `name` if it exists, otherwise creates it: what
    /// a service and its clients, started in any order, each call. Of
    /// several processes racing here, one creates and the others open that
    /// pipe. The names stay until [`Pipe::unlink`] (or `shmring rm`), so a
    /// restarted server finds its clients' pipe (see
    /// [names](crate#names-who-removes-them)).
    ///
    /// # Errors
    /// As for [`create`](Self::create) and [`open`](Self::open);
    /// `InvalidArgument` if the existing pipe's duplexity is not this
    /// builder's; `NotFound` if the names kept appearing and vanishing
    /// (a creator that keeps failing half-way).
    pub fn open_or_create(self, name: &str) -> Result<Pipe, SegmentError> {
        let mut last = None;
        for _ in 0..8 {
            match self.clone().create(name) {
                Err(SegmentError::AlreadyExists(_)) => {}
                other => return other,
            }
            match self.clone().open(name) {
                Ok(p) if p.is_duplex() != self.duplex => {
                    return Err(SegmentError::InvalidArgument(format!(
                        "pipe {name:?} exists as {}, asked for {}",
                        if p.is_duplex() { "duplex" } else { "one-way" },
                        if self.duplex { "duplex" } else { "one-way" },
                    )))
                }
                // A duplex pipe is created `.1` first: a `.0` not there yet
                // (or gone) means a creator is half-way: look again. A
                // `.1` that no process holds is the half of a creator that
                // died half-way (a live creator holds it, and nobody else
                // opens `.1` without `.0`): remove it, then create.
                Err(SegmentError::NotFound(n)) => {
                    let half = format!("{name}.1");
                    let path = std::path::Path::new("/dev/shm").join(&half);
                    let _ = crate::shm::segment::Segment::remove_unused(
                        &crate::shm::segment::Location::Named(half),
                        &path,
                    );
                    last = Some(SegmentError::NotFound(n))
                }
                other => return other,
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Err(last.unwrap_or(SegmentError::NotInitialized))
    }
}

/// One end of a [`Pipe`], attached in one process.
///
/// When the other end is closed, dropped, or its process dies, `recv`
/// returns what was already sent and then `Disconnected` (Python's
/// `EOFError`); `send` to a closed end returns `Disconnected`. The end of a
/// one-way pipe that cannot receive returns `Disconnected` from `recv` at
/// once, and the end that cannot send returns `Disconnected` from `send`
/// ([`readable`](Self::readable) / [`writable`](Self::writable) say which).
///
/// A peer that closed or dropped its end is seen at once. A peer whose
/// process died is seen by a `recv` within a liveness slice (20 ms), but a
/// `send` that finds room in the buffer does not look at the peer: up to
/// the pipe's capacity of messages can be accepted for a dead peer before a
/// `send` that has to wait (or a `try_send` that keeps finding the buffer
/// full) finds it dead and returns `Disconnected`.
/// Messages that matter need an answer (duplex) to be known delivered.
///
/// # Sessions: restarts without cross-talk
///
/// Every attach of an end starts a new session of that end, numbered by
/// its [`generation`](Self::generation) (1, 2, … for each end, counted in
/// the pipe's shared memory; an attach refused because the end is taken
/// takes none, one that loses a race for a free end may). Every message
/// carries the generation it is
/// addressed to and the one it comes from, and:
///
/// - **A message goes to the peer session it answers.** A connection
///   addresses what it sends to the peer generation it last received a
///   message from, even if a newer peer has attached since: a reply goes
///   to whoever asked. Before it has heard from a peer (or after it saw
///   that peer's session end, below), it addresses the peer attached at the
///   time of sending, or, if none is attached, whoever attaches next.
/// - **A restarted end receives nothing addressed to its predecessor.** A
///   message addressed to an earlier generation of the receiving end is
///   dropped, never delivered, by every receiving call (`recv`,
///   `recv_into`, `recv_timeout`, `try_recv`, `poll`, and the
///   [`receiver`](Self::receiver) half's in-place and value receives), and
///   counted in [`stale`](Self::stale). A blocking call that finds only
///   such messages goes on waiting. [`PipeBuilder::keep_stale`] delivers
///   them instead (still counted). A message addressed to a later
///   generation than the receiver's is delivered.
/// - **The end of a peer session is reported once.** When the peer session
///   this end talks to is over — its process died or it closed its end,
///   whether or not a successor has attached since — one receiving call
///   returns `Disconnected` after everything that session sent, before
///   anything from its successor; this end then talks to whoever is
///   attached. A client whose server was restarted thus sees
///   `Disconnected` from its pending `recv` and re-sends its request to the
///   new server, whatever the order in which it noticed the death and the
///   restart. [`wait_connected`](Self::wait_connected) also ends the
///   conversation with the last peer when it returns true: what is sent
///   next goes to the peer attached now.
///
/// The rule is symmetric: a restarted server drops the requests queued for
/// its predecessor, and a new client drops the replies queued for the one
/// before it. Generations are compared through 16-bit tags: two sessions of
/// one end 32768 or more attaches apart can be confused.
///
/// # Examples
/// ```
/// use shmring::{Pipe, RecvError};
/// let pipe = Pipe::anonymous(true)?;
/// let server = pipe.left()?;
/// let client = pipe.right()?;
/// client.send(b"request")?;
/// assert_eq!(server.recv()?, b"request");
/// drop(client); // the client dies before the answer...
/// let client = pipe.right()?; // ...and a new one attaches: a new session
/// assert!(client.generation() > server.peer_generation());
/// server.send(b"answer")?; // addressed to the client that asked
/// assert_eq!(client.try_recv(), Err(shmring::TryRecvError::Empty));
/// assert_eq!(client.stale(), 1); // the old answer was dropped
/// assert_eq!(server.recv(), Err(RecvError::Disconnected)); // the old session's end
/// client.send(b"request 2")?;
/// assert_eq!(server.recv()?, b"request 2");
/// server.send(b"answer 2")?;
/// assert_eq!(client.recv()?, b"answer 2");
/// assert_eq!(server.peer_generation(), client.generation());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Connection {
    // Dropped in declaration order: the receiving half first, so that a
    // peer that sees EOF also finds nobody receiving its sends.
    rx: Option<ByteReceiver>,
    tx: Option<ByteSender>,
    /// Addresses what `tx` sends and screens what `rx` receives.
    session: Arc<Session>,
}

impl Connection {
    fn new(mut rx: Option<ByteReceiver>, mut tx: Option<ByteSender>, session: Session) -> Self {
        let session = Arc::new(session);
        if let Some(r) = rx.as_mut() {
            r.set_session(session.clone());
        }
        if let Some(t) = tx.as_mut() {
            t.set_session(session.clone());
        }
        Connection { rx, tx, session }
    }

    /// This end's session number: how many times this end of the pipe had
    /// been attached (or refused), counting this attach. A restarted
    /// process gets a higher number than its predecessor.
    pub fn generation(&self) -> u64 {
        self.session.generation()
    }

    /// The peer's session number: that of the peer this end last received
    /// a message from (until that session ends), else that of the peer end
    /// attached last (0: it never was). Tells sessions apart: a peer that
    /// restarted has a higher number.
    pub fn peer_generation(&self) -> u64 {
        self.session.peer_generation()
    }

    /// Messages this end found addressed to one of its predecessors (dropped
    /// or, with [`PipeBuilder::keep_stale`], delivered). See
    /// [`Pipe::stale`] for the pipe's total.
    pub fn stale(&self) -> u64 {
        self.session.stale()
    }

    fn tx(&self) -> Result<&ByteSender, ByteSendError> {
        self.tx.as_ref().ok_or(ByteSendError::Disconnected)
    }

    fn rx(&self) -> Result<&ByteReceiver, RecvError> {
        self.rx.as_ref().ok_or(RecvError::Disconnected)
    }

    /// Sends a message, waiting while the other end's buffer is full.
    ///
    /// # Errors
    /// `TooLarge`, `Disconnected` (the other end is gone, this end was
    /// closed, or it cannot send), `Corrupted`.
    pub fn send(&self, msg: &[u8]) -> Result<(), ByteSendError> {
        self.tx()?.send(msg)
    }

    /// Sends without waiting (`Full` if the buffer is full).
    ///
    /// # Errors
    /// As for [`send`](Self::send), plus `Full`.
    pub fn try_send(&self, msg: &[u8]) -> Result<(), ByteSendError> {
        self.tx()?.try_send(msg)
    }

    /// Sends, waiting at most `timeout` while the buffer is full.
    ///
    /// # Errors
    /// As for [`send`](Self::send), plus `Timeout`.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), ByteSendError> {
        self.tx()?.send_timeout(msg, timeout)
    }

    /// Receives the next message, waiting for one.
    ///
    /// # Errors
    /// `Disconnected` once everything the other end sent has been received
    /// and it is gone (EOF), `Corrupted`.
    pub fn recv(&self) -> Result<Vec<u8>, RecvError> {
        self.rx()?.recv()
    }

    /// Receives into `out` (cleared first, capacity reused); returns the length.
    ///
    /// # Errors
    /// As for [`recv`](Self::recv).
    pub fn recv_into(&self, out: &mut Vec<u8>) -> Result<usize, RecvError> {
        self.rx()?.recv_into(out)
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupted`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        self.rx()
            .map_err(RecvTimeoutError::from)?
            .recv_timeout(timeout)
    }

    /// Receives without waiting.
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupted`.
    pub fn try_recv(&self) -> Result<Vec<u8>, TryRecvError> {
        self.rx().map_err(TryRecvError::from)?.try_recv()
    }

    /// Waits at most `timeout` for a message without taking it: `Ok(true)`
    /// if one is waiting, `Ok(false)` on timeout (zero: just look).
    ///
    /// # Errors
    /// `Disconnected` at EOF (nothing waiting, the other end gone),
    /// `Corrupted`.
    pub fn poll(&self, timeout: Duration) -> Result<bool, RecvError> {
        self.rx()?.poll(timeout)
    }

    /// Closes this end: the other end's `recv` sees EOF after what was
    /// sent, its `send` sees `Disconnected`. Later calls on this end return
    /// `Disconnected`. Dropping the connection does the same.
    pub fn close(&mut self) {
        // Receiving half first (see the field order).
        self.rx = None;
        self.tx = None;
    }

    /// Whether this end can receive (not closed, not the sending end of a
    /// one-way pipe).
    pub fn readable(&self) -> bool {
        self.rx.is_some()
    }

    /// Whether this end can send.
    pub fn writable(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether the other end is attached, in any process (a snapshot).
    pub fn is_connected(&self) -> bool {
        self.tx.as_ref().is_none_or(|t| t.is_connected())
            && self.rx.as_ref().is_none_or(|r| r.is_connected())
    }

    /// Waits until the other end is attached (both of its halves, for a
    /// duplex pipe), in any process, or `timeout` passes (`None`: no
    /// limit): true if it is. A client started before its server, or
    /// while it restarts, waits here instead of polling for
    /// `Disconnected` to stop.
    ///
    /// When it returns true, this end stops addressing the peer it last
    /// heard from: what it sends next goes to the peer attached now (see
    /// the [sessions](Self#sessions-restarts-without-cross-talk) rules).
    pub fn wait_connected(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let left = || deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
        let connected = self.tx.as_ref().is_none_or(|t| t.wait_connected(left()))
            && self.rx.as_ref().is_none_or(|r| r.wait_connected(left()));
        if connected {
            // From now on, talk to the peer attached now.
            self.session.forget();
        }
        connected
    }

    /// The sending half, for loans and values.
    pub fn sender(&mut self) -> Option<&mut ByteSender> {
        self.tx.as_mut()
    }

    /// The receiving half, for in-place reads and values.
    pub fn receiver(&mut self) -> Option<&mut ByteReceiver> {
        self.rx.as_mut()
    }
}
