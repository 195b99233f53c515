//! Pipe sessions: every message a [`Connection`](crate::Connection) sends is
//! addressed to one generation of the other end, and a later generation of
//! that end drops it.
//!
//! A byte queue's ring word is a `u64`:
//!
//! ```text
//! bits  0..32  the message length (checked against the maximum before any copy)
//! bits 32..48  `to`:   tag of the receiving end's generation it is addressed to
//! bits 48..64  `from`: tag of the sending end's generation
//! ```
//!
//! Plain byte queues write 0 for both (unaddressed) and never look at them.
//! A tag is a generation folded into `1..=65535` ([`tag`]), never 0, so
//! that an addressed message is never mistaken for an unaddressed one;
//! tags compare with wrapping ([`older`]).
//!
//! A pipe end's generation is a generation of the right → left queue, which
//! every pipe has: the left end's is that queue's receiver generation, the
//! right end's its sender generation. Both ends read the peer's from that
//! queue's control block ([`Session`] keeps it mapped).
//!
//! The rules (argued in `docs/design.md`, "Pipes: sessions"):
//!
//! - **Addressing.** A connection addresses what it sends to the peer
//!   generation it last received from (a reply goes to whoever asked, even
//!   if a newer peer has attached since). With nothing heard, to the peer's
//!   current generation counter if a peer is attached, else to the next one
//!   (counter + 1: whoever attaches next). An attacher that lost a race for
//!   a free end may have raised the counter too, which only makes the
//!   address later than the live peer's, and a live peer accepts what is
//!   addressed to a later generation.
//! - **Screening.** The receiving connection drops (never delivers) a
//!   message addressed to an older generation than its own, and counts it
//!   (per connection and in the queue's `stale` counter), unless it keeps
//!   stale messages (then they are delivered, and still counted).
//! - **Session ends.** The peer session a connection talks to is the one it
//!   heard from, or, with nothing heard, the generation it addressed. When
//!   that session is over — the next message comes from a later generation,
//!   or the queue is empty and a later generation holds the peer's end, or
//!   the peer is gone — one receive reports `Disconnected` (the message from
//!   the later session stays queued), and the connection forgets the
//!   session: it then talks to whoever is attached. `wait_connected`
//!   forgets it too when it returns true.

use super::control::QueueControl;
use crate::loom::{AtomicU64, Ordering};
use crate::types::Role;
use std::any::Any;
use std::ptr::NonNull;
use std::sync::Arc;

/// Bits of a ring word that hold the length.
pub const LEN_MASK: u64 = 0xFFFF_FFFF;

/// Tags per lap: tags are `1..=TAGS`.
const TAGS: u64 = 0xFFFF;

/// A ring word: `len` (at most [`MAX_MESSAGE`](crate::MAX_MESSAGE), which
/// fits 32 bits) and a stamp from [`Session::stamp`] (0: unaddressed).
#[inline(always)]
pub fn word(len: usize, stamp: u64) -> u64 {
    (len as u64 & LEN_MASK) | (stamp & !LEN_MASK)
}

/// The length in a ring word (not yet checked: the caller compares it with
/// the maximum before touching the payload).
#[inline(always)]
pub fn len_of(word: u64) -> u64 {
    word & LEN_MASK
}

/// The `to` tag of a ring word (0: unaddressed).
#[inline(always)]
pub fn to_of(word: u64) -> u16 {
    (word >> 32) as u16
}

/// The `from` tag of a ring word (0: unknown).
#[inline(always)]
pub fn from_of(word: u64) -> u16 {
    (word >> 48) as u16
}

/// A stamp: addressed to the generation tagged `to`, from the one tagged
/// `from`.
#[inline(always)]
pub fn stamp(to: u16, from: u16) -> u64 {
    (u64::from(to) << 32) | (u64::from(from) << 48)
}

/// A generation's tag, in `1..=65535` (never 0, which marks an unaddressed
/// message): the generation modulo 65535, plus one.
#[inline(always)]
pub fn tag(generation: u64) -> u16 {
    (generation % TAGS) as u16 + 1
}

/// Whether tag `a` names an earlier generation than tag `b`: `b` is 1 to
/// 32767 steps ahead of `a`, counting around the 65535 tags. (Correct while
/// fewer than 32768 attaches of one end separate the two.)
#[inline(always)]
pub fn older(a: u16, b: u16) -> bool {
    let ahead = (u64::from(b) + TAGS - u64::from(a)) % TAGS;
    ahead != 0 && ahead <= TAGS / 2
}

