//! The public byte-message queue: [`ByteQueue`] and its
//! [`ByteQueueBuilder`], the endpoints [`ByteSender`] and [`ByteReceiver`],
//! and the iterator [`ByteIter`]. (The loans and in-place reads they hand
//! out, [`ByteLoan`] and [`ByteRef`], are in `bytes_core.rs`.)

use super::bytes_core::{self, ByteLoan, ByteRef};
use super::mapped::snapshot_accessors;
use super::payload::Payload;
use super::queue::{Queue, QueueBuilder, QueueInfo};
use super::raw::SlotClaim;
use super::receiver::{recv_err, recv_timeout_err, Receiver};
use super::sender::Sender;
use super::session::Session;
use crate::error::{ByteSendError, RecvError, RecvTimeoutError, SegmentError, TryRecvError};
use crate::types::Flavor;
use crate::wait::{Deadline, WakeMode};
use std::fmt;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A bounded queue of variable-length byte messages in shared memory.
///
/// Every message is at most [`max_message_size`](Self::max_message_size)
/// bytes, fixed at creation and recorded in the segment's header. The queue
/// holds `capacity` messages, each in a fixed slot of that size: a send is
/// one copy in, a receive one copy out, and a [loan](ByteSender::loan) or an
/// [in-place receive](ByteReceiver::recv_ref) removes the copy. SPSC or MPMC,
/// with the same blocking, timeout and disconnect rules as [`Queue`].
///
/// # Examples
/// ```
/// use shmring::{ByteQueue, Flavor};
/// let q = ByteQueue::anonymous(Flavor::Spsc, 4, 1024)?;
/// let (mut tx, mut rx) = (q.sender()?, q.receiver()?);
/// tx.send(b"hello")?;
/// let mut loan = tx.loan(3)?; // write in place
/// loan.copy_from_slice(b"abc");
/// loan.commit();
/// assert_eq!(rx.recv()?, b"hello");
/// assert_eq!(&*rx.recv_ref()?, b"abc"); // read in place
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ByteQueue {
    inner: Queue<u64>,
}

impl fmt::Debug for ByteQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteQueue")
            .field("info", self.inner.info())
            .field("max_message_size", &self.max_message_size())
            .finish()
    }
}

impl ByteQueue {
    /// A builder for every way of creating or opening a byte queue.
    pub fn builder() -> ByteQueueBuilder {
        let mut inner = Queue::<u64>::builder();
        inner.bytes = true;
        ByteQueueBuilder { inner }
    }

    /// Creates `/dev/shm/<name>` exclusively, holding `capacity` messages of
    /// at most `max_message_size` bytes. The name stays until it is
    /// removed: see [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// As for [`Queue::create`]; `InvalidArgument` for a maximum size of 0
    /// or above [`MAX_MESSAGE`](crate::MAX_MESSAGE).
    pub fn create(
        name: &str,
        flavor: Flavor,
        capacity: u64,
        max_message_size: u64,
    ) -> Result<Self, SegmentError> {
        Self::builder()
            .flavor(flavor)
            .capacity(capacity)
            .max_message_size(max_message_size)
            .create(name)
    }

