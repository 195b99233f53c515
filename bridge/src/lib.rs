//! tmp
mod config;
mod envelope;
mod error;
mod inbound;
mod kept;
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
