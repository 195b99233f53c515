//! Multi-producer multi-consumer ring: Dmitry Vyukov's bounded MPMC queue
//! (per-slot sequence numbers), with positions encoded as *stamps* so that any
//! capacity works without a division.
//!
//! A stamp is `lap * one_lap + index`, where `index < capacity` and
//! `one_lap = (capacity + 1).next_power_of_two()`. Advancing a position
//! increments the index, or moves to index 0 of the next lap.
//!
//! Each slot carries a stamp that says whose turn it is:
//! - `stamp == t`: free for the producer whose position is `t`;
//! - `stamp == t + 1`: holds the message written at position `t`, for the
//!   consumer whose position is `t`;
//! - the consumer then sets `stamp = t + one_lap`: free for the next lap.
//!
//! A producer claims position `t` by a CAS on `tail` only after seeing its
//! slot free, then writes and publishes with `stamp.store(t + 1, Release)`;
//! a consumer symmetrically. A caller that finds its slot not yet released
//! reports Full/Empty instead of spinning: `try_` calls never wait on a peer,
//! and the blocking layer sleeps until that peer notifies.
//!
//! # Ordering
//! - producer `stamp.store(t+1, Release)` → consumer `stamp.load(Acquire)`:
//!   the message write happens-before its read.
//! - consumer `stamp.store(t+one_lap, Release)` → producer `stamp.load(Acquire)`:
//!   the read happens-before the next overwrite.
//! - `head`/`tail` CASes are Relaxed: they only arbitrate who owns a
//!   position; ownership of the slot's contents is carried by the stamps.

use super::{PopError, PushError, Slot, MAX_ROUNDS};
use crate::loom::{spin_loop, AtomicU64, Ordering};
use std::ptr::NonNull;

/// Bit 63 of a stamp marks a skip record: a producer claimed the position
/// and gave it up (a dropped loan). Real stamps never reach bit 63: that
/// takes 2^63 positions. Order comparisons (`behind`) strip it: a skip
/// record sits where its message would.
pub const SKIP: u64 = 1 << 63;

/// `one_lap` for a capacity: the lap unit of the stamp encoding.
pub fn one_lap(capacity: u64) -> u64 {
    (capacity + 1).next_power_of_two()
}

/// Messages between the positions `head` and `tail` of a ring of
/// `capacity`, clamped to the capacity; 0 if either is not a valid stamp
/// (only a scribbled one is not). Used by `len` and by outside inspection.
pub fn occupancy(head: u64, tail: u64, capacity: u64) -> u64 {
    // Checked: the capacity may come from a header nobody validated yet.
    let Some(one_lap) = capacity
        .checked_add(1)
        .and_then(u64::checked_next_power_of_two)
    else {
        return 0;
    };
    let split = |s: u64| {
        let index = s & (one_lap - 1);
        (index < capacity).then_some((s & !(one_lap - 1), index))
    };
    let (Some((hl, hi)), Some((tl, ti))) = (split(head), split(tail)) else {
        return 0;
    };
    let laps = tl.wrapping_sub(hl) / one_lap;
    laps.wrapping_mul(capacity)
        .wrapping_add(ti)
        .wrapping_sub(hi)
        .min(capacity)
}

/// Whether stamp `a` lies before stamp `b` (wrapping, like sequence numbers:
/// stamps of one slot differ by small multiples of `one_lap`).
#[inline(always)]
fn behind(a: u64, b: u64) -> bool {
    (a.wrapping_sub(b) as i64) < 0
}

/// What one endpoint is claiming: the positions `start..end` (stamps,
/// within one lap), announced before the claiming CAS so that, if the
/// endpoint's process dies holding the claim, a survivor can tell whose
/// claim a stuck slot is. One per endpoint-table entry, on its own line;
/// written only by its endpoint (`start == end`: nothing claimed).
///
/// `flags` holds the endpoint's standing choices, set once after it
/// attaches: [`KEEP`] (a consumer's claims outlive its death, to be
/// adopted: see [`MpmcRing::kept_claims`]). Cleared by the next endpoint
/// that takes the entry over ([`reset`](Self::reset)).
#[repr(C, align(64))]
#[derive(Debug, Default)]
pub struct Intent {
    start: AtomicU64,
    end: AtomicU64,
    flags: AtomicU64,
}

/// `Intent::flags` bit: a consumer's unreleased claim of a published
/// message, left by its dead process, is kept in its slot (not released as
/// lost) until an adopter hands it on ([`MpmcRing::release_kept`]).
pub const KEEP: u64 = 1;

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    // Still one 64-byte record per entry: the layout's geometry is unchanged.
    assert!(size_of::<Intent>() == 64);
    assert!(offset_of!(Intent, flags) == 16);
};

impl Intent {
    /// Nothing claimed.
    #[cfg_attr(not(any(loom, test)), allow(dead_code))]
    pub fn new() -> Self {
        Intent {
            start: AtomicU64::new(0),
            end: AtomicU64::new(0),
            flags: AtomicU64::new(0),
        }
    }

    /// Clears the record for a new endpoint taking its entry over: nothing
    /// claimed, no flags (a previous owner's KEEP does not carry over).
    #[inline]
    pub fn reset(&self) {
        // Relaxed: the entry is ours (won by the table's AcqRel claim CAS),
        // and repairers skip a live endpoint's record; our first
        // announcement (Release, in `set`) publishes this with it.
        self.flags.store(0, Ordering::Relaxed);
        self.clear();
    }

    /// Marks the endpoint's claims as kept ([`KEEP`]). Set once, before the
    /// claims it is meant for.
    pub fn set_keep(&self) {
        // Relaxed: published with the endpoint's next announcement, a
        // Release store that repairers and adopters acquire (`covers`)
        // before they read the flags; a claim made before this store is
        // simply not kept.
        self.flags.fetch_or(KEEP, Ordering::Relaxed);
    }

    /// Overwrites the whole record, as a scribbler would (unit tests).
    #[cfg(test)]
    pub(crate) fn scribble(&self, start: u64, end: u64, flags: u64) {
        self.start.store(start, Ordering::Relaxed);
        self.end.store(end, Ordering::Relaxed);
        self.flags.store(flags, Ordering::Relaxed);
    }

    /// Whether the record's endpoint keeps its claims (a snapshot; read
    /// after acquiring its announcement, see `set_keep`).
    pub fn keeps(&self) -> bool {
        // Relaxed: see `set_keep`.
        self.flags.load(Ordering::Relaxed) & KEEP != 0
    }

    /// The announced range `(start, end)` (a snapshot; as in `covers`).
    pub fn range(&self) -> (u64, u64) {
        // Relaxed / Acquire: as in `covers`.
        let start = self.start.load(Ordering::Relaxed);
        let end = self.end.load(Ordering::Acquire);
        (start, end)
    }

