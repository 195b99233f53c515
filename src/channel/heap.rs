//! A queue on the heap: the same control block and rings, in process memory.
//!
//! Loom atomics cannot live in mapped bytes, so the loom models build their
//! queues here; unit tests use it to run the ring and channel code across
//! threads. Nothing here touches a segment or a process table.
//! [`HeapQueue`] carries `Copy` values; [`HeapByteQueue`] carries byte
//! messages, with its payload area allocated on the heap.

use super::bytes_core::{self, ByteLoan, ByteRef};
use super::control::QueueControl;
use super::payload::Payload;
use super::raw::{RawReceiver, RawSender, RecvRing, SendRing};
use super::session::Session;
use crate::error::{ByteSendError, TryRecvError};
use crate::ring::mpmc::{Intent, MpmcRing};
use crate::ring::spsc::{slot_count, SpscRing};
use crate::ring::Slot;
use crate::types::{Flavor, Role};
use crate::wait::{Deadline, WakeMode};
use std::alloc::Layout;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

enum Slots<T> {
    Spsc(Box<[Slot<T>]>),
    Mpmc(Box<[Slot<T>]>),
}

/// A heap-backed queue (loom models and threaded unit tests).
pub struct HeapQueue<T> {
    ctrl: Box<QueueControl>,
    slots: Slots<T>,
    /// One intent record per endpoint bit (MPMC claims in flight).
    intents: Box<[Intent]>,
    capacity: u64,
    mode: WakeMode,
    next_bit: AtomicU32,
}

// SAFETY: all shared state is atomics or slots guarded by the ring protocols.
unsafe impl<T: Send> Send for HeapQueue<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for HeapQueue<T> {}

impl<T: Copy + Default + Send> HeapQueue<T> {
    /// Sets the number of closes that end the stream (see
    /// `QueueBuilder::close_after`); before any endpoint attaches.
    pub fn set_close_after(&self, n: u64) {
        self.ctrl.set_close_after(n);
    }

    /// Whether the stream is closed.
    pub fn is_closed(&self) -> bool {
        self.ctrl.closed()
    }

    /// Closes the stream outright (`Queue::close`).
    pub fn close_stream(&self) {
        self.ctrl.close_stream();
    }

    /// A new empty queue.
    pub fn new(flavor: Flavor, capacity: u64, mode: WakeMode) -> Arc<Self> {
        assert!(capacity >= 1);
        let slots = match flavor {
            Flavor::Spsc => Slots::Spsc(
                (0..slot_count(capacity))
                    .map(|_| Slot::new(0, T::default()))
                    .collect(),
            ),
            Flavor::Mpmc => {
                Slots::Mpmc((0..capacity).map(|i| Slot::new(i, T::default())).collect())
            }
        };
        Arc::new(HeapQueue {
            ctrl: Box::new(QueueControl::new()),
            slots,
            intents: (0..64).map(|_| Intent::new()).collect(),
            capacity,
            mode,
            next_bit: AtomicU32::new(0),
        })
    }

    /// The control block.
    pub fn ctrl(&self) -> &QueueControl {
        &self.ctrl
    }

    fn ctrl_ptr(&self) -> NonNull<QueueControl> {
        NonNull::from(&*self.ctrl)
    }

    fn spsc(&self, s: &[Slot<T>]) -> SpscRing<T> {
        // SAFETY: the control block and slots live as long as `self`, which
        // every handle keeps alive through its Arc.
        unsafe {
            SpscRing::from_raw(
                NonNull::from(&*self.ctrl.head),
                NonNull::from(&*self.ctrl.tail),
                NonNull::from(&s[0]),
                std::mem::size_of::<Slot<T>>(),
                self.capacity,
            )
        }
    }

    /// The MPMC ring as endpoint `bit` sees it: announcing its claims.
    fn mpmc_for(&self, s: &[Slot<T>], bit: u32) -> MpmcRing<T> {
        let record = &self.intents[bit as usize % self.intents.len()];
        record.reset();
        // SAFETY: the record lives as long as `self` (kept alive by the
        // handle's Arc) and bit `bit` is this endpoint's while attached.
        unsafe { self.mpmc(s).with_intent(NonNull::from(record)) }
    }

