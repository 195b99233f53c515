//! Layer 5: synchronisation primitives that live in shared memory —
//! [`Lock`], [`RLock`], [`Condition`], [`Event`], [`Semaphore`],
//! [`Barrier`] — futex-based, with timeouts, and safe when a process dies
//! (a dead lock owner is detected and its lock handed over with
//! [`OwnerDied`](crate::OwnerDied)). Their errors live in `error.rs`; the
//! crate root re-exports everything public here.
//!
//! Each is a `#[repr(C)]` struct of atomics: put it in a segment with
//! [`Shared`](crate::Shared), or embed it in your own
//! [`ShmSafe`](crate::ShmSafe) struct so one segment holds a table and the
//! lock that guards it.

mod lock;
pub(crate) mod owner;
mod primitives;

pub use lock::{Lock, LockGuard, RLock, RLockGuard};
pub use primitives::{
    Barrier, BarrierWaitResult, CondGuard, Condition, Event, Semaphore, WaitTimeoutResult,
};
