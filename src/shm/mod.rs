//! Layer 1: segments — creation, validation, mapping, the header, the
//! endpoint table. (The heap backing that loom and unit tests use is typed,
//! because loom atomics cannot live in raw bytes: see `channel::heap`.)

pub mod endpoints;
pub mod header;
#[cfg(not(loom))]
pub mod inspect;
pub mod line;
#[cfg(not(loom))]
pub mod segment;
