//! Looking at segments from outside (`shmring ls / inspect / gc`): reports
//! read the header and control block, foreign files are skipped, and gc
//! removes only what nobody uses.

mod common;

use common::*;
use shmring::inspect::Location;
use shmring::inspect::{gc, inspect, scan};
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

/// Child: creates the persisted queue at `args[0]` (a path, or with
/// `args[1] == "ff"`, the file `q\xff.shm` in directory `args[0]`) and exits.
#[test]
#[ignore = "child process entry point"]
fn child_create_persisted() {
    child_main("child_create_persisted", |a: Args| {
        let path = child_path(&a);
        Queue::<u64>::builder()
            .capacity(4)
            .persist(true)
            .create_at(path)
            .unwrap();
    });
}

/// Child: creates, at path `args[0]`, a queue holding one message (and a
/// closed stream, when `args[1] == "closed"`), or with `args[1] ==
/// "shared"` a shared struct, and exits: state a later process may want.
#[test]
#[ignore = "child process entry point"]
fn child_create_with_state() {
    child_main("child_create_with_state", |a: Args| {
        let path = a.str(0);
        if a.str(1) == "shared" {
            shmring::Shared::<shmring::Event>::builder()
                .create_at(path, shmring::Event::new())
                .unwrap();
            return;
        }
        let q = Queue::<u64>::builder().capacity(4).create_at(path).unwrap();
        let tx = q.sender().unwrap();
        tx.send(1).unwrap();
        if a.str(1) == "closed" {
            assert!(tx.close());
        }
    });
}

/// Child: maps (opens, attaching no endpoint) the queue at `args[0]` (as
/// for `child_create_persisted`) and waits to be killed.
#[test]
#[ignore = "child process entry point"]
fn child_map_and_wait() {
    child_main("child_map_and_wait", |a: Args| {
        let _q = Queue::<u64>::builder().open_at(child_path(&a)).unwrap();
        sleep_forever();
    });
}

fn child_path(a: &Args) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let base = std::path::PathBuf::from(a.str(0));
    if a.0.get(1).map(String::as_str) == Some("ff") {
        base.join(std::ffi::OsStr::from_bytes(b"q\xff.shm"))
    } else {
        base
    }
}

#[test]
fn gc_removes_only_unused_segments() {
    run("inspect_gc", |ctx| {
        let _ = ctx;
        let dir = tempfile::tempdir().unwrap();
        // Unused: created and persisted by a process that has exited.
        let unused = dir.path().join("unused.shm");
        wait_ok(&mut spawn_child(
            "child_create_persisted",
            &[unused.to_str().unwrap()],
        ));
        // Unused, but its creator (this process) is alive: kept.
        let mine = dir.path().join("mine.shm");
        Queue::<u64>::builder()
            .capacity(4)
            .persist(true)
            .create_at(&mine)
            .unwrap();
        // In use by another process (it maps it and holds a sender).
        let used = dir.path().join("used.shm");
        wait_ok(&mut spawn_child(
            "child_create_persisted",
            &[used.to_str().unwrap()],
        ));
        let q = Queue::<u64>::builder().open_at(&used).unwrap();
        let mut child = spawn_child("child_attach_and_wait", &[used.to_str().unwrap()]);
        wait_until("the child's sender", || q.endpoints().0 == 1);
        drop(q);
        // Unused, creator dead, but holding what a later process may want:
        // an undelivered message (closed stream or not), shared state.
        let mut kept = Vec::new();
        for what in ["open", "closed", "shared"] {
            let path = dir.path().join(format!("{what}.shm"));
            wait_ok(&mut spawn_child(
                "child_create_with_state",
                &[path.to_str().unwrap(), what],
            ));
            kept.push(path);
        }
        // A foreign file is never touched.
        let foreign = dir.path().join("foreign.bin");
        std::fs::write(&foreign, vec![0u8; 4096]).unwrap();

        let dry = gc(dir.path(), true, true);
        assert!(dry.iter().all(|o| !o.removed));
        assert!(unused.exists());

        let mut out = gc(dir.path(), false, true);
        // Retried: a process another test thread is spawning may briefly
        // share gc's own mapping of the file (fork, before exec).
        wait_until("gc removes the unused segment", || {
            if unused.exists() {
                out = gc(dir.path(), false, true);
            }
            !unused.exists()
        });
        assert!(used.exists(), "a segment in use is kept: {out:?}");
        assert!(
            mine.exists(),
            "a segment whose creator lives is kept: {out:?}"
        );
        let why = out.iter().find(|o| o.path == mine).unwrap();
        assert!(why.reason.contains("alive"), "{}", why.reason);
        assert!(foreign.exists());
        for path in &kept {
            assert!(path.exists(), "names stay until removed: {out:?}");
            let why = out.iter().find(|o| &o.path == path).unwrap();
            assert!(why.reason.contains("shmring rm"), "{}", why.reason);
            std::fs::remove_file(path).unwrap();
        }

        // Once its user is gone, it goes too.
        kill_child(&mut child);
        wait_until("gc removes it once its user died", || {
            gc(dir.path(), false, true);
            !used.exists()
        });
        assert!(foreign.exists());
        std::fs::remove_file(&mine).unwrap();
    });
}

