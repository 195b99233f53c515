//! Property tests of header validation and of every decode of shared-memory
//! content (proptest):
//!
//! - **headers**: arbitrary 256-byte headers, and real headers with fields
//!   changed and the checksum made right again, in files of any size, opened
//!   as `Queue<u64>`, `ByteQueue`, `Shared<Lock>` and `Array<u8>`: never a
//!   panic; `Ok` exactly when the layout is consistent (derived here
//!   independently, from `docs/design.md`), otherwise a typed error that
//!   names one of the things wrong with it;
//! - **queue words**: a working queue whose control block and slots are
//!   overwritten with arbitrary words between operations: every call is `Ok`
//!   or a typed error; before the first harmful write the queue behaves
//!   exactly as a FIFO model says, and writes to words that are only hints
//!   or statistics (futex words, waiter counts, counters, intents) change
//!   nothing;
//! - **byte lengths**: stored message lengths overwritten with arbitrary
//!   values: `Corrupted` beyond the maximum, the payload's bytes otherwise;
//! - **endpoint table**: arbitrary entries and intents: attaching and
//!   reaping never panic, attach succeeds exactly when an entry is free or
//!   held by a dead process, reaping frees every dead entry, and queued
//!   messages survive.
//!
//! Cases per property: `PROPTEST_CASES` (default 128 or 256); a failure
//! prints its `PROPTEST_RNG_SEED` and the minimal input.
#![cfg(not(loom))]

mod common;

use common::run;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use shmring::__internal::{header_checksum, type_desc, HeaderFields, MAGIC, VERSION};
use shmring::__internal::{liveness, Liveness, ProcId};
use shmring::{
    Array, ByteQueue, ByteSendError, Flavor, Lock, Queue, RecvTimeoutError, SegmentError, Shared,
    TryRecvError, TypeDesc,
};
use std::collections::VecDeque;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------
// Running properties
// ---------------------------------------------------------------------------

/// Runs `body` on `cases` inputs from the strategy `make` builds (or
/// `PROPTEST_CASES`), under the test helpers' watchdog and `/dev/shm` check.
fn check<S>(
    test: &'static str,
    cases: u32,
    make: impl FnOnce() -> S + Send + 'static,
    body: impl Fn(S::Value) -> Result<(), TestCaseError> + Send + 'static,
) where
    S: Strategy,
    S::Value: Debug,
{
    run(test, move |_| {
        let strategy = make();
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases);
        let seed = match Config::default().rng_seed {
            RngSeed::Fixed(s) => s,
            RngSeed::Random => {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
                    ^ std::process::id() as u64
            }
        };
        let config = Config {
            cases,
            failure_persistence: None,
            rng_seed: RngSeed::Fixed(seed),
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        if let Err(e) = runner.run(&strategy, body) {
            panic!("{test}: {e}\n(replay with PROPTEST_RNG_SEED={seed})");
        }
    });
}

/// A directory for one property's files.
struct Files {
    dir: tempfile::TempDir,
    next: AtomicU64,
}

impl Files {
    fn new() -> Self {
        Files {
            dir: tempfile::tempdir().unwrap(),
            next: AtomicU64::new(0),
        }
    }

    fn path(&self) -> PathBuf {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("seg-{n}"))
    }
}

/// Writes `bytes` as a private file (mode 0600, as shmring creates them).
fn write_file(path: &Path, bytes: &[u8]) {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    f.write_all_at(bytes, 0).unwrap();
    f.set_len(bytes.len() as u64).unwrap();
}

fn rw(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap()
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn put_u64(b: &mut [u8], off: usize, v: u64) {
    b[off..off + 8].copy_from_slice(&v.to_le_bytes());
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

// ---------------------------------------------------------------------------
// Headers as bytes (offsets from `src/shm/header.rs` and `docs/design.md`)
// ---------------------------------------------------------------------------

const INIT_STATE: usize = 12;
const CHECKSUM: usize = 144;
const READY: u32 = 2;

fn parse_header(b: &[u8]) -> HeaderFields {
    let mut f = HeaderFields::default();
    f.magic = u64_at(b, 0);
    f.version = u32_at(b, 8);
    f.kind = u32_at(b, 16);
    f.flavor = u32_at(b, 20);
    f.elem_size = u64_at(b, 24);
    f.elem_align = u64_at(b, 32);
    f.type_fingerprint = u64_at(b, 40);
    f.capacity = u64_at(b, 48);
    f.slot_count = u64_at(b, 56);
    f.slot_stride = u64_at(b, 64);
    f.control_offset = u64_at(b, 72);
    f.endpoints_offset = u64_at(b, 80);
    f.endpoint_count = u64_at(b, 88);
    f.slots_offset = u64_at(b, 96);
    f.total_len = u64_at(b, 104);
    f.creator_pid = u32_at(b, 112);
    f.creator_uid = u32_at(b, 116);
    f.creator_start = u64_at(b, 120);
    f.created_unix_ns = u64_at(b, 128);
    f.creator_pid_ns = u64_at(b, 176);
    f.type_name = std::array::from_fn(|i| u64_at(b, 184 + 8 * i));
    f.wake_mode = u32_at(b, 136);
    f.checksum = u64_at(b, 144);
    f.msg_max = u64_at(b, 152);
    f.payload_offset = u64_at(b, 160);
    f.payload_stride = u64_at(b, 168);
    f
}

/// Writes every field of `f` (not `init_state`, not the checksum) into `b`.
fn write_fields(b: &mut [u8], f: &HeaderFields) {
    put_u64(b, 0, f.magic);
    put_u32(b, 8, f.version);
    put_u32(b, 16, f.kind);
    put_u32(b, 20, f.flavor);
    put_u64(b, 24, f.elem_size);
    put_u64(b, 32, f.elem_align);
    put_u64(b, 40, f.type_fingerprint);
    put_u64(b, 48, f.capacity);
    put_u64(b, 56, f.slot_count);
    put_u64(b, 64, f.slot_stride);
    put_u64(b, 72, f.control_offset);
    put_u64(b, 80, f.endpoints_offset);
    put_u64(b, 88, f.endpoint_count);
    put_u64(b, 96, f.slots_offset);
    put_u64(b, 104, f.total_len);
    put_u32(b, 112, f.creator_pid);
    put_u32(b, 116, f.creator_uid);
    put_u64(b, 120, f.creator_start);
    put_u64(b, 128, f.created_unix_ns);
    put_u32(b, 136, f.wake_mode);
    put_u64(b, 152, f.msg_max);
    put_u64(b, 160, f.payload_offset);
    put_u64(b, 168, f.payload_stride);
    put_u64(b, 176, f.creator_pid_ns);
    for (i, w) in f.type_name.iter().enumerate() {
        put_u64(b, 184 + 8 * i, *w);
    }
}

/// Field `i` of the header, as a u64 (32-bit fields widened).
fn field_mut(f: &mut HeaderFields, i: usize) -> (&'static str, FieldRef<'_>) {
    use FieldRef::{W32, W64};
    match i {
        0 => ("magic", W64(&mut f.magic)),
        1 => ("version", W32(&mut f.version)),
        2 => ("kind", W32(&mut f.kind)),
        3 => ("flavor", W32(&mut f.flavor)),
        4 => ("elem_size", W64(&mut f.elem_size)),
        5 => ("elem_align", W64(&mut f.elem_align)),
        6 => ("type_fingerprint", W64(&mut f.type_fingerprint)),
        7 => ("capacity", W64(&mut f.capacity)),
        8 => ("slot_count", W64(&mut f.slot_count)),
        9 => ("slot_stride", W64(&mut f.slot_stride)),
        10 => ("control_offset", W64(&mut f.control_offset)),
        11 => ("endpoints_offset", W64(&mut f.endpoints_offset)),
        12 => ("endpoint_count", W64(&mut f.endpoint_count)),
        13 => ("slots_offset", W64(&mut f.slots_offset)),
        14 => ("total_len", W64(&mut f.total_len)),
        15 => ("creator_pid", W32(&mut f.creator_pid)),
        16 => ("creator_uid", W32(&mut f.creator_uid)),
        17 => ("creator_start", W64(&mut f.creator_start)),
        18 => ("created_unix_ns", W64(&mut f.created_unix_ns)),
        19 => ("wake_mode", W32(&mut f.wake_mode)),
        20 => ("msg_max", W64(&mut f.msg_max)),
        21 => ("payload_offset", W64(&mut f.payload_offset)),
        _ => ("payload_stride", W64(&mut f.payload_stride)),
    }
}

const FIELDS: usize = 23;

enum FieldRef<'a> {
    W32(&'a mut u32),
    W64(&'a mut u64),
}

impl FieldRef<'_> {
    fn get(&self) -> u64 {
        match self {
            FieldRef::W32(v) => **v as u64,
            FieldRef::W64(v) => **v,
        }
    }

    fn set(&mut self, v: u64) {
        match self {
            FieldRef::W32(x) => **x = v as u32,
            FieldRef::W64(x) => **x = v,
        }
    }
}

/// Values that sit on the edges of every check.
fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => any::<u64>(),
        3 => 0u64..=16,
        1 => Just(u64::MAX),
        2 => (0u32..64).prop_map(|b| 1u64 << b),
        1 => (0u32..64).prop_map(|b| (1u64 << b).wrapping_sub(1)),
        1 => (0u32..64).prop_map(|b| (1u64 << b).wrapping_add(1)),
        1 => Just(isize::MAX as u64),
        1 => Just(isize::MAX as u64 + 1),
        1 => Just(1u64 << 30),
        1 => Just((1u64 << 30) + 1),
        1 => Just(1u64 << 32),
        1 => Just((1u64 << 32) + 1),
    ]
}