    /// Announces a claim of `start..end`. The claiming CAS, a Release RMW
    /// on `head`/`tail`, publishes the announcement to repairers, who read
    /// that word with Acquire before the intents. Release on both stores
    /// (the `end` one is what `covers` acquires): a repairer that sees this
    /// announcement, and so no longer sees the endpoint's previous claim,
    /// also sees the publishing store that finished that claim (its commit
    /// or release and `retire` come before this in program order), so its
    /// CAS on that slot fails instead of landing before the commit.
    #[inline(always)]
    fn set(&self, start: u64, end: u64) {
        self.end.store(end, Ordering::Release);
        self.start.store(start, Ordering::Release);
    }

    /// Ends the announcement of a claim starting at `start` once its
    /// publishing store is done: one store, `end = start` (empty range).
    /// Release: a repairer that sees the claim retired (Acquire in
    /// `covers`) also sees the store that ended it, so its CAS cannot be
    /// ordered before that store.
    #[inline(always)]
    fn retire(&self, start: u64) {
        self.end.store(start, Ordering::Release);
    }

    /// Withdraws the announcement (no claim made); also clears a record a
    /// new endpoint takes over (its previous owner's claims were settled
    /// before its entry was freed).
    #[inline(always)]
    pub fn clear(&self) {
        // Relaxed: a stale announcement only delays a repair.
        self.start.store(0, Ordering::Relaxed);
        // Release: as in `set` (a repairer that sees the record empty also
        // sees the endpoint's earlier publishing stores).
        self.end.store(0, Ordering::Release);
    }

    /// Announces a claim of the single position `pos` (SPSC loans and
    /// in-place reads: their only claims). Release: as in `set`.
    #[inline(always)]
    pub(crate) fn announce_one(&self, pos: u64) {
        self.set(pos, pos.wrapping_add(1));
    }

    /// Ends an announcement of `pos` (see [`announce_one`](Self::announce_one))
    /// once its publishing store is done. Release: as in `retire`.
    #[inline(always)]
    pub(crate) fn retire_one(&self, pos: u64) {
        self.retire(pos);
    }

    /// A repairer's retirement of a dead endpoint's announcement of the
    /// single position `pos`: one CAS, so that of several repairers
    /// exactly one counts what it lost. True for the winner.
    pub(crate) fn retire_dead_one(&self, pos: u64) -> bool {
        // Relaxed: compared, then confirmed by the CAS on `end`.
        if self.start.load(Ordering::Relaxed) != pos {
            return false;
        }
        // AcqRel: Acquire orders us after the dead endpoint's last writes
        // (as its proof of death does); Release publishes the retirement.
        // Relaxed on failure: another repairer won, or nothing to retire.
        self.end
            .compare_exchange(
                pos.wrapping_add(1),
                pos,
                Ordering::AcqRel,
                Ordering::Relaxed,
            )
            .is_ok()
    }

    /// Whether the record announces exactly the single position `pos`
    /// ([`announce_one`](Self::announce_one) finished, not retired): not a
    /// torn announcement of `pos` still showing the previous start. A
    /// snapshot; exact for a dead endpoint's record held by its reaper.
    pub(crate) fn announces_one(&self, pos: u64) -> bool {
        // Relaxed: compared only; Acquire on `end` as in `covers`.
        self.start.load(Ordering::Relaxed) == pos
            && self.end.load(Ordering::Acquire) == pos.wrapping_add(1)
    }

    /// Whether the announced claim covers position `pos` (a snapshot).
    pub fn covers(&self, pos: u64) -> bool {
        // Relaxed: see `set`; a torn pair belongs to a live endpoint
        // between claims, which holds nothing to repair. Acquire on `end`:
        // pairs with `retire`.
        let start = self.start.load(Ordering::Relaxed);
        let end = self.end.load(Ordering::Acquire);
        pos.wrapping_sub(start) < end.wrapping_sub(start)
    }
}

/// What a repair did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Slots it changed (each frees a waiter on one side or the other).
    pub slots: u64,
    /// Messages lost with them (a freed skip record loses none).
    pub lost: u64,
    /// The pass stopped early (its `stop` callback said so): the next pass
    /// resumes from its cursor.
    pub stopped: bool,
}

/// Positions a repair pass examines between two calls of its `stop`
/// callback (and before the first: every pass makes this much progress).
pub const REPAIR_BATCH: u64 = 64;

/// Where the next repair pass starts: the intent record, and how many
/// positions of its announced range (if it still starts at `start`) were
/// examined already. Process-local; a hint only (every position is checked
/// against its stamp), so a stale or default cursor is always safe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RepairCursor {
    intent: usize,
    start: u64,
    offset: u64,
}

/// A process-local view of an MPMC ring in shared memory.
#[derive(Debug)]
pub struct MpmcRing<T> {
    head: NonNull<AtomicU64>,
    tail: NonNull<AtomicU64>,
    slots: NonNull<Slot<T>>,
    /// Bytes from one slot to the next (see `SpscRing`).
    stride: usize,
    capacity: u64,
    one_lap: u64,
    /// This endpoint's intent record, if it announces claims.
    intent: Option<NonNull<Intent>>,
}

impl<T> Clone for MpmcRing<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for MpmcRing<T> {}

