//! The public [`Queue<T>`] (a handle to a queue segment, from which
//! endpoints attach) and [`QueueBuilder`] (every way of creating or opening
//! one).

use super::control::QueueControl;
use super::layout::{layout, Expect, WAKE_FAST, WAKE_STRICT};
use super::mapped::{slots_in, snapshot_accessors};
use super::mapped::{MappedQueue, Ring};
use super::raw::{RawReceiver, RawSender, ReapGate, RecvRing, SendRing, DEFAULT_SPIN};
use super::receiver::Receiver;
use super::sender::Sender;
use crate::error::SegmentError;
use crate::ring::mpmc::MpmcRing;
use crate::shm::header::HeaderFields;
use crate::shm::segment::{Location, Segment, SegmentOptions};
use crate::types::{Flavor, Role};
use crate::wait::WakeMode;
use bytemuck::Pod;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;

pub use super::layout::QueueInfo;

/// A bounded queue of `T` in shared memory: a handle to the segment, from
/// which [`Sender`]s and [`Receiver`]s are made in any process.
///
/// The Python equivalent is `multiprocessing.Queue(maxsize)`. Create it by
/// name (`/dev/shm/<name>`), at a file path, or anonymously (a memfd a forked
/// child shares); open it elsewhere by the same name.
///
/// # Examples
/// ```
/// use shmring::{Flavor, Queue};
/// let q = Queue::<u64>::anonymous(Flavor::Spsc, 2)?;
/// let (tx, rx) = (q.sender()?, q.receiver()?);
/// tx.send(7)?;
/// assert_eq!(rx.recv()?, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T: Pod> {
    pub(super) mapped: Arc<MappedQueue<T>>,
}

impl<T: Pod> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            mapped: self.mapped.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("location", self.mapped.seg.location())
            .field("info", &self.mapped.info)
            .finish()
    }
}

