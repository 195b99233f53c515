//! The public [`Sender<T>`]: the sending end of a [`Queue`](crate::Queue),
//! attached in one process. (Its loans are in `loan.rs`.)

use super::mapped::{snapshot_accessors, MappedQueue};
use super::raw::{RawSender, ReapGate};
use crate::error::{SendError, SendTimeoutError, TrySendError};
use crate::process;
use crate::shm::endpoints::EndpointInfo;
use crate::types::Role;
use crate::wait::Deadline;
use bytemuck::Pod;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The sending end of a [`Queue`](crate::Queue), attached in one process.
///
/// `Send` but not `Sync`: an SPSC producer keeps its indices locally. For
/// many producing threads, attach one sender per thread (MPMC).
///
/// # Panics
/// Every call that sends, claims or receives panics in a process other than
/// the one that attached it (a handle inherited through `fork`): its ring
/// indices, SPSC exclusivity and MPMC intent record are the parent's, and
/// sharing them would lose or duplicate messages silently. (Snapshots such
/// as `len` and `is_connected` still answer.) Dropping it there does
/// nothing. Attach a sender in the child from the inherited [`Queue`](crate::Queue)
/// instead.
pub struct Sender<T: Pod> {
    pub(super) raw: RawSender<T>,
    pub(super) mapped: Arc<MappedQueue<T>>,
    pub(super) endpoint: EndpointInfo,
    pub(super) generation: u64,
    /// Closed: the endpoint is gone already (drop does nothing).
    pub(super) detached: bool,
    pub(super) spin: Duration,
    /// Rate limit of this handle's liveness checks of its peers.
    pub(super) gate: ReapGate,
}

impl<T: Pod> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl<T: Pod> Sender<T> {
    /// The check a blocked or timed call makes (receivers: the side it
    /// waits for).
    pub(super) fn reaper(&self) -> impl Fn() + '_ {
        || self.mapped.reap_if_blocked(&self.gate, Role::Receiver)
    }

    /// Called when a non-blocking send found the queue full: see
    /// `MappedQueue::reap_if_idle` (this side waits for receivers).
    #[inline(always)]
    pub(super) fn idle_reaped(&self) -> bool {
        self.mapped.reap_if_idle(&self.gate, Role::Receiver)
    }

    /// Sends without waiting. A sender that only polls still learns of
    /// receivers that died: every liveness slice, a `Full` poll checks them.
    ///
    /// # Errors
    /// `Full(value)`, `Disconnected(value)` (no receiver left, including
    /// receivers whose processes died), `Corrupted(value)`.
    #[inline(always)]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.raw.try_send(value) {
            Err(TrySendError::Full(v)) if self.idle_reaped() => self.raw.try_send(v),
            r => r,
        }
    }

    /// Sends, waiting while the queue is full.
    ///
    /// # Errors
    /// `Disconnected(value)` once no receiver is attached though one was
    /// (including receivers whose processes died; a receiver attaching
    /// later undoes it), `Closed(value)` once the stream has ended,
    /// `Corrupted(value)`.
    #[inline(always)]
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.raw.try_send(value) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(v)) => self.send_slow(v),
            Err(TrySendError::Disconnected(v)) if self.raw.waits_for_receivers() => {
                self.send_slow(v)
            }
            Err(TrySendError::Disconnected(v)) => Err(SendError::Disconnected(v)),
            Err(TrySendError::Closed(v)) => Err(SendError::Closed(v)),
            Err(TrySendError::Corrupted(v)) => Err(SendError::Corrupted(v)),
        }
    }

    #[cold]
    #[inline(never)]
    fn send_slow(&self, value: T) -> Result<(), SendError<T>> {
        self.raw
            .send_deadline(value, None, self.spin, &self.reaper())
            .map_err(|e| match e {
                SendTimeoutError::Disconnected(v) | SendTimeoutError::Timeout(v) => {
                    SendError::Disconnected(v)
                }
                SendTimeoutError::Closed(v) => SendError::Closed(v),
                SendTimeoutError::Corrupted(v) => SendError::Corrupted(v),
            })
    }

    /// Sends, waiting at most `timeout` while the queue is full.
    ///
    /// # Errors
    /// `Timeout(value)`, `Disconnected(value)`, `Corrupted(value)`.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(value, Deadline::after(timeout))
    }

    /// Sends, waiting until `deadline` while the queue is full.
    ///
    /// # Errors
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&self, value: T, deadline: Deadline) -> Result<(), SendTimeoutError<T>> {
        self.raw
            .send_deadline(value, Some(deadline), self.spin, &self.reaper())
    }

    /// Sends as many of `values` as fit now, publishing them at once.
    /// Returns how many (at least one).
    ///
    /// # Errors
    /// `Full(())` if none fit, `Disconnected(())`, `Corrupted(())`.
    pub fn try_send_slice(&self, values: &[T]) -> Result<usize, TrySendError<()>> {
        match self.raw.try_send_slice(values) {
            Err(TrySendError::Full(())) if self.idle_reaped() => self.raw.try_send_slice(values),
            r => r,
        }
    }

    /// Sends all of `values`, in order, waiting for room as needed and
    /// publishing in batches.
    ///
    /// # Errors
    /// `Disconnected(n)` or `Corrupted(n)`, where `n` were sent.
    pub fn send_slice(&self, values: &[T]) -> Result<(), SendError<usize>> {
        self.raw
            .send_slice_deadline(values, None, self.spin, &self.reaper())
            .map_err(|e| match e {
                SendTimeoutError::Disconnected(n) | SendTimeoutError::Timeout(n) => {
                    SendError::Disconnected(n)
                }
                SendTimeoutError::Closed(n) => SendError::Closed(n),
                SendTimeoutError::Corrupted(n) => SendError::Corrupted(n),
            })
    }

    /// How long a blocked call spins before sleeping (default 20 µs; zero:
    /// sleep at once). On an MPMC queue, a call that spins at all spins up
    /// to 250 µs more while it sees a peer in the middle of a message
    /// (docs/design.md, "Blocking").
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    snapshot_accessors!(mapped);

    /// Whether a receiver is attached anywhere (a snapshot: one whose
    /// process died counts until reaped).
    pub fn is_connected(&self) -> bool {
        self.mapped.ctrl().live(Role::Receiver) > 0
    }

    /// Waits until a receiver is attached, in any process, or the stream is
    /// closed (nothing more to send), or `timeout` passes (`None`: no
    /// limit): true unless the timeout passed. Sleeps on the queue's
    /// futex (an attaching receiver wakes it), and reclaims receivers of
    /// dead processes first and every liveness slice, so a dead one does
    /// not count. For programs started in any order: a producer can wait
    /// for its consumer before it starts sending.
    pub fn wait_connected(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(Deadline::after);
        self.mapped.reap(Role::Receiver);
        self.raw.wait_for_receiver(deadline, &self.reaper())
    }
}

