//! The shared containers ([`SharedMap`], [`SharedList`], and their typed
//! faces), against their promises:
//!
//! - **models**: random operation sequences (proptest) on a map and a list
//!   agree with `HashMap` and `Vec` after every step, through growth,
//!   compaction and `clear`;
//! - **names and kinds**: named containers open from other handles,
//!   `open_or_create` races to one container, wrong kinds and wrong types
//!   are refused with typed errors, `unlink` and `persist(false)` remove
//!   the name; an anonymous one reaches an exec'd program by its fd;
//! - **separate programs**: a writer and a reader started as separate
//!   processes, in both orders, meet on one container;
//! - **four processes**: mixed reads and writes from four processes at once
//!   end in exactly the content a model of each process's operations gives,
//!   and no reader ever sees a torn or foreign value;
//! - **death at every commit stage**: a writer killed (`SIGKILL`) at each
//!   stage of a commit, of each kind of operation, leaves the container as
//!   before or as after the operation, as the stage says, and the next user
//!   repairs it (`repairs()`);
//! - **chaos**: writers killed at random moments, again and again: each
//!   writer's keys and list hold exactly the result of a prefix of its
//!   operations, the one its ledger says (or one more);
//! - **scribbling**: random bytes written over a live container's file
//!   while a thread works on it: only `Ok` or typed errors, never a panic,
//!   a fault or a hang (the watchdog);
//! - **limits**: a write that would outgrow the limit fails with `Full` and
//!   changes nothing.
#![cfg(not(loom))]

mod common;

use common::{child_main, fork_raw, reap_raw, run, shared_mem, spawn_child, wait_ok, Rng};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use shmring::__internal::engine::{commit_hooks, Stage};
use shmring::{ContainerError, Kind, MapEntry, SegmentError, SharedList, SharedMap, Value};
#[cfg(feature = "serde")]
use shmring::{TypedList, TypedMap};
use std::collections::HashMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Models
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum MapOp {
    Insert(u8, usize),
    Remove(u8),
    Get(u8),
    Update(u8),
    Cas(u8, bool, usize),
    Clear,
}

fn key_of(k: u8) -> Vec<u8> {
    // Keys of several lengths, some sharing prefixes, one empty.
    let n = (k % 4) as usize * 7;
    let mut v = vec![k; n];
    v.extend_from_slice(format!("k{k}").as_bytes());
    if k == 0 {
        v.clear();
    }
    v
}

fn value_of(seed: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (seed.wrapping_mul(31) + i) as u8)
        .collect()
}

fn map_op() -> impl Strategy<Value = MapOp> {
    prop_oneof![
        6 => (0u8..40, 0usize..300).prop_map(|(k, n)| MapOp::Insert(k, n)),
        3 => (0u8..40).prop_map(MapOp::Remove),
        3 => (0u8..40).prop_map(MapOp::Get),
        2 => (0u8..40).prop_map(MapOp::Update),
        2 => (0u8..40, any::<bool>(), 0usize..50).prop_map(|(k, b, n)| MapOp::Cas(k, b, n)),
        1 => Just(MapOp::Clear),
    ]
}

fn runner(cases: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..Config::default()
    })
}

fn check_map(ops: Vec<MapOp>) -> Result<(), TestCaseError> {
    let m = SharedMap::anonymous().unwrap();
    let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        match op {
            MapOp::Insert(k, n) => {
                let v = value_of(i, *n);
                prop_assert_eq!(
                    m.insert(&key_of(*k), &v).unwrap(),
                    model.insert(key_of(*k), v)
                );
            }
            MapOp::Remove(k) => {
                prop_assert_eq!(m.remove(&key_of(*k)).unwrap(), model.remove(&key_of(*k)));
            }
            MapOp::Get(k) => {
                let got = m.get(&key_of(*k)).unwrap();
                prop_assert_eq!(got.as_ref(), model.get(&key_of(*k)));
                prop_assert_eq!(
                    m.contains_key(&key_of(*k)).unwrap(),
                    model.contains_key(&key_of(*k))
                );
            }
            MapOp::Update(k) => {
                // Append a byte; remove the key when it reaches 5 bytes.
                let f = |old: Option<&[u8]>| {
                    let mut v = old.map(<[u8]>::to_vec).unwrap_or_default();
                    v.push(i as u8);
                    (v.len() < 5).then_some(v)
                };
                let want = f(model.get(&key_of(*k)).map(Vec::as_slice));
                match &want {
                    Some(v) => model.insert(key_of(*k), v.clone()),
                    None => model.remove(&key_of(*k)),
                };
                prop_assert_eq!(m.update(&key_of(*k), f).unwrap(), want);
            }
            MapOp::Cas(k, expect_current, n) => {
                let cur = model.get(&key_of(*k)).cloned();
                let guess = if *expect_current {
                    cur.clone()
                } else {
                    Some(vec![0xEE; 3])
                };
                let new = value_of(i, *n);
                let r = m
                    .compare_and_swap(&key_of(*k), guess.as_deref(), Some(&new))
                    .unwrap();
                if guess == cur {
                    prop_assert_eq!(r, Ok(()));
                    model.insert(key_of(*k), new);
                } else {
                    prop_assert_eq!(r, Err(cur));
                }
            }
            MapOp::Clear => {
                m.clear().unwrap();
                model.clear();
            }
        }
        prop_assert_eq!(m.len(), model.len());
    }
    let mut got = m.entries().unwrap();
    got.sort();
    let mut want: Vec<_> = model.into_iter().collect();
    want.sort();
    prop_assert_eq!(got, want);
    Ok(())
}

#[test]
fn a_map_agrees_with_a_hashmap() {
    run("map_model", |_| {
        runner(48)
            .run(&prop::collection::vec(map_op(), 1..400), check_map)
            .unwrap();
    });
}

#[derive(Clone, Debug)]
enum ListOp {
    Push(usize),
    Extend(usize, usize),
    Pop,
    Insert(usize, usize),
    Remove(usize),
    Set(usize, usize),
    Get(usize),
    Reverse,
    Sort,
    Truncate(usize),
    Clear,
}

