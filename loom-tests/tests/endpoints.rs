//! loom models of the endpoint table's reaping protocol
//! (`EndpointTable::begin_reap`, see `src/shm/endpoints.rs`): several
//! reapers of one dead endpoint, and an endpoint that claims its entry as
//! soon as it is freed.
//!
//! The table has one entry, so the dead endpoint and the newcomer share
//! index 0 and role bit 0 of the control block's sender bitmap. A reaper
//! does what `Shared::reap` does after proving the owner dead: win the
//! entry (a CAS from the word it judged dead to one naming itself), clear
//! the role bit, free the entry. The newcomer does what `attach` does:
//! claim a free entry, then set its role bit exclusively (SPSC).
//!
//! Before `begin_reap`, a reaper cleared the bit and freed the entry
//! without winning it first: a second reaper that had listed the same dead
//! endpoint then cleared the bit of the newcomer that had claimed the freed
//! entry meanwhile (a live sender counted gone, a second SPSC sender let
//! in). `stale_reaper_without_winning_clears_a_live_bit` keeps that version
//! as a negative control: loom must find the bad interleaving.
#![cfg(loom)]

use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;
use shmring::__internal::ProcId;
use shmring::__internal::QueueControl;
use shmring::__internal::{EndpointInfo, EndpointTable};
use shmring::Role;
use shmring_loom_tests::builder;

struct World {
    entries: Vec<AtomicU64>,
    ctrl: QueueControl,
}

impl World {
    fn table(&self) -> EndpointTable<'_> {
        EndpointTable::new(&self.entries)
    }
}

fn proc(pid: u32) -> ProcId {
    ProcId {
        pid,
        start: 100 + pid as u64,
    }
}

/// The dead sender: entry 0 and bit 0, as a killed process leaves them.
fn world_with_dead_sender() -> (Arc<World>, EndpointInfo) {
    let w = Arc::new(World {
        entries: vec![AtomicU64::new(0)],
        ctrl: QueueControl::new(),
    });
    let dead = w.table().claim(Role::Sender, proc(7)).unwrap();
    assert!(w.ctrl.attach(Role::Sender, dead.index as u32, true).is_ok());
    (w, dead)
}

/// A reaper that listed `dead` (as `EndpointTable::dead` would).
fn reaper(w: &World, dead: &EndpointInfo, me: ProcId) -> bool {
    let table = w.table();
    let Some(won) = table.begin_reap(dead, me) else {
        return false;
    };
    w.ctrl.detach(Role::Sender, won.entry.index as u32);
    assert!(table.release(&won.entry), "the winner frees its entry");
    true
}

/// A newcomer attaching once: `Some` if it got the entry and the role.
fn newcomer(w: &World) -> Option<EndpointInfo> {
    let table = w.table();
    let info = table.claim(Role::Sender, proc(9))?;
    if w.ctrl.attach(Role::Sender, info.index as u32, true).is_ok() {
        Some(info)
    } else {
        table.release(&info);
        None
    }
}

/// Two reapers race over one dead sender while a newcomer attaches: exactly
/// one reaper wins, and a newcomer that attached keeps its bit.
#[test]
fn two_reapers_and_a_newcomer() {
    builder().check(|| {
        let (w, dead) = world_with_dead_sender();
        let reapers: Vec<_> = [1u32, 2]
            .into_iter()
            .map(|me| {
                let w = w.clone();
                thread::spawn(move || reaper(&w, &dead, proc(me)))
            })
            .collect();
        let attached = newcomer(&w);
        let wins = reapers
            .into_iter()
            .map(|h| h.join().unwrap())
            .filter(|&won| won)
            .count();
        assert_eq!(wins, 1, "exactly one reaper wins the dead entry");
        match attached {
            Some(info) => {
                assert_eq!(w.ctrl.live(Role::Sender), 1, "a reaper cleared a live bit");
                assert!(w.table().release(&info));
            }
            None => assert_eq!(w.ctrl.live(Role::Sender), 0),
        }
    });
}

/// A reaper that dies after winning: a later reaper finds the entry (its
/// word names the dead reaper), takes it over and settles it.
#[test]
fn a_dead_reaper_is_taken_over() {
    builder().check(|| {
        let (w, dead) = world_with_dead_sender();
        let first = w.table().begin_reap(&dead, proc(1)).unwrap();
        // The first reaper dies here, before clearing the bit.
        let w2 = w.clone();
        let second = thread::spawn(move || reaper(&w2, &first.entry, proc(2)));
        let attached = newcomer(&w);
        assert!(
            second.join().unwrap(),
            "the dead reaper's entry is taken over"
        );
        match attached {
            Some(info) => {
                assert_eq!(w.ctrl.live(Role::Sender), 1);
                assert!(w.table().release(&info));
            }
            None => assert_eq!(w.ctrl.live(Role::Sender), 0),
        }
    });
}

/// Negative control: the protocol before `begin_reap` (clear the bit, then
/// free the entry by a CAS from the dead word, without winning it first).
/// loom finds the interleaving in which the second reaper clears the
/// newcomer's bit.
#[test]
#[should_panic(expected = "a stale reaper cleared a live bit")]
fn stale_reaper_without_winning_clears_a_live_bit() {
    builder().check(|| {
        let (w, dead) = world_with_dead_sender();
        let reapers: Vec<_> = (0..2)
            .map(|_| {
                let w = w.clone();
                thread::spawn(move || {
                    w.ctrl.detach(Role::Sender, dead.index as u32);
                    w.table().release(&dead)
                })
            })
            .collect();
        let attached = newcomer(&w);
        for r in reapers {
            r.join().unwrap();
        }
        if attached.is_some() {
            assert_eq!(
                w.ctrl.live(Role::Sender),
                1,
                "a stale reaper cleared a live bit"
            );
        }
    });
}
