//! A request/response service over a named [`Pipe`], as separately started
//! programs that survive each other's restarts:
//!
//! ```text
//! cargo run --example request_response -- server NAME      # serves until killed
//! cargo run --example request_response -- client NAME N   # N requests, then exits
//! cargo run --example request_response                     # the self-checking demo
//! ```
//!
//! Start them in any order: both call [`PipeBuilder::open_or_create`](shmring::PipeBuilder::open_or_create), and
//! each waits for its peer with [`Connection::wait_connected`]. The server
//! answers each request with `"<its generation> <the request>"`. Kill the
//! server (`kill -9`) while a client runs and start another: the client's
//! pending `recv` returns `Disconnected` (the end of that server session),
//! it waits for the new server and re-sends; the new server drops the
//! requests still addressed to the dead one. Kill a client and start
//! another: the new client never receives a reply addressed to the dead one
//! (a pipe end's messages go to one generation of the other end: see
//! [`Connection`]'s "Sessions").
//!
//! With no arguments, the demo re-executes this program to start, as
//! separate processes: a first client (before any server is there), the
//! server, then, after killing the first client with SIGKILL, a second
//! client (the server is there already); it kills the server with SIGKILL
//! while the second client runs and starts a new one. The second client
//! checks every reply (its own request, and the generation of the server
//! session that answered, which must only grow) and runs until it has
//! been answered by both servers. The demo then stops the server and
//! removes the pipe's names; it exits 0 only if every check held.

use shmring::{ByteSendError, Connection, Pipe, RecvError};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Serves the pipe `name` (the left end) until killed.
pub fn server(name: &str) -> Result<(), String> {
    let pipe = Pipe::builder()
        .open_or_create(name)
        .map_err(|e| format!("server: opening {name}: {e}"))?;
    let conn = pipe.left().map_err(|e| format!("server: attaching: {e}"))?;
    let me = conn.generation();
    println!("server session {me} serving {name}");
    let mut request = Vec::new();
    loop {
        match conn.recv_into(&mut request) {
            Ok(_) => {
                let mut reply = format!("{me} ").into_bytes();
                reply.extend_from_slice(&request);
                match conn.send(&reply) {
                    // The client that asked is gone: nobody will read it.
                    Ok(()) | Err(ByteSendError::Disconnected) => {}
                    Err(e) => return Err(format!("server: sending: {e}")),
                }
            }
            // The client session ended (it exited or died, or a new client
            // replaced it): wait for one, asleep.
            Err(RecvError::Disconnected) => {
                conn.wait_connected(None);
            }
            Err(e) => return Err(format!("server: receiving: {e}")),
        }
    }
}

/// What a client saw.
#[derive(Debug)]
pub struct ClientReport {
    /// Requests answered.
    pub replies: u64,
    /// The generations of the server sessions that answered, in order.
    pub sessions: Vec<u64>,
    /// Replies addressed to an earlier client, dropped.
    pub stale: u64,
}

/// Sends `n` requests through pipe `name` (the right end), and goes on
/// until at least `min_sessions` server sessions have answered, checking
/// every reply; prints one line per reply.
pub fn client(name: &str, n: u64, min_sessions: usize) -> Result<ClientReport, String> {
    let pipe = Pipe::builder()
        .open_or_create(name)
        .map_err(|e| format!("client: opening {name}: {e}"))?;
    let conn = pipe
        .right()
        .map_err(|e| format!("client: attaching: {e}"))?;
    println!("client session {} on {name}", conn.generation());
    conn.wait_connected(None);
    let mut sessions: Vec<u64> = Vec::new();
    let mut i = 0;
    while i < n || sessions.len() < min_sessions {
        let request = format!("request {i} from client {}", std::process::id());
        let reply = ask(&conn, request.as_bytes())?;
        let reply = String::from_utf8(reply).map_err(|_| "client: a reply is not UTF-8")?;
        let (session, body) = reply
            .split_once(' ')
            .and_then(|(g, b)| Some((g.parse::<u64>().ok()?, b)))
            .ok_or_else(|| format!("client: malformed reply {reply:?}"))?;
        if body != request {
            return Err(format!(
                "client: asked {request:?}, got a reply to {body:?} (cross-talk)"
            ));
        }
        if session != conn.peer_generation() {
            return Err(format!(
                "client: the reply names server session {session}, peer_generation() says {}",
                conn.peer_generation()
            ));
        }
        match sessions.last() {
            Some(&last) if last == session => {}
            Some(&last) if session < last => {
                return Err(format!(
                    "client: server session {session} answered after session {last}"
                ))
            }
            _ => sessions.push(session),
        }
        println!("reply {i} from server session {session}");
        i += 1;
        // A pace a person can follow; nothing depends on it.
        std::thread::sleep(Duration::from_millis(1));
    }
    let report = ClientReport {
        replies: i,
        sessions,
        stale: conn.stale(),
    };
    println!(
        "done: {} replies, server sessions {:?}, stale replies dropped {}",
        report.replies, report.sessions, report.stale
    );
    Ok(report)
}

