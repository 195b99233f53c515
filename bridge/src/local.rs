//! Opening the local queue: a named MPMC byte queue, created if missing.

use crate::config::LocalQueue;
use crate::error::BridgeError;
use shmring::{ByteQueue, Flavor, SegmentError};

/// Opens `cfg.name` (checking the capacity and size that are set), or
/// creates it with those (or the defaults) if it does not exist.
pub(crate) fn open(cfg: &LocalQueue) -> Result<ByteQueue, BridgeError> {
    let err = |source| BridgeError::Local {
        name: cfg.name.clone(),
        source: Box::new(source),
    };
    let mut open = ByteQueue::builder().flavor(Flavor::Mpmc);
    if let Some(c) = cfg.capacity {
        open = open.capacity(c);
    }
    if let Some(m) = cfg.max_message_size {
        open = open.max_message_size(m);
    }
    match open.open(&cfg.name) {
        Err(SegmentError::NotFound(_)) => {}
        r => return r.map_err(err),
    }
    ByteQueue::builder()
        .flavor(Flavor::Mpmc)
        .capacity(cfg.capacity.unwrap_or(LocalQueue::DEFAULT_CAPACITY))
        .max_message_size(
            cfg.max_message_size
                .unwrap_or(LocalQueue::DEFAULT_MAX_MESSAGE_SIZE),
        )
        .open_or_create(&cfg.name)
        .map_err(err)
}
