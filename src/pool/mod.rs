//! A process pool: Python's `ProcessPoolExecutor`, with worker processes fed
//! by shmring queues (cargo feature `serde`).
//!
//! ```no_run
//! use shmring::pool::{self, Task};
//! use shmring::Pool;
//!
//! fn worker(x: i64) -> i64 {
//!     x * x
//! }
//! static WORKER: Task<i64, i64> = Task::new("worker", worker);
//!
//! fn main() -> Result<(), shmring::PoolError> {
//!     pool::init(&[&WORKER]); // first thing: a worker process runs here
//!     let pool = Pool::new()?;
//!     println!("{:?}", pool.map(&WORKER, [1, 2, 3, 4, 5])?); // [1, 4, 9, 16, 25]
//!     Ok(())
//! }
//! ```
//!
//! **How workers start.** [`Pool::new`] re-executes this program
//! (`/proc/self/exe`, with the same arguments) once per worker, with an
//! environment variable that describes the worker; [`init`], called first in
//! `main`, sees it and runs the worker instead of returning. Nothing is ever
//! forked without an exec, so a pool may be made from a program with many
//! threads (an async runtime, a test harness). Tasks are registered by name
//! in `init` ([`Task`]); a task that is not is refused with
//! [`PoolError::Unregistered`].
//!
//! **What a user can count on.**
//! - [`Pool::map`] returns results in input order; [`Pool::imap_unordered`]
//!   yields each result once, as it is ready; [`Pool::submit`] gives a
//!   [`TaskHandle`] to wait on or poll.
//! - A task that panics fails with [`PoolError::Panicked`] (the message);
//!   its worker goes on.
//! - A worker that dies (`kill -9`, a crash, `exit`) fails exactly the task
//!   it was running with [`PoolError::WorkerDied`] (or runs it once more,
//!   with [`PoolBuilder::retry_once`]); the tasks queued behind it go to
//!   other workers, and a replacement starts.
//! - [`Pool::shutdown`]`(true)` (and dropping the pool) finishes every
//!   submitted task first; `shutdown(false)` cancels what is not finished
//!   ([`PoolError::Cancelled`]) and kills the workers at once.
//! - Dropping the pool reaps every worker; workers also die with their
//!   parent (`PR_SET_PDEATHSIG`), even one killed by `kill -9`. All the
//!   pool's shared memory is anonymous (memfds): nothing is ever created in
//!   `/dev/shm`.
//! - Inputs and results of any size up to [`PoolBuilder::max_payload`]
//!   (long ones travel in several slots); beyond it, [`PoolError::TooLarge`].
//!
//! The design (per-worker queues, and why) is in `docs/design.md`,
//! "Process pool".

mod supervisor;
mod task;
mod wire;
mod worker;

pub use task::{init, Registered, Task};

use crate::error::PoolError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use supervisor::{Batch, Command, Config, Core, Job, Outcome, Phase, State};

/// Default slot size of a worker's queues (larger messages take several).
const DEFAULT_SLOT: u64 = 4096;
/// Default number of tasks sent ahead to one worker.
const DEFAULT_DEPTH: usize = 32;
/// Default largest input or result.
const DEFAULT_MAX_PAYLOAD: usize = 1 << 30;

/// A pool of worker processes that run registered [`Task`]s.
///
/// `Pool` is `Send + Sync`: share it between threads by reference or in an
/// `Arc`. See the [module docs](self) for the whole story.
pub struct Pool {
    core: Arc<Core>,
    thread: Option<JoinHandle<()>>,
}

impl fmt::Debug for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.core.config.workers)
            .field("pids", &self.worker_pids())
            .finish()
    }
}

/// Configures a [`Pool`].
#[derive(Clone, Debug)]
pub struct PoolBuilder {
    workers: Option<usize>,
    depth: usize,
    slot: u64,
    max_payload: usize,
    retry: bool,
}

impl Default for PoolBuilder {
    fn default() -> Self {
        PoolBuilder {
            workers: None,
            depth: DEFAULT_DEPTH,
            slot: DEFAULT_SLOT,
            max_payload: DEFAULT_MAX_PAYLOAD,
            retry: false,
        }
    }
}

