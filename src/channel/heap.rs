//! A queue on the heap: the same control block and rings, in process memory.
//!
//! Loom atomics cannot live in mapped bytes, so the loom models build their
//! queues here; unit tests use it to run the ring and channel code across
//! threads. Nothing here touches a segment or a process table.

use super::control::QueueControl;
use super::raw::{RawReceiver, RawSender, RecvRing, SendRing};
use crate::error::{Flavor, Role};
use crate::loom::UnsafeCell;
use crate::ring::mpmc::{MpmcRing, MpmcSlot};
use crate::ring::spsc::{slot_count, SpscRing};
use crate::wait::WakeMode;
use std::ops::Deref;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

enum Slots<T> {
    Spsc(Box<[UnsafeCell<T>]>),
    Mpmc(Box<[MpmcSlot<T>]>),
}

/// A heap-backed queue (loom models and threaded unit tests).
pub struct HeapQueue<T> {
    ctrl: Box<QueueControl>,
    slots: Slots<T>,
    capacity: u64,
    mode: WakeMode,
    next_bit: AtomicU32,
}

// SAFETY: all shared state is atomics or slots guarded by the ring protocols.
unsafe impl<T: Send> Send for HeapQueue<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for HeapQueue<T> {}

impl<T: Copy + Default + Send> HeapQueue<T> {
    /// A new empty queue.
    pub fn new(flavor: Flavor, capacity: u64, mode: WakeMode) -> Arc<Self> {
        assert!(capacity >= 1);
        let slots = match flavor {
            Flavor::Spsc => Slots::Spsc(
                (0..slot_count(capacity))
                    .map(|_| UnsafeCell::new(T::default()))
                    .collect(),
            ),
            Flavor::Mpmc => Slots::Mpmc(
                (0..capacity)
                    .map(|i| MpmcSlot::new(i, T::default()))
                    .collect(),
            ),
        };
        Arc::new(HeapQueue {
            ctrl: Box::new(QueueControl::new()),
            slots,
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

    fn spsc(&self, s: &[UnsafeCell<T>]) -> SpscRing<T> {
        // SAFETY: the control block and slots live as long as `self`, which
        // every handle keeps alive through its Arc.
        unsafe {
            SpscRing::from_raw(
                NonNull::from(&*self.ctrl.head),
                NonNull::from(&*self.ctrl.tail),
                NonNull::from(&s[0]),
                self.capacity,
            )
        }
    }

    fn mpmc(&self, s: &[MpmcSlot<T>]) -> MpmcRing<T> {
        // SAFETY: as in `spsc`.
        unsafe {
            MpmcRing::from_raw(
                NonNull::from(&*self.ctrl.head),
                NonNull::from(&*self.ctrl.tail),
                NonNull::from(&s[0]),
                self.capacity,
            )
        }
    }

    fn bit(&self) -> u32 {
        // Relaxed: a process-local counter handing out distinct bits.
        self.next_bit.fetch_add(1, Ordering::Relaxed) % 64
    }

    /// Attaches a sender; `None` if an SPSC queue already has one.
    pub fn sender(self: &Arc<Self>) -> Option<HeapSender<T>> {
        let bit = self.bit();
        let exclusive = matches!(self.slots, Slots::Spsc(_));
        if !self.ctrl.attach(Role::Sender, bit, exclusive) {
            return None;
        }
        let ring = match &self.slots {
            Slots::Spsc(s) => SendRing::Spsc(self.spsc(s).producer().ok()?),
            Slots::Mpmc(s) => SendRing::Mpmc(self.mpmc(s)),
        };
        // SAFETY: the Arc in the handle keeps the control block alive, and
        // the sender was counted just above.
        let raw = unsafe { RawSender::new(self.ctrl_ptr(), ring, self.mode) };
        Some(HeapSender {
            raw,
            bit,
            queue: self.clone(),
        })
    }

    /// Attaches a receiver; `None` if an SPSC queue already has one.
    pub fn receiver(self: &Arc<Self>) -> Option<HeapReceiver<T>> {
        let bit = self.bit();
        let exclusive = matches!(self.slots, Slots::Spsc(_));
        if !self.ctrl.attach(Role::Receiver, bit, exclusive) {
            return None;
        }
        let ring = match &self.slots {
            Slots::Spsc(s) => RecvRing::Spsc(self.spsc(s).consumer().ok()?),
            Slots::Mpmc(s) => RecvRing::Mpmc(self.mpmc(s)),
        };
        // SAFETY: as in `sender`.
        let raw = unsafe { RawReceiver::new(self.ctrl_ptr(), ring, self.mode) };
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
}

impl<T: Copy + Default + Send> Deref for HeapSender<T> {
    type Target = RawSender<T>;
    fn deref(&self) -> &RawSender<T> {
        &self.raw
    }
}

impl<T: Copy + Default + Send> Drop for HeapSender<T> {
    fn drop(&mut self) {
        self.queue.ctrl.detach(Role::Sender, self.bit);
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
        let q = HeapQueue::<u32>::new(Flavor::Spsc, 2, WakeMode::Strict);
        let tx = q.sender().unwrap();
        assert!(q.sender().is_none());
        let rx = q.receiver().unwrap();
        assert!(q.receiver().is_none());
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert_eq!(tx.try_send(3), Err(TrySendError::Full(3)));
        let mut out = [0u32; 4];
        assert_eq!(rx.try_recv_slice(&mut out), Ok(2));
        assert_eq!(&out[..2], &[1, 2]);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        drop(rx);
        assert_eq!(tx.try_send(4), Err(TrySendError::Disconnected(4)));
    }
}
