//! The counters a running bridge shares with its caller.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// Where a bridge's link to the broker stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    /// Not started yet.
    Starting = 0,
    /// Opening a connection (first time or after a failure).
    Connecting = 1,
    /// Connected, moving messages.
    Connected = 2,
    /// Connected, but the broker has blocked publishing (a resource alarm:
    /// memory or disk): outbound publishing stalls.
    Blocked = 3,
    /// The connection is down; waiting before the next try.
    Disconnected = 4,
    /// Stopping: finishing the messages in flight.
    Stopping = 5,
    /// Stopped.
    Stopped = 6,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Connecting,
            2 => State::Connected,
            3 => State::Blocked,
            4 => State::Disconnected,
            5 => State::Stopping,
            6 => State::Stopped,
            _ => State::Starting,
        }
    }

    /// The lowercase name used in log lines and `--stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Connecting => "connecting",
            State::Connected => "connected",
            State::Blocked => "blocked",
            State::Disconnected => "disconnected",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of a running bridge, updated as it works: share one (by
/// reference or in an `Arc`) between the bridge and whoever reports on it.
///
/// Outbound bridges count `published` … `republished`, inbound bridges
/// `consumed` … `rejected`; both count `reconnects` and keep the
/// [`State`]. Every counter only grows; read them all at once with
/// [`snapshot`](Self::snapshot).
#[derive(Debug, Default)]
pub struct Stats {
    published: AtomicU64,
    confirmed: AtomicU64,
    nacked: AtomicU64,
    returned: AtomicU64,
    republished: AtomicU64,
    consumed: AtomicU64,
    committed: AtomicU64,
    acked: AtomicU64,
    rejected: AtomicU64,
    reconnects: AtomicU64,
    state: AtomicU8,
}

/// The counters of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Outbound: publishes sent to the broker (first tries and republishes).
    pub published: u64,
    /// Outbound: messages the broker confirmed (each then left the local queue).
    pub confirmed: u64,
    /// Outbound: negative confirms (each message was republished).
    pub nacked: u64,
    /// Outbound: messages the broker returned as unroutable (`basic.return`).
    pub returned: u64,
    /// Outbound: publishes repeated after a nack or a lost connection.
    pub republished: u64,
    /// Inbound: deliveries received from the broker.
    pub consumed: u64,
    /// Inbound: deliveries written into the local queue.
    pub committed: u64,
    /// Inbound: deliveries acknowledged to the broker (after their commit).
    pub acked: u64,
    /// Inbound: deliveries rejected to the dead-letter exchange (too large).
    pub rejected: u64,
    /// Connections opened after the first one.
    pub reconnects: u64,
    /// The link's state.
    pub state: State,
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state={} published={} confirmed={} nacked={} returned={} republished={} \
             consumed={} committed={} acked={} rejected={} reconnects={}",
            self.state,
            self.published,
            self.confirmed,
            self.nacked,
            self.returned,
            self.republished,
            self.consumed,
            self.committed,
            self.acked,
            self.rejected,
            self.reconnects
        )
    }
}

/// Which counter to add to (crate-internal).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Counter {
    Published,
    Confirmed,
    Nacked,
    Returned,
    Republished,
    Consumed,
    Committed,
    Acked,
    Rejected,
    Reconnects,
}

impl Stats {
    /// New counters, all zero, state [`State::Starting`].
    pub fn new() -> Stats {
        Stats::default()
    }

    /// The link's state now.
    pub fn state(&self) -> State {
        // Relaxed: a report, ordered with nothing else.
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Every counter, read one after the other (each is exact; the set is
    /// not one atomic cut).
    pub fn snapshot(&self) -> StatsSnapshot {
        // Relaxed: counters for reports; nothing is published through them.
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            published: get(&self.published),
            confirmed: get(&self.confirmed),
            nacked: get(&self.nacked),
            returned: get(&self.returned),
            republished: get(&self.republished),
            consumed: get(&self.consumed),
            committed: get(&self.committed),
            acked: get(&self.acked),
            rejected: get(&self.rejected),
            reconnects: get(&self.reconnects),
            state: self.state(),
        }
    }

    pub(crate) fn add(&self, counter: Counter) {
        self.add_n(counter, 1);
    }

    pub(crate) fn add_n(&self, counter: Counter, n: u64) {
        let c = match counter {
            Counter::Published => &self.published,
            Counter::Confirmed => &self.confirmed,
            Counter::Nacked => &self.nacked,
            Counter::Returned => &self.returned,
            Counter::Republished => &self.republished,
            Counter::Consumed => &self.consumed,
            Counter::Committed => &self.committed,
            Counter::Acked => &self.acked,
            Counter::Rejected => &self.rejected,
            Counter::Reconnects => &self.reconnects,
        };
        // Relaxed: a counter (see `snapshot`).
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn set_state(&self, state: State) {
        // Relaxed: a report (see `state`).
        self.state.store(state as u8, Ordering::Relaxed);
    }
}
