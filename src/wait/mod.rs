//! Layer 2: blocking on words in shared memory: [`WaitCell`], the wake
//! protocol's [`WakeMode`], [`Deadline`]s and the [`LIVENESS_SLICE`] that
//! bounds every sleep.
//!
//! [`WaitCell`] is an event count that lives in a segment: a futex word `seq`
//! and a count of announced `waiters`. A blocked caller announces itself,
//! re-checks its condition, then sleeps on `seq`; a caller that makes the
//! condition true bumps `seq` and wakes, but only if a waiter is announced, so
//! the fast path makes no system call.
//!
//! # The protocol (no lost wake-up)
//!
//! ```text
//! waiter                                  notifier
//! W1 waiters += 1, clear WOKEN             N1 publish the condition (Release)
//! W2 heavy barrier  ──── pairs with ────  N2 light barrier
//! W3 s = seq (Acquire)                    N3 if waiters != 0 and not WOKEN:
//! W4 re-check the condition                    set WOKEN; seq += 1 (Release); FUTEX_WAKE
//! W5 FUTEX_WAIT(seq, s, deadline)
//! W6 waiters -= 1
//! ```
//!
//! The two barriers behave as a pair of `SeqCst` fences, so either the
//! notifier's N3 sees W1 (and wakes), or the waiter's W4 sees N1 (and does not
//! sleep). If N3 bumps `seq` after W3, FUTEX_WAIT returns at once because the
//! word no longer holds `s`; if before, W3 reads the bumped value, which
//! synchronises with N3, so W4 sees N1. `loom-tests/tests/wait.rs` checks this.
//!
//! The barrier pair comes in two strengths, chosen per segment ([`WakeMode`]):
//! `Strict` uses `fence(SeqCst)` on both sides; `Fast` uses a compiler-only
//! barrier on the notifier (free on the per-message path) and
//! `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` on the waiter, which makes
//! every running thread of every registered process execute a full barrier:
//! the asymmetric form of the same fence pair.
//!
//! [`futex_wait`] and [`futex_wake`] are the bare shared futex underneath,
//! for a protocol of one's own on a word in shared memory.

mod backoff;
#[cfg(not(loom))]
mod futex;
#[cfg(loom)]
mod loom_backend;

pub(crate) use backoff::Spin;

use crate::loom::{fence, AtomicU32, Ordering};
use std::time::Duration;

/// The longest a blocked caller sleeps before it checks whether what it
/// waits for is held by a process that died: a queue's peers, a lock's
/// owner. A dead peer or owner is therefore noticed within about one slice
/// (target: under 100 ms), with no help from the dead. Every sleep of the
/// queues and of the synchronisation primitives is cut into such slices.
pub const LIVENESS_SLICE: Duration = Duration::from_millis(20);

/// How the announce/re-check protocol pairs its barriers; fixed per segment.
///
/// The queue, byte-queue and pipe builders create `Strict` segments unless
/// told otherwise: `Fast` is opt-in, because its cost falls on the whole
/// host, not on the queue that chose it (see [`Fast`](WakeMode::Fast)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum WakeMode {
    /// No hardware fence on the per-message path; a sleeper pays for a
    /// `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` system call instead.
    /// Best for streaming between peers that rarely sleep.
    ///
    /// **Cost to others:** that call makes the kernel interrupt (IPI) every
    /// CPU currently running a thread of *any* process on the host that
    /// registered for global expedited membarrier (every process that has
    /// attached an endpoint to a `Fast` segment registers; `Strict` users do not), and waits for
    /// them all. Each sleep of a `Fast` waiter thus disturbs unrelated
    /// shmring users on other CPUs (~0.4 µs when they are idle, ~17 µs when
    /// they run, measured on a KVM guest; more with more CPUs). Choose it
    /// only where every process on the host that uses shmring is yours.
    Fast,
    /// `fence(SeqCst)` on every notify, a plain fence before sleeping. Costs
    /// the streaming path a store-buffer drain per message; touches no
    /// other CPU. The builders' default; best when the peers mostly sleep
    /// (request/response with long gaps), and the safe choice on a shared
    /// host.
    #[default]
    Strict,
}

/// A point on the `CLOCK_MONOTONIC` clock, in nanoseconds: what futex waits take.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(u64);

impl Deadline {
    /// The current time.
    pub fn now() -> Self {
        Deadline(monotonic_ns())
    }

    /// `timeout` from now (saturating).
    pub fn after(timeout: Duration) -> Self {
        let ns = u64::try_from(timeout.as_nanos()).unwrap_or(u64::MAX);
        Deadline(monotonic_ns().saturating_add(ns))
    }

