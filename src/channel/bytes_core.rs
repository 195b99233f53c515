//! Byte messages over the rings: the part shared by the segment-backed
//! [`ByteSender`](crate::ByteSender) / [`ByteReceiver`](crate::ByteReceiver)
//! and the heap-backed queue the loom models drive.
//!
//! A byte queue is a ring of `u64` words with one fixed-size payload per
//! ring slot (see [`Payload`]; in a segment each payload follows its slot's
//! word, in the same cache line as the slot's stamp). A word holds the
//! message's length (low 32 bits) and a pipe's session stamp (high 32 bits,
//! 0 for plain byte queues: see [`session`](super::session)). Sending
//! claims a slot, copies the bytes into its payload, writes the word into
//! the slot and commits; receiving claims the oldest message, validates its
//! length against the maximum before touching the payload, copies it out
//! and releases the slot. A loan is the same claim held open across the
//! caller's writes; dropping it abandons the claim.
//!
//! Every receive claims through [`claim`], which, given a pipe end's
//! [`Session`], drops the messages addressed to its predecessors and
//! reports the end of a peer session before anything from the next one.

use super::control::QueueControl;
use super::payload::Payload;
use super::raw::{RawReceiver, RawSender, SlotClaim};
use super::session::{self, Session, Verdict};
use crate::error::{ByteSendError, SendTimeoutError, TryRecvError, TrySendError};
use crate::loom::Ordering;
use crate::ring::mpmc::{Intent, MpmcRing};
use crate::wait::Deadline;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// How a call waits: until a deadline (`None`: forever), spinning first for
/// a while, checking peers' liveness with the callback between sleeps.
pub type Wait<'r> = (Option<Deadline>, Duration, &'r dyn Fn());

fn too_large(len: usize, payload: &Payload) -> Result<(), ByteSendError> {
    if len > payload.max() {
        return Err(ByteSendError::TooLarge {
            len,
            max: payload.max(),
        });
    }
    Ok(())
}

fn from_try(e: TrySendError<()>) -> ByteSendError {
    match e {
        TrySendError::Full(()) => ByteSendError::Full,
        TrySendError::Disconnected(()) => ByteSendError::Disconnected,
        TrySendError::Closed(()) => ByteSendError::Closed,
        TrySendError::Corrupted(()) => ByteSendError::Corrupted,
    }
}

fn from_timeout(e: SendTimeoutError<()>) -> ByteSendError {
    match e {
        SendTimeoutError::Timeout(()) => ByteSendError::Timeout,
        SendTimeoutError::Disconnected(()) => ByteSendError::Disconnected,
        SendTimeoutError::Closed(()) => ByteSendError::Closed,
        SendTimeoutError::Corrupted(()) => ByteSendError::Corrupted,
    }
}

/// Copies `msg` into the claimed slot and commits it with `stamp`.
#[inline]
fn fill_and_commit(
    raw: &RawSender<u64>,
    payload: &Payload,
    claim: SlotClaim,
    msg: &[u8],
    stamp: u64,
) {
    // SAFETY: the claim makes us the slot's producer; the length was
    // checked against the maximum by the caller.
    unsafe { payload.write(claim.index, msg) };
    raw.write(&claim, session::word(msg.len(), stamp));
    raw.commit(claim);
}

/// Sends `msg`, stamped with `stamp` (0: unaddressed), without waiting.
#[inline]
pub fn try_send(
    raw: &RawSender<u64>,
    payload: &Payload,
    msg: &[u8],
    stamp: u64,
) -> Result<(), ByteSendError> {
    too_large(msg.len(), payload)?;
    let claim = raw.try_claim().map_err(from_try)?;
    fill_and_commit(raw, payload, claim, msg, stamp);
    Ok(())
}

