//! Promises of the cross-process layer under the conditions that broke them
//! once: reapers racing over one dead endpoint, peers in another pid
//! namespace, handles inherited through `fork`, and a receiver killed while
//! reading in place. Every test starts real processes.
#![cfg(not(loom))]

mod common;

use common::{
    child_main, mount_private_proc, run, run_in_child, spawn_child, thread_state, wait_killed,
    wait_until, Args,
};
use shmring::{ByteQueue, Flavor, Pipe, Queue, SegmentError, TryRecvError};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

/// Child: attaches a sender to queue `args[0]` (u8, MPMC), sends one
/// message to say it is attached, and sleeps until killed.
#[test]
#[ignore = "child process entry point"]
fn child_sender_then_hang() {
    child_main("child_sender_then_hang", |a: Args| {
        let q = Queue::<u8>::open(a.str(0)).unwrap();
        let tx = q.sender().unwrap();
        tx.send(1).unwrap();
        common::sleep_forever();
    });
}

/// Two reapers that listed the same dead sender must not both act on it:
/// the one that loses must not clear the role bit of the sender that
/// claimed the freed entry meanwhile. The ring is full, so each reaper's
/// repair scans millions of positions: a long window between listing the
/// dead and freeing them, in which a new sender attaches.
#[test]
fn racing_reapers_never_detach_a_live_endpoint() {
    run("prom_reapers", |ctx| {
        const CAP: u64 = 1 << 21;
        for round in 0..6 {
            let name = ctx.name(&format!("q{round}"));
            let q = Queue::<u8>::create(&name, Flavor::Mpmc, CAP).unwrap();
            let rx = q.receiver().unwrap();
            let mut child = spawn_child("child_sender_then_hang", &[&name]);
            wait_until("the child's message", || rx.try_recv() == Ok(1));
            // Fill the ring from here (a second sender, dropped after).
            {
                let tx = q.sender().unwrap();
                let ones = vec![7u8; 4096];
                let mut sent = 0;
                while sent < CAP {
                    let n = (CAP - sent).min(ones.len() as u64) as usize;
                    tx.send_slice(&ones[..n]).unwrap();
                    sent += n as u64;
                }
            }
            child.kill().unwrap();
            wait_killed(&mut child);
            assert_eq!(q.endpoints(), (1, 1), "the dead sender is still listed");

            let go = Arc::new(Barrier::new(3));
            let reapers: Vec<_> = (0..2)
                .map(|_| {
                    let (q, go) = (q.clone(), go.clone());
                    thread::spawn(move || {
                        go.wait();
                        q.reap_dead();
                    })
                })
                .collect();
            go.wait();
            // Attach as soon as the entry is free: the new sender is live.
            let tx = loop {
                if q.reaped() > 0 {
                    break q.sender().unwrap();
                }
                std::hint::spin_loop();
            };
            for r in reapers {
                r.join().unwrap();
            }
            assert_eq!(q.reaped(), 1, "one dead endpoint, reaped once");
            assert_eq!(
                q.endpoints(),
                (1, 1),
                "round {round}: a reaper cleared the live sender's bit"
            );
            assert!(rx.is_connected());
            // Drain, then the live sender's message arrives: no Disconnected.
            for _ in 0..CAP {
                assert_eq!(rx.try_recv(), Ok(7));
            }
            tx.send(9).unwrap();
            assert_eq!(rx.try_recv(), Ok(9));
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            // SPSC: the same race must not let a second sender attach.
            drop((tx, rx));
        }
    });
}

/// Runs `f` in a grandchild forked into a new pid namespace (the child
/// calls `unshare(CLONE_NEWPID)`, then forks). Returns the grandchild's
/// exit code, or `None` where new pid namespaces are not permitted.
fn in_new_pid_namespace(f: impl FnOnce() -> i32) -> Option<i32> {
    in_new_pid_namespace_with(false, f)
}

