//! Layer 4: the cross-process bounded queue — ring + wait + endpoint table.

pub mod control;
pub mod heap;
#[cfg(not(loom))]
mod queue;
pub mod raw;

#[cfg(not(loom))]
pub use queue::{Iter, Queue, QueueBuilder, QueueInfo, Receiver, Sender, TryIter};
