//! A queue's place in its segment: the geometry derived from (flavor, `T`,
//! capacity, maximum message size) — header, control block, endpoint
//! table, intent records, slots and, for byte messages, payloads — and the
//! checks an opener makes of a header against it. Also [`QueueInfo`] (what
//! a checked header says) and the limits [`MAX_CAPACITY`] and
//! [`MAX_MESSAGE`].

use super::control::QueueControl;
use crate::error::SegmentError;
use crate::ring::mpmc::Intent;
use crate::ring::spsc;
use crate::ring::Slot;
use crate::shm::endpoints::ENDPOINTS;
use crate::shm::header::{type_desc, HeaderFields, HEADER_LEN};
use crate::types::{Flavor, Kind, TypeDesc};
use crate::wait::WakeMode;
use bytemuck::Pod;

/// `kind` header value of a queue of `Pod` values.
const KIND_QUEUE: u32 = Kind::Queue.raw();
/// `kind` header value of a queue of byte messages.
const KIND_BYTES: u32 = Kind::ByteQueue.raw();
/// `wake_mode` header value of [`WakeMode::Fast`].
pub(super) const WAKE_FAST: u32 = 1;
/// `wake_mode` header value of [`WakeMode::Strict`].
pub(super) const WAKE_STRICT: u32 = 2;

/// Bytes per intent record.
const INTENT_LEN: u64 = std::mem::size_of::<Intent>() as u64;

/// Largest capacity a queue accepts.
pub const MAX_CAPACITY: u64 = 1 << 32;

/// Largest maximum message size a byte queue accepts (1 GiB).
pub const MAX_MESSAGE: u64 = 1 << 30;

fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// Bytes per slot of a byte queue: the ring slot (`slot_size`) and its
/// payload (`msg_max`), rounded up to a power of two up to 64 bytes, to
/// whole 64-byte lines above.
fn byte_slot_stride(slot_size: u64, msg_max: u64) -> Option<u64> {
    let need = slot_size.checked_add(msg_max)?;
    if need <= 64 {
        Some(need.next_power_of_two())
    } else {
        align_up(need, 64)
    }
}

/// The queue's layout in its segment, derived from flavor, type, capacity
/// and, for byte messages (`msg_max > 0`), the largest message.
pub(super) fn layout<T>(
    flavor: Flavor,
    capacity: u64,
    msg_max: u64,
) -> Result<HeaderFields, SegmentError> {
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
    // Both rings' slots carry a stamp beside the value (`ring::Slot`).
    let slot_count = match flavor {
        Flavor::Spsc => spsc::slot_count(capacity),
        Flavor::Mpmc => capacity,
    };
    let slot_size = std::mem::size_of::<Slot<T>>() as u64;
    let slot_align = std::mem::align_of::<Slot<T>>() as u64;
    let too_big = || SegmentError::InvalidArgument("queue size overflows".into());
    if msg_max > MAX_MESSAGE {
        return Err(SegmentError::InvalidArgument(format!(
            "maximum message size {msg_max} exceeds the limit {MAX_MESSAGE}"
        )));
    }
    // Byte messages: each slot's payload follows its word, so the stamp,
    // the length and the first payload bytes share one cache line (one
    // line transfer for a small message). A slot of up to a line is a power
    // of two (two 32-byte slots share a line: a stream of tiny messages
    // moves two per transfer), a larger one whole lines; no slot straddles
    // a line it does not need.
    let slot_stride = if msg_max > 0 {
        byte_slot_stride(slot_size, msg_max).ok_or_else(too_big)?
    } else {
        slot_size
    };
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
    let total_len = slot_count
        .checked_mul(slot_stride)
        .and_then(|b| b.checked_add(slots_offset))
        .filter(|&t| t <= isize::MAX as u64)
        .ok_or_else(too_big)?;
    let (payload_offset, payload_stride) = if msg_max > 0 {
        (slots_offset + slot_size, slot_stride)
    } else {
        (0, 0)
    };
    Ok(HeaderFields {
        kind: if msg_max > 0 { KIND_BYTES } else { KIND_QUEUE },
        msg_max,
        payload_offset,
        payload_stride,
        flavor: flavor.raw(),
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

/// What an opener asks of a queue segment's header (`None`: anything).
pub(super) struct Expect {
    pub(super) flavor: Option<Flavor>,
    pub(super) capacity: Option<u64>,
    /// A byte queue (else a queue of `T`).
    pub(super) bytes: bool,
    /// Byte queues: the maximum message size asked for, if any.
    pub(super) msg_max: Option<u64>,
}

/// Checks a header snapshot against what the opener asked for (`expect`)
/// and against the layout this build derives from the header's flavor,
/// `T`, capacity and maximum message size, in that order. Returns the
/// derived layout, from which alone the opener makes its pointers, and
/// what the header says.
pub(super) fn check<T: Pod>(
    fields: &HeaderFields,
    expect: &Expect,
) -> Result<(HeaderFields, QueueInfo), SegmentError> {
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
    let Some(flavor) = Flavor::from_raw(fields.flavor) else {
        return Err(SegmentError::Corrupted("unknown queue flavor"));
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
    let info = QueueInfo {
        flavor,
        capacity: fields.capacity,
        elem: fields.elem(),
        wake_mode,
        total_len: fields.total_len,
        creator_pid: fields.creator_pid,
    };
    Ok((derived, info))
}