// ---------------------------------------------------------------------------
// (a) Headers: the layout derived independently
// ---------------------------------------------------------------------------

/// What a consistent header may hold, derived here from `docs/design.md`
/// (not from the library's own layout code).
fn align_up(v: u64, a: u64) -> Option<u64> {
    Some(v.checked_add(a - 1)? & !(a - 1))
}

/// Bytes of an MPMC slot of `T` (stamp `u64`, then the value, 8-aligned):
/// 16 for both `u64` and `u32` values.
const MPMC_SLOT: u64 = 16;

/// The queue layout for (`kind`, `flavor`, `capacity`, `msg_max`) and
/// element `elem`: `None` if out of range.
fn queue_layout(flavor: u32, elem: TypeDesc, capacity: u64, msg_max: u64) -> Option<HeaderFields> {
    if !(1..=1u64 << 32).contains(&capacity) || msg_max > 1 << 30 {
        return None;
    }
    // Both rings' slots are {stamp u64, T} (repr(C)); a byte queue's slot
    // is followed by its payload, the whole rounded up to 64 bytes.
    let align = elem.align.max(8);
    let slot_size = align_up(align_up(8, elem.align)? + elem.size, align)?;
    let slot_count = match flavor {
        1 => capacity.next_power_of_two(),
        2 => {
            debug_assert_eq!(slot_size, MPMC_SLOT, "the MPMC cases carry u64");
            capacity
        }
        _ => return None,
    };
    let stride = if msg_max > 0 && slot_size + msg_max <= 64 {
        (slot_size + msg_max).next_power_of_two()
    } else if msg_max > 0 {
        align_up(slot_size + msg_max, 64)?
    } else {
        slot_size
    };
    // header 256, control block 640, endpoint table 64 x 8, intents 64 x 64
    let slots_offset = align_up(256 + 640 + 512 + 4096, align.max(128))?;
    let total_len = slots_offset.checked_add(slot_count.checked_mul(stride)?)?;
    let (payload_offset, payload_stride) = if msg_max > 0 {
        (slots_offset + slot_size, stride)
    } else {
        (0, 0)
    };
    if total_len > isize::MAX as u64 {
        return None;
    }
    Some({
        let mut f = HeaderFields::default();
        f.slot_count = slot_count;
        f.slot_stride = stride;
        f.control_offset = 256;
        f.endpoints_offset = 896;
        f.endpoint_count = 64;
        f.slots_offset = slots_offset;
        f.total_len = total_len;
        f.msg_max = msg_max;
        f.payload_offset = payload_offset;
        f.payload_stride = payload_stride;
        f
    })
}

/// One region (`Shared`, `Array`) layout: `count` elements after a control
/// block of `control_len` bytes at 256 (none if 0).
fn region_layout(elem: TypeDesc, count: u64, control_len: u64) -> Option<HeaderFields> {
    let control_offset = if control_len > 0 { 256 } else { 0 };
    let after = align_up(256 + control_len, 128)?;
    let slots_offset = align_up(after, elem.align.max(1))?;
    let total_len = slots_offset.checked_add(count.checked_mul(elem.size)?)?;
    if total_len > isize::MAX as u64 {
        return None;
    }
    Some({
        let mut f = HeaderFields::default();
        f.slot_count = count;
        f.slot_stride = elem.size;
        f.control_offset = control_offset;
        f.slots_offset = slots_offset;
        f.total_len = total_len;
        f
    })
}

/// One reason a header must be refused, and the errors that name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wrong {
    /// Shorter than a header (magic ours: SizeMismatch; else Corrupted).
    Short,
    /// Empty, or not READY: the opener gives up waiting.
    NotReady,
    /// Bad magic, bad checksum, bad flavor / wake mode / message size, or a
    /// layout that disagrees with the derived one.
    Corrupt,
    Version,
    Size,
    Kind,
    Type,
    /// Created in another pid namespace than the opener's.
    Namespace,
}

