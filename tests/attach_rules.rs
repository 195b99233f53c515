//! Attach rules: what opening a segment refuses, and with which error.
//! Named segments are for mutually trusting processes of one user
//! (`docs/security.md`); anything else is refused unless the caller says it
//! trusts shared segments.

mod common;

use common::*;
use shmring::__internal::VERSION;
use shmring::__internal::{Location, Segment, SegmentOptions};
use shmring::{Event, Flavor, Queue, SegmentError, Shared};
use std::os::unix::fs::PermissionsExt;

/// A name someone else made first (any file, not a shmring segment) is
/// never reused by `create` and never read as a queue by `open`.
#[test]
fn a_name_precreated_by_someone_else() {
    run("attach_precreated", |ctx| {
        let name = ctx.name("q");
        std::fs::write(name.path(), vec![0xAB; 4096]).unwrap();
        std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Queue::<u64>::create(&name, Flavor::Spsc, 4),
            Err(SegmentError::AlreadyExists(_))
        ));
        assert!(matches!(
            Queue::<u64>::open(&name),
            Err(SegmentError::Corrupted(_))
        ));
        // An empty file (a creator that has not started, or a squatter):
        // NotInitialized after the init timeout, never a hang.
        std::fs::write(name.path(), b"").unwrap();
        assert!(matches!(
            Queue::<u64>::builder()
                .init_timeout(std::time::Duration::from_millis(20))
                .open(&name),
            Err(SegmentError::NotInitialized)
        ));
        Queue::<u64>::unlink(&name).unwrap();
    });
}

/// A segment owned by another user is refused (checked by owner, since
/// permission bits do not bind root); `trust_shared` opts in.
#[test]
fn wrong_owner() {
    run("attach_owner", |ctx| {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("not root: cannot give a file to another user; checked by mode only");
            return;
        }
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
        std::os::unix::fs::chown(name.path(), Some(65534), Some(65534)).unwrap();
        match Queue::<u64>::open(&name) {
            Err(SegmentError::Untrusted(m)) => assert!(m.contains("uid 65534"), "{m}"),
            r => panic!("expected Untrusted, got {r:?}"),
        }
        let trusted = Queue::<u64>::builder()
            .trust_shared(true)
            .open(&name)
            .unwrap();
        let (tx, rx) = (q.sender().unwrap(), trusted.receiver().unwrap());
        tx.send(7).unwrap();
        assert_eq!(rx.recv(), Ok(7));
    });
}

/// A segment writable by group or others (here made so on purpose with the
/// builder's `mode`) is refused unless the opener trusts shared segments;
/// group- or world-readable is fine.
#[test]
fn wrong_mode() {
    run("attach_mode", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::builder()
            .flavor(Flavor::Spsc)
            .capacity(4)
            .mode(0o666)
            .create(&name)
            .unwrap();
        match Queue::<u64>::open(&name) {
            Err(SegmentError::Untrusted(m)) => assert!(m.contains("666"), "{m}"),
            r => panic!("expected Untrusted, got {r:?}"),
        }
        assert!(Queue::<u64>::builder()
            .trust_shared(true)
            .open(&name)
            .is_ok());
        std::fs::set_permissions(name.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(Queue::<u64>::open(&name).is_ok());
        // The same rule for every kind of segment.
        let ev = ctx.name("ev");
        let _e = Shared::builder()
            .mode(0o620)
            .create(&ev, Event::new())
            .unwrap();
        assert!(matches!(
            Shared::<Event>::open(&ev),
            Err(SegmentError::Untrusted(_))
        ));
        drop(q);
    });
}

/// A file whose size disagrees with its header (truncated or grown by a
/// peer) is refused with both sizes.
#[test]
fn wrong_size() {
    run("attach_size", |ctx| {
        let name = ctx.name("q");
        let _q = Queue::<u64>::create(&name, Flavor::Mpmc, 8).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(name.path())
            .unwrap();
        let len = f.metadata().unwrap().len();
        f.set_len(len - 64).unwrap();
        match Queue::<u64>::open(&name) {
            Err(SegmentError::SizeMismatch { expected, found }) => {
                assert_eq!((expected, found), (len, len - 64));
            }
            r => panic!("expected SizeMismatch, got {r:?}"),
        }
        f.set_len(len + 4096).unwrap();
        assert!(matches!(
            Queue::<u64>::open(&name),
            Err(SegmentError::SizeMismatch { .. })
        ));
    });
}

/// A segment from another layout version is refused with both versions.
#[test]
fn stale_version() {
    run("attach_version", |ctx| {
        let name = ctx.name("q");
        let _q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
        let (seg, _) = Segment::open(
            &Location::Named(name.as_str().to_string()),
            &SegmentOptions::default(),
        )
        .unwrap();
        seg.header().set_version_for_test(VERSION - 1);
        match Queue::<u64>::open(&name) {
            Err(SegmentError::VersionMismatch { expected, found }) => {
                assert_eq!((expected, found), (VERSION, VERSION - 1));
            }
            r => panic!("expected VersionMismatch, got {r:?}"),
        }
    });
}

/// A name in /dev/shm that is a symbolic link (to a real segment, even a
/// valid one) is not followed.
#[test]
fn symlink_in_dev_shm() {
    run("attach_symlink", |ctx| {
        let real = ctx.name("real");
        let link = ctx.name("link");
        let _q = Queue::<u64>::create(&real, Flavor::Spsc, 4).unwrap();
        std::os::unix::fs::symlink(real.path(), link.path()).unwrap();
        match Queue::<u64>::open(&link) {
            Err(SegmentError::Untrusted(m)) => assert!(m.contains("symbolic link"), "{m}"),
            r => panic!("expected Untrusted, got {r:?}"),
        }
        assert!(matches!(
            Queue::<u64>::create(&link, Flavor::Spsc, 4),
            Err(SegmentError::AlreadyExists(_))
        ));
        std::fs::remove_file(link.path()).unwrap();
    });
}
