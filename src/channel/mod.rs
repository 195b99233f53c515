//! Layer 4: the cross-process bounded queue — ring + wait + endpoint table.
//!
//! The internals below the public handles — the raw sending and receiving
//! core (`raw`: slot claims, in-place writes, commits), the control block,
//! the payload area and the heap-backed queues the loom models drive — are
//! crate-private: safe code outside the crate cannot forge a claim or write
//! a slot another thread reads. Only a `--cfg loom` build (the models'
//! crate, never a user's) makes them public, hidden from the docs.

#[cfg(not(loom))]
mod bytes;
#[cfg(loom)]
#[doc(hidden)]
pub mod bytes_core;
#[cfg(not(loom))]
pub(crate) mod bytes_core;
#[cfg(loom)]
#[doc(hidden)]
pub mod control;
#[cfg(not(loom))]
pub(crate) mod control;
#[cfg(loom)]
#[doc(hidden)]
pub mod heap;
#[cfg(all(test, not(loom)))]
#[allow(dead_code)] // the models' API, partly unused by the unit tests
mod heap;
#[cfg(not(loom))]
mod loan;
#[cfg(loom)]
#[doc(hidden)]
pub mod payload;
#[cfg(not(loom))]
pub(crate) mod payload;
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
mod queue;
#[cfg(loom)]
#[doc(hidden)]
pub mod raw;
#[cfg(not(loom))]
pub(crate) mod raw;
#[cfg(loom)]
#[doc(hidden)]
pub mod session;
#[cfg(not(loom))]
pub(crate) mod session;
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