fn list_op() -> impl Strategy<Value = ListOp> {
    prop_oneof![
        6 => (0usize..200).prop_map(ListOp::Push),
        1 => (0usize..20, 0usize..60).prop_map(|(k, n)| ListOp::Extend(k, n)),
        2 => Just(ListOp::Pop),
        2 => (0usize..100, 0usize..100).prop_map(|(i, n)| ListOp::Insert(i, n)),
        2 => (0usize..100).prop_map(ListOp::Remove),
        2 => (0usize..100, 0usize..100).prop_map(|(i, n)| ListOp::Set(i, n)),
        2 => (0usize..100).prop_map(ListOp::Get),
        1 => Just(ListOp::Reverse),
        1 => Just(ListOp::Sort),
        1 => (0usize..100).prop_map(ListOp::Truncate),
        1 => Just(ListOp::Clear),
    ]
}

fn check_list(ops: Vec<ListOp>) -> Result<(), TestCaseError> {
    let l = SharedList::anonymous().unwrap();
    let mut model: Vec<Vec<u8>> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let len = model.len();
        match op {
            ListOp::Push(n) => {
                let v = value_of(i, *n);
                l.push(&v).unwrap();
                model.push(v);
            }
            ListOp::Extend(k, n) => {
                let vs: Vec<Vec<u8>> = (0..*k).map(|j| value_of(i + j, *n)).collect();
                l.extend(&vs).unwrap();
                model.extend(vs);
            }
            ListOp::Pop => prop_assert_eq!(l.pop().unwrap(), model.pop()),
            ListOp::Insert(at, n) => {
                let v = value_of(i, *n);
                if *at <= len {
                    l.insert(*at, &v).unwrap();
                    model.insert(*at, v);
                } else {
                    let r = l.insert(*at, &v);
                    let ok = matches!(r, Err(ContainerError::OutOfRange { index, len: l2 }) if index == *at && l2 == len);
                    prop_assert!(ok, "insert past the end");
                }
            }
            ListOp::Remove(at) => {
                if *at < len {
                    prop_assert_eq!(l.remove(*at).unwrap(), model.remove(*at));
                } else {
                    {
                        let ok = matches!(l.remove(*at), Err(ContainerError::OutOfRange { .. }));
                        prop_assert!(ok, "unexpected result")
                    }
                }
            }
            ListOp::Set(at, n) => {
                let v = value_of(i, *n);
                if *at < len {
                    prop_assert_eq!(
                        l.set(*at, &v).unwrap(),
                        std::mem::replace(&mut model[*at], v)
                    );
                } else {
                    {
                        let ok = matches!(l.set(*at, &v), Err(ContainerError::OutOfRange { .. }));
                        prop_assert!(ok, "unexpected result")
                    }
                }
            }
            ListOp::Get(at) => {
                let got = l.get(*at).unwrap();
                prop_assert_eq!(got.as_ref(), model.get(*at));
            }
            ListOp::Reverse => {
                l.reverse().unwrap();
                model.reverse();
            }
            ListOp::Sort => {
                l.sort().unwrap();
                model.sort();
            }
            ListOp::Truncate(n) => {
                l.truncate(*n).unwrap();
                model.truncate(*n);
            }
            ListOp::Clear => {
                l.clear().unwrap();
                model.clear();
            }
        }
        prop_assert_eq!(l.len(), model.len());
    }
    prop_assert_eq!(l.to_vec().unwrap(), model);
    Ok(())
}

#[test]
fn a_list_agrees_with_a_vec() {
    run("list_model", |_| {
        runner(48)
            .run(&prop::collection::vec(list_op(), 1..300), check_list)
            .unwrap();
    });
}

/// A dynamic value, as Python's: keys and values of several types in one
/// map.
#[cfg(feature = "serde")]
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
enum Py {
    Int(i64),
    Str(String),
    Float(f64),
    None,
}

#[cfg(feature = "serde")]
#[test]
fn a_typed_map_holds_keys_and_values_of_several_types() {
    run("typed_map", |_| {
        let d = TypedMap::<Py, Py>::anonymous().unwrap();
        d.insert(&Py::Int(1), &Py::Str("1".into())).unwrap();
        d.insert(&Py::Str("2".into()), &Py::Int(2)).unwrap();
        d.insert(&Py::Float(0.25), &Py::None).unwrap();
        assert_eq!(d.get(&Py::Int(1)).unwrap(), Some(Py::Str("1".into())));
        assert_eq!(d.get(&Py::Str("2".into())).unwrap(), Some(Py::Int(2)));
        assert_eq!(d.get(&Py::Float(0.25)).unwrap(), Some(Py::None));
        assert_eq!(d.get(&Py::Int(2)).unwrap(), None);
        assert_eq!(d.len(), 3);
        let swapped = d
            .compare_and_swap(&Py::Int(1), Some(&Py::Str("1".into())), Some(&Py::Int(11)))
            .unwrap();
        assert_eq!(swapped, Ok(()));
        let refused = d
            .compare_and_swap(&Py::Int(1), Some(&Py::Int(0)), None)
            .unwrap();
        assert_eq!(refused, Err(Some(Py::Int(11))));
        assert_eq!(
            d.update(&Py::Int(1), |v| match v {
                Some(Py::Int(n)) => Some(Py::Int(n + 1)),
                other => other,
            })
            .unwrap(),
            Some(Py::Int(12))
        );
        // A stored value of another type is a `Decode` error, and the
        // update changes nothing.
        let raw = d.as_bytes();
        raw.insert(&postcard::to_allocvec(&Py::Int(7)).unwrap(), &[0xff, 0xff])
            .unwrap();
        assert!(matches!(
            d.update(&Py::Int(7), |_| Some(Py::None)),
            Err(ContainerError::Decode(_))
        ));
        assert_eq!(
            raw.get(&postcard::to_allocvec(&Py::Int(7)).unwrap())
                .unwrap(),
            Some(vec![0xff, 0xff])
        );

        let l = TypedList::<i64>::anonymous().unwrap();
        l.extend(0..10).unwrap();
        l.reverse().unwrap();
        assert_eq!(l.to_vec().unwrap(), (0..10).rev().collect::<Vec<_>>());
        l.sort().unwrap();
        assert_eq!(l.to_vec().unwrap(), (0..10).collect::<Vec<_>>());
        l.sort_by(|a, b| b.cmp(a)).unwrap();
        assert_eq!(l.get(0).unwrap(), Some(9));
    });
}

