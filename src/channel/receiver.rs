//! The public [`Receiver<T>`]: the receiving end of a
//! [`Queue`](crate::Queue), attached in one process, with its iterators
//! [`Iter`] and [`TryIter`]. (Its in-place reads are in `loan.rs`.)

use super::mapped::{snapshot_accessors, MappedQueue};
use super::raw::{RawReceiver, ReapGate};
use crate::error::{RecvError, RecvTimeoutError, TryRecvError};
use crate::process;
use crate::shm::endpoints::EndpointInfo;
use crate::types::Role;
use crate::wait::Deadline;
use bytemuck::Pod;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// The receiving end of a [`Queue`](crate::Queue), attached in one process.
///
/// `Send` but not `Sync`, like [`Sender`](crate::Sender).
///
/// # Panics
/// In a process other than the one that attached it, as [`Sender`](crate::Sender).
pub struct Receiver<T: Pod> {
    pub(super) raw: RawReceiver<T>,
    pub(super) mapped: Arc<MappedQueue<T>>,
    pub(super) endpoint: EndpointInfo,
    pub(super) generation: u64,
    /// `recv` waits through `Disconnected` (see `set_wait_for_senders`).
    pub(super) wait_for_senders: bool,
    pub(super) spin: Duration,
    /// Rate limit of this handle's liveness checks of its peers.
    pub(super) gate: ReapGate,
}

impl<T: Pod> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

pub(super) fn recv_err(e: TryRecvError) -> RecvError {
    match e {
        TryRecvError::Corrupted => RecvError::Corrupted,
        TryRecvError::Empty | TryRecvError::Disconnected => RecvError::Disconnected,
        TryRecvError::Closed => RecvError::Closed,
    }
}

pub(super) fn recv_timeout_err(e: TryRecvError) -> RecvTimeoutError {
    match e {
        TryRecvError::Corrupted => RecvTimeoutError::Corrupted,
        TryRecvError::Empty => RecvTimeoutError::Timeout,
        TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
        TryRecvError::Closed => RecvTimeoutError::Closed,
    }
}

