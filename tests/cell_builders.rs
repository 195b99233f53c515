//! `Value::builder()` and `Array::builder()`: where the segment lives, who
//! removes the name, permissions, and `open_or_create` checking what it
//! finds (type, length). The racing processes are in
//! `tests/separate_programs.rs`.
#![cfg(not(loom))]

mod common;

use common::run;
use shmring::{Array, SegmentError, Value};
use std::os::unix::fs::PermissionsExt;

#[test]
fn a_named_value_stays_until_unlinked_unless_persist_false() {
    run("cb_value_names", |ctx| {
        let kept = ctx.removed_name("kept");
        let v = Value::<u32>::builder().create(&kept, 7).unwrap();
        drop(v);
        assert!(kept.exists(), "names stay by default");
        assert_eq!(Value::<u32>::open(&kept).unwrap().load(), 7);
        Value::<u32>::unlink(&kept).unwrap();
        assert!(!kept.exists());

        let private = ctx.removed_name("private");
        let v = Value::<u32>::builder()
            .persist(false)
            .create(&private, 1)
            .unwrap();
        let other = Value::<u32>::open(&private).unwrap();
        drop(other);
        assert!(private.exists(), "only the creating handle removes it");
        drop(v);
        assert!(
            !private.exists(),
            "persist(false): removed with its creator"
        );
    });
}

#[test]
fn a_named_array_stays_until_unlinked_unless_persist_false() {
    run("cb_array_names", |ctx| {
        let kept = ctx.removed_name("kept");
        drop(Array::<f64>::builder().create(&kept, 3).unwrap());
        assert!(kept.exists(), "names stay by default");
        assert_eq!(Array::<f64>::open(&kept).unwrap().len(), 3);
        Array::<f64>::unlink(&kept).unwrap();
        assert!(!kept.exists());

        let private = ctx.removed_name("private");
        let a = Array::<f64>::builder()
            .persist(false)
            .create_from(&private, &[1.0, 2.0])
            .unwrap();
        assert_eq!(a.path().unwrap(), private.path());
        drop(a);
        assert!(
            !private.exists(),
            "persist(false): removed with its creator"
        );
    });
}

#[test]
fn value_and_array_at_a_file_path() {
    run("cb_paths", |_ctx| {
        let dir = tempfile::tempdir().unwrap();
        let vp = dir.path().join("value");
        let v = Value::<i64>::builder().create_at(&vp, -5).unwrap();
        assert_eq!(v.path().unwrap(), vp);
        let seen = Value::<i64>::builder().open_at(&vp).unwrap();
        v.fetch_add(2);
        assert_eq!(seen.load(), -3);
        assert!(matches!(
            Value::<i64>::builder().create_at(&vp, 0),
            Err(SegmentError::AlreadyExists(_))
        ));

        let ap = dir.path().join("array");
        let a = Array::<u16>::builder().create_at(&ap, 4).unwrap();
        a.store(3, 9);
        let b = Array::<u16>::builder().open_at(&ap).unwrap();
        assert_eq!(b.to_vec(), vec![0, 0, 0, 9]);
        drop((a, b));
        assert!(ap.exists(), "a file stays until removed");
    });
}

#[test]
fn open_or_create_opens_what_is_there_and_checks_it() {
    run("cb_open_or_create", |ctx| {
        let name = ctx.name("v");
        let first = Value::<u64>::builder().open_or_create(&name, 10).unwrap();
        let second = Value::<u64>::builder().open_or_create(&name, 99).unwrap();
        assert_eq!(second.load(), 10, "the existing value, not a new one");
        first.fetch_add(1);
        assert_eq!(second.load(), 11);
        assert!(matches!(
            Value::<u32>::open_or_create(&name, 0),
            Err(SegmentError::TypeMismatch { .. })
        ));
        assert!(matches!(
            Array::<u64>::open_or_create(&name, 1),
            Err(SegmentError::WrongKind { .. })
        ));

        let bins = ctx.name("a");
        let a = Array::<u32>::builder().open_or_create(&bins, 4).unwrap();
        a.store(0, 5);
        let b = Array::<u32>::open_or_create(&bins, 4).unwrap();
        assert_eq!(b.load(0), 5);
        match Array::<u32>::builder().open_or_create(&bins, 5) {
            Err(SegmentError::LengthMismatch { expected, found }) => {
                assert_eq!((expected, found), (5, 4));
            }
            other => panic!("expected LengthMismatch, got {other:?}"),
        }
        assert!(matches!(
            Array::<u32>::builder().open_len(&bins, 3),
            Err(SegmentError::LengthMismatch { .. })
        ));
        assert!(matches!(
            Array::<u64>::open_or_create(&bins, 4),
            Err(SegmentError::TypeMismatch { .. })
        ));
    });
}

#[test]
fn mode_and_trust_shared() {
    run("cb_mode", |ctx| {
        let name = ctx.name("shared");
        let v = Value::<u8>::builder().mode(0o660).create(&name, 1).unwrap();
        let mode = std::fs::metadata(v.path().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o660);
        assert!(matches!(
            Value::<u8>::open(&name),
            Err(SegmentError::Untrusted(_))
        ));
        let trusted = Value::<u8>::builder()
            .trust_shared(true)
            .open(&name)
            .unwrap();
        assert_eq!(trusted.load(), 1);

        let bins = ctx.name("bins");
        let _a = Array::<u8>::builder().mode(0o660).create(&bins, 2).unwrap();
        assert!(matches!(
            Array::<u8>::open(&bins),
            Err(SegmentError::Untrusted(_))
        ));
        assert_eq!(
            Array::<u8>::builder()
                .trust_shared(true)
                .open(&bins)
                .unwrap()
                .len(),
            2
        );
    });
}

#[test]
fn anonymous_builders_share_across_handles() {
    run("cb_anonymous", |_ctx| {
        let v = Value::<u32>::builder().create_anonymous(3).unwrap();
        assert!(v.path().is_none() && v.raw_fd().is_some());
        let a = Array::<u32>::builder()
            .create_anonymous_from(&[1, 2, 3])
            .unwrap();
        assert!(a.path().is_none());
        assert_eq!(a.clone().to_vec(), vec![1, 2, 3]);
        let z = Array::<u32>::builder().create_anonymous(2).unwrap();
        assert_eq!(z.to_vec(), vec![0, 0]);
    });
}
