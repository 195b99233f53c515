//! # shmring
//!
//! Inter-process communication on one Linux host, built on lock-free ring
//! buffers in shared memory and shared futexes: the toolkit Python's
//! `multiprocessing` teaches, for processes that need to move millions of
//! messages a second.
//!
//! A [`Queue`] lives in a segment (`/dev/shm/<name>`, a file path, or an
//! anonymous memfd shared across `fork`). Any process that opens it attaches
//! [`Sender`]s and [`Receiver`]s; messages are `T: bytemuck::Pod` values,
//! copied into fixed slots.
//!
//! ```
//! use shmring::{Flavor, Queue};
//!
//! // In one process (started first or last: whoever comes first creates):
//! let q = Queue::<u64>::builder().capacity(1024).open_or_create("shmring-doc-example")?;
//! let tx = q.sender()?;
//! // In another (here the same, for the example):
//! let rx = Queue::<u64>::open("shmring-doc-example")?.receiver()?;
//!
//! tx.send(42)?;
//! tx.close(); // the producer is done: the end of the stream...
//! assert_eq!(rx.recv()?, 42);
//! assert_eq!(rx.recv(), Err(shmring::RecvError::Closed)); // ...after the last message
//! drop(rx); // ended, drained, nobody attached: the name is removed
//! assert!(Queue::<u64>::open("shmring-doc-example").is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Names: who removes them
//!
//! A name (`/dev/shm/<name>`, or a file path) stays until it is removed,
//! whoever created it and whichever processes have exited since: a
//! counter kept in a [`Value`] is there for the program started tomorrow,
//! and messages sent into a named queue wait for a receiver that has not
//! started yet. The same rule holds for every kind (queues, byte queues,
//! pipes, `Value`, `Array`, `Shared`), so processes that open one name,
//! in any order, always meet on one segment. A name is removed only by:
//!
//! - `unlink(name)` ([`Queue::unlink`], [`Pipe::unlink`], [`Value::unlink`],
//!   …) or `shmring rm NAME`;
//! - the end of its stream, for a queue: once it is closed ([`Sender::close`]),
//!   every message was taken and its last endpoint has gone, the process
//!   that leaves last removes the name (exactly one does; a later
//!   `open_or_create` starts a new stream);
//! - `shmring gc`, for what holds nothing: a queue without messages that
//!   no process maps and whose creator is dead;
//! - the creating handle itself, only if asked with `persist(false)` on the
//!   builder: for a name private to one program and the children it forks.
//!
//! Mappings outlive their name: processes that still have it open keep
//! working on the old segment.
//!
//! ## The end of a stream
//!
//! [`RecvError::Disconnected`] means "no sender is attached right now": a
//! sender dropped its end or its process died, and another one attaching
//! later undoes it (wait for one with [`Receiver::wait_connected`], or let
//! [`Receiver::set_wait_for_senders`] do so inside `recv`).
//! [`RecvError::Closed`] is the end, for good: the producers said they were
//! done ([`Sender::close`]; the stream ends at the last attached sender's
//! close, or at the `n`-th with [`QueueBuilder::close_after`]), or someone
//! closed it outright ([`Queue::close`]); receivers get it once every
//! message sent before it was taken, and no sender may attach any more.
//!
//! ## From Python `multiprocessing`
//!
//! | Python | shmring |
//! | --- | --- |
//! | `Queue(maxsize)` | [`Queue::create`] / [`Queue::anonymous`] with a capacity, then [`Queue::sender`] / [`Queue::receiver`] |
//! | `put(x)` / `get()` | [`Sender::send`] / [`Receiver::recv`] |
//! | `put(x, timeout=t)` / `get(timeout=t)` | [`Sender::send_timeout`] / [`Receiver::recv_timeout`] |
//! | `put_nowait` / `get_nowait`, `Full` / `Empty` | [`Sender::try_send`] / [`Receiver::try_recv`], [`TrySendError::Full`] / [`TryRecvError::Empty`] |
//! | `qsize()`, `empty()`, `full()` | [`Queue::len`], [`Queue::is_empty`], [`Queue::is_full`] |
//! | `close()`, `EOFError` | [`Sender::close`]: receivers drain, then [`RecvError::Closed`]; dropping a handle (or dying): the peer sees `Disconnected` until another attaches |
//! | `put(obj)` of any size | [`ByteQueue`]: [`ByteSender::send`], [`ByteReceiver::recv_into`]; loans: [`ByteSender::loan`], [`ByteReceiver::recv_ref`] |
//! | `Pipe(duplex)` | [`Pipe::anonymous`], then [`Pipe::left`] / [`Pipe::right`] per process: [`Connection`] |
//! | `Value`, `Array`, `get_lock()` | [`Value`], [`Array`], [`Value::get_lock`] |
//! | `Lock`, `RLock`, `Event`, `Condition`, `Semaphore`, `Barrier` | [`Lock`], [`RLock`], [`Event`], [`Condition`], [`Semaphore`], [`Barrier`], placed with [`Shared`] |
//! | `Manager().dict()`: `d[k] = v`, `d[k]`, `del d[k]`, `k in d`, `len(d)`, `d.items()` | [`SharedMap::create`] (or [`SharedMap::anonymous`] before `fork`), [`SharedMap::open`] in the other processes: [`SharedMap::insert`], [`SharedMap::get`], [`SharedMap::remove`], [`SharedMap::contains_key`], [`SharedMap::len`], [`SharedMap::entries`] (in no particular order; Python's is insertion order), and, atomic across processes, [`SharedMap::update`] and [`SharedMap::compare_and_swap`]; keys and values of any serde type, several in one map through an enum: `TypedMap<K, V>` (feature `serde`; `examples/manager_dict_list.rs`) |
//! | `Manager().list()`: `append`, `l[i]`, `l[i] = v`, `insert`, `pop`, `reverse`, `sort`, `list(l)` | [`SharedList`] (same constructors): [`SharedList::push`], [`SharedList::get`], [`SharedList::set`], [`SharedList::insert`], [`SharedList::pop`], [`SharedList::reverse`], [`SharedList::sort`], [`SharedList::to_vec`]; of any serde type: `TypedList<T>` (feature `serde`) |
//! | `ProcessPoolExecutor().map(f, xs)`, `submit(f, x).result()`, `shutdown(wait)` | feature `serde`: `pool::init(&[&F])` first in `main`, then `Pool::new()?.map(&F, xs)`, `Pool::submit` → `TaskHandle::wait`, `Pool::imap_unordered`, `Pool::shutdown`; a killed worker fails its task with `PoolError::WorkerDied` (module `pool`) |
//!
//! ## Guarantees
//! - Nothing read from shared memory is trusted: every index is masked or
//!   bounds-checked before it addresses memory, and a scribbled segment
//!   yields `Corrupted`, never an out-of-bounds access or a panic.
//! - A process that dies without dropping its handles is detected (pid plus
//!   start time) within a liveness slice of 20 ms by any blocked peer (and
//!   by a peer that only polls, within a slice of its polls), which then
//!   sees `Disconnected` instead of blocking or polling forever.
//! - Never delivered twice, never torn: a message a dead process held (a
//!   loan, an in-place read, an MPMC claim), or a loan leaked with
//!   `mem::forget`, is counted in `lost()`, in both flavors.
//! - Endpoints, loans and lock guards work only in the process that made
//!   them: inherited through `fork`, they panic on use (the child attaches
//!   its own from the segment handle). Processes of different pid
//!   namespaces cannot share a segment (`ForeignPidNamespace`).
//! - The safe API has no way around these: the ring internals (claims,
//!   slot writes) are crate-private, `Value` / `Array` hand out no
//!   references into shared memory (locked and lock-free access may mix),
//!   and lock guards are `!Send`.
//! - No heap allocation and no system call per message while nobody sleeps.
//!
//! The design — layout, orderings, futex protocol — is in `docs/design.md`.

