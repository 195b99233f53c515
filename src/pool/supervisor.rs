//! The parent's side of a pool: one supervising thread per pool that owns
//! the workers — it starts them (so `PR_SET_PDEATHSIG`, which follows the
//! *thread* that forked, holds as long as the pool does), feeds their task
//! queues, drains their result queues, notices their deaths (`waitpid`,
//! the exact verdict), fails or retries the task a dead worker was running,
//! and starts replacements. The user's threads only meet it in [`State`],
//! under a mutex: they push jobs and take results.

use super::task::registry;
use super::wire::{
    frame_len, write_frame, Assembly, Doorbell, Frame, WorkerCtl, WorkerSpec, FAILED, OK, PANICKED,
    RESULT_HDR, TASK_HDR, UNREGISTERED, WORKER_ENV,
};
use crate::channel::{ByteQueue, ByteReceiver, ByteSender};
use crate::error::{ByteSendError, PoolError};
use crate::shared::Shared;
use crate::types::Flavor;
use crate::wait::{Deadline, WakeMode, LIVENESS_SLICE};
use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::panic::{self, AssertUnwindSafe};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long the supervisor polls before it sleeps on the doorbell.
const SPIN: Duration = Duration::from_micros(50);
/// How often a busy supervisor looks for dead workers.
const DEATH_CHECK: Duration = Duration::from_millis(10);
/// Replacement workers that may fail to start in a row before the pool
/// gives up (`Broken`).
const MAX_START_FAILURES: u32 = 3;
/// How long a worker may take to become ready before it is killed (and
/// counted as a worker that could not start): a `main` that does not call
/// `init` first may never return.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a worker may take to leave after its queue is closed.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// A pool's settings.
#[derive(Clone, Debug)]
pub(super) struct Config {
    pub workers: usize,
    /// Tasks sent to one worker and not yet answered, at most.
    pub depth: usize,
    /// Slot size of the queues, in bytes.
    pub slot: u64,
    /// Slots per queue.
    pub capacity: u64,
    /// The largest logical message (input or result, with its header).
    pub max_payload: usize,
    /// Retry a task once when its worker dies.
    pub retry: bool,
}

/// One input to run.
pub(super) struct Job {
    /// The batch (a handle, a `map`, an `imap_unordered`) it belongs to.
    pub batch: u64,
    /// Its place in the batch.
    pub index: usize,
    /// The task's wire id, and its name for messages.
    pub id: u64,
    pub name: &'static str,
    /// The encoded input.
    pub payload: Vec<u8>,
    /// Runs left after a worker's death.
    pub retries: u8,
}

/// A result: the encoded output, or why there is none.
pub(super) type Outcome = Result<Vec<u8>, PoolError>;

/// The results of a batch, as the supervisor delivers them.
#[derive(Default)]
pub(super) struct Batch {
    /// Finished inputs not yet taken: (index, outcome).
    pub done: VecDeque<(usize, Outcome)>,
    /// Inputs submitted and not yet finished.
    pub outstanding: usize,
    /// Wake the owner at every result (else: at the last, or an error).
    pub wake_each: bool,
}

/// What the user asked of the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Command {
    Run,
    /// Finish every task submitted, then stop the workers.
    Drain,
    /// Cancel every unfinished task, kill the workers.
    Cancel,
}

/// Where the pool is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Starting,
    Running,
    Stopped,
}

/// What the user's threads and the supervisor share.
pub(super) struct State {
    pub inbox: VecDeque<Job>,
    pub batches: HashMap<u64, Batch>,
    pub next_batch: u64,
    pub command: Command,
    pub phase: Phase,
    /// Why the pool could not start, for `Pool::new`.
    pub start_error: Option<PoolError>,
    /// Why the pool stopped working, if it did.
    pub broken: Option<String>,
    /// The live workers' pids.
    pub pids: Vec<u32>,
    /// Workers started to replace dead ones.
    pub replacements: u64,
    /// Threads waiting on `Core::cond`.
    pub waiters: usize,
    /// Batches whose owner gave up: their jobs not yet sent are dropped.
    pub abandoned: Vec<u64>,
}

