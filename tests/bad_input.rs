//! Bad input gets a clear, typed error, never a panic: missing, mistyped,
//! misconfigured, half-made, truncated or scribbled segments, bad names and
//! bad capacities. Every case leaves nothing behind in `/dev/shm`.
#![cfg(not(loom))]

mod common;

use bytemuck::{Pod, Zeroable};
use common::{run, Ctx, Rng, ShmName};
use shmring::__internal::{HeaderFields, HEADER_LEN, VERSION};
use shmring::__internal::{Location, Segment, SegmentOptions};
use shmring::{Flavor, Kind, Queue, SegmentError};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

/// Same size and alignment as `u64`, another type.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Nanos(u64);

/// Same size as `u64`, another alignment.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
struct Pair {
    a: u32,
    b: u32,
}

/// A named SPSC `u64` queue of capacity 8 that stays after its creator is
/// dropped (so that the test can damage the file), and its byte size.
fn persisted_queue(ctx: &Ctx) -> (ShmName, u64) {
    let name = ctx.raw_name("q");
    let q = Queue::<u64>::builder()
        .capacity(8)
        .persist(true)
        .create(&name)
        .unwrap();
    let len = q.info().total_len;
    drop(q);
    assert!(name.exists());
    assert_eq!(std::fs::metadata(name.path()).unwrap().len(), len);
    (name, len)
}

