//! The public `Queue<T>`, `Sender<T>`, `Receiver<T>` over mapped segments.

use super::control::{QueueControl, Refused, ENDPOINT_BITS};
use super::payload::Payload;
use super::raw::{RawReceiver, RawSender, ReapGate, RecvRing, SendRing, DEFAULT_SPIN};
use crate::error::{
    Flavor, Kind, RecvError, RecvTimeoutError, Role, SegmentError, SendError, SendTimeoutError,
    TryRecvError, TrySendError, TypeDesc,
};
use crate::loom::AtomicU64;
use crate::process;
use crate::ring::mpmc::{Intent, MpmcRing, MpmcSlot, RepairCursor};
use crate::ring::spsc::{self, SpscRing};
use crate::shm::endpoints::{EndpointInfo, EndpointTable, Reaping, ENDPOINTS};
use crate::shm::header::{type_desc, HeaderFields, HEADER_LEN};
use crate::shm::segment::{Location, Segment, SegmentOptions};
use crate::wait::{register_process, Deadline, WakeMode};
use bytemuck::Pod;
use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// `kind` header value of a queue of `Pod` values.
pub(crate) const KIND_QUEUE: u32 = Kind::Queue.raw();
/// `kind` header value of a queue of byte messages.
pub(crate) const KIND_BYTES: u32 = Kind::ByteQueue.raw();
pub(crate) const FLAVOR_SPSC: u32 = 1;
pub(crate) const FLAVOR_MPMC: u32 = 2;
const WAKE_FAST: u32 = 1;
const WAKE_STRICT: u32 = 2;

/// Longest a repair pass works before it stops, to resume on the next pass.
const REPAIR_BUDGET: Duration = Duration::from_millis(1);

/// Bytes per intent record.
const INTENT_LEN: u64 = std::mem::size_of::<Intent>() as u64;

/// Largest capacity a queue accepts.
pub const MAX_CAPACITY: u64 = 1 << 32;

/// Largest maximum message size a byte queue accepts (1 GiB).
pub const MAX_MESSAGE: u64 = 1 << 30;

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// The queue's layout in its segment, derived from flavor, type, capacity
/// and, for byte messages (`msg_max > 0`), the largest message.
fn layout<T>(flavor: Flavor, capacity: u64, msg_max: u64) -> Result<HeaderFields, SegmentError> {
    if capacity == 0 {
        return Err(SegmentError::InvalidArgument(
            "queue capacity must be at least 1".into(),
        ));
    }
    if capacity > MAX_CAPACITY {
        return Err(SegmentError::InvalidArgument(format!(
            "queue capacity {capacity} exceeds the maximum {MAX_CAPACITY}"
        )));
    }
    let elem = type_desc::<T>();
    let (slot_count, slot_stride, slot_align) = match flavor {
        Flavor::Spsc => (spsc::slot_count(capacity), elem.size, elem.align),
        Flavor::Mpmc => (
            capacity,
            std::mem::size_of::<MpmcSlot<T>>() as u64,
            std::mem::align_of::<MpmcSlot<T>>() as u64,
        ),
    };
    let too_big = || SegmentError::InvalidArgument("queue size overflows".into());
    let control_offset = HEADER_LEN;
    let endpoints_offset = control_offset + std::mem::size_of::<QueueControl>() as u64;
    // The intent records (MPMC claims in flight, one line per endpoint)
    // follow the endpoint table.
    let intents_offset = endpoints_offset + 8 * ENDPOINTS as u64;
    let slots_offset = align_up(
        intents_offset + INTENT_LEN * ENDPOINTS as u64,
        slot_align.max(128),
    )
    .ok_or_else(too_big)?;
    if msg_max > MAX_MESSAGE {
        return Err(SegmentError::InvalidArgument(format!(
            "maximum message size {msg_max} exceeds the limit {MAX_MESSAGE}"
        )));
    }
    let slots_end = slot_count
        .checked_mul(slot_stride)
        .and_then(|b| b.checked_add(slots_offset))
        .ok_or_else(too_big)?;
    // Byte messages: one payload per slot, each on its own cache lines.
    let (payload_offset, payload_stride) = if msg_max > 0 {
        (
            align_up(slots_end, 128).ok_or_else(too_big)?,
            align_up(msg_max, 64).ok_or_else(too_big)?,
        )
    } else {
        (0, 0)
    };
    let total_len = slot_count
        .checked_mul(payload_stride)
        .and_then(|b| b.checked_add(payload_offset.max(slots_end)))
        .filter(|&t| t <= isize::MAX as u64)
        .ok_or_else(too_big)?;
    Ok(HeaderFields {
        kind: if msg_max > 0 { KIND_BYTES } else { KIND_QUEUE },
        msg_max,
        payload_offset,
        payload_stride,
        flavor: match flavor {
            Flavor::Spsc => FLAVOR_SPSC,
            Flavor::Mpmc => FLAVOR_MPMC,
        },
        elem_size: elem.size,
        elem_align: elem.align,
        type_fingerprint: elem.fingerprint,
        type_name: elem.name.words(),
        capacity,
        slot_count,
        slot_stride,
        control_offset,
        endpoints_offset,
        endpoint_count: ENDPOINTS as u64,
        slots_offset,
        total_len,
        ..HeaderFields::default()
    })
}

/// A description of a queue segment, from its header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueInfo {
    /// SPSC or MPMC.
    pub flavor: Flavor,
    /// Maximum messages queued.
    pub capacity: u64,
    /// The element type as recorded.
    pub elem: TypeDesc,
    /// The wake protocol.
    pub wake_mode: WakeMode,
    /// Bytes in the segment.
    pub total_len: u64,
    /// Pid of the process that created it.
    pub creator_pid: u32,
}

pub(super) struct Shared<T> {
    seg: Segment,
    ctrl: NonNull<QueueControl>,
    table: NonNull<AtomicU64>,
    /// One intent record per endpoint-table entry.
    intents: NonNull<Intent>,
    ring: Ring<T>,
    info: QueueInfo,
    /// Byte queues: the payload area.
    pub(super) payload: Option<Payload>,
    /// The header as validated at open (for checks at attach).
    fields: HeaderFields,
    /// MPMC: where this process's next repair pass resumes.
    repair_cursor: std::sync::Mutex<RepairCursor>,
}

// SAFETY: the pointers address the mapping owned by `seg`; everything shared
// through them is atomics or ring slots guarded by the ring protocols.
unsafe impl<T: Send> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for Shared<T> {}

#[derive(Clone, Copy)]
enum Ring<T> {
    Spsc(SpscRing<T>),
    Mpmc(MpmcRing<T>),
}