#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
// A `--cfg loom` build (the models' crate only) compiles the layers without
// segments: what only mapped segments use is dead there, and only there.
#![cfg_attr(loom, allow(dead_code))]

// The layers are listed in docs/design.md ("Layers"); `tests/layers.rs`
// checks that no file imports a higher one. Only `error`, `inspect` and
// `transport` are public modules; everything else public is re-exported
// below (and `pool`, with the `serde` feature). The internals that the loom models and the white-box tests need
// are reached through `__internal`, hidden and outside the API.
#[cfg(not(loom))]
mod cell;
mod channel;
#[cfg(not(loom))]
mod container;
// The models check the containers' commit protocol (seqlock and redo
// record) over heap words; the rest needs mapped files.
#[cfg(loom)]
mod container {
    pub mod engine;
}
pub mod error;
#[cfg(not(loom))]
pub mod inspect;
mod loom;
#[cfg(all(feature = "serde", not(loom)))]
pub mod pool;
mod process;
mod ring;
#[cfg(not(loom))]
mod shared;
mod shm;
mod sync;
#[cfg(not(loom))]
pub mod transport;
mod types;
mod wait;

#[doc(hidden)]
#[path = "internal.rs"]
pub mod __internal;

#[cfg(not(loom))]
pub use channel::{
    ByteIter, ByteQueue, ByteQueueBuilder, ByteReceiver, ByteSender, Iter, Loan, Queue,
    QueueBuilder, QueueInfo, Receiver, Ref, Sender, TryIter, MAX_CAPACITY, MAX_MESSAGE,
};
pub use channel::{ByteLoan, ByteRef, DEFAULT_SPIN};
#[cfg(not(loom))]
pub use channel::{Connection, Pipe, PipeBuilder, PIPE_CAPACITY, PIPE_MAX_MESSAGE};
pub use error::{
    BarrierError, ByteSendError, ContainerError, LockTimeoutError, OwnerDied, RecvError,
    RecvTimeoutError, SegmentError, SemaphoreOverflow, SendError, SendTimeoutError, TryLockError,
    TryRecvError, TrySendError,
};
#[cfg(all(feature = "serde", not(loom)))]
pub use error::{PoolError, ValueRecvError, ValueSendError};
#[cfg(all(feature = "serde", not(loom)))]
pub use pool::{ImapUnordered, Pool, PoolBuilder, Task, TaskHandle};
pub use process::pid_namespace;
pub use types::{Flavor, Kind, Role, TypeDesc, TypeName};
#[cfg(not(loom))]
pub use wait::{futex_wait, futex_wake};
pub use wait::{Deadline, WakeMode, LIVENESS_SLICE};

