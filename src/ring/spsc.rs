//! Single-producer single-consumer ring.
//!
//! `head` (next position to read, written only by the consumer) and `tail`
//! (next position to write, written only by the producer) are free-running
//! `u64` counters, each alone on its 128-byte line; slot `p` lives at
//! `p & mask`, where the slot count is the capacity rounded up to a power of
//! two (so indexing is a mask, while "full" is exactly `tail - head == capacity`).
//!
//! Each side keeps its own index and a cached copy of the peer's in the
//! process-local handle, and reads the peer's line only when the cache says
//! the ring is full (producer) or empty (consumer). A consumer that falls
//! behind therefore drains many messages per read of `tail`, and the batch
//! calls publish once per batch.
//!
//! # Ordering
//! - Producer: write slot, then `tail.store(Release)`. Consumer:
//!   `tail.load(Acquire)`, then read the slot. The slot write happens-before the read.
//! - Consumer: read slot, then `head.store(Release)`. Producer:
//!   `head.load(Acquire)`, then overwrite. The read happens-before the overwrite.

use super::{PopError, PushError};
use crate::loom::{AtomicU64, Ordering, UnsafeCell};
use std::cell::Cell;
use std::ptr::NonNull;

/// A process-local view of an SPSC ring in shared memory.
#[derive(Debug)]
pub struct SpscRing<T> {
    head: NonNull<AtomicU64>,
    tail: NonNull<AtomicU64>,
    slots: NonNull<UnsafeCell<T>>,
    capacity: u64,
    mask: u64,
}

impl<T> Clone for SpscRing<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for SpscRing<T> {}

/// Slots an SPSC ring of `capacity` needs: the next power of two.
pub fn slot_count(capacity: u64) -> u64 {
    capacity.next_power_of_two()
}

impl<T: Copy> SpscRing<T> {
    /// A view over existing memory.
    ///
    /// # Safety
    /// `head`, `tail` and `slot_count(capacity)` slots at `slots` must stay
    /// valid (mapped) for as long as the view or anything made from it is
    /// used; `capacity` must be at least 1.
    pub unsafe fn from_raw(
        head: NonNull<AtomicU64>,
        tail: NonNull<AtomicU64>,
        slots: NonNull<UnsafeCell<T>>,
        capacity: u64,
    ) -> Self {
        debug_assert!(capacity >= 1);
        SpscRing {
            head,
            tail,
            slots,
            capacity,
            mask: slot_count(capacity) - 1,
        }
    }

    #[inline(always)]
    fn head(&self) -> &AtomicU64 {
        // SAFETY: valid for the view's lifetime (contract of `from_raw`).
        unsafe { self.head.as_ref() }
    }

    #[inline(always)]
    fn tail(&self) -> &AtomicU64 {
        // SAFETY: valid for the view's lifetime (contract of `from_raw`).
        unsafe { self.tail.as_ref() }
    }

    #[inline(always)]
    fn slot(&self, pos: u64) -> &UnsafeCell<T> {
        // SAFETY: `pos & mask` < slot_count, and that many slots are valid
        // (contract of `from_raw`): in bounds whatever `pos` is.
        unsafe { &*self.slots.as_ptr().add((pos & self.mask) as usize) }
    }

