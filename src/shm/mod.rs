//! Layer 1: segments — creation, validation and mapping (`segment`), the
//! header (`header`), the endpoint table (`endpoints`) and the 128-byte
//! line every shared hot word sits on (`line`). (The heap backing that
//! loom and unit tests use is typed, because loom atomics cannot live in
//! raw bytes: see `channel::heap`.)
//!
//! Crate-private: segments are seen from outside through the public
//! [`inspect`](crate::inspect) module (which re-exports `Location` and
//! `HeaderFields`), and the white-box tests reach the rest through
//! `__internal`.

pub(crate) mod endpoints;
pub(crate) mod header;
pub(crate) mod line;
#[cfg(not(loom))]
pub(crate) mod segment;
