//! Segment lifecycle: who unlinks a name and when, persistence,
//! `open_or_create`, permissions, an anonymous queue passed to an exec'd
//! child by file descriptor, and endpoint counts.
#![cfg(not(loom))]

mod common;

use common::{child_main, kill_child, run, spawn_child, wait_ok, wait_until, Args};
use nix::fcntl::{FcntlArg, FdFlag};
use nix::sys::memfd::{memfd_create, MemFdCreateFlag};
use shmring::{Flavor, Queue, RecvError, SegmentError};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;

fn mode_of(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A queue builder whose creating handle removes the name when dropped
/// (`persist(false)`, the opt-in for names private to one program).
fn scoped(flavor: Flavor) -> shmring::QueueBuilder<u64> {
    Queue::<u64>::builder()
        .flavor(flavor)
        .capacity(4)
        .persist(false)
}

#[test]
fn persist_false_creator_unlinks_on_drop() {
    run("life_creator_unlinks", |ctx| {
        let name = ctx.name("q");
        let q = scoped(Flavor::Spsc).create(&name).unwrap();
        assert!(name.exists());
        assert_eq!(q.path(), Some(name.path()));
        drop(q);
        assert!(!name.exists(), "the creator's drop must unlink the name");

        // Handles made from the creator keep the segment (and the name)
        // until the last of them goes.
        let q = scoped(Flavor::Mpmc).create(&name).unwrap();
        let tx = q.sender().unwrap();
        let clone = q.clone();
        drop(q);
        assert!(name.exists());
        drop(clone);
        assert!(name.exists());
        tx.send(1).unwrap();
        drop(tx);
        assert!(!name.exists());
    });
}

#[test]
fn persist_keeps_the_name_until_unlink() {
    run("life_persist", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
        q.sender().unwrap().send(7).unwrap();
        drop(q);
        assert!(name.exists(), "names stay until removed (the default)");
        // Still a working queue, with its message.
        let q = Queue::<u64>::open(&name).unwrap();
        let rx = q.receiver().unwrap();
        assert_eq!(rx.try_recv(), Ok(7));
        Queue::<u64>::unlink(&name).unwrap();
        assert!(!name.exists());
        // The mapping outlives the name.
        let tx = q.sender().unwrap();
        tx.send(8).unwrap();
        assert_eq!(rx.try_recv(), Ok(8));
        assert!(matches!(
            Queue::<u64>::unlink(&name),
            Err(SegmentError::NotFound(_))
        ));

        // `Queue::persist` after the fact does the same.
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
        q.persist();
        drop(q);
        assert!(name.exists());
        Queue::<u64>::unlink(&name).unwrap();
        assert!(!name.exists());
    });
}

#[test]
fn opener_does_not_unlink() {
    run("life_opener", |ctx| {
        let name = ctx.name("q");
        let creator = scoped(Flavor::Spsc).create(&name).unwrap();
        let opener = Queue::<u64>::open(&name).unwrap();
        let rx = opener.receiver().unwrap();
        drop(opener);
        assert!(name.exists(), "an opener's drop must not unlink");
        drop(rx);
        assert!(name.exists());
        // The creator going first unlinks; an opener keeps working.
        let opener = Queue::<u64>::open(&name).unwrap();
        let tx = opener.sender().unwrap();
        let rx = opener.receiver().unwrap();
        drop(creator);
        assert!(!name.exists());
        tx.send(5).unwrap();
        assert_eq!(rx.recv(), Ok(5));
    });
}

/// Child: opens queue `args[0]` by name, sends 42, exits.
#[test]
#[ignore = "child process entry point"]
fn child_open_and_send() {
    child_main("child_open_and_send", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        q.sender().unwrap().send(42).unwrap();
    });
}

#[test]
fn opener_in_another_process_does_not_unlink() {
    run("life_opener_proc", |ctx| {
        let name = ctx.name("q");
        let q = scoped(Flavor::Spsc).create(&name).unwrap();
        let rx = q.receiver().unwrap();
        let mut child = spawn_child("child_open_and_send", &[&name]);
        assert_eq!(rx.recv(), Ok(42));
        wait_ok(&mut child);
        assert!(name.exists());
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
    });
}