    /// Nanoseconds since an unspecified epoch (boot).
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whether this deadline has passed.
    pub fn has_passed(self) -> bool {
        monotonic_ns() >= self.0
    }

    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Deadline {
        Deadline(self.0.min(other.0))
    }
}

#[cfg(not(loom))]
fn monotonic_ns() -> u64 {
    // CLOCK_MONOTONIC always exists on Linux (0 if it somehow failed).
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map_or(0, |ts| {
        (ts.tv_sec() as u64) * 1_000_000_000 + ts.tv_nsec() as u64
    })
}

#[cfg(loom)]
fn monotonic_ns() -> u64 {
    // loom does not model time: every deadline lies in the future.
    0
}

/// An event count in shared memory: a futex word and a waiter count.
///
/// All-zero bytes are a valid initial state, so a freshly truncated segment
/// needs no initialisation for it.
#[repr(C)]
#[derive(Debug)]
pub struct WaitCell {
    /// The futex word. Bumped (wrapping) by every wake-up.
    seq: AtomicU32,
    /// Low 31 bits: how many callers have announced they may sleep on
    /// `seq`. Bit 31 (`WOKEN`): a wake-up has been issued since the last
    /// announcement, so every announced waiter will re-check by itself and
    /// further notifies may skip the system call. Without it, a woken waiter
    /// that has not yet run to withdraw its announcement would draw one
    /// FUTEX_WAKE from every message published meanwhile. Only a hint for
    /// the notifier: a scribbled value costs a useless wake or a missed one,
    /// and every sleep is bounded by a liveness slice, so neither hangs.
    waiters: AtomicU32,
    #[cfg(loom)]
    backend: loom_backend::Backend,
}

/// Bit of `WaitCell::waiters`: woken since the last announcement.
const WOKEN: u32 = 1 << 31;

/// What [`WaitCell::prepare`] hands to [`WaitCell::sleep`].
#[derive(Clone, Copy, Debug)]
pub struct Ticket {
    seq: u32,
    /// A wake-up raced our announcement: do not sleep on this ticket.
    stale: bool,
    /// Whether the barrier pair was completed; if not, sleeps must be short.
    strong: bool,
}

impl Ticket {
    /// Whether the full barrier pair was achieved. When it was not (no
    /// `membarrier` here), a wake-up may be missed, so callers bound each
    /// sleep by a short slice.
    pub fn is_strong(&self) -> bool {
        self.strong
    }
}

impl Default for WaitCell {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitCell {
    /// A cell with no waiters (the all-zero state).
    pub fn new() -> Self {
        WaitCell {
            seq: AtomicU32::new(0),
            waiters: AtomicU32::new(0),
            #[cfg(loom)]
            backend: loom_backend::Backend::new(),
        }
    }