impl<T: Pod> Queue<T> {
    /// A builder for every way of creating or opening a queue.
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            flavor: None,
            capacity: None,
            opts: SegmentOptions::default(),
            wake: WakeMode::Strict,
            bytes: false,
            msg_max: None,
            close_after: None,
            _t: PhantomData,
        }
    }

    /// Creates `/dev/shm/<name>` exclusively (mode 0600). The name stays
    /// until it is removed ([`unlink`](Self::unlink), `shmring rm`, or the
    /// end of the stream: see [names](crate#names-who-removes-them)).
    ///
    /// # Errors
    /// `AlreadyExists`, `InvalidArgument` (bad name, capacity 0),
    /// `PermissionDenied`, `Io`.
    pub fn create(name: &str, flavor: Flavor, capacity: u64) -> Result<Self, SegmentError> {
        Self::builder()
            .flavor(flavor)
            .capacity(capacity)
            .create(name)
    }

    /// Opens `/dev/shm/<name>`, of either flavor and any capacity, checking
    /// that it holds a queue of `T`. Opening removes nothing later: see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `NotFound`, `WrongKind`, `TypeMismatch`, `VersionMismatch`,
    /// `SizeMismatch`, `NotInitialized`, `Corrupted`, `PermissionDenied`, `Io`.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::builder().open(name)
    }

    /// Creates an anonymous queue (a sealed, close-on-exec memfd): share it
    /// with children through `fork`; for an exec'd child, duplicate
    /// [`fd`](Self::fd), clear `FD_CLOEXEC` on the duplicate
    /// (`fcntl(fd, F_SETFD, 0)`), pass its number, and reopen it there with
    /// [`QueueBuilder::from_fd`].
    pub fn anonymous(flavor: Flavor, capacity: u64) -> Result<Self, SegmentError> {
        Self::builder()
            .flavor(flavor)
            .capacity(capacity)
            .create_anonymous()
    }

    /// Removes `/dev/shm/<name>`. Mapped handles keep working on the old
    /// segment; a process that opens or creates the name afterwards gets a
    /// new one.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        Segment::remove(&Location::Named(name.to_string()))
    }

    /// Closes the stream outright, as a supervisor would, whatever its
    /// senders are doing: every send from now on gets `Closed`, and no
    /// sender may attach (`SegmentError::Closed`). Receivers take what is
    /// queued and get `Closed` once every sender still attached has left
    /// (dropped, closed, or found dead): a send already under way when
    /// this is called may still land, and is received before `Closed`, so
    /// nothing a send accepted arrives after it. Producers that finish on
    /// their own close with [`Sender::close`] instead.
    pub fn close(&self) {
        self.mapped.ctrl().close_stream();
        self.mapped.remove_if_ended();
    }

    /// Whether the stream is closed.
    pub fn is_closed(&self) -> bool {
        self.mapped.ctrl().closed()
    }

    /// Attaches a sender in this process. The handle works only in this
    /// process: a child that inherits it through `fork` attaches its own
    /// (calls on an inherited endpoint panic; see [`Sender`]).
    ///
    /// # Errors
    /// `RoleTaken { role: Sender, holder }` if this is an SPSC queue whose
    /// sender is alive (`holder`: its pid);
    /// `TooManyEndpoints` if 63 endpoints are live; `ForeignPidNamespace`
    /// if this process lives in another pid namespace than the queue's
    /// creator (a handle inherited across `unshare(CLONE_NEWPID)`);
    /// `Corrupted`.
    pub fn sender(&self) -> Result<Sender<T>, SegmentError> {
        let (info, generation) = self.mapped.attach(Role::Sender)?;
        let ring = match self.mapped.ring {
            Ring::Spsc(r) => match r.producer() {
                Ok(p) => SendRing::Spsc(p),
                Err(_) => {
                    self.mapped.detach(Role::Sender, &info);
                    return Err(SegmentError::Corrupted("queue indices out of range"));
                }
            },
            Ring::Mpmc(r) => SendRing::Mpmc(self.mapped.intent_view(r, &info)),
        };
        // SAFETY: `Sender` holds the Arc that keeps the mapping alive, and
        // the sender was counted by `attach`.
        let mut raw = unsafe { RawSender::new(self.mapped.ctrl, ring, self.mapped.info.wake_mode) };
        // SAFETY: the record lives as long as the mapping (kept by the Arc
        // in `Sender`) and is this endpoint's alone while attached.
        unsafe { raw.bind(info.owner.pid, self.mapped.spsc_record(&info)) };
        Ok(Sender {
            raw,
            mapped: self.mapped.clone(),
            endpoint: info,
            generation,
            detached: false,
            spin: DEFAULT_SPIN,
            gate: ReapGate::default(),
        })
    }

    /// Attaches a receiver in this process.
    ///
    /// # Errors
    /// As for [`sender`](Self::sender), with `RoleTaken { role: Receiver, .. }`.
    pub fn receiver(&self) -> Result<Receiver<T>, SegmentError> {
        let (info, generation) = self.mapped.attach(Role::Receiver)?;
        let ring = match self.mapped.ring {
            Ring::Spsc(r) => match r.consumer() {
                Ok(c) => RecvRing::Spsc(c),
                Err(_) => {
                    self.mapped.detach(Role::Receiver, &info);
                    return Err(SegmentError::Corrupted("queue indices out of range"));
                }
            },
            Ring::Mpmc(r) => RecvRing::Mpmc(self.mapped.intent_view(r, &info)),
        };
        // SAFETY: as in `sender`.
        let mut raw =
            unsafe { RawReceiver::new(self.mapped.ctrl, ring, self.mapped.info.wake_mode) };
        // SAFETY: as in `sender`.
        unsafe { raw.bind(info.owner.pid, self.mapped.spsc_record(&info)) };
        Ok(Receiver {
            raw,
            mapped: self.mapped.clone(),
            endpoint: info,
            generation,
            wait_for_senders: false,
            spin: DEFAULT_SPIN,
            gate: ReapGate::default(),
        })
    }

    /// Flavor, capacity, element type and size, from the header.
    pub fn info(&self) -> &QueueInfo {
        &self.mapped.info
    }

    /// The flavor.
    pub fn flavor(&self) -> Flavor {
        self.mapped.info.flavor
    }

    snapshot_accessors!(mapped);

    /// Attached senders and receivers, in all processes: a snapshot of the
    /// peer bitmaps, no system call. An endpoint whose process died counts
    /// until a reaper reclaims it (a peer blocked on it, within a liveness
    /// slice, or [`reap_dead`](Self::reap_dead)); for live ones only, see
    /// [`live_endpoints`](Self::live_endpoints).
    pub fn endpoints(&self) -> (u32, u32) {
        let c = self.mapped.ctrl();
        (c.live(Role::Sender), c.live(Role::Receiver))
    }

    /// Senders and receivers held by live processes: reclaims the
    /// endpoints of dead ones first ([`reap_dead`](Self::reap_dead), which
    /// reads `/proc` for each attached endpoint), then counts.
    pub fn live_endpoints(&self) -> (u32, u32) {
        self.reap_dead();
        self.endpoints()
    }

    /// Endpoints reclaimed so far from processes that died holding them.
    pub fn reaped(&self) -> u64 {
        // Relaxed: a statistic.
        self.mapped.ctrl().peers.reaped.load(Ordering::Relaxed)
    }

    /// Reclaims endpoints whose processes are dead, first repairing the
    /// claims they left in flight, at once. Blocked calls do this by
    /// themselves every liveness slice, and so do polls that find nothing
    /// to do (empty or full), at most once a slice.
    pub fn reap_dead(&self) {
        self.mapped.reap(Role::Sender);
        self.mapped.reap(Role::Receiver);
    }

    /// Messages lost so far with claims that were never finished: a loan
    /// never committed or an in-place read never released (both flavors),
    /// or an MPMC send or receive cut short between its claim and its
    /// publishing store — by a process that died (settled by a reaper) or
    /// by a loan or `Ref` leaked with `mem::forget` (settled by its handle's
    /// next call). Each is counted once; none is ever delivered twice or
    /// torn. A copying SPSC send or receive cut short claims nothing: the
    /// message is not sent, or stays queued for the next receiver.
    pub fn lost(&self) -> u64 {
        // Relaxed: a statistic.
        self.mapped.ctrl().peers.lost.load(Ordering::Relaxed)
    }

    /// Pipes: messages found addressed to an earlier generation of their
    /// receiving end (see [`ByteQueue::stale`](crate::ByteQueue::stale)).
    pub(super) fn stale(&self) -> u64 {
        // Relaxed: a statistic.
        self.mapped.ctrl().peers.stale.load(Ordering::Relaxed)
    }

    /// The control block, for a pipe's session (valid while the mapping,
    /// kept by this handle's `Arc`, is).
    pub(super) fn ctrl_ptr(&self) -> NonNull<QueueControl> {
        self.mapped.ctrl
    }

    /// Keep the name after the creating handle is dropped: undoes a
    /// builder's `persist(false)` (names stay by default).
    pub fn persist(&self) {
        self.mapped.seg.set_persist(true);
    }

    /// The segment's file path (`/dev/shm/<name>` or the path given), if named.
    pub fn path(&self) -> Option<PathBuf> {
        self.mapped.seg.path()
    }

    /// The memfd of an anonymous queue (to pass to a child process).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.mapped.seg.fd()
    }

    /// The raw memfd of an anonymous queue.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.mapped.seg.raw_fd()
    }
}