    /// Opens `/dev/shm/<name>`, of any flavor, capacity and maximum size.
    ///
    /// # Errors
    /// As for [`Queue::open`]; `WrongKind` if it is not a byte queue.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::builder().open(name)
    }

    /// Creates an anonymous byte queue (a sealed memfd) to share across `fork`.
    pub fn anonymous(
        flavor: Flavor,
        capacity: u64,
        max_message_size: u64,
    ) -> Result<Self, SegmentError> {
        Self::builder()
            .flavor(flavor)
            .capacity(capacity)
            .max_message_size(max_message_size)
            .create_anonymous()
    }

    /// Removes `/dev/shm/<name>`. Mapped handles keep working.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        Queue::<u64>::unlink(name)
    }

    fn payload(&self) -> Payload {
        self.inner
            .mapped
            .payload
            .clone()
            .expect("a byte queue's segment has a payload area (checked on open)")
    }

    /// Closes the stream outright: see [`Queue::close`](crate::Queue::close).
    pub fn close(&self) {
        self.inner.close();
    }

    /// Whether the stream is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Attaches a sender in this process.
    ///
    /// # Errors
    /// As for [`Queue::sender`].
    pub fn sender(&self) -> Result<ByteSender, SegmentError> {
        Ok(ByteSender {
            inner: self.inner.sender()?,
            payload: self.payload(),
            session: None,
        })
    }

    /// Attaches a receiver in this process.
    ///
    /// # Errors
    /// As for [`Queue::receiver`].
    pub fn receiver(&self) -> Result<ByteReceiver, SegmentError> {
        Ok(ByteReceiver {
            inner: self.inner.receiver()?,
            payload: self.payload(),
            session: None,
        })
    }

    /// Flavor, capacity and sizes, from the header.
    pub fn info(&self) -> &QueueInfo {
        self.inner.info()
    }

    /// The largest message, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.payload().max()
    }

    /// The flavor.
    pub fn flavor(&self) -> Flavor {
        self.inner.flavor()
    }

    snapshot_accessors!(inner.mapped);

    /// Attached senders and receivers, in all processes (a snapshot: an
    /// endpoint whose process died counts until reaped; see
    /// [`Queue::endpoints`](crate::Queue::endpoints)).
    pub fn endpoints(&self) -> (u32, u32) {
        self.inner.endpoints()
    }

    /// Senders and receivers held by live processes, after reclaiming dead
    /// ones (see [`Queue::live_endpoints`](crate::Queue::live_endpoints)).
    pub fn live_endpoints(&self) -> (u32, u32) {
        self.inner.live_endpoints()
    }

    /// Messages lost with claims never finished (a loan never committed, an
    /// in-place read never released, an MPMC copy cut short), by a process
    /// that died or a loan leaked with `mem::forget`: see [`Queue::lost`](crate::Queue::lost).
    pub fn lost(&self) -> u64 {
        self.inner.lost()
    }

    /// Reclaims dead processes' endpoints, repairing their claims in flight.
    pub fn reap_dead(&self) {
        self.inner.reap_dead()
    }

    /// A number that identifies this queue's incarnation: derived from the
    /// header's creation fields (creation time, creator pid and start
    /// time), so it differs when a queue of the same name is created
    /// again. With [`ByteRef::position`], a message id unique across
    /// restarts of the queue.
    pub fn instance(&self) -> u64 {
        self.inner.mapped.fields.instance()
    }

    /// Hands every message that a dead receiver with
    /// [kept claims](ByteReceiver::keep_claims) left claimed to `f`, oldest
    /// position first, as `(position, bytes)` (the position its
    /// [`ByteRef::position`] had).
    ///
    /// - `Ok(())` from `f`: the message's slot is released (the message is
    ///   gone for good) and blocked senders are woken.
    /// - `Err(e)`: that message stays kept, nothing after it is handed out,
    ///   and `adopt_kept` returns `Err(e)`; a later call hands it out again.
    ///   (A panic in `f` leaves the same state.)
    ///
    /// A dead receiver left with nothing kept is reaped (its endpoint entry
    /// freed). Concurrent adopters are safe: each message is released once;
    /// one adopter may find a message another holds and leave it to a
    /// later call; and an adopter that dies after `f` returned `Ok` but
    /// before the release leaves the message to the next one, which hands
    /// it out again (at least once, not exactly once). What is read from
    /// the segment is checked first: the slot must still hold the claimed,
    /// published message, and a stored length beyond
    /// [`max_message_size`](Self::max_message_size) (a scribbled segment)
    /// is released and counted in [`lost`](Self::lost) instead of being
    /// handed out.
    ///
    /// Returns how many messages were handed over and released (0 for an
    /// SPSC queue, whose receivers cannot keep claims).
    ///
    /// # Errors
    /// The first error `f` returns.
    ///
    /// # Examples
    /// ```
    /// use shmring::{ByteQueue, Flavor};
    /// let q = ByteQueue::anonymous(Flavor::Mpmc, 4, 64)?;
    /// let mut rx = q.receiver()?;
    /// rx.keep_claims()?;
    /// // ... a successor process, after `rx`'s process died holding a `ByteRef`:
    /// let n = q.adopt_kept(|position, bytes| {
    ///     println!("{}:{position}: {} bytes", q.instance(), bytes.len());
    ///     Ok::<(), std::io::Error>(()) // e.g. once the broker confirmed it
    /// })?;
    /// assert_eq!(n, 0); // nobody died here
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn adopt_kept<E>(
        &self,
        mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<usize, E> {
        self.inner.mapped.adopt_kept(&mut f)
    }

    /// Keep the name after the creating handle is dropped.
    pub fn persist(&self) {
        self.inner.persist()
    }

    /// The segment's file path, if named.
    pub fn path(&self) -> Option<PathBuf> {
        self.inner.path()
    }

    /// The memfd of an anonymous queue.
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.inner.fd()
    }

    /// The raw memfd of an anonymous queue.
    pub fn raw_fd(&self) -> Option<RawFd> {
        self.inner.raw_fd()
    }

    /// Messages a pipe end found addressed to one of its predecessors, in
    /// this queue (see [`Connection::stale`](crate::Connection::stale)); 0
    /// for plain byte queues.
    pub fn stale(&self) -> u64 {
        self.inner.stale()
    }

    /// A session of a pipe end whose peer holds `peer` on this queue (the
    /// right → left queue of a pipe).
    pub(crate) fn session(&self, peer: crate::types::Role, mine: u64, keep_stale: bool) -> Session {
        let keep: Arc<dyn std::any::Any + Send + Sync> = Arc::new(self.clone());
        // SAFETY: the control block lives in the mapping that `keep` (a
        // handle on this queue) keeps alive.
        unsafe { Session::new(self.inner.ctrl_ptr(), keep, peer, mine, keep_stale) }
    }
}