/// As [`in_new_pid_namespace`]; with `own_proc`, the grandchild also gets a
/// mount namespace with a `/proc` of its own pid namespace (else it sees
/// the parent namespace's `/proc`, as after `unshare -p -f` alone). A panic
/// in `f` exits with 101.
fn in_new_pid_namespace_with(own_proc: bool, f: impl FnOnce() -> i32) -> Option<i32> {
    // SAFETY: the child runs `f` or leaves with _exit; no locks are held
    // by other threads of this test at the fork (the harness threads only
    // wait).
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork");
    if child == 0 {
        let flags = libc::CLONE_NEWPID | if own_proc { libc::CLONE_NEWNS } else { 0 };
        // SAFETY: unshare with flags; fails harmlessly if not permitted.
        if unsafe { libc::unshare(flags) } != 0 {
            // SAFETY: ends the child at once.
            unsafe { libc::_exit(77) };
        }
        // SAFETY: as above; the grandchild is pid 1 of the new namespace.
        let grandchild = unsafe { libc::fork() };
        if grandchild == 0 {
            if own_proc && !mount_private_proc(None) {
                // SAFETY: as above.
                unsafe { libc::_exit(77) };
            }
            let code = quiet_catch(f).unwrap_or(101);
            // SAFETY: as above.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(grandchild, &mut status, 0) };
        let code = if libc::WIFEXITED(status) {
            libc::WEXITSTATUS(status)
        } else {
            99
        };
        // SAFETY: as above.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(child, &mut status, 0) };
    assert!(libc::WIFEXITED(status), "child died: {status}");
    match libc::WEXITSTATUS(status) {
        77 => None,
        c => Some(c),
    }
}

/// Runs `f`, returning `None` if it panicked (without printing the panic).
fn quiet_catch<R>(f: impl FnOnce() -> R) -> Option<R> {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(prev);
    r.ok()
}

/// A process in another pid namespace (a container sharing /dev/shm but not
/// pids) can neither open a segment by name nor attach an endpoint through
/// an inherited handle: it gets `ForeignPidNamespace`, and the endpoints of
/// this namespace are untouched (no false reaping, no second SPSC sender).
#[test]
fn another_pid_namespace_is_refused() {
    run_in_child("prom_pidns", "child_pid_namespace_checks", &["q"]);
}

#[test]
#[ignore = "child process entry point"]
fn child_pid_namespace_checks() {
    child_main("child_pid_namespace_checks", |a: Args| {
        let name = a.str(0).to_string();
        let q = Queue::<u64>::create(&name, Flavor::Spsc, 8).unwrap();
        let tx = q.sender().unwrap();
        let rx = q.receiver().unwrap();
        tx.send(5).unwrap();
        let n = name.clone();
        let q2 = q.clone();
        let code = in_new_pid_namespace(move || {
            let opened = matches!(
                Queue::<u64>::open(&n),
                Err(SegmentError::ForeignPidNamespace { .. })
            );
            let inherited = matches!(q2.sender(), Err(SegmentError::ForeignPidNamespace { .. }))
                && matches!(q2.receiver(), Err(SegmentError::ForeignPidNamespace { .. }));
            // Reaping from there must not judge this namespace's pids.
            q2.reap_dead();
            match (opened, inherited) {
                (true, true) => 0,
                (false, _) => 1,
                (_, false) => 2,
            }
        });
        let Some(code) = code else {
            eprintln!("new pid namespaces are not permitted here: nothing to check");
            return;
        };
        assert_eq!(
            code, 0,
            "1: open allowed across pid namespaces, 2: attach allowed across them"
        );
        assert_eq!(q.endpoints(), (1, 1), "endpoints untouched");
        assert_eq!(rx.try_recv(), Ok(5));
        tx.send(6).unwrap();
        assert_eq!(rx.try_recv(), Ok(6));
    });
}

/// Forks; the child runs `f` (true: pass) and leaves with _exit; returns
/// whether it passed.
fn in_child(f: impl FnOnce() -> bool) -> bool {
    // SAFETY: the child runs `f` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork");
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
        // SAFETY: ends the child without running the parent's handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0
}

/// Whether `f` panics with the wrong-process message.
fn panics_as_wrong_process(f: impl FnOnce()) -> bool {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::panic::set_hook(prev);
    match r {
        Ok(()) => false,
        Err(p) => p
            .downcast_ref::<String>()
            .is_some_and(|m| m.contains("was used in process")),
    }
}

/// An endpoint inherited through fork is refused in the child (it belongs
/// to the parent's endpoint: SPSC exclusivity, indices, MPMC intent
/// record), loudly, and nothing of the parent's is disturbed; the child
/// attaches its own endpoints from the inherited segment handle.
#[test]
fn endpoints_inherited_through_fork() {
    run_in_child("prom_fork", "child_fork_checks", &[]);
}

#[test]
#[ignore = "child process entry point"]
fn child_fork_checks() {
    child_main("child_fork_checks", |_a: Args| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let q = Queue::<u64>::anonymous(flavor, 64).unwrap();
            let tx = q.sender().unwrap();
            let rx = q.receiver().unwrap();
            tx.send(1).unwrap();
            let ok = in_child(|| {
                let refused = panics_as_wrong_process(|| {
                    let _ = tx.send(2);
                }) && panics_as_wrong_process(|| {
                    let _ = rx.try_recv();
                }) && panics_as_wrong_process(|| {
                    let _ = rx.recv_timeout(Duration::from_millis(1));
                });
                if !refused {
                    return false;
                }
                // The child's own endpoint (MPMC; SPSC's sender is the parent's).
                if flavor == Flavor::Mpmc {
                    let mine = q.sender().unwrap();
                    mine.send(3).unwrap();
                } else {
                    assert!(matches!(
                        q.sender(),
                        Err(SegmentError::RoleTaken {
                            role: shmring::Role::Sender,
                            ..
                        })
                    ));
                }
                // Dropping the inherited handles must not detach the parent's.
                // SAFETY: bitwise copies in the child's own copy of memory;
                // the originals are never used or dropped here again (the
                // child leaves with _exit).
                drop(unsafe { (std::ptr::read(&tx), std::ptr::read(&rx)) });
                true
            });
            assert!(ok, "{flavor:?}: the child's checks failed");
            assert_eq!(
                q.endpoints(),
                (1, 1),
                "the parent's endpoints stay attached"
            );
            assert_eq!(rx.try_recv(), Ok(1));
            if flavor == Flavor::Mpmc {
                assert_eq!(rx.try_recv(), Ok(3));
            }
            assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
            tx.send(4).unwrap();
            assert_eq!(rx.try_recv(), Ok(4));
        }

        // Byte queues and pipes likewise: the child attaches its own end.
        let bq = ByteQueue::anonymous(Flavor::Mpmc, 8, 64).unwrap();
        let brx = bq.receiver().unwrap();
        let btx = bq.sender().unwrap();
        let pipe = Pipe::anonymous(true).unwrap();
        let left = pipe.left().unwrap();
        left.send(b"from parent").unwrap();
        let ok = in_child(|| {
            let refused = panics_as_wrong_process(|| {
                let _ = btx.send(b"x");
            }) && panics_as_wrong_process(|| {
                let _ = left.send(b"x");
            });
            let right = pipe.right().unwrap();
            right.send(b"from child").unwrap();
            let own = bq.sender().unwrap();
            own.send(b"own").unwrap();
            refused && right.recv().unwrap() == b"from parent"
        });
        assert!(ok, "byte queue / pipe checks failed in the child");
        assert_eq!(left.recv().unwrap(), b"from child");
        let mut buf = Vec::new();
        brx.recv_into(&mut buf).unwrap();
        assert_eq!(buf, b"own");
    });
}

