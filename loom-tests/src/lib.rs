//! loom models live in `tests/`; this crate is empty otherwise, apart from
//! what several models share (compiled only under `--cfg loom`): the model
//! configuration, and the liveness oracle of the crash-repair models.

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

/// Runs `f` as a loom model under [`builder`] with a larger branch budget,
/// for models that repair or adopt: a repair reads all 64 intent records
/// (two atomics each), so one execution with a few repairs can pass loom's
/// default of 1,000 branches without spinning. A thread that truly spins
/// for ever still exhausts it.
#[cfg(loom)]
pub fn model_repairing<F>(f: F)
where
    F: Fn() + Sync + Send + 'static,
{
    let mut b = builder();
    b.max_branches = 20_000;
    b.check(f);
}

/// The liveness oracle of the crash-repair models: endpoint bit `i` is
/// live until its thread declares itself dead, after its last action.
#[cfg(loom)]
#[derive(Clone)]
pub struct Oracle {
    dead: loom::sync::Arc<Vec<loom::sync::atomic::AtomicBool>>,
}

#[cfg(loom)]
impl Oracle {
    /// `bits` endpoints, all live.
    pub fn new(bits: usize) -> Self {
        Oracle {
            dead: loom::sync::Arc::new(
                (0..bits)
                    .map(|_| loom::sync::atomic::AtomicBool::new(false))
                    .collect(),
            ),
        }
    }

    /// Declares bit `i` dead. Release: the endpoint's last writes (its
    /// intent, its claim) happen-before a repairer that sees it dead.
    pub fn kill(&self, i: usize) {
        self.dead[i].store(true, std::sync::atomic::Ordering::Release);
    }

    /// Whether bit `i` is live. Acquire: pairs with `kill`. Bits beyond the
    /// modelled endpoints are unattached (their intents cover nothing).
    pub fn live(&self, i: usize) -> bool {
        self.dead
            .get(i)
            .is_none_or(|d| !d.load(std::sync::atomic::Ordering::Acquire))
    }
}
