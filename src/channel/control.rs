//! The queue's control block: the part of the segment every endpoint writes.
//!
//! ```text
//! +0    head       Line<AtomicU64>   consumers' position
//! +128  tail       Line<AtomicU64>   producers' position
//! +256  not_empty  Line<WaitCell>    receivers sleep here; senders notify
//! +384  not_full   Line<WaitCell>    senders sleep here; receivers notify
//! +512  peers      Line<Peers>       live sender/receiver bitmaps, the
//!                                     closed bit, counters, generations,
//!                                     holders' generations, stale count
//! ```
//! Every field is valid as all-zero bytes, so a fresh segment needs only the
//! MPMC stamps initialised.

use crate::loom::{AtomicU64, Ordering};
use crate::shm::line::Line;
use crate::types::Role;
use crate::wait::WaitCell;

/// Bit 63 of [`Peers::senders`]: the stream is closed. Entry 63 of the
/// endpoint table is never handed out, so the bit names no sender; keeping
/// it in the senders' word makes "the last sender closes" and "a sender
/// attaches" one atomic choice between them (see [`QueueControl::close`]).
pub const CLOSED: u64 = 1 << 63;

/// Bit 2 of [`Peers::ever`]: the ended stream's name was removed (or is
/// being removed) by one process.
const REMOVED: u64 = 4;

/// Endpoint-table entries a queue hands out (bit 63 is [`CLOSED`]).
pub const ENDPOINT_BITS: usize = 63;

/// Why no sender will send: see [`QueueControl::senders_gone`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gone {
    /// None attached now; one may attach again.
    Disconnected,
    /// The stream is closed, for good.
    Closed,
}