    /// Called after publishing a state change: wakes the sleepers, if any.
    /// No system call when nobody is announced.
    #[inline(always)]
    pub fn notify(&self, mode: WakeMode) {
        match mode {
            WakeMode::Fast => light_barrier(),
            // SeqCst: pairs with the waiter's barrier (W2), see the module docs.
            WakeMode::Strict => fence(Ordering::SeqCst),
        }
        // Relaxed: ordered after our publication by the barrier above.
        let w = self.waiters.load(Ordering::Relaxed);
        if w != 0 && w & WOKEN == 0 {
            self.wake_announced();
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_announced(&self) {
        // Relaxed: a hint for later notifiers; a waiter announcing after
        // this clears it (in `prepare`) before it re-checks.
        self.waiters.fetch_or(WOKEN, Ordering::Relaxed);
        self.wake_all_slow();
    }

    /// Wakes every sleeper unconditionally (disconnects, reaping: rare paths).
    #[cold]
    pub fn wake_all(&self) {
        // SeqCst: orders the caller's earlier stores before the bump even
        // without a paired barrier on the waiter.
        fence(Ordering::SeqCst);
        self.wake_all_slow();
    }

    #[cold]
    #[inline(never)]
    fn wake_all_slow(&self) {
        let _ = self.bump_and_wake(i32::MAX);
    }

    /// Wakes one announced waiter, if any: for primitives that hand one
    /// waiter a turn (a lock's unlock, a semaphore's permit). The barrier
    /// pair is `notify`'s. While more waiters are announced than it wakes,
    /// every call that finds one announced bumps `seq` and wakes one; see
    /// [`notify_n`](Self::notify_n) for when it sets WOKEN and skips.
    #[inline]
    pub fn notify_one(&self, mode: WakeMode) {
        self.notify_n(mode, 1);
    }

    /// Wakes every announced waiter, if any (an event set, a barrier
    /// tripping, a condition's broadcast). No syscall when none is announced.
    #[inline]
    pub fn notify_all(&self, mode: WakeMode) {
        self.notify_n(mode, i32::MAX);
    }

    /// Called after publishing a state change that `n` waiters may act on
    /// (`n` permits, `n` messages): wakes up to `n` sleepers. No system call
    /// when nobody is announced, or when WOKEN says every announced waiter
    /// will re-check by itself.
    ///
    /// WOKEN is set only where it is true:
    /// - At most `n` waiters announced: WOKEN is set (by a CAS on the count
    ///   read) *before* the bump, so a waiter that reads the bumped `seq`
    ///   finds its ticket stale, as in `notify`; every waiter announced
    ///   before it is asleep (and among the `n` woken, unless a later
    ///   announcement, which clears WOKEN, took a wake-up), or will find
    ///   `seq` changed. A waiter that announced and died is counted forever,
    ///   but costs one FUTEX_WAKE per announcement of a live waiter, not one
    ///   per call.
    /// - More announced than `n`: bump and wake `n`. If FUTEX_WAKE woke
    ///   fewer than `n`, nobody was left asleep: the rest of the count is
    ///   waiters on their way to sleep (whose FUTEX_WAIT will see the bumped
    ///   `seq`) or dead ones. Then the broadcast path sets WOKEN, bumps again
    ///   and wakes all: whoever fell asleep on the first bump is woken, and
    ///   whoever reads the second finds WOKEN. Setting WOKEN after the first
    ///   bump without bumping again would be unsound: a waiter that read
    ///   the first bump before WOKEN was set would sleep unannounced to
    ///   later notifiers. `loom-tests/tests/wait.rs` models both branches
    ///   (`dead_waiter_*`, `wake_one_*`).
    #[inline(always)]
    pub fn notify_n(&self, mode: WakeMode, n: i32) {
        match mode {
            WakeMode::Fast => light_barrier(),
            // SeqCst: pairs with the waiter's barrier (W2), see the module docs.
            WakeMode::Strict => fence(Ordering::SeqCst),
        }
        // Relaxed: ordered after our publication by the barrier above.
        let w = self.waiters.load(Ordering::Relaxed);
        if w != 0 && w & WOKEN == 0 {
            self.wake_counted(w, n.max(1));
        }
    }

    #[cold]
    #[inline(never)]
    fn wake_counted(&self, mut w: u32, n: i32) {
        // `n` is at least 1, so the cast is exact.
        let n_u32 = n as u32;
        loop {
            let count = w & !WOKEN;
            if count == 0 || w & WOKEN != 0 {
                // A value later in the modification order than the one our
                // barrier-ordered load read: waiters it does not show
                // announced after that load, so they see our publication.
                return;
            }
            if count > n_u32 {
                break;
            }
            // Relaxed (both): the CAS only decides whether WOKEN may be set;
            // the bump below (Release) carries the publication, and the
            // stale check in `prepare` reads WOKEN after acquiring `seq`.
            match self.waiters.compare_exchange_weak(
                w,
                w | WOKEN,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    let _ = self.bump_and_wake(n);
                    return;
                }
                Err(cur) => w = cur,
            }
        }
        if self.bump_and_wake(n) < n_u32 as usize {
            // Nobody is left asleep: mark WOKEN the sound way (see above).
            self.wake_announced();
        }
    }

    /// Bumps `seq` and wakes up to `n` sleepers; returns how many woke.
    #[cold]
    fn bump_and_wake(&self, n: i32) -> usize {
        // Release: a waiter that reads the new value (W3, Acquire) sees
        // everything published before this notify.
        self.seq.fetch_add(1, Ordering::Release);
        #[cfg(not(loom))]
        {
            let woken = futex::wake(&self.seq, n);
            stats::record(woken);
            woken
        }
        #[cfg(loom)]
        {
            self.backend.wake(n as usize)
        }
    }

    /// Announces a waiter (W1–W3). The caller must re-check its condition,
    /// then call [`sleep`](Self::sleep) or go straight to [`cancel`](Self::cancel).
    pub fn prepare(&self, mode: WakeMode) -> Ticket {
        // Count ourselves in and clear WOKEN: a wake-up issued before this
        // announcement did not reach us, so the next notify must wake again.
        // Relaxed: ordered before the re-check by the barrier that follows.
        let _ = self
            .waiters
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                Some(((w & !WOKEN) + 1) & !WOKEN)
            });
        let strong = match mode {
            WakeMode::Fast => heavy_barrier(),
            WakeMode::Strict => {
                // SeqCst: pairs with the notifier's fence (N2).
                fence(Ordering::SeqCst);
                true
            }
        };
        // Acquire: pairs with the notifier's Release bump (N3).
        let seq = self.seq.load(Ordering::Acquire);
        // A notifier may have set WOKEN after our announcement cleared it
        // (it read the count before we announced) and bumped `seq` before
        // our load: then `seq` is already the bumped value, and later
        // notifiers, seeing WOKEN, would skip us. Such a ticket must not
        // sleep; the caller re-checks and announces again, clearing WOKEN.
        // Relaxed: ordered after the Acquire load above, which saw any bump
        // whose WOKEN we must see (the notifier sets it before bumping).
        let stale = self.waiters.load(Ordering::Relaxed) & WOKEN != 0;
        Ticket { seq, strong, stale }
    }

