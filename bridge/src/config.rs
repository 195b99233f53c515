//! What a bridge is told: the broker, the local queue, the AMQP side.

use std::time::Duration;

/// The broker URL used when none is given (RabbitMQ's default account on
/// this host, the default virtual host `/`).
pub const DEFAULT_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Most messages an outbound bridge has in flight (see
/// [`OutboundConfig::window`]): each holds one of the local queue's
/// endpoints (63 in all), and the rest are left to the applications.
pub const MAX_WINDOW: usize = 48;

/// Waits between connection attempts: doubling from `min` to `max`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The first wait (default 100 ms).
    pub min: Duration,
    /// The longest wait (default 5 s).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failed attempts in a row (at least 1).
    pub fn delay(&self, failures: u32) -> Duration {
        let shift = failures.saturating_sub(1).min(20);
        self.min
            .saturating_mul(1 << shift)
            .min(self.max)
            .max(self.min.min(self.max))
    }
}

/// The broker side shared by both directions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerConfig {
    /// `amqp://user:password@host:port/vhost` (the vhost `/` is `%2f`).
    /// Plain AMQP only: this build has no TLS (`amqps://` is refused).
    pub url: String,
    /// Reconnect backoff.
    pub backoff: Backoff,
    /// How long one connection attempt may take (default 10 s).
    pub connect_timeout: Duration,
    /// Return an error at the first failed connection (or the first loss of
    /// one) instead of retrying with backoff.
    pub fail_fast: bool,
    /// The connection name shown by the broker's management tools
    /// (`rabbitmqctl list_connections client_properties`).
    pub connection_name: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            url: DEFAULT_URL.to_string(),
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            fail_fast: false,
            connection_name: "shmring-bridge".to_string(),
        }
    }
}

/// The local shmring queue: a named MPMC [`ByteQueue`](shmring::ByteQueue),
/// opened, or created if it does not exist yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalQueue {
    /// Its name (`/dev/shm/<name>`).
    pub name: String,
    /// Its capacity in messages: checked against an existing queue if set;
    /// used when creating one (default 1024).
    pub capacity: Option<u64>,
    /// Its largest message in bytes: checked against an existing queue if
    /// set; used when creating one (default 65 536).
    pub max_message_size: Option<u64>,
}

impl LocalQueue {
    /// The queue `name`, of any capacity and size if it exists.
    pub fn new(name: impl Into<String>) -> LocalQueue {
        LocalQueue {
            name: name.into(),
            capacity: None,
            max_message_size: None,
        }
    }

    /// Capacity of a queue the bridge creates, when not set.
    pub const DEFAULT_CAPACITY: u64 = 1024;
    /// Largest message of a queue the bridge creates, when not set.
    pub const DEFAULT_MAX_MESSAGE_SIZE: u64 = 64 * 1024;
}

/// An AMQP queue, and how the bridge declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueSpec {
    /// The queue's name.
    pub name: String,
    /// Only check that the queue exists (a passive declare): an error if it
    /// does not, instead of creating it.
    pub passive: bool,
    /// Declare it durable (survives a broker restart). Must match how the
    /// queue was first declared, or the broker refuses
    /// (`PRECONDITION_FAILED`): the seed's `hello` queue is not durable.
    pub durable: bool,
    /// Declare it with `x-dead-letter-exchange` set to this exchange
    /// (inbound: where too-large messages are rejected to). Must match the
    /// existing queue's arguments too.
    pub dead_letter_exchange: Option<String>,
}

impl QueueSpec {
    /// A non-durable queue declared (created if missing) by the bridge.
    pub fn new(name: impl Into<String>) -> QueueSpec {
        QueueSpec {
            name: name.into(),
            passive: false,
            durable: false,
            dead_letter_exchange: None,
        }
    }
}

