//! The queue's control block: the part of the segment every endpoint writes.
//!
//! ```text
//! +0    head       Line<AtomicU64>   consumers' position
//! +128  tail       Line<AtomicU64>   producers' position
//! +256  not_empty  Line<WaitCell>    receivers sleep here; senders notify
//! +384  not_full   Line<WaitCell>    senders sleep here; receivers notify
//! +512  peers      Line<Peers>       live sender/receiver bitmaps, reaped count
//! ```
//! Every field is valid as all-zero bytes, so a fresh segment needs only the
//! MPMC stamps initialised.

use crate::error::Role;
use crate::loom::{AtomicU64, Ordering};
use crate::shm::line::Line;
use crate::wait::WaitCell;

/// Which endpoints are live: one bit per endpoint-table entry, per role.
/// Read on every send (receivers) and on empty receives (senders), written
/// only on attach/detach, so the line stays shared in every cache.
///
/// Bits, not counters: clearing a bit is idempotent, so a process killed
/// between any two steps of attach or detach, or two reapers racing over the
/// same dead endpoint, can never leave a count off by one.
#[repr(C)]
#[derive(Debug, Default)]
pub struct Peers {
    /// Bit `i` set: endpoint `i` is a live sender.
    pub senders: AtomicU64,
    /// Bit `i` set: endpoint `i` is a live receiver.
    pub receivers: AtomicU64,
    /// Endpoints reclaimed from dead processes.
    pub reaped: AtomicU64,
    /// Bit 0: a sender has attached at least once; bit 1: a receiver has.
    /// A queue is disconnected on one side only once that side has been
    /// seen and is gone again, so a receiver that starts first waits for
    /// its sender instead of seeing a disconnect.
    pub ever: AtomicU64,
    /// Messages lost to processes that died holding a claim: published
    /// never (a producer died mid-send) or consumed never to completion (a
    /// consumer died mid-receive). Never delivered twice, never torn.
    pub lost: AtomicU64,
}

/// The control block, `repr(C)`, hot fields each on their own 128-byte line.
#[repr(C)]
#[derive(Debug)]
pub struct QueueControl {
    /// Consumers' position (SPSC: free-running counter; MPMC: stamp).
    pub head: Line<AtomicU64>,
    /// Producers' position.
    pub tail: Line<AtomicU64>,
    /// Receivers wait here for a message.
    pub not_empty: Line<WaitCell>,
    /// Senders wait here for a free slot.
    pub not_full: Line<WaitCell>,
    /// Live endpoints.
    pub peers: Line<Peers>,
}

#[cfg(not(loom))]
const _: () = {
    use std::mem::{offset_of, size_of};
    assert!(offset_of!(QueueControl, head) == 0);
    assert!(offset_of!(QueueControl, tail) == 128);
    assert!(offset_of!(QueueControl, not_empty) == 256);
    assert!(offset_of!(QueueControl, not_full) == 384);
    assert!(offset_of!(QueueControl, peers) == 512);
    assert!(size_of::<QueueControl>() == 640);
};

impl Default for QueueControl {
    fn default() -> Self {
        Self::new()
    }
}

impl QueueControl {
    /// A zeroed control block on the heap (loom and unit tests).
    pub fn new() -> Self {
        QueueControl {
            head: Line(AtomicU64::new(0)),
            tail: Line(AtomicU64::new(0)),
            not_empty: Line(WaitCell::new()),
            not_full: Line(WaitCell::new()),
            peers: Line(Peers {
                senders: AtomicU64::new(0),
                receivers: AtomicU64::new(0),
                reaped: AtomicU64::new(0),
                ever: AtomicU64::new(0),
                lost: AtomicU64::new(0),
            }),
        }
    }

    fn mask(&self, role: Role) -> &AtomicU64 {
        match role {
            Role::Sender => &self.peers.senders,
            Role::Receiver => &self.peers.receivers,
        }
    }

    fn ever_bit(role: Role) -> u64 {
        match role {
            Role::Sender => 1,
            Role::Receiver => 2,
        }
    }

    /// Whether every endpoint of `role` that ever attached is gone (and at
    /// least one did attach).
    pub fn disconnected(&self, role: Role) -> bool {
        // Acquire (both), `ever` first: `attach` sets it only after the role
        // bit, so whoever sees it set also sees that bit, or its clearing.
        // (Read the other way round, an attach falling between the two loads
        // would look like a sender that came and went.)
        self.peers.ever.load(Ordering::Acquire) & Self::ever_bit(role) != 0
            && self.mask(role).load(Ordering::Acquire) == 0
    }

    /// Live endpoints of `role`.
    pub fn live(&self, role: Role) -> u32 {
        // Acquire: pairs with the Release in `detach`, so a receiver that
        // sees no senders also sees their last messages.
        self.mask(role).load(Ordering::Acquire).count_ones()
    }

    /// Marks endpoint `bit` (< 64) live in `role`. With `exclusive` (SPSC),
    /// fails, leaving nothing changed, if another is live.
    pub fn attach(&self, role: Role, bit: u32, exclusive: bool) -> bool {
        let b = 1u64 << (bit & 63);
        // AcqRel: Acquire takes over the role after the previous holder's
        // Release in `detach` (its index writes are visible); Release
        // publishes the bit to whoever acquires the `ever` update below.
        let prev = self.mask(role).fetch_or(b, Ordering::AcqRel);
        if exclusive && prev & !b != 0 {
            let left = self.mask(role).fetch_and(!b, Ordering::AcqRel) & !b;
            if left == 0 {
                // The holder detached while our bit was briefly set, and its
                // wake-up may have found us "live": wake the other side again
                // so that it sees the disconnect now, not a slice later.
                self.wake_other_side(role);
            }
            return false;
        }
        // Release: after the role bit, so that `disconnected`, which reads
        // `ever` first, never mistakes this attach for a departure.
        self.peers
            .ever
            .fetch_or(Self::ever_bit(role), Ordering::Release);
        // Wake whoever waits for a peer of this role (`wait_connected`):
        // no system call unless someone is announced. Strict: a full fence
        // orders the bit before the waiter count we read, whatever the
        // segment's mode (it pairs with either kind of waiter barrier).
        match role {
            Role::Sender => self.not_empty.notify_all(crate::wait::WakeMode::Strict),
            Role::Receiver => self.not_full.notify_all(crate::wait::WakeMode::Strict),
        }
        true
    }

    /// Marks endpoint `bit` gone from `role` (dropped, or reaped after its
    /// process died; idempotent) and wakes the other side so that it sees a
    /// disconnect.
    pub fn detach(&self, role: Role, bit: u32) {
        let b = 1u64 << (bit & 63);
        // `ever` again, before the bit goes: an endpoint reaped after dying
        // between the two steps of `attach` still counts as seen.
        // Release: as in `attach`.
        self.peers
            .ever
            .fetch_or(Self::ever_bit(role), Ordering::Release);
        // Release: our last publication happens-before whoever sees the
        // cleared bit with Acquire (`live`, `attach`).
        self.mask(role).fetch_and(!b, Ordering::Release);
        self.wake_other_side(role);
    }

    /// Wakes whoever waits on the endpoints of `role`.
    fn wake_other_side(&self, role: Role) {
        match role {
            Role::Sender => self.not_empty.wake_all(),
            Role::Receiver => self.not_full.wake_all(),
        }
    }
}