/// Builds or opens a [`ByteQueue`].
#[derive(Debug)]
pub struct ByteQueueBuilder {
    inner: QueueBuilder<u64>,
}

impl ByteQueueBuilder {
    /// SPSC or MPMC. Creating defaults to SPSC; opening checks it if set.
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.inner = self.inner.flavor(flavor);
        self
    }

    /// Maximum messages queued (at least 1). Creating requires it; opening
    /// checks it if set.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.inner = self.inner.capacity(capacity);
        self
    }

    /// The largest message in bytes (1 ..= [`MAX_MESSAGE`](crate::MAX_MESSAGE)).
    /// Creating requires it; opening checks it if set
    /// (`MessageSizeMismatch`).
    pub fn max_message_size(mut self, bytes: u64) -> Self {
        self.inner.msg_max = Some(bytes);
        self
    }

    /// Permission bits of a new segment (default 0o600).
    pub fn mode(mut self, mode: u32) -> Self {
        self.inner = self.inner.mode(mode);
        self
    }

    /// The stream ends at the `n`-th sender's close: see
    /// [`QueueBuilder::close_after`](crate::QueueBuilder::close_after).
    pub fn close_after(mut self, n: u64) -> Self {
        self.inner = self.inner.close_after(n);
        self
    }

    /// Keep the name when the creating handle is dropped: see
    /// [`QueueBuilder::persist`](crate::QueueBuilder::persist).
    pub fn persist(mut self, persist: bool) -> Self {
        self.inner = self.inner.persist(persist);
        self
    }

    /// The wake protocol of a new queue (default [`WakeMode::Strict`]; `Fast` interrupts other CPUs when a waiter sleeps: see [`WakeMode::Fast`]).
    pub fn wake_mode(mut self, mode: WakeMode) -> Self {
        self.inner = self.inner.wake_mode(mode);
        self
    }

    /// How long opening waits for a creator to finish (default 1 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.inner = self.inner.init_timeout(timeout);
        self
    }

    /// Open segments owned by another user or writable by group or others.
    pub fn trust_shared(mut self, trust: bool) -> Self {
        self.inner = self.inner.trust_shared(trust);
        self
    }

    /// Creates `/dev/shm/<name>` exclusively.
    /// The name stays until it is removed: see
    /// [names](crate#names-who-removes-them).
    pub fn create(self, name: &str) -> Result<ByteQueue, SegmentError> {
        Ok(ByteQueue {
            inner: self.inner.create(name)?,
        })
    }

    /// Creates a segment at a file path exclusively.
    pub fn create_at(self, path: impl AsRef<Path>) -> Result<ByteQueue, SegmentError> {
        Ok(ByteQueue {
            inner: self.inner.create_at(path)?,
        })
    }

    /// Creates an anonymous (memfd) byte queue.
    pub fn create_anonymous(self) -> Result<ByteQueue, SegmentError> {
        Ok(ByteQueue {
            inner: self.inner.create_anonymous()?,
        })
    }

    /// Opens `/dev/shm/<name>`, checking what was set (never removed by
    /// opening: see [names](crate#names-who-removes-them)).
    pub fn open(self, name: &str) -> Result<ByteQueue, SegmentError> {
        Ok(ByteQueue {
            inner: self.inner.open(name)?,
        })
    }

    /// Opens a segment at a file path.
    pub fn open_at(self, path: impl AsRef<Path>) -> Result<ByteQueue, SegmentError> {
        Ok(ByteQueue {
            inner: self.inner.open_at(path)?,
        })
    }

    /// Opens an anonymous byte queue from an inherited memfd.
    pub fn from_fd(self, fd: OwnedFd) -> Result<ByteQueue, SegmentError> {
        Ok(ByteQueue {
            inner: self.inner.from_fd(fd)?,
        })
    }

    /// Opens `/dev/shm/<name>` if it exists (checking that it matches),
    /// otherwise creates it: see
    /// [`QueueBuilder::open_or_create`](crate::QueueBuilder::open_or_create)
    /// (one segment for every racer; an ended stream is replaced).
    /// The name stays until it is removed: see
    /// [names](crate#names-who-removes-them).
    pub fn open_or_create(self, name: &str) -> Result<ByteQueue, SegmentError> {
        Ok(ByteQueue {
            inner: self.inner.open_or_create(name)?,
        })
    }
}

