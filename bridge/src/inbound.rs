//! The inbound bridge: broker → local queue, a delivery acknowledged only
//! once it is committed into the local queue.
//!
//! One thread does it all, one delivery at a time, in the broker's order:
//! wait for a delivery, send it into the local queue (a blocking send: a
//! full local queue stops the acks, so the broker stops at `prefetch`
//! unacknowledged deliveries), then ack it. Acks are batched: one
//! `basic.ack` with `multiple` covers every delivery committed so far, sent
//! once `ack_batch` are committed or as soon as no further delivery is
//! waiting (each ack waits for the connection's writer, a thread hand-off,
//! which one ack per message paid for every message). A bridge that dies
//! between the send and the ack leaves the delivery unacknowledged: the
//! broker redelivers it, a duplicate with the same `message_id`. The bridge does
//! not drop duplicates itself (it would have to remember ids across its
//! own deaths); `--envelope` hands the id to the consumer, which can.

use crate::config::InboundConfig;
use crate::envelope::Envelope;
use crate::error::BridgeError;
use crate::link::{self, is_set, Ctx, Failure, Link, POLL};
use crate::stats::{Counter, State, Stats};
use futures_core::Stream;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, Consumer};
use shmring::{ByteSendError, ByteSender};
use std::borrow::Cow;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll, Waker};

/// The acks owed: deliveries committed into the local queue, not yet
/// acknowledged.
#[derive(Default)]
struct Acks {
    /// The latest committed delivery's acker (an ack with `multiple` on it
    /// covers the earlier ones).
    latest: Option<lapin::acker::Acker>,
    /// How many it covers.
    owed: u64,
}

/// Runs an inbound bridge until `stop` is set or an error.
///
/// Each delivery is written into the local queue, then acknowledged: a
/// message is never acknowledged before it is in the local queue. When
/// `stop` is set while the local queue is full, the delivery being written
/// and those prefetched stay in the broker (unacknowledged, requeued when
/// the connection closes).
///
/// # Errors
/// [`BridgeError::Config`], [`BridgeError::Local`] at start;
/// [`BridgeError::Amqp`] when the broker refuses the queue;
/// [`BridgeError::TooLarge`] for a message larger than the local queue's
/// maximum without `dead_letter` (it is requeued in the broker first);
/// [`BridgeError::Broker`] for a broker that cannot be reached, only with
/// `fail_fast`; [`BridgeError::Corrupted`], or [`BridgeError::Local`]
/// when the local queue's stream was closed.
///
/// # Examples
/// ```no_run
/// use shmring_bridge::{run_inbound, InboundConfig, Stats};
/// use std::sync::atomic::AtomicBool;
/// let cfg = InboundConfig::from_queue("hello", "inbox");
/// let (stats, stop) = (Stats::new(), AtomicBool::new(false));
/// run_inbound(&cfg, &stats, &stop)?; // until `stop` is set elsewhere
/// # Ok::<(), shmring_bridge::BridgeError>(())
/// ```
pub fn run_inbound(
    cfg: &InboundConfig,
    stats: &Stats,
    stop: &AtomicBool,
) -> Result<(), BridgeError> {
    if cfg.prefetch == 0 {
        return Err(BridgeError::Config("prefetch must be at least 1".into()));
    }
    if cfg.ack_batch == 0 {
        return Err(BridgeError::Config("ack_batch must be at least 1".into()));
    }
    link::check_url(&cfg.broker.url)?;
    let queue = crate::local::open(&cfg.local)?;
    let local_err = |source| BridgeError::Local {
        name: cfg.local.name.clone(),
        source: Box::new(source),
    };
    let mut tx = queue.sender().map_err(local_err)?;
    // Messages wait in the broker, not here, while no consumer is attached.
    tx.set_wait_for_receivers(true);
    let rt = link::runtime()?;
    let label = format!("in {:?} -> {:?}", cfg.queue.name, cfg.local.name);
    let inbound = Inbound {
        cfg,
        stats,
        stop,
        tx,
        label: &label,
        rt: rt.handle().clone(),
    };
    let r = inbound.run();
    stats.set_state(State::Stopped);
    crate::log::line(&label, format_args!("stopped ({})", stats.snapshot()));
    drop(inbound);
    drop(rt);
    r
}

