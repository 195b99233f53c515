//! Single-producer single-consumer ring: one cache-line transfer per hop.
//!
//! Positions are free-running `u64` counters; position `p` lives in slot
//! `p & mask`, where the slot count is the capacity rounded up to a power of
//! two (so indexing is a mask, while "full" is exactly `capacity` messages
//! in flight). Every slot carries a stamp beside its value
//! ([`Slot`]): `p + 1` once the message at position `p` is published.
//!
//! Each side keeps its own position in its process-local handle. The
//! consumer polls the stamp of the slot at its position: the line that
//! tells it a message is there is the line that carries the message, so a
//! hop costs one line transfer, not two (a shared `tail` word, then the
//! slot). The producer keeps a cached copy of the consumer's `head` and
//! reads that line only when the cache says the ring is full, so `head`,
//! which the consumer stores after each pop, stays in the consumer's cache
//! while the ring has room.
//!
//! `tail` in shared memory is a hint: the producer stores it after its
//! stamps, and only `len`, outside inspection, attaching and repair read it.
//! Whatever trusts it re-derives the true end from the stamps
//! ([`SpscRing::published_end`]): a producer killed between a stamp and the
//! hint, or a consumer that already took a message the hint does not show
//! yet, leaves the hint behind by at most the batch it was publishing.
//!
//! # Ordering
//! - Producer: write the value, then `stamp.store(p + 1, Release)`.
//!   Consumer: `stamp.load(Acquire)`, then read the value. The write
//!   happens-before the read.
//! - Consumer: read the value, then `head.store(Release)`. Producer:
//!   `head.load(Acquire)`, then overwrite. The read happens-before the
//!   overwrite (the producer writes position `p + slot_count` only once
//!   `head > p`, since `slot_count >= capacity`).
//! - The `tail` hint is Relaxed: nothing is read on its word alone.

use super::{PopError, PushError, Slot};
use crate::loom::{AtomicU64, Ordering};
use std::cell::Cell;
use std::ptr::NonNull;