    /// MPMC: repairs claims that endpoints for which `live(bit)` is false
    /// left in flight (as a reaper does for dead processes): unpublished
    /// positions become skip records, unreleased slots are freed, and both
    /// sides are woken. Returns the messages lost. SPSC: 0.
    pub fn repair(&self, live: &dyn Fn(usize) -> bool) -> u64 {
        let Slots::Mpmc(s) = &self.slots else {
            return 0;
        };
        let ring = self.mpmc(s);
        // No time budget here (loom does not model time): a pass always
        // completes, so a fresh cursor each time is the whole ring.
        let done = ring.repair(
            &self.intents,
            live,
            &|| false,
            &mut crate::ring::mpmc::RepairCursor::default(),
        );
        if done.slots > 0 {
            self.ctrl.not_empty.wake_all();
            self.ctrl.not_full.wake_all();
        }
        done.lost
    }

    /// SPSC: settles what the endpoint of `bit` (proven dead by the caller,
    /// its role bit still set) announced — a consumer's in-place read is
    /// stepped over, a producer's loan only counted — as a reaper does.
    /// True when there was such a claim (one message lost). MPMC: false.
    pub fn repair_dead_spsc(&self, bit: u32, role: Role) -> bool {
        let Slots::Spsc(s) = &self.slots else {
            return false;
        };
        let record = &self.intents[bit as usize % self.intents.len()];
        let ring = self.spsc(s);
        let done = match role {
            Role::Receiver => ring.repair_dead_consumer(record),
            Role::Sender => ring.repair_dead_producer(record),
        };
        if done && role == Role::Receiver {
            self.ctrl.not_full.wake_all();
        }
        done
    }

    /// SPSC: endpoint `bit`'s intent record, cleared.
    fn spsc_record(&self, bit: u32) -> Option<NonNull<Intent>> {
        if !matches!(self.slots, Slots::Spsc(_)) {
            return None;
        }
        let record = &self.intents[bit as usize % self.intents.len()];
        record.reset();
        Some(NonNull::from(record))
    }

    fn mpmc(&self, s: &[Slot<T>]) -> MpmcRing<T> {
        // SAFETY: as in `spsc`.
        unsafe {
            MpmcRing::from_raw(
                NonNull::from(&*self.ctrl.head),
                NonNull::from(&*self.ctrl.tail),
                NonNull::from(&s[0]),
                std::mem::size_of::<Slot<T>>(),
                self.capacity,
            )
        }
    }

    fn bit(&self) -> u32 {
        // Relaxed: a process-local counter handing out distinct bits.
        self.next_bit.fetch_add(1, Ordering::Relaxed)
            % crate::channel::control::ENDPOINT_BITS as u32
    }

    /// Attaches a sender; `None` if an SPSC queue already has one.
    pub fn sender(self: &Arc<Self>) -> Option<HeapSender<T>> {
        let bit = self.bit();
        let exclusive = matches!(self.slots, Slots::Spsc(_));
        if self.ctrl.attach(Role::Sender, bit, exclusive).is_err() {
            return None;
        }
        let ring = match &self.slots {
            Slots::Spsc(s) => SendRing::Spsc(self.spsc(s).producer().ok()?),
            Slots::Mpmc(s) => SendRing::Mpmc(self.mpmc_for(s, bit)),
        };
        // SAFETY: the Arc in the handle keeps the control block alive, and
        // the sender was counted just above.
        let mut raw = unsafe { RawSender::new(self.ctrl_ptr(), ring, self.mode) };
        // SAFETY: the record lives as long as `self` (the handle's Arc) and
        // is this endpoint's while attached. Pid 0: threads, no check.
        unsafe { raw.bind(0, self.spsc_record(bit)) };
        Some(HeapSender {
            raw,
            bit,
            queue: self.clone(),
            closed: false,
        })
    }

    /// Attaches a receiver; `None` if an SPSC queue already has one.
    pub fn receiver(self: &Arc<Self>) -> Option<HeapReceiver<T>> {
        let bit = self.bit();
        let exclusive = matches!(self.slots, Slots::Spsc(_));
        if self.ctrl.attach(Role::Receiver, bit, exclusive).is_err() {
            return None;
        }
        let ring = match &self.slots {
            Slots::Spsc(s) => RecvRing::Spsc(self.spsc(s).consumer().ok()?),
            Slots::Mpmc(s) => RecvRing::Mpmc(self.mpmc_for(s, bit)),
        };
        // SAFETY: as in `sender`.
        let mut raw = unsafe { RawReceiver::new(self.ctrl_ptr(), ring, self.mode) };
        // SAFETY: as in `sender`.
        unsafe { raw.bind(0, self.spsc_record(bit)) };
        Some(HeapReceiver {
            raw,
            bit,
            queue: self.clone(),
        })
    }
}

