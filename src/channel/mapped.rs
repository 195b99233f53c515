//! The mapped queue that every handle of one queue shares: the segment, the
//! process-local view of its ring, control block, endpoint table and intent
//! records, and what handles do through it — attach and detach, reaping
//! dead endpoints, repairing the claims they left, and removing the name
//! at the end of a stream.

use super::control::{QueueControl, Refused, ENDPOINT_BITS};
use super::layout::{check, Expect, QueueInfo};
use super::payload::Payload;
use super::raw::ReapGate;
use crate::error::SegmentError;
use crate::loom::AtomicU64;
use crate::process;
use crate::ring::mpmc::{Intent, MpmcRing, RepairCursor};
use crate::ring::spsc::SpscRing;
use crate::ring::Slot;
use crate::shm::endpoints::{EndpointInfo, EndpointTable, Reaping, ENDPOINTS};
use crate::shm::header::HeaderFields;
use crate::shm::segment::Segment;
use crate::types::{Flavor, Role};
use crate::wait::{register_process, WakeMode};
use bytemuck::Pod;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Longest a repair pass works before it stops, to resume on the next pass.
const REPAIR_BUDGET: Duration = Duration::from_millis(1);

/// How often `adopt_kept` looks again for a keeping entry that another
/// process's reaper holds, and how long it waits between looks.
const ADOPT_TRIES: u32 = 50;
const ADOPT_PAUSE: Duration = Duration::from_micros(200);

/// A queue segment as mapped in this process, with the process-local view
/// of it that every handle shares (`Arc`): the ring, control block, endpoint
/// table and intent records, checked once at open.
pub(super) struct MappedQueue<T> {
    pub(super) seg: Segment,
    pub(super) ctrl: NonNull<QueueControl>,
    pub(super) table: NonNull<AtomicU64>,
    /// One intent record per endpoint-table entry.
    pub(super) intents: NonNull<Intent>,
    pub(super) ring: Ring<T>,
    pub(super) info: QueueInfo,
    /// Byte queues: the payload area.
    pub(super) payload: Option<Payload>,
    /// The header as validated at open (for checks at attach).
    pub(super) fields: HeaderFields,
    /// MPMC: where this process's next repair pass resumes.
    pub(super) repair_cursor: std::sync::Mutex<RepairCursor>,
}

// SAFETY: the pointers address the mapping owned by `seg`; everything shared
// through them is atomics or ring slots guarded by the ring protocols.
unsafe impl<T: Send> Send for MappedQueue<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for MappedQueue<T> {}

/// The queue's ring, of its flavor.
#[derive(Clone, Copy)]
pub(super) enum Ring<T> {
    Spsc(SpscRing<T>),
    Mpmc(MpmcRing<T>),
}

/// The first of a queue's `slot_count` slots, `slot_stride` bytes apart,
/// when they all lie in the mapping and the first is aligned for `Slot<T>`.
pub(super) fn slots_in<T>(seg: &Segment, f: &HeaderFields) -> Option<NonNull<Slot<T>>> {
    let span = f.slot_count.checked_mul(f.slot_stride)?;
    seg.at::<u8>(f.slots_offset, span)?;
    seg.at::<Slot<T>>(f.slots_offset, 1)
}

