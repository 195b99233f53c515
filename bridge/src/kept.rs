//! The core library's calls that make an outbound bridge's held messages
//! survive the bridge: message ids from the queue's instance and the
//! message's position, and the hand-over of a dead bridge's claims to the
//! next one (`ByteReceiver::keep_claims`, `ByteQueue::adopt_kept`). The
//! core keeps a receiver's claims only when its process dies; a receiver
//! dropped by a live process releases them, so a *stopping* bridge sends
//! its unconfirmed messages back into the local queue instead.

use shmring::{ByteQueue, ByteReceiver, ByteRef, SegmentError};

/// The queue's instance: distinguishes this queue from an earlier one of
/// the same name, in message ids.
pub(crate) fn instance(queue: &ByteQueue) -> u64 {
    queue.instance()
}

/// The message's position in the queue's stream (its claim order).
pub(crate) fn position(msg: &ByteRef<'_>) -> u64 {
    msg.position()
}

/// Marks `rx`'s held claims as kept if this process dies, instead of lost.
pub(crate) fn keep_claims(rx: &mut ByteReceiver) -> Result<(), SegmentError> {
    rx.keep_claims()
}

/// Hands the kept claims of dead bridges to `f`, oldest first; each one
/// `f` returns `Ok` for is released.
pub(crate) fn adopt_kept<E>(
    queue: &ByteQueue,
    f: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<usize, E> {
    queue.adopt_kept(f)
}

/// The AMQP `message_id` of the message at `position` in `instance`.
pub(crate) fn message_id(instance: u64, position: u64) -> String {
    format!("{instance:016x}-{position}")
}