/// Sends `request` and returns its reply, sending it again to the next
/// server session whenever the one it was sent to ends first.
fn ask(conn: &Connection, request: &[u8]) -> Result<Vec<u8>, String> {
    loop {
        match conn.send(request) {
            Ok(()) => {}
            // No server attached now: wait for one (asleep), then re-send.
            Err(ByteSendError::Disconnected) => {
                conn.wait_connected(None);
                continue;
            }
            Err(e) => return Err(format!("client: sending: {e}")),
        }
        match conn.recv() {
            Ok(reply) => return Ok(reply),
            // The server session we asked ended without answering (killed,
            // or replaced by a restart): ask the next one.
            Err(RecvError::Disconnected) => {
                conn.wait_connected(None);
            }
            Err(e) => return Err(format!("client: receiving: {e}")),
        }
    }
}

/// Children the demo started; killed and reaped if it stops early.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Reads a child's output until a line contains `what` (a test harness
/// running the program may print before it on the same line); returns the
/// line from there.
fn read_until(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    what: &str,
) -> Result<String, String> {
    for line in lines {
        let line = line.map_err(|e| e.to_string())?;
        if let Some(at) = line.find(what) {
            return Ok(line[at..].to_string());
        }
    }
    Err(format!("the child ended before printing {what:?}"))
}

/// Kills `child` with SIGKILL and reaps it.
fn kill(child: &mut Child) -> Result<(), String> {
    child.kill().map_err(|e| format!("kill: {e}"))?;
    child.wait().map_err(|e| format!("wait: {e}"))?;
    Ok(())
}

/// The demo, on pipe `name`, starting each program with `program(args)`
/// (this executable, or a test's child entry point) with its stdout piped.
pub fn demo(name: &str, program: &dyn Fn(&[&str]) -> Command) -> Result<(), String> {
    let start = |args: &[&str]| -> Result<Child, String> {
        program(args)
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {args:?}: {e}"))
    };
    let mut kids = Children(Vec::new());

    // A client started before any server: it waits for one.
    kids.0.push(start(&["client", name, "1000000000", "1"])?);
    let mut lines1 = BufReader::new(kids.0[0].stdout.take().ok_or("no stdout")?).lines();
    read_until(&mut lines1, "client session")?;
    // The server, started second.
    kids.0.push(start(&["server", name])?);
    read_until(&mut lines1, "reply 10 ")?;
    // Kill the first client, with or without a request in flight: a
    // server's answer to it is addressed to that client only.
    kill(&mut kids.0[0])?;
    println!("demo: killed the first client after 10 replies");

    // A second client, started while the server runs. It goes on until it
    // has been answered by two server sessions.
    kids.0.push(start(&["client", name, "100", "2"])?);
    let mut lines2 = BufReader::new(kids.0[2].stdout.take().ok_or("no stdout")?).lines();
    read_until(&mut lines2, "reply 20 ")?;
    // Kill the server mid-run and start another.
    kill(&mut kids.0[1])?;
    println!("demo: killed the server after the second client's 20th reply");
    kids.0.push(start(&["server", name])?);
    let done = read_until(&mut lines2, "done:")?;
    println!("demo: second client {done}");
    let status = kids.0[2].wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("the second client failed: {status}"));
    }
    // Stop the server; the pipe's names stay until removed.
    kill(&mut kids.0[3])?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args[..] {
        ["server", name] => server(name),
        ["client", name, n] => n
            .parse()
            .map_err(|_| format!("not a count: {n:?}"))
            .and_then(|n| client(name, n, 1).map(drop)),
        ["client", name, n, sessions] => match (n.parse(), sessions.parse()) {
            (Ok(n), Ok(s)) => client(name, n, s).map(drop),
            _ => Err(format!("not counts: {n:?} {sessions:?}")),
        },
        [] => {
            let name = format!("shmring-request-response-{}", std::process::id());
            let r = std::env::current_exe()
                .map_err(|e| e.to_string())
                .and_then(|exe| {
                    demo(&name, &|args| {
                        let mut c = Command::new(&exe);
                        c.args(args);
                        c
                    })
                });
            // Leave nothing behind in /dev/shm, whatever happened.
            let removed = Pipe::unlink(&name);
            r.and(removed.map_err(|e| format!("removing {name}: {e}")))
                .map(|()| println!("demo: ok, {name} removed"))
        }
        _ => Err("usage: request_response [server NAME | client NAME N [SESSIONS]]".into()),
    };
    if let Err(e) = result {
        eprintln!("request_response: {e}");
        std::process::exit(1);
    }
}