impl<T: Pod> MappedQueue<T> {
    /// Builds the process-local view, re-validating the geometry against
    /// the layout this build derives from (flavor, T, capacity): see
    /// [`check`].
    pub(super) fn new(
        seg: Segment,
        fields: &HeaderFields,
        expect: &Expect,
    ) -> Result<Self, SegmentError> {
        let (derived, info) = check::<T>(fields, expect)?;
        let flavor = info.flavor;
        let bad = || SegmentError::Corrupted("layout outside the mapping");
        // Every pointer below comes from the locally derived layout, checked
        // against the mapping's real length by `at`.
        let ctrl = seg
            .at::<QueueControl>(derived.control_offset, 1)
            .ok_or_else(bad)?;
        let table = seg
            .at::<AtomicU64>(derived.endpoints_offset, ENDPOINTS as u64)
            .ok_or_else(bad)?;
        let intents = seg
            .at::<Intent>(
                derived.endpoints_offset + 8 * ENDPOINTS as u64,
                ENDPOINTS as u64,
            )
            .ok_or_else(bad)?;
        // SAFETY: `ctrl` is in bounds and aligned (checked by `at`) and lives
        // as long as `seg`, which `MappedQueue` owns.
        let ctrl_ref = unsafe { ctrl.as_ref() };
        let head = NonNull::from(&*ctrl_ref.head);
        let tail = NonNull::from(&*ctrl_ref.tail);
        let slots = slots_in::<T>(&seg, &derived).ok_or_else(bad)?;
        let stride = derived.slot_stride as usize;
        let ring = match flavor {
            // SAFETY: head, tail and slot_count slots, `stride` bytes apart,
            // lie in the mapping (checked above and by `slots_in`), which
            // lives as long as `MappedQueue`; the stride comes from the
            // locally derived layout (at least one `Slot<T>`, aligned).
            Flavor::Spsc => Ring::Spsc(unsafe {
                SpscRing::from_raw(head, tail, slots, stride, fields.capacity)
            }),
            // SAFETY: as above, `capacity` (= slot_count) slots.
            Flavor::Mpmc => Ring::Mpmc(unsafe {
                MpmcRing::from_raw(head, tail, slots, stride, fields.capacity)
            }),
        };
        let payload = if derived.msg_max > 0 {
            // Payload i: `msg_max` bytes from payload_offset + i * stride
            // (each follows its slot's word).
            let span = (derived.slot_count - 1)
                .checked_mul(derived.payload_stride)
                .and_then(|b| b.checked_add(derived.msg_max))
                .ok_or_else(bad)?;
            let base = seg.at::<u8>(derived.payload_offset, span).ok_or_else(bad)?;
            // SAFETY: slot_count payloads of msg_max bytes, payload_stride
            // apart, lie in the mapping (checked by `at`), which lives as
            // long as `MappedQueue`; msg_max <= payload_stride by
            // construction of the layout.
            Some(unsafe {
                Payload::from_raw(
                    base,
                    derived.payload_stride as usize,
                    derived.msg_max as usize,
                    derived.slot_count,
                )
            })
        } else {
            None
        };
        Ok(MappedQueue {
            seg,
            ctrl,
            table,
            intents,
            ring,
            payload,
            fields: *fields,
            repair_cursor: std::sync::Mutex::new(RepairCursor::default()),
            info,
        })
    }

    pub(super) fn ctrl(&self) -> &QueueControl {
        // SAFETY: in bounds, aligned, and alive as long as `self.seg`.
        unsafe { self.ctrl.as_ref() }
    }

