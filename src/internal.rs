//! `shmring::__internal`: the internals that shmring's own loom models
//! (`loom-tests/`) and white-box tests (`tests/`) drive. Hidden from the
//! documentation and **not part of the API**: anything here may change or
//! go in any release. Programs use the crate root, [`error`](crate::error),
//! [`inspect`](crate::inspect) and [`transport`](crate::transport).
//!
//! Each group says who needs it. The loom models' group exists only in a
//! `--cfg loom` build, which only the models' crate makes.

// White-box tests (tests/): the segment layer and its header, for tests
// that forge, scribble and race segments, and process identity.
/// The containers' commit protocol: stages and hooks for tests that kill a
/// writer mid-commit (tests/containers.rs), and everything the loom models
/// drive over heap words (loom-tests/tests/containers.rs).
pub use crate::container::engine;
pub use crate::process::{current, liveness, pid_namespace, Liveness, ProcId};
pub use crate::shm::header::{type_desc, HeaderFields, HEADER_LEN, MAGIC, VERSION};
#[cfg(not(loom))]
pub use crate::shm::segment::{test_hooks, Location, Segment, SegmentOptions};
#[cfg(not(loom))]
pub use crate::wait::thread_wake_stats;

/// The FNV-1a checksum a header stores for `fields` (every field but the
/// checksum itself), as the segment layer computes it.
pub fn header_checksum(fields: &HeaderFields) -> u64 {
    fields.compute_checksum()
}

// The loom models (loom-tests/): the heap-backed queues, which run the
// very ring, control-block and blocking code a mapped queue runs, and the
// control block, endpoint table and wait cell they model directly.
#[cfg(loom)]
pub use crate::channel::control::QueueControl;
#[cfg(loom)]
pub use crate::channel::heap::{
    HeapByteQueue, HeapByteReceiver, HeapByteSender, HeapQueue, HeapReceiver, HeapSender,
};
#[cfg(loom)]
pub use crate::channel::raw::{RawReceiver, RawSender, SlotClaim};
#[cfg(loom)]
pub use crate::channel::session::Session;
#[cfg(loom)]
pub use crate::shm::endpoints::{EndpointInfo, EndpointTable};
#[cfg(loom)]
pub use crate::wait::WaitCell;
