//! The outbound bridge: local queue → broker, a message leaving the local
//! queue only once the broker confirmed it.
//!
//! # Structure
//!
//! `window` worker threads each own one [`ByteReceiver`] and hold at most
//! one message, as an in-place read ([`ByteRef`]): the claim keeps the
//! message in the local queue until the worker drops it, after the broker's
//! confirm. One lock serialises claiming, so claims get sequence numbers in
//! the queue's order; a message is published only when every message
//! claimed before it is published on the same connection (its *turn*), so
//! the broker sees claim order, on one channel. Each worker then waits for
//! its own confirm. A supervisor (the calling thread) owns the connection:
//! it connects with backoff, installs a channel as a new *epoch*, and
//! watches it; a lost connection ends the epoch, and every unconfirmed
//! message is republished on the next one, in claim order again, with the
//! same message id.
//!
//! Why threads rather than tasks: a claim borrows its receiver
//! (`recv_ref(&mut self)`) and a receiver is blocking (futex waits), so a
//! claim lives most naturally on a thread of its own; at most
//! [`MAX_WINDOW`](crate::MAX_WINDOW) of them, mostly asleep. The tokio
//! runtime only runs lapin's connection I/O.

use crate::config::OutboundConfig;
use crate::error::BridgeError;
use crate::link::{self, is_set, Ctx, Failure, Link, POLL};
use crate::stats::{Counter, State, Stats};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::publisher_confirm::{Confirmation, PublisherConfirm};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection};
use shmring::{ByteQueue, ByteReceiver, ByteRef, RecvTimeoutError};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// How often a running bridge looks for kept claims left by a killed peer
/// on the same local queue.
const ADOPT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// A publish in progress: the frames are queued for the connection's
/// writer at its first poll; it completes once they are written, with the
/// handle of the broker's confirm.
/// How [`Outbound::deliver`] ended.
enum Delivered {
    /// The broker confirmed it: release it.
    Confirmed,
    /// Unconfirmed, the bridge stopping or failed: leave it in the local
    /// queue ([`Outbound::leave`]).
    Left,
}

type Publish<'f> = Pin<Box<dyn Future<Output = lapin::Result<PublisherConfirm>> + Send + 'f>>;

/// Runs an outbound bridge until `stop` is set (then it finishes the
/// confirms in flight, for at most `drain_timeout`), the local queue's
/// stream ends (closed and drained), or an error.
///
/// On start it first publishes the messages a killed predecessor held (the
/// queue's kept claims), then moves messages in the local queue's order.
/// A message leaves the local queue only once the broker confirmed it; one
/// nacked, or unconfirmed when the connection is lost, is published again
/// (same body, same `message_id`) after reconnecting. Messages still
/// unconfirmed when the bridge stops stay in the local queue.
///
/// # Errors
/// [`BridgeError::Config`], [`BridgeError::Local`] at start;
/// [`BridgeError::Amqp`] when the broker refuses the queue or exchange;
/// [`BridgeError::Unroutable`] when it returns a message (wrong queue
/// name); [`BridgeError::Broker`] for a broker that cannot be reached,
/// only with `fail_fast` (otherwise the bridge retries forever);
/// [`BridgeError::Corrupted`].
///
/// # Examples
/// ```no_run
/// use shmring_bridge::{run_outbound, OutboundConfig, Stats};
/// use std::sync::atomic::AtomicBool;
/// let cfg = OutboundConfig::to_queue("jobs", "hello");
/// let (stats, stop) = (Stats::new(), AtomicBool::new(false));
/// run_outbound(&cfg, &stats, &stop)?; // until `stop` is set elsewhere
/// # Ok::<(), shmring_bridge::BridgeError>(())
/// ```
pub fn run_outbound(
    cfg: &OutboundConfig,
    stats: &Stats,
    stop: &AtomicBool,
) -> Result<(), BridgeError> {
    if cfg.window == 0 || cfg.window > crate::MAX_WINDOW {
        return Err(BridgeError::Config(format!(
            "window {} out of range 1..={}",
            cfg.window,
            crate::MAX_WINDOW
        )));
    }
    link::check_url(&cfg.broker.url)?;
    let queue = crate::local::open(&cfg.local)?;
    let rt = link::runtime()?;
    let target = match (&cfg.exchange[..], &cfg.queue) {
        ("", _) => format!("queue {:?}", cfg.routing_key),
        (ex, _) => format!("exchange {ex:?} key {:?}", cfg.routing_key),
    };
    let label = format!("out {:?} -> {target}", cfg.local.name);
    let out = Outbound {
        cfg,
        stats,
        stop,
        instance: queue.instance(),
        queue,
        rt: rt.handle().clone(),
        label,
        claim: Mutex::new(()),
        queueing: Mutex::new(()),
        st: Mutex::new(St {
            link: None,
            epoch: 0,
            lost: false,
            unsettled: BTreeMap::new(),
            next_seq: 0,
            fatal: None,
            ended: false,
            threads: 1,
        }),
        cv: Condvar::new(),
    };
    let r = std::thread::scope(|s| {
        let out = &out;
        s.spawn(move || out.guarded(|| out.feed(s)));
        out.supervise()
    });
    stats.set_state(State::Stopped);
    out.log(format_args!("stopped ({})", stats.snapshot()));
    drop(rt);
    r
}