impl<T: Pod> Shared<T> {
    /// Builds the process-local view, re-validating the geometry against
    /// the layout this build derives from (flavor, T, capacity).
    fn new(seg: Segment, fields: &HeaderFields, expect: &Expect) -> Result<Self, SegmentError> {
        let (want_kind, want_kind_name) = if expect.bytes {
            (KIND_BYTES, Kind::ByteQueue)
        } else {
            (KIND_QUEUE, Kind::Queue)
        };
        if fields.kind != want_kind {
            return Err(SegmentError::WrongKind {
                expected: want_kind_name,
                found: Kind::from_raw(fields.kind),
            });
        }
        if expect.bytes && !(1..=MAX_MESSAGE).contains(&fields.msg_max) {
            return Err(SegmentError::Corrupted("maximum message size out of range"));
        }
        if let Some(max) = expect.msg_max {
            if max != fields.msg_max {
                return Err(SegmentError::MessageSizeMismatch {
                    expected: max,
                    found: fields.msg_max,
                });
            }
        }
        let flavor = match fields.flavor {
            FLAVOR_SPSC => Flavor::Spsc,
            FLAVOR_MPMC => Flavor::Mpmc,
            _ => return Err(SegmentError::Corrupted("unknown queue flavor")),
        };
        if let Some(want) = expect.flavor {
            if want != flavor {
                return Err(SegmentError::FlavorMismatch {
                    expected: want,
                    found: flavor,
                });
            }
        }
        let want = type_desc::<T>();
        if fields.elem() != want {
            return Err(SegmentError::TypeMismatch {
                expected: want,
                found: fields.elem(),
            });
        }
        if let Some(cap) = expect.capacity {
            if cap != fields.capacity {
                return Err(SegmentError::CapacityMismatch {
                    expected: cap,
                    found: fields.capacity,
                });
            }
        }
        let wake_mode = match fields.wake_mode {
            WAKE_FAST => WakeMode::Fast,
            WAKE_STRICT => WakeMode::Strict,
            _ => return Err(SegmentError::Corrupted("unknown wake mode")),
        };
        let msg_max = if expect.bytes { fields.msg_max } else { 0 };
        let derived = layout::<T>(flavor, fields.capacity, msg_max)
            .map_err(|_| SegmentError::Corrupted("capacity out of range"))?;
        if (
            derived.slot_count,
            derived.slot_stride,
            derived.control_offset,
            derived.endpoints_offset,
            derived.endpoint_count,
            derived.slots_offset,
            derived.total_len,
            derived.msg_max,
            derived.payload_offset,
            derived.payload_stride,
        ) != (
            fields.slot_count,
            fields.slot_stride,
            fields.control_offset,
            fields.endpoints_offset,
            fields.endpoint_count,
            fields.slots_offset,
            fields.total_len,
            fields.msg_max,
            fields.payload_offset,
            fields.payload_stride,
        ) {
            return Err(SegmentError::Corrupted(
                "layout fields disagree with capacity and type",
            ));
        }
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
        // as long as `seg`, which `Shared` owns.
        let ctrl_ref = unsafe { ctrl.as_ref() };
        let head = NonNull::from(&*ctrl_ref.head);
        let tail = NonNull::from(&*ctrl_ref.tail);
        let ring = match flavor {
            Flavor::Spsc => {
                let slots = seg
                    .at(derived.slots_offset, derived.slot_count)
                    .ok_or_else(bad)?;
                // SAFETY: head, tail and slot_count slots lie in the mapping
                // (checked above), which lives as long as `Shared`.
                Ring::Spsc(unsafe { SpscRing::from_raw(head, tail, slots, fields.capacity) })
            }
            Flavor::Mpmc => {
                let slots = seg
                    .at(derived.slots_offset, derived.slot_count)
                    .ok_or_else(bad)?;
                // SAFETY: as above, `capacity` slots.
                Ring::Mpmc(unsafe { MpmcRing::from_raw(head, tail, slots, fields.capacity) })
            }
        };
        let payload = if derived.msg_max > 0 {
            let base = seg
                .at::<u8>(
                    derived.payload_offset,
                    derived.slot_count * derived.payload_stride,
                )
                .ok_or_else(bad)?;
            // SAFETY: slot_count payloads of payload_stride bytes lie in the
            // mapping (checked by `at`), which lives as long as `Shared`;
            // msg_max <= payload_stride by construction of the layout.
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
        Ok(Shared {
            seg,
            ctrl,
            table,
            intents,
            ring,
            payload,
            fields: *fields,
            repair_cursor: std::sync::Mutex::new(RepairCursor::default()),
            info: QueueInfo {
                flavor,
                capacity: fields.capacity,
                elem: fields.elem(),
                wake_mode,
                total_len: fields.total_len,
                creator_pid: fields.creator_pid,
            },
        })
    }

    fn ctrl(&self) -> &QueueControl {
        // SAFETY: in bounds, aligned, and alive as long as `self.seg`.
        unsafe { self.ctrl.as_ref() }
    }

    fn table(&self) -> EndpointTable<'_> {
        // SAFETY: ENDPOINTS words in bounds (checked in `new`), alive as
        // long as `self.seg`. The last entry is never handed out: its bit
        // is the stream's closed flag (`control::CLOSED`).
        EndpointTable::new(unsafe {
            std::slice::from_raw_parts(self.table.as_ptr(), ENDPOINT_BITS)
        })
    }

    fn intents(&self) -> &[Intent] {
        // SAFETY: ENDPOINTS records in bounds and aligned (checked in
        // `new`), alive as long as `self.seg`; all atomics.
        unsafe { std::slice::from_raw_parts(self.intents.as_ptr(), ENDPOINTS) }
    }

    /// SPSC: endpoint `info`'s intent record, cleared (a previous owner's
    /// was settled before its entry was freed). MPMC: `None` (the ring view
    /// carries it, see `intent_view`).
    fn spsc_record(&self, info: &EndpointInfo) -> Option<NonNull<Intent>> {
        if !matches!(self.ring, Ring::Spsc(_)) {
            return None;
        }
        let record = &self.intents()[info.index % ENDPOINTS];
        record.clear();
        Some(NonNull::from(record))
    }