/// The sending end of a [`ByteQueue`], attached in one process.
pub struct ByteSender {
    inner: Sender<u64>,
    payload: Payload,
    /// A pipe end's session: stamps every message (`None`: unaddressed).
    session: Option<Arc<Session>>,
}

impl fmt::Debug for ByteSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteSender")
            .field("sender", &self.inner)
            .field("max_message_size", &self.payload.max())
            .finish()
    }
}

fn blocking_err(e: ByteSendError) -> ByteSendError {
    // Without a deadline, a wait ends only by disconnection.
    match e {
        ByteSendError::Timeout => ByteSendError::Disconnected,
        other => other,
    }
}

impl ByteSender {
    /// Makes this the sending half of a pipe end: every message it sends
    /// from now on is stamped by `session`.
    pub(crate) fn set_session(&mut self, session: Arc<Session>) {
        self.session = Some(session);
    }

    /// The stamp of the next message (0: unaddressed).
    #[inline(always)]
    fn stamp(&self) -> u64 {
        self.session.as_ref().map_or(0, |s| s.stamp())
    }

    /// Ends this sender's part of the stream: see
    /// [`Sender::close`](crate::Sender::close). Returns whether the stream
    /// is now closed.
    pub fn close(self) -> bool {
        self.inner.close()
    }

    /// Whether blocking and timed sends wait through `Disconnected` until a
    /// receiver attaches: see
    /// [`Sender::set_wait_for_receivers`](crate::Sender::set_wait_for_receivers).
    pub fn set_wait_for_receivers(&mut self, wait: bool) {
        self.inner.set_wait_for_receivers(wait);
    }

    /// This sender's generation: see
    /// [`Sender::generation`](crate::Sender::generation).
    pub fn generation(&self) -> u64 {
        self.inner.generation()
    }