/// A process-local view of an SPSC ring in shared memory.
#[derive(Debug)]
pub struct SpscRing<T> {
    head: NonNull<AtomicU64>,
    tail: NonNull<AtomicU64>,
    slots: NonNull<Slot<T>>,
    /// Bytes from one slot to the next (`size_of::<Slot<T>>()`, or more
    /// when a byte queue's payload follows each slot's word).
    stride: usize,
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
    /// `head`, `tail` and `slot_count(capacity)` slots at `slots`, `stride`
    /// bytes apart, must stay valid (mapped) for as long as the view or
    /// anything made from it is used; `stride` must be at least
    /// `size_of::<Slot<T>>()` and a multiple of its alignment; `capacity`
    /// must be at least 1. A new ring's stamps are zero (zeroed memory): no
    /// position is published.
    pub unsafe fn from_raw(
        head: NonNull<AtomicU64>,
        tail: NonNull<AtomicU64>,
        slots: NonNull<Slot<T>>,
        stride: usize,
        capacity: u64,
    ) -> Self {
        debug_assert!(capacity >= 1);
        debug_assert!(
            stride >= std::mem::size_of::<Slot<T>>()
                && stride.is_multiple_of(std::mem::align_of::<Slot<T>>())
        );
        SpscRing {
            head,
            tail,
            slots,
            stride,
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
    fn slot(&self, pos: u64) -> &Slot<T> {
        // SAFETY: `pos & mask` < slot_count, and that many slots, `stride`
        // bytes apart and aligned, are valid for the view's lifetime
        // (contract of `from_raw`): in bounds whatever `pos` is.
        unsafe { Slot::at(self.slots, self.stride, (pos & self.mask) as usize) }
    }

    /// Messages currently published and not yet consumed (clamped to the
    /// capacity; read from the `tail` hint, which may be behind by the batch
    /// being published).
    #[cfg_attr(loom, allow(dead_code))]
    pub fn len(&self) -> u64 {
        // Relaxed: a snapshot; it may be stale by the time it is returned.
        let head = self.head().load(Ordering::Relaxed);
        let tail = self.tail().load(Ordering::Relaxed);
        occupancy(head, tail, self.capacity)
    }

    /// Whether the message at `pos` is published. Acquire: pairs with the
    /// producer's stamp store, so a true answer makes the value readable.
    #[inline(always)]
    fn published(&self, pos: u64) -> bool {
        self.slot(pos).stamp.load(Ordering::Acquire) == pos.wrapping_add(1)
    }

    /// The end of what has been published: the first position, from the
    /// larger of `head` and the `tail` hint, whose stamp does not say
    /// published, at most `capacity` after `head`; a hint ahead of `head`
    /// that does not follow a published stamp is not trusted (the scan
    /// starts from `head`). `Corrupted` when the two words are further
    /// apart than a ring allows, or `head` is ahead of the hint and does
    /// not follow a published stamp.
    ///
    /// Exact while no producer is pushing (attach, repair of a dead one):
    /// every published position `p` keeps stamp `p + 1` until the producer
    /// overwrites it a lap later, which it does only after `head` passed it.
    pub fn published_end(&self) -> Result<u64, PushError> {
        self.published_range().map(|(_, end)| end)
    }

    /// `head` and [`published_end`](Self::published_end), from one read of
    /// `head`: the end is at most `capacity` past that `head`.
    fn published_range(&self) -> Result<(u64, u64), PushError> {
        // Acquire on head: the consumer's reads of released slots happen
        // before a producer starting from this view overwrites them.
        let head = self.head().load(Ordering::Acquire);
        // Relaxed: a hint, checked against the stamps below.
        let hint = self.tail().load(Ordering::Relaxed);
        let end = scan_end(head, hint, self.capacity, |p| self.published(p))
            .ok_or(PushError::Corrupted)?;
        Ok((head, end))
    }

    /// Whether no published message is left after `head`, judged by the
    /// stamps (`published_end`), not the hint, which a producer killed
    /// between its last stamp and the hint leaves behind. Exact while no
    /// producer is pushing; `false` when the words are `Corrupted`.
    #[cfg_attr(loom, allow(dead_code))]
    pub fn drained(&self) -> bool {
        // Acquire: as in `published_end`.
        let head = self.head().load(Ordering::Acquire);
        self.published_end() == Ok(head)
    }

    /// Settles what a dead consumer announced in `intent` (its in-place read
    /// of the message at `head`, never released): the message is stepped
    /// over (one CAS of `head`, so of several repairers one wins), never
    /// delivered again, then the announcement retired. True when this call
    /// stepped over it.
    ///
    /// Only for a consumer proven dead whose role bit is still set (no new
    /// consumer can attach meanwhile): then nobody else writes `head`.
    #[cfg_attr(loom, allow(dead_code))]
    pub fn repair_dead_consumer(&self, intent: &crate::ring::mpmc::Intent) -> bool {
        // Acquire: orders us after the consumer's earlier releases.
        let head = self.head().load(Ordering::Acquire);
        // Only a published message can have been read in place.
        if !self.published(head) {
            return false;
        }
        // Exactly the announcement of `head` (`announce_one` finished): a
        // torn one, still showing the previous start, belongs to a claim
        // that never returned, so the message stays for the next consumer.
        if !intent.announces_one(head) {
            return false;
        }
        // Step over first, then retire the announcement. A repairer killed
        // between the two (a reaper is an ordinary process: a consumer
        // attaching, a blocked producer) leaves the record announcing a
        // position `head` has passed, which the next repairer finds
        // covering nothing at `head`: the message is not delivered again
        // (it may go uncounted: `lost` counts at most once). Retiring
        // first would leave `head` on the message with nothing announced,
        // and the next consumer would receive it a second time.
        //
        // Release: as a consumer's release, the slot goes back to the
        // producer. Relaxed on failure: cannot happen while the dead
        // consumer's bit is held (the reaper holding its entry is the only
        // writer of `head`), but a scribbled head is left alone.
        if self
            .head()
            .compare_exchange(
                head,
                head.wrapping_add(1),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_err()
        {
            return false;
        }
        // Exactly one repairer (the one whose CAS moved `head`) retires the
        // announcement and counts it.
        intent.retire_dead_one(head)
    }

    /// Settles what a dead producer announced in `intent` (a loan of the
    /// position at `tail`, never committed): nothing was published, so
    /// nothing moves; true for the one repairer that counts it lost.
    #[cfg_attr(loom, allow(dead_code))]
    pub fn repair_dead_producer(&self, intent: &crate::ring::mpmc::Intent) -> bool {
        // The dead producer's next position is the end of what it
        // published; a loan it committed before dying is not lost.
        let Ok(tail) = self.published_end() else {
            return false;
        };
        intent.covers(tail) && intent.retire_dead_one(tail)
    }

    /// Attaches the single producer, starting from the end of what was
    /// published (a previous producer may have died before its last `tail`
    /// hint), and brings the hint up to date.
    pub fn producer(self) -> Result<SpscProducer<T>, PushError> {
        // The role hand-over (endpoint claim) already ordered us after the
        // previous producer.
        // The cached head is the one the end was derived from, so the two
        // are at most `capacity` apart (`free` relies on it); a second read
        // of `head` could be anything a scribbler wrote meanwhile.
        let (head, tail) = self.published_range()?;
        // Relaxed: a hint (module docs).
        self.tail().store(tail, Ordering::Relaxed);
        Ok(SpscProducer {
            ring: self,
            tail: Cell::new(tail),
            cached_head: Cell::new(head),
        })
    }

    /// Attaches the single consumer, starting from the shared `head`.
    pub fn consumer(self) -> Result<SpscConsumer<T>, PopError> {
        // Acquire: the previous consumer's reads (released with its head
        // store) happen before ours.
        let head = self.head().load(Ordering::Acquire);
        // Relaxed: only a sanity check of the two words.
        let hint = self.tail().load(Ordering::Relaxed);
        if hint.wrapping_sub(head) > self.capacity && head.wrapping_sub(hint) > self.capacity {
            return Err(PopError::Corrupted);
        }
        Ok(SpscConsumer {
            ring: self,
            head: Cell::new(head),
        })
    }
}

/// The end of what an SPSC ring's stamps say is published, from `head`,
/// the `tail` hint and `published(p)` (whether position `p`'s stamp says
/// published): the rule of [`SpscRing::published_end`], shared with outside
/// inspection, which reads the stamps through its own bounds-checked view.
/// `None` when the words are `Corrupted`.
pub fn scan_end(
    head: u64,
    hint: u64,
    capacity: u64,
    published: impl Fn(u64) -> bool,
) -> Option<u64> {
    let mut end = if hint.wrapping_sub(head) <= capacity {
        // A true hint ahead of `head` follows a published position:
        // `hint - 1` keeps its stamp until the producer writes a lap
        // past it, which needs `head >= hint`. One that does not (a
        // scribble) is not trusted: starting there would leave
        // `head..hint` unpublished for ever, the consumer waiting at
        // `head` and every message sent after it lost, so the stamps
        // are scanned from `head` instead.
        if hint != head && !published(hint.wrapping_sub(1)) {
            head
        } else {
            hint
        }
    } else if head.wrapping_sub(hint) <= capacity {
        // The consumer took messages the hint does not show yet: the
        // last of them, `head - 1`, was published and keeps its stamp
        // (its slot is rewritten only by a position the dead batch,
        // at most `capacity` from the hint, did not reach). A `head`
        // past unpublished positions is scribbled: the consumer is not
        // there, and a producer starting there would never reach it.
        if !published(head.wrapping_sub(1)) {
            return None;
        }
        head
    } else {
        return None;
    };
    while end.wrapping_sub(head) < capacity && published(end) {
        end = end.wrapping_add(1);
    }
    Some(end)
}

/// Messages between a consumer at `head` and a `tail` hint, clamped to
/// `0..=capacity` (the hint may be behind `head`: see the module docs).
/// Used by `len` and by outside inspection.
pub fn occupancy(head: u64, tail: u64, capacity: u64) -> u64 {
    let d = tail.wrapping_sub(head);
    if d as i64 <= 0 {
        0
    } else {
        d.min(capacity)
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
        // Checked: the cached head is at most `capacity` behind `tail`
        // (attach and every refresh below check it), but a subtraction
        // that cannot wrap costs nothing and keeps it so by construction.
        if let Some(free) = self
            .ring
            .capacity
            .checked_sub(tail.wrapping_sub(self.cached_head.get()))
        {
            if free >= want {
                return Ok(free);
            }
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
        self.write(tail, value);
        self.stamp(tail);
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
        self.ring.slot(pos).value.with_mut(|p| p)
    }

    /// The slot index (`0..slot_count`) of a position.
    #[inline]
    pub fn index(&self, pos: u64) -> u64 {
        pos & self.ring.mask
    }

    /// Writes `value` into the slot of a claimed position.
    #[inline]
    pub fn write(&self, pos: u64, value: T) {
        // SAFETY: `pos` was claimed (`claim_push`, or `try_push`'s check):
        // the consumer has released its slot (head > pos - capacity,
        // observed with Acquire) and only we, the single producer, write it.
        self.ring
            .slot(pos)
            .value
            .with_mut(|p| unsafe { p.write(value) });
    }

    /// Publishes the message written at the claimed position `pos`.
    #[inline]
    pub fn commit_push(&self, pos: u64) {
        debug_assert_eq!(pos, self.tail.get());
        self.stamp(pos);
        self.publish(pos.wrapping_add(1));
    }

    /// Writes as many of `values` as fit, publishing once; returns how many.
    pub fn push_slice(&self, values: &[T]) -> Result<usize, PushError> {
        let free = self.free(values.len() as u64)?;
        let n = (free as usize).min(values.len());
        let tail = self.tail.get();
        for (i, v) in values[..n].iter().enumerate() {
            // The n positions after `tail` are free (`free`).
            let pos = tail.wrapping_add(i as u64);
            self.write(pos, *v);
            self.stamp(pos);
        }
        if n > 0 {
            self.publish(tail.wrapping_add(n as u64));
        }
        Ok(n)
    }

    /// Publishes the message written at `pos`.
    #[inline(always)]
    fn stamp(&self, pos: u64) {
        // Release: the value's write happens-before a consumer that sees
        // this stamp with Acquire.
        self.ring
            .slot(pos)
            .stamp
            .store(pos.wrapping_add(1), Ordering::Release);
    }

    /// Moves our position past what we stamped, and the hint with it.
    #[inline(always)]
    fn publish(&self, new_tail: u64) {
        self.tail.set(new_tail);
        // Relaxed: a hint (module docs); its line is ours, nobody polls it.
        self.ring.tail().store(new_tail, Ordering::Relaxed);
    }
}

/// The consuming end. `!Sync`: one thread at a time.
#[derive(Debug)]
pub struct SpscConsumer<T> {
    ring: SpscRing<T>,
    /// Our own position: we are its only writer.
    head: Cell<u64>,
}

impl<T: Copy> SpscConsumer<T> {
    /// Takes one message, or reports `Empty`.
    #[inline(always)]
    pub fn try_pop(&self) -> Result<T, PopError> {
        let head = self.claim_pop()?;
        let value = self.read(head);
        self.release(head.wrapping_add(1));
        Ok(value)
    }

    /// Claims the oldest published message to read in place: its position,
    /// or `Empty`. Only a look at the slot (the single consumer's position
    /// does not move), so not releasing it gives it back: the next claim
    /// returns it again. It stays the consumer's until [`release_pop`].
    ///
    /// [`release_pop`]: Self::release_pop
    #[inline(always)]
    pub fn claim_pop(&self) -> Result<u64, PopError> {
        let head = self.head.get();
        if self.ring.published(head) {
            Ok(head)
        } else {
            Err(PopError::Empty)
        }
    }

    /// The slot of a claimed position, to read in place.
    #[inline]
    pub fn slot_ptr(&self, pos: u64) -> *const T {
        self.ring.slot(pos).value.with(|p| p)
    }

    /// The slot index (`0..slot_count`) of a position.
    #[inline]
    pub fn index(&self, pos: u64) -> u64 {
        pos & self.ring.mask
    }

    /// Reads the message at a claimed position.
    #[inline(always)]
    pub fn read(&self, pos: u64) -> T {
        // SAFETY: `pos` was claimed (`claim_pop`, or `pop_into`'s checks):
        // its stamp, or a later position's, said published (Acquire), and
        // the producer does not overwrite it before we release it.
        self.ring.slot(pos).value.with(|p| unsafe { p.read() })
    }

    /// Gives the slot at the claimed position `pos` back to the producer.
    #[inline]
    pub fn release_pop(&self, pos: u64) {
        debug_assert_eq!(pos, self.head.get());
        self.release(pos.wrapping_add(1));
    }

    /// Takes up to `out.len()` messages, releasing once; returns how many.
    ///
    /// One stamp check per batch when the whole batch is there: the
    /// producer stores stamps in position order, each with Release, so
    /// seeing the batch's last stamp (Acquire) makes every earlier value
    /// visible too. Otherwise one check per message, up to the first gap.
    pub fn pop_into(&self, out: &mut [T]) -> Result<usize, PopError> {
        let head = self.head.get();
        // At most `capacity`: a scribbled stamp past that cannot extend it.
        let max = out
            .len()
            .min(usize::try_from(self.ring.capacity).unwrap_or(usize::MAX));
        if max == 0 {
            return Ok(0);
        }
        let n = if self.ring.published(head.wrapping_add(max as u64 - 1)) {
            max
        } else {
            let mut n = 0;
            while n < max - 1 && self.ring.published(head.wrapping_add(n as u64)) {
                n += 1;
            }
            n
        };
        for (i, o) in out[..n].iter_mut().enumerate() {
            *o = self.read(head.wrapping_add(i as u64));
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