#[cfg(not(loom))]
pub use cell::{Array, ArrayBuilder, ArrayGuard, Value, ValueBuilder, ValueCell, ValueGuard};
#[cfg(not(loom))]
pub use container::{
    MapEntry, SharedList, SharedListBuilder, SharedMap, SharedMapBuilder, MAX_ITEM,
};
#[cfg(all(feature = "serde", not(loom)))]
pub use container::{TypedList, TypedListBuilder, TypedMap, TypedMapBuilder};
#[cfg(not(loom))]
pub use shared::{Shared, SharedBuilder, ShmSafe};
pub use sync::{
    Barrier, BarrierWaitResult, CondGuard, Condition, Event, Lock, LockGuard, RLock, RLockGuard,
    Semaphore, WaitTimeoutResult,
};

/// The README's code blocks, compiled and run as doc tests (`cargo test
/// --doc`), so the first code a newcomer copies works.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// Re-exported so users can derive `Pod` for their message types without
/// depending on bytemuck themselves. The derive macros name their crate, so
/// through the re-export they need to be told where it is:
///
/// ```
/// use shmring::bytemuck::{Pod, Zeroable};
/// use shmring::{Flavor, Queue};
///
/// #[derive(Clone, Copy, Pod, Zeroable)]
/// #[bytemuck(crate = "shmring::bytemuck")]
/// #[repr(C)]
/// struct Tick {
///     seq: u64,
///     price: f64,
/// }
///
/// let q = Queue::<Tick>::anonymous(Flavor::Spsc, 4)?;
/// let (tx, rx) = (q.sender()?, q.receiver()?);
/// tx.send(Tick { seq: 1, price: 2.5 })?;
/// assert_eq!(rx.recv()?.seq, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// (With `bytemuck` as a dependency of your own, with its `derive`
/// feature, the plain `#[derive(Pod, Zeroable)]` works and the attribute is
/// not needed.)
pub use bytemuck;