struct Inbound<'a> {
    cfg: &'a InboundConfig,
    stats: &'a Stats,
    stop: &'a AtomicBool,
    tx: ByteSender,
    label: &'a str,
    rt: tokio::runtime::Handle,
}

/// How a connection's consuming ended.
enum End {
    Stopped,
    Lost(String),
    Error(BridgeError),
}

impl Inbound<'_> {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            rt: &self.rt,
            broker: &self.cfg.broker,
            stats: self.stats,
            label: self.label,
        }
    }

    fn setup(&self, conn: &Connection) -> Result<Consumer, Failure> {
        let q = &self.cfg.queue;
        let give_up = || is_set(self.stop);
        link::bounded(&self.rt, self.cfg.broker.connect_timeout, &give_up, async {
            let retry = |e: lapin::Error| Failure::Retry(e.to_string());
            let channel = conn.create_channel().await.map_err(retry)?;
            channel
                .basic_qos(self.cfg.prefetch, BasicQosOptions::default())
                .await
                .map_err(retry)?;
            let mut args = FieldTable::default();
            if let Some(dlx) = &q.dead_letter_exchange {
                args.insert(
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString(dlx.as_str().into()),
                );
            }
            let opts = QueueDeclareOptions {
                passive: q.passive,
                durable: q.durable,
                ..QueueDeclareOptions::default()
            };
            let what = format!("queue {:?}", q.name);
            channel
                .queue_declare(q.name.as_str(), opts, args)
                .await
                .map_err(|e| link::classify(&e, &what))?;
            channel
                .basic_consume(
                    q.name.as_str(),
                    "",
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| link::classify(&e, &what))
        })
    }

    fn run(&self) -> Result<(), BridgeError> {
        let ctx = self.ctx();
        let give_up = || is_set(self.stop);
        let mut reconnect = false;
        loop {
            let Some((link, consumer)) = ctx.connect(reconnect, &give_up, |c| self.setup(c))?
            else {
                return Ok(());
            };
            reconnect = true;
            let end = self.consume(&ctx, link, consumer);
            match end {
                End::Stopped => return Ok(()),
                End::Error(e) => {
                    ctx.log(format_args!("error: {e}"));
                    return Err(e);
                }
                End::Lost(reason) => {
                    self.stats.set_state(State::Disconnected);
                    ctx.log(format_args!("disconnected: {reason}"));
                    if self.cfg.broker.fail_fast {
                        return Err(BridgeError::Broker {
                            url: crate::log::redact(&self.cfg.broker.url),
                            reason: format!("connection lost: {reason} (failing fast)"),
                        });
                    }
                }
            }
        }
    }

    /// Moves deliveries until the connection is lost, the bridge stops or
    /// fails; then closes the connection (the broker requeues whatever
    /// was delivered and not acknowledged).
    fn consume(&self, ctx: &Ctx<'_>, mut link: Link, mut consumer: Consumer) -> End {
        let mut acks = Acks::default();
        let end = loop {
            if is_set(self.stop) {
                break End::Stopped;
            }
            // With acks owed, take only a delivery that is here already;
            // when none is, send the acks before waiting.
            let next = if acks.owed == 0 {
                self.rt.block_on(async {
                    tokio::time::timeout(POLL, poll_fn(|cx| Pin::new(&mut consumer).poll_next(cx)))
                        .await
                })
            } else {
                let ready = {
                    let _runtime = self.rt.enter();
                    Pin::new(&mut consumer).poll_next(&mut Context::from_waker(Waker::noop()))
                };
                match ready {
                    Poll::Ready(next) => Ok(next),
                    Poll::Pending => match self.ack(&mut acks) {
                        Ok(()) => continue,
                        Err(end) => break end,
                    },
                }
            };
            match next {
                Ok(Some(Ok(delivery))) => match self.commit(delivery, &mut acks) {
                    Ok(()) => {
                        if acks.owed >= u64::from(self.cfg.ack_batch) {
                            if let Err(end) = self.ack(&mut acks) {
                                break end;
                            }
                        }
                    }
                    Err(end) => break end,
                },
                Ok(Some(Err(e))) => break End::Lost(e.to_string()),
                Ok(None) => break End::Lost("the broker cancelled the consumer".into()),
                Err(_) => {
                    if let Some(reason) = link.watch(ctx, std::time::Duration::ZERO) {
                        break End::Lost(reason);
                    }
                }
            }
        };
        // What was committed is acked before the connection closes (a
        // stop, an error): only a lost connection leaves it to the
        // broker's redelivery.
        let end = match end {
            End::Lost(reason) => End::Lost(reason),
            end => self.ack(&mut acks).err().unwrap_or(end),
        };
        drop(consumer);
        link.close(&self.rt);
        end
    }

    /// Acknowledges every delivery committed so far, with one `basic.ack`
    /// (`multiple`) on the latest.
    fn ack(&self, acks: &mut Acks) -> Result<(), End> {
        let Some(acker) = acks.latest.take() else {
            return Ok(());
        };
        let owed = std::mem::take(&mut acks.owed);
        match self
            .rt
            .block_on(acker.ack(BasicAckOptions { multiple: true }))
        {
            Ok(_) => {
                self.stats.add_n(Counter::Acked, owed);
                Ok(())
            }
            // The broker redelivers them: duplicates in the local queue.
            Err(e) => Err(End::Lost(format!("ack failed: {e}"))),
        }
    }

    /// Writes one delivery into the local queue; its ack is then owed.
    fn commit(&self, delivery: Delivery, acks: &mut Acks) -> Result<(), End> {
        self.stats.add(Counter::Consumed);
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .map_or("", |s| s.as_str());
        let body: Cow<'_, [u8]> = if self.cfg.envelope {
            Cow::Owned(Envelope::encode(id.as_bytes(), &delivery.data))
        } else {
            Cow::Borrowed(&delivery.data)
        };
        let max = self.tx.max_message_size();
        if body.len() > max {
            self.ack(acks)?;
            return self.too_large(&delivery, id, body.len(), max);
        }
        // A full local queue: the acks owed go out before the send waits
        // (the broker's window then holds only what is not committed).
        let send = |first: bool| {
            if first {
                self.tx.try_send(&body)
            } else {
                self.tx.send_timeout(&body, POLL)
            }
        };
        let mut first = true;
        loop {
            match send(std::mem::take(&mut first)) {
                Ok(()) => break,
                // `Disconnected`: from the `try_send`, which does not wait
                // for receivers (`send_timeout` does, as the sender is set
                // to): the application's receiver is restarting; wait.
                Err(ByteSendError::Timeout | ByteSendError::Full | ByteSendError::Disconnected) => {
                    self.ack(acks)?;
                    if is_set(self.stop) {
                        // Not committed: not acked; the broker keeps it.
                        return Err(End::Stopped);
                    }
                }
                Err(ByteSendError::Closed) => {
                    return Err(End::Error(BridgeError::Config(format!(
                        "local queue {:?} was closed (its stream ended): the message stays in \
                         the broker",
                        self.cfg.local.name
                    ))));
                }
                Err(ByteSendError::TooLarge { len, max }) => {
                    self.ack(acks)?;
                    return self.too_large(&delivery, id, len, max);
                }
                Err(_) => {
                    return Err(End::Error(BridgeError::Corrupted {
                        name: self.cfg.local.name.clone(),
                    }))
                }
            }
        }
        self.stats.add(Counter::Committed);
        acks.latest = Some(delivery.acker);
        acks.owed += 1;
        Ok(())
    }

    /// A delivery larger than the local queue's maximum: dead-lettered if
    /// configured, else requeued in the broker and the bridge stops.
    fn too_large(&self, delivery: &Delivery, id: &str, size: usize, max: usize) -> Result<(), End> {
        let what = format!(
            "message {id:?} of {size} bytes exceeds local queue {:?}'s maximum of {max} bytes",
            self.cfg.local.name
        );
        if self.cfg.dead_letter {
            crate::log::line(
                self.label,
                format_args!("error: {what}: rejected to the queue's dead-letter exchange"),
            );
            let r = self
                .rt
                .block_on(delivery.acker.reject(BasicRejectOptions { requeue: false }));
            return match r {
                Ok(_) => {
                    self.stats.add(Counter::Rejected);
                    Ok(())
                }
                Err(e) => Err(End::Lost(format!("reject failed: {e}"))),
            };
        }
        let _ = self.rt.block_on(delivery.acker.nack(BasicNackOptions {
            multiple: false,
            requeue: true,
        }));
        Err(End::Error(BridgeError::TooLarge {
            size,
            max,
            queue: self.cfg.queue.name.clone(),
            local: self.cfg.local.name.clone(),
        }))
    }
}