fn write_at(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn open_u64(name: &str) -> Result<Queue<u64>, SegmentError> {
    Queue::<u64>::builder()
        .init_timeout(Duration::from_millis(50))
        .open(name)
}

#[test]
fn missing_name_is_not_found() {
    run("bad_missing", |ctx| {
        let name = ctx.raw_name("never-created");
        match Queue::<u64>::open(&name) {
            Err(SegmentError::NotFound(n)) => assert!(n.contains(name.as_str())),
            r => panic!("expected NotFound, got {r:?}"),
        }
        assert!(matches!(
            Queue::<u64>::unlink(&name),
            Err(SegmentError::NotFound(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Queue::<u64>::builder().open_at(dir.path().join("nothing")),
            Err(SegmentError::NotFound(_))
        ));
        assert!(!name.exists());
    });
}

#[test]
fn wrong_element_type_is_type_mismatch() {
    run("bad_type", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 8).unwrap();
        let mine = q.info().elem;
        assert_eq!((mine.size, mine.align), (8, 8));

        match Queue::<u32>::open(&name) {
            Err(SegmentError::TypeMismatch { expected, found }) => {
                assert_eq!(expected.size, 4);
                assert_eq!(found.size, 8);
                assert_eq!(found, mine);
                let msg = SegmentError::TypeMismatch { expected, found }.to_string();
                assert!(msg.contains("size 4") && msg.contains("size 8"), "{msg}");
            }
            r => panic!("u32 over u64: expected TypeMismatch, got {r:?}"),
        }
        // Same size and alignment: only the fingerprint tells them apart.
        match Queue::<Nanos>::open(&name) {
            Err(SegmentError::TypeMismatch { expected, found }) => {
                assert_eq!((expected.size, expected.align), (8, 8));
                assert_eq!((found.size, found.align), (8, 8));
                assert_ne!(expected.fingerprint, found.fingerprint);
                let msg = SegmentError::TypeMismatch { expected, found }.to_string();
                assert!(
                    msg.contains(&format!("{:#018x}", expected.fingerprint))
                        && msg.contains(&format!("{:#018x}", found.fingerprint)),
                    "{msg}"
                );
                // Both types by name (the segment records its type's name).
                assert!(msg.contains("`u64`") && msg.contains("Nanos`"), "{msg}");
            }
            r => panic!("Nanos over u64: expected TypeMismatch, got {r:?}"),
        }
        // Same size, another alignment.
        match Queue::<Pair>::open(&name) {
            Err(SegmentError::TypeMismatch { expected, found }) => {
                assert_eq!((expected.size, expected.align), (8, 4));
                assert_eq!((found.size, found.align), (8, 8));
            }
            r => panic!("Pair over u64: expected TypeMismatch, got {r:?}"),
        }
        // The queue itself is unharmed.
        let tx = q.sender().unwrap();
        tx.send(1).unwrap();
        assert_eq!(
            Queue::<u64>::open(&name)
                .unwrap()
                .receiver()
                .unwrap()
                .recv(),
            Ok(1)
        );
    });
}

#[test]
fn wrong_flavor_or_capacity_is_refused() {
    run("bad_flavor_cap", |ctx| {
        let name = ctx.name("q");
        let _q = Queue::<u64>::create(&name, Flavor::Spsc, 8).unwrap();
        match Queue::<u64>::builder().flavor(Flavor::Mpmc).open(&name) {
            Err(e @ SegmentError::FlavorMismatch { .. }) => {
                let SegmentError::FlavorMismatch { expected, found } = e else {
                    unreachable!()
                };
                assert_eq!((expected, found), (Flavor::Mpmc, Flavor::Spsc));
                let msg = e.to_string();
                assert!(msg.contains("spsc") && msg.contains("mpmc"), "{msg}");
            }
            r => panic!("expected FlavorMismatch, got {r:?}"),
        }
        match Queue::<u64>::builder().capacity(16).open(&name) {
            Err(e @ SegmentError::CapacityMismatch { .. }) => {
                let msg = e.to_string();
                let SegmentError::CapacityMismatch { expected, found } = e else {
                    unreachable!()
                };
                assert_eq!((expected, found), (16, 8));
                assert!(msg.contains("16") && msg.contains('8'), "{msg}");
            }
            r => panic!("expected CapacityMismatch, got {r:?}"),
        }
        // open_or_create checks too, and does not replace the queue.
        assert!(matches!(
            Queue::<u64>::builder().capacity(9).open_or_create(&name),
            Err(SegmentError::CapacityMismatch {
                expected: 9,
                found: 8
            })
        ));
        // Matching expectations open fine.
        let q = Queue::<u64>::builder()
            .flavor(Flavor::Spsc)
            .capacity(8)
            .open(&name)
            .unwrap();
        assert_eq!(q.capacity(), 8);
    });
}

#[test]
fn bad_capacity_is_invalid_argument() {
    run("bad_capacity", |ctx| {
        let name = ctx.name("q");
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            match Queue::<u64>::create(&name, flavor, 0) {
                Err(SegmentError::InvalidArgument(m)) => assert!(m.contains("capacity"), "{m}"),
                r => panic!("capacity 0: {r:?}"),
            }
            assert!(matches!(
                Queue::<u64>::anonymous(flavor, 0),
                Err(SegmentError::InvalidArgument(_))
            ));
            assert!(matches!(
                Queue::<u64>::create(&name, flavor, u64::MAX),
                Err(SegmentError::InvalidArgument(_))
            ));
            assert!(!name.exists(), "a refused create left a file");
        }
        // Creating needs a capacity at all.
        assert!(matches!(
            Queue::<u64>::builder().create(&name),
            Err(SegmentError::InvalidArgument(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        assert!(matches!(
            Queue::<u64>::builder().capacity(0).create_at(&path),
            Err(SegmentError::InvalidArgument(_))
        ));
        assert!(!path.exists());
        // A queue too large to map (256 TiB) fails, and the failed create
        // removes what it had made.
        assert!(matches!(
            Queue::<[u8; 1 << 16]>::create(&name, Flavor::Spsc, 1 << 32),
            Err(SegmentError::InvalidArgument(_)
                | SegmentError::NoSpace { .. }
                | SegmentError::Io(_))
        ));
        assert!(!name.exists());
        // A size that overflows is refused as an argument.
        assert!(matches!(
            Queue::<[u8; 1 << 32]>::create(&name, Flavor::Spsc, 1 << 32),
            Err(SegmentError::InvalidArgument(_))
        ));
        assert!(!name.exists());
    });
}

#[test]
fn invalid_names_are_invalid_argument() {
    run("bad_names", |_| {
        let long = "x".repeat(300);
        for bad in [
            "",
            "/",
            "a/b",
            "/a/b",
            ".",
            "..",
            "nul\0byte",
            long.as_str(),
        ] {
            match Queue::<u64>::create(bad, Flavor::Spsc, 4) {
                Err(SegmentError::InvalidArgument(m)) => assert!(!m.is_empty()),
                r => panic!("create({bad:?}): expected InvalidArgument, got {r:?}"),
            }
            assert!(
                matches!(
                    Queue::<u64>::open(bad),
                    Err(SegmentError::InvalidArgument(_))
                ),
                "open({bad:?})"
            );
            assert!(
                matches!(
                    Queue::<u64>::unlink(bad),
                    Err(SegmentError::InvalidArgument(_))
                ),
                "unlink({bad:?})"
            );
        }
    });
}

#[test]
fn create_twice_is_already_exists() {
    run("bad_twice", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            match Queue::<u64>::create(&name, flavor, 4) {
                Err(e @ SegmentError::AlreadyExists(_)) => {
                    assert!(e.to_string().contains(name.as_str()), "{e}")
                }
                r => panic!("second create: expected AlreadyExists, got {r:?}"),
            }
        }
        assert!(matches!(
            Queue::<u32>::create(&name, Flavor::Spsc, 4),
            Err(SegmentError::AlreadyExists(_))
        ));
        // The refused creates removed nothing: the first queue still works.
        assert!(name.exists());
        let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
        tx.send(3).unwrap();
        assert_eq!(rx.recv(), Ok(3));
        // Path-backed too.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        let _p = Queue::<u64>::builder()
            .capacity(2)
            .create_at(&path)
            .unwrap();
        assert!(matches!(
            Queue::<u64>::builder().capacity(2).create_at(&path),
            Err(SegmentError::AlreadyExists(_))
        ));
        assert!(path.exists());
    });
}

#[test]
fn truncated_or_extended_file_is_size_mismatch() {
    run("bad_truncated", |ctx| {
        // In /dev/shm.
        let (name, len) = persisted_queue(ctx);
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(name.path())
            .unwrap();
        f.set_len(len / 2).unwrap();
        match open_u64(&name) {
            Err(e @ SegmentError::SizeMismatch { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains(&len.to_string()) && msg.contains(&(len / 2).to_string()),
                    "{msg}"
                );
                let SegmentError::SizeMismatch { expected, found } = e else {
                    unreachable!()
                };
                assert_eq!((expected, found), (len, len / 2));
            }
            r => panic!("half a file: expected SizeMismatch, got {r:?}"),
        }
        // Shorter than a header, but ours: still a size mismatch.
        f.set_len(100).unwrap();
        assert!(matches!(
            open_u64(&name),
            Err(SegmentError::SizeMismatch {
                expected: HEADER_LEN,
                found: 100
            })
        ));
        // Longer than the header says.
        let (name2, len2) = persisted_queue(ctx);
        let f2 = std::fs::OpenOptions::new()
            .write(true)
            .open(name2.path())
            .unwrap();
        f2.set_len(len2 + 4096).unwrap();
        assert!(matches!(
            open_u64(&name2),
            Err(SegmentError::SizeMismatch { expected, found }) if expected == len2 && found == len2 + 4096
        ));

        // At a path.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        let q = Queue::<u64>::builder()
            .capacity(100)
            .persist(true)
            .create_at(&path)
            .unwrap();
        let len = q.info().total_len;
        drop(q);
        assert!(path.exists());
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len / 2)
            .unwrap();
        assert!(matches!(
            Queue::<u64>::builder().open_at(&path),
            Err(SegmentError::SizeMismatch { expected, found }) if expected == len && found == len / 2
        ));
    });
}

#[test]
fn foreign_or_half_made_files() {
    run("bad_foreign", |ctx| {
        let mut rng = Rng::new(0xbad5eed);
        // Random bytes: not a shmring segment.
        for size in [256usize, 4096, 10] {
            let name = ctx.raw_name("random");
            let bytes = rng.bytes(size);
            assert_ne!(&bytes[..8], &[0u8; 8][..]);
            std::fs::write(name.path(), &bytes).unwrap();
            match open_u64(&name) {
                Err(SegmentError::Corrupted(why)) => assert!(!why.is_empty()),
                r => panic!("{size} random bytes: expected Corrupted, got {r:?}"),
            }
        }
        // An empty file: a creator that never got going.
        let name = ctx.raw_name("empty");
        std::fs::write(name.path(), b"").unwrap();
        assert!(matches!(open_u64(&name), Err(SegmentError::NotInitialized)));
        // Zeroed, sized, never published: a creator that died half-way.
        let name = ctx.raw_name("zeroes");
        std::fs::write(name.path(), vec![0u8; 4096]).unwrap();
        let e = open_u64(&name).unwrap_err();
        assert!(matches!(e, SegmentError::NotInitialized), "{e:?}");
        assert!(e.to_string().contains("not initialised"), "{e}");
    });
}

#[test]
fn scribbled_header_fields() {
    run("bad_header", |ctx| {
        // Version, written with std::fs at byte 8.
        let (name, _) = persisted_queue(ctx);
        write_at(&name.path(), 8, &99u32.to_le_bytes());
        match open_u64(&name) {
            Err(e @ SegmentError::VersionMismatch { .. }) => {
                let msg = e.to_string();
                assert!(
                    msg.contains("99") && msg.contains(&VERSION.to_string()),
                    "{msg}"
                );
                let SegmentError::VersionMismatch { expected, found } = e else {
                    unreachable!()
                };
                assert_eq!((expected, found), (VERSION, 99));
            }
            r => panic!("expected VersionMismatch, got {r:?}"),
        }

        // Version, through the header's test hook on a live mapping.
        let (name, _) = persisted_queue(ctx);
        let (seg, _) = Segment::open(
            &Location::Named(name.to_string()),
            &SegmentOptions::default(),
        )
        .unwrap();
        seg.header().set_version_for_test(VERSION + 1);
        drop(seg);
        assert!(matches!(
            open_u64(&name),
            Err(SegmentError::VersionMismatch { expected, found }) if expected == VERSION && found == VERSION + 1
        ));

        // Capacity (offset 48): the checksum no longer matches.
        let (name, _) = persisted_queue(ctx);
        write_at(&name.path(), 48, &4u64.to_le_bytes());
        match open_u64(&name) {
            Err(SegmentError::Corrupted(why)) => assert!(why.contains("checksum"), "{why}"),
            r => panic!("scribbled capacity: expected Corrupted, got {r:?}"),
        }

        // Total length (offset 104), made to match a resized file.
        let (name, len) = persisted_queue(ctx);
        write_at(&name.path(), 104, &(len * 2).to_le_bytes());
        std::fs::OpenOptions::new()
            .write(true)
            .open(name.path())
            .unwrap()
            .set_len(len * 2)
            .unwrap();
        assert!(matches!(open_u64(&name), Err(SegmentError::Corrupted(_))));

        // Magic.
        let (name, _) = persisted_queue(ctx);
        write_at(&name.path(), 0, b"NOTOURS!");
        assert!(matches!(open_u64(&name), Err(SegmentError::Corrupted(_))));

        // Init state back to "busy": the opener waits, then gives up.
        let (name, _) = persisted_queue(ctx);
        write_at(&name.path(), 12, &1u32.to_le_bytes());
        assert!(matches!(open_u64(&name), Err(SegmentError::NotInitialized)));
    });
}

/// Byte offsets of the queue's head and tail words (control block at 256).
const HEAD_OFFSET: u64 = 256;
const TAIL_OFFSET: u64 = 256 + 128;

#[test]
fn scribbled_indices_are_corrupted_not_a_hang() {
    run("bad_indices", |ctx| {
        use shmring::{RecvError, TryRecvError};
        // SPSC: the tail hint far beyond the head. A live receiver never
        // reads the hint (it polls the slot stamps), so it is unaffected:
        // it receives what was really sent, and the sender's next publish
        // rewrites the hint.
        let name = ctx.name("spsc");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 8).unwrap();
        let rx = q.receiver().unwrap();
        let tx = q.sender().unwrap();
        write_at(&name.path(), TAIL_OFFSET, &1_000_000u64.to_le_bytes());
        tx.send(7).unwrap();
        assert_eq!(rx.try_recv(), Ok(7));
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(q.len(), 0, "the send rewrote the hint");
        // Scribbled again: len is clamped to the capacity, and a new
        // endpoint refuses to attach to words that make no sense.
        write_at(&name.path(), TAIL_OFFSET, &1_000_000u64.to_le_bytes());
        assert_eq!(q.len(), 8, "len is clamped to the capacity");
        drop(tx);
        assert!(matches!(q.sender(), Err(SegmentError::Corrupted(_))));
        drop(rx);
        assert!(matches!(q.receiver(), Err(SegmentError::Corrupted(_))));

        // SPSC: the head (the consumer's word, read by the producer when
        // its cached copy says the ring is full) far beyond the tail.
        let name = ctx.name("spsc-head");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 8).unwrap();
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        write_at(&name.path(), HEAD_OFFSET, &1_000_000u64.to_le_bytes());
        for v in 0..8 {
            tx.try_send(v).unwrap();
        }
        assert!(tx.try_send(8).unwrap_err().is_corrupted());
        assert!(tx.send(8).unwrap_err().is_corrupted());
        assert!(tx
            .send_timeout(8, Duration::from_secs(60))
            .unwrap_err()
            .is_corrupted());
        // The receiver's position is its own: it still gets all eight.
        let mut buf = [0u64; 8];
        assert_eq!(rx.recv_slice(&mut buf), Ok(8));
        assert_eq!(buf, [0, 1, 2, 3, 4, 5, 6, 7]);

        // MPMC: a head whose slot index is out of range (capacity 5 -> laps
        // of 8; index 6 does not exist).
        let name = ctx.name("mpmc");
        let q = Queue::<u64>::create(&name, Flavor::Mpmc, 5).unwrap();
        let rx = q.receiver().unwrap();
        let tx = q.sender().unwrap();
        write_at(&name.path(), HEAD_OFFSET, &6u64.to_le_bytes());
        write_at(&name.path(), TAIL_OFFSET, &7u64.to_le_bytes());
        assert_eq!(rx.try_recv(), Err(TryRecvError::Corrupted));
        assert_eq!(rx.recv(), Err(RecvError::Corrupted));
        assert!(tx.try_send(1).unwrap_err().is_corrupted());
        assert!(tx.send(1).unwrap_err().is_corrupted());
        assert!(tx
            .send_timeout(1, Duration::from_secs(60))
            .unwrap_err()
            .is_corrupted());
    });
}