impl Wrong {
    fn names(self, e: &SegmentError) -> bool {
        match self {
            Wrong::Short => matches!(
                e,
                SegmentError::SizeMismatch { .. } | SegmentError::Corrupted(_)
            ),
            Wrong::NotReady => matches!(e, SegmentError::NotInitialized),
            Wrong::Corrupt => matches!(e, SegmentError::Corrupted(_)),
            Wrong::Version => matches!(e, SegmentError::VersionMismatch { .. }),
            Wrong::Size => matches!(e, SegmentError::SizeMismatch { .. }),
            Wrong::Kind => matches!(e, SegmentError::WrongKind { .. }),
            Wrong::Type => matches!(e, SegmentError::TypeMismatch { .. }),
            Wrong::Namespace => matches!(e, SegmentError::ForeignPidNamespace { .. }),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opener {
    Queue,
    Bytes,
    SharedLock,
    ArrayU8,
}

/// Everything wrong with a file of `size` bytes whose first bytes are
/// `header`, for `opener`. Empty: it must open.
fn wrongs(opener: Opener, header: &[u8], size: u64) -> Vec<Wrong> {
    let mut w = Vec::new();
    if size == 0 {
        return vec![Wrong::NotReady];
    }
    if size < 256 {
        return vec![Wrong::Short];
    }
    let f = parse_header(header);
    if f.magic != 0 && f.magic != MAGIC {
        return vec![Wrong::Corrupt];
    }
    if u32_at(header, INIT_STATE) != READY {
        return vec![Wrong::NotReady];
    }
    if f.magic != MAGIC {
        w.push(Wrong::Corrupt);
    }
    if f.version != VERSION {
        w.push(Wrong::Version);
    }
    if f.checksum != header_checksum(&f) {
        w.push(Wrong::Corrupt);
    }
    if f.total_len != size {
        w.push(Wrong::Size);
    }
    let ns = shmring::__internal::pid_namespace();
    if f.creator_pid_ns != 0 && ns != 0 && f.creator_pid_ns != ns {
        w.push(Wrong::Namespace);
    }
    let (kind, elem) = match opener {
        Opener::Queue => (1, type_desc::<u64>()),
        Opener::Bytes => (2, type_desc::<u64>()),
        Opener::SharedLock => (3, type_desc::<Lock>()),
        Opener::ArrayU8 => (4, type_desc::<u8>()),
    };
    if f.kind != kind {
        w.push(Wrong::Kind);
    }
    if f.elem() != elem {
        w.push(Wrong::Type);
    }
    let key = |l: &HeaderFields| {
        (
            l.slot_count,
            l.slot_stride,
            l.control_offset,
            l.slots_offset,
            l.total_len,
        )
    };
    match opener {
        Opener::Queue | Opener::Bytes => {
            let bytes = opener == Opener::Bytes;
            if bytes && !(1..=1u64 << 30).contains(&f.msg_max) {
                w.push(Wrong::Corrupt);
            }
            if !matches!(f.wake_mode, 1 | 2) {
                w.push(Wrong::Corrupt);
            }
            let msg_max = if bytes { f.msg_max } else { 0 };
            match queue_layout(f.flavor, elem, f.capacity, msg_max) {
                Some(l)
                    if (
                        key(&l),
                        l.endpoints_offset,
                        l.endpoint_count,
                        l.msg_max,
                        l.payload_offset,
                        l.payload_stride,
                    ) == (
                        key(&f),
                        f.endpoints_offset,
                        f.endpoint_count,
                        f.msg_max,
                        f.payload_offset,
                        f.payload_stride,
                    ) => {}
                _ => w.push(Wrong::Corrupt),
            }
        }
        Opener::SharedLock | Opener::ArrayU8 => {
            let control = if opener == Opener::ArrayU8 {
                std::mem::size_of::<Lock>() as u64
            } else {
                0
            };
            match region_layout(elem, f.capacity, control) {
                Some(l) if key(&l) == key(&f) => {
                    // The value, or the array, must lie in the file.
                    if opener == Opener::SharedLock && f.capacity < 1 {
                        w.push(Wrong::Corrupt);
                    }
                }
                _ => w.push(Wrong::Corrupt),
            }
        }
    }
    w
}

/// Opens `path` with `opener`: `Ok(())` or the error.
fn open_with(opener: Opener, path: &Path) -> Result<(), SegmentError> {
    match opener {
        Opener::Queue => {
            let q = Queue::<u64>::builder()
                .init_timeout(Duration::ZERO)
                .open_at(path)?;
            // It works as far as its (unscribbled) body allows.
            let info = q.info().clone();
            assert!(info.capacity >= 1);
            if let (Ok(tx), Ok(rx)) = (q.sender(), q.receiver()) {
                let _ = tx.try_send(5);
                let _ = rx.try_recv();
            }
            let _ = q.len();
            Ok(())
        }
        Opener::Bytes => {
            let q = ByteQueue::builder()
                .init_timeout(Duration::ZERO)
                .open_at(path)?;
            if let (Ok(tx), Ok(rx)) = (q.sender(), q.receiver()) {
                let _ = tx.try_send(b"abc");
                if let Ok(m) = rx.try_recv() {
                    assert!(m.len() <= q.max_message_size());
                }
            }
            Ok(())
        }
        Opener::SharedLock => {
            let l = Shared::<Lock>::builder()
                .init_timeout(Duration::ZERO)
                .open_at(path)?;
            let _ = l.try_lock().map(drop);
            Ok(())
        }
        Opener::ArrayU8 => {
            // No path opener: through a descriptor (whose opener waits the
            // default second for READY, so it is only asked when that is
            // quick; see the caller).
            let a = Array::<u8>::from_fd(sealed_copy(path))?;
            let mut all = vec![0u8; a.len()];
            a.read_into(&mut all);
            let _ = a.try_lock().map(drop);
            Ok(())
        }
    }
}

/// A sealed memfd holding the bytes of `path` (`from_fd` insists on the
/// seals an anonymous segment carries).
fn sealed_copy(path: &Path) -> OwnedFd {
    let bytes = std::fs::read(path).unwrap();
    let name = std::ffi::CString::new("props").unwrap();
    // SAFETY: a valid NUL-terminated name and flags.
    let raw =
        unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_ALLOW_SEALING | libc::MFD_CLOEXEC) };
    assert!(raw >= 0, "memfd_create");
    // SAFETY: memfd_create returned a fresh descriptor that we own.
    let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, &bytes).unwrap();
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    let raw_fd = std::os::fd::AsRawFd::as_raw_fd(&f);
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    let r = unsafe { libc::fcntl(raw_fd, libc::F_ADD_SEALS, seals) };
    assert_eq!(r, 0, "F_ADD_SEALS");
    OwnedFd::from(f)
}

/// Real segments to start from: their whole files.
fn bases(files: &Files) -> Vec<(String, Vec<u8>)> {
    let mut v = Vec::new();
    let mut keep = |what: String, path: &Path| {
        v.push((what, std::fs::read(path).unwrap()));
    };
    for (flavor, cap) in [
        (Flavor::Spsc, 1),
        (Flavor::Spsc, 5),
        (Flavor::Mpmc, 1),
        (Flavor::Mpmc, 6),
    ] {
        let p = files.path();
        let q = Queue::<u64>::builder()
            .flavor(flavor)
            .capacity(cap)
            .create_at(&p)
            .unwrap();
        keep(format!("queue {flavor} {cap}"), &p);
        drop(q);
        let p = files.path();
        let q = ByteQueue::builder()
            .flavor(flavor)
            .capacity(cap)
            .max_message_size(cap * 37)
            .create_at(&p)
            .unwrap();
        keep(format!("bytes {flavor} {cap} x {}", cap * 37), &p);
        drop(q);
    }
    let p = files.path();
    let l = Shared::<Lock>::builder()
        .create_at(&p, Lock::new())
        .unwrap();
    keep("shared lock".into(), &p);
    drop(l);
    for len in [0usize, 3, 200] {
        let a = Array::<u8>::anonymous(len).unwrap();
        let fd = a.raw_fd().unwrap();
        let bytes = std::fs::read(format!("/proc/self/fd/{fd}")).unwrap();
        v.push((format!("array u8 {len}"), bytes));
    }
    v
}

#[derive(Clone, Debug)]
enum Checksum {
    Right,
    AsBefore,
    Value(u64),
}

#[derive(Clone, Debug)]
enum Size {
    /// As the header's `total_len` says (when that is small).
    Claimed,
    /// As the base file.
    Base,
    Exactly(u64),
}

#[derive(Clone, Debug)]
struct HeaderCase {
    base: usize,
    /// Arbitrary 256 bytes instead of the base's header.
    raw: Option<Vec<u8>>,
    /// (field, value, add to the old value instead of replacing it)
    changes: Vec<(usize, u64, bool)>,
    magic_ok: bool,
    version_ok: bool,
    init_state: u32,
    checksum: Checksum,
    size: Size,
}

