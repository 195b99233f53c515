//! Conformance suite for the [`Transport`] interface, written once and run
//! for every [`TransportKind`].
//!
//! This binary has its own `main` (`harness = false` in `Cargo.toml`): it
//! stays single-threaded, so it may `fork` without `exec`. Each case makes a
//! [`Link`], forks, gives one end to the child and the other to the parent,
//! and reaps the child, checking how it ended. A child never returns into
//! the parent's code: it ends with `_exit`. Both processes arm `alarm` as a
//! watchdog, so a hang kills the process (and fails the run) instead of
//! holding CI. No case asserts an upper bound on time.
//!
//! Cases, for every kind:
//! - `order`: 10,000 sequence-numbered messages arrive in order; duplex
//!   ping-pong echoes in order (one in flight, then 16 in flight).
//! - `sizes`: 0, 1, boundary and random sizes up to exactly the maximum,
//!   content checked, both directions; `max + 1` is `TooLarge` and the link
//!   still works.
//! - `eof-drop` / `eof-exit`: the child sends K messages and drops its end
//!   (or exits without dropping it); the parent gets all K, then
//!   `Disconnected` from `recv`, `try_recv` and `recv_timeout`, and its
//!   sends fail with `Disconnected`.
//! - `killed` / `killed-recv-blocked` / `killed-send-blocked`: the child is
//!   SIGKILLed (by the parent, or by itself while the parent is blocked in
//!   `recv` or in `send`); the parent's calls return `Disconnected`.
//! - `timeouts`: `recv_timeout` with nothing sent is `Timeout` (never
//!   early), `try_recv` is `WouldBlock`; `try_send` on a full transport is
//!   `WouldBlock`, and works again once the peer has drained it.
//! - `pair`: both ends in one process.
//! - `unused-link`: a link dropped without taking an end leaves nothing.
//!
//! After all cases, no FIFO directory of this process may be left in the
//! temporary directory, and no new `/dev/shm` entry of this process.

#[path = "common/harness.rs"]
mod harness;

use shmring::transport::{Link, LinkOptions, Transport, TransportError, TransportKind};
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

type End = Box<dyn Transport>;
type Res = Result<(), String>;

/// Largest message of every link in this suite.
const MAX: usize = 256 * 1024;
/// Messages buffered per direction by the shared-memory links.
const CAPACITY: u64 = 64;
/// Seconds before SIGALRM kills a process of a case (parent or child).
const WATCHDOG_S: u32 = 60;
/// Messages of the ordering case.
const ORDER_N: u64 = 10_000;
/// Size of the messages sent until the peer is found gone.
const FLOOD_MSG: usize = 16 * 1024;
/// Bound on those messages: far more than any queue or kernel buffer
/// (160 MiB), so reaching it means the peer's death was never noticed.
const FLOOD_BOUND: u64 = 10_000;

fn opts() -> LinkOptions {
    LinkOptions {
        max_message_size: MAX,
        capacity: CAPACITY,
        fifo_dir: None,
        ..LinkOptions::default()
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!("{}:{}: {}", file!(), line!(), format!($($fmt)+)));
        }
    };
}

/// Wraps an unexpected error with the call that produced it.
fn ctx<T>(what: &str, r: Result<T, TransportError>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: unexpected {e:?}"))
}

fn is_disconnected<T>(r: &Result<T, TransportError>) -> bool {
    matches!(r, Err(TransportError::Disconnected))
}

// ---------------------------------------------------------------------------
// Deterministic content
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The content of message `index` of stream `seed`, `len` bytes long.
fn content(seed: u64, index: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0xD6E8_FEB8_6659_FD93));
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Sizes for the `sizes` case: 0, 1, boundaries, random, exactly `MAX`.
fn sizes(seed: u64) -> Vec<usize> {
    let mut s = vec![
        0,
        1,
        2,
        3,
        4,
        5,
        63,
        64,
        65,
        4095,
        4096,
        4097,
        65535,
        65536,
        65537,
        MAX - 1,
        MAX,
        0,
        MAX,
        1,
    ];
    let mut rng = Rng::new(seed);
    for _ in 0..24 {
        s.push(rng.below(MAX as u64 + 1) as usize);
    }
    for _ in 0..24 {
        s.push(rng.below(300) as usize);
    }
    s
}