impl PoolBuilder {
    /// How many worker processes (default: the CPUs this process may use,
    /// [`std::thread::available_parallelism`]). 0 is refused by
    /// [`build`](Self::build) with [`PoolError::NoWorkers`].
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = Some(n);
        self
    }

    /// How many tasks the pool sends ahead to one worker (default 32, at
    /// least 1). More keeps a worker busy while the parent is slow to feed
    /// it; fewer balances long tasks better (a task waits behind at most
    /// `depth - 1` others on its worker).
    pub fn queue_depth(mut self, depth: usize) -> Self {
        self.depth = depth.max(1);
        self
    }

    /// The slot size of the workers' queues in bytes (default 4096, at
    /// least 256): inputs and results that fit travel in one slot, read in
    /// place; longer ones in several.
    pub fn slot_size(mut self, bytes: u64) -> Self {
        self.slot = bytes.max(256);
        self
    }

    /// The largest encoded input or result, in bytes (default 1 GiB). A
    /// larger input is refused ([`PoolError::TooLarge`]); a larger result
    /// fails its task ([`PoolError::Worker`]).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Run a task once more (on another worker) when the worker running it
    /// dies, instead of failing it with [`PoolError::WorkerDied`] at once
    /// (default: no). A task whose second run also loses its worker fails.
    pub fn retry_once(mut self, retry: bool) -> Self {
        self.retry = retry;
        self
    }

    /// Starts the workers and waits until each is ready.
    ///
    /// # Errors
    /// `NoWorkers` (0 workers), `NotInitialized` ([`init`] was not called,
    /// or this process is a worker whose `main` does not call it),
    /// `WorkerStart` (a worker could not start or exited first),
    /// `Segment` (the shared memory could not be made).
    pub fn build(self) -> Result<Pool, PoolError> {
        let workers = match self.workers {
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        if workers == 0 {
            return Err(PoolError::NoWorkers);
        }
        if task::registry().is_none() || task::in_unstarted_worker() {
            return Err(PoolError::NotInitialized);
        }
        let config = Config {
            workers,
            depth: self.depth,
            slot: self.slot,
            capacity: (self.depth as u64 + 1).max(8),
            max_payload: self.max_payload.max(64),
            retry: self.retry,
        };
        let core = Arc::new(Core::new(config)?);
        let thread = supervisor::start(core.clone())
            .map_err(|e| PoolError::WorkerStart(format!("cannot start the pool's thread: {e}")))?;
        let pool = Pool {
            core,
            thread: Some(thread),
        };
        let mut st = pool.core.lock();
        loop {
            if let Some(e) = st.start_error.take() {
                drop(st);
                // `pool` drops here: the thread has stopped or stops now.
                return Err(e);
            }
            if st.phase != Phase::Starting {
                break;
            }
            st = pool.wait(st, None);
        }
        drop(st);
        Ok(pool)
    }
}

impl Pool {
    /// A pool with one worker per CPU this process may use.
    ///
    /// # Errors
    /// As for [`PoolBuilder::build`].
    pub fn new() -> Result<Pool, PoolError> {
        PoolBuilder::default().build()
    }

    /// A pool of `n` workers.
    ///
    /// # Errors
    /// As for [`PoolBuilder::build`]; `NoWorkers` for 0.
    pub fn with_workers(n: usize) -> Result<Pool, PoolError> {
        PoolBuilder::default().workers(n).build()
    }

    /// A builder: workers, queue depth, slot size, maximum payload, retry.
    pub fn builder() -> PoolBuilder {
        PoolBuilder::default()
    }

    /// The number of worker processes the pool keeps.
    pub fn workers(&self) -> usize {
        self.core.config.workers
    }

    /// The process ids of the live workers (a snapshot; replacements
    /// appear as they start).
    pub fn worker_pids(&self) -> Vec<u32> {
        self.core.lock().pids.clone()
    }

    /// How many workers were started to replace dead ones.
    pub fn replacements(&self) -> u64 {
        self.core.lock().replacements
    }

    /// Runs `task` on `input` in a worker; the handle waits for the result.
    ///
    /// # Errors
    /// `Unregistered`, `Encode`, `TooLarge`, `ShutDown`, `Broken`; the
    /// task's own failure comes from the handle.
    pub fn submit<I, O>(&self, task: &Task<I, O>, input: I) -> Result<TaskHandle<O>, PoolError>
    where
        I: Serialize,
        O: DeserializeOwned,
    {
        let spec = self.check(task)?;
        let job = spec.job(0, 0, &input, self.core.config.max_payload)?;
        let batch = self.enqueue(vec![job], true, 1)?;
        Ok(TaskHandle {
            core: self.core.clone(),
            batch,
            taken: false,
            _out: PhantomData,
        })
    }