/// Child: on queue `args[0]` (u64, or bytes with `args[2] == "bytes"`),
/// holds a claim — `args[1]`: "ref" (an in-place read of the oldest
/// message) or "loan" (an uncommitted loan) — then creates the file
/// `args[3]` and sleeps until killed.
#[test]
#[ignore = "child process entry point"]
fn child_hold_claim() {
    child_main("child_hold_claim", |a: Args| {
        let marker = a.str(3).to_string();
        let ready = || std::fs::write(&marker, b"held").unwrap();
        if a.str(2) == "bytes" {
            let q = ByteQueue::open(a.str(0)).unwrap();
            if a.str(1) == "ref" {
                let mut rx = q.receiver().unwrap();
                let m = rx.recv_ref().unwrap();
                assert_eq!(&m[..], b"first");
                ready();
                common::sleep_forever();
            } else {
                let mut tx = q.sender().unwrap();
                let mut l = tx.loan(5).unwrap();
                l.copy_from_slice(b"ghost");
                ready();
                common::sleep_forever();
            }
        } else {
            let q = Queue::<u64>::open(a.str(0)).unwrap();
            if a.str(1) == "ref" {
                let mut rx = q.receiver().unwrap();
                let m = rx.recv_ref().unwrap();
                assert_eq!(*m, 1);
                ready();
                common::sleep_forever();
            } else {
                let mut tx = q.sender().unwrap();
                let mut l = tx.loan().unwrap();
                *l = 666;
                ready();
                common::sleep_forever();
            }
        }
    });
}

