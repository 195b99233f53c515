//! Looking at segments from outside (`shmring ls / inspect / gc`): reports
//! read the header and control block, foreign files are skipped, and gc
//! removes only what nobody uses.

mod common;

use common::*;
use shmring::shm::inspect::{gc, inspect, scan};
use shmring::shm::segment::Location;
use shmring::{ByteQueue, Flavor, Kind, Queue, Role};

/// Child: opens the path-based queue `args[0]`, attaches a sender, and
/// waits to be killed.
#[test]
#[ignore = "child process entry point"]
fn child_attach_and_wait() {
    child_main("child_attach_and_wait", |a: Args| {
        let q = Queue::<u64>::builder().open_at(a.str(0)).unwrap();
        let _tx = q.sender().unwrap();
        sleep_forever();
    });
}

#[test]
fn reports_queue_state_and_skips_foreign_files() {
    run("inspect_report", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Mpmc, 8).unwrap();
        let (tx, _rx) = (q.sender().unwrap(), q.receiver().unwrap());
        for v in 0..3 {
            tx.send(v).unwrap();
        }
        let r = inspect(&Location::Named(name.as_str().to_string())).unwrap();
        assert_eq!(r.kind, Kind::Queue);
        assert_eq!(r.flavor, Some(Flavor::Mpmc));
        assert_eq!((r.capacity, r.occupancy), (8, Some(3)));
        assert_eq!(r.lost, Some(0));
        assert_eq!(r.endpoints.len(), 2);
        assert!(r
            .endpoints
            .iter()
            .all(|e| e.alive && e.pid == std::process::id()));
        assert!(r.endpoints.iter().any(|e| e.role == Role::Receiver));
        assert!(r.in_use());

        let bq = ctx.name("b");
        let _b = ByteQueue::create(&bq, Flavor::Spsc, 4, 1000).unwrap();
        let rb = inspect(&Location::Named(bq.as_str().to_string())).unwrap();
        assert_eq!((rb.kind, rb.max_message), (Kind::ByteQueue, Some(1000)));

        // A directory listing: shmring segments only.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("foreign.txt"), b"not ours at all").unwrap();
        let p = dir.path().join("q.shm");
        let _pq = Queue::<u32>::builder().capacity(4).create_at(&p).unwrap();
        let found = scan(dir.path());
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].as_ref().unwrap().path, p);
    });
}

#[test]
fn gc_removes_only_unused_segments() {
    run("inspect_gc", |ctx| {
        let _ = ctx;
        let dir = tempfile::tempdir().unwrap();
        // Unused: created, persisted, every handle dropped.
        let unused = dir.path().join("unused.shm");
        Queue::<u64>::builder()
            .capacity(4)
            .persist(true)
            .create_at(&unused)
            .unwrap();
        // In use by another process (it maps it and holds a sender).
        let used = dir.path().join("used.shm");
        let q = Queue::<u64>::builder()
            .capacity(4)
            .persist(true)
            .create_at(&used)
            .unwrap();
        let mut child = spawn_child("child_attach_and_wait", &[used.to_str().unwrap()]);
        wait_until("the child's sender", || q.endpoints().0 == 1);
        drop(q);
        // A foreign file is never touched.
        let foreign = dir.path().join("foreign.bin");
        std::fs::write(&foreign, vec![0u8; 4096]).unwrap();

        let dry = gc(dir.path(), true);
        assert!(dry.iter().all(|o| !o.removed));
        assert!(unused.exists());

        let out = gc(dir.path(), false);
        assert!(!unused.exists(), "{out:?}");
        assert!(used.exists(), "a segment in use is kept: {out:?}");
        assert!(foreign.exists());

        // Once its user is gone, it goes too.
        kill_child(&mut child);
        gc(dir.path(), false);
        assert!(!used.exists());
        assert!(foreign.exists());
    });
}
