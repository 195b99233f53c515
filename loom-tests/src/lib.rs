//! loom models live in `tests/`; this crate is empty otherwise.
