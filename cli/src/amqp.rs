//! The `rabbitmq` row: the same round trips and one-way throughput as the
//! other rows, through a RabbitMQ broker (AMQP 0-9-1, given by `--amqp`)
//! instead of a local transport, so the broker is a baseline measured in
//! the same run as everything else.
//!
//! The child (forked before any runtime exists, pinned to the second CPU)
//! consumes queue `shmring-bench-<pid>-c` and publishes to
//! `shmring-bench-<pid>-p`, which the parent consumes: a round trip is two
//! broker transits, as a round trip through a pipe is two kernel copies.
//! Messages are transient (not persisted), published without confirms and
//! consumed without acks (`no_ack`): the broker's fastest path, the one a
//! latency-minded user would pick. Both queues are deleted at the end.
//!
//! Each process runs a current-thread tokio runtime only for the row's
//! duration: the bench forks its children from a single-threaded process,
//! so the parent checks it is single-threaded again afterwards.

use crate::link::{self, read_seq, stamp, stamped, CMD_LEN, OP_EXIT, OP_RTT, OP_STREAM};
use crate::report;
use crate::sys::{self, Forked, Peer};
use crate::types::{new_histogram, Config, Failure, Latency, Mode, Row};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer};
use shmring::transport::{ShmTransport, Transport};
use shmring::{ByteQueue, Flavor};
use std::time::{Duration, Instant};

/// The default broker: the local RabbitMQ of `scripts/rabbitmq`.
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a tokio runtime: {e}"))
}

async fn connect(url: &str) -> Result<Connection, String> {
    let props = ConnectionProperties::default()
        .with_connection_name("shmring bench".into())
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio::current());
    tokio::time::timeout(Duration::from_secs(10), Connection::connect(url, props))
        .await
        .map_err(|_| format!("connecting to {url}: no answer within 10 s"))?
        .map_err(|e| format!("connecting to {url}: {e}"))
}

/// Whether a broker answers at `url` (before the plan, from the
/// single-threaded parent: the runtime is gone when this returns).
pub fn probe(url: &str) -> Result<(), String> {
    let rt = runtime()?;
    let conn = rt.block_on(async {
        let c = connect(url).await?;
        let _ = c.close(200, "probe").await;
        Ok::<_, String>(c)
    });
    match conn {
        Ok(c) => {
            finish(rt, Some(c));
            Ok(())
        }
        Err(e) => {
            finish(rt, None);
            Err(e)
        }
    }
}

/// Joins the connection's I/O thread (lapin runs one per connection; it
/// ends once the connection is closed), then stops the runtime: the
/// process is single-threaded again, as `sys::fork` requires.
fn finish(rt: tokio::runtime::Runtime, conn: Option<Connection>) {
    if let Some(c) = conn {
        // The I/O thread's last steps run on the runtime's executor: keep
        // it driven while a blocking-pool thread joins the I/O thread
        // (bounded: a stuck join must not hang the bench).
        rt.block_on(async {
            let join = tokio::task::spawn_blocking(move || c.run());
            let _ = tokio::time::timeout(Duration::from_secs(5), join).await;
        });
    }
    rt.shutdown_timeout(Duration::from_secs(2));
}

/// One end: a channel publishing to `to`, a consumer of `from`.
struct End {
    conn: Connection,
    chan: Channel,
    consumer: Consumer,
    to: String,
}

impl End {
    async fn open(url: &str, from: &str, to: &str) -> Result<End, String> {
        let conn = connect(url).await?;
        let chan = conn
            .create_channel()
            .await
            .map_err(|e| format!("opening a channel: {e}"))?;
        for q in [from, to] {
            chan.queue_declare(q, QueueDeclareOptions::default(), FieldTable::default())
                .await
                .map_err(|e| format!("declaring queue {q}: {e}"))?;
        }
        let consumer = chan
            .basic_consume(
                from,
                "",
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("consuming {from}: {e}"))?;
        Ok(End {
            conn,
            chan,
            consumer,
            to: to.to_string(),
        })
    }

