//! The native half of the Python package `shmring` (`shmring._shmring`):
//! the blocking calls, with the GIL released and Ctrl-C honoured, over
//! the Rust library's public API. The multiprocessing-shaped classes live
//! in `python/shmring/` on top of these.
//!
//! One module per area, each registering its own classes: `queues`
//! (Queue, SimpleQueue, JoinableQueue, Pipe's connections) and `state`
//! (Value, Array, the locks and other primitives, Manager-style dict and
//! list), plus `testhooks`: private hooks of the Python test suite, not
//! API.

use pyo3::prelude::*;

mod queues;
mod state;
mod testhooks;

/// The module `shmring._shmring`.
#[pymodule]
fn _shmring(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    queues::register(m)?;
    state::register(m)?;
    testhooks::register(m)?;
    Ok(())
}