    /// Sleeps until woken, `deadline` passes, or a spurious wake-up.
    /// Returns `false` if the deadline passed. The caller re-checks either way.
    pub fn sleep(&self, ticket: Ticket, deadline: Deadline) -> bool {
        if ticket.stale {
            // As a spurious wake-up: the caller re-checks and re-announces.
            return true;
        }
        #[cfg(not(loom))]
        {
            futex::wait(&self.seq, ticket.seq, Some(deadline))
        }
        #[cfg(loom)]
        {
            let _ = deadline;
            self.backend.wait(&self.seq, ticket.seq);
            true
        }
    }

    /// Withdraws the announcement made by [`prepare`](Self::prepare) (W6).
    pub fn cancel(&self) {
        // Relaxed: a late decrement only costs a notifier one useless wake.
        // A scribbled zero must not wrap, hence the saturating update.
        let _ = self
            .waiters
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| {
                let n = (w & !WOKEN).checked_sub(1)?;
                Some(n | (w & WOKEN))
            });
    }

    /// Waiters currently announced (a hint; for diagnostics). A waiter that
    /// died announced stays counted: its count cannot be told from a live
    /// waiter's on its way to sleep, and withdrawing it for the dead one
    /// could withdraw a live one's instead.
    #[cfg_attr(not(loom), allow(dead_code))] // the loom models' probe
    pub fn waiters(&self) -> u32 {
        // Relaxed: a snapshot for display only.
        self.waiters.load(Ordering::Relaxed) & !WOKEN
    }

    /// Whether a notify now would make a system call: someone is announced
    /// and WOKEN is clear (a hint; for diagnostics and tests).
    #[cfg_attr(not(loom), allow(dead_code))] // the loom models' probe
    pub fn wake_pending(&self) -> bool {
        // Relaxed: a snapshot for display only.
        let w = self.waiters.load(Ordering::Relaxed);
        w & !WOKEN != 0 && w & WOKEN == 0
    }

    /// Under loom: (wake calls made on this cell, sleepers they woke).
    #[cfg(loom)]
    #[doc(hidden)]
    pub fn wake_stats(&self) -> (usize, usize) {
        self.backend.stats()
    }
}

/// Sleeps while `*word == expected`: the shared futex wait under every
/// blocking call in shmring, for a protocol of your own on a `u32` in shared
/// memory (the `shmring` tool's futex floor is one).
///
/// Shared, not process-private (`FUTEX_PRIVATE_FLAG` is never passed), so it
/// meets a [`futex_wake`] from another process that maps the same word.
/// Returns `false` only when `deadline` (absolute, `CLOCK_MONOTONIC`;
/// `None`: no limit) has passed; `true` when woken, when `*word` did not
/// hold `expected` on entry, on a signal, or spuriously. Callers re-check
/// their condition either way. Unlike the queues' wait cells, it does not count
/// waiters: waking is the caller's business.
///
/// ```
/// use shmring::{futex_wait, futex_wake, Deadline};
/// use std::sync::atomic::AtomicU32;
/// use std::time::Duration;
///
/// let word = AtomicU32::new(0);
/// // The word does not hold 1: returns at once.
/// assert!(futex_wait(&word, 1, None));
/// // Nobody wakes it: the deadline passes.
/// let soon = Deadline::after(Duration::from_millis(1));
/// assert!(!futex_wait(&word, 0, Some(soon)));
/// // Nobody sleeps on it.
/// assert_eq!(futex_wake(&word, 1), 0);
/// ```
#[cfg(not(loom))]
pub fn futex_wait(
    word: &std::sync::atomic::AtomicU32,
    expected: u32,
    deadline: Option<Deadline>,
) -> bool {
    futex::wait(word, expected, deadline)
}