impl<T: Copy> MpmcRing<T> {
    /// A view over existing memory.
    ///
    /// # Safety
    /// `head`, `tail` and `capacity` slots at `slots`, `stride` bytes apart,
    /// must stay valid (mapped) for as long as the view is used; `stride`
    /// must be at least `size_of::<Slot<T>>()` and a multiple of its
    /// alignment; `1 <= capacity < 2^62`.
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
        MpmcRing {
            head,
            tail,
            slots,
            stride,
            capacity,
            one_lap: one_lap(capacity),
            intent: None,
        }
    }

    /// This view, announcing its claims in `intent`.
    ///
    /// # Safety
    /// `intent` must stay valid while the view is used, and no other live
    /// endpoint may use it.
    pub unsafe fn with_intent(mut self, intent: NonNull<Intent>) -> Self {
        self.intent = Some(intent);
        self
    }

    #[inline(always)]
    fn announce(&self, start: u64, end: u64) {
        if let Some(i) = self.intent {
            // SAFETY: valid while the view is (contract of `with_intent`).
            unsafe { i.as_ref() }.set(start, end);
        }
    }

    #[inline(always)]
    fn retire(&self, start: u64) {
        if let Some(i) = self.intent {
            // SAFETY: as in `announce`.
            unsafe { i.as_ref() }.retire(start);
        }
    }

    #[inline(always)]
    fn withdraw(&self) {
        if let Some(i) = self.intent {
            // SAFETY: as in `announce`.
            unsafe { i.as_ref() }.clear();
        }
    }

    /// Sets every slot's stamp to its index: the empty ring. Creator only,
    /// before the segment is published.
    #[cfg_attr(loom, allow(dead_code))]
    pub fn init(&self) {
        for i in 0..self.capacity {
            // Relaxed: published to other processes by the header's Release
            // of the ready state.
            self.slot_at(i).stamp.store(i, Ordering::Relaxed);
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

    fn slot_at(&self, index: u64) -> &Slot<T> {
        assert!(index < self.capacity);
        // SAFETY: index < capacity (checked above), and `capacity` slots,
        // `stride` bytes apart and aligned, are valid for the view's
        // lifetime (contract of `from_raw`).
        unsafe { Slot::at(self.slots, self.stride, index as usize) }
    }

    /// Splits a stamp into (lap bits, index), or `None` if the index is out
    /// of range (only a scribbled stamp can be).
    #[inline(always)]
    fn split(&self, stamp: u64) -> Option<(u64, u64)> {
        let index = stamp & (self.one_lap - 1);
        (index < self.capacity).then_some((stamp & !(self.one_lap - 1), index))
    }

    #[inline(always)]
    fn next(&self, lap: u64, index: u64) -> u64 {
        if index + 1 < self.capacity {
            lap | (index + 1)
        } else {
            lap.wrapping_add(self.one_lap)
        }
    }

    /// Slots in the ring.
    #[cfg_attr(loom, allow(dead_code))]
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Messages claimed by producers and not yet claimed by consumers
    /// (a snapshot; clamped to the capacity).
    #[cfg_attr(loom, allow(dead_code))]
    pub fn len(&self) -> u64 {
        let mut tries = 0;
        loop {
            // Relaxed loads, re-read until tail is stable across the head
            // read: a consistent snapshot pair. Bounded: under constant
            // change the last pair is as good an answer as any.
            let tail = self.tail().load(Ordering::Relaxed);
            let head = self.head().load(Ordering::Relaxed);
            tries += 1;
            if self.tail().load(Ordering::Relaxed) == tail || tries >= 64 {
                return occupancy(head, tail, self.capacity);
            }
            spin_loop();
        }
    }

    /// Claims the next position for writing in place: `(position, slot
    /// index)`, or `Full`. The slot is the caller's until it calls
    /// [`commit_push`](Self::commit_push), or
    /// [`abandon_push`](Self::abandon_push) to give it up.
    #[inline(always)]
    pub fn claim_push(&self) -> Result<(u64, u64), PushError> {
        // Relaxed: only a guess at our position; the stamp check validates it.
        let mut tail = self.tail().load(Ordering::Relaxed);
        for _ in 0..MAX_ROUNDS {
            let (lap, index) = self.split(tail).ok_or(PushError::Corrupted)?;
            // Acquire: the previous consumer's read of this slot happens-before
            // our overwrite (pairs with its Release of the stamp).
            let stamp = self.slot_at(index).stamp.load(Ordering::Acquire);
            if stamp == tail {
                self.announce(tail, tail.wrapping_add(1));
                // Release: publishes the announcement to repairers (who
                // read `tail` with Acquire); otherwise the CAS only decides
                // who owns position `tail`. Relaxed on failure.
                match self.tail().compare_exchange_weak(
                    tail,
                    self.next(lap, index),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok((tail, index)),
                    Err(t) => tail = t,
                }
            } else if behind(stamp & !SKIP, tail) {
                // The slot has not caught up with our position: it still
                // holds last lap's message or skip record (full, or its
                // consumer is mid-read), or last lap's producer claimed it
                // and has not written yet. Either way there is no free slot
                // now. Comparisons of order ignore the skip bit: last lap's
                // skip record is behind us like last lap's message.
                self.withdraw();
                return Err(PushError::Full);
            } else {
                // The slot is ahead of us: another producer took `tail`. Its
                // stamp store, which we just acquired, follows its CAS of
                // `tail` past our position, so a fresh read of `tail` must
                // have moved on. If it has not, the stamp is garbage.
                // Relaxed: a new guess, validated by the next stamp check.
                let fresh = self.tail().load(Ordering::Relaxed);
                if fresh == tail {
                    self.withdraw();
                    return Err(PushError::Corrupted);
                }
                tail = fresh;
            }
            spin_loop();
        }
        self.withdraw();
        Err(PushError::Full)
    }

    /// The slot at `index`, to write or read in place while claimed.
    #[inline(always)]
    pub fn slot_ptr(&self, index: u64) -> *mut T {
        self.slot_at(index).value.with_mut(|p| p)
    }

    /// Writes `value` into the slot of a claimed position.
    #[inline(always)]
    pub fn write(&self, index: u64, value: T) {
        // SAFETY: the caller owns the claimed position whose slot is
        // `index`: the slot is free and no one else writes it.
        self.slot_at(index)
            .value
            .with_mut(|p| unsafe { p.write(value) });
    }

    /// Publishes the message written at the claimed position `pos`.
    #[inline(always)]
    pub fn commit_push(&self, pos: u64, index: u64) {
        // Release: the write of the slot happens-before the consumer that
        // sees this stamp with Acquire.
        self.slot_at(index)
            .stamp
            .store(pos.wrapping_add(1), Ordering::Release);
        self.retire(pos);
    }

    /// Gives up a claimed position without a message: publishes a skip
    /// record, which consumers step over. The position itself cannot be
    /// handed back, since later producers may already have claimed past it.
    pub fn abandon_push(&self, pos: u64, index: u64) {
        // Release: orders the producer's abandonment after anything it did
        // to the slot (it may have written part of a message).
        self.slot_at(index)
            .stamp
            .store(pos.wrapping_add(1) | SKIP, Ordering::Release);
        self.retire(pos);
    }

    /// Writes one message, or reports `Full`.
    #[inline]
    pub fn try_push(&self, value: T) -> Result<(), PushError> {
        let (pos, index) = self.claim_push()?;
        self.write(index, value);
        self.commit_push(pos, index);
        Ok(())
    }

    /// Consumes the skip record at position `head` (slot `index`, stamp
    /// `head + 1 | SKIP` seen with Acquire): claims the position like a
    /// message and releases the slot at once. Returns the fresh `head`, and
    /// sets `freed` if this call released the slot (a producer waiting for
    /// room must then be woken by the caller).
    #[cold]
    fn step_over(&self, head: u64, lap: u64, index: u64, freed: &mut bool) -> u64 {
        let next = self.next(lap, index);
        self.announce(head, head.wrapping_add(1));
        // Release: as in `claim_pop`. Relaxed on failure.
        match self
            .head()
            .compare_exchange(head, next, Ordering::Release, Ordering::Relaxed)
        {
            Ok(_) => {
                // Release: as in `release_pop`.
                self.slot_at(index)
                    .stamp
                    .store(head.wrapping_add(self.one_lap), Ordering::Release);
                self.retire(head);
                *freed = true;
                next
            }
            Err(h) => h,
        }
    }

    /// Claims the oldest published message for reading in place:
    /// `(position, slot index)`, or `Empty`. Skip records of abandoned
    /// claims are consumed on the way. The slot is the caller's until
    /// [`release_pop`](Self::release_pop). Sets `freed` if it stepped over
    /// a skip record (releasing a slot): the caller then wakes producers,
    /// whatever the result.
    #[inline(always)]
    pub fn claim_pop(&self, freed: &mut bool) -> Result<(u64, u64), PopError> {
        // Relaxed: only a guess at our position; the stamp check validates it.
        let mut head = self.head().load(Ordering::Relaxed);
        for _ in 0..MAX_ROUNDS {
            let (lap, index) = self.split(head).ok_or(PopError::Corrupted)?;
            // Acquire: the producer's write happens-before our read (pairs
            // with its Release of the stamp).
            let stamp = self.slot_at(index).stamp.load(Ordering::Acquire);
            if stamp == head.wrapping_add(1) {
                self.announce(head, head.wrapping_add(1));
                // Release: publishes the announcement to repairers (who read
                // `head` with Acquire); otherwise the CAS only decides who
                // owns position `head`. Relaxed on failure.
                match self.head().compare_exchange_weak(
                    head,
                    self.next(lap, index),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Ok((head, index)),
                    Err(h) => head = h,
                }
            } else if stamp == head.wrapping_add(1) | SKIP {
                head = self.step_over(head, lap, index, freed);
                continue;
            } else if behind(stamp & !SKIP, head.wrapping_add(1)) {
                // Not written in this lap (empty, or its producer has claimed
                // the position and not published yet), or last lap's
                // consumer has not released it yet. All are Empty for a
                // `try_` call; whoever finishes notifies.
                self.withdraw();
                return Err(PopError::Empty);
            } else {
                // The slot is ahead of us: another consumer took `head` (see
                // `claim_push`).
                // Relaxed: a new guess, validated by the next stamp check.
                let fresh = self.head().load(Ordering::Relaxed);
                if fresh == head {
                    self.withdraw();
                    return Err(PopError::Corrupted);
                }
                head = fresh;
            }
            spin_loop();
        }
        self.withdraw();
        Err(PopError::Empty)
    }

    /// Reads the message in the slot of a claimed position.
    #[inline(always)]
    pub fn read(&self, index: u64) -> T {
        // SAFETY: the caller owns the claimed position whose slot is
        // `index`; its message is published (stamp acquired by the claim).
        self.slot_at(index).value.with(|p| unsafe { p.read() })
    }

    /// Gives the slot of the claimed position `pos` back to producers.
    #[inline(always)]
    pub fn release_pop(&self, pos: u64, index: u64) {
        // Release: our read happens-before the next producer's overwrite
        // (it acquires this stamp).
        self.slot_at(index)
            .stamp
            .store(pos.wrapping_add(self.one_lap), Ordering::Release);
        self.retire(pos);
    }

    /// Takes one message, or reports `Empty`; `freed` as for
    /// [`claim_pop`](Self::claim_pop).
    #[inline]
    pub fn try_pop(&self, freed: &mut bool) -> Result<T, PopError> {
        let (pos, index) = self.claim_pop(freed)?;
        let value = self.read(index);
        self.release_pop(pos, index);
        Ok(value)
    }

    /// Whether a published message is at the head now: what
    /// [`claim_pop`](Self::claim_pop) would find, without claiming it. A
    /// position claimed and not yet published (a producer's loan in
    /// progress) or a slot not yet released is no message; skip records at
    /// the head are stepped over on the way (`freed` as for `claim_pop`),
    /// since a message may wait behind them.
    pub fn has_message(&self, freed: &mut bool) -> Result<bool, PopError> {
        // Relaxed: only a guess at the head; the stamp check validates it.
        let mut head = self.head().load(Ordering::Relaxed);
        let mut found = Ok(false);
        for _ in 0..MAX_ROUNDS {
            let Some((lap, index)) = self.split(head) else {
                found = Err(PopError::Corrupted);
                break;
            };
            // Acquire: as in `claim_pop` (a caller told "true" then claims
            // the message, which acquires the stamp again).
            let stamp = self.slot_at(index).stamp.load(Ordering::Acquire);
            if stamp == head.wrapping_add(1) {
                found = Ok(true);
                break;
            } else if stamp == head.wrapping_add(1) | SKIP {
                head = self.step_over(head, lap, index, freed);
                continue;
            } else if behind(stamp & !SKIP, head.wrapping_add(1)) {
                break;
            }
            // Another consumer took `head` (see `claim_pop`).
            // Relaxed: a new guess, validated by the next stamp check.
            let fresh = self.head().load(Ordering::Relaxed);
            if fresh == head {
                found = Err(PopError::Corrupted);
                break;
            }
            head = fresh;
            spin_loop();
        }
        // A `step_over` that lost its CAS left its announcement: withdraw
        // it, so it cannot hold up a repair of that position.
        self.withdraw();
        found
    }

    /// How many slots from position `pos` (at `index`, within one lap, at
    /// most `max`) have the stamp `position + offset`: free slots for a
    /// producer (`offset` 0), published messages for a consumer (`offset` 1).
    /// The first slot is already known to match.
    #[inline(always)]
    fn run_length(&self, pos: u64, index: u64, max: u64, offset: u64) -> u64 {
        let limit = max.min(self.capacity - index);
        let mut k = 1;
        while k < limit {
            // Acquire: as for the first slot (see `try_push` / `try_pop`).
            let stamp = self.slot_at(index + k).stamp.load(Ordering::Acquire);
            if stamp != pos.wrapping_add(k + offset) {
                break;
            }
            k += 1;
        }
        k
    }

    /// The position `k` places after `(lap, index)`, where `index + k` is at
    /// most the capacity (a claim never crosses the end of a lap).
    #[inline(always)]
    fn advance(&self, lap: u64, index: u64, k: u64) -> u64 {
        if index + k < self.capacity {
            lap | (index + k)
        } else {
            lap.wrapping_add(self.one_lap)
        }
    }

    /// Writes a prefix of `values` with one claim of consecutive positions
    /// (never across the end of a lap): the number written, at least one, or
    /// `Full` / `Corrupted`.
    ///
    /// The claim is one CAS of `tail` from `t` to `t + k`, made after seeing
    /// the slots of positions `t..t+k` free. They stay free for us: a slot
    /// free for position `p` changes only when the owner of `p` publishes,
    /// and the CAS made us the owner of all of them.
    pub fn push_slice(&self, values: &[T]) -> Result<usize, PushError> {
        if values.is_empty() {
            return Ok(0);
        }
        // Relaxed: only a guess at our position; the stamp check validates it.
        let mut tail = self.tail().load(Ordering::Relaxed);
        for _ in 0..MAX_ROUNDS {
            let (lap, index) = self.split(tail).ok_or(PushError::Corrupted)?;
            // Acquire: pairs with the previous consumer's Release (see
            // `try_push`).
            let stamp = self.slot_at(index).stamp.load(Ordering::Acquire);
            if stamp == tail {
                let k = self.run_length(tail, index, values.len() as u64, 0);
                self.announce(tail, tail.wrapping_add(k));
                // Release: as in `claim_push`. Relaxed on failure.
                match self.tail().compare_exchange_weak(
                    tail,
                    self.advance(lap, index, k),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        for (i, v) in (0u64..).zip(&values[..k as usize]) {
                            let slot = self.slot_at(index + i);
                            // SAFETY: we own position `tail + i` and its slot
                            // is free (its stamp was `tail + i`, acquired).
                            slot.value.with_mut(|p| unsafe { p.write(*v) });
                            // Release: the write happens-before the consumer
                            // that acquires this stamp.
                            slot.stamp
                                .store(tail.wrapping_add(i + 1), Ordering::Release);
                        }
                        self.retire(tail);
                        return Ok(k as usize);
                    }
                    Err(t) => tail = t,
                }
            } else if behind(stamp & !SKIP, tail) {
                self.withdraw();
                return Err(PushError::Full);
            } else {
                // Another producer took `tail` (see `claim_push`).
                // Relaxed: a new guess, validated by the next stamp check.
                let fresh = self.tail().load(Ordering::Relaxed);
                if fresh == tail {
                    self.withdraw();
                    return Err(PushError::Corrupted);
                }
                tail = fresh;
            }
            spin_loop();
        }
        self.withdraw();
        Err(PushError::Full)
    }

    /// Takes up to `out.len()` messages with one claim of consecutive
    /// positions (never across the end of a lap): the number taken, at least
    /// one, or `Empty` / `Corrupted`. The claim argument is `push_slice`'s;
    /// `freed` as for [`claim_pop`](Self::claim_pop).
    pub fn pop_into(&self, out: &mut [T], freed: &mut bool) -> Result<usize, PopError> {
        if out.is_empty() {
            return Ok(0);
        }
        // Relaxed: only a guess at our position; the stamp check validates it.
        let mut head = self.head().load(Ordering::Relaxed);
        for _ in 0..MAX_ROUNDS {
            let (lap, index) = self.split(head).ok_or(PopError::Corrupted)?;
            // Acquire: pairs with the producer's Release (see `try_pop`).
            let stamp = self.slot_at(index).stamp.load(Ordering::Acquire);
            if stamp == head.wrapping_add(1) {
                let k = self.run_length(head, index, out.len() as u64, 1);
                self.announce(head, head.wrapping_add(k));
                // Release: as in `claim_pop`. Relaxed on failure.
                match self.head().compare_exchange_weak(
                    head,
                    self.advance(lap, index, k),
                    Ordering::Release,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => {
                        for (i, o) in (0u64..).zip(&mut out[..k as usize]) {
                            let slot = self.slot_at(index + i);
                            // SAFETY: we own position `head + i`, whose
                            // message is published (stamp acquired above).
                            *o = slot.value.with(|p| unsafe { p.read() });
                            // Release: our read happens-before the next
                            // producer's overwrite.
                            slot.stamp
                                .store(head.wrapping_add(i + self.one_lap), Ordering::Release);
                        }
                        self.retire(head);
                        return Ok(k as usize);
                    }
                    Err(h) => head = h,
                }
            } else if stamp == head.wrapping_add(1) | SKIP {
                head = self.step_over(head, lap, index, freed);
                continue;
            } else if behind(stamp & !SKIP, head.wrapping_add(1)) {
                self.withdraw();
                return Err(PopError::Empty);
            } else {
                // Another consumer took `head` (see `claim_push`).
                // Relaxed: a new guess, validated by the next stamp check.
                let fresh = self.head().load(Ordering::Relaxed);
                if fresh == head {
                    self.withdraw();
                    return Err(PopError::Corrupted);
                }
                head = fresh;
            }
            spin_loop();
        }
        self.withdraw();
        Err(PopError::Empty)
    }

    /// Whether some endpoint announced a claim of `pos` and every endpoint
    /// that did is dead (`live(i)` false for entry `i`).
    fn claimed_only_by_dead(
        &self,
        pos: u64,
        intents: &[Intent],
        live: &dyn Fn(usize) -> bool,
    ) -> bool {
        self.dead_claimers(pos, intents, live).is_some()
    }

    /// `Some(keep)` if some endpoint announced a claim of `pos` and every
    /// endpoint that did is dead; `keep`: one of them keeps its claims
    /// ([`KEEP`]). `None`: no claim, or a live endpoint's.
    fn dead_claimers(
        &self,
        pos: u64,
        intents: &[Intent],
        live: &dyn Fn(usize) -> bool,
    ) -> Option<bool> {
        let mut dead_claim = None;
        for (i, intent) in intents.iter().enumerate() {
            if intent.covers(pos) {
                if live(i) {
                    return None;
                }
                // Read after `covers` acquired the announcement: see
                // `Intent::set_keep`.
                let keep = dead_claim.unwrap_or(false) || intent.keeps();
                dead_claim = Some(keep);
            }
        }
        dead_claim
    }

    /// Repairs the claims that only dead endpoints (`live(i)` false for
    /// intent record `i`) left in flight:
    ///
    /// - an *unpublished* position `p` (a producer claimed it and died
    ///   before its commit: `tail` is past `p` and its slot still holds the
    ///   free stamp `p`) becomes a skip record, one CAS from the free stamp,
    ///   so a commit can never be overwritten (dead processes do not
    ///   commit). Its message is lost.
    /// - an *unreleased* slot (a consumer claimed position `p` and died
    ///   before releasing it: `head` is past `p` and the slot still holds
    ///   `p + 1`, or a skip record's `p + 1 | SKIP`) is released, one CAS
    ///   from that stamp to `p + one_lap`. Its message is lost (a skip
    ///   record's is not). Unless one of the dead endpoints that announced
    ///   `p` keeps its claims ([`KEEP`]) and the slot holds a message
    ///   (`p + 1`, no skip bit): then it stays, for
    ///   [`kept_claims`](Self::kept_claims) / [`release_kept`](Self::release_kept).
    ///
    /// The candidates are the positions announced in the intent records of
    /// dead endpoints, not the whole ring: a pass costs one liveness query
    /// per record that announces anything plus the length of the dead
    /// claims, whatever the capacity. A claimer announces its positions in
    /// its intent before the CAS that moves `head`/`tail` past them;
    /// reading both words with Acquire first makes those announcements
    /// visible here. A position that any live endpoint's record also covers
    /// is left alone: that endpoint may be its claimer, still working (it
    /// announced the position, then won the CAS a dead endpoint lost).
    ///
    /// `stop` is asked every [`REPAIR_BATCH`] positions (never before the
    /// first batch is done, so every pass makes progress): once it says
    /// true the pass returns with `stopped` set, and `cursor` records where
    /// the next pass resumes. The next pass starts there and goes round all
    /// the records; a pass that completes resets `cursor`, so positions a
    /// stopped pass skipped are examined again by the pass after next.
    pub fn repair(
        &self,
        intents: &[Intent],
        live: &dyn Fn(usize) -> bool,
        stop: &dyn Fn() -> bool,
        cursor: &mut RepairCursor,
    ) -> Repaired {
        let mut done = Repaired::default();
        if intents.is_empty() {
            return done;
        }
        // Acquire: pairs with the claimers' Release CASes of `tail` and
        // `head`, so the announcements made before them are visible.
        let tail = self.tail().load(Ordering::Acquire);
        let head = self.head().load(Ordering::Acquire);
        let first = cursor.intent % intents.len();
        let resume = *cursor;
        let mut work = 0u64;
        for k in 0..intents.len() {
            let i = (first + k) % intents.len();
            let intent = &intents[i];
            // Relaxed / Acquire: as in `covers`.
            let start = intent.start.load(Ordering::Relaxed);
            let end = intent.end.load(Ordering::Acquire);
            if start == end || live(i) {
                continue;
            }
            let mut pos = start;
            for offset in 0..self.capacity {
                // The announced range, walked as a claim walks it (within
                // one lap; a torn or scribbled pair ends at the capacity).
                if pos.wrapping_sub(start) >= end.wrapping_sub(start) {
                    break;
                }
                let Some((lap, index)) = self.split(pos) else {
                    break;
                };
                let skip = k == 0 && resume.start == start && offset < resume.offset;
                if !skip {
                    if work > 0 && work.is_multiple_of(REPAIR_BATCH) && stop() {
                        *cursor = RepairCursor {
                            intent: i,
                            start,
                            offset,
                        };
                        done.stopped = true;
                        return done;
                    }
                    work += 1;
                    self.repair_position(pos, index, tail, head, intents, live, &mut done);
                }
                pos = self.next(lap, index);
            }
        }
        *cursor = RepairCursor::default();
        done
    }

    /// Repairs position `pos` (slot `index`) if it is stuck and only dead
    /// endpoints announced it (see [`repair`](Self::repair)).
    #[allow(clippy::too_many_arguments)]
    fn repair_position(
        &self,
        pos: u64,
        index: u64,
        tail: u64,
        head: u64,
        intents: &[Intent],
        live: &dyn Fn(usize) -> bool,
        done: &mut Repaired,
    ) {
        let slot = self.slot_at(index);
        // Relaxed: compared, then confirmed by the CAS below.
        let stamp = slot.stamp.load(Ordering::Relaxed);
        if stamp == pos && behind(pos, tail) {
            if self.claimed_only_by_dead(pos, intents, live)
                // Release: consumers acquire the skip stamp, as any stamp.
                && slot
                    .stamp
                    .compare_exchange(pos, pos.wrapping_add(1) | SKIP, Ordering::Release, Ordering::Relaxed)
                    .is_ok()
            {
                done.slots += 1;
                done.lost += 1;
            }
        } else if stamp & !SKIP == pos.wrapping_add(1)
            && behind(pos, head)
            // A published message claimed by a dead consumer that keeps
            // its claims stays in its slot for an adopter
            // (`kept_claims`); a skip record has no message to keep.
            && self
                .dead_claimers(pos, intents, live)
                .is_some_and(|keep| !keep || stamp & SKIP != 0)
            // Release: producers acquire the freed stamp.
            && slot
                .stamp
                .compare_exchange(stamp, pos.wrapping_add(self.one_lap), Ordering::Release, Ordering::Relaxed)
                .is_ok()
        {
            done.slots += 1;
            if stamp & SKIP == 0 {
                done.lost += 1;
            }
        }
    }

    /// Whether `intent` covers a position whose claim is unfinished: a
    /// claimed position still unpublished, or a claimed message still
    /// unreleased. (A reaper keeps a dead endpoint's record until this is
    /// false, so no claim is orphaned.)
    #[cfg_attr(loom, allow(dead_code))]
    pub fn claim_pending(&self, intent: &Intent) -> bool {
        // Relaxed: the intent of a dead endpoint is stable; `covers` orders
        // the end with Acquire.
        let start = intent.start.load(Ordering::Relaxed);
        // Acquire: as in `repair_*`.
        let tail = self.tail().load(Ordering::Acquire);
        let head = self.head().load(Ordering::Acquire);
        let mut pos = start;
        for _ in 0..self.capacity {
            if !intent.covers(pos) {
                break;
            }
            let Some((lap, index)) = self.split(pos) else {
                return false;
            };
            // Relaxed: a snapshot; the repair decides with a CAS.
            let stamp = self.slot_at(index).stamp.load(Ordering::Relaxed);
            let unpublished = stamp == pos && behind(pos, tail);
            let unreleased = stamp & !SKIP == pos.wrapping_add(1) && behind(pos, head);
            if unpublished || unreleased {
                return true;
            }
            pos = self.next(lap, index);
        }
        false
    }
}