    pub(super) fn table(&self) -> EndpointTable<'_> {
        // SAFETY: ENDPOINTS words in bounds (checked in `new`), alive as
        // long as `self.seg`. The last entry is never handed out: its bit
        // is the stream's closed flag (`control::CLOSED`).
        EndpointTable::new(unsafe {
            std::slice::from_raw_parts(self.table.as_ptr(), ENDPOINT_BITS)
        })
    }

    pub(super) fn intents(&self) -> &[Intent] {
        // SAFETY: ENDPOINTS records in bounds and aligned (checked in
        // `new`), alive as long as `self.seg`; all atomics.
        unsafe { std::slice::from_raw_parts(self.intents.as_ptr(), ENDPOINTS) }
    }

    /// SPSC: endpoint `info`'s intent record, cleared (a previous owner's
    /// was settled before its entry was freed). MPMC: `None` (the ring view
    /// carries it, see `intent_view`).
    pub(super) fn spsc_record(&self, info: &EndpointInfo) -> Option<NonNull<Intent>> {
        if !matches!(self.ring, Ring::Spsc(_)) {
            return None;
        }
        let record = &self.intents()[info.index % ENDPOINTS];
        record.reset();
        Some(NonNull::from(record))
    }

    /// SPSC: settles what dead endpoints announced — a consumer's in-place
    /// read never released is stepped over (never delivered again), a
    /// producer's loan never committed is just counted — and counts each
    /// once. Only for the entries in `won`, which the calling reaper holds
    /// (their role bits are still set): no new endpoint can take an entry's
    /// record, or its role, meanwhile.
    pub(super) fn repair_spsc(&self, ring: &SpscRing<T>, won: &[Reaping]) -> u64 {
        let mut lost = 0;
        let mut freed = false;
        for r in won {
            let e = r.entry;
            let record = &self.intents()[e.index % ENDPOINTS];
            match e.role {
                Role::Receiver => {
                    if ring.repair_dead_consumer(record) {
                        lost += 1;
                        freed = true;
                    }
                }
                Role::Sender => lost += u64::from(ring.repair_dead_producer(record)),
            }
        }
        if lost > 0 {
            // Relaxed: a statistic.
            self.ctrl().peers.lost.fetch_add(lost, Ordering::Relaxed);
        }
        if freed {
            self.ctrl().not_full.wake_all();
        }
        lost
    }

    /// MPMC: turns claims that dead processes left in flight into skip
    /// records (unpublished) or free slots (unreleased), counts the lost
    /// messages, and wakes both sides. Returns how many were lost. (SPSC:
    /// `repair_spsc`, by the reaper holding the dead entries.)
    pub(super) fn repair(&self) -> u64 {
        let Ring::Mpmc(ring) = &self.ring else {
            return 0;
        };
        let cache = LiveCache::new(self);
        let live = |i: usize| cache.live(i);
        // Each pass works for at most REPAIR_BUDGET (checked every
        // REPAIR_BATCH positions), then resumes where it stopped on the
        // next pass: a repair inside a timed call overruns its deadline by
        // that much at most, whatever the capacity.
        let until = std::time::Instant::now() + REPAIR_BUDGET;
        let stop = || std::time::Instant::now() >= until;
        let mut own = RepairCursor::default();
        let mut shared_cursor = self.repair_cursor.try_lock().ok();
        let cursor = shared_cursor.as_deref_mut().unwrap_or(&mut own);
        let done = ring.repair(self.intents(), &live, &stop, cursor);
        drop(shared_cursor);
        if done.lost > 0 {
            // Relaxed: a statistic.
            self.ctrl()
                .peers
                .lost
                .fetch_add(done.lost, Ordering::Relaxed);
        }
        if done.slots > 0 {
            // Skip records and freed slots are news to both sides. (Nothing
            // repaired, nobody woken: a reaper that keeps finding a claim
            // still pending must not wake every sleeper each slice.)
            self.ctrl().not_empty.wake_all();
            self.ctrl().not_full.wake_all();
        }
        done.lost
    }

    /// MPMC: marks the claims of endpoint `info` (a receiver of this
    /// process) as kept. SPSC: `FlavorMismatch` (its claims are settled by
    /// stepping over, see `repair_spsc`, and cannot be kept).
    pub(super) fn keep_claims(&self, info: &EndpointInfo) -> Result<(), SegmentError> {
        if !matches!(self.ring, Ring::Mpmc(_)) {
            return Err(SegmentError::FlavorMismatch {
                expected: Flavor::Mpmc,
                found: Flavor::Spsc,
            });
        }
        self.intents()[info.index % ENDPOINTS].set_keep();
        Ok(())
    }

    /// Whether endpoint `index`'s intent record covers a claim that is
    /// not finished yet (MPMC).
    pub(super) fn claim_pending(&self, index: usize) -> bool {
        match &self.ring {
            Ring::Mpmc(ring) => ring.claim_pending(&self.intents()[index % ENDPOINTS]),
            Ring::Spsc(_) => false,
        }
    }

    /// Reclaims the endpoints of `role` whose processes are proven dead,
    /// after repairing the claims they left in flight.
    ///
    /// Each dead entry is first won with a CAS naming this process as its
    /// reaper ([`EndpointTable::begin_reap`]): of several reapers racing
    /// over one dead endpoint, exactly one clears its role bit and frees
    /// it, and none can clear the bit of an endpoint that claimed the entry
    /// again after it was freed.
    ///
    /// The dead are listed once: an endpoint that dies while this runs is
    /// left for the next reaper (releasing it unrepaired would orphan its
    /// claim). An entry whose intent still covers an unfinished claim after
    /// the repair (a live endpoint's announcement covered the same position,
    /// so the repair could not decide) is given back to its dead owner, and
    /// with it its intent record, until a later repair settles the claim;
    /// its role bit goes at once, so the disconnect is seen.
    pub(super) fn reap(&self, role: Role) {
        if Segment::check_pid_namespace(&self.fields).is_err() {
            // A handle inherited into another pid namespace: the pids in
            // the table mean other processes, or none, here. Judge nobody.
            return;
        }
        let ctrl = self.ctrl();
        let table = self.table();
        let mut dead = table.dead(role).peekable();
        if dead.peek().is_none() {
            return;
        }
        let me = process::current();
        let won: Vec<Reaping> = dead.filter_map(|d| table.begin_reap(&d, me)).collect();
        if won.is_empty() {
            return;
        }
        match &self.ring {
            Ring::Spsc(ring) => {
                self.repair_spsc(ring, &won);
            }
            Ring::Mpmc(_) => {
                self.repair();
            }
        }
        for r in won {
            // Clear the bit first (idempotent; ours to clear while we hold
            // the entry), then free the entry.
            ctrl.detach(role, r.entry.index as u32);
            if self.claim_pending(r.entry.index) {
                let _ = table.give_back(r);
                continue;
            }
            if table.release(&r.entry) {
                // Relaxed: a statistic.
                ctrl.peers
                    .reaped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        // The dead may have been all that kept an ended stream's name.
        self.remove_if_ended_now();
    }

    /// For a poll that found nothing to do (empty, or full), counted in
    /// the handle's `gate`: at most once a liveness slice of such polls,
    /// reclaims dead endpoints of `role` (the side it waits for), repairing
    /// their claims. True when it did: poll again, the answer may differ
    /// (`Disconnected`, or a slot freed or a message behind a repaired one).
    #[inline(always)]
    pub(super) fn reap_if_idle(&self, gate: &ReapGate, role: Role) -> bool {
        gate.idle_poll() && self.reap_idle(role)
    }

    #[cold]
    #[inline(never)]
    fn reap_idle(&self, role: Role) -> bool {
        self.reap(role);
        true
    }

    /// For a blocked or timed call (after a slice asleep unwoken, or at its
    /// deadline): reclaims dead endpoints of `role` unless the handle's
    /// `gate` checked within the last half slice.
    pub(super) fn reap_if_blocked(&self, gate: &ReapGate, role: Role) {
        if gate.blocked() {
            self.reap(role);
        }
    }

    /// Whether every message was taken, for ending a stream: an SPSC ring
    /// asks its stamps, not the `tail` hint `len` reads, which a producer
    /// killed between its last stamp and the hint leaves behind (the name
    /// of a stream with a message still queued must stay).
    fn drained(&self) -> bool {
        match &self.ring {
            Ring::Spsc(r) => r.drained(),
            // A message kept for an adopter is not in `len` (a receiver
            // claimed it), but the name must stay for the adopter.
            Ring::Mpmc(r) => r.len() == 0 && !self.kept_pending(),
        }
    }

    /// MPMC: whether a receiver's entry that keeps its claims still covers
    /// an unfinished claim (a dead keeper's kept message waits for an
    /// adopter; a live keeper counts as a live endpoint anyway).
    fn kept_pending(&self) -> bool {
        self.table().entries().any(|e| {
            e.role == Role::Receiver
                && self.intents()[e.index % ENDPOINTS].keeps()
                && self.claim_pending(e.index)
        })
    }

    pub(super) fn len(&self) -> u64 {
        match &self.ring {
            Ring::Spsc(r) => r.len(),
            Ring::Mpmc(r) => r.len(),
        }
    }

    /// Claims an endpoint entry and the role bit.
    /// Returns the entry and the role's new generation.
    pub(super) fn attach(&self, role: Role) -> Result<(EndpointInfo, u64), SegmentError> {
        // Checked at open too; again here for a handle inherited by a child
        // forked into a new pid namespace.
        Segment::check_pid_namespace(&self.fields)?;
        if self.info.wake_mode == WakeMode::Fast {
            // Only Fast segments' sleepers send the host-wide barrier, so
            // only their users need to receive it.
            register_process();
        }
        let me = process::current();
        let exclusive = self.info.flavor == Flavor::Spsc;
        for attempt in 0..2 {
            let Some(info) = self.table().claim(role, me) else {
                if attempt == 0 {
                    self.reap(Role::Sender);
                    self.reap(Role::Receiver);
                    continue;
                }
                return Err(SegmentError::TooManyEndpoints(ENDPOINT_BITS));
            };
            match self.ctrl().attach(role, info.index as u32, exclusive) {
                Ok(generation) => return Ok((info, generation)),
                Err(Refused::Closed) => {
                    self.table().release(&info);
                    // A producer restarted after the end: if the stream
                    // has ended (dead endpoints aside), free its name, so
                    // that `open_or_create` makes a new one.
                    self.remove_if_ended();
                    return Err(SegmentError::Closed);
                }
                Err(Refused::Taken) => {}
            }
            self.table().release(&info);
            if attempt == 0 {
                // The holder may be dead: reclaim, then try once more.
                self.reap(role);
            }
        }
        // Name the holder: a live entry of the role (not ours).
        let holder = self
            .table()
            .entries()
            .find(|e| e.role == role && !e.reaping)
            .map(|e| e.owner.pid);
        Err(SegmentError::RoleTaken { role, holder })
    }

    /// The ring as seen by the endpoint `info`: announcing its claims in
    /// its own intent record (cleared first: a previous owner's is stale).
    pub(super) fn intent_view(&self, ring: MpmcRing<T>, info: &EndpointInfo) -> MpmcRing<T> {
        let record = &self.intents()[info.index % ENDPOINTS];
        record.reset();
        // SAFETY: the record lives as long as the mapping (kept alive by
        // the handle's Arc), and entry `info.index` is this endpoint's alone
        // while it is attached.
        unsafe { ring.with_intent(NonNull::from(record)) }
    }

    pub(super) fn detach(&self, role: Role, info: &EndpointInfo) {
        self.ctrl().detach(role, info.index as u32);
        self.table().release(info);
        self.remove_if_ended();
    }

    /// The end of a named stream: once it is closed, every message was
    /// taken and the last endpoint left, the name is removed, by exactly
    /// one process (and only if it still names this segment). Anyone who
    /// opened it meanwhile finds a closed stream; a later `open_or_create`
    /// makes a new one.
    ///
    /// Endpoints of dead processes do not keep an ended stream's name:
    /// they are reaped here first. True if the name no longer names this
    /// segment (removed now or before).
    pub(super) fn remove_if_ended(&self) -> bool {
        let c = self.ctrl();
        if !c.closed() || self.seg.path().is_none() || !self.drained() {
            return false;
        }
        if c.live(Role::Sender) + c.live(Role::Receiver) != 0 {
            // Perhaps only dead ones are left (each reap ends with
            // `remove_if_ended_now`).
            self.reap(Role::Sender);
            self.reap(Role::Receiver);
        }
        self.remove_if_ended_now();
        !self.seg.still_named()
    }

    /// `remove_if_ended` without reaping first: for the end of a reap.
    pub(super) fn remove_if_ended_now(&self) {
        let c = self.ctrl();
        if c.closed()
            && c.live(Role::Sender) == 0
            && c.live(Role::Receiver) == 0
            && self.drained()
            && self.seg.path().is_some()
            && c.claim_removal()
        {
            self.seg.remove_if_same();
        }
    }
}

impl MappedQueue<u64> {
    /// MPMC byte queues: hands the messages that dead receivers keeping
    /// their claims left claimed to `f` (see `ByteQueue::adopt_kept`).
    ///
    /// The dead receivers whose records have KEEP are won as a reaper wins
    /// them ([`EndpointTable::begin_reap`]): of several adopters (or an
    /// adopter and a reaper) one holds each entry, and only the holder of
    /// every keeping record that covers a message hands it out. Their role
    /// bits go (as a reap clears them); their other claims are repaired;
    /// then the kept messages are handed out, oldest first; finally each
    /// entry is freed if nothing of it is pending any more, or given back
    /// to its dead owner (still kept, for a later call) — also when `f`
    /// fails or panics.
    pub(super) fn adopt_kept<E>(
        &self,
        f: &mut super::bytes_core::Adopt<'_, E>,
    ) -> Result<usize, E> {
        let (Ring::Mpmc(ring), Some(payload)) = (&self.ring, &self.payload) else {
            return Ok(0);
        };
        if Segment::check_pid_namespace(&self.fields).is_err() {
            // As in `reap`: nobody's death can be proven from here.
            return Ok(0);
        }
        let table = self.table();
        let me = process::current();
        let keeps = |i: usize| self.intents()[i % ENDPOINTS].keeps();
        let mut won = WonEntries {
            queue: self,
            won: Vec::new(),
        };
        for _ in 0..ADOPT_TRIES {
            let mine = |i: usize| won.won.iter().any(|r| r.entry.index == i);
            let newly: Vec<Reaping> = table
                .dead(Role::Receiver)
                // A dead entry's record is stable (its endpoint is gone,
                // and nobody else takes the entry while it is held).
                .filter(|d| keeps(d.index) && !mine(d.index))
                .filter_map(|d| table.begin_reap(&d, me))
                .collect();
            won.won.extend(newly);
            // A keeping entry held by someone else's live reaper (a reap
            // holds one for a moment) would be missed: wait a little for
            // it. One held by another adopter stays missed after the last
            // try, for a later call (the caller cannot tell them apart).
            let mine = |i: usize| won.won.iter().any(|r| r.entry.index == i);
            let busy = table
                .entries()
                .any(|e| e.role == Role::Receiver && e.reaping && !mine(e.index) && keeps(e.index));
            if !busy {
                break;
            }
            std::thread::sleep(ADOPT_PAUSE);
        }
        if won.won.is_empty() {
            return Ok(0);
        }
        for r in &won.won {
            // As in `reap`: the dead receiver is disconnected at once.
            self.ctrl().detach(Role::Receiver, r.entry.index as u32);
        }
        // What is not kept (a skip record being stepped over, the claims of
        // dead receivers that do not keep theirs) is settled as usual.
        self.repair();
        let held = |i: usize| won.won.iter().any(|r| r.entry.index == i);
        let cache = LiveCache::new(self);
        let live = |i: usize| cache.live(i);
        super::bytes_core::adopt_kept(ring, payload, self.ctrl(), self.intents(), &live, &held, f)
        // `won` drops here: each entry freed or given back.
    }
}

/// Liveness of the endpoint-table entries for one repair or adoption
/// pass: read from /proc once per entry and pass, keyed by the entry's word
/// (owner pid + start time), so that an entry freed and taken by another
/// process during the pass is asked again, never judged by its previous
/// owner's death.
struct LiveCache<'a> {
    table: EndpointTable<'a>,
    words: &'a [AtomicU64],
    cache: [std::cell::Cell<(u64, bool)>; ENDPOINTS],
}