#[test]
fn another_kind_of_segment_is_wrong_kind() {
    run("bad_kind", |ctx| {
        let name = ctx.name("seg");
        let fields = {
            let mut f = HeaderFields::default();
            f.kind = 7;
            f.total_len = 4096;
            f
        };
        let seg = Segment::create(
            &Location::Named(name.to_string()),
            fields,
            &SegmentOptions::default(),
            |_| {},
        )
        .unwrap();
        match open_u64(&name) {
            Err(e @ SegmentError::WrongKind { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains('7') && msg.contains("queue"), "{msg}");
                let SegmentError::WrongKind { expected, found } = e else {
                    unreachable!()
                };
                assert_eq!((expected, found), (Kind::Queue, Kind::Unknown(7)));
            }
            r => panic!("expected WrongKind, got {r:?}"),
        }
        drop(seg);
    });
}

#[test]
fn path_backed_segments_and_symlinks() {
    run("bad_paths", |_| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.shm");
        let q = Queue::<u64>::builder()
            .flavor(Flavor::Mpmc)
            .capacity(5)
            .create_at(&path)
            .unwrap();
        assert_eq!(q.path().as_deref(), Some(path.as_path()));
        let other = Queue::<u64>::builder()
            .flavor(Flavor::Mpmc)
            .capacity(5)
            .open_at(&path)
            .unwrap();
        let tx = q.sender().unwrap();
        let rx = other.receiver().unwrap();
        for i in 0..20 {
            tx.send(i).unwrap();
            assert_eq!(rx.recv(), Ok(i));
        }

        // A symlink to it is refused, both to open and to create.
        let link = dir.path().join("link.shm");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        match Queue::<u64>::builder().open_at(&link) {
            Err(SegmentError::Untrusted(m)) => assert!(m.contains("symbolic link"), "{m}"),
            r => panic!("open_at(symlink): expected Untrusted, got {r:?}"),
        }
        assert!(Queue::<u64>::builder()
            .capacity(5)
            .create_at(&link)
            .is_err());
        // A dangling link is not followed to create its target.
        let target = dir.path().join("target.shm");
        let dangling = dir.path().join("dangling.shm");
        std::os::unix::fs::symlink(&target, &dangling).unwrap();
        assert!(Queue::<u64>::builder()
            .capacity(5)
            .create_at(&dangling)
            .is_err());
        assert!(!target.exists());

        // The file stays until removed: dropping every handle keeps it.
        drop((tx, rx, other));
        drop(q);
        assert!(path.exists());
        Queue::<u64>::builder().open_at(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
    });
}
