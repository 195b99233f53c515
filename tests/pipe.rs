//! `Pipe` and `Connection` across processes: duplex request/response,
//! one-way pipes, EOF after the peer exits, closes or is SIGKILLed, sends
//! to a closed end, exclusive ends, names, and (feature `serde`) values.
//!
//! Named pipes are shared with re-executed children (`child_pipe` runs a
//! small script of actions on one end). Anonymous pipes need `fork`, unsafe
//! in the multi-threaded harness, so `child_anonymous_fork` forks inside a
//! re-executed child, whose only other thread is parked.
#![cfg(not(loom))]

mod common;

use common::{
    child_main, kill_child, run, sleep_forever, spawn_child, wait_killed, wait_ok, wait_until,
    Args, Rng,
};
use shmring::{
    ByteQueue, ByteSendError, Connection, Flavor, Pipe, Queue, RecvError, RecvTimeoutError,
    SegmentError, TryRecvError, PIPE_CAPACITY, PIPE_MAX_MESSAGE,
};
use std::path::Path;
use std::process::Child;
use std::thread;
use std::time::Duration;

/// A long timeout: only the watchdog should ever see it expire.
const LONG: Duration = Duration::from_secs(60);

/// The `i`-th message of a `send:N` action.
fn msg(i: u64) -> Vec<u8> {
    format!("msg {i}").into_bytes()
}

/// The echo child's answer to a request: its bytes reversed.
fn reply(req: &[u8]) -> Vec<u8> {
    req.iter().rev().copied().collect()
}

/// Whether `/dev/shm/<name>` exists.
fn shm_exists(name: &str) -> bool {
    Path::new("/dev/shm").join(name).exists()
}

/// Kills `child` with `Child::kill` after `delay`, on another thread, so
/// that the caller can be blocked meanwhile; join to get the child back.
fn kill_later(mut child: Child, delay: Duration) -> thread::JoinHandle<Child> {
    thread::spawn(move || {
        thread::sleep(delay);
        child.kill().expect("kill child");
        child
    })
}

/// Sends with `try_send` until the buffer is full; returns how many fit.
fn fill(c: &Connection) -> usize {
    let mut n = 0;
    loop {
        match c.try_send(&msg(n as u64)) {
            Ok(()) => n += 1,
            Err(ByteSendError::Full) => return n,
            Err(e) => panic!("filling the buffer: {e:?}"),
        }
    }
}

/// Asserts that every receiving call on `c` reports EOF at once (`what`
/// names the case in failures).
#[track_caller]
fn assert_recv_eof_in(c: &Connection, what: &str) {
    assert_eq!(c.recv(), Err(RecvError::Disconnected), "{what}: recv");
    let e = Err(TryRecvError::Disconnected);
    assert_eq!(c.try_recv(), e, "{what}: try_recv");
    let e = Err(RecvTimeoutError::Disconnected);
    assert_eq!(c.recv_timeout(LONG), e, "{what}: recv_timeout");
    let mut buf = b"old".to_vec();
    let e = RecvError::Disconnected;
    assert_eq!(c.recv_into(&mut buf), Err(e), "{what}: recv_into");
    assert_eq!(c.poll(Duration::ZERO), Err(e), "{what}: poll(0)");
    assert_eq!(c.poll(LONG), Err(e), "{what}: poll");
}

#[track_caller]
fn assert_recv_eof(c: &Connection) {
    assert_recv_eof_in(c, "at EOF");
}

/// Asserts that every sending call on `c` reports `Disconnected` at once.
#[track_caller]
fn assert_send_disconnected_in(c: &Connection, what: &str) {
    let e = Err(ByteSendError::Disconnected);
    assert_eq!(c.send(b"x"), e, "{what}: send");
    assert_eq!(c.send(b""), e, "{what}: send(empty)");
    assert_eq!(c.try_send(b"x"), e, "{what}: try_send");
    assert_eq!(c.send_timeout(b"x", LONG), e, "{what}: send_timeout");
}

#[track_caller]
fn assert_send_disconnected(c: &Connection) {
    assert_send_disconnected_in(c, "disconnected");
}

// ---------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------

