//! The blocking queue core: ring + wait cells + peer counts, over raw
//! pointers. No syscalls beyond the wait layer's, no knowledge of segments or
//! processes: the public `Sender`/`Receiver` add those, and the loom models
//! drive this core directly over heap memory.
//!
//! Here: [`RawSender`] and [`RawReceiver`] (copying sends and receives,
//! blocking with deadlines, and the claim protocol: claim, commit or
//! abandon, release or unclaim, over a [`SlotClaim`]), the blocking loop
//! they share, the guard that stops a handle inherited through `fork`, and
//! [`ReapGate`], which rate-limits a handle's liveness checks of its peers.

use super::control::{Gone, QueueControl};
use crate::error::{SendTimeoutError, TryRecvError, TrySendError};
use crate::ring::mpmc::{Intent, MpmcRing};
use crate::ring::spsc::{SpscConsumer, SpscProducer};
use crate::ring::{PopError, PushError};
use crate::types::Role;
use crate::wait::{Deadline, Spin, WaitCell, WakeMode, LIVENESS_SLICE};
use std::cell::Cell;
use std::ptr::NonNull;
use std::time::Duration;

/// Sleep slice when the barrier pair could not be completed (no
/// `membarrier` here): bounds the delay of a wake-up lost to the race.
pub const WEAK_SLICE: Duration = Duration::from_micros(200);

/// How long a blocked call spins before it sleeps unless told otherwise
/// (`set_spin` on its sender or receiver).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// Idle polls between two reads of the clock in [`ReapGate::idle_poll`].
#[cfg(not(loom))]
const POLLS_PER_CLOCK_READ: u32 = 4;

/// Rate-limits one handle's liveness checks of its peers (reading
/// `/proc/<pid>/stat` of each: a few µs per peer).
///
/// - A non-blocking call that finds nothing to do (`try_recv` on an empty
///   queue, `try_send` on a full one) checks at most once a
///   [`LIVENESS_SLICE`] of such polls, so a caller who only ever polls still
///   sees `Disconnected` when its peers died and gets a dead peer's stuck
///   claim repaired. Cost per idle poll: one counter update; every
///   [`POLLS_PER_CLOCK_READ`]th poll also reads the coarse monotonic clock
///   (vDSO, no syscall, ~5 ns).
/// - A blocking or timed call checks after each slice it sleeps without a
///   wake-up and when its deadline passes, at most once per half slice:
///   a loop of short timed calls neither skips the check nor pays it on
///   every call.
///
/// Handles are `!Sync`, so `Cell`s suffice. (The segment-backed handles
/// that use it are not in the loom build.)
#[cfg(not(loom))]
#[derive(Debug, Default)]
pub(crate) struct ReapGate {
    polls: std::cell::Cell<u32>,
    /// Coarse-clock time of this handle's last check; 0: none yet.
    last_ns: std::cell::Cell<u64>,
}

#[cfg(not(loom))]
impl ReapGate {
    /// Records an idle poll; true when a liveness check is due now.
    #[inline(always)]
    pub(crate) fn idle_poll(&self) -> bool {
        let n = self.polls.get().wrapping_add(1);
        self.polls.set(n);
        n.is_multiple_of(POLLS_PER_CLOCK_READ) && self.passed(LIVENESS_SLICE)
    }

    /// A blocked or timed call wants to check: true unless this handle
    /// checked within the last half slice.
    pub(crate) fn blocked(&self) -> bool {
        self.passed(LIVENESS_SLICE / 2)
    }