// ---------------------------------------------------------------------------
// Names, kinds and types
// ---------------------------------------------------------------------------

#[test]
fn names_kinds_and_types() {
    run("names", |ctx| {
        let name = ctx.name("map");
        let m = SharedMap::create(&name).unwrap();
        m.insert(b"a", b"1").unwrap();
        assert!(matches!(
            SharedMap::create(&name),
            Err(SegmentError::AlreadyExists(_))
        ));
        let other = SharedMap::open(&name).unwrap();
        assert_eq!(other.get(b"a").unwrap(), Some(b"1".to_vec()));
        let third = SharedMap::open_or_create(&name).unwrap();
        third.insert(b"b", b"2").unwrap();
        assert_eq!(m.len(), 2);
        // Wrong kinds, both ways.
        match SharedList::open(&name) {
            Err(SegmentError::WrongKind {
                expected: Kind::List,
                found: Kind::Map,
            }) => {}
            other => panic!("opened a map as a list: {other:?}"),
        }
        match Value::<u64>::open(&name) {
            Err(SegmentError::WrongKind {
                found: Kind::Map, ..
            }) => {}
            other => panic!("opened a map as a Value: {other:?}"),
        }
        let vname = ctx.name("value");
        let _v = Value::<u64>::create(&vname, 1).unwrap();
        match SharedMap::open(&vname) {
            Err(SegmentError::WrongKind {
                expected: Kind::Map,
                ..
            }) => {}
            other => panic!("opened a Value as a map: {other:?}"),
        }
        #[cfg(feature = "serde")]
        typed_refusals(ctx, &name);
        // unlink: the name goes, the mappings stay.
        SharedMap::unlink(&name).unwrap();
        assert!(!name.exists());
        assert!(matches!(
            SharedMap::open(&name),
            Err(SegmentError::NotFound(_))
        ));
        assert_eq!(other.get(b"b").unwrap(), Some(b"2".to_vec()));
        // persist(false): the creating handle removes it.
        let pname = ctx.removed_name("private");
        let p = SharedList::builder().persist(false).create(&pname).unwrap();
        p.push(b"x").unwrap();
        assert!(pname.exists());
        drop(p);
        assert!(!pname.exists());
    });
}

/// A byte map is not a typed one, and typed maps of other types refuse
/// each other.
#[cfg(feature = "serde")]
fn typed_refusals(ctx: &common::Ctx, name: &str) {
    assert!(matches!(
        TypedMap::<String, u32>::open(name),
        Err(SegmentError::TypeMismatch { .. })
    ));
    let tname = ctx.name("typed");
    let t = TypedMap::<String, u32>::create(&tname).unwrap();
    t.insert(&"x".into(), &5).unwrap();
    assert!(matches!(
        TypedMap::<u32, u32>::open(&tname),
        Err(SegmentError::TypeMismatch { .. })
    ));
    assert!(matches!(
        SharedMap::open(&tname),
        Err(SegmentError::TypeMismatch { .. })
    ));
    assert_eq!(
        TypedMap::<String, u32>::open(&tname)
            .unwrap()
            .get(&"x".into())
            .unwrap(),
        Some(5)
    );
    // `shmring inspect` sees the kind and the entries; `gc` keeps it.
    let rep =
        shmring::inspect::inspect(&shmring::inspect::Location::Named(name.to_string())).unwrap();
    assert_eq!((rep.kind, rep.occupancy), (Kind::Map, Some(2)));
    assert!(rep.keep_reason(true).is_some());
    drop(t);
    TypedMap::<String, u32>::unlink(&tname).unwrap();
}

#[test]
fn a_limit_refuses_growth_and_changes_nothing() {
    run("limit", |_| {
        let m = SharedMap::builder()
            .limit(64 << 10)
            .create_anonymous()
            .unwrap();
        let mut stored = 0u32;
        let err = loop {
            match m.insert(&stored.to_le_bytes(), &[7u8; 500]) {
                Ok(_) => stored += 1,
                Err(e) => break e,
            }
            assert!(stored < 10_000, "the limit was never reached");
        };
        assert!(matches!(err, ContainerError::Full { .. }), "{err:?}");
        assert_eq!(m.len(), stored as usize);
        assert_eq!(m.get(&stored.to_le_bytes()).unwrap(), None);
        for i in 0..stored {
            assert_eq!(m.get(&i.to_le_bytes()).unwrap(), Some(vec![7u8; 500]));
        }
        // Removing makes room again (the next move compacts).
        for i in 0..stored / 2 {
            m.remove(&i.to_le_bytes()).unwrap();
        }
        m.insert(&stored.to_le_bytes(), &[7u8; 500]).unwrap();
        assert!(matches!(
            SharedMap::builder().limit(100).create_anonymous(),
            Err(SegmentError::InvalidArgument(_))
        ));
    });
}

// ---------------------------------------------------------------------------
// Separate programs
// ---------------------------------------------------------------------------

const N_SEP: u32 = 2_000;

/// Writes `N_SEP` keys and list items, then the key `done`.
#[test]
#[ignore]
fn child_sep_writer() {
    child_main("child_sep_writer", |args| {
        let m = SharedMap::open_or_create(args.str(0)).unwrap();
        let l = SharedList::open_or_create(args.str(1)).unwrap();
        for i in 0..N_SEP {
            m.insert(format!("k{i}").as_bytes(), &i.to_le_bytes())
                .unwrap();
            l.push(&i.to_le_bytes()).unwrap();
        }
        m.insert(b"done", b"").unwrap();
    });
}