/// Child: opens pipe `args[0]`, attaches end `args[1]` (`left` / `right`)
/// and runs the actions `args[2..]` in order:
///
/// - `say:TEXT` sends TEXT; `expect:TEXT` receives it;
/// - `send:N` sends `msg(0..N)`; `recv:N` receives them; `eof` expects
///   EOF from `recv`;
/// - `echo` answers each request with `reply(request)` until EOF;
/// - `wait_full` waits until our receive buffer is full (the parent has
///   filled it); `sleep:MS` sleeps;
/// - `close` calls `close()`; `drop` drops the connection;
/// - `hang` sleeps until killed. Otherwise the child exits normally.
#[test]
#[ignore = "child process entry point"]
fn child_pipe() {
    child_main("child_pipe", |a: Args| {
        let pipe = Pipe::open(a.str(0)).unwrap();
        let mut conn = Some(match a.str(1) {
            "left" => pipe.left().unwrap(),
            "right" => pipe.right().unwrap(),
            end => panic!("unknown end {end:?}"),
        });
        for act in &a.0[2..] {
            let (verb, arg) = act.split_once(':').unwrap_or((act, ""));
            let c = conn.as_mut().expect("no action after drop");
            match verb {
                "say" => c.send(arg.as_bytes()).unwrap(),
                "expect" => assert_eq!(c.recv().unwrap(), arg.as_bytes()),
                "send" => {
                    for i in 0..arg.parse::<u64>().unwrap() {
                        c.send(&msg(i)).unwrap();
                    }
                }
                "recv" => {
                    for i in 0..arg.parse::<u64>().unwrap() {
                        assert_eq!(c.recv().unwrap(), msg(i));
                    }
                }
                "eof" => assert_eq!(c.recv(), Err(RecvError::Disconnected)),
                "echo" => loop {
                    match c.recv() {
                        Ok(req) => c.send(&reply(&req)).unwrap(),
                        Err(RecvError::Disconnected) => break,
                        Err(e) => panic!("echo: {e:?}"),
                    }
                },
                "wait_full" => {
                    let rx = c.receiver().expect("a receiving end");
                    wait_until("the parent to fill the buffer", || rx.is_full());
                }
                "sleep" => thread::sleep(Duration::from_millis(arg.parse().unwrap())),
                "close" => {
                    c.close();
                    assert!(!c.readable() && !c.writable());
                }
                "drop" => conn = None,
                "hang" => sleep_forever(),
                _ => panic!("unknown action {act:?}"),
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Duplex
// ---------------------------------------------------------------------------

#[test]
fn duplex_request_response_across_processes() {
    run("pipe_duplex", |ctx| {
        // The default geometry, and a tiny one where both sides block often.
        for (capacity, max) in [(PIPE_CAPACITY, PIPE_MAX_MESSAGE), (2, 100)] {
            let name = ctx.name("p");
            let pipe = Pipe::builder()
                .capacity(capacity)
                .max_message_size(max)
                .create(&name)
                .unwrap();
            assert!(pipe.is_duplex());
            let left = pipe.left().unwrap();
            assert!(left.readable() && left.writable());
            let mut child = spawn_child("child_pipe", &[&name, "right", "echo"]);
            let max = max as usize;

            // Every size class: empty, one byte, the maximum, and random ones.
            let mut rng = Rng::new(0x5eed ^ max as u64);
            let mut sizes = vec![0, 1, max, max - 1, 0, max];
            sizes.extend((0..300).map(|_| rng.range(0, max as u64) as usize));

            // Strict request/response.
            for &n in &sizes {
                let req = rng.bytes(n);
                left.send(&req).unwrap();
                assert_eq!(left.recv().unwrap(), reply(&req), "size {n}");
            }

            // Too large: refused, nothing sent (the next answer still matches).
            assert_eq!(
                left.send(&vec![7; max + 1]),
                Err(ByteSendError::TooLarge { len: max + 1, max })
            );
            assert_eq!(
                left.try_send(&vec![7; max + 1]),
                Err(ByteSendError::TooLarge { len: max + 1, max })
            );

            // Pipelined: a window of `capacity` requests in flight (the
            // answers fit the other direction's buffer, so neither side can
            // deadlock), answers received into a reused buffer.
            let window = capacity as usize;
            let mut buf = Vec::new();
            for chunk in sizes.chunks(window) {
                let reqs: Vec<Vec<u8>> = chunk.iter().map(|&n| rng.bytes(n)).collect();
                for r in &reqs {
                    left.send(r).unwrap();
                }
                for r in &reqs {
                    assert_eq!(left.recv_into(&mut buf).unwrap(), r.len());
                    assert_eq!(buf, reply(r));
                }
            }
            assert_eq!(left.try_recv(), Err(TryRecvError::Empty));

            // Closing our end is the child's EOF: its echo loop ends and it
            // exits normally, and then we see EOF too.
            drop(left);
            wait_ok(&mut child);
            let left = pipe.left().unwrap();
            assert_recv_eof(&left);
            assert_send_disconnected(&left);
        }
    });
}

#[test]
fn duplex_both_ends_send_first() {
    run("pipe_both_first", |ctx| {
        // Each end sends before it receives: the buffers hold both
        // directions' messages independently.
        let name = ctx.name("p");
        let pipe = Pipe::builder().create(&name).unwrap();
        let left = pipe.left().unwrap();
        for i in 0..10 {
            left.send(&msg(i)).unwrap();
        }
        let mut child = spawn_child(
            "child_pipe",
            &[&name, "right", "send:10", "recv:10", "send:3", "eof"],
        );
        for i in 0..10 {
            assert_eq!(left.recv().unwrap(), msg(i));
        }
        for i in 0..3 {
            assert_eq!(left.recv().unwrap(), msg(i));
        }
        // The child has read all of ours and waits for EOF: close.
        drop(left);
        wait_ok(&mut child);
    });
}

// ---------------------------------------------------------------------------
// One-way
// ---------------------------------------------------------------------------

/// Child: the sending (right) end of one-way pipe `args[0]`: checks that it
/// cannot receive, sends `msg(0..args[1])`, exits.
#[test]
#[ignore = "child process entry point"]
fn child_one_way_sender() {
    child_main("child_one_way_sender", |a: Args| {
        let pipe = Pipe::open(a.str(0)).unwrap();
        assert!(!pipe.is_duplex());
        let mut right = pipe.right().unwrap();
        assert!(right.writable());
        assert!(!right.readable());
        assert!(right.receiver().is_none());
        assert!(right.sender().is_some());
        // Receiving on the send-only end: Disconnected at once, never a wait.
        assert_recv_eof(&right);
        for i in 0..a.get::<u64>(1) {
            right.send(&msg(i)).unwrap();
        }
    });
}

#[test]
fn one_way_pipe_across_processes() {
    run("pipe_one_way", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder()
            .duplex(false)
            .capacity(4)
            .create(&name)
            .unwrap();
        assert!(!pipe.is_duplex());
        assert!(shm_exists(&format!("{}.0", &*name)));
        assert!(!shm_exists(&format!("{}.1", &*name)), "one-way: one queue");

        let mut left = pipe.left().unwrap();
        assert!(left.readable());
        assert!(!left.writable());
        assert!(left.sender().is_none());
        assert!(left.receiver().is_some());
        // Sending on the receive-only end.
        assert_send_disconnected(&left);

        // More than the buffer holds: the child blocks while we read.
        let k = 200u64;
        let mut child = spawn_child("child_one_way_sender", &[&name, &k.to_string()]);
        for i in 0..k {
            assert_eq!(left.recv().unwrap(), msg(i));
        }
        assert_eq!(left.recv(), Err(RecvError::Disconnected));
        wait_ok(&mut child);
        assert_recv_eof(&left);
        assert_send_disconnected(&left);
    });
}

#[test]
fn one_way_pair_in_process() {
    run("pipe_one_way_pair", |_| {
        let (left, right) = Pipe::pair(false).unwrap();
        assert!(left.readable() && !left.writable());
        assert!(right.writable() && !right.readable());
        assert_send_disconnected(&left);
        assert_recv_eof(&right);
        right.send(b"a").unwrap();
        right.send(b"").unwrap();
        assert_eq!(left.recv().unwrap(), b"a");
        assert_eq!(left.recv().unwrap(), b"");
        drop(right);
        assert_recv_eof(&left);
    });
}

// ---------------------------------------------------------------------------
// EOF
// ---------------------------------------------------------------------------

#[test]
fn eof_after_peer_exits_normally() {
    run("pipe_eof_exit", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder().create(&name).unwrap();
        let left = pipe.left().unwrap();
        // Before the child attaches, an empty pipe is not at EOF: no sender
        // has ever been there.
        assert_eq!(left.poll(Duration::ZERO), Ok(false));
        assert_eq!(left.try_recv(), Err(TryRecvError::Empty));
        let k = 20u64;
        let mut child = spawn_child(
            "child_pipe",
            &[
                &name,
                "right",
                "say:first",
                "expect:go",
                &format!("send:{k}"),
            ],
        );
        assert_eq!(left.recv().unwrap(), b"first");
        // The child is alive and waits for us: nothing waiting, no EOF.
        assert_eq!(left.poll(Duration::ZERO), Ok(false));
        assert_eq!(left.poll(Duration::from_millis(30)), Ok(false));
        assert_eq!(left.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(
            left.recv_timeout(Duration::from_millis(30)),
            Err(RecvTimeoutError::Timeout)
        );
        left.send(b"go").unwrap();
        // Wakes when the first message arrives (or finds it there).
        assert_eq!(left.poll(LONG), Ok(true));
        // Let it exit: everything it sent stays queued for us.
        wait_ok(&mut child);
        assert_eq!(left.poll(Duration::ZERO), Ok(true));
        assert_eq!(left.poll(LONG), Ok(true), "a waiting message, not EOF");
        for i in 0..k {
            assert_eq!(left.recv().unwrap(), msg(i));
        }
        // Drained, and the peer is gone: EOF from every call, repeatedly.
        assert_recv_eof(&left);
        assert_recv_eof(&left);
        // And the exited peer's receiving half is gone too.
        assert_send_disconnected(&left);
    });
}

#[test]
fn eof_after_peer_sigkilled_while_blocked() {
    run("pipe_eof_kill", |ctx| {
        for how in [
            "recv",
            "recv_into",
            "recv_timeout",
            "poll",
            "try_recv",
            "poll_zero",
        ] {
            let name = ctx.name("p");
            let pipe = Pipe::builder().create(&name).unwrap();
            let left = pipe.left().unwrap();
            let child = spawn_child("child_pipe", &[&name, "right", "send:5", "hang"]);
            for i in 0..5 {
                assert_eq!(left.recv().unwrap(), msg(i));
            }
            // The child holds its end, has nothing unsent, and sleeps; we
            // block until it is killed and must then see EOF (the watchdog
            // turns "forever" into a failure).
            let killer = kill_later(child, Duration::from_millis(100));
            match how {
                "recv" => assert_eq!(left.recv(), Err(RecvError::Disconnected)),
                "recv_into" => {
                    let mut buf = Vec::new();
                    assert_eq!(left.recv_into(&mut buf), Err(RecvError::Disconnected));
                }
                "recv_timeout" => assert_eq!(
                    left.recv_timeout(Duration::from_secs(100)),
                    Err(RecvTimeoutError::Disconnected)
                ),
                "poll" => assert_eq!(
                    left.poll(Duration::from_secs(100)),
                    Err(RecvError::Disconnected)
                ),
                // A caller that never blocks: its idle polls check the peer.
                "try_recv" => loop {
                    match left.try_recv() {
                        Err(TryRecvError::Empty) => thread::sleep(Duration::from_micros(200)),
                        r => break assert_eq!(r, Err(TryRecvError::Disconnected)),
                    }
                },
                "poll_zero" => loop {
                    match left.poll(Duration::ZERO) {
                        Ok(false) => thread::sleep(Duration::from_micros(200)),
                        r => break assert_eq!(r, Err(RecvError::Disconnected)),
                    }
                },
                _ => unreachable!(),
            }
            wait_killed(&mut killer.join().unwrap());
            assert_recv_eof(&left);
            // The dead process's end can be attached again.
            let right = pipe.right().unwrap();
            right.send(b"again").unwrap();
            assert_eq!(left.recv().unwrap(), b"again");
        }
    });
}

#[test]
fn messages_of_a_killed_peer_are_delivered_before_eof() {
    run("pipe_kill_queued", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder().create(&name).unwrap();
        let mut left = pipe.left().unwrap();
        let mut child = spawn_child("child_pipe", &[&name, "right", "send:6", "hang"]);
        let rx = left.receiver().unwrap();
        wait_until("the child's six messages", || rx.len() == 6);
        kill_child(&mut child);
        for i in 0..6 {
            assert_eq!(left.recv().unwrap(), msg(i));
        }
        assert_recv_eof(&left);
    });
}

// ---------------------------------------------------------------------------
// Sending to a closed end
// ---------------------------------------------------------------------------

#[test]
fn send_to_a_closed_end() {
    run("pipe_send_closed", |ctx| {
        for how in ["close", "drop", "exit"] {
            for full in [false, true] {
                let name = ctx.name("p");
                let pipe = Pipe::builder().capacity(4).create(&name).unwrap();
                let mut left = pipe.left().unwrap();
                let mut args = vec![name.to_string(), "right".into(), "say:ready".into()];
                if full {
                    // Close only once we have filled the child's buffer and
                    // (most likely) block in `send`.
                    args.extend(["wait_full".into(), "sleep:100".into()]);
                }
                match how {
                    "close" => args.extend(["close".into(), "hang".into()]),
                    "drop" => args.extend(["drop".into(), "hang".into()]),
                    _ => {} // the child exits
                }
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let mut child = spawn_child("child_pipe", &args);
                assert_eq!(left.recv().unwrap(), b"ready");
                if full {
                    assert_eq!(fill(&left), 4);
                    // Blocks until the child closes its end, then fails.
                    assert_eq!(
                        left.send(b"one too many"),
                        Err(ByteSendError::Disconnected),
                        "{how}, full"
                    );
                } else {
                    // EOF: the child has closed (at least) its sending half.
                    assert_eq!(left.recv(), Err(RecvError::Disconnected));
                    // Wait for its receiving half too (whether EOF alone
                    // implies it is `eof_means_the_peer_no_longer_receives`).
                    let tx = left.sender().unwrap();
                    wait_until("the child's receiving half to go", || !tx.is_connected());
                }
                let what = format!("peer {how}, buffer {}", if full { "full" } else { "empty" });
                assert_send_disconnected_in(&left, &what);
                assert_recv_eof_in(&left, &what);
                if how == "exit" {
                    wait_ok(&mut child);
                } else {
                    // Closed, yet alive: `close` alone disconnects.
                    assert!(child.try_wait().unwrap().is_none());
                    kill_child(&mut child);
                }
            }
        }
    });
}

/// Once `recv` has returned EOF, the peer has closed its whole end: a
/// `send` right after must fail, not drop the message into a buffer nobody
/// will read (Python's `close()` shuts both directions at once).
#[test]
fn eof_means_the_peer_no_longer_receives() {
    run("pipe_eof_then_send", |ctx| {
        // Threads of one process, many times: the close races our recv.
        for i in 0..1000 {
            let (left, mut right) = Pipe::pair(true).unwrap();
            let closer = thread::spawn(move || {
                if i % 2 == 0 {
                    right.close();
                } else {
                    drop(right);
                }
            });
            assert_eq!(left.recv(), Err(RecvError::Disconnected));
            assert_eq!(
                left.try_send(b"after EOF"),
                Err(ByteSendError::Disconnected),
                "iteration {i}: EOF seen, yet the peer still receives"
            );
            closer.join().unwrap();
        }
        // Processes: the child closes, drops its end, or exits.
        for how in ["close", "drop", "exit"] {
            for _ in 0..3 {
                let name = ctx.name("p");
                let pipe = Pipe::builder().create(&name).unwrap();
                let left = pipe.left().unwrap();
                let mut args = vec![&*name, "right", "say:ready"];
                match how {
                    "close" => args.extend(["close", "hang"]),
                    "drop" => args.extend(["drop", "hang"]),
                    _ => {}
                }
                let mut child = spawn_child("child_pipe", &args);
                assert_eq!(left.recv().unwrap(), b"ready");
                assert_eq!(left.recv(), Err(RecvError::Disconnected));
                let sent = left.try_send(b"after EOF");
                if how == "exit" {
                    wait_ok(&mut child);
                } else {
                    kill_child(&mut child);
                }
                assert_eq!(
                    sent,
                    Err(ByteSendError::Disconnected),
                    "peer {how}: EOF seen, yet the peer still receives"
                );
            }
        }
    });
}

#[test]
fn send_to_a_sigkilled_peer() {
    run("pipe_send_killed", |ctx| {
        for full in [true, false] {
            let name = ctx.name("p");
            let pipe = Pipe::builder().capacity(4).create(&name).unwrap();
            let left = pipe.left().unwrap();
            let child = spawn_child("child_pipe", &[&name, "right", "say:ready", "hang"]);
            assert_eq!(left.recv().unwrap(), b"ready");
            if full {
                // Blocked on a full buffer the peer never reads, then the
                // peer dies: Disconnected.
                assert_eq!(fill(&left), 4);
                let killer = kill_later(child, Duration::from_millis(100));
                assert_eq!(left.send(b"blocked"), Err(ByteSendError::Disconnected));
                wait_killed(&mut killer.join().unwrap());
            } else {
                let mut child = child;
                kill_child(&mut child);
                assert_eq!(left.recv(), Err(RecvError::Disconnected));
                // A dead receiver is noticed when it is reaped, at the
                // latest when a send has to wait for room: a few sends may
                // still land in the buffer, then Disconnected.
                let mut sent = 0;
                loop {
                    match left.send(b"to the dead") {
                        Ok(()) => sent += 1,
                        Err(e) => {
                            assert_eq!(e, ByteSendError::Disconnected);
                            break;
                        }
                    }
                    assert!(sent <= 4, "sent {sent} messages to a dead peer");
                }
            }
            assert_send_disconnected(&left);
            assert_recv_eof(&left);
        }
    });
}

// ---------------------------------------------------------------------------
// close()
// ---------------------------------------------------------------------------

#[test]
fn close_then_every_call_is_disconnected() {
    run("pipe_close", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder().create(&name).unwrap();
        for duplex_pipe in [Some(pipe), None] {
            let (mut left, right) = match &duplex_pipe {
                Some(p) => (p.left().unwrap(), p.right().unwrap()),
                None => Pipe::pair(true).unwrap(),
            };
            left.send(b"before close").unwrap();
            right.send(b"to the closing end").unwrap();
            left.close();
            assert!(!left.readable());
            assert!(!left.writable());
            assert!(left.sender().is_none() && left.receiver().is_none());
            // Every call on the closed end, even with a message waiting for it.
            assert_recv_eof(&left);
            assert_send_disconnected(&left);
            left.close(); // twice is fine
            assert_recv_eof(&left);
            // The other end: what was sent before the close, then EOF; and
            // its sends fail.
            assert_eq!(right.recv().unwrap(), b"before close");
            assert_recv_eof(&right);
            assert_send_disconnected(&right);
            // The closed end's roles are free again.
            if let Some(p) = &duplex_pipe {
                let again = p.left().unwrap();
                drop(left);
                assert!(again.readable() && again.writable());
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Exclusive ends
// ---------------------------------------------------------------------------

/// Child: attaches the left end of pipe `args[0]`, says `ready` through it,
/// and sleeps until killed.
#[test]
#[ignore = "child process entry point"]
fn child_hold_left() {
    child_main("child_hold_left", |a: Args| {
        let pipe = Pipe::open(a.str(0)).unwrap();
        let left = pipe.left().unwrap();
        left.send(b"ready").unwrap();
        sleep_forever();
    });
}

#[test]
fn second_end_while_the_first_is_alive_is_role_taken() {
    run("pipe_role_taken", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder().create(&name).unwrap();
        let right = pipe.right().unwrap();
        let mut child = spawn_child("child_hold_left", &[&name]);
        assert_eq!(right.recv().unwrap(), b"ready");
        // Another process holds the left end: the error names the end and
        // the holder.
        match pipe.left() {
            Err(
                e @ SegmentError::PipeEndTaken {
                    end: "left",
                    holder,
                },
            ) => {
                assert_eq!(holder, Some(child.id()));
                let msg = e.to_string();
                assert!(
                    msg.contains("left end") && msg.contains(&child.id().to_string()),
                    "{msg}"
                );
            }
            r => panic!("expected PipeEndTaken(left), got {r:?}"),
        }
        let other = Pipe::open(&name).unwrap();
        assert!(matches!(
            other.left(),
            Err(SegmentError::PipeEndTaken {
                end: "left",
                holder: Some(_)
            })
        ));
        // This process holds the right end.
        assert!(matches!(
            pipe.right(),
            Err(SegmentError::PipeEndTaken {
                end: "right",
                holder: Some(_)
            })
        ));
        // The failed attaches took nothing (they used up generation numbers
        // only): what we send is still addressed to the child.
        let child_session = right.peer_generation();
        right.send(b"still yours").unwrap();
        // Once the holder is dead, its end can be attached again: a new
        // session, which does not get what was addressed to the child.
        kill_child(&mut child);
        let left = pipe.left().unwrap();
        assert!(left.generation() > child_session);
        assert_eq!(left.try_recv(), Err(TryRecvError::Empty));
        assert_eq!(left.stale(), 1, "the child's message was dropped");
        // We see the end of the child's session once, then talk to the new
        // left end.
        assert_eq!(right.recv(), Err(RecvError::Disconnected));
        right.send(b"hi").unwrap();
        assert_eq!(left.recv().unwrap(), b"hi");
        left.send(b"back").unwrap();
        assert_eq!(right.recv().unwrap(), b"back");
        assert_eq!(right.peer_generation(), left.generation());
    });
}

#[test]
fn half_attached_end_is_released_when_the_other_half_is_taken() {
    run("pipe_half_taken", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder().create(&name).unwrap();
        // Someone holds the sender of the left → right queue directly.
        let half = ByteQueue::open(&format!("{}.1", &*name)).unwrap();
        let tx = half.sender().unwrap();
        // `left` gets the receiver of `.0`, then fails on the sender of `.1`:
        // the receiver must be given back.
        assert!(matches!(
            pipe.left(),
            Err(SegmentError::PipeEndTaken {
                end: "left",
                holder: Some(_)
            })
        ));
        drop(tx);
        let left = pipe.left().unwrap();
        let right = pipe.right().unwrap();
        right.send(b"ok").unwrap();
        assert_eq!(left.recv().unwrap(), b"ok");
    });
}

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

#[test]
fn open_missing_and_names_cleaned_up() {
    run("pipe_names", |ctx| {
        let missing = ctx.name("missing");
        assert!(matches!(
            Pipe::open(&missing),
            Err(SegmentError::NotFound(_))
        ));
        assert!(matches!(
            Pipe::unlink(&missing),
            Err(SegmentError::NotFound(_))
        ));

        // With `persist(false)`, the creator's drop removes both names,
        // after every handle is gone.
        let name = ctx.name("p");
        let (n0, n1) = (format!("{}.0", &*name), format!("{}.1", &*name));
        let pipe = Pipe::builder().persist(false).create(&name).unwrap();
        assert!(shm_exists(&n0) && shm_exists(&n1));
        assert!(matches!(
            Pipe::builder().create(&name),
            Err(SegmentError::AlreadyExists(_))
        ));
        assert!(
            shm_exists(&n0) && shm_exists(&n1),
            "a failed create removes nothing"
        );
        let opened = Pipe::open(&name).unwrap();
        assert!(opened.is_duplex());
        drop(opened);
        drop(pipe);
        assert!(!shm_exists(&n0) && !shm_exists(&n1));
        assert!(matches!(Pipe::open(&name), Err(SegmentError::NotFound(_))));

        // By default the names stay until `Pipe::unlink`, for both shapes.
        for duplex in [true, false] {
            let name = ctx.name("persist");
            let (n0, n1) = (format!("{}.0", &*name), format!("{}.1", &*name));
            drop(Pipe::builder().duplex(duplex).create(&name).unwrap());
            assert!(shm_exists(&n0));
            assert_eq!(shm_exists(&n1), duplex);
            let p = Pipe::open(&name).unwrap();
            assert_eq!(p.is_duplex(), duplex);
            let (left, right) = (p.left().unwrap(), p.right().unwrap());
            right.send(b"persisted").unwrap();
            assert_eq!(left.recv().unwrap(), b"persisted");
            drop((left, right, p));
            Pipe::unlink(&name).unwrap();
            assert!(!shm_exists(&n0) && !shm_exists(&n1));
            assert!(matches!(
                Pipe::unlink(&name),
                Err(SegmentError::NotFound(_))
            ));
        }

        // A create that fails on `.0` leaves no `.1` behind.
        let name = ctx.name("clash");
        let n1 = format!("{}.1", &*name);
        let squatter = ByteQueue::create(&format!("{}.0", &*name), Flavor::Spsc, 2, 8).unwrap();
        assert!(matches!(
            Pipe::builder().create(&name),
            Err(SegmentError::AlreadyExists(_))
        ));
        assert!(!shm_exists(&n1), "the half-made pipe was removed");
        drop(squatter);
        ByteQueue::unlink(&format!("{}.0", &*name)).unwrap();

        // Something else under a pipe's name is refused.
        let name = ctx.name("wrong");
        let q = Queue::<u64>::create(&format!("{}.0", &*name), Flavor::Spsc, 2).unwrap();
        assert!(matches!(
            Pipe::open(&name),
            Err(SegmentError::WrongKind { .. })
        ));
        drop(q);
        Queue::<u64>::unlink(&format!("{}.0", &*name)).unwrap();
        let name = ctx.name("mpmc");
        let q = ByteQueue::create(&format!("{}.0", &*name), Flavor::Mpmc, 2, 8).unwrap();
        assert!(matches!(
            Pipe::open(&name),
            Err(SegmentError::FlavorMismatch { .. })
        ));
        drop(q);
        ByteQueue::unlink(&format!("{}.0", &*name)).unwrap();
    });
}

// ---------------------------------------------------------------------------
// Anonymous pipes across fork
// ---------------------------------------------------------------------------

/// Child: forks (it is a re-executed test binary whose only other thread,
/// libtest's main thread, is parked waiting for this one) and plays
/// Python's Pipe tutorial over an anonymous duplex pipe: the grandchild
/// sends "Hello ~" twice and exits; we receive both, then see EOF.
#[test]
#[ignore = "child process entry point"]
fn child_anonymous_fork() {
    child_main("child_anonymous_fork", |_| {
        let pipe = Pipe::anonymous(true).unwrap();
        // Attached before the fork: it belongs to this process.
        let left = pipe.left().unwrap();
        // SAFETY: the only other thread is blocked in a channel wait,
        // holding no lock the grandchild needs; the grandchild leaves
        // through `_exit`, never returning into the harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
                // The inherited copy of the left end is the parent's.
                assert!(matches!(
                    pipe.left(),
                    Err(SegmentError::PipeEndTaken { end: "left", .. })
                ));
                drop(left); // closes nothing: not ours
                let right = pipe.right().unwrap();
                right.send(b"Hello ~").unwrap();
                right.send(b"Hello ~").unwrap();
                assert_eq!(right.recv().unwrap(), b"bye");
            }))
            .is_ok();
            // SAFETY: ends the forked process without running the harness.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) };
        }
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            assert_eq!(left.recv_timeout(LONG).unwrap(), b"Hello ~");
            assert_eq!(left.recv_timeout(LONG).unwrap(), b"Hello ~");
            left.send(b"bye").unwrap();
            assert_eq!(left.recv_timeout(LONG), Err(RecvTimeoutError::Disconnected));
        }));
        if result.is_err() {
            // SAFETY: plain integers; `pid` is our unreaped child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let mut status = 0;
        // SAFETY: plain integers and a pointer to a local.
        let r = unsafe { libc::waitpid(pid, &mut status, 0) };
        assert_eq!(r, pid);
        if let Err(p) = result {
            std::panic::resume_unwind(p);
        }
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the forked child failed (status {status:#x})"
        );
    });
}