/// A sender on a [`HeapQueue`]; detaches on drop.
pub struct HeapSender<T: Copy + Default + Send> {
    raw: RawSender<T>,
    bit: u32,
    queue: Arc<HeapQueue<T>>,
    /// Closed: the bit is gone already.
    closed: bool,
}

impl<T: Copy + Default + Send> HeapSender<T> {
    /// Ends this sender's part of the stream (see `QueueControl::close`);
    /// true if the stream is now closed.
    pub fn close(mut self) -> bool {
        self.closed = true;
        self.queue.ctrl.close(self.bit)
    }
}

impl<T: Copy + Default + Send> Deref for HeapSender<T> {
    type Target = RawSender<T>;
    fn deref(&self) -> &RawSender<T> {
        &self.raw
    }
}

impl<T: Copy + Default + Send> Drop for HeapSender<T> {
    fn drop(&mut self) {
        if !self.closed {
            self.queue.ctrl.detach(Role::Sender, self.bit);
        }
    }
}

/// A receiver on a [`HeapQueue`]; detaches on drop.
pub struct HeapReceiver<T: Copy + Default + Send> {
    raw: RawReceiver<T>,
    bit: u32,
    queue: Arc<HeapQueue<T>>,
}

impl<T: Copy + Default + Send> Deref for HeapReceiver<T> {
    type Target = RawReceiver<T>;
    fn deref(&self) -> &RawReceiver<T> {
        &self.raw
    }
}

impl<T: Copy + Default + Send> Drop for HeapReceiver<T> {
    fn drop(&mut self) {
        self.queue.ctrl.detach(Role::Receiver, self.bit);
    }
}

/// A heap area of `count` zeroed payloads of `stride` bytes, freed on drop.
struct PayloadArea {
    base: NonNull<u8>,
    /// `None` for an empty area (nothing was allocated).
    layout: Option<Layout>,
}

// SAFETY: the area is plain bytes; every access goes through a `Payload`
// view, whose accesses the ring protocol orders.
unsafe impl Send for PayloadArea {}
// SAFETY: as above.
unsafe impl Sync for PayloadArea {}

impl PayloadArea {
    /// Alignment of the area and of every payload (the stride is a multiple
    /// of it): a cache line, as in a segment.
    const ALIGN: usize = 64;

    fn new(count: u64, stride: usize) -> Self {
        let size = usize::try_from(count)
            .ok()
            .and_then(|c| c.checked_mul(stride))
            .expect("payload area size overflows");
        if size == 0 {
            return PayloadArea {
                base: NonNull::dangling(),
                layout: None,
            };
        }
        let layout = Layout::from_size_align(size, Self::ALIGN).expect("payload area too large");
        // SAFETY: `layout` has a non-zero size (checked above).
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(ptr) else {
            std::alloc::handle_alloc_error(layout)
        };
        PayloadArea {
            base,
            layout: Some(layout),
        }
    }
}

impl Drop for PayloadArea {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `new` with this very layout, and freed
            // only here, once: every `Payload` view into the area belongs to
            // a holder of the `Arc` that owns it, so none is left.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) };
        }
    }
}

/// A heap-backed byte-message queue (loom models and threaded unit tests):
/// a [`HeapQueue<u64>`] of ring words (length and session stamp) plus a heap payload area with
/// one payload per ring slot, driven by the same
/// [`bytes_core`] functions as the segment-backed
/// [`ByteQueue`](crate::ByteQueue).
///
/// Cloning shares the queue.
#[derive(Clone)]
pub struct HeapByteQueue {
    queue: Arc<HeapQueue<u64>>,
    /// One view for all handles: under loom its ownership guards must be
    /// shared, so every handle clones this one.
    payload: Payload,
    area: Arc<PayloadArea>,
}

