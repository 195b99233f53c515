//! Layer 4: the cross-process bounded queue — ring + wait + endpoint table.

#[cfg(not(loom))]
mod bytes;
pub mod bytes_core;
pub mod control;
pub mod heap;
#[cfg(not(loom))]
mod loan;
pub mod payload;
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
mod queue;
pub mod raw;
#[cfg(all(feature = "serde", not(loom)))]
mod value;

#[cfg(not(loom))]
pub use bytes::{ByteIter, ByteQueue, ByteQueueBuilder, ByteReceiver, ByteSender};
pub use bytes_core::{ByteLoan, ByteRef};
#[cfg(not(loom))]
pub use loan::{Loan, Ref};
#[cfg(not(loom))]
pub use pipe::{Connection, Pipe, PipeBuilder, PIPE_CAPACITY, PIPE_MAX_MESSAGE};
#[cfg(not(loom))]
pub use queue::{
    Iter, Queue, QueueBuilder, QueueInfo, Receiver, Sender, TryIter, MAX_CAPACITY, MAX_MESSAGE,
};
#[cfg(not(loom))]
pub(crate) use queue::{FLAVOR_MPMC, FLAVOR_SPSC};
#[cfg(all(feature = "serde", not(loom)))]
pub use value::{ValueRecvError, ValueSendError};