/// Waits for `done`, then checks every key and item.
#[test]
#[ignore]
fn child_sep_reader() {
    child_main("child_sep_reader", |args| {
        let m = SharedMap::open_or_create(args.str(0)).unwrap();
        let l = SharedList::open_or_create(args.str(1)).unwrap();
        common::wait_until("the writer's done", || m.contains_key(b"done").unwrap());
        for i in 0..N_SEP {
            assert_eq!(
                m.get(format!("k{i}").as_bytes()).unwrap(),
                Some(i.to_le_bytes().to_vec())
            );
        }
        let items = l.to_vec().unwrap();
        assert_eq!(items.len(), N_SEP as usize);
        for (i, it) in items.iter().enumerate() {
            assert_eq!(it, &(i as u32).to_le_bytes());
        }
    });
}

#[test]
fn separate_programs_meet_in_either_order() {
    run("separate", |ctx| {
        for reader_first in [false, true] {
            let (m, l) = (ctx.name("map"), ctx.name("list"));
            let args = [m.as_str(), l.as_str()];
            let (mut a, mut b) = if reader_first {
                let r = spawn_child("child_sep_reader", &args);
                std::thread::sleep(Duration::from_millis(50));
                (r, spawn_child("child_sep_writer", &args))
            } else {
                let w = spawn_child("child_sep_writer", &args);
                (w, spawn_child("child_sep_reader", &args))
            };
            wait_ok(&mut a);
            wait_ok(&mut b);
            SharedMap::unlink(&m).unwrap();
            SharedList::unlink(&l).unwrap();
        }
    });
}

/// An anonymous map reaches an exec'd program through its fd.
#[test]
#[ignore]
fn child_fd_opener() {
    child_main("child_fd_opener", |args| {
        use std::os::fd::{FromRawFd, OwnedFd};
        let fd: i32 = args.get(0);
        // SAFETY: the parent passed this inherited descriptor for us to own.
        let m = SharedMap::builder()
            .from_fd(unsafe { OwnedFd::from_raw_fd(fd) })
            .unwrap();
        assert_eq!(m.get(b"from").unwrap(), Some(b"parent".to_vec()));
        for i in 0..5_000u32 {
            m.insert(&i.to_le_bytes(), b"child").unwrap();
        }
    });
}

#[test]
fn an_anonymous_map_reaches_an_exec_d_child_and_grows_there() {
    run("fd_child", |_| {
        let m = SharedMap::anonymous().unwrap();
        m.insert(b"from", b"parent").unwrap();
        let fd = m.raw_fd().unwrap();
        // Let the child inherit it (memfds are made close-on-exec).
        // SAFETY: plain fcntl on our own descriptor.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        let gen = m.generation();
        let mut c = spawn_child("child_fd_opener", &[&fd.to_string()]);
        wait_ok(&mut c);
        assert!(m.generation() > gen, "the child's inserts moved the map");
        assert_eq!(m.len(), 5_001);
        assert_eq!(
            m.get(&4_999u32.to_le_bytes()).unwrap(),
            Some(b"child".to_vec())
        );
    });
}

// ---------------------------------------------------------------------------
// Four processes at once
// ---------------------------------------------------------------------------

const PROCS: u64 = 4;
const OPS: u64 = 3_000;
const KEYS: u64 = 40;

/// Process `p`'s operation `i`: (key, value or None for a removal).
fn proc_op(p: u64, i: u64) -> (Vec<u8>, Option<Vec<u8>>) {
    let mut r = Rng::new(p * 1_000_003 + i * 7919 + 1);
    let k = r.range(0, KEYS - 1);
    let key = format!("p{p}/{k}").into_bytes();
    if r.range(0, 9) == 0 {
        return (key, None);
    }
    let len = r.range(16, 120) as usize;
    let mut v = format!("p{p}/{k}={i};").into_bytes();
    v.resize(len.max(v.len()), b'.');
    (key, Some(v))
}

#[test]
#[ignore]
fn child_four_processes() {
    child_main("child_four_processes", |args| {
        let m = SharedMap::create(args.str(0)).unwrap();
        let l = SharedList::create(args.str(1)).unwrap();
        let mut pids = Vec::new();
        for p in 0..PROCS {
            let pid = fork_raw();
            if pid == 0 {
                let code = std::panic::catch_unwind(|| {
                    let m = SharedMap::open(args.str(0)).unwrap();
                    let l = SharedList::open(args.str(1)).unwrap();
                    let mut r = Rng::new(p + 99);
                    for i in 0..OPS {
                        let (key, val) = proc_op(p, i);
                        match val {
                            Some(v) => {
                                m.insert(&key, &v).unwrap();
                            }
                            None => {
                                m.remove(&key).unwrap();
                            }
                        }
                        m.update(b"counter", |old| {
                            let n = old.map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap()));
                            Some((n + 1).to_le_bytes().to_vec())
                        })
                        .unwrap();
                        l.push(format!("{p}:{i}").as_bytes()).unwrap();
                        // Read another process's key: a value, if any, is
                        // whole and belongs to that key.
                        let q = r.range(0, PROCS - 1);
                        let k = r.range(0, KEYS - 1);
                        let key = format!("p{q}/{k}");
                        if let Some(v) = m.get(key.as_bytes()).unwrap() {
                            let s = String::from_utf8(v).unwrap();
                            let (head, _) = s.split_once(';').unwrap();
                            let (kk, _) = head.split_once('=').unwrap();
                            assert_eq!(kk, key, "a value under another key");
                            assert!(
                                s[head.len() + 1..].bytes().all(|b| b == b'.'),
                                "torn value {s:?}"
                            );
                        }
                    }
                });
                // SAFETY: leaving the forked child without unwinding into the
                // parent's state.
                unsafe { libc::_exit(if code.is_ok() { 0 } else { 1 }) };
            }
            pids.push(pid);
        }
        for pid in pids {
            assert_eq!(reap_raw(pid), 0, "a worker failed");
        }
        // The exact final content, from each process's own sequence.
        let mut want: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for p in 0..PROCS {
            for i in 0..OPS {
                let (k, v) = proc_op(p, i);
                match v {
                    Some(v) => want.insert(k, v),
                    None => want.remove(&k),
                };
            }
        }
        want.insert(b"counter".to_vec(), (PROCS * OPS).to_le_bytes().to_vec());
        let mut got = m.entries().unwrap();
        got.sort();
        let mut want: Vec<_> = want.into_iter().collect();
        want.sort();
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the final content differs from the model");
        // Every push, once, in each process's order.
        let items = l.to_vec().unwrap();
        assert_eq!(items.len() as u64, PROCS * OPS);
        let mut next = vec![0u64; PROCS as usize];
        for it in items {
            let s = String::from_utf8(it).unwrap();
            let (p, i) = s.split_once(':').unwrap();
            let (p, i): (usize, u64) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[p], "process {p}'s items out of order");
            next[p] += 1;
        }
        assert!(m.generation() > 0);
        SharedMap::unlink(args.str(0)).unwrap();
        SharedList::unlink(args.str(1)).unwrap();
    });
}