impl HeapByteQueue {
    /// A new empty queue of `capacity` messages of at most `max` bytes each.
    pub fn new(flavor: Flavor, capacity: u64, max: usize, mode: WakeMode) -> Self {
        let queue = HeapQueue::<u64>::new(flavor, capacity, mode);
        let count = match flavor {
            Flavor::Spsc => slot_count(capacity),
            Flavor::Mpmc => capacity,
        };
        let stride = max
            .checked_next_multiple_of(PayloadArea::ALIGN)
            .expect("payload size overflows");
        let area = Arc::new(PayloadArea::new(count, stride));
        // SAFETY: the area holds `count * stride` bytes and lives as long as
        // the `Arc` that every holder of this view (the queue and each of its
        // handles) keeps; `max <= stride` by construction.
        let payload = unsafe { Payload::from_raw(area.base, stride, max, count) };
        HeapByteQueue {
            queue,
            payload,
            area,
        }
    }

    /// The largest message, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.payload.max()
    }

    /// The underlying queue of message lengths.
    pub fn queue(&self) -> &Arc<HeapQueue<u64>> {
        &self.queue
    }

    /// Attaches a sender; `None` if an SPSC queue already has one.
    pub fn sender(&self) -> Option<HeapByteSender> {
        Some(HeapByteSender {
            inner: self.queue.sender()?,
            payload: self.payload.clone(),
            _area: self.area.clone(),
            session: None,
        })
    }

    /// Attaches a receiver; `None` if an SPSC queue already has one.
    pub fn receiver(&self) -> Option<HeapByteReceiver> {
        Some(HeapByteReceiver {
            inner: self.queue.receiver()?,
            payload: self.payload.clone(),
            _area: self.area.clone(),
            session: None,
        })
    }

    /// MPMC: hands the messages kept for an adopter holding the intent
    /// records of the bits with `held(bit)` to `f`, as
    /// `ByteQueue::adopt_kept` does once it has won those dead endpoints'
    /// entries (see [`bytes_core::adopt_kept`]); `live(bit)` is the
    /// liveness callback, as for [`HeapQueue::repair`]. SPSC: `Ok(0)`.
    ///
    /// # Errors
    /// The first error `f` returns.
    pub fn adopt_kept<E>(
        &self,
        live: &dyn Fn(usize) -> bool,
        held: &dyn Fn(usize) -> bool,
        f: &mut bytes_core::Adopt<'_, E>,
    ) -> Result<usize, E> {
        let q = &self.queue;
        let Slots::Mpmc(s) = &q.slots else {
            return Ok(0);
        };
        bytes_core::adopt_kept(
            &q.mpmc(s),
            &self.payload,
            &q.ctrl,
            &q.intents,
            live,
            held,
            f,
        )
    }

    /// A pipe end's session (see [`Session`]) of generation `mine`, whose
    /// peer holds `peer` on this queue.
    pub fn session(&self, peer: Role, mine: u64, keep_stale: bool) -> Arc<Session> {
        let keep: Arc<dyn std::any::Any + Send + Sync> = self.queue.clone();
        // SAFETY: the control block lives as long as the queue, which
        // `keep` keeps alive.
        Arc::new(unsafe { Session::new(self.queue.ctrl_ptr(), keep, peer, mine, keep_stale) })
    }
}

/// A sender on a [`HeapByteQueue`]; detaches on drop.
pub struct HeapByteSender {
    inner: HeapSender<u64>,
    payload: Payload,
    _area: Arc<PayloadArea>,
    session: Option<Arc<Session>>,
}

impl HeapByteSender {
    /// Stamps every message sent from now on with `session`'s address.
    pub fn set_session(&mut self, session: Arc<Session>) {
        self.session = Some(session);
    }

    fn stamp(&self) -> u64 {
        self.session.as_ref().map_or(0, |s| s.stamp())
    }

    /// The sending core.
    pub fn raw(&self) -> &RawSender<u64> {
        &self.inner
    }