#[test]
fn issue10_gc_keeps_a_segment_mapped_through_a_non_utf8_path() {
    run("inspect_gc_non_utf8", |_| {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let path = dir.path().join(std::ffi::OsStr::from_bytes(b"q\xff.shm"));
        // Created by a process that has exited (so only the mapping can
        // keep it), then mapped by a live one through its non-UTF-8 path:
        // that process's /proc/<pid>/maps is not UTF-8 either. No endpoint
        // is attached, as with a Value, Array or Shared.
        wait_ok(&mut spawn_child("child_create_persisted", &[d, "ff"]));
        let mut child = spawn_child("child_map_and_wait", &[d, "ff"]);
        let pid = child.id();
        wait_until("the child's mapping", || {
            shmring::inspect::mappers(&path).pids.contains(&pid)
        });
        let out = gc(dir.path(), false, true);
        assert!(path.exists(), "a mapped segment is kept: {out:?}");
        assert!(out[0].reason.contains("mapped by"), "{out:?}");
        kill_child(&mut child);
        // Retried: while gc maps the file to inspect it, a process that
        // another test thread is spawning (fork, before exec) maps it too.
        wait_until("gc removes it once its mapper died", || {
            gc(dir.path(), false, true);
            !path.exists()
        });
    });
}

/// Child: makes itself non-dumpable (its maps unreadable to processes
/// without CAP_SYS_PTRACE), maps the queue at `args[0]`, waits to be killed.
#[test]
#[ignore = "child process entry point"]
fn child_hide_and_wait() {
    child_main("child_hide_and_wait", |a: Args| {
        // SAFETY: prctl with integer arguments.
        unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
        let _q = Queue::<u64>::builder().open_at(a.str(0)).unwrap();
        sleep_forever();
    });
}

#[test]
fn issue10_gc_keeps_what_an_unreadable_process_may_map() {
    run("inspect_gc_unreadable", |_| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q.shm");
        let p = path.to_str().unwrap();
        wait_ok(&mut spawn_child("child_create_persisted", &[p]));
        let mut child = spawn_child("child_hide_and_wait", &[p]);
        let pid = child.id();
        wait_until("the child's mapping or its hiding", || {
            let m = shmring::inspect::mappers(&path);
            m.pids.contains(&pid) || m.unreadable.contains(&pid)
        });
        let m = shmring::inspect::mappers(&path);
        let out = gc(dir.path(), false, false);
        assert!(path.exists(), "{out:?}");
        if m.unreadable.contains(&pid) {
            assert!(out[0].reason.contains("cannot read"), "{out:?}");
        } else {
            eprintln!("this process can read non-dumpable processes' maps (CAP_SYS_PTRACE)");
        }
        kill_child(&mut child);
        wait_until("gc removes it once its mapper died", || {
            gc(dir.path(), false, true);
            !path.exists()
        });
    });
}