fn header_case(bases: usize) -> impl Strategy<Value = HeaderCase> {
    (
        0..bases,
        prop::option::weighted(0.3, prop::collection::vec(any::<u8>(), 256)),
        prop::collection::vec((0..FIELDS, interesting_u64(), any::<bool>()), 0..4),
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.9),
        prop_oneof![9 => Just(READY), 1 => any::<u32>()],
        prop_oneof![
            8 => Just(Checksum::Right),
            1 => Just(Checksum::AsBefore),
            1 => any::<u64>().prop_map(Checksum::Value),
        ],
        prop_oneof![
            6 => Just(Size::Claimed),
            2 => Just(Size::Base),
            2 => (0u64..20_000).prop_map(Size::Exactly),
        ],
    )
        .prop_map(
            |(base, raw, changes, magic_ok, version_ok, init_state, checksum, size)| HeaderCase {
                base,
                raw,
                changes,
                magic_ok,
                version_ok,
                init_state,
                checksum,
                size,
            },
        )
}

/// Builds the file a case describes; returns it and a description of
/// the changed fields.
fn header_file(case: &HeaderCase, base: &[u8]) -> (Vec<u8>, Vec<String>) {
    let mut header = case.raw.clone().unwrap_or_else(|| base[..256].to_vec());
    let before = u64_at(&header, CHECKSUM);
    let mut f = parse_header(&header);
    let mut changed = Vec::new();
    for &(i, v, add) in &case.changes {
        let (name, mut r) = field_mut(&mut f, i);
        let new = if add { r.get().wrapping_add(v) } else { v };
        r.set(new);
        changed.push(format!("{name} = {:#x}", r.get()));
    }
    if case.magic_ok {
        f.magic = MAGIC;
    }
    if case.version_ok {
        f.version = VERSION;
    }
    write_fields(&mut header, &f);
    put_u32(&mut header, INIT_STATE, case.init_state);
    let sum = match case.checksum {
        Checksum::Right => header_checksum(&f),
        Checksum::AsBefore => before,
        Checksum::Value(v) => v,
    };
    put_u64(&mut header, CHECKSUM, sum);
    let size = match case.size {
        Size::Claimed if f.total_len <= 1 << 20 => f.total_len,
        Size::Claimed | Size::Base => base.len() as u64,
        Size::Exactly(n) => n,
    } as usize;
    let mut file = base.to_vec();
    file.resize(size.max(256), 0);
    file[..256].copy_from_slice(&header);
    file.truncate(size);
    (file, changed)
}

#[test]
fn prop_headers_open_only_when_consistent() {
    let files = Files::new();
    let bases = bases(&files);
    let n = bases.len();
    // Sanity: every base opens as what it is, and as nothing else.
    for (what, bytes) in &bases {
        let opener = match what.split(' ').next().unwrap() {
            "queue" => Opener::Queue,
            "bytes" => Opener::Bytes,
            "shared" => Opener::SharedLock,
            _ => Opener::ArrayU8,
        };
        assert!(
            wrongs(opener, bytes, bytes.len() as u64).is_empty(),
            "{what}: the derived layout disagrees with the library's: {:?}",
            wrongs(opener, bytes, bytes.len() as u64)
        );
        let p = files.path();
        write_file(&p, bytes);
        open_with(opener, &p).unwrap_or_else(|e| panic!("{what}: {e}"));
        std::fs::remove_file(&p).unwrap();
    }
    check(
        "prop_headers",
        256,
        move || header_case(n),
        move |case: HeaderCase| {
            let (what, base) = &bases[case.base];
            let (file, changed) = header_file(&case, base);
            let p = files.path();
            write_file(&p, &file);
            let size = file.len() as u64;
            for opener in [
                Opener::Queue,
                Opener::Bytes,
                Opener::SharedLock,
                Opener::ArrayU8,
            ] {
                let wrong = wrongs(opener, &file, size);
                if opener == Opener::ArrayU8 && wrong.contains(&Wrong::NotReady) {
                    continue; // its opener would wait a second first
                }
                let got = open_with(opener, &p);
                let counter = if got.is_ok() { &OPENED } else { &REFUSED };
                counter.fetch_add(1, Ordering::Relaxed);
                match &got {
                    Ok(()) => prop_assert!(
                        wrong.is_empty(),
                        "{opener:?} opened {what} with {changed:?}, size {size}, \
                         though {wrong:?}"
                    ),
                    Err(e) => prop_assert!(
                        wrong.iter().any(|w| w.names(e)),
                        "{opener:?} on {what} with {changed:?}, size {size}: {e:?} \
                         names none of {wrong:?}"
                    ),
                }
            }
            std::fs::remove_file(&p).unwrap();
            Ok(())
        },
    );
    let (opened, refused) = (
        OPENED.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    );
    eprintln!("prop_headers: {opened} opens succeeded, {refused} refused");
    assert!(
        opened > 0 && refused > 0,
        "the cases never reached both outcomes"
    );
}

static OPENED: AtomicU64 = AtomicU64::new(0);
static REFUSED: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------------------
// (b) A working queue, overwritten between operations
// ---------------------------------------------------------------------------

/// A word of the control block, the table, the intents or the slots.
#[derive(Clone, Copy, Debug)]
enum Loc {
    Head,
    Tail,
    /// A wait cell's futex word (not_empty, not_full).
    Seq(bool),
    /// A wait cell's waiter count.
    Waiters(bool),
    Senders,
    Receivers,
    Ever,
    Reaped,
    Lost,
    Entry(u8),
    IntentStart(u8),
    IntentEnd(u8),
    /// Slot (mod the slot count), then its 4-byte word (mod the stride).
    Slot(u8, u8),
}

impl Loc {
    /// Writes here change no behaviour: hints and statistics, and intents,
    /// which only a reaper with dead endpoints reads.
    fn benign(self) -> bool {
        matches!(
            self,
            Loc::Seq(_)
                | Loc::Waiters(_)
                | Loc::Reaped
                | Loc::Lost
                | Loc::IntentStart(_)
                | Loc::IntentEnd(_)
        )
    }

    /// (offset, bytes) in a queue segment whose header is `h`.
    fn place(self, h: &HeaderFields) -> (u64, usize) {
        let c = h.control_offset;
        let intents = h.endpoints_offset + 512;
        match self {
            Loc::Head => (c, 8),
            Loc::Tail => (c + 128, 8),
            Loc::Seq(full) => (c + 256 + 128 * full as u64, 4),
            Loc::Waiters(full) => (c + 260 + 128 * full as u64, 4),
            Loc::Senders => (c + 512, 8),
            Loc::Receivers => (c + 520, 8),
            Loc::Reaped => (c + 528, 8),
            Loc::Ever => (c + 536, 8),
            Loc::Lost => (c + 544, 8),
            Loc::Entry(i) => (h.endpoints_offset + 8 * (i as u64 % 64), 8),
            Loc::IntentStart(i) => (intents + 64 * (i as u64 % 64), 8),
            Loc::IntentEnd(i) => (intents + 64 * (i as u64 % 64) + 8, 8),
            Loc::Slot(i, w) => {
                let words = (h.slot_stride / 4).max(1);
                let off = h.slots_offset
                    + (i as u64 % h.slot_count) * h.slot_stride
                    + 4 * (w as u64 % words);
                // Whole u64 words where the stride allows.
                if off.is_multiple_of(8) && h.slot_stride >= 8 {
                    (off, 8)
                } else {
                    (off, 4)
                }
            }
        }
    }
}