    async fn send(&self, msg: &[u8]) -> Result<(), String> {
        // Without confirms the returned future resolves at once: the
        // message is on its way, as a write(2) to a socket is.
        self.chan
            .basic_publish(
                "",
                &self.to,
                BasicPublishOptions::default(),
                msg,
                BasicProperties::default(),
            )
            .await
            .map_err(|e| format!("publishing: {e}"))?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Vec<u8>, String> {
        match self.consumer.next().await {
            Some(Ok(d)) => Ok(d.data),
            Some(Err(e)) => Err(format!("consuming: {e}")),
            None => Err("the broker cancelled the consumer".into()),
        }
    }
}

async fn serve(url: &str, from: &str, to: &str, size: usize) -> Result<(), String> {
    let mut end = End::open(url, from, to).await?;
    let mut out = vec![0x5au8; size];
    loop {
        let cmd = end.recv().await?;
        if cmd.len() != CMD_LEN {
            return Err(format!("a command of {} bytes", cmd.len()));
        }
        let (op, n) = (read_seq(&cmd[..8]), read_seq(&cmd[8..]));
        match op {
            OP_RTT => {
                for _ in 0..n {
                    let m = end.recv().await?;
                    end.send(&m).await?;
                }
            }
            OP_STREAM => {
                for i in 0..n {
                    stamp(&mut out, i);
                    end.send(&out).await?;
                }
            }
            OP_EXIT => break,
            other => return Err(format!("unknown command {other}")),
        }
    }
    let _ = end.conn.close(200, "done").await;
    Ok(())
}

async fn client(cfg: &Config, end: &mut End, size: usize) -> Result<Row, String> {
    let n = cfg.rtt_iterations(size);
    let warm = cfg.warmup(n);
    let mut out = vec![0xa5u8; size];
    let mut hist = new_histogram();
    end.send(&link::command(OP_RTT, warm + n)).await?;
    for i in 0..warm + n {
        stamp(&mut out, i);
        let t0 = Instant::now();
        end.send(&out).await?;
        let back = end.recv().await?;
        let dt = t0.elapsed();
        if !stamped(&back, size, i) {
            return Err(format!("round trip {i}: a wrong reply came back"));
        }
        if i >= warm {
            hist.saturating_record(dt.as_nanos() as u64);
        }
    }
    let n0 = cfg.calibration_messages();
    let d0 = stream(end, n0, size).await?;
    let count = cfg.stream_messages(n0, d0);
    let d = stream(end, count, size).await?;
    Ok(Row::new(
        Latency::from_histogram(&hist),
        count as f64 / d.as_secs_f64().max(1e-9),
    ))
}

async fn stream(end: &mut End, count: u64, size: usize) -> Result<Duration, String> {
    end.send(&link::command(OP_STREAM, count)).await?;
    let t0 = Instant::now();
    for i in 0..count {
        let m = end.recv().await?;
        if !stamped(&m, size, i) {
            return Err(format!("stream message {i}: wrong length or content"));
        }
    }
    Ok(t0.elapsed())
}

/// Measures the `rabbitmq` row at `size` through the broker at `url`.
pub fn measure(cfg: &Config, url: &str, size: usize) -> Result<Vec<Row>, Failure> {
    let label = format!("rabbitmq block {}", report::human_size(size));
    let base = format!("shmring-bench-{}-{size}", std::process::id());
    let (to_child, to_parent) = (format!("{base}-c"), format!("{base}-p"));
    match sys::fork().map_err(|e| Failure::Run(format!("fork: {e}")))? {
        Forked::Child => sys::child_main(&label, cfg.cpus.1, cfg.timeout, |_| {
            let rt = runtime()?;
            rt.block_on(serve(url, &to_child, &to_parent, size))
        }),
        Forked::Parent(child) => {
            let run = |e: String| match child.check_alive() {
                Ok(()) => Failure::Run(format!("{label}: {e}")),
                Err(dead) => Failure::Run(format!("{label}: {e} ({dead})")),
            };
            let rt = runtime().map_err(run)?;
            let (got, conn) = rt.block_on(async {
                let mut end = match End::open(url, &to_parent, &to_child).await {
                    Ok(e) => e,
                    Err(e) => return (Err(e), None),
                };
                let row = client(cfg, &mut end, size).await;
                // Tell the child to leave even after a failure, then
                // remove both queues.
                let _ = end.send(&link::command(OP_EXIT, 0)).await;
                for q in [&to_child, &to_parent] {
                    let _ = end
                        .chan
                        .queue_delete(q, QueueDeleteOptions::default())
                        .await;
                }
                let _ = end.conn.close(200, "done").await;
                (row, Some(end.conn))
            });
            finish(rt, conn);
            let mut row = got.map_err(run)?;
            child
                .reap()
                .map_err(|e| Failure::Run(format!("{label}: {e}")))?;
            row.transport = "rabbitmq".into();
            row.mode = Mode::Block;
            row.size = size;
            Ok(vec![row])
        }
    }
}

/// The local queues of the `rabbitmq-bridge` row, removed when dropped.
struct LocalQueues(Vec<String>);

impl Drop for LocalQueues {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = shmring::ByteQueue::unlink(n);
        }
    }
}

/// The bridge processes of the `rabbitmq-bridge` row: stopped (SIGINT, as
/// a service manager would) and reaped when dropped.
struct Bridges(Vec<std::process::Child>);

