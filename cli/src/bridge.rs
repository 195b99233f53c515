//! `shmring bridge out` and `shmring bridge in`: a local byte queue to or
//! from an AMQP broker (RabbitMQ), run until SIGINT or SIGTERM.

use crate::types::Failure;
use clap::{Args, Subcommand};
use shmring_bridge::{
    run_inbound, run_outbound, Backoff, BridgeError, BrokerConfig, InboundConfig, LocalQueue,
    OutboundConfig, QueueSpec, Stats,
};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// `shmring bridge`.
#[derive(Args, Debug)]
pub struct BridgeArgs {
    #[command(subcommand)]
    direction: Direction,
}

#[derive(Subcommand, Debug)]
enum Direction {
    /// Local queue → broker: publish each message, release it once the broker confirmed it
    Out(OutArgs),
    /// Broker → local queue: commit each delivery locally, then ack it
    In(InArgs),
}

/// Options of both directions.
#[derive(Args, Debug)]
struct Common {
    /// Broker URL [default: $SHMRING_AMQP_URL, else amqp://guest:guest@127.0.0.1:5672/%2f]
    #[arg(long)]
    url: Option<String>,
    /// The local queue (a named MPMC byte queue in /dev/shm; created if missing)
    #[arg(long, value_name = "NAME")]
    local: String,
    /// Capacity of the local queue, when the bridge creates it (checked otherwise) [default: 1024]
    #[arg(long, value_name = "MESSAGES")]
    capacity: Option<u64>,
    /// Largest local message in bytes, when the bridge creates it (checked otherwise) [default: 65536]
    #[arg(long, value_name = "BYTES")]
    max_message_size: Option<u64>,
    /// Only check that the AMQP queue exists (passive declare) instead of declaring it
    #[arg(long)]
    passive: bool,
    /// Declare the AMQP queue durable (must match how it was first declared)
    #[arg(long)]
    durable: bool,
    /// First wait before reconnecting, in milliseconds (doubles on each failure)
    #[arg(long, value_name = "MS", default_value_t = 100)]
    backoff_min: u64,
    /// Longest wait before reconnecting, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    backoff_max: u64,
    /// Exit non-zero at the first connection failure instead of retrying
    #[arg(long, alias = "once")]
    fail_fast: bool,
    /// Print a counters line to stderr every SECS seconds (and one on exit)
    #[arg(long, value_name = "SECS")]
    stats: Option<f64>,
}

/// `shmring bridge out`.
#[derive(Args, Debug)]
struct OutArgs {
    #[command(flatten)]
    common: Common,
    /// The AMQP queue to publish to (through the default exchange); declared unless --passive or --no-declare
    #[arg(long, value_name = "NAME", required_unless_present = "routing_key")]
    queue: Option<String>,
    /// The exchange to publish to instead of the default one
    #[arg(long, value_name = "NAME", default_value = "")]
    exchange: String,
    /// The routing key [default: the --queue name]
    #[arg(long, value_name = "KEY")]
    routing_key: Option<String>,
    /// Declare no queue (a message nothing routes stops the bridge with an error)
    #[arg(long)]
    no_declare: bool,
    /// Publish persistent messages (delivery mode 2)
    #[arg(long)]
    persistent: bool,
    /// Messages in flight (published, not yet confirmed), 1..=48
    #[arg(long, value_name = "N", default_value_t = 32)]
    window: usize,
    /// On SIGINT/SIGTERM, how long to wait for the confirms in flight, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    drain_timeout: f64,
}

/// `shmring bridge in`.
#[derive(Args, Debug)]
struct InArgs {
    #[command(flatten)]
    common: Common,
    /// The AMQP queue to consume from; declared unless --passive
    #[arg(long, value_name = "NAME")]
    queue: String,
    /// Deliveries the broker sends ahead of their acks
    #[arg(long, value_name = "N", default_value_t = 64)]
    prefetch: u16,
    /// Batch size: committed deliveries acknowledged by one ack (sooner when no delivery waits)
    #[arg(long, value_name = "N", default_value_t = 32)]
    ack_batch: u16,
    /// Write [u16 id length][message id][body] into the local queue, for consumers that drop duplicates
    #[arg(long)]
    envelope: bool,
    /// Reject a message too large for the local queue to this dead-letter exchange (declared as the queue's x-dead-letter-exchange) instead of stopping
    #[arg(long, value_name = "EXCHANGE")]
    dead_letter: Option<String>,
}

/// Set by SIGINT and SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_sig: libc::c_int) {
    // Release: pairs with the bridge's Acquire load of the flag. An atomic
    // store is async-signal-safe.
    STOP.store(true, Ordering::Release);
}