    /// SPSC: settles what dead endpoints announced — a consumer's in-place
    /// read never released is stepped over (never delivered again), a
    /// producer's loan never committed is just counted — and counts each
    /// once. Only for the entries in `won`, which the calling reaper holds
    /// (their role bits are still set): no new endpoint can take an entry's
    /// record, or its role, meanwhile.
    fn repair_spsc(&self, ring: &SpscRing<T>, won: &[Reaping]) -> u64 {
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
    fn repair(&self) -> u64 {
        let Ring::Mpmc(ring) = &self.ring else {
            return 0;
        };
        let table = self.table();
        // SAFETY: as in `table`.
        let words = unsafe { std::slice::from_raw_parts(self.table.as_ptr(), ENDPOINTS) };
        // Liveness, read from /proc once per entry and pass, keyed by the
        // entry's word (owner pid + start time): an entry freed and taken
        // by another process during the pass is asked again, never judged
        // by its previous owner's death.
        let cache: [std::cell::Cell<(u64, bool)>; ENDPOINTS] =
            std::array::from_fn(|_| std::cell::Cell::new((0, false)));
        let live = |i: usize| {
            let Some(word) = words.get(i) else {
                return false;
            };
            // Acquire: as in `EndpointTable::held_by_live`.
            let w = word.load(Ordering::Acquire);
            if w == 0 {
                // A free entry claims nothing: a live endpoint empties its
                // record before it detaches (settled, retired), and a
                // reaper frees a dead one's entry only once its claims are
                // settled (`claim_pending`). Its stale record need not be
                // walked.
                return true;
            }
            let (cached, alive) = cache[i].get();
            if w == cached {
                return alive;
            }
            let alive = table.held_by_live(i);
            // Acquire: as above; cache only an answer about this word.
            if word.load(Ordering::Acquire) == w {
                cache[i].set((w, alive));
            }
            alive
        };
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

    /// Whether endpoint `index`'s intent record covers a claim that is
    /// not finished yet (MPMC).
    fn claim_pending(&self, index: usize) -> bool {
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
    fn reap(&self, role: Role) {
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
    fn reap_if_idle(&self, gate: &ReapGate, role: Role) -> bool {
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
    fn reap_if_blocked(&self, gate: &ReapGate, role: Role) {
        if gate.blocked() {
            self.reap(role);
        }
    }

    fn len(&self) -> u64 {
        match &self.ring {
            Ring::Spsc(r) => r.len(),
            Ring::Mpmc(r) => r.len(),
        }
    }

    /// Claims an endpoint entry and the role bit.
    /// Returns the entry and the role's new generation.
    fn attach(&self, role: Role) -> Result<(EndpointInfo, u64), SegmentError> {
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
    fn intent_view(&self, ring: MpmcRing<T>, info: &EndpointInfo) -> MpmcRing<T> {
        let record = &self.intents()[info.index % ENDPOINTS];
        record.clear();
        // SAFETY: the record lives as long as the mapping (kept alive by
        // the handle's Arc), and entry `info.index` is this endpoint's alone
        // while it is attached.
        unsafe { ring.with_intent(NonNull::from(record)) }
    }

    fn detach(&self, role: Role, info: &EndpointInfo) {
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
    fn remove_if_ended(&self) -> bool {
        let c = self.ctrl();
        if !c.closed() || self.seg.path().is_none() || self.len() != 0 {
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
    fn remove_if_ended_now(&self) {
        let c = self.ctrl();
        if c.closed()
            && c.live(Role::Sender) == 0
            && c.live(Role::Receiver) == 0
            && self.len() == 0
            && self.seg.path().is_some()
            && c.claim_removal()
        {
            self.seg.remove_if_same();
        }
    }
}

struct Expect {
    flavor: Option<Flavor>,
    capacity: Option<u64>,
    /// A byte queue (else a queue of `T`).
    bytes: bool,
    /// Byte queues: the maximum message size asked for, if any.
    msg_max: Option<u64>,
}

/// A bounded queue of `T` in shared memory: a handle to the segment, from
/// which [`Sender`]s and [`Receiver`]s are made in any process.
///
/// The Python equivalent is `multiprocessing.Queue(maxsize)`. Create it by
/// name (`/dev/shm/<name>`), at a file path, or anonymously (a memfd a forked
/// child shares); open it elsewhere by the same name.
///
/// # Examples
/// ```
/// use shmring::{Flavor, Queue};
/// let q = Queue::<u64>::anonymous(Flavor::Spsc, 2)?;
/// let (tx, rx) = (q.sender()?, q.receiver()?);
/// tx.send(7)?;
/// assert_eq!(rx.recv()?, 7);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T: Pod> {
    pub(super) shared: Arc<Shared<T>>,
}

impl<T: Pod> Clone for Queue<T> {
    fn clone(&self) -> Self {
        Queue {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Pod> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("location", self.shared.seg.location())
            .field("info", &self.shared.info)
            .finish()
    }
}

impl<T: Pod> Queue<T> {
    /// A builder for every way of creating or opening a queue.
    pub fn builder() -> QueueBuilder<T> {
        QueueBuilder {
            flavor: None,
            capacity: None,
            opts: SegmentOptions::default(),
            wake: WakeMode::Strict,
            bytes: false,
            msg_max: None,
            close_after: None,
            _t: PhantomData,
        }
    }

    /// Creates `/dev/shm/<name>` exclusively (mode 0600). The name stays
    /// until it is removed ([`unlink`](Self::unlink), `shmring rm`, or the
    /// end of the stream: see [names](crate#names-who-removes-them)).
    ///
    /// # Errors
    /// `AlreadyExists`, `InvalidArgument` (bad name, capacity 0),
    /// `PermissionDenied`, `Io`.
    pub fn create(name: &str, flavor: Flavor, capacity: u64) -> Result<Self, SegmentError> {
        Self::builder()
            .flavor(flavor)
            .capacity(capacity)
            .create(name)
    }

    /// Opens `/dev/shm/<name>`, of either flavor and any capacity, checking
    /// that it holds a queue of `T`. Opening removes nothing later: see
    /// [names](crate#names-who-removes-them).
    ///
    /// # Errors
    /// `NotFound`, `WrongKind`, `TypeMismatch`, `VersionMismatch`,
    /// `SizeMismatch`, `NotInitialized`, `Corrupted`, `PermissionDenied`, `Io`.
    pub fn open(name: &str) -> Result<Self, SegmentError> {
        Self::builder().open(name)
    }

    /// Creates an anonymous queue (a sealed, close-on-exec memfd): share it
    /// with children through `fork`; for an exec'd child, duplicate
    /// [`fd`](Self::fd), clear `FD_CLOEXEC` on the duplicate
    /// (`fcntl(fd, F_SETFD, 0)`), pass its number, and reopen it there with
    /// [`QueueBuilder::from_fd`].
    pub fn anonymous(flavor: Flavor, capacity: u64) -> Result<Self, SegmentError> {
        Self::builder()
            .flavor(flavor)
            .capacity(capacity)
            .create_anonymous()
    }

    /// Removes `/dev/shm/<name>`. Mapped handles keep working on the old
    /// segment; a process that opens or creates the name afterwards gets a
    /// new one.
    pub fn unlink(name: &str) -> Result<(), SegmentError> {
        Segment::remove(&Location::Named(name.to_string()))
    }

    /// Closes the stream outright, as a supervisor would, whatever its
    /// senders are doing: every send from now on gets `Closed`, and no
    /// sender may attach (`SegmentError::Closed`). Receivers take what is
    /// queued and get `Closed` once every sender still attached has left
    /// (dropped, closed, or found dead): a send already under way when
    /// this is called may still land, and is received before `Closed`, so
    /// nothing a send accepted arrives after it. Producers that finish on
    /// their own close with [`Sender::close`] instead.
    pub fn close(&self) {
        self.shared.ctrl().close_stream();
        self.shared.remove_if_ended();
    }

    /// Whether the stream is closed.
    pub fn is_closed(&self) -> bool {
        self.shared.ctrl().closed()
    }

    /// Attaches a sender in this process. The handle works only in this
    /// process: a child that inherits it through `fork` attaches its own
    /// (calls on an inherited endpoint panic; see [`Sender`]).
    ///
    /// # Errors
    /// `RoleTaken { role: Sender, holder }` if this is an SPSC queue whose
    /// sender is alive (`holder`: its pid);
    /// `TooManyEndpoints` if 63 endpoints are live; `ForeignPidNamespace`
    /// if this process lives in another pid namespace than the queue's
    /// creator (a handle inherited across `unshare(CLONE_NEWPID)`);
    /// `Corrupted`.
    pub fn sender(&self) -> Result<Sender<T>, SegmentError> {
        let (info, generation) = self.shared.attach(Role::Sender)?;
        let ring = match self.shared.ring {
            Ring::Spsc(r) => match r.producer() {
                Ok(p) => SendRing::Spsc(p),
                Err(_) => {
                    self.shared.detach(Role::Sender, &info);
                    return Err(SegmentError::Corrupted("queue indices out of range"));
                }
            },
            Ring::Mpmc(r) => SendRing::Mpmc(self.shared.intent_view(r, &info)),
        };
        // SAFETY: `Sender` holds the Arc that keeps the mapping alive, and
        // the sender was counted by `attach`.
        let mut raw = unsafe { RawSender::new(self.shared.ctrl, ring, self.shared.info.wake_mode) };
        // SAFETY: the record lives as long as the mapping (kept by the Arc
        // in `Sender`) and is this endpoint's alone while attached.
        unsafe { raw.bind(info.owner.pid, self.shared.spsc_record(&info)) };
        Ok(Sender {
            raw,
            shared: self.shared.clone(),
            endpoint: info,
            generation,
            detached: false,
            spin: DEFAULT_SPIN,
            gate: ReapGate::default(),
        })
    }

    /// Attaches a receiver in this process.
    ///
    /// # Errors
    /// As for [`sender`](Self::sender), with `RoleTaken { role: Receiver, .. }`.
    pub fn receiver(&self) -> Result<Receiver<T>, SegmentError> {
        let (info, generation) = self.shared.attach(Role::Receiver)?;
        let ring = match self.shared.ring {
            Ring::Spsc(r) => match r.consumer() {
                Ok(c) => RecvRing::Spsc(c),
                Err(_) => {
                    self.shared.detach(Role::Receiver, &info);
                    return Err(SegmentError::Corrupted("queue indices out of range"));
                }
            },
            Ring::Mpmc(r) => RecvRing::Mpmc(self.shared.intent_view(r, &info)),
        };
        // SAFETY: as in `sender`.
        let mut raw =
            unsafe { RawReceiver::new(self.shared.ctrl, ring, self.shared.info.wake_mode) };
        // SAFETY: as in `sender`.
        unsafe { raw.bind(info.owner.pid, self.shared.spsc_record(&info)) };
        Ok(Receiver {
            raw,
            shared: self.shared.clone(),
            endpoint: info,
            generation,
            wait_for_senders: false,
            spin: DEFAULT_SPIN,
            gate: ReapGate::default(),
        })
    }

    /// Flavor, capacity, element type and size, from the header.
    pub fn info(&self) -> &QueueInfo {
        &self.shared.info
    }

    /// The flavor.
    pub fn flavor(&self) -> Flavor {
        self.shared.info.flavor
    }

    /// Maximum messages queued.
    pub fn capacity(&self) -> usize {
        self.shared.info.capacity as usize
    }

    /// Messages queued now (a snapshot).
    pub fn len(&self) -> usize {
        self.shared.len() as usize
    }

    /// Whether no message is queued (a snapshot).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the queue is at capacity (a snapshot).
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity()
    }

    /// Attached senders and receivers, in all processes: a snapshot of the
    /// peer bitmaps, no system call. An endpoint whose process died counts
    /// until a reaper reclaims it (a peer blocked on it, within a liveness
    /// slice, or [`reap_dead`](Self::reap_dead)); for live ones only, see
    /// [`live_endpoints`](Self::live_endpoints).
    pub fn endpoints(&self) -> (u32, u32) {
        let c = self.shared.ctrl();
        (c.live(Role::Sender), c.live(Role::Receiver))
    }

    /// Senders and receivers held by live processes: reclaims the
    /// endpoints of dead ones first ([`reap_dead`](Self::reap_dead), which
    /// reads `/proc` for each attached endpoint), then counts.
    pub fn live_endpoints(&self) -> (u32, u32) {
        self.reap_dead();
        self.endpoints()
    }

    /// Endpoints reclaimed so far from processes that died holding them.
    pub fn reaped(&self) -> u64 {
        // Relaxed: a statistic.
        self.shared.ctrl().peers.reaped.load(Ordering::Relaxed)
    }

    /// Reclaims endpoints whose processes are dead, first repairing the
    /// claims they left in flight, at once. Blocked calls do this by
    /// themselves every liveness slice, and so do polls that find nothing
    /// to do (empty or full), at most once a slice.
    pub fn reap_dead(&self) {
        self.shared.reap(Role::Sender);
        self.shared.reap(Role::Receiver);
    }

    /// Messages lost so far with claims that were never finished: a loan
    /// never committed or an in-place read never released (both flavors),
    /// or an MPMC send or receive cut short between its claim and its
    /// publishing store — by a process that died (settled by a reaper) or
    /// by a loan or `Ref` leaked with `mem::forget` (settled by its handle's
    /// next call). Each is counted once; none is ever delivered twice or
    /// torn. A copying SPSC send or receive cut short claims nothing: the
    /// message is not sent, or stays queued for the next receiver.
    pub fn lost(&self) -> u64 {
        // Relaxed: a statistic.
        self.shared.ctrl().peers.lost.load(Ordering::Relaxed)
    }

    /// Pipes: messages found addressed to an earlier generation of their
    /// receiving end (see [`ByteQueue::stale`](crate::ByteQueue::stale)).
    pub(super) fn stale(&self) -> u64 {
        // Relaxed: a statistic.
        self.shared.ctrl().peers.stale.load(Ordering::Relaxed)
    }

    /// The control block, for a pipe's session (valid while the mapping,
    /// kept by this handle's `Arc`, is).
    pub(super) fn ctrl_ptr(&self) -> NonNull<QueueControl> {
        self.shared.ctrl
    }

    /// Keep the name after the creating handle is dropped: undoes a
    /// builder's `persist(false)` (names stay by default).
    pub fn persist(&self) {
        self.shared.seg.set_persist(true);
    }

    /// The segment's file path (`/dev/shm/<name>` or the path given), if named.
    pub fn path(&self) -> Option<PathBuf> {
        self.shared.seg.path()
    }

    /// The memfd of an anonymous queue (to pass to a child process).
    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.shared.seg.fd()
    }

    /// The raw memfd of an anonymous queue.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.shared.seg.raw_fd()
    }
}

/// Builds or opens a [`Queue`]: flavor, capacity, permissions, persistence,
/// wake protocol, and where the segment lives.
#[derive(Debug)]
pub struct QueueBuilder<T> {
    flavor: Option<Flavor>,
    capacity: Option<u64>,
    opts: SegmentOptions,
    wake: WakeMode,
    /// Builds a byte queue (set by `ByteQueueBuilder`).
    pub(super) bytes: bool,
    /// Byte queues: the maximum message size.
    pub(super) msg_max: Option<u64>,
    /// Closes that end the stream (see `close_after`).
    close_after: Option<u64>,
    _t: PhantomData<fn() -> T>,
}

impl<T: Pod> QueueBuilder<T> {
    /// SPSC or MPMC. Creating defaults to SPSC; opening checks it if set.
    pub fn flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = Some(flavor);
        self
    }

    /// Maximum messages queued (exact; at least 1). Creating requires it;
    /// opening checks it if set.
    pub fn capacity(mut self, capacity: u64) -> Self {
        self.capacity = Some(capacity);
        self
    }

    /// Permission bits of a new segment (default 0o600).
    pub fn mode(mut self, mode: u32) -> Self {
        self.opts.mode = mode;
        self
    }

    /// Keep the name when the creating handle is dropped (default: true:
    /// names stay until removed; false: the creating handle removes the
    /// name when it and everything made from it are dropped — for a name
    /// private to one program and the children it forks; it removes only
    /// its own segment, never one made at the name since).
    pub fn persist(mut self, persist: bool) -> Self {
        self.opts.persist = persist;
        self
    }

    /// The wake protocol of a new queue (default [`WakeMode::Strict`]; `Fast` interrupts other CPUs when a waiter sleeps: see [`WakeMode::Fast`]).
    pub fn wake_mode(mut self, mode: WakeMode) -> Self {
        self.wake = mode;
        self
    }

    /// How long opening waits for a creator to finish (default 1 s).
    pub fn init_timeout(mut self, timeout: Duration) -> Self {
        self.opts.init_timeout = timeout;
        self
    }

    /// The stream ends at the `n`-th [`Sender::close`] (default: when a
    /// sender closes while no other sender is attached). For `n` producers
    /// started in any order: without a count, a producer that finishes
    /// before the next one starts would end the stream early. Fixed at
    /// creation; opening with another count is refused (`InvalidArgument`).
    pub fn close_after(mut self, n: u64) -> Self {
        self.close_after = Some(n);
        self
    }

    /// Open segments owned by another user or writable by group or others
    /// (default: refused with `Untrusted`; see `docs/security.md`).
    pub fn trust_shared(mut self, trust: bool) -> Self {
        self.opts.trust_shared = trust;
        self
    }

    fn fields(&self) -> Result<HeaderFields, SegmentError> {
        let capacity = self.capacity.ok_or_else(|| {
            SegmentError::InvalidArgument("creating a queue needs a capacity".into())
        })?;
        let msg_max = if self.bytes {
            match self.msg_max {
                Some(0) | None => {
                    return Err(SegmentError::InvalidArgument(
                        "a byte queue needs a maximum message size of at least 1 byte".into(),
                    ))
                }
                Some(m) => m,
            }
        } else {
            0
        };
        let mut f = layout::<T>(self.flavor.unwrap_or(Flavor::Spsc), capacity, msg_max)?;
        f.wake_mode = match self.wake {
            WakeMode::Fast => WAKE_FAST,
            WakeMode::Strict => WAKE_STRICT,
        };
        Ok(f)
    }

    fn create_at_location(&self, loc: Location) -> Result<Queue<T>, SegmentError> {
        let fields = self.fields()?;
        let flavor = self.flavor.unwrap_or(Flavor::Spsc);
        let close_after = self.close_after.unwrap_or(0);
        let seg = Segment::create(&loc, fields, &self.opts, |seg| {
            if let Some(ctrl) = seg.at::<QueueControl>(fields.control_offset, 1) {
                // SAFETY: in bounds (checked by `at`) and alive during `init`.
                unsafe { ctrl.as_ref() }.set_close_after(close_after);
            }
            if flavor == Flavor::Mpmc {
                if let (Some(ctrl), Some(slots)) = (
                    seg.at::<QueueControl>(fields.control_offset, 1),
                    seg.at::<MpmcSlot<T>>(fields.slots_offset, fields.slot_count),
                ) {
                    // SAFETY: in bounds (checked by `at`) and alive during `init`.
                    let c = unsafe { ctrl.as_ref() };
                    // SAFETY: as above; `capacity` slots.
                    let ring = unsafe {
                        MpmcRing::from_raw(
                            NonNull::from(&*c.head),
                            NonNull::from(&*c.tail),
                            slots,
                            fields.capacity,
                        )
                    };
                    ring.init();
                }
            }
        })?;
        let fields = seg.header().read();
        let shared = Shared::new(
            seg,
            &fields,
            &Expect {
                flavor: None,
                capacity: None,
                bytes: self.bytes,
                msg_max: None,
            },
        )?;
        Ok(Queue {
            shared: Arc::new(shared),
        })
    }

    fn open_location(&self, loc: Location) -> Result<Queue<T>, SegmentError> {
        let (seg, fields) = Segment::open(&loc, &self.opts)?;
        self.finish_open(seg, fields)
    }

    fn finish_open(&self, seg: Segment, fields: HeaderFields) -> Result<Queue<T>, SegmentError> {
        let expect = Expect {
            flavor: self.flavor,
            capacity: self.capacity,
            bytes: self.bytes,
            msg_max: self.msg_max,
        };
        let shared = Shared::new(seg, &fields, &expect)?;
        if let Some(n) = self.close_after {
            // Relaxed: fixed at creation, published with the header.
            let found = shared.ctrl().peers.close_after.load(Ordering::Relaxed);
            if found != n {
                return Err(SegmentError::InvalidArgument(format!(
                    "the queue's stream ends after {found} closes (0: at the last sender's), \
                     asked for {n}"
                )));
            }
        }
        Ok(Queue {
            shared: Arc::new(shared),
        })
    }

    /// Creates `/dev/shm/<name>` exclusively. The name stays until it is
    /// removed: see [names](crate#names-who-removes-them).
    pub fn create(self, name: &str) -> Result<Queue<T>, SegmentError> {
        self.create_at_location(Location::Named(name.to_string()))
    }

    /// Creates a segment at a file path exclusively (symlinks refused).
    /// The file stays until it is removed: see
    /// [names](crate#names-who-removes-them).
    pub fn create_at(self, path: impl AsRef<Path>) -> Result<Queue<T>, SegmentError> {
        self.create_at_location(Location::Path(path.as_ref().to_path_buf()))
    }

    /// Creates an anonymous (memfd) queue.
    pub fn create_anonymous(self) -> Result<Queue<T>, SegmentError> {
        self.create_at_location(Location::Anonymous)
    }

    /// Opens `/dev/shm/<name>`, checking flavor and capacity if they were
    /// set. Opening never removes the name later: see
    /// [names](crate#names-who-removes-them).
    pub fn open(self, name: &str) -> Result<Queue<T>, SegmentError> {
        self.open_location(Location::Named(name.to_string()))
    }

    /// Opens a segment at a file path (never removed by opening).
    pub fn open_at(self, path: impl AsRef<Path>) -> Result<Queue<T>, SegmentError> {
        self.open_location(Location::Path(path.as_ref().to_path_buf()))
    }

    /// Opens an anonymous queue from an inherited memfd.
    pub fn from_fd(self, fd: OwnedFd) -> Result<Queue<T>, SegmentError> {
        let (seg, fields) = Segment::from_fd(fd, &self.opts)?;
        self.finish_open(seg, fields)
    }

    /// Opens `/dev/shm/<name>` if it exists (checking that it matches),
    /// otherwise creates it: what every program of a system started in any
    /// order calls. Of several processes racing here, exactly one creates
    /// and all get that segment. The name stays until it is removed
    /// ([`Queue::unlink`], `shmring rm`, or the end of the stream: see
    /// [names](crate#names-who-removes-them)).
    pub fn open_or_create(self, name: &str) -> Result<Queue<T>, SegmentError> {
        let mut last = None;
        for _ in 0..8 {
            match self.create_at_location(Location::Named(name.to_string())) {
                Err(SegmentError::AlreadyExists(_)) => {}
                other => return other,
            }
            match self.open_location(Location::Named(name.to_string())) {
                Err(SegmentError::NotFound(n)) => last = Some(SegmentError::NotFound(n)),
                // A stream that ended (closed, drained, only dead endpoints
                // left) whose name nobody removed yet: remove it and make
                // a new one.
                Ok(q) if q.shared.remove_if_ended() => {
                    last = Some(SegmentError::NotFound(name.to_string()))
                }
                other => return other,
            }
        }
        Err(last.unwrap_or(SegmentError::NotInitialized))
    }
}

/// The sending end of a [`Queue`], attached in one process.
///
/// `Send` but not `Sync`: an SPSC producer keeps its indices locally. For
/// many producing threads, attach one sender per thread (MPMC).
///
/// # Panics
/// Every call that sends, claims or receives panics in a process other than
/// the one that attached it (a handle inherited through `fork`): its ring
/// indices, SPSC exclusivity and MPMC intent record are the parent's, and
/// sharing them would lose or duplicate messages silently. (Snapshots such
/// as `len` and `is_connected` still answer.) Dropping it there does
/// nothing. Attach a sender in the child from the inherited [`Queue`]
/// instead.
pub struct Sender<T: Pod> {
    pub(super) raw: RawSender<T>,
    pub(super) shared: Arc<Shared<T>>,
    endpoint: EndpointInfo,
    generation: u64,
    /// Closed: the endpoint is gone already (drop does nothing).
    detached: bool,
    pub(super) spin: Duration,
    /// Rate limit of this handle's liveness checks of its peers.
    gate: ReapGate,
}

impl<T: Pod> fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sender")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl<T: Pod> Sender<T> {
    /// The check a blocked or timed call makes (receivers: the side it
    /// waits for).
    pub(super) fn reaper(&self) -> impl Fn() + '_ {
        || self.shared.reap_if_blocked(&self.gate, Role::Receiver)
    }

    /// Called when a non-blocking send found the queue full: see
    /// `Shared::reap_if_idle` (this side waits for receivers).
    #[inline(always)]
    pub(super) fn idle_reaped(&self) -> bool {
        self.shared.reap_if_idle(&self.gate, Role::Receiver)
    }

    /// Sends without waiting. A sender that only polls still learns of
    /// receivers that died: every liveness slice, a `Full` poll checks them.
    ///
    /// # Errors
    /// `Full(value)`, `Disconnected(value)` (no receiver left, including
    /// receivers whose processes died), `Corrupted(value)`.
    #[inline(always)]
    pub fn try_send(&self, value: T) -> Result<(), TrySendError<T>> {
        match self.raw.try_send(value) {
            Err(TrySendError::Full(v)) if self.idle_reaped() => self.raw.try_send(v),
            r => r,
        }
    }

    /// Sends, waiting while the queue is full.
    ///
    /// # Errors
    /// `Disconnected(value)` once no receiver is attached though one was
    /// (including receivers whose processes died; a receiver attaching
    /// later undoes it), `Closed(value)` once the stream has ended,
    /// `Corrupted(value)`.
    #[inline(always)]
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        match self.raw.try_send(value) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(v)) => self.send_slow(v),
            Err(TrySendError::Disconnected(v)) if self.raw.waits_for_receivers() => {
                self.send_slow(v)
            }
            Err(TrySendError::Disconnected(v)) => Err(SendError::Disconnected(v)),
            Err(TrySendError::Closed(v)) => Err(SendError::Closed(v)),
            Err(TrySendError::Corrupted(v)) => Err(SendError::Corrupted(v)),
        }
    }