    /// Messages currently published and not yet consumed (clamped to the capacity).
    #[cfg_attr(loom, allow(dead_code))]
    pub fn len(&self) -> u64 {
        // Relaxed: a snapshot; it may be stale by the time it is returned.
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Relaxed);
        tail.wrapping_sub(head).min(self.capacity)
    }

    /// Settles what a dead consumer announced in `intent` (its in-place read
    /// of the message at `head`, never released): the message is stepped
    /// over (one CAS of `head`, so of several repairers one wins), never
    /// delivered again. True when this call stepped over it.
    ///
    /// Only for a consumer proven dead whose role bit is still set (no new
    /// consumer can attach meanwhile): then nobody else writes `head`.
    #[cfg_attr(loom, allow(dead_code))]
    pub fn repair_dead_consumer(&self, intent: &crate::ring::mpmc::Intent) -> bool {
        // Acquire: pairs with the producer's tail store, so that the
        // position is known published before we step over it.
        let head = self.head().load(Ordering::Acquire);
        let tail = self.tail().load(Ordering::Acquire);
        if tail.wrapping_sub(head) == 0 || tail.wrapping_sub(head) > self.capacity {
            return false;
        }
        // Exactly one repairer retires the announcement and counts it.
        if !intent.covers(head) || !intent.retire_dead_one(head) {
            return false;
        }
        // Release: as a consumer's release, the slot goes back to the
        // producer. Relaxed on failure: cannot happen while the dead
        // consumer's bit is held, but a scribbled head is left alone.
        self.head()
            .compare_exchange(
                head,
                head.wrapping_add(1),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Settles what a dead producer announced in `intent` (a loan of the
    /// position at `tail`, never committed): nothing was published, so
    /// nothing moves; true for the one repairer that counts it lost.
    #[cfg_attr(loom, allow(dead_code))]
    pub fn repair_dead_producer(&self, intent: &crate::ring::mpmc::Intent) -> bool {
        // Acquire: see `repair_dead_consumer`.
        let tail = self.tail().load(Ordering::Acquire);
        intent.covers(tail) && intent.retire_dead_one(tail)
    }

    /// Attaches the single producer, starting from the shared indices.
    pub fn producer(self) -> Result<SpscProducer<T>, PushError> {
        // Acquire: the role hand-over (endpoint claim) already ordered us
        // after the previous producer; Acquire on head also orders us after
        // the consumer's reads of the slots we may overwrite.
        let head = self.head().load(Ordering::Acquire);
        let tail = self.tail().load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.capacity {
            return Err(PushError::Corrupted);
        }
        Ok(SpscProducer {
            ring: self,
            tail: Cell::new(tail),
            cached_head: Cell::new(head),
        })
    }

    /// Attaches the single consumer, starting from the shared indices.
    pub fn consumer(self) -> Result<SpscConsumer<T>, PopError> {
        // Acquire: see `producer`.
        let head = self.head().load(Ordering::Acquire);
        let tail = self.tail().load(Ordering::Acquire);
        if tail.wrapping_sub(head) > self.capacity {
            return Err(PopError::Corrupted);
        }
        Ok(SpscConsumer {
            ring: self,
            head: Cell::new(head),
            cached_tail: Cell::new(tail),
        })
    }
}

/// The producing end. `!Sync`: one thread at a time.
#[derive(Debug)]
pub struct SpscProducer<T> {
    ring: SpscRing<T>,
    /// Our own index: we are its only writer, so no need to read it back.
    tail: Cell<u64>,
    /// Last `head` we read: the consumer is at least this far.
    cached_head: Cell<u64>,
}

impl<T: Copy> SpscProducer<T> {
    /// Free slots, refreshing the cached head only if the cache says fewer
    /// than `want` are free.
    #[inline(always)]
    fn free(&self, want: u64) -> Result<u64, PushError> {
        let tail = self.tail.get();
        let free = self.ring.capacity - tail.wrapping_sub(self.cached_head.get());
        if free >= want {
            return Ok(free);
        }
        // Acquire: the consumer's reads of the slots it released happen
        // before we overwrite them (pairs with its head.store(Release)).
        let head = self.ring.head().load(Ordering::Acquire);
        let used = tail.wrapping_sub(head);
        if used > self.ring.capacity {
            return Err(PushError::Corrupted);
        }
        self.cached_head.set(head);
        Ok(self.ring.capacity - used)
    }

    /// Writes one message, or reports `Full`.
    #[inline(always)]
    pub fn try_push(&self, value: T) -> Result<(), PushError> {
        if self.free(1)? == 0 {
            return Err(PushError::Full);
        }
        let tail = self.tail.get();
        // SAFETY: the slot at `tail` is free: the consumer has released it
        // (head > tail - capacity, observed with Acquire), and no one else
        // writes it (single producer).
        self.ring.slot(tail).with_mut(|p| unsafe { p.write(value) });
        self.publish(tail.wrapping_add(1));
        Ok(())
    }

    /// Claims the next slot to be written in place: its position, or
    /// `Full`. Nothing is visible to the consumer until [`commit_push`]; not
    /// committing gives the slot back (the next claim returns it again).
    ///
    /// [`commit_push`]: Self::commit_push
    #[inline]
    pub fn claim_push(&self) -> Result<u64, PushError> {
        if self.free(1)? == 0 {
            return Err(PushError::Full);
        }
        Ok(self.tail.get())
    }

    /// The slot of a claimed position, to write in place.
    #[inline]
    pub fn slot_ptr(&self, pos: u64) -> *mut T {
        self.ring.slot(pos).with_mut(|p| p)
    }

    /// The slot index (`0..slot_count`) of a position.
    #[inline]
    pub fn index(&self, pos: u64) -> u64 {
        pos & self.ring.mask
    }

    /// Writes `value` into the slot of a claimed position.
    #[inline]
    pub fn write(&self, pos: u64, value: T) {
        // SAFETY: `pos` was claimed (`claim_push`): its slot is free and only we,
        // the single producer, write it.
        self.ring.slot(pos).with_mut(|p| unsafe { p.write(value) });
    }

    /// Publishes the message written at the claimed position `pos`.
    #[inline]
    pub fn commit_push(&self, pos: u64) {
        debug_assert_eq!(pos, self.tail.get());
        self.publish(pos.wrapping_add(1));
    }

    /// Writes as many of `values` as fit, publishing once; returns how many.
    pub fn push_slice(&self, values: &[T]) -> Result<usize, PushError> {
        let free = self.free(values.len() as u64)?;
        let n = (free as usize).min(values.len());
        let tail = self.tail.get();
        for (i, v) in values[..n].iter().enumerate() {
            // SAFETY: as in `try_push`: the n slots after `tail` are free.
            self.ring
                .slot(tail.wrapping_add(i as u64))
                .with_mut(|p| unsafe { p.write(*v) });
        }
        if n > 0 {
            self.publish(tail.wrapping_add(n as u64));
        }
        Ok(n)
    }

    #[inline(always)]
    fn publish(&self, new_tail: u64) {
        self.tail.set(new_tail);
        // Release: the slot writes above happen-before a consumer that reads
        // this tail with Acquire.
        self.ring.tail().store(new_tail, Ordering::Release);
    }
}

/// The consuming end. `!Sync`: one thread at a time.
#[derive(Debug)]
pub struct SpscConsumer<T> {
    ring: SpscRing<T>,
    head: Cell<u64>,
    cached_tail: Cell<u64>,
}

impl<T: Copy> SpscConsumer<T> {
    /// Published messages, refreshing the cached tail only if the cache says
    /// fewer than `want` are there.
    #[inline(always)]
    fn available(&self, want: u64) -> Result<u64, PopError> {
        let head = self.head.get();
        let avail = self.cached_tail.get().wrapping_sub(head);
        if avail >= want {
            return Ok(avail);
        }
        // Acquire: the producer's slot writes happen-before our reads
        // (pairs with its tail.store(Release)).
        let tail = self.ring.tail().load(Ordering::Acquire);
        let avail = tail.wrapping_sub(head);
        if avail > self.ring.capacity {
            return Err(PopError::Corrupted);
        }
        self.cached_tail.set(tail);
        Ok(avail)
    }

    /// Takes one message, or reports `Empty`.
    #[inline(always)]
    pub fn try_pop(&self) -> Result<T, PopError> {
        if self.available(1)? == 0 {
            return Err(PopError::Empty);
        }
        let head = self.head.get();
        // SAFETY: the slot at `head` was published (tail > head, Acquire)
        // and the producer will not overwrite it until we release it.
        let value = self.ring.slot(head).with(|p| unsafe { p.read() });
        self.release(head.wrapping_add(1));
        Ok(value)
    }

    /// Claims the oldest published message to read in place: its position,
    /// or `Empty`. Only a look at the head (the single consumer's index does
    /// not move), so not releasing it gives it back: the next claim returns
    /// it again. It stays the consumer's until [`release_pop`].
    ///
    /// [`release_pop`]: Self::release_pop
    #[inline]
    pub fn claim_pop(&self) -> Result<u64, PopError> {
        if self.available(1)? == 0 {
            return Err(PopError::Empty);
        }
        Ok(self.head.get())
    }

    /// The slot of a claimed position, to read in place.
    #[inline]
    pub fn slot_ptr(&self, pos: u64) -> *const T {
        self.ring.slot(pos).with(|p| p)
    }

    /// The slot index (`0..slot_count`) of a position.
    #[inline]
    pub fn index(&self, pos: u64) -> u64 {
        pos & self.ring.mask
    }

    /// Reads the message at a claimed position.
    #[inline]
    pub fn read(&self, pos: u64) -> T {
        // SAFETY: `pos` was claimed (`claim_pop`): its message is published (Acquire in
        // `available`) and the producer does not overwrite it before we
        // release it.
        self.ring.slot(pos).with(|p| unsafe { p.read() })
    }

    /// Gives the slot at the claimed position `pos` back to the producer.
    #[inline]
    pub fn release_pop(&self, pos: u64) {
        debug_assert_eq!(pos, self.head.get());
        self.release(pos.wrapping_add(1));
    }

    /// Takes up to `out.len()` messages, releasing once; returns how many.
    pub fn pop_into(&self, out: &mut [T]) -> Result<usize, PopError> {
        let avail = self.available(out.len() as u64)?;
        let n = (avail as usize).min(out.len());
        let head = self.head.get();
        for (i, o) in out[..n].iter_mut().enumerate() {
            // SAFETY: as in `try_pop`: the n slots after `head` are published.
            *o = self
                .ring
                .slot(head.wrapping_add(i as u64))
                .with(|p| unsafe { p.read() });
        }
        if n > 0 {
            self.release(head.wrapping_add(n as u64));
        }
        Ok(n)
    }

    #[inline(always)]
    fn release(&self, new_head: u64) {
        self.head.set(new_head);
        // Release: our slot reads happen-before a producer that reads this
        // head with Acquire and overwrites the slots.
        self.ring.head().store(new_head, Ordering::Release);
    }
}
