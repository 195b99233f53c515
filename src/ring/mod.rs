//! Layer 3: the ring algorithms, and nothing else: no system calls, no waiting.
//!
//! Both rings address slots through raw pointers into a segment (or into heap
//! memory under loom and in unit tests). Every index they read from shared
//! memory is reduced into range by a mask or checked against the capacity
//! cached in the process-local view before it addresses a slot, so a scribbled
//! index yields `Corrupted` or wrong data, never an out-of-bounds access.

pub mod mpmc;
pub mod spsc;

/// Why a push did nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PushError {
    /// No free slot right now.
    Full,
    /// Shared state failed a check.
    Corrupted,
}

/// Why a pop returned nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PopError {
    /// No published message right now.
    Empty,
    /// Shared state failed a check.
    Corrupted,
}

/// Bound on retries inside one non-blocking call. Under legitimate contention
/// every failed round means another caller made progress; the bound only
/// stops a hostile writer from trapping us. Hitting it reports Full/Empty,
/// which is always a safe answer to a `try_` call.
const MAX_ROUNDS: u32 = 1 << 16;