#[test]
fn open_or_create_creates_then_opens() {
    run("life_open_or_create", |ctx| {
        let name = ctx.name("q");
        let builder = || {
            Queue::<u64>::builder()
                .flavor(Flavor::Mpmc)
                .capacity(6)
                .persist(false)
        };
        let first = builder().open_or_create(&name).unwrap();
        assert!(name.exists());
        assert_eq!(first.info().creator_pid, std::process::id());
        let second = builder().open_or_create(&name).unwrap();
        assert_eq!(second.info(), first.info(), "the same queue");
        let tx = first.sender().unwrap();
        let rx = second.receiver().unwrap();
        tx.send(11).unwrap();
        assert_eq!(rx.recv(), Ok(11));
        assert_eq!(first.endpoints(), (1, 1));
        assert_eq!(second.endpoints(), (1, 1));
        // The one that opened does not own the name; the creator does.
        drop(second);
        assert!(name.exists());
        drop((first, tx, rx));
        assert!(!name.exists());
    });
}

#[test]
fn permissions() {
    run("life_mode", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
        assert_eq!(mode_of(&name.path()), 0o600, "default mode");
        drop(q);

        let name = ctx.name("q640");
        let q = Queue::<u64>::builder()
            .capacity(4)
            .mode(0o640)
            .create(&name)
            .unwrap();
        assert_eq!(mode_of(&name.path()), 0o640);
        drop(q);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("q");
        let q = Queue::<u64>::builder()
            .capacity(4)
            .mode(0o644)
            .create_at(&path)
            .unwrap();
        assert_eq!(mode_of(&path), 0o644);
        drop(q);
        std::fs::remove_file(&path).unwrap();
        let q = Queue::<u64>::builder()
            .capacity(4)
            .create_at(&path)
            .unwrap();
        assert_eq!(mode_of(&path), 0o600);
        drop(q);
        assert!(path.exists(), "a file stays until removed");
    });
}

/// Child: reopens the anonymous queue whose memfd it inherited as fd
/// `args[0]`, checks it, and sends `0..args[1]`.
#[test]
#[ignore = "child process entry point"]
fn child_anonymous_fd() {
    child_main("child_anonymous_fd", |a: Args| {
        let n: i32 = a.get(0);
        // SAFETY: the parent cleared FD_CLOEXEC on this descriptor for us
        // and nothing else in this process knows or closes it: we own it.
        let fd = unsafe { OwnedFd::from_raw_fd(n) };
        let q = Queue::<u64>::builder().from_fd(fd).unwrap();
        assert_eq!(q.flavor(), Flavor::Spsc);
        assert_eq!(q.capacity(), 16);
        assert_eq!(q.path(), None);
        let tx = q.sender().unwrap();
        for i in 0..a.get::<u64>(1) {
            tx.send(i).unwrap();
        }
    });
}

#[test]
fn anonymous_queue_passed_by_fd_to_exec_child() {
    run("life_anon_fd", |_| {
        let q = Queue::<u64>::anonymous(Flavor::Spsc, 16).unwrap();
        assert_eq!(q.path(), None);
        let rx = q.receiver().unwrap();
        // A duplicate without FD_CLOEXEC, so that it survives the exec.
        let fd = q.fd().unwrap().try_clone_to_owned().unwrap();
        nix::fcntl::fcntl(fd.as_raw_fd(), FcntlArg::F_SETFD(FdFlag::empty()))
            .expect("clear FD_CLOEXEC");
        let count = 5_000u64;
        let mut child = spawn_child(
            "child_anonymous_fd",
            &[&fd.as_raw_fd().to_string(), &count.to_string()],
        );
        drop(fd);
        for i in 0..count {
            assert_eq!(rx.recv(), Ok(i));
        }
        assert_eq!(rx.recv(), Err(RecvError::Disconnected));
        wait_ok(&mut child);
    });
}

/// Child: opens `args[0]`, attaches a sender and a receiver, and sleeps
/// until killed.
#[test]
#[ignore = "child process entry point"]
fn child_hold_both() {
    child_main("child_hold_both", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let _tx = q.sender().unwrap();
        let _rx = q.receiver().unwrap();
        common::sleep_forever();
    });
}