/// The AMQP `message_id` of the message at `position` in the local queue
/// of `instance` (`ByteQueue::instance`, `ByteRef::position`): unique
/// across bridge restarts and the queue's re-creation, and the same for
/// every copy of one message, adopted or republished.
fn message_id(instance: u64, position: u64) -> String {
    format!("{instance:016x}-{position}")
}

struct Outbound<'a> {
    cfg: &'a OutboundConfig,
    stats: &'a Stats,
    stop: &'a AtomicBool,
    queue: ByteQueue,
    instance: u64,
    rt: tokio::runtime::Handle,
    label: String,
    /// Held while claiming: claim order = sequence order.
    claim: Mutex<()>,
    /// Held while a publish's frames are queued (its first poll): lapin
    /// takes the publish's delivery tag and queues its frames in two steps,
    /// so two publishes queued at once from two threads can get their tags
    /// in one order and reach the broker in the other, and then each gets
    /// the other's confirm (a nacked message released as confirmed).
    queueing: Mutex<()>,
    st: Mutex<St>,
    /// Signalled on every change of `st`.
    cv: Condvar,
}

struct St {
    /// The current channel and its epoch; `None` while disconnected.
    link: Option<(Channel, u64)>,
    /// Epochs installed so far.
    epoch: u64,
    /// A worker saw the current epoch's connection fail.
    lost: bool,
    /// Claimed, unconfirmed messages by sequence: the epoch each was
    /// published on (`None`: to be published).
    unsettled: BTreeMap<u64, Option<u64>>,
    next_seq: u64,
    /// Why the bridge stops, if it stops on an error.
    fatal: Option<BridgeError>,
    /// The local queue's stream ended (closed and drained).
    ended: bool,
    /// Live feeder and worker threads.
    threads: usize,
}

/// The default exchange's name in messages.
fn show(exchange: &str) -> &str {
    if exchange.is_empty() {
        "(default)"
    } else {
        exchange
    }
}

