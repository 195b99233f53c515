//! Zero-copy access to `Queue<T>` slots: [`Loan`] (write a message in place)
//! and [`Ref`] (read one in place), and the calls that hand them out
//! (`Sender::try_loan`, `loan`, `loan_timeout`; `Receiver::try_recv_ref`,
//! `recv_ref`, `recv_ref_timeout`). A loan is a producer's claim held open
//! (committed, or abandoned when dropped); a `Ref` a consumer's (released
//! when dropped): see docs/design.md, "Layers", for the words.

use super::raw::{RawReceiver, RawSender, SlotClaim};
use super::receiver::{recv_err, recv_timeout_err, Receiver};
use super::sender::Sender;
use crate::error::{
    RecvError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError, TrySendError,
};
use crate::wait::Deadline;
use bytemuck::Pod;
use std::fmt;
use std::ops::{Deref, DerefMut};
use std::time::Duration;

/// A slot of a [`Queue`](crate::Queue) lent to the sender, to build a
/// message in place.
///
/// Derefs to `T`, holding whatever the slot held before (any bit pattern is
/// a valid `T: Pod`): overwrite the fields you send.
/// [`commit`](Self::commit) publishes it; dropping the loan sends nothing
/// (SPSC: the slot stays free; MPMC: a skip record that receivers step
/// over, since later senders may already hold the slots after it).
///
/// # Examples
/// ```
/// use shmring::{Flavor, Queue};
/// let q = Queue::<[u64; 4]>::anonymous(Flavor::Mpmc, 2)?;
/// let (mut tx, mut rx) = (q.sender()?, q.receiver()?);
/// let mut loan = tx.loan()?;
/// loan[0] = 7;
/// loan.commit();
/// drop(tx.loan()?); // abandoned: nothing is sent
/// assert_eq!(rx.recv_ref()?[0], 7);
/// assert_eq!(rx.try_recv(), Err(shmring::TryRecvError::Empty));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Loan<'a, T: Pod> {
    raw: &'a RawSender<T>,
    claim: Option<SlotClaim>,
}

impl<T: Pod> fmt::Debug for Loan<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loan").field("claim", &self.claim).finish()
    }
}

impl<T: Pod> Loan<'_, T> {
    fn ptr(&self) -> *mut T {
        self.raw
            .slot_ptr(self.claim.as_ref().expect("a live loan holds its claim"))
    }

    /// Publishes the message: the receivers can now take it.
    pub fn commit(mut self) {
        let claim = self.claim.take().expect("a live loan holds its claim");
        self.raw.commit(claim);
    }
}

impl<T: Pod> Deref for Loan<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the claim makes us the slot's only producer until commit
        // or drop; the slot is aligned for T and any bytes are a valid T.
        unsafe { &*self.ptr() }
    }
}

impl<T: Pod> DerefMut for Loan<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only view.
        unsafe { &mut *self.ptr() }
    }
}

impl<T: Pod> Drop for Loan<'_, T> {
    fn drop(&mut self) {
        if let Some(claim) = self.claim.take() {
            self.raw.abandon(claim);
        }
    }
}

/// A message of a [`Queue`](crate::Queue) read in place. Derefs to `T`;
/// the slot goes back to the senders when this is dropped.
pub struct Ref<'a, T: Pod> {
    raw: &'a RawReceiver<T>,
    claim: SlotClaim,
}

impl<T: Pod> fmt::Debug for Ref<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ref").field("claim", &self.claim).finish()
    }
}

impl<T: Pod> Deref for Ref<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the claim makes us the consumer of this published message
        // until drop (no producer writes the slot meanwhile); aligned, and
        // any bytes are a valid T.
        unsafe { &*self.raw.slot_ptr(&self.claim) }
    }
}

impl<T: Pod> Drop for Ref<'_, T> {
    fn drop(&mut self) {
        self.raw.release(self.claim);
    }
}