/// Sends `msg`, stamped with `stamp`, waiting for room until `deadline`
/// (`None`: forever). Inline: the common case (room now) must cost what
/// `try_send` does; only the waiting is out of line.
#[inline]
pub fn send_deadline(
    raw: &RawSender<u64>,
    payload: &Payload,
    msg: &[u8],
    deadline: Option<Deadline>,
    spin: Duration,
    reap: &dyn Fn(),
    stamp: u64,
) -> Result<(), ByteSendError> {
    too_large(msg.len(), payload)?;
    let claim = match raw.try_claim() {
        Ok(c) => c,
        Err(TrySendError::Full(())) => raw
            .claim_deadline(deadline, spin, reap)
            .map_err(from_timeout)?,
        Err(TrySendError::Disconnected(())) if raw.waits_for_receivers() => raw
            .claim_deadline(deadline, spin, reap)
            .map_err(from_timeout)?,
        Err(e) => return Err(from_try(e)),
    };
    fill_and_commit(raw, payload, claim, msg, stamp);
    Ok(())
}

/// Claims a slot for a loan of `len` bytes, to be committed with `stamp`:
/// without waiting if `wait` is `None`, else waiting for room until its
/// deadline (`None`: forever).
#[inline]
pub fn loan<'a>(
    raw: &'a RawSender<u64>,
    payload: &'a Payload,
    len: usize,
    wait: Option<Wait<'_>>,
    stamp: u64,
) -> Result<ByteLoan<'a>, ByteSendError> {
    too_large(len, payload)?;
    let claim = match (raw.try_claim(), wait) {
        (Ok(c), _) => c,
        (Err(TrySendError::Full(())), Some((deadline, spin, reap))) => raw
            .claim_deadline(deadline, spin, reap)
            .map_err(from_timeout)?,
        (Err(TrySendError::Disconnected(())), Some((deadline, spin, reap)))
            if raw.waits_for_receivers() =>
        {
            raw.claim_deadline(deadline, spin, reap)
                .map_err(from_timeout)?
        }
        (Err(e), _) => return Err(from_try(e)),
    };
    Ok(ByteLoan {
        raw,
        payload,
        claim: Some(claim),
        len,
        stamp,
    })
}

/// Space for one byte message inside the queue, written in place.
///
/// Derefs to a `&mut [u8]` of the length asked for (its initial contents are
/// whatever the slot held before: overwrite what you send).
/// [`commit`](Self::commit) publishes it; dropping the loan without
/// committing gives the space back and sends nothing.
pub struct ByteLoan<'a> {
    raw: &'a RawSender<u64>,
    payload: &'a Payload,
    claim: Option<SlotClaim>,
    len: usize,
    /// The session stamp, fixed when the slot was claimed.
    stamp: u64,
}

impl fmt::Debug for ByteLoan<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteLoan")
            .field("len", &self.len)
            .field("max", &self.payload.max())
            .finish()
    }
}

impl ByteLoan<'_> {
    /// The largest length this loan can be resized to: the queue's maximum
    /// message size.
    pub fn max_len(&self) -> usize {
        self.payload.max()
    }

    /// Changes the message's length (for example after encoding into the
    /// whole loan). Bytes beyond the old length are not cleared.
    ///
    /// # Errors
    /// `TooLarge` beyond [`max_len`](Self::max_len); the loan is unchanged.
    pub fn set_len(&mut self, len: usize) -> Result<(), ByteSendError> {
        too_large(len, self.payload)?;
        self.len = len;
        Ok(())
    }

    /// The whole slot, [`max_len`](Self::max_len) bytes, to write before
    /// choosing the length with [`set_len`](Self::set_len).
    #[inline]
    pub fn full_slot(&mut self) -> &mut [u8] {
        // A loan inherited through fork is stopped in the child.
        self.raw.check_here();
        let claim = self.claim.expect("a live loan holds its claim");
        // SAFETY: the claim makes us the slot's producer until commit or
        // drop, and `&mut self` keeps this the only view.
        unsafe { self.payload.slice_mut(claim.index) }
    }

    /// Publishes the message: the receivers can now take it.
    #[inline]
    pub fn commit(mut self) {
        let claim = self.claim.take().expect("a live loan holds its claim");
        self.raw.write(&claim, session::word(self.len, self.stamp));
        self.raw.commit(claim);
    }
}