    #[cold]
    #[inline(never)]
    fn send_slow(&self, value: T) -> Result<(), SendError<T>> {
        self.raw
            .send_deadline(value, None, self.spin, &self.reaper())
            .map_err(|e| match e {
                SendTimeoutError::Disconnected(v) | SendTimeoutError::Timeout(v) => {
                    SendError::Disconnected(v)
                }
                SendTimeoutError::Closed(v) => SendError::Closed(v),
                SendTimeoutError::Corrupted(v) => SendError::Corrupted(v),
            })
    }

    /// Sends, waiting at most `timeout` while the queue is full.
    ///
    /// # Errors
    /// `Timeout(value)`, `Disconnected(value)`, `Corrupted(value)`.
    pub fn send_timeout(&self, value: T, timeout: Duration) -> Result<(), SendTimeoutError<T>> {
        self.send_deadline(value, Deadline::after(timeout))
    }

    /// Sends, waiting until `deadline` while the queue is full.
    ///
    /// # Errors
    /// As for [`send_timeout`](Self::send_timeout).
    pub fn send_deadline(&self, value: T, deadline: Deadline) -> Result<(), SendTimeoutError<T>> {
        self.raw
            .send_deadline(value, Some(deadline), self.spin, &self.reaper())
    }

    /// Sends as many of `values` as fit now, publishing them at once.
    /// Returns how many (at least one).
    ///
    /// # Errors
    /// `Full(())` if none fit, `Disconnected(())`, `Corrupted(())`.
    pub fn try_send_slice(&self, values: &[T]) -> Result<usize, TrySendError<()>> {
        match self.raw.try_send_slice(values) {
            Err(TrySendError::Full(())) if self.idle_reaped() => self.raw.try_send_slice(values),
            r => r,
        }
    }

