//! Helpers of the bridge's tests: the broker (found, or the test skips),
//! unique names, cleanup, a watchdog, a bridge running on a thread.

#![allow(dead_code)]

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use shmring::{ByteQueue, Flavor};
use shmring_bridge::{
    run_inbound, run_outbound, BridgeError, BrokerConfig, InboundConfig, OutboundConfig, Stats,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// `SHMRING_AMQP_URL`, or the local broker's default account.
pub fn broker_url() -> String {
    std::env::var("SHMRING_AMQP_URL").unwrap_or_else(|_| shmring_bridge::DEFAULT_URL.to_string())
}

/// The test's side of the broker: its own connection and channel.
pub struct Amqp {
    pub rt: tokio::runtime::Runtime,
    pub conn: Connection,
    pub ch: Channel,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

/// Connects to the broker. Without one: in CI (`CI` set) the test fails;
/// elsewhere it prints how to start one and returns `None` (skip).
pub fn broker(test: &str) -> Option<Amqp> {
    let url = broker_url();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let conn = rt.block_on(async {
        let props = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        tokio::time::timeout(Duration::from_secs(10), Connection::connect(&url, props)).await
    });
    let conn = match conn {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return no_broker(test, &e.to_string()),
        Err(_) => return no_broker(test, "no answer in 10 s"),
    };
    let ch = rt.block_on(conn.create_channel()).unwrap();
    rt.block_on(ch.confirm_select(ConfirmSelectOptions::default()))
        .unwrap();
    Some(Amqp {
        rt,
        conn,
        ch,
        queues: Vec::new(),
        exchanges: Vec::new(),
    })
}

fn no_broker(test: &str, why: &str) -> Option<Amqp> {
    let msg = format!(
        "no AMQP broker at {} ({why}); start one with `apt-get install rabbitmq-server && \
         rabbitmq-server -detached` (or set SHMRING_AMQP_URL)",
        broker_url()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {msg}");
    }
    eprintln!("{test}: SKIPPED: {msg}");
    None
}

impl Amqp {
    /// Declares a fresh non-durable queue, deleted when `self` drops.
    pub fn queue(&mut self, name: &str, args: FieldTable) {
        self.queue_with(name, false, args)
    }

    /// Declares a fresh queue, durable or not, deleted when `self` drops.
    pub fn queue_with(&mut self, name: &str, durable: bool, args: FieldTable) {
        let opts = QueueDeclareOptions {
            durable,
            ..QueueDeclareOptions::default()
        };
        self.rt
            .block_on(self.ch.queue_declare(name, opts, args))
            .unwrap();
        self.queues.push(name.to_string());
    }

    /// Deletes `name` when `self` drops (a queue the bridge declares).
    pub fn forget_queue(&mut self, name: &str) {
        self.queues.push(name.to_string());
    }

    /// Declares a fanout exchange, deleted when `self` drops.
    pub fn fanout(&mut self, name: &str) {
        self.rt
            .block_on(self.ch.exchange_declare(
                name,
                lapin::ExchangeKind::Fanout,
                Default::default(),
                FieldTable::default(),
            ))
            .unwrap();
        self.exchanges.push(name.to_string());
    }

    pub fn bind(&self, queue: &str, exchange: &str) {
        self.rt
            .block_on(self.ch.queue_bind(
                queue,
                exchange,
                "",
                Default::default(),
                FieldTable::default(),
            ))
            .unwrap();
    }

    /// Publishes `body` to `queue` with `message_id`, confirmed.
    pub fn publish(&self, queue: &str, body: &[u8], id: &str) {
        let confirm = self
            .rt
            .block_on(async {
                self.ch
                    .basic_publish(
                        "",
                        queue,
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default().with_message_id(id.into()),
                    )
                    .await?
                    .await
            })
            .unwrap();
        assert!(confirm.is_ack());
    }

    /// Takes (acks) one message: `(body, message_id)`.
    pub fn get(&self, queue: &str) -> Option<(Vec<u8>, String)> {
        let msg = self
            .rt
            .block_on(self.ch.basic_get(queue, BasicGetOptions::default()))
            .unwrap()?;
        let id = msg
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map_or(String::new(), |s| s.as_str().to_string());
        self.rt
            .block_on(msg.delivery.acker.ack(BasicAckOptions::default()))
            .unwrap();
        Some((msg.delivery.data, id))
    }

    /// Takes `n` messages, waiting for each (the watchdog bounds it).
    pub fn get_n(&self, queue: &str, n: usize) -> Vec<(Vec<u8>, String)> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.get(queue) {
                Some(m) => out.push(m),
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        out
    }

    /// Messages ready in `queue` (a passive declare's count).
    pub fn ready(&self, queue: &str) -> u32 {
        let opts = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        self.rt
            .block_on(self.ch.queue_declare(queue, opts, FieldTable::default()))
            .unwrap()
            .message_count()
    }

    /// Waits until `queue` has `n` ready messages (the watchdog bounds it).
    pub fn wait_ready(&self, queue: &str, n: u32) {
        while self.ready(queue) != n {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Amqp {
    fn drop(&mut self) {
        for q in &self.queues {
            let _ = self
                .rt
                .block_on(self.ch.queue_delete(q, QueueDeleteOptions::default()));
        }
        for x in &self.exchanges {
            let _ = self
                .rt
                .block_on(self.ch.exchange_delete(x, ExchangeDeleteOptions::default()));
        }
        let _ = self.rt.block_on(self.conn.close(200, "test done"));
    }
}

/// A name no other test or run uses.
pub fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("shmring-bridge-test-{what}-{}-{nanos}", std::process::id())
}

/// A local MPMC byte queue, unlinked when dropped.
pub struct Local {
    pub name: String,
    pub q: ByteQueue,
}

impl Local {
    pub fn new(what: &str, capacity: u64, max: u64) -> Local {
        let name = unique(what);
        let q = ByteQueue::builder()
            .flavor(Flavor::Mpmc)
            .capacity(capacity)
            .max_message_size(max)
            .create(&name)
            .unwrap();
        Local { name, q }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        let _ = ByteQueue::unlink(&self.name);
    }
}

/// Fails the test (the whole process: a hung thread cannot be unwound)
/// unless dropped within `limit`.
pub struct Watchdog(Arc<AtomicBool>);

impl Watchdog {
    pub fn new(test: &'static str, limit: Duration) -> Watchdog {
        let done = Arc::new(AtomicBool::new(false));
        let d = done.clone();
        std::thread::spawn(move || {
            let until = Instant::now() + limit;
            while Instant::now() < until {
                if d.load(Ordering::Acquire) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("{test}: watchdog: no result after {limit:?}: failing");
            std::process::exit(101);
        });
        Watchdog(done)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The broker settings of a test bridge: fast backoff, a name to find it.
pub fn broker_config(test: &str) -> BrokerConfig {
    BrokerConfig {
        url: broker_url(),
        backoff: shmring_bridge::Backoff {
            min: Duration::from_millis(50),
            max: Duration::from_millis(500),
        },
        connect_timeout: Duration::from_secs(10),
        fail_fast: false,
        connection_name: format!("shmring-bridge-test {test}"),
    }
}

/// Waits until `cond` holds (the watchdog bounds it).
pub fn wait_until(mut cond: impl FnMut() -> bool) {
    while !cond() {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Closes the broker connections whose connection name contains `name`
/// (only this test's own: names are unique), with `rabbitmqctl`. Returns
/// how many; `None` if `rabbitmqctl` cannot be run here.
pub fn close_connections_named(name: &str) -> Option<usize> {
    let out = std::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_connections",
            "--no-table-headers",
            "pid",
            "client_properties",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())?;
    let mut n = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some((pid, props)) = line.split_once('\t') {
            if props.contains(name) {
                let ok = std::process::Command::new("rabbitmqctl")
                    .args(["-q", "close_connection", pid, "closed by a shmring test"])
                    .status()
                    .is_ok_and(|s| s.success());
                n += usize::from(ok);
            }
        }
    }
    Some(n)
}

/// A bridge running on a thread of the test: its counters, its stop flag,
/// and its result once it returns.
pub type Running = (
    Arc<Stats>,
    Arc<AtomicBool>,
    std::thread::JoinHandle<Result<(), BridgeError>>,
);

/// Runs an outbound bridge on a thread.
pub fn start_outbound(cfg: OutboundConfig) -> Running {
    let stats = Arc::new(Stats::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (s, t) = (stats.clone(), stop.clone());
    let h = std::thread::spawn(move || run_outbound(&cfg, &s, &t));
    (stats, stop, h)
}

/// Runs an inbound bridge on a thread.
pub fn start_inbound(cfg: InboundConfig) -> Running {
    let stats = Arc::new(Stats::new());
    let stop = Arc::new(AtomicBool::new(false));
    let (s, t) = (stats.clone(), stop.clone());
    let h = std::thread::spawn(move || run_inbound(&cfg, &s, &t));
    (stats, stop, h)
}
