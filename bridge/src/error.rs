//! The bridge's errors: why a bridge stopped.

use shmring::SegmentError;

/// Why [`run_outbound`](crate::run_outbound) or
/// [`run_inbound`](crate::run_inbound) returned an error. Every message
/// not confirmed (outbound) or not acknowledged (inbound) is still where it
/// was: in the local queue, or in the broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The configuration is unusable (a malformed URL, a window out of
    /// range…).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The local queue could not be opened or created, or is corrupted.
    #[error("local queue {name:?}: {source}")]
    Local {
        /// The local queue's name.
        name: String,
        /// What the library said (boxed: it is large).
        #[source]
        source: Box<SegmentError>,
    },
    /// The local queue is corrupted (a receive or send said so).
    #[error("local queue {name:?} is corrupted")]
    Corrupted {
        /// The local queue's name.
        name: String,
    },
    /// The broker could not be reached, refused the login, or dropped the
    /// connection, and the bridge was told to fail fast.
    #[error("broker {url}: {reason}")]
    Broker {
        /// The URL, password hidden.
        url: String,
        /// The last failure.
        reason: String,
    },
    /// The broker refused an AMQP queue or exchange: not found, declared
    /// with other properties (`durable`, arguments), or not accessible.
    #[error("AMQP {what}: {reason}")]
    Amqp {
        /// What was refused (`queue "hello"`, `exchange "logs"`).
        what: String,
        /// The broker's reply.
        reason: String,
    },
    /// Outbound: the broker returned a message as unroutable (no queue is
    /// bound for its routing key). The message was kept in the local queue.
    #[error(
        "the broker returned a message as unroutable ({reply}): no queue receives exchange \
         {exchange:?} routing key {routing_key:?} (is the AMQP queue name {routing_key:?} \
         right?); the message is kept in local queue {local:?}"
    )]
    Unroutable {
        /// The exchange published to (`""`: the default exchange).
        exchange: String,
        /// The routing key (with the default exchange: the queue name).
        routing_key: String,
        /// The broker's reply code and text.
        reply: String,
        /// The local queue that keeps the message.
        local: String,
    },
    /// Inbound: a message larger than the local queue's maximum, and no
    /// dead-lettering configured. It was requeued in the broker.
    #[error(
        "a message of {size} bytes in AMQP queue {queue:?} exceeds local queue {local:?}'s \
         maximum of {max} bytes; it was left in the broker (nack, requeue): raise the local \
         maximum or configure dead-lettering"
    )]
    TooLarge {
        /// The message's size in the local queue (with the envelope, if any).
        size: usize,
        /// The local queue's maximum.
        max: usize,
        /// The AMQP queue.
        queue: String,
        /// The local queue.
        local: String,
    },
}