    /// Whether the stream is closed (a snapshot).
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Sends `msg` without waiting.
    ///
    /// # Errors
    /// `TooLarge`, `Full`, `Disconnected`, `Corrupted`.
    pub fn try_send(&self, msg: &[u8]) -> Result<(), ByteSendError> {
        let send = || bytes_core::try_send(&self.inner.raw, &self.payload, msg, self.stamp());
        match send() {
            Err(ByteSendError::Full) if self.inner.idle_reaped() => send(),
            r => r,
        }
    }

    /// Sends `msg`, waiting while the queue is full.
    ///
    /// # Errors
    /// `TooLarge` (nothing is sent), `Disconnected` once no receiver is
    /// left, `Corrupted`.
    #[inline]
    pub fn send(&self, msg: &[u8]) -> Result<(), ByteSendError> {
        bytes_core::send_deadline(
            &self.inner.raw,
            &self.payload,
            msg,
            None,
            self.inner.spin,
            &self.inner.reaper(),
            self.stamp(),
        )
        .map_err(blocking_err)
    }

    /// Sends `msg`, waiting at most `timeout` while the queue is full.
    ///
    /// # Errors
    /// `TooLarge`, `Timeout`, `Disconnected`, `Corrupted`.
    pub fn send_timeout(&self, msg: &[u8], timeout: Duration) -> Result<(), ByteSendError> {
        self.send_deadline(msg, Deadline::after(timeout))
    }

    /// Sends `msg`, waiting until `deadline` while the queue is full.
    ///
    /// # Errors
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&self, msg: &[u8], deadline: Deadline) -> Result<(), ByteSendError> {
        bytes_core::send_deadline(
            &self.inner.raw,
            &self.payload,
            msg,
            Some(deadline),
            self.inner.spin,
            &self.inner.reaper(),
            self.stamp(),
        )
    }

    /// Borrows space for a message of `len` bytes inside the queue, without
    /// waiting. Write it in place, then [`commit`](ByteLoan::commit);
    /// dropping the loan sends nothing.
    ///
    /// # Errors
    /// `TooLarge`, `Full`, `Disconnected`, `Corrupted`.
    #[inline]
    pub fn try_loan(&mut self, len: usize) -> Result<ByteLoan<'_>, ByteSendError> {
        let stamp = self.stamp();
        let loan = || bytes_core::loan(&self.inner.raw, &self.payload, len, None, stamp);
        match loan() {
            Err(ByteSendError::Full) if self.inner.idle_reaped() => loan(),
            r => r,
        }
    }

    /// As [`try_loan`](Self::try_loan), waiting while the queue is full.
    ///
    /// # Errors
    /// `TooLarge`, `Disconnected`, `Corrupted`.
    pub fn loan(&mut self, len: usize) -> Result<ByteLoan<'_>, ByteSendError> {
        let reap = || self.inner.reaper()();
        bytes_core::loan(
            &self.inner.raw,
            &self.payload,
            len,
            Some((None, self.inner.spin, &reap)),
            self.stamp(),
        )
        .map_err(blocking_err)
    }

    /// As [`loan`](Self::loan), waiting at most `timeout`.
    ///
    /// # Errors
    /// `TooLarge`, `Timeout`, `Disconnected`, `Corrupted`.
    pub fn loan_timeout(
        &mut self,
        len: usize,
        timeout: Duration,
    ) -> Result<ByteLoan<'_>, ByteSendError> {
        let reap = || self.inner.reaper()();
        bytes_core::loan(
            &self.inner.raw,
            &self.payload,
            len,
            Some((Some(Deadline::after(timeout)), self.inner.spin, &reap)),
            self.stamp(),
        )
    }

    /// The largest message, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.payload.max()
    }

    /// How long a blocked call spins before sleeping (default 20 µs; zero:
    /// sleep at once). On an MPMC queue, a call that spins at all spins up
    /// to 250 µs more while it sees a peer in the middle of a message
    /// (docs/design.md, "Blocking").
    pub fn set_spin(&mut self, spin: Duration) {
        self.inner.set_spin(spin)
    }

    snapshot_accessors!(inner.mapped);

    /// Whether a receiver is attached anywhere.
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Waits until a receiver is attached or `timeout` passes: see
    /// [`Sender::wait_connected`](crate::Sender::wait_connected).
    pub fn wait_connected(&self, timeout: Option<Duration>) -> bool {
        self.inner.wait_connected(timeout)
    }
}