impl Outbound<'_> {
    fn log(&self, msg: std::fmt::Arguments<'_>) {
        crate::log::line(&self.label, msg);
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            rt: &self.rt,
            broker: &self.cfg.broker,
            stats: self.stats,
            label: &self.label,
        }
    }

    fn lock(&self) -> MutexGuard<'_, St> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wait<'g>(&self, g: MutexGuard<'g, St>) -> MutexGuard<'g, St> {
        self.cv
            .wait_timeout(g, POLL)
            .unwrap_or_else(|p| p.into_inner())
            .0
    }

    fn stopping(&self) -> bool {
        is_set(self.stop)
    }

    /// Whether messages not yet published are to be left, not published.
    fn abandon(&self, st: &St) -> bool {
        self.stopping() || st.fatal.is_some()
    }

    fn set_fatal(&self, e: BridgeError) {
        let mut st = self.lock();
        if st.fatal.is_none() {
            self.log(format_args!("error: {e}"));
            st.fatal = Some(e);
        }
        self.cv.notify_all();
    }

    /// The connection's setup: a confirming channel, the queue declared.
    fn setup(&self, conn: &Connection) -> Result<Channel, Failure> {
        let give_up = || self.abandon(&self.lock());
        link::bounded(&self.rt, self.cfg.broker.connect_timeout, &give_up, async {
            let retry = |e: lapin::Error| Failure::Retry(e.to_string());
            let channel = conn.create_channel().await.map_err(retry)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(retry)?;
            if let Some(q) = &self.cfg.queue {
                let opts = QueueDeclareOptions {
                    passive: q.passive,
                    durable: q.durable,
                    ..QueueDeclareOptions::default()
                };
                let mut args = FieldTable::default();
                if let Some(dlx) = &q.dead_letter_exchange {
                    args.insert(
                        "x-dead-letter-exchange".into(),
                        AMQPValue::LongString(dlx.as_str().into()),
                    );
                }
                channel
                    .queue_declare(q.name.as_str(), opts, args)
                    .await
                    .map_err(|e| link::classify(&e, &format!("queue {:?}", q.name)))?;
            }
            Ok(channel)
        })
    }

    /// The connection's owner: connects, installs epochs, watches them,
    /// until every worker has finished.
    fn supervise(&self) -> Result<(), BridgeError> {
        let ctx = self.ctx();
        let mut reconnect = false;
        let give_up = || {
            let st = self.lock();
            st.threads == 0 || self.abandon(&st)
        };
        loop {
            match ctx.connect(reconnect, &give_up, |c| self.setup(c)) {
                Ok(Some((link, channel))) => {
                    reconnect = true;
                    self.run_epoch(&ctx, link, channel);
                }
                Ok(None) => {}
                Err(e) => self.set_fatal(e),
            }
            // Without a connection: wait for the workers to leave when
            // stopping, else try again.
            let mut st = self.lock();
            if st.threads == 0 {
                return st.fatal.take().map_or(Ok(()), Err);
            }
            if self.abandon(&st) {
                st = self.wait(st);
                if st.threads == 0 {
                    return st.fatal.take().map_or(Ok(()), Err);
                }
            }
        }
    }

    /// Installs `channel` as a new epoch and watches it until it is lost
    /// or every worker has finished.
    fn run_epoch(&self, ctx: &Ctx<'_>, mut link: Link, channel: Channel) {
        {
            let mut st = self.lock();
            st.epoch += 1;
            st.link = Some((channel, st.epoch));
            st.lost = false;
            self.cv.notify_all();
        }
        let mut announced_stop = false;
        let reason = loop {
            if let Some(reason) = link.watch(ctx, POLL) {
                break Some(reason);
            }
            let st = self.lock();
            if st.lost {
                break Some("a publish or confirm failed".to_string());
            }
            if st.threads == 0 {
                break None;
            }
            if self.stopping() && !announced_stop {
                announced_stop = true;
                self.stats.set_state(State::Stopping);
                self.log(format_args!(
                    "stopping: finishing {} message(s) in flight",
                    st.unsettled.len()
                ));
            }
        };
        {
            let mut st = self.lock();
            st.link = None;
            self.cv.notify_all();
        }
        link.close(&self.rt);
        if let Some(reason) = reason {
            self.stats.set_state(State::Disconnected);
            self.log(format_args!("disconnected: {reason}"));
            if self.cfg.broker.fail_fast {
                self.set_fatal(BridgeError::Broker {
                    url: crate::log::redact(&self.cfg.broker.url),
                    reason: format!("connection lost: {reason} (failing fast)"),
                });
            }
        }
    }

    /// The feeder thread: adopts a dead predecessor's kept messages, then
    /// starts the workers.
    fn feed<'s>(&'s self, s: &'s std::thread::Scope<'s, '_>) {
        self.adopt();
        for _ in 0..self.cfg.window {
            if self.abandon(&self.lock()) {
                break;
            }
            let rx = self.queue.receiver().and_then(|mut rx| {
                rx.set_wait_for_senders(true);
                rx.keep_claims()?;
                Ok(rx)
            });
            match rx {
                Ok(rx) => {
                    self.lock().threads += 1;
                    s.spawn(move || self.guarded(|| self.work(rx)));
                }
                Err(source) => {
                    self.set_fatal(BridgeError::Local {
                        name: self.cfg.local.name.clone(),
                        source: Box::new(source),
                    });
                    break;
                }
            }
        }
        // A peer bridge on the same local queue that is killed leaves kept
        // claims that only an adopter publishes, and the queue stalls at
        // them after one lap: look for them now and then, not only at
        // start.
        loop {
            let until = Instant::now() + ADOPT_EVERY;
            let mut st = self.lock();
            while Instant::now() < until && !self.abandon(&st) && !st.ended {
                st = self.wait(st);
            }
            if self.abandon(&st) || st.ended {
                return;
            }
            drop(st);
            self.adopt();
        }
    }

    /// Runs a feeder's or worker's body, then counts the thread out. A
    /// panic in it (the core's, over a scribbled segment) stops the bridge
    /// as corrupted: without this the supervisor would wait forever for
    /// the thread, and the stop flag would go unheeded.
    fn guarded(&self, body: impl FnOnce()) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        if r.is_err() {
            self.set_fatal(BridgeError::Corrupted {
                name: self.cfg.local.name.clone(),
            });
        }
        self.exit_thread();
    }

    fn exit_thread(&self) {
        let mut st = self.lock();
        st.threads -= 1;
        self.cv.notify_all();
    }

    /// Publishes the kept claims of a killed predecessor, each confirmed
    /// before it is released.
    fn adopt(&self) {
        loop {
            let Some((channel, epoch)) = self.wait_link() else {
                return;
            };
            let r = self.queue.adopt_kept(|position, body| {
                let id = message_id(self.instance, position);
                match self.publish_confirmed(&channel, &id, body) {
                    Ok(()) => {
                        self.stats.add(Counter::Republished);
                        Ok(())
                    }
                    Err(f) => Err(f),
                }
            });
            match r {
                Ok(0) => return,
                Ok(n) => {
                    self.log(format_args!(
                        "published {n} message(s) held by a stopped bridge"
                    ));
                    return;
                }
                Err(Failure::Fatal(e)) => return self.set_fatal(e),
                Err(Failure::Retry(_)) => self.lost(epoch),
            }
        }
    }

    /// One publish, awaited to its confirm (for adopted messages).
    fn publish_confirmed(&self, channel: &Channel, id: &str, body: &[u8]) -> Result<(), Failure> {
        self.stats.add(Counter::Published);
        let (publish, _) = self.queue(self.publish(channel.clone(), id, body));
        let mut confirm = std::pin::pin!(async { publish.await?.await });
        // As in `deliver`: when stopping, the confirm gets `drain_timeout`;
        // then the message stays kept, for the next bridge.
        let mut drain_until: Option<Instant> = None;
        let confirm = loop {
            let r = self
                .rt
                .block_on(async { tokio::time::timeout(POLL, confirm.as_mut()).await });
            match r {
                Ok(r) => break r,
                Err(_) if self.abandon(&self.lock()) => {
                    let until =
                        *drain_until.get_or_insert_with(|| Instant::now() + self.cfg.drain_timeout);
                    if Instant::now() >= until {
                        self.log(format_args!(
                            "message {id} unconfirmed after {} ms of stopping: it stays kept",
                            self.cfg.drain_timeout.as_millis()
                        ));
                        return Err(Failure::Retry("stopping".into()));
                    }
                }
                Err(_) => {}
            }
        };
        match confirm {
            Ok(Confirmation::Ack(None)) | Ok(Confirmation::NotRequested) => {
                self.stats.add(Counter::Confirmed);
                Ok(())
            }
            Ok(Confirmation::Ack(Some(ret))) => {
                self.stats.add(Counter::Returned);
                Err(Failure::Fatal(self.unroutable(&ret)))
            }
            Ok(Confirmation::Nack(_)) => {
                self.stats.add(Counter::Nacked);
                Err(Failure::Retry("nacked".into()))
            }
            Err(e) => Err(link::classify(&e, &self.target_what())),
        }
    }

    fn properties(&self, id: &str) -> BasicProperties {
        let p = BasicProperties::default().with_message_id(id.into());
        if self.cfg.persistent {
            p.with_delivery_mode(2)
        } else {
            p
        }
    }

    fn target_what(&self) -> String {
        if self.cfg.exchange.is_empty() {
            format!("queue {:?}", self.cfg.routing_key)
        } else {
            format!("exchange {:?}", self.cfg.exchange)
        }
    }

    fn unroutable(&self, ret: &lapin::message::BasicReturnMessage) -> BridgeError {
        BridgeError::Unroutable {
            exchange: self.cfg.exchange.clone(),
            routing_key: self.cfg.routing_key.clone(),
            reply: format!("{} {}", ret.reply_code, ret.reply_text),
            local: self.cfg.local.name.clone(),
        }
    }

    /// Waits for a live channel; `None` when the bridge stops.
    fn wait_link(&self) -> Option<(Channel, u64)> {
        let mut st = self.lock();
        loop {
            if self.abandon(&st) {
                return None;
            }
            if let (Some(link), false) = (&st.link, st.lost) {
                return Some(link.clone());
            }
            st = self.wait(st);
        }
    }

    /// Ends epoch `epoch` (if current): the supervisor reconnects.
    fn lost(&self, epoch: u64) {
        let mut st = self.lock();
        if st.link.as_ref().is_some_and(|l| l.1 == epoch) {
            st.lost = true;
        }
        self.cv.notify_all();
    }

    /// A worker: claims, publishes and settles one message at a time.
    fn work(&self, mut rx: ByteReceiver) {
        loop {
            let guard = self.claim.lock().unwrap_or_else(|p| p.into_inner());
            {
                let st = self.lock();
                if self.abandon(&st) || st.ended {
                    return;
                }
                // Claim only with a connection: a claim made in an outage
                // would only wait (and be handed back on stop).
                if st.link.is_none() || st.lost {
                    drop(guard);
                    drop(self.wait(st));
                    continue;
                }
            }
            let msg = match rx.recv_ref_timeout(POLL) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => continue,
                Err(RecvTimeoutError::Closed) => {
                    let mut st = self.lock();
                    if !st.ended {
                        st.ended = true;
                        self.log(format_args!(
                            "the local queue's stream ended: finishing the messages in flight"
                        ));
                    }
                    self.cv.notify_all();
                    return;
                }
                Err(RecvTimeoutError::Corrupted) => {
                    return self.set_fatal(BridgeError::Corrupted {
                        name: self.cfg.local.name.clone(),
                    });
                }
            };
            let seq = {
                let mut st = self.lock();
                let seq = st.next_seq;
                st.next_seq += 1;
                st.unsettled.insert(seq, None);
                seq
            };
            let id = message_id(self.instance, msg.position());
            let started = self.start(seq, &id, &msg);
            drop(guard);
            let settled = match self.deliver(seq, &id, &msg, started) {
                Delivered::Confirmed => {
                    drop(msg); // it leaves the local queue for good
                    self.settle(seq);
                    false
                }
                Delivered::Left => self.leave(seq, msg),
            };
            if settled {
                // A message it could not hand back is still claimed
                // through `rx`: keep the receiver (and so the claim) until
                // this process exits; its death makes the claim kept, and
                // the next bridge publishes it first.
                std::mem::forget(rx);
                return;
            }
        }
    }

    /// `body`'s publish, made by the lapin call that queues its frames.
    fn publish<'f>(&'f self, channel: Channel, id: &str, body: &'f [u8]) -> Publish<'f> {
        let properties = self.properties(id);
        Box::pin(async move {
            channel
                .basic_publish(
                    self.cfg.exchange.as_str(),
                    self.cfg.routing_key.as_str(),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    body,
                    properties,
                )
                .await
        })
    }

    /// Polls `publish` once, under the queueing lock: its frames are
    /// queued, with its delivery tag, before any other publish's.
    fn queue<'f>(&self, mut publish: Publish<'f>) -> (Publish<'f>, bool) {
        let _queueing = self.queueing.lock().unwrap_or_else(|p| p.into_inner());
        let _runtime = self.rt.enter();
        match publish
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Pending => (publish, true),
            Poll::Ready(r) => {
                let ok = r.is_ok();
                (Box::pin(std::future::ready(r)), ok)
            }
        }
    }

    /// Starts the first publish of the message just claimed as `seq`,
    /// called under the claim lock: the publish is polled once, which
    /// queues its frames for the connection's writer (lapin queues them in
    /// the first poll, before its first await), so the broker gets messages
    /// in claim order while the writes and confirms of several are in
    /// flight at once. Without this, each publish waited for its write
    /// before the next could start, and the bridge moved one message per
    /// thread hand-off. `None`: not now (no live link, or an earlier
    /// message waits to be republished, or the bridge is stopping);
    /// [`deliver`](Self::deliver) then waits for its turn.
    fn start<'f>(&'f self, seq: u64, id: &str, body: &'f [u8]) -> Option<(Publish<'f>, u64)> {
        let (channel, epoch) = {
            let st = self.lock();
            if self.abandon(&st) {
                return None;
            }
            match (&st.link, st.lost) {
                (Some((channel, epoch)), false)
                    if st.unsettled.range(..seq).all(|(_, e)| *e == Some(*epoch)) =>
                {
                    (channel.clone(), *epoch)
                }
                _ => return None,
            }
        };
        // Queued (or written already): marked; refused: `deliver` handles
        // the error as for any publish.
        let (publish, queued) = self.queue(self.publish(channel, id, body));
        if queued {
            self.mark(seq, Some(epoch));
        }
        Some((publish, epoch))
    }

    /// Waits for `seq`'s turn: a live epoch on which every earlier
    /// unsettled message is published. `None`: leave it (stopping).
    fn turn(&self, seq: u64) -> Option<(Channel, u64)> {
        let mut st = self.lock();
        loop {
            if self.abandon(&st) {
                return None;
            }
            if let (Some((channel, epoch)), false) = (&st.link, st.lost) {
                let epoch = *epoch;
                if st.unsettled.range(..seq).all(|(_, e)| *e == Some(epoch)) {
                    return Some((channel.clone(), epoch));
                }
            }
            st = self.wait(st);
        }
    }

    fn mark(&self, seq: u64, published_on: Option<u64>) {
        let mut st = self.lock();
        st.unsettled.insert(seq, published_on);
        self.cv.notify_all();
    }

    fn settle(&self, seq: u64) {
        let mut st = self.lock();
        st.unsettled.remove(&seq);
        self.cv.notify_all();
    }

    /// Publishes `msg` (its first publish `started` already, where it
    /// could be) until the broker confirms it, or until the bridge stops or
    /// fails.
    #[must_use]
    fn deliver<'f>(
        &'f self,
        seq: u64,
        id: &str,
        msg: &'f [u8],
        mut started: Option<(Publish<'f>, u64)>,
    ) -> Delivered {
        let mut tries = 0u64;
        let mut drain_until: Option<Instant> = None;
        loop {
            let sent = match started.take() {
                Some((publish, epoch)) => (self.rt.block_on(publish), epoch),
                None => {
                    let Some((channel, epoch)) = self.turn(seq) else {
                        return Delivered::Left;
                    };
                    let (publish, _) = self.queue(self.publish(channel, id, msg));
                    (self.rt.block_on(publish), epoch)
                }
            };
            let (sent, epoch) = sent;
            tries += 1;
            self.stats.add(Counter::Published);
            if tries > 1 {
                self.stats.add(Counter::Republished);
            }
            let confirm = match sent {
                Ok(confirm) => {
                    self.mark(seq, Some(epoch));
                    confirm
                }
                Err(e) => {
                    self.failed(epoch, &e);
                    continue;
                }
            };
            let mut confirm = Box::pin(confirm);
            let outcome = loop {
                let r = self
                    .rt
                    .block_on(async { tokio::time::timeout(POLL, confirm.as_mut()).await });
                match r {
                    Ok(r) => break Some(r),
                    Err(_) if self.abandon(&self.lock()) => {
                        let until = *drain_until
                            .get_or_insert_with(|| Instant::now() + self.cfg.drain_timeout);
                        if Instant::now() >= until {
                            break None;
                        }
                    }
                    Err(_) => {}
                }
            };
            match outcome {
                None => {
                    self.log(format_args!(
                        "message {id} unconfirmed after {} ms of stopping",
                        self.cfg.drain_timeout.as_millis()
                    ));
                    return Delivered::Left;
                }
                Some(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => {
                    self.stats.add(Counter::Confirmed);
                    return Delivered::Confirmed;
                }
                Some(Ok(Confirmation::Ack(Some(ret)))) => {
                    self.stats.add(Counter::Returned);
                    self.set_fatal(self.unroutable(&ret));
                    return Delivered::Left;
                }
                Some(Ok(Confirmation::Nack(_))) => {
                    self.stats.add(Counter::Nacked);
                    self.log(format_args!(
                        "message {id} nacked by the broker: republishing"
                    ));
                    self.mark(seq, None);
                }
                Some(Err(e)) => {
                    self.mark(seq, None);
                    self.failed(epoch, &e);
                }
            }
        }
    }

    /// A publish or confirm failed: a refusal stops the bridge, anything
    /// else ends the epoch.
    fn failed(&self, epoch: u64, e: &lapin::Error) {
        let what = format!(
            "{} (exchange {})",
            self.target_what(),
            show(&self.cfg.exchange)
        );
        match link::classify(e, &what) {
            Failure::Fatal(e) => self.set_fatal(e),
            Failure::Retry(_) => self.lost(epoch),
        }
    }

    /// Leaves an unconfirmed message in the local queue. With
    /// `keep_on_stop` it stays claimed: `true` tells the worker to keep its
    /// receiver until this process exits, whose death makes the claim kept
    /// for the next bridge (same position, same id, first). Otherwise it is
    /// sent back into the queue (behind the messages queued since: the core
    /// keeps a receiver's claims only when its process dies); if that send
    /// fails within the drain timeout (the queue full), it stays claimed
    /// the same way. (A library user whose process goes on finds the queue
    /// stalled at that slot until it exits.)
    #[must_use]
    fn leave(&self, seq: u64, msg: ByteRef<'_>) -> bool {
        self.settle(seq);
        if self.cfg.keep_on_stop {
            std::mem::forget(msg);
            return true;
        }
        let sent = self
            .queue
            .sender()
            .map(|tx| tx.send_timeout(&msg, self.cfg.drain_timeout));
        let e = match sent {
            Ok(Ok(())) => {
                drop(msg);
                return false;
            }
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        self.log(format_args!(
            "cannot put an unconfirmed message back into the local queue ({e}): it stays \
             claimed, kept for the next bridge once this process exits"
        ));
        std::mem::forget(msg);
        true
    }
}