#[test]
fn anonymous_pipe_across_fork() {
    run("pipe_anon_fork", |_| {
        let mut child = spawn_child("child_anonymous_fork", &[]);
        wait_ok(&mut child);
    });
}

// ---------------------------------------------------------------------------
// Values (feature `serde`)
// ---------------------------------------------------------------------------

#[cfg(feature = "serde")]
mod values {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Job {
        pub id: u64,
        pub name: String,
        pub data: Vec<u8>,
        pub tags: Vec<(String, i32)>,
        pub kind: Kind,
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub enum Kind {
        Embed { dim: u32 },
        Stop,
    }

    pub fn job(i: u64) -> Job {
        Job {
            id: i,
            name: format!("job-{i}"),
            data: (0..(i % 50) as u8).collect(),
            tags: (0..(i % 3) as i32).map(|k| (format!("t{k}"), -k)).collect(),
            kind: if i % 7 == 6 {
                Kind::Stop
            } else {
                Kind::Embed { dim: 384 }
            },
        }
    }

    /// The worker's answer to a job.
    pub fn done(mut j: Job) -> Job {
        j.id += 1000;
        j.name.push_str(" done");
        j.data.reverse();
        j
    }
}

#[cfg(feature = "serde")]
use shmring::{ValueRecvError, ValueSendError};
#[cfg(feature = "serde")]
use values::{done, job, Job};

/// Child: the right end of pipe `args[0]`: answers each `Job` with
/// `done(job)` until EOF.
#[cfg(feature = "serde")]
#[test]
#[ignore = "child process entry point"]
fn child_value_worker() {
    child_main("child_value_worker", |a: Args| {
        let pipe = Pipe::open(a.str(0)).unwrap();
        let mut right = pipe.right().unwrap();
        loop {
            match right.recv_value::<Job>() {
                Ok(j) => right.send_value(&done(j)).unwrap(),
                Err(ValueRecvError::Disconnected) => break,
                Err(e) => panic!("worker: {e:?}"),
            }
        }
    });
}

#[cfg(feature = "serde")]
#[test]
fn values_through_a_pipe_across_processes() {
    run("pipe_values", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder()
            .capacity(4)
            .max_message_size(256)
            .create(&name)
            .unwrap();
        let mut left = pipe.left().unwrap();
        let mut child = spawn_child("child_value_worker", &[&name]);
        for i in 0..100 {
            left.send_value(&job(i)).unwrap();
            assert_eq!(left.recv_value::<Job>().unwrap(), done(job(i)));
        }
        // Too large for the pipe: refused, nothing sent.
        let mut big = job(1);
        big.data = vec![1; 300];
        assert!(matches!(
            left.send_value(&big),
            Err(ValueSendError::TooLarge { max: 256 })
        ));
        left.send_value(&job(5)).unwrap();
        assert_eq!(left.recv_value_timeout::<Job>(LONG).unwrap(), done(job(5)));
        assert!(matches!(
            left.recv_value_timeout::<Job>(Duration::from_millis(20)),
            Err(ValueRecvError::Empty)
        ));
        // Close: the worker sees EOF and exits; then so do we.
        drop(left);
        wait_ok(&mut child);
        let mut left = pipe.left().unwrap();
        assert!(matches!(
            left.recv_value::<Job>(),
            Err(ValueRecvError::Disconnected)
        ));
        assert!(matches!(
            left.send_value(&job(0)),
            Err(ValueSendError::Send(ByteSendError::Disconnected))
        ));
        left.close();
        assert!(matches!(
            left.send_value(&job(0)),
            Err(ValueSendError::Send(ByteSendError::Disconnected))
        ));
    });
}

