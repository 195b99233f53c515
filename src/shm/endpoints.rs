//! The endpoint table: who is attached to a segment, for disconnect and for
//! telling a dead peer from a slow one.
//!
//! 64 entries of one `AtomicU64` each (a queue hands out 63: the last bit of
//! its senders' word is the stream's closed flag). An entry is claimed, and freed, with a
//! single compare-and-swap of the whole word, which holds the owner's full
//! identity:
//!
//! ```text
//! bit 63      live
//! bit 62      role (0 sender, 1 receiver)
//! bits 39..62 pid (23 bits: Linux pids stay below 2^22)
//! bit 38      reaping: the owner is dead and the pid/start fields name
//!             the reaper now settling the entry
//! bits 0..38  start time, clock ticks after boot (masked to 38 bits:
//!             87 years at 100 ticks a second)
//! ```
//!
//! Entry `i` corresponds to bit `i` of the queue's peer bitmaps, and only
//! whoever holds entry `i` may touch bit `i`: its owner, or the one reaper
//! that won the entry. A reaper first claims a dead owner's entry with a
//! CAS from the exact word it judged dead to a *reaping* word naming
//! itself; only then does it clear bit `i`, repair, and free the entry. Two
//! reapers of one dead endpoint therefore never both act (the second CAS
//! fails), and none can clear the bit of an endpoint that claimed entry `i`
//! after it was freed. A reaper that dies while reaping leaves its own
//! identity in the entry, so a later reaper proves it dead and takes over.

use crate::loom::{AtomicU64, Ordering};
use crate::process::{liveness, Liveness, ProcId};
use crate::types::Role;

/// Entries per table.
pub const ENDPOINTS: usize = 64;

const LIVE: u64 = 1 << 63;
const RECEIVER: u64 = 1 << 62;
const PID_SHIFT: u32 = 39;
const PID_MASK: u64 = (1 << 23) - 1;
const REAPING: u64 = 1 << 38;
const START_MASK: u64 = (1 << 38) - 1;

/// One entry's decoded word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Entry index (and peer bitmap bit).
    pub index: usize,
    /// Sender or receiver.
    pub role: Role,
    /// The owner, or, while `reaping`, the reaper settling the entry.
    pub owner: ProcId,
    /// The owner died and a reaper (`owner`) holds the entry to settle it.
    pub reaping: bool,
}

fn pack(role: Role, p: ProcId, reaping: bool) -> u64 {
    let r = if role == Role::Receiver { RECEIVER } else { 0 };
    let reap = if reaping { REAPING } else { 0 };
    LIVE | r | reap | ((p.pid as u64 & PID_MASK) << PID_SHIFT) | (p.start & START_MASK)
}

fn word_of(info: &EndpointInfo) -> u64 {
    pack(info.role, info.owner, info.reaping)
}

fn unpack(index: usize, w: u64) -> Option<EndpointInfo> {
    if w & LIVE == 0 {
        return None;
    }
    Some(EndpointInfo {
        index,
        role: if w & RECEIVER != 0 {
            Role::Receiver
        } else {
            Role::Sender
        },
        owner: ProcId {
            pid: ((w >> PID_SHIFT) & PID_MASK) as u32,
            start: w & START_MASK,
        },
        reaping: w & REAPING != 0,
    })
}

/// An entry won by this process's reaper: see [`EndpointTable::begin_reap`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use = "a won entry must be finished or given back"]
pub struct Reaping {
    /// The entry as it holds now (reaping, naming this process).
    pub entry: EndpointInfo,
    /// The dead owner's word, to give the entry back unsettled.
    dead_word: u64,
}

/// A view of a table in shared memory.
#[derive(Clone, Copy, Debug)]
pub struct EndpointTable<'a> {
    entries: &'a [AtomicU64],
}

impl<'a> EndpointTable<'a> {
    /// Wraps `entries` (the segment's table).
    pub fn new(entries: &'a [AtomicU64]) -> Self {
        EndpointTable { entries }
    }

    /// Claims a free entry for `(role, me)`; returns what it now holds.
    pub fn claim(&self, role: Role, me: ProcId) -> Option<EndpointInfo> {
        let owner = stored_identity(me);
        let word = pack(role, owner, false);
        for (i, e) in self.entries.iter().enumerate() {
            // Relaxed: only a guess; the CAS decides.
            if e.load(Ordering::Relaxed) & LIVE == 0
                // AcqRel: Acquire orders us after the previous owner's release
                // of the entry; Release publishes our identity to reapers.
                // Relaxed on failure: we move on.
                && e.compare_exchange(0, word, Ordering::AcqRel, Ordering::Relaxed).is_ok()
            {
                return Some(EndpointInfo {
                    index: i,
                    role,
                    owner,
                    reaping: false,
                });
            }
        }
        None
    }

    /// Frees entry `index`, if it still holds `info` (its owner's drop, or
    /// the reaper that won it).
    pub fn release(&self, info: &EndpointInfo) -> bool {
        let Some(e) = self.entries.get(info.index) else {
            return false;
        };
        let word = word_of(info);
        // Release: everything the owner did happens-before the next claimer's
        // Acquire. Relaxed on failure: someone else freed or re-claimed it.
        e.compare_exchange(word, 0, Ordering::Release, Ordering::Relaxed)
            .is_ok()
    }