/// A receiver killed while reading a message in place: in SPSC as in MPMC
/// the message is counted lost and never delivered again (before, SPSC
/// gave it to the next receiver, uncounted). A sender killed holding a
/// loan: nothing is delivered, and the message is counted lost.
#[test]
fn dead_claims_count_alike_in_both_flavors() {
    run("prom_claims", |ctx| {
        let marker = std::env::temp_dir().join(format!("shmring-prom-{}", std::process::id()));
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            for bytes in [false, true] {
                for what in ["ref", "loan"] {
                    let _ = std::fs::remove_file(&marker);
                    let name = ctx.name("q");
                    let kind = if bytes { "bytes" } else { "pod" };
                    let tag = format!("{flavor:?} {kind} {what}");
                    let args = [name.as_str(), what, kind, marker.to_str().unwrap()];
                    if bytes {
                        let q = ByteQueue::create(&name, flavor, 4, 16).unwrap();
                        let keep_tx = (what == "ref").then(|| q.sender().unwrap());
                        let keep_rx = (what == "loan").then(|| q.receiver().unwrap());
                        if let Some(tx) = &keep_tx {
                            tx.send(b"first").unwrap();
                            tx.send(b"second").unwrap();
                        }
                        let mut child = spawn_child("child_hold_claim", &args);
                        wait_until("the child's claim", || marker.exists());
                        child.kill().unwrap();
                        wait_killed(&mut child);
                        q.reap_dead();
                        assert_eq!(q.lost(), 1, "{tag}: the dead claim is counted");
                        let rx = match keep_rx {
                            Some(rx) => rx,
                            None => q.receiver().unwrap(),
                        };
                        let tx = match keep_tx {
                            Some(tx) => tx,
                            None => q.sender().unwrap(),
                        };
                        tx.send(b"third").unwrap();
                        let mut got = Vec::new();
                        while let Ok(m) = rx.try_recv() {
                            got.push(m);
                        }
                        let want: Vec<&[u8]> = if what == "ref" {
                            vec![b"second", b"third"]
                        } else {
                            vec![b"third"]
                        };
                        assert_eq!(got, want, "{tag}: never delivered twice");
                    } else {
                        let q = Queue::<u64>::create(&name, flavor, 4).unwrap();
                        let keep_tx = (what == "ref").then(|| q.sender().unwrap());
                        let keep_rx = (what == "loan").then(|| q.receiver().unwrap());
                        if let Some(tx) = &keep_tx {
                            tx.send(1).unwrap();
                            tx.send(2).unwrap();
                        }
                        let mut child = spawn_child("child_hold_claim", &args);
                        wait_until("the child's claim", || marker.exists());
                        child.kill().unwrap();
                        wait_killed(&mut child);
                        q.reap_dead();
                        assert_eq!(q.lost(), 1, "{tag}: the dead claim is counted");
                        let rx = match keep_rx {
                            Some(rx) => rx,
                            None => q.receiver().unwrap(),
                        };
                        let tx = match keep_tx {
                            Some(tx) => tx,
                            None => q.sender().unwrap(),
                        };
                        tx.send(3).unwrap();
                        let got: Vec<u64> = rx.try_iter().collect();
                        let want = if what == "ref" { vec![2, 3] } else { vec![3] };
                        assert_eq!(got, want, "{tag}: never delivered twice");
                    }
                }
            }
        }
        let _ = std::fs::remove_file(&marker);
    });
}

/// Locks across pid namespaces. A handle inherited by a process of another
/// pid namespace is refused loudly (its lock owners cannot be judged from
/// there): it can neither take a live owner's lock (judging the owner
/// dead) nor leave a lock whose death nobody here can see. Inside one pid
/// namespace whose `/proc` is the parent namespace's (`unshare -p -f`
/// without a fresh `/proc`), a dead owner is still found, by `kill` alone.
#[test]
fn locks_across_pid_namespaces() {
    run_in_child("prom_lock_ns", "child_lock_namespace_checks", &[]);
}