#[test]
fn endpoints_count_live_senders_and_receivers() {
    run("life_endpoints", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Mpmc, 8).unwrap();
        assert_eq!(q.endpoints(), (0, 0));
        let txs: Vec<_> = (0..3).map(|_| q.sender().unwrap()).collect();
        let mut rxs: Vec<_> = (0..2).map(|_| q.receiver().unwrap()).collect();
        assert_eq!(q.endpoints(), (3, 2));
        rxs.pop();
        assert_eq!(q.endpoints(), (3, 1));
        drop(txs);
        assert_eq!(q.endpoints(), (0, 1));

        // Another process's endpoints count too, until it dies and is reaped.
        let mut child = spawn_child("child_hold_both", &[&name]);
        wait_until("the child's endpoints", || q.endpoints() == (1, 2));
        assert_eq!(Queue::<u64>::open(&name).unwrap().endpoints(), (1, 2));
        kill_child(&mut child);
        assert_eq!(q.reaped(), 0);
        q.reap_dead();
        assert_eq!(q.endpoints(), (0, 1));
        assert_eq!(q.reaped(), 2);
        q.reap_dead();
        assert_eq!(q.reaped(), 2, "reaping is idempotent");
    });
}

#[test]
fn endpoint_table_has_sixty_three_entries() {
    run("life_too_many", |_| {
        let q = Queue::<u64>::anonymous(Flavor::Mpmc, 4).unwrap();
        let mut txs: Vec<_> = (0..40).map(|_| q.sender().unwrap()).collect();
        let rxs: Vec<_> = (0..23).map(|_| q.receiver().unwrap()).collect();
        assert_eq!(q.endpoints(), (40, 23));
        match q.sender() {
            Err(e @ SegmentError::TooManyEndpoints(63)) => {
                assert!(e.to_string().contains("63"), "{e}")
            }
            r => panic!("a 64th endpoint: expected TooManyEndpoints(63), got {r:?}"),
        }
        assert!(matches!(
            q.receiver(),
            Err(SegmentError::TooManyEndpoints(_))
        ));
        // Freeing one makes room again.
        txs.pop();
        let rx = q.receiver().unwrap();
        assert_eq!(q.endpoints(), (39, 24));
        txs[0].send(1).unwrap();
        assert_eq!(rx.recv(), Ok(1));
        drop(rxs);
    });
}

/// Child: opens `args[0]`, attaches `args[1]` senders, sleeps until killed.
#[test]
#[ignore = "child process entry point"]
fn child_hold_many_senders() {
    child_main("child_hold_many_senders", |a: Args| {
        let q = Queue::<u64>::open(a.str(0)).unwrap();
        let _txs: Vec<_> = (0..a.get::<usize>(1))
            .map(|_| q.sender().unwrap())
            .collect();
        common::sleep_forever();
    });
}

#[test]
fn full_table_of_dead_endpoints_is_reclaimed_on_attach() {
    run("life_full_dead", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u64>::create(&name, Flavor::Mpmc, 4).unwrap();
        let mut child = spawn_child("child_hold_many_senders", &[&name, "60"]);
        wait_until("the child's senders", || q.endpoints() == (60, 0));
        let mut rxs: Vec<_> = (0..3).map(|_| q.receiver().unwrap()).collect();
        assert!(matches!(
            q.receiver(),
            Err(SegmentError::TooManyEndpoints(63))
        ));
        kill_child(&mut child);
        // The table is full, of dead entries: attaching reclaims them.
        rxs.push(q.receiver().unwrap());
        assert_eq!(q.reaped(), 60);
        assert_eq!(q.endpoints(), (0, 4));
        let tx = q.sender().unwrap();
        tx.send(3).unwrap();
        assert_eq!(rxs[3].recv(), Ok(3));
    });
}

// ---------------------------------------------------------------------------
// Issue 10: creation fails cleanly, seals are checked, dead creators recovered
// ---------------------------------------------------------------------------

#[test]
fn issue10_segment_larger_than_its_file_system_is_no_space() {
    run("life_no_space", |_| {
        let Some(fs) = common::SmallTmpfs::mount("size=8m,mode=0700") else {
            eprintln!("skipped: this process cannot mount a tmpfs (needs root)");
            return;
        };
        let path = fs.dir.path().join("big.shm");
        // 4 Mi u64 slots: 32 MiB and more, on an 8 MiB file system. Before
        // the fix this was created (a sparse file) and the first write past
        // 8 MiB killed the process with SIGBUS.
        match Queue::<u64>::builder().capacity(4 << 20).create_at(&path) {
            Err(SegmentError::NoSpace { needed, .. }) => assert!(needed > 8 << 20),
            Err(e) => panic!("expected NoSpace, got {e}"),
            Ok(q) => panic!("created {} bytes on an 8 MiB tmpfs", q.info().total_len),
        }
        assert!(!path.exists(), "a failed create leaves no file behind");
        // One that fits is created, and is usable to its last slot.
        let q = Queue::<u64>::builder()
            .capacity(1 << 16)
            .persist(false)
            .create_at(&path)
            .unwrap();
        let tx = q.sender().unwrap();
        for i in 0..(1 << 16) {
            tx.try_send(i).unwrap();
        }
        drop((tx, q));
        assert!(!path.exists());
    });
}