fn loc() -> impl Strategy<Value = Loc> {
    prop_oneof![
        3 => Just(Loc::Head),
        3 => Just(Loc::Tail),
        1 => any::<bool>().prop_map(Loc::Seq),
        1 => any::<bool>().prop_map(Loc::Waiters),
        1 => Just(Loc::Senders),
        1 => Just(Loc::Receivers),
        1 => Just(Loc::Ever),
        1 => Just(Loc::Reaped),
        1 => Just(Loc::Lost),
        1 => (0u8..4).prop_map(Loc::Entry),
        1 => (0u8..4).prop_map(Loc::IntentStart),
        1 => (0u8..4).prop_map(Loc::IntentEnd),
        5 => (any::<u8>(), any::<u8>()).prop_map(|(i, w)| Loc::Slot(i, w)),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    /// try_send (byte queues: of `n % (max + 2)` bytes).
    Send(u8),
    SendTimeout(u8),
    /// try_send_slice of 1 to 4 values (byte queues: try_send).
    SendSlice(u8),
    /// A loan (byte queues: of `n % (max + 2)` bytes), committed or dropped.
    Loan(u8, bool),
    Recv,
    RecvTimeout,
    /// try_recv_slice of 1 to 4 (byte queues: try_recv_into).
    RecvSlice(u8),
    RecvRef,
    /// Byte queues: poll; queues: try_iter.
    Poll,
    Len,
    /// Drop and attach again the sender (true) or the receiver.
    Reattach(bool),
    Reap,
    Write(Loc, u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u8>().prop_map(Op::Send),
        1 => any::<u8>().prop_map(Op::SendTimeout),
        2 => any::<u8>().prop_map(Op::SendSlice),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(n, c)| Op::Loan(n, c)),
        4 => Just(Op::Recv),
        1 => Just(Op::RecvTimeout),
        2 => any::<u8>().prop_map(Op::RecvSlice),
        2 => Just(Op::RecvRef),
        1 => Just(Op::Poll),
        1 => Just(Op::Len),
        1 => any::<bool>().prop_map(Op::Reattach),
        1 => Just(Op::Reap),
        3 => (loc(), interesting_u64()).prop_map(|(l, v)| Op::Write(l, v)),
    ]
}

#[derive(Clone, Debug)]
struct QueueCase {
    mpmc: bool,
    bytes: bool,
    capacity: u64,
    msg_max: u64,
    ops: Vec<Op>,
}

fn queue_case() -> impl Strategy<Value = QueueCase> {
    (
        any::<bool>(),
        any::<bool>(),
        1u64..=9,
        1u64..=70,
        prop::collection::vec(op(), 1..60),
    )
        .prop_map(|(mpmc, bytes, capacity, msg_max, ops)| QueueCase {
            mpmc,
            bytes,
            capacity,
            msg_max,
            ops,
        })
}

/// A message: a `u64`, or a byte message.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Msg {
    Word(u64),
    Bytes(Vec<u8>),
}

/// The FIFO the queue must behave as, until a harmful write. `None`: an
/// MPMC skip record (an abandoned loan), which holds a position until a
/// receiver steps over it.
struct Model {
    mpmc: bool,
    cap: u64,
    q: VecDeque<Option<Msg>>,
    head: u64,
    tail: u64,
}

impl Model {
    fn full(&self) -> bool {
        self.q.len() as u64 == self.cap
    }

    fn push(&mut self, m: Option<Msg>) {
        self.q.push_back(m);
        self.tail += 1;
    }

    /// Steps over leading skip records.
    fn skip(&mut self) {
        while let Some(None) = self.q.front() {
            self.q.pop_front();
            self.head += 1;
        }
    }

    fn pop(&mut self) -> Option<Msg> {
        self.skip();
        let m = self.q.pop_front()??;
        self.head += 1;
        Some(m)
    }

    /// How many a batch send of `n` places (0: Full).
    fn batch_send(&self, n: u64) -> u64 {
        let free = self.cap - self.q.len() as u64;
        let k = free.min(n);
        if self.mpmc {
            // One claim never crosses the end of a lap.
            k.min(self.cap - self.tail % self.cap)
        } else {
            k
        }
    }

    /// How many a batch receive of `n` takes (after stepping over skips).
    fn batch_recv(&mut self, n: u64) -> u64 {
        self.skip();
        let run = self.q.iter().take_while(|m| m.is_some()).count() as u64;
        let k = run.min(n);
        if self.mpmc {
            k.min(self.cap - self.head % self.cap)
        } else {
            k
        }
    }
}

/// The endpoints of one queue, either kind.
enum Handles {
    Words {
        q: Queue<u64>,
        tx: Option<shmring::Sender<u64>>,
        rx: Option<shmring::Receiver<u64>>,
    },
    Bytes {
        q: ByteQueue,
        tx: Option<shmring::ByteSender>,
        rx: Option<shmring::ByteReceiver>,
    },
}

/// Runs one call of a case; every timed call here waits at most 1 ms.
fn bounded<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, TestCaseError> {
    let t0 = Instant::now();
    let r = f();
    let took = t0.elapsed();
    prop_assert!(
        took < Duration::from_secs(2),
        "{what} took {took:?} (its timeout is at most 1 ms)"
    );
    Ok(r)
}

const T: Duration = Duration::from_millis(1);

/// Compares a result with the model's prediction while the model holds.
macro_rules! expect {
    ($exact:expr, $got:expr, $want:expr, $($ctx:tt)*) => {
        if $exact {
            prop_assert_eq!($got, $want, $($ctx)*);
        }
    };
}

