//! The endpoint table: who is attached to a segment, for disconnect and for
//! telling a dead peer from a slow one.
//!
//! 64 entries of one `AtomicU64` each. An entry is claimed, and freed, with a
//! single compare-and-swap of the whole word, which holds the owner's full
//! identity:
//!
//! ```text
//! bit 63      live
//! bit 62      role (0 sender, 1 receiver)
//! bits 39..62 pid (23 bits: Linux pids stay below 2^22)
//! bits 0..39  start time, clock ticks after boot (masked to 39 bits)
//! ```
//!
//! A reaper frees an entry only by a CAS from the exact word it judged dead,
//! so it can never free an entry that has since been claimed again. Entry
//! `i` corresponds to bit `i` of the queue's peer bitmaps.

use crate::error::Role;
use crate::loom::{AtomicU64, Ordering};
use crate::process::{liveness, Liveness, ProcId};

/// Entries per table.
pub const ENDPOINTS: usize = 64;

const LIVE: u64 = 1 << 63;
const RECEIVER: u64 = 1 << 62;
const PID_SHIFT: u32 = 39;
const PID_MASK: u64 = (1 << 23) - 1;
const START_MASK: u64 = (1 << 39) - 1;

/// One entry's decoded word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    /// Entry index (and peer bitmap bit).
    pub index: usize,
    /// Sender or receiver.
    pub role: Role,
    /// The owner.
    pub owner: ProcId,
}

fn pack(role: Role, p: ProcId) -> u64 {
    let r = if role == Role::Receiver { RECEIVER } else { 0 };
    LIVE | r | ((p.pid as u64 & PID_MASK) << PID_SHIFT) | (p.start & START_MASK)
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
    })
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
        let word = pack(role, owner);
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
                });
            }
        }
        None
    }

    /// Frees entry `index`, if it still holds `info` (owner drop or reaper).
    pub fn release(&self, info: &EndpointInfo) -> bool {
        let Some(e) = self.entries.get(info.index) else {
            return false;
        };
        let word = pack(info.role, info.owner);
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

    /// Whether entry `i` is held by a process that is not proven dead.
    pub fn held_by_live(&self, i: usize) -> bool {
        // Acquire: as in `entries`.
        self.entries
            .get(i)
            .and_then(|e| unpack(i, e.load(Ordering::Acquire)))
            .is_some_and(|e| liveness(e.owner) == Liveness::Alive)
    }

    /// Live entries of `role` whose process is proven dead.
    pub fn dead(&self, role: Role) -> impl Iterator<Item = EndpointInfo> + 'a {
        self.entries()
            .filter(move |e| e.role == role && liveness(e.owner) == Liveness::Dead)
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
        assert!(t.release(&dead[0]));
        assert!(!t.release(&dead[0]), "a second release must fail");
        for _ in 0..ENDPOINTS - 2 {
            assert!(t.claim(Role::Sender, me).is_some());
        }
        assert!(t.claim(Role::Sender, me).is_none(), "table is full");
    }
}