/// Bytes the file behind `fd` has allocated (st_blocks, 512-byte units).
fn allocated(fd: std::os::fd::BorrowedFd<'_>) -> u64 {
    nix::sys::stat::fstat(fd.as_raw_fd()).unwrap().st_blocks as u64 * 512
}

#[test]
fn an_anonymous_segment_is_not_allocated_ahead() {
    run("life_sparse_anon", |_| {
        // 1024 slots of 1 MiB: a GiB of slots, reserved, not committed.
        let q = shmring::ByteQueue::anonymous(Flavor::Mpmc, 1024, 1 << 20).unwrap();
        let total = q.info().total_len;
        assert!(total > 1 << 30, "{total}");
        let before = allocated(q.fd().unwrap());
        assert!(
            before < 16 << 20,
            "{before} of {total} bytes allocated at creation"
        );
        // Pages come with use: eight 1 MiB messages commit about 8 MiB (less
        // the pages creation touched already: each MPMC slot's stamp).
        let tx = q.sender().unwrap();
        for _ in 0..8 {
            tx.try_send(&vec![7u8; 1 << 20]).unwrap();
        }
        let after = allocated(q.fd().unwrap());
        assert!(after >= before + (7 << 20), "{before} -> {after}");
        assert!(after < before + (16 << 20), "{before} -> {after}");
        // A named segment, on a file system with a size, is allocated whole
        // (NoSpace at creation rather than SIGBUS later).
        let Some(fs) = common::SmallTmpfs::mount("size=64m,mode=0700") else {
            eprintln!("skipped the named half: this process cannot mount a tmpfs (needs root)");
            return;
        };
        let path = fs.dir.path().join("named.shm");
        let named = shmring::ByteQueue::builder()
            .capacity(16)
            .max_message_size(1 << 20)
            .persist(false)
            .create_at(&path)
            .unwrap();
        let total = named.info().total_len;
        let blocks = std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(&path).unwrap());
        assert!(blocks * 512 >= total, "named segment not allocated whole");
        drop(named);
    });
}

#[test]
fn issue10_from_fd_refuses_an_unsealed_file() {
    run("life_seals", |_| {
        let q = Queue::<u64>::anonymous(Flavor::Spsc, 16).unwrap();
        let len = q.info().total_len as usize;
        // The real memfd is sealed, and reopens.
        let sealed = q.fd().unwrap().try_clone_to_owned().unwrap();
        let seals = nix::fcntl::fcntl(sealed.as_raw_fd(), FcntlArg::F_GET_SEALS).unwrap();
        let want = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        assert_eq!(seals & want, want, "seals {seals:#x}");
        Queue::<u64>::builder().from_fd(sealed).unwrap();

        // A byte-for-byte copy in an unsealed memfd, and in a plain file:
        // both could be truncated under the mapping, so both are refused.
        let mut bytes = vec![0u8; len];
        let n = nix::sys::uio::pread(q.fd().unwrap(), &mut bytes, 0).unwrap();
        assert_eq!(n, len);
        let name = std::ffi::CString::new("copy").unwrap();
        let unsealed = memfd_create(&name, MemFdCreateFlag::MFD_ALLOW_SEALING).unwrap();
        assert_eq!(nix::unistd::write(&unsealed, &bytes).unwrap(), len);
        match Queue::<u64>::builder().from_fd(unsealed) {
            Err(SegmentError::Untrusted(m)) => assert!(m.contains("seal"), "{m}"),
            r => panic!("an unsealed memfd: expected Untrusted, got {:?}", r.err()),
        }
        let mut file = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        assert!(matches!(
            Queue::<u64>::builder().from_fd(OwnedFd::from(file)),
            Err(SegmentError::Untrusted(_))
        ));
    });
}

