//! The four calls of the core library that make an outbound bridge's held
//! messages survive the bridge (its message ids, and the hand-over of a
//! dead bridge's claims to the next one), behind one module.
//!
//! TEMPORARY FALLBACK — the core is gaining, in parallel,
//! `ByteQueue::instance() -> u64`, `ByteRef::position() -> u64`,
//! `ByteReceiver::keep_claims(&mut self) -> Result<(), SegmentError>` and
//! `ByteQueue::adopt_kept(f) -> Result<usize, E>`. Until they land:
//!
//! - `instance` is 0 and `position` a per-process counter that starts at
//!   the wall-clock time in nanoseconds (so that ids stay distinct across
//!   runs, which a counter starting at 0 would not);
//! - `keep_claims` and `adopt_kept` do nothing: a bridge killed with
//!   messages in flight loses them (counted in the queue's `lost`), and
//!   [`SUPPORTED`] is false, so a stopping bridge sends the messages it
//!   could not get confirmed back into the local queue instead of keeping
//!   them as claims.
//!
//! The switch: delete the fallback bodies, call the four methods, set
//! `SUPPORTED` to true.

use shmring::{ByteQueue, ByteReceiver, ByteRef, SegmentError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Whether the core keeps a bridge's held claims for its successor (true
/// once the four calls are real). With it, a message held when the bridge
/// stops stays a claim (the next bridge adopts it, first); without it, it
/// is sent back into the local queue.
pub(crate) const SUPPORTED: bool = false;

/// The queue's instance: distinguishes this queue from an earlier one of
/// the same name, in message ids.
pub(crate) fn instance(_queue: &ByteQueue) -> u64 {
    0 // TEMPORARY FALLBACK: queue.instance()
}

/// The message's position in the queue's stream (its claim order).
pub(crate) fn position(_msg: &ByteRef<'_>) -> u64 {
    // TEMPORARY FALLBACK: msg.position()
    static NEXT: OnceLock<AtomicU64> = OnceLock::new();
    let next = NEXT.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        AtomicU64::new(now.as_nanos() as u64)
    });
    // Relaxed: a counter; callers claim under one lock anyway.
    next.fetch_add(1, Ordering::Relaxed)
}

/// Marks `rx`'s held claims as kept if this process dies, instead of lost.
pub(crate) fn keep_claims(_rx: &mut ByteReceiver) -> Result<(), SegmentError> {
    Ok(()) // TEMPORARY FALLBACK: rx.keep_claims()
}

/// Hands the kept claims of dead bridges to `f`, oldest first; each one
/// `f` returns `Ok` for is released.
pub(crate) fn adopt_kept<E>(
    _queue: &ByteQueue,
    _f: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<usize, E> {
    Ok(0) // TEMPORARY FALLBACK: queue.adopt_kept(f)
}

/// The AMQP `message_id` of the message at `position` in `instance`.
pub(crate) fn message_id(instance: u64, position: u64) -> String {
    format!("{instance:016x}-{position}")
}