/// A pool's shared core.
pub(super) struct Core {
    pub state: Mutex<State>,
    pub cond: Condvar,
    pub bell: Shared<Doorbell>,
    /// Bumped after every change to `State` the supervisor must act on.
    pub changes: AtomicU64,
    /// Bumped (under the mutex) by the supervisor whenever it delivers
    /// results or changes phase: what a waiting thread polls.
    pub delivered: AtomicU64,
    pub config: Config,
}

impl Core {
    pub fn new(config: Config) -> Result<Core, PoolError> {
        Ok(Core {
            state: Mutex::new(State {
                inbox: VecDeque::new(),
                batches: HashMap::new(),
                next_batch: 1,
                command: Command::Run,
                phase: Phase::Starting,
                start_error: None,
                broken: None,
                pids: Vec::new(),
                replacements: 0,
                waiters: 0,
                abandoned: Vec::new(),
            }),
            cond: Condvar::new(),
            bell: Shared::anonymous(Doorbell::default())?,
            changes: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            config,
        })
    }

    /// The state, even if a thread panicked holding it (the state stays
    /// consistent: every update is a few plain stores).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the supervisor that `State` changed (call after unlocking).
    pub fn poke(&self) {
        // Release: the supervisor that sees the new count (Acquire) sees the
        // change, made under the mutex before this.
        self.changes.fetch_add(1, Ordering::Release);
        self.bell.cell.notify(WakeMode::Strict);
    }
}

/// A worker process and its queues, owned by the supervisor.
struct WorkerProc {
    child: Child,
    pid: u32,
    tq: ByteQueue,
    tx: ByteSender,
    rx: ByteReceiver,
    ctl: Shared<WorkerCtl>,
    /// The worker attached its endpoints.
    ready: bool,
    /// Jobs sent (or being sent), in order, without a result yet.
    inflight: VecDeque<(u64, Job)>,
    /// How many of `inflight` are sent whole.
    sent: usize,
    /// Bytes of `inflight[sent]` already sent (a long task, in parts).
    partial: usize,
    next_seq: u64,
    asm: Assembly,
    /// The worker broke the protocol, or did not start in time: kill it.
    bad: bool,
    spawned_at: Instant,
    _rq: ByteQueue,
}

/// The supervising thread's own state.
struct Sup {
    core: Arc<Core>,
    workers: Vec<Option<WorkerProc>>,
    pending: VecDeque<Job>,
    finished: Vec<(u64, usize, Outcome)>,
    seen: u64,
    command: Command,
    start_failures: u32,
    pids_dirty: bool,
    replaced: u64,
    last_check: Instant,
}

/// Starts the supervising thread of `core`.
pub(super) fn start(core: Arc<Core>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("shmring-pool".into())
        .spawn(move || {
            let mut sup = Sup {
                workers: Vec::new(),
                pending: VecDeque::new(),
                finished: Vec::new(),
                seen: 0,
                command: Command::Run,
                start_failures: 0,
                pids_dirty: false,
                replaced: 0,
                last_check: Instant::now(),
                core,
            };
            let r = panic::catch_unwind(AssertUnwindSafe(|| sup.run()));
            let broken = match r {
                Ok(reason) => reason,
                Err(p) => Some(format!(
                    "the supervising thread panicked: {}",
                    super::worker::panic_message(&*p)
                )),
            };
            sup.finish(broken);
        })
}

impl Sup {
    /// Runs until the pool stops; `Some(reason)` if it broke.
    fn run(&mut self) -> Option<String> {
        for slot in 0..self.core.config.workers {
            self.workers.push(None);
            if let Err(e) = self.spawn(slot) {
                self.core.lock().start_error = Some(e);
                return None;
            }
        }
        self.pids_dirty = true;
        loop {
            let mut progress = self.pass();
            progress |= self.sync();
            match self.command {
                Command::Cancel => return None,
                Command::Drain if self.drained() => {
                    self.stop_workers();
                    return None;
                }
                _ => {}
            }
            if self.last_check.elapsed() >= DEATH_CHECK || !progress {
                match self.check_deaths() {
                    Ok(p) => progress |= p,
                    Err(reason) => return reason,
                }
            }
            if !progress {
                self.idle();
            }
        }
    }