impl<T: Pod> Receiver<T> {
    /// The check a blocked or timed call makes (senders: the side it
    /// waits for).
    pub(super) fn reaper(&self) -> impl Fn() + '_ {
        || self.mapped.reap_if_blocked(&self.gate, Role::Sender)
    }

    /// Called when a non-blocking receive found the queue empty: see
    /// `MappedQueue::reap_if_idle` (this side waits for senders).
    #[inline(always)]
    pub(super) fn idle_reaped(&self) -> bool {
        self.mapped.reap_if_idle(&self.gate, Role::Sender)
    }

    /// Receives without waiting. A receiver that only polls still learns of
    /// senders that died: every liveness slice, an `Empty` poll checks them.
    ///
    /// # Errors
    /// `Empty`; `Disconnected`: empty, and no sender attached now though
    /// one was (senders dropped, or their processes died) — undone when a
    /// sender attaches; `Closed`: empty and the stream ended, for good;
    /// `Corrupted`.
    #[inline(always)]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.raw.try_recv() {
            Err(TryRecvError::Empty) if self.idle_reaped() => self.raw.try_recv(),
            r => r,
        }
    }

    /// Receives, waiting while the queue is empty.
    ///
    /// # Errors
    /// - `Disconnected` once the queue is drained and no sender is attached
    ///   (every sender dropped its end, or its process died: found within a
    ///   liveness slice). Not the end: a sender that attaches later undoes
    ///   it, and the next `recv` waits again. Before any sender attached, a
    ///   receiver waits instead. With
    ///   [`set_wait_for_senders(true)`](Self::set_wait_for_senders) it is
    ///   never returned: `recv` sleeps until a sender comes.
    /// - `Closed` once the queue is drained and the stream has ended
    ///   ([`Sender::close`](crate::Sender::close), [`Queue::close`](crate::Queue::close)): permanent.
    /// - `Corrupted`.
    #[inline(always)]
    pub fn recv(&self) -> Result<T, RecvError> {
        match self.raw.try_recv() {
            Ok(v) => Ok(v),
            Err(TryRecvError::Empty) => self.recv_slow(),
            Err(TryRecvError::Disconnected) if self.wait_for_senders => self.recv_slow(),
            Err(TryRecvError::Disconnected) => Err(RecvError::Disconnected),
            Err(TryRecvError::Closed) => Err(RecvError::Closed),
            Err(TryRecvError::Corrupted) => Err(RecvError::Corrupted),
        }
    }

    #[cold]
    #[inline(never)]
    fn recv_slow(&self) -> Result<T, RecvError> {
        loop {
            match self.raw.recv_deadline(None, self.spin, &self.reaper()) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => return Err(RecvError::Disconnected),
                Err(TryRecvError::Disconnected) if self.wait_for_senders => {
                    self.raw.wait_for_sender(None, &self.reaper());
                }
                Err(e) => return Err(recv_err(e)),
            }
        }
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected` (returned at once, not after the timeout:
    /// see [`recv`](Self::recv) for when, and how it is undone), `Closed`,
    /// `Corrupted`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(Deadline::after(timeout))
    }

    /// Receives, waiting until `deadline`.
    ///
    /// # Errors
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, deadline: Deadline) -> Result<T, RecvTimeoutError> {
        loop {
            match self
                .raw
                .recv_deadline(Some(deadline), self.spin, &self.reaper())
            {
                Ok(Some(v)) => return Ok(v),
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

    /// Receives up to `out.len()` messages now, releasing their slots at
    /// once. Returns how many (at least one).
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupted`.
    pub fn try_recv_slice(&self, out: &mut [T]) -> Result<usize, TryRecvError> {
        match self.raw.try_recv_slice(out) {
            Err(TryRecvError::Empty) if self.idle_reaped() => self.raw.try_recv_slice(out),
            r => r,
        }
    }

    /// Receives at least one and up to `out.len()` messages, waiting while
    /// the queue is empty. Returns how many (0 only if `out` is empty).
    ///
    /// # Errors
    /// `Disconnected`, `Corrupted`.
    pub fn recv_slice(&self, out: &mut [T]) -> Result<usize, RecvError> {
        self.raw
            .recv_slice_deadline(out, None, self.spin, &self.reaper())
            .map_err(recv_err)
    }

    /// As [`recv_slice`](Self::recv_slice), waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupted`.
    pub fn recv_slice_timeout(
        &self,
        out: &mut [T],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        match self.raw.recv_slice_deadline(
            out,
            Some(Deadline::after(timeout)),
            self.spin,
            &self.reaper(),
        ) {
            Ok(0) if !out.is_empty() => Err(RecvTimeoutError::Timeout),
            Ok(n) => Ok(n),
            Err(e) => Err(recv_timeout_err(e)),
        }
    }

    /// A blocking iterator that ends when [`recv`](Self::recv) returns an
    /// error: the queue drained at the end of the stream (`Closed`), or
    /// with no sender attached (`Disconnected`, unless this receiver
    /// [waits for senders](Self::set_wait_for_senders)), or corrupted.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the messages queued now; it never waits.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// How long a blocked call spins before sleeping (default 20 µs; zero:
    /// sleep at once). On an MPMC queue, a call that spins at all spins up
    /// to 250 µs more while it sees a peer in the middle of a message
    /// (docs/design.md, "Blocking").
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    snapshot_accessors!(mapped);

    /// Whether a sender is attached anywhere (a snapshot: one whose
    /// process died counts until reaped).
    pub fn is_connected(&self) -> bool {
        self.mapped.ctrl().live(Role::Sender) > 0
    }

    /// This receiver's generation: how many receivers had attached to the
    /// queue, this one included, when it attached.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the stream is closed (a snapshot; messages may still be
    /// queued: `recv` returns `Closed` once they are taken).
    pub fn is_closed(&self) -> bool {
        self.mapped.ctrl().closed()
    }

    /// With `true`, the blocking and timed receives (`recv`, `recv_timeout`,
    /// `recv_deadline`, `recv_ref`, `recv_ref_timeout`, `iter`) wait
    /// through `Disconnected`: while no
    /// sender is attached they sleep until one attaches (or the deadline),
    /// and return only a message, `Closed` (the end of the stream),
    /// `Timeout` or `Corrupted`. For a consumer of producers that come and
    /// go (started separately, restarted): it runs until the stream is
    /// closed. `try_recv` still reports `Disconnected`. Default `false`.
    pub fn set_wait_for_senders(&mut self, wait: bool) {
        self.wait_for_senders = wait;
    }

    /// Waits until a sender is attached, in any process, or a message is
    /// queued (a sender that came, sent and left already), or the stream is
    /// closed, or `timeout` passes (`None`: no limit): true unless the
    /// timeout passed. As
    /// [`Sender::wait_connected`](crate::Sender::wait_connected); a receiver started before its producers
    /// waits here instead of polling for `Disconnected` to stop.
    pub fn wait_connected(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(Deadline::after);
        self.mapped.reap(Role::Sender);
        self.raw.wait_for_sender(deadline, &self.reaper())
    }
}

impl<T: Pod> Drop for Receiver<T> {
    fn drop(&mut self) {
        // See `Sender::drop`.
        if process::current_pid() == self.endpoint.owner.pid {
            // See `Sender::drop`.
            self.raw.settle();
            self.mapped.detach(Role::Receiver, &self.endpoint);
        }
    }
}

/// Blocking iterator over a [`Receiver`]; see [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T: Pod> {
    rx: &'a Receiver<T>,
}

impl<T: Pod> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator over a [`Receiver`]; see [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T: Pod> {
    rx: &'a Receiver<T>,
}

impl<T: Pod> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<'a, T: Pod> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}