    /// Every live entry.
    pub fn entries(&self) -> impl Iterator<Item = EndpointInfo> + 'a {
        self.entries
            .iter()
            .enumerate()
            // Acquire: see the owner's identity as published by its claim.
            .filter_map(|(i, e)| unpack(i, e.load(Ordering::Acquire)))
    }

    /// Whether entry `i` is held by an endpoint whose process is not proven
    /// dead (an entry being reaped is not: its owner was proven dead).
    pub fn held_by_live(&self, i: usize) -> bool {
        // Acquire: as in `entries`.
        self.entries
            .get(i)
            .and_then(|e| unpack(i, e.load(Ordering::Acquire)))
            .is_some_and(|e| !e.reaping && liveness(e.owner) == Liveness::Alive)
    }

    /// Entries of `role` that need a reaper: held by a process proven dead,
    /// or being reaped by a reaper proven dead.
    pub fn dead(&self, role: Role) -> impl Iterator<Item = EndpointInfo> + 'a {
        self.entries()
            .filter(move |e| e.role == role && liveness(e.owner) == Liveness::Dead)
    }

    /// Wins entry `dead` (as listed by [`dead`](Self::dead)) for this
    /// process's reaper `me`: a CAS from the exact word judged dead to a
    /// reaping word naming `me`. `None`: another reaper won it, or it
    /// changed (freed, claimed again): leave it alone.
    pub fn begin_reap(&self, dead: &EndpointInfo, me: ProcId) -> Option<Reaping> {
        let e = self.entries.get(dead.index)?;
        let dead_word = word_of(dead);
        let entry = EndpointInfo {
            index: dead.index,
            role: dead.role,
            owner: stored_identity(me),
            reaping: true,
        };
        // AcqRel: Acquire orders our repair and bit clearing after the dead
        // owner's (or dead reaper's) last writes to the entry's state, as
        // the proof of death ordered them; Release publishes who reaps.
        // Relaxed on failure: someone else acted; we do nothing.
        e.compare_exchange(
            dead_word,
            word_of(&entry),
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .ok()?;
        // An entry taken over from a dead reaper keeps the owner's word
        // only as its role: giving it back restores a reaping word naming
        // the dead reaper, which the next reaper proves dead again.
        Some(Reaping { entry, dead_word })
    }

    /// Gives a won entry back unsettled (its dead owner's claim could not be
    /// decided yet): the next reaper finds it again.
    pub fn give_back(&self, r: Reaping) -> bool {
        let Some(e) = self.entries.get(r.entry.index) else {
            return false;
        };
        // Release: our repair's writes happen-before the next reaper's win.
        // Relaxed on failure: the entry is no longer ours (scribbled).
        e.compare_exchange(
            word_of(&r.entry),
            r.dead_word,
            Ordering::Release,
            Ordering::Relaxed,
        )
        .is_ok()
    }
}

/// The identity as stored (start time masked), for comparing with entries.
pub fn stored_identity(p: ProcId) -> ProcId {
    ProcId {
        pid: p.pid,
        start: p.start & START_MASK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_release_and_reap() {
        let raw: Vec<AtomicU64> = (0..ENDPOINTS).map(|_| AtomicU64::new(0)).collect();
        let t = EndpointTable::new(&raw);
        let me = crate::process::current();
        let a = t.claim(Role::Sender, me).unwrap();
        let b = t.claim(Role::Receiver, me).unwrap();
        assert_ne!(a.index, b.index);
        assert_eq!(a.owner, stored_identity(me));
        let all: Vec<_> = t.entries().collect();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].owner, stored_identity(me));
        assert_eq!(t.dead(Role::Sender).count(), 0);
        // A fake entry for a process that never existed is reaped.
        let ghost = ProcId {
            pid: me.pid,
            start: me.start + 7,
        };
        let g = t.claim(Role::Sender, ghost).unwrap();
        let dead: Vec<_> = t.dead(Role::Sender).collect();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0], g);
        // Two reapers listed it; only one wins it.
        let won = t.begin_reap(&dead[0], me).expect("first reaper wins");
        assert!(t.begin_reap(&dead[0], me).is_none(), "second reaper loses");
        assert!(!t.held_by_live(g.index), "an entry being reaped is dead");
        assert!(t.release(&won.entry));
        assert!(!t.release(&won.entry), "a second release must fail");
        // The entry is claimed again: the stale listing cannot win it.
        let again = t.claim(Role::Sender, me).unwrap();
        assert_eq!(again.index, g.index);
        assert!(t.begin_reap(&dead[0], me).is_none());
        assert!(t.release(&again));
        // A reaper that died while reaping is taken over.
        let g = t.claim(Role::Sender, ghost).unwrap();
        let dead_reaper = ProcId {
            pid: me.pid,
            start: me.start + 9,
        };
        let r1 = t.begin_reap(&g, dead_reaper).unwrap();
        let listed: Vec<_> = t.dead(Role::Sender).collect();
        assert_eq!(listed, vec![r1.entry], "a dead reaper's entry is listed");
        let r2 = t.begin_reap(&listed[0], me).expect("taken over");
        assert!(t.give_back(r2), "given back unsettled");
        assert_eq!(t.dead(Role::Sender).count(), 1, "and listed again");
        let r3 = t
            .begin_reap(&t.dead(Role::Sender).next().unwrap(), me)
            .unwrap();
        assert!(t.release(&r3.entry));
        for _ in 0..ENDPOINTS - 2 {
            assert!(t.claim(Role::Sender, me).is_some());
        }
        assert!(t.claim(Role::Sender, me).is_none(), "table is full");
    }
}