    /// The largest message, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.payload.max()
    }

    /// Sends `msg` without waiting.
    ///
    /// # Errors
    /// `TooLarge`, `Full`, `Disconnected`, `Corrupted`.
    pub fn try_send(&self, msg: &[u8]) -> Result<(), ByteSendError> {
        bytes_core::try_send(&self.inner, &self.payload, msg, self.stamp())
    }

    /// Sends `msg`, waiting for room until `deadline` (`None`: forever),
    /// spinning for `spin` first and calling `reap` between sleeps.
    ///
    /// # Errors
    /// `TooLarge`, `Timeout`, `Disconnected`, `Corrupted`.
    pub fn send_deadline(
        &self,
        msg: &[u8],
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<(), ByteSendError> {
        bytes_core::send_deadline(
            &self.inner,
            &self.payload,
            msg,
            deadline,
            spin,
            reap,
            self.stamp(),
        )
    }

    /// Borrows space for a message of `len` bytes, without waiting.
    /// `&mut self`: one loan at a time per handle (an SPSC claim is only
    /// the producer's index, so a second loan would get the same slot).
    ///
    /// # Errors
    /// `TooLarge`, `Full`, `Disconnected`, `Corrupted`.
    pub fn try_loan(&mut self, len: usize) -> Result<ByteLoan<'_>, ByteSendError> {
        let stamp = self.stamp();
        bytes_core::loan(&self.inner, &self.payload, len, None, stamp)
    }

    /// As [`try_loan`](Self::try_loan), waiting for room until `deadline`
    /// (`None`: forever), spinning for `spin` first and calling `reap`
    /// between sleeps.
    ///
    /// # Errors
    /// `TooLarge`, `Timeout`, `Disconnected`, `Corrupted`.
    pub fn loan_deadline(
        &mut self,
        len: usize,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<ByteLoan<'_>, ByteSendError> {
        let stamp = self.stamp();
        bytes_core::loan(
            &self.inner,
            &self.payload,
            len,
            Some((deadline, spin, reap)),
            stamp,
        )
    }
}

/// A receiver on a [`HeapByteQueue`]; detaches on drop.
pub struct HeapByteReceiver {
    inner: HeapReceiver<u64>,
    payload: Payload,
    _area: Arc<PayloadArea>,
    session: Option<Arc<Session>>,
}

impl HeapByteReceiver {
    /// Screens every receive from now on with `session` (SPSC only).
    pub fn set_session(&mut self, session: Arc<Session>) {
        self.session = Some(session);
    }

    /// Waits until a message to deliver is queued (`Ok(true)`) or
    /// `deadline` passes (`Ok(false)`), taking nothing: see
    /// [`bytes_core::poll`].
    ///
    /// # Errors
    /// `Disconnected`, `Corrupted`.
    pub fn poll_deadline(
        &self,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<bool, TryRecvError> {
        bytes_core::poll(&self.inner, self.session.as_deref(), deadline, spin, reap)
    }

    /// The receiving core.
    pub fn raw(&self) -> &RawReceiver<u64> {
        &self.inner
    }

    /// This receiver's endpoint bit (and intent record).
    pub fn bit(&self) -> u32 {
        self.inner.bit
    }

    /// MPMC: marks this receiver's claims as kept (see
    /// `ByteReceiver::keep_claims`).
    pub fn keep_claims(&mut self) {
        let q = &self.inner.queue;
        q.intents[self.inner.bit as usize % q.intents.len()].set_keep();
    }

    /// The largest message, in bytes.
    pub fn max_message_size(&self) -> usize {
        self.payload.max()
    }

    /// Receives the oldest message into `out` (cleared first) without
    /// waiting; returns its length.
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupted`.
    pub fn try_recv_into(&self, out: &mut Vec<u8>) -> Result<usize, TryRecvError> {
        bytes_core::try_recv_into(&self.inner, &self.payload, out, self.session.as_deref())
    }

    /// Receives into `out`, waiting until `deadline` (`None`: forever),
    /// spinning for `spin` first and calling `reap` between sleeps.
    /// `Ok(None)`: timed out.
    ///
    /// # Errors
    /// `Disconnected`, `Corrupted`.
    pub fn recv_into_deadline(
        &self,
        out: &mut Vec<u8>,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<Option<usize>, TryRecvError> {
        bytes_core::recv_into_deadline(
            &self.inner,
            &self.payload,
            out,
            deadline,
            spin,
            reap,
            self.session.as_deref(),
        )
    }

    /// Takes the oldest message to read in place, without waiting.
    /// `&mut self`: one at a time per handle (an SPSC claim is only the
    /// consumer's index, so a second one would get the same message).
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupted`.
    pub fn try_recv_ref(&mut self) -> Result<ByteRef<'_>, TryRecvError> {
        bytes_core::recv_ref(&self.inner, &self.payload, None, self.session.as_deref())
            .map(|r| r.expect("no wait, no timeout"))
    }

