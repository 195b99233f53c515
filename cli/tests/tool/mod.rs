//! Helpers of the tool's tests (`cli/tests/*.rs` include this file by
//! path): the `shmring` binary, and for the bridge's tests the RabbitMQ
//! broker (found, or the test skips — in CI it fails), bridge processes,
//! and cleanup of what they declared.

#![allow(dead_code)]

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// `SHMRING_AMQP_URL`, or the local broker's default account.
pub fn url() -> String {
    std::env::var("SHMRING_AMQP_URL").unwrap_or_else(|_| shmring_bridge::DEFAULT_URL.to_string())
}

/// Whether the broker of [`url`] accepts connections (and, with `ctl`,
/// whether `rabbitmqctl` drives it: for tests that restart or inspect it).
/// Without one: in CI (`CI` or `SHMRING_REQUIRE_BROKER` set) the test
/// fails; elsewhere it is skipped with a message saying how to start one.
pub fn broker_up(test: &str, ctl: bool) -> bool {
    let url = url();
    let host_port = url
        .split_once("://")
        .map_or(&url[..], |(_, rest)| rest)
        .rsplit('@')
        .next()
        .unwrap_or("")
        .split('/')
        .next()
        .unwrap_or("")
        .to_string();
    let host_port = if host_port.contains(':') {
        host_port
    } else {
        format!("{host_port}:5672")
    };
    let up = host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
        && (!ctl || rabbitmqctl(&["-q", "status"]));
    if !up {
        let msg = format!(
            "no AMQP broker at {host_port}{}; start one with `scripts/rabbitmq start` \
             (apt-get install rabbitmq-server), or set SHMRING_AMQP_URL",
            if ctl { " driven by rabbitmqctl" } else { "" }
        );
        if std::env::var_os("CI").is_some() || std::env::var_os("SHMRING_REQUIRE_BROKER").is_some()
        {
            panic!("{test}: {msg}");
        }
        eprintln!("{test}: SKIPPED: {msg}");
    }
    up
}

/// Creates the local MPMC byte queue `name` of a bridge test (host A's or
/// host B's).
pub fn local_queue(name: &str, capacity: u64, max_message_size: u64) -> shmring::ByteQueue {
    shmring::ByteQueue::builder()
        .flavor(shmring::Flavor::Mpmc)
        .capacity(capacity)
        .max_message_size(max_message_size)
        .create(name)
        .unwrap()
}

/// Runs `rabbitmqctl ARGS` quietly; whether it succeeded.
pub fn rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs the `shmring` binary to its end.
pub fn shmring(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shmring"))
        .args(args)
        .output()
        .expect("run the shmring binary")
}

/// A finished process's stdout and stderr, together.
pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Starts `shmring bridge out --url URL --local LOCAL --queue QUEUE EXTRA...`.
pub fn bridge_out(url: &str, local: &str, queue: &str, extra: &[&str]) -> Bridge {
    let mut args = vec!["out", "--url", url, "--local", local, "--queue", queue];
    args.extend_from_slice(extra);
    Bridge::start(&args)
}

/// Starts `shmring bridge in --url URL --queue QUEUE --local LOCAL EXTRA...`.
pub fn bridge_in(url: &str, queue: &str, local: &str, extra: &[&str]) -> Bridge {
    let mut args = vec!["in", "--url", url, "--queue", queue, "--local", local];
    args.extend_from_slice(extra);
    Bridge::start(&args)
}

/// Deletes an AMQP queue a bridge declared, when dropped (rabbitmqctl).
pub struct AmqpQueue(pub String);

impl Drop for AmqpQueue {
    fn drop(&mut self) {
        rabbitmqctl(&["-q", "delete_queue", &self.0]);
    }
}

/// A `shmring bridge ...` process, its stderr (the log lines) in a file;
/// killed when dropped.
pub struct Bridge {
    child: Child,
    log: PathBuf,
}

impl Bridge {
    /// Starts `shmring bridge ARGS`.
    pub fn start(args: &[&str]) -> Bridge {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let log = std::env::temp_dir().join(format!(
            "shmring-bridge-test-{}-{}.log",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let err = std::fs::File::create(&log).expect("create the bridge's log");
        let child = Command::new(env!("CARGO_BIN_EXE_shmring"))
            .arg("bridge")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .expect("start shmring bridge");
        Bridge { child, log }
    }

    /// Its log lines so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, and reaped.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `signal`, then its exit status within `limit` (`None`: still
    /// running) and its log.
    pub fn stop(
        mut self,
        signal: Signal,
        limit: Duration,
    ) -> (Option<std::process::ExitStatus>, String) {
        kill(Pid::from_raw(self.child.id() as i32), signal).unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return (Some(s), self.log());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        (None, self.log())
    }

    /// SIGINT (a clean stop), then its exit code and log.
    pub fn interrupt(self) -> (Option<i32>, String) {
        let (status, log) = self.stop(Signal::SIGINT, Duration::from_secs(60));
        (status.and_then(|s| s.code()), log)
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
