//! The connection to the broker, shared by both directions: the tokio
//! runtime lapin runs on, connecting with backoff, classifying failures,
//! and watching a live connection for blocks and losses.

use crate::config::BrokerConfig;
use crate::error::BridgeError;
use crate::log::{self, redact};
use crate::stats::{Counter, State, Stats};
use futures_core::Stream;
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::{Connection, ConnectionProperties, ErrorKind, Event};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often blocking loops look at their stop flag.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// The runtime lapin's connection tasks run on. Two workers: the bridge's
/// own threads do the waiting (`Handle::block_on`), the runtime only moves
/// frames.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, BridgeError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("shmring-bridge-io")
        .enable_all()
        .build()
        .map_err(|e| BridgeError::Config(format!("cannot start the tokio runtime: {e}")))
}

/// Checks the URL before any attempt: a malformed one is not worth retrying.
pub(crate) fn check_url(url: &str) -> Result<(), BridgeError> {
    if url.starts_with("amqps://") {
        return Err(BridgeError::Config(format!(
            "{}: amqps:// (TLS) is not supported by this build; use amqp://",
            redact(url)
        )));
    }
    url.parse::<lapin::uri::AMQPUri>()
        .map(|_| ())
        .map_err(|e| BridgeError::Config(format!("broker URL {}: {e}", redact(url))))
}

/// What to do about a failed broker operation.
pub(crate) enum Failure {
    /// Reconnect (with backoff) and try again.
    Retry(String),
    /// Stop the bridge with this error: trying again cannot help.
    Fatal(BridgeError),
}

/// Classifies an error of an operation on `what` (`queue "x"`, `exchange
/// "y"`): the broker's refusals of a queue or exchange (not found, other
/// properties, locked, access) are fatal; everything else (I/O, a closed
/// connection, a forced close) is retried.
pub(crate) fn classify(e: &lapin::Error, what: &str) -> Failure {
    if let ErrorKind::ProtocolError(amqp) = e.kind() {
        if let AMQPErrorKind::Soft(soft) = amqp.kind() {
            let hint = match soft {
                AMQPSoftError::NOTFOUND => "not found",
                AMQPSoftError::PRECONDITIONFAILED => {
                    "exists with other properties (durable? arguments?): declare it as it was \
                     first declared"
                }
                AMQPSoftError::ACCESSREFUSED => "access refused",
                AMQPSoftError::RESOURCELOCKED => "locked (exclusive to another connection)",
                _ => return Failure::Retry(e.to_string()),
            };
            return Failure::Fatal(BridgeError::Amqp {
                what: what.to_string(),
                reason: format!("{hint} ({})", amqp.get_message()),
            });
        }
    }
    Failure::Retry(e.to_string())
}

/// A connected broker session: the connection and its event stream.
pub(crate) struct Link {
    pub(crate) conn: Connection,
    events: Pin<Box<dyn Stream<Item = Event> + Send>>,
}

/// What the caller of [`connect`] is for.
pub(crate) struct Ctx<'a> {
    pub(crate) rt: &'a tokio::runtime::Handle,
    pub(crate) broker: &'a BrokerConfig,
    pub(crate) stats: &'a Stats,
    pub(crate) label: &'a str,
}

impl Ctx<'_> {
    pub(crate) fn log(&self, msg: std::fmt::Arguments<'_>) {
        log::line(self.label, msg);
    }

    /// Connects and runs `setup` on the new connection, retrying both with
    /// backoff. `Ok(None)`: `give_up` said to stop trying. A fatal `setup`
    /// failure, or any failure when failing fast, is the error.
    pub(crate) fn connect<T>(
        &self,
        reconnect: bool,
        give_up: &dyn Fn() -> bool,
        mut setup: impl FnMut(&Connection) -> Result<T, Failure>,
    ) -> Result<Option<(Link, T)>, BridgeError> {
        let url = redact(&self.broker.url);
        let mut failures = 0u32;
        loop {
            if give_up() {
                return Ok(None);
            }
            self.stats.set_state(State::Connecting);
            self.log(format_args!("connecting to {url}"));
            let attempt = self.open().and_then(|link| match setup(&link.conn) {
                Ok(t) => Ok((link, t)),
                Err(e) => {
                    link.close(self.rt);
                    Err(e)
                }
            });
            match attempt {
                Ok((link, t)) => {
                    if reconnect {
                        self.stats.add(Counter::Reconnects);
                    }
                    self.stats.set_state(State::Connected);
                    self.log(format_args!("connected to {url}"));
                    return Ok(Some((link, t)));
                }
                Err(Failure::Fatal(e)) => {
                    self.stats.set_state(State::Disconnected);
                    return Err(e);
                }
                Err(Failure::Retry(reason)) => {
                    self.stats.set_state(State::Disconnected);
                    if give_up() {
                        // Stopping, during the setup: not worth a retry.
                        return Ok(None);
                    }
                    if self.broker.fail_fast {
                        self.log(format_args!(
                            "cannot connect to {url}: {reason} (failing fast)"
                        ));
                        return Err(BridgeError::Broker { url, reason });
                    }
                    failures += 1;
                    let wait = self.broker.backoff.delay(failures);
                    self.log(format_args!(
                        "cannot connect to {url}: {reason}; retrying in {} ms (attempt {failures})",
                        wait.as_millis()
                    ));
                    let until = Instant::now() + wait;
                    while Instant::now() < until && !give_up() {
                        std::thread::sleep(
                            POLL.min(until.saturating_duration_since(Instant::now())),
                        );
                    }
                }
            }
        }
    }

    fn open(&self) -> Result<Link, Failure> {
        let name = self.broker.connection_name.clone();
        let url = self.broker.url.clone();
        let timeout = self.broker.connect_timeout;
        self.rt.block_on(async move {
            let props = ConnectionProperties::default()
                .with_executor(tokio_executor_trait::Tokio::current())
                .with_reactor(tokio_reactor_trait::Tokio::current())
                .with_connection_name(name.into());
            match tokio::time::timeout(timeout, Connection::connect(&url, props)).await {
                Ok(Ok(conn)) => {
                    let events = Box::pin(conn.events_listener());
                    Ok(Link { conn, events })
                }
                Ok(Err(e)) => Err(Failure::Retry(connect_reason(&e))),
                Err(_) => Err(Failure::Retry(format!(
                    "no answer within {} ms",
                    timeout.as_millis()
                ))),
            }
        })
    }
}