fn seq_msg(seq: u64, pad: usize) -> Vec<u8> {
    let mut m = seq.to_le_bytes().to_vec();
    m.extend(std::iter::repeat_n((seq as u8).wrapping_mul(31), pad));
    m
}

fn check_seq(buf: &[u8], want: u64) -> Res {
    ensure!(
        buf.len() >= 8,
        "message of {} bytes, want a sequence number",
        buf.len()
    );
    let got = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
    ensure!(got == want, "sequence {got}, want {want}");
    let fill = (want as u8).wrapping_mul(31);
    ensure!(
        buf[8..].iter().all(|&b| b == fill),
        "message {want}: padding damaged"
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Processes: control pipes, fork, reap
// ---------------------------------------------------------------------------

/// A side channel between parent and child, outside the transport under
/// test (to say "go" while the transport is full, for instance).
struct Ctl {
    rx: std::io::PipeReader,
    tx: std::io::PipeWriter,
}

impl Ctl {
    fn put(&mut self, v: u64) -> Res {
        self.tx
            .write_all(&v.to_le_bytes())
            .map_err(|e| format!("control pipe write: {e}"))
    }

    fn get(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        self.rx
            .read_exact(&mut b)
            .map_err(|e| format!("control pipe read (peer gone?): {e}"))?;
        Ok(u64::from_le_bytes(b))
    }
}

/// How the child must end.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    /// `_exit(0)`.
    Exit0,
    /// Killed by SIGKILL.
    Killed,
}

/// The forked child, as the parent sees it.
struct Child {
    pid: libc::pid_t,
    status: Option<libc::c_int>,
}

impl Child {
    fn kill(&mut self) {
        if self.status.is_none() {
            // SAFETY: plain system call on our own child's pid (not yet
            // reaped, so the pid cannot have been reused).
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
    }

    /// Reaps the child (once), returning its wait status.
    fn wait(&mut self) -> Result<libc::c_int, String> {
        if let Some(s) = self.status {
            return Ok(s);
        }
        let mut status = 0;
        loop {
            // SAFETY: plain system call with a valid out-pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                self.status = Some(status);
                return Ok(status);
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(format!("waitpid: {e}"));
            }
        }
    }
}

fn describe_status(s: libc::c_int) -> String {
    if libc::WIFEXITED(s) {
        format!("exit status {}", libc::WEXITSTATUS(s))
    } else if libc::WIFSIGNALED(s) {
        let sig = libc::WTERMSIG(s);
        let name = match sig {
            libc::SIGKILL => "SIGKILL",
            libc::SIGALRM => "SIGALRM (watchdog)",
            libc::SIGABRT => "SIGABRT",
            libc::SIGSEGV => "SIGSEGV",
            libc::SIGPIPE => "SIGPIPE",
            _ => "",
        };
        format!("killed by signal {sig} {name}")
    } else {
        format!("wait status {s:#x}")
    }
}

fn alarm(seconds: u32) {
    // SAFETY: plain system call; SIGALRM's default action ends the process.
    unsafe { libc::alarm(seconds) };
}

/// Ends the child process without running any of the parent's code.
fn child_exit(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` ends the process at once; nothing runs after it.
    unsafe { libc::_exit(code) }
}

fn take(link: Link, left: bool) -> Result<End, String> {
    let r = if left { link.left() } else { link.right() };
    r.map_err(|e| {
        format!(
            "taking the {} end: {e:?}",
            if left { "left" } else { "right" }
        )
    })
}

/// Runs one forked case: a link of `kind`, the child running `child` on one
/// end and this process running `parent` on the other (the left end if
/// `parent_left`). The child's `Err` or panic ends it with a non-zero
/// status, which fails the case.
fn forked<C, P>(
    kind: TransportKind,
    label: &str,
    parent_left: bool,
    expect: Expect,
    child: C,
    parent: P,
) -> Res
where
    C: FnOnce(End, &mut Ctl) -> Res,
    P: FnOnce(End, &mut Ctl, &mut Child) -> Res,
{
    let link = Link::new(kind, &opts()).map_err(|e| format!("Link::new: {e:?}"))?;
    let (p2c_rx, p2c_tx) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (c2p_rx, c2p_tx) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: this process is single-threaded (harness = false, and no case
    // leaves a thread running), so the child may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        alarm(WATCHDOG_S);
        drop((p2c_tx, c2p_rx));
        let mut ctl = Ctl {
            rx: p2c_rx,
            tx: c2p_tx,
        };
        let r = panic::catch_unwind(AssertUnwindSafe(|| {
            let end = take(link, !parent_left)?;
            child(end, &mut ctl)
        }));
        let code = match r {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                // One write, so that it is not interleaved with the parent's.
                let line = format!("\n    [child {kind} {label}] {e}\n");
                let _ = std::io::stderr().write_all(line.as_bytes());
                1
            }
            Err(_) => {
                let line = format!("\n    [child {kind} {label}] panicked\n");
                let _ = std::io::stderr().write_all(line.as_bytes());
                2
            }
        };
        child_exit(code);
    }
    drop((p2c_rx, c2p_tx));
    let mut ctl = Ctl {
        rx: c2p_rx,
        tx: p2c_tx,
    };
    let mut ch = Child { pid, status: None };
    let r = panic::catch_unwind(AssertUnwindSafe(|| {
        let end = take(link, parent_left)?;
        parent(end, &mut ctl, &mut ch)
    }));
    let r = match r {
        Ok(r) => r,
        Err(_) => Err("parent panicked".to_string()),
    };
    drop(ctl);
    if r.is_err() {
        ch.kill();
    }
    let status = ch.wait()?;
    let ended_ok = match expect {
        Expect::Exit0 => libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        Expect::Killed => libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL,
    };
    match (r, ended_ok) {
        (Ok(()), true) => Ok(()),
        (Ok(()), false) => Err(format!(
            "child ended with {}, want {expect:?}",
            describe_status(status)
        )),
        (Err(e), _) => Err(format!("{e} (child: {})", describe_status(status))),
    }
}

fn pause_forever() -> ! {
    loop {
        // SAFETY: plain system call; the watchdog's SIGALRM or the parent's
        // SIGKILL ends the wait (and the process).
        unsafe { libc::pause() };
    }
}

fn kill_self() -> ! {
    let _ = std::io::stderr().flush();
    // SAFETY: plain system call on our own pid.
    unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    pause_forever()
}

// ---------------------------------------------------------------------------
// Shared checks
// ---------------------------------------------------------------------------

/// Receives `n` messages and checks that they carry sequence numbers
/// `0..n`, in order.
fn recv_seq(end: &mut End, n: u64) -> Res {
    let mut buf = Vec::new();
    for i in 0..n {
        let len = ctx(&format!("recv #{i}"), end.recv(&mut buf))?;
        ensure!(
            len == buf.len(),
            "recv returned {len}, buffer holds {}",
            buf.len()
        );
        check_seq(&buf, i)?;
    }
    Ok(())
}

/// After the peer is gone: every receive says `Disconnected`.
fn expect_recv_disconnected(end: &mut End) -> Res {
    let mut buf = vec![7u8; 3];
    // A generous deadline: the shared-memory transports notice a dead peer
    // by a liveness check every 20 ms; this must not time out.
    let r = end.recv_timeout(&mut buf, Duration::from_secs(20));
    ensure!(
        is_disconnected(&r),
        "recv_timeout after the peer went: {r:?}"
    );
    let r = end.recv(&mut buf);
    ensure!(is_disconnected(&r), "recv after the peer went: {r:?}");
    let r = end.try_recv(&mut buf);
    ensure!(is_disconnected(&r), "try_recv after the peer went: {r:?}");
    let r = end.recv(&mut buf);
    ensure!(
        is_disconnected(&r),
        "second recv after the peer went: {r:?}"
    );
    Ok(())
}

/// After the peer is gone: sending (blocking `send`, or `try_send` if
/// `nonblocking`) returns `Disconnected` within a bounded number of
/// messages (the shared-memory transports accept messages for a dead
/// receiver until the queue is full; TCP accepts one write before the
/// peer's reset comes back). Returns how many were accepted first.
fn flood_until_disconnected(end: &mut End, nonblocking: bool) -> Result<u64, String> {
    let msg = vec![0x5Au8; FLOOD_MSG];
    for i in 0..FLOOD_BOUND {
        let r = if nonblocking {
            end.try_send(&msg)
        } else {
            end.send(&msg)
        };
        match r {
            Ok(()) => {}
            Err(TransportError::Disconnected) => return Ok(i),
            Err(TransportError::WouldBlock) if nonblocking => {
                // Full: the blocking send must then find the peer gone.
                let r = end.send(&msg);
                ensure!(
                    is_disconnected(&r),
                    "send on a full link to a dead peer: {r:?}"
                );
                return Ok(i);
            }
            Err(e) => return Err(format!("send #{i} to a gone peer: unexpected {e:?}")),
        }
    }
    Err(format!(
        "{FLOOD_BOUND} messages of {FLOOD_MSG} bytes accepted for a gone peer"
    ))
}

// ---------------------------------------------------------------------------
// Cases
// ---------------------------------------------------------------------------

fn case_order(kind: TransportKind, label: &str, parent_left: bool) -> Res {
    const ROUNDS_SINGLE: u64 = 500;
    const ROUNDS_WINDOW: u64 = 60;
    const WINDOW: u64 = 16;
    forked(
        kind,
        label,
        parent_left,
        Expect::Exit0,
        |mut end, _ctl| {
            for i in 0..ORDER_N {
                ctx("send", end.send(&seq_msg(i, (i % 97) as usize)))?;
            }
            // Echo everything until the end marker (an empty message).
            let mut buf = Vec::new();
            loop {
                ctx("echo recv", end.recv(&mut buf))?;
                if buf.is_empty() {
                    return Ok(());
                }
                ctx("echo send", end.send(&buf))?;
            }
        },
        |mut end, _ctl, _child| {
            ensure!(end.kind() == kind, "kind() is {}, want {kind}", end.kind());
            recv_seq(&mut end, ORDER_N)?;
            // Ping-pong: sleep at once when blocked (no spinning).
            end.set_spin(Duration::ZERO);
            let mut buf = Vec::new();
            let mut seq = 0u64;
            for _ in 0..ROUNDS_SINGLE {
                ctx("ping send", end.send(&seq_msg(seq, 3)))?;
                ctx("pong recv", end.recv(&mut buf))?;
                check_seq(&buf, seq)?;
                seq += 1;
            }
            end.set_spin(Duration::from_micros(20));
            for _ in 0..ROUNDS_WINDOW {
                for k in 0..WINDOW {
                    ctx("ping send", end.send(&seq_msg(seq + k, (k * 5) as usize)))?;
                }
                for k in 0..WINDOW {
                    ctx("pong recv", end.recv(&mut buf))?;
                    check_seq(&buf, seq + k)?;
                }
                seq += WINDOW;
            }
            ctx("end marker", end.send(&[]))?;
            Ok(())
        },
    )
}

/// Sends every size of `sizes(seed)` with its content.
fn send_sizes(end: &mut End, seed: u64) -> Res {
    for (i, &len) in sizes(seed).iter().enumerate() {
        let msg = content(seed, i as u64, len);
        ctx(&format!("send of {len} bytes"), end.send(&msg))?;
    }
    Ok(())
}

/// Receives every size of `sizes(seed)`, checking length and content; the
/// buffer starts dirty, so `recv` must clear it.
fn recv_sizes(end: &mut End, seed: u64) -> Res {
    let mut buf = vec![0xEEu8; 17];
    for (i, &len) in sizes(seed).iter().enumerate() {
        let n = ctx(&format!("recv of {len} bytes"), end.recv(&mut buf))?;
        ensure!(n == len, "message #{i}: recv returned {n}, want {len}");
        ensure!(
            buf.len() == len,
            "message #{i}: buffer holds {}, want {len}",
            buf.len()
        );
        ensure!(
            buf == content(seed, i as u64, len),
            "message #{i} of {len} bytes: content differs"
        );
    }
    Ok(())
}

/// `send` and `try_send` of `MAX + 1` bytes are `TooLarge` and send nothing.
fn check_too_large(end: &mut End) -> Res {
    ensure!(
        end.max_message_size() == MAX,
        "max_message_size() is {}, want {MAX}",
        end.max_message_size()
    );
    let big = vec![1u8; MAX + 1];
    for (what, r) in [("send", end.send(&big)), ("try_send", end.try_send(&big))] {
        match r {
            Err(TransportError::TooLarge { len, max }) if len == MAX + 1 && max == MAX => {}
            other => {
                return Err(format!(
                    "{what} of {} bytes: {other:?}, want TooLarge {{ len: {}, max: {MAX} }}",
                    MAX + 1,
                    MAX + 1
                ))
            }
        }
    }
    Ok(())
}

fn case_sizes(kind: TransportKind, label: &str, parent_left: bool) -> Res {
    const UP: u64 = 11;
    const DOWN: u64 = 22;
    forked(
        kind,
        label,
        parent_left,
        Expect::Exit0,
        |mut end, _ctl| {
            send_sizes(&mut end, UP)?;
            recv_sizes(&mut end, DOWN)?;
            check_too_large(&mut end)?;
            // Still works after the refused sends, both ways.
            ctx("send after TooLarge", end.send(b"child still here"))?;
            let mut buf = Vec::new();
            ctx("recv after TooLarge", end.recv(&mut buf))?;
            ensure!(buf == b"parent still here", "got {buf:?}");
            Ok(())
        },
        |mut end, _ctl, _child| {
            recv_sizes(&mut end, UP)?;
            send_sizes(&mut end, DOWN)?;
            check_too_large(&mut end)?;
            let mut buf = Vec::new();
            ctx("recv after TooLarge", end.recv(&mut buf))?;
            ensure!(buf == b"child still here", "got {buf:?}");
            ctx(
                "try_send after TooLarge",
                end.try_send(b"parent still here"),
            )?;
            Ok(())
        },
    )
}

/// Kinds on which a peer that closed its end is refused at once (TCP may
/// accept one write before the peer's reset arrives).
fn closed_peer_refused_at_once(kind: TransportKind) -> bool {
    kind != TransportKind::Tcp
}

fn case_eof(kind: TransportKind, label: &str, parent_left: bool, drop_end: bool) -> Res {
    const K: u64 = 300;
    forked(
        kind,
        label,
        parent_left,
        Expect::Exit0,
        move |mut end, _ctl| {
            for i in 0..K {
                ctx("send", end.send(&seq_msg(i, (i * 13 % 2000) as usize)))?;
            }
            if drop_end {
                drop(end);
                Ok(())
            } else {
                // Exit without dropping: no orderly close of a
                // shared-memory endpoint, only the process's death.
                child_exit(0)
            }
        },
        move |mut end, _ctl, _child| {
            recv_seq(&mut end, K)?;
            expect_recv_disconnected(&mut end)?;
            if drop_end && closed_peer_refused_at_once(kind) {
                let r = end.try_send(b"anyone?");
                ensure!(is_disconnected(&r), "try_send to a closed peer: {r:?}");
                let r = end.send(b"anyone?");
                ensure!(is_disconnected(&r), "send to a closed peer: {r:?}");
            }
            flood_until_disconnected(&mut end, false)?;
            // And it stays so.
            let r = end.send(b"x");
            ensure!(is_disconnected(&r), "send after Disconnected: {r:?}");
            let r = end.try_send(b"x");
            ensure!(is_disconnected(&r), "try_send after Disconnected: {r:?}");
            Ok(())
        },
    )
}

fn case_killed(kind: TransportKind, label: &str, parent_left: bool) -> Res {
    const K: u64 = 50;
    forked(
        kind,
        label,
        parent_left,
        Expect::Killed,
        |mut end, ctl| {
            for i in 0..K {
                ctx("send", end.send(&seq_msg(i, 100)))?;
            }
            ctl.put(1)?;
            pause_forever()
        },
        |mut end, ctl, child| {
            recv_seq(&mut end, K)?;
            ensure!(ctl.get()? == 1, "bad control message");
            child.kill();
            child.wait()?;
            expect_recv_disconnected(&mut end)?;
            flood_until_disconnected(&mut end, true)?;
            let r = end.send(b"x");
            ensure!(is_disconnected(&r), "send after Disconnected: {r:?}");
            Ok(())
        },
    )
}

fn case_killed_recv_blocked(kind: TransportKind, label: &str, parent_left: bool) -> Res {
    const K: u64 = 20;
    forked(
        kind,
        label,
        parent_left,
        Expect::Killed,
        |mut end, _ctl| {
            for i in 0..K {
                ctx("send", end.send(&seq_msg(i, 10)))?;
            }
            // Give the parent time to block in recv (not relied upon: if it
            // is not blocked yet, the case tests a dead peer found later).
            std::thread::sleep(Duration::from_millis(100));
            kill_self()
        },
        |mut end, _ctl, child| {
            recv_seq(&mut end, K)?;
            let mut buf = Vec::new();
            let r = end.recv(&mut buf);
            ensure!(
                is_disconnected(&r),
                "blocked recv when the peer was killed: {r:?}"
            );
            child.wait()?;
            expect_recv_disconnected(&mut end)?;
            flood_until_disconnected(&mut end, false)?;
            Ok(())
        },
    )
}

fn case_killed_send_blocked(kind: TransportKind, label: &str, parent_left: bool) -> Res {
    forked(
        kind,
        label,
        parent_left,
        Expect::Killed,
        |_end, ctl| {
            // Never receive; die once the parent has (probably) filled the
            // link and blocked in send.
            ctl.get()?;
            std::thread::sleep(Duration::from_millis(100));
            kill_self()
        },
        |mut end, ctl, child| {
            ctl.put(1)?;
            // Blocking sends: they fill the link, then block until the peer
            // dies, then must fail.
            flood_until_disconnected(&mut end, false)?;
            child.wait()?;
            expect_recv_disconnected(&mut end)?;
            Ok(())
        },
    )
}

/// `recv_timeout` with nothing coming is `Timeout`, and never early;
/// `try_recv` is `WouldBlock`.
fn check_nothing_to_receive(end: &mut End) -> Res {
    let mut buf = vec![9u8; 5];
    for t in [
        Duration::from_millis(50),
        Duration::from_micros(1500),
        Duration::from_micros(300),
        Duration::ZERO,
    ] {
        let start = Instant::now();
        let r = end.recv_timeout(&mut buf, t);
        let took = start.elapsed();
        ensure!(
            matches!(r, Err(TransportError::Timeout)),
            "recv_timeout({t:?}) with nothing sent: {r:?}"
        );
        ensure!(
            took >= t,
            "recv_timeout({t:?}) returned Timeout after only {took:?}"
        );
    }
    for _ in 0..3 {
        let r = end.try_recv(&mut buf);
        ensure!(
            matches!(r, Err(TransportError::WouldBlock)),
            "try_recv with nothing sent: {r:?}"
        );
    }
    Ok(())
}

fn case_timeouts(kind: TransportKind, label: &str, parent_left: bool) -> Res {
    const FILL_MSG: usize = 1000;
    const FILL_BOUND: u64 = 200_000;
    forked(
        kind,
        label,
        parent_left,
        Expect::Exit0,
        |mut end, ctl| {
            check_nothing_to_receive(&mut end)?;
            ctl.put(0)?;
            // Drain only once the parent has filled the link.
            let n = ctl.get()?;
            recv_seq(&mut end, n)?;
            ctx("send", end.send(b"x"))?;
            ctx("send", end.send(b"drained"))?;
            let mut buf = Vec::new();
            ctx("recv", end.recv(&mut buf))?;
            ensure!(buf == b"after", "got {buf:?}");
            Ok(())
        },
        |mut end, ctl, _child| {
            check_nothing_to_receive(&mut end)?;
            ctl.get()?;
            let mut n = 0u64;
            loop {
                ensure!(
                    n < FILL_BOUND,
                    "try_send accepted {n} messages, never WouldBlock"
                );
                match end.try_send(&seq_msg(n, FILL_MSG - 8)) {
                    Ok(()) => n += 1,
                    Err(TransportError::WouldBlock) => break,
                    Err(e) => return Err(format!("try_send #{n} filling: unexpected {e:?}")),
                }
            }
            ensure!(n > 0, "try_send on an empty link: WouldBlock");
            if kind.is_shm() {
                ensure!(
                    n == CAPACITY,
                    "shared-memory link full after {n}, want {CAPACITY}"
                );
            }
            // Still full.
            let r = end.try_send(b"more");
            ensure!(
                matches!(r, Err(TransportError::WouldBlock)),
                "try_send on full: {r:?}"
            );
            ctl.put(n)?;
            // A message that arrives while waiting.
            let mut buf = Vec::new();
            ctx(
                "recv_timeout",
                end.recv_timeout(&mut buf, Duration::from_secs(30)),
            )?;
            ensure!(buf == b"x", "got {buf:?}");
            // try_recv finds the next one once it is there.
            loop {
                match end.try_recv(&mut buf) {
                    Ok(_) => break,
                    Err(TransportError::WouldBlock) => std::thread::sleep(Duration::from_millis(1)),
                    Err(e) => return Err(format!("try_recv: unexpected {e:?}")),
                }
            }
            ensure!(buf == b"drained", "got {buf:?}");
            // The peer drained everything: sending works again.
            ctx("try_send after the peer drained", end.try_send(b"after"))?;
            Ok(())
        },
    )
}

/// Both ends in one process.
fn case_pair(kind: TransportKind) -> Res {
    let link = Link::new(kind, &opts()).map_err(|e| format!("Link::new: {e:?}"))?;
    ensure!(link.kind() == kind, "Link::kind() is {}", link.kind());
    let (mut a, mut b) = link.pair().map_err(|e| format!("pair: {e:?}"))?;
    ensure!(a.kind() == kind && b.kind() == kind, "kind() of the ends");
    let mut buf = Vec::new();
    for end in [&mut a, &mut b] {
        let r = end.try_recv(&mut buf);
        ensure!(
            matches!(r, Err(TransportError::WouldBlock)),
            "try_recv: {r:?}"
        );
        let r = end.recv_timeout(&mut buf, Duration::from_millis(5));
        ensure!(
            matches!(r, Err(TransportError::Timeout)),
            "recv_timeout: {r:?}"
        );
        check_too_large(end)?;
    }
    for i in 0..20u64 {
        ctx("a send", a.send(&seq_msg(i, i as usize)))?;
        ctx("b try_send", b.try_send(&seq_msg(i + 100, 0)))?;
    }
    for i in 0..20u64 {
        ctx("b recv", b.recv(&mut buf))?;
        check_seq(&buf, i)?;
        ctx(
            "a recv_timeout",
            a.recv_timeout(&mut buf, Duration::from_secs(10)),
        )?;
        check_seq(&buf, i + 100)?;
    }
    drop(a);
    expect_recv_disconnected(&mut b)?;
    if closed_peer_refused_at_once(kind) {
        let r = b.send(b"x");
        ensure!(is_disconnected(&r), "send to a dropped peer: {r:?}");
    }
    flood_until_disconnected(&mut b, true)?;
    Ok(())
}

/// A link dropped without taking an end leaves nothing behind.
fn case_unused_link(kind: TransportKind) -> Res {
    let before = fifo_dirs_of_this_process();
    let link = Link::new(kind, &opts()).map_err(|e| format!("Link::new: {e:?}"))?;
    drop(link);
    let after = fifo_dirs_of_this_process();
    let left: Vec<_> = after.difference(&before).collect();
    ensure!(left.is_empty(), "left behind: {left:?}");
    Ok(())
}

// ---------------------------------------------------------------------------
// Leftovers
// ---------------------------------------------------------------------------

fn list(dir: &std::path::Path, prefix: &str) -> BTreeSet<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

fn fifo_dirs_of_this_process() -> BTreeSet<PathBuf> {
    let prefix = format!("shmring-fifo-{}-", std::process::id());
    list(&std::env::temp_dir(), &prefix)
}

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

type ForkedCase = fn(TransportKind, &str, bool) -> Res;
type LocalCase = fn(TransportKind) -> Res;

/// Runs `f` in a forked runner process of its own process group (so that a
/// hang, caught by the runner's watchdog, fails this case only and its
/// child can be cleaned up). The runner prints the rest of the case's line.
/// Returns the runner's pid and whether the case passed.
fn run_in_runner(f: &dyn Fn() -> Res) -> (libc::pid_t, Result<(), String>) {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: main is single-threaded (harness = false; runners, not main,
    // start any threads), so the runner may run arbitrary code.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return (0, Err(format!("fork: {}", std::io::Error::last_os_error())));
    }
    if pid == 0 {
        // SAFETY: plain system call: a new process group led by the runner.
        unsafe { libc::setpgid(0, 0) };
        alarm(WATCHDOG_S);
        let t = Instant::now();
        let r = panic::catch_unwind(AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err("panicked".to_string()));
        let secs = t.elapsed().as_secs_f64();
        match r {
            Ok(()) => {
                println!("ok ({secs:.2} s)");
                child_exit(0)
            }
            Err(e) => {
                println!("FAILED ({secs:.2} s)\n    {e}");
                child_exit(1)
            }
        }
    }
    let mut runner = Child { pid, status: None };
    let status = match runner.wait() {
        Ok(s) => s,
        Err(e) => return (pid, Err(e)),
    };
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0 {
        return (pid, Ok(()));
    }
    // Whatever the runner left running (a child waiting for it) goes.
    // SAFETY: plain system call on the runner's process group.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    if libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 1 {
        // The runner printed why.
        return (pid, Err(String::new()));
    }
    let why = describe_status(status);
    println!("FAILED\n    runner {why}");
    (pid, Err(why))
}

fn main() {
    // Cases are named "kind/case" for the filter (see `harness`).
    let args = harness::HarnessArgs::from_env();
    let shm_before = list(std::path::Path::new("/dev/shm"), "");
    let fifo_before = list(&std::env::temp_dir(), "shmring-fifo-");

    let forked_cases: [(&str, ForkedCase); 8] = [
        ("order", case_order),
        ("sizes", case_sizes),
        ("eof-drop", |k, l, p| case_eof(k, l, p, true)),
        ("eof-exit", |k, l, p| case_eof(k, l, p, false)),
        ("killed", case_killed),
        ("killed-recv-blocked", case_killed_recv_blocked),
        ("killed-send-blocked", case_killed_send_blocked),
        ("timeouts", case_timeouts),
    ];
    let local_cases: [(&str, LocalCase); 2] =
        [("pair", case_pair), ("unused-link", case_unused_link)];

    let start = Instant::now();
    let mut passed = 0u32;
    let mut failed = Vec::new();
    let mut pids = vec![std::process::id().to_string()];
    let mut run = |kind: TransportKind, name: &str, f: &dyn Fn() -> Res| {
        let id = format!("{kind}/{name}");
        if !args.selected(&id) || args.listed(&id) {
            return;
        }
        print!("transport {id:<32} ... ");
        let (pid, r) = run_in_runner(f);
        pids.push(pid.to_string());
        match r {
            Ok(()) => passed += 1,
            Err(_) => failed.push(id),
        }
    };
    for kind in TransportKind::ALL {
        for (i, (name, case)) in forked_cases.iter().enumerate() {
            // Alternate which end the parent takes.
            let parent_left = (i + kind as usize).is_multiple_of(2);
            let side = if parent_left {
                "parent left"
            } else {
                "parent right"
            };
            let label = format!("{name} ({side})");
            run(kind, name, &|| case(kind, &label, parent_left));
        }
        for (name, case) in local_cases {
            run(kind, name, &|| case(kind));
        }
    }

    if args.flag("--list") {
        return;
    }

    // Nothing left behind by this process or its runners: FIFO directories
    // (named after the process that made the link), and /dev/shm entries
    // (the shared-memory transports use memfds, so there should be none at
    // all; new entries of other processes running concurrently are only
    // reported).
    let ours = |p: &PathBuf| {
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        pids.iter().any(|pid| {
            name.starts_with(&format!("shmring-fifo-{pid}-"))
                || name.split(|c: char| !c.is_ascii_digit()).any(|w| w == pid)
        })
    };
    let mut leaks = Vec::new();
    let fifo_after = list(&std::env::temp_dir(), "shmring-fifo-");
    let shm_after = list(std::path::Path::new("/dev/shm"), "");
    let new: Vec<&PathBuf> = fifo_after
        .difference(&fifo_before)
        .chain(shm_after.difference(&shm_before))
        .collect();
    let (mine, theirs): (Vec<&PathBuf>, Vec<&PathBuf>) = new.into_iter().partition(|p| ours(p));
    leaks.extend(mine);
    if !theirs.is_empty() {
        println!("note: new entries of other processes (not checked): {theirs:?}");
    }
    let leftovers = if !args.filtered() {
        "leftovers"
    } else {
        "leftovers (of the cases run)"
    };
    if leaks.is_empty() {
        println!("transport {leftovers:<32} ... ok");
    } else {
        println!("transport {leftovers:<32} ... FAILED\n    left behind: {leaks:?}");
        failed.push("leftovers".to_string());
    }

    println!(
        "\ntransport conformance: {passed} passed, {} failed ({:.2} s)",
        failed.len(),
        start.elapsed().as_secs_f64()
    );
    if !failed.is_empty() {
        for f in &failed {
            println!("    failed: {f}");
        }
        std::process::exit(1);
    }
}