#[test]
fn four_processes_read_and_write_at_once() {
    common::run_in_child("four_procs", "child_four_processes", &["map", "list"]);
}

// ---------------------------------------------------------------------------
// Death at every commit stage
// ---------------------------------------------------------------------------

/// The stage at which this process kills itself (0: none), and at which of
/// its commits (1 = the first).
static KILL_STAGE: AtomicU8 = AtomicU8::new(0);
static KILL_AT_COMMIT: AtomicU64 = AtomicU64::new(1);
static COMMITS_SEEN: AtomicU64 = AtomicU64::new(0);

fn kill_hook(stage: Stage) {
    if stage as u8 != KILL_STAGE.load(Ordering::Relaxed) {
        return;
    }
    if COMMITS_SEEN.fetch_add(1, Ordering::Relaxed) + 1 == KILL_AT_COMMIT.load(Ordering::Relaxed) {
        // SAFETY: plain syscall; the process dies here, mid-commit.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
}

#[derive(Clone, Copy, Debug)]
enum Victim {
    MapInsertNew,
    MapReplace,
    MapRemove,
    /// An insert that first moves the map (commit 1: the move, 2: the insert).
    MapInsertMoving(u64),
    MapClear,
    ListPush,
    ListInsertFront,
    ListPop,
    ListReverse,
}

/// The content a map or a list shows, as one comparable list.
fn content_map(m: &SharedMap) -> Vec<MapEntry> {
    let mut e = m.entries().unwrap();
    e.sort();
    e
}

fn prepare_map(m: &SharedMap, n: u32) {
    for i in 0..n {
        m.insert(&i.to_le_bytes(), &[i as u8; 24]).unwrap();
    }
}

/// Fills `m` so that the next insert of a new key moves it (found on
/// copies: the same operations give the same layout); returns the count.
fn fill_to_the_brink(m: &SharedMap) -> u32 {
    let brink = (8u32..4096)
        .find(|&n| {
            let probe = SharedMap::anonymous().unwrap();
            prepare_map(&probe, n);
            let gen = probe.generation();
            probe.insert(&n.to_le_bytes(), b"new").unwrap();
            probe.generation() != gen
        })
        .expect("some insert moves the map");
    prepare_map(m, brink);
    brink
}

fn run_victim(v: Victim, stage: Stage, commit: u64) {
    let m = SharedMap::anonymous().unwrap();
    let l = SharedList::anonymous().unwrap();
    let base = match v {
        Victim::MapInsertMoving(_) => fill_to_the_brink(&m),
        _ => {
            prepare_map(&m, 10);
            10
        }
    };
    l.extend((0..10u8).map(|i| vec![i; 9])).unwrap();
    let before_m = content_map(&m);
    let before_l = l.to_vec().unwrap();
    let gen = m.generation();
    let repairs = (m.repairs(), l.repairs());
    let act = |m: &SharedMap, l: &SharedList| match v {
        Victim::MapInsertNew | Victim::MapInsertMoving(_) => {
            m.insert(&base.to_le_bytes(), b"new").unwrap();
        }
        Victim::MapReplace => {
            m.insert(&3u32.to_le_bytes(), b"replaced").unwrap();
        }
        Victim::MapRemove => {
            m.remove(&3u32.to_le_bytes()).unwrap();
        }
        Victim::MapClear => m.clear().unwrap(),
        Victim::ListPush => l.push(b"pushed").unwrap(),
        Victim::ListInsertFront => l.insert(0, b"front").unwrap(),
        Victim::ListPop => {
            l.pop().unwrap();
        }
        Victim::ListReverse => l.reverse().unwrap(),
    };
    // The "after" state, computed on copies.
    let (after_m, after_l) = {
        let m2 = SharedMap::anonymous().unwrap();
        for (k, val) in &before_m {
            m2.insert(k, val).unwrap();
        }
        let l2 = SharedList::anonymous().unwrap();
        l2.extend(&before_l).unwrap();
        act(&m2, &l2);
        (content_map(&m2), l2.to_vec().unwrap())
    };
    let pid = fork_raw();
    if pid == 0 {
        KILL_STAGE.store(stage as u8, Ordering::Relaxed);
        KILL_AT_COMMIT.store(commit, Ordering::Relaxed);
        let _ = commit_hooks::HOOK.set(kill_hook);
        act(&m, &l);
        // The operation ended without the hook firing.
        // SAFETY: leaving the forked child.
        unsafe { libc::_exit(3) };
    }
    assert_eq!(
        reap_raw(pid),
        -libc::SIGKILL,
        "{v:?} at {stage:?}: the writer was not killed mid-commit"
    );
    // Which state counts as done: the operation's last commit, past the
    // point where its record is complete.
    let last_commit = match v {
        Victim::MapInsertMoving(_) => 2,
        _ => 1,
    };
    let pick = |after: bool| {
        if after {
            (&after_m, &after_l)
        } else {
            (&before_m, &before_l)
        }
    };
    // A reader first. It takes no lock unless the seqlock was left odd
    // (killed while applying): then it takes the lock and repairs. A
    // complete record that nobody applied yet is not seen: "before", until
    // the next writer.
    let (got_m, got_l) = (content_map(&m), l.to_vec().unwrap());
    let seen_after = commit == last_commit && stage >= Stage::Applying;
    let (want_m, want_l) = pick(seen_after);
    assert!(&got_m == want_m, "{v:?} killed at {stage:?} of commit {commit}: a reader sees a map neither before nor after as expected");
    assert!(&got_l == want_l, "{v:?} killed at {stage:?} of commit {commit}: a reader sees a list neither before nor after as expected");
    // Writers that change nothing (they take the lock, so they repair).
    m.remove(b"absent").unwrap();
    l.truncate(usize::MAX).unwrap();
    let done = commit == last_commit && stage >= Stage::Recorded;
    let (want_m, want_l) = pick(done);
    assert!(
        &content_map(&m) == want_m,
        "{v:?} killed at {stage:?} of commit {commit}: after repair the map is not as expected"
    );
    assert!(
        &l.to_vec().unwrap() == want_l,
        "{v:?} killed at {stage:?} of commit {commit}: after repair the list is not as expected"
    );
    if let Victim::MapInsertMoving(_) = v {
        if commit == 2 || stage >= Stage::Recorded {
            assert_eq!(m.generation(), gen + 1, "the move was published");
        } else {
            assert_eq!(m.generation(), gen);
        }
    }
    // The next writer repairs what a complete record left.
    m.insert(b"next", b"writer").unwrap();
    l.push(b"next").unwrap();
    let repaired = (m.repairs() - repairs.0) + (l.repairs() - repairs.1);
    let expect_repair = stage >= Stage::Recorded && stage <= Stage::Applied;
    assert_eq!(
        repaired,
        u64::from(expect_repair),
        "{v:?} at {stage:?}: repairs"
    );
    // And the containers work on.
    assert_eq!(m.get(b"next").unwrap(), Some(b"writer".to_vec()));
    for i in 0..200u32 {
        m.insert(&(1000 + i).to_le_bytes(), b"more").unwrap();
        l.push(b"more").unwrap();
    }
}

#[test]
#[ignore]
fn child_commit_stages() {
    child_main("child_commit_stages", |_| {
        let victims = [
            Victim::MapInsertNew,
            Victim::MapReplace,
            Victim::MapRemove,
            Victim::MapInsertMoving(1),
            Victim::MapInsertMoving(2),
            Victim::MapClear,
            Victim::ListPush,
            Victim::ListInsertFront,
            Victim::ListPop,
            Victim::ListReverse,
        ];
        for v in victims {
            for stage in [
                Stage::Staged,
                Stage::Recorded,
                Stage::Applying,
                Stage::Applied,
            ] {
                let commit = match v {
                    Victim::MapInsertMoving(c) => c,
                    _ => 1,
                };
                run_victim(v, stage, commit);
            }
        }
    });
}

#[test]
fn a_writer_killed_at_any_commit_stage_leaves_before_or_after() {
    common::run_in_child("stages", "child_commit_stages", &[]);
}

// ---------------------------------------------------------------------------
// Chaos: writers killed at random
// ---------------------------------------------------------------------------

const CHAOS_KEYS: u64 = 12;

#[derive(Clone, Debug)]
enum ChaosOp {
    Insert(u64, Vec<u8>),
    Remove(u64),
    Append(u64, u8),
    Push(Vec<u8>),
    Pop,
    InsertFront(Vec<u8>),
    Reverse,
}

fn chaos_op(w: u64, i: u64) -> ChaosOp {
    let mut r = Rng::new(w * 7_777_777 + i * 31 + 5);
    let k = r.range(0, CHAOS_KEYS - 1);
    match r.range(0, 9) {
        0..=2 => {
            // Sizes that force moves now and then.
            let n = if r.range(0, 15) == 0 {
                r.range(2_000, 9_000)
            } else {
                r.range(0, 200)
            };
            ChaosOp::Insert(k, vec![(i % 251) as u8; n as usize])
        }
        3 => ChaosOp::Remove(k),
        4 => ChaosOp::Append(k, i as u8),
        5 | 6 => ChaosOp::Push(format!("{w}:{i}").into_bytes()),
        7 => ChaosOp::Pop,
        8 => ChaosOp::InsertFront(format!("f{w}:{i}").into_bytes()),
        _ => ChaosOp::Reverse,
    }
}

fn wkey(w: u64, k: u64) -> Vec<u8> {
    format!("w{w}/{k}").into_bytes()
}

fn apply_chaos(m: &SharedMap, l: &SharedList, w: u64, op: &ChaosOp) {
    match op {
        ChaosOp::Insert(k, v) => {
            m.insert(&wkey(w, *k), v).unwrap();
        }
        ChaosOp::Remove(k) => {
            m.remove(&wkey(w, *k)).unwrap();
        }
        ChaosOp::Append(k, b) => {
            m.update(&wkey(w, *k), |old| {
                let mut v = old.map(<[u8]>::to_vec).unwrap_or_default();
                v.push(*b);
                Some(v)
            })
            .unwrap();
        }
        ChaosOp::Push(v) => l.push(v).unwrap(),
        ChaosOp::Pop => {
            l.pop().unwrap();
        }
        ChaosOp::InsertFront(v) => l.insert(0, v).unwrap(),
        ChaosOp::Reverse => l.reverse().unwrap(),
    }
}

/// The model of writer `w` after its first `n` operations.
fn chaos_model(w: u64, n: u64) -> (Vec<MapEntry>, Vec<Vec<u8>>) {
    let mut m: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut l: Vec<Vec<u8>> = Vec::new();
    for i in 0..n {
        match chaos_op(w, i) {
            ChaosOp::Insert(k, v) => {
                m.insert(wkey(w, k), v);
            }
            ChaosOp::Remove(k) => {
                m.remove(&wkey(w, k));
            }
            ChaosOp::Append(k, b) => m.entry(wkey(w, k)).or_default().push(b),
            ChaosOp::Push(v) => l.push(v),
            ChaosOp::Pop => {
                l.pop();
            }
            ChaosOp::InsertFront(v) => l.insert(0, v),
            ChaosOp::Reverse => l.reverse(),
        }
    }
    let mut e: Vec<_> = m.into_iter().collect();
    e.sort();
    (e, l)
}

const CHAOS_WRITERS: u64 = 3;
const CHAOS_ROUNDS: u64 = 12;

#[test]
#[ignore]
fn child_chaos() {
    child_main("child_chaos", |_| {
        let m = SharedMap::anonymous().unwrap();
        let lists: Vec<SharedList> = (0..CHAOS_WRITERS * CHAOS_ROUNDS)
            .map(|_| SharedList::anonymous().unwrap())
            .collect();
        // Ledger: operations each writer finished.
        let done: &[AtomicU64] = shared_mem((CHAOS_WRITERS * CHAOS_ROUNDS) as usize);
        let mut rng = Rng::new(0xC4A05);
        for round in 0..CHAOS_ROUNDS {
            let mut pids = Vec::new();
            for j in 0..CHAOS_WRITERS {
                let w = round * CHAOS_WRITERS + j;
                let pid = fork_raw();
                if pid == 0 {
                    let l = &lists[w as usize];
                    let mut i = 0;
                    loop {
                        apply_chaos(&m, l, w, &chaos_op(w, i));
                        i += 1;
                        done[w as usize].store(i, Ordering::SeqCst);
                    }
                }
                pids.push(pid);
            }
            // A reader runs alongside: every snapshot is readable.
            let reader = fork_raw();
            if reader == 0 {
                loop {
                    m.entries().unwrap();
                    for l in &lists {
                        l.to_vec().unwrap();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(rng.range(5, 60)));
            for pid in pids.iter().chain([&reader]) {
                // SAFETY: our own children.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            for pid in pids.into_iter().chain([reader]) {
                assert_eq!(reap_raw(pid), -libc::SIGKILL, "a chaos process failed");
            }
            // Every writer so far: its keys and its list are those of a
            // prefix of its operations: what the ledger says, or one more.
            let all = m.entries().unwrap();
            for w in 0..(round + 1) * CHAOS_WRITERS {
                let n = done[w as usize].load(Ordering::SeqCst);
                let prefix = format!("w{w}/").into_bytes();
                let mut mine: Vec<_> = all
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .cloned()
                    .collect();
                mine.sort();
                let l = lists[w as usize].to_vec().unwrap();
                let ok = [n, n + 1].iter().any(|&k| {
                    let (em, el) = chaos_model(w, k);
                    em == mine && el == l
                });
                assert!(
                    ok,
                    "writer {w} (ledger {n}) left a state no prefix of its operations gives"
                );
            }
        }
        assert!(m.generation() > 0, "the chaos never moved the map");
        eprintln!(
            "chaos: {} repairs, generation {}",
            m.repairs(),
            m.generation()
        );
    });
}

#[test]
fn writers_killed_at_random_leave_a_prefix_of_their_operations() {
    common::run_in_child("chaos", "child_chaos", &[]);
}

// ---------------------------------------------------------------------------
// Scribbling
// ---------------------------------------------------------------------------

fn acceptable(e: &ContainerError) -> bool {
    matches!(
        e,
        ContainerError::Corrupted(_)
            | ContainerError::Full { .. }
            | ContainerError::NoSpace { .. }
            | ContainerError::OutOfRange { .. }
    )
}

#[test]
fn scribbled_containers_give_typed_errors_only() {
    run("scribble", |ctx| {
        let seed = std::env::var("SHMRING_SCRIBBLE_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64
            });
        eprintln!("scribble seed {seed} (SHMRING_SCRIBBLE_SEED replays it)");
        for case in 0..6u64 {
            let (mname, lname) = (ctx.name("map"), ctx.name("list"));
            let m = SharedMap::create(&mname).unwrap();
            let l = SharedList::create(&lname).unwrap();
            for i in 0..300u32 {
                m.insert(&i.to_le_bytes(), &vec![i as u8; (i % 50) as usize])
                    .unwrap();
                l.push(&i.to_le_bytes()).unwrap();
            }
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let scribbler = {
                let stop = stop.clone();
                let paths = [mname.path(), lname.path()];
                std::thread::spawn(move || {
                    let mut r = Rng::new(seed ^ case);
                    let files: Vec<_> = paths
                        .iter()
                        .map(|p| std::fs::OpenOptions::new().write(true).open(p).unwrap())
                        .collect();
                    while !stop.load(Ordering::Relaxed) {
                        for f in &files {
                            let len = f.metadata().unwrap().len();
                            // Mostly the control block and the start of the
                            // regions; sometimes anywhere in the file.
                            let off = if r.range(0, 3) == 0 {
                                r.range(0, len - 8)
                            } else {
                                r.range(256, 4096 * 3).min(len - 8)
                            } & !7;
                            let word = match r.range(0, 3) {
                                0 => r.next_u64(),
                                1 => r.range(0, 64),
                                2 => r.range(0, len + 64),
                                _ => u64::MAX - r.range(0, 3),
                            };
                            let _ = f.write_at(&word.to_le_bytes(), off);
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                })
            };
            let mut r = Rng::new(seed.wrapping_add(case));
            let until = Instant::now() + Duration::from_millis(700);
            let (mut oks, mut errs) = (0u64, 0u64);
            while Instant::now() < until {
                let k = (r.range(0, 400) as u32).to_le_bytes();
                let v = vec![1u8; r.range(0, 300) as usize];
                let res: Result<(), ContainerError> = match r.range(0, 13) {
                    0 => m.get(&k).map(drop),
                    1 => m.insert(&k, &v).map(drop),
                    2 => m.remove(&k).map(drop),
                    3 => m.update(&k, |o| o.map(<[u8]>::to_vec)).map(drop),
                    4 => m.entries().map(drop),
                    5 => m.compare_and_swap(&k, None, Some(&v)).map(drop),
                    6 => l.push(&v),
                    7 => l.pop().map(drop),
                    8 => l.get(r.range(0, 400) as usize).map(drop),
                    9 => l.insert(0, &v),
                    10 => l.to_vec().map(drop),
                    11 => l.sort(),
                    _ => l.remove(0).map(drop),
                };
                match res {
                    Ok(()) => oks += 1,
                    Err(e) if acceptable(&e) => errs += 1,
                    Err(e) => panic!("scribble seed {seed}: unexpected error {e:?}"),
                }
                let _ = (m.len(), l.len(), m.generation());
            }
            stop.store(true, Ordering::Relaxed);
            scribbler.join().unwrap();
            eprintln!("case {case}: {oks} ok, {errs} typed errors");
            drop((m, l));
            SharedMap::unlink(&mname).unwrap();
            SharedList::unlink(&lname).unwrap();
        }
    });
}

// ---------------------------------------------------------------------------
// A full file system; closures that panic or re-enter
// ---------------------------------------------------------------------------

#[test]
fn a_full_file_system_is_no_space_and_changes_nothing() {
    run("no_space", |_| {
        let Some(fs) = common::SmallTmpfs::mount("size=1m,mode=0700") else {
            eprintln!("skipped: this process cannot mount a tmpfs (needs root)");
            return;
        };
        let m = SharedMap::builder()
            .create_at(fs.dir.path().join("m"))
            .unwrap();
        let mut n = 0u32;
        let err = loop {
            match m.insert(&n.to_le_bytes(), &[9u8; 1000]) {
                Ok(_) => n += 1,
                Err(e) => break e,
            }
            assert!(n < 100_000, "a 1 MiB file system never filled");
        };
        assert!(matches!(err, ContainerError::NoSpace { .. }), "{err:?}");
        // Nothing lost, nothing half-done, and it still works.
        assert_eq!(m.len(), n as usize);
        for i in 0..n {
            assert_eq!(m.get(&i.to_le_bytes()).unwrap(), Some(vec![9u8; 1000]));
        }
        // A move needs the old region and the new one at once: on a full
        // file system, room comes back by clearing (which releases the
        // region).
        m.clear().unwrap();
        m.insert(b"small", b"fits").unwrap();
        assert_eq!(m.get(b"small").unwrap(), Some(b"fits".to_vec()));
    });
}

#[test]
fn a_closure_that_panics_changes_nothing_and_one_that_writes_its_own_map_panics() {
    run("closures", |_| {
        let m = SharedMap::anonymous().unwrap();
        m.insert(b"k", b"v").unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            m.update(b"k", |_| panic!("the closure fails")).unwrap();
        }));
        assert!(r.is_err());
        // Unchanged, and the lock was released (this write would hang).
        assert_eq!(m.get(b"k").unwrap(), Some(b"v".to_vec()));
        m.insert(b"k2", b"v2").unwrap();
        // Reading inside the closure is fine (readers take no lock)...
        let seen = m
            .update(b"k", |old| {
                let other = m.get(b"k2").unwrap();
                Some([old.unwrap(), &other.unwrap()].concat())
            })
            .unwrap();
        assert_eq!(seen, Some(b"vv2".to_vec()));
        // ...writing would wait for itself: a panic with a clear message.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _ = m.update(b"k", |_| {
                let _ = m.insert(b"k3", b"x");
                None
            });
        }));
        let msg = r.unwrap_err();
        let msg = msg
            .downcast_ref::<&str>()
            .copied()
            .map(str::to_string)
            .or_else(|| msg.downcast_ref::<String>().cloned())
            .unwrap();
        assert!(msg.contains("its own update"), "{msg}");
        assert_eq!(m.get(b"k").unwrap(), Some(b"vv2".to_vec()));
        assert_eq!(m.get(b"k3").unwrap(), None);
        let l = SharedList::anonymous().unwrap();
        l.extend([b"b".as_slice(), b"a"]).unwrap();
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            l.sort_by(|_, _| panic!("no order")).unwrap();
        }));
        assert!(r.is_err());
        assert_eq!(l.to_vec().unwrap(), vec![b"b".to_vec(), b"a".to_vec()]);
        l.sort().unwrap();
        assert_eq!(l.to_vec().unwrap(), vec![b"a".to_vec(), b"b".to_vec()]);
    });
}