impl<'a> LiveCache<'a> {
    fn new<T: Pod>(q: &'a MappedQueue<T>) -> Self {
        LiveCache {
            table: q.table(),
            // SAFETY: as in `MappedQueue::table`.
            words: unsafe { std::slice::from_raw_parts(q.table.as_ptr(), ENDPOINTS) },
            cache: std::array::from_fn(|_| std::cell::Cell::new((0, false))),
        }
    }

    /// Whether entry `i` may be held by a live endpoint (for the repair's
    /// `live` callback).
    fn live(&self, i: usize) -> bool {
        let Some(word) = self.words.get(i) else {
            return false;
        };
        // Acquire: as in `EndpointTable::held_by_live`.
        let w = word.load(Ordering::Acquire);
        if w == 0 {
            // A free entry claims nothing: a live endpoint empties its
            // record before it detaches (settled, retired), and a reaper
            // frees a dead one's entry only once its claims are settled
            // (`claim_pending`). Its stale record need not be walked.
            return true;
        }
        let (cached, alive) = self.cache[i].get();
        if w == cached {
            return alive;
        }
        let alive = self.table.held_by_live(i);
        // Acquire: as above; cache only an answer about this word.
        if word.load(Ordering::Acquire) == w {
            self.cache[i].set((w, alive));
        }
        alive
    }
}