#[test]
#[ignore = "child process entry point"]
fn child_lock_namespace_checks() {
    child_main("child_lock_namespace_checks", |_a: Args| {
        use shmring::{Lock, LockTimeoutError, Shared};
        // A live owner here; a taker in a new namespace with its own /proc.
        let l = Shared::anonymous(Lock::new()).unwrap();
        let g = l.lock().unwrap();
        let code =
            in_new_pid_namespace_with(true, || match l.lock_timeout(Duration::from_millis(200)) {
                Err(LockTimeoutError::Timeout) => 3,
                Ok(_) => 1,
                Err(LockTimeoutError::OwnerDied(_)) => 2,
            });
        let Some(code) = code else {
            eprintln!("new pid namespaces are not permitted here: nothing to check");
            return;
        };
        assert_eq!(code, 101, "refused (101); 2: a live owner judged dead");
        assert!(l.is_locked());
        drop(g);
        // An owner in a new namespace that sees this one's /proc: refused too.
        let code = in_new_pid_namespace_with(false, || {
            std::mem::forget(l.lock().unwrap());
            0
        });
        assert_eq!(code, Some(101), "the foreign owner is refused");
        assert!(!l.is_locked(), "nothing was left held");
        // All inside one new namespace that sees the parent's /proc.
        let code = in_new_pid_namespace(|| {
            let l = Shared::anonymous(Lock::new()).unwrap();
            // SAFETY: the child takes the lock and leaves with _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                std::mem::forget(l.lock().unwrap());
                // SAFETY: ends the child.
                unsafe { libc::_exit(0) };
            }
            let mut st = 0;
            // SAFETY: our own child.
            unsafe { libc::waitpid(pid, &mut st, 0) };
            let code = match l.lock_timeout(Duration::from_secs(30)) {
                Err(LockTimeoutError::OwnerDied(_)) => 0,
                Err(LockTimeoutError::Timeout) => 1,
                Ok(_) => 2,
            };
            code
        });
        assert_eq!(code, Some(0), "1: the dead owner was never found");
    });
}

/// A loan, an in-place read or a lock guard inherited through fork is
/// refused in the child on first use (its slot, or its lock, is the
/// parent's): the parent's message arrives intact and its guard's value
/// is its own.
#[test]
fn claims_and_guards_inherited_through_fork() {
    run_in_child("prom_fork_claims", "child_fork_claim_checks", &[]);
}

#[test]
#[ignore = "child process entry point"]
fn child_fork_claim_checks() {
    child_main("child_fork_claim_checks", |_a: Args| {
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let q = Queue::<[u64; 64]>::anonymous(flavor, 2).unwrap();
            let mut tx = q.sender().unwrap();
            let mut rx = q.receiver().unwrap();
            let mut loan = tx.loan().unwrap();
            loan.iter_mut().for_each(|x| *x = 1);
            let ok = in_child(|| {
                panics_as_wrong_process(|| loan.iter_mut().for_each(|x| *x = 0xBAD))
                    && panics_as_wrong_process(|| {
                        let _ = loan[0];
                    })
            });
            assert!(ok, "{flavor:?}: an inherited loan was usable in the child");
            loan.commit();
            let m = rx.recv_ref().unwrap();
            let ok = in_child(|| {
                panics_as_wrong_process(|| {
                    let _ = m[0];
                })
            });
            assert!(ok, "{flavor:?}: an inherited Ref was readable in the child");
            assert!(
                m.iter().all(|&x| x == 1),
                "{flavor:?}: the message is intact"
            );
            drop(m);
        }
        let bq = ByteQueue::anonymous(Flavor::Mpmc, 2, 16).unwrap();
        let mut btx = bq.sender().unwrap();
        let mut loan = btx.loan(4).unwrap();
        loan.copy_from_slice(b"mine");
        let ok = in_child(|| {
            panics_as_wrong_process(|| loan.copy_from_slice(b"bad!"))
                && panics_as_wrong_process(|| {
                    let _ = loan[0];
                })
        });
        assert!(ok, "an inherited ByteLoan was usable in the child");
        loan.commit();
        assert_eq!(bq.receiver().unwrap().recv().unwrap(), b"mine");

        // A receiver inherited through fork takes nothing in the child: the
        // message stays the parent's (before, `try_recv_ref` claimed it and
        // the slot was never released: the queue wedged once it wrapped).
        for flavor in [Flavor::Spsc, Flavor::Mpmc] {
            let q = Queue::<u64>::anonymous(flavor, 2).unwrap();
            let tx = q.sender().unwrap();
            let mut rx = q.receiver().unwrap();
            tx.send(7).unwrap();
            let bq = ByteQueue::anonymous(flavor, 2, 8).unwrap();
            let btx = bq.sender().unwrap();
            let mut brx = bq.receiver().unwrap();
            btx.send(b"seven").unwrap();
            let ok = in_child(|| {
                panics_as_wrong_process(|| {
                    let _ = rx.try_recv_ref().map(drop);
                }) && panics_as_wrong_process(|| {
                    let _ = brx.try_recv();
                }) && panics_as_wrong_process(|| {
                    let _ = brx.try_recv_ref().map(drop);
                })
            });
            assert!(
                ok,
                "{flavor:?}: an inherited receiver took a message in the child"
            );
            assert_eq!(
                rx.try_recv(),
                Ok(7),
                "{flavor:?}: the message is still queued"
            );
            assert_eq!(brx.try_recv().unwrap(), b"seven");
            for i in 0..8 {
                tx.send(i).unwrap();
                assert_eq!(rx.try_recv(), Ok(i), "{flavor:?}: the queue flows on");
            }
            assert_eq!(q.lost(), 0);
        }

        // A condition wait with an inherited guard: refused, the parent's
        // lock stays held.
        {
            use shmring::{Condition, Lock, Shared};
            let lock = Shared::anonymous(Lock::new()).unwrap();
            let cond = Shared::anonymous(Condition::new()).unwrap();
            let g = lock.lock().unwrap();
            let ok = in_child(|| {
                let prev = std::panic::take_hook();
                std::panic::set_hook(Box::new(|_| {}));
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // SAFETY: a bitwise copy in the child's own memory; the
                    // original is never used or dropped here again.
                    let copy = unsafe { std::ptr::read(&g) };
                    let _ = cond.wait_timeout(copy, Duration::from_millis(10));
                }));
                std::panic::set_hook(prev);
                r.is_err()
            });
            assert!(
                ok,
                "a condition wait with an inherited guard ran in the child"
            );
            assert!(lock.is_locked());
            drop(g);
        }

        let v = shmring::Value::<u64>::anonymous(0).unwrap();
        let g = v.lock().unwrap();
        g.set(1);
        let ok = in_child(|| {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(|_| {}));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| g.set(99)));
            std::panic::set_hook(prev);
            r.is_err_and(|p| {
                p.downcast_ref::<String>()
                    .is_some_and(|m| m.contains("lock guard taken in process"))
            })
        });
        assert!(ok, "an inherited Value guard wrote in the child");
        assert_eq!(g.get(), 1);
    });
}