    /// Sends all of `values`, in order, waiting for room as needed and
    /// publishing in batches.
    ///
    /// # Errors
    /// `Disconnected(n)` or `Corrupted(n)`, where `n` were sent.
    pub fn send_slice(&self, values: &[T]) -> Result<(), SendError<usize>> {
        self.raw
            .send_slice_deadline(values, None, self.spin, &self.reaper())
            .map_err(|e| match e {
                SendTimeoutError::Disconnected(n) | SendTimeoutError::Timeout(n) => {
                    SendError::Disconnected(n)
                }
                SendTimeoutError::Closed(n) => SendError::Closed(n),
                SendTimeoutError::Corrupted(n) => SendError::Corrupted(n),
            })
    }

    /// How long a blocked call spins before sleeping (default 20 µs; zero:
    /// sleep at once).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Messages queued now (a snapshot).
    pub fn len(&self) -> usize {
        self.shared.len() as usize
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
        self.shared.info.capacity as usize
    }

    /// Whether a receiver is attached anywhere (a snapshot: one whose
    /// process died counts until reaped).
    pub fn is_connected(&self) -> bool {
        self.shared.ctrl().live(Role::Receiver) > 0
    }

    /// Waits until a receiver is attached, in any process, or the stream is
    /// closed (nothing more to send), or `timeout` passes (`None`: no
    /// limit): true unless the timeout passed. Sleeps on the queue's
    /// futex (an attaching receiver wakes it), and reclaims receivers of
    /// dead processes first and every liveness slice, so a dead one does
    /// not count. For programs started in any order: a producer can wait
    /// for its consumer before it starts sending.
    pub fn wait_connected(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(Deadline::after);
        self.shared.reap(Role::Receiver);
        self.raw.wait_for_receiver(deadline, &self.reaper())
    }
}

