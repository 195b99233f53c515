//! Pipe sessions: a restarted end receives nothing addressed to its
//! predecessor, a reply goes to the session that asked, the end of a peer
//! session is reported once, and generations tell sessions apart.
//!
//! The restart scenarios run real separate processes (re-executed children
//! of this test binary) killed with SIGKILL; the rules for every receiving
//! call are checked in one process, where the order of events is exact.
#![cfg(not(loom))]

mod common;

#[allow(dead_code)]
#[path = "../examples/request_response.rs"]
mod request_response;

use common::{
    child_main, kill_child, run, sleep_forever, spawn_child, wait_ok, wait_until, Args, ARGS_ENV,
};
use shmring::inspect::inspect;
use shmring::inspect::Location;
use shmring::{ByteQueue, Connection, Pipe, RecvError, RecvTimeoutError, TryRecvError};
use std::process::Command;
use std::time::Duration;

/// A long timeout: only the watchdog should ever see it expire.
const LONG: Duration = Duration::from_secs(60);

/// A client's reply to `req`.
fn reply(req: &str) -> Vec<u8> {
    format!("re: {req}").into_bytes()
}

/// A server session's reply to `req`: its generation, then the request.
fn session_reply(generation: u64, req: &[u8]) -> Vec<u8> {
    let mut r = format!("{generation} ").into_bytes();
    r.extend_from_slice(req);
    r
}

/// The stale count of pipe half `name.N` as `shmring inspect` reports it.
fn inspected_stale(half: &str) -> Option<u64> {
    inspect(&Location::Named(half.to_string())).unwrap().stale
}

/// Receives the next message, waiting through the end of earlier peer
/// sessions (`Disconnected`, then `wait_connected`), as a server does.
fn recv_next(c: &Connection) -> Vec<u8> {
    loop {
        match c.recv() {
            Ok(m) => return m,
            Err(RecvError::Disconnected) => assert!(c.wait_connected(Some(LONG))),
            Err(e) => panic!("recv: {e:?}"),
        }
    }
}

// ---------------------------------------------------------------------------
// Children
// ---------------------------------------------------------------------------

