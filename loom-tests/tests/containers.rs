//! loom models of the shared containers' commit protocol
//! (`container::engine`, see "Shared containers" in `docs/design.md`): a
//! writer publishes several word stores as one commit (a redo record, then
//! the stores inside the seqlock's odd window) while a reader takes
//! optimistic snapshots (`engine::read`), and a writer that dies at any
//! stage of its commit is finished (or not) by the next lock holder's
//! `engine::repair`.
//!
//! The words live in a plain vector of loom atomics (the same `Mem` trait
//! the mapped file implements). The container is reduced to what the
//! protocol guarantees: one commit moves four words (two root words and
//! two data words) from the "before" values to the "after" values; a
//! reader's snapshot must be all-before or all-after, never a mix. A
//! writer killed mid-commit is a thread that runs `commit_until(stage)` and
//! stops there; the repairer runs after it (the writer lock orders them:
//! the repairer is the lock's next holder), while the reader runs
//! concurrently with both. A reader that finds the seqlock odd reads
//! through the redo record (the state after), so it neither waits for the
//! writer nor needs the repair: `a_reader_inside_a_stopped_commit_reads_the_after_state`.
#![cfg(loom)]

use loom::sync::atomic::AtomicU64;
use loom::sync::Arc;
use loom::thread;
use shmring::__internal::engine::{self, root, Ctl, Mem, Read, Repair, Stage};

/// The words: the control block from offset 0, then two data words.
struct Words(Vec<AtomicU64>);

impl Mem for Words {
    fn words(&self, off: u64, n: u64) -> Option<&[AtomicU64]> {
        if !off.is_multiple_of(8) {
            return None;
        }
        let (i, end) = ((off / 8) as usize, (off / 8 + n) as usize);
        self.0.get(i..end)
    }
}

const CTL: Ctl = Ctl { at: 0 };
const DATA: u64 = Ctl::LEN;

fn words() -> Arc<Words> {
    let n = (Ctl::LEN / 8 + 2) as usize;
    Arc::new(Words((0..n).map(|_| AtomicU64::new(0)).collect()))
}

/// The commit: LEN 0 → 1, TOP 0 → 10, data 0 → 7 and 0 → 9.
fn stores() -> [(u64, u64); 4] {
    [
        (CTL.root(root::LEN), 1),
        (CTL.root(root::TOP), 10),
        (DATA, 7),
        (DATA + 8, 9),
    ]
}

const BEFORE: [u64; 4] = [0, 0, 0, 0];
const AFTER: [u64; 4] = [1, 10, 7, 9];

/// The four words, read as a reader does.
fn snapshot(w: &Words) -> Option<[u64; 4]> {
    match engine::read(w, CTL, |view, r| {
        Ok([
            r.get(root::LEN),
            r.get(root::TOP),
            engine::load(view, DATA)?,
            engine::load(view, DATA + 8)?,
        ])
    }) {
        Read::Done(Ok(v)) => Some(v),
        Read::Done(Err(e)) => panic!("a check failed on a sound container: {e:?}"),
        // Writers kept it moving: the real reader would take the lock.
        Read::Busy => None,
    }
}

fn check_reader(w: &Words) {
    if let Some(v) = snapshot(w) {
        assert!(v == BEFORE || v == AFTER, "a torn snapshot: {v:?}");
    }
}

fn final_state(w: &Words) -> [u64; 4] {
    assert!(
        !engine::pending(w, CTL),
        "a record or an odd seqlock was left"
    );
    snapshot(w).expect("no writer is left")
}

#[test]
fn a_reader_sees_a_commit_whole_or_not_at_all() {
    loom::model(|| {
        let w = words();
        let r = {
            let w = w.clone();
            thread::spawn(move || check_reader(&w))
        };
        engine::commit(&*w, CTL, &stores()).unwrap();
        r.join().unwrap();
        assert_eq!(final_state(&w), AFTER);
    });
}

/// A writer dies at `stage`; the next lock holder repairs; a reader reads
/// throughout. Returns what the repair found and the final state.
fn die_then_repair(stage: Stage) -> (Repair, [u64; 4]) {
    let w = words();
    let r = {
        let w = w.clone();
        thread::spawn(move || check_reader(&w))
    };
    let writer = {
        let w = w.clone();
        thread::spawn(move || {
            engine::commit_until(&*w, CTL, &stores(), stage).unwrap();
        })
    };
    // The writer lock: the repairer takes it after the writer's death
    // (joining orders the dead writer's stores before the repair, as the
    // robust lock's recovery does).
    writer.join().unwrap();
    let outcome = engine::repair(&*w, CTL).unwrap();
    r.join().unwrap();
    (outcome, final_state(&w))
}

#[test]
fn a_writer_dead_before_its_record_counts_changes_nothing() {
    loom::model(|| {
        assert_eq!(die_then_repair(Stage::Staged), (Repair::Clean, BEFORE));
    });
}

#[test]
fn a_writer_dead_with_a_complete_record_is_finished() {
    loom::model(|| {
        assert_eq!(die_then_repair(Stage::Recorded), (Repair::Redone, AFTER));
    });
}

#[test]
fn a_writer_dead_while_applying_is_finished() {
    loom::model(|| {
        assert_eq!(die_then_repair(Stage::Applying), (Repair::Redone, AFTER));
    });
}

#[test]
fn a_writer_dead_after_applying_is_finished_again() {
    loom::model(|| {
        assert_eq!(die_then_repair(Stage::Applied), (Repair::Redone, AFTER));
    });
}

#[test]
fn two_commits_in_a_row_are_each_whole() {
    // The second commit is one store, to keep the model small: what it
    // checks is that a reader never pairs the first commit's window with
    // the second's.
    loom::model(|| {
        let w = words();
        let r = {
            let w = w.clone();
            thread::spawn(move || {
                if let Some(v) = snapshot(&w) {
                    let second = [1, 10, 7, 19];
                    assert!(v == BEFORE || v == AFTER || v == second, "torn: {v:?}");
                }
            })
        };
        engine::commit(&*w, CTL, &stores()).unwrap();
        engine::commit(&*w, CTL, &[(DATA + 8, 19)]).unwrap();
        r.join().unwrap();
        assert_eq!(final_state(&w), [1, 10, 7, 19]);
    });
}

#[test]
fn a_reader_inside_a_stopped_commit_reads_the_after_state() {
    loom::model(|| {
        let w = words();
        // A writer stopped (or dead) in the middle of applying.
        engine::commit_until(&*w, CTL, &stores(), Stage::Applying).unwrap();
        let r = {
            let w = w.clone();
            thread::spawn(move || snapshot(&w))
        };
        let seen = r.join().unwrap();
        assert_eq!(
            seen,
            Some(AFTER),
            "a reader must not wait for, or miss, a stopped commit"
        );
    });
}