impl<T: Pod> Sender<T> {
    /// Ends this sender's part of the stream: it will send no more. The
    /// stream closes, for good, when the last sender closes (no other
    /// sender attached at that moment), or, if the queue was built with
    /// [`close_after(n)`](QueueBuilder::close_after), at the `n`-th close.
    /// A sender attaching later is refused (`SegmentError::Closed`), and
    /// other senders still attached (beyond the `n` of `close_after`) get
    /// `Closed` from their next send. Receivers take what is queued and get
    /// `Closed` once every sender has left, so that nothing a send accepted
    /// arrives after it. Senders of dead processes are reclaimed first:
    /// they neither count as attached nor delay the end.
    ///
    /// Dropping a sender (or its process dying) is not closing: receivers
    /// see `Disconnected`, which a sender attaching later undoes.
    ///
    /// Returns whether the stream is now closed.
    pub fn close(mut self) -> bool {
        // Inherited through fork: not this process's endpoint to close
        // (panics, as every other call does; see the type's docs).
        self.raw.check_here();
        self.raw.settle();
        // Senders of dead processes are not attached: reclaim them first,
        // or a close by the last live sender would not be the last.
        self.shared.reap(Role::Sender);
        let closed = self.shared.ctrl().close(self.endpoint.index as u32);
        self.shared.table().release(&self.endpoint);
        self.detached = true;
        self.shared.remove_if_ended();
        closed
    }

