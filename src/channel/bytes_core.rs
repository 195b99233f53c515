//! Byte messages over the rings: the part shared by the segment-backed
//! [`ByteSender`](crate::ByteSender) / [`ByteReceiver`](crate::ByteReceiver)
//! and the heap-backed queue the loom models drive.
//!
//! A byte queue is a ring of `u32` lengths plus a payload area with one
//! fixed-size payload per ring slot (see [`Payload`]). Sending claims a slot,
//! copies the bytes into its payload, writes the length into the slot and
//! commits; receiving claims the oldest message, validates its length
//! against the maximum before touching the payload, copies it out and
//! releases the slot. A loan is the same claim held open across the
//! caller's writes; dropping it abandons the claim.

use super::payload::Payload;
use super::raw::{RawReceiver, RawSender, SlotClaim};
use crate::error::{ByteSendError, SendTimeoutError, TryRecvError, TrySendError};
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

/// Copies `msg` into the claimed slot and commits it.
fn fill_and_commit(raw: &RawSender<u32>, payload: &Payload, claim: SlotClaim, msg: &[u8]) {
    // SAFETY: the claim makes us the slot's producer; the length was
    // checked against the maximum by the caller.
    unsafe { payload.write(claim.index, msg) };
    raw.write(&claim, msg.len() as u32);
    raw.commit(claim);
}

/// Sends `msg` without waiting.
pub fn try_send(raw: &RawSender<u32>, payload: &Payload, msg: &[u8]) -> Result<(), ByteSendError> {
    too_large(msg.len(), payload)?;
    let claim = raw.try_claim().map_err(from_try)?;
    fill_and_commit(raw, payload, claim, msg);
    Ok(())
}

/// Sends `msg`, waiting for room until `deadline` (`None`: forever).
pub fn send_deadline(
    raw: &RawSender<u32>,
    payload: &Payload,
    msg: &[u8],
    deadline: Option<Deadline>,
    spin: Duration,
    reap: &dyn Fn(),
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
    fill_and_commit(raw, payload, claim, msg);
    Ok(())
}

/// Claims a slot for a loan of `len` bytes: without waiting if `wait` is
/// `None`, else waiting for room until its deadline (`None`: forever).
pub fn loan<'a>(
    raw: &'a RawSender<u32>,
    payload: &'a Payload,
    len: usize,
    wait: Option<Wait<'_>>,
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
    })
}

/// Space for one byte message inside the queue, written in place.
///
/// Derefs to a `&mut [u8]` of the length asked for (its initial contents are
/// whatever the slot held before: overwrite what you send).
/// [`commit`](Self::commit) publishes it; dropping the loan without
/// committing gives the space back and sends nothing.
pub struct ByteLoan<'a> {
    raw: &'a RawSender<u32>,
    payload: &'a Payload,
    claim: Option<SlotClaim>,
    len: usize,
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
    pub fn full_slot(&mut self) -> &mut [u8] {
        // A loan inherited through fork is stopped in the child.
        self.raw.check_here();
        let claim = self.claim.expect("a live loan holds its claim");
        // SAFETY: the claim makes us the slot's producer until commit or
        // drop, and `&mut self` keeps this the only view.
        unsafe { self.payload.slice_mut(claim.index) }
    }

    /// Publishes the message: the receivers can now take it.
    pub fn commit(mut self) {
        let claim = self.claim.take().expect("a live loan holds its claim");
        self.raw.write(&claim, self.len as u32);
        self.raw.commit(claim);
    }
}

impl Deref for ByteLoan<'_> {
    type Target = [u8];
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
    fn deref_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.full_slot()[..len]
    }
}

impl Drop for ByteLoan<'_> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.raw.abandon(claim);
        }
    }
}

/// Reads the length of a claimed message and checks it. A length beyond
/// the maximum can only come from a scribbled segment: the slot is released
/// (the message is dropped) and the caller gets `Corrupted`.
fn checked_len(
    raw: &RawReceiver<u32>,
    payload: &Payload,
    claim: SlotClaim,
) -> Result<usize, TryRecvError> {
    let len = raw.read(&claim) as usize;
    if len > payload.max() {
        raw.release(claim);
        return Err(TryRecvError::Corrupted);
    }
    Ok(len)
}

/// Copies the claimed message into `out` (cleared first) and releases it.
fn drain_into(
    raw: &RawReceiver<u32>,
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

/// Receives into `out` without waiting; returns the message's length.
pub fn try_recv_into(
    raw: &RawReceiver<u32>,
    payload: &Payload,
    out: &mut Vec<u8>,
) -> Result<usize, TryRecvError> {
    let claim = raw.try_take()?;
    drain_into(raw, payload, claim, out)
}

/// Receives into `out`, waiting until `deadline` (`None`: forever).
/// `Ok(None)`: timed out.
pub fn recv_into_deadline(
    raw: &RawReceiver<u32>,
    payload: &Payload,
    out: &mut Vec<u8>,
    deadline: Option<Deadline>,
    spin: Duration,
    reap: &dyn Fn(),
) -> Result<Option<usize>, TryRecvError> {
    let claim = match raw.try_take() {
        Ok(c) => c,
        Err(TryRecvError::Empty) => match raw.take_deadline(deadline, spin, reap)? {
            Some(c) => c,
            None => return Ok(None),
        },
        Err(e) => return Err(e),
    };
    drain_into(raw, payload, claim, out).map(Some)
}

/// Claims the oldest message to read in place, waiting as `wait` says
/// (`None`: not at all). `Ok(None)`: timed out.
pub fn take_ref<'a>(
    raw: &'a RawReceiver<u32>,
    payload: &'a Payload,
    wait: Option<Wait<'_>>,
) -> Result<Option<ByteRef<'a>>, TryRecvError> {
    match take_claim(raw, wait)? {
        Some(claim) => ref_of(raw, payload, claim).map(Some),
        None => Ok(None),
    }
}

/// The claim part of [`take_ref`]: the oldest message's slot, claimed
/// (no borrow held, so a caller can retry).
pub fn take_claim(
    raw: &RawReceiver<u32>,
    wait: Option<Wait<'_>>,
) -> Result<Option<SlotClaim>, TryRecvError> {
    Ok(Some(match (raw.try_take(), wait) {
        (Ok(c), _) => c,
        (Err(TryRecvError::Empty), Some((deadline, spin, reap))) => {
            match raw.take_deadline(deadline, spin, reap)? {
                Some(c) => c,
                None => return Ok(None),
            }
        }
        (Err(e), _) => return Err(e),
    }))
}

/// The in-place view of a claimed message, its length checked.
pub fn ref_of<'a>(
    raw: &'a RawReceiver<u32>,
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

/// A received byte message read in place, inside the queue. Derefs to
/// `&[u8]`; the slot goes back to the senders when this is dropped.
pub struct ByteRef<'a> {
    raw: &'a RawReceiver<u32>,
    payload: &'a Payload,
    claim: SlotClaim,
    len: usize,
}

impl fmt::Debug for ByteRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteRef").field("len", &self.len).finish()
    }
}

impl Deref for ByteRef<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // An in-place read inherited through fork is stopped in the child.
        self.raw.check_here();
        // SAFETY: the claim makes us the consumer of this published message
        // until drop; `len <= max` was checked when it was taken.
        unsafe { self.payload.slice(self.claim.index, self.len) }
    }
}

impl Drop for ByteRef<'_> {
    fn drop(&mut self) {
        self.raw.release(self.claim);
    }
}