impl Deref for ByteLoan<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // A loan inherited through fork is stopped in the child.
        self.raw.check_here();
        let claim = self.claim.expect("a live loan holds its claim");
        // SAFETY: as in `full_slot`; `len <= max` (checked when set).
        let all = unsafe { self.payload.slice_mut(claim.index) };
        &all[..self.len]
    }
}

impl DerefMut for ByteLoan<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.full_slot()[..len]
    }
}

impl Drop for ByteLoan<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.raw.abandon(claim);
        }
    }
}

/// Reads the length of a claimed message and checks it. A length beyond
/// the maximum can only come from a scribbled segment: the slot is released
/// (the message is dropped) and the caller gets `Corrupted`.
#[inline]
fn checked_len(
    raw: &RawReceiver<u64>,
    payload: &Payload,
    claim: SlotClaim,
) -> Result<usize, TryRecvError> {
    let len = session::len_of(raw.read(&claim));
    if len > payload.max() as u64 {
        raw.release(claim);
        return Err(TryRecvError::Corrupted);
    }
    Ok(len as usize)
}

/// Copies the claimed message into `out` (cleared first) and releases it.
#[inline]
fn drain_into(
    raw: &RawReceiver<u64>,
    payload: &Payload,
    claim: SlotClaim,
    out: &mut Vec<u8>,
) -> Result<usize, TryRecvError> {
    let len = checked_len(raw, payload, claim)?;
    out.clear();
    // SAFETY: the claim makes us the consumer of this published message;
    // `len <= max` checked above.
    unsafe { payload.read_into(claim.index, len, out) };
    raw.release(claim);
    Ok(len)
}

/// Claims the oldest message to deliver, without waiting. With a pipe
/// end's `screen` (SPSC only; ignored on MPMC, which never has one), the
/// messages addressed to an earlier generation of this end are dropped
/// (released and counted) on the way, and the end of the peer session this
/// end talks to is reported as `Disconnected`, once, before anything from
/// a later one (which stays queued): see [`Session`].
#[inline]
pub fn claim(raw: &RawReceiver<u64>, screen: Option<&Session>) -> Result<SlotClaim, TryRecvError> {
    match screen {
        Some(s) if raw.is_spsc() => claim_screened(raw, s),
        _ => raw.try_claim(),
    }
}

fn claim_screened(raw: &RawReceiver<u64>, s: &Session) -> Result<SlotClaim, TryRecvError> {
    loop {
        let claim = match raw.try_claim() {
            Ok(c) => c,
            Err(TryRecvError::Empty) => {
                if s.peer_moved_on() {
                    s.forget();
                    return Err(TryRecvError::Disconnected);
                }
                return Err(TryRecvError::Empty);
            }
            Err(TryRecvError::Disconnected) => {
                s.forget();
                return Err(TryRecvError::Disconnected);
            }
            Err(e) => return Err(e),
        };
        match s.screen(raw.read(&claim), raw.ctrl()) {
            Verdict::Deliver => return Ok(claim),
            // Dropped unread: no payload is touched. The loop ends when the
            // queue is empty; each turn consumes one message.
            Verdict::Stale => raw.release(claim),
            Verdict::NewSession => {
                // SPSC (checked by `claim`): the message stays queued.
                raw.unclaim(claim);
                s.forget();
                return Err(TryRecvError::Disconnected);
            }
        }
    }
}

/// Receives into `out` without waiting; returns the message's length.
#[inline]
pub fn try_recv_into(
    raw: &RawReceiver<u64>,
    payload: &Payload,
    out: &mut Vec<u8>,
    screen: Option<&Session>,
) -> Result<usize, TryRecvError> {
    let claim = claim(raw, screen)?;
    drain_into(raw, payload, claim, out)
}