    /// With `true`, the blocking and timed sends (`send`, `send_timeout`,
    /// `send_deadline`, `send_slice`, `loan`, `loan_timeout`) wait through
    /// `Disconnected`: while no receiver is attached (every one dropped or
    /// died) they sleep until one attaches (or the deadline: `Timeout`),
    /// then send. For a producer of consumers that come and go. `try_send`
    /// still reports `Disconnected`. Default `false`.
    pub fn set_wait_for_receivers(&mut self, wait: bool) {
        self.raw.set_wait_for_receivers(wait);
    }

    /// This sender's generation: how many senders had attached to the
    /// queue, this one included, when it attached. Sessions of a restarted
    /// producer are told apart by it.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the stream is closed (a snapshot).
    pub fn is_closed(&self) -> bool {
        self.shared.ctrl().closed()
    }
}

impl<T: Pod> Drop for Sender<T> {
    fn drop(&mut self) {
        // A handle inherited through fork belongs to the parent's endpoint:
        // only the process that attached it detaches it.
        if process::current_pid() == self.endpoint.owner.pid && !self.detached {
            // A leaked loan's claim is settled while the intent record is
            // still this endpoint's.
            self.raw.settle();
            self.shared.detach(Role::Sender, &self.endpoint);
        }
    }
}

/// The receiving end of a [`Queue`], attached in one process.
///
/// `Send` but not `Sync`, like [`Sender`].
///
/// # Panics
/// In a process other than the one that attached it, as [`Sender`].
pub struct Receiver<T: Pod> {
    pub(super) raw: RawReceiver<T>,
    pub(super) shared: Arc<Shared<T>>,
    endpoint: EndpointInfo,
    generation: u64,
    /// `recv` waits through `Disconnected` (see `set_wait_for_senders`).
    pub(super) wait_for_senders: bool,
    pub(super) spin: Duration,
    /// Rate limit of this handle's liveness checks of its peers.
    gate: ReapGate,
}

impl<T: Pod> fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

pub(super) fn recv_err(e: TryRecvError) -> RecvError {
    match e {
        TryRecvError::Corrupted => RecvError::Corrupted,
        TryRecvError::Empty | TryRecvError::Disconnected => RecvError::Disconnected,
        TryRecvError::Closed => RecvError::Closed,
    }
}

pub(super) fn recv_timeout_err(e: TryRecvError) -> RecvTimeoutError {
    match e {
        TryRecvError::Corrupted => RecvTimeoutError::Corrupted,
        TryRecvError::Empty => RecvTimeoutError::Timeout,
        TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
        TryRecvError::Closed => RecvTimeoutError::Closed,
    }
}