impl<T: Pod> Sender<T> {
    /// Ends this sender's part of the stream: it will send no more. The
    /// stream closes, for good, when the last sender closes (no other
    /// sender attached at that moment), or, if the queue was built with
    /// [`close_after(n)`](crate::QueueBuilder::close_after), at the `n`-th close.
    /// A sender attaching later is refused (`SegmentError::Closed`), and
    /// other senders still attached (beyond the `n` of `close_after`) get
    /// `Closed` from their next send. Receivers take what is queued and get
    /// `Closed` once every sender has left, so that nothing a send accepted
    /// arrives after it. Senders of dead processes are reclaimed first:
    /// they neither count as attached nor delay the end.
    ///
    /// Dropping a sender (or its process dying) is not closing: receivers
    /// see `Disconnected`, which a sender attaching later undoes.
    ///
    /// Returns whether the stream is now closed.
    pub fn close(mut self) -> bool {
        // Inherited through fork: not this process's endpoint to close
        // (panics, as every other call does; see the type's docs).
        self.raw.check_here();
        self.raw.settle();
        // Senders of dead processes are not attached: reclaim them first,
        // or a close by the last live sender would not be the last.
        self.mapped.reap(Role::Sender);
        let closed = self.mapped.ctrl().close(self.endpoint.index as u32);
        self.mapped.table().release(&self.endpoint);
        self.detached = true;
        self.mapped.remove_if_ended();
        closed
    }

    /// With `true`, the blocking and timed sends (`send`, `send_timeout`,
    /// `send_deadline`, `send_slice`, `loan`, `loan_timeout`) wait through
    /// `Disconnected`: while no receiver is attached (every one dropped or
    /// died) they sleep until one attaches (or the deadline: `Timeout`),
    /// then send. For a producer of consumers that come and go. `try_send`
    /// still reports `Disconnected`. Default `false`.
    pub fn set_wait_for_receivers(&mut self, wait: bool) {
        self.raw.set_wait_for_receivers(wait);
    }

    /// This sender's generation: how many senders had attached to the
    /// queue, this one included, when it attached. Sessions of a restarted
    /// producer are told apart by it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the stream is closed (a snapshot).
    pub fn is_closed(&self) -> bool {
        self.mapped.ctrl().closed()
    }
}

impl<T: Pod> Drop for Sender<T> {
    fn drop(&mut self) {
        // A handle inherited through fork belongs to the parent's endpoint:
        // only the process that attached it detaches it.
        if process::current_pid() == self.endpoint.owner.pid && !self.detached {
            // A leaked loan's claim is settled while the intent record is
            // still this endpoint's.
            self.raw.settle();
            self.mapped.detach(Role::Sender, &self.endpoint);
        }
    }
}