impl<T: Pod> Sender<T> {
    fn lend(&self, claim: SlotClaim) -> Loan<'_, T> {
        Loan {
            raw: &self.raw,
            claim: Some(claim),
        }
    }

    /// Borrows the next slot to build a message in place, without waiting.
    /// `&mut self`: one loan at a time per sender.
    ///
    /// # Errors
    /// `Full(())`, `Disconnected(())`, `Corrupted(())`.
    pub fn try_loan(&mut self) -> Result<Loan<'_, T>, TrySendError<()>> {
        let claim = match self.raw.try_claim() {
            Err(TrySendError::Full(())) if self.idle_reaped() => self.raw.try_claim()?,
            r => r?,
        };
        Ok(self.lend(claim))
    }

    /// As [`try_loan`](Self::try_loan), waiting while the queue is full.
    ///
    /// # Errors
    /// `Disconnected(())`, `Corrupted(())`.
    pub fn loan(&mut self) -> Result<Loan<'_, T>, SendError<()>> {
        let claim = self
            .raw
            .claim_deadline(None, self.spin, &self.reaper())
            .map_err(|e| match e {
                SendTimeoutError::Corrupted(()) => SendError::Corrupted(()),
                SendTimeoutError::Closed(()) => SendError::Closed(()),
                _ => SendError::Disconnected(()),
            })?;
        Ok(self.lend(claim))
    }

    /// As [`loan`](Self::loan), waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout(())`, `Disconnected(())`, `Corrupted(())`.
    pub fn loan_timeout(&mut self, timeout: Duration) -> Result<Loan<'_, T>, SendTimeoutError<()>> {
        let claim =
            self.raw
                .claim_deadline(Some(Deadline::after(timeout)), self.spin, &self.reaper())?;
        Ok(self.lend(claim))
    }
}

impl<T: Pod> Receiver<T> {
    fn hold(&self, claim: SlotClaim) -> Ref<'_, T> {
        Ref {
            raw: &self.raw,
            claim,
        }
    }

    /// Takes the oldest message to read in place, without waiting.
    /// `&mut self`: one at a time per receiver.
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupted`.
    pub fn try_recv_ref(&mut self) -> Result<Ref<'_, T>, TryRecvError> {
        let claim = match self.raw.try_claim() {
            Err(TryRecvError::Empty) if self.idle_reaped() => self.raw.try_claim()?,
            r => r?,
        };
        Ok(self.hold(claim))
    }

    /// As [`try_recv_ref`](Self::try_recv_ref), waiting while empty.
    ///
    /// # Errors
    /// `Disconnected` once drained with no sender left, `Corrupted`.
    pub fn recv_ref(&mut self) -> Result<Ref<'_, T>, RecvError> {
        loop {
            match self.raw.claim_deadline(None, self.spin, &self.reaper()) {
                Ok(Some(c)) => return Ok(self.hold(c)),
                Ok(None) => return Err(RecvError::Disconnected),
                Err(TryRecvError::Disconnected) if self.wait_for_senders => {
                    self.raw.wait_for_sender(None, &self.reaper());
                }
                Err(e) => return Err(recv_err(e)),
            }
        }
    }

    /// As [`recv_ref`](Self::recv_ref), waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupted`.
    pub fn recv_ref_timeout(&mut self, timeout: Duration) -> Result<Ref<'_, T>, RecvTimeoutError> {
        let deadline = Deadline::after(timeout);
        loop {
            match self
                .raw
                .claim_deadline(Some(deadline), self.spin, &self.reaper())
            {
                Ok(Some(c)) => return Ok(self.hold(c)),
                Ok(None) => return Err(RecvTimeoutError::Timeout),
                Err(TryRecvError::Disconnected) if self.wait_for_senders => {
                    if !self.raw.wait_for_sender(Some(deadline), &self.reaper()) {
                        return Err(RecvTimeoutError::Timeout);
                    }
                }
                Err(e) => return Err(recv_timeout_err(e)),
            }
        }
    }
}