/// A connection failure, in words a user can act on.
fn connect_reason(e: &lapin::Error) -> String {
    match e.kind() {
        ErrorKind::ProtocolError(amqp)
            if matches!(
                amqp.kind(),
                AMQPErrorKind::Soft(AMQPSoftError::ACCESSREFUSED)
            ) =>
        {
            format!(
                "login refused (user name or password?): {}",
                amqp.get_message()
            )
        }
        ErrorKind::IOError(io) => format!("{io}"),
        _ => e.to_string(),
    }
}

impl Link {
    /// Waits up to `timeout` for an event; logs blocks and unblocks.
    /// `Some(reason)`: the connection is gone.
    pub(crate) fn watch(&mut self, ctx: &Ctx<'_>, timeout: Duration) -> Option<String> {
        let events = &mut self.events;
        let next = ctx.rt.block_on(async {
            tokio::time::timeout(timeout, poll_fn(|cx| events.as_mut().poll_next(cx))).await
        });
        match next {
            Ok(Some(Event::ConnectionBlocked(reason))) => {
                ctx.stats.set_state(State::Blocked);
                ctx.log(format_args!(
                    "blocked by the broker ({reason}): publishing stalls until it unblocks"
                ));
                None
            }
            Ok(Some(Event::ConnectionUnblocked)) => {
                ctx.stats.set_state(State::Connected);
                ctx.log(format_args!("unblocked by the broker"));
                None
            }
            Ok(Some(Event::Error(e))) => Some(e.to_string()),
            Ok(Some(_)) => None,
            Ok(None) => Some("connection closed".to_string()),
            Err(_) if !self.conn.status().connected() => {
                Some(format!("connection {:?}", self.conn.status().state()))
            }
            Err(_) => None,
        }
    }

    /// Closes the connection (best effort, bounded).
    pub(crate) fn close(self, rt: &tokio::runtime::Handle) {
        let conn = self.conn;
        rt.block_on(async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), conn.close(200, "bridge stopping"))
                    .await;
        });
    }
}

/// Runs `fut` on `rt` until it completes, `give_up` says to stop (asked
/// every [`POLL`]) or `limit` has passed: for the setup of a connection
/// whose broker took the connection and then answers nothing (stalled,
/// partitioned), which lapin would otherwise wait for until its heartbeat
/// gives up, the stop flag unheeded.
pub(crate) fn bounded<F: std::future::Future<Output = Result<T, Failure>>, T>(
    rt: &tokio::runtime::Handle,
    limit: Duration,
    give_up: &dyn Fn() -> bool,
    fut: F,
) -> Result<T, Failure> {
    let mut fut = std::pin::pin!(fut);
    let until = Instant::now() + limit;
    loop {
        if let Ok(r) = rt.block_on(async { tokio::time::timeout(POLL, fut.as_mut()).await }) {
            return r;
        }
        if give_up() {
            return Err(Failure::Retry("stopping".into()));
        }
        if Instant::now() >= until {
            return Err(Failure::Retry(format!(
                "no answer within {} ms",
                limit.as_millis()
            )));
        }
    }
}

/// Whether `flag` is set (the caller's stop flag).
pub(crate) fn is_set(flag: &AtomicBool) -> bool {
    // Acquire: pairs with the Release store of whoever stops the bridge.
    flag.load(Ordering::Acquire)
}