    /// Runs `task` on every input, in the workers; returns the results in
    /// input order (Python's `executor.map`).
    ///
    /// # Errors
    /// `Unregistered`, `Encode`, `TooLarge`, `ShutDown`, `Broken`; and the
    /// first task failure seen (`Panicked`, `WorkerDied`, `Worker`,
    /// `Decode`, `Cancelled`): then the inputs not yet started are dropped.
    pub fn map<I, O>(
        &self,
        task: &Task<I, O>,
        inputs: impl IntoIterator<Item = I>,
    ) -> Result<Vec<O>, PoolError>
    where
        I: Serialize,
        O: DeserializeOwned,
    {
        let spec = self.check(task)?;
        let max = self.core.config.max_payload;
        let jobs = inputs
            .into_iter()
            .enumerate()
            .map(|(i, x)| spec.job(0, i, &x, max))
            .collect::<Result<Vec<Job>, PoolError>>()?;
        let n = jobs.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        let batch = self.enqueue(jobs, false, n)?;
        let guard = BatchGuard {
            core: &self.core,
            batch,
        };
        let mut out: Vec<Option<O>> = (0..n).map(|_| None).collect();
        let mut left = n;
        let mut st = self.core.lock();
        while left > 0 {
            let b = st.batches.get_mut(&batch).expect("owned by this call");
            let mut fail = None;
            while let Some((i, r)) = b.done.pop_front() {
                match r {
                    Ok(bytes) if fail.is_none() => match postcard::from_bytes(&bytes) {
                        Ok(v) => {
                            out[i] = Some(v);
                            left -= 1;
                        }
                        Err(e) => fail = Some(PoolError::Decode(e)),
                    },
                    Ok(_) => {}
                    Err(e) => {
                        fail.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = fail {
                drop(st);
                drop(guard); // drops the inputs not yet started
                return Err(e);
            }
            if left > 0 {
                st = self.wait(st, None);
            }
        }
        drop(st);
        drop(guard);
        Ok(out
            .into_iter()
            .map(|o| o.expect("every index once"))
            .collect())
    }

    /// Runs `task` on every input, in the workers, and yields each result
    /// as soon as it is ready (any order; each exactly once). Inputs are
    /// taken from the iterator as the workers need them, so it may be long
    /// or endless. Dropping the iterator drops the inputs not yet started.
    ///
    /// Errors of the whole call (`Unregistered`, `Encode`, `TooLarge`,
    /// `ShutDown`) come as an item, and end the iteration.
    pub fn imap_unordered<I, O, It>(
        &self,
        task: &Task<I, O>,
        inputs: It,
    ) -> ImapUnordered<'_, I, O, It::IntoIter>
    where
        I: Serialize,
        O: DeserializeOwned,
        It: IntoIterator<Item = I>,
    {
        let mut it = ImapUnordered {
            pool: self,
            spec: None,
            inputs: inputs.into_iter(),
            batch: 0,
            next_index: 0,
            outstanding: 0,
            window: self.core.config.workers * (self.core.config.depth + 1),
            error: None,
            exhausted: false,
            ready: std::collections::VecDeque::new(),
            _out: PhantomData,
        };
        match self.check(task) {
            Ok(spec) => match self.enqueue(Vec::new(), true, 0) {
                Ok(batch) => {
                    it.batch = batch;
                    it.spec = Some(spec);
                }
                Err(e) => it.error = Some(e),
            },
            Err(e) => it.error = Some(e),
        }
        it
    }

    /// Stops the pool. With `wait`, every task submitted is finished first
    /// (its handle gets its result) and the workers leave when their queues
    /// are closed; without, every task not finished is cancelled (its
    /// handle gets [`PoolError::Cancelled`]) and the workers are killed at
    /// once (a task that never returns cannot hold it up). Either way the
    /// workers are reaped before it returns, and later submissions get
    /// [`PoolError::ShutDown`]. Calling it again does nothing more.
    pub fn shutdown(&self, wait: bool) {
        {
            let mut st = self.core.lock();
            if st.command == Command::Run || (!wait && st.command == Command::Drain) {
                st.command = if wait {
                    Command::Drain
                } else {
                    Command::Cancel
                };
            }
        }
        self.core.poke();
        let mut st = self.core.lock();
        while st.phase != Phase::Stopped {
            st = self.wait(st, None);
        }
    }

    /// The registration of `task`, checked.
    fn check<I, O>(&self, task: &Task<I, O>) -> Result<JobSpec, PoolError> {
        let id = task.id();
        match task::registry().and_then(|r| r.get(id)) {
            Some(t) if t.name() == task.name() => Ok(JobSpec {
                id,
                name: task.name(),
                retries: u8::from(self.core.config.retry),
            }),
            _ => Err(PoolError::Unregistered {
                name: task.name().to_string(),
            }),
        }
    }

    /// Makes a batch of `outstanding` inputs with `jobs` (their batch set
    /// here) and hands the jobs to the supervisor.
    fn enqueue(
        &self,
        mut jobs: Vec<Job>,
        wake_each: bool,
        outstanding: usize,
    ) -> Result<u64, PoolError> {
        let mut st = self.core.lock();
        accepting(&st)?;
        let batch = st.next_batch;
        st.next_batch += 1;
        st.batches.insert(
            batch,
            Batch {
                wake_each,
                outstanding,
                ..Batch::default()
            },
        );
        for j in &mut jobs {
            j.batch = batch;
        }
        let any = !jobs.is_empty();
        st.inbox.extend(jobs);
        drop(st);
        if any {
            self.core.poke();
        }
        Ok(batch)
    }

    /// Waits on the pool's condition (at most until `deadline`).
    fn wait<'a>(
        &'a self,
        st: MutexGuard<'a, State>,
        deadline: Option<Instant>,
    ) -> MutexGuard<'a, State> {
        wait_on(&self.core, st, deadline)
    }
}

/// How long a waiting thread polls for a delivery before it sleeps: a
/// round trip that finishes meanwhile costs no wake-up.
const WAIT_SPIN: Duration = Duration::from_micros(50);

/// Waits for the supervisor's next delivery (or a spurious wake-up, or
/// `deadline`): polls for [`WAIT_SPIN`] first, then sleeps on the condition.
/// The caller re-checks what it waits for either way.
fn wait_on<'a>(
    core: &'a Core,
    st: MutexGuard<'a, State>,
    deadline: Option<Instant>,
) -> MutexGuard<'a, State> {
    // Relaxed: read under the mutex, which orders it with the supervisor's
    // update (also made under the mutex).
    let seen = core.delivered.load(Ordering::Relaxed);
    drop(st);
    let start = Instant::now();
    let until = deadline.map_or(start + WAIT_SPIN, |d| d.min(start + WAIT_SPIN));
    while Instant::now() < until {
        // Relaxed: only a hint to stop polling; the caller re-checks under
        // the mutex.
        if core.delivered.load(Ordering::Relaxed) != seen {
            return core.lock();
        }
        // Yield, not spin: on a machine with fewer CPUs than busy
        // threads, the thread we wait for may need this one's CPU.
        std::thread::yield_now();
    }
    let mut st = core.lock();
    // Relaxed: under the mutex (see above). A delivery after this point
    // notifies the condition, since we are counted in `waiters` first.
    if core.delivered.load(Ordering::Relaxed) != seen {
        return st;
    }
    st.waiters += 1;
    let mut st = match deadline {
        None => core.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            core.cond
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0
        }
    };
    st.waiters -= 1;
    st
}