#[test]
fn prop_queue_words_overwritten() {
    let files = Files::new();
    check(
        "prop_queue_words",
        256,
        queue_case,
        move |case: QueueCase| {
            let p = files.path();
            let flavor = if case.mpmc {
                Flavor::Mpmc
            } else {
                Flavor::Spsc
            };
            let mut h = if case.bytes {
                let q = ByteQueue::builder()
                    .flavor(flavor)
                    .capacity(case.capacity)
                    .max_message_size(case.msg_max)
                    .create_at(&p)
                    .unwrap();
                let (tx, rx) = (q.sender().ok(), q.receiver().ok());
                Handles::Bytes { q, tx, rx }
            } else {
                let q = Queue::<u64>::builder()
                    .flavor(flavor)
                    .capacity(case.capacity)
                    .create_at(&p)
                    .unwrap();
                let (tx, rx) = (q.sender().ok(), q.receiver().ok());
                Handles::Words { q, tx, rx }
            };
            let file = rw(&p);
            let mut hb = [0u8; 256];
            file.read_exact_at(&mut hb, 0).unwrap();
            let header = parse_header(&hb);
            let cap = case.capacity;
            let max = case.msg_max as usize;
            let mut model = Model {
                mpmc: case.mpmc,
                cap,
                q: VecDeque::new(),
                head: 0,
                tail: 0,
            };
            // Whether the model still describes the queue.
            let mut exact = true;
            let mut next = 0u64;
            for (step, op) in case.ops.iter().enumerate() {
                let ctx = format!("step {step}: {op:?}");
                let counter = if exact { &EXACT_OPS } else { &LOOSE_OPS };
                counter.fetch_add(1, Ordering::Relaxed);
                next += 1;
                let payload = |n: u8| -> Vec<u8> {
                    let len = n as usize % (max + 2);
                    (0..len)
                        .map(|i| (next as u8).wrapping_add(i as u8))
                        .collect()
                };
                match (&mut h, op) {
                    (_, Op::Write(l, v)) => {
                        let (off, size) = l.place(&header);
                        file.write_all_at(&v.to_le_bytes()[..size], off).unwrap();
                        if !l.benign() {
                            exact = false;
                        }
                    }
                    (Handles::Words { q, tx, rx }, op) => match op {
                        Op::Send(_) | Op::SendTimeout(_) => {
                            let Some(t) = tx else { continue };
                            let timed = matches!(op, Op::SendTimeout(_));
                            let r = bounded(&ctx, || {
                                if timed {
                                    t.send_timeout(next, T).map_err(|e| format!("{e:?}"))
                                } else {
                                    t.try_send(next).map_err(|e| format!("{e:?}"))
                                }
                            })?;
                            if exact {
                                if model.full() {
                                    prop_assert!(r.is_err(), "{ctx}: sent into a full queue");
                                } else {
                                    prop_assert_eq!(&r, &Ok(()), "{}", ctx);
                                    model.push(Some(Msg::Word(next)));
                                }
                            }
                        }
                        Op::SendSlice(n) => {
                            let Some(t) = tx else { continue };
                            let n = 1 + *n as u64 % 4;
                            let vals: Vec<u64> = (0..n).map(|i| next * 8 + i).collect();
                            let r = bounded(&ctx, || t.try_send_slice(&vals))?;
                            if let Ok(k) = r {
                                prop_assert!((1..=n as usize).contains(&k), "{ctx}: sent {k}");
                            }
                            if exact {
                                let k = model.batch_send(n);
                                if k == 0 {
                                    prop_assert!(r.is_err(), "{ctx}: {r:?}, model full");
                                } else {
                                    prop_assert_eq!(r, Ok(k as usize), "{}", ctx);
                                    for v in &vals[..k as usize] {
                                        model.push(Some(Msg::Word(*v)));
                                    }
                                }
                            }
                        }
                        Op::Loan(_, commit) => {
                            let Some(t) = tx else { continue };
                            let r = bounded(&ctx, || match t.try_loan() {
                                Ok(mut l) => {
                                    *l = next;
                                    if *commit {
                                        l.commit();
                                    }
                                    Ok(())
                                }
                                Err(e) => Err(e),
                            })?;
                            if exact {
                                if model.full() {
                                    prop_assert!(r.is_err(), "{ctx}: loaned from a full queue");
                                } else {
                                    prop_assert_eq!(r, Ok(()), "{}", ctx);
                                    if *commit {
                                        model.push(Some(Msg::Word(next)));
                                    } else if case.mpmc {
                                        model.push(None);
                                    }
                                }
                            }
                        }
                        Op::Recv | Op::RecvTimeout | Op::RecvRef => {
                            let Some(r) = rx else { continue };
                            let got = bounded(&ctx, || match op {
                                Op::Recv => r.try_recv(),
                                Op::RecvRef => r.try_recv_ref().map(|m| *m),
                                _ => r.recv_timeout(T).map_err(|e| match e {
                                    RecvTimeoutError::Timeout => TryRecvError::Empty,
                                    RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
                                    RecvTimeoutError::Closed => TryRecvError::Closed,
                                    RecvTimeoutError::Corrupted => TryRecvError::Corrupted,
                                }),
                            })?;
                            let want = if exact { model.pop() } else { None };
                            expect!(
                                exact,
                                got,
                                want.map(|m| match m {
                                    Msg::Word(v) => v,
                                    Msg::Bytes(_) => unreachable!(),
                                })
                                .ok_or(TryRecvError::Empty),
                                "{}",
                                ctx
                            );
                        }
                        Op::RecvSlice(n) => {
                            let Some(r) = rx else { continue };
                            let n = 1 + *n as u64 % 4;
                            let mut buf = vec![0u64; n as usize];
                            let got = bounded(&ctx, || r.try_recv_slice(&mut buf))?;
                            if let Ok(k) = got {
                                prop_assert!((1..=n as usize).contains(&k), "{ctx}: took {k}");
                            }
                            if exact {
                                let k = model.batch_recv(n);
                                if k == 0 {
                                    prop_assert_eq!(got, Err(TryRecvError::Empty), "{}", ctx);
                                } else {
                                    prop_assert_eq!(got, Ok(k as usize), "{}", ctx);
                                    for v in &buf[..k as usize] {
                                        prop_assert_eq!(
                                            Some(Msg::Word(*v)),
                                            model.pop(),
                                            "{}",
                                            ctx
                                        );
                                    }
                                }
                            }
                        }
                        Op::Poll => {
                            let Some(r) = rx else { continue };
                            let got: Vec<u64> = bounded(&ctx, || r.try_iter().take(2).collect())?;
                            if exact {
                                let all = got.len() == 2;
                                for v in got {
                                    prop_assert_eq!(Some(Msg::Word(v)), model.pop(), "{}", ctx);
                                }
                                if !all {
                                    // The try_recv that found nothing stepped
                                    // over any skip records first.
                                    model.skip();
                                }
                            }
                        }
                        Op::Len => {
                            let (len, c) = (q.len(), q.capacity());
                            prop_assert!(len <= c, "{ctx}: len {len} > capacity {c}");
                            expect!(exact, len, model.q.len(), "{}", ctx);
                        }
                        Op::Reattach(sender) => {
                            if *sender {
                                *tx = None;
                                *tx = bounded(&ctx, || q.sender())?.ok();
                                prop_assert!(!exact || tx.is_some(), "{ctx}: cannot attach");
                            } else {
                                *rx = None;
                                *rx = bounded(&ctx, || q.receiver())?.ok();
                                prop_assert!(!exact || rx.is_some(), "{ctx}: cannot attach");
                            }
                        }
                        Op::Reap => {
                            bounded(&ctx, || q.reap_dead())?;
                            let _ = (q.endpoints(), q.lost(), q.reaped());
                        }
                        Op::Write(..) => unreachable!(),
                    },
                    (Handles::Bytes { q, tx, rx }, op) => match op {
                        Op::Send(n) | Op::SendTimeout(n) | Op::SendSlice(n) | Op::Loan(n, _) => {
                            let Some(t) = tx else { continue };
                            let msg = payload(*n);
                            let r = bounded(&ctx, || match op {
                                Op::SendTimeout(_) => t.send_timeout(&msg, T),
                                Op::Loan(_, commit) => match t.try_loan(msg.len()) {
                                    Ok(mut l) => {
                                        l.copy_from_slice(&msg);
                                        if *commit {
                                            l.commit();
                                        }
                                        Ok(())
                                    }
                                    Err(e) => Err(e),
                                },
                                _ => t.try_send(&msg),
                            })?;
                            // TooLarge exactly for messages beyond the maximum,
                            // however the segment is scribbled.
                            prop_assert_eq!(
                                matches!(r, Err(ByteSendError::TooLarge { .. })),
                                msg.len() > max,
                                "{}: {:?} for {} bytes",
                                ctx,
                                r,
                                msg.len()
                            );
                            if exact && msg.len() <= max {
                                if model.full() {
                                    prop_assert!(r.is_err(), "{ctx}: sent into a full queue");
                                } else {
                                    prop_assert_eq!(r, Ok(()), "{}", ctx);
                                    match op {
                                        Op::Loan(_, false) if case.mpmc => model.push(None),
                                        Op::Loan(_, false) => {}
                                        _ => model.push(Some(Msg::Bytes(msg))),
                                    }
                                }
                            }
                        }
                        Op::Recv | Op::RecvTimeout | Op::RecvRef | Op::RecvSlice(_) => {
                            let Some(r) = rx else { continue };
                            let mut buf = Vec::new();
                            let got = bounded(&ctx, || match op {
                                Op::Recv => r.try_recv(),
                                Op::RecvRef => r.try_recv_ref().map(|m| m.to_vec()),
                                Op::RecvSlice(_) => r.try_recv_into(&mut buf).map(|n| {
                                    assert_eq!(n, buf.len());
                                    buf.clone()
                                }),
                                _ => r.recv_timeout(T).map_err(|e| match e {
                                    RecvTimeoutError::Timeout => TryRecvError::Empty,
                                    RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
                                    RecvTimeoutError::Closed => TryRecvError::Closed,
                                    RecvTimeoutError::Corrupted => TryRecvError::Corrupted,
                                }),
                            })?;
                            if let Ok(m) = &got {
                                prop_assert!(m.len() <= max, "{ctx}: {} bytes > {max}", m.len());
                            }
                            let want = if exact { model.pop() } else { None };
                            expect!(
                                exact,
                                got,
                                want.map(|m| match m {
                                    Msg::Bytes(b) => b,
                                    Msg::Word(_) => unreachable!(),
                                })
                                .ok_or(TryRecvError::Empty),
                                "{}",
                                ctx
                            );
                        }
                        Op::Poll => {
                            let Some(r) = rx else { continue };
                            let got = bounded(&ctx, || r.poll(T))?;
                            // Poll steps over leading skip records: only a
                            // published message counts.
                            if exact {
                                model.skip();
                            }
                            expect!(exact, got, Ok(!model.q.is_empty()), "{}", ctx);
                        }
                        Op::Len => {
                            let (len, c) = (q.len(), q.capacity());
                            prop_assert!(len <= c, "{ctx}: len {len} > capacity {c}");
                            expect!(exact, len, model.q.len(), "{}", ctx);
                        }
                        Op::Reattach(sender) => {
                            if *sender {
                                *tx = None;
                                *tx = bounded(&ctx, || q.sender())?.ok();
                                prop_assert!(!exact || tx.is_some(), "{ctx}: cannot attach");
                            } else {
                                *rx = None;
                                *rx = bounded(&ctx, || q.receiver())?.ok();
                                prop_assert!(!exact || rx.is_some(), "{ctx}: cannot attach");
                            }
                        }
                        Op::Reap => {
                            bounded(&ctx, || q.reap_dead())?;
                            let _ = (q.endpoints(), q.lost());
                        }
                        Op::Write(..) => unreachable!(),
                    },
                }
            }
            drop(h);
            Ok(())
        },
    );
    let (exact, loose) = (
        EXACT_OPS.load(Ordering::Relaxed),
        LOOSE_OPS.load(Ordering::Relaxed),
    );
    eprintln!("prop_queue_words: {exact} operations checked against the model, {loose} after harmful writes");
    assert!(
        exact > 0 && loose > 0,
        "the cases never reached both phases"
    );
}