/// Builds or opens a [`Queue`]: flavor, capacity, permissions, persistence,
/// wake protocol, and where the segment lives.
#[derive(Debug)]
pub struct QueueBuilder<T> {
    flavor: Option<Flavor>,
    capacity: Option<u64>,
    opts: SegmentOptions,
    wake: WakeMode,
    /// Builds a byte queue (set by `ByteQueueBuilder`).
    pub(super) bytes: bool,
    /// Byte queues: the maximum message size.
    pub(super) msg_max: Option<u64>,
    /// Closes that end the stream (see `close_after`).
    close_after: Option<u64>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> QueueBuilder<T> {
    /// SPSC or MPMC. Creating defaults to SPSC; opening checks it if set.
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = Some(flavor);
        self
    }

    /// Maximum messages queued (exact; at least 1). Creating requires it;
    /// opening checks it if set.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = Some(capacity);
        self
    }

    crate::shm::segment::segment_option_setters!();

    /// The wake protocol of a new queue (default [`WakeMode::Strict`]; `Fast` interrupts other CPUs when a waiter sleeps: see [`WakeMode::Fast`]).
    pub fn wake_mode(mut self, mode: WakeMode) -> Self {
        self.wake = mode;
        self
    }

    /// The stream ends at the `n`-th [`Sender::close`] (default: when a
    /// sender closes while no other sender is attached). For `n` producers
    /// started in any order: without a count, a producer that finishes
    /// before the next one starts would end the stream early. Fixed at
    /// creation; opening with another count is refused (`InvalidArgument`).
    pub fn close_after(mut self, n: u64) -> Self {
        self.close_after = Some(n);
        self
    }

    fn fields(&self) -> Result<HeaderFields, SegmentError> {
        let capacity = self.capacity.ok_or_else(|| {
            SegmentError::InvalidArgument("creating a queue needs a capacity".into())
        })?;
        let msg_max = if self.bytes {
            match self.msg_max {
                Some(0) | None => {
                    return Err(SegmentError::InvalidArgument(
                        "a byte queue needs a maximum message size of at least 1 byte".into(),
                    ))
                }
                Some(m) => m,
            }
        } else {
            0
        };
        let mut f = layout::<T>(self.flavor.unwrap_or(Flavor::Spsc), capacity, msg_max)?;
        f.wake_mode = match self.wake {
            WakeMode::Fast => WAKE_FAST,
            WakeMode::Strict => WAKE_STRICT,
        };
        Ok(f)
    }

    fn create_at_location(&self, loc: Location) -> Result<Queue<T>, SegmentError> {
        let fields = self.fields()?;
        let flavor = self.flavor.unwrap_or(Flavor::Spsc);
        let close_after = self.close_after.unwrap_or(0);
        let seg = Segment::create(&loc, fields, &self.opts, |seg| {
            if let Some(ctrl) = seg.at::<QueueControl>(fields.control_offset, 1) {
                // SAFETY: in bounds (checked by `at`) and alive during `init`.
                unsafe { ctrl.as_ref() }.set_close_after(close_after);
            }
            if flavor == Flavor::Mpmc {
                if let (Some(ctrl), Some(slots)) = (
                    seg.at::<QueueControl>(fields.control_offset, 1),
                    slots_in::<T>(seg, &fields),
                ) {
                    // SAFETY: in bounds (checked by `at`) and alive during `init`.
                    let c = unsafe { ctrl.as_ref() };
                    // SAFETY: as above (`slots_in`): `capacity` slots,
                    // `slot_stride` bytes apart, from our own layout.
                    let ring = unsafe {
                        MpmcRing::from_raw(
                            NonNull::from(&*c.head),
                            NonNull::from(&*c.tail),
                            slots,
                            fields.slot_stride as usize,
                            fields.capacity,
                        )
                    };
                    ring.init();
                }
            }
        })?;
        let fields = seg.header().read();
        let mapped = MappedQueue::new(
            seg,
            &fields,
            &Expect {
                flavor: None,
                capacity: None,
                bytes: self.bytes,
                msg_max: None,
            },
        )?;
        Ok(Queue {
            mapped: Arc::new(mapped),
        })
    }

    fn open_location(&self, loc: Location) -> Result<Queue<T>, SegmentError> {
        let (seg, fields) = Segment::open(&loc, &self.opts)?;
        self.finish_open(seg, fields)
    }

    fn finish_open(&self, seg: Segment, fields: HeaderFields) -> Result<Queue<T>, SegmentError> {
        let expect = Expect {
            flavor: self.flavor,
            capacity: self.capacity,
            bytes: self.bytes,
            msg_max: self.msg_max,
        };
        let mapped = MappedQueue::new(seg, &fields, &expect)?;
        if let Some(n) = self.close_after {
            // Relaxed: fixed at creation, published with the header.
            let found = mapped.ctrl().peers.close_after.load(Ordering::Relaxed);
            if found != n {
                return Err(SegmentError::InvalidArgument(format!(
                    "the queue's stream ends after {found} closes (0: at the last sender's), \
                     asked for {n}"
                )));
            }
        }
        Ok(Queue {
            mapped: Arc::new(mapped),
        })
    }

    /// Creates `/dev/shm/<name>` exclusively. The name stays until it is
    /// removed: see [names](crate#names-who-removes-them).
    pub fn create(self, name: &str) -> Result<Queue<T>, SegmentError> {
        self.create_at_location(Location::Named(name.to_string()))
    }

    /// Creates a segment at a file path exclusively (symlinks refused).
    /// The file stays until it is removed: see
    /// [names](crate#names-who-removes-them).
    pub fn create_at(self, path: impl AsRef<Path>) -> Result<Queue<T>, SegmentError> {
        self.create_at_location(Location::Path(path.as_ref().to_path_buf()))
    }

    /// Creates an anonymous (memfd) queue.
    pub fn create_anonymous(self) -> Result<Queue<T>, SegmentError> {
        self.create_at_location(Location::Anonymous)
    }

    /// Opens `/dev/shm/<name>`, checking flavor and capacity if they were
    /// set. Opening never removes the name later: see
    /// [names](crate#names-who-removes-them).
    pub fn open(self, name: &str) -> Result<Queue<T>, SegmentError> {
        self.open_location(Location::Named(name.to_string()))
    }

    /// Opens a segment at a file path (never removed by opening).
    pub fn open_at(self, path: impl AsRef<Path>) -> Result<Queue<T>, SegmentError> {
        self.open_location(Location::Path(path.as_ref().to_path_buf()))
    }

    /// Opens an anonymous queue from an inherited memfd.
    pub fn from_fd(self, fd: OwnedFd) -> Result<Queue<T>, SegmentError> {
        let (seg, fields) = Segment::from_fd(fd, &self.opts)?;
        self.finish_open(seg, fields)
    }

    /// Opens `/dev/shm/<name>` if it exists (checking that it matches),
    /// otherwise creates it: what every program of a system started in any
    /// order calls. Of several processes racing here, exactly one creates
    /// and all get that segment. The name stays until it is removed
    /// ([`Queue::unlink`], `shmring rm`, or the end of the stream: see
    /// [names](crate#names-who-removes-them)).
    pub fn open_or_create(self, name: &str) -> Result<Queue<T>, SegmentError> {
        let mut last = None;
        for _ in 0..8 {
            match self.create_at_location(Location::Named(name.to_string())) {
                Err(SegmentError::AlreadyExists(_)) => {}
                other => return other,
            }
            match self.open_location(Location::Named(name.to_string())) {
                Err(SegmentError::NotFound(n)) => last = Some(SegmentError::NotFound(n)),
                // A stream that ended (closed, drained, only dead endpoints
                // left) whose name nobody removed yet: remove it and make
                // a new one.
                Ok(q) if q.mapped.remove_if_ended() => {
                    last = Some(SegmentError::NotFound(name.to_string()))
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(SegmentError::NotInitialized))
    }
}