/// The dead receivers' entries an adopter won: on drop (also when its
/// callback fails or panics), each is freed if its claims are all settled,
/// or given back to its dead owner, as `reap` finishes the entries it won.
struct WonEntries<'a, T: Pod> {
    queue: &'a MappedQueue<T>,
    won: Vec<Reaping>,
}

impl<T: Pod> Drop for WonEntries<'_, T> {
    fn drop(&mut self) {
        let q = self.queue;
        let table = q.table();
        let ctrl = q.ctrl();
        for r in self.won.drain(..) {
            if q.claim_pending(r.entry.index) {
                let _ = table.give_back(r);
            } else if table.release(&r.entry) {
                // Relaxed: a statistic.
                ctrl.peers.reaped.fetch_add(1, Ordering::Relaxed);
            }
        }
        q.remove_if_ended_now();
    }
}

/// The four snapshot accessors every queue handle has (`Queue`, `Sender`,
/// `Receiver` and their byte counterparts), defined once: `len`,
/// `is_empty`, `is_full`, `capacity`, read through the handle's
/// `MappedQueue` at the given field path.
macro_rules! snapshot_accessors {
    ($($field:ident).+) => {
        /// Messages queued now (a snapshot).
        pub fn len(&self) -> usize {
            self.$($field).+.len() as usize
        }

        /// Whether no message is queued (a snapshot).
        pub fn is_empty(&self) -> bool {
            self.len() == 0
        }

        /// Whether the queue is at capacity (a snapshot).
        pub fn is_full(&self) -> bool {
            self.len() >= self.capacity()
        }

        /// Maximum messages queued.
        pub fn capacity(&self) -> usize {
            self.$($field).+.info.capacity as usize
        }
    };
}
pub(super) use snapshot_accessors;
