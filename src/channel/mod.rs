//! Layer 4: the cross-process bounded queue — ring + wait + endpoint table.
//!
//! The public handles, by file: `queue.rs` ([`Queue`], [`QueueBuilder`]),
//! `sender.rs` ([`Sender`]), `receiver.rs` ([`Receiver`] and its
//! iterators), `loan.rs` ([`Loan`], [`Ref`]), `bytes.rs` (the byte queue),
//! `pipe.rs` ([`Pipe`], [`Connection`]), `value.rs` (serde values). Below
//! them, crate-private: `layout.rs` (a queue's geometry in its segment and
//! the checks an opener makes), `mapped.rs` (the mapped queue every handle
//! shares: attach, detach, reaping, repair), `control.rs` (the control
//! block), `raw.rs` (the blocking sending and receiving core: slot claims,
//! in-place writes, commits), `bytes_core.rs` and `payload.rs` (byte
//! messages), `session.rs` (pipe sessions) and `heap.rs` (the heap-backed
//! queues the loom models drive). Safe code outside the crate cannot forge
//! a claim or write a slot another thread reads; the loom models reach the
//! internals through `__internal`, in `--cfg loom` builds only.

#[cfg(not(loom))]
mod bytes;
pub(crate) mod bytes_core;
pub(crate) mod control;
#[cfg(loom)]
pub(crate) mod heap;
#[cfg(all(test, not(loom)))]
#[allow(dead_code)] // the models' API, partly unused by the unit tests
mod heap;
#[cfg(not(loom))]
mod layout;
#[cfg(not(loom))]
mod loan;
#[cfg(not(loom))]
mod mapped;
pub(crate) mod payload;
#[cfg(not(loom))]
mod pipe;
#[cfg(not(loom))]
mod queue;
pub(crate) mod raw;
#[cfg(not(loom))]
mod receiver;
#[cfg(not(loom))]
mod sender;
pub(crate) mod session;
#[cfg(all(feature = "serde", not(loom)))]
mod value;

#[cfg(not(loom))]
pub use bytes::{ByteIter, ByteQueue, ByteQueueBuilder, ByteReceiver, ByteSender};
pub use bytes_core::{ByteLoan, ByteRef};
#[cfg(not(loom))]
pub use layout::{MAX_CAPACITY, MAX_MESSAGE};
#[cfg(not(loom))]
pub use loan::{Loan, Ref};
#[cfg(not(loom))]
pub use pipe::{Connection, Pipe, PipeBuilder, PIPE_CAPACITY, PIPE_MAX_MESSAGE};
#[cfg(not(loom))]
pub use queue::{Queue, QueueBuilder, QueueInfo};
pub use raw::DEFAULT_SPIN;
#[cfg(not(loom))]
pub use receiver::{Iter, Receiver, TryIter};
#[cfg(not(loom))]
pub use sender::Sender;