#[cfg(feature = "serde")]
#[test]
fn values_on_a_one_way_pipe() {
    run("pipe_values_one_way", |_| {
        let (mut left, mut right) = Pipe::pair(false).unwrap();
        right.send_value(&job(3)).unwrap();
        assert_eq!(left.recv_value::<Job>().unwrap(), job(3));
        // Wrong directions.
        assert!(matches!(
            left.send_value(&job(0)),
            Err(ValueSendError::Send(ByteSendError::Disconnected))
        ));
        assert!(matches!(
            right.recv_value::<Job>(),
            Err(ValueRecvError::Disconnected)
        ));
        drop(right);
        assert!(matches!(
            left.recv_value::<Job>(),
            Err(ValueRecvError::Disconnected)
        ));
    });
}

/// `open_or_create` from several threads at once gives every caller the
/// same pipe (one creates, the others open it); a caller that asks for the
/// other duplexity is refused.
#[test]
fn open_or_create_races_to_one_pipe() {
    run("pipe_ooc", |ctx| {
        let name = ctx.name("p");
        let go = std::sync::Arc::new(std::sync::Barrier::new(4));
        let pipes: Vec<Pipe> = (0..4)
            .map(|_| {
                let (name, go) = (name.as_str().to_string(), go.clone());
                std::thread::spawn(move || {
                    go.wait();
                    Pipe::builder().open_or_create(&name).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let left = pipes[1].left().unwrap();
        let right = pipes[3].right().unwrap();
        left.send(b"one pipe").unwrap();
        assert_eq!(right.recv().unwrap(), b"one pipe");
        right.send(b"both ways").unwrap();
        assert_eq!(left.recv().unwrap(), b"both ways");
        assert!(matches!(
            Pipe::builder().duplex(false).open_or_create(&name),
            Err(SegmentError::InvalidArgument(_))
        ));
        drop((left, right));
        drop(pipes);
    });
}