/// Claims a message to deliver as [`claim`] does, waiting until `deadline`
/// (`None`: forever). `Ok(None)`: timed out. A wait that finds only stale
/// messages goes on waiting. Inline: a message that is there costs what
/// `try_recv` does; only the waiting is out of line.
#[inline]
fn claim_deadline(
    raw: &RawReceiver<u64>,
    screen: Option<&Session>,
    deadline: Option<Deadline>,
    spin: Duration,
    reap: &dyn Fn(),
) -> Result<Option<SlotClaim>, TryRecvError> {
    match claim(raw, screen) {
        Err(TryRecvError::Empty) => {}
        r => return r.map(Some),
    }
    claim_waiting_slow(raw, screen, deadline, spin, reap)
}

#[cold]
#[inline(never)]
fn claim_waiting_slow(
    raw: &RawReceiver<u64>,
    screen: Option<&Session>,
    deadline: Option<Deadline>,
    spin: Duration,
    reap: &dyn Fn(),
) -> Result<Option<SlotClaim>, TryRecvError> {
    raw.wait_for(deadline, spin, reap, &mut || claim(raw, screen))
}

/// Receives into `out`, waiting until `deadline` (`None`: forever).
/// `Ok(None)`: timed out.
#[inline]
pub fn recv_into_deadline(
    raw: &RawReceiver<u64>,
    payload: &Payload,
    out: &mut Vec<u8>,
    deadline: Option<Deadline>,
    spin: Duration,
    reap: &dyn Fn(),
    screen: Option<&Session>,
) -> Result<Option<usize>, TryRecvError> {
    match claim_deadline(raw, screen, deadline, spin, reap)? {
        Some(claim) => drain_into(raw, payload, claim, out).map(Some),
        None => Ok(None),
    }
}

/// Claims the oldest message to read in place, waiting as `wait` says
/// (`None`: not at all). `Ok(None)`: timed out.
#[inline]
pub fn recv_ref<'a>(
    raw: &'a RawReceiver<u64>,
    payload: &'a Payload,
    wait: Option<Wait<'_>>,
    screen: Option<&Session>,
) -> Result<Option<ByteRef<'a>>, TryRecvError> {
    match claim_waiting(raw, wait, screen)? {
        Some(claim) => ref_of(raw, payload, claim).map(Some),
        None => Ok(None),
    }
}

/// The claim part of [`recv_ref`]: the oldest message's slot, claimed as
/// [`claim`] does (no borrow held, so a caller can retry).
#[inline]
pub fn claim_waiting(
    raw: &RawReceiver<u64>,
    wait: Option<Wait<'_>>,
    screen: Option<&Session>,
) -> Result<Option<SlotClaim>, TryRecvError> {
    match wait {
        None => claim(raw, screen).map(Some),
        Some((deadline, spin, reap)) => claim_deadline(raw, screen, deadline, spin, reap),
    }
}

/// The in-place view of a claimed message, its length checked.
#[inline]
pub fn ref_of<'a>(
    raw: &'a RawReceiver<u64>,
    payload: &'a Payload,
    claim: SlotClaim,
) -> Result<ByteRef<'a>, TryRecvError> {
    let len = checked_len(raw, payload, claim)?;
    Ok(ByteRef {
        raw,
        payload,
        claim,
        len,
    })
}

/// Waits until a message to deliver is queued (`Ok(true)`), `deadline`
/// passes (`Ok(false)`), or a receive would fail (`Disconnected` at EOF or
/// at the end of a peer session, `Closed`, `Corrupted`). Takes nothing
/// (stale messages at the head are dropped, as a receive would).
pub fn poll(
    raw: &RawReceiver<u64>,
    screen: Option<&Session>,
    deadline: Option<Deadline>,
    spin: Duration,
    reap: &dyn Fn(),
) -> Result<bool, TryRecvError> {
    match screen {
        Some(s) if raw.is_spsc() => {
            let mut look = || {
                let claim = claim_screened(raw, s)?;
                // SPSC: given back untouched, the head of the queue again.
                raw.unclaim(claim);
                Ok(())
            };
            match look() {
                Err(TryRecvError::Empty) => {}
                r => return r.map(|()| true),
            }
            raw.wait_for(deadline, spin, reap, &mut look)
                .map(|r| r.is_some())
        }
        _ => raw.poll_deadline(deadline, spin, reap),
    }
}