    /// True (and restarts the interval) when `gap` has passed since the
    /// last check.
    #[cold]
    #[inline(never)]
    fn passed(&self, gap: Duration) -> bool {
        let Some(now) = coarse_ns() else {
            return true;
        };
        let gap = u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX);
        if self.last_ns.get() != 0 && now < self.last_ns.get().saturating_add(gap) {
            return false;
        }
        self.last_ns.set(now);
        true
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds (ticks of a few ms: plenty for
/// a 20 ms slice, and read from the vDSO without a syscall).
#[cfg(not(loom))]
fn coarse_ns() -> Option<u64> {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .ok()
        .map(|ts| (ts.tv_sec() as u64) * 1_000_000_000 + ts.tv_nsec() as u64)
}

/// Stops an endpoint handle used in a process other than the one that
/// attached it (`attached`; 0: unchecked), i.e. a handle inherited through
/// `fork`. Its ring indices, its SPSC exclusivity and its MPMC intent record
/// belong to the parent's endpoint: using them from the child as well
/// silently loses or duplicates messages. One relaxed load of a cached pid.
///
/// # Panics
/// When the process differs: a bug in the caller (the child must attach
/// its own endpoint from the segment handle, `Queue::sender` etc.), in the
/// way a `RefCell` borrowed twice is.
#[inline(always)]
pub(crate) fn check_process(attached: u32) {
    #[cfg(not(loom))]
    if attached != 0 && crate::process::current_pid() != attached {
        wrong_process(attached);
    }
    #[cfg(loom)]
    let _ = attached;
}

/// Whether a handle attached in process `attached` (0: unchecked) is being
/// used in another one. Drops of loans and in-place reads inherited
/// through `fork` use it to do nothing: the claim is the parent's.
#[inline(always)]
fn foreign(attached: u32) -> bool {
    #[cfg(not(loom))]
    {
        attached != 0 && crate::process::current_pid() != attached
    }
    #[cfg(loom)]
    {
        let _ = attached;
        false
    }
}

#[cfg(not(loom))]
#[cold]
#[inline(never)]
#[track_caller]
fn wrong_process(attached: u32) -> ! {
    panic!(
        "shmring: an endpoint attached in process {attached} was used in process {} \
         (inherited through fork?): attach a new endpoint in this process from the \
         segment handle (Queue::sender / Queue::receiver, ByteQueue::..., Pipe::left / right)",
        crate::process::current_pid()
    )
}

/// Where an endpoint handle belongs: the process that attached it, and
/// (SPSC) its intent record, in which a loan or an in-place read announces
/// its position so that a reaper can settle it if the process dies holding
/// it (MPMC rings carry their record themselves).
#[derive(Debug, Default)]
pub(crate) struct Binding {
    /// The attaching process (0: unchecked, the heap-backed models).
    pid: u32,
    spsc_intent: Option<NonNull<Intent>>,
}

impl Binding {
    /// Binds to process `pid` and, SPSC, to `spsc_intent`.
    ///
    /// # Safety
    /// `spsc_intent`, if any, stays valid while the handle is used, and no
    /// other live endpoint writes it.
    #[cfg_attr(loom, allow(dead_code))]
    unsafe fn new(pid: u32, spsc_intent: Option<NonNull<Intent>>) -> Self {
        Binding { pid, spsc_intent }
    }

    /// Panics in a process other than the attaching one: [`check_process`].
    #[inline(always)]
    fn check(&self) {
        check_process(self.pid);
    }

    /// Whether this runs in a process other than the attaching one.
    #[inline(always)]
    fn foreign(&self) -> bool {
        foreign(self.pid)
    }

    /// SPSC: the endpoint's intent record.
    #[inline(always)]
    fn record(&self) -> Option<&Intent> {
        // SAFETY: valid while the handle is (contract of `new`).
        self.spsc_intent.map(|p| unsafe { &*p.as_ptr() })
    }
}

/// The producing side's ring.
#[derive(Debug)]
pub(crate) enum SendRing<T> {
    /// The single producer of an SPSC ring.
    Spsc(SpscProducer<T>),
    /// One of many producers of an MPMC ring.
    Mpmc(MpmcRing<T>),
}

/// The consuming side's ring.
#[derive(Debug)]
pub(crate) enum RecvRing<T> {
    /// The single consumer of an SPSC ring.
    Spsc(SpscConsumer<T>),
    /// One of many consumers of an MPMC ring.
    Mpmc(MpmcRing<T>),
}

/// Runs `attempt` until it yields, spinning first, then sleeping on `cell`
/// in liveness slices. `None`: the deadline passed. `reap` runs after a slice
/// in which nobody woke us, and once more before giving up at the deadline
/// (then `attempt` runs again): it checks whether the peers we wait for
/// live, and may decline if it checked very recently. `more`: whether the
/// ring's positions show more than `attempt` found (messages for a
/// receiver, room for a sender): after a success, another waiter's turn;
/// after a failure, a peer mid-message.
fn block_on<R>(
    cell: &WaitCell,
    mode: WakeMode,
    spin: Duration,
    deadline: Option<Deadline>,
    reap: &dyn Fn(),
    more: &dyn Fn() -> bool,
    mut attempt: impl FnMut() -> Option<R>,
) -> Option<R> {
    if let Some(r) = attempt() {
        return Some(r);
    }
    let mut spinner = Spin::until(spin, deadline);
    while spinner.spin() {
        if let Some(r) = attempt() {
            return Some(r);
        }
    }
    // The spin found nothing, yet the ring's positions say a peer is in
    // the middle of a message (MPMC: a receiver sees a position claimed
    // and not yet published, a sender a slot claimed and not yet
    // released): a large message being copied in or out. Its end is near,
    // and a sleep now would add a wake-up to that message's latency, so a
    // caller that spins at all spins on, up to `IN_FLIGHT_SPIN` more. Only
    // a hint: a peer that died mid-copy costs one such spin per wait.
    // (Not under loom, whose spinner never spins: the look would only add
    // loads to the models.)
    if !cfg!(loom) && !spin.is_zero() && more() {
        let mut spinner = Spin::until(IN_FLIGHT_SPIN, deadline);
        while spinner.spin() {
            if let Some(r) = attempt() {
                return Some(r);
            }
        }
    }
    block_slow(cell, mode, deadline, reap, more, &mut attempt)
}

/// How much longer a waiter that spins at all keeps spinning while a peer
/// is mid-message (see `block_on`): a few megabytes' copy between two
/// cores of a slow machine, or a few futex wake-ups.
const IN_FLIGHT_SPIN: Duration = Duration::from_micros(250);

#[cold]
fn block_slow<R>(
    cell: &WaitCell,
    mode: WakeMode,
    deadline: Option<Deadline>,
    reap: &dyn Fn(),
    more: &dyn Fn() -> bool,
    attempt: &mut dyn FnMut() -> Option<R>,
) -> Option<R> {
    // Peers are checked after every slice without a wake-up, and at least
    // once a slice even when wake-ups keep coming (others' traffic must not
    // hide a dead peer that this caller specifically waits for).
    let mut next_reap = Deadline::after(LIVENESS_SLICE);
    let mut reaped_at_deadline = false;
    let mut slept = false;
    loop {
        let ticket = cell.prepare(mode);
        if let Some(r) = attempt() {
            cell.cancel();
            if slept && more() {
                // MPMC wakes one sleeper per message (or free slot): one
                // that was woken and finds more left after its own passes
                // the wake-up on, so that messages published while the
                // first was waking, or behind a slot that was still being
                // written when it was notified, reach the other sleepers.
                cell.notify_n(mode, 1);
            }
            return Some(r);
        }
        let now = Deadline::now();
        if deadline.is_some_and(|d| now >= d) {
            cell.cancel();
            if reaped_at_deadline {
                return None;
            }
            // A call whose deadline came before any unwoken slice (a short
            // or zero timeout) checks too, then looks once more.
            reap();
            reaped_at_deadline = true;
            continue;
        }
        let slice = if ticket.is_strong() {
            LIVENESS_SLICE
        } else {
            WEAK_SLICE
        };
        let mut wake_at = Deadline::after(slice);
        if let Some(d) = deadline {
            wake_at = wake_at.min(d);
        }
        let woken = cell.sleep(ticket, wake_at);
        slept = true;
        cell.cancel();
        if !woken || next_reap.has_passed() {
            reap();
            next_reap = Deadline::after(LIVENESS_SLICE);
        }
    }
}

/// Wakes the sleepers of one side after `n` messages (or free slots)
/// appeared: SPSC has one sleeper per side at most (`notify`: all
/// announced, then WOKEN until one announces again); MPMC wakes up to `n`
/// (no herd), a woken one passing the wake-up on when it finds more
/// (`block_slow`).
#[inline(always)]
fn wake_side(cell: &WaitCell, mode: WakeMode, mpmc: bool, n: usize) {
    if mpmc {
        cell.notify_n(mode, i32::try_from(n).unwrap_or(i32::MAX));
    } else {
        cell.notify(mode);
    }
}

/// Waits on `cell` until `ready()` holds (true) or `deadline` passes
/// (false), sleeping in liveness slices and running `reap` as a blocked
/// call does. For waiting on a peer to attach: attaching wakes the cell.
#[cfg_attr(loom, allow(dead_code))]
pub(crate) fn wait_until_ready(
    cell: &WaitCell,
    mode: WakeMode,
    deadline: Option<Deadline>,
    reap: &dyn Fn(),
    ready: &dyn Fn() -> bool,
) -> bool {
    block_on(
        cell,
        mode,
        Duration::ZERO,
        deadline,
        reap,
        &|| false,
        || ready().then_some(()),
    )
    .is_some()
}

/// The receive error for a departure seen on an empty ring.
fn gone_error(gone: Gone) -> TryRecvError {
    match gone {
        Gone::Disconnected => TryRecvError::Disconnected,
        Gone::Closed => TryRecvError::Closed,
    }
}

/// The sending core.
#[derive(Debug)]
pub struct RawSender<T> {
    ctrl: NonNull<QueueControl>,
    ring: SendRing<T>,
    mode: WakeMode,
    /// Where it belongs: its process and (SPSC) its intent record.
    bind: Binding,
    /// The claim handed out by [`try_claim`](Self::try_claim) /
    /// [`claim_deadline`](Self::claim_deadline) and not yet committed or
    /// abandoned. A loan borrows its handle, so the handle's next call
    /// finds this set only if the loan was leaked (`mem::forget`): that
    /// call first [settles](Self::settle) it.
    held: Cell<Option<SlotClaim>>,
    /// Blocking and timed sends wait through `Disconnected` (no receiver
    /// attached now) instead of returning it: see
    /// `Sender::set_wait_for_receivers`.
    wait_for_receivers: bool,
}

// SAFETY: the pointers address shared memory built for concurrent access by
// atomics; the handle owns no thread-affine state.
unsafe impl<T: Send> Send for RawSender<T> {}

impl<T: Copy> RawSender<T> {
    /// Wraps an attached ring.
    ///
    /// # Safety
    /// `ctrl` must stay valid while the sender is used, and the caller has
    /// counted this sender with [`QueueControl::attach`].
    pub(crate) unsafe fn new(
        ctrl: NonNull<QueueControl>,
        ring: SendRing<T>,
        mode: WakeMode,
    ) -> Self {
        RawSender {
            ctrl,
            ring,
            mode,
            bind: Binding::default(),
            held: Cell::new(None),
            wait_for_receivers: false,
        }
    }

    /// Binds the handle: see [`Binding::new`].
    ///
    /// # Safety
    /// As [`Binding::new`].
    pub(crate) unsafe fn bind(&mut self, pid: u32, spsc_intent: Option<NonNull<Intent>>) {
        // SAFETY: passed on (this function's contract).
        self.bind = unsafe { Binding::new(pid, spsc_intent) };
    }

    /// Stops a call from a process other than the attaching one (a loan
    /// inherited through `fork`): see [`check_process`].
    #[inline(always)]
    pub(crate) fn check_here(&self) {
        self.bind.check();
    }

    /// Wakes receivers after publishing `n` messages (or skip records):
    /// see [`wake_side`].
    #[inline(always)]
    fn wake_receivers(&self, ctrl: &QueueControl, n: usize) {
        let mpmc = matches!(self.ring, SendRing::Mpmc(_));
        wake_side(&ctrl.not_empty, self.mode, mpmc, n);
    }

    /// Whether blocking and timed sends wait through `Disconnected`.
    pub fn set_wait_for_receivers(&mut self, wait: bool) {
        self.wait_for_receivers = wait;
    }

    /// Whether blocking and timed sends wait through `Disconnected`.
    #[inline(always)]
    pub fn waits_for_receivers(&self) -> bool {
        self.wait_for_receivers
    }

    /// Waits until a receiver is attached (true) or `deadline` passes.
    pub fn wait_for_receiver(&self, deadline: Option<Deadline>, reap: &dyn Fn()) -> bool {
        let ctrl = self.ctrl();
        wait_until_ready(&ctrl.not_full, self.mode, deadline, reap, &|| {
            ctrl.live(Role::Receiver) > 0 || ctrl.closed()
        })
    }

    /// For a blocked sender that got room: whether room is left for
    /// another (MPMC; SPSC has one sender).
    fn more_waiting(&self) -> bool {
        match &self.ring {
            SendRing::Spsc(_) => false,
            SendRing::Mpmc(r) => r.len() < r.capacity(),
        }
    }

    /// The control block. Every operation starts here, so this is where
    /// an endpoint used in a process that did not attach it is stopped.
    #[inline(always)]
    pub fn ctrl(&self) -> &QueueControl {
        self.bind.check();
        // SAFETY: valid while the sender is (contract of `new`).
        unsafe { self.ctrl.as_ref() }
    }

    /// Sends without waiting.
    #[inline(always)]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        self.settle();
        let ctrl = self.ctrl();
        // Relaxed: a hint; sending into a queue whose last receiver is
        // leaving is indistinguishable from sending just before it left.
        if ctrl.closed_hint() {
            return Err(TrySendError::Closed(value));
        }
        if ctrl.peers.receivers.load(crate::loom::Ordering::Relaxed) == 0
            && ctrl.disconnected(Role::Receiver)
        {
            return Err(TrySendError::Disconnected(value));
        }
        let pushed = match &self.ring {
            SendRing::Spsc(p) => p.try_push(value),
            SendRing::Mpmc(r) => r.try_push(value),
        };
        match pushed {
            Ok(()) => {
                self.wake_receivers(ctrl, 1);
                Ok(())
            }
            Err(PushError::Full) => Err(TrySendError::Full(value)),
            Err(PushError::Corrupted) => Err(TrySendError::Corrupted(value)),
        }
    }

    /// Sends, waiting for room until `deadline` (`None`: forever).
    pub fn send_deadline(
        &self,
        value: T,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<(), SendTimeoutError<T>> {
        let r = block_on(
            &self.ctrl().not_full,
            self.mode,
            spin,
            deadline,
            reap,
            &|| self.more_waiting(),
            || match self.try_send(value) {
                Ok(()) => Some(Ok(())),
                Err(TrySendError::Full(_)) => None,
                Err(TrySendError::Disconnected(_)) if self.wait_for_receivers => None,
                Err(TrySendError::Disconnected(v)) => Some(Err(SendTimeoutError::Disconnected(v))),
                Err(TrySendError::Closed(v)) => Some(Err(SendTimeoutError::Closed(v))),
                Err(TrySendError::Corrupted(v)) => Some(Err(SendTimeoutError::Corrupted(v))),
            },
        );
        r.unwrap_or(Err(SendTimeoutError::Timeout(value)))
    }

    /// Sends as many of `values` as fit now (at least one, or an error).
    pub fn try_send_slice(&self, values: &[T]) -> Result<usize, TrySendError<()>> {
        self.settle();
        let ctrl = self.ctrl();
        if ctrl.closed_hint() {
            return Err(TrySendError::Closed(()));
        }
        if ctrl.disconnected(Role::Receiver) {
            return Err(TrySendError::Disconnected(()));
        }
        if values.is_empty() {
            return Ok(0);
        }
        let pushed = match &self.ring {
            SendRing::Spsc(p) => p.push_slice(values),
            SendRing::Mpmc(r) => r.push_slice(values),
        };
        match pushed {
            Ok(0) | Err(PushError::Full) => Err(TrySendError::Full(())),
            Ok(n) => {
                self.wake_receivers(ctrl, n);
                Ok(n)
            }
            Err(PushError::Corrupted) => Err(TrySendError::Corrupted(())),
        }
    }

    /// Sends all of `values`, waiting for room until `deadline`. On error,
    /// the error holds how many were sent.
    pub fn send_slice_deadline(
        &self,
        values: &[T],
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<(), SendTimeoutError<usize>> {
        let mut sent = 0;
        while sent < values.len() {
            let r = block_on(
                &self.ctrl().not_full,
                self.mode,
                spin,
                deadline,
                reap,
                &|| self.more_waiting(),
                || match self.try_send_slice(&values[sent..]) {
                    Ok(n) => Some(Ok(n)),
                    Err(TrySendError::Full(())) => None,
                    Err(TrySendError::Disconnected(())) if self.wait_for_receivers => None,
                    Err(TrySendError::Disconnected(())) => {
                        Some(Err(SendTimeoutError::Disconnected(sent)))
                    }
                    Err(TrySendError::Closed(())) => Some(Err(SendTimeoutError::Closed(sent))),
                    Err(TrySendError::Corrupted(())) => {
                        Some(Err(SendTimeoutError::Corrupted(sent)))
                    }
                },
            );
            match r {
                Some(Ok(n)) => sent += n,
                Some(Err(e)) => return Err(e),
                None => return Err(SendTimeoutError::Timeout(sent)),
            }
        }
        Ok(())
    }
}

/// A claimed slot: its ring position and slot index. Held by a loan (or a
/// byte message being written or read in place) until it is committed,
/// abandoned or released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotClaim {
    /// The ring position.
    pub pos: u64,
    /// The slot index, `0..slot_count`.
    pub index: u64,
}

impl<T: Copy> RawSender<T> {
    /// Claims a slot to write in place, without waiting.
    #[inline]
    pub fn try_claim(&self) -> Result<SlotClaim, TrySendError<()>> {
        self.settle();
        let ctrl = self.ctrl();
        // Relaxed: a hint, as in `try_send`.
        if ctrl.closed_hint() {
            return Err(TrySendError::Closed(()));
        }
        if ctrl.peers.receivers.load(crate::loom::Ordering::Relaxed) == 0
            && ctrl.disconnected(Role::Receiver)
        {
            return Err(TrySendError::Disconnected(()));
        }
        let claimed = match &self.ring {
            SendRing::Spsc(p) => p.claim_push().map(|pos| {
                if let Some(i) = self.bind.record() {
                    i.announce_one(pos);
                }
                SlotClaim {
                    pos,
                    index: p.index(pos),
                }
            }),
            SendRing::Mpmc(r) => r.claim_push().map(|(pos, index)| SlotClaim { pos, index }),
        };
        let claim = claimed.map_err(|e| match e {
            PushError::Full => TrySendError::Full(()),
            PushError::Corrupted => TrySendError::Corrupted(()),
        })?;
        self.held.set(Some(claim));
        Ok(claim)
    }

    /// Settles a claim whose loan was leaked (`mem::forget`, a leaked
    /// `Box`, an `Rc` cycle): the slot is abandoned as a dropped loan's
    /// would be (MPMC: a skip record; SPSC: it stays free) and the message
    /// it was to carry counts in `lost`. Called first by every call of this
    /// handle that claims, and by the owning handle's drop; does nothing
    /// when no claim is held. Without it, an MPMC sender's next claim would
    /// overwrite the leaked claim's intent and leave its position unpublished
    /// for ever, with no repair able to tell it from a live claim: every
    /// receiver would stop there.
    #[inline(always)]
    pub fn settle(&self) {
        if self.held.get().is_some() {
            self.settle_leaked();
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_leaked(&self) {
        if self.bind.foreign() {
            return; // the parent's claim, inherited through fork
        }
        if let Some(claim) = self.held.get() {
            self.abandon(claim);
            // Relaxed: a statistic.
            self.ctrl()
                .peers
                .lost
                .fetch_add(1, crate::loom::Ordering::Relaxed);
        }
    }

    /// Claims a slot, waiting for room until `deadline` (`None`: forever).
    pub fn claim_deadline(
        &self,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<SlotClaim, SendTimeoutError<()>> {
        let r = block_on(
            &self.ctrl().not_full,
            self.mode,
            spin,
            deadline,
            reap,
            &|| self.more_waiting(),
            || match self.try_claim() {
                Ok(c) => Some(Ok(c)),
                Err(TrySendError::Full(())) => None,
                Err(TrySendError::Disconnected(())) if self.wait_for_receivers => None,
                Err(TrySendError::Disconnected(())) => {
                    Some(Err(SendTimeoutError::Disconnected(())))
                }
                Err(TrySendError::Closed(())) => Some(Err(SendTimeoutError::Closed(()))),
                Err(TrySendError::Corrupted(())) => Some(Err(SendTimeoutError::Corrupted(()))),
            },
        );
        r.unwrap_or(Err(SendTimeoutError::Timeout(())))
    }

    /// The claimed slot, to write in place.
    #[inline]
    pub fn slot_ptr(&self, c: &SlotClaim) -> *mut T {
        // A loan or in-place read inherited through fork: stopped here.
        self.bind.check();
        match &self.ring {
            SendRing::Spsc(p) => p.slot_ptr(c.pos),
            SendRing::Mpmc(r) => r.slot_ptr(c.index),
        }
    }

    /// Writes `value` into the claimed slot.
    #[inline]
    pub fn write(&self, c: &SlotClaim, value: T) {
        // A loan or in-place read inherited through fork: stopped here.
        self.bind.check();
        match &self.ring {
            SendRing::Spsc(p) => p.write(c.pos, value),
            SendRing::Mpmc(r) => r.write(c.index, value),
        }
    }

    /// Publishes the claimed slot's message and wakes a sleeping receiver.
    #[inline]
    pub fn commit(&self, c: SlotClaim) {
        self.bind.check();
        self.held.set(None);
        match &self.ring {
            SendRing::Spsc(p) => {
                p.commit_push(c.pos);
                if let Some(i) = self.bind.record() {
                    i.retire_one(c.pos);
                }
            }
            SendRing::Mpmc(r) => r.commit_push(c.pos, c.index),
        }
        self.wake_receivers(self.ctrl(), 1);
    }

    /// Gives the claimed slot up without a message. SPSC: the slot simply
    /// stays free. MPMC: a skip record is published, which receivers step
    /// over (a receiver may be waiting behind it, so it is woken).
    ///
    /// In a process other than the attaching one (a loan inherited through
    /// `fork`, dropped in the child), does nothing: the claim is the
    /// parent's to finish.
    pub fn abandon(&self, c: SlotClaim) {
        if self.bind.foreign() {
            return;
        }
        self.held.set(None);
        match &self.ring {
            SendRing::Spsc(_) => {
                if let Some(i) = self.bind.record() {
                    i.retire_one(c.pos);
                }
            }
            SendRing::Mpmc(r) => {
                r.abandon_push(c.pos, c.index);
                self.wake_receivers(self.ctrl(), 1);
            }
        }
    }
}

/// The receiving core.
#[derive(Debug)]
pub struct RawReceiver<T> {
    ctrl: NonNull<QueueControl>,
    ring: RecvRing<T>,
    mode: WakeMode,
    /// As in `RawSender`.
    bind: Binding,
    /// The claim handed out by [`try_claim`](Self::try_claim) /
    /// [`claim_deadline`](Self::claim_deadline) and not yet released; see
    /// `RawSender::held`.
    held: Cell<Option<SlotClaim>>,
}

// SAFETY: as for `RawSender`.
unsafe impl<T: Send> Send for RawReceiver<T> {}

impl<T: Copy> RawReceiver<T> {
    /// Wraps an attached ring.
    ///
    /// # Safety
    /// `ctrl` must stay valid while the receiver is used, and the caller has
    /// counted this receiver with [`QueueControl::attach`].
    pub(crate) unsafe fn new(
        ctrl: NonNull<QueueControl>,
        ring: RecvRing<T>,
        mode: WakeMode,
    ) -> Self {
        RawReceiver {
            ctrl,
            ring,
            mode,
            bind: Binding::default(),
            held: Cell::new(None),
        }
    }

    /// As [`RawSender::bind`].
    ///
    /// # Safety
    /// As [`Binding::new`].
    pub(crate) unsafe fn bind(&mut self, pid: u32, spsc_intent: Option<NonNull<Intent>>) {
        // SAFETY: passed on (this function's contract).
        self.bind = unsafe { Binding::new(pid, spsc_intent) };
    }

    /// As [`RawSender::check_here`].
    #[inline(always)]
    pub(crate) fn check_here(&self) {
        self.bind.check();
    }

    /// Wakes senders after freeing `n` slots, as
    /// [`RawSender::wake_receivers`] wakes receivers.
    #[inline(always)]
    fn wake_senders(&self, ctrl: &QueueControl, n: usize) {
        let mpmc = matches!(self.ring, RecvRing::Mpmc(_));
        wake_side(&ctrl.not_full, self.mode, mpmc, n);
    }

    /// Waits until a sender is attached or a message is queued (true: one
    /// that came, sent and left already counts), or `deadline` passes.
    pub fn wait_for_sender(&self, deadline: Option<Deadline>, reap: &dyn Fn()) -> bool {
        let ctrl = self.ctrl();
        wait_until_ready(&ctrl.not_empty, self.mode, deadline, reap, &|| {
            ctrl.live(Role::Sender) > 0 || ctrl.closed() || self.has_message().unwrap_or(true)
        })
    }

    /// For a blocked receiver that got a message (or a poll that saw one):
    /// whether another message is queued for the next sleeper (MPMC).
    fn more_waiting(&self) -> bool {
        match &self.ring {
            RecvRing::Spsc(_) => false,
            RecvRing::Mpmc(r) => r.len() > 0,
        }
    }

    /// The control block; checks the process, as [`RawSender::ctrl`].
    #[inline(always)]
    pub fn ctrl(&self) -> &QueueControl {
        self.bind.check();
        // SAFETY: valid while the receiver is (contract of `new`).
        unsafe { self.ctrl.as_ref() }
    }

    /// Wakes producers after a pop that stepped over skip records: it freed
    /// slots even if it found no message.
    #[cold]
    fn freed_slots(&self) {
        self.wake_senders(self.ctrl(), 1);
    }

    #[inline(always)]
    fn pop(&self) -> Result<T, PopError> {
        self.settle();
        match &self.ring {
            RecvRing::Spsc(c) => c.try_pop(),
            RecvRing::Mpmc(r) => {
                let mut freed = false;
                let r = r.try_pop(&mut freed);
                if freed {
                    self.freed_slots();
                }
                r
            }
        }
    }

    /// Receives without waiting.
    #[inline(always)]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        let ctrl = self.ctrl();
        let mut popped = self.pop();
        if matches!(popped, Err(PopError::Empty)) {
            if let Some(gone) = ctrl.senders_gone() {
                // Every sender is gone, or the stream closed. The Acquire
                // loads saw their last detach or close, so a second look
                // sees every message they sent.
                popped = self.pop();
                if matches!(popped, Err(PopError::Empty)) {
                    return Err(gone_error(gone));
                }
            }
        }
        match popped {
            Ok(v) => {
                self.wake_senders(ctrl, 1);
                Ok(v)
            }
            Err(PopError::Empty) => Err(TryRecvError::Empty),
            Err(PopError::Corrupted) => Err(TryRecvError::Corrupted),
        }
    }

    /// Receives, waiting until `deadline` (`None`: forever). `Ok(None)`: timed out.
    pub fn recv_deadline(
        &self,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<Option<T>, TryRecvError> {
        let r = block_on(
            &self.ctrl().not_empty,
            self.mode,
            spin,
            deadline,
            reap,
            &|| self.more_waiting(),
            || match self.try_recv() {
                Err(TryRecvError::Empty) => None,
                other => Some(other),
            },
        );
        match r {
            None => Ok(None),
            Some(r) => r.map(Some),
        }
    }

    /// Receives up to `out.len()` messages without waiting (at least one, or an error).
    pub fn try_recv_slice(&self, out: &mut [T]) -> Result<usize, TryRecvError> {
        if out.is_empty() {
            return Ok(0);
        }
        self.settle();
        let ctrl = self.ctrl();
        let grab = |out: &mut [T]| -> Result<usize, PopError> {
            match &self.ring {
                RecvRing::Spsc(c) => c.pop_into(out),
                RecvRing::Mpmc(r) => {
                    let mut freed = false;
                    let got = r.pop_into(out, &mut freed);
                    if freed {
                        self.freed_slots();
                    }
                    got
                }
            }
        };
        let mut got = grab(out);
        let empty = |g: &Result<usize, PopError>| matches!(g, Ok(0) | Err(PopError::Empty));
        if empty(&got) {
            if let Some(gone) = ctrl.senders_gone() {
                got = grab(out);
                if empty(&got) {
                    return Err(gone_error(gone));
                }
            }
        }
        match got {
            Ok(0) | Err(PopError::Empty) => Err(TryRecvError::Empty),
            Ok(n) => {
                self.wake_senders(ctrl, n);
                Ok(n)
            }
            Err(PopError::Corrupted) => Err(TryRecvError::Corrupted),
        }
    }

    /// Receives at least one message (up to `out.len()`), waiting until
    /// `deadline`. `Ok(0)`: timed out (or `out` is empty).
    pub fn recv_slice_deadline(
        &self,
        out: &mut [T],
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<usize, TryRecvError> {
        if out.is_empty() {
            return Ok(0);
        }
        let r = block_on(
            &self.ctrl().not_empty,
            self.mode,
            spin,
            deadline,
            reap,
            &|| self.more_waiting(),
            || match self.try_recv_slice(out) {
                Err(TryRecvError::Empty) => None,
                other => Some(other),
            },
        );
        r.unwrap_or(Ok(0))
    }
}

impl<T: Copy> RawReceiver<T> {
    #[inline]
    fn claim(&self) -> Result<SlotClaim, PopError> {
        // Before anything is claimed: a receiver inherited through fork.
        self.bind.check();
        self.settle();
        match &self.ring {
            RecvRing::Spsc(c) => c.claim_pop().map(|pos| {
                if let Some(i) = self.bind.record() {
                    i.announce_one(pos);
                }
                SlotClaim {
                    pos,
                    index: c.index(pos),
                }
            }),
            RecvRing::Mpmc(r) => {
                let mut freed = false;
                let got = r.claim_pop(&mut freed);
                if freed {
                    self.freed_slots();
                }
                got.map(|(pos, index)| SlotClaim { pos, index })
            }
        }
    }

    /// Claims the oldest message to read in place, without waiting.
    #[inline]
    pub fn try_claim(&self) -> Result<SlotClaim, TryRecvError> {
        let mut claimed = self.claim();
        if matches!(claimed, Err(PopError::Empty)) {
            if let Some(gone) = self.ctrl().senders_gone() {
                // As in `try_recv`: a second look after seeing every sender gone.
                claimed = self.claim();
                if matches!(claimed, Err(PopError::Empty)) {
                    return Err(gone_error(gone));
                }
            }
        }
        let claim = claimed.map_err(|e| match e {
            PopError::Empty => TryRecvError::Empty,
            PopError::Corrupted => TryRecvError::Corrupted,
        })?;
        self.held.set(Some(claim));
        Ok(claim)
    }

    /// Settles a claim whose `Ref` was leaked (see `RawSender::settle`):
    /// the slot is released as the `Ref`'s drop would have, and its message
    /// counts in `lost`. Called first by every call of this handle that
    /// claims or looks for a message, and by the owning handle's drop.
    /// Without it, an MPMC slot would stay claimed for ever (no repair
    /// frees a live endpoint's claim), and an SPSC receiver's next claim
    /// would return the same message again.
    #[inline(always)]
    pub fn settle(&self) {
        if self.held.get().is_some() {
            self.settle_leaked();
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_leaked(&self) {
        if self.bind.foreign() {
            return; // as in `RawSender::settle_leaked`
        }
        if let Some(claim) = self.held.get() {
            self.release(claim);
            // Relaxed: a statistic.
            self.ctrl()
                .peers
                .lost
                .fetch_add(1, crate::loom::Ordering::Relaxed);
        }
    }

    /// Claims the oldest message, waiting until `deadline` (`None`:
    /// forever). `Ok(None)`: timed out.
    pub fn claim_deadline(
        &self,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<Option<SlotClaim>, TryRecvError> {
        self.wait_for(deadline, spin, reap, &mut || self.try_claim())
    }

    /// Runs `attempt` (a non-blocking receive of some kind: a claim, a
    /// screened claim, a look) until it yields anything but `Empty`, waiting
    /// for messages between tries until `deadline` (`None`: forever), as a
    /// blocking receive does. `Ok(None)`: timed out.
    pub fn wait_for<R>(
        &self,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
        attempt: &mut dyn FnMut() -> Result<R, TryRecvError>,
    ) -> Result<Option<R>, TryRecvError> {
        let r = block_on(
            &self.ctrl().not_empty,
            self.mode,
            spin,
            deadline,
            reap,
            &|| self.more_waiting(),
            || match attempt() {
                Err(TryRecvError::Empty) => None,
                other => Some(other),
            },
        );
        match r {
            None => Ok(None),
            Some(r) => r.map(Some),
        }
    }

    /// Whether this is the single consumer of an SPSC ring (whose claims
    /// can be [given back unread](Self::unclaim)).
    pub fn is_spsc(&self) -> bool {
        matches!(self.ring, RecvRing::Spsc(_))
    }

    /// SPSC: gives back a claim from [`try_claim`](Self::try_claim) without
    /// consuming its message, which stays at the head for the next claim
    /// (an SPSC claim only looks at the head; the consumer's index does not
    /// move until the release). Returns false, doing nothing, on an MPMC
    /// ring, whose claims cannot be given back.
    pub fn unclaim(&self, c: SlotClaim) -> bool {
        let RecvRing::Spsc(_) = &self.ring else {
            return false;
        };
        if self.bind.foreign() {
            return true;
        }
        self.held.set(None);
        if let Some(i) = self.bind.record() {
            i.retire_one(c.pos);
        }
        true
    }

    /// Whether a message is waiting, without taking it: exactly when a
    /// claim would find one now. MPMC looks at the head slot's stamp: a
    /// position claimed by a producer and not yet published (a loan in
    /// progress) is no message, and skip records at the head are stepped
    /// over (as a claim would) to see what is behind them.
    pub fn has_message(&self) -> Result<bool, TryRecvError> {
        self.bind.check();
        self.settle();
        let found = match &self.ring {
            RecvRing::Spsc(c) => match c.claim_pop() {
                Ok(_) => Ok(true),
                Err(PopError::Empty) => Ok(false),
                Err(e) => Err(e),
            },
            RecvRing::Mpmc(r) => {
                let mut freed = false;
                let found = r.has_message(&mut freed);
                if freed {
                    self.freed_slots();
                }
                found
            }
        };
        found.map_err(|_| TryRecvError::Corrupted)
    }

    /// Waits until a message is waiting (`Ok(true)`), the deadline passes
    /// (`Ok(false)`), or every sender is gone with nothing queued
    /// (`Err(Disconnected)`). Takes nothing.
    pub fn poll_deadline(
        &self,
        deadline: Option<Deadline>,
        spin: Duration,
        reap: &dyn Fn(),
    ) -> Result<bool, TryRecvError> {
        let r = block_on(
            &self.ctrl().not_empty,
            self.mode,
            spin,
            deadline,
            reap,
            &|| self.more_waiting(),
            || match self.has_message() {
                Ok(true) => Some(Ok(true)),
                Ok(false) => match self.ctrl().senders_gone() {
                    None => None,
                    Some(gone) => match self.has_message() {
                        Ok(true) => Some(Ok(true)),
                        Ok(false) => Some(Err(gone_error(gone))),
                        Err(e) => Some(Err(e)),
                    },
                },
                Err(e) => Some(Err(e)),
            },
        );
        r.unwrap_or(Ok(false))
    }

    /// The claimed slot, to read in place.
    #[inline]
    pub fn slot_ptr(&self, c: &SlotClaim) -> *const T {
        // A loan or in-place read inherited through fork: stopped here.
        self.bind.check();
        match &self.ring {
            RecvRing::Spsc(s) => s.slot_ptr(c.pos),
            RecvRing::Mpmc(r) => r.slot_ptr(c.index),
        }
    }

    /// Reads the claimed slot.
    #[inline]
    pub fn read(&self, c: &SlotClaim) -> T {
        // A loan or in-place read inherited through fork: stopped here.
        self.bind.check();
        match &self.ring {
            RecvRing::Spsc(s) => s.read(c.pos),
            RecvRing::Mpmc(r) => r.read(c.index),
        }
    }

    /// Gives the claimed slot back to producers and wakes a sleeping sender.
    ///
    /// In a process other than the attaching one, does nothing, as
    /// [`RawSender::abandon`].
    #[inline]
    pub fn release(&self, c: SlotClaim) {
        if self.bind.foreign() {
            return;
        }
        self.held.set(None);
        match &self.ring {
            RecvRing::Spsc(s) => {
                s.release_pop(c.pos);
                if let Some(i) = self.bind.record() {
                    i.retire_one(c.pos);
                }
            }
            RecvRing::Mpmc(r) => r.release_pop(c.pos, c.index),
        }
        self.wake_senders(self.ctrl(), 1);
    }
}