    /// One round over the workers: sends what can be sent, takes every
    /// result there is. Whether anything happened.
    fn pass(&mut self) -> bool {
        let mut progress = false;
        for w in self.workers.iter_mut().flatten() {
            if !w.ready && w.ctl.ready.load(Ordering::Acquire) != 0 {
                // Acquire: pairs with the worker's Release store: its
                // endpoints are attached.
                w.ready = true;
                self.start_failures = 0;
                progress = true;
            }
            progress |= drain_results(w, &self.core.config, &mut self.finished);
        }
        progress |= self.dispatch();
        progress
    }

    /// Hands pending jobs to the least loaded ready workers, and sends.
    fn dispatch(&mut self) -> bool {
        let cfg = &self.core.config;
        let mut progress = false;
        for w in self.workers.iter_mut().flatten() {
            progress |= send_more(w, cfg);
        }
        while !self.pending.is_empty() {
            let best = self
                .workers
                .iter_mut()
                .flatten()
                .filter(|w| w.ready && !w.bad && w.sent == w.inflight.len())
                .filter(|w| w.inflight.len() < cfg.depth)
                .min_by_key(|w| w.inflight.len());
            let Some(w) = best else { break };
            let job = self.pending.pop_front().expect("not empty");
            let seq = w.next_seq;
            w.next_seq += 1;
            w.inflight.push_back((seq, job));
            send_more(w, cfg);
            progress = true;
        }
        progress
    }

    /// Exchanges with the user's threads: takes new jobs and commands,
    /// delivers results. Whether anything was exchanged.
    fn sync(&mut self) -> bool {
        // Acquire: pairs with `poke`'s Release: the change is visible.
        let changes = self.core.changes.load(Ordering::Acquire);
        if changes == self.seen && self.finished.is_empty() && !self.pids_dirty {
            return false;
        }
        self.seen = changes;
        let mut st = self.core.lock();
        let mut wake = false;
        let delivered = !self.finished.is_empty();
        for (batch, index, outcome) in self.finished.drain(..) {
            if let Some(b) = st.batches.get_mut(&batch) {
                b.outstanding = b.outstanding.saturating_sub(1);
                wake |= b.wake_each || b.outstanding == 0 || outcome.is_err();
                b.done.push_back((index, outcome));
            }
        }
        self.pending.extend(st.inbox.drain(..));
        if !st.abandoned.is_empty() {
            let gone: HashSet<u64> = st.abandoned.drain(..).collect();
            self.pending.retain(|j| !gone.contains(&j.batch));
        }
        self.command = st.command;
        if self.pids_dirty {
            st.pids = self.workers.iter().flatten().map(|w| w.pid).collect();
            st.replacements = self.replaced;
            if st.phase == Phase::Starting && self.workers.iter().flatten().all(|w| w.ready) {
                st.phase = Phase::Running;
                wake = true;
            }
            self.pids_dirty = st.phase == Phase::Starting;
        }
        if wake || delivered {
            // Relaxed: written under the mutex, which the waiters take to
            // read it (polling reads it without, only as a hint).
            self.core.delivered.fetch_add(1, Ordering::Relaxed);
        }
        if wake && st.waiters > 0 {
            self.core.cond.notify_all();
        }
        true
    }

    /// Whether every task submitted is finished (draining).
    fn drained(&self) -> bool {
        self.pending.is_empty()
            && self.finished.is_empty()
            && self.workers.iter().flatten().all(|w| w.inflight.is_empty())
            && self.core.lock().inbox.is_empty()
    }