/// The latest generation not above `near` whose tag is `t`: recovers a
/// whole generation from a message's tag, given the counter of that end
/// (which a message from generation `g` can only find at `g` or later).
pub fn untag(t: u16, near: u64) -> u64 {
    let back = (u64::from(tag(near)) + TAGS - u64::from(t)) % TAGS;
    near.saturating_sub(back)
}

/// What the screen says of a message claimed at the head of the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver it.
    Deliver,
    /// Addressed to an earlier generation of this end: drop it.
    Stale,
    /// From a later session than the one this end talks to: report the
    /// end of that session first, leaving the message queued.
    NewSession,
}

/// One pipe end's session state, shared (`Arc`) by its sending and
/// receiving halves. Process-local; the peer's generations are read from
/// the right → left queue's control block.
pub struct Session {
    /// The right → left queue's control block.
    ctrl: NonNull<QueueControl>,
    /// Keeps `ctrl` mapped (the queue's handle).
    _keep: Arc<dyn Any + Send + Sync>,
    /// The peer end's role on that queue.
    peer: Role,
    /// This end's generation.
    mine: u64,
    /// Deliver messages addressed to earlier generations anyway.
    keep_stale: bool,
    /// The peer generation last heard from (0: none since the last
    /// session end).
    heard: AtomicU64,
    /// With nothing heard: the peer generation last addressed (0: none).
    asked: AtomicU64,
    /// Stale messages this end saw.
    stale: AtomicU64,
}

// SAFETY: `ctrl` points into memory kept alive by `_keep` and is used only
// through shared references to atomics.
unsafe impl Send for Session {}
// SAFETY: as above; every field is immutable or atomic.
unsafe impl Sync for Session {}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("generation", &self.mine)
            .field("peer", &self.peer)
            .field("heard", &self.heard.load(Ordering::Relaxed))
            .field("keep_stale", &self.keep_stale)
            .finish()
    }
}

// Every Relaxed access to `heard`, `asked` and `stale` below: they are this
// connection's own state, written and read by the thread using the
// connection (a `Connection` is not `Sync`); the atomics only make the
// `Arc` shared by its two halves `Send`.
impl Session {
    /// A session for the end of generation `mine` whose peer holds `peer`
    /// on the queue whose control block is `ctrl`.
    ///
    /// # Safety
    /// `ctrl` stays valid while `keep` lives.
    pub unsafe fn new(
        ctrl: NonNull<QueueControl>,
        keep: Arc<dyn Any + Send + Sync>,
        peer: Role,
        mine: u64,
        keep_stale: bool,
    ) -> Self {
        Session {
            ctrl,
            _keep: keep,
            peer,
            mine,
            keep_stale,
            heard: AtomicU64::new(0),
            asked: AtomicU64::new(0),
            stale: AtomicU64::new(0),
        }
    }

    fn ctrl(&self) -> &QueueControl {
        // SAFETY: valid while `_keep` lives (contract of `new`).
        unsafe { self.ctrl.as_ref() }
    }

    /// This end's generation.
    pub fn generation(&self) -> u64 {
        self.mine
    }

    /// Stale messages this end saw.
    pub fn stale(&self) -> u64 {
        self.stale.load(Ordering::Relaxed)
    }

    /// The peer generation this end last heard from, else the peer end's
    /// current holder (0: none has attached).
    pub fn peer_generation(&self) -> u64 {
        match self.heard.load(Ordering::Relaxed) {
            0 => self.ctrl().holder(self.peer),
            h => h,
        }
    }

    /// The session this end talks to: heard from, else addressed (0: none).
    fn talking_to(&self) -> u64 {
        match self.heard.load(Ordering::Relaxed) {
            0 => self.asked.load(Ordering::Relaxed),
            h => h,
        }
    }

    /// Forgets the peer session: what is sent next goes to whoever is
    /// attached then.
    pub fn forget(&self) {
        self.heard.store(0, Ordering::Relaxed);
        self.asked.store(0, Ordering::Relaxed);
    }

    /// The stamp of the next message: addressed as the module docs say.
    #[inline]
    pub fn stamp(&self) -> u64 {
        let to = match self.heard.load(Ordering::Relaxed) {
            0 => self.address_current(),
            h => h,
        };
        stamp(tag(to), tag(self.mine))
    }