/// One message sent to an MPMC queue with four receivers asleep on it wakes
/// one of them, not all four (no thundering herd): the sender's FUTEX_WAKE
/// woke exactly one sleeper. Each further message reaches a sleeper too
/// (every receiver gets exactly one; a lost wake-up would show as a hang
/// of up to a liveness slice, which the hand-off between woken receivers
/// prevents).
#[test]
fn one_message_wakes_one_mpmc_receiver() {
    run("prom_herd", |_ctx| {
        let q = Queue::<u64>::anonymous(Flavor::Mpmc, 16).unwrap();
        let tx = q.sender().unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let receivers: Vec<_> = (0..4)
            .map(|_| {
                let mut rx = q.receiver().unwrap();
                rx.set_spin(Duration::ZERO);
                let tid_tx = tid_tx.clone();
                thread::spawn(move || {
                    // SAFETY: gettid has no preconditions.
                    tid_tx.send(unsafe { libc::gettid() }).unwrap();
                    rx.recv().unwrap()
                })
            })
            .collect();
        let tids: Vec<i32> = (0..4).map(|_| tid_rx.recv().unwrap()).collect();
        // Asleep on several looks in a row (each sleeps in 20 ms slices).
        wait_until("all four receivers asleep", || {
            (0..3).all(|_| {
                let all = tids.iter().all(|&t| thread_state(t) == Some('S'));
                thread::sleep(Duration::from_millis(1));
                all
            }) && q.is_empty()
        });
        let (calls0, woken0) = shmring::__internal::thread_wake_stats();
        tx.send(1).unwrap();
        let (calls1, woken1) = shmring::__internal::thread_wake_stats();
        assert_eq!(calls1 - calls0, 1, "one FUTEX_WAKE for one message");
        assert_eq!(woken1 - woken0, 1, "it woke one receiver, not all four");
        for v in 2..=4 {
            tx.send(v).unwrap();
        }
        let mut got: Vec<u64> = receivers.into_iter().map(|h| h.join().unwrap()).collect();
        got.sort_unstable();
        assert_eq!(got, vec![1, 2, 3, 4], "every receiver got exactly one");
    });
}

