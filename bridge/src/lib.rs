//! Bridges between shmring byte queues and an AMQP 0-9-1 broker
//! (RabbitMQ), at least once, both ways: the part of shmring for systems
//! that outgrow one host.
//!
//! - **Outbound** ([`run_outbound`]): a local MPMC [`ByteQueue`](shmring::ByteQueue) → an AMQP
//!   queue, or an exchange and routing key. A message leaves the local
//!   queue only once the broker confirmed it (publisher confirms).
//! - **Inbound** ([`run_inbound`]): an AMQP queue → a local `ByteQueue`. A
//!   delivery is acknowledged only once it is in the local queue.
//!
//! Both run until a stop flag is set (the `shmring bridge out|in` command
//! sets it on SIGINT or SIGTERM), share their counters through [`Stats`],
//! and log one timestamped line on stderr per change of state
//! (connecting, connected, blocked and unblocked by the broker,
//! disconnected and why).
//!
//! ```no_run
//! use shmring_bridge::{run_inbound, run_outbound, InboundConfig, OutboundConfig, Stats};
//! use std::sync::atomic::AtomicBool;
//! let stop = AtomicBool::new(false); // set it to stop both
//! std::thread::scope(|s| {
//!     // Host A: local queue "jobs" → AMQP queue "hello".
//!     s.spawn(|| run_outbound(&OutboundConfig::to_queue("jobs", "hello"), &Stats::new(), &stop));
//!     // Host B: AMQP queue "hello" → local queue "inbox".
//!     s.spawn(|| run_inbound(&InboundConfig::from_queue("hello", "inbox"), &Stats::new(), &stop));
//! });
//! ```
//!
//! # The AMQP client: lapin
//!
//! [lapin](https://docs.rs/lapin) is the maintained, complete AMQP 0-9-1
//! client for Rust: publisher confirms (`confirm_select`, a future per
//! publish resolving to ack, nack, or the `basic.return` of an unroutable
//! `mandatory` message), consumer prefetch (`basic_qos`), the broker's
//! connection blocking (flow control) as events, and a runtime-neutral
//! async API that runs on tokio through `tokio-executor-trait` and
//! `tokio-reactor-trait`. Its own default runtime and its TLS stacks are
//! not built (`default-features = false`): this build speaks plain
//! `amqp://` only. Its automatic recovery is not used: the bridge
//! reconnects itself, because what to do with messages in flight is the
//! heart of its promise.
//!
//! # Delivery: what is promised
//!
//! **Outbound.** Each message in flight is held as an in-place read
//! ([`ByteRef`](shmring::ByteRef)), a claim that keeps it in the local
//! queue, and is released only when the broker's confirm (ack) arrives. A
//! nack, or a connection lost before the confirm, makes the bridge publish
//! it again (same body, same `message_id`) after reconnecting: the broker
//! may then hold it twice. Every publish is `mandatory`: a message no queue
//! receives (a wrong queue name) comes back as a `basic.return`, which
//! stops the bridge with [`BridgeError::Unroutable`] naming the routing
//! key, the message kept. The `message_id` is
//! `format!("{instance:016x}-{position}")`: the local queue's instance and
//! the message's position in it.
//!
//! **Order.** Messages are claimed under one lock and published in claim
//! order on one channel, and after a reconnect the unconfirmed ones are
//! republished in that order before anything newer: a consumer sees each
//! producer's messages in order. The exception is a nack (a publish the
//! broker refuses: its internal error, or a full queue declared with
//! `x-overflow: reject-publish`): the nacked message is republished after
//! the ones behind it that the broker already accepted. It is never
//! released on another message's confirm: every publish's delivery tag
//! and frames are queued under one lock, so tags follow the wire order.
//!
//! **The window.** `window` (at most [`MAX_WINDOW`]) messages are in flight
//! at once, each on a worker thread with its own
//! [`ByteReceiver`](shmring::ByteReceiver), because one receiver holds one
//! in-place read at a time and the queue has 63 endpoints in all. Threads,
//! not tasks: a claim borrows its receiver and receivers block on futexes;
//! the tokio runtime (two threads) only runs the connection's I/O. A
//! stream of confirms keeps up to `window` publishes in the pipe, which is
//! what publisher-confirm throughput needs: a worker queues its publish's
//! frames while it holds the claim lock (so the broker gets claim order)
//! and awaits the write and the confirm after releasing it.
//!
//! **Batches.** The outbound batch is the window. Inbound, acks are
//! batched: one `basic.ack` with `multiple` covers up to
//! [`InboundConfig::ack_batch`] commits, sent when that many are committed
//! or as soon as no delivery is waiting (and always before the bridge
//! waits on a full local queue, or stops).
//!
//! **Stopping.** On stop, no new message is claimed; the confirms in
//! flight are awaited (at most `drain_timeout`, also for an adopted
//! message); a message still unconfirmed then stays in the local queue,
//! for the next run: with [`OutboundConfig::keep_on_stop`] (what `shmring
//! bridge out` sets, its process exiting at once) it stays claimed, kept by
//! the process's exit, and the next bridge publishes it first, in order,
//! under its id; without it, it is sent back into the queue, behind newer
//! messages and under a new position (so a new id). A broker that takes the connection and then answers
//! nothing does not hold a stop up: the channel's setup heeds the stop
//! flag too (and gives up after `connect_timeout`).
//!
//! **A killed bridge.** The core keeps a dead bridge's claims
//! (`ByteReceiver::keep_claims`), and the next
//! outbound bridge first publishes the claims its predecessor held
//! (`ByteQueue::adopt_kept`), each confirmed before it is released, and
//! only then takes new messages: nothing a killed bridge held is lost,
//! and what it had published before dying arrives twice, with one id.
//! A running bridge also looks for kept claims every second, for a peer
//! bridge on the same local queue that was killed (those it publishes
//! after the messages it had claimed itself).
//!
//! **Inbound.** Each delivery is sent into the local queue (a blocking
//! send), then acknowledged. A bridge killed between the two leaves the
//! delivery unacknowledged: the broker redelivers it, a duplicate with the
//! same `message_id`. The bridge does not drop duplicates itself (it would
//! have to remember ids across its own deaths); with `envelope` the local
//! message is `[u16 id length][message id][body]` ([`Envelope`]), so a
//! consumer that remembers recent ids can. A message larger than the local
//! queue's maximum is never dropped silently: it is rejected to the
//! queue's dead-letter exchange where `dead_letter` is set, otherwise
//! requeued (nack) and the bridge stops with [`BridgeError::TooLarge`].
//!
//! # Back-pressure
//!
//! Inbound, a full local queue blocks the send, so acks stop, so the
//! broker stops after `prefetch` unacknowledged deliveries. Outbound, a
//! broker that blocks publishing (a resource alarm) or cannot be reached
//! stalls the publishes and confirms; the bridge claims nothing new while
//! disconnected, the local queue fills, and its senders block as usual.
//!
//! # Connections
//!
//! A bridge connects with exponential backoff ([`Backoff`], 100 ms → 5 s by
//! default), logging each failure with its reason (refused, login refused,
//! timeout), and reconnects the same way after a loss; with
//! [`BrokerConfig::fail_fast`] the first failure is the error instead.
//! The broker's refusals of a queue or exchange (not found, declared with
//! other properties) are errors at once: retrying cannot mend them.
mod config;
mod envelope;
mod error;
mod inbound;
mod link;
mod local;
mod log;
mod outbound;
mod stats;

pub use config::{
    Backoff, BrokerConfig, InboundConfig, LocalQueue, OutboundConfig, QueueSpec, DEFAULT_URL,
    MAX_WINDOW,
};
pub use envelope::Envelope;
pub use error::BridgeError;
pub use inbound::run_inbound;
pub use outbound::run_outbound;
pub use stats::{State, Stats, StatsSnapshot};
