//! Layer 1: segments — creation, validation and mapping (`segment`), the
//! header (`header`), the endpoint table (`endpoints`) and the 128-byte
//! line every shared hot word sits on (`line`). (The heap backing that
//! loom and unit tests use is typed, because loom atomics cannot live in
//! raw bytes: see `channel::heap`.)
//!
//! Crate-private, apart from the two paths below, which the `shmring`
//! command-line tool imported before inspection became the public
//! [`inspect`](crate::inspect) module. They are hidden and go once the tool
//! imports `shmring::inspect::{…, Location}`; nothing else here is
//! reachable from outside but through `__internal`.

pub(crate) mod endpoints;
pub(crate) mod header;
pub(crate) mod line;
#[cfg(not(loom))]
#[doc(hidden)]
pub mod segment;

#[cfg(not(loom))]
#[doc(hidden)]
pub use crate::inspect;