/// Why [`QueueControl::attach`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// SPSC: another endpoint of the role is live.
    Taken,
    /// A sender asked to join a closed stream.
    Closed,
}

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
    /// Senders that called `close` (see [`QueueControl::close`]).
    pub closes: AtomicU64,
    /// Closes that end the stream, fixed at creation; 0: the stream ends
    /// when a sender closes while no other sender is attached.
    pub close_after: AtomicU64,
    /// Generations: how many times a sender (`[0]`) or a receiver (`[1]`)
    /// attached. A pipe end's session number; wraps.
    pub generation: [AtomicU64; 2],
    /// The generation of the last sender (`[0]`) or receiver (`[1]`) whose
    /// attach succeeded (0: none yet): for SPSC, the one holding the role
    /// while its bit is set. Refused attaches raise `generation` but never
    /// this. Stored after the role bit and before the attach's wake-up.
    pub holder: [AtomicU64; 2],
    /// Pipes: messages addressed to an earlier generation of their
    /// receiving end, seen by a later one (dropped, or delivered anyway
    /// when asked): see `channel::session`.
    pub stale: AtomicU64,
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
    assert!(size_of::<Peers>() <= 128);
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
                closes: AtomicU64::new(0),
                close_after: AtomicU64::new(0),
                generation: [AtomicU64::new(0), AtomicU64::new(0)],
                holder: [AtomicU64::new(0), AtomicU64::new(0)],
                stale: AtomicU64::new(0),
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
            && self.mask(role).load(Ordering::Acquire) & !CLOSED == 0
    }

    /// Live endpoints of `role`.
    pub fn live(&self, role: Role) -> u32 {
        // Acquire: pairs with the Release in `detach`, so a receiver that
        // sees no senders also sees their last messages.
        (self.mask(role).load(Ordering::Acquire) & !CLOSED).count_ones()
    }

    /// For a receiver that found the ring empty: whether no sender will
    /// send (`Closed`: the stream is closed and every sender has left, so
    /// never again; `Disconnected`: none attached now, though one was), or
    /// `None` (a sender is attached, or none has attached yet). Look at the ring once more after `Some`: the Acquire
    /// loads here see every message the departed senders published.
    #[inline]
    pub fn senders_gone(&self) -> Option<Gone> {
        // Acquire (both), `ever` first: as in `disconnected`.
        let ever = self.peers.ever.load(Ordering::Acquire);
        let mask = self.peers.senders.load(Ordering::Acquire);
        if mask & !CLOSED != 0 {
            // A sender is still attached (or dead, not reaped yet): even a
            // closed stream may still get its messages — a send that saw
            // the stream open, a loan not committed yet. `Closed` waits
            // for it to leave (it is refused from now on, and a dead one
            // is reaped, its claims repaired), so that nothing accepted
            // can arrive after `Closed`.
            None
        } else if mask & CLOSED != 0 {
            Some(Gone::Closed)
        } else if ever & Self::ever_bit(Role::Sender) != 0 {
            Some(Gone::Disconnected)
        } else {
            None
        }
    }

    /// For a sender: whether the stream is closed, as a hint (Relaxed).
    #[inline(always)]
    pub fn closed_hint(&self) -> bool {
        // Relaxed: sending just before or after a close is the same race
        // as with any departure; the receiver decides with Acquire.
        self.peers.senders.load(Ordering::Relaxed) & CLOSED != 0
    }

    /// For a stream that ended (closed, drained, nobody attached): claims
    /// the one removal of its name. True for exactly one caller, ever.
    pub fn claim_removal(&self) -> bool {
        // AcqRel: one winner among every process that saw the end.
        self.peers.ever.fetch_or(REMOVED, Ordering::AcqRel) & REMOVED == 0
    }

    /// Whether the stream is closed: no sender will ever send again.
    #[inline(always)]
    pub fn closed(&self) -> bool {
        // Acquire: pairs with the Release of the closing RMW, which comes
        // after the closing sender's last publication: a receiver that
        // sees the bit and then finds the ring empty has seen every
        // message.
        self.peers.senders.load(Ordering::Acquire) & CLOSED != 0
    }

    /// This role's current generation (attaches so far).
    pub fn generation(&self, role: Role) -> u64 {
        // Acquire: pairs with the AcqRel bump in `attach`, which comes
        // before the role bit: who sees the bit sees at least its number.
        self.peers.generation[role as usize].load(Ordering::Acquire)
    }

    /// The generation of the last endpoint of `role` whose attach
    /// succeeded (0: none yet).
    pub fn holder(&self, role: Role) -> u64 {
        // Acquire: pairs with the Release store in `attach`, which comes
        // after the role bit and before the attach's wake-up: a waiter
        // woken by an attach sees the new holder.
        self.peers.holder[role as usize].load(Ordering::Acquire)
    }

    /// Counts a message addressed to an earlier generation of this queue's
    /// receiving end (a pipe's stale message).
    pub fn count_stale(&self) {
        // Relaxed: a statistic.
        self.peers.stale.fetch_add(1, Ordering::Relaxed);
    }

    /// Sets the number of closes that end the stream (at creation).
    pub fn set_close_after(&self, n: u64) {
        // Relaxed: written before the segment is published (the header's
        // Release publication orders it for every opener).
        self.peers.close_after.store(n, Ordering::Relaxed);
    }

    /// The sender holding bit `bit` is done: it leaves, and the stream
    /// closes if this was the last close it waits for. With no count set
    /// (`close_after == 0`), the stream closes when this sender is the last
    /// one attached, decided by one CAS on the senders' word: a sender
    /// attaching at the same moment either comes first (then this one is
    /// not the last) or finds [`CLOSED`] and is refused. With a count, the
    /// close that reaches it sets [`CLOSED`]. Returns whether the stream is
    /// now closed. Wakes both sides either way.
    pub fn close(&self, bit: u32) -> bool {
        let b = 1u64 << (bit % ENDPOINT_BITS as u32);
        // Release: as in `detach`.
        self.peers
            .ever
            .fetch_or(Self::ever_bit(Role::Sender), Ordering::Release);
        // AcqRel: the count orders closes among themselves; Release makes
        // our messages visible with it.
        let closes = self.peers.closes.fetch_add(1, Ordering::AcqRel) + 1;
        // Relaxed: fixed at creation, published with the segment.
        let after = self.peers.close_after.load(Ordering::Relaxed);
        let mut cur = self.peers.senders.load(Ordering::Relaxed);
        let closed = loop {
            let last = if after == 0 {
                cur & !CLOSED & !b == 0
            } else {
                closes >= after
            };
            let next = if last { (cur & !b) | CLOSED } else { cur & !b };
            // AcqRel: Release publishes our last messages to whoever sees
            // the bit gone or CLOSED set (Acquire in `closed`/`live`);
            // Acquire orders us after other senders' closes. Relaxed on
            // failure: we retry with the fresh word.
            match self.peers.senders.compare_exchange_weak(
                cur,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => break next & CLOSED != 0,
                Err(now) => cur = now,
            }
        };
        self.not_empty.wake_all();
        self.not_full.wake_all();
        closed
    }

    /// Closes the stream outright (not as one of its senders).
    pub fn close_stream(&self) {
        // AcqRel: as in `close`.
        self.peers.senders.fetch_or(CLOSED, Ordering::AcqRel);
        self.not_empty.wake_all();
        self.not_full.wake_all();
    }

    /// Marks endpoint `bit` (< 63) live in `role` and returns the role's
    /// new generation. With `exclusive` (SPSC), refuses, leaving nothing
    /// but the generation changed, if another is live; a sender is refused
    /// once the stream is closed.
    pub fn attach(&self, role: Role, bit: u32, exclusive: bool) -> Result<u64, Refused> {
        let b = 1u64 << (bit % ENDPOINT_BITS as u32);
        // AcqRel, before the bit: whoever sees the bit (Acquire) sees this
        // number or a later one. An attach that loses the race below leaves
        // the number raised:
        // generations only ever order sessions, and a live session accepts
        // what is addressed to a later one.
        // Refuse what is refused anyway before taking a number: a process
        // that retries a taken end in a loop must not run the numbers
        // (16-bit session tags) round. Only attachers racing for a free
        // role take numbers they may not use.
        // Acquire: a closer's Release, as in the CAS below (which decides:
        // this look only spares numbers).
        let seen = self.mask(role).load(Ordering::Acquire);
        if role == Role::Sender && seen & CLOSED != 0 {
            return Err(Refused::Closed);
        }
        if exclusive && seen & !CLOSED != 0 {
            return Err(Refused::Taken);
        }
        // Wrapping: a scribbled generation must not panic (fetch_add wraps).
        let generation = self.peers.generation[role as usize]
            .fetch_add(1, Ordering::AcqRel)
            .wrapping_add(1);
        // One CAS decides: refused (closed, or SPSC and taken) with nothing
        // set, or attached. A bit set and then undone would be seen, for a
        // moment, by a closing sender (then not the last: the stream would
        // never end) or by an ended stream's last receiver (then the name
        // would never be removed).
        let mut cur = self.mask(role).load(Ordering::Relaxed);
        loop {
            if role == Role::Sender && cur & CLOSED != 0 {
                return Err(Refused::Closed);
            }
            if exclusive && cur & !CLOSED != 0 {
                return Err(Refused::Taken);
            }
            // AcqRel: Acquire takes over the role after the previous
            // holder's Release in `detach` (its index writes are visible)
            // and sees a closer's Release; Release publishes the bit to
            // whoever acquires the `ever` update below. Acquire on
            // failure: the fresh word is judged as above.
            match self.mask(role).compare_exchange_weak(
                cur,
                cur | b,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => cur = now,
            }
        }
        // Release: after the role bit and before the wake-up below, so that
        // a waiter the wake-up finds reads this holder (Acquire in
        // `holder`). Of two successful attaches of an SPSC role, the later
        // one's store is also later in the word's order: the earlier
        // holder's store comes before its detach (Release), which our CAS
        // above acquired.
        self.peers.holder[role as usize].store(generation, Ordering::Release);
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
        Ok(generation)
    }

    /// Marks endpoint `bit` gone from `role` (dropped, or reaped after its
    /// process died; idempotent) and wakes the other side so that it sees a
    /// disconnect.
    pub fn detach(&self, role: Role, bit: u32) {
        let b = 1u64 << (bit % ENDPOINT_BITS as u32);
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