impl Drop for Bridges {
    fn drop(&mut self) {
        for c in &self.0 {
            // SAFETY: kill(2) of a child we started and have not reaped.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for c in &mut self.0 {
            while matches!(c.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Measures the `rabbitmq-bridge` row at `size`: the same round trips and
/// throughput between two processes that only use local shmring queues,
/// with `shmring bridge` processes carrying every message through the
/// broker. Host A's queue `x` → `bridge out` → AMQP → `bridge in` → host
/// B's queue `y` → the child → `z` → `bridge out` → AMQP → `bridge in` →
/// `w` → the parent. Its p50 over the `rabbitmq` row's is what the bridges
/// add: publisher confirms, acks after the local commit, two local hops.
pub fn measure_bridge(cfg: &Config, url: &str, size: usize) -> Result<Vec<Row>, Failure> {
    let label = format!("rabbitmq-bridge block {}", report::human_size(size));
    let fail = |m: String| Failure::Run(format!("{label}: {m}"));
    let base = format!("shmring-bench-{}-{size}-bridge", std::process::id());
    let names: Vec<String> = ["x", "y", "z", "w"]
        .iter()
        .map(|t| format!("{base}-{t}"))
        .collect();
    let max = size.max(16) as u64;
    let capacity = ((64usize << 20) / size.max(1)).clamp(2, 64) as u64;
    let mut made = LocalQueues(Vec::new());
    let mut queues = Vec::new();
    for n in &names {
        let q = ByteQueue::builder()
            .flavor(Flavor::Mpmc)
            .capacity(capacity)
            .max_message_size(max)
            .create(n)
            .map_err(|e| fail(format!("creating the local queue {n}: {e}")))?;
        made.0.push(n.clone());
        queues.push(q);
    }
    let exe = std::env::current_exe().map_err(|e| fail(format!("finding this program: {e}")))?;
    let (ab, ba) = (format!("{base}-ab"), format!("{base}-ba"));
    let start = |args: &[&str]| {
        std::process::Command::new(&exe)
            .arg("bridge")
            .args(args)
            .args(["--url", url, "--fail-fast"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .map_err(|e| fail(format!("starting shmring bridge: {e}")))
    };
    let mut bridges = Bridges(Vec::new());
    for args in [
        ["out", "--local", &names[0], "--queue", &ab],
        ["in", "--local", &names[1], "--queue", &ab],
        ["out", "--local", &names[2], "--queue", &ba],
        ["in", "--local", &names[3], "--queue", &ba],
    ] {
        bridges.0.push(start(&args)?);
    }
    // Each process's two queues as one transport: the copying client and
    // server of the shm rows (`link`), unchanged.
    let end = |rx: &ByteQueue, tx: &ByteQueue| -> Result<ShmTransport, String> {
        let mut rx = rx.receiver().map_err(|e| e.to_string())?;
        // The bridges are the senders: they may attach after this end.
        rx.set_wait_for_senders(true);
        let mut t = ShmTransport::new(tx.sender().map_err(|e| e.to_string())?, rx);
        t.set_spin(Duration::ZERO);
        Ok(t)
    };
    let (x, y, z, w) = (&queues[0], &queues[1], &queues[2], &queues[3]);
    let result = match sys::fork().map_err(|e| fail(format!("fork: {e}")))? {
        Forked::Child => sys::child_main(&label, cfg.cpus.1, cfg.timeout, |peer| {
            link::serve(link::End::Shm(end(y, z)?), false, size, peer)
        }),
        Forked::Parent(child) => {
            let peer = Peer::Child(&child);
            let run = || -> Result<Row, String> {
                let mut t = end(w, x)?;
                let row = link::client(cfg, &mut t, false, size, &peer)?;
                link::send(&mut t, false, &link::command(OP_EXIT, 0), &peer)?;
                Ok(row)
            };
            let r = run().map_err(|e| match child.check_alive() {
                Ok(()) => fail(e),
                Err(dead) => fail(format!("{e} ({dead})")),
            });
            if r.is_err() {
                drop(child);
            } else {
                child.reap().map_err(fail)?;
            }
            r
        }
    };
    drop(bridges);
    drop(queues);
    drop(made);
    delete_queues(url, &[&ab, &ba]);
    let mut row = result?;
    row.transport = "rabbitmq-bridge".into();
    row.mode = Mode::Block;
    row.size = size;
    Ok(vec![row])
}

/// Deletes AMQP queues (best effort), leaving this process single-threaded.
fn delete_queues(url: &str, queues: &[&str]) {
    let Ok(rt) = runtime() else { return };
    let conn = rt.block_on(async {
        let c = connect(url).await.ok()?;
        if let Ok(ch) = c.create_channel().await {
            for q in queues {
                let _ = ch.queue_delete(q, QueueDeleteOptions::default()).await;
            }
        }
        let _ = c.close(200, "done").await;
        Some(c)
    });
    finish(rt, conn);
}
