//! A hostile review of the shared containers ([`SharedMap`], [`SharedList`],
//! [`TypedMap`], [`TypedList`]) against the promises of `docs/reliability.md`
//! ("Shared containers"), with the public API and real processes only (the
//! file is written directly where the attack is a scribbling peer).
//!
//! Tests named `fixed_*` broke a promise of the first version (each a
//! minimal reproduction; all fixed since: checked counts, a record budget
//! for walks, readers that read through a stopped commit's redo record,
//! one mapping per file per process, a checked `len`). The `held_*` ones
//! are attacks that held. All stay as regression tests.
#![cfg(all(not(loom), feature = "serde"))]

mod common;

use common::{
    child_main, fork_raw, reap_raw, run, run_in_child, spawn_child, wait_ok, wait_status, watchdog,
    Rng,
};
use shmring::__internal::engine::{commit_hooks, Stage};
use shmring::{
    Array, ByteQueue, ContainerError, Flavor, Kind, Queue, SegmentError, SharedList, SharedMap,
    TypedList, TypedMap, Value,
};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

// ---------------------------------------------------------------------------
// The layout of docs/design.md ("Shared containers"), for the scribbler
// ---------------------------------------------------------------------------

/// The seqlock word.
const SEQ: u64 = 272;
/// Root word `i`.
const fn root_at(i: u64) -> u64 {
    280 + 8 * i
}
const REGION: u64 = 1;
const REGION_LEN: u64 = 2;
const INDEX: u64 = 3;
const INDEX_CAP: u64 = 4;
const ACTIVE: u64 = 5;
const LEN: u64 = 6;
const TOMBS: u64 = 7;
const ARENA: u64 = 8;
const TOP: u64 = 9;
const END: u64 = 10;
const GARBAGE: u64 = 11;
/// The redo record's length word.
const REDO_LEN: u64 = 376;

fn file(path: &std::path::Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn peek(f: &std::fs::File, off: u64) -> u64 {
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, off).unwrap();
    u64::from_le_bytes(b)
}

fn poke(f: &std::fs::File, off: u64, v: u64) {
    f.write_all_at(&v.to_le_bytes(), off).unwrap();
}

fn typed_error(e: &ContainerError) -> bool {
    matches!(
        e,
        ContainerError::Corrupted(_)
            | ContainerError::Full { .. }
            | ContainerError::NoSpace { .. }
            | ContainerError::OutOfRange { .. }
    )
}

/// Runs `f`, turning a panic into its message.
fn no_panic<R>(f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_default()
    })
}

/// The live table slots of a map file: (entry offset, record offset).
fn live_slots(f: &std::fs::File) -> Vec<(u64, u64)> {
    let index = peek(f, root_at(INDEX));
    let cap = peek(f, root_at(INDEX_CAP));
    (0..cap)
        .map(|i| index + 16 * i)
        .map(|e| (e, peek(f, e + 8)))
        .filter(|&(_, off)| off > 1)
        .collect()
}

/// The value length of the record at `off`.
fn value_len_at(f: &std::fs::File, off: u64) -> u64 {
    peek(f, off + 8) >> 32
}

// ---------------------------------------------------------------------------
// Breaks: a scribbled count makes a writer panic (integer underflow)
// ---------------------------------------------------------------------------

/// "Nothing read from shared memory is trusted: a scribbled file gives
/// `Err(Corrupted)`, never a panic." A map whose `len` word is scribbled to
/// 0 while it holds an entry passes every check (`count + tombs <= cap`), so
/// `remove` of that entry computes `r.count() - 1` (map.rs, `modify`,
/// `Change::Remove`): a panic with overflow checks (debug, tests), and in a
/// release build a committed `len` of `u64::MAX` that bricks the map.
#[test]
fn fixed_scribbled_len_zero_makes_remove_panic() {
    run("rv_len0", |ctx| {
        let name = ctx.name("map");
        let m = SharedMap::create(&name).unwrap();
        m.insert(b"k", b"v").unwrap();
        let f = file(&name.path());
        assert_eq!(peek(&f, root_at(LEN)), 1);
        poke(&f, root_at(LEN), 0);
        let r = no_panic(|| m.remove(b"k"));
        match r {
            Ok(Err(ContainerError::Corrupted(_))) => {}
            Ok(other) => {
                // Whatever it did, the map must not be left bricked with
                // a count no table agrees with.
                let len = peek(&f, root_at(LEN));
                assert!(
                    len <= peek(&f, root_at(INDEX_CAP)),
                    "remove gave {other:?} and committed len = {len:#x}"
                );
            }
            Err(msg) => panic!("remove on a map whose len was scribbled to 0 panicked: {msg}"),
        }
    });
}

/// As above, for `tombs`: a map with a tombstone whose `tombs` word is
/// scribbled to 0; an insert that lands on the tombstone computes
/// `r.get(TOMBS) - 1` (map.rs, `put`, the `Vacant` arm).
#[test]
fn fixed_scribbled_tombs_zero_makes_insert_panic() {
    run("rv_tombs0", |ctx| {
        let name = ctx.name("map");
        let m = SharedMap::create(&name).unwrap();
        m.insert(b"a", b"1").unwrap();
        m.remove(b"a").unwrap();
        let f = file(&name.path());
        assert_eq!(peek(&f, root_at(TOMBS)), 1);
        poke(&f, root_at(TOMBS), 0);
        // Re-inserting the same key probes to its own tombstone first.
        match no_panic(|| m.insert(b"a", b"2")) {
            Ok(Ok(_)) | Ok(Err(ContainerError::Corrupted(_))) => {}
            Ok(Err(e)) => panic!("unexpected error {e:?}"),
            Err(msg) => panic!("insert on a map whose tombs was scribbled to 0 panicked: {msg}"),
        }
    });
}