/// Wakes up to `n` sleepers in [`futex_wait`] on `word` (`u32::MAX`: all);
/// returns how many woke. Shared like [`futex_wait`]: it reaches sleepers
/// in every process that maps the word. Store the new value before waking.
#[cfg(not(loom))]
pub fn futex_wake(word: &std::sync::atomic::AtomicU32, n: u32) -> usize {
    futex::wake(word, i32::try_from(n).unwrap_or(i32::MAX))
}

/// FUTEX_WAKE calls made by the calling thread's [`WaitCell`]s (not
/// [`futex_wake`]), and the sleepers they woke:
/// `(calls, woken)`. For tests and diagnostics (the herd and dead-waiter
/// regressions in `tests/wait_promises.rs` count with it); per thread, so
/// concurrent tests do not disturb each other.
#[cfg(not(loom))]
#[doc(hidden)]
pub fn thread_wake_stats() -> (u64, u64) {
    stats::get()
}

#[cfg(not(loom))]
mod stats {
    use std::cell::Cell;

    thread_local! {
        static WAKES: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
    }

    /// Counts one FUTEX_WAKE that woke `woken` sleepers (cold path only).
    pub(super) fn record(woken: usize) {
        WAKES.with(|c| {
            let (calls, total) = c.get();
            c.set((calls + 1, total + woken as u64));
        });
    }

    pub(super) fn get() -> (u64, u64) {
        WAKES.with(Cell::get)
    }
}

/// The notifier's half of the Fast barrier pair.
#[inline(always)]
fn light_barrier() {
    #[cfg(not(loom))]
    {
        if membarrier::registered() {
            // Compiler-only: the sleeper's membarrier supplies the hardware fence.
            std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
        } else {
            // SeqCst: this process is not reachable by membarrier, so it
            // must fence for itself (pairs with the sleeper's barrier).
            fence(Ordering::SeqCst);
        }
    }
    #[cfg(loom)]
    // SeqCst: the model of the asymmetric pair is a pair of SeqCst fences.
    fence(Ordering::SeqCst);
}

/// The sleeper's half of the Fast barrier pair. Returns whether it is complete.
fn heavy_barrier() -> bool {
    #[cfg(not(loom))]
    {
        // SeqCst: covers our own side (membarrier implies it too).
        fence(Ordering::SeqCst);
        membarrier::global_barrier()
    }
    #[cfg(loom)]
    {
        // SeqCst: the model of the asymmetric pair is a pair of SeqCst fences.
        fence(Ordering::SeqCst);
        true
    }
}

/// Registers this process for `membarrier` so that peers' heavy barriers
/// reach it and its own notifies may skip the hardware fence. Idempotent;
/// called whenever an endpoint is created.
pub fn register_process() {
    #[cfg(not(loom))]
    membarrier::register();
}

#[cfg(not(loom))]
mod membarrier {
    use libc::{MEMBARRIER_CMD_GLOBAL_EXPEDITED, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED};
    use std::sync::atomic::{AtomicU8, Ordering};

    const UNKNOWN: u8 = 0;
    const YES: u8 = 1;
    const NO: u8 = 2;

    /// Whether this process registered. Reset in a forked child (see
    /// `forget_in_child`): until the child registers itself, its notifies
    /// use a real fence.
    static STATE: AtomicU8 = AtomicU8::new(UNKNOWN);

    /// `membarrier(cmd, 0, 0)`; whether it succeeded. nix has no wrapper
    /// for this system call.
    fn membarrier(cmd: libc::c_int) -> bool {
        // SAFETY: membarrier takes plain integers and touches no user memory.
        unsafe {
            libc::syscall(
                libc::SYS_membarrier,
                libc::c_long::from(cmd),
                0 as libc::c_long,
                0 as libc::c_long,
            ) == 0
        }
    }

    /// Runs in the child after `fork` (from `process::watch_fork`'s
    /// handler): the child is a new address space, so it must register (or
    /// fence for itself) on its own account.
    fn forget_in_child() {
        // Relaxed: the child is single-threaded here.
        STATE.store(UNKNOWN, Ordering::Relaxed);
    }

    pub(super) fn register() {
        crate::process::watch_fork_for(crate::process::ForkCache::Membarrier, forget_in_child);
        // Relaxed: the flag only caches the result of an idempotent syscall.
        if STATE.load(Ordering::Relaxed) == UNKNOWN {
            let ok = membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED);
            STATE.store(if ok { YES } else { NO }, Ordering::Relaxed);
        }
    }

    #[inline(always)]
    pub(super) fn registered() -> bool {
        // Relaxed: set once, before any endpoint of this process notifies.
        STATE.load(Ordering::Relaxed) == YES
    }

    pub(super) fn global_barrier() -> bool {
        membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
    }
}