/// Child: opens (or creates) pipe `args[0]`, attaches end `args[1]`
/// (`left` / `right`), and runs the actions `args[2..]` in order:
///
/// - `say:TEXT` sends TEXT; `expect_reply:TEXT` receives `reply(TEXT)`;
/// - `stale:N` asserts this end's stale count;
/// - `serve:N` answers N requests with `session_reply(generation, ..)`;
///   `serve` answers until EOF (the client closed its end);
/// - `hang` sleeps until killed. Otherwise the child exits normally.
#[test]
#[ignore = "child process entry point"]
fn child_session() {
    child_main("child_session", |a: Args| {
        let pipe = Pipe::builder().open_or_create(a.str(0)).unwrap();
        let c = match a.str(1) {
            "left" => pipe.left().unwrap(),
            "right" => pipe.right().unwrap(),
            end => panic!("unknown end {end:?}"),
        };
        assert!(c.wait_connected(Some(LONG)));
        for act in &a.0[2..] {
            let (verb, arg) = act.split_once(':').unwrap_or((act, ""));
            match verb {
                "say" => c.send(arg.as_bytes()).unwrap(),
                "expect_reply" => assert_eq!(c.recv().unwrap(), reply(arg)),
                "stale" => assert_eq!(c.stale(), arg.parse::<u64>().unwrap()),
                "serve" if arg.is_empty() => loop {
                    match c.recv() {
                        Ok(req) => c.send(&session_reply(c.generation(), &req)).unwrap(),
                        Err(RecvError::Disconnected) => break,
                        Err(e) => panic!("serve: {e:?}"),
                    }
                },
                "serve" => {
                    for _ in 0..arg.parse::<u64>().unwrap() {
                        let req = c.recv().unwrap();
                        c.send(&session_reply(c.generation(), &req)).unwrap();
                    }
                }
                "hang" => sleep_forever(),
                _ => panic!("unknown action {act:?}"),
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Clients restarted: no reply addressed to a dead client reaches the next
// ---------------------------------------------------------------------------

#[test]
fn reply_to_a_killed_client_is_not_delivered_to_the_next() {
    run("sess_killed_client", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder().create(&name).unwrap();
        let server = pipe.left().unwrap();
        // Client 1 asks, and is killed before the answer.
        let mut c1 = spawn_child("child_session", &[&name, "right", "say:one", "hang"]);
        assert_eq!(server.recv().unwrap(), b"one");
        let first = server.peer_generation();
        assert!(first >= 1);
        kill_child(&mut c1);
        // The answer goes to client 1, which is dead (not yet reaped: the
        // send finds room and does not look).
        server.send(&reply("one")).unwrap();
        // Client 2 attaches after the answer was queued, asks, and gets
        // only its own answer: the queued one is dropped and counted.
        let mut c2 = spawn_child(
            "child_session",
            &[&name, "right", "say:two", "expect_reply:two", "stale:1"],
        );
        assert_eq!(recv_next(&server), b"two");
        let second = server.peer_generation();
        assert!(second > first, "client 2's session {second} after {first}");
        server.send(&reply("two")).unwrap();
        wait_ok(&mut c2);
        // The drop is counted in the pipe too, and `shmring inspect` shows it
        // on the left → right half.
        assert_eq!(pipe.stale(), 1);
        assert_eq!(inspected_stale(&format!("{}.1", &*name)), Some(1));
        assert_eq!(inspected_stale(&format!("{}.0", &*name)), Some(0));
    });
}

#[test]
fn reply_in_flight_when_a_client_dies_goes_to_nobody_else() {
    run("sess_in_flight", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder().create(&name).unwrap();
        let mut server = pipe.left().unwrap();
        // The server has read client 1's request...
        let mut c1 = spawn_child("child_session", &[&name, "right", "say:one", "hang"]);
        assert_eq!(server.recv().unwrap(), b"one");
        let first = server.peer_generation();
        // ...client 1 dies, client 2 attaches and sends its request...
        kill_child(&mut c1);
        let mut c2 = spawn_child(
            "child_session",
            &[&name, "right", "say:two", "expect_reply:two", "stale:1"],
        );
        let rx = server.receiver().unwrap();
        wait_until("client 2's request", || rx.len() == 1);
        // ...and only then does the server answer client 1 (a reply goes to
        // whoever asked, though a newer client is attached now), then
        // client 2.
        server.send(&reply("one")).unwrap();
        // Client 1's session is over: reported once, before client 2's
        // request.
        assert_eq!(server.recv(), Err(RecvError::Disconnected));
        assert_eq!(server.recv().unwrap(), b"two");
        assert!(server.peer_generation() > first);
        server.send(&reply("two")).unwrap();
        wait_ok(&mut c2);
        assert_eq!(pipe.stale(), 1);
    });
}

// ---------------------------------------------------------------------------
// The server restarted: the client continues
// ---------------------------------------------------------------------------

/// Sends `req` and returns the reply, as `server_restart` expects it.
fn ask(client: &Connection, req: &str) -> Vec<u8> {
    client.send(req.as_bytes()).unwrap();
    client.recv().unwrap()
}

#[test]
fn server_restarted_after_kill_9_serves_the_client_that_goes_on() {
    run("sess_server_restart", |ctx| {
        // `slow`: the client sees the server die before the new one starts;
        // otherwise the new server is serving before the client looks.
        for slow in [true, false] {
            let name = ctx.name("p");
            // The client creates the pipe (`open_or_create` on both sides).
            let pipe = Pipe::builder().open_or_create(&name).unwrap();
            let client = pipe.right().unwrap();
            let mut s1 = spawn_child("child_session", &[&name, "left", "serve:3", "hang"]);
            assert!(client.wait_connected(Some(LONG)));
            let mut first = 0;
            for i in 0..3 {
                let req = format!("req {i}");
                let got = ask(&client, &req);
                first = client.peer_generation();
                assert_eq!(got, session_reply(first, req.as_bytes()));
            }
            // Server 1 stops reading; a request is addressed to it, and it is
            // killed while the client waits for the answer.
            client.send(b"req 3").unwrap();
            kill_child(&mut s1);
            let mut s2;
            if slow {
                // The dead server's session ends: `Disconnected`, once.
                assert_eq!(client.recv(), Err(RecvError::Disconnected));
                s2 = spawn_child("child_session", &[&name, "left", "serve", "stale:1"]);
            } else {
                s2 = spawn_child("child_session", &[&name, "left", "serve", "stale:1"]);
                // Server 2 is attached and has dropped the request addressed
                // to server 1 before the client looks: the client still sees
                // the end of server 1's session.
                let half = format!("{}.0", &*name);
                wait_until("server 2 to drop the stale request", || {
                    inspected_stale(&half) == Some(1)
                });
                assert_eq!(client.recv(), Err(RecvError::Disconnected));
            }
            // The client waits for a server, re-sends, and gets one answer,
            // from the new session.
            assert!(client.wait_connected(Some(LONG)));
            let got = ask(&client, "req 3");
            let second = client.peer_generation();
            assert!(second > first, "server 2's session {second} after {first}");
            assert_eq!(got, session_reply(second, b"req 3"));
            for i in 4..6 {
                let req = format!("req {i}");
                assert_eq!(ask(&client, &req), session_reply(second, req.as_bytes()));
            }
            assert_eq!(client.try_recv(), Err(TryRecvError::Empty));
            assert_eq!(client.stale(), 0);
            // Closing the client is server 2's EOF; it checks that it
            // dropped exactly the one request addressed to server 1.
            drop(client);
            wait_ok(&mut s2);
            assert_eq!(pipe.stale(), 1);
        }
    });
}

// ---------------------------------------------------------------------------
// Every receiving call drops what is addressed to a predecessor
// ---------------------------------------------------------------------------

/// A pipe whose left end was re-attached after the right end sent `old` to
/// the first one: `(pipe, new left, right)`, `old` still queued.
fn stale_for_new_left(keep_stale: bool) -> (Pipe, Connection, Connection) {
    let pipe = Pipe::builder()
        .keep_stale(keep_stale)
        .create_anonymous()
        .unwrap();
    let left = pipe.left().unwrap();
    let right = pipe.right().unwrap();
    right.send(b"old").unwrap();
    let first = left.generation();
    drop(left);
    let left = pipe.left().unwrap();
    assert_eq!(left.generation(), first + 1);
    (pipe, left, right)
}

#[test]
fn every_receiving_call_drops_messages_addressed_to_a_predecessor() {
    run("sess_every_call", |_ctx| {
        for how in [
            "recv",
            "recv_into",
            "recv_timeout",
            "try_recv",
            "poll",
            "poll_zero",
            "try_recv_ref",
            "recv_ref_timeout",
            "byte_try_recv",
            "iter",
            #[cfg(feature = "serde")]
            "recv_value_timeout",
        ] {
            let (pipe, mut left, right) = stale_for_new_left(false);
            // With only the stale message queued, nothing is delivered: the
            // non-blocking calls find nothing, and the timed ones wait until
            // their deadline (an untimed one would wait on; it gets the new
            // message below).
            let short = Duration::from_millis(20);
            match how {
                "recv" | "recv_into" => {}
                "recv_timeout" => {
                    assert_eq!(left.recv_timeout(short), Err(RecvTimeoutError::Timeout))
                }
                "try_recv" => assert_eq!(left.try_recv(), Err(TryRecvError::Empty)),
                "poll" => assert_eq!(left.poll(short), Ok(false), "poll"),
                "poll_zero" => assert_eq!(left.poll(Duration::ZERO), Ok(false), "poll(0)"),
                "try_recv_ref" => assert_eq!(
                    left.receiver().unwrap().try_recv_ref().unwrap_err(),
                    TryRecvError::Empty
                ),
                "recv_ref_timeout" => assert_eq!(
                    left.receiver()
                        .unwrap()
                        .recv_ref_timeout(short)
                        .unwrap_err(),
                    RecvTimeoutError::Timeout
                ),
                "byte_try_recv" => assert_eq!(
                    left.receiver().unwrap().try_recv(),
                    Err(TryRecvError::Empty)
                ),
                "iter" => assert_eq!(left.receiver().unwrap().try_iter().count(), 0),
                #[cfg(feature = "serde")]
                "recv_value_timeout" => assert!(matches!(
                    left.recv_value_timeout::<String>(short),
                    Err(shmring::ValueRecvError::Empty)
                )),
                _ => unreachable!(),
            }
            if !matches!(how, "recv" | "recv_into") {
                assert_eq!(left.stale(), 1, "{how}: the stale message was dropped");
                assert_eq!(pipe.stale(), 1, "{how}");
            }
            // The right end addressed the first left end (it never heard
            // from it): it sees that session's end once, then talks to the
            // new left end.
            assert_eq!(right.recv(), Err(RecvError::Disconnected), "{how}");
            assert_eq!(right.peer_generation(), left.generation(), "{how}");
            #[cfg(feature = "serde")]
            if how == "recv_value_timeout" {
                let mut right = right;
                right.send_value(&"new".to_string()).unwrap();
                assert_eq!(left.recv_value::<String>().unwrap(), "new");
                assert_eq!(left.stale(), 1);
                continue;
            }
            right.send(b"new").unwrap();
            let got = match how {
                "recv" => left.recv().unwrap(),
                "recv_into" => {
                    let mut buf = b"junk".to_vec();
                    assert_eq!(left.recv_into(&mut buf), Ok(3));
                    buf
                }
                "recv_timeout" => left.recv_timeout(LONG).unwrap(),
                "try_recv" => left.try_recv().unwrap(),
                "poll" | "poll_zero" => {
                    assert_eq!(left.poll(LONG), Ok(true));
                    assert_eq!(left.poll(Duration::ZERO), Ok(true), "poll takes nothing");
                    left.try_recv().unwrap()
                }
                "try_recv_ref" | "recv_ref_timeout" => {
                    left.receiver().unwrap().recv_ref().unwrap().to_vec()
                }
                "byte_try_recv" => left.receiver().unwrap().try_recv().unwrap(),
                "iter" => left.receiver().unwrap().iter().next().unwrap(),
                _ => unreachable!(),
            };
            assert_eq!(got, b"new", "{how}");
            assert_eq!(left.stale(), 1, "{how}: counted once");
            assert_eq!(left.try_recv(), Err(TryRecvError::Empty), "{how}");
        }
    });
}

#[test]
fn a_blocked_receive_waits_through_stale_messages() {
    run("sess_blocked", |_ctx| {
        let pipe = Pipe::anonymous(true).unwrap();
        let left = pipe.left().unwrap();
        let right = pipe.right().unwrap();
        // The right end hears from the first left end: it answers that one
        // from now on.
        left.send(b"hello").unwrap();
        assert_eq!(right.recv().unwrap(), b"hello");
        drop(left);
        let left = pipe.left().unwrap();
        // The new left end blocks; what the right end sends now is still
        // addressed to the first: dropped as it comes, while the receive
        // goes on waiting.
        let t = std::thread::spawn(move || {
            let got = left.recv().unwrap();
            (got, left.stale())
        });
        right.send(b"old 1").unwrap();
        right.send(b"old 2").unwrap();
        // The right end learns that its peer session ended, and then talks
        // to the new left end.
        assert_eq!(right.recv(), Err(RecvError::Disconnected));
        right.send(b"new").unwrap();
        let (got, stale) = t.join().unwrap();
        assert_eq!(got, b"new");
        assert_eq!(stale, 2);
        assert_eq!(pipe.stale(), 2);
    });
}

#[test]
fn keep_stale_delivers_messages_addressed_to_a_predecessor() {
    run("sess_keep_stale", |_ctx| {
        let (pipe, left, right) = stale_for_new_left(true);
        assert_eq!(left.recv().unwrap(), b"old");
        assert_eq!(left.stale(), 1, "delivered, and still counted");
        assert_eq!(pipe.stale(), 1);
        // Its sender is the session it heard from: the answer goes there.
        assert_eq!(left.peer_generation(), right.generation());
        left.send(b"answer").unwrap();
        // The right end addressed the first left end: it sees that
        // session's end, then the new end's answer.
        assert_eq!(right.recv(), Err(RecvError::Disconnected));
        assert_eq!(right.recv().unwrap(), b"answer");
    });
}

#[test]
fn the_end_of_a_writer_session_is_reported_once_between_sessions() {
    run("sess_one_way", |_ctx| {
        let pipe = Pipe::anonymous(false).unwrap();
        let reader = pipe.left().unwrap();
        let w1 = pipe.right().unwrap();
        for m in [b"a1", b"a2"] {
            w1.send(m).unwrap();
        }
        let g1 = w1.generation();
        drop(w1);
        let w2 = pipe.right().unwrap();
        assert!(w2.generation() > g1);
        w2.send(b"b1").unwrap();
        // Everything writer 1 sent, then its end, then writer 2's: the
        // message from the later session waits behind the report.
        assert_eq!(reader.recv().unwrap(), b"a1");
        assert_eq!(reader.peer_generation(), g1);
        assert_eq!(reader.recv().unwrap(), b"a2");
        assert_eq!(reader.poll(Duration::ZERO), Err(RecvError::Disconnected));
        assert_eq!(reader.poll(Duration::ZERO), Ok(true));
        assert_eq!(reader.recv().unwrap(), b"b1");
        assert_eq!(reader.peer_generation(), w2.generation());
        assert_eq!(reader.stale(), 0);
        // A writer that leaves with nobody after it: EOF as always, until
        // the next one attaches.
        drop(w2);
        assert_eq!(reader.recv(), Err(RecvError::Disconnected));
        assert_eq!(reader.try_recv(), Err(TryRecvError::Disconnected));
        let w3 = pipe.right().unwrap();
        w3.send(b"c1").unwrap();
        assert_eq!(reader.recv().unwrap(), b"c1");
    });
}

// ---------------------------------------------------------------------------
// Generations
// ---------------------------------------------------------------------------

#[test]
fn generations_number_the_sessions_of_each_end() {
    run("sess_generations", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder().create(&name).unwrap();
        let left = pipe.left().unwrap();
        assert_eq!(left.generation(), 1);
        // No right end has attached yet.
        assert_eq!(left.peer_generation(), 0);
        let r1 = pipe.right().unwrap();
        assert_eq!(r1.generation(), 1);
        // Before hearing anything: the peer end attached last.
        assert_eq!(r1.peer_generation(), 1);
        assert_eq!(left.peer_generation(), 1);
        r1.send(b"hi").unwrap();
        assert_eq!(left.recv().unwrap(), b"hi");
        assert_eq!(left.peer_generation(), 1);
        // A refused attach takes no number (a standby retrying a taken end
        // must not run the 16-bit tags round); the live ends keep theirs.
        for _ in 0..1000 {
            assert!(pipe.right().is_err());
        }
        assert_eq!(left.peer_generation(), 1);
        drop(r1);
        assert_eq!(left.recv(), Err(RecvError::Disconnected));
        let r2 = pipe.right().unwrap();
        let g2 = r2.generation();
        assert_eq!(g2, 2, "refused attaches took numbers");
        r2.send(b"hi").unwrap();
        assert_eq!(left.recv().unwrap(), b"hi");
        assert_eq!(left.peer_generation(), g2);
        drop(r2);
        assert_eq!(left.recv(), Err(RecvError::Disconnected));
        // The numbers live in the segment: another handle (another process)
        // continues them, for both ends.
        let again = Pipe::open(&name).unwrap();
        let r3 = again.right().unwrap();
        assert_eq!(r3.generation(), g2 + 1);
        drop(left);
        let left = again.left().unwrap();
        assert_eq!(left.generation(), 2);
        assert_eq!(r3.peer_generation(), 2);
        assert_eq!(left.peer_generation(), g2 + 1);
    });
}

// ---------------------------------------------------------------------------
// Unaddressed messages and plain byte queues
// ---------------------------------------------------------------------------

#[test]
fn messages_from_a_plain_byte_sender_are_always_delivered() {
    run("sess_unaddressed", |ctx| {
        let name = ctx.name("p");
        let pipe = Pipe::builder().duplex(false).create(&name).unwrap();
        // A plain byte sender on the right → left half (the right end's
        // role there): its messages are unaddressed.
        let half = ByteQueue::open(&format!("{}.0", &*name)).unwrap();
        let raw = half.sender().unwrap();
        raw.send(b"plain").unwrap();
        let left = pipe.left().unwrap();
        raw.send(b"plain 2").unwrap();
        drop(left);
        // Even a later left end gets them.
        let left = pipe.left().unwrap();
        assert_eq!(left.recv().unwrap(), b"plain");
        assert_eq!(left.recv().unwrap(), b"plain 2");
        assert_eq!(left.stale(), 0);
        assert_eq!(half.stale(), 0);
    });
}

// ---------------------------------------------------------------------------
// The request/response example, as separate processes
// ---------------------------------------------------------------------------

/// Child: runs the example's `server` (`args[1]` = name) or `client`
/// (`args[1..]` = name, requests, server sessions to see).
#[test]
#[ignore = "child process entry point"]
fn child_request_response() {
    child_main("child_request_response", |a: Args| match a.str(0) {
        "server" => request_response::server(a.str(1)).unwrap(),
        "client" => {
            let r = request_response::client(a.str(1), a.get(2), a.get(3)).unwrap();
            assert!(r.replies >= a.get::<u64>(2));
            assert!(r.sessions.len() >= a.get::<usize>(3));
        }
        what => panic!("unknown program {what:?}"),
    });
}

#[test]
fn request_response_programs_in_both_start_orders() {
    run("sess_rr_orders", |ctx| {
        for server_first in [true, false] {
            let name = ctx.name("p");
            let server = || spawn_child("child_request_response", &["server", &name]);
            let client = || spawn_child("child_request_response", &["client", &name, "50", "1"]);
            let (mut s, mut c) = if server_first {
                let s = server();
                (s, client())
            } else {
                let c = client();
                (server(), c)
            };
            wait_ok(&mut c);
            kill_child(&mut s);
        }
    });
}

#[test]
fn request_response_demo_restarts_server_and_clients() {
    run("sess_rr_demo", |ctx| {
        let name = ctx.name("p");
        let exe = std::env::current_exe().unwrap();
        // The demo starts each program as a child of this test binary, its
        // stdout piped to the demo (libtest's own lines are skipped).
        let program = |args: &[&str]| {
            let mut c = Command::new(&exe);
            c.args([
                "--exact",
                "child_request_response",
                "--include-ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(ARGS_ENV, args.join("\n"));
            c
        };
        request_response::demo(&name, &program).unwrap();
    });
}