/// The receiving end of a [`ByteQueue`], attached in one process.
pub struct ByteReceiver {
    inner: Receiver<u64>,
    payload: Payload,
    /// A pipe end's session: screens every message (`None`: all delivered).
    session: Option<Arc<Session>>,
}

impl fmt::Debug for ByteReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteReceiver")
            .field("receiver", &self.inner)
            .field("max_message_size", &self.payload.max())
            .finish()
    }
}

impl ByteReceiver {
    /// Makes this the receiving half of a pipe end: every receive from now
    /// on is screened by `session`. Only for SPSC queues (an MPMC queue's
    /// receives are not screened).
    pub(crate) fn set_session(&mut self, session: Arc<Session>) {
        debug_assert!(self.inner.raw.is_spsc(), "pipe sessions are SPSC only");
        self.session = Some(session);
    }

    fn screen(&self) -> Option<&Session> {
        self.session.as_deref()
    }

    #[inline]
    fn recv_into_until(
        &self,
        out: &mut Vec<u8>,
        deadline: Option<Deadline>,
    ) -> Result<Option<usize>, TryRecvError> {
        loop {
            match bytes_core::recv_into_deadline(
                &self.inner.raw,
                &self.payload,
                out,
                deadline,
                self.inner.spin,
                &self.inner.reaper(),
                self.screen(),
            ) {
                Err(TryRecvError::Disconnected) if self.waits_through_disconnect() => {
                    if !self.wait_through(deadline) {
                        return Ok(None);
                    }
                }
                r => return r,
            }
        }
    }

    /// For a receiver that waits for senders: sleeps until one attaches,
    /// a message is queued, or the stream closes (true), or the deadline.
    fn wait_through(&self, deadline: Option<Deadline>) -> bool {
        self.inner
            .raw
            .wait_for_sender(deadline, &self.inner.reaper())
    }

    /// Whether a `Disconnected` just returned is one to sleep through: this
    /// receiver waits for senders and none is attached. A pipe's session
    /// end (a later peer session holds the other end) is reported even
    /// then: its caller must learn that its peer changed.
    fn waits_through_disconnect(&self) -> bool {
        // A pipe end's half reports every peer session's end: see
        // `set_wait_for_senders`.
        self.inner.wait_for_senders
            && self.session.is_none()
            && self
                .inner
                .raw
                .ctrl()
                .disconnected(crate::types::Role::Sender)
    }

    /// This receiver's generation: see
    /// [`Receiver::generation`](crate::Receiver::generation).
    pub fn generation(&self) -> u64 {
        self.inner.generation()
    }

    /// Whether the stream is closed: see
    /// [`Receiver::is_closed`](crate::Receiver::is_closed).
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Whether blocking and timed receives wait through `Disconnected`
    /// until the stream is closed: see
    /// [`Receiver::set_wait_for_senders`](crate::Receiver::set_wait_for_senders).
    /// No effect on the receiving half of a [`Connection`](crate::Connection):
    /// the end of each peer session is reported there as `Disconnected`,
    /// so that its caller learns that its peer changed (and re-sends).
    pub fn set_wait_for_senders(&mut self, wait: bool) {
        self.inner.set_wait_for_senders(wait);
    }

    /// Marks this receiver's claims as *kept* (MPMC byte queues only).
    ///
    /// While set, if this receiver's process dies holding a claimed message
    /// (a [`ByteRef`] not yet dropped, or a receive cut short), reapers
    /// leave that message in its slot instead of releasing it as
    /// [lost](ByteQueue::lost), and [`ByteQueue::adopt_kept`] hands it to a
    /// successor. Meanwhile the queue stalls at that slot once senders wrap
    /// round to it (after at most one lap: sends find the queue full), and
    /// the dead receiver's endpoint entry stays taken. The receiver still
    /// counts as disconnected as soon as its death is seen. Set for the
    /// rest of this receiver's life; the cost is paid only by reapers and
    /// adopters, never by receives.
    ///
    /// A receiver that drops its `ByteRef`, or is dropped, releases its
    /// claims as usual: only a process's death keeps them.
    ///
    /// # Errors
    /// `FlavorMismatch` on an SPSC queue (its claims cannot be kept).
    pub fn keep_claims(&mut self) -> Result<(), SegmentError> {
        self.inner.mapped.keep_claims(&self.inner.endpoint)
    }