/// What an adopter does with each kept message: `(position, bytes)`;
/// `Ok`: release it, `Err`: keep it and stop.
pub type Adopt<'f, E> = dyn FnMut(u64, &[u8]) -> Result<(), E> + 'f;

/// Hands the messages kept for an adopter holding the intent records `i`
/// with `held(i)` (see [`MpmcRing::kept_claims`]) to `f`, oldest first, as
/// `(position, bytes)`, releasing each after `f` returns `Ok` and waking
/// producers. The first `Err` stops the handing: that message and the
/// ones after it stay kept. Returns how many were handed and released.
///
/// Each message is checked again just before it is read: its slot must
/// still hold exactly the claimed, published stamp (Acquire, ordering the
/// producer's writes before our reads), and its length must be within the
/// queue's maximum. A length beyond it can only come from a scribbled
/// segment: that message is released and counted lost, as a receive does.
pub fn adopt_kept<E>(
    ring: &MpmcRing<u64>,
    payload: &Payload,
    ctrl: &QueueControl,
    intents: &[Intent],
    live: &dyn Fn(usize) -> bool,
    held: &dyn Fn(usize) -> bool,
    f: &mut Adopt<'_, E>,
) -> Result<usize, E> {
    let mut kept = Vec::new();
    ring.kept_claims(intents, live, held, &mut kept);
    let mut handed = 0;
    for k in kept {
        if !ring.kept_holds(k.pos, k.index) {
            continue;
        }
        let len = session::len_of(ring.read(k.index));
        if len > payload.max() as u64 {
            if ring.release_kept(k.pos, k.index) {
                // Relaxed: a statistic.
                ctrl.peers.lost.fetch_add(1, Ordering::Relaxed);
                ctrl.not_full.wake_all();
            }
            continue;
        }
        // SAFETY: the message at `k` is ours to read: its consumer is dead,
        // every record that keeps it is held by the caller (no other
        // adopter reads or releases it), no repairer releases a kept
        // message, and its stamp (acquired just above) says it is published
        // and unreleased; `len <= max` checked above.
        let bytes = unsafe { payload.slice(k.index, len as usize) };
        f(k.pos, bytes)?;
        if ring.release_kept(k.pos, k.index) {
            handed += 1;
            ctrl.not_full.wake_all();
        }
    }
    Ok(handed)
}

/// A received byte message read in place, inside the queue. Derefs to
/// `&[u8]`; the slot goes back to the senders when this is dropped.
pub struct ByteRef<'a> {
    raw: &'a RawReceiver<u64>,
    payload: &'a Payload,
    claim: SlotClaim,
    len: usize,
}

impl fmt::Debug for ByteRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteRef").field("len", &self.len).finish()
    }
}

impl ByteRef<'_> {
    /// The position the message holds in the queue: unique over the
    /// queue's lifetime (this segment's [`instance`](crate::ByteQueue::instance))
    /// and increasing in the order senders claimed their messages (not
    /// consecutive: MPMC positions skip a few values at each lap). With
    /// the instance, a message id that survives restarts, such as the
    /// one [`ByteQueue::adopt_kept`](crate::ByteQueue::adopt_kept) hands
    /// out for a kept message.
    #[inline]
    pub fn position(&self) -> u64 {
        self.claim.pos
    }
}

impl Deref for ByteRef<'_> {
    type Target = [u8];
    #[inline]
    fn deref(&self) -> &[u8] {
        // An in-place read inherited through fork is stopped in the child.
        self.raw.check_here();
        // SAFETY: the claim makes us the consumer of this published message
        // until drop; `len <= max` was checked when it was claimed.
        unsafe { self.payload.slice(self.claim.index, self.len) }
    }
}

impl Drop for ByteRef<'_> {
    #[inline]
    fn drop(&mut self) {
        self.raw.release(self.claim);
    }
}