/// A peer in another time namespace (boot time shifted by a day) reads
/// every start time shifted by its offset: start times are recorded and
/// compared relative to the host's boot, so its live sender is not judged
/// dead (before, it was reaped, and the receiver saw `Disconnected`).
#[test]
fn a_peer_in_another_time_namespace_is_alive() {
    run_in_child("prom_timens", "child_time_namespace_checks", &["q"]);
}

#[test]
#[ignore = "child process entry point"]
fn child_time_namespace_checks() {
    child_main("child_time_namespace_checks", |a: Args| {
        let q = Queue::<u64>::create(a.str(0), Flavor::Spsc, 8).unwrap();
        let rx = q.receiver().unwrap();
        // SAFETY: the child sets up a time namespace for its own children,
        // forks one that attaches a sender and waits, and leaves with _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: unshare with a flag; the offsets must be written
            // before the first process enters the namespace.
            let ok = unsafe { libc::unshare(libc::CLONE_NEWTIME) } == 0
                && std::fs::write("/proc/self/timens_offsets", "boottime 86400 0\n").is_ok();
            if !ok {
                // SAFETY: ends the child.
                unsafe { libc::_exit(77) };
            }
            // SAFETY: as above; the grandchild lives in the new namespace.
            let gc = unsafe { libc::fork() };
            if gc == 0 {
                let code = quiet_catch(|| {
                    let offsets =
                        std::fs::read_to_string("/proc/self/timens_offsets").unwrap_or_default();
                    assert!(offsets.contains("86400"), "{offsets}");
                    let q = Queue::<u64>::open(a.str(0)).unwrap();
                    let tx = q.sender().unwrap();
                    tx.send(1).unwrap();
                    // Stay alive (holding the sender) until killed, two
                    // minutes at most.
                    thread::sleep(Duration::from_secs(120));
                });
                // SAFETY: ends the grandchild.
                unsafe { libc::_exit(if code.is_some() { 0 } else { 101 }) };
            }
            let mut st = 0;
            // SAFETY: our own child.
            unsafe { libc::waitpid(gc, &mut st, 0) };
            // SAFETY: ends the child.
            unsafe { libc::_exit(0) };
        }
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(1) => {}
            other => {
                // SAFETY: our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let mut st = 0;
                // SAFETY: our own child.
                unsafe { libc::waitpid(pid, &mut st, 0) };
                if libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 77 {
                    eprintln!("time namespaces are not permitted here: nothing to check");
                    return;
                }
                panic!("no message from the time-namespaced peer: {other:?}");
            }
        }
        // The peer lives: reaping must leave its sender attached.
        q.reap_dead();
        let endpoints = q.endpoints();
        let connected = rx.is_connected();
        let after = rx.recv_timeout(Duration::from_millis(50));
        // Kill the grandchild (then the child exits) before judging.
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for p in children
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: our own grandchild.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        let mut st = 0;
        // SAFETY: our own child (it exits once its child is gone).
        unsafe { libc::waitpid(pid, &mut st, 0) };
        assert_eq!(
            endpoints,
            (1, 1),
            "a live peer of another time namespace was reaped"
        );
        assert!(connected);
        assert_eq!(
            after,
            Err(shmring::RecvTimeoutError::Timeout),
            "not Disconnected"
        );
        q.reap_dead();
        assert_eq!(q.endpoints(), (0, 1), "and once dead, it is reaped");
    });
}

/// `endpoints()` is the attached count (a dead process's endpoint counts
/// until reaped); `live_endpoints()` reclaims the dead first.
#[test]
fn live_endpoints_leave_out_the_dead() {
    run("prom_live_eps", |ctx| {
        let name = ctx.name("q");
        let q = Queue::<u8>::create(&name, Flavor::Mpmc, 4).unwrap();
        let rx = q.receiver().unwrap();
        let mut child = spawn_child("child_sender_then_hang", &[&name]);
        wait_until("the child's message", || rx.try_recv() == Ok(1));
        assert_eq!(q.live_endpoints(), (1, 1), "a live sender counts");
        child.kill().unwrap();
        wait_killed(&mut child);
        assert_eq!(q.endpoints(), (1, 1), "attached until reaped");
        assert_eq!(q.live_endpoints(), (0, 1));
        assert_eq!(q.reaped(), 1);
    });
}