/// `len()` (and `is_empty()`) return the root's `len` word without the
/// checks every other read makes (mod.rs `Store::len`: `root.count()`,
/// without `map::check` / `list::check`), and turn every error into 0. A
/// scribbled `len` of `u64::MAX` makes `len()` say `usize::MAX` while
/// `entries()` says `Corrupted`; a caller's `Vec::with_capacity(m.len())`
/// then aborts. A root that fails its checks makes `len()` say 0: an
/// "empty" map, indistinguishable from a real one.
#[test]
fn fixed_len_returns_an_unchecked_count() {
    run("rv_len", |ctx| {
        let (mname, lname) = (ctx.name("map"), ctx.name("list"));
        let m = SharedMap::create(&mname).unwrap();
        let l = SharedList::create(&lname).unwrap();
        m.insert(b"k", b"v").unwrap();
        l.push(b"x").unwrap();
        for path in [mname.path(), lname.path()] {
            let f = file(&path);
            poke(&f, root_at(LEN), u64::MAX);
        }
        let bound = |p: &std::path::Path| (file(p).metadata().unwrap().len() / 8) as usize;
        assert!(matches!(m.entries(), Err(ContainerError::Corrupted(_))));
        assert!(matches!(l.to_vec(), Err(ContainerError::Corrupted(_))));
        assert!(
            m.len() <= bound(&mname.path()) && l.len() <= bound(&lname.path()),
            "len() of a map and a list whose contents are Corrupted: {} and {}",
            m.len(),
            l.len()
        );
    });
}

// ---------------------------------------------------------------------------
// Breaks: walks are bounded by the file, but allocations are not
// ---------------------------------------------------------------------------

/// "A scribbled file gives `Err(Corrupted)`, never a huge allocation." Every
/// table entry of a map may name the same record: each passes its checks
/// (inside `[arena, top)`, `count` equals the live entries), so `entries()`
/// copies that record once per entry. The bytes it returns are bounded by
/// `cap × file size`, i.e. quadratic in the file: here a 2 MB file gives
/// ~64 MB; a 64 MB file (1 M entries, one 32 MB record) asks for ~32 TB and
/// aborts the process on allocation failure. Root cause: `map::live` and
/// `list::records` never check that records are distinct (or that their
/// total size fits the arena).
#[test]
fn fixed_shared_records_make_entries_allocate_quadratically() {
    run("rv_dupmap", |ctx| {
        let name = ctx.name("map");
        let m = SharedMap::create(&name).unwrap();
        m.insert(b"big", &vec![7u8; 64 << 10]).unwrap();
        for i in 0..1000u32 {
            m.insert(&i.to_le_bytes(), b"small").unwrap();
        }
        let f = file(&name.path());
        let file_len = f.metadata().unwrap().len();
        let slots = live_slots(&f);
        let big = slots
            .iter()
            .map(|&(_, off)| off)
            .find(|&off| value_len_at(&f, off) == 64 << 10)
            .unwrap();
        for &(e, _) in &slots {
            poke(&f, e + 8, big);
        }
        match m.entries() {
            Err(e) => assert!(typed_error(&e), "{e:?}"),
            Ok(entries) => {
                let bytes: u64 = entries
                    .iter()
                    .map(|(k, v)| (k.len() + v.len()) as u64)
                    .sum();
                assert!(
                    bytes <= file_len,
                    "entries() of a {file_len}-byte file returned {} entries holding {bytes} \
                     bytes: every table entry names the same record, and nothing checks it",
                    entries.len()
                );
            }
        }
    });
}