    /// With nothing heard: the peer's generation counter if a peer is
    /// attached, else the next one; remembered as the session addressed.
    /// Not cold: a one-way pipe's writer never hears and comes here on
    /// every send (two loads of the peers line its send reads anyway).
    fn address_current(&self) -> u64 {
        let c = self.ctrl();
        // `live` first (Acquire), then the counter (Acquire): the counter is
        // raised before the bit is set, so a live bit comes with a counter
        // at least its holder's.
        let to = if c.live(self.peer) > 0 {
            c.generation(self.peer)
        } else {
            c.generation(self.peer).wrapping_add(1)
        };
        self.asked.store(to, Ordering::Relaxed);
        to
    }

    /// Screens the ring word of the message at the head of `queue` (the
    /// receiving queue): counts it if stale, and on `Deliver` records whom
    /// it came from.
    #[inline]
    pub fn screen(&self, word: u64, queue: &QueueControl) -> Verdict {
        let to = to_of(word);
        let stale = to != 0 && older(to, tag(self.mine));
        if stale && !self.keep_stale {
            self.count_stale(queue);
            return Verdict::Stale;
        }
        let from = from_of(word);
        if from != 0 {
            match self.heard.load(Ordering::Relaxed) {
                // Still the session heard from (the common case), or an
                // earlier tag than it (only a scribbled word: delivered).
                h if h != 0 => {
                    if older(tag(h), from) {
                        return Verdict::NewSession;
                    }
                }
                _ => {
                    let asked = self.asked.load(Ordering::Relaxed);
                    if asked != 0 && older(tag(asked), from) {
                        return Verdict::NewSession;
                    }
                    self.heard_from(from);
                }
            }
        }
        if stale {
            self.count_stale(queue);
        }
        Verdict::Deliver
    }

    #[cold]
    fn heard_from(&self, from: u16) {
        // Acquire (in `generation`): the sender raised its counter before
        // it sent, and we took its message with Acquire, so the counter we
        // read is at least the sender's generation.
        let g = untag(from, self.ctrl().generation(self.peer));
        self.heard.store(g.max(1), Ordering::Relaxed);
        self.asked.store(0, Ordering::Relaxed);
    }

    /// Counts a stale message, here and in `queue`'s counter.
    fn count_stale(&self, queue: &QueueControl) {
        self.stale.fetch_add(1, Ordering::Relaxed);
        queue.count_stale();
    }

    /// For a receive that found the queue empty: whether the session this
    /// end talks to is over because a later generation holds the peer's
    /// end. (A peer that is simply gone is the queue's own
    /// `Disconnected`.)
    #[inline]
    pub fn peer_moved_on(&self) -> bool {
        let talk = self.talking_to();
        talk != 0 && self.ctrl().holder(self.peer) > talk
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn tags_are_never_zero_and_wrap() {
        assert_eq!(tag(0), 1);
        assert_eq!(tag(1), 2);
        assert_eq!(tag(65534), 65535);
        assert_eq!(tag(65535), 1);
        for g in [0u64, 1, 2, 100, 65534, 65535, 65536, 1 << 40, u64::MAX] {
            assert_ne!(tag(g), 0);
        }
    }

    #[test]
    fn older_compares_around_the_lap() {
        for base in [
            0u64,
            1,
            7,
            32766,
            32767,
            32768,
            65533,
            65534,
            65535,
            1 << 33,
        ] {
            let b = tag(base);
            assert!(!older(b, b), "{base}");
            for d in [1u64, 2, 100, 32767] {
                let later = tag(base + d);
                assert!(older(b, later), "{base} + {d}");
                assert!(!older(later, b), "{base} + {d}");
            }
        }
    }

    #[test]
    fn untag_recovers_the_generation() {
        for g in [1u64, 2, 65534, 65535, 65536, 200_000] {
            for ahead in [0u64, 1, 5, 30_000] {
                assert_eq!(untag(tag(g), g + ahead), g, "{g} + {ahead}");
            }
        }
    }

    #[test]
    fn words_keep_length_and_stamp_apart() {
        let s = stamp(tag(7), tag(9));
        let w = word(1 << 30, s);
        assert_eq!(len_of(w), 1 << 30);
        assert_eq!(to_of(w), tag(7));
        assert_eq!(from_of(w), tag(9));
        assert_eq!(word(5, 0), 5);
        assert_eq!((to_of(5), from_of(5)), (0, 0));
    }
}