/// Whether new tasks are taken.
fn accepting(st: &State) -> Result<(), PoolError> {
    if let Some(b) = &st.broken {
        return Err(PoolError::Broken(b.clone()));
    }
    if st.command != Command::Run || st.phase == Phase::Stopped {
        return Err(PoolError::ShutDown);
    }
    Ok(())
}

impl Drop for Pool {
    /// Shuts down waiting for every submitted task (`shutdown(true)`), and
    /// reaps the workers. To drop without waiting for tasks that may never
    /// return, call `shutdown(false)` first.
    fn drop(&mut self) {
        self.shutdown(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A checked task, ready to make jobs.
#[derive(Clone, Copy)]
struct JobSpec {
    id: u64,
    name: &'static str,
    retries: u8,
}

impl JobSpec {
    fn job<I: Serialize>(
        &self,
        batch: u64,
        index: usize,
        input: &I,
        max: usize,
    ) -> Result<Job, PoolError> {
        let mut payload = Vec::new();
        wire::encode_into(input, &mut payload).map_err(PoolError::Encode)?;
        if payload.len() + wire::TASK_HDR > max {
            return Err(PoolError::TooLarge {
                len: payload.len(),
                max: max - wire::TASK_HDR,
            });
        }
        Ok(Job {
            batch,
            index,
            id: self.id,
            name: self.name,
            payload,
            retries: self.retries,
        })
    }
}

/// Removes a batch when its owner is done with it; its inputs not yet
/// started are dropped.
struct BatchGuard<'a> {
    core: &'a Core,
    batch: u64,
}

impl Drop for BatchGuard<'_> {
    fn drop(&mut self) {
        abandon(self.core, self.batch, true);
    }
}

fn abandon(core: &Core, batch: u64, purge: bool) {
    let mut st = core.lock();
    let unfinished = st.batches.remove(&batch).is_some_and(|b| b.outstanding > 0);
    if purge && unfinished {
        st.abandoned.push(batch);
        drop(st);
        core.poke();
    }
}

/// A task submitted with [`Pool::submit`]: wait for its result, or poll.
///
/// Dropping the handle does not stop the task; its result is discarded.
pub struct TaskHandle<O> {
    core: Arc<Core>,
    batch: u64,
    taken: bool,
    _out: PhantomData<fn() -> O>,
}

impl<O> fmt::Debug for TaskHandle<O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TaskHandle")
            .field("batch", &self.batch)
            .field("done", &self.is_done())
            .finish()
    }
}