    /// As [`try_recv_ref`](Self::try_recv_ref), waiting until `deadline`
    /// (`None`: forever), spinning for `spin` first and calling `reap`
    /// between sleeps. `Ok(None)`: timed out.
    ///
    /// # Errors
    /// `Disconnected`, `Corrupted`.
    pub fn recv_ref_deadline(
        &mut self,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<Option<ByteRef<'_>>, TryRecvError> {
        bytes_core::recv_ref(
            &self.inner,
            &self.payload,
            Some((deadline, spin, reap)),
            self.session.as_deref(),
        )
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::error::{TryRecvError, TrySendError};
    use std::time::Duration;

    fn stream(flavor: Flavor, capacity: u64, producers: u64, per: u64) {
        let q = HeapQueue::<u64>::new(flavor, capacity, WakeMode::Fast);
        let rx = q.receiver().unwrap();
        let handles: Vec<_> = (0..producers)
            .map(|p| {
                let tx = q.sender().unwrap();
                std::thread::spawn(move || {
                    for i in 0..per {
                        tx.send_deadline(p << 32 | i, None, Duration::from_micros(5), &|| {})
                            .unwrap();
                    }
                })
            })
            .collect();
        let mut next = vec![0u64; producers as usize];
        for _ in 0..producers * per {
            let v = rx
                .recv_deadline(None, Duration::from_micros(5), &|| {})
                .unwrap()
                .unwrap();
            let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
            assert_eq!(i, next[p], "producer {p}: out of order or duplicated");
            next[p] += 1;
        }
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[test]
    fn spsc_threads_in_order() {
        stream(Flavor::Spsc, 3, 1, 50_000);
    }

    #[test]
    fn mpmc_threads_per_producer_order() {
        stream(Flavor::Mpmc, 5, 3, 20_000);
    }

    /// Batch claims only: 3 producers send slices of 1..=9 values, 2
    /// consumers take batches of up to 5, capacity 7 (runs get clamped at
    /// the end of every lap). Every value exactly once, per-producer order
    /// within each consumer.
    #[test]
    fn mpmc_threads_batches_exactly_once() {
        const PER: u64 = 30_000;
        let q = HeapQueue::<u64>::new(Flavor::Mpmc, 7, WakeMode::Fast);
        let producers: Vec<_> = (0..3u64)
            .map(|p| {
                let tx = q.sender().unwrap();
                std::thread::spawn(move || {
                    let mut i = 0;
                    while i < PER {
                        let n = (i % 9 + 1).min(PER - i);
                        let batch: Vec<u64> = (i..i + n).map(|s| p << 32 | s).collect();
                        tx.send_slice_deadline(&batch, None, Duration::from_micros(5), &|| {})
                            .unwrap();
                        i += n;
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let rx = q.receiver().unwrap();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut buf = [0u64; 5];
                    while let Ok(n) =
                        rx.recv_slice_deadline(&mut buf, None, Duration::from_micros(5), &|| {})
                    {
                        got.extend_from_slice(&buf[..n]);
                    }
                    got
                })
            })
            .collect();
        for h in producers {
            h.join().unwrap();
        }
        let mut seen = vec![vec![false; PER as usize]; 3];
        for h in consumers {
            let got = h.join().unwrap();
            let mut last = [None::<u64>; 3];
            for v in got {
                let (p, i) = ((v >> 32) as usize, v & 0xffff_ffff);
                assert!(last[p].is_none_or(|l| l < i), "producer {p}: out of order");
                last[p] = Some(i);
                assert!(!seen[p][i as usize], "({p}, {i}) delivered twice");
                seen[p][i as usize] = true;
            }
        }
        assert!(seen.iter().flatten().all(|&s| s), "a value was lost");
    }

    #[test]
    fn spsc_refuses_second_endpoints_and_reports_full() {
        let q = HeapQueue::<u64>::new(Flavor::Spsc, 2, WakeMode::Strict);
        let tx = q.sender().unwrap();
        assert!(q.sender().is_none());
        let rx = q.receiver().unwrap();
        assert!(q.receiver().is_none());
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        let mut out = [0u64; 4];
        assert_eq!(rx.try_recv_slice(&mut out), Ok(2));
        assert_eq!(&out[..2], &[1, 2]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(rx);
        assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));
    }

    const SPIN: Duration = Duration::from_micros(5);

    /// Message `i` of producer `p`: 8..=16 bytes, `p` and `i` first, then
    /// filler that depends on both.
    fn tagged(p: u32, i: u32) -> Vec<u8> {
        let len = 8 + (i % 9) as usize;
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&p.to_le_bytes());
        m.extend_from_slice(&i.to_le_bytes());
        m.extend((8..len).map(|j| (p as usize * 31 + i as usize * 7 + j) as u8));
        m
    }

    /// Checks a message made by [`tagged`]; returns `(p, i)`.
    fn untag(m: &[u8]) -> (u32, u32) {
        assert!(m.len() >= 8, "short message: {m:?}");
        let p = u32::from_le_bytes(m[..4].try_into().unwrap());
        let i = u32::from_le_bytes(m[4..8].try_into().unwrap());
        assert_eq!(m, &tagged(p, i)[..], "message ({p}, {i}) corrupted");
        (p, i)
    }

    /// SPSC, capacity 3 (4 payloads): lengths 0..=40 cycling, every third
    /// message written through a loan, every fifth loan dropped once before
    /// the message is sent (the claim goes back: the next one gets the same
    /// slot); the consumer alternates copies and in-place reads.
    #[test]
    fn spsc_bytes_threads_in_order() {
        const N: usize = 20_000;
        const MAX: usize = 40;
        let msg = |i: usize| -> Vec<u8> { (0..i % (MAX + 1)).map(|j| (i + j) as u8).collect() };
        let q = HeapByteQueue::new(Flavor::Spsc, 3, MAX, WakeMode::Fast);
        let mut tx = q.sender().unwrap();
        assert!(q.sender().is_none(), "SPSC: one sender");
        let mut rx = q.receiver().unwrap();
        assert_eq!(tx.max_message_size(), MAX);
        assert!(matches!(
            tx.try_send(&[0; MAX + 1]),
            Err(ByteSendError::TooLarge { len: 41, max: MAX })
        ));
        let producer = std::thread::spawn(move || {
            for i in 0..N {
                let m = msg(i);
                if i % 3 == 0 {
                    if i % 5 == 0 {
                        let mut loan = tx.loan_deadline(MAX, None, SPIN, &|| {}).unwrap();
                        loan.fill(0xee);
                    }
                    let mut loan = tx.loan_deadline(m.len(), None, SPIN, &|| {}).unwrap();
                    loan.copy_from_slice(&m);
                    loan.commit();
                } else {
                    tx.send_deadline(&m, None, SPIN, &|| {}).unwrap();
                }
            }
        });
        let mut out = Vec::new();
        for i in 0..N {
            if i % 2 == 0 {
                let n = rx
                    .recv_into_deadline(&mut out, None, SPIN, &|| {})
                    .unwrap()
                    .unwrap();
                assert_eq!(n, out.len());
                assert_eq!(out, msg(i), "message {i}");
            } else {
                let r = rx.recv_ref_deadline(None, SPIN, &|| {}).unwrap().unwrap();
                assert_eq!(&*r, &msg(i)[..], "message {i}");
            }
        }
        producer.join().unwrap();
        assert_eq!(rx.try_recv_into(&mut out), Err(TryRecvError::Disconnected));
    }

    /// MPMC, capacity 4: 3 producers (sends, committed loans, loans dropped
    /// before the real message: skip records), 2 consumers (one copying,
    /// one reading in place). Every message exactly once and intact, each
    /// producer's in order within each consumer.
    #[test]
    fn mpmc_bytes_threads_exactly_once() {
        const PER: u32 = 10_000;
        let q = HeapByteQueue::new(Flavor::Mpmc, 4, 16, WakeMode::Fast);
        let producers: Vec<_> = (0..3u32)
            .map(|p| {
                let mut tx = q.sender().unwrap();
                std::thread::spawn(move || {
                    for i in 0..PER {
                        let m = tagged(p, i);
                        match (i + p) % 4 {
                            0 => tx.send_deadline(&m, None, SPIN, &|| {}).unwrap(),
                            1 => loop {
                                match tx.try_send(&m) {
                                    Ok(()) => break,
                                    Err(ByteSendError::Full) => std::thread::yield_now(),
                                    Err(e) => panic!("{e:?}"),
                                }
                            },
                            2 => {
                                let mut loan = tx.loan_deadline(16, None, SPIN, &|| {}).unwrap();
                                loan.fill(0xee);
                                loan.set_len(m.len()).unwrap();
                                loan.copy_from_slice(&m);
                                loan.commit();
                            }
                            _ => {
                                let mut loan = tx.loan_deadline(8, None, SPIN, &|| {}).unwrap();
                                loan.fill(0xee);
                                drop(loan);
                                tx.send_deadline(&m, None, SPIN, &|| {}).unwrap();
                            }
                        }
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = (0..2)
            .map(|c| {
                let mut rx = q.receiver().unwrap();
                std::thread::spawn(move || {
                    let mut got = Vec::new();
                    let mut out = Vec::new();
                    loop {
                        let id = if c == 0 {
                            match rx.recv_into_deadline(&mut out, None, SPIN, &|| {}) {
                                Ok(Some(_)) => untag(&out),
                                Err(TryRecvError::Disconnected) => break,
                                other => panic!("{other:?}"),
                            }
                        } else {
                            match rx.recv_ref_deadline(None, SPIN, &|| {}) {
                                Ok(Some(r)) => untag(&r),
                                Err(TryRecvError::Disconnected) => break,
                                other => panic!("{other:?}"),
                            }
                        };
                        got.push(id);
                    }
                    got
                })
            })
            .collect();
        drop(q);
        for h in producers {
            h.join().unwrap();
        }
        let mut seen = vec![vec![false; PER as usize]; 3];
        for h in consumers {
            let mut last = [None::<u32>; 3];
            for (p, i) in h.join().unwrap() {
                let p = p as usize;
                assert!(last[p].is_none_or(|l| l < i), "producer {p}: out of order");
                last[p] = Some(i);
                assert!(!seen[p][i as usize], "({p}, {i}) delivered twice");
                seen[p][i as usize] = true;
            }
        }
        assert!(seen.iter().flatten().all(|&s| s), "a message was lost");
    }

    /// Zero-byte payloads: nothing is allocated, empty messages still flow.
    #[test]
    fn zero_max_message_size() {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let q = HeapByteQueue::new(flavor, 2, 0, WakeMode::Strict);
            let mut tx = q.sender().unwrap();
            let mut rx = q.receiver().unwrap();
            tx.try_send(&[]).unwrap();
            tx.try_loan(0).unwrap().commit();
            assert!(matches!(tx.try_send(&[]), Err(ByteSendError::Full)));
            let mut out = vec![1];
            assert_eq!(rx.try_recv_into(&mut out), Ok(0));
            assert!(out.is_empty());
            assert!(rx.try_recv_ref().unwrap().is_empty());
            assert_eq!(rx.try_recv_into(&mut out), Err(TryRecvError::Empty));
        }
    }

    /// `adopt_kept` over scribbled state: a kept message whose stored length
    /// exceeds the maximum is released and counted lost, never handed out;
    /// scribbled intent records (ranges, flags) and head make it return,
    /// in bounds, handing out only bytes of at most the maximum length.
    #[test]
    fn adopt_kept_survives_scribbles() {
        let q = HeapByteQueue::new(Flavor::Mpmc, 4, 8, WakeMode::Strict);
        let tx = q.sender().unwrap(); // bit 0
        let mut keeper = q.receiver().unwrap(); // bit 1
        keeper.keep_claims();
        // A published message whose word claims 1,000 bytes.
        let c = tx.raw().try_claim().unwrap();
        tx.raw().write(&c, 1000);
        tx.raw().commit(c);
        let _held = keeper.raw().try_claim().unwrap();
        let (live, held) = (|i: usize| i != 1, |i: usize| i == 1);
        let mut calls = 0;
        let n = q.adopt_kept(&live, &held, &mut |_, _| -> Result<(), ()> {
            calls += 1;
            Ok(())
        });
        assert_eq!((n, calls), (Ok(0), 0));
        assert_eq!(q.queue().ctrl().peers.lost.load(Ordering::Relaxed), 1);
        tx.try_send(b"ok").expect("the slot was released");

        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..500 {
            for i in 1..4 {
                let (a, b, f) = (rnd(), rnd(), rnd());
                let start = if round % 2 == 0 { a } else { a % 16 };
                q.queue.intents[i].scribble(start, start.wrapping_add(b % 9), f);
            }
            q.queue
                .ctrl
                .head
                .store(rnd() % 32, std::sync::atomic::Ordering::Relaxed);
            let r = q.adopt_kept(&|i| i == 0, &|i| i != 0, &mut |_, b| -> Result<(), ()> {
                assert!(b.len() <= 8);
                Ok(())
            });
            assert!(r.is_ok());
        }
    }
}