#[test]
fn issue10_anonymous_fd_is_close_on_exec() {
    run("life_cloexec", |_| {
        // The memfd does not leak into every program this process execs; a
        // child meant to have it gets a duplicate with FD_CLOEXEC cleared
        // (see `anonymous_queue_passed_by_fd_to_exec_child`).
        let q = Queue::<u64>::anonymous(Flavor::Spsc, 4).unwrap();
        let flags = nix::fcntl::fcntl(q.raw_fd().unwrap(), FcntlArg::F_GETFD).unwrap();
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
    });
}

/// Where the creation hook of a `child_die_creating` child signals that it
/// reached its stage, and which stage that is.
static PAUSE_AT: std::sync::OnceLock<(u32, std::path::PathBuf)> = std::sync::OnceLock::new();

fn pause_hook(stage: u32) {
    if let Some((at, marker)) = PAUSE_AT.get() {
        if *at == stage {
            std::fs::write(marker, b"paused").unwrap();
            common::sleep_forever();
        }
    }
}

/// Child: creates queue `args[0]` and stops at creation stage `args[1]`
/// (1: just after the exclusive create, header all zeros; 2: written but
/// not published), writes the marker file `args[2]`, and waits to be killed.
#[test]
#[ignore = "child process entry point"]
fn child_die_creating() {
    child_main("child_die_creating", |a: Args| {
        PAUSE_AT.set((a.get(1), a.str(2).into())).unwrap();
        shmring::__internal::test_hooks::CREATE
            .set(pause_hook)
            .unwrap();
        let _ = Queue::<u64>::create(a.str(0), Flavor::Mpmc, 8);
        panic!("creation should have paused at stage {}", a.str(1));
    });
}

/// Starts a child that dies (SIGKILL) in the middle of creating `name` at
/// `stage`, leaving the name unpublished.
fn kill_creator_at(name: &str, stage: u32) {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("paused");
    let mut child = spawn_child(
        "child_die_creating",
        &[name, &stage.to_string(), marker.to_str().unwrap()],
    );
    wait_until("the creator's pause", || marker.exists());
    // While it lives, the name is taken.
    assert!(matches!(
        Queue::<u64>::create(name, Flavor::Mpmc, 8),
        Err(SegmentError::AlreadyExists(_))
    ));
    kill_child(&mut child);
}

#[test]
fn issue10_name_of_a_creator_killed_before_publish_is_recovered() {
    run("life_dead_creator", |ctx| {
        for stage in [1, 2] {
            // create() takes over the name...
            let name = ctx.name("q");
            kill_creator_at(&name, stage);
            assert!(name.exists(), "the dead creator left its name");
            assert!(matches!(
                Queue::<u64>::builder()
                    .init_timeout(std::time::Duration::ZERO)
                    .open(&name),
                Err(SegmentError::NotInitialized)
            ));
            let q = Queue::<u64>::create(&name, Flavor::Spsc, 4).unwrap();
            assert_eq!(q.info().creator_pid, std::process::id());
            assert_eq!(q.flavor(), Flavor::Spsc);
            let (tx, rx) = (q.sender().unwrap(), q.receiver().unwrap());
            tx.send(stage as u64).unwrap();
            assert_eq!(rx.recv(), Ok(stage as u64));
            drop((q, tx, rx));
            assert!(name.exists(), "the recovered name stays, as any name");
            Queue::<u64>::unlink(&name).unwrap();

            // ...and so does open_or_create, of which racing threads
            // agree on one queue (exactly one of them recovers it).
            let name = ctx.name("q");
            kill_creator_at(&name, stage);
            let n: &'static str = Box::leak(name.as_str().to_string().into_boxed_str());
            let racers: Vec<_> = (0..4)
                .map(|_| {
                    std::thread::spawn(move || {
                        Queue::<u64>::builder()
                            .capacity(4)
                            .open_or_create(n)
                            .unwrap()
                    })
                })
                .collect();
            let qs: Vec<_> = racers.into_iter().map(|t| t.join().unwrap()).collect();
            assert!(qs.iter().all(|q| q.info() == qs[0].info()));
            let tx = qs[0].sender().unwrap();
            let rx = qs[3].receiver().unwrap();
            tx.send(7).unwrap();
            assert_eq!(rx.recv(), Ok(7));
            drop((qs, tx, rx));
            Queue::<u64>::unlink(&name).unwrap();
        }
    });
}