impl<O> TaskHandle<O> {
    /// Whether the task finished (successfully or not), or its result was
    /// taken.
    pub fn is_done(&self) -> bool {
        let st = self.core.lock();
        self.taken
            || st
                .batches
                .get(&self.batch)
                .is_none_or(|b| !b.done.is_empty())
    }
}

impl<O: DeserializeOwned> TaskHandle<O> {
    /// Waits for the result.
    ///
    /// # Errors
    /// The task's failure: `Panicked`, `WorkerDied`, `Cancelled`, `Worker`,
    /// `Unregistered` (in the worker), `Decode`, `Broken`; `ResultTaken`.
    pub fn wait(mut self) -> Result<O, PoolError> {
        self.take(None).unwrap_or(Err(PoolError::Timeout))
    }

    /// Waits at most `timeout` for the result: `Err(Timeout)` if it is not
    /// there yet (the task goes on; wait again), else the result as
    /// [`wait`](Self::wait) gives it, once.
    ///
    /// # Errors
    /// `Timeout`, and those of [`wait`](Self::wait).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Result<O, PoolError> {
        let deadline = Instant::now().checked_add(timeout);
        self.take(Some(deadline)).unwrap_or(Err(PoolError::Timeout))
    }

    /// The result if the task finished (once; `Some(Err(ResultTaken))`
    /// after), `None` if it has not.
    pub fn try_result(&mut self) -> Option<Result<O, PoolError>> {
        self.take(Some(Some(Instant::now())))
    }

    /// Takes the result; waits until `limit` (`None`: no wait given, wait
    /// forever; `Some(None)`: a timeout too long to represent, forever).
    fn take(&mut self, limit: Option<Option<Instant>>) -> Option<Result<O, PoolError>> {
        if self.taken {
            return Some(Err(PoolError::ResultTaken));
        }
        let deadline = limit.flatten();
        let mut st = self.core.lock();
        loop {
            let outcome = match st.batches.get_mut(&self.batch) {
                Some(b) => b.done.pop_front().map(|(_, r)| r),
                None => Some(Err(PoolError::Broken("the task's record is gone".into()))),
            };
            if let Some(r) = outcome {
                self.taken = true;
                st.batches.remove(&self.batch);
                return Some(decode(r));
            }
            if st.phase == Phase::Stopped {
                // The supervisor settles every task before it stops: a
                // missing result means it never heard of this one.
                self.taken = true;
                st.batches.remove(&self.batch);
                return Some(Err(PoolError::Broken("the pool stopped".into())));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return None;
            }
            st = wait_on(&self.core, st, deadline);
        }
    }
}

