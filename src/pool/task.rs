//! Tasks and their registry: [`Task`], [`Registered`], [`init`].
//!
//! A worker is this program re-executed, so it cannot receive a function
//! pointer from its parent (the binary is mapped at another address, ASLR).
//! Instead both run the same `init` call with the same list of tasks, and a
//! task travels as its **id**: FNV-1a of its name and of its input and
//! output type names. The name is the user's own string, so the id does not
//! depend on the order of the list, on addresses, or on the build's symbol
//! names; the type names make two tasks that share a name (with other
//! types) distinct, and a parent that uses a task the registry lacks gets
//! `Unregistered` before anything is sent. The parent also passes the
//! fingerprint of its whole registry; a worker whose registry differs (a
//! conditional registration) refuses to start.

use super::wire::{self, fnv, WORKER_ENV};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::any::type_name;
use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

/// A function that pool workers can run: `fn(I) -> O` under a name.
///
/// Declare it as a `static` and register it in [`init`] at the top of
/// `main`; then pass it to [`Pool::map`](crate::Pool::map),
/// [`Pool::submit`](crate::Pool::submit) or
/// [`Pool::imap_unordered`](crate::Pool::imap_unordered). Inputs and outputs
/// are serde values, encoded with postcard.
///
/// ```no_run
/// use shmring::pool::{self, Task};
///
/// fn square(x: u64) -> u64 {
///     x * x
/// }
/// static SQUARE: Task<u64, u64> = Task::new("square", square);
///
/// fn main() -> Result<(), shmring::PoolError> {
///     pool::init(&[&SQUARE]); // a worker runs here and never returns
///     let pool = shmring::Pool::new()?;
///     assert_eq!(pool.map(&SQUARE, [1, 2, 3])?, [1, 4, 9]);
///     Ok(())
/// }
/// ```
pub struct Task<I, O> {
    name: &'static str,
    f: fn(I) -> O,
    _types: PhantomData<fn(I) -> O>,
}

impl<I, O> Task<I, O> {
    /// A task named `name` (unique among the registered ones) running `f`.
    /// Non-capturing closures coerce to `fn(I) -> O`.
    pub const fn new(name: &'static str, f: fn(I) -> O) -> Self {
        Task {
            name,
            f,
            _types: PhantomData,
        }
    }

    /// The task's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The task's id on the wire (see the module docs).
    pub(super) fn id(&self) -> u64 {
        fnv(&[
            self.name.as_bytes(),
            type_name::<I>().as_bytes(),
            type_name::<O>().as_bytes(),
        ])
    }
}

impl<I, O> fmt::Debug for Task<I, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Task")
            .field("name", &self.name)
            .field("input", &type_name::<I>())
            .field("output", &type_name::<O>())
            .finish()
    }
}

mod sealed {
    pub trait Sealed {}
}

impl<I, O> sealed::Sealed for Task<I, O> {}

/// A [`Task`] of any types, as [`init`] takes it (`&SQUARE` coerces).
/// Sealed: implemented by `Task` only.
pub trait Registered: sealed::Sealed + Sync + 'static {
    /// The task's name.
    fn name(&self) -> &'static str;
    /// The task's id on the wire.
    #[doc(hidden)]
    fn wire_id(&self) -> u64;
    /// Decodes `input`, runs the function and appends the encoded result to
    /// `out`; the error says why it could not. Panics of the function pass
    /// through (the worker catches them).
    #[doc(hidden)]
    fn run_encoded(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String>;
}

impl<I, O> Registered for Task<I, O>
where
    I: DeserializeOwned + 'static,
    O: Serialize + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }

    fn wire_id(&self) -> u64 {
        self.id()
    }

    fn run_encoded(&self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let x: I = postcard::from_bytes(input).map_err(|e| {
            format!(
                "the input of task {:?} does not decode as {}: {e}",
                self.name,
                type_name::<I>()
            )
        })?;
        let y = (self.f)(x);
        wire::encode_into(&y, out).map_err(|e| {
            format!(
                "the result of task {:?} ({}) does not encode: {e}",
                self.name,
                type_name::<O>()
            )
        })
    }
}

/// The tasks this program registered, sorted by id.
pub(super) struct Registry {
    entries: Vec<(u64, &'static dyn Registered)>,
    fingerprint: u64,
}

impl Registry {
    fn new(tasks: &[&'static dyn Registered]) -> Registry {
        let mut entries: Vec<(u64, &'static dyn Registered)> =
            tasks.iter().map(|t| (t.wire_id(), *t)).collect();
        entries.sort_by_key(|e| e.0);
        for w in entries.windows(2) {
            assert!(
                w[0].0 != w[1].0,
                "shmring::pool::init: task {:?} is registered twice",
                w[0].1.name()
            );
        }
        let mut names: Vec<&str> = entries.iter().map(|e| e.1.name()).collect();
        names.sort_unstable();
        for w in names.windows(2) {
            assert!(
                w[0] != w[1],
                "shmring::pool::init: two tasks are named {:?}",
                w[0]
            );
        }
        let ids: Vec<[u8; 8]> = entries.iter().map(|e| e.0.to_le_bytes()).collect();
        let parts: Vec<&[u8]> = ids.iter().map(|b| &b[..]).collect();
        Registry {
            fingerprint: fnv(&parts),
            entries,
        }
    }

    /// The task registered under `id`.
    pub fn get(&self, id: u64) -> Option<&'static dyn Registered> {
        self.entries
            .binary_search_by_key(&id, |e| e.0)
            .ok()
            .map(|i| self.entries[i].1)
    }

    /// The fingerprint of the whole registry.
    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }
}

static REGISTRY: OnceLock<Registry> = OnceLock::new();

/// The registry, if [`init`] was called.
pub(super) fn registry() -> Option<&'static Registry> {
    REGISTRY.get()
}

/// Registers the tasks this program's pools may run, and **runs the worker**
/// when this process is one: call it first thing in `main`, before
/// anything else runs (threads, argument parsing, output).
///
/// A [`Pool`](crate::Pool) starts its workers by re-executing this program
/// (`/proc/self/exe`, same arguments) with an environment variable that
/// describes the worker; `init` sees it, serves tasks until the pool shuts
/// down or its parent dies, and exits the process. Without the variable it
/// records the tasks and returns at once. Every process must pass the same
/// list (it is the same program: just do not make it conditional).
///
/// For tests: libtest's `main` is not yours, so put pool tests in a test
/// target with `harness = false` whose own `main` calls `init`.
///
/// # Panics
/// If called twice, or if two tasks share a name.
pub fn init(tasks: &[&'static dyn Registered]) {
    let reg = Registry::new(tasks);
    assert!(
        REGISTRY.set(reg).is_ok(),
        "shmring::pool::init may be called only once, at the top of main"
    );
    if let Some(spec) = std::env::var_os(WORKER_ENV) {
        // A worker's own children (if its tasks start programs) are not
        // workers. `main` has just begun: no other thread reads the
        // environment yet.
        std::env::remove_var(WORKER_ENV);
        let code = super::worker::run(&spec.to_string_lossy(), registry().expect("set above"));
        std::process::exit(code);
    }
}

/// Whether this process was started as a worker and `init` has not run.
pub(super) fn in_unstarted_worker() -> bool {
    std::env::var_os(WORKER_ENV).is_some()
}
