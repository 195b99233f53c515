//! loom models live in `tests/`; this crate is empty otherwise, apart from
//! the shared model configuration below (compiled only under `--cfg loom`).

/// The model builder every test uses: loom's defaults, with the preemption
/// bound taken from `LOOM_MAX_PREEMPTIONS` (default 2) so that the whole run
/// stays within a few minutes.
#[cfg(loom)]
pub fn builder() -> loom::model::Builder {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(
        std::env::var("LOOM_MAX_PREEMPTIONS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(2),
    );
    b
}

/// Runs `f` as a loom model under [`builder`].
#[cfg(loom)]
pub fn model<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    builder().check(f);
}