/// SIGINT and SIGTERM set [`STOP`]; a second one acts as usual (ends the
/// process), for a bridge that does not stop.
fn install_stop() -> Result<(), Failure> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a valid handler and an empty
        // mask; the handler only stores to an atomic.
        let r = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_stop as *const () as libc::sighandler_t;
            sa.sa_flags = libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if r != 0 {
            return Err(Failure::Run(format!(
                "cannot install the signal handler: {}",
                std::io::Error::last_os_error()
            )));
        }
    }
    Ok(())
}

fn broker(c: &Common, direction: &str) -> Result<BrokerConfig, Failure> {
    if c.backoff_min == 0 || c.backoff_min > c.backoff_max {
        return Err(Failure::Usage(format!(
            "--backoff-min {} must be at least 1 and at most --backoff-max {}",
            c.backoff_min, c.backoff_max
        )));
    }
    let url = c
        .url
        .clone()
        .or_else(|| std::env::var("SHMRING_AMQP_URL").ok())
        .unwrap_or_else(|| shmring_bridge::DEFAULT_URL.to_string());
    Ok(BrokerConfig {
        url,
        backoff: Backoff {
            min: Duration::from_millis(c.backoff_min),
            max: Duration::from_millis(c.backoff_max),
        },
        fail_fast: c.fail_fast,
        connection_name: format!(
            "shmring bridge {direction} {} (pid {})",
            c.local,
            std::process::id()
        ),
        ..BrokerConfig::default()
    })
}

fn local(c: &Common) -> LocalQueue {
    LocalQueue {
        name: c.local.clone(),
        capacity: c.capacity,
        max_message_size: c.max_message_size,
    }
}

fn seconds(v: f64, what: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero() || what == "--drain-timeout")
        .ok_or_else(|| Failure::Usage(format!("{what} {v}: not a positive number of seconds")))
}

/// Runs `bridge` with the stop flag and the `--stats` printer.
fn run_with_stats(
    every: Option<f64>,
    bridge: impl FnOnce(&Stats, &AtomicBool) -> Result<(), BridgeError> + Send,
) -> Result<(), Failure> {
    let every = every.map(|s| seconds(s, "--stats")).transpose()?;
    install_stop()?;
    let stats = Stats::new();
    let done = AtomicBool::new(false);
    let r = std::thread::scope(|s| {
        if let Some(every) = every {
            let (stats, done) = (&stats, &done);
            s.spawn(move || {
                let mut next = Instant::now() + every;
                // Relaxed: only ends this loop; the final line is printed
                // after the join.
                while !done.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    if Instant::now() >= next {
                        eprintln!("shmring bridge: stats: {}", stats.snapshot());
                        next += every;
                    }
                }
            });
        }
        let r = bridge(&stats, &STOP);
        done.store(true, Ordering::Relaxed);
        r
    });
    if every.is_some() {
        eprintln!("shmring bridge: stats (final): {}", stats.snapshot());
    }
    r.map_err(|e| match e {
        BridgeError::Config(m) => Failure::Usage(m),
        e => Failure::Run(e.to_string()),
    })
}

/// `shmring bridge out|in`.
pub fn run(args: BridgeArgs) -> Result<(), Failure> {
    match args.direction {
        Direction::Out(a) => {
            let queue_name = a.queue.clone();
            let routing_key = match (&a.routing_key, &queue_name) {
                (Some(k), _) => k.clone(),
                (None, Some(q)) => q.clone(),
                (None, None) => return Err(Failure::Usage("give --queue or --routing-key".into())),
            };
            let queue = match (&queue_name, a.no_declare) {
                (Some(name), false) => Some(QueueSpec {
                    passive: a.common.passive,
                    durable: a.common.durable,
                    ..QueueSpec::new(name)
                }),
                _ => None,
            };
            let cfg = OutboundConfig {
                broker: broker(&a.common, "out")?,
                local: local(&a.common),
                exchange: a.exchange.clone(),
                routing_key,
                queue,
                persistent: a.persistent,
                window: a.window,
                drain_timeout: seconds(a.drain_timeout, "--drain-timeout")?,
                // This process exits as soon as the bridge returns: what is
                // still unconfirmed stays claimed, kept by its death, and
                // the next bridge publishes it first, in order, same ids.
                keep_on_stop: true,
            };
            run_with_stats(a.common.stats, |stats, stop| {
                run_outbound(&cfg, stats, stop)
            })
        }
        Direction::In(a) => {
            let cfg = InboundConfig {
                broker: broker(&a.common, "in")?,
                local: local(&a.common),
                queue: QueueSpec {
                    name: a.queue.clone(),
                    passive: a.common.passive,
                    durable: a.common.durable,
                    dead_letter_exchange: a.dead_letter.clone(),
                },
                prefetch: a.prefetch,
                ack_batch: a.ack_batch,
                envelope: a.envelope,
                dead_letter: a.dead_letter.is_some(),
            };
            run_with_stats(a.common.stats, |stats, stop| run_inbound(&cfg, stats, stop))
        }
    }
}