/// A message that a dead consumer keeping its claims ([`KEEP`]) left
/// claimed: see [`MpmcRing::kept_claims`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeptClaim {
    /// Its position (stamp) in the ring.
    pub pos: u64,
    /// Its slot, `0..capacity`.
    pub index: u64,
}

impl<T: Copy> MpmcRing<T> {
    /// The messages kept for an adopter that holds the intent records `i`
    /// with `held(i)` (the table entries of dead endpoints it won), oldest
    /// first, in `out` (cleared first; at most `capacity` per record).
    ///
    /// A position `p` of a held record that has [`KEEP`] is listed when its
    /// slot holds the published message `p + 1` (no skip bit), `head` is
    /// past it (a consumer claimed it), no live endpoint's record covers it
    /// (`live(i)`, as for [`repair`](Self::repair): a live one may be its
    /// claimer, still reading), and every record with KEEP that covers it
    /// is held by this adopter: two adopters never both hand out one
    /// message from its slot (the one without every such record leaves it
    /// for a later call). Everything is re-read and bounded here: a
    /// scribbled range is walked for at most one lap, a scribbled stamp
    /// just fails the test.
    pub fn kept_claims(
        &self,
        intents: &[Intent],
        live: &dyn Fn(usize) -> bool,
        held: &dyn Fn(usize) -> bool,
        out: &mut Vec<KeptClaim>,
    ) {
        // Acquire: as in `repair` (the claimer announced before its CAS of
        // `head`, so its record is visible).
        let head = self.head().load(Ordering::Acquire);
        out.clear();
        for (i, intent) in intents.iter().enumerate() {
            if !held(i) {
                continue;
            }
            let (start, end) = intent.range();
            // After acquiring the announcement: see `Intent::set_keep`.
            if start == end || !intent.keeps() {
                continue;
            }
            let mut pos = start;
            for _ in 0..self.capacity {
                if pos.wrapping_sub(start) >= end.wrapping_sub(start) {
                    break;
                }
                let Some((lap, index)) = self.split(pos) else {
                    break;
                };
                if self.kept_holds(pos, index)
                    && behind(pos, head)
                    && self.kept_by(pos, intents, live, held)
                {
                    out.push(KeptClaim { pos, index });
                }
                pos = self.next(lap, index);
            }
        }
        // Oldest first: furthest behind `head` (all are behind it). Two
        // held records may cover one position: listed once.
        out.sort_unstable_by_key(|k| std::cmp::Reverse(head.wrapping_sub(k.pos)));
        out.dedup_by_key(|k| k.pos);
    }

