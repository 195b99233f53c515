//! Native classes of `shmring._shmring` for the queues area (see lib.rs).

use pyo3::prelude::*;

/// Adds this area's classes and functions to the module.
pub fn register(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