    /// Receives the oldest message into `out` (cleared first, its capacity
    /// reused) without waiting; returns its length.
    ///
    /// # Errors
    /// `Empty`, `Disconnected` (empty and no sender left), `Corrupted`
    /// (including a stored length beyond the maximum: that message is
    /// dropped).
    pub fn try_recv_into(&self, out: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        let mut recv =
            || bytes_core::try_recv_into(&self.inner.raw, &self.payload, out, self.screen());
        match recv() {
            Err(TryRecvError::Empty) if self.inner.idle_reaped() => recv(),
            r => r,
        }
    }

    /// Receives into `out`, waiting while the queue is empty.
    ///
    /// # Errors
    /// `Disconnected` once drained with no sender attached now (undone when
    /// one attaches; see [`Receiver::recv`](crate::Receiver::recv)),
    /// `Closed` once drained at the end of the stream (permanent),
    /// `Corrupted`.
    #[inline]
    pub fn recv_into(&self, out: &mut Vec<u8>) -> Result<usize, RecvError> {
        match self.recv_into_until(out, None) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(RecvError::Disconnected),
            Err(e) => Err(recv_err(e)),
        }
    }

    /// Receives into `out`, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupted`.
    pub fn recv_into_timeout(
        &self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        match self.recv_into_until(out, Some(Deadline::after(timeout))) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(RecvTimeoutError::Timeout),
            Err(e) => Err(recv_timeout_err(e)),
        }
    }

    /// Receives the oldest message as a new `Vec`, without waiting.
    ///
    /// # Errors
    /// As for [`try_recv_into`](Self::try_recv_into).
    pub fn try_recv(&self) -> Result<Vec<u8>, TryRecvError> {
        let mut v = Vec::new();
        self.try_recv_into(&mut v).map(|_| v)
    }

    /// Receives the oldest message as a new `Vec`, waiting while empty.
    ///
    /// # Errors
    /// As for [`recv_into`](Self::recv_into).
    pub fn recv(&self) -> Result<Vec<u8>, RecvError> {
        let mut v = Vec::new();
        self.recv_into(&mut v).map(|_| v)
    }

    /// Receives as a new `Vec`, waiting at most `timeout`.
    ///
    /// # Errors
    /// As for [`recv_into_timeout`](Self::recv_into_timeout).
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        let mut v = Vec::new();
        self.recv_into_timeout(&mut v, timeout).map(|_| v)
    }

    /// Takes the oldest message to read in place, without waiting; its slot
    /// goes back to the senders when the [`ByteRef`] is dropped.
    ///
    /// # Errors
    /// As for [`try_recv_into`](Self::try_recv_into).
    #[inline]
    pub fn try_recv_ref(&mut self) -> Result<ByteRef<'_>, TryRecvError> {
        let claim = || {
            bytes_core::recv_ref(&self.inner.raw, &self.payload, None, self.screen())
                .map(|r| r.expect("no wait, no timeout"))
        };
        match claim() {
            Err(TryRecvError::Empty) if self.inner.idle_reaped() => claim(),
            r => r,
        }
    }

    /// As [`try_recv_ref`](Self::try_recv_ref), waiting while empty.
    ///
    /// # Errors
    /// As for [`recv_into`](Self::recv_into).
    pub fn recv_ref(&mut self) -> Result<ByteRef<'_>, RecvError> {
        match self.claim_waiting(None) {
            Ok(Some(c)) => bytes_core::ref_of(&self.inner.raw, &self.payload, c).map_err(recv_err),
            Ok(None) => Err(RecvError::Disconnected),
            Err(e) => Err(recv_err(e)),
        }
    }

    /// As [`recv_ref`](Self::recv_ref), waiting at most `timeout`.
    ///
    /// # Errors
    /// As for [`recv_into_timeout`](Self::recv_into_timeout).
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<ByteRef<'_>, RecvTimeoutError> {
        match self.claim_waiting(Some(Deadline::after(timeout))) {
            Ok(Some(c)) => {
                bytes_core::ref_of(&self.inner.raw, &self.payload, c).map_err(recv_timeout_err)
            }
            Ok(None) => Err(RecvTimeoutError::Timeout),
            Err(e) => Err(recv_timeout_err(e)),
        }
    }

    /// Claims the oldest message, waiting until `deadline` (`None`:
    /// forever) and, for a receiver that waits for senders, through
    /// `Disconnected`. `Ok(None)`: timed out.
    fn claim_waiting(&self, deadline: Option<Deadline>) -> Result<Option<SlotClaim>, TryRecvError> {
        let reap = || self.inner.reaper()();
        loop {
            match bytes_core::claim_waiting(
                &self.inner.raw,
                Some((deadline, self.inner.spin, &reap)),
                self.screen(),
            ) {
                Err(TryRecvError::Disconnected) if self.waits_through_disconnect() => {
                    if !self.wait_through(deadline) {
                        return Ok(None);
                    }
                }
                r => return r,
            }
        }
    }

    /// Waits at most `timeout` for a message, without taking it: `Ok(true)`
    /// if one is waiting, `Ok(false)` on timeout.
    ///
    /// # Errors
    /// `Disconnected` when nothing is queued and no sender is left (a
    /// `recv` would return it too), `Corrupted`.
    pub fn poll(&self, timeout: Duration) -> Result<bool, RecvError> {
        bytes_core::poll(
            &self.inner.raw,
            self.screen(),
            Some(Deadline::after(timeout)),
            self.inner.spin,
            &self.inner.reaper(),
        )
        .map_err(recv_err)
    }

    /// A blocking iterator: yields messages until `recv` returns an error
    /// (the end of the stream; no sender attached, unless this receiver
    /// waits for senders; or corruption).
    pub fn iter(&self) -> ByteIter<'_> {
        ByteIter {
            rx: self,
            blocking: true,
        }
    }

    /// A non-blocking iterator over the messages queued now.
    pub fn try_iter(&self) -> ByteIter<'_> {
        ByteIter {
            rx: self,
            blocking: false,
        }
    }

    /// The largest message, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.payload.max()
    }

    /// How long a blocked call spins before sleeping (default 20 µs; zero:
    /// sleep at once). On an MPMC queue, a call that spins at all spins up
    /// to 250 µs more while it sees a peer in the middle of a message
    /// (docs/design.md, "Blocking").
    pub fn set_spin(&mut self, spin: Duration) {
        self.inner.set_spin(spin)
    }

    snapshot_accessors!(inner.mapped);

    /// Whether a sender is attached anywhere.
    pub fn is_connected(&self) -> bool {
        self.inner.is_connected()
    }

    /// Waits until a sender is attached or `timeout` passes: see
    /// [`Receiver::wait_connected`](crate::Receiver::wait_connected).
    pub fn wait_connected(&self, timeout: Option<Duration>) -> bool {
        self.inner.wait_connected(timeout)
    }
}

/// An iterator over received byte messages (see [`ByteReceiver::iter`]).
#[derive(Debug)]
pub struct ByteIter<'a> {
    rx: &'a ByteReceiver,
    blocking: bool,
}

impl Iterator for ByteIter<'_> {
    type Item = Vec<u8>;
    fn next(&mut self) -> Option<Vec<u8>> {
        if self.blocking {
            self.rx.recv().ok()
        } else {
            self.rx.try_recv().ok()
        }
    }
}

impl<'a> IntoIterator for &'a ByteReceiver {
    type Item = Vec<u8>;
    type IntoIter = ByteIter<'a>;
    fn into_iter(self) -> ByteIter<'a> {
        self.iter()
    }
}