    /// Whether every record that covers `pos` is dead, some held one keeps
    /// its claims, and every keeping one is held.
    fn kept_by(
        &self,
        pos: u64,
        intents: &[Intent],
        live: &dyn Fn(usize) -> bool,
        held: &dyn Fn(usize) -> bool,
    ) -> bool {
        let mut kept = false;
        for (i, intent) in intents.iter().enumerate() {
            if !intent.covers(pos) {
                continue;
            }
            let mine = held(i);
            if !mine && live(i) {
                return false;
            }
            if intent.keeps() {
                if !mine {
                    return false;
                }
                kept = true;
            }
        }
        kept
    }

    /// Whether the slot at `index` still holds the published message of
    /// position `pos`, claimed and not released: exactly stamp `pos + 1`.
    /// An adopter reads the message only after this says true.
    pub fn kept_holds(&self, pos: u64, index: u64) -> bool {
        // Acquire: the producer's write of the message happens-before our
        // read of it (pairs with its Release of the stamp, as a consumer's
        // claim does).
        self.slot_at(index).stamp.load(Ordering::Acquire) == pos.wrapping_add(1)
    }

    /// Releases the kept message at `pos` (slot `index`) as its consumer
    /// would have: one CAS from `pos + 1` to `pos + one_lap`, so of several
    /// adopters or repairers exactly one frees it. True for that one; the
    /// caller then wakes producers.
    pub fn release_kept(&self, pos: u64, index: u64) -> bool {
        // Release: our read of the message happens-before the next
        // producer's overwrite (it acquires this stamp). Relaxed on
        // failure: someone else freed it (or the stamp was scribbled).
        self.slot_at(index)
            .stamp
            .compare_exchange(
                pos.wrapping_add(1),
                pos.wrapping_add(self.one_lap),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .is_ok()
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::cell::Cell;

    /// A heap-backed ring of `capacity` with `n` intent records.
    struct Fixture {
        head: Box<AtomicU64>,
        tail: Box<AtomicU64>,
        slots: Vec<Slot<u64>>,
        intents: Vec<Intent>,
    }

    impl Fixture {
        fn new(capacity: u64, n: usize) -> Self {
            Fixture {
                head: Box::new(AtomicU64::new(0)),
                tail: Box::new(AtomicU64::new(0)),
                slots: (0..capacity).map(|i| Slot::new(i, 0)).collect(),
                intents: (0..n).map(|_| Intent::new()).collect(),
            }
        }

        /// The ring as endpoint `i` sees it.
        fn view(&self, i: usize) -> MpmcRing<u64> {
            // SAFETY: everything lives as long as `self`, which outlives
            // the views in these tests; record `i` is the view's alone.
            unsafe {
                MpmcRing::from_raw(
                    NonNull::from(&*self.head),
                    NonNull::from(&*self.tail),
                    NonNull::from(&self.slots[0]),
                    std::mem::size_of::<Slot<u64>>(),
                    self.slots.len() as u64,
                )
                .with_intent(NonNull::from(&self.intents[i]))
            }
        }
    }

    /// Issue 10 item 14: a repair pass is bounded. Endpoint 0 claims 1,000
    /// positions in one batch and dies; a repairer whose `stop` always says
    /// true does one batch per pass, reports that it stopped, and resumes
    /// where it left off: the claim is repaired in exactly
    /// ceil(1000 / REPAIR_BATCH) passes, each message counted once, and
    /// liveness is asked once per record per pass plus once per examined
    /// position (the caller caches the answers).
    #[test]
    fn repair_stops_at_its_budget_and_resumes() {
        let f = Fixture::new(4096, 4);
        let dead = f.view(0);
        let live_producer = f.view(1);
        let consumer = f.view(2);
        // The dead producer's batch claim: announced, then `tail` moved
        // past it, then the process died before writing anything.
        dead.announce(0, 1000);
        f.tail.store(1000, Ordering::Release);
        // A live producer publishes behind it.
        live_producer.try_push(7).unwrap();
        let mut freed = false;
        assert_eq!(consumer.try_pop(&mut freed), Err(PopError::Empty));

        let asked = Cell::new(0u64);
        let live = |i: usize| {
            asked.set(asked.get() + 1);
            i != 0
        };
        let mut cursor = RepairCursor::default();
        let (mut passes, mut lost) = (0, 0);
        loop {
            asked.set(0);
            let done = dead_ring_pass(&dead, &f.intents, &live, &mut cursor);
            passes += 1;
            lost += done.lost;
            assert!(
                done.slots <= REPAIR_BATCH,
                "a pass did {} positions past its stop",
                done.slots
            );
            // Records 1 and 2 are live (asked once each); record 0 once,
            // plus once per position checked for other covers.
            assert!(asked.get() <= 3 + REPAIR_BATCH, "asked {}", asked.get());
            if !done.stopped {
                break;
            }
            assert!(passes < 1000, "no progress");
        }
        assert_eq!(passes, 1000u64.div_ceil(REPAIR_BATCH));
        assert_eq!(lost, 1000, "every dead position counted once");
        // Every skip record is stepped over, then the live message arrives.
        assert_eq!(consumer.try_pop(&mut freed), Ok(7));
        assert!(freed);
        // The dead record still announces its (settled) range until the
        // endpoint is reaped: a later pass walks it and repairs nothing.
        let again = dead.repair(&f.intents, &live, &|| false, &mut cursor);
        assert_eq!((again.slots, again.stopped), (0, false));
    }

    fn dead_ring_pass(
        ring: &MpmcRing<u64>,
        intents: &[Intent],
        live: &dyn Fn(usize) -> bool,
        cursor: &mut RepairCursor,
    ) -> Repaired {
        ring.repair(intents, live, &|| true, cursor)
    }

    /// Issue 10 item 14: the cost of a pass follows the dead claims, not
    /// the capacity: a full ring of 2^16 published messages with one dead
    /// consumer's claim is repaired in one pass that examines that one
    /// position (no `stop` is ever asked).
    #[test]
    fn repair_cost_follows_dead_claims_not_capacity() {
        let f = Fixture::new(1 << 16, 3);
        let p = f.view(0);
        let dying = f.view(1);
        for v in 0..1u64 << 16 {
            p.try_push(v).unwrap();
        }
        let mut freed = false;
        let (pos, _) = dying.claim_pop(&mut freed).unwrap();
        assert_eq!(pos, 0);
        let stops = Cell::new(0);
        let stop = || {
            stops.set(stops.get() + 1);
            false
        };
        let mut cursor = RepairCursor::default();
        let done = dying.repair(&f.intents, &|i| i != 1, &stop, &mut cursor);
        assert_eq!((done.slots, done.lost, done.stopped), (1, 1, false));
        assert_eq!(stops.get(), 0, "one position examined: no stop check");
        p.try_push(99).expect("the dead consumer's slot was freed");
    }

    /// Kept claims: a dead consumer that keeps its claims leaves its
    /// claimed message in place (a repair frees nothing and loses nothing),
    /// `kept_claims` lists it for the adopter holding its record (and for
    /// nobody else), and `release_kept` frees it exactly once. A dead
    /// consumer without KEEP is repaired as before.
    #[test]
    fn kept_claim_survives_repair_until_released() {
        let f = Fixture::new(4, 4);
        let (p, keeper, plain) = (f.view(0), f.view(1), f.view(2));
        for v in 10..14 {
            p.try_push(v).unwrap();
        }
        f.intents[1].set_keep();
        let mut freed = false;
        let (kpos, kindex) = keeper.claim_pop(&mut freed).unwrap();
        let (ppos, _) = plain.claim_pop(&mut freed).unwrap();
        assert_eq!((kpos, ppos), (0, 1));
        // Both die holding their claims.
        let live = |i: usize| i != 1 && i != 2;
        let mut cursor = RepairCursor::default();
        let done = p.repair(&f.intents, &live, &|| false, &mut cursor);
        assert_eq!((done.slots, done.lost), (1, 1), "only the plain claim goes");
        assert!(keeper.claim_pending(&f.intents[1]), "kept: still pending");
        assert!(!plain.claim_pending(&f.intents[2]));
        let again = p.repair(&f.intents, &live, &|| false, &mut cursor);
        assert_eq!((again.slots, again.lost), (0, 0), "kept across passes");
        // The next lap starts at the kept slot: producers stall there.
        assert_eq!(p.try_push(14), Err(PushError::Full), "the kept slot stalls");

        let mut kept = Vec::new();
        p.kept_claims(&f.intents, &live, &|i| i == 2, &mut kept);
        assert!(kept.is_empty(), "not held: nothing listed");
        p.kept_claims(&f.intents, &live, &|i| i == 1, &mut kept);
        assert_eq!(
            kept,
            vec![KeptClaim {
                pos: kpos,
                index: kindex
            }]
        );
        assert_eq!(p.read(kindex), 10, "the kept message is intact");
        assert!(p.release_kept(kpos, kindex));
        assert!(!p.release_kept(kpos, kindex), "released once");
        assert!(!keeper.claim_pending(&f.intents[1]));
        p.kept_claims(&f.intents, &live, &|i| i == 1, &mut kept);
        assert!(kept.is_empty());
        p.try_push(14).expect("the kept slot is free again");
        p.try_push(15)
            .expect("and the plain claim's slot behind it");
    }

    /// A live endpoint that covers a kept position (it may be the real
    /// claimer) keeps the adopter off it, as it keeps a repairer off.
    #[test]
    fn kept_claim_covered_by_live_endpoint_is_not_listed() {
        let f = Fixture::new(2, 3);
        let (p, keeper, other) = (f.view(0), f.view(1), f.view(2));
        p.try_push(1).unwrap();
        f.intents[1].set_keep();
        let mut freed = false;
        let (pos, _) = keeper.claim_pop(&mut freed).unwrap();
        // Endpoint 2 announced the same position (its CAS lost) and lives.
        other.announce(pos, pos + 1);
        let mut kept = Vec::new();
        p.kept_claims(&f.intents, &|i| i != 1, &|i| i == 1, &mut kept);
        assert!(kept.is_empty());
        other.withdraw();
        p.kept_claims(&f.intents, &|i| i != 1, &|i| i == 1, &mut kept);
        assert_eq!(kept.len(), 1);
    }

    /// Scribbled intent records (ranges, flags) and stamps: `kept_claims`
    /// and `repair` return, in bounds, listing only positions whose slot
    /// holds exactly their claimed stamp.
    #[test]
    fn kept_claims_survive_scribbled_records() {
        let f = Fixture::new(5, 4);
        let p = f.view(0);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut rnd = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut kept = Vec::new();
        for round in 0..2000 {
            for i in 1..4 {
                let (a, b, c) = (rnd(), rnd(), rnd());
                // Mix wild values with plausible ones (near head/tail).
                let start = if round % 2 == 0 { a } else { a % 16 };
                let end = if round % 3 == 0 {
                    b
                } else {
                    start.wrapping_add(b % 9)
                };
                f.intents[i].scribble(start, end, c);
            }
            let slot = (rnd() % 5) as usize;
            f.slots[slot].stamp.store(rnd() % 24, Ordering::Relaxed);
            f.head.store(rnd() % 24, Ordering::Relaxed);
            p.kept_claims(&f.intents, &|i| i == 0, &|i| i != 0, &mut kept);
            for k in &kept {
                assert!(k.index < 5);
                assert_eq!(
                    f.slots[k.index as usize].stamp.load(Ordering::Relaxed),
                    k.pos.wrapping_add(1)
                );
                let _ = p.release_kept(k.pos, k.index);
            }
            let mut cursor = RepairCursor::default();
            let _ = p.repair(&f.intents, &|i| i == 0, &|| false, &mut cursor);
            let _ = p.claim_pending(&f.intents[1]);
        }
    }

    /// Issue 10 item 16: `has_message` is true only for a published message
    /// at the head: not for a claim in progress, and it looks past skip
    /// records.
    #[test]
    fn has_message_ignores_claims_in_progress() {
        let f = Fixture::new(4, 3);
        let (a, b, c) = (f.view(0), f.view(1), f.view(2));
        let mut freed = false;
        let (pa, ia) = a.claim_push().unwrap();
        assert_eq!(c.len(), 1, "occupancy counts the claim");
        assert_eq!(c.has_message(&mut freed), Ok(false));
        let (pb, ib) = b.claim_push().unwrap();
        b.write(ib, 5);
        b.commit_push(pb, ib);
        assert_eq!(c.has_message(&mut freed), Ok(false), "A's claim is first");
        a.abandon_push(pa, ia);
        assert_eq!(c.has_message(&mut freed), Ok(true), "past A's skip record");
        assert!(freed, "the skip record was stepped over");
        assert_eq!(c.try_pop(&mut freed), Ok(5));
        assert_eq!(c.has_message(&mut freed), Ok(false));
    }
}