impl<T: Pod> Receiver<T> {
    /// The check a blocked or timed call makes (senders: the side it
    /// waits for).
    pub(super) fn reaper(&self) -> impl Fn() + '_ {
        || self.shared.reap_if_blocked(&self.gate, Role::Sender)
    }

    /// Called when a non-blocking receive found the queue empty: see
    /// `Shared::reap_if_idle` (this side waits for senders).
    #[inline(always)]
    pub(super) fn idle_reaped(&self) -> bool {
        self.shared.reap_if_idle(&self.gate, Role::Sender)
    }

    /// Receives without waiting. A receiver that only polls still learns of
    /// senders that died: every liveness slice, an `Empty` poll checks them.
    ///
    /// # Errors
    /// `Empty`; `Disconnected`: empty, and no sender attached now though
    /// one was (senders dropped, or their processes died) — undone when a
    /// sender attaches; `Closed`: empty and the stream ended, for good;
    /// `Corrupted`.
    #[inline(always)]
    pub fn try_recv(&self) -> Result<T, TryRecvError> {
        match self.raw.try_recv() {
            Err(TryRecvError::Empty) if self.idle_reaped() => self.raw.try_recv(),
            r => r,
        }
    }

    /// Receives, waiting while the queue is empty.
    ///
    /// # Errors
    /// - `Disconnected` once the queue is drained and no sender is attached
    ///   (every sender dropped its end, or its process died: found within a
    ///   liveness slice). Not the end: a sender that attaches later undoes
    ///   it, and the next `recv` waits again. Before any sender attached, a
    ///   receiver waits instead. With
    ///   [`set_wait_for_senders(true)`](Self::set_wait_for_senders) it is
    ///   never returned: `recv` sleeps until a sender comes.
    /// - `Closed` once the queue is drained and the stream has ended
    ///   ([`Sender::close`], [`Queue::close`]): permanent.
    /// - `Corrupted`.
    #[inline(always)]
    pub fn recv(&self) -> Result<T, RecvError> {
        match self.raw.try_recv() {
            Ok(v) => Ok(v),
            Err(TryRecvError::Empty) => self.recv_slow(),
            Err(TryRecvError::Disconnected) if self.wait_for_senders => self.recv_slow(),
            Err(TryRecvError::Disconnected) => Err(RecvError::Disconnected),
            Err(TryRecvError::Closed) => Err(RecvError::Closed),
            Err(TryRecvError::Corrupted) => Err(RecvError::Corrupted),
        }
    }

    #[cold]
    #[inline(never)]
    fn recv_slow(&self) -> Result<T, RecvError> {
        loop {
            match self.raw.recv_deadline(None, self.spin, &self.reaper()) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => return Err(RecvError::Disconnected),
                Err(TryRecvError::Disconnected) if self.wait_for_senders => {
                    self.raw.wait_for_sender(None, &self.reaper());
                }
                Err(e) => return Err(recv_err(e)),
            }
        }
    }

    /// Receives, waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected` (returned at once, not after the timeout:
    /// see [`recv`](Self::recv) for when, and how it is undone), `Closed`,
    /// `Corrupted`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(Deadline::after(timeout))
    }

    /// Receives, waiting until `deadline`.
    ///
    /// # Errors
    /// As for [`recv_timeout`](Self::recv_timeout).
    pub fn recv_deadline(&self, deadline: Deadline) -> Result<T, RecvTimeoutError> {
        loop {
            match self
                .raw
                .recv_deadline(Some(deadline), self.spin, &self.reaper())
            {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => return Err(RecvTimeoutError::Timeout),
                Err(TryRecvError::Disconnected) if self.wait_for_senders => {
                    if !self.raw.wait_for_sender(Some(deadline), &self.reaper()) {
                        return Err(RecvTimeoutError::Timeout);
                    }
                }
                Err(e) => return Err(recv_timeout_err(e)),
            }
        }
    }

    /// Receives up to `out.len()` messages now, releasing their slots at
    /// once. Returns how many (at least one).
    ///
    /// # Errors
    /// `Empty`, `Disconnected`, `Corrupted`.
    pub fn try_recv_slice(&self, out: &mut [T]) -> Result<usize, TryRecvError> {
        match self.raw.try_recv_slice(out) {
            Err(TryRecvError::Empty) if self.idle_reaped() => self.raw.try_recv_slice(out),
            r => r,
        }
    }

    /// Receives at least one and up to `out.len()` messages, waiting while
    /// the queue is empty. Returns how many (0 only if `out` is empty).
    ///
    /// # Errors
    /// `Disconnected`, `Corrupted`.
    pub fn recv_slice(&self, out: &mut [T]) -> Result<usize, RecvError> {
        self.raw
            .recv_slice_deadline(out, None, self.spin, &self.reaper())
            .map_err(recv_err)
    }

    /// As [`recv_slice`](Self::recv_slice), waiting at most `timeout`.
    ///
    /// # Errors
    /// `Timeout`, `Disconnected`, `Corrupted`.
    pub fn recv_slice_timeout(
        &self,
        out: &mut [T],
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        match self.raw.recv_slice_deadline(
            out,
            Some(Deadline::after(timeout)),
            self.spin,
            &self.reaper(),
        ) {
            Ok(0) if !out.is_empty() => Err(RecvTimeoutError::Timeout),
            Ok(n) => Ok(n),
            Err(e) => Err(recv_timeout_err(e)),
        }
    }

    /// A blocking iterator that ends when [`recv`](Self::recv) returns an
    /// error: the queue drained at the end of the stream (`Closed`), or
    /// with no sender attached (`Disconnected`, unless this receiver
    /// [waits for senders](Self::set_wait_for_senders)), or corrupted.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter { rx: self }
    }

    /// An iterator over the messages queued now; it never waits.
    pub fn try_iter(&self) -> TryIter<'_, T> {
        TryIter { rx: self }
    }

    /// How long a blocked call spins before sleeping (default 20 µs; zero:
    /// sleep at once).
    pub fn set_spin(&mut self, spin: Duration) {
        self.spin = spin;
    }

    /// Messages queued now (a snapshot).
    pub fn len(&self) -> usize {
        self.shared.len() as usize
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
        self.shared.info.capacity as usize
    }

    /// Whether a sender is attached anywhere (a snapshot: one whose
    /// process died counts until reaped).
    pub fn is_connected(&self) -> bool {
        self.shared.ctrl().live(Role::Sender) > 0
    }

    /// This receiver's generation: how many receivers had attached to the
    /// queue, this one included, when it attached.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Whether the stream is closed (a snapshot; messages may still be
    /// queued: `recv` returns `Closed` once they are taken).
    pub fn is_closed(&self) -> bool {
        self.shared.ctrl().closed()
    }

    /// With `true`, the blocking and timed receives (`recv`, `recv_timeout`,
    /// `recv_deadline`, `recv_ref`, `recv_ref_timeout`, `iter`) wait
    /// through `Disconnected`: while no
    /// sender is attached they sleep until one attaches (or the deadline),
    /// and return only a message, `Closed` (the end of the stream),
    /// `Timeout` or `Corrupted`. For a consumer of producers that come and
    /// go (started separately, restarted): it runs until the stream is
    /// closed. `try_recv` still reports `Disconnected`. Default `false`.
    pub fn set_wait_for_senders(&mut self, wait: bool) {
        self.wait_for_senders = wait;
    }

    /// Waits until a sender is attached, in any process, or a message is
    /// queued (a sender that came, sent and left already), or the stream is
    /// closed, or `timeout` passes (`None`: no limit): true unless the
    /// timeout passed. As
    /// [`Sender::wait_connected`]; a receiver started before its producers
    /// waits here instead of polling for `Disconnected` to stop.
    pub fn wait_connected(&self, timeout: Option<Duration>) -> bool {
        let deadline = timeout.map(Deadline::after);
        self.shared.reap(Role::Sender);
        self.raw.wait_for_sender(deadline, &self.reaper())
    }
}

impl<T: Pod> Drop for Receiver<T> {
    fn drop(&mut self) {
        // See `Sender::drop`.
        if process::current_pid() == self.endpoint.owner.pid {
            // See `Sender::drop`.
            self.raw.settle();
            self.shared.detach(Role::Receiver, &self.endpoint);
        }
    }
}

/// Blocking iterator over a [`Receiver`]; see [`Receiver::iter`].
#[derive(Debug)]
pub struct Iter<'a, T: Pod> {
    rx: &'a Receiver<T>,
}

impl<T: Pod> Iterator for Iter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.recv().ok()
    }
}

/// Non-blocking iterator over a [`Receiver`]; see [`Receiver::try_iter`].
#[derive(Debug)]
pub struct TryIter<'a, T: Pod> {
    rx: &'a Receiver<T>,
}

impl<T: Pod> Iterator for TryIter<'_, T> {
    type Item = T;
    fn next(&mut self) -> Option<T> {
        self.rx.try_recv().ok()
    }
}

impl<'a, T: Pod> IntoIterator for &'a Receiver<T> {
    type Item = T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}