impl<O> Drop for TaskHandle<O> {
    fn drop(&mut self) {
        if !self.taken {
            abandon(&self.core, self.batch, false);
        }
    }
}

fn decode<O: DeserializeOwned>(r: Outcome) -> Result<O, PoolError> {
    let bytes = r?;
    postcard::from_bytes(&bytes).map_err(PoolError::Decode)
}

/// The iterator of [`Pool::imap_unordered`]: yields each result once, as
/// the workers finish them.
pub struct ImapUnordered<'p, I, O, It> {
    pool: &'p Pool,
    spec: Option<JobSpec>,
    inputs: It,
    batch: u64,
    next_index: usize,
    outstanding: usize,
    window: usize,
    error: Option<PoolError>,
    exhausted: bool,
    /// Results taken from the pool, not yet yielded.
    ready: std::collections::VecDeque<Outcome>,
    _out: PhantomData<fn(I) -> O>,
}

impl<I, O, It> fmt::Debug for ImapUnordered<'_, I, O, It> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImapUnordered")
            .field("submitted", &self.next_index)
            .field("outstanding", &self.outstanding)
            .finish()
    }
}

impl<I, O, It> ImapUnordered<'_, I, O, It>
where
    I: Serialize,
    It: Iterator<Item = I>,
{
    /// Submits inputs until `window` are outstanding.
    fn top_up(&mut self) -> Result<(), PoolError> {
        let Some(spec) = self.spec else {
            return Ok(());
        };
        let max = self.pool.core.config.max_payload;
        // Top up only below half the window: one lock and one wake-up of
        // the supervisor per half window, not per result.
        if self.exhausted || self.outstanding > self.window / 2 {
            return Ok(());
        }
        let mut jobs = Vec::new();
        while !self.exhausted && self.outstanding + jobs.len() < self.window {
            match self.inputs.next() {
                Some(x) => {
                    jobs.push(spec.job(self.batch, self.next_index, &x, max)?);
                    self.next_index += 1;
                }
                None => self.exhausted = true,
            }
        }
        if jobs.is_empty() {
            return Ok(());
        }
        let k = jobs.len();
        let mut st = self.pool.core.lock();
        accepting(&st)?;
        let b = st.batches.get_mut(&self.batch).ok_or(PoolError::ShutDown)?;
        b.outstanding += k;
        st.inbox.extend(jobs);
        drop(st);
        self.outstanding += k;
        self.pool.core.poke();
        Ok(())
    }
}

impl<I, O, It> Iterator for ImapUnordered<'_, I, O, It>
where
    I: Serialize,
    O: DeserializeOwned,
    It: Iterator<Item = I>,
{
    type Item = Result<O, PoolError>;

    fn next(&mut self) -> Option<Result<O, PoolError>> {
        if let Some(e) = self.error.take() {
            self.spec = None;
            self.exhausted = true;
            return Some(Err(e));
        }
        self.spec?;
        if let Err(e) = self.top_up() {
            self.spec = None;
            self.exhausted = true;
            return Some(Err(e));
        }
        if let Some(r) = self.ready.pop_front() {
            return Some(decode(r));
        }
        if self.outstanding == 0 {
            return None;
        }
        let core = &self.pool.core;
        let mut st = core.lock();
        loop {
            match st.batches.get_mut(&self.batch) {
                Some(b) if !b.done.is_empty() => {
                    // Take every result there is: one lock for many.
                    self.outstanding -= b.done.len();
                    self.ready.extend(b.done.drain(..).map(|(_, r)| r));
                    drop(st);
                    let r = self.ready.pop_front().expect("not empty");
                    return Some(decode(r));
                }
                Some(_) => {}
                None => {
                    self.outstanding = 0;
                    return Some(Err(PoolError::Broken("the batch's record is gone".into())));
                }
            }
            if st.phase == Phase::Stopped {
                self.outstanding = 0;
                return Some(Err(PoolError::Broken("the pool stopped".into())));
            }
            st = wait_on(core, st, None);
        }
    }
}

impl<I, O, It> Drop for ImapUnordered<'_, I, O, It> {
    fn drop(&mut self) {
        if self.batch != 0 {
            abandon(&self.pool.core, self.batch, true);
        }
    }
}