/// The list's face of the same hole: every position names one record, so
/// `to_vec()` returns it `len` times.
#[test]
fn fixed_shared_records_make_to_vec_allocate_quadratically() {
    run("rv_duplist", |ctx| {
        let name = ctx.name("list");
        let l = SharedList::create(&name).unwrap();
        l.push(&vec![7u8; 64 << 10]).unwrap();
        l.extend((0..1000u32).map(|i| i.to_le_bytes())).unwrap();
        let f = file(&name.path());
        let file_len = f.metadata().unwrap().len();
        let index = peek(&f, root_at(INDEX));
        let cap = peek(&f, root_at(INDEX_CAP));
        let active = peek(&f, root_at(ACTIVE));
        let len = peek(&f, root_at(LEN));
        let first = index + 8 * active * cap;
        let big = peek(&f, first);
        for i in 1..len {
            poke(&f, first + 8 * i, big);
        }
        match l.to_vec() {
            Err(e) => assert!(typed_error(&e), "{e:?}"),
            Ok(items) => {
                let bytes: u64 = items.iter().map(|v| v.len() as u64).sum();
                assert!(
                    bytes <= file_len,
                    "to_vec() of a {file_len}-byte file returned {} items holding {bytes} bytes",
                    items.len()
                );
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Breaks: a writer paused inside its commit blocks lock-free readers
// ---------------------------------------------------------------------------

fn stop_hook(stage: Stage) {
    if stage == Stage::Applying {
        // SAFETY: raising a signal at ourselves.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

#[test]
#[ignore]
fn child_rv_stop_mid_commit() {
    child_main("child_rv_stop_mid_commit", |args| {
        let m = SharedMap::open(args.str(0)).unwrap();
        commit_hooks::HOOK.set(stop_hook).unwrap();
        m.insert(b"other", b"x").unwrap();
    });
}

/// "Readers take no lock and are never starved"; the documented exception
/// is a commit being applied ("a few stores") and a writer that *died*
/// mid-commit. A writer that is merely paused (SIGSTOP, a debugger, a
/// cgroup freeze) inside the seqlock's odd window — a paused process is
/// not a dead one (DESIGN.md) — sends every reader to the writer lock
/// (engine.rs `read`: an odd word is retried 64 times, then
/// `Store::read` falls back to `self.write()`), where it waits for as long
/// as the writer stays stopped. docs/reliability.md says only that a
/// stopped writer "stops other writers". Here a reader of an unrelated key
/// waits 20 s and more.
#[test]
fn fixed_a_writer_paused_mid_commit_blocks_readers() {
    run("rv_stopped", |ctx| {
        let name = ctx.name("map");
        let m = Arc::new(SharedMap::create(&name).unwrap());
        m.insert(b"k", b"v").unwrap();
        let mut child = spawn_child("child_rv_stop_mid_commit", &[name.as_str()]);
        let f = file(&name.path());
        // The child stops itself with the seqlock odd.
        common::wait_until("the writer to stop mid-commit", || {
            peek(&f, SEQ) & 1 == 1 && common::task_state(child.id(), child.id() as i32) == Some('T')
        });
        let reader = m.clone();
        let r = no_panic(|| {
            watchdog("a lock-free get", Duration::from_secs(20), move || {
                reader.get(b"k")
            })
        });
        // Free the reader either way: the writer dies, the next lock
        // holder repairs.
        child.kill().unwrap();
        let _ = wait_status(&mut child);
        match r {
            Ok(v) => assert_eq!(v.unwrap(), Some(b"v".to_vec())),
            Err(msg) => panic!(
                "a reader of another key waited for a stopped writer: {}",
                msg.lines().next().unwrap_or("")
            ),
        }
        assert_eq!(m.get(b"other").unwrap(), Some(b"x".to_vec()));
    });
}

// ---------------------------------------------------------------------------
// Breaks: every handle reserves 64 GiB of addresses
// ---------------------------------------------------------------------------

#[test]
#[ignore]
fn child_rv_many_handles() {
    child_main("child_rv_many_handles", |args| {
        let n: usize = args.get(1);
        let limit: u64 = args.get(2);
        let mut handles = Vec::new();
        for i in 0..n {
            let b = SharedMap::builder();
            let b = if limit == 0 { b } else { b.limit(limit) };
            match b.open(args.str(0)) {
                Ok(h) => handles.push(h),
                Err(e) => panic!("opening handle {i} of one map failed: {e:?}"),
            }
        }
        for h in &handles {
            assert_eq!(h.get(b"k").unwrap(), Some(b"v".to_vec()));
        }
        // mem::forget of a handle: the container goes on working for the
        // others.
        std::mem::forget(handles.pop());
        handles[0].insert(b"k2", b"v2").unwrap();
        assert_eq!(
            handles[handles.len() - 1].get(b"k2").unwrap(),
            Some(b"v2".to_vec())
        );
    });
}

/// Each handle maps the file over its own reservation (`Heap::map`,
/// heap.rs: `DEFAULT_RESERVE` = 64 GiB, or the limit if larger), not once
/// per process as docs/design.md says ("Every process maps the file once
/// over 64 GiB of reserved addresses"). With 47-bit user addresses (128
/// TiB) one process can hold only about 2,000 container handles, about 120
/// with `limit(1 TiB)`, and each `mem::forget` of a handle leaks 64 GiB of
/// addresses for good. The 2,000th open fails with `Io(ENOMEM)`, a cap that
/// is documented nowhere.
#[test]
fn fixed_a_process_runs_out_of_addresses_after_2000_handles() {
    run("rv_handles", |ctx| {
        let name = ctx.name("map");
        let m = SharedMap::create(&name).unwrap();
        m.insert(b"k", b"v").unwrap();
        let mut c = spawn_child("child_rv_many_handles", &[name.as_str(), "2100", "0"]);
        wait_ok(&mut c);
    });
}

// ---------------------------------------------------------------------------
// Held: scribbled control words
// ---------------------------------------------------------------------------

/// A seqlock word scribbled odd (and kept odd by a peer that rewrites it)
/// sends readers to the lock, whose holder closes it; values stay right.
#[test]
fn held_a_seqlock_scribbled_odd_is_repaired_by_the_next_user() {
    run("rv_oddseq", |ctx| {
        let name = ctx.name("map");
        let m = SharedMap::create(&name).unwrap();
        for i in 0..100u32 {
            m.insert(&i.to_le_bytes(), &i.to_be_bytes()).unwrap();
        }
        let f = file(&name.path());
        let before = m.repairs();
        for round in 0..20u32 {
            let s = peek(&f, SEQ);
            poke(&f, SEQ, s | 1);
            let k = round % 100;
            assert_eq!(
                m.get(&k.to_le_bytes()).unwrap(),
                Some(k.to_be_bytes().to_vec())
            );
            assert_eq!(peek(&f, SEQ) & 1, 0, "the reader left the word odd");
        }
        assert_eq!(m.repairs(), before + 20);
        // A redo record of garbage: a typed error for writers, readers go
        // on (nothing is applied).
        poke(&f, REDO_LEN, 3);
        let e = m.insert(b"x", b"y").unwrap_err();
        assert!(matches!(e, ContainerError::Corrupted(_)), "{e:?}");
        assert_eq!(
            m.get(&7u32.to_le_bytes()).unwrap(),
            Some(7u32.to_be_bytes().to_vec())
        );
        let e = m.insert(b"x", b"y").unwrap_err();
        assert!(matches!(e, ContainerError::Corrupted(_)), "{e:?}");
        poke(&f, REDO_LEN, 0);
        m.insert(b"x", b"y").unwrap();
        // A redo record of 2^63 entries: refused, not walked.
        poke(&f, REDO_LEN, 1 << 63);
        assert!(matches!(m.remove(b"x"), Err(ContainerError::Corrupted(_))));
        poke(&f, REDO_LEN, 0);
        assert_eq!(m.remove(b"x").unwrap(), Some(b"y".to_vec()));
    });
}

/// Every root word, scribbled to values up to `u64::MAX` (one at a time),
/// gives typed errors from every operation of both containers: no panic,
/// no fault, no endless walk, no huge allocation. Restoring the word
/// restores the container.
#[test]
fn held_root_words_scribbled_huge_give_typed_errors() {
    run("rv_hugeroot", |ctx| {
        let mut rng = Rng::new(0x5eed);
        for w in 0..12u64 {
            for vi in 0..12 {
                // Fresh containers for each case: a commit made under a
                // scribbled root is not undone by restoring the word.
                let (mname, lname) = (ctx.name("map"), ctx.name("list"));
                let m = SharedMap::create(&mname).unwrap();
                let l = SharedList::create(&lname).unwrap();
                for i in 0..200u32 {
                    m.insert(&i.to_le_bytes(), &[i as u8; 40]).unwrap();
                    l.push(&i.to_le_bytes()).unwrap();
                }
                m.remove(&3u32.to_le_bytes()).unwrap();
                let (mf, lf) = (file(&mname.path()), file(&lname.path()));
                let flen = mf
                    .metadata()
                    .unwrap()
                    .len()
                    .max(lf.metadata().unwrap().len());
                let v = [
                    u64::MAX,
                    u64::MAX - 7,
                    1 << 63,
                    1 << 40,
                    1 << 36,
                    flen,
                    flen + 8,
                    flen - 8,
                    4096,
                    8,
                    1,
                    0,
                ][vi];
                // `len` or `tombs` scribbled small are the underflows of
                // `fixed_scribbled_{len,tombs}_zero_*`: left to those.
                if v <= 1 && (w == LEN || w == TOMBS) {
                    continue;
                }
                poke(&mf, root_at(w), v);
                poke(&lf, root_at(w), v);
                let k = (rng.range(0, 250) as u32).to_le_bytes();
                let results: Vec<Result<(), ContainerError>> = vec![
                    m.get(&k).map(drop),
                    m.contains_key(&k).map(drop),
                    m.entries().map(drop),
                    m.insert(&k, b"new").map(drop),
                    m.remove(&k).map(drop),
                    m.update(&k, |o| o.map(<[u8]>::to_vec)).map(drop),
                    l.get(rng.range(0, 250) as usize).map(drop),
                    l.to_vec().map(drop),
                    l.push(b"p"),
                    l.pop().map(drop),
                    l.insert(1, b"i"),
                    l.remove(0).map(drop),
                    l.set(2, b"s").map(drop),
                    l.truncate(190),
                    l.reverse(),
                    l.sort(),
                    m.clear(),
                    l.clear(),
                ];
                for r in results {
                    if let Err(e) = r {
                        assert!(
                            typed_error(&e),
                            "root word {w} = {v:#x}: unexpected error {e:?}"
                        );
                    }
                }
                let _ = (m.len(), l.len(), m.generation(), m.memory(), l.memory());
                drop((m, l));
                SharedMap::unlink(&mname).unwrap();
                SharedList::unlink(&lname).unwrap();
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Held: truncation by a peer (documented: SIGBUS), sealed memfds
// ---------------------------------------------------------------------------

#[test]
#[ignore]
fn child_rv_truncated_reader() {
    child_main("child_rv_truncated_reader", |args| {
        let m = SharedMap::open(args.str(0)).unwrap();
        assert_eq!(m.get(b"k").unwrap(), Some(vec![1u8; 5000]));
        // Tell the parent, then wait for the truncation.
        std::fs::write(args.str(1), b"ready").unwrap();
        while std::fs::metadata(args.str(1)).is_ok() {
            std::thread::sleep(Duration::from_millis(1));
        }
        // The file is now shorter than the region the root names.
        let r = m.get(b"k");
        println!("after truncation: {r:?}");
    });
}

/// A peer that truncates a named container's file makes its users fault
/// with SIGBUS. That is documented (docs/security.md, "Truncation of a
/// named segment"); this test pins the documented outcome: the reader dies
/// of SIGBUS, or (better) answers with a typed error.
#[test]
fn held_a_truncated_named_container_faults_as_documented() {
    run("rv_trunc", |ctx| {
        let name = ctx.name("map");
        let m = SharedMap::create(&name).unwrap();
        m.insert(b"k", &[1u8; 5000]).unwrap();
        let flag = std::env::temp_dir().join(format!("rv-trunc-{}", std::process::id()));
        let _ = std::fs::remove_file(&flag);
        let mut c = spawn_child(
            "child_rv_truncated_reader",
            &[name.as_str(), flag.to_str().unwrap()],
        );
        common::wait_until("the reader", || flag.exists());
        file(&name.path()).set_len(4096).unwrap();
        std::fs::remove_file(&flag).unwrap();
        let (status, out) = wait_status(&mut c);
        assert!(
            status.signal() == Some(libc::SIGBUS)
                || (status.success() && out.contains("after truncation: Err(")),
            "{status}: {out}"
        );
        drop(m);
    });
}

/// An anonymous container's memfd is sealed against shrinking: the
/// SIGBUS above cannot happen to it.
#[test]
fn held_an_anonymous_container_cannot_be_shrunk() {
    run("rv_seal", |_| {
        let m = SharedMap::anonymous().unwrap();
        m.insert(b"k", &[1u8; 5000]).unwrap();
        let fd = m.raw_fd().unwrap();
        // SAFETY: plain syscall on the container's own fd.
        let r = unsafe { libc::ftruncate(fd, 4096) };
        assert_eq!(r, -1, "the memfd of a container could be shrunk");
        assert_eq!(m.get(b"k").unwrap(), Some(vec![1u8; 5000]));
    });
}

// ---------------------------------------------------------------------------
// Held: kill -9 in the middle of moves of a big map, with a reader process
// ---------------------------------------------------------------------------

fn big_key(i: u64) -> Vec<u8> {
    format!("key-{i}").into_bytes()
}

fn big_value(i: u64) -> Vec<u8> {
    let n = 500 + (i * 7919 % 9000) as usize;
    (0..n).map(|j| (i as usize * 131 + j) as u8).collect()
}

fn key_index(k: &[u8]) -> Option<u64> {
    std::str::from_utf8(k)
        .ok()?
        .strip_prefix("key-")?
        .parse()
        .ok()
}

/// The writer: step `i` inserts key `i` and, every fifth step, removes key
/// `i - 5`; then it publishes `next = i + 1`.
#[test]
#[ignore]
fn child_rv_move_writer() {
    child_main("child_rv_move_writer", |args| {
        let m = SharedMap::open(args.str(0)).unwrap();
        let mut i = m
            .get(b"next")
            .unwrap()
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
        loop {
            m.insert(&big_key(i), &big_value(i)).unwrap();
            if i.is_multiple_of(5) && i >= 5 {
                m.remove(&big_key(i - 5)).unwrap();
            }
            m.insert(b"next", &(i + 1).to_le_bytes()).unwrap();
            i += 1;
        }
    });
}

/// The reader: every snapshot holds only right values, no key twice, and
/// `len` equal to its size; until the parent sets `stop`.
#[test]
#[ignore]
fn child_rv_move_reader() {
    child_main("child_rv_move_reader", |args| {
        let m = SharedMap::open(args.str(0)).unwrap();
        let mut snapshots = 0u64;
        let mut buf = Vec::new();
        while !m.contains_key(b"stop").unwrap() {
            let e = m.entries().unwrap();
            let mut seen = HashSet::new();
            for (k, v) in &e {
                assert!(seen.insert(k.clone()), "key {k:?} twice in one snapshot");
                if let Some(i) = key_index(k) {
                    assert!(*v == big_value(i), "torn or foreign value under {k:?}");
                }
            }
            // A point read of a key that must be whole if present.
            let next = m
                .get(b"next")
                .unwrap()
                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
            if next > 0 && m.get_into(&big_key(next - 1), &mut buf).unwrap() {
                assert!(buf == big_value(next - 1));
            }
            snapshots += 1;
        }
        println!("{snapshots} snapshots");
    });
}

fn check_moves_invariant(m: &SharedMap) -> u64 {
    let next = m
        .get(b"next")
        .unwrap()
        .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
    let got: HashMap<Vec<u8>, Vec<u8>> = m.entries().unwrap().into_iter().collect();
    assert_eq!(got.len(), m.len());
    for (k, v) in &got {
        if let Some(i) = key_index(k) {
            assert!(i <= next, "key {i} past next = {next}");
            assert!(*v == big_value(i), "wrong value under key {i}");
        }
    }
    for j in 0..next {
        // Step j inserted key j; step j + 5 (if done) removed it.
        let removed_by = j + 5;
        let expect = if j % 5 == 0 && removed_by < next {
            Some(false)
        } else if j % 5 == 0 && removed_by == next {
            None // the step that was killed may have removed it
        } else {
            Some(true)
        };
        if let Some(e) = expect {
            assert_eq!(got.contains_key(&big_key(j)), e, "key {j} (next = {next})");
        }
    }
    next
}

/// "Growth loses or duplicates no entry", under kill -9 at random moments
/// of a writer that keeps moving a map of several MB, while another process
/// snapshots it: the reader never sees a torn value or a key twice, and
/// after each kill the map holds exactly what the writer's steps left.
#[test]
fn held_kill_9_during_moves_of_a_big_map_with_a_reader() {
    run("rv_moves", |ctx| {
        let name = ctx.name("map");
        let m = SharedMap::create(&name).unwrap();
        let mut reader = spawn_child("child_rv_move_reader", &[name.as_str()]);
        let mut rng = Rng::new(0xfeed);
        let gen0 = m.generation();
        let mut last = 0;
        for _ in 0..12 {
            let mut w = spawn_child("child_rv_move_writer", &[name.as_str()]);
            std::thread::sleep(Duration::from_millis(rng.range(50, 400)));
            common::kill_child(&mut w);
            last = check_moves_invariant(&m);
            assert!(
                reader.try_wait().unwrap().is_none(),
                "the reader ended early"
            );
        }
        m.insert(b"stop", b"").unwrap();
        wait_ok(&mut reader);
        eprintln!(
            "{last} steps, {} moves, {} repairs",
            m.generation() - gen0,
            m.repairs()
        );
    });
}

// ---------------------------------------------------------------------------
// Held: open_or_create races between kinds; wrong kinds both ways
// ---------------------------------------------------------------------------

#[test]
#[ignore]
fn child_rv_race_kinds() {
    child_main("child_rv_race_kinds", |args| {
        let as_list = args.str(1) == "list";
        let r: Result<(), SegmentError> = if as_list {
            SharedList::open_or_create(args.str(0)).map(|l| l.push(b"l").unwrap())
        } else {
            SharedMap::open_or_create(args.str(0))
                .map(|m| drop(m.insert(args.str(2).as_bytes(), b"m").unwrap()))
        };
        match r {
            Ok(()) => println!("got it"),
            Err(SegmentError::WrongKind { .. }) => println!("wrong kind"),
            Err(e) => panic!("open_or_create: {e:?}"),
        }
    });
}

/// Processes racing `open_or_create` of a map and of a list on one name:
/// one kind wins, the others get `WrongKind`, nobody gets anything else.
#[test]
fn held_open_or_create_races_between_kinds() {
    run("rv_racekinds", |ctx| {
        for round in 0..4 {
            let name = ctx.name("c");
            let mut kids: Vec<_> = (0..4)
                .map(|i| {
                    let kind = if (i + round) % 2 == 0 { "map" } else { "list" };
                    let tag = format!("p{i}");
                    spawn_child("child_rv_race_kinds", &[name.as_str(), kind, &tag])
                })
                .collect();
            for k in &mut kids {
                wait_ok(k);
            }
            match (SharedMap::open(&name), SharedList::open(&name)) {
                (Ok(m), Err(SegmentError::WrongKind { .. })) => assert_eq!(m.len(), 2),
                (Err(SegmentError::WrongKind { .. }), Ok(l)) => assert_eq!(l.len(), 2),
                other => panic!("{other:?}"),
            }
        }
    });
}

/// A map opened as every other kind, and every other kind as a map or a
/// list: typed refusals, never a mapping of the wrong layout.
#[test]
fn held_wrong_kinds_are_refused_both_ways() {
    run("rv_kinds", |ctx| {
        let mname = ctx.name("map");
        let m = SharedMap::create(&mname).unwrap();
        // Grown well past total_len: other kinds check sizes too.
        m.insert(b"k", &[0u8; 20000]).unwrap();
        let wrong = |e: &SegmentError| {
            matches!(
                e,
                SegmentError::WrongKind { .. } | SegmentError::TypeMismatch { .. }
            )
        };
        let e = Queue::<u64>::open(&mname).unwrap_err();
        assert!(wrong(&e), "a map as a Queue: {e:?}");
        let e = ByteQueue::open(&mname).unwrap_err();
        assert!(wrong(&e), "a map as a ByteQueue: {e:?}");
        let e = Array::<u64>::open(&mname).unwrap_err();
        assert!(wrong(&e), "a map as an Array: {e:?}");
        let e = Value::<u64>::open(&mname).unwrap_err();
        assert!(wrong(&e), "a map as a Value: {e:?}");
        let e = TypedList::<u64>::open(&mname).unwrap_err();
        assert!(wrong(&e), "a map as a TypedList: {e:?}");
        let e = TypedMap::<Vec<u8>, Vec<u8>>::open(&mname).unwrap_err();
        assert!(
            wrong(&e),
            "a byte map as a TypedMap<Vec<u8>, Vec<u8>>: {e:?}"
        );

        let qname = ctx.name("queue");
        let _q = Queue::<u64>::create(&qname, Flavor::Mpmc, 64).unwrap();
        let bname = ctx.name("bytes");
        let _b = ByteQueue::create(&bname, Flavor::Spsc, 64, 256).unwrap();
        let aname = ctx.name("array");
        let _a = Array::<u64>::create(&aname, 4096).unwrap();
        for n in [&qname, &bname, &aname] {
            let e = SharedMap::open(n).unwrap_err();
            assert!(wrong(&e), "{} as a map: {e:?}", n.as_str());
            let e = SharedList::open(n).unwrap_err();
            assert!(wrong(&e), "{} as a list: {e:?}", n.as_str());
            let e = TypedMap::<u64, u64>::open(n).unwrap_err();
            assert!(wrong(&e), "{} as a TypedMap: {e:?}", n.as_str());
            // open_or_create must not take it over either.
            let e = SharedMap::open_or_create(n).unwrap_err();
            assert!(wrong(&e), "{} open_or_create as a map: {e:?}", n.as_str());
        }
        // Typed lists of different types refuse each other.
        let tname = ctx.name("tl");
        let t = TypedList::<u32>::create(&tname).unwrap();
        t.push(&1).unwrap();
        assert!(matches!(
            TypedList::<i32>::open(&tname),
            Err(SegmentError::TypeMismatch { .. })
        ));
        assert!(matches!(
            SharedList::open(&tname),
            Err(SegmentError::TypeMismatch { .. })
        ));
        assert!(matches!(
            TypedMap::<u32, u32>::open(&tname),
            Err(SegmentError::WrongKind {
                expected: Kind::Map,
                ..
            })
        ));
    });
}

// ---------------------------------------------------------------------------
// Held: fork, threads, clear under readers
// ---------------------------------------------------------------------------

#[test]
#[ignore]
fn child_rv_fork_in_update() {
    child_main("child_rv_fork_in_update", |_| {
        let m = Arc::new(SharedMap::anonymous().unwrap());
        let l = Arc::new(SharedList::anonymous().unwrap());
        m.insert(b"c", &1u64.to_le_bytes()).unwrap();
        let entered = Arc::new(AtomicBool::new(false));
        let forked = Arc::new(AtomicBool::new(false));
        let t = {
            let (m, entered, forked) = (m.clone(), entered.clone(), forked.clone());
            std::thread::spawn(move || {
                m.update(b"c", |old| {
                    entered.store(true, Ordering::SeqCst);
                    while !forked.load(Ordering::SeqCst) {
                        std::hint::spin_loop();
                    }
                    let n = u64::from_le_bytes(old.unwrap().try_into().unwrap());
                    Some((n + 10).to_le_bytes().to_vec())
                })
                .unwrap()
            })
        };
        while !entered.load(Ordering::SeqCst) {
            std::hint::spin_loop();
        }
        // Fork while the other thread holds the writer lock inside its
        // closure.
        let pid = fork_raw();
        if pid == 0 {
            // The child: reads work at once (no lock); a write waits for
            // the parent's thread, then sees its result.
            let ok = m.get(b"c").ok() == Some(Some(1u64.to_le_bytes().to_vec()))
                && m.update(b"c", |old| {
                    let n = u64::from_le_bytes(old.unwrap().try_into().unwrap());
                    Some((n * 2).to_le_bytes().to_vec())
                })
                .is_ok()
                && l.push(b"child").is_ok();
            // SAFETY: leaving the fork child without running destructors.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        std::thread::sleep(Duration::from_millis(50));
        forked.store(true, Ordering::SeqCst);
        t.join().unwrap();
        assert_eq!(reap_raw(pid), 0);
        assert_eq!(m.get(b"c").unwrap(), Some(22u64.to_le_bytes().to_vec()));
        assert_eq!(l.to_vec().unwrap(), vec![b"child".to_vec()]);
    });
}

/// "Handles work after fork in the child": a fork taken while another
/// thread of the parent is inside an `update` closure (holding the lock).
#[test]
fn held_fork_while_another_thread_is_inside_update() {
    run_in_child("rv_forkupd", "child_rv_fork_in_update", &[]);
}

/// Handles are Send + Sync: eight threads of one process hammer one
/// handle's `update`, `compare_and_swap` and `push`; nothing is lost.
#[test]
fn held_eight_threads_on_one_handle() {
    run("rv_threads", |_| {
        let m = Arc::new(SharedMap::anonymous().unwrap());
        let l = Arc::new(SharedList::anonymous().unwrap());
        let tl = Arc::new(TypedList::<(u32, u32)>::anonymous().unwrap());
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                let (m, l, tl) = (m.clone(), l.clone(), tl.clone());
                std::thread::spawn(move || {
                    for i in 0..300u32 {
                        m.update(b"n", |o| {
                            let n = o.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                            Some((n + 1).to_le_bytes().to_vec())
                        })
                        .unwrap();
                        loop {
                            let cur = m.get(b"cas").unwrap();
                            let n = cur
                                .as_deref()
                                .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                            let new = (n + 1).to_le_bytes();
                            if m.compare_and_swap(b"cas", cur.as_deref(), Some(&new))
                                .unwrap()
                                .is_ok()
                            {
                                break;
                            }
                        }
                        m.insert(
                            &[t as u8, i as u8, (i >> 8) as u8],
                            &vec![t as u8; i as usize],
                        )
                        .unwrap();
                        l.push(&[t as u8, i as u8, (i >> 8) as u8]).unwrap();
                        tl.push(&(t, i)).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(m.get(b"n").unwrap(), Some(2400u64.to_le_bytes().to_vec()));
        assert_eq!(m.get(b"cas").unwrap(), Some(2400u64.to_le_bytes().to_vec()));
        assert_eq!(m.len(), 2402);
        let items = l.to_vec().unwrap();
        assert_eq!(items.len(), 2400);
        let typed = tl.to_vec().unwrap();
        for t in 0..8u32 {
            let mine: Vec<u32> = typed.iter().filter(|p| p.0 == t).map(|p| p.1).collect();
            assert_eq!(mine, (0..300).collect::<Vec<_>>(), "thread {t}'s pushes");
        }
    });
}

#[test]
#[ignore]
fn child_rv_clear_reader() {
    child_main("child_rv_clear_reader", |args| {
        let m = SharedMap::open(args.str(0)).unwrap();
        let l = SharedList::open(args.str(1)).unwrap();
        let mut shapes = 0u64;
        loop {
            let e = m.entries().unwrap();
            if e.iter().any(|(k, _)| k == b"stop") {
                break;
            }
            // The writer inserts 0, 1, 2, ... and clears: a snapshot is a
            // prefix.
            let mut ks: Vec<u32> = e
                .iter()
                .map(|(k, v)| {
                    let k = u32::from_le_bytes(k[..].try_into().unwrap());
                    assert_eq!(*v, vec![k as u8; 100 + k as usize % 300]);
                    k
                })
                .collect();
            ks.sort();
            assert_eq!(ks, (0..ks.len() as u32).collect::<Vec<_>>(), "not a prefix");
            let items = l.to_vec().unwrap();
            for (i, it) in items.iter().enumerate() {
                assert_eq!(*it, (i as u32).to_le_bytes(), "list not a prefix");
            }
            shapes += 1;
        }
        println!("{shapes} snapshots");
    });
}

/// `clear` while another process iterates: every snapshot is a prefix of
/// what the writer built since its last clear, never a mix of before and
/// after.
#[test]
fn held_clear_while_another_process_iterates() {
    run("rv_clear", |ctx| {
        let (mname, lname) = (ctx.name("map"), ctx.name("list"));
        let m = SharedMap::create(&mname).unwrap();
        let l = SharedList::create(&lname).unwrap();
        let mut reader = spawn_child("child_rv_clear_reader", &[mname.as_str(), lname.as_str()]);
        let mut rng = Rng::new(42);
        for _ in 0..60 {
            let n = rng.range(0, 400) as u32;
            for k in 0..n {
                m.insert(&k.to_le_bytes(), &vec![k as u8; 100 + k as usize % 300])
                    .unwrap();
                l.push(&k.to_le_bytes()).unwrap();
            }
            if rng.range(0, 1) == 0 {
                m.clear().unwrap();
                l.clear().unwrap();
            } else {
                // Other ways to empty them.
                // Removing the newest first keeps every snapshot a prefix.
                l.truncate(0).unwrap();
                for k in (0..n).rev() {
                    m.remove(&k.to_le_bytes()).unwrap();
                }
            }
        }
        m.insert(b"stop", b"").unwrap();
        wait_ok(&mut reader);
    });
}

// ---------------------------------------------------------------------------
// Held: big values, limits, bad input
// ---------------------------------------------------------------------------

/// Values of several MB, through growth, replacement and limits.
#[test]
fn held_values_of_several_mb() {
    run("rv_bigval", |ctx| {
        let name = ctx.name("map");
        let m = SharedMap::create(&name).unwrap();
        let big: Vec<u8> = (0..6 << 20)
            .map(|i: u32| (i * 7 + i / 4096) as u8)
            .collect();
        m.insert(b"big", &big).unwrap();
        m.insert(b"small", b"s").unwrap();
        assert_eq!(m.get(b"big").unwrap().as_deref(), Some(&big[..]));
        let big2: Vec<u8> = big.iter().rev().copied().collect();
        assert_eq!(m.insert(b"big", &big2).unwrap().as_deref(), Some(&big[..]));
        assert_eq!(m.get(b"big").unwrap().as_deref(), Some(&big2[..]));
        // The key may be big too.
        m.insert(&big, b"v").unwrap();
        assert_eq!(m.get(&big).unwrap(), Some(b"v".to_vec()));
        assert_eq!(m.len(), 3);
        let l = SharedList::anonymous().unwrap();
        l.push(&big).unwrap();
        l.insert(0, &big2).unwrap();
        assert_eq!(l.get(1).unwrap().as_deref(), Some(&big[..]));
        l.sort().unwrap();
        assert_eq!(l.len(), 2);
        let tl = TypedList::<Vec<u8>>::anonymous().unwrap();
        tl.push(&big).unwrap();
        assert_eq!(tl.get(0).unwrap().as_deref(), Some(&big[..]));
        // Over a limit: Full, nothing changed.
        let lim = SharedMap::builder()
            .limit(4 << 20)
            .create_anonymous()
            .unwrap();
        lim.insert(b"a", b"1").unwrap();
        let e = lim.insert(b"big", &big).unwrap_err();
        assert!(matches!(e, ContainerError::Full { .. }), "{e:?}");
        assert_eq!(lim.entries().unwrap(), vec![(b"a".to_vec(), b"1".to_vec())]);
        let g = lim.generation();
        assert_eq!(lim.get(b"a").unwrap(), Some(b"1".to_vec()));
        lim.insert(b"b", &[0u8; 100_000]).unwrap();
        assert!(lim.generation() >= g);
    });
}

/// Positions and limits at the edges of their types: typed errors.
#[test]
fn held_bad_input_at_the_edges() {
    run("rv_edges", |_| {
        let l = SharedList::anonymous().unwrap();
        assert!(matches!(
            l.set(0, b"x"),
            Err(ContainerError::OutOfRange { index: 0, len: 0 })
        ));
        assert!(matches!(
            l.remove(0),
            Err(ContainerError::OutOfRange { .. })
        ));
        assert!(matches!(
            l.insert(1, b"x"),
            Err(ContainerError::OutOfRange { .. })
        ));
        l.push(b"a").unwrap();
        for i in [usize::MAX, usize::MAX / 2, 1 << 63, 2] {
            assert_eq!(l.get(i).unwrap(), None);
            assert!(matches!(
                l.set(i, b"x"),
                Err(ContainerError::OutOfRange { .. })
            ));
            assert!(matches!(
                l.insert(i, b"x"),
                Err(ContainerError::OutOfRange { .. })
            ));
            assert!(matches!(
                l.remove(i),
                Err(ContainerError::OutOfRange { .. })
            ));
        }
        l.truncate(usize::MAX).unwrap();
        assert_eq!(l.to_vec().unwrap(), vec![b"a".to_vec()]);
        l.extend(Vec::<Vec<u8>>::new()).unwrap();
        l.push(b"").unwrap();
        assert_eq!(l.get(1).unwrap(), Some(Vec::new()));
        for bad in [0u64, 1, 4095, (1 << 40) + 1, u64::MAX] {
            if bad == 0 {
                continue; // 0 is "no limit"
            }
            let e = SharedMap::builder()
                .limit(bad)
                .create_anonymous()
                .unwrap_err();
            assert!(
                matches!(e, SegmentError::InvalidArgument(_)),
                "{bad}: {e:?}"
            );
        }
        // The smallest limit accepted holds nothing, and says so.
        let tiny = SharedMap::builder().limit(4096).create_anonymous().unwrap();
        assert!(matches!(
            tiny.insert(b"k", b"v"),
            Err(ContainerError::Full { .. })
        ));
        assert!(tiny.is_empty());
        let m = SharedMap::anonymous().unwrap();
        m.insert(b"", b"").unwrap();
        assert_eq!(m.get(b"").unwrap(), Some(Vec::new()));
        assert_eq!(
            m.compare_and_swap(b"", None, None).unwrap(),
            Err(Some(Vec::new()))
        );
        assert_eq!(m.compare_and_swap(b"x", None, None).unwrap(), Ok(()));
        assert!(!m.contains_key(b"x").unwrap());
    });
}

/// `TypedMap` with float keys: as documented, keys compare by encoding,
/// so `0.0` and `-0.0` are two keys and a NaN key is found again.
#[test]
fn held_typed_map_float_keys_compare_by_bits() {
    run("rv_floats", |_| {
        let m = TypedMap::<f64, f64>::anonymous().unwrap();
        m.insert(&0.0, &1.0).unwrap();
        m.insert(&-0.0, &2.0).unwrap();
        m.insert(&f64::NAN, &f64::INFINITY).unwrap();
        m.insert(&f64::INFINITY, &f64::NAN).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(m.get(&0.0).unwrap(), Some(1.0));
        assert_eq!(m.get(&-0.0).unwrap(), Some(2.0));
        assert_eq!(m.get(&f64::NAN).unwrap(), Some(f64::INFINITY));
        assert!(m.get(&f64::INFINITY).unwrap().unwrap().is_nan());
        // compare_and_swap compares encodings: a NaN value matches itself.
        assert_eq!(
            m.compare_and_swap(&f64::INFINITY, Some(&f64::NAN), Some(&3.0))
                .unwrap(),
            Ok(())
        );
        assert_eq!(
            m.update(&1.5, |o| Some(o.unwrap_or(0.5) * 2.0)).unwrap(),
            Some(1.0)
        );
        let l = TypedList::<f32>::anonymous().unwrap();
        l.extend([3.0, f32::NAN, -0.0, 0.0, -1.0]).unwrap();
        l.sort_by(|a, b| a.total_cmp(b)).unwrap();
        let v = l.to_vec().unwrap();
        assert_eq!(&v[..4], &[-1.0, -0.0, 0.0, 3.0]);
        assert!(v[4].is_nan());
    });
}

/// `sort_by` with a comparator that is not an order (random answers, and
/// one that panics half-way): either a permutation of the same items, or a
/// panic with the list unchanged and its lock free.
#[test]
fn held_sort_by_with_an_inconsistent_comparator() {
    run("rv_sort", |_| {
        let l = SharedList::anonymous().unwrap();
        let items: Vec<Vec<u8>> = (0..200u32)
            .map(|i| (i * 37 % 200).to_le_bytes().to_vec())
            .collect();
        l.extend(&items).unwrap();
        let mut rng = Rng::new(9);
        for round in 0..20 {
            let before = l.to_vec().unwrap();
            let r = no_panic(|| {
                let mut calls = 0;
                l.sort_by(|_, _| {
                    calls += 1;
                    if round % 5 == 4 && calls == 300 {
                        panic!("comparator gives up");
                    }
                    match rng.range(0, 2) {
                        0 => std::cmp::Ordering::Less,
                        1 => std::cmp::Ordering::Equal,
                        _ => std::cmp::Ordering::Greater,
                    }
                })
            });
            let after = l.to_vec().unwrap();
            match r {
                Ok(res) => {
                    res.unwrap();
                    let (mut a, mut b) = (before.clone(), after.clone());
                    a.sort();
                    b.sort();
                    assert_eq!(a, b, "sort_by lost or duplicated items");
                }
                Err(_) => assert_eq!(before, after, "a panicking sort changed the list"),
            }
            // The lock is free.
            l.push(b"x").unwrap();
            l.pop().unwrap();
        }
        l.sort().unwrap();
        let mut want = items.clone();
        want.sort();
        assert_eq!(l.to_vec().unwrap(), want);
    });
}

// ---------------------------------------------------------------------------
// Held: names
// ---------------------------------------------------------------------------

#[test]
#[ignore]
fn child_rv_fork_persist() {
    child_main("child_rv_fork_persist", |args| {
        let name = args.str(0);
        let m = SharedMap::builder().persist(false).create(name).unwrap();
        m.insert(b"k", b"v").unwrap();
        let pid = fork_raw();
        if pid == 0 {
            // The child drops its inherited copy of the creator handle and
            // exits normally-ish: the name must stay.
            let ok = m.get(b"k").ok() == Some(Some(b"v".to_vec())) && m.insert(b"c", b"1").is_ok();
            drop(m);
            // SAFETY: leaving the fork child.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        assert_eq!(reap_raw(pid), 0);
        let path = std::path::Path::new(common::SHM_DIR).join(name);
        assert!(
            path.exists(),
            "a fork child's drop removed the creator's name"
        );
        assert_eq!(
            SharedMap::open(name).unwrap().get(b"c").unwrap(),
            Some(b"1".to_vec())
        );
        // A forgotten second handle changes nothing for the creator's drop.
        std::mem::forget(SharedMap::open(name).unwrap());
        drop(m);
        assert!(
            !path.exists(),
            "persist(false): the creator's drop removes the name"
        );
    });
}

/// `persist(false)`: only the creating process's drop removes the name, not
/// a fork child's copy; forgetting another handle does not keep it.
#[test]
fn held_persist_false_survives_a_fork_childs_drop() {
    run("rv_persist", |ctx| {
        let name = ctx.removed_name("p");
        let mut c = spawn_child("child_rv_fork_persist", &[name.as_str()]);
        wait_ok(&mut c);
    });
}

// Keep the unused-import lint quiet for layout constants used only in some
// tests.
#[allow(dead_code)]
const _LAYOUT: [u64; 7] = [REGION, REGION_LEN, ARENA, TOP, END, GARBAGE, INDEX_CAP];