static EXACT_OPS: AtomicU64 = AtomicU64::new(0);
static LOOSE_OPS: AtomicU64 = AtomicU64::new(0);

// ---------------------------------------------------------------------------
// (c) Stored byte-message lengths
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct LengthCase {
    mpmc: bool,
    capacity: u64,
    max: u64,
    /// Rounds of (message length, stored length written over it, how it
    /// is received).
    rounds: Vec<Vec<(u8, Option<u32>, u8)>>,
}

fn length_case() -> impl Strategy<Value = LengthCase> {
    (any::<bool>(), 1u64..=8, 1u64..=64).prop_flat_map(|(mpmc, capacity, max)| {
        let stored = prop_oneof![
            2 => any::<u32>(),
            3 => 0..=max as u32 + 2,
            1 => Just(max as u32),
            1 => Just(max as u32 + 1),
            1 => Just(u32::MAX),
        ];
        let msg = (
            any::<u8>(),
            prop::option::weighted(0.4, stored),
            any::<u8>(),
        );
        let round = prop::collection::vec(msg, 1..=capacity as usize);
        prop::collection::vec(round, 1..6).prop_map(move |rounds| LengthCase {
            mpmc,
            capacity,
            max,
            rounds,
        })
    })
}

#[test]
fn prop_byte_lengths_overwritten() {
    let files = Files::new();
    check(
        "prop_byte_lengths",
        256,
        length_case,
        move |case: LengthCase| {
            let p = files.path();
            let flavor = if case.mpmc {
                Flavor::Mpmc
            } else {
                Flavor::Spsc
            };
            let q = ByteQueue::builder()
                .flavor(flavor)
                .capacity(case.capacity)
                .max_message_size(case.max)
                .create_at(&p)
                .unwrap();
            let (tx, mut rx) = (q.sender().unwrap(), q.receiver().unwrap());
            let file = rw(&p);
            let mut hb = [0u8; 256];
            file.read_exact_at(&mut hb, 0).unwrap();
            let h = parse_header(&hb);
            let max = case.max as usize;
            // What each payload holds (the file starts zeroed).
            let mut payloads = vec![vec![0u8; max]; h.slot_count as usize];
            let index = |pos: u64| {
                if case.mpmc {
                    pos % case.capacity
                } else {
                    pos & (h.slot_count - 1)
                }
            };
            let mut pos = 0u64;
            for (r, round) in case.rounds.iter().enumerate() {
                // Send the round, then overwrite some stored lengths.
                let mut expected = Vec::new();
                for (i, &(n, stored, how)) in round.iter().enumerate() {
                    let len = n as usize % (max + 1);
                    let msg: Vec<u8> = (0..len).map(|k| (r * 31 + i * 7 + k) as u8).collect();
                    tx.try_send(&msg).unwrap();
                    let slot = index(pos + i as u64) as usize;
                    payloads[slot][..len].copy_from_slice(&msg);
                    // Either ring: the word follows the slot's stamp.
                    let len_off = h.slots_offset + slot as u64 * h.slot_stride + 8;
                    if let Some(s) = stored {
                        file.write_all_at(&s.to_le_bytes(), len_off).unwrap();
                    }
                    let s = stored.map_or(len, |s| s as usize);
                    expected.push((
                        (s <= max).then(|| payloads[slot][..s.min(max)].to_vec()),
                        how,
                    ));
                }
                pos += round.len() as u64;
                for (i, (want, how)) in expected.into_iter().enumerate() {
                    let mut buf = vec![9u8; 3];
                    let got = match how % 4 {
                        0 => rx.try_recv(),
                        1 => rx.try_recv_into(&mut buf).map(|n| {
                            assert_eq!(n, buf.len());
                            buf.clone()
                        }),
                        2 => rx.try_recv_ref().map(|m| m.to_vec()),
                        _ => rx.recv_timeout(T).map_err(|e| match e {
                            RecvTimeoutError::Timeout => TryRecvError::Empty,
                            RecvTimeoutError::Disconnected => TryRecvError::Disconnected,
                            RecvTimeoutError::Closed => TryRecvError::Closed,
                            RecvTimeoutError::Corrupted => TryRecvError::Corrupted,
                        }),
                    };
                    prop_assert_eq!(
                        got,
                        want.ok_or(TryRecvError::Corrupted),
                        "round {}, message {}",
                        r,
                        i
                    );
                }
                prop_assert_eq!(rx.try_recv(), Err(TryRecvError::Empty), "after round {}", r);
                prop_assert_eq!(q.len(), 0);
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------
// (d) The endpoint table
// ---------------------------------------------------------------------------

const LIVE: u64 = 1 << 63;
const RECEIVER: u64 = 1 << 62;
const PID_MASK: u64 = (1 << 23) - 1;
const START_MASK: u64 = (1 << 39) - 1;

fn entry_word(receiver: bool, pid: u64, start: u64) -> u64 {
    let role = if receiver { RECEIVER } else { 0 };
    LIVE | role | ((pid & PID_MASK) << 39) | (start & START_MASK)
}

/// The owner an entry names (the layout in `docs/design.md`).
fn owner_of(w: u64) -> ProcId {
    ProcId {
        pid: ((w >> 39) & PID_MASK) as u32,
        start: w & START_MASK,
    }
}

#[derive(Clone, Copy, Debug)]
enum Forged {
    Free,
    /// This process, as it is: alive.
    Me(bool),
    /// This process's pid with another start time: a reused pid, dead.
    Reused(bool, u64),
    /// A pid beyond `pid_max`: dead.
    Gone(bool, u64),
    /// pid 0: never a process.
    Zero(bool, u64),
    Any(u64),
}

fn forged() -> impl Strategy<Value = Forged> {
    prop_oneof![
        4 => Just(Forged::Free),
        2 => any::<bool>().prop_map(Forged::Me),
        2 => (any::<bool>(), 1u64..1000).prop_map(|(r, d)| Forged::Reused(r, d)),
        2 => (any::<bool>(), any::<u64>()).prop_map(|(r, s)| Forged::Gone(r, s)),
        1 => (any::<bool>(), any::<u64>()).prop_map(|(r, s)| Forged::Zero(r, s)),
        3 => interesting_u64().prop_map(Forged::Any),
    ]
}

#[derive(Clone, Debug)]
struct TableCase {
    mpmc: bool,
    /// The first entries (the rest stay as the test's own endpoints left
    /// them, or full: see `fill`).
    entries: Vec<Forged>,
    /// Fill every other entry with this process's live identity, so that
    /// only the forged entries can be free.
    fill: bool,
    intents: Vec<(u8, u64, u64)>,
    queued: u8,
}

fn table_case() -> impl Strategy<Value = TableCase> {
    (
        any::<bool>(),
        prop::collection::vec(forged(), 1..12),
        any::<bool>(),
        prop::collection::vec((0u8..64, interesting_u64(), interesting_u64()), 0..6),
        0u8..4,
    )
        .prop_map(|(mpmc, entries, fill, intents, queued)| TableCase {
            mpmc,
            entries,
            fill,
            intents,
            queued,
        })
}

#[test]
fn prop_endpoint_table_forged() {
    let files = Files::new();
    let me = shmring::__internal::current();
    check("prop_endpoints", 128, table_case, move |case: TableCase| {
        let p = files.path();
        let flavor = if case.mpmc {
            Flavor::Mpmc
        } else {
            Flavor::Spsc
        };
        let q = Queue::<u64>::builder()
            .flavor(flavor)
            .capacity(4)
            .create_at(&p)
            .unwrap();
        // Queue a few messages with endpoints that then leave.
        {
            let (tx, _rx) = (q.sender().unwrap(), q.receiver().unwrap());
            for v in 0..case.queued as u64 {
                tx.try_send(100 + v).unwrap();
            }
        }
        let file = rw(&p);
        let mut hb = [0u8; 256];
        file.read_exact_at(&mut hb, 0).unwrap();
        let h = parse_header(&hb);
        let mut words = vec![0u64; 64];
        for (i, f) in case.entries.iter().enumerate() {
            words[i] = match *f {
                Forged::Free => 0,
                Forged::Me(r) => entry_word(r, me.pid as u64, me.start),
                Forged::Reused(r, d) => entry_word(r, me.pid as u64, me.start.wrapping_add(d)),
                Forged::Gone(r, s) => entry_word(r, PID_MASK, s),
                Forged::Zero(r, s) => entry_word(r, 0, s),
                Forged::Any(w) => w,
            };
        }
        if case.fill {
            for w in &mut words[case.entries.len()..] {
                *w = entry_word(false, me.pid as u64, me.start);
            }
        }
        for (i, w) in words.iter().enumerate() {
            file.write_all_at(&w.to_le_bytes(), h.endpoints_offset + 8 * i as u64)
                .unwrap();
        }
        for &(i, start, end) in &case.intents {
            let rec = h.endpoints_offset + 512 + 64 * i as u64;
            file.write_all_at(&start.to_le_bytes(), rec).unwrap();
            file.write_all_at(&end.to_le_bytes(), rec + 8).unwrap();
        }
        // Entries an attach can take: free ones, and those of dead owners
        // (reaped when no entry is free), among the first 63 (the last
        // entry's bit is the stream's closed flag: never handed out).
        let usable = &words[..63];
        let dead: Vec<u64> = usable
            .iter()
            .copied()
            .filter(|&w| w & LIVE != 0 && liveness(owner_of(w)) == Liveness::Dead)
            .collect();
        let available = usable.iter().filter(|&&w| w == 0).count() + dead.len();
        let tx = q.sender();
        prop_assert_eq!(
            tx.is_ok(),
            available >= 1,
            "sender: {:?} with {} entries available",
            tx,
            available
        );
        let rx = q.receiver();
        prop_assert_eq!(
            rx.is_ok(),
            available >= 2,
            "receiver: {:?} with {} entries available",
            rx,
            available
        );
        for e in [tx.as_ref().err(), rx.as_ref().err()].into_iter().flatten() {
            prop_assert!(
                matches!(e, SegmentError::TooManyEndpoints(63)),
                "attach failed with {e:?}"
            );
        }
        q.reap_dead();
        // Every dead entry was freed (once), every other one is intact.
        let mut table = [0u8; 512];
        file.read_exact_at(&mut table, h.endpoints_offset).unwrap();
        for i in 0..64 {
            let w = u64_at(&table, 8 * i);
            if w & LIVE != 0 {
                prop_assert_eq!(
                    liveness(owner_of(w)),
                    Liveness::Alive,
                    "entry {} ({:#x}) is dead and was not reaped",
                    i,
                    w
                );
            }
        }
        prop_assert_eq!(q.reaped(), dead.len() as u64);
        // A dead endpoint's intent record may announce a claim in flight
        // (a loan at the tail, a read at the head): the repair counts that
        // one claim in `lost()`, at most one per dead entry that has a
        // record. Nothing queued is lost: every message is received below.
        let dead_with_intent = usable
            .iter()
            .enumerate()
            .filter(|&(i, &w)| {
                w & LIVE != 0
                    && liveness(owner_of(w)) == Liveness::Dead
                    && case.intents.iter().any(|&(j, _, _)| j as usize == i)
            })
            .count() as u64;
        prop_assert!(
            q.lost() <= dead_with_intent,
            "forged intents cost {} messages, more than the {} dead entries with a record",
            q.lost(),
            dead_with_intent
        );
        if let (Ok(tx), Ok(rx)) = (&tx, &rx) {
            prop_assert_eq!(q.endpoints(), (1, 1));
            for v in 0..case.queued as u64 {
                prop_assert_eq!(rx.try_recv(), Ok(100 + v));
            }
            prop_assert_eq!(tx.try_send(7), Ok(()));
            prop_assert_eq!(rx.try_recv(), Ok(7));
            prop_assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
        }
        drop((tx, rx));
        Ok(())
    });
}