// ---------------------------------------------------------------------------
// Fork while another thread opens containers
// ---------------------------------------------------------------------------

#[test]
#[ignore]
fn child_fork_while_opening() {
    child_main("child_fork_while_opening", |_| {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A thread that opens and drops containers without pause: the
        // process's table of mappings is busy most of the time.
        let opener = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let m = SharedMap::anonymous().unwrap();
                    m.insert(b"k", b"v").unwrap();
                }
            })
        };
        for round in 0..300 {
            let pid = fork_raw();
            if pid == 0 {
                // The child of a fork taken while the opener may have held
                // the table: opening here must not wait for a thread that
                // does not exist in this process.
                let ok = SharedMap::anonymous()
                    .map(|m| m.insert(b"a", b"b").is_ok())
                    .unwrap_or(false);
                // SAFETY: leaving the forked child.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            // Reap, or call it a hang after 20 s.
            let mut st = 0;
            let give_up = Instant::now() + Duration::from_secs(20);
            loop {
                // SAFETY: our own child; `st` is a valid out-pointer.
                let r = unsafe { libc::waitpid(pid, &mut st, libc::WNOHANG) };
                if r == pid {
                    break;
                }
                if Instant::now() > give_up {
                    // SAFETY: our own child.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    reap_raw(pid);
                    panic!("fork {round}: the child hangs opening a container");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(
                libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0,
                "fork {round}: child failed"
            );
        }
        stop.store(true, Ordering::Relaxed);
        opener.join().unwrap();
    });
}

#[test]
fn a_fork_taken_while_another_thread_opens_containers_can_open_them() {
    common::run_in_child("fork_opening", "child_fork_while_opening", &[]);
}