/// An outbound bridge: local queue → broker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboundConfig {
    /// The broker.
    pub broker: BrokerConfig,
    /// The local queue messages are taken from.
    pub local: LocalQueue,
    /// The exchange to publish to (`""`: the default exchange, which routes
    /// by queue name).
    pub exchange: String,
    /// The routing key (with the default exchange: the queue's name).
    pub routing_key: String,
    /// A queue to declare (or, `passive`, check) before publishing; `None`
    /// declares nothing. A message nothing routes is returned by the
    /// broker (`mandatory`) and stops the bridge with an error.
    pub queue: Option<QueueSpec>,
    /// Publish persistent messages (delivery mode 2: written to disk by a
    /// durable queue).
    pub persistent: bool,
    /// Most messages in flight, published but not yet confirmed (1 ..=
    /// [`MAX_WINDOW`], default 32).
    pub window: usize,
    /// On stop, how long to wait for the confirms of messages in flight
    /// before leaving them in the local queue (default 5 s).
    pub drain_timeout: Duration,
    /// On stop (or a fatal error), leave the messages still unconfirmed
    /// *claimed* instead of sending them back into the local queue (default
    /// false). Only for a process that exits right after [`run_outbound`]
    /// returns, as `shmring bridge out` does: its death makes the claims
    /// kept, and the next bridge publishes them first, in their order and
    /// with their message ids. (Sent back, they go behind the newer
    /// messages, with new ids.) A process that goes on holds them, and the
    /// local queue stalls at them after a lap, until it exits.
    ///
    /// [`run_outbound`]: crate::run_outbound
    pub keep_on_stop: bool,
}

impl OutboundConfig {
    /// Publishes from local queue `local` to the AMQP queue `queue` (through
    /// the default exchange), declaring it non-durable, with the defaults.
    pub fn to_queue(local: impl Into<String>, queue: impl Into<String>) -> OutboundConfig {
        let queue = queue.into();
        OutboundConfig {
            broker: BrokerConfig::default(),
            local: LocalQueue::new(local),
            exchange: String::new(),
            routing_key: queue.clone(),
            queue: Some(QueueSpec::new(queue)),
            persistent: false,
            window: 32,
            drain_timeout: Duration::from_secs(5),
            keep_on_stop: false,
        }
    }
}

/// An inbound bridge: broker → local queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InboundConfig {
    /// The broker.
    pub broker: BrokerConfig,
    /// The local queue messages are written into.
    pub local: LocalQueue,
    /// The AMQP queue to consume from.
    pub queue: QueueSpec,
    /// Most deliveries the broker sends ahead of their acks (`basic.qos`;
    /// 1 ..= 65535, default 64). A full local queue stops the acks, so the
    /// broker stops after this many.
    pub prefetch: u16,
    /// Most committed deliveries acknowledged by one `basic.ack` (with
    /// `multiple`; 1 ..= 65535, default 32). Acks are sent when this many
    /// are committed, or sooner, as soon as no further delivery is waiting:
    /// a slow stream is acked message by message, a fast one in batches.
    /// A commit is never acked before it is in the local queue; a bridge
    /// killed with commits not yet acked gets them redelivered (duplicates,
    /// at most `prefetch`, as for any in-flight delivery).
    pub ack_batch: u16,
    /// Write `[u16 id length][message id][body]` ([`Envelope`](crate::Envelope))
    /// instead of the raw body.
    pub envelope: bool,
    /// A message larger than the local queue's maximum is rejected
    /// (`requeue = false`), so that the broker dead-letters it, instead of
    /// stopping the bridge. Set it when the queue has a dead-letter
    /// exchange (see [`QueueSpec::dead_letter_exchange`]).
    pub dead_letter: bool,
}

impl InboundConfig {
    /// Consumes the AMQP queue `queue` (declared non-durable) into local
    /// queue `local`, with the defaults.
    pub fn from_queue(queue: impl Into<String>, local: impl Into<String>) -> InboundConfig {
        InboundConfig {
            broker: BrokerConfig::default(),
            local: LocalQueue::new(local),
            queue: QueueSpec::new(queue),
            prefetch: 64,
            ack_batch: 32,
            envelope: false,
            dead_letter: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_max() {
        let b = Backoff::default();
        let ms = |n| b.delay(n).as_millis();
        assert_eq!([ms(0), ms(1), ms(2), ms(3)], [100, 100, 200, 400]);
        assert_eq!(ms(7), 5000);
        assert_eq!(ms(u32::MAX), 5000);
    }
}