    /// Polls for a while, then sleeps on the doorbell until a worker or a
    /// user rings it (at most a liveness slice, so deaths are noticed).
    fn idle(&mut self) {
        let spin_until = Instant::now() + SPIN;
        // Waiting for workers (tasks in flight): spin, they run elsewhere.
        // Waiting for the users' threads (nothing in flight): yield, since
        // on a machine with fewer CPUs than busy threads the thread that
        // will submit the next task may need this one's CPU.
        let in_flight = self
            .workers
            .iter()
            .flatten()
            .any(|w| !w.inflight.is_empty());
        while Instant::now() < spin_until {
            if in_flight {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
            if self.pass() || self.changed() {
                return;
            }
        }
        let cell = &self.core.bell.cell;
        let ticket = cell.prepare(WakeMode::Strict);
        if self.pass() || self.changed() {
            self.core.bell.cell.cancel();
            return;
        }
        let cell = &self.core.bell.cell;
        cell.sleep(ticket, Deadline::after(LIVENESS_SLICE));
        cell.cancel();
    }

    fn changed(&self) -> bool {
        // Acquire: as in `sync`.
        self.core.changes.load(Ordering::Acquire) != self.seen
    }

    /// Reaps dead workers: their running task fails (or is retried), the
    /// tasks queued behind it go back to the front of the line, and a
    /// replacement starts. `Err` if the pool must stop: `Err(Some(why))`
    /// if it broke.
    fn check_deaths(&mut self) -> Result<bool, Option<String>> {
        self.last_check = Instant::now();
        let mut progress = false;
        for slot in 0..self.workers.len() {
            let Some(w) = self.workers[slot].as_mut() else {
                continue;
            };
            if !w.ready && w.spawned_at.elapsed() > START_TIMEOUT {
                w.bad = true;
            }
            if w.bad {
                // SIGKILL a protocol breaker or a worker that never became
                // ready; reaped just below (or on a later round).
                let _ = w.child.kill();
            }
            let status = match w.child.try_wait() {
                Ok(None) => continue,
                Ok(Some(s)) => describe(s),
                Err(e) => format!("its exit status is lost ({e})"),
            };
            let w = self.workers[slot].take().expect("checked");
            progress = true;
            self.pids_dirty = true;
            // Acquire: pairs with the worker's Release store (it is reaped:
            // this is its last word).
            let was_ready = w.ready || w.ctl.ready.load(Ordering::Acquire) != 0;
            self.bury(w, &status);
            if !was_ready {
                self.start_failures += 1;
                let mut st = self.core.lock();
                if st.phase == Phase::Starting {
                    st.start_error = Some(PoolError::WorkerStart(format!(
                        "a worker exited ({status}) before it was ready; \
                         does main call shmring::pool::init(&[...]) first?"
                    )));
                    return Err(None);
                }
                drop(st);
                if self.start_failures >= MAX_START_FAILURES {
                    return Err(Some(format!(
                        "{MAX_START_FAILURES} replacement workers in a row exited before they \
                         were ready (the last: {status})"
                    )));
                }
            }
            if self.command != Command::Cancel {
                if let Err(e) = self.spawn(slot) {
                    return Err(Some(format!("cannot start a replacement worker: {e}")));
                }
                self.replaced += 1;
            }
        }
        Ok(progress)
    }

    /// Settles the tasks of a reaped worker.
    fn bury(&mut self, mut w: WorkerProc, status: &str) {
        // Whatever it finished is in its result queue: take it.
        drain_results(&mut w, &self.core.config, &mut self.finished);
        // Acquire: pairs with the worker's Release store; it is reaped, so
        // this is its last word.
        let started = w.ctl.started.load(Ordering::Acquire);
        let mut back = Vec::new();
        for (seq, mut job) in w.inflight.drain(..) {
            if seq <= started {
                if job.retries > 0 {
                    job.retries -= 1;
                    back.push(job);
                } else {
                    self.finished.push((
                        job.batch,
                        job.index,
                        Err(PoolError::WorkerDied {
                            pid: w.pid,
                            status: status.to_string(),
                        }),
                    ));
                }
            } else {
                // Never started: it goes first to the next worker.
                back.push(job);
            }
        }
        for job in back.into_iter().rev() {
            self.pending.push_front(job);
        }
    }

    /// Starts the worker of `slot`: new queues, a new control block, the
    /// program re-executed with the worker's description.
    fn spawn(&mut self, slot: usize) -> Result<(), PoolError> {
        let cfg = &self.core.config;
        let make = || {
            ByteQueue::builder()
                .flavor(Flavor::Spsc)
                .capacity(cfg.capacity)
                .max_message_size(cfg.slot)
                .create_anonymous()
        };
        let (tq, rq) = (make()?, make()?);
        let ctl = Shared::anonymous(WorkerCtl::default())?;
        let tx = tq.sender()?;
        let rx = rq.receiver()?;
        let fd = |f: Option<i32>| f.expect("anonymous segments have an fd");
        let fds = [
            fd(tq.raw_fd()),
            fd(rq.raw_fd()),
            fd(ctl.raw_fd()),
            fd(self.core.bell.raw_fd()),
        ];
        let parent = std::process::id();
        let spec = WorkerSpec {
            parent,
            slot: slot as u32,
            fds,
            registry: registry().map_or(0, |r| r.fingerprint()),
            max_payload: cfg.max_payload as u64,
        };
        let mut args = std::env::args_os();
        let mut cmd = std::process::Command::new("/proc/self/exe");
        if let Some(a0) = args.next() {
            cmd.arg0(a0);
        }
        cmd.args(args)
            .env(WORKER_ENV, spec.encode())
            .stdin(Stdio::null());
        // SAFETY: the closure runs in the forked child before exec and calls
        // only async-signal-safe system calls (fcntl, prctl, getppid): it
        // allocates nothing and takes no lock.
        unsafe {
            cmd.pre_exec(move || {
                for f in fds {
                    // The memfds are close-on-exec in the parent; only this
                    // child's copies are made inheritable.
                    if libc::fcntl(f, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // SIGKILL when the thread that forked us (the pool's
                // supervisor, alive as long as the pool) goes.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the prctl took effect.
                if libc::getppid() as u32 != parent {
                    return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| PoolError::WorkerStart(format!("cannot start /proc/self/exe: {e}")))?;
        let pid = child.id();
        self.workers[slot] = Some(WorkerProc {
            child,
            pid,
            tq,
            tx,
            rx,
            ctl,
            ready: false,
            inflight: VecDeque::new(),
            sent: 0,
            partial: 0,
            next_seq: 1,
            asm: Assembly::default(),
            bad: false,
            spawned_at: Instant::now(),
            _rq: rq,
        });
        self.pids_dirty = true;
        Ok(())
    }

    /// Closes every task queue and waits for the workers to leave (killing
    /// one that overstays the grace period).
    fn stop_workers(&mut self) {
        let mut children = Vec::new();
        for w in self.workers.iter_mut().filter_map(Option::take) {
            w.tq.close();
            children.push(w.child);
        }
        let deadline = Instant::now() + EXIT_GRACE;
        for mut c in children {
            loop {
                match c.try_wait() {
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Ok(None) => {
                        let _ = c.kill();
                        let _ = c.wait();
                        break;
                    }
                    _ => break,
                }
            }
        }
    }

    /// The end: kills and reaps whatever workers are left, fails every task
    /// not finished (`Cancelled`, or `Broken` if the pool broke), and says
    /// so to every waiter.
    fn finish(&mut self, broken: Option<String>) {
        let cfg = self.core.config.clone();
        for mut w in self.workers.drain(..).flatten() {
            let _ = w.child.kill();
            let _ = w.child.wait();
            // What it finished before it was killed is its result, not a
            // cancellation (it is dead: everything it committed is there).
            drain_results(&mut w, &cfg, &mut self.finished);
            self.pending.extend(w.inflight.drain(..).map(|(_, j)| j));
        }
        let mut st = self.core.lock();
        if let Some(b) = broken {
            st.broken.get_or_insert(b);
        }
        self.pending.extend(st.inbox.drain(..));
        let why = st.broken.clone();
        let fail = || match &why {
            Some(b) => PoolError::Broken(b.clone()),
            None => PoolError::Cancelled,
        };
        let finished: Vec<_> = self.finished.drain(..).collect();
        let cancelled: Vec<_> = self
            .pending
            .drain(..)
            .map(|j| (j.batch, j.index, Err(fail())))
            .collect();
        for (batch, index, outcome) in finished.into_iter().chain(cancelled) {
            if let Some(b) = st.batches.get_mut(&batch) {
                b.outstanding = b.outstanding.saturating_sub(1);
                b.done.push_back((index, outcome));
            }
        }
        st.pids.clear();
        if st.start_error.is_none() && st.phase == Phase::Starting {
            st.start_error = Some(match &why {
                Some(b) => PoolError::Broken(b.clone()),
                None => PoolError::ShutDown,
            });
        }
        st.phase = Phase::Stopped;
        // Relaxed: under the mutex, as in `sync`.
        self.core.delivered.fetch_add(1, Ordering::Relaxed);
        self.core.cond.notify_all();
    }
}

/// Sends what `w` has in flight and not yet sent, as far as its queue has
/// room. Whether anything was sent.
fn send_more(w: &mut WorkerProc, cfg: &Config) -> bool {
    let mut progress = false;
    let slot = w.tx.max_message_size();
    while w.sent < w.inflight.len() && !w.bad {
        let (seq, job) = &w.inflight[w.sent];
        let mut head = [0u8; TASK_HDR];
        head[..8].copy_from_slice(&seq.to_le_bytes());
        head[8..].copy_from_slice(&job.id.to_le_bytes());
        let total = TASK_HDR + job.payload.len();
        debug_assert!(total <= cfg.max_payload);
        let (n, flen) = frame_len(total, w.partial, slot);
        match w.tx.try_loan(flen) {
            Ok(mut loan) => {
                write_frame(&head, &job.payload, w.partial, n, &mut loan);
                loan.commit();
                progress = true;
                w.partial += n;
                if w.partial == total {
                    w.sent += 1;
                    w.partial = 0;
                }
            }
            Err(ByteSendError::Full) => break,
            Err(_) => {
                // Disconnected (the worker died: reaped soon), or a
                // corrupted queue: the worker goes.
                w.bad = true;
                break;
            }
        }
    }
    progress
}

/// Takes every result `w` has sent; whether there was any.
fn drain_results(w: &mut WorkerProc, cfg: &Config, out: &mut Vec<(u64, usize, Outcome)>) -> bool {
    let mut progress = false;
    while !w.bad {
        let Ok(msg) = w.rx.try_recv_ref() else { break };
        progress = true;
        let whole: Vec<u8>;
        let m: &[u8] = match w.asm.take(&msg, cfg.max_payload) {
            Ok(Frame::Whole(m)) => m,
            Ok(Frame::Partial) => continue,
            Ok(Frame::Done(v)) => {
                whole = v;
                &whole
            }
            Err(_) => {
                w.bad = true;
                break;
            }
        };
        if m.len() < RESULT_HDR || w.sent == 0 {
            w.bad = true;
            break;
        }
        let seq = u64::from_le_bytes(m[0..8].try_into().expect("8 bytes"));
        if w.inflight.front().map(|f| f.0) != Some(seq) {
            // Results come back in order: anything else is a broken worker.
            w.bad = true;
            break;
        }
        let (_, job) = w.inflight.pop_front().expect("checked");
        w.sent -= 1;
        let body = &m[RESULT_HDR..];
        let text = || String::from_utf8_lossy(body).into_owned();
        let outcome = match m[8] {
            OK => Ok(body.to_vec()),
            PANICKED => Err(PoolError::Panicked(text())),
            UNREGISTERED => Err(PoolError::Unregistered {
                name: job.name.to_string(),
            }),
            FAILED => Err(PoolError::Worker(text())),
            _ => Err(PoolError::Worker("a result with an unknown status".into())),
        };
        out.push((job.batch, job.index, outcome));
    }
    progress
}

/// How a process ended, in words.
fn describe(s: ExitStatus) -> String {
    if let Some(sig) = s.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str())
            .unwrap_or("?");
        format!("killed by signal {sig} ({name})")
    } else if let Some(c) = s.code() {
        format!("exited with status {c}")
    } else {
        format!("{s}")
    }
}
